//! The hand-off at a clean stop: a Litestream-compatible replica ends the
//! way `litestream replicate` needs to continue it.
//!
//! Litestream takes a replica's position from its newest level-0 file
//! alone, opens that position's file under the name `N-N`, and resumes the
//! WAL right after the range that file's header names. litevault's
//! catch-up uploads merge several TXIDs into one file, and its resync and
//! snapshot files name no WAL range: on either, Litestream could never
//! verify where to go on and would ship nothing again. So a clean stop
//! checks each replica's newest level-0 file and, when any is not such a
//! file, ships the hand-off file of [`crate::db::WatchedDb::prepare_handoff`]
//! (no pages, the same state, the next TXID) to every replica.
//!
//! Then, when compaction is on, it merges level 0 into level 1 up to the
//! replica's head. Litestream's first compaction starts after the newest
//! level-1 file, and its level-0 retention deletes level-0 files a few
//! minutes after they are compacted: without a level-1 file that ends at the
//! hand-over TXID, that point could soon be restored by neither tool.

use super::{ReplicateError, Replicator, Slot, SlotState};
use crate::ltx;

impl Replicator {
    /// Ends every replica on a file Litestream can continue from (see the
    /// module documentation). Only for Litestream-compatible replicas:
    /// Litestream cannot read the files of the standard checksum mode.
    pub(super) async fn hand_off(&self) -> Result<(), ReplicateError> {
        if !self.inner.opts.litestream_compat {
            return Ok(());
        }
        let mut needed = false;
        for slot in &self.inner.slots {
            let st = slot.state.lock().await;
            if !litestream_can_continue(slot, &st).await? {
                needed = true;
                break;
            }
        }
        if needed && self.produce_handoff().await? {
            self.push_all().await?;
            tracing::debug!(db = %self.inner.path.display(), txid = %self.txid(), "hand-off file shipped: litestream replicate can continue the replicas");
        }
        if self.inner.opts.retention.levels.is_empty() {
            return Ok(());
        }
        for slot in &self.inner.slots {
            self.compact_level_one(slot).await?;
        }
        Ok(())
    }
}

/// Whether the replica's newest level-0 file is its latest state, holds one
/// TXID and names a WAL range (Litestream's own level-0 files always do).
async fn litestream_can_continue(slot: &Slot, st: &SlotState) -> Result<bool, ReplicateError> {
    let newest = st
        .files
        .iter()
        .filter(|f| f.level == 0)
        .max_by_key(|f| (f.max_txid, std::cmp::Reverse(f.min_txid)));
    let Some(f) = newest else {
        return Ok(false);
    };
    if f.max_txid != st.txid || f.min_txid != f.max_txid {
        return Ok(false);
    }
    let bytes = slot
        .replica
        .read_range(f, 0..ltx::HEADER_SIZE as u64)
        .await?;
    Ok(ltx::Header::decode(&bytes).is_ok_and(|h| h.wal_offset != 0))
}
