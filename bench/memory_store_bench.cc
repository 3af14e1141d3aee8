// Memory store decisions/s: one hot key, or 100,000 keys, from 1 and 2 threads.
// Run: make bench (or build/release/bench/memory_store_bench).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "store/memory/memory_store.h"

namespace fg {
namespace {

memory::MemoryStore& shared_store() {
  static memory::MemoryStore store(MemoryStoreOptions{}, SystemClock::instance());
  return store;
}

const Policy& bench_policy() {
  static const Policy p = [] {
    Policy q;
    q.name = "per-minute";
    q.limit = q.burst = 1'000'000;
    q.period = std::chrono::minutes(1);
    return q;
  }();
  return p;
}

void BM_HotKey(benchmark::State& bs) {
  auto& store = shared_store();
  const Charge charge{&bench_policy(), 1};
  for (auto _ : bs) {
    auto r = store.decide_now(DecideRequest{"hot-client", {&charge, 1}});
    benchmark::DoNotOptimize(r);
  }
  bs.SetItemsProcessed(bs.iterations());
}
BENCHMARK(BM_HotKey)->Threads(1)->Threads(2)->UseRealTime();

void BM_ManyKeys(benchmark::State& bs) {
  auto& store = shared_store();
  const Charge charge{&bench_policy(), 1};
  constexpr std::size_t kKeys = 100'000;
  std::vector<std::string> keys;
  keys.reserve(kKeys);
  for (std::size_t i = 0; i < kKeys; ++i) {
    keys.push_back("client-" + std::to_string(bs.thread_index()) + "-" + std::to_string(i));
  }
  std::size_t i = 0;
  for (auto _ : bs) {
    auto r = store.decide_now(DecideRequest{keys[i], {&charge, 1}});
    benchmark::DoNotOptimize(r);
    if (++i == kKeys) i = 0;
  }
  bs.SetItemsProcessed(bs.iterations());
}
BENCHMARK(BM_ManyKeys)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace fg

BENCHMARK_MAIN();
