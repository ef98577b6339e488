//! Compaction and retention planning: pure functions over a replica's
//! listing, so that the rules can be tested without a store.
//!
//! # The rules
//!
//! - **Compaction** into level `L` takes the files of level `L-1` that start
//!   after the newest file of level `L`, as one contiguous run ending at the
//!   newest file of `L-1`, and merges them into one file of level `L`.
//! - **Snapshots** (level 9) hold the whole database at one TXID.
//! - **Retention** deletes: snapshots older than the snapshot retention
//!   (never the newest one); files of levels 1 and up (below 9) that end
//!   before the oldest retained snapshot; level-0 files already covered by
//!   level 1 and older than the L0 retention, except the newest level-0
//!   file, which stays whatever its age: Litestream takes a replica's
//!   position from level 0 alone, and without that file `litestream
//!   replicate` would start over at TXID 1 on top of this history.
//! - **Safety net**: a file chosen by those rules is deleted only if every
//!   restore point that stays promised is still reachable without it. The
//!   promised points are the end TXIDs of every file that is kept, from the
//!   oldest retained snapshot on, and of every level-0 file that is kept. So compaction that lags, a missing level
//!   or a gap never turns into a lost restore point.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::chain::reachable;
use crate::ltx::Txid;
use crate::replica::{LtxFileInfo, SNAPSHOT_LEVEL};

/// Compaction and retention settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Whether expired files are deleted at all.
    pub enabled: bool,
    /// Compaction interval of levels 1, 2, ... (empty: no compaction).
    pub levels: Vec<Duration>,
    /// How often a snapshot (level 9) is taken; `None`: never. A snapshot is
    /// skipped when the database has not changed since the last one.
    pub snapshot_interval: Option<Duration>,
    /// How long snapshots (and the files needed to restore any point after
    /// the oldest of them) are kept.
    pub snapshot_retention: Duration,
    /// How long level-0 files are kept once compacted into level 1.
    pub l0_retention: Duration,
    /// How often retention runs.
    pub check_interval: Duration,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        use crate::defaults;
        RetentionOptions {
            enabled: defaults::RETENTION_ENABLED,
            levels: defaults::COMPACTION_LEVELS.to_vec(),
            snapshot_interval: Some(defaults::SNAPSHOT_INTERVAL),
            snapshot_retention: defaults::SNAPSHOT_RETENTION,
            l0_retention: defaults::L0_RETENTION,
            check_interval: defaults::L0_RETENTION_CHECK_INTERVAL,
        }
    }
}

/// The files of level `dst - 1` to merge into one file of level `dst`:
/// those starting after the newest file of `dst`, as one contiguous run
/// ending at the newest file of the source level. `None` when there is
/// nothing new.
pub fn plan_compaction(files: &[LtxFileInfo], dst: u8) -> Option<Vec<LtxFileInfo>> {
    let src = dst.checked_sub(1)?;
    let dst_max = files
        .iter()
        .filter(|f| f.level == dst)
        .map(|f| f.max_txid)
        .max()
        .unwrap_or(Txid(0));
    let mut run: Vec<LtxFileInfo> = files
        .iter()
        .filter(|f| f.level == src && f.min_txid > dst_max)
        .cloned()
        .collect();
    run.sort_by_key(|f| f.min_txid);
    // Keep the contiguous run that ends at the newest file.
    let mut start = run.len();
    while start > 0 {
        let f = &run[start - 1];
        if run
            .get(start)
            .is_some_and(|next| f.max_txid.0.checked_add(1) != Some(next.min_txid.0))
        {
            break;
        }
        start -= 1;
        if f.min_txid.0 == 1 {
            // A snapshot-like file: nothing before it is needed.
            break;
        }
    }
    let run = run.split_off(start);
    (!run.is_empty()).then_some(run)
}

/// Orders files for deletion newest first: a deletion cut short (a crash,
/// a failed request) then leaves the oldest doomed files, whose chain from
/// TXID 1 is still whole, so every file that is left still restores.
pub fn order_for_deletion(files: &mut [LtxFileInfo]) {
    files.sort_by(|a, b| b.max_txid.cmp(&a.max_txid).then(b.level.cmp(&a.level)));
}

/// The files retention deletes at `now`. See the module documentation.
pub fn plan_retention(
    files: &[LtxFileInfo],
    now: DateTime<Utc>,
    opts: &RetentionOptions,
) -> Vec<LtxFileInfo> {
    let age = |f: &LtxFileInfo| (now - f.created).to_std().unwrap_or(Duration::ZERO);
    let mut snapshots: Vec<&LtxFileInfo> =
        files.iter().filter(|f| f.level == SNAPSHOT_LEVEL).collect();
    snapshots.sort_by_key(|f| f.max_txid);
    let newest_snapshot = snapshots.last().map(|f| f.max_txid);
    let mut doomed: Vec<&LtxFileInfo> = Vec::new();
    for s in &snapshots {
        if Some(s.max_txid) != newest_snapshot && age(s) > opts.snapshot_retention {
            doomed.push(s);
        }
    }
    let oldest_kept_snapshot = snapshots
        .iter()
        .filter(|s| !doomed.iter().any(|d| d == *s))
        .map(|s| s.max_txid)
        .min();
    let last_level = opts.levels.len() as u8;
    let l1_max = files
        .iter()
        .filter(|f| f.level == 1)
        .map(|f| f.max_txid)
        .max();
    let l0_max = files
        .iter()
        .filter(|f| f.level == 0)
        .map(|f| f.max_txid)
        .max();
    for f in files {
        let expired = match f.level {
            SNAPSHOT_LEVEL => false,
            0 => {
                // Covered by level 1 (or no compaction at all: then level 0
                // is the history and follows the snapshots) and old enough.
                let covered = match l1_max {
                    Some(m) => f.max_txid <= m,
                    None => last_level == 0 && oldest_kept_snapshot.is_some_and(|s| f.max_txid < s),
                };
                covered && age(f) > opts.l0_retention && Some(f.max_txid) != l0_max
            }
            _ => oldest_kept_snapshot.is_some_and(|s| f.max_txid < s),
        };
        if expired {
            doomed.push(f);
        }
    }
    // The safety net: never lose a promised restore point.
    let floor = oldest_kept_snapshot.unwrap_or(Txid(0));
    let keep: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| !doomed.iter().any(|d| d == f))
        .collect();
    let promised: Vec<u64> = {
        let reach_all = reachable(&files.iter().collect::<Vec<_>>());
        // Every kept file's end from the oldest kept snapshot on, and every
        // kept level-0 file's end whatever its TXID: a state younger than
        // the L0 retention stays restorable even when a snapshot was taken
        // after it.
        let mut p: Vec<u64> = keep
            .iter()
            .filter(|f| f.max_txid >= floor || f.level == 0)
            .map(|f| f.max_txid.0)
            .filter(|t| reach_all.contains(t))
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    // Delete newest-first candidates last: try each, keep it if a promised
    // point would become unreachable.
    let mut remaining: Vec<&LtxFileInfo> = files.iter().collect();
    let mut out = Vec::new();
    doomed.sort_by_key(|f| (f.max_txid, f.level));
    for d in doomed {
        let without: Vec<&LtxFileInfo> = remaining.iter().copied().filter(|f| *f != d).collect();
        let reach = reachable(&without);
        if promised.iter().all(|p| reach.contains(p)) {
            remaining = without;
            out.push(d.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn f(level: u8, min: u64, max: u64, age_s: i64, now: DateTime<Utc>) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: Txid(min),
            max_txid: Txid(max),
            size: 10,
            created: now - chrono::Duration::seconds(age_s),
        }
    }

    /// Listings are input: TXIDs at the ends of the range (a file starting
    /// at 0, which no valid name gives, or ending at the last TXID there
    /// is) plan without overflowing.
    #[test]
    fn extreme_txids_plan_without_overflow() {
        let now = Utc::now();
        let opts = RetentionOptions::default();
        let files = vec![
            f(0, 0, 0, 100_000, now),
            f(0, 0, 3, 100_000, now),
            f(0, 4, u64::MAX - 1, 100_000, now),
            f(0, u64::MAX, u64::MAX, 100_000, now),
            f(1, 1, 3, 100_000, now),
            f(9, 1, 3, 100_000, now),
        ];
        let reach = reachable(&files[..2].iter().collect::<Vec<_>>());
        assert_eq!(
            reach,
            HashSet::from([0]),
            "nothing continues a state before TXID 1"
        );
        let run = plan_compaction(&files, 1).unwrap();
        assert_eq!(
            run.iter().map(|f| f.min_txid.0).collect::<Vec<_>>(),
            vec![4, u64::MAX]
        );
        let gone = plan_retention(&files, now, &opts);
        assert!(gone.iter().all(|g| files.contains(g)));
        let top = vec![f(0, 5, u64::MAX, 0, now), f(0, 1, 4, 0, now)];
        let run = plan_compaction(&top, 1).unwrap();
        assert_eq!(run.len(), 2);
        assert!(reachable(&top.iter().collect::<Vec<_>>()).contains(&u64::MAX));
    }

    #[test]
    fn compaction_takes_the_run_after_the_destination() {
        let now = Utc::now();
        let files = vec![
            f(0, 1, 1, 0, now),
            f(0, 2, 2, 0, now),
            f(0, 3, 4, 0, now),
            f(1, 1, 2, 0, now),
        ];
        let run = plan_compaction(&files, 1).unwrap();
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].min_txid, Txid(3));
        assert!(plan_compaction(&files, 2).unwrap()[0].min_txid == Txid(1));
        let none = vec![f(0, 1, 2, 0, now), f(1, 1, 2, 0, now)];
        assert!(plan_compaction(&none, 1).is_none());
        // A gap: only the run ending at the newest file.
        let gap = vec![f(0, 1, 1, 0, now), f(0, 5, 5, 0, now), f(0, 6, 6, 0, now)];
        let run = plan_compaction(&gap, 1).unwrap();
        assert_eq!(
            run.iter().map(|f| f.min_txid.0).collect::<Vec<_>>(),
            vec![5, 6]
        );
    }

    #[test]
    fn retention_keeps_the_newest_level_0_file() {
        let now = Utc::now();
        let opts = RetentionOptions {
            l0_retention: Duration::from_secs(1),
            ..RetentionOptions::default()
        };
        // Every level-0 file is covered by level 1 and old: all but the
        // newest go.
        let files = vec![
            f(0, 1, 3, 600, now),
            f(0, 4, 6, 600, now),
            f(0, 7, 7, 600, now),
            f(1, 1, 7, 600, now),
            f(SNAPSHOT_LEVEL, 1, 7, 600, now),
        ];
        let doomed: HashSet<_> = plan_retention(&files, now, &opts)
            .into_iter()
            .map(|d| (d.level, d.min_txid.0, d.max_txid.0))
            .collect();
        assert_eq!(doomed, HashSet::from([(0, 1, 3), (0, 4, 6)]));
    }

    #[test]
    fn retention_keeps_every_promised_point() {
        let now = Utc::now();
        let opts = RetentionOptions::default();
        let files = vec![
            f(9, 1, 10, 100_000, now), // expired snapshot
            f(9, 1, 20, 50_000, now),  // kept
            f(0, 1, 10, 100_000, now),
            f(0, 11, 20, 50_000, now),
            f(0, 21, 30, 10, now), // young, not covered by L1
            f(1, 1, 20, 50_000, now),
            f(1, 21, 25, 1000, now),
        ];
        let gone = plan_retention(&files, now, &opts);
        let names: Vec<_> = gone.iter().map(|f| f.to_string()).collect();
        assert!(names.contains(&files[0].to_string()), "{names:?}");
        // L0 21-30 is not covered by L1 (max 25): kept.
        assert!(!names.contains(&files[4].to_string()));
        // L1 1-20 ends at the oldest kept snapshot: kept.
        assert!(!names.contains(&files[5].to_string()));
        // L0 1-10 and 11-20: covered by L1 and old.
        assert!(names.contains(&files[2].to_string()));
        assert!(names.contains(&files[3].to_string()));
    }

    #[test]
    fn safety_net_keeps_a_file_no_other_chain_replaces() {
        let now = Utc::now();
        let opts = RetentionOptions::default();
        // Both L0 files are old and "covered" by L1 (its max is 20), but L1
        // only holds 11-20: the chain to 20 needs L0 1-10. L0 11-20 can go
        // (a young L0 file after it is the newest, which always stays).
        let files = vec![
            f(0, 1, 10, 10_000, now),
            f(0, 11, 20, 10_000, now),
            f(1, 11, 20, 10_000, now),
            f(0, 21, 21, 10, now),
        ];
        let gone = plan_retention(&files, now, &opts);
        assert_eq!(gone, vec![files[1].clone()]);
        let left: Vec<&LtxFileInfo> = files.iter().filter(|f| !gone.contains(f)).collect();
        assert!(reachable(&left).contains(&20));
    }
}
