// The /metrics page: its exact text for a small scenario, its structure (HELP/TYPE per family,
// one line per series, cumulative buckets), exact totals under threads, policy ids, escaping.
#include "decide/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/memory/memory_store.h"
#include "test_policy.h"

namespace fg::decide {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The page as {series → value}, e.g. {"floodgate_draining" → "1"}. Checks the structure on the
// way: every sample belongs to the family of the latest "# TYPE" line (histogram samples carry
// _bucket/_sum/_count), each family has "# HELP" then "# TYPE" once, no series appears twice,
// and the page ends with a newline.
std::map<std::string, std::string> parse(const std::string& page) {
  std::map<std::string, std::string> series;
  std::set<std::string> families;
  std::string family, type, helped;
  EXPECT_FALSE(page.empty());
  EXPECT_EQ(page.back(), '\n');
  std::size_t pos = 0;
  while (pos < page.size()) {
    const std::size_t end = page.find('\n', pos);
    const std::string line = page.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("# HELP ", 0) == 0) {
      helped = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::size_t sp = line.find(' ', 7);
      family = line.substr(7, sp - 7);
      type = line.substr(sp + 1);
      EXPECT_EQ(helped, family) << "HELP must precede TYPE: " << line;
      EXPECT_TRUE(families.insert(family).second) << "family twice: " << family;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      continue;
    }
    const std::size_t sp = line.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << line;
    const std::string key = line.substr(0, sp);
    const std::string name = key.substr(0, key.find('{'));
    if (type == "histogram") {
      EXPECT_TRUE(name == family + "_bucket" || name == family + "_sum" ||
                  name == family + "_count")
          << line;
    } else {
      EXPECT_EQ(name, family) << line;
    }
    EXPECT_TRUE(series.emplace(key, line.substr(sp + 1)).second) << "series twice: " << key;
  }
  return series;
}

std::uint64_t value(const std::map<std::string, std::string>& s, const std::string& key) {
  auto it = s.find(key);
  if (it == s.end()) {
    ADD_FAILURE() << "missing series " << key;
    return 0;
  }
  return std::stoull(it->second);
}

// A small scenario over two shards (`m` has 2).
void scenario(Metrics& m) {
  m.set_info("0.1.0", "redis-cluster");
  const std::size_t minute = m.policy_id("per-minute");
  const std::size_t second = m.policy_id("per-second");
  ThreadMetrics& a = m.shard(0);
  ThreadMetrics& b = m.shard(1);

  a.on_request(200);
  b.on_request(200);
  a.on_request(429);
  a.on_request(700);  // out of range → "other"
  b.on_request(42);   // out of range → "other"

  a.on_decision(minute, PolicyOutcome::kAllowed);
  b.on_decision(minute, PolicyOutcome::kAllowed);
  a.on_decision(minute, PolicyOutcome::kDenied);
  a.on_decision(minute, PolicyOutcome::kDenied);
  b.on_decision(minute, PolicyOutcome::kDenied);
  b.on_decision(second, PolicyOutcome::kShadowDenied);

  a.on_store(StoreResult::kOk, microseconds(50));          // le 0.0001
  a.on_store(StoreResult::kOk, microseconds(100));         // le 0.0001: bounds are inclusive
  b.on_store(StoreResult::kOk, microseconds(101));         // le 0.00025
  b.on_store(StoreResult::kUnavailable, milliseconds(1));  // le 0.001
  a.on_store(StoreResult::kError, milliseconds(30));       // le 0.05
  b.on_store(StoreResult::kTimeout, seconds(2));           // +Inf only
  a.on_store(StoreResult::kCircuitOpen, Duration(0));      // counted, not timed
  b.on_store(StoreResult::kCircuitOpen, seconds(9));       // counted, not timed

  a.on_degraded(DegradedMode::kAllow);
  b.on_upstream(UpstreamResult::kOk);
  b.on_upstream(UpstreamResult::kOk);
  b.on_upstream(UpstreamResult::kNoMemory);

  a.on_connection_open();
  a.on_connection_open();
  b.on_connection_open();
  a.on_connection_close();
  b.on_connection_rejected();

  m.on_reload(true);
  m.on_reload(true);
  m.on_reload(false);
  m.set_draining(true);
  m.set_circuit_open(false);
}

TEST(Metrics, RendersTheExactPage) {
  Metrics m(2);
  scenario(m);
  EXPECT_EQ(m.render(),
            R"(# HELP floodgate_http_requests_total HTTP responses sent, by status code.
# TYPE floodgate_http_requests_total counter
floodgate_http_requests_total{code="200"} 2
floodgate_http_requests_total{code="429"} 1
floodgate_http_requests_total{code="other"} 2
# HELP floodgate_decisions_total Policy decisions, by policy and outcome (shadow_denied: a shadow policy would have denied).
# TYPE floodgate_decisions_total counter
floodgate_decisions_total{policy="per-minute",outcome="allowed"} 2
floodgate_decisions_total{policy="per-minute",outcome="denied"} 3
floodgate_decisions_total{policy="per-minute",outcome="shadow_denied"} 0
floodgate_decisions_total{policy="per-second",outcome="allowed"} 0
floodgate_decisions_total{policy="per-second",outcome="denied"} 0
floodgate_decisions_total{policy="per-second",outcome="shadow_denied"} 1
# HELP floodgate_store_requests_total Rate-limit store calls, by result (circuit_open: refused without a call).
# TYPE floodgate_store_requests_total counter
floodgate_store_requests_total{result="ok"} 3
floodgate_store_requests_total{result="unavailable"} 1
floodgate_store_requests_total{result="timeout"} 1
floodgate_store_requests_total{result="circuit_open"} 2
floodgate_store_requests_total{result="error"} 1
# HELP floodgate_store_latency_seconds Latency of rate-limit store calls, in seconds (circuit_open calls excluded).
# TYPE floodgate_store_latency_seconds histogram
floodgate_store_latency_seconds_bucket{le="0.0001"} 2
floodgate_store_latency_seconds_bucket{le="0.00025"} 3
floodgate_store_latency_seconds_bucket{le="0.0005"} 3
floodgate_store_latency_seconds_bucket{le="0.001"} 4
floodgate_store_latency_seconds_bucket{le="0.0025"} 4
floodgate_store_latency_seconds_bucket{le="0.005"} 4
floodgate_store_latency_seconds_bucket{le="0.01"} 4
floodgate_store_latency_seconds_bucket{le="0.025"} 4
floodgate_store_latency_seconds_bucket{le="0.05"} 5
floodgate_store_latency_seconds_bucket{le="0.1"} 5
floodgate_store_latency_seconds_bucket{le="0.25"} 5
floodgate_store_latency_seconds_bucket{le="0.5"} 5
floodgate_store_latency_seconds_bucket{le="1"} 5
floodgate_store_latency_seconds_bucket{le="+Inf"} 6
floodgate_store_latency_seconds_sum 2.031251
floodgate_store_latency_seconds_count 6
# HELP floodgate_degraded_decisions_total Requests answered without the store, by on_store_error mode.
# TYPE floodgate_degraded_decisions_total counter
floodgate_degraded_decisions_total{mode="allow"} 1
floodgate_degraded_decisions_total{mode="deny"} 0
floodgate_degraded_decisions_total{mode="local"} 0
# HELP floodgate_deny_cache_hits_total Requests denied again from the deny cache, without a store call.
# TYPE floodgate_deny_cache_hits_total counter
floodgate_deny_cache_hits_total 0
# HELP floodgate_upstream_requests_total Requests proxied to the upstream, by result.
# TYPE floodgate_upstream_requests_total counter
floodgate_upstream_requests_total{result="ok"} 2
floodgate_upstream_requests_total{result="unavailable"} 0
floodgate_upstream_requests_total{result="timeout"} 0
floodgate_upstream_requests_total{result="no_memory"} 1
# HELP floodgate_connections_total Client connections accepted.
# TYPE floodgate_connections_total counter
floodgate_connections_total 3
# HELP floodgate_connections_rejected_total Client connections refused over max_connections.
# TYPE floodgate_connections_rejected_total counter
floodgate_connections_rejected_total 1
# HELP floodgate_open_connections Client connections open now.
# TYPE floodgate_open_connections gauge
floodgate_open_connections 2
# HELP floodgate_config_reloads_total Configuration reloads, by result.
# TYPE floodgate_config_reloads_total counter
floodgate_config_reloads_total{result="ok"} 2
floodgate_config_reloads_total{result="error"} 1
# HELP floodgate_draining 1 while the server drains connections before exiting, else 0.
# TYPE floodgate_draining gauge
floodgate_draining 1
# HELP floodgate_store_circuit_open 1 while any store node's circuit breaker is open (calls to it refused), else 0.
# TYPE floodgate_store_circuit_open gauge
floodgate_store_circuit_open 0
# HELP floodgate_memory_store_keys States the memory store holds now.
# TYPE floodgate_memory_store_keys gauge
# HELP floodgate_memory_store_capacity Most states the memory store may hold (memory.max_keys).
# TYPE floodgate_memory_store_capacity gauge
# HELP floodgate_memory_store_evictions_total States equivalent to no state (full, expired) dropped to make room for a new one.
# TYPE floodgate_memory_store_evictions_total counter
# HELP floodgate_memory_store_refusals_total Decisions refused (on_store_error applied): the memory store was full of states that still count.
# TYPE floodgate_memory_store_refusals_total counter
# HELP floodgate_build_info Version and store kind of this instance; the value is always 1.
# TYPE floodgate_build_info gauge
floodgate_build_info{version="0.1.0",store="redis-cluster"} 1
)");
}

TEST(Metrics, ScenarioParsesAndAddsUp) {
  Metrics m(2);
  scenario(m);
  const auto s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="per-minute",outcome="denied"})"), 3u);
  EXPECT_EQ(value(s, R"(floodgate_http_requests_total{code="429"})"), 1u);
  EXPECT_EQ(s.count(R"(floodgate_http_requests_total{code="404"})"), 0u);  // codes seen only

  // Buckets are cumulative and never decrease; +Inf == _count == every result but circuit_open.
  std::uint64_t previous = 0;
  for (const char* le : {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                         "0.05", "0.1", "0.25", "0.5", "1", "+Inf"}) {
    const std::uint64_t n =
        value(s, std::string("floodgate_store_latency_seconds_bucket{le=\"") + le + "\"}");
    EXPECT_GE(n, previous) << le;
    previous = n;
  }
  const std::uint64_t count = value(s, "floodgate_store_latency_seconds_count");
  EXPECT_EQ(previous, count);
  std::uint64_t called = 0;
  for (const char* r : {"ok", "unavailable", "timeout", "error"}) {
    called += value(s, std::string("floodgate_store_requests_total{result=\"") + r + "\"}");
  }
  EXPECT_EQ(count, called);
  EXPECT_EQ(s.at("floodgate_store_latency_seconds_sum"), "2.031251");  // 50+100+101 µs+1+30 ms+2 s
}

TEST(Metrics, EmptyPageHasEveryFamilyAndTheFixedSeries) {
  Metrics m(1);
  const std::string page = m.render();
  const auto s = parse(page);
  for (const char* family :
       {"floodgate_http_requests_total", "floodgate_decisions_total",
        "floodgate_store_requests_total", "floodgate_store_latency_seconds",
        "floodgate_degraded_decisions_total", "floodgate_deny_cache_hits_total",
        "floodgate_upstream_requests_total", "floodgate_connections_total",
        "floodgate_connections_rejected_total", "floodgate_open_connections",
        "floodgate_config_reloads_total", "floodgate_draining", "floodgate_store_circuit_open",
        "floodgate_memory_store_keys", "floodgate_memory_store_capacity",
        "floodgate_memory_store_evictions_total", "floodgate_memory_store_refusals_total",
        "floodgate_build_info"}) {
    EXPECT_NE(page.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
    EXPECT_NE(page.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  }
  // Fixed label sets are printed at zero; open-ended ones have no series yet.
  EXPECT_EQ(value(s, R"(floodgate_store_requests_total{result="circuit_open"})"), 0u);
  EXPECT_EQ(value(s, R"(floodgate_degraded_decisions_total{mode="local"})"), 0u);
  EXPECT_EQ(value(s, R"(floodgate_upstream_requests_total{result="timeout"})"), 0u);
  EXPECT_EQ(value(s, R"(floodgate_store_latency_seconds_bucket{le="+Inf"})"), 0u);
  EXPECT_EQ(s.at("floodgate_store_latency_seconds_sum"), "0");
  EXPECT_EQ(page.find("floodgate_http_requests_total{"), std::string::npos);
  EXPECT_EQ(page.find("floodgate_decisions_total{"), std::string::npos);
  EXPECT_EQ(page.find("floodgate_build_info{"), std::string::npos);  // until set_info
}

// The memory store's figures as the server registers them: read at every render, one series per
// store, from a real store that is filled, spent, flooded and then frees up.
TEST(Metrics, MemoryStoreSeriesFollowTheStore) {
  ManualClock clock;
  memory::MemoryStore store(MemoryStoreOptions{.max_keys = 4, .shards = 1}, clock);
  Metrics m(1);
  m.add_memory_store("store", [&store] { return store.stats(); });
  m.add_memory_store("local_fallback", [] {
    return MemoryStoreStats{.keys = 1, .capacity = 2, .expired = 3, .evicted = 4, .refused = 5};
  });
  const Policy p = test::make_policy("p", 10, {.period = std::chrono::seconds(10)});  // 1 token/s
  const Charge spend{&p, 1};
  const auto decide = [&](const std::string& id) {
    return decide_and_wait(store, DecideRequest{id, std::span<const Charge>(&spend, 1)});
  };
  auto s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_memory_store_keys{store="store"})"), 0u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_capacity{store="store"})"), 4u);
  for (int i = 0; i < 10; ++i) decide("client-" + std::to_string(i));  // 4 held, 6 refused
  s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_memory_store_keys{store="store"})"), 4u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_refusals_total{store="store"})"), 6u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_evictions_total{store="store"})"), 0u);
  // Every bucket full again, and the time bucket of those expiries passed: the states go.
  clock.advance(std::chrono::seconds(1) + std::chrono::microseconds(memory::kExpiryBucketUs));
  ASSERT_TRUE(decide("late"));
  s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_memory_store_evictions_total{store="store"})"), 4u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_keys{store="store"})"), 1u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_keys{store="local_fallback"})"), 1u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_capacity{store="local_fallback"})"), 2u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_evictions_total{store="local_fallback"})"), 4u);
  EXPECT_EQ(value(s, R"(floodgate_memory_store_refusals_total{store="local_fallback"})"), 5u);
}

// The Redis client and upstream connection families: absent until a source is registered (the
// exact page above has none), then the sources summed, read afresh at every render, in this text.
TEST(Metrics, RedisAndUpstreamSourcesAreSummedAndRenderedExactly) {
  Metrics m(1);
  const std::string without = m.render();
  EXPECT_EQ(without.find("floodgate_redis_"), std::string::npos);
  EXPECT_EQ(without.find("floodgate_upstream_connections_total"), std::string::npos);

  RedisClientCounters a;
  a.calls = 10;
  a.errors = 3;
  a.timeouts = 1;
  a.moved = 2;
  a.asks = 1;
  a.retries = 4;
  a.function_loads_connect = 3;
  a.function_loads_missing = 1;
  a.slot_refreshes = 5;
  a.connects = 3;
  a.disconnects = 1;
  a.connect_failures = 2;
  a.reconnects = 1;
  a.writes_by_commands = {4, 1, 0, 2, 0, 0, 0, 0, 0, 1};  // 1, 2, 5-8 (twice), 300
  a.commands_written = 4 + 2 + 6 + 7 + 300;
  RedisClientCounters b;
  b.calls = 1;
  b.moved = 1;
  b.writes_by_commands[0] = 1;
  b.commands_written = 1;
  int reads = 0;
  m.add_redis_source([&] {
    ++reads;
    return a;
  });
  m.add_redis_source([&] { return b; });
  UpstreamConnectionCounters u{.opened = 5,
                               .reused = 20,
                               .retried = 1,
                               .closed = 3,
                               .connect_failed = 2,
                               .held = 4,
                               .response_bytes = 65536};
  m.add_upstream_source([&] { return u; });
  m.add_upstream_source(
      [] { return UpstreamConnectionCounters{.opened = 1, .reused = 2, .response_bytes = 100}; });

  const std::string page = m.render();
  EXPECT_EQ(reads, 1);
  parse(page);  // structure
  // The families already there come first, unchanged; the new ones sit before build_info.
  EXPECT_EQ(page.substr(0, without.find("# HELP floodgate_build_info")),
            without.substr(0, without.find("# HELP floodgate_build_info")));
  const std::string added = page.substr(without.find("# HELP floodgate_build_info"));
  EXPECT_EQ(
      added,
      R"(# HELP floodgate_redis_calls_total Redis store calls (decisions and refunds) completed, answered or failed.
# TYPE floodgate_redis_calls_total counter
floodgate_redis_calls_total 11
# HELP floodgate_redis_errors_total Redis store calls that failed, timeouts included.
# TYPE floodgate_redis_errors_total counter
floodgate_redis_errors_total 3
# HELP floodgate_redis_timeouts_total Redis store calls that failed past store_timeout.
# TYPE floodgate_redis_timeouts_total counter
floodgate_redis_timeouts_total 1
# HELP floodgate_redis_redirects_total Redis Cluster redirections followed, by kind.
# TYPE floodgate_redis_redirects_total counter
floodgate_redis_redirects_total{kind="moved"} 3
floodgate_redis_redirects_total{kind="ask"} 1
# HELP floodgate_redis_retries_total Redis commands retried with backoff (TRYAGAIN, CLUSTERDOWN, LOADING, READONLY, BUSY, a connection lost before the write).
# TYPE floodgate_redis_retries_total counter
floodgate_redis_retries_total 4
# HELP floodgate_redis_function_loads_total FUNCTION LOAD of the floodgate library, by reason (connect: at the head of the connection that loads it on a node; missing: after Function not found or NOSCRIPT).
# TYPE floodgate_redis_function_loads_total counter
floodgate_redis_function_loads_total{reason="connect"} 3
floodgate_redis_function_loads_total{reason="missing"} 1
# HELP floodgate_redis_slot_refreshes_total Redis Cluster slot map refreshes (CLUSTER SLOTS) started.
# TYPE floodgate_redis_slot_refreshes_total counter
floodgate_redis_slot_refreshes_total 5
# HELP floodgate_redis_connections_total Redis connections, by event (opened: established; lost: established and then lost; failed: never established).
# TYPE floodgate_redis_connections_total counter
floodgate_redis_connections_total{event="opened"} 3
floodgate_redis_connections_total{event="lost"} 1
floodgate_redis_connections_total{event="failed"} 2
# HELP floodgate_redis_reconnects_total Redis connections established again to a node after the previous one was lost.
# TYPE floodgate_redis_reconnects_total counter
floodgate_redis_reconnects_total 1
# HELP floodgate_redis_pipeline_commands_per_write Redis commands carried by each socket write (auto-pipelining depth).
# TYPE floodgate_redis_pipeline_commands_per_write histogram
floodgate_redis_pipeline_commands_per_write_bucket{le="1"} 5
floodgate_redis_pipeline_commands_per_write_bucket{le="2"} 6
floodgate_redis_pipeline_commands_per_write_bucket{le="4"} 6
floodgate_redis_pipeline_commands_per_write_bucket{le="8"} 8
floodgate_redis_pipeline_commands_per_write_bucket{le="16"} 8
floodgate_redis_pipeline_commands_per_write_bucket{le="32"} 8
floodgate_redis_pipeline_commands_per_write_bucket{le="64"} 8
floodgate_redis_pipeline_commands_per_write_bucket{le="128"} 8
floodgate_redis_pipeline_commands_per_write_bucket{le="256"} 8
floodgate_redis_pipeline_commands_per_write_bucket{le="+Inf"} 9
floodgate_redis_pipeline_commands_per_write_sum 320
floodgate_redis_pipeline_commands_per_write_count 9
# HELP floodgate_upstream_connections_total Upstream (proxy) connections, by event (opened - closed are open now; retried: a reused connection found closed upstream, the request sent on a new one).
# TYPE floodgate_upstream_connections_total counter
floodgate_upstream_connections_total{event="opened"} 6
floodgate_upstream_connections_total{event="reused"} 22
floodgate_upstream_connections_total{event="retried"} 1
floodgate_upstream_connections_total{event="closed"} 3
floodgate_upstream_connections_total{event="connect_failed"} 2
# HELP floodgate_upstream_held_exchanges Upstream exchanges held past their client's 504 now: their concurrency slots stay taken until the upstream answers (upstream_hold_timeout).
# TYPE floodgate_upstream_held_exchanges gauge
floodgate_upstream_held_exchanges 4
# HELP floodgate_upstream_response_bytes Bytes of upstream response bodies held now, being read or written to clients (server.max_response_memory).
# TYPE floodgate_upstream_response_bytes gauge
floodgate_upstream_response_bytes 65636
# HELP floodgate_build_info Version and store kind of this instance; the value is always 1.
# TYPE floodgate_build_info gauge
)");

  // Read at every render.
  a.asks = 7;
  u.reused = 30;
  const auto s = parse(m.render());
  EXPECT_EQ(reads, 2);
  EXPECT_EQ(value(s, R"(floodgate_redis_redirects_total{kind="ask"})"), 7u);
  EXPECT_EQ(value(s, R"(floodgate_upstream_connections_total{event="reused"})"), 32u);
  EXPECT_EQ(value(s, "floodgate_upstream_held_exchanges"), 4u);
  EXPECT_EQ(value(s, "floodgate_upstream_response_bytes"), 65636u);
}

TEST(Metrics, StatusCodeBounds) {
  Metrics m(1);
  for (int status : {99, 100, 599, 600, -1, 0}) m.shard(0).on_request(status);
  const auto s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_http_requests_total{code="100"})"), 1u);
  EXPECT_EQ(value(s, R"(floodgate_http_requests_total{code="599"})"), 1u);
  EXPECT_EQ(value(s, R"(floodgate_http_requests_total{code="other"})"), 4u);
}

TEST(Metrics, NegativeLatencyCountsAsZeroAndShardIndexWraps) {
  Metrics m(3);
  EXPECT_EQ(&m.shard(4), &m.shard(1));
  EXPECT_EQ(m.shard_count(), 3u);
  m.shard(7).on_store(StoreResult::kOk, Duration(-5));
  const auto s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_store_latency_seconds_bucket{le="0.0001"})"), 1u);
  EXPECT_EQ(s.at("floodgate_store_latency_seconds_sum"), "0");
}

TEST(Metrics, ShardsSitOnTheirOwnCacheLines) {
  Metrics m(3);
  const auto a = reinterpret_cast<std::uintptr_t>(&m.shard(0));
  const auto b = reinterpret_cast<std::uintptr_t>(&m.shard(1));
  EXPECT_EQ(a % kShardAlignment, 0u);
  EXPECT_EQ(b % kShardAlignment, 0u);
  EXPECT_GE(b - a, sizeof(ThreadMetrics));
  EXPECT_EQ(sizeof(ThreadMetrics) % kShardAlignment, 0u);
}

TEST(Metrics, ZeroShardsMeansOne) {
  Metrics m(0);
  EXPECT_EQ(m.shard_count(), 1u);
  m.shard(5).on_connection_open();
  EXPECT_EQ(value(parse(m.render()), "floodgate_connections_total"), 1u);
}

TEST(Metrics, OpenConnectionsNeverGoesNegative) {
  Metrics m(2);
  m.shard(0).on_connection_open();
  m.shard(1).on_connection_close();  // closed on another shard than it opened: sums still work
  m.shard(1).on_connection_close();  // a caller bug: one close too many
  EXPECT_EQ(value(parse(m.render()), "floodgate_open_connections"), 0u);
}

TEST(Metrics, PolicyIdsAreStableAndOverflowToOther) {
  Metrics m(1);
  const std::size_t a = m.policy_id("per-minute");
  const std::size_t b = m.policy_id("per-second");
  EXPECT_NE(a, b);
  EXPECT_EQ(m.policy_id("per-minute"), a);
  m.shard(0).on_decision(a, PolicyOutcome::kDenied);

  // A config reload asks again: same id, counts kept.
  EXPECT_EQ(m.policy_id("per-minute"), a);
  m.shard(0).on_decision(m.policy_id("per-minute"), PolicyOutcome::kDenied);

  // Fill the table: kMaxPolicyIds distinct names in all, then overflow.
  std::set<std::size_t> ids = {a, b};
  for (std::size_t i = 2; i < kMaxPolicyIds; ++i) {
    const std::size_t id = m.policy_id("p" + std::to_string(i));
    EXPECT_LT(id, kMaxPolicyIds);
    EXPECT_TRUE(ids.insert(id).second);
  }
  EXPECT_EQ(m.policy_id("one-too-many"), kOtherPolicyId);
  EXPECT_EQ(m.policy_id("two-too-many"), kOtherPolicyId);
  EXPECT_EQ(m.policy_id("per-second"), b);  // known names keep their ids
  EXPECT_EQ(m.policy_id("_other"), kOtherPolicyId);

  m.shard(0).on_decision(m.policy_id("one-too-many"), PolicyOutcome::kAllowed);
  m.shard(0).on_decision(m.policy_id("two-too-many"), PolicyOutcome::kAllowed);
  m.shard(0).on_decision(kOtherPolicyId + 7, PolicyOutcome::kShadowDenied);  // out of range

  const auto s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="per-minute",outcome="denied"})"), 2u);
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="_other",outcome="allowed"})"), 2u);
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="_other",outcome="shadow_denied"})"), 1u);
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="p1023",outcome="allowed"})"), 0u);
  EXPECT_EQ(s.count(R"(floodgate_decisions_total{policy="one-too-many",outcome="allowed"})"), 0u);
}

TEST(Metrics, APolicyNamedOtherSharesTheOverflowSeries) {
  Metrics m(1);
  m.shard(0).on_decision(m.policy_id("_other"), PolicyOutcome::kDenied);
  const std::string page = m.render();
  const auto s = parse(page);  // parse() fails on a duplicated series
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="_other",outcome="denied"})"), 1u);
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label_value("plain-name.1"), "plain-name.1");
  EXPECT_EQ(escape_label_value("a\"b"), "a\\\"b");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("a\nb"), "a\\nb");
  EXPECT_EQ(escape_label_value("\\n"), "\\\\n");  // a backslash then 'n', not a newline

  Metrics m(1);
  m.set_info("1.0\"beta\"\n", "C:\\redis");
  m.shard(0).on_decision(m.policy_id("we\"ird\\na\nme"), PolicyOutcome::kAllowed);
  const std::string page = m.render();
  EXPECT_NE(page.find(R"(floodgate_build_info{version="1.0\"beta\"\n",store="C:\\redis"} 1)"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find(R"(floodgate_decisions_total{policy="we\"ird\\na\nme",outcome="allowed"} 1)"),
            std::string::npos)
      << page;
  parse(page);  // still one sample per line
}

TEST(Metrics, SetInfoLastCallWins) {
  Metrics m(1);
  m.set_info("0.1.0", "memory");
  m.set_info("0.2.0", "redis");
  const auto s = parse(m.render());
  EXPECT_EQ(value(s, R"(floodgate_build_info{version="0.2.0",store="redis"})"), 1u);
  EXPECT_EQ(s.count(R"(floodgate_build_info{version="0.1.0",store="memory"})"), 0u);
}

// Four writers on their own shards plus all of them on a shared one, and a reader rendering the
// whole time: the final totals are exact, and every intermediate page is well-formed with
// non-decreasing counters.
TEST(Metrics, ExactTotalsUnderThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100'000;
  constexpr int kShared = 10'000;
  Metrics m(kThreads + 1);
  const std::size_t policy = m.policy_id("per-minute");
  std::latch start(kThreads + 1);
  std::atomic<int> running{kThreads};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ThreadMetrics& own = m.shard(static_cast<std::size_t>(t));
      ThreadMetrics& shared = m.shard(kThreads);
      start.arrive_and_wait();
      for (int i = 0; i < kPerThread; ++i) {
        own.on_request(200);
        own.on_decision(policy, PolicyOutcome::kAllowed);
        own.on_store(StoreResult::kOk, microseconds(10));
        own.on_connection_open();
        own.on_connection_close();
      }
      for (int i = 0; i < kShared; ++i) {
        shared.on_request(429);
        shared.on_decision(policy, PolicyOutcome::kDenied);
        shared.on_store(StoreResult::kTimeout, milliseconds(1));
        shared.on_degraded(DegradedMode::kLocal);
        shared.on_upstream(UpstreamResult::kUnavailable);
      }
      running.fetch_sub(1);
    });
  }
  threads.emplace_back([&] {
    start.arrive_and_wait();
    std::uint64_t last_allowed = 0;
    while (running.load() > 0) {
      const auto s = parse(m.render());
      const std::uint64_t allowed =
          value(s, R"(floodgate_decisions_total{policy="per-minute",outcome="allowed"})");
      EXPECT_GE(allowed, last_allowed);
      last_allowed = allowed;
      EXPECT_EQ(value(s, R"(floodgate_store_latency_seconds_bucket{le="+Inf"})"),
                value(s, "floodgate_store_latency_seconds_count"));
    }
  });
  for (auto& t : threads) t.join();

  const auto s = parse(m.render());
  constexpr std::uint64_t kOwn = std::uint64_t{kThreads} * kPerThread;
  constexpr std::uint64_t kSharedTotal = std::uint64_t{kThreads} * kShared;
  EXPECT_EQ(value(s, R"(floodgate_http_requests_total{code="200"})"), kOwn);
  EXPECT_EQ(value(s, R"(floodgate_http_requests_total{code="429"})"), kSharedTotal);
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="per-minute",outcome="allowed"})"), kOwn);
  EXPECT_EQ(value(s, R"(floodgate_decisions_total{policy="per-minute",outcome="denied"})"),
            kSharedTotal);
  EXPECT_EQ(value(s, R"(floodgate_store_requests_total{result="ok"})"), kOwn);
  EXPECT_EQ(value(s, R"(floodgate_store_requests_total{result="timeout"})"), kSharedTotal);
  EXPECT_EQ(value(s, R"(floodgate_store_latency_seconds_bucket{le="0.0001"})"), kOwn);
  EXPECT_EQ(value(s, R"(floodgate_store_latency_seconds_bucket{le="0.001"})"), kOwn + kSharedTotal);
  EXPECT_EQ(value(s, "floodgate_store_latency_seconds_count"), kOwn + kSharedTotal);
  // 400,000 × 10 µs + 40,000 × 1 ms = 4 s + 40 s.
  EXPECT_EQ(s.at("floodgate_store_latency_seconds_sum"), "44");
  EXPECT_EQ(value(s, R"(floodgate_degraded_decisions_total{mode="local"})"), kSharedTotal);
  EXPECT_EQ(value(s, R"(floodgate_upstream_requests_total{result="unavailable"})"), kSharedTotal);
  EXPECT_EQ(value(s, "floodgate_connections_total"), kOwn);
  EXPECT_EQ(value(s, "floodgate_open_connections"), 0u);
}

TEST(Metrics, PolicyIdAndRenderFromManyThreads) {
  Metrics m(2);
  std::latch start(4);
  std::vector<std::thread> threads;
  std::vector<std::vector<std::size_t>> ids(3);
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 200; ++i) {
        ids[static_cast<std::size_t>(t)].push_back(m.policy_id("p" + std::to_string(i)));
      }
    });
  }
  threads.emplace_back([&] {
    start.arrive_and_wait();
    for (int i = 0; i < 20; ++i) parse(m.render());
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids[0], ids[1]);  // every thread saw the same id for the same name
  EXPECT_EQ(ids[1], ids[2]);
  EXPECT_EQ(std::set<std::size_t>(ids[0].begin(), ids[0].end()).size(), 200u);
}

}  // namespace
}  // namespace fg::decide
