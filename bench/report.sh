#!/usr/bin/env bash
# report.sh — `make bench-report`: floodgate side by side with the NestJS stack it replaces, in
# one run on this machine, with the same load generator for everyone; writes docs/benchmarks.md
# (the generated part) and docs/benchmarks.png.
#
#   bench/report.sh
#
# What runs (every server on its own free loopback port, all started before the first run and
# kept up, so that every configuration is measured under the same background):
#   nest-*     the NestJS 11 app of PEERS (../shared/peers, copied to build/bench-report/peers and
#              built there with `npm ci` + `tsc`): @nestjs/throttler with its Redis storage,
#              rate-limiter-flexible, or a guard running the seed's Lua token bucket; Express or
#              Fastify adapter. Two processes per variant: `direct` loads the first, `lb` loads
#              HAProxy in front of both.
#   fg-*       floodgate serve (FLOODGATE) with the same limit (100 per 60 s per X-API-Key, token
#              bucket): on one Redis, on a 3-master Redis Cluster, on its memory store (one
#              instance; fg-memory-t1: with one server thread), and with no policy at all. `direct`
#              loads one process with two server threads (unless said otherwise); `lb` loads
#              HAProxy in front of two more processes, each with half the machine's CPUs as
#              threads (one on 2 CPUs): two instances on one host are sized so that their threads
#              add up to its CPUs (docs/benchmarks.md, "Sizing behind HAProxy").
#   nginx      nginx returning a static 200 (2 workers, no access log): the HTTP ceiling. nginx-lb:
#              two nginx processes of 1 worker each behind the same HAProxy, the ceiling of any
#              server in the lb topology (the targets behind HAProxy are judged against it).
#   nginx-lua  nginx keeping the same limit fleet-wide in the one Redis, as OpenResty and Kong's
#              redis policy do: ngx_lua runs the seed's token_bucket.lua (EVALSHA) for every
#              request (2 workers; nginx-lua-lb: two processes of 1 worker behind HAProxy).
#   nginx-limit-req  nginx enforcing the same limit itself, in one worker (no access log):
#              limit_req_zone $http_x_api_key rate=100r/m, limit_req burst=100 nodelay, 429 beyond,
#              beside fg-memory-t1 (one thread): one core's worth of rate limiting each. The 200 is
#              empty_gif, a content handler: `return 200` would answer in the rewrite phase, before
#              limit_req runs, and never limit anything.
#   nginx-limit-req-fg  the same, answering floodgate's answers: its 200 and 429 (status,
#              rate-limit fields, content type, body) as fg-memory-t1 answers them, written into
#              nginx's configuration with their values fixed. A client's cost per answer grows with
#              its fields and bytes (wrk's too, on the same CPUs); beside nginx-limit-req, this
#              row shows how much of a difference between the two servers is the answer's size.
#   redis-benchmark  floodgate's Redis function (FCALL fg_decide_v4, the same policy) with 50
#              clients, -P 16 and -P 1: the ceiling of one Redis for the decision; the seed's
#              token_bucket.lua (EVALSHA) beside it for reference.
# Load: wrk -t WRK_THREADS -c CONNECTIONS -d DURATION with bench/wrk/keys.lua (an X-API-Key out
# of KEYS keys; a fresh key prefix per run), ROUNDS rounds alternating every configuration; then
# the same with HOT_KEYS keys (many 429s) for the HOT configurations. The Redis stores are emptied
# (FLUSHALL) before every run.
# Then bench/accuracy.sh (ACCURACY=1) measures the accuracy section, with nothing else running.
#
# Environment (defaults in brackets):
#   DURATION [10s]  CONNECTIONS [50]  WRK_THREADS [2]  ROUNDS [5]  KEYS [10000]  HOT_KEYS [50]
#   CONFIGS  [every configuration below, in this order]   HOT [the configurations marked hot]
#   FLOODGATE [build/release/floodgate]  PEERS [../shared/peers]  ACCURACY [1]
#   PAIR_THREADS [half the CPUs, at least 1]  server threads of each floodgate process behind HAProxy
#   OUT [docs/benchmarks.md]  CHART [docs/benchmarks.png]  KEEP [unset: the raw runs are deleted]
# Exit 1 when a server does not start, a run fails, or a floodgate run answers anything but
# 200/429. Every process it starts is stopped by PID when it exits.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
FLOODGATE=${FLOODGATE:-$root/build/release/floodgate}
PEERS=${PEERS:-$root/../shared/peers}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-2}
ROUNDS=${ROUNDS:-5}
KEYS=${KEYS:-10000}
HOT_KEYS=${HOT_KEYS:-50}
ACCURACY=${ACCURACY:-1}
OUT=${OUT:-$root/docs/benchmarks.md}
CHART=${CHART:-$root/docs/benchmarks.png}
LIMIT=100
PERIOD_S=60
all_configs="nest-express-throttler-direct nest-express-throttler-lb nest-express-flexible-direct
  nest-express-lua-direct nest-express-lua-lb nest-fastify-throttler-direct nest-fastify-throttler-lb
  nest-fastify-lua-direct nest-express-throttler-cluster-direct
  fg-redis-direct fg-redis-lb fg-cluster-direct fg-cluster-lb fg-memory-direct
  fg-memory-t1-direct fg-none-direct nginx-direct nginx-lb nginx-limit-req-direct
  nginx-limit-req-fg-direct nginx-lua-direct nginx-lua-lb"
CONFIGS=${CONFIGS:-$all_configs}
HOT=${HOT:-nest-express-throttler-direct nest-fastify-throttler-direct nest-express-lua-direct
  fg-redis-direct fg-redis-nocache-direct fg-cluster-direct fg-memory-direct fg-memory-t1-direct
  nginx-limit-req-direct nginx-limit-req-fg-direct nginx-lua-direct}

log() { printf '[%(%H:%M:%S)T] report: %s\n' -1 "$*" >&2; }
die() { log "$*"; exit 1; }

((ROUNDS >= 2)) || die "ROUNDS must be at least 2 (so that drift shows)"
[[ -x $FLOODGATE ]] || die "$FLOODGATE is not built (make build)"
[[ -d $PEERS/nest-throttler ]] || die "PEERS=$PEERS does not hold the NestJS peers (nest-throttler/)"
for tool in wrk curl python3 node npm redis-server redis-cli redis-benchmark haproxy gnuplot; do
  command -v "$tool" >/dev/null || die "$tool is not installed (make deps)"
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx_bin ]] || die "nginx is not installed (make deps)"
nginx_modules=/usr/lib/nginx/modules
[[ -f $nginx_modules/ngx_http_lua_module.so && -f /usr/share/lua/5.1/nginx/redis.lua ]] ||
  die "nginx's Lua module or its Redis client is missing (make deps)"

work=$(mktemp -d /tmp/fg-report-XXXXXX)
pids=()         # every background process started here, stopped by PID on exit
cluster_dir=""
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $cluster_dir ]]; then "$root/scripts/redis-cluster.sh" stop "$cluster_dir" || true; fi
  if [[ -n ${KEEP:-} ]]; then log "raw runs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port, or with N > 1 the first of N consecutive free ports, below the ephemeral
# range (outgoing connections cannot take it meanwhile). Ports handed out are not handed out again.
taken=" "
free_port() {
  local p
  while :; do
    p=$(python3 - "${1:-1}" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(500):
    base = random.randint(10000, low - n - 1)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", p))
        print(base); sys.exit(0)
    except OSError:
        pass
    finally:
        for s in socks: s.close()
sys.exit("no block of %d free ports" % n)
EOF
    )
    [[ $taken == *" $p "* ]] || break
  done
  local i
  for ((i = 0; i < ${1:-1}; i++)); do taken+="$((p + i)) "; done
  echo "$p"
}

wait_http() {  # URL PID: at most 30 s for a 200
  local url=$1 pid=$2
  for _ in $(seq 300); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "the server for $url exited (logs in $work)"
    sleep 0.1
  done
  die "$url did not answer 200 within 30 s"
}

# ---- the peers: a private copy, dependencies from npm, compiled with tsc --------------------

peers=$root/build/bench-report/peers
mkdir -p "$peers"
# Refresh the sources, keep node_modules (npm ci runs again only when the lock file changes).
(cd "$PEERS" && tar cf - --exclude=node_modules --exclude=dist --exclude=results .) |
  (cd "$peers" && tar xf - && chmod -R u+w .)
nest=$peers/nest-throttler
if ! cmp -s "$nest/package-lock.json" "$nest/node_modules/.package-lock.json.floodgate" 2>/dev/null; then
  log "npm ci in $nest"
  (cd "$nest" && npm ci --no-audit --no-fund >"$work/npm.log" 2>&1) ||
    die "npm ci failed: $(tail -5 "$work/npm.log")"
  cp "$nest/package-lock.json" "$nest/node_modules/.package-lock.json.floodgate"
fi
log "compiling the NestJS app (tsc)"
(cd "$nest" && rm -rf dist && npx tsc -p tsconfig.json) || die "tsc failed"

# ---- stores ---------------------------------------------------------------------------------

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --daemonize no --logfile "$work/redis.log" &
pids+=($!)
redis_pid=$!
for _ in $(seq 100); do
  [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
  sleep 0.05
done
[[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] || die "redis-server did not start"

cluster_dir=$work/cluster
REDIS_CLUSTER_REPLICAS=0 "$root/scripts/redis-cluster.sh" start "$cluster_dir" "$(free_port 6)" \
  >/dev/null || die "the Redis Cluster did not start"
cluster_url=$("$root/scripts/redis-cluster.sh" url "$cluster_dir")   # redis-cluster://a,b,c
cluster_nodes=${cluster_url#redis-cluster://}
cluster_pids=$(cat "$cluster_dir"/*.pid | tr '\n' ' ')
cluster_ports=$(tr ',' '\n' <<<"$cluster_nodes" | sed 's/.*://' | tr '\n' ' ')

flush_stores() {
  local p
  redis-cli -p "$redis_port" FLUSHALL >/dev/null
  for p in $cluster_ports; do redis-cli -p "$p" FLUSHALL >/dev/null; done
}

# ---- servers --------------------------------------------------------------------------------

declare -A url=()        # configuration -> the URL wrk loads
declare -A app_pids=()   # configuration -> the PIDs whose CPU time counts as the server's
declare -A store_pids=() # configuration -> the redis-server PIDs it uses
declare -A group_ports=() group_pids=()
lb_backends=()           # "frontend_port name port1 port2 check_path"

start_nest() {  # GROUP MODE ADAPTER STORE(single|cluster): two processes
  local group=$1 mode=$2 adapter=$3 store=$4 i port redis_url cluster=0 ports="" ps=""
  if [[ $store == cluster ]]; then redis_url=$cluster_nodes; cluster=1
  else redis_url=redis://127.0.0.1:$redis_port; fi
  for i in 1 2; do
    port=$(free_port)
    PORT=$port HOST=127.0.0.1 RL_MODE=$mode RL_LIMIT=$LIMIT RL_WINDOW_S=$PERIOD_S \
      HTTP_ADAPTER=$adapter REDIS_URL=$redis_url REDIS_CLUSTER=$cluster NODE_ENV=production \
      node "$nest/dist/main.js" >"$work/$group-$i.log" 2>&1 &
    pids+=($!)
    ports+="$port "; ps+="$! "
  done
  for i in 1 2; do
    port=$(cut -d' ' -f$i <<<"$ports")
    wait_http "http://127.0.0.1:$port/health" "$(cut -d' ' -f$i <<<"$ps")"
  done
  group_ports[$group]=$ports
  group_pids[$group]=$ps
}

start_floodgate() {  # GROUP STORE_URL POLICY(yes|no) INSTANCES [THREADS [DENY_CACHE(true|false)]]
  local group=$1 store=$2 policy=$3 n=$4 threads=${5:-2} deny_cache=${6:-true} i port ports="" ps=""
  local prefix=/api/
  [[ $policy == yes ]] || prefix=/never-requested/
  for ((i = 1; i <= n; i++)); do
    port=$(free_port)
    cat >"$work/$group-$i.yaml" <<EOF
listen: 127.0.0.1:$port
threads: $threads
store: $store
store_timeout: 100ms
deny_cache: $deny_cache
identity:
  - header: X-API-Key
  - ip: {}
policies:
  - name: per-minute
    match: {path_prefix: $prefix}
    algorithm: token_bucket
    limit: $LIMIT
    period: ${PERIOD_S}s
EOF
    "$FLOODGATE" serve --config "$work/$group-$i.yaml" >"$work/$group-$i.log" 2>&1 &
    pids+=($!)
    ports+="$port "; ps+="$! "
  done
  for ((i = 1; i <= n; i++)); do
    wait_http "http://127.0.0.1:$(cut -d' ' -f$i <<<"$ports")/readyz" "$(cut -d' ' -f$i <<<"$ps")"
  done
  group_ports[$group]=$ports
  group_pids[$group]=$ps
}

# floodgate's 200 and 429 at 127.0.0.1:PORT (the policy above, one identity spent within one
# connection) as two nginx named locations, @allowed and @limited, answering the same status,
# rate-limit fields, content type and body (the values of those two answers, fixed).
floodgate_answers_for_nginx() {  # PORT
  python3 - "$1" "$LIMIT" <<'EOF'
import socket, sys
port, limit = int(sys.argv[1]), int(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
reader = sock.makefile("rb")
request = b"GET /api/resource HTTP/1.1\r\nHost: bench\r\nX-API-Key: nginx-answers\r\n\r\n"
answers = {}
for _ in range(limit + 1):
    sock.sendall(request)
    status = int(reader.readline().split()[1])
    fields = []
    while (line := reader.readline().rstrip(b"\r\n")):
        name, _, value = line.decode().partition(":")
        fields.append((name, value.strip()))
    length = next(int(v) for n, v in fields if n.lower() == "content-length")
    answers[status] = (fields, reader.read(length).decode())
if set(answers) != {200, 429}:
    sys.exit(f"floodgate answered {sorted(answers)}, not 200 then 429")
# nginx writes these itself (Content-Type from default_type).
own = {"server", "date", "connection", "content-length", "content-type"}
for status, where in ((200, "@allowed"), (429, "@limited")):
    fields, body = answers[status]
    for text in [v for _, v in fields] + [body]:
        if "'" in text or "$" in text or "\\" in text:
            sys.exit(f"an answer nginx cannot repeat in a quoted string: {text!r}")
    print(f"    location {where} {{")
    for name, value in fields:
        if name.lower() not in own:
            print(f"      add_header {name} '{value}' always;")
    ctype = next(v for n, v in fields if n.lower() == "content-type")
    print(f"      default_type '{ctype}';")
    print(f"      return {status} '{body}';")
    print("    }")
EOF
}

start_nginx() {  # GROUP WORKERS LIMIT(no|limit-req|limit-req-fg|lua): one more nginx process in GROUP
  local group=$1 workers=$2 limit=$3 port dir zone="" location modules=""
  port=$(free_port)
  dir=$work/$group-$port
  mkdir -p "$dir"
  location="location / { return 200 '{\"ok\":true}'; }"
  if [[ $limit == lua ]]; then
    # A fleet-wide limit the way OpenResty and Kong's redis policy keep one: every request runs
    # the seed's token bucket (token_bucket.lua, as the NestJS Lua guard does) in the shared Redis
    # through ngx_lua's cosocket client, one EVALSHA per request on a pooled connection; answered
    # 429 with Retry-After when it denies, 503 when Redis does not answer. Identity as floodgate's:
    # the X-API-Key, else the peer address.
    modules="load_module $nginx_modules/ndk_http_module.so;
load_module $nginx_modules/ngx_http_lua_module.so;"
    zone="lua_package_path '/usr/share/lua/5.1/?.lua;;';
  init_by_lua_block {
    local f = assert(io.open('$peers/token_bucket.lua'))
    tb_script = f:read('*a')
    f:close()
    tb_sha = (ngx.sha1_bin(tb_script):gsub('.', function(c) return string.format('%02x', c:byte()) end))
  }"
    location="location = /health { return 200; }
    location / {
      content_by_lua_block {
        local r = require('nginx.redis'):new()
        r:set_timeout(100)
        local ok = r:connect('127.0.0.1', $redis_port)
        if not ok then return ngx.exit(503) end
        local key = 'rl:tb:' .. (ngx.var.http_x_api_key or ngx.var.remote_addr)
        local res, err = r:evalsha(tb_sha, 1, key, $LIMIT, $LIMIT / $PERIOD_S, 1)
        if not res and err and err:find('NOSCRIPT', 1, true) then
          res, err = r:eval(tb_script, 1, key, $LIMIT, $LIMIT / $PERIOD_S, 1)
        end
        if not res then r:close(); return ngx.exit(503) end
        r:set_keepalive(10000, 64)
        ngx.header['X-RateLimit-Limit'] = $LIMIT
        ngx.header['X-RateLimit-Remaining'] = res[2]
        ngx.header['X-RateLimit-Reset'] = math.ceil(res[4] / 1000)
        if res[1] == 1 then
          ngx.print('{\"ok\":true}')
        else
          ngx.status = 429
          ngx.header['Retry-After'] = math.ceil(res[3] / 1000)
          ngx.print('{\"error\":\"too many requests\"}')
        end
      }
    }"
  elif [[ $limit == limit-req* ]]; then
    # The policy of the floodgate configurations, as nginx states it. Each denial is logged at
    # info, below the error log's level: floodgate does not log denials one by one, and at error
    # (nginx's default) each would cost a write.
    zone="limit_req_zone \$http_x_api_key zone=fg:10m rate=$((LIMIT * 60 / PERIOD_S))r/m;
  limit_req_status 429;
  limit_req_log_level info;"
    # limit_req runs in the preaccess phase, after `return` (rewrite phase) would have answered:
    # the 200 comes from a content handler instead (empty_gif: no file is read).
    location="location / { limit_req zone=fg burst=$LIMIT nodelay; empty_gif; }"
    if [[ $limit == limit-req-fg ]]; then
      # Answering what floodgate answers (its rate-limit fields and bodies, taken from
      # fg-memory-t1 below), so that the two differ in the server alone. The answers are written
      # in named locations: try_files finds no file and hands over to @allowed after limit_req
      # has run; a 429 goes to @limited through error_page. The root does not exist: a lookup
      # that failed for a missing file is what open_file_cache keeps, so no file is looked up per
      # request (one the worker may not read would be logged each time).
      zone+="
  open_file_cache max=16 inactive=3600s;
  open_file_cache_valid 3600s;
  open_file_cache_errors on;"
      start_group fg-memory-t1
      location="root /nonexistent;
    location / {
      limit_req zone=fg burst=$LIMIT nodelay;
      error_page 429 = @limited;
      try_files /none @allowed;
    }
$(floodgate_answers_for_nginx "$(cut -d' ' -f1 <<<"${group_ports[fg-memory-t1]}")")"
    fi
  fi
  cat >"$dir/nginx.conf" <<EOF
$modules
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  $zone
  server {
    listen 127.0.0.1:$port;
    $location
  }
}
EOF
  "$nginx_bin" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" -g 'daemon off;' &
  pids+=($!)
  local master=$!
  wait_http "http://127.0.0.1:$port/api/resource" $master
  group_ports[$group]+="$port "
  group_pids[$group]+="$master $(pgrep -P "$master" | tr '\n' ' ')"
}

# The group a configuration runs on, and how to start it.
group_of() {  # CONFIG -> GROUP (floodgate's lb configurations run on a pair of their own)
  local c=${1%-direct}
  if [[ $c == fg-*-lb || $c == nginx*-lb ]]; then echo "${c%-lb}-pair"; else echo "${c%-lb}"; fi
}
PAIR_THREADS=${PAIR_THREADS:-$(($(nproc) / 2 > 0 ? $(nproc) / 2 : 1))}
start_group() {
  local g=$1
  [[ -n ${group_ports[$g]:-} ]] && return 0
  log "starting $g"
  case $g in
    nest-*-cluster)
      local m=${g#nest-}; m=${m%-cluster}
      start_nest "$g" "${m#*-}" "${m%%-*}" cluster
      ;;
    nest-*)
      local m=${g#nest-}
      start_nest "$g" "${m#*-}" "${m%%-*}" single
      ;;
    fg-redis) start_floodgate "$g" "redis://127.0.0.1:$redis_port" yes 1 ;;
    fg-redis-pair) start_floodgate "$g" "redis://127.0.0.1:$redis_port" yes 2 "$PAIR_THREADS" ;;
    fg-redis-nocache) start_floodgate "$g" "redis://127.0.0.1:$redis_port" yes 1 2 false ;;
    fg-cluster) start_floodgate "$g" "$cluster_url" yes 1 ;;
    fg-cluster-pair) start_floodgate "$g" "$cluster_url" yes 2 "$PAIR_THREADS" ;;
    fg-memory) start_floodgate "$g" memory:// yes 1 ;;
    fg-memory-t1) start_floodgate "$g" memory:// yes 1 1 ;;
    fg-none) start_floodgate "$g" memory:// no 1 ;;
    nginx) start_nginx "$g" 2 no ;;
    nginx-pair) start_nginx "$g" 1 no && start_nginx "$g" 1 no ;;
    nginx-limit-req) start_nginx "$g" 1 limit-req ;;
    nginx-limit-req-fg) start_nginx "$g" 1 limit-req-fg ;;
    nginx-lua) start_nginx "$g" 2 lua ;;
    nginx-lua-pair) start_nginx "$g" 1 lua && start_nginx "$g" 1 lua ;;
    *) die "unknown configuration group $g" ;;
  esac
}

configs=()
for c in $CONFIGS; do
  [[ $c == *-direct || $c == *-lb ]] || die "configuration $c must end in -direct or -lb"
  configs+=("$c")
  start_group "$(group_of "$c")"
done
hot=()
for c in $HOT; do [[ " ${configs[*]} " == *" $c "* ]] && hot+=("$c"); done

# One HAProxy for every lb configuration: a frontend each, round robin over the group's two
# processes, health-checked, keep-alive both sides (as deploy/local/stack.sh).
haproxy_pid=""
haproxy_cfg=$work/haproxy.cfg
cat >"$haproxy_cfg" <<EOF
global
    maxconn 4000
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    option http-keep-alive
    option forwardfor
EOF
for c in "${configs[@]}"; do
  g=$(group_of "$c")
  if [[ $c == *-lb ]]; then
    read -r p1 p2 <<<"${group_ports[$g]}"
    [[ -n ${p2:-} ]] || die "$c: its group has one process"
    fp=$(free_port)
    check=/health
    [[ $g == fg-* ]] && check=/readyz
    cat >>"$haproxy_cfg" <<EOF
frontend fe_$c
    bind 127.0.0.1:$fp
    default_backend be_$c
backend be_$c
    balance roundrobin
    option httpchk GET $check
    server a 127.0.0.1:$p1 check inter 1s fall 2 rise 1
    server b 127.0.0.1:$p2 check inter 1s fall 2 rise 1
EOF
    url[$c]=http://127.0.0.1:$fp/api/resource
    app_pids[$c]=${group_pids[$g]}
  else
    url[$c]=http://127.0.0.1:$(cut -d' ' -f1 <<<"${group_ports[$g]}")/api/resource
    if [[ $g == nginx* ]]; then app_pids[$c]=${group_pids[$g]}
    else app_pids[$c]=$(cut -d' ' -f1 <<<"${group_pids[$g]}"); fi
  fi
  case $g in
    *-cluster | *-cluster-pair) store_pids[$c]=$cluster_pids ;;
    nest-* | fg-redis | fg-redis-pair | fg-redis-nocache | nginx-lua | nginx-lua-pair)
      store_pids[$c]=$redis_pid ;;
    *) store_pids[$c]="" ;;
  esac
done
if grep -q '^frontend' "$haproxy_cfg"; then
  haproxy -c -q -f "$haproxy_cfg" || die "haproxy rejects $haproxy_cfg"
  haproxy -db -f "$haproxy_cfg" >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  haproxy_pid=$!
  for c in "${configs[@]}"; do
    [[ $c == *-lb ]] || continue
    wait_http "${url[$c]%/api/resource}/api/resource" "$haproxy_pid"
  done
  # Both backends of every frontend up: checks every 1 s, rise 1.
  sleep 3
fi

# ---- measurements ---------------------------------------------------------------------------

clk_tck=$(getconf CLK_TCK)
cpu_ticks() {  # PIDS... -> user + system ticks so far
  local pid total=0 stat fields
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
host_ticks() { awk '/^cpu /{ b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }

results=$work/results.tsv
printf 'config\tworkload\tround\trequests\tduration_us\tp50_us\tp99_us\tp999_us\tmax_us\ts200\ts429\tsother\terrors\tapp_ticks\tstore_ticks\tlb_ticks\thost_busy_ticks\thost_total_ticks\tclient_us\tbytes\n' >"$results"

# The CPU time (user + system, µs) of the children waited for, as `times` wrote it in FILE (its
# second line: "0m1.234s 0m0.567s"). `times` runs in the measuring shell itself (a subshell's
# would count only its own children); written just before and after wrk, the difference is wrk's.
children_us() {  # FILE
  sed -n 2p "$1" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] } printf "%.0f", t * 1e6 }'
}

run_wrk() {  # CONFIG WORKLOAD(many|hot) ROUND [record]
  local c=$1 w=$2 r=$3 nkeys=$KEYS out=$work/wrk-$1-$2-$3.txt
  [[ $w == hot ]] && nkeys=$HOT_KEYS
  local lbp=""
  [[ $c == *-lb ]] && lbp=$haproxy_pid
  flush_stores
  # shellcheck disable=SC2086 # lists of PIDs
  local a0 s0 l0 hb0 ht0 a1 s1 l1 hb1 ht1
  a0=$(cpu_ticks ${app_pids[$c]}); s0=$(cpu_ticks ${store_pids[$c]}); l0=$(cpu_ticks $lbp)
  read -r hb0 ht0 < <(host_ticks)
  times >"$work/times.0"
  timeout 120 wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 5s --latency \
    -s "$root/bench/wrk/keys.lua" "${url[$c]}" -- "$nkeys" "$c-$w-$r-$RANDOM" >"$out" 2>&1 || true
  times >"$work/times.1"
  # shellcheck disable=SC2086
  a1=$(cpu_ticks ${app_pids[$c]}); s1=$(cpu_ticks ${store_pids[$c]}); l1=$(cpu_ticks $lbp)
  read -r hb1 ht1 < <(host_ticks)
  local line
  line=$(grep '^wrk-result ' "$out") || die "$c: wrk gave no result: $(tail -3 "$out")"
  local requests duration_us p50_us p99_us p999_us max_us s200 s429 sother errors bytes
  eval "$(sed 's/^wrk-result //; s/ /\n/g' <<<"$line" | grep -E '^[a-z0-9_]+=[0-9]+$')"
  local client_us=$(($(children_us "$work/times.1") - $(children_us "$work/times.0")))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$w" \
    "$r" "$requests" "$duration_us" "$p50_us" "$p99_us" "$p999_us" "$max_us" "$s200" "$s429" \
    "$sother" "$errors" $((a1 - a0)) $((s1 - s0)) $((l1 - l0)) $((hb1 - hb0)) $((ht1 - ht0)) \
    "$client_us" "$bytes" >>"$results"
  log "$w round $r $c: $((requests * 1000000 / (duration_us > 0 ? duration_us : 1))) req/s," \
    "p99 $((p99_us / 1000)).$(printf '%03d' $((p99_us % 1000))) ms, 200=$s200 429=$s429 other=$sother"
  if [[ $c == fg-* ]] && ((sother > 0 || errors > 0)); then
    die "$c answered $sother responses other than 200/429 ($errors socket errors)"
  fi
}

# Warm-up, unrecorded: JIT compilation of the Node apps, connections to the stores.
log "warm-up (3 s per configuration)"
for c in "${configs[@]}"; do
  timeout 30 wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d3s -s "$root/bench/wrk/keys.lua" "${url[$c]}" \
    -- "$KEYS" "warm-$c" >/dev/null 2>&1 || true
done

# The store ceilings (redis-benchmark), on the same single Redis, before the HTTP runs.
ceiling=$work/ceiling.tsv
printf 'script\tclients\tpipeline\tops_per_s\tp50_ms\tp99_ms\n' >"$ceiling"
redis-cli -p "$redis_port" -x FUNCTION LOAD REPLACE <"$root/src/store/redis/lua/decide.lua" >/dev/null
tb_sha=$(redis-cli -p "$redis_port" SCRIPT LOAD "$(cat "$peers/token_bucket.lua")")
# floodgate's decision for the policy above: one item (m 1) of one policy (p 1): token bucket
# (1), not shadow, burst 100, unit 600000, rate 1 (core::bucket_scale of 100 per 60 s), then the
# item: one charge of policy 1, cost 1; "" = Redis TIME. The same arguments the store sends
# (bench/redis_ceiling.sh checks them against the C++ side).
fcall=(FCALL fg_decide_v4 1 "fg:{__rand_int__}:per-minute" "" 1 1 1 0 100 600000 1 1 1 1)
evalsha=(EVALSHA "$tb_sha" 1 "tb:__rand_int__" 100 1.6666667 1)
[[ $(redis-cli -p "$redis_port" "${fcall[@]/__rand_int__/probe}" | sed -n 2p) == 1 ]] ||
  die "FCALL fg_decide_v4 did not allow its first request"
bench_redis() {  # NAME CLIENTS PIPELINE N COMMAND...
  local name=$1 c=$2 p=$3 n=$4 line
  shift 4
  flush_stores
  line=$(timeout 60 redis-benchmark -p "$redis_port" -c "$c" -P "$p" -n "$n" -r 10000 --csv "$@" \
    2>/dev/null | grep '^"' | grep -v '^"test"' | tail -1) || die "redis-benchmark $name failed"
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  awk -F'","' -v s="$name" -v c="$c" -v p="$p" '{ printf "%s\t%s\t%s\t%.0f\t%s\t%s\n", s, c, p, $2, $5, $7 }' \
    <<<"$line" >>"$ceiling"
  log "redis-benchmark $name -c $c -P $p: $(tail -1 "$ceiling" | cut -f4) ops/s"
}
for r in $(seq "$ROUNDS"); do
  bench_redis "floodgate FCALL fg_decide_v4" 50 16 200000 "${fcall[@]}"
  bench_redis "floodgate FCALL fg_decide_v4" 50 1 50000 "${fcall[@]}"
  bench_redis "seed token_bucket.lua EVALSHA" 50 16 200000 "${evalsha[@]}"
done
flush_stores
# Redis CPU per decision, seed against the library, on a redis-server of its own.
log "bench/redis_cpu.sh"
"$root/bench/redis_cpu.sh" 200000 >"$work/redis-cpu.txt" 2>>"$work/redis-cpu.log" ||
  die "bench/redis_cpu.sh failed: $(tail -3 "$work/redis-cpu.log")"

for r in $(seq "$ROUNDS"); do
  for c in "${configs[@]}"; do run_wrk "$c" many "$r"; done
done
for r in $(seq "$ROUNDS"); do
  for c in "${hot[@]}"; do run_wrk "$c" hot "$r"; done
done

# Versions and the machine, for the report.
{
  echo "date=$(date -u '+%F %H:%M UTC')"
  echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "command=DURATION=$DURATION CONNECTIONS=$CONNECTIONS WRK_THREADS=$WRK_THREADS ROUNDS=$ROUNDS KEYS=$KEYS HOT_KEYS=$HOT_KEYS ACCURACY=$ACCURACY bench/report.sh"
  echo "cpus=$(nproc)"
  echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "debian=$(cat /etc/debian_version)"
  echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "floodgate=$("$FLOODGATE" --version)"
  echo "compiler=$(g++ --version | head -1)"
  echo "redis=$(redis-server --version | awk '{ print $3 }' | sed 's/v=//')"
  echo "haproxy=$(haproxy -v | head -1 | awk '{ print $3 }')"
  echo "nginx=$("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///')"
  echo "wrk=$(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
  echo "node=$(node --version)"
  for p in @nestjs/core @nestjs/platform-express @nestjs/platform-fastify @nestjs/throttler \
    @nest-lab/throttler-storage-redis rate-limiter-flexible ioredis express fastify; do
    echo "npm:$p=$(node -p "require('$nest/node_modules/$p/package.json').version" 2>/dev/null)"
  done
} >"$work/env.txt"

# Stop everything before the accuracy runs, which start their own stacks.
log "stopping the servers"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
pids=()
"$root/scripts/redis-cluster.sh" stop "$cluster_dir" || true
cluster_dir=""

accuracy_md=$work/accuracy.md
if [[ $ACCURACY == 1 ]]; then
  log "accuracy (bench/accuracy.sh)"
  # accuracy.sh exits 1 after writing its report when a row is beyond a guaranteed allowance:
  # the report is rendered all the same, and this script then exits 1 too.
  FLOODGATE=$FLOODGATE "$root/bench/accuracy.sh" "$accuracy_md" || accuracy_failed=1
  [[ -s $accuracy_md ]] || die "bench/accuracy.sh failed"
fi

python3 "$root/bench/report.py" --results "$results" --ceiling "$ceiling" --env "$work/env.txt" \
  --redis-cpu "$work/redis-cpu.txt" \
  --accuracy "$accuracy_md" --out "$OUT" --chart "$CHART" --chart-data "$work/chart" \
  --duration "$DURATION" --connections "$CONNECTIONS" --threads "$WRK_THREADS" --rounds "$ROUNDS" \
  --keys "$KEYS" --hot-keys "$HOT_KEYS" --clk-tck "$clk_tck" --pair-threads "$PAIR_THREADS"
log "wrote $OUT and $CHART"
[[ -z ${accuracy_failed:-} ]] || die "bench/accuracy.sh: rows beyond a guaranteed allowance (see $OUT)"
