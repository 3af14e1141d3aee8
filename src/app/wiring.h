// wiring.h — the configuration translated into the stores' own options, and the Store a store
// URL names: memory://, redis://, rediss://, redis-cluster://. The one place that knows both the
// configuration and every store (docs/architecture.md: stores know no config), so the CLI, the
// server and the tests wire stores the same way.
//
// kInvalidArgument for options a store refuses (unreadable TLS files, non-positive timeouts).
// A Redis store connects lazily: a server that is down shows up as errors of its decisions.
// Thread safety: plain functions.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config/values.h"
#include "floodgate/clock.h"
#include "floodgate/store.h"
#include "store/redis/redis_store.h"
#include "store/served_store.h"

namespace fg {

struct OpenStoreOptions {
  std::string key_prefix = "fg";                     // Redis keys: <prefix>:{<tag>}:<id>:<policy>
  std::string key_secret;                            // keys the tag (store/redis/keys.h)
  Duration timeout = std::chrono::milliseconds(20);  // deadline of one decision (store_timeout)
  MemoryStoreOptions memory;                         // for memory://
};

// The options `config` gives the store it names (key_prefix, key_secret, store_timeout, memory).
OpenStoreOptions store_options(const config::Config& config);

// A Redis store URL (not memory://) as the Redis store's endpoint.
redis::RedisEndpoint redis_endpoint(const config::StoreUrl& url);

Result<std::unique_ptr<Store>> open_store(const config::StoreUrl& url,
                                          const OpenStoreOptions& options, const Clock& clock);
Result<ServedStore> open_served_store(const config::StoreUrl& url, const OpenStoreOptions& options,
                                      const Clock& clock);

}  // namespace fg

namespace fg::redis {

// config::parse_store_url into options.url, refusing memory://. Other fields are left as they
// are. kInvalidArgument for a bad URL.
Result<void> parse_redis_url(std::string_view text, RedisStoreOptions& options);

}  // namespace fg::redis
