// RedisStore over TLS (rediss://) against a redis-server with --tls-port, with a CA, a server
// certificate and a client certificate generated for the test with openssl.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "app/wiring.h"
#include "fixtures/tls_pki.h"
#include "store/redis/keys.h"
#include "store/redis/redis_store.h"
#include "store/redis/redis_test_util.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;
using test::make_policy;

Result<Verdict> decide_one(Store& store, std::string_view identity, const Policy& p) {
  const std::vector<Charge> charges = {{&p, 1}};
  return decide_and_wait(store, DecideRequest{identity, charges});
}

using test::Pki;

class RedisTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::RedisServer::installed())
      FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
    std::string why;
    ASSERT_TRUE(pki_.create(&why)) << why;
  }

  // A server with a TLS port next to its plain one; `clients` is tls-auth-clients.
  std::unique_ptr<test::RedisServer> start_server(const std::string& clients) {
    tls_port_ = test::free_port();
    test::RedisServerOptions o;
    o.extra_args = {"--tls-port",         std::to_string(tls_port_),
                    "--tls-cert-file",    pki_.path("server.crt"),
                    "--tls-key-file",     pki_.path("server.key"),
                    "--tls-ca-cert-file", pki_.path("ca.crt"),
                    "--tls-auth-clients", clients};
    std::string why;
    auto server = test::RedisServer::start(o, &why);
    EXPECT_TRUE(server) << why;
    return server;
  }

  std::unique_ptr<RedisStore> make_store(const std::string& url) {
    RedisStoreOptions o;
    auto parsed = parse_redis_url(url, o);
    EXPECT_TRUE(parsed.has_value()) << parsed.error().to_string();
    o.timeout = 5s;
    auto store = RedisStore::make(o);
    EXPECT_TRUE(store.has_value()) << store.error().to_string();
    return store ? std::move(*store) : nullptr;
  }

  std::string tls_url(const std::string& host = "127.0.0.1") const {
    return "rediss://" + host + ":" + std::to_string(tls_port_);
  }

  Pki pki_;
  std::uint16_t tls_port_ = 0;
};

TEST_F(RedisTlsTest, DecidesOverTlsVerifyingTheServer) {
  auto server = start_server("no");
  ASSERT_TRUE(server);
  const Policy p = make_policy("tls", 5);
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    server->command({"FLUSHALL"});
    auto store = make_store(tls_url(host) + "?ca=" + pki_.path("ca.crt"));
    ASSERT_TRUE(store);
    int allowed = 0;
    for (int i = 0; i < 8; ++i) {
      auto r = decide_one(*store, "over-tls", p);
      ASSERT_TRUE(r.has_value()) << host << ": " << r.error().to_string();
      allowed += r->allowed ? 1 : 0;
    }
    EXPECT_EQ(allowed, 5) << host;
  }
  // The state is the server's: seen through the plain port too.
  EXPECT_EQ(server->command({"EXISTS", make_key("fg", TagKey{}, "over-tls", "tls")}).integer, 1);
}

TEST_F(RedisTlsTest, RefusesAServerItCannotVerify) {
  auto server = start_server("no");
  ASSERT_TRUE(server);
  const Policy p = make_policy("tls", 5);
  // A CA that did not sign the server's certificate.
  auto untrusted = make_store(tls_url() + "?ca=" + pki_.path("other-ca.crt"));
  auto r = decide_one(*untrusted, "x", p);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("TLS handshake"), std::string::npos) << r.error().message;
  // The right CA, the wrong name.
  auto wrong_name =
      make_store(tls_url() + "?ca=" + pki_.path("ca.crt") + "&server_name=redis.example");
  r = decide_one(*wrong_name, "x", p);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  // insecure=1 skips verification (tests only).
  auto insecure = make_store(tls_url() + "?insecure=1");
  r = decide_one(*insecure, "x", p);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  // Plain RESP to a TLS port is not an answer either.
  auto plain = make_store("redis://127.0.0.1:" + std::to_string(tls_port_));
  r = decide_one(*plain, "x", p);
  ASSERT_FALSE(r.has_value());
}

TEST_F(RedisTlsTest, PresentsTheClientCertificateWhenTheServerAsks) {
  auto server = start_server("yes");
  ASSERT_TRUE(server);
  const Policy p = make_policy("mtls", 5);
  auto without = make_store(tls_url() + "?ca=" + pki_.path("ca.crt"));
  auto r = decide_one(*without, "m", p);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);

  auto with = make_store(tls_url() + "?ca=" + pki_.path("ca.crt") +
                         "&cert=" + pki_.path("client.crt") + "&key=" + pki_.path("client.key"));
  r = decide_one(*with, "m", p);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->allowed);
}

TEST_F(RedisTlsTest, AuthAndDatabaseWorkOverTls) {
  auto server = start_server("no");
  ASSERT_TRUE(server);
  ASSERT_FALSE(
      server->command({"ACL", "SETUSER", "tls-user", "on", ">tls-pw", "~*", "+@all"}).is_error);
  const Policy p = make_policy("tls-auth", 5);
  auto store = make_store("rediss://tls-user:tls-pw@127.0.0.1:" + std::to_string(tls_port_) +
                          "/4?ca=" + pki_.path("ca.crt"));
  auto r = decide_one(*store, "t", p);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  const auto in_db4 =
      server->command({"EVAL", "redis.call('SELECT', 4) return redis.call('EXISTS', KEYS[1])", "1",
                       make_key("fg", TagKey{}, "t", "tls-auth")});
  EXPECT_EQ(in_db4.integer, 1);
}

}  // namespace
}  // namespace fg::redis
