#!/usr/bin/env bash
# check-layers.sh [SOURCE_DIR] — fails when a source file includes a layer above its own
# (docs/architecture.md). The layers, bottom up:
#
#   include/floodgate (the public API), src/util (text helpers) < src/core < src/store
#     < src/decide < src/http, src/rls (the doors, side by side) < src/app
#
# and src/config beside them: the deciding service and the doors read the configuration's types;
# the core and the stores know no config (src/app translates it into their own options), and
# src/config itself reads only the public API. The core is reached only through its public API
# (include/floodgate): src/core's own headers are its private parts. Tests, benchmarks and fuzz targets are not
# checked: they may reach into any layer they exercise.
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2

rank() {
  case $1 in
    floodgate | util) echo 0 ;;
    core) echo 1 ;;
    store) echo 2 ;;
    decide) echo 3 ;;
    http | rls) echo 4 ;;
    app) echo 5 ;;
    config) echo config ;;
    *) echo unknown ;;
  esac
}

bad=0
checked=0
while IFS= read -r file; do
  layer=${file#src/}
  layer=${layer%%/*}
  own=$(rank "$layer")
  while IFS= read -r inc; do
    target=${inc%%/*}
    theirs=$(rank "$target")
    [[ $theirs == unknown ]] && continue  # a generated header or a file of the same folder
    checked=$((checked + 1))
    ok=1
    if [[ $target == core && $layer != core ]]; then
      ok=0
    elif [[ $own == config ]]; then
      [[ $theirs == config || $theirs == 0 ]] || ok=0
    elif [[ $theirs == config ]]; then
      ((own >= 3)) || ok=0
    else
      ((theirs <= own)) || ok=0
    fi
    if ((!ok)); then
      echo "$file includes \"$inc\": $layer may not depend on $target (docs/architecture.md)" >&2
      bad=$((bad + 1))
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
done < <(find src -name '*.h' -o -name '*.cc' | grep -v -e '_test\.cc$' -e '_test_util\.h$' -e 'test_util\.h$' | sort)

if ((bad > 0)); then
  echo "check-layers: $bad include(s) against the layering" >&2
  exit 1
fi
echo "check-layers: $checked includes across layers, all downwards"
