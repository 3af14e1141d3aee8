#include "store/memory/memory_store.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

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

using test::decide;
using test::make_policy;

// decide_all() (store.h): one request counted per several identities (per API key AND per IP).
Result<Verdict> decide_all_now(Store& store, std::span<const DecideRequest> requests) {
  std::optional<Result<Verdict>> out;
  decide_all(store, requests, [&out](Result<Verdict> v) { out = std::move(v); });
  EXPECT_TRUE(out.has_value()) << "the memory store answers before decide_all() returns";
  return out ? std::move(*out) : fail(ErrorCode::kInternal, "no answer");
}

TEST(DecideAll, ADenialGivesBackWhatTheEarlierIdentitiesConsumed) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{}, clock);
  const Policy per_key = make_policy("per-key", 10);
  const Policy per_ip = make_policy("per-ip", 2, {.algorithm = Algorithm::kFixedWindow});
  const Policy other = make_policy("other", 5, {.algorithm = Algorithm::kSlidingWindow});
  const Charge key_charge{&per_key, 1}, ip_charge{&per_ip, 1}, other_charge{&other, 1};
  std::deque<std::string> names;  // the identities the requests point into
  const auto request = [&](const std::string& key) {
    names.push_back(key);
    names.push_back("x:" + key);
    return std::vector<DecideRequest>{{names[names.size() - 2], {&key_charge, 1}},
                                      {"ip:a", {&ip_charge, 1}},
                                      {names.back(), {&other_charge, 1}}};
  };
  const std::string k1 = "key:k1", k2 = "key:k2";
  auto r1 = request(k1);
  auto v = decide_all_now(store, r1);
  ASSERT_TRUE(v && v->allowed);
  ASSERT_EQ(v->decisions.size(), 3u);  // one per charge, in the order given
  EXPECT_EQ(v->decisions[0].remaining, 9);
  EXPECT_EQ(v->decisions[1].remaining, 1);
  EXPECT_EQ(v->decisions[2].remaining, 4);
  auto r2 = request(k2);
  ASSERT_TRUE(decide_all_now(store, r2)->allowed);  // the IP's second of 2
  // The third: the key allows, the IP denies. The key's token is given back, and the identity
  // after the denial is only looked at.
  v = decide_all_now(store, r1);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->allowed);
  EXPECT_FALSE(v->decisions[1].allowed);
  EXPECT_EQ(v->most_restrictive, 1u);
  EXPECT_EQ(decide(store, k1, {{&per_key, 0}})->headline().remaining, 9);
  EXPECT_EQ(decide(store, "x:" + k1, {{&other, 0}})->headline().remaining, 4);
  // A key that has never been seen: nothing of it is left behind.
  auto r3 = request("key:k3");
  EXPECT_FALSE(decide_all_now(store, r3)->allowed);
  EXPECT_EQ(decide(store, "key:k3", {{&per_key, 0}})->headline().remaining, 10);
  EXPECT_EQ(decide(store, "x:key:k3", {{&other, 0}})->headline().remaining, 5);
}

// Many threads, each a client with its own API key, all behind one IP: exactly the IP's limit
// is admitted, and every API key has given back what the IP's denials would have cost it.
TEST(DecideAll, ALaterIdentityThatDeniesGivesBackTheEarlierOnesSlot) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{}, clock);
  const Policy slots = make_policy("slots", 1, {.algorithm = Algorithm::kConcurrency});
  const Policy per_ip = make_policy("per-ip", 1, {.algorithm = Algorithm::kFixedWindow});
  const Charge slot_charge{&slots, 1}, ip_charge{&per_ip, 1};
  // Slots per API key, a rate per IP: the key's slot is taken first, then the IP's rate denies.
  const std::vector<DecideRequest> first = {{"key:a", {&slot_charge, 1}, "lease-1"},
                                            {"ip:1", {&ip_charge, 1}, "lease-1"}};
  auto v = decide_all_now(store, first);
  ASSERT_TRUE(v && v->allowed);
  EXPECT_EQ(store.slots_held("key:a", "slots"), 1u);
  ASSERT_TRUE(release_and_wait(store, LeaseRequest{"key:a", {&slot_charge, 1}, "lease-1"}));
  EXPECT_EQ(store.slots_held("key:a", "slots"), 0u);
  const std::vector<DecideRequest> second = {{"key:a", {&slot_charge, 1}, "lease-2"},
                                             {"ip:1", {&ip_charge, 1}, "lease-2"}};
  auto denied = decide_all_now(store, second);
  ASSERT_TRUE(denied.has_value());
  EXPECT_FALSE(denied->allowed);
  EXPECT_EQ(store.slots_held("key:a", "slots"), 0u) << "the refund gave the slot back";
}

TEST(DecideAll, ExactAcrossIdentitiesUnderThreads) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{}, clock);
  const Policy per_key = make_policy("per-key", 1000, {.algorithm = Algorithm::kGcra});
  const Policy per_ip = make_policy("per-ip", 100);
  const Charge key_charge{&per_key, 1}, ip_charge{&per_ip, 1};
  constexpr int kThreads = 8, kEach = 50;
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = "key:" + std::to_string(t);
      const std::vector<DecideRequest> r{{key, {&key_charge, 1}}, {"ip:shared", {&ip_charge, 1}}};
      for (int i = 0; i < kEach; ++i) {
        auto v = decide_all_now(store, r);
        if (v && v->allowed) allowed.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 100);
  std::int64_t spent = 0;
  for (int t = 0; t < kThreads; ++t) {
    spent += 1000 - decide(store, "key:" + std::to_string(t), {{&per_key, 0}})->headline().remaining;
  }
  EXPECT_EQ(spent, 100);  // what was admitted, and nothing for the 300 denials
}

TEST(MemoryStore, AFloodOfDistinctKeysStaysWithinMaxKeys) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 1000, .shards = 8}, clock);
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(60)});
  int allowed = 0, refused = 0;
  for (int i = 0; i < 100'000; ++i) {
    auto r = decide(store, "client-" + std::to_string(i), {{&p, 1}});
    if (r) {
      EXPECT_EQ(r->headline().remaining, 9);
      ++allowed;
    } else {
      EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
      ++refused;
    }
  }
  EXPECT_EQ(store.capacity(), 1000u);
  EXPECT_EQ(store.size(), store.capacity());  // every shard filled before refusing
  EXPECT_EQ(allowed, 1000);
  EXPECT_EQ(store.refused_count(), static_cast<std::uint64_t>(refused));
  EXPECT_EQ(store.evicted_count(), 0u);  // every state held had spent a token
  // 6 s later every bucket is full again: newcomers are admitted by evicting those states, once
  // the time bucket of their expiry has passed (at most kExpiryBucketUs later).
  clock.advance(std::chrono::seconds(6) + std::chrono::microseconds(kExpiryBucketUs));
  // (Each shard holds 125; identities spread over them unevenly, so some are still refused.)
  int later = 0;
  for (int i = 0; i < 100'000 && later < 1000; ++i) {
    later += decide(store, "later-" + std::to_string(i), {{&p, 1}}).has_value();
  }
  EXPECT_EQ(later, 1000);
  EXPECT_EQ(store.evicted_count(), 1000u);
  EXPECT_EQ(store.size(), 1000u);
}

// Hash flooding of the shards: each shard holds max_keys / shards states, so identities that all
// land on one shard fill it with a shard's worth of requests, and every newcomer hashed there is
// refused while the rest of the store is empty. An attacker picks such identities offline under
// any hash it can compute; std::hash is one. Hashed under the process's secret key, they spread
// as any identities do.
TEST(MemoryStore, IdentitiesChosenForOneShardUnderAnUnkeyedHashSpreadOverTheShards) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 256, .shards = 64}, clock);  // 4 per shard
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(60)});
  // 128 identities whose stored form ('=' and the identity, for a short one) std::hash puts on
  // shard 0 of 64.
  std::vector<std::string> chosen;
  for (int i = 0; chosen.size() < 128; ++i) {
    std::string id = "client-" + std::to_string(i);
    if (std::hash<std::string_view>{}("=" + id) % 64 == 0) chosen.push_back(std::move(id));
  }
  int refused = 0;
  for (const std::string& id : chosen) refused += !decide(store, id, {{&p, 1}}).has_value();
  // On one shard, all but 4 would be refused (124); spread over 64 shards of 4 by chance, about 5
  // are (at least 32 has a chance far below 10^-9).
  EXPECT_LT(refused, 32);
  EXPECT_EQ(store.refused_count(), static_cast<std::uint64_t>(refused));
}

// Hash flooding of a shard's table: keys that share their home slot make every lookup near it
// read them all. A state's key is "<policy>\0=<identity>" (memory_store.cc, make_key), placed by
// a hash derived from its identity's keyed hash. 2,000 identities whose keys std::hash puts on
// one home slot of a 4,096-slot table land where chance puts them: a lookup reads a few slots.
TEST(MemoryStore, IdentitiesChosenToCollideInATableUnderAnUnkeyedHashDoNotLengthenProbes) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 4096, .shards = 1}, clock);
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(60)});
  constexpr std::size_t kKeys = 2000;
  std::vector<std::string> chosen;
  for (std::uint64_t i = 0; chosen.size() < kKeys; ++i) {
    std::string id = "api-key-" + std::to_string(i);
    const std::string key = std::string("p\0=", 3) + id;
    if ((std::hash<std::string_view>{}(key) & 0xfff) == 0x5a5) chosen.push_back(std::move(id));
  }
  for (const std::string& id : chosen) ASSERT_TRUE(decide(store, id, {{&p, 1}}).has_value());
  ASSERT_EQ(store.size(), kKeys);
  // At this load (under 1/2 of 4,096 slots) a key sits within a few dozen slots of its own.
  EXPECT_LT(store.longest_probe(), 100u);
  // Each key found again: the second decision of each sees the first's state.
  for (const std::string& id : chosen) {
    const auto v = decide(store, id, {{&p, 1}});
    ASSERT_TRUE(v.has_value());
    ASSERT_EQ(v->decisions[0].remaining, 8) << id;
  }
}

// The attack this store must resist: spend a budget, then flood the store with fresh identities
// so that the spent state is evicted and the next request starts with a full bucket.
TEST(MemoryStore, AFloodOfFreshIdentitiesNeverResetsASpentClient) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 1}, clock);
  // A token per 6 s.
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(60)});
  const Policy quick = make_policy("quick", 10, {.period = std::chrono::seconds(1)});
  // 50 clients out of tokens, 30 with 4 spent, 20 that will be full again in 0.1 s.
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(decide(store, "spent-" + std::to_string(i), {{&p, 10}})->allowed);
  }
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(decide(store, "partial-" + std::to_string(i), {{&p, 4}})->allowed);
  }
  for (int i = 0; i < 20; ++i) decide(store, "idle-" + std::to_string(i), {{&quick, 1}});
  ASSERT_EQ(store.size(), 100u);
  clock.advance(std::chrono::milliseconds(200));

  // Each fresh identity spends its whole budget: its state expires after every state above,
  // so a store that evicted the live state nearest to full would forget the victims first.
  int admitted = 0;
  for (int i = 0; i < 5000; ++i) {
    auto r = decide(store, "fresh-" + std::to_string(i), {{&p, 10}});
    if (r) {
      EXPECT_EQ(r->headline().remaining, 0);
      ++admitted;
      continue;
    }
    EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
    EXPECT_EQ(r.error().message, "memory store full: 100 keys (memory.max_keys), none free to evict");
  }
  EXPECT_EQ(admitted, 20);  // the room the 20 full buckets made, and no more
  EXPECT_EQ(store.evicted_count(), 20u);
  EXPECT_EQ(store.refused_count(), 4980u);
  EXPECT_EQ(store.size(), 100u);
  // Every spent client is still denied, every partly spent one keeps exactly what it had
  // (6 tokens, plus 0.2 s of refill: a third of a token).
  for (int i = 0; i < 50; ++i) {
    auto r = decide(store, "spent-" + std::to_string(i), {{&p, 1}});
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->allowed) << i;
    EXPECT_EQ(r->headline().remaining, 0);
  }
  for (int i = 0; i < 30; ++i) {
    auto r = decide(store, "partial-" + std::to_string(i), {{&p, 6}});
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->allowed) << i;
    EXPECT_EQ(r->headline().remaining, 0);
    EXPECT_FALSE(decide(store, "partial-" + std::to_string(i), {{&p, 1}})->allowed);
  }
}

TEST(MemoryStore, DropsFullStatesBeforeRefusing) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 1}, clock);
  const Policy quick = make_policy("quick", 10, {.period = std::chrono::seconds(1)});
  const Policy slow = make_policy("slow", 10);
  // 50 live states that must survive, 50 that will be full again in 0.1 s.
  for (int i = 0; i < 50; ++i) decide(store, "live-" + std::to_string(i), {{&slow, 1}});
  for (int i = 0; i < 50; ++i) decide(store, "idle-" + std::to_string(i), {{&quick, 1}});
  clock.advance(std::chrono::milliseconds(200));
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(decide(store, "new-" + std::to_string(i), {{&slow, 1}}));
  EXPECT_EQ(store.evicted_count(), 50u);  // the full buckets, all at the first insertion
  EXPECT_EQ(store.refused_count(), 0u);
  EXPECT_EQ(store.size(), 100u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(decide(store, "live-" + std::to_string(i), {{&slow, 0}})->headline().remaining, 9);
  }
  EXPECT_FALSE(decide(store, "one-more", {{&slow, 1}}));
}

// A write that puts a state's expiry later leaves it filed in the bucket of the earlier one: a
// full shard making room looks at each state's own expiry, and keeps this one.
TEST(MemoryStore, MakingRoomKeepsAStateWhoseExpiryMovedLater) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 2, .shards = 1}, clock);
  // 10 per 10 s: each token taken is one second until full again.
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(10)});
  decide(store, "spent", {{&p, 1}});  // full at +1 s
  decide(store, "quick", {{&p, 1}});  // full at +1 s
  decide(store, "spent", {{&p, 4}});  // full at +5 s, filed at +1 s
  clock.advance(std::chrono::seconds(1) + std::chrono::microseconds(kExpiryBucketUs));
  ASSERT_TRUE(decide(store, "new", {{&p, 1}}));  // room made by dropping "quick" alone
  EXPECT_EQ(store.evicted_count(), 1u);
  EXPECT_EQ(store.size(), 2u);
  // 5 tokens spent, one back a second later.
  EXPECT_EQ(decide(store, "spent", {{&p, 0}})->headline().remaining, 6);
}

TEST(MemoryStore, RefusesANewKeyRatherThanEvictALiveState) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 3, .shards = 1}, clock);
  const Policy p = make_policy("p", 10);
  decide(store, "a", {{&p, 3}});
  decide(store, "b", {{&p, 1}});  // one token short of full: still a spent budget
  decide(store, "c", {{&p, 2}});
  auto d = decide(store, "d", {{&p, 1}});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(store.evicted_count(), 0u);
  EXPECT_EQ(store.refused_count(), 1u);
  EXPECT_EQ(decide(store, "a", {{&p, 0}})->headline().remaining, 7);
  EXPECT_EQ(decide(store, "b", {{&p, 0}})->headline().remaining, 9);
  EXPECT_EQ(decide(store, "c", {{&p, 0}})->headline().remaining, 8);
  // A peek and a request that is denied write nothing: they need no room.
  EXPECT_TRUE(decide(store, "d", {{&p, 0}})->allowed);
  EXPECT_FALSE(decide(store, "d", {{&p, 11}})->allowed);
  EXPECT_EQ(store.refused_count(), 1u);
}

// A request whose identity is held for one policy but new for another is refused as a whole:
// nothing is consumed from the state it has.
TEST(MemoryStore, ARefusalConsumesNothing) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 2, .shards = 1}, clock);
  const Policy p = make_policy("p", 10);
  const Policy q = make_policy("q", 10);
  ASSERT_TRUE(decide(store, "a", {{&p, 1}}));
  ASSERT_TRUE(decide(store, "b", {{&p, 1}}));
  EXPECT_FALSE(decide(store, "a", {{&p, 1}, {&q, 1}}));
  EXPECT_EQ(decide(store, "a", {{&p, 0}})->headline().remaining, 9);
  EXPECT_EQ(store.size(), 2u);
  // The same policy twice is one key: with room for one, it fits.
  MemoryStore one(MemoryStoreOptions{.max_keys = 1, .shards = 1}, clock);
  auto r = decide(one, "x", {{&p, 1}, {&p, 1}});
  ASSERT_TRUE(r);
  EXPECT_EQ(one.size(), 1u);
}

TEST(MemoryStore, LongIdentitiesAreHeldAsTheirDigest) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 4}, clock);
  const Policy p = make_policy("p", 10);
  const std::string base(1024, 'k');
  std::string other = base;
  other.back() = 'x';  // differs in the last byte only
  ASSERT_TRUE(decide(store, base, {{&p, 10}})->allowed);
  EXPECT_FALSE(decide(store, base, {{&p, 1}})->allowed);     // the same identity: one state
  EXPECT_TRUE(decide(store, other, {{&p, 1}})->allowed);     // another one: its own state
  EXPECT_EQ(decide(store, other, {{&p, 0}})->headline().remaining, 9);
  // 64 bytes are held as they are, 65 hashed; neither shares state with the other.
  const std::string at(64, 'k'), over(65, 'k');
  EXPECT_EQ(decide(store, at, {{&p, 2}})->headline().remaining, 8);
  EXPECT_EQ(decide(store, over, {{&p, 3}})->headline().remaining, 7);
  EXPECT_EQ(decide(store, at, {{&p, 0}})->headline().remaining, 8);
  // A short identity made of the digest bytes (with or without the marker) is another client.
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(base.data()), base.size(), digest.data());
  const std::string raw(reinterpret_cast<const char*>(digest.data()), digest.size());
  EXPECT_EQ(decide(store, raw, {{&p, 0}})->headline().remaining, 10);
  EXPECT_EQ(decide(store, "#" + raw, {{&p, 0}})->headline().remaining, 10);
  EXPECT_EQ(store.size(), 4u);

  // A refund finds a long identity's state where decide() put it.
  auto spent = decide(store, other, {{&p, 5}});
  ASSERT_TRUE(spent && spent->allowed);
  const Charge charge{&p, 5};
  ASSERT_TRUE(store.refund_now(RefundRequest{other, {&charge, 1}, spent->decided_at}));
  EXPECT_EQ(decide(store, other, {{&p, 0}})->headline().remaining, 9);
}

// States written again with a later expiry stay filed where they were, and move to the bucket of
// their expiry when that one passes: at each step no state is dropped before its expiry, and
// every state whose expiry's bucket has passed is dropped, none left behind.
TEST(MemoryStore, RewrittenStatesExpireByTheirNewExpiry) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 1}, clock);
  // 10 per 10 s: each token taken is one second until full again.
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(10)});
  const std::int64_t t0 = to_us(clock.now());
  decide(store, "k0", {{&p, 1}});  // full at +1 s
  decide(store, "k1", {{&p, 2}});  // +2 s
  decide(store, "k2", {{&p, 3}});  // +3 s
  decide(store, "k3", {{&p, 4}});  // +4 s
  decide(store, "k1", {{&p, 3}});  // +5 s: moves past k2 and k3
  decide(store, "k3", {{&p, 1}});  // +5 s: ties with k1
  decide(store, "k0", {{&p, 1}});  // +2 s
  ASSERT_EQ(store.size(), 4u);
  const std::int64_t expiries[] = {t0 + 2'000'000, t0 + 5'000'000, t0 + 3'000'000, t0 + 5'000'000};
  // A peek on another key drops up to two expired states and writes nothing.
  const auto settle = [&] {
    for (int i = 0; i < 3; ++i) decide(store, "probe", {{&p, 0}});
  };
  std::int64_t at_ms = 0;
  for (std::int64_t ms : {1500, 1999, 2000, 2100, 2500, 3000, 3100, 3500, 4999, 5000, 5070, 6000}) {
    clock.advance(std::chrono::milliseconds(ms - at_ms));
    at_ms = ms;
    settle();
    const std::int64_t now = to_us(clock.now());
    std::size_t live = 0, held_at_most = 0;
    for (std::int64_t e : expiries) {
      live += e > now ? 1 : 0;
      held_at_most += ((e >> kExpiryBucketShift) + 1) * kExpiryBucketUs > now ? 1 : 0;
    }
    EXPECT_GE(store.size(), live) << "at +" << ms << " ms: a state dropped before its expiry";
    EXPECT_LE(store.size(), held_at_most) << "at +" << ms << " ms: a passed bucket left behind";
  }
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.evicted_count(), 0u);
  EXPECT_EQ(store.expired_count(), 4u);
}

// A refund puts a state's expiry earlier: the state moves to that bucket at once, and is dropped
// when it passes, not when the bucket it was filed in does.
TEST(MemoryStore, ARefundedStateIsDroppedByItsEarlierExpiry) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = 100, .shards = 1}, clock);
  // 10 per 10 s: each token taken is one second until full again.
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(10)});
  auto spent = decide(store, "k", {{&p, 5}});  // full at +5 s
  ASSERT_TRUE(spent && spent->allowed);
  const Charge charge{&p, 4};
  ASSERT_TRUE(store.refund_now(RefundRequest{"k", {&charge, 1}, spent->decided_at}));  // +1 s
  EXPECT_EQ(decide(store, "k", {{&p, 0}})->headline().remaining, 9);
  clock.advance(std::chrono::seconds(1) + std::chrono::microseconds(kExpiryBucketUs));
  for (int i = 0; i < 3; ++i) decide(store, "probe", {{&p, 0}});
  EXPECT_EQ(store.size(), 0u) << "held until the bucket of the expiry before the refund";
  EXPECT_EQ(store.expired_count(), 1u);
}

TEST(MemoryStore, TimeGoingBackwardsAddsNoTokens) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{}, clock);
  const Policy p = make_policy("p", 10, {.period = std::chrono::seconds(1)});
  ASSERT_TRUE(decide(store, "k", {{&p, 10}})->allowed);
  clock.advance(-std::chrono::seconds(30));
  EXPECT_FALSE(decide(store, "k", {{&p, 1}})->allowed);
}


// A model of the store that never forgets a state: each key's last written state, decided on by
// the same core functions the store calls (evaluate, plan_refund). A state the store dropped
// after its expiry decides as no state, which the core must decide exactly as the kept state;
// so every verdict of the store must equal the model's, whatever the store dropped, moved
// between expiry buckets or reused.
struct ModelRun {
  std::size_t max_keys = 0;
  std::size_t shards = 0;
  // Large enough that the store never refuses nor evicts a state that still counts.
  bool roomy = true;
  // With one shard, the model tells a refusal the store owed (the shard full of states whose
  // expiry bucket has not passed) from one it did not.
  bool check_refusals = false;
  // The clock sometimes goes back. A state dropped after its expiry may then count again in the
  // model but not in the store, so verdicts are not compared: the run checks only that the
  // store stays sound (no fault under ASan, within capacity, no refusal when roomy).
  bool backwards = false;
  // Identities beyond the six fixed ones: many keys grow the shards' key tables and erase
  // from long probe runs.
  int more_identities = 0;
  int steps = 0;
  std::uint64_t seed = 0;
};

void run_against_model(const ModelRun& run) {
  ManualClock clock;
  MemoryStore store(MemoryStoreOptions{.max_keys = run.max_keys, .shards = run.shards}, clock);
  using std::chrono::milliseconds;
  const std::vector<Policy> policies = {
      make_policy("tb", 5, {.algorithm = Algorithm::kTokenBucket, .period = milliseconds(300)}),
      make_policy("sw", 4, {.algorithm = Algorithm::kSlidingWindow, .period = milliseconds(1000)}),
      make_policy("fw", 3, {.algorithm = Algorithm::kFixedWindow, .period = milliseconds(200)}),
      make_policy("gcra", 6,
                  {.algorithm = Algorithm::kGcra, .period = milliseconds(500), .burst = 3}),
      // Expiries within one expiry bucket of each other.
      make_policy("tiny", 2, {.algorithm = Algorithm::kTokenBucket, .period = milliseconds(10)}),
  };
  std::vector<std::string> identities = {"a", "b", "c", "d", "e", std::string(100, 'L')};
  for (int i = 0; i < run.more_identities; ++i) identities.push_back("id-" + std::to_string(i));
  std::map<std::string, State> model;  // "<policy>/<identity>" -> the last state written
  // The expiry the store gives each of those states (none for one it never held).
  std::map<std::string, std::int64_t> expiry;
  struct Counter {
    std::int64_t value = 0;
    std::int64_t expires_us = 0;
  };
  std::map<std::string, Counter> counters;
  struct Allowed {
    std::string identity;
    std::vector<Charge> charges;
    Verdict verdict;
  };
  std::vector<Allowed> allowed;  // decisions a refund may give back
  std::mt19937_64 rng(run.seed);
  const auto pick = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  const auto model_key = [](const Charge& c, const std::string& id) {
    return c.policy->name + "/" + id;
  };
  std::uint64_t refusals = 0;
  for (int step = 0; step < run.steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    // Mostly small steps (several decisions per expiry bucket), some across buckets, some
    // beyond every period.
    switch (pick(0, 3)) {
      case 0: break;
      case 1: clock.advance(std::chrono::microseconds(pick(0, 2 * kExpiryBucketUs))); break;
      case 2: clock.advance(std::chrono::microseconds(pick(0, 400'000))); break;
      default: clock.advance(std::chrono::microseconds(pick(0, 1'500'000))); break;
    }
    if (run.backwards && pick(0, 7) == 0) {
      clock.advance(-std::chrono::microseconds(pick(0, 1'500'000)));
    }
    const Timestamp now = clock.now();
    const std::int64_t now_us = to_us(now);
    // The states no store may drop yet: their expiry bucket has not passed. An upper bound of
    // what the store holds after making room (a write of ttl 0 counts here even when the store
    // had dropped the state and so held nothing).
    const auto held = [now_us](std::int64_t expires_us) {
      return (((expires_us >> kExpiryBucketShift) + 1) * kExpiryBucketUs) > now_us;
    };
    std::size_t undroppable = 0;
    if (run.check_refusals) {
      for (const auto& [key, e] : expiry) undroppable += held(e) ? 1 : 0;
      for (const auto& [key, c] : counters) undroppable += held(c.expires_us) ? 1 : 0;
    }
    const std::string& id = identities[pick(0, identities.size() - 1)];
    const int action = static_cast<int>(pick(0, 9));
    if (action < 7) {
      std::vector<Charge> charges;
      const auto n = pick(1, 3);
      for (std::int64_t i = 0; i < n; ++i) {
        const Policy& p = policies[pick(0, policies.size() - 1)];  // sometimes one twice
        charges.push_back(Charge{&p, pick(0, p.limit + 1)});
      }
      std::vector<std::optional<State>> states(charges.size());
      for (std::size_t i = 0; i < charges.size(); ++i) {
        if (auto it = model.find(model_key(charges[i], id)); it != model.end()) {
          states[i] = it->second;
        }
      }
      Evaluation want = evaluate(charges, states, now);
      auto got = store.decide_now(DecideRequest{id, charges});
      if (!got) {
        ASSERT_FALSE(run.roomy) << got.error().to_string();
        ASSERT_EQ(got.error().code, ErrorCode::kResourceExhausted) << got.error().to_string();
        if (!run.backwards) {
          ASSERT_FALSE(want.writes.empty()) << "refused a decision that writes nothing";
        }
        ++refusals;  // changes nothing: the model skips it
        if (run.check_refusals && !run.backwards) {
          // Held after making room: the undroppable states, this decision's keys it found
          // (kept for reuse), and the keys it writes that are not held.
          std::set<std::string> needed;
          for (const Charge& c : charges) {
            const std::string key = model_key(c, id);
            if (!expiry.contains(key) || !held(expiry[key])) needed.insert(key);
          }
          ASSERT_GT(undroppable + needed.size(), store.capacity())
              << "refused with room for every key it writes";
        }
      } else {
        if (!run.backwards) {
          ASSERT_EQ(got->allowed, want.verdict.allowed);
          ASSERT_EQ(got->decisions, want.verdict.decisions);
          ASSERT_EQ(got->most_restrictive, want.verdict.most_restrictive);
        }
        ASSERT_EQ(got->decided_at, want.verdict.decided_at);
        for (const StateWrite& w : want.writes) {
          const std::string key = model_key(charges[w.index], id);
          model[key] = w.state;
          if (w.ttl.count() > 0 || expiry.contains(key)) expiry[key] = now_us + w.ttl.count();
        }
        // A refund of a decision that gave one policy twice is left out: plan_refund() plans a
        // write per charge from the same state, and the store stops at the first that deletes
        // it where the model would apply the last (both as on main; configurations name each
        // policy once).
        std::set<const Policy*> distinct;
        for (const Charge& c : charges) distinct.insert(c.policy);
        if (got->allowed && distinct.size() == charges.size()) {
          allowed.push_back(Allowed{id, charges, *got});
        }
      }
    } else if (action < 9) {
      if (allowed.empty()) continue;
      // Any decision allowed before, recent or not, once or twice.
      const Allowed& a = allowed[pick(0, allowed.size() - 1)];
      const RefundRequest request{a.identity, a.charges, a.verdict.decided_at,
                                  a.verdict.decisions};
      std::vector<Charge> charges = a.charges;
      std::vector<std::optional<State>> states(charges.size());
      for (std::size_t i = 0; i < charges.size(); ++i) {
        charges[i].cost = refund_cost(request, i);
        if (charges[i].cost == 0) continue;
        if (auto it = model.find(model_key(charges[i], a.identity)); it != model.end()) {
          states[i] = it->second;
        }
      }
      ASSERT_TRUE(store.refund_now(request));
      for (const StateWrite& w : plan_refund(charges, states, request.consumed_at, now)) {
        const std::string key = model_key(charges[w.index], a.identity);
        if (w.ttl.count() > 0) {
          model[key] = w.state;
          expiry[key] = now_us + w.ttl.count();
        } else {
          model.erase(key);
          expiry.erase(key);
        }
      }
    } else {
      const std::int64_t hits = pick(0, 3);
      const Duration ttl = std::chrono::microseconds(pick(1, 500'000));
      const CountRequest c{id, hits, ttl};
      auto got = store.count_now(std::span(&c, 1));
      Counter& want = counters[id];
      // An expired counter reads 0, but its expiry stays: the store holds it until its bucket
      // has passed.
      if (want.expires_us <= now_us) want.value = 0;
      if (!got) {
        ASSERT_FALSE(run.roomy) << got.error().to_string();
        ASSERT_EQ(got.error().code, ErrorCode::kResourceExhausted);
        ASSERT_GT(hits, 0);
        ++refusals;
        if (run.check_refusals) {
          ASSERT_GT(undroppable + 1, store.capacity()) << "refused a counter with room for it";
        }
      } else {
        if (hits > 0) want = Counter{want.value + hits, to_us(now) + ttl.count()};
        ASSERT_EQ(got->size(), 1u);
        if (!run.backwards) {
          ASSERT_EQ(got->front(), want.value);
        }
      }
    }
    ASSERT_LE(store.size(), store.capacity());
  }
  const MemoryStoreStats stats = store.stats();
  EXPECT_EQ(stats.refused, refusals);
  if (run.roomy) {
    EXPECT_EQ(stats.evicted, 0u);
    EXPECT_GT(stats.expired, 0u) << "the run exercised the dropping of expired states";
  } else {
    EXPECT_GT(refusals, 0u) << "the run exercised a full store";
    EXPECT_GT(stats.evicted, 0u) << "the run exercised making room";
  }
}

TEST(MemoryStore, DecidesAsAModelThatNeverForgetsAState) {
  run_against_model({.max_keys = 10'000, .shards = 3, .roomy = true, .steps = 100'000, .seed = 1});
}

TEST(MemoryStore, DecidesAsAModelThatNeverForgetsAStateOverManyKeys) {
  run_against_model({.max_keys = 100'000,
                     .shards = 2,
                     .roomy = true,
                     .more_identities = 400,
                     .steps = 100'000,
                     .seed = 6});
}

TEST(MemoryStore, StaysSoundWhenTheClockGoesBackAndForth) {
  run_against_model({.max_keys = 10'000,
                     .shards = 3,
                     .roomy = true,
                     .backwards = true,
                     .steps = 50'000,
                     .seed = 4});
  run_against_model(
      {.max_keys = 6, .shards = 2, .roomy = false, .backwards = true, .steps = 50'000, .seed = 5});
}

TEST(MemoryStore, DecidesAsAModelThatNeverForgetsAStateWhenFull) {
  // 3 states per shard for 6 identities x 4 policies + counters: often full.
  run_against_model({.max_keys = 6, .shards = 2, .roomy = false, .steps = 100'000, .seed = 2});
  run_against_model({.max_keys = 4,
                     .shards = 1,
                     .roomy = false,
                     .check_refusals = true,
                     .steps = 100'000,
                     .seed = 3});
}

}  // namespace
}  // namespace fg::memory

namespace fg::test {
INSTANTIATE_TYPED_TEST_SUITE_P(Memory, StoreConformance, ::testing::Types<memory::MemoryTraits>);
}  // namespace fg::test
