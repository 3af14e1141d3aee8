// Redis store: decisions/s with 1, 64 and 1024 decisions in flight from one process (one store,
// so one connection on the store's own I/O thread), latency percentiles at a moderate open-loop
// rate, and socket writes (round trips) per decision.
//
// It starts its own redis-server on a free port (tests/fixtures), or uses FG_BENCH_REDIS_URL
// (e.g. redis-cluster://127.0.0.1:7001) when set. Every decision consumes and writes (a limit
// of 10^9 per minute), over 10,000 identities: the worst case for the server.
//
// Run: build/<preset>/bench/redis_store_bench  (see also bench/redis_ceiling.sh: the same FCALL
// through redis-benchmark, the server's own ceiling).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "fixtures/redis_server.h"
#include "store/redis/redis_store.h"
#include "app/wiring.h"

namespace fg {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kIdentities = 10'000;

std::string server_url() {
  if (const char* url = std::getenv("FG_BENCH_REDIS_URL")) return url;
  static std::unique_ptr<test::RedisServer> server = [] {
    std::string why;
    auto s = test::RedisServer::start(test::RedisServerOptions{}, &why);
    if (!s) {
      std::cerr << "redis_store_bench: " << why << "\n";
      std::exit(1);
    }
    return s;
  }();
  return "redis://" + server->address();
}

redis::RedisStore& store() {
  static std::unique_ptr<redis::RedisStore> s = [] {
    redis::RedisStoreOptions o;
    if (auto ok = redis::parse_redis_url(server_url(), o); !ok) {
      std::cerr << ok.error().to_string() << "\n";
      std::exit(1);
    }
    o.timeout = 2s;  // measure throughput, not the deadline
    auto made = redis::RedisStore::make(o);
    if (!made) {
      std::cerr << made.error().to_string() << "\n";
      std::exit(1);
    }
    return std::move(*made);
  }();
  return *s;
}

const Policy& never_limited() {
  static const Policy p = [] {
    Policy q;
    q.name = "bench";
    q.limit = q.burst = 1'000'000'000;
    q.period = std::chrono::minutes(1);
    return q;
  }();
  return p;
}

const std::vector<std::string>& identities() {
  static const std::vector<std::string> ids = [] {
    std::vector<std::string> v;
    for (int i = 0; i < kIdentities; ++i) v.push_back("client-" + std::to_string(i));
    return v;
  }();
  return ids;
}

// The q-quantile (0..1) of sorted values.
double percentile(const std::vector<double>& sorted, double q) {
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size()));
  return sorted[std::min(sorted.size() - 1, i)];
}

// Keeps `in_flight` decisions outstanding until `total` have completed: each completion (on
// the store's I/O thread) starts the next decision, so the loop runs at the store's pace.
class ClosedLoop {
 public:
  ClosedLoop(redis::RedisStore& s, int total) : store_(s), total_(total) {}

  void run(int in_flight) {
    for (int i = 0; i < in_flight && i < total_; ++i) issue();
    done_.get_future().wait();
  }
  int errors() const { return errors_.load(); }

 private:
  void issue() {
    const int n = issued_.fetch_add(1);
    if (n >= total_) return;
    const Charge charge{&never_limited(), 1};
    store_.decide(
        DecideRequest{identities()[static_cast<std::size_t>(n) % kIdentities], {&charge, 1}},
        [this](Result<Verdict> r) {
          if (!r) ++errors_;
          if (completed_.fetch_add(1) + 1 == total_) {
            done_.set_value();
          } else {
            issue();
          }
        });
  }

  redis::RedisStore& store_;
  const int total_;
  std::atomic<int> issued_{0};
  std::atomic<int> completed_{0};
  std::atomic<int> errors_{0};
  std::promise<void> done_;
};

void BM_DecisionsInFlight(benchmark::State& bs) {
  auto& s = store();
  const int in_flight = static_cast<int>(bs.range(0));
  const int per_iteration = in_flight == 1 ? 5'000 : 50'000;
  ClosedLoop(s, 200).run(std::min(in_flight, 200));  // connect and load the library
  const redis::RedisStoreStats before = s.stats();
  int errors = 0;
  for (auto _ : bs) {
    ClosedLoop loop(s, per_iteration);
    loop.run(in_flight);
    errors += loop.errors();
  }
  const redis::RedisStoreStats after = s.stats();
  const double decisions = static_cast<double>(after.decisions - before.decisions);
  bs.SetItemsProcessed(static_cast<std::int64_t>(decisions));
  bs.counters["writes_per_decision"] =
      static_cast<double>(after.writes - before.writes) / std::max(1.0, decisions);
  bs.counters["errors"] = errors;
}
BENCHMARK(BM_DecisionsInFlight)
    ->Arg(1)
    ->Arg(64)
    ->Arg(1024)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Open loop: one decision every 1/rate seconds from this thread, whatever the answers do, for
// two seconds; latency from decide() to the callback.
void BM_LatencyAtRate(benchmark::State& bs) {
  auto& s = store();
  const int rate = static_cast<int>(bs.range(0));
  const int total = rate * 2;
  ClosedLoop(s, 200).run(16);
  std::vector<double> latency_us(static_cast<std::size_t>(total));
  const redis::RedisStoreStats before = s.stats();
  for (auto _ : bs) {
    std::atomic<int> completed{0};
    std::atomic<int> errors{0};
    std::promise<void> done;
    const Duration interval(1'000'000 / rate);
    const auto start = Clock::now();
    for (int i = 0; i < total; ++i) {
      std::this_thread::sleep_until(start + i * interval);
      const Charge charge{&never_limited(), 1};
      const auto sent = Clock::now();
      s.decide(DecideRequest{identities()[static_cast<std::size_t>(i) % kIdentities], {&charge, 1}},
               [&, i, sent](Result<Verdict> r) {
                 latency_us[static_cast<std::size_t>(i)] =
                     std::chrono::duration<double, std::micro>(Clock::now() - sent).count();
                 if (!r) ++errors;
                 if (completed.fetch_add(1) + 1 == total) done.set_value();
               });
    }
    done.get_future().wait();
    bs.counters["errors"] = errors.load();
  }
  const redis::RedisStoreStats after = s.stats();
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double q) { return percentile(latency_us, q); };
  bs.counters["p50_us"] = pct(0.50);
  bs.counters["p99_us"] = pct(0.99);
  bs.counters["max_us"] = latency_us.back();
  bs.counters["writes_per_decision"] =
      static_cast<double>(after.writes - before.writes) /
      std::max(1.0, static_cast<double>(after.decisions - before.decisions));
  bs.SetItemsProcessed(total);
}
BENCHMARK(BM_LatencyAtRate)
    ->Arg(1'000)
    ->Arg(5'000)
    ->Arg(20'000)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The same open loop on a bound I/O thread, as the HTTP server will run it: the decisions are
// issued and answered on one thread with its own connection, no hop between threads. Latency
// counts from each decision's scheduled time (not the time it was actually sent), so a stall of
// the issuing thread shows up in the figures instead of hiding (coordinated omission).
void BM_LatencyAtRateBound(benchmark::State& bs) {
  auto& s = store();
  const int rate = static_cast<int>(bs.range(0));
  const int total = rate * 2;
  std::vector<double> latency_us(static_cast<std::size_t>(total));
  boost::asio::io_context ioc;
  int errors = 0;
  for (auto _ : bs) {
    int completed = 0;
    int issued = 0;
    boost::asio::steady_timer timer(ioc);
    const auto interval = std::chrono::nanoseconds(1'000'000'000 / rate);
    Clock::time_point start;
    std::function<void()> tick = [&] {
      const auto now = Clock::now();
      // Issue every decision whose time has come (several after a late wake-up).
      while (issued < total && start + issued * interval <= now) {
        const int i = issued++;
        const auto scheduled = start + i * interval;
        const Charge charge{&never_limited(), 1};
        s.decide(DecideRequest{identities()[static_cast<std::size_t>(i) % kIdentities],
                               {&charge, 1}},
                 [&, i, scheduled](Result<Verdict> r) {
                   latency_us[static_cast<std::size_t>(i)] =
                       std::chrono::duration<double, std::micro>(Clock::now() - scheduled)
                           .count();
                   if (!r) ++errors;
                   ++completed;
                 });
      }
      if (issued < total) {
        timer.expires_at(start + issued * interval);
        timer.async_wait([&](const boost::system::error_code&) { tick(); });
      }
    };
    boost::asio::post(ioc, [&] {
      s.bind_current_thread(ioc);
      // Warm up this thread's connection (and the library load) before the clock starts.
      for (int i = 0; i < 16; ++i) {
        const Charge charge{&never_limited(), 1};
        s.decide(DecideRequest{identities()[static_cast<std::size_t>(i)], {&charge, 1}},
                 [&](Result<Verdict>) {
                   if (++completed == 16) {
                     completed = 0;
                     start = Clock::now();
                     tick();
                   }
                 });
      }
    });
    while (completed < total || issued < total) ioc.run_one();
    boost::asio::post(ioc, [&] { s.unbind_current_thread(); });
    ioc.run();
    ioc.restart();
  }
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double q) { return percentile(latency_us, q); };
  bs.counters["p50_us"] = pct(0.50);
  bs.counters["p99_us"] = pct(0.99);
  bs.counters["p999_us"] = pct(0.999);
  bs.counters["max_us"] = latency_us.back();
  bs.counters["errors"] = errors;
  bs.SetItemsProcessed(total);
}
BENCHMARK(BM_LatencyAtRateBound)
    ->Arg(1'000)
    ->Arg(5'000)
    ->Arg(10'000)
    ->Arg(20'000)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fg

BENCHMARK_MAIN();
