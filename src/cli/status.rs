//! `litevault status [DB...] [--config F] [--json]`: what each running
//! replicator last reported (refreshed every second in
//! `.<db>-litevault/status.json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;

use litevault::config::{self, Config, LoadOptions};
use litevault::db::StateDir;
use litevault::replicate::{DbStatus, STATUS_FILE};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Databases to report on (default: those of the config file).
    dbs: Vec<PathBuf>,
    /// The config file (default: $LITEVAULT_CONFIG, ./litevault.yml, /etc/litevault.yml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The config file this command reads: only when no database is given.
    pub fn config_file(&self) -> Option<super::logging::ConfigFile<'_>> {
        self.dbs
            .is_empty()
            .then(|| super::logging::ConfigFile::new(self.config.as_deref()))
    }
}

/// A status this much older than the replicator's refresh interval means
/// it is not running.
const STALE_SECS: i64 = 5;

fn read_status(db: &Path) -> Result<DbStatus, String> {
    let db = std::fs::canonicalize(db).map_err(|e| format!("{}: {e}", db.display()))?;
    let file = StateDir::for_db(&db).path().join(STATUS_FILE);
    let bytes = std::fs::read(&file).map_err(|_| {
        format!(
            "{}: no status ({} is missing): litevault has not replicated this database here",
            db.display(),
            file.display()
        )
    })?;
    let mut st: DbStatus =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    if (Utc::now() - st.updated_at).num_seconds() > st.refresh_secs as i64 + STALE_SECS {
        st.running = false;
    }
    Ok(st)
}

fn fmt_lag(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let dbs = if a.dbs.is_empty() {
        let path = config::locate(a.config.as_deref())?;
        let cfg = Config::load(&path, &LoadOptions::default())?;
        cfg.expand_dbs()?
            .into_iter()
            .filter_map(|d| match d.source {
                config::DbSource::Path(p) => Some(p),
                _ => None,
            })
            .collect()
    } else {
        a.dbs.clone()
    };
    let mut code = ExitCode::SUCCESS;
    let mut all = Vec::new();
    for db in &dbs {
        match read_status(db) {
            Ok(s) => all.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(code);
    }
    for s in &all {
        let state = if s.running {
            "running".to_string()
        } else {
            format!("not running (last seen {})", s.updated_at.to_rfc3339())
        };
        println!(
            "{}  {state}  txid {}  wal {} KiB  local store {} KiB",
            s.db.display(),
            s.txid,
            s.wal_bytes / 1024,
            s.local_store_bytes / 1024
        );
        for r in &s.replicas {
            let c = &r.requests;
            println!(
                "  {}  txid {}  lag {}  last upload {}  PUT {} GET {} LIST {} DELETE {}  out {} KiB  in {} KiB{}",
                r.url,
                r.txid,
                fmt_lag(r.lag_ms),
                r.last_upload
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
                c.puts,
                c.gets,
                c.lists,
                c.deletes,
                c.bytes_out / 1024,
                c.bytes_in / 1024,
                r.last_error
                    .as_ref()
                    .map(|e| format!("\n    last error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(code)
}
