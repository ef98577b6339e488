#!/usr/bin/env python3
"""Sidecar durable commits: latency of commit + `POST /v1/sync?wait=true`.

`litevault replicate DB URL --addr 127.0.0.1:PORT` runs at its defaults; W
writer threads each commit one row on their own connection, then call
`/v1/sync?db=app&wait=true`, which answers once every replica holds the
commit. Reported per backend (file://, moto S3 on 127.0.0.1) and writer count:
p50/p99 of the sync call and of commit+sync, durable commits per second, and
PUTs per durable commit (below 1 when concurrent syncs share uploads). The S3
rows also give moto's own PUT round trip, measured from this script, the
floor of any durable commit there.

Standard library only; reuses bench_compare's process and moto helpers.

  cargo build --release
  python3 scripts/bench_http_sync.py                  # 200 commits per row
  python3 scripts/bench_http_sync.py --commits 40     # smoke run
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bc  # noqa: E402


def request(port: int, method: str, path: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, headers={"Content-Length": "0"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def moto_put_ms(moto: bc.Moto, n: int = 50) -> float:
    """Median round trip of a 200-byte unsigned PUT to moto."""
    c = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=10)
    times = []
    for i in range(n):
        t = time.monotonic()
        c.request("PUT", f"/{bc.S3_BUCKET}/put-rtt/{i}", body=b"x" * 200)
        c.getresponse().read()
        times.append(time.monotonic() - t)
    c.close()
    return 1000 * sorted(times)[len(times) // 2]


def run_row(binary: Path, backend: str, moto: bc.Moto | None, writers: int, commits: int,
            work: Path) -> dict:
    d = bc.fresh_dir(work / f"{backend}-{writers}")
    db = d / "app.db"
    bc.new_wal_db(db).close()  # table t(id, v)
    env = dict(os.environ)
    if backend == "file":
        url = f"file://{d / 'replica'}"
    else:
        url = (f"s3://{bc.S3_BUCKET}/http-{writers}?endpoint={moto.endpoint}"
               f"&region=us-east-1&force-path-style=true")
        env.update(AWS_ACCESS_KEY_ID=bc.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=bc.SECRET_KEY,
                   AWS_REGION="us-east-1")
    port = bc.free_port()
    proc = bc.spawn([binary, "replicate", db, url, "--addr", f"127.0.0.1:{port}"], env=env,
                    log=d / "litevault.log")
    def healthy() -> bool:
        try:
            return request(port, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    bc.wait_for(healthy, 30, 0.05, "litevault's HTTP server", alive=proc)
    code, body = request(port, "POST", "/v1/sync?db=app&wait=true")
    if code != 200:
        raise bc.BenchError(f"first sync: HTTP {code}: {body!r}")
    puts_before = json.loads(request(port, "GET", "/v1/status")[1])[0]["replicas"][0]["requests"]["puts"]

    sync_ms: list[float] = []
    total_ms: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []
    per = max(1, commits // writers)

    def writer(w: int):
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            for i in range(per):
                t0 = time.monotonic()
                conn.execute("INSERT INTO t(v) VALUES (?)", (b"p" * 100,))
                t1 = time.monotonic()
                code, body = request(port, "POST", "/v1/sync?db=app&wait=true")
                t2 = time.monotonic()
                if code != 200:
                    errors.append(f"HTTP {code}: {body[:200]!r}")
                    return
                with lock:
                    sync_ms.append(1000 * (t2 - t1))
                    total_ms.append(1000 * (t2 - t0))
        finally:
            conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if errors:
        raise bc.BenchError(f"{backend} x{writers}: {errors[0]}")
    puts = json.loads(request(port, "GET", "/v1/status")[1])[0]["replicas"][0]["requests"]["puts"]
    bc.stop(proc)
    n = len(sync_ms)
    return {
        "backend": backend, "writers": writers, "commits": n,
        "sync_p50": bc.pct(sync_ms, 50), "sync_p99": bc.pct(sync_ms, 99),
        "total_p50": bc.pct(total_ms, 50), "total_p99": bc.pct(total_ms, 99),
        "per_s": n / elapsed, "puts_per_commit": (puts - puts_before) / n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--litevault", help="binary (default target/release/litevault)")
    ap.add_argument("--commits", type=int, default=200, help="durable commits per row")
    ap.add_argument("--writers", default="1,8", help="comma-separated writer counts")
    args = ap.parse_args()
    binary = Path(args.litevault) if args.litevault else bc.REPO / "target/release/litevault"
    if not binary.is_file():
        raise bc.BenchError(f"{binary} not found: run `cargo build --release` first")
    writers = [int(w) for w in args.writers.split(",")]
    with tempfile.TemporaryDirectory(prefix="litevault-http-bench-") as tmp:
        work = Path(tmp)
        local = work / "bin"
        local.mkdir()
        copy = local / "litevault"
        copy.write_bytes(binary.read_bytes())
        copy.chmod(0o755)
        moto = bc.Moto(work)
        try:
            put = moto_put_ms(moto)
            rows = []
            for backend in ["file", "s3"]:
                for w in writers:
                    rows.append(run_row(copy, backend, moto if backend == "s3" else None, w,
                                        args.commits, work))
        finally:
            moto.close()
    print(f"moto PUT round trip (200 B, p50): {put:.1f} ms\n")
    print(bc.table(
        ["backend", "writers", "durable commits", "sync p50 ms", "sync p99 ms",
         "commit+sync p50 ms", "commit+sync p99 ms", "commits/s", "PUTs per commit"],
        [[r["backend"], r["writers"], r["commits"], bc.fmt(r["sync_p50"]), bc.fmt(r["sync_p99"]),
          bc.fmt(r["total_p50"]), bc.fmt(r["total_p99"]), bc.fmt(r["per_s"]),
          bc.fmt(r["puts_per_commit"], 2)] for r in rows]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bc.BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
