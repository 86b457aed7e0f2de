#!/usr/bin/env bash
# Installs the Debian packages MmChat needs, then configures and builds it in ./build.
# Extra arguments are passed to ninja (e.g. a target name). MMCHAT_WERROR=ON (scripts/test.sh sets
# it) makes warnings errors.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  -DMMCHAT_WERROR="${MMCHAT_WERROR:-OFF}" >/dev/null
ninja -C build "$@"
