#!/usr/bin/env bash
# free-port-block.sh COUNT — prints the first of COUNT consecutive loopback ports that nothing
# uses, below the kernel's ephemeral range (ip_local_port_range, 32768 and up by default): there,
# a port no one listens on can still be the local end of some connection, and binding it fails.
# Used by the end-to-end tests and bench/accuracy.sh to place a whole local stack. Exit 1 when
# 200 random tries found no free block.
set -euo pipefail
count=${1:?usage: free-port-block.sh COUNT}
low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
for _ in $(seq 1 200); do
  base=$((10000 + RANDOM % (low - 10000 - count)))
  ok=1
  for ((p = base; p < base + count; p++)); do
    if ss -Hatn "sport = :$p" | grep -q .; then ok=0; break; fi
  done
  ((ok)) && { echo "$base"; exit 0; }
done
echo "free-port-block.sh: no block of $count free ports" >&2
exit 1
