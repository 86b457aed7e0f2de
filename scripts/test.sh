#!/usr/bin/env bash
# Installs, builds and runs every test, in seven stages:
#   plain  the whole suite (unit + integration) on the release build in ./build, which is built
#          as a Debian packager builds (dpkg-buildflags' hardening flags; the package stage
#          packs it): the store conformance suite against SQLite and PostgreSQL, the
#          integration suite once on SQLite and once on PostgreSQL (tests named pg.*), and its
#          WebSocket suites with every server two cluster nodes (split.*)
#   api    lints docs/openapi.yaml and docs/asyncapi.yaml (@redocly/cli, @asyncapi/cli) and
#          checks every JSON answer and server frame the plain stage's integration tests saw
#          (build/api-record, tests/integration/harness.h RecordApi) against them
#          (tests/api/check_recorded.mjs); alone, it needs a record from an earlier plain run
#   web    the browser tests (tests/web/*.test.mjs, Node's test runner): ./build/mmchat (built
#          by plain, or here when run alone) driven from Debian's headless Chromium through
#          playwright-core; screenshots go to build/web-artifacts/
#   package  the Debian package cpack makes of ./build (built by plain, or here when run alone),
#          lintian, and the package installed on this machine, its unit verified, its server
#          started as the unit starts it, then purged (tests/package/package_test.sh)
#   asan   the suite again under AddressSanitizer + UndefinedBehaviorSanitizer (clang,
#          ./build-asan, which also builds the fuzz targets): its unit tests (the store
#          conformance suite on SQLite and PostgreSQL among them) and the integration suite on
#          SQLite with the cluster tests, but not its pg.* and split.* runs, the same server
#          code over the same store calls (CI's time); the integration tests are ./build's,
#          run against the sanitized server (integration_tests_against below)
#   tsan   the concurrency tests (hub, store writer, fan-out, ...) under ThreadSanitizer
#          (./build-tsan), on SQLite, plus the concurrency part of the PostgreSQL run, the
#          integration tests again ./build's against the sanitized server
#   fuzz   each libFuzzer target for FUZZ_SECONDS (60) from its seed corpus in fuzz/corpus
# With no argument all seven run; `./scripts/test.sh plain` (or api, web, package, asan, tsan, fuzz)
# runs one.
# Arguments after the stage go to ctest, e.g. `./scripts/test.sh plain -R Ws`; a selection that
# matches no test is an error (--no-tests=error), not a pass. After `web` they go to
# `node --test`, e.g. `./scripts/test.sh web --test-name-pattern=origin`.
# A sanitizer report anywhere, in a test or in a server it started, fails the stage.
# Each ctest stage's tests run beside a private PostgreSQL (scripts/with-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

stages=(plain api web package asan tsan fuzz)
if [ $# -gt 0 ] && [[ " ${stages[*]} " == *" $1 "* ]]; then
  stages=("$1")
  shift
fi
jobs="$(nproc)"

# The tests whose point is threads at once (the hub, the store's writer, fan-out, the bus,
# concurrent requests, limits under load); ThreadSanitizer is too slow for the rest (one REST
# call after another) to add much.
tsan_tests='Ws|ws_|Sqlite|Postgres|Store|Concurren|Role|Bench|Presence|Capacity|Delivery|Crash|Limit|UserCache|Jwt|Dispatcher|Redis|Sequencer|Fanout|Cluster|GroupCommit'
# Of the integration suite's PostgreSQL run (pg.*), the tests whose point is concurrency: the
# server's threads are the same on both stores, and the PostgreSQL store's own concurrency is
# covered by the store conformance suite (matched by "Store" above).
tsan_pg_tests='^pg\.(MessagesConcurrency|CrashSafety|WsEvents|ConversationsRole|Bench|Profile)'

# The project's own builds treat warnings as errors (a packager's do not; see the package stage).
export MMCHAT_WERROR=ON
configure() {  # configure DIR [cmake args...]
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DMMCHAT_WERROR=ON "$@" >/dev/null
}

# Runs ctest in TEST_DIR with sanitizer reports going to files in DIR (a sanitized build), then
# fails if any was written. A selection that matches no test is passed over here; the stage
# checks that its runs together ran some (a selection given on the command line may match only
# unit or only integration tests).
ctest_sanitized() {  # ctest_sanitized DIR TEST_DIR [ctest args...]
  local dir=$1 test_dir=$2
  shift 2
  [ "$(ctest --test-dir "$test_dir" -N "$@" | sed -n 's/^Total Tests: //p')" != 0 ] || return 0
  sanitized_runs=$((sanitized_runs + 1))
  local reports="$PWD/$dir/sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  local status=0
  # A smaller quarantine (freed memory held back to catch use-after-free) than the default
  # 256 MiB, so that the tests' bounds on server memory hold under ASan too.
  ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:quarantine_size_mb=32" \
    UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1" \
    TSAN_OPTIONS="log_path=$reports/tsan:second_deadlock_stack=1" \
    ./scripts/with-postgres.sh ctest --test-dir "$test_dir" --output-on-failure \
      -j "$jobs" "$@" || status=$?
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports in $reports:" >&2
    head -n 60 "$reports"/* >&2
    status=1
  fi
  return $status
}

# The integration tests of ./build (built by plain, or here when run alone) run against the
# mmchat and mmchat-bench of a sanitized build: their own code is a client, not what the
# sanitizer stages check, so those builds do not compile it (a third of a build).
# tests/integration/harness.h, ServerBinary.
integration_tests_against() {  # integration_tests_against DIR SANITIZER
  configure_packager_build
  ./scripts/build.sh mmchat_integration_tests  # nothing to do after the plain stage
  export MMCHAT_TEST_BUILD="$PWD/$1" MMCHAT_TEST_SANITIZER="$2"
}

# ./build as a Debian packager builds it (README, "Debian package"): dpkg-buildflags' hardening
# flags (fortify, stack protector, relro/bindnow), here with warnings as errors. Given on every
# configure, as CMake reads the CXXFLAGS environment variable only the first time.
configure_packager_build() {
  flags() { DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get "$1"; }
  configure build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="$(flags CXXFLAGS) $(flags CPPFLAGS)" \
    -DCMAKE_EXE_LINKER_FLAGS="$(flags LDFLAGS)"
}

# Sanitizer reports need only line numbers: line tables instead of full debug information
# make these builds about a sixth (clang) to a quarter (GCC) faster.
build_asan() {
  configure build-asan -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-gline-tables-only -O1" -DMMCHAT_SANITIZE=address,undefined \
    -DMMCHAT_FUZZ=ON
  ninja -C build-asan mmchat mmchat-bench mmchat_unit_tests mmchat_fuzz_targets
}

./scripts/setup.sh test
for stage in "${stages[@]}"; do
  echo "=== test stage: $stage"
  stage_start=$SECONDS
  case $stage in
    plain)
      configure_packager_build
      ./scripts/build.sh
      rm -rf build/api-record  # each test process appends to a file of its own there
      ./scripts/with-postgres.sh ctest --test-dir build --output-on-failure --no-tests=error \
        -j "$jobs" "$@"
      ;;
    api)
      [ -d build/api-record ] || { echo "no build/api-record: run the plain stage first" >&2; exit 1; }
      (cd tests/api && npm ci --no-audit --no-fund --loglevel=error && npm run --silent lint &&
        npm run --silent check -- ../../build/api-record)
      ;;
    web)
      ./scripts/build.sh mmchat  # nothing to do after the plain stage
      # Each test bounds itself (the harness's TEST_TIMEOUT_MS): Node 20's --test-timeout
      # bounds a whole file, and Debian's Node 18 has none.
      web_args=()
      # A browser or server a failed test leaves open would keep its file running for ever;
      # Node 20.14 and later can end it anyway (Debian's Node 18 cannot).
      node --help | grep -- --test-force-exit >/dev/null && web_args+=(--test-force-exit)
      [ ${#stages[@]} -eq 1 ] && web_args+=("$@")  # ctest's arguments are not node's
      (cd tests/web && npm ci --no-audit --no-fund --loglevel=error &&
        node --test "${web_args[@]}" ./*.test.mjs)
      ;;
    package)
      configure_packager_build
      ./scripts/build.sh mmchat mmchat-bench mmchat_package_files  # nothing to do after plain
      ./tests/package/package_test.sh build
      ;;
    asan)
      build_asan
      integration_tests_against build-asan address
      sanitized_runs=0
      ctest_sanitized build-asan build-asan -L '^unit$' "$@"
      ctest_sanitized build-asan build -L '^integration$' "$@"  # not pg.* and split.*
      [ $sanitized_runs -gt 0 ] || { echo "no test matches: $*" >&2; exit 1; }
      unset MMCHAT_TEST_BUILD MMCHAT_TEST_SANITIZER
      ;;
    tsan)
      configure build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
        -DMMCHAT_SANITIZE=thread
      ninja -C build-tsan mmchat mmchat-bench mmchat_unit_tests
      integration_tests_against build-tsan thread
      sanitized_runs=0
      ctest_sanitized build-tsan build-tsan -L '^unit$' -R "$tsan_tests" "$@"
      ctest_sanitized build-tsan build -L '^integration$' -R "$tsan_tests" "$@"
      ctest_sanitized build-tsan build -L '^integration_postgres$' -R "$tsan_pg_tests" "$@"
      [ $sanitized_runs -gt 0 ] || { echo "no test matches: $*" >&2; exit 1; }
      unset MMCHAT_TEST_BUILD MMCHAT_TEST_SANITIZER
      ;;
    fuzz)
      build_asan  # builds the fuzz targets (nothing to do after the asan stage)
      ./scripts/fuzz.sh
      ;;
  esac
  echo "=== test stage: $stage passed in $((SECONDS - stage_start)) s"
done
