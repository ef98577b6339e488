//! What each replica is known to hold, remembered beside the database.
//!
//! After every upload the replicator notes, in the local state folder, the
//! newest TXID that replica holds (one small file per replica, named by a
//! hash of its URL). On the next start a listing that ends below the note
//! cannot be the whole replica: the store answered from a stale view (an
//! eventually consistent listing, a cache) or lost files. Numbering the next
//! commits from such a listing would reuse TXIDs the replica already holds,
//! so the start lists again until the listing reaches the note, for a few
//! seconds; a replica that still lists less really holds less (it was
//! emptied or restored from an older copy), which is logged.
//!
//! A note is a hint, never a proof: a missing, torn or foreign one only
//! means the start trusts the listing, as it would on a new machine.

use std::path::{Path, PathBuf};

use crate::ltx::Txid;

/// The folder of the notes, inside the local state folder.
const DIR: &str = "replicas";

/// FNV-1a: a hash that stays the same across builds and platforms.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn path(state_dir: &Path, replica: &str) -> PathBuf {
    state_dir.join(DIR).join(format!("{:016x}", fnv1a(replica)))
}

/// The line a note holds: the TXID, and a check that it is whole and
/// belongs to this replica.
fn line(replica: &str, txid: Txid) -> String {
    format!("{:016x} {:016x}\n", txid.0, fnv1a(replica) ^ txid.0)
}

/// The TXID `replica` was last known to hold, if a whole note says so.
pub(super) fn load(state_dir: &Path, replica: &str) -> Option<Txid> {
    let text = std::fs::read_to_string(path(state_dir, replica)).ok()?;
    let (t, _) = text.split_once(' ')?;
    let txid = Txid(u64::from_str_radix(t, 16).ok()?);
    (text == line(replica, txid)).then_some(txid)
}

/// Notes that `replica` holds `txid`. Best effort: a note that cannot be
/// written only makes the next start trust its listing.
pub(super) fn store(state_dir: &Path, replica: &str, txid: Txid) {
    let p = path(state_dir, replica);
    let write = || -> std::io::Result<()> {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, line(replica, txid))
    };
    if let Err(e) = write() {
        tracing::debug!(note = %p.display(), error = %e, "could not note what the replica holds");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_only_whole_and_for_its_own_replica() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "s3://a/db"), None);
        store(dir.path(), "s3://a/db", Txid(0x2a));
        assert_eq!(load(dir.path(), "s3://a/db"), Some(Txid(0x2a)));
        assert_eq!(load(dir.path(), "s3://b/db"), None);
        let p = path(dir.path(), "s3://a/db");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() - 5]).unwrap();
        assert_eq!(
            load(dir.path(), "s3://a/db"),
            None,
            "a torn note is no note"
        );
        std::fs::write(&p, text.replacen("000000000000002a", "000000000000002b", 1)).unwrap();
        assert_eq!(
            load(dir.path(), "s3://a/db"),
            None,
            "an altered note is no note"
        );
    }
}
