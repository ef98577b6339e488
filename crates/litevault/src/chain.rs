//! Chains of LTX files: which files rebuild a state (restore, follow, the
//! replicator's catch-up) and which states a set of files reaches
//! (retention's safety net). One place, so the two can never disagree.
//!
//! Pure functions over a listing. A chain is a sequence of files where each
//! one starts right after the previous one ends; the first starts at TXID 1
//! (a snapshot or the first L0 file) or right after a given TXID.
//!
//! TXID 0 does not exist in LTX (the first transaction is 1): a file named
//! with TXID 0, or with a first TXID above its last, is not part of any
//! chain ([`split_valid`] sets such names apart so callers can say so).

use std::collections::{HashMap, HashSet};

use crate::ltx::Txid;
use crate::replica::LtxFileInfo;

/// The shortest chain of files covering `from+1 ..= to`: fewest files first,
/// then fewest bytes. `None` when no chain exists.
///
/// ```
/// use litevault::ltx::Txid;
/// use litevault::replica::LtxFileInfo;
/// use litevault::chain::plan_chain;
/// let f = |level, min, max, size| LtxFileInfo {
///     level, min_txid: Txid(min), max_txid: Txid(max), size, created: Default::default(),
/// };
/// let files = vec![f(0, 1, 1, 10), f(0, 2, 2, 10), f(0, 3, 3, 10), f(9, 1, 2, 15)];
/// let chain = plan_chain(&files, Txid(0), Txid(3)).unwrap();
/// assert_eq!(chain.len(), 2); // the snapshot 1-2, then 3
/// ```
pub fn plan_chain(files: &[LtxFileInfo], from: Txid, to: Txid) -> Option<Vec<LtxFileInfo>> {
    if to <= from {
        return Some(Vec::new());
    }
    // `min_txid > from >= 0`: every candidate has `min_txid >= 1`, so the
    // `min_txid - 1` below cannot wrap.
    let mut candidates: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| f.min_txid > from && f.max_txid <= to && f.min_txid <= f.max_txid)
        .collect();
    candidates.sort_by_key(|f| (f.max_txid, f.min_txid, f.level));
    // best[txid] = (files, bytes, index of the file ending there)
    let mut best: HashMap<u64, (usize, u64, Option<usize>)> = HashMap::new();
    best.insert(from.0, (0, 0, None));
    for (i, f) in candidates.iter().enumerate() {
        let Some(&(n, bytes, _)) = best.get(&(f.min_txid.0 - 1)) else {
            continue;
        };
        let cand = (n + 1, bytes + f.size, Some(i));
        match best.get(&f.max_txid.0) {
            Some(&(bn, bb, _)) if (bn, bb) <= (cand.0, cand.1) => {}
            _ => {
                best.insert(f.max_txid.0, cand);
            }
        }
    }
    let mut chain = Vec::new();
    let mut at = to.0;
    while at != from.0 {
        let (_, _, Some(i)) = *best.get(&at)? else {
            return None;
        };
        let f = candidates[i];
        chain.push(f.clone());
        at = f.min_txid.0 - 1;
    }
    chain.reverse();
    Some(chain)
}

/// The first TXID after `from` that no chain reaches: where a replica's
/// history is broken (a missing file). `None` if `to` is reachable.
pub fn first_gap(files: &[LtxFileInfo], from: Txid, to: Txid) -> Option<Txid> {
    let mut sorted: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| f.min_txid > from && f.min_txid <= f.max_txid)
        .collect();
    sorted.sort_by_key(|f| f.min_txid);
    let mut reach = from.0;
    for f in sorted {
        // `reach < to <= u64::MAX` while there is a gap to find, so
        // `reach + 1` cannot overflow; once reach is u64::MAX nothing is missing.
        let Some(next) = reach.checked_add(1) else {
            break;
        };
        if f.min_txid.0 > next {
            break;
        }
        reach = reach.max(f.max_txid.0);
    }
    (reach < to.0).then(|| Txid(reach + 1))
}

/// Why a listed file cannot be an LTX file of any chain, if it cannot.
pub fn invalid_name(f: &LtxFileInfo) -> Option<&'static str> {
    if f.min_txid.0 == 0 || f.max_txid.0 == 0 {
        Some("TXID 0 does not exist: LTX TXIDs start at 1")
    } else if f.min_txid > f.max_txid {
        Some("its first TXID is above its last")
    } else {
        None
    }
}

/// Splits a listing into the files that can be part of a chain and those
/// whose names cannot (with the reason).
pub fn split_valid(
    files: Vec<LtxFileInfo>,
) -> (Vec<LtxFileInfo>, Vec<(LtxFileInfo, &'static str)>) {
    let mut valid = Vec::with_capacity(files.len());
    let mut invalid = Vec::new();
    for f in files {
        match invalid_name(&f) {
            None => valid.push(f),
            Some(why) => invalid.push((f, why)),
        }
    }
    (valid, invalid)
}

/// The restore points of a listing: every TXID some chain from TXID 1
/// reaches, each with one file ending there (the lowest level: a level-0
/// file carries the commit's own timestamp), in TXID order.
pub fn restore_points(files: &[LtxFileInfo]) -> Vec<&LtxFileInfo> {
    let mut sorted: Vec<&LtxFileInfo> =
        files.iter().filter(|f| invalid_name(f).is_none()).collect();
    sorted.sort_by_key(|f| (f.max_txid, f.min_txid, f.level));
    let mut reach: HashSet<u64> = HashSet::with_capacity(sorted.len() + 1);
    reach.insert(0);
    for f in &sorted {
        // Valid names have min_txid >= 1.
        if reach.contains(&(f.min_txid.0 - 1)) {
            reach.insert(f.max_txid.0);
        }
    }
    let mut best: Vec<&LtxFileInfo> = Vec::new();
    for f in sorted.into_iter().filter(|f| reach.contains(&f.max_txid.0)) {
        match best.last_mut() {
            Some(b) if b.max_txid == f.max_txid => {
                if f.level < b.level {
                    *b = f;
                }
            }
            _ => best.push(f),
        }
    }
    best
}

/// The restore point for a time: `points` are restore points in TXID
/// order with their LTX header timestamps (milliseconds); the answer is the
/// last point of the longest prefix whose timestamps are all at or before
/// `ts`. In words: the newest state such that it and every state before it
/// were committed at or before `ts`.
///
/// Timestamps normally grow with the TXID; when a clock step made them go
/// backwards, this rule still gives one answer that only moves forward as
/// `ts` does, and never a state containing a commit stamped after `ts`.
///
/// ```
/// use litevault::ltx::Txid;
/// use litevault::chain::point_at_time;
/// // The clock stepped back between TXIDs 2 and 3.
/// let points = [(Txid(1), 1000), (Txid(2), 3000), (Txid(3), 2000), (Txid(4), 4000)];
/// assert_eq!(point_at_time(&points, 999), None);
/// assert_eq!(point_at_time(&points, 2500), Some(Txid(1)));
/// assert_eq!(point_at_time(&points, 3000), Some(Txid(3)));
/// assert_eq!(point_at_time(&points, 5000), Some(Txid(4)));
/// ```
pub fn point_at_time(points: &[(Txid, i64)], ts: i64) -> Option<Txid> {
    points
        .iter()
        .take_while(|(_, t)| *t <= ts)
        .last()
        .map(|(txid, _)| *txid)
}

/// Every TXID a chain of files reaches from the empty database.
pub fn reachable(files: &[&LtxFileInfo]) -> HashSet<u64> {
    let mut sorted: Vec<&&LtxFileInfo> = files.iter().collect();
    sorted.sort_by_key(|f| (f.max_txid, f.min_txid));
    let mut reach = HashSet::with_capacity(sorted.len() + 1);
    reach.insert(0u64);
    for f in sorted {
        // A file starting at 0 (no valid name does) continues nothing.
        if f.min_txid <= f.max_txid
            && f.min_txid
                .0
                .checked_sub(1)
                .is_some_and(|before| reach.contains(&before))
        {
            reach.insert(f.max_txid.0);
        }
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: u8, min: u64, max: u64, size: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: Txid(min),
            max_txid: Txid(max),
            size,
            created: Default::default(),
        }
    }

    #[test]
    fn prefers_snapshots_and_compacted_levels() {
        let mut files: Vec<_> = (1..=30).map(|t| f(0, t, t, 10)).collect();
        files.push(f(1, 2, 13, 50));
        files.push(f(2, 2, 24, 100));
        files.push(f(9, 1, 14, 200));
        let c = plan_chain(&files, Txid(0), Txid(30)).unwrap();
        let got: Vec<_> = c
            .iter()
            .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
            .collect();
        // 1 + (2..24) + 25..30 = 8 files; the snapshot route is 1 + 16 files.
        assert_eq!(got[0], (0, 1, 1));
        assert_eq!(got[1], (2, 2, 24));
        assert_eq!(got.len(), 8);
        let c = plan_chain(&files, Txid(0), Txid(14)).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].level, 9);
    }

    #[test]
    fn gaps_and_partial_ranges() {
        let files = vec![f(0, 1, 1, 1), f(0, 2, 2, 1), f(0, 4, 4, 1)];
        assert!(plan_chain(&files, Txid(0), Txid(4)).is_none());
        assert_eq!(plan_chain(&files, Txid(0), Txid(2)).unwrap().len(), 2);
        assert_eq!(plan_chain(&files, Txid(1), Txid(2)).unwrap().len(), 1);
        assert_eq!(plan_chain(&files, Txid(3), Txid(4)).unwrap().len(), 1);
        assert!(plan_chain(&files, Txid(0), Txid(0)).unwrap().is_empty());
        assert_eq!(first_gap(&files, Txid(0), Txid(4)), Some(Txid(3)));
        assert_eq!(first_gap(&files, Txid(0), Txid(2)), None);
    }

    #[test]
    fn extreme_and_invalid_txids() {
        // A file ending at the last TXID there is: no overflow.
        let files = vec![f(0, 1, 1, 1), f(0, 2, u64::MAX, 1)];
        assert_eq!(first_gap(&files, Txid(0), Txid(u64::MAX)), None);
        assert_eq!(
            plan_chain(&files, Txid(0), Txid(u64::MAX)).unwrap().len(),
            2
        );
        // TXID 0 is no file of any chain.
        let files = vec![f(0, 0, 0, 1), f(0, 0, 3, 1), f(0, 5, 4, 1), f(0, 1, 1, 1)];
        let (valid, invalid) = split_valid(files.clone());
        assert_eq!(valid, vec![f(0, 1, 1, 1)]);
        assert_eq!(invalid.len(), 3);
        assert!(plan_chain(&files, Txid(0), Txid(0)).unwrap().is_empty());
        assert_eq!(plan_chain(&files, Txid(0), Txid(1)).unwrap().len(), 1);
        let points: Vec<u64> = restore_points(&files)
            .iter()
            .map(|f| f.max_txid.0)
            .collect();
        assert_eq!(points, vec![1]);
    }

    #[test]
    fn restore_points_are_reachable_ends_lowest_level_first() {
        let files = vec![
            f(0, 1, 1, 1),
            f(9, 1, 3, 1),
            f(0, 3, 3, 1),
            f(1, 2, 3, 1),
            f(0, 5, 5, 1),
        ];
        let got: Vec<(u8, u64)> = restore_points(&files)
            .iter()
            .map(|f| (f.level, f.max_txid.0))
            .collect();
        // 3 is reached (by the snapshot and by 1 + 2..3); 5 is not (4 is missing).
        assert_eq!(got, vec![(0, 1), (0, 3)]);
    }

    #[test]
    fn point_at_time_is_monotonic() {
        let points = [
            (Txid(1), 10),
            (Txid(2), 40),
            (Txid(3), 20),
            (Txid(4), 50),
            (Txid(5), 30),
            (Txid(6), 60),
        ];
        let mut prev = None;
        for ts in 0..70 {
            let got = point_at_time(&points, ts);
            assert!(got >= prev, "at {ts}: {got:?} after {prev:?}");
            if let Some(t) = got {
                // Every state up to the answer was committed by then.
                assert!(
                    points
                        .iter()
                        .filter(|(x, _)| *x <= t)
                        .all(|(_, s)| *s <= ts)
                );
            }
            prev = got;
        }
        assert_eq!(point_at_time(&points, 45), Some(Txid(3)));
        assert_eq!(point_at_time(&points, 55), Some(Txid(5)));
    }
}
