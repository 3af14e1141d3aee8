// The server on real Redis: the limit through HTTP on one redis-server and on a 3+3 cluster,
// and Redis killed and restarted under it (fail open within store_timeout, 503 when failing
// closed, /readyz 503 meanwhile, recovery on its own).
#include <gtest/gtest.h>

#include <optional>
#include <string_view>

#include "fixtures/redis_server.h"
#include "decide/metrics.h"
#include "http/server_test_util.h"

namespace fg::http::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string config_for(const std::string& store_url, std::string_view on_error) {
  return "listen: 127.0.0.1:0\nthreads: 2\nstore: " + store_url +
         "\nstore_timeout: 100ms\non_store_error: " + std::string(on_error) +
         "\nidentity: [{header: X-API-Key}, {ip: {}}]\n"
         "policies:\n  - {name: five, match: {path_prefix: /api/}, limit: 5, period: 1h}\n";
}

std::unique_ptr<fg::test::RedisServer> start_redis() {
  if (!fg::test::RedisServer::installed()) return nullptr;
  std::string why;
  auto r = fg::test::RedisServer::start({}, &why);
  EXPECT_TRUE(r) << why;
  return r;
}

// Counts 200s and 429s for `n` requests of one client over `clients` parallel connections.
std::pair<int, int> hammer(std::uint16_t port, const std::string& key, int clients, int each) {
  std::atomic<int> ok{0}, limited{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      Client c(port);
      for (int i = 0; i < each; ++i) {
        auto res = c.get("/api/x", {{"X-API-Key", key}});
        if (res && res->result_int() == 200) ++ok;
        if (res && res->result_int() == 429) ++limited;
      }
    });
  }
  for (auto& t : threads) t.join();
  return {ok.load(), limited.load()};
}

// The value of one series on a /metrics page (the whole name with its labels, as printed), or
// nullopt when the page does not have it.
std::optional<std::uint64_t> metric(const std::string& page, std::string_view series) {
  const std::string head = "\n" + std::string(series) + " ";
  const std::size_t at = page.find(head);
  if (at == std::string::npos) return std::nullopt;
  return std::stoull(page.substr(at + head.size(), page.find('\n', at + 1) - at - head.size()));
}

// A client over its limit on a remote store is answered from the deny cache (without asking
// Redis, and without the coroutine that waits for it): the same answer as the store's own
// denial, for a request without a body, and for one whose body is not read (then the connection
// closes, as after any answer that leaves a body unread).
TEST(ServerOnRedis, ACachedDenialIsTheStoresDenialWithoutAskingRedis) {
  auto redis = start_redis();
  if (!redis) FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  Running a = start_server(config_for("redis://" + redis->address(), "deny"));
  ASSERT_TRUE(a.server);
  const std::vector<std::pair<std::string, std::string>> key = {{"X-API-Key", "over"}};
  Client c(a.port);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c.get("/api/x", key)->result_int(), 200u);
  const auto fcalls = [&] {
    const std::string info = redis->command({"INFO", "commandstats"}).str;
    const std::size_t at = info.find("cmdstat_fcall:calls=");
    return at == std::string::npos ? 0 : std::stoull(info.substr(at + 20));
  };
  auto first = c.get("/api/x", key);  // the store's denial, remembered
  ASSERT_TRUE(first);
  ASSERT_EQ(first->result_int(), 429u);
  const auto asked = fcalls();
  ASSERT_GT(asked, 0u);
  for (int i = 0; i < 2; ++i) {
    auto again = c.get("/api/x", key);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->result_int(), 429u);
    for (const char* name : {"X-RateLimit-Limit", "X-RateLimit-Remaining", "RateLimit-Policy",
                             "Content-Type", "Connection"}) {
      EXPECT_EQ(field(*again, name), field(*first, name)) << name;
    }
    EXPECT_NE(field(*again, "Retry-After"), "<absent>");
    EXPECT_LE(std::stoll(field(*again, "Retry-After")), std::stoll(field(*first, "Retry-After")));
    EXPECT_EQ(again->body().substr(0, 40), first->body().substr(0, 40));
  }
  // A body that is not read: the denial, then the connection closes.
  ASSERT_TRUE(c.send("POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: over\r\n"
                     "Content-Length: 10\r\n\r\n"));
  auto posted = c.read();
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->result_int(), 429u);
  EXPECT_EQ(field(*posted, "Connection"), "close");
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_EQ(fcalls(), asked) << "a cached denial asked Redis";
  auto page = get_once(a.port, "/metrics");
  ASSERT_TRUE(page);
  EXPECT_EQ(metric(page->body(), "floodgate_deny_cache_hits_total"), 3u);
}

TEST(ServerOnRedis, TwoInstancesShareOneLimitExactly) {
  auto redis = start_redis();
  if (!redis) FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  const std::string url = "redis://" + redis->address();
  Running a = start_server(config_for(url, "allow"));
  Running b = start_server(config_for(url, "allow"));
  ASSERT_TRUE(a.server && b.server);
  std::pair<int, int> ra, rb;
  std::thread ta([&] { ra = hammer(a.port, "shared", 4, 5); });
  std::thread tb([&] { rb = hammer(b.port, "shared", 4, 5); });
  ta.join();
  tb.join();
  EXPECT_EQ(ra.first + rb.first, 5);
  EXPECT_EQ(ra.second + rb.second, 35);
  // The key lives in Redis, with a TTL.
  const auto keys = redis->command({"KEYS", "fg:*"});
  ASSERT_EQ(keys.elements.size(), 1u);
  EXPECT_GT(redis->command({"PTTL", keys.elements[0].str}).integer, 0);
}

TEST(ServerOnRedis, RedisKilledFailsOpenWithinTheTimeoutThenRecovers) {
  auto redis = start_redis();
  if (!redis) FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  const std::string url = "redis://" + redis->address();
  Running open = start_server(config_for(url, "allow"));
  Running closed = start_server(config_for(url, "deny"));
  ASSERT_TRUE(open.server && closed.server);
  ASSERT_EQ(get_once(open.port, "/api/x")->result_int(), 200u);
  EXPECT_EQ(get_once(open.port, "/readyz")->result_int(), 200u);

  redis->kill();
  // Every request is answered, none waits much past store_timeout (100 ms), none is lost.
  Client c(open.port);
  for (int i = 0; i < 20; ++i) {
    const auto begin = std::chrono::steady_clock::now();
    auto res = c.get("/api/x");
    const auto took = std::chrono::steady_clock::now() - begin;
    ASSERT_TRUE(res) << i;
    EXPECT_EQ(res->result_int(), 200u);
    EXPECT_EQ(field(*res, "X-RateLimit-Degraded"), "store-unavailable");
    EXPECT_LT(took, milliseconds(600)) << i;
  }
  auto denied = get_once(closed.port, "/api/x");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->result_int(), 503u);
  EXPECT_TRUE(eventually([&] { return get_once(open.port, "/readyz")->result_int() == 503; }));
  EXPECT_EQ(get_once(open.port, "/healthz")->result_int(), 200u);

  std::string why;
  ASSERT_TRUE(redis->restart(&why)) << why;
  EXPECT_TRUE(
      eventually([&] { return get_once(open.port, "/readyz")->result_int() == 200; }, seconds(15)));
  EXPECT_TRUE(eventually(
      [&] {
        auto res = get_once(closed.port, "/api/x", {{"X-API-Key", "fresh"}});
        return res && res->result_int() == 200 &&
               field(*res, "X-RateLimit-Degraded") == "<absent>" &&
               field(*res, "X-RateLimit-Remaining") == "4";
      },
      seconds(15)));
  const std::string m = open.server->metrics().render();
  EXPECT_EQ(m.find(R"(floodgate_degraded_decisions_total{mode="allow"} 0)"), std::string::npos);
}

// The Redis client's own counters reach /metrics: the connection, its FUNCTION LOAD, the
// pipelined writes; then every connection killed on the server side (CLIENT KILL) is lost and
// reconnected, and the page says so.
TEST(ServerOnRedis, MetricsCountTheRedisConnectionsAndTheirReconnects) {
  auto redis = start_redis();
  if (!redis) FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  Running a = start_server(config_for("redis://" + redis->address(), "deny"));
  ASSERT_TRUE(a.server);
  ASSERT_EQ(get_once(a.port, "/api/x", {{"X-API-Key", "first"}})->result_int(), 200u);
  const auto page = [&] { return get_once(a.port, "/metrics")->body(); };
  std::string m = page();
  EXPECT_GE(metric(m, "floodgate_redis_calls_total").value_or(0), 1u) << m;
  EXPECT_GE(metric(m, R"(floodgate_redis_connections_total{event="opened"})").value_or(0), 1u);
  EXPECT_GE(metric(m, R"(floodgate_redis_function_loads_total{reason="connect"})").value_or(0), 1u);
  EXPECT_EQ(metric(m, "floodgate_redis_reconnects_total"), 0u);
  EXPECT_EQ(metric(m, R"(floodgate_redis_connections_total{event="lost"})"), 0u);
  EXPECT_EQ(metric(m, R"(floodgate_redis_redirects_total{kind="moved"})"), 0u);  // no cluster
  // The handshake (FUNCTION LOAD) and the FCALL went out together: one write, two commands.
  EXPECT_GE(metric(m, "floodgate_redis_pipeline_commands_per_write_count").value_or(0), 1u);
  EXPECT_GE(metric(m, "floodgate_redis_pipeline_commands_per_write_sum").value_or(0), 2u);

  // CLIENT KILL skips the connection that sends it: every connection of the server goes.
  const auto killed = redis->command({"CLIENT", "KILL", "TYPE", "normal"});
  ASSERT_FALSE(killed.is_error) << killed.str;
  EXPECT_GE(killed.integer, 1);
  // Requests land on the threads in turn; the one whose connection was killed reconnects.
  int i = 0;
  EXPECT_TRUE(eventually([&] {
    auto res = get_once(a.port, "/api/x", {{"X-API-Key", "after-" + std::to_string(i++)}});
    return res && res->result_int() == 200 &&
           metric(page(), "floodgate_redis_reconnects_total").value_or(0) >= 1;
  }));
  m = page();
  EXPECT_GE(metric(m, R"(floodgate_redis_connections_total{event="lost"})").value_or(0), 1u) << m;
  EXPECT_GE(metric(m, R"(floodgate_redis_connections_total{event="opened"})").value_or(0), 2u);
}

TEST(ServerOnRedis, ClusterLimitHoldsThroughHttp) {
  if (!fg::test::RedisServer::installed())
    FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  std::string why;
  auto cluster = fg::test::RedisCluster::start(&why);
  ASSERT_TRUE(cluster) << why;
  Running a = start_server(config_for(cluster->url(), "deny"));
  ASSERT_TRUE(a.server);
  // Several clients, each its own key (spread over the slots), each limited exactly.
  for (int k = 0; k < 6; ++k) {
    const auto [ok, limited] = hammer(a.port, "client-" + std::to_string(k), 2, 4);
    EXPECT_EQ(ok, 5) << k;
    EXPECT_EQ(limited, 3) << k;
  }
}

// A slot moved while the server runs: the key migrated (the source answers ASK), then the slot
// given to the target (the source answers MOVED). The count continues, and /metrics counts both
// redirections.
TEST(ServerOnRedis, MetricsCountTheAskAndMovedOfASlotMigration) {
  if (!fg::test::RedisServer::installed())
    FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  std::string why;
  auto cluster = fg::test::RedisCluster::start(&why);
  ASSERT_TRUE(cluster) << why;
  Running a = start_server(config_for(cluster->url(), "deny"));
  ASSERT_TRUE(a.server);
  const auto remaining = [&] {
    auto res = get_once(a.port, "/api/x", {{"X-API-Key", "mover"}});
    EXPECT_TRUE(res && res->result_int() == 200);
    return res ? field(*res, "X-RateLimit-Remaining") : "<no answer>";
  };
  ASSERT_EQ(remaining(), "4");

  // The one key there is, and who holds it.
  std::string key;
  fg::test::RedisServer* source = nullptr;
  for (auto* m : cluster->masters()) {
    const auto keys = m->command({"KEYS", "fg:*"});
    if (keys.elements.size() == 1) {
      key = keys.elements[0].str;
      source = m;
    }
  }
  ASSERT_NE(source, nullptr);
  fg::test::RedisServer* target = nullptr;
  for (auto* m : cluster->masters()) {
    if (m != source) target = m;
  }
  ASSERT_NE(target, nullptr);
  const std::string slot = std::to_string(source->command({"CLUSTER", "KEYSLOT", key}).integer);
  const std::string source_id = source->command({"CLUSTER", "MYID"}).str;
  const std::string target_id = target->command({"CLUSTER", "MYID"}).str;

  const auto page = [&] { return get_once(a.port, "/metrics")->body(); };
  const auto moved = [&] {
    return metric(page(), R"(floodgate_redis_redirects_total{kind="moved"})").value_or(0);
  };
  const auto asks = [&] {
    return metric(page(), R"(floodgate_redis_redirects_total{kind="ask"})").value_or(0);
  };
  const std::uint64_t asks_before = asks();
  const std::uint64_t moved_before = moved();  // a first decision may race the first slot map

  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", slot, "IMPORTING", source_id}).is_error);
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", slot, "MIGRATING", target_id}).is_error);
  const auto migrated = source->command({"MIGRATE", "127.0.0.1", std::to_string(target->port()),
                                         "", "0", "5000", "KEYS", key});
  ASSERT_FALSE(migrated.is_error) << migrated.str;
  EXPECT_EQ(remaining(), "3");  // the source answers ASK; the target has the key
  EXPECT_GT(asks(), asks_before);

  for (auto* m : cluster->masters()) {
    ASSERT_FALSE(m->command({"CLUSTER", "SETSLOT", slot, "NODE", target_id}).is_error);
  }
  EXPECT_EQ(remaining(), "2");  // the source answers MOVED
  EXPECT_GT(moved(), moved_before);
}

// A flood of thousands of distinct client keys through the server: every key it leaves in Redis
// has a TTL no longer than the time its state takes to be full again, and all of them expire, so
// Redis memory is bounded by the clients active within one refill time, whatever the flood.
TEST(ServerOnRedis, AFloodOfDistinctKeysLeavesOnlyKeysThatExpire) {
  auto redis = start_redis();
  if (!redis) FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
  // One request takes 1 of 5 tokens (refilled at 5 per 50 s): full again after 10 s. The
  // sliding and fixed windows of 10 s end within 20 s. Keys may live half their ttl longer
  // (decide.lua: a new expiry has ttl / 2 of slack): 30 s at most.
  const std::string yaml =
      "listen: 127.0.0.1:0\nthreads: 2\nstore: redis://" + redis->address() +
      "\nstore_timeout: 1s\nkey_secret: flood-test-secret-0123456789\n"
      "identity: [{header: X-API-Key}]\npolicies:\n"
      "  - {name: bucket, match: {path_prefix: /api/}, limit: 5, period: 50s}\n"
      "  - {name: sliding, match: {path_prefix: /api/}, algorithm: sliding_window, limit: 9, "
      "period: 10s}\n"
      "  - {name: fixed, match: {path_prefix: /api/}, algorithm: fixed_window, limit: 9, "
      "period: 10s}\n";
  Running r = start_server(yaml);
  ASSERT_TRUE(r.server);
  constexpr int kClients = 4, kEach = 750;
  std::atomic<int> ok{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < kClients; ++t) {
    flood.emplace_back([&, t] {
      Client c(r.port);
      for (int i = 0; i < kEach; ++i) {
        auto res = c.get("/api/x", {{"X-API-Key", "flood-" + std::to_string(t * kEach + i)}});
        if (res && res->result_int() == 200 && field(*res, "X-RateLimit-Degraded") == "<absent>") {
          ++ok;
        }
      }
    });
  }
  for (auto& t : flood) t.join();
  ASSERT_EQ(ok.load(), kClients * kEach);
  // SCAN the whole keyspace: every key is one of ours, and has a TTL within its bound.
  std::size_t seen = 0, without_ttl = 0, over_bound = 0;
  std::string cursor = "0";
  do {
    const auto page = redis->command({"SCAN", cursor, "COUNT", "1000"});
    ASSERT_EQ(page.elements.size(), 2u);
    cursor = page.elements[0].str;
    for (const auto& k : page.elements[1].elements) {
      ++seen;
      const long long ttl = redis->command({"PTTL", k.str}).integer;
      if (ttl == -1) ++without_ttl;  // -2: expired between SCAN and PTTL, which is fine
      if (ttl > 30'000) ++over_bound;
      EXPECT_EQ(k.str.rfind("fg:{", 0), 0u) << k.str;
    }
  } while (cursor != "0");
  // At least one policy's worth of keys is still there (the first ones may have expired on a
  // slow machine) ...
  EXPECT_GE(seen, static_cast<std::size_t>(kClients * kEach));
  EXPECT_EQ(without_ttl, 0u);  // ... and none stays forever
  EXPECT_EQ(over_bound, 0u);
  // And they do expire: the keyspace empties by itself.
  EXPECT_TRUE(eventually([&] { return redis->command({"DBSIZE"}).integer == 0; }, seconds(40)))
      << redis->command({"DBSIZE"}).integer << " keys left";
}

}  // namespace
}  // namespace fg::http::test
