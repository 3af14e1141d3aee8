#!/usr/bin/env bash
# Concurrency limits (algorithm: concurrency) through the `floodgate` binary in proxy mode, in
# front of tests/fixtures/lenient_upstream.cc, whose /api/hold requests are logged on arrival
# and held until the test creates $tmp/upstream.log.release: so what is in flight is exactly what
# the upstream log shows, and nothing here depends on timing but the lease itself.
#
#   tests/concurrency/concurrency_test.sh CASE path/to/floodgate path/to/lenient_upstream SOURCE_DIR
#
#   two_instances  3 slots, 6 parallel held requests spread over two instances on one Redis:
#                  exactly 3 reach the upstream, the 3 others get 429 with Retry-After: 1 and the
#                  RateLimit fields of a concurrency policy; the in-flight gauges add up to 3;
#                  once the upstream answers, the slots are free again
#   killed         an instance holding every slot is killed (SIGKILL) mid-request: the other
#                  instance refuses until the leases run out (2 s after their last renewal, on
#                  Redis TIME, as the sorted set scores them), then allows again
#   disconnect     a client that gives up on a held request (its connection closed) keeps its
#                  slot while the upstream still holds that request: clients that send and go
#                  away one after the other never have two at the upstream; the slot comes back
#                  once the upstream answers
#   renewal        a request held past its lease (1 s) keeps its slot: a live instance renews it
#   timeout        a request answered 504 past upstream_timeout keeps its slot while the upstream
#                  still holds it, until it answers or upstream_hold_timeout passes
#   hold_cap       at most server.max_connections exchanges are held past their 504: each keeps
#                  an upstream connection open
#   drain_held     a stopping instance (SIGTERM) waits for an exchange it holds past its 504, within
#                  server.drain_timeout: the other instance does not admit while the upstream still
#                  holds the request; once it answers, the slot is given back in Redis and the
#                  instance exits 0; past drain_timeout it exits anyway, and says how many it held
#   memory         the same limit on the memory store, and all or nothing with a rate policy
#
# Every process is started here on free loopback ports and stopped by its PID.
set -u

case_name=$1
fg=$2
lenient=$3
src=$4
tmp=$(mktemp -d)
failures=0
pids=()

source "$src/tests/concurrency/lib.sh"

source "$src/tests/require_tools.sh"
require_tools curl:curl redis-server:redis-server redis-cli:redis-tools

base=$(bash "$src/scripts/free-port-block.sh" 4) || exit 1
fg_a=$base
fg_b=$((base + 1))
redis_port=$((base + 2))

# start_fg NAME PORT STORE: an instance with the policies on stdin; its PID in pid_NAME. These
# cases count admissions exactly, so the store has 2 s to answer: with the default deadline (20 ms)
# and on_store_error: allow, a decision that comes late (a sanitizer build on a busy host, the
# first one of a connection, which also loads the library) is admitted without the store.
start_fg() {
  local settings
  settings=$(cat)
  start_fg_named "$@" <<<"store_timeout: 2s
$settings"  # not in a pipeline: start_fg_named sets pids and pid_NAME in this shell
}

# Redis TIME in µs: the clock the leases' expiries are scored on.
redis_now_us() {
  local t
  t=($(redis-cli -p "$redis_port" time))
  echo $((t[0] * 1000000 + 10#${t[1]}))
}

held() { grep -c '^GET /api/hold' "$tmp/upstream.log"; }
held_ge() { (($(held) >= $1)); }  # at least $1 requests reached the upstream
gone() { ! kill -0 "$1" 2>/dev/null; }  # the process $1 has exited

# wait_for DESCRIPTION COMMAND...: until COMMAND succeeds, at most 10 s.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 1 200); do
    "$@" && return 0
    sleep 0.05
  done
  fail "timed out waiting for $what"
  return 1
}

# get_bg PORT PATH OUT: a request in the background, its status in OUT, its headers in
# OUT.headers; wait_bg waits for every such request (not for the servers).
bg=()
get_bg() {
  curl -s -D "$3.headers" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2" >"$3" &
  bg+=($!)
}
wait_bg() {
  for p in "${bg[@]}"; do wait "$p" 2>/dev/null; done
  bg=()
}

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

count_codes() {  # count_codes CODE FILE...: how many FILEs hold CODE
  local want=$1 n=0
  shift
  for f in "$@"; do [[ -s $f && $(cat "$f") == "$want" ]] && n=$((n + 1)); done
  echo "$n"
}

answered() {  # answered N FILE...: at least N of the FILEs hold a status
  local want=$1 n=0
  shift
  for f in "$@"; do [[ -s $f ]] && n=$((n + 1)); done
  ((n >= want))
}

held_metric() {  # floodgate_upstream_held_exchanges of instance a
  curl -s "http://127.0.0.1:$fg_a/metrics" | awk '/^floodgate_upstream_held_exchanges / {print $2}'
}

in_flight_metric() {  # the in-flight gauge of policy `slots` on PORT
  curl -s "http://127.0.0.1:$1/metrics" |
    awk '/^floodgate_concurrency_in_flight\{policy="slots"\}/ {print $2}'
}

case $case_name in
two_instances)
  start_upstream
  start_redis || exit 1
  policies='policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 3, lease: 30s}'
  start_fg a "$fg_a" "redis://127.0.0.1:$redis_port" <<<"$policies" || exit 1
  start_fg b "$fg_b" "redis://127.0.0.1:$redis_port" <<<"$policies" || exit 1
  outs=()
  for i in 1 2 3 4 5 6; do
    port=$fg_a
    ((i % 2 == 0)) && port=$fg_b
    get_bg "$port" /api/hold "$tmp/r$i"
    outs+=("$tmp/r$i")
  done
  # The three refused answer at once; the three admitted are held by the upstream.
  wait_for "3 answers of 6" answered 3 "${outs[@]}"
  wait_for "3 requests at the upstream" held_ge 3
  sleep 0.3  # a fourth admission, if there were one, would have reached the upstream by now
  [[ $(held) -eq 3 ]] || fail "$(held) requests in flight at the upstream (limit 3)"
  [[ $(count_codes 429 "${outs[@]}") -eq 3 ]] ||
    fail "want 3 answers 429, got $(count_codes 429 "${outs[@]}")"
  for f in "${outs[@]}"; do
    [[ -s $f && $(cat "$f") == 429 ]] || continue
    h=$(tr -d '\r' <"$f.headers")
    grep -qx 'Retry-After: 1' <<<"$h" || fail "a 429 without Retry-After: 1: $h"
    grep -qx 'RateLimit-Policy: "slots";q=3;qu="concurrent-requests"' <<<"$h" ||
      fail "RateLimit-Policy: $(grep RateLimit-Policy <<<"$h")"
    grep -qx 'RateLimit: "slots";r=0' <<<"$h" || fail "RateLimit: $(grep '^RateLimit:' <<<"$h")"
    break
  done
  a=$(in_flight_metric "$fg_a")
  b=$(in_flight_metric "$fg_b")
  [[ $((a + b)) -eq 3 ]] || fail "in-flight gauges $a + $b, want 3"
  touch "$tmp/upstream.log.release"
  wait_bg
  [[ $(count_codes 200 "${outs[@]}") -eq 3 ]] ||
    fail "want 3 answers 200, got $(count_codes 200 "${outs[@]}")"
  [[ $(in_flight_metric "$fg_a") -eq 0 && $(in_flight_metric "$fg_b") -eq 0 ]] ||
    fail "slots still counted in flight after the answers"
  # Every slot is free again: three at once pass.
  for i in 1 2 3; do get_bg "$fg_b" /api/hold "$tmp/s$i"; done
  wait_bg
  [[ $(count_codes 200 "$tmp/s1" "$tmp/s2" "$tmp/s3") -eq 3 ]] || fail "slots were not given back"
  ;;

killed)
  start_upstream
  start_redis || exit 1
  policies='policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 2, lease: 2s}'
  start_fg a "$fg_a" "redis://127.0.0.1:$redis_port" <<<"$policies" || exit 1
  start_fg b "$fg_b" "redis://127.0.0.1:$redis_port" <<<"$policies" || exit 1
  get_bg "$fg_a" /api/hold "$tmp/k1"
  get_bg "$fg_a" /api/hold "$tmp/k2"
  wait_for "2 requests at the upstream" held_ge 2
  [[ $(code "http://127.0.0.1:$fg_b/api/x") == 429 ]] || fail "a third request was admitted"
  killed_at=$(redis_now_us)
  kill -KILL "$pid_a"
  [[ $(code "http://127.0.0.1:$fg_b/api/x") == 429 ]] ||
    fail "the dead instance's slots came back before their lease"
  # Where the dead instance's leases run out: the latest expiry in the policy's sorted set
  # (scored in µs of Redis TIME). It is the last renewal's time plus the lease, and a live
  # instance renews every third of the lease: so not a whole lease after the kill, and the test
  # measures against it. Read once a renewal written just before the kill has reached Redis.
  sleep 0.2
  # The policy's only key: its name ends in the policy's (fg:{...}:ip:127.0.0.1:slots).
  slots_key=$(redis-cli -p "$redis_port" scan 0 match '*:slots' type zset count 1000 | tail -n +2)
  expiry=$(redis-cli -p "$redis_port" zrange "$slots_key" -1 -1 withscores | tail -1)
  [[ $expiry =~ ^[0-9]+$ ]] || fail "no lease held at $slots_key after the kill: '$expiry'"
  expiry=${expiry:-0}
  # (100 ms over the lease: a renewal written just before the kill reaches Redis after it.)
  ((expiry > killed_at && expiry <= killed_at + 2100000)) ||
    fail "the leases did not run out within the 2 s lease after the kill: $((expiry - killed_at)) µs"
  back=0
  for _ in $(seq 1 100); do  # at most ~10 s: the lease is 2 s
    got=$(code "http://127.0.0.1:$fg_b/api/x")
    now=$(redis_now_us)  # after the answer: the decision was made no later than this
    if [[ $got == 200 ]]; then
      back=1
      break
    fi
    sleep 0.1
  done
  ((back)) || fail "the dead instance's slots did not come back within 10 s"
  ((now < expiry)) && fail "slots came back $(((expiry - now) / 1000)) ms before their lease ran out"
  echo "slots of the killed instance came back $(((now - killed_at) / 1000)) ms after the kill;" \
    "their leases ran out $(((expiry - killed_at) / 1000)) ms after it (lease 2000 ms)"
  ;;

disconnect)
  start_upstream
  start_redis || exit 1
  start_fg a "$fg_a" "redis://127.0.0.1:$redis_port" <<'EOF' || exit 1
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 60s}
EOF
  curl -s -o /dev/null "http://127.0.0.1:$fg_a/api/hold" &
  client=$!
  wait_for "the request at the upstream" held_ge 1
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 429 ]] || fail "a second request was admitted"
  kill "$client"  # the client goes away; the upstream still works on its request
  wait "$client" 2>/dev/null
  # Servers do not stop a handler when its connection closes: the request is still at the
  # upstream, so the slot stays taken. Clients that send a request and go away, one after the
  # other, never have more than one at the upstream (before: one each, 5 at once for a limit of 1).
  for i in 1 2 3 4 5; do
    sleep 0.1
    c=$(code -m 1 "http://127.0.0.1:$fg_a/api/hold?n=$i")
    [[ $c == 429 ]] || fail "a request was admitted ($c) while the upstream still held the one of a client that went away"
  done
  [[ $(held) -eq 1 ]] || fail "$(held) requests at the upstream at once (limit 1)"
  # Once the upstream has answered, the slot is free.
  touch "$tmp/upstream.log.release"
  ok=0
  for _ in $(seq 1 40); do
    if [[ $(code "http://127.0.0.1:$fg_a/api/x") == 200 ]]; then
      ok=1
      break
    fi
    sleep 0.05
  done
  ((ok)) || fail "the slot did not come back once the upstream answered"
  ;;

renewal)
  start_upstream
  start_redis || exit 1
  start_fg a "$fg_a" "redis://127.0.0.1:$redis_port" <<'EOF' || exit 1
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 1s}
EOF
  get_bg "$fg_a" /api/hold "$tmp/long"
  wait_for "the request at the upstream" held_ge 1
  sleep 2.5  # past two leases: the slot is held only if the instance renewed it
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 429 ]] || fail "a renewed slot expired"
  touch "$tmp/upstream.log.release"
  wait_bg
  [[ $(cat "$tmp/long") == 200 ]] || fail "the long request answered $(cat "$tmp/long")"
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 200 ]] || fail "the slot was not given back"
  ;;

timeout)
  start_upstream
  start_fg a "$fg_a" "memory://" <<'EOF' || exit 1
upstream_timeout: 300ms
upstream_hold_timeout: 3s
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1}
EOF
  # The client is answered 504 once the upstream has not answered within upstream_timeout, but
  # the request is still at the upstream (servers do not stop a handler), so its slot stays
  # taken: requests that time out one after the other never have two at the upstream (before:
  # one each, all at once for a limit of 1).
  c=$(code -m 5 "http://127.0.0.1:$fg_a/api/hold?n=0")
  [[ $c == 504 ]] || fail "a request the upstream held answered $c (want 504)"
  for i in 1 2 3 4; do
    c=$(code -m 5 "http://127.0.0.1:$fg_a/api/hold?n=$i")
    [[ $c == 429 ]] || fail "a request was admitted ($c) while the upstream still held one answered 504"
  done
  [[ $(held) -eq 1 ]] || fail "$(held) requests at the upstream at once (limit 1)"
  [[ $(held_metric) -eq 1 ]] || fail "floodgate_upstream_held_exchanges is $(held_metric) (want 1)"
  # Once the upstream has answered, the slot is free.
  touch "$tmp/upstream.log.release"
  wait_for "the slot back once the upstream answered" eval '[[ $(code "http://127.0.0.1:$fg_a/api/x") == 200 ]]'
  # An upstream that never answers holds a slot for upstream_hold_timeout (3 s) at most.
  rm -f "$tmp/upstream.log.release"
  sent=$(date +%s%N)
  c=$(code -m 5 "http://127.0.0.1:$fg_a/api/hold?n=5")
  [[ $c == 504 ]] || fail "a request the upstream held answered $c (want 504)"
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 429 ]] || fail "the slot came back before the hold bound"
  wait_for "the slot back after upstream_hold_timeout" eval '[[ $(code "http://127.0.0.1:$fg_a/api/x") == 200 ]]'
  waited=$((($(date +%s%N) - sent) / 1000000))
  ((waited >= 2900)) || fail "the slot came back after $waited ms, before the 3 s hold bound"
  [[ $(held_metric) -eq 0 ]] || fail "floodgate_upstream_held_exchanges is $(held_metric) after the holds (want 0)"
  ;;

hold_cap)
  start_upstream
  start_fg a "$fg_a" "memory://" <<'EOF' || exit 1
upstream_timeout: 300ms
server: {max_connections: 2}
identity: [{header: X-API-Key}]
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1}
EOF
  # Each held exchange keeps an upstream connection open: at most max_connections (2) are held.
  # A third client's request answered 504 gives its slot back with the answer, as before holds.
  for k in a b c; do
    c=$(code -m 5 -H "X-API-Key: $k" "http://127.0.0.1:$fg_a/api/hold?k=$k")
    [[ $c == 504 ]] || fail "a request the upstream held answered $c (want 504)"
  done
  for k in a b; do
    c=$(code -H "X-API-Key: $k" "http://127.0.0.1:$fg_a/api/x")
    [[ $c == 429 ]] || fail "client $k's held slot was given back ($c)"
  done
  c=$(code -H "X-API-Key: c" "http://127.0.0.1:$fg_a/api/x")
  [[ $c == 200 ]] || fail "a third exchange was held past max_connections (2): $c"
  ;;

drain_held)
  start_upstream
  start_redis || exit 1
  # A lease far longer than the test: a slot left in Redis by an instance that did not give it
  # back would deny for 60 s, and one given back early lets the other instance admit.
  settings='upstream_timeout: 300ms
server: {drain_delay: 100ms, drain_timeout: 10s}
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 60s}'
  start_fg a "$fg_a" "redis://127.0.0.1:$redis_port" <<<"$settings" || exit 1
  start_fg b "$fg_b" "redis://127.0.0.1:$redis_port" <<<"$settings" || exit 1
  c=$(code -m 5 "http://127.0.0.1:$fg_a/api/hold?n=0")
  [[ $c == 504 ]] || fail "a request the upstream held answered $c (want 504)"
  [[ $(held_metric) -eq 1 ]] || fail "floodgate_upstream_held_exchanges is $(held_metric) (want 1)"
  kill -TERM "$pid_a"
  # Ten times the drain delay: the listener is closed and no connection is open, but the
  # exchange is still held.
  sleep 1
  gone "$pid_a" && fail "the instance exited while it held an exchange past its 504"
  [[ $(code "http://127.0.0.1:$fg_b/api/x") == 429 ]] ||
    fail "the stopping instance gave its slot back while the upstream still held the request"
  touch "$tmp/upstream.log.release"
  wait_for "the instance to exit once the upstream answered" gone "$pid_a"
  wait "$pid_a"
  status=$?
  ((status == 0)) || fail "the drained instance exited $status (want 0)"
  grep -q 'drained: no connection left, no exchange held' "$tmp/a.err" ||
    fail "no drained line in the instance's log: $(tail -3 "$tmp/a.err")"
  # The slot was given back in Redis before the exit: the other instance admits at once.
  [[ $(code "http://127.0.0.1:$fg_b/api/x") == 200 ]] ||
    fail "the drained instance left its slot taken in Redis (the lease is 60 s)"

  # An upstream that does not answer within drain_timeout (1 s here): the instance exits anyway.
  rm -f "$tmp/upstream.log.release"
  fg_c=$((base + 3))
  start_fg c "$fg_c" "redis://127.0.0.1:$redis_port" <<<"${settings/drain_timeout: 10s/drain_timeout: 1s}" ||
    exit 1
  c=$(code -m 5 "http://127.0.0.1:$fg_c/api/hold?n=1")
  [[ $c == 504 ]] || fail "a request the upstream held answered $c (want 504)"
  kill -TERM "$pid_c"
  stopping=$(date +%s%N)
  wait_for "the instance to exit past drain_timeout" gone "$pid_c"
  wait "$pid_c"
  status=$?
  took=$((($(date +%s%N) - stopping) / 1000000))
  ((status == 0)) || fail "the instance cut short exited $status (want 0)"
  ((took >= 1000)) || fail "the instance exited $took ms after SIGTERM, before drain_timeout (1 s)"
  grep -q '1 exchange(s) held past their 504' "$tmp/c.err" ||
    fail "the drain timeout did not say what it left held: $(tail -3 "$tmp/c.err")"
  ;;

memory)
  start_upstream
  start_fg a "$fg_a" "memory://" <<'EOF' || exit 1
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 2}
  - {name: rate, match: {path_prefix: /api/}, algorithm: fixed_window, limit: 4, period: 1h}
EOF
  for i in 1 2 3; do get_bg "$fg_a" /api/hold "$tmp/m$i"; done
  wait_for "1 answer" answered 1 "$tmp/m1" "$tmp/m2" "$tmp/m3"
  wait_for "2 requests at the upstream" held_ge 2
  [[ $(count_codes 429 "$tmp/m1" "$tmp/m2" "$tmp/m3") -eq 1 ]] || fail "want one 429"
  touch "$tmp/upstream.log.release"
  wait_bg
  # 2 tokens of 4 spent (the refused request took none): 2 more pass, then the rate denies, and
  # a denied request takes no slot.
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 200 ]] || fail "a slot or token was lost"
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 200 ]] || fail "a slot or token was lost"
  [[ $(code "http://127.0.0.1:$fg_a/api/x") == 429 ]] || fail "the rate policy did not deny"
  [[ $(in_flight_metric "$fg_a") -eq 0 ]] || fail "a denied request holds a slot"
  ;;

*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac

((failures == 0)) || exit 1
echo "ok [$case_name]"
