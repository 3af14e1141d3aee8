// The breaker's transitions with literal timestamps: no clock, no sleeps.
#include "decide/circuit_breaker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

namespace fg::decide {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;
using State = CircuitBreaker::State;

const Timestamp kT0 = from_us(1'800'000'000'000'000);

Timestamp at(Duration d) { return kT0 + d; }

void fail(CircuitBreaker& b, int n, Timestamp now) {
  for (int i = 0; i < n; ++i) b.on_failure(now);
}

// Opens a default breaker (threshold 5, 500 ms) at kT0.
void open_at_t0(CircuitBreaker& b) {
  fail(b, b.options().failure_threshold, kT0);
  ASSERT_EQ(b.state(), State::kOpen);
}

TEST(CircuitBreaker, StartsClosedAndAllows) {
  CircuitBreaker b;
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.allow(kT0));
  b.on_success();
  EXPECT_TRUE(b.allow(kT0));
  EXPECT_EQ(b.times_opened(), 0u);
}

TEST(CircuitBreaker, OpensAtTheThresholdOfConsecutiveFailures) {
  CircuitBreaker b;
  fail(b, 4, kT0);
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.allow(kT0));
  b.on_failure(kT0);
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_EQ(b.times_opened(), 1u);
  EXPECT_FALSE(b.allow(kT0));
  EXPECT_FALSE(b.allow(at(milliseconds(499))));
}

TEST(CircuitBreaker, ASuccessResetsTheCount) {
  CircuitBreaker b;
  fail(b, 4, kT0);
  b.on_success();
  fail(b, 4, kT0);  // 4 consecutive again, not 8
  EXPECT_EQ(b.state(), State::kClosed);
  b.on_failure(kT0);
  EXPECT_EQ(b.state(), State::kOpen);
}

TEST(CircuitBreaker, OneProbeAfterTheWaitThenRecovery) {
  CircuitBreaker b;
  open_at_t0(b);
  EXPECT_FALSE(b.allow(at(milliseconds(499))));
  EXPECT_TRUE(b.allow(at(milliseconds(500))));  // the probe
  EXPECT_EQ(b.state(), State::kHalfOpen);
  EXPECT_FALSE(b.allow(at(milliseconds(500))));  // everyone else waits for it
  EXPECT_FALSE(b.allow(at(milliseconds(900))));
  b.on_success();
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.allow(at(milliseconds(900))));
  EXPECT_TRUE(b.allow(at(milliseconds(901))));
  EXPECT_EQ(b.times_opened(), 1u);
}

TEST(CircuitBreaker, FailedProbesDoubleTheWaitUpToTheCap) {
  CircuitBreaker b;  // 500 ms doubling, capped at 5 s
  open_at_t0(b);
  Timestamp opened = kT0;
  // Wait after each opening: the first is 500 ms, then each failed probe doubles it.
  for (Duration wait : {Duration(milliseconds(500)), Duration(seconds(1)), Duration(seconds(2)),
                        Duration(seconds(4)), Duration(seconds(5)), Duration(seconds(5))}) {
    EXPECT_FALSE(b.allow(opened + wait - Duration(1))) << wait.count();
    EXPECT_TRUE(b.allow(opened + wait)) << wait.count();
    EXPECT_EQ(b.state(), State::kHalfOpen);
    opened = opened + wait + milliseconds(10);  // the probe fails 10 ms later
    b.on_failure(opened);
    EXPECT_EQ(b.state(), State::kOpen);
  }
  EXPECT_EQ(b.times_opened(), 7u);  // the first opening and six failed probes
}

TEST(CircuitBreaker, RecoveryResetsTheBackoff) {
  CircuitBreaker b;
  open_at_t0(b);
  ASSERT_TRUE(b.allow(at(milliseconds(500))));
  b.on_failure(at(milliseconds(500)));  // reopened for 1 s
  ASSERT_TRUE(b.allow(at(milliseconds(1500))));
  b.on_success();
  EXPECT_EQ(b.state(), State::kClosed);

  // The next outage waits 500 ms again, and needs the full threshold again.
  const Timestamp t = at(seconds(10));
  fail(b, 4, t);
  EXPECT_EQ(b.state(), State::kClosed);
  b.on_failure(t);
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_FALSE(b.allow(t + milliseconds(499)));
  EXPECT_TRUE(b.allow(t + milliseconds(500)));
}

TEST(CircuitBreaker, AnySuccessClosesEvenWhileOpen) {
  CircuitBreaker b;
  open_at_t0(b);
  b.on_success();  // a call started before the opening succeeded: the store answers
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.allow(kT0));
}

TEST(CircuitBreaker, FailuresWhileOpenAreIgnored) {
  CircuitBreaker b;
  open_at_t0(b);
  fail(b, 100, at(milliseconds(400)));  // late reports of calls from before the opening
  EXPECT_EQ(b.times_opened(), 1u);
  EXPECT_TRUE(b.allow(at(milliseconds(500))));  // the wait did not move
}

TEST(CircuitBreaker, AProbeThatNeverReportsFreesTheSlotAfterProbeTimeout) {
  CircuitBreaker b;  // probe_timeout 5 s
  open_at_t0(b);
  const Timestamp probe = at(milliseconds(500));
  ASSERT_TRUE(b.allow(probe));
  EXPECT_FALSE(b.allow(probe + seconds(1)));
  EXPECT_FALSE(b.allow(probe + seconds(5) - Duration(1)));
  EXPECT_TRUE(b.allow(probe + seconds(5)));  // a second probe
  EXPECT_EQ(b.state(), State::kHalfOpen);
  EXPECT_FALSE(b.allow(probe + seconds(5)));  // and only one
  EXPECT_FALSE(b.allow(probe + seconds(10) - Duration(1)));
  b.on_failure(probe + seconds(6));  // it fails: reopen for 1 s
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_FALSE(b.allow(probe + seconds(7) - Duration(1)));
  EXPECT_TRUE(b.allow(probe + seconds(7)));
}

TEST(CircuitBreaker, TimeGoingBackwardsChangesNothing) {
  CircuitBreaker b;
  open_at_t0(b);
  EXPECT_FALSE(b.allow(kT0 - seconds(60)));
  EXPECT_EQ(b.state(), State::kOpen);
  ASSERT_TRUE(b.allow(at(milliseconds(500))));
  EXPECT_FALSE(b.allow(kT0 - seconds(60)));  // no second probe from the past
  EXPECT_EQ(b.state(), State::kHalfOpen);
}

TEST(CircuitBreaker, OptionsAreClamped) {
  CircuitBreaker b(CircuitBreakerOptions{.failure_threshold = 0,
                                         .open_duration = milliseconds(100),
                                         .max_open_duration = milliseconds(50),
                                         .probe_timeout = seconds(1)});
  EXPECT_EQ(b.options().failure_threshold, 1);
  EXPECT_EQ(b.options().max_open_duration, milliseconds(100));
  b.on_failure(kT0);  // threshold 1
  EXPECT_EQ(b.state(), State::kOpen);
  ASSERT_TRUE(b.allow(at(milliseconds(100))));
  b.on_failure(at(milliseconds(100)));  // doubled, but capped at 100 ms
  EXPECT_TRUE(b.allow(at(milliseconds(200))));
}

TEST(CircuitBreaker, CustomThreshold) {
  CircuitBreaker b(CircuitBreakerOptions{.failure_threshold = 2});
  b.on_failure(kT0);
  EXPECT_EQ(b.state(), State::kClosed);
  b.on_failure(kT0);
  EXPECT_EQ(b.state(), State::kOpen);
}

// 8 threads call allow() at the same instant, just after the wait: exactly one probes. Repeated,
// so that the race is actually run many times.
TEST(CircuitBreaker, ExactlyOneProbeUnderRacingThreads) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 200;
  CircuitBreaker b;
  for (int round = 0; round < kRounds; ++round) {
    const Timestamp opened = at(seconds(100 * round));
    b.on_success();
    fail(b, 5, opened);
    ASSERT_EQ(b.state(), State::kOpen);
    const Timestamp now = opened + milliseconds(500);

    std::atomic<int> probes{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < 10; ++i) {
          if (b.allow(now)) probes.fetch_add(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(probes.load(), 1) << "round " << round;
    ASSERT_EQ(b.state(), State::kHalfOpen);
  }
}

// Many threads fail at once: the circuit opens exactly once.
TEST(CircuitBreaker, RacingFailuresOpenOnce) {
  constexpr int kThreads = 8;
  CircuitBreaker b(CircuitBreakerOptions{.failure_threshold = 100});
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 1000; ++i) {
        if (b.allow(kT0)) b.on_failure(kT0);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_EQ(b.times_opened(), 1u);
}

// A mixed workload from many threads, for ThreadSanitizer: the breaker ends in a valid state and
// one success closes it.
TEST(CircuitBreaker, MixedTrafficFromManyThreads) {
  constexpr int kThreads = 6;
  CircuitBreaker b(CircuitBreakerOptions{.failure_threshold = 3,
                                         .open_duration = milliseconds(1),
                                         .max_open_duration = milliseconds(8),
                                         .probe_timeout = milliseconds(2)});
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 20'000; ++i) {
        const Timestamp now = at(microseconds(i * 100));
        if (!b.allow(now)) continue;
        if ((i + t) % 7 == 0) {
          b.on_success();
        } else {
          b.on_failure(now);
        }
        (void)b.state();
      }
    });
  }
  for (auto& t : threads) t.join();
  b.on_success();
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.allow(at(seconds(10))));
}

}  // namespace
}  // namespace fg::decide
