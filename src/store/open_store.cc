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

ServedStore serve_store(std::shared_ptr<Store> store) {
  ServedStore out;
  if (auto* redis = dynamic_cast<redis::RedisStore*>(store.get())) {
    out.bind_thread = [redis](boost::asio::io_context& ioc) { redis->bind_current_thread(ioc); };
    out.unbind_thread = [redis] { redis->unbind_current_thread(); };
    out.redis_stats = [redis] { return redis->stats(); };
  }
  out.store = std::move(store);
  return out;
}

Result<ServedStore> open_served_store(const config::StoreUrl& url, const OpenStoreOptions& options,
                                      const Clock& clock) {
  auto s = open_store(url, options, clock);
  if (!s) return tl::unexpected(s.error());
  return serve_store(std::shared_ptr<Store>(std::move(*s)));
}

}  // namespace fg
