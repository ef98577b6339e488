//! `litevault verify DB URL`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::replica::Replica;
use crate::verify::{VerifyOptions, verify};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The live database.
    db: PathBuf,
    /// Replica URL.
    url: String,
    /// How long to wait for the replica to reach the database's state.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    timeout: Duration,
    /// Where to restore the replica for the comparison (default: the system's
    /// temporary folder).
    #[arg(long)]
    temp_dir: Option<PathBuf>,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print the outcome as JSON (on stdout, also on failure).
    #[arg(long)]
    json: bool,
}

/// Exit codes: 0 the replica restores to the database; 2 the replica is
/// damaged or restores to something else; 3 it is behind the database beyond
/// the timeout; 4 the database diverged from it; 1 verify could not run.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let replica = Replica::open(&a.url)?;
    let opts = VerifyOptions {
        timeout: a.timeout,
        temp_dir: a.temp_dir.clone(),
        concurrency: a.concurrency,
        ..VerifyOptions::default()
    };
    match verify(&a.db, &replica, &opts).await {
        Ok(r) => {
            if a.json {
                let mut v = serde_json::to_value(&r)?;
                v["ok"] = serde_json::Value::Bool(true);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: u64 = r.rows.values().sum();
                println!(
                    "ok: {} matches {} at TXID {} (checksum {}, {} pages, {} rows in {} tables; restored from {} file(s) in {} ms)",
                    a.db.display(),
                    a.url,
                    r.txid,
                    r.checksum,
                    r.pages,
                    rows,
                    r.rows.len(),
                    r.files,
                    r.millis
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if a.json {
                let v = serde_json::json!({
                    "ok": false,
                    "kind": e.kind(),
                    "exit_code": e.exit_code(),
                    "error": e.to_string(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}
