#!/usr/bin/env python3
"""A fleet of databases in one process: litevault, Litestream 0.5 and walrust.

For each N in --dbs (N=1 is added as the baseline) and each tool, in one run,
tools interleaved per N so that their ratios come from the same conditions:

  1. N small WAL-mode databases (50 rows of 200 bytes each) are created in one
     directory before the tool starts; each run gets its own S3 server (moto
     behind bench_months.CountingS3, which logs every request with its times
     on the system-wide monotonic clock and copies every level-0 LTX file) and
     its own bucket; the replica prefix is `app`.
  2. The tool is started on the whole directory; start-up ends when every
     database has its first LTX file (any level) on the replica, counted by the
     server (`app/<db>/<level>/<min>-<max>.ltx`, the key layout of all three).
     Then it settles: at least --settle-seconds (35: the first L1 compaction
     of the start-up files belongs to start-up) and until no LTX file was
     stored for --quiet-seconds (5), at most --settle-max.
  3. Idle phase (--idle-seconds): nobody writes. CPU seconds of the tool
     (utime+stime, its children included, from /proc/PID/stat at both ends),
     peak RSS in the phase (VmHWM, reset at the start of the phase through
     /proc/PID/clear_refs, and the 10 ms sampler of bench_compare.Measured),
     S3 requests by kind, per hour.
  4. 1% writing phase (--write-seconds): ceil(N/100) databases (at least one)
     each get a single-row INSERT commit once a second, at a random point of
     its slot in that second (autocommit, WAL; no fixed phase against the
     tools' 1 s sync tickers). The
     same figures, plus replication lag: commit returned -> end of the PUT of
     the first level-0 file holding it (server clock). Commits not shipped
     before SIGINT are counted as never seen.
       The commit is found by a marker: inserted row k of a database starts
       with `SEQ#<k>#`, and the server's copies of the L0 files are decoded
       (litevault, Litestream: LTX v0.5, one LZ4 block per page; walrust: LTX
       v0.3 layout, one LZ4 frame after the header) for the highest marker in
       their pages. Counting TXIDs (commit k = highest TXID shipped before the
       phase + k) is also computed, as a cross-check kept in the JSON, but it is
       not the figure: Litestream 0.5 gives one TXID per sync (two commits in
       one 1 s interval share a TXID), and walrust's TXIDs count pages
       (walrust-core legacy_shadow.rs: max_txid = min_txid + pages - 1).
  5. SIGINT (each tool ships what is left and exits); the exit code is kept.

Tools and how they replicate a directory:
  litevault   `litevault replicate --config F`, `dbs: [{dir, pattern: "*.db",
              watch: true, replica: {type: s3, bucket, path: app, endpoint, ...}}]`
              (the replica lines of bench_months.s3_replica); each database
              replicates to app/<file name>/.
  Litestream  `litestream replicate -config F`, the same YAML.
  walrust     `walrust --config F watch --no-metrics` with walrust.toml
              `[s3] bucket = "s3://B/app", endpoint = ...` and one
              `[[databases]] path = "<dir>/*.db"` glob entry (walrust has no
              directory mode: the glob is expanded once at start, there is no
              watching for new files); each database replicates to app/<stem>/.
              Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
              AWS_REGION (walrust has no configuration key for them); a custom
              endpoint implies path-style. Default shadow-WAL watch loop (not the
              experimental --independent-tasks), defaults otherwise (1 s WAL sync,
              1 h snapshots, no compaction). Install:
                cargo install walrust --locked --root ~/.cache/litevault/walrust

All tools at their defaults (litevault is woken by inotify for each WAL and
checks them with a stat every second; Litestream's monitor interval is 1 s;
walrust syncs every 1 s).
Standard library only (moto in the S3 server process). Examples:

  python3 scripts/bench_fleet.py --quick                      # N=1,10, 10 s phases
  python3 scripts/bench_fleet.py --dbs 10,100,1000            # full run
  python3 scripts/bench_fleet.py --dbs 100 --tools litevault
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bc  # noqa: E402
import bench_months as bm  # noqa: E402

TOOLS = ("litevault", "litestream", "walrust")
LABEL = {"litevault": "litevault", "litestream": "Litestream", "walrust": "walrust"}
SHORT = {"litevault": "lv", "litestream": "ls", "walrust": "wr"}
PREFIX = bm.PREFIX  # "app"
KEY = re.compile(r"^" + re.escape(PREFIX) + r"/(?P<db>[^/]+)/(?:ltx/)?(?P<level>[0-9a-f]{1,4})/"
                 r"(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")
ROWS, ROW_BYTES = 50, 200
WALRUST_INSTALL = "cargo install walrust --locked --root ~/.cache/litevault/walrust"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("PUT", "GET", "LIST", "HEAD", "DELETE", "other")


# --------------------------------------------------------------------------
# Tools

class FleetTools(bc.Tools):
    """The binaries under test (only those asked for are required)."""

    def __init__(self, args, workdir: Path, wanted: list[str]):
        self.litevault = self.litevault_src = self.litevault_sha256 = self.litevault_version = None
        self.litestream = self.litestream_version = None
        self.walrust = self.walrust_version = None
        if "litevault" in wanted:
            src = Path(args.litevault) if args.litevault else bc.REPO / "target/release/litevault"
            if not src.is_file():
                raise bc.BenchError(f"{src} not found: run `cargo build --release` first, "
                                    "or pass --litevault PATH")
            bindir = workdir / "bin"
            bindir.mkdir(parents=True, exist_ok=True)
            self.litevault = bindir / "litevault"
            shutil.copy2(src, self.litevault)  # a snapshot: rebuilds during the run do not matter
            self.litevault_src = src
            self.litevault_sha256 = bc.sha256_file(self.litevault)
            self.litevault_version = _version([self.litevault, "--version"])
        if "litestream" in wanted:
            self.litestream = bc.resolve_litestream(args.litestream)
            self.litestream_version = _version([self.litestream, "version"])
        if "walrust" in wanted:
            cand = [args.walrust] if args.walrust else [
                str(Path.home() / ".cache/litevault/walrust/bin/walrust"), shutil.which("walrust")]
            found = next((Path(c) for c in cand if c and Path(c).is_file()), None)
            if not found:
                raise bc.BenchError(f"walrust not found: install it with `{WALRUST_INSTALL}` "
                                    "(or pass --walrust PATH)")
            self.walrust = found
            self.walrust_version = _version([self.walrust, "--version"])

    def env(self, tool: str, backend: str = "s3") -> dict:
        e = super().env("litestream" if tool == "walrust" else tool, backend)
        for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            e.pop(k, None)  # the configuration names the endpoint and the keys
        e["AWS_DEFAULT_REGION"] = "us-east-1"
        return e

    def bin(self, tool: str) -> Path:
        return {"litevault": self.litevault, "litestream": self.litestream,
                "walrust": self.walrust}[tool]


def _version(cmd) -> str:
    try:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
    except (OSError, subprocess.SubprocessError) as e:
        raise bc.BenchError(f"{cmd[0]} does not run: {e}")


# --------------------------------------------------------------------------
# Databases, configurations

def make_dbs(d: Path, n: int) -> list[Path]:
    rnd = random.Random(n)
    width = max(4, len(str(n - 1)))
    out = []
    for i in range(n):
        p = d / f"db{i:0{width}d}.db"
        c = sqlite3.connect(p, isolation_level=None)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=OFF")  # set-up only: the file is complete at close
            c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            c.execute("BEGIN")
            c.executemany("INSERT INTO t(v) VALUES (?)", [(rnd.randbytes(ROW_BYTES),) for _ in range(ROWS)])
            c.execute("COMMIT")
        finally:
            c.close()  # last connection: checkpointed, the WAL removed
        out.append(p)
    return out


def marker_row(seq: int, rnd: random.Random) -> bytes:
    m = b"SEQ#%012d#" % seq
    return m + rnd.randbytes(ROW_BYTES - len(m))


def write_config(tool: str, path: Path, dbdir: Path, endpoint: str, bucket: str, watch: bool) -> None:
    if tool in ("litevault", "litestream"):
        lines = ["dbs:", f"  - dir: {dbdir}", '    pattern: "*.db"',
                 f"    watch: {'true' if watch else 'false'}", "    replica:"]
        lines += ["      " + x for x in bm.s3_replica(endpoint, bucket)(None)]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(f'[s3]\nbucket = "s3://{bucket}/{PREFIX}"\nendpoint = "{endpoint}"\n\n'
                        f'[[databases]]\npath = "{dbdir}/*.db"\n')


def replicate_cmd(tools: FleetTools, tool: str, cfg: Path) -> list:
    if tool == "walrust":
        return [tools.walrust, "--config", cfg, "watch", "--no-metrics"]
    return bm.replicate_config_cmd(tools, tool, cfg)


# --------------------------------------------------------------------------
# Process measurement

def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float | None:
    """utime+stime+cutime+cstime of the process and its living descendants."""
    total, seen = 0, False
    for p in proc_tree(pid):
        f = _stat_fields(p)
        if f:
            seen = True
            total += sum(int(x) for x in f[11:15])
    return total / CLK_TCK if seen else None


def reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class Phase:
    def __init__(self, m: bc.Measured, name: str, server_pid: int | None = None):
        self.m, self.name, self.server_pid = m, name, server_pid
        m.sampler.phase = name
        self.hwm_reset = reset_hwm(m.pid)
        self.t0 = time.monotonic()
        self.cpu0 = cpu_seconds(m.pid)
        self.server0 = cpu_seconds(server_pid) if server_pid else None

    def end(self) -> dict:
        t1 = time.monotonic()
        cpu1 = cpu_seconds(self.m.pid)
        server1 = cpu_seconds(self.server_pid) if self.server_pid else None
        hwm = bc.proc_status(self.m.pid).get("VmHWM")
        self.m.sampler.phase = f"after-{self.name}"
        cpu = cpu1 - self.cpu0 if cpu1 is not None and self.cpu0 is not None else None
        sampled = self.m.sampler.max_rss(self.name)
        peak = max(x for x in (hwm if self.hwm_reset else None, sampled) if x) if (hwm or sampled) else None
        return {"t0": self.t0, "t1": t1, "seconds": t1 - self.t0, "cpu_seconds": cpu,
                "cpu_pct_of_core": 100 * cpu / (t1 - self.t0) if cpu is not None else None,
                "peak_rss_kib": peak, "vmhwm_end_kib": hwm, "vmhwm_was_reset": self.hwm_reset,
                "sampled_max_rss_kib": sampled, "sampled_mean_rss_kib": self.m.sampler.mean_rss(self.name),
                "s3_server_cpu_seconds": (server1 - self.server0 if server1 is not None
                                          and self.server0 is not None else None)}


# --------------------------------------------------------------------------
# The request log

class Tail:
    """New lines of the server's request log, as they come."""

    def __init__(self, path: Path):
        self.path, self.pos, self.buf = path, 0, b""

    def new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if not r.get("setup"):
                out.append(r)
        return out


def db_of(key: str) -> tuple[str, int, int, int] | None:
    """(database stem, level, min TXID, max TXID) of an LTX key of any tool."""
    k = KEY.match(key)
    if not k:
        return None
    db = k.group("db")
    if db.endswith(".db"):
        db = db[:-3]
    return db, int(k.group("level"), 16), int(k.group("min"), 16), int(k.group("max"), 16)


# --------------------------------------------------------------------------
# Markers in LTX files: v0.5 (per-page LZ4 blocks, bench_months.ltx_marker) and
# v0.3 (walrust: one LZ4 frame after the 100-byte header)

def lz4_frame(data: bytes, i: int) -> bytes:
    if data[i:i + 4] != LZ4_MAGIC:
        raise ValueError("not an LZ4 frame")
    flg = data[i + 4]
    i += 6
    if flg & 0x08:
        i += 8  # content size
    if flg & 0x01:
        i += 4  # dictionary id
    i += 1  # header checksum
    out = bytearray()
    while i + 4 <= len(data):
        size = int.from_bytes(data[i:i + 4], "little")
        i += 4
        if size == 0:
            break
        raw, size = size & 0x80000000, size & 0x7FFFFFFF
        blk = data[i:i + size]
        i += size
        if raw:
            out += blk
        else:
            bm.lz4_into(blk, out)
        if flg & 0x10:
            i += 4  # block checksum
    return bytes(out)


def file_marker(data: bytes) -> int | None:
    if data[:4] != b"LTX1":
        raise ValueError("not an LTX file")
    if data[100:104] == LZ4_MAGIC:
        body = lz4_frame(data, 100)
        ms = [int(x.group(1)) for x in bm.MARKER.finditer(body)]
        return max(ms) if ms else None
    try:
        return bm.ltx_marker(data)
    except (ValueError, IndexError):
        ms = [int(x.group(1)) for x in bm.MARKER.finditer(data)]  # uncompressed pages
        if ms:
            return max(ms)
        raise


# --------------------------------------------------------------------------
# One run: one tool, N databases

def run_one(args, tools: FleetTools, base: Path, n: int, tool: str) -> dict:
    d = bc.fresh_dir(base / f"n{n}-{tool}")
    dbdir = d / "dbs"
    dbdir.mkdir()
    t = time.monotonic()
    paths = make_dbs(dbdir, n)
    res: dict = {"tool": tool, "dbs": n, "create_dbs_seconds": round(time.monotonic() - t, 2),
                 "dir": str(d)}
    k = max(1, math.ceil(n / 100))
    writers = sorted({(j * n) // k for j in range(k)})
    names = [p.stem for p in paths]
    res["writers"] = [names[i] for i in writers]
    s3 = bm.CountingS3(d, "s3")
    bucket = f"{SHORT[tool]}-n{n}"
    s3.create_bucket(bucket)
    cfg = d / ("walrust.toml" if tool == "walrust" else f"{tool}.yml")
    write_config(tool, cfg, dbdir, s3.endpoint, bucket, not args.no_watch)
    res["config"] = cfg.read_text()
    env = tools.env(tool)
    if tool == "litevault":
        r = subprocess.run([str(tools.litevault), "config", "check", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60, env=env)
        if r.returncode != 0:
            s3.close()
            raise bc.BenchError(f"litevault config check failed on {cfg}:\n{r.stdout}{r.stderr}")
    log = d / "replicate.log"
    print(f"fleet: N={n} {tool}: start ({k} writer(s) later) ...", file=sys.stderr, flush=True)
    tail = Tail(s3.log)
    first: dict[str, float] = {}
    want = set(names)
    phases: dict[str, dict] = {}
    commits: dict[str, list[float]] = {names[i]: [] for i in writers}
    conns: list[sqlite3.Connection] = []
    t_spawn = time.monotonic()
    m = bc.Measured(replicate_cmd(tools, tool, cfg), env=env, log=log, scratch=d)
    if not m.pid:
        raise bc.BenchError(f"{tool} did not start: {log}")
    m.sampler.phase = "startup"
    t_stop = t_stopped = None
    try:
        def all_first():
            for r in tail.new():
                if r["b"] == bucket and r["m"] == "PUT" and r["s"] == 200:
                    x = db_of(r["k"])
                    if x and x[0] in want and x[0] not in first:
                        first[x[0]] = r["t1"]
            return len(first) == n
        limit = args.startup_timeout if args.startup_timeout else 120 + 0.5 * n
        try:
            bc.wait_for(all_first, limit, 0.1, f"{tool}: first file of each of {n} databases", m.proc)
        except bc.BenchError as e:
            raise bc.BenchError(f"{e} ({len(first)}/{n} had one; log {log})")
        res["startup_seconds"] = max(first.values()) - t_spawn
        res["first_file_seconds"] = {"min": min(first.values()) - t_spawn,
                                     "median": sorted(first.values())[n // 2] - t_spawn}
        # settle: at least --settle-seconds, and until no LTX file was stored for
        # --quiet-seconds (the rest of start-up: snapshots, compaction of the first files)
        t_ready = time.monotonic()
        last_ltx = max(first.values())
        settle_max = args.settle_max if args.settle_max is not None else 120 + 0.2 * n
        while True:
            for r in tail.new():
                if r["b"] == bucket and r["m"] == "PUT" and db_of(r["k"]):
                    last_ltx = max(last_ltx, r["t1"])
            now = time.monotonic()
            if now - t_ready >= args.settle_seconds and now - last_ltx >= args.quiet_seconds:
                res["settled"] = True
                break
            if now - t_ready >= settle_max:
                res["settled"] = False
                break
            if m.proc.poll() is not None:
                raise bc.BenchError(f"{tool} exited during start-up: {log}")
            time.sleep(0.2)
        res["settle_seconds"] = time.monotonic() - t_ready
        res["last_startup_file_seconds"] = last_ltx - t_spawn

        # ---- idle
        ph = Phase(m, "idle", s3.proc.pid)
        end = ph.t0 + args.idle_seconds
        while time.monotonic() < end:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            if m.proc.poll() is not None:
                raise bc.BenchError(f"{tool} exited during the idle phase: {log}")
        phases["idle"] = ph.end()

        # ---- 1% writing
        for i in writers:
            c = sqlite3.connect(paths[i], isolation_level=None, timeout=10, check_same_thread=False)
            c.execute("PRAGMA busy_timeout=10000")
            conns.append(c)
        rnd = random.Random(7 + n)
        jitter = random.Random()
        ph = Phase(m, "write", s3.proc.pid)
        secs = max(1, int(args.write_seconds))
        for s in range(secs):
            for j, i in enumerate(writers):
                # one commit in each writer's slot of each second, at a random point of the
                # slot: a fixed phase against the tools' 1 s tickers would make the lag a
                # constant that depends on luck
                delay = ph.t0 + s + (j + jitter.random()) / len(writers) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                seq = len(commits[names[i]]) + 1
                conns[j].execute("INSERT INTO t(v) VALUES (?)", (marker_row(seq, rnd),))
                commits[names[i]].append(time.monotonic())
            if m.proc.poll() is not None:
                raise bc.BenchError(f"{tool} exited during the writing phase: {log}")
        delay = ph.t0 + args.write_seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        phases["write"] = ph.end()
        m.sampler.phase = "drain"
        time.sleep(args.drain_seconds)
        if m.proc.poll() is not None:
            raise bc.BenchError(f"{tool} exited during the drain: {log}")
    except bc.BenchError as e:
        res["error"] = str(e)
        print(f"fleet: N={n} {tool}: {e}", file=sys.stderr, flush=True)
    finally:
        t_stop = time.monotonic()
        fin = m.stop(signal.SIGINT, timeout=args.stop_timeout)
        t_stopped = time.monotonic()
        for c in conns:
            c.close()
    res.update(rc=fin["rc"], stop_seconds=t_stopped - t_stop, stop_timed_out=fin["timed_out"],
               run_peak_rss_kib=fin["peak_rss_kib"], run_cpu_seconds=fin["cpu_seconds"],
               phases=phases)
    if fin["timed_out"]:
        res["error"] = (res.get("error", "") + f" SIGINT did not stop it within {args.stop_timeout:g} s "
                        "(killed)").strip()

    # ---- requests: wait for the server's copier, then count
    recs = [r for r in s3.records() if r["b"] == bucket]
    n_l0 = sum(1 for r in recs if r["m"] == "PUT" and r["s"] == 200 and bm.L0_KEY.match(r["k"])
               and "partNumber" not in r["q"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(s3.l0_files()) < n_l0:
        time.sleep(0.2)
    l0 = [f for f in s3.l0_files() if f["bucket"] == bucket]
    s3.close()

    def phase_of(r) -> str:
        t1 = r["t1"]
        if t1 < t_spawn:
            return "before"
        for name in ("idle", "write"):
            p = phases.get(name)
            if p and p["t0"] <= t1 <= p["t1"]:
                return name
        if "idle" not in phases or t1 < phases["idle"]["t0"]:
            return "startup"
        if t1 <= t_stop:
            return "between" if "write" not in phases or t1 < phases["write"]["t0"] else "drain"
        return "shutdown"

    counts: dict[str, dict[str, int]] = {}
    for r in recs:
        c = bm.classify(r)
        counts.setdefault(phase_of(r), {}).setdefault(c, 0)
        counts[phase_of(r)][c] += 1
    res["requests"] = counts
    res["http_errors"] = {p: sum(1 for r in recs if r["s"] >= 400 and phase_of(r) == p)
                          for p in {phase_of(r) for r in recs}}
    for name, p in phases.items():
        by = {kd: 0 for kd in KINDS}
        for c, v in counts.get(name, {}).items():
            by[bm.kind(c)] += v
        p["requests"] = by
        p["requests_per_hour"] = {kd: v * 3600 / p["seconds"] for kd, v in by.items()}
        p["all_requests_per_hour"] = sum(by.values()) * 3600 / p["seconds"]
        p["deleted_keys"] = sum(r.get("delete_keys", 0) + (r["m"] == "DELETE")
                                for r in recs if phase_of(r) == name)

    # ---- lag
    if "write" in phases:
        res["lag"] = lag(tool, recs, l0, s3, commits, phases["write"]["t0"], t_stop)
    res["log_errors"] = sum(1 for line in log.read_text(errors="replace").splitlines()
                            if re.search(r"\b(ERROR|error|panic)", line))
    res["log_tail"] = log.read_text(errors="replace")[-800:]
    if not args.keep:
        for p in paths:
            bc.remove_db(p)
        shutil.rmtree(s3.capture, ignore_errors=True)
    return res


def lag(tool: str, recs: list[dict], l0: list[dict], s3, commits: dict[str, list[float]],
        t_w0: float, t_stop: float) -> dict:
    out: dict = {"commits": sum(len(v) for v in commits.values())}
    # TXID counting (litevault, Litestream)
    if tool != "walrust":
        puts: dict[str, list[tuple[float, int, int, int]]] = {}
        for r in recs:
            if r["m"] == "PUT" and r["s"] == 200 and "partNumber" not in r["q"]:
                x = db_of(r["k"])
                if x and x[0] in commits:
                    puts.setdefault(x[0], []).append((r["t1"], x[1], x[2], x[3], r["t0"]))
        lags, unseen, negative, bases, put_ms = [], 0, 0, {}, []
        for db, times in commits.items():
            ps = sorted(puts.get(db, []))
            base = max((p[3] for p in ps if p[0] < t_w0), default=0)
            bases[db] = base
            for kx, tc in enumerate(times, 1):
                txid = base + kx
                put = next(((t1, t0) for t1, lvl, lo, hi, t0 in ps
                            if lvl == 0 and lo <= txid <= hi and t1 >= t_w0 and t1 <= t_stop), None)
                hit = put and put[0]
                if hit is None:
                    unseen += 1
                elif hit < tc:
                    negative += 1
                else:
                    lags.append(1000 * (hit - tc))
                    put_ms.append(1000 * (put[0] - put[1]))
        # Of each lag, the part the server took (request start -> end): the
        # rest was spent before the PUT reached it.
        out["txid"] = _summary(lags, unseen) | {"negative": negative, "base_txids": bases,
                                                "put_ms_p50": bc.pct(put_ms, 50),
                                                "put_ms_p90": bc.pct(put_ms, 90),
                                                "put_ms": [round(x, 1) for x in put_ms]}
    # markers in the captured L0 files (every tool)
    files: dict[str, list[tuple[float, int]]] = {}
    bad = 0
    for f in l0:
        x = db_of(f["key"])
        if not x or x[0] not in commits or not f["file"] or f["t1"] < t_w0 or f["t1"] > t_stop:
            continue
        try:
            mk = file_marker((s3.capture / f["file"]).read_bytes())
        except (OSError, ValueError, IndexError):
            bad += 1
            continue
        if mk is not None:
            files.setdefault(x[0], []).append((f["t1"], mk))
    lags, unseen = [], 0
    for db, times in commits.items():
        fs = sorted(files.get(db, []))
        for seq, tc in enumerate(times, 1):
            hit = next((t1 for t1, mk in fs if mk >= seq), None)
            if hit is None:
                unseen += 1
            else:
                lags.append(1000 * (hit - tc))
    out["marker"] = _summary(lags, unseen) | {"unreadable_files": bad,
                                              "files_with_marker": sum(len(v) for v in files.values())}
    mk = out["marker"]
    if mk["seen"] or not mk["unreadable_files"]:
        out["method"], out["primary"] = "marker", mk
    elif tool != "walrust":  # the files could not be decoded: fall back on counting
        out["method"], out["primary"] = "txid", out["txid"]
    else:
        out["method"], out["primary"] = "none", None
    return out


def _summary(lags: list[float], unseen: int) -> dict:
    return {"seen": len(lags), "unseen": unseen, "p50": bc.pct(lags, 50), "p90": bc.pct(lags, 90),
            "p99": bc.pct(lags, 99), "max": max(lags) if lags else None,
            "lags_ms": [round(x, 1) for x in lags]}


# --------------------------------------------------------------------------
# Output

def tables(runs: list[dict], tools_: list[str]) -> str:
    def get(n, tool):
        return next((r for r in runs if r["dbs"] == n and r["tool"] == tool), None)

    def ph(r, p, key):
        return (r or {}).get("phases", {}).get(p, {}).get(key)

    ns = sorted({r["dbs"] for r in runs})
    rows = []
    for n in ns:
        for p in ("idle", "write"):
            lv = get(n, "litevault")
            for tool in tools_:
                r = get(n, tool)
                if r is None:
                    continue
                q = r.get("phases", {}).get(p)
                if not q:
                    rows.append([n, LABEL[tool], p, "failed: " + (r.get("error") or "?")[:80]]
                                + [""] * 11)
                    continue
                lg = (r.get("lag") or {}).get("primary") if p == "write" else None
                row = [n, LABEL[tool], "idle" if p == "idle" else "write 1%",
                       bc.fmt(q["cpu_seconds"], 2), bc.fmt(q["cpu_pct_of_core"], 1),
                       bc.fmt(bc.mib(q["peak_rss_kib"]), 1),
                       f"{q['requests_per_hour']['PUT']:.0f}", f"{q['all_requests_per_hour']:.0f}",
                       bc.fmt(lg["p50"], 0) if lg else ("–" if p == "idle" else "n/a"),
                       bc.fmt(lg["p99"], 0) if lg else ("–" if p == "idle" else "n/a")]
                for other in ("litestream", "walrust"):
                    o = get(n, other)
                    if tool == "litevault" and o is not None:
                        row += [bc.fmt(bc.ratio(ph(lv, p, "cpu_seconds"), ph(o, p, "cpu_seconds")), 2),
                                bc.fmt(bc.ratio(ph(lv, p, "peak_rss_kib"), ph(o, p, "peak_rss_kib")), 2)]
                    else:
                        row += ["", ""]
                sc = q.get("s3_server_cpu_seconds")
                row.append(bc.fmt(100 * sc / q["seconds"], 0) if sc is not None else "–")
                rows.append(row)
    t1 = bc.table(["N", "tool", "phase", "CPU s", "CPU % of a core", "peak RSS MiB", "PUTs/h",
                   "requests/h", "lag p50 ms", "lag p99 ms", "CPU lv/Ls", "RSS lv/Ls",
                   "CPU lv/wr", "RSS lv/wr", "S3 server CPU %"], rows)
    rows2 = []
    for n in ns:
        for tool in tools_:
            r = get(n, tool)
            if r is None:
                continue
            lg = r.get("lag") or {}
            pr = lg.get("primary")
            startup_req = sum(r.get("requests", {}).get("startup", {}).values())
            settle = ("–" if r.get("settle_seconds") is None else
                      f"{r['settle_seconds']:.0f}" + ("" if r.get("settled") else " (not quiet)"))
            rows2.append([n, LABEL[tool], len(r.get("writers", [])), bc.fmt(r.get("startup_seconds"), 2),
                          bc.fmt(r.get("last_startup_file_seconds"), 1), settle, startup_req, lg.get("commits", "–"),
                          f"{pr['seen']}" if pr else "–", f"{pr['unseen']}" if pr else "–",
                          bc.fmt(pr["p90"], 0) if pr else "–", lg.get("method", "–"),
                          r.get("rc"), bc.fmt(r.get("stop_seconds"), 1),
                          bc.fmt(bc.mib(r.get("run_peak_rss_kib")), 1), r.get("log_errors", "–"),
                          (r.get("error") or "")[:100]])
    t2 = bc.table(["N", "tool", "writers", "start-up s (all first files)", "last start-up file s",
                   "settle s", "start-up requests",
                   "commits", "seen", "never seen", "lag p90 ms", "lag method", "rc (SIGINT)",
                   "stop s", "peak RSS MiB (run)", "log error lines", "error"], rows2)
    return f"{t1}\n\n{t2}"


def notes_for(runs: list[dict], tools_: list[str]) -> list[str]:
    notes = ["lag: commit returned -> end of the PUT (server clock) of the first level-0 file holding "
             "it, found by a marker in the inserted row (TXID counting, in the JSON, is not used: "
             "Litestream 0.5 gives one TXID per sync, walrust's TXIDs count pages)",
             "CPU: utime+stime of the tool (and its children) over the phase; RSS: VmHWM reset at the "
             "start of the phase (clear_refs 5) and the 10 ms sampler, the larger; requests/h: "
             "count in the phase * 3600 / phase seconds",
             "the S3 server (moto, Python) and this script share the machine's cores with the tool",
             "a ratio shown as – has a zero (CPU below the 10 ms clock tick) or missing figure"]
    if "walrust" in tools_:
        notes.append("walrust: glob `[[databases]] path = \"<dir>/*.db\"` in walrust.toml (no directory "
                     "mode, no watching for new files), credentials from AWS_* variables, default "
                     "shadow-WAL loop, --no-metrics (its HTTP metrics server off)")
    for r in runs:
        lg = r.get("lag") or {}
        if lg.get("method") == "txid":
            notes.append(f"N={r['dbs']} {r['tool']}: L0 files not decodable "
                         f"({lg['marker']['unreadable_files']}): lag by TXID counting (assumes one TXID "
                         "per commit)")
        elif "txid" in lg and lg["marker"]["seen"] and lg["txid"]["p50"] is not None:
            a, b = lg["txid"]["p50"], lg["marker"]["p50"]
            if abs(a - b) > 50 or lg["txid"]["negative"] or lg["txid"]["unseen"] != lg["marker"]["unseen"]:
                notes.append(f"N={r['dbs']} {r['tool']}: TXID counting would give lag p50 {a:.0f} ms, "
                             f"{lg['txid']['unseen']} never seen (marker: {b:.0f} ms, "
                             f"{lg['marker']['unseen']}): several commits per TXID")
        if lg and lg.get("method") == "none":
            notes.append(f"N={r['dbs']} walrust: lag not measurable (no marker found in "
                         f"{lg['marker']['files_with_marker']} files, {lg['marker']['unreadable_files']} "
                         "unreadable)")
        if r.get("rc") not in (0, None):
            notes.append(f"N={r['dbs']} {r['tool']}: exit code {r['rc']} after SIGINT")
    base = {r["tool"]: (r.get("lag") or {}).get("primary") for r in runs if r["dbs"] == 1}
    for r in runs:
        b = base.get(r["tool"])
        p = (r.get("lag") or {}).get("primary")
        if r["dbs"] > 1 and b and p and b["p50"] and p["p50"] is not None:
            notes.append(f"N={r['dbs']} {r['tool']}: lag p50 {p['p50']:.0f} ms with 1% writing vs "
                         f"{b['p50']:.0f} ms with one database ({p['p50'] / b['p50']:.2f}x)")
    return notes


def meta(args, tools: FleetTools) -> dict:
    def git(*a):
        r = subprocess.run(["git", "-C", str(bc.REPO), *a], capture_output=True, text=True)
        return r.stdout.strip()
    try:
        import moto
        moto_version = moto.__version__
    except Exception:
        moto_version = None
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "uptime": up,
            "loadavg": os.getloadavg(), "cpus": os.cpu_count(),
            "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
            "git_head": git("rev-parse", "HEAD"), "sqlite": sqlite3.sqlite_version, "moto": moto_version,
            "litevault": str(tools.litevault_src) if tools.litevault_src else None,
            "litevault_sha256": tools.litevault_sha256, "litevault_version": tools.litevault_version,
            "litevault_mtime": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
                tools.litevault_src.stat().st_mtime)) if tools.litevault_src else None),
            "litestream": str(tools.litestream) if tools.litestream else None,
            "litestream_version": tools.litestream_version,
            "walrust": str(tools.walrust) if tools.walrust else None, "walrust_version": tools.walrust_version}


def header(mt: dict) -> str:
    return "\n".join([
        f"- command: `{mt['command']}`",
        f"- date: {mt['date_utc']}; {mt['cpus']} CPUs; `uptime` at start: {mt['uptime']}",
        f"- litevault: {mt['litevault']} sha256 {mt['litevault_sha256']} ({mt['litevault_version']}, "
        f"built {mt['litevault_mtime']}); git HEAD {mt['git_head'][:12]}",
        f"- Litestream: {mt['litestream_version']} ({mt['litestream']}); walrust: {mt['walrust_version']} "
        f"({mt['walrust']}); moto {mt['moto']}; SQLite {mt['sqlite']}; RLIMIT_NOFILE {mt['nofile_limit']}"])


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default=None, help="database counts (default 10,100,1000; --quick 1,10); "
                                                "N=1 is added as the lag baseline")
    ap.add_argument("--no-baseline", action="store_true", help="do not add N=1")
    ap.add_argument("--tools", default=",".join(TOOLS), help="default %(default)s")
    ap.add_argument("--idle-seconds", type=float, default=None, help="default 60; --quick 10")
    ap.add_argument("--write-seconds", type=float, default=None, help="default 60; --quick 10")
    ap.add_argument("--settle-seconds", type=float, default=None,
                    help="at least this long after the last first file before the idle phase, so "
                         "that the first L1 compaction (30 s) is in start-up (default 35; --quick 2)")
    ap.add_argument("--quiet-seconds", type=float, default=None,
                    help="... and until no LTX file was stored for this long (default 5; --quick 2)")
    ap.add_argument("--settle-max", type=float, default=None,
                    help="but no longer than this (default 120 + N/5)")
    ap.add_argument("--drain-seconds", type=float, default=5.0,
                    help="after the writing phase, before SIGINT (default %(default)s)")
    ap.add_argument("--startup-timeout", type=float, default=None,
                    help="seconds to wait for every first file (default 120 + N/2)")
    ap.add_argument("--stop-timeout", type=float, default=120.0, help="SIGINT to exit (default %(default)s)")
    ap.add_argument("--no-watch", action="store_true", help="`watch: false` in the YAML (default true)")
    ap.add_argument("--quick", action="store_true", help="smoke run: --dbs 1,10, 10 s phases")
    ap.add_argument("--keep", action="store_true", help="keep databases and captured files")
    ap.add_argument("--workdir", default="/tmp/litevault-bench-fleet")
    ap.add_argument("--out", help="results JSON (default WORKDIR/results.json)")
    ap.add_argument("--litevault", help="litevault binary (default REPO/target/release/litevault)")
    ap.add_argument("--litestream", help="litestream binary (default: from PATH)")
    ap.add_argument("--walrust", help="walrust binary (default ~/.cache/litevault/walrust/bin/walrust, "
                                      "then PATH)")
    ap.add_argument("--deadline", type=float, default=None,
                    help="abort after this many seconds (default: from the plan)")
    args = ap.parse_args()
    q = args.quick
    args.dbs = args.dbs or ("1,10" if q else "10,100,1000")
    args.idle_seconds = args.idle_seconds if args.idle_seconds is not None else (10.0 if q else 60.0)
    args.write_seconds = args.write_seconds if args.write_seconds is not None else (10.0 if q else 60.0)
    args.settle_seconds = args.settle_seconds if args.settle_seconds is not None else (2.0 if q else 35.0)
    args.quiet_seconds = args.quiet_seconds if args.quiet_seconds is not None else (2.0 if q else 5.0)
    ns = sorted({int(x) for x in args.dbs.split(",") if x.strip()} | (set() if args.no_baseline else {1}))
    if any(n < 1 for n in ns):
        ap.error("--dbs: positive counts")
    tools_ = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in tools_ if t not in TOOLS]
    if bad or not tools_:
        ap.error(f"--tools: from {','.join(TOOLS)}")
    if args.deadline is None:
        per = sum(60 + 0.8 * n + args.settle_seconds + args.idle_seconds + args.write_seconds
                  + args.drain_seconds + 0.02 * n for n in ns)
        args.deadline = 600 + 1.5 * per * len(tools_)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the tools
    need = 8 * max(ns) + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"bench_fleet: warning: RLIMIT_NOFILE hard limit {hard} < ~{need} needed for "
              f"{max(ns)} databases", file=sys.stderr)

    workdir, out_path, _ = bc.start_run(args)
    started = time.monotonic()
    runs: list[dict] = []
    results = {}
    rc = 0
    try:
        tools = FleetTools(args, workdir, tools_)
        mt = meta(args, tools)
        results = {"meta": mt, "args": vars(args), "dbs": ns, "tools": tools_, "runs": runs}
        print(f"fleet: N in {ns}, tools {tools_}, idle {args.idle_seconds:g} s, writing "
              f"{args.write_seconds:g} s, deadline {args.deadline:.0f} s", file=sys.stderr, flush=True)
        base = workdir / "runs"
        for n in ns:
            for tool in tools_:
                t = time.monotonic()
                try:
                    r = run_one(args, tools, base, n, tool)
                except bc.BenchError as e:
                    r = {"tool": tool, "dbs": n, "error": str(e)}
                    print(f"fleet: N={n} {tool}: {e}", file=sys.stderr, flush=True)
                r["elapsed_s"] = round(time.monotonic() - t, 1)
                runs.append(r)
                out_path.write_text(json.dumps(results, indent=1, default=str))
                print(f"fleet: N={n} {tool}: done in {r['elapsed_s']} s", file=sys.stderr, flush=True)
    except (bc.BenchError, TimeoutError, KeyboardInterrupt) as e:
        print(f"bench_fleet: {type(e).__name__}: {e}", file=sys.stderr)
        rc = 1
    finally:
        signal.alarm(0)
        bc.kill_all()
    if results:
        results["meta"]["uptime_at_end"] = subprocess.run(["uptime"], capture_output=True,
                                                          text=True).stdout.strip()
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        md = tables(runs, tools_)
        nt = notes_for(runs, tools_)
        results["markdown"], results["notes"] = md, nt
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1, default=str))
        print(f"\n## Fleet: {', '.join(LABEL[t] for t in tools_)}; N = {', '.join(map(str, ns))}; "
              f"idle {args.idle_seconds:g} s, 1% writing {args.write_seconds:g} s\n")
        print(header(results["meta"]))
        print(f"- `uptime` at end: {results['meta']['uptime_at_end']}\n")
        print(md + "\n")
        for x in nt:
            print(f"- {x}")
        print(f"\n(total {results['elapsed_s']} s; results in {out_path})", flush=True)
    if any(r.get("error") for r in runs):
        rc = rc or 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
