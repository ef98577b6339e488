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

/// The state directory of one database.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

const POSITION: &str = "position.json";
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
        StateDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads the saved position, if there is a readable one.
    pub fn load_position(&self) -> Option<SavedPosition> {
        let raw = std::fs::read(self.dir.join(POSITION)).ok()?;
        let f: PositionFile = serde_json::from_slice(&raw).ok()?;
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

    /// Saves the position (write to a temporary file, then rename).
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
        let bytes = serde_json::to_vec_pretty(&f).expect("position serializes");
        self.write_atomic(POSITION, &bytes, false)
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
        let _ = std::fs::remove_file(self.dir.join(PAGES));
    }

    fn write_atomic(&self, name: &str, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
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
        std::fs::write(s.path().join(POSITION), b"{garbage").unwrap();
        assert_eq!(s.load_position(), None);
    }
}
