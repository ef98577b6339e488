//! Replicators in their own process beside a writer in this one: the
//! commit-to-visible lag of the sidecar (`litevault replicate`) and of
//! Litestream, and the sidecar's durable commits (commit, then `POST
//! /v1/sync?db=app&wait=true`) with concurrent writer threads.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use litevault_bench::lab::{self, BUCKET, Spawned};

use crate::common::{fresh_dir, wait_for};
use crate::figures::{ProcessLag, SidecarDurable};
use crate::format::{max, median, pct, round2};
use crate::lister::Lister;
use crate::measured::Measured;
use crate::tools::{Tool, Tools, s3_env};

/// A replica URL on the lab's S3 server, spelled for `tool` (Litestream
/// names the path-style flag differently).
pub fn replica_url(tool: Tool, prefix: &str, endpoint: &str) -> String {
    let flag = match tool {
        Tool::Litevault => "force-path-style",
        Tool::Litestream => "forcePathStyle",
    };
    format!("s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1&{flag}=true")
}

/// A database in WAL mode with the table `t(id, v)`, replacing any old one.
pub fn new_wal_db(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let c =
        rusqlite::Connection::open(path).with_context(|| format!("creating {}", path.display()))?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{}: journal_mode stays {mode}", path.display());
    }
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    Ok(c)
}

/// Lags (milliseconds, two decimals) split into the warm-up ones and the
/// counted ones.
pub fn split_warmup(lags: &[f64], warmup: usize) -> (Vec<f64>, Vec<f64>) {
    let rounded: Vec<f64> = lags.iter().map(|x| round2(*x)).collect();
    let cut = warmup.min(rounded.len());
    (rounded[..cut].to_vec(), rounded[cut..].to_vec())
}

/// One lag run of `tool` replicating to `endpoint` (maybe the delaying
/// proxy) while the watcher lists `direct` (the server itself): `warmup`
/// uncounted commits, then `commits` counted ones, `spacing` seconds apart;
/// after each, back-to-back listings of level 0 until a new file shows it.
#[allow(clippy::too_many_arguments)]
pub fn process_lag(
    tools: &Tools,
    tool: Tool,
    endpoint: &str,
    direct: &str,
    base: &Path,
    commits: usize,
    warmup: usize,
    spacing: f64,
) -> anyhow::Result<ProcessLag> {
    let d = fresh_dir(&base.join(format!("{}-s3", tool.name())))?;
    let db = d.join("app.db");
    let conn = new_wal_db(&db)?;
    for _ in 0..100 {
        conn.execute("INSERT INTO t(v) VALUES (randomblob(200))", [])?;
    }
    let prefix = format!("lag/{}", tool.name());
    let url = replica_url(tool, &prefix, endpoint);
    let mut watch = Lister::new(&replica_url(Tool::Litevault, &prefix, direct))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut list_rtts = Vec::new();
    let mut list = |rtts: &mut Vec<f64>| -> anyhow::Result<u64> {
        let t = Instant::now();
        let top = rt.block_on(watch.max_level0())?;
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
        Ok(top)
    };
    let log = d.join("replicate.log");
    let mut cmd = Command::new(tools.bin(tool));
    cmd.arg("replicate").arg(&db).arg(&url);
    s3_env(&mut cmd, tool);
    let t_start = Instant::now();
    let mut m = Measured::start(&cmd, &log, base)?;
    let total = commits + warmup;
    let spacing_d = Duration::from_secs_f64(spacing);
    let poll = Duration::from_millis(3);
    let (mut lags, mut missed, mut jumps) = (Vec::new(), 0, Vec::new());
    let run = (|| -> anyhow::Result<f64> {
        let mut prev = wait_for(
            Duration::from_secs(120),
            Duration::from_millis(5),
            &format!("{} first file", tool.name()),
            || m.exit_code(),
            || Ok(Some(list(&mut list_rtts)?).filter(|t| *t > 0)),
        )?;
        let startup = t_start.elapsed().as_secs_f64();
        let t0 = Instant::now() + Duration::from_millis(500);
        for i in 0..total {
            if let Some(delay) = (t0 + spacing_d * i as u32).checked_duration_since(Instant::now())
            {
                std::thread::sleep(delay);
            }
            conn.execute("INSERT INTO t(v) VALUES (randomblob(200))", [])?;
            let tc = Instant::now();
            let limit = tc + Duration::from_secs(10).max(spacing_d * 5);
            loop {
                let top = list(&mut list_rtts)?;
                if top > prev {
                    lags.push(tc.elapsed().as_secs_f64() * 1000.0);
                    jumps.push(top - prev);
                    prev = top;
                    break;
                }
                if let Some(code) = m.exit_code() {
                    bail!(
                        "{} replicate exited (code {code}); see {}",
                        tool.name(),
                        log.display()
                    );
                }
                if Instant::now() > limit {
                    missed += 1;
                    break;
                }
                std::thread::sleep(poll);
            }
        }
        Ok(startup)
    })();
    let usage = m.stop(libc::SIGINT, Duration::from_secs(60));
    drop(conn);
    let startup_s = run?;
    // The same warm-up as the embedded run: the first commits measure the
    // start-up (the sidecar's first upload opens its 1 s sync interval).
    let (warm, counted) = split_warmup(&lags, warmup);
    jumps.sort_unstable();
    jumps.dedup();
    Ok(ProcessLag {
        tool: tool.name().into(),
        backend: "s3".into(),
        commits: total - warmup,
        spacing_s: spacing,
        p50_ms: pct(&counted, 50.0),
        p99_ms: pct(&counted, 99.0),
        max_ms: max(&counted),
        lags_ms: counted,
        warmup_lags_ms: warm,
        missed,
        startup_s,
        txid_jumps: jumps,
        replicator_cpu_s: usage.cpu_seconds,
        replicator_peak_rss_kib: usage.peak_rss_kib,
        list_rtt_median_ms: median(&list_rtts),
        exit_code: usage.rc,
    })
}

/// Where the sidecar replicates in a durable-commit run.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// `file://` in the run's folder.
    File,
    /// The lab's S3 server at this endpoint.
    S3(&'a str),
}

const SYNC: &str = "/v1/sync?db=app&wait=true";

fn request(port: u16, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    lab::http::request(port, method, path, None, Duration::from_secs(60))
}

fn replica_puts(port: u16) -> anyhow::Result<u64> {
    let (code, body) = request(port, "GET", "/v1/status")?;
    if code != 200 {
        bail!("GET /v1/status: HTTP {code}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("GET /v1/status")?;
    v[0]["replicas"][0]["requests"]["puts"]
        .as_u64()
        .context("GET /v1/status: no PUT count of the first replica")
}

/// `litevault replicate DB URL` at its defaults, serving HTTP on a socket
/// bound here and passed to it;
/// `writers` threads each commit one row on their own connection, then call
/// `/v1/sync?db=app&wait=true`, `commits / writers` times.
pub fn durable_row(
    litevault: &Path,
    target: Target,
    writers: usize,
    commits: usize,
    work: &Path,
) -> anyhow::Result<SidecarDurable> {
    let backend = match target {
        Target::File => "file",
        Target::S3(_) => "s3",
    };
    let d = fresh_dir(&work.join(format!("{backend}-{writers}")))?;
    let db = d.join("app.db");
    drop(new_wal_db(&db)?);
    // The HTTP socket is bound here and passed to the child (systemd's
    // socket activation): its port is known up front and nothing can take it.
    let (listener, port) = lab::bound_listener()?;
    let mut cmd = lab::with_passed_socket(litevault, &listener);
    let url = match target {
        Target::File => format!("file://{}", d.join("replica").display()),
        Target::S3(endpoint) => {
            s3_env(&mut cmd, Tool::Litevault);
            replica_url(Tool::Litevault, &format!("http-{writers}"), endpoint)
        }
    };
    let log = std::fs::File::create(d.join("litevault.log"))?;
    cmd.arg("replicate")
        .arg(&db)
        .arg(&url)
        .args(["--addr", "systemd"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut proc = Spawned::start(&mut cmd, "litevault replicate")?;
    drop(listener);
    wait_for(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "litevault's HTTP server",
        || proc.try_ended().map(|e| e.code),
        || {
            Ok(request(port, "GET", "/healthz")
                .is_ok_and(|(c, _)| c == 200)
                .then_some(()))
        },
    )?;
    let (code, body) = request(port, "POST", SYNC)?;
    if code != 200 {
        bail!(
            "first sync: HTTP {code}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let puts_before = replica_puts(port)?;
    let per = (commits / writers.max(1)).max(1);
    // (sync ms, commit + sync ms) of every durable commit.
    let samples: Mutex<Vec<(f64, f64)>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                if let Err(e) = writer(&db, port, per, &samples) {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{e:#}"));
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = errors
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .first()
    {
        bail!("{backend} x{writers}: {e}");
    }
    let puts = replica_puts(port)?;
    proc.stop(libc::SIGINT, Duration::from_secs(60));
    let samples = samples.into_inner().unwrap_or_else(|e| e.into_inner());
    let sync: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let total: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let n = samples.len();
    Ok(SidecarDurable {
        backend: backend.into(),
        writers,
        commits: n,
        sync_p50: pct(&sync, 50.0),
        sync_p99: pct(&sync, 99.0),
        total_p50: pct(&total, 50.0),
        total_p99: pct(&total, 99.0),
        per_s: n as f64 / elapsed,
        puts_per_commit: (puts - puts_before) as f64 / n as f64,
    })
}

fn writer(
    db: &Path,
    port: u16,
    per: usize,
    samples: &Mutex<Vec<(f64, f64)>>,
) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let payload = vec![b'p'; 100];
    for _ in 0..per {
        let t0 = Instant::now();
        conn.execute("INSERT INTO t(v) VALUES (?1)", [&payload])?;
        let t1 = Instant::now();
        let (code, body) = request(port, "POST", SYNC)?;
        let t2 = Instant::now();
        if code != 200 {
            let body = String::from_utf8_lossy(&body);
            bail!(
                "HTTP {code}: {}",
                body.chars().take(200).collect::<String>()
            );
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ms(t2 - t1), ms(t2 - t0)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_lags_are_split_off_by_position_and_rounded() {
        let (warm, counted) = split_warmup(&[812.346, 20.0, 18.004, 30.126], 2);
        assert_eq!(warm, vec![812.35, 20.0]);
        assert_eq!(counted, vec![18.0, 30.13]);
        let (warm, counted) = split_warmup(&[5.0], 2);
        assert_eq!((warm.len(), counted.len()), (1, 0));
    }

    #[test]
    fn litestream_gets_its_own_spelling_of_path_style() {
        assert!(
            replica_url(Tool::Litestream, "lag/x", "http://h:1").ends_with("&forcePathStyle=true")
        );
        assert_eq!(
            replica_url(Tool::Litevault, "lag/x", "http://h:1"),
            "s3://litevault-bench/lag/x?endpoint=http://h:1&region=us-east-1&force-path-style=true"
        );
    }
}
