//! Restore points: the states a replica's listing can rebuild (pure).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ltx::Txid;
use crate::replica::LtxFileInfo;

/// One state a restore can reach: a TXID that some chain of files starting
/// at TXID 1 ends at, and when the file ending there was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestorePoint {
    /// The TXID.
    pub txid: Txid,
    /// When the file ending at it was written.
    pub time: DateTime<Utc>,
}

/// The restore points of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestorePoints {
    /// The oldest state that can be rebuilt.
    pub earliest: RestorePoint,
    /// The latest state that can be rebuilt (what a plain restore gives).
    pub latest: RestorePoint,
    /// How many distinct states can be rebuilt.
    pub count: usize,
    /// The most recent of them, newest first (at most 20).
    pub recent: Vec<RestorePoint>,
}

impl RestorePoints {
    /// The states some chain of files (each starting right after the
    /// previous one ends, the first at TXID 1) reaches; `None` when the
    /// listing rebuilds nothing.
    ///
    /// ```
    /// use litevault::ltx::Txid;
    /// use litevault::replica::LtxFileInfo;
    /// use litevault::server::points::RestorePoints;
    /// let f = |level, min, max| LtxFileInfo {
    ///     level, min_txid: Txid(min), max_txid: Txid(max), size: 1, created: Default::default(),
    /// };
    /// // A snapshot of 1-5, then 6 and 7; 9 follows a missing 8.
    /// let files = vec![f(9, 1, 5), f(0, 6, 6), f(0, 7, 7), f(0, 9, 9)];
    /// let p = RestorePoints::from_listing(&files).unwrap();
    /// assert_eq!((p.earliest.txid, p.latest.txid, p.count), (Txid(5), Txid(7), 3));
    /// ```
    pub fn from_listing(files: &[LtxFileInfo]) -> Option<RestorePoints> {
        let mut sorted: Vec<&LtxFileInfo> = files
            .iter()
            .filter(|f| f.min_txid.0 >= 1 && f.min_txid <= f.max_txid)
            .collect();
        sorted.sort_by_key(|f| (f.max_txid, f.min_txid));
        // reached[txid] = when the earliest-written file ending there was
        // written, for every TXID a chain from 1 ends at.
        let mut reached: std::collections::BTreeMap<u64, DateTime<Utc>> =
            std::collections::BTreeMap::new();
        for f in sorted {
            let start = f.min_txid.0 - 1;
            if start == 0 || reached.contains_key(&start) {
                let e = reached.entry(f.max_txid.0).or_insert(f.created);
                *e = (*e).min(f.created);
            }
        }
        let point = |(t, time): (&u64, &DateTime<Utc>)| RestorePoint {
            txid: Txid(*t),
            time: *time,
        };
        Some(RestorePoints {
            earliest: point(reached.iter().next()?),
            latest: point(reached.iter().next_back()?),
            count: reached.len(),
            recent: reached.iter().rev().take(20).map(point).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: u8, min: u64, max: u64, secs: i64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: Txid(min),
            max_txid: Txid(max),
            size: 1,
            created: DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    #[test]
    fn a_gap_ends_the_reachable_states() {
        let files = vec![f(0, 1, 1, 10), f(0, 2, 2, 20), f(0, 4, 4, 40)];
        let p = RestorePoints::from_listing(&files).unwrap();
        assert_eq!(p.earliest.txid, Txid(1));
        assert_eq!(p.latest.txid, Txid(2));
        assert_eq!(p.latest.time.timestamp(), 20);
        assert_eq!(p.count, 2);
    }

    #[test]
    fn compacted_levels_and_snapshots_count_once_per_txid() {
        // L0 1..=4, an L1 covering 1-4, a snapshot at 4, then L0 5.
        let mut files: Vec<_> = (1..=4).map(|t| f(0, t, t, t as i64)).collect();
        files.push(f(1, 1, 4, 100));
        files.push(f(9, 1, 4, 200));
        files.push(f(0, 5, 5, 5));
        let p = RestorePoints::from_listing(&files).unwrap();
        assert_eq!(p.count, 5);
        assert_eq!(p.latest.txid, Txid(5));
        // TXID 4 was first written by the L0 file.
        let four = p.recent.iter().find(|x| x.txid == Txid(4)).unwrap();
        assert_eq!(four.time.timestamp(), 4);
    }

    #[test]
    fn no_base_no_points() {
        assert_eq!(RestorePoints::from_listing(&[f(0, 3, 3, 1)]), None);
        assert_eq!(RestorePoints::from_listing(&[]), None);
    }
}
