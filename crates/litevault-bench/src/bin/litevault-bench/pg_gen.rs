//! `litevault-bench pg-gen`: the deterministic database of the PostgreSQL
//! export benchmark (`scripts/pg_bench.py`).
//!
//! Four tables with indexes and foreign keys, in the shapes real SQLite apps
//! have: ISO-8601 text timestamps, epoch seconds and epoch milliseconds in
//! DATETIME columns, 0/1 booleans, JSON text, UUIDs as char(32) (Django), a
//! DECIMAL, blobs, an AUTOINCREMENT key and plain INTEGER PRIMARY KEYs.
//! Scale 1.0 is 2,000,000 rows and about 200 MB. The rows come from
//! Python's Mersenne Twister seeded with 20261128 ([`PyRandom`]), drawn in
//! the order the Python generator drew them, so the content is the one the
//! figures of BENCHMARKS.md were measured on. The row makers are pure; [`main`]
//! writes them.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rusqlite::types::Value;

use crate::pyrandom::PyRandom;

const SCHEMA: &str = "
CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email VARCHAR(120) NOT NULL UNIQUE,
  name TEXT NOT NULL,
  is_active BOOLEAN NOT NULL DEFAULT 1,
  created_at DATETIME NOT NULL,
  last_login DATETIME,
  profile JSON,
  uid CHAR(32) NOT NULL,
  CHECK (length(email) > 3)
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id),
  total DECIMAL(12,2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  created_ms DATETIME NOT NULL,
  note TEXT
);
CREATE INDEX orders_user ON orders(user_id);
CREATE INDEX orders_created ON orders(created_ms);
CREATE TABLE order_items (
  id INTEGER PRIMARY KEY,
  order_id INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  sku TEXT NOT NULL,
  qty INTEGER NOT NULL,
  price REAL NOT NULL,
  gift BOOLEAN NOT NULL DEFAULT 0,
  thumb BLOB
);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  user_id INTEGER REFERENCES users(id),
  kind TEXT NOT NULL,
  payload JSON NOT NULL,
  at DATETIME NOT NULL
);
CREATE INDEX events_user_at ON events(user_id, at);
";

const WORDS: [&str; 26] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];
const STATUSES: [&str; 5] = ["new", "paid", "shipped", "delivered", "cancelled"];
const KINDS: [&str; 5] = ["login", "view", "click", "purchase", "logout"];
const LANGS: [&str; 3] = ["en", "fr", "de"];
/// 2020-09-13.
const T0: i64 = 1_600_000_000;
const SEED: u32 = 20_261_128;

/// The export benchmark's database.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The database to write (replaced if it exists).
    out: PathBuf,
    /// 1.0: 2,000,000 rows, about 200 MB.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

/// Rows per table at `scale` (users, orders, order items, events).
pub fn counts(scale: f64) -> [u64; 4] {
    [100_000.0, 400_000.0, 1_200_000.0, 300_000.0].map(|n: f64| (n * scale) as u64)
}

/// A float as Python's `repr` writes it (`5.0`, not `5`).
fn py_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// `"alpha Bravo"`-style: `n` random words joined by spaces.
fn words(r: &mut PyRandom, n: u64) -> String {
    (0..n)
        .map(|_| *r.choice(&WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str.title()` of lower-case ASCII words.
fn title(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `YYYY-MM-DD HH:MM:SS`, half of them with microseconds.
fn iso(ts: i64, r: &mut PyRandom) -> String {
    let t = chrono::DateTime::from_timestamp(ts, 0).expect("timestamps of 2020-2022");
    let frac = if r.random() < 0.5 {
        String::new()
    } else {
        format!(".{:06}", r.randrange(1_000_000))
    };
    format!("{}{frac}", t.format("%Y-%m-%d %H:%M:%S"))
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn int(v: u64) -> Value {
    Value::Integer(v as i64)
}

pub fn user(r: &mut PyRandom, i: u64) -> Vec<Value> {
    let created = T0 + r.randrange(60_000_000) as i64;
    let email = format!("user{i}@{}.example", r.choice(&WORDS));
    let name = title(&words(r, 2));
    let active = int(u64::from(r.random() < 0.8));
    let created_at = iso(created, r);
    let last_login = if r.random() < 0.1 {
        Value::Null
    } else {
        Value::Integer(created + r.randrange(1_000_000) as i64)
    };
    let lang = r.choice(&LANGS);
    let tags: Vec<String> = (0..3)
        .map(|_| format!("\"{}\"", r.choice(&WORDS)))
        .collect();
    let score = py_float(r.randrange(1000) as f64 / 10.0);
    let profile = format!(
        "{{\"lang\": \"{lang}\", \"tags\": [{}], \"score\": {score}}}",
        tags.join(", ")
    );
    let uid = format!("{:032x}", r.getrandbits(128));
    vec![
        int(i),
        text(email),
        text(name),
        active,
        text(created_at),
        last_login,
        text(profile),
        text(uid),
    ]
}

pub fn order(r: &mut PyRandom, i: u64, users: u64) -> Vec<Value> {
    let user = 1 + r.randrange(users - 5);
    let total = r.randrange_from(100, 10_000_000) as f64 / 100.0;
    let status = r.choice(&STATUSES);
    let created_ms = (T0 + r.randrange(60_000_000) as i64) * 1000 + r.randrange(1000) as i64;
    let note = if r.random() < 0.3 {
        Value::Null
    } else {
        let n = r.randrange_from(3, 10);
        text(words(r, n))
    };
    vec![
        int(i),
        int(user),
        Value::Real(total),
        text(*status),
        Value::Integer(created_ms),
        note,
    ]
}

pub fn item(r: &mut PyRandom, i: u64, orders: u64) -> Vec<Value> {
    let order = 1 + r.randrange(orders);
    let sku = format!("SKU-{:06}-{}", r.randrange(1_000_000), r.choice(&WORDS));
    let qty = 1 + r.randrange(5);
    let price = r.randrange_from(100, 100_000) as f64 / 100.0;
    let gift = u64::from(r.random() < 0.05);
    let thumb = if r.random() < 0.5 {
        Value::Null
    } else {
        let n = r.randrange_from(16, 64) as usize;
        Value::Blob(r.randbytes(n))
    };
    vec![
        int(i),
        int(order),
        text(sku),
        int(qty),
        Value::Real(price),
        int(gift),
        thumb,
    ]
}

pub fn event(r: &mut PyRandom, i: u64, users: u64) -> Vec<Value> {
    let user = if r.random() < 0.05 {
        Value::Null
    } else {
        int(1 + r.randrange(users - 5))
    };
    let kind = r.choice(&KINDS);
    let path: Vec<&str> = (0..3).map(|_| *r.choice(&WORDS)).collect();
    let ms = r.randrange(5000);
    let ok = r.random() < 0.9;
    let n = r.randrange_from(5, 15);
    let ua = words(r, n);
    let payload = format!(
        "{{\"path\": \"/{}\", \"ms\": {ms}, \"ok\": {ok}, \"ua\": \"{ua}\"}}",
        path.join("/")
    );
    let at = iso(T0 + r.randrange(60_000_000) as i64, r);
    vec![int(i), user, text(*kind), text(payload), text(at)]
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let [users, orders, items, events] = counts(args.scale);
    if users <= 5 || orders == 0 {
        bail!(
            "--scale {}: too small (at least 6 users and 1 order)",
            args.scale
        );
    }
    if args.out.exists() {
        std::fs::remove_file(&args.out)
            .with_context(|| format!("removing {}", args.out.display()))?;
    }
    let mut db = rusqlite::Connection::open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    db.execute_batch(&format!(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;{SCHEMA}"
    ))?;
    let mut r = PyRandom::new(SEED);
    let tx = db.transaction()?;
    {
        let mut insert = |sql: &str,
                          n: u64,
                          row: &mut dyn FnMut(&mut PyRandom, u64) -> Vec<Value>|
         -> anyhow::Result<()> {
            let mut stmt = tx.prepare(sql)?;
            for i in 1..=n {
                stmt.execute(rusqlite::params_from_iter(row(&mut r, i)))?;
            }
            Ok(())
        };
        insert(
            "INSERT INTO users VALUES (?,?,?,?,?,?,?,?)",
            users,
            &mut user,
        )?;
        // Deleted users: AUTOINCREMENT's high-water mark stays above max(id).
        tx.execute("DELETE FROM users WHERE id > ?1", [(users - 5) as i64])?;
        insert(
            "INSERT INTO orders VALUES (?,?,?,?,?,?)",
            orders,
            &mut |r, i| order(r, i, users),
        )?;
        insert(
            "INSERT INTO order_items VALUES (?,?,?,?,?,?,?)",
            items,
            &mut |r, i| item(r, i, orders),
        )?;
        insert(
            "INSERT INTO events VALUES (?,?,?,?,?)",
            events,
            &mut |r, i| event(r, i, users),
        )?;
    }
    tx.commit()?;
    db.execute_batch("VACUUM")?;
    drop(db);
    let rows = users - 5 + orders + items + events;
    let size = std::fs::metadata(&args.out)?.len();
    println!(
        "{}: {rows} rows, {:.1} MB",
        args.out.display(),
        size as f64 / 1e6
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_spellings() {
        assert_eq!(py_float(5.0), "5.0");
        assert_eq!(py_float(99.9), "99.9");
        assert_eq!(title("alpha xray"), "Alpha Xray");
        assert_eq!(counts(1.0), [100_000, 400_000, 1_200_000, 300_000]);
        assert_eq!(counts(0.01), [1000, 4000, 12000, 3000]);
    }

    #[test]
    fn the_first_user_is_the_one_python_made() {
        // The first row of `python3 pg_bench_gen.py` (seed 20261128).
        let mut r = PyRandom::new(SEED);
        let row = user(&mut r, 1);
        let shown: Vec<String> = row
            .iter()
            .map(|v| match v {
                Value::Null => "None".into(),
                Value::Integer(i) => i.to_string(),
                Value::Text(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shown.join(" | "), FIRST_USER);
    }

    const FIRST_USER: &str = "1 | user1@delta.example | Xray Yankee | 1 | 2021-09-06 12:52:36 | \
        1631310144 | {\"lang\": \"de\", \"tags\": [\"whiskey\", \"bravo\", \"hotel\"], \"score\": 76.2} | \
        e2e90528a4e0689e1888df205bd0f521";
}
