//! Embedded mode under criterion: a bare PUT to the S3 server, a
//! durable commit (one writer, and 8 concurrent ones sharing uploads), and a
//! plain commit through the vault's writer vs plain SQLite, each against the
//! moto S3 server on 127.0.0.1 directly and through a proxy adding 10 ms
//! round trips. The whole matrix with the sidecar and Litestream is
//! `litevault-bench embedded matrix` (src/bin/litevault-bench/).
//!
//! `cargo bench --bench embedded` (needs `pip install 'moto[server]'`;
//! `-- --test` runs each benchmark once).

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use litevault::{Replica, Vault, VaultOptions};
use litevault_bench::lab::{Lab, LabOptions};
use object_store::{ObjectStoreExt, PutPayload};

/// One network setup: the vault and a replica handle for bare PUTs.
struct Setup {
    name: &'static str,
    vault: Arc<Vault>,
    replica: Replica,
}

/// Started on first use (listing the benchmarks starts nothing); dropped,
/// with the moto server, at the end of the group.
struct Fixture {
    rt: tokio::runtime::Runtime,
    setups: Vec<Setup>,
    plain: rusqlite::Connection,
    _dir: tempfile::TempDir,
    _lab: Lab,
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)";
const INSERT: &str = "INSERT INTO t(v) VALUES (randomblob(200))";

impl Fixture {
    fn start() -> Fixture {
        // The lab's S3 server (moto) and its delaying proxy; no mount, no
        // PostgreSQL.
        let lab = Lab::start(&LabOptions {
            fuse: false,
            postgres: false,
            ..LabOptions::new(LabOptions::default_base_dir())
        })
        .expect("the lab starts (needs pip install 'moto[server]')");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut setups = Vec::new();
        for (name, proxied) in [("direct", false), ("proxy10ms", true)] {
            let open = || {
                lab.replica(name, proxied)
                    .expect("the replica URL is valid")
            };
            let db = dir.path().join(format!("{name}.db"));
            let vault = rt.block_on(async {
                let vault = Vault::open(&db)
                    .replica(open())
                    .options(VaultOptions::default())
                    .start()
                    .await
                    .expect("the vault starts");
                vault.writer().await.execute_batch(TABLE).expect("a table");
                vault
                    .wait_replicated(vault.txid())
                    .await
                    .expect("the first upload");
                vault
            });
            setups.push(Setup {
                name,
                vault: Arc::new(vault),
                replica: open(),
            });
        }
        let plain = rusqlite::Connection::open(dir.path().join("plain.db")).expect("plain db");
        plain
            .pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        plain
            .pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        plain.execute_batch(TABLE).expect("a table");
        Fixture {
            rt,
            setups,
            plain,
            _dir: dir,
            _lab: lab,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for s in self.setups.drain(..) {
            if let Ok(v) = Arc::try_unwrap(s.vault) {
                let _ = self.rt.block_on(v.close());
            }
        }
    }
}

fn embedded(c: &mut Criterion) {
    let fixture: OnceCell<Fixture> = OnceCell::new();
    let fx = || fixture.get_or_init(Fixture::start);
    let mut g = c.benchmark_group("embedded");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for name in ["direct", "proxy10ms"] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("put_4KiB", name), |b| {
            let f = fx();
            let s = f.setups.iter().find(|s| s.name == name).unwrap();
            let body = PutPayload::from(vec![7u8; 4096]);
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                let key = object_store::path::Path::from(format!(
                    "{}/bench-put/{i}",
                    s.replica.level_prefix(0)
                ));
                f.rt.block_on(s.replica.store().put(&key, body.clone()))
                    .expect("PUT");
            })
        });
        g.bench_function(BenchmarkId::new("durable_commit", name), |b| {
            let f = fx();
            let s = f.setups.iter().find(|s| s.name == name).unwrap();
            b.iter(|| {
                f.rt.block_on(s.vault.transaction_durable(|tx| tx.execute(INSERT, [])))
                    .expect("a durable commit")
            })
        });
        g.throughput(Throughput::Elements(8));
        g.bench_function(BenchmarkId::new("durable_commit_8_concurrent", name), |b| {
            let f = fx();
            let s = f.setups.iter().find(|s| s.name == name).unwrap();
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    f.rt.block_on(async {
                        let all = (0..8).map(|_| {
                            let v = s.vault.clone();
                            tokio::spawn(async move {
                                v.transaction_durable(|tx| tx.execute(INSERT, [])).await
                            })
                        });
                        for r in futures::future::join_all(all).await {
                            r.expect("a writer task").expect("a durable commit");
                        }
                    });
                }
                start.elapsed()
            })
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("commit_replicating", name), |b| {
            let f = fx();
            let s = f.setups.iter().find(|s| s.name == name).unwrap();
            let conn = f.rt.block_on(s.vault.writer());
            b.iter(|| conn.execute(INSERT, []).expect("a commit"))
        });
    }
    g.bench_function("commit_plain_sqlite", |b| {
        let f = fx();
        b.iter(|| f.plain.execute(INSERT, []).expect("a commit"))
    });
    g.finish();
    drop(fixture);
}

criterion_group!(benches, embedded);
criterion_main!(benches);
