//! PostgreSQL's binary COPY framing (pure): the header, tuples, the trailer,
//! and a reader that splits a stream of chunks back into tuples.

use bytes::{Buf, BufMut, BytesMut};

/// Signature, flags and header-extension length of a binary COPY stream.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Appends the stream header.
pub fn put_header(buf: &mut BytesMut) {
    buf.put_slice(HEADER);
}

/// Appends the start of a tuple of `n` fields.
pub fn put_tuple_start(buf: &mut BytesMut, n: usize) {
    buf.put_i16(n as i16);
}

/// Appends the end-of-data marker.
pub fn put_trailer(buf: &mut BytesMut) {
    buf.put_i16(-1);
}

/// Why a binary COPY stream from the server could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyFormatError {
    #[error("binary COPY stream without the PGCOPY signature")]
    BadHeader,
    #[error("binary COPY tuple has {got} fields, expected {expected}")]
    FieldCount { got: i16, expected: usize },
    #[error("binary COPY stream ended inside a tuple")]
    Truncated,
}

/// Splits the chunks of a `COPY ... TO STDOUT (FORMAT binary)` stream into
/// tuples.
pub struct TupleReader {
    buf: BytesMut,
    header_done: bool,
    pub finished: bool,
    fields: usize,
}

impl TupleReader {
    /// A reader for tuples of `fields` fields.
    pub fn new(fields: usize) -> TupleReader {
        TupleReader {
            buf: BytesMut::new(),
            header_done: false,
            finished: false,
            fields,
        }
    }

    /// Adds a chunk received from the server.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Calls `f` with the field bytes of every complete tuple buffered
    /// (everything after the field count).
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<(), CopyFormatError> {
        if !self.header_done {
            // Signature (11 bytes), flags (4), extension length (4).
            let Some((head, _)) = self.buf.split_first_chunk::<19>() else {
                return Ok(());
            };
            if &head[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(CopyFormatError::BadHeader);
            }
            let ext = u32::from_be_bytes([head[15], head[16], head[17], head[18]]) as usize;
            if self.buf.len() < HEADER.len() + ext {
                return Ok(());
            }
            self.buf.advance(HEADER.len() + ext);
            self.header_done = true;
        }
        let mut pos = 0usize;
        let b = &self.buf[..];
        while !self.finished && b.len() >= pos + 2 {
            let n = i16::from_be_bytes([b[pos], b[pos + 1]]);
            if n == -1 {
                self.finished = true;
                pos += 2;
                break;
            }
            if n as usize != self.fields {
                return Err(CopyFormatError::FieldCount {
                    got: n,
                    expected: self.fields,
                });
            }
            let mut p = pos + 2;
            let mut complete = true;
            for _ in 0..n {
                let Some(len) = b.get(p..).and_then(|r| r.first_chunk::<4>()) else {
                    complete = false;
                    break;
                };
                let len = i32::from_be_bytes(*len);
                p += 4;
                if len > 0 {
                    if b.len() < p + len as usize {
                        complete = false;
                        break;
                    }
                    p += len as usize;
                }
            }
            if !complete {
                break;
            }
            f(&b[pos + 2..p]);
            pos = p;
        }
        self.buf.advance(pos);
        Ok(())
    }

    /// Checks the stream ended cleanly.
    pub fn finish(&self) -> Result<(), CopyFormatError> {
        if self.finished && self.buf.is_empty() {
            Ok(())
        } else {
            Err(CopyFormatError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_survive_any_chunking() {
        let mut b = BytesMut::new();
        put_header(&mut b);
        for i in 0..5i64 {
            put_tuple_start(&mut b, 2);
            b.put_i32(8);
            b.put_i64(i);
            b.put_i32(-1);
        }
        put_trailer(&mut b);
        for chunk in [1usize, 3, 7, 1000] {
            let mut r = TupleReader::new(2);
            let mut got = vec![];
            for c in b.chunks(chunk) {
                r.push(c);
                r.drain(|t| got.push(t.to_vec())).unwrap();
            }
            r.finish().unwrap();
            assert_eq!(got.len(), 5, "chunk {chunk}");
            assert_eq!(&got[3][4..12], 3i64.to_be_bytes());
        }
    }
}
