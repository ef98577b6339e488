//! Replica URLs: `file://`, `s3://`, `gs://`, `az://` (and `memory://` for tests).
//!
//! Parsing is pure: it turns a URL plus an environment lookup into a
//! [`ReplicaLocation`]; building the `object_store` client happens in
//! [`super::Replica::open`].

use std::path::PathBuf;

use super::ReplicaError;
use crate::redact::{Secret, redact_query};

/// The storage service behind a replica URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// A local directory (`file:///var/backups/app` or a bare path).
    File,
    /// Amazon S3 or any S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// An in-process store, for tests and the demo.
    Memory,
}

/// Where a replica lives, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaLocation {
    /// Which service.
    pub scheme: Scheme,
    /// Bucket (S3, GCS) or container (Azure); empty for `file://`.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`;
    /// for `file://` the absolute directory.
    pub path: String,
    /// Custom endpoint: an S3-compatible server (`http://127.0.0.1:9000`),
    /// the GCS base URL (`http://127.0.0.1:4443`, an emulator) or the Azure
    /// Blob service URL (`http://127.0.0.1:10000/devstoreaccount1` for
    /// Azurite, the account name as the first path segment).
    pub endpoint: Option<String>,
    /// S3: region.
    pub region: Option<String>,
    /// S3: path-style addressing (`http://host/bucket/key`). Always set
    /// with a custom endpoint, which [`super::Replica::open`] addresses
    /// path-style in any case: so a URL that says so and one that does not
    /// parse to the same location.
    pub force_path_style: bool,
    /// S3: skip TLS certificate verification (self-signed test servers).
    pub skip_verify: bool,
    /// Azure: storage account name.
    pub account: Option<String>,
    /// S3: the storage class of the files written (`STANDARD_IA`,
    /// `INTELLIGENT_TIERING`, ...); `None` leaves the bucket's default.
    pub storage_class: Option<String>,
    /// S3: server-side encryption with a KMS key or a key of yours.
    pub sse: Option<ServerSideEncryption>,
}

/// S3 server-side encryption of the objects litevault writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-KMS: the server encrypts with this KMS key (id, ARN or alias).
    Kms {
        /// The key.
        key_id: String,
    },
    /// SSE-C: the server encrypts with this AES-256 key, which every
    /// request then carries (base64 of 32 bytes). Reads need it too.
    Customer {
        /// The key, base64.
        key: Secret,
    },
}

/// The storage classes whose objects cannot be read without a restore
/// request first: neither compaction nor a restore could read such files.
const ARCHIVE_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// Checks an SSE-C key: base64 of exactly 32 bytes; when `md5` is given
/// (base64 of the key's MD5), it must match.
pub fn check_sse_customer_key(key: &str, md5: Option<&str>) -> Result<Secret, String> {
    use base64::Engine;
    use md5::Digest;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = b64.decode(key.trim()).map_err(|_| {
        "sse-customer-key is not base64; give the base64 of a 32-byte key, e.g. from `openssl rand -base64 32`".to_string()
    })?;
    if bytes.len() != 32 {
        return Err(format!(
            "sse-customer-key decodes to {} bytes; SSE-C takes a 256-bit (32-byte) key, e.g. from `openssl rand -base64 32`",
            bytes.len()
        ));
    }
    if let Some(m) = md5 {
        let want = b64.encode(md5::Md5::digest(&bytes));
        if m.trim() != want {
            return Err(
                "sse-customer-key-md5 does not match the key: the MD5 is the base64 of the MD5 of the 32 key bytes; leave it out and litevault computes it".into(),
            );
        }
    }
    Ok(Secret::new(key.trim()))
}

/// Checks a storage class: letters, digits and `_`, and not an archive
/// class whose objects cannot be read at once.
pub fn check_storage_class(class: &str) -> Result<String, String> {
    if class.is_empty()
        || !class
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "storage class {class:?} is not a storage class name; write it as S3 spells it, e.g. STANDARD_IA or INTELLIGENT_TIERING"
        ));
    }
    if ARCHIVE_CLASSES.contains(&class) {
        return Err(format!(
            "storage class {class} keeps objects offline until a restore request: compaction and restores could not read the files; use GLACIER_IR, STANDARD_IA or INTELLIGENT_TIERING, or a bucket lifecycle rule for old files"
        ));
    }
    Ok(class.to_string())
}

impl ReplicaLocation {
    /// Parses a replica URL. A bare path (no `scheme://`) means `file://`.
    ///
    /// ```
    /// use litevault::replica::{ReplicaLocation, Scheme};
    /// let loc = ReplicaLocation::parse(
    ///     "s3://bucket/app?endpoint=http://127.0.0.1:9000&region=us-east-1&force-path-style=true",
    /// ).unwrap();
    /// assert_eq!(loc.scheme, Scheme::S3);
    /// assert_eq!(loc.bucket, "bucket");
    /// assert_eq!(loc.path, "app");
    /// assert!(loc.force_path_style);
    /// ```
    pub fn parse(original: &str) -> Result<ReplicaLocation, ReplicaError> {
        // Messages show the URL without its secrets.
        let shown = redact_query(original);
        let raw = shown.as_str();
        if !raw.contains("://") {
            if raw.is_empty() {
                return Err(ReplicaError::BadUrl {
                    url: raw.into(),
                    reason: "the replica URL is empty; pass e.g. file:///var/backups/app or s3://bucket/app".into(),
                });
            }
            let abs = absolute(PathBuf::from(raw));
            return Ok(ReplicaLocation::file(abs));
        }
        let url = url::Url::parse(original).map_err(|e| ReplicaError::BadUrl {
            url: raw.into(),
            reason: format!("{e}; expected scheme://bucket/path, e.g. s3://bucket/app"),
        })?;
        if url.cannot_be_a_base() {
            // `s3:bucket/x`: no `//`, so no bucket and no path.
            return Err(ReplicaError::BadUrl {
                url: raw.into(),
                reason: "expected scheme://bucket/path, e.g. s3://bucket/app".into(),
            });
        }
        let mut loc = ReplicaLocation {
            scheme: Scheme::File,
            bucket: String::new(),
            path: String::new(),
            endpoint: None,
            region: None,
            force_path_style: false,
            skip_verify: false,
            account: None,
            storage_class: None,
            sse: None,
        };
        loc.scheme = match url.scheme() {
            "file" => Scheme::File,
            "s3" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gcs,
            // Litestream spells Azure Blob Storage `abs://`; `az://` is accepted too.
            "abs" | "az" | "azure" => Scheme::Azure,
            "memory" => Scheme::Memory,
            other => {
                return Err(ReplicaError::BadUrl {
                    url: raw.into(),
                    reason: format!(
                        "unsupported scheme {other:?}; use file://, s3://, gs:// or abs:// (az://)"
                    ),
                });
            }
        };
        if loc.scheme == Scheme::File {
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(ReplicaError::BadUrl {
                    url: raw.into(),
                    reason: "a file:// URL takes an absolute path: file:///var/backups/app (three slashes)".into(),
                });
            }
            let path = url.to_file_path().map_err(|_| ReplicaError::BadUrl {
                url: raw.into(),
                reason: "not a valid local path; use file:///absolute/dir".into(),
            })?;
            return Ok(ReplicaLocation::file(path));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let path = url.path().trim_matches('/').to_string();
        // Provider hostnames carry the bucket, region and endpoint; the
        // query parameters below win over them.
        let mut from_host: Option<S3Host> = None;
        match loc.scheme {
            Scheme::S3 => {
                let full = match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                };
                let h = parse_s3_host(&full).map_err(|reason| ReplicaError::BadUrl {
                    url: raw.into(),
                    reason,
                })?;
                loc.bucket = h.bucket.clone();
                from_host = Some(h);
            }
            Scheme::Azure => {
                // az://container/path, or az://account@container? Litestream uses
                // az://container/path with the account in the environment; we also
                // accept the user part as the account name.
                loc.bucket = host;
                if !url.username().is_empty() {
                    loc.account = Some(percent_decode(url.username()));
                }
            }
            _ => loc.bucket = host,
        }
        loc.path = path;
        let bad_url = |reason: String| ReplicaError::BadUrl {
            url: raw.into(),
            reason,
        };
        let (mut kms, mut customer_key, mut customer_md5) = (None, None, None);
        for (k, v) in url.query_pairs() {
            let only = |schemes: &[Scheme], spelled: &str| -> Result<(), ReplicaError> {
                if schemes.contains(&loc.scheme) {
                    return Ok(());
                }
                Err(ReplicaError::BadUrl {
                    url: raw.into(),
                    reason: format!(
                        "query parameter {k:?} applies to {spelled} URLs only; {}",
                        known_parameters(&loc.scheme)
                    ),
                })
            };
            match k.as_ref() {
                "endpoint" => {
                    let Some(endpoint) = server_url(&v) else {
                        return Err(ReplicaError::BadUrl {
                            url: raw.into(),
                            reason: format!(
                                "endpoint={v:?} is not a URL of a server; write e.g. endpoint=http://127.0.0.1:9000"
                            ),
                        });
                    };
                    loc.endpoint = Some(endpoint);
                }
                "region" => {
                    only(&[Scheme::S3], "s3://")?;
                    loc.region = Some(v.to_string())
                }
                "force-path-style" | "forcePathStyle" | "force_path_style" => {
                    only(&[Scheme::S3], "s3://")?;
                    loc.force_path_style = parse_bool(raw, &k, &v)?
                }
                "skip-verify" | "skipVerify" => {
                    only(&[Scheme::S3], "s3://")?;
                    loc.skip_verify = parse_bool(raw, &k, &v)?
                }
                "storage-class" | "storageClass" => {
                    only(&[Scheme::S3], "s3://")?;
                    loc.storage_class = Some(check_storage_class(&v).map_err(bad_url)?);
                }
                "sse-kms-key-id" | "sseKmsKeyId" => {
                    only(&[Scheme::S3], "s3://")?;
                    if v.is_empty() {
                        return Err(bad_url(format!(
                            "{k}= is empty; give the KMS key id, ARN or alias"
                        )));
                    }
                    kms = Some(v.to_string());
                }
                "sse-customer-key" | "sseCustomerKey" => {
                    only(&[Scheme::S3], "s3://")?;
                    customer_key = Some(v.to_string());
                }
                "sse-customer-key-md5" | "sseCustomerKeyMD5" => {
                    only(&[Scheme::S3], "s3://")?;
                    customer_md5 = Some(v.to_string());
                }
                "sse-customer-algorithm" | "sseCustomerAlgorithm" => {
                    only(&[Scheme::S3], "s3://")?;
                    if v != "AES256" {
                        return Err(bad_url(format!(
                            "{k}={v:?}: SSE-C takes AES256 only; leave it out or write AES256"
                        )));
                    }
                }
                "account" | "account-name" => {
                    only(&[Scheme::Azure], "abs://")?;
                    if v.is_empty() {
                        return Err(ReplicaError::BadUrl {
                            url: raw.into(),
                            reason: format!(
                                "{k}= is empty; give the storage account name, or leave it out to take it from the environment"
                            ),
                        });
                    }
                    loc.account = Some(v.to_string())
                }
                other => {
                    return Err(ReplicaError::BadUrl {
                        url: raw.into(),
                        reason: format!(
                            "unknown query parameter {other:?}; {}",
                            known_parameters(&loc.scheme)
                        ),
                    });
                }
            }
        }
        loc.sse = match (kms, customer_key) {
            (Some(_), Some(_)) => {
                return Err(bad_url(
                    "sse-kms-key-id and sse-customer-key both given: an object is encrypted one way; keep one".into(),
                ));
            }
            (Some(key_id), None) => Some(ServerSideEncryption::Kms { key_id }),
            (None, Some(key)) => Some(ServerSideEncryption::Customer {
                key: check_sse_customer_key(&key, customer_md5.as_deref()).map_err(bad_url)?,
            }),
            (None, None) if customer_md5.is_some() => {
                return Err(bad_url(
                    "sse-customer-key-md5 without sse-customer-key; give the key".into(),
                ));
            }
            (None, None) => None,
        };
        if let Some(h) = from_host {
            if loc.region.is_none() {
                loc.region = h.region;
            }
            // The server a host names is read as an `endpoint=` parameter
            // is: the canonical URL writes it as one.
            if loc.endpoint.is_none()
                && let Some(ep) = h.endpoint
            {
                let Some(endpoint) = server_url(&ep) else {
                    return Err(ReplicaError::BadUrl {
                        url: raw.into(),
                        reason: format!(
                            "{ep:?} (from the host) is not a URL of a server; write s3://bucket/path?endpoint=http://HOST:PORT"
                        ),
                    });
                };
                loc.endpoint = Some(endpoint);
            }
            loc.force_path_style |= h.force_path_style;
        }
        if loc.scheme == Scheme::S3 && loc.endpoint.is_some() {
            loc.force_path_style = true;
        }
        if loc.scheme != Scheme::Memory && loc.bucket.is_empty() {
            return Err(ReplicaError::BadUrl {
                url: raw.into(),
                reason: "the URL names no bucket: use scheme://bucket/path".into(),
            });
        }
        Ok(loc)
    }

    fn file(path: PathBuf) -> ReplicaLocation {
        // One spelling per directory: no doubled or trailing `/`, no `.`,
        // and `..` taken lexically, as in a `file://` URL.
        let mut norm = PathBuf::new();
        for c in path.components() {
            match c {
                std::path::Component::ParentDir => {
                    norm.pop();
                }
                std::path::Component::CurDir => {}
                c => norm.push(c),
            }
        }
        let path = norm;
        ReplicaLocation {
            scheme: Scheme::File,
            bucket: String::new(),
            path: path.to_string_lossy().into_owned(),
            endpoint: None,
            region: None,
            force_path_style: false,
            skip_verify: false,
            account: None,
            storage_class: None,
            sse: None,
        }
    }
}

/// What Litestream reads from the host of an `s3://` URL: the bucket and,
/// for provider hostnames, the region, the endpoint and path-style
/// addressing (Litestream's `s3.ParseHost`).
#[derive(Debug, PartialEq, Eq)]
pub struct S3Host {
    /// The bucket.
    pub bucket: String,
    /// The region the hostname names.
    pub region: Option<String>,
    /// The provider's endpoint.
    pub endpoint: Option<String>,
    /// Whether the provider needs path-style addressing.
    pub force_path_style: bool,
}

/// Reads the host (with its port) of an `s3://` URL; an error names what
/// is missing.
pub fn parse_s3_host(host: &str) -> Result<S3Host, String> {
    let plain = |bucket: &str, region: Option<&str>, endpoint: Option<String>, fps: bool| S3Host {
        bucket: bucket.to_string(),
        region: region.map(str::to_string),
        endpoint,
        force_path_style: fps,
    };
    let need_bucket = |b: &str| -> Result<(), String> {
        if b.is_empty() {
            Err(format!(
                "s3://{host} names no bucket: write s3://BUCKET.{host}/path, or s3://bucket/path?endpoint=..."
            ))
        } else {
            Ok(())
        }
    };
    // MinIO style: bucket.host:port.
    if host.contains(':') && !host.contains(".com") {
        let Some((bucket, rest)) = host.split_once('.') else {
            return Err(format!(
                "s3://{host} names a server but no bucket: write s3://bucket/path?endpoint=http://{host}"
            ));
        };
        return Ok(plain(
            bucket,
            Some("us-east-1"),
            Some(format!("http://{rest}")),
            true,
        ));
    }
    // AWS: bucket.s3.amazonaws.com, bucket.s3.REGION.amazonaws.com.
    if let Some(rest) = host.strip_suffix(".amazonaws.com") {
        if let Some(bucket) = rest.strip_suffix(".s3") {
            return Ok(plain(bucket, None, None, false));
        }
        if let Some((before, region)) = rest.rsplit_once('.')
            && let Some(bucket) = before.strip_suffix(".s3")
            && !bucket.is_empty()
        {
            return Ok(plain(bucket, Some(region), None, false));
        }
    }
    // DigitalOcean Spaces: bucket.REGION.digitaloceanspaces.com.
    if let Some(rest) = host.strip_suffix(".digitaloceanspaces.com") {
        let (bucket, region) = rest.rsplit_once('.').unwrap_or(("", rest));
        need_bucket(bucket)?;
        let ep = format!("https://{region}.digitaloceanspaces.com");
        return Ok(plain(bucket, Some(region), Some(ep), false));
    }
    // Backblaze B2: bucket.s3.REGION.backblazeb2.com.
    if let Some(rest) = host.strip_suffix(".backblazeb2.com") {
        let (before, region) = rest.rsplit_once('.').unwrap_or(("", rest));
        let bucket = before.strip_suffix(".s3").unwrap_or("");
        need_bucket(bucket)?;
        let ep = format!("https://s3.{region}.backblazeb2.com");
        return Ok(plain(bucket, Some(region), Some(ep), true));
    }
    // Filebase: bucket.s3.filebase.com.
    if let Some(bucket) = host.strip_suffix(".s3.filebase.com") {
        return Ok(plain(
            bucket,
            None,
            Some("https://s3.filebase.com".into()),
            false,
        ));
    }
    // Scaleway: bucket.s3.REGION.scw.cloud.
    if let Some(rest) = host.strip_suffix(".scw.cloud")
        && let Some((before, region)) = rest.rsplit_once('.')
        && let Some(bucket) = before.strip_suffix(".s3")
    {
        let ep = format!("https://s3.{region}.scw.cloud");
        return Ok(plain(bucket, Some(region), Some(ep), false));
    }
    Ok(plain(host, None, None, false))
}

/// An endpoint as the URL library writes it, without a trailing `/`, or
/// `None` if it names no server (or has a query or fragment). A bare
/// `host:port` means http, as in Litestream. Every endpoint of a location
/// goes through here, so that writing it back into a replica URL reads the
/// same: host names lowercased, non-ASCII ones in punycode, and one that
/// cannot be a host name refused.
fn server_url(v: &str) -> Option<String> {
    let v = if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    };
    let u = url::Url::parse(&v).ok().filter(|u| {
        u.host_str().is_some_and(|h| !h.is_empty()) && u.query().is_none() && u.fragment().is_none()
    })?;
    Some(u.as_str().trim_end_matches('/').to_string())
}

/// The query parameters a scheme takes, for error messages.
fn known_parameters(scheme: &Scheme) -> &'static str {
    match scheme {
        Scheme::S3 => {
            "s3:// takes endpoint, region, force-path-style, skip-verify, storage-class, sse-kms-key-id, sse-customer-key, sse-customer-key-md5, sse-customer-algorithm"
        }
        Scheme::Gcs => {
            "gs:// takes endpoint (e.g. endpoint=http://127.0.0.1:4443 for an emulator); credentials come from the environment"
        }
        Scheme::Azure => {
            "abs:// takes account and endpoint (e.g. endpoint=http://127.0.0.1:10000/devstoreaccount1 for Azurite); the key comes from the environment"
        }
        Scheme::File | Scheme::Memory => "this scheme takes no query parameters",
    }
}

fn parse_bool(raw: &str, key: &str, v: &str) -> Result<bool, ReplicaError> {
    match v {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ReplicaError::BadUrl {
            url: raw.into(),
            reason: format!("{key}={v:?} is not a boolean; use true or false"),
        }),
    }
}

/// Decodes `%XX` escapes (the user part of a URL comes escaped); anything
/// else is kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_and_bare_paths() {
        let l = ReplicaLocation::parse("file:///var/backups/app").unwrap();
        assert_eq!(l.scheme, Scheme::File);
        assert_eq!(l.path, "/var/backups/app");
        let l = ReplicaLocation::parse("/tmp/x").unwrap();
        assert_eq!(l.path, "/tmp/x");
        assert!(ReplicaLocation::parse("file://host/x").is_err());
    }

    #[test]
    fn s3_query_parameters() {
        let l = ReplicaLocation::parse("s3://b/a/b?region=eu-west-1").unwrap();
        assert_eq!((l.bucket.as_str(), l.path.as_str()), ("b", "a/b"));
        assert_eq!(l.region.as_deref(), Some("eu-west-1"));
        assert!(!l.force_path_style);
        // A custom endpoint is addressed path-style, said or not.
        let said =
            ReplicaLocation::parse("s3://b/a?endpoint=http://127.0.0.1:9000&force-path-style=true")
                .unwrap();
        let unsaid = ReplicaLocation::parse("s3://b/a?endpoint=http://127.0.0.1:9000").unwrap();
        assert!(said.force_path_style);
        assert_eq!(said, unsaid);
        let e = ReplicaLocation::parse("s3://b/a?bogus=1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(ReplicaLocation::parse("s3:///nobucket").is_err());
        assert!(ReplicaLocation::parse("ftp://x/y").is_err());
        // No `//` after the scheme: no bucket, whatever follows.
        assert!(ReplicaLocation::parse("memory: x s3://b/v").is_err());
        assert!(ReplicaLocation::parse("s3:b/v?endpoint=http://h").is_err());
    }

    #[test]
    fn a_server_in_the_host_reads_as_the_endpoint_parameter() {
        // Found by fuzzing (fuzz/fuzz_targets/replica_url.rs): the server of
        // a MinIO-style host was kept as written, so its canonical URL
        // (endpoint=...) parsed to another endpoint, or did not parse.
        let host = ReplicaLocation::parse("s3://bkt.MinIO.Example:9000/db").unwrap();
        let query = ReplicaLocation::parse("s3://bkt/db?endpoint=MinIO.Example:9000").unwrap();
        assert_eq!(host.endpoint.as_deref(), Some("http://minio.example:9000"));
        assert_eq!(host.endpoint, query.endpoint);
        let l = ReplicaLocation::parse("s3://bkt.h%C3%A9:9000/db").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("http://xn--h-bga:9000"));
        // A host that cannot name a server is refused, as the parameter is.
        let raw = "s3://buck4.\u{43c}\u{8d}t:44";
        let e = ReplicaLocation::parse(raw).unwrap_err().to_string();
        assert!(e.contains("is not a URL of a server"), "{e}");
        assert!(
            ReplicaLocation::parse("s3://buck4?endpoint=http://%D0%BC%C2%8Dt:44").is_err(),
            "the parameter is refused too"
        );
    }

    #[test]
    fn gcs_and_azure() {
        let l = ReplicaLocation::parse("gs://bkt/db").unwrap();
        assert_eq!((l.scheme, l.bucket.as_str()), (Scheme::Gcs, "bkt"));
        let l = ReplicaLocation::parse("az://acct@container/db").unwrap();
        assert_eq!(l.scheme, Scheme::Azure);
        assert_eq!(l.account.as_deref(), Some("acct"));
        assert_eq!(l.bucket, "container");
    }

    #[test]
    fn emulator_endpoints() {
        let l = ReplicaLocation::parse("gs://bkt/db?endpoint=http://127.0.0.1:4443/").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:4443"));
        let l = ReplicaLocation::parse(
            "abs://container/db?account=devstoreaccount1&endpoint=127.0.0.1:10000/devstoreaccount1",
        )
        .unwrap();
        assert_eq!(l.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(
            l.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
    }

    #[test]
    fn parameters_of_another_scheme_are_refused_with_the_fix() {
        let e = ReplicaLocation::parse("gs://bkt/db?region=eu").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("\"region\" applies to s3://"), "{m}");
        assert!(m.contains("gs:// takes endpoint"), "{m}");
        let m = ReplicaLocation::parse("s3://b/db?account=x")
            .unwrap_err()
            .to_string();
        assert!(m.contains("abs://"), "{m}");
        let m = ReplicaLocation::parse("abs://c/db?force-path-style=true")
            .unwrap_err()
            .to_string();
        assert!(m.contains("abs:// takes account and endpoint"), "{m}");
        let m = ReplicaLocation::parse("gs://b/db?endpoint=http://")
            .unwrap_err()
            .to_string();
        assert!(m.contains("is not a URL"), "{m}");
    }

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const KEY_MD5: &str = "hRasmdxgYDKV3nvbahU1MA==";

    #[test]
    fn storage_class_and_server_side_encryption() {
        let l = ReplicaLocation::parse("s3://b/p?storage-class=STANDARD_IA&sse-kms-key-id=alias/x")
            .unwrap();
        assert_eq!(l.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(
            l.sse,
            Some(ServerSideEncryption::Kms {
                key_id: "alias/x".into()
            })
        );
        let l = ReplicaLocation::parse(&format!(
            "s3://b/p?sseCustomerAlgorithm=AES256&sseCustomerKey={}&sseCustomerKeyMD5={}",
            KEY.replace('=', "%3D"),
            KEY_MD5
                .replace('=', "%3D")
                .replace('+', "%2B")
                .replace('/', "%2F")
        ))
        .unwrap();
        match &l.sse {
            Some(ServerSideEncryption::Customer { key }) => assert_eq!(key.expose(), KEY),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{l:?}").contains(KEY));
        for (url, says) in [
            ("s3://b/p?storage-class=DEEP_ARCHIVE", "restore request"),
            ("s3://b/p?storage-class=", "not a storage class"),
            ("s3://b/p?sse-kms-key-id=", "is empty"),
            ("s3://b/p?sse-customer-key=c2hvcnQ%3D", "32-byte"),
            ("s3://b/p?sse-customer-algorithm=AES128", "AES256 only"),
            (
                "s3://b/p?sse-customer-key-md5=x",
                "without sse-customer-key",
            ),
            ("gs://b/p?storage-class=NEARLINE", "s3:// URLs only"),
        ] {
            let m = ReplicaLocation::parse(url).unwrap_err().to_string();
            assert!(m.contains(says), "{url}: {m}");
        }
        // Messages never show the key.
        for url in [
            format!("s3://b/p?sse-kms-key-id=k&sse-customer-key={KEY}"),
            format!("s3://b/p?sse-customer-key={KEY}&sse-customer-key-md5=AAAA"),
            format!("s3://b/p?sse-customer-key={KEY}&nope=1"),
        ] {
            let m = ReplicaLocation::parse(&url).unwrap_err().to_string();
            assert!(!m.contains(&KEY[..20]), "{m}");
            assert!(m.contains("sse-customer-key=***"), "{m}");
        }
    }
}
