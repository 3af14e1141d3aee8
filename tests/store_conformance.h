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
#include <future>
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

// decide() with a lease id (concurrency policies take their slots under it).
inline Result<Verdict> decide_leased(Store& store, std::string_view identity,
                                     std::initializer_list<Charge> charges,
                                     std::string_view lease) {
  std::vector<Charge> list(charges);
  return decide_and_wait(store, DecideRequest{identity, list, lease});
}

inline Result<void> lease_op(Store& store, bool renew, std::string_view identity,
                             std::initializer_list<Charge> charges, std::string_view lease) {
  std::vector<Charge> list(charges);
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  const LeaseRequest r{identity, list, lease};
  auto done = [&promise](Result<void> x) { promise.set_value(std::move(x)); };
  if (renew) {
    store.renew(r, done);
  } else {
    store.release(r, done);
  }
  return future.get();
}

// The free slots of a concurrency policy now (a cost 0 look, which takes nothing).
inline std::int64_t free_slots(Store& store, std::string_view identity, const Policy& p) {
  auto v = decide(store, identity, {{&p, 0}});
  EXPECT_TRUE(v.has_value()) << v.error().to_string();
  return v ? v->decisions.front().remaining : -1;
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

TYPED_TEST_P(StoreConformance, ConcurrencyHoldsExactlyLimitSlotsUntilReleased) {
  auto store = this->traits_.make();
  const Policy p = make_policy("in-flight", 3, {.algorithm = Algorithm::kConcurrency});
  for (int i = 0; i < 3; ++i) {
    auto v = decide_leased(*store, "c1", {{&p, 1}}, "lease-" + std::to_string(i));
    ASSERT_TRUE(v.has_value()) << v.error().to_string();
    EXPECT_TRUE(v->allowed) << i;
    EXPECT_EQ(v->headline().remaining, 2 - i);
    EXPECT_EQ(v->headline().limit, 3);
  }
  auto full = decide_leased(*store, "c1", {{&p, 1}}, "lease-3");
  ASSERT_TRUE(full.has_value());
  EXPECT_FALSE(full->allowed);
  EXPECT_EQ(full->headline().reason, DenyReason::kOverLimit);
  EXPECT_EQ(full->headline().remaining, 0);
  EXPECT_EQ(full->headline().retry_after, kConcurrencyRetryAfter);
  EXPECT_EQ(free_slots(*store, "c2", p), 3) << "another identity has its own slots";

  ASSERT_TRUE(lease_op(*store, false, "c1", {{&p, 1}}, "lease-1"));
  EXPECT_EQ(free_slots(*store, "c1", p), 1);
  ASSERT_TRUE(lease_op(*store, false, "c1", {{&p, 1}}, "lease-1")) << "idempotent";
  EXPECT_EQ(free_slots(*store, "c1", p), 1) << "a second release gives nothing more";
  ASSERT_TRUE(lease_op(*store, false, "c1", {{&p, 1}}, "never-taken"));
  EXPECT_EQ(free_slots(*store, "c1", p), 1);
  auto again = decide_leased(*store, "c1", {{&p, 1}}, "lease-4");
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->allowed);
  EXPECT_EQ(free_slots(*store, "c1", p), 0);
}

TYPED_TEST_P(StoreConformance, ConcurrencyIsAllOrNothingWithRatePolicies) {
  auto store = this->traits_.make();
  const Policy slots = make_policy("slots", 2, {.algorithm = Algorithm::kConcurrency});
  const Policy rate = make_policy("rate", 1, {.algorithm = Algorithm::kFixedWindow});
  // Allowed: takes a slot and a token.
  auto v = decide_leased(*store, "a", {{&slots, 1}, {&rate, 1}}, "l1");
  ASSERT_TRUE(v.has_value() && v->allowed);
  // The rate policy denies: no slot is taken.
  auto denied = decide_leased(*store, "a", {{&slots, 1}, {&rate, 1}}, "l2");
  ASSERT_TRUE(denied.has_value());
  EXPECT_FALSE(denied->allowed);
  EXPECT_TRUE(denied->decisions[0].allowed);
  EXPECT_EQ(denied->decisions[0].remaining, 1) << "reported untouched";
  EXPECT_EQ(free_slots(*store, "a", slots), 1);

  // The concurrency policy is full: no token is consumed.
  const Policy one = make_policy("one", 1, {.algorithm = Algorithm::kConcurrency});
  const Policy tokens = make_policy("tokens", 10, {.algorithm = Algorithm::kFixedWindow});
  ASSERT_TRUE(decide_leased(*store, "b", {{&one, 1}}, "m1").value().allowed);
  auto full = decide_leased(*store, "b", {{&tokens, 1}, {&one, 1}}, "m2");
  ASSERT_TRUE(full.has_value());
  EXPECT_FALSE(full->allowed);
  EXPECT_EQ(full->most_restrictive, 1u);
  EXPECT_EQ(full->decisions[0].remaining, 10) << "no token consumed";
  auto peek = decide(*store, "b", {{&tokens, 0}});
  ASSERT_TRUE(peek.has_value());
  EXPECT_EQ(peek->headline().remaining, 10);
}

TYPED_TEST_P(StoreConformance, ConcurrencySlotsOfARefundedDecisionComeBack) {
  auto store = this->traits_.make();
  const Policy slots = make_policy("slots", 1, {.algorithm = Algorithm::kConcurrency});
  const Policy rate = make_policy("rate", 5, {.algorithm = Algorithm::kFixedWindow});
  std::vector<Charge> list{{&slots, 1}, {&rate, 1}};
  auto v = decide_and_wait(*store, DecideRequest{"r", list, "lease-r"});
  ASSERT_TRUE(v.has_value() && v->allowed);
  EXPECT_EQ(free_slots(*store, "r", slots), 0);
  ASSERT_TRUE(refund_and_wait(
      *store, RefundRequest{"r", list, v->decided_at, v->decisions, "lease-r"}));
  EXPECT_EQ(free_slots(*store, "r", slots), 1);
  auto peek = decide(*store, "r", {{&rate, 0}});
  ASSERT_TRUE(peek.has_value());
  EXPECT_EQ(peek->headline().remaining, 5);
}

TYPED_TEST_P(StoreConformance, ConcurrencyLeasesExpireUnlessRenewed) {
  auto store = this->traits_.make();
  const Policy p = make_policy("leased", 2,
                               {.algorithm = Algorithm::kConcurrency,
                                .period = std::chrono::milliseconds(1500)});
  ASSERT_TRUE(decide_leased(*store, "d", {{&p, 1}}, "kept").value().allowed);
  ASSERT_TRUE(decide_leased(*store, "d", {{&p, 1}}, "dropped").value().allowed);
  EXPECT_EQ(free_slots(*store, "d", p), 0);
  this->traits_.advance(std::chrono::milliseconds(900));
  ASSERT_TRUE(lease_op(*store, true, "d", {{&p, 1}}, "kept"));
  this->traits_.advance(std::chrono::milliseconds(900));  // 1.8 s: past the first lease
  EXPECT_EQ(free_slots(*store, "d", p), 1) << "the renewed slot is held, the other expired";
  this->traits_.advance(std::chrono::milliseconds(1600));
  EXPECT_EQ(free_slots(*store, "d", p), 2);
}

TYPED_TEST_P(StoreConformance, ThreadsTakingSlotsAdmitExactlyTheLimit) {
  auto store = this->traits_.make();
  const Policy p = make_policy("crowd", 100, {.algorithm = Algorithm::kConcurrency});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;  // 320 attempts on 100 slots, none released
  std::atomic<int> allowed{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = decide_leased(*store, "crowd", {{&p, 1}},
                               std::to_string(t) + "." + std::to_string(i));
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
  EXPECT_EQ(allowed.load(), 100);
}

REGISTER_TYPED_TEST_SUITE_P(StoreConformance, VerdictsSayWhenTheyWereDecided,
                            ConcurrencyHoldsExactlyLimitSlotsUntilReleased,
                            ConcurrencyIsAllOrNothingWithRatePolicies,
                            ConcurrencySlotsOfARefundedDecisionComeBack,
                            ConcurrencyLeasesExpireUnlessRenewed,
                            ThreadsTakingSlotsAdmitExactlyTheLimit,
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
