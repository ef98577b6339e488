//! `embedded matrix`: every measurement in each network setup, each on a
//! fresh lab (moto and its delaying proxy).

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use litevault_bench::lab::{ACCESS_KEY_ID, Lab, SECRET_ACCESS_KEY, Spawned};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::common::{fresh_dir, progress};
use crate::embedded::{Args, Bins, lab_options};
use crate::figures::{DurableRow, SetupRun};
use crate::sidecar::{Target, durable_row, process_lag};
use crate::tables::matrix_tables;
use crate::tools::Tool;

/// The round trip the proxied setup adds.
pub const RTT: Duration = Duration::from_millis(10);

/// Runs `embedded-driver ARGS` (this program, copied) and reads the JSON
/// object it prints; its error output goes to `log`.
fn driver<T: DeserializeOwned>(bins: &Bins, log: &Path, args: &[OsString]) -> anyhow::Result<T> {
    let out_path = log.with_extension("out");
    let out = std::fs::File::create(&out_path)?;
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(&bins.driver);
    cmd.arg("embedded-driver")
        .args([
            "--access-key",
            ACCESS_KEY_ID,
            "--secret-key",
            SECRET_ACCESS_KEY,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let what = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ended = Spawned::start(&mut cmd, "embedded-driver")?.wait(Duration::from_secs(600));
    if ended.code != 0 || ended.timed_out {
        bail!(
            "embedded-driver {what}: exit code {}{}; see {}",
            ended.code,
            if ended.timed_out {
                " (timed out after 600 s)"
            } else {
                ""
            },
            log.display()
        );
    }
    let text = std::fs::read_to_string(&out_path)?;
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| {
        format!(
            "embedded-driver {what}: its output in {}",
            out_path.display()
        )
    })
}

/// Command-line arguments from displayable values.
macro_rules! argv {
    ($($a:expr),* $(,)?) => { [$(OsString::from(format!("{}", $a))),*] };
}

fn run_setup(
    args: &Args,
    bins: &Bins,
    name: &str,
    proxied: bool,
    workdir: &Path,
) -> anyhow::Result<SetupRun> {
    let lab = Lab::start(&lab_options(workdir))?;
    let dir = fresh_dir(&workdir.join(name.replace(' ', "-")))?;
    let log = dir.join("driver.log");
    let url = |prefix: &str| lab.replica_url(prefix, proxied);
    let (endpoint, direct) = (lab.s3_endpoint(proxied), lab.s3_endpoint(false));

    progress(&format!("[{name}] PUT latency ..."));
    let put = driver(
        bins,
        &log,
        &argv!["put", "--replica", url("put"), "--n", args.puts],
    )?;

    progress(&format!(
        "[{name}] lag: embedded, {c} commits acknowledged + {c} visible, {:?}s apart ...",
        args.spacing,
        c = args.commits
    ));
    let lag_embedded = driver(
        bins,
        &log,
        &argv![
            "lag",
            "--replica",
            url("lag/embedded"),
            "--watch",
            lab.replica_url("lag/embedded", false),
            "--commits",
            args.commits,
            "--spacing-ms",
            (args.spacing * 1000.0) as u64,
            "--warmup",
            args.warmup,
            "--dir",
            dir.join("lag-embedded").display(),
        ],
    )?;
    let mut lags = Vec::new();
    for tool in [Tool::Litevault, Tool::Litestream] {
        let label = if tool == Tool::Litevault {
            "sidecar"
        } else {
            "litestream"
        };
        progress(&format!(
            "[{name}] lag: {label}, {} commits {:?}s apart ...",
            args.commits, args.spacing
        ));
        lags.push(process_lag(
            &bins.tools,
            tool,
            &endpoint,
            &direct,
            &dir.join("lag"),
            args.commits,
            args.warmup,
            args.spacing,
        )?);
    }
    let lag_litestream = lags.pop().expect("two runs");
    let lag_litevault = lags.pop().expect("two runs");

    progress(&format!(
        "[{name}] durable commit vs PUT, one writer, alternating ..."
    ));
    let durable_vs_put = driver(
        bins,
        &log,
        &argv![
            "durable-vs-put",
            "--replica",
            url("durable/vs-put"),
            "--pairs",
            args.durable_commits / 2,
            "--dir",
            dir.join("durable-vs-put").display(),
        ],
    )?;
    let mut durable = Vec::new();
    for &w in &args.writers {
        let n = args.durable_commits.max(8 * w);
        progress(&format!(
            "[{name}] durable: embedded, {w} writers, {n} commits ..."
        ));
        let embedded = driver(
            bins,
            &log,
            &argv![
                "durable",
                "--replica",
                url(&format!("durable/embedded-{w}")),
                "--writers",
                w,
                "--commits",
                n,
                "--commit-window-ms",
                args.commit_window_ms,
                "--dir",
                dir.join(format!("durable-{w}")).display(),
            ],
        )?;
        progress(&format!(
            "[{name}] durable: sidecar, {w} writers, {n} commits ..."
        ));
        let sidecar = durable_row(
            &bins.tools.litevault,
            Target::S3(&endpoint),
            w,
            n,
            &dir.join("sidecar"),
        )?;
        durable.push(DurableRow {
            writers: w,
            embedded,
            sidecar,
        });
    }

    progress(&format!(
        "[{name}] throughput: {} rounds x {:?}s, on/off ...",
        args.rounds, args.round_seconds
    ));
    let throughput = driver(
        bins,
        &log,
        &argv![
            "throughput",
            "--replica",
            url("throughput"),
            "--seconds",
            args.round_seconds,
            "--rounds",
            args.rounds,
            "--dir",
            dir.join("throughput").display(),
        ],
    )?;
    lab.shutdown()?;
    Ok(SetupRun {
        setup: name.into(),
        put,
        lag_embedded,
        lag_litevault,
        lag_litestream,
        durable_vs_put,
        durable,
        throughput,
    })
}

/// The matrix section of the results: every setup and the tables.
pub fn run(args: &Args, bins: &Bins, workdir: &Path) -> anyhow::Result<serde_json::Value> {
    let mut setups = Vec::new();
    for (name, proxied) in [
        ("direct".to_string(), false),
        (format!("proxy {}ms", RTT.as_millis()), true),
    ] {
        setups.push(run_setup(args, bins, &name, proxied, workdir)?);
    }
    let markdown = matrix_tables(&setups);
    Ok(json!({ "setups": setups, "markdown": markdown }))
}
