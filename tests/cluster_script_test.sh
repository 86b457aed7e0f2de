#!/usr/bin/env bash
# scripts/cluster.sh, end to end: two nodes behind HAProxy on a free port come up, answer
# through it (REST, and a WebSocket upgrade with a real token), and SIGTERM stops every process
# it started. Usage: cluster_script_test.sh MMCHAT_BINARY (MMCHAT_TEST_BUILD/mmchat instead when
# that is set, as for the integration tests: tests/integration/harness.h, ServerBinary).
set -euo pipefail
bin="$1"
[ -z "${MMCHAT_TEST_BUILD:-}" ] || bin="$MMCHAT_TEST_BUILD/mmchat"
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$(mktemp -d)"
# cluster.sh uses PORT, PORT+2 and PORT+10 on: a block below the kernel's ephemeral range
# (32768 and up), where the ports other tests are given by the kernel cannot land, and free now.
port=$(python3 - <<'PY'
import random, socket
for _ in range(100):
    base = random.randrange(20000, 32000)
    try:
        for p in (base, base + 2, base + 10, base + 11):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            s.close()
    except OSError:
        continue
    print(base)
    break
PY
)
[ -n "$port" ] || { echo "FAIL: no free block of ports" >&2; exit 1; }
fail() {
  echo "FAIL: $*" >&2
  for f in "$data"/*.log "$data"/out; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
cleanup() {
  [ -z "${cluster_pid:-}" ] || kill -TERM "$cluster_pid" 2>/dev/null || true
  [ -z "${cluster_pid:-}" ] || wait "$cluster_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

DATA="$data" PORT="$port" NODES=2 MMCHAT_BIN="$bin" OTP_SENDER=log \
  "$root/scripts/cluster.sh" >"$data/out" 2>&1 &
cluster_pid=$!
for _ in $(seq 600); do
  grep -q "nodes behind" "$data/out" && break
  kill -0 "$cluster_pid" 2>/dev/null || fail "cluster.sh ended early"
  sleep 0.1
done
grep -q "2 nodes behind http://localhost:$port" "$data/out" || fail "the cluster did not come up"

ready=$(curl -fsS "http://127.0.0.1:$port/readyz") || fail "/readyz through HAProxy"
[[ "$ready" == *'"bus":"ok"'* ]] || fail "/readyz says $ready"
for n in 0 1; do grep -q "bus: subscribed" "$data/node$n.log" || fail "node$n is not on the bus"; done

# A user of the cluster's database, and its WebSocket through HAProxy.
db_url="$("$root/scripts/pg-server.sh" url "$data/pg")"
DATABASE_URL="${db_url%/postgres}/mmchat" "$bin" user add --count 1 --prefix smoke \
  --password smokepass1 --tokens "$data/tokens" >/dev/null || fail "user add"
token=$(awk '{print $3}' "$data/tokens")
me=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/me") || fail "/api/me"
[[ "$me" == *'"username":"smoke_1"'* ]] || fail "/api/me says $me"
upgrade=$(curl -sS -i --max-time 2 -H "Connection: Upgrade" -H "Upgrade: websocket" \
  -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
  "http://127.0.0.1:$port/api/ws?token=$token" 2>/dev/null || true)
[[ "$upgrade" == "HTTP/1.1 101"* ]] || fail "WebSocket upgrade through HAProxy: ${upgrade:0:200}"

# SIGTERM (what Ctrl-C sends as SIGINT; a background job ignores that) stops everything it started: HAProxy, the nodes, Redis, PostgreSQL.
kill -TERM "$cluster_pid"
wait "$cluster_pid" || true
cluster_pid=""
for n in 0 1; do grep -q "stopped" "$data/node$n.log" || fail "node$n did not stop cleanly"; done
! curl -fs --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 || fail "HAProxy still answers"
[ ! -e "$data/pg/data/postmaster.pid" ] || fail "PostgreSQL still runs"
! redis-cli -p $((port + 2)) ping >/dev/null 2>&1 || fail "Redis still runs"
echo "cluster.sh: ok"
