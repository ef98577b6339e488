//! The keeper of a directory's leases: one renewal for every database under
//! it, and never two holders of a lease, on a local folder and on an object
//! store, under injected faults too.

use std::sync::Arc;
use std::time::Duration;

use crate::lease::{Beliefs, Dice};
use crate::support::*;
use litevault::Replica;
use litevault::replica::KeyLayout;
use litevault::replica::keeper::Keeper;
use litevault::replica::lease::LeaseError;

/// `base` holds the keeper, `db` is a database's replica under it, `rival`
/// the same replica opened by someone else.
async fn scenario(base: Replica, db: Replica, rival: Replica) {
    // The keeper renews every third of it and backs a lease while a third
    // is left: a third of a TTL is the slack a loaded machine gets.
    let ttl = Duration::from_secs(3);
    let keeper = Keeper::start(base, "/srv/fleet", ttl).await;
    assert!(
        keeper.held_until().is_some(),
        "a free keeper is taken at once"
    );
    let db = db.with_keeper(keeper.clone());
    let mut lease = db
        .acquire_lease("/srv/fleet/a.db", ttl, false)
        .await
        .unwrap();
    assert_eq!(
        lease.record().keeper.as_deref(),
        Some("../litevault.keeper"),
        "the lease names its keeper"
    );
    assert!(lease.backed());
    let written = lease.record().expires_at;
    let puts = db.stats().puts.load(std::sync::atomic::Ordering::Relaxed);
    // Three TTLs: the keeper renews, the lease is never written again.
    let until = std::time::Instant::now() + ttl * 3;
    while std::time::Instant::now() < until {
        lease.keep().await.unwrap();
        assert!(lease.valid_until() > chrono::Utc::now());
        tokio::time::sleep(ttl / 10).await;
    }
    assert_eq!(lease.record().expires_at, written, "not renewed on its own");
    assert_eq!(
        db.stats().puts.load(std::sync::atomic::Ordering::Relaxed),
        puts,
        "no request for the lease while the keeper backs it"
    );
    assert!(lease.valid_until() > written, "the keeper extends it");
    // Its own expiry is long past; its keeper's is not: held, even for a
    // takeover, and the refusal names the keeper's expiry.
    for takeover in [false, true] {
        match rival.acquire_lease("/srv/other.db", ttl, takeover).await {
            Err(LeaseError::Held { expires_at, .. }) => {
                assert!(
                    expires_at > chrono::Utc::now(),
                    "takeover {takeover}: {expires_at}"
                )
            }
            other => panic!("a lease its keeper backs was taken: {other:?}"),
        }
    }
    // The keeper goes (released; a crash would let it expire): the lease
    // lasts no longer than its own expiry, which has passed.
    keeper.release().await.unwrap();
    assert!(!lease.backed());
    let theirs = rival
        .acquire_lease("/srv/other.db", ttl, true)
        .await
        .unwrap();
    match lease.keep().await {
        Err(LeaseError::Lost { .. }) => {}
        other => panic!("the holder must find the lease lost: {other:?}"),
    }
    theirs.release().await.unwrap();
}

/// The replica at `prefix` of `store`, shown as `mem://prefix`.
fn at(store: Arc<dyn object_store::ObjectStore>, prefix: &str) -> Replica {
    Replica::from_store(store, prefix, KeyLayout::Ltx, &format!("mem://{prefix}"))
}

#[test]
fn a_keeper_renews_for_the_leases_under_it_on_an_object_store() {
    block_on(async {
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let open = |prefix: &str| at(store.clone(), prefix);
        scenario(open("fleet"), open("fleet/a.db"), open("fleet/a.db")).await;
    });
}

#[test]
fn a_keeper_renews_for_the_leases_under_it_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = |p: &str| format!("file://{}/{p}", dir.path().display());
    block_on(async {
        scenario(
            Replica::open(&url("fleet")).unwrap(),
            Replica::open(&url("fleet/a.db")).unwrap(),
            Replica::open(&url("fleet/a.db")).unwrap(),
        )
        .await;
    });
}

/// A keeper elsewhere (another bucket, or not above the database) backs
/// nothing: the lease is renewed on its own.
#[test]
fn a_keeper_backs_only_the_replicas_under_it() {
    block_on(async {
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let open = |prefix: &str| at(store.clone(), prefix);
        let ttl = Duration::from_secs(30);
        let keeper = Keeper::start(open("fleet"), "/srv/fleet", ttl).await;
        for elsewhere in ["fleetwood/a.db", "other/a.db", "fleet"] {
            let r = open(elsewhere).with_keeper(keeper.clone());
            let lease = r.acquire_lease("/srv/a.db", ttl, false).await.unwrap();
            assert_eq!(lease.record().keeper, None, "{elsewhere}");
            assert!(!lease.backed());
            lease.release().await.unwrap();
        }
        keeper.release().await.unwrap();
    });
}

/// `never_two_holders_under_faults` with keepers: each round a contender
/// takes the lease of one database replica either alone or under a keeper
/// of its own (both keepers live at the same key, so they change hands
/// too), keeps it through naps that sometimes outlast the TTL, then
/// releases both or drops both (a crash: the keeper stops being renewed and
/// expires). Stale reads of the keeper are among the faults. At every
/// acquisition and keep, the other's belief is checked.
#[test]
fn never_two_holders_under_faults_with_keepers() {
    use litevault::replica::faults::{FaultConfig, FaultKind, FaultStore};
    use std::sync::Mutex;

    let ttl = Duration::from_millis(300);
    let rounds: u32 = std::env::var("LEASE_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    block_on(async move {
        let inner: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let beliefs = Arc::new(Mutex::new(Beliefs::default()));
        let backed_keeps = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let stores: Vec<Arc<FaultStore>> = (0..2u64)
            .map(|me| {
                Arc::new(FaultStore::new(
                    inner.clone(),
                    FaultConfig {
                        rate: 0.15,
                        seed: 200 + me,
                        kinds: FaultKind::ALL.to_vec(),
                        latency: Duration::from_millis(40),
                        hang: Duration::from_millis(60),
                        stale_for: Duration::from_millis(200),
                    },
                ))
            })
            .collect();
        let covered = {
            let (beliefs, backed) = (beliefs.clone(), backed_keeps.clone());
            move || {
                let b = beliefs.lock().unwrap();
                b.handoffs > 5
                    && b.lost > 0
                    && b.taken.iter().all(|&n| n > 5)
                    && backed.load(std::sync::atomic::Ordering::Relaxed) > 20
            }
        };
        let mut tasks = Vec::new();
        for (me, faulty) in stores.iter().cloned().enumerate() {
            let covered = covered.clone();
            let beliefs = beliefs.clone();
            let backed_keeps = backed_keeps.clone();
            tasks.push(tokio::spawn(async move {
                let open =
                    |prefix: &str| at(faulty.clone(), prefix).with_retry(store::fast_retry(3));
                let db = format!("/srv/contender-{me}.db");
                let mut dice = Dice(0x51_7CC1_B727_220A ^ (me as u64 + 1));
                let mut round = 0;
                loop {
                    if round >= rounds && (round >= rounds * 8 || covered()) {
                        break;
                    }
                    round += 1;
                    let keeper = if dice.below(4) != 0 {
                        Some(Keeper::start(open("fleet"), &format!("/srv/dir-{me}"), ttl).await)
                    } else {
                        None
                    };
                    let replica = match &keeper {
                        Some(k) => open("fleet/app.db").with_keeper(k.clone()),
                        None => open("fleet/app.db"),
                    };
                    let mut lease = match replica.acquire_lease(&db, ttl, true).await {
                        Ok(l) => l,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(dice.below(120))).await;
                            continue;
                        }
                    };
                    {
                        let mut b = beliefs.lock().unwrap();
                        b.taken[me] += 1;
                        b.hold(me, lease.valid_until(), "took it");
                    }
                    let mut kept = true;
                    for _ in 0..dice.below(6) {
                        let nap = if dice.below(5) == 0 {
                            ttl.as_millis() as u64 + dice.below(200)
                        } else {
                            dice.below(ttl.as_millis() as u64 / 2)
                        };
                        tokio::time::sleep(Duration::from_millis(nap)).await;
                        match lease.keep().await {
                            Ok(()) => {
                                if lease.backed() {
                                    backed_keeps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                let mut b = beliefs.lock().unwrap();
                                b.renewed[me] += 1;
                                b.hold(me, lease.valid_until(), "kept it");
                            }
                            Err(LeaseError::Lost { .. }) => {
                                let mut b = beliefs.lock().unwrap();
                                b.lost += 1;
                                b.drop_belief(me);
                                kept = false;
                                break;
                            }
                            // Unknown outcome: ours until the last expiry
                            // seen acknowledged, at most.
                            Err(_) => {}
                        }
                    }
                    if kept && dice.below(4) != 0 {
                        beliefs.lock().unwrap().drop_belief(me);
                        let _ = lease.release().await;
                        if let Some(k) = &keeper {
                            let _ = k.release().await;
                        }
                    } else {
                        // A crash: the lease and the keeper are dropped
                        // unreleased, and the keeper's renewals stop with
                        // them.
                        drop(lease);
                    }
                    drop((replica, keeper));
                    tokio::time::sleep(Duration::from_millis(dice.below(50))).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let b = beliefs.lock().unwrap();
        let backed = backed_keeps.load(std::sync::atomic::Ordering::Relaxed);
        let counts: Vec<_> = stores.iter().map(|s| s.counts()).collect();
        println!(
            "keepers under faults: taken {:?}, kept {:?}, {backed} kept by a keeper alone, {} lost, {} handoffs; faults {counts:?}",
            b.taken, b.renewed, b.lost, b.handoffs
        );
        assert!(
            b.taken.iter().all(|&n| n > 5),
            "both took it: {:?}",
            b.taken
        );
        assert!(
            b.handoffs > 5,
            "the lease changed hands {} times",
            b.handoffs
        );
        assert!(backed > 20, "a keeper backed the lease {backed} times");
        assert!(b.lost > 0, "some holder found its lease taken");
        assert!(
            counts.iter().map(|c| c.stale).sum::<u64>() > 0,
            "stale reads were injected: {counts:?}"
        );
    });
}
