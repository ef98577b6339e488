//! Merging a run of LTX files into one, a bounded number open at a time.
//!
//! Under a steady writer a level-1 compaction takes its inputs from the
//! local store, where each level-0 file that went up merged is still kept
//! as the commits it was made of: hundreds of pieces, thousands after an
//! outage. A decoder holds a reader and page buffers (and, for a file, a
//! descriptor), so merging 1,500 pieces at once held 55 MB. Here at most
//! [`FAN_IN`] are open at once: a longer run is merged [`FAN_IN`] at a time
//! into temporary files beside the local store, and those are merged in
//! turn. Each group's output is exactly what a compaction of that group
//! writes, so the last merge sees a valid chain and gives the same file as
//! a merge of the whole run at once.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::ReplicateError;
use crate::body::{LtxBody, SpillWriter};
use crate::ltx::{self, Checksum, Header};

/// The most files open at once in a merge.
pub(super) const FAN_IN: usize = 64;

/// Group outputs larger than this go to a temporary file.
const GROUP_IN_MEMORY: usize = 1 << 20;

/// A reader over one input.
pub(super) type Reader = Box<dyn Read + Send>;

/// One input of a merge, not open yet.
pub(super) enum Piece {
    /// In memory (a small local file, a download).
    Bytes(Bytes),
    /// A file of the local store.
    Path(PathBuf),
    /// A group's output, removed when dropped.
    Merged(LtxBody),
}

impl Piece {
    /// A local store's body.
    pub(super) fn of(body: LtxBody) -> Piece {
        match body {
            LtxBody::Memory(b) => Piece::Bytes(b),
            LtxBody::File { path, .. } => Piece::Path(path),
            spilled @ LtxBody::Spilled(_) => Piece::Merged(spilled),
        }
    }

    fn open(&self) -> Result<Reader, ReplicateError> {
        let path = match self {
            Piece::Bytes(b) => return Ok(Box::new(std::io::Cursor::new(b.clone()))),
            Piece::Merged(LtxBody::Memory(b)) => {
                return Ok(Box::new(std::io::Cursor::new(b.clone())));
            }
            Piece::Path(p) => p.as_path(),
            Piece::Merged(body) => body.file_path().ok_or_else(|| {
                ReplicateError::Internal("a merged piece has neither bytes nor a file".into())
            })?,
        };
        let file = std::fs::File::open(path).map_err(|source| ReplicateError::Local {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Box::new(std::io::BufReader::new(file)))
    }
}

/// Opens `pieces` (at most [`FAN_IN`] of them, for a bounded merge) as
/// decoders; `name(i)` names piece `i` in errors.
pub(super) fn open_all(
    pieces: &[Piece],
    name: impl Fn(usize) -> String,
) -> Result<Vec<ltx::Decoder<Reader>>, ReplicateError> {
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            ltx::Decoder::new(p.open()?).map_err(|source| ReplicateError::BadFile {
                file: name(i),
                source,
            })
        })
        .collect()
}

/// Merges `pieces` (a run, oldest first) in groups of `fan_in` (at least
/// two; [`FAN_IN`] in the replicator), as often as needed, until at most
/// `fan_in` are left for the last merge. Group outputs go to `dir` (or
/// memory, when small).
pub(super) fn reduce(
    mut pieces: Vec<Piece>,
    fan_in: usize,
    dir: &Path,
    litestream_compat: bool,
    name: &str,
) -> Result<Vec<Piece>, ReplicateError> {
    let fan_in = fan_in.max(2);
    while pieces.len() > fan_in {
        let mut next = Vec::with_capacity(pieces.len().div_ceil(fan_in));
        let mut rest = pieces.into_iter().peekable();
        while rest.peek().is_some() {
            let group: Vec<Piece> = rest.by_ref().take(fan_in).collect();
            if group.len() == 1 {
                next.extend(group);
                continue;
            }
            let inputs = open_all(&group, |_| name.to_string())?;
            let (Some(first), Some(last)) = (
                inputs.first().map(|d| *d.header()),
                inputs.last().map(|d| *d.header()),
            ) else {
                continue;
            };
            let (opts, _) = options(&first, &last, litestream_compat);
            let bad = |source| ReplicateError::BadFile {
                file: name.to_string(),
                source,
            };
            let (w, _) =
                ltx::compact(inputs, SpillWriter::new(dir, GROUP_IN_MEMORY), opts).map_err(bad)?;
            let body = w.finish().map_err(|source| ReplicateError::Local {
                path: dir.to_path_buf(),
                source,
            })?;
            next.push(Piece::Merged(body));
        }
        pieces = next;
    }
    Ok(pieces)
}

/// How a run whose oldest input has header `first` and newest `last` is
/// merged: its options, and the post-apply checksum its inputs record
/// (`None` when the newest input keeps it in its trailer only).
///
/// The output keeps the inputs' checksums. It is written in Litestream's
/// form (the NoChecksum flag, litevault's checksums in the reserved header
/// bytes) when asked, or when the oldest input is in that form, and the
/// post-apply checksum is known before the merge.
pub(super) fn options(
    first: &Header,
    last: &Header,
    litestream_compat: bool,
) -> (ltx::CompactOptions, Option<Checksum>) {
    let pre = first
        .reserved_checksums
        .map(|r| r.pre_apply)
        .or((!first.no_checksum()).then_some(first.pre_apply_checksum));
    let post = last.reserved_checksums.map(|r| r.post_apply);
    let compat = litestream_compat || first.no_checksum();
    let opts = ltx::CompactOptions {
        pre_apply_checksum: if first.is_snapshot() { None } else { pre },
        post_apply_checksum: post,
        litestream_compat: compat && post.is_some(),
        ..Default::default()
    };
    (opts, post)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testchain::{encode, histories};

    /// Merges `inputs` (at most [`FAN_IN`]) as the replicator does.
    fn merge(inputs: Vec<ltx::Decoder<Reader>>, compat: bool) -> Result<Vec<u8>, String> {
        let (first, last) = (*inputs[0].header(), *inputs[inputs.len() - 1].header());
        let (opts, _) = options(&first, &last, compat);
        ltx::compact(inputs, Vec::new(), opts)
            .map(|(w, _)| w)
            .map_err(|e| e.to_string())
    }

    /// The whole run merged at once.
    fn at_once(files: &[Vec<u8>], compat: bool) -> Result<Vec<u8>, String> {
        let inputs = files
            .iter()
            .map(|f| {
                let r: Reader = Box::new(std::io::Cursor::new(f.clone()));
                ltx::Decoder::new(r).unwrap()
            })
            .collect();
        merge(inputs, compat)
    }

    /// The same run reduced in groups first: half the inputs in memory,
    /// half in files.
    fn in_groups(
        files: &[Vec<u8>],
        fan_in: usize,
        compat: bool,
        dir: &Path,
    ) -> Result<Vec<u8>, String> {
        let pieces = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i % 2 == 0 {
                    Piece::Bytes(Bytes::from(f.clone()))
                } else {
                    let p = dir.join(format!("{i}.ltx"));
                    std::fs::write(&p, f).unwrap();
                    Piece::Path(p)
                }
            })
            .collect();
        let left = reduce(pieces, fan_in, dir, compat, "test").map_err(|e| e.to_string())?;
        assert!(left.len() <= fan_in);
        merge(
            open_all(&left, |_| "test".into()).map_err(|e| e.to_string())?,
            compat,
        )
    }

    /// A file rewritten in Litestream's form, litevault's checksums in the
    /// reserved header bytes (as the replicator writes by default).
    fn litestream_form(file: &[u8]) -> Vec<u8> {
        let (_, _, trailer) = ltx::decode_all(file).unwrap();
        let opts = ltx::CompactOptions {
            post_apply_checksum: Some(trailer.post_apply_checksum),
            litestream_compat: true,
            ..Default::default()
        };
        ltx::compact(vec![ltx::Decoder::new(file).unwrap()], Vec::new(), opts)
            .unwrap()
            .0
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Merging in groups writes the same bytes as merging at once and
        /// refuses no faithful history; the groups' files are removed.
        #[test]
        fn merging_in_groups_equals_merging_at_once(
            (txns, unfaithful) in histories(1..150),
            fan_in in prop::sample::select(vec![2usize, 3, 7, FAN_IN]),
            compat in any::<bool>(),
        ) {
            let (files, _) = encode(&txns);
            let files: Vec<Vec<u8>> = files
                .into_iter()
                .map(|(_, f)| if compat { litestream_form(&f) } else { f })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let once = at_once(&files, compat);
            let grouped = in_groups(&files, fan_in, compat, dir.path());
            match (&once, &grouped) {
                (Ok(a), Ok(b)) => prop_assert!(a == b, "the grouped merge wrote other bytes"),
                (Ok(_), Err(e)) => prop_assert!(unfaithful, "a faithful history was refused in groups: {e}"),
                (Err(e), Ok(_)) => prop_assert!(false, "groups accepted what the whole run refuses: {e}"),
                (Err(_), Err(_)) => {}
            }
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("spill-"))
                .collect();
            prop_assert!(left.is_empty(), "group files left behind: {left:?}");
        }
    }
}
