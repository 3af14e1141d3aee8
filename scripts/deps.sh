#!/usr/bin/env bash
# Installs the Debian 12 packages floodgate needs to build, test and run, idempotently:
# packages already installed are skipped; `apt-get update` runs once, only if something is missing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make
  libboost1.81-dev libhiredis-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev
  libcli11-dev libexpected-dev
  # floodgate rls: gRPC and protobuf (the plugin package carries gRPC's CMake plugin target), and
  # the black-box test's Python client (tests/rls)
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  python3-grpcio python3-protobuf
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
  redis-server redis-tools haproxy wrk curl openssl procps iproute2 socat
  nginx  # bench/http_bench.sh: the static-200 ceiling (bookworm: `nginx` ships /usr/sbin/nginx)
  libnginx-mod-http-lua lua-nginx-redis  # make bench-report: nginx keeping the limit in Redis
  clang-14 libclang-rt-14-dev llvm-14  # make fuzz (libFuzzer) and sanitizer symbolization
  faketime gnuplot-nox                 # make bench-report: clock-skew accuracy, the chart
  chromium chromium-driver python3-selenium  # e2e.dashboard: the page in a headless browser
)

# tests/clients (and make bench-report): node and npm. Debian's own only when neither command is
# there: a Node.js from elsewhere (NodeSource's nodejs bundles npm, and conflicts with Debian's npm
# package) is kept.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
