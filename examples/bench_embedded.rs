//! Measurement driver for the embedded mode: replication lag,
//! durable-commit latency and write throughput of a [`Vault`] against an S3
//! server, and the bare PUT latency of that server. Each subcommand prints
//! one JSON object on stdout; `scripts/bench_embedded.py` runs the whole
//! matrix (embedded vs sidecar vs Litestream, with and without a delaying
//! proxy) and prints the tables of BENCHMARKS.md.
//!
//! ```text
//! cargo build --release --example bench_embedded
//! URL='s3://bucket/run1?endpoint=http://127.0.0.1:9000&region=us-east-1&force-path-style=true'
//! target/release/examples/bench_embedded --access-key K --secret-key S put --replica "$URL"
//! target/release/examples/bench_embedded --access-key K --secret-key S \
//!     lag --replica "$URL" --watch "$URL" --commits 30 --spacing-ms 1200
//! target/release/examples/bench_embedded --access-key K --secret-key S \
//!     durable --replica "$URL" --writers 8 --commits 400
//! target/release/examples/bench_embedded --access-key K --secret-key S \
//!     throughput --replica "$URL" --seconds 2 --rounds 3
//! ```
//!
//! Definitions (the same in the script and in BENCHMARKS.md):
//!
//! - *PUT latency*: one `put` of `--size` random bytes through the same
//!   `object_store` client the replicator uses, after 5 warm-up PUTs.
//! - *Lag, acknowledged*: from the return of a single-row commit on the
//!   vault's writer to the return of [`Vault::wait_replicated`] for it (every
//!   replica answered the PUT of a file holding it).
//! - *Lag, visible*: from the return of the commit to the first
//!   ListObjectsV2 of level 0 (back-to-back unsigned calls over one kept-alive
//!   connection, to `--watch`, which should name the server directly, not the
//!   proxy) that shows a file with a higher TXID than before: the definition
//!   and the request `scripts/bench_compare.py` uses for the sidecar and
//!   Litestream.
//! - *Durable commit*: [`Vault::transaction_durable`] of a single-row INSERT,
//!   from the call to its return, by each of `--writers` concurrent tasks.
//! - *Throughput*: single-row INSERT commits per second by one writer as fast
//!   as it can, with the vault replicating ("on"), and on a plain rusqlite
//!   connection with the same pragmas, with SQLite's automatic checkpoints
//!   ("off") and without any ("off, no checkpoints": the vault's writer has
//!   none either, its replicator checkpoints in the background); rounds
//!   interleaved, the first mode rotating.
//!
//! Lag phases start with `--warmup` uncounted commits (2 by default; the
//! script discards as many for the sidecar and Litestream): a commit right
//! after start-up measures the start-up, not the steady state.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use litevault::replica::S3Credentials;
use litevault::vault::CommitSeq;
use litevault::{Replica, Vault, VaultOptions};
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Measure litevault's embedded mode against an object store")]
struct Cli {
    /// S3 access key given to every store opened here.
    #[arg(long, env = "BENCH_ACCESS_KEY")]
    access_key: String,
    /// S3 secret key given to every store opened here.
    #[arg(long, env = "BENCH_SECRET_KEY")]
    secret_key: String,
    /// `VaultOptions::wal_restart_pages` of every vault opened here (0: the
    /// commit hook never pauses the writer to let the WAL restart).
    #[arg(long, default_value_t = litevault::vault::DEFAULT_WAL_RESTART_PAGES)]
    wal_restart_pages: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bare PUT latency of the store.
    Put {
        /// Replica URL (its bucket and endpoint are used).
        #[arg(long)]
        replica: String,
        /// PUTs to time.
        #[arg(long, default_value_t = 100)]
        n: usize,
        /// Bytes per PUT.
        #[arg(long, default_value_t = 4096)]
        size: usize,
    },
    /// Commit-to-replicated lag of single-row commits.
    Lag(LagArgs),
    /// Durable-commit latency with concurrent writers.
    Durable {
        #[arg(long)]
        replica: String,
        /// Concurrent writers.
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// Durable commits in all (split between the writers).
        #[arg(long, default_value_t = 200)]
        commits: usize,
        /// Group-commit window in milliseconds (ReplicateOptions::commit_window).
        #[arg(long, default_value_t = 0)]
        commit_window_ms: u64,
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// One writer alternating a bare PUT and a durable commit (the target
    /// "durable commit within 1.5x the PUT", both timed at the same moments).
    DurableVsPut {
        #[arg(long)]
        replica: String,
        /// Pairs (PUT, durable commit).
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Commits per second with replication on and off, interleaved rounds.
    Throughput {
        #[arg(long)]
        replica: String,
        /// Seconds per round and mode.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Rounds (each runs both modes, alternating which goes first).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

#[derive(clap::Args)]
struct LagArgs {
    /// Replica URL the vault ships to (through the proxy if any).
    #[arg(long)]
    replica: String,
    /// The same replica, as the watcher lists it (the server directly).
    #[arg(long)]
    watch: String,
    /// Commits per phase (acknowledged, then visible).
    #[arg(long, default_value_t = 30)]
    commits: usize,
    /// Milliseconds between commits of the "visible" phase.
    #[arg(long, default_value_t = 1200)]
    spacing_ms: u64,
    /// Milliseconds between commits of the "acknowledged" phase.
    #[arg(long, default_value_t = 200)]
    ack_spacing_ms: u64,
    /// Commits made and not counted at the start of each phase.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Work folder (the database goes there).
    #[arg(long)]
    dir: std::path::PathBuf,
}

/// Nearest-rank percentile of milliseconds (as `bench_compare.pct`).
fn pct(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.max(1) - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(v: &[f64]) -> serde_json::Value {
    json!({
        "n": v.len(),
        "p50_ms": pct(v, 50.0),
        "p99_ms": pct(v, 99.0),
        "max_ms": v.iter().copied().reduce(f64::max),
    })
}

struct Ctx {
    creds: S3Credentials,
    wal_restart_pages: u64,
}

impl Ctx {
    fn open(&self, url: &str) -> anyhow::Result<Replica> {
        Replica::open_with_credentials(url, Some(&self.creds))
            .with_context(|| format!("opening the replica {url}"))
    }

    async fn vault(
        &self,
        dir: &Path,
        url: &str,
        commit_window: Duration,
    ) -> anyhow::Result<Arc<Vault>> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the work folder {}", dir.display()))?;
        let defaults = VaultOptions::default();
        let opts = VaultOptions {
            replicate: litevault::ReplicateOptions {
                commit_window,
                ..defaults.replicate.clone()
            },
            durable_timeout: Duration::from_secs(60),
            wal_restart_pages: self.wal_restart_pages,
            ..defaults
        };
        let vault = Vault::open(dir.join("app.db"))
            .replica(self.open(url)?)
            .options(opts)
            .start()
            .await
            .context("starting the vault")?;
        vault.writer().await.execute_batch(
            "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
        )?;
        let vault = Arc::new(vault);
        vault
            .wait_replicated(vault.txid())
            .await
            .context("the first upload (is the S3 server up?)")?;
        Ok(vault)
    }
}

async fn close(vault: Arc<Vault>) -> anyhow::Result<()> {
    match Arc::try_unwrap(vault) {
        Ok(v) => v.close().await.context("closing the vault"),
        Err(_) => bail!("the vault is still shared at the end of the run"),
    }
}

fn puts(vault: &Vault) -> u64 {
    vault
        .replicator()
        .status()
        .replicas
        .iter()
        .map(|r| r.requests.puts)
        .sum()
}

/// Bare PUTs of `size` random bytes under the replica's prefix, timed.
struct Putter {
    replica: Replica,
    body: PutPayload,
    run: u32,
    n: usize,
}

impl Putter {
    fn new(replica: Replica, size: usize) -> Putter {
        let body: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
        Putter {
            replica,
            body: PutPayload::from(body),
            run: rand::random::<u32>(),
            n: 0,
        }
    }

    /// One PUT; its round trip in milliseconds.
    async fn put(&mut self) -> anyhow::Result<f64> {
        self.n += 1;
        // Beside the replica's prefix, not under it: the watcher lists level
        // 0 and must see only LTX files there.
        let level0 = self.replica.level_prefix(0);
        let base = level0.rsplit_once('/').map_or("", |(b, _)| b);
        let key = object_store::path::Path::from(format!(
            "{base}-bench-put/{:08x}/{:06}",
            self.run, self.n
        ));
        let t = Instant::now();
        self.replica
            .store()
            .put(&key, self.body.clone())
            .await
            .with_context(|| format!("PUT {key} to {}", self.replica))?;
        Ok(ms(t.elapsed()))
    }
}

async fn cmd_put(ctx: &Ctx, url: &str, n: usize, size: usize) -> anyhow::Result<serde_json::Value> {
    let mut putter = Putter::new(ctx.open(url)?, size);
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let t = putter.put().await?;
        if i >= 5 {
            times.push(t);
        }
    }
    Ok(json!({ "what": "put", "size": size, "put": summary(&times), "samples_ms": times }))
}

/// The watcher: unsigned ListObjectsV2 calls over one kept-alive HTTP/1.1
/// connection, exactly as `bench_compare.Moto.list_keys` issues them for the
/// sidecar and Litestream (a signed `object_store` LIST costs moto about
/// twice as long, which would blur the comparison).
struct Lister {
    /// Reopened when the server closes it (as `http.client` does).
    conn: Option<tokio::io::BufReader<tokio::net::TcpStream>>,
    host: String,
    path: String,
}

impl Lister {
    /// From a replica URL `s3://bucket/prefix?endpoint=http://host:port&...`.
    async fn connect(url: &str) -> anyhow::Result<Lister> {
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("--watch {url:?}: an s3:// URL"))?;
        let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
        let host = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("endpoint="))
            .and_then(|e| e.strip_prefix("http://"))
            .with_context(|| format!("--watch {url:?}: needs endpoint=http://HOST:PORT"))?
            .trim_end_matches('/')
            .to_string();
        let level0 = format!("{}/0000/", prefix.trim_end_matches('/'));
        let enc: String = level0
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        Ok(Lister {
            conn: None,
            host,
            path: format!("/{bucket}?list-type=2&prefix={enc}"),
        })
    }

    /// The highest max TXID among the level-0 file names.
    async fn max_level0(&mut self) -> anyhow::Result<u64> {
        // A kept-alive connection the server closed in between fails at
        // once: retry on a new one, as `bench_compare` does.
        match self.list().await {
            Ok(body) => Self::max_txid(&body),
            Err(_) => {
                self.conn = None;
                Self::max_txid(&self.list().await?)
            }
        }
    }

    async fn list(&mut self) -> anyhow::Result<String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        if self.conn.is_none() {
            let c = tokio::net::TcpStream::connect(&self.host)
                .await
                .with_context(|| format!("connecting to {}", self.host))?;
            c.set_nodelay(true)?;
            self.conn = Some(tokio::io::BufReader::new(c));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let req = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", self.path, self.host);
        conn.get_mut().write_all(req.as_bytes()).await?;
        let mut status = String::new();
        conn.read_line(&mut status).await?;
        if !status.contains(" 200 ") {
            bail!("ListObjectsV2 {}: {:?}", self.path, status.trim());
        }
        let (mut len, mut close) = (None, status.starts_with("HTTP/1.0"));
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await? == 0 {
                bail!("the S3 server closed the connection");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = Some(v.trim().parse::<usize>()?);
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        let len = len.context("ListObjectsV2 answered without Content-Length")?;
        let mut body = vec![0; len];
        conn.read_exact(&mut body).await?;
        if close {
            self.conn = None;
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    fn max_txid(body: &str) -> anyhow::Result<u64> {
        if body.contains("<IsTruncated>true</IsTruncated>") {
            bail!("more than one page of level-0 files: use a fresh prefix");
        }
        Ok(body
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>"))
            .filter_map(|(k, _)| litevault::ltx::parse_filename(k.rsplit('/').next()?))
            .map(|(_, max)| max.0)
            .max()
            .unwrap_or(0))
    }
}

fn insert_one(vault: &Vault, conn: &rusqlite::Connection) -> anyhow::Result<CommitSeq> {
    conn.execute("INSERT INTO t(v) VALUES (randomblob(200))", [])?;
    Ok(vault.txid())
}

async fn cmd_lag(ctx: &Ctx, a: &LagArgs) -> anyhow::Result<serde_json::Value> {
    let (commits, warmup) = (a.commits, a.warmup);
    let spacing = Duration::from_millis(a.spacing_ms);
    let ack_spacing = Duration::from_millis(a.ack_spacing_ms);
    let (url, watch_url, dir) = (a.replica.as_str(), a.watch.as_str(), a.dir.as_path());
    let vault = ctx.vault(dir, url, Duration::ZERO).await?;
    let mut watch = Lister::connect(watch_url).await?;
    // Phase 1: acknowledged by every replica (wait_replicated), each commit
    // preceded by a bare PUT through the same endpoint, so that both see the
    // same moment of a noisy machine.
    let mut acked = Vec::with_capacity(commits);
    let mut puts_between = Vec::with_capacity(commits);
    let mut putter = Putter::new(ctx.open(url)?, 4096);
    let t0 = Instant::now() + Duration::from_millis(200);
    for i in 0..commits + warmup {
        tokio::time::sleep_until((t0 + ack_spacing * i as u32).into()).await;
        let put = putter.put().await?;
        if i >= warmup {
            puts_between.push(put);
        }
        tokio::time::sleep(ack_spacing / 2).await;
        let (seq, tc) = {
            let c = vault.writer().await;
            let seq = insert_one(&vault, &c)?;
            (seq, Instant::now())
        };
        vault.wait_replicated(seq).await?;
        if i >= warmup {
            acked.push(ms(tc.elapsed()));
        }
    }
    // Phase 2: visible in a listing, as bench_compare measures the others.
    let mut visible = Vec::with_capacity(commits);
    let mut list_rtt = Vec::new();
    let mut missed = 0;
    let mut prev = watch.max_level0().await?;
    let t0 = Instant::now() + Duration::from_millis(500);
    for i in 0..commits + warmup {
        tokio::time::sleep_until((t0 + spacing * i as u32).into()).await;
        let tc = {
            let c = vault.writer().await;
            insert_one(&vault, &c)?;
            Instant::now()
        };
        let limit = tc + Duration::from_secs(10).max(spacing * 5);
        loop {
            let tl = Instant::now();
            let top = watch.max_level0().await?;
            list_rtt.push(ms(tl.elapsed()));
            if top > prev {
                if i >= warmup {
                    visible.push(ms(tc.elapsed()));
                }
                prev = top;
                break;
            }
            if Instant::now() > limit {
                missed += usize::from(i >= warmup);
                break;
            }
        }
    }
    let requests = vault.replicator().status().replicas[0].requests;
    close(vault).await?;
    Ok(json!({
        "what": "lag",
        "acknowledged": summary(&acked),
        "put_interleaved": summary(&puts_between),
        "visible": summary(&visible),
        "visible_missed": missed,
        "list_rtt": summary(&list_rtt),
        "acknowledged_ms": acked,
        "visible_ms": visible,
        "spacing_ms": ms(spacing),
        "ack_spacing_ms": ms(ack_spacing),
        "warmup": warmup,
        "puts": requests.puts,
        "bytes_out": requests.bytes_out,
    }))
}

async fn cmd_durable(
    ctx: &Ctx,
    url: &str,
    writers: usize,
    commits: usize,
    window: Duration,
    dir: &Path,
) -> anyhow::Result<serde_json::Value> {
    let vault = ctx.vault(dir, url, window).await?;
    let per = commits.div_ceil(writers.max(1));
    let puts_before = puts(&vault);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers.max(1) {
        let vault = vault.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                vault
                    .transaction_durable(|tx| {
                        tx.execute("INSERT INTO t(v) VALUES (randomblob(200))", [])
                    })
                    .await?;
                lat.push(ms(t.elapsed()));
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(per * writers);
    for t in tasks {
        lat.extend(t.await.context("a writer task panicked")??);
    }
    let elapsed = start.elapsed();
    let puts = puts(&vault) - puts_before;
    close(vault).await?;
    let n = lat.len();
    Ok(json!({
        "what": "durable",
        "writers": writers,
        "commit_window_ms": ms(window),
        "durable": summary(&lat),
        "commits": n,
        "seconds": elapsed.as_secs_f64(),
        "commits_per_s": n as f64 / elapsed.as_secs_f64(),
        "puts": puts,
        "puts_per_commit": puts as f64 / n as f64,
    }))
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (every thread).
fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// A CPU-time clock (zero if it cannot be read).
fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

async fn cmd_durable_vs_put(
    ctx: &Ctx,
    url: &str,
    pairs: usize,
    dir: &Path,
) -> anyhow::Result<serde_json::Value> {
    let vault = ctx.vault(dir, url, Duration::ZERO).await?;
    let mut putter = Putter::new(ctx.open(url)?, 4096);
    let (mut put, mut durable) = (Vec::new(), Vec::new());
    for i in 0..pairs + 5 {
        let p = putter.put().await?;
        let t = Instant::now();
        vault
            .transaction_durable(|tx| tx.execute("INSERT INTO t(v) VALUES (randomblob(200))", []))
            .await?;
        if i >= 5 {
            put.push(p);
            durable.push(ms(t.elapsed()));
        }
    }
    close(vault).await?;
    Ok(json!({
        "what": "durable_vs_put",
        "put": summary(&put),
        "durable": summary(&durable),
        "p50_ratio": pct(&durable, 50.0).zip(pct(&put, 50.0)).map(|(d, p)| d / p),
    }))
}

/// Single-row commits as fast as one writer can for `secs`; returns the
/// commits and the writer thread's CPU time (below `secs` when it waited
/// for a core or for a lock).
fn commit_loop(conn: &rusqlite::Connection, secs: Duration) -> anyhow::Result<(u64, Duration)> {
    let mut stmt = conn.prepare("INSERT INTO t(v) VALUES (randomblob(200))")?;
    let cpu0 = thread_cpu();
    let end = Instant::now() + secs;
    let mut n = 0;
    while Instant::now() < end {
        stmt.execute([])?;
        n += 1;
    }
    Ok((n, thread_cpu() - cpu0))
}

/// A connection tuned as the vault's writer is, without replication;
/// `autocheckpoint` false turns SQLite's automatic checkpoints off too (the
/// vault's writer has none: its replicator checkpoints in the background).
fn plain_writer(path: &Path, autocheckpoint: bool) -> anyhow::Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open(path)?;
    if !autocheckpoint {
        c.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{}: journal_mode stays {mode}", path.display());
    }
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.busy_timeout(Duration::from_secs(5))?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    Ok(c)
}

async fn cmd_throughput(
    ctx: &Ctx,
    url: &str,
    seconds: f64,
    rounds: usize,
    dir: &Path,
) -> anyhow::Result<serde_json::Value> {
    let secs = Duration::from_secs_f64(seconds);
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut off_nockpt = Vec::new();
    // Writer thread CPU seconds per wall second, per mode.
    let mut cpu_share: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut other_cpu = Vec::new();
    let mut drains = Vec::new();
    let mut puts_on = Vec::new();
    for round in 0..rounds {
        // Which mode goes first rotates from round to round.
        let mut order = [Mode::On, Mode::Off, Mode::OffNoCheckpoint];
        order.rotate_left(round % 3);
        for mode in order {
            let d = dir.join(format!("round{round}-{mode:?}"));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d)?;
            if mode == Mode::On {
                // A fresh prefix per round: the replica starts empty too.
                let url = with_subprefix(url, &format!("tp-{round}"));
                let vault = ctx.vault(&d, &url, Duration::ZERO).await?;
                let before = puts(&vault);
                let p0 = process_cpu();
                let (n, cpu) = {
                    let conn = vault.writer().await;
                    tokio::task::block_in_place(|| commit_loop(&conn, secs))?
                };
                // The rest of the process: the replicator (and the runtime).
                other_cpu.push((process_cpu() - p0 - cpu).as_secs_f64() / seconds);
                cpu_share
                    .entry("on".into())
                    .or_default()
                    .push(cpu.as_secs_f64() / seconds);
                let t = Instant::now();
                vault.wait_replicated(vault.txid()).await?;
                drains.push(ms(t.elapsed()));
                puts_on.push(puts(&vault) - before);
                close(vault).await?;
                on.push(n as f64 / seconds);
            } else {
                let auto = mode == Mode::Off;
                let conn = plain_writer(&d.join("app.db"), auto)?;
                let (n, cpu) = tokio::task::block_in_place(|| commit_loop(&conn, secs))?;
                cpu_share
                    .entry(if auto { "off" } else { "off_nockpt" }.into())
                    .or_default()
                    .push(cpu.as_secs_f64() / seconds);
                if auto { &mut off } else { &mut off_nockpt }.push(n as f64 / seconds);
            }
            let _ = std::fs::remove_dir_all(&d);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(json!({
        "what": "throughput",
        "seconds_per_round": seconds,
        "rounds": rounds,
        "on_commits_per_s": on,
        "off_commits_per_s": off,
        "off_nockpt_commits_per_s": off_nockpt,
        "off_nockpt_mean": mean(&off_nockpt),
        "on_over_off_nockpt": mean(&on) / mean(&off_nockpt),
        "on_mean": mean(&on),
        "off_mean": mean(&off),
        "on_over_off": mean(&on) / mean(&off),
        "drain_after_round_ms": drains,
        "writer_cpu_per_wall_s": cpu_share,
        "replicator_cpu_per_wall_s_on": other_cpu,
        "puts_per_round_on": puts_on,
    }))
}

/// Throughput modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The vault, replicating.
    On,
    /// Plain rusqlite, SQLite's automatic checkpoints (every 1000 pages).
    Off,
    /// Plain rusqlite, no checkpoints at all (the WAL only grows).
    OffNoCheckpoint,
}

/// `s3://bucket/prefix?query` with `/sub` appended to the prefix.
fn with_subprefix(url: &str, sub: &str) -> String {
    match url.split_once('?') {
        Some((base, q)) => format!("{}/{sub}?{q}", base.trim_end_matches('/')),
        None => format!("{}/{sub}", url.trim_end_matches('/')),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ctx = Ctx {
        creds: S3Credentials {
            access_key_id: cli.access_key,
            secret_access_key: cli.secret_key,
        },
        wal_restart_pages: cli.wal_restart_pages,
    };
    // Run on a worker thread, as an application's request handlers do (the
    // main thread of `block_on` would add a cross-thread wake-up to every
    // acknowledgement).
    let out = tokio::spawn(run(ctx, cli.command))
        .await
        .context("the measurement task panicked")??;
    println!("{out}");
    Ok(())
}

async fn run(ctx: Ctx, command: Command) -> anyhow::Result<serde_json::Value> {
    Ok(match command {
        Command::Put { replica, n, size } => cmd_put(&ctx, &replica, n, size).await?,
        Command::Lag(a) => cmd_lag(&ctx, &a).await?,
        Command::Durable {
            replica,
            writers,
            commits,
            commit_window_ms,
            dir,
        } => {
            cmd_durable(
                &ctx,
                &replica,
                writers,
                commits,
                Duration::from_millis(commit_window_ms),
                &dir,
            )
            .await?
        }
        Command::DurableVsPut {
            replica,
            pairs,
            dir,
        } => cmd_durable_vs_put(&ctx, &replica, pairs, &dir).await?,
        Command::Throughput {
            replica,
            seconds,
            rounds,
            dir,
        } => cmd_throughput(&ctx, &replica, seconds, rounds, &dir).await?,
    })
}
