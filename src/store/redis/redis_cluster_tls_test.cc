// RedisStore over TLS to a Redis Cluster (rediss-cluster://): 3 masters + 3 replicas whose client
// ports, cluster bus and replication are all TLS (tls-cluster, tls-replication), with client
// certificates required and a password. Every node the store reaches (the seeds, the masters
// CLUSTER SLOTS names, the target of an ASK or a MOVED) must be spoken to over TLS with the
// URL's CA, client certificate and credentials: the nodes announce only their TLS ports to a TLS
// client, so a plain connection to any of them fails.
#include <gtest/gtest.h>

#include <iostream>
#include <map>

#include "app/wiring.h"
#include "fixtures/tls_pki.h"
#include "store/redis/keys.h"
#include "store/redis/redis_store.h"
#include "store/redis/redis_test_util.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;
using test::make_policy;

constexpr std::string_view kPassword = "cluster-tls-pw";

// One PKI and one cluster for the whole process (ctest runs each test in its own process).
class TlsClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!test::RedisServer::installed())
      FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
    std::string why;
    pki_ = std::make_unique<test::Pki>();
    ASSERT_TRUE(pki_->create(&why)) << why;
    test::RedisClusterOptions o;
    o.requirepass = std::string(kPassword);
    o.tls = test::RedisServerTls{pki_->path("server.crt"), pki_->path("server.key"),
                                 pki_->path("ca.crt"), "yes"};
    const auto start = std::chrono::steady_clock::now();
    cluster_ = test::RedisCluster::start(o, &why);
    ASSERT_TRUE(cluster_) << why;
    std::cout << "TLS cluster formed in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count()
              << " ms\n";
  }
  void TearDown() override {
    cluster_.reset();
    pki_.reset();
  }
  static test::RedisCluster& cluster() { return *cluster_; }
  static test::Pki& pki() { return *pki_; }

 private:
  static inline std::unique_ptr<test::Pki> pki_;
  static inline std::unique_ptr<test::RedisCluster> cluster_;
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new TlsClusterEnvironment);

test::RedisCluster& cluster() { return TlsClusterEnvironment::cluster(); }
test::Pki& pki() { return TlsClusterEnvironment::pki(); }

constexpr std::string_view kKeySecret = "cluster-tls-test-secret-0123456";
const TagKey kTags = make_tag_key(kKeySecret);

// The cluster's URL with the CA and the client certificate.
std::string tls_query() {
  return "?ca=" + pki().path("ca.crt") + "&cert=" + pki().path("client.crt") +
         "&key=" + pki().path("client.key");
}

std::unique_ptr<RedisStore> make_store(const std::string& url) {
  RedisStoreOptions o;
  auto parsed = parse_redis_url(url, o);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().to_string();
  o.timeout = 5s;
  o.key_secret = std::string(kKeySecret);
  auto store = RedisStore::make(o);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

Result<Verdict> decide(Store& store, std::string_view identity,
                       std::initializer_list<Charge> charges) {
  const std::vector<Charge> list(charges);
  return decide_and_wait(store, DecideRequest{identity, list});
}

std::string node_id(const test::RedisServer& s) { return s.command({"CLUSTER", "MYID"}).str; }

class RedisClusterTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* m : cluster().masters()) m->command({"FLUSHALL"});
  }
};

TEST_F(RedisClusterTlsTest, TheUrlNamesTheTlsPorts) {
  RedisStoreOptions o;
  ASSERT_TRUE(parse_redis_url(cluster().url() + tls_query(), o).has_value());
  EXPECT_TRUE(o.url.cluster);
  EXPECT_TRUE(o.url.tls);
  EXPECT_EQ(o.url.password, kPassword);
  ASSERT_EQ(o.url.hosts.size(), 3u);
  EXPECT_EQ(o.url.hosts[0].port, cluster().nodes()[0]->tls_port());
  EXPECT_EQ(o.url.tls_options.cert_file, pki().path("client.crt"));
}

TEST_F(RedisClusterTlsTest, DecidesExactlyOnEveryMasterOverTls) {
  auto store = make_store(cluster().url() + tls_query());
  ASSERT_TRUE(store);
  const Policy p = make_policy("tls-cluster", 3);
  // One identity per master: every master is reached through the slot map, over TLS.
  std::map<test::RedisServer*, std::string> per_master;
  for (int i = 0; per_master.size() < 3 && i < 10000; ++i) {
    const std::string id = "user-" + std::to_string(i);
    per_master.emplace(cluster().master_of_slot(identity_slot(kTags, id)), id);
  }
  ASSERT_EQ(per_master.size(), 3u);
  for (const auto& [master, id] : per_master) {
    int allowed = 0;
    for (int i = 0; i < 5; ++i) {
      auto r = decide(*store, id, {{&p, 1}});
      ASSERT_TRUE(r.has_value()) << id << ": " << r.error().to_string();
      allowed += r->allowed ? 1 : 0;
    }
    EXPECT_EQ(allowed, 3) << id;
    // The state is on that master (seen through its plain admin port).
    EXPECT_EQ(master->command({"EXISTS", make_key("fg", kTags, id, p.name)}).integer, 1) << id;
  }
  EXPECT_EQ(store->stats().errors, 0u);
}

TEST_F(RedisClusterTlsTest, AnAclUserIsUsedOnEveryNode) {
  // ACL users are per node in a cluster: create it on each.
  for (auto* n : cluster().nodes()) {
    ASSERT_FALSE(
        n->command({"ACL", "SETUSER", "fg-tls", "on", ">fg-tls-pw", "resetkeys", "~fg:*", "+@all"})
            .is_error);
  }
  std::string url = cluster().url();
  url.replace(url.find(std::string(kPassword)) - 1, kPassword.size() + 1, "fg-tls:fg-tls-pw");
  ASSERT_NE(url.find("fg-tls:fg-tls-pw@"), std::string::npos) << url;
  auto store = make_store(url + tls_query());
  const Policy p = make_policy("acl", 2);
  for (int i = 0; i < 64; ++i) {
    auto r = decide(*store, "acl-" + std::to_string(i), {{&p, 1}});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_TRUE(r->allowed);
  }
  // A wrong password is refused by every node.
  std::string wrong = cluster().url();
  wrong.replace(wrong.find(std::string(kPassword)), kPassword.size(), "not-the-password");
  auto refused = make_store(wrong + tls_query());
  auto r = decide(*refused, "x", {{&p, 1}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
}

TEST_F(RedisClusterTlsTest, WithoutTlsOrItsClientCertificateNothingAnswers) {
  const Policy p = make_policy("plain", 2);
  std::string plain = cluster().url();
  plain.replace(0, std::string("rediss-cluster").size(), "redis-cluster");
  auto r = decide(*make_store(plain), "x", {{&p, 1}});
  EXPECT_FALSE(r.has_value()) << "plain RESP to the TLS ports";
  r = decide(*make_store(cluster().url() + "?ca=" + pki().path("ca.crt")), "x", {{&p, 1}});
  EXPECT_FALSE(r.has_value()) << "tls-auth-clients yes: no client certificate, no connection";
  r = decide(*make_store(cluster().url() + "?ca=" + pki().path("other-ca.crt") +
                         "&cert=" + pki().path("client.crt") + "&key=" + pki().path("client.key")),
             "x", {{&p, 1}});
  EXPECT_FALSE(r.has_value()) << "a CA that did not sign the nodes' certificates";
}

// A slot migrating between two masters: ASK to the target (ASKING, then the FCALL) and, once the
// slot is the target's, MOVED; the target is a node the store first connects to because of the
// redirection, and it must be reached over TLS with the client certificate and the password.
TEST_F(RedisClusterTlsTest, RedirectionsLeadToTlsNodes) {
  // An identity on a master that none of the others' decisions touch.
  const std::string id = "migrating-user";
  const int slot = identity_slot(kTags, id);
  const std::string s = std::to_string(slot);
  test::RedisServer* source = cluster().master_of_slot(slot);
  ASSERT_NE(source, nullptr);
  test::RedisServer* target = nullptr;
  for (auto* m : cluster().masters()) {
    if (m != source) target = m;
  }
  ASSERT_NE(target, nullptr);
  const std::string source_id = node_id(*source);
  const std::string target_id = node_id(*target);

  // Only the source as the seed: the store learns the others from CLUSTER SLOTS (over TLS).
  auto store = make_store("rediss-cluster://:" + std::string(kPassword) +
                          "@127.0.0.1:" + std::to_string(source->tls_port()) + tls_query());
  const Policy p = make_policy("migrating", 10, {.algorithm = Algorithm::kGcra});
  ASSERT_TRUE(decide(*store, "warm-up", {{&p, 0}}).has_value());

  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", s, "IMPORTING", source_id}).is_error);
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", s, "MIGRATING", target_id}).is_error);
  // The key does not exist yet: the source answers ASK, the target creates it.
  auto r = decide(*store, id, {{&p, 1}});
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->allowed);
  EXPECT_EQ(r->headline().remaining, 9);
  EXPECT_GE(store->stats().asks, 1u);
  EXPECT_EQ(source->command({"EXISTS", make_key("fg", kTags, id, p.name)}).integer, 0);
  EXPECT_EQ(target->command({"CLUSTER", "COUNTKEYSINSLOT", s}).integer, 1);

  // The slot is the target's everywhere: the source answers MOVED.
  for (auto* m : cluster().masters()) {
    ASSERT_FALSE(m->command({"CLUSTER", "SETSLOT", s, "NODE", target_id}).is_error);
  }
  const auto moved_before = store->stats().moved;
  r = decide(*store, id, {{&p, 1}});
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->headline().remaining, 8) << "the count continues on the target";
  EXPECT_GT(store->stats().moved, moved_before);
  EXPECT_EQ(store->stats().errors, 0u);

  // Put the slot back for the other tests (the key goes with it).
  ASSERT_FALSE(source->command({"CLUSTER", "SETSLOT", s, "IMPORTING", target_id}).is_error);
  ASSERT_FALSE(target->command({"CLUSTER", "SETSLOT", s, "MIGRATING", source_id}).is_error);
  target->command({"DEL", make_key("fg", kTags, id, p.name)});
  for (auto* m : cluster().masters()) {
    ASSERT_FALSE(m->command({"CLUSTER", "SETSLOT", s, "NODE", source_id}).is_error);
  }
}

}  // namespace
}  // namespace fg::redis
