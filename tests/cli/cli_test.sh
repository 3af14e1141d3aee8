#!/usr/bin/env bash
# The `floodgate` binary as users run it: exit codes, stdout and stderr (design §2.1).
#
#   tests/cli/cli_test.sh CASE path/to/floodgate SOURCE_DIR
#
# One ctest per CASE (see src/app/CMakeLists.txt). Each `floodgate check` is a fresh process:
# on the memory store each run decides alone; on Redis (check_redis_shared) runs share state.
set -u

case_name=$1
fg=$2
src=$3
tmp=$(mktemp -d)
failures=0

fail() {
  echo "FAIL [$case_name]: $*" >&2
  failures=$((failures + 1))
}

# run ARGS...: runs floodgate; sets $code, $out, $err.
run() {
  "$fg" "$@" >"$tmp/out" 2>"$tmp/err"
  code=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}

expect_code() {
  [[ $code == "$1" ]] || fail "exit $code, want $1 (args: ${*:2}); stdout: $out; stderr: $err"
}
expect_out() {
  [[ $out == "$1" ]] || fail "stdout: '$out', want '$1'"
}
expect_out_contains() {
  [[ $out == *"$1"* ]] || fail "stdout does not contain '$1': $out"
}
expect_err_contains() {
  [[ $err == *"$1"* ]] || fail "stderr does not contain '$1': $err"
}
expect_err_empty() {
  [[ -z $err ]] || fail "stderr not empty: $err"
}

# A loopback port nothing listens on (a closed port answers "connection refused").
dead_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  echo 1
}

# start_redis: a redis-server of our own on a free port ($redis_port), stopped by PID on exit.
redis_pid=""
start_redis() {
  source "$src/tests/require_tools.sh"
  require_tools redis-server:redis-server
  for _ in $(seq 1 10); do
    redis_port=$(dead_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$tmp" >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 100); do  # up to 5 s
      [[ $(redis-cli -p "$redis_port" PING 2>/dev/null) == PONG ]] && return 0
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
  done
  echo "could not start redis-server: $(cat "$tmp/redis.log")" >&2
  return 1
}
stop_redis() {
  [[ -n $redis_pid ]] || return 0
  kill "$redis_pid" 2>/dev/null
  wait "$redis_pid" 2>/dev/null
}
trap 'stop_redis; rm -rf "$tmp"' EXIT

write_config() {  # write_config NAME LIMIT PERIOD [BURST]
  {
    echo "policies:"
    echo "  - name: $1"
    echo "    match: {path_prefix: /api/}"
    echo "    limit: $2"
    echo "    period: $3"
    [[ $# -ge 4 ]] && echo "    burst: $4"
  } >"$tmp/cfg.yaml"
}

case $case_name in
  version)
    run --version
    expect_code 0
    expect_out "floodgate 0.1.0"
    ;;

  help)
    for args in "--help" "validate --help" "check --help" "-h"; do
      # shellcheck disable=SC2086  # split on purpose
      run $args
      expect_code 0 $args
      expect_out_contains "Usage:"
    done
    run check --help
    for flag in --config --policy --key --cost --store; do expect_out_contains "$flag"; done
    run --help
    expect_out_contains "validate"
    expect_out_contains "check"
    ;;

  validate_ok)
    run validate "$src/examples/floodgate.yaml"
    expect_code 0
    expect_out "$src/examples/floodgate.yaml: ok (5 policies)"
    expect_err_empty
    run validate "$src/tests/configs/design_example.yaml"
    expect_code 0
    expect_out "$src/tests/configs/design_example.yaml: ok (2 policies)"
    run validate "$src/tests/configs/minimal.yaml"
    expect_code 0
    expect_out "$src/tests/configs/minimal.yaml: ok (1 policy)"
    ;;

  validate_errors)
    f=$src/tests/configs/invalid_many.yaml
    run validate "$f"
    expect_code 1
    expect_out ""
    [[ $(wc -l <"$tmp/err") == 9 ]] || fail "want 9 problems, got: $err"
    expect_err_contains "$f:2: threads: must be a positive integer"
    expect_err_contains "$f:10: policies[1].period: \"sixty\" is not a duration"
    expect_err_contains "$f:12: policies[2].limit: must be a positive integer"
    expect_err_contains "$f:14: policies[3].name: duplicate policy name \"per-minute\""
    run validate "$src/tests/configs/invalid_syntax.yaml"
    expect_code 1
    expect_err_contains "invalid YAML"
    run validate "$src/tests/configs/invalid_unknown_fields.yaml"
    expect_code 1
    expect_err_contains ":8: policies[0].match.path_prefx: unknown field"
    write_config p 0 1s
    run validate "$tmp/cfg.yaml"
    expect_code 1
    expect_err_contains "$tmp/cfg.yaml:4: policies[0].limit: must be a positive integer"
    write_config p 10 60
    run validate "$tmp/cfg.yaml"
    expect_code 1
    expect_err_contains "$tmp/cfg.yaml:5: policies[0].period: \"60\" is not a duration (use e.g. 60s)"
    # The form of the rate-limit fields (rate_limit_headers), at the top and in a policy.
    printf '%s\n' 'rate_limit_headers: {standard: draft-9}' 'policies:' \
      '  - {name: p, limit: 1, period: 1s, rate_limit_headers: {legacy: maybe}}' >"$tmp/forms.yaml"
    run validate "$tmp/forms.yaml"
    expect_code 1
    expect_err_contains "$tmp/forms.yaml:1: rate_limit_headers.standard: \"draft-9\" is not one of draft-8, draft-7, draft-6, none"
    expect_err_contains "$tmp/forms.yaml:3: policies[0].rate_limit_headers.legacy: must be true or false, not \"maybe\""
    ;;

  validate_missing_file)
    run validate "$tmp/nope.yaml"
    expect_code 1
    expect_err_contains "$tmp/nope.yaml: cannot open: No such file or directory"
    ;;

  check_allowed)
    write_config per-minute 100 60s
    run check --config "$tmp/cfg.yaml" --policy per-minute --key user-42
    expect_code 0
    expect_out '{"allowed":true,"policy":"per-minute","limit":100,"remaining":99,"reset_after_ms":600,"retry_after_ms":0}'
    expect_err_empty
    run check --config "$tmp/cfg.yaml" --policy per-minute --key user-42 --cost 0
    expect_code 0
    expect_out '{"allowed":true,"policy":"per-minute","limit":100,"remaining":100,"reset_after_ms":0,"retry_after_ms":0}'
    ;;

  check_cost_over_burst)
    write_config per-minute 100 60s
    run check --config "$tmp/cfg.yaml" --policy per-minute --key k --cost 101
    expect_code 1
    expect_out_contains '"allowed":false'
    expect_out_contains '"limit":100'
    expect_out_contains '"retry_after_ms":0'
    ;;

  check_unknown_policy)
    write_config per-minute 100 60s
    run check --config "$tmp/cfg.yaml" --policy per-hour --key k
    expect_code 2
    expect_out ""
    expect_err_contains 'unknown policy "per-hour"'
    expect_err_contains "per-minute"
    ;;

  check_limit_two)
    write_config two 2 1s
    run check --config "$tmp/cfg.yaml" --policy two --key k
    expect_code 0
    expect_out '{"allowed":true,"policy":"two","limit":2,"remaining":1,"reset_after_ms":500,"retry_after_ms":0}'
    run check --config "$tmp/cfg.yaml" --policy two --key k --cost 2
    expect_code 0
    expect_out '{"allowed":true,"policy":"two","limit":2,"remaining":0,"reset_after_ms":1000,"retry_after_ms":0}'
    run check --config "$tmp/cfg.yaml" --policy two --key k --cost 3
    expect_code 1
    expect_out_contains '"allowed":false'
    ;;

  check_bad_config)
    write_config p 0 1s
    run check --config "$tmp/cfg.yaml" --policy p --key k
    expect_code 2
    expect_out ""
    expect_err_contains "policies[0].limit: must be a positive integer"
    run check --config "$tmp/missing.yaml" --policy p --key k
    expect_code 2
    expect_err_contains "cannot open"
    write_config p 10 1s
    run check --config "$tmp/cfg.yaml" --policy p --key k --cost -1
    expect_code 2
    expect_err_contains "--cost"
    ;;

  check_redis_store)
    # A Redis that is not there: answered as the server answers it, by on_store_error (here the
    # default, allow: allowed and marked degraded, exit 0), with a clear error naming the store
    # (never its password) on stderr, well within a second.
    write_config p 10 1s
    dead=$(dead_port)
    start=$(date +%s%N)
    run check --config "$tmp/cfg.yaml" --policy p --key k --store "redis://u:secret@127.0.0.1:$dead/1"
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
    expect_code 0
    expect_out '{"allowed":true,"policy":"p","degraded":"store-unavailable"}'
    expect_err_contains "store redis://u:***@127.0.0.1:$dead/1: unavailable"
    expect_err_contains "answered with on_store_error: allow"
    [[ $err != *secret* ]] || fail "the password leaked: $err"
    ((elapsed_ms < 5000)) || fail "a dead store took ${elapsed_ms} ms to report"
    # on_store_error: deny: no decision, exit 2; local: this process's own limiter decides.
    printf 'on_store_error: deny\n' >>"$tmp/cfg.yaml"
    run check --config "$tmp/cfg.yaml" --policy p --key k --store "redis://127.0.0.1:$dead/1"
    expect_code 2
    expect_out ""
    expect_err_contains "answered with on_store_error: deny"
    sed -i 's/^on_store_error: deny$/on_store_error: local/' "$tmp/cfg.yaml"
    run check --config "$tmp/cfg.yaml" --policy p --key k --store "redis://127.0.0.1:$dead/1"
    expect_code 0
    expect_out '{"allowed":true,"policy":"p","limit":10,"remaining":9,"reset_after_ms":100,"retry_after_ms":0,"degraded":"local-fallback"}'
    sed -i '/^on_store_error: local$/d' "$tmp/cfg.yaml"
    run check --config "$tmp/cfg.yaml" --policy p --key k --store bogus
    expect_code 2
    expect_err_contains "--store: "
    run check --config "$tmp/cfg.yaml" --policy p --key k --store "rediss://127.0.0.1:$dead?ca=$tmp/missing.pem"
    expect_code 2
    expect_err_contains "missing.pem"
    printf 'store: redis-cluster://127.0.0.1:%s\n' "$dead" >"$tmp/cluster.yaml"
    cat "$tmp/cfg.yaml" >>"$tmp/cluster.yaml"
    run check --config "$tmp/cluster.yaml" --policy p --key k
    expect_code 0  # on_store_error: allow, as above
    expect_out '{"allowed":true,"policy":"p","degraded":"store-unavailable"}'
    expect_err_contains "store redis-cluster://127.0.0.1:$dead: "
    run check --config "$tmp/cluster.yaml" --policy p --key k --store memory://
    expect_code 0
    ;;

  check_redis_shared)
    # Consecutive runs share state through Redis, as instances do: five runs against a limit
    # of 5 allow five, the sixth is denied.
    start_redis || exit 1
    write_config p 5 1h
    # A cold process connects and loads the function within the default 20 ms deadline; a
    # sanitizer build (FG_TEST_TIME_SCALE) is given that many times longer.
    scale=${FG_TEST_TIME_SCALE:-1}
    ((scale > 1)) && printf 'store_timeout: %sms\n' $((20 * scale)) >>"$tmp/cfg.yaml"
    for i in 1 2 3 4 5; do
      run check --config "$tmp/cfg.yaml" --policy p --key "user-42" --store "redis://127.0.0.1:$redis_port"
      expect_code 0 "run $i"
      expect_out_contains "\"remaining\":$((5 - i)),"
    done
    run check --config "$tmp/cfg.yaml" --policy p --key "user-42" --store "redis://127.0.0.1:$redis_port"
    expect_code 1
    expect_out_contains '"allowed":false'
    # Another identity is untouched; the key has a ttl.
    run check --config "$tmp/cfg.yaml" --policy p --key "user-43" --store "redis://127.0.0.1:$redis_port"
    expect_code 0
    # The key is fg:{<keyed tag>}:check:user-42:p (src/store/redis/keys.h), in the namespace of
    # /v1/check's keys, which no HTTP client's identity shares.
    key=$(redis-cli -p "$redis_port" --scan --pattern 'fg:{*}:check:user-42:p')
    [[ $key =~ ^fg:\{[0-9a-f]{8}\}:check:user-42:p$ ]] || fail "no key for user-42: '$key'"
    ttl=$(redis-cli -p "$redis_port" PTTL "$key")
    ((ttl > 0)) || fail "$key has no ttl ($ttl)"
    # Several processes at once on one key admit exactly the limit: 40 concurrent runs, 25
    # allowed. Forty cold processes (connect, load the function) on two cores need more than
    # the default 20 ms deadline; a decision past its deadline is an error that may still have
    # consumed, which would make the count inexact (never over the limit).
    write_config q 25 1h
    printf 'store_timeout: 5s\n' >>"$tmp/cfg.yaml"
    pids=()
    for i in $(seq 1 40); do
      "$fg" check --config "$tmp/cfg.yaml" --policy q --key "shared" \
        --store "redis://127.0.0.1:$redis_port" >"$tmp/par.$i" 2>&1 &
      pids+=($!)
    done
    allowed=0 denied=0 other=0
    for pid in "${pids[@]}"; do
      wait "$pid"
      case $? in 0) allowed=$((allowed + 1)) ;; 1) denied=$((denied + 1)) ;; *) other=$((other + 1)) ;; esac
    done
    [[ $allowed == 25 && $denied == 15 && $other == 0 ]] ||
      fail "40 concurrent processes: $allowed allowed, $denied denied, $other errors; want 25/15/0 ($(cat "$tmp"/par.* | sort | uniq -c | head -5))"
    ;;

  check_hostile_key)
    write_config p 10 1s
    for key in '{tag}' $'new\nline' $'\x01\x7f\xff\xfe' '-' '--key' "$(head -c 10000 /dev/zero | tr '\0' x)" '"; DROP'; do
      run check --config "$tmp/cfg.yaml" --policy p --key="$key"
      expect_code 0 "key ${key:0:20}"
      expect_out '{"allowed":true,"policy":"p","limit":10,"remaining":9,"reset_after_ms":100,"retry_after_ms":0}'
    done
    ;;

  check_default_config)
    run check --policy per-minute --key k
    expect_code 0
    expect_out '{"allowed":true,"policy":"per-minute","limit":100,"remaining":99,"reset_after_ms":600,"retry_after_ms":0}'
    ;;

  usage_errors)
    run
    expect_code 2
    run frobnicate
    expect_code 2
    run check --policy p
    expect_code 2
    expect_err_contains "--key"
    run check --policy p --key k --cost abc
    expect_code 2
    run check --policy p --key k --bogus
    expect_code 2
    run validate
    expect_code 2
    run check --policy per-minute --key ""
    expect_code 2
    expect_err_contains "--key: must not be empty"
    run serve --threads many
    expect_code 2
    run serve --listen nowhere
    expect_code 1
    expect_err_contains "--listen"
    run serve --threads 0
    expect_code 1
    expect_err_contains "--threads: must be from 1"
    ;;

  serve_signals)
    # `floodgate serve` as a process: the README's curl shows the fields, SIGHUP reloads (and
    # keeps the running config when the new file is invalid), SIGTERM drains and exits 0.
    command -v curl >/dev/null || { fail "curl is not installed"; exit 1; }
    serve_config() {  # serve_config LIMIT
      printf 'listen: 127.0.0.1:0\nthreads: 2\npolicies:\n  - {name: api, match: {path_prefix: /api/}, limit: %s, period: 1h}\n' "$1" >"$tmp/serve.yaml"
    }
    serve_config 3
    "$fg" serve --config "$tmp/serve.yaml" >"$tmp/serve.out" 2>"$tmp/serve.err" &
    serve_pid=$!
    trap 'kill -KILL $serve_pid 2>/dev/null; rm -rf "$tmp"' EXIT
    port=""
    for _ in $(seq 1 100); do
      port=$(sed -n 's/.*serving on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve.err")
      [[ -n $port ]] && break
      sleep 0.05
    done
    [[ -n $port ]] || { fail "no 'serving on' line: $(cat "$tmp/serve.err")"; exit 1; }
    headers=$(curl -si "http://127.0.0.1:$port/api/hello")
    [[ $headers == *"X-RateLimit-Limit: 3"* ]] || fail "no X-RateLimit-Limit: 3 in: $headers"
    [[ $headers == *"X-RateLimit-Remaining: 2"* ]] || fail "no X-RateLimit-Remaining: 2 in: $headers"
    [[ $headers == *'RateLimit-Policy: "api";q=3;w=3600'* ]] || fail "no RateLimit-Policy in: $headers"
    # SIGHUP with a valid new file: the new limit, on the same port.
    serve_config 7
    kill -HUP $serve_pid
    ok=""
    for _ in $(seq 1 100); do
      [[ $(curl -si "http://127.0.0.1:$port/api/hello") == *"X-RateLimit-Limit: 7"* ]] && { ok=1; break; }
      sleep 0.05
    done
    [[ -n $ok ]] || fail "SIGHUP did not apply limit 7"
    # SIGHUP with an invalid file: an error naming the field, and the old config still serves.
    printf 'policies:\n  - {name: api, limit: -1, period: 1h}\n' >"$tmp/serve.yaml"
    kill -HUP $serve_pid
    for _ in $(seq 1 100); do
      grep -q "keeping the running config" "$tmp/serve.err" && break
      sleep 0.05
    done
    grep -q "policies\[0\].limit: must be a positive integer" "$tmp/serve.err" ||
      fail "the invalid reload was not reported: $(cat "$tmp/serve.err")"
    [[ $(curl -si "http://127.0.0.1:$port/api/hello") == *"X-RateLimit-Limit: 7"* ]] ||
      fail "the running config was not kept"
    curl -s "http://127.0.0.1:$port/metrics" | grep -q 'floodgate_config_reloads_total{result="error"} 1' ||
      fail "the failed reload was not counted"
    # SIGTERM: drain, exit 0.
    kill -TERM $serve_pid
    wait $serve_pid
    code=$?
    [[ $code == 0 ]] || fail "serve exited $code after SIGTERM"
    grep -q "drained" "$tmp/serve.err" || fail "no drain in the log: $(cat "$tmp/serve.err")"
    ;;

  *)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac

if ((failures > 0)); then
  echo "$case_name: $failures failure(s)" >&2
  exit 1
fi
echo "$case_name: ok"
