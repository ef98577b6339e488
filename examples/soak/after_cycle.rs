//! What the soak does after each cycle: restore and check every replica,
//! count the faults injected, keep the logs worth keeping, and now and then
//! damage the local store for the next replicator to find.

use crate::Soak;
use crate::check::Target;

impl Soak {
    /// Restores and checks the latest state, a past TXID and a past time of
    /// every replica. `at_least`: a seq the latest must hold.
    pub(crate) fn check_all(&mut self, at_least: Option<i64>) {
        let durable = Self::ledger_max(&self.durable);
        for i in 0..self.urls.len() {
            let url = self.urls[i].clone();
            let files = self.restorer("check.db").listing(&url);
            self.counts.max_replica_files = self.counts.max_replica_files.max(files.len() as u64);
            if files.len() > 2_000 {
                self.fail(format!(
                    "replica {i} holds {} files: compaction or retention has stalled",
                    files.len()
                ));
            }
            if files.is_empty() {
                self.counts.restores_skipped_empty += 3;
                if durable > 0 {
                    self.fail(format!(
                        "replica {i} is empty, the app saw seq {durable} acknowledged durable"
                    ));
                }
                continue;
            }
            let (txid, created) = files[self.rng.below(files.len() as u64) as usize].clone();
            // A listing may round down to the second; the file's own time
            // may be up to a second later.
            let at = chrono::DateTime::parse_from_rfc3339(&created)
                .map(|t| (t + chrono::Duration::seconds(1)).to_rfc3339())
                .unwrap_or(created);
            let chosen = txid.clone();
            for target in [Target::Latest, Target::Txid(txid), Target::Time(at)] {
                let r = self.restorer("check.db").check(&url, &target, &self.ledger);
                let label = target.label();
                let seq = match r {
                    Ok(g) => g.seq,
                    Err(e)
                        if !matches!(target, Target::Latest) && e.contains("no restore point") =>
                    {
                        // Retention may have deleted the file after the
                        // listing: a request the killed replicator had
                        // sent can still be carried out by the store. The
                        // file is then gone from a new listing; any other
                        // case is a failure.
                        let now = self.restorer("check.db").listing(&url);
                        if now.iter().any(|(t, _)| *t == chosen) {
                            self.fail(format!("replica {i} {label}: {e}"));
                        } else {
                            self.counts.restores_expired += 1;
                        }
                        continue;
                    }
                    Err(e) => {
                        self.fail(format!("replica {i} {label}: {e}"));
                        continue;
                    }
                };
                self.counts.restores_checked += 1;
                if !matches!(target, Target::Latest) {
                    continue;
                }
                if seq < self.latest_seq[i] {
                    self.fail(format!(
                        "replica {i}: latest went back from seq {} to {seq}",
                        self.latest_seq[i]
                    ));
                }
                self.latest_seq[i] = seq;
                if seq < durable {
                    self.fail(format!(
                        "replica {i}: latest is seq {seq}, behind the acknowledged durable commit {durable}"
                    ));
                }
                if let Some(min) = at_least
                    && seq < min
                {
                    self.fail(format!(
                        "replica {i}: after a clean stop the latest is seq {seq}, the app had committed {min} before the signal"
                    ));
                }
            }
        }
    }

    /// Adds the faults this cycle's replicator injected (its debug log
    /// says each one) to the counts.
    pub(crate) fn count_faults(&mut self, run: u64) {
        if self.a.faults.is_none() {
            return;
        }
        let name = if self.embedded() { "app" } else { "replicate" };
        let log = std::fs::read_to_string(self.log(name, run)).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("fault: injected")) {
            if let Some(kind) = line
                .split("kind=")
                .nth(1)
                .and_then(|k| k.split_whitespace().next())
            {
                let kind = kind.trim_matches('"').to_string();
                *self.counts.faults.entry(kind).or_default() += 1;
            }
        }
    }

    /// Keeps the replicator logs of the last cycles and of every cycle
    /// that failed; a 1,000-cycle run would otherwise fill the disk.
    pub(crate) fn prune_logs(&self, run: u64) {
        const KEEP: u64 = 20;
        let Some(old) = run.checked_sub(KEEP) else {
            return;
        };
        if self.failed_runs.contains(&old) {
            return;
        }
        for name in ["app", "replicate"] {
            let _ = std::fs::remove_file(self.log(name, old));
        }
    }

    /// Truncates or overwrites one file of the local store (beside the
    /// database) at a random offset, as a torn write or a bad disk would:
    /// the next replicator must resync or fail loudly, never publish it.
    pub(crate) fn damage_local_store(&mut self) {
        let root = self.dir.join(".app.db-litevault");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        if files.is_empty() {
            return;
        }
        let f = files[self.rng.below(files.len() as u64) as usize].clone();
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let at = self.rng.below(len.max(1));
        let r = if self.rng.chance(50) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .and_then(|h| h.set_len(at))
        } else {
            use std::io::{Seek, SeekFrom, Write};
            let junk: Vec<u8> = (0..1 + self.rng.below(64))
                .map(|_| self.rng.next() as u8)
                .collect();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .and_then(|mut h| {
                    h.seek(SeekFrom::Start(at))?;
                    h.write_all(&junk)
                })
        };
        if r.is_ok() {
            self.event(&format!("damaged {} at {at} of {len}", f.display()));
            self.counts.local_damage += 1;
        }
    }
}
