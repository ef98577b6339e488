//! The deployment files as they ship: `deploy/entrypoint.sh` with
//! `deploy/litevault.yml` and the example app, end to end against a file://
//! replica: boot on an empty volume, write, stop, boot again on a new empty
//! volume, and the data is back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example app, built next to the litevault binary by `cargo test
/// --all-targets` / nextest.
fn chat_bin_dir() -> PathBuf {
    let dir = litevault_bin()
        .parent()
        .expect("target dir")
        .join("examples");
    assert!(
        dir.join("chat").exists(),
        "the chat example is not built: run `cargo build --example chat` (cargo nextest run --all-targets builds it)"
    );
    dir
}

/// An entrypoint started with the example app.
struct Instance {
    child: Child,
    out: Output,
}

/// Starts `entrypoint.sh chat` on `volume` with the files of `image` (the
/// entrypoint, the config and the binaries on its PATH); `env` adds
/// variables. The app binds port 0 (a port the system picks, nothing else
/// can take it) and prints the address it got.
fn spawn_in(image: &Image, volume: &Path, replica: &str, env: &[(&str, &str)]) -> Instance {
    let path = format!(
        "{}:{}",
        image.path.join(":"),
        std::env::var("PATH").unwrap_or_default()
    );
    let db = volume.join("app.db");
    let mut c = Command::new("sh");
    c.arg(&image.entrypoint)
        .arg("chat")
        .env("PATH", path)
        .env("LITEVAULT_CONFIG", &image.config)
        .env("LITEVAULT_DB", &db)
        .env("LITEVAULT_REPLICA_URL", replica)
        .env("CHAT_MODE", "plain")
        .env("CHAT_DB", &db)
        .env("CHAT_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let out = Output::capture(child.stderr.take().unwrap());
    Instance { child, out }
}

/// The files the container image holds, as they are in this checkout.
struct Image {
    entrypoint: PathBuf,
    config: PathBuf,
    path: Vec<String>,
}

impl Image {
    fn checkout() -> Image {
        Image {
            entrypoint: repo().join("deploy/entrypoint.sh"),
            config: repo().join("deploy/litevault.yml"),
            path: vec![
                litevault_bin().parent().unwrap().display().to_string(),
                chat_bin_dir().display().to_string(),
            ],
        }
    }
}

impl Instance {
    /// Waits for the app to listen and answer /healthz; returns its port.
    fn app_port(&mut self) -> u16 {
        // "chat (plain) on http://127.0.0.1:PORT, database ..."
        let marker = "chat (plain) on http://127.0.0.1:";
        let line = self.out.wait_for_line(WAIT, marker);
        let port = line[line.find(marker).unwrap() + marker.len()..]
            .split(',')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the app's line {line:?}"));
        wait_healthy(port, &mut self.child, &self.out);
        port
    }

    /// SIGTERM, as the platform stops an instance; the exit must be clean.
    fn stop(mut self) {
        signal(&self.child, "TERM");
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "exit status {status}\n{}",
            self.out.text()
        );
    }
}

/// Boots the entrypoint on `volume`; returns it and the app's port.
fn boot(volume: &Path, replica: &str) -> (Child, u16, Output) {
    let mut i = spawn_in(&Image::checkout(), volume, replica, &[]);
    let port = i.app_port();
    (i.child, port, i.out)
}

fn wait_healthy(port: u16, child: &mut Child, out: &Output) {
    wait_until(WAIT, "the app to answer /healthz with 200", || {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the entrypoint exited early: {st}\n{}", out.text());
        }
        http_request(port, "GET", "/healthz", None)
            .map(|(code, _)| code == 200)
            .unwrap_or(false)
    });
}

#[test]
fn entrypoint_restores_on_boot_and_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let replica = file_url(&dir.path().join("replica"));

    // First deploy: empty volume, empty replica.
    let volume = dir.path().join("volume-1");
    let (mut app, port, _out) = boot(&volume, &replica);
    let (code, body) =
        http_request(port, "POST", "/conversations", Some(r#"{"title":"ops"}"#)).unwrap();
    assert_eq!(code, 200, "{body}");
    for i in 0..30 {
        let msg = format!(r#"{{"author":"user{}","body":"message {i}"}}"#, i % 3);
        let (code, body) =
            http_request(port, "POST", "/conversations/1/messages", Some(&msg)).unwrap();
        assert_eq!(code, 200, "{body}");
    }
    // The platform stops the machine (SIGTERM): the app exits, litevault
    // ships what is left and exits with the app's code.
    signal(&app, "TERM");
    let status = app.wait().unwrap();
    assert!(status.success(), "exit status {status}");

    let shipped = std::fs::read_dir(dir.path().join("replica/ltx/0"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(shipped > 0, "the replica holds the first deploy's files");

    // Next deploy: a new, empty volume. The data comes back from the replica.
    let volume = dir.path().join("volume-2");
    assert!(!volume.exists());
    let (mut app, port, _out) = boot(&volume, &replica);
    let (code, body) = http_request(port, "GET", "/conversations/1", None).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["title"], "ops");
    assert_eq!(v["message_count"], 30, "{v}");
    // And it keeps replicating: one more message survives a third boot.
    let (code, _) = http_request(
        port,
        "POST",
        "/conversations/1/messages",
        Some(r#"{"author":"late","body":"after the restore"}"#),
    )
    .unwrap();
    assert_eq!(code, 200);
    signal(&app, "TERM");
    assert!(app.wait().unwrap().success());
    let volume = dir.path().join("volume-3");
    let (mut app, port, _out) = boot(&volume, &replica);
    let (_, body) = http_request(port, "GET", "/conversations/1", None).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message_count"], 31, "{v}");
    signal(&app, "TERM");
    assert!(app.wait().unwrap().success());
}

#[test]
fn entrypoint_without_a_replica_url_says_what_to_set() {
    let o = Command::new("sh")
        .arg(repo().join("deploy/entrypoint.sh"))
        .env_remove("LITEVAULT_REPLICA_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("LITEVAULT_REPLICA_URL"));
}

/// The bodies of the messages in a chat database.
fn message_bodies(db: &Path) -> std::collections::HashSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT body FROM messages").unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// One acknowledged write: its message number, which instance took it, when.
struct Ack {
    n: u64,
    port: u16,
    at: std::time::Instant,
}

/// Posts numbered messages to whichever port `target` holds, one after the
/// other, into `acks`, until `stop`; a request that fails (the instance is
/// stopping, or not there yet) is tried again, as a client behind a load
/// balancer would.
fn write_until(
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acks: std::sync::Arc<std::sync::Mutex<Vec<Ack>>>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let port = target.load(Ordering::SeqCst);
            let msg = format!(r#"{{"author":"writer","body":"m{n}"}}"#);
            match http_request(port, "POST", "/conversations/1/messages", Some(&msg)) {
                Ok((200, _)) => {
                    acks.lock().unwrap().push(Ack {
                        n,
                        port,
                        at: std::time::Instant::now(),
                    });
                    n += 1;
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    })
}

/// A blue-green deploy: the new instance starts while the old one still
/// writes and holds the replica's lease. It restores on boot, waits for the
/// lease (LITEVAULT_LEASE_WAIT), and once the old instance's SIGTERM stop
/// has shipped its last commits and released the lease, restores what came
/// after its boot-time restore before its app starts. Every acknowledged
/// write is in the new instance's database and in the replica; the write
/// pause it cost is printed (BENCHMARKS.md, "Deploys").
#[test]
fn an_overlapping_deploy_hands_over_without_losing_a_write() {
    overlapping_deploy(false);
}

/// The same on a platform that stops the old instance only once the new
/// one passes a TCP startup probe (Cloud Run): a placeholder on the app's
/// port (LITEVAULT_PLACEHOLDER_ADDR) answers 503 with Retry-After while the
/// new instance waits and catches up; traffic moves to it at once.
#[test]
fn a_cloud_run_style_deploy_hands_over_behind_a_placeholder() {
    overlapping_deploy(true);
}

fn overlapping_deploy(placeholder: bool) {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let replica = file_url(&dir.path().join("replica"));
    let image = Image::checkout();
    let mut old = spawn_in(&image, &dir.path().join("volume-old"), &replica, &[]);
    let old_port = old.app_port();
    let (code, body) = http_request(
        old_port,
        "POST",
        "/conversations",
        Some(r#"{"title":"deploy"}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");

    let target = Arc::new(AtomicU16::new(old_port));
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = write_until(target.clone(), stop.clone(), acks.clone());
    std::thread::sleep(Duration::from_millis(500));

    // The new instance starts beside the old one, on its own volume.
    let addr = placeholder.then(|| format!("127.0.0.1:{}", free_port()));
    let mut env = vec![("LITEVAULT_LEASE_WAIT", "60s")];
    if let Some(a) = &addr {
        env.push(("LITEVAULT_PLACEHOLDER_ADDR", a));
        env.push(("CHAT_ADDR", a));
    }
    let mut new = spawn_in(&image, &dir.path().join("volume-new"), &replica, &env);
    new.out.wait_for_line(WAIT, "waiting for its release");
    let new_waits = Instant::now();
    // The old one goes on taking writes that the new one's boot-time
    // restore did not see.
    std::thread::sleep(Duration::from_millis(700));
    if let Some(a) = &addr {
        // What a request meets there meanwhile.
        let mut s = std::net::TcpStream::connect(a.as_str()).unwrap();
        s.write_all(b"GET /conversations/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 503") && reply.contains("Retry-After: 1"),
            "{reply}"
        );
        // The probe passed: traffic moves to the new instance.
        target.store(
            a.rsplit(':').next().unwrap().parse().unwrap(),
            Ordering::SeqCst,
        );
    }
    let terminated = Instant::now();
    old.stop();
    let new_port = new.app_port();
    target.store(new_port, Ordering::SeqCst);
    let taken_by_new = || {
        let a = acks.lock().unwrap();
        a.iter().filter(|a| a.port == new_port).count()
    };
    wait_until(WAIT, "20 writes acknowledged by the new instance", || {
        taken_by_new() >= 20
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    new.out.wait_for_line(WAIT, "is behind its replica");
    new.stop();

    let on_old: Vec<&Ack> = acks.iter().filter(|a| a.port == old_port).collect();
    let on_new: Vec<&Ack> = acks.iter().filter(|a| a.port == new_port).collect();
    assert!(
        on_old.len() > 20 && on_new.len() >= 20,
        "old {} new {}",
        on_old.len(),
        on_new.len()
    );
    assert!(
        on_old.iter().any(|a| a.at > new_waits),
        "the old instance took no write after the new one restored on boot"
    );
    let in_db = message_bodies(&dir.path().join("volume-new/app.db"));
    let restored = dir.path().join("restored.db");
    let st = Command::new(litevault_bin())
        .args(["restore", "-o"])
        .arg(&restored)
        .arg(&replica)
        .env("LITEVAULT_LOG", "warn")
        .status()
        .unwrap();
    assert!(st.success());
    let in_replica = message_bodies(&restored);
    for a in &acks {
        let b = format!("m{}", a.n);
        assert!(
            in_db.contains(&b),
            "acknowledged write {b} is not in the new instance's database"
        );
        assert!(
            in_replica.contains(&b),
            "acknowledged write {b} is not in the replica"
        );
    }
    let last_old = on_old.last().unwrap().at;
    let first_new = on_new.first().unwrap().at;
    println!(
        "{}: {} writes acknowledged ({} by the old instance, {} by the new), none lost; \
         write pause {:?} (last write on the old instance to first on the new), {:?} from the old one's SIGTERM",
        if placeholder {
            "behind a placeholder"
        } else {
            "blue-green"
        },
        acks.len(),
        on_old.len(),
        on_new.len(),
        first_new.duration_since(last_old),
        first_new.duration_since(terminated),
    );
}

/// The image starts as root on a volume mounted root-owned (Fly.io,
/// Docker): the entrypoint hands the database's directory to
/// LITEVAULT_USER and runs litevault and the app as that user, with no
/// capabilities.
#[test]
#[ignore = "needs root to start the entrypoint as root: run scripts/test.sh"]
fn on_a_root_owned_volume_litevault_and_the_app_run_unprivileged() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    needs("root to start the entrypoint as root");
    let id = |args: &[&str]| -> u32 {
        let o = Command::new("id").args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    assert_eq!(
        id(&["-u"]),
        0,
        "this test starts the entrypoint as root, as a container does: run it as root (scripts/test.sh does in CI)"
    );
    let (uid, gid) = (id(&["-u", "nobody"]), id(&["-g", "nobody"]));

    // The image's files where the unprivileged user can read them (the
    // checkout and the target directory may not be open to it).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for src in [
        litevault_bin(),
        chat_bin_dir().join("chat"),
        repo().join("deploy/entrypoint.sh"),
        repo().join("deploy/litevault.yml"),
    ] {
        let to = bin.join(src.file_name().unwrap());
        if std::fs::hard_link(&src, &to).is_err() {
            std::fs::copy(&src, &to).unwrap();
        }
    }
    let image = Image {
        entrypoint: bin.join("entrypoint.sh"),
        config: bin.join("litevault.yml"),
        path: vec![bin.display().to_string()],
    };
    // The replica (a bucket in production) is the user's to write.
    let rdir = dir.path().join("replica");
    std::fs::create_dir(&rdir).unwrap();
    std::os::unix::fs::chown(&rdir, Some(uid), Some(gid)).unwrap();
    let replica = file_url(&rdir);
    // The volume, as mounted: root's, not writable by anyone else.
    let volume = dir.path().join("data");
    std::fs::create_dir(&volume).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(std::fs::metadata(&volume).unwrap().uid(), 0);

    let env = [("LITEVAULT_USER", "nobody")];
    let mut first = spawn_in(&image, &volume, &replica, &env);
    let port = first.app_port();
    // The process the platform started is litevault now, as nobody, with
    // no capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", first.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), vec![uid.to_string(); 4], "{status}");
    assert_eq!(field("Gid:"), vec![gid.to_string(); 4], "{status}");
    assert_eq!(field("CapEff:"), vec!["0000000000000000"], "{status}");
    assert_eq!(field("CapBnd:"), vec!["0000000000000000"], "{status}");
    let (code, body) = http_request(
        port,
        "POST",
        "/conversations",
        Some(r#"{"title":"root volume"}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    first.stop();
    for p in [volume.clone(), volume.join("app.db")] {
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (uid, gid),
            "{} is not the user's",
            p.display()
        );
    }
    assert!(rdir.join("ltx/0").read_dir().unwrap().next().is_some());

    // A second boot on the same volume (already the user's) goes on.
    let mut second = spawn_in(&image, &volume, &replica, &env);
    let port = second.app_port();
    let (code, body) = http_request(port, "GET", "/conversations/1", None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("root volume"), "{body}");
    second.stop();

    // An unknown user is named, with the fix.
    let o = Command::new("sh")
        .arg(&image.entrypoint)
        .env("LITEVAULT_REPLICA_URL", &replica)
        .env("LITEVAULT_DB", volume.join("app.db"))
        .env("LITEVAULT_USER", "no-such-user-here")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(67));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such-user-here") && err.contains("useradd"),
        "{err}"
    );
}
