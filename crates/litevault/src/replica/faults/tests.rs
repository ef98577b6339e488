use super::*;
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, UpdateVersion};

fn store(config: FaultConfig) -> FaultStore {
    FaultStore::new(Arc::new(InMemory::new()), config)
}

#[test]
fn parses_the_env_syntax() {
    let c =
        FaultConfig::parse("rate=0.1,seed=7,kinds=error,timeout,slow,cut,conflict,stale").unwrap();
    assert_eq!(c.rate, 0.1);
    assert_eq!(c.seed, 7);
    assert_eq!(c.kinds, FaultKind::ALL.to_vec());
    let c = FaultConfig::parse("kinds=cut,rate=1,latency_ms=5,hang_ms=6,stale_ms=7").unwrap();
    assert_eq!(c.kinds, vec![FaultKind::Cut]);
    assert_eq!(c.rate, 1.0);
    assert_eq!(
        (c.latency, c.hang, c.stale_for),
        (
            Duration::from_millis(5),
            Duration::from_millis(6),
            Duration::from_millis(7)
        )
    );
    assert_eq!(FaultConfig::parse("").unwrap(), FaultConfig::default());
    for (bad, says) in [
        ("rate=1.5", "rate"),
        ("rate=x", "rate"),
        ("seed=-1", "seed"),
        ("kinds=errors", "errors"),
        ("speed=3", "speed"),
        ("error", "error"),
        ("hang_ms=1s", "hang_ms"),
    ] {
        let e = FaultConfig::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(FAULTS_ENV), "{bad}: {e}");
    }
}

/// The same seed gives the same faults for the same requests; another
/// seed gives others.
#[tokio::test]
async fn deterministic_per_seed() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let s = store(FaultConfig {
            rate: 0.3,
            seed,
            kinds: vec![FaultKind::Error],
            ..Default::default()
        });
        let mut v = Vec::new();
        for i in 0..200 {
            let p = Path::from(format!("k/{i}"));
            v.push(s.put(&p, PutPayload::from_static(b"x")).await.is_ok());
        }
        v
    }
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await);
    assert_ne!(a, outcomes(8).await);
    let failed = a.iter().filter(|ok| !**ok).count();
    assert!((30..=90).contains(&failed), "about 30% of 200: {failed}");
}

/// A cut upload either did not happen or happened: both are seen, and the
/// counter of writes that landed matches what the store holds.
#[tokio::test]
async fn cuts_land_or_not() {
    let s = store(FaultConfig {
        rate: 1.0,
        seed: 1,
        kinds: vec![FaultKind::Cut],
        ..Default::default()
    });
    for i in 0..100 {
        let p = Path::from(format!("k/{i}"));
        let e = s.put(&p, PutPayload::from_static(b"x")).await.unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
    }
    let present = s.inner().list(None).count().await as u64;
    let c = s.counts();
    assert_eq!(c.cut, 100);
    assert_eq!(c.landed_but_failed, present);
    assert!(present > 20 && present < 80, "{present}");
}

#[tokio::test]
async fn spurious_conflicts_only_on_conditional_writes() {
    let s = store(FaultConfig {
        rate: 1.0,
        seed: 3,
        kinds: vec![FaultKind::Conflict],
        ..Default::default()
    });
    let p = Path::from("lease");
    s.put(&p, PutPayload::from_static(b"a")).await.unwrap();
    let create = s
        .put_opts(&p, PutPayload::from_static(b"b"), PutMode::Create.into())
        .await
        .unwrap_err();
    assert!(matches!(create, object_store::Error::AlreadyExists { .. }));
    let meta = s.inner().head(&p).await.unwrap();
    let update = s
        .put_opts(
            &p,
            PutPayload::from_static(b"c"),
            PutMode::Update(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            })
            .into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(update, object_store::Error::Precondition { .. }));
    // Nothing was written by either.
    let got = s.inner().get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"a");
    assert_eq!(s.counts().conflict, 2);
}

#[test]
fn a_staleness_past_the_calendar_hides_everything_without_a_panic() {
    for ms in [300_000u64 * 365 * 86_400_000, u64::MAX] {
        let c = FaultConfig {
            stale_for: Duration::from_millis(ms),
            ..Default::default()
        };
        assert_eq!(stale_cutoff(&c), chrono::DateTime::<Utc>::MIN_UTC, "{ms}");
    }
}

#[tokio::test]
async fn stale_listings_hide_new_objects_and_stale_reads_serve_old_versions() {
    let s = store(FaultConfig {
        rate: 1.0,
        seed: 5,
        kinds: vec![FaultKind::Stale],
        stale_for: Duration::from_secs(60),
        ..Default::default()
    });
    let p = Path::from("a/b");
    s.inner()
        .put(&p, PutPayload::from_static(b"v1"))
        .await
        .unwrap();
    assert_eq!(s.list(None).count().await, 0, "younger than a minute");
    // First read: nothing seen before, the real one.
    let v = s.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&v[..], b"v1");
    s.inner()
        .put(&p, PutPayload::from_static(b"v2"))
        .await
        .unwrap();
    let v = s.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&v[..], b"v1", "the version seen before");
    s.set_enabled(false);
    let v = s.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&v[..], b"v2");
    assert_eq!(s.list(None).count().await, 1);
    assert_eq!(s.counts().stale, 2);
}

#[tokio::test]
async fn a_stale_since_moment_hides_what_changed_after_it_however_old() {
    let s = store(FaultConfig {
        rate: 1.0,
        seed: 5,
        kinds: vec![FaultKind::Stale],
        // Alone, this would hide nothing.
        stale_for: Duration::ZERO,
        ..Default::default()
    });
    let old = Path::from("old");
    s.inner()
        .put(&old, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    let seen = s.inner().head(&old).await.unwrap().last_modified;
    s.set_stale_since(Some(seen));
    let new = Path::from("new");
    s.inner()
        .put(&new, PutPayload::from_static(b"y"))
        .await
        .unwrap();
    let listed: Vec<_> = s.list(None).map(|m| m.unwrap().location).collect().await;
    assert_eq!(listed, vec![old.clone()]);
    let under = s.list_with_delimiter(None).await.unwrap();
    assert_eq!(under.objects.len(), 1);
    // Back to the window.
    s.set_stale_since(None);
    assert_eq!(s.list(None).count().await, 2);
}

#[tokio::test]
async fn a_cut_part_fails_the_multipart_upload() {
    let s = store(FaultConfig {
        rate: 1.0,
        seed: 9,
        kinds: vec![FaultKind::Cut],
        ..Default::default()
    });
    let p = Path::from("big");
    let mut up = s.put_multipart(&p).await.unwrap();
    let e = up
        .put_part(PutPayload::from(vec![0u8; 1024]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("connection reset"), "{e}");
    up.abort().await.unwrap();
    assert!(s.inner().head(&p).await.is_err(), "no object appeared");
}
