//! The persisted position (`follow.json`): where a follower resumes.

use super::*;

/// The persisted position: `follow.json` in the database's litevault state
/// folder, per replica.
#[derive(Clone, Debug)]
pub(super) struct PositionFile {
    pub(super) dir: PathBuf,
    pub(super) replica: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct PositionJson {
    pub(super) version: u32,
    pub(super) replica: String,
    pub(super) txid: String,
    pub(super) checksum: String,
    pub(super) page_size: u32,
    /// The replica's page-1 stamp, hex.
    pub(super) stamp: String,
    /// The position a batch being committed leads to.
    pub(super) pending: Option<PendingJson>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct PendingJson {
    pub(super) txid: String,
    pub(super) checksum: String,
    pub(super) stamp: String,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Saved {
    pub(super) txid: Txid,
    pub(super) checksum: Checksum,
    pub(super) stamp: Page1Stamp,
    pub(super) pending: Option<SavedPending>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct SavedPending {
    pub(super) txid: Txid,
    pub(super) checksum: Checksum,
    pub(super) stamp: Page1Stamp,
}

pub(super) const FOLLOW_FILE: &str = "follow.json";

pub(super) fn parse_stamp(s: &str) -> Option<Page1Stamp> {
    hex::decode(s).ok()?.try_into().ok().map(Page1Stamp)
}

impl PositionFile {
    pub(super) fn new(db: &Path, replica: &str) -> PositionFile {
        PositionFile {
            dir: StateDir::for_db(db).path().to_path_buf(),
            replica: replica.to_string(),
        }
    }

    pub(super) fn load(&self) -> Option<Saved> {
        let raw = std::fs::read(self.dir.join(FOLLOW_FILE)).ok()?;
        let j: PositionJson = serde_json::from_slice(&raw).ok()?;
        if j.version != 1 || j.replica != self.replica {
            return None;
        }
        let sum = |s: &str| u64::from_str_radix(s, 16).ok().map(Checksum);
        Some(Saved {
            txid: j.txid.parse().ok()?,
            checksum: sum(&j.checksum)?,
            stamp: parse_stamp(&j.stamp)?,
            pending: j.pending.and_then(|p| {
                Some(SavedPending {
                    txid: p.txid.parse().ok()?,
                    checksum: sum(&p.checksum)?,
                    stamp: parse_stamp(&p.stamp)?,
                })
            }),
        })
    }

    pub(super) fn save(
        &self,
        pos: &FollowPosition,
        stamp: Page1Stamp,
        pending: Option<(&FollowPosition, Page1Stamp)>,
        sync: bool,
    ) -> Result<(), FollowError> {
        let j = PositionJson {
            version: 1,
            replica: self.replica.clone(),
            txid: pos.txid.to_string(),
            checksum: pos.checksum.to_string(),
            page_size: pos.page_size,
            stamp: hex::encode(stamp.0),
            pending: pending.map(|(p, st)| PendingJson {
                txid: p.txid.to_string(),
                checksum: p.checksum.to_string(),
                stamp: hex::encode(st.0),
            }),
        };
        let tmp = self.dir.join(format!("{FOLLOW_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(&j).map_err(|e| io_err(&tmp)(e.into()))?;
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        if sync {
            f.sync_all().map_err(io_err(&tmp))?;
        }
        drop(f);
        let dst = self.dir.join(FOLLOW_FILE);
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        if sync {
            let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}
