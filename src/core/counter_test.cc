// The counter decision of Envoy's ratelimit service (counter.h), at literal values.
#include "floodgate/counter.h"

#include <gtest/gtest.h>

namespace fg::counter {
namespace {

TEST(Counter, WindowsAreAlignedToTheEpoch) {
  EXPECT_EQ(window_start(1'700'000'123, 60), 1'700'000'100);
  EXPECT_EQ(until_reset(1'700'000'123, 60), 37);
  EXPECT_EQ(until_reset(1'700'000'100, 60), 60);  // a window's first second: all of it left
  EXPECT_EQ(window_start(5, 1), 5);
  EXPECT_EQ(until_reset(5, 1), 1);
}

TEST(Counter, OverOnlyPastTheLimit) {
  const Counted at = judge(5, 1, 5);
  EXPECT_FALSE(at.over);
  EXPECT_EQ(at.remaining, 0U);
  EXPECT_EQ(at.before, 4U);
  const Counted past = judge(6, 1, 5);
  EXPECT_TRUE(past.over);
  EXPECT_EQ(past.remaining, 0U);
}

TEST(Counter, HitsAddendCrossingTheLimitStaysOver) {
  // Limit 5, counter 3: 3 hits make 6 (over); 2 more make 8: over again (it fits in what was
  // left before the first, but the counter counted the first's hits).
  EXPECT_TRUE(judge(6, 3, 5).over);
  EXPECT_TRUE(judge(8, 2, 5).over);
  EXPECT_EQ(judge(8, 2, 5).before, 6U);
}

TEST(Counter, BeforeWrapsWhenFewerWereAdded) {
  // STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT left a counter of 1 alone while this request asked
  // for 2 hits: before = 1 - 2, unsigned, as upstream computes it.
  EXPECT_EQ(judge(1, 2, 5).before, ~std::uint64_t{0});
}

TEST(Counter, EveryDescriptorAddsItsHitsByDefault) {
  const Pending d[] = {{.counted = true, .hits = 2, .limit = 1, .current = 9},
                       {.counted = false, .hits = 1},
                       {.counted = true, .cached_over = true, .hits = 1, .limit = 5},
                       {.counted = true, .hits = 3, .limit = 10}};
  EXPECT_EQ(hits_to_add(d, false), (std::vector<std::uint64_t>{2, 0, 0, 3}));
}

TEST(Counter, StopWhenOverCountsOnlyTheDescriptorsThatPass) {
  // key2 (20) at 10, key3 (10) at 10: key3 would pass, so only key3 is counted.
  const Pending d[] = {{.counted = true, .hits = 1, .limit = 20, .current = 10},
                       {.counted = true, .hits = 1, .limit = 10, .current = 10}};
  EXPECT_EQ(hits_to_add(d, true), (std::vector<std::uint64_t>{0, 1}));
  // None would pass: all are counted.
  const Pending within[] = {{.counted = true, .hits = 1, .limit = 20, .current = 3},
                            {.counted = true, .hits = 1, .limit = 10, .current = 3}};
  EXPECT_EQ(hits_to_add(within, true), (std::vector<std::uint64_t>{1, 1}));
  // One answered by the local cache: nothing is counted.
  const Pending cached[] = {{.counted = true, .hits = 1, .limit = 20, .current = 3},
                            {.counted = true, .cached_over = true, .hits = 1, .limit = 10}};
  EXPECT_EQ(hits_to_add(cached, true), (std::vector<std::uint64_t>{0, 0}));
}

}  // namespace
}  // namespace fg::counter
