//! Secrets kept out of messages and logs.

use std::fmt;

/// A URL with its password replaced by `***` (a PostgreSQL URL in an error
/// message, a `--postgres` flag in a report); anything that does not parse
/// as a URL is returned as it is.
///
/// ```
/// use litevault::redact::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
/// assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
/// ```
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Query parameters of a replica URL whose values are secrets.
pub const SECRET_QUERY_PARAMETERS: [&str; 2] = ["sse-customer-key", "sseCustomerKey"];

/// A replica URL with the values of its secret query parameters (the SSE-C
/// key) replaced by `***`, for messages; anything else is returned as it is.
///
/// ```
/// use litevault::redact::redact_query;
/// assert_eq!(
///     redact_query("s3://b/p?region=x&sse-customer-key=c2VjcmV0&a=b"),
///     "s3://b/p?region=x&sse-customer-key=***&a=b"
/// );
/// ```
pub fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SECRET_QUERY_PARAMETERS.contains(&k) => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// A secret (secret access key, account key, SSE-C key). Its `Debug` and `Display`
/// print `<redacted>`; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}
