#!/usr/bin/env bash
# dashboard_bench.sh — what an open dashboard costs the request path: `floodgate serve` on the
# memory store (one policy on /api/ that never denies) under wrk, with no page open, with one
# page open (GET /v1/status once a second, as the page polls), and with ten (ten a second),
# the three alternated round by round, in an order rotated each round (0 1 10, 1 10 0, 10 0 1),
# so that the machine's drift hits all alike. Prints one line per run and the medians (docs/benchmarks.md, "The
# dashboard, open vs closed").
#
#   bench/dashboard_bench.sh [path/to/floodgate]
#
# Knobs: ROUNDS [3]  DURATION [5s]  CONNECTIONS [64]  WRK_THREADS [2]  SERVER_THREADS [2]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/release/floodgate}
rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
connections=${CONNECTIONS:-64}
wrk_threads=${WRK_THREADS:-2}
server_threads=${SERVER_THREADS:-2}
for tool in wrk curl; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done

tmp=$(mktemp -d)
server=""
pollers=()
cleanup() {
  for p in "${pollers[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -z $server ]] || { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$("$root/scripts/free-port-block.sh" 1)
cat >"$tmp/floodgate.yaml" <<YAML
listen: 127.0.0.1:$port
threads: $server_threads
policies:
  - {name: never-denies, match: {path_prefix: /api/}, limit: 1000000000, period: 1s}
YAML
"$bin" serve --config "$tmp/floodgate.yaml" >"$tmp/serve.log" 2>&1 &
server=$!
for _ in $(seq 50); do curl -fsS -m 1 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

# poll N: N pages' worth of /v1/status polls (each once a second) until killed.
poll() {
  local pages=$1 i
  while :; do
    for ((i = 0; i < pages; i++)); do
      curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/v1/status" || true
    done
    sleep 1
  done
}

declare -A results
orders=("0 1 10" "1 10 0" "10 0 1")  # rotated round by round: no configuration always goes first
for ((r = 1; r <= rounds; r++)); do
  for pages in ${orders[$(((r - 1) % 3))]}; do
    pollers=()
    if ((pages > 0)); then poll "$pages" & pollers+=($!); fi
    sleep 1
    rps=$(wrk -t"$wrk_threads" -c"$connections" -d"$duration" "http://127.0.0.1:$port/api/x" |
      awk '/^Requests\/sec:/ {print int($2)}')
    for p in "${pollers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pollers=()
    echo "round $r, $pages page(s) open: $rps req/s"
    results[$pages]+="$rps "
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
closed=$(echo "${results[0]}" | median)
for pages in 0 1 10; do
  m=$(echo "${results[$pages]}" | median)
  printf "%s page(s) open: runs %s-> median %s req/s (%.3f of closed)\n" "$pages" \
    "${results[$pages]}" "$m" "$(echo "$m $closed" | awk '{print $1 / $2}')"
done
