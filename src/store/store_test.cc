#include "floodgate/store.h"

#include <gtest/gtest.h>

#include "test_policy.h"

namespace fg {
namespace {

TEST(CheckCharges, RefusesWhatNoStoreCouldDecide) {
  const Policy p = test::make_policy("p", 1, {.period = std::chrono::seconds(1)});
  EXPECT_EQ(check_charges({}).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> null_policy = {{nullptr, 1}};
  EXPECT_EQ(check_charges(null_policy).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> negative = {{&p, -1}};
  EXPECT_EQ(check_charges(negative).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> huge = {{&p, kMaxCount + 1}};
  EXPECT_EQ(check_charges(huge).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> ok = {{&p, 0}, {&p, kMaxCount}};
  EXPECT_TRUE(check_charges(ok).has_value());
}

}  // namespace
}  // namespace fg
