// metrics_sources.h — the store's and the upstream pools' own counters as /metrics sources.
//
// What: Metrics (metrics.h) knows no store or pool type; it reads plain RedisClientCounters and
// UpstreamConnectionCounters from functions registered with add_redis_source() and
// add_upstream_source(). These helpers are those functions: they translate
// redis::RedisStore::stats() and UpstreamCounters into them, at render (scrape) time only.
//
// Thread safety: the registered functions may be called from any thread (RedisStore::stats()
// takes the store's registration mutex; UpstreamCounters are relaxed atomics).
//
// Failure: none.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "decide/metrics.h"
#include "http/upstream.h"
#include "store/redis/redis_store.h"

namespace fg::http {

using decide::kPipelineDepthBuckets;
using decide::Metrics;
using decide::RedisClientCounters;
using decide::UpstreamConnectionCounters;

// The figures of a RedisStore as Metrics counts them.
RedisClientCounters to_metrics(const redis::RedisStoreStats& stats);

// Registers `store`'s stats() with `metrics` (the floodgate_redis_* families). `store` must
// outlive every later metrics.render().
void add_redis_store_metrics(Metrics& metrics, std::function<redis::RedisStoreStats()> stats);

// Registers the sum of `counters` (one per I/O thread, each shared by every pool that thread
// creates) with `metrics` (floodgate_upstream_connections_total). The counters are kept alive
// by the registration. `held` (the server's count of exchanges held past their 504) and
// `response_bytes` (the bytes of response memory leased now) must outlive `metrics`' renders.
void add_upstream_metrics(Metrics& metrics,
                          std::vector<std::shared_ptr<const UpstreamCounters>> counters,
                          const std::atomic<int>* held,
                          const std::atomic<std::size_t>* response_bytes);

}  // namespace fg::http
