//! One renewal for the leases of many databases: the keeper of a `dir`
//! source.
//!
//! Every replica's lease (see [`super::lease`]) is renewed by its holder a
//! third of its TTL after the last renewal: a PUT every 10 s per database,
//! 360 an hour, however idle the database. A process replicating a
//! directory of a thousand databases would spend 100 requests a second on
//! leases alone. So such a process takes one more lease, the keeper, at
//! `<directory's replica>/litevault.keeper`, and renews only that; each
//! database's lease record names the keeper (by a path relative to the
//! record, and the keeper record's ID) instead of being renewed itself.
//!
//! Whoever judges a lease reads the keeper it names: while that keeper
//! record has the ID the lease names and is neither released nor expired,
//! the lease lasts as long as the keeper (the later of the two expiries).
//! A keeper taken over by someone else has another ID, so it backs none of
//! the old holder's leases. The holder, for its part, counts on the keeper
//! only while the keeper's last acknowledged renewal leaves a third of the
//! TTL, and only if that renewal was acknowledged before the previous one
//! expired: a renewal that lands after an expiry may follow a moment in
//! which a contender saw the keeper expired and took a database's lease, so
//! it starts a new *generation*, and each database counts on the keeper
//! again only after renewing its own lease once (a conditional write that
//! fails if it was taken). Without a keeper that backs it, a database's
//! lease is renewed on its own, as always. Proven under injected faults by
//! `lease::never_two_holders_under_faults_with_keepers`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Replica;
use super::lease::{Lease, LeaseError};

/// The object name of the keeper, under the directory's replica prefix.
pub const KEEPER_NAME: &str = "litevault.keeper";

/// The deepest a database's replica may lie under its keeper's.
const MAX_DEPTH: usize = 64;

/// The keeper of the databases of one directory on one replica: a lease
/// of its own, renewed in the background. Cloning shares it.
#[derive(Clone)]
pub struct Keeper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("base", &self.inner.base.to_string())
            .finish()
    }
}

struct Inner {
    base: Replica,
    /// The directory, as the record's `db`.
    name: String,
    ttl: Duration,
    held: std::sync::Mutex<Held>,
    lease: tokio::sync::Mutex<Option<Lease>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.task.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}

/// What the holder may believe of its keeper.
#[derive(Clone, Debug, Default)]
struct Held {
    /// The ID of the keeper record we hold, if we hold it.
    id: Option<String>,
    /// The expiry of its last acknowledged write.
    until: Option<DateTime<Utc>>,
    /// Bumped whenever the keeper may have been seen expired by someone.
    generation: u64,
}

/// What a database's lease records of the keeper backing it, and what its
/// holder remembers of that moment.
#[derive(Clone, Debug)]
pub(super) struct Backing {
    /// The keeper's key relative to the lease's directory.
    pub rel: String,
    /// The keeper record's ID.
    pub id: String,
    /// The generation at the time.
    pub generation: u64,
}

impl Keeper {
    /// Starts the keeper of the databases replicated under `base` from the
    /// directory `name`: takes its lease when free (else keeps trying, a
    /// third of `ttl` apart: a previous process may still be stopping) and
    /// renews it in the background until [`Keeper::release`]. Returns
    /// after the first attempt; never fails (without the keeper, each
    /// database's lease is renewed on its own).
    pub async fn start(base: Replica, name: &str, ttl: Duration) -> Keeper {
        let keeper = Keeper {
            inner: Arc::new(Inner {
                base,
                name: name.to_string(),
                ttl,
                held: Default::default(),
                lease: Default::default(),
                task: Default::default(),
            }),
        };
        keeper.step().await;
        let weak = Arc::downgrade(&keeper.inner);
        let task = tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let pause = Keeper { inner }.step().await;
                tokio::time::sleep(pause).await;
            }
        });
        *lock(&keeper.inner.task) = Some(task);
        keeper
    }

    /// The replica the keeper lives on.
    pub fn base(&self) -> &Replica {
        &self.inner.base
    }

    /// Whether this process holds the keeper now, and until when.
    pub fn held_until(&self) -> Option<DateTime<Utc>> {
        let h = lock(&self.inner.held);
        h.id.as_ref().and(h.until)
    }

    /// One attempt: take the keeper when we do not hold it, else renew it.
    /// Returns how long to wait before the next.
    async fn step(&self) -> Duration {
        let inner = &self.inner;
        let every = inner.ttl / 3;
        let mut slot = inner.lease.lock().await;
        match slot.as_mut() {
            None => match inner.base.acquire_keeper(&inner.name, inner.ttl).await {
                Ok(l) => {
                    let mut h = lock(&inner.held);
                    h.id = Some(l.record().id.clone());
                    h.until = Some(l.record().expires_at);
                    h.generation += 1;
                    tracing::debug!(keeper = %inner.base, "took the keeper of the directory's leases");
                    *slot = Some(l);
                    every
                }
                Err(LeaseError::Held { holder, .. }) => {
                    tracing::debug!(keeper = %inner.base, %holder, "the keeper is held by another process; each lease is renewed on its own meanwhile");
                    every
                }
                Err(e) => {
                    tracing::warn!(keeper = %inner.base, error = %e, "taking the keeper failed; each lease is renewed on its own meanwhile");
                    every
                }
            },
            Some(l) => {
                let before = lock(&inner.held).until;
                match l.renew().await {
                    Ok(()) => {
                        let acked = Utc::now();
                        let mut h = lock(&inner.held);
                        if before.is_none_or(|b| acked >= b) {
                            // Acknowledged after the expiry before it:
                            // someone may have seen it expired meanwhile.
                            h.generation += 1;
                        }
                        h.until = Some(l.record().expires_at);
                        every
                    }
                    Err(LeaseError::Lost { holder, .. }) => {
                        tracing::warn!(keeper = %inner.base, %holder, "lost the keeper; each lease is renewed on its own");
                        let mut h = lock(&inner.held);
                        h.id = None;
                        h.until = None;
                        h.generation += 1;
                        *slot = None;
                        every
                    }
                    Err(e) => {
                        tracing::warn!(keeper = %inner.base, error = %e, "renewing the keeper failed; trying again");
                        Duration::from_secs(1).min(every)
                    }
                }
            }
        }
    }

    /// What a lease of `replica` taken or renewed now may record: the
    /// keeper backs it when we hold the keeper with a third of its TTL
    /// left, and `replica` lies under the keeper's replica.
    pub(super) fn backing(&self, replica: &Replica) -> Option<Backing> {
        let rel = self.relative_to(replica)?;
        let h = lock(&self.inner.held);
        let id = h.id.clone()?;
        let until = h.until?;
        (until - Utc::now() >= third(self.inner.ttl)).then(|| Backing {
            rel,
            id,
            generation: h.generation,
        })
    }

    /// Whether a lease recorded with `b` is still backed: the same keeper
    /// record, the same generation, a third of the TTL left.
    pub(super) fn still_backs(&self, b: &Backing) -> bool {
        let h = lock(&self.inner.held);
        h.id.as_deref() == Some(b.id.as_str())
            && h.generation == b.generation
            && h.until
                .is_some_and(|u| u - Utc::now() >= third(self.inner.ttl))
    }

    /// How long a lease backed by the keeper lasts for its holder.
    pub(super) fn until(&self) -> Option<DateTime<Utc>> {
        lock(&self.inner.held).until
    }

    /// The keeper's key relative to `replica`'s lease (`../` once per
    /// level, then the keeper's name), when `replica` lies under the
    /// keeper's replica on the same store.
    fn relative_to(&self, replica: &Replica) -> Option<String> {
        let base = &self.inner.base;
        let depth = match (&base.local_root, &replica.local_root) {
            (Some(b), Some(r)) => r.strip_prefix(b).ok()?.components().count(),
            // The same scheme and bucket, the database's key under the
            // keeper's: `s3://b/fleet` and `s3://b/fleet/sub/a.db`.
            (None, None) => {
                let rest = replica
                    .display
                    .strip_prefix(&base.display)?
                    .strip_prefix('/')?;
                rest.split('/').filter(|s| !s.is_empty()).count()
            }
            _ => return None,
        };
        (1..=MAX_DEPTH)
            .contains(&depth)
            .then(|| format!("{}{KEEPER_NAME}", "../".repeat(depth)))
    }

    /// Gives the keeper up (each database's lease should be released
    /// first), and stops renewing it.
    pub async fn release(&self) -> Result<(), LeaseError> {
        if let Some(t) = lock(&self.inner.task).take() {
            t.abort();
        }
        let lease = self.inner.lease.lock().await.take();
        {
            let mut h = lock(&self.inner.held);
            h.id = None;
            h.until = None;
            h.generation += 1;
        }
        match lease {
            Some(l) => l.release().await,
            None => Ok(()),
        }
    }
}

/// `replica` with the first of `keepers` it lies under (see
/// [`Replica::with_keeper`]), else as it is.
pub fn attach(keepers: &[Keeper], replica: Replica) -> Replica {
    match keepers.iter().find(|k| k.relative_to(&replica).is_some()) {
        Some(k) => replica.with_keeper(k.clone()),
        None => replica,
    }
}

fn third(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl / 3).unwrap_or(chrono::Duration::MAX)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key of the keeper a lease record names by `rel`, for the lease of
/// a replica at `prefix`: `None` unless `rel` is `../` one or more times
/// and then the keeper's name, within the store.
pub(super) fn resolve_remote(prefix: &str, rel: &str) -> Option<String> {
    let ups = ups(rel)?;
    let mut parts: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if ups > parts.len() {
        return None;
    }
    parts.truncate(parts.len() - ups);
    parts.push(KEEPER_NAME);
    Some(parts.join("/"))
}

/// The same for a replica in a local folder.
pub(super) fn resolve_local(root: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    Some(root.ancestors().nth(ups(rel)?)?.join(KEEPER_NAME))
}

/// How many `../` open `rel`, which must then end with the keeper's name.
fn ups(rel: &str) -> Option<usize> {
    let mut n = 0;
    let mut rest = rel;
    while let Some(r) = rest.strip_prefix("../") {
        n += 1;
        rest = r;
    }
    (rest == KEEPER_NAME && (1..=MAX_DEPTH).contains(&n)).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keeper_reference_resolves_only_upwards_to_a_keeper() {
        assert_eq!(
            resolve_remote("fleet/sub/a.db", "../../litevault.keeper").as_deref(),
            Some("fleet/litevault.keeper")
        );
        assert_eq!(
            resolve_remote("a.db", "../litevault.keeper").as_deref(),
            Some("litevault.keeper")
        );
        assert_eq!(resolve_remote("a.db", "../../litevault.keeper"), None);
        assert_eq!(resolve_remote("fleet/a.db", "../other.json"), None);
        assert_eq!(resolve_remote("fleet/a.db", "litevault.keeper"), None);
        assert_eq!(
            resolve_remote("fleet/a.db", "../x/../litevault.keeper"),
            None
        );
        assert_eq!(
            resolve_local(
                std::path::Path::new("/b/sub/a.db"),
                "../../litevault.keeper"
            ),
            Some(std::path::PathBuf::from("/b/litevault.keeper"))
        );
    }
}
