//! The local LTX store: every file the database produces is kept here until
//! every replica has it, so that replicas ship at their own pace and a slow
//! or failing replica never holds back the others or the WAL.
//!
//! Files live in `.<db>-litevault/ltx/<level>/<min>-<max>.ltx`, the same
//! layout as a `file://` replica. Small files are also kept in memory until
//! every replica has them. Writes are not fsynced one by one: before a
//! checkpoint may move frames out of the WAL, [`Outbox::sync`] makes every
//! file not yet in every replica durable. Until then the WAL itself still
//! holds them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::body::{LtxBody, SPILL_THRESHOLD};
use crate::fsync_faults;
use crate::ltx::{self, Checksum, Txid};

/// One file in the local store.
#[derive(Clone, Debug)]
pub struct OutboxFile {
    /// Level (0 for files produced from the WAL).
    pub level: u8,
    /// First TXID.
    pub min_txid: Txid,
    /// Last TXID.
    pub max_txid: Txid,
    /// Checksum of the state before it (0 for a snapshot).
    pub pre_apply: Checksum,
    /// Checksum of the state after it.
    pub post_apply: Checksum,
    /// LTX header timestamp (milliseconds since the epoch).
    pub timestamp_ms: i64,
    /// Size in bytes.
    pub size: u64,
    /// The bytes, while small and not yet everywhere.
    pub bytes: Option<Bytes>,
    /// `true` once fsynced.
    durable: bool,
    /// An fsync of it failed: only a fresh copy, fsynced, makes it durable
    /// (see [`Outbox::sync`]).
    fsync_failed: bool,
    /// Which addition this is (tells a replaced file from the one it replaced).
    generation: u64,
}

/// A file of the local store that is not yet durable.
#[derive(Clone, Debug)]
pub struct UnsyncedFile {
    level: u8,
    min_txid: Txid,
    max_txid: Txid,
    generation: u64,
    /// Where it is.
    pub path: PathBuf,
}

impl UnsyncedFile {
    /// Fsyncs it (and nothing else: its folder is synced by the final
    /// [`Outbox::sync`]).
    pub fn fsync(&self) -> std::io::Result<()> {
        fsync_faults::sync_path(&self.path)
    }
}

impl OutboxFile {
    /// `true` for a file starting at TXID 1.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }
}

/// The local LTX store of one database.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    files: BTreeMap<(u8, u64), OutboxFile>,
    /// Additions so far.
    added: u64,
}

/// Bytes of small files kept in memory at most.
const MEMORY_BUDGET: u64 = 8 << 20;

impl Outbox {
    /// Opens the store under `dir` and indexes the files already there
    /// (left by an earlier run). Unreadable files are removed: they were
    /// never acknowledged as durable.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        Self::index(dir, true)
    }

    /// Indexes the store of a database another process may be replicating:
    /// reads only, removes nothing.
    pub fn read_only(dir: &Path) -> std::io::Result<Outbox> {
        Self::index(dir, false)
    }

    fn index(dir: &Path, tidy: bool) -> std::io::Result<Outbox> {
        let remove = |p: &Path| {
            if tidy {
                let _ = std::fs::remove_file(p);
            }
        };
        let mut files = BTreeMap::new();
        let root = dir.join("ltx");
        if let Ok(levels) = std::fs::read_dir(&root) {
            for level in levels.flatten() {
                let Some(lv) = level
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u8>().ok())
                else {
                    continue;
                };
                for f in std::fs::read_dir(level.path())?.flatten() {
                    let name = f.file_name();
                    let Some((min, max)) = name.to_str().and_then(ltx::parse_filename) else {
                        remove(&f.path());
                        continue;
                    };
                    match read_meta(&f.path()) {
                        Some((pre, post, ts, size)) => {
                            files.insert(
                                (lv, max.0),
                                OutboxFile {
                                    level: lv,
                                    min_txid: min,
                                    max_txid: max,
                                    pre_apply: pre,
                                    post_apply: post,
                                    timestamp_ms: ts,
                                    size,
                                    bytes: None,
                                    durable: true,
                                    fsync_failed: false,
                                    generation: 0,
                                },
                            );
                        }
                        None => remove(&f.path()),
                    }
                }
            }
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
            files,
            added: 0,
        })
    }

    /// The folder of a level's files.
    pub fn level_dir(&self, level: u8) -> PathBuf {
        self.dir.join("ltx").join(level.to_string())
    }

    /// Path of a file.
    pub fn path(&self, level: u8, min: Txid, max: Txid) -> PathBuf {
        self.level_dir(level).join(ltx::format_filename(min, max))
    }

    /// Adds a file (written to disk; small bodies are also kept in memory).
    /// Files of the same level at or past `min` are dropped first: they
    /// belong to a history the database no longer follows.
    pub fn add(
        &mut self,
        level: u8,
        header: &ltx::Header,
        post_apply: Checksum,
        body: LtxBody,
    ) -> std::io::Result<OutboxFile> {
        let (min, max) = (header.min_txid, header.max_txid);
        let stale: Vec<(u8, u64)> = self
            .files
            .range((level, min.0)..=(level, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.remove(k.0, Txid(k.1));
        }
        std::fs::create_dir_all(self.level_dir(level))?;
        let path = self.path(level, min, max);
        let size = body.len();
        let bytes = match body {
            LtxBody::Memory(b) => {
                let tmp = path.with_extension("ltx.tmp");
                let mut f = File::create(&tmp)?;
                f.write_all(&b)?;
                drop(f);
                std::fs::rename(&tmp, &path)?;
                Some(b)
            }
            LtxBody::Spilled(f) => {
                f.persist(&path)?;
                None
            }
            LtxBody::File { path: from, .. } => {
                std::fs::copy(&from, &path)?;
                None
            }
        };
        let file = OutboxFile {
            level,
            min_txid: min,
            max_txid: max,
            pre_apply: if header.is_snapshot() {
                Checksum(0)
            } else {
                header
                    .reserved_checksums
                    .map(|r| r.pre_apply)
                    .unwrap_or(header.pre_apply_checksum)
            },
            post_apply,
            timestamp_ms: header.timestamp_ms,
            size,
            // Only level-0 files are uploaded from here; compaction outputs
            // are read back rarely and stay on disk.
            bytes: bytes.filter(|b| level == 0 && b.len() <= SPILL_THRESHOLD),
            durable: false,
            fsync_failed: false,
            generation: self.added.wrapping_add(1),
        };
        self.added = file.generation;
        self.files.insert((level, max.0), file.clone());
        self.trim_memory();
        Ok(file)
    }

    fn trim_memory(&mut self) {
        let mut held: u64 = self
            .files
            .values()
            .filter_map(|f| f.bytes.as_ref().map(|b| b.len() as u64))
            .sum();
        for f in self.files.values_mut() {
            if held <= MEMORY_BUDGET {
                break;
            }
            if let Some(b) = f.bytes.take() {
                held -= b.len() as u64;
            }
        }
    }

    /// The body of a file, to upload it.
    pub fn body(&self, f: &OutboxFile) -> LtxBody {
        match &f.bytes {
            Some(b) => LtxBody::Memory(b.clone()),
            None => LtxBody::File {
                path: self.path(f.level, f.min_txid, f.max_txid),
                len: f.size,
            },
        }
    }

    /// The file of `level` ending at `max`, if kept.
    pub fn get(&self, level: u8, min: Txid, max: Txid) -> Option<&OutboxFile> {
        self.files
            .get(&(level, max.0))
            .filter(|f| f.min_txid == min)
    }

    /// The chain of level-0 files continuing the state (`txid`, `checksum`)
    /// up to exactly `upto`: empty when `txid` is `upto`, `None` when it
    /// cannot be continued from here (a file is missing, or the checksums
    /// do not link). Files past `upto` (produced but not yet announced) are
    /// left for later.
    pub fn chain_after(
        &self,
        txid: Txid,
        checksum: Checksum,
        upto: Txid,
    ) -> Option<Vec<OutboxFile>> {
        let mut out = Vec::new();
        let mut at = (txid, checksum);
        if upto <= txid {
            return (upto == txid).then_some(out);
        }
        // Cannot overflow: `txid < upto`, and `at` stays below `upto` inside
        // the loop (every file taken ends at most at `upto`, and the loop
        // ends when one reaches it).
        for f in self
            .files
            .range((0, txid.0.checked_add(1)?)..=(0, upto.0))
            .map(|(_, f)| f)
        {
            if at.0 == upto {
                break;
            }
            let next = at.0.0.checked_add(1)?;
            if f.min_txid.0 > next {
                return None;
            }
            if f.min_txid.0 != next {
                continue;
            }
            // A snapshot starts a chain of its own; anything else must link.
            if !(f.is_snapshot() || f.pre_apply == at.1) {
                return None;
            }
            at = (f.max_txid, f.post_apply);
            out.push(f.clone());
        }
        (at.0 == upto).then_some(out)
    }

    /// Level-0 files that together cover exactly `min..=max` (the pieces of
    /// a file that went up merged), if the store still holds all of them.
    pub fn covering(&self, min: Txid, max: Txid) -> Option<Vec<OutboxFile>> {
        let mut out = Vec::new();
        let mut next = Some(min.0);
        for f in self.files.range((0, min.0)..=(0, max.0)).map(|(_, f)| f) {
            if Some(f.min_txid.0) != next {
                continue;
            }
            // `None` once a piece ends at the last TXID there is.
            next = f.max_txid.0.checked_add(1);
            out.push(f.clone());
        }
        (next == max.0.checked_add(1) && !out.is_empty()).then_some(out)
    }

    /// The newest file of a level.
    pub fn newest(&self, level: u8) -> Option<&OutboxFile> {
        self.files
            .range((level, 0)..=(level, u64::MAX))
            .next_back()
            .map(|(_, f)| f)
    }

    /// Every file, by level then TXID.
    pub fn files(&self) -> impl Iterator<Item = &OutboxFile> {
        self.files.values()
    }

    /// Removes a file.
    pub fn remove(&mut self, level: u8, max: Txid) {
        if let Some(f) = self.files.remove(&(level, max.0)) {
            let _ = std::fs::remove_file(self.path(level, f.min_txid, f.max_txid));
        }
    }

    /// Removes every file.
    pub fn clear(&mut self) {
        let keys: Vec<_> = self.files.keys().copied().collect();
        for (l, m) in keys {
            self.remove(l, Txid(m));
        }
    }

    /// Drops the in-memory copies of level-0 files up to `txid` (every
    /// replica has them; the disk copy stays for compaction).
    pub fn release_memory(&mut self, txid: Txid) {
        for f in self.files.range_mut((0, 0)..=(0, txid.0)).map(|(_, f)| f) {
            f.bytes = None;
        }
    }

    /// Makes every file durable (fsync of the files and their folders); on
    /// failure, says which file or folder failed.
    ///
    /// A file whose fsync failed is written anew and the copy fsynced, never
    /// fsynced again as it is: after a failed fsync, Linux may mark the
    /// file's unwritten pages clean (or drop them) and report the error only
    /// once, so a second fsync can succeed with the bytes not on disk.
    pub fn sync(&mut self) -> Result<(), (PathBuf, std::io::Error)> {
        let mut dirs = std::collections::BTreeSet::new();
        for f in self.files.values_mut().filter(|f| !f.durable) {
            let path = self
                .dir
                .join("ltx")
                .join(f.level.to_string())
                .join(ltx::format_filename(f.min_txid, f.max_txid));
            let done = if f.fsync_failed {
                rewrite(&path, f.bytes.as_ref())
            } else {
                fsync_faults::sync_path(&path)
            };
            if let Err(e) = done {
                let what = if f.fsync_failed {
                    "writing it anew after a failed fsync"
                } else {
                    "fsync"
                };
                f.fsync_failed = true;
                return Err((path, fsync_error(what, e)));
            }
            f.fsync_failed = false;
            f.durable = true;
        }
        // The folders too, also of files fsynced ahead (`mark_durable`):
        // their names are durable only once their folder is.
        for f in self.files.values() {
            dirs.insert(self.level_dir(f.level));
        }
        for d in dirs {
            if let Err(e) = fsync_faults::sync_path(&d) {
                return Err((d, fsync_error("fsync", e)));
            }
        }
        Ok(())
    }

    /// The files not yet durable, to fsync outside the lock
    /// ([`Outbox::mark_durable`] afterwards); not those whose fsync failed,
    /// which only [`Outbox::sync`] makes durable.
    pub fn unsynced(&self) -> Vec<UnsyncedFile> {
        self.files
            .values()
            .filter(|f| !f.durable && !f.fsync_failed)
            .map(|f| UnsyncedFile {
                level: f.level,
                min_txid: f.min_txid,
                max_txid: f.max_txid,
                generation: f.generation,
                path: self.path(f.level, f.min_txid, f.max_txid),
            })
            .collect()
    }

    /// Records files fsynced outside the lock as durable; a file replaced
    /// meanwhile (another body under the same name) stays not durable, and
    /// so does one whose fsync failed before (see [`Outbox::sync`]).
    pub fn mark_durable(&mut self, synced: &[UnsyncedFile]) {
        for f in self.matching(synced) {
            if !f.fsync_failed {
                f.durable = true;
            }
        }
    }

    /// Records files whose fsync outside the lock failed.
    pub fn mark_fsync_failed(&mut self, failed: &[UnsyncedFile]) {
        for f in self.matching(failed) {
            f.fsync_failed = true;
        }
    }

    /// The files of the index that are still the ones listed.
    fn matching<'a>(
        &'a mut self,
        listed: &'a [UnsyncedFile],
    ) -> impl Iterator<Item = &'a mut OutboxFile> + 'a {
        self.files.values_mut().filter(move |f| {
            listed.iter().any(|s| {
                (s.level, s.min_txid, s.max_txid, s.generation)
                    == (f.level, f.min_txid, f.max_txid, f.generation)
            })
        })
    }

    /// `true` when some file is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.files.values().any(|f| !f.durable)
    }
}

/// Writes a file whose fsync failed anew (from the bytes kept in memory,
/// else as read back), fsyncs the copy and puts it in its place.
fn rewrite(path: &Path, kept: Option<&Bytes>) -> std::io::Result<()> {
    let read;
    let bytes: &[u8] = match kept {
        Some(b) => b,
        None => {
            read = std::fs::read(path)?;
            &read
        }
    };
    let tmp = path.with_extension("ltx.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    fsync_faults::sync_all(&f, &tmp)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The error of making a file durable, saying what failed and what it
/// holds back.
fn fsync_error(what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!(
            "{what} failed ({e}); the WAL keeps the frames not yet durable here and no checkpoint runs until this succeeds"
        ),
    )
}

/// Pre- and post-apply checksums, timestamp and size of an LTX file on disk.
fn read_meta(path: &Path) -> Option<(Checksum, Checksum, i64, u64)> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    if size < (ltx::HEADER_SIZE + ltx::TRAILER_SIZE) as u64 {
        return None;
    }
    let mut h = vec![0u8; ltx::HEADER_SIZE];
    f.read_exact_at(&mut h, 0).ok()?;
    let mut t = vec![0u8; ltx::TRAILER_SIZE];
    f.read_exact_at(&mut t, size - ltx::TRAILER_SIZE as u64)
        .ok()?;
    let header = ltx::Header::decode(&h).ok()?;
    let trailer = ltx::Trailer::decode(&t).ok()?;
    let (pre, post) = ltx::rolling_checksums(&header, &trailer)?;
    Some((
        if header.is_snapshot() {
            Checksum(0)
        } else {
            pre
        },
        post,
        header.timestamp_ms,
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(min: u64, max: u64) -> ltx::Header {
        ltx::Header {
            min_txid: Txid(min),
            max_txid: Txid(max),
            page_size: 4096,
            commit: 1,
            ..Default::default()
        }
    }

    #[test]
    fn files_fsynced_ahead_are_durable_unless_replaced_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let body = |n: usize| LtxBody::Memory(Bytes::from(vec![7u8; n]));
        o.add(0, &header(1, 1), Checksum(1), body(10)).unwrap();
        o.add(0, &header(2, 3), Checksum(2), body(20)).unwrap();
        let pending = o.unsynced();
        assert_eq!(pending.len(), 2);
        for f in &pending {
            f.fsync().unwrap();
        }
        // Meanwhile, TXIDs 2-3 are replaced by another file (a new history).
        o.add(0, &header(2, 3), Checksum(3), body(20)).unwrap();
        o.mark_durable(&pending);
        let left = o.unsynced();
        assert_eq!(left.len(), 1, "only the replaced file is left: {left:?}");
        assert!(
            left[0]
                .path
                .ends_with(ltx::format_filename(Txid(2), Txid(3)))
        );
        o.sync().unwrap();
        assert_eq!(o.unsynced().len(), 0);
        assert!(!o.has_unsynced());
    }
    #[test]
    fn a_file_whose_fsync_failed_is_written_anew_before_it_counts_as_durable() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let body = |n: usize, b: u8| LtxBody::Memory(Bytes::from(vec![b; n]));
        o.add(0, &header(1, 1), Checksum(1), body(10, 1)).unwrap();
        let path = o.path(0, Txid(1), Txid(1));
        fsync_faults::arm(dir.path(), 1);
        let (failed, e) = o.sync().unwrap_err();
        assert_eq!(failed, path, "the error names the file");
        assert_eq!(e.raw_os_error(), None, "wrapped with what failed: {e}");
        assert!(e.to_string().contains("fsync failed"), "{e}");
        assert!(
            o.has_unsynced(),
            "a failed fsync leaves the file not durable"
        );
        let inode = std::fs::metadata(&path).unwrap().ino();
        // The fsync run ahead, outside the lock, leaves that file to `sync`,
        // and fails for the next one (it is recorded); then it succeeds: a
        // success after a failure proves nothing.
        o.add(0, &header(2, 2), Checksum(2), body(10, 2)).unwrap();
        let pending = o.unsynced();
        assert_eq!(pending.len(), 1, "{pending:?}");
        fsync_faults::arm(dir.path(), 1);
        assert!(pending[0].fsync().is_err());
        o.mark_fsync_failed(&pending);
        pending[0].fsync().unwrap();
        o.mark_durable(&pending);
        assert!(o.has_unsynced(), "neither counts as durable yet");
        assert_eq!(o.unsynced().len(), 0, "both wait for a fresh copy");
        assert_eq!(fsync_faults::disarm(dir.path()), 2);
        o.sync().unwrap();
        assert!(!o.has_unsynced());
        for (max, b) in [(1, 1u8), (2, 2)] {
            let p = o.path(0, Txid(max), Txid(max));
            assert_eq!(std::fs::read(&p).unwrap(), vec![b; 10], "same bytes");
            if max == 1 {
                assert_ne!(
                    std::fs::metadata(&p).unwrap().ino(),
                    inode,
                    "a fresh copy replaced the file whose fsync failed"
                );
            }
        }
        // Files on disk only (not kept in memory) are read back for the copy.
        o.add(0, &header(3, 3), Checksum(3), body(10, 3)).unwrap();
        o.release_memory(Txid(3));
        fsync_faults::arm(dir.path(), 1);
        assert!(o.sync().is_err());
        fsync_faults::disarm(dir.path());
        o.sync().unwrap();
        assert_eq!(
            std::fs::read(o.path(0, Txid(3), Txid(3))).unwrap(),
            vec![3u8; 10]
        );
    }
}
