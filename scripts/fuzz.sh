#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time and reports,
# per target, the inputs executed, the speed and any finding.
#
#   scripts/fuzz.sh            30 seconds per target
#   scripts/fuzz.sh 300        5 minutes per target
#   scripts/fuzz.sh 60 wal_parse replica_url   only these targets
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz
# --locked`); without them it says so and exits 0. scripts/test.sh installs
# cargo-fuzz and runs the codec targets for 20 seconds each wherever a
# nightly toolchain is installed. Exits 1 when a target finds a crash, a
# panic, a timeout (-timeout) or memory over -rss_limit_mb (one allocation
# over it too): the input is saved under fuzz/artifacts/<target>/, and the
# message says how to replay it. Exits 2 when a target does not build.
#
# The builds (nightly, AddressSanitizer, debug assertions) go to fuzz/target,
# whatever CARGO_TARGET_DIR says, so they never disturb the normal build.
# The codec targets (ltx_decode, ltx_structured, wal_parse) need only
# litevault-ltx: asked for alone, they are built without the library
# (cargo feature `library` of fuzz/Cargo.toml), which is much quicker the
# first time.
#
# Each target runs in one process (one core), one after the other. New
# inputs go to fuzz/corpus/<target> (not committed); the committed seeds in
# fuzz/seeds/<target> are read as a second corpus.
set -uo pipefail

secs="${1:-30}"
shift || true
all_targets=(ltx_decode ltx_structured wal_parse config_parse replica_url restore_chain)
codec_targets=" ltx_decode ltx_structured wal_parse "
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=("${all_targets[@]}")
fi
case "$secs" in
  '' | *[!0-9]*)
    echo "fuzz: the first argument is seconds per target, got '$secs'" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz" || exit 2

if ! cargo +nightly --version > /dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
  echo "fuzz: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  exit 0
fi

# The same options for the builds and the runs (`cargo fuzz run` builds
# again, and any other option would rebuild everything).
opts=(--target-dir "$root/fuzz/target")
codec_only=1
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $t "*) ;;
    *)
      echo "fuzz: no target '$t' (targets: ${all_targets[*]})" >&2
      exit 2
      ;;
  esac
  case "$codec_targets" in
    *" $t "*) ;;
    *) codec_only=0 ;;
  esac
done
if [ "$codec_only" -eq 1 ]; then
  opts+=(--no-default-features)
fi

echo "fuzz: building ${targets[*]} (nightly, address sanitizer, debug assertions)"
mkdir -p target
build_start=$(date +%s)
for t in "${targets[@]}"; do
  if ! cargo +nightly fuzz build "${opts[@]}" "$t" > "target/fuzz-build-$t.log" 2>&1; then
    echo "fuzz: building $t failed:" >&2
    tail -n 30 "target/fuzz-build-$t.log" >&2
    exit 2
  fi
done
echo "fuzz: built in $(($(date +%s) - build_start))s"

found=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  log="target/fuzz-run-$t.log"
  start=$(date +%s)
  cargo +nightly fuzz run "${opts[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    > "$log" 2>&1
  status=$?
  took=$(($(date +%s) - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  corpus=$(find "corpus/$t" -type f | wc -l | tr -d ' ')
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)
  if [ "$status" -eq 0 ]; then
    verdict="no finding"
  else
    found=1
    artifact=$(grep -oE 'artifacts/[^ ]+' "$log" | tail -n 1)
    verdict="FINDING (exit $status): ${artifact:-see $log}"
  fi
  line="$t: ${runs:-?} inputs in ${took}s (${speed:-?} exec/s), corpus $corpus, $verdict"
  echo "fuzz: $line"
  [ -n "$done_line" ] && echo "      libFuzzer: $done_line"
  if [ "$status" -ne 0 ]; then
    grep -E "panicked at|^thread '|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY:" "$log" | head -n 8 | sed 's/^/      /'
    if [ -n "${artifact:-}" ]; then
      echo "      replay: (cd fuzz && cargo +nightly fuzz run ${opts[*]} $t $artifact)"
    fi
  fi
  summary+=("$line")
done

echo
echo "fuzz: summary (${secs}s per target)"
printf '  %s\n' "${summary[@]}"
exit "$found"
