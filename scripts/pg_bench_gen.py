#!/usr/bin/env python3
"""Deterministic generator of the PostgreSQL export benchmark database.

Four tables with indexes and foreign keys, in the shapes real SQLite apps
have: ISO-8601 text timestamps, epoch seconds and epoch milliseconds in
DATETIME columns, 0/1 booleans, JSON text, UUIDs as char(32) (Django), a
DECIMAL, blobs, an AUTOINCREMENT key and plain INTEGER PRIMARY KEYs.

    python3 scripts/pg_bench_gen.py OUT.db [--scale 1.0]

Scale 1.0 is 2,000,000 rows and about 200 MB. Same arguments, same bytes of
content (the generator is seeded).
"""

import argparse
import json
import os
import random
import sqlite3

SCHEMA = """
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
"""

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
STATUSES = ["new", "paid", "shipped", "delivered", "cancelled"]
KINDS = ["login", "view", "click", "purchase", "logout"]
T0 = 1_600_000_000  # 2020-09-13


def iso(ts, rnd):
    import time
    t = time.gmtime(ts)
    frac = "" if rnd.random() < 0.5 else ".%06d" % rnd.randrange(1_000_000)
    return "%04d-%02d-%02d %02d:%02d:%02d%s" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, frac)


def words(rnd, n):
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    if os.path.exists(a.out):
        os.remove(a.out)
    n_users = int(100_000 * a.scale)
    n_orders = int(400_000 * a.scale)
    n_items = int(1_200_000 * a.scale)
    n_events = int(300_000 * a.scale)
    rnd = random.Random(20261128)
    db = sqlite3.connect(a.out)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)

    def users():
        for i in range(1, n_users + 1):
            created = T0 + rnd.randrange(60_000_000)
            yield (
                i,
                "user%d@%s.example" % (i, rnd.choice(WORDS)),
                words(rnd, 2).title(),
                1 if rnd.random() < 0.8 else 0,
                iso(created, rnd),
                None if rnd.random() < 0.1 else created + rnd.randrange(1_000_000),
                json.dumps({"lang": rnd.choice(["en", "fr", "de"]), "tags": [rnd.choice(WORDS) for _ in range(3)],
                            "score": rnd.randrange(1000) / 10}),
                "%032x" % rnd.getrandbits(128),
            )

    db.executemany("INSERT INTO users VALUES (?,?,?,?,?,?,?,?)", users())
    # Deleted users: AUTOINCREMENT's high-water mark stays above max(id).
    db.execute("DELETE FROM users WHERE id > ?", (n_users - 5,))

    def orders():
        for i in range(1, n_orders + 1):
            yield (
                i,
                1 + rnd.randrange(n_users - 5),
                rnd.randrange(100, 10_000_000) / 100,
                rnd.choice(STATUSES),
                (T0 + rnd.randrange(60_000_000)) * 1000 + rnd.randrange(1000),
                None if rnd.random() < 0.3 else words(rnd, rnd.randrange(3, 10)),
            )

    db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?)", orders())

    def items():
        for i in range(1, n_items + 1):
            yield (
                i,
                1 + rnd.randrange(n_orders),
                "SKU-%06d-%s" % (rnd.randrange(1_000_000), rnd.choice(WORDS)),
                1 + rnd.randrange(5),
                rnd.randrange(100, 100_000) / 100,
                1 if rnd.random() < 0.05 else 0,
                None if rnd.random() < 0.5 else rnd.randbytes(rnd.randrange(16, 64)),
            )

    db.executemany("INSERT INTO order_items VALUES (?,?,?,?,?,?,?)", items())

    def events():
        for i in range(1, n_events + 1):
            yield (
                i,
                None if rnd.random() < 0.05 else 1 + rnd.randrange(n_users - 5),
                rnd.choice(KINDS),
                json.dumps({"path": "/" + "/".join(rnd.choice(WORDS) for _ in range(3)),
                            "ms": rnd.randrange(5000), "ok": rnd.random() < 0.9,
                            "ua": words(rnd, rnd.randrange(5, 15))}),
                iso(T0 + rnd.randrange(60_000_000), rnd),
            )

    db.executemany("INSERT INTO events VALUES (?,?,?,?,?)", events())
    db.commit()
    db.execute("VACUUM")
    db.close()
    rows = n_users - 5 + n_orders + n_items + n_events
    print("%s: %d rows, %.1f MB" % (a.out, rows, os.path.getsize(a.out) / 1e6))


if __name__ == "__main__":
    main()
