#!/usr/bin/env bash
# Red-team cases for algorithm: concurrency (docs/algorithms.md, "Concurrency"): ways a client
# gets more than `limit` requests in flight, or an identity is locked out with nothing in flight.
# Each case failed on main at a545114 (the bugs it demonstrated) and passes since their fixes;
# drain_timeout still fails (docs/algorithms.md: a drain cut short leaves slots until their lease)
# and is not run by make test.
#
#   tests/concurrency/redteam_test.sh CASE path/to/floodgate path/to/lenient_upstream SOURCE_DIR
#
#   half_close     limit 1; 4 clients each send a held request and shut down their sending side
#                  (SHUT_WR), still reading: all 4 reach the upstream at once and all 4 get 200
#   slow_body      limit 1, lease 3s (Redis): a POST whose 5-byte body comes 2.7 s after its
#                  header; its slot expires before the first renewal (lease/3 after the body):
#                  a second request reaches the upstream while the first is still held
#   lease_shrink   limit 2 (Redis): request A held under lease 30s; a reload to lease 2s; one
#                  quick request B re-arms the key's PEXPIRE to 2 s; the key (with A's slot)
#                  vanishes: C and D are both admitted next to A (3 in flight, limit 2)
#   store_timeout  limit 1, store_timeout 20ms, lease 20s (Redis): one request while Redis is
#                  paused 400 ms is answered 503 (on_store_error: deny), but its fg_acquire_v4
#                  runs after the pause and takes a slot nobody releases: with nothing in
#                  flight the identity gets 429 until the lease ends
#   drain_timeout  limit 1, lease 30s (Redis), 10 runs: SIGTERM while a request is held past
#                  server.drain_timeout (1 s): the instance stops without releasing the slot,
#                  which stays in Redis for the rest of the lease (docs: only an instance that
#                  died leaves slots behind)
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
require_tools curl:curl redis-server:redis-server redis-cli:redis-tools python3:python3

base=$(bash "$src/scripts/free-port-block.sh" 4) || exit 1
fg_port=$base
redis_port=$((base + 2))

# start_fg STORE: one instance, extra top-level settings and policies on stdin; its PID in fg_pid.
start_fg() {
  start_fg_named fg "$fg_port" "$1" || return 1
  fg_pid=$pid_fg
}

reload() {  # reload SED_EXPR: edit the config, SIGHUP, wait for the log line
  local before
  before=$(grep -c 'SIGHUP: reloaded' "$tmp/fg.err")
  sed -i "$1" "$tmp/fg.yaml"
  kill -HUP "$fg_pid"
  for _ in $(seq 1 100); do
    (($(grep -c 'SIGHUP: reloaded' "$tmp/fg.err") > before)) && return 0
    sleep 0.05
  done
  fail "reload not applied: $(tail -2 "$tmp/fg.err")"
}

held() { grep -c '/api/hold' "$tmp/upstream.log"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
wait_held() {  # wait_held N: at least N requests at the upstream, at most 10 s
  for _ in $(seq 1 200); do
    (($(held) >= $1)) && return 0
    sleep 0.05
  done
  return 1
}

case $case_name in
half_close)
  start_upstream
  start_fg memory:// <<'EOF' || exit 1
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 30s}
EOF
  python3 - "$fg_port" "$tmp" >"$tmp/clients.out" <<'EOF' &
import os, socket, sys, time
port, tmp = int(sys.argv[1]), sys.argv[2]
socks = []
for i in range(4):
    s = socket.create_connection(('127.0.0.1', port))
    s.sendall(b"GET /api/hold/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
    s.shutdown(socket.SHUT_WR)  # done sending; still reading the answer
    socks.append(s)
    time.sleep(0.2)
for _ in range(100):  # let the upstream answer once the test has counted
    if os.path.exists(tmp + "/upstream.log.release"): break
    time.sleep(0.05)
for s in socks:
    s.settimeout(10)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
    except OSError:
        pass
    # The final answer's status line: interim 1xx answers (a 100 Continue) come before it.
    lines = [l for l in data.split(b"\r\n") if l.startswith(b"HTTP/1.")]
    final = [l for l in lines if not l[9:10] == b"1"]
    print((final[0] if final else b"none").decode(errors="replace"))
EOF
  clients=$!
  pids+=("$clients")
  wait_held 1
  sleep 1.2
  n=$(held)
  ((n <= 1)) || fail "$n requests in flight at the upstream (limit 1)"
  touch "$tmp/upstream.log.release"
  wait "$clients" 2>/dev/null
  ok=$(grep -c ' 200 ' "$tmp/clients.out")
  limited=$(grep -c ' 429 ' "$tmp/clients.out")
  # The one in flight is answered (a half-closed client is still there to read), the others
  # were refused while it held the slot.
  [[ $ok == 1 && $limited == 3 ]] ||
    fail "half-closed clients: $ok got 200 and $limited got 429 (want 1 and 3): $(tr '\n' ' ' <"$tmp/clients.out")"
  ;;

slow_body)
  start_upstream
  start_redis || exit 1
  start_fg "redis://127.0.0.1:$redis_port" <<'EOF' || exit 1
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 3s}
EOF
  python3 - "$fg_port" <<'EOF' >/dev/null 2>&1 &
import socket, sys, time
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b"POST /api/hold/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
time.sleep(2.7)  # within body_timeout (30s), past 2/3 of the lease
s.sendall(b"hello")
s.settimeout(30)
s.recv(65536)
EOF
  pids+=($!)
  wait_held 1 || fail "the slow request never reached the upstream"
  sleep 1  # past the lease (3 s from the decision); the first renewal is at 2.7 + 1 s
  for i in 1 2 3; do
    curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$fg_port/api/hold/second$i" &
    pids+=($!)
    sleep 0.1
  done
  sleep 1
  n=$(held)
  ((n <= 1)) || fail "$n requests in flight at the upstream (limit 1): the slow body's slot expired"
  ;;

lease_shrink)
  start_upstream
  start_redis || exit 1
  start_fg "redis://127.0.0.1:$redis_port" <<'EOF' || exit 1
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 2, lease: 30s}
EOF
  curl -s -o /dev/null "http://127.0.0.1:$fg_port/api/hold/A" &
  pids+=($!)
  wait_held 1 || fail "A never reached the upstream"
  reload 's/lease: 30s/lease: 2s/'
  [[ $(code "http://127.0.0.1:$fg_port/api/x") == 200 ]] || fail "B (quick) was not admitted"
  sleep 3
  for r in C D; do
    curl -s -o /dev/null "http://127.0.0.1:$fg_port/api/hold/$r" &
    pids+=($!)
    sleep 0.2
  done
  sleep 0.8
  n=$(held)
  ((n <= 2)) || fail "$n requests in flight at the upstream (limit 2): A's slot vanished with the key"
  ;;

store_timeout)
  start_upstream
  start_redis || exit 1
  start_fg "redis://127.0.0.1:$redis_port" <<'EOF' || exit 1
store_timeout: 20ms
on_store_error: deny
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 20s}
EOF
  redis-cli -p "$redis_port" client pause 400 all >/dev/null
  c=$(code "http://127.0.0.1:$fg_port/api/x")
  [[ $c == 503 ]] || echo "note: the request during the pause answered $c"
  sleep 0.8  # the pause is over; nothing is in flight
  c=$(code "http://127.0.0.1:$fg_port/api/x")
  [[ $c == 200 ]] ||
    fail "nothing in flight, yet $c: a timed-out acquire left a slot to its lease (20 s)"
  ;;

drain_timeout)
  start_upstream
  start_redis || exit 1
  leaked=0
  for run in $(seq 1 10); do  # a race: the slot is left behind in most runs, not all
    start_fg "redis://127.0.0.1:$redis_port" <<'EOF' || exit 1
server: {drain_delay: 0s, drain_timeout: 1s}
policies:
  - {name: slots, match: {path_prefix: /api/}, algorithm: concurrency, limit: 1, lease: 30s}
EOF
    : >"$tmp/upstream.log"
    curl -s -o /dev/null "http://127.0.0.1:$fg_port/api/hold/x" &
    pids+=($!)
    wait_held 1 || fail "the request never reached the upstream"
    key=$(redis-cli -p "$redis_port" --scan --pattern '*:slots' | head -1)
    [[ $(redis-cli -p "$redis_port" zcard "$key") == 1 ]] || fail "no slot taken at $key"
    kill -TERM "$fg_pid"
    for _ in $(seq 1 100); do
      kill -0 "$fg_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$fg_pid" 2>/dev/null && fail "floodgate did not stop within 10 s"
    n=$(redis-cli -p "$redis_port" zcard "$key")
    [[ $n == 0 ]] || leaked=$((leaked + 1))
    redis-cli -p "$redis_port" del "$key" >/dev/null
  done
  ((leaked == 0)) ||
    fail "in $leaked of 10 graceful stops (SIGTERM, drain timeout) the held slot stayed in Redis for its lease"
  ;;

*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac

((failures == 0)) || exit 1
echo "ok [$case_name]"
