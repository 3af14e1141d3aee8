#include "store/memory/memory_store.h"

#include <gtest/gtest.h>

#include "store_conformance.h"

namespace fg::memory {

struct MemoryTraits {
  ManualClock clock;
  MemoryStore* last = nullptr;
  std::unique_ptr<Store> make() {
    auto s = std::make_unique<MemoryStore>(MemoryStoreOptions{}, clock);
    last = s.get();
    return s;
  }
  void advance(Duration d) { clock.advance(d); }
  std::size_t live_states() { return last->size(); }
};

namespace {

using test::conformance_policy;
using test::decide;

TEST(MemoryStore, AFloodOfDistinctKeysStaysWithinMaxKeys) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 1000, .shards = 8}, clock);
  const Policy p = conformance_policy("p", Algorithm::kTokenBucket, 10);
  for (int i = 0; i < 100'000; ++i) {
    ASSERT_TRUE(decide(store, "client-" + std::to_string(i), {{&p, 1}})->allowed);
  }
  EXPECT_LE(store.size(), store.capacity());
  EXPECT_EQ(store.capacity(), 1000u);
  EXPECT_GE(store.evicted_count(), 99'000u);
}

TEST(MemoryStore, DropsFullStatesBeforeEvictingLiveOnes) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 1}, clock);
  const Policy quick = conformance_policy("quick", Algorithm::kTokenBucket, 10,
                                          std::chrono::seconds(1));
  const Policy slow = conformance_policy("slow", Algorithm::kTokenBucket, 10);
  // 50 live states that must survive, 50 that will be full again in 0.1 s.
  for (int i = 0; i < 50; ++i) decide(store, "live-" + std::to_string(i), {{&slow, 1}});
  for (int i = 0; i < 50; ++i) decide(store, "idle-" + std::to_string(i), {{&quick, 1}});
  clock.advance(std::chrono::milliseconds(200));
  for (int i = 0; i < 50; ++i) decide(store, "new-" + std::to_string(i), {{&slow, 1}});
  EXPECT_EQ(store.evicted_count(), 0u);
  EXPECT_EQ(store.size(), 100u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(decide(store, "live-" + std::to_string(i), {{&slow, 0}})->headline().remaining, 9);
  }
}

TEST(MemoryStore, EvictsTheStateNearestToFullWhenNothingHasExpired) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 3, .shards = 1}, clock);
  const Policy p = conformance_policy("p", Algorithm::kTokenBucket, 10);
  decide(store, "a", {{&p, 3}});
  decide(store, "b", {{&p, 1}});  // one token short of full: the cheapest to forget
  decide(store, "c", {{&p, 2}});
  decide(store, "d", {{&p, 1}});
  EXPECT_EQ(store.evicted_count(), 1u);
  EXPECT_EQ(decide(store, "a", {{&p, 0}})->headline().remaining, 7);
  EXPECT_EQ(decide(store, "b", {{&p, 0}})->headline().remaining, 10);  // forgotten
  EXPECT_EQ(decide(store, "c", {{&p, 0}})->headline().remaining, 8);
}

// The expiry index stays ordered when states are written again (re-keyed in place or moved):
// at each step exactly the states whose ttl has passed are dropped, none left behind.
TEST(MemoryStore, RewrittenStatesExpireInTheirNewOrder) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 1}, clock);
  // 10 per 10 s: each token taken is one second until full again.
  const Policy p = conformance_policy("p", Algorithm::kTokenBucket, 10, std::chrono::seconds(10));
  decide(store, "k0", {{&p, 1}});  // full at +1 s
  decide(store, "k1", {{&p, 2}});  // +2 s
  decide(store, "k2", {{&p, 3}});  // +3 s
  decide(store, "k3", {{&p, 4}});  // +4 s
  decide(store, "k1", {{&p, 3}});  // +5 s: moves past k2 and k3
  decide(store, "k3", {{&p, 1}});  // +5 s: ties with k1 (then ordered by address)
  decide(store, "k0", {{&p, 1}});  // +2 s: stays first
  ASSERT_EQ(store.size(), 4u);
  // A peek on another key drops up to two expired states and writes nothing.
  const auto settle = [&] {
    for (int i = 0; i < 3; ++i) decide(store, "probe", {{&p, 0}});
  };
  const std::pair<int, std::size_t> steps[] = {
      {1500, 4}, {2500, 3}, {3500, 2}, {4999, 2}, {5000, 0}};
  std::int64_t at_ms = 0;
  for (const auto& [ms, left] : steps) {
    clock.advance(std::chrono::milliseconds(ms - at_ms));
    at_ms = ms;
    settle();
    EXPECT_EQ(store.size(), left) << "at +" << ms << " ms";
  }
  EXPECT_EQ(store.evicted_count(), 0u);
  EXPECT_EQ(store.expired_count(), 4u);
}

TEST(MemoryStore, TimeGoingBackwardsAddsNoTokens) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{}, clock);
  const Policy p = conformance_policy("p", Algorithm::kTokenBucket, 10, std::chrono::seconds(1));
  ASSERT_TRUE(decide(store, "k", {{&p, 10}})->allowed);
  clock.advance(-std::chrono::seconds(30));
  EXPECT_FALSE(decide(store, "k", {{&p, 1}})->allowed);
}

}  // namespace
}  // namespace fg::memory

namespace fg::test {
INSTANTIATE_TYPED_TEST_SUITE_P(Memory, StoreConformance, ::testing::Types<memory::MemoryTraits>);
}  // namespace fg::test
