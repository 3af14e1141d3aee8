// redis_test_util.h — helpers shared by the Redis store's integration tests: starting servers
// (skipping when redis-server is not installed), running an io_context until a condition holds,
// and a few policies.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "fixtures/redis_server.h"
#include "floodgate/policy.h"
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

}  // namespace fg::redis::testing
