//! Restores of one replica and the checks every restored state must pass:
//! `integrity_check`, rows that hash to the digest the state carries, and a
//! `(seq, digest)` the app's ledger says it committed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::writer;

/// Which tool restores (and lists) a replica.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Litevault,
    Litestream,
}

/// What to restore.
pub enum Target {
    Latest,
    Txid(String),
    Time(String),
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::Latest => "latest".into(),
            Target::Txid(t) => format!("TXID {t}"),
            Target::Time(t) => format!("time {t}"),
        }
    }
}

/// A restored state that passed every check.
pub struct Good {
    pub seq: i64,
}

pub struct Restorer<'a> {
    pub engine: Engine,
    pub bin: &'a Path,
    pub env: &'a [(String, String)],
    pub out: PathBuf,
}

impl Restorer<'_> {
    /// Restores `url` at `target` into the scratch file.
    fn restore(&self, url: &str, target: &Target) -> Result<(), String> {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.out.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        let mut c = match self.engine {
            Engine::Litevault => {
                let mut c = Command::new(self.bin);
                c.arg("restore").arg(url).arg("-o").arg(&self.out);
                match target {
                    Target::Latest => {}
                    Target::Txid(t) => {
                        c.args(["--txid", t]);
                    }
                    Target::Time(t) => {
                        c.args(["--timestamp", t]);
                    }
                }
                c.env("LITEVAULT_LOG", "warn");
                c
            }
            Engine::Litestream => {
                let mut c = Command::new("litestream");
                c.arg("restore").arg("-o").arg(&self.out);
                match target {
                    Target::Latest => {}
                    Target::Txid(t) => {
                        c.args(["-txid", t]);
                    }
                    Target::Time(t) => {
                        c.args(["-timestamp", t]);
                    }
                }
                c.arg(url);
                c
            }
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        let r = c
            .output()
            .map_err(|e| format!("cannot run the restore: {e}"))?;
        if !r.status.success() {
            let msg = String::from_utf8_lossy(&r.stderr).trim().to_string();
            return Err(format!("restore failed: {msg}"));
        }
        Ok(())
    }

    /// Restores `url` at `target` into the scratch file and checks it.
    pub fn check(&self, url: &str, target: &Target, ledger: &Path) -> Result<Good, String> {
        self.restore(url, target)?;
        let c = rusqlite::Connection::open_with_flags(
            &self.out,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| format!("cannot open: {e}"))?;
        let ic: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| format!("integrity_check: {e}"))?;
        if ic != "ok" {
            return Err(format!("integrity_check: {ic}"));
        }
        let (seq, stored) = writer::meta(&c).map_err(|e| format!("no hx_meta: {e}"))?;
        let actual = writer::digest(&c).map_err(|e| format!("reading rows: {e}"))?;
        if actual != stored {
            return Err(format!(
                "rows hash to {actual:016x}, the state says {stored:016x} (seq {seq})"
            ));
        }
        let ledger = writer::read_ledger(ledger);
        if !ledger.get(&seq).is_some_and(|d| d.contains(&stored)) {
            return Err(format!(
                "state (seq {seq}, {stored:016x}) was never committed by the app (ledger: {:?})",
                ledger.get(&seq)
            ));
        }
        Ok(Good { seq })
    }

    /// The final state of `url`: `(seq, stored digest, digest of the rows)`.
    pub fn final_state(&self, url: &str) -> Option<(i64, u64, u64)> {
        self.restore(url, &Target::Latest).ok()?;
        let c = rusqlite::Connection::open(&self.out).ok()?;
        let (seq, d) = writer::meta(&c).ok()?;
        Some((seq, d, writer::digest(&c).ok()?))
    }

    /// `(max TXID, created as RFC 3339)` of every file of a replica.
    pub fn listing(&self, url: &str) -> Vec<(String, String)> {
        match self.engine {
            Engine::Litevault => {
                let r = Command::new(self.bin)
                    .args(["ltx", url, "--json"])
                    .envs(self.env.iter().map(|(k, v)| (k, v)))
                    .env("LITEVAULT_LOG", "warn")
                    .output();
                let rows: serde_json::Value = r
                    .ok()
                    .and_then(|r| serde_json::from_slice(&r.stdout).ok())
                    .unwrap_or_default();
                rows.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| {
                                Some((
                                    r["max_txid"].as_str()?.to_string(),
                                    r["created"].as_str()?.to_string(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Engine::Litestream => litestream_listing(url),
        }
    }
}

/// `litestream ltx -level all`: a table of level, min, max, size and
/// creation time (from the files' headers, to the second).
fn litestream_listing(url: &str) -> Vec<(String, String)> {
    let out = Command::new("litestream")
        .args(["ltx", "-level", "all", url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 5).then(|| (cols[2].to_string(), cols[4].to_string()))
        })
        .collect()
}
