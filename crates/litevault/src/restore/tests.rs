use super::*;
use std::collections::BTreeMap;

/// A small deterministic generator (no seed-dependent crate API).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Writes `n` level-0 files with random pages and sizes (growing and
/// shrinking); returns the model: the pages after applying them in order.
async fn random_chain(replica: &Replica, n: u64, seed: u64) -> BTreeMap<u32, Vec<u8>> {
    const PS: u32 = 512;
    let mut rng = Lcg(seed);
    let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for txid in 1..=n {
        let commit = if txid == 1 {
            20
        } else {
            5 + rng.next(30) as u32
        };
        let pages: Vec<u32> = if txid == 1 {
            (1..=commit).collect()
        } else {
            (1..=commit).filter(|_| rng.next(4) == 0).collect()
        };
        let header = ltx::Header {
            page_size: PS,
            commit,
            min_txid: Txid(txid),
            max_txid: Txid(txid),
            pre_apply_checksum: if txid == 1 {
                Checksum(0)
            } else {
                Checksum(ltx::CHECKSUM_FLAG | 1)
            },
            ..ltx::Header::default()
        };
        let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
        let mut snap = DbChecksum::new();
        for &p in &pages {
            let data: Vec<u8> = (0..PS)
                .map(|i| (i as u64 ^ txid ^ u64::from(p)) as u8)
                .collect();
            enc.encode_page(p, &data).unwrap();
            snap.apply_page(p, &data);
            model.insert(p, data);
        }
        model.retain(|p, _| *p <= commit);
        let post = if txid == 1 {
            snap.value()
        } else {
            Checksum(ltx::CHECKSUM_FLAG | 2)
        };
        let (bytes, _) = enc.finish(post).unwrap();
        replica
            .write_file(0, Txid(txid), Txid(txid), bytes.into(), Utc::now())
            .await
            .unwrap();
    }
    model
}

/// Merging by groups into runs (and runs of runs) gives exactly what
/// applying the files one after the other gives, for any fan-in.
#[tokio::test]
async fn grouped_merge_equals_applying_in_order() {
    let replica = Replica::open("memory:///chain").unwrap();
    let model = random_chain(&replica, 40, 7).await;
    let chain = replica.list_level(0).await.unwrap();
    assert_eq!(chain.len(), 40);
    let dir = tempfile::tempdir().unwrap();
    for fan_in in [2, 3, 7, 40, 64] {
        let staging = dir.path().join(format!("staging-{fan_in}"));
        std::fs::create_dir_all(&staging).unwrap();
        let mut prepared = prepare_with(
            &replica,
            &chain,
            &staging,
            4,
            &crate::progress::ProgressSink::none(),
            fan_in,
        )
        .await
        .unwrap();
        let mut got = BTreeMap::new();
        prepared
            .merge(&chain, |pgno, page| {
                got.insert(pgno, page.to_vec());
                Ok::<_, RestoreError>(ControlFlow::Continue(()))
            })
            .unwrap();
        let trailers = prepared.finish(&chain).unwrap();
        assert_eq!(trailers.len(), chain.len());
        assert_eq!(got, model, "fan-in {fan_in}");
    }
}

/// A file that cannot be opened is named, with the cause.
#[test]
fn an_open_failure_names_the_file_and_the_cause() {
    let f = LtxFileInfo {
        level: 0,
        min_txid: Txid(3),
        max_txid: Txid(3),
        size: 10,
        created: Utc::now(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("ltx/0/0000000000000003-0000000000000003.ltx");
    let err = Fetched::Local(path.clone()).reader(&f).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("L0/0000000000000003-0000000000000003.ltx"),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

/// A snapshot of `pages` incompressible 4 KiB pages (larger than
/// `IN_MEMORY_LIMIT`, so a restore streams it to a staging file) over an
/// in-memory store; the store's faults are the caller's.
async fn large_snapshot_behind(
    faults: crate::replica::faults::FaultConfig,
) -> (Replica, Arc<crate::replica::faults::FaultStore>, DbChecksum) {
    use crate::replica::faults::FaultStore;
    const PS: u32 = 4096;
    // A real database (the restore runs integrity_check) of random blobs,
    // which LZ4 cannot shrink.
    let src = tempfile::tempdir().unwrap();
    let db = src.path().join("big.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA page_size=4096; CREATE TABLE t(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1400)
         INSERT INTO t SELECT randomblob(3500) FROM n;",
    )
    .unwrap();
    drop(c);
    let image = std::fs::read(&db).unwrap();
    let pages = (image.len() / PS as usize) as u32;
    let inner: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let plain = Replica::from_store(
        inner.clone(),
        "db",
        crate::replica::KeyLayout::S3,
        "memory://db",
    );
    let header = ltx::Header {
        page_size: PS,
        commit: pages,
        min_txid: Txid(1),
        max_txid: Txid(1),
        ..ltx::Header::default()
    };
    let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
    let mut sum = DbChecksum::new();
    for (i, data) in image.chunks(PS as usize).enumerate() {
        let p = i as u32 + 1;
        if p == ltx::lock_pgno(PS) {
            continue;
        }
        enc.encode_page(p, data).unwrap();
        sum.apply_page(p, data);
    }
    let (bytes, _) = enc.finish(sum.value()).unwrap();
    assert!(bytes.len() as u64 > IN_MEMORY_LIMIT);
    plain
        .write_file(9, Txid(1), Txid(1), bytes.into(), Utc::now())
        .await
        .unwrap();
    let store = Arc::new(FaultStore::new(inner, faults));
    let replica = Replica::from_store(
        store.clone(),
        "db",
        crate::replica::KeyLayout::S3,
        "memory://db",
    )
    .with_retry(crate::replica::RetryPolicy {
        max_attempts: 4,
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(2),
    });
    (replica, store, sum)
}

/// A download cut in the middle of its body is started again: the restore
/// completes, verified, although its GET broke off. (Seeds until one cuts:
/// which requests a seed cuts depends on how many the restore makes.)
#[tokio::test]
async fn a_download_cut_mid_body_is_started_again() {
    use crate::replica::faults::{FaultConfig, FaultKind};
    let mut cuts = 0;
    for seed in 1..=16 {
        let faults = FaultConfig {
            rate: 0.5,
            seed,
            kinds: vec![FaultKind::Cut],
            ..FaultConfig::default()
        };
        let (replica, store, sum) = large_snapshot_behind(faults).await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.db");
        let report = match restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap()
        {
            RestoreOutcome::Restored(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(report.checksum, sum.value(), "seed {seed}");
        cuts += store.counts().cut;
        if cuts > 0 {
            break;
        }
    }
    assert!(cuts > 0, "no cut was injected: the test proves nothing");
}

/// Downloads cut every time fail after the policy's attempts, naming them,
/// and leave no output.
#[tokio::test]
async fn a_download_cut_every_time_fails_after_every_attempt() {
    use crate::replica::faults::{FaultConfig, FaultKind};
    let faults = FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::Cut],
        ..FaultConfig::default()
    };
    let (replica, _store, _) = large_snapshot_behind(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let e = restore(&replica, &out, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            RestoreError::Replica(ReplicaError::Storage { attempts: 4, .. })
        ),
        "{e:?}"
    );
    assert!(!out.exists());
}

/// Compaction and restore merge pages by one rule: a window of a chain
/// compacted into one file restores to what the parts restore to.
mod compaction_then_restore {
    use super::*;
    use proptest::prelude::*;

    use crate::testchain::{encode, histories};

    /// Restores the latest state of a replica holding `files` at level 0
    /// (each `(min, max, bytes)`), merging `fan_in` files at a time: the
    /// restore up to, not including, `integrity_check` (the pages here are
    /// not a SQLite database). `Err` when the restore refuses the chain.
    async fn restore_latest(
        files: &[(Txid, Txid, Vec<u8>)],
        fan_in: usize,
    ) -> Result<Vec<u8>, String> {
        let replica = Replica::open("memory:///p").unwrap();
        for (min, max, bytes) in files {
            replica
                .write_file(0, *min, *max, bytes.clone().into(), Utc::now())
                .await
                .unwrap();
        }
        let listed = replica.list_all().await.unwrap();
        let chain = plan_restore(&replica, &listed, RestoreTarget::Latest)
            .await
            .map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().unwrap();
        let prepared = prepare_with(
            &replica,
            &chain,
            dir.path(),
            4,
            &crate::progress::ProgressSink::none(),
            fan_in,
        )
        .await
        .map_err(|e| e.to_string())?;
        let out = dir.path().join("out.db");
        merge_into(&chain, prepared, &out).map_err(|e| e.to_string())?;
        Ok(std::fs::read(&out).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn compaction_then_restore_equals_restore_of_the_parts(
            (txns, unfaithful) in histories(1..9),
            a in 0usize..9,
            len in 1usize..9,
            fan_in in prop::sample::select(vec![2usize, 3, 64]),
        ) {
            let (files, model) = encode(&txns);
            let a = a % files.len();
            let b = (a + len - 1).min(files.len() - 1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let parts: Vec<(Txid, Txid, Vec<u8>)> =
                files.iter().map(|(t, f)| (*t, *t, f.clone())).collect();
            let from_parts = rt.block_on(restore_latest(&parts, fan_in));
            if !unfaithful {
                prop_assert_eq!(from_parts.as_deref().map_err(|e| e.as_str()), Ok(&model[..]));
            }
            let inputs: Vec<ltx::Decoder<&[u8]>> = files[a..=b]
                .iter()
                .map(|(_, f)| ltx::Decoder::new(&f[..]).unwrap())
                .collect();
            match ltx::compact(inputs, Vec::new(), ltx::CompactOptions::default()) {
                Ok((compacted, _)) => {
                    let mut with = parts[..a].to_vec();
                    with.push((files[a].0, files[b].0, compacted));
                    with.extend_from_slice(&parts[b + 1..]);
                    let from_compacted = rt.block_on(restore_latest(&with, fan_in));
                    prop_assert_eq!(from_compacted.is_ok(), from_parts.is_ok(),
                        "parts: {:?}, compacted: {:?}", from_parts.as_ref().err(), from_compacted.as_ref().err());
                    if let (Ok(x), Ok(y)) = (&from_parts, &from_compacted) {
                        prop_assert!(x == y, "the compacted chain restores to other pages");
                    }
                }
                Err(ltx::LtxError::PageNeverWritten { .. }) => {
                    prop_assert!(unfaithful, "a faithful history was refused");
                }
                Err(e) => prop_assert!(false, "compaction failed: {e}"),
            }
        }
    }
}
