//! `litevault-bench http-sync`: sidecar durable commits, the latency of
//! commit + `POST /v1/sync?wait=true`.
//!
//! `litevault replicate DB URL --addr 127.0.0.1:PORT` runs at its defaults;
//! W writer threads each commit one row on their own connection, then call
//! `/v1/sync?db=app&wait=true`, which answers once every replica holds the
//! commit. Reported per backend (file://, the lab's moto S3 on 127.0.0.1)
//! and writer count: p50/p99 of the sync call and of commit+sync, durable
//! commits per second, and PUTs per durable commit (below 1 when concurrent
//! syncs share uploads). Above the table, moto's own PUT round trip,
//! measured from here: the floor of any durable commit on S3.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use litevault_bench::lab::{BUCKET, Lab};

use crate::embedded::lab_options;
use crate::lister::KeepAlive;
use crate::sidecar::{Target, durable_row};
use crate::tables::http_sync_table;
use crate::tools::{beside_me, snapshot};

/// Sidecar durable commits: commit + POST /v1/sync?wait=true.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// litevault binary (default: beside this program).
    #[arg(long)]
    litevault: Option<PathBuf>,
    /// Durable commits per row.
    #[arg(long, default_value_t = 200)]
    commits: usize,
    /// Writer counts.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    writers: Vec<usize>,
}

/// Median round trip of 50 unsigned PUTs of 200 bytes to moto, over one
/// kept-alive connection.
fn moto_put_ms(endpoint: &str) -> anyhow::Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut conn = KeepAlive::new(endpoint.trim_start_matches("http://"));
    let body = [b'x'; 200];
    let mut times = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        let (status, _) =
            rt.block_on(conn.request("PUT", &format!("/{BUCKET}/put-rtt/{i}"), &body))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("PUT to moto: HTTP {status}");
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn main(args: Args) -> anyhow::Result<()> {
    if args.writers.is_empty() {
        bail!("--writers: at least one writer count");
    }
    let src = match &args.litevault {
        Some(p) => p.clone(),
        None => beside_me("litevault")?,
    };
    let work = tempfile::Builder::new()
        .prefix("litevault-http-bench-")
        .tempdir()?;
    let litevault = snapshot(
        &src,
        &work.path().join("bin"),
        "cargo build --release --bin litevault",
    )?;
    let lab = Lab::start(&lab_options(work.path()))?;
    let endpoint = lab.s3_endpoint(false);
    let put = moto_put_ms(&endpoint)?;
    let mut rows = Vec::new();
    for target in [Target::File, Target::S3(&endpoint)] {
        for &w in &args.writers {
            rows.push(durable_row(
                &litevault,
                target,
                w,
                args.commits,
                work.path(),
            )?);
        }
    }
    lab.shutdown()?;
    println!("{}", http_sync_table(put, &rows));
    Ok(())
}
