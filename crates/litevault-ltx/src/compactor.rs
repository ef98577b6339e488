//! Merges contiguous LTX files into one, as Litestream does when it moves files up a level
//! or builds a snapshot.
//!
//! The inputs are streamed: pages inside a file are sorted by page number (Go's encoder
//! enforces it and the [`Decoder`] checks it), so the k-way merge ([`merge_pages`], the one
//! restore and follow use too) needs one page buffer per input and nothing else.

use std::io::{Read, Write};
use std::ops::ControlFlow;

use crate::merge::{Coverage, merge_pages};

use super::{
    CHECKSUM_FLAG, Checksum, Decoder, Encoder, Header, LtxError, Trailer, Txid, VERSION,
    page_checksum,
};

/// Settings for [`compact`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactOptions {
    /// Timestamp of the output; `None` keeps the newest input's (as Go does).
    pub timestamp_ms: Option<i64>,
    /// Pre-apply checksum of the output when it is not a snapshot. Needed only if the
    /// oldest input carries none (Litestream writes NoChecksum files); otherwise it must
    /// match the oldest input's.
    pub pre_apply_checksum: Option<Checksum>,
    /// Post-apply checksum of the output when it is not a snapshot. Needed only if the
    /// newest input carries none; otherwise it must match the newest input's. For a
    /// snapshot it is computed from the pages and, if given, must match.
    pub post_apply_checksum: Option<Checksum>,
    /// Write a Litestream-compatible output: the NoChecksum flag, with the
    /// pre- and post-apply checksums in the reserved header bytes. The
    /// post-apply checksum must then be known before the pages are merged:
    /// from `post_apply_checksum` or the newest input's reserved bytes.
    pub litestream_compat: bool,
}

/// Merges `inputs` (oldest first, each starting right after the previous one ends) into
/// one file written to `out`, and returns the writer and the trailer.
///
/// Pages merge by the rule of [`crate::merge`]: the newest version of each page wins, and a
/// page written before a later input truncated the database below it is dropped. The
/// output must then hold every page above the smallest size an input committed (every
/// page, for a snapshot), up to the newest input's size, or the inputs are refused with
/// [`LtxError::PageNeverWritten`]: a compacted file cannot say that the database was
/// truncated in between, so restoring it would differ from restoring the inputs. The output header takes the page size and min TXID and pre-apply checksum of
/// the oldest input, the max TXID and commit of the newest, and the timestamp from
/// `opts` or the newest input; WAL fields and node ID are zero. Every input is fully
/// verified (file checksums) before the output is finished.
///
/// Unlike Go's `Compactor`, which accepts overlapping ranges, inputs must be exactly
/// contiguous (`min == previous max + 1`), else [`LtxError::NotContiguous`].
pub fn compact<R: Read, W: Write>(
    inputs: Vec<Decoder<R>>,
    out: W,
    opts: CompactOptions,
) -> Result<(W, Trailer), LtxError> {
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Err(LtxError::NoInputs);
    };
    let (first, last) = (*first.header(), *last.header());
    for pair in inputs.windows(2) {
        let (a, b) = (pair[0].header(), pair[1].header());
        if a.page_size != b.page_size {
            return Err(LtxError::PageSizeMismatch {
                expected: a.page_size,
                actual: b.page_size as usize,
            });
        }
        if a.max_txid.0.checked_add(1) != Some(b.min_txid.0) {
            return Err(LtxError::NotContiguous {
                prev_max: a.max_txid,
                next_min: b.min_txid,
            });
        }
    }

    let snapshot = first.is_snapshot();
    let pre_apply = if snapshot {
        Checksum(0)
    } else {
        match (opts.pre_apply_checksum, first.no_checksum()) {
            (Some(c), true) => c,
            (Some(c), false) if c == first.pre_apply_checksum => c,
            (Some(c), false) => {
                return Err(LtxError::ChecksumMismatch {
                    what: "pre-apply checksum given for compaction".into(),
                    expected: first.pre_apply_checksum,
                    actual: c,
                });
            }
            (None, false) => first.pre_apply_checksum,
            (None, true) => {
                return Err(LtxError::MissingChecksum {
                    reason: format!(
                        "the oldest input ({}) has no checksums (NoChecksum flag); pass CompactOptions::pre_apply_checksum, the database checksum at TXID {}",
                        super::format_filename(first.min_txid, first.max_txid),
                        Txid(first.min_txid.0 - 1)
                    ),
                });
            }
        }
    };

    let mut header = Header {
        version: VERSION,
        flags: 0,
        page_size: first.page_size,
        commit: last.commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp_ms: opts.timestamp_ms.unwrap_or(last.timestamp_ms),
        pre_apply_checksum: pre_apply,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
        reserved_checksums: None,
    };
    if opts.litestream_compat {
        let post = opts
            .post_apply_checksum
            .or(last.reserved_checksums.map(|r| r.post_apply))
            .ok_or_else(|| LtxError::MissingChecksum {
                reason: "a Litestream-compatible output needs its post-apply checksum up front; pass CompactOptions::post_apply_checksum".into(),
            })?;
        header.flags = super::HEADER_FLAG_NO_CHECKSUM;
        header.reserved_checksums = Some(super::ReservedChecksums {
            pre_apply,
            post_apply: post,
        });
        header.pre_apply_checksum = Checksum(0);
    }
    let mut enc = Encoder::new(out, header)?;
    let lock = header.lock_pgno();

    let files = format!("TXIDs {}-{}", first.min_txid, last.max_txid);
    let min_commits: Vec<u32> = inputs.iter().map(|d| d.header().commit).collect();
    // Pages at or below the smallest size may come from the state the output applies
    // to; a snapshot applies to nothing.
    let floor = min_commits.iter().copied().min().unwrap_or(0);
    let mut cover = Coverage::new(
        if snapshot { 0 } else { floor },
        header.commit,
        header.page_size,
    );
    let mut inputs = inputs;
    let mut db_sum = 0u64;
    let mut missing = None;
    merge_pages(&mut inputs, &min_commits, |pgno, _, data| {
        if pgno > header.commit || pgno == lock {
            return Ok::<_, LtxError>(ControlFlow::Continue(()));
        }
        if let Err(p) = cover.accept(pgno) {
            missing = Some(p);
            return Ok(ControlFlow::Break(()));
        }
        enc.encode_page(pgno, data)?;
        if snapshot {
            db_sum ^= page_checksum(pgno, data).0;
        }
        Ok(ControlFlow::Continue(()))
    })?;

    // Verify every input to its end; keep the trailers to chain the checksums.
    let mut trailers = Vec::with_capacity(inputs.len());
    let mut headers = Vec::with_capacity(inputs.len());
    for dec in inputs {
        headers.push(*dec.header());
        trailers.push(dec.finish()?);
    }
    if let Some(pgno) = missing.or_else(|| cover.finish().err()) {
        return Err(LtxError::PageNeverWritten {
            files,
            pgno,
            floor,
            commit: header.commit,
        });
    }
    for k in 1..headers.len() {
        let (a, b) = (&headers[k - 1], &headers[k]);
        if !a.no_checksum() && !b.no_checksum() {
            let post = trailers[k - 1].post_apply_checksum;
            if b.pre_apply_checksum != post {
                return Err(LtxError::ChecksumMismatch {
                    what: format!(
                        "pre-apply checksum of input {} against post-apply checksum of input {}",
                        super::format_filename(b.min_txid, b.max_txid),
                        super::format_filename(a.min_txid, a.max_txid)
                    ),
                    expected: post,
                    actual: b.pre_apply_checksum,
                });
            }
        }
    }

    let last_post = (!last.no_checksum()).then(|| trailers[trailers.len() - 1].post_apply_checksum);
    let post_apply = if snapshot {
        let computed = Checksum(CHECKSUM_FLAG | db_sum);
        for (what, given) in [
            ("post-apply checksum of the newest input", last_post),
            (
                "post-apply checksum given for compaction",
                opts.post_apply_checksum,
            ),
        ] {
            if let Some(c) = given
                && c != computed
            {
                return Err(LtxError::ChecksumMismatch {
                    what: what.into(),
                    expected: c,
                    actual: computed,
                });
            }
        }
        computed
    } else {
        match (opts.post_apply_checksum, last_post) {
            (Some(c), Some(l)) if c != l => {
                return Err(LtxError::ChecksumMismatch {
                    what: "post-apply checksum given for compaction".into(),
                    expected: l,
                    actual: c,
                });
            }
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => {
                return Err(LtxError::MissingChecksum {
                    reason: format!(
                        "the newest input ({}) has no checksums (NoChecksum flag); pass CompactOptions::post_apply_checksum, the database checksum at TXID {}",
                        super::format_filename(last.min_txid, last.max_txid),
                        last.max_txid
                    ),
                });
            }
        }
    };
    enc.finish(post_apply)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testutil::{Trickle, encode, header, page, v050_file};
    use crate::{DbChecksum, HEADER_FLAG_NO_CHECKSUM, decode_all};
    use proptest::prelude::*;

    const PS: u32 = 512;

    /// One transaction of the model: (commit, pages written).
    type Txn = (u32, Vec<(u32, Vec<u8>)>);

    /// A chain of files with real checksums, built from a model database.
    struct Chain {
        files: Vec<Vec<u8>>,
        // Database image after each file.
        states: Vec<Vec<Vec<u8>>>,
    }

    /// `txns[i]` = (commit, pages written). File 0 is a snapshot.
    fn chain(txns: &[Txn]) -> Chain {
        let mut db: Vec<Vec<u8>> = Vec::new();
        let mut sum = DbChecksum::new();
        let mut files = Vec::new();
        let mut states = Vec::new();
        for (i, (commit, pages)) in txns.iter().enumerate() {
            let txid = i as u64 + 1;
            let pre = if txid == 1 { Checksum(0) } else { sum.value() };
            db.resize(*commit as usize, vec![0; PS as usize]);
            sum.truncate(*commit);
            for (p, d) in pages {
                db[*p as usize - 1] = d.clone();
                sum.apply_page(*p, d);
            }
            files.push(encode(
                header(PS, *commit, txid, txid, pre),
                pages,
                sum.value(),
            ));
            states.push(db.clone());
        }
        Chain { files, states }
    }

    fn decoders(files: &[Vec<u8>]) -> Vec<Decoder<&[u8]>> {
        files
            .iter()
            .map(|f| Decoder::new(&f[..]).unwrap())
            .collect()
    }

    fn pg(n: u32, seed: u64) -> (u32, Vec<u8>) {
        (n, page(PS, seed))
    }

    fn simple_chain() -> Chain {
        chain(&[
            (3, vec![pg(1, 1), pg(2, 2), pg(3, 3)]),
            (5, vec![pg(2, 20), pg(4, 4), pg(5, 5)]),
            (5, vec![pg(1, 100), pg(5, 50)]),
            (2, vec![pg(2, 200)]),
            (4, vec![pg(3, 30), pg(4, 40)]),
        ])
    }

    #[test]
    fn newest_page_wins_and_commit_truncates() {
        let c = simple_chain();
        let (out, t) = compact(
            decoders(&c.files[1..4]),
            Vec::new(),
            CompactOptions::default(),
        )
        .unwrap();
        let (h, pages, t2) = decode_all(&out).unwrap();
        assert_eq!(t, t2);
        assert_eq!((h.min_txid, h.max_txid, h.commit), (Txid(2), Txid(4), 2));
        // Pages 4 and 5 are beyond the final commit; page 1 from file 3, page 2 from file 4.
        assert_eq!(pages, vec![pg(1, 100), pg(2, 200)]);
        assert_eq!(
            h.pre_apply_checksum,
            decode_all(&c.files[1]).unwrap().0.pre_apply_checksum
        );
        assert_eq!(
            t.post_apply_checksum,
            decode_all(&c.files[3]).unwrap().2.post_apply_checksum
        );
        assert_eq!(h.timestamp_ms, 1_700_000_000_000);
        assert_eq!((h.wal_offset, h.wal_size, h.node_id, h.flags), (0, 0, 0, 0));
    }

    #[test]
    fn snapshot_compaction_equals_final_database() {
        let c = simple_chain();
        let (out, t) = compact(
            decoders(&c.files),
            Vec::new(),
            CompactOptions {
                timestamp_ms: Some(42),
                ..CompactOptions::default()
            },
        )
        .unwrap();
        let (h, pages, _) = decode_all(&out).unwrap();
        assert!(h.is_snapshot());
        assert_eq!(h.timestamp_ms, 42);
        let want: Vec<_> = c.states[4]
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u32 + 1, d.clone()))
            .collect();
        assert_eq!(pages, want);
        assert_eq!(
            t.post_apply_checksum,
            DbChecksum::from_database(PS, &c.states[4].concat()).value()
        );
    }

    #[test]
    fn single_input_is_copied() {
        let c = simple_chain();
        let (out, _) = compact(
            decoders(&c.files[2..3]),
            Vec::new(),
            CompactOptions::default(),
        )
        .unwrap();
        assert_eq!(
            decode_all(&out).unwrap().1,
            decode_all(&c.files[2]).unwrap().1
        );
    }

    #[test]
    fn rejects_bad_inputs() {
        let c = simple_chain();
        assert!(matches!(
            compact(
                Vec::<Decoder<&[u8]>>::new(),
                Vec::new(),
                CompactOptions::default()
            ),
            Err(LtxError::NoInputs)
        ));
        let gap = vec![c.files[0].clone(), c.files[2].clone()];
        assert!(matches!(
            compact(decoders(&gap), Vec::new(), CompactOptions::default()),
            Err(LtxError::NotContiguous {
                prev_max: Txid(1),
                next_min: Txid(3)
            })
        ));
        let reversed = vec![c.files[2].clone(), c.files[1].clone()];
        assert!(matches!(
            compact(decoders(&reversed), Vec::new(), CompactOptions::default()),
            Err(LtxError::NotContiguous { .. })
        ));
        // Same TXID range twice (overlap).
        let twice = vec![c.files[1].clone(), c.files[1].clone()];
        assert!(matches!(
            compact(decoders(&twice), Vec::new(), CompactOptions::default()),
            Err(LtxError::NotContiguous { .. })
        ));
        // Page size mismatch.
        let other = encode(
            header(1024, 1, 3, 3, Checksum(CHECKSUM_FLAG | 1)),
            &[],
            Checksum(CHECKSUM_FLAG | 2),
        );
        let mixed = vec![c.files[1].clone(), other];
        assert!(matches!(
            compact(decoders(&mixed), Vec::new(), CompactOptions::default()),
            Err(LtxError::PageSizeMismatch {
                expected: 512,
                actual: 1024
            })
        ));
    }

    #[test]
    fn broken_checksum_chain_is_rejected() {
        let c = simple_chain();
        // File 3 claims a pre-apply checksum that is not file 2's post-apply.
        let (h, pages, t) = decode_all(&c.files[2]).unwrap();
        let forged = encode(
            Header {
                pre_apply_checksum: Checksum(CHECKSUM_FLAG | 77),
                ..h
            },
            &pages,
            t.post_apply_checksum,
        );
        let files = vec![c.files[1].clone(), forged];
        assert!(matches!(
            compact(decoders(&files), Vec::new(), CompactOptions::default()),
            Err(LtxError::ChecksumMismatch { .. })
        ));
        // A given post-apply checksum must agree with the newest input.
        let opts = CompactOptions {
            post_apply_checksum: Some(Checksum(CHECKSUM_FLAG | 9)),
            ..Default::default()
        };
        assert!(matches!(
            compact(decoders(&c.files[1..3]), Vec::new(), opts),
            Err(LtxError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn corrupt_input_fails_the_compaction() {
        let c = simple_chain();
        let mut files = c.files[1..3].to_vec();
        let n = files[1].len();
        files[1][n - 1] ^= 1;
        assert!(matches!(
            compact(decoders(&files), Vec::new(), CompactOptions::default()),
            Err(LtxError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn no_checksum_inputs() {
        // Litestream-style inputs (NoChecksum, v0.5.0 frame pages): a snapshot output gets
        // its post-apply checksum computed; otherwise the caller supplies both.
        let mut h1 = header(PS, 2, 1, 1, Checksum(0));
        h1.flags = HEADER_FLAG_NO_CHECKSUM;
        let mut h2 = header(PS, 2, 2, 2, Checksum(0));
        h2.flags = HEADER_FLAG_NO_CHECKSUM;
        let info = lz4_flex::frame::FrameInfo::new();
        let f1 = v050_file(h1, &[pg(1, 1), pg(2, 2)], Checksum(0), info.clone());
        let f2 = v050_file(h2, &[pg(2, 3)], Checksum(0), info);
        let files = vec![f1, f2];
        let (out, t) = compact(decoders(&files), Vec::new(), CompactOptions::default()).unwrap();
        let (h, pages, _) = decode_all(&out).unwrap();
        assert_eq!(h.flags, 0);
        assert_eq!(pages, vec![pg(1, 1), pg(2, 3)]);
        let want: DbChecksum = pages
            .iter()
            .map(|(p, d)| (*p, crate::page_checksum(*p, d)))
            .collect();
        assert_eq!(t.post_apply_checksum, want.value());

        let err =
            compact(decoders(&files[1..]), Vec::new(), CompactOptions::default()).unwrap_err();
        assert!(matches!(err, LtxError::MissingChecksum { .. }));
        let opts = CompactOptions {
            pre_apply_checksum: Some(Checksum(CHECKSUM_FLAG | 5)),
            ..Default::default()
        };
        assert!(matches!(
            compact(decoders(&files[1..]), Vec::new(), opts),
            Err(LtxError::MissingChecksum { .. })
        ));
        let opts = CompactOptions {
            pre_apply_checksum: Some(Checksum(CHECKSUM_FLAG | 5)),
            post_apply_checksum: Some(Checksum(CHECKSUM_FLAG | 6)),
            ..Default::default()
        };
        let (out, _) = compact(decoders(&files[1..]), Vec::new(), opts).unwrap();
        assert_eq!(
            decode_all(&out).unwrap().0.pre_apply_checksum,
            Checksum(CHECKSUM_FLAG | 5)
        );
    }

    #[test]
    fn shrink_then_grow_needs_the_grown_pages_written_again() {
        // 5 pages, truncated to 3, grown to 5 again writing page 5 only: page 4 would
        // be the stale copy from before the truncation. Refused, naming the page.
        let c = chain(&[
            (5, vec![pg(1, 1), pg(2, 2), pg(3, 3), pg(4, 4), pg(5, 5)]),
            (3, vec![pg(2, 20)]),
            (5, vec![pg(5, 50)]),
        ]);
        let err = compact(decoders(&c.files), Vec::new(), CompactOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                LtxError::PageNeverWritten {
                    pgno: 4,
                    floor: 3,
                    commit: 5,
                    ..
                }
            ),
            "{err}"
        );
        let err = compact(
            decoders(&c.files[1..]),
            Vec::new(),
            CompactOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, LtxError::PageNeverWritten { pgno: 4, .. }));
        // As SQLite writes it (every page of the growth), the stale page is replaced
        // and the truncated-away page 4 of the first file never comes back.
        let c = chain(&[
            (5, vec![pg(1, 1), pg(2, 2), pg(3, 3), pg(4, 4), pg(5, 5)]),
            (3, vec![pg(2, 20)]),
            (5, vec![pg(4, 40), pg(5, 50)]),
        ]);
        let (out, _) = compact(decoders(&c.files), Vec::new(), CompactOptions::default()).unwrap();
        let (_, pages, _) = decode_all(&out).unwrap();
        assert_eq!(
            pages,
            vec![pg(1, 1), pg(2, 20), pg(3, 3), pg(4, 40), pg(5, 50)]
        );
    }

    #[test]
    fn inputs_are_streamed() {
        // Readers that return a few bytes per call: nothing needs the whole file at once.
        let c = simple_chain();
        let inputs: Vec<Decoder<Trickle>> = c
            .files
            .iter()
            .map(|f| Decoder::new(Trickle { data: f, chunk: 5 }).unwrap())
            .collect();
        let (out, _) = compact(inputs, Vec::new(), CompactOptions::default()).unwrap();
        let (out2, _) = compact(decoders(&c.files), Vec::new(), CompactOptions::default()).unwrap();
        assert_eq!(out, out2);
    }

    fn txns() -> impl Strategy<Value = Vec<Txn>> {
        proptest::collection::vec(
            (
                1u32..24,
                proptest::collection::btree_set(1u32..24, 0..6),
                any::<u64>(),
            ),
            1..7,
        )
        .prop_map(|steps| {
            let mut out = Vec::new();
            let mut commit = 0u32;
            for (i, (new_commit, touched, seed)) in steps.into_iter().enumerate() {
                let mut pages = BTreeMap::new();
                // A growing database writes every new page.
                for p in commit + 1..=new_commit {
                    pages.insert(p, ());
                }
                for p in touched.into_iter().filter(|&p| p <= new_commit) {
                    pages.insert(p, ());
                }
                let pages = pages
                    .keys()
                    .map(|&p| (p, page(PS, seed ^ (u64::from(p) << 8) ^ i as u64)))
                    .collect();
                out.push((new_commit, pages));
                commit = new_commit;
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn compaction_matches_the_model(txns in txns(), a in 0usize..7, len in 1usize..7) {
            let c = chain(&txns);
            let a = a % c.files.len();
            let b = (a + len - 1).min(c.files.len() - 1);
            let (out, t) = compact(decoders(&c.files[a..=b]), Vec::new(), CompactOptions::default()).unwrap();
            let (h, pages, _) = decode_all(&out).unwrap();

            // Model: applying the range's transactions one after the other, from
            // nothing: each truncation drops the pages above it.
            let commit = txns[b].0;
            let mut want = BTreeMap::new();
            for (size, ps) in &txns[a..=b] {
                want.retain(|p, _| p <= size);
                for (p, d) in ps {
                    want.insert(*p, d.clone());
                }
            }
            prop_assert_eq!(pages.clone(), want.into_iter().collect::<Vec<_>>());
            prop_assert_eq!((h.min_txid.0, h.max_txid.0, h.commit), (a as u64 + 1, b as u64 + 1, commit));

            // Applying the output to the state before `a` gives the state after `b`.
            let mut db = if a == 0 { Vec::new() } else { c.states[a - 1].clone() };
            db.resize(commit as usize, vec![0; PS as usize]);
            for (p, d) in pages {
                db[p as usize - 1] = d;
            }
            prop_assert_eq!(&db, &c.states[b]);
            prop_assert_eq!(t.post_apply_checksum, DbChecksum::from_database(PS, &db.concat()).value());
        }
    }
}
