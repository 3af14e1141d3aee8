# lib.sh — what the concurrency scripts (concurrency_test.sh, redteam_test.sh) share: failure
# counting, clean-up of every process they started (by PID), and starting the lenient upstream,
# a redis-server and floodgate instances on loopback. Sourced after the script has set case_name,
# fg (the floodgate binary), lenient (the lenient upstream binary), tmp (its directory),
# failures=0, pids=() and redis_port.

fail() {
  echo "FAIL [$case_name]: $*" >&2
  failures=$((failures + 1))
}
cleanup() {
  touch "$tmp/upstream.log.release" 2>/dev/null  # let held upstream threads go
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The lenient upstream, logging each request line to $tmp/upstream.log; its port in up_port.
start_upstream() {
  : >"$tmp/upstream.log"
  "$lenient" "$tmp/upstream.port" "$tmp/upstream.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    [[ -s $tmp/upstream.port ]] && break
    sleep 0.05
  done
  up_port=$(cat "$tmp/upstream.port")
}

start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >"$tmp/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  fail "redis-server did not start"
  return 1
}

# start_fg_named NAME PORT STORE: an instance in front of the upstream, with extra top-level
# settings and policies on stdin ($tmp/NAME.yaml, .out, .err); its PID in pid_NAME.
start_fg_named() {
  local name=$1 port=$2 store=$3
  {
    echo "listen: 127.0.0.1:$port"
    echo "upstream: http://127.0.0.1:$up_port"
    echo "store: $store"
    echo "threads: 2"
    cat
  } >"$tmp/$name.yaml"
  "$fg" serve --config "$tmp/$name.yaml" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  printf -v "pid_$name" '%s' "$pid"
  for _ in $(seq 1 100); do
    [[ $(curl -s "http://127.0.0.1:$port/healthz" 2>/dev/null) == ok ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  fail "floodgate $name did not start: $(tail -3 "$tmp/$name.err")"
  return 1
}
