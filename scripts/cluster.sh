#!/usr/bin/env bash
# Starts a whole deployment on this machine and keeps it in the foreground: a PostgreSQL and a
# Redis of its own, NODES (3) MmChat nodes joined by them, and HAProxy in front on
# http://localhost:PORT (8080), passing WebSocket upgrades through and sending requests only to
# nodes whose /readyz answers 200. Ctrl-C (or SIGTERM) stops everything.
#   ./scripts/cluster.sh
#   NODES=2 PORT=9000 DATA=/tmp/chat ./scripts/cluster.sh
# DATA (./cluster-data) keeps the database between runs, and each process's log
# (node0.log ..., redis.log, haproxy.log, pg/server.log). Nodes listen on PORT+10, PORT+11, ...
# and Redis on PORT+2, all on 127.0.0.1. MMCHAT_BIN runs that binary instead of building one.
# Other settings (OTP_SENDER, SMTP_URL, ...) are passed to every node from the environment.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
nodes="${NODES:-3}"
port="${PORT:-8080}"
data="$(mkdir -p "${DATA:-$PWD/cluster-data}" && cd "${DATA:-$PWD/cluster-data}" && pwd)"
# As root, PostgreSQL runs as the postgres user (pg-server.sh), which must reach $data/pg.
[ "$(id -u)" -ne 0 ] || chmod 755 "$data"

"$root/scripts/setup.sh" cluster
mmchat="${MMCHAT_BIN:-}"
if [ -z "$mmchat" ]; then
  "$root/scripts/build.sh" mmchat
  mmchat="$root/build/mmchat"
fi

pids=()
stop() {
  trap - EXIT INT TERM
  echo "cluster: stopping" >&2
  # HAProxy first (no new requests), then the nodes (SIGTERM: each takes its users offline
  # and finishes its writes), then Redis and PostgreSQL.
  for pid in ${pids[@]+"${pids[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" 2>/dev/null || true; done
  [ -z "${redis_pid:-}" ] || { kill -TERM "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; } || true
  [ ! -d "$data/pg/data" ] || "$root/scripts/pg-server.sh" stop "$data/pg" || true
}
trap stop EXIT INT TERM

# PostgreSQL: created on the first run, started again on the next ones.
[ -d "$data/pg/data" ] || "$root/scripts/pg-server.sh" init "$data/pg" >/dev/null
"$root/scripts/pg-server.sh" start "$data/pg"
pg_url="$("$root/scripts/pg-server.sh" url "$data/pg")"
db_url="${pg_url%/postgres}/mmchat"
psql -q "$pg_url" -tc "SELECT 1 FROM pg_database WHERE datname = 'mmchat'" | grep -q 1 ||
  psql -q "$pg_url" -c "CREATE DATABASE mmchat"

redis_port=$((port + 2))
mkdir -p "$data/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes \
  >"$data/redis.log" 2>&1 &
redis_pid=$!

# The nodes share this machine's cores: each gets its share of io threads (HTTP_THREADS, when
# not set), fewer threads waiting for the same cores (BENCHMARKS.md, issue 13).
threads="${HTTP_THREADS:-$(( $(nproc) / nodes > 0 ? $(nproc) / nodes : 1 ))}"
# The first node migrates the database; the others start once it listens.
servers=""
for n in $(seq 0 $((nodes - 1))); do
  node_port=$((port + 10 + n))
  HTTP_ADDR="127.0.0.1:$node_port" DATABASE_URL="$db_url" HTTP_THREADS="$threads" \
    REDIS_URL="redis://127.0.0.1:$redis_port" "$mmchat" >"$data/node$n.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do
    grep -q "listening on" "$data/node$n.log" && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$data/node$n.log" >&2; exit 1; }
    sleep 0.1
  done
  servers+="  server node$n 127.0.0.1:$node_port check inter 2s fall 2 rise 1"$'\n'
done

# Least connections spreads WebSocket connections, which last; the tunnel timeout covers
# them (the server pings idle ones every 30 s).
cat >"$data/haproxy.cfg" <<EOF
global
  log stdout format raw local0 info
defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend mmchat
  bind :$port
  default_backend nodes
backend nodes
  balance leastconn
  option httpchk GET /readyz
  http-check expect status 200
$servers
EOF
haproxy -f "$data/haproxy.cfg" -db >"$data/haproxy.log" 2>&1 &
pids=($! "${pids[@]}")
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$data/haproxy.log" >&2; exit 1; }
  sleep 0.1
done
echo "cluster: $nodes nodes behind http://localhost:$port (logs in $data); Ctrl-C stops it" >&2
wait -n
echo "cluster: a process ended; stopping the rest" >&2
