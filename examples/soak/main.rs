//! The kill/restart soak: litevault replicating an app that never stops
//! writing, killed and restarted at random moments, every published state
//! restored and checked against the app's own ledger.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example soak -- --cycles 1000 --seed 7 --mode file
//! ```
//!
//! Modes: `file` (sidecar, file:// replica), `s3` (sidecar, a moto S3
//! server on 127.0.0.1), `multi` (sidecar, two replicas: file:// and a
//! second file:// folder). Each cycle starts `litevault replicate`, lets it
//! run 0.2 to 3 s while the app writes, then stops it (SIGKILL, or SIGTERM
//! a third of the time) and, now and then, SIGKILLs the app's writer too,
//! mid-transaction or not. After every cycle it restores the latest state,
//! a random past TXID and a random past time of every replica: each must
//! restore (integrity_check passes), its rows must hash to the digest it
//! carries, its `(seq, digest)` must be a state the ledger says the app
//! committed, the latest must never go backwards, and after a SIGTERM it
//! must hold every transaction committed before the signal. At the end the
//! app stops, one last replicate ships everything, and the latest state
//! must equal the app's database exactly.
//!
//! Prints one JSON line with the counts, and exits 1 on any failure.

mod rng;
mod writer;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rng::Rng;

struct Args {
    cycles: u64,
    seed: u64,
    mode: String,
    work: Option<PathBuf>,
    bin: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak [--cycles N] [--seed N] [--mode file|s3|multi] [--work DIR] [--bin PATH-TO-litevault]\n       soak writer DB LEDGER SEED STOPFILE"
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
            _ => usage(),
        }
    }
    if !["file", "s3", "multi"].contains(&a.mode.as_str()) {
        usage()
    }
    if !a.bin.exists() {
        eprintln!(
            "soak: {} does not exist; build it first (cargo build [--release]) or pass --bin",
            a.bin.display()
        );
        std::process::exit(2);
    }
    a
}

/// What the soak counted.
#[derive(Default, serde::Serialize)]
struct Counts {
    mode: String,
    seed: u64,
    cycles: u64,
    sigkill: u64,
    sigterm: u64,
    writer_kills: u64,
    restores_checked: u64,
    restores_skipped_empty: u64,
    failures: u64,
    app_transactions: i64,
    final_state_exact: bool,
    seconds: f64,
}

/// A moto S3 server on 127.0.0.1, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "PUT", "/soak").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto did not start: pip install 'moto[server]'"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

struct Soak {
    a: Args,
    dir: PathBuf,
    db: PathBuf,
    ledger: PathBuf,
    stop: PathBuf,
    urls: Vec<String>,
    env: Vec<(String, String)>,
    rng: Rng,
    counts: Counts,
    writer: Option<Child>,
    latest_seq: Vec<i64>,
    failures: Vec<String>,
}

impl Soak {
    fn litevault(&self) -> Command {
        let mut c = Command::new(&self.a.bin);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
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
            .spawn()
            .expect("spawn the writer");
        self.writer = Some(child);
    }

    fn replicate(&self, run: u64) -> Child {
        let log =
            std::fs::File::create(self.dir.join(format!("logs/replicate-{run:04}.log"))).unwrap();
        let mut c = self.litevault();
        c.arg("replicate")
            .arg(&self.db)
            .args(&self.urls)
            // Short intervals, so compaction, snapshots and retention all
            // run (and are interrupted) within the soak's cycles.
            .args(["--levels", "2s,10s", "--snapshot-interval", "15s"])
            .args(["--snapshot-retention", "40s", "--l0-retention", "4s"])
            .args(["--takeover"])
            .env("LITEVAULT_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        c.spawn().expect("spawn litevault replicate")
    }

    /// The highest seq the ledger holds.
    fn ledger_max(&self) -> i64 {
        writer::read_ledger(&self.ledger)
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    fn fail(&mut self, what: String) {
        eprintln!("FAIL cycle {}: {what}", self.counts.cycles);
        self.failures.push(what);
        self.counts.failures += 1;
    }

    /// Restores `target` of replica `i` and checks it; returns its seq.
    fn check(&mut self, i: usize, target: &[&str], label: &str) -> Option<i64> {
        let out = self.dir.join("check.db");
        let _ = std::fs::remove_file(&out);
        let r = self
            .litevault()
            .arg("restore")
            .arg(&self.urls[i])
            .arg("-o")
            .arg(&out)
            .args(target)
            .env("LITEVAULT_LOG", "warn")
            .output()
            .expect("run litevault restore");
        if !r.status.success() {
            let msg = String::from_utf8_lossy(&r.stderr).trim().to_string();
            if msg.contains("no files")
                || msg.contains("is empty")
                || msg.contains("nothing to restore")
            {
                self.counts.restores_skipped_empty += 1;
                return None;
            }
            self.fail(format!("replica {i} {label}: restore failed: {msg}"));
            return None;
        }
        self.counts.restores_checked += 1;
        let c = match rusqlite::Connection::open_with_flags(
            &out,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) {
            Ok(c) => c,
            Err(e) => {
                self.fail(format!("replica {i} {label}: cannot open: {e}"));
                return None;
            }
        };
        let (seq, stored) = match writer::meta(&c) {
            Ok(m) => m,
            Err(e) => {
                self.fail(format!("replica {i} {label}: no hx_meta: {e}"));
                return None;
            }
        };
        let actual = writer::digest(&c).unwrap_or(0);
        if actual != stored {
            self.fail(format!(
                "replica {i} {label}: rows hash to {actual:016x}, the state says {stored:016x} (seq {seq})"
            ));
            return Some(seq);
        }
        let ledger = writer::read_ledger(&self.ledger);
        if !ledger.get(&seq).is_some_and(|d| d.contains(&stored)) {
            self.fail(format!(
                "replica {i} {label}: state (seq {seq}, {stored:016x}) was never committed by the app (ledger: {:?})",
                ledger.get(&seq)
            ));
        }
        Some(seq)
    }

    /// Restores and checks the latest state, a past TXID and a past time of
    /// every replica. `at_least`: a seq the latest must hold.
    fn check_all(&mut self, at_least: Option<i64>) {
        for i in 0..self.urls.len() {
            if let Some(seq) = self.check(i, &[], "latest") {
                if seq < self.latest_seq[i] {
                    self.fail(format!(
                        "replica {i}: latest went back from seq {} to {seq}",
                        self.latest_seq[i]
                    ));
                }
                self.latest_seq[i] = seq;
                if let Some(min) = at_least
                    && seq < min
                {
                    self.fail(format!(
                        "replica {i}: after a clean stop the latest is seq {seq}, the app had committed {min} before the signal"
                    ));
                }
            }
            let files = self.listing(i);
            if files.is_empty() {
                continue;
            }
            let (txid, created) = &files[self.rng.below(files.len() as u64) as usize];
            let txid = txid.clone();
            self.check(i, &["--txid", &txid], &format!("TXID {txid}"));
            // The listing rounds down to the second; the file's own time
            // may be up to a second later.
            let at = chrono::DateTime::parse_from_rfc3339(created)
                .map(|t| (t + chrono::Duration::seconds(1)).to_rfc3339())
                .unwrap_or_else(|_| created.clone());
            self.check(i, &["--timestamp", &at], &format!("time {at}"));
        }
    }

    /// `(max TXID, created)` of every file of replica `i`.
    fn listing(&mut self, i: usize) -> Vec<(String, String)> {
        let r = self
            .litevault()
            .args(["ltx", &self.urls[i], "--json"])
            .env("LITEVAULT_LOG", "warn")
            .output()
            .expect("run litevault ltx");
        let rows: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap_or_default();
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

    fn cycle(&mut self, run: u64) {
        self.start_writer();
        let mut rep = self.replicate(run);
        std::thread::sleep(Duration::from_millis(200 + self.rng.below(2_800)));
        if self.rng.chance(15) {
            // The app dies too, mid-transaction or not.
            if let Some(w) = &mut self.writer {
                let _ = w.kill();
                let _ = w.wait();
            }
            self.counts.writer_kills += 1;
        }
        let mut at_least = None;
        if self.rng.chance(30) {
            at_least = Some(self.ledger_max());
            signal(&rep, "TERM");
            self.counts.sigterm += 1;
            let deadline = Instant::now() + Duration::from_secs(60);
            while rep.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    self.fail("replicate did not stop within 60 s of SIGTERM".into());
                    let _ = rep.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            match rep.wait() {
                Ok(s) if s.success() => {}
                Ok(s) => {
                    let log = std::fs::read_to_string(
                        self.dir.join(format!("logs/replicate-{run:04}.log")),
                    )
                    .unwrap_or_default();
                    let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                    self.fail(format!("replicate exited with {s} after SIGTERM: {tail}"));
                }
                Err(e) => self.fail(format!("waiting for replicate: {e}")),
            }
        } else {
            let _ = rep.kill();
            let _ = rep.wait();
            self.counts.sigkill += 1;
        }
        self.check_all(at_least);
        self.counts.cycles += 1;
    }

    fn finish(&mut self) {
        std::fs::write(&self.stop, b"stop").unwrap();
        if let Some(mut w) = self.writer.take() {
            let _ = w.wait();
        }
        let r = self
            .litevault()
            .arg("replicate")
            .arg("--once")
            .arg("--takeover")
            .arg(&self.db)
            .args(&self.urls)
            .env("LITEVAULT_LOG", "warn")
            .output()
            .expect("run litevault replicate --once");
        if !r.status.success() {
            let msg = String::from_utf8_lossy(&r.stderr).to_string();
            self.fail(format!("final replicate --once: {msg}"));
        }
        let app = rusqlite::Connection::open(&self.db).unwrap();
        let (seq, d) = writer::meta(&app).unwrap();
        self.counts.app_transactions = seq;
        let mut exact = true;
        for i in 0..self.urls.len() {
            let out = self.dir.join("final.db");
            let _ = std::fs::remove_file(&out);
            let ok = self
                .litevault()
                .arg("restore")
                .arg(&self.urls[i])
                .arg("-o")
                .arg(&out)
                .env("LITEVAULT_LOG", "warn")
                .status()
                .is_ok_and(|s| s.success());
            let got = ok
                .then(|| {
                    let c = rusqlite::Connection::open(&out).ok()?;
                    Some((writer::meta(&c).ok()?, writer::digest(&c).ok()?))
                })
                .flatten();
            if got != Some(((seq, d), d)) {
                exact = false;
                self.fail(format!(
                    "replica {i}: the final state {got:?} is not the app's (seq {seq}, {d:016x})"
                ));
            }
        }
        self.counts.final_state_exact = exact;
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("writer") {
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
    let a = parse_args();
    let started = Instant::now();
    let (dir, _tmp) = match &a.work {
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
    let (urls, env) = match a.mode.as_str() {
        "file" => (
            vec![format!("file://{}", dir.join("replica").display())],
            vec![],
        ),
        "multi" => (
            vec![
                format!("file://{}", dir.join("replica").display()),
                format!("file://{}", dir.join("replica-2").display()),
            ],
            vec![],
        ),
        _ => {
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
    };
    let n = urls.len();
    let mut s = Soak {
        counts: Counts {
            mode: a.mode.clone(),
            seed: a.seed,
            ..Default::default()
        },
        rng: Rng::new(a.seed),
        ledger: dir.join("ledger.txt"),
        stop: dir.join("stop"),
        db,
        dir,
        urls,
        env,
        writer: None,
        latest_seq: vec![0; n],
        failures: Vec::new(),
        a,
    };
    for run in 0..s.a.cycles {
        s.cycle(run);
    }
    s.finish();
    s.counts.seconds = started.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string(&s.counts).unwrap());
    drop(moto);
    if !s.failures.is_empty() {
        eprintln!(
            "{} failures; work folder: {}",
            s.failures.len(),
            s.dir.display()
        );
        if let Some(t) = _tmp {
            // Keep the evidence.
            let _ = t.keep();
        }
        std::process::exit(1);
    }
}
