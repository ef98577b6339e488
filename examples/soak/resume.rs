//! Stopping a soak between cycles and continuing it later, so a
//! 1,000-cycle run can span several sittings and its counts add up.
//!
//! After every cycle the soak writes `resume.json` to its work folder: the
//! generator's state, the latest state each replica restored to, the cycles
//! that failed, and one line per sitting (which `litevault` binary ran
//! which cycles). `touch WORK/pause` stops the soak at the next cycle
//! boundary, with no replicator running. `--resume --work WORK` continues
//! it: the app database, the ledgers, the local store and the file://
//! replicas are where the last sitting left them.
//!
//! moto keeps its objects in memory, so an `s3` run can only continue
//! after a pause: the pause copies the bucket to `WORK/s3-mirror`, and the
//! resume uploads it to a new moto before the first cycle. A folder whose
//! soak was killed instead (no `resume.json`, or a killed `s3` run)
//! continues from its `counts.json` where that is sound, and the first
//! sitting's line says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

/// One sitting of a soak.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sitting {
    /// The first cycle it ran.
    pub from_cycle: u64,
    /// The cycle after the last one it completed.
    pub to_cycle: u64,
    /// When it started (RFC 3339).
    pub started: String,
    /// `litevault --version` of the binary under test.
    pub litevault: String,
    /// How it began: `new`, `resumed` (after a pause) or `resumed after a
    /// kill` (a folder with no pause; the cycle under way was lost).
    pub began: String,
    /// The share of object-store requests that failed on purpose
    /// (`--faults`), if any.
    #[serde(default)]
    pub faults: Option<f64>,
}

/// What a soak needs to continue where it stopped.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// The generator's state after the last completed cycle.
    pub rng: Option<u64>,
    /// The seq of the latest state each replica restored to.
    pub latest_seq: Vec<i64>,
    /// Cycles with a failure (their logs are kept).
    pub failed_runs: Vec<u64>,
    /// Every sitting, oldest first.
    pub sittings: Vec<Sitting>,
    /// The bucket was copied to `s3-mirror` at the pause.
    pub mirrored: bool,
    /// `--faults` of the run: a resume keeps it unless given another.
    #[serde(default)]
    pub faults: Option<f64>,
}

impl Saved {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("resume.json")
    }

    pub fn load(dir: &Path) -> Option<Saved> {
        let text = std::fs::read_to_string(Self::path(dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the file whole (a temporary file renamed over it), so a soak
    /// killed while saving leaves the previous one.
    pub fn save(&self, dir: &Path) {
        let tmp = dir.join("resume.json.tmp");
        if let Ok(json) = serde_json::to_string_pretty(self)
            && std::fs::write(&tmp, json).is_ok()
        {
            let _ = std::fs::rename(&tmp, Self::path(dir));
        }
    }
}

/// The pause file: present, the soak stops at the next cycle boundary.
pub fn pause_requested(dir: &Path) -> bool {
    dir.join("pause").exists()
}

/// The version line of the binary under test, for the sitting's record.
pub fn version_of(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| format!("{} (no --version)", bin.display()))
}

fn moto_store(port: u16) -> Arc<dyn ObjectStore> {
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_bucket_name("soak")
        .with_region("us-east-1")
        .with_access_key_id("soak")
        .with_secret_access_key("soak")
        .with_allow_http(true)
        .build()
        .expect("an S3 client for moto");
    Arc::new(s3)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Copies every object of the soak's bucket to `mirror` (emptied first).
pub fn mirror_bucket(port: u16, mirror: &Path) -> Result<usize, String> {
    let _ = std::fs::remove_dir_all(mirror);
    let store = moto_store(port);
    runtime().block_on(async {
        let objects: Vec<_> = store
            .list(None)
            .try_collect()
            .await
            .map_err(|e| format!("listing the bucket: {e}"))?;
        for meta in &objects {
            let bytes = store
                .get(&meta.location)
                .await
                .map_err(|e| format!("reading {}: {e}", meta.location))?
                .bytes()
                .await
                .map_err(|e| format!("reading {}: {e}", meta.location))?;
            let path = mirror.join(meta.location.as_ref());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{parent:?}: {e}"))?;
            }
            std::fs::write(&path, &bytes).map_err(|e| format!("{path:?}: {e}"))?;
        }
        Ok(objects.len())
    })
}

/// Uploads every file under `mirror` to the soak's bucket, at its path.
pub fn restore_bucket(port: u16, mirror: &Path) -> Result<usize, String> {
    let store = moto_store(port);
    let mut files = Vec::new();
    let mut dirs = vec![mirror.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{d:?}: {e}"))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    runtime().block_on(async {
        for p in &files {
            let rel = p
                .strip_prefix(mirror)
                .map_err(|e| format!("{p:?}: {e}"))?
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(p).map_err(|e| format!("{p:?}: {e}"))?;
            store
                .put(&object_store::path::Path::from(rel.as_str()), bytes.into())
                .await
                .map_err(|e| format!("uploading {rel}: {e}"))?;
        }
        Ok(files.len())
    })
}
