// The fleet view through real Redis (fleet.h): records published by several instances are read
// back by each, a silent instance's record expires, the store's nodes are described, all records
// share the {status} slot.
#include "app/fleet.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "fixtures/redis_server.h"
#include "fixtures/tls_pki.h"
#include "store/redis/keys.h"

namespace fg {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

RedisFleetOptions options_for(bool cluster, const std::vector<std::uint16_t>& ports) {
  RedisFleetOptions o;
  o.endpoint.cluster = cluster;
  for (std::uint16_t p : ports) o.endpoint.hosts.push_back(redis::RedisHost{"127.0.0.1", p});
  o.key_prefix = "fgtest";
  o.store_kind = cluster ? "redis-cluster" : "redis";
  o.record_ttl = milliseconds(600);
  o.interval = milliseconds(100);
  return o;
}

std::vector<std::string> ids(const http::FleetView& v) {
  std::vector<std::string> out;
  for (const std::string& r : v.records) out.push_back(json::parse(r)["id"].get<std::string>());
  std::sort(out.begin(), out.end());
  return out;
}

// Polls `done` every 20 ms for at most `bound`.
bool eventually(const std::function<bool()>& done, milliseconds bound = milliseconds(5000)) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return done();
}

TEST(FleetKeys, EveryRecordSharesTheStatusSlot) {
  EXPECT_EQ(fleet_record_key("fg", "127.0.0.1:9001"), "fg:{status}:instance:127.0.0.1:9001");
  EXPECT_EQ(fleet_registry_key("fg"), "fg:{status}:instances");
  EXPECT_EQ(redis::key_slot(fleet_record_key("fg", "a")), redis::key_slot("{status}"));
  EXPECT_EQ(redis::key_slot(fleet_record_key("x", "b:1")),
            redis::key_slot(fleet_registry_key("fg")));
}

TEST(RedisFleet, InstancesSeeEachOtherAndASilentOneExpires) {
  if (!test::RedisServer::installed())
    FG_MISSING_TOOL("redis-server (apt-get install redis-server)");
  std::string why;
  auto server = test::RedisServer::start({}, &why);
  ASSERT_TRUE(server) << why;
  auto a = make_redis_fleet(options_for(false, {server->port()}));
  auto b = make_redis_fleet(options_for(false, {server->port()}));
  ASSERT_TRUE(a && b);
  a->publish("a", R"({"id":"a"})");
  b->publish("b", R"({"id":"b"})");
  const std::vector<std::string> both = {"a", "b"};
  EXPECT_TRUE(eventually([&] { return ids(a->view()) == both && ids(b->view()) == both; }));

  const test::AdminReply ttl = server->command({"PTTL", "fgtest:{status}:instance:a"});
  EXPECT_GT(ttl.integer, 0);
  EXPECT_LE(ttl.integer, 600);
  // The registry too expires once nothing publishes (every key floodgate writes does).
  const test::AdminReply registry_ttl = server->command({"PTTL", "fgtest:{status}:instances"});
  EXPECT_GT(registry_ttl.integer, 0);
  EXPECT_LE(registry_ttl.integer, 60'000);

  const json store = json::parse(a->view().store);
  EXPECT_EQ(store["kind"], "redis");
  ASSERT_EQ(store["nodes"].size(), 1u);
  EXPECT_EQ(store["nodes"][0]["address"], server->address());
  EXPECT_EQ(store["nodes"][0]["role"], "master");
  EXPECT_EQ(store["nodes"][0]["up"], true);
  EXPECT_GT(store["nodes"][0]["memory_bytes"].get<std::int64_t>(), 0);

  b.reset();  // stops publishing: its record expires on its own
  const std::vector<std::string> only_a = {"a"};
  EXPECT_TRUE(eventually([&] { return ids(a->view()) == only_a; }));
}

TEST(RedisFleet, OverTlsWithTheStoresCaAndClientCertificate) {
  if (!test::RedisServer::installed())
    FG_MISSING_TOOL("redis-server (apt-get install redis-server)");
  test::Pki pki;
  std::string why;
  ASSERT_TRUE(pki.create(&why)) << why;
  const std::uint16_t tls_port = test::free_port();
  test::RedisServerOptions o;
  o.extra_args = {"--tls-port",         std::to_string(tls_port),
                  "--tls-cert-file",    pki.path("server.crt"),
                  "--tls-key-file",     pki.path("server.key"),
                  "--tls-ca-cert-file", pki.path("ca.crt"),
                  "--tls-auth-clients", "yes"};
  auto server = test::RedisServer::start(o, &why);
  ASSERT_TRUE(server) << why;

  RedisFleetOptions options = options_for(false, {tls_port});
  options.endpoint.tls = true;
  options.endpoint.tls_options.ca_file = pki.path("ca.crt");
  options.endpoint.tls_options.cert_file = pki.path("client.crt");
  options.endpoint.tls_options.key_file = pki.path("client.key");
  auto a = make_redis_fleet(options);
  auto b = make_redis_fleet(options);
  ASSERT_TRUE(a && b);
  a->publish("a", R"({"id":"a"})");
  b->publish("b", R"({"id":"b"})");
  const std::vector<std::string> both = {"a", "b"};
  EXPECT_TRUE(eventually([&] { return ids(a->view()) == both; }));
  const json store = json::parse(a->view().store);
  ASSERT_EQ(store["nodes"].size(), 1u);
  EXPECT_EQ(store["nodes"][0]["up"], true);
  // The records are on the server, written over TLS.
  EXPECT_EQ(server->command({"EXISTS", "fgtest:{status}:instance:a"}).integer, 1);

  // A CA that did not sign the server's certificate: nothing gets through.
  RedisFleetOptions untrusted = options;
  untrusted.endpoint.tls_options.ca_file = pki.path("other-ca.crt");
  auto c = make_redis_fleet(untrusted);
  ASSERT_TRUE(c);
  c->publish("c", R"({"id":"c"})");
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(server->command({"EXISTS", "fgtest:{status}:instance:c"}).integer, 0);

  // Unreadable TLS files: no fleet, and why.
  RedisFleetOptions missing = options;
  missing.endpoint.tls_options.ca_file = pki.path("no-such-ca.crt");
  std::string reason;
  EXPECT_EQ(make_redis_fleet(missing, &reason), nullptr);
  EXPECT_NE(reason.find("no-such-ca.crt"), std::string::npos) << reason;
}

TEST(RedisFleet, AClusterShowsEveryNodeAndTheRecordsOnTheStatusSlotsMaster) {
  if (!test::RedisServer::installed())
    FG_MISSING_TOOL("redis-server (apt-get install redis-server)");
  std::string why;
  auto cluster = test::RedisCluster::start(&why);
  ASSERT_TRUE(cluster) << why;
  // One seed only: the rest is discovered.
  auto a = make_redis_fleet(options_for(true, {cluster->nodes().front()->port()}));
  auto b = make_redis_fleet(options_for(true, {cluster->nodes().back()->port()}));
  a->publish("a", R"({"id":"a"})");
  b->publish("b", R"({"id":"b"})");
  const std::vector<std::string> both = {"a", "b"};
  EXPECT_TRUE(eventually([&] { return ids(a->view()) == both && ids(b->view()) == both; }));
  const json store = json::parse(a->view().store);
  EXPECT_EQ(store["kind"], "redis-cluster");
  ASSERT_EQ(store["nodes"].size(), 6u);
  int masters = 0, slots = 0;
  for (const json& n : store["nodes"]) {
    EXPECT_EQ(n["up"], true) << n.dump();
    if (n["role"] == "master") {
      ++masters;
      slots += n["slots"].get<int>();
    }
  }
  EXPECT_EQ(masters, 3);
  EXPECT_EQ(slots, 16384);
  // The records are on the master of {status}'s slot.
  test::RedisServer* owner = cluster->master_of_slot(redis::key_slot("{status}"));
  ASSERT_NE(owner, nullptr);
  EXPECT_EQ(owner->command({"EXISTS", "fgtest:{status}:instance:a"}).integer, 1);
}

// rediss-cluster://: a cluster whose ports, bus and replication are all TLS. The fleet reaches
// every node it discovers (CLUSTER NODES names their TLS ports to a TLS client) over TLS.
TEST(RedisFleet, ATlsClusterShowsEveryNodeOverTls) {
  if (!test::RedisServer::installed())
    FG_MISSING_TOOL("redis-server (apt-get install redis-server)");
  test::Pki pki;
  std::string why;
  ASSERT_TRUE(pki.create(&why)) << why;
  test::RedisClusterOptions co;
  co.tls = test::RedisServerTls{pki.path("server.crt"), pki.path("server.key"), pki.path("ca.crt"),
                                "yes"};
  auto cluster = test::RedisCluster::start(co, &why);
  ASSERT_TRUE(cluster) << why;
  RedisFleetOptions options = options_for(true, {cluster->nodes().front()->tls_port()});
  options.endpoint.tls = true;
  options.endpoint.tls_options.ca_file = pki.path("ca.crt");
  options.endpoint.tls_options.cert_file = pki.path("client.crt");
  options.endpoint.tls_options.key_file = pki.path("client.key");
  auto a = make_redis_fleet(options);
  ASSERT_TRUE(a);
  a->publish("a", R"({"id":"a"})");
  const std::vector<std::string> just_a = {"a"};
  EXPECT_TRUE(eventually([&] { return ids(a->view()) == just_a; }));
  EXPECT_TRUE(eventually([&] {
    const json store = json::parse(a->view().store);
    if (store["nodes"].size() != 6u) return false;
    for (const json& n : store["nodes"]) {
      if (n["up"] != true) return false;
    }
    return true;
  })) << a->view().store;
  const json store = json::parse(a->view().store);
  for (const json& n : store["nodes"]) {
    const std::string address = n.value("address", std::string());
    bool tls_port = false;
    for (test::RedisServer* s : cluster->nodes()) {
      if (address.ends_with(":" + std::to_string(s->tls_port()))) tls_port = true;
    }
    EXPECT_TRUE(tls_port) << n.dump();
  }
  test::RedisServer* owner = cluster->master_of_slot(redis::key_slot("{status}"));
  ASSERT_NE(owner, nullptr);
  EXPECT_EQ(owner->command({"EXISTS", "fgtest:{status}:instance:a"}).integer, 1);
}

}  // namespace
}  // namespace fg
