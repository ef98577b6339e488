//! The databases of watched `dir` sources (`watch: true`) while `replicate`
//! runs: each one created in the directory is opened and replicated (and
//! served over HTTP), each one removed is stopped with a final sync.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use litevault::config::{DbSource, DirWatch};
use litevault::replica::keeper::{self, Keeper};
use litevault::server::ServerState;
use litevault::{ReplicateError, ReplicateOptions, Replicator};

/// Turns a database's config into its replicator's options (the file's
/// settings, then the command line's).
pub type MakeOptions = Arc<dyn Fn(&litevault::config::DbConfig) -> ReplicateOptions + Send + Sync>;

/// The watchers, running.
pub struct Watched {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<bool>>,
}

impl Watched {
    /// Starts one task per watcher, each running the replicators of the
    /// databases found in its directory at the start (already open).
    pub fn start(
        watchers: Vec<(DirWatch, Vec<Replicator>)>,
        make: MakeOptions,
        keepers: Arc<Vec<Keeper>>,
        server: Option<ServerState>,
    ) -> Watched {
        let (stop, rx) = watch::channel(false);
        let tasks = watchers
            .into_iter()
            .map(|(w, initial)| {
                tokio::spawn(watch_dir(
                    w,
                    initial,
                    make.clone(),
                    keepers.clone(),
                    server.clone(),
                    rx.clone(),
                ))
            })
            .collect();
        Watched { stop, tasks }
    }

    /// Stops watching, and stops the replicators the watchers started,
    /// each with its final sync; false if one failed.
    pub async fn stop(self) -> bool {
        let _ = self.stop.send(true);
        let mut ok = true;
        for t in self.tasks {
            ok &= t.await.unwrap_or(false);
        }
        ok
    }
}

/// The path a replicator knows its database by (`Replicator::path`,
/// canonical), for a path the directory scan gave: the database itself may
/// be gone, its directory is not.
fn key(p: &std::path::Path) -> PathBuf {
    match (p.parent().map(std::fs::canonicalize), p.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

/// One replicator a watcher started, and how to stop it.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ReplicateError>>,
}

impl Running {
    fn start(r: Replicator) -> Running {
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            r.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
        Running { stop, task }
    }

    async fn stop(self, path: &std::path::Path) -> bool {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(db = %path.display(), error = %e, "final sync failed");
                false
            }
            Err(e) => {
                tracing::error!(db = %path.display(), error = %e, "replicator task failed");
                false
            }
        }
    }
}

async fn watch_dir(
    mut w: DirWatch,
    initial: Vec<Replicator>,
    make: MakeOptions,
    keepers: Arc<Vec<Keeper>>,
    server: Option<ServerState>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut running: HashMap<PathBuf, Running> = initial
        .into_iter()
        .map(|r| (r.path().to_path_buf(), Running::start(r)))
        .collect();
    // Databases that could not be opened yet, told once each.
    let mut told: HashSet<PathBuf> = HashSet::new();
    let mut ok = true;
    tracing::info!(dir = %w.dir().display(), "watching for databases created and removed");
    loop {
        let changes = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            c = w.next() => c,
        };
        for path in changes.removed {
            told.remove(&path);
            let path = key(&path);
            if let Some(r) = running.remove(&path) {
                if let Some(s) = &server {
                    s.remove(&path);
                }
                ok &= r.stop(&path).await;
                tracing::info!(db = %path.display(), "removed from the watched directory; its replication stopped");
            }
        }
        for db in changes.added {
            let DbSource::Path(path) = &db.source else {
                continue;
            };
            let r = match open_new(path, &db, &make, &keepers).await {
                Ok(r) => r,
                Err(e) => {
                    // A database just created is often not in WAL mode (or
                    // not even a whole database) until the app's first
                    // transaction: it is offered again at the next rescan.
                    if told.insert(path.clone()) {
                        tracing::warn!(db = %path.display(), error = %e, "new in the watched directory but not replicable yet; trying again at each rescan");
                    }
                    w.retry_later(path);
                    continue;
                }
            };
            told.remove(path);
            tracing::info!(db = %path.display(), replicas = ?r.replicas().iter().map(|r| r.to_string()).collect::<Vec<_>>(), txid = %r.local_txid(), "replicating (new in the watched directory)");
            if let Some(s) = &server {
                s.add(r.clone());
            }
            running.insert(r.path().to_path_buf(), Running::start(r));
        }
    }
    let stops = running
        .into_iter()
        .map(|(p, r)| async move { r.stop(&p).await });
    for r in futures::future::join_all(stops).await {
        ok &= r;
    }
    ok
}

/// Opens the replicas and the replicator of a database new in the
/// directory.
async fn open_new(
    path: &std::path::Path,
    db: &litevault::config::DbConfig,
    make: &MakeOptions,
    keepers: &[Keeper],
) -> anyhow::Result<Replicator> {
    let replicas = db
        .replicas
        .iter()
        .map(|r| r.open().map(|r| keeper::attach(keepers, r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Replicator::open_many(path, replicas, make(db)).await?)
}
