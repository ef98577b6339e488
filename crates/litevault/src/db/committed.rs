//! Where the committed WAL ends, as SQLite itself says.
//!
//! The WAL file alone cannot tell: frames that verify and end in a commit
//! frame may never have been committed (their writer was killed before it
//! published them in the wal-index, and the next writer overwrites them).
//! Every read of WAL frames is therefore bounded by the wal-index header
//! ([`crate::wal::WalIndexHeader`]), read after the read mark is taken, and
//! a scan must end exactly on the frame the index names, with the checksum
//! and database size the index records.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{DbError, WatchedDb, io_err};
use crate::wal::{self, WAL_INDEX_HEADERS_SIZE, WalHeader, WalIndexError, WalIndexHeader};

/// The committed part of the WAL.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Committed {
    /// No frame of the WAL is committed: the database file is the committed
    /// state (no WAL, a header being rewritten, or a restart under way).
    NoFrames,
    /// Frames of the generation `header` begins are committed up to byte
    /// `end` (the header's end when none is yet).
    Frames {
        header: WalHeader,
        end: u64,
        index: WalIndexHeader,
    },
}

/// How often a header that is being published is read again.
const INDEX_READS: usize = 64;

/// Tries of [`WatchedDb::committed`] before it gives up for this pass.
const COMMITTED_READS: usize = 10;

/// Reads the wal-index header through `shm`, a descriptor of the `-shm`
/// file that stays open as long as SQLite's connections: SQLite's read
/// marks are POSIX locks on that file, and closing *any* descriptor of it
/// would drop every one this process holds. `None` when the index is not
/// initialised, or never found still (a writer publishing at every read).
pub(crate) fn read_wal_index(shm: &File) -> std::io::Result<Option<WalIndexHeader>> {
    let mut buf = [0u8; WAL_INDEX_HEADERS_SIZE];
    for attempt in 0..INDEX_READS {
        let n = shm.read_at(&mut buf, 0)?;
        match WalIndexHeader::parse(&buf[..n]) {
            Ok(h) => return Ok(Some(h)),
            Err(WalIndexError::TooShort | WalIndexError::NotInitialised) => return Ok(None),
            // Being written (SQLite writes the second copy, then the first).
            Err(WalIndexError::Changing | WalIndexError::BadChecksum) => {
                if attempt > 8 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
    Ok(None)
}

/// Opens the `-shm` file of a database whose connections are open (so it
/// exists). The descriptor must outlive them: see [`read_wal_index`].
pub(crate) fn open_shm(shm: &Path) -> std::io::Result<Option<File>> {
    match File::open(shm) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl WatchedDb {
    /// The committed part of the WAL, read after the read mark is taken
    /// (so the index header is initialised). `None` when the WAL file and
    /// the index do not agree after a few tries: a restart or truncation is
    /// under way; look again.
    pub(crate) fn committed(&self) -> Result<Option<Committed>, DbError> {
        for attempt in 0..COMMITTED_READS {
            if attempt > 2 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let Some(shm) = self.shm_file.get() else {
                // Opened once, the first time it exists, and then kept.
                if let Some(f) = open_shm(&self.shm_path).map_err(io_err(&self.shm_path))? {
                    let _ = self.shm_file.set(f);
                }
                continue;
            };
            // The index first, then the WAL file: SQLite writes a frame
            // before the index names it, so the file read second is at
            // least as long as the index says. Read the other way round, a
            // writer that commits between the two reads makes the index
            // name frames past the length just read, and a busy writer can
            // do that on every try: the replicator then never ships.
            let index = read_wal_index(shm).map_err(io_err(&self.shm_path))?;
            let Some(index) = index else {
                continue;
            };
            let wal = self.read_wal_header()?;
            match wal {
                Some((header, len)) if index.describes(&header) => {
                    let end = index.committed_end(&header);
                    if end > len {
                        // The file is shorter than the index says: truncated
                        // under us; the next look sees the new generation.
                        continue;
                    }
                    return Ok(Some(Committed::Frames { header, end, index }));
                }
                // The index already names the next generation and nothing
                // of it is committed, or there is no WAL at all.
                _ if index.mx_frame == 0 => return Ok(Some(Committed::NoFrames)),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Whether a scan of the committed frames from `cursor` ended on the
    /// frame the index names, with its checksum and database size.
    pub(crate) fn scan_reaches(scan: &wal::WalScan, end: u64, index: &WalIndexHeader) -> bool {
        scan.end.offset == end
            && scan.uncommitted_frames == 0
            && scan
                .txns
                .last()
                .is_none_or(|t| t.end.checksum == index.frame_checksum && t.commit == index.n_page)
    }
}
