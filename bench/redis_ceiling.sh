#!/usr/bin/env bash
# The Redis server's own ceiling for floodgate's decision: redis-benchmark sending
# FCALL fg_decide_v4 (one token bucket, 100 per minute, a random identity out of 10,000) to a
# redis-server this script starts on a free loopback port and stops when it ends. Compare with
# bench/redis_store_bench (the same FCALL through the store): the gap is the client's cost.
#
#   bench/redis_ceiling.sh [REQUESTS]        (default 400000 per run)
#
# Needs redis-server, redis-cli and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lua="$root/src/store/redis/lua/decide.lua"
requests=${1:-400000}

for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "redis_ceiling: $tool is not installed" >&2; exit 1; }
done
[[ -f $lua ]] || { echo "redis_ceiling: $lua is missing" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! port_in_use "$candidate"; then port=$candidate; break; fi
done
[[ -n $port ]] || { echo "redis_ceiling: no free port found" >&2; exit 1; }

dir=$(mktemp -d /tmp/fg-ceiling-XXXXXX)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  --daemonize no --logfile "$dir/redis.log" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 200); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$port" ping >/dev/null

# decide.lua is the whole function library, as the store loads it.
redis-cli -p "$port" -x FUNCTION LOAD REPLACE <"$lua" >/dev/null

# One item (m 1) of one policy (p 1): token bucket (1), not shadow, burst 100,
# unit 600000, rate 1 (core::bucket_scale), then one charge of policy 1, cost 1. "" = Redis TIME.
fcall=(FCALL fg_decide_v4 1 "fg:{__rand_int__}:per-minute" "" 1 1 1 0 100 600000 1 1 1 1)
check=$(redis-cli -p "$port" "${fcall[@]/__rand_int__/check}" | sed -n 2p)
[[ $check == 1 ]] || { echo "redis_ceiling: FCALL did not allow: $check" >&2; exit 1; }

printf '%-10s %-9s %-9s %12s %9s %9s\n' clients pipeline requests ops_per_s p50_ms p99_ms
for spec in "50 16" "50 1" "1 1"; do
  read -r clients pipeline <<<"$spec"
  n=$requests
  [[ $pipeline == 1 ]] && n=$((requests / 4))
  line=$(redis-benchmark -p "$port" -c "$clients" -P "$pipeline" -n "$n" -r 10000 --csv \
           "${fcall[@]}" 2>/dev/null | grep '^"' | grep -v '^"test"' | tail -1)
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
  # "p99_latency_ms","max_latency_ms"
  echo "$line" | awk -F'","' -v c="$clients" -v p="$pipeline" -v n="$n" \
    '{ printf "%-10s %-9s %-9s %12.0f %9s %9s\n", c, p, n, $2, $5, $7 }'
done
