//! A small chat backend (conversations, messages, authors) as a JSON API on
//! SQLite, to show litevault in use and to measure it.
//!
//! ```text
//! CHAT_MODE=embedded CHAT_DB=/data/chat.db CHAT_REPLICA=file:///backups/chat \
//!     cargo run --release --example chat            # replicated in-process (Vault)
//! CHAT_MODE=plain CHAT_DB=/data/chat.db cargo run --release --example chat
//!     # plain SQLite: run it under `litevault replicate --exec` (sidecar) or alone
//! ```
//!
//! Routes: `GET /healthz`; `POST /users {"name"}`; `POST /conversations
//! {"title"}`; `POST /conversations/{id}/messages {"author", "body"}`
//! (`?durable=true`: returns once every replica has it, embedded mode);
//! `GET /conversations/{id}` (the conversation, its last 50 messages and
//! their authors: the queries of one page load).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use litevault::{Vault, VaultOptions};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS conversations(id INTEGER PRIMARY KEY, title TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    author_id INTEGER NOT NULL REFERENCES users(id), body TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
";

/// The database: replicated in-process, or plain (replicated by a sidecar,
/// or not at all).
enum Db {
    Embedded(Arc<Vault>),
    Plain(Mutex<Connection>),
}

type AppError = (StatusCode, String);

fn internal(e: impl std::fmt::Display) -> AppError {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl Db {
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        match self {
            Db::Embedded(v) if durable => v.transaction_durable(|tx| f(tx)).await.map_err(internal),
            Db::Embedded(v) => {
                let c = v.writer().await;
                f(&c).map_err(internal)
            }
            Db::Plain(c) => {
                let c = c.lock().await;
                f(&c).map_err(internal)
            }
        }
    }

    async fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, AppError> {
        match self {
            Db::Embedded(v) => {
                let c = v.reader().await;
                f(&c).map_err(internal)
            }
            Db::Plain(c) => {
                let c = c.lock().await;
                f(&c).map_err(internal)
            }
        }
    }
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
}

#[derive(Deserialize)]
struct NewConversation {
    title: String,
}

#[derive(Deserialize)]
struct NewMessage {
    author: String,
    body: String,
}

#[derive(Deserialize)]
struct Durability {
    #[serde(default)]
    durable: bool,
}

async fn new_user(
    State(db): State<Arc<Db>>,
    Json(u): Json<NewUser>,
) -> Result<Json<Value>, AppError> {
    let id = db
        .write(false, move |c| {
            c.execute(
                "INSERT INTO users(name) VALUES (?1) ON CONFLICT(name) DO NOTHING",
                [&u.name],
            )?;
            c.query_row("SELECT id FROM users WHERE name = ?1", [&u.name], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await?;
    Ok(Json(json!({ "id": id })))
}

async fn new_conversation(
    State(db): State<Arc<Db>>,
    Json(n): Json<NewConversation>,
) -> Result<Json<Value>, AppError> {
    let id = db
        .write(false, move |c| {
            c.execute("INSERT INTO conversations(title) VALUES (?1)", [&n.title])?;
            Ok(c.last_insert_rowid())
        })
        .await?;
    Ok(Json(json!({ "id": id })))
}

async fn new_message(
    State(db): State<Arc<Db>>,
    Path(id): Path<i64>,
    Query(d): Query<Durability>,
    Json(m): Json<NewMessage>,
) -> Result<Json<Value>, AppError> {
    let mid = db
        .write(d.durable, move |c| {
            c.execute(
                "INSERT INTO users(name) VALUES (?1) ON CONFLICT(name) DO NOTHING",
                [&m.author],
            )?;
            c.execute(
                "INSERT INTO messages(conversation_id, author_id, body)
                 SELECT ?1, id, ?3 FROM users WHERE name = ?2",
                params![id, m.author, m.body],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await?;
    Ok(Json(json!({ "id": mid })))
}

async fn conversation(
    State(db): State<Arc<Db>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AppError> {
    let page = db
        .read(move |c| {
            let Some((title, created)) = c
                .query_row(
                    "SELECT title, created_at FROM conversations WHERE id = ?1",
                    [id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached(
                "SELECT m.id, u.name, m.body, m.created_at FROM messages m
                 JOIN users u ON u.id = m.author_id
                 WHERE m.conversation_id = ?1 ORDER BY m.id DESC LIMIT 50",
            )?;
            let messages: Vec<Value> = stmt
                .query_map([id], |r| {
                    Ok(json!({
                        "id": r.get::<_, i64>(0)?,
                        "author": r.get::<_, String>(1)?,
                        "body": r.get::<_, String>(2)?,
                        "at": r.get::<_, String>(3)?,
                    }))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let count: i64 = c.query_row(
                "SELECT count(*) FROM messages WHERE conversation_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            Ok(Some(json!({
                "id": id, "title": title, "created_at": created,
                "message_count": count, "messages": messages,
            })))
        })
        .await?;
    page.map(Json)
        .ok_or((StatusCode::NOT_FOUND, format!("no conversation {id}")))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::var("CHAT_MODE").unwrap_or_else(|_| "plain".into());
    let path = std::env::var("CHAT_DB").unwrap_or_else(|_| "chat.db".into());
    let addr: SocketAddr = std::env::var("CHAT_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let db = match mode.as_str() {
        "embedded" => {
            let url = std::env::var("CHAT_REPLICA")
                .map_err(|_| "CHAT_MODE=embedded needs CHAT_REPLICA (a replica URL)")?;
            let vault = Vault::open(&path)
                .replicate_to(&url)?
                .options(VaultOptions::default())
                .start()
                .await?;
            vault.writer().await.execute_batch(SCHEMA)?;
            Db::Embedded(Arc::new(vault))
        }
        "plain" => {
            let c = Connection::open(&path)?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.execute_batch(SCHEMA)?;
            Db::Plain(Mutex::new(c))
        }
        other => return Err(format!("CHAT_MODE={other:?}: use embedded or plain").into()),
    };
    let db = Arc::new(db);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/users", post(new_user))
        .route("/conversations", post(new_conversation))
        .route("/conversations/{id}", get(conversation))
        .route("/conversations/{id}/messages", post(new_message))
        .with_state(db.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // The bound address: with port 0 (CHAT_ADDR=127.0.0.1:0) the one the
    // system picked, for whoever started the app to read.
    let addr = listener.local_addr()?;
    eprintln!("chat ({mode}) on http://{addr}, database {path}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("signal handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    if let Ok(db) = Arc::try_unwrap(db)
        && let Db::Embedded(v) = db
        && let Ok(v) = Arc::try_unwrap(v)
    {
        v.close().await?;
    }
    Ok(())
}
