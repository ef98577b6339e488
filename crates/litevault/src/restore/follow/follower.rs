//! The `Follower`: open (restore or resume), poll, rebuild, and the checks around each batch.

use super::*;

impl Follower {
    /// Opens a follower: restores the replica into `path` if it does not
    /// exist, or resumes from the persisted position if the database still
    /// has that position's checksum. With [`FollowOptions::force`], a database
    /// that cannot be resumed is re-restored in place (atomically).
    pub async fn open(
        replica: Replica,
        path: &Path,
        opts: FollowOptions,
    ) -> Result<Follower, FollowError> {
        let path = path.to_path_buf();
        let url = replica.to_string();
        let state = PositionFile::new(&path, &url);
        let start;
        let conn;
        let table;
        let stamp;
        let mut position;
        if !path.exists() {
            let wal = super::super::sibling(&path, "-wal");
            if std::fs::metadata(&wal)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
            {
                return Err(FollowError::StaleWal { path, wal });
            }
            let _ = std::fs::remove_file(super::super::sibling(&path, "-shm"));
            // Restore beside the output, record the position, then rename:
            // a crash at any point leaves either no output (restored again
            // on the next start) or an output with its position.
            let staged = super::super::sibling(&path, ".follow-restore");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(super::super::sibling(&staged, suffix));
            }
            let ropts = RestoreOptions {
                target: RestoreTarget::Latest,
                concurrency: opts.concurrency,
                write_state: false,
                ..RestoreOptions::default()
            };
            let report = match restore(&replica, &staged, &ropts).await? {
                RestoreOutcome::Restored(r) => r,
                // Cannot happen: the skip outcomes need `if_db_not_exists`
                // or `if_replica_exists`, which `ropts` leaves false.
                _ => unreachable!("no skip option was set"),
            };
            if report.litestream_v03.is_some() {
                // A v0.3 backup has no TXIDs to follow from.
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(super::super::sibling(&staged, suffix));
                }
                return Err(FollowError::Restore(
                    RestoreError::NoRestorePoint {
                        target: "a state to follow".into(),
                        replica: replica.to_string(),
                        reason: "the replica holds only a Litestream v0.3 backup, which cannot be followed: \
                                 restore it once (litevault restore URL -o DB), or follow the LTX history \
                                 `replicate` writes beside it"
                            .into(),
                    },
                ));
            }
            let mut page1 = vec![0u8; 100];
            std::fs::File::open(&staged)
                .and_then(|mut f| f.read_exact(&mut page1))
                .map_err(io_err(&staged))?;
            state.save(
                &FollowPosition {
                    txid: report.txid,
                    checksum: report.checksum,
                    page_size: report.page_size,
                },
                Page1Stamp::of(&page1),
                None,
                true,
            )?;
            std::fs::rename(&staged, &path).map_err(io_err(&path))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            let p = path.clone();
            let (c, scanned) = blocking(move || -> Result<_, FollowError> {
                let c = open_conn(&p)?;
                let s = scan(&c, &p)?;
                Ok((c, s))
            })
            .await??;
            if scanned.table.value() != report.checksum {
                // The restore verified what it wrote: this is the disk or a
                // concurrent writer.
                return Err(FollowError::ForeignWrite {
                    path,
                    txid: report.txid,
                    expected: report.checksum,
                    actual: scanned.table.value(),
                });
            }
            position = FollowPosition {
                txid: report.txid,
                checksum: report.checksum,
                page_size: scanned.page_size,
            };
            start = FollowStart::Restored {
                txid: report.txid,
                files: report.files.len(),
            };
            stamp = Page1Stamp::of(&scanned.page1);
            conn = c;
            table = scanned.table;
        } else {
            let p = path.clone();
            let (c, scanned) = blocking(move || -> Result<_, FollowError> {
                let c = open_conn(&p)?;
                let s = scan(&c, &p)?;
                Ok((c, s))
            })
            .await??;
            let saved = state.load();
            // The states the database may be in, each with the page-1 stamp
            // of the replica's page 1 (SQLite rewrites the follower's).
            let mut candidates: Vec<(Txid, Checksum, Page1Stamp)> = Vec::new();
            match &saved {
                Some(s) => {
                    candidates.push((s.txid, s.checksum, s.stamp));
                    if let Some(p) = s.pending {
                        candidates.push((p.txid, p.checksum, p.stamp));
                    }
                }
                None => {
                    // A database written by a plain `restore` (its state
                    // names the TXID and checksum it restored; its page 1 is
                    // the replica's) can be followed too.
                    if let Some(r) = StateDir::for_db(&path).load_position() {
                        candidates.push((r.txid, r.checksum, Page1Stamp::of(&scanned.page1)));
                    }
                }
            }
            let resumed = candidates.iter().find_map(|(txid, sum, st)| {
                let t = scanned.with_stamp(*st);
                (t.value() == *sum).then_some((*txid, t, *st))
            });
            position = FollowPosition {
                txid: Txid(0),
                checksum: scanned.table.value(),
                page_size: scanned.page_size,
            };
            conn = c;
            match resumed {
                Some((txid, t, st)) => {
                    position.txid = txid;
                    position.checksum = t.value();
                    table = t;
                    stamp = st;
                    start = FollowStart::Resumed { txid };
                }
                None => {
                    let err = match &saved {
                        Some(s) => FollowError::ForeignWrite {
                            path: path.clone(),
                            txid: s.txid,
                            expected: s.checksum,
                            actual: scanned.with_stamp(s.stamp).value(),
                        },
                        None => FollowError::NotAFollower {
                            path: path.clone(),
                            replica: url.clone(),
                        },
                    };
                    if !opts.force {
                        return Err(err);
                    }
                    stamp = Page1Stamp::of(&scanned.page1);
                    table = scanned.table;
                    start = FollowStart::Rebuilt {
                        txid: Txid(0),
                        reason: err.to_string(),
                    };
                }
            }
        }
        let (status, _) = watch::channel(FollowStatus {
            position,
            batches: 0,
            rebuilds: 0,
        });
        let dv = data_version(&conn, &path)?;
        let mut follower = Follower {
            replica,
            path,
            opts,
            conn: Some(conn),
            table,
            stamp,
            position,
            data_version: dv,
            state,
            start,
            status,
            warned: HashSet::new(),
        };
        if let FollowStart::Rebuilt { reason, .. } = &follower.start {
            let reason = reason.clone();
            tracing::warn!("{reason}; re-restoring in place (--force)");
            let files = follower.list_all().await?;
            follower.rebuild(&files, &reason).await?;
            position = follower.position;
            follower.start = FollowStart::Rebuilt {
                txid: position.txid,
                reason,
            };
        } else {
            follower
                .state
                .save(&follower.position, follower.stamp, None, true)?;
        }
        Ok(follower)
    }

    /// How the follower started.
    pub fn start(&self) -> &FollowStart {
        &self.start
    }

    /// The position reached.
    pub fn position(&self) -> FollowPosition {
        self.position
    }

    /// The follower database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver that sees every new position (after each commit).
    pub fn subscribe(&self) -> watch::Receiver<FollowStatus> {
        self.status.subscribe()
    }

    /// Polls until `shutdown` resolves. Storage errors are logged and retried
    /// on the next poll ([`FollowError::is_transient`]); any other error
    /// stops the follower. Returns the last status.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<FollowReport, FollowError> {
        tokio::pin!(shutdown);
        loop {
            match self.poll().await {
                Ok(PollOutcome::UpToDate) => {}
                Ok(PollOutcome::Applied {
                    from,
                    to,
                    files,
                    pages,
                    ..
                }) => {
                    tracing::info!(%from, %to, files, pages, "applied");
                }
                Ok(PollOutcome::Rebuilt { from, to, reason }) => {
                    tracing::warn!(%from, %to, "re-restored: {reason}");
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!("follow: {e}; retrying in {:?}", self.opts.interval);
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.opts.interval) => {}
            }
        }
        if let Some(conn) = &self.conn {
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        }
        Ok(FollowReport {
            start: self.start.clone(),
            status: self.status.borrow().clone(),
        })
    }

    /// Looks at the replica once and applies what is new.
    pub async fn poll(&mut self) -> Result<PollOutcome, FollowError> {
        self.check_foreign_write().await?;
        let cur = self.position.txid;
        // Level 0 first: one LIST when the follower keeps up.
        let l0 = self.replica.list_level(0).await?;
        let l0 = self.usable(l0);
        let step = match next_step(&l0, cur, false) {
            // A long way behind (e.g. after a day offline): the compacted
            // levels may reach the same TXID with far fewer files.
            Some(Step::Apply { chain, .. }) if chain.len() > LONG_CHAIN => {
                self.decide_on_all(cur).await?
            }
            Some(step) => step,
            None => self.decide_on_all(cur).await?,
        };
        match step {
            Step::UpToDate => Ok(PollOutcome::UpToDate),
            Step::Empty => Err(FollowError::EmptyReplica {
                replica: self.replica.to_string(),
            }),
            Step::Apply { chain, exact } => {
                match self
                    .apply(&chain, if exact { Mode::Exact } else { Mode::Overlap })
                    .await
                {
                    Ok(out) => Ok(out),
                    Err(ApplyFailure::Discontinuity(reason)) => {
                        let files = self.list_all().await?;
                        self.rebuild(&files, &reason).await
                    }
                    Err(ApplyFailure::Foreign {
                        data_version,
                        table,
                        stamp,
                    }) => {
                        self.foreign(data_version, table, stamp)?;
                        let files = self.list_all().await?;
                        self.rebuild(&files, "the follower was written to by another connection")
                            .await
                    }
                    Err(ApplyFailure::Error(e)) => Err(e),
                }
            }
            Step::Rebuild { files, reason } => self.rebuild(&files, &reason).await,
        }
    }

    /// Every level's files with a valid name.
    pub(super) async fn list_all(&mut self) -> Result<Vec<LtxFileInfo>, FollowError> {
        let files = self.replica.list_all().await?;
        Ok(self.usable(files))
    }

    /// The next step given every level.
    pub(super) async fn decide_on_all(&mut self, cur: Txid) -> Result<Step, FollowError> {
        let files = self.list_all().await?;
        // A complete listing always decides; `Empty` covers the impossible.
        Ok(next_step(&files, cur, true).unwrap_or(Step::Empty))
    }

    /// Drops the files whose names cannot be LTX files (TXID 0), warning
    /// once per name.
    pub(super) fn usable(&mut self, files: Vec<LtxFileInfo>) -> Vec<LtxFileInfo> {
        let (valid, invalid) = crate::chain::split_valid(files);
        for (f, why) in invalid {
            let key = self.replica.file_key(f.level, f.min_txid, f.max_txid);
            if self.warned.insert(key.clone()) {
                tracing::warn!(
                    "ignoring {}/{key}: not a valid LTX file name ({why})",
                    self.replica
                );
            }
        }
        valid
    }

    /// Applies the whole chain from TXID 0 to the latest, in one transaction.
    pub(super) async fn rebuild(
        &mut self,
        files: &[LtxFileInfo],
        reason: &str,
    ) -> Result<PollOutcome, FollowError> {
        let from = self.position.txid;
        let latest =
            files
                .iter()
                .map(|f| f.max_txid)
                .max()
                .ok_or_else(|| FollowError::EmptyReplica {
                    replica: self.replica.to_string(),
                })?;
        let chain = plan_chain(files, Txid(0), latest)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                let gap = first_gap(files, Txid(0), latest).unwrap_or(latest);
                FollowError::Restore(RestoreError::NoRestorePoint {
                    target: format!("TXID {latest}"),
                    replica: self.replica.to_string(),
                    reason: format!(
                        "no file covers TXID {gap}, so no chain of files reaches {latest}"
                    ),
                })
            })?;
        tracing::warn!(%from, to = %latest, "{reason}; re-restoring (one transaction)");
        match self.apply(&chain, Mode::Rebuild).await {
            Ok(PollOutcome::Applied { to, .. }) => {
                self.status.send_modify(|s| s.rebuilds += 1);
                Ok(PollOutcome::Rebuilt {
                    from,
                    to,
                    reason: reason.to_string(),
                })
            }
            Ok(other) => Ok(other),
            Err(ApplyFailure::Discontinuity(r)) => {
                Err(FollowError::Restore(RestoreError::NoRestorePoint {
                    target: format!("TXID {latest}"),
                    replica: self.replica.to_string(),
                    reason: r,
                }))
            }
            Err(ApplyFailure::Foreign {
                data_version,
                table,
                stamp,
            }) => {
                self.foreign(data_version, table, stamp)?;
                Box::pin(self.rebuild(files, "the follower was written to by another connection"))
                    .await
            }
            Err(ApplyFailure::Error(e)) => Err(e),
        }
    }

    /// Runs `f` with the connection on a blocking thread.
    pub(super) async fn with_conn<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection, &Path) -> T + Send + 'static,
    ) -> Result<T, FollowError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            // A call cancelled while its task ran dropped the connection
            // with the task.
            None => self.reopen()?,
        };
        let path = self.path.clone();
        match crate::task::blocking(move || {
            let r = f(&conn, &path);
            (conn, r)
        })
        .await
        {
            Ok((conn, r)) => {
                self.conn = Some(conn);
                Ok(r)
            }
            Err(e) => {
                // The connection went with the task: open a new one.
                self.conn = Some(self.reopen()?);
                Err(FollowError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })
            }
        }
    }

    /// A new connection, for one lost with a task that failed or was
    /// cancelled. That task may have committed before it ended, and a new
    /// connection's `data_version` cannot tell: the next check compares
    /// every page with the position's checksum instead.
    pub(super) fn reopen(&mut self) -> Result<Connection, FollowError> {
        let conn = open_conn(&self.path)?;
        // Never a value `PRAGMA data_version` returns, which starts at 1.
        self.data_version = i64::MIN;
        Ok(conn)
    }

    /// Detects a commit by another connection since our last one.
    pub(super) async fn check_foreign_write(&mut self) -> Result<(), FollowError> {
        let known = self.data_version;
        let seen = self
            .with_conn(
                move |conn, path| -> Result<Option<(i64, PageScan)>, FollowError> {
                    let dv = data_version(conn, path)?;
                    if dv == known {
                        return Ok(None);
                    }
                    Ok(Some((dv, scan(conn, path)?)))
                },
            )
            .await??;
        match seen {
            None => Ok(()),
            Some((dv, scanned)) => {
                let table = scanned.with_stamp(self.stamp);
                let stamp = Page1Stamp::of(&scanned.page1);
                self.foreign(dv, table, stamp)
            }
        }
    }

    /// Handles a change by another connection: accepted if no page changed,
    /// else an error, or with `force` the follower forgets its position so
    /// that the next step re-restores. `table` is the checksum with the
    /// follower's stamp, `stamp` the one page 1 holds.
    pub(super) fn foreign(
        &mut self,
        dv: i64,
        table: DbChecksum,
        stamp: Page1Stamp,
    ) -> Result<(), FollowError> {
        if table.value() == self.table.value() {
            // Another connection committed nothing that changed a page (or a
            // checkpoint): accept.
            self.data_version = dv;
            return Ok(());
        }
        let err = FollowError::ForeignWrite {
            path: self.path.clone(),
            txid: self.position.txid,
            expected: self.table.value(),
            actual: table.value(),
        };
        if !self.opts.force {
            return Err(err);
        }
        tracing::warn!("{err}; re-restoring in place (--force)");
        self.table = table;
        self.stamp = stamp;
        self.data_version = dv;
        // Not a state of the replica: the next poll cannot continue from it.
        self.position.txid = Txid(0);
        self.position.checksum = self.table.value();
        Ok(())
    }

    pub(super) async fn apply(
        &mut self,
        chain: &[LtxFileInfo],
        mode: Mode,
    ) -> Result<PollOutcome, ApplyFailure> {
        let staging = super::super::sibling(&self.path, ".tmp-ltx");
        // Removed however this ends (an error, a panic, the future dropped).
        let _staging = StagingDir(staging.clone());
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let prepared = prepare(
            &self.replica,
            chain,
            &staging,
            self.opts.concurrency,
            &crate::progress::ProgressSink::none(),
        )
        .await
        .map_err(FollowError::from)?;
        let job = ApplyJob {
            chain: chain.to_vec(),
            prepared: Some(prepared),
            scratch: staging.join("check.db"),
            mode,
            table: std::mem::take(&mut self.table),
            stamp: self.stamp,
            position: self.position,
            data_version: self.data_version,
            state: self.state.clone(),
        };
        let done = self.with_conn(move |conn, path| job.run(conn, path)).await;
        let (table, result) = match done {
            Ok(d) => d,
            Err(e) => {
                // The table went with the task: recompute it.
                let scanned = self.with_conn(scan).await??;
                self.table = scanned.with_stamp(self.stamp);
                return Err(e.into());
            }
        };
        self.table = table;
        let applied = result?;
        let from = self.position.txid;
        self.position = applied.position;
        self.stamp = applied.stamp;
        self.data_version = applied.data_version;
        self.status.send_modify(|s| {
            s.position = applied.position;
            s.batches += 1;
        });
        Ok(PollOutcome::Applied {
            from,
            to: applied.position.txid,
            files: chain.len(),
            pages: applied.pages,
            verified: applied.verified,
        })
    }
}
