//! Restore of Litestream v0.3 backups (generations, snapshots, LZ4 WAL
//! segments), verified like any restore.
//!
//! 1. **List** the objects under `generations/` and sort them into
//!    generations ([`layout::parse_backup`]).
//! 2. **Plan** ([`layout::plan`]): the generation, snapshot and WAL
//!    segments Litestream v0.3's own `restore` would take for the target;
//!    a WAL index missing between the snapshot and the target is an error
//!    naming it.
//! 3. **Apply** (`apply`): the snapshot, decompressed into `OUT.tmp`, then
//!    each WAL index in order: its segments must follow each other without
//!    a gap (each starts at the WAL offset where the one before ended), its
//!    frames must verify as SQLite verifies a WAL ([`segment`]), and the file
//!    is cut at the size its last commit records; this is what the
//!    checkpoints of v0.3's restore do, byte for byte.
//! 4. **Verify and publish** as the LTX restore does: fsync,
//!    `PRAGMA integrity_check`, rename to `OUT`, fsync the folder.
//!
//! On any failure `OUT` is left as it was and the error names the object.
//! A backup gives no way to notice segments lost from the end of its last
//! WAL index: the restore then ends at the last commit the segments hold.

mod apply;
pub mod layout;
pub mod segment;

use std::fs::File;
use std::path::Path;
use std::time::Instant;

pub use layout::{Generation, GenerationSummary, V03Target};

use super::{RestoreError, RestoreReport, TempFiles, integrity_check, io_err, sibling};
use crate::db::StateDir;
use crate::ltx::{DbChecksum, Txid};
use crate::replica::Replica;
use crate::task::blocking;

/// Where a v0.3 restore ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct V03Point {
    /// The generation restored.
    pub generation: Generation,
    /// The snapshot it started from (its WAL index, 8 hex digits).
    pub snapshot_index: String,
    /// The last WAL index applied (8 hex digits).
    pub index: String,
}

/// Lists the generations of the replica's v0.3 backup, with their snapshots
/// and runs of WAL indexes (empty when there is none).
pub async fn list(replica: &Replica) -> Result<Vec<GenerationSummary>, RestoreError> {
    let objects = replica.list_litestream_v03().await?;
    Ok(layout::summarize(&layout::parse_backup(objects)))
}

/// Restores `target` from the replica's v0.3 backup to `output`, which must
/// not exist. Objects are read one at a time, streamed to disk.
pub(crate) async fn restore(
    replica: &Replica,
    output: &Path,
    target: V03Target,
    bar: &crate::progress::ProgressSink,
    started: Instant,
) -> Result<RestoreReport, RestoreError> {
    let backup = layout::parse_backup(replica.list_litestream_v03().await?);
    let described = describe(target);
    let plan = layout::plan(&backup, target).map_err(|e| match e {
        layout::PlanError::NoPoint(reason) => RestoreError::NoRestorePoint {
            target: described,
            replica: replica.to_string(),
            reason,
        },
        layout::PlanError::Missing(object) => RestoreError::V03Missing {
            replica: replica.to_string(),
            object,
            reason: "a WAL index between the snapshot and the target has no segment".into(),
        },
    })?;
    let (tmp, staging) = (sibling(output, ".tmp"), sibling(output, ".tmp-ltx"));
    let mut temp = TempFiles {
        tmp: tmp.clone(),
        staging: staging.clone(),
        published: false,
    };
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
    let total = plan.snapshot.object.size
        + plan
            .indexes
            .iter()
            .flat_map(|(_, s)| s)
            .map(|s| s.object.size)
            .sum::<u64>();
    bar.start(crate::progress::Unit::Bytes, Some(total));
    let _finish = bar.finish_on_drop();
    bar.message("applying");
    let applied = apply::apply_plan(replica, &plan, &tmp, &staging, bar).await?;
    let t = tmp.clone();
    let page_size = applied.page_size;
    let checksum = blocking(move || -> Result<DbChecksum, RestoreError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&t)
            .map_err(io_err(&t))?;
        file.sync_all().map_err(io_err(&t))?;
        drop(file);
        integrity_check(&t)?;
        checksum_of(&t, page_size)
    })
    .await??;
    for suffix in ["-wal", "-shm"] {
        let p = sibling(output, suffix);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    std::fs::rename(&tmp, output).map_err(io_err(output))?;
    temp.published = true;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(parent))?;
    }
    // A state folder left from another database would mislead `replicate`:
    // with none, it starts the LTX history afresh from this database.
    StateDir::for_db(output).clear();
    let mut files = vec![plan.snapshot.object.key.clone()];
    files.extend(
        plan.indexes
            .iter()
            .flat_map(|(_, s)| s)
            .map(|s| s.object.key.clone()),
    );
    Ok(RestoreReport {
        txid: Txid(0),
        files,
        bytes: applied.bytes,
        pages: applied.pages,
        page_size: applied.page_size,
        checksum: checksum.value(),
        checksum_verified: false,
        millis: started.elapsed().as_millis() as u64,
        litestream_v03: Some(V03Point {
            generation: plan.generation,
            snapshot_index: format!("{:08x}", plan.snapshot.index),
            index: format!("{:08x}", plan.last_index()),
        }),
    })
}

/// The checksum of a database file, page by page.
fn checksum_of(path: &Path, page_size: u32) -> Result<DbChecksum, RestoreError> {
    use std::io::Read;
    let mut file = std::io::BufReader::new(File::open(path).map_err(io_err(path))?);
    let mut table = DbChecksum::new();
    let mut page = vec![0u8; page_size as usize];
    let mut pgno = 1u32;
    loop {
        match file.read_exact(&mut page) {
            Ok(()) => table.apply_page(pgno, &page),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io_err(path)(e)),
        }
        pgno += 1;
    }
    Ok(table)
}

fn describe(target: V03Target) -> String {
    match target {
        V03Target::Latest => "the latest state of the Litestream v0.3 backup".into(),
        V03Target::Timestamp(ts) => format!("{} (Litestream v0.3 backup)", ts.to_rfc3339()),
        V03Target::Generation {
            generation,
            index: None,
        } => format!("generation {generation}"),
        V03Target::Generation {
            generation,
            index: Some(i),
        } => format!("generation {generation} WAL index {i:08x}"),
    }
}
