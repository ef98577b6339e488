//! What every run does: fresh folders, waiting for a condition while a
//! process lives, progress lines, the results file, the `--deadline`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Removes `p` and makes it again, empty.
pub fn fresh_dir(p: &Path) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    Ok(p.to_path_buf())
}

/// A progress line on stderr.
pub fn progress(msg: &str) {
    eprintln!("{msg}");
}

/// Polls `cond` every `every` until it gives a value; fails after `timeout`
/// or once `exited` reports the process it depends on has ended.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut exited: impl FnMut() -> Option<i32>,
    mut cond: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond()? {
            return Ok(v);
        }
        if let Some(code) = exited() {
            bail!("{what}: the process exited early (code {code})");
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {:.0}s", timeout.as_secs_f64());
        }
        std::thread::sleep(every);
    }
}

/// The results file: read when it exists (each command replaces its own
/// section), written after each command.
pub struct ResultsFile {
    pub path: PathBuf,
    pub sections: serde_json::Map<String, serde_json::Value>,
}

impl ResultsFile {
    pub fn open(path: PathBuf) -> anyhow::Result<ResultsFile> {
        let sections = if path.is_file() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            match serde_json::from_str(&text)
                .with_context(|| format!("{} is not a results file", path.display()))?
            {
                serde_json::Value::Object(m) => m,
                _ => bail!("{} is not a results file", path.display()),
            }
        } else {
            serde_json::Map::new()
        };
        Ok(ResultsFile { path, sections })
    }

    pub fn set(&mut self, name: &str, value: serde_json::Value) -> anyhow::Result<()> {
        self.sections.insert(name.into(), value);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&self.sections)?;
        std::fs::write(&self.path, text).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Ends the whole run after `seconds`: SIGTERM to this process, whose
/// handler (installed while a lab or a spawned process lives) stops
/// everything started, then ends it.
pub fn arm_deadline(seconds: f64) {
    let after = Duration::from_secs_f64(seconds.max(0.0));
    std::thread::spawn(move || {
        std::thread::sleep(after);
        eprintln!(
            "litevault-bench: --deadline reached ({:.0} s); stopping",
            after.as_secs_f64()
        );
        // SAFETY: raise has no preconditions.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
    });
}
