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

cleanup() {
  local status=$? reports
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

# redis_key IDENTITY POLICY: fg:{<tag>}:<identity>:<policy>, the tag being the low 32 bits of
# SipHash-2-4 of the identity keyed by the first 16 bytes of SHA-256(key_secret), in hex
# (src/store/redis/keys.h). For identities that need no escaping.
redis_key() {
  python3 - "$key_secret" "$1" "$2" <<'PY'
import hashlib, sys

def siphash24(k, data):
    M = (1 << 64) - 1
    rotl = lambda x, b: ((x << b) | (x >> (64 - b))) & M
    k0, k1 = int.from_bytes(k[:8], "little"), int.from_bytes(k[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    def rnd():
        v[0] = (v[0] + v[1]) & M; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M; v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & M; v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & M; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)
    n = len(data) - len(data) % 8
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, n, 8)]
    words.append(int.from_bytes(data[n:], "little") | (len(data) & 0xFF) << 56)
    for m in words:
        v[3] ^= m; rnd(); rnd(); v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        rnd()
    return v[0] ^ v[1] ^ v[2] ^ v[3]

secret, identity, policy = sys.argv[1], sys.argv[2], sys.argv[3]
key = hashlib.sha256(secret.encode()).digest()[:16]
tag = format(siphash24(key, identity.encode()) & 0xFFFFFFFF, "08x")
print("fg:{%s}:%s:%s" % (tag, identity, policy))
PY
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
    sleep 1
    "$stack" kill-instance 1
    wait $loader
    expect_all_answered "$run/load" 400 "requests, instance 1 killed after ~1 s"
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
    # (fail open) while its replica is promoted, exact again afterwards; no request waits much
    # past store_timeout (50 ms).
    write_config 1000000 allow
    stack_up
    load 50 k "$run/before"
    # The key of identity "key:x-api-key:k", policy "hourly" (its hash tag keyed by key_secret:
    # src/store/redis/keys.h); then its master, by asking the cluster. A wrong key would name a
    # master the client is not on, and the check for degraded decisions below would fail.
    redis_url=$(cat "$FG_RUN_DIR/redis/url")
    seed=${redis_url#redis-cluster://}
    seed=${seed%%,*}
    key=$(redis_key key:x-api-key:k hourly)
    slot=$(redis-cli -h 127.0.0.1 -p "${seed#*:}" CLUSTER KEYSLOT "$key")
    master_port=$(redis-cli -h 127.0.0.1 -p "${seed#*:}" CLUSTER SHARDS |
      python3 -c '
import sys
# CLUSTER SHARDS as redis-cli prints it: find the shard whose slot range covers the slot and
# print the port of its master node.
slot = int(sys.argv[1]); lines = [l.strip() for l in sys.stdin]
shards, cur = [], None
for i, l in enumerate(lines):
    if l == "slots":
        cur = {"slots": [], "nodes": []}; shards.append(cur)
        j = i + 1
        while j < len(lines) and lines[j].isdigit():
            cur["slots"].append(int(lines[j])); j += 1
    if cur is not None and l == "port":
        cur["nodes"].append([int(lines[i + 1]), None])
    if cur is not None and l == "role" and cur["nodes"]:
        cur["nodes"][-1][1] = lines[i + 1]
for s in shards:
    r = s["slots"]
    for a, b in zip(r[::2], r[1::2]):
        if a <= slot <= b:
            print([p for p, role in s["nodes"] if role == "master"][0])
' "$slot")
    [[ -n $master_port ]] || { fail "could not find the master of slot $slot"; exit 1; }
    pid=$(cat "$FG_RUN_DIR/redis/node-$master_port.pid")
    load 300 k "$run/during" &
    loader=$!
    sleep 0.3
    kill -KILL "$pid"
    wait $loader
    # Decisions are exact again once the replica is promoted (cluster-node-timeout 2 s).
    recovered=""
    for _ in $(seq 1 150); do
      if ! curl -s -D - -o /dev/null -H "X-API-Key: k" "$url/api/x" | grep -qi '^x-ratelimit-degraded'; then
        recovered=1
        break
      fi
      sleep 0.1
    done
    [[ -n $recovered ]] || fail "still degraded 15 s after the kill"
    load 50 k "$run/after"
    bad=$(failed "$run/during")
    degraded=$(grep -c ' degraded$' "$run/during" || true)
    slowest=$(awk '{print $2}' "$run/during" | sort -g | tail -1)
    after_degraded=$(grep -c ' degraded$' "$run/after" || true)
    echo "figure: master :$master_port (slot $slot) killed; of 300 requests $degraded were decided degraded (fail open), $bad failed, slowest ${slowest}s; afterwards $after_degraded of 50 degraded"
    [[ $bad == 0 ]] || fail "$bad requests failed"
    awk -v s="$slowest" -v k="$time_scale" 'BEGIN {exit !(s < 1.0 * k)}' ||
      fail "a request took ${slowest}s (bound: ${time_scale} s)"
    [[ $after_degraded == 0 ]] || fail "still degraded after the failover"
    ((degraded > 0)) || fail "no degraded decision: the kill did not reach the store path"
    ;;

  redis_failover_concurrent)
    # Kill the master of the client's slot while 32 requests on that key are in flight at once.
    # Each instance's circuit breaker opens on that slot's failures, but the other masters answer,
    # so /readyz must stay 200 and HAProxy must keep the instances in rotation: every request gets
    # a 200 or a 429, never HAProxy's 503 (no instance left), on this slot or any other.
    write_config 1000000 allow
    stack_up
    redis_url=$(cat "$FG_RUN_DIR/redis/url")
    seed=${redis_url#redis-cluster://}
    seed=${seed%%,*}
    slot=$(redis-cli -h 127.0.0.1 -p "${seed#*:}" CLUSTER KEYSLOT 'fg:{key:x-api-key:k}:hourly')
    # CLUSTER NODES: "id host:port@bus flags master ... slot-ranges"; the master whose range holds it.
    master_port=$(redis-cli -h 127.0.0.1 -p "${seed#*:}" CLUSTER NODES | awk -v slot="$slot" '
      $3 ~ /master/ {
        for (i = 9; i <= NF; i++) {
          n = split($i, r, "-"); lo = r[1]; hi = (n == 2) ? r[2] : r[1]
          if (slot >= lo + 0 && slot <= hi + 0) { split($2, a, "[:@]"); print a[2] }
        }
      }')
    [[ -n $master_port ]] || { fail "could not find the master of slot $slot"; exit 1; }
    pid=$(cat "$FG_RUN_DIR/redis/node-$master_port.pid")
    # Two loops of batches of 200 requests, 16 at a time each (curl --parallel), for 7 s.
    for w in 1 2; do
      (
        end=$((SECONDS + 7))
        while ((SECONDS < end)); do
          curl -s -Z --parallel-max 16 -o /dev/null -m 5 -H "X-API-Key: k" -w '%{http_code}\n' \
            "$url/api/x?n=[1-200]" 2>/dev/null || true
        done
      ) >"$run/codes.$w" &
    done
    sleep 1
    kill -KILL "$pid"
    wait
    cat "$run"/codes.* >"$run/codes"
    n=$(wc -l <"$run/codes")
    bad=$(grep -vcE '^(200|429)$' "$run/codes" || true)
    downs=$(grep -c 'is DOWN' "$FG_RUN_DIR/haproxy.log" || true)
    echo "figure: master :$master_port killed under 32 concurrent requests: $bad of $n requests failed; HAProxy took an instance out $downs times"
    ((n > 100)) || fail "only $n requests were sent"
    [[ $bad == 0 ]] || fail "$bad requests failed: $(grep -vE '^(200|429)$' "$run/codes" | sort | uniq -c | tr '\n' ' ')"
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
