// asio_recycling_test.cc — Asio's per-thread cache of freed operation and coroutine-frame
// blocks, as this build sizes it (BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE in
// cmake/floodgate.cmake), holds what one server thread has in flight: once warm, rounds of a few
// connections' timer waits, posts and coroutine frames take (almost) nothing from the heap.
// Asio's default of 2 blocks per purpose did not: each miss is an aligned allocation
// (bench/instructions.sh counted ~7 per request on one Redis).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "count_aligned_allocations.h"

namespace {

using count_aligned_allocations::aligned_allocations;

namespace asio = boost::asio;

// One connection's share of a round: a coroutine (its frame), a timer wait inside a nested
// coroutine (an operation and a second frame of another size), and a post.
asio::awaitable<void> wait_once(asio::steady_timer& timer) {
  timer.expires_after(std::chrono::microseconds(1));
  co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> connection(asio::io_context& ioc, int& done) {
  asio::steady_timer timer(ioc);
  co_await wait_once(timer);
  co_await asio::post(ioc, asio::use_awaitable);
  ++done;
}

// `rounds` rounds of `connections` concurrent connections, all started from the io_context's own
// thread (where the cache lives); the aligned allocations of the rounds after the first.
long aligned_allocations_when_warm(int connections, int rounds) {
  asio::io_context ioc{1};
  long after_first = -1;
  int done = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (int r = 0; r < rounds; ++r) {
          if (r == 1) after_first = aligned_allocations();
          const int target = done + connections;
          for (int c = 0; c < connections; ++c) {
            asio::co_spawn(ioc, connection(ioc, done), asio::detached);
          }
          asio::steady_timer pause(ioc);
          while (done < target) {
            pause.expires_after(std::chrono::microseconds(50));
            co_await pause.async_wait(asio::use_awaitable);
          }
        }
      },
      asio::detached);
  ioc.run();
  EXPECT_EQ(done, connections * rounds);
  return aligned_allocations() - after_first;
}

// Each connection here spawns its coroutines afresh every round (a server's sessions persist):
// three frames, an operation and a post per connection and round. With Asio's default cache
// every connection misses 5 times a round (285 for these 19 warm rounds); with this build's, a
// few blocks in the whole run, as differently sized blocks settle into their slots.
TEST(AsioRecycling, ThreeConnectionsRoundsTakeAlmostNothingFromTheHeapOnceWarm) {
  const int rounds = 20;
  EXPECT_LT(aligned_allocations_when_warm(3, rounds), rounds - 1);
}

}  // namespace
