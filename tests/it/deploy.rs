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

/// Boots the entrypoint on `volume`; returns it and the app's port. The
/// app binds port 0 (a port the system picks, nothing else can take it)
/// and prints the address it got, which the test reads from the output.
fn boot(volume: &Path, replica: &str) -> (Child, u16, Output) {
    let path = format!(
        "{}:{}:{}",
        litevault_bin().parent().unwrap().display(),
        chat_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let db = volume.join("app.db");
    let mut child = Command::new("sh")
        .arg(repo().join("deploy/entrypoint.sh"))
        .arg("chat")
        .env("PATH", path)
        .env("LITEVAULT_CONFIG", repo().join("deploy/litevault.yml"))
        .env("LITEVAULT_DB", &db)
        .env("LITEVAULT_REPLICA_URL", replica)
        .env("CHAT_MODE", "plain")
        .env("CHAT_DB", &db)
        .env("CHAT_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::capture(child.stderr.take().unwrap());
    // "chat (plain) on http://127.0.0.1:PORT, database ..."
    let marker = "chat (plain) on http://127.0.0.1:";
    let line = out.wait_for_line(WAIT, marker);
    let port = line[line.find(marker).unwrap() + marker.len()..]
        .split(',')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in the app's line {line:?}"));
    wait_healthy(port, &mut child, &out);
    (child, port, out)
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
