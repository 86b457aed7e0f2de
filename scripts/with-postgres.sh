#!/usr/bin/env bash
# Runs a command beside a private PostgreSQL server (scripts/pg-server.sh) that lives only as
# long as the command: created in a temporary directory, stopped and removed at exit.
#
#   scripts/with-postgres.sh COMMAND [ARGS...]
#
# The command sees MMCHAT_TEST_DATABASE_URL, a superuser's URL to the server's `postgres`
# database; tests create a database of their own from it (tests/support/test_postgres.h).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir=$(mktemp -d "${TMPDIR:-/tmp}/mmchat-pg-XXXXXX")
trap '"$here/pg-server.sh" destroy "$dir"' EXIT
url=$("$here/pg-server.sh" init "$dir")
"$here/pg-server.sh" start "$dir"
export MMCHAT_TEST_DATABASE_URL="$url"
"$@"
