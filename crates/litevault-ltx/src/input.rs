//! A reader with a small look-ahead buffer and a byte counter, so the decoder can peek at
//! the first page frame to tell the format apart and report byte offsets in errors.

use std::io::{ErrorKind, Read};

use super::LtxError;

pub(crate) struct Input<R> {
    inner: R,
    // Bytes read from `inner` but not consumed yet: peeked[pos..].
    peeked: Vec<u8>,
    pos: usize,
    // Bytes consumed so far.
    offset: u64,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            peeked: Vec::new(),
            pos: 0,
            offset: 0,
        }
    }

    /// Bytes consumed so far: the file offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Fills `buf` completely; running out of data is [`LtxError::Truncated`].
    pub(crate) fn read_exact(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), LtxError> {
        let mut filled = 0;
        let avail = self.peeked.len() - self.pos;
        if avail > 0 {
            let n = avail.min(buf.len());
            buf[..n].copy_from_slice(&self.peeked[self.pos..self.pos + n]);
            self.pos += n;
            filled = n;
        }
        if filled < buf.len()
            && let Err(e) = self.inner.read_exact(&mut buf[filled..])
        {
            return Err(if e.kind() == ErrorKind::UnexpectedEof {
                LtxError::Truncated {
                    what,
                    offset: self.offset,
                }
            } else {
                LtxError::Io(e)
            });
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Reads one byte.
    pub(crate) fn read_byte(&mut self, what: &'static str) -> Result<u8, LtxError> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b, what)?;
        Ok(b[0])
    }

    /// Discards `n` bytes.
    pub(crate) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), LtxError> {
        let mut buf = [0u8; 8];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len());
            self.read_exact(&mut buf[..k], what)?;
            left -= k;
        }
        Ok(())
    }

    /// Returns up to `n` upcoming bytes without consuming them (fewer only at end of data).
    pub(crate) fn peek(&mut self, n: usize) -> Result<&[u8], LtxError> {
        if self.pos > 0 {
            self.peeked.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 64];
        while self.peeked.len() < n {
            let want = (n - self.peeked.len()).min(chunk.len());
            match self.inner.read(&mut chunk[..want]) {
                Ok(0) => break,
                Ok(k) => self.peeked.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(LtxError::Io(e)),
            }
        }
        Ok(&self.peeked[..n.min(self.peeked.len())])
    }

    /// Whether all data has been consumed.
    pub(crate) fn at_end(&mut self) -> Result<bool, LtxError> {
        Ok(self.peek(1)?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_then_read() {
        let data: Vec<u8> = (0..20).collect();
        let mut input = Input::new(&data[..]);
        assert_eq!(input.peek(4).unwrap(), &[0, 1, 2, 3]);
        let mut b = [0u8; 6];
        input.read_exact(&mut b, "x").unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4, 5]);
        assert_eq!(input.offset(), 6);
        assert_eq!(input.peek(3).unwrap(), &[6, 7, 8]);
        assert_eq!(input.read_byte("x").unwrap(), 6);
        input.skip(10, "x").unwrap();
        assert_eq!(input.peek(100).unwrap(), &[17, 18, 19]);
        assert!(!input.at_end().unwrap());
        let mut b = [0u8; 4];
        assert!(matches!(
            input.read_exact(&mut b, "tail"),
            Err(LtxError::Truncated {
                what: "tail",
                offset: 17
            })
        ));
    }
}
