#!/usr/bin/env bash
# The Debian package as an administrator meets it (scripts/test.sh, stage `package`):
#   package_test.sh BUILD_DIR   (a packager's build: configured and built, see test.sh)
# 1. cpack makes the .deb; lintian finds no error in it.
# 2. dpkg installs it on this machine: the service's user, its configuration's permissions.
# 3. systemd-analyze accepts the installed unit.
# 4. The server runs as the unit runs it (its user, working directory and EnvironmentFile;
#    this machine has no systemd running): /healthz answers, mmchatctl adds a user, and that
#    user logs in over HTTP.
# 5. A reinstall keeps a changed /etc/mmchat/mmchat.env; a purge removes the package's files.
# The package is purged at the end whatever happens, so the machine is left as it was.
set -euo pipefail
build_dir=$(cd "$1" && pwd)
work=""
server_pid=""

cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  dpkg --purge mmchat >/dev/null 2>&1 || true
  # What a purge keeps on purpose (postrm): the database and the user. This test made them.
  rm -rf /var/lib/mmchat /run/mmchat
  getent passwd mmchat >/dev/null && deluser --quiet --system mmchat >/dev/null 2>&1
  getent group mmchat >/dev/null && delgroup --quiet --system mmchat >/dev/null 2>&1
  [ -z "$work" ] || rm -rf "$work"
}
fail() {
  echo "package test: $*" >&2
  exit 1
}
cleanup  # a run that was killed may have left the package installed
trap cleanup EXIT
work=$(mktemp -d)

echo "--- cpack"
(cd "$build_dir" && rm -f mmchat_*.deb && cpack -G DEB >/dev/null)
deb=$(ls "$build_dir"/mmchat_*.deb)
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}'

echo "--- lintian"
# Errors fail the test; warnings are printed (README, "Debian package", lists the ones left).
lintian --fail-on error --info "$deb"

echo "--- install"
dpkg -i "$deb"
getent passwd mmchat >/dev/null || fail "no mmchat user after install"
[ "$(stat -c '%U:%G %a' /etc/mmchat/mmchat.env)" = "root:mmchat 640" ] ||
  fail "/etc/mmchat/mmchat.env is $(stat -c '%U:%G %a' /etc/mmchat/mmchat.env)"
for f in /usr/bin/mmchat /usr/bin/mmchat-bench /usr/sbin/mmchatctl /lib/systemd/system/mmchat.service; do
  [ -x "$f" ] || [ -f "$f" ] || fail "$f missing"
done
[ -f /usr/share/man/man1/mmchat.1.gz ] || fail "no man page for mmchat"
help=$(/usr/bin/mmchat --help-all)
for word in SQLITE_DSN LOG_FORMAT backup disable; do
  grep -q -- "$word" <<<"$help" || fail "mmchat --help-all does not mention $word"
done

echo "--- systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/mmchat.service
systemd-analyze security --offline=yes /lib/systemd/system/mmchat.service | tail -n 1

echo "--- the service, started as its unit starts it"
# The unit's StateDirectory and RuntimeDirectory, which systemd would make.
install -d -o mmchat -g mmchat -m 0750 /var/lib/mmchat /run/mmchat
env_vars=()
while IFS= read -r line; do
  case $line in '' | '#'*) continue ;; esac
  env_vars+=("$line")
done </etc/mmchat/mmchat.env
port=$(sed -n 's/^HTTP_ADDR=.*:\([0-9]*\)$/\1/p' /etc/mmchat/mmchat.env)
[ -n "$port" ] || fail "no HTTP_ADDR port in the packaged configuration"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  fail "port $port (the packaged HTTP_ADDR) is already taken on this machine"
fi
# setpriv execs the server itself (runuser would stay as its parent), so that the signal below
# reaches it as systemd's would.
(cd /var/lib/mmchat && exec setpriv --reuid=mmchat --regid=mmchat --init-groups \
  env -i PATH=/usr/bin:/bin "${env_vars[@]}" /usr/bin/mmchat >"$work/server.log" 2>&1) &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >"$work/healthz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; fail "the server exited"; }
  sleep 0.1
done
grep -q '"status":"ok"' "$work/healthz" || fail "/healthz answered $(cat "$work/healthz")"
[ "$(stat -c %U /var/lib/mmchat/chat.db)" = mmchat ] || fail "chat.db does not belong to mmchat"

mmchatctl user add --username pkgtest --email pkgtest@example.com --password 'correct horse battery'
[ "$(stat -c %U /var/lib/mmchat/chat.db)" = mmchat ] || fail "mmchatctl changed chat.db's owner"
login=$(curl -sS -w '\n%{http_code}' -XPOST "http://127.0.0.1:$port/api/login" \
  -H 'Content-Type: application/json' \
  -d '{"username":"pkgtest","password":"correct horse battery"}')
[ "$(tail -n 1 <<<"$login")" = 200 ] || fail "login answered $login"
grep -q '"token"' <<<"$login" || fail "login gave no token: $login"
echo "login as pkgtest: 200 with a token"

login_status() {
  curl -sS -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$port/api/login" \
    -H 'Content-Type: application/json' \
    -d '{"username":"pkgtest","password":"correct horse battery"}'
}
# Administration through mmchatctl reaches the running service (its admin socket).
mmchatctl user list | grep -q pkgtest || fail "mmchatctl user list does not list pkgtest"
mmchatctl user disable pkgtest
[ "$(login_status)" = 403 ] || fail "a disabled user could still log in"
mmchatctl user enable pkgtest
[ "$(login_status)" = 200 ] || fail "an enabled user could not log in"
# A backup of the live database, owned by the service.
mmchatctl backup /var/lib/mmchat/backup.db
[ "$(stat -c %U /var/lib/mmchat/backup.db)" = mmchat ] || fail "the backup is not the service's"
[ "$(sqlite3 /var/lib/mmchat/backup.db 'PRAGMA integrity_check')" = ok ] || fail "bad backup"
echo "mmchatctl: user list, disable, enable and backup"

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ $status -eq 0 ] || { cat "$work/server.log" >&2; fail "SIGTERM: exit status $status"; }

echo "--- upgrade keeps the configuration"
echo "# changed by the administrator" >>/etc/mmchat/mmchat.env
dpkg -i "$deb" >/dev/null
grep -q "changed by the administrator" /etc/mmchat/mmchat.env || fail "reinstall replaced mmchat.env"

echo "--- remove and purge"
dpkg -r mmchat >/dev/null
[ ! -e /usr/bin/mmchat ] || fail "remove left /usr/bin/mmchat"
[ -f /etc/mmchat/mmchat.env ] || fail "remove took the configuration (only purge should)"
dpkg --purge mmchat >/dev/null
[ ! -e /etc/mmchat/mmchat.env ] || fail "purge left /etc/mmchat/mmchat.env"
[ -f /var/lib/mmchat/chat.db ] || fail "purge took the database (it must keep it)"
echo "package test passed"
