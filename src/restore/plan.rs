//! Restore planning: which files rebuild a state.
//!
//! Pure functions over a listing. A chain is a sequence of files where each
//! one starts right after the previous one ends; the first starts at TXID 1
//! (a snapshot or the first L0 file) or right after a given TXID.

use std::collections::HashMap;

use crate::ltx::Txid;
use crate::replica::LtxFileInfo;

/// The shortest chain of files covering `from+1 ..= to`: fewest files first,
/// then fewest bytes. `None` when no chain exists.
///
/// ```
/// use litevault::ltx::Txid;
/// use litevault::replica::LtxFileInfo;
/// use litevault::restore::plan::plan_chain;
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
        if f.min_txid.0 > reach + 1 {
            break;
        }
        reach = reach.max(f.max_txid.0);
    }
    (reach < to.0).then_some(Txid(reach + 1))
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
}
