//! Hostile replicas through the library's restore. Whatever `arbitrary` makes
//! of the input becomes a replica (an in-memory object store) of up to eight
//! LTX files, and sometimes a tail of 60 to 99 small ones after them (past the
//! merge's fan-in of 64, so a chain is merged by groups into runs too).
//!
//! Each file holds the pages that take the database, as the files before it
//! left it, to one of a few versions of a real SQLite database (made once,
//! with SQLite). It is written by litevault's encoder when the encoder
//! accepts it, otherwise by an independent writer (`common::write_raw`),
//! both with a correct file checksum, and forged on request: a `commit` of
//! 0x7fffffff or 0xffffffff or too small, a file name with TXID 0, running
//! backwards or naming another range than the header, a chain whose commit
//! claims pages no file writes (a page dropped), a junk page, timestamps
//! going backwards, wrong pre- or post-apply checksums, no checksums
//! (Litestream's files), another page size, the file cut short or a byte
//! flipped. Snapshots (TXID 1 to N) at any level offer the planner other
//! routes.
//!
//! The replica is restored (the latest state, a TXID, or a time) with
//! `litevault::restore`, and the outcome is checked against a model of the
//! LTX rules built here:
//!
//! - the planner's chain (`chain::plan_chain`) starts at TXID 1, is
//!   contiguous, ends at the target and has the fewest files (a search of
//!   this target's own); `chain::restore_points` and `chain::reachable`
//!   agree with that search;
//! - the target resolves as the model says (for a time: the newest restore
//!   point such that it and every earlier one were committed by then);
//! - a restore succeeds only when every file of the chain decodes, is named
//!   as its header says, has the chain's page size, links to the one before
//!   by checksum, and the chain writes every page up to the last commit with
//!   the post-apply checksum the last file records; the database it writes is
//!   then, byte for byte, the pages applied in order and cut at each commit;
//! - a chain that passes all of that and rebuilds one of the real database's
//!   versions restores (no valid replica is refused);
//! - a failed restore leaves nothing behind (no output, no `.tmp`, no
//!   staging folder).
//!
//! Memory stays bounded whatever the headers claim: scripts/fuzz.sh runs
//! with `-rss_limit_mb`, so an allocation sized by a forged `commit` is a
//! finding.
//!
//! `RESTORE_CHAIN_SHOW=1` prints, for each input run, the replica, what the
//! model expects and what the restore did (to read a seed or a finding:
//! `RESTORE_CHAIN_SHOW=1 cargo +nightly fuzz run restore_chain FILE`). The
//! seeds in `seeds/restore_chain` are written by `restore_chain_seeds.py`.
#![no_main]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::write_raw;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use litevault::chain;
use litevault::ltx::{
    Checksum, DbChecksum, Encoder, HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE, Header, ReservedChecksums,
    Txid, decode_all, lock_pgno, rolling_checksums,
};
use litevault::replica::{KeyLayout, LtxFileInfo, Replica};
use litevault::restore::{RestoreOptions, RestoreOutcome, RestoreTarget, restore};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;

/// A page number and its bytes.
type Pages = Vec<(u32, Vec<u8>)>;

#[derive(Arbitrary, Debug)]
enum Range {
    /// Continues the previous file (or starts at TXID 1): `n % 3` more TXIDs.
    Next(u8),
    /// A snapshot from TXID 1 to about where the previous file ended.
    Snapshot(u8),
    /// The previous file's range again (at its own level, another route).
    Same,
    Zero,
    Backwards,
    Any(u64, u64),
}

#[derive(Arbitrary, Debug)]
enum Commit {
    /// The size of the version written.
    Version,
    Small(u8),
    Huge,
    Max,
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Stamp {
    Forward(u16),
    Backwards(u16),
    Any(i64),
}

#[derive(Arbitrary, Debug)]
enum Sum {
    Right,
    Zero,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Checksums {
    /// In the header and trailer (litevault's default).
    Standard,
    /// NoChecksum, with both in the reserved header bytes
    /// (`--litestream-compat`).
    Reserved,
    /// NoChecksum and nothing recorded (a file Litestream wrote).
    None,
}

#[derive(Arbitrary, Debug)]
enum Name {
    /// The header's range.
    Header,
    Zero,
    ZeroMin,
    Backwards,
    Shifted(i8),
}

#[derive(Arbitrary, Debug)]
enum Damage {
    None,
    Truncate(u16),
    Flip(u16, u8),
}

#[derive(Arbitrary, Debug)]
struct FileSpec {
    level: u8,
    range: Range,
    /// The database version the file takes the database to.
    version: u8,
    commit: Commit,
    stamp: Stamp,
    pre: Sum,
    post: Sum,
    checksums: Checksums,
    /// Leave out the n-th page the file should write.
    drop_page: Option<u8>,
    /// A page of junk at this page number.
    junk: Option<(u16, u8)>,
    /// Written in the other page size of the two.
    other_page_size: bool,
    /// The independent writer even where litevault's encoder would do.
    raw: bool,
    name: Name,
    damage: Damage,
}

#[derive(Arbitrary, Debug)]
enum Target {
    Latest,
    Txid(u64),
    /// The last TXID of the n-th file written.
    Listed(u8),
    Time(i64),
    /// The timestamp of the n-th file written, plus a few milliseconds.
    StampOf(u8, i8),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    large_pages: bool,
    files: Vec<FileSpec>,
    tail: Option<u8>,
    target: Target,
}

/// Versions of a real database, one per statement below, in 512- and
/// 4096-byte pages: growing, an index, deletions (free pages), a VACUUM
/// (shrinking), more rows.
struct Versions {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
}

fn make_versions(dir: &Path, page_size: u32) -> Vec<Vec<u8>> {
    let path = dir.join(format!("versions-{page_size}.db"));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).expect("open the versions database");
    conn.execute_batch(&format!(
        "PRAGMA page_size = {page_size}; PRAGMA journal_mode = DELETE;"
    ))
    .expect("set up the versions database");
    // Rows of an eighth of a page each.
    let width = page_size as usize / 8;
    let insert = |from: u32, to: u32| {
        for i in from..=to {
            conn.execute("INSERT INTO t(v) VALUES (?1)", [format!("{i:0width$}")])
                .expect("insert a row");
        }
    };
    let sql = |s: &str| conn.execute_batch(s).expect("a statement");
    let mut versions = Vec::new();
    let mut keep = || versions.push(std::fs::read(&path).expect("read the versions database"));
    sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    keep();
    insert(1, 6);
    keep();
    insert(7, 40);
    keep();
    sql("CREATE INDEX tv ON t(v)");
    keep();
    sql("DELETE FROM t WHERE id % 3 = 0");
    keep();
    sql("VACUUM");
    keep();
    insert(41, 52);
    keep();
    drop(conn);
    let _ = std::fs::remove_file(&path);
    for v in &versions {
        assert_eq!(v.len() % page_size as usize, 0);
    }
    versions
}

/// The scratch folder (in memory where there is a /dev/shm) and the
/// database versions.
fn setup() -> &'static (PathBuf, Versions, tokio::runtime::Runtime) {
    static SETUP: OnceLock<(PathBuf, Versions, tokio::runtime::Runtime)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // libFuzzer ends a run with exit(), so a folder outlives its
        // process: those of processes gone are removed here.
        const PREFIX: &str = "litevault-fuzz-restore-";
        if Path::new("/proc/self").exists()
            && let Ok(entries) = std::fs::read_dir(&base)
        {
            for e in entries.flatten() {
                let name = e.file_name();
                let gone = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(PREFIX))
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        let versions = Versions {
            small: make_versions(&dir, 512),
            large: make_versions(&dir, 4096),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        (dir, versions, rt)
    })
}

fn pages_of(image: &[u8], page_size: u32) -> BTreeMap<u32, Vec<u8>> {
    image
        .chunks_exact(page_size as usize)
        .enumerate()
        .map(|(i, p)| (i as u32 + 1, p.to_vec()))
        .collect()
}

fn checksum_of(state: &BTreeMap<u32, Vec<u8>>, page_size: u32) -> Checksum {
    let lock = lock_pgno(page_size);
    let mut sum = DbChecksum::new();
    for (pgno, page) in state.iter().filter(|(p, _)| **p != lock) {
        sum.apply_page(*pgno, page);
    }
    sum.value()
}

fn junk_page(page_size: u32, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x100;
    (0..page_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A file of the tail: continues the chain and rewrites one page as it is.
const TAIL: FileSpec = FileSpec {
    level: 0,
    range: Range::Next(0),
    version: 0,
    commit: Commit::Version,
    stamp: Stamp::Forward(1),
    pre: Sum::Right,
    post: Sum::Right,
    checksums: Checksums::Standard,
    drop_page: None,
    junk: None,
    other_page_size: false,
    raw: false,
    name: Name::Header,
    damage: Damage::None,
};

/// One file of the replica, as written.
struct Written {
    level: u8,
    name: (u64, u64),
    bytes: Vec<u8>,
}

/// Builds the files of a spec, tracking the database the files leave in
/// the order they are written.
fn build(spec: &Spec, versions: &Versions) -> Vec<Written> {
    let (page_size, images) = if spec.large_pages {
        (4096u32, &versions.large)
    } else {
        (512u32, &versions.small)
    };
    let other_size = if spec.large_pages { 512 } else { 4096 };
    let mut state: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut prev: (u64, u64) = (0, 0);
    let mut stamp: i64 = 1_800_000_000_000;
    let mut out = Vec::new();
    let specs: Vec<&FileSpec> = spec.files.iter().take(8).collect();
    let tail = spec.tail.map(|n| 60 + usize::from(n % 40)).unwrap_or(0);
    for i in 0..specs.len() + tail {
        let (f, in_tail) = match specs.get(i) {
            Some(f) => (*f, false),
            None => (&TAIL, true),
        };
        let (min, max) = match f.range {
            Range::Next(n) => {
                let min = prev.1.saturating_add(1);
                (min, min.saturating_add(u64::from(n % 3)))
            }
            Range::Snapshot(n) => (1, prev.1.saturating_add(u64::from(n % 3)).max(1)),
            Range::Same => prev,
            Range::Zero => (0, 0),
            Range::Backwards => (prev.1.saturating_add(3), prev.1.saturating_add(1)),
            Range::Any(a, b) => (a, b),
        };
        let snapshot = min == 1;
        let before = if snapshot {
            BTreeMap::new()
        } else {
            state.clone()
        };
        // The version written: the tail keeps the database as it is.
        let after = if in_tail {
            state.clone()
        } else {
            pages_of(&images[usize::from(f.version) % images.len()], page_size)
        };
        let mut pages: Pages = after
            .iter()
            .filter(|(p, data)| before.get(p) != Some(data))
            .map(|(p, d)| (*p, d.clone()))
            .collect();
        if in_tail && let Some((p, d)) = after.iter().nth(i % after.len().max(1)) {
            pages = vec![(*p, d.clone())];
        }
        if let Some(n) = f.drop_page
            && !pages.is_empty()
        {
            pages.remove(usize::from(n) % pages.len());
        }
        let size = if f.other_page_size {
            other_size
        } else {
            page_size
        };
        if size != page_size {
            for (_, d) in &mut pages {
                d.resize(size as usize, 0);
            }
        }
        if let Some((pgno, seed)) = f.junk {
            let pgno = u32::from(pgno);
            let page = junk_page(size, seed);
            match pages.binary_search_by_key(&pgno, |p| p.0) {
                Ok(at) => pages[at].1 = page,
                Err(at) => pages.insert(at, (pgno, page)),
            }
        }
        let commit = match f.commit {
            Commit::Version => after.keys().next_back().copied().unwrap_or(0),
            Commit::Small(n) => u32::from(n % 8),
            Commit::Huge => 0x7fff_ffff,
            Commit::Max => u32::MAX,
            Commit::Any(c) => c,
        };
        // The checksums the files should carry: of the database before and
        // after, as this file's pages leave it.
        let mut applied = before.clone();
        for (p, d) in &pages {
            applied.insert(*p, d.clone());
        }
        applied.retain(|p, _| *p <= commit);
        let right_pre = if snapshot {
            Checksum(0)
        } else {
            checksum_of(&before, page_size)
        };
        let right_post = checksum_of(&applied, size);
        let pick = |s: &Sum, right: Checksum| match s {
            Sum::Right => right,
            Sum::Zero => Checksum(0),
            Sum::Any(x) => Checksum(*x),
        };
        let pre = pick(&f.pre, right_pre);
        let post = pick(&f.post, right_post);
        stamp = match f.stamp {
            Stamp::Forward(d) => stamp.saturating_add(i64::from(d)),
            Stamp::Backwards(d) => stamp.saturating_sub(i64::from(d) + 1),
            Stamp::Any(t) => t,
        };
        let (flags, header_pre, reserved) = match f.checksums {
            Checksums::Standard => (0, pre, None),
            Checksums::Reserved => (
                HEADER_FLAG_NO_CHECKSUM,
                Checksum(0),
                Some(ReservedChecksums {
                    pre_apply: pre,
                    post_apply: post,
                }),
            ),
            Checksums::None => (HEADER_FLAG_NO_CHECKSUM, Checksum(0), None),
        };
        let header = Header {
            version: 3,
            flags,
            page_size: size,
            commit,
            min_txid: Txid(min),
            max_txid: Txid(max),
            timestamp_ms: stamp,
            pre_apply_checksum: header_pre,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
            reserved_checksums: reserved,
        };
        let encoded = (!f.raw).then(|| encode(&header, &pages, post)).flatten();
        let mut bytes = encoded.unwrap_or_else(|| {
            let trailer_post = if flags & HEADER_FLAG_NO_CHECKSUM != 0 {
                Checksum(0)
            } else {
                post
            };
            write_raw(&header, &pages, trailer_post)
        });
        match f.damage {
            Damage::None => {}
            Damage::Truncate(n) => bytes.truncate(usize::from(n) % bytes.len()),
            Damage::Flip(at, x) => {
                let at = usize::from(at) % bytes.len();
                bytes[at] ^= x | 1;
            }
        }
        let name = match f.name {
            Name::Header => (min, max),
            Name::Zero => (0, 0),
            Name::ZeroMin => (0, max),
            Name::Backwards => (max.saturating_add(1), min),
            Name::Shifted(d) => (
                min.wrapping_add_signed(i64::from(d)),
                max.wrapping_add_signed(i64::from(d)),
            ),
        };
        out.push(Written {
            level: f.level % 10,
            name,
            bytes,
        });
        if !matches!(f.range, Range::Same) {
            prev = (min, max);
        }
        state = applied;
    }
    out
}

/// litevault's encoder, when it takes the file.
fn encode(header: &Header, pages: &Pages, post: Checksum) -> Option<Vec<u8>> {
    let mut enc = Encoder::new(Vec::new(), *header).ok()?;
    for (pgno, page) in pages {
        enc.encode_page(*pgno, page).ok()?;
    }
    enc.finish(post).ok().map(|(bytes, _)| bytes)
}

/// What the model says a restore must do.
#[derive(Debug)]
enum Expect {
    /// Fail.
    Fail(String),
    /// Succeed with these bytes (the chain rebuilds a real version).
    Restore(Vec<u8>),
    /// Succeed with these bytes, or fail `integrity_check` (whether SQLite
    /// accepts the pages is not modelled).
    Either(Vec<u8>),
}

/// The model's restore of `chain` (the planner's files), given every
/// file's bytes.
fn model(
    chain_files: &[LtxFileInfo],
    bytes: &HashMap<(u8, u64, u64), Vec<u8>>,
    images: &[&Vec<u8>],
) -> Expect {
    let mut state: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut sums: Vec<Option<(Checksum, Checksum)>> = Vec::new();
    let mut page_size = None;
    let mut commit = 0;
    for f in chain_files {
        let data = &bytes[&(f.level, f.min_txid.0, f.max_txid.0)];
        let Ok((h, pages, trailer)) = decode_all(data) else {
            return Expect::Fail(format!("{f} does not decode"));
        };
        if (h.min_txid, h.max_txid) != (f.min_txid, f.max_txid) {
            return Expect::Fail(format!("{f}: the header names another range"));
        }
        if *page_size.get_or_insert(h.page_size) != h.page_size {
            return Expect::Fail(format!("{f}: another page size"));
        }
        for (p, d) in pages {
            state.insert(p, d);
        }
        state.retain(|p, _| *p <= h.commit);
        commit = h.commit;
        sums.push(rolling_checksums(&h, &trailer));
    }
    let page_size = page_size.unwrap_or(0);
    let lock = lock_pgno(page_size);
    let held = state.keys().filter(|p| **p != lock).count() as u64;
    if held != u64::from(commit) - u64::from(commit >= lock) {
        return Expect::Fail(format!("pages missing below commit {commit}"));
    }
    for w in sums.windows(2) {
        if let [Some((_, post)), Some((pre, _))] = w
            && pre != post
        {
            return Expect::Fail("a broken checksum link".into());
        }
    }
    if let Some(Some((_, post))) = sums.last()
        && *post != checksum_of(&state, page_size)
    {
        return Expect::Fail("a wrong post-apply checksum".into());
    }
    let mut image = Vec::with_capacity(state.len() * page_size as usize);
    for p in 1..=commit {
        match state.get(&p) {
            Some(d) => image.extend_from_slice(d),
            None => image.resize(image.len() + page_size as usize, 0),
        }
    }
    if images.iter().any(|v| **v == image) {
        Expect::Restore(image)
    } else {
        Expect::Either(image)
    }
}

/// The fewest files of a chain from TXID 0 to `to`, by a breadth-first
/// search over TXIDs.
fn fewest_files(files: &[LtxFileInfo], to: u64) -> Option<usize> {
    let mut from: HashMap<u64, Vec<u64>> = HashMap::new();
    for f in files {
        if f.max_txid.0 <= to {
            from.entry(f.min_txid.0 - 1).or_default().push(f.max_txid.0);
        }
    }
    let mut dist: HashMap<u64, usize> = HashMap::from([(0, 0)]);
    let mut queue = VecDeque::from([0u64]);
    while let Some(at) = queue.pop_front() {
        let d = dist[&at];
        if at == to {
            return Some(d);
        }
        for next in from.get(&at).into_iter().flatten() {
            if !dist.contains_key(next) {
                dist.insert(*next, d + 1);
                queue.push_back(*next);
            }
        }
    }
    None
}

/// Every TXID a chain from the empty database reaches.
fn reach(files: &[LtxFileInfo]) -> HashSet<u64> {
    let mut reached = HashSet::from([0u64]);
    loop {
        let before = reached.len();
        for f in files {
            if reached.contains(&(f.min_txid.0 - 1)) {
                reached.insert(f.max_txid.0);
            }
        }
        if reached.len() == before {
            return reached;
        }
    }
}

/// Checks the planner on a listing of valid names and returns the chain
/// to `to`, if there is one.
fn check_planner(valid: &[LtxFileInfo], to: u64) -> Option<Vec<LtxFileInfo>> {
    let reached = reach(valid);
    let refs: Vec<&LtxFileInfo> = valid.iter().collect();
    assert_eq!(chain::reachable(&refs), reached, "reachable TXIDs");
    let points: Vec<u64> = chain::restore_points(valid)
        .iter()
        .map(|f| f.max_txid.0)
        .collect();
    let mut want: Vec<u64> = reached.iter().copied().filter(|t| *t != 0).collect();
    want.sort_unstable();
    assert_eq!(points, want, "restore points are the reachable TXIDs");

    let plan = chain::plan_chain(valid, Txid(0), Txid(to));
    let fewest = fewest_files(valid, to);
    match (&plan, fewest) {
        (None, None) => None,
        (Some(c), Some(n)) => {
            assert_eq!(c.len(), n, "the plan to {to} has more files than needed");
            let mut at = 0;
            for f in c {
                assert!(valid.contains(f), "{f} is not in the listing");
                assert_eq!(f.min_txid.0, at + 1, "the plan is not contiguous at {f}");
                at = f.max_txid.0;
            }
            assert_eq!(at, to, "the plan ends at {at}, not {to}");
            plan
        }
        (p, n) => panic!("planner: {p:?}, search: {n:?} files to {to}"),
    }
}

/// Whether to print each input's replica and outcome.
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("RESTORE_CHAIN_SHOW").is_some())
}

fn info(level: u8, min: u64, max: u64, size: usize) -> LtxFileInfo {
    LtxFileInfo {
        level,
        min_txid: Txid(min),
        max_txid: Txid(max),
        size: size as u64,
        created: Default::default(),
    }
}

/// The header timestamp each restore point is read for: the lowest-level
/// file ending there (the planner's rule); `None` if one does not decode.
fn point_stamps(
    valid: &[LtxFileInfo],
    bytes: &HashMap<(u8, u64, u64), Vec<u8>>,
) -> Option<Vec<(u64, i64)>> {
    let reached = reach(valid);
    let mut best: BTreeMap<u64, &LtxFileInfo> = BTreeMap::new();
    for f in valid.iter().filter(|f| reached.contains(&f.max_txid.0)) {
        let e = best.entry(f.max_txid.0).or_insert(f);
        if (f.level, f.min_txid) < (e.level, e.min_txid) {
            *e = f;
        }
    }
    best.into_iter()
        .map(|(t, f)| {
            let data = &bytes[&(f.level, f.min_txid.0, f.max_txid.0)];
            let h = Header::decode(data.get(..HEADER_SIZE)?).ok()?;
            Some((t, h.timestamp_ms))
        })
        .collect()
}

fuzz_target!(|spec: Spec| {
    let (dir, versions, rt) = setup();
    let written = build(&spec, versions);

    // The replica: the last file written under a name wins, as in a store.
    let mut bytes: HashMap<(u8, u64, u64), Vec<u8>> = HashMap::new();
    let mut order = Vec::new();
    for w in &written {
        let key = (w.level, w.name.0, w.name.1);
        if bytes.insert(key, w.bytes.clone()).is_none() {
            order.push(key);
        }
    }
    let store = Arc::new(InMemory::new());
    let replica = Replica::from_store(store.clone(), "", KeyLayout::Ltx, "memory://fuzz");
    rt.block_on(async {
        for (key, data) in &bytes {
            let k = replica.file_key(key.0, Txid(key.1), Txid(key.2));
            store
                .put(&ObjectPath::from(k), data.clone().into())
                .await
                .expect("an in-memory put");
        }
    });
    let listing: Vec<LtxFileInfo> = order
        .iter()
        .map(|k| info(k.0, k.1, k.2, bytes[k].len()))
        .collect();
    let (valid, invalid) = chain::split_valid(listing.clone());
    for f in &valid {
        assert!(
            f.min_txid.0 >= 1 && f.min_txid <= f.max_txid,
            "{f} is not a valid name"
        );
    }
    assert_eq!(valid.len() + invalid.len(), listing.len());

    // The target, as the model resolves it.
    let nth = |n: u8| written.get(usize::from(n) % written.len().max(1));
    let (target, to): (RestoreTarget, Result<u64, String>) = match spec.target {
        Target::Latest => (
            RestoreTarget::Latest,
            valid
                .iter()
                .map(|f| f.max_txid.0)
                .max()
                .ok_or_else(|| "no valid file".into()),
        ),
        Target::Txid(t) => (RestoreTarget::Txid(Txid(t)), Ok(t)),
        Target::Listed(n) => {
            let t = nth(n).map(|w| w.name.1).unwrap_or(1);
            (RestoreTarget::Txid(Txid(t)), Ok(t))
        }
        Target::Time(_) | Target::StampOf(..) => {
            let ms = match spec.target {
                Target::Time(ms) => ms,
                Target::StampOf(n, d) => nth(n)
                    .and_then(|w| Header::decode(w.bytes.get(..HEADER_SIZE)?).ok())
                    .map(|h| h.timestamp_ms.saturating_add(i64::from(d)))
                    .unwrap_or(0),
                _ => unreachable!(),
            };
            // Within the range chrono represents.
            let ms = ms.clamp(-8_000_000_000_000_000, 8_000_000_000_000_000);
            let ts = chrono::DateTime::from_timestamp_millis(ms).expect("a time in range");
            let to = match point_stamps(&valid, &bytes) {
                // A point whose header does not decode may or may not be
                // read before the answer is known: not modelled.
                None => Err(String::new()),
                Some(points) => points
                    .iter()
                    .take_while(|(_, t)| *t <= ms)
                    .last()
                    .map(|(txid, _)| *txid)
                    .ok_or_else(|| "every point is after the time".into()),
            };
            (RestoreTarget::Timestamp(ts), to)
        }
    };
    let unmodelled_time = matches!(&to, Err(e) if e.is_empty());
    let expect = match &to {
        Err(e) => Expect::Fail(e.clone()),
        Ok(t) if !valid.iter().any(|f| f.max_txid.0 == *t) => {
            Expect::Fail(format!("no valid file ends at {t}"))
        }
        Ok(t) => match check_planner(&valid, *t) {
            None => Expect::Fail(format!("no chain reaches {t}")),
            Some(c) => {
                let images: Vec<&Vec<u8>> = if spec.large_pages {
                    versions.large.iter().collect()
                } else {
                    versions.small.iter().collect()
                };
                model(&c, &bytes, &images)
            }
        },
    };

    let out = dir.join("out.db");
    let opts = RestoreOptions {
        target,
        write_state: false,
        ..RestoreOptions::default()
    };
    let result = rt.block_on(restore(&replica, &out, &opts));
    let leftovers: Vec<PathBuf> = [".tmp", ".tmp-ltx", ".tmp-wal", ".tmp-shm", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = out.clone().into_os_string();
            p.push(s);
            PathBuf::from(p)
        })
        .filter(|p| p.exists())
        .collect();
    let restored = std::fs::read(&out).ok();
    let _ = std::fs::remove_file(&out);
    for p in &leftovers {
        let _ = std::fs::remove_dir_all(p);
        let _ = std::fs::remove_file(p);
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    if show() {
        eprintln!("replica:");
        for k in &order {
            eprintln!(
                "  L{} {:016x}-{:016x} ({} bytes)",
                k.0,
                k.1,
                k.2,
                bytes[k].len()
            );
        }
        let expected = match &expect {
            Expect::Fail(why) => format!("fail: {why}"),
            Expect::Restore(image) => format!("restore {} bytes", image.len()),
            Expect::Either(image) => {
                format!("restore {} bytes, or fail integrity_check", image.len())
            }
        };
        eprintln!("target: {:?} (model: {to:?})", opts.target);
        eprintln!("expected: {expected}");
        match &result {
            Ok(outcome) => eprintln!("outcome: {outcome:?}"),
            Err(e) => eprintln!("outcome: error: {e}"),
        }
    }

    match (&result, &expect) {
        (Ok(RestoreOutcome::Restored(report)), Expect::Restore(image) | Expect::Either(image)) => {
            let restored = restored.expect("a restore that succeeds writes the output");
            assert!(
                restored == *image,
                "the restored database is not the chain's pages applied in order"
            );
            assert_eq!(Some(report.txid.0), to.as_ref().ok().copied());
            assert_eq!(
                u64::from(report.pages) * u64::from(report.page_size),
                image.len() as u64
            );
        }
        (Ok(other), _) if unmodelled_time => {
            let _ = other;
        }
        (Ok(other), Expect::Fail(why)) => {
            panic!("restored ({other:?}) a replica that must fail: {why}")
        }
        (Ok(other), _) => panic!("unexpected outcome {other:?}"),
        (Err(e), Expect::Restore(_)) if !unmodelled_time => {
            panic!("a valid replica was refused: {e}")
        }
        (Err(_), _) => assert!(restored.is_none(), "a failed restore left its output"),
    }
});
