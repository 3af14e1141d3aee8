#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a bounded time (docs/fuzzing.md).
#
#   scripts/fuzz.sh BUILD_DIR [TARGET...]      (make fuzz builds BUILD_DIR = build/fuzz first)
#
# FUZZ_SECONDS (default 60) per target. Each run starts from a scratch copy of
# fuzz/corpus/<target> plus fuzz/regressions/<target>, so the checked-in corpus stays as it is;
# inputs that crash or break an invariant are kept in BUILD_DIR/fuzz-artifacts/<target>/. Prints
# one summary line per target (executions, executions/s, corpus size, coverage) and exits 1 if
# any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/fuzz.sh BUILD_DIR [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(http_request config resp forwarded_ip rate_limit_headers)
fi
seconds=${FUZZ_SECONDS:-60}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/floodgate-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# Longest input per target: past the server's header and body limits for HTTP (4 KiB and 8 KiB
# in the target's config), a few KiB elsewhere.
max_len() {
  case $1 in
    http_request) echo 16384 ;;
    config) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
  exe="$build/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz: $exe is not built (make fuzz)" >&2; exit 2; }
  mkdir -p "$scratch/$t" "$build/fuzz-artifacts/$t"
  cp -r "fuzz/corpus/$t/." "$scratch/$t/"
  args=(-max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t/")
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  echo "fuzz: $t for ${seconds}s"
  log="$build/fuzz-artifacts/$t.log"
  if "$exe" "${args[@]}" "$scratch/$t" "fuzz/regressions/$t" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    grep -E "ERROR|invariant failed|SUMMARY|Test unit written" "$log" | head -20 >&2 || true
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
  summary+=("$(printf '%-20s %-6s %12s execs %8s execs/s  %s' "$t" "$status" "${runs:-?}" \
    "${speed:-?}" "$cov")")
done
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/fuzz-artifacts/, logs beside them)" >&2
  exit 1
fi
