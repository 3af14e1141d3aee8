# Thin wrapper over CMake presets; see README.md.
.PHONY: all deps build test test-asan test-tsan bench bench-http bench-report run run-single clean

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

# Every test (unit, redis, cli, deploy, e2e) under AddressSanitizer + UndefinedBehaviorSanitizer,
# then under ThreadSanitizer: the scripts run the sanitized floodgate of that build, and any
# report fails the test (options and suppressions: docs/sanitizers.md).
test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

test-tsan: deps
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

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

# docs/benchmarks.md's generated part and docs/benchmarks.png: floodgate beside the NestJS peers
# (../shared/peers), nginx and redis-benchmark, in one run, then the accuracy runs
# (bench/accuracy.sh). About 35 minutes (5 rounds); knobs: see bench/report.sh.
bench-report: build
	FLOODGATE=build/$(PRESET)/floodgate bench/report.sh

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

# Admissions beyond the exact limit, per algorithm: concurrency across instances, skewed instance
# clocks and a Redis master failover on the local stack, and the algorithms against exact
# references in simulated time (bench/window_accuracy). Writes docs/accuracy.md; starts and stops
# everything itself (a few minutes).
.PHONY: bench-accuracy
bench-accuracy: deps
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS) --target floodgate window_accuracy
	FLOODGATE=build/$(PRESET)/floodgate WINDOW_ACCURACY=build/$(PRESET)/bench/window_accuracy \
	  bench/accuracy.sh docs/accuracy.md

# The soak of docs/reliability.md: 10 minutes (SOAK_DURATION seconds) of steady load on two
# instances while Redis is killed, stopped and restarted and the config is reloaded; fails if
# RSS or fds grow or any answer is an error not caused on purpose. Not part of `make test`.
.PHONY: soak
soak: build
	FLOODGATE=build/$(PRESET)/floodgate tests/soak/soak.sh

# libFuzzer (docs/fuzzing.md): the targets of fuzz/ built with clang-14 (address + undefined)
# into build/fuzz, each run FUZZ_SECONDS on a scratch copy of its corpus; fails on any crash or
# broken invariant (the input is kept in build/fuzz/fuzz-artifacts/).
.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS) --target fuzz_all
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh build/fuzz
