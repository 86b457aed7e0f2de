#!/usr/bin/env bash
# Installs, builds and starts MmChat on http://localhost:8080 with SQLite in ./chat.db.
# Verification codes are printed to the log (OTP_SENDER=log) unless configured otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh mmchat
exec ./build/mmchat "$@"
