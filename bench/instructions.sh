#!/usr/bin/env bash
# instructions.sh — user-space instructions per HTTP request in `floodgate serve`, counted by
# callgrind: a figure that, unlike requests/s, does not move with the machine's load, so a
# before/after comparison of the request path is exact on a shared machine.
#
#   bench/instructions.sh [BINARY...]        (default: build/release/floodgate)
#
# For each binary and each store (the memory store; one redis-server started here), it runs
# `floodgate serve --threads 1` under valgrind --tool=callgrind with instrumentation off, warms it
# up with wrk, counts only during an 8 s wrk run (-t1 -c8, bench/wrk/keys.lua over 10,000 keys,
# the policy of bench/report.sh: 100 per 60 s per X-API-Key), and prints the instructions per
# request. Kernel time (the socket calls) is not counted. Needs valgrind, wrk, curl, redis-server.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
(($# > 0)) || set -- "$root/build/release/floodgate"
for tool in valgrind callgrind_control callgrind_annotate wrk curl redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/fg-instructions-XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --daemonize no --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 100); do
  [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
  sleep 0.05
done

measure() {  # BINARY STORE_URL -> instructions per request
  local bin=$1 store=$2 port pid out requests total
  port=$(free_port)
  cat >"$work/config.yaml" <<YAML
listen: 127.0.0.1:$port
threads: 1
store: $store
store_timeout: 2s
identity:
  - header: X-API-Key
policies:
  - name: per-minute
    match: {path_prefix: /api/}
    limit: 100
    period: 60s
YAML
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
    "$bin" serve --config "$work/config.yaml" >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.2
  done
  local url=http://127.0.0.1:$port/api/resource
  wrk -t1 -c8 -d2s -s "$root/bench/wrk/keys.lua" "$url" -- 10000 "warm-$RANDOM" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c8 -d8s -s "$root/bench/wrk/keys.lua" "$url" -- 10000 "run-$RANDOM" |
    grep '^wrk-result ')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" || true
  requests=$(sed 's/.* requests=\([0-9]*\).*/\1/' <<<"$out")
  total=$(callgrind_annotate "$work/callgrind.out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  ((requests > 0)) || { echo "instructions: no request answered ($bin, $store)" >&2; exit 1; }
  echo $((total / requests))
}

echo "| binary | memory store: instructions/request | one Redis: instructions/request |"
echo "|---|---:|---:|"
for bin in "$@"; do
  echo "| $bin | $(measure "$bin" memory://) | $(measure "$bin" "redis://127.0.0.1:$redis_port") |"
done
