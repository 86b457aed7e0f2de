#!/usr/bin/env bash
# Runs every row of BENCHMARKS.md RUNS times (default 3), each on a fresh server and database,
# and prints the JSON line of every run plus the medians. Server and tool share this machine.
#   ./scripts/bench.sh                 # all rows
#   ./scripts/bench.sh idle persist    # some rows: idle fanout1000 fanout10 halfrate direct
#                                      #   persist http conversations reactions search uploads
# Results go to stdout and to bench-results.jsonl in the working directory. RATE=N runs the
# halfrate row at N messages/s instead of half the fanout1000 median. DURATION=N loads each
# row for N seconds instead of 5 (a p99 over more messages).
# STORE=postgres runs every server on PostgreSQL instead: a private server (pg-server.sh,
# synchronous_commit on, shared_buffers 256MB; PG_SETTINGS adds settings) beside MmChat and
# the tool on this machine, a fresh database per run.
# NODES=3 (with STORE=postgres; any count from 2) runs every server as that many nodes of one
# cluster on a private redis-server, each node with cores/NODES io threads (at least one): the
# tool spreads its WebSocket connections over the nodes
# (REST set-up goes to the first), and each row's line also gives the bytes Redis received
# and sent meanwhile (from INFO). Server CPU is the first node's, except in the idle row:
# there one tool process per node opens 19,000 connections to it, and the line sums them all.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh" mmchat mmchat-bench >/dev/null
# MMCHAT_BIN: another server binary (a before/after comparison of a change).
mmchat="${MMCHAT_BIN:-$root/build/mmchat}"
bench="$root/build/mmchat-bench"
runs="${RUNS:-3}"
duration="${DURATION:-5}"
port="${PORT:-18080}"
rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=(idle fanout1000 fanout10 halfrate direct persist http conversations reactions search uploads)
out="$PWD/bench-results.jsonl"
: >"$out"
work="$(mktemp -d)"
server_pid=""
node_pids=()
redis_pid=""
pg_dir=""
trap 'kill ${node_pids[@]+"${node_pids[@]}"} $redis_pid 2>/dev/null || true; [ -z "$pg_dir" ] || "$root/scripts/pg-server.sh" destroy "$pg_dir"; rm -rf "$work"' EXIT
store_env=()
databases=0
if [ "${STORE:-sqlite}" = postgres ]; then
  "$root/scripts/setup.sh" test >/dev/null  # the PostgreSQL server package
  pg_dir="$(mktemp -d)"
  pg_url=$("$root/scripts/pg-server.sh" init "$pg_dir")
  "$root/scripts/pg-server.sh" start "$pg_dir"
fi
nodes="${NODES:-1}"
cluster_env=()
more_ports=()
if [ "$nodes" -gt 1 ]; then
  [ -n "$pg_dir" ] || { echo "NODES needs STORE=postgres" >&2; exit 2; }
  redis_port=$((port + 100))
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  # The nodes share the cores: each its share of io threads, unless HTTP_THREADS is set
  # (BENCHMARKS.md: fewer threads waiting for the same cores cut the p99 across nodes).
  cluster_env=("REDIS_URL=redis://127.0.0.1:$redis_port"
    "HTTP_THREADS=${HTTP_THREADS:-$(( $(nproc) / nodes > 0 ? $(nproc) / nodes : 1 ))}")
  more_ports=(--more-ports "$(seq -s, $((port + 1)) $((port + nodes - 1)))")
fi

# A fresh server (every node of it) with 20,000 accounts; extra arguments are environment
# settings.
start_server() {
  for pid in ${node_pids[@]+"${node_pids[@]}"}; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  node_pids=()
  rm -rf "$work/run" && mkdir -p "$work/run"
  if [ -n "$pg_dir" ]; then
    databases=$((databases + 1))
    psql -q "$pg_url" -c "CREATE DATABASE bench$databases"
    store_env=("DATABASE_URL=${pg_url%/postgres}/bench$databases")
  fi
  (cd "$work/run" && env "${store_env[@]}" "$mmchat" user add --count 20000 --prefix bench \
    --password benchpass1 --tokens tokens.txt >/dev/null)
  for n in $(seq 0 $((nodes - 1))); do
    # No abuse limits: the tool sends from one address as fast as it can.
    (cd "$work/run" && exec env HTTP_ADDR="127.0.0.1:$((port + n))" MSG_RATE_PER_SEC=0 \
      MAX_CONNS_PER_IP=0 WS_MAX_CONNS_PER_USER=0 WS_TYPING_RATE_PER_SEC=0 \
      MAX_PENDING_UPLOAD_BYTES=0 "${store_env[@]}" \
      "${cluster_env[@]}" "$@" "$mmchat" >"server$n.log" 2>&1) &
    node_pids+=($!)
  done
  server_pid=${node_pids[0]}
  local ready
  for _ in $(seq 100); do
    ready=1
    for n in $(seq 0 $((nodes - 1))); do
      grep -q "listening on" "$work/run/server$n.log" 2>/dev/null || ready=0
      if [ "$nodes" -gt 1 ]; then
        grep -q "bus: subscribed" "$work/run/server$n.log" 2>/dev/null || ready=0
      fi
    done
    [ "$ready" = 1 ] && return 0
    sleep 0.1
  done
  echo "the server did not start" >&2 && cat "$work/run/server0.log" >&2 && exit 1
}

# Redis's total_net_input_bytes and total_net_output_bytes, as "in out" ("0 0" with no Redis).
redis_bytes() {
  if [ -z "$redis_pid" ]; then echo "0 0" && return; fi
  redis-cli -p "$redis_port" INFO stats |
    awk -F: '/^total_net_input_bytes/ {i=$2} /^total_net_output_bytes/ {o=$2} END {print i+0, o+0}'
}

# run LABEL SCENARIO ARGS...: one run on a fresh server, its JSON line tagged with LABEL.
run() {
  local label=$1
  shift
  local line ports=()
  [ "$1" = http ] || [ "$1" = uploads ] || ports=(${more_ports[@]+"${more_ports[@]}"})
  read -r in0 out0 <<<"$(redis_bytes)"
  line=$(cd "$work/run" && "$bench" "$@" --port "$port" ${ports[@]+"${ports[@]}"} \
    --tokens tokens.txt --server-pid "$server_pid" | tail -1)
  read -r in1 out1 <<<"$(redis_bytes)"
  echo "{\"row\":\"$label\",\"nodes\":$nodes,\"redis_in_bytes\":$((in1 - in0)),\"redis_out_bytes\":$((out1 - out0)),\"result\":$line}" |
    tee -a "$out"
}

# The idle row on a cluster: one tool process per node, started together (each process is
# held to 20,000 open files too), 19,000 connections each; one line with their sum (the
# memory per connection over every node's growth, the CPU of every node).
run_idle_cluster() {
  local n pids=() files=()
  for n in $(seq 0 $((nodes - 1))); do
    (cd "$work/run" && "$bench" idle --steps 2000,19000 --hold-sec 35 --port $((port + n)) \
      --tokens tokens.txt --server-pid "${node_pids[$n]}" | tail -1 >"idle$n.json") &
    pids+=($!)
    files+=("$work/run/idle$n.json")
  done
  wait "${pids[@]}" || true
  local line
  line=$(python3 - "${files[@]}" <<'EOF'
import json, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
first = [r["steps"][0] for r in runs]
last = [r["steps"][-1] for r in runs]
grown = sum(l["connections"] - f["connections"] for l, f in zip(last, first))
step = {
    "connections": sum(s["connections"] for s in last),
    "failed": sum(s["failed"] for s in last),
    "connects_per_sec": sum(s["connects_per_sec"] for s in last),
    "server_rss_kib": sum(s["server_rss_kib"] for s in last),
    "kib_per_connection_since_first_step":
        sum(l["server_rss_kib"] - f["server_rss_kib"] for l, f in zip(last, first)) / grown
        if grown else 0,
    "held_server_cpu_percent": sum(s["held_server_cpu_percent"] for s in last),
}
print(json.dumps({"scenario": "idle", "processes": len(runs), "steps": [step], "per_node": runs}))
EOF
)
  echo "{\"row\":\"idle\",\"nodes\":$nodes,\"redis_in_bytes\":0,\"redis_out_bytes\":0,\"result\":$line}" |
    tee -a "$out"
}

# median ROW EXPRESSION: the median over the row's runs of a Python expression on `r`.
median() {
  python3 - "$out" "$1" "$2" <<'EOF'
import json, statistics, sys
path, row, expr = sys.argv[1:]
vals = [eval(expr, {}, {"r": json.loads(l)["result"]}) for l in open(path)
        if json.loads(l)["row"] == row]
print(round(statistics.median(vals), 2) if vals else "-")
EOF
}

for row in "${rows[@]}"; do
  for i in $(seq "$runs"); do
    case $row in
      idle)
        start_server
        if [ "$nodes" -gt 1 ]; then
          run_idle_cluster
        else
          run idle idle --steps 2000,18000 --hold-sec 35
        fi
        ;;
      fanout1000)
        start_server
        run fanout1000 fanout --groups 1 --members 1000 --senders 10 --window 4 --duration-sec "$duration"
        ;;
      fanout10)
        start_server
        run fanout10 fanout --groups 1000 --members 10 --senders 1 --window 4 --duration-sec "$duration"
        ;;
      halfrate)
        # Half the messages/s of the fanout1000 median (measured first when not yet run), or
        # RATE messages/s when set (for latency at other loads).
        if [ -z "${RATE:-}" ] && [ "$(median fanout1000 'r["messages_per_sec"]')" = "-" ]; then
          start_server
          run fanout1000 fanout --groups 1 --members 1000 --senders 10 --window 4 --duration-sec "$duration"
        fi
        rate=${RATE:-$(python3 -c "print(round(float('$(median fanout1000 'r["messages_per_sec"]')') / 2))")}
        start_server
        run halfrate fanout --groups 1 --members 1000 --senders 10 --window 4 --duration-sec "$duration" \
          --rate "$rate"
        ;;
      direct)
        start_server
        run direct direct --pairs 1000 --window 4 --duration-sec "$duration"
        ;;
      persist)
        start_server SQLITE_SYNCHRONOUS=NORMAL
        run persist-normal persist --senders 64 --window 16 --duration-sec "$duration" --label NORMAL
        start_server SQLITE_SYNCHRONOUS=FULL
        run persist-full persist --senders 64 --window 16 --duration-sec "$duration" --label FULL
        ;;
      http)
        start_server
        run http-small http --kind small --connections 64 --duration-sec "$duration"
        run http-history http --kind history --connections 64 --duration-sec "$duration"
        ;;
      conversations)
        # A server of its own: the user must be in no other conversation (history adds one).
        start_server
        run http-conversations http --kind conversations --conversations 200 --connections 64 \
          --duration-sec "$duration"
        ;;
      reactions)
        start_server
        # 8 callers: as many reactions as the tool can still read the fan-out of (BENCHMARKS.md).
        run reactions reactions --members 100 --connections 8 --duration-sec "$duration"
        ;;
      search)
        start_server
        # SEARCH_MESSAGES (default 1,000,000) loaded first; on PostgreSQL the statistics are
        # then brought up to date, as autovacuum does on a server that grew to that size; then
        # one connection searches for DURATION seconds (latency), and eight (throughput).
        run search-load search --messages "${SEARCH_MESSAGES:-1000000}" --search-sec 0
        if [ -n "$pg_dir" ]; then psql -q "${store_env[0]#DATABASE_URL=}" -c "VACUUM ANALYZE messages"; fi
        run search search --messages 0 --connections 1 --search-sec "$duration"
        run search8 search --messages 0 --connections 8 --search-sec "$duration"
        ;;
      uploads)
        start_server
        # A 25 MiB file up and down 5 times, then 20 uploads of 25 MiB at once (the RSS).
        run uploads uploads --size 26214400 --rounds 5 --concurrent 20
        ;;
      *) echo "unknown row $row" >&2 && exit 2 ;;
    esac
  done
done

echo
echo "Medians of $runs runs:"
printf '%-19s %s\n' \
  "idle" "connections $(median idle 'r["steps"][-1]["connections"]'), KiB/conn $(median idle 'r["steps"][-1]["kib_per_connection_since_first_step"]'), connects/s $(median idle 'r["steps"][-1]["connects_per_sec"]'), held CPU % $(median idle 'r["steps"][-1]["held_server_cpu_percent"]')" \
  "fanout1000" "deliveries/s $(median fanout1000 'r["deliveries_per_sec"]'), p99 ms $(median fanout1000 'r["latency_ms"]["p99"]')" \
  "fanout10" "deliveries/s $(median fanout10 'r["deliveries_per_sec"]'), p99 ms $(median fanout10 'r["latency_ms"]["p99"]')" \
  "halfrate" "deliveries/s $(median halfrate 'r["deliveries_per_sec"]'), p99 ms $(median halfrate 'r["latency_ms"]["p99"]')" \
  "direct" "messages/s $(median direct 'r["messages_per_sec"]'), p99 ms $(median direct 'r["latency_ms"]["p99"]')" \
  "persist-normal" "messages/s $(median persist-normal 'r["messages_per_sec"]'), p99 ack ms $(median persist-normal 'r["ack_latency_ms"]["p99"]')" \
  "persist-full" "messages/s $(median persist-full 'r["messages_per_sec"]'), p99 ack ms $(median persist-full 'r["ack_latency_ms"]["p99"]')" \
  "http-small" "req/s $(median http-small 'r["requests_per_sec"]'), p99 ms $(median http-small 'r["latency_ms"]["p99"]')" \
  "http-history" "req/s $(median http-history 'r["requests_per_sec"]'), p99 ms $(median http-history 'r["latency_ms"]["p99"]')" \
  "reactions" "reactions/s $(median reactions 'r["reactions_per_sec"]'), deliveries/s $(median reactions 'r["deliveries_per_sec"]'), p99 ms $(median reactions 'r["latency_ms"]["p99"]')" \
  "search" "loaded/s $(median search-load 'r["load_messages_per_sec"]'), 1 connection: searches/s $(median search 'r["searches_per_sec"]'), p50 ms $(median search 'r["latency_ms"]["p50"]'), p99 ms $(median search 'r["latency_ms"]["p99"]'); 8: searches/s $(median search8 'r["searches_per_sec"]'), p99 ms $(median search8 'r["latency_ms"]["p99"]')" \
  "uploads" "25 MiB: upload MB/s $(median uploads 'r["upload_mb_per_sec"]'), download MB/s $(median uploads 'r["download_mb_per_sec"]'), both ways MB/s $(median uploads 'r["both_mb_per_sec"]'); 20 at once: MB/s $(median uploads 'r["concurrent"]["mb_per_sec"]'), RSS growth MiB $(median uploads 'r["concurrent"]["rss_growth_mib"]')" \
  "http-conversations" "req/s $(median http-conversations 'r["requests_per_sec"]'), p99 ms $(median http-conversations 'r["latency_ms"]["p99"]'), KiB/response $(median http-conversations 'r["body_bytes_per_response"] / 1024'), server % $(median http-conversations 'r["server_cpu_percent"]'), tool % $(median http-conversations 'r["tool_cpu_percent"]')"
