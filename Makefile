# Thin wrapper over CMake presets; see README.md.
.PHONY: all deps build test test-asan bench run clean

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

# Google Benchmark suites; figures go into docs/benchmarks.md by hand, with this command.
bench: build
	build/$(PRESET)/bench/core_bench --benchmark_min_time=0.2
	build/$(PRESET)/bench/memory_store_bench --benchmark_min_time=0.2

run: build
	@echo "floodgate serve arrives with the HTTP API server; for now try:"
	@echo "  build/$(PRESET)/floodgate check --config examples/floodgate.yaml --policy per-minute --key demo"

clean:
	rm -rf build
