#!/usr/bin/env bash
# redis-cluster.sh — a local Redis Cluster on loopback: 3 masters + 3 replicas, started as
# daemons, stopped by the PIDs they recorded. For `make bench-http`, `make run` and manual tests.
#
#   scripts/redis-cluster.sh start DIR BASE_PORT   start a fresh cluster; prints its store URL
#   scripts/redis-cluster.sh stop DIR              stop exactly the redis-server PIDs in DIR/*.pid
#   scripts/redis-cluster.sh url DIR               print the store URL of the cluster in DIR
#
# Ports: the cluster uses 2 x NODES consecutive ports from BASE_PORT: the nodes' client ports
# BASE_PORT .. BASE_PORT+NODES-1, then their cluster bus ports (`cluster-port`, set explicitly so
# that the default "port + 10000" cannot collide with anything) BASE_PORT+NODES ..
# BASE_PORT+2*NODES-1. With the default 6 nodes, BASE_PORT 7001 uses 7001-7012. Every one must be
# free; the caller picks them (e.g. bench/http_bench.sh finds a free block).
#
# DIR holds everything: node-PORT/ (redis.conf, nodes.conf, redis.log), node-PORT.pid, and `url`
# (the line `start` prints: redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3, the seed list
# for floodgate's --store). `start` always builds a new, empty cluster: it refuses when DIR already
# has a live node and otherwise removes the nodes.conf files a previous cluster left there.
#
# Settings of every node (docs/redis.md, design §4): bind 127.0.0.1, cluster-enabled yes,
# cluster-require-full-coverage no (a dead master fails only its own slots), cluster-node-timeout
# 2000 (failover after ~2-4 s), appendonly no, save "" (nothing written to disk but nodes.conf),
# repl-diskless-sync-delay 0 (replicas sync at once rather than after 5 s).
#
# `start` returns once every node answers CLUSTER INFO with cluster_state:ok, knows every node and
# sees every replica as one, and every replica's link to its master is up, or fails after
# REDIS_CLUSTER_TIMEOUT seconds (default 30), stopping what it started. Exit status: 0 ok,
# 1 failure (the reason on stderr, with the tail of the node logs), 2 usage.
#
# Environment: REDIS_CLUSTER_MASTERS (default 3), REDIS_CLUSTER_REPLICAS (per master, default 1),
# REDIS_CLUSTER_TIMEOUT (seconds, default 30).
# Needs redis-server and redis-cli (Debian: redis-server, redis-tools), version 7 (cluster-port).
set -Eeuo pipefail

masters=${REDIS_CLUSTER_MASTERS:-3}
replicas=${REDIS_CLUSTER_REPLICAS:-1}
timeout_s=${REDIS_CLUSTER_TIMEOUT:-30}
nodes=$((masters * (1 + replicas)))

die() { echo "redis-cluster: $*" >&2; exit 1; }
usage() {
  grep '^#   scripts/redis-cluster.sh' "$0" | sed 's/^# */usage: /' >&2
  exit 2
}

# PID in PIDFILE, if that process is alive and is a redis-server (a recycled PID is left alone).
live_pid() {
  local pidfile=$1 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
  echo "$pid"
}

cmd_stop() {
  local dir=$1 pidfile pid pids=()
  [[ -d $dir ]] || return 0
  shopt -s nullglob
  for pidfile in "$dir"/node-*.pid; do
    if pid=$(live_pid "$pidfile"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  # Bounded wait (5 s), then SIGKILL for any node that did not exit.
  local deadline=$((SECONDS + 5)) alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [[ ${#alive[@]} -eq 0 ]] && break
    if ((SECONDS >= deadline)); then
      kill -KILL "${alive[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
  rm -f "$dir"/node-*.pid "$dir/url"
}

cmd_url() {
  local dir=$1
  [[ -f $dir/url ]] || die "no cluster in $dir (no $dir/url)"
  cat "$dir/url"
}

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# Whether the node on PORT is ready: cluster_state:ok, knows every node, sees every replica as a
# replica (gossip spreads CLUSTER REPLICATE after redis-cli returns), and, being a replica itself,
# has its master link up.
node_ready() {
  local port=$1 info seen repl
  info=$(cli "$port" CLUSTER INFO) || return 1
  [[ $info == *cluster_state:ok* && $info == *"cluster_known_nodes:$nodes"$'\r'* ]] || return 1
  seen=$(cli "$port" CLUSTER NODES | awk '$3 ~ /slave/ && $3 !~ /fail/' | wc -l) || return 1
  ((seen == masters * replicas)) || return 1
  repl=$(cli "$port" INFO replication) || return 1
  [[ $repl != *role:slave* || $repl == *master_link_status:up* ]]
}

logs_tail() {
  local dir=$1 f
  for f in "$dir"/node-*/redis.log; do
    echo "--- $f" >&2
    tail -n 5 "$f" >&2 || true
  done
}

cmd_start() {
  local dir=$1 base=$2
  if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base + 2 * nodes - 1 > 65535)); then
    die "BASE_PORT must be a number from 1024 to $((65535 - 2 * nodes + 1))"
  fi
  ((masters >= 3)) || die "a Redis Cluster needs at least 3 masters (REDIS_CLUSTER_MASTERS)"
  for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null ||
      die "$tool is not installed (apt-get install redis-server redis-tools)"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  shopt -s nullglob
  local pidfile
  for pidfile in "$dir"/node-*.pid; do
    live_pid "$pidfile" >/dev/null &&
      die "a node is already running from $dir ($pidfile); stop it first"
  done
  rm -f "$dir"/node-*.pid "$dir"/node-*/nodes.conf "$dir/url"

  # From here on, a failure stops the nodes already started.
  trap 'logs_tail "$dir"; cmd_stop "$dir"' ERR
  trap 'cmd_stop "$dir"' INT TERM

  local i port bus addresses=()
  for ((i = 0; i < nodes; i++)); do
    port=$((base + i))
    bus=$((base + nodes + i))
    mkdir -p "$dir/node-$port"
    cat >"$dir/node-$port/redis.conf" <<EOF
# Written by scripts/redis-cluster.sh; regenerated on every start.
port $port
bind 127.0.0.1
daemonize yes
pidfile $dir/node-$port.pid
logfile $dir/node-$port/redis.log
dir $dir/node-$port
cluster-enabled yes
cluster-config-file $dir/node-$port/nodes.conf
cluster-port $bus
cluster-node-timeout 2000
cluster-require-full-coverage no
appendonly no
save ""
repl-diskless-sync-delay 0
EOF
    redis-server "$dir/node-$port/redis.conf"
    addresses+=("127.0.0.1:$port")
  done

  local deadline=$((SECONDS + timeout_s)) pending
  for ((i = 0; i < nodes; i++)); do
    port=$((base + i))
    until [[ $(cli "$port" PING) == PONG ]]; do
      # A node that could not bind its ports logs why and exits: fail now, not at the deadline.
      if grep -qE 'Failed listening|aborting' "$dir/node-$port/redis.log" 2>/dev/null ||
        ((SECONDS >= deadline)); then
        echo "redis-cluster: node $port did not start" >&2
        false
      fi
      sleep 0.05
    done
  done

  redis-cli --cluster create "${addresses[@]}" --cluster-replicas "$replicas" --cluster-yes \
    >"$dir/create.log" 2>&1 ||
    {
      echo "redis-cluster: redis-cli --cluster create failed:" >&2
      tail -n 20 "$dir/create.log" >&2
      false
    }

  # redis-cli returns once the slots are assigned; replicas attach, and gossip spreads, later.
  while :; do
    pending=()
    for ((i = 0; i < nodes; i++)); do
      node_ready $((base + i)) || pending+=($((base + i)))
    done
    [[ ${#pending[@]} -eq 0 ]] && break
    ((SECONDS < deadline)) ||
      { echo "redis-cluster: not ready after ${timeout_s}s: nodes ${pending[*]}" >&2; false; }
    sleep 0.1
  done
  trap - ERR INT TERM

  local url="redis-cluster://" sep=""
  for ((i = 0; i < masters; i++)); do
    url+="${sep}127.0.0.1:$((base + i))"
    sep=","
  done
  echo "$url" >"$dir/url"
  echo "$url"
}

[[ $# -ge 1 ]] || usage
case $1 in
  start) [[ $# -eq 3 ]] || usage; cmd_start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
  url) [[ $# -eq 2 ]] || usage; cmd_url "$2" ;;
  *) usage ;;
esac
