#!/usr/bin/env bash
# A private PostgreSQL server in a directory of its own, for tests and benchmarks: initdb into
# DIR (as the `postgres` user when run as root: initdb refuses root), a free loopback port,
# its socket in DIR. Nothing running beforehand is needed or touched.
#
#   pg-server.sh init DIR             create the cluster; prints its URL (a superuser `mmchat`)
#   pg-server.sh start DIR            start it and wait until it accepts connections
#   pg-server.sh stop DIR [MODE]      stop it (MODE: fast, the default, or immediate: a crash)
#   pg-server.sh url DIR              print the URL again
#   pg-server.sh destroy DIR          stop it at once and remove DIR
#
# PG_SETTINGS adds server settings at start (`-c name=value ...`).
set -euo pipefail

cmd=${1:?usage: pg-server.sh init|start|stop|url|destroy DIR}
dir=${2:?usage: pg-server.sh $cmd DIR}
password=mmchat-test
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "pg-server.sh: no PostgreSQL server found; run scripts/setup.sh test" >&2
  exit 1
fi
as_owner=()
[ "$(id -u)" -eq 0 ] && as_owner=(runuser -u postgres --)

url() { echo "postgresql://mmchat:$password@127.0.0.1:$(cat "$dir/port")/postgres"; }

case $cmd in
  init)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
      >"$dir/port"
    printf '%s\n' "$password" >"$dir/pwfile"
    chmod 644 "$dir/pwfile"
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U mmchat --pwfile="$dir/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log"
    url
    ;;
  start)
    # Loopback only, the socket in DIR, room for parallel test servers. synchronous_commit
    # stays on: an acknowledged message must survive a database crash.
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$(cat "$dir/port") \
          -c unix_socket_directories=$dir -c max_connections=400 -c shared_buffers=256MB \
          -c synchronous_commit=on -c fsync=on ${PG_SETTINGS:-}" >/dev/null
    ;;
  stop)
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -w -t 60 stop -m "${3:-fast}" >/dev/null
    ;;
  url)
    url
    ;;
  destroy)
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -w -t 60 stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg-server.sh init|start|stop|url|destroy DIR" >&2
    exit 2
    ;;
esac
