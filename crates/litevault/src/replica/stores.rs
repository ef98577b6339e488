//! The `object_store` client of each cloud scheme, with its credentials:
//! S3, GCS and Azure Blob Storage, each behind its crate feature.

use super::*;

/// Looks an environment variable up under each name in turn.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub(super) fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// Whether an endpoint is on this machine (an emulator): such an endpoint
/// never gets credentials from a cloud metadata service.
#[cfg(any(feature = "gcs", feature = "azure"))]
pub(super) fn is_loopback_endpoint(endpoint: &str) -> bool {
    ::url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Our own retry loop retries every request; the client's would multiply it.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub(super) fn no_client_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    }
}

/// The S3 client of an `s3://` location. Credentials, in order: the
/// caller's, `LITEVAULT_*`, `LITESTREAM_*` or `AWS_*` access keys, and else
/// what `object_store` finds (instance or container credentials).
#[cfg(feature = "s3")]
pub(super) fn s3_store(
    loc: &ReplicaLocation,
    creds: Option<&S3Credentials>,
) -> Result<Arc<dyn ObjectStore>, String> {
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&loc.bucket)
        // Like Litestream, a custom endpoint implies path-style addressing.
        .with_virtual_hosted_style_request(!(loc.force_path_style || loc.endpoint.is_some()));
    if let Some(k) = env_any(&[
        "LITEVAULT_ACCESS_KEY_ID",
        "LITESTREAM_ACCESS_KEY_ID",
        "AWS_ACCESS_KEY_ID",
    ]) {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = env_any(&[
        "LITEVAULT_SECRET_ACCESS_KEY",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
    ]) {
        b = b.with_secret_access_key(k);
    }
    if let Some(c) = creds {
        b = b
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key);
    } else if let Some(t) = env_any(&["AWS_SESSION_TOKEN"]) {
        b = b.with_token(t);
    }
    let region = loc
        .region
        .clone()
        .or_else(|| env_any(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    if let Some(ep) = loc
        .endpoint
        .clone()
        .or_else(|| env_any(&["AWS_ENDPOINT_URL"]))
    {
        let ep = if ep.contains("://") {
            ep
        } else {
            format!("https://{ep}")
        };
        b = b
            .with_allow_http(ep.starts_with("http://"))
            .with_endpoint(ep);
    }
    if loc.skip_verify {
        b = b.with_client_options(
            object_store::ClientOptions::new().with_allow_invalid_certificates(true),
        );
    }
    match &loc.sse {
        Some(url::ServerSideEncryption::Kms { key_id }) => b = b.with_sse_kms_encryption(key_id),
        Some(url::ServerSideEncryption::Customer { key }) => {
            b = b.with_ssec_encryption(key.expose())
        }
        None => {}
    }
    b = b.with_retry(no_client_retries());
    let s3 = b.build().map_err(|e| format!("S3 client: {e}"))?;
    Ok(Arc::new(s3))
}

#[cfg(not(feature = "s3"))]
pub(super) fn s3_store(
    _loc: &ReplicaLocation,
    _creds: Option<&S3Credentials>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err(missing_backend("s3", "s3"))
}

#[cfg(not(feature = "gcs"))]
pub(super) fn gcs_store(
    _loc: &ReplicaLocation,
    _key: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err(missing_backend("gs", "gcs"))
}

#[cfg(not(feature = "azure"))]
pub(super) fn azure_store(
    _loc: &ReplicaLocation,
    _key: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err(missing_backend("abs", "azure"))
}

/// The error for a scheme whose backend this build left out.
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azure")))]
pub(super) fn missing_backend(scheme: &str, feature: &str) -> String {
    format!(
        "this build of litevault has no {scheme}:// support: enable the crate feature `{feature}` \
         (litevault = {{ features = [\"{feature}\"] }})"
    )
}

/// The GCS client of a `gs://` location. Credentials, in order: an explicit
/// service-account key, `GOOGLE_SERVICE_ACCOUNT` / `_PATH` / `_KEY` (read
/// by `object_store`), `GOOGLE_APPLICATION_CREDENTIALS`, and else the
/// metadata server (Cloud Run, GCE, GKE). An `endpoint` on 127.0.0.1 or
/// localhost (an emulator) needs explicit credentials, so that a test or
/// dev setup never waits on a metadata server that is not there.
#[cfg(feature = "gcs")]
pub(super) fn gcs_store(
    loc: &ReplicaLocation,
    key: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    // An explicit key replaces the environment's service account (the
    // builder refuses a path and a key together).
    let mut b = match key {
        Some(k) => GoogleCloudStorageBuilder::new().with_service_account_key(k),
        None => GoogleCloudStorageBuilder::from_env(),
    }
    .with_bucket_name(&loc.bucket)
    .with_retry(no_client_retries());
    let service_account = [
        GoogleConfigKey::ServiceAccount,
        GoogleConfigKey::ServiceAccountKey,
    ]
    .iter()
    .any(|k| b.get_config_value(k).is_some());
    let mut application = false;
    if key.is_none()
        && !service_account
        && let Some(p) = env_any(&["GOOGLE_APPLICATION_CREDENTIALS"])
    {
        b = b.with_application_credentials(p);
        application = true;
    }
    if let Some(ep) = &loc.endpoint {
        if is_loopback_endpoint(ep) && key.is_none() && !service_account && !application {
            return Err(format!(
                "endpoint {ep} is on this machine (an emulator) but no GCS credentials are given, so the client would ask the cloud metadata server for a token; set GOOGLE_SERVICE_ACCOUNT_PATH to a service-account JSON file (for an emulator: {{\"disable_oauth\": true, \"client_email\": \"\", \"private_key\": \"\"}})"
            ));
        }
        b = b.with_base_url(ep).with_client_options(
            object_store::ClientOptions::new().with_allow_http(ep.starts_with("http://")),
        );
    }
    let gcs = b.build().map_err(|e| format!("GCS client: {e}"))?;
    Ok(Arc::new(gcs))
}

/// The Azure Blob Storage client of an `abs://` location. The account comes
/// from the URL (`abs://ACCOUNT@container/path` or `?account=`) or
/// `LITESTREAM_AZURE_ACCOUNT_NAME` / `AZURE_STORAGE_ACCOUNT_NAME`; the key
/// from the caller, `LITESTREAM_AZURE_ACCOUNT_KEY` or
/// `AZURE_STORAGE_ACCOUNT_KEY`; without a key, SAS or token, the managed
/// identity of the host (Azure IMDS). An `endpoint` on this machine (Azurite)
/// needs an explicit key, SAS or token.
#[cfg(feature = "azure")]
pub(super) fn azure_store(
    loc: &ReplicaLocation,
    key: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(&loc.bucket)
        .with_retry(no_client_retries());
    if let Some(a) = loc
        .account
        .clone()
        .or_else(|| env_any(&["LITESTREAM_AZURE_ACCOUNT_NAME"]))
    {
        b = b.with_account(a);
    }
    let emulator = b
        .get_config_value(&AzureConfigKey::UseEmulator)
        .is_some_and(|v| v == "true");
    if b.get_config_value(&AzureConfigKey::AccountName).is_none() && !emulator {
        return Err("no storage account: write abs://ACCOUNT@container/path (or ?account=ACCOUNT), or set LITESTREAM_AZURE_ACCOUNT_NAME".into());
    }
    if let Some(k) = key
        .map(str::to_string)
        .or_else(|| env_any(&["LITESTREAM_AZURE_ACCOUNT_KEY"]))
    {
        b = b.with_access_key(k);
    }
    if let Some(ep) = &loc.endpoint {
        let explicit = [
            AzureConfigKey::AccessKey,
            AzureConfigKey::SasKey,
            AzureConfigKey::Token,
        ]
        .iter()
        .any(|k| b.get_config_value(k).is_some_and(|v| !v.is_empty()));
        if is_loopback_endpoint(ep) && !explicit {
            return Err(format!(
                "endpoint {ep} is on this machine (Azurite) but no account key is given, so the client would ask the Azure metadata service (IMDS) for a token; set LITESTREAM_AZURE_ACCOUNT_KEY (Azurite's well-known key for devstoreaccount1)"
            ));
        }
        b = b
            .with_endpoint(ep.clone())
            .with_allow_http(ep.starts_with("http://"));
    }
    let az = b.build().map_err(|e| format!("Azure client: {e}"))?;
    Ok(Arc::new(az))
}

/// The cloud clients this process has made, by everything their building
/// reads (see [`client_key`]): one client, with one connection pool and one
/// TLS configuration, serves every replica of a bucket, however many
/// databases write to it. Weak, so a client goes when its last replica does.
static CLIENTS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<dyn ObjectStore>>>,
> = std::sync::LazyLock::new(Default::default);

/// The client for `key`: the live one made before, else a new one from
/// `make`. Two replicas share a client only when every input of its
/// building is equal, so sharing never changes what a request carries.
pub(super) fn shared_client(
    key: String,
    make: impl FnOnce() -> Result<Arc<dyn ObjectStore>, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(live) = clients.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok(live);
    }
    let store = make()?;
    clients.retain(|_, w| w.strong_count() > 0);
    clients.insert(key, Arc::downgrade(&store));
    Ok(store)
}

/// Everything a cloud client's building reads: the location but its key
/// prefix, the explicit credentials, and the environment variables the
/// builders consult. Holds secrets: it stays in [`CLIENTS`], never logged.
pub(super) fn client_key(
    loc: &ReplicaLocation,
    creds: Option<&S3Credentials>,
    azure_key: Option<&str>,
    gcs_key: Option<&str>,
) -> String {
    use std::fmt::Write;
    let sse = match &loc.sse {
        Some(url::ServerSideEncryption::Kms { key_id }) => format!("kms:{key_id}"),
        Some(url::ServerSideEncryption::Customer { key }) => format!("c:{}", key.expose()),
        None => String::new(),
    };
    let mut k = format!(
        "{:?}\n{}\n{:?}\n{:?}\n{:?}\n{}\n{}\n{sse}\n{:?}\n{:?}\n{:?}",
        loc.scheme,
        loc.bucket,
        loc.endpoint,
        loc.region,
        loc.account,
        loc.force_path_style,
        loc.skip_verify,
        creds.map(|c| (&c.access_key_id, &c.secret_access_key)),
        azure_key,
        gcs_key,
    );
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(n, _)| {
            ["AWS_", "LITEVAULT_", "LITESTREAM_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    env.sort();
    for (n, v) in env {
        let _ = write!(k, "\n{n}={v}");
    }
    k
}
