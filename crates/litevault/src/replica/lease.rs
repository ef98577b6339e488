//! One writer per replica: a lease object beside the LTX files, taken and
//! renewed with conditional writes.
//!
//! The lease lives at `<prefix>/litevault.lease` (JSON: holder, owner,
//! expiry). Every write of it is conditional: it is created with
//! `PutMode::Create`, and renewed, taken over or released with
//! `PutMode::Update` on the version read or written last, so two
//! replicators can never both believe they hold it: the loser of any race
//! gets a precondition failure. A second replicator refuses to start and
//! names the holder; after the lease has expired (its holder stopped
//! renewing), `takeover` lets it replace the lease. The same owner (same
//! host and database path) whose process is gone may take its own lease
//! back at once, so a crash and restart does not wait for the expiry.
//! Releasing marks the record `released` (anyone may take it at once)
//! rather than deleting it: a delete cannot be conditional, and one that
//! raced a successor's takeover would remove the successor's lease.
//!
//! Under a flaky store a conditional write can happen while its answer is
//! lost, and its retry then meets a 412/409. A conflict is therefore never
//! taken at its word: the lease is read again, and if the record is still
//! ours (only we write records with our ID) the write happened or nobody
//! took it, and we go on; only someone else's record means the lease is
//! lost or held. What a holder may believe is bounded by the expiry of the
//! last record it saw acknowledged; an unacknowledged renewal can only
//! have extended the record, never shortened it. Proven under injected
//! faults by `lease::never_two_holders_under_faults`.
//!
//! The local backend (`file://`) has no conditional update: there the same
//! read-compare-write runs under an exclusive `flock` on a lock file beside
//! the lease, which gives the same guarantee between processes of one host.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::keeper::{self, Backing};
use super::{Replica, ReplicaError};

/// The object name of the lease, under the replica's prefix.
pub const LEASE_NAME: &str = "litevault.lease";

/// What the lease object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Who holds it, for people: `host:pid`.
    pub holder: String,
    /// Host name.
    pub host: String,
    /// Process ID.
    pub pid: u32,
    /// The database replicated (canonical path on the holder's host).
    pub db: String,
    /// Random ID of this acquisition.
    pub id: String,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Given up by its holder: anyone may take it. (A release overwrites
    /// the record conditionally instead of deleting it, since a delete
    /// cannot be made conditional and could remove a successor's lease.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
    /// The keeper whose renewals extend this lease (see
    /// [`super::keeper`]): its key relative to this record's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeper: Option<String>,
    /// The ID of the keeper record that backs this lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeper_id: Option<String>,
}

/// Errors of the lease.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another replicator holds the lease.
    #[error(
        "replica {replica} is being written by {holder} (database {db}); its lease expires at {expires_at}. Stop that replicator, or, if it is gone, wait for the expiry and start with --takeover"
    )]
    Held {
        /// The replica.
        replica: String,
        /// The holder.
        holder: String,
        /// Its database.
        db: String,
        /// When the lease expires.
        expires_at: DateTime<Utc>,
    },
    /// The lease was taken by someone else while we held it.
    #[error(
        "lost the lease on {replica} to {holder}: another replicator took over; this one stops writing to it"
    )]
    Lost {
        /// The replica.
        replica: String,
        /// The new holder, when known.
        holder: String,
    },
    /// The lease object kept changing between our read and our conditional
    /// write.
    #[error(
        "the lease of {replica} changed under each of {rounds} conditional writes (another replicator is taking it, or the store answers inconsistently); nothing was taken, try again"
    )]
    Contended {
        /// The replica.
        replica: String,
        /// How many read-and-write rounds were tried.
        rounds: u32,
    },
    /// The store could not be reached.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
    /// The lease object is not valid JSON.
    #[error("the lease object {key} is damaged ({reason}); delete it if no replicator is running")]
    Damaged {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl From<crate::task::TaskFailed> for LeaseError {
    fn from(e: crate::task::TaskFailed) -> Self {
        LeaseError::Internal(e.to_string())
    }
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    replica: Replica,
    /// The lease object's key.
    key: String,
    record: LeaseRecord,
    version: Option<UpdateVersion>,
    ttl: Duration,
    /// When it was last written (taken or renewed).
    written: std::time::Instant,
    /// The keeper backing it, as of its last write.
    backing: Option<Backing>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl LeaseRecord {
    fn new(db: &str, ttl: Duration) -> LeaseRecord {
        let host = host_name();
        let pid = std::process::id();
        let now = Utc::now();
        LeaseRecord {
            holder: format!("{host}:{pid}"),
            host,
            pid,
            db: db.to_string(),
            id: format!("{:016x}", rand::random::<u64>()),
            acquired_at: now,
            expires_at: expiry(now, ttl),
            released: false,
            keeper: None,
            keeper_id: None,
        }
    }

    /// Names the keeper backing it, or none.
    fn backed_by(mut self, b: Option<&Backing>) -> LeaseRecord {
        self.keeper = b.map(|b| b.rel.clone());
        self.keeper_id = b.map(|b| b.id.clone());
        self
    }

    /// This record as its judge must take it: a live keeper record with the
    /// ID it names extends its expiry to the keeper's.
    fn extended_by(mut self, keeper: Option<LeaseRecord>) -> LeaseRecord {
        if let Some(k) = keeper
            && self.keeper_id.as_deref() == Some(k.id.as_str())
            && !k.released
        {
            self.expires_at = self.expires_at.max(k.expires_at);
        }
        self
    }

    /// Whether `mine` may replace this record without `takeover`: it has
    /// expired, or it is our own (same host and database) left by a process
    /// that no longer exists.
    fn replaceable_by(&self, mine: &LeaseRecord, takeover: bool, now: DateTime<Utc>) -> bool {
        let expired = self.expires_at <= now;
        // Our own lease (same host and database) left by a process that is
        // gone, or by this very process (a replicator reopened after being
        // dropped without a clean stop).
        let own_dead = self.host == mine.host
            && self.db == mine.db
            && (self.pid == mine.pid || !process_alive(self.pid));
        self.released || (expired && takeover) || own_dead || (self.id == mine.id)
    }

    /// Whether only its expiry (with `takeover`) lets `mine` replace it,
    /// and a keeper it names may yet extend that expiry.
    fn only_expired(&self, mine: &LeaseRecord, takeover: bool, now: DateTime<Utc>) -> bool {
        self.keeper.is_some()
            && !self.released
            && self.id != mine.id
            && self.expires_at <= now
            && takeover
            && !LeaseRecord {
                expires_at: DateTime::<Utc>::MAX_UTC,
                ..self.clone()
            }
            .replaceable_by(mine, false, now)
    }
}

/// When a lease taken at `now` for `ttl` expires: the last representable
/// time for a TTL past it (adding would panic).
fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The lease object's body.
fn encode(record: &LeaseRecord) -> Result<Vec<u8>, LeaseError> {
    serde_json::to_vec_pretty(record)
        .map_err(|e| LeaseError::Internal(format!("cannot encode the lease record: {e}")))
}

impl Replica {
    fn lease_key(&self) -> String {
        super::join(&self.prefix, LEASE_NAME)
    }

    /// Takes the lease of this replica for database `db`, valid for `ttl`
    /// unless renewed. Fails with [`LeaseError::Held`] when another
    /// replicator holds it (after expiry, `takeover` replaces it). With a
    /// keeper (see [`Replica::with_keeper`]) that backs it, the lease
    /// records the keeper and is not renewed while the keeper is.
    pub async fn acquire_lease(
        &self,
        db: &str,
        ttl: Duration,
        takeover: bool,
    ) -> Result<Lease, LeaseError> {
        let backing = self.keeper.as_ref().and_then(|k| k.backing(self));
        self.acquire_at(self.lease_key(), db, ttl, takeover, backing)
            .await
    }

    /// Takes the keeper lease of a directory's databases on this replica
    /// (see [`super::keeper`]). An expired keeper is always replaced: its
    /// ID changes, so it backs none of its old holder's leases any more.
    pub(super) async fn acquire_keeper(
        &self,
        dir: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        let key = super::join(&self.prefix, super::keeper::KEEPER_NAME);
        self.acquire_at(key, dir, ttl, true, None).await
    }

    async fn acquire_at(
        &self,
        key: String,
        db: &str,
        ttl: Duration,
        takeover: bool,
        backing: Option<Backing>,
    ) -> Result<Lease, LeaseError> {
        let mine = LeaseRecord::new(db, ttl).backed_by(backing.as_ref());
        let version = if let Some(root) = self.local_root.clone() {
            let mine2 = mine.clone();
            let replica = self.to_string();
            let key2 = key.clone();
            crate::task::blocking(move || {
                local_swap(&root, &key2, &replica, |old| match old {
                    None => Ok(Some(mine2.clone())),
                    Some(old) => {
                        let old = old.clone().extended_by(local_keeper(&root, &old));
                        if old.replaceable_by(&mine2, takeover, Utc::now()) {
                            Ok(Some(mine2.clone()))
                        } else {
                            Err(held(&replica, &old))
                        }
                    }
                })
            })
            .await??;
            None
        } else {
            Some(self.acquire_remote(&key, &mine, takeover).await?)
        };
        Ok(Lease {
            replica: self.clone(),
            key,
            record: mine,
            version,
            ttl,
            written: std::time::Instant::now(),
            backing,
        })
    }

    /// Takes the lease with conditional writes only: `Create` when there is
    /// none, else `Update` on the version just read, so a decision taken on
    /// a stale read fails instead of replacing a newer lease. A write whose
    /// answer was lost (it happened, we saw an error, the retry got a
    /// conflict) shows up as our own record on the next read.
    async fn acquire_remote(
        &self,
        key: &str,
        mine: &LeaseRecord,
        takeover: bool,
    ) -> Result<UpdateVersion, LeaseError> {
        let path = ObjectPath::from(key);
        let body = encode(mine)?;
        let mut create = true;
        for _ in 0..LEASE_ROUNDS {
            if create {
                match self
                    .put_lease(&path, key, body.clone(), PutMode::Create)
                    .await
                {
                    Ok(v) => return Ok(v),
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let Some((old, version)) = self.read_lease_opt(&path, key).await? else {
                // Gone since (or the conflict was not real): create it.
                create = true;
                continue;
            };
            if old.id == mine.id {
                return Ok(version);
            }
            if old.only_expired(mine, takeover, Utc::now()) {
                match self.judge_keeper(key, &old).await? {
                    Keeper::Backs(until) => {
                        let mut old = old;
                        old.expires_at = until;
                        return Err(held(&self.to_string(), &old));
                    }
                    Keeper::DoesNot => {}
                    // Read again, the lease and its keeper.
                    Keeper::Changed => {
                        create = false;
                        continue;
                    }
                }
            } else if !old.replaceable_by(mine, takeover, Utc::now()) {
                // Shown with its keeper's expiry, which is what a takeover
                // would wait for.
                let old = match old.keeper.as_deref().and_then(|rel| keeper_key(key, rel)) {
                    Some(k) if old.expires_at <= Utc::now() => {
                        let path = ObjectPath::from(k.as_str());
                        let keeper = self.read_lease_opt(&path, &k).await.ok().flatten();
                        old.extended_by(keeper.map(|(k, _)| k))
                    }
                    _ => old,
                };
                return Err(held(&self.to_string(), &old));
            }
            match self
                .put_lease(&path, key, body.clone(), PutMode::Update(version))
                .await
            {
                Ok(v) => return Ok(v),
                // Replaced between our read and write (by someone else, or
                // by our own write whose answer was lost): read again.
                Err(e) if is_conflict(&e) => create = false,
                Err(e) if is_not_found(&e) => create = true,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Contended {
            replica: self.to_string(),
            rounds: LEASE_ROUNDS,
        })
    }

    /// Whether the keeper that `record` (the expired lease at `key`) names
    /// still backs it. Any answer but "it does" is made sure of by a
    /// conditional write of the keeper object as read (the same record
    /// again, or a released one where there was none): a stale read then
    /// fails that write instead of letting an expired-looking keeper, or
    /// an old one, hide a holder that still counts on it; and a holder
    /// renewing the keeper after this moment renews it after its expiry,
    /// which makes it renew each of its leases once more before it writes
    /// (see [`super::keeper`]).
    async fn judge_keeper(&self, key: &str, record: &LeaseRecord) -> Result<Keeper, LeaseError> {
        let rel = record.keeper.as_deref().unwrap_or_default();
        let Some(keeper_key) = keeper_key(key, rel) else {
            // Not a keeper this version writes: the lease's own expiry.
            return Ok(Keeper::DoesNot);
        };
        let path = ObjectPath::from(keeper_key.as_str());
        let (body, mode) = match self.read_lease_opt(&path, &keeper_key).await? {
            Some((k, _)) if record.keeper_id.as_deref() == Some(k.id.as_str()) && k.released => {
                // Released: final for that ID.
                return Ok(Keeper::DoesNot);
            }
            Some((k, _))
                if record.keeper_id.as_deref() == Some(k.id.as_str())
                    && k.expires_at > Utc::now() =>
            {
                return Ok(Keeper::Backs(k.expires_at.max(record.expires_at)));
            }
            Some((k, version)) => (encode(&k)?, PutMode::Update(version)),
            None => {
                let mut none = LeaseRecord::new("(no keeper)", Duration::ZERO);
                none.released = true;
                (encode(&none)?, PutMode::Create)
            }
        };
        match self.put_lease(&path, &keeper_key, body, mode).await {
            Ok(_) => Ok(Keeper::DoesNot),
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Keeper::Changed),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_lease(
        &self,
        path: &ObjectPath,
        key: &str,
        body: Vec<u8>,
        mode: PutMode,
    ) -> Result<UpdateVersion, ReplicaError> {
        let payload = PutPayload::from(body);
        let r = self
            .with_retry_op("PUT", key, &self.stats.puts, || {
                self.store.put_opts(
                    path,
                    payload.clone(),
                    PutOptions {
                        mode: mode.clone(),
                        ..Default::default()
                    },
                )
            })
            .await?;
        Ok(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    /// The lease record and its version, `None` when there is none.
    async fn read_lease_opt(
        &self,
        path: &ObjectPath,
        key: &str,
    ) -> Result<Option<(LeaseRecord, UpdateVersion)>, LeaseError> {
        match self.read_lease(path, key).await {
            Ok(r) => Ok(Some(r)),
            Err(LeaseError::Replica(e)) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_lease(
        &self,
        path: &ObjectPath,
        key: &str,
    ) -> Result<(LeaseRecord, UpdateVersion), LeaseError> {
        // The body is read inside the retry: a response cut off mid-body is
        // as transient as a failed request.
        let (version, bytes) = self
            .with_retry_op("GET", key, &self.stats.gets, || async {
                let got = self.store.get(path).await?;
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                Ok((version, got.bytes().await?))
            })
            .await?;
        self.stats
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let record = serde_json::from_slice(&bytes).map_err(|e| LeaseError::Damaged {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok((record, version))
    }
}

/// The key of the keeper named by `rel` in the lease at `key`.
fn keeper_key(key: &str, rel: &str) -> Option<String> {
    keeper::resolve_remote(key.rsplit_once('/').map_or("", |(d, _)| d), rel)
}

/// What the keeper a lease names says of it.
enum Keeper {
    /// It backs the lease, which lasts until then.
    Backs(DateTime<Utc>),
    /// It does not (made sure of by a conditional write).
    DoesNot,
    /// It changed under that write: read everything again.
    Changed,
}

/// Read-and-write rounds of one lease operation before it gives up.
const LEASE_ROUNDS: u32 = 8;

/// A conditional write found the object other than expected.
fn is_conflict(e: &ReplicaError) -> bool {
    matches!(e, ReplicaError::Storage { source, .. } if matches!(
        **source,
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }
    ))
}

fn is_not_found(e: &ReplicaError) -> bool {
    matches!(e, ReplicaError::Storage { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
}

fn held(replica: &str, old: &LeaseRecord) -> LeaseError {
    LeaseError::Held {
        replica: replica.to_string(),
        holder: old.holder.clone(),
        db: old.db.clone(),
        expires_at: old.expires_at,
    }
}

/// Read-compare-write of the lease file under an exclusive `flock`.
fn local_swap(
    root: &std::path::Path,
    key: &str,
    replica: &str,
    decide: impl FnOnce(Option<LeaseRecord>) -> Result<Option<LeaseRecord>, LeaseError>,
) -> Result<(), LeaseError> {
    let io = |source: std::io::Error| {
        LeaseError::Replica(ReplicaError::Storage {
            op: "PUT",
            key: key.to_string(),
            replica: replica.to_string(),
            attempts: 1,
            source: Box::new(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            }),
        })
    };
    let path = root.join(key);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let lock_path = path.with_extension("lease.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    // SAFETY: flock on a descriptor we own; released when it is closed.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    let old =
        match std::fs::read(&path) {
            Ok(b) => Some(serde_json::from_slice::<LeaseRecord>(&b).map_err(|e| {
                LeaseError::Damaged {
                    key: key.to_string(),
                    reason: e.to_string(),
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
    match decide(old)? {
        Some(new) => {
            let tmp = path.with_extension("lease.tmp");
            std::fs::write(&tmp, encode(&new)?).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
    drop(lock);
    Ok(())
}

/// The keeper record a local lease record names, if it can be read.
fn local_keeper(root: &std::path::Path, record: &LeaseRecord) -> Option<LeaseRecord> {
    let path = keeper::resolve_local(root, record.keeper.as_deref()?)?;
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

impl Lease {
    /// The record we hold.
    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// How long the lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Renews the lease when it is due: a third of its TTL after it was
    /// last written, unless a keeper backs it; at once when a keeper could
    /// back it and does not yet. Call it before each write to the replica:
    /// an error means nothing may be written now ([`LeaseError::Lost`]:
    /// ever again).
    pub async fn keep(&mut self) -> Result<(), LeaseError> {
        if self.backed() {
            return Ok(());
        }
        let could = self
            .replica
            .keeper
            .as_ref()
            .is_some_and(|k| k.backing(&self.replica).is_some());
        if could || self.written.elapsed() >= self.ttl / 3 {
            self.renew().await?;
        }
        Ok(())
    }

    /// Whether a keeper backs the lease now (no renewal of its own needed).
    pub fn backed(&self) -> bool {
        match (&self.replica.keeper, &self.backing) {
            (Some(k), Some(b)) => k.still_backs(b),
            _ => false,
        }
    }

    /// Until when its holder may count on the lease: the expiry of its own
    /// last acknowledged write, or later while a keeper backs it.
    pub fn valid_until(&self) -> DateTime<Utc> {
        let own = self.record.expires_at;
        match &self.replica.keeper {
            Some(k) if self.backed() => k.until().map_or(own, |u| u.max(own)),
            _ => own,
        }
    }

    /// Extends the lease by its TTL from now (and records the keeper that
    /// backs it now, if one does). Fails with [`LeaseError::Lost`] when
    /// another replicator replaced it.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let backing = self
            .replica
            .keeper
            .as_ref()
            .and_then(|k| k.backing(&self.replica));
        let mut next = self.record.clone().backed_by(backing.as_ref());
        next.expires_at = expiry(Utc::now(), self.ttl);
        let replica = self.replica.clone();
        let key = self.key.clone();
        match (&self.version, replica.local_root.clone()) {
            (None, Some(root)) => {
                let mine = self.record.clone();
                let next2 = next.clone();
                let name = replica.to_string();
                crate::task::blocking(move || {
                    local_swap(&root, &key, &name, |old| match old {
                        Some(old) if old.id == mine.id => Ok(Some(next2)),
                        Some(old) => Err(LeaseError::Lost {
                            replica: name.clone(),
                            holder: old.holder,
                        }),
                        None => Err(LeaseError::Lost {
                            replica: name.clone(),
                            holder: "nobody (the lease was deleted)".into(),
                        }),
                    })
                })
                .await??;
            }
            (Some(version), _) => {
                let path = ObjectPath::from(key.as_str());
                let body = encode(&next)?;
                let mut version = version.clone();
                let mut renewed = None;
                for _ in 0..LEASE_ROUNDS {
                    match replica
                        .put_lease(&path, &key, body.clone(), PutMode::Update(version.clone()))
                        .await
                    {
                        Ok(v) => {
                            renewed = Some(v);
                            break;
                        }
                        Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                    // The conditional write failed: lost only if the lease
                    // is no longer ours. Only we write records with our ID,
                    // so ours means nobody took it since.
                    match replica.read_lease_opt(&path, &key).await? {
                        None => {
                            return Err(LeaseError::Lost {
                                replica: replica.to_string(),
                                holder: "nobody (the lease was deleted)".into(),
                            });
                        }
                        Some((r, _)) if r.id != self.record.id || r.released => {
                            return Err(LeaseError::Lost {
                                replica: replica.to_string(),
                                holder: r.holder,
                            });
                        }
                        // Our renewal happened; its answer was lost.
                        Some((r, v)) if r == next => {
                            renewed = Some(v);
                            break;
                        }
                        // Still ours, at another version (a stale version
                        // of ours, or a conflict that was not real).
                        Some((_, v)) => version = v,
                    }
                }
                match renewed {
                    Some(v) => self.version = Some(v),
                    None => {
                        return Err(LeaseError::Contended {
                            replica: replica.to_string(),
                            rounds: LEASE_ROUNDS,
                        });
                    }
                }
            }
            // Cannot happen: `acquire_lease` leaves the version unset only
            // for a replica with a local root, and `self.replica` is that
            // replica (its root never changes).
            (None, None) => unreachable!("a remote lease always has a version"),
        }
        self.record = next;
        self.backing = backing;
        self.written = std::time::Instant::now();
        Ok(())
    }

    /// Gives the lease up (deletes it if we still hold it).
    pub async fn release(self) -> Result<(), LeaseError> {
        let replica = self.replica.clone();
        let key = self.key.clone();
        if let Some(root) = replica.local_root.clone() {
            let mine = self.record.clone();
            let name = replica.to_string();
            crate::task::blocking(move || {
                local_swap(&root, &key, &name, |old| match old {
                    Some(old) if old.id == mine.id => Ok(None),
                    other => Ok(other),
                })
            })
            .await??;
            return Ok(());
        }
        // Released by a conditional overwrite: a delete cannot be made
        // conditional, and one racing a successor's takeover would remove
        // the successor's lease.
        let Some(mut version) = self.version.clone() else {
            return Ok(());
        };
        let path = ObjectPath::from(key.as_str());
        let mut gone = self.record.clone();
        gone.released = true;
        gone.expires_at = gone.expires_at.min(Utc::now());
        let body = encode(&gone)?;
        for _ in 0..LEASE_ROUNDS {
            match replica
                .put_lease(&path, &key, body.clone(), PutMode::Update(version.clone()))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            match replica.read_lease_opt(&path, &key).await? {
                // Not ours any more (nothing to give up), or our release
                // happened and its answer was lost.
                None => return Ok(()),
                Some((r, _)) if r.id != self.record.id || r.released => return Ok(()),
                Some((_, v)) => version = v,
            }
        }
        Err(LeaseError::Contended {
            replica: replica.to_string(),
            rounds: LEASE_ROUNDS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_past_the_calendar_expires_at_its_end() {
        let now = Utc::now();
        assert_eq!(expiry(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        let far = Duration::from_secs(400_000 * 365 * 86_400);
        assert_eq!(expiry(now, far), DateTime::<Utc>::MAX_UTC);
        let ttl = Duration::from_secs(30);
        assert_eq!(expiry(now, ttl), now + chrono::Duration::seconds(30));
        assert_eq!(
            LeaseRecord::new("db", Duration::MAX).expires_at,
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn a_released_record_is_free_and_old_records_parse() {
        let ttl = Duration::from_secs(30);
        let mut theirs = LeaseRecord::new("/a.db", ttl);
        theirs.host = "elsewhere".into();
        let mine = LeaseRecord::new("/b.db", ttl);
        let now = Utc::now();
        assert!(
            !theirs.replaceable_by(&mine, true, now),
            "live, not expired"
        );
        theirs.released = true;
        assert!(theirs.replaceable_by(&mine, false, now), "released: free");
        // Records written before `released` existed parse as held, and a
        // record that is not released does not carry the field.
        let mut json = serde_json::to_value(&mine).unwrap();
        assert!(json.get("released").is_none());
        json.as_object_mut().unwrap().remove("released");
        let back: LeaseRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, mine);
    }
}
