//! The deployment files as they ship: `deploy/entrypoint.sh` with
//! `deploy/litevault.yml` and the example app, end to end against a file://
//! replica: boot on an empty volume, write, stop, boot again on a new empty
//! volume, and the data is back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn boot(volume: &Path, replica: &str, port: u16) -> Child {
    let path = format!(
        "{}:{}:{}",
        litevault_bin().parent().unwrap().display(),
        chat_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let db = volume.join("app.db");
    Command::new("sh")
        .arg(repo().join("deploy/entrypoint.sh"))
        .arg("chat")
        .env("PATH", path)
        .env("LITEVAULT_CONFIG", repo().join("deploy/litevault.yml"))
        .env("LITEVAULT_DB", &db)
        .env("LITEVAULT_REPLICA_URL", replica)
        .env("CHAT_MODE", "plain")
        .env("CHAT_DB", &db)
        .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_healthy(port: u16, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok((200, _)) = http_request(port, "GET", "/healthz", None) {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the entrypoint exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the app did not become healthy");
}

#[test]
fn entrypoint_restores_on_boot_and_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let replica = file_url(&dir.path().join("replica"));
    let port = free_port();

    // First deploy: empty volume, empty replica.
    let volume = dir.path().join("volume-1");
    let mut app = boot(&volume, &replica, port);
    wait_healthy(port, &mut app);
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
    let mut app = boot(&volume, &replica, port);
    wait_healthy(port, &mut app);
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
    let mut app = boot(&volume, &replica, port);
    wait_healthy(port, &mut app);
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
