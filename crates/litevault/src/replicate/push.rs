//! Pushing: bringing each replica up to the database's latest state from
//! the local store (one file, or several merged into one request), or with
//! a snapshot when the store cannot continue its chain; the lease renewal
//! every write depends on; waiting for the replicas.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::merge::{self, Piece};
use super::outbox::OutboxFile;
use super::status::count_levels;
use super::{
    ReplicateError, Replicator, Slot, SlotState, SyncOutcome, blocking, lock_or_recover, marks,
    rebase,
};
use crate::body::{LtxBody, SPILL_THRESHOLD, SpillWriter};
use crate::ltx::{self, Checksum, Txid};
use crate::replica::{ReplicaError, SNAPSHOT_LEVEL};

/// A body of the local store, checked before it is sent: one read back
/// from disk (where it may have been torn or overwritten since it was
/// written) must decode with its file checksum, else `BadFile`. Bodies
/// still in memory were encoded by this process and go as they are.
async fn verify_stored(body: LtxBody, f: &OutboxFile) -> Result<LtxBody, ReplicateError> {
    let Some(path) = body.file_path().map(Path::to_path_buf) else {
        return Ok(body);
    };
    let name = ltx::format_filename(f.min_txid, f.max_txid);
    blocking(move || {
        let bad = |source| ReplicateError::BadFile {
            file: name.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(|source| ReplicateError::Local {
            path: path.clone(),
            source,
        })?;
        let mut dec = ltx::Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
        let mut page = Vec::new();
        while dec.next_page(&mut page).map_err(bad)?.is_some() {}
        dec.finish().map_err(bad)?;
        Ok(body)
    })
    .await?
}

impl Replicator {
    /// Waits until the counted commit `seq` is in the local store, then
    /// until every replica holds it; returns the TXID that holds it.
    pub async fn wait_commit(&self, seq: u64) -> Txid {
        let mut rx = self.inner.covered.subscribe();
        let txid = match rx.wait_for(|c| c.0 >= seq).await {
            Ok(c) => c.1,
            Err(_) => self.inner.head.borrow().txid,
        };
        self.wait_replicated(txid).await;
        txid
    }

    /// Waits until every replica holds `txid` (or a later state).
    pub async fn wait_replicated(&self, txid: Txid) {
        for s in &self.inner.slots {
            let mut rx = s.shipped.subscribe();
            let _ = rx.wait_for(|t| *t >= txid).await;
        }
    }

    /// Ships what is committed: takes at most one new LTX file from the
    /// database, then brings every replica up to date. Fails if a replica
    /// could not be brought up to date (the others still are, and nothing
    /// is lost: the files wait in the local store).
    pub async fn sync(&self) -> Result<SyncOutcome, ReplicateError> {
        let outcome = self.produce().await?;
        self.push_all().await?;
        Ok(outcome)
    }

    /// Syncs until nothing is left to ship; returns the TXID every replica
    /// holds.
    ///
    /// A pass that had to put the WAL off (it changed under the reads) is
    /// not "nothing left": the sync looks again, for about a second, and
    /// then fails with [`ReplicateError::WalUnsettled`] rather than report
    /// a state that may lack the latest commits.
    pub async fn sync_all(&self) -> Result<Txid, ReplicateError> {
        self.produce_all(false).await?;
        self.push_all().await?;
        Ok(self.txid())
    }

    pub(super) async fn push_all(&self) -> Result<(), ReplicateError> {
        let results =
            futures::future::join_all((0..self.inner.slots.len()).map(|i| self.push(i))).await;
        self.collect_outbox();
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    /// Brings replica `i` up to the database's latest state.
    pub(super) async fn push(&self, i: usize) -> Result<(), ReplicateError> {
        let slot = &self.inner.slots[i];
        let mut st = slot.state.lock().await;
        let r = self.push_locked(slot, &mut st).await;
        let mut status = lock_or_recover(&slot.status);
        status.last_error = r.as_ref().err().map(|e| e.to_string());
        status.files_per_level = count_levels(&st.files);
        r
    }

    /// Renews the lease when it is due (see [`Lease::keep`]); an error
    /// when it is lost (nothing more may be written to the replica).
    ///
    /// [`Lease::keep`]: crate::replica::lease::Lease::keep
    pub(super) async fn keep_lease(
        &self,
        slot: &Slot,
        st: &mut SlotState,
    ) -> Result<(), ReplicateError> {
        use crate::replica::lease::LeaseError;
        if let Some(holder) = &st.lease_lost {
            return Err(LeaseError::Lost {
                replica: slot.replica.to_string(),
                holder: holder.clone(),
            }
            .into());
        }
        if let Some(lease) = &mut st.lease {
            match lease.keep().await {
                Ok(()) => {}
                Err(LeaseError::Lost { replica, holder }) => {
                    tracing::error!(%replica, %holder, "lease lost: no more writes to this replica");
                    st.lease_lost = Some(holder.clone());
                    return Err(LeaseError::Lost { replica, holder }.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn push_locked(&self, slot: &Slot, st: &mut SlotState) -> Result<(), ReplicateError> {
        if st.unreachable {
            self.late_init(slot, st).await?;
        }
        self.keep_lease(slot, st).await?;
        // One round, up to the state announced now: commits that arrive
        // during the upload go in the next round (the sync interval then
        // batches them).
        let mut target = *self.inner.head.borrow();
        let mut rebases = 0;
        loop {
            if st.txid >= target.txid {
                return Ok(());
            }
            if st.needs_snapshot {
                self.snapshot_to(slot, st).await?;
                continue;
            }
            let chain =
                lock_or_recover(&self.inner.outbox).chain_after(st.txid, st.checksum, target.txid);
            let Some(chain) = chain else {
                st.needs_snapshot = true;
                continue;
            };
            if chain.is_empty() {
                return Ok(());
            }
            let chain = if st.conflicted {
                &chain[..1]
            } else {
                &chain[..]
            };
            let made = if let [f] = chain {
                let body = lock_or_recover(&self.inner.outbox).body(f);
                let header = (f.min_txid, f.max_txid, f.timestamp_ms, f.post_apply);
                verify_stored(body, f).await.map(|b| (b, header))
            } else {
                // Behind by several files: send them merged, one request
                // (the merge checks every input's checksums).
                self.merge_outbox(chain).await
            };
            let (body, header) = match made {
                Ok(m) => m,
                Err(ReplicateError::BadFile { file, source }) => {
                    // A local file was damaged after it was written (a
                    // torn write, a bad disk): never sent. The database
                    // still has every page: this replica gets a snapshot.
                    tracing::warn!(replica = %slot.replica, %file, error = %source, "a file of the local store is damaged; the replica gets a snapshot instead");
                    st.needs_snapshot = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (min, max, ts, post) = header;
            let when = DateTime::from_timestamp_millis(ts).unwrap_or_else(Utc::now);
            let info = match slot.replica.write_body(0, min, max, &body, when).await {
                Ok(info) => info,
                Err(e @ ReplicaError::FileConflict { .. }) if rebases < rebase::MAX_REBASES => {
                    // The replica holds more than it was listed with.
                    rebases += 1;
                    st.conflicted = true;
                    self.rebase(slot, st, e, max).await?;
                    target = *self.inner.head.borrow();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            st.conflicted = false;
            st.files.retain(|f| !(f.level == 0 && f.max_txid >= min));
            st.files.push(info);
            marks::store(&self.inner.state_dir, &slot.replica.to_string(), max);
            st.txid = max;
            st.checksum = post;
            slot.shipped.send_replace(max);
            lock_or_recover(&slot.status).last_upload = Some(Utc::now());
        }
    }

    /// Merges consecutive level-0 files of the local store into one body.
    async fn merge_outbox(
        &self,
        chain: &[OutboxFile],
    ) -> Result<(LtxBody, (Txid, Txid, i64, Checksum)), ReplicateError> {
        tracing::debug!(files = chain.len(), "catch-up: merging");
        let inner = self.inner.clone();
        let chain = chain.to_vec();
        blocking(move || {
            let outbox = lock_or_recover(&inner.outbox);
            let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
                return Err(ReplicateError::Internal("merging an empty chain".into()));
            };
            let pieces: Vec<Piece> = chain.iter().map(|f| Piece::of(outbox.body(f))).collect();
            let dir = outbox.level_dir(0);
            drop(outbox);
            let name = ltx::format_filename(first.min_txid, last.max_txid);
            // A bounded number open at once (see `merge`).
            let compat = inner.opts.litestream_compat;
            let grouped = pieces.len() > merge::FAN_IN;
            let pieces = merge::reduce(pieces, merge::FAN_IN, &dir, compat, &name)?;
            // A damaged local file is named, unless it went into a group.
            let inputs = merge::open_all(&pieces, |i| match chain.get(i) {
                Some(f) if !grouped => ltx::format_filename(f.min_txid, f.max_txid),
                _ => name.clone(),
            })?;
            let out = SpillWriter::new(&dir, SPILL_THRESHOLD);
            let opts = ltx::CompactOptions {
                pre_apply_checksum: (!first.is_snapshot()).then_some(first.pre_apply),
                post_apply_checksum: Some(last.post_apply),
                litestream_compat: inner.opts.litestream_compat,
                ..Default::default()
            };
            let (w, _) = ltx::compact(inputs, out, opts)
                .map_err(|source| ReplicateError::BadFile { file: name, source })?;
            let body = w
                .finish()
                .map_err(|source| ReplicateError::Local { path: dir, source })?;
            Ok((
                body,
                (
                    first.min_txid,
                    last.max_txid,
                    last.timestamp_ms,
                    last.post_apply,
                ),
            ))
        })
        .await?
    }

    /// Uploads a snapshot to a replica whose chain cannot be continued.
    async fn snapshot_to(&self, slot: &Slot, st: &mut SlotState) -> Result<(), ReplicateError> {
        let snap = self.take_snapshot().await?;
        let max = snap.header.max_txid;
        if max <= st.txid {
            return Err(ReplicateError::Diverged {
                replica: slot.replica.to_string(),
                txid: st.txid,
            });
        }
        let when =
            DateTime::from_timestamp_millis(snap.header.timestamp_ms).unwrap_or_else(Utc::now);
        let info = slot
            .replica
            .write_body(SNAPSHOT_LEVEL, Txid(1), max, &snap.body, when)
            .await?;
        st.files.push(info);
        marks::store(&self.inner.state_dir, &slot.replica.to_string(), max);
        st.txid = max;
        st.checksum = snap.post_apply;
        st.needs_snapshot = false;
        slot.shipped.send_replace(max);
        tracing::info!(replica = %slot.replica, txid = %max, "snapshot uploaded");
        Ok(())
    }
}
