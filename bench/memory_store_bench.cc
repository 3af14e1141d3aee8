// Memory store decisions/s: one hot key, or 100,000 keys, from 1 and 2 threads.
// Run: make bench (or build/release/bench/memory_store_bench).
#include <benchmark/benchmark.h>

#include <malloc.h>

#include <string>
#include <vector>

#include "store/memory/memory_store.h"

namespace fg {
namespace {

memory::MemoryStore& shared_store() {
  static memory::MemoryStore store(MemoryStoreOptions{}, SystemClock::instance());
  return store;
}

Policy per_minute(std::int64_t limit) {
  Policy q;
  q.name = "per-minute";
  q.limit = q.burst = limit;
  q.period = std::chrono::minutes(1);
  return q;
}

// One client, never limited (10^9 per minute): every decision consumes and writes.
void BM_HotKey(benchmark::State& bs) {
  auto& store = shared_store();
  static const Policy p = per_minute(1'000'000'000);
  const Charge charge{&p, 1};
  for (auto _ : bs) {
    auto r = store.decide_now(DecideRequest{"hot-client", {&charge, 1}});
    benchmark::DoNotOptimize(r);
  }
  bs.SetItemsProcessed(bs.iterations());
}
BENCHMARK(BM_HotKey)->Threads(1)->Threads(2)->UseRealTime();

// 100,000 clients per thread at 100 per minute each, round robin: states stay live (a token
// takes 0.6 s to refill, a round takes tens of ms) and most decisions allow.
void BM_ManyKeys(benchmark::State& bs) {
  auto& store = shared_store();
  static const Policy p = per_minute(100);
  const Charge charge{&p, 1};
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

// Heap bytes per stored state: 100,000 distinct identities (11-13 byte names) into a fresh store.
void BM_BytesPerState(benchmark::State& bs) {
  const Policy slow = per_minute(100);  // states stay live through the run
  const Charge charge{&slow, 1};
  constexpr int kKeys = 100'000;
  double per_state = 0;
  for (auto _ : bs) {
    const std::size_t before = mallinfo2().uordblks;
    {
      memory::MemoryStore store(MemoryStoreOptions{}, SystemClock::instance());
      for (int i = 0; i < kKeys; ++i) {
        store.decide_now(DecideRequest{"client-" + std::to_string(i), {&charge, 1}});
      }
      if (store.size() != kKeys) bs.SkipWithError("states expired during the run");
      per_state = static_cast<double>(mallinfo2().uordblks - before) / kKeys;
    }
  }
  bs.counters["bytes_per_state"] = per_state;
}
BENCHMARK(BM_BytesPerState)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fg

BENCHMARK_MAIN();
