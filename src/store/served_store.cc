#include "store/served_store.h"

#include <utility>

namespace fg {

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

}  // namespace fg
