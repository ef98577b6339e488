//! The configuration file as written: serde structs that mirror
//! `litestream.yml` key for key, plus litevault's own keys. Every value
//! keeps its location (`Spanned`) so that later checks can name the line.
//!
//! Keys come in three kinds:
//! - keys litevault reads;
//! - Litestream keys litevault does not need (`socket`, `mcp-addr`,
//!   `heartbeat-url`...): accepted, with a warning that they are ignored;
//! - Litestream keys whose silent omission would change what is stored
//!   (client-side encryption: `age`) or that only serve replica types litevault
//!   does not support (SFTP, WebDAV, NATS): an error.
//!
//! Any other key is an error: Litestream ignores unknown keys, which turns a
//! typo such as `sync-intervl` into a silent default.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::{Location, Spanned};

use super::units::{ByteSize, GoDuration};

/// An optional value with its location.
pub type S<T> = Option<Spanned<T>>;

macro_rules! raw_section {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$fattr:meta])* $field:ident : $ty:ty, )*
        }
        ignored { $($ign:ident),* $(,)? }
        unsupported { $($uns:ident),* $(,)? }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct $name {
            $( $(#[$fattr])* pub $field: $ty, )*
            $( #[doc = "A Litestream key litevault ignores."] pub $ign: Option<Spanned<IgnoredAny>>, )*
            $( #[doc = "A Litestream key litevault rejects."] pub $uns: Option<Spanned<IgnoredAny>>, )*
        }

        impl $name {
            /// Litestream keys present in this section that litevault ignores.
            pub fn ignored_keys(&self) -> Vec<(String, Location)> {
                #[allow(unused_mut)]
                let mut v = Vec::new();
                $( if let Some(s) = &self.$ign { v.push((key_name(stringify!($ign)), s.referenced)); } )*
                v
            }

            /// Litestream keys present in this section that litevault rejects.
            pub fn unsupported_keys(&self) -> Vec<(String, Location)> {
                #[allow(unused_mut)]
                let mut v = Vec::new();
                $( if let Some(s) = &self.$uns { v.push((key_name(stringify!($uns)), s.referenced)); } )*
                v
            }

            /// Every key this section accepts, as written in the file.
            #[allow(dead_code)]
            pub fn keys() -> Vec<String> {
                vec![$(key_name(stringify!($field)),)* $(key_name(stringify!($ign)),)* $(key_name(stringify!($uns)),)*]
            }
        }
    };
}

fn key_name(field: &str) -> String {
    field.trim_start_matches("r#").replace('_', "-")
}

raw_section! {
    /// The whole file.
    pub struct RawConfig {
        /// Databases.
        dbs: Option<Vec<Spanned<RawDb>>>,
        /// HTTP bind address (Litestream: the metrics server).
        addr: S<String>,
        /// Command to supervise.
        exec: S<String>,
        /// Logging.
        logging: Option<Spanned<RawLogging>>,
        /// Compaction levels L1, L2...
        levels: Option<Spanned<Vec<Spanned<RawLevel>>>>,
        /// Snapshots (level 9).
        snapshot: Option<Spanned<RawSnapshot>>,
        /// How long L0 files are kept.
        l0_retention: S<GoDuration>,
        /// How often expired L0 files are swept.
        l0_retention_check_interval: S<GoDuration>,
        /// Retention enforcement.
        retention: Option<Spanned<RawRetention>>,
        /// Litestream's name for `shutdown-timeout`.
        shutdown_sync_timeout: S<GoDuration>,
        /// litevault: time allowed for the final sync.
        shutdown_timeout: S<GoDuration>,
        /// litevault: WAL poll interval for every database.
        poll_interval: S<GoDuration>,
        /// litevault: TRUNCATE checkpoint threshold for every database.
        truncate_wal_size: S<ByteSize>,
        /// litevault: the replica lease.
        lease: Option<Spanned<RawLease>>,
        /// litevault: the HTTP server.
        http: Option<Spanned<RawHttp>>,
        // Replica settings given once for every replica.
        /// Default sync interval of every replica.
        sync_interval: S<GoDuration>,
        /// Default S3 access key id.
        access_key_id: S<String>,
        /// Default S3 secret access key.
        secret_access_key: S<String>,
        /// Default S3 region.
        region: S<String>,
        /// Default bucket.
        bucket: S<String>,
        /// Default S3 endpoint.
        endpoint: S<String>,
        /// Default S3 path-style addressing.
        force_path_style: S<bool>,
        /// Default TLS verification switch.
        skip_verify: S<bool>,
        /// Default Azure account name.
        account_name: S<String>,
        /// Default Azure account key.
        account_key: S<String>,
        /// Default S3 storage class of the files written.
        storage_class: S<String>,
        /// SSE-KMS key id, ARN or alias.
        sse_kms_key_id: S<String>,
        /// SSE-C algorithm (AES256 only).
        sse_customer_algorithm: S<String>,
        /// SSE-C key, base64 of 32 bytes.
        sse_customer_key: S<String>,
        /// File holding the SSE-C key.
        sse_customer_key_path: S<String>,
        /// litevault: default Litestream-restorable encoding.
        litestream_compat: S<bool>,
    }
    ignored {
        socket, mcp_addr, heartbeat_url, heartbeat_interval, validation, verify_compaction,
        shutdown_sync_interval,
        sign_payload, require_content_md5, part_size, concurrency, validation_interval, auto_recover,
    }
    unsupported {
        age,
        sas_token, host, user, password, key_path, concurrent_writes, host_key, webdav_url,
        webdav_username, webdav_password, jwt, seed, creds, nkey, username, token, tls, root_cas,
        client_cert, client_key, max_reconnects, reconnect_wait, timeout,
    }
}

raw_section! {
    /// One entry of `dbs`.
    pub struct RawDb {
        /// A database file.
        path: S<String>,
        /// A directory of databases.
        dir: S<String>,
        /// File-name pattern for `dir`.
        pattern: S<String>,
        /// Whether `dir` is scanned recursively.
        recursive: S<bool>,
        /// Whether `dir` is watched for new databases.
        watch: S<bool>,
        /// Litestream's name for `poll-interval`.
        monitor_interval: S<GoDuration>,
        /// litevault: WAL poll interval.
        poll_interval: S<GoDuration>,
        /// Time-based PASSIVE checkpoint.
        checkpoint_interval: S<GoDuration>,
        /// SQLite busy timeout.
        busy_timeout: S<GoDuration>,
        /// PASSIVE checkpoint threshold (frames).
        min_checkpoint_page_count: S<u64>,
        /// TRUNCATE checkpoint threshold (pages).
        truncate_page_n: S<u64>,
        /// Litestream v0.3's name of the forced checkpoint threshold.
        max_checkpoint_page_count: S<u64>,
        /// litevault: TRUNCATE checkpoint threshold (bytes).
        truncate_wal_size: S<ByteSize>,
        /// Restore the database at startup when it is missing.
        restore_if_db_not_exists: S<bool>,
        /// Per-database snapshot settings.
        snapshot: Option<Spanned<RawSnapshot>>,
        /// The replica (Litestream v0.5).
        replica: Option<Spanned<RawReplica>>,
        /// The replicas (Litestream before v0.5, and litevault).
        replicas: Option<Spanned<Vec<Spanned<RawReplica>>>>,
    }
    ignored { meta_path }
    unsupported {}
}

raw_section! {
    /// One replica.
    pub struct RawReplica {
        /// Replica type: file, s3, gs, abs.
        r#type: S<String>,
        /// A name for logs (deprecated in Litestream).
        name: S<String>,
        /// Replica URL.
        url: S<String>,
        /// Directory (file) or key prefix (object stores).
        path: S<String>,
        /// Bucket (S3, GCS) or container (Azure).
        bucket: S<String>,
        /// S3 endpoint.
        endpoint: S<String>,
        /// S3 region.
        region: S<String>,
        /// S3 access key id.
        access_key_id: S<String>,
        /// S3 secret access key.
        secret_access_key: S<String>,
        /// S3 path-style addressing.
        force_path_style: S<bool>,
        /// Skip TLS verification.
        skip_verify: S<bool>,
        /// How often the replica is synced.
        sync_interval: S<GoDuration>,
        /// Azure account name.
        account_name: S<String>,
        /// Azure account key.
        account_key: S<String>,
        /// S3 storage class of the files written.
        storage_class: S<String>,
        /// SSE-KMS key id, ARN or alias.
        sse_kms_key_id: S<String>,
        /// SSE-C algorithm (AES256 only).
        sse_customer_algorithm: S<String>,
        /// SSE-C key, base64 of 32 bytes.
        sse_customer_key: S<String>,
        /// File holding the SSE-C key.
        sse_customer_key_path: S<String>,
        /// litevault: Litestream-restorable encoding for this replica.
        litestream_compat: S<bool>,
        /// Litestream v0.3: retention of this replica.
        retention: S<IgnoredAny>,
        /// Litestream v0.3: retention sweep interval.
        retention_check_interval: S<IgnoredAny>,
        /// Litestream v0.3: snapshot interval of this replica.
        snapshot_interval: S<IgnoredAny>,
    }
    ignored { sign_payload, require_content_md5, part_size, concurrency, validation_interval, auto_recover }
    unsupported {
        age,
        sas_token, host, user, password, key_path, concurrent_writes, host_key, webdav_url,
        webdav_username, webdav_password, jwt, seed, creds, nkey, username, token, tls, root_cas,
        client_cert, client_key, max_reconnects, reconnect_wait, timeout,
    }
}

raw_section! {
    /// `logging`.
    pub struct RawLogging {
        /// trace, debug, info, warn, error.
        level: S<String>,
        /// text or json.
        r#type: S<String>,
        /// Log to stderr.
        stderr: S<bool>,
    }
    ignored { source }
    unsupported {}
}

raw_section! {
    /// One entry of `levels`.
    pub struct RawLevel {
        /// Compaction interval.
        interval: S<GoDuration>,
        /// The level number (optional; entries are L1, L2... in order).
        level: S<u8>,
    }
    ignored {}
    unsupported {}
}

raw_section! {
    /// `snapshot`.
    pub struct RawSnapshot {
        /// Snapshot interval.
        interval: S<GoDuration>,
        /// Snapshot retention.
        retention: S<GoDuration>,
    }
    ignored {}
    unsupported {}
}

raw_section! {
    /// `retention`.
    pub struct RawRetention {
        /// Whether expired files are deleted.
        enabled: S<bool>,
    }
    ignored {}
    unsupported {}
}

raw_section! {
    /// `lease` (litevault).
    pub struct RawLease {
        /// Lease time to live.
        ttl: S<GoDuration>,
        /// How long a start waits for a lease another replicator holds.
        wait: S<GoDuration>,
    }
    ignored {}
    unsupported {}
}

raw_section! {
    /// `http` (litevault).
    pub struct RawHttp {
        /// Bind address (same as the top-level `addr`).
        addr: S<String>,
        /// Lag above which `/readyz` fails.
        readyz_max_lag: S<GoDuration>,
    }
    ignored {}
    unsupported {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_replica_settings_agree() {
        // Every replica setting that may be given globally is also accepted on
        // a replica, as in Litestream's inline ReplicaSettings.
        let replica = RawReplica::keys();
        let global_only = [
            "dbs",
            "addr",
            "exec",
            "logging",
            "levels",
            "snapshot",
            "l0-retention",
            "l0-retention-check-interval",
            "retention",
            "shutdown-sync-timeout",
            "shutdown-timeout",
            "poll-interval",
            "truncate-wal-size",
            "lease",
            "http",
            "socket",
            "mcp-addr",
            "heartbeat-url",
            "heartbeat-interval",
            "validation",
            "verify-compaction",
            "shutdown-sync-interval",
        ];
        for k in RawConfig::keys() {
            if !global_only.contains(&k.as_str()) {
                assert!(replica.contains(&k), "global key {k} is not a replica key");
            }
        }
    }
}
