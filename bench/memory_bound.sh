#!/usr/bin/env bash
# The memory bound of the memory store, measured (docs/security.md): one fresh process per case
# fills a store to max_keys with distinct identities, every state spent, and reports RSS.
#   bench/memory_bound.sh [MAX_KEYS]        (default 1000000, the default memory.max_keys)
# Cases: the longest identity held as it is (64 bytes) and the longest the server lets through
# (a 1024-byte /v1/check key; header values over 256 bytes are hashed by the HTTP layer first),
# which the store holds as its SHA-256; then a short one for comparison. Policy names are 64
# characters, the longest the config accepts.
set -euo pipefail
cd "$(dirname "$0")/.."
max_keys=${1:-1000000}
bin=build/release/bench/memory_bound
[[ -x $bin ]] || cmake --build --preset release --target memory_bound >/dev/null
echo "# $(date -u +%Y-%m-%d) $(uname -m) $(nproc) CPUs, max_keys=$max_keys"
for id_bytes in 64 1024 300 16; do
  "$bin" "$max_keys" "$id_bytes" 64
done
