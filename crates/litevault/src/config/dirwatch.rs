//! A `dir` source with `watch: true`, while running: the databases created
//! in the directory (in its subdirectories too, when recursive) are picked
//! up, and those removed are let go of.
//!
//! The directory (and each subdirectory but the hidden ones) is watched
//! with the kernel's change notifications ([`crate::notify`]): a created,
//! removed or renamed entry starts a rescan a moment later (so a burst of creations is one
//! rescan). A rescan also runs every [`RESCAN`] regardless, for a missed
//! event or where notifications are not available, and every
//! [`PENDING_RESCAN`] while a file whose name matches is not a database
//! yet (an app's new database is an empty file until its first write).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{is_sqlite, matching_files};
use super::{DbConfig, DbSource};

/// The rescan that runs whatever the notifications say.
pub const RESCAN: Duration = Duration::from_secs(10);

/// The rescan while a matching file is not a SQLite database yet.
pub const PENDING_RESCAN: Duration = Duration::from_secs(1);

/// How long after a notification the rescan runs, so that the entries a
/// burst creates are taken in one rescan.
const SETTLE: Duration = Duration::from_millis(100);

/// What a rescan found changed.
#[derive(Debug, Default)]
pub struct DirChanges {
    /// The databases that appeared, each with its replicas (as
    /// [`DbConfig::instances`] gives them).
    pub added: Vec<DbConfig>,
    /// The databases that are gone.
    pub removed: Vec<PathBuf>,
}

/// One watched `dir` source.
pub struct DirWatch {
    entry: DbConfig,
    /// The databases handed out and not removed since.
    known: BTreeSet<PathBuf>,
    /// Files whose name matches that were not SQLite databases at the last
    /// look.
    pending: BTreeSet<PathBuf>,
    subs: Vec<crate::notify::Subscription>,
    /// The directories watched (to renew the watches when they change).
    dirs: Vec<PathBuf>,
}

impl DirWatch {
    /// A watcher of `entry`, a `dir` source with `watch: true`, whose
    /// databases `known` are already replicated; `None` for any other entry.
    pub fn new(entry: &DbConfig, known: impl IntoIterator<Item = PathBuf>) -> Option<DirWatch> {
        let DbSource::Dir { watch: true, .. } = &entry.source else {
            return None;
        };
        // The watches are set up by the first `next`, whose first scan also
        // finds the databases created since `known` was listed.
        Some(DirWatch {
            entry: entry.clone(),
            known: known.into_iter().collect(),
            pending: BTreeSet::new(),
            subs: Vec::new(),
            dirs: Vec::new(),
        })
    }

    /// The directory watched.
    pub fn dir(&self) -> &std::path::Path {
        match &self.entry.source {
            DbSource::Dir { dir, .. } => dir,
            DbSource::Path(p) => p,
        }
    }

    /// Waits until the directory's databases change, and says how.
    pub async fn next(&mut self) -> DirChanges {
        // First a look at once: what changed since the last one (or since
        // `known` was listed).
        loop {
            let changes = self.scan();
            if !changes.added.is_empty() || !changes.removed.is_empty() {
                return changes;
            }
            self.wait().await;
        }
    }

    /// Forgets a database handed out by [`next`](Self::next) that could not
    /// be opened (not in WAL mode yet, say): it is offered again after the
    /// next rescan that finds it.
    pub fn retry_later(&mut self, path: &std::path::Path) {
        self.known.remove(path);
        self.pending.insert(path.to_path_buf());
    }

    async fn wait(&self) {
        let live: Vec<_> = self.subs.iter().filter(|s| s.is_live()).collect();
        let every = if !self.pending.is_empty() {
            PENDING_RESCAN
        } else {
            RESCAN
        };
        if live.is_empty() {
            tokio::time::sleep(every.min(PENDING_RESCAN * 2)).await;
            return;
        }
        let any = futures::future::select_all(live.iter().map(|s| Box::pin(s.changed())));
        tokio::select! {
            _ = any => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep(every) => {}
        }
    }

    fn scan(&mut self) -> DirChanges {
        let DbSource::Dir {
            dir,
            pattern,
            recursive,
            ..
        } = &self.entry.source
        else {
            return DirChanges::default();
        };
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        if let Err(e) = matching_files(dir, pattern, *recursive, &mut files, &mut dirs) {
            // A directory that cannot be read now (removed, permissions)
            // removes nothing: its databases may come back.
            tracing::warn!(dir = %dir.display(), error = %e, "cannot scan the watched directory; trying again later");
            return DirChanges::default();
        }
        if dirs != self.dirs || self.subs.iter().any(|s| !s.is_live()) {
            // Not the hidden folders (litevault's and Litestream's state
            // beside each database, busy with every commit): the rescan
            // every `RESCAN` still looks in them.
            let hidden = |d: &PathBuf| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            };
            self.subs = dirs
                .iter()
                .filter(|d| *d == dir || !hidden(d))
                .filter_map(|d| crate::notify::subscribe(d, crate::notify::Names::Entries))
                .collect();
            self.dirs = dirs;
        }
        let present: BTreeSet<PathBuf> = files.into_iter().collect();
        let mut out = DirChanges::default();
        for p in &present {
            if self.known.contains(p) {
                continue;
            }
            if is_sqlite(p) {
                self.pending.remove(p);
                self.known.insert(p.clone());
                out.added.push(self.entry.instance(p.clone()));
            } else {
                self.pending.insert(p.clone());
            }
        }
        self.pending.retain(|p| present.contains(p));
        let gone: Vec<PathBuf> = self
            .known
            .iter()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for p in &gone {
            self.known.remove(p);
        }
        out.removed = gone;
        out
    }
}
