//! Minimal reader for the LZ4 *frame* format, needed for the older LTX encodings:
//!
//! - ltx v0.5.0 (Litestream v0.5.0 up to the switch to blocks): each page is one LZ4 frame;
//! - ltx v0.3.x with `HeaderFlagCompressLZ4` (LiteFS): the whole page block is one frame.
//!
//! A frame is: magic `04 22 4D 18`, FLG, BD, optional 8-byte content size, optional 4-byte
//! dictionary ID, a header-checksum byte; then blocks (`u32` little-endian size, bit 31 set
//! for a stored block, then the data and an optional 4-byte block checksum); an end mark
//! `u32` 0; an optional 4-byte content checksum.
//!
//! The frame must be consumed exactly, because the next LTX structure follows it with no
//! length prefix. The xxHash32 header, block and content checksums are skipped, not
//! verified: the LTX file checksum covers the uncompressed bytes and catches corruption.

use std::io::Read;

use lz4_flex::block::{decompress_into, decompress_into_with_dict};

use super::LtxError;
use super::input::Input;

/// The frame magic number as it appears in the file.
pub(crate) const FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// How far back a match in a linked block may reach.
const WINDOW: usize = 64 * 1024;

struct FrameInfo {
    linked: bool,
    block_checksum: bool,
    content_checksum: bool,
    max_block: usize,
}

fn bad(pgno: u32, reason: impl Into<String>) -> LtxError {
    LtxError::Lz4 {
        pgno,
        reason: reason.into(),
    }
}

fn read_u32_le<R: Read>(input: &mut Input<R>, what: &'static str) -> Result<u32, LtxError> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

fn read_frame_header<R: Read>(input: &mut Input<R>, pgno: u32) -> Result<FrameInfo, LtxError> {
    let mut magic = [0u8; 4];
    input.read_exact(&mut magic, "LZ4 frame magic")?;
    if magic != FRAME_MAGIC {
        return Err(bad(
            pgno,
            format!("expected an LZ4 frame, found bytes {magic:02x?}"),
        ));
    }
    let mut fd = [0u8; 2];
    input.read_exact(&mut fd, "LZ4 frame descriptor")?;
    let (flg, bd) = (fd[0], fd[1]);
    if flg >> 6 != 0b01 {
        return Err(bad(
            pgno,
            format!("unsupported LZ4 frame version in FLG 0x{flg:02x}"),
        ));
    }
    if flg & 0x02 != 0 || bd & 0x8f != 0 {
        return Err(bad(pgno, "reserved LZ4 frame descriptor bits are set"));
    }
    if flg & 0x01 != 0 {
        return Err(bad(
            pgno,
            "LZ4 frames with a dictionary ID are not supported",
        ));
    }
    let max_block = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        code => return Err(bad(pgno, format!("invalid LZ4 block size code {code}"))),
    };
    if flg & 0x08 != 0 {
        input.skip(8, "LZ4 frame content size")?;
    }
    input.skip(1, "LZ4 frame header checksum")?;
    Ok(FrameInfo {
        linked: flg & 0x20 == 0,
        block_checksum: flg & 0x10 != 0,
        content_checksum: flg & 0x04 != 0,
        max_block,
    })
}

/// A block header: `Some((len, stored))`, or `None` at the end mark (whose trailing content
/// checksum has then been consumed).
fn read_block_header<R: Read>(
    input: &mut Input<R>,
    info: &FrameInfo,
    pgno: u32,
) -> Result<Option<(usize, bool)>, LtxError> {
    let size = read_u32_le(input, "LZ4 block size")?;
    if size == 0 {
        if info.content_checksum {
            input.skip(4, "LZ4 content checksum")?;
        }
        return Ok(None);
    }
    let len = (size & 0x7fff_ffff) as usize;
    if len > info.max_block {
        return Err(bad(
            pgno,
            format!(
                "LZ4 block of {len} bytes exceeds the frame's maximum of {}",
                info.max_block
            ),
        ));
    }
    Ok(Some((len, size & 0x8000_0000 != 0)))
}

fn read_block_data<R: Read>(
    input: &mut Input<R>,
    info: &FrameInfo,
    len: usize,
    scratch: &mut Vec<u8>,
) -> Result<(), LtxError> {
    scratch.clear();
    scratch.resize(len, 0);
    input.read_exact(scratch, "LZ4 block")?;
    if info.block_checksum {
        input.skip(4, "LZ4 block checksum")?;
    }
    Ok(())
}

/// Reads one LZ4 frame that must decompress to exactly `out.len()` bytes (one page).
pub(crate) fn read_page_frame<R: Read>(
    input: &mut Input<R>,
    pgno: u32,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), LtxError> {
    let info = read_frame_header(input, pgno)?;
    let mut filled = 0usize;
    while let Some((len, stored)) = read_block_header(input, &info, pgno)? {
        read_block_data(input, &info, len, scratch)?;
        let (done, rest) = out.split_at_mut(filled);
        let n = if stored {
            if len > rest.len() {
                return Err(bad(pgno, "LZ4 frame holds more than one page"));
            }
            rest[..len].copy_from_slice(scratch);
            len
        } else if info.linked && !done.is_empty() {
            let dict = &done[done.len().saturating_sub(WINDOW)..];
            decompress_into_with_dict(scratch, rest, dict).map_err(|e| bad(pgno, e.to_string()))?
        } else {
            decompress_into(scratch, rest).map_err(|e| bad(pgno, e.to_string()))?
        };
        filled += n;
    }
    if filled != out.len() {
        return Err(bad(
            pgno,
            format!(
                "LZ4 frame holds {filled} bytes, the page size is {}",
                out.len()
            ),
        ));
    }
    Ok(())
}

/// A frame read as a stream (the ltx v0.3 compressed page block).
pub(crate) struct FrameStream {
    info: FrameInfo,
    block: Vec<u8>,
    pos: usize,
    // The last WINDOW bytes of output, for linked blocks.
    window: Vec<u8>,
    scratch: Vec<u8>,
    ended: bool,
}

impl FrameStream {
    /// Reads the frame header.
    pub(crate) fn begin<R: Read>(input: &mut Input<R>) -> Result<Self, LtxError> {
        Ok(Self {
            info: read_frame_header(input, 0)?,
            block: Vec::new(),
            pos: 0,
            window: Vec::new(),
            scratch: Vec::new(),
            ended: false,
        })
    }

    /// Decompresses the next block; false at the end mark.
    fn next_block<R: Read>(&mut self, input: &mut Input<R>, pgno: u32) -> Result<bool, LtxError> {
        if self.ended {
            return Ok(false);
        }
        let Some((len, stored)) = read_block_header(input, &self.info, pgno)? else {
            self.ended = true;
            return Ok(false);
        };
        if self.info.linked {
            let b = &self.block;
            if b.len() >= WINDOW {
                self.window.clear();
                self.window.extend_from_slice(&b[b.len() - WINDOW..]);
            } else {
                self.window.extend_from_slice(b);
                let excess = self.window.len().saturating_sub(WINDOW);
                self.window.drain(..excess);
            }
        }
        read_block_data(input, &self.info, len, &mut self.scratch)?;
        if stored {
            std::mem::swap(&mut self.block, &mut self.scratch);
        } else {
            self.block.clear();
            self.block.resize(self.info.max_block, 0);
            let n = if self.info.linked && !self.window.is_empty() {
                decompress_into_with_dict(&self.scratch, &mut self.block, &self.window)
            } else {
                decompress_into(&self.scratch, &mut self.block)
            }
            .map_err(|e| bad(pgno, e.to_string()))?;
            self.block.truncate(n);
        }
        self.pos = 0;
        Ok(true)
    }

    /// Fills `out` with the next decompressed bytes.
    pub(crate) fn read_exact<R: Read>(
        &mut self,
        input: &mut Input<R>,
        out: &mut [u8],
        pgno: u32,
    ) -> Result<(), LtxError> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == self.block.len() {
                if !self.next_block(input, pgno)? {
                    return Err(bad(pgno, "the compressed page block ends early"));
                }
                continue;
            }
            let n = (self.block.len() - self.pos).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&self.block[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        Ok(())
    }

    /// Consumes the rest of the frame, which must hold no more data.
    pub(crate) fn finish<R: Read>(&mut self, input: &mut Input<R>) -> Result<(), LtxError> {
        loop {
            if self.pos < self.block.len() {
                return Err(bad(0, "data follows the end of the compressed page block"));
            }
            if !self.next_block(input, 0)? {
                return Ok(());
            }
        }
    }
}
