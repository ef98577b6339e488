//! PostgreSQL as a backend: the same tables in a schema of their own
//! (`litevault_bench_<backend id>`), loaded with COPY, constraints and
//! indexes built after the rows, then `VACUUM ANALYZE`. Each session is its
//! own connection with every statement prepared once.

use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::{Client, Statement};

use super::backend::{Backend, Setup};
use super::results::{BackendInfo, LoadInfo};
use super::run::BenchError;
use super::workload::{
    Conversation, ConversationSummary, DatasetSpec, Message, NewMessage, Session, User,
};
use litevault::pg::export::{connect, pg_message};

/// PostgreSQL reached by a connection URL (TLS per `sslmode`).
pub struct PgBackend {
    info: BackendInfo,
    url: String,
    loaded: bool,
}

impl PgBackend {
    /// A backend over the database at `url`
    /// (`postgres://user:password@127.0.0.1:5432/db`). It creates, fills and
    /// finally drops the schema `litevault_bench_<id>`; nothing else is
    /// touched.
    pub fn new(url: &str) -> PgBackend {
        PgBackend {
            info: BackendInfo {
                id: "postgres".into(),
                label: "PostgreSQL".into(),
                description: "PostgreSQL, one connection per worker, statements prepared".into(),
                location: redact(url),
                notes: Vec::new(),
            },
            url: url.to_string(),
            loaded: false,
        }
    }

    /// Replaces the id, label and description in the report (the schema
    /// name follows the id).
    pub fn named(mut self, id: &str, label: &str, description: &str) -> Self {
        self.info.id = id.into();
        self.info.label = label.into();
        self.info.description = description.into();
        self
    }

    /// The schema holding this backend's tables.
    pub fn schema(&self) -> String {
        let id: String = self
            .info
            .id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("litevault_bench_{id}")
    }

    async fn client(&self) -> Result<Client, BenchError> {
        connect(&self.url).await.map_err(|e| BenchError::Setup {
            backend: self.info.id.clone(),
            reason: format!(
                "cannot connect to {}: {e}; check that PostgreSQL runs there and the URL's user, password and database",
                self.info.location
            ),
        })
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> BenchError {
    let what = what.into();
    move |e| BenchError::Postgres {
        what,
        message: pg_message(&e),
    }
}

/// COPY text format: escape backslash, tab, newline, carriage return.
fn copy_text(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Streams rows into `COPY <table> FROM STDIN` in chunks of about 1 MiB.
async fn copy_rows(
    client: &Client,
    table: &str,
    rows: u64,
    mut row: impl FnMut(i64, &mut String),
) -> Result<(), BenchError> {
    let what = format!("COPY into {table}");
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .map_err(pg(what.clone()))?;
    futures::pin_mut!(sink);
    let mut buf = String::with_capacity(1 << 20);
    for id in 1..=rows as i64 {
        row(id, &mut buf);
        if buf.len() >= 1 << 20 {
            let chunk = Bytes::from(std::mem::take(&mut buf));
            sink.send(chunk).await.map_err(pg(what.clone()))?;
            buf.reserve(1 << 20);
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf))
            .await
            .map_err(pg(what.clone()))?;
    }
    sink.finish().await.map_err(pg(what))?;
    Ok(())
}

async fn load_dataset(client: &Client, s: &str, spec: &DatasetSpec) -> Result<(), BenchError> {
    use std::fmt::Write;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE;
             CREATE SCHEMA {s};
             CREATE TABLE {s}.users(id bigint NOT NULL, name text NOT NULL, email text NOT NULL,
                 avatar_url text NOT NULL, created_at bigint NOT NULL);
             CREATE TABLE {s}.conversations(id bigint NOT NULL, owner_id bigint NOT NULL,
                 title text NOT NULL, created_at bigint NOT NULL);
             CREATE TABLE {s}.participants(conversation_id bigint NOT NULL, user_id bigint NOT NULL);
             CREATE TABLE {s}.messages(id bigint GENERATED BY DEFAULT AS IDENTITY,
                 conversation_id bigint NOT NULL, author_id bigint NOT NULL, body text NOT NULL,
                 created_at bigint NOT NULL);"
        ))
        .await
        .map_err(pg("creating the schema"))?;
    // No transaction around the load: the schema is new, and a failed load
    // is dropped by the next one.
    let tx = client;
    copy_rows(tx, &format!("{s}.users"), spec.users, |id, b| {
        let u = spec.user(id);
        let _ = write!(b, "{}\t", u.id);
        copy_text(b, &u.name);
        b.push('\t');
        copy_text(b, &u.email);
        b.push('\t');
        copy_text(b, &u.avatar_url);
        let _ = writeln!(b, "\t{}", u.created_at);
    })
    .await?;
    copy_rows(
        tx,
        &format!("{s}.conversations"),
        spec.conversations,
        |id, b| {
            let c = spec.conversation(id);
            let _ = write!(b, "{}\t{}\t", c.id, c.owner_id);
            copy_text(b, &c.title);
            let _ = writeln!(b, "\t{}", c.created_at);
        },
    )
    .await?;
    copy_rows(
        tx,
        &format!("{s}.participants"),
        spec.conversations,
        |id, b| {
            for u in spec.participants(id) {
                let _ = writeln!(b, "{id}\t{u}");
            }
        },
    )
    .await?;
    copy_rows(tx, &format!("{s}.messages"), spec.messages, |id, b| {
        let m = spec.message(id);
        let _ = write!(b, "{}\t{}\t{}\t", m.id, m.conversation_id, m.author_id);
        copy_text(b, &m.body);
        let _ = writeln!(b, "\t{}", m.created_at);
    })
    .await?;
    tx.batch_execute(&format!(
        "ALTER TABLE {s}.users ADD PRIMARY KEY (id);
         ALTER TABLE {s}.conversations ADD PRIMARY KEY (id);
         ALTER TABLE {s}.participants ADD PRIMARY KEY (conversation_id, user_id);
         ALTER TABLE {s}.messages ADD PRIMARY KEY (id);
         CREATE INDEX conversations_owner ON {s}.conversations(owner_id, id);
         CREATE INDEX messages_conversation ON {s}.messages(conversation_id, id);
         ALTER TABLE {s}.conversations ADD FOREIGN KEY (owner_id) REFERENCES {s}.users(id);
         ALTER TABLE {s}.participants ADD FOREIGN KEY (conversation_id) REFERENCES {s}.conversations(id);
         ALTER TABLE {s}.participants ADD FOREIGN KEY (user_id) REFERENCES {s}.users(id);
         ALTER TABLE {s}.messages ADD FOREIGN KEY (conversation_id) REFERENCES {s}.conversations(id);
         ALTER TABLE {s}.messages ADD FOREIGN KEY (author_id) REFERENCES {s}.users(id);
         SELECT setval(pg_get_serial_sequence('{s}.messages', 'id'), (SELECT max(id) FROM {s}.messages));"
    ))
    .await
    .map_err(pg("building keys and indexes"))?;
    client
        .batch_execute(&format!(
            "VACUUM ANALYZE {s}.users, {s}.conversations, {s}.participants, {s}.messages"
        ))
        .await
        .map_err(pg("VACUUM ANALYZE"))?;
    Ok(())
}

#[async_trait]
impl Backend for PgBackend {
    fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    async fn load(&mut self, setup: &Setup) -> Result<LoadInfo, BenchError> {
        setup.dataset.validate()?;
        let start = Instant::now();
        let client = self.client().await?;
        let s = self.schema();
        self.loaded = false;
        load_dataset(&client, &s, &setup.dataset).await?;
        self.loaded = true;
        let data_bytes: i64 = client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                &[&s],
            )
            .await
            .map_err(pg("measuring the tables"))?
            .get(0);
        let row = client
            .query_one(
                "SELECT current_setting('shared_buffers'), \
                 pg_size_bytes(current_setting('shared_buffers'))::bigint, version()",
                &[],
            )
            .await
            .map_err(pg("reading shared_buffers"))?;
        let (shared, cache_bytes, version): (String, i64, String) =
            (row.get(0), row.get(1), row.get(2));
        self.info.notes = vec![format!(
            "{}; shared_buffers={shared}; schema {s}",
            version.split(" on ").next().unwrap_or(&version)
        )];
        Ok(LoadInfo {
            backend: self.info.id.clone(),
            dataset: setup.dataset.name.clone(),
            load_ms: start.elapsed().as_secs_f64() * 1000.0,
            data_bytes: Some(data_bytes as u64),
            cache_bytes: Some(cache_bytes as u64),
        })
    }

    async fn session(&self) -> Result<Box<dyn Session>, BenchError> {
        if !self.loaded {
            return Err(BenchError::NotLoaded {
                backend: self.info.id.clone(),
            });
        }
        let client = self.client().await?;
        Ok(Box::new(PgSession::prepare(client, &self.schema()).await?))
    }

    async fn close(&mut self) -> Result<(), BenchError> {
        if std::mem::take(&mut self.loaded) {
            let client = self.client().await?;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema()))
                .await
                .map_err(pg("dropping the benchmark schema"))?;
        }
        Ok(())
    }
}

/// One connection with the workload's statements prepared.
pub struct PgSession {
    client: Client,
    message: Statement,
    messages_from: Statement,
    user: Statement,
    conversation: Statement,
    participants: Statement,
    recent: Statement,
    count: Statement,
    conversations_of: Statement,
    insert: Statement,
}

impl PgSession {
    async fn prepare(client: Client, s: &str) -> Result<PgSession, BenchError> {
        let msg = "id, conversation_id, author_id, body, created_at";
        let p = |sql: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(pg(format!("preparing {sql}")))
            }
        };
        Ok(PgSession {
            message: p(format!("SELECT {msg} FROM {s}.messages WHERE id = $1")).await?,
            messages_from: p(format!(
                "SELECT {msg} FROM {s}.messages WHERE id >= $1 ORDER BY id LIMIT $2"
            ))
            .await?,
            user: p(format!(
                "SELECT id, name, email, avatar_url, created_at FROM {s}.users WHERE id = $1"
            ))
            .await?,
            conversation: p(format!(
                "SELECT id, owner_id, title, created_at FROM {s}.conversations WHERE id = $1"
            ))
            .await?,
            participants: p(format!(
                "SELECT user_id FROM {s}.participants WHERE conversation_id = $1 ORDER BY user_id"
            ))
            .await?,
            recent: p(format!(
                "SELECT {msg} FROM {s}.messages WHERE conversation_id = $1 ORDER BY id DESC LIMIT $2"
            ))
            .await?,
            count: p(format!(
                "SELECT count(*) FROM {s}.messages WHERE conversation_id = $1"
            ))
            .await?,
            conversations_of: p(format!(
                "SELECT id, title FROM {s}.conversations WHERE owner_id = $1 ORDER BY id DESC LIMIT $2"
            ))
            .await?,
            insert: p(format!(
                "INSERT INTO {s}.messages(conversation_id, author_id, body, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id"
            ))
            .await?,
            client,
        })
    }
}

fn message_row(r: &tokio_postgres::Row) -> Message {
    Message {
        id: r.get(0),
        conversation_id: r.get(1),
        author_id: r.get(2),
        body: r.get(3),
        created_at: r.get(4),
    }
}

fn q() -> impl FnOnce(tokio_postgres::Error) -> BenchError {
    pg("query")
}

#[async_trait]
impl Session for PgSession {
    async fn message(&mut self, id: i64) -> Result<Option<Message>, BenchError> {
        let row = self
            .client
            .query_opt(&self.message, &[&id])
            .await
            .map_err(q())?;
        Ok(row.as_ref().map(message_row))
    }

    async fn messages_from(
        &mut self,
        first_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>, BenchError> {
        let rows = self
            .client
            .query(&self.messages_from, &[&first_id, &(limit as i64)])
            .await
            .map_err(q())?;
        Ok(rows.iter().map(message_row).collect())
    }

    async fn user(&mut self, id: i64) -> Result<Option<User>, BenchError> {
        let row = self
            .client
            .query_opt(&self.user, &[&id])
            .await
            .map_err(q())?;
        Ok(row.map(|r| User {
            id: r.get(0),
            name: r.get(1),
            email: r.get(2),
            avatar_url: r.get(3),
            created_at: r.get(4),
        }))
    }

    async fn conversation(&mut self, id: i64) -> Result<Option<Conversation>, BenchError> {
        let row = self
            .client
            .query_opt(&self.conversation, &[&id])
            .await
            .map_err(q())?;
        Ok(row.map(|r| Conversation {
            id: r.get(0),
            owner_id: r.get(1),
            title: r.get(2),
            created_at: r.get(3),
        }))
    }

    async fn participants(&mut self, conversation_id: i64) -> Result<Vec<i64>, BenchError> {
        let rows = self
            .client
            .query(&self.participants, &[&conversation_id])
            .await
            .map_err(q())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn recent_messages(
        &mut self,
        conversation_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>, BenchError> {
        let rows = self
            .client
            .query(&self.recent, &[&conversation_id, &(limit as i64)])
            .await
            .map_err(q())?;
        Ok(rows.iter().map(message_row).collect())
    }

    async fn message_count(&mut self, conversation_id: i64) -> Result<i64, BenchError> {
        let row = self
            .client
            .query_one(&self.count, &[&conversation_id])
            .await
            .map_err(q())?;
        Ok(row.get(0))
    }

    async fn conversations_of(
        &mut self,
        owner_id: i64,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, BenchError> {
        let rows = self
            .client
            .query(&self.conversations_of, &[&owner_id, &(limit as i64)])
            .await
            .map_err(q())?;
        Ok(rows
            .iter()
            .map(|r| ConversationSummary {
                id: r.get(0),
                title: r.get(1),
            })
            .collect())
    }

    async fn insert_message(&mut self, m: &NewMessage) -> Result<i64, BenchError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg("insert transaction"))?;
        let row = tx
            .query_one(
                &self.insert,
                &[&m.conversation_id, &m.author_id, &m.body, &m.created_at],
            )
            .await
            .map_err(pg("insert transaction"))?;
        tx.commit().await.map_err(pg("insert transaction"))?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_the_format_characters() {
        let mut s = String::new();
        copy_text(&mut s, "a\\b\tc\nd\re");
        assert_eq!(s, "a\\\\b\\tc\\nd\\re");
    }

    #[test]
    fn passwords_are_not_reported() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1:5432/db"),
            "postgres://u:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("host=/tmp dbname=x"), "host=/tmp dbname=x");
    }

    #[test]
    fn schema_follows_the_id() {
        let b = PgBackend::new("postgres://127.0.0.1/x").named("pg-proxied", "x", "y");
        assert_eq!(b.schema(), "litevault_bench_pg_proxied");
    }
}
