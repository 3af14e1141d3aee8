// redis_test_util.h — helpers shared by the Redis store's integration tests: starting servers
// (skipping when redis-server is not installed), running an io_context until a condition holds,
// deciding from a bound I/O thread, and a few policies.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/redis_server.h"
#include "floodgate/policy.h"
#include "store/redis/redis_store.h"
#include "test_policy.h"

namespace fg::redis::testing {

// Starts a RedisServer into `var`; skips the test if redis-server is not installed, fails it if
// the server cannot start.
#define FG_START_REDIS(var, options)                                         \
  std::unique_ptr<::fg::test::RedisServer> var;                              \
  do {                                                                       \
    std::string why_start;                                                   \
    var = ::fg::test::RedisServer::start(options, &why_start);               \
    if (!var) {                                                              \
      if (!::fg::test::RedisServer::installed()) FG_MISSING_TOOL(why_start); \
      FAIL() << why_start;                                                   \
    }                                                                        \
  } while (0)

// Runs `ioc` on this thread until `done()` or `bound` elapses; false on timeout.
inline bool run_until(boost::asio::io_context& ioc, const std::function<bool()>& done,
                      std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (ioc.stopped()) ioc.restart();
    ioc.run_one_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Polls `done()` every few milliseconds until it holds or `bound` elapses.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Runs `make_decisions` in one handler on a thread bound to `store`, after a warm-up decision
// (the connection and the library) and `after_warm_up` (on the test's thread), and waits until
// `expected` callbacks have run.
template <typename F>
inline void on_bound_thread(RedisStore& store, int expected, F make_decisions,
                     const std::function<void()>& after_warm_up = {}) {
  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  std::thread io([&] { ioc.run(); });
  const Policy warm = ::fg::test::make_policy("warm-up", 1000);
  std::promise<void> warmed, all_done;
  boost::asio::post(ioc, [&] {
    store.bind_current_thread(ioc);
    const std::vector<Charge> charges = {{&warm, 1}};
    store.decide(DecideRequest{"warm-up", charges}, [&](Result<Verdict>) { warmed.set_value(); });
  });
  EXPECT_EQ(warmed.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  if (after_warm_up) after_warm_up();
  auto left = std::make_shared<std::atomic<int>>(expected);
  auto one_done = [&, left] {
    if (--*left == 0) all_done.set_value();
  };
  boost::asio::post(ioc, [&] { make_decisions(one_done); });
  EXPECT_EQ(all_done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  std::promise<void> unbound;
  boost::asio::post(ioc, [&] {
    store.unbind_current_thread();
    unbound.set_value();
  });
  unbound.get_future().wait();
  work.reset();
  io.join();
}

}  // namespace fg::redis::testing
