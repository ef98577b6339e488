//! The XML API over HTTP: which request is which (by method, query and
//! headers), and the headers and XML bodies GCS answers with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Response, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::store::{After, Error, MAX_PAGE, Meta, Object, Precondition, Store};
use super::xml::{self, esc, iso};

pub type Shared = Arc<Mutex<Store>>;

/// What a request was, as [`super::GcsXml::requests`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// PUT object without a precondition.
    Put,
    /// PUT object with `x-goog-if-generation-match`.
    ConditionalPut,
    Get,
    Head,
    List,
    Delete,
    /// POST `?uploads`.
    InitiateMultipart,
    /// PUT `?partNumber=&uploadId=`.
    UploadPart,
    /// POST `?uploadId=`.
    CompleteMultipart,
    /// DELETE `?uploadId=`.
    AbortMultipart,
    /// PUT with `x-goog-copy-source`.
    Copy,
    /// Anything else (answered 501 `NotImplemented`).
    Other,
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The headers an object keeps (besides `x-goog-meta-*`).
const KEPT: [&str; 6] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "x-goog-storage-class",
];

/// Conditional headers this server does not implement: refused, so that no
/// test passes on a condition that was silently ignored.
const REFUSED: [&str; 4] = [
    "if-modified-since",
    "if-unmodified-since",
    "x-goog-copy-source-if-generation-match",
    "x-goog-copy-source-generation",
];

struct Request {
    method: Method,
    bucket: String,
    /// `None` for a request on the bucket itself (a listing).
    key: Option<String>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn kind(&self) -> Kind {
        let q = |k: &str| self.query.contains_key(k);
        match (&self.method, &self.key) {
            (&Method::GET, None) => Kind::List,
            (&Method::GET, Some(_)) => Kind::Get,
            (&Method::HEAD, Some(_)) => Kind::Head,
            (&Method::PUT, Some(_)) if q("uploadId") => Kind::UploadPart,
            (&Method::PUT, Some(_)) if self.header("x-goog-copy-source").is_some() => Kind::Copy,
            (&Method::PUT, Some(_)) if self.header("x-goog-if-generation-match").is_some() => {
                Kind::ConditionalPut
            }
            (&Method::PUT, Some(_)) => Kind::Put,
            (&Method::POST, Some(_)) if q("uploads") => Kind::InitiateMultipart,
            (&Method::POST, Some(_)) if q("uploadId") => Kind::CompleteMultipart,
            (&Method::DELETE, Some(_)) if q("uploadId") => Kind::AbortMultipart,
            (&Method::DELETE, Some(_)) => Kind::Delete,
            _ => Kind::Other,
        }
    }

    fn key(&self) -> &str {
        self.key.as_deref().unwrap_or_default()
    }

    fn number(&self, name: &str) -> Result<Option<i64>, Error> {
        self.header(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| Error::InvalidArgument(format!("{name}: {v:?} is not a number")))
            })
            .transpose()
    }

    fn precondition(&self) -> Result<Precondition, Error> {
        Ok(Precondition {
            generation: self.number("x-goog-if-generation-match")?,
            metageneration: self.number("x-goog-if-metageneration-match")?,
        })
    }

    fn meta(&self) -> Meta {
        let mut meta: Meta = self
            .headers
            .iter()
            .filter(|(n, _)| KEPT.contains(&n.as_str()) || n.as_str().starts_with("x-goog-meta-"))
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        if !meta.iter().any(|(n, _)| n == "content-type") {
            meta.push(("content-type".into(), "application/octet-stream".into()));
        }
        meta
    }
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let parsed = parse(method, &uri, headers, body);
    let result = parsed.and_then(|req| {
        let mut store = state.lock().unwrap();
        *store.counts.entry(req.kind()).or_default() += 1;
        if let Some(h) = REFUSED.iter().find(|h| req.headers.contains_key(**h)) {
            return Err(Error::NotImplemented(format!(
                "this test server does not implement the header {h}"
            )));
        }
        serve(&mut store, &req)
    });
    result.unwrap_or_else(|e| xml::error(&e))
}

fn parse(method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Result<Request, Error> {
    let path = uri.path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b, Some(decode(k)?)),
        Some((b, _)) => (b, None),
        None => (path, None),
    };
    let query = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    Ok(Request {
        method,
        bucket: decode(bucket)?,
        key,
        query,
        headers,
        body,
    })
}

/// Percent-decoding of a path segment (`object_store` encodes every byte
/// that is not ASCII alphanumeric, `/` included).
fn decode(s: &str) -> Result<String, Error> {
    let bad = || Error::InvalidArgument(format!("bad percent-encoding in {s:?}"));
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
            let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn serve(store: &mut Store, req: &Request) -> Result<Response<Body>, Error> {
    let (bucket, key) = (req.bucket.as_str(), req.key());
    let id = || req.query.get("uploadId").map(String::as_str).unwrap_or("");
    match req.kind() {
        Kind::List => list(store, req),
        Kind::Get | Kind::Head => get(store, req),
        Kind::Put | Kind::ConditionalPut => {
            let o = store.put(
                bucket,
                key,
                req.body.clone(),
                req.meta(),
                req.precondition()?,
            )?;
            Ok(written(200, &o).body(Body::empty()).unwrap())
        }
        Kind::Copy => {
            let source = req.header("x-goog-copy-source").unwrap_or_default();
            let source = source.trim_start_matches('/');
            let (sb, sk) = source.split_once('/').ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "x-goog-copy-source {source:?} is not BUCKET/OBJECT"
                ))
            })?;
            let (sb, sk) = (decode(sb)?, decode(sk)?);
            let o = store.copy((&sb, &sk), (bucket, key), req.precondition()?)?;
            let body = format!(
                "<CopyObjectResult><LastModified>{}</LastModified><ETag>{}</ETag></CopyObjectResult>",
                iso(&o),
                esc(&o.etag)
            );
            Ok(xml::response(written(200, &o), body))
        }
        Kind::InitiateMultipart => {
            let upload = store.initiate(bucket, key, req.meta())?;
            let body = format!(
                "<InitiateMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
                esc(bucket),
                esc(key),
                esc(&upload)
            );
            Ok(xml::response(Response::builder().status(200), body))
        }
        Kind::UploadPart => {
            let n = req.query.get("partNumber").and_then(|n| n.parse().ok());
            let n = n.ok_or_else(|| Error::InvalidArgument("partNumber is not a number".into()))?;
            let etag = store.upload_part((bucket, key), id(), n, req.body.clone())?;
            Ok(Response::builder()
                .status(200)
                .header("etag", etag)
                .body(Body::empty())
                .unwrap())
        }
        Kind::CompleteMultipart => {
            let parts = xml::parts_listed(&String::from_utf8_lossy(&req.body))?;
            let o = store.complete((bucket, key), id(), &parts)?;
            let body = format!(
                "<CompleteMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
                esc(bucket),
                esc(key),
                esc(bucket),
                esc(key),
                esc(&o.etag)
            );
            Ok(xml::response(written(200, &o), body))
        }
        Kind::AbortMultipart => {
            store.abort(bucket, key, id())?;
            Ok(Response::builder().status(204).body(Body::empty()).unwrap())
        }
        Kind::Delete => {
            store.delete(bucket, key, req.precondition()?)?;
            Ok(Response::builder().status(204).body(Body::empty()).unwrap())
        }
        Kind::Other => Err(Error::NotImplemented(format!(
            "this test server does not implement {} {}",
            req.method,
            if req.key.is_some() {
                "on an object"
            } else {
                "on a bucket"
            }
        ))),
    }
}

fn get(store: &Store, req: &Request) -> Result<Response<Body>, Error> {
    let generation = req
        .query
        .get("generation")
        .map(|g| {
            g.parse()
                .map_err(|_| Error::InvalidArgument(format!("generation {g:?} is not a number")))
        })
        .transpose()?;
    let o = store.get(&req.bucket, req.key(), generation, req.precondition()?)?;
    if let Some(tags) = req.header("if-match")
        && !etag_listed(tags, &o.etag)
    {
        return Err(Error::PreconditionFailed);
    }
    if let Some(tags) = req.header("if-none-match")
        && etag_listed(tags, &o.etag)
    {
        return Err(Error::NotModified);
    }
    let size = o.data.len() as u64;
    let (status, range) = match req.header("range").and_then(|r| byte_range(r, size)) {
        None => (200, 0..size),
        Some(Ok(r)) => (206, r),
        Some(Err(e)) => return Err(e),
    };
    let mut resp = object_headers(status, &o)
        .header("accept-ranges", "bytes")
        .header("content-length", range.end - range.start);
    if status == 206 {
        let content_range = format!("bytes {}-{}/{size}", range.start, range.end - 1);
        resp = resp.header("content-range", content_range);
    }
    let body = match req.method {
        Method::HEAD => Body::empty(),
        _ => Body::from(o.data.slice(range.start as usize..range.end as usize)),
    };
    Ok(resp.body(body).unwrap())
}

/// Whether an `If-Match` / `If-None-Match` value names `etag` (or is `*`).
fn etag_listed(tags: &str, etag: &str) -> bool {
    tags.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t.trim_matches('"') == etag.trim_matches('"'))
}

/// A single `bytes=` range of an object of `size` bytes: `None` to serve
/// the whole object (no range, or one this server does not parse, which
/// HTTP says to ignore), `Err` when it starts past the end.
fn byte_range(spec: &str, size: u64) -> Option<Result<std::ops::Range<u64>, Error>> {
    let (first, last) = spec.trim().strip_prefix("bytes=")?.split_once('-')?;
    if first.contains(',') || last.contains(',') {
        return None;
    }
    let range = match (first.trim(), last.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            size.saturating_sub(n)..size
        }
        (a, "") => a.parse().ok()?..size,
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if b < a {
                return None;
            }
            a..(b + 1).min(size)
        }
    };
    if range.start >= size || range.is_empty() {
        return Some(Err(Error::InvalidRange(size)));
    }
    Some(Ok(range))
}

fn list(store: &Store, req: &Request) -> Result<Response<Body>, Error> {
    let q = |k: &str| req.query.get(k).map(String::as_str);
    if q("list-type") != Some("2") {
        return Err(Error::NotImplemented(
            "this test server lists only with list-type=2".into(),
        ));
    }
    let prefix = q("prefix").unwrap_or_default();
    let delimiter = q("delimiter").filter(|d| !d.is_empty());
    let max = match q("max-keys") {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| Error::InvalidArgument(format!("max-keys {m:?} is not a number")))?
            .min(MAX_PAGE),
        None => store.list_page,
    };
    let token = q("continuation-token").map(xml::read_token).transpose()?;
    let (after, skip) = match &token {
        Some(After::Name(n)) => (Some(n.as_str()), None),
        Some(After::Prefix(p)) => (Some(p.as_str()), Some(p.as_str())),
        None => (q("start-after"), None),
    };
    let page = store.list(&req.bucket, (prefix, delimiter), (after, skip), max)?;
    let body = xml::list_result(&req.bucket, (prefix, delimiter), max, &page);
    Ok(xml::response(Response::builder().status(200), body))
}

/// The headers of the answer to a write: the new object's ETag,
/// generation, metageneration and hash.
fn written(status: u16, o: &Object) -> axum::http::response::Builder {
    let mut b = Response::builder()
        .status(status)
        .header("etag", &o.etag)
        .header("x-goog-generation", o.generation)
        .header("x-goog-metageneration", o.metageneration)
        .header("x-goog-stored-content-length", o.data.len());
    if let Some(md5) = o.md5 {
        b = b.header("x-goog-hash", format!("md5={}", B64.encode(md5)));
    }
    if let Some(n) = o.components {
        b = b.header("x-goog-component-count", n);
    }
    b
}

/// The headers of an object served (GET, HEAD): those of a write, the
/// last modification time, and the headers the object keeps.
fn object_headers(status: u16, o: &Object) -> axum::http::response::Builder {
    let last_modified = o.updated.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let mut b = written(status, o)
        .header("last-modified", last_modified)
        .header("x-goog-stored-content-encoding", "identity");
    if !o.meta.iter().any(|(n, _)| n == "x-goog-storage-class") {
        b = b.header("x-goog-storage-class", "STANDARD");
    }
    for (name, value) in &o.meta {
        b = b.header(name.as_str(), value.as_str());
    }
    b
}
