//! Embedded mode under criterion: a bare PUT to the S3 server, a
//! durable commit (one writer, and 8 concurrent ones sharing uploads), and a
//! plain commit through the vault's writer vs plain SQLite, each against the
//! moto S3 server on 127.0.0.1 directly and through a proxy adding 10 ms
//! round trips. The whole matrix with the sidecar and Litestream is
//! `scripts/bench_embedded.py`.
//!
//! `cargo bench --bench embedded` (needs `pip install 'moto[server]'`;
//! `-- --test` runs each benchmark once).

#[path = "../tests/support/mod.rs"]
mod support;

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use litevault::bench::proxy::DelayProxy;
use litevault::{Replica, Vault, VaultOptions};
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
    _proxy: DelayProxy,
    _dir: tempfile::TempDir,
    _s3: support::S3Server,
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)";
const INSERT: &str = "INSERT INTO t(v) VALUES (randomblob(200))";

impl Fixture {
    fn start() -> Fixture {
        let s3 = support::S3Server::start();
        let bucket = s3.bucket("embedded-bench");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let upstream = format!("127.0.0.1:{}", s3.port)
            .parse()
            .expect("an address");
        let proxy = rt
            .block_on(DelayProxy::start(
                "127.0.0.1:0",
                upstream,
                Duration::from_millis(10),
            ))
            .expect("the delaying proxy starts");
        let proxied = format!("http://{}", proxy.addr());
        let mut setups = Vec::new();
        for (name, endpoint) in [("direct", s3.endpoint()), ("proxy10ms", proxied)] {
            let url = format!(
                "s3://{bucket}/{name}?endpoint={endpoint}&region=us-east-1&force-path-style=true"
            );
            let open = || {
                Replica::open_with_credentials(&url, Some(&support::creds()))
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
            _proxy: proxy,
            _dir: dir,
            _s3: s3,
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
