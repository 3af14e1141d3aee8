#!/usr/bin/env bash
# cpu_split.sh — one `floodgate serve` under bench/report.sh's load, with where the machine's
# CPU went per request: floodgate, redis-server, wrk, and the whole machine's busy share. For
# quick A/B comparisons of binaries or thread counts (alternate them: the host drifts), e.g.
#
#   for t in 1 2 3; do THREADS=$t bench/cpu_split.sh; done
#   FLOODGATE=/tmp/before bench/cpu_split.sh; bench/cpu_split.sh
#
# One line per run: req/s, p99, CPU µs per request of floodgate / redis-server / wrk, machine
# busy %. The policy is bench/report.sh's (100 per 60 s per X-API-Key, token bucket), the load
# `wrk -t2 -c50` with bench/wrk/keys.lua over KEYS keys (a fresh prefix per run), after a 2 s
# warm-up.
#
# Environment (defaults in brackets): FLOODGATE [build/release/floodgate], THREADS [2] server
# threads, STORE [redis: one redis-server started here | memory], DURATION [6] seconds, KEYS
# [10000] keys drawn from (50: the report's hot-key load, most requests answered 429), UPSTREAM
# [unset: floodgate answers itself] an http://HOST:PORT every allowed request is proxied to (a
# server started by the caller, e.g. nginx answering a static 200).
# Needs redis-server, redis-cli, wrk, curl, python3. Every process it starts is stopped by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
FLOODGATE=${FLOODGATE:-$root/build/release/floodgate}
THREADS=${THREADS:-2}
STORE=${STORE:-redis}
DURATION=${DURATION:-6}
KEYS=${KEYS:-10000}
UPSTREAM=${UPSTREAM:-}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/fg-cpu-split-XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

redis_pid=""
store_url=memory://
if [[ $STORE == redis ]]; then
  rp=$(free_port)
  redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    --daemonize no --logfile "$work/redis.log" &
  redis_pid=$!
  pids+=("$redis_pid")
  for _ in $(seq 100); do redis-cli -p "$rp" ping >/dev/null 2>&1 && break; sleep 0.05; done
  store_url=redis://127.0.0.1:$rp
fi
fp=$(free_port)
cat >"$work/fg.yaml" <<EOF
listen: 127.0.0.1:$fp
threads: $THREADS
store: $store_url
store_timeout: 100ms
identity:
  - header: X-API-Key
  - ip: {}
policies:
  - name: per-minute
    match: {path_prefix: /api/}
    algorithm: token_bucket
    limit: 100
    period: 60s
EOF
if [[ -n $UPSTREAM ]]; then echo "upstream: $UPSTREAM" >>"$work/fg.yaml"; fi
"$FLOODGATE" serve --config "$work/fg.yaml" >"$work/fg.log" 2>&1 &
fg_pid=$!
pids+=("$fg_pid")
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$fp/readyz" && break; sleep 0.05; done
curl -fs -o /dev/null "http://127.0.0.1:$fp/readyz" || { echo "cpu_split: floodgate did not start: $(tail -3 "$work/fg.log")" >&2; exit 1; }

url=http://127.0.0.1:$fp/api/resource
wrk -t2 -c50 -d2s -s "$root/bench/wrk/keys.lua" "$url" -- "$KEYS" "warm-$RANDOM" >/dev/null
ticks() {  # PID -> user + system ticks (0 without a PID)
  [[ -n $1 ]] || { echo 0; return; }
  local s
  s=$(cat "/proc/$1/stat")
  read -r -a f <<<"${s##*) }"
  echo $((f[11] + f[12]))
}
host() { awk '/^cpu /{ b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }
f0=$(ticks "$fg_pid"); r0=$(ticks "$redis_pid"); read -r hb0 ht0 < <(host)
/usr/bin/time -f "%U %S" -o "$work/wrk.time" wrk -t2 -c50 -d"${DURATION}s" --latency \
  -s "$root/bench/wrk/keys.lua" "$url" -- "$KEYS" "run-$RANDOM" >"$work/wrk.txt"
f1=$(ticks "$fg_pid"); r1=$(ticks "$redis_pid"); read -r hb1 ht1 < <(host)
python3 - "$work/wrk.txt" "$work/wrk.time" "$(getconf CLK_TCK)" $((f1 - f0)) $((r1 - r0)) \
  $((hb1 - hb0)) $((ht1 - ht0)) "$THREADS" "$STORE${UPSTREAM:+ via $UPSTREAM}" <<'EOF'
import re, sys
wrk, times, tck, fg, redis, busy, total, threads, store = sys.argv[1:]
text = open(wrk).read()
m = re.search(r"wrk-result .*", text)
fields = dict(kv.split("=") for kv in m.group(0).split()[1:] if "=" in kv) if m else {}
req = int(fields.get("requests") or re.search(r"(\d+) requests in", text).group(1))
secs = int(fields["duration_us"]) / 1e6 if "duration_us" in fields else None
rps = req / secs if secs else float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = int(fields["p99_us"]) / 1000 if "p99_us" in fields else float("nan")
user, system = map(float, open(times).read().split())
us = lambda ticks: int(ticks) / int(tck) * 1e6 / req
print(f"{store} threads={threads}: {rps:,.0f} req/s, p99 {p99:.2f} ms; CPU µs per request: "
      f"floodgate {us(fg):.2f}, redis {us(redis):.2f}, wrk {(user + system) * 1e6 / req:.2f}; "
      f"machine busy {100 * int(busy) / int(total):.0f} %")
EOF
