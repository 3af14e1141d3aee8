// What counting a denial in the top denied sketch costs (decide/top_denied.h): one hot identity
// (a monitored entry: a lookup and an increment), and a flood of distinct identities (each one
// replaces the least counted of 64 entries), on one thread and on two threads with their own
// stripes as the server's I/O threads have.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "decide/top_denied.h"

namespace {

const fg::Timestamp kNow = fg::from_us(1'800'000'000'000'000);

void BM_HotIdentity(benchmark::State& state) {
  static fg::decide::TopDenied top;
  const std::string identity = "key:x-api-key:a-client-over-its-limit";
  for (auto _ : state) top.add(identity, kNow, static_cast<std::size_t>(state.thread_index()));
}
BENCHMARK(BM_HotIdentity)->Threads(1)->Threads(2);

void BM_FloodOfIdentities(benchmark::State& state) {
  static fg::decide::TopDenied top;
  std::vector<std::string> ids;
  for (int i = 0; i < 4096; ++i)
    ids.push_back("ip:10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
  std::size_t i = 0;
  for (auto _ : state) {
    top.add(ids[i++ & 4095], kNow, static_cast<std::size_t>(state.thread_index()));
  }
}
BENCHMARK(BM_FloodOfIdentities)->Threads(1)->Threads(2);

void BM_Top20(benchmark::State& state) {
  fg::decide::TopDenied top;
  for (int i = 0; i < 10'000; ++i) top.add("ip:10.0.0." + std::to_string(i % 300), kNow, i % 4);
  for (auto _ : state) benchmark::DoNotOptimize(top.top(kNow, 20));
}
BENCHMARK(BM_Top20);

}  // namespace

BENCHMARK_MAIN();
