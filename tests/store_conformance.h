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

namespace fg::test {

inline Policy conformance_policy(std::string name, Algorithm algorithm, std::int64_t limit,
                                 Duration period = std::chrono::hours(24)) {
  Policy p;
  p.name = std::move(name);
  p.algorithm = algorithm;
  p.limit = p.burst = limit;
  p.period = period;
  return p;
}

inline Result<Verdict> decide(Store& store, std::string_view identity,
                              std::initializer_list<Charge> charges) {
  std::vector<Charge> list(charges);
  return decide_and_wait(store, DecideRequest{identity, list});
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
    const Policy p = conformance_policy(std::string(to_string(algorithm)), algorithm, 5);
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
  const Policy p = conformance_policy("hammer", Algorithm::kTokenBucket, 1000);
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
  const Policy tight = conformance_policy("tight", Algorithm::kFixedWindow, 2);
  const Policy loose = conformance_policy("loose", Algorithm::kTokenBucket, 10);
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
  const Policy p = conformance_policy("per-client", Algorithm::kGcra, 1);
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
  const Policy p = conformance_policy("cost", Algorithm::kTokenBucket, 3);
  auto r = decide(*store, "c", {{&p, 4}});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->allowed);
  EXPECT_EQ(r->headline().reason, DenyReason::kCostExceedsBurst);
  EXPECT_TRUE(decide(*store, "c", {{&p, 3}})->allowed);
}

TYPED_TEST_P(StoreConformance, StateExpiresOnceFull) {
  auto store = this->traits_.make();
  const Policy p = conformance_policy("short", Algorithm::kTokenBucket, 2, std::chrono::milliseconds(200));
  ASSERT_TRUE(decide(*store, "e", {{&p, 2}})->allowed);
  EXPECT_GE(this->traits_.live_states(), 1u);
  this->traits_.advance(std::chrono::milliseconds(250));
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

REGISTER_TYPED_TEST_SUITE_P(StoreConformance, EveryAlgorithmAdmitsExactlyItsLimit,
                            ThreadsHammeringOneKeyAdmitExactlyTheLimit,
                            SeveralPoliciesAreAllOrNothing,
                            IdentitiesAreIndependentWhateverTheirBytes,
                            CostBeyondBurstIsDeniedWithoutConsuming, StateExpiresOnceFull,
                            RejectsARequestWithoutPolicies);

}  // namespace fg::test
