#!/usr/bin/env bash
# instructions.sh — user-space instructions per HTTP request in `floodgate serve`, counted by
# callgrind: a figure that, unlike requests/s, does not move with the machine's load, so a
# before/after comparison of the request path is exact on a shared machine.
#
#   bench/instructions.sh [BINARY...]        (default: build/release/floodgate)
#
# For each binary and each store (the memory store; one redis-server started here), it runs
# `floodgate serve --threads 1` under valgrind --tool=callgrind with instrumentation off, warms it
# up with wrk, counts only during an 8 s wrk run (-t1 -c8, bench/wrk/keys.lua over 10,000 keys,
# the policy of bench/report.sh: 100 per 60 s per X-API-Key), and prints per request the
# instructions and the heap allocations (calls to malloc, calloc, realloc and the aligned
# allocators, which every operator new goes through), each binary after the first also as a
# change from the first. Kernel time (the socket calls) is not counted. Needs valgrind, wrk,
# curl, redis-server, python3.
#
# KEYS=N draws the X-API-Key out of N keys instead of 10,000 (a fresh set for the counted run):
# KEYS=50 counts the 429 path, each key's first 100 answers being its only 200s (a few thousand
# of the counted requests).
#
# UPSTREAM=http://HOST:PORT proxies every allowed request there (a server started by the caller,
# e.g. nginx answering a static 200): the request path of proxy mode, in both columns.
#
# PROFILES=DIR keeps each run's callgrind output there (N-memory.callgrind.out, N-redis...: N is
# the binary's place in the arguments), for callgrind_annotate.
#
# WITH_NGINX=1 adds a last row: nginx enforcing the same limit itself (limit_req_zone keyed by
# X-API-Key, rate=100r/m burst=100 nodelay, denials logged at info, below the error log's level,
# empty_gif; as bench/report.sh's nginx-limit-req) in
# one process (master_process off, 1 worker), under the same load: the memory store's column
# only. Needs nginx. (PROFILES keeps it as nginx.callgrind.out.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
(($# > 0)) || set -- "$root/build/release/floodgate"
for tool in valgrind callgrind_control callgrind_annotate wrk curl redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/fg-instructions-XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --daemonize no --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 100); do
  [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
  sleep 0.05
done

measure() {  # BINARY STORE_URL -> "INSTRUCTIONS ALLOCATIONS" per request; $label names a profile
  local bin=$1 store=$2 port pid
  port=$(free_port)
  cat >"$work/config.yaml" <<YAML
listen: 127.0.0.1:$port
threads: 1
store: $store
store_timeout: 2s
identity:
  - header: X-API-Key
policies:
  - name: per-minute
    match: {path_prefix: /api/}
    limit: 100
    period: 60s
YAML
  if [[ -n ${UPSTREAM:-} ]]; then echo "upstream: $UPSTREAM" >>"$work/config.yaml"; fi
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
    "$bin" serve --config "$work/config.yaml" >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.2
  done
  count_requests "$pid" "http://127.0.0.1:$port/api/resource" "$bin, $store"
}

# The load on a server started under callgrind (PID, instrumentation off) at URL: a 2 s warm-up,
# then an 8 s run counted; stops the server, keeps the profile as $label.callgrind.out under
# PROFILES, and prints "INSTRUCTIONS ALLOCATIONS" per request. WHAT names it in an error.
count_requests() {  # PID URL WHAT
  local pid=$1 url=$2 out requests total
  wrk -t1 -c8 -d2s -s "$root/bench/wrk/keys.lua" "$url" -- "${KEYS:-10000}" "warm-$RANDOM" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c8 -d8s -s "$root/bench/wrk/keys.lua" "$url" -- "${KEYS:-10000}" "run-$RANDOM" |
    grep '^wrk-result ')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" || true
  requests=$(sed 's/.* requests=\([0-9]*\).*/\1/' <<<"$out")
  ((requests > 0)) || { echo "instructions: no request answered ($3)" >&2; exit 1; }
  if [[ -n ${PROFILES:-} ]]; then
    mkdir -p "$PROFILES"
    cp "$work/callgrind.out" "$PROFILES/$label.callgrind.out"
  fi
  total=$(callgrind_annotate "$work/callgrind.out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$((total / requests)) $(count_allocations "$work/callgrind.out" "$requests")"
}

measure_nginx() {  # -> "INSTRUCTIONS ALLOCATIONS" per request of nginx limit_req, as measure()
  local port pid
  port=$(free_port)
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<NGINX
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  limit_req_zone \$http_x_api_key zone=fg:10m rate=100r/m;
  limit_req_status 429;
  limit_req_log_level info;
  server {
    listen 127.0.0.1:$port;
    location / { limit_req zone=fg burst=100 nodelay; empty_gif; }
  }
}
NGINX
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
    "$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" \
    -g 'daemon off;' >"$work/nginx/out.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 150); do
    curl -fsS -o /dev/null -H 'X-API-Key: ready' "http://127.0.0.1:$port/api/resource" \
      2>/dev/null && break
    sleep 0.2
  done
  label=nginx
  count_requests "$pid" "http://127.0.0.1:$port/api/resource" nginx
}

# Heap allocations per request in a callgrind profile: the call counts of every call into the C
# allocator. Function names are compressed in the file ("cfn=(12) malloc" once, then "cfn=(12)").
count_allocations() {  # PROFILE REQUESTS
  python3 - "$1" "$2" <<'PY'
import re, sys
allocators = {"malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign", "memalign"}
names, callee, calls = {}, None, 0
for line in open(sys.argv[1]):
    if line.startswith("cfn="):
        m = re.match(r"\((\d+)\)(?: (.*))?", line[4:].strip())
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        callee = names.get(m.group(1), "")
    elif line.startswith("fn="):
        m = re.match(r"\((\d+)\)(?: (.*))?", line[3:].strip())
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
    elif line.startswith("calls=") and callee is not None:
        if re.sub(r"'\d+$", "", callee) in allocators:
            calls += int(line[6:].split()[0])
        callee = None
print(f"{calls / int(sys.argv[2]):.1f}")
PY
}

# "33,276" for the first binary; "33,276 (-1.8 %)" against the first's figure for the others.
figure() {  # VALUE [FIRST]
  python3 -c '
import sys
v = float(sys.argv[1])
text = f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
if len(sys.argv) > 2 and float(sys.argv[2]) > 0:
    text += f" ({(v / float(sys.argv[2]) - 1) * 100:+.1f} %)".replace("-", "\u2212")
print(text)' "$@"
}

echo "| binary | memory store: instructions/request | allocations/request |" \
  "one Redis: instructions/request | allocations/request |"
echo "|---|---:|---:|---:|---:|"
n=0
first=()
for bin in "$@"; do
  n=$((n + 1))
  label=$n-memory
  read -r mem_ir mem_alloc <<<"$(measure "$bin" memory://)"
  label=$n-redis
  read -r redis_ir redis_alloc <<<"$(measure "$bin" "redis://127.0.0.1:$redis_port")"
  ((n > 1)) || first=("$mem_ir" "$mem_alloc" "$redis_ir" "$redis_alloc")
  ((n > 1)) || base=("" "" "" "")  # the first binary's figures stand alone
  ((n == 1)) || base=("${first[@]}")
  echo "| $bin | $(figure "$mem_ir" ${base[0]}) | $(figure "$mem_alloc" ${base[1]}) |" \
    "$(figure "$redis_ir" ${base[2]}) | $(figure "$redis_alloc" ${base[3]}) |"
done
if [[ ${WITH_NGINX:-} == 1 ]]; then
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  [[ -x $nginx_bin ]] || { echo "instructions: nginx is not installed" >&2; exit 1; }
  read -r ng_ir ng_alloc <<<"$(measure_nginx)"
  echo "| nginx limit_req, 1 worker | $(figure "$ng_ir" ${first[0]}) |" \
    "$(figure "$ng_alloc" ${first[1]}) | - | - |"
fi
