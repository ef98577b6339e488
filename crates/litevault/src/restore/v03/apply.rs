//! Applying a plan: fetch each object, decompress it, check it, write the
//! result to `OUT.tmp` (the I/O edge of the v0.3 restore).
//!
//! Objects are fetched one at a time: a file:// replica's files are read in
//! place, others are streamed to the staging folder first. Decompression
//! streams (the LZ4 frame decoder checks each frame's header checksum and,
//! where the frame carries them, its block and content checksums), so
//! memory stays bounded by one WAL frame and the read buffers.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::layout::{Plan, Segment, segment_key};
use super::segment::{FeedError, WalIndexDecoder, db_page_size};
use crate::replica::{Replica, V03Object};
use crate::restore::{RestoreError, io_err};
use crate::task::blocking;

/// Read and decompression buffer.
const CHUNK: usize = 256 << 10;

/// What [`apply_plan`] wrote.
pub(super) struct Applied {
    /// The database's page size.
    pub page_size: u32,
    /// Its size in pages.
    pub pages: u32,
    /// Bytes fetched (compressed).
    pub bytes: u64,
}

fn damaged(replica: &Replica, object: &str, reason: impl std::fmt::Display) -> RestoreError {
    RestoreError::V03Damaged {
        replica: replica.to_string(),
        object: object.to_string(),
        reason: reason.to_string(),
    }
}

/// Rebuilds the database of `plan` into `tmp` (created): the snapshot, then
/// each WAL index's frames, each index cut at its last commit's size.
pub(super) async fn apply_plan(
    replica: &Replica,
    plan: &Plan,
    tmp: &Path,
    staging: &Path,
    bar: &crate::progress::ProgressSink,
) -> Result<Applied, RestoreError> {
    let mut bytes = 0u64;
    let snap = &plan.snapshot.object;
    let (src, staged) = fetch(replica, snap, staging).await?;
    bytes += snap.size;
    bar.advance(snap.size);
    let (r, key, out) = (replica.clone(), snap.key.clone(), tmp.to_path_buf());
    let (file, page_size) = blocking(move || {
        let res = write_snapshot(&r, &key, &src, &out);
        if staged {
            let _ = std::fs::remove_file(&src);
        }
        res
    })
    .await??;
    let mut file = file;
    let mut pages = (file.metadata().map_err(io_err(tmp))?.len() / u64::from(page_size)) as u32;
    for (index, segments) in &plan.indexes {
        let mut decoder = WalIndexDecoder::new(page_size);
        let mut last_key = String::new();
        for segment in segments {
            if u64::from(segment.offset) != decoder.fed() {
                // A segment must start where the one before it ended.
                return Err(RestoreError::V03Missing {
                    replica: replica.to_string(),
                    object: segment_key(plan.generation, *index, decoder.fed()),
                    reason: format!(
                        "the WAL of index {index:08x} ends at offset {} and the next segment starts at {}",
                        decoder.fed(),
                        segment.offset
                    ),
                });
            }
            let (src, staged) = fetch(replica, &segment.object, staging).await?;
            bytes += segment.object.size;
            bar.advance(segment.object.size);
            let r = replica.clone();
            let seg = segment.clone();
            let (f, d) = (file, decoder);
            let out = tmp.to_path_buf();
            (file, decoder) = blocking(move || {
                let res = apply_segment(&r, &seg, &src, f, d, page_size, &out);
                if staged {
                    let _ = std::fs::remove_file(&src);
                }
                res
            })
            .await??;
            last_key.clone_from(&segment.object.key);
        }
        match decoder.finish() {
            Ok(Some(commit)) => {
                file.set_len(u64::from(commit) * u64::from(page_size))
                    .map_err(io_err(tmp))?;
                pages = commit;
            }
            Ok(None) => {}
            Err(fault) => return Err(damaged(replica, &last_key, fault)),
        }
    }
    Ok(Applied {
        page_size,
        pages,
        bytes,
    })
}

/// Where an object's bytes can be read: in place for a file:// replica,
/// else downloaded to the staging folder (`true`: remove it after use).
async fn fetch(
    replica: &Replica,
    object: &V03Object,
    staging: &Path,
) -> Result<(PathBuf, bool), RestoreError> {
    if let Some(path) = replica.litestream_v03_local_path(object) {
        return Ok((path, false));
    }
    let name = object.key.replace('/', "_");
    let path = staging.join(name);
    let mut stream = replica.open_litestream_v03(&object.key).await?;
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(io_err(&path))?;
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await.map_err(io_err(&path))?;
    }
    out.flush().await.map_err(io_err(&path))?;
    Ok((path, true))
}

/// Opens a replica file without following a symbolic link; it must be a
/// regular file.
fn open_object(replica: &Replica, key: &str, path: &Path) -> Result<File, RestoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| damaged(replica, key, format!("cannot open {}: {e}", path.display())))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(damaged(replica, key, "not a regular file"));
    }
    Ok(file)
}

fn lz4_reader(file: File) -> impl Read {
    lz4_flex::frame::FrameDecoder::new(BufReader::with_capacity(CHUNK, file))
}

/// Decompresses the snapshot into `out` (created); returns the file and the
/// database's page size.
fn write_snapshot(
    replica: &Replica,
    key: &str,
    src: &Path,
    out: &Path,
) -> Result<(File, u32), RestoreError> {
    let mut reader = lz4_reader(open_object(replica, key, src)?);
    let file = File::create(out).map_err(io_err(out))?;
    let mut writer = BufWriter::with_capacity(CHUNK, file.try_clone().map_err(io_err(out))?);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut first = Vec::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(replica, key, format!("LZ4: {e}"))),
        };
        if first.len() < 100 {
            let want = (100 - first.len()).min(n);
            first.extend_from_slice(&buf[..want]);
        }
        writer.write_all(&buf[..n]).map_err(io_err(out))?;
        total += n as u64;
    }
    writer.flush().map_err(io_err(out))?;
    drop(writer);
    let page_size = db_page_size(&first).ok_or_else(|| {
        damaged(
            replica,
            key,
            "the snapshot does not start with a SQLite database header",
        )
    })?;
    if !total.is_multiple_of(u64::from(page_size)) {
        return Err(damaged(
            replica,
            key,
            format!("the snapshot is {total} bytes, not a whole number of {page_size}-byte pages"),
        ));
    }
    Ok((file, page_size))
}

/// Decompresses one WAL segment through the index's decoder, writing each
/// page into `file`.
fn apply_segment(
    replica: &Replica,
    segment: &Segment,
    src: &Path,
    file: File,
    mut decoder: WalIndexDecoder,
    page_size: u32,
    out: &Path,
) -> Result<(File, WalIndexDecoder), RestoreError> {
    let key = &segment.object.key;
    let mut reader = lz4_reader(open_object(replica, key, src)?);
    let mut buf = vec![0u8; CHUNK];
    let ps = u64::from(page_size);
    let mut write = |pgno: u32, page: &[u8]| file.write_all_at(page, (u64::from(pgno) - 1) * ps);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(replica, key, format!("LZ4: {e}"))),
        };
        decoder.feed(&buf[..n], &mut write).map_err(|e| match e {
            FeedError::Fault(f) => damaged(replica, key, f),
            FeedError::Sink(e) => io_err(out)(e),
        })?;
    }
    Ok((file, decoder))
}
