#include <gtest/gtest.h>

#include "store/redis/redis_store.h"
#include "app/wiring.h"

namespace fg::redis {
namespace {

TEST(ParseRedisUrl, ReadsPlainClusterAndTlsUrls) {
  RedisStoreOptions o;
  ASSERT_TRUE(parse_redis_url("redis://u:p%40ss@127.0.0.1:7000/3", o).has_value());
  EXPECT_FALSE(o.url.cluster);
  EXPECT_EQ(o.url.user, "u");
  EXPECT_EQ(o.url.password, "p@ss");
  EXPECT_EQ(o.url.db, 3);
  EXPECT_FALSE(o.url.tls);

  ASSERT_TRUE(parse_redis_url("redis-cluster://127.0.0.1:7001,127.0.0.1:7002", o).has_value());
  EXPECT_TRUE(o.url.cluster);
  EXPECT_EQ(o.url.hosts.size(), 2u);

  RedisStoreOptions t;
  ASSERT_TRUE(
      parse_redis_url("rediss://:pw@localhost:6380/1?ca=/etc/ca.pem&cert=/c%20d.pem&key=/k.pem", t)
          .has_value());
  EXPECT_TRUE(t.url.tls);
  EXPECT_EQ(t.url.password, "pw");
  EXPECT_EQ(t.url.db, 1);
  EXPECT_EQ(t.url.tls_options.ca_file, "/etc/ca.pem");
  EXPECT_EQ(t.url.tls_options.cert_file, "/c d.pem");
  EXPECT_EQ(t.url.tls_options.key_file, "/k.pem");
  EXPECT_TRUE(t.url.tls_options.verify);
  ASSERT_TRUE(parse_redis_url("rediss://127.0.0.1:6380?insecure=1", t).has_value());
  EXPECT_FALSE(t.url.tls_options.verify);
}

TEST(ParseRedisUrl, RefusesWhatItCannotUse) {
  RedisStoreOptions o;
  EXPECT_FALSE(parse_redis_url("memory://", o));
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1:1?ca=/x", o));  // TLS option without TLS
  EXPECT_FALSE(parse_redis_url("rediss://127.0.0.1:1?bogus=1", o));
  EXPECT_FALSE(parse_redis_url("rediss://127.0.0.1:1?ca=%zz", o));
  EXPECT_FALSE(parse_redis_url("redis://", o));
  EXPECT_EQ(parse_redis_url("http://x:1", o).error().code, ErrorCode::kInvalidArgument);
}

TEST(RedisStoreMake, RefusesBadOptions) {
  RedisStoreOptions o;
  EXPECT_FALSE(RedisStore::make(o).has_value());  // no URL
  ASSERT_TRUE(parse_redis_url("redis://127.0.0.1:6379", o).has_value());
  o.timeout = Duration(0);
  EXPECT_EQ(RedisStore::make(o).error().code, ErrorCode::kInvalidArgument);
  RedisStoreOptions t;
  ASSERT_TRUE(parse_redis_url("rediss://127.0.0.1:6380?ca=/nonexistent/ca.pem", t).has_value());
  auto r = RedisStore::make(t);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("/nonexistent/ca.pem"), std::string::npos);
}

TEST(RedisStoreMake, BuildsAndDestroysWithoutAServer) {
  RedisStoreOptions o;
  ASSERT_TRUE(parse_redis_url("redis-cluster://127.0.0.1:1", o).has_value());
  auto store = make_redis_store(o);
  ASSERT_TRUE(store.has_value());
  EXPECT_EQ((*store)->kind(), "redis-cluster");
  auto r = decide_and_wait(**store, DecideRequest{"x", {}});
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace fg::redis
