#include "floodgate/policy.h"

#include <gtest/gtest.h>

#include <limits>

#include "test_policy.h"

namespace fg {
namespace {

Policy valid() { return test::make_policy("per-minute", 100, {.period = std::chrono::minutes(1)}); }

std::string error_of(const Policy& p) {
  auto r = validate_policy(p);
  return r ? "" : r.error().message;
}

TEST(Policy, AlgorithmNamesRoundTrip) {
  for (auto a : {Algorithm::kTokenBucket, Algorithm::kGcra, Algorithm::kSlidingWindow,
                 Algorithm::kFixedWindow}) {
    EXPECT_EQ(parse_algorithm(to_string(a)), a);
  }
  EXPECT_EQ(parse_algorithm("leaky_bucket"), std::nullopt);
  EXPECT_EQ(parse_algorithm(""), std::nullopt);
}

TEST(Policy, ValidCostIsZeroToMaxCount) {
  EXPECT_TRUE(valid_cost(0));  // a peek
  EXPECT_TRUE(valid_cost(1));
  EXPECT_TRUE(valid_cost(kMaxCount));
  EXPECT_FALSE(valid_cost(-1));
  EXPECT_FALSE(valid_cost(kMaxCount + 1));
  EXPECT_FALSE(valid_cost(std::numeric_limits<std::int64_t>::min()));
  EXPECT_FALSE(valid_cost(std::numeric_limits<std::int64_t>::max()));
}

TEST(Policy, ValidatesEachField) {
  EXPECT_EQ(error_of(valid()), "");
  Policy p = valid();
  p.name = "";
  EXPECT_EQ(error_of(p), "name: must not be empty");
  p = valid();
  p.limit = 0;
  EXPECT_EQ(error_of(p), "limit: must be a positive integer");
  p.limit = kMaxCount + 1;
  EXPECT_EQ(error_of(p), "limit: must be at most 1000000000");
  p = valid();
  p.burst = -1;
  EXPECT_EQ(error_of(p), "burst: must be a positive integer");
  p = valid();
  p.cost = -1;
  EXPECT_EQ(error_of(p), "cost: must be zero or a positive integer");
  p = valid();
  p.period = Duration(0);
  EXPECT_EQ(error_of(p), "period: must be positive");
  p.period = kMaxPeriod + Duration(1);
  EXPECT_EQ(error_of(p), "period: must be at most 366d");
}

TEST(Policy, RejectsBucketsThatCannotBeCountedExactly) {
  Policy p = valid();
  p.period = std::chrono::hours(24);
  p.limit = 999'983;  // prime: one token is 86400000000 scaled units
  p.burst = 999'983;
  EXPECT_NE(error_of(p).find("burst:"), std::string::npos);
  p.limit = p.burst = 999'999'937;  // unit * burst would overflow int64 itself
  EXPECT_NE(error_of(p).find("burst:"), std::string::npos);
  p.limit = 1'000'000;  // divides the day evenly: fine
  p.burst = 1'000'000;
  EXPECT_EQ(error_of(p), "");
}

TEST(Policy, WindowsUseTheLimitAndBoundIt) {
  Policy p = valid();
  p.algorithm = Algorithm::kFixedWindow;
  p.burst = 200;
  EXPECT_NE(error_of(p).find("burst: applies to token_bucket and gcra only"), std::string::npos);
  p.burst = p.limit;
  EXPECT_EQ(error_of(p), "");
  EXPECT_EQ(p.capacity(), 100);
  p.algorithm = Algorithm::kSlidingWindow;
  p.period = std::chrono::hours(24);
  p.limit = p.burst = 100'000'000;  // 10^8 per day: within 2^53 in ms granules
  EXPECT_EQ(error_of(p), "");
  p.period = std::chrono::hours(24 * 365);
  EXPECT_NE(error_of(p).find("limit: too large for a sliding window"), std::string::npos);
}

}  // namespace
}  // namespace fg
