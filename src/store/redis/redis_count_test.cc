// RedisStore::count (count.h) against real servers: INCRBY semantics under the caller's keys,
// the library loaded on first use and again after FUNCTION FLUSH, TTLs, and on a Redis Cluster
// keys of many slots counted in one count() (one FCALL per slot). Also the memory store's count,
// the same cases at a manual clock.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "app/wiring.h"
#include "store/memory/memory_store.h"
#include "store/redis/count.h"
#include "store/redis/keys.h"
#include "store/redis/redis_store.h"
#include "store/redis/redis_test_util.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<RedisStore> make_store(const std::string& url) {
  RedisStoreOptions o;
  auto parsed = parse_redis_url(url, o);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().to_string();
  o.timeout = 5s;
  auto store = RedisStore::make(o);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

std::vector<std::int64_t> count(Store& store, std::vector<CountRequest> requests) {
  auto got = count_and_wait(store, requests);
  EXPECT_TRUE(got.has_value()) << got.error().to_string();
  return got ? *got : std::vector<std::int64_t>{};
}

// One table, two implementations (the memory store's C++ and count.lua): each step a count()
// call and the values it must answer.
struct Step {
  std::vector<CountRequest> counters;
  std::vector<std::int64_t> want;
};
const std::vector<Step>& table() {
  static const std::vector<Step> steps = {
      {{{"t_a_60", 2, 60s}, {"t_b_60", 0, 0s}}, {2, 0}},  // a counter, a look at a missing one
      {{{"t_a_60", 3, 60s}}, {5}},
      {{{"t_a_60", 1, 60s}, {"t_a_60", 1, 60s}}, {6, 7}},  // one key twice: in order
      {{{"t_c_60", 0, 0s}}, {0}},                          // a look writes nothing
      {{{"t_b_60", 4, 60s}, {"t_a_60", 0, 0s}}, {4, 7}},
      {{{"t_big_60", 4'000'000'000, 60s}}, {4'000'000'000}},  // past uint32, as INCRBY
  };
  return steps;
}

void run_table(Store& store) {
  for (std::size_t i = 0; i < table().size(); ++i) {
    EXPECT_EQ(count(store, table()[i].counters), table()[i].want) << "step " << i;
  }
}

TEST(CountTable, Memory) {
  ManualClock clock;
  memory::MemoryStore store(MemoryStoreOptions{}, clock);
  run_table(store);
}

TEST(CountTable, Redis) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  auto store = make_store("redis://" + server->address());
  ASSERT_NE(store, nullptr);
  run_table(*store);
}

TEST(RedisCount, AddsEveryHitAndLooksWithZero) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  auto store = make_store("redis://" + server->address());
  ASSERT_NE(store, nullptr);
  // The library is not there before the first count; it is loaded then.
  EXPECT_TRUE(server->command({"FUNCTION", "LIST", "LIBRARYNAME", std::string(kCountLibraryName)})
                  .elements.empty());
  EXPECT_EQ(count(*store, {{"rl_k_v_60", 3, 60s}, {"rl_j_w_60", 1, 60s}}),
            (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(count(*store, {{"rl_k_v_60", 3, 60s}}), (std::vector<std::int64_t>{6}));  // past any
  EXPECT_EQ(count(*store, {{"rl_k_v_60", 0, 0s}, {"missing", 0, 0s}}),
            (std::vector<std::int64_t>{6, 0}));
  EXPECT_EQ(server->command({"GET", "rl_k_v_60"}).str, "6");  // the caller's key, unchanged
  const auto ttl = server->command({"TTL", "rl_k_v_60"});
  EXPECT_GT(ttl.integer, 0);
  EXPECT_LE(ttl.integer, 60);
  EXPECT_TRUE(server->command({"EXISTS", "missing"}).integer == 0) << "a look writes nothing";
  // FUNCTION FLUSH: reloaded on the next count, which still answers.
  ASSERT_FALSE(server->command({"FUNCTION", "FLUSH"}).is_error);
  EXPECT_EQ(count(*store, {{"rl_k_v_60", 1, 60s}}), (std::vector<std::int64_t>{7}));
  EXPECT_GE(store->stats().reloads, 2U);
  // Bad requests never reach Redis.
  EXPECT_FALSE(count_and_wait(*store, std::vector<CountRequest>{{"k", -1, 60s}}).has_value());
  EXPECT_FALSE(count_and_wait(*store, std::vector<CountRequest>{{"k", 1, 0s}}).has_value());
}

TEST(RedisCount, ClusterCountsKeysOfManySlotsInOneCall) {
  if (!test::RedisServer::installed()) FG_MISSING_TOOL("redis-server is not installed");
  std::string why;
  auto cluster = test::RedisCluster::start(&why);
  ASSERT_TRUE(cluster) << why;
  auto store = make_store(cluster->url());
  ASSERT_NE(store, nullptr);
  std::vector<CountRequest> requests;
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back("another_key2_" + std::to_string(i) + "_60");
  std::set<int> slots;
  for (const auto& k : keys) slots.insert(key_slot(k));
  ASSERT_GT(slots.size(), 30U);
  for (int round = 1; round <= 3; ++round) {
    requests.clear();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      requests.push_back({keys[i], static_cast<std::int64_t>(i + 1), 60s});
    }
    const auto got = count(*store, requests);
    ASSERT_EQ(got.size(), keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      EXPECT_EQ(got[i], static_cast<std::int64_t>(round * (i + 1))) << keys[i];
    }
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(cluster->master_of_slot(key_slot(keys[i]))->command({"GET", keys[i]}).str,
              std::to_string(3 * (i + 1)));
  }
}

TEST(MemoryCount, CountersExpireWithTheirTtl) {
  ManualClock clock;
  memory::MemoryStore store(MemoryStoreOptions{.max_keys = 4, .shards = 1}, clock);
  EXPECT_EQ(count(store, {{"a", 2, 60s}, {"b", 0, 0s}}), (std::vector<std::int64_t>{2, 0}));
  EXPECT_EQ(count(store, {{"a", 5, 60s}}), (std::vector<std::int64_t>{7}));
  clock.advance(59s);
  EXPECT_EQ(count(store, {{"a", 0, 0s}}), (std::vector<std::int64_t>{7}));
  clock.advance(1s);  // 60 s after the last write: gone
  EXPECT_EQ(count(store, {{"a", 0, 0s}}), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(count(store, {{"a", 1, 60s}}), (std::vector<std::int64_t>{1}));
  // Full of counters that still count: a new one is refused, none forgotten.
  EXPECT_EQ(count(store, {{"b", 1, 60s}, {"c", 1, 60s}, {"d", 1, 60s}}),
            (std::vector<std::int64_t>{1, 1, 1}));
  auto full = count_and_wait(store, std::vector<CountRequest>{{"e", 1, 60s}});
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().code, ErrorCode::kResourceExhausted);
}

}  // namespace
}  // namespace fg::redis
