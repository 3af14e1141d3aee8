#!/usr/bin/env bash
# The deploy/ artefacts that local tools can check (deploy/README.md §7 lists the rest):
# every floodgate config passes `floodgate validate`, and the HAProxy configs pass `haproxy -c`.
#
#   tests/deploy/deploy_test.sh path/to/floodgate SOURCE_DIR
set -uo pipefail
fg=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

for cfg in "$src"/deploy/local/floodgate.yaml "$src"/deploy/docker/floodgate.yaml \
  "$src"/deploy/k8s/floodgate.yaml "$src"/examples/floodgate.yaml; do
  "$fg" validate "$cfg" >/dev/null 2>"$tmp/err" || fail "$cfg: $(cat "$tmp/err")"
done

if command -v haproxy >/dev/null; then
  # The Compose HAProxy config, with its certificate path pointed at a generated one.
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -keyout "$tmp/key.pem" -out "$tmp/crt.pem" 2>/dev/null
  cat "$tmp/crt.pem" "$tmp/key.pem" >"$tmp/floodgate.pem"
  sed "s#/usr/local/etc/haproxy/certs/floodgate.pem#$tmp/floodgate.pem#" \
    "$src/deploy/docker/haproxy.cfg" >"$tmp/haproxy.cfg"
  haproxy -c -q -f "$tmp/haproxy.cfg" >"$tmp/out" 2>&1 || fail "deploy/docker/haproxy.cfg: $(cat "$tmp/out")"
fi

((failures == 0)) || exit 1
# The configs were checked; without haproxy its part was not (a skip locally, a failure in CI).
source "$src/tests/require_tools.sh"
require_tools haproxy:haproxy
echo "deploy: ok"
