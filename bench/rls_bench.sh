#!/usr/bin/env bash
# rls_bench.sh — `floodgate rls` (Envoy's Rate Limit Service over gRPC) under load: decisions per
# second and latency percentiles from bench/rls_load (a closed-loop asynchronous C++ gRPC client
# built with the project), on the memory store, one Redis and a Redis Cluster (3 masters), with
# upstream's counting (the default) and with the opt-in token bucket. Everything it starts (the
# redis-servers, the cluster, one `floodgate rls` per run) listens on free loopback ports and is
# stopped by PID on exit. Prints a Markdown table (docs/benchmarks.md, "Envoy's Rate Limit
# Service"). About a minute with the defaults.
#
#   bench/rls_bench.sh            # after: cmake --build --preset release --target floodgate rls_load
#
# Knobs (environment): BUILD (build directory, default build/release), ROUNDS (2), DURATION
# (seconds per run, 5), CONCURRENCY (calls in flight, 64), LOAD_THREADS (client threads, 1),
# KEYS (distinct descriptor values, 10000), CONFIGS (default "memory redis cluster
# redis:token_bucket cluster:token_bucket").
#
# Each call is one descriptor (user=u<k>, k random out of KEYS) against a limit of 10^9 per minute
# (never over: every call is counted and answered OK, the costly path). Runs alternate the
# configurations (a b c a b c) so that the shared machine's drift hits all of them alike.
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build/release}
floodgate=$build/floodgate
load=$build/bench/rls_load
rounds=${ROUNDS:-2}
duration=${DURATION:-5}
concurrency=${CONCURRENCY:-64}
load_threads=${LOAD_THREADS:-1}
keys=${KEYS:-10000}
read -r -a configs <<<"${CONFIGS:-memory redis cluster redis:token_bucket cluster:token_bucket}"

die() { echo "rls_bench: $*" >&2; exit 1; }
[[ -x $floodgate && -x $load ]] || die "build floodgate and rls_load first ($build)"
command -v redis-server >/dev/null || die "redis-server is not installed"

work=$(mktemp -d /tmp/fg-rls-bench-XXXXXX)
pids=()
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
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 - "${1:-1}" <<'PY'
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
PY
}

cpu_ticks() {  # user + system clock ticks used so far by PIDS
  local pid total=0 stat fields
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# The configuration upstream's files would hold.
mkdir -p "$work/runtime/ratelimit/config"
cat >"$work/runtime/ratelimit/config/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
YAML

# ---- stores --------------------------------------------------------------------------------
redis_port=""
redis_pids=()
need_redis=0 need_cluster=0
for c in "${configs[@]}"; do
  case ${c%%:*} in redis) need_redis=1 ;; cluster) need_cluster=1 ;; memory) ;;
    *) die "unknown configuration $c" ;; esac
done
if ((need_redis)); then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$work/redis.log" &
  pids+=($!)
  redis_pids+=($!)
  for _ in $(seq 200); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi
cluster_url=""
cluster_pids=()
if ((need_cluster)); then
  cluster_dir=$work/cluster
  mkdir -p "$cluster_dir"
  REDIS_CLUSTER_REPLICAS=0 "$root/scripts/redis-cluster.sh" start "$cluster_dir" "$(free_port 6)" \
    >/dev/null
  cluster_url=$("$root/scripts/redis-cluster.sh" url "$cluster_dir")
  for f in "$cluster_dir"/*.pid; do cluster_pids+=("$(cat "$f")"); done
fi

# ---- runs ----------------------------------------------------------------------------------
results=$work/results.tsv
: >"$results"
run() {  # CONFIG ROUND
  local c=$1 round=$2 store=${1%%:*} alg=counter store_url store_pids=()
  [[ $c == *:* ]] && alg=${c#*:}
  case $store in
    memory) store_url=memory:// ;;
    redis) store_url=redis://127.0.0.1:$redis_port; store_pids=("${redis_pids[@]}") ;;
    cluster) store_url=$cluster_url; store_pids=("${cluster_pids[@]}") ;;
  esac
  local grpc_port http_port debug_port
  grpc_port=$(free_port); http_port=$(free_port); debug_port=$(free_port)
  RUNTIME_ROOT=$work/runtime RUNTIME_SUBDIRECTORY=ratelimit RUNTIME_WATCH_ROOT=false \
    GRPC_HOST=127.0.0.1 GRPC_PORT=$grpc_port HOST=127.0.0.1 PORT=$http_port \
    DEBUG_HOST=127.0.0.1 DEBUG_PORT=$debug_port USE_STATSD=false REDIS_TIMEOUT=1s \
    FLOODGATE_RLS_ALGORITHM=$alg \
    "$floodgate" rls --store "$store_url" >"$work/rls-$c-$round.log" 2>&1 &
  local fpid=$!
  pids+=($fpid)
  for _ in $(seq 200); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$http_port/healthcheck" 2>/dev/null && break
    kill -0 "$fpid" 2>/dev/null || die "floodgate rls ($c) exited: $(tail -3 "$work/rls-$c-$round.log")"
    sleep 0.05
  done
  # Warm-up (connections, the counting library loaded on every node), not measured.
  "$load" "127.0.0.1:$grpc_port" 0.5 "$concurrency" "$load_threads" "$keys" >/dev/null
  local s0 r0 out s1 r1
  s0=$(cpu_ticks "$fpid"); r0=$(cpu_ticks "${store_pids[@]}")
  out=$("$load" "127.0.0.1:$grpc_port" "$duration" "$concurrency" "$load_threads" "$keys")
  s1=$(cpu_ticks "$fpid"); r1=$(cpu_ticks "${store_pids[@]}")
  kill -TERM "$fpid"; wait "$fpid" 2>/dev/null || true
  python3 - "$c" "$round" "$out" "$((s1 - s0))" "$((r1 - r0))" "$clk_tck" >>"$results" <<'PY'
import json, sys
c, rnd, out, s, r, tck = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), *map(int, sys.argv[4:])
calls = max(1, out["calls"])
print("\t".join(map(str, [c, rnd, out["calls_per_s"], out["p50_us"], out["p99_us"],
                          out["p999_us"], round(s / tck * 1e6 / calls, 1),
                          round(r / tck * 1e6 / calls, 1), out["client_cpu_us_per_call"],
                          out["errors"] + out["over_limit"]])))
PY
}
for round in $(seq "$rounds"); do
  for c in "${configs[@]}"; do run "$c" "$round"; done
done

# ---- report --------------------------------------------------------------------------------
python3 - "$results" "$rounds" "$duration" "$concurrency" "$load_threads" "$keys" <<'PY'
import statistics, sys
path, rounds, duration, conc, threads, keys = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
names = {"memory": "memory store", "redis": "one Redis", "cluster": "Redis Cluster (3 masters)"}
order = []
for r in rows:
    if r[0] not in order:
        order.append(r[0])
print("%s rounds of %s s, %s calls in flight from %s client thread(s), %s keys" %
      (rounds, duration, conc, threads, keys))
print()
print("| configuration | counting | calls/s per round | **median calls/s** | median p50 ms | "
      "median p99 ms | median p99.9 ms | CPU µs per call: floodgate / Redis / client | "
      "errors or OVER_LIMIT |")
print("|---|---|---|---:|---:|---:|---:|---|---:|")
for c in order:
    rs = [r for r in rows if r[0] == c]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    store, _, alg = c.partition(":")
    print("| %s | %s | %s | **%s** | %.2f | %.2f | %.2f | %.1f / %.1f / %.1f | %d |" % (
        names[store], alg or "counter (upstream's)",
        " / ".join("{:,}".format(int(float(r[2]))) for r in rs),
        "{:,}".format(int(med(2))), med(3) / 1000, med(4) / 1000, med(5) / 1000,
        med(6), med(7), med(8), sum(int(r[9]) for r in rs)))
PY
