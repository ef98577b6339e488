//! Codec throughput: LTX encode, decode and page checksums, and the scan
//! of a WAL for its committed transactions.
//!
//! `cargo bench --bench ltx_codec`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use litevault::ltx::{self, Checksum, DbChecksum, Encoder, Header, Txid};

const PAGE: u32 = 4096;

/// Pages that look like SQLite table pages: part text, part random.
fn pages(n: u32) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            (0..PAGE as usize)
                .map(|j| {
                    if j % 64 < 40 {
                        b"user-name-and-some-text "[j % 24]
                    } else {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x as u8).wrapping_add(i as u8)
                    }
                })
                .collect()
        })
        .collect()
}

fn encode(pages: &[Vec<u8>], min: u64, pre: Checksum) -> Vec<u8> {
    let header = Header {
        page_size: PAGE,
        commit: pages.len() as u32,
        min_txid: Txid(min),
        max_txid: Txid(min),
        timestamp_ms: 1,
        pre_apply_checksum: pre,
        ..Header::default()
    };
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    let mut sum = DbChecksum::new();
    for (i, p) in pages.iter().enumerate() {
        enc.encode_page(i as u32 + 1, p).unwrap();
        sum.apply_page(i as u32 + 1, p);
    }
    enc.finish(sum.value()).unwrap().0
}

fn codec(c: &mut Criterion) {
    let n = 2048; // 8 MiB of pages
    let data = pages(n);
    let mut g = c.benchmark_group("ltx");
    g.throughput(Throughput::Bytes(n as u64 * PAGE as u64));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("encode", "8MiB"), |b| {
        b.iter(|| encode(&data, 1, Checksum(0)))
    });
    let file = encode(&data, 1, Checksum(0));
    g.bench_function(BenchmarkId::new("decode", "8MiB"), |b| {
        b.iter(|| {
            let mut d = ltx::Decoder::new(&file[..]).unwrap();
            let mut buf = Vec::new();
            while d.next_page(&mut buf).unwrap().is_some() {}
            d.finish().unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("page_checksum", "8MiB"), |b| {
        b.iter(|| {
            let mut s = DbChecksum::new();
            for (i, p) in data.iter().enumerate() {
                s.apply_page(i as u32 + 1, p);
            }
            s.value()
        })
    });
    g.finish();
}

/// A 32 MiB WAL of 4 KiB pages, one commit every 16 frames: the scan that
/// finds its committed transactions (frame checksums chained through every
/// frame), and the bare checksum over the same bytes.
fn wal_scan(c: &mut Criterion) {
    use litevault::wal::{self, WalBuilder, WalChecksum, WalCursor, WalHeader};
    let h = WalHeader::new(false, PAGE, 3, 0x1234_5678, 0x9abc_def0).unwrap();
    let frames = 32 * 1024 * 1024 / h.frame_size();
    let data = pages(1000);
    let mut b = WalBuilder::new(h);
    for i in 0..frames {
        let commit = if i % 16 == 15 { 1000 } else { 0 };
        b.frame((i % 1000) as u32 + 1, &data[i % 1000], commit);
    }
    let bytes = b.into_bytes();
    let body = &bytes[wal::WAL_HEADER_SIZE..];
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("scan_committed", "32MiB"), |b| {
        b.iter(|| {
            let scan = wal::scan_committed(&h, WalCursor::start(&h), body);
            assert_eq!(scan.txns.len(), frames / 16);
            scan
        })
    });
    let whole = &bytes[32..32 + (bytes.len() - 32) / 8 * 8];
    g.bench_function(BenchmarkId::new("checksum", "32MiB"), |b| {
        b.iter(|| wal::wal_checksum(false, WalChecksum(0, 0), whole))
    });
    g.finish();
}

criterion_group!(benches, codec, wal_scan);
criterion_main!(benches);
