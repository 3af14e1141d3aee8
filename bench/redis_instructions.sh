#!/usr/bin/env bash
# Instructions redis-server executes per decision, under callgrind: deterministic where
# bench/redis_cpu.sh's CPU time moves with the machine's load, so it can compare two versions of
# decide.lua to a few percent on a busy host. Same workload as redis_cpu.sh (redis-benchmark
# -c 50 -P 16, random identities out of 10,000, token bucket 100 per minute), fewer calls
# (valgrind runs the server ~50x slower). The count covers only the measured run: callgrind's
# counters are zeroed after the warm-up and dumped after the run (callgrind_control).
#
#   bench/redis_instructions.sh [CALLS]   (default 8000 per row; m=16 sends CALLS/4 calls)
#
# Rows: the seed's token_bucket.lua (EVALSHA), fg_decide_v3 with 16 decisions per call (library
# floodgate_v3, tests/fixtures/floodgate_v3.lua) and fg_decide_v4 with 16 (decide.lua).
# Needs valgrind, redis-server, redis-cli, redis-benchmark.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:-8000}
seed_lua=${SEED_LUA:-$(cd "$root/.." && pwd)/shared/peers/token_bucket.lua}
for tool in valgrind callgrind_control redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "redis_instructions: $tool is not installed" >&2; exit 1; }
done
[[ -f $seed_lua ]] || { echo "redis_instructions: $seed_lua is missing (SEED_LUA=<path>)" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! port_in_use "$candidate"; then port=$candidate; break; fi
done
[[ -n $port ]] || { echo "redis_instructions: no free port found" >&2; exit 1; }
dir=$(mktemp -d /tmp/fg-redis-instr-XXXXXX)
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" redis-server --port "$port" \
  --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize no --logfile "$dir/redis.log" \
  >"$dir/valgrind.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cli() { redis-cli -p "$port" "$@"; }
for _ in $(seq 300); do
  cli ping >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
cli ping >/dev/null 2>&1 || { echo "redis_instructions: redis-server did not start" >&2; exit 1; }

run() {  # NAME DECISIONS_PER_CALL CALLS COMMAND...
  local name=$1 per=$2 n=$3 out ir
  shift 3
  cli FLUSHALL >/dev/null
  redis-benchmark -p "$port" -c 50 -P 16 -n $((n / 10)) -r 10000 "$@" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null
  redis-benchmark -p "$port" -c 50 -P 16 -n "$n" -r 10000 "$@" >/dev/null 2>&1
  rm -f "$dir"/cg."$pid".[0-9]*
  callgrind_control -d "$pid" >/dev/null
  out=""
  for _ in $(seq 50); do
    out=$(ls -t "$dir"/cg."$pid".* 2>/dev/null | head -1)
    [[ -n $out ]] && grep -q '^totals:\|^summary:' "$out" && break
    sleep 0.1
  done
  ir=$(grep -m1 '^totals:\|^summary:' "$out" | awk '{ print $2 }')
  [[ -n $ir ]] || { echo "redis_instructions: no callgrind dump for $name" >&2; exit 1; }
  awk -v ir="$ir" -v n="$n" -v m="$per" -v name="$name" \
    'BEGIN { printf "%-36s %10.0f\n", name, ir / (n * m) }'
}

key='fg:{__rand_int__}:per-minute'
printf '%-36s %10s\n' "script (redis-benchmark -c 50 -P 16)" "instr/decision"
sha=$(cli SCRIPT LOAD "$(cat "$seed_lua")")
run "seed token_bucket.lua EVALSHA" 1 "$calls" EVALSHA "$sha" 1 'tb:__rand_int__' 100 1.6666667 1

keys=() v3_items=() v4_items=()
for _ in $(seq 16); do
  keys+=("$key")
  v3_items+=(1 1 1 0 100 600000 1)  # n, then alg cost shadow p1 p2 p3
  v4_items+=(1 1 1)                  # n, then policy index and cost
done
cli FUNCTION FLUSH >/dev/null
cli -x FUNCTION LOAD REPLACE <"$root/tests/fixtures/floodgate_v3.lua" >/dev/null
run "fg_decide_v3, m=16 (floodgate_v3)" 16 $((calls / 4)) \
  FCALL fg_decide_v3 16 "${keys[@]}" "" 16 "${v3_items[@]}"
cli FUNCTION FLUSH >/dev/null
cli -x FUNCTION LOAD REPLACE <"$root/src/store/redis/lua/decide.lua" >/dev/null
run "fg_decide_v4, m=16" 16 $((calls / 4)) \
  FCALL fg_decide_v4 16 "${keys[@]}" "" 16 1 1 0 100 600000 1 "${v4_items[@]}"
