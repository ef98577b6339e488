//! Continuing a replica that holds more than the replicator knew.
//!
//! A listing that missed the newest objects (an eventually consistent
//! store, a stale cache, a proxy) makes the replicator take a replica for
//! older than it is. Its next level-0 file then reuses a TXID the replica
//! already holds. Level-0 files are never overwritten, so that upload fails
//! with [`ReplicaError::FileConflict`] and nothing is forked; this module
//! turns the failure into a recovery instead of a stall:
//!
//! 1. List the replica again. If the new listing still does not reach the
//!    name that was taken, it is stale too: the conflict stands, and the
//!    push is retried later (with backoff).
//! 2. If the replica ends below the database's head, its newest state is
//!    older than ours under our numbering: it gets a snapshot of our head,
//!    whose TXID is above everything it holds.
//! 3. Otherwise the numbering moves past the replica: the shipped state
//!    becomes the replica's head, with no page table, so the next file
//!    (TXID head + 1, made at once) carries every page of the database and
//!    continues the replica's own chain. Other replicas, whose chains it
//!    does not continue, get a snapshot of it.
//!
//! What a durable commit waits for is untouched: a replica's `shipped`
//! TXID moves only when a file with our pages lands, never on a rebase, so
//! a commit numbered below the replica's head is acknowledged only once the
//! full-page file that holds it is there.

use super::{Head, Replicator, Slot, SlotState, blocking, lock_db, replica_head};
use crate::ltx::{Checksum, Txid};
use crate::replica::ReplicaError;
use crate::replicate::ReplicateError;

/// Rebases one push may do before it gives up (the replica keeps growing
/// under it: another writer, which the lease should have kept out).
pub(super) const MAX_REBASES: u32 = 3;

impl Replicator {
    /// Recovers from `conflict`, raised by a level-0 upload ending at
    /// `taken`: see the module documentation. Called by a push, which holds
    /// the slot's state; takes the producer's step after it (the lock
    /// order of [`super`]).
    pub(super) async fn rebase(
        &self,
        slot: &Slot,
        st: &mut SlotState,
        conflict: ReplicaError,
        taken: Txid,
    ) -> Result<(), ReplicateError> {
        let h = replica_head(&slot.replica).await?;
        if h.txid < taken {
            // This listing misses the newest objects too.
            return Err(conflict.into());
        }
        let _step = self.inner.produce.lock().await;
        let head = *self.inner.head.borrow();
        st.files = h.files;
        if h.txid < head.txid {
            tracing::warn!(replica = %slot.replica, replica_txid = %h.txid, %head.txid, "the replica holds files this replicator did not list at start; it gets a snapshot of the database's head");
            st.txid = h.txid;
            st.checksum = h.checksum.unwrap_or(Checksum(0));
            st.needs_snapshot = true;
            return Ok(());
        }
        // Files without checksums (Litestream's) cannot be continued by an
        // incremental file: that replica gets a snapshot as well.
        let (checksum, needs_snapshot) = match h.checksum {
            Some(c) => (c, false),
            None => (Checksum(0), true),
        };
        tracing::warn!(replica = %slot.replica, replica_txid = %h.txid, %head.txid, "the replica holds files this replicator did not list at start; numbering continues after them with a file of every page");
        let inner = self.inner.clone();
        let txid = h.txid;
        blocking(move || lock_db(&inner).set_shipped_state(txid, checksum, None, None)).await?;
        self.inner.head.send_replace(Head {
            txid,
            checksum,
            timestamp_ms: self.inner.clock.now_ms(),
        });
        st.txid = txid;
        st.checksum = checksum;
        st.needs_snapshot = needs_snapshot;
        // Make the full-page file now, so the push that called this ships
        // it (a `sync_all` then returns with every commit on the replica).
        self.produce_all(true).await
    }
}
