#!/usr/bin/env bash
# Regenerates tests/fixtures/litestream-v03/: a file:// replica written by the
# real Litestream v0.3.13 while a script writes to the database (two
# generations, several snapshots and WAL indexes), the modification time of
# each of its files (mtimes.tsv), and the result of Litestream v0.3.13's own
# `litestream restore` for each case (expected.tsv).
#
# Needs `litestream` 0.3.13 (LITESTREAM=path, default: the npm package
# @flydotio/litestream-linux-x64@1.0.1 under /tmp/ls03) and the sqlite3 shell.
# Usage: scripts/make-v03-fixtures.sh [OUT_DIR]
set -euo pipefail

LS=${LITESTREAM:-/tmp/ls03/node_modules/@flydotio/litestream-linux-x64/litestream}
if [[ ! -x $LS ]]; then
  npm install --prefix /tmp/ls03 @flydotio/litestream-linux-x64@1.0.1 >/dev/null
fi
"$LS" version | grep -qx 'v0.3.13' || { echo "need litestream v0.3.13, got $("$LS" version)" >&2; exit 1; }
OUT=$(realpath -m "${1:-tests/fixtures/litestream-v03}")
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
db=$work/app.db
replica=$work/replica
cat >"$work/litestream.yml" <<YML
dbs:
  - path: $db
    monitor-interval: 100ms
    checkpoint-interval: 4s
    replicas:
      - url: file://$replica
        sync-interval: 100ms
        snapshot-interval: 5s
        retention: 24h
YML

sql() { sqlite3 -cmd '.timeout 5000' "$db" "$@"; }
# One writer connection held open (fd 3), as an application's: its
# transactions share a WAL until Litestream's checkpoints start a new index.
open_writer() { exec 3> >(exec sqlite3 -cmd '.timeout 5000' "$db" >/dev/null); }
close_writer() { exec 3>&-; sleep 0.5; }
# Inserts rows $1..$2, one transaction each, with pauses so that Litestream
# syncs (and now and then checkpoints) in between.
batch() {
  for i in $(seq "$1" "$2"); do
    echo "INSERT INTO t(id, v) VALUES ($i, printf('row %d %s', $i, hex(randomblob(40))));" >&3
    sleep 0.3
  done
}
start() { "$LS" replicate -config "$work/litestream.yml" >>"$work/litestream.log" 2>&1 & pid=$!; sleep 1.5; }
stop() { kill -INT "$pid"; wait "$pid" || true; pid=; }

sql 'PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);' >/dev/null
start
open_writer
batch 1 12
sleep 1.2
mid=$(date -u +%Y-%m-%dT%H:%M:%SZ)   # a time inside the first generation
sleep 1.2
batch 13 30
close_writer
sleep 2
stop
# Change the database outside Litestream: the truncating checkpoint loses the
# WAL Litestream shadowed, so it starts a new generation when restarted.
sql 'PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t(id, v) VALUES (1000, 1000);' >/dev/null
start
open_writer
batch 31 45
close_writer
sleep 2
stop

gens=($(ls -tr "$replica/generations"))
[[ ${#gens[@]} -ge 2 ]] || { echo "expected two generations, got ${gens[*]}" >&2; exit 1; }
first=${gens[0]}
# The WAL index in the middle of the first generation.
indexes=($(ls "$replica/generations/$first/wal" | sed -n 's/^\([0-9a-f]\{8\}\)_.*/\1/p' | sort -u))
idx=${indexes[$(( ${#indexes[@]} / 2 ))]}

rm -rf "$OUT/replica"
mkdir -p "$OUT"
cp -a "$replica" "$OUT/replica"
(cd "$OUT/replica" && find . -type f | sort | while read -r f; do
  printf '%s\t%s\n' "${f#./}" "$(stat -c %.9Y "$f" | tr -d .)"
done) >"$OUT/mtimes.tsv"

# The expected results, by Litestream v0.3.13's own restore.
expect() { # name, flags...
  local name=$1; shift
  local o=$work/expected-$name.db
  "$LS" restore -o "$o" "$@" "file://$replica" >>"$work/restore.log" 2>&1
  printf '%s\t%s\t%s\t%s\n' "$name" "$*" "$(sha256sum "$o" | cut -c1-64)" \
    "$(sqlite3 "$o" 'SELECT count(*) FROM t')"
}
{
  printf 'case\tlitestream restore flags\tsha256\trows\n'
  expect latest
  expect timestamp -timestamp "$mid"
  expect generation -generation "$first"
  expect index -generation "$first" -index "$idx"
} >"$OUT/expected.tsv"
cat "$OUT/expected.tsv"
du -sh "$OUT/replica"
