#!/usr/bin/env bash
# accuracy.sh — how many requests floodgate admits beyond the exact limit, for each algorithm,
# under concurrency across instances, with skewed instance clocks and through a Redis master
# failover; and, in simulated time, each algorithm against an exact reference.
# Run by `make bench-accuracy`; its output is docs/accuracy.md.
#
#   bench/accuracy.sh [OUT.md]      (default: markdown on stdout; progress on stderr)
#
# Everything runs on this machine, on loopback, on free ports, through deploy/local/stack.sh
# (a Redis Cluster of 3 masters + 3 replicas, 2 floodgate instances, HAProxy):
#   (a) concurrency: wrk (64 connections) on one API key through HAProxy, so both instances decide
#       for the same key at once; one policy per algorithm with a long period (the exact count is
#       the limit) and one with a 1 s period (refill matters: the exact count comes from the Redis
#       TIME read before and after the load).
#   (b) clock skew: the same, with the instances restarted under libfaketime, +5 s and -7 s.
#   (c) failover: for on_store_error allow, deny and local, each on a fresh stack, load on one key
#       and SIGKILL of the master owning that key's slot 1 s into it.
#   (d) bench/window_accuracy: floodgate's core::apply against exact references, simulated time.
#
# Environment (defaults in brackets): FLOODGATE [build/release/floodgate],
# WINDOW_ACCURACY [build/release/bench/window_accuracy], DURATION [3] seconds per load in (a)/(b),
# CONNECTIONS [64], SKEW_1 [+5], SKEW_2 [-7] (libfaketime offsets of instances 1 and 2, in seconds),
# MAIN_STORE_TIMEOUT [1s] (store_timeout in (a) and (b)).
# The whole run takes about 3 minutes. Every process it starts is stopped by PID on exit
# (stack.sh down). Exit 1 if a stack cannot be started, the clocks were not skewed, or a load got
# answers other than 200/429 where only those are possible; and, after writing the report, if any
# row admitted beyond a guaranteed allowance (bench/accuracy_findings.py: any row of (a) or (b),
# and in (d) the algorithms that are exact with a true clock). Every sentence of the report that
# states a finding is computed from this run's tables by bench/accuracy_findings.py.
# Needs wrk, curl, redis-cli, haproxy, python3 and libfaketime (scripts/deps.sh).
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/dev/stdout}
FLOODGATE=${FLOODGATE:-$root/build/release/floodgate}
WINDOW_ACCURACY=${WINDOW_ACCURACY:-$root/build/release/bench/window_accuracy}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-64}
SKEW_1=${SKEW_1:-+5}
SKEW_2=${SKEW_2:--7}
# (a) and (b) measure the decisions, not timeouts: on a loaded machine a 50 ms store_timeout can
# expire under wrk's 64 connections, and each such request is admitted without the store (fail
# open, counted as "fail open"). (c) uses the deployment's 50 ms.
MAIN_STORE_TIMEOUT=${MAIN_STORE_TIMEOUT:-1s}
stack=$root/deploy/local/stack.sh

log() { echo "accuracy: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $FLOODGATE ]] || die "$FLOODGATE is not built (make build)"
[[ -x $WINDOW_ACCURACY ]] ||
  die "$WINDOW_ACCURACY is not built (cmake --build --preset release --target window_accuracy)"
for tool in wrk curl redis-cli haproxy python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/deps.sh)"
done
libfaketime=""
for f in /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1; do
  [[ -f $f ]] && { libfaketime=$f; break; }
done
[[ -n $libfaketime ]] || die "libfaketime is not installed (apt-get install faketime)"

work=$(mktemp -d /tmp/fg-accuracy-XXXXXX)
export FG_BIN=$FLOODGATE
cleanup() {
  if [[ -n ${FG_RUN_DIR:-} ]]; then "$stack" down >/dev/null 2>&1 || true; fi
  jobs -p | xargs -r kill -TERM 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
started=$SECONDS

# ---- the stack -----------------------------------------------------------------------------

stack_number=0
# stack_up CONFIG: a fresh stack (new run directory, new ports) with CONFIG; once more on other
# ports if a port was taken in between.
stack_up() {
  local attempt ports
  export FG_CONFIG=$1 FG_INSTANCES=2
  for attempt in 1 2; do
    stack_number=$((stack_number + 1))
    ports=$("$root/scripts/free-port-block.sh" 20)
    export FG_RUN_DIR=$work/stack-$stack_number FG_HTTP_PORT=$ports FG_HTTPS_PORT=$((ports + 1))
    export FG_INSTANCE_PORT=$((ports + 2)) FG_REDIS_PORT=$((ports + 4))
    url=http://127.0.0.1:$FG_HTTP_PORT
    if "$stack" up 2>>"$work/stack.log"; then return; fi
    "$stack" down >/dev/null 2>&1 || true
    log "stack did not start (attempt $attempt; see below)"
    tail -n 5 "$work/stack.log" >&2
  done
  die "could not start the stack"
}

stack_down() {
  "$stack" down 2>>"$work/stack.log" || log "stack down reported a problem (see $work/stack.log)"
  unset FG_RUN_DIR
}

redis_seed_port() { local u; u=$(cat "$FG_RUN_DIR/redis/url"); u=${u#redis-cluster://}; u=${u%%,*}; echo "${u#*:}"; }

# The Redis clock (TIME) in µs, from the first node of the cluster that answers. The nodes share
# this machine's clock; floodgate's decisions take their `now` from it.
redis_now_us() {
  local p t
  for ((p = FG_REDIS_PORT; p < FG_REDIS_PORT + 6; p++)); do
    if t=$(redis-cli -h 127.0.0.1 -p "$p" TIME 2>/dev/null) && [[ $t =~ ^[0-9]+$'\n'[0-9]+$ ]]; then
      echo $((${t%%$'\n'*} * 1000000 + ${t##*$'\n'}))
      return
    fi
  done
  die "no Redis node answers TIME"
}

# The key floodgate stored for IDENTITY and POLICY (fg:{<tag>}:<identity>:<policy>), read from
# the masters: its tag is a keyed hash (key_secret), not computed here.
stored_key() {
  local seed port
  seed=$(redis_seed_port)
  for port in $(redis-cli -h 127.0.0.1 -p "$seed" CLUSTER NODES |
    awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }'); do
    redis-cli -h 127.0.0.1 -p "$port" --scan --pattern "fg:{*}:$1:$2"
  done | awk 'NR == 1'  # reads everything: no SIGPIPE under pipefail
}

# The port of the master that owns KEY's slot now.
master_of() {
  local seed slot
  seed=$(redis_seed_port)
  slot=$(redis-cli -h 127.0.0.1 -p "$seed" CLUSTER KEYSLOT "$1")
  redis-cli -h 127.0.0.1 -p "$seed" CLUSTER NODES | awk -v slot="$slot" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        n = split($i, r, "-"); lo = r[1]; hi = (n == 2) ? r[2] : r[1]
        if (slot >= lo + 0 && slot <= hi + 0) { split($2, a, "[:@]"); print a[2]; exit }
      }
    }'
}

# The sum of floodgate_decisions_total{policy=P,outcome=O} over both instances.
decisions() {  # decisions POLICY OUTCOME
  local i sum=0 v
  for i in 1 2; do
    v=$(curl -s -m 2 "http://127.0.0.1:$((FG_INSTANCE_PORT + i - 1))/metrics" |
      awk -v m="floodgate_decisions_total{policy=\"$1\",outcome=\"$2\"}" '$1 == m {print $2}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
degraded_allowed() {  # floodgate_degraded_decisions_total{mode="allow"} over both instances
  local i sum=0 v
  for i in 1 2; do
    v=$(curl -s -m 2 "http://127.0.0.1:$((FG_INSTANCE_PORT + i - 1))/metrics" |
      awk '$1 == "floodgate_degraded_decisions_total{mode=\"allow\"}" {print $2}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
deny_cache_hits() {  # floodgate_deny_cache_hits_total over both instances
  local i sum=0 v
  for i in 1 2; do
    v=$(curl -s -m 2 "http://127.0.0.1:$((FG_INSTANCE_PORT + i - 1))/metrics" |
      awk '$1 == "floodgate_deny_cache_hits_total" {print $2}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
decisions_on() {  # decisions_on INSTANCE POLICY: every decision of POLICY on that instance
  curl -s -m 2 "http://127.0.0.1:$((FG_INSTANCE_PORT + $1 - 1))/metrics" |
    awk -v p="floodgate_decisions_total{policy=\"$2\"," 'index($1, p) == 1 {s += $2} END {print s + 0}'
}

# ---- load ----------------------------------------------------------------------------------

# wrk counts each answer by status, and 200s by whether X-RateLimit-Degraded was set (the decision
# was not made by the shared store).
cat >"$work/count.lua" <<'EOF'
wrk.headers["X-API-Key"] = os.getenv("FG_KEY")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, degraded, limited, unavailable, nobackend, other = 0, 0, 0, 0, 0, 0 end
function response(status, headers, body)
  if status == 200 then
    if headers["x-ratelimit-degraded"] or headers["X-RateLimit-Degraded"] then
      degraded = degraded + 1
    else
      ok = ok + 1
    end
  elseif status == 429 then limited = limited + 1
  elseif status == 503 then
    -- HAProxy's own 503: no instance in rotation. floodgate's is application/problem+json.
    if body and body:find("No server is available", 1, true) then
      nobackend = nobackend + 1
    else
      unavailable = unavailable + 1
    end
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {ok = 0, degraded = 0, limited = 0, unavailable = 0, other = 0, nobackend = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  local e = summary.errors
  io.write(string.format("counts %d %d %d %d %d %d %d %d\n", t.ok, t.degraded, t.limited,
    t.unavailable, t.other, e.connect + e.read + e.write + e.timeout, summary.requests,
    t.nobackend))
end
EOF

# load PATH KEY SECONDS CONNECTIONS: wrk through HAProxy; prints
# "ok degraded limited unavailable other socket_errors requests no_backend" (unavailable: floodgate's
# 503; no_backend: HAProxy's 503 when no instance is in rotation).
load() {
  local threads=2
  (($4 < 2)) && threads=1
  local o
  o=$(mktemp "$work/wrk.XXXXXX")
  FG_KEY=$2 wrk -t"$threads" -c"$4" -d"$3"s --timeout 2s -s "$work/count.lua" "$url$1" \
    >"$o" 2>&1 || { log "wrk failed: $(cat "$o")"; return 1; }
  awk '$1 == "counts" {print $2, $3, $4, $5, $6, $7, $8, $9}' "$o"
}

# ---- exact allowances ----------------------------------------------------------------------

# exact ALGORITHM LIMIT BURST PERIOD_US T0_US T1_US: the most the algorithm's exact definition
# admits for one key, starting empty, over decisions made within [T0, T1] (Redis TIME).
#   token_bucket, gcra   burst + limit * (T1 - T0) / period, rounded down (the arrival curve)
#   fixed_window         limit per aligned window [k*period, (k+1)*period) that [T0, T1] touches
#   sliding_window       what the counter guarantees: its estimate counts the current aligned
#                        window's admissions in full, so no aligned window admits more than
#                        limit: limit per aligned window [T0, T1] touches, as fixed_window. It
#                        approximates the sliding log (limit per (t - period, t]), which can be
#                        less: the findings under (a) and (b) compare with it, (d) measures it.
exact() {
  local a=$1 limit=$2 burst=$3 period=$4 t0=$5 t1=$6
  case $a in
    token_bucket | gcra) echo $(((burst * period + limit * (t1 - t0)) / period)) ;;
    fixed_window | sliding_window) echo $((limit * (t1 / period - t0 / period + 1))) ;;
  esac
}

algorithms=(token_bucket gcra sliding_window fixed_window)
short() {  # the short name of an algorithm in policy names and paths
  case $1 in
    token_bucket) echo tb ;;
    gcra) echo gcra ;;
    sliding_window) echo sw ;;
    fixed_window) echo fw ;;
  esac
}

LONG_LIMIT=100        # per hour: refill over a few seconds is a small fraction of a token
SHORT_LIMIT=100       # per second: refill is most of what is admitted
# write_config FILE ON_STORE_ERROR FAILOVER_LIMIT STORE_TIMEOUT: one policy per algorithm and case, on its own
# path prefix: /api/<alg>-long/ (100 per hour), /api/<alg>-short/ (100 per second),
# /api/<alg>-fo/ (FAILOVER_LIMIT per hour). Identity: X-API-Key only.
write_config() {
  local a s
  cat >"$1" <<EOF
# Written by bench/accuracy.sh.
threads: 1
store_timeout: $4
on_store_error: $2
local_fallback:
  instances: 2
trusted_proxies: [127.0.0.1/32, "::1/128"]
identity:
  - header: X-API-Key
access_log: true
server:
  drain_delay: 1s
  drain_timeout: 5s
policies:
EOF
  for a in "${algorithms[@]}"; do
    s=$(short "$a")
    cat >>"$1" <<EOF
  - {name: $s-long, match: {path_prefix: /api/$s-long/}, algorithm: $a, limit: $LONG_LIMIT, period: 1h}
  - {name: $s-short, match: {path_prefix: /api/$s-short/}, algorithm: $a, limit: $SHORT_LIMIT, period: 1s}
  - {name: $s-fo, match: {path_prefix: /api/$s-fo/}, algorithm: $a, limit: $3, period: 1h}
EOF
  done
  "$FLOODGATE" validate "$1" >/dev/null || die "the generated config is invalid: $1"
}

# ---- (a) and (b): one key, both instances, every algorithm ---------------------------------

run_id=$(date +%s)
total_rate=0  # requests/s through HAProxy on one key, measured in the first run (for (c))
# concurrency_table LABEL: one row per algorithm and period: prints markdown rows.
concurrency_rows() {
  local label=$1 a s kind limit period key t0 t1 counts ok deg lim una oth err req before after
  local admitted ex beyond i1 i2 d1 d2 bad deg_before deg_after fail_open nob hits_before
  for a in "${algorithms[@]}"; do
    for kind in long short; do
      s=$(short "$a")
      if [[ $kind == long ]]; then limit=$LONG_LIMIT period=3600000000; else limit=$SHORT_LIMIT period=1000000; fi
      key="acc-$run_id-$label-$s-$kind"
      before=$(decisions "$s-$kind" allowed) deg_before=$(degraded_allowed)
      hits_before=$(deny_cache_hits)
      i1=$(decisions_on 1 "$s-$kind") i2=$(decisions_on 2 "$s-$kind")
      t0=$(redis_now_us)
      counts=$(load "/api/$s-$kind/x" "$key" "$DURATION" "$CONNECTIONS") || die "$label $a $kind: load failed"
      t1=$(redis_now_us)
      [[ -n $t0 && -n $t1 && $counts =~ ^[0-9\ ]+$ ]] || die "$label $a $kind: no measurement ($t0, $t1, $counts)"
      read -r ok deg lim una oth err req nob <<<"$counts"
      after=$(decisions "$s-$kind" allowed) deg_after=$(degraded_allowed)
      d1=$(($(decisions_on 1 "$s-$kind") - i1)) d2=$(($(decisions_on 2 "$s-$kind") - i2))
      # Admitted: allowed by the store, plus any request admitted without it (fail open, when a
      # decision did not come back within store_timeout; none expected at this store_timeout).
      fail_open=$((deg_after - deg_before))
      admitted=$((after - before + fail_open))
      ex=$(exact "$a" "$limit" "$limit" "$period" "$t0" "$t1")
      beyond=$((admitted > ex ? admitted - ex : 0))
      bad=$((una + oth + nob))
      ((bad == 0)) || die "$label $a $kind: $bad answers that were neither 200 nor 429 ($counts)"
      if [[ $label == concurrency && $a == token_bucket && $kind == long ]]; then
        total_rate=$((req * 1000000 / (t1 - t0)))
      fi
      printf '| %s | %s | %s | %d | %d | %d | %d | %d / %d | %d | %d | %d | **%d** |\n' "$a" \
        "$limit per $([[ $kind == long ]] && echo 1 h || echo 1 s)" \
        "$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e6}')" "$req" "$((ok + deg))" "$lim" "$err" \
        "$d1" "$d2" "$fail_open" "$admitted" "$ex" "$beyond"
      # Beside the table: how many of the 429s the deny caches answered without Redis.
      printf '| %s | %s | %d | %d |\n' "$a" "$s-$kind" "$lim" "$(($(deny_cache_hits) - hits_before))" \
        >>"$work/$label-hits"
      log "$label $a $kind: $req requests, $admitted admitted, exact $ex, beyond $beyond"
    done
  done
}
concurrency_header() {
  echo '| algorithm | policy | interval (s, Redis TIME) | requests | 200 | 429 | socket errors | decisions on instance 1 / 2 | fail open | admitted | exact | beyond |'
  echo '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|'
}

# clock_offset N: the offset of instance N's wall clock from this machine's, in seconds (from the
# time of its access-log line for a request sent to it directly, against `date` around it).
clock_offset() {
  local n=$1 logf before after probe line stamp
  logf=$FG_RUN_DIR/instance-$n.log
  probe="/clock-probe-$n-$RANDOM"
  before=$(date +%s.%N)
  curl -s -o /dev/null -m 2 -H "X-API-Key: probe" "http://127.0.0.1:$((FG_INSTANCE_PORT + n - 1))$probe"
  after=$(date +%s.%N)
  for _ in $(seq 50); do
    line=$(grep -F "\"$probe\"" "$logf" | tail -1 || true)
    [[ -n $line ]] && break
    sleep 0.1
  done
  [[ -n $line ]] || die "instance $n logged no line for $probe"
  stamp=$(sed -E 's/.*"time":"([^"]+)".*/\1/' <<<"$line")
  python3 - "$stamp" "$before" "$after" <<'EOF'
import sys, datetime
stamp = datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp()
mid = (float(sys.argv[2]) + float(sys.argv[3])) / 2
print(f"{stamp - mid:+.2f}")
EOF
}

# restart instance N under libfaketime with offset SKEW (only the wall clock: the monotonic clock,
# which timers and timeouts use, is left alone).
restart_skewed() {
  local n=$1 skew=$2 wrapper=$work/floodgate-skew-$1
  cat >"$wrapper" <<EOF
#!/bin/sh
# Written by bench/accuracy.sh: floodgate with its wall clock $skew off.
FAKETIME="$skew" FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD="$libfaketime" exec "$FLOODGATE" "\$@"
EOF
  chmod +x "$wrapper"
  "$stack" stop-instance "$n" 2>>"$work/stack.log"
  FG_BIN=$wrapper "$stack" start-instance "$n" 2>>"$work/stack.log"
}

# HAProxy routes to an instance again after 2 good checks 500 ms apart: wait until both answer
# through it (bounded).
wait_both_routed() {
  local i seen1 seen2
  for i in $(seq 40); do
    seen1=$(decisions_on 1 tb-long) seen2=$(decisions_on 2 tb-long)
    curl -s -o /dev/null -m 2 -H "X-API-Key: route-probe-$i" "$url/api/tb-long/x"
    curl -s -o /dev/null -m 2 -H "X-API-Key: route-probe-$i" "$url/api/tb-long/x"
    if (($(decisions_on 1 tb-long) > seen1 && $(decisions_on 2 tb-long) > seen2)); then return; fi
    sleep 0.25
  done
  die "HAProxy does not route to both instances"
}

# ---- (c) failover --------------------------------------------------------------------------

# failover_rows MODE LIMIT: a fresh stack with on_store_error MODE; 4 loads (one per algorithm,
# 16 connections each) on one key, so all four states live on one master; that master SIGKILLed
# 1 s in; loads of FAILOVER_SECONDS. Prints markdown rows.
FAILOVER_SECONDS=10
failover_rows() {
  local mode=$1 limit=$2 key master pid t0 t1 a s i ok deg lim una oth err req ex admitted beyond nob
  local pids=() recovered=""
  write_config "$work/fo-$mode.yaml" "$mode" "$limit" 50ms
  stack_up "$work/fo-$mode.yaml"
  key="acc-$run_id-fo-$mode"
  t0=$(redis_now_us)
  for a in "${algorithms[@]}"; do
    s=$(short "$a")
    load "/api/$s-fo/x" "$key" "$FAILOVER_SECONDS" 16 >"$work/fo-$mode-$s.counts" || true &
    pids+=($!)
  done
  sleep 1
  # Every policy of one identity shares its hash tag, hence its slot and master. The tag is a
  # keyed hash of the identity, so the key is found where floodgate wrote it.
  local stored
  stored=$(stored_key "key:x-api-key:$key" tb-fo)
  [[ -n $stored ]] || die "failover $mode: no key of identity $key in any master"
  master=$(master_of "$stored")
  [[ -n $master ]] || die "no master found for the key's slot"
  pid=$(cat "$FG_RUN_DIR/redis/node-$master.pid")
  kill -KILL "$pid"
  log "failover $mode: SIGKILL master :$master (pid $pid)"
  for i in "${pids[@]}"; do wait "$i"; done
  t1=$(redis_now_us)
  # The slot is served by the promoted replica again (a request decided by the store, not
  # degraded), within 15 s.
  local headers
  for i in $(seq 150); do
    headers=$(curl -s -D - -o /dev/null -m 2 -H "X-API-Key: $key" "$url/api/tb-long/x" | tr -d '\r')
    if [[ $headers == "HTTP/1.1 200"* && ${headers,,} != *x-ratelimit-degraded* ]]; then
      recovered=1
      break
    fi
    sleep 0.1
  done
  [[ -n $recovered ]] || log "failover $mode: the slot still answers degraded after 15 s"
  for a in "${algorithms[@]}"; do
    s=$(short "$a")
    read -r ok deg lim una oth err req nob <"$work/fo-$mode-$s.counts"
    ex=$(exact "$a" "$limit" "$limit" 3600000000 "$t0" "$t1")
    admitted=$((ok + deg))
    beyond=$((admitted > ex ? admitted - ex : 0))
    [[ -n $req ]] || die "failover $mode $a: no counts"
    printf '| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | **%d** | %d |\n' "$mode" "$a" \
      "$limit" "$req" "$ok" "$deg" "$lim" "$una" "$nob" "$((oth + err))" "$ex" "$beyond" \
      "$((ok > ex ? ok - ex : 0))"
    log "failover $mode $a: $req requests, $ok + $deg degraded admitted, exact $ex, beyond $beyond"
  done
  # HAProxy's view: instances taken out of rotation (/readyz failed twice) and times it had none.
  local downs none
  downs=$(grep -c 'is DOWN' "$FG_RUN_DIR/haproxy.log" || true)
  none=$(grep -c 'has no server available' "$FG_RUN_DIR/haproxy.log" || true)
  echo "$mode $master $([[ -n $recovered ]] && echo yes || echo no) $downs $none" >>"$work/fo-summary"
  stack_down
}

# ---- run -----------------------------------------------------------------------------------

date_run=$(date -u '+%Y-%m-%d %H:%M UTC')
log "(d) simulated time: $WINDOW_ACCURACY"
"$WINDOW_ACCURACY" >"$work/window.md"

log "(a) concurrency: starting the stack"
write_config "$work/main.yaml" allow 1000 "$MAIN_STORE_TIMEOUT"
stack_up "$work/main.yaml"
wait_both_routed
concurrency_rows concurrency >"$work/a.md"

log "(b) clock skew: instance 1 at $SKEW_1, instance 2 at $SKEW_2"
restart_skewed 1 "$SKEW_1"
restart_skewed 2 "$SKEW_2"
wait_both_routed
off1=$(clock_offset 1)
off2=$(clock_offset 2)
log "measured offsets: instance 1 $off1 s, instance 2 $off2 s"
# A skew that did not take (libfaketime not preloaded) would make (b) a copy of (a): refuse.
awk -v a="$off1" -v b="$off2" 'BEGIN {exit !((a > 2 || a < -2) && (b > 2 || b < -2))}' ||
  die "the instances' clocks are not skewed (offsets $off1 s, $off2 s)"
concurrency_rows skew >"$work/b.md"
stack_down

log "(a) again without the deny cache"
{ echo "deny_cache: false"; cat "$work/main.yaml"; } >"$work/nocache.yaml"
"$FLOODGATE" validate "$work/nocache.yaml" >/dev/null || die "the generated config is invalid"
stack_up "$work/nocache.yaml"
wait_both_routed
concurrency_rows nocache >"$work/a0.md"
stack_down

# (c): the failover limit is about 1.5 s of one key's share of the measured rate (4 loads at
# once), so that the master dies while the limit is still being drawn down (its last writes are
# in flight) and the limit runs out after the promotion (which takes ~3-5 s here).
fo_limit=$((total_rate * 3 / 8))
((fo_limit >= 200)) || fo_limit=200
log "(c) failover: limit $fo_limit per hour (measured $total_rate requests/s on one key)"
: >"$work/fo-summary"
: >"$work/c.md"
for mode in allow deny local; do failover_rows "$mode" "$fo_limit" >>"$work/c.md"; done

elapsed=$((SECONDS - started))

# The findings, from the tables above (find-*.md), and the rows that break a guarantee.
python3 "$root/bench/accuracy_findings.py" "$work" || die "bench/accuracy_findings.py failed"

# beyond_summary ROWS.md: one sentence with the total "beyond" (last column) per algorithm.
beyond_summary() {
  awk -F'|' '{gsub(/[ *]/, "", $(NF - 1)); b[$2] += $(NF - 1); n[$2]++}
    END {
      printf "Admitted beyond the exact count in this table, summed over its rows:"
      split(" token_bucket gcra sliding_window fixed_window ", order, " ")
      for (i = 1; i <= 4; i++) { k = " " order[i] " "; printf "%s %s %d", (i > 1 ? "," : ""), order[i], b[k] }
      print "."
    }' "$1"
}

# ---- report --------------------------------------------------------------------------------

# (awk NR == 1 rather than head -1: head would close the pipe early, and pipefail would fail.)
fg_version=$("$FLOODGATE" --version 2>&1 | awk 'NR == 1')
redis_version=$(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/')
haproxy_version=$(haproxy -v | awk 'NR == 1 {print $3}')
wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
faketime_version=$(dpkg-query -W -f '${Version}' libfaketime 2>/dev/null || echo unknown)
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)

{
  cat <<EOF
# Accuracy

How many requests floodgate admits beyond the exact limit, for each algorithm: under many
concurrent clients on one key across two instances, with the instances' clocks skewed by
seconds, through a Redis master failover, and (in simulated time) against exact references.
Generated by \`bench/accuracy.sh docs/accuracy.md\` (what \`make bench-accuracy\` runs) on
$date_run in $((elapsed / 60)) min $((elapsed % 60)) s.

Machine: $(nproc) vCPU ($cpu), $(uname -sr). floodgate \`$fg_version\` (commit $commit,
release build), redis-server $redis_version, HAProxy $haproxy_version, wrk $wrk_version, libfaketime
$faketime_version. Everything on loopback.

Setup (a)–(c): \`deploy/local/stack.sh\`: a Redis Cluster (3 masters + 3 replicas,
\`cluster-node-timeout 2000\`), 2 floodgate instances (\`threads: 1\`), HAProxy round robin in
front; \`store_timeout: $MAIN_STORE_TIMEOUT\` in (a) and (b) (they measure decisions, not timeouts
on this shared machine), the deployment's 50 ms in (c). One policy per algorithm and case on its
own path; identity from \`X-API-Key\`; every load is one fresh key, so every request of a load
competes for the same state on the same master. Load: \`wrk -t2 -c$CONNECTIONS -d${DURATION}s
--timeout 2s\` with a Lua script counting answers (200 with or without \`X-RateLimit-Degraded\`,
429, 503).

**admitted** is the sum over both instances of \`floodgate_decisions_total{outcome="allowed"}\`
for the policy (every decision, including answers wrk had not read when it stopped), plus any
request admitted without the store (**fail open**:
\`floodgate_degraded_decisions_total{mode="allow"}\`, a decision not back within
\`store_timeout\`); **exact** is the most the algorithm's exact definition admits for one key over
the interval between two Redis \`TIME\` readings taken just before and just after the load (every
decision of the load takes its \`now\` from Redis \`TIME\` within that interval):

| algorithm | exact allowance over [T0, T1] |
|---|---|
| token_bucket, gcra | floor(burst + limit · (T1 − T0) / period) (a full bucket, refilled continuously) |
| fixed_window | limit × the number of aligned windows [k·period, (k+1)·period) that [T0, T1] touches |
| sliding_window | what the counter guarantees: limit × the aligned windows [T0, T1] touches (its estimate counts the current window's admissions in full). The exact sliding log it approximates (at most limit in any (t − period, t]: limit × (floor((T1 − T0) / period) + 1)) can be less; the sentences under each table compare with it, and (d) measures the approximation |

**beyond** = max(0, admitted − exact): requests admitted that the exact definition would not
have admitted at any arrangement of the arrivals within the interval. Admitted can be below exact
(the load does not start and stop exactly at the TIME readings, and in-flight requests at the end
are never sent); it can only be above if a decision was wrong.

## (a) Many concurrent clients on one key, two instances

$(concurrency_header)
$(cat "$work/a.md")

$(beyond_summary "$work/a.md")
$(cat "$work/find-a.md")

### The deny cache changes no admission

(a) ran with each instance's deny cache on (the default): a 429 from Redis is answered again by
that instance, without Redis, until its \`Retry-After\` is over (docs/operations.md). The same
loads ran again on a fresh stack with \`deny_cache: false\`:

| algorithm | policy | 429s with the cache | from the deny cache | admitted with the cache | exact | admitted without | exact | beyond without |
|---|---|--:|--:|--:|--:|--:|--:|--:|
$(cat "$work/find-cache-rows.md")

$(cat "$work/find-cache.md")

Both instances decide for the same key at the same time (the decisions column); each decision is
one \`FCALL\` that reads the state, Redis \`TIME\`, decides and writes, atomically on the master
that owns the key. Concurrent decisions are therefore serialised by Redis: there is no
read-modify-write race between instances, whatever the number of instances or connections. The
1-second policies add refill (100 at the start, then 100 a second), with the exact count
computed from the Redis clock. A fixed window grants a new \`limit\` in each aligned window the
load touches; the sliding window counter approximates the sliding log (its error on other traffic
is measured in (d)).

## (b) Instances whose clocks are skewed

Instance 1 restarted under libfaketime with \`FAKETIME=$SKEW_1\`, instance 2 with
\`FAKETIME=$SKEW_2\` (\`FAKETIME_DONT_FAKE_MONOTONIC=1\`: only the wall clock is off; timers and
timeouts use the monotonic clock). Measured offset of each instance's wall clock (the \`time\` of
its access-log line for a request sent to it directly, against this machine's clock):
instance 1 **$off1 s**, instance 2 **$off2 s**.

$(concurrency_header)
$(cat "$work/b.md")

$(beyond_summary "$work/b.md")
$(cat "$work/find-b.md")

Why skew should change nothing: no decision reads an instance's clock. The Redis
function takes \`now\` from Redis \`TIME\` on the master that holds the key
(\`src/store/redis/lua/decide.lua\`), so every instance decides on the same clock whatever its own
says. (An instance's clock only stamps its logs; on the memory store, each instance has its own
state and its own clock, so skew has nothing to disagree with.) What skew would do if instances
passed their own time is simulated in (d), pattern "skewed clocks".

## (c) Redis master failover under load

For each \`on_store_error\` mode, a fresh stack; 4 loads at once (\`wrk -t2 -c16 -d${FAILOVER_SECONDS}s\`,
one per algorithm, policies of **$fo_limit per hour**, all on one API key so all four states live on
one master); 1 s in, the master owning the key's slot is SIGKILLed; its replica is promoted
after \`cluster-node-timeout\` (2 s) plus the election. The limit is about 1.5 s of one key's
share of the rate measured in (a) ($total_rate requests/s), chosen so that the master dies while
the limit is still being drawn down and the limit runs out after the promotion (the 429 column
shows whether it did). Counts are wrk's: the answers it read (requests in flight when it stops,
at most 16 per load, are not counted). **exact** as above over the whole load.

| on_store_error | algorithm | limit | requests | 200 by the store | 200 degraded | 429 | 503 floodgate | 503 HAProxy (no instance) | other / socket errors | exact | beyond | store admits beyond exact |
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
$(cat "$work/c.md")

$(awk '{printf "on_store_error %s: master :%s killed; slot served by the store again afterwards: %s; HAProxy took an instance out of rotation %d times and had none left %d times.  \n", $1, $2, $3, $4, $5}' "$work/fo-summary")

$(cat "$work/find-c.md")

Where the excess comes from:

- **Fail-open decisions** (\`allow\`): while the slot has no master, every decision for it fails
  within \`store_timeout\` (then at once, when the circuit breaker opens) and is admitted without
  being counted (\`X-RateLimit-Degraded: store-unavailable\`). The excess is about the client's
  request rate × the failover time, regardless of the limit. "200 degraded" is that number.
- **Local fallback** (\`local\`): each instance decides with its own memory limiter at
  limit / \`local_fallback.instances\`; it starts empty, so over the failover the two instances
  can admit up to one extra limit's worth between them (and a window algorithm a new allowance
  per window).
- **Deny** (\`deny\`): those requests get 503; nothing degraded is admitted.
- **503 from HAProxy** would be no admission but an outage of the whole API, every slot
  included: no instance in rotation (this run's count is above). \`/readyz\` depends on the store
  probe only, not on the circuit breaker, which is per instance and which the dead master's
  failures open while the other masters answer; when it depended on the breaker, this load kept
  both instances' breakers open and both left the rotation. \`e2e.redis_failover_concurrent\`
  fails if that comes back (/readyz not 200 on an instance, or an instance out of HAProxy, while
  the load's master fails over), and \`server_readiness_test\` checks the rule itself. The probe
  must also fail 3 rounds in a row (~2-3 s) before \`/readyz\` says 503: on this host the
  failover's vote sometimes stalled every master at once for 1-3 s, every instance's probe failed
  in the same round, and HAProxy had none left (runs of 2026-12-06 00:04 and 02:36).
- **Asynchronous replication**: a master acknowledges a write before its replica has it. The
  writes of the last moments before the kill can be missing on the promoted replica, which then
  admits those tokens again ("store admits beyond exact": 200s decided by the store beyond the
  exact count). It errs on the client's side and is bounded by the writes the replica had not
  received when the master died (on loopback, the last few milliseconds of writes); whether any
  are lost depends on where the kill lands, so it varies from run to run and mode to mode
  (this run's range is above).
  \`WAIT\` after each write would close it at the cost of a round trip to the replica per
  decision; floodgate does not.

## (d) Against exact references, in simulated time

\`build/release/bench/window_accuracy\` (\`bench/window_accuracy.cc\`) drives floodgate's own
\`core::apply\` (the function the memory store runs and the Redis function mirrors, checked by the
shared vectors) with simulated time and the state kept as a store keeps it (dropped after its
ttl), side by side with an exact reference:

- **sliding log**: admitted iff fewer than \`limit\` admitted in (t − period, t]; the exact
  sliding window.
- **aligned windows**: fixed_window's own definition.
- **arrival curve**: the exact token bucket defined without tokens: admitted iff afterwards every
  interval [tᵢ, tⱼ] of admitted requests holds at most burst + limit · (tⱼ − tᵢ) / period of
  them; checked with exact integers.

**false admits**: admitted, where the reference, given the same history (the requests the
algorithm had admitted), would have denied; **false denies**: the converse (percentages of the
algorithm's admits and denies); **beyond**: the most requests admitted beyond the reference's
bound in any interval (any window of one period for the sliding log).

$(cat "$work/window.md")

Reading it:

- With a true clock, in this run: $(cat "$work/find-d-exact.md") Integer microseconds and scaled
  tokens leave nothing to round, so any false admit or beyond here fails \`make bench-accuracy\`.
- **sliding_window** (two counters, the previous window weighted by its overlap) approximates the
  sliding log. This run: $(cat "$work/find-d-sliding.md") Under steady overload at most limit − 1
  fit after a full window (the previous window's weight is above 0 until the window ends). When
  the previous window's requests were bunched at its end (edge burst + steady), the weight
  undercounts them (the worst case of the algorithm: up to 2 × limit − 1 in one period); bunched
  at its start, it overcounts them and denies what the log would admit. A false deny is judged
  against the same history, so a counter that admits the same number a little later than the log
  shows many false denies while the totals stay close.
- **fixed_window** against its own definition (aligned windows) is in the first bullet; against a
  sliding log it can admit up to 2 × limit around a window edge (this run, $(cat "$work/find-d-fixed.md")).
- **skewed clocks** (each instance passing its own wall clock as \`now\`, which floodgate on Redis
  does not do): for token bucket and GCRA the skew mostly turns into false denies: the instance
  that is behind finds a state stamped in its future and gets no refill until its clock passes
  that stamp (time going backwards never adds tokens). They admit beyond when the slow instance
  writes a fresh state and the fast one then refills from its stamp (up to limit × (5 + 7) s /
  period at once); here at most the "beyond" shown. Windows start and end on the
  instances' clocks, so a skewed fixed window no longer holds even to its own aligned windows.
  This run, $(cat "$work/find-d-skewed.md").
  This is why the Redis function reads \`TIME\` itself.

## Commands

    make bench-accuracy                       # builds the two targets below, then runs the script
    cmake --build --preset release -j2 --target floodgate window_accuracy
    bench/accuracy.sh docs/accuracy.md
    build/release/bench/window_accuracy       # (d) alone
    DURATION=$DURATION CONNECTIONS=$CONNECTIONS SKEW_1=$SKEW_1 SKEW_2=$SKEW_2 bench/accuracy.sh OUT.md

Each load: \`FG_KEY=<fresh key> wrk -t2 -c$CONNECTIONS -d${DURATION}s --timeout 2s -s count.lua http://127.0.0.1:<haproxy>/api/<policy>/x\`
(the Lua script is written by \`bench/accuracy.sh\`); the failover loads use \`-c16 -d${FAILOVER_SECONDS}s\`.
EOF
} >"$out"
log "done in ${elapsed}s"
if [[ -s $work/violations.txt ]]; then
  log "rows admitted beyond a guaranteed allowance:"
  sed 's/^/  /' "$work/violations.txt" >&2
  exit 1
fi
