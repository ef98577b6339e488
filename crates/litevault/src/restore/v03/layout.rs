//! The layout of a Litestream v0.3 backup and the choice of what to restore
//! from it (pure: no I/O).
//!
//! ```text
//! generations/<generation: 16 hex>/snapshots/<index: 8 hex>.snapshot.lz4
//! generations/<generation: 16 hex>/wal/<index: 8 hex>_<offset: 8 hex>.wal.lz4
//! ```
//!
//! A generation is one unbroken history of the database. A snapshot is the
//! whole database file at the start of a WAL index, LZ4-compressed; a WAL
//! segment is the bytes of the WAL of one index from an offset on (the
//! segment at offset 0 starts with the WAL header), LZ4-compressed. The time
//! of an object is its modification time.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::replica::V03Object;

/// A generation's name: 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl From<Generation> for String {
    fn from(g: Generation) -> String {
        g.to_string()
    }
}

impl std::str::FromStr for Generation {
    type Err = String;
    fn from_str(s: &str) -> Result<Generation, String> {
        parse_hex(s, 16)
            .map(Generation)
            .ok_or_else(|| format!("{s:?} is not a generation name (16 lowercase hex digits)"))
    }
}

/// A hex number of exactly `len` lowercase digits, as v0.3 names things.
fn parse_hex(s: &str, len: usize) -> Option<u64> {
    (s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// A snapshot of a generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The WAL index it was taken at.
    pub index: u32,
    /// The object.
    pub object: V03Object,
}

/// A WAL segment of a generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The WAL index.
    pub index: u32,
    /// Where its bytes start in that index's WAL.
    pub offset: u32,
    /// The object.
    pub object: V03Object,
}

/// The objects of one generation, snapshots by index, segments by index
/// and offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerationObjects {
    /// Its snapshots, by index.
    pub snapshots: Vec<Snapshot>,
    /// Its WAL segments, by index and offset.
    pub segments: Vec<Segment>,
}

impl GenerationObjects {
    /// The times of its first and last objects (v0.3's "created at" and
    /// "updated at" of a generation).
    pub fn bounds(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let times = self
            .snapshots
            .iter()
            .map(|s| s.object.modified)
            .chain(self.segments.iter().map(|s| s.object.modified));
        times.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }
}

/// A whole v0.3 backup, by generation.
pub type Backup = BTreeMap<Generation, GenerationObjects>;

/// Sorts listed objects into generations. Objects whose keys are not v0.3
/// snapshot or segment names are left out.
pub fn parse_backup(objects: Vec<V03Object>) -> Backup {
    let mut backup = Backup::new();
    for object in objects {
        let parts: Vec<&str> = object.key.split('/').collect();
        let [root, g, kind, name] = parts[..] else {
            continue;
        };
        let Ok(generation) = g.parse::<Generation>() else {
            continue;
        };
        if root != crate::replica::V03_ROOT {
            continue;
        }
        let entry = backup.entry(generation).or_default();
        match kind {
            "snapshots" => {
                if let Some(index) = name
                    .strip_suffix(".snapshot.lz4")
                    .and_then(|i| parse_hex(i, 8))
                {
                    entry.snapshots.push(Snapshot {
                        index: index as u32,
                        object,
                    });
                }
            }
            "wal" => {
                let parsed = name
                    .strip_suffix(".wal.lz4")
                    .and_then(|n| n.split_once('_'))
                    .and_then(|(i, o)| Some((parse_hex(i, 8)?, parse_hex(o, 8)?)));
                if let Some((index, offset)) = parsed {
                    entry.segments.push(Segment {
                        index: index as u32,
                        offset: offset as u32,
                        object,
                    });
                }
            }
            _ => {}
        }
    }
    backup.retain(|_, g| !g.snapshots.is_empty() || !g.segments.is_empty());
    for g in backup.values_mut() {
        g.snapshots.sort_by_key(|s| s.index);
        g.segments.sort_by_key(|s| (s.index, s.offset));
    }
    backup
}

/// The key of a WAL segment (to name one that is missing).
pub fn segment_key(generation: Generation, index: u32, offset: u64) -> String {
    format!(
        "{}/{generation}/wal/{index:08x}_{offset:08x}.wal.lz4",
        crate::replica::V03_ROOT
    )
}

/// What to restore from a v0.3 backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V03Target {
    /// The latest state of the generation updated last.
    Latest,
    /// The latest state written at or before this time, in the generation
    /// updated last among those whose objects span the time.
    Timestamp(DateTime<Utc>),
    /// The latest state of a generation, or its state at the end of a WAL
    /// index.
    Generation {
        /// The generation.
        generation: Generation,
        /// The last WAL index to apply (`None`: all of them).
        index: Option<u32>,
    },
}

/// The objects to apply, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The generation.
    pub generation: Generation,
    /// The snapshot to start from.
    pub snapshot: Snapshot,
    /// The WAL indexes to apply after it, in order, each with its segments
    /// by offset.
    pub indexes: Vec<(u32, Vec<Segment>)>,
}

impl Plan {
    /// The last WAL index the plan reaches.
    pub fn last_index(&self) -> u32 {
        self.indexes
            .last()
            .map(|(i, _)| *i)
            .unwrap_or(self.snapshot.index)
    }
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Nothing matches the target.
    NoPoint(String),
    /// A WAL index between the snapshot and the target has no segment at
    /// offset 0: the key of the first missing object.
    Missing(String),
}

/// Chooses the generation, snapshot and segments for a target, as
/// Litestream v0.3's `restore` does: the generation updated last (among
/// those spanning the time, for a timestamp), its newest snapshot (written
/// at or before the time, or at or before the index), then every WAL index
/// from the snapshot's on, with the segments written at or before the time
/// or up to the index.
pub fn plan(backup: &Backup, target: V03Target) -> Result<Plan, PlanError> {
    let at = match target {
        V03Target::Timestamp(ts) => Some(ts),
        _ => None,
    };
    let generation = match target {
        V03Target::Generation { generation, .. } => {
            if !backup.contains_key(&generation) {
                let known: Vec<String> = backup.keys().map(|g| g.to_string()).collect();
                return Err(PlanError::NoPoint(format!(
                    "no generation {generation} (the backup holds: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            generation
        }
        _ => {
            let mut best: Option<(Generation, DateTime<Utc>)> = None;
            for (g, objects) in backup {
                let Some((created, updated)) = objects.bounds() else {
                    continue;
                };
                if at.is_some_and(|ts| ts < created || ts > updated) {
                    continue;
                }
                if best.is_none_or(|(_, u)| updated > u) {
                    best = Some((*g, updated));
                }
            }
            best.map(|(g, _)| g).ok_or_else(|| {
                PlanError::NoPoint(match at {
                    Some(_) => "no generation was written over that time (see `litevault ltx URL --v03` for their time spans)".into(),
                    None => "the backup holds no generation".into(),
                })
            })?
        }
    };
    let objects = &backup[&generation];
    let max_index = match target {
        V03Target::Generation {
            index: Some(index), ..
        } => {
            let highest = objects
                .snapshots
                .iter()
                .map(|s| s.index)
                .chain(objects.segments.iter().map(|s| s.index))
                .max()
                .unwrap_or(0);
            if index > highest {
                return Err(PlanError::NoPoint(format!(
                    "generation {generation} ends at WAL index {highest:08x}"
                )));
            }
            Some(index)
        }
        _ => None,
    };
    let mut snapshot: Option<&Snapshot> = None;
    for s in &objects.snapshots {
        if at.is_some_and(|ts| s.object.modified > ts) || max_index.is_some_and(|m| s.index > m) {
            continue;
        }
        let newer = match (snapshot, max_index) {
            (None, _) => true,
            (Some(_), Some(_)) => true,
            (Some(best), None) => s.object.modified > best.object.modified,
        };
        if newer {
            snapshot = Some(s);
        }
    }
    let snapshot = snapshot.cloned().ok_or_else(|| {
        PlanError::NoPoint(format!(
            "generation {generation} has no snapshot {}",
            match (at, max_index) {
                (Some(ts), _) => format!("written at or before {}", ts.to_rfc3339()),
                (_, Some(i)) => format!("at or before WAL index {i:08x}"),
                _ => "at all".into(),
            }
        ))
    })?;
    let mut by_index: BTreeMap<u32, Vec<Segment>> = BTreeMap::new();
    for s in &objects.segments {
        if at.is_some_and(|ts| s.object.modified > ts) || max_index.is_some_and(|m| s.index > m) {
            break;
        }
        by_index.entry(s.index).or_default().push(s.clone());
    }
    let last = by_index.keys().next_back().copied();
    let mut indexes = Vec::new();
    if let Some(last) = last {
        for index in snapshot.index..=last {
            match by_index.remove(&index) {
                Some(segments) if segments[0].offset == 0 => indexes.push((index, segments)),
                _ => return Err(PlanError::Missing(segment_key(generation, index, 0))),
            }
        }
    }
    Ok(Plan {
        generation,
        snapshot,
        indexes,
    })
}

/// A run of consecutive WAL indexes of a generation, for a listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WalRange {
    /// The first index (8 hex digits).
    pub first_index: String,
    /// The last index (8 hex digits).
    pub last_index: String,
    /// Its segments.
    pub segments: usize,
    /// Their bytes (compressed).
    pub size: u64,
    /// When its first segment was written.
    pub first_written: DateTime<Utc>,
    /// When its last segment was written.
    pub last_written: DateTime<Utc>,
}

/// A snapshot, for a listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotSummary {
    /// Its WAL index (8 hex digits).
    pub index: String,
    /// Its size (compressed).
    pub size: u64,
    /// When it was written.
    pub written: DateTime<Utc>,
}

/// A generation, for a listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GenerationSummary {
    /// Its name.
    pub generation: Generation,
    /// When its first object was written.
    pub created: DateTime<Utc>,
    /// When its last object was written.
    pub updated: DateTime<Utc>,
    /// Its snapshots.
    pub snapshots: Vec<SnapshotSummary>,
    /// Its WAL indexes, by runs of consecutive indexes.
    pub wal: Vec<WalRange>,
}

/// Summarizes a backup: each generation, its snapshots and its runs of WAL
/// indexes, with times.
pub fn summarize(backup: &Backup) -> Vec<GenerationSummary> {
    let mut out = Vec::new();
    for (g, objects) in backup {
        let Some((created, updated)) = objects.bounds() else {
            continue;
        };
        let snapshots = objects
            .snapshots
            .iter()
            .map(|s| SnapshotSummary {
                index: format!("{:08x}", s.index),
                size: s.object.size,
                written: s.object.modified,
            })
            .collect();
        let mut wal: Vec<(u32, u32, WalRange)> = Vec::new();
        for s in &objects.segments {
            let t = s.object.modified;
            match wal.last_mut() {
                Some((_, last, r)) if s.index == *last || s.index == last.wrapping_add(1) => {
                    *last = s.index;
                    r.last_index = format!("{:08x}", s.index);
                    r.segments += 1;
                    r.size += s.object.size;
                    r.first_written = r.first_written.min(t);
                    r.last_written = r.last_written.max(t);
                }
                _ => wal.push((
                    s.index,
                    s.index,
                    WalRange {
                        first_index: format!("{:08x}", s.index),
                        last_index: format!("{:08x}", s.index),
                        segments: 1,
                        size: s.object.size,
                        first_written: t,
                        last_written: t,
                    },
                )),
            }
        }
        out.push(GenerationSummary {
            generation: *g,
            created,
            updated,
            snapshots,
            wal: wal.into_iter().map(|(_, _, r)| r).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, secs: i64) -> V03Object {
        V03Object {
            key: key.into(),
            size: 10,
            modified: DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    const G1: &str = "generations/00000000000000a1";
    const G2: &str = "generations/00000000000000b2";

    fn backup() -> Backup {
        parse_backup(vec![
            obj(&format!("{G1}/snapshots/00000000.snapshot.lz4"), 10),
            obj(&format!("{G1}/wal/00000000_00000000.wal.lz4"), 11),
            obj(&format!("{G1}/wal/00000001_00000000.wal.lz4"), 20),
            obj(&format!("{G1}/wal/00000001_00001038.wal.lz4"), 21),
            obj(&format!("{G1}/snapshots/00000002.snapshot.lz4"), 30),
            obj(&format!("{G1}/wal/00000002_00000000.wal.lz4"), 31),
            obj(&format!("{G2}/snapshots/00000000.snapshot.lz4"), 40),
            obj(&format!("{G2}/wal/00000000_00000000.wal.lz4"), 41),
            obj("generations/not-a-generation/wal/x", 50),
            obj(&format!("{G2}/wal/junk.wal.lz4"), 50),
        ])
    }

    fn indexes(p: &Plan) -> Vec<(u32, Vec<u32>)> {
        p.indexes
            .iter()
            .map(|(i, s)| (*i, s.iter().map(|s| s.offset).collect()))
            .collect()
    }

    #[test]
    fn names_are_parsed_and_junk_is_left_out() {
        let b = backup();
        assert_eq!(b.len(), 2);
        assert_eq!(b[&Generation(0xa1)].snapshots.len(), 2);
        assert_eq!(b[&Generation(0xa1)].segments.len(), 4);
        assert_eq!(b[&Generation(0xb2)].segments.len(), 1);
        assert!("00000000000000A1".parse::<Generation>().is_err());
        assert_eq!(
            segment_key(Generation(0xa1), 1, 0x1038),
            format!("{G1}/wal/00000001_00001038.wal.lz4")
        );
    }

    #[test]
    fn latest_takes_the_generation_updated_last() {
        let p = plan(&backup(), V03Target::Latest).unwrap();
        assert_eq!(p.generation, Generation(0xb2));
        assert_eq!(indexes(&p), vec![(0, vec![0])]);
    }

    #[test]
    fn a_generation_restores_from_its_newest_snapshot() {
        let g = Generation(0xa1);
        let p = plan(
            &backup(),
            V03Target::Generation {
                generation: g,
                index: None,
            },
        )
        .unwrap();
        assert_eq!(p.snapshot.index, 2);
        assert_eq!(indexes(&p), vec![(2, vec![0])]);
        let p = plan(
            &backup(),
            V03Target::Generation {
                generation: g,
                index: Some(1),
            },
        )
        .unwrap();
        assert_eq!(p.snapshot.index, 0);
        assert_eq!(indexes(&p), vec![(0, vec![0]), (1, vec![0, 0x1038])]);
        let e = plan(
            &backup(),
            V03Target::Generation {
                generation: g,
                index: Some(9),
            },
        );
        assert!(matches!(e, Err(PlanError::NoPoint(r)) if r.contains("00000002")));
    }

    #[test]
    fn a_timestamp_cuts_the_segments_and_picks_the_generation_spanning_it() {
        let ts = DateTime::from_timestamp(20, 500).unwrap();
        let p = plan(&backup(), V03Target::Timestamp(ts)).unwrap();
        assert_eq!(p.generation, Generation(0xa1));
        assert_eq!(p.snapshot.index, 0);
        assert_eq!(indexes(&p), vec![(0, vec![0]), (1, vec![0])]);
        let before = DateTime::from_timestamp(5, 0).unwrap();
        assert!(matches!(
            plan(&backup(), V03Target::Timestamp(before)),
            Err(PlanError::NoPoint(_))
        ));
    }

    #[test]
    fn a_missing_wal_index_is_named() {
        let mut b = backup();
        b.get_mut(&Generation(0xa1))
            .unwrap()
            .segments
            .retain(|s| s.index != 1);
        let e = plan(
            &b,
            V03Target::Generation {
                generation: Generation(0xa1),
                index: Some(2),
            },
        );
        // Index 2 has a snapshot: nothing before it is needed.
        assert!(e.is_ok());
        b.get_mut(&Generation(0xa1))
            .unwrap()
            .snapshots
            .retain(|s| s.index != 2);
        let e = plan(
            &b,
            V03Target::Generation {
                generation: Generation(0xa1),
                index: None,
            },
        );
        assert_eq!(
            e,
            Err(PlanError::Missing(format!(
                "{G1}/wal/00000001_00000000.wal.lz4"
            )))
        );
    }
}
