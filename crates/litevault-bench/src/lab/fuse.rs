//! The s3fs FUSE mount of the lab's bucket (through the delaying proxy),
//! and mount points read from /proc and unmounted.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{stop_child, tail, write_pid};
use super::{ACCESS_KEY_ID, BUCKET, FuseStatus, Lab, SECRET_ACCESS_KEY};

impl Lab {
    pub(super) fn start_fuse(&mut self) -> FuseStatus {
        if Command::new("s3fs")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return FuseStatus::Unavailable(
                "s3fs is not installed: `apt-get install -y s3fs fuse3`".into(),
            );
        }
        match self.mount_s3fs() {
            Ok(p) => FuseStatus::Mounted(p),
            Err(reason) => FuseStatus::Unavailable(reason),
        }
    }

    fn mount_s3fs(&mut self) -> Result<PathBuf, String> {
        let mnt = self.run_dir.join("mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        let home = self.run_dir.join("s3fs-home");
        std::fs::create_dir_all(&home).map_err(|e| format!("creating {}: {e}", home.display()))?;
        let passwd = self.run_dir.join("passwd-s3fs");
        std::fs::write(&passwd, format!("{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}\n"))
            .and_then(|_| std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("writing {}: {e}", passwd.display()))?;
        // Cannot fail: `start` mounts FUSE only after `start_s3` set the
        // proxy.
        let proxy = self
            .s3_proxy
            .as_ref()
            .expect("S3 starts before FUSE")
            .addr();
        let log_path = self.run_dir.join("s3fs.log");
        let log = File::create(&log_path).map_err(|e| format!("creating s3fs.log: {e}"))?;
        let opts = format!(
            "url=http://{proxy},use_path_request_style,endpoint=us-east-1,passwd_file={},dbglevel=warn",
            passwd.display()
        );
        let child = Command::new("s3fs")
            .arg(BUCKET)
            .arg(&mnt)
            .args(["-f", "-o", &opts])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting s3fs: {e}"))?;
        let _ = write_pid(&self.run_dir.join("s3fs.pid"), child.id());
        {
            let mut s = self.services();
            s.s3fs = Some(child);
            // Registered before it shows up, so a signal during the wait
            // still unmounts.
            s.mountpoint = Some(mnt.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if is_mounted(&mnt) {
                return Ok(mnt);
            }
            let exited = self
                .services()
                .s3fs
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let mut s = self.services();
                s.s3fs = None;
                s.mountpoint = None;
                return Err(format!(
                    "s3fs could not mount the bucket ({status}): {}",
                    tail(&log_path)
                ));
            }
            if Instant::now() > deadline {
                let mut s = self.services();
                if let Some(c) = s.s3fs.take() {
                    let _ = stop_child(c, "s3fs");
                }
                let _ = unmount(&mnt);
                s.mountpoint = None;
                return Err(format!(
                    "s3fs did not mount {} within 20 s: {}",
                    mnt.display(),
                    tail(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Mount points, from /proc/self/mountinfo (octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .collect()
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point. `path`'s parent must be canonical (a
/// dead FUSE mount cannot be canonicalized itself).
pub(crate) fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Unmounts a FUSE mount: `fusermount3 -u`, then `umount`, then a lazy
/// `umount -l` (a busy mount is detached and goes once its files close).
pub(super) fn unmount(path: &Path) -> Result<(), String> {
    if !is_mounted(path) {
        return Ok(());
    }
    let tries: [(&str, &[&str]); 3] = [
        ("fusermount3", &["-u"]),
        ("umount", &[]),
        ("umount", &["-l"]),
    ];
    let mut last = String::new();
    for (cmd, args) in tries {
        match Command::new(cmd).args(args).arg(path).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => last = format!("{cmd}: {e}"),
        }
        if !is_mounted(path) {
            return Ok(());
        }
    }
    Err(format!(
        "{} is still mounted ({last}); unmount it with `umount -l {}`",
        path.display(),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mount("/end\\04"), "/end\\04");
    }
}
