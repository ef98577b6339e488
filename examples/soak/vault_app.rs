//! The app of the embedded mode: the same transactions as the sidecar's
//! writer, made through a [`Vault`] with durable commits. After each
//! commit it appends `seq digest` to the commit ledger, and after each
//! durable commit the replicas acknowledged, to the durable ledger too: no
//! restore may ever come back behind an acknowledged durable commit.
//!
//! SIGTERM closes the vault (final sync) and exits 0; SIGKILL takes the app
//! and its replicator down together, as a crash does.

use std::path::PathBuf;
use std::time::Duration;

use litevault::replicate::RetentionOptions;
use litevault::{Vault, VaultError, VaultOptions};

use crate::rng::Rng;
use crate::writer;

pub struct VaultArgs {
    pub db: PathBuf,
    pub ledger: PathBuf,
    pub durable: PathBuf,
    pub seed: u64,
    pub stop: PathBuf,
    pub urls: Vec<String>,
}

/// Replication settings as short as the sidecar's, so that compaction,
/// snapshots and retention run (and are interrupted) within a cycle.
fn options() -> VaultOptions {
    let mut o = VaultOptions::default();
    o.replicate.retention = RetentionOptions {
        levels: vec![Duration::from_secs(2), Duration::from_secs(10)],
        snapshot_interval: Some(Duration::from_secs(15)),
        snapshot_retention: Duration::from_secs(40),
        l0_retention: Duration::from_secs(4),
        ..RetentionOptions::default()
    };
    if let Some(l) = &mut o.replicate.lease {
        // The previous app was killed while it held the lease.
        l.takeover = true;
    }
    o.durable_timeout = Duration::from_secs(5);
    o
}

pub fn run(a: VaultArgs) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(app(a))
}

async fn app(a: VaultArgs) -> Result<(), String> {
    // Before anything else: a SIGTERM during the start must also end in a
    // clean close.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut b = Vault::open(&a.db);
    for u in &a.urls {
        b = b.replicate_to(u).map_err(|e| e.to_string())?;
    }
    let vault = b
        .options(options())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let (mut seq, mut d) = {
        let c = vault.writer().await;
        c.pragma_update(None, "cache_size", 200)
            .map_err(|e| e.to_string())?;
        writer::meta(&c).map_err(|e| e.to_string())?
    };
    writer::record(&a.ledger, seq, d).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(a.seed ^ writer::nonce());
    while !a.stop.exists() {
        let durable = vault.transaction_durable(|tx| writer::transaction(tx, &mut rng, seq, d));
        let result = tokio::select! {
            r = durable => r,
            _ = term.recv() => break,
        };
        match result {
            Ok(next) => {
                seq += 1;
                d = next;
                writer::record(&a.ledger, seq, d).map_err(|e| e.to_string())?;
                writer::record(&a.durable, seq, d).map_err(|e| e.to_string())?;
            }
            Err(VaultError::NotYetReplicated { .. }) => {
                // Committed locally, not acknowledged: in the commit ledger
                // only.
                let c = vault.writer().await;
                (seq, d) = writer::meta(&c).map_err(|e| e.to_string())?;
                writer::record(&a.ledger, seq, d).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        {
            let c = vault.writer().await;
            writer::maintenance(&c, &mut rng);
        }
        tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    }
    // A transaction interrupted by SIGTERM may have committed before its
    // wait: the ledger gets the state the database holds.
    {
        let c = vault.writer().await;
        let (s, dd) = writer::meta(&c).map_err(|e| e.to_string())?;
        writer::record(&a.ledger, s, dd).map_err(|e| e.to_string())?;
    }
    vault.close().await.map_err(|e| e.to_string())
}
