#!/usr/bin/env bash
# sizing.sh — the per-decision and per-state figures of docs/operations.md ("Sizing"), measured.
#
#   bench/sizing.sh            (FLOODGATE [build/release/floodgate], REQUESTS [300])
#
# Starts its own redis-server and one `floodgate serve` on free loopback ports (stopped by PID on
# exit), with two policies on /api/ (so every request is one FCALL deciding two states; periods of
# an hour and a day, so that no state expires during the run: a state lives until it is
# equivalent to none, here 36 s and 86 s after one request), then
# sends REQUESTS requests, each from a new client (X-API-Key), and reads Redis's own counters
# before and after: INFO commandstats (FCALL calls and usec_per_call), INFO stats (bytes in and
# out), used_memory, and MEMORY USAGE of one state. The instance's readiness probe also calls
# FCALL (once a second, one state, cost 0): its calls are counted and reported apart.
# Prints one line per figure. Needs redis-server, redis-cli and curl.
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
FLOODGATE=${FLOODGATE:-$root/build/release/floodgate}
REQUESTS=${REQUESTS:-300}
[[ -x $FLOODGATE ]] || { echo "sizing: $FLOODGATE is not built" >&2; exit 1; }
for tool in redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || { echo "sizing: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/fg-sizing-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ports=$("$root/scripts/free-port-block.sh" 4)
redis_port=$ports
http_port=$((ports + 1))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$work/floodgate.yaml" <<EOF
listen: 127.0.0.1:$http_port
threads: 1
store: redis://127.0.0.1:$redis_port
store_timeout: 1s
key_secret: sizing-key-secret-0123456789
identity:
  - header: X-API-Key
policies:
  - {name: per-hour, match: {path_prefix: /api/}, limit: 100, period: 1h}
  - {name: per-day, match: {path_prefix: /api/}, limit: 1000, period: 1d}
EOF
"$FLOODGATE" serve --config "$work/floodgate.yaml" >/dev/null 2>"$work/floodgate.log" &
pids+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$http_port/readyz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$http_port/readyz" || { cat "$work/floodgate.log" >&2; exit 1; }

r() { redis-cli -p "$redis_port" "$@"; }
info_field() { r INFO "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }
fcall_calls() { r INFO commandstats | tr -d '\r' | awk -F'[:=,]' '$1 == "cmdstat_fcall" {print $3; f = 1} END {if (!f) print 0}'; }

# Warm up (the library is loaded, the connection open), then reset the counters.
curl -s -o /dev/null -H "X-API-Key: warm-up" "http://127.0.0.1:$http_port/api/x"
r FLUSHALL >/dev/null
r CONFIG RESETSTAT >/dev/null
mem_before=$(info_field memory used_memory)
start=$(date +%s.%N)
for ((i = 0; i < REQUESTS; i++)); do
  curl -s -o /dev/null -H "X-API-Key: sizing-client-$i" "http://127.0.0.1:$http_port/api/x"
done
end=$(date +%s.%N)
calls=$(fcall_calls)
usec_per_call=$(r INFO commandstats | tr -d '\r' | awk -F'[:=,]' '$1 == "cmdstat_fcall" {print $7}')
net_in=$(info_field stats total_net_input_bytes)
net_out=$(info_field stats total_net_output_bytes)
mem_after=$(info_field memory used_memory)
keys=$(r DBSIZE)
one_key=$(r RANDOMKEY)
key_usage=$(r MEMORY USAGE "$one_key")
probes=$((calls - REQUESTS))
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')

echo "sizing: $REQUESTS requests (2 policies each, one new client each) in ${elapsed}s; $calls FCALLs ($probes of them readiness probes, about 1 a second)"
echo "commands per decision: $(awk -v c="$calls" -v n="$REQUESTS" -v p="$probes" 'BEGIN {printf "%.2f", (c - p) / n}') FCALL"
echo "bytes sent to Redis per decision: $((net_in / calls)) (total_net_input_bytes $net_in / $calls FCALLs, probes included)"
echo "bytes received per decision: $((net_out / calls)) (total_net_output_bytes $net_out / $calls FCALLs)"
echo "Redis CPU per FCALL: $usec_per_call µs (cmdstat_fcall usec_per_call)"
echo "states: $keys keys; used_memory per state: $(((mem_after - mem_before) / keys)) bytes ($((mem_after - mem_before)) / $keys); MEMORY USAGE of one state ($one_key): $key_usage bytes"
echo "memory store, heap per state: build/release/bench/memory_store_bench --benchmark_filter=BytesPerState (counter bytes_per_state)"
