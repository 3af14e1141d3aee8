// The all-or-nothing rule and the headline choice; the numeric cases live in tests/vectors.
#include "floodgate/limiter.h"

#include <gtest/gtest.h>

#include "test_policy.h"

namespace fg {
namespace {

using test::make_policy;

const Timestamp kNow = from_us(1'799'971'200'000'000);

TEST(Limiter, WritesNothingWhenOnePolicyDenies) {
  const Policy tight = make_policy("tight", 1, {.period = std::chrono::seconds(1)});
  const Policy loose = make_policy("loose", 100, {.period = std::chrono::seconds(1)});
  const Charge charges[] = {{&loose, 1}, {&tight, 1}};
  std::vector<std::optional<State>> states(2);

  Evaluation first = evaluate(charges, states, kNow);
  ASSERT_TRUE(first.verdict.allowed);
  ASSERT_EQ(first.writes.size(), 2u);
  for (const auto& w : first.writes) states[w.index] = w.state;

  Evaluation second = evaluate(charges, states, kNow);
  EXPECT_FALSE(second.verdict.allowed);
  EXPECT_TRUE(second.writes.empty());
  EXPECT_EQ(second.verdict.most_restrictive, 1u);
  EXPECT_EQ(second.verdict.decisions[0].remaining, 99);  // untouched by the denied request
}

TEST(Limiter, ShadowDenialAllowsAndStillConsumesTheOthers) {
  const Policy shadow =
      make_policy("shadow", 1, {.period = std::chrono::seconds(1), .shadow = true});
  const Policy real = make_policy("real", 10, {.period = std::chrono::seconds(1)});
  const Charge charges[] = {{&shadow, 1}, {&real, 1}};
  std::vector<std::optional<State>> states(2);
  for (int i = 0; i < 3; ++i) {
    Evaluation e = evaluate(charges, states, kNow);
    EXPECT_TRUE(e.verdict.allowed);
    for (const auto& w : e.writes) states[w.index] = w.state;
  }
  Evaluation e = evaluate(charges, states, kNow);
  EXPECT_FALSE(e.verdict.decisions[0].allowed);
  EXPECT_EQ(e.verdict.decisions[1].remaining, 6);
}

TEST(Limiter, HeadlinePrefersDenialThenLeastRemaining) {
  const Policy a = make_policy("a", 10, {.period = std::chrono::seconds(1)});
  const Policy b = make_policy("b", 10, {.period = std::chrono::seconds(1)});
  const Policy s = make_policy("s", 10, {.period = std::chrono::seconds(1), .shadow = true});
  Decision allowed_few{true, DenyReason::kNone, 10, 1, Duration(5), Duration(0)};
  Decision allowed_many{true, DenyReason::kNone, 10, 7, Duration(5), Duration(0)};
  Decision denied{false, DenyReason::kOverLimit, 10, 0, Duration(9), Duration(3)};
  const Charge enforced[] = {{&a, 1}, {&b, 1}};
  std::vector<Decision> d = {allowed_many, allowed_few};
  EXPECT_EQ(most_restrictive(enforced, d), 1u);
  d = {denied, allowed_few};
  EXPECT_EQ(most_restrictive(enforced, d), 0u);
  d = {allowed_many, allowed_many};
  EXPECT_EQ(most_restrictive(enforced, d), 0u);

  // A shadow policy never heads the fields while an enforced one matches: the client must not
  // slow down for a limit that is only being measured.
  const Charge mixed[] = {{&a, 1}, {&s, 1}};
  d = {allowed_many, allowed_few};
  EXPECT_EQ(most_restrictive(mixed, d), 0u);
  d = {allowed_few, denied};
  EXPECT_EQ(most_restrictive(mixed, d), 0u);
  // Only shadow policies: the least remaining of them.
  const Charge shadows[] = {{&s, 1}, {&s, 1}};
  d = {allowed_many, allowed_few};
  EXPECT_EQ(most_restrictive(shadows, d), 1u);
}

}  // namespace
}  // namespace fg
