//! Maintenance: compaction into the higher levels, snapshots, retention on
//! each replica, and the removal from the local store of what no replica
//! needs any more.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::merge::{self, Piece};
use super::status::count_levels;
use super::{ReplicateError, Replicator, Slot, blocking, lock_or_recover, retention};
use crate::body::{LtxBody, SPILL_THRESHOLD, SpillWriter};
use crate::ltx::{self, Txid};
use crate::replica::{LtxFileInfo, SNAPSHOT_LEVEL};

impl Replicator {
    /// Removes from the local store what no replica needs any more: files
    /// every replica holds and (when compaction is on) has compacted into
    /// the next level.
    pub(super) fn collect_outbox(&self) {
        let levels = self.inner.opts.retention.levels.len() as u8;
        let mut summaries = Vec::with_capacity(self.inner.slots.len());
        for s in &self.inner.slots {
            let Ok(st) = s.state.try_lock() else {
                return; // busy: next time
            };
            let mut level_max = [Txid(0); 10];
            for f in &st.files {
                if let Some(m) = level_max.get_mut(f.level as usize) {
                    *m = (*m).max(f.max_txid);
                }
            }
            summaries.push((st.txid, level_max));
        }
        let mut outbox = lock_or_recover(&self.inner.outbox);
        let shipped = summaries.iter().map(|s| s.0).min().unwrap_or(Txid(0));
        outbox.release_memory(shipped);
        let doomed: Vec<(u8, Txid)> = outbox
            .files()
            .filter(|f| {
                let next = f.level as usize + 1;
                f.max_txid <= shipped
                    && (f.level >= levels
                        || summaries
                            .iter()
                            .all(|s| s.1.get(next).is_some_and(|m| *m >= f.max_txid)))
            })
            .map(|f| (f.level, f.max_txid))
            .collect();
        for (l, m) in doomed {
            outbox.remove(l, m);
        }
    }

    /// Runs what is due of compaction, snapshots and retention on every
    /// replica, by the replicator's clock.
    pub async fn maintain(&self) -> Result<(), ReplicateError> {
        let results =
            futures::future::join_all((0..self.inner.slots.len()).map(|i| self.maintain_one(i)))
                .await;
        self.collect_outbox();
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    pub(super) async fn maintain_one(&self, i: usize) -> Result<(), ReplicateError> {
        let slot = &self.inner.slots[i];
        let _pass = slot.maintaining.lock().await;
        let r = self.maintain_slot(slot).await;
        let st = slot.state.lock().await;
        let mut status = lock_or_recover(&slot.status);
        if let Err(e) = &r {
            status.last_error = Some(e.to_string());
        }
        status.files_per_level = count_levels(&st.files);
        r
    }

    /// One maintenance pass over a replica: the compactions, snapshot and
    /// retention that are due. Each step plans under the slot's state lock,
    /// does its I/O without it, then records the result under it again.
    /// Concurrent pushes only add level-0 files, which neither a planned
    /// compaction nor a planned deletion depends on.
    async fn maintain_slot(&self, slot: &Slot) -> Result<(), ReplicateError> {
        {
            let mut st = slot.state.lock().await;
            if st.unreachable {
                return Ok(());
            }
            self.keep_lease(slot, &mut st).await?;
        }
        let opts = &self.inner.opts.retention;
        let now = self.inner.clock.now();
        let elapsed =
            |t: Option<DateTime<Utc>>| t.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO));
        for (k, interval) in opts.levels.iter().enumerate() {
            let level = k as u8 + 1;
            let run = {
                let mut st = slot.state.lock().await;
                // Levels 1 to 8 (`open_many` refuses more).
                let Some(at) = st.compacted_at.get_mut(level as usize) else {
                    break;
                };
                if elapsed(*at).is_some_and(|e| e < *interval) {
                    continue;
                }
                *at = Some(now);
                retention::plan_compaction(&st.files, level)
            };
            if let Some(run) = run {
                self.compact_run(slot, &run, level).await?;
            }
        }
        if let Some(interval) = opts.snapshot_interval {
            let due = {
                let st = slot.state.lock().await;
                let last = st
                    .files
                    .iter()
                    .filter(|f| f.level == SNAPSHOT_LEVEL)
                    .max_by_key(|f| f.max_txid);
                let since = match last {
                    Some(s) => Some(s.created),
                    None => st.files.iter().map(|f| f.created).min(),
                };
                let changed = last.is_none_or(|s| s.max_txid < st.txid);
                let head = *self.inner.head.borrow();
                changed
                    && st.txid == head.txid
                    && st.txid.0 > 0
                    && elapsed(since).is_some_and(|e| e >= interval)
            };
            if due {
                tracing::debug!(replica = %slot.replica, "snapshot: taking");
                let snap = self.take_snapshot().await?;
                // Only a state the replica already holds: its level-0 chain
                // reaches the snapshot, so nothing is skipped.
                let max = snap.header.max_txid;
                if max.0 > 0 && max <= *slot.shipped.borrow() {
                    let when = DateTime::from_timestamp_millis(snap.header.timestamp_ms)
                        .unwrap_or_else(Utc::now);
                    let info = slot
                        .replica
                        .write_body(SNAPSHOT_LEVEL, Txid(1), max, &snap.body, when)
                        .await?;
                    let mut st = slot.state.lock().await;
                    st.files
                        .retain(|f| !(f.level == SNAPSHOT_LEVEL && f.max_txid == max));
                    st.files.push(info);
                }
            }
        }
        if opts.enabled {
            let doomed = {
                let mut st = slot.state.lock().await;
                if elapsed(st.retention_at).is_some_and(|e| e < opts.check_interval) {
                    return Ok(());
                }
                st.retention_at = Some(now);
                retention::plan_retention(&st.files, now, opts)
            };
            if !doomed.is_empty() {
                let mut doomed = doomed;
                retention::order_for_deletion(&mut doomed);
                tracing::debug!(replica = %slot.replica, files = doomed.len(), "retention: deleting");
                slot.replica.delete_files(&doomed).await?;
                slot.state
                    .lock()
                    .await
                    .files
                    .retain(|f| !doomed.contains(f));
                tracing::debug!(replica = %slot.replica, files = doomed.len(), "retention deleted files");
            }
        }
        Ok(())
    }

    /// Merges level 0 into level 1 up to the replica's head, whatever the
    /// schedule says (the hand-off at a clean stop).
    pub(super) async fn compact_level_one(&self, slot: &Slot) -> Result<(), ReplicateError> {
        let _pass = slot.maintaining.lock().await;
        let run = {
            let st = slot.state.lock().await;
            if st.unreachable {
                return Ok(());
            }
            retention::plan_compaction(&st.files, 1)
        };
        match run {
            Some(run) => self.compact_run(slot, &run, 1).await,
            None => Ok(()),
        }
    }

    /// Merges `run` into one file of `level`, from the local copies of its
    /// files when they are whole.
    async fn compact_run(
        &self,
        slot: &Slot,
        run: &[LtxFileInfo],
        level: u8,
    ) -> Result<(), ReplicateError> {
        match self.compact_into(slot, run, level, true).await {
            // A local copy of an input failed its checks (a torn write, a
            // bad disk): the replica's own files are the reference, and a
            // bad one of those is an error.
            Err(ReplicateError::BadFile { file, source }) => {
                tracing::warn!(replica = %slot.replica, %file, error = %source, "a local copy of a compaction input is damaged; merging the replica's own files instead");
                self.compact_into(slot, run, level, false).await
            }
            r => r,
        }
    }

    /// Merges a run of files of level `level - 1` into one file of `level`.
    async fn compact_into(
        &self,
        slot: &Slot,
        run: &[LtxFileInfo],
        level: u8,
        local_first: bool,
    ) -> Result<(), ReplicateError> {
        tracing::debug!(replica = %slot.replica, level, files = run.len(), "compaction: merging");
        let mut pieces: Vec<Piece> = Vec::with_capacity(run.len());
        let mut all_local = true;
        for f in run {
            // Local first: the same file, or (for a level-0 file that went up
            // merged) the pieces it was merged from; else download it.
            let local: Option<Vec<LtxBody>> = if !local_first {
                None
            } else {
                let outbox = lock_or_recover(&self.inner.outbox);
                match outbox
                    .get(f.level, f.min_txid, f.max_txid)
                    .filter(|o| o.size == f.size)
                {
                    Some(o) => Some(vec![outbox.body(o)]),
                    None if f.level == 0 => outbox
                        .covering(f.min_txid, f.max_txid)
                        .map(|pieces| pieces.iter().map(|p| outbox.body(p)).collect()),
                    None => None,
                }
            };
            // Every piece must be there, else the whole file is downloaded.
            let present = |b: &LtxBody| b.file_path().is_none_or(|p| p.is_file());
            match local.filter(|bodies| bodies.iter().all(present)) {
                Some(bodies) => pieces.extend(bodies.into_iter().map(Piece::of)),
                None => {
                    all_local = false;
                    pieces.push(Piece::Bytes(slot.replica.read_file(f).await?));
                }
            }
        }
        let inner = self.inner.clone();
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(()); // nothing to merge
        };
        let spill_dir = lock_or_recover(&inner.outbox).level_dir(level);
        let name = format!(
            "L{level}/{}",
            ltx::format_filename(first.min_txid, last.max_txid)
        );
        let (body, header, post) = blocking(move || -> Result<_, ReplicateError> {
            std::fs::create_dir_all(&spill_dir).map_err(|source| ReplicateError::Local {
                path: spill_dir.clone(),
                source,
            })?;
            let bad = |source| ReplicateError::BadFile {
                file: name.clone(),
                source,
            };
            // A bounded number open at once (see `merge`). Only the local
            // store's files, which all carry litevault's checksums, are
            // merged in groups: a group must end on a known checksum, and a
            // download may be Litestream's (those are in memory anyway).
            let compat = inner.opts.litestream_compat;
            let pieces = if all_local {
                merge::reduce(pieces, merge::FAN_IN, &spill_dir, compat, &name)?
            } else {
                pieces
            };
            let inputs = merge::open_all(&pieces, |_| name.clone())?;
            // At least one input per file of the (non-empty) run.
            let (Some(first_h), Some(last_h)) = (
                inputs.first().map(|d| *d.header()),
                inputs.last().map(|d| *d.header()),
            ) else {
                return Err(ReplicateError::Internal(format!(
                    "{name}: no input to merge"
                )));
            };
            let (opts, post) = merge::options(&first_h, &last_h, compat);
            let out = SpillWriter::new(&spill_dir, SPILL_THRESHOLD);
            let (w, trailer) = ltx::compact(inputs, out, opts).map_err(bad)?;
            let body = w.finish().map_err(|source| ReplicateError::Local {
                path: spill_dir.clone(),
                source,
            })?;
            let post = post.unwrap_or(trailer.post_apply_checksum);
            let mut header = first_h;
            header.min_txid = first_h.min_txid;
            header.max_txid = last_h.max_txid;
            header.timestamp_ms = last_h.timestamp_ms;
            Ok((body, header, post))
        })
        .await??;
        let when = DateTime::from_timestamp_millis(header.timestamp_ms).unwrap_or_else(Utc::now);
        let info = slot
            .replica
            .write_body(level, header.min_txid, header.max_txid, &body, when)
            .await?;
        {
            let mut st = slot.state.lock().await;
            st.files
                .retain(|f| !(f.level == level && f.max_txid >= header.min_txid));
            st.files.push(info);
        }
        // Keep a local copy while a higher level will want it as input.
        if (level as usize) < self.inner.opts.retention.levels.len() {
            let inner = self.inner.clone();
            blocking(move || {
                let mut outbox = lock_or_recover(&inner.outbox);
                if outbox
                    .get(level, header.min_txid, header.max_txid)
                    .is_none()
                {
                    let _ = outbox.add(level, &header, post, body);
                }
            })
            .await?;
        }
        Ok(())
    }
}
