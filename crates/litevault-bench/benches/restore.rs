//! Restore throughput from a local-folder replica: a snapshot plus many small
//! incremental files, merged, verified and integrity-checked.
//!
//! `cargo bench --bench restore`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use litevault::restore::{RestoreOptions, restore};
use litevault::{Replica, ReplicateOptions, Replicator};

fn setup(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> (Replica, u64) {
    let db = dir.join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 16000)
         INSERT INTO t SELECT i, randomblob(2000) FROM n;",
    )
    .unwrap();
    let replica = Replica::open(&format!("file://{}", dir.join("replica").display())).unwrap();
    rt.block_on(async {
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        for i in 0..200 {
            c.execute(
                "UPDATE t SET b = randomblob(2000) WHERE id = ?1",
                [i * 79 % 16000],
            )
            .unwrap();
            rep.sync_all().await.unwrap();
        }
        rep.run(async {}).await.unwrap();
    });
    let size = std::fs::metadata(&db).unwrap().len();
    (replica, size)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (replica, size) = setup(dir.path(), &rt);
    let mut g = c.benchmark_group("restore");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.bench_function("file_snapshot_plus_200_files", |b| {
        b.iter(|| {
            let out = dir.path().join("out.db");
            let _ = std::fs::remove_file(&out);
            rt.block_on(restore(
                &replica,
                &out,
                &RestoreOptions {
                    write_state: false,
                    ..Default::default()
                },
            ))
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
