// ns per decision of each algorithm (core only: no store, no lock), and of the limiter over two
// policies. Run: make bench (or build/release/bench/core_bench).
#include <benchmark/benchmark.h>

#include "core/algorithms.h"
#include "floodgate/limiter.h"

namespace fg {
namespace {

constexpr std::int64_t kT0 = 1'799'971'200'000'000;

Policy make_policy(Algorithm a) {
  Policy p;
  p.name = "bench";
  p.algorithm = a;
  p.limit = p.burst = 100;
  p.period = std::chrono::minutes(1);
  return p;
}

// A steady stream on one key, 1 ms apart: mostly allowed, some denied once the bucket empties.
void BM_Apply(benchmark::State& bs, Algorithm a) {
  const Policy p = make_policy(a);
  std::optional<State> state;
  std::int64_t now = kT0;
  for (auto _ : bs) {
    core::Step s = core::apply(p, state, 1, now);
    if (s.write) state = s.next;
    benchmark::DoNotOptimize(s);
    now += 1000;
  }
}
BENCHMARK_CAPTURE(BM_Apply, token_bucket, Algorithm::kTokenBucket);
BENCHMARK_CAPTURE(BM_Apply, gcra, Algorithm::kGcra);
BENCHMARK_CAPTURE(BM_Apply, sliding_window, Algorithm::kSlidingWindow);
BENCHMARK_CAPTURE(BM_Apply, fixed_window, Algorithm::kFixedWindow);

void BM_EvaluateTwoPolicies(benchmark::State& bs) {
  Policy a = make_policy(Algorithm::kTokenBucket);
  Policy b = make_policy(Algorithm::kGcra);
  b.name = "per-second";
  b.limit = b.burst = 10;
  b.period = std::chrono::seconds(1);
  const Charge charges[] = {{&a, 1}, {&b, 1}};
  std::optional<State> states[2];
  std::int64_t now = kT0;
  for (auto _ : bs) {
    Evaluation e = evaluate(charges, states, from_us(now));
    for (const auto& w : e.writes) states[w.index] = w.state;
    benchmark::DoNotOptimize(e);
    now += 1000;
  }
}
BENCHMARK(BM_EvaluateTwoPolicies);

}  // namespace
}  // namespace fg

BENCHMARK_MAIN();
