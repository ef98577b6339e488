#!/usr/bin/env python3
"""SQLite -> PostgreSQL: litevault export vs pgloader vs COPY FROM pre-made CSV.

    python3 scripts/pg_bench.py [--db app.db] [--scale 1.0] [--jobs 2] [--repeat 3]

Generates the benchmark database with `litevault-bench pg-gen` (deterministic;
crates/litevault-bench) unless --db exists, starts a throwaway PostgreSQL
cluster on 127.0.0.1 (same settings for every tool), then loads the database
three ways into fresh databases, timing each end to end (tables, data, indexes, foreign keys):

  litevault  `litevault export DB URL --jobs N` (release build), verification included
  pgloader   `pgloader sqlite:///DB URL` with its defaults
  copy       the physical limit: litevault's DDL, then server-side
             `COPY ... FROM 'file.csv' (FORMAT csv)` of CSV files made beforehand
             (untimed) with the values already in PostgreSQL's input format,
             then the same indexes, constraints and foreign keys

and prints a markdown report: times, throughput, ratios, and a fidelity
table of what litevault and pgloader did with each column type, sequence and
constraint, checked against the SQLite source. pgloader is the Debian
package `pgloader` (apt-get install pgloader); it is not needed by the tests.
"""

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pg_bin():
    for v in ("17", "16", "15", "14", "13"):
        d = "/usr/lib/postgresql/%s/bin" % v
        if os.path.exists(d + "/initdb"):
            return d
    sys.exit("PostgreSQL server binaries not found: apt-get install postgresql")


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Cluster:
    def __init__(self):
        self.bin = pg_bin()
        self.dir = tempfile.mkdtemp(prefix="litevault-pgbench-")
        os.chmod(self.dir, 0o777)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        subprocess.run(as_pg([self.bin + "/initdb", "-D", self.data, "-N", "-A", "trust", "-U", "postgres",
                              "-E", "UTF8", "--locale=C"]), check=True, stdout=subprocess.DEVNULL)
        self.port = free_port()
        opts = ("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB "
                "-c maintenance_work_mem=256MB -c checkpoint_timeout=1h" % (self.port, self.dir))
        subprocess.run(as_pg([self.bin + "/pg_ctl", "-D", self.data, "-l", self.dir + "/log", "-o", opts,
                              "-w", "start"]), check=True, stdout=subprocess.DEVNULL)

    def url(self, db):
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def psql(self, db, sql):
        out = subprocess.run([self.bin + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              self.url(db), "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def createdb(self, name):
        self.psql("postgres", 'CREATE DATABASE "%s"' % name)
        return self.url(name)

    def stop(self):
        subprocess.run(as_pg([self.bin + "/pg_ctl", "-D", self.data, "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


TABLES = ["users", "orders", "order_items", "events"]
JOBS = 2

# CSV columns in PostgreSQL's input format for the types litevault chooses.
CSV_SELECT = {
    "users": "id, email, name, CASE is_active WHEN 1 THEN 't' ELSE 'f' END, created_at, "
             "strftime('%Y-%m-%d %H:%M:%S', last_login, 'unixepoch'), profile, uid",
    "orders": "id, user_id, total, status, strftime('%Y-%m-%d %H:%M:%S', created_ms / 1000, 'unixepoch') "
              "|| printf('.%03d', created_ms % 1000), note",
    "order_items": "id, order_id, sku, qty, price, CASE gift WHEN 1 THEN 't' ELSE 'f' END, "
                   "CASE WHEN thumb IS NULL THEN NULL ELSE '\\x' || hex(thumb) END",
    "events": "id, user_id, kind, payload, at",
}


def timed(cmd, **kw):
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.monotonic() - t, p


def run_litevault(c, db, jobs, name="lv"):
    url = c.createdb(name)
    exe = os.path.join(ROOT, "target/release/litevault")
    secs, p = timed([exe, "export", db, url, "--jobs", str(jobs)], env=dict(os.environ, LITEVAULT_LOG="warn"))
    if p.returncode != 0:
        print(p.stdout, p.stderr, file=sys.stderr)
        sys.exit("litevault export failed")
    return secs, p.stdout


def run_pgloader(c, db):
    """pgloader with its defaults (for the fidelity table)."""
    url = c.createdb("pgl")
    secs, p = timed(["pgloader", "sqlite://" + os.path.abspath(db), url.replace("postgres://", "pgsql://")])
    return secs, (p.stdout + p.stderr)[-3000:], p.returncode == 0


def run_pgloader_cast(c, db, name="pgl2"):
    """pgloader told to keep the epoch columns as bigint: with its defaults it
    turns them into out-of-range dates and drops those rows, so this is the
    run whose time is comparable (every row loaded)."""
    url = c.createdb(name)
    load = tempfile.NamedTemporaryFile("w", suffix=".load", delete=False)
    load.write("LOAD DATABASE FROM sqlite://%s INTO %s\n"
               "  WITH include drop, create tables, create indexes, reset sequences\n"
               "  CAST column users.last_login to bigint drop typemod,\n"
               "       column orders.created_ms to bigint drop typemod;\n"
               % (os.path.abspath(db), url.replace("postgres://", "pgsql://")))
    load.close()
    secs, p = timed(["pgloader", load.name])
    os.unlink(load.name)
    rows = int(c.psql(name, "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders) + "
                              "(SELECT count(*) FROM order_items) + (SELECT count(*) FROM events)"))
    return secs, rows


CSV_CACHE = {}


def run_copy(c, db, name="cp"):
    url = c.createdb(name)
    exe = os.path.join(ROOT, "target/release/litevault")
    ddl = subprocess.run([exe, "export", db, "--schema-only"], check=True, capture_output=True, text=True).stdout
    stmts = [s.strip() for s in ddl.split(";\n") if s.strip()]
    stmts = ["\n".join(l for l in s.splitlines() if not l.startswith("--")).strip() for s in stmts]
    stmts = [s for s in stmts if s]
    pre = [s for s in stmts if s.startswith("CREATE TABLE") or "SET DEFAULT" in s]
    post = [s for s in stmts if s not in pre]
    if "dir" not in CSV_CACHE:
        csvdir = tempfile.mkdtemp(prefix="litevault-csv-")
        os.chmod(csvdir, 0o755)
        for t in TABLES:
            path = os.path.join(csvdir, t + ".csv")
            with open(path, "w") as f:
                subprocess.run(["sqlite3", "-csv", db, "SELECT %s FROM %s" % (CSV_SELECT[t], t)], stdout=f, check=True)
            os.chmod(path, 0o644)
        CSV_CACHE["dir"] = csvdir
    csvdir = CSV_CACHE["dir"]
    fks = [x for x in post if "FOREIGN KEY" in x]
    per_table = {t: [x for x in post if x not in fks and ('"public"."%s"' % t) in x] for t in TABLES}

    def load(t):
        c.psql(name, "COPY %s FROM '%s' (FORMAT csv)" % (t, os.path.join(csvdir, t + ".csv")))
        if per_table[t]:
            c.psql(name, ";\n".join(per_table[t]))

    from concurrent.futures import ThreadPoolExecutor
    t0 = time.monotonic()
    c.psql(name, ";\n".join(pre))
    # Largest first, `jobs` at once, like litevault.
    with ThreadPoolExecutor(JOBS) as ex:
        list(ex.map(load, sorted(TABLES, key=lambda t: -os.path.getsize(os.path.join(csvdir, t + ".csv")))))
    if fks:
        c.psql(name, ";\n".join(fks))
    secs = time.monotonic() - t0
    csv_bytes = sum(os.path.getsize(os.path.join(csvdir, t + ".csv")) for t in TABLES)
    return secs, csv_bytes


def fidelity(c, dbname, src):
    s = sqlite3.connect(src)
    q = lambda sql: c.psql(dbname, sql)
    one = lambda sql: s.execute(sql).fetchone()[0]
    out = []

    def coltype(t, col):
        return q("SELECT coalesce(format_type(atttypid, atttypmod), 'missing') FROM pg_attribute "
                 "WHERE attrelid = to_regclass('%s') AND attname = '%s'" % (t, col)) or "missing"

    def check(label, t, col, expected_type_prefix, value_sql_pg, value_sql_sqlite):
        ty = coltype(t, col)
        try:
            got = q(value_sql_pg)
        except subprocess.CalledProcessError as e:
            got = "error"
        want = str(one(value_sql_sqlite))
        ok_type = any(ty.startswith(p) for p in expected_type_prefix)
        ok_val = got == want
        if ok_type and ok_val:
            verdict = "ok"
        elif not ok_type:
            verdict = "WRONG TYPE" + ("" if ok_val or got == "error" else ", WRONG VALUE")
        else:
            verdict = "WRONG VALUE"
        out.append((label, ty, verdict, got if not ok_val and got != "error" else ""))

    # Columns: type and a value compared with the SQLite source.
    check("INTEGER -> bigint", "orders", "user_id", ["bigint", "integer"],
          "SELECT sum(user_id) FROM orders", "SELECT sum(user_id) FROM orders")
    check("REAL -> double precision", "order_items", "price", ["double precision"],
          "SELECT round(sum(price)::numeric, 2) FROM order_items", "SELECT printf('%.2f', sum(price)) FROM order_items")
    check("DECIMAL(12,2) -> numeric(12,2)", "orders", "total", ["numeric"],
          "SELECT sum(total) FROM orders", "SELECT printf('%.2f', sum(total)) FROM orders")
    check("VARCHAR(120) kept", "users", "email", ["character varying(120)"],
          "SELECT max(length(email)) FROM users", "SELECT max(length(email)) FROM users")
    check("BOOLEAN 0/1 -> boolean", "users", "is_active", ["boolean"],
          "SELECT count(*) FROM users WHERE is_active::text IN ('true', '1', 't')",
          "SELECT count(*) FROM users WHERE is_active = 1")
    check("DATETIME ISO text -> timestamp", "users", "created_at", ["timestamp"],
          "SELECT to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') FROM users WHERE id = 1",
          "SELECT substr(created_at, 1, 19) FROM users WHERE id = 1")
    check("DATETIME epoch seconds -> timestamp", "users", "last_login", ["timestamp"],
          "SELECT to_char(last_login, 'YYYY-MM-DD HH24:MI:SS') FROM users WHERE last_login IS NOT NULL ORDER BY id LIMIT 1",
          "SELECT datetime(last_login, 'unixepoch') FROM users WHERE last_login IS NOT NULL ORDER BY id LIMIT 1")
    check("DATETIME epoch ms -> timestamp", "orders", "created_ms", ["timestamp"],
          "SELECT to_char(created_ms, 'YYYY-MM-DD HH24:MI:SS.MS') FROM orders WHERE id = 1",
          "SELECT strftime('%Y-%m-%d %H:%M:%S', created_ms / 1000, 'unixepoch') || printf('.%03d', created_ms % 1000) FROM orders WHERE id = 1")
    check("JSON text -> jsonb", "events", "payload", ["jsonb"],
          "SELECT (payload::jsonb)->>'path' FROM events WHERE id = 1",
          "SELECT json_extract(payload, '$.path') FROM events WHERE id = 1")
    check("char(32) UUID -> uuid", "users", "uid", ["uuid"],
          "SELECT replace(uid::text, '-', '') FROM users WHERE id = 1", "SELECT uid FROM users WHERE id = 1")
    # BLOB: md5 of the first 100 blobs, in hex, on both sides.
    import hashlib
    blobs = s.execute("SELECT thumb FROM order_items WHERE thumb IS NOT NULL ORDER BY id LIMIT 100").fetchall()
    want = hashlib.md5("".join(b[0].hex() for b in blobs).encode()).hexdigest()
    ty = coltype("order_items", "thumb")
    got = q("SELECT md5(string_agg(encode(thumb::bytea, 'hex'), '' ORDER BY id)) FROM (SELECT id, thumb FROM order_items "
            "WHERE thumb IS NOT NULL ORDER BY id LIMIT 100) x") if ty != "missing" else "missing"
    out.append(("BLOB -> bytea", ty, "ok" if ty.startswith("bytea") and got == want else "WRONG VALUE", ""))

    # Sequences: next value after max (and after the AUTOINCREMENT mark).
    def seq(t, floor):
        seqname = q("SELECT coalesce(pg_get_serial_sequence('%s', 'id'), '')" % t)
        if not seqname:
            return "MISSING (no sequence)", ""
        nxt = int(q("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s" % seqname))
        return ("ok" if nxt > floor else "WRONG: next value %d, max is %d" % (nxt, floor)), ""
    auto_floor = max(one("SELECT max(id) FROM users"), one("SELECT seq FROM sqlite_sequence WHERE name = 'users'"))
    v, n = seq("users", auto_floor)
    out.append(("AUTOINCREMENT key: sequence after max/seq", "", v, n))
    v, n = seq("orders", one("SELECT max(id) FROM orders"))
    out.append(("INTEGER PRIMARY KEY: sequence after max", "", v, n))

    # Constraints and indexes.
    def count(sql):
        return int(q(sql) or 0)
    pk = count("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text IN ('users','orders','order_items','events')")
    out.append(("primary keys (4)", "", "ok" if pk == 4 else "MISSING: %d of 4" % pk, ""))
    uq = count("SELECT count(*) FROM pg_index WHERE indisunique AND NOT indisprimary AND indrelid = to_regclass('users')")
    out.append(("UNIQUE users.email", "", "ok" if uq == 1 else "MISSING", ""))
    fk = count("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
    out.append(("foreign keys (3)", "", "ok" if fk == 3 else "MISSING: %d of 3" % fk, ""))
    cascade = count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confdeltype = 'c'")
    out.append(("ON DELETE CASCADE", "", "ok" if cascade == 1 else "MISSING", ""))
    ck = count("SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND conrelid = to_regclass('users')")
    out.append(("CHECK (length(email) > 3)", "", "ok" if ck >= 1 else "MISSING", ""))
    ix = count("SELECT count(*) FROM pg_indexes WHERE indexname IN ('orders_user','orders_created','order_items_order','events_user_at') OR indexdef LIKE '%(user_id, at)%' OR indexdef LIKE '%(order_id)%' OR indexdef LIKE '%(created_ms)%' OR (tablename = 'orders' AND indexdef LIKE '%(user_id)%')")
    out.append(("secondary indexes (4)", "", "ok" if ix >= 4 else "MISSING: %d of 4" % ix, ""))
    dflt = q("SELECT coalesce(pg_get_expr(adbin, adrelid), 'none') FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = to_regclass('users') AND a.attname = 'is_active'") or "none"
    out.append(("DEFAULT 1 on a boolean", dflt, "ok" if dflt == "true" else "WRONG: " + dflt, ""))
    rows_ok = all(int(q("SELECT count(*) FROM %s" % t) or -1) == one("SELECT count(*) FROM %s" % t) for t in TABLES)
    out.append(("row counts", "", "ok" if rows_ok else "ROWS LOST", ""))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="/tmp/litevault-pgbench/app.db")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the three timed loads; medians are reported")
    a = ap.parse_args()
    global JOBS
    JOBS = a.jobs
    if not os.path.exists(a.db):
        os.makedirs(os.path.dirname(a.db), exist_ok=True)
        subprocess.run(["cargo", "run", "--release", "--quiet", "-p", "litevault-bench", "--bin", "litevault-bench",
                        "--", "pg-gen", a.db, "--scale", str(a.scale)], cwd=ROOT, check=True)
    os.chmod(os.path.dirname(os.path.abspath(a.db)), 0o755)
    os.chmod(a.db, 0o644)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    src = sqlite3.connect(a.db)
    rows = sum(src.execute("SELECT count(*) FROM %s" % t).fetchone()[0] for t in TABLES)
    size = os.path.getsize(a.db)
    c = Cluster()
    try:
        has_pgloader = shutil.which("pgloader") is not None
        if has_pgloader:
            pl_secs, pl_out, pl_ok = run_pgloader(c, a.db)
        # Rounds interleave the tools, so each sees the same machine load.
        lv_all, pc_all, cp_all = [], [], []
        for r in range(a.repeat):
            sfx = "" if r == 0 else "_%d" % r
            secs, out = run_litevault(c, a.db, a.jobs, "lv" + sfx)
            lv_all.append(secs)
            if r == 0:
                lv_out = out
            if has_pgloader:
                secs, pc_rows = run_pgloader_cast(c, a.db, "pgl2" + sfx)
                pc_all.append(secs)
            secs, csv_bytes = run_copy(c, a.db, "cp" + sfx)
            cp_all.append(secs)
        med = lambda v: sorted(v)[len(v) // 2]
        lv_secs, cp_secs = med(lv_all), med(cp_all)
        pc_secs = med(pc_all) if has_pgloader else 0
        # The reverse direction: what litevault exported, imported back.
        back = tempfile.mktemp(suffix=".db")
        exe = os.path.join(ROOT, "target/release/litevault")
        im_secs, im = timed([exe, "import", c.url("lv"), back], env=dict(os.environ, LITEVAULT_LOG="warn"))
        if im.returncode != 0 or "verified" not in im.stdout:
            print(im.stdout, im.stderr, file=sys.stderr)
            sys.exit("litevault import failed")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(back + suffix):
                os.remove(back + suffix)
        fid_lv = fidelity(c, "lv", a.db)
        fid_pl = fidelity(c, "pgl", a.db) if has_pgloader else None
        fid_pc = fidelity(c, "pgl2", a.db) if has_pgloader else None
        pgver = c.psql("postgres", "SHOW server_version")
    finally:
        c.stop()
        if "dir" in CSV_CACHE:
            shutil.rmtree(CSV_CACHE["dir"], ignore_errors=True)
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    print("## PostgreSQL export: litevault vs pgloader vs COPY\n")
    print("Database: `litevault-bench pg-gen` (%d rows, %.1f MB, 4 tables, 4 indexes, 3 foreign keys); "
          "PostgreSQL %s on 127.0.0.1 (fsync off, same settings for all), %s cores shared.\n" % (rows, size / 1e6, pgver, cpu))
    fmt = lambda v: ", ".join("%.1f" % x for x in v)
    print("Median of %d interleaved rounds (all rounds in the last column).\n" % a.repeat)
    print("| tool | seconds (median) | rows/s | MB/s (SQLite file) | vs litevault | rounds (s) |")
    print("|---|---:|---:|---:|---:|---|")
    print("| litevault export --jobs %d (verification included) | %.1f | %.0f | %.1f | 1.00x | %s |" % (a.jobs, lv_secs, rows / lv_secs, size / 1e6 / lv_secs, fmt(lv_all)))
    if has_pgloader:
        print("| pgloader, epoch columns cast to bigint (%d rows loaded) | %.1f | %.0f | %.1f | %.2fx | %s |" % (pc_rows, pc_secs, pc_rows / pc_secs, size / 1e6 / pc_secs, pc_secs / lv_secs, fmt(pc_all)))
        print("| pgloader, defaults (drops the rows it cannot convert, see fidelity; one round) | %.1f | - | - | %.2fx | %.1f |" % (pl_secs, pl_secs / lv_secs, pl_secs))
    print("| COPY FROM pre-made CSV (%.0f MB), same DDL and indexes, %d tables at once | %.1f | %.0f | %.1f | %.2fx | %s |" % (csv_bytes / 1e6, a.jobs, cp_secs, rows / cp_secs, size / 1e6 / cp_secs, cp_secs / lv_secs, fmt(cp_all)))
    print()
    print("`litevault import` of the exported database back into a new SQLite file (verified, WAL mode): "
          "%.1f s, %.0f rows/s.\n" % (im_secs, rows / im_secs))
    if has_pgloader:
        print("litevault: %.2fx pgloader's throughput (the run that loads every row); %.2fx the time of raw COPY.\n" % (pc_secs / lv_secs, lv_secs / cp_secs))
    print("### Fidelity\n")
    print("| what | litevault | pgloader (defaults) | pgloader (epochs cast to bigint) |")
    print("|---|---|---|---|")
    for i, (label, ty, verdict, got) in enumerate(fid_lv):
        def cell(ty, verdict, got):
            s = verdict
            if ty:
                s += " (%s)" % ty
            if got and verdict != "ok":
                s += ": got %s" % got
            return s
        right = cell(*fid_pl[i][1:]) if fid_pl else "not run"
        right2 = cell(*fid_pc[i][1:]) if fid_pc else "not run"
        print("| %s | %s | %s | %s |" % (label, cell(ty, verdict, got), right, right2))
    print()
    print("<details><summary>litevault output</summary>\n\n```\n%s```\n</details>\n" % lv_out)
    if has_pgloader:
        print("<details><summary>pgloader output (tail)</summary>\n\n```\n%s\n```\n</details>" % pl_out)


if __name__ == "__main__":
    main()
