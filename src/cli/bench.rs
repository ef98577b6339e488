//! `litevault bench`: the backend benchmark against the user's own paths and
//! URLs, with p50/p95/p99 per workload and backend, a recommendation derived
//! from the numbers, an HTML report and JSON.

use litevault::redact::redact_url as redact;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use litevault_bench::postgres::PgBackend;
use litevault_bench::proxy::DelayProxy;
use litevault_bench::report;
use litevault_bench::results::NetworkModel;
use litevault_bench::sqlite::{JournalMode, SqliteBackend, VaultBackend};
use litevault_bench::{Backend, DatasetSpec, RunOptions, Span};

/// The long help of `litevault bench`.
pub(crate) const LONG_ABOUT: &str = "Measure where an app's SQLite or PostgreSQL data should live.

Runs the workloads of a typical web app (point read by primary key, a
1,000-row range scan, a single-row insert transaction, a page load of 16
queries, and a mixed load of concurrent readers beside one writer)
against each backend you name, then prints p50/p95/p99 per workload and
backend, the ratio to the fastest, and a recommendation derived from the
numbers.

Backends are chosen by the flags given: --sqlite (SQLite on that disk),
--replica (the same, replicated by an embedded litevault; needs
--sqlite), --fuse-path (SQLite on a mounted bucket), --postgres.
Everything the benchmark creates is removed afterwards: files
litevault-bench-<dataset>.db, the PostgreSQL schemas
litevault_bench_<backend>, the LTX files under --replica.

Example:
  litevault bench --sqlite /data --postgres postgres://app@db:5432/app \\
      --fuse-path /mnt/bucket --rtt 10ms --report report.html";

/// The options of `litevault bench` (see [`LONG_ABOUT`]).
#[derive(Parser, Debug)]
pub struct Args {
    /// SQLite on local disk: a directory (or a file path, whose directory is
    /// used). The benchmark creates and removes `litevault-bench-<dataset>.db`
    /// there.
    #[arg(long, value_name = "DIR")]
    sqlite: Option<PathBuf>,
    /// PostgreSQL: a postgres:// URL (sslmode and sslrootcert honoured). The
    /// benchmark creates and drops schemas litevault_bench_*; nothing else
    /// is touched.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// SQLite on a mounted bucket (s3fs, gcsfuse, ...): the mount point, or a
    /// directory inside it.
    #[arg(long, value_name = "DIR")]
    fuse_path: Option<PathBuf>,
    /// Journal modes to measure on --fuse-path.
    #[arg(long, value_enum, default_value = "both")]
    fuse_journal: FuseJournal,
    /// SQLite on --sqlite's disk replicated by an embedded litevault to this
    /// replica URL (s3://, gs://, abs://, file://), with credentials from the
    /// environment as for `replicate`. Give it a prefix of its own: the
    /// benchmark refuses a prefix that already holds LTX files, and deletes
    /// what it wrote.
    #[arg(long, value_name = "URL")]
    replica: Option<String>,
    /// Put a TCP proxy on 127.0.0.1 in front of --postgres that adds this
    /// round trip (half each way) on top of the URL's own network, to model
    /// a database across a VPC or region, e.g. 10ms. The report states it.
    #[arg(long, value_parser = litevault::units::parse_duration, value_name = "DURATION")]
    rtt: Option<Duration>,
    /// Quick run: the tiny dataset, 20 warm-up and 200 measured operations
    /// per workload (a minute or less), instead of the small and large
    /// datasets for 3 s each.
    #[arg(long)]
    quick: bool,
    /// Datasets to run, comma-separated: tiny (0.5 MB), small (5 MB, fits a
    /// page cache), large (about 100 MB, over 10x the 8 MiB page cache).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    datasets: Vec<String>,
    /// Measure each workload for this long (default 3s; with --quick, 200
    /// operations).
    #[arg(long, value_parser = litevault::units::parse_duration, value_name = "DURATION", conflicts_with = "ops")]
    duration: Option<Duration>,
    /// Measure each workload for this many operations per worker (warm-up:
    /// a tenth of it, at least 1).
    #[arg(long, value_name = "N")]
    ops: Option<u64>,
    /// Also write a self-contained HTML page with SVG charts to this file.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Print the full report as JSON on stdout (nothing else goes there).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FuseJournal {
    /// Rollback journal.
    Delete,
    /// Write-ahead log.
    Wal,
    /// Both, as two backends.
    Both,
}

/// A directory the benchmark may write in: `path` itself, or the directory
/// of a file path.
fn writable_dir(flag: &str, path: &Path) -> anyhow::Result<PathBuf> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() && p.is_dir() && !path.exists() => p.to_path_buf(),
            Some(p) if p.as_os_str().is_empty() && !path.exists() => PathBuf::from("."),
            _ if path.exists() => bail!(
                "{flag} {}: not a directory; give the directory to put the benchmark's database in",
                path.display()
            ),
            _ => bail!(
                "{flag} {}: no such directory; create it first or pick an existing one",
                path.display()
            ),
        }
    };
    let probe = dir.join(format!(".litevault-bench-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").with_context(|| {
        format!(
            "{flag} {}: cannot write there; pick a directory this user can write to",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir)
}

/// The mount point `path` is in, with its file-system type, from
/// /proc/self/mountinfo.
fn mount_of(path: &Path) -> Option<(PathBuf, String)> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(PathBuf, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        let mp = PathBuf::from(mp.replace("\\040", " "));
        if path.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, fstype.to_string()));
        }
    }
    best
}

fn check_fuse_path(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "--fuse-path {}: no such directory; mount the bucket first (e.g. `s3fs BUCKET {} -o url=...`) and pass the mount point",
            path.display(),
            path.display()
        );
    }
    match mount_of(path) {
        Some((mp, _)) if mp == Path::new("/") => bail!(
            "--fuse-path {}: not on a mounted bucket (it is on the root file system); mount the bucket there first, e.g. `s3fs BUCKET {} -o url=...`",
            path.display(),
            path.display()
        ),
        Some((mp, fstype)) if !fstype.starts_with("fuse") => {
            tracing::warn!(
                "--fuse-path {} is on {} ({fstype}), not a FUSE mount; measuring it anyway",
                path.display(),
                mp.display()
            );
        }
        None => bail!(
            "--fuse-path {}: cannot tell which mount it is on (/proc/self/mountinfo unreadable)",
            path.display()
        ),
        _ => {}
    }
    writable_dir("--fuse-path", path)
}

async fn check_postgres(url: &str) -> anyhow::Result<()> {
    let shown = redact(url);
    let connect = litevault::pg::export::connect(url);
    let client = match tokio::time::timeout(Duration::from_secs(20), connect).await {
        Err(_) => bail!(
            "--postgres {shown}: no answer within 20 s; check the host, the port and that the server accepts connections from here"
        ),
        Ok(Err(e)) => bail!(
            "--postgres {shown}: cannot connect: {e}; check the URL (user, password, database), that the server runs and that it accepts connections from here"
        ),
        Ok(Ok(c)) => c,
    };
    client
        .simple_query("SELECT 1")
        .await
        .with_context(|| format!("--postgres {shown}: connected, but SELECT 1 failed"))?;
    Ok(())
}

/// Starts a delaying proxy in front of the URL's server; returns the proxy
/// and the URL through it (`hostaddr` points at the proxy, `host` stays for
/// TLS verification).
async fn proxy_postgres(url: &str, rtt: Duration) -> anyhow::Result<(DelayProxy, String)> {
    let mut u = url::Url::parse(url).with_context(|| {
        format!(
            "--postgres {}: --rtt needs a postgres://host:port/db URL",
            redact(url)
        )
    })?;
    let host = u.host_str().filter(|h| !h.is_empty()).with_context(|| {
        format!(
            "--postgres {}: --rtt needs a host in the URL (not a Unix socket)",
            redact(url)
        )
    })?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port().unwrap_or(5432);
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("--postgres: cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("--postgres: {host} resolves to no address"))?;
    let proxy = DelayProxy::start("127.0.0.1:0", upstream, rtt).await?;
    u.set_port(Some(proxy.addr().port()))
        .map_err(|_| anyhow::anyhow!("--postgres: cannot set the port of {}", redact(url)))?;
    let others: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "hostaddr")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("hostaddr", "127.0.0.1");
    Ok((proxy, u.to_string()))
}

fn dataset(name: &str, seed: u64) -> anyhow::Result<DatasetSpec> {
    match name.trim() {
        "tiny" => Ok(DatasetSpec::tiny(seed)),
        "small" => Ok(DatasetSpec::small(seed)),
        "large" => Ok(DatasetSpec::large(seed)),
        other => bail!("--datasets: unknown dataset {other:?}; use tiny, small or large"),
    }
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.sqlite.is_none() && a.postgres.is_none() && a.fuse_path.is_none() && a.replica.is_none() {
        bail!(
            "nothing to measure: give at least one of --sqlite DIR, --postgres URL, --fuse-path DIR, --replica URL (with --sqlite)"
        );
    }
    if a.replica.is_some() && a.sqlite.is_none() {
        bail!(
            "--replica needs --sqlite DIR: the replicated database lives on that disk, beside the plain one"
        );
    }
    if a.rtt.is_some() && a.postgres.is_none() {
        bail!(
            "--rtt delays the --postgres connection, and no --postgres was given; to delay an S3 endpoint, run `litevault delay-proxy` in front of it"
        );
    }
    if a.ops == Some(0) {
        bail!("--ops 0: measure at least 1 operation");
    }
    if let Some(r) = &a.report
        && let Some(parent) = r.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!(
            "--report {}: directory {} does not exist",
            r.display(),
            parent.display()
        );
    }

    let mut opts = if a.quick {
        RunOptions::quick()
    } else {
        RunOptions::default()
    };
    if !a.datasets.is_empty() {
        opts.datasets = a
            .datasets
            .iter()
            .map(|d| dataset(d, opts.seed))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(d) = a.duration {
        opts.measure = Span::Time(d);
        opts.warmup = Span::Time(d / 6);
    }
    if let Some(n) = a.ops {
        opts.measure = Span::Ops(n);
        opts.warmup = Span::Ops((n / 10).max(1));
    }
    opts.validate()?;

    // Check every input before measuring anything.
    let sqlite_dir = match &a.sqlite {
        Some(p) => Some(writable_dir("--sqlite", p)?),
        None => None,
    };
    let fuse_dir = match &a.fuse_path {
        Some(p) => Some(check_fuse_path(p)?),
        None => None,
    };
    if let Some(url) = &a.postgres {
        check_postgres(url).await?;
    }

    let mut backends: Vec<Box<dyn Backend>> = Vec::new();
    // Replica prefixes checked empty: what is under them after the run was
    // written by the benchmark, and is deleted.
    let mut replica_targets: Vec<(String, litevault::Replica)> = Vec::new();
    if let Some(dir) = &sqlite_dir {
        backends.push(Box::new(SqliteBackend::local(dir)));
    }
    if let (Some(url), Some(dir)) = (&a.replica, &sqlite_dir) {
        let vault_dir = dir.join("litevault-bench-vault");
        std::fs::create_dir_all(&vault_dir)
            .with_context(|| format!("creating {}", vault_dir.display()))?;
        let vb = VaultBackend::new(vault_dir, url);
        for d in &opts.datasets {
            let target = vb.replica_url(&d.name);
            let replica =
                litevault::Replica::open(&target).with_context(|| format!("--replica {url}"))?;
            let existing = replica
                .list_all()
                .await
                .with_context(|| format!("--replica {url}: cannot list {target}"))?;
            if existing.is_empty() {
                replica_targets.push((target, replica));
            } else {
                bail!(
                    "--replica {url}: {target} already holds {} LTX files, and the benchmark would delete them; give it a prefix of its own",
                    existing.len()
                );
            }
        }
        backends.push(Box::new(vb));
    }
    // The mount backends build their databases on local disk first.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    if let Some(dir) = &fuse_dir {
        let modes: &[(JournalMode, &str)] = match a.fuse_journal {
            FuseJournal::Delete => &[(JournalMode::Delete, "delete")],
            FuseJournal::Wal => &[(JournalMode::Wal, "wal")],
            FuseJournal::Both => &[(JournalMode::Delete, "delete"), (JournalMode::Wal, "wal")],
        };
        for (mode, name) in modes {
            let sub = dir.join(format!("litevault-bench-{name}"));
            std::fs::create_dir_all(&sub)
                .with_context(|| format!("--fuse-path: creating {}", sub.display()))?;
            backends.push(Box::new(SqliteBackend::on_mount(
                sub,
                *mode,
                scratch.path().join(name),
            )));
        }
    }
    let mut _proxy = None;
    if let Some(url) = &a.postgres {
        match a.rtt.filter(|r| !r.is_zero()) {
            Some(rtt) => {
                let (proxy, proxied) = proxy_postgres(url, rtt).await?;
                let ms = rtt.as_secs_f64() * 1000.0;
                opts.network = NetworkModel {
                    rtt_ms: Some(ms),
                    description: format!(
                        "PostgreSQL reached through a TCP proxy on 127.0.0.1 adding {ms} ms per round trip ({} ms each way, no bandwidth limit) on top of the network to {}; the other backends as they are",
                        ms / 2.0,
                        proxy_upstream_host(url)
                    ),
                };
                backends.push(Box::new(PgBackend::new(&proxied).named(
                    "pg-proxied",
                    &format!("PostgreSQL + {ms} ms RTT"),
                    &format!(
                        "PostgreSQL at {}, {ms} ms added per round trip",
                        redact(url)
                    ),
                )));
                _proxy = Some(proxy);
            }
            None => {
                opts.network = NetworkModel {
                    rtt_ms: None,
                    description: "no added delay: every backend over its own network as given"
                        .into(),
                };
                backends.push(Box::new(PgBackend::new(url)));
            }
        }
    }

    let bench = litevault_bench::run(backends, &opts).await?;
    drop(_proxy);
    for (target, replica) in &replica_targets {
        let written = replica.list_all().await;
        match written {
            Ok(files) if !files.is_empty() => {
                if let Err(e) = replica.delete_files(&files).await {
                    eprintln!("could not delete the benchmark's LTX files under {target}: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("could not list {target} to clean it: {e}"),
        }
    }
    if bench.measurements.is_empty() {
        let why: Vec<String> = bench
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.backend, s.reason))
            .collect();
        bail!("nothing could be measured:\n  {}", why.join("\n  "));
    }
    if let Some(path) = &a.report {
        std::fs::write(path, report::html(&bench))
            .with_context(|| format!("writing --report {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&bench)?);
    } else {
        print!("{}", report::text_table(&bench));
        println!("Recommendation:");
        for l in report::recommend(&bench).lines {
            println!("  {l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn proxy_upstream_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port().unwrap_or(5432)))
        })
        .unwrap_or_else(|| "the server".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_path_means_its_directory_and_a_missing_one_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            writable_dir("--sqlite", &d.path().join("bench.db")).unwrap(),
            d.path()
        );
        assert_eq!(writable_dir("--sqlite", d.path()).unwrap(), d.path());
        let e = writable_dir("--sqlite", &d.path().join("no/such/x.db"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory"), "{e}");
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        let e = writable_dir("--sqlite", &f).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn the_root_file_system_is_not_a_mounted_bucket() {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        // /var/tmp is on the root file system here (no separate mount).
        if mount_of(d.path()).map(|(m, _)| m) == Some(PathBuf::from("/")) {
            let e = check_fuse_path(d.path()).unwrap_err().to_string();
            assert!(e.contains("not on a mounted bucket"), "{e}");
        } else {
            let e = check_fuse_path(&d.path().join("missing"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("no such directory"), "{e}");
        }
    }

    #[tokio::test]
    async fn the_proxied_url_keeps_the_host_for_tls_and_connects_to_the_proxy() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (proxy, url) = proxy_postgres(
            &format!("postgres://u:secret@localhost:{port}/db?sslmode=disable"),
            Duration::from_millis(3),
        )
        .await
        .unwrap();
        let u = url::Url::parse(&url).unwrap();
        assert_eq!(u.host_str(), Some("localhost"));
        assert_eq!(u.port(), Some(proxy.addr().port()));
        let q: Vec<(String, String)> = u.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(
            q,
            vec![
                ("sslmode".to_string(), "disable".to_string()),
                ("hostaddr".to_string(), "127.0.0.1".to_string())
            ]
        );
        assert_eq!(proxy.rtt(), Duration::from_millis(3));
    }

    #[test]
    fn redaction_hides_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }
}
