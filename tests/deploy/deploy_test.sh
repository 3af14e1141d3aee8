#!/usr/bin/env bash
# The deploy/ artefacts that local tools can check (deploy/README.md §7 lists the rest):
# every floodgate config passes `floodgate validate`, the store URLs the Terraform module writes
# too, the HAProxy configs pass `haproxy -c`, and the Dockerfile's stages install what the build
# needs and what the binary links.
#
#   tests/deploy/deploy_test.sh path/to/floodgate SOURCE_DIR
set -uo pipefail
fg=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

for cfg in "$src"/deploy/local/floodgate.yaml "$src"/deploy/docker/floodgate.yaml \
  "$src"/deploy/k8s/floodgate.yaml "$src"/examples/floodgate.yaml; do
  "$fg" validate "$cfg" >/dev/null 2>"$tmp/err" || fail "$cfg: $(cat "$tmp/err")"
done

# deploy/docker/Dockerfile: the runtime stage installs a package for every shared library the
# binary needs (`ldd`, each library's owning package by `dpkg -S`; a package another one depends
# on comes with it; libc6, libstdc++6, libgcc-s1 and zlib1g are in bookworm-slim), and the build
# stage installs the -dev packages scripts/deps.sh lists for what CMake requires. An image built
# without one builds or starts with "cannot open shared object file".
dockerfile="$src/deploy/docker/Dockerfile"
runtime_pkgs=$(awk '/^FROM .* AS runtime/ {r = 1} r && /apt-get install/ {i = 1; next} i && /^ *&&/ {i = 0; r = 0} i' \
  "$dockerfile" | tr -d '\\' | tr -s ' \n' '\n' | grep -v '^$' | sort -u)
if [[ -z $runtime_pkgs ]]; then
  fail "$dockerfile: no runtime apt-get install found"
elif command -v dpkg >/dev/null && command -v apt-cache >/dev/null && command -v ldd >/dev/null; then
  missing=()
  provided=$(printf '%s\n' $runtime_pkgs libc6 libstdc++6 libgcc-s1 zlib1g
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances $runtime_pkgs 2>/dev/null | grep -v '^ ')
  while read -r lib; do
    [[ -n $lib ]] || continue
    real=$(readlink -f "$lib")
    # dpkg knows a library by the path its package installed (/lib or /usr/lib: merged /usr).
    owner=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null ||
      dpkg -S "/usr$real" 2>/dev/null)
    owner=${owner%%:*}
    [[ -n $owner ]] || { fail "ldd $fg: no package owns $lib"; continue; }
    # A sanitizer build (make test-asan, test-tsan) links its runtime; the image is never one.
    [[ $owner =~ ^lib(a|ub|t|l)san[0-9]*$ ]] && continue
    grep -qx -- "$owner" <<<"$provided" || missing+=("$owner (${lib##*/})")
  done < <(ldd "$fg" | awk '/=>/ {print $3}')
  # One line per package lacking (its first library named).
  declare -A seen=()
  for m in "${missing[@]}"; do
    [[ -n ${seen[${m%% *}]:-} ]] && continue
    seen[${m%% *}]=1
    fail "$dockerfile: the runtime stage lacks $m, which floodgate links"
  done
fi
build_pkgs=$(awk '/^FROM .* AS build/ {b = 1} /^FROM .* AS runtime/ {b = 0} b' "$dockerfile")
for pkg in libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libhiredis-dev \
  libyaml-cpp-dev libssl-dev; do
  grep -qw -- "$pkg" <<<"$build_pkgs" || fail "$dockerfile: the build stage lacks $pkg (scripts/deps.sh)"
done

# deploy/terraform: both store URLs the module can write (redis_transit_encryption false and
# true) are ones floodgate accepts, in the module's own floodgate.yaml shape.
tf="$src/deploy/terraform/main.tf"
schemes=$(sed -n 's/^ *store_scheme *= *var.redis_transit_encryption ? "\([a-z-]*\)" : "\([a-z-]*\)".*/\1 \2/p' "$tf")
[[ "$schemes" == "rediss-cluster redis-cluster" ]] ||
  fail "deploy/terraform/main.tf: store_scheme should pick rediss-cluster with transit encryption, redis-cluster without (found: '$schemes')"
grep -q 'store_url *= *"${local.store_scheme}://' "$tf" || fail "deploy/terraform/main.tf: store_url must use local.store_scheme"
grep -q 'transit_encryption_enabled = var.redis_transit_encryption' "$tf" ||
  fail "deploy/terraform/main.tf: ElastiCache's transit encryption must follow redis_transit_encryption"
for scheme in $schemes; do
  printf 'listen: 0.0.0.0:8080\nstore: %s://clustercfg.floodgate-redis.abc123.euw1.cache.amazonaws.com:6379\nstore_timeout: 20ms\non_store_error: local\npolicies:\n  - {name: per-minute, limit: 100, period: 1m}\n' \
    "$scheme" >"$tmp/tf-$scheme.yaml"
  "$fg" validate "$tmp/tf-$scheme.yaml" >/dev/null 2>"$tmp/err" || fail "terraform store URL $scheme://: $(cat "$tmp/err")"
done
if command -v terraform >/dev/null; then
  terraform -chdir="$src/deploy/terraform" fmt -check -recursive >/dev/null 2>"$tmp/err" ||
    fail "deploy/terraform: terraform fmt -check: $(cat "$tmp/err")"
  # terraform test (mocked provider, tests/floodgate.tftest.hcl) needs the AWS provider: run it
  # when it can be installed (offline it cannot; deploy/README.md §7 has the last result).
  cp -r "$src/deploy/terraform" "$tmp/terraform"
  if timeout 60 terraform -chdir="$tmp/terraform" init -backend=false -input=false >/dev/null 2>&1; then
    timeout 120 terraform -chdir="$tmp/terraform" test >"$tmp/out" 2>&1 || fail "terraform test: $(tail -20 "$tmp/out")"
  else
    echo "deploy: terraform test not run (the AWS provider could not be installed)"
  fi
fi

if command -v haproxy >/dev/null; then
  # The Compose HAProxy config, with its certificate path pointed at a generated one.
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -keyout "$tmp/key.pem" -out "$tmp/crt.pem" 2>/dev/null
  cat "$tmp/crt.pem" "$tmp/key.pem" >"$tmp/floodgate.pem"
  sed "s#/usr/local/etc/haproxy/certs/floodgate.pem#$tmp/floodgate.pem#" \
    "$src/deploy/docker/haproxy.cfg" >"$tmp/haproxy.cfg"
  haproxy -c -q -f "$tmp/haproxy.cfg" >"$tmp/out" 2>&1 || fail "deploy/docker/haproxy.cfg: $(cat "$tmp/out")"
fi

((failures == 0)) || exit 1
# The configs were checked; without haproxy its part was not (a skip locally, a failure in CI).
source "$src/tests/require_tools.sh"
require_tools haproxy:haproxy
echo "deploy: ok"
