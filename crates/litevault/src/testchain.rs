//! Chains of LTX files over a model database, for tests: transactions that
//! grow and shrink it, encoded with real checksums.

use proptest::prelude::*;

use crate::ltx::{self, Checksum, DbChecksum, Txid};

/// The page size of the chains.
pub const PS: u32 = 512;

/// One transaction: the size it commits and the pages it writes.
pub type Txn = (u32, Vec<u32>);

/// A page's content, unique to the transaction that wrote it.
pub fn data(txid: u64, pgno: u32) -> Vec<u8> {
    let mut d = vec![(txid as u8) ^ (pgno as u8).rotate_left(3); PS as usize];
    d[..8].copy_from_slice(&txid.to_be_bytes());
    d[8..12].copy_from_slice(&pgno.to_be_bytes());
    d
}

/// The chain's files (TXID `i + 1` for transaction `i`, checksums real)
/// and the database after the last one.
pub fn encode(txns: &[Txn]) -> (Vec<(Txid, Vec<u8>)>, Vec<u8>) {
    let mut db: Vec<Vec<u8>> = Vec::new();
    let mut sum = DbChecksum::new();
    let mut files = Vec::new();
    for (i, (commit, pages)) in txns.iter().enumerate() {
        let txid = i as u64 + 1;
        let header = ltx::Header {
            page_size: PS,
            commit: *commit,
            min_txid: Txid(txid),
            max_txid: Txid(txid),
            timestamp_ms: 1_700_000_000_000 + txid as i64,
            pre_apply_checksum: if txid == 1 { Checksum(0) } else { sum.value() },
            ..ltx::Header::default()
        };
        db.resize(*commit as usize, vec![0; PS as usize]);
        sum.truncate(*commit);
        let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
        for &p in pages {
            let d = data(txid, p);
            enc.encode_page(p, &d).unwrap();
            sum.apply_page(p, &d);
            db[p as usize - 1] = d;
        }
        files.push((Txid(txid), enc.finish(sum.value()).unwrap().0));
    }
    (files, db.concat())
}

/// Histories that shrink and grow. A faithful one writes every page a
/// growth adds, as SQLite does; an unfaithful one may skip some (only a
/// damaged or forged replica looks like that). `steps` transactions
/// follow the first.
pub fn histories(steps: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<Txn>, bool)> {
    (
        1u32..20,
        proptest::collection::vec(
            (
                1u32..20,
                proptest::collection::btree_set(1u32..20, 0..5),
                proptest::collection::btree_set(1u32..20, 0..3),
            ),
            steps,
        ),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(first, steps, unfaithful)| {
            let mut txns = vec![(first, (1..=first).collect::<Vec<u32>>())];
            let mut size = first;
            for (commit, touched, skipped) in steps {
                let mut pages: std::collections::BTreeSet<u32> =
                    touched.into_iter().filter(|&p| p <= commit).collect();
                pages.extend(size + 1..=commit);
                if unfaithful {
                    pages.retain(|p| !skipped.contains(p));
                }
                txns.push((commit, pages.into_iter().collect()));
                size = commit;
            }
            (txns, unfaithful)
        })
}
