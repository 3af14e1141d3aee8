// The deciding service (decider.h): on_store_error worked out once, the breaker, the counting.
#include "decide/decider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <new>
#include <set>

#include "store/memory/memory_store.h"

// Every allocation of this test program is counted (count_allocations.h), for
// DeciderTest.ACallbackCostsNoAllocation.
#include "count_allocations.h"

using count_allocations::allocations;

namespace fg::decide {
namespace {

// A memory store that fails on demand.
class Flaky final : public Store {
 public:
  explicit Flaky(const Clock& clock) : inner_(MemoryStoreOptions{}, clock) {}
  std::optional<ErrorCode> fail_with;
  int calls = 0;
  void decide(const DecideRequest& r, DecideCallback done) override {
    ++calls;
    if (hold) return held.push_back(std::move(done));  // answered later, by the test
    if (fail_with) return done(fail(*fail_with, "down"));
    inner_.decide(r, std::move(done));
  }
  bool hold = false;
  std::vector<DecideCallback> held;
  void refund(const RefundRequest& r, RefundCallback done) override {
    inner_.refund(r, std::move(done));
  }
  void release(const LeaseRequest& r, RefundCallback done) override {
    inner_.release(r, std::move(done));
  }
  void renew(const LeaseRequest& r, RefundCallback done) override {
    inner_.renew(r, std::move(done));
  }
  std::string_view kind() const override { return "flaky"; }
  bool completes_inline() const override { return inline_answers; }
  // As a remote store says (it still answers inline): the deciding service keeps a deny cache.
  bool inline_answers = true;

 private:
  memory::MemoryStore inner_;
};

std::shared_ptr<Rules> rules_for(std::string_view on_store_error, Metrics& metrics) {
  auto c = config::parse_config(
      "on_store_error: " + std::string(on_store_error) +
          "\nlocal_fallback: {instances: 2}\n"
          "policies:\n  - {name: p, limit: 4, period: 1h}\n  - {name: s, limit: 1, period: 1h, "
          "shadow: true}\n",
      "t");
  EXPECT_TRUE(c) << c.error().message;
  auto r = make_rules(std::make_shared<const config::Config>(std::move(*c)));
  r->metric_ids = {metrics.policy_id("p"), metrics.policy_id("s")};
  return r;
}

struct DeciderTest : ::testing::Test {
  ManualClock clock;
  std::shared_ptr<Flaky> store = std::make_shared<Flaky>(clock);
  Metrics metrics{1};
  std::vector<std::string> degraded_logged;
  std::unique_ptr<Decider> decider = [this] {
    DeciderOptions o;
    o.store = store;
    o.local_store = std::make_shared<memory::MemoryStore>(MemoryStoreOptions{}, clock);
    o.clock = &clock;
    o.on_degraded = [this](const Error& e, config::OnStoreError) {
      degraded_logged.push_back(e.message);
    };
    auto d = std::make_unique<Decider>(std::move(o));
    d->set_metrics(&metrics);
    return d;
  }();

  Plan plan_for(const Rules& rules, std::size_t charges = 2) {
    Query q;
    q.method = "GET";
    q.path = "/x";
    q.header = [](std::string_view) { return std::nullopt; };
    q.peer = *config::parse_ip("203.0.113.7");
    Plan p;
    EXPECT_TRUE(plan(rules, q, false, p, nullptr));
    EXPECT_EQ(p.charges.size(), charges);
    return p;
  }
  Outcome once(const Rules& rules, const Plan& p) {
    std::optional<Outcome> out;
    decider->decide(rules, p, &metrics.shard(0), [&](Outcome o) { out = std::move(o); });
    EXPECT_TRUE(out) << "an inline store answers before decide() returns";
    return std::move(*out);
  }
};

// cached_denial() answers what decide() would from the deny cache, without the store, counted
// as decide() counts it; and nothing when the cache holds no denial for the plan.
TEST_F(DeciderTest, ACachedDenialIsTheDenialDecideWouldAnswerWithoutTheStore) {
  store->inline_answers = false;  // a remote store: the deny cache is used
  auto c = config::parse_config("policies:\n  - {name: p, limit: 2, period: 1h}\n", "t");
  ASSERT_TRUE(c) << c.error().message;
  auto rules = make_rules(std::make_shared<const config::Config>(std::move(*c)));
  rules->metric_ids = {metrics.policy_id("p")};
  const Plan p = plan_for(*rules, 1);
  EXPECT_FALSE(decider->cached_denial(*rules, p, &metrics.shard(0))) << "nothing denied yet";
  ASSERT_TRUE(once(*rules, p).verdict->allowed);
  ASSERT_TRUE(once(*rules, p).verdict->allowed);
  EXPECT_FALSE(decider->cached_denial(*rules, p, &metrics.shard(0))) << "allowed is not cached";
  const Outcome denied = once(*rules, p);  // from the store: remembered
  ASSERT_FALSE(denied.verdict->allowed);
  EXPECT_FALSE(denied.from_deny_cache);
  const int calls = store->calls;
  std::optional<Outcome> cached = decider->cached_denial(*rules, p, &metrics.shard(0));
  ASSERT_TRUE(cached);
  EXPECT_EQ(store->calls, calls) << "the store was asked";
  EXPECT_TRUE(cached->from_deny_cache);
  ASSERT_TRUE(cached->verdict);
  EXPECT_FALSE(cached->verdict->allowed);
  EXPECT_EQ(cached->verdict->headline().remaining, 0);
  EXPECT_EQ(cached->verdict->headline().limit, 2);
  EXPECT_EQ(cached->degraded, Degraded::kNo);
  // decide() gives the same answer from the cache, and both hits are counted.
  const Outcome again = once(*rules, p);
  EXPECT_TRUE(again.from_deny_cache);
  EXPECT_EQ(store->calls, calls);
  const std::string text = metrics.render();
  EXPECT_NE(text.find("floodgate_deny_cache_hits_total 2"), std::string::npos) << text;
}

TEST_F(DeciderTest, CountsEachPolicyOnceAndTheVerdictThatCounts) {
  auto rules = rules_for("allow", metrics);
  const Plan p = plan_for(*rules);
  Outcome o = once(*rules, p);
  ASSERT_TRUE(o.verdict);
  EXPECT_TRUE(o.served());
  EXPECT_EQ(o.counting(), &*o.verdict);
  o = once(*rules, p);  // the shadow policy denies, the other allows: served
  EXPECT_TRUE(o.served());
  const std::string page = metrics.render();
  EXPECT_NE(page.find(R"(floodgate_decisions_total{policy="p",outcome="allowed"} 2)"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find(R"(floodgate_decisions_total{policy="s",outcome="shadow_denied"} 1)"),
            std::string::npos);
  EXPECT_NE(page.find(R"(floodgate_store_requests_total{result="ok"} 2)"), std::string::npos);
}

// plan() writes the first identity into the plan's spare string: a session that hands each
// request's identity on to the next (its capacity) allocates nothing for it. Without a spare,
// the same plan allocates one string more.
TEST_F(DeciderTest, APlanWritesItsIdentityIntoTheSpareString) {
  auto c = config::parse_config(
      "identity:\n  - header: X-API-Key\npolicies:\n  - {name: p, limit: 2, period: 1h}\n", "t");
  ASSERT_TRUE(c) << c.error().message;
  auto rules = make_rules(std::make_shared<const config::Config>(std::move(*c)));
  const std::string key = "an-api-key-longer-than-a-small-string";
  Query q;
  q.method = "GET";
  q.path = "/x";
  q.header = [&key](std::string_view name) -> std::optional<std::string_view> {
    if (name == "X-API-Key") return key;
    return std::nullopt;
  };
  q.peer = *config::parse_ip("203.0.113.7");
  const auto allocations_of_a_plan = [&](Plan& p) {
    const long before = allocations();
    EXPECT_TRUE(plan(*rules, q, false, p, nullptr));
    return allocations() - before;
  };
  Plan fresh;
  const long without = allocations_of_a_plan(fresh);
  ASSERT_EQ(fresh.identities.size(), 1u);
  EXPECT_EQ(fresh.identities.front(), "key:x-api-key:" + key);

  Plan next;
  next.spare = std::move(fresh.identities.front());  // as the session hands it on
  const char* bytes = next.spare.data();
  const long with = allocations_of_a_plan(next);
  ASSERT_EQ(next.identities.size(), 1u);
  EXPECT_EQ(next.identities.front(), "key:x-api-key:" + key);
  EXPECT_EQ(next.identities.front().data(), bytes);  // the spare's bytes, rewritten
  EXPECT_EQ(with, without - 1);
}

// The completion of a decision (the door's callback inside the decider's inside the store's) is
// held inline: a decision through callbacks allocates exactly what the same decision answered at
// once (decide_now) does. The door's callback here is as large as the RLS service's (24 bytes),
// over std::function's 16-byte small buffer.
TEST_F(DeciderTest, ACallbackCostsNoAllocation) {
  auto rules = rules_for("allow", metrics);
  const Plan p = plan_for(*rules);
  // Past the limit (4 an hour, on a clock that stands still), every decision is the same denial
  // and allocates alike; the first ones differ (new states, the first denials).
  for (int i = 0; i < 6; ++i) once(*rules, p);
  long before = allocations();
  const Outcome now = decider->decide_now(*rules, p, &metrics.shard(0));
  const long answered_at_once = allocations() - before;
  ASSERT_TRUE(now.verdict);
  std::optional<Outcome> out;
  int calls = 0;
  long at_callback = 0;
  before = allocations();
  decider->decide(*rules, p, &metrics.shard(0), [&out, &calls, &at_callback](Outcome o) {
    at_callback = allocations();
    out = std::move(o);
    ++calls;
  });
  ASSERT_EQ(calls, 1);
  ASSERT_TRUE(out && out->verdict);
  EXPECT_EQ(out->verdict->decisions.size(), now.verdict->decisions.size());
  EXPECT_EQ(at_callback - before, answered_at_once);
}

TEST_F(DeciderTest, OnStoreErrorIsWorkedOutOnce) {
  store->fail_with = ErrorCode::kUnavailable;
  for (std::string_view mode : {"allow", "deny", "local"}) {
    auto rules = rules_for(mode, metrics);
    const Plan p = plan_for(*rules);
    const Outcome o = once(*rules, p);
    EXPECT_FALSE(o.verdict);
    if (mode == "allow") {
      EXPECT_EQ(o.degraded, Degraded::kAllow);
      EXPECT_TRUE(o.served());
      EXPECT_EQ(o.counting(), nullptr);
    } else if (mode == "deny") {
      EXPECT_EQ(o.degraded, Degraded::kDeny);
      EXPECT_FALSE(o.served());
    } else {
      EXPECT_EQ(o.degraded, Degraded::kLocal);
      ASSERT_TRUE(o.local_verdict);
      EXPECT_EQ(o.counting(), &*o.local_verdict);
      EXPECT_EQ(o.local_verdict->decisions[0].limit, 2);  // 4 divided among 2 instances
    }
  }
  EXPECT_EQ(degraded_logged.size(), 3u);
  // A full memory store is not an outage: no on_store_error, no breaker.
  store->fail_with = ErrorCode::kResourceExhausted;
  auto rules = rules_for("allow", metrics);
  const Outcome full = once(*rules, plan_for(*rules));
  EXPECT_EQ(full.degraded, Degraded::kNo);
  EXPECT_FALSE(full.served());
}

TEST_F(DeciderTest, TheBreakerAnswersAtOnceWhileTheStoreKeepsFailing) {
  auto rules = rules_for("deny", metrics);
  const Plan p = plan_for(*rules);
  store->fail_with = ErrorCode::kDeadlineExceeded;
  for (int i = 0; i < 5; ++i) once(*rules, p);
  EXPECT_EQ(store->calls, 5);
  EXPECT_TRUE(decider->circuit_open());
  EXPECT_EQ(once(*rules, p).degraded, Degraded::kDeny);
  EXPECT_EQ(store->calls, 5);  // not asked
  EXPECT_NE(metrics.render().find(R"(floodgate_store_requests_total{result="circuit_open"} 1)"),
            std::string::npos);
  // The probe closes it once the store answers.
  store->fail_with.reset();
  std::optional<Result<void>> probed;
  decider->probe([&](Result<void> r) { probed = r; });
  ASSERT_TRUE(probed && *probed);
  EXPECT_FALSE(decider->circuit_open());
  EXPECT_TRUE(once(*rules, p).verdict);
}

// A probe counts as in flight from probe() until its callback has run, however late the store
// answers: a server that stops waits for that before destroying the decider (Server::~Server).
TEST_F(DeciderTest, AProbeIsInFlightUntilItsCallbackHasRun) {
  store->hold = true;
  std::optional<Result<void>> probed;
  decider->probe([&](Result<void> r) { probed = r; });
  EXPECT_EQ(decider->probes_in_flight(), 1);
  ASSERT_EQ(store->held.size(), 1u);
  DecideCallback answer = std::move(store->held.front());
  store->held.clear();
  answer(fail(ErrorCode::kUnavailable, "down"));
  ASSERT_TRUE(probed);
  EXPECT_FALSE(*probed);
  EXPECT_EQ(decider->probes_in_flight(), 0);
  // Answered at once, it is counted out at once.
  store->hold = false;
  decider->probe([&](Result<void> r) { probed = r; });
  EXPECT_TRUE(*probed);
  EXPECT_EQ(decider->probes_in_flight(), 0);
}

// A store of several nodes (a cluster's masters) whose nodes fail one by one, the way the Redis
// store reports it: the failing node's index in Error::node.
class Nodes final : public Store {
 public:
  explicit Nodes(const Clock& clock) : inner_(MemoryStoreOptions{}, clock) {}
  std::set<int> down;
  std::map<int, int> calls;  // per node
  int node_of(std::string_view identity) const override {
    return identity.find("203.0.113.7") != std::string_view::npos ? 1 : 2;
  }
  std::string node_name(int node) const override { return "n" + std::to_string(node); }
  std::set<int> retired;  // nodes no identity maps to any more
  bool node_in_use(int node) const override { return !retired.contains(node); }
  void decide(const DecideRequest& r, DecideCallback done) override {
    const int node = node_of(r.identity);
    ++calls[node];
    if (down.contains(node)) {
      Error e = make_error(ErrorCode::kDeadlineExceeded, "timeout");
      e.node = node;
      return done(tl::unexpected(std::move(e)));
    }
    inner_.decide(r, std::move(done));
  }
  void refund(const RefundRequest& r, RefundCallback done) override {
    inner_.refund(r, std::move(done));
  }
  std::string_view kind() const override { return "nodes"; }

 private:
  memory::MemoryStore inner_;
};

TEST_F(DeciderTest, OneNodesOutageOpensOnlyItsCircuit) {
  auto nodes = std::make_shared<Nodes>(clock);
  DeciderOptions o;
  o.store = nodes;
  o.clock = &clock;
  Decider d(std::move(o));
  d.set_metrics(&metrics);
  auto rules = rules_for("deny", metrics);
  auto plan_from = [&](const char* ip) {
    Query q;
    q.method = "GET";
    q.path = "/x";
    q.header = [](std::string_view) { return std::nullopt; };
    q.peer = *config::parse_ip(ip);
    Plan p;
    EXPECT_TRUE(plan(*rules, q, false, p, nullptr));
    return p;
  };
  const Plan on_down = plan_from("203.0.113.7");  // node 1
  const Plan on_up = plan_from("203.0.113.8");    // node 2
  auto once_with = [&](const Plan& p) {
    std::optional<Outcome> out;
    d.decide(*rules, p, &metrics.shard(0), [&](Outcome x) { out = std::move(x); });
    EXPECT_TRUE(out);
    return std::move(*out);
  };

  nodes->down = {1};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(once_with(on_down).degraded, Degraded::kDeny);
  EXPECT_TRUE(d.circuit_open());
  EXPECT_EQ(d.open_circuits(), std::vector<std::string>{"n1"});
  // Node 1's clients: answered at once, the store is not asked.
  const Outcome refused = once_with(on_down);
  EXPECT_EQ(refused.degraded, Degraded::kDeny);
  EXPECT_EQ(refused.verdict.error().node, 1);
  EXPECT_EQ(nodes->calls[1], 5);
  // Node 2's clients: decided exactly, as if nothing happened (limit 4: 4 allowed, then denied).
  for (int i = 0; i < 6; ++i) {
    const Outcome out = once_with(on_up);
    ASSERT_TRUE(out.verdict) << out.verdict.error().to_string();
    EXPECT_EQ(out.degraded, Degraded::kNo);
    EXPECT_EQ(out.verdict->allowed, i < 4) << i;
  }
  EXPECT_EQ(nodes->calls[2], 6);
  const std::string page = metrics.render();
  EXPECT_NE(page.find(R"(floodgate_store_node_circuit_open{node="n1"} 1)"), std::string::npos);
  EXPECT_EQ(page.find(R"(node="n2")"), std::string::npos) << "node 2's circuit never opened";
  EXPECT_NE(page.find("floodgate_store_circuit_open 1"), std::string::npos);

  // Node 1's own probe, after its open duration: it fails while node 1 is down (reopening it
  // for twice as long), and closes the circuit once node 1 answers.
  clock.advance(std::chrono::milliseconds(500));
  EXPECT_EQ(once_with(on_down).degraded, Degraded::kDeny);
  EXPECT_EQ(nodes->calls[1], 6);
  EXPECT_TRUE(d.circuit_open());
  nodes->down.clear();
  clock.advance(std::chrono::milliseconds(999));
  EXPECT_EQ(once_with(on_down).degraded, Degraded::kDeny) << "still within the doubled wait";
  EXPECT_EQ(nodes->calls[1], 6);
  clock.advance(std::chrono::milliseconds(1));
  const Outcome probe = once_with(on_down);
  ASSERT_TRUE(probe.verdict) << probe.verdict.error().to_string();
  EXPECT_EQ(probe.degraded, Degraded::kNo);
  EXPECT_FALSE(d.circuit_open());
  EXPECT_TRUE(d.open_circuits().empty());
  EXPECT_NE(metrics.render().find(R"(floodgate_store_node_circuit_open{node="n1"} 0)"),
            std::string::npos);
  EXPECT_NE(metrics.render().find("floodgate_store_circuit_open 0"), std::string::npos);
}

TEST_F(DeciderTest, TheCircuitOfANodeThatServesNoOneIsForgotten) {
  auto nodes = std::make_shared<Nodes>(clock);
  DeciderOptions o;
  o.store = nodes;
  o.clock = &clock;
  Decider d(std::move(o));
  d.set_metrics(&metrics);
  auto rules = rules_for("allow", metrics);
  auto p = check_plan(*rules, "p", "203.0.113.7", 1);  // node 1
  ASSERT_TRUE(p);
  nodes->down = {1};
  for (int i = 0; i < 5; ++i) {
    d.decide(*rules, *p, nullptr, [](Outcome) {});
  }
  ASSERT_TRUE(d.circuit_open());
  // The readiness probe while node 1 still serves its slots: its circuit stays open.
  d.probe([](Result<void>) {});
  EXPECT_TRUE(d.circuit_open());
  // Its replica took its slots over: nothing maps to node 1 any more, nothing would probe it.
  nodes->retired = {1};
  d.probe([](Result<void>) {});
  EXPECT_FALSE(d.circuit_open());
  EXPECT_TRUE(d.open_circuits().empty());
  EXPECT_NE(metrics.render().find("floodgate_store_circuit_open 0"), std::string::npos);
}

TEST_F(DeciderTest, GiveBackReturnsWhatAnAllowedOutcomeTook) {
  auto rules = rules_for("allow", metrics);
  const Plan p = plan_for(*rules);
  const Outcome o = once(*rules, p);
  ASSERT_TRUE(o.verdict && o.verdict->allowed);
  EXPECT_EQ(o.verdict->decisions[0].remaining, 3);
  decider->give_back(*rules, p, *o.verdict);
  EXPECT_EQ(once(*rules, p).verdict->decisions[0].remaining, 3);  // not 2
}

TEST_F(DeciderTest, SlotsAreHeldUntilReleasedAndCountedInFlight) {
  auto c = config::parse_config(
      "policies:\n  - {name: slots, algorithm: concurrency, limit: 2}\n"
      "  - {name: p, limit: 100, period: 1h}\n",
      "t");
  ASSERT_TRUE(c) << c.error().message;
  std::shared_ptr<Rules> rules = make_rules(std::make_shared<const config::Config>(std::move(*c)));
  rules->metric_ids = {metrics.policy_id("slots"), metrics.policy_id("p")};
  metrics.declare_in_flight(rules->metric_ids[0]);
  EXPECT_NE(metrics.render().find(R"(floodgate_concurrency_in_flight{policy="slots"} 0)"),
            std::string::npos);

  const Plan p1 = plan_for(*rules);
  const Plan p2 = plan_for(*rules);
  ASSERT_TRUE(p1.takes_slots);
  EXPECT_NE(p1.lease, p2.lease) << "every request has its own lease";
  std::unique_ptr<Slots> s1 = decider->hold(rules, p1, once(*rules, p1));
  std::unique_ptr<Slots> s2 = decider->hold(rules, p2, once(*rules, p2));
  ASSERT_NE(s1, nullptr);
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(metrics.in_flight(rules->metric_ids[0]), 2);
  EXPECT_NE(metrics.render().find(R"(floodgate_concurrency_in_flight{policy="slots"} 2)"),
            std::string::npos);

  const Plan p3 = plan_for(*rules);
  const Outcome full = once(*rules, p3);
  ASSERT_TRUE(full.verdict);
  EXPECT_FALSE(full.served());
  EXPECT_EQ(full.verdict->headline().retry_after, kConcurrencyRetryAfter);
  EXPECT_EQ(full.verdict->decisions[1].remaining, 98) << "the full slots consumed no token";
  EXPECT_EQ(decider->hold(rules, p3, full), nullptr);

  s1->release();
  s1->release();  // once only
  EXPECT_EQ(metrics.in_flight(rules->metric_ids[0]), 1);
  const Plan p4 = plan_for(*rules);
  const Outcome again = once(*rules, p4);
  EXPECT_TRUE(again.served());
  std::unique_ptr<Slots> s4 = decider->hold(rules, p4, again);
  s2.reset();  // the destructor releases too
  s4.reset();
  EXPECT_EQ(metrics.in_flight(rules->metric_ids[0]), 0);

  // Allowed without the store (on_store_error: allow): no slot was taken, none to hold.
  store->fail_with = ErrorCode::kUnavailable;
  const Plan p5 = plan_for(*rules);
  const Outcome degraded = once(*rules, p5);
  EXPECT_TRUE(degraded.served());
  EXPECT_EQ(decider->hold(rules, p5, degraded), nullptr);
}

TEST_F(DeciderTest, DenialsFeedTheTopDeniedAndTheLastDecisionIsKept) {
  auto rules = rules_for("allow", metrics);
  const Plan p = plan_for(*rules);
  // p allows 4 an hour; s (shadow) allows 1: its denials are shadow denials, not denials.
  for (int i = 0; i < 4; ++i) once(*rules, p);
  EXPECT_TRUE(decider->top_denied().top(clock.now(), 10).empty());
  for (int i = 0; i < 3; ++i) once(*rules, p);
  const std::vector<DeniedCount> want = {{"ip:203.0.113.7", 3, 0}};
  EXPECT_EQ(decider->top_denied().top(clock.now(), 10), want);

  const auto last = metrics.last_decision(rules->metric_ids[0]);
  ASSERT_TRUE(last);
  EXPECT_FALSE(last->first.allowed);
  EXPECT_EQ(last->first.limit, 4);
  EXPECT_EQ(last->first.remaining, 0);
  EXPECT_GT(last->first.retry_after.count(), 0);
  EXPECT_EQ(last->second, clock.now());
  EXPECT_FALSE(metrics.last_decision(kLastDecisionPolicies));
  const MetricsTotals t = metrics.totals();
  ASSERT_GE(t.decisions.size(), 2u);
  EXPECT_EQ(t.decisions[rules->metric_ids[0]][0], 4u);  // allowed
  EXPECT_EQ(t.decisions[rules->metric_ids[0]][1], 3u);  // denied
  EXPECT_EQ(t.decisions[rules->metric_ids[1]][2], 6u);  // shadow denied
}

}  // namespace
}  // namespace fg::decide
