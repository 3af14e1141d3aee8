#include "store/open_store.h"

#include "store/redis/redis_store.h"

namespace fg {

Result<std::unique_ptr<Store>> open_store(const config::StoreUrl& url,
                                          const OpenStoreOptions& options, const Clock& clock) {
  if (url.kind == config::StoreKind::kMemory) return make_memory_store(options.memory, clock);
  redis::RedisStoreOptions redis_options;
  redis_options.url = url;
  redis_options.key_prefix = options.key_prefix;
  redis_options.key_secret = options.key_secret;
  redis_options.timeout = options.timeout;
  return redis::make_redis_store(redis_options);
}

}  // namespace fg
