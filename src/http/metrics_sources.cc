#include "http/metrics_sources.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

namespace fg::http {

// RedisStoreStats::write_sizes has exactly the buckets of kPipelineDepthBuckets, +Inf last.
static_assert(redis::kWriteSizeStatsBuckets == kPipelineDepthBuckets.size() + 1);
static_assert(kPipelineDepthBuckets.front() == 1 && kPipelineDepthBuckets.back() == 256);

RedisClientCounters to_metrics(const redis::RedisStoreStats& s) {
  RedisClientCounters c;
  c.calls = s.decisions;
  c.errors = s.errors;
  c.timeouts = s.timeouts;
  c.moved = s.moved;
  c.asks = s.asks;
  c.retries = s.retries;
  // The connection that loads the library on a node sends it ahead of anything else
  // (redis_store.h, "Scripts").
  c.function_loads_connect = s.loads;
  c.function_loads_missing = s.reloads;
  c.slot_refreshes = s.refreshes;
  c.connects = s.connects;
  c.disconnects = s.disconnects;
  c.connect_failures = s.connect_failures;
  c.reconnects = s.reconnects;
  for (std::size_t i = 0; i < c.writes_by_commands.size(); ++i) {
    c.writes_by_commands[i] = s.write_sizes[i];
  }
  c.commands_written = s.written_commands;
  return c;
}

void add_redis_store_metrics(Metrics& metrics, std::function<redis::RedisStoreStats()> stats) {
  metrics.add_redis_source([stats = std::move(stats)] { return to_metrics(stats()); });
}

void add_upstream_metrics(Metrics& metrics,
                          std::vector<std::shared_ptr<const UpstreamCounters>> counters,
                          const std::atomic<int>* held,
                          const std::atomic<std::size_t>* response_bytes) {
  metrics.add_upstream_source([all = std::move(counters), held, response_bytes] {
    const auto read = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    UpstreamConnectionCounters t;
    for (const auto& c : all) {
      // Closes before opens: a close follows its open, so opened - closed rarely dips below
      // what is open (relaxed loads do not promise it).
      t.closed += read(c->closes);
      t.opened += read(c->connects);
      t.reused += read(c->reuses);
      t.retried += read(c->retries);
      t.connect_failed += read(c->connect_failures);
    }
    t.held = static_cast<std::uint64_t>(std::max(0, held->load(std::memory_order_relaxed)));
    t.response_bytes = response_bytes->load(std::memory_order_relaxed);
    return t;
  });
}

}  // namespace fg::http
