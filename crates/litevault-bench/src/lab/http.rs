//! One-shot HTTP/1.1 requests to a port of 127.0.0.1 (`Connection: close`,
//! a new connection each), and the parsing of a response, for the lab (moto
//! and its bucket) and the benchmark tools (a sidecar's `/v1/sync`, an app's
//! endpoints). Pure parsing ([`parse_head`], [`split_response`]) apart from
//! [`request`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What a response head says about its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, when given.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The server closes the connection after this response
    /// (`Connection: close`, or HTTP/1.0 without `keep-alive`).
    pub close: bool,
}

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Parses a status line and header lines (without the blank line ending
/// them).
pub fn parse_head(head: &str) -> std::io::Result<Head> {
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(bad(format!("not an HTTP status line: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("no status code in {status_line:?}")))?;
    let mut h = Head {
        status,
        content_length: None,
        chunked: false,
        close: version == "HTTP/1.0",
    };
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            h.content_length = Some(
                v.parse()
                    .map_err(|_| bad(format!("bad Content-Length {v:?}")))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            h.close = v.eq_ignore_ascii_case("close");
        }
    }
    Ok(h)
}

/// A whole response read until the server closed the connection: the status
/// and the body (by `Content-Length`, de-chunked, or everything after the
/// head).
pub fn split_response(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("the response ends before its head does"))?;
    let head = parse_head(&String::from_utf8_lossy(&raw[..end]))?;
    let rest = &raw[end + 4..];
    let body = if head.chunked {
        dechunk(rest)?
    } else if let Some(n) = head.content_length {
        if rest.len() < n {
            return Err(bad(format!(
                "body of {} bytes, Content-Length {n}",
                rest.len()
            )));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((head.status, body))
}

fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a chunk size line without its end"))?;
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {size_hex:?}")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err(bad("a chunk cut short"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// One request to `127.0.0.1:port` on a new connection; `body` is its
/// content type and bytes. Returns the status and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let (content_type, bytes) = body.unwrap_or(("", b""));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        bytes.len()
    );
    if !content_type.is_empty() {
        req.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    req.push_str("\r\n");
    let mut msg = req.into_bytes();
    msg.extend_from_slice(bytes);
    s.write_all(&msg)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    split_response(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_length_by_chunks_and_to_the_end() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello, and more";
        assert_eq!(split_response(r).unwrap(), (200, b"hello".to_vec()));
        let r = b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n";
        assert_eq!(split_response(r).unwrap(), (201, b"abcdefg".to_vec()));
        let r = b"HTTP/1.0 404 Not Found\r\n\r\nnothing";
        assert_eq!(split_response(r).unwrap(), (404, b"nothing".to_vec()));
    }

    #[test]
    fn heads_say_when_the_connection_closes() {
        let h = parse_head("HTTP/1.1 200 OK\r\nContent-Length: 12").unwrap();
        assert_eq!(
            (h.status, h.content_length, h.close),
            (200, Some(12), false)
        );
        assert!(parse_head("HTTP/1.0 200 OK").unwrap().close);
        assert!(
            parse_head("HTTP/1.1 200 OK\r\nConnection: Close")
                .unwrap()
                .close
        );
        assert!(parse_head("SSH-2.0 hello").is_err());
        assert!(split_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }
}
