//! `replicate --exec CMD --placeholder-addr ADDR`: while the databases open
//! (a wait for the lease an old instance still holds, then the catch-up
//! restore), something listens on the app's address and answers every HTTP
//! request with `503 Service Unavailable` and `Retry-After: 1`.
//!
//! Platforms that start a new instance before they stop the old one (Cloud
//! Run revisions) stop the old one only once the new one's startup probe
//! passes; a TCP probe passes on this listener, so the old instance gets its
//! SIGTERM, ships its last commits and releases the lease, and the new one
//! goes on. Requests that reach it meanwhile are refused with a status a
//! client or load balancer retries, never served from a database that is
//! not the latest. The listener is closed before the app starts, so the app
//! can bind the same address.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const BODY: &str = "starting: the database is being handed over from the previous instance\n";

/// The placeholder listener, until [`Placeholder::close`].
pub struct Placeholder {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    addr: SocketAddr,
}

impl Placeholder {
    /// Binds `addr` and starts answering.
    pub async fn start(addr: &str) -> anyhow::Result<Placeholder> {
        let sock: SocketAddr = addr.parse().map_err(|_| {
            anyhow::anyhow!(
                "--placeholder-addr {addr:?} is not HOST:PORT with an IP address (e.g. 0.0.0.0:8080, the app's own address)"
            )
        })?;
        let listener = TcpListener::bind(sock).await.map_err(|e| {
            anyhow::anyhow!(
                "--placeholder-addr {sock}: cannot listen there ({e}); give the address the app will listen on, free until it starts"
            )
        })?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    conn = listener.accept() => {
                        if let Ok((s, _)) = conn {
                            tokio::spawn(answer(s));
                        }
                    }
                }
            }
            // The listener drops here: the address is free for the app.
        });
        tracing::info!(%addr, "placeholder listening until the databases are open: every request gets 503 and Retry-After: 1");
        Ok(Placeholder { stop, task, addr })
    }

    /// Stops listening; returns once the address is free.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        tracing::info!(addr = %self.addr, "placeholder closed; the app starts");
    }
}

/// Reads the request head (bounded in size and time) and answers 503.
async fn answer(mut s: TcpStream) {
    let mut buf = [0u8; 8192];
    let mut seen = 0;
    let read_head = async {
        while seen < buf.len() {
            match s.read(&mut buf[seen..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen += n;
                    if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read_head).await;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
}
