// open_store.h — the Store a store URL names: memory://, redis://, rediss://, redis-cluster://.
//
// The one place that knows every store, so the CLI and the server wire stores the same way.
// kInvalidArgument for options a store refuses (unreadable TLS files, non-positive timeouts).
// A Redis store connects lazily: a server that is down shows up as errors of its decisions.
//
// Thread safety: a plain function.
#pragma once

#include <memory>
#include <string>

#include "config/values.h"
#include "floodgate/clock.h"
#include "floodgate/store.h"

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

}  // namespace fg
