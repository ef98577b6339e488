//! `litevault bench-lab`: start the benchmark lab (the S3 server, the delay
//! proxies, the s3fs mount, a PostgreSQL cluster) and keep it up until
//! Ctrl-C, so `litevault bench` or any other tool can be pointed at it.

use std::process::ExitCode;

use clap::Parser;

use litevault_bench::lab::{FuseStatus, Lab, LabOptions};

/// The long help of `litevault bench-lab`.
pub(crate) const LONG_ABOUT: &str =
    "Start the throwaway benchmark environment and print its endpoints.

Starts an S3-compatible server (moto) on 127.0.0.1 with a bucket, a TCP
proxy adding --rtt in front of it, an s3fs FUSE mount of the bucket
through that proxy, and a PostgreSQL cluster on 127.0.0.1 with its own
delaying proxy. Prints one JSON object with the endpoints, credentials,
mount point and PIDs on stdout, then waits. Ctrl-C (or SIGTERM) unmounts
and stops everything; a run killed with SIGKILL is cleaned up by the next
start with the same --dir.";

/// The options of `litevault bench-lab` (see [`LONG_ABOUT`]).
#[derive(Parser, Debug)]
pub struct Args {
    /// Folder for the lab's run folders (default: litevault-bench-lab in
    /// the system's temporary folder).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Round trip each proxy adds (half each way), e.g. 10ms.
    #[arg(long, value_parser = litevault::units::parse_duration, default_value = "10ms")]
    rtt: std::time::Duration,
    /// Do not mount the bucket with s3fs.
    #[arg(long)]
    no_fuse: bool,
    /// Do not start PostgreSQL.
    #[arg(long)]
    no_postgres: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut opts = LabOptions::new(a.dir.unwrap_or_else(LabOptions::default_base_dir));
    opts.rtt = a.rtt;
    opts.fuse = !a.no_fuse;
    opts.postgres = !a.no_postgres;
    let lab = tokio::task::spawn_blocking(move || Lab::start(&opts)).await??;
    for l in lab.leftovers_cleaned() {
        eprintln!("cleaned after a previous run: {l}");
    }
    let fuse = match lab.fuse() {
        FuseStatus::Mounted(p) => serde_json::json!({ "mounted": p }),
        FuseStatus::Disabled(why) => serde_json::json!({ "disabled": why }),
        FuseStatus::Unavailable(why) => serde_json::json!({ "unavailable": why }),
    };
    let creds = lab.credentials();
    let info = serde_json::json!({
        "run_dir": lab.run_dir(),
        "rtt_ms": lab.rtt().as_secs_f64() * 1000.0,
        "network": lab.network_description(),
        "bucket": lab.bucket(),
        "access_key_id": creds.access_key_id,
        "secret_access_key": creds.secret_access_key,
        "s3_endpoint": lab.s3_endpoint(false),
        "s3_proxied_endpoint": lab.s3_endpoint(true),
        "replica_url": lab.replica_url("bench", true),
        "fuse": fuse,
        "postgres_url": lab.postgres_url(false),
        "postgres_proxied_url": lab.postgres_url(true),
        "pids": lab.pids().into_iter().map(|(n, p)| serde_json::json!({"name": n, "pid": p})).collect::<Vec<_>>(),
    });
    // One line, so a script can read it.
    println!("{info}");
    if let FuseStatus::Unavailable(why) = lab.fuse() {
        eprintln!("no FUSE mount: {why}");
    }
    eprintln!(
        "lab up in {}; Ctrl-C stops and cleans everything",
        lab.run_dir().display()
    );
    // The lab's own handler stops everything on SIGINT/SIGTERM/SIGHUP and
    // then lets the signal end the process; nothing else to wait for.
    std::future::pending::<()>().await;
    drop(lab);
    Ok(ExitCode::SUCCESS)
}
