// served_store.h — a store wired to a server of I/O threads, each running its own io_context: a
// store with connections per I/O thread (Redis) is bound to each thread as it starts and unbound
// as it ends; the others need nothing (the hooks then do nothing). Also the store's own figures
// for /metrics, where it has some the Store interface does not carry.
//
// Thread safety: the hooks are called on the threads they bind.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>

#include "floodgate/store.h"
#include "store/redis/redis_store.h"

namespace fg {

struct ServedStore {
  std::shared_ptr<Store> store;
  std::function<void(boost::asio::io_context&)> bind_thread = [](boost::asio::io_context&) {};
  std::function<void()> unbind_thread = [] {};
  // A Redis store's client counters (for /metrics); empty for any other store.
  std::function<redis::RedisStoreStats()> redis_stats;
};

ServedStore serve_store(std::shared_ptr<Store> store);

}  // namespace fg
