//! `litevault restore URL -o OUT`, or `litevault restore -o DB --config F`
//! (the replica the config file lists first for that database).

use std::path::PathBuf;
use std::process::ExitCode;

use litevault::ltx::Txid;
use litevault::replica::Replica;
use litevault::restore::follow::{FollowOptions, FollowStart, Follower};
use litevault::restore::{RestoreOptions, RestoreOutcome, RestoreTarget, restore};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Replica URL (default: the first replica the config file lists for
    /// the database at `--output`).
    url: Option<String>,
    /// The config file (default: $LITEVAULT_CONFIG, ./litevault.yml,
    /// /etc/litevault.yml); used when no URL is given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to write the database.
    #[arg(short, long)]
    output: PathBuf,
    /// Restore the state right after this TXID (hex, as `litevault ltx` shows it).
    #[arg(long, conflicts_with = "timestamp")]
    txid: Option<String>,
    /// Restore the latest state committed at or before this time (RFC 3339).
    /// From the LTX files when the replica has any, else from its Litestream
    /// v0.3 backup (the generation written over that time).
    #[arg(long)]
    timestamp: Option<String>,
    /// Restore this generation of the replica's Litestream v0.3 backup (16
    /// hex digits, as `litevault ltx URL --v03` lists them), even when the
    /// replica also holds LTX files: its latest state, or with --index its
    /// state at the end of that WAL index. Like v0.3's `restore -generation`.
    #[arg(long, conflicts_with_all = ["txid", "timestamp"])]
    generation: Option<String>,
    /// With --generation: the last WAL index to apply (hex, e.g. 1a), like
    /// v0.3's `restore -index`.
    #[arg(long, requires = "generation")]
    index: Option<String>,
    /// Do nothing (exit 0) if the output already exists.
    #[arg(long)]
    if_db_not_exists: bool,
    /// Do nothing (exit 0) if the replica holds no files.
    #[arg(long)]
    if_replica_exists: bool,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Keep the output current: poll the replica and apply new files, each
    /// batch one SQLite transaction, until SIGINT/SIGTERM. Readers must open
    /// the output read-only (`file:replica.db?mode=ro`). Resumes from its
    /// saved position when restarted.
    #[arg(long, conflicts_with_all = ["txid", "timestamp", "generation", "if_db_not_exists", "if_replica_exists"])]
    follow: bool,
    /// Time between two polls in follow mode (e.g. 500ms, 1s, 2m).
    #[arg(long, default_value = "1s", value_parser = litevault::units::parse_duration, requires = "follow")]
    interval: std::time::Duration,
    /// Follow mode: when the output was written to by something else (or is
    /// not a follower of this replica), re-restore it in place instead of
    /// stopping with an error.
    #[arg(long, requires = "follow")]
    force: bool,
}

impl Args {
    /// The config file this command reads: only when no URL is given.
    pub fn config_file(&self) -> Option<super::logging::ConfigFile<'_>> {
        self.url
            .is_none()
            .then(|| super::logging::ConfigFile::new(self.config.as_deref()))
    }

    /// Whether this restore keeps following the replica (a long-running
    /// command).
    pub(super) fn follows(&self) -> bool {
        self.follow
    }
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    // With LITEVAULT_FAULTS (a test facility): the fault counts, one JSON
    // line on stderr at exit.
    let _faults = litevault::replica::faults::ExitReport;
    let target = match (&a.txid, &a.timestamp) {
        _ if a.generation.is_some() => generation_target(&a)?,
        (Some(t), _) => RestoreTarget::Txid(t.parse::<Txid>().map_err(|_| {
            anyhow::anyhow!("--txid {t:?} is not a hex TXID (up to 16 hex digits, e.g. 1a)")
        })?),
        (_, Some(ts)) => RestoreTarget::Timestamp(
            chrono::DateTime::parse_from_rfc3339(ts)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--timestamp {ts:?} is not RFC 3339 ({e}); write e.g. 2026-11-22T10:00:00Z"
                    )
                })?
                .to_utc(),
        ),
        _ => RestoreTarget::Latest,
    };
    let (url, replica) = match &a.url {
        Some(u) => (u.clone(), Replica::open(u)?),
        None => replica_from_config(&a)?,
    };
    let a = Args {
        url: Some(url.clone()),
        ..a
    };
    if a.follow {
        return follow(a, replica).await;
    }
    let opts = RestoreOptions {
        target,
        if_db_not_exists: a.if_db_not_exists,
        if_replica_exists: a.if_replica_exists,
        concurrency: a.concurrency,
        progress: super::progress::terminal(),
        ..RestoreOptions::default()
    };
    let outcome = restore(&replica, &a.output, &opts).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(ExitCode::SUCCESS);
    }
    match outcome {
        RestoreOutcome::Restored(r) if r.litestream_v03.is_some() => {
            let p = r.litestream_v03.as_ref().expect("checked by the guard");
            println!(
                "restored {} from the Litestream v0.3 backup: generation {}, snapshot {} and WAL to index {}, {} file(s), {} bytes, {} pages of {} bytes in {} ms; checksum {} (verified by WAL checksums, LZ4 checksums and integrity_check)",
                a.output.display(),
                p.generation,
                p.snapshot_index,
                p.index,
                r.files.len(),
                r.bytes,
                r.pages,
                r.page_size,
                r.millis,
                r.checksum,
            );
        }
        RestoreOutcome::Restored(r) => {
            println!(
                "restored {} at TXID {} from {} file(s), {} bytes, {} pages of {} bytes in {} ms; checksum {} {}",
                a.output.display(),
                r.txid,
                r.files.len(),
                r.bytes,
                r.pages,
                r.page_size,
                r.millis,
                r.checksum,
                if r.checksum_verified {
                    "verified against the replica"
                } else {
                    "(the replica's files carry no checksums; verified by file checksums and integrity_check)"
                }
            );
        }
        RestoreOutcome::SkippedDbExists => {
            println!(
                "{} exists; nothing restored (--if-db-not-exists)",
                a.output.display()
            )
        }
        RestoreOutcome::SkippedNoReplica => {
            println!("{url} holds no files; nothing restored (--if-replica-exists)")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--generation G [--index N]`.
fn generation_target(a: &Args) -> anyhow::Result<RestoreTarget> {
    let g = a.generation.as_deref().unwrap_or_default();
    let generation = g
        .parse()
        .map_err(|e| anyhow::anyhow!("--generation: {e}"))?;
    let index = match &a.index {
        Some(i) => Some(u32::from_str_radix(i, 16).map_err(|_| {
            anyhow::anyhow!("--index {i:?} is not a hex WAL index (up to 8 hex digits, e.g. 1a)")
        })?),
        None => None,
    };
    Ok(RestoreTarget::Generation { generation, index })
}

/// The first replica the config file lists for the output database.
fn replica_from_config(a: &Args) -> anyhow::Result<(String, Replica)> {
    use litevault::config::{self, Config, DbSource, LoadOptions};
    let path = config::locate(a.config.as_deref())?;
    let cfg = Config::load(&path, &LoadOptions::default())?;
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let want = abs(&a.output);
    for db in &cfg.dbs {
        let DbSource::Path(p) = &db.source else {
            continue;
        };
        if abs(p) == want
            && let Some(r) = db.replicas.first()
        {
            return Ok((r.url.clone(), r.open()?));
        }
    }
    anyhow::bail!(
        "{} is not a database listed in {}: give the replica URL (litevault restore URL -o {})",
        a.output.display(),
        path.display(),
        a.output.display()
    )
}

async fn follow(a: Args, replica: Replica) -> anyhow::Result<ExitCode> {
    // Installed before the (possibly long) initial restore, so a signal
    // during it is not lost.
    let shutdown = super::shutdown_signal();
    let opts = FollowOptions {
        interval: a.interval,
        force: a.force,
        concurrency: a.concurrency,
    };
    let follower = Follower::open(replica, &a.output, opts).await?;
    let pos = follower.position();
    let how = match follower.start() {
        FollowStart::Restored { files, .. } => format!("restored from {files} file(s)"),
        FollowStart::Resumed { .. } => "resumed from its saved position".to_string(),
        FollowStart::Rebuilt { reason, .. } => format!("re-restored in place ({reason})"),
    };
    eprintln!(
        "following {} into {} at TXID {} ({how}); polling every {:?}",
        a.url.as_deref().unwrap_or_default(),
        a.output.display(),
        pos.txid,
        a.interval
    );
    let report = follower.run(shutdown).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "stopped following {}: at TXID {} (checksum {}), {} batch(es) applied, {} re-restore(s)",
            a.output.display(),
            report.status.position.txid,
            report.status.position.checksum,
            report.status.batches,
            report.status.rebuilds
        );
    }
    Ok(ExitCode::SUCCESS)
}
