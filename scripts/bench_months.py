#!/usr/bin/env python3
"""Running for months: litevault against Litestream 0.5 on this machine.

Subcommands (each prints markdown tables and writes its section of a JSON file):

  requests  object-store requests per (simulated) hour under a steady write load,
            replication lag under that load, then a restore from that history
            (files fetched, time, verified), both tools against their own bucket
            on one S3 server (moto) on 127.0.0.1
  realtime  the same at factor 1 (10 writes/s, both tools at their defaults), shorter:
            a check of what the time compression distorts
  rss       peak RSS of `replicate --config` with 1 and with 20 databases under a
            light write load, file:// replicas
  all       the three

Requests are counted by the S3 server, not by either tool: this script runs moto
itself (`_s3server`, the same WSGI application `python -m moto.server` runs) behind
a small WSGI middleware that writes one JSON line per request (method, bucket,
key, query, status, start and end on the system-wide monotonic clock). The
middleware also copies every level-0 LTX file as it is stored, which is how the
lag is measured without one extra request: each write transaction also sets a
marker row to its sequence number, the marker page travels in every L0 file, and
a commit is visible when the first L0 file whose marker is at or past it has been
stored (end of that PUT on the server).

Time compression (`--factor F`, default 10): the load is 10*F writes/s and every
interval of both tools is divided by F (sync and monitor/poll intervals,
compaction levels, snapshot interval and retention, L0 retention and its check,
checkpoint interval, litevault's lease TTL). Request counts over the load window
are reported per simulated hour: count * 3600 / (load seconds * F).

Reuses the process, RSS and tool helpers of bench_compare.py. Standard library
only (plus moto in the server process). Examples:

  cargo build --release
  python3 scripts/bench_months.py all            # full run, ~15 minutes
  python3 scripts/bench_months.py all --quick    # smoke run, < 2 minutes
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import random
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bc  # noqa: E402

ACCESS_KEY, SECRET_KEY = bc.ACCESS_KEY, bc.SECRET_KEY
BUCKETS = {"litevault": "lv-months", "litestream": "ls-months"}
PREFIX = "app"
MARKER = re.compile(rb"SEQ#(\d{12})#")
L0_KEY = re.compile(r"^(?P<prefix>.*/)?0000/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$")
LTX_KEY = re.compile(r"^(?P<prefix>.*/)?(?P<level>[0-9a-f]{4})/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$")
BENCH_HEADER = "HTTP_X_BENCH_SETUP"  # requests of this script itself, not counted


# --------------------------------------------------------------------------
# The S3 server: moto behind a request-logging middleware (runs in a child)

def serve_s3(port: int, log: str, capture: str) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, run_simple

    app = DomainDispatcherApplication(create_backend_app)
    logf = open(log, "a", buffering=1)
    lock = threading.Lock()
    todo: queue.Queue = queue.Queue()
    cap = Path(capture)
    cap.mkdir(parents=True, exist_ok=True)

    def copier():
        # Copies stored L0 objects out of moto's backend, off the request path.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        n = 0
        index = open(cap / "index.jsonl", "a", buffering=1)
        while True:
            bucket, key, t1 = todo.get()
            try:
                obj = s3_backends[DEFAULT_ACCOUNT_ID]["global"].get_object(bucket, key)
                data = obj.value if obj is not None else None
            except Exception as e:  # deleted already, or a moto API change
                data, err = None, repr(e)
            else:
                err = None
            n += 1
            name = None
            if data is not None:
                name = f"{bucket}-{n:07d}.ltx"
                (cap / name).write_bytes(data)
            index.write(json.dumps({"bucket": bucket, "key": key, "t1": t1, "file": name,
                                    "error": err}) + "\n")

    threading.Thread(target=copier, daemon=True).start()

    def middleware(environ, start_response):
        t0 = time.monotonic()
        method = environ["REQUEST_METHOD"]
        path = urllib.parse.unquote(environ.get("PATH_INFO", ""))
        qs = environ.get("QUERY_STRING", "")
        setup = BENCH_HEADER in environ
        status = []
        delete_keys = None
        if method == "POST" and "delete" in urllib.parse.parse_qs(qs, keep_blank_values=True):
            n = environ.get("CONTENT_LENGTH")
            data = environ["wsgi.input"].read(int(n)) if n else environ["wsgi.input"].read()
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            delete_keys = data.count(b"<Key>")

        def sr(st, headers, exc_info=None):
            status.append(st)
            return start_response(st, headers, exc_info)

        result = app(environ, sr)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        t1 = time.monotonic()
        parts = path.lstrip("/").split("/", 1)
        bucket = parts[0]
        key = parts[1] if len(parts) > 1 else ""
        code = int(status[0].split()[0]) if status else 0
        rec = {"t0": t0, "t1": t1, "m": method, "b": bucket, "k": key, "q": qs, "s": code,
               "range": environ.get("HTTP_RANGE"), "in": int(environ.get("CONTENT_LENGTH") or 0),
               "out": len(body), "setup": setup}
        if delete_keys is not None:
            rec["delete_keys"] = delete_keys
        with lock:
            logf.write(json.dumps(rec) + "\n")
        if method == "PUT" and code == 200 and L0_KEY.match(key) and "partNumber" not in qs:
            todo.put((bucket, key, t1))
        return [body]

    class Quiet(WSGIRequestHandler):
        def log_request(self, *a, **k):  # the JSON log replaces werkzeug's
            pass

    run_simple("127.0.0.1", port, middleware, threaded=True, request_handler=Quiet)


class CountingS3:
    """The S3 server above, started as a child of this script."""

    def __init__(self, workdir: Path, name: str):
        self.dir = bc.fresh_dir(workdir / name)
        self.log = self.dir / "requests.jsonl"
        self.capture = self.dir / "l0"
        self.port = bc.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = bc.spawn([sys.executable, __file__, "_s3server", "--port", self.port,
                              "--log", self.log, "--capture", self.capture],
                             log=self.dir / "server.log")
        deadline = time.monotonic() + 60
        while True:
            try:
                self.request("GET", "/")
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise bc.BenchError(f"the S3 server exited at start-up, see {self.dir / 'server.log'} "
                                        "(is moto installed? pip install 'moto[server]')")
                if time.monotonic() > deadline:
                    raise bc.BenchError("the S3 server did not start within 60 s")
                time.sleep(0.1)

    def request(self, method: str, path: str):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, headers={"Content-Length": "0", "X-Bench-Setup": "1"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def create_bucket(self, bucket: str) -> None:
        code, _ = self.request("PUT", f"/{bucket}")
        if code != 200:
            raise bc.BenchError(f"creating bucket {bucket}: HTTP {code}")

    def records(self) -> list[dict]:
        out = []
        with open(self.log) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if not r["setup"]:
                    out.append(r)
        return out

    def l0_files(self) -> list[dict]:
        p = self.capture / "index.jsonl"
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def close(self):
        bc.stop(self.proc, signal.SIGTERM, 10)


def classify(r: dict) -> str:
    """The request type, from method, key and query, as S3 bills them."""
    m, k, q = r["m"], r["k"], urllib.parse.parse_qs(r["q"], keep_blank_values=True)
    if m == "POST" and "delete" in q:
        return "POST ?delete (bulk)"
    if "uploads" in q or "uploadId" in q or "partNumber" in q:
        return f"{m} multipart"
    if not k:
        if m == "GET" and ("list-type" in q or "prefix" in q or not q):
            return "LIST"
        return f"{m} bucket ?{r['q']}"
    lt = LTX_KEY.match(k)
    what = f"L{int(lt.group('level'), 16)}" if lt else ("lease" if "lease" in k else "other")
    if m == "GET":
        return f"GET {what}" + (" (ranged)" if r.get("range") else "")
    return f"{m} {what}"


def kind(c: str) -> str:
    """The coarse type (PUT, GET, LIST, DELETE, HEAD, other) of a class."""
    if c.startswith("POST ?delete") or c.startswith("DELETE"):
        return "DELETE"
    for k in ("PUT", "GET", "LIST", "HEAD"):
        if c.startswith(k):
            return k
    return "other"


# --------------------------------------------------------------------------
# LTX: enough to read the marker out of an L0 file (pure Python LZ4 block)

def lz4_into(src: bytes, out: bytearray) -> None:
    """One LZ4 block decoded onto the end of `out` (which may hold earlier
    linked blocks it refers back to)."""
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        out += src[i:i + lit]
        i += lit
        if i >= n:
            break
        off = src[i] | (src[i + 1] << 8)
        i += 2
        ml = token & 15
        if ml == 15:
            while True:
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        start = len(out) - off
        if start < 0 or off == 0:
            raise ValueError("bad LZ4 offset")
        if off >= ml:
            out += out[start:start + ml]
        else:
            for k in range(ml):
                out.append(out[start + k])


def lz4_block(src: bytes, size_hint: int = 4096) -> bytes:
    out = bytearray()
    lz4_into(src, out)
    return bytes(out)


def ltx_marker(data: bytes) -> int | None:
    """The highest marker sequence number in the pages of an LTX file
    (v0.5 encoding: 100-byte header, then `pgno u32 | flags u16 | size u32 | LZ4
    block` per page, big-endian, until page number 0)."""
    if data[:4] != b"LTX1":
        raise ValueError("not an LTX file")
    i, best = 100, None
    while i + 6 <= len(data):
        pgno = int.from_bytes(data[i:i + 4], "big")
        flags = int.from_bytes(data[i + 4:i + 6], "big")
        i += 6
        if pgno == 0:
            break
        if not flags & 1:
            raise ValueError(f"page {pgno}: unsupported page encoding (flags {flags})")
        size = int.from_bytes(data[i:i + 4], "big")
        i += 4
        page = lz4_block(data[i:i + size])
        i += size
        for m in MARKER.finditer(page):
            v = int(m.group(1))
            best = v if best is None else max(best, v)
    return best


# --------------------------------------------------------------------------
# Configuration files of both tools, intervals divided by the factor

def go_dur(seconds: float) -> str:
    ms = round(seconds * 1000, 3)
    if ms < 1000 or ms != int(ms) and ms < 60000:
        return f"{ms:g}ms"
    s = ms / 1000
    if s < 60 or s != int(s):
        return f"{s:g}s"
    s = int(s)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec else "")


# Defaults of both tools (litevault: crates/litevault/src/config/defaults.rs; Litestream 0.5:
# cmd/litestream/main.go, db.go, replica.go, store.go).
DEFAULTS = {
    "sync": 1.0, "levels": [30.0, 300.0, 3600.0], "snapshot": 86400.0, "snapshot_retention": 86400.0,
    "l0_retention": 300.0, "l0_check": 15.0, "checkpoint": 60.0,
    "litestream_monitor": 1.0, "litevault_poll": 0.010, "litevault_lease": 30.0,
}


def write_config(tool: str, path: Path, dbs: list[Path], replica_of, factor: float) -> dict:
    d = {k: ([x / factor for x in v] if isinstance(v, list) else v / factor)
         for k, v in DEFAULTS.items()}
    lines = []
    if factor != 1:
        lines += ["levels:"] + [f"  - interval: {go_dur(x)}" for x in d["levels"]]
        lines += ["snapshot:", f"  interval: {go_dur(d['snapshot'])}",
                  f"  retention: {go_dur(d['snapshot_retention'])}",
                  f"l0-retention: {go_dur(d['l0_retention'])}",
                  f"l0-retention-check-interval: {go_dur(d['l0_check'])}"]
        if tool == "litevault":
            lines += [f"poll-interval: {go_dur(d['litevault_poll'])}",
                      "lease:", f"  ttl: {go_dur(d['litevault_lease'])}"]
    lines.append("dbs:")
    for db in dbs:
        lines.append(f"  - path: {db}")
        if factor != 1:
            lines.append(f"    checkpoint-interval: {go_dur(d['checkpoint'])}")
            if tool == "litestream":
                lines.append(f"    monitor-interval: {go_dur(d['litestream_monitor'])}")
        lines.append("    replica:")
        lines += ["      " + x for x in replica_of(db)]
        if factor != 1:
            lines.append(f"      sync-interval: {go_dur(d['sync'])}")
    path.write_text("\n".join(lines) + "\n")
    return d


def s3_replica(endpoint: str, bucket: str):
    return lambda db: ["type: s3", f"bucket: {bucket}", f"path: {PREFIX}", f"endpoint: {endpoint}",
                       "region: us-east-1", "force-path-style: true",
                       f"access-key-id: {ACCESS_KEY}", f"secret-access-key: {SECRET_KEY}"]


def replicate_config_cmd(tools: bc.Tools, tool: str, cfg: Path):
    if tool == "litevault":
        return [tools.litevault, "replicate", "--config", cfg]
    return [tools.litestream, "replicate", "-config", cfg]


def s3_url(tool: str, endpoint: str) -> str:
    flag = "force-path-style" if tool == "litevault" else "forcePathStyle"
    return (f"s3://{BUCKETS[tool]}/{PREFIX}?endpoint={endpoint}&region=us-east-1&{flag}=true")


# --------------------------------------------------------------------------
# The write load

def new_db(path: Path, rows: int, seed: int) -> sqlite3.Connection:
    c = bc.new_wal_db(path)  # table t(id, v)
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("CREATE TABLE marker(id INTEGER PRIMARY KEY, s TEXT NOT NULL)")
    c.execute("INSERT INTO marker VALUES (1, ?)", ((b"SEQ#%012d#" % 0).decode(),))
    rnd = random.Random(seed)
    c.execute("BEGIN")
    c.executemany("INSERT INTO t(id, v) VALUES (?, ?)",
                  [(i, bc.payload(rnd, i)) for i in range(1, rows + 1)])
    c.execute("COMMIT")
    return c


def write_one(c: sqlite3.Connection, rnd: random.Random, seq: int, rows: int) -> None:
    """One write transaction: a row of t rewritten, the marker set to `seq`."""
    c.execute("BEGIN")
    c.execute("UPDATE t SET v = ? WHERE id = ?", (bc.payload(rnd, seq), rnd.randint(1, rows)))
    c.execute("UPDATE marker SET s = ? WHERE id = 1", ((b"SEQ#%012d#" % seq).decode(),))
    c.execute("COMMIT")


def content_digest(path: Path) -> dict:
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ic = c.execute("PRAGMA integrity_check").fetchone()[0]
        d = bc.table_digest(c)
        m = c.execute("SELECT s FROM marker").fetchone()[0]
        n = c.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        c.close()
    return {"integrity_check": ic, "digest": d, "marker": m, "rows": n}


# --------------------------------------------------------------------------
# 1. requests (+ lag, + restore)

def requests_one(args, tools: bc.Tools, s3: CountingS3, tool: str, base: Path, factor: float,
                 load_seconds: float) -> dict:
    d = bc.fresh_dir(base / tool)
    db = d / "app.db"
    rows = args.rows
    conn = new_db(db, rows, seed=3)
    cfg = d / ("litevault.yml" if tool == "litevault" else "litestream.yml")
    s3.create_bucket(BUCKETS[tool])
    scaled = write_config(tool, cfg, [db], s3_replica(s3.endpoint, BUCKETS[tool]), factor)
    rate = 10.0 * factor
    print(f"requests: {tool}, {rate:g} writes/s for {load_seconds:g} s "
          f"(x{factor:g}: {load_seconds * factor / 60:.1f} simulated minutes) ...",
          file=sys.stderr, flush=True)
    t_start = time.monotonic()
    m = bc.Measured(replicate_config_cmd(tools, tool, cfg), env=tools.env(tool, "s3"),
                    log=d / "replicate.log", scratch=d)
    status_file = d / ".app.db-litevault" / "status.json"
    commits: list[float] = []  # commits[seq - 1] = monotonic time the commit returned
    status_lags = []
    rnd = random.Random(11)
    try:
        # started: the first L0 file of this bucket is stored
        bc.wait_for(lambda: any(f["bucket"] == BUCKETS[tool] for f in s3.l0_files()), 60, 0.05,
                    f"{tool} first upload", m.proc)
        time.sleep(1.0)
        t_load = time.monotonic()
        total = int(rate * load_seconds)
        next_status = t_load
        for k in range(total):
            delay = t_load + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            write_one(conn, rnd, k + 1, rows)
            commits.append(time.monotonic())
            if tool == "litevault" and time.monotonic() >= next_status:
                next_status += 0.25
                try:  # litevault's own view of its lag (a local file: no request)
                    st = json.loads(status_file.read_text())
                    status_lags.append(st["replicas"][0]["lag_ms"])
                except (OSError, ValueError, KeyError, IndexError):
                    pass
            if m.proc.poll() is not None:
                raise bc.BenchError(f"{tool} replicate exited early: {d / 'replicate.log'}")
        t_load_end = time.monotonic()
        time.sleep(max(2.0, 3 * scaled["sync"]))  # let both ship the tail
        t_stop = time.monotonic()
    finally:
        res = m.stop()
    t_stopped = time.monotonic()
    conn.close()
    src = content_digest(db)
    # litevault's own accounting (cross-check; the figures below are the server's)
    own = None
    if tool == "litevault" and status_file.is_file():
        try:
            own = json.loads(status_file.read_text())["replicas"][0]["requests"]
        except (ValueError, KeyError, IndexError):
            own = None

    # ---- restore from that history
    out = d / "restored.db"
    bc.remove_db(out)
    time.sleep(0.5)
    t_r0 = time.monotonic()
    log = d / "restore.log"
    rr = bc.run_measured(restore_cmd(tools, tool, s3.endpoint, out), env=tools.env(tool, "s3"), timeout=300, log=log, scratch=d)
    t_r1 = time.monotonic()
    restored = content_digest(out) if rr["rc"] == 0 and out.exists() else None
    verified = bool(restored and restored["integrity_check"] == "ok"
                    and restored["digest"] == src["digest"] and restored["marker"] == src["marker"])

    recs = [r for r in s3.records() if r["b"] == BUCKETS[tool]]
    phase = lambda r: ("startup" if r["t1"] < t_load else "load" if r["t1"] <= t_load_end
                       else "drain" if r["t1"] <= t_stop else "shutdown" if r["t1"] <= t_stopped + 0.01
                       else "restore" if t_r0 <= r["t0"] and r["t1"] <= t_r1 + 0.01 else "other")
    counts: dict[str, dict[str, int]] = {}
    for r in recs:
        p = phase(r)
        c = classify(r)
        counts.setdefault(p, {})
        counts[p][c] = counts[p].get(c, 0) + 1
    deleted_keys = sum(r.get("delete_keys", 0) for r in recs if phase(r) == "load")
    deleted_keys += sum(1 for r in recs if phase(r) == "load" and r["m"] == "DELETE")
    errors = sum(1 for r in recs if r["s"] >= 400 and phase(r) in ("load", "restore"))
    restore_recs = [r for r in recs if phase(r) == "restore"]

    # ---- lag: commit -> first stored L0 file whose marker reaches it
    files = []
    bad = 0
    for f in s3.l0_files():
        if f["bucket"] != BUCKETS[tool] or not f["file"]:
            continue
        try:
            mk = ltx_marker((s3.capture / f["file"]).read_bytes())
        except (OSError, ValueError, IndexError):
            bad += 1
            continue
        if mk is not None:
            files.append((f["t1"], mk))
    files.sort()
    lags, nxt = [], 1
    for t1, mk in files:
        while nxt <= mk and nxt <= len(commits):
            lags.append(1000 * (t1 - commits[nxt - 1]))
            nxt += 1
    in_load = lags
    sim_hours = (t_load_end - t_load) * factor / 3600
    return {
        "tool": tool, "rate": rate, "writes": len(commits),
        "load_seconds": t_load_end - t_load, "simulated_hours": sim_hours,
        "startup_seconds": t_load - t_start, "scaled_intervals": scaled,
        "config": cfg.read_text(),
        "requests": counts, "deleted_keys_in_load": deleted_keys, "http_errors": errors,
        "per_hour": {c: n / sim_hours for c, n in counts.get("load", {}).items()},
        "own_counts_litevault": own,
        "lag_ms": {"samples": len(lags), "unmatched_commits": len(commits) - len(lags),
                   "p50": bc.pct(in_load, 50), "p99": bc.pct(in_load, 99),
                   "max": max(in_load) if in_load else None, "l0_files": len(files),
                   "l0_unreadable": bad},
        "status_lag_ms": {"samples": len(status_lags), "p50": bc.pct(status_lags, 50),
                          "p99": bc.pct(status_lags, 99)} if status_lags else None,
        "replicate": {k: res[k] for k in ("rc", "peak_rss_kib", "cpu_seconds")},
        "restore": {"rc": rr["rc"], "seconds": rr["seconds"], "peak_rss_kib": rr["peak_rss_kib"],
                    "requests": counts.get("restore", {}),
                    "objects_fetched": sum(1 for r in restore_recs if r["m"] == "GET" and r["k"]),
                    "distinct_objects": len({r["k"] for r in restore_recs if r["m"] == "GET" and r["k"]}),
                    "bytes_fetched": sum(r["out"] for r in restore_recs if r["m"] == "GET" and r["k"]),
                    "verified": verified, "source": src, "restored": restored,
                    "log_tail": log.read_text(errors="replace")[-400:]},
    }


def restore_cmd(tools: bc.Tools, tool: str, endpoint: str, out: Path):
    url = s3_url(tool, endpoint)
    if tool == "litevault":
        return [tools.litevault, "restore", url, "-o", out]
    return [tools.litestream, "restore", "-o", out, url]


def cmd_requests(args, tools: bc.Tools, workdir: Path, factor: float, load_seconds: float) -> dict:
    base = bc.fresh_dir(workdir / f"requests-x{factor:g}")
    s3 = CountingS3(base, "s3")
    runs = []
    try:
        for tool in ("litevault", "litestream"):
            runs.append(requests_one(args, tools, s3, tool, base, factor, load_seconds))
    finally:
        s3.close()
    lv, ls = runs
    classes = sorted(set(lv["per_hour"]) | set(ls["per_hour"]), key=lambda c: (kind(c), c))
    rows = []
    for c in classes:
        a, b = lv["per_hour"].get(c, 0.0), ls["per_hour"].get(c, 0.0)
        rows.append([c, f"{a:.0f}", f"{b:.0f}", bc.fmt(bc.ratio(a, b), 2)])
    for k in ("PUT", "GET", "LIST", "DELETE", "HEAD", "other"):
        a = sum(v for c, v in lv["per_hour"].items() if kind(c) == k)
        b = sum(v for c, v in ls["per_hour"].items() if kind(c) == k)
        if a or b:
            rows.append([f"**all {k}**", f"{a:.0f}", f"{b:.0f}", bc.fmt(bc.ratio(a, b), 2)])
    a, b = sum(lv["per_hour"].values()), sum(ls["per_hour"].values())
    rows.append(["**total**", f"**{a:.0f}**", f"**{b:.0f}**", f"**{bc.fmt(bc.ratio(a, b), 2)}**"])
    t1 = bc.table(["request (server side)", "litevault / sim. hour", "Litestream / sim. hour",
                   "litevault / Litestream"], rows)

    def once(r, p):
        return sum(r["requests"].get(p, {}).values())

    rows2 = []
    for r in runs:
        rows2.append([r["tool"], r["writes"], f"{r['load_seconds']:.0f}", f"{r['simulated_hours'] * 60:.0f}",
                      once(r, "startup"), once(r, "drain") + once(r, "shutdown"), r["http_errors"],
                      bc.fmt(r["lag_ms"]["p50"]), bc.fmt(r["lag_ms"]["p99"]),
                      f"{r['lag_ms']['samples']}/{r['writes']}"])
    t2 = bc.table(["tool", "writes", "load s (real)", "simulated minutes", "startup requests",
                   "drain+shutdown requests", "HTTP errors (load)", "lag p50 ms", "lag p99 ms",
                   "commits timed"], rows2)
    rows3 = []
    for r in runs:
        rs = r["restore"]
        rows3.append([r["tool"], rs["objects_fetched"], rs["distinct_objects"],
                      f"{rs['bytes_fetched'] / 1e6:.2f}",
                      sum(v for c, v in rs["requests"].items() if kind(c) == "LIST"),
                      sum(rs["requests"].values()), f"{rs['seconds']:.2f}",
                      f"{bc.mib(rs['peak_rss_kib']):.0f}" if rs["peak_rss_kib"] else "–",
                      "yes" if rs["verified"] else "NO"])
    rows3.append(["ratio litevault/Litestream",
                  bc.fmt(bc.ratio(lv["restore"]["objects_fetched"], ls["restore"]["objects_fetched"]), 2),
                  "", "", "",
                  bc.fmt(bc.ratio(sum(lv["restore"]["requests"].values()),
                                  sum(ls["restore"]["requests"].values())), 2),
                  bc.fmt(bc.ratio(lv["restore"]["seconds"], ls["restore"]["seconds"]), 2),
                  bc.fmt(bc.ratio(lv["restore"]["peak_rss_kib"], ls["restore"]["peak_rss_kib"]), 2), ""])
    t3 = bc.table(["restore by", "objects fetched (GET)", "distinct objects", "MB fetched", "LISTs",
                   "all requests", "seconds", "peak RSS MiB", "verified (= source at its last TXID)"],
                  rows3)
    notes = []
    if lv["status_lag_ms"]:
        s = lv["status_lag_ms"]
        notes.append(f"litevault's own `lag_ms` (status.json, sampled every 0.25 s): "
                     f"p50 {bc.fmt(s['p50'])} ms, p99 {bc.fmt(s['p99'])} ms ({s['samples']} samples)")
    if lv["own_counts_litevault"]:
        o = lv["own_counts_litevault"]
        srv = {k: sum(v for p in ("startup", "load", "drain", "shutdown")
                      for c, v in lv["requests"].get(p, {}).items() if kind(c) == k)
               for k in ("PUT", "GET", "LIST", "DELETE", "HEAD")}
        notes.append(f"litevault's own counters at exit (whole run): puts {o.get('puts')}, gets {o.get('gets')}, "
                     f"lists {o.get('lists')}, deletes {o.get('deletes')}; the server saw "
                     f"PUT {srv['PUT']}, GET {srv['GET']}, LIST {srv['LIST']}, DELETE {srv['DELETE']}, "
                     f"HEAD {srv['HEAD']}")
    for r in runs:
        notes.append(f"{r['tool']}: {r['deleted_keys_in_load']} objects deleted during the load window")
    md = (f"{lv['rate']:g} write transactions/s for {lv['load_seconds']:.0f} s real per tool, every "
          f"interval divided by {factor:g} ({lv['simulated_hours'] * 60:.1f} simulated minutes at "
          f"10 writes/s); requests counted by the S3 server during the load window, per simulated hour:\n\n"
          f"{t1}\n\nThe run, and replication lag (commit to L0 object stored, server clock):\n\n{t2}\n\n"
          f"Restore of the latest state after that history (requests counted by the server):\n\n{t3}")
    return {"runs": runs, "markdown": md, "notes": notes, "factor": factor}


# --------------------------------------------------------------------------
# 2. rss with 1 and 20 databases

def cmd_rss(args, tools: bc.Tools, workdir: Path) -> dict:
    base = bc.fresh_dir(workdir / "rss-many")
    runs = []
    for n in args.rss_dbs:
        for tool in ("litevault", "litestream"):
            print(f"rss: {tool}, {n} database(s), {args.rss_rate:g} writes/s each for "
                  f"{args.rss_seconds:g} s ...", file=sys.stderr, flush=True)
            d = bc.fresh_dir(base / f"{tool}-{n}")
            dbs = [d / f"db{i:02d}.db" for i in range(n)]
            conns = [new_db(p, args.rss_rows, seed=100 + i) for i, p in enumerate(dbs)]
            cfg = d / ("litevault.yml" if tool == "litevault" else "litestream.yml")
            write_config(tool, cfg, dbs, lambda db: [f"url: file://{d / 'replicas' / db.stem}"], 1)
            m = bc.Measured(replicate_config_cmd(tools, tool, cfg), env=tools.env(tool, "file"),
                            log=d / "replicate.log", scratch=d)
            rnd = random.Random(5)
            writes = 0
            try:
                first = lambda: all((d / "replicas" / p.stem / "ltx" / "0").is_dir() and
                                    os.listdir(d / "replicas" / p.stem / "ltx" / "0") for p in dbs)
                bc.wait_for(first, 120, 0.05, f"{tool} first files of {n} databases", m.proc)
                m.sampler.phase = "load"
                total_rate = args.rss_rate * n
                t0 = time.monotonic()
                total = int(total_rate * args.rss_seconds)
                for k in range(total):
                    delay = t0 + k / total_rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    write_one(conns[k % n], rnd, k // n + 1, args.rss_rows)
                    writes += 1
                    if m.proc.poll() is not None:
                        raise bc.BenchError(f"{tool} replicate exited early: {d / 'replicate.log'}")
                load_s = time.monotonic() - t0
                m.sampler.phase = "drain"
                time.sleep(2.5)
            finally:
                res = m.stop()
            for c in conns:
                c.close()
            runs.append({"tool": tool, "dbs": n, "writes": writes, "load_seconds": load_s,
                         "peak_rss_kib": res["peak_rss_kib"],
                         "peak_rss_kib_sampled": res["peak_rss_kib_sampled"],
                         "load_max_rss_kib": m.sampler.max_rss("load"),
                         "load_mean_rss_kib": m.sampler.mean_rss("load"),
                         "cpu_seconds": res["cpu_seconds"], "rc": res["rc"]})
            for p in dbs:
                bc.remove_db(p)
    rows = []
    for n in args.rss_dbs:
        lv = next(r for r in runs if r["dbs"] == n and r["tool"] == "litevault")
        ls = next(r for r in runs if r["dbs"] == n and r["tool"] == "litestream")
        for r in (lv, ls):
            rows.append([n, r["tool"], f"{r['writes'] / r['load_seconds']:.0f}",
                         bc.fmt(bc.mib(r["peak_rss_kib"]), 1), bc.fmt(bc.mib(r["load_mean_rss_kib"]), 1),
                         bc.fmt(r["cpu_seconds"], 1),
                         bc.fmt(bc.ratio(lv["peak_rss_kib"], ls["peak_rss_kib"]), 2) if r is lv else ""])
    md = (f"`replicate --config` (litevault) and `replicate -config` (Litestream), defaults, file:// "
          f"replicas, each database {args.rss_rows} rows (~{args.rss_rows / 1000:.0f} MB) under "
          f"{args.rss_rate:g} write transactions/s for {args.rss_seconds:g} s:\n\n" +
          bc.table(["databases", "tool", "writes/s (all)", "peak RSS MiB", "mean RSS MiB under load",
                    "CPU s", "peak litevault / Litestream"], rows))
    return {"runs": runs, "markdown": md, "notes": []}


# --------------------------------------------------------------------------

def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_s3server":
        ap = argparse.ArgumentParser()
        ap.add_argument("_s3server")
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--log", required=True)
        ap.add_argument("--capture", required=True)
        a = ap.parse_args()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        serve_s3(a.port, a.log, a.capture)
        return 0
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["requests", "realtime", "rss", "all"])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 2 minutes)")
    ap.add_argument("--factor", type=float, default=10.0,
                    help="time compression: intervals / F, load 10*F writes/s (default %(default)s)")
    ap.add_argument("--load-seconds", type=float, default=None,
                    help="real seconds of load per tool (default 180; --quick 12)")
    ap.add_argument("--realtime-seconds", type=float, default=None,
                    help="realtime: seconds of load per tool at factor 1, 10 writes/s, defaults "
                         "(default 90; --quick 10)")
    ap.add_argument("--rows", type=int, default=2000, help="rows (~1 KB) of the requests database")
    ap.add_argument("--rss-dbs", default="1,20", help="database counts for rss (default %(default)s)")
    ap.add_argument("--rss-rate", type=float, default=2.0, help="writes/s per database (default 2)")
    ap.add_argument("--rss-seconds", type=float, default=None, help="default 60; --quick 6")
    ap.add_argument("--rss-rows", type=int, default=1000, help="rows (~1 KB) per rss database")
    ap.add_argument("--workdir", default="/tmp/litevault-bench-months")
    ap.add_argument("--out", help="results JSON (default WORKDIR/results.json)")
    ap.add_argument("--litevault", help="litevault binary (default REPO/target/release/litevault)")
    ap.add_argument("--litestream", help="litestream binary (default: from PATH)")
    ap.add_argument("--deadline", type=float, default=1500, help="abort after this many seconds")
    args = ap.parse_args()
    if args.load_seconds is None:
        args.load_seconds = 12.0 if args.quick else 180.0
    if args.realtime_seconds is None:
        args.realtime_seconds = 10.0 if args.quick else 90.0
    if args.rss_seconds is None:
        args.rss_seconds = 6.0 if args.quick else 60.0
    args.rss_dbs = [int(x) for x in args.rss_dbs.split(",") if x]

    workdir, out_path, results = bc.start_run(args)
    started = time.monotonic()
    try:
        tools = bc.Tools(args, workdir)
        commands = ["requests", "realtime", "rss"] if args.command == "all" else [args.command]
        run = {"requests": lambda: cmd_requests(args, tools, workdir, args.factor, args.load_seconds),
               "realtime": lambda: cmd_requests(args, tools, workdir, 1.0, args.realtime_seconds),
               "rss": lambda: cmd_rss(args, tools, workdir)}
        for c in commands:
            t = time.monotonic()
            r = run[c]()
            r["machine"] = bc.machine_info(tools)
            r["args"] = {k: v for k, v in vars(args).items()}
            r["elapsed_s"] = round(time.monotonic() - t, 1)
            results[c] = r
            out_path.write_text(json.dumps(results, indent=1, default=str))
            print(f"\n## {c}\n\n{r['markdown']}\n")
            for n in r.get("notes", []):
                print(f"- {n}")
            print(f"\n({c}: {r['elapsed_s']} s; results in {out_path})", flush=True)
    except (bc.BenchError, TimeoutError, KeyboardInterrupt) as e:
        print(f"bench_months: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        bc.kill_all()
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
