#!/usr/bin/env python3
"""The Django shop (tests/apps/django_shop) to PostgreSQL and back, timed.

    python3 scripts/bench_django.py [--rows 5000] [--jobs 2]

Fills the shop's SQLite database through Django's ORM (`shop_tool.py fill
N`: N products, orders and order lines, with customers, tags, users...),
runs Django's migrations on a throwaway PostgreSQL cluster (pg_bench.py's
settings), then times, with the release build:

  export  `litevault export shop.sqlite3 URL --data-only --truncate --jobs N`
          into the schema Django made (verification included)
  import  `litevault import URL back.sqlite3` (verification included)

and checks what Django reads: every model's rows from PostgreSQL and from
the imported file against the original (`shop_tool.py dump`), then `check`
(keys resolve, lookups by UUID and duration) and `write` on both. Prints a
markdown table. Needs Django 5.2 and psycopg 3 (scripts/test.sh installs
them) and PostgreSQL.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pg_bench import ROOT, Cluster, timed  # noqa: E402

APP = os.path.join(ROOT, "tests/apps/django_shop")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    exe = os.path.join(ROOT, "target/release/litevault")
    if not os.path.exists(exe):
        sys.exit("build it first: cargo build --release")
    work = tempfile.mkdtemp(prefix="litevault-django-")
    app = os.path.join(work, "app")
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    c = Cluster()
    try:
        url = c.createdb("shop")
        env = dict(os.environ, SHOP_SQLITE=os.path.join(work, "shop.sqlite3"), SHOP_PG_HOST="127.0.0.1",
                   SHOP_PG_PORT=str(c.port), SHOP_PG_DB="shop", SHOP_PG_USER="postgres",
                   PYTHONDONTWRITEBYTECODE="1", LITEVAULT_LOG="warn")

        def py(*args, env=env):
            p = subprocess.run(["python3", *args], cwd=app, env=env, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit("python3 %s failed:\n%s\n%s" % (" ".join(args), p.stdout, p.stderr))
            return p.stdout

        for db in ("default", "pg"):
            py("manage.py", "migrate", "--database", db, "--no-input", "-v", "0")
        fill_s, _ = timed(["python3", "shop_tool.py", "fill", str(a.rows)], cwd=app, env=env)
        original = py("shop_tool.py", "dump", "default")
        secs, p = timed([exe, "export", env["SHOP_SQLITE"], url, "--data-only", "--truncate",
                         "--jobs", str(a.jobs)], env=env)
        if p.returncode != 0:
            sys.exit("export failed:\n%s\n%s" % (p.stdout, p.stderr))
        rows = int(re.search(r"exported \d+ table\(s\), (\d+) row\(s\)", p.stdout).group(1))
        same_pg = py("shop_tool.py", "dump", "pg") == original
        back = os.path.join(work, "back.sqlite3")
        isecs, ip = timed([exe, "import", url, back], env=env)
        if ip.returncode != 0:
            sys.exit("import failed:\n%s\n%s" % (ip.stdout, ip.stderr))
        benv = dict(env, SHOP_SQLITE=back)
        same_back = py("shop_tool.py", "dump", "default", env=benv) == original
        models = len({line.split(" ", 1)[0] for line in original.splitlines()})
        checks = {}
        for name, e, db in (("PostgreSQL", env, "pg"), ("imported SQLite", benv, "default")):
            ok = [subprocess.run(["python3", "shop_tool.py", cmd, db], cwd=app, env=e,
                                 capture_output=True).returncode == 0 for cmd in ("check", "write")]
            checks[name] = "%d/2" % sum(ok)
        # pgloader, data only, into a second database Django migrated.
        pgl = None
        if shutil.which("pgloader"):
            c.createdb("shop_pgl")
            penv = dict(env, SHOP_PG_DB="shop_pgl")
            py("manage.py", "migrate", "--database", "pg", "--no-input", "-v", "0", env=penv)
            psecs, pp = timed(["pgloader", "--with", "data only", "--with", "truncate",
                               "sqlite://" + env["SHOP_SQLITE"], c.url("shop_pgl")], env=penv)
            if pp.returncode != 0:
                pgl = "| pgloader --with 'data only' --with truncate | | %.2f | | failed (exit %d) | |" % (
                    psecs, pp.returncode)
            else:
                d = subprocess.run(["python3", "shop_tool.py", "dump", "pg"], cwd=app, env=penv,
                                   capture_output=True, text=True)
                got = d.stdout.splitlines() if d.returncode == 0 else []
                want = set(original.splitlines())
                same = len(want & set(got))
                ok = [subprocess.run(["python3", "shop_tool.py", cmd, "pg"], cwd=app, env=penv,
                                     capture_output=True).returncode == 0 for cmd in ("check", "write")]
                # Which fields differ: model and field, by count.
                by_field = {}
                got_set = set(got)
                for line in want - got_set:
                    key = " ".join(line.split(" ")[0:1] + line.split(" ")[2:3])
                    by_field[key] = by_field.get(key, 0) + 1
                for key, n in sorted(by_field.items(), key=lambda kv: -kv[1])[:12]:
                    print("pgloader: %d value(s) of %s differ" % (n, key), file=sys.stderr)
                for cmd in ("check", "write"):
                    r = subprocess.run(["python3", "shop_tool.py", cmd, "pg"], cwd=app, env=penv,
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        tail = (r.stdout + r.stderr).strip().splitlines()[-1:]
                        print("pgloader: %s fails: %s" % (cmd, tail), file=sys.stderr)
                pgl = "| pgloader --with 'data only' --with truncate | | %.2f | | %s | %d/2 |" % (
                    psecs, "identical" if d.returncode == 0 and set(got) == want else
                    "%d of %d fields identical%s" % (same, len(want), "" if d.returncode == 0 else
                                                     " (dump failed)"), sum(ok))
        print("| step | rows | seconds | rows/s | Django reads back | check, write |")
        print("|---|---:|---:|---:|---|---|")
        print("| fill through the ORM (SQLite) | | %.1f | | | |" % fill_s)
        print("| export --data-only --truncate --jobs %d | %d | %.2f | %.0f | %s (%d models) | %s |"
              % (a.jobs, rows, secs, rows / secs, "identical" if same_pg else "DIFFERENT", models,
                 checks["PostgreSQL"]))
        print("| import | %d | %.2f | %.0f | %s (%d models) | %s |"
              % (rows, isecs, rows / isecs, "identical" if same_back else "DIFFERENT", models,
                 checks["imported SQLite"]))
        if pgl:
            print(pgl)
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
