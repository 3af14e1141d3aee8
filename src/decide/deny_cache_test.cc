// The deny cache (deny_cache.h): what it remembers and for how long, its bound, and, through the
// Decider, that it never changes an answer: a world with the cache and a world without it, fed
// the same requests at the same times, admit exactly the same ones.
#include "decide/deny_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "decide/decider.h"
#include "store/memory/memory_store.h"

namespace fg::decide {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A memory store that says it does not complete inline, as a shared store would (it still does:
// the tests stay single-threaded and deterministic). Counts the calls that reach it.
class Remote final : public Store {
 public:
  explicit Remote(const Clock& clock) : inner_(MemoryStoreOptions{}, clock) {}
  int calls = 0;
  void decide(const DecideRequest& r, DecideCallback done) override {
    ++calls;
    inner_.decide(r, std::move(done));
  }
  void refund(const RefundRequest& r, RefundCallback done) override {
    inner_.refund(r, std::move(done));
  }
  void release(const LeaseRequest& r, RefundCallback done) override {
    inner_.release(r, std::move(done));
  }
  std::string_view kind() const override { return "remote"; }
  bool completes_inline() const override { return false; }

 private:
  memory::MemoryStore inner_;
};

std::shared_ptr<Rules> rules_from(const std::string& yaml) {
  auto c = config::parse_config(yaml, "t");
  EXPECT_TRUE(c) << c.error().message;
  return make_rules(std::make_shared<const config::Config>(std::move(*c)));
}

struct World {
  explicit World(const Clock& clock) : store(std::make_shared<Remote>(clock)) {
    DeciderOptions o;
    o.store = store;
    o.clock = &clock;
    o.monotonic = &clock;
    decider = std::make_unique<Decider>(std::move(o));
  }
  Outcome decide(const Rules& rules, const Plan& plan) {
    std::optional<Outcome> out;
    decider->decide(rules, plan, &metrics.shard(0), [&](Outcome o) { out = std::move(o); });
    EXPECT_TRUE(out);
    return std::move(*out);
  }
  std::shared_ptr<Remote> store;
  std::unique_ptr<Decider> decider;
  Metrics metrics{1};
};

Plan check(const Rules& rules, std::string_view policy, std::string_view key, std::int64_t cost) {
  auto p = check_plan(rules, policy, key, cost);
  EXPECT_TRUE(p);
  return std::move(*p);
}

// The plan of a GET /x from one client, charged against every policy of `rules`.
Plan request(const Rules& rules) {
  Query q;
  q.method = "GET";
  q.path = "/x";
  q.header = [](std::string_view) -> std::optional<std::string_view> { return std::nullopt; };
  q.peer = *config::parse_ip("203.0.113.7");
  Plan p;
  EXPECT_TRUE(plan(rules, q, false, p, nullptr));
  return p;
}

TEST(DenyCache, AnswersADenialAgainUntilItsRetryAfterWithoutTheStore) {
  ManualClock clock;
  auto rules = rules_from("policies:\n  - {name: p, limit: 2, period: 10s}\n");
  World w(clock);
  const Plan plan = check(*rules, "p", "k", 1);
  EXPECT_TRUE(w.decide(*rules, plan).served());
  EXPECT_TRUE(w.decide(*rules, plan).served());
  const Outcome denied = w.decide(*rules, plan);  // the store's denial: 5 s until a token
  ASSERT_FALSE(denied.served());
  EXPECT_EQ(denied.verdict->headline().retry_after, seconds(5));
  EXPECT_EQ(w.store->calls, 3);

  clock.advance(seconds(2));
  const Outcome cached = w.decide(*rules, plan);
  ASSERT_TRUE(cached.verdict);
  EXPECT_FALSE(cached.served());
  EXPECT_EQ(w.store->calls, 3) << "answered from the cache";
  EXPECT_EQ(cached.verdict->headline().retry_after, seconds(3)) << "shortened by the time passed";
  EXPECT_EQ(cached.verdict->decided_at, denied.verdict->decided_at + seconds(2))
      << "dated when it is answered";
  EXPECT_EQ(cached.verdict->headline().limit, 2);

  clock.advance(seconds(3) - milliseconds(1));
  EXPECT_FALSE(w.decide(*rules, plan).served());
  EXPECT_EQ(w.store->calls, 3);
  clock.advance(milliseconds(1));  // retry_after is over: the store is asked, and allows
  EXPECT_TRUE(w.decide(*rules, plan).served());
  EXPECT_EQ(w.store->calls, 4);
  EXPECT_NE(w.metrics.render().find("floodgate_deny_cache_hits_total 2\n"), std::string::npos);
}

TEST(DenyCache, OnlyForTheSameOrAGreaterCost) {
  ManualClock clock;
  auto rules = rules_from("policies:\n  - {name: p, limit: 4, period: 4s}\n");
  World w(clock);
  EXPECT_TRUE(w.decide(*rules, check(*rules, "p", "k", 3)).served());
  EXPECT_FALSE(w.decide(*rules, check(*rules, "p", "k", 2)).served());  // 1 left
  EXPECT_EQ(w.store->calls, 2);
  EXPECT_FALSE(w.decide(*rules, check(*rules, "p", "k", 3)).served());
  EXPECT_EQ(w.store->calls, 2) << "a greater cost is denied from the cache";
  EXPECT_TRUE(w.decide(*rules, check(*rules, "p", "k", 1)).served());
  EXPECT_EQ(w.store->calls, 3) << "a smaller cost asks the store";
  EXPECT_FALSE(w.decide(*rules, check(*rules, "p", "other", 9)).served());
  EXPECT_EQ(w.store->calls, 4) << "another identity is another entry (and cost > burst: no entry)";
}

TEST(DenyCache, NeverForShadowPoliciesNorLongIdentitiesNorInlineStores) {
  ManualClock clock;
  auto rules = rules_from(
      "policies:\n  - {name: s, limit: 1, period: 1h, shadow: true}\n"
      "  - {name: p, limit: 1, period: 1h}\n");
  World w(clock);
  for (int i = 0; i < 3; ++i) w.decide(*rules, check(*rules, "s", "k", 1));
  EXPECT_EQ(w.store->calls, 3);
  const std::string long_key(kMaxCachedIdentityBytes, 'x');
  for (int i = 0; i < 3; ++i) w.decide(*rules, check(*rules, "p", long_key, 1));
  EXPECT_EQ(w.store->calls, 6);

  // A store that completes inline is asked every time.
  DeciderOptions o;
  auto inline_store = std::make_shared<memory::MemoryStore>(MemoryStoreOptions{}, clock);
  o.store = inline_store;
  o.clock = &clock;
  o.monotonic = &clock;
  Decider d(std::move(o));
  const Plan plan = check(*rules, "p", "k", 1);
  for (int i = 0; i < 3; ++i) d.decide(*rules, plan, nullptr, [](Outcome) {});
  EXPECT_EQ(rules->deny_cache->size(), 0u);
}

TEST(DenyCache, ReloadAndGiveBackForget) {
  ManualClock clock;
  const std::string yaml = "policies:\n  - {name: p, limit: 1, period: 1h}\n";
  auto rules = rules_from(yaml);
  World w(clock);
  const Plan plan = check(*rules, "p", "k", 1);
  const Outcome first = w.decide(*rules, plan);
  ASSERT_TRUE(first.served());
  w.decide(*rules, plan);
  EXPECT_EQ(rules->deny_cache->size(), 1u);
  w.decider->give_back(*rules, plan, *first.verdict);  // capacity back: the entry must go
  EXPECT_EQ(rules->deny_cache->size(), 0u);
  EXPECT_TRUE(w.decide(*rules, plan).served());

  w.decide(*rules, plan);
  EXPECT_EQ(rules->deny_cache->size(), 1u);
  auto reloaded = rules_from(yaml);
  EXPECT_EQ(reloaded->deny_cache->size(), 0u) << "a reload starts empty";
  EXPECT_EQ(rules_from("deny_cache: false\n" + yaml)->deny_cache, nullptr);
}

TEST(DenyCache, HoldsUntilTheLongestRetryAfterOfTheDenyingPolicies) {
  // Both policies deny the second request: "slow" for 100 s, then "fast" for 10 s. The store
  // denies it for 100 s, whichever policy comes last, and so does the cache.
  ManualClock clock;
  auto rules = rules_from(
      "policies:\n  - {name: slow, limit: 1, period: 100s}\n"
      "  - {name: fast, limit: 1, period: 10s}\n");
  World w(clock);
  const Plan plan = request(*rules);
  ASSERT_EQ(plan.charges.size(), 2u);
  EXPECT_TRUE(w.decide(*rules, plan).served());
  const Outcome denied = w.decide(*rules, plan);
  ASSERT_FALSE(denied.served());
  EXPECT_EQ(denied.verdict->decisions[0].retry_after, seconds(100));
  EXPECT_EQ(denied.verdict->decisions[1].retry_after, seconds(10));
  EXPECT_EQ(w.store->calls, 2);

  clock.advance(seconds(20));
  const Outcome cached = w.decide(*rules, plan);
  EXPECT_FALSE(cached.served());
  EXPECT_TRUE(cached.from_deny_cache) << "slow still denies for 80 s";
  EXPECT_EQ(w.store->calls, 2);
  EXPECT_EQ(cached.verdict->headline().retry_after, seconds(80));
}

TEST(DenyCache, NeverForAPlanWithAShadowPolicy) {
  // The enforced policy denies; the shadow one beside it must still be decided (and counted) by
  // the store at every request, so the denial is not cached.
  ManualClock clock;
  auto rules = rules_from(
      "policies:\n  - {name: watch, limit: 1, period: 1h, shadow: true}\n"
      "  - {name: p, limit: 1, period: 1h}\n");
  World w(clock);
  const Plan plan = request(*rules);
  ASSERT_EQ(plan.charges.size(), 2u);
  EXPECT_TRUE(w.decide(*rules, plan).served());
  for (int i = 0; i < 3; ++i) {
    const Outcome denied = w.decide(*rules, plan);
    EXPECT_FALSE(denied.served());
    EXPECT_FALSE(denied.from_deny_cache);
  }
  EXPECT_EQ(w.store->calls, 4);
  EXPECT_EQ(rules->deny_cache->size(), 0u);
}

TEST(DenyCache, NeverForConcurrencyPolicies) {
  // A full concurrency policy frees a slot whenever a response ends, which no retry_after
  // foretells: once the slot is given back, the next request must reach the store and be served.
  ManualClock clock;
  auto rules = rules_from(
      "policies:\n  - {name: slots, algorithm: concurrency, limit: 1}\n"
      "  - {name: p, limit: 100, period: 1h}\n");
  World w(clock);
  const Plan first = request(*rules);
  ASSERT_TRUE(first.takes_slots);
  std::unique_ptr<Slots> held = w.decider->hold(rules, first, w.decide(*rules, first));
  ASSERT_NE(held, nullptr);
  const Outcome full = w.decide(*rules, request(*rules));
  ASSERT_FALSE(full.served());
  EXPECT_EQ(full.verdict->headline().retry_after, kConcurrencyRetryAfter);
  EXPECT_EQ(rules->deny_cache->size(), 0u);

  held->release();
  const int calls = w.store->calls;
  const Outcome next = w.decide(*rules, request(*rules));
  EXPECT_TRUE(next.served());
  EXPECT_FALSE(next.from_deny_cache);
  EXPECT_EQ(w.store->calls, calls + 1);
}

TEST(DenyCache, BoundedByMaxEntries) {
  ManualClock clock;
  auto rules =
      rules_from("deny_cache: {max_entries: 64}\npolicies:\n  - {name: p, limit: 1, period: 1h}\n");
  ASSERT_EQ(rules->deny_cache->capacity(), 64u);
  World w(clock);
  for (int i = 0; i < 2000; ++i) {
    const Plan plan = check(*rules, "p", "client-" + std::to_string(i), 1);
    w.decide(*rules, plan);
    w.decide(*rules, plan);  // denied: remembered
    ASSERT_LE(rules->deny_cache->size(), rules->deny_cache->capacity());
  }
  EXPECT_EQ(rules->deny_cache->size(), 64u);
}

// max_entries is the bound, not rounded up to the shards: 1, 5 and 70 (not multiples of 16).
TEST(DenyCache, HoldsExactlyMaxEntriesWhateverTheShards) {
  for (const std::size_t max : {1u, 5u, 70u}) {
    ManualClock clock;
    auto rules = rules_from("deny_cache: {max_entries: " + std::to_string(max) +
                            "}\npolicies:\n  - {name: p, limit: 1, period: 1h}\n");
    ASSERT_EQ(rules->deny_cache->capacity(), max);
    World w(clock);
    for (int i = 0; i < 2000; ++i) {
      const Plan plan = check(*rules, "p", "client-" + std::to_string(i), 1);
      w.decide(*rules, plan);
      w.decide(*rules, plan);  // denied: remembered
      ASSERT_LE(rules->deny_cache->size(), max) << i;
    }
    EXPECT_EQ(rules->deny_cache->size(), max);
  }
}

// Two worlds, one with the cache and one without, get the same requests at the same times: every
// answer must be the same, and the cache must have answered a good share of them. A cached
// denial of something the store would allow shows up as a difference (the world without the
// cache admits it, and from then on their states differ too).
void same_answers(const std::string& yaml, bool several_policies, std::uint32_t seed) {
  SCOPED_TRACE(yaml);
  ManualClock clock_a, clock_b;
  auto rules_a = rules_from(yaml);
  auto rules_b = rules_from("deny_cache: false\n" + yaml);
  World a(clock_a), b(clock_b);
  std::mt19937 rng(seed);
  const std::array<std::string, 3> keys = {"alice", "bob", "carol"};
  int hits = 0, admitted = 0;
  for (int i = 0; i < 20000; ++i) {
    const Duration step(std::uniform_int_distribution<std::int64_t>(0, 40'000)(rng));
    clock_a.advance(step);
    clock_b.advance(step);
    const std::string& key = keys[rng() % keys.size()];
    Plan pa, pb;
    if (several_policies) {
      Query q;
      q.method = "GET";
      q.path = "/x";
      q.header = [&key](std::string_view) -> std::optional<std::string_view> { return key; };
      q.peer = *config::parse_ip("203.0.113.7");
      ASSERT_TRUE(plan(*rules_a, q, false, pa, nullptr));
      ASSERT_TRUE(plan(*rules_b, q, false, pb, nullptr));
    } else {
      const std::int64_t cost = 1 + static_cast<std::int64_t>(rng() % 3);
      pa = check(*rules_a, "p", key, cost);
      pb = check(*rules_b, "p", key, cost);
    }
    const int calls = a.store->calls;
    const Outcome oa = a.decide(*rules_a, pa);
    const Outcome ob = b.decide(*rules_b, pb);
    ASSERT_TRUE(oa.verdict && ob.verdict);
    ASSERT_EQ(oa.served(), ob.served()) << "request " << i << " (" << key << ")";
    ASSERT_EQ(oa.verdict->headline().limit, ob.verdict->headline().limit);
    if (a.store->calls == calls) {
      ++hits;
      // What a client is told to wait never exceeds what the store says.
      ASSERT_LE(oa.verdict->headline().retry_after, ob.verdict->headline().retry_after);
    }
    admitted += oa.served() ? 1 : 0;
  }
  EXPECT_GT(hits, 2000) << "the cache answered too little to prove anything";
  EXPECT_GT(admitted, 100);
}

TEST(DenyCache, NeverChangesAnAnswerTokenBucket) {
  same_answers("policies:\n  - {name: p, algorithm: token_bucket, limit: 5, period: 2s}\n", false,
               1);
}
TEST(DenyCache, NeverChangesAnAnswerGcra) {
  same_answers("policies:\n  - {name: p, algorithm: gcra, limit: 5, period: 2s, burst: 3}\n", false,
               2);
}
TEST(DenyCache, NeverChangesAnAnswerSlidingWindow) {
  same_answers("policies:\n  - {name: p, algorithm: sliding_window, limit: 5, period: 2s}\n", false,
               3);
}
TEST(DenyCache, NeverChangesAnAnswerFixedWindow) {
  same_answers("policies:\n  - {name: p, algorithm: fixed_window, limit: 5, period: 2s}\n", false,
               4);
}
TEST(DenyCache, NeverChangesAnAnswerSeveralPolicies) {
  same_answers(
      "identity: [{header: X-API-Key}]\npolicies:\n"
      "  - {name: burst, algorithm: token_bucket, limit: 3, period: 1s}\n"
      "  - {name: minute, algorithm: sliding_window, limit: 20, period: 10s}\n"
      "  - {name: window, algorithm: fixed_window, limit: 30, period: 15s}\n",
      true, 5);
}

}  // namespace
}  // namespace fg::decide
