//! A TCP proxy that delays every byte by a fixed one-way latency in each
//! direction: the round trip a network adds, without limiting bandwidth.
//!
//! The kernel here has no `tc netem`, so measurements that model a managed
//! database across a VPC, or an object store in another zone, put this proxy
//! between the client and a server on 127.0.0.1. Each chunk read from one side
//! is stamped with its arrival time and written to the other side once
//! `rtt / 2` has passed; chunks keep their order and are never held longer
//! than that, so a stream of requests sees the latency once, not once per
//! chunk.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running delaying proxy. Dropping it stops accepting and closes every
/// proxied connection.
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    rtt: Duration,
    accept: JoinHandle<()>,
    connections: Arc<AtomicU64>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port, or 127.0.0.1:0 for any")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl DelayProxy {
    /// Starts a proxy on `listen` (e.g. `127.0.0.1:0`) that forwards every
    /// connection to `upstream`, adding `rtt` to each round trip (`rtt / 2`
    /// each way). Must be called inside a Tokio runtime.
    pub async fn start(
        listen: &str,
        upstream: SocketAddr,
        rtt: Duration,
    ) -> Result<DelayProxy, ProxyError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: listen.to_string(),
            source,
        })?;
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        let one_way = rtt / 2;
        let accept = tokio::spawn(async move {
            let mut tasks: Vec<JoinHandle<()>> = Vec::new();
            // The connection tasks are aborted with the accept task.
            struct AbortAll<'a>(&'a mut Vec<JoinHandle<()>>);
            impl Drop for AbortAll<'_> {
                fn drop(&mut self) {
                    for t in self.0.iter() {
                        t.abort();
                    }
                }
            }
            let guard = AbortAll(&mut tasks);
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                guard.0.retain(|t| !t.is_finished());
                guard
                    .0
                    .push(tokio::spawn(proxy_connection(client, upstream, one_way)));
            }
        });
        Ok(DelayProxy {
            addr,
            rtt,
            accept,
            connections,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The round trip the proxy adds.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn proxy_connection(client: TcpStream, upstream: SocketAddr, one_way: Duration) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // the client sees the connection close, as with a refused connect
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pipe(cr, sw, one_way));
    pipe(sr, cw, one_way).await;
    let _ = up.await;
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now() + delay, None));
                    return;
                }
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, Some(buf[..n].to_vec())))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let mut pending: VecDeque<(Instant, Option<Vec<u8>>)> = VecDeque::new();
    loop {
        let item = match pending.pop_front() {
            Some(i) => i,
            None => match rx.recv().await {
                Some(i) => i,
                None => break,
            },
        };
        tokio::time::sleep_until(item.0).await;
        // Everything already due goes out in one write.
        let mut chunk = match item.1 {
            Some(c) => c,
            None => break,
        };
        let mut eof = false;
        while let Ok(next) = rx.try_recv() {
            pending.push_back(next);
        }
        let now = Instant::now();
        while let Some((due, _)) = pending.front() {
            if *due > now {
                break;
            }
            match pending.pop_front().and_then(|p| p.1) {
                Some(c) => chunk.extend_from_slice(&c),
                None => {
                    eof = true;
                    break;
                }
            }
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        if eof {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1, for the proxy to forward to.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn bytes_pass_through_in_order_and_each_round_trip_takes_the_rtt() {
        let upstream = echo().await;
        let rtt = Duration::from_millis(40);
        let proxy = DelayProxy::start("127.0.0.1:0", upstream, rtt)
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        // A large payload arrives intact and in order.
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&payload).await.unwrap();
        };
        let mut got = vec![0u8; payload.len()];
        let recv = async {
            r.read_exact(&mut got).await.unwrap();
        };
        tokio::join!(send, recv);
        assert!(got == payload, "bytes came back changed or out of order");
        // A small request waits at least the round trip (a lower bound: the
        // proxy can never answer early; no upper bound is asserted).
        let t = std::time::Instant::now();
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        assert!(
            t.elapsed() >= rtt,
            "answered in {:?}, before the {rtt:?} round trip",
            t.elapsed()
        );
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test]
    async fn closing_one_side_closes_the_other() {
        let upstream = echo().await;
        let proxy = DelayProxy::start("127.0.0.1:0", upstream, Duration::from_millis(2))
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let err = DelayProxy::start(&addr, l.local_addr().unwrap(), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot listen"), "{err}");
    }
}
