//! Applying one batch of pages to the follower's database, as one SQLite transaction, verified.

use super::*;

pub(super) struct ApplyJob {
    pub(super) chain: Vec<LtxFileInfo>,
    /// Taken by [`ApplyJob::apply`].
    pub(super) prepared: Option<Prepared>,
    /// Where the state after the batch is built and checked.
    pub(super) scratch: PathBuf,
    pub(super) mode: Mode,
    pub(super) table: DbChecksum,
    pub(super) stamp: Page1Stamp,
    pub(super) position: FollowPosition,
    pub(super) data_version: i64,
    pub(super) state: PositionFile,
}

pub(super) struct Applied {
    pub(super) position: FollowPosition,
    pub(super) stamp: Page1Stamp,
    pub(super) data_version: i64,
    pub(super) pages: usize,
    pub(super) verified: bool,
}

/// A batch written and verified, not yet committed.
pub(super) struct Staged {
    pub(super) next: FollowPosition,
    pub(super) stamp: Page1Stamp,
    pub(super) changes: Vec<(u32, Checksum)>,
    pub(super) commit: u32,
    pub(super) verified: bool,
}

impl ApplyJob {
    /// Applies the batch in one transaction; returns the table (updated
    /// only if the batch committed).
    pub(super) fn run(
        mut self,
        conn: &Connection,
        path: &Path,
    ) -> (DbChecksum, Result<Applied, ApplyFailure>) {
        let mut table = std::mem::take(&mut self.table);
        let r = self.apply(conn, path, &mut table);
        (table, r)
    }

    pub(super) fn apply(
        mut self,
        conn: &Connection,
        path: &Path,
        table: &mut DbChecksum,
    ) -> Result<Applied, ApplyFailure> {
        let prepared = self.prepared.take().ok_or_else(|| FollowError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the batch was already applied"),
        })?;
        let headers = prepared.headers().to_vec();
        let page_size = prepared.page_size();
        if page_size != self.position.page_size {
            return Err(FollowError::PageSizeChanged {
                path: path.to_path_buf(),
                local: self.position.page_size,
                replica: page_size,
            }
            .into());
        }
        if self.mode == Mode::Exact
            && let Some(first) = headers.first()
            && !first.is_snapshot()
            && let Some(pre) = pre_apply(first)
            && pre != table.value()
        {
            return Err(ApplyFailure::Discontinuity(format!(
                "the replica no longer continues from the follower's TXID {} (checksum {}): its file {} expects checksum {pre}",
                self.position.txid,
                table.value(),
                self.files()
            )));
        }
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_err(path))?;
        let staged = match self.write(conn, path, table, &headers, prepared) {
            Ok(s) => s,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        // The intended position, durable before the commit: after a crash the
        // database matches the saved position or this one.
        if let Err(e) = self.state.save(
            &self.position,
            self.stamp,
            Some((&staged.next, staged.stamp)),
            true,
        ) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        if let Err(e) = conn.execute_batch("COMMIT") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sqlite_err(path)(e).into());
        }
        table.truncate(staged.commit);
        for (pgno, sum) in &staged.changes {
            table.set_page(*pgno, *sum);
        }
        debug_assert_eq!(table.value(), staged.next.checksum);
        // A failure to record the final position is harmless: the intended
        // one, already durable, names the same state.
        let _ = self.state.save(&staged.next, staged.stamp, None, false);
        Ok(Applied {
            position: staged.next,
            stamp: staged.stamp,
            data_version: data_version(conn, path)?,
            pages: staged.changes.len(),
            verified: staged.verified,
        })
    }

    /// The batch's files, for messages.
    pub(super) fn files(&self) -> String {
        match (self.chain.first(), self.chain.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
            (Some(a), _) => a.to_string(),
            _ => String::new(),
        }
    }

    /// Writes the merged pages inside the open write transaction and checks
    /// the result.
    pub(super) fn write(
        &self,
        conn: &Connection,
        path: &Path,
        table: &DbChecksum,
        headers: &[Header],
        mut prepared: Prepared,
    ) -> Result<Staged, ApplyFailure> {
        let chain = &self.chain;
        let last = chain.last().ok_or_else(|| FollowError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("an empty batch"),
        })?;
        // Inside the write lock nobody else can commit: a moved data_version
        // means someone did since our last commit.
        let now = data_version(conn, path)?;
        if now != self.data_version {
            let scanned = dbpage::scan(conn).map_err(sqlite_err(path))?;
            let actual = scanned.with_stamp(self.stamp);
            if actual.value() != table.value() {
                return Err(ApplyFailure::Foreign {
                    data_version: now,
                    table: actual,
                    stamp: Page1Stamp::of(&scanned.page1),
                });
            }
        }
        let commit = prepared.commit();
        let page_size = prepared.page_size();
        let ps = u64::from(page_size);
        // The pages the follower keeps: those it has, up to the smallest size
        // the batch passes through (none for a rebuild, which replaces all).
        // Every page above them, up to `commit`, must come from the batch, in
        // order: checked before each page is written.
        let floor = match self.mode {
            Mode::Rebuild => 0,
            Mode::Exact | Mode::Overlap => u32::try_from(table.len())
                .unwrap_or(u32::MAX)
                .min(prepared.min_commit()),
        };
        let scratch_err = io_err(&self.scratch);
        let scratch = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.scratch)
            .map_err(&scratch_err)?;
        if floor > 0 {
            copy_pages(conn, &scratch, page_size)
                .map_err(|e| e.into_follow(path, &self.scratch))?;
        }
        let mut cover = Coverage::new(floor, commit, page_size);
        let mut missing = None;
        let mut changes: Vec<(u32, Checksum)> = Vec::new();
        let mut stamp = self.stamp;
        prepared.merge(chain, |pgno, page| {
            if let Err(p) = cover.accept(pgno) {
                missing = Some(p);
                return Ok::<_, FollowError>(ControlFlow::Break(()));
            }
            if pgno == 1 {
                stamp = Page1Stamp::of(page);
            }
            changes.push((pgno, ltx::page_checksum(pgno, page)));
            scratch
                .write_all_at(page, (u64::from(pgno) - 1) * ps)
                .map_err(&scratch_err)?;
            Ok(ControlFlow::Continue(()))
        })?;
        // Every file's own checksum: a damaged file explains a missing page.
        let trailers = prepared.finish(chain).map_err(FollowError::from)?;
        if let Some(pgno) = missing.or_else(|| cover.finish().err()) {
            return Err(FollowError::from(missing_page(chain, commit, pgno)).into());
        }
        scratch
            .set_len(u64::from(commit) * ps)
            .map_err(&scratch_err)?;
        let expected = check_links(chain, headers, &trailers, true).map_err(FollowError::from)?;
        let after = table.value_after(&changes, commit);
        if let Some(expected) = expected
            && expected != after
        {
            if self.mode != Mode::Rebuild {
                // The pre-apply checksum can agree by accident (it is an XOR
                // of page CRCs: equal changes at the same place in two pages
                // cancel out); the result cannot.
                return Err(ApplyFailure::Discontinuity(format!(
                    "the replica no longer continues from the follower's TXID {}: after its files {} the follower's checksum would be {after}, the replica's is {expected}",
                    self.position.txid,
                    self.files()
                )));
            }
            return Err(FollowError::from(RestoreError::ChecksumMismatch {
                file: last.to_string(),
                txid: last.max_txid,
                what: "checksum of the follower after the batch vs the file's post-apply checksum",
                expected,
                actual: after,
            })
            .into());
        }
        // As strict as a restore: SQLite must find the state after the batch
        // sound before anyone can read it.
        match super::super::integrity_check(&self.scratch) {
            Ok(()) => {}
            Err(RestoreError::Integrity { message }) => {
                return Err(FollowError::Integrity {
                    path: path.to_path_buf(),
                    txid: self.position.txid,
                    files: self.files(),
                    to: last.max_txid,
                    message,
                }
                .into());
            }
            Err(e) => return Err(FollowError::from(e).into()),
        }
        // Checked: now into the follower, inside its write transaction.
        let mut writer = PageWriter::new(conn).map_err(sqlite_err(path))?;
        let mut page = vec![0u8; page_size as usize];
        for (pgno, _) in &changes {
            scratch
                .read_exact_at(&mut page, (u64::from(*pgno) - 1) * ps)
                .map_err(&scratch_err)?;
            writer.write(*pgno, &page).map_err(sqlite_err(path))?;
        }
        writer.finish(commit).map_err(sqlite_err(path))?;
        Ok(Staged {
            next: FollowPosition {
                txid: last.max_txid,
                checksum: after,
                page_size,
            },
            stamp,
            changes,
            commit,
            verified: expected.is_some(),
        })
    }
}

/// An error copying the follower's pages: SQLite's or the scratch file's.
pub(super) enum CopyError {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
}

impl CopyError {
    pub(super) fn into_follow(self, db: &Path, scratch: &Path) -> FollowError {
        match self {
            CopyError::Sqlite(e) => sqlite_err(db)(e),
            CopyError::Io(e) => io_err(scratch)(e),
        }
    }
}

/// Copies every page of the follower, as its open transaction sees it,
/// into `out` at its offset.
pub(super) fn copy_pages(
    conn: &Connection,
    out: &std::fs::File,
    page_size: u32,
) -> Result<(), CopyError> {
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        .map_err(CopyError::Sqlite)?;
    let mut rows = stmt.query([]).map_err(CopyError::Sqlite)?;
    while let Some(row) = rows.next().map_err(CopyError::Sqlite)? {
        let pgno: u32 = row.get(0).map_err(CopyError::Sqlite)?;
        let data = row
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
            .map_err(CopyError::Sqlite)?;
        if pgno == 0 || data.len() != page_size as usize {
            continue;
        }
        out.write_all_at(data, (u64::from(pgno) - 1) * u64::from(page_size))
            .map_err(CopyError::Io)?;
    }
    Ok(())
}
