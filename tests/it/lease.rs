//! One writer per replica: the lease, on a local folder, on the S3 server,
//! on Azurite and on the GCS XML API test server (conditional PUTs).

use crate::support;
use std::time::Duration;

use crate::support::*;
use litevault::replica::lease::LeaseError;
use litevault::replicate::{LeaseOptions, ReplicateError};
use litevault::{Replica, ReplicateOptions, Replicator};

fn opts(ttl: Duration, takeover: bool) -> ReplicateOptions {
    ReplicateOptions {
        lease: Some(LeaseOptions {
            ttl,
            takeover,
            wait: Duration::ZERO,
        }),
        ..ReplicateOptions::default()
    }
}

async fn scenario(replica: Replica, dir: &std::path::Path) {
    let a = dir.join("a.db");
    let b = dir.join("b.db");
    let mut ca = create_db(&a, 4096);
    Workload::init(&ca);
    let cb = create_db(&b, 4096);
    Workload::init(&cb);
    let first = Replicator::open(&a, replica.clone(), opts(Duration::from_secs(2), false))
        .await
        .unwrap();
    Workload::apply(&mut ca, 1).unwrap();
    first.sync_all().await.unwrap();
    // Another database (another replicator) on the same replica: refused,
    // naming the holder.
    let err = match Replicator::open(&b, replica.clone(), opts(Duration::from_secs(2), false)).await
    {
        Err(e) => e,
        Ok(_) => panic!("a second replicator must not start"),
    };
    let msg = err.to_string();
    assert!(matches!(err, ReplicateError::Lease(_)), "{msg}");
    assert!(
        msg.contains(&format!(":{}", std::process::id())),
        "names the holder: {msg}"
    );
    assert!(msg.contains("a.db"), "names the holder's database: {msg}");
    let ReplicateError::Lease(LeaseError::Held { expires_at, .. }) = err else {
        panic!("not a held lease: {msg}");
    };
    // Even with --takeover, not before the lease expires.
    assert!(
        Replicator::open(&b, replica.clone(), opts(Duration::from_secs(2), true))
            .await
            .is_err()
    );
    // The holder stops renewing (it hangs); after expiry, takeover works.
    wait_until_async(
        WAIT,
        format_args!("the clock to pass the lease's expiry ({expires_at})"),
        || async move { chrono::Utc::now() > expires_at },
    )
    .await;
    assert!(
        Replicator::open(&b, replica.clone(), opts(Duration::from_secs(2), false))
            .await
            .is_err(),
        "an expired lease still needs --takeover"
    );
    let second = Replicator::open(&b, replica.clone(), opts(Duration::from_secs(2), true))
        .await
        .unwrap();
    // The old holder wakes up: its next write finds the lease lost.
    Workload::apply(&mut ca, 2).unwrap();
    let err = first.sync_all().await.unwrap_err();
    assert!(err.to_string().contains("lost the lease"), "{err}");
    drop(first);
    // A clean stop releases the lease: the next replicator starts at once.
    second.run(async {}).await.unwrap();
    let third = Replicator::open(&a, replica.clone(), opts(Duration::from_secs(2), false))
        .await
        .unwrap();
    third.run(async {}).await.unwrap();
}

#[test]
fn lease_on_a_local_folder() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        scenario(replica, dir.path()).await;
    });
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn lease_on_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("lease");
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        scenario(s3.replica(&bucket, "app"), dir.path()).await;
    });
}

/// Azure Blob Storage (Azurite): `PutMode::Create` is `If-None-Match: *`,
/// `PutMode::Update` is `If-Match: <etag>`.
#[test]
#[ignore = "needs Azurite: run scripts/test.sh"]
fn lease_on_azure() {
    let az = support::cloud::Azurite::start();
    let container = az.container("lease");
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        scenario(az.replica(&container, "app"), dir.path()).await;
    });
}

/// Google Cloud Storage (the in-process XML API server): `PutMode::Create`
/// is `x-goog-if-generation-match: 0`, `PutMode::Update` is
/// `x-goog-if-generation-match: <generation>`.
#[test]
fn lease_on_gcs() {
    let gcs = support::gcs_xml::GcsXml::start();
    let bucket = gcs.bucket("lease");
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        scenario(gcs.replica(&bucket, "app"), dir.path()).await;
    });
    assert!(
        gcs.count(support::gcs_xml::Kind::ConditionalPut) >= 4,
        "lease writes carry x-goog-if-generation-match: {:?}",
        gcs.requests()
    );
}

/// A small seeded generator for the contenders' choices (xorshift64*).
pub(crate) struct Dice(pub(crate) u64);

impl Dice {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// What each contender believes: that it holds the lease until this time
/// (the expiry of the last record it wrote and saw acknowledged).
#[derive(Default)]
pub(crate) struct Beliefs {
    pub(crate) until: [Option<chrono::DateTime<chrono::Utc>>; 2],
    /// Handoffs: a contender took the lease after the other held it.
    pub(crate) handoffs: u32,
    pub(crate) last_holder: Option<usize>,
    /// Per contender: acquisitions and renewals that succeeded.
    pub(crate) taken: [u32; 2],
    pub(crate) renewed: [u32; 2],
    /// Renewals refused because the other had taken over.
    pub(crate) lost: u32,
}

impl Beliefs {
    /// Contender `me` now believes it holds the lease until `until`: no
    /// other may believe it holds it now.
    pub(crate) fn hold(&mut self, me: usize, until: chrono::DateTime<chrono::Utc>, what: &str) {
        let now = chrono::Utc::now();
        let other = 1 - me;
        if let Some(theirs) = self.until[other] {
            assert!(
                theirs <= now,
                "contender {me} {what} at {now} while contender {other} holds the lease until {theirs}"
            );
        }
        if self.last_holder == Some(other) {
            self.handoffs += 1;
        }
        self.last_holder = Some(me);
        self.until[me] = Some(until);
    }

    pub(crate) fn drop_belief(&mut self, me: usize) {
        self.until[me] = None;
    }
}

/// Two contenders take, renew and release the lease of one store many times,
/// each through its own fault decorator (15% of requests: errors, hangs,
/// latency, cut writes that did or did not land, spurious 412/409, stale
/// reads). Sleeps sometimes outlast the TTL, so takeovers after expiry and
/// late renewals happen. At every acquisition and renewal the other's belief
/// is checked: never do two contenders believe they hold the lease at once.
/// Each contender runs `LEASE_FAULT_ROUNDS` rounds, then more (up to eight
/// times as many) until every path the test is about has been seen: on a
/// loaded machine the interleavings come out differently, and a run that
/// saw no takeover would prove little.
#[test]
fn never_two_holders_under_faults() {
    use litevault::replica::KeyLayout;
    use litevault::replica::faults::{FaultConfig, FaultKind, FaultStore};
    use std::sync::{Arc, Mutex};

    let ttl = Duration::from_millis(300);
    let rounds: u32 = std::env::var("LEASE_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    block_on(async move {
        let inner: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let beliefs = Arc::new(Mutex::new(Beliefs::default()));
        let stores: Vec<Arc<FaultStore>> = (0..2u64)
            .map(|me| {
                Arc::new(FaultStore::new(
                    inner.clone(),
                    FaultConfig {
                        rate: 0.15,
                        seed: 100 + me,
                        kinds: FaultKind::ALL.to_vec(),
                        latency: Duration::from_millis(40),
                        hang: Duration::from_millis(60),
                        stale_for: Duration::from_millis(200),
                    },
                ))
            })
            .collect();
        // Every path seen: handoffs, takeovers noticed at renewal, both
        // contenders taking and renewing, every kind of fault.
        let covered = {
            let (beliefs, stores) = (beliefs.clone(), stores.clone());
            move || {
                let b = beliefs.lock().unwrap();
                let faults = stores
                    .iter()
                    .map(|s| s.counts())
                    .fold([0u64; 6], |mut a, c| {
                        for (x, n) in a
                            .iter_mut()
                            .zip([c.error, c.timeout, c.slow, c.cut, c.conflict, c.stale])
                        {
                            *x += n;
                        }
                        a
                    });
                b.handoffs > 5
                    && b.lost > 0
                    && b.taken.iter().chain(&b.renewed).all(|&n| n > 5)
                    && faults.iter().all(|&n| n > 0)
            }
        };
        let mut tasks = Vec::new();
        for (me, faulty) in stores.iter().cloned().enumerate() {
            let covered = covered.clone();
            let replica = Replica::from_store(faulty, "app", KeyLayout::Ltx, "faulty")
                .with_retry(support::store::fast_retry(3));
            let beliefs = beliefs.clone();
            tasks.push(tokio::spawn(async move {
                let db = format!("/srv/contender-{me}.db");
                let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (me as u64 + 1));
                let (mut taken, mut renewed, mut lost, mut held, mut errors) = (0, 0, 0, 0, 0);
                let mut round = 0;
                loop {
                    if round >= rounds && (round >= rounds * 8 || covered()) {
                        break;
                    }
                    round += 1;
                    let mut lease = match replica.acquire_lease(&db, ttl, true).await {
                        Ok(l) => l,
                        Err(LeaseError::Held { .. }) => {
                            held += 1;
                            // Random pacing between contenders: the
                            // interleaving is the behaviour under test.
                            tokio::time::sleep(Duration::from_millis(dice.below(120))).await;
                            continue;
                        }
                        Err(_) => {
                            errors += 1;
                            continue;
                        }
                    };
                    taken += 1;
                    {
                        let mut b = beliefs.lock().unwrap();
                        b.taken[me] += 1;
                        b.hold(me, lease.record().expires_at, "took it");
                    }
                    let mut kept = true;
                    for _ in 0..dice.below(5) {
                        // Mostly in time; one in five sleeps past the TTL.
                        let nap = if dice.below(5) == 0 {
                            ttl.as_millis() as u64 + dice.below(200)
                        } else {
                            dice.below(ttl.as_millis() as u64 / 2)
                        };
                        // The nap is the test: in time, or past the TTL.
                        tokio::time::sleep(Duration::from_millis(nap)).await;
                        match lease.renew().await {
                            Ok(()) => {
                                renewed += 1;
                                let mut b = beliefs.lock().unwrap();
                                b.renewed[me] += 1;
                                b.hold(me, lease.record().expires_at, "renewed it");
                            }
                            Err(LeaseError::Lost { .. }) => {
                                lost += 1;
                                let mut b = beliefs.lock().unwrap();
                                b.lost += 1;
                                b.drop_belief(me);
                                kept = false;
                                break;
                            }
                            // Unknown outcome: still ours until the expiry
                            // we last saw acknowledged, at most.
                            Err(_) => errors += 1,
                        }
                    }
                    if kept && dice.below(4) != 0 {
                        // A clean stop: no more writes, then release.
                        beliefs.lock().unwrap().drop_belief(me);
                        if lease.release().await.is_err() {
                            errors += 1;
                        }
                    }
                    // Else: abandoned (a crash); the belief lasts until
                    // its expiry, and the next acquisition replaces it.
                    // Random pacing before the next round (as above).
                    tokio::time::sleep(Duration::from_millis(dice.below(50))).await;
                }
                (taken, renewed, lost, held, errors)
            }));
        }
        let mut totals = Vec::new();
        for t in tasks {
            totals.push(t.await.unwrap());
        }
        let handoffs = beliefs.lock().unwrap().handoffs;
        let counts: Vec<_> = stores.iter().map(|s| s.counts()).collect();
        println!(
            "lease under faults: (taken, renewed, lost, held, errors) per contender {totals:?}, {handoffs} handoffs; faults {counts:?}"
        );
        for (me, (taken, renewed, ..)) in totals.iter().enumerate() {
            assert!(
                *taken > 5 && *renewed > 5,
                "contender {me} barely ran: {totals:?}"
            );
        }
        assert!(handoffs > 5, "the lease changed hands {handoffs} times");
        assert!(
            totals.iter().map(|t| t.2).sum::<u32>() > 0,
            "some renewal came after a takeover: {totals:?}"
        );
        let sum = |f: fn(&litevault::replica::faults::FaultCounts) -> u64| {
            counts.iter().map(f).sum::<u64>()
        };
        for (kind, n) in [
            ("error", sum(|c| c.error)),
            ("timeout", sum(|c| c.timeout)),
            ("slow", sum(|c| c.slow)),
            ("cut", sum(|c| c.cut)),
            ("conflict", sum(|c| c.conflict)),
            ("stale", sum(|c| c.stale)),
        ] {
            assert!(n > 0, "no {kind} fault was injected: {counts:?}");
        }
    });
}

/// Each lease write in turn happens in the store while its answer is lost
/// (scripted): taking, renewing and releasing still succeed, the holder
/// keeps the lease, and a release that landed frees it at once.
#[test]
fn lease_writes_whose_answers_were_lost() {
    use litevault::replica::KeyLayout;
    use litevault::replica::faults::{FaultConfig, FaultStore};
    use std::sync::Arc;

    block_on(async {
        let inner: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let faulty = Arc::new(FaultStore::new(
            inner.clone(),
            FaultConfig {
                rate: 0.0,
                ..Default::default()
            },
        ));
        let a = Replica::from_store(faulty.clone(), "app", KeyLayout::Ltx, "faulty")
            .with_retry(support::store::fast_retry(3));
        let b = Replica::from_store(inner, "app", KeyLayout::Ltx, "clean");
        let ttl = Duration::from_secs(30);
        faulty.lose_next_answers(1);
        let mut lease = a.acquire_lease("/srv/a.db", ttl, false).await.unwrap();
        assert!(matches!(
            b.acquire_lease("/srv/b.db", ttl, true).await,
            Err(litevault::replica::lease::LeaseError::Held { .. })
        ));
        for _ in 0..3 {
            let before = lease.record().expires_at;
            // A renewal computes a later expiry once the clock has moved.
            let ttl_c = chrono::Duration::from_std(ttl).unwrap();
            wait_until_async(
                WAIT,
                "the clock to move past the last renewal",
                || async move { chrono::Utc::now() + ttl_c > before },
            )
            .await;
            faulty.lose_next_answers(1);
            lease.renew().await.unwrap();
            assert!(lease.record().expires_at > before);
        }
        // The renewed record is the one in the store, and the version held
        // is its version: one more renewal goes through without a conflict.
        lease.renew().await.unwrap();
        faulty.lose_next_answers(1);
        lease.release().await.unwrap();
        // Released: another takes it at once, without takeover.
        let other = b.acquire_lease("/srv/b.db", ttl, false).await.unwrap();
        other.release().await.unwrap();
        let c = faulty.counts();
        assert_eq!((c.cut, c.landed_but_failed), (5, 5), "{c:?}");
    });
}

/// A lease read whose answer breaks off in the body is retried like a
/// failed request: a contender reading a held lease through a store that
/// cuts half of its downloads always learns who holds it.
#[test]
fn lease_reads_cut_in_the_body_are_retried() {
    use litevault::replica::KeyLayout;
    use litevault::replica::faults::{FaultConfig, FaultKind, FaultStore};
    use litevault::replica::lease::LeaseError;
    use std::sync::Arc;

    block_on(async {
        let inner: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let faulty = Arc::new(FaultStore::new(
            inner.clone(),
            FaultConfig {
                rate: 0.5,
                seed: 5,
                kinds: vec![FaultKind::Cut],
                ..Default::default()
            },
        ));
        let holder = Replica::from_store(inner, "app", KeyLayout::Ltx, "clean");
        let lease = holder
            .acquire_lease("/srv/a.db", Duration::from_secs(30), false)
            .await
            .unwrap();
        let reader = Replica::from_store(faulty.clone(), "app", KeyLayout::Ltx, "faulty")
            .with_retry(support::store::fast_retry(12));
        for _ in 0..20 {
            match reader
                .acquire_lease("/srv/b.db", Duration::from_secs(30), true)
                .await
            {
                Err(LeaseError::Held { .. }) => {}
                other => panic!("the reader sees the lease held: {other:?}"),
            }
        }
        assert!(faulty.counts().cut > 5, "{:?}", faulty.counts());
        lease.release().await.unwrap();
    });
}

/// An overlapping deploy: the new instance restores on boot while the old
/// one still replicates, waits for the lease, and opens once the old one
/// stopped cleanly; the old one's last commits, shipped after the new one
/// restored, are taken in before the new one writes (`catch_up`), and no
/// write is lost.
#[test]
fn a_new_instance_waits_for_the_lease_and_takes_in_what_the_old_one_shipped() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let old_db = dir.path().join("old.db");
        let mut old_c = create_db(&old_db, 4096);
        Workload::init(&old_c);
        let old = Replicator::open(&old_db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        for k in 1..=10 {
            Workload::apply(&mut old_c, k).unwrap();
            old.sync_all().await.unwrap();
        }
        // The new instance boots: restores, then waits for the lease.
        let new_db = dir.path().join("new.db");
        litevault::restore::restore(&replica, &new_db, &Default::default())
            .await
            .unwrap();
        let opts = ReplicateOptions {
            lease: Some(LeaseOptions {
                wait: Duration::from_secs(60),
                ..LeaseOptions::default()
            }),
            catch_up: true,
            ..ReplicateOptions::default()
        };
        let opening = {
            let (db, replica) = (new_db.clone(), replica.clone());
            tokio::spawn(async move { Replicator::open(&db, replica, opts).await })
        };
        // The old one goes on, then stops cleanly (SIGTERM: final sync,
        // lease released).
        for k in 11..=20 {
            Workload::apply(&mut old_c, k).unwrap();
            old.sync_all().await.unwrap();
        }
        assert!(
            !opening.is_finished(),
            "the new instance waits for the lease"
        );
        old.run(async {}).await.unwrap();
        let new = opening.await.unwrap().unwrap();
        assert_eq!(
            Workload::check_prefix(&new_db),
            20,
            "the old one's last commits are in"
        );
        let mut new_c = rusqlite::Connection::open(&new_db).unwrap();
        for k in 21..=30 {
            Workload::apply(&mut new_c, k).unwrap();
            new.sync_all().await.unwrap();
        }
        new.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore_at(&replica, &out, litevault::restore::RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), 30, "no write lost");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("behind"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    });
}

/// Without a wait, a held lease fails the open at once, naming the holder.
#[test]
fn without_a_wait_a_held_lease_fails_at_once() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let a = dir.path().join("a.db");
        Workload::init(&create_db(&a, 4096));
        let held = Replicator::open(&a, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        let b = dir.path().join("b.db");
        Workload::init(&create_db(&b, 4096));
        let e = Replicator::open(&b, replica.clone(), ReplicateOptions::default())
            .await
            .err()
            .expect("the lease is held");
        assert!(
            matches!(e, ReplicateError::Lease(LeaseError::Held { .. })),
            "{e}"
        );
        held.run(async {}).await.unwrap();
    });
}
