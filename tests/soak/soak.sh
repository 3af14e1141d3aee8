#!/usr/bin/env bash
# soak.sh — floodgate under a steady load for a bounded time while its store fails and its
# config changes; fails if memory or file descriptors grow, or if any request gets an answer
# other than the ones the test provoked. Run by `make soak` (not part of `make test`); the figures
# of a full run are in docs/reliability.md.
#
#   tests/soak/soak.sh                         # 10 minutes
#   SOAK_DURATION=60 tests/soak/soak.sh        # a short run
#
# What runs (everything on 127.0.0.1, on free ports below the ephemeral range, started here and
# stopped here by PID, also on Ctrl-C / SIGTERM):
#   - one redis-server (no persistence);
#   - floodgate instance "redis" (store redis://, on_store_error: allow) and instance "memory"
#     (store memory://), each `floodgate serve` with SOAK_THREADS threads and five or six
#     policies over four algorithms (config variants a and b below);
#   - per interval (SOAK_INTERVAL seconds), one wrk per instance with tests/soak/load.lua:
#     SOAK_CONNECTIONS keep-alive connections, each pacing its requests (wrk's delay() hook) so
#     that the two together send about SOAK_RATE requests/s; every 12 requests a new client key,
#     so states keep being created and must expire. wrk's own per-interval figures (p50/p99
#     latency, responses by status and by X-RateLimit-Degraded, socket errors) are the latency
#     and error record; a new wrk per interval also opens and closes connections all the time.
#
# Faults and changes, on purpose (times from the start; none in the first two intervals, which
# are the warm-up and the baseline, nor in the last one, which is the end measurement):
#   - Redis SIGKILLed and, 3 s later, started again (empty) on the same port: first at
#     SOAK_REDIS_KILL_FIRST s, then every SOAK_REDIS_KILL_EVERY s;
#   - Redis SIGSTOPped for 2 s, then SIGCONT, once at SOAK_REDIS_STOP_AT s;
#   - every SOAK_RELOAD_EVERY s a config reload (SIGHUP to both instances): alternately variant
#     b and a (different limits, one more policy in b), and every third attempt an invalid file,
#     which must be refused (reloads_total{result="error"} +1) while the old config keeps
#     deciding. After each reload a probe request must show the expected per-second quota in
#     RateLimit-Policy.
# An interval with a Redis fault is an "outage" interval: only there, and only on instance
# "redis", may responses be degraded (200 with X-RateLimit-Degraded); there they must be (else
# the fault did not reach the store path and the test proves nothing).
#
# Samples every SOAK_SAMPLE s: RSS (VmRSS), open fds (/proc/PID/fd), threads of each process
# (samples.tsv). After each interval: the wrk figures (intervals.tsv), each instance's /metrics
# counters (metrics.tsv) and, once its client connections are closed, its "idle" RSS and fds
# (idle.tsv). Start = after interval 1 (one warm-up interval done); end = after the last one.
#
# Fails (exit 1, each reason printed) when:
#   - a response is not 200 or 429, a wrk socket error or timeout occurs (2 s), or a server's
#     /metrics counts a status other than 200 or 429;
#   - a response is degraded outside an outage interval or on instance "memory", or an outage
#     interval has no degraded response. One exception, reported but not failed: degraded
#     answers on instance "redis" in an interval where Redis itself was seen not answering: a
#     separate monitor PINGs Redis every 20 ms on its own connection (redis-ping.tsv), and if
#     one PING then waited at least half of store_timeout (and 50 ms), the store really was late
#     and a degraded answer was floodgate's correct response (interval kind "stall");
#   - RSS grows from start to end by more than SOAK_RSS_BOUND_KB (default 8192 KiB) on either
#     instance. Why 8 MiB: live state is bounded by the clients active within the longest
#     period (60 s): at ~450 req/s per instance and 12 requests per key, ~2,500 clients x 5
#     states x ~200 B = ~2.5 MB on the memory store, less on the Redis instance, and most of it
#     already present at the start (20 s in); the rest is allocator slack. A leak of 16 bytes per
#     request (300,000 requests per instance in 10 minutes) would exceed it;
#   - idle fds at the end differ from the start by more than SOAK_FD_BOUND (default 0: after
#     every Redis restart each server thread holds exactly one Redis connection again, and
#     client connections are all closed, so the count must come back exactly), or the thread
#     count changed;
#   - Redis does not see exactly one connection per server thread at the end (a reconnection
#     that leaks or doubles connections), or /metrics did not count every degraded decision the
#     clients saw;
#   - a process exits on its own, a floodgate does not exit 0 on the final SIGTERM (drain), a
#     reload is not applied or an invalid one is not refused, the reload counters differ from
#     the reloads sent, or a Redis key has no expiry.
# store_timeout is 250 ms, far above a decision's usual ~1 ms: this test is about leaks and
# errors, and on a shared 2-CPU machine (load average 10 and more from other work) Redis or the
# whole machine can stall for a few hundred ms; five such timeouts in a row open the circuit
# breaker, and a few hundred answers are degraded for ~0.5 s. The Redis monitor above tells such
# stalls apart from a fault of floodgate's.
# Latency is reported, not bounded: the machine is shared, so a slow interval says more about
# the neighbours than about floodgate; a stall of 2 s or more shows up as a wrk timeout, which
# fails.
#
# Environment (defaults in brackets): FLOODGATE [build/release/floodgate], SOAK_DURATION [600],
# SOAK_INTERVAL [10], SOAK_SAMPLE [2], SOAK_RATE [1000], SOAK_CONNECTIONS [5 per instance],
# SOAK_THREADS [2], SOAK_STORE_TIMEOUT [250ms], SOAK_RELOAD_EVERY [30],
# SOAK_REDIS_KILL_FIRST [40], SOAK_REDIS_KILL_EVERY [120], SOAK_REDIS_STOP_AT [20],
# SOAK_RSS_BOUND_KB [8192], SOAK_FD_BOUND [0], SOAK_RESULTS [build/soak/<UTC time>].
# Results: summary.md (also on stdout), intervals.tsv, samples.tsv, idle.tsv, metrics.tsv,
# events.tsv, redis-ping.tsv, interval-times.tsv (each interval's start and end, epoch ms), and
# the logs of every process.
# Needs wrk, redis-server, redis-cli, curl, python3 (scripts/deps.sh installs them).
# No `set -e`: every check is explicit, and a failed one must not stop the run before the
# report and the cleanup.
set -Euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
FLOODGATE=${FLOODGATE:-$root/build/release/floodgate}
SOAK_DURATION=${SOAK_DURATION:-600}
SOAK_INTERVAL=${SOAK_INTERVAL:-10}
SOAK_SAMPLE=${SOAK_SAMPLE:-2}
SOAK_RATE=${SOAK_RATE:-1000}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-5}
SOAK_THREADS=${SOAK_THREADS:-2}
SOAK_STORE_TIMEOUT=${SOAK_STORE_TIMEOUT:-250ms}
SOAK_RELOAD_EVERY=${SOAK_RELOAD_EVERY:-30}
SOAK_REDIS_KILL_FIRST=${SOAK_REDIS_KILL_FIRST:-40}
SOAK_REDIS_KILL_EVERY=${SOAK_REDIS_KILL_EVERY:-120}
SOAK_REDIS_STOP_AT=${SOAK_REDIS_STOP_AT:-20}
SOAK_RSS_BOUND_KB=${SOAK_RSS_BOUND_KB:-8192}
SOAK_FD_BOUND=${SOAK_FD_BOUND:-0}
SOAK_RESULTS=${SOAK_RESULTS:-$root/build/soak/$(date -u +%Y%m%dT%H%M%SZ)}
# The settings given in the environment, for the report's command line.
given=$(env | grep -E '^(SOAK_[A-Z_]+|FLOODGATE)=' | sort | tr '\n' ' ' || true)

log() { echo "soak: $*" >&2; }
die() { log "$*"; exit 1; }

for v in SOAK_DURATION SOAK_INTERVAL SOAK_SAMPLE SOAK_RATE SOAK_CONNECTIONS SOAK_THREADS \
  SOAK_RELOAD_EVERY SOAK_REDIS_KILL_FIRST SOAK_REDIS_KILL_EVERY SOAK_REDIS_STOP_AT \
  SOAK_RSS_BOUND_KB SOAK_FD_BOUND; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
((SOAK_INTERVAL >= 8)) || die "SOAK_INTERVAL must be at least 8 (a Redis fault takes 5 s of it)"
chunks=$(((SOAK_DURATION + SOAK_INTERVAL - 1) / SOAK_INTERVAL))
((chunks >= 3)) || die "SOAK_DURATION must cover at least 3 intervals (warm-up, start, end)"
((SOAK_RATE >= 2 * SOAK_CONNECTIONS)) || die "SOAK_RATE is too low for SOAK_CONNECTIONS"
[[ -x $FLOODGATE ]] || die "$FLOODGATE is not built (make build)"
for tool in wrk redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/deps.sh)"
done
[[ $SOAK_STORE_TIMEOUT =~ ^([0-9]+)(ms|s)$ ]] || die "SOAK_STORE_TIMEOUT must be like 250ms or 1s"
store_timeout_ms=${BASH_REMATCH[1]}
[[ ${BASH_REMATCH[2]} == s ]] && store_timeout_ms=$((store_timeout_ms * 1000))
stall_min_ms=$((store_timeout_ms / 2 > 50 ? store_timeout_ms / 2 : 50))
# Each connection waits this long between requests: rate per instance = connections x 1000 / delay.
delay_ms=$((SOAK_CONNECTIONS * 2 * 1000 / SOAK_RATE))
((delay_ms >= 1)) || die "SOAK_RATE is too high for SOAK_CONNECTIONS (delay under 1 ms)"

mkdir -p "$SOAK_RESULTS"
out=$(cd "$SOAK_RESULTS" && pwd)
work=$(mktemp -d /tmp/fg-soak-XXXXXX)
instances=(redis memory)
declare -A fg_pid=() fg_port=() fg_config=()
redis_pid=""
redis_port=""
wrk_pids=()
monitor_pid=""
failures=()
notes=()

fail() {
  log "FAIL: $*"
  failures+=("$*")
}

# Stops what this script started, by PID: wrk runs, the Redis monitor, the floodgate instances
# (SIGTERM: drain, then SIGKILL after 10 s), redis-server (SIGCONT first, in case it is stopped).
cleanup() {
  local pid i
  trap - EXIT INT TERM
  for pid in "${wrk_pids[@]}" $monitor_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in "${instances[@]}"; do
    pid=${fg_pid[$i]:-}
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
  done
  for i in "${instances[@]}"; do
    pid=${fg_pid[$i]:-}
    [[ -n $pid ]] || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n $redis_pid ]]; then
    kill -CONT "$redis_pid" 2>/dev/null || true
    kill -TERM "$redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$redis_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  cp "$work"/*.log "$out/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# A free loopback port below the ephemeral range (so no outgoing connection takes it meanwhile;
# Redis is started again on the same port after each kill).
free_port() {
  python3 - <<'EOF'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    p = random.randint(10000, low - 1)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); sys.exit(0)
    except OSError:
        pass
    finally:
        s.close()
sys.exit("no free port")
EOF
}

# ---- processes --------------------------------------------------------------------------------

redis_cli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@" 2>/dev/null; }

start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    --daemonize no --logfile "$work/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do
    [[ $(redis_cli ping) == PONG ]] && return 0
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  die "redis-server did not start on port $redis_port (see $out/redis.log)"
}

# An independent witness of Redis's own responsiveness: PING every 20 ms on its own connection
# (reconnecting after a restart); every answer slower than 5 ms, and every failure, is a line
# "epoch_ms rtt_ms|down" in redis-ping.tsv. It exits by itself when this script is gone or after
# twice the planned duration.
start_monitor() {
  python3 - "$redis_port" "$out/redis-ping.tsv" $((2 * SOAK_DURATION + 300)) $$ <<'EOF' &
import os, socket, sys, time
port, path, limit, parent = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
out = open(path, "a", buffering=1)
end = time.time() + limit
conn = None
while time.time() < end and os.getppid() == parent:
    t = time.time()
    try:
        if conn is None:
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            part = conn.recv(64)
            if not part:
                raise OSError("closed")
            reply += part
        rtt = (time.time() - t) * 1000
        if rtt >= 5:
            out.write("%d\t%.1f\n" % (t * 1000, rtt))
    except OSError:
        if conn is not None:
            conn.close()
        conn = None
        out.write("%d\tdown\n" % (t * 1000))
    time.sleep(0.02)
EOF
  monitor_pid=$!
}

# redis_stall FROM_MS TO_MS: the slowest PING answer (ms) the monitor saw in that time.
redis_stall() {
  awk -F'\t' -v a="$1" -v b="$2" '$1 >= a && $1 <= b && $2 != "down" && $2 + 0 > m {m = $2 + 0}
    END {printf "%d", m}' "$out/redis-ping.tsv" 2>/dev/null || echo 0
}

# write_config INSTANCE VARIANT: the instance's config file, variant a, b or invalid.
write_config() {
  local i=$1 variant=$2 store per_second=10 tmp
  [[ $i == redis ]] && store=redis://127.0.0.1:$redis_port || store=memory://
  [[ $variant == b ]] && per_second=8
  tmp=${fg_config[$i]}.tmp
  cat >"$tmp" <<EOF
# floodgate soak, instance $i, variant $variant (tests/soak/soak.sh).
listen: 127.0.0.1:${fg_port[$i]}
threads: $SOAK_THREADS
store: $store
store_timeout: $SOAK_STORE_TIMEOUT
on_store_error: allow
identity:
  - header: X-API-Key
  - ip: {}
server:
  drain_timeout: 10s
policies:
  - name: per-second
    match: {path_prefix: /api/}
    algorithm: token_bucket
    limit: $per_second
    period: 1s
  - name: per-minute
    match: {path_prefix: /api/}
    algorithm: gcra
    limit: 100
    period: 60s
  - name: login
    match: {path: /api/login, method: POST}
    algorithm: sliding_window
    limit: 1
    period: 10s
  - name: search
    match: {path_prefix: /api/search}
    algorithm: sliding_window
    limit: 5
    period: 30s
  - name: exports
    match: {path_prefix: /api/export/}
    algorithm: fixed_window
    limit: 20
    period: 1m
    cost: 10
EOF
  if [[ $variant == b ]]; then
    cat >>"$tmp" <<EOF
  - name: trial
    match: {path_prefix: /api/}
    limit: 5
    period: 10s
    shadow: true
EOF
  elif [[ $variant == invalid ]]; then
    cat >>"$tmp" <<EOF
  - name: broken
    match: {path_prefix: /api/}
    limt: 5
    period: soon
EOF
  fi
  mv "$tmp" "${fg_config[$i]}"  # atomically: a reload never reads half a file
}

start_floodgate() {  # start_floodgate INSTANCE
  local i=$1
  "$FLOODGATE" serve --config "${fg_config[$i]}" >"$work/floodgate-$i.log" 2>&1 &
  fg_pid[$i]=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null -m 1 "http://127.0.0.1:${fg_port[$i]}/readyz" 2>/dev/null && return 0
    kill -0 "${fg_pid[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  die "floodgate ($i) did not become ready (see $out/floodgate-$i.log)"
}

# Whether PID runs (an exited child not yet waited for is a zombie: not running).
alive() {
  kill -0 "$1" 2>/dev/null && [[ $(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) != Z ]]
}

# ---- measurements -----------------------------------------------------------------------------

t0_ms=0
elapsed() { echo $((($(now_ms) - t0_ms) / 1000)); }

proc_field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

crashed=""
# One line per process in samples.tsv; a process found dead that should run is a failure.
sample() {
  local t i pid
  t=$(elapsed)
  for i in "${instances[@]}"; do
    pid=${fg_pid[$i]}
    if ! alive "$pid"; then
      [[ -z $crashed ]] &&
        fail "floodgate ($i, PID $pid) exited during the soak (see $out/floodgate-$i.log)"
      crashed=1
      continue
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$i" "$(proc_field "$pid" VmRSS)" "$(fd_count "$pid")" \
      "$(proc_field "$pid" Threads)" >>"$out/samples.tsv"
  done
  if [[ -n $redis_pid ]] && alive "$redis_pid"; then
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" redis-server "$(proc_field "$redis_pid" VmRSS)" \
      "$(fd_count "$redis_pid")" "$(proc_field "$redis_pid" Threads)" >>"$out/samples.tsv"
  elif ! $redis_down; then
    [[ -z $crashed ]] && fail "redis-server (PID $redis_pid) exited without being killed"
    crashed=1
  fi
}

metrics() { curl -fsS -m 5 "http://127.0.0.1:${fg_port[$1]}/metrics"; }

# metric TEXT REGEX: the sum of the sample values of the lines matching REGEX.
metric() { grep -E "$2" <<<"$1" | awk '{s += $NF} END {printf "%d", s}'; }

# One line per instance in metrics.tsv (cumulative counters).
record_metrics() {  # record_metrics CHUNK
  local i m
  for i in "${instances[@]}"; do
    m=$(metrics "$i") || { fail "GET /metrics failed on $i"; continue; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$i" \
      "$(metric "$m" '^floodgate_http_requests_total\{code="200"\}')" \
      "$(metric "$m" '^floodgate_http_requests_total\{code="429"\}')" \
      "$(metric "$m" '^floodgate_http_requests_total\{code="([^24]|2[^0]|20[^0]|4[^2]|42[^9])')" \
      "$(metric "$m" '^floodgate_degraded_decisions_total\{')" \
      "$(metric "$m" '^floodgate_store_requests_total\{result="ok"\}')" \
      "$(metric "$m" '^floodgate_store_requests_total\{result="(timeout|unavailable)"\}')" \
      "$(metric "$m" '^floodgate_store_requests_total\{result="circuit_open"\}')" \
      "$(metric "$m" '^floodgate_store_requests_total\{result="error"\}')" \
      "$(metric "$m" '^floodgate_config_reloads_total\{result="ok"\}')" \
      "$(metric "$m" '^floodgate_config_reloads_total\{result="error"\}')" \
      "$(metric "$m" '^floodgate_connections_total ')" >>"$out/metrics.tsv"
    echo "$m" >"$out/metrics-$i-last.txt"
  done
}

# Idle figures of each instance once wrk's connections are closed: open_connections is 1 (the
# /metrics request itself), then fds are counted until two reads agree. One line in idle.tsv.
record_idle() {  # record_idle CHUNK
  local i pid fds prev open
  for i in "${instances[@]}"; do
    pid=${fg_pid[$i]}
    alive "$pid" || continue
    for _ in $(seq 50); do
      open=$(metric "$(metrics "$i")" '^floodgate_open_connections ')
      [[ $open == 1 ]] && break
      sleep 0.1
    done
    [[ $open == 1 ]] || fail "$i: $open client connections still open 5 s after the load stopped"
    prev=-1
    for _ in $(seq 30); do
      sleep 0.1
      fds=$(fd_count "$pid")
      [[ $fds == "$prev" ]] && break
      prev=$fds
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(elapsed)" "$i" "$(proc_field "$pid" VmRSS)" "$fds" \
      "$(proc_field "$pid" Threads)" >>"$out/idle.tsv"
  done
}

event() {  # event DESCRIPTION: a line in events.tsv
  printf '%s\t%s\t%s\n' "$(elapsed)" "$chunk" "$*" >>"$out/events.tsv"
  log "t=$(elapsed)s: $*"
}

# ---- faults and reloads -----------------------------------------------------------------------

redis_down=false
redis_kills=0
redis_stops=0
redis_kill() {
  event "redis-server SIGKILL (PID $redis_pid)"
  redis_down=true
  kill -KILL "$redis_pid"
  wait "$redis_pid" 2>/dev/null || true
  redis_kills=$((redis_kills + 1))
}
redis_restart() {
  start_redis
  redis_down=false
  event "redis-server started again (PID $redis_pid, empty)"
}
redis_stop() {
  event "redis-server SIGSTOP"
  kill -STOP "$redis_pid"
  redis_stops=$((redis_stops + 1))
}
redis_cont() {
  kill -CONT "$redis_pid"
  event "redis-server SIGCONT"
}

variant=a
reload_attempts=0
reloads_valid=0
reloads_invalid=0
probes=0
probe_degraded=0

# Sets `quota` to the per-second quota a probe request sees in RateLimit-Policy on INSTANCE
# ("none" if absent); retried while the answer is degraded (no figures then), at most 5 s.
quota=""
probe_quota() {
  local i=$1 h
  quota=degraded
  for _ in $(seq 50); do
    probes=$((probes + 1))
    h=$(curl -sS -D - -o /dev/null -m 2 -H "X-API-Key: probe-$probes" \
      "http://127.0.0.1:${fg_port[$i]}/api/items/probe" | tr -d '\r')
    if grep -qi '^x-ratelimit-degraded' <<<"$h"; then
      probe_degraded=$((probe_degraded + 1))
      sleep 0.1
      continue
    fi
    quota=$(grep -i '^ratelimit-policy:' <<<"$h" | grep -o '"per-second";q=[0-9]*' | cut -d= -f2)
    quota=${quota:-none}
    return
  done
}

# expect_quota QUOTA WHAT: both instances show QUOTA, within 5 s (a reload is applied within the
# signal loop's 200 ms tick).
expect_quota() {
  local i
  for i in "${instances[@]}"; do
    for _ in $(seq 25); do
      probe_quota "$i"
      [[ $quota == "$1" ]] && break
      sleep 0.2
    done
    [[ $quota == "$1" ]] || fail "$i: after $2 the per-second quota is $quota, want $1"
  done
}

reload() {
  local i before want
  reload_attempts=$((reload_attempts + 1))
  if ((reload_attempts % 3 == 2)); then
    # An invalid file: refused, counted, the running config still decides.
    want=$([[ $variant == b ]] && echo 8 || echo 10)
    local refused='^floodgate_config_reloads_total\{result="error"\}' now
    for i in "${instances[@]}"; do
      before=$(metric "$(metrics "$i")" "$refused")
      write_config "$i" invalid
      kill -HUP "${fg_pid[$i]}"
      for _ in $(seq 50); do
        now=$(metric "$(metrics "$i")" "$refused")
        ((now > before)) && break
        sleep 0.1
      done
      ((now > before)) || fail "$i: an invalid config was not refused within 5 s"
    done
    event "SIGHUP with an invalid config: refused by both"
    expect_quota "$want" "an invalid reload"
    for i in "${instances[@]}"; do write_config "$i" "$variant"; done
    reloads_invalid=$((reloads_invalid + 1))
  else
    variant=$([[ $variant == a ]] && echo b || echo a)
    want=$([[ $variant == b ]] && echo 8 || echo 10)
    for i in "${instances[@]}"; do
      write_config "$i" "$variant"
      kill -HUP "${fg_pid[$i]}"
    done
    event "SIGHUP with config variant $variant"
    expect_quota "$want" "a reload to variant $variant"
    reloads_valid=$((reloads_valid + 1))
  fi
}

# ---- the run ----------------------------------------------------------------------------------

redis_port=$(free_port)
for i in "${instances[@]}"; do
  fg_port[$i]=$(free_port)
  fg_config[$i]=$work/floodgate-$i.yaml
done
[[ ${fg_port[redis]} != "${fg_port[memory]}" && ${fg_port[redis]} != "$redis_port" &&
  ${fg_port[memory]} != "$redis_port" ]] || die "free_port picked one port twice; run again"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "results in $out"
log "$chunks intervals of ${SOAK_INTERVAL}s, ~$SOAK_RATE req/s" \
  "($SOAK_CONNECTIONS connections per instance, ${delay_ms} ms apart)"
start_redis
start_monitor
for i in "${instances[@]}"; do
  write_config "$i" a
  "$FLOODGATE" validate "${fg_config[$i]}" >/dev/null || die "config variant a is invalid"
  start_floodgate "$i"
done
printf 't_s\tprocess\trss_kb\tfds\tthreads\n' >"$out/samples.tsv"
printf 'interval\tt_s\tinstance\trss_kb\tidle_fds\tthreads\n' >"$out/idle.tsv"
printf 't_s\tinterval\tevent\n' >"$out/events.tsv"
tsv_header() { local IFS=$'\t'; echo "$*"; }
tsv_header interval instance code_200 code_429 code_other degraded store_ok store_failed \
  store_circuit_open store_error reloads_ok reloads_error connections >"$out/metrics.tsv"
tsv_header interval instance kind requests req_per_s p50_ms p90_ms p99_ms max_ms code_200 \
  code_429 code_other degraded socket_errors other_codes >"$out/intervals.tsv"

# The interval in which each fault falls; reloads go to the first interval without a fault.
declare -A kill_chunk=() stop_chunk=()
for ((t = SOAK_REDIS_KILL_FIRST; t < SOAK_DURATION; t += SOAK_REDIS_KILL_EVERY)); do
  c=$((t / SOAK_INTERVAL))
  ((c >= 2 && c < chunks - 1)) && kill_chunk[$c]=1
  ((SOAK_REDIS_KILL_EVERY > 0)) || break
done
c=$((SOAK_REDIS_STOP_AT / SOAK_INTERVAL))
((c >= 2 && c < chunks - 1)) && [[ -z ${kill_chunk[$c]:-} ]] && stop_chunk[$c]=1
next_reload=$SOAK_RELOAD_EVERY

t0_ms=$(now_ms)
chunk=0
for ((chunk = 0; chunk < chunks; chunk++)); do
  [[ -n $crashed ]] && break
  chunk_ms=$(now_ms)
  kind=clean
  ((chunk == 0)) && kind=warmup
  [[ -n ${kill_chunk[$chunk]:-} || -n ${stop_chunk[$chunk]:-} ]] && kind=outage
  # Planned actions: "offset_ms name", in order.
  plan=()
  if [[ -n ${kill_chunk[$chunk]:-} ]]; then plan=("2000 redis_kill" "5000 redis_restart"); fi
  if [[ -n ${stop_chunk[$chunk]:-} ]]; then plan=("2000 redis_stop" "4000 redis_cont"); fi
  if ((SOAK_RELOAD_EVERY > 0 && chunk * SOAK_INTERVAL >= next_reload)) && [[ $kind == clean ]] &&
    ((chunk < chunks - 1)); then
    plan=("3000 reload")
    next_reload=$((next_reload + SOAK_RELOAD_EVERY))
  fi

  wrk_pids=()
  for i in "${instances[@]}"; do
    SOAK_KEY_PREFIX="i$chunk${i:0:1}" SOAK_DELAY_MS=$delay_ms SOAK_REQUESTS_PER_KEY=12 \
      wrk -t1 -c"$SOAK_CONNECTIONS" -d"${SOAK_INTERVAL}s" -T2s -s "$root/tests/soak/load.lua" \
      "http://127.0.0.1:${fg_port[$i]}" >"$work/wrk-$i.out" 2>&1 &
    wrk_pids+=($!)
  done
  next_sample=0
  step=0
  while :; do
    running=0
    for pid in "${wrk_pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    ((running)) || break
    offset=$(($(now_ms) - chunk_ms))
    if ((offset >= next_sample)); then
      sample
      next_sample=$((next_sample + SOAK_SAMPLE * 1000))
    fi
    if ((step < ${#plan[@]})) && ((offset >= ${plan[$step]%% *})); then
      ${plan[$step]#* }
      step=$((step + 1))
    fi
    sleep 0.1
  done
  for pid in "${wrk_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  wrk_pids=()
  # A fault whose second half did not run (wrk ended first): finish it now.
  while ((step < ${#plan[@]})); do
    ${plan[$step]#* }
    step=$((step + 1))
  done

  chunk_end_ms=$(now_ms)
  printf '%s\t%s\t%s\n' "$chunk" "$chunk_ms" "$chunk_end_ms" >>"$out/interval-times.tsv"
  stall_ms=$(redis_stall "$chunk_ms" "$chunk_end_ms")
  for i in "${instances[@]}"; do
    line=$(tail -n1 "$work/wrk-$i.out")
    read -r n dur e_conn e_read e_write e_timeout p50 p90 p99 pmax c200 c429 cother cdeg codes \
      <<<"$line"
    if ! [[ ${n:-} =~ ^[0-9]+$ && ${codes:-} ]]; then
      fail "interval $chunk, $i: wrk did not report: $(tail -n3 "$work/wrk-$i.out" | tr '\n' ' ')"
      continue
    fi
    sockerr=$((e_conn + e_read + e_write + e_timeout))
    row_kind=$kind
    # Degraded answers on instance "redis" outside a fault, while Redis itself left a PING
    # unanswered for at least half of store_timeout (and 50 ms): the store did not answer in
    # time, and floodgate did what it must. Reported (kind "stall"), not failed.
    if [[ $i == redis && $kind != outage ]] && ((cdeg > 0 && stall_ms >= stall_min_ms)); then
      row_kind=stall
      notes+=("interval $chunk: $cdeg degraded answers on instance redis while Redis itself left a PING unanswered for $stall_ms ms")
    fi
    ms() { awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$chunk" "$i" "$row_kind" "$n" \
      "$(awk -v n="$n" -v d="$dur" 'BEGIN {printf "%.0f", n / (d / 1e6)}')" \
      "$(ms "$p50")" "$(ms "$p90")" "$(ms "$p99")" "$(ms "$pmax")" "$c200" "$c429" "$cother" \
      "$cdeg" "$sockerr" "$codes" >>"$out/intervals.tsv"
    ((c200 + c429 + cother == n)) ||
      fail "interval $chunk, $i: $n responses but $((c200 + c429 + cother)) counted"
    ((cother == 0)) || fail "interval $chunk, $i: $cother responses other than 200/429 ($codes)"
    ((sockerr == 0)) || fail "interval $chunk, $i: socket errors: connect $e_conn," \
      "read $e_read, write $e_write, timeout $e_timeout"
    ((n > 0)) || fail "interval $chunk, $i: no response at all"
    if ((cdeg > 0)) && [[ $row_kind == clean || $row_kind == warmup || $i != redis ]]; then
      fail "interval $chunk ($kind), $i: $cdeg degraded responses without a fault" \
        "(slowest PING answer from Redis then: $stall_ms ms)"
    fi
    if [[ $kind == outage && $i == redis ]] && ((cdeg == 0)); then
      fail "interval $chunk, $i: a Redis fault but no degraded response (the fault missed the store)"
    fi
  done
  sample
  record_metrics "$chunk"
  record_idle "$chunk"
  log "interval $chunk/$((chunks - 1)) ($kind) done at t=$(elapsed)s"
done
elapsed_s=$(elapsed)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- end checks -------------------------------------------------------------------------------

# Every Redis key has an expiry (a state lives only as long as it matters).
keyspace=$(redis_cli info keyspace | tr -d '\r' | grep '^db0:' || true)
redis_keys=$(sed -n 's/.*keys=\([0-9]*\).*/\1/p' <<<"$keyspace")
redis_expires=$(sed -n 's/.*expires=\([0-9]*\).*/\1/p' <<<"$keyspace")
redis_keys=${redis_keys:-0}
redis_expires=${redis_expires:-0}
((redis_keys == redis_expires)) ||
  fail "Redis holds $redis_keys keys but only $redis_expires have an expiry"
# Each server thread of instance "redis" holds one connection, whatever the restarts (plus
# the monitor's and redis-cli's own): a reconnection that leaked or duplicated connections would
# show here.
redis_clients=$(redis_cli info clients | tr -d '\r' | sed -n 's/^connected_clients://p')
[[ $redis_clients == $((SOAK_THREADS + 2)) ]] ||
  fail "Redis has $redis_clients clients connected, want $((SOAK_THREADS + 2))" \
    "($SOAK_THREADS server threads, the monitor and redis-cli)"

# Every degraded answer is counted in /metrics: the server's count is the clients' (wrk and the
# probes), plus at most one per connection per outage interval (a response wrk did not read
# before its run ended).
outages=$(awk -F'\t' 'NR > 1 && $2 == "redis" && $3 == "outage"' "$out/intervals.tsv" | wc -l)
seen_degraded=$(awk -F'\t' 'NR > 1 && $2 == "redis" {s += $13} END {print s + 0}' \
  "$out/intervals.tsv")
seen_degraded=$((seen_degraded + probe_degraded))
counted_degraded=$(awk -F'\t' '$2 == "redis" {v = $6} END {print v + 0}' "$out/metrics.tsv")
((counted_degraded >= seen_degraded &&
  counted_degraded <= seen_degraded + outages * SOAK_CONNECTIONS)) ||
  fail "redis: /metrics counts $counted_degraded degraded decisions, clients saw $seen_degraded"

# Reload counters: exactly the reloads sent, on both instances.
last_metrics=$(tail -n2 "$out/metrics.tsv")
while IFS=$'\t' read -r _ i _ _ other _ _ _ _ _ rok rerr _; do
  [[ $rok == "$reloads_valid" && $rerr == "$reloads_invalid" ]] ||
    fail "$i: reloads counted ok=$rok error=$rerr," \
      "sent $reloads_valid valid and $reloads_invalid invalid"
  [[ $other == 0 ]] || fail "$i: /metrics counts $other responses other than 200/429"
done <<<"$last_metrics"

# Start (interval 1) against end (the last interval).
last=$((chunk - 1))
declare -A rss0=() rss1=() fd0=() fd1=() th0=() th1=()
while IFS=$'\t' read -r c _ i rss fds th; do
  [[ $c == 1 ]] && { rss0[$i]=$rss; fd0[$i]=$fds; th0[$i]=$th; }
  [[ $c == "$last" ]] && { rss1[$i]=$rss; fd1[$i]=$fds; th1[$i]=$th; }
done < <(tail -n +2 "$out/idle.tsv")
for i in "${instances[@]}"; do
  [[ -n ${rss0[$i]:-} && -n ${rss1[$i]:-} ]] || { fail "$i: no start or end measurement"; continue; }
  growth=$((rss1[$i] - rss0[$i]))
  ((growth <= SOAK_RSS_BOUND_KB)) ||
    fail "$i: RSS grew by $growth KiB (${rss0[$i]} -> ${rss1[$i]}), bound $SOAK_RSS_BOUND_KB KiB"
  d=$((fd1[$i] - fd0[$i]))
  ((d <= SOAK_FD_BOUND && -d <= SOAK_FD_BOUND)) ||
    fail "$i: idle fds ${fd0[$i]} at the start, ${fd1[$i]} at the end (bound ±$SOAK_FD_BOUND)"
  [[ ${th0[$i]} == "${th1[$i]}" ]] ||
    fail "$i: ${th0[$i]} threads at the start, ${th1[$i]} at the end"
done

# The final SIGTERM: each instance drains and exits 0.
declare -A exit_code=()
for i in "${instances[@]}"; do
  pid=${fg_pid[$i]}
  alive "$pid" || { exit_code[$i]=crashed; continue; }
  kill -TERM "$pid"
  for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    exit_code[$i]="still running 15 s after SIGTERM"
    kill -KILL "$pid"
  fi
  wait "$pid"
  rc=$?
  [[ -n ${exit_code[$i]:-} ]] || exit_code[$i]=$rc
  fg_pid[$i]=""
  [[ ${exit_code[$i]} == 0 ]] || fail "$i: exit status ${exit_code[$i]} after SIGTERM (want 0)"
done
cp "$work"/floodgate-*.log "$out/" 2>/dev/null || true

# ---- report -----------------------------------------------------------------------------------

# sum_col COLUMN INSTANCE KIND_REGEX: the sum of an intervals.tsv column over matching rows.
sum_col() {
  awk -F'\t' -v c="$1" -v i="$2" -v k="$3" \
    'NR > 1 && $2 == i && $3 ~ k {s += $c} END {printf "%d", s}' "$out/intervals.tsv"
}
# max_col COLUMN INSTANCE KIND_REGEX: its largest value.
max_col() {
  awk -F'\t' -v c="$1" -v i="$2" -v k="$3" \
    'NR > 1 && $2 == i && $3 ~ k && $c > m {m = $c} END {printf "%.2f", m}' "$out/intervals.tsv"
}
# col_of INTERVAL INSTANCE COLUMN: one value.
col_of() {
  awk -F'\t' -v n="$1" -v i="$2" -v c="$3" 'NR > 1 && $1 == n && $2 == i {print $c}' \
    "$out/intervals.tsv"
}
# The slowest PING answer outside the fault intervals.
redis_stall_outside() {
  local c m=0 v
  while IFS=$'\t' read -r c a b; do
    [[ -n ${kill_chunk[$c]:-} || -n ${stop_chunk[$c]:-} ]] && continue
    v=$(redis_stall "$a" "$b")
    ((v > m)) && m=$v
  done <"$out/interval-times.tsv"
  echo "$m"
}
# The idle RSS halfway: growth that goes on in the second half is what a leak looks like.
mid=$((last / 2))
declare -A rss_mid=()
while IFS=$'\t' read -r c _ i rss _ _; do
  [[ $c == "$mid" ]] && rss_mid[$i]=$rss
done < <(tail -n +2 "$out/idle.tsv")

version=$("$FLOODGATE" --version | awk '{print $2}')
{
  echo "# floodgate soak, $started_at"
  echo
  echo "Command: \`${given}tests/soak/soak.sh\` (floodgate $version; $chunks intervals of" \
    "${SOAK_INTERVAL} s, ${elapsed_s} s in all)."
  echo "Load: ~$SOAK_RATE req/s over two instances ($SOAK_CONNECTIONS connections each," \
    "${delay_ms} ms between requests), $SOAK_THREADS server threads each," \
    "store_timeout $SOAK_STORE_TIMEOUT."
  echo "Machine: $(nproc) CPUs, load average $load_start at the start, $load_end at the end."
  echo "Faults: $redis_kills Redis SIGKILL + restart, $redis_stops SIGSTOP/SIGCONT (2 s);" \
    "reloads: $reloads_valid valid, $reloads_invalid invalid (refused)."
  echo
  echo "Start: after interval 1 (t = $((2 * SOAK_INTERVAL)) s); middle: after interval $mid;" \
    "end: after interval $last. RSS and fds are taken with no client connected."
  echo
  echo "| instance | RSS start → middle → end (KiB) | growth (bound) | idle fds start → end" \
    "(bound) | threads | p50 start → end (ms) | p99 start → end (ms) |" \
    "worst p99, clean / outage intervals (ms) |"
  echo "|---|---|---|---|---|---|---|---|"
  for i in "${instances[@]}"; do
    echo "| $i | ${rss0[$i]:-?} → ${rss_mid[$i]:-?} → ${rss1[$i]:-?}" \
      "| $((${rss1[$i]:-0} - ${rss0[$i]:-0})) ($SOAK_RSS_BOUND_KB)" \
      "| ${fd0[$i]:-?} → ${fd1[$i]:-?} (±$SOAK_FD_BOUND) | ${th0[$i]:-?} → ${th1[$i]:-?}" \
      "| $(col_of 1 "$i" 6) → $(col_of "$last" "$i" 6)" \
      "| $(col_of 1 "$i" 8) → $(col_of "$last" "$i" 8)" \
      "| $(max_col 8 "$i" '^clean$') / $(max_col 8 "$i" '^outage$') |"
  done
  echo
  echo "| instance | responses | 200 | 429 | other | degraded: outage intervals |" \
    "Redis stalls | elsewhere | socket errors | exit status |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for i in "${instances[@]}"; do
    echo "| $i | $(sum_col 4 "$i" .) | $(sum_col 10 "$i" .) | $(sum_col 11 "$i" .)" \
      "| $(sum_col 12 "$i" .) | $(sum_col 13 "$i" '^outage$') | $(sum_col 13 "$i" '^stall$')" \
      "| $(sum_col 13 "$i" '^(clean|warmup)$') | $(sum_col 14 "$i" .) | ${exit_code[$i]:-?} |"
  done
  echo
  echo "Degraded decisions: $seen_degraded seen by the clients, $counted_degraded counted in" \
    "/metrics."
  echo "Redis at the end: $redis_keys keys, $redis_expires with an expiry;" \
    "$redis_clients clients connected."
  echo "Probe requests (reload checks): $probes, of which $probe_degraded degraded."
  echo "Slowest PING answer from Redis outside the faults: $(redis_stall_outside) ms" \
    "(redis-ping.tsv)."
  for n in "${notes[@]}"; do echo "- Stall: $n."; done
  echo
  if ((${#failures[@]} == 0)); then
    echo "Result: **pass**."
  else
    echo "Result: **FAIL** (${#failures[@]}):"
    for f in "${failures[@]}"; do echo "- $f"; done
  fi
} >"$out/summary.md"
cat "$out/summary.md"
((${#failures[@]} == 0))
