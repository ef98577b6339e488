//! Secrets kept out of messages and logs.

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
