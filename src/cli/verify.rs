//! `litevault verify DB [URL]`: without a URL, every replica the config
//! file lists for the database.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use litevault::replica::Replica;
use litevault::verify::{VerifyOptions, verify};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The live database.
    db: PathBuf,
    /// Replica URL (default: every replica of the database in the config file).
    url: Option<String>,
    /// The config file (default: $LITEVAULT_CONFIG, ./litevault.yml, /etc/litevault.yml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// How long to wait for the replica to reach the database's state.
    #[arg(long, default_value = "30s", value_parser = litevault::units::parse_duration)]
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

impl Args {
    /// The config file this command reads: only when no URL is given.
    pub fn config_file(&self) -> Option<super::logging::ConfigFile<'_>> {
        self.url
            .is_none()
            .then(|| super::logging::ConfigFile::new(self.config.as_deref()))
    }
}

/// Exit codes: 0 the replica restores to the database; 2 the replica is
/// damaged or restores to something else; 3 it is behind the database beyond
/// the timeout; 4 the database diverged from it; 1 verify could not run.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let replicas: Vec<(String, Replica)> = match &a.url {
        Some(u) => vec![(u.clone(), Replica::open(u)?)],
        None => replicas_from_config(&a)?,
    };
    let mut worst = 0u8;
    for (url, replica) in replicas {
        let code = verify_one(&a, &url, &replica).await?;
        worst = worst.max(code);
    }
    Ok(ExitCode::from(worst))
}

/// The replicas the config file lists for the database.
fn replicas_from_config(a: &Args) -> anyhow::Result<Vec<(String, Replica)>> {
    use litevault::config::{self, Config, DbSource, LoadOptions};
    let path = config::locate(a.config.as_deref())?;
    let cfg = Config::load(&path, &LoadOptions::default())?;
    let want = std::fs::canonicalize(&a.db).unwrap_or_else(|_| a.db.clone());
    for db in cfg.expand_dbs()? {
        let DbSource::Path(p) = &db.source else {
            continue;
        };
        if std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()) == want {
            return db
                .replicas
                .iter()
                .map(|r| Ok((r.url.clone(), r.open()?)))
                .collect();
        }
    }
    anyhow::bail!(
        "{} is not listed in {}: give the replica URL (litevault verify DB URL)",
        a.db.display(),
        path.display()
    )
}

async fn verify_one(a: &Args, url: &str, replica: &Replica) -> anyhow::Result<u8> {
    let opts = VerifyOptions {
        timeout: a.timeout,
        temp_dir: a.temp_dir.clone(),
        concurrency: a.concurrency,
        ..VerifyOptions::default()
    };
    match verify(&a.db, replica, &opts).await {
        Ok(r) => {
            if a.json {
                let mut v = serde_json::to_value(&r)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("ok".into(), true.into());
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: u64 = r.rows.values().sum();
                println!(
                    "ok: {} matches {} at TXID {} (checksum {}, {} pages, {} rows in {} tables; restored from {} file(s) in {} ms)",
                    a.db.display(),
                    url,
                    r.txid,
                    r.checksum,
                    r.pages,
                    rows,
                    r.rows.len(),
                    r.files,
                    r.millis
                );
            }
            Ok(0)
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
            eprintln!("error: {url}: {e}");
            Ok(e.exit_code())
        }
    }
}
