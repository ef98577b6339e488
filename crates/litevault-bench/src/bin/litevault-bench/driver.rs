//! `litevault-bench embedded-driver`: replication lag, durable-commit
//! latency and write throughput of a [`Vault`] against an S3 server, and the
//! bare PUT latency of that server. Each subcommand prints one JSON object
//! on stdout (the types of [`crate::figures`]); `litevault-bench embedded`
//! runs it, in its own process, for the whole matrix.
//!
//! ```text
//! URL='s3://bucket/run1?endpoint=http://127.0.0.1:9000&region=us-east-1&force-path-style=true'
//! litevault-bench embedded-driver --access-key K --secret-key S put --replica "$URL"
//! litevault-bench embedded-driver --access-key K --secret-key S \
//!     lag --replica "$URL" --watch "$URL" --commits 30 --spacing-ms 1200 --dir /tmp/lag
//! litevault-bench embedded-driver --access-key K --secret-key S \
//!     durable --replica "$URL" --writers 8 --commits 400 --dir /tmp/durable
//! litevault-bench embedded-driver --access-key K --secret-key S \
//!     throughput --replica "$URL" --seconds 2 --rounds 3 --dir /tmp/throughput
//! ```
//!
//! Definitions (the same in BENCHMARKS.md):
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
//!   and the request of the sidecar's and Litestream's runs.
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
//! sidecar's and Litestream's runs discard as many): a commit right after
//! start-up measures the start-up, not the steady state. The throughput
//! measurement is in [`throughput`].

mod throughput;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use litevault::replica::S3Credentials;
use litevault::vault::CommitSeq;
use litevault::{Replica, Vault, VaultOptions};
use object_store::{ObjectStoreExt, PutPayload};

use crate::figures::{DurableRun, DurableVsPutRun, LagRun, PutRun};
use crate::format::{Summary, pct};
use crate::lister::Lister;

/// Measure litevault's embedded mode against an object store.
#[derive(Parser, Debug)]
pub struct Args {
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

#[derive(Subcommand, Debug)]
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
        dir: PathBuf,
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
        dir: PathBuf,
    },
    /// Commits per second with replication on and off, interleaved rounds.
    Throughput {
        #[arg(long)]
        replica: String,
        /// Seconds per round and mode.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Rounds (each runs every mode, rotating which goes first).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
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
    dir: PathBuf,
}

/// Runs one subcommand on a two-worker runtime and prints its JSON.
pub fn main(args: Args) -> anyhow::Result<()> {
    let ctx = Ctx {
        creds: S3Credentials {
            access_key_id: args.access_key,
            secret_access_key: args.secret_key,
        },
        wal_restart_pages: args.wal_restart_pages,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Run on a worker thread, as an application's request handlers do (the
    // main thread of `block_on` would add a cross-thread wake-up to every
    // acknowledgement).
    let out = rt.block_on(async {
        tokio::spawn(run(ctx, args.command))
            .await
            .context("the measurement task panicked")?
    })?;
    println!("{out}");
    Ok(())
}

async fn run(ctx: Ctx, command: Command) -> anyhow::Result<serde_json::Value> {
    Ok(match command {
        Command::Put { replica, n, size } => {
            serde_json::to_value(cmd_put(&ctx, &replica, n, size).await?)?
        }
        Command::Lag(a) => serde_json::to_value(cmd_lag(&ctx, &a).await?)?,
        Command::Durable {
            replica,
            writers,
            commits,
            commit_window_ms,
            dir,
        } => {
            let window = Duration::from_millis(commit_window_ms);
            serde_json::to_value(
                cmd_durable(&ctx, &replica, writers, commits, window, &dir).await?,
            )?
        }
        Command::DurableVsPut {
            replica,
            pairs,
            dir,
        } => serde_json::to_value(cmd_durable_vs_put(&ctx, &replica, pairs, &dir).await?)?,
        Command::Throughput {
            replica,
            seconds,
            rounds,
            dir,
        } => serde_json::to_value(
            throughput::run(&ctx, &replica, seconds, rounds as usize, &dir).await?,
        )?,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

/// Bare PUTs of `size` random bytes beside the replica's prefix, timed.
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

async fn cmd_put(ctx: &Ctx, url: &str, n: usize, size: usize) -> anyhow::Result<PutRun> {
    let mut putter = Putter::new(ctx.open(url)?, size);
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let t = putter.put().await?;
        if i >= 5 {
            times.push(t);
        }
    }
    Ok(PutRun {
        what: "put".into(),
        size,
        put: Summary::of(&times),
        samples_ms: times,
    })
}

fn insert_one(vault: &Vault, conn: &rusqlite::Connection) -> anyhow::Result<CommitSeq> {
    conn.execute("INSERT INTO t(v) VALUES (randomblob(200))", [])?;
    Ok(vault.txid())
}

async fn cmd_lag(ctx: &Ctx, a: &LagArgs) -> anyhow::Result<LagRun> {
    let (commits, warmup) = (a.commits, a.warmup);
    let spacing = Duration::from_millis(a.spacing_ms);
    let ack_spacing = Duration::from_millis(a.ack_spacing_ms);
    let (url, dir) = (a.replica.as_str(), a.dir.as_path());
    let vault = ctx.vault(dir, url, Duration::ZERO).await?;
    let mut watch = Lister::new(&a.watch).context("--watch")?;
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
    // Phase 2: visible in a listing, as the sidecar and Litestream are
    // measured.
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
    Ok(LagRun {
        what: "lag".into(),
        acknowledged: Summary::of(&acked),
        put_interleaved: Summary::of(&puts_between),
        visible: Summary::of(&visible),
        visible_missed: missed,
        list_rtt: Summary::of(&list_rtt),
        acknowledged_ms: acked,
        visible_ms: visible,
        spacing_ms: ms(spacing),
        ack_spacing_ms: ms(ack_spacing),
        warmup,
        puts: requests.puts,
        bytes_out: requests.bytes_out,
    })
}

async fn cmd_durable(
    ctx: &Ctx,
    url: &str,
    writers: usize,
    commits: usize,
    window: Duration,
    dir: &Path,
) -> anyhow::Result<DurableRun> {
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
    Ok(DurableRun {
        what: "durable".into(),
        writers,
        commit_window_ms: ms(window),
        durable: Summary::of(&lat),
        commits: n,
        seconds: elapsed.as_secs_f64(),
        commits_per_s: n as f64 / elapsed.as_secs_f64(),
        puts,
        puts_per_commit: puts as f64 / n as f64,
    })
}

async fn cmd_durable_vs_put(
    ctx: &Ctx,
    url: &str,
    pairs: usize,
    dir: &Path,
) -> anyhow::Result<DurableVsPutRun> {
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
    Ok(DurableVsPutRun {
        what: "durable_vs_put".into(),
        put: Summary::of(&put),
        durable: Summary::of(&durable),
        p50_ratio: pct(&durable, 50.0).zip(pct(&put, 50.0)).map(|(d, p)| d / p),
    })
}
