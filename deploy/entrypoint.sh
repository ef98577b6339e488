#!/bin/sh
# Container entrypoint: restore the database on boot when the volume is
# empty, then run the app under `litevault replicate --exec`, which
# replicates every commit, forwards SIGINT/SIGTERM to the app and, when the
# app exits, ships what is left and exits with the app's code.
#
#   entrypoint.sh APP [ARGS...]        (default: the chat example)
set -eu

: "${LITEVAULT_DB:=/data/app.db}"
: "${LITEVAULT_CONFIG:=/etc/litevault.yml}"
export LITEVAULT_DB LITEVAULT_CONFIG

if [ -z "${LITEVAULT_REPLICA_URL:-}" ]; then
  echo "entrypoint: LITEVAULT_REPLICA_URL is not set; set it to the replica," \
       "e.g. s3://bucket/app?endpoint=https://fly.storage.tigris.dev&region=auto" >&2
  exit 64
fi
export LITEVAULT_REPLICA_URL

mkdir -p "$(dirname "$LITEVAULT_DB")"

# 0. Started as root with LITEVAULT_USER set (the image sets it): a volume
#    mounted over the database's directory is root-owned on Fly.io and in
#    Docker, so hand that directory (and whatever in it is not yet the
#    user's) to LITEVAULT_USER, then run the rest of this script, litevault
#    and the app as that user, with no capabilities left.
if [ "$(id -u)" = 0 ] && [ -n "${LITEVAULT_USER:-}" ]; then
  if ! uid=$(id -u "$LITEVAULT_USER" 2>/dev/null); then
    echo "entrypoint: LITEVAULT_USER=$LITEVAULT_USER is not a user of this" \
         "image; create it (useradd) or unset LITEVAULT_USER to run as root" >&2
    exit 67
  fi
  gid=$(id -g "$LITEVAULT_USER")
  find "$(dirname "$LITEVAULT_DB")" -xdev \( \! -user "$uid" -o \! -group "$gid" \) \
    -exec chown "$uid:$gid" {} +
  exec setpriv --reuid="$uid" --regid="$gid" --init-groups --inh-caps=-all \
    --bounding-set=-all -- sh "$0" "$@"
fi

# 1. Restore on boot: only when the volume has no database, and only if the
#    replica holds something (a first deploy starts empty).
litevault restore -o "$LITEVAULT_DB" --config "$LITEVAULT_CONFIG" \
  --if-db-not-exists --if-replica-exists

# 2. A first deploy: create the (empty) database in WAL mode, so that the
#    replicator can open it before the app creates its schema. The replica
#    is empty here (step 1 restored nothing), so this cannot hide data.
if [ ! -e "$LITEVAULT_DB" ]; then
  sqlite3 "$LITEVAULT_DB" 'PRAGMA journal_mode=WAL;' >/dev/null
fi

# 3. Replicate while the app runs.
if [ "$#" -eq 0 ]; then
  set -- chat
fi
quoted=""
for arg in "$@"; do
  quoted="$quoted '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done
#    LITEVAULT_LEASE_WAIT (e.g. 2m): when the previous instance still holds
#    the replica's lease (an overlapping deploy), wait for its clean stop
#    instead of failing; what it shipped after step 1 is then restored over
#    the database before the app starts. The default, 0s, fails at once.
#    LITEVAULT_PLACEHOLDER_ADDR (e.g. 0.0.0.0:8080, the app's address):
#    meanwhile answer requests there with 503 and Retry-After: 1, so that a
#    platform whose startup probe gates the old instance's stop (Cloud Run,
#    with a TCP startup probe) stops it.
set -- --lease-wait "${LITEVAULT_LEASE_WAIT:-0s}"
if [ -n "${LITEVAULT_PLACEHOLDER_ADDR:-}" ]; then
  set -- "$@" --placeholder-addr "$LITEVAULT_PLACEHOLDER_ADDR"
fi
exec litevault replicate --config "$LITEVAULT_CONFIG" "$@" --exec "exec$quoted"
