#!/usr/bin/env bash
# Fails when a source file includes a project header from a layer it may not use
# (docs/ARCHITECTURE.md, "Layers"): the domain knows nothing of SQL, HTTP, crypto libraries or
# mail, and so on. It checks top-level folders only: store/<a> including store/<b> passes.
set -euo pipefail
src=${1:?usage: check_layers.sh SRC_DIR}

allowed() {  # allowed <layer>: the project folders that layer may include
  case "$1" in
    common) echo "common" ;;
    domain) echo "common domain" ;;
    store) echo "common domain store metrics" ;;
    crypto) echo "common domain crypto" ;;
    mail) echo "common domain mail" ;;
    bus) echo "common domain bus metrics" ;;
    metrics) echo "common metrics" ;;
    wire) echo "common domain wire" ;;
    http) echo "common domain wire http metrics" ;;
    ws) echo "common domain wire http metrics ws" ;;
    app) echo "*" ;;
    bench) echo "bench" ;;  # a client: talks to the server over sockets only
    *) echo "" ;;
  esac
}

bad=0
while IFS= read -r file; do
  layer=${file#"$src"/}
  layer=${layer%%/*}
  ok=$(allowed "$layer")
  [ "$ok" = "*" ] && continue
  while IFS= read -r inc; do
    target=${inc%%/*}
    [ -d "$src/$target" ] || continue  # not a project header
    if ! [[ " $ok " == *" $target "* ]]; then
      echo "$file: layer '$layer' includes \"$inc\""
      bad=1
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
done < <(find "$src" -name '*.h' -o -name '*.cc')

[ $bad -eq 0 ] && echo "layers ok"
exit $bad
