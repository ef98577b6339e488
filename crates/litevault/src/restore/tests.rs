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
