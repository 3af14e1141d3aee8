// RedisStore against a real Redis Cluster (3 masters + 3 replicas): the conformance suite,
// keys spread over the masters, slot migration (ASK and MOVED) with exact counts, failover,
// FUNCTION FLUSH, TTLs.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "store/redis/keys.h"
#include "store/redis/redis_store.h"
#include "app/wiring.h"
#include "store/redis/redis_test_util.h"
#include "store/redis/script.h"
#include "store_conformance.h"
#include "time_scale.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;
using test::make_policy;

// One cluster for the whole process (ctest runs each test in its own process).
class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!test::RedisServer::installed())
      FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
    std::string why;
    const auto start = std::chrono::steady_clock::now();
    cluster_ = test::RedisCluster::start(&why);
    ASSERT_TRUE(cluster_) << why;
    std::cout << "cluster formed in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count()
              << " ms\n";
  }
  void TearDown() override { cluster_.reset(); }
  static test::RedisCluster& cluster() { return *cluster_; }

 private:
  static inline std::unique_ptr<test::RedisCluster> cluster_;
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

test::RedisCluster& cluster() { return ClusterEnvironment::cluster(); }

// The stores here key their hash tags with this secret, as a deployment does (keys.h); the
// tests compute the same keys and slots with kTags.
constexpr std::string_view kKeySecret = "cluster-test-secret-0123456789";
const TagKey kTags = make_tag_key(kKeySecret);

std::unique_ptr<RedisStore> make_store(Duration timeout = 5s, std::string url = "") {
  RedisStoreOptions o;
  auto parsed = parse_redis_url(url.empty() ? cluster().url() : url, o);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().to_string();
  o.timeout = timeout;
  o.key_secret = std::string(kKeySecret);
  auto store = RedisStore::make(o);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

std::vector<std::string> keys_of(const test::RedisServer& s) {
  std::vector<std::string> keys;
  std::string cursor = "0";
  for (int i = 0; i < 100000; ++i) {
    auto r = s.command({"SCAN", cursor, "COUNT", "1000"});
    if (r.is_error || r.elements.size() != 2) break;
    for (const auto& k : r.elements[1].elements) keys.push_back(k.str);
    cursor = r.elements[0].str;
    if (cursor == "0") break;
  }
  return keys;
}

void flush_all() {
  for (auto* m : cluster().masters()) m->command({"FLUSHALL"});
}

std::string node_id(const test::RedisServer& s) { return s.command({"CLUSTER", "MYID"}).str; }

struct ClusterTraits {
  std::unique_ptr<Store> make() {
    flush_all();
    return make_store();
  }
  void advance(Duration d) { std::this_thread::sleep_for(d); }
  std::size_t live_states() {
    std::size_t n = 0;
    for (auto* m : cluster().masters()) n += keys_of(*m).size();
    return n;
  }
};

}  // namespace
}  // namespace fg::redis

namespace fg::test {
INSTANTIATE_TYPED_TEST_SUITE_P(RedisCluster, StoreConformance,
                               ::testing::Types<fg::redis::ClusterTraits>);
}  // namespace fg::test

namespace fg::redis {
namespace {

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { flush_all(); }
};

TEST_F(RedisClusterTest, KindSaysRedisCluster) { EXPECT_EQ(make_store()->kind(), "redis-cluster"); }

TEST_F(RedisClusterTest, KeysSpreadOverEveryMaster) {
  auto store = make_store();
  const Policy a = make_policy("a", 10);
  const Policy b = make_policy("b", 10, {.algorithm = Algorithm::kFixedWindow});
  // The first decision may race the first CLUSTER SLOTS and take one MOVED from a seed.
  ASSERT_TRUE(test::decide(*store, "warm-up", {{&a, 0}}).has_value());
  const auto moved_at_start = store->stats().moved;
  EXPECT_LE(moved_at_start, 1u);
  for (int i = 0; i < 300; ++i) {
    auto r = test::decide(*store, "user-" + std::to_string(i), {{&a, 1}, {&b, 1}});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ASSERT_TRUE(r->allowed);
  }
  std::size_t total = 0;
  for (auto* m : cluster().masters()) {
    const auto keys = keys_of(*m);
    EXPECT_GT(keys.size(), 50u) << m->address();
    total += keys.size();
    // Each master holds only keys of its own slots, and both keys of an identity together.
    for (const auto& k : keys) EXPECT_EQ(cluster().master_of_slot(key_slot(k)), m) << k;
  }
  EXPECT_EQ(total, 600u);
  // With the map known, every decision goes straight to the right master.
  EXPECT_EQ(store->stats().moved, moved_at_start);
}

// Two identities whose keys share a slot.
std::pair<std::string, std::string> identities_in_one_slot(int* slot) {
  std::map<int, std::string> seen;
  for (int i = 0; i < 100000; ++i) {
    const std::string id = "id-" + std::to_string(i);
    const int s = identity_slot(kTags, id);
    auto [it, fresh] = seen.emplace(s, id);
    if (!fresh) {
      *slot = s;
      return {it->second, id};
    }
  }
  return {};
}

TEST_F(RedisClusterTest, BatchesKeepSlotsApart) {
  auto store = make_store();
  int slot = 0;
  const auto [first, second] = identities_in_one_slot(&slot);
  ASSERT_FALSE(first.empty());
  const Policy p = make_policy("batched", 5);
  constexpr int kSpread = 200, kEach = 20;
  std::atomic<int> errors{0}, spread_allowed{0}, first_allowed{0}, second_allowed{0};
  // The store's first map: before it lands, calls go to a seed and most come back MOVED and are
  // sent again, which is not what the count of calls below is about.
  ASSERT_TRUE(testing::eventually([&] { return store->node_of(first) >= 0; }));
  const RedisStoreStats before = store->stats();
  // All made in one handler, so staged together: 200 identities over many slots (one call per
  // slot, on the master of that slot), and 2 x 20 decisions on two identities of one slot.
  testing::on_bound_thread(*store, kSpread + 2 * kEach, [&](auto one_done) {
    const std::vector<Charge> charges = {{&p, 1}};
    for (int i = 0; i < kSpread + 2 * kEach; ++i) {
      std::string identity = "spread-" + std::to_string(i);
      std::atomic<int>* allowed = &spread_allowed;
      if (i >= kSpread) {
        const bool one = (i - kSpread) % 2 == 0;
        identity = one ? first : second;
        allowed = one ? &first_allowed : &second_allowed;
      }
      store->decide(DecideRequest{identity, charges}, [&, allowed, one_done](Result<Verdict> r) {
        if (!r) {
          ++errors;
          std::cerr << r.error().to_string() << "\n";
        } else if (r->allowed) {
          ++*allowed;
        }
        one_done();
      });
    }
  });
  const RedisStoreStats after = store->stats();
  EXPECT_EQ(errors.load(), 0);  // no CROSSSLOT: no call mixed slots
  EXPECT_EQ(spread_allowed.load(), kSpread);
  EXPECT_EQ(first_allowed.load(), 5);
  EXPECT_EQ(second_allowed.load(), 5);
  // The 40 decisions of the shared slot went out together (one call), so fewer calls than
  // decisions; a MOVED (the bound thread's slot map may still be loading) resends a call whole.
  EXPECT_LT(after.commands - before.commands, static_cast<std::uint64_t>(kSpread + kEach));
  // Each master holds only keys of its own slots.
  for (auto* m : cluster().masters()) {
    for (const auto& k : keys_of(*m)) EXPECT_EQ(cluster().master_of_slot(key_slot(k)), m) << k;
  }
}

TEST_F(RedisClusterTest, ASlotMigrationIsFollowedThroughAskAndMoved) {
  int slot = -1;
  const auto [a, b] = identities_in_one_slot(&slot);
  ASSERT_GE(slot, 0);
  test::RedisServer* source = cluster().master_of_slot(slot);
  ASSERT_NE(source, nullptr);
  test::RedisServer* target = nullptr;
  for (auto* m : cluster().masters()) {
    if (m != source) target = m;
  }
  ASSERT_NE(target, nullptr);
  const std::string source_id = node_id(*source);
  const std::string target_id = node_id(*target);

  auto store = make_store();
  const Policy p = make_policy("migrating", 10, {.algorithm = Algorithm::kGcra});
  int allowed_a = 0;
  auto decide_a = [&] {
    auto r = test::decide(*store, a, {{&p, 1}});
    EXPECT_TRUE(r.has_value()) << r.error().to_string();
    if (r && r->allowed) ++allowed_a;
    return r;
  };
  for (int i = 0; i < 3; ++i) decide_a();

  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", source_id})
                   .is_error);
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", target_id})
                   .is_error);

  // b has no key yet: the source answers ASK, the target (after ASKING) creates it.
  auto rb = test::decide(*store, b, {{&p, 1}});
  ASSERT_TRUE(rb.has_value()) << rb.error().to_string();
  EXPECT_TRUE(rb->allowed);
  EXPECT_GE(store->stats().asks, 1u);
  EXPECT_EQ(target->command({"EXISTS", make_key("fg", kTags, b, p.name)}).integer, 0)
      << "without ASKING the target does not serve the slot's keys; with it, it does";
  EXPECT_EQ(keys_of(*target).size(), 1u);

  // a's key is still on the source: served there.
  auto r = decide_a();
  EXPECT_EQ(r->headline().remaining, 6);

  // Move a's key; the source now answers ASK for it.
  const auto migrated = source->command({"MIGRATE", "127.0.0.1", std::to_string(target->port()), "",
                                         "0", "5000", "KEYS", make_key("fg", kTags, a, p.name)});
  ASSERT_FALSE(migrated.is_error) << migrated.str;
  const auto asks_before = store->stats().asks;
  r = decide_a();
  EXPECT_EQ(r->headline().remaining, 5) << "the count continues on the target";
  EXPECT_GT(store->stats().asks, asks_before);

  // The slot is the target's now, everywhere: MOVED.
  for (auto* m : cluster().masters()) {
    ASSERT_FALSE(
        m->command({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", target_id}).is_error);
  }
  const auto moved_before = store->stats().moved;
  r = decide_a();
  EXPECT_EQ(r->headline().remaining, 4);
  EXPECT_GT(store->stats().moved, moved_before);
  for (int i = 0; i < 10; ++i) decide_a();
  EXPECT_EQ(allowed_a, 10);
  EXPECT_EQ(store->stats().errors, 0u);
}

// CLUSTER SLOTS calls answered by every node of the cluster so far (INFO commandstats).
std::uint64_t cluster_slots_calls() {
  std::uint64_t calls = 0;
  for (auto* n : cluster().nodes()) {
    const std::string info = n->command({"INFO", "commandstats"}).str;
    const std::string field = "cmdstat_cluster|slots:calls=";
    if (auto at = info.find(field); at != std::string::npos) {
      calls += std::stoull(info.substr(at + field.size()));
    }
  }
  return calls;
}

// An I/O thread bound to a store, as an HTTP server thread is: decisions made through it use its
// own connections and the store's one slot map.
class BoundThread {
 public:
  explicit BoundThread(RedisStore& store)
      : store_(store), work_(boost::asio::make_work_guard(ioc_)), io_([this] { ioc_.run(); }) {
    on_thread([this] { store_.bind_current_thread(ioc_); });
  }
  ~BoundThread() {
    on_thread([this] { store_.unbind_current_thread(); });
    work_.reset();
    io_.join();
  }

  Result<Verdict> decide(const std::string& identity, const Policy& policy) {
    std::promise<Result<Verdict>> result;
    boost::asio::post(ioc_, [&] {
      const std::vector<Charge> charges = {{&policy, 1}};
      store_.decide(DecideRequest{identity, charges},
                    [&](Result<Verdict> r) { result.set_value(std::move(r)); });
    });
    return result.get_future().get();  // the store's deadline bounds the wait
  }

 private:
  void on_thread(const std::function<void()>& f) {
    std::promise<void> done;
    boost::asio::post(ioc_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  RedisStore& store_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread io_;
};

// The store's threads share one slot map: it is asked for once at start, not once per thread, and
// after a migration the MOVED met by one thread, and the one refresh it starts, serve every thread.
TEST_F(RedisClusterTest, ThreadsShareOneSlotMapAndOneRefresh) {
  int slot = -1;
  const std::string id = identities_in_one_slot(&slot).first;
  test::RedisServer* source = cluster().master_of_slot(slot);
  test::RedisServer* target = nullptr;
  for (auto* m : cluster().masters()) {
    if (m != source) target = m;
  }
  const std::string source_id = node_id(*source);
  const std::string target_id = node_id(*target);
  const std::string s = std::to_string(slot);
  const std::uint64_t calls_at_start = cluster_slots_calls();
  auto store = make_store();
  ASSERT_TRUE(testing::eventually([&] { return store->node_of(id) >= 0; }));
  const Policy p = make_policy("shared-map", 100);
  BoundThread one(*store), two(*store);
  ASSERT_TRUE(one.decide(id, p).has_value());
  ASSERT_TRUE(two.decide(id, p).has_value());
  // Three threads (the store's own and two bound ones), one map: one CLUSTER SLOTS, and no
  // thread met a MOVED (the map was there before either decided). A refresh asked for by a bound
  // thread at its start would come at most 100 ms (the store's minimum interval) after the first:
  // wait that out twice.
  std::this_thread::sleep_for(250ms);
  const std::uint64_t calls_started = cluster_slots_calls() - calls_at_start;
  std::cout << "CLUSTER SLOTS at start: " << calls_started
            << " (store: " << store->stats().refreshes << " refreshes)\n";
  EXPECT_EQ(store->stats().refreshes, 1u);
  EXPECT_EQ(calls_started, 1u);
  EXPECT_EQ(store->stats().moved, 0u);

  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", s, "IMPORTING", source_id}).is_error);
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", s, "MIGRATING", target_id}).is_error);
  ASSERT_FALSE(source
                   ->command({"MIGRATE", "127.0.0.1", std::to_string(target->port()), "", "0",
                              "5000", "KEYS", make_key("fg", kTags, id, p.name)})
                   .is_error);
  for (auto* m : cluster().masters()) {
    ASSERT_FALSE(m->command({"CLUSTER", "SETSLOT", s, "NODE", target_id}).is_error);
  }
  const RedisStoreStats before = store->stats();
  const std::uint64_t calls_before = cluster_slots_calls();

  // The first thread meets the MOVED; the map it updates (and the refresh it starts) is the
  // second thread's too: that one goes straight to the target.
  auto r = one.decide(id, p);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->headline().remaining, 97);
  EXPECT_EQ(store->stats().moved, before.moved + 1);
  EXPECT_EQ(store->node_name(store->node_of(id)), target->address());
  r = two.decide(id, p);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->headline().remaining, 96);
  EXPECT_EQ(store->stats().moved, before.moved + 1) << "the second thread met a MOVED of its own";
  // Nothing asks for another refresh: wait out twice the store's minimum interval between two
  // (100 ms), which a refresh asked for by the second thread would have waited at most.
  std::this_thread::sleep_for(250ms);
  const std::uint64_t calls_migrated = cluster_slots_calls() - calls_before;
  std::cout << "CLUSTER SLOTS after the migration: " << calls_migrated
            << " (store: " << store->stats().refreshes - before.refreshes << " refreshes, "
            << store->stats().moved - before.moved << " MOVED)\n";
  EXPECT_EQ(store->stats().refreshes, before.refreshes + 1);
  EXPECT_EQ(calls_migrated, 1u);
  EXPECT_EQ(store->stats().errors, 0u);
}

// A failover makes every failing decision, on every thread, ask for the slot map: the store still
// starts at most one CLUSTER SLOTS per 100 ms for all its threads together.
TEST_F(RedisClusterTest, AFailoverIsRefreshedAtMostOncePer100MsForAllThreads) {
  auto store = make_store(test::scaled(Duration(100ms)));
  const Policy p = make_policy("failover-threads", 1000000);
  test::RedisServer* victim = cluster().master_of_slot(identity_slot(kTags, "victim"));
  ASSERT_NE(victim, nullptr);
  BoundThread one(*store), two(*store);
  ASSERT_TRUE(testing::eventually([&] { return one.decide("victim", p).has_value(); }));
  ASSERT_TRUE(testing::eventually([&] { return two.decide("victim", p).has_value(); }));
  // Whatever the warm-up asked for (a first decision may race the first map) is over after two
  // intervals. Refreshes start at least 100 ms apart from here on: at most one more than the
  // whole intervals elapsed.
  std::this_thread::sleep_for(250ms);
  const auto since = std::chrono::steady_clock::now();
  const std::uint64_t refreshes_before = store->stats().refreshes;
  victim->kill();
  bool resumed = false;
  while (!resumed && std::chrono::steady_clock::now() - since < 30s) {
    const bool first = one.decide("victim", p).has_value();
    const bool second = two.decide("victim", p).has_value();
    resumed = first && second;
  }
  const std::uint64_t refreshes = store->stats().refreshes - refreshes_before;
  const auto took = std::chrono::steady_clock::now() - since;
  const auto intervals = static_cast<std::uint64_t>(took / 100ms);
  std::cout << "resumed after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms, "
            << refreshes << " refreshes\n";
  EXPECT_TRUE(resumed);
  EXPECT_LE(refreshes, intervals + 1);
}

TEST_F(RedisClusterTest, NodesDisagreeingAtTheEndOfAMigrationAreWaitedOut) {
  int slot = -1;
  const std::string id = identities_in_one_slot(&slot).first;
  test::RedisServer* source = cluster().master_of_slot(slot);
  test::RedisServer* target = nullptr;
  for (auto* m : cluster().masters()) {
    if (m != source) target = m;
  }
  const std::string source_id = node_id(*source);
  const std::string target_id = node_id(*target);
  const std::string s = std::to_string(slot);
  auto store = make_store(3s);
  const Policy p = make_policy("pingpong", 10);
  ASSERT_TRUE(test::decide(*store, id, {{&p, 1}})->allowed);
  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", s, "IMPORTING", source_id}).is_error);
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", s, "MIGRATING", target_id}).is_error);
  ASSERT_FALSE(source
                   ->command({"MIGRATE", "127.0.0.1", std::to_string(target->port()), "", "0",
                              "5000", "KEYS", make_key("fg", kTags, id, p.name)})
                   .is_error);
  // The source gives the slot away first: it answers MOVED -> target, while the target, still
  // importing, answers MOVED -> source. The decision must wait that out, not give up.
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", s, "NODE", target_id}).is_error);
  const std::vector<Charge> charges = {{&p, 1}};
  std::optional<Result<Verdict>> result;
  std::thread pending([&] { result = decide_and_wait(*store, DecideRequest{id, charges}); });
  ASSERT_TRUE(testing::eventually([&] { return store->stats().moved >= 4; }, 2s));
  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", s, "NODE", target_id}).is_error);
  for (auto* m : cluster().masters()) m->command({"CLUSTER", "SETSLOT", s, "NODE", target_id});
  pending.join();
  ASSERT_TRUE(result.has_value());
  const Result<Verdict>& r = *result;
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->allowed);
  EXPECT_EQ(r->headline().remaining, 8);
}

TEST_F(RedisClusterTest, DecisionsDuringAMigrationNeverFailAndStayExact) {
  int slot = -1;
  const auto pair = identities_in_one_slot(&slot);
  ASSERT_GE(slot, 0);
  // Several identities of one slot, so the slot holds several keys to migrate one by one.
  std::vector<std::string> ids = {pair.first, pair.second};
  for (int i = 0; ids.size() < 6 && i < 2000000; ++i) {
    const std::string id = "mig-" + std::to_string(i);
    if (identity_slot(kTags, id) == slot) ids.push_back(id);
  }
  ASSERT_EQ(ids.size(), 6u);
  test::RedisServer* source = cluster().master_of_slot(slot);
  test::RedisServer* target = nullptr;
  for (auto* m : cluster().masters()) {
    if (m != source) target = m;
  }
  const std::string source_id = node_id(*source);
  const std::string target_id = node_id(*target);

  auto store = make_store(3s);
  const Policy p1 = make_policy("one", 40);
  const Policy p2 = make_policy("two", 1000, {.algorithm = Algorithm::kSlidingWindow});
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<int> allowed(ids.size(), 0);
  std::string first_error;
  std::thread load([&] {
    for (int round = 0; round < 100000 && !stop; ++round) {
      for (std::size_t i = 0; i < ids.size(); ++i) {
        auto r = test::decide(*store, ids[i], {{&p1, 1}, {&p2, 1}});
        if (!r) {
          if (errors++ == 0) first_error = r.error().to_string();
        } else if (r->allowed) {
          ++allowed[i];
        }
      }
    }
  });
  // Let some state build up on the source, then migrate it key by key.
  ASSERT_TRUE(testing::eventually([&] { return store->stats().decisions > 30; }));
  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", source_id})
                   .is_error);
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", target_id})
                   .is_error);
  for (int i = 0; i < 1000; ++i) {
    auto keys = source->command({"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "1"});
    if (keys.elements.empty()) break;
    source->command({"MIGRATE", "127.0.0.1", std::to_string(target->port()), "", "0", "5000",
                     "KEYS", keys.elements[0].str});
    std::this_thread::sleep_for(5ms);  // let decisions run between the moves
  }
  for (auto* m : cluster().masters()) {
    m->command({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", target_id});
  }
  // Keep deciding a while on the new owner, then stop.
  const auto decided = store->stats().decisions;
  testing::eventually([&] { return store->stats().decisions > decided + 200; });
  stop = true;
  load.join();
  const RedisStoreStats s = store->stats();
  std::cout << "decisions " << s.decisions << ", asks " << s.asks << ", moved " << s.moved
            << ", retries " << s.retries << "\n";
  EXPECT_EQ(errors.load(), 0) << first_error;
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(allowed[i], 40) << ids[i];
  EXPECT_GT(s.moved + s.asks, 0u);
  EXPECT_TRUE(keys_of(*source).empty());
}

TEST_F(RedisClusterTest, FunctionFlushOnEveryMasterIsRepairedWithoutAFailure) {
  auto store = make_store();
  const Policy p = make_policy("flush", 1000);
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(test::decide(*store, "u" + std::to_string(i), {{&p, 1}}));
  for (auto* m : cluster().masters()) ASSERT_FALSE(m->command({"FUNCTION", "FLUSH"}).is_error);
  for (int i = 0; i < 30; ++i) {
    auto r = test::decide(*store, "u" + std::to_string(i), {{&p, 1}});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->headline().remaining, 998);
  }
  EXPECT_EQ(store->stats().reloads, 3u);  // once per master, on this store's one thread
  EXPECT_EQ(store->stats().errors, 0u);
}

TEST_F(RedisClusterTest, EveryKeyWrittenHasATtl) {
  auto store = make_store();
  const Policy bucket = make_policy("bucket", 50);
  const Policy gcra = make_policy("gcra", 50, {.algorithm = Algorithm::kGcra});
  const Policy sliding = make_policy("sliding", 50, {.algorithm = Algorithm::kSlidingWindow});
  const Policy fixed = make_policy("fixed", 50, {.algorithm = Algorithm::kFixedWindow});
  for (int i = 0; i < 400; ++i) {
    const std::string id = "client-" + std::to_string(i % 97);
    const std::vector<Charge> charges = {{&bucket, 1}, {&gcra, 2}, {&sliding, 1}, {&fixed, 3}};
    auto r = decide_and_wait(*store, DecideRequest{id, charges});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
  }
  std::size_t total = 0;
  for (auto* m : cluster().masters()) {
    for (const auto& k : keys_of(*m)) {
      ++total;
      EXPECT_GT(m->command({"PTTL", k}).integer, 0) << k;
    }
  }
  EXPECT_EQ(total, 97u * 4u);
}

TEST_F(RedisClusterTest, ADeadSeedIsSkipped) {
  const std::string url = "redis-cluster://127.0.0.1:" + std::to_string(test::free_port()) + "," +
                          cluster().nodes()[4]->address();
  auto store = make_store(5s, url);
  const Policy p = make_policy("seeds", 10);
  for (int i = 0; i < 20; ++i) {
    auto r = test::decide(*store, "s" + std::to_string(i), {{&p, 1}});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
  }
}

TEST_F(RedisClusterTest, AKilledMasterIsReplacedAndDecisionsResumeWithinTheirDeadlines) {
  // The store's deadline; a sanitizer build (FG_TEST_TIME_SCALE) needs a longer one for a
  // bystander's decision to fit in it on a busy machine.
  const Duration kTimeout = test::scaled(Duration(100ms));
  auto store = make_store(kTimeout);
  const Policy p = make_policy("failover", 1000000);
  // An identity on the master we kill, and one elsewhere.
  const int slot_victim = identity_slot(kTags, "victim");
  test::RedisServer* victim = cluster().master_of_slot(slot_victim);
  ASSERT_NE(victim, nullptr);
  std::string bystander;
  for (int i = 0; bystander.empty() && i < 1000; ++i) {
    const std::string id = "by-" + std::to_string(i);
    if (cluster().master_of_slot(identity_slot(kTags, id)) != victim) bystander = id;
  }
  // Both reach the store once before the kill (the first decision also connects and reads the
  // slot map, which can take a deadline or two on a busy machine).
  ASSERT_TRUE(testing::eventually([&] {
    return test::decide(*store, "victim", {{&p, 1}}).has_value();
  }));
  ASSERT_TRUE(testing::eventually([&] {
    return test::decide(*store, bystander, {{&p, 1}}).has_value();
  }));
  // A decision on every master, so that each has loaded the library (at the head of the store's
  // first connection to it): which masters two identities reach depends on key_secret.
  std::set<test::RedisServer*> reached;
  for (int i = 0; reached.size() < cluster().masters().size() && i < 1000; ++i) {
    const std::string id = "warm-" + std::to_string(i);
    ASSERT_TRUE(testing::eventually([&] {
      return test::decide(*store, id, {{&p, 1}}).has_value();
    }));
    reached.insert(cluster().master_of_slot(identity_slot(kTags, id)));
  }

  // The store only talks to masters, yet every replica holds the library: FUNCTION LOAD is
  // replicated, so the replica about to be promoted can decide at once.
  for (test::RedisServer* node : cluster().nodes()) {
    EXPECT_TRUE(testing::eventually([&] {
      return node->command({"FUNCTION", "LIST", "LIBRARYNAME", std::string(kLibraryName)})
                 .elements.size() == 1;
    })) << "node "
        << node->address() << " lacks the library";
  }
  const std::uint64_t reloads_before = store->stats().reloads;
  victim->kill();
  const auto killed = std::chrono::steady_clock::now();
  int failures = 0;
  int bystander_failures = 0;
  Duration slowest{0};
  bool resumed = false;
  while (!resumed && std::chrono::steady_clock::now() - killed < 30s) {
    for (const std::string& id : {std::string("victim"), bystander}) {
      const auto start = std::chrono::steady_clock::now();
      auto r = test::decide(*store, id, {{&p, 1}});
      const auto took =
          std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - start);
      slowest = std::max(slowest, took);
      if (!r) {
        ++failures;
        if (id == bystander) ++bystander_failures;
        EXPECT_TRUE(r.error().code == ErrorCode::kUnavailable ||
                    r.error().code == ErrorCode::kDeadlineExceeded)
            << r.error().to_string();
        EXPECT_EQ(r.error().message.find("unction"), std::string::npos)
            << "a decision failed for a missing function: " << r.error().to_string();
      } else if (id == "victim") {
        resumed = true;
      }
    }
    std::this_thread::sleep_for(10ms);
  }
  const auto took = std::chrono::steady_clock::now() - killed;
  std::cout << "resumed after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms, "
            << failures << " failed decisions, slowest "
            << std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count() << " ms\n";
  EXPECT_TRUE(resumed);
  EXPECT_LT(slowest, kTimeout + test::scaled(Duration(150ms)))
      << "no decision waits much past its deadline";
  EXPECT_EQ(bystander_failures, 0) << "other masters' slots keep working (full coverage off)";
  // The promoted replica is a master now, and it had the function without being asked: no
  // "Function not found" was answered during the failover.
  EXPECT_NE(cluster().master_of_slot(slot_victim), victim);
  EXPECT_EQ(store->stats().reloads, reloads_before);
}

// A master is lost and nothing is sent to its slots afterwards (as when a caller's circuit breaker
// holds them back): the store keeps asking for the map while the map names the lost master, so it
// learns of the promoted replica on its own, and the first decision on those slots afterwards goes
// straight to the new master.
TEST_F(RedisClusterTest, AMapNamingALostMasterIsAskedForAgainUntilAReplicaTakesItsSlots) {
  // A deadline long enough for the first decision on the new master (its connection, the
  // library's load) on a busy machine: what is tested is where the decision goes, not how fast.
  auto store = make_store(test::scaled(Duration(2s)));
  const Policy p = make_policy("lost-master", 1000000);
  const int slot_victim = identity_slot(kTags, "victim");
  test::RedisServer* victim = cluster().master_of_slot(slot_victim);
  ASSERT_NE(victim, nullptr);
  ASSERT_TRUE(testing::eventually([&] {
    return test::decide(*store, "victim", {{&p, 1}}).has_value();
  }));
  // The store's first map (the first decision may have gone to a seed before it landed).
  ASSERT_TRUE(testing::eventually([&] { return store->node_of("victim") >= 0; }));
  const int before = store->node_of("victim");
  victim->kill();
  ASSERT_TRUE(testing::eventually(
      [&] {
        test::RedisServer* now = cluster().master_of_slot(slot_victim);
        return now != nullptr && now != victim;
      },
      std::chrono::seconds(30)))
      << "no replica took the slot";
  // The cluster has promoted a replica: within a few of the store's looks (every 250 ms), the
  // store's map names it too, with no decision sent.
  EXPECT_TRUE(testing::eventually([&] { return store->node_of("victim") != before; },
                                  std::chrono::duration_cast<std::chrono::milliseconds>(
                                      test::scaled(Duration(2s)))))
      << "the store still routes the slot to the lost master";
  const std::uint64_t refreshes = store->stats().refreshes;
  auto r = test::decide(*store, "victim", {{&p, 1}});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(store->stats().refreshes, refreshes) << "the decision had to find the new master";
}

}  // namespace
}  // namespace fg::redis
