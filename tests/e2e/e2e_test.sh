#!/usr/bin/env bash
# End-to-end: the stack `make run` starts (deploy/local/stack.sh: Redis Cluster, floodgate
# instances, HAProxy), on free ports, driven through HAProxy with curl.
#
#   tests/e2e/e2e_test.sh CASE path/to/floodgate SOURCE_DIR
#
# One ctest per CASE (tests/CMakeLists.txt). Each case starts its own stack in its own run
# directory and stops it (by PID) on exit. Figures a case measures are printed as "figure: ...".
set -Eeuo pipefail

case_name=$1
export FG_BIN=$2
src=$3
source "$src/tests/require_tools.sh"
require_tools redis-server:redis-server redis-cli:redis-tools haproxy:haproxy curl:curl
run=$(mktemp -d)
export FG_RUN_DIR=$run/stack
failures=0
stack=$src/deploy/local/stack.sh

fail() {
  echo "FAIL [$case_name]: $*" >&2
  failures=$((failures + 1))
}

# The ports of this case's stack: a block below the ephemeral range (scripts/free-port-block.sh).
pick_ports() {
  local ports
  ports=$("$src/scripts/free-port-block.sh" 20)
  export FG_HTTP_PORT=$ports FG_HTTPS_PORT=$((ports + 1)) FG_INSTANCE_PORT=$((ports + 2))
  export FG_REDIS_PORT=$((ports + 4)) FG_INSTANCES=2
  url=http://127.0.0.1:$FG_HTTP_PORT
}
pick_ports

# The stack, up. Free ports can be taken by another process between the check and the bind:
# then once more on other ports.
stack_up() {
  "$stack" up && return
  echo "stack did not start; once more on other ports" >&2
  "$stack" down >/dev/null 2>&1 || true
  pick_ports
  "$stack" up
}

# Under a sanitizer build (make test-asan, make test-tsan) an instance that hits a report writes
# it to its log and exits; nothing else would notice, as the balancer routes around it. Every
# instance log is checked once the stack is down (stopped instances have run their leak check).
sanitizer_reports() {
  grep -l -E 'SUMMARY: [A-Za-z]+Sanitizer|runtime error:' "$FG_RUN_DIR"/instance-*.log 2>/dev/null || true
}

watcher=""  # the PID of watch_ready, while it runs
cleanup() {
  local status=$? reports
  [[ -z $watcher ]] || kill "$watcher" 2>/dev/null || true
  "$stack" down >/dev/null 2>&1 || true
  reports=$(sanitizer_reports)
  if [[ -n $reports ]]; then
    for log in $reports; do
      echo "FAIL [$case_name]: sanitizer report in $log:" >&2
      cat "$log" >&2
    done
    status=1
  fi
  rm -rf "$run"
  exit "$status"
}
trap cleanup EXIT

# Sanitizer builds run several times slower; the test presets set FG_TEST_TIME_SCALE (1 here).
time_scale=${FG_TEST_TIME_SCALE:-1}

# A config with one policy: `limit` per hour on /api/, on_store_error as given. A sanitizer build
# gets store_timeout (50 ms) times FG_TEST_TIME_SCALE: past it a decision is made degraded.
# The instances' key_secret, so that this script can compute a client's Redis key (redis_key).
key_secret=e2e-key-secret-5f1c93a7
write_config() {  # write_config LIMIT ON_STORE_ERROR
  sed -e "s/^on_store_error: .*/on_store_error: $2/" \
    -e "s/^store_timeout: 50ms/store_timeout: $((50 * time_scale))ms/" \
    "$src/deploy/local/floodgate.yaml" |
    sed '/^policies:/,$d' >"$run/floodgate.yaml"
  cat >>"$run/floodgate.yaml" <<EOF
key_secret: $key_secret
policies:
  - name: hourly
    match: {path_prefix: /api/}
    limit: $1
    period: 1h
EOF
  export FG_CONFIG=$run/floodgate.yaml
}

# client_key API_KEY: "<redis key> <slot>" of the client that sends X-API-Key: API_KEY, policy
# "hourly", computed by the instances' own code (`floodgate debug-key`: the config's identity
# sources, key_prefix and key_secret through src/store/redis/keys.h). check_key_in_master then
# checks it against what the running instances wrote.
client_key() {
  "$FG_BIN" debug-key --config "$FG_CONFIG" --policy hourly --header "X-API-Key: $1"
}

# master_of_slot SLOT: the port of the master whose slot ranges hold SLOT (CLUSTER NODES:
# "id host:port@bus flags master ... slot-ranges"); master_of_slot all: every master's port.
master_of_slot() {
  local redis_url seed
  redis_url=$(cat "$FG_RUN_DIR/redis/url")
  seed=${redis_url#redis-cluster://}
  seed=${seed%%,*}
  redis-cli -h 127.0.0.1 -p "${seed#*:}" CLUSTER NODES | awk -v slot="$1" '
    $3 ~ /master/ && $3 !~ /fail/ {
      if (slot == "all") { split($2, a, "[:@]"); print a[2]; next }
      for (i = 9; i <= NF; i++) {
        n = split($i, r, "-"); lo = r[1]; hi = (n == 2) ? r[2] : r[1]
        if (slot >= lo + 0 && slot <= hi + 0) { split($2, a, "[:@]"); print a[2] }
      }
    }'
}

# fcalls PORT: how many FCALLs (decisions and readiness probes) the node on PORT has run.
fcalls() {
  redis-cli -h 127.0.0.1 -p "$1" INFO commandstats |
    awk -F'[:=,]' '$1 == "cmdstat_fcall" {print $3; f = 1} END {if (!f) print 0}'
}

# check_key_in_master PORT API_KEY: 100 requests of that client through HAProxy run their
# decisions on the master at PORT and not on any other one: the key and slot computed above are
# the ones the running instances use, so the kill that follows hits the load. (The state itself
# cannot be looked for: with a limit this high it expires within milliseconds of each write.)
check_key_in_master() {
  local masters m before=() after=() i delta mine=0 elsewhere=0
  mapfile -t masters < <(master_of_slot all)
  for m in "${masters[@]}"; do before+=("$(fcalls "$m")"); done
  # One at a time: concurrent decisions of one instance share an FCALL (batches), and this counts
  # FCALLs.
  curl -s -o /dev/null -H "X-API-Key: $2" "$url/api/x?n=[1-100]"
  for i in "${!masters[@]}"; do
    delta=$(($(fcalls "${masters[i]}") - before[i]))
    if [[ ${masters[i]} == "$1" ]]; then mine=$delta; elif ((delta > elsewhere)); then elsewhere=$delta; fi
  done
  echo "figure: 100 requests of the load's client: $mine decisions on master :$1, at most $elsewhere calls on any other master"
  ((mine >= 100 && elsewhere < 100)) ||
    { fail "the load's decisions are not on master :$1 (computed from its key)"; exit 1; }
}

# watch_ready OUT: until killed, every 100 ms, one line per instance into OUT:
# "<instance> <code of its /readyz> <its floodgate_store_circuit_open>", asked of each instance
# directly (not through HAProxy).
watch_ready() {
  local i port code open
  : >"$1"
  while :; do
    for ((i = 1; i <= FG_INSTANCES; i++)); do
      port=$((FG_INSTANCE_PORT + i - 1))
      code=$(curl -s -o /dev/null -m $((2 * time_scale)) -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
      open=$(curl -s -m $((2 * time_scale)) "http://127.0.0.1:$port/metrics" |
        awk '$1 == "floodgate_store_circuit_open" {print $2}')
      echo "$i $code ${open:-?}" >>"$1"
    done
    sleep 0.1
  done
}

# expect_ready_throughout FILE (from watch_ready): every /readyz answer was 200, and prints how
# often each instance was seen with its circuit breaker open.
expect_ready_throughout() {
  local samples not_ready open_seen open_and_not_ready
  samples=$(wc -l <"$1")
  not_ready=$(awk '$2 != "200"' "$1" | wc -l)
  open_seen=$(awk '$3 == "1"' "$1" | wc -l)
  open_and_not_ready=$(awk '$3 == "1" && $2 != "200"' "$1" | wc -l)
  echo "figure: /readyz asked $samples times on the instances: $not_ready not 200 ($open_and_not_ready of them with the breaker open); breaker seen open $open_seen times"
  ((samples > 0)) || fail "/readyz was never asked"
  ((not_ready == 0)) || fail "/readyz was not 200 $not_ready times: $(awk '$2 != "200" {print "instance " $1 ": " $2}' "$1" | sort | uniq -c | tr '\n' ' ')"
}

# load N KEY OUT: N sequential requests (each a new connection, so HAProxy spreads them),
# one line per request "status seconds degraded" into OUT.
load() {
  local n=$1 key=$2 out=$3 i
  : >"$out"
  for ((i = 0; i < n; i++)); do
    curl -s -o /dev/null -m 5 -H "X-API-Key: $key" -D "$run/h.$$" \
      -w '%{http_code} %{time_total}' "$url/api/x" >>"$out" || true
    if grep -qi '^x-ratelimit-degraded' "$run/h.$$" 2>/dev/null; then echo " degraded" >>"$out"; else echo " ok" >>"$out"; fi
  done
}

count() { grep -c "^$1 " "$2" || true; }

# Requests that did not get a 200 or a 429 (000: no response; 5xx: failed).
failed() { grep -vcE '^(200|429) ' "$1" || true; }

# expect_all_answered FILE N WHAT: FILE (from load) has N results, every one a 200 or a 429;
# prints the figure.
expect_all_answered() {
  local n bad
  n=$(wc -l <"$1")
  bad=$(failed "$1")
  echo "figure: $n $3: $bad failed"
  [[ $n == "$2" ]] || fail "$n results, want $2"
  [[ $bad == 0 ]] || fail "$bad requests failed: $(grep -vE '^(200|429) ' "$1" | sort | uniq -c)"
}

listening_any() {  # listening_any PORT...: whether any of the ports accepts a connection
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 0; fi
  done
  return 1
}

instance_metric() {  # instance_metric N REGEX: the sum of matching sample values on instance N
  curl -s "http://127.0.0.1:$((FG_INSTANCE_PORT + $1 - 1))/metrics" |
    grep -E "$2" | awk '{s += $NF} END {print s + 0}'
}

case $case_name in
  limit_across_instances)
    # 60 concurrent clients with one key through HAProxy: exactly the limit (20) is allowed,
    # whichever instance answered, and both instances answered.
    write_config 20 allow
    stack_up
    seq 60 | xargs -P 30 -I{} curl -s -o /dev/null -m 10 -H "X-API-Key: shared" \
      -w '%{http_code}\n' "$url/api/x" >"$run/codes"
    ok=$(grep -c '^200$' "$run/codes" || true)
    limited=$(grep -c '^429$' "$run/codes" || true)
    echo "figure: 60 concurrent requests, limit 20: $ok allowed, $limited limited"
    [[ $ok == 20 ]] || fail "$ok allowed, want exactly 20"
    [[ $limited == 40 ]] || fail "$limited limited, want 40"
    a=$(instance_metric 1 'floodgate_decisions_total\{policy="hourly"')
    b=$(instance_metric 2 'floodgate_decisions_total\{policy="hourly"')
    echo "figure: decisions per instance: $a and $b"
    ((a > 0 && b > 0)) || fail "one instance decided nothing ($a, $b): the balancer did not spread"
    # The key is now hot: 100 more requests are all 429, and each instance answers its repeats
    # from its deny cache (docs/operations.md) instead of asking Redis again.
    redis_calls() { echo $(($(instance_metric 1 '^floodgate_redis_calls_total') + $(instance_metric 2 '^floodgate_redis_calls_total'))); }
    calls_before=$(redis_calls)
    seq 100 | xargs -P 4 -I{} curl -s -o /dev/null -m 10 -H "X-API-Key: shared" \
      -w '%{http_code}\n' "$url/api/x" >"$run/hot"
    hot_limited=$(grep -c '^429$' "$run/hot" || true)
    calls=$(($(redis_calls) - calls_before))
    hits=$(($(instance_metric 1 '^floodgate_deny_cache_hits_total') + $(instance_metric 2 '^floodgate_deny_cache_hits_total')))
    echo "figure: hot key, 100 more requests: $hot_limited limited, $hits from the deny cache, $calls Redis calls"
    [[ $hot_limited == 100 ]] || fail "$hot_limited of 100 limited on a spent key"
    ((hits >= 90)) || fail "only $hits of 100 repeats answered by the deny cache"
    ((calls <= 10)) || fail "$calls Redis calls for 100 repeats of a denied key"
    ;;

  run_output)
    # `make run` (stack.sh run) tells a person what runs where, the URLs, what to try and how to
    # stop, with HAProxy's health checks in words; no raw tables. Ctrl-C (here TERM: a background
    # job ignores INT) stops everything.
    write_config 100 allow
    "$stack" run >"$run/run.out" 2>"$run/run.err" &
    runner=$!
    for _ in $(seq $((120 * time_scale))); do
      grep -q 'Ctrl-C stops everything' "$run/run.out" && break
      kill -0 "$runner" 2>/dev/null || break
      sleep 0.5
    done
    cat "$run/run.out"
    grep -q 'Ctrl-C stops everything' "$run/run.out" || fail "stack.sh run printed no welcome: $(cat "$run/run.err")"
    grep -qE "^  health +fg1 up, fg2 up$" "$run/run.out" || fail "health not in words: $(grep health "$run/run.out")"
    grep -q "^  load balancer  http://127.0.0.1:$FG_HTTP_PORT " "$run/run.out" || fail "no load balancer URL"
    grep -q "fg2 http://127.0.0.1:$((FG_INSTANCE_PORT + 1))" "$run/run.out" || fail "no instance URL"
    dashboard=$(sed -n 's|^  dashboard  *\(http://[^ ]*\).*|\1|p' "$run/run.out")
    [[ $dashboard == "http://127.0.0.1:$FG_INSTANCE_PORT/dashboard" ]] || fail "no dashboard URL: $dashboard"
    # Read whole before grep: `curl | grep -q` fails under pipefail whenever grep exits at its
    # match before curl has written the rest of the page (curl: (23) Failed writing body).
    page=$(curl -fsS -m 2 "$dashboard" || true)
    grep -q '<title>floodgate</title>' <<<"$page" || fail "the dashboard URL does not serve the page"
    if grep -qE '^[0-9]+$|be_id|srv_op_state|^# ' "$run/run.out"; then
      fail "raw HAProxy output among the friendly lines: $(grep -E '^[0-9]+$|be_id|srv_op_state|^# ' "$run/run.out")"
    fi
    kill -TERM "$runner"
    for _ in $(seq 60); do kill -0 "$runner" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$runner" 2>/dev/null; then
      fail "stack.sh run still running 30 s after TERM"
      kill -KILL "$runner" 2>/dev/null || true
    fi
    wait "$runner" 2>/dev/null || true
    if listening_any "$FG_HTTP_PORT" "$FG_INSTANCE_PORT" "$((FG_INSTANCE_PORT + 1))"; then
      fail "something still listens after Ctrl-C"
    fi
    ;;

  https)
    write_config 100 allow
    stack_up
    headers=$(curl -si --cacert "$FG_RUN_DIR/tls/ca.pem" "https://127.0.0.1:$FG_HTTPS_PORT/api/hello")
    [[ $headers == "HTTP/1.1 200"* ]] || fail "HTTPS: $headers"
    [[ ${headers,,} == *"x-ratelimit-remaining: 99"* ]] || fail "HTTPS: no rate-limit fields: $headers"
    # The certificate is checked: without the CA, curl refuses.
    if curl -s -o /dev/null "https://127.0.0.1:$FG_HTTPS_PORT/api/hello"; then
      fail "an untrusted certificate was accepted"
    fi
    # X-Forwarded-For: floodgate believes HAProxy's entry (the address HAProxy saw), never the
    # client's own. Clients connect from 127.0.0.2 and 127.0.0.3, which are not trusted proxies
    # (127.0.0.1, HAProxy's address, is).
    remaining() {  # remaining SOURCE_ADDRESS SPOOFED_XFF
      curl -s -D - -o /dev/null --interface "$1" -H "X-Forwarded-For: $2" "$url/api/x" |
        tr -d '\r' | grep -i '^x-ratelimit-remaining' | awk '{print $2}'
    }
    a=$(remaining 127.0.0.2 203.0.113.9)
    b=$(remaining 127.0.0.2 198.51.100.9)
    c=$(remaining 127.0.0.3 203.0.113.9)
    echo "figure: remaining after spoofed X-Forwarded-For: $a, $b (same client), $c (another)"
    [[ $a == 99 && $b == 98 ]] || fail "a spoofed X-Forwarded-For changed the identity ($a, $b)"
    [[ $c == 99 ]] || fail "another client shared the bucket ($c)"
    ;;

  instance_killed)
    # SIGKILL one instance in the middle of a stream of requests: the balancer retries the
    # refused connections on the other instance and its health check takes the dead one out:
    # no request fails.
    write_config 100000 allow
    stack_up
    load 400 k "$run/load" &
    loader=$!
    # Kill once a quarter of the stream is answered (however fast this machine is today), so
    # most of it is still to come; at most 20 s.
    for _ in $(seq 1 200); do
      [[ -s $run/load && $(wc -l <"$run/load") -ge 100 ]] && break
      sleep 0.1
    done
    before=$(instance_metric 2 'floodgate_decisions_total\{policy="hourly"')
    at_kill=$(wc -l <"$run/load")  # answered when the SIGKILL is sent
    "$stack" kill-instance 1
    wait $loader
    after=$(instance_metric 2 'floodgate_decisions_total\{policy="hourly"')
    echo "figure: instance 1 killed after $at_kill of 400 requests; instance 2 decided $((after - before)) of the rest"
    # The kill must land inside the stream, with most of it still to come, all of it then on
    # instance 2; otherwise this test shows nothing about a kill under load.
    ((at_kill > 0 && at_kill <= 300)) || fail "the kill came after $at_kill of 400 requests"
    ((after - before >= 400 - at_kill - 1)) ||
      fail "instance 2 decided $((after - before)) of the $((400 - at_kill)) requests after the kill"
    expect_all_answered "$run/load" 400 "requests, instance 1 killed after $at_kill"
    ;;

  rolling_restart)
    # Restart each instance in turn (SIGTERM: it drains) while requests flow: none fails.
    write_config 100000 allow
    stack_up
    load 600 k "$run/load" &
    loader=$!
    sleep 0.5
    for i in 1 2; do
      "$stack" stop-instance "$i"
      "$stack" start-instance "$i"
      sleep 1.5  # HAProxy: 2 good checks 500 ms apart before it routes there again
    done
    wait $loader
    expect_all_answered "$run/load" 600 "requests during a rolling restart of both instances"
    ;;

  redis_failover)
    # Kill the master that holds the client's key under load. Decisions continue: degraded
    # (fail open) while its replica is promoted, exact again afterwards. Every instance stays
    # ready throughout (/readyz 200: the other masters answer, whatever the circuit breaker says),
    # and no request takes 1 s or more (store_timeout is 50 ms; the rest of that bound is curl,
    # HAProxy and a shared 2-core machine: the slowest is printed).
    write_config 1000000 allow
    stack_up
    load 50 k "$run/before"
    # The client's key and slot as the instances compute them; its master; and the check that
    # the instances really wrote that key there (a wrong key would aim the kill elsewhere).
    read -r key slot < <(client_key k)
    master_port=$(master_of_slot "$slot")
    [[ -n $master_port ]] || { fail "could not find the master of slot $slot"; exit 1; }
    check_key_in_master "$master_port" k
    pid=$(cat "$FG_RUN_DIR/redis/node-$master_port.pid")
    watch_ready "$run/ready" &
    watcher=$!
    load 300 k "$run/during" &
    loader=$!
    sleep 0.3
    kill -KILL "$pid"
    wait $loader
    # Decisions are exact again once the replica is promoted (cluster-node-timeout 2 s) and each
    # instance's breaker has let a probe through: 8 exact answers in a row, which HAProxy spreads
    # over both instances (one exact answer could come from the instance that recovered first).
    recovered=""
    streak=0
    for _ in $(seq 1 150); do
      # The headers are read whole first: with `curl | grep -q`, a grep that exits at its match
      # can make curl fail writing, and pipefail would then count a degraded answer as exact.
      headers=$(curl -s -D - -o /dev/null -H "X-API-Key: k" "$url/api/x" || true)
      if ! grep -qi '^x-ratelimit-degraded' <<<"$headers"; then
        streak=$((streak + 1))
        ((streak >= 8)) && { recovered=1; break; }
        continue
      fi
      streak=0
      sleep 0.1
    done
    kill "$watcher"
    wait "$watcher" 2>/dev/null || true
    [[ -n $recovered ]] || fail "still degraded 15 s after the kill"
    load 50 k "$run/after"
    bad=$(failed "$run/during")
    degraded=$(grep -c ' degraded$' "$run/during" || true)
    slowest=$(awk '{print $2}' "$run/during" | sort -g | tail -1)
    after_degraded=$(grep -c ' degraded$' "$run/after" || true)
    echo "figure: master :$master_port (slot $slot) killed; of 300 requests $degraded were decided degraded (fail open), $bad failed, slowest ${slowest}s; afterwards $after_degraded of 50 degraded"
    ((degraded > 0)) || fail "no degraded decision: the kill did not reach the store path"
    expect_ready_throughout "$run/ready"
    [[ $bad == 0 ]] || fail "$bad requests failed"
    awk -v s="$slowest" -v k="$time_scale" 'BEGIN {exit !(s < 1.0 * k)}' ||
      fail "a request took ${slowest}s (bound: ${time_scale} s)"
    [[ $after_degraded == 0 ]] || fail "still degraded after the failover"
    ;;

  redis_failover_concurrent)
    # Kill the master of the client's slot while 32 requests on that key are in flight at once.
    # Each instance's circuit breaker opens on that slot's failures, but the other masters answer,
    # so /readyz must stay 200 on every instance and HAProxy must keep them in rotation: every
    # request gets a 200 or a 429, never HAProxy's 503 (no instance left). And the failure must
    # really happen: degraded decisions, and the breaker seen open.
    write_config 1000000 allow
    stack_up
    read -r key slot < <(client_key k)
    master_port=$(master_of_slot "$slot")
    [[ -n $master_port ]] || { fail "could not find the master of slot $slot"; exit 1; }
    check_key_in_master "$master_port" k
    pid=$(cat "$FG_RUN_DIR/redis/node-$master_port.pid")
    downs_before=$(grep -c 'is DOWN' "$FG_RUN_DIR/haproxy.log" || true)
    watch_ready "$run/ready" &
    watcher=$!
    # Two loops of batches of 200 requests, 16 at a time each (curl --parallel), for 7 s; each
    # line "<code> <X-RateLimit-Degraded or nothing>".
    loaders=()
    for w in 1 2; do
      (
        end=$((SECONDS + 7))
        while ((SECONDS < end)); do
          curl -s -Z --parallel-max 16 -o /dev/null -m 5 -H "X-API-Key: k" \
            -w '%{http_code} %header{x-ratelimit-degraded}\n' "$url/api/x?n=[1-200]" 2>/dev/null || true
        done
      ) >"$run/codes.$w" &
      loaders+=($!)
    done
    sleep 1
    kill -KILL "$pid"
    wait "${loaders[@]}"
    kill "$watcher"
    wait "$watcher" 2>/dev/null || true
    cat "$run"/codes.* >"$run/codes"
    n=$(wc -l <"$run/codes")
    bad=$(awk '$1 != "200" && $1 != "429"' "$run/codes" | wc -l)
    degraded=$(awk '$2 != ""' "$run/codes" | wc -l)
    circuit_open=0
    for ((i = 1; i <= FG_INSTANCES; i++)); do
      circuit_open=$((circuit_open + $(instance_metric "$i" 'floodgate_store_requests_total\{result="circuit_open"')))
    done
    downs=$(($(grep -c 'is DOWN' "$FG_RUN_DIR/haproxy.log" || true) - downs_before))
    echo "figure: master :$master_port (slot $slot) killed under 32 concurrent requests: $bad of $n requests failed, $degraded decided degraded, $circuit_open answered by an open breaker; HAProxy took an instance out $downs times"
    ((n > 100)) || fail "only $n requests were sent"
    ((degraded > 0)) || fail "no degraded decision: the kill did not reach the load's key"
    ((circuit_open > 0)) || fail "no instance's breaker opened: the failure under test did not happen"
    expect_ready_throughout "$run/ready"
    [[ $bad == 0 ]] || fail "$bad requests failed: $(awk '$1 != "200" && $1 != "429" {print $1}' "$run/codes" | sort | uniq -c | tr '\n' ' ')"
    ((downs == 0)) || fail "HAProxy took an instance out $downs times"
    ;;

  dashboard)
    # GET /dashboard in headless Chromium (tests/e2e/dashboard_browser.py): a box per instance,
    # every Redis node, non-zero rates, the key this case gets denied among the top limited; then
    # instance 2 stops and its box must go within a few seconds. The screenshot is kept as
    # $FG_SCREENSHOT (default: dashboard.png in the test's working directory).
    require_tools chromium:chromium chromedriver:chromium-driver
    # Debian's python3 (python3-selenium), whatever python3 comes first in PATH.
    /usr/bin/python3 -c 'import selenium' 2>/dev/null || require_tools python3-selenium:python3-selenium
    stack_up
    shot=${FG_SCREENSHOT:-$PWD/dashboard.png}
    started=$SECONDS
    /usr/bin/python3 "$src/tests/e2e/dashboard_browser.py" "$url" \
      "http://127.0.0.1:$FG_INSTANCE_PORT" "$stack" "$shot" || fail "the page did not show it"
    echo "figure: browser checks took $((SECONDS - started)) s; screenshot kept at $shot"
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
