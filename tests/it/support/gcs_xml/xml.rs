//! The XML bodies of the API: listings, continuation tokens, the parts
//! of a `CompleteMultipartUpload`, errors.

use axum::body::Body;
use axum::http::Response;
use axum::http::response::Builder;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::store::{After, Error, Object, Page};

/// The `ListBucketResult` of one page.
pub fn list_result(
    bucket: &str,
    (prefix, delimiter): (&str, Option<&str>),
    max: usize,
    page: &Page,
) -> String {
    let mut body = format!(
        "<ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{max}</MaxKeys>",
        esc(bucket),
        esc(prefix)
    );
    if let Some(d) = delimiter {
        body += &format!("<Delimiter>{}</Delimiter>", esc(d));
    }
    body += &format!("<IsTruncated>{}</IsTruncated>", page.next.is_some());
    for (key, o) in &page.objects {
        body += &format!(
            "<Contents><Key>{}</Key><Generation>{}</Generation><MetaGeneration>{}</MetaGeneration><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
            esc(key),
            o.generation,
            o.metageneration,
            iso(o),
            esc(&o.etag),
            o.data.len()
        );
    }
    for p in &page.prefixes {
        body += &format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            esc(p)
        );
    }
    body += &format!(
        "<KeyCount>{}</KeyCount>",
        page.objects.len() + page.prefixes.len()
    );
    if let Some(next) = &page.next {
        body += &format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            write_token(next)
        );
    }
    body += "</ListBucketResult>";
    body
}

/// Continuation tokens are opaque to clients (GCS encodes a name and a
/// generation): here the base64 of `n:NAME` or `p:PREFIX`.
pub fn write_token(after: &After) -> String {
    B64.encode(match after {
        After::Name(n) => format!("n:{n}"),
        After::Prefix(p) => format!("p:{p}"),
    })
}

/// The place a [`write_token`] token names.
pub fn read_token(token: &str) -> Result<After, Error> {
    let bad = || Error::InvalidArgument(format!("continuation-token {token:?} is not one of ours"));
    let text = String::from_utf8(B64.decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    match text.split_once(':') {
        Some(("n", n)) => Ok(After::Name(n.into())),
        Some(("p", p)) => Ok(After::Prefix(p.into())),
        _ => Err(bad()),
    }
}

/// The `(PartNumber, ETag)` pairs of a `CompleteMultipartUpload` body, in
/// the order listed.
pub fn parts_listed(body: &str) -> Result<Vec<(u32, String)>, Error> {
    let bad = |why: &str| Error::InvalidArgument(format!("CompleteMultipartUpload body: {why}"));
    let inner = |part: &str, tag: &str| -> Result<String, Error> {
        let open = format!("<{tag}>");
        let start = part
            .find(&open)
            .ok_or_else(|| bad(&format!("a Part without {tag}")))?;
        let rest = &part[start + open.len()..];
        let end = rest
            .find(&format!("</{tag}>"))
            .ok_or_else(|| bad("unclosed element"))?;
        Ok(unesc(rest[..end].trim()))
    };
    let mut parts = Vec::new();
    for chunk in body.split("<Part>").skip(1) {
        let part = chunk.split("</Part>").next().unwrap_or_default();
        let number = inner(part, "PartNumber")?;
        let number = number
            .parse()
            .map_err(|_| bad("PartNumber is not a number"))?;
        parts.push((number, inner(part, "ETag")?));
    }
    Ok(parts)
}

/// The answer for an error: GCS's XML error body (none for 304), and for
/// 416 the object's size in `Content-Range`.
pub fn error(e: &Error) -> Response<Body> {
    let mut b = Response::builder().status(e.status());
    if let Error::InvalidRange(size) = e {
        b = b.header("content-range", format!("bytes */{size}"));
    }
    if e.status() == 304 {
        return b.body(Body::empty()).unwrap();
    }
    let body = format!(
        "<Error><Code>{}</Code><Message>{}</Message></Error>",
        e.code(),
        esc(&e.message())
    );
    response(b, body)
}

/// An XML answer with the XML declaration GCS sends.
pub fn response(b: Builder, body: String) -> Response<Body> {
    b.header("content-type", "application/xml; charset=UTF-8")
        .body(Body::from(format!(
            "<?xml version='1.0' encoding='UTF-8'?>{body}"
        )))
        .unwrap()
}

/// An object's time as listings and copy results write it (RFC 3339, in
/// milliseconds).
pub fn iso(o: &Object) -> String {
    o.updated.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Escapes text for an XML element.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unesc(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
