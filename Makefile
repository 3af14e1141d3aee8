# Thin wrapper over CMake presets; see README.md.
.PHONY: all deps build test test-asan bench bench-http run run-single clean

JOBS ?= $(shell nproc)
PRESET ?= release

all: build

deps:
	@scripts/deps.sh

build: deps
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS)

# Every test: unit, property, store conformance, CLI.
test: build
	ctest --preset $(PRESET) -j $(JOBS)

# The unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS) -L unit

# The benchmarks of docs/benchmarks.md (the Redis ones start their own redis-server).
bench: build
	build/$(PRESET)/bench/core_bench --benchmark_min_time=0.5
	build/$(PRESET)/bench/memory_store_bench --benchmark_min_time=0.5
	build/$(PRESET)/bench/redis_store_bench
	bench/redis_ceiling.sh
	build/$(PRESET)/bench/http_pure_bench --benchmark_min_time=0.5
	FLOODGATE=build/$(PRESET)/floodgate bench/http_bench.sh

# floodgate serve under wrk (no policy, memory store, Redis, Redis Cluster) against nginx's static
# 200 on this machine; starts and stops every server itself. Knobs: see bench/http_bench.sh.
bench-http: build
	FLOODGATE=build/$(PRESET)/floodgate bench/http_bench.sh

# The whole system (deploy/local/stack.sh): a Redis Cluster (3 masters + 3 replicas), two
# floodgate instances, HAProxy on http://127.0.0.1:8080 and https://127.0.0.1:8443. Ctrl-C stops
# all of it. Ports, instance count, config and run directory: FG_* variables (see stack.sh).
run: build
	@FG_BIN=build/$(PRESET)/floodgate deploy/local/stack.sh run

# One instance on the memory store with examples/floodgate.yaml on 127.0.0.1:8080 (scripts/run.sh).
run-single: build
	@FLOODGATE_BIN=build/$(PRESET)/floodgate scripts/run.sh

clean:
	rm -rf build

# libFuzzer (docs/fuzzing.md): the targets of fuzz/ built with clang-14 (address + undefined)
# into build/fuzz, each run FUZZ_SECONDS on a scratch copy of its corpus; fails on any crash or
# broken invariant (the input is kept in build/fuzz/fuzz-artifacts/).
.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS) --target fuzz_all
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh build/fuzz
