//! The measurement engine (`litevault_bench`): every backend answers every
//! workload query with exactly the generated rows, a quick run measures
//! every backend × workload × dataset, a failing backend lands in `skipped`,
//! and the litevault-embedded backend's replica restores to the same
//! content. Real SQLite, a real PostgreSQL cluster, a real file:// replica.
//! No timing assertions.

use crate::support;
use std::path::Path;

use litevault::restore::{RestoreOptions, restore};
use litevault_bench::postgres::PgBackend;
use litevault_bench::results::{MIXED_READ, MIXED_WRITE};
use litevault_bench::sqlite::{JournalMode, SqliteBackend, VaultBackend};
use litevault_bench::workload::{ConversationSummary, NewMessage, Page, page_load};
use litevault_bench::{
    Backend, BenchError, DatasetSpec, Op, OpGen, RunOptions, Setup, Workload, run,
};

fn setup(spec: DatasetSpec) -> Setup {
    Setup {
        dataset: spec,
        sqlite_cache_kib: 2048,
        sessions: 3,
    }
}

/// The page as the generator says it must be, computed without a database.
fn expected_page(spec: &DatasetSpec, viewer: i64, conv: i64) -> Page {
    let all: Vec<_> = (1..=spec.messages as i64)
        .map(|id| spec.message(id))
        .filter(|m| m.conversation_id == conv)
        .collect();
    Page {
        viewer: spec.user(viewer),
        conversation: spec.conversation(conv),
        participants: spec.participants(conv).to_vec(),
        messages: all
            .iter()
            .rev()
            .take(10)
            .map(|m| (m.clone(), spec.user(m.author_id)))
            .collect(),
        message_count: all.len() as i64,
        sidebar: (1..=spec.conversations as i64)
            .rev()
            .filter(|&c| spec.owner_of(c) == viewer)
            .take(20)
            .map(|c| ConversationSummary {
                id: c,
                title: spec.conversation(c).title,
            })
            .collect(),
    }
}

/// Every query of every workload returns exactly the generated rows; one
/// insert lands as the next id and reads back. Returns the inserted id.
async fn assert_answers(backend: &dyn Backend, spec: &DatasetSpec) -> i64 {
    let mut s = backend.session().await.unwrap();
    let n = spec.messages as i64;
    for id in [1, 2, n / 2, n] {
        assert_eq!(
            s.message(id).await.unwrap(),
            Some(spec.message(id)),
            "message {id}"
        );
    }
    assert_eq!(s.message(n + 1000).await.unwrap(), None);
    assert_eq!(s.user(spec.users as i64 + 1).await.unwrap(), None);
    let scan = s.messages_from(500, 1000).await.unwrap();
    assert_eq!(scan.len(), 1000);
    for (k, m) in scan.iter().enumerate() {
        assert_eq!(*m, spec.message(500 + k as i64));
    }
    let mut shown = 0;
    for conv in [1, 7, spec.conversations as i64] {
        let viewer = spec.participants(conv)[1];
        let page = page_load(s.as_mut(), viewer, conv).await.unwrap();
        assert_eq!(
            page,
            expected_page(spec, viewer, conv),
            "page of conversation {conv}"
        );
        shown += page.messages.len();
    }
    assert!(shown > 0, "the pages showed messages");
    let new = spec.new_message(99, 0);
    let id = s.insert_message(&new).await.unwrap();
    assert_eq!(id, n + 1, "the first insert after loading gets the next id");
    let NewMessage {
        conversation_id,
        author_id,
        body,
        created_at,
    } = new;
    let back = s.message(id).await.unwrap().unwrap();
    assert_eq!(
        (
            back.conversation_id,
            back.author_id,
            back.body,
            back.created_at
        ),
        (conversation_id, author_id, body, created_at)
    );
    // The measured operations pass their own checks.
    let mut g = OpGen::new(spec.clone(), 7);
    for op in [Op::PointRead, Op::RangeScan, Op::PageLoad, Op::Insert] {
        for _ in 0..20 {
            g.run(op, s.as_mut())
                .await
                .unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
    }
    id
}

#[tokio::test]
async fn local_sqlite_answers_every_workload_with_the_generated_rows() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DatasetSpec::tiny(5);
    let mut b = SqliteBackend::local(dir.path());
    let load = b.load(&setup(spec.clone())).await.unwrap();
    assert_eq!(load.backend, "sqlite-local");
    assert!(load.data_bytes.unwrap() > 300_000, "{load:?}");
    assert_eq!(load.cache_bytes, Some(2048 * 1024));
    let path = b.path().unwrap().to_path_buf();
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_answers(&b, &spec).await;
    b.close().await.unwrap();
    assert!(!path.exists(), "close removes the database");
}

#[tokio::test]
async fn sqlite_in_a_directory_works_in_delete_and_wal_modes() {
    // The FUSE backend's code path (build on local scratch, copy into the
    // directory, open in the asked journal mode) on an ordinary directory;
    // the real s3fs mount is set up by the lab (crates/litevault-bench/benches/backends.rs).
    for (mode, want) in [(JournalMode::Delete, "delete"), (JournalMode::Wal, "wal")] {
        let mount = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let spec = DatasetSpec::tiny(9);
        let mut b = SqliteBackend::on_mount(mount.path(), mode, scratch.path());
        b.load(&setup(spec.clone())).await.unwrap();
        let path = b.path().unwrap().to_path_buf();
        assert!(path.starts_with(mount.path()));
        let got: String = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(got, want);
        let notes = b.info().notes.join(" ");
        assert!(
            notes.contains(&format!("journal_mode={}", want.to_uppercase())),
            "{notes}"
        );
        assert_eq!(
            std::fs::read_dir(scratch.path()).unwrap().count(),
            0,
            "the scratch build is removed"
        );
        assert_answers(&b, &spec).await;
        b.close().await.unwrap();
    }
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_vault_answers_and_its_replica_restores_to_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let replica_dir = tempfile::tempdir().unwrap();
    let spec = DatasetSpec::tiny(13);
    let mut b = VaultBackend::new(dir.path().join("db"), &file_url(replica_dir.path()));
    b.load(&setup(spec.clone())).await.unwrap();
    let inserted = assert_answers(&b, &spec).await;
    // Everything committed so far reaches the replica.
    let vault = b.vault().unwrap().clone();
    vault.replicator().sync_all().await.unwrap();
    let live = b.path().unwrap().to_path_buf();
    let want = litevault::content::content_digest(&live).unwrap();
    let replica = litevault::Replica::open(&b.replica_url(&spec.name)).unwrap();
    let out = dir.path().join("restored.db");
    restore(&replica, &out, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(litevault::content::content_digest(&out).unwrap(), want);
    let c = rusqlite::Connection::open(&out).unwrap();
    let (count, max): (i64, i64) = c
        .query_row("SELECT count(*), max(id) FROM messages", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(
        max > inserted,
        "the measured inserts are in the replica too"
    );
    assert_eq!(count, max, "ids stay dense");
    drop(vault);
    b.close().await.unwrap();
    assert!(!live.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn postgres_answers_every_workload_and_drops_its_schema() {
    let pg = support::postgres::PgCluster::start();
    let url = pg.fresh_db("bench");
    let spec = DatasetSpec::tiny(17);
    let mut b = PgBackend::new(&url).named("pg-direct", "PostgreSQL", "loopback");
    let load = b.load(&setup(spec.clone())).await.unwrap();
    assert!(load.data_bytes.unwrap() > 300_000, "{load:?}");
    assert!(load.cache_bytes.unwrap() > 0);
    assert!(
        b.info().notes[0].contains("shared_buffers="),
        "{:?}",
        b.info()
    );
    assert_eq!(
        pg.psql(
            "bench",
            "SELECT count(*) FROM litevault_bench_pg_direct.messages"
        ),
        spec.messages.to_string()
    );
    assert_answers(&b, &spec).await;
    b.close().await.unwrap();
    assert_eq!(
        pg.psql(
            "bench",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'litevault_bench_pg_direct'"
        ),
        "0"
    );
}

/// The default current-thread test runtime: workers on their own threads
/// still let PostgreSQL's connection tasks and the vault's replicator run.
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn quick_run_measures_every_backend_workload_and_dataset_and_skips_the_broken() {
    let pg = support::postgres::PgCluster::start();
    let url = pg.fresh_db("bench");
    let dir = tempfile::tempdir().unwrap();
    let replica_dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let backends: Vec<Box<dyn Backend>> = vec![
        Box::new(SqliteBackend::local(dir.path().join("local"))),
        Box::new(VaultBackend::new(
            dir.path().join("vault"),
            &file_url(replica_dir.path()),
        )),
        Box::new(SqliteBackend::local(blocker.join("sub")).named(
            "sqlite-broken",
            "SQLite below a file",
            "cannot be created",
        )),
        Box::new(PgBackend::new(&url)),
        Box::new(
            VaultBackend::new(
                dir.path().join("vault-down"),
                "s3://none/bench?endpoint=http://127.0.0.1:1&region=us-east-1&force-path-style=true",
            )
            .with_credentials(support::creds())
            .named("vault-down", "litevault, S3 not listening", "connection refused"),
        ),
        Box::new(
            PgBackend::new("postgres://postgres@127.0.0.1:1/none").named(
                "pg-down",
                "PostgreSQL, nothing listening",
                "connection refused",
            ),
        ),
    ];
    let opts = RunOptions::quick();
    let report = run(backends, &opts).await.unwrap();

    let ids: Vec<&str> = report.backends.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "sqlite-local",
            "litevault-embedded",
            "sqlite-broken",
            "postgres",
            "vault-down",
            "pg-down"
        ]
    );
    let workloads = ["point_read", "range_scan", "page_load", "insert"];
    for backend in ["sqlite-local", "litevault-embedded", "postgres"] {
        for w in workloads {
            let m = report
                .find(backend, w, "tiny")
                .unwrap_or_else(|| panic!("{backend} {w} measured"));
            assert_eq!((m.samples, m.errors), (200, 0), "{m:?}");
            assert!(m.p50_us > 0.0 && m.p50_us <= m.p95_us, "{m:?}");
            assert!(m.p95_us <= m.p99_us && m.p99_us <= m.max_us, "{m:?}");
            assert!(m.ops_per_sec > 0.0);
        }
        let r = report.find(backend, MIXED_READ, "tiny").unwrap();
        assert_eq!((r.workers, r.samples, r.errors), (2, 400, 0), "{r:?}");
        let w = report.find(backend, MIXED_WRITE, "tiny").unwrap();
        assert_eq!((w.workers, w.samples, w.errors), (1, 200, 0), "{w:?}");
    }
    assert_eq!(report.measurements.len(), 3 * 6);
    assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    let s3_down = report
        .skipped
        .iter()
        .find(|s| s.backend == "vault-down")
        .unwrap();
    assert!(s3_down.reason.contains("127.0.0.1:1"), "{}", s3_down.reason);
    let broken = report
        .skipped
        .iter()
        .find(|s| s.backend == "sqlite-broken")
        .unwrap();
    assert_eq!(broken.dataset.as_deref(), Some("tiny"));
    assert!(broken.reason.contains("a-file"), "{}", broken.reason);
    let down = report
        .skipped
        .iter()
        .find(|s| s.backend == "pg-down")
        .unwrap();
    assert!(down.reason.contains("cannot connect"), "{}", down.reason);
    assert_eq!(report.loads.len(), 3);
    assert!(
        report
            .ratio("litevault-embedded", "sqlite-local", "point_read", "tiny")
            .is_some()
    );
    assert_eq!(report.config.workloads.len(), Workload::all().len());
    // The JSON the report page is made from reads back.
    let json = serde_json::to_string(&report).unwrap();
    let back: litevault_bench::BenchReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.measurements.len(), report.measurements.len());
}

#[tokio::test]
async fn impossible_settings_are_refused_by_name() {
    let mut opts = RunOptions::quick();
    opts.datasets[0].messages = 999;
    let e = run(Vec::new(), &opts).await.unwrap_err();
    assert!(matches!(e, BenchError::InvalidOptions(_)));
    assert!(e.to_string().contains("messages = 999"), "{e}");
    let mut opts = RunOptions::quick();
    opts.mixed_readers = 0;
    let e = run(Vec::new(), &opts).await.unwrap_err();
    assert!(e.to_string().contains("mixed_readers"), "{e}");
    let mut b = SqliteBackend::local(tempfile::tempdir().unwrap().path());
    assert!(matches!(
        b.session().await,
        Err(BenchError::NotLoaded { .. })
    ));
    b.close().await.unwrap();
}

/// Rows of `messages` in a fresh restore of the replica.
async fn restored_messages(url: &str, out: &Path) -> i64 {
    let replica = litevault::Replica::open(url).unwrap();
    restore(&replica, out, &RestoreOptions::default())
        .await
        .unwrap();
    rusqlite::Connection::open(out)
        .unwrap()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_vault_inserts_return_only_once_the_replica_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let replica_dir = tempfile::tempdir().unwrap();
    let spec = DatasetSpec::tiny(21);
    // A 1.5 s group-commit window: a commit that is not waited for is not
    // in the replica right after it returns.
    let mut opts = litevault::VaultOptions::default();
    opts.replicate.commit_window = std::time::Duration::from_millis(1500);
    let mut b = VaultBackend::new(dir.path().join("db"), &file_url(replica_dir.path()))
        .with_options(opts)
        .durable();
    assert_eq!(b.info().id, "litevault-durable");
    b.load(&setup(spec.clone())).await.unwrap();
    let url = b.replica_url(&spec.name);
    let n = spec.messages as i64;
    assert_eq!(restored_messages(&url, &dir.path().join("r0.db")).await, n);
    // Control: a plain commit through the vault's writer is not there yet.
    let vault = b.vault().unwrap().clone();
    vault
        .writer()
        .await
        .execute(
            "INSERT INTO messages(conversation_id, author_id, body, created_at) \
             SELECT conversation_id, author_id, body, created_at FROM messages WHERE id = 1",
            [],
        )
        .unwrap();
    assert_eq!(
        restored_messages(&url, &dir.path().join("r1.db")).await,
        n,
        "the plain commit waits for the window"
    );
    // A durable insert through the session is there when it returns (with
    // the plain commit before it).
    let mut s = b.session().await.unwrap();
    let id = s.insert_message(&spec.new_message(3, 0)).await.unwrap();
    assert_eq!(id, n + 2);
    assert_eq!(
        restored_messages(&url, &dir.path().join("r2.db")).await,
        n + 2
    );
    drop((s, vault));
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
async fn embedded_vault_replicates_each_dataset_to_its_own_s3_prefix() {
    let s3 = support::S3Server::start();
    let bucket = s3.bucket("bench");
    let dir = tempfile::tempdir().unwrap();
    let mut b = VaultBackend::new(dir.path().join("db"), &s3.url(&bucket, "embedded"))
        .with_credentials(support::creds());
    let mut first = DatasetSpec::tiny(1);
    first.name = "first".into();
    let mut second = DatasetSpec::tiny(2);
    second.name = "second".into();
    second.messages = 1500;
    b.load(&setup(first.clone())).await.unwrap();
    b.load(&setup(second.clone())).await.unwrap();
    assert_answers(&b, &second).await;
    b.vault().unwrap().replicator().sync_all().await.unwrap();
    // Each dataset has its own prefix, and each restores to its own data.
    for (spec, extra) in [(&first, 0), (&second, 1)] {
        assert_eq!(
            b.replica_url(&spec.name),
            s3.url(&bucket, &format!("embedded/{}", spec.name))
        );
        let replica = s3.replica(&bucket, &format!("embedded/{}", spec.name));
        let out = dir.path().join(format!("{}.db", spec.name));
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        let c = rusqlite::Connection::open(&out).unwrap();
        let (count, body): (i64, String) = c
            .query_row(
                "SELECT (SELECT count(*) FROM messages), (SELECT body FROM messages WHERE id = 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // The second dataset also holds the insert of assert_answers and
        // the 20 measured ones.
        assert!(
            count >= spec.messages as i64 + extra,
            "{}: {count}",
            spec.name
        );
        if extra == 0 {
            assert_eq!(count, spec.messages as i64);
        }
        assert_eq!(body, spec.message(1).body, "{}", spec.name);
    }
    b.close().await.unwrap();
}

/// An s3fs mount of a moto bucket with `direct_io` (no shared `mmap`, so
/// SQLite's WAL shared memory fails there), unmounted on drop.
struct DirectIoMount {
    dir: tempfile::TempDir,
    _s3: support::S3Server,
}

impl DirectIoMount {
    fn start() -> DirectIoMount {
        support::needs("s3fs and FUSE");
        let s3fs_ok = std::process::Command::new("s3fs")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            s3fs_ok && Path::new("/dev/fuse").exists(),
            "this test needs s3fs and FUSE: `apt-get install s3fs fuse3` (and /dev/fuse in the container)"
        );
        let s3 = support::S3Server::start();
        let bucket = s3.bucket("mounted");
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            format!("{}:{}\n", support::ACCESS_KEY, support::SECRET_KEY),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = std::process::Command::new("s3fs")
            .arg(&bucket)
            .arg(&mnt)
            .arg("-o")
            .arg(format!(
                "passwd_file={},url={},use_path_request_style,direct_io",
                passwd.display(),
                s3.endpoint()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "s3fs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = DirectIoMount { dir, _s3: s3 };
        support::wait_until(
            support::WAIT,
            format_args!("s3fs to mount {}", m.path().display()),
            || m.mounted(),
        );
        m
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    fn mounted(&self) -> bool {
        let p = self.path();
        std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(p.to_str().unwrap()))
    }
}

impl Drop for DirectIoMount {
    fn drop(&mut self) {
        let p = self.path();
        let ok = std::process::Command::new("fusermount")
            .arg("-u")
            .arg(&p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = std::process::Command::new("umount").arg(&p).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs s3fs and FUSE, and the moto S3 server: run scripts/test.sh"]
async fn wal_without_shared_memory_falls_back_to_exclusive_locking() {
    let mount = DirectIoMount::start();
    let scratch = tempfile::tempdir().unwrap();
    let spec = DatasetSpec::tiny(23);
    let mut b = SqliteBackend::on_mount(mount.path().join("w"), JournalMode::Wal, scratch.path());
    b.load(&setup(spec.clone())).await.unwrap();
    let notes = b.info().notes.join(" ");
    assert!(
        notes.contains("WAL with shared memory failed here")
            && notes.contains("locking_mode=EXCLUSIVE"),
        "{notes}"
    );
    assert_answers(&b, &spec).await;
    // Readers and the writer share the one connection, in turn.
    let mut opts = RunOptions::quick();
    opts.warmup = litevault_bench::Span::Ops(2);
    opts.measure = litevault_bench::Span::Ops(20);
    let ms = litevault_bench::measure(&b, Workload::Mixed, &spec, &opts)
        .await
        .unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!((ms[0].samples, ms[0].errors), (40, 0), "{:?}", ms[0]);
    assert_eq!((ms[1].samples, ms[1].errors), (20, 0), "{:?}", ms[1]);
    b.close().await.unwrap();
    assert!(!mount.path().join("w/litevault-bench-tiny.db").exists());
}
