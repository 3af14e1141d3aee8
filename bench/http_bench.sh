#!/usr/bin/env bash
# http_bench.sh — `floodgate serve` under wrk on loopback, against nginx's static 200 (the HTTP
# ceiling of this machine). Run by `make bench-http`; the figures are in docs/benchmarks.md.
#
#   bench/http_bench.sh
#
# Configurations (every one served on its own free loopback port, the same wrk load for all):
#   none     floodgate, no policy applies: its only policy matches a path never requested
#   memory   floodgate, one policy on /api/ on the memory store (10^9 per second: never denies)
#   redis    the same policy on one redis-server started here (redis://127.0.0.1:PORT)
#   cluster  the same policy on a 3-master + 3-replica Redis Cluster started here
#            (scripts/redis-cluster.sh)
#   nginx    nginx answering `return 200 "ok"` (2 workers, no access log): the ceiling
# Rounds alternate the configurations (none memory redis cluster nginx none memory ...) so that the
# machine's drift shows up in every configuration alike; the table gives each run and the median.
# Every request goes to /api/x from one wrk process, so every decision is on one identity (the
# peer 127.0.0.1), i.e. one key: on the cluster, one master.
#
# Environment (defaults in brackets):
#   DURATION [5s]  CONNECTIONS [64]  WRK_THREADS [2]   wrk's -d, -c and -t, the same for every run
#   ROUNDS [3]                 runs per configuration (at least 2)
#   SERVER_THREADS [2]         floodgate serve --threads
#   CONFIGS ["none memory redis cluster nginx"]   a subset, in the order to alternate
#   FLOODGATE [build/release/floodgate]           the binary under test
#   BASELINE [unset]           another floodgate binary: adds configurations none@base and
#                              memory@base, run with it and alternated with the rest (before/after)
#
# Output: the machine and versions, then markdown tables on stdout; progress on stderr. Exit 1 if
# a rate-limited configuration answered anything but 2xx (the policy must never deny here) or a
# server could not be started. Every process it starts is stopped by PID when it exits.
# Needs wrk, curl, python3, redis-server, redis-cli, nginx (scripts/deps.sh installs them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
FLOODGATE=${FLOODGATE:-$root/build/release/floodgate}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
ROUNDS=${ROUNDS:-3}
SERVER_THREADS=${SERVER_THREADS:-2}
CONFIGS=${CONFIGS:-none memory redis cluster nginx}
BASELINE=${BASELINE:-}

log() { echo "http_bench: $*" >&2; }
die() { log "$*"; exit 1; }

((ROUNDS >= 2)) || die "ROUNDS must be at least 2 (so that drift shows)"
[[ -x $FLOODGATE ]] || die "$FLOODGATE is not built (make build)"
[[ -z $BASELINE || -x $BASELINE ]] || die "BASELINE=$BASELINE is not an executable"
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/deps.sh)"
done
configs=()
for c in $CONFIGS; do
  case $c in
    none | memory) ;;
    redis) command -v redis-server >/dev/null || die "redis-server is not installed" ;;
    cluster) command -v redis-cli >/dev/null || die "redis-cli is not installed" ;;
    nginx) command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || die "nginx is missing" ;;
    *) die "unknown configuration $c (none memory redis cluster nginx)" ;;
  esac
  configs+=("$c")
  [[ -n $BASELINE && ($c == none || $c == memory) ]] && configs+=("$c@base")
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d /tmp/fg-http-bench-XXXXXX)
pids=()            # every background server, stopped by PID on exit
cluster_dir=""     # set once scripts/redis-cluster.sh start has run
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    # Bounded: floodgate drains (no connection is left by then), redis and nginx exit at once.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $cluster_dir ]]; then "$root/scripts/redis-cluster.sh" stop "$cluster_dir" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port (the kernel's choice), or with N > 1 the first of N consecutive free ports,
# below the ephemeral range so that outgoing connections cannot take them meanwhile.
free_port() {
  python3 - "${1:-1}" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
if n == 1:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); sys.exit(0)
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
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
}

# Waits (at most 10 s) until URL answers 200, while PID lives.
wait_http() {
  local url=$1 pid=$2
  for _ in $(seq 200); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "the server for $url exited (logs in $work)"
    sleep 0.05
  done
  die "$url did not answer 200 within 10 s"
}

# ---- servers -------------------------------------------------------------------------------

declare -A url=()  # configuration -> the URL wrk loads
declare -A server_pids=()  # configuration -> the PIDs whose CPU time a run counts

start_floodgate() {  # NAME BINARY POLICY_PREFIX [STORE_URL]
  local name=$1 bin=$2 prefix=$3 store=${4:-memory://} port
  port=$(free_port)
  cat >"$work/$name.yaml" <<EOF
listen: 127.0.0.1:$port
threads: $SERVER_THREADS
store: $store
policies:
  - {name: big, match: {path_prefix: $prefix}, limit: 1000000000, period: 1s}
EOF
  "$bin" serve --config "$work/$name.yaml" --threads "$SERVER_THREADS" >"$work/$name.log" 2>&1 &
  pids+=($!)
  server_pids[$name]=$!
  wait_http "http://127.0.0.1:$port/readyz" $!
  # A policy configuration must add the rate-limit fields; `none` must not.
  local headers
  headers=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$port/api/x")
  if [[ $prefix == /api/ ]]; then
    [[ $headers == *"X-RateLimit-Remaining"* ]] || die "$name: /api/x is not rate limited"
  else
    [[ $headers != *"X-RateLimit-"* ]] || die "$name: /api/x is rate limited"
  fi
  url[$name]="http://127.0.0.1:$port/api/x"
}

redis_url=""
start_redis() {  # sets redis_url
  local port
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    --daemonize no --logfile "$work/redis.log" &
  pids+=($!)
  for _ in $(seq 200); do
    [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break
    sleep 0.05
  done
  [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] || die "redis-server did not start"
  redis_url="redis://127.0.0.1:$port"
}

start_nginx() {
  local port
  port=$(free_port)
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  # Keep-alive connections are never closed by count (floodgate does not close them either).
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "ok"; }
  }
}
EOF
  "$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" \
    -g 'daemon off;' &
  pids+=($!)
  local master=$!
  wait_http "http://127.0.0.1:$port/api/x" $master
  url[nginx]="http://127.0.0.1:$port/api/x"
  server_pids[nginx]="$master $(pgrep -P "$master" | tr '\n' ' ')"
}

for c in "${configs[@]}"; do
  log "starting $c"
  case $c in
    none) start_floodgate none "$FLOODGATE" /never-requested/ ;;
    memory) start_floodgate memory "$FLOODGATE" /api/ ;;
    none@base) start_floodgate none@base "$BASELINE" /never-requested/ ;;
    memory@base) start_floodgate memory@base "$BASELINE" /api/ ;;
    redis)
      start_redis
      start_floodgate redis "$FLOODGATE" /api/ "$redis_url"
      ;;
    cluster)
      cluster_dir=$work/cluster
      "$root/scripts/redis-cluster.sh" start "$cluster_dir" "$(free_port 12)" >/dev/null
      start_floodgate cluster "$FLOODGATE" /api/ \
        "$("$root/scripts/redis-cluster.sh" url "$cluster_dir")"
      ;;
    nginx) start_nginx ;;
  esac
done

# ---- runs ----------------------------------------------------------------------------------

# wrk's latency figure ("812.00us", "1.58ms", "1.02s") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000;
    else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# CPU time (user + system, in clock ticks) used so far by the processes PIDS.
cpu_ticks() {
  local pid total=0 stat fields
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a fields <<<"${stat##*) }"  # after "(comm) ": field 3 (state) is fields[0]
    total=$((total + fields[11] + fields[12]))  # fields 14 utime, 15 stime
  done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)

results=$work/results.tsv
# config, round, req/s, p50 ms, p99 ms, non-2xx, socket errors, server CPU µs per request
: >"$results"
run_wrk() {  # CONFIG ROUND
  local c=$1 round=$2 out=$work/wrk-$1-$2.txt before after
  # shellcheck disable=SC2086 # a list of PIDs
  before=$(cpu_ticks ${server_pids[$c]})
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${url[$c]}" >"$out"
  # shellcheck disable=SC2086
  after=$(cpu_ticks ${server_pids[$c]})
  local rps p50 p99 non2xx errors requests cpu_us
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  requests=$(awk '/ requests in / {print $1}' "$out")
  cpu_us=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$requests" \
    'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }')
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$round" "$rps" "$p50" "$p99" "${non2xx:-0}" \
    "${errors:-0}" "$cpu_us" >>"$results"
  log "round $round $c: $rps req/s, p50 $p50 ms, p99 $p99 ms, server CPU $cpu_us us/request," \
    "non-2xx ${non2xx:-0}"
}

# One short unrecorded run each first: connections to the store opened, caches and the CPU
# frequency warmed.
for c in "${configs[@]}"; do
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d1s "${url[$c]}" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  for c in "${configs[@]}"; do run_wrk "$c" "$round"; done
done

# ---- report --------------------------------------------------------------------------------

label() {
  case $1 in
    none) echo "(a) no policy" ;;
    memory) echo "(b) policy, memory store" ;;
    redis) echo "(c) policy, one Redis" ;;
    cluster) echo "(d) policy, Redis Cluster (3 masters + 3 replicas)" ;;
    nginx) echo "(e) nginx static 200 (ceiling)" ;;
    none@base) echo "(a) no policy, BASELINE binary" ;;
    memory@base) echo "(b) policy, memory store, BASELINE binary" ;;
  esac
}

# Column COL (3 req/s, 4 p50, 5 p99, 8 server CPU) of CONFIG: every run joined with " / ", or
# the median.
runs_of() {
  awk -F'\t' -v c="$1" -v k="$2" -v fmt="$3" '$1 == c { printf "%s" fmt, (n++ ? " / " : ""), $k }' \
    "$results"
}
median_of() {
  awk -F'\t' -v c="$1" -v k="$2" '$1 == c { print $k }' "$results" | sort -g |
    awk '{ v[NR] = $1 }
         END { printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
sum_of() { awk -F'\t' -v c="$1" -v k="$2" '$1 == c { s += $k } END { print s + 0 }' "$results"; }

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "### HTTP: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds (runs in order)"
echo
nginx_version=$("$nginx_bin" -v 2>&1 | sed 's/.*version: //') || true
redis_version=$(redis-server --version 2>/dev/null | awk '{ print $1, $3 }') || true
echo "$(date -u +%F), $(nproc) CPUs ($cpu_model), kernel $(uname -r);" \
  "$("$FLOODGATE" --version), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }')," \
  "$nginx_version, $redis_version; floodgate serve --threads $SERVER_THREADS."
echo
echo "Server CPU: user + system time of the server's processes (floodgate; nginx's master and"
echo "workers; not Redis) during the run, per request answered."
echo
echo "| configuration | req/s per run | median req/s | p50 ms per run | median p50 ms |" \
  "p99 ms per run | median p99 ms | server CPU µs/request per run | median CPU µs | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for c in "${configs[@]}"; do
  printf '| %s | %s | **%.0f** | %s | %.2f | %s | %.2f | %s | %.1f | %s |\n' "$(label "$c")" \
    "$(runs_of "$c" 3 '%.0f')" "$(median_of "$c" 3)" "$(runs_of "$c" 4 '%.2f')" \
    "$(median_of "$c" 4)" "$(runs_of "$c" 5 '%.2f')" "$(median_of "$c" 5)" \
    "$(runs_of "$c" 8 '%.1f')" "$(median_of "$c" 8)" "$(sum_of "$c" 6)"
done

# The ratio of two configurations' column COL: per round (the pair measured one after the
# other) and of the medians.
ratio_row() {  # NUMERATOR DENOMINATOR COL TEXT
  local a=$1 b=$2 k=$3 per_round median
  [[ " ${configs[*]} " == *" $a "* && " ${configs[*]} " == *" $b "* ]] || return 0
  per_round=$(awk -F'\t' -v a="$a" -v b="$b" -v k="$k" '
    $1 == a { x[$2] = $k } $1 == b { y[$2] = $k }
    END { for (r = 1; r in x; r++)
            printf "%s%.2f", (r > 1 ? " / " : ""), (y[r] ? x[r] / y[r] : 0) }' \
    "$results")
  median=$(awk -v x="$(median_of "$a" "$k")" -v y="$(median_of "$b" "$k")" \
    'BEGIN { printf "%.2f", (y ? x / y : 0) }')
  echo "| $4 | $per_round | **$median** |"
}
echo
echo "| ratio | per round | of the medians |"
echo "|---|---|---|"
ratio_row memory none 3 "throughput: memory-store policy / no policy (target >= 0.90)"
ratio_row none nginx 3 "throughput: no policy / nginx (target >= 0.70)"
ratio_row redis none 3 "throughput: one Redis / no policy"
ratio_row cluster none 3 "throughput: Redis Cluster / no policy"
ratio_row none none@base 3 "throughput, no policy: FLOODGATE / BASELINE"
ratio_row memory memory@base 3 "throughput, memory policy: FLOODGATE / BASELINE"
ratio_row memory none 8 "server CPU per request: memory-store policy / no policy"
ratio_row none nginx 8 "server CPU per request: no policy / nginx"
ratio_row none none@base 8 "server CPU per request, no policy: FLOODGATE / BASELINE"
ratio_row memory memory@base 8 "server CPU per request, memory policy: FLOODGATE / BASELINE"

# Every wrk socket error (connect, read, write, timeout) over all runs, when there were any.
errors=$(awk -F'\t' '{ s += $7 } END { print s + 0 }' "$results")
((errors == 0)) || { echo; echo "wrk socket errors over all runs: $errors"; }

denied=0
for c in "${configs[@]}"; do
  [[ $c == nginx ]] && continue
  n=$(sum_of "$c" 6)
  ((n == 0)) || { log "$c: $n responses were not 2xx (the policy must never deny here)"; denied=1; }
done
exit "$denied"
