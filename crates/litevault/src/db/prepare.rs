//! Preparing the next LTX file: from new WAL frames, from a resync of the
//! pages that differ, a snapshot, or the hand-off file that lets
//! `litestream replicate` continue the replica.

use super::*;

impl WatchedDb {
    /// The next file from the committed frames past `cursor`, up to `end`
    /// (the index's last frame). `None` when the frames from `cursor` do
    /// not chain to that frame: the shipped position is not on SQLite's
    /// committed history, and only a resync can tell what differs.
    pub(super) fn prepare_frames(
        &mut self,
        h: &WalHeader,
        cursor: WalCursor,
        end: u64,
        index: &WalIndexHeader,
        timestamp_ms: i64,
    ) -> Result<Option<Prepared>, DbError> {
        if self.table.is_none() {
            self.resync_reason = "no page table";
            return Ok(None);
        }
        if h.page_size != self.page_size {
            self.resync_reason = "the page size changed";
            // The page size changed (VACUUM after leaving WAL mode): resync.
            self.page_size = h.page_size;
            self.table = None;
            return Ok(None);
        }
        if cursor.offset == end {
            if end > wal::WAL_HEADER_SIZE as u64 && cursor.checksum != index.frame_checksum {
                self.resync_reason = "the last committed frame is not the shipped one";
                return Ok(None);
            }
            self.wal = Some(WalPosition::Frames {
                salt1: h.salt1,
                salt2: h.salt2,
                cursor,
            });
            return Ok(Some(Prepared::UpToDate));
        }
        let scan = self.scan_wal(h, cursor, end)?;
        if !Self::scan_reaches(&scan, end, index) {
            // A restart under our reads explains it; else the position is
            // off the committed chain.
            if !self.wal_salts_unchanged(h)? {
                self.later_reason = "the WAL restarted during the reads";
                return Ok(Some(Prepared::Later));
            }
            tracing::warn!(
                db = %self.path.display(),
                offset = cursor.offset,
                committed_end = end,
                "the shipped WAL position does not lead to the frame SQLite last committed; comparing pages instead"
            );
            self.resync_reason =
                "the frames from the shipped position do not reach the last committed frame";
            return Ok(None);
        }
        let Some(last) = scan.txns.last() else {
            self.resync_reason = "no transaction before the last committed frame";
            return Ok(None);
        };
        let Some(table) = self.table.as_ref() else {
            self.resync_reason = "no page table";
            return Ok(None);
        };
        let commit = last.commit;
        let end = last.end;
        // Newest frame of each page wins.
        let mut latest: BTreeMap<u32, u64> = BTreeMap::new();
        for t in &scan.txns {
            for f in &t.frames {
                latest.insert(f.pgno, f.page_offset());
            }
        }
        let lock = ltx::lock_pgno(self.page_size);
        // A page the new size counts that neither the shipped state nor
        // these frames hold (the database shrank in an earlier file and grew
        // back without rewriting it, or SQLite left a new free page
        // unwritten) would be a hole in the published state. Only the image
        // SQLite reads can fill it: compare pages instead.
        if (table.len() as u32 + 1..=commit).any(|p| p != lock && !latest.contains_key(&p)) {
            self.resync_reason = "the new size counts pages no frame writes";
            return Ok(None);
        }
        let mut header = self.base_header(commit, timestamp_ms);
        header.wal_offset = cursor.offset as i64;
        header.wal_size = (end.offset - cursor.offset) as i64;
        header.wal_salt1 = h.salt1;
        header.wal_salt2 = h.salt2;
        let pages: Vec<(u32, u64)> = latest
            .range(..=commit)
            .filter(|(p, _)| **p != lock)
            .map(|(p, o)| (*p, *o))
            .collect();
        let walf = File::open(&self.wal_path).map_err(io_err(&self.wal_path))?;
        // Pass 1, checksums: the header of a Litestream-compatible file
        // carries the post-apply checksum. Small files keep their pages; large
        // ones read them again in pass 2 (from the page cache).
        let ps = self.page_size as usize;
        let keep = pages.len() * ps <= 16 << 20;
        let mut kept: Vec<u8> = Vec::with_capacity(if keep { pages.len() * ps } else { 0 });
        let mut page = Vec::with_capacity(ps);
        let mut changes: Vec<(u32, Checksum)> = Vec::with_capacity(pages.len());
        for &(pgno, off) in &pages {
            self.read_wal_page(&walf, off, &mut page)?;
            changes.push((pgno, ltx::page_checksum(pgno, &page)));
            if keep {
                kept.extend_from_slice(&page);
            }
        }
        let post = table.value_after(&changes, commit);
        let header = self.seal_header(header, post);
        let mut enc = ltx::Encoder::new(self.spill_writer(), header)?;
        for (i, &(pgno, off)) in pages.iter().enumerate() {
            let data: &[u8] = if keep {
                &kept[i * ps..(i + 1) * ps]
            } else {
                self.read_wal_page(&walf, off, &mut page)?;
                if ltx::page_checksum(pgno, &page) != changes[i].1 {
                    self.later_reason = "a WAL page changed during the reads";
                    return Ok(Some(Prepared::Later));
                }
                &page
            };
            enc.encode_page(pgno, data)?;
        }
        // A restart during our reads would mean the bytes came from two
        // generations: start over (the next pass sees the new salts).
        if !self.wal_salts_unchanged(h)? {
            self.later_reason = "the WAL restarted during the reads";
            return Ok(Some(Prepared::Later));
        }
        let page_count = changes.len() as u32;
        let (w, _trailer) = enc.finish(post)?;
        let body = w.finish().map_err(io_err(self.state.path()))?;
        Ok(Some(Prepared::Ship(Box::new(PendingLtx {
            body,
            header,
            post_apply: post,
            kind: ShipKind::Frames,
            page_count,
            changes,
            commit,
            wal: Some(WalPosition::Frames {
                salt1: h.salt1,
                salt2: h.salt2,
                cursor: end,
            }),
        }))))
    }

    /// Reads a consistent image of the database (file + committed WAL) and
    /// prepares a file with every page that differs from the shipped state.
    pub(super) fn prepare_resync(
        &mut self,
        committed: Committed,
        timestamp_ms: i64,
    ) -> Result<Prepared, DbError> {
        let wal = match committed {
            Committed::Frames { header, end, .. } => Some((header, end)),
            Committed::NoFrames => None,
        };
        let wal = wal.as_ref();
        let (overlay, commit_from_wal, wal_pos) = match (wal, committed) {
            (Some((h, end)), Committed::Frames { index, .. }) => {
                let start = WalCursor::start(h);
                let scan = self.scan_wal(h, start, *end)?;
                if !Self::scan_reaches(&scan, *end, &index) {
                    if !self.wal_salts_unchanged(h)? {
                        self.later_reason = "the WAL restarted during the reads";
                        return Ok(Prepared::Later);
                    }
                    return Err(DbError::WalDamaged {
                        path: self.wal_path.clone(),
                        frames: index.mx_frame,
                    });
                }
                let mut latest: BTreeMap<u32, u64> = BTreeMap::new();
                for t in &scan.txns {
                    for f in &t.frames {
                        latest.insert(f.pgno, f.page_offset());
                    }
                }
                let commit = scan.txns.last().map(|t| t.commit);
                let pos = WalPosition::Frames {
                    salt1: h.salt1,
                    salt2: h.salt2,
                    cursor: scan.end,
                };
                if h.page_size != self.page_size && commit.is_some() {
                    self.page_size = h.page_size;
                    self.table = None;
                }
                (latest, commit, pos)
            }
            _ => (BTreeMap::new(), None, WalPosition::NoWal),
        };
        let walf = match wal {
            Some(_) => Some(File::open(&self.wal_path).map_err(io_err(&self.wal_path))?),
            None => None,
        };
        let ps = self.page_size as u64;
        let db = &self.db_file;
        let db_len = db.metadata().map_err(io_err(&self.path))?.len();
        let commit = match commit_from_wal {
            Some(c) => c,
            None => (db_len / ps) as u32,
        };
        if self.table.as_ref().is_some_and(|t| t.is_empty()) && commit == 0 {
            self.wal = Some(wal_pos);
            return Ok(Prepared::UpToDate);
        }
        let lock = ltx::lock_pgno(self.page_size);
        // Pass 1: checksum every page of the image, keep those that differ.
        let read_page = |p: u32, chunk: &mut Vec<u8>| -> Result<(), DbError> {
            let from = (p as u64 - 1) * ps;
            chunk.resize(ps as usize, 0);
            chunk.fill(0);
            let avail = db_len.saturating_sub(from).min(ps) as usize;
            if avail > 0 {
                db.read_exact_at(&mut chunk[..avail], from)
                    .map_err(io_err(&self.path))?;
            }
            Ok(())
        };
        // The committed WAL version of a page, if it has one.
        let overlay_page = |p: u32, buf: &mut Vec<u8>| -> Result<bool, DbError> {
            match (overlay.get(&p), &walf) {
                (Some(off), Some(f)) => {
                    self.read_wal_page(f, *off, buf)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        let mut wal_page = Vec::with_capacity(ps as usize);
        let mut changes = Vec::new();
        let mut chunk = vec![0u8; (ps as usize) * 256];
        let mut pgno = 1u32;
        while pgno <= commit {
            let n = (commit - pgno + 1).min(256);
            let from = (pgno as u64 - 1) * ps;
            let avail = db_len.saturating_sub(from).min(n as u64 * ps) as usize;
            if avail > 0 {
                db.read_exact_at(&mut chunk[..avail], from)
                    .map_err(io_err(&self.path))?;
            }
            chunk[avail..n as usize * ps as usize].fill(0);
            for i in 0..n {
                let p = pgno + i;
                if p == lock {
                    continue;
                }
                let s = i as usize * ps as usize;
                let page: &[u8] = if overlay_page(p, &mut wal_page)? {
                    &wal_page
                } else {
                    &chunk[s..s + ps as usize]
                };
                let sum = ltx::page_checksum(p, page);
                if self.table.as_ref().and_then(|t| t.page(p)) != Some(sum) {
                    changes.push((p, sum));
                }
            }
            pgno += n;
        }
        if let Some((h, _)) = wal
            && !self.wal_salts_unchanged(h)?
        {
            self.later_reason = "the WAL restarted during the reads";
            return Ok(Prepared::Later);
        }
        let unchanged = changes.is_empty()
            && self
                .table
                .as_ref()
                .is_some_and(|t| t.len() == commit as usize);
        if unchanged {
            self.wal = Some(wal_pos);
            return Ok(Prepared::UpToDate);
        }
        let post = match &self.table {
            Some(t) => t.value_after(&changes, commit),
            None => DbChecksum::new().value_after(&changes, commit),
        };
        // Pass 2: encode the pages that differ. They are read again from the
        // same image: our read mark keeps every page we read from the database
        // file from being checkpointed over.
        let header = self.seal_header(self.base_header(commit, timestamp_ms), post);
        let mut enc = ltx::Encoder::new(self.spill_writer(), header)?;
        let mut page = Vec::with_capacity(ps as usize);
        for &(p, sum) in &changes {
            if !overlay_page(p, &mut page)? {
                read_page(p, &mut page)?;
            }
            let data: &[u8] = &page;
            if ltx::page_checksum(p, data) != sum {
                // The image moved under us (it cannot while our mark is
                // held); do not ship a file that does not match its sums.
                self.later_reason = "a database page changed during the reads";
                return Ok(Prepared::Later);
            }
            enc.encode_page(p, data)?;
        }
        let page_count = changes.len() as u32;
        let (w, _) = enc.finish(post)?;
        let body = w.finish().map_err(io_err(self.state.path()))?;
        Ok(Prepared::Ship(Box::new(PendingLtx {
            body,
            header,
            post_apply: post,
            kind: ShipKind::Resync,
            page_count,
            changes,
            commit,
            wal: Some(wal_pos),
        })))
    }

    /// A file with no pages at the next TXID: the same state as the shipped
    /// one (its pre- and post-apply checksums are equal), which ends a
    /// replica the way `litestream replicate` needs to continue it. Litestream
    /// takes a replica's position from its newest level-0 file, must find it
    /// under the name `N-N`, and resumes the WAL after that file's range;
    /// the range written here (offset 32, size 0, no salts) matches no WAL,
    /// so Litestream starts with a full snapshot of the database and goes on
    /// from there. `None` when nothing was shipped yet or the shipped state's
    /// size is not known.
    pub fn prepare_handoff(&mut self, timestamp_ms: i64) -> Result<Option<PendingLtx>, DbError> {
        let Some(table) = self.table.as_ref() else {
            return Ok(None);
        };
        if self.txid.0 == 0 {
            return Ok(None);
        }
        let commit = table.len() as u32;
        let mut header = self.base_header(commit, timestamp_ms);
        header.wal_offset = wal::WAL_HEADER_SIZE as i64;
        let post = self.checksum;
        let header = self.seal_header(header, post);
        let enc = ltx::Encoder::new(self.spill_writer(), header)?;
        let (w, _) = enc.finish(post)?;
        let body = w.finish().map_err(io_err(self.state.path()))?;
        Ok(Some(PendingLtx {
            body,
            header,
            post_apply: post,
            kind: ShipKind::Handoff,
            page_count: 0,
            changes: Vec::new(),
            commit,
            wal: self.wal,
        }))
    }

    /// Encodes a snapshot of the last shipped state (TXID `1..=txid`) from
    /// the database file overlaid with the WAL frames up to the shipped
    /// position. Call it right after [`prepare`](Self::prepare) found nothing
    /// new: the read mark then sits at or before the shipped position, so no
    /// checkpoint has copied later frames into the database file. Every page
    /// is checked against the table of the shipped state; `None` when the
    /// image does not match it (the WAL moved on: try again after the next
    /// sync) or the state is not proven.
    pub fn prepare_snapshot(
        &mut self,
        timestamp_ms: i64,
    ) -> Result<Option<PendingSnapshot>, DbError> {
        let (Some(table), Some(pos)) = (self.table.as_ref(), self.wal) else {
            return Ok(None);
        };
        if self.txid.0 == 0 || !self.continuous {
            return Ok(None);
        }
        let wal = self.read_wal_header()?;
        let overlay: BTreeMap<u32, u64> = match (pos, &wal) {
            (
                WalPosition::Frames {
                    salt1,
                    salt2,
                    cursor,
                },
                Some((h, len)),
            ) if h.salt1 == salt1 && h.salt2 == salt2 && cursor.offset <= *len => {
                let scan = self.scan_wal(h, WalCursor::start(h), cursor.offset)?;
                if scan.end.offset != cursor.offset {
                    return Ok(None);
                }
                let mut latest = BTreeMap::new();
                for t in &scan.txns {
                    for f in &t.frames {
                        latest.insert(f.pgno, f.page_offset());
                    }
                }
                latest
            }
            (WalPosition::NoWal, _) => BTreeMap::new(),
            _ => return Ok(None),
        };
        let walf = match &wal {
            Some(_) if !overlay.is_empty() => {
                Some(File::open(&self.wal_path).map_err(io_err(&self.wal_path))?)
            }
            _ => None,
        };
        let commit = table.len() as u32;
        let ps = self.page_size as u64;
        let db = &self.db_file;
        let db_len = db.metadata().map_err(io_err(&self.path))?.len();
        let mut header = self.base_header(commit, timestamp_ms);
        header.min_txid = Txid(1);
        header.max_txid = self.txid;
        header.pre_apply_checksum = Checksum(0);
        let post = self.checksum;
        let header = self.seal_header(header, post);
        let mut enc = ltx::Encoder::new(self.spill_writer(), header)?;
        let lock = ltx::lock_pgno(self.page_size);
        let mut page = vec![0u8; ps as usize];
        for p in 1..=commit {
            if p == lock {
                continue;
            }
            match (overlay.get(&p), &walf) {
                (Some(off), Some(f)) => self.read_wal_page(f, *off, &mut page)?,
                _ => {
                    let from = (p as u64 - 1) * ps;
                    page.fill(0);
                    let avail = db_len.saturating_sub(from).min(ps) as usize;
                    if avail > 0 {
                        db.read_exact_at(&mut page[..avail], from)
                            .map_err(io_err(&self.path))?;
                    }
                }
            }
            if table.page(p) != Some(ltx::page_checksum(p, &page)) {
                return Ok(None);
            }
            enc.encode_page(p, &page)?;
        }
        if let Some((h, _)) = &wal
            && !self.wal_salts_unchanged(h)?
        {
            return Ok(None);
        }
        let (w, _) = enc.finish(post)?;
        let body = w.finish().map_err(io_err(self.state.path()))?;
        Ok(Some(PendingSnapshot {
            body,
            header,
            post_apply: post,
        }))
    }
}
