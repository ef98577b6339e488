//! PostgreSQL notices (`NOTICE: truncate cascades to table "orders"`, ...)
//! collected during an export or import and summarised at the end, one
//! line per kind, instead of one log line each.
//!
//! tokio-postgres logs every notice at `info` when its `Connection` is
//! driven as a plain future; [`connect_collecting`] drives it with
//! `poll_message` instead, so each notice goes to a [`NoticeLog`] (and to
//! `debug` logging) and [`summarize`] groups them (pure).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_postgres::{AsyncMessage, Client};

use super::export::ConnectError;
use crate::task::lock_or_recover;

/// Examples kept per kind.
const EXAMPLES: usize = 3;

/// Notices received on any of the connections sharing this log.
#[derive(Clone, Debug, Default)]
pub struct NoticeLog {
    /// (severity, message) in arrival order; each push is whole, so the
    /// list stays valid after a panic elsewhere.
    notices: Arc<Mutex<Vec<(String, String)>>>,
}

impl NoticeLog {
    /// Records one notice.
    pub fn push(&self, severity: &str, message: &str) {
        tracing::debug!("PostgreSQL {severity}: {message}");
        lock_or_recover(&self.notices).push((severity.to_string(), message.to_string()));
    }

    /// The notices so far, one summary per kind.
    pub fn summary(&self) -> Vec<NoticeSummary> {
        summarize(&lock_or_recover(&self.notices))
    }
}

/// Notices of one kind: same severity, same message once quoted names are
/// taken out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NoticeSummary {
    /// `NOTICE`, `WARNING`, ...
    pub severity: String,
    /// The message with every `"quoted name"` replaced by `…`.
    pub kind: String,
    pub count: u64,
    /// The first few distinct names (or whole messages when they quote none).
    pub examples: Vec<String>,
}

impl std::fmt::Display for NoticeSummary {
    /// `PostgreSQL notices: 37 × truncate cascades to table … (e.g. "a", "b", "c")`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity.as_str() {
            "NOTICE" => "notices".to_string(),
            "WARNING" => "warnings".to_string(),
            s => s.to_ascii_lowercase(),
        };
        write!(f, "PostgreSQL {what}: {} × {}", self.count, self.kind)?;
        if !self.examples.is_empty() && self.kind.contains('…') {
            let shown: Vec<String> = self.examples.iter().map(|e| format!("{e:?}")).collect();
            let more = if self.count as usize > self.examples.len() {
                ", ..."
            } else {
                ""
            };
            write!(f, " (e.g. {}{more})", shown.join(", "))?;
        }
        Ok(())
    }
}

/// A message's kind (quoted names replaced by `…`) and its quoted names.
fn kind_of(message: &str) -> (String, Vec<String>) {
    let mut kind = String::new();
    let mut names = vec![];
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        let Some(len) = rest[open + 1..].find('"') else {
            break;
        };
        kind.push_str(&rest[..open]);
        kind.push('…');
        names.push(rest[open + 1..open + 1 + len].to_string());
        rest = &rest[open + 2 + len..];
    }
    kind.push_str(rest);
    (kind, names)
}

/// Groups notices by severity and kind, in order of first arrival.
pub fn summarize(notices: &[(String, String)]) -> Vec<NoticeSummary> {
    let mut order: Vec<(String, String)> = vec![];
    let mut by_kind: BTreeMap<(String, String), NoticeSummary> = BTreeMap::new();
    for (severity, message) in notices {
        let (kind, names) = kind_of(message);
        let key = (severity.clone(), kind.clone());
        let s = by_kind.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            NoticeSummary {
                severity: severity.clone(),
                kind,
                count: 0,
                examples: vec![],
            }
        });
        s.count += 1;
        let example = if names.is_empty() {
            message.clone()
        } else {
            names.join(".")
        };
        if s.examples.len() < EXAMPLES && !s.examples.contains(&example) {
            s.examples.push(example);
        }
    }
    order
        .into_iter()
        .filter_map(|k| by_kind.remove(&k))
        .collect()
}

/// Connects like [`super::export::connect`], but the connection's notices
/// go to `log` instead of the `info` log.
pub async fn connect_collecting(url: &str, log: &NoticeLog) -> Result<Client, ConnectError> {
    let (conn_str, tls) = super::tls::prepare(url)?;
    let (client, mut conn) = tokio_postgres::connect(&conn_str, tls).await?;
    let log = log.clone();
    tokio::spawn(async move {
        let ended = futures::future::poll_fn(|cx| {
            loop {
                match conn.poll_message(cx) {
                    std::task::Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                        log.push(n.severity(), n.message())
                    }
                    std::task::Poll::Ready(Some(Ok(_))) => {}
                    std::task::Poll::Ready(Some(Err(e))) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(())),
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                }
            }
        })
        .await;
        if let Err(e) = ended {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(sev: &str, msg: &str) -> (String, String) {
        (sev.into(), msg.into())
    }

    #[test]
    fn one_line_per_kind_with_a_few_examples() {
        let mut all = vec![];
        for t in ["orders", "items", "items", "lines", "notes"] {
            all.push(n("NOTICE", &format!("truncate cascades to table \"{t}\"")));
        }
        all.push(n(
            "NOTICE",
            "drop cascades to constraint \"c_fk\" on table \"c\"",
        ));
        all.push(n("WARNING", "there is no transaction in progress"));
        all.push(n("WARNING", "there is no transaction in progress"));
        let s = summarize(&all);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].kind, "truncate cascades to table …");
        assert_eq!(s[0].count, 5);
        assert_eq!(s[0].examples, ["orders", "items", "lines"]);
        assert_eq!(
            s[0].to_string(),
            "PostgreSQL notices: 5 × truncate cascades to table … (e.g. \"orders\", \"items\", \"lines\", ...)"
        );
        assert_eq!(s[1].kind, "drop cascades to constraint … on table …");
        assert_eq!(s[1].examples, ["c_fk.c"]);
        assert_eq!(
            s[1].to_string(),
            "PostgreSQL notices: 1 × drop cascades to constraint … on table … (e.g. \"c_fk.c\")"
        );
        assert_eq!(
            s[2].to_string(),
            "PostgreSQL warnings: 2 × there is no transaction in progress"
        );
    }

    #[test]
    fn kinds_ignore_only_quoted_names() {
        assert_eq!(
            kind_of("relation \"a b\" already exists, skipping"),
            (
                "relation … already exists, skipping".to_string(),
                vec!["a b".to_string()]
            )
        );
        // An unbalanced quote is kept as it is.
        assert_eq!(kind_of("odd \"x").0, "odd \"x");
        assert!(summarize(&[]).is_empty());
    }
}
