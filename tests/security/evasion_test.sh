#!/usr/bin/env bash
# No way around a limit (docs/security.md, "Evasion"): each case is an attack on a limit, made
# through the `floodgate` binary in proxy mode, in front of an upstream that reads requests as
# leniently as real servers do (tests/fixtures/lenient_upstream.cc: it percent-decodes, reads
# '\' as '/', strips ";params", resolves dot segments, ignores any scheme://host and upper-cases
# methods), and logs what it acted on. The limit holds if the upstream never acted on more
# requests than the limit allows, whatever the spelling.
#
#   tests/security/evasion_test.sh CASE path/to/floodgate path/to/lenient_upstream SOURCE_DIR
#
#   paths        other spellings of a limited path: percent-encoded '/' and '\', a raw '\', dot
#                segments, "//", encoded letters, ";params", absolute-form with any scheme
#   methods      "post", "Post" against a policy on POST (and "/login/" against one on "/login")
#   overrides    a POST naming DELETE in a method-override header or a _method query parameter,
#                which frameworks run as DELETE, against a policy on DELETE; and another path
#                named in X-Original-URL or X-Rewrite-URL, which some route instead
#   trailers     X-Forwarded-For in a chunked trailer, through HAProxy (option forwardfor) with
#                floodgate trusting it; and no trailer field reaches the upstream
#   repeated     an identity header repeated (first for floodgate, last for the upstream), as a
#                list ("k1, k2"), spelled with '_' beside or instead of '-' (one field to
#                CGI-style servers; a policy's match header too), or named by Connection
#                (dropped before the upstream)
#   host         a policy on a Host value, and the other spellings of that host
#   host_syntax  the same policy, and hosts that are not host names ("api.example.com/x",
#                "api%2Eexample.com", fullwidth letters) which URL parsers read as that host
#   missing_host  a request without Host, against a policy on the host the upstream's address
#                names (floodgate used to forward it with that Host)
#   authorization  an Authorization identity spelled otherwise (scheme case, whitespace, bytes
#                that Python or JavaScript trim, Basic credentials that Node.js or Python decode
#                to the same user, a JWS signature that its verifier decodes to the same bytes,
#                text that decodes to nothing) for the same credentials
#   forwarded_host  the same policy, and X-Forwarded-Host or Forwarded host= naming that host
#                (which upstreams behind a proxy act on) beside another Host
#   get_body     a request smuggled in the body of a GET, HEAD, DELETE or OPTIONS, which an
#                upstream that expects no body there reads as the next request
#   check_api    /v1/check cannot spend an HTTP client's budget, is limited per caller on the
#                public listener, lives only on admin_listen when set, and can be switched off
#   body         a client over its limit gets 429 on its header section: no body is read (not
#                even with Expect: 100-continue), and 200 such uploads leave RSS flat
#   rotation     inventing API keys does not escape a per-IP policy (policies[].identity)
#   access_log   query credentials never reach the access log
#   flood        a flood of fresh identities on a full memory store does not reset a spent client
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
require_tools curl:curl socat:socat

base=$(bash "$src/scripts/free-port-block.sh" 4) || exit 1
fg_port=$base
admin_port=$((base + 1))
hp_port=$((base + 2))

# start_upstream: the lenient upstream; its port in $up_port, its log in $tmp/upstream.log.
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

# start_fg CONFIG_BODY: floodgate with this config (listen, upstream and store added here).
start_fg() {
  {
    echo "listen: 127.0.0.1:$fg_port"
    echo "upstream: http://127.0.0.1:$up_port"
    echo "store: memory://"
    echo "threads: 2"
    cat
  } >"$tmp/fg.yaml"
  "$fg" serve --config "$tmp/fg.yaml" >"$tmp/fg.out" 2>"$tmp/fg.err" &
  fg_pid=$!
  pids+=("$fg_pid")
  for _ in $(seq 1 100); do
    [[ $(curl -s "http://127.0.0.1:$fg_port/healthz" 2>/dev/null) == ok ]] && return 0
    kill -0 "$fg_pid" 2>/dev/null || break
    sleep 0.05
  done
  fail "floodgate did not start: $(tail -3 "$tmp/fg.err")"
  return 1
}

# How many requests the upstream acted on whose method and path match the extended regex.
acted_on() { grep -cE "$1" "$tmp/upstream.log"; }

# raw PORT BYTES: sends BYTES (printf format) on a fresh connection, prints what comes back
# within 2 s.
raw() {
  local port=$1
  shift
  {
    printf "$@"
    sleep 2
  } | timeout 3 socat - "TCP:127.0.0.1:$port" 2>/dev/null
}

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# The upstream, and floodgate limiting api.example.com (by Host) to 2 per key.
start_vhost() {
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: vhost, match: {path_prefix: /v/, header: {name: Host, value: api.example.com}}, limit: 2, period: 1h}
EOF
}

# start_vhost, both requests spent by requests that name it plainly: what follows names it
# otherwise and must be counted.
spend_vhost() {
  start_vhost
  for _ in 1 2; do
    [[ $(code -H 'X-API-Key: k' -H 'Host: api.example.com' "http://127.0.0.1:$fg_port/v/x") == 200 ]] ||
      fail "an allowed request was not served"
  done
}

case $case_name in
paths)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 3, period: 1h}
EOF
  for _ in 1 2 3; do
    [[ $(code -H 'X-API-Key: k' "http://127.0.0.1:$fg_port/api/items") == 200 ]] ||
      fail "an allowed request was not served"
  done
  spellings=(
    '/api%2Fitems' '/api%2fitems' '/%2Fapi/items' '/api%5Citems' '/api\items' '\api\items'
    '/x/../api/items' '/x/..%2Fapi/items' '/x/%2E%2E/api/items' '//api//items' '/./api/items'
    '/%61pi/items' '/%2561pi/items' '/api;x/items' '/api/;/items' '/ap%69/items'
    'http://h/api/items' 'HTTP://h/api/items' 'https://h/api/items' 'ftp://h/api/items'
    'gopher://h/api/items' 'x://h/api/items' '/api/items?x=1' '/api/items#f' '/api/%2e/items'
    '/api./items' '/api%20/items' '/api%2e/items' '/api%C0%AFitems' '/x/%C0%AE%C0%AE/api/items'
    'http://u:p@h/api/items'
  )
  for t in "${spellings[@]}"; do
    out=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k' --path-as-is \
      --request-target "$t" "http://127.0.0.1:$fg_port/")
    [[ $out == 429 || $out == 400 ]] || fail "$t answered $out (want 429 or 400)"
  done
  n=$(acted_on '^[A-Z]+ /api/')
  [[ $n -eq 3 ]] || fail "the upstream acted on $n requests to /api/ (limit 3): $(tail -5 "$tmp/upstream.log")"
  # And what is forwarded is the canonical form: an allowed odd spelling arrives decoded once.
  [[ $(code -H 'X-API-Key: other' --path-as-is --request-target '/api/./%69tems' \
    "http://127.0.0.1:$fg_port/") == 200 ]] || fail "a canonicalizable spelling was refused"
  grep -q '^GET /api/items ' "$tmp/upstream.log" || fail "the canonical target was not forwarded"
  ;;

methods)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: login, match: {method: POST, path: /login}, limit: 2, period: 1h}
EOF
  for m in POST POST post Post pOsT; do
    curl -s -o /dev/null -X "$m" -H 'X-API-Key: k' -H 'Content-Length: 0' \
      "http://127.0.0.1:$fg_port/login"
  done
  # With a trailing '/': the same route to most routers (Express unless strict, Rails, Spring).
  for t in /login/ /login/ /login//; do
    curl -s -o /dev/null -X POST -H 'X-API-Key: k' -H 'Content-Length: 0' --path-as-is \
      "http://127.0.0.1:$fg_port$t"
  done
  n=$(acted_on '^POST /login/? ')
  [[ $n -eq 2 ]] || fail "the upstream acted on $n POST /login or /login/ (limit 2): $(cat "$tmp/upstream.log")"
  kill "$fg_pid"
  wait "$fg_pid" 2>/dev/null
  # HEAD is GET without the body: servers run the GET handler for it.
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: reads, match: {method: GET, path_prefix: /g/}, limit: 1, period: 1h}
EOF
  for m in GET HEAD head GET; do
    head=()
    [[ $m == [Hh][Ee][Aa][Dd] ]] && head=(-I)  # no body follows a HEAD answer
    curl -s -m 5 -o /dev/null "${head[@]}" -X "$m" -H 'X-API-Key: k' "http://127.0.0.1:$fg_port/g/x"
  done
  n=$(acted_on '^(GET|HEAD) /g/')
  [[ $n -eq 1 ]] || fail "the upstream acted on $n GET/HEAD /g/x (limit 1)"
  ;;

overrides)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: deletes, match: {method: DELETE, path_prefix: /api/}, limit: 1, period: 1h}
EOF
  [[ $(code -X DELETE -H 'X-API-Key: k' "http://127.0.0.1:$fg_port/api/x") == 200 ]] ||
    fail "the first DELETE was not served"
  # The upstream runs each of these as DELETE /api/x (tests/fixtures/lenient_upstream.cc).
  overrides=(
    'X-HTTP-Method-Override: DELETE' 'X-HTTP-Method-Override: delete' 'X-HTTP-Method: DELETE'
    'X-Method-Override: DELETE' 'X_HTTP_Method_Override: DELETE' 'x-http-method-override: Delete'
  )
  for h in "${overrides[@]}"; do
    c=$(code -X POST -H 'X-API-Key: k' -H "$h" "http://127.0.0.1:$fg_port/api/x")
    [[ $c == 429 || $c == 400 ]] || fail "POST with '$h' answered $c (want 429 or 400)"
  done
  for q in '_method=DELETE' 'a=1&_method=delete' '%5Fmethod=DELETE' '_method=DEL%45TE' \
    '.method=DELETE' '_method[]=DELETE' '_METHOD=DELETE' 'a=1;_method=DELETE'; do
    c=$(code -g -X POST -H 'X-API-Key: k' "http://127.0.0.1:$fg_port/api/x?$q")
    [[ $c == 429 || $c == 400 ]] || fail "POST ?$q answered $c (want 429 or 400)"
  done
  n=$(acted_on '^DELETE /api/')
  [[ $n -eq 1 ]] || fail "the upstream acted on $n DELETE /api/x (limit 1): $(cat "$tmp/upstream.log")"
  # A POST that names its own method, and one that names none, are served as POSTs.
  [[ $(code -X POST -H 'X-API-Key: k' -H 'X-HTTP-Method-Override: POST' \
    "http://127.0.0.1:$fg_port/api/x?_method=post&method=card") == 200 ]] ||
    fail "a POST naming its own method was not served"
  [[ $(acted_on '^POST /api/x ') -eq 1 ]] || fail "the POST naming its own method did not reach the upstream"
  # The path to route named in X-Original-URL or X-Rewrite-URL, which the upstream routes instead
  # of the request line's (as Symfony before 3.4.14 did): DELETE /free with one naming /api/x.
  paths=(
    'X-Original-URL: /api/x' 'X-Rewrite-URL: /api/x' 'x-original-url: /api/x?a=1'
    'X_Original_URL: /api/./x' 'X-Original-URL: /%61pi/x' 'X-Original-URL: http://h/api/x'
  )
  for h in "${paths[@]}"; do
    c=$(code -X DELETE -H 'X-API-Key: k' -H "$h" "http://127.0.0.1:$fg_port/free")
    [[ $c == 429 || $c == 400 ]] || fail "DELETE /free with '$h' answered $c (want 429 or 400)"
  done
  n=$(acted_on '^DELETE /api/')
  [[ $n -eq 1 ]] || fail "the upstream acted on $n DELETE /api/x (limit 1): $(cat "$tmp/upstream.log")"
  # One naming the request's own path is served.
  [[ $(code -X DELETE -H 'X-API-Key: k' -H 'X-Original-URL: /free?x=1' \
    "http://127.0.0.1:$fg_port/free") == 200 ]] || fail "a request naming its own path was not served"
  ;;

trailers)
  require_tools haproxy:haproxy
  start_upstream
  start_fg <<'EOF' || exit 1
trusted_proxies: [127.0.0.1/32]
identity: [{ip: {}}]
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
EOF
  cat >"$tmp/haproxy.cfg" <<EOF
global
  maxconn 100
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:$hp_port
  option forwardfor
  default_backend be
backend be
  server fg 127.0.0.1:$fg_port
EOF
  haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$hp_port") 2>/dev/null && break
    sleep 0.05
  done
  for _ in 1 2; do
    [[ $(code "http://127.0.0.1:$hp_port/api/x") == 200 ]] || fail "an allowed request was not served"
  done
  for i in 1 2 3 4 5; do
    raw "$hp_port" 'POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-For\r\n\r\n3\r\nabc\r\n0\r\nX-Forwarded-For: 198.51.100.%s\r\nHost: evil\r\nX-Forwarded-Proto: https\r\n\r\n' "$i" >"$tmp/trailer.$i"
    grep -q '^HTTP/1.1 200' "$tmp/trailer.$i" && fail "a request with a trailer X-Forwarded-For was served: $(head -1 "$tmp/trailer.$i")"
  done
  n=$(acted_on '^[A-Z]+ /api/')
  [[ $n -eq 2 ]] || fail "the upstream acted on $n requests to /api/ (limit 2): $(cat "$tmp/upstream.log")"
  grep -qE 'evil|198\.51\.100' "$tmp/upstream.log" && fail "a trailer field reached the upstream: $(cat "$tmp/upstream.log")"
  # The same request without trailers is served (only the trailers are refused).
  raw "$hp_port" 'POST /api/y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' >"$tmp/plain"
  grep -q '^HTTP/1.1 429' "$tmp/plain" || fail "a chunked request over the limit was not answered 429: $(head -1 "$tmp/plain")"
  ;;

repeated)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}, {ip: {}}]
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
  - {name: trial, match: {path_prefix: /t/, header: {name: X-Tenant, value: trial}}, limit: 1, period: 1h}
EOF
  for i in 1 2 3 4 5 6; do
    curl -s -o /dev/null -H "X-API-Key: fresh-$i" -H 'X-API-Key: victim' \
      "http://127.0.0.1:$fg_port/api/x"
  done
  for i in 1 2 3; do
    curl -s -o /dev/null -H "X-API-Key: victim, fresh-$i" "http://127.0.0.1:$fg_port/api/x"
    curl -s -o /dev/null -H "X-API-Key: fresh-u$i" -H 'X_API_Key: victim' "http://127.0.0.1:$fg_port/api/x"
    curl -s -o /dev/null -H "X-API-Key: fresh-c$i" -H 'Connection: X-API-Key' "http://127.0.0.1:$fg_port/api/x"
    curl -s -o /dev/null -H "X-API-Key: fresh-h$i" -H 'Connection: Host' "http://127.0.0.1:$fg_port/api/x"
  done
  # Spelled with '_' alone: another field to floodgate (no key: the client's address instead; no
  # tenant: no policy), X-API-Key and X-Tenant to a CGI-style upstream.
  for i in 1 2 3; do
    curl -s -o /dev/null -H 'X_API_Key: victim' "http://127.0.0.1:$fg_port/api/x"
    curl -s -o /dev/null -H 'X_Tenant: trial' "http://127.0.0.1:$fg_port/t/x"
  done
  n=$(acted_on '^[A-Z]+ /(api|t)/')
  [[ $n -eq 0 ]] || fail "requests with a repeated, listed, dropped or '_'-spelled field floodgate reads reached the upstream ($n): $(cat "$tmp/upstream.log")"
  [[ $(code -H 'X-API-Key: victim' "http://127.0.0.1:$fg_port/api/x") == 200 ]] ||
    fail "a plain request was not served"
  ;;

host)
  start_vhost
  for h in api.example.com api.example.com API.example.com api.example.com. api.example.com:80 \
    Api.Example.Com.:443; do
    curl -s -o /dev/null -H 'X-API-Key: k' -H "Host: $h" "http://127.0.0.1:$fg_port/v/x"
  done
  curl -s -o /dev/null -H 'X-API-Key: k' --request-target 'http://API.example.com/v/x' "http://127.0.0.1:$fg_port/"
  curl -s -o /dev/null -H 'X-API-Key: k' --request-target 'http://u@api.example.com/v/x' "http://127.0.0.1:$fg_port/"
  n=$(acted_on '^[A-Z]+ /v/')
  [[ $n -eq 2 ]] || fail "the upstream acted on $n requests for api.example.com (limit 2): $(cat "$tmp/upstream.log")"
  grep -q 'host=api.example.com ' "$tmp/upstream.log" || fail "Host was not forwarded in canonical form"
  ;;

forwarded_host)
  spend_vhost
  # Host names another virtual host; the upstream acts on the one these name
  # (tests/fixtures/lenient_upstream.cc reads them as frameworks behind a proxy do).
  forwarded=(
    'X-Forwarded-Host: api.example.com' 'X-Forwarded-Host: API.Example.com.:443'
    'X-Forwarded-Host: other.example.com, api.example.com' 'X_Forwarded_Host: api.example.com'
    'Forwarded: host=api.example.com' 'Forwarded: for=192.0.2.1;host="api.example.com";proto=https'
    'Forwarded: HOST=Api.Example.Com' 'Forwarded: for=192.0.2.1;by="x,host=api.example.com"'
    # Quotes inside the host: the upstream drops every '"' (as Symfony's HeaderUtils does) and
    # acts on api.example.com, where a reader that stops at a quote finds "api".
    'Forwarded: host=api".example.com"' 'Forwarded: host=""api.example.com'
    'Forwarded: for=192.0.2.1;host=ap"i.example.com' 'Forwarded: host="api".example.com'
    'X-Forwarded-Host: api".example.com"' 'X-Forwarded-Host: other.example.com, ""api.example.com'
    # A parameter name quoted or escaped: host to the same upstream.
    'Forwarded: for=192.0.2.1;"host"=api.example.com' 'Forwarded: ho""st=api.example.com'
    'Forwarded: h\ost=api.example.com'
  )
  for h in "${forwarded[@]}"; do
    c=$(code -H 'X-API-Key: k' -H 'Host: other.example.com' -H "$h" "http://127.0.0.1:$fg_port/v/x")
    [[ $c == 429 || $c == 400 ]] || fail "Host: other.example.com with '$h' answered $c (want 429 or 400)"
  done
  c=$(code -H 'X-API-Key: k' -H 'Host: other.example.com' -H 'X-Forwarded-Host: other.example.com' \
    -H 'X-Forwarded-Host: api.example.com' "http://127.0.0.1:$fg_port/v/x")
  [[ $c == 429 || $c == 400 ]] || fail "a second X-Forwarded-Host field answered $c (want 429 or 400)"
  n=$(acted_on ' vhost=api\.example\.com$')
  [[ $n -eq 2 ]] || fail "the upstream acted on $n requests for api.example.com (limit 2): $(cat "$tmp/upstream.log")"
  # Another virtual host, by every name, is not counted.
  [[ $(code -H 'X-API-Key: k' -H 'Host: other.example.com' -H 'X-Forwarded-Host: other.example.com' \
    "http://127.0.0.1:$fg_port/v/x") == 200 ]] || fail "a request for another host was not served"
  ;;

host_syntax)
  spend_vhost
  # Hosts that are not host names, which a WHATWG URL parser reads as api.example.com
  # (tests/fixtures/lenient_upstream.cc); the forwarding fields beside Host: 127.0.0.1.
  hosts=(
    'Host: api.example.com/x' 'Host: api.example.com?x' 'Host: api.example.com#x'
    'Host: api.example.com\x' 'Host: api%2Eexample.com' $'Host: \xef\xbd\x81pi.example.com'
    'Host: api.example.com:80/x' 'Host: API.example.com./../x'
    'X-Forwarded-Host: api.example.com/x' 'X-Forwarded-Host: api%2eexample.com'
    'Forwarded: host="api.example.com?x"'
  )
  for h in "${hosts[@]}"; do
    c=$(code -H 'X-API-Key: k' -H "$h" "http://127.0.0.1:$fg_port/v/x")
    [[ $c == 429 || $c == 400 ]] || fail "'$h' answered $c (want 429 or 400)"
  done
  c=$(code -H 'X-API-Key: k' --request-target 'http://api%2Eexample.com/v/x' "http://127.0.0.1:$fg_port/")
  [[ $c == 429 || $c == 400 ]] || fail "http://api%2Eexample.com/v/x answered $c (want 429 or 400)"
  n=$(acted_on ' vhost=api\.example\.com$')
  [[ $n -eq 2 ]] || fail "the upstream acted on $n requests for api.example.com (limit 2): $(cat "$tmp/upstream.log")"
  # Host names, IP literals and ports are served.
  for h in 'other.example.com:8080' '[2001:db8::1]:8080' '192.0.2.1' 'a-b_c~d.example'; do
    [[ $(code -H 'X-API-Key: k' -H "Host: $h" "http://127.0.0.1:$fg_port/v/x") == 200 ]] ||
      fail "Host: $h was not served"
  done
  ;;

missing_host)
  start_upstream
  # A policy on the host that the upstream's own address names (upstream: http://127.0.0.1:…).
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: vhost, match: {path_prefix: /v/, header: {name: Host, value: 127.0.0.1}}, limit: 2, period: 1h}
EOF
  for _ in 1 2; do
    [[ $(code -H 'X-API-Key: k' -H 'Host: 127.0.0.1' "http://127.0.0.1:$fg_port/v/x") == 200 ]] ||
      fail "an allowed request was not served"
  done
  # No Host: HTTP/1.1 requires one (RFC 9112 §3.2); an HTTP/1.0 request may lack it, and must
  # not reach the upstream under the upstream's own name.
  for v in 1.1 1.1 1.0 1.0; do
    raw "$fg_port" "GET /v/x HTTP/$v\r\nX-API-Key: k\r\n\r\n" >"$tmp/nohost"
    grep -q '^HTTP/1.1 200' "$tmp/nohost" && [[ $v == 1.1 ]] &&
      fail "an HTTP/1.1 request without Host was served"
  done
  n=$(acted_on ' vhost=127\.0\.0\.1$')
  [[ $n -eq 2 ]] || fail "the upstream acted on $n requests for 127.0.0.1 (limit 2): $(cat "$tmp/upstream.log")"
  ;;

authorization)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: Authorization}]
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
EOF
  # Three clients, each spending its budget of 2 under its usual spelling, then trying others that
  # the upstream authenticates as the same credentials, read as Node.js or as Python servers read
  # them (tests/fixtures/lenient_upstream.cc: auth= and authpy=). bob:correct-horse is
  # "Ym9iOmNvcnJlY3QtaG9yc2U=", and the JWS is RFC 7515's HS256 example.
  jws=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk
  for a in 'Bearer tok-1' 'Bearer tok-1' 'Basic Ym9iOmNvcnJlY3QtaG9yc2U=' \
    'Basic Ym9iOmNvcnJlY3QtaG9yc2U=' "Bearer $jws" "Bearer $jws"; do
    [[ $(code -H "Authorization: $a" "http://127.0.0.1:$fg_port/api/x") == 200 ]] ||
      fail "an allowed request ($a) was not served"
  done
  spellings=(
    'bearer tok-1' 'BEARER tok-1' 'bEaReR tok-1' 'Bearer  tok-1' $'Bearer\ttok-1' $'Bearer \t tok-1'
    $'Bearer tok-1\xa0' $'Bearer \xa0tok-1' $'Bearer tok-1\x85' $'Bearer tok-1\xa0\x85\xa0'
    'basic Ym9iOmNvcnJlY3QtaG9yc2U=' 'Basic  Ym9iOmNvcnJlY3QtaG9yc2U=' 'Basic Ym9iOmNvcnJlY3QtaG9yc2U'
    'Basic Ym9iOmNvcnJlY3QtaG9yc2V=' 'Basic Ym9iOmNvcnJlY3QtaG9yc2U==' 'BASIC Ym9i!OmNvcnJlY3QtaG9yc2U='
    'Basic Ym9i-OmNvcnJlY3QtaG9yc2U=' 'Basic Ym9iOmNvcnJl_Y3QtaG9yc2U=' 'Basic Ym9i=OmNvcnJlY3QtaG9yc2U='
    'Basic Ym9i-_-OmNvcnJlY3QtaG9yc2U=' $'Basic Ym9iOmNvcnJlY3QtaG9yc2U=\xa0'
    "Bearer ${jws%k}l" "Bearer ${jws%k}m" "Bearer ${jws%k}n" "Bearer ${jws}=" "Bearer ${jws/-/+}"
    "Bearer ${jws/r_w/r/w}" "Bearer ${jws%k}!k" "Bearer ${jws/dBj/dB~j}"
    'Bearer tok-1 junk.' "Bearer $jws junk." "JWT ${jws%k}l" "${jws%k}l"
  )
  for a in "${spellings[@]}"; do
    c=$(code -H "Authorization: $a" "http://127.0.0.1:$fg_port/api/x")
    [[ $c == 429 || $c == 400 ]] || fail "Authorization: '$a' answered $c (want 429 or 400)"
  done
  for reader in auth authpy; do
    n=$(acted_on " $reader=bearer:tok-1 ")
    [[ $n -eq 2 ]] || fail "the upstream ($reader) acted on $n requests of tok-1 (limit 2): $(cat "$tmp/upstream.log")"
    n=$(acted_on " $reader=basic:bob:correct-horse ")
    [[ $n -eq 2 ]] || fail "the upstream ($reader) acted on $n requests of bob (limit 2): $(cat "$tmp/upstream.log")"
    n=$(acted_on " $reader=bearer:${jws%.*}\\.")
    [[ $n -eq 2 ]] || fail "the upstream ($reader) acted on $n requests of the JWS (limit 2): $(cat "$tmp/upstream.log")"
  done
  # Basic credentials that decode to nothing (the empty credentials to a Node.js server) are not
  # base64 as an encoder writes it: refused.
  for a in 'Basic !1' 'Basic !2' 'basic =Ym9iOmNvcnJlY3QtaG9yc2U=' 'Basic =x'; do
    c=$(code -H "Authorization: $a" "http://127.0.0.1:$fg_port/api/x")
    [[ $c == 400 ]] || fail "Authorization: '$a' answered $c (want 400)"
  done
  n=$(acted_on ' auth=basic: authpy=')
  [[ $n -eq 0 ]] || fail "the upstream acted on $n requests of empty Basic credentials: $(cat "$tmp/upstream.log")"
  # Other credentials are other clients.
  [[ $(code -H 'Authorization: Bearer tok-2' "http://127.0.0.1:$fg_port/api/x") == 200 ]] ||
    fail "another token was not served"
  ;;

get_body)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 1, period: 1h}
EOF
  [[ $(code -H 'X-API-Key: k' "http://127.0.0.1:$fg_port/api/x") == 200 ]] ||
    fail "the first request was not served"
  # A request to an unlimited path whose body is a request to the limited one. The upstream
  # expects no body on these methods and reads it as the next request on its connection
  # (tests/fixtures/lenient_upstream.cc).
  smuggled='GET /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: k\r\n\r\n'
  length=$(printf "$smuggled" | wc -c)
  for m in GET GET HEAD DELETE OPTIONS PURGE PROPFIND; do
    raw "$fg_port" "$m /pub HTTP/1.1\r\nHost: a\r\nX-API-Key: k\r\nContent-Length: $length\r\n\r\n$smuggled" >"$tmp/smuggle"
    grep -q '^HTTP/1.1 200' "$tmp/smuggle" || fail "$m /pub with a body was not served: $(head -1 "$tmp/smuggle")"
  done
  n=$(acted_on '^[A-Z]+ /api/')
  [[ $n -eq 1 ]] || fail "the upstream acted on $n requests to /api/ (limit 1): $(cat "$tmp/upstream.log")"
  # A POST's body is the upstream's to read: its connection is kept.
  [[ $(code -X POST -H 'X-API-Key: k' -d 'x=1' "http://127.0.0.1:$fg_port/pub") == 200 ]] ||
    fail "a POST with a body was not served"
  ;;

check_api)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{ip: {}}]
check_api: {limit: 3, period: 1h}
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
EOF
  # Two calls on the key an HTTP client of 127.0.0.1 has: its own namespace, its own budget.
  body='{"policy":"api","key":"ip:127.0.0.1"}'
  for _ in 1 2; do
    c=$(code -X POST -d "$body" "http://127.0.0.1:$fg_port/v1/check")
    [[ $c == 200 ]] || fail "/v1/check answered $c (want 200)"
  done
  c=$(code -X POST -d '{"policy":"api","key":"third"}' "http://127.0.0.1:$fg_port/v1/check")
  [[ $c == 200 ]] || fail "the 3rd /v1/check call answered $c (want 200)"
  c=$(code -X POST -H 'X-API-Key: rotated' -d '{"policy":"api","key":"fourth"}' "http://127.0.0.1:$fg_port/v1/check")
  [[ $c == 429 ]] || fail "the 4th /v1/check call answered $c (want 429: 3 per caller address)"
  c=$(code "http://127.0.0.1:$fg_port/api/x")
  [[ $c == 200 ]] || fail "/v1/check calls spent the HTTP client's budget ($c)"
  # A caller over its limit is answered without its body being read.
  raw "$fg_port" 'POST /v1/check HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n' >"$tmp/over"
  grep -q '^HTTP/1.1 429' "$tmp/over" || fail "an over-limit caller's unsent body was waited for: $(head -1 "$tmp/over")"
  kill "$fg_pid"
  wait "$fg_pid" 2>/dev/null
  # With admin_listen: only there.
  start_fg <<EOF || exit 1
admin_listen: 127.0.0.1:$admin_port
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
EOF
  # On the public listener /v1/check is then a path like any other: the upstream's.
  curl -s -X POST -d '{"policy":"api","key":"k"}' "http://127.0.0.1:$fg_port/v1/check" | grep -q allowed &&
    fail "/v1/check is served on the public listener although admin_listen is set"
  grep -q '^POST /v1/check ' "$tmp/upstream.log" || fail "/v1/check did not reach the upstream"
  [[ $(code -X POST -d '{"policy":"api","key":"k"}' "http://127.0.0.1:$admin_port/v1/check") == 200 ]] ||
    fail "/v1/check is not served on admin_listen"
  kill "$fg_pid"
  wait "$fg_pid" 2>/dev/null
  start_fg <<EOF || exit 1
admin_listen: 127.0.0.1:$admin_port
check_api: false
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
EOF
  [[ $(code -X POST -d '{"policy":"api","key":"k"}' "http://127.0.0.1:$admin_port/v1/check") == 404 ]] ||
    fail "/v1/check is served on admin_listen with check_api: false"
  curl -s -X POST -d '{"policy":"api","key":"k"}' "http://127.0.0.1:$fg_port/v1/check" | grep -q allowed &&
    fail "/v1/check is served on the public listener with check_api: false"
  ;;

body)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
server: {max_body_bytes: 1048576}
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 1, period: 1h}
EOF
  [[ $(code -H 'X-API-Key: k' "http://127.0.0.1:$fg_port/api/x") == 200 ]] || fail "first request not served"
  # The header section of a large upload, and nothing more: the answer comes at once.
  raw "$fg_port" 'POST /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: k\r\nContent-Length: 1000000\r\n\r\n' >"$tmp/wait"
  grep -q '^HTTP/1.1 429' "$tmp/wait" || fail "no 429 for an over-limit upload's header section: $(head -1 "$tmp/wait")"
  raw "$fg_port" 'POST /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: k\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n' >"$tmp/expect"
  head -1 "$tmp/expect" | grep -q '^HTTP/1.1 429' || fail "Expect: 100-continue over the limit got $(head -1 "$tmp/expect") (want 429)"
  grep -q ' 100 Continue' "$tmp/expect" && fail "Expect: 100-continue over the limit got a 100 Continue"
  # Allowed: the client that waits for 100 (in any case) gets it, then its answer.
  raw "$fg_port" 'POST /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: other\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n' >"$tmp/continue"
  grep -q '^HTTP/1.1 100 Continue' "$tmp/continue" || fail "an allowed Expect: 100-Continue got no 100: $(head -1 "$tmp/continue")"
  # 200 connections each sending 900 kB of a 1 MB body over the limit and holding on: nothing
  # is buffered (before: every connection held its body until the 429).
  head -c 900000 /dev/zero | tr '\0' 'a' >"$tmp/body"
  rss() { awk '/^VmRSS/ {print $2}' "/proc/$fg_pid/status"; }
  before=$(rss)
  uploads=()
  for i in $(seq 1 200); do
    { printf 'POST /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: k\r\nContent-Length: 1000000\r\n\r\n'; cat "$tmp/body"; sleep 4; } |
      timeout 6 socat - "TCP:127.0.0.1:$fg_port" >/dev/null 2>&1 &
    uploads+=($!)
  done
  sleep 3
  peak=$(rss)
  wait "${uploads[@]}" 2>/dev/null
  growth=$(((peak - before) / 1024))
  echo "RSS before ${before} kB, with 200 over-limit uploads in flight ${peak} kB (+${growth} MB)"
  [[ $growth -lt 64 ]] || fail "200 over-limit uploads of 900 kB grew RSS by ${growth} MB (buffered)"
  n=$(acted_on '^[A-Z]+ /api/')
  [[ $n -eq 1 ]] || fail "the upstream acted on $n requests (limit 1)"
  ;;

rotation)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}, {ip: {}}]
policies:
  - {name: per-key, match: {path_prefix: /api/}, limit: 100, period: 1h}
  - {name: per-ip, match: {path_prefix: /api/}, limit: 3, period: 1h, identity: [{ip: {}}]}
EOF
  for i in $(seq 1 10); do
    curl -s -o /dev/null -H "X-API-Key: invented-$i" "http://127.0.0.1:$fg_port/api/x"
  done
  n=$(acted_on '^[A-Z]+ /api/')
  [[ $n -eq 3 ]] || fail "rotating API keys reached the upstream $n times (per-IP limit 3)"
  ;;

access_log)
  start_upstream
  start_fg <<'EOF' || exit 1
access_log: true
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 5, period: 1h}
EOF
  curl -s -o /dev/null "http://127.0.0.1:$fg_port/api/x?api_key=SECRET-1a2b&page=2&Access_Token=SECRET-3c4d&API%5Fkey=SECRET-5e6f"
  curl -s -o /dev/null -g "http://127.0.0.1:$fg_port/api/x?api_key[]=SECRET-7&api.key=SECRET-8&access-token=SECRET-9&%20api_key=SECRET-10"
  curl -s -o /dev/null --request-target 'http://user:SECRET-11@h/api;x' "http://127.0.0.1:$fg_port/"
  sleep 0.5
  grep -q 'SECRET' "$tmp/fg.out" && fail "a query credential reached the access log: $(grep SECRET "$tmp/fg.out")"
  grep -q 'api_key=REDACTED&page=2' "$tmp/fg.out" || fail "the access log line is not the redacted target: $(cat "$tmp/fg.out")"
  ;;

flood)
  start_upstream
  start_fg <<'EOF' || exit 1
identity: [{header: X-API-Key}]
memory: {max_keys: 256}
policies:
  - {name: api, match: {path_prefix: /api/}, limit: 2, period: 1h}
EOF
  for _ in 1 2; do curl -s -o /dev/null -H 'X-API-Key: spent' "http://127.0.0.1:$fg_port/api/x"; done
  # Four times the store's capacity in fresh identities, each spending its budget.
  seq 1 1024 | xargs -P 8 -I{} sh -c "curl -s -o /dev/null -H 'X-API-Key: fresh-{}' \
    http://127.0.0.1:$fg_port/api/x; curl -s -o /dev/null -H 'X-API-Key: fresh-{}' \
    http://127.0.0.1:$fg_port/api/x"
  for _ in 1 2 3; do
    c=$(code -H 'X-API-Key: spent' "http://127.0.0.1:$fg_port/api/x")
    [[ $c == 429 ]] || fail "the spent client got $c after a flood of fresh identities (want 429)"
  done
  # No newcomer got through unlimited either (on_store_error is allow here): the upstream acted
  # on 2 of the spent client's and on at most 2 of each fresh identity's, and only on those the
  # store held.
  n=$(acted_on '^[A-Z]+ /api/')
  refused=$(curl -s "http://127.0.0.1:$fg_port/metrics" | awk '/^floodgate_memory_store_refusals_total\{store="store"\}/ {print $2}')
  echo "upstream acted on $n of 2050 requests; the store refused ${refused:-?} newcomers"
  [[ ${refused:-0} -gt 0 ]] || fail "no refusal counted in /metrics"
  ((n <= 2 + 2 * 256)) || fail "the upstream acted on $n requests: newcomers got through a full store"
  [[ $(code -H 'X-API-Key: brand-new' "http://127.0.0.1:$fg_port/api/x") == 503 ]] ||
    fail "a newcomer to a full store was not answered 503"
  ;;

*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac

if [[ $failures -gt 0 ]]; then
  echo "evasion.$case_name: $failures failure(s)" >&2
  exit 1
fi
echo "evasion.$case_name: ok"
