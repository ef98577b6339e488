//! The one page merge: how a run of consecutive LTX files (or of earlier
//! merges of them) becomes one set of pages. The compactor, restore and
//! follow all merge through [`merge_pages`], so a state compacted first and
//! restored later is the state restored from the parts.
//!
//! # The rule
//!
//! Inputs are given oldest first, each a stream of pages in ascending page
//! order (the order inside an LTX file). For every page number the newest
//! input holding it wins. A page of input `i` is dropped when a later input
//! committed a smaller database: the database was truncated below that page
//! after `i` wrote it, so what `i` wrote is gone even if the database grows
//! again later. That is [`survival_limits`]: the limit of input `i` is the
//! smallest size any later input committed.
//!
//! A merged output that stands for the whole run (a compacted file) must
//! also hold every page above the run's smallest size, up to its last size:
//! those pages were written inside the run, after the last truncation, or
//! the run does not describe a history SQLite wrote. [`Coverage`] checks it
//! page by page as the merge emits them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Read;
use std::ops::ControlFlow;

use super::{Decoder, LtxError, lock_pgno};

/// A stream of pages in strictly ascending page order.
pub trait PageStream {
    /// What reading the stream can fail with.
    type Error;

    /// Reads the next page into `buf` and returns its number, or `None` at
    /// the end of the stream.
    fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, Self::Error>;
}

impl<R: Read> PageStream for Decoder<R> {
    type Error = LtxError;

    fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, LtxError> {
        Decoder::next_page(self, buf)
    }
}

/// For inputs whose smallest committed sizes are `min_commits` (oldest
/// first), the highest page of each input that survives: the smallest size
/// any later input committed (`u32::MAX` for the newest).
pub fn survival_limits(min_commits: &[u32]) -> Vec<u32> {
    let mut limit = vec![u32::MAX; min_commits.len()];
    let mut m = u32::MAX;
    for i in (0..min_commits.len()).rev() {
        limit[i] = m;
        m = m.min(min_commits[i]);
    }
    limit
}

/// Merges `inputs` (oldest first; `min_commits[i]` is the smallest database
/// size input `i` committed) and hands each surviving page to `sink` once,
/// in ascending page order, with the index of the input it came from.
/// `sink` may stop the merge early with [`ControlFlow::Break`].
///
/// One page buffer per input is all the memory it takes.
///
/// # Panics
///
/// Never: `min_commits` shorter than `inputs` counts the missing ones as
/// committing no smaller size.
pub fn merge_pages<S, E>(
    inputs: &mut [S],
    min_commits: &[u32],
    mut sink: impl FnMut(u32, usize, &[u8]) -> Result<ControlFlow<()>, E>,
) -> Result<(), E>
where
    S: PageStream,
    E: From<S::Error>,
{
    let mut commits = min_commits.to_vec();
    commits.resize(inputs.len(), u32::MAX);
    let limit = survival_limits(&commits);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); inputs.len()];
    let next = |inputs: &mut [S], bufs: &mut [Vec<u8>], i: usize| -> Result<Option<u32>, E> {
        while let Some(pgno) = inputs[i].next_page(&mut bufs[i])? {
            if pgno <= limit[i] {
                return Ok(Some(pgno));
            }
        }
        Ok(None)
    };
    // A min-heap of (page number, input index) over the inputs' next pages.
    let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::with_capacity(inputs.len());
    for i in 0..inputs.len() {
        if let Some(p) = next(inputs, &mut bufs, i)? {
            heap.push(Reverse((p, i)));
        }
    }
    let mut holders: Vec<usize> = Vec::with_capacity(inputs.len());
    while let Some(Reverse((pgno, first))) = heap.pop() {
        holders.clear();
        holders.push(first);
        while let Some(&Reverse((p, i))) = heap.peek() {
            if p != pgno {
                break;
            }
            heap.pop();
            holders.push(i);
        }
        // The newest input holding this page wins (`holders` is not empty).
        let winner = holders.iter().copied().max().unwrap_or(first);
        if sink(pgno, winner, &bufs[winner])?.is_break() {
            return Ok(());
        }
        for &i in &holders {
            if let Some(p) = next(inputs, &mut bufs, i)? {
                heap.push(Reverse((p, i)));
            }
        }
    }
    Ok(())
}

/// Checks, as a merge emits pages in ascending order, that every page
/// above `floor` up to `commit` (the lock page aside) is written: the pages
/// at or below `floor` exist already (the state the merge applies to), the
/// others must come from the merge.
#[derive(Clone, Copy, Debug)]
pub struct Coverage {
    floor: u32,
    commit: u32,
    lock: u32,
    /// The next page that must come (u64: past `u32::MAX`).
    next: u64,
}

impl Coverage {
    /// Pages above `floor` up to `commit` must all come, for a database of
    /// `page_size` bytes per page.
    pub fn new(floor: u32, commit: u32, page_size: u32) -> Coverage {
        let mut c = Coverage {
            floor,
            commit,
            lock: lock_pgno(page_size),
            next: u64::from(floor) + 1,
        };
        c.skip_lock();
        c
    }

    fn skip_lock(&mut self) {
        if self.next == u64::from(self.lock) {
            self.next += 1;
        }
    }

    /// Accepts the next page emitted; `Err` with the first page skipped.
    pub fn accept(&mut self, pgno: u32) -> Result<(), u32> {
        if pgno <= self.floor {
            return Ok(());
        }
        if u64::from(pgno) != self.next {
            return Err(self.first_missing());
        }
        self.next += 1;
        self.skip_lock();
        Ok(())
    }

    /// After the last page: `Err` with the first page never written.
    pub fn finish(&self) -> Result<(), u32> {
        if self.next <= u64::from(self.commit) {
            return Err(self.first_missing());
        }
        Ok(())
    }

    fn first_missing(&self) -> u32 {
        // `next` only passes u32::MAX after page u32::MAX was accepted, and
        // then no page can be missing below it.
        u32::try_from(self.next).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages held in memory, for the merge's own tests.
    struct Pages(std::vec::IntoIter<(u32, u8)>);

    impl PageStream for Pages {
        type Error = std::convert::Infallible;
        fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, Self::Error> {
            Ok(self.0.next().map(|(p, v)| {
                buf.clear();
                buf.push(v);
                p
            }))
        }
    }

    fn merged(inputs: Vec<Vec<(u32, u8)>>, commits: &[u32]) -> Vec<(u32, usize, u8)> {
        let mut s: Vec<Pages> = inputs.into_iter().map(|v| Pages(v.into_iter())).collect();
        let mut out = Vec::new();
        merge_pages(&mut s, commits, |p, i, b| {
            out.push((p, i, b[0]));
            Ok::<_, std::convert::Infallible>(ControlFlow::Continue(()))
        })
        .unwrap();
        out
    }

    #[test]
    fn newest_wins_and_a_later_truncation_drops_older_pages() {
        let got = merged(
            vec![
                vec![(1, 10), (2, 20), (4, 40), (5, 50)],
                vec![(2, 21)],
                vec![(5, 52)],
            ],
            &[5, 3, 5],
        );
        // Page 4 of input 0 was truncated away by input 1 and never written
        // again; page 5 was written again by input 2.
        assert_eq!(got, vec![(1, 0, 10), (2, 1, 21), (5, 2, 52)]);
        assert_eq!(survival_limits(&[5, 3, 5]), vec![3, 5, u32::MAX]);
    }

    #[test]
    fn a_sink_can_stop_the_merge() {
        let mut s = vec![Pages(vec![(1, 1), (2, 2), (3, 3)].into_iter())];
        let mut seen = Vec::new();
        merge_pages(&mut s, &[3], |p, _, _| {
            seen.push(p);
            Ok::<_, std::convert::Infallible>(if p == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .unwrap();
        assert_eq!(seen, vec![1, 2]);
    }

    #[test]
    fn coverage_from_zero() {
        let mut c = Coverage::new(0, 3, 4096);
        assert_eq!(c.accept(1), Ok(()));
        assert_eq!(c.accept(3), Err(2));
        let mut c = Coverage::new(0, 3, 4096);
        for p in 1..=3 {
            c.accept(p).unwrap();
        }
        assert_eq!(c.finish(), Ok(()));
        let c = Coverage::new(0, 0x7fff_ffff, 4096);
        assert_eq!(c.finish(), Err(1));
    }

    #[test]
    fn coverage_above_a_floor_and_the_lock_page() {
        // Pages at or below the floor may come in any subset.
        let mut c = Coverage::new(10, 12, 4096);
        c.accept(2).unwrap();
        c.accept(11).unwrap();
        assert_eq!(c.finish(), Err(12));
        c.accept(12).unwrap();
        assert_eq!(c.finish(), Ok(()));
        // The lock page is never written.
        let lock = lock_pgno(65536);
        let mut c = Coverage::new(lock - 2, lock + 1, 65536);
        c.accept(lock - 1).unwrap();
        c.accept(lock + 1).unwrap();
        assert_eq!(c.finish(), Ok(()));
        let mut c = Coverage::new(lock - 1, lock, 65536);
        assert_eq!(c.finish(), Ok(()));
        assert_eq!(c.accept(lock + 1), Ok(()));
        // The last page number there is.
        let mut c = Coverage::new(u32::MAX - 1, u32::MAX, 4096);
        c.accept(u32::MAX).unwrap();
        assert_eq!(c.finish(), Ok(()));
    }
}
