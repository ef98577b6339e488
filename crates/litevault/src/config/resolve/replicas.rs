//! Each replica, and the checks across databases.

use super::*;
use crate::replica::{ServerSideEncryption, check_sse_customer_key, check_storage_class};

/// The S3 storage and encryption settings of one replica, as given.
pub(super) struct S3Options {
    storage_class: Option<(String, Location)>,
    sse_kms: Option<(String, Location)>,
    sse_algorithm: Option<(String, Location)>,
    sse_key: Option<(String, Location)>,
    sse_key_path: Option<(String, Location)>,
}

impl Resolver<'_, '_> {
    pub(super) fn replica(
        &mut self,
        key: &str,
        sr: &Spanned<RawReplica>,
        g: &RawConfig,
    ) -> Option<ReplicaConfig> {
        let r = &sr.value;
        let errors_before = self.errors.len();
        self.ignored_and_unsupported(key, r.ignored_keys(), r.unsupported_keys());
        for (k, v, instead) in [
            (
                "retention",
                &r.retention,
                "the top-level `snapshot.retention` (and `l0-retention`)",
            ),
            (
                "retention-check-interval",
                &r.retention_check_interval,
                "the top-level `l0-retention-check-interval`",
            ),
            (
                "snapshot-interval",
                &r.snapshot_interval,
                "the top-level `snapshot.interval`",
            ),
        ] {
            if let Some(s) = v {
                let msg = format!(
                    "a Litestream v0.3 replica key, ignored (Litestream v0.5 ignores it too); use {instead}"
                );
                self.warn(Some(s.referenced), &format!("{key}.{k}"), &msg);
            }
        }
        let url = self.take_str(&format!("{key}.url"), &r.url);
        let ty = self.take_str(&format!("{key}.type"), &r.r#type);
        let url_scheme = url
            .as_ref()
            .and_then(|(u, _)| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()));
        let kind_name = match (&url_scheme, &ty) {
            (Some(s), Some((t, tloc))) => {
                if !t.eq_ignore_ascii_case(s) {
                    let msg = format!(
                        "ignored: the url says `{s}` (the url's scheme decides, as in Litestream)"
                    );
                    self.warn(Some(*tloc), &format!("{key}.type"), &msg);
                }
                s.clone()
            }
            (Some(s), None) => s.clone(),
            (None, Some((t, _))) => t.to_ascii_lowercase(),
            (None, None) => "file".into(),
        };
        let kind = match kind_name.as_str() {
            "file" => ReplicaKind::File,
            "s3" => ReplicaKind::S3,
            "gs" | "gcs" => ReplicaKind::Gs,
            "abs" | "az" | "azure" => ReplicaKind::Abs,
            other => {
                let loc = url
                    .as_ref()
                    .map(|(_, l)| *l)
                    .or(ty.as_ref().map(|(_, l)| *l));
                let msg = format!(
                    "replica type `{other}` is not supported by litevault; use file, s3 (AWS or any S3-compatible service), gs or abs"
                );
                self.error(loc, &format!("{key}.type"), &msg);
                return None;
            }
        };
        self.origins.insert(
            format!("{key}.type"),
            self.origins
                .get(&format!("{key}.url"))
                .or_else(|| self.origins.get(&format!("{key}.type")))
                .cloned()
                .unwrap_or(Origin::Default),
        );
        if let Some((_, _)) = &url {
            for (k, v) in [("path", &r.path), ("bucket", &r.bucket)] {
                if let Some(s) = v.as_ref().filter(|s| !s.value.trim().is_empty()) {
                    let msg = format!(
                        "give either `url` or `{k}`, not both (the url already names the {k})"
                    );
                    self.error(Some(s.referenced), &format!("{key}.{k}"), &msg);
                }
            }
        }
        let path = self.take_str(&format!("{key}.path"), &r.path);
        let bucket = if url.is_none() {
            self.inherit_str(&format!("{key}.bucket"), &r.bucket, &g.bucket)
        } else {
            None
        };
        let endpoint = self.inherit_str(&format!("{key}.endpoint"), &r.endpoint, &g.endpoint);
        let region = self.inherit_str(&format!("{key}.region"), &r.region, &g.region);
        let force_path_style = self.inherit(
            &format!("{key}.force-path-style"),
            &r.force_path_style,
            &g.force_path_style,
        );
        let skip_verify = self.inherit(
            &format!("{key}.skip-verify"),
            &r.skip_verify,
            &g.skip_verify,
        );
        let storage_class = self.inherit_str(
            &format!("{key}.storage-class"),
            &r.storage_class,
            &g.storage_class,
        );
        let sse_kms = self.inherit_str(
            &format!("{key}.sse-kms-key-id"),
            &r.sse_kms_key_id,
            &g.sse_kms_key_id,
        );
        let sse_algorithm = self.inherit_str(
            &format!("{key}.sse-customer-algorithm"),
            &r.sse_customer_algorithm,
            &g.sse_customer_algorithm,
        );
        let sse_key = self.inherit_str(
            &format!("{key}.sse-customer-key"),
            &r.sse_customer_key,
            &g.sse_customer_key,
        );
        let sse_key_path = self.inherit_str(
            &format!("{key}.sse-customer-key-path"),
            &r.sse_customer_key_path,
            &g.sse_customer_key_path,
        );
        let account_name = self.inherit_str(
            &format!("{key}.account-name"),
            &r.account_name,
            &g.account_name,
        );
        let account_key = self.inherit_str(
            &format!("{key}.account-key"),
            &r.account_key,
            &g.account_key,
        );
        let akid = self.inherit_str(
            &format!("{key}.access-key-id"),
            &r.access_key_id,
            &g.access_key_id,
        );
        let secret = self.inherit_str(
            &format!("{key}.secret-access-key"),
            &r.secret_access_key,
            &g.secret_access_key,
        );
        let skey = format!("{key}.sync-interval");
        let sync = self.inherit(&skey, &r.sync_interval, &g.sync_interval);
        let sync_interval = self.positive(&skey, sync, defaults::SYNC_INTERVAL);
        let litestream_compat = self
            .inherit(
                &format!("{key}.litestream-compat"),
                &r.litestream_compat,
                &g.litestream_compat,
            )
            .map_or(defaults::LITESTREAM_COMPAT, |(b, _)| b);
        let name = self
            .take_str(&format!("{key}.name"), &r.name)
            .map(|(n, _)| n);

        let url_key = format!("{key}.url");
        let location = match kind {
            ReplicaKind::File => {
                let dir = match (&url, &path) {
                    (Some((u, loc)), _) => {
                        if u.contains("://") {
                            match ReplicaLocation::parse(u) {
                                Ok(l) => Some(l.path),
                                Err(e) => {
                                    self.error(Some(*loc), &url_key, &e.to_string());
                                    None
                                }
                            }
                        } else {
                            Some(u.clone())
                        }
                    }
                    (None, Some((p, _))) => Some(p.clone()),
                    (None, None) => {
                        self.error(
                            Some(sr.referenced),
                            key,
                            "a file replica needs `path` (a directory) or `url: file:///dir`",
                        );
                        None
                    }
                };
                dir.map(|d| ReplicaLocation {
                    scheme: Scheme::File,
                    bucket: String::new(),
                    path: self.abs_path(&d, false).to_string_lossy().into_owned(),
                    endpoint: None,
                    region: None,
                    force_path_style: false,
                    skip_verify: false,
                    account: None,
                    storage_class: None,
                    sse: None,
                })
            }
            _ => {
                let base = if let Some((u, loc)) = &url {
                    let u = self.strip_litestream_query(u, *loc, &url_key);
                    // Provider hostnames (bucket.s3.REGION.amazonaws.com...)
                    // are read by the one URL grammar, as on the command line.
                    match ReplicaLocation::parse(&u) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            self.error(Some(*loc), &url_key, &e.to_string());
                            None
                        }
                    }
                } else {
                    match &bucket {
                        None => {
                            let msg = format!(
                                "a {} replica needs `bucket` (or a `url` such as {}://bucket/path)",
                                kind.name(),
                                kind.name()
                            );
                            self.error(Some(sr.referenced), &format!("{key}.bucket"), &msg);
                            None
                        }
                        Some((b, _)) => Some(ReplicaLocation {
                            scheme: match kind {
                                ReplicaKind::S3 => Scheme::S3,
                                ReplicaKind::Gs => Scheme::Gcs,
                                _ => Scheme::Azure,
                            },
                            bucket: b.clone(),
                            path: path
                                .as_ref()
                                .map(|(p, _)| p.trim_matches('/').to_string())
                                .unwrap_or_default(),
                            endpoint: None,
                            region: None,
                            force_path_style: false,
                            skip_verify: false,
                            account: None,
                            storage_class: None,
                            sse: None,
                        }),
                    }
                };
                base.map(|mut l| {
                    // gs and abs take an endpoint too (an emulator, a private endpoint).
                    if let Some((e, _)) = &endpoint {
                        l.endpoint = Some(endpoint_with_scheme(e));
                    }
                    if kind == ReplicaKind::S3 {
                        if let Some((rg, _)) = &region {
                            l.region = Some(rg.clone());
                        }
                        if let Some((f, floc)) = force_path_style {
                            if !f && l.endpoint.is_some() {
                                self.warn(Some(floc), &format!("{key}.force-path-style"), "litevault always uses path-style addressing with a custom endpoint; `false` has no effect");
                            }
                            l.force_path_style = f;
                        }
                        if let Some((s, _)) = skip_verify {
                            l.skip_verify = s;
                        }
                    }
                    if kind == ReplicaKind::Abs
                        && let Some((a, _)) = &account_name
                    {
                        l.account = Some(a.clone());
                    }
                    l
                })
            }
        };
        let mut location = location?;
        let (sse_customer_key, sse_customer_key_path) = self.s3_options(
            key,
            kind,
            &mut location,
            S3Options {
                storage_class,
                sse_kms,
                sse_algorithm,
                sse_key,
                sse_key_path,
            },
        );
        if url.is_none() {
            let o = self
                .origins
                .get(&format!("{key}.path"))
                .or_else(|| self.origins.get(&format!("{key}.bucket")))
                .cloned()
                .unwrap_or(Origin::Default);
            self.origins.insert(url_key.clone(), o);
        }
        let canonical = canonical_url(&location);
        // The location is what the replica module makes of the canonical URL,
        // so that `location` and `open()` always agree.
        let location = match ReplicaLocation::parse(&canonical) {
            Ok(l) => l,
            Err(e) => {
                let loc = url.as_ref().map(|(_, l)| *l).unwrap_or(sr.referenced);
                self.error(Some(loc), &url_key, &e.to_string());
                location
            }
        };

        // Credentials.
        let (access_key_id, secret_access_key) = match (akid, secret) {
            (Some((a, _)), Some((s, _))) => (Some(a), Some(Secret::new(s))),
            (None, None) => (None, None),
            (Some((_, loc)), None) | (None, Some((_, loc))) => {
                self.error(Some(loc), &format!("{key}.access-key-id"), "set both `access-key-id` and `secret-access-key`, or neither to use the environment (LITEVAULT_*, LITESTREAM_* or AWS_* variables)");
                (None, None)
            }
        };
        if kind == ReplicaKind::S3 && access_key_id.is_none() {
            for (field, vars) in [
                (
                    "access-key-id",
                    [
                        "LITEVAULT_ACCESS_KEY_ID",
                        "LITESTREAM_ACCESS_KEY_ID",
                        "AWS_ACCESS_KEY_ID",
                    ],
                ),
                (
                    "secret-access-key",
                    [
                        "LITEVAULT_SECRET_ACCESS_KEY",
                        "LITESTREAM_SECRET_ACCESS_KEY",
                        "AWS_SECRET_ACCESS_KEY",
                    ],
                ),
            ] {
                if let Some(var) = vars
                    .iter()
                    .find(|v| (self.ctx.env)(v).is_some_and(|x| !x.is_empty()))
                {
                    self.origins.insert(
                        format!("{key}.{field}"),
                        Origin::ProcessEnv {
                            var: var.to_string(),
                        },
                    );
                }
            }
        }
        if kind != ReplicaKind::S3
            && let Some(s) = r.access_key_id.as_ref().or(r.secret_access_key.as_ref())
        {
            self.warn(
                Some(s.referenced),
                &format!("{key}.access-key-id"),
                "S3 credentials on a non-S3 replica are ignored",
            );
        }
        let account_key = if kind == ReplicaKind::Abs {
            account_key.map(|(k, _)| Secret::new(k))
        } else {
            None
        };

        if self.errors.len() > errors_before {
            return None;
        }
        Some(ReplicaConfig {
            key: key.to_string(),
            name,
            kind,
            url: canonical,
            location,
            access_key_id,
            secret_access_key,
            account_key,
            sse_customer_key,
            sse_customer_key_path,
            sync_interval,
            litestream_compat,
        })
    }

    /// Storage class and server-side encryption: the settings of the file
    /// go into `location` (over the URL's), except the SSE-C key, a secret
    /// the canonical URL never carries: it is returned, as a value or as
    /// the file to read it from when the replica opens.
    fn s3_options(
        &mut self,
        key: &str,
        kind: ReplicaKind,
        location: &mut ReplicaLocation,
        o: S3Options,
    ) -> (Option<Secret>, Option<PathBuf>) {
        let mut customer = match location.sse.take() {
            Some(ServerSideEncryption::Customer { key }) => Some(key),
            kms => {
                location.sse = kms;
                None
            }
        };
        let given = [
            ("storage-class", &o.storage_class),
            ("sse-kms-key-id", &o.sse_kms),
            ("sse-customer-algorithm", &o.sse_algorithm),
            ("sse-customer-key", &o.sse_key),
            ("sse-customer-key-path", &o.sse_key_path),
        ];
        if kind != ReplicaKind::S3 {
            for (k, v) in given {
                // Top-level defaults apply to the S3 replicas only.
                if let Some((_, loc)) = v
                    && matches!(
                        self.origins.get(&format!("{key}.{k}")),
                        Some(Origin::File { .. })
                    )
                {
                    let msg = format!("`{k}` applies to s3 replicas only; ignored here");
                    self.warn(Some(*loc), &format!("{key}.{k}"), &msg);
                }
            }
            return (None, None);
        }
        if let Some((c, loc)) = o.storage_class {
            match check_storage_class(c.trim()) {
                Ok(c) => location.storage_class = Some(c),
                Err(e) => self.error(Some(loc), &format!("{key}.storage-class"), &e),
            }
        }
        if let Some((a, loc)) = &o.sse_algorithm
            && a.trim() != "AES256"
        {
            let msg = format!("`{a}`: SSE-C takes AES256 only; write AES256 or leave it out");
            self.error(Some(*loc), &format!("{key}.sse-customer-algorithm"), &msg);
        }
        let mut path = None;
        match (o.sse_key, o.sse_key_path) {
            (Some((_, loc)), Some(_)) => {
                self.error(
                    Some(loc),
                    &format!("{key}.sse-customer-key"),
                    "give `sse-customer-key` or `sse-customer-key-path`, not both",
                );
            }
            (Some((k, loc)), None) => match check_sse_customer_key(&k, None) {
                Ok(k) => customer = Some(k),
                Err(e) => self.error(Some(loc), &format!("{key}.sse-customer-key"), &e),
            },
            (None, Some((p, _))) => path = Some(self.abs_path(&p, false)),
            (None, None) => {}
        }
        if let Some((k, loc)) = o.sse_kms {
            if customer.is_some() || path.is_some() {
                self.error(
                    Some(loc),
                    &format!("{key}.sse-kms-key-id"),
                    "SSE-KMS and SSE-C (`sse-customer-key`) both set: an object is encrypted one way; keep one",
                );
            } else {
                location.sse = Some(ServerSideEncryption::Kms { key_id: k });
            }
        }
        (customer, path)
    }

    /// Drops the URL query parameters Litestream knows and litevault has no
    /// use for (`signPayload`, `requireContentMD5`), with a warning.
    pub(super) fn strip_litestream_query(&mut self, u: &str, loc: Location, key: &str) -> String {
        let Some((base, query)) = u.split_once('?') else {
            return u.to_string();
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            if matches!(
                name,
                "signPayload" | "sign-payload" | "requireContentMD5" | "require-content-md5"
            ) {
                let msg = format!(
                    "query parameter `{name}` is a Litestream setting litevault does not use; ignored"
                );
                self.warn(Some(loc), key, &msg);
            } else if !pair.is_empty() {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    }

    pub(super) fn cross_checks(&mut self, dbs: &[DbConfig], locs: &[Location]) {
        for (j, db) in dbs.iter().enumerate() {
            if let Some(i) = dbs[..j].iter().position(|d| d.source == db.source) {
                let msg = format!(
                    "lists the same database as {} (line {}); list it once, with several replicas if needed",
                    dbs[i].key,
                    locs[i].line()
                );
                self.warn(Some(locs[j]), &db.key, &msg);
            }
        }
        let mut seen: Vec<(String, &ReplicaConfig, bool)> = Vec::new();
        for db in dbs {
            let is_dir = matches!(db.source, DbSource::Dir { .. });
            for r in &db.replicas {
                let id = r.identity();
                if let Some((_, first, _)) = seen.iter().find(|(k, _, d)| *k == id && *d == is_dir)
                {
                    let line = match self.origins.get(&format!("{}.url", first.key)) {
                        Some(
                            Origin::File { line }
                            | Origin::Env { line, .. }
                            | Origin::Global { line, .. },
                        ) => format!(" (line {line})"),
                        _ => String::new(),
                    };
                    let msg = format!(
                        "replicates to {}, as {} does{line}; two writers on one replica destroy each other's history: give each its own path",
                        r.url, first.key
                    );
                    let (l, _) = match self.origins.get(&format!("{}.url", r.key)) {
                        Some(
                            Origin::File { line }
                            | Origin::Env { line, .. }
                            | Origin::Global { line, .. },
                        ) => (*line, 0),
                        _ => (0, 0),
                    };
                    let p = self.problem(l, 0, &format!("{}.url", r.key), &msg);
                    self.errors.push(p);
                } else {
                    seen.push((id, r, is_dir));
                }
            }
        }
    }
}
