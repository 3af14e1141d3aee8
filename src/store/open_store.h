// open_store.h — the Store a store URL names: memory://, redis://, rediss://, redis-cluster://.
//
// The one place that knows every store, so the CLI and the server wire stores the same way.
// kInvalidArgument for options a store refuses (unreadable TLS files, non-positive timeouts).
// A Redis store connects lazily: a server that is down shows up as errors of its decisions.
//
// Thread safety: a plain function.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "config/values.h"
#include "floodgate/clock.h"
#include "floodgate/store.h"
#include "store/redis/redis_store.h"

namespace fg {

struct OpenStoreOptions {
  std::string key_prefix = "fg";                      // Redis keys: <prefix>:{<tag>}:<id>:<policy>
  std::string key_secret;                             // keys the tag (store/redis/keys.h)
  Duration timeout = std::chrono::milliseconds(20);   // deadline of one decision (store_timeout)
  MemoryStoreOptions memory;                          // for memory://
};

// `clock` is used by the memory store only and must outlive it.
Result<std::unique_ptr<Store>> open_store(const config::StoreUrl& url,
                                          const OpenStoreOptions& options, const Clock& clock);

// A store for a server of I/O threads, each running its own io_context, and how to wire it to
// them: a store with connections per I/O thread (Redis) is bound to each thread as it starts and
// unbound as it ends; the others need nothing (the hooks then do nothing).
struct ServedStore {
  std::shared_ptr<Store> store;
  std::function<void(boost::asio::io_context&)> bind_thread = [](boost::asio::io_context&) {};
  std::function<void()> unbind_thread = [] {};
  // A Redis store's client counters (for /metrics); empty for any other store.
  std::function<redis::RedisStoreStats()> redis_stats;
};
// The same wiring for a store opened elsewhere (a test's, or open_store's).
ServedStore serve_store(std::shared_ptr<Store> store);
Result<ServedStore> open_served_store(const config::StoreUrl& url, const OpenStoreOptions& options,
                                      const Clock& clock);

}  // namespace fg
