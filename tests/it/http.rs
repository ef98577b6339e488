//! The HTTP surface against real running replicators: every route, readiness
//! turning 503 when a replica fails, the durable sync's wait semantics, the
//! token rule, the status page rendered by headless Chromium, and
//! `litevault replicate --addr`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use litevault::replica::Replica;
use litevault::replicate::ReplicateError;
use litevault::restore::{RestoreOptions, restore};
use litevault::server::{Server, ServerError, ServerOptions, ServerState, TOKEN_ENV};
use litevault::{ReplicateOptions, Replicator};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod exposition;
use exposition::{check_exposition, series_key};

/// A replicator and the server in front of it, both running.
struct Running {
    base: String,
    db: PathBuf,
    conn: rusqlite::Connection,
    stop: watch::Sender<bool>,
    replicator_task: JoinHandle<Result<(), ReplicateError>>,
    server_task: JoinHandle<Result<(), ServerError>>,
    client: reqwest::Client,
}

fn server_options() -> ServerOptions {
    ServerOptions {
        sample_interval: Duration::from_millis(100),
        files_max_age: Duration::from_secs(3600),
        ..ServerOptions::default()
    }
}

async fn start(dir: &Path, replicas: Vec<Replica>, opts: ServerOptions) -> Running {
    let db = dir.join("app.db");
    let conn = create_db(&db, 4096);
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    let ropts = ReplicateOptions {
        sync_interval: Duration::ZERO,
        poll_interval: Duration::from_millis(50),
        ..ReplicateOptions::default()
    };
    let replicator = Replicator::open_many(&db, replicas, ropts).await.unwrap();
    let (stop, rx) = watch::channel(false);
    let mut r_rx = rx.clone();
    let replicator_task = tokio::spawn(replicator.clone().run(async move {
        let _ = r_rx.wait_for(|s| *s).await;
    }));
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerState::new(vec![replicator], opts),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let mut s_rx = rx;
    let server_task = tokio::spawn(server.run(async move {
        let _ = s_rx.wait_for(|s| *s).await;
    }));
    Running {
        base,
        db,
        conn,
        stop,
        replicator_task,
        server_task,
        client: reqwest::Client::new(),
    }
}

impl Running {
    fn insert(&self, id: i64) {
        self.conn
            .execute("INSERT INTO t VALUES (?1, 'row')", [id])
            .unwrap();
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        (
            code,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.server_task.await.unwrap().unwrap();
        let _ = self.replicator_task.await.unwrap();
    }
}

/// Whether a restore of `replica` holds row `id`.
async fn restored_has(replica: &Replica, dir: &Path, id: i64) -> bool {
    let out = dir.join(format!("restored-{}.db", rand_suffix()));
    restore(replica, &out, &RestoreOptions::default())
        .await
        .unwrap();
    let c = rusqlite::Connection::open(&out).unwrap();
    c.query_row("SELECT count(*) FROM t WHERE id = ?1", [id], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap()
        == 1
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[test]
fn every_route_answers_against_a_running_replicator() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let run = start(dir.path(), vec![replica.clone()], server_options()).await;
        for i in 1..=5 {
            run.insert(i);
        }
        let (code, synced) = run.post("/v1/sync?db=app&wait=true").await;
        assert_eq!(code, 200, "{synced}");
        assert_eq!(synced["replicated"], true);
        let txid = synced["txid"].as_str().unwrap().to_string();
        let txid_n = u64::from_str_radix(&txid, 16).unwrap();
        assert!(restored_has(&replica, dir.path(), 5).await, "{synced}");

        assert_eq!(run.get("/healthz").await, (200, "ok\n".to_string()));
        let (code, body) = run.get("/readyz").await;
        assert_eq!(code, 200, "{body}");

        let status = run.json("/v1/status").await;
        let db = run.db.display().to_string();
        assert_eq!(status[0]["db"], db.as_str());
        assert_eq!(status[0]["running"], true);
        assert_eq!(status[0]["replicas"][0]["txid"], txid.as_str(), "{status}");
        assert_eq!(status[0]["replicas"][0]["lag_ms"], 0);
        let url = status[0]["replicas"][0]["url"]
            .as_str()
            .unwrap()
            .to_string();

        let r = run
            .client
            .get(format!("{}/metrics", run.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = r.text().await.unwrap();
        let m = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let get = |name: &str, labels: &[(&str, &str)]| {
            *m.get(&series_key(name, labels))
                .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
        };
        let d = [("db", db.as_str())];
        let dr = [("db", db.as_str()), ("replica", url.as_str())];
        assert!(get("litevault_txid", &d) >= txid_n as f64);
        assert_eq!(get("litevault_replicating", &d), 1.0);
        assert_eq!(get("litevault_replication_lag_seconds", &dr), 0.0);
        assert_eq!(get("litevault_replica_txid", &dr), txid_n as f64);
        assert_eq!(get("litevault_replica_pending_files", &dr), 0.0);
        assert!(get("litevault_wal_bytes", &d) > 0.0);
        get("litevault_checkpoints_total", &[d[0], ("mode", "passive")]);
        get("litevault_checkpoints_total", &[d[0], ("mode", "truncate")]);
        get("litevault_checkpoint_seconds_total", &d);
        let puts = get(
            "litevault_replica_requests_total",
            &[dr[0], dr[1], ("op", "put")],
        );
        assert!(puts >= 1.0, "{text}");
        for op in ["get", "list", "delete"] {
            get(
                "litevault_replica_requests_total",
                &[dr[0], dr[1], ("op", op)],
            );
        }
        assert!(
            get(
                "litevault_replica_bytes_total",
                &[dr[0], dr[1], ("direction", "out")]
            ) > 0.0
        );
        get(
            "litevault_replica_bytes_total",
            &[dr[0], dr[1], ("direction", "in")],
        );
        assert_eq!(get("litevault_replica_errors_total", &dr), 0.0);

        // The page is self-contained: no external script, style or image.
        let (code, page) = run.get("/").await;
        assert_eq!(code, 200);
        assert!(page.contains("id=\"lag-chart\""));
        assert_eq!(
            page.matches("http://").count(),
            page.matches("http://www.w3.org/2000/svg").count(),
            "the page refers to an outside address"
        );
        assert!(!page.contains("https://") && !page.contains("<link") && !page.contains("src="));

        // The lag history the chart draws: one series per replica.
        let r = &run;
        let lag = wait_until_async(WAIT, "two lag samples", || async move {
            let lag = r.json("/v1/lag").await;
            let samples = lag["dbs"][0]["replicas"][0]["samples"]
                .as_array()
                .unwrap()
                .len();
            if samples >= 2 { Ok(lag) } else { Err(lag) }
        })
        .await;
        assert_eq!(lag["dbs"][0]["replicas"][0]["url"], url.as_str());

        // Files and restore points come from one cached listing: more page
        // loads do not LIST the replica again.
        let files = run.json("/v1/files").await;
        let rep = &files["dbs"][0]["replicas"][0];
        assert!(rep["error"].is_null(), "{files}");
        assert_eq!(
            rep["restore_points"]["latest"]["txid"],
            txid.as_str(),
            "{files}"
        );
        assert_eq!(rep["recent"][0]["max_txid"], txid.as_str(), "{files}");
        let lists =
            |s: &serde_json::Value| s[0]["replicas"][0]["requests"]["lists"].as_u64().unwrap();
        let before = lists(&run.json("/v1/status").await);
        for _ in 0..3 {
            run.json("/v1/files").await;
            assert_eq!(run.get("/").await.0, 200);
        }
        assert_eq!(
            lists(&run.json("/v1/status").await),
            before,
            "the listing was not cached"
        );

        // The sync endpoint's errors.
        let (code, body) = run.post("/v1/sync?db=nope&wait=true").await;
        assert_eq!(code, 404, "{body}");
        assert!(body["error"].as_str().unwrap().contains(&db), "{body}");
        let (code, body) = run.post("/v1/sync?db=app&wait=maybe").await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = run.post("/v1/sync?db=app&timeout=soon").await;
        assert_eq!(code, 400, "{body}");
        // Without wait: accepted, with the TXID it will reach.
        run.insert(6);
        let (code, body) = run.post("/v1/sync?db=app.db").await;
        assert_eq!(code, 202, "{body}");
        assert!(body["txid"].as_str().unwrap() > txid.as_str(), "{body}");
        assert_eq!(body["replicated"], false);

        run.stop().await;
    });
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn sync_with_wait_returns_once_every_replica_holds_the_write() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("sync");
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let file = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let remote = s3.replica(&bucket, "app");
        let run = start(
            dir.path(),
            vec![file.clone(), remote.clone()],
            server_options(),
        )
        .await;
        for round in 1..=3i64 {
            // Several commits, then one durable sync: every replica holds
            // the last of them as soon as the call returns.
            for i in 0..10 {
                run.insert(round * 100 + i);
            }
            let (code, body) = run.post("/v1/sync?db=app&wait=true").await;
            assert_eq!(code, 200, "{body}");
            for r in [&file, &remote] {
                assert!(
                    restored_has(r, dir.path(), round * 100 + 9).await,
                    "{r} lacks the write made before the sync returned ({body})"
                );
            }
        }
        run.stop().await;
    });
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn readyz_turns_503_when_a_replica_fails_and_sync_times_out_with_504() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("ready");
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let file = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let remote = s3.replica(&bucket, "app");
        let remote_url = remote.to_string();
        let opts = ServerOptions {
            readyz_max_lag: Duration::from_millis(500),
            ..server_options()
        };
        let run = start(dir.path(), vec![file.clone(), remote], opts).await;
        run.insert(1);
        let (code, body) = run.post("/v1/sync?db=app&wait=true").await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = run.get("/readyz").await;
        assert_eq!(code, 200, "{body}");

        // The S3 server goes away: its replica falls behind.
        drop(s3);
        run.insert(2);
        let r = &run;
        let body = wait_until_async(WAIT, "/readyz to answer 503", || async move {
            let (code, body) = r.get("/readyz").await;
            assert!(code == 200 || code == 503, "{code}: {body}");
            if code == 503 { Ok(body) } else { Err(body) }
        })
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], false);
        let reasons = v["reasons"].as_array().unwrap().clone();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        let reason = reasons[0].as_str().unwrap();
        assert!(
            reason.contains(&remote_url) && reason.contains("lag"),
            "{reason}"
        );
        let (code, text) = run.get("/metrics").await;
        assert_eq!(code, 200);
        let m = check_exposition(&text).unwrap();
        let db = run.db.display().to_string();
        let lag = m[&series_key(
            "litevault_replication_lag_seconds",
            &[("db", &db), ("replica", &remote_url)],
        )];
        assert!(lag > 0.5, "{text}");
        assert!(
            m[&series_key(
                "litevault_replica_errors_total",
                &[("db", &db), ("replica", &remote_url)],
            )] > 0.0,
            "{text}"
        );

        // A durable sync cannot complete: 504, and the write is kept.
        run.insert(3);
        let (code, body) = run.post("/v1/sync?db=app&wait=true&timeout=300ms").await;
        assert_eq!(code, 504, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("safe in the local store"),
            "{body}"
        );
        assert_eq!(
            body["replicas_behind"][0]["url"],
            remote_url.as_str(),
            "{body}"
        );
        let want = body["txid"].as_str().unwrap().to_string();
        // The healthy replica got it; the local store keeps it for the other.
        let status = run.json("/v1/status").await;
        assert!(status[0]["replicas"][0]["txid"].as_str().unwrap() >= want.as_str());
        assert!(status[0]["replicas"][1]["pending_files"].as_u64().unwrap() > 0);
        assert!(restored_has(&file, dir.path(), 3).await);
        run.stop().await;
    });
}

#[test]
fn a_token_guards_every_route_but_healthz_and_is_required_off_loopback() {
    block_on(async {
        // Refused before anything is bound.
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let db = dir.path().join("other.db");
        let c = create_db(&db, 4096);
        c.execute_batch("CREATE TABLE x(a);").unwrap();
        let r = Replicator::open(&db, replica, ReplicateOptions::default())
            .await
            .unwrap();
        let e = Server::bind(
            "0.0.0.0:0".parse().unwrap(),
            ServerState::new(vec![r], ServerOptions::default()),
        )
        .await
        .err()
        .expect("a non-loopback address without a token must be refused");
        assert!(matches!(e, ServerError::TokenRequired { .. }), "{e}");
        assert!(e.to_string().contains(TOKEN_ENV), "{e}");

        let opts = ServerOptions {
            token: Some("s3cret-token".into()),
            ..server_options()
        };
        let replica = Replica::open(&file_url(&dir.path().join("replica2"))).unwrap();
        let run = start(dir.path(), vec![replica], opts).await;
        assert_eq!(run.get("/healthz").await.0, 200);
        let routes = [
            ("GET", "/"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("GET", "/v1/status"),
            ("GET", "/v1/lag"),
            ("GET", "/v1/files"),
            ("POST", "/v1/sync?db=app&wait=true"),
        ];
        for (method, path) in routes {
            let url = format!("{}{path}", run.base);
            let m: reqwest::Method = method.parse().unwrap();
            for auth in [None, Some("Bearer wrong"), Some("s3cret-token")] {
                let mut req = run.client.request(m.clone(), &url);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let resp = req.send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 401, "{method} {path} with {auth:?}");
                assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            }
            let resp = run
                .client
                .request(m, &url)
                .header("authorization", "Bearer s3cret-token")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200, "{method} {path}");
        }
        run.stop().await;
    });
}

/// The part of `html` from the element with this id to its closing tag.
fn element<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<{tag} id=\"{id}\""))
        .unwrap_or_else(|| panic!("no <{tag} id={id}> in\n{html}"));
    let end = html[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("<{tag} id={id}> is not closed"));
    &html[start..start + end]
}

#[test]
#[ignore = "needs headless Chromium: run scripts/test.sh"]
fn the_status_page_renders_chart_files_and_restore_points_in_headless_chromium() {
    let chromium = chromium_bin();
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let run = start(dir.path(), vec![replica], server_options()).await;
        let mut txid = String::new();
        for i in 1..=4 {
            run.insert(i);
            let (code, body) = run.post("/v1/sync?db=app&wait=true").await;
            assert_eq!(code, 200, "{body}");
            txid = body["txid"].as_str().unwrap().to_string();
        }
        let r = &run;
        wait_until_async(WAIT, "three lag samples", || async move {
            let lag = r.json("/v1/lag").await;
            lag["dbs"][0]["replicas"][0]["samples"]
                .as_array()
                .unwrap()
                .len()
                >= 3
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let url = format!("{}/", run.base);
        let out = tokio::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                // Nothing but 127.0.0.1 resolves.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                &format!("--user-data-dir={}", profile.path().display()),
                "--virtual-time-budget=5000",
                "--dump-dom",
                &url,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), out)
            .await
            .expect("chromium did not finish in 120s")
            .expect("run chromium");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && dom.contains("<html"),
            "chromium failed: {}\n{dom}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The chart: a line and points for the replica.
        let svg = element(&dom, "svg", "lag-chart");
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.matches("class=\"point\"").count() >= 3, "{svg}");
        // The tables the script filled.
        let short = txid.trim_start_matches('0');
        let files = element(&dom, "table", "files");
        let rows = files.matches("<tr").count() - 1;
        assert!(rows >= 4, "{files}");
        assert!(files.contains(&format!("–{short}<")), "{files}");
        let points = element(&dom, "table", "restore-points");
        assert_eq!(points.matches("<tr").count() - 1, 1, "{points}");
        assert!(points.contains(&format!(">{short} at ")), "{points}");
        let reps = element(&dom, "table", "replicas");
        assert!(reps.contains("file://"), "{reps}");
        let summary = element(&dom, "p", "summary");
        assert!(summary.contains("1 database(s)"), "{summary}");
        run.stop().await;
    });
}

#[test]
fn replicate_with_addr_serves_http_and_refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = file_url(&dir.path().join("replica"));
    let c = create_db(&db, 4096);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();

    // 0.0.0.0 without a token: refused before anything is bound or opened.
    let o = litevault(&[])
        .env_remove(TOKEN_ENV)
        .args([
            "replicate",
            db.to_str().unwrap(),
            &url,
            "--addr",
            "0.0.0.0:9",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(TOKEN_ENV), "{err}");

    // No socket passed: `systemd` says what is missing, before opening.
    let o = litevault(&[])
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .args(["replicate", db.to_str().unwrap(), &url, "--addr", "systemd"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("LISTEN_FDS") && err.contains(".socket"),
        "{err}"
    );
    // A socket passed to another process (LISTEN_PID) is not taken.
    let (listener, _) = bound_listener();
    let mut cmd = litevault(&[]);
    crate::support::child::as_descriptor_3(&mut cmd, &listener);
    let o = cmd
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .args(["replicate", db.to_str().unwrap(), &url, "--addr", "systemd"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(listener);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("LISTEN_PID=1 is not this process"),
        "{err}"
    );

    let (mut child, base) = spawn_serving(&[
        "replicate",
        db.to_str().unwrap(),
        &url,
        "--addr",
        "systemd",
        "--sync-interval",
        "0s",
    ]);
    c.execute("INSERT INTO t VALUES (42, 'answer')", [])
        .unwrap();
    block_on(async {
        let client = reqwest::Client::new();
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let r = client
            .post(format!("{base}/v1/sync?db=app&wait=true"))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(code, 200, "{body}");
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let replica = Replica::open(&url).unwrap();
        assert!(restored_has(&replica, dir.path(), 42).await);
    });
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}

/// Starts `litevault ARGS` (which name `--addr systemd` or a config saying
/// `addr: systemd`) with a listening socket the test bound on 127.0.0.1,
/// passed the way systemd socket activation does; waits for the line
/// saying it serves that socket. Returns the child and the base URL.
fn spawn_serving(args: &[&str]) -> (std::process::Child, String) {
    let (listener, port) = bound_listener();
    let mut child = litevault_with_socket(&[], &listener)
        .env("LITEVAULT_LOG", "info")
        .env_remove(TOKEN_ENV)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child holds its own copy: if it dies, the port refuses.
    drop(listener);
    let out = Output::capture(child.stderr.take().unwrap());
    let line = out.wait_for_line(WAIT, "listening on http://");
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        line.contains("on the socket systemd passed") && line.ends_with(&base),
        "{line}"
    );
    (child, base)
}

#[test]
fn replicate_config_http_addr_starts_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = create_db(&db, 4096);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    let cfg = dir.path().join("litevault.yml");
    std::fs::write(
        &cfg,
        format!(
            "http:\n  addr: systemd\n  readyz-max-lag: 2s\ndbs:\n  - path: {}\n    replicas:\n      - url: {}\n",
            db.display(),
            file_url(&dir.path().join("replica"))
        ),
    )
    .unwrap();
    let (child, base) = spawn_serving(&["replicate", "--config", cfg.to_str().unwrap()]);
    c.execute("INSERT INTO t VALUES (7, 'x')", []).unwrap();
    block_on(async {
        let client = reqwest::Client::new();
        // One database: `db` may be left out.
        let r = client
            .post(format!("{base}/v1/sync?wait=true"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        check_exposition(&text).unwrap();
        assert!(
            text.contains(&format!("litevault_txid{{db=\"{}\"}}", db.display())),
            "{text}"
        );
    });
    signal(&child, "TERM");
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_stopped_replicator_is_not_ready_yet_a_sync_still_uploads() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let db = dir.path().join("app.db");
        let c = create_db(&db, 4096);
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        // Opened, never run.
        let r = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        assert!(!r.is_running());
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            ServerState::new(vec![r], server_options()),
        )
        .await
        .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(server.run(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let client = reqwest::Client::new();
        let resp = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        let body = resp.text().await.unwrap();
        assert!(body.contains("not replicating"), "{body}");
        let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
        let m = check_exposition(&resp.text().await.unwrap()).unwrap();
        let key = series_key(
            "litevault_replicating",
            &[("db", &db.display().to_string())],
        );
        assert_eq!(m[&key], 0.0);

        c.execute("INSERT INTO t VALUES (9, 'x')", []).unwrap();
        let resp = client
            .post(format!("{base}/v1/sync?db=app&wait=true&timeout=20s"))
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        assert_eq!(code, 200, "{}", resp.text().await.unwrap());
        assert!(restored_has(&replica, dir.path(), 9).await);
        let _ = stop.send(true);
        task.await.unwrap().unwrap();
    });
}

#[test]
fn an_embedded_vault_serves_the_same_routes() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = file_url(&dir.path().join("replica"));
        let vault = litevault::vault::Vault::open(dir.path().join("app.db"))
            .replicate_to(&url)
            .unwrap()
            .start()
            .await
            .unwrap();
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            ServerState::new(vec![vault.replicator().clone()], server_options()),
        )
        .await
        .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(server.run(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        {
            let w = vault.writer().await;
            w.execute_batch(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (11, 'x');",
            )
            .unwrap();
        }
        let client = reqwest::Client::new();
        let r = client
            .post(format!("{base}/v1/sync?db=app&wait=true"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        let replica = Replica::open(&url).unwrap();
        assert!(restored_has(&replica, dir.path(), 11).await);
        let _ = stop.send(true);
        task.await.unwrap().unwrap();
        vault.close().await.unwrap();
    });
}
