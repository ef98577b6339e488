//! What the replicator persists next to the database, in
//! `.<name>-litevault/`: the WAL position reached and the per-page checksums of
//! the last shipped state.
//!
//! Both files are caches of facts the replica proves: a missing, stale or
//! damaged file makes the replicator fall back to comparing the database with
//! the replica's state, never to guessing.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ltx::{Checksum, DbChecksum, Txid};
use crate::wal::{WalChecksum, WalCursor};

/// Where in the WAL the replica's state ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalPosition {
    /// Everything up to `cursor` in the WAL generation with these salts is
    /// shipped.
    Frames {
        /// WAL header salt-1.
        salt1: u32,
        /// WAL header salt-2.
        salt2: u32,
        /// The end of the last shipped commit frame.
        cursor: WalCursor,
    },
    /// The WAL was empty or absent and the database file itself was shipped.
    NoWal,
}

#[derive(Serialize, Deserialize)]
struct PositionFile {
    version: u32,
    txid: String,
    checksum: String,
    page_size: u32,
    wal: Option<WalFrames>,
}

#[derive(Serialize, Deserialize)]
struct WalFrames {
    salt1: u32,
    salt2: u32,
    offset: u64,
    checksum1: u32,
    checksum2: u32,
}

/// The persisted position: a TXID, the database checksum at it and the WAL
/// position it corresponds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedPosition {
    /// The last TXID shipped.
    pub txid: Txid,
    /// The database checksum after it.
    pub checksum: Checksum,
    /// The page size.
    pub page_size: u32,
    /// Where in the WAL that state ends.
    pub wal: WalPosition,
}

fn position_from(f: PositionFile) -> Option<SavedPosition> {
    if f.version != 1 {
        return None;
    }
    let wal = match f.wal {
        Some(w) => WalPosition::Frames {
            salt1: w.salt1,
            salt2: w.salt2,
            cursor: WalCursor {
                offset: w.offset,
                checksum: WalChecksum(w.checksum1, w.checksum2),
            },
        },
        None => WalPosition::NoWal,
    };
    Some(SavedPosition {
        txid: f.txid.parse().ok()?,
        checksum: Checksum(u64::from_str_radix(&f.checksum, 16).ok()?),
        page_size: f.page_size,
        wal,
    })
}

/// The state directory of one database.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Sequence number of the last position slot written (0: not known yet).
    seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The position, saved after every shipped file: two fixed slots written in
/// turn, in place. Overwriting a slot allocates no inode (a new file and a
/// rename per commit cost more than the rest of the bookkeeping), and a torn
/// write can only damage the slot being written; the other still holds the
/// previous position.
const POSITION: &str = "position.slots";
/// The earlier format (one JSON file, replaced by rename), still read.
const POSITION_JSON: &str = "position.json";
const SLOT: usize = 512;
const SLOT_MAGIC: &[u8; 4] = b"LVP1";
const PAGES: &str = "pages.bin";

impl StateDir {
    /// The state directory for a database path: `.<name>-litevault` beside it.
    pub fn for_db(db: &Path) -> StateDir {
        let name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "db".into());
        let dir = db
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!(".{name}-litevault"));
        StateDir {
            dir,
            seq: Default::default(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads the saved position, if there is a readable one.
    pub fn load_position(&self) -> Option<SavedPosition> {
        match self.read_slots() {
            Some((seq, f)) => {
                self.seq
                    .fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
                position_from(f)
            }
            None if !self.dir.join(POSITION).exists() => {
                let raw = std::fs::read(self.dir.join(POSITION_JSON)).ok()?;
                position_from(serde_json::from_slice(&raw).ok()?)
            }
            None => None,
        }
    }

    /// The newest slot that verifies, with its sequence number.
    fn read_slots(&self) -> Option<(u64, PositionFile)> {
        let raw = std::fs::read(self.dir.join(POSITION)).ok()?;
        raw.chunks(SLOT)
            .filter_map(|slot| {
                if slot.len() < 24 || &slot[..4] != SLOT_MAGIC {
                    return None;
                }
                let seq = u64::from_be_bytes(slot[4..12].try_into().ok()?);
                let len = u32::from_be_bytes(slot[12..16].try_into().ok()?) as usize;
                let crc = u64::from_be_bytes(slot[16..24].try_into().ok()?);
                let body = slot.get(24..24 + len)?;
                let mut covered = slot[4..12].to_vec();
                covered.extend_from_slice(body);
                if crate::ltx::checksum::crc64(&covered) != crc {
                    return None;
                }
                Some((seq, serde_json::from_slice::<PositionFile>(body).ok()?))
            })
            .max_by_key(|(seq, _)| *seq)
    }

    /// Saves the position in the older of the two slots (no fsync: after a
    /// crash of the machine, an older position only means more to compare).
    pub fn save_position(&self, pos: &SavedPosition) -> std::io::Result<()> {
        let f = PositionFile {
            version: 1,
            txid: pos.txid.to_string(),
            checksum: pos.checksum.to_string(),
            page_size: pos.page_size,
            wal: match pos.wal {
                WalPosition::Frames {
                    salt1,
                    salt2,
                    cursor,
                } => Some(WalFrames {
                    salt1,
                    salt2,
                    offset: cursor.offset,
                    checksum1: cursor.checksum.0,
                    checksum2: cursor.checksum.1,
                }),
                WalPosition::NoWal => None,
            },
        };
        // Plain numbers and fixed-width hex strings: at most about 200
        // bytes, well within a slot; checked all the same.
        let body = serde_json::to_vec(&f).map_err(std::io::Error::other)?;
        if body.len() > SLOT - 24 {
            return Err(std::io::Error::other(format!(
                "the position takes {} bytes, more than a slot holds ({})",
                body.len(),
                SLOT - 24
            )));
        }
        use std::sync::atomic::Ordering;
        if self.seq.load(Ordering::Relaxed) == 0 {
            // First save by this process: continue after what is on disk.
            let on_disk = self.read_slots().map(|(s, _)| s).unwrap_or(0);
            self.seq.fetch_max(on_disk, Ordering::Relaxed);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut slot = Vec::with_capacity(SLOT);
        slot.extend_from_slice(SLOT_MAGIC);
        slot.extend_from_slice(&seq.to_be_bytes());
        slot.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let mut covered = seq.to_be_bytes().to_vec();
        covered.extend_from_slice(&body);
        slot.extend_from_slice(&crate::ltx::checksum::crc64(&covered).to_be_bytes());
        slot.extend_from_slice(&body);
        slot.resize(SLOT, 0);
        let path = self.dir.join(POSITION);
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir)?;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?;
                // The old format must not be read back after this one.
                let _ = std::fs::remove_file(self.dir.join(POSITION_JSON));
                f
            }
            Err(e) => return Err(e),
        };
        use std::os::unix::fs::FileExt;
        file.write_all_at(&slot, (seq % 2) * SLOT as u64)
    }

    /// Reads the per-page checksum table and the TXID it belongs to.
    pub fn load_pages(&self) -> Option<(Txid, DbChecksum)> {
        let raw = std::fs::read(self.dir.join(PAGES)).ok()?;
        if raw.len() < 8 {
            return None;
        }
        let txid = Txid(u64::from_be_bytes(raw[..8].try_into().ok()?));
        let table = DbChecksum::from_bytes(&raw[8..]).ok()?;
        Some((txid, table))
    }

    /// Saves the per-page checksum table for a TXID, durably.
    pub fn save_pages(&self, txid: Txid, table: &DbChecksum) -> std::io::Result<()> {
        let mut bytes = txid.0.to_be_bytes().to_vec();
        bytes.extend_from_slice(&table.to_bytes());
        self.write_atomic(PAGES, &bytes, true)
    }

    /// Removes the saved state (e.g. when the replica was reset).
    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.dir.join(POSITION));
        let _ = std::fs::remove_file(self.dir.join(POSITION_JSON));
        let _ = std::fs::remove_file(self.dir.join(PAGES));
        self.seq.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn write_atomic(&self, name: &str, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            crate::fsync_faults::sync_all(&f, &tmp)?;
        }
        drop(f);
        std::fs::rename(&tmp, self.dir.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDir::for_db(&dir.path().join("app.db"));
        assert!(db.path().ends_with(".app.db-litevault"));
        let s = db;
        assert_eq!(s.load_position(), None);
        let p = SavedPosition {
            txid: Txid(0x1a),
            checksum: Checksum(0x8000_0000_0000_1234),
            page_size: 4096,
            wal: WalPosition::Frames {
                salt1: 1,
                salt2: 2,
                cursor: WalCursor {
                    offset: 4152,
                    checksum: WalChecksum(3, 4),
                },
            },
        };
        s.save_position(&p).unwrap();
        assert_eq!(s.load_position(), Some(p));
        let p2 = SavedPosition {
            wal: WalPosition::NoWal,
            ..p
        };
        s.save_position(&p2).unwrap();
        assert_eq!(s.load_position(), Some(p2));
        // A torn write damages one slot: the other still has the previous
        // position.
        let p3 = SavedPosition {
            txid: Txid(0x1b),
            ..p
        };
        s.save_position(&p3).unwrap();
        let path = s.path().join(POSITION);
        let mut raw = std::fs::read(&path).unwrap();
        let newest = (0..2)
            .find(|i| {
                raw[i * SLOT + 30] != 0 && {
                    let seq =
                        u64::from_be_bytes(raw[i * SLOT + 4..i * SLOT + 12].try_into().unwrap());
                    seq % 2 == *i as u64 && seq == 3
                }
            })
            .unwrap();
        raw[newest * SLOT + 40] ^= 0xff;
        std::fs::write(&path, &raw).unwrap();
        assert_eq!(s.load_position(), Some(p2), "the previous position");
        // A new process continues the sequence after what is on disk.
        let again = StateDir::for_db(&dir.path().join("app.db"));
        again.save_position(&p3).unwrap();
        assert_eq!(again.load_position(), Some(p3));
        assert_eq!(
            StateDir::for_db(&dir.path().join("app.db")).load_position(),
            Some(p3)
        );
        std::fs::write(&path, b"{garbage").unwrap();
        assert_eq!(s.load_position(), None);
    }

    #[test]
    fn the_older_json_position_is_read_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::for_db(&dir.path().join("app.db"));
        std::fs::create_dir_all(s.path()).unwrap();
        std::fs::write(
            s.path().join(POSITION_JSON),
            br#"{"version":1,"txid":"000000000000002a","checksum":"8000000000000001","page_size":4096,"wal":null}"#,
        )
        .unwrap();
        let p = s.load_position().unwrap();
        assert_eq!((p.txid, p.wal), (Txid(0x2a), WalPosition::NoWal));
        let next = SavedPosition {
            txid: Txid(0x2b),
            ..p
        };
        s.save_position(&next).unwrap();
        assert!(!s.path().join(POSITION_JSON).exists());
        assert_eq!(s.load_position(), Some(next));
    }
}
