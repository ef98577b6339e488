//! Checkpoints: when one is due, running it after shipping, and letting the WAL start over.

use super::*;

impl WatchedDb {
    /// Frames in the WAL file past the header, by its size.
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Whether the WAL has grown past a checkpoint threshold.
    pub fn checkpoint_due(&self) -> bool {
        let bytes = self.wal_bytes();
        (self.opts.truncate_bytes > 0 && bytes >= self.opts.truncate_bytes) || self.passive_due()
    }

    /// Frames shipped since our last checkpoint, in the current WAL
    /// generation. Not the WAL file's size: SQLite rewrites a restarted WAL
    /// from its start without shrinking the file, so the size stays at its
    /// high-water mark and would call for a checkpoint after every commit.
    pub(super) fn frames_since_checkpoint(&self) -> u64 {
        let Some(WalPosition::Frames {
            salt1,
            salt2,
            cursor,
        }) = &self.wal
        else {
            return 0;
        };
        let base = match self.checkpointed {
            Some((s1, s2, offset)) if s1 == *salt1 && s2 == *salt2 => offset,
            _ => wal::WAL_HEADER_SIZE as u64,
        };
        let frame = self.page_size as u64 + wal::FRAME_HEADER_SIZE as u64;
        cursor.offset.saturating_sub(base) / frame
    }

    pub(super) fn passive_due(&self) -> bool {
        if self.held.is_none() {
            return false;
        }
        let frames = self.frames_since_checkpoint();
        frames > 0
            && ((self.opts.min_pages > 0 && frames >= self.opts.min_pages)
                || (!self.opts.interval.is_zero()
                    && self.checkpointed_at.elapsed() >= self.opts.interval))
    }

    pub(super) fn mark_checkpointed(&mut self) {
        self.checkpointed_at = std::time::Instant::now();
        self.checkpointed = match &self.wal {
            Some(WalPosition::Frames {
                salt1,
                salt2,
                cursor,
            }) => Some((*salt1, *salt2, cursor.offset)),
            _ => None,
        };
    }

    /// Runs the checkpoint the thresholds call for, after everything
    /// committed so far has been shipped. Returns the mode run, if any.
    pub fn maybe_checkpoint(&mut self) -> Result<Option<&'static str>, DbError> {
        let started = std::time::Instant::now();
        let mode = self.run_checkpoint()?;
        if let Some(m) = mode {
            self.record_checkpoint(m == "TRUNCATE", started);
        }
        Ok(mode)
    }

    /// Counts a checkpoint begun at `started` in the stats.
    pub(super) fn record_checkpoint(&mut self, truncate: bool, started: std::time::Instant) {
        let d = started.elapsed().as_secs_f64();
        let c = &mut self.checkpoints;
        if truncate {
            c.truncate += 1;
        } else {
            c.passive += 1;
        }
        c.total_seconds += d;
        c.last_seconds = d;
    }

    /// Checkpoints run so far and their durations.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpoints
    }

    pub(super) fn run_checkpoint(&mut self) -> Result<Option<&'static str>, DbError> {
        let bytes = self.wal_bytes();
        if self.opts.truncate_bytes > 0 && bytes >= self.opts.truncate_bytes {
            // TRUNCATE needs every reader gone, so we give up our mark; the
            // next sync then proves continuity by comparing pages.
            self.release_read_marks();
            self.conns[0]
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(sqlite_err(&self.path))?;
            self.mark_checkpointed();
            return Ok(Some("TRUNCATE"));
        }
        if !self.passive_due() {
            return Ok(None);
        }
        Ok(self.passive()?.map(|_| "PASSIVE"))
    }

    /// A PASSIVE checkpoint on the connection not holding the mark: it
    /// copies frames up to our mark and never waits. Then, if every frame
    /// is in the database file, lets the WAL restart. `None` without a
    /// mark; else whether the mark is now on no frame.
    pub(super) fn passive(&mut self) -> Result<Option<bool>, DbError> {
        let Some(held) = self.held else {
            return Ok(None);
        };
        let (busy, log, done): (i64, i64, i64) = self.conns[1 - held]
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(sqlite_err(&self.path))?;
        self.mark_checkpointed();
        if busy == 0 && log > 0 && done == log {
            return Ok(Some(self.let_the_wal_restart()?));
        }
        Ok(Some(false))
    }

    /// Checkpoints now, whatever the thresholds, and lets the WAL restart
    /// if every frame is then in the database file and shipped: for an
    /// embedded writer that pauses between two transactions for it (see
    /// `Replicator::restart_wal_now`). Returns whether the read mark is now
    /// on no frame, so that the next write starts the WAL over.
    pub fn checkpoint_for_restart(&mut self) -> Result<bool, DbError> {
        let started = std::time::Instant::now();
        let Some(restarted) = self.passive()? else {
            return Ok(false);
        };
        self.record_checkpoint(false, started);
        Ok(restarted)
    }

    /// Called when every WAL frame is in the database file. Our read mark
    /// (held on a WAL frame) is all that keeps SQLite from starting the WAL
    /// over at the next write: while any reader holds a frame, the WAL only
    /// grows, and every commit appends to an ever larger file. A read
    /// transaction begun now reads no frame at all (SQLite's read lock 0),
    /// which still stops any checkpoint from writing newer frames into the
    /// database, but lets the next writer restart the WAL.
    ///
    /// Only done when no commit came after the shipped state: a mark taken
    /// then could cover a frame not yet shipped, which a checkpoint by the
    /// app could then copy and a WAL restart drop. If one slips in between
    /// the check and the new mark, continuity is no longer assumed, so such
    /// a restart is caught (pages compared) instead of skipping the frame.
    pub(super) fn let_the_wal_restart(&mut self) -> Result<bool, DbError> {
        // With commits already past the shipped state, a new mark would
        // cover them: leave the mark where it is; the next ship and
        // checkpoint try again.
        if self.frames_past_shipped()? {
            return Ok(false);
        }
        self.rotate_read_mark()?;
        if self.frames_past_shipped()? {
            // A commit came between the check and the new mark (a window
            // of microseconds).
            self.continuous = false;
            return Ok(false);
        }
        Ok(true)
    }

    /// Whether our new read mark may cover a frame past the shipped
    /// position. Errs on the side of `true`.
    pub(super) fn frames_past_shipped(&self) -> Result<bool, DbError> {
        let Some(WalPosition::Frames {
            salt1,
            salt2,
            cursor,
        }) = self.wal
        else {
            return Ok(true);
        };
        let Some((h, len)) = self.read_wal_header()? else {
            return Ok(true);
        };
        if h.salt1 != salt1 || h.salt2 != salt2 {
            // The WAL already started over. No writer can do that while any
            // reader holds a WAL frame, so our new mark reads none: every
            // frame was in the database file, and (the checkpoint never
            // passes our previous mark, which was shipped) in the replica.
            return Ok(false);
        }
        if len < cursor.offset + wal::FRAME_HEADER_SIZE as u64 {
            return Ok(false);
        }
        let f = File::open(&self.wal_path).map_err(io_err(&self.wal_path))?;
        let mut raw = [0u8; wal::FRAME_HEADER_SIZE];
        f.read_exact_at(&mut raw, cursor.offset)
            .map_err(io_err(&self.wal_path))?;
        Ok(h.salts_match(&wal::FrameHeader::parse(&raw)))
    }
}
