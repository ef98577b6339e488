//! The lab's S3 server: moto on 127.0.0.1, its bucket, and the delaying
//! proxy in front of it.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{tail, write_pid};
use super::{BUCKET, Lab, LabError, io_err};

impl Lab {
    pub(super) fn start_s3(&mut self) -> Result<(), LabError> {
        let ok = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err(LabError::MotoMissing);
        }
        let log_path = self.run_dir.join("moto.log");
        let log = File::create(&log_path).map_err(io_err("creating moto.log"))?;
        // Port 0: moto binds a port the system picks and logs it (werkzeug's
        // " * Running on http://127.0.0.1:PORT"), so no other process can
        // take it between choosing and binding.
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("moto.log"))?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches us, and we
            // stop it after the mount that depends on it.
            .process_group(0)
            .spawn()
            .map_err(io_err("starting python3 -m moto.server"))?;
        write_pid(&self.run_dir.join("moto.pid"), child.id())?;
        self.services().moto = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let port = bound_port(&log_path);
            if let Some(p) = port
                && http(p, "GET", "/").is_ok()
            {
                break p;
            }
            let exited = self
                .services()
                .moto
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(LabError::MotoStart {
                    log: tail(&log_path),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match http(port, "PUT", &format!("/{BUCKET}")) {
            Ok(200) => {}
            Ok(code) => {
                return Err(LabError::Bucket {
                    bucket: BUCKET.into(),
                    detail: format!("HTTP {code}"),
                });
            }
            Err(e) => {
                return Err(LabError::Bucket {
                    bucket: BUCKET.into(),
                    detail: e.to_string(),
                });
            }
        }
        self.s3_port = port;
        self.s3_proxy = Some(self.start_proxy(SocketAddr::from(([127, 0, 0, 1], port)))?);
        Ok(())
    }
}

/// The port moto says it serves on, from its log.
fn bound_port(log: &std::path::Path) -> Option<u16> {
    let marker = "Running on http://127.0.0.1:";
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(marker))?;
    line[line.find(marker)? + marker.len()..]
        .trim()
        .parse()
        .ok()
}

/// One HTTP/1.1 request without a body to 127.0.0.1; the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    super::http::request(port, method, path, None, Duration::from_secs(10))
        .map(|(status, _)| status)
}
