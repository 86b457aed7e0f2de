#!/usr/bin/env bash
# Runs a command beside a private PostgreSQL server that lives only as long as the command:
# initdb into a temporary directory (as the `postgres` user when run as root: initdb refuses
# root), listening on a free loopback port with its socket in that directory, stopped and
# removed at exit. Nothing running beforehand is needed or touched.
#
#   scripts/with-postgres.sh COMMAND [ARGS...]
#
# The command sees:
#   MMCHAT_TEST_DATABASE_URL  postgresql://mmchat:mmchat-test@127.0.0.1:PORT/postgres
#                             (a superuser; tests create a database of their own from it)
#   MMCHAT_TEST_PG_CTL        a script taking `stop [fast|immediate]`, `start` or `restart`,
#                             for tests that take the database away and bring it back
# PG_SETTINGS adds server settings (`-c name=value ...`).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "with-postgres.sh: no PostgreSQL server found; run scripts/setup.sh" >&2
  exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/mmchat-pg-XXXXXX")
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  run_as=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=mmchat-test

printf '%s\n' "$password" >"$dir/pwfile"
chmod 644 "$dir/pwfile"
"${run_as[@]}" "$bin/initdb" -D "$dir/data" -U mmchat --pwfile="$dir/pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"

# Settings: loopback only, the socket in our directory, room for parallel test servers.
# synchronous_commit stays on: an acknowledged message must survive a database crash.
cat >"$dir/pg_ctl.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
case "\${1:-}" in
  start) exec ${run_as[*]} "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
           -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
               -c max_connections=400 -c shared_buffers=256MB -c synchronous_commit=on \
               -c fsync=on ${PG_SETTINGS:-}" >/dev/null ;;
  stop) exec ${run_as[*]} "$bin/pg_ctl" -D "$dir/data" -w -t 60 stop -m "\${2:-fast}" >/dev/null ;;
  restart) "\$0" stop "\${2:-fast}"; exec "\$0" start ;;
  *) echo "usage: \$0 start|stop [fast|immediate]|restart [fast|immediate]" >&2; exit 2 ;;
esac
EOF
chmod 755 "$dir/pg_ctl.sh"

cleanup() {
  "$dir/pg_ctl.sh" stop immediate 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$dir/pg_ctl.sh" start

export MMCHAT_TEST_DATABASE_URL="postgresql://mmchat:$password@127.0.0.1:$port/postgres"
export MMCHAT_TEST_PG_CTL="$dir/pg_ctl.sh"
"$@"
