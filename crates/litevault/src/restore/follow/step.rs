//! What to do next from a listing: apply a chain, wait, or rebuild; the staging folder.

use super::*;

/// A staging folder, removed when dropped.
pub(super) struct StagingDir(pub(super) PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A level-0 chain longer than this makes the follower look at every level
/// for a shorter one.
pub(super) const LONG_CHAIN: usize = 32;

/// How a chain relates to the follower's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// The chain starts right after the follower's TXID: its first file's
    /// pre-apply checksum must be the follower's checksum.
    Exact,
    /// The chain starts at or before the follower's TXID (compacted files):
    /// applying it over a later state gives the same result, proven by the
    /// post-apply checksum.
    Overlap,
    /// The whole chain from TXID 0.
    Rebuild,
}

pub(super) enum ApplyFailure {
    /// The replica does not continue from the follower's state.
    Discontinuity(String),
    /// Another connection wrote to the follower (found inside the write
    /// transaction): its data_version and the table of what it holds now.
    Foreign {
        data_version: i64,
        table: DbChecksum,
        stamp: Page1Stamp,
    },
    Error(FollowError),
}

impl From<FollowError> for ApplyFailure {
    fn from(e: FollowError) -> Self {
        ApplyFailure::Error(e)
    }
}

/// What to do next, given a listing.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    UpToDate,
    Empty,
    Apply {
        chain: Vec<LtxFileInfo>,
        exact: bool,
    },
    Rebuild {
        files: Vec<LtxFileInfo>,
        reason: String,
    },
}

/// Decides the next step from a listing of level 0 only (`complete` false:
/// `None` when that is not enough to decide) or of every level.
pub(super) fn next_step(files: &[LtxFileInfo], cur: Txid, complete: bool) -> Option<Step> {
    let Some(latest) = files.iter().map(|f| f.max_txid).max() else {
        return complete.then_some(Step::Empty);
    };
    if latest == cur && cur.0 > 0 {
        return Some(Step::UpToDate);
    }
    if latest > cur
        && cur.0 > 0
        && let Some(chain) = plan_chain(files, cur, latest)
    {
        return Some(Step::Apply { chain, exact: true });
    }
    if !complete {
        return None;
    }
    if cur.0 == 0 {
        return Some(Step::Rebuild {
            files: files.to_vec(),
            reason: "the follower is not at a state of the replica".into(),
        });
    }
    if latest < cur {
        return Some(Step::Rebuild {
            files: files.to_vec(),
            reason: format!(
                "the replica's latest TXID is {latest}, before the follower's {cur}: the replica was reset"
            ),
        });
    }
    // Compacted files that start at or before the follower's TXID and end
    // after it: the latest such start first (the smallest overlap).
    let mut starts: Vec<Txid> = files
        .iter()
        .filter(|f| f.min_txid <= cur && f.max_txid > cur)
        .filter_map(|f| f.min_txid.0.checked_sub(1).map(Txid))
        .collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    starts.dedup();
    for s in starts {
        if let Some(chain) = plan_chain(files, s, latest) {
            return Some(Step::Apply {
                chain,
                exact: false,
            });
        }
    }
    Some(Step::Rebuild {
        files: files.to_vec(),
        reason: format!(
            "no chain of files in the replica continues from the follower's TXID {cur} (retention removed them?)"
        ),
    })
}

/// The pre-apply checksum a file records, if any.
pub(super) fn pre_apply(h: &Header) -> Option<Checksum> {
    if !h.no_checksum() {
        Some(h.pre_apply_checksum)
    } else {
        h.reserved_checksums.map(|r| r.pre_apply)
    }
}
