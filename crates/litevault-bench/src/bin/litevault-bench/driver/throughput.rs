//! `embedded-driver throughput`: single-row commits per second by one
//! writer with the vault replicating ("on") and on a plain rusqlite
//! connection with the same pragmas, with and without SQLite's automatic
//! checkpoints ("off", "off, no checkpoints"); rounds interleaved, the first
//! mode rotating. CPU time of the writer thread and of the rest of the
//! process is recorded per round.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Ctx, close, ms, puts};
use crate::figures::ThroughputRun;
use crate::format::mean;

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

/// `s3://bucket/prefix?query` with `/sub` appended to the prefix.
fn with_subprefix(url: &str, sub: &str) -> String {
    match url.split_once('?') {
        Some((base, q)) => format!("{}/{sub}?{q}", base.trim_end_matches('/')),
        None => format!("{}/{sub}", url.trim_end_matches('/')),
    }
}

pub(super) async fn run(
    ctx: &Ctx,
    url: &str,
    seconds: f64,
    rounds: usize,
    dir: &Path,
) -> anyhow::Result<ThroughputRun> {
    let secs = Duration::from_secs_f64(seconds);
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut off_nockpt = Vec::new();
    // Writer thread CPU seconds per wall second, per mode.
    let mut cpu_share: BTreeMap<String, Vec<f64>> = BTreeMap::new();
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
    Ok(ThroughputRun {
        what: "throughput".into(),
        seconds_per_round: seconds,
        rounds,
        off_nockpt_mean: mean(&off_nockpt),
        on_over_off_nockpt: mean(&on) / mean(&off_nockpt),
        on_mean: mean(&on),
        off_mean: mean(&off),
        on_over_off: mean(&on) / mean(&off),
        on_commits_per_s: on,
        off_commits_per_s: off,
        off_nockpt_commits_per_s: off_nockpt,
        drain_after_round_ms: drains,
        writer_cpu_per_wall_s: cpu_share,
        replicator_cpu_per_wall_s_on: other_cpu,
        puts_per_round_on: puts_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_gets_its_own_prefix() {
        assert_eq!(
            with_subprefix("s3://b/tp/?endpoint=http://h:1&region=r", "tp-0"),
            "s3://b/tp/tp-0?endpoint=http://h:1&region=r"
        );
        assert_eq!(
            with_subprefix("file:///tmp/r", "tp-2"),
            "file:///tmp/r/tp-2"
        );
    }
}
