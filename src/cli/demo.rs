//! `litevault demo`: the README's first command. Creates a database,
//! replicates it to a local folder while writing, deletes it, restores it and
//! shows that it matches.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::RngExt;

use litevault::content::content_digest;
use litevault::replica::Replica;
use litevault::restore::{RestoreOptions, RestoreOutcome, restore};
use litevault::{ReplicateOptions, Replicator};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Working folder (emptied first).
    #[arg(long, default_value = "litevault-demo")]
    dir: PathBuf,
    /// Transactions to write.
    #[arg(long, default_value_t = 2000)]
    transactions: u32,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.dir.exists() {
        std::fs::remove_dir_all(&a.dir)?;
    }
    std::fs::create_dir_all(&a.dir)?;
    let dir = std::fs::canonicalize(&a.dir)?;
    let db = dir.join("app.db");
    let replica_dir = dir.join("replica");
    let url = format!("file://{}", replica_dir.display());
    println!("1. creating {} (WAL mode)", db.display());
    {
        let c = rusqlite::Connection::open(&db)?;
        c.pragma_update(None, "journal_mode", "wal")?;
        c.execute_batch(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);
             CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER REFERENCES users(id), body TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP);
             CREATE INDEX messages_user ON messages(user_id);",
        )?;
    }
    println!(
        "2. replicating to {url} while writing {} transactions",
        a.transactions
    );
    let replicator =
        Replicator::open(&db, Replica::open(&url)?, ReplicateOptions::default()).await?;
    let replica = replicator.replica().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(replicator.run(async {
        let _ = stop_rx.await;
    }));
    let db2 = db.clone();
    let n = a.transactions;
    let started = Instant::now();
    tokio::task::spawn_blocking(move || write_load(&db2, n)).await??;
    let wrote = started.elapsed();
    let _ = stop_tx.send(());
    task.await??;
    let before = content_digest(&db)?;
    let files = replica.list_all().await?;
    let counts = replica.stats().counts();
    println!(
        "   wrote {n} transactions in {:.2}s; {} LTX files, {} bytes uploaded",
        wrote.as_secs_f64(),
        files.len(),
        counts.bytes_out
    );
    println!(
        "   source: {:?}, sha256 {}",
        before.counts,
        before.sha256.get(..16).unwrap_or(&before.sha256)
    );
    println!("3. deleting the database");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let _ = std::fs::remove_dir_all(dir.join(".app.db-litevault"));
    println!("4. restoring from {url}");
    let outcome = restore(&replica, &db, &RestoreOptions::default()).await?;
    let RestoreOutcome::Restored(report) = outcome else {
        anyhow::bail!("restore did nothing");
    };
    println!(
        "   restored TXID {} from {} file(s) in {} ms, checksum {} verified",
        report.txid,
        report.files.len(),
        report.millis,
        report.checksum
    );
    let after = content_digest(&db)?;
    println!(
        "   restored: {:?}, sha256 {}",
        after.counts,
        after.sha256.get(..16).unwrap_or(&after.sha256)
    );
    if after == before {
        println!("5. MATCH: the restored database equals the source, row for row.");
        println!("   Try: litevault ltx {url}   |   litevault restore {url} -o copy.db --txid 2");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("5. MISMATCH: the restored database differs from the source");
        Ok(ExitCode::FAILURE)
    }
}

/// Inserts, updates, deletes, a schema change and an app-side checkpoint.
fn write_load(db: &std::path::Path, n: u32) -> anyhow::Result<()> {
    let mut c = rusqlite::Connection::open(db)?;
    c.busy_timeout(Duration::from_secs(5))?;
    let mut rng = rand::rng();
    for i in 0..n {
        let tx = c.transaction()?;
        match i % 10 {
            0..=5 => {
                tx.execute(
                    "INSERT INTO users(name, balance) VALUES (?1, ?2)",
                    rusqlite::params![format!("user-{i}"), rng.random_range(0..1000)],
                )?;
                tx.execute(
                    "INSERT INTO messages(user_id, body) VALUES ((SELECT max(id) FROM users), ?1)",
                    [format!("hello from transaction {i}")],
                )?;
            }
            6..=7 => {
                tx.execute(
                    "UPDATE users SET balance = balance + ?1 WHERE id % 7 = ?2",
                    rusqlite::params![rng.random_range(1..50), i % 7],
                )?;
            }
            8 => {
                tx.execute("DELETE FROM messages WHERE id % 13 = ?1", [i % 13])?;
            }
            _ => {
                if i == n / 2 {
                    tx.execute_batch("ALTER TABLE users ADD COLUMN email TEXT")?;
                }
            }
        }
        tx.commit()?;
        if i == n / 3 {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
