#!/usr/bin/env bash
# Runs the libFuzzer targets built in ./build-asan (./scripts/test.sh asan builds them), each
# for FUZZ_SECONDS (default 60) from its seed corpus in fuzz/corpus/<target>, one per core at a
# time.
# New inputs go to a scratch corpus, not the repository. A crash, leak, timeout (10 s per
# input) or out-of-memory fails the run and leaves the input in build-asan/fuzz-artifacts.
# Usage: ./scripts/fuzz.sh [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for corpus in fuzz/corpus/*/; do targets+=("$(basename "$corpus")"); done
fi
artifacts="$PWD/build-asan/fuzz-artifacts"
mkdir -p "$artifacts"

run_one() {
  local target=$1 scratch
  scratch="$(mktemp -d)"
  local log="$artifacts/$target.log"
  if ASAN_OPTIONS="detect_leaks=1" "./build-asan/$target" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/$target-" \
    "$scratch" "fuzz/corpus/$target" >"$log" 2>&1; then
    echo "fuzz $target: ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
      grep -o '[0-9]*$') runs, $(grep -o 'cov: [0-9]*' "$log" | tail -1))"
    rm -rf "$scratch"
  else
    echo "fuzz $target: FAILED; the end of $log:" >&2
    tail -n 40 "$log" >&2
    rm -rf "$scratch"
    return 1
  fi
}

pids=()
failed=0
for target in "${targets[@]}"; do
  run_one "$target" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$(nproc)" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
exit $failed
