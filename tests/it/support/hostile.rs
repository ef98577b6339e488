//! Forging replicas: LTX files with valid file checksums (made with the
//! crate's own encoder) whose content is whatever a test wants, written
//! where anyone with write access to a bucket could put them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use litevault::Replica;
use litevault::ltx::{CHECKSUM_FLAG, Checksum, DbChecksum, Encoder, Header, Txid};

use crate::support::{Workload, create_db};

pub const PAGE_SIZE: u32 = 4096;

/// A database image (the file after a checkpoint), page by page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image(pub Vec<u8>);

impl Image {
    pub fn pages(&self) -> u32 {
        (self.0.len() / PAGE_SIZE as usize) as u32
    }

    pub fn page(&self, pgno: u32) -> &[u8] {
        let at = (pgno as usize - 1) * PAGE_SIZE as usize;
        &self.0[at..at + PAGE_SIZE as usize]
    }

    pub fn checksum(&self) -> Checksum {
        DbChecksum::from_database(PAGE_SIZE, &self.0).value()
    }

    /// This image with page `pgno` replaced.
    pub fn with_page(&self, pgno: u32, data: &[u8]) -> Image {
        let mut v = self.0.clone();
        let at = (pgno as usize - 1) * PAGE_SIZE as usize;
        v[at..at + PAGE_SIZE as usize].copy_from_slice(data);
        Image(v)
    }
}

/// A real SQLite database run through the workload, one image per
/// committed transaction: `visit(i, image)` after transaction `i`.
pub fn workload_images(dir: &Path, n: i64, mut visit: impl FnMut(i64, Image)) {
    let path = dir.join("source.db");
    let mut c = create_db(&path, PAGE_SIZE);
    Workload::init(&c);
    for i in 1..=n {
        Workload::apply(&mut c, i).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        visit(i, Image(std::fs::read(&path).unwrap()));
    }
}

/// The images after transactions 1..=n.
pub fn images(dir: &Path, n: i64) -> Vec<Image> {
    let mut v = Vec::new();
    workload_images(dir, n, |_, img| v.push(img));
    v
}

/// Milliseconds since the epoch as a time.
pub fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// One forged LTX file.
pub struct Forged<'a> {
    pub level: u8,
    pub min: u64,
    pub max: u64,
    pub commit: u32,
    pub pages: Vec<(u32, &'a [u8])>,
    /// Ignored for a snapshot (min 1).
    pub pre: Checksum,
    pub post: Checksum,
    pub timestamp_ms: i64,
}

impl Forged<'_> {
    /// The file's bytes: a well-formed LTX file with a valid file checksum.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            page_size: PAGE_SIZE,
            commit: self.commit,
            min_txid: Txid(self.min),
            max_txid: Txid(self.max),
            timestamp_ms: self.timestamp_ms,
            pre_apply_checksum: if self.min == 1 { Checksum(0) } else { self.pre },
            ..Header::default()
        };
        let mut enc = Encoder::new(Vec::new(), header).unwrap();
        for (pgno, data) in &self.pages {
            enc.encode_page(*pgno, data).unwrap();
        }
        enc.finish(self.post).unwrap().0
    }

    /// Writes it into the replica under its name.
    pub async fn write(&self, replica: &Replica) {
        replica
            .write_file(
                self.level,
                Txid(self.min),
                Txid(self.max),
                self.encode().into(),
                at_ms(self.timestamp_ms),
            )
            .await
            .unwrap();
    }
}

/// The level-0 file taking `prev` to `next` at `txid`: the pages that
/// differ (all of them for TXID 1, a snapshot), as the replicator ships them.
pub fn step<'a>(txid: u64, prev: Option<&Image>, next: &'a Image, timestamp_ms: i64) -> Forged<'a> {
    let pages = (1..=next.pages())
        .filter(|p| match prev {
            Some(prev) => *p > prev.pages() || prev.page(*p) != next.page(*p),
            None => true,
        })
        .map(|p| (p, next.page(p)))
        .collect();
    Forged {
        level: 0,
        min: txid,
        max: txid,
        commit: next.pages(),
        pages,
        pre: prev.map(Image::checksum).unwrap_or(Checksum(CHECKSUM_FLAG)),
        post: next.checksum(),
        timestamp_ms,
    }
}

/// Writes the chain of level-0 files for `images` (TXID i+1 for image i),
/// with the given timestamps.
pub async fn write_chain(replica: &Replica, images: &[Image], timestamps: &[i64]) {
    for (i, img) in images.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &images[p]);
        step(i as u64 + 1, prev, img, timestamps[i])
            .write(replica)
            .await;
    }
}

/// Entries beside `out` whose names start with `out`'s name followed by
/// `.tmp` (the restore's temporary files and folders).
pub fn temp_leftovers(out: &Path) -> Vec<PathBuf> {
    let name = out.file_name().unwrap().to_string_lossy().to_string();
    let dir = out.parent().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with(&format!("{name}.tmp")))
                .unwrap_or(false)
        })
        .collect()
}

/// After a failed restore: the target is untouched (absent) and no
/// temporary file is left.
pub fn assert_nothing_left(out: &Path) {
    assert!(!out.exists(), "{} was written", out.display());
    assert_eq!(
        temp_leftovers(out),
        Vec::<PathBuf>::new(),
        "temporary files left"
    );
}
