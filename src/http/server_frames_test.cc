// server_frames_test.cc — a request that waits for its store or its upstream runs in coroutines
// (respond(), the store's completion, serve()), whose frames Asio takes from a per-thread cache
// that recycles blocks of at most 1,020 bytes. A larger frame is an aligned allocation for every
// request, and evicts a cached block that the next smaller frame then allocates again: with
// respond() at 2,352 bytes, one Redis cost ~2.5 aligned allocations per request
// (bench/instructions.sh). Counted here through the running server, on a kept-alive connection.
#include <gtest/gtest.h>

#include "count_aligned_allocations.h"
#include "fixtures/redis_server.h"
#include "http/server_test_util.h"

namespace fg::http::test {
namespace {

using count_aligned_allocations::aligned_allocations;

constexpr std::string_view kConfig = R"(
listen: 127.0.0.1:0
threads: 1
identity: [{header: X-API-Key}]
policies:
  - {name: roomy, match: {path_prefix: /api/}, limit: 100000, period: 1h}
)";

constexpr int kWarm = 20;
constexpr int kRequests = 200;

// The aligned allocations of this process while one kept-alive client sends kRequests requests,
// after kWarm of them; -1 when a request is not answered 200.
long aligned_allocations_over(std::uint16_t port) {
  Client c(port);
  for (int i = 0; i < kWarm; ++i) {
    auto res = c.get("/api/warm", {{"X-API-Key", "k"}});
    if (!res || res->result_int() != 200) return -1;
  }
  const long before = aligned_allocations();
  for (int i = 0; i < kRequests; ++i) {
    auto res = c.get("/api/x", {{"X-API-Key", "k"}});
    if (!res || res->result_int() != 200) return -1;
  }
  return aligned_allocations() - before;
}

void expect_frames_recycled(const Running& r) {
  ASSERT_TRUE(r.server);
  const long aligned = aligned_allocations_over(r.port);
  ASSERT_GE(aligned, 0) << "a request was not answered 200";
  EXPECT_LT(aligned, kRequests / 10)
      << aligned << " aligned allocations in " << kRequests << " requests";
}

TEST(ServerFrames, ARequestDecidedByRedisTakesNoFrameFromTheHeap) {
  if (!fg::test::RedisServer::installed()) GTEST_SKIP() << "redis-server is not installed";
  std::string why;
  auto redis = fg::test::RedisServer::start({}, &why);
  ASSERT_TRUE(redis) << why;
  expect_frames_recycled(
      start_server(std::string(kConfig) + "store: redis://" + redis->address() + "\n"));
}

TEST(ServerFrames, AProxiedRequestTakesNoFrameFromTheHeap) {
  Running up = start_server(kConfig);  // another floodgate, answering its demo resource
  ASSERT_TRUE(up.server);
  expect_frames_recycled(start_server(
      std::string(kConfig) + "upstream: http://127.0.0.1:" + std::to_string(up.port) + "\n"));
}

}  // namespace
}  // namespace fg::http::test
