#!/usr/bin/env bash
# `make run`: one floodgate instance on the memory store with examples/floodgate.yaml, in the
# foreground. Ctrl-C (SIGINT) or SIGTERM drains it and exits; SIGHUP reloads the file.
#   FLOODGATE_CONFIG  the config file (default examples/floodgate.yaml)
#   FLOODGATE_LISTEN  HOST:PORT (default: the file's `listen`, 127.0.0.1:8080)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${FLOODGATE_BIN:-build/release/floodgate}
config=${FLOODGATE_CONFIG:-examples/floodgate.yaml}
listen=${FLOODGATE_LISTEN:-127.0.0.1:8080}

"$bin" validate "$config" >/dev/null

cat <<MSG
floodgate: one instance on http://$listen (memory store, $config).
Try, in another terminal:

  curl -i http://$listen/api/hello
  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' http://$listen/api/hello; done; echo
  curl -s http://$listen/metrics | grep floodgate_decisions

Ctrl-C stops it.
MSG

exec "$bin" serve --config "$config" --listen "$listen"
