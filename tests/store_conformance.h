// store_conformance.h — the behaviour every Store must have, as typed tests.
//
// A store joins the suite with a traits type:
//   struct MyStoreTraits {
//     std::unique_ptr<fg::Store> make();          // a fresh, empty store
//     void advance(fg::Duration d);               // let time pass (a manual clock, or wait)
//     std::size_t live_states();                  // states the store holds now
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, StoreConformance, ::testing::Types<MyStoreTraits>);
//
// Policies here are long (a day) so that no refill happens while a test runs, even on a store
// whose clock is real (Redis TIME) and a slow, shared machine.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "floodgate/store.h"
#include "test_policy.h"

namespace fg::test {

inline Result<Verdict> decide(Store& store, std::string_view identity,
                              std::initializer_list<Charge> charges) {
  std::vector<Charge> list(charges);
  return decide_and_wait(store, DecideRequest{identity, list});
}

// Gives back what `verdict` (an allowed decision on `charges`) consumed.
inline Result<void> refund(Store& store, std::string_view identity,
                           std::initializer_list<Charge> charges, const Verdict& verdict) {
  std::vector<Charge> list(charges);
  return refund_and_wait(store,
                         RefundRequest{identity, list, verdict.decided_at, verdict.decisions});
}

template <typename Traits>
class StoreConformance : public ::testing::Test {
 protected:
  Traits traits_;
};

TYPED_TEST_SUITE_P(StoreConformance);

TYPED_TEST_P(StoreConformance, EveryAlgorithmAdmitsExactlyItsLimit) {
  auto store = this->traits_.make();
  for (auto algorithm : {Algorithm::kTokenBucket, Algorithm::kGcra, Algorithm::kSlidingWindow,
                         Algorithm::kFixedWindow}) {
    const Policy p = make_policy(std::string(to_string(algorithm)), 5, {.algorithm = algorithm});
    int allowed = 0;
    for (int i = 0; i < 8; ++i) {
      auto r = decide(*store, "client-1", {{&p, 1}});
      ASSERT_TRUE(r.has_value()) << r.error().to_string();
      if (r->allowed) {
        ++allowed;
        EXPECT_EQ(r->headline().remaining, 5 - allowed);
      } else {
        EXPECT_EQ(r->headline().reason, DenyReason::kOverLimit);
        EXPECT_GT(r->headline().retry_after.count(), 0);
      }
      EXPECT_EQ(r->headline().limit, 5);
    }
    EXPECT_EQ(allowed, 5) << to_string(algorithm);
  }
}

TYPED_TEST_P(StoreConformance, ThreadsHammeringOneKeyAdmitExactlyTheLimit) {
  auto store = this->traits_.make();
  const Policy p = make_policy("hammer", 1000);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 250;  // 2000 attempts on a limit of 1000
  std::atomic<int> allowed{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = decide(*store, "hot-key", {{&p, 1}});
        if (!r) {
          ++errors;
        } else if (r->allowed) {
          ++allowed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(allowed.load(), 1000);
}

TYPED_TEST_P(StoreConformance, SeveralPoliciesAreAllOrNothing) {
  auto store = this->traits_.make();
  const Policy tight = make_policy("tight", 2, {.algorithm = Algorithm::kFixedWindow});
  const Policy loose = make_policy("loose", 10);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(decide(*store, "u", {{&loose, 1}, {&tight, 1}})->allowed);
  for (int i = 0; i < 3; ++i) {
    auto r = decide(*store, "u", {{&loose, 1}, {&tight, 1}});
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->allowed);
    EXPECT_EQ(r->most_restrictive, 1u);
    EXPECT_EQ(r->decisions[0].remaining, 8);  // nothing consumed from `loose`
  }
  // `loose` alone still has exactly 8.
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += decide(*store, "u", {{&loose, 1}})->allowed ? 1 : 0;
  EXPECT_EQ(allowed, 8);
}

TYPED_TEST_P(StoreConformance, IdentitiesAreIndependentWhateverTheirBytes) {
  auto store = this->traits_.make();
  const Policy p = make_policy("per-client", 1, {.algorithm = Algorithm::kGcra});
  const std::vector<std::string> identities = {
      "alice", "bob", "{alice}", "alice}", "{", "}", "", std::string("a\0b", 3),
      std::string("a\0c", 3), "fg:{alice}:per-client", std::string(300, 'x'), "\xff\xfe",
      "user 42\r\nSET x y"};
  for (const auto& id : identities) {
    auto r = decide(*store, id, {{&p, 1}});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_TRUE(r->allowed) << "identity of " << id.size() << " bytes";
  }
  for (const auto& id : identities) EXPECT_FALSE(decide(*store, id, {{&p, 1}})->allowed);
}

TYPED_TEST_P(StoreConformance, CostBeyondBurstIsDeniedWithoutConsuming) {
  auto store = this->traits_.make();
  const Policy p = make_policy("cost", 3);
  auto r = decide(*store, "c", {{&p, 4}});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->allowed);
  EXPECT_EQ(r->headline().reason, DenyReason::kCostExceedsBurst);
  EXPECT_TRUE(decide(*store, "c", {{&p, 3}})->allowed);
}

TYPED_TEST_P(StoreConformance, StateExpiresOnceFull) {
  auto store = this->traits_.make();
  const Policy p = make_policy("short", 2, {.period = std::chrono::milliseconds(200)});
  ASSERT_TRUE(decide(*store, "e", {{&p, 2}})->allowed);
  EXPECT_GE(this->traits_.live_states(), 1u);
  // Full again after 200 ms; a store may keep the state up to half its ttl longer (the Redis
  // store: decide.lua's expiry slack), so past 300 ms it is gone.
  this->traits_.advance(std::chrono::milliseconds(350));
  // Full again: a fresh decision sees the whole burst.
  auto r = decide(*store, "e", {{&p, 0}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->headline().remaining, 2);
  EXPECT_EQ(this->traits_.live_states(), 0u);
}

TYPED_TEST_P(StoreConformance, RejectsARequestWithoutPolicies) {
  auto store = this->traits_.make();
  auto r = decide_and_wait(*store, DecideRequest{"x", {}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TYPED_TEST_P(StoreConformance, VerdictsSayWhenTheyWereDecided) {
  auto store = this->traits_.make();
  const Policy p = make_policy("when", 5);
  auto first = decide(*store, "w", {{&p, 1}});
  auto second = decide(*store, "w", {{&p, 1}});
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_GT(to_us(first->decided_at), 1'700'000'000'000'000);  // 2023 on: a real time, in µs
  EXPECT_GE(second->decided_at, first->decided_at);
}

TYPED_TEST_P(StoreConformance, RefundGivesBackWhatAnAllowedDecisionConsumed) {
  auto store = this->traits_.make();
  for (auto algorithm : {Algorithm::kTokenBucket, Algorithm::kGcra, Algorithm::kSlidingWindow,
                         Algorithm::kFixedWindow}) {
    SCOPED_TRACE(to_string(algorithm));
    const Policy p = make_policy(std::string(to_string(algorithm)), 5, {.algorithm = algorithm});
    ASSERT_TRUE(decide(*store, "r", {{&p, 3}})->allowed);
    auto two = decide(*store, "r", {{&p, 2}});
    ASSERT_TRUE(two.has_value() && two->allowed);
    EXPECT_FALSE(decide(*store, "r", {{&p, 1}})->allowed);
    ASSERT_TRUE(refund(*store, "r", {{&p, 2}}, *two).has_value());
    // Exactly the 2 given back, no more.
    auto after = decide(*store, "r", {{&p, 0}});
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->headline().remaining, 2);
    EXPECT_TRUE(decide(*store, "r", {{&p, 2}})->allowed);
    EXPECT_FALSE(decide(*store, "r", {{&p, 1}})->allowed);
  }
}

TYPED_TEST_P(StoreConformance, RefundToFullDeletesTheStateAndOfNoStateWritesNothing) {
  auto store = this->traits_.make();
  const Policy bucket = make_policy("bucket", 5);
  const Policy window = make_policy("window", 5, {.algorithm = Algorithm::kFixedWindow});
  // Refunding what was never there: success, and nothing is created.
  Verdict none;
  none.allowed = true;
  none.decided_at = from_us(1'800'000'000'000'000);
  none.decisions.resize(2);
  for (auto& d : none.decisions) d.allowed = true;
  ASSERT_TRUE(refund(*store, "n", {{&bucket, 2}, {&window, 2}}, none).has_value());
  EXPECT_EQ(this->traits_.live_states(), 0u);
  auto v = decide(*store, "n", {{&bucket, 2}, {&window, 2}});
  ASSERT_TRUE(v.has_value() && v->allowed);
  EXPECT_EQ(this->traits_.live_states(), 2u);
  ASSERT_TRUE(refund(*store, "n", {{&bucket, 2}, {&window, 2}}, *v).has_value());
  EXPECT_EQ(this->traits_.live_states(), 0u);  // both equivalent to no state: deleted
  auto full = decide(*store, "n", {{&bucket, 0}, {&window, 0}});
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(full->decisions[0].remaining, 5);
  EXPECT_EQ(full->decisions[1].remaining, 5);
}

TYPED_TEST_P(StoreConformance, RefundSkipsAShadowPolicyThatDidNotConsume) {
  auto store = this->traits_.make();
  const Policy enforced = make_policy("enforced", 10);
  Policy shadow = make_policy("shadow", 1, {.algorithm = Algorithm::kFixedWindow});
  shadow.shadow = true;
  ASSERT_TRUE(decide(*store, "s", {{&enforced, 1}, {&shadow, 1}})->allowed);
  auto second = decide(*store, "s", {{&enforced, 1}, {&shadow, 1}});
  ASSERT_TRUE(second.has_value() && second->allowed);
  ASSERT_FALSE(second->decisions[1].allowed);  // the shadow policy denied: it consumed nothing
  ASSERT_TRUE(refund(*store, "s", {{&enforced, 1}, {&shadow, 1}}, *second).has_value());
  auto peek = decide(*store, "s", {{&enforced, 0}, {&shadow, 0}});
  ASSERT_TRUE(peek.has_value());
  EXPECT_EQ(peek->decisions[0].remaining, 9);
  EXPECT_EQ(peek->decisions[1].remaining, 0);  // the first request's count stays
}

TYPED_TEST_P(StoreConformance, RefundRejectsWhatDecideRejects) {
  auto store = this->traits_.make();
  auto none = refund_and_wait(*store, RefundRequest{"x", {}, from_us(0)});
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, ErrorCode::kInvalidArgument);
  const Policy p = make_policy("p", 5);
  const std::vector<Charge> charges = {{&p, 1}};
  const std::vector<Decision> two(2);
  auto mismatch = refund_and_wait(*store, RefundRequest{"x", charges, from_us(0), two});
  ASSERT_FALSE(mismatch.has_value());
  EXPECT_EQ(mismatch.error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> negative = {{&p, -1}};
  EXPECT_EQ(refund_and_wait(*store, RefundRequest{"x", negative, from_us(0)}).error().code,
            ErrorCode::kInvalidArgument);
}

TYPED_TEST_P(StoreConformance, ThreadsDecidingAndRefundingKeepTheLimitExact) {
  // Every thread decides and refunds every other allowed request: what stays admitted (allowed
  // minus refunded) is exactly the limit, however the decisions and refunds interleave.
  auto store = this->traits_.make();
  const Policy p = make_policy("churn", 200, {.algorithm = Algorithm::kFixedWindow});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::atomic<int> kept{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = decide(*store, "churn", {{&p, 1}});
        if (!r) {
          ++errors;
        } else if (r->allowed) {
          if (i % 2 == 0) {
            if (!refund(*store, "churn", {{&p, 1}}, *r)) ++errors;
          } else {
            ++kept;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(kept.load(), 200);
  EXPECT_FALSE(decide(*store, "churn", {{&p, 1}})->allowed);
}

REGISTER_TYPED_TEST_SUITE_P(StoreConformance, VerdictsSayWhenTheyWereDecided,
                            RefundGivesBackWhatAnAllowedDecisionConsumed,
                            RefundToFullDeletesTheStateAndOfNoStateWritesNothing,
                            RefundSkipsAShadowPolicyThatDidNotConsume,
                            RefundRejectsWhatDecideRejects,
                            ThreadsDecidingAndRefundingKeepTheLimitExact,
                            EveryAlgorithmAdmitsExactlyItsLimit,
                            ThreadsHammeringOneKeyAdmitExactlyTheLimit,
                            SeveralPoliciesAreAllOrNothing,
                            IdentitiesAreIndependentWhateverTheirBytes,
                            CostBeyondBurstIsDeniedWithoutConsuming, StateExpiresOnceFull,
                            RejectsARequestWithoutPolicies);

}  // namespace fg::test
