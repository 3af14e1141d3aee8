#!/usr/bin/env bash
# Redis CPU per decision, side by side in one run on one redis-server (issue 14: floodgate's
# decision must cost Redis at most half of the seed's token_bucket.lua). The server is started
# here on a free loopback port and stopped by its PID; redis-benchmark (-c 50 -P 16, random
# identities out of 10,000 via __rand_int__) sends each script in turn, and the server's own
# CPU (utime + stime from /proc/<pid>/stat, before and after) is divided by the decisions made:
#
#   floor          FCALL of a function returning 1 (what any FCALL costs: RESP, dispatch)
#   seed           ../shared/peers token_bucket.lua, EVALSHA, as bench/report.sh runs it
#   v2             FCALL fg_decide_v2, library floodgate_v2 (tests/fixtures/floodgate_v2.lua)
#   v3 m=16        FCALL fg_decide_v3 with 16 decisions, library floodgate_v3, the release before
#                  (tests/fixtures/floodgate_v3.lua): six values per decision's charge
#   v4 m=1         FCALL fg_decide_v4 with one decision (src/store/redis/lua/decide.lua)
#   v4 m=16        FCALL fg_decide_v4 with 16 decisions (CPU / (calls x 16)): the call's policy
#                  once, then (policy, cost) per decision, as the store batches them
#
# Every floodgate row is the same policy as bench/report.sh's: token bucket 100 per minute.
#
#   bench/redis_cpu.sh [CALLS]     (default 200000 per row; m=16 sends CALLS/4 calls)
#
# Each library is loaded alone (FUNCTION FLUSH before it), so the rows run each release's own
# code.
#
# Needs redis-server, redis-cli, redis-benchmark (Debian: redis-server, redis-tools). The CPU
# clock ticks at 1/CLK_TCK s (10 ms), so rows need a few seconds of CPU to be precise to a few %.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:-200000}
v4_lua="$root/src/store/redis/lua/decide.lua"
v3_lua="$root/tests/fixtures/floodgate_v3.lua"
v2_lua="$root/tests/fixtures/floodgate_v2.lua"
seed_lua=${SEED_LUA:-$(cd "$root/.." && pwd)/shared/peers/token_bucket.lua}

for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "redis_cpu: $tool is not installed" >&2; exit 1; }
done
for f in "$v4_lua" "$v3_lua" "$v2_lua" "$seed_lua"; do
  [[ -f $f ]] || { echo "redis_cpu: $f is missing (SEED_LUA=<path> for the seed)" >&2; exit 1; }
done

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
dir=$(mktemp -d /tmp/fg-redis-cpu-XXXXXX)
pid=""
cleanup() {
  [[ -z $pid ]] || kill "$pid" 2>/dev/null || true
  [[ -z $pid ]] || wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cli() { redis-cli -p "$port" "$@"; }

# A free port can be taken between the check and the bind: up to three tries on other ports.
port=""
for attempt in 1 2 3; do
  port=""
  for _ in $(seq 50); do
    candidate=$((20000 + RANDOM % 40000))
    if ! port_in_use "$candidate"; then port=$candidate; break; fi
  done
  [[ -n $port ]] || { echo "redis_cpu: no free port found" >&2; exit 1; }
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize no --logfile "$dir/redis.log" &
  pid=$!
  for _ in $(seq 400); do
    cli ping >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  cli ping >/dev/null 2>&1 && break
  echo "redis_cpu: redis-server on port $port did not answer (attempt $attempt):" >&2
  tail -n 3 "$dir/redis.log" >&2 || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
[[ -n $pid ]] || exit 1

tck=$(getconf CLK_TCK)
cpu_ticks() {  # utime + stime of the server (fields 14 and 15; the name may hold spaces)
  local f
  read -r -a f <<<"$(sed 's/.*) //' "/proc/$pid/stat")"
  echo $((f[11] + f[12]))
}

# Token bucket 100 per minute: algorithm 1, cost 1, not shadow, burst 100, unit 600000, rate 1
# (core::bucket_scale); "" = Redis TIME.
policy=(1 1 0 100 600000 1)
key='fg:{__rand_int__}:per-minute'

declare -A us_per_decision
rows=()
run() {  # NAME DECISIONS_PER_CALL CALLS COMMAND...
  local name=$1 per=$2 n=$3 before after
  shift 3
  cli FLUSHALL >/dev/null
  # Warm-up, unmeasured: connections, the script cache, the keys' first states.
  redis-benchmark -p "$port" -c 50 -P 16 -n $((n / 10)) -r 10000 "$@" >/dev/null 2>&1
  before=$(cpu_ticks)
  redis-benchmark -p "$port" -c 50 -P 16 -n "$n" -r 10000 "$@" >/dev/null 2>&1
  after=$(cpu_ticks)
  us_per_decision[$name]=$(awk -v t=$((after - before)) -v tck="$tck" -v n="$n" -v m="$per" \
    'BEGIN { printf "%.2f", t / tck * 1e6 / (n * m) }')
  rows+=("$name")
}

# The floor: an FCALL that does nothing.
cli FUNCTION LOAD REPLACE "#!lua name=fg_bench_floor
redis.register_function('fg_bench_floor', function() return 1 end)" >/dev/null
run "FCALL returning 1 (floor)" 1 "$calls" FCALL fg_bench_floor 0

# The seed, as bench/report.sh calls it.
sha=$(cli SCRIPT LOAD "$(cat "$seed_lua")")
run "seed token_bucket.lua EVALSHA" 1 "$calls" EVALSHA "$sha" 1 'tb:__rand_int__' 100 1.6666667 1

# floodgate_v2, the library of the release before.
cli -x FUNCTION LOAD REPLACE <"$v2_lua" >/dev/null
[[ $(cli FCALL fg_decide_v2 1 fg:{probe}:per-minute "" 1 "${policy[@]}" | head -1) == 1 ]] ||
  { echo "redis_cpu: fg_decide_v2 did not allow its first request" >&2; exit 1; }
run "fg_decide_v2 (floodgate_v2)" 1 "$calls" FCALL fg_decide_v2 1 "$key" "" 1 "${policy[@]}"

# floodgate_v3, the release before, batched 16 per call as its store sent them.
cli FUNCTION FLUSH >/dev/null
cli -x FUNCTION LOAD REPLACE <"$v3_lua" >/dev/null
[[ $(cli FCALL fg_decide_v3 1 fg:{probe}:per-minute "" 1 1 "${policy[@]}" | sed -n 2p) == 1 ]] ||
  { echo "redis_cpu: fg_decide_v3 did not allow its first request" >&2; exit 1; }
keys=() items=()
for _ in $(seq 16); do
  keys+=("$key")
  items+=(1 "${policy[@]}")
done
run "fg_decide_v3, m=16 (floodgate_v3)" 16 $((calls / 4)) \
  FCALL fg_decide_v3 16 "${keys[@]}" "" 16 "${items[@]}"

# floodgate_v4, this release: p = 1 policy (alg shadow p1 p2 p3), then (n j cost) per item.
cli FUNCTION FLUSH >/dev/null
cli -x FUNCTION LOAD REPLACE <"$v4_lua" >/dev/null
v4_policy=("${policy[0]}" "${policy[@]:2}")
[[ $(cli FCALL fg_decide_v4 1 fg:{probe}:per-minute "" 1 1 "${v4_policy[@]}" 1 1 1 | sed -n 2p) == 1 ]] ||
  { echo "redis_cpu: fg_decide_v4 did not allow its first request" >&2; exit 1; }
run "fg_decide_v4, m=1" 1 "$calls" FCALL fg_decide_v4 1 "$key" "" 1 1 "${v4_policy[@]}" 1 1 1
v4_items=()
for _ in $(seq 16); do v4_items+=(1 1 1); done
run "fg_decide_v4, m=16" 16 $((calls / 4)) \
  FCALL fg_decide_v4 16 "${keys[@]}" "" 16 1 "${v4_policy[@]}" "${v4_items[@]}"

seed=${us_per_decision["seed token_bucket.lua EVALSHA"]}
printf '%-32s %16s %12s\n' "script (redis-benchmark -c 50 -P 16)" "Redis µs/decision" "vs seed"
for name in "${rows[@]}"; do
  printf '%-32s %16s %12s\n' "$name" "${us_per_decision[$name]}" \
    "$(awk -v a="${us_per_decision[$name]}" -v b="$seed" 'BEGIN { printf "%.2fx", a / b }')"
done
