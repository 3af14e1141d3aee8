// The circuit breaker per store node (decider.h) against a real Redis Cluster (3 masters + 3
// replicas): one master is hung (SIGSTOP: its sockets stay open, nothing answers) and its
// replica is told not to take over (cluster-replica-no-failover), so its slots stay with it for
// the whole test. Its clients must be answered by on_store_error, after a few timeouts at once
// (its breaker open, the store not asked); every other client must be decided exactly as
// before (allowed up to the limit, then denied, never degraded).
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <set>

#include "decide/decider.h"
#include "fixtures/redis_server.h"
#include "store/redis/redis_store.h"

namespace fg {
namespace {

using namespace std::chrono_literals;

decide::Outcome decide_sync(decide::Decider& d, const decide::Rules& rules,
                            const decide::Plan& plan) {
  std::promise<decide::Outcome> p;
  d.decide(rules, plan, nullptr, [&p](decide::Outcome o) { p.set_value(std::move(o)); });
  return p.get_future().get();
}

// Polls `done` every 10 ms for up to `bound`.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST(NodeBreakerRedis, AHungMasterDegradesOnlyItsSlots) {
  std::string why;
  auto cluster = test::RedisCluster::start(&why);
  if (!cluster) {
    if (!test::RedisServer::installed()) FG_MISSING_TOOL(why);
    FAIL() << why;
  }
  const std::vector<test::RedisServer*> masters = cluster->masters();
  ASSERT_EQ(masters.size(), 3u);
  const std::set<test::RedisServer*> master_set(masters.begin(), masters.end());
  for (test::RedisServer* n : cluster->nodes()) {
    if (master_set.contains(n)) continue;
    const auto r = n->command({"CONFIG", "SET", "cluster-replica-no-failover", "yes"});
    ASSERT_FALSE(r.is_error) << r.str;
  }

  redis::RedisStoreOptions so;
  so.url.cluster = true;
  for (test::RedisServer* m : masters) so.url.hosts.push_back({"127.0.0.1", m->port()});
  so.key_secret = "node-breaker-test-secret-0123456";
  so.timeout = 300ms;  // what a decision on the hung master waits, before its breaker opens
  auto made = redis::RedisStore::make(so);
  ASSERT_TRUE(made) << made.error().to_string();
  std::shared_ptr<redis::RedisStore> store(std::move(*made));

  auto cfg = config::parse_config(
      "on_store_error: deny\npolicies:\n  - {name: p, limit: 5, period: 1h}\n", "t");
  ASSERT_TRUE(cfg) << cfg.error().message;
  auto rules = decide::make_rules(std::make_shared<const config::Config>(std::move(*cfg)));
  rules->deny_cache.reset();  // every answer from Redis: the counts below are Redis's

  decide::DeciderOptions o;
  o.store = store;
  o.breaker.failure_threshold = 3;
  o.breaker.open_duration = 60s;  // no probe during the test: the circuit stays open
  o.breaker.max_open_duration = 60s;
  o.breaker.probe_timeout = 60s;
  decide::Decider decider(std::move(o));
  decide::Metrics metrics{1};
  decider.set_metrics(&metrics);

  // The store learns the slot map in the background; then it can say which master serves whom.
  auto warm = decide::check_plan(*rules, "p", "warm-up", 0);
  ASSERT_TRUE(warm);
  ASSERT_TRUE(decide_sync(decider, *rules, *warm).verdict);
  std::map<int, std::vector<decide::Plan>> plans_by_node;
  ASSERT_TRUE(eventually(
      [&] {
        plans_by_node.clear();
        for (int i = 0; i < 200; ++i) {
          auto plan = decide::check_plan(*rules, "p", "client-" + std::to_string(i), 1);
          EXPECT_TRUE(plan);
          const int node = store->node_of(plan->identities.front());
          if (node < 0) return false;
          if (plans_by_node[node].size() < 3) plans_by_node[node].push_back(std::move(*plan));
        }
        return plans_by_node.size() == 3;
      },
      5000ms))
      << "the store never mapped every slot to one of the 3 masters";

  // The victim: the master of the first group, found by its address.
  const int victim_node = plans_by_node.begin()->first;
  const std::string victim_name = store->node_name(victim_node);
  test::RedisServer* victim = nullptr;
  for (test::RedisServer* m : masters) {
    if (victim_name == m->address()) victim = m;
  }
  ASSERT_NE(victim, nullptr) << victim_name;
  const std::vector<decide::Plan>& hung = plans_by_node[victim_node];

  // Everyone's first decision, exact.
  for (const auto& [node, plans] : plans_by_node) {
    for (const decide::Plan& p : plans) {
      const decide::Outcome out = decide_sync(decider, *rules, p);
      ASSERT_TRUE(out.verdict) << node << ": " << out.verdict.error().to_string();
      EXPECT_TRUE(out.verdict->allowed);
    }
  }

  victim->pause();
  // The victim's clients: each waits for the store's deadline until 3 failures open its node's
  // circuit; from then on they are answered at once, without the store.
  for (int i = 0; i < 3; ++i) {
    const decide::Outcome out = decide_sync(decider, *rules, hung[static_cast<std::size_t>(i)]);
    ASSERT_FALSE(out.verdict);
    EXPECT_EQ(out.verdict.error().code, ErrorCode::kDeadlineExceeded)
        << out.verdict.error().to_string();
    EXPECT_EQ(out.verdict.error().node, victim_node) << "the store names the failed master";
    EXPECT_EQ(out.degraded, decide::Degraded::kDeny);
  }
  EXPECT_TRUE(decider.circuit_open());
  EXPECT_EQ(decider.open_circuits(), std::vector<std::string>{victim_name});
  const std::uint64_t asked = store->stats().decisions;
  for (int round = 0; round < 5; ++round) {
    for (const decide::Plan& p : hung) {
      const decide::Outcome out = decide_sync(decider, *rules, p);
      ASSERT_FALSE(out.verdict);
      EXPECT_NE(out.verdict.error().message.find("circuit open"), std::string::npos)
          << out.verdict.error().to_string();
      EXPECT_EQ(out.degraded, decide::Degraded::kDeny);
    }
  }
  EXPECT_EQ(store->stats().decisions, asked) << "an open circuit does not ask the store";

  // Every other client: exact, as if nothing happened. The limit is 5 and each took 1 already:
  // 4 more allowed, then denied.
  for (const auto& [node, plans] : plans_by_node) {
    if (node == victim_node) continue;
    for (const decide::Plan& p : plans) {
      for (int i = 0; i < 6; ++i) {
        const decide::Outcome out = decide_sync(decider, *rules, p);
        ASSERT_TRUE(out.verdict) << store->node_name(node) << ": "
                                 << out.verdict.error().to_string();
        EXPECT_EQ(out.degraded, decide::Degraded::kNo);
        EXPECT_EQ(out.verdict->allowed, i < 4) << store->node_name(node) << " decision " << i;
        EXPECT_EQ(out.verdict->headline().remaining, i < 4 ? 3 - i : 0);
      }
    }
  }
  EXPECT_EQ(decider.open_circuits(), std::vector<std::string>{victim_name});
  EXPECT_NE(
      metrics.render().find("floodgate_store_node_circuit_open{node=\"" + victim_name + "\"} 1"),
      std::string::npos);
  victim->resume();
}

}  // namespace
}  // namespace fg
