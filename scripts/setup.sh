#!/usr/bin/env bash
# Installs everything MmChat needs to build and serve, from Debian 12 packages; with `test`,
# also what the tests need (compilers' sanitizer runtimes, an SMTP sink, a PostgreSQL server
# that scripts/with-postgres.sh starts privately, Redis, HAProxy, and Chromium and Node.js for
# the browser tests in tests/web); with `cluster`, the servers scripts/cluster.sh runs.
# Idempotent: packages already present are skipped by apt; safe to run on every build.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.74-dev libsqlite3-dev sqlite3 libsodium-dev libssl-dev libjwt-dev
  libcurl4-openssl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev
  rapidjson-dev  # the streaming writer of the hot JSON views (http/json_writer.h)
  libpq-dev  # the PostgreSQL store's client library (DATABASE_URL)
  libhiredis-dev  # the cluster bus's Redis client (REDIS_URL)
  libgtest-dev libgmock-dev
)
cluster=(
  postgresql-15  # the server the tests and cluster.sh run privately (scripts/pg-server.sh)
  redis-server   # each Redis test starts its own (tests/support/test_redis.h)
  haproxy        # in front of cluster.sh's nodes
  curl
)
if [ "${1:-}" = cluster ]; then
  packages+=("${cluster[@]}")
fi
if [ "${1:-}" = test ]; then
  packages+=("${cluster[@]}")
  packages+=(
    clang libclang-rt-14-dev  # the sanitizer and fuzzing stages of test.sh (compiler-rt)
    python3-aiosmtpd
    chromium chromium-driver  # the web stage's browser (Playwright's own download is not used)
    fonts-noto-color-emoji    # so that reactions show as emoji in its screenshots
    # The package stage: the .deb's man pages, its checks, and the unit's verification
    help2man lintian systemd
  )
  # The web stage's test runner; a Node.js installed otherwise (e.g. nodesource, whose nodejs
  # package conflicts with Debian's npm) is kept.
  command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # The tests start their own PostgreSQL: the package need not create and start a system one.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $sudo_cmd mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo_cmd tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $sudo_cmd apt-get update
  $sudo_cmd apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \
    "${missing[@]}"
fi

# promtool checks the alert rules of docs/ops. Debian ships it only inside the prometheus
# package, whose installation would also start a Prometheus server where systemd runs: take the
# one program out of the package instead, into .tools/bin (the tests look there).
if [ "${1:-}" = test ] && [ ! -x .tools/bin/promtool ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus 2>/dev/null ||
    { $sudo_cmd apt-get update && apt-get download prometheus; }; } &&
    dpkg-deb -x prometheus_*.deb root)
  mkdir -p .tools/bin
  install -m 0755 "$tmp/root/usr/bin/promtool" .tools/bin/promtool
  rm -rf "$tmp"
fi
