//! The watcher of every lag measurement: unsigned ListObjectsV2 calls to
//! the S3 server over one kept-alive HTTP/1.1 connection, for the embedded
//! run (`embedded-driver lag`) and for the sidecar's and Litestream's runs
//! alike (a signed `object_store` LIST costs moto about twice as long, which
//! would blur the comparison). The URL and listing parsers are pure.

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use litevault_bench::lab::http::parse_head;

/// One kept-alive HTTP/1.1 connection to `host` (`127.0.0.1:PORT`),
/// reopened when the server closes it.
pub struct KeepAlive {
    host: String,
    conn: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(host: impl Into<String>) -> KeepAlive {
        KeepAlive {
            host: host.into(),
            conn: None,
        }
    }

    /// One request; the status and the body. A connection the server closed
    /// in between fails at once: the request is sent again, once, on a new
    /// one.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        match self.once(method, path, body).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.conn = None;
                self.once(method, path, body).await
            }
        }
    }

    async fn once(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let c = TcpStream::connect(&self.host)
                .await
                .with_context(|| format!("connecting to {}", self.host))?;
            c.set_nodelay(true)?;
            self.conn = Some(BufReader::new(c));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut msg = req.into_bytes();
        msg.extend_from_slice(body);
        conn.get_mut().write_all(&msg).await?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await? == 0 {
                self.conn = None;
                bail!("the server at {} closed the connection", self.host);
            }
            if line.trim_end().is_empty() && !head.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let h = parse_head(&head)?;
        let len = h
            .content_length
            .with_context(|| format!("{method} {path}: an answer without Content-Length"))?;
        let mut out = vec![0; len];
        conn.read_exact(&mut out).await?;
        if h.close {
            self.conn = None;
        }
        Ok((h.status, out))
    }
}

/// Lists level 0 of one replica prefix.
pub struct Lister {
    conn: KeepAlive,
    path: String,
}

impl Lister {
    /// From a replica URL `s3://bucket/prefix?endpoint=http://host:port&...`.
    pub fn new(url: &str) -> anyhow::Result<Lister> {
        let (host, path) = level0_request(url)?;
        Ok(Lister {
            conn: KeepAlive::new(host),
            path,
        })
    }

    /// The highest max TXID among the level-0 file names (0 for none).
    pub async fn max_level0(&mut self) -> anyhow::Result<u64> {
        let (status, body) = self.conn.request("GET", &self.path, b"").await?;
        if status != 200 {
            bail!("ListObjectsV2 {}: HTTP {status}", self.path);
        }
        max_txid(&String::from_utf8_lossy(&body))
    }
}

/// The host and the ListObjectsV2 path of level 0 of a replica URL.
pub fn level0_request(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .with_context(|| format!("{url:?}: an s3:// URL"))?;
    let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
    let host = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("endpoint="))
        .and_then(|e| e.strip_prefix("http://"))
        .with_context(|| format!("{url:?}: needs endpoint=http://HOST:PORT"))?
        .trim_end_matches('/')
        .to_string();
    let level0 = format!("{}/0000/", prefix.trim_end_matches('/'));
    let enc: String = level0
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok((host, format!("/{bucket}?list-type=2&prefix={enc}")))
}

/// The highest max TXID among the LTX file names of a ListObjectsV2 answer.
pub fn max_txid(body: &str) -> anyhow::Result<u64> {
    if body.contains("<IsTruncated>true</IsTruncated>") {
        bail!("more than one page of level-0 files: use a fresh prefix");
    }
    Ok(body
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>"))
        .filter_map(|(k, _)| litevault::ltx::parse_filename(k.rsplit('/').next()?))
        .map(|(_, max)| max.0)
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_url_becomes_an_unsigned_listing_of_level_0() {
        let (host, path) = level0_request(
            "s3://b/lag/x y?endpoint=http://127.0.0.1:9000/&region=us-east-1&force-path-style=true",
        )
        .unwrap();
        assert_eq!(host, "127.0.0.1:9000");
        assert_eq!(path, "/b?list-type=2&prefix=lag%2Fx%20y%2F0000%2F");
        assert!(level0_request("file:///tmp/r").is_err());
        assert!(level0_request("s3://b/p?endpoint=https://s3.amazonaws.com").is_err());
    }

    #[test]
    fn the_highest_ltx_name_wins_and_other_keys_are_ignored() {
        let body = "<ListBucketResult><Contents><Key>p/0000/0000000000000001-0000000000000003.ltx</Key></Contents>\
                    <Contents><Key>p/0000/0000000000000004-000000000000000a.ltx</Key></Contents>\
                    <Contents><Key>p/0000/notes.txt</Key></Contents></ListBucketResult>";
        assert_eq!(max_txid(body).unwrap(), 10);
        assert_eq!(max_txid("<ListBucketResult/>").unwrap(), 0);
        assert!(max_txid("<IsTruncated>true</IsTruncated>").is_err());
    }
}
