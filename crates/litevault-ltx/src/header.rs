//! The LTX file header and trailer, and transaction IDs.

use std::fmt;
use std::str::FromStr;

use super::{
    CHECKSUM_FLAG, Checksum, HEADER_FLAG_COMPRESS_LZ4, HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE,
    LtxError, MAGIC, TRAILER_SIZE, VERSION, is_valid_page_size, lock_pgno,
};

/// A transaction ID. Formats as 16 lowercase hex digits, the way LTX file names spell it.
///
/// ```
/// use litevault_ltx::Txid;
/// let t: Txid = "1e".parse().unwrap();
/// assert_eq!(t.to_string(), "000000000000001e");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Txid(pub u64);

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::LowerHex for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Txid({:016x})", self.0)
    }
}

impl FromStr for Txid {
    type Err = LtxError;

    /// Accepts 1 to 16 hex digits (either case), nothing else: no sign, no `0x`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if (1..=16).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(v) = u64::from_str_radix(s, 16)
        {
            return Ok(Txid(v));
        }
        Err(LtxError::InvalidTxid {
            input: s.to_owned(),
        })
    }
}

/// The 100-byte header of an LTX file.
///
/// ```
/// use litevault_ltx::{Checksum, Header, Txid};
/// let h = Header { page_size: 4096, commit: 2, min_txid: Txid(1), max_txid: Txid(1), ..Header::default() };
/// h.validate().unwrap();
/// assert_eq!(Header::decode(&h.encode()).unwrap(), h);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Format version. Not stored in the file (Go derives it from the library version);
    /// [`Header::decode`] sets 3, or 1 when the v0.3-only compress flag is present, and the
    /// [`Decoder`](super::Decoder) refines it from the page frames (1 or 2 for files with
    /// 4-byte page headers). The encoder always writes version 3.
    pub version: u32,
    /// Header flags: [`HEADER_FLAG_NO_CHECKSUM`] (v0.4+) or [`HEADER_FLAG_COMPRESS_LZ4`] (v0.3).
    pub flags: u32,
    /// Database page size in bytes.
    pub page_size: u32,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    /// First transaction in the file.
    pub min_txid: Txid,
    /// Last transaction in the file.
    pub max_txid: Txid,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Database checksum before this file is applied; zero for snapshots and for files
    /// with [`HEADER_FLAG_NO_CHECKSUM`].
    pub pre_apply_checksum: Checksum,
    /// Offset in the source WAL of the first frame; zero if not from a WAL or compacted.
    pub wal_offset: i64,
    /// Bytes of the source WAL covered; zero if not from a WAL or compacted.
    pub wal_size: i64,
    /// Salt-1 of the source WAL header; zero if not from a WAL or compacted.
    pub wal_salt1: u32,
    /// Salt-2 of the source WAL header; zero if not from a WAL or compacted.
    pub wal_salt2: u32,
    /// ID of the node that wrote the file (LiteFS); zero if unset.
    pub node_id: u64,
    /// litevault's rolling checksums kept in the reserved header bytes of a
    /// [`HEADER_FLAG_NO_CHECKSUM`] file (Litestream-compatible mode): Litestream
    /// 0.5 restores only files without checksums, so this is where litevault
    /// keeps the proof it verifies on restore. Layout: bytes 80..88 pre-apply,
    /// 88..96 post-apply, 96..100 the marker `LVC1`. The file checksum covers
    /// them like every other header byte.
    pub reserved_checksums: Option<ReservedChecksums>,
}

/// Pre- and post-apply checksums kept in the reserved header bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservedChecksums {
    /// Database checksum before the file is applied (the flag alone for an
    /// empty database; zero for a snapshot).
    pub pre_apply: Checksum,
    /// Database checksum after the file is applied.
    pub post_apply: Checksum,
}

/// Marker of [`ReservedChecksums`] in header bytes 96..100.
pub const RESERVED_CHECKSUMS_MARKER: &[u8; 4] = b"LVC1";

impl Default for Header {
    fn default() -> Self {
        Self {
            version: VERSION,
            flags: 0,
            page_size: 0,
            commit: 0,
            min_txid: Txid(0),
            max_txid: Txid(0),
            timestamp_ms: 0,
            pre_apply_checksum: Checksum(0),
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
            reserved_checksums: None,
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Header {
    /// Whether the file holds the whole database: it starts at TXID 1.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }

    /// Whether the file carries no checksums ([`HEADER_FLAG_NO_CHECKSUM`]).
    pub fn no_checksum(&self) -> bool {
        self.flags & HEADER_FLAG_NO_CHECKSUM != 0
    }

    /// The lock page number for this page size.
    pub fn lock_pgno(&self) -> u32 {
        lock_pgno(self.page_size)
    }

    /// Encodes the header. `version` is not stored.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.0.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        // Bytes 80..100 are reserved: zero, or litevault's checksums.
        if let Some(r) = self.reserved_checksums {
            b[80..88].copy_from_slice(&r.pre_apply.0.to_be_bytes());
            b[88..96].copy_from_slice(&r.post_apply.0.to_be_bytes());
            b[96..100].copy_from_slice(RESERVED_CHECKSUMS_MARKER);
        }
        b
    }

    /// Decodes a header from the first 100 bytes of `b`. Checks only the magic, like Go's
    /// `UnmarshalBinary`; call [`validate`](Self::validate) for the field rules.
    pub fn decode(b: &[u8]) -> Result<Header, LtxError> {
        if b.len() < HEADER_SIZE {
            return Err(LtxError::Truncated {
                what: "header",
                offset: b.len() as u64,
            });
        }
        if &b[0..4] != MAGIC {
            return Err(LtxError::InvalidMagic {
                found: [b[0], b[1], b[2], b[3]],
            });
        }
        let flags = be_u32(b, 4);
        Ok(Header {
            // Only ltx v0.3.x knew the compress flag; see the decoder for the detection.
            version: if flags & HEADER_FLAG_COMPRESS_LZ4 != 0 {
                1
            } else {
                VERSION
            },
            flags,
            page_size: be_u32(b, 8),
            commit: be_u32(b, 12),
            min_txid: Txid(be_u64(b, 16)),
            max_txid: Txid(be_u64(b, 24)),
            timestamp_ms: be_u64(b, 32) as i64,
            pre_apply_checksum: Checksum(be_u64(b, 40)),
            wal_offset: be_u64(b, 48) as i64,
            wal_size: be_u64(b, 56) as i64,
            wal_salt1: be_u32(b, 64),
            wal_salt2: be_u32(b, 68),
            node_id: be_u64(b, 72),
            reserved_checksums: (&b[96..100] == RESERVED_CHECKSUMS_MARKER).then(|| {
                ReservedChecksums {
                    pre_apply: Checksum(be_u64(b, 80)),
                    post_apply: Checksum(be_u64(b, 88)),
                }
            }),
        })
    }

    /// Checks the header the way Go ltx v0.5 `Header.Validate` does:
    ///
    /// - only known flags: `0x2` NoChecksum (v0.4+); `0x1` CompressLZ4 only in version 1;
    /// - page size a power of two from 512 to 65536;
    /// - min and max TXID non-zero, min <= max;
    /// - WAL offset and size not negative, a WAL salt needs a WAL offset, a WAL size needs
    ///   a WAL offset;
    /// - snapshots (min TXID 1) have a zero pre-apply checksum; so do NoChecksum files;
    ///   other files have a non-zero pre-apply checksum with bit 63 set.
    pub fn validate(&self) -> Result<(), LtxError> {
        let invalid = |reason: String| Err(LtxError::InvalidHeader { reason });
        if !(1..=VERSION).contains(&self.version) {
            return Err(LtxError::UnsupportedVersion {
                version: self.version,
            });
        }
        let known = if self.version == 1 {
            // ltx v0.3.x defined CompressLZ4; some Litestream builds paired it with NoChecksum.
            HEADER_FLAG_COMPRESS_LZ4 | HEADER_FLAG_NO_CHECKSUM
        } else {
            HEADER_FLAG_NO_CHECKSUM
        };
        if self.flags & !known != 0 {
            return Err(LtxError::UnsupportedFlags { flags: self.flags });
        }
        if !is_valid_page_size(self.page_size) {
            return invalid(format!(
                "page size {} is not a power of two from 512 to 65536",
                self.page_size
            ));
        }
        if self.min_txid.0 == 0 {
            return invalid("minimum TXID is zero".into());
        }
        if self.max_txid.0 == 0 {
            return invalid("maximum TXID is zero".into());
        }
        if self.min_txid > self.max_txid {
            return invalid(format!(
                "minimum TXID {} is above maximum TXID {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 {
            return invalid(format!("WAL offset {} is negative", self.wal_offset));
        }
        if self.wal_size < 0 {
            return invalid(format!("WAL size {} is negative", self.wal_size));
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return invalid("WAL salt set without a WAL offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return invalid("WAL size set without a WAL offset".into());
        }
        let pre = self.pre_apply_checksum;
        if self.is_snapshot() {
            if pre.0 != 0 {
                return invalid(format!(
                    "snapshot (min TXID 1) has pre-apply checksum {pre}; it must be zero"
                ));
            }
        } else if self.no_checksum() {
            if pre.0 != 0 {
                return invalid(format!(
                    "NoChecksum file has pre-apply checksum {pre}; it must be zero"
                ));
            }
        } else if pre.0 == 0 {
            return invalid("pre-apply checksum is zero on a file that is not a snapshot".into());
        } else if pre.0 & CHECKSUM_FLAG == 0 {
            return invalid(format!("pre-apply checksum {pre} does not have bit 63 set"));
        }
        Ok(())
    }
}

/// The 16-byte trailer of an LTX file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Trailer {
    /// Database checksum after this file is applied; zero in NoChecksum files.
    pub post_apply_checksum: Checksum,
    /// CRC-64/GO-ISO of the file (see the [module docs](super)), bit 63 set.
    pub file_checksum: Checksum,
}

impl Trailer {
    /// Encodes the trailer.
    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.0.to_be_bytes());
        b
    }

    /// Decodes a trailer from the first 16 bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Trailer, LtxError> {
        if b.len() < TRAILER_SIZE {
            return Err(LtxError::Truncated {
                what: "trailer",
                offset: b.len() as u64,
            });
        }
        Ok(Trailer {
            post_apply_checksum: Checksum(be_u64(b, 0)),
            file_checksum: Checksum(be_u64(b, 8)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: VERSION,
            flags: 0,
            page_size: 4096,
            commit: 0x27,
            min_txid: Txid(0x1c),
            max_txid: Txid(0x1d),
            timestamp_ms: 1_795_000_000_123,
            pre_apply_checksum: Checksum(CHECKSUM_FLAG | 0x1234),
            wal_offset: 32,
            wal_size: 4128,
            wal_salt1: 0x8619_eeb1,
            wal_salt2: 0x358a_fadf,
            node_id: 7,
            reserved_checksums: None,
        }
    }

    #[test]
    fn header_round_trip() {
        let h = sample();
        h.validate().unwrap();
        let b = h.encode();
        assert_eq!(&b[0..4], b"LTX1");
        assert_eq!(&b[8..12], &4096u32.to_be_bytes());
        assert_eq!(&b[64..68], &0x8619_eeb1u32.to_be_bytes());
        assert!(b[80..].iter().all(|&x| x == 0));
        assert_eq!(Header::decode(&b).unwrap(), h);
    }

    #[test]
    fn header_negative_timestamp_round_trip() {
        let h = Header {
            timestamp_ms: -5,
            ..sample()
        };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn header_decode_errors() {
        let b = sample().encode();
        assert!(matches!(
            Header::decode(&b[..99]),
            Err(LtxError::Truncated { what: "header", .. })
        ));
        let mut bad = b;
        bad[3] = b'2';
        assert!(matches!(
            Header::decode(&bad),
            Err(LtxError::InvalidMagic { found }) if &found == b"LTX2"
        ));
    }

    #[test]
    fn header_version_from_flags() {
        let mut h = sample();
        h.flags = HEADER_FLAG_COMPRESS_LZ4;
        assert_eq!(Header::decode(&h.encode()).unwrap().version, 1);
        h.flags = HEADER_FLAG_NO_CHECKSUM;
        assert_eq!(Header::decode(&h.encode()).unwrap().version, 3);
    }

    #[test]
    fn header_validation_rules() {
        let ok = sample();
        let bad = |f: &dyn Fn(&mut Header)| {
            let mut h = ok;
            f(&mut h);
            h.validate().unwrap_err()
        };
        assert!(matches!(
            bad(&|h| h.version = 4),
            LtxError::UnsupportedVersion { version: 4 }
        ));
        assert!(matches!(
            bad(&|h| h.version = 0),
            LtxError::UnsupportedVersion { .. }
        ));
        assert!(matches!(
            bad(&|h| h.flags = 0x4),
            LtxError::UnsupportedFlags { flags: 4 }
        ));
        assert!(matches!(
            bad(&|h| h.flags = 0x1),
            LtxError::UnsupportedFlags { .. }
        ));
        for ps in [0, 256, 1000, 131072] {
            assert!(matches!(
                bad(&|h| h.page_size = ps),
                LtxError::InvalidHeader { .. }
            ));
        }
        type Edit = Box<dyn Fn(&mut Header)>;
        let cases: Vec<Edit> = vec![
            Box::new(|h| h.min_txid = Txid(0)),
            Box::new(|h| h.max_txid = Txid(0)),
            Box::new(|h| h.max_txid = Txid(0x1b)),
            Box::new(|h| h.wal_offset = -1),
            Box::new(|h| h.wal_size = -1),
            Box::new(|h| {
                h.wal_offset = 0;
                h.wal_size = 0;
            }),
            Box::new(|h| {
                h.wal_offset = 0;
                h.wal_salt1 = 0;
                h.wal_salt2 = 0;
            }),
            Box::new(|h| h.pre_apply_checksum = Checksum(0)),
            Box::new(|h| h.pre_apply_checksum = Checksum(0x1234)),
            Box::new(|h| h.min_txid = Txid(1)),
            Box::new(|h| h.flags = HEADER_FLAG_NO_CHECKSUM),
        ];
        for (i, f) in cases.iter().enumerate() {
            assert!(
                matches!(bad(&**f), LtxError::InvalidHeader { .. }),
                "case {i}"
            );
        }
        // Accepted variants.
        let mut h = ok;
        h.flags = HEADER_FLAG_NO_CHECKSUM;
        h.pre_apply_checksum = Checksum(0);
        h.validate().unwrap();
        let mut h = ok;
        h.min_txid = Txid(1);
        h.pre_apply_checksum = Checksum(0);
        h.validate().unwrap();
        let mut h = ok;
        h.version = 1;
        h.flags = HEADER_FLAG_COMPRESS_LZ4;
        h.validate().unwrap();
        // A WAL offset without a size is fine in v0.5 (not in v0.3).
        let mut h = ok;
        h.wal_size = 0;
        h.validate().unwrap();
    }

    #[test]
    fn trailer_round_trip() {
        let t = Trailer {
            post_apply_checksum: Checksum(CHECKSUM_FLAG | 5),
            file_checksum: Checksum(CHECKSUM_FLAG | 6),
        };
        assert_eq!(Trailer::decode(&t.encode()).unwrap(), t);
        assert!(Trailer::decode(&[0; 15]).is_err());
    }

    #[test]
    fn txid_format_and_parse() {
        assert_eq!(Txid(0x1e).to_string(), "000000000000001e");
        assert_eq!(format!("{:x}", Txid(0x1e)), "000000000000001e");
        assert_eq!(format!("{:?}", Txid(1)), "Txid(0000000000000001)");
        assert_eq!("1".parse::<Txid>().unwrap(), Txid(1));
        assert_eq!("000000000000001E".parse::<Txid>().unwrap(), Txid(0x1e));
        assert_eq!("ffffffffffffffff".parse::<Txid>().unwrap(), Txid(u64::MAX));
        for bad in ["", "+1", "0x1", "g", "00000000000000001", " 1", "-1"] {
            assert!(
                matches!(bad.parse::<Txid>(), Err(LtxError::InvalidTxid { .. })),
                "{bad}"
            );
        }
        assert!(Txid(1) < Txid(2));
    }

    #[test]
    fn checksum_display() {
        assert_eq!(Checksum(0xab).to_string(), "00000000000000ab");
        assert_eq!(format!("{:x}", Checksum(0xab)), "00000000000000ab");
    }
}
