#!/usr/bin/env bash
# Secrets and access, through the `floodgate` binary as operators run it (docs/security.md):
#
#   tests/security/security_test.sh CASE path/to/floodgate SOURCE_DIR
#
#   acl_tls_serve  `floodgate serve` on a redis-server reached over TLS (rediss://, certificates
#                  generated here) as an ACL user with only the permissions floodgate needs
#                  (docs/operations.md); the limit holds, the keys expire, the user can do
#                  nothing else, and neither password appears in any output
#   secrets        a dead Redis, a wrong password, bad TLS material and bad URLs: every log line
#                  (stderr), access-log line (stdout), /metrics, /readyz and error answer of
#                  `serve`, and every message of `validate` and `check`, without the password or
#                  the contents of a key file
#
# Every process is started here on free loopback ports and stopped by its PID.
set -u

case_name=$1
fg=$2
src=$3
tmp=$(mktemp -d)
failures=0
pids=()

fail() {
  echo "FAIL [$case_name]: $*" >&2
  failures=$((failures + 1))
}
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

source "$src/tests/require_tools.sh"
require_tools redis-server:redis-server curl:curl

# The secrets this test plants, and must never find in an output.
password='Pw-5b1f0c9e-do-not-log'
admin_password='Admin-7d3a-do-not-log'
key_marker='KEYFILE-CONTENT-2c8e41-do-not-log'
key_secret='tag-secret-9e04b7c1f2a35d68'

# A loopback port nothing listens on.
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  echo 1
}

# A CA, a server certificate for 127.0.0.1, and a CA that signed nothing (EC P-256: fast).
make_pki() {
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tmp/server.ext"
  openssl req -x509 -new "${ec[@]}" -days 2 -subj /CN=fg-test-ca \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" >/dev/null 2>&1 &&
    openssl req -x509 -new "${ec[@]}" -days 2 -subj /CN=someone-else \
      -keyout "$tmp/other-ca.key" -out "$tmp/other-ca.crt" >/dev/null 2>&1 &&
    openssl req -new "${ec[@]}" -subj /CN=localhost -keyout "$tmp/server.key" \
      -out "$tmp/server.csr" >/dev/null 2>&1 &&
    openssl x509 -req -days 2 -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
      -CAcreateserial -extfile "$tmp/server.ext" -out "$tmp/server.crt" >/dev/null 2>&1
}

# start_redis NAME ARGS...: a redis-server on a free port ($redis_port), admin password set.
start_redis() {
  local name=$1
  shift
  for _ in $(seq 1 10); do
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$tmp" --requirepass "$admin_password" "$@" >"$tmp/$name.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 100); do  # up to 5 s
      [[ $(redis-cli -p "$redis_port" -a "$admin_password" --no-auth-warning PING 2>/dev/null) == PONG ]] && {
        pids+=("$redis_pid")
        return 0
      }
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
  done
  echo "could not start redis-server: $(cat "$tmp/$name.log")" >&2
  return 1
}
admin() { redis-cli -p "$redis_port" -a "$admin_password" --no-auth-warning "$@"; }

# start_serve NAME CONFIG: `floodgate serve`; sets $port (and $admin_port with admin_listen).
start_serve() {
  "$fg" serve --config "$2" >"$tmp/$1.out" 2>"$tmp/$1.err" &
  serve_pid=$!
  pids+=("$serve_pid")
  port=""
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*serving on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$1.err")
    [[ -n $port ]] && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n $port ]] || { fail "$1: no 'serving on' line: $(cat "$tmp/$1.err")"; return 1; }
  admin_port=$(sed -n 's/.*\/metrics on http:\/\/127\.0\.0\.1:\([0-9]*\) only.*/\1/p' "$tmp/$1.err")
}
stop_serve() {
  kill -TERM "$serve_pid" 2>/dev/null
  wait "$serve_pid" 2>/dev/null
}

# expect_no_secret WHAT FILE...: none of the planted secrets in these files.
expect_no_secret() {
  local what=$1
  shift
  for secret in "$password" "$admin_password" "$key_marker" "$key_secret"; do
    if grep -qF -- "$secret" "$@"; then
      fail "$what: a secret appears: $(grep -F -- "$secret" "$@" | head -3)"
    fi
  done
}

# every_surface NAME: /api, /readyz, /healthz, /metrics (admin listener if any) and a bad
# request, each answer (headers and body) into $tmp/NAME.http.
every_surface() {
  local metrics_port=${admin_port:-$port}
  : >"$tmp/$1.http"
  for i in 1 2 3; do
    curl -si -H "X-API-Key: client-$i" "http://127.0.0.1:$port/api/x" >>"$tmp/$1.http"
  done
  curl -si "http://127.0.0.1:$port/readyz" >>"$tmp/$1.http"
  curl -si "http://127.0.0.1:$port/healthz" >>"$tmp/$1.http"
  curl -si "http://127.0.0.1:$metrics_port/metrics" >>"$tmp/$1.http"
  curl -si -X POST -H 'Content-Type: application/json' \
    -d '{"policy":"api","key":"k"}' "http://127.0.0.1:$port/v1/check" >>"$tmp/$1.http"
  printf 'NOT HTTP\r\n\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; cat <&3" \
    >>"$tmp/$1.http" 2>/dev/null
}

# serve_config FILE STORE [EXTRA]: one policy on /api/, access log on.
serve_config() {
  {
    printf 'listen: 127.0.0.1:0\nthreads: 2\nstore: "%s"\nstore_timeout: 200ms\n' "$2"
    printf 'access_log: true\nkey_secret: %s\nidentity: [{header: X-API-Key}, {ip: {}}]\n' "$key_secret"
    printf '%b' "${3:-}"
    printf 'policies:\n  - {name: api, match: {path_prefix: /api/}, limit: 5, period: 1h}\n'
  } >"$1"
}

case $case_name in
  acl_tls_serve)
    make_pki || { fail "openssl could not make the certificates"; exit 1; }
    tls_port=$(free_port)
    start_redis redis --tls-port "$tls_port" --tls-cert-file "$tmp/server.crt" \
      --tls-key-file "$tmp/server.key" --tls-ca-cert-file "$tmp/ca.crt" \
      --tls-auth-clients no || exit 1
    # The minimal ACL of docs/operations.md: its own keys, the commands it sends (the library's
    # load is a MULTI/EXEC replacing the previous libraries), and the ones the functions run as
    # that user (TIME, MGET, SET; DEL for refunds; the sorted-set commands for concurrency), and
    # the fleet view's (ZREVRANGE, INFO, FUNCTION LIST, CLUSTER NODES).
    admin ACL SETUSER floodgate on ">$password" resetkeys '~fg:*' resetchannels \
      -@all +fcall +multi +exec +function\|load +function\|delete +time +mget +set +del +select \
      +ping +zadd +zrem +zremrangebyscore +zcard +zscore +pexpire +cluster\|slots +asking \
      +zrevrange +info +function\|list +cluster\|nodes >/dev/null
    [[ $(admin ACL WHOAMI) == default ]] || fail "admin connection"
    admin SET other:secret-data x >/dev/null
    serve_config "$tmp/serve.yaml" \
      "rediss://floodgate:$password@127.0.0.1:$tls_port?ca=$tmp/ca.crt" \
      "admin_listen: 127.0.0.1:0\n"
    start_serve serve "$tmp/serve.yaml" || exit 1
    # The limit holds through TLS as the ACL user: 5 allowed, then 429.
    codes=""
    for _ in 1 2 3 4 5 6; do
      codes+="$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: acl-client' \
        "http://127.0.0.1:$port/api/x") "
    done
    [[ $codes == "200 200 200 200 200 429 " ]] || fail "codes over TLS: $codes ($(cat "$tmp/serve.err"))"
    [[ $(curl -s "http://127.0.0.1:$port/readyz") == ok ]] || fail "/readyz is not ok"
    curl -si -H 'X-API-Key: acl-client' "http://127.0.0.1:$port/api/x" | grep -q 'X-RateLimit-Degraded' &&
      fail "degraded decisions over TLS"
    # The state is in Redis, under the prefix, with a ttl, read back over the TLS port too.
    key=$(redis-cli --tls --cacert "$tmp/ca.crt" -p "$tls_port" -a "$admin_password" \
      --no-auth-warning --scan --pattern 'fg:{*}:key:x-api-key:acl-client:api')
    [[ $key =~ ^fg:\{[0-9a-f]{8}\}:key:x-api-key:acl-client:api$ ]] || fail "no key over TLS: '$key'"
    # At most 1.5x the hour its state needs (decide.lua: a new expiry has ttl/2 of slack).
    ttl=$(admin PTTL "$key")
    ((ttl > 0 && ttl <= 5400000)) || fail "$key has ttl $ttl"
    # The user can do nothing else: no other keys, no KEYS/FLUSHALL/CONFIG, no plain EVAL.
    as_user() { redis-cli -p "$redis_port" --user floodgate --pass "$password" --no-auth-warning "$@" 2>&1; }
    [[ $(as_user PING) == PONG ]] || fail "the ACL user cannot PING"
    for denied in "GET other:secret-data" "MGET other:secret-data" "SET other:x 1" "KEYS *" \
      "FLUSHALL" "CONFIG GET requirepass" "EVAL return 1 0" "GET fg:x" "ACL LIST" \
      "FUNCTION FLUSH" "SCRIPT FLUSH"; do
      set -f  # split on purpose, without expanding the '*'
      # shellcheck disable=SC2086
      out=$(as_user $denied)
      set +f
      [[ $out == *NOPERM* ]] || fail "the ACL user may run '$denied': $out"
    done
    out=$(as_user FCALL fg_decide_v4 1 other:secret-data "" 1 1 1 0 5 1 1 1 1 1)
    [[ $out == *NOPERM* || $out == *"No permissions"* ]] || fail "the ACL user reached another key: $out"
    # What the functions run as this user, beyond a decision: a refund that forgets the state
    # (DEL) and a concurrency slot taken and given back (the sorted-set commands). Fixed window,
    # 5 per minute (alg 4, p1 5, p2 60000000); concurrency limit 2, lease 30 s (alg 5).
    out=$(as_user FCALL fg_decide_v4 1 'fg:{acl}:u:p' "" 1 1 4 0 5 60000000 0 1 1 1)
    decided_at=$(head -1 <<<"$out")
    [[ $(sed -n 2p <<<"$out") == 1 ]] || fail "a decision as the ACL user: $out"
    out=$(as_user FCALL fg_refund_v3 1 'fg:{acl}:u:p' "" "$decided_at" 1 4 1 0 5 60000000 0)
    [[ $out == 1 ]] || fail "a refund that deletes the state, as the ACL user: $out"
    [[ $(admin EXISTS 'fg:{acl}:u:p') == 0 ]] || fail "the refund did not forget the state"
    out=$(as_user FCALL fg_acquire_v4 1 'fg:{acl}:u:c' "" lease-1 1 5 1 0 2 30000000 0)
    [[ $(sed -n 2p <<<"$out") == 1 ]] || fail "a concurrency slot taken as the ACL user: $out"
    out=$(as_user FCALL fg_release_v4 1 'fg:{acl}:u:c' "" lease-1 0 30000000)
    [[ $out == 1 ]] || fail "a concurrency slot given back as the ACL user: $out"
    [[ -n $admin_port ]] || fail "no admin listener line: $(cat "$tmp/serve.err")"
    # The fleet view (/v1/status, the dashboard) as the same user: its records (SET, ZADD,
    # ZREMRANGEBYSCORE, PEXPIRE, ZREVRANGE, MGET) and the store's nodes (INFO, FUNCTION LIST) read
    # without an error, within a few publishes (one a second).
    status=""
    for _ in $(seq 1 50); do
      status=$(curl -s "http://127.0.0.1:$admin_port/v1/status")
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); f=d["fleet"]; n=d["store"]["nodes"]
sys.exit(0 if "read_ms_ago" in f and "error" not in f and len(f["instances"]) == 1 and n
         and all(x.get("memory_bytes", 0) > 0 for x in n) else 1)' "$status" 2>/dev/null && break
      sleep 0.1
    done
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); f=d["fleet"]; n=d["store"]["nodes"]
sys.exit(0 if "read_ms_ago" in f and "error" not in f and len(f["instances"]) == 1 and n
         and all(x.get("memory_bytes", 0) > 0 for x in n) else 1)' "$status" 2>/dev/null ||
      fail "the fleet view as the ACL user: ${status:0:600}"
    grep -q NOPERM "$tmp/serve.err" && fail "NOPERM as the ACL user: $(grep -m1 NOPERM "$tmp/serve.err")"
    # /metrics is on the admin listener only.
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics") == 404 ]] ||
      fail "/metrics answered on the public listener"
    curl -s "http://127.0.0.1:$admin_port/metrics" | grep -q 'floodgate_build_info{version=".*",store="redis"} 1' ||
      fail "no /metrics on the admin listener"
    every_surface serve
    stop_serve
    expect_no_secret "serve over TLS (stderr)" "$tmp/serve.err"
    expect_no_secret "serve over TLS (access log)" "$tmp/serve.out"
    expect_no_secret "serve over TLS (answers)" "$tmp/serve.http"
    grep -q '"client":"key:x-api-key:sha256=' "$tmp/serve.out" || fail "no access log lines"
    grep -q 'acl-client' "$tmp/serve.out" && fail "an API key appears in the access log"
    ;;

  secrets)
    make_pki || { fail "openssl could not make the certificates"; exit 1; }
    # A private key file whose contents (not PEM) carry a marker, and a CA file likewise.
    printf -- '-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n' "$key_marker" >"$tmp/bad.key"
    printf -- '%s\n' "$key_marker" >"$tmp/bad-ca.crt"
    cp "$tmp/server.crt" "$tmp/client.crt"
    tls_port=$(free_port)
    start_redis redis --tls-port "$tls_port" --tls-cert-file "$tmp/server.crt" \
      --tls-key-file "$tmp/server.key" --tls-ca-cert-file "$tmp/ca.crt" \
      --tls-auth-clients no || exit 1
    dead=$(free_port)
    # Stores that start but cannot decide: serve, hit every surface, stop; nothing may show the
    # password (the URL is logged at start with "***").
    n=0
    for store in "redis://floodgate:$password@127.0.0.1:$dead" \
      "redis://floodgate:$password@127.0.0.1:$redis_port" \
      "redis://:$password@127.0.0.1:$redis_port/3" \
      "rediss://floodgate:$password@127.0.0.1:$tls_port?ca=$tmp/other-ca.crt" \
      "rediss://floodgate:$password@127.0.0.1:$redis_port?ca=$tmp/ca.crt" \
      "redis-cluster://floodgate:$password@127.0.0.1:$dead"; do
      n=$((n + 1))
      serve_config "$tmp/s$n.yaml" "$store" "on_store_error: deny\n"
      start_serve "s$n" "$tmp/s$n.yaml" || continue
      grep -q 'store redis.*\*\*\*@' "$tmp/s$n.err" || fail "s$n: the start line does not show the masked URL"
      every_surface "s$n"
      # The outage is seen (503s, /readyz), and logged, so the logs were exercised.
      grep -q ' 503 ' "$tmp/s$n.http" || fail "s$n: no 503 while the store cannot decide"
      for _ in $(seq 1 40); do
        grep -q 'does not answer\|could not decide' "$tmp/s$n.err" && break
        sleep 0.05
      done
      grep -q 'does not answer\|could not decide' "$tmp/s$n.err" || fail "s$n: no store error logged: $(cat "$tmp/s$n.err")"
      stop_serve
      expect_no_secret "serve with $n (stderr)" "$tmp/s$n.err"
      expect_no_secret "serve with $n (access log)" "$tmp/s$n.out"
      expect_no_secret "serve with $n (answers)" "$tmp/s$n.http"
    done
    # Stores refused at start (TLS material that cannot be loaded): a clear error, no secret.
    for query in "ca=$tmp/bad-ca.crt" "ca=$tmp/ca.crt&cert=$tmp/client.crt&key=$tmp/bad.key" \
      "ca=$tmp/missing.crt"; do
      n=$((n + 1))
      serve_config "$tmp/s$n.yaml" "rediss://floodgate:$password@127.0.0.1:$tls_port?$query"
      "$fg" serve --config "$tmp/s$n.yaml" >"$tmp/s$n.out" 2>"$tmp/s$n.err"
      code=$?
      [[ $code == 1 ]] || fail "serve with bad TLS ($query) exited $code"
      grep -q 'tls' "$tmp/s$n.err" || fail "serve with bad TLS ($query): no tls error: $(cat "$tmp/s$n.err")"
      expect_no_secret "serve with bad TLS ($query)" "$tmp/s$n.err" "$tmp/s$n.out"
      "$fg" check --config "$tmp/s$n.yaml" --policy api --key k >"$tmp/c$n.out" 2>"$tmp/c$n.err"
      [[ $? == 2 ]] || fail "check with bad TLS ($query) did not exit 2"
      expect_no_secret "check with bad TLS ($query)" "$tmp/c$n.err" "$tmp/c$n.out"
      "$fg" check --config "$tmp/s$n.yaml" --policy api --key k \
        --store "rediss://floodgate:$password@127.0.0.1:$tls_port?$query" >"$tmp/c$n.out" 2>"$tmp/c$n.err"
      expect_no_secret "check --store with bad TLS ($query)" "$tmp/c$n.err" "$tmp/c$n.out"
    done
    # check against the dead, the wrong password, the wrong CA: exit 2, reason on stderr.
    for store in "redis://floodgate:$password@127.0.0.1:$dead" \
      "redis://floodgate:$password@127.0.0.1:$redis_port" \
      "rediss://floodgate:$password@127.0.0.1:$tls_port?ca=$tmp/other-ca.crt"; do
      "$fg" check --config "$tmp/s1.yaml" --policy api --key k --store "$store" >"$tmp/c.out" 2>"$tmp/c.err"
      [[ $? == 2 ]] || fail "check with $store did not exit 2"
      [[ -s $tmp/c.err ]] || fail "check with $store gave no reason"
      expect_no_secret "check ($store)" "$tmp/c.err" "$tmp/c.out"
    done
    # validate / check / serve on URLs that do not parse: the message names the URL, masked.
    for url in "redis://floodgate:$password@127.0.0.1:1/zero" \
      "redis://floodgate:$password#x@127.0.0.1:1" \
      "redis-cluster://floodgate:$password@127.0.0.1:1/2" \
      "redis://floodgate:$password@127.0.0.1:1,127.0.0.1:2" \
      "rediss://floodgate:$password@127.0.0.1:1?cert=/x" \
      "floodgate:$password@127.0.0.1:1"; do
      serve_config "$tmp/bad.yaml" "$url"
      "$fg" validate "$tmp/bad.yaml" >"$tmp/v.out" 2>"$tmp/v.err"
      [[ $? == 1 ]] || fail "validate accepted $url"
      grep -q 'store' "$tmp/v.out" "$tmp/v.err" || fail "validate did not name the store field"
      expect_no_secret "validate ($url)" "$tmp/v.out" "$tmp/v.err"
      "$fg" check --config "$tmp/s1.yaml" --policy api --key k --store "$url" >"$tmp/c.out" 2>"$tmp/c.err"
      expect_no_secret "check --store ($url)" "$tmp/c.out" "$tmp/c.err"
      "$fg" serve --config "$tmp/s1.yaml" --store "$url" >"$tmp/sv.out" 2>"$tmp/sv.err"
      [[ $? == 1 ]] || fail "serve accepted --store $url"
      expect_no_secret "serve --store ($url)" "$tmp/sv.out" "$tmp/sv.err"
    done
    # A key_secret that is too short is refused without being echoed.
    printf 'key_secret: "%s"\npolicies:\n  - {name: p, limit: 1, period: 1s}\n' "${key_secret:0:10}" >"$tmp/short.yaml"
    "$fg" validate "$tmp/short.yaml" >"$tmp/v.out" 2>"$tmp/v.err"
    [[ $? == 1 ]] || fail "validate accepted a short key_secret"
    grep -qF -- "${key_secret:0:10}" "$tmp/v.out" "$tmp/v.err" && fail "the short key_secret was echoed"
    # A YAML syntax error on the store line: yaml-cpp's message must not quote the line.
    printf 'store: "redis://u:%s@h:1\npolicies: [\n' "$password" >"$tmp/syntax.yaml"
    "$fg" validate "$tmp/syntax.yaml" >"$tmp/v.out" 2>"$tmp/v.err"
    [[ $? == 1 ]] || fail "validate accepted a syntax error"
    expect_no_secret "validate (syntax error)" "$tmp/v.out" "$tmp/v.err"
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
