// The deny cache (src/decide/deny_cache.h) against a real Redis, with two instances sharing it:
// instance A caches denials, instance B does not and keeps consuming. Every denial A answers from
// its cache while it says there is still time to wait is checked at once by asking Redis the
// same question (a denied decision writes nothing, so the check changes no state): Redis, on its
// own TIME, must deny it too. And the cache must have answered a good share of A's requests.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <thread>

#include "decide/decider.h"
#include "decide/deny_cache.h"
#include "fixtures/redis_server.h"
#include "store/redis/redis_store.h"

namespace fg {
namespace {

using std::chrono::milliseconds;

// A cached denial checked only while it says at least this much remains: the check's own round
// trip (on a loaded, sanitized build) must not carry it past the moment Redis allows again.
constexpr Duration kCheckMargin = milliseconds(50);

std::shared_ptr<redis::RedisStore> store_on(const test::RedisServer& server) {
  redis::RedisStoreOptions o;
  o.url.hosts = {redis::RedisHost{"127.0.0.1", server.port()}};
  o.timeout = std::chrono::seconds(5);
  o.key_prefix = "fgtest";
  auto s = redis::RedisStore::make(o);
  EXPECT_TRUE(s) << s.error().to_string();
  return s ? std::shared_ptr<redis::RedisStore>(std::move(*s)) : nullptr;
}

decide::Outcome decide_sync(decide::Decider& d, const decide::Rules& rules,
                            const decide::Plan& plan, decide::ThreadMetrics* shard) {
  std::promise<decide::Outcome> p;
  d.decide(rules, plan, shard, [&p](decide::Outcome o) { p.set_value(std::move(o)); });
  return p.get_future().get();
}

Result<Verdict> store_sync(Store& store, const DecideRequest& r) {
  std::promise<Result<Verdict>> p;
  store.decide(r, [&p](Result<Verdict> v) { p.set_value(std::move(v)); });
  return p.get_future().get();
}

class DenyCacheRedis : public ::testing::TestWithParam<std::string> {};

TEST_P(DenyCacheRedis, NeverDeniesWhatRedisWouldAllow) {
  std::string why;
  auto server = test::RedisServer::start({}, &why);
  if (!server) {
    if (!test::RedisServer::installed()) FG_MISSING_TOOL(why);
    FAIL() << why;
  }
  auto cfg = config::parse_config("store: redis://" + server->address() +
                                      "\npolicies:\n  - {name: p, algorithm: " + GetParam() +
                                      ", limit: 4, period: 800ms}\n",
                                  "t");
  ASSERT_TRUE(cfg) << cfg.error().message;
  auto rules = decide::make_rules(std::make_shared<const config::Config>(std::move(*cfg)));
  ASSERT_NE(rules->deny_cache, nullptr);

  auto store_a = store_on(*server), store_b = store_on(*server), oracle = store_on(*server);
  ASSERT_TRUE(store_a && store_b && oracle);
  decide::Metrics metrics_a{1};
  decide::DeciderOptions oa;
  oa.store = store_a;
  decide::Decider a(std::move(oa));
  auto rules_b = decide::make_rules(rules->config);
  rules_b->deny_cache.reset();  // instance B asks Redis every time
  decide::DeciderOptions ob;
  ob.store = store_b;
  decide::Decider b(std::move(ob));

  std::mt19937 rng(7);
  const std::array<std::string, 2> keys = {"alice", "bob"};
  int hits = 0, checked = 0, from_a = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (int i = 0; i < 20000 && std::chrono::steady_clock::now() < deadline; ++i) {
    // Paced, so that time refills between requests and the other instance takes a little only:
    // a cache that outlives its retry_after then meets a Redis that allows.
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    const std::string& key = keys[rng() % keys.size()];
    const std::int64_t cost = 1 + static_cast<std::int64_t>(rng() % 2);
    auto plan = decide::check_plan(*rules, "p", key, cost);
    ASSERT_TRUE(plan);
    if (rng() % 40 == 0) {  // the other instance consumes too
      decide_sync(b, *rules_b, *plan, nullptr);
      continue;
    }
    ++from_a;
    const std::size_t before = store_a->stats().decisions;
    const decide::Outcome out = decide_sync(a, *rules, *plan, &metrics_a.shard(0));
    ASSERT_TRUE(out.verdict) << out.verdict.error().to_string();
    if (store_a->stats().decisions != before) continue;  // Redis answered
    ++hits;
    ASSERT_FALSE(out.verdict->allowed);
    if (out.verdict->headline().retry_after < kCheckMargin) continue;
    ++checked;
    const Result<Verdict> truth =
        store_sync(*oracle, DecideRequest{plan->identities.front(), plan->charges});
    ASSERT_TRUE(truth) << truth.error().to_string();
    ASSERT_FALSE(truth->allowed) << "the cache denied what Redis allows: " << key << " cost "
                                 << cost << ", cached retry_after "
                                 << out.verdict->headline().retry_after.count() << " us";
  }
  EXPECT_GT(hits, from_a / 4) << "the cache answered too little to prove anything";
  EXPECT_GT(checked, 50);
  EXPECT_NE(metrics_a.render().find("floodgate_deny_cache_hits_total " + std::to_string(hits)),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, DenyCacheRedis,
                         ::testing::Values("token_bucket", "gcra", "sliding_window",
                                           "fixed_window"));

}  // namespace
}  // namespace fg
