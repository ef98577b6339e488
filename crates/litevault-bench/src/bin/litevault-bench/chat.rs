//! `embedded chat`: the example app (`examples/chat.rs`) under wrk, a read
//! endpoint and a write endpoint, with replication off (`CHAT_MODE=plain`)
//! and on (`CHAT_MODE=embedded`, a replica on the lab's S3 server), rounds
//! interleaved, plus durable writes (`?durable=true`) with replication on.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use litevault_bench::lab::{self, ACCESS_KEY_ID, Lab, SECRET_ACCESS_KEY, Spawned};
use serde_json::json;

use crate::common::{fresh_dir, progress, wait_for};
use crate::embedded::{Args, lab_options};
use crate::figures::{ChatRun, Wrk};
use crate::tables::chat_table;
use crate::tools::which;

const WRK_POST: &str = r#"wrk.method = "POST"
wrk.body = '{"author":"bench","body":"hello from wrk, a message of some length"}'
wrk.headers["Content-Type"] = "application/json"
"#;

/// One wrk run against `url`; its output is appended to `log`.
fn wrk(
    url: &str,
    seconds: u64,
    conns: usize,
    script: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<Wrk> {
    let mut args = vec![
        "-t2".to_string(),
        format!("-c{conns}"),
        format!("-d{seconds}s"),
        "--latency".into(),
    ];
    if let Some(s) = script {
        args.extend(["-s".into(), s.display().to_string()]);
    }
    args.push(url.into());
    let out_path = dir.join("wrk.out");
    let out = std::fs::File::create(&out_path)?;
    let mut cmd = Command::new("wrk");
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let ended = Spawned::start(&mut cmd, "wrk")?.wait(Duration::from_secs(seconds + 60));
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let log = dir.join("wrk.log");
    let mut all = std::fs::read_to_string(&log).unwrap_or_default();
    all.push_str(&format!("$ wrk {}\n{text}\n", args.join(" ")));
    std::fs::write(&log, all)?;
    if ended.code != 0 {
        bail!("wrk failed ({}); see {}", ended.code, log.display());
    }
    crate::wrk::parse(&text).with_context(|| format!("see {}", log.display()))
}

/// A request to the app; the status and the JSON object it answered (empty
/// for another answer).
fn chat_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let data = body.map(|b| b.to_string()).unwrap_or_default();
    let (code, raw) = lab::http::request(
        port,
        method,
        path,
        Some(("application/json", data.as_bytes())),
        Duration::from_secs(30),
    )?;
    let v = if raw.starts_with(b"{") {
        serde_json::from_slice(&raw).unwrap_or(json!({}))
    } else {
        json!({})
    };
    Ok((code, v))
}

fn chat_run(
    args: &Args,
    chat: &Path,
    mode: &str,
    d: &Path,
    lab: &Lab,
    round: usize,
) -> anyhow::Result<ChatRun> {
    let d = fresh_dir(d)?;
    let log_path = d.join("chat.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(chat);
    // Port 0: the app binds a port the system picks and logs its address.
    cmd.env("CHAT_MODE", mode)
        .env("CHAT_DB", d.join("chat.db"))
        .env("CHAT_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if mode == "embedded" {
        let name = d.file_name().unwrap_or_default().to_string_lossy();
        cmd.env(
            "CHAT_REPLICA",
            lab.replica_url(&format!("chat-{name}"), false),
        )
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_REGION", "us-east-1");
    }
    let mut proc = Spawned::start(&mut cmd, "chat")?;
    let port = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(50),
        &format!("chat ({mode}) to log its address"),
        || proc.try_ended().map(|e| e.code),
        || Ok(logged_port(&log_path)),
    )?;
    wait_for(
        Duration::from_secs(30),
        Duration::from_millis(50),
        &format!("chat ({mode})"),
        || proc.try_ended().map(|e| e.code),
        || {
            Ok(chat_request(port, "GET", "/healthz", None)
                .is_ok_and(|(c, _)| c == 200)
                .then_some(()))
        },
    )?;
    let (code, conv) = chat_request(
        port,
        "POST",
        "/conversations",
        Some(json!({"title": "bench"})),
    )?;
    if code != 200 {
        bail!("chat: POST /conversations: HTTP {code}");
    }
    let cid = conv["id"]
        .as_i64()
        .context("chat: POST /conversations: no id")?;
    for i in 0..args.chat_seed {
        let body = json!({"author": format!("user{}", i % 7), "body": format!("seed message {i} ").repeat(4)});
        let (code, _) = chat_request(
            port,
            "POST",
            &format!("/conversations/{cid}/messages"),
            Some(body),
        )?;
        if code != 200 {
            bail!("chat: seeding messages: HTTP {code}");
        }
    }
    let post = d.join("post.lua");
    std::fs::write(&post, WRK_POST)?;
    let base = format!("http://127.0.0.1:{port}/conversations/{cid}");
    let (secs, conns) = (args.chat_seconds, args.chat_conns);
    progress(&format!("chat ({mode}): read endpoint ..."));
    let read = wrk(&base, secs, conns, None, &d)?;
    progress(&format!("chat ({mode}): write endpoint ..."));
    let write = wrk(&format!("{base}/messages"), secs, conns, Some(&post), &d)?;
    let durable_write = if mode == "embedded" {
        progress(&format!("chat ({mode}): durable write endpoint ..."));
        Some(wrk(
            &format!("{base}/messages?durable=true"),
            secs,
            conns,
            Some(&post),
            &d,
        )?)
    } else {
        None
    };
    let ended = proc.stop(libc::SIGTERM, Duration::from_secs(60));
    Ok(ChatRun {
        mode: mode.into(),
        round,
        read,
        write,
        durable_write,
        exit_code: ended.code,
    })
}

/// The chat section of the results: every run and its table.
pub fn run(args: &Args, chat: &Path, workdir: &Path) -> anyhow::Result<serde_json::Value> {
    if which("wrk").is_none() {
        bail!("wrk not found: apt-get install wrk");
    }
    let d = fresh_dir(&workdir.join("chat"))?;
    let lab = Lab::start(&lab_options(workdir))?;
    let mut runs = Vec::new();
    // Interleaved: off, on, off, on ...
    for r in 0..args.chat_rounds {
        for mode in ["plain", "embedded"] {
            runs.push(chat_run(
                args,
                chat,
                mode,
                &d.join(format!("{mode}-{r}")),
                &lab,
                r,
            )?);
        }
    }
    lab.shutdown()?;
    let markdown = chat_table(&runs, args.chat_conns, args.chat_seconds, args.chat_seed);
    Ok(json!({ "runs": runs, "markdown": markdown }))
}

/// The port in the chat app's start line (`chat (MODE) on
/// http://127.0.0.1:PORT, database ...`), once it is in the log.
fn logged_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|l| {
        let rest = l.split_once(" on http://")?.1;
        let addr = rest.split([',', ' ']).next()?;
        addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
    })
}
