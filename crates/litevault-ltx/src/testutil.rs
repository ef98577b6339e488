//! Test helpers: writers for the older LTX encodings (built from the Go sources' layout,
//! independently of the decoder) and small utilities.

use std::io::{Read, Write};

use lz4_flex::frame::{FrameEncoder, FrameInfo};

use super::checksum::hasher;
use super::varint::put_uvarint;
use super::{CHECKSUM_FLAG, Checksum, DbChecksum, Encoder, Header, Trailer, page_checksum};

/// A header for tests.
pub(crate) fn header(page_size: u32, commit: u32, min: u64, max: u64, pre: Checksum) -> Header {
    Header {
        page_size,
        commit,
        min_txid: super::Txid(min),
        max_txid: super::Txid(max),
        timestamp_ms: 1_700_000_000_000,
        pre_apply_checksum: pre,
        ..Header::default()
    }
}

/// Deterministic page contents: compressible or not depending on `seed`.
pub(crate) fn page(page_size: u32, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..page_size as usize)
        .map(|i| {
            if seed.is_multiple_of(3) {
                (i / 64) as u8 ^ seed as u8
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

/// Encodes a file with our encoder.
pub(crate) fn encode(h: Header, pages: &[(u32, Vec<u8>)], post: Checksum) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new(), h).unwrap();
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).unwrap();
    }
    enc.finish(post).unwrap().0
}

/// The checksum of a snapshot's pages.
pub(crate) fn snapshot_sum(pages: &[(u32, Vec<u8>)]) -> Checksum {
    pages
        .iter()
        .map(|(p, d)| (*p, page_checksum(*p, d)))
        .collect::<DbChecksum>()
        .value()
}

/// ltx v0.5.0 layout: 6-byte page headers with flags 0, each page one LZ4 frame, page
/// index, trailer. The hash covers page headers and uncompressed data.
pub(crate) fn v050_file(
    h: Header,
    pages: &[(u32, Vec<u8>)],
    post: Checksum,
    info: FrameInfo,
) -> Vec<u8> {
    let mut out = h.encode().to_vec();
    let mut hash = hasher();
    hash.update(&out);
    let mut index = Vec::new();
    for (pgno, data) in pages {
        let start = out.len() as u64;
        let mut ph = pgno.to_be_bytes().to_vec();
        ph.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&ph);
        hash.update(&ph);
        let mut enc = FrameEncoder::with_frame_info(info.clone(), Vec::new());
        enc.write_all(data).unwrap();
        out.extend_from_slice(&enc.finish().unwrap());
        hash.update(data);
        put_uvarint(&mut index, u64::from(*pgno));
        put_uvarint(&mut index, start);
        put_uvarint(&mut index, out.len() as u64 - start);
    }
    let mut tail = vec![0u8; 6];
    tail.extend_from_slice(&index);
    tail.push(0);
    tail.extend_from_slice(&(index.len() as u64 + 1).to_be_bytes());
    tail.extend_from_slice(&post.0.to_be_bytes());
    hash.update(&tail);
    out.extend_from_slice(&tail);
    out.extend_from_slice(&(CHECKSUM_FLAG | hash.finalize()).to_be_bytes());
    out
}

/// ltx v0.3.x (LiteFS) layout: 4-byte page headers, raw pages, 4 zero bytes, trailer; with
/// `compress`, everything between header and trailer is one LZ4 frame (header flag 0x1).
pub(crate) fn v03_file(
    mut h: Header,
    pages: &[(u32, Vec<u8>)],
    post: Checksum,
    compress: Option<FrameInfo>,
) -> Vec<u8> {
    if compress.is_some() {
        h.flags |= super::HEADER_FLAG_COMPRESS_LZ4;
    }
    let head = h.encode();
    let mut body = Vec::new();
    for (pgno, data) in pages {
        body.extend_from_slice(&pgno.to_be_bytes());
        body.extend_from_slice(data);
    }
    body.extend_from_slice(&[0; 4]);
    let mut hash = hasher();
    hash.update(&head);
    hash.update(&body);
    hash.update(&post.0.to_be_bytes());
    let trailer = Trailer {
        post_apply_checksum: post,
        file_checksum: Checksum(CHECKSUM_FLAG | hash.finalize()),
    };
    let mut out = head.to_vec();
    match compress {
        Some(info) => {
            let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(&body).unwrap();
            out.extend_from_slice(&enc.finish().unwrap());
        }
        None => out.extend_from_slice(&body),
    }
    out.extend_from_slice(&trailer.encode());
    out
}

/// A reader that hands out at most `chunk` bytes per call.
pub(crate) struct Trickle<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
