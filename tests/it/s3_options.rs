//! The S3 options Litestream users set, against the moto S3 server, with a
//! recording proxy between litevault and moto that checks the requests
//! themselves: every upload carries the storage class and the SSE-KMS key
//! (and moto lists the storage class back), and with SSE-C every request on
//! an LTX file carries the key (moto accepts SSE-C headers without
//! encrypting anything, so only the requests can prove it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use litevault::restore::RestoreTarget;
use litevault::{Replica, ReplicateOptions, Replicator};

/// Replicates 20 writes to `replica`, stops cleanly, restores, and checks
/// the restored database.
fn replicate_and_restore(replica: &Replica) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    block_on(async {
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        for k in 1..=20 {
            Workload::apply(&mut c, k).unwrap();
            rep.sync_all().await.unwrap();
        }
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore_at(replica, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), 20);
    });
}

/// One raw HTTP/1.1 request to moto (which checks no signature); returns
/// the head (status line and headers) and the body.
fn raw(port: u16, method: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn storage_class_and_sse_kms_reach_the_objects() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("options");
    let proxy = RecordingProxy::start(s3.port);
    let url = format!(
        "s3://{bucket}/app?endpoint=http://127.0.0.1:{}&region=us-east-1&storage-class=STANDARD_IA&sse-kms-key-id=alias/litevault-test",
        proxy.port
    );
    let replica = Replica::open_with_credentials(&url, Some(&creds())).unwrap();
    replicate_and_restore(&replica);

    // Every upload of a file asks for both.
    let requests = proxy.requests();
    let puts: Vec<_> = requests
        .iter()
        .filter(|(line, _)| line.starts_with("PUT ") && line.contains(".ltx"))
        .collect();
    assert!(puts.len() > 3, "{requests:?}");
    for (line, headers) in &puts {
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-storage-class"), Some("STANDARD_IA"), "{line}");
        assert_eq!(
            get("x-amz-server-side-encryption"),
            Some("aws:kms"),
            "{line}"
        );
        assert_eq!(
            get("x-amz-server-side-encryption-aws-kms-key-id"),
            Some("alias/litevault-test"),
            "{line}"
        );
    }
    // The server kept the storage class of every file.
    let (head, list) = raw(
        s3.port,
        "GET",
        &format!("/{bucket}?list-type=2&prefix=app/"),
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let ltx: Vec<&str> = list
        .split("<Contents>")
        .skip(1)
        .filter(|c| c.contains(".ltx</Key>"))
        .collect();
    assert!(ltx.len() > 3, "{list}");
    for c in &ltx {
        assert!(
            c.contains("<StorageClass>STANDARD_IA</StorageClass>"),
            "{c}"
        );
    }
}

const SSE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SSE_KEY_MD5: &str = "hRasmdxgYDKV3nvbahU1MA==";

/// A TCP proxy to `upstream` that keeps every byte clients send.
struct RecordingProxy {
    port: u16,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RecordingProxy {
    fn start(upstream: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let log = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let slot = {
                    let mut l = log.lock().unwrap();
                    l.push(Vec::new());
                    l.len() - 1
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    loop {
                        match c2.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().unwrap()[slot].extend_from_slice(&buf[..n]);
                                if s2.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        RecordingProxy { port, sent }
    }

    /// Every request sent: (request line, lowercased headers).
    fn requests(&self) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for conn in self.sent.lock().unwrap().iter() {
            let mut rest: &[u8] = conn;
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let line = lines.next().unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                assert!(
                    !headers
                        .iter()
                        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
                    "a chunked body: the parser here reads Content-Length only"
                );
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                rest = &rest[(end + 4 + len).min(rest.len())..];
                out.push((line, headers));
            }
        }
        out
    }
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn sse_c_keys_go_with_every_request_on_a_file() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("ssec");
    let proxy = RecordingProxy::start(s3.port);
    let url = format!(
        "s3://{bucket}/app?endpoint=http://127.0.0.1:{}&region=us-east-1",
        proxy.port
    );
    let key = litevault::redact::Secret::new(SSE_KEY);
    let replica = Replica::open_s3(&url, Some(&creds()), Some(&key)).unwrap();
    assert!(!replica.to_string().contains(SSE_KEY));
    replicate_and_restore(&replica);

    let requests = proxy.requests();
    let on_files: Vec<_> = requests
        .iter()
        .filter(|(line, _)| line.split(' ').nth(1).is_some_and(|p| p.contains(".ltx")))
        .filter(|(line, _)| !line.starts_with("DELETE"))
        .collect();
    for method in ["PUT ", "GET "] {
        assert!(
            on_files.iter().any(|(l, _)| l.starts_with(method)),
            "no {method}request on a file: {requests:?}"
        );
    }
    for (line, headers) in &on_files {
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("x-amz-server-side-encryption-customer-algorithm"),
            Some("AES256"),
            "{line}"
        );
        assert_eq!(
            get("x-amz-server-side-encryption-customer-key"),
            Some(SSE_KEY),
            "{line}"
        );
        assert_eq!(
            get("x-amz-server-side-encryption-customer-key-md5"),
            Some(SSE_KEY_MD5),
            "{line}"
        );
    }
}
