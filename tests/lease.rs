//! One writer per replica: the lease, on a local folder, on the S3 server
//! and on Azurite (conditional PUTs).

mod support;

use std::time::Duration;

use litevault::replicate::{LeaseOptions, ReplicateError};
use litevault::{Replica, ReplicateOptions, Replicator};
use support::*;

fn opts(ttl: Duration, takeover: bool) -> ReplicateOptions {
    ReplicateOptions {
        lease: Some(LeaseOptions { ttl, takeover }),
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
    // Even with --takeover, not before the lease expires.
    assert!(
        Replicator::open(&b, replica.clone(), opts(Duration::from_secs(2), true))
            .await
            .is_err()
    );
    // The holder stops renewing (it hangs); after expiry, takeover works.
    tokio::time::sleep(Duration::from_millis(2300)).await;
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
fn lease_on_azure() {
    let az = support::cloud::Azurite::start();
    let container = az.container("lease");
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        scenario(az.replica(&container, "app"), dir.path()).await;
    });
}
