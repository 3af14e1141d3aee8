#!/usr/bin/env bash
# The rate-limit fields of `floodgate serve` in every form of `rate_limit_headers`, read by real
# client parsers from npm (header_clients_test.mjs says what is checked).
#
#   tests/clients/header_clients_test.sh path/to/floodgate SOURCE_DIR WORK_DIR [CASE...]
#
# The parsers are pinned by package-lock.json beside this script and installed at test time with
# `npm ci` into WORK_DIR (the build tree), again only when the lock file changes: nothing is
# installed into the source tree, and floodgate itself never downloads anything. Without node or
# npm, or when the registry cannot be reached, the test is skipped locally and fails under CI
# (tests/require_tools.sh). Every server is started by the node script on a free loopback port
# (listen 127.0.0.1:0) and stopped by its PID.
set -u

fg=$1
src=$2
work=$3
shift 3

source "$src/tests/require_tools.sh"
require_tools node:nodejs npm:npm

here=$src/tests/clients
mkdir -p "$work" || exit 1
cp "$here/package.json" "$here/package-lock.json" "$here/header_clients_test.mjs" "$work/" || exit 1
stamp=$work/node_modules/.floodgate-lock
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
  if ! (cd "$work" && npm ci --no-audit --no-fund --ignore-scripts >"$work/npm.log" 2>&1); then
    tail -5 "$work/npm.log" >&2
    if fg_under_ci; then
      echo "FAIL: npm ci could not install the client parsers ($work/npm.log)" >&2
      exit 1
    fi
    echo "SKIP: npm ci could not install the client parsers (no registry?): $work/npm.log" >&2
    exit 77
  fi
  cp "$here/package-lock.json" "$stamp"
fi

cd "$work" && exec node header_clients_test.mjs "$fg" "$work" "$@"
