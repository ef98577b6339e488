//! `litevault replicate DB URL [URL...] [--exec CMD]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{ReplicateOptions, Replicator, replica::Replica};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The SQLite database (in WAL mode).
    db: PathBuf,
    /// Replica URLs (one or more; each keeps its own position): file:///dir,
    /// s3://bucket/path?endpoint=..&region=..&force-path-style=true, gs://, az://
    #[arg(required = true)]
    urls: Vec<String>,
    /// Start this command (with `sh -c`) once the database is open, forward
    /// SIGINT/SIGTERM to it, and when it exits do a final sync and exit with
    /// its exit code.
    #[arg(long, value_name = "CMD", conflicts_with = "once")]
    exec: Option<String>,
    /// Ship what is committed now, then exit.
    #[arg(long)]
    once: bool,
    /// How often to look for new commits, in milliseconds.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// PASSIVE checkpoint once the WAL holds this many frames (0: never).
    #[arg(long, default_value_t = 1000)]
    checkpoint_pages: u64,
    /// TRUNCATE checkpoint once the WAL file reaches this many MiB (0: never).
    #[arg(long, default_value_t = 256)]
    truncate_mib: u64,
    /// Write files that `litestream restore` (0.5) accepts: the NoChecksum
    /// flag, with litevault's checksums kept in the reserved header bytes.
    #[arg(long)]
    litestream_compat: bool,
    /// Seconds allowed for the final sync at shutdown.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let shutdown = super::shutdown_signal();
    let replicas = a
        .urls
        .iter()
        .map(|u| Replica::open(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut opts = ReplicateOptions {
        poll_interval: Duration::from_millis(a.poll_ms.max(1)),
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        litestream_compat: a.litestream_compat,
        ..ReplicateOptions::default()
    };
    opts.checkpoint.min_pages = a.checkpoint_pages;
    opts.checkpoint.truncate_bytes = a.truncate_mib << 20;
    tokio::pin!(shutdown);
    // A signal during start-up still ends with a final sync: nothing the app
    // committed before the signal is left behind.
    let replicator = Replicator::open_many(&a.db, replicas, opts).await?;
    if a.once {
        let txid = replicator.sync_all().await?;
        replicator.clone().run(async {}).await?;
        println!(
            "{} replicated to {} at TXID {txid}",
            a.db.display(),
            a.urls.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(cmd) = &a.exec {
        // A signal that arrived while the database was opening: do not start
        // the app at all, just the final sync.
        if futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
            replicator.run(async {}).await?;
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = crate::supervise::supervise(vec![replicator], cmd).await?;
        for r in &outcome.replication {
            if let Err(e) = r {
                tracing::error!(error = %e, "final sync after the application exited failed");
            }
        }
        return Ok(ExitCode::from(outcome.exit_code.clamp(0, 255) as u8));
    }
    tracing::info!(db = %a.db.display(), replica = %replicator.replica(), txid = %replicator.txid(), "replicating");
    replicator.run(&mut shutdown).await?;
    tracing::info!("stopped after a final sync");
    Ok(ExitCode::SUCCESS)
}
