#include "config/values.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fg::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

std::string error_of(const auto& result) {
  return result ? std::string("(no error)") : result.error().message;
}

TEST(configDuration, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("250ms"), Duration(milliseconds(250)));
  EXPECT_EQ(parse_duration("1ms"), Duration(milliseconds(1)));
  EXPECT_EQ(parse_duration("30s"), Duration(seconds(30)));
  EXPECT_EQ(parse_duration("5m"), Duration(minutes(5)));
  EXPECT_EQ(parse_duration("24h"), Duration(hours(24)));
  EXPECT_EQ(parse_duration("7d"), Duration(hours(24 * 7)));
  EXPECT_EQ(parse_duration("060s"), Duration(seconds(60)));
  EXPECT_EQ(parse_duration("1000000d"), Duration(hours(24'000'000)));
}

TEST(configDuration, RefusesEverythingElse) {
  EXPECT_EQ(error_of(parse_duration("60")), R"("60" is not a duration (use e.g. 60s))");
  const std::string generic =
      " is not a duration (use a whole number and a unit: ms, s, m, h or d, e.g. 250ms, 30s, 5m)";
  for (const char* bad : {"", "sixty", "s", "1.5s", "-5s", "+5s", "5 s", "5S", "5sec", "5us",
                          "5ms ", " 5ms", "5w", "1h30m", "0x10s", "５s"}) {
    const auto r = parse_duration(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message, quote(bad) + generic) << bad;
  }
  EXPECT_EQ(error_of(parse_duration("0s")), "must be positive");
  EXPECT_EQ(error_of(parse_duration("0ms")), "must be positive");
  EXPECT_EQ(error_of(parse_duration("1000001d")), R"("1000001d" is too long (at most 1000000d))");
  EXPECT_EQ(error_of(parse_duration("99999999999999999999999999999999ms")),
            R"("99999999999999999999999999999999ms" is too long (at most 1000000d))");
  // A bare integer too long to be a sensible duration gets the generic message.
  EXPECT_EQ(error_of(parse_duration("9999999999999999999999")),
            R"("9999999999999999999999")" + generic);
}

TEST(configDuration, FormatsInTheLargestExactUnit) {
  EXPECT_EQ(format_duration(seconds(60)), "1m");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(format_duration(hours(24 * 366)), "366d");
  EXPECT_EQ(format_duration(hours(25)), "25h");
  EXPECT_EQ(format_duration(seconds(90)), "90s");
  EXPECT_EQ(format_duration(Duration(1)), "1ms");
  EXPECT_EQ(format_duration(Duration(0)), "0ms");
  for (const char* s : {"250ms", "30s", "5m", "24h", "7d"}) {
    EXPECT_EQ(parse_duration(format_duration(*parse_duration(s))), *parse_duration(s)) << s;
  }
}

TEST(configHostPort, Parses) {
  EXPECT_EQ(parse_host_port("127.0.0.1:8080"), (HostPort{"127.0.0.1", 8080}));
  EXPECT_EQ(parse_host_port("0.0.0.0:1"), (HostPort{"0.0.0.0", 1}));
  EXPECT_EQ(parse_host_port("[::1]:65535"), (HostPort{"::1", 65535}));
  EXPECT_EQ(parse_host_port("[2001:db8::7]:80"), (HostPort{"2001:db8::7", 80}));
  EXPECT_EQ(parse_host_port("localhost:8080"), (HostPort{"localhost", 8080}));
  EXPECT_EQ(parse_host_port("redis-1.svc_a.example:6379"),
            (HostPort{"redis-1.svc_a.example", 6379}));
  EXPECT_EQ(parse_host_port("127.0.0.1:0", /*allow_port_zero=*/true), (HostPort{"127.0.0.1", 0}));
}

TEST(configHostPort, Refuses) {
  std::string too_long;  // 255 characters in valid labels: over the 253 of a DNS name
  while (too_long.size() < 255) too_long += "a.";
  too_long += "a:80";
  const std::string long_label = std::string(64, 'a') + ":80";
  const std::vector<std::string> bad_values = {"",
                                               ":8080",
                                               "127.0.0.1",
                                               "127.0.0.1:",
                                               "127.0.0.1:0",
                                               "127.0.0.1:65536",
                                               "127.0.0.1:-1",
                                               "127.0.0.1:+80",
                                               "127.0.0.1:80x",
                                               "::1:80",
                                               "[::1]",
                                               "[::1:80",
                                               "[::1]80",
                                               "[1.2.3.4]:80",
                                               "[zz]:80",
                                               "256.0.0.1:80",
                                               "1.2.3:80",
                                               "01.2.3.4:80",
                                               "-host:80",
                                               "host-:80",
                                               "a..b:80",
                                               "ho st:80",
                                               "h\xc3\xa9:80",
                                               too_long,
                                               long_label};
  for (const std::string& bad : bad_values) EXPECT_FALSE(parse_host_port(bad)) << bad;
  EXPECT_TRUE(parse_host_port(std::string(63, 'a') + ":80"));
  EXPECT_EQ(error_of(parse_host_port("::1:80")),
            R"("::1:80": an IPv6 address needs brackets, as in [::1]:8080)");
}

TEST(configHostPort, PrintsBackWhatItParsed) {
  for (const char* s : {"127.0.0.1:8080", "[::1]:80", "example.com:443"}) {
    EXPECT_EQ(to_string(*parse_host_port(s)), s);
  }
}

TEST(configStoreUrl, Memory) {
  auto u = parse_store_url("memory://");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, StoreKind::kMemory);
  EXPECT_TRUE(u->hosts.empty());
  EXPECT_EQ(to_string(*u), "memory://");
}

TEST(configStoreUrl, Redis) {
  auto u = parse_store_url("redis://127.0.0.1:6379");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->kind, StoreKind::kRedis);
  EXPECT_EQ(u->hosts, std::vector<HostPort>{(HostPort{"127.0.0.1", 6379})});
  EXPECT_EQ(u->db, 0);
  EXPECT_FALSE(u->tls);
  EXPECT_TRUE(u->user.empty());
  EXPECT_TRUE(u->password.empty());

  u = parse_store_url("redis://alice:p%40ss:w@rd@cache.local:7000/3");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "p@ss:w@rd");
  EXPECT_EQ(u->hosts, std::vector<HostPort>{(HostPort{"cache.local", 7000})});
  EXPECT_EQ(u->db, 3);
  EXPECT_EQ(to_string(*u), "redis://alice:***@cache.local:7000/3");

  u = parse_store_url("redis://:secret@[::1]");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->user, "");
  EXPECT_EQ(u->password, "secret");
  EXPECT_EQ(u->hosts, std::vector<HostPort>{(HostPort{"::1", kDefaultRedisPort})});
  EXPECT_EQ(to_string(*u), "redis://:***@[::1]:6379");

  u = parse_store_url("rediss://h:1/");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->db, 0);
  EXPECT_EQ(to_string(*u), "rediss://h:1");
}

TEST(configStoreUrl, Cluster) {
  auto u = parse_store_url("redis-cluster://127.0.0.1:7001,127.0.0.1:7002,[::1]:7003,seed");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->kind, StoreKind::kRedisCluster);
  EXPECT_EQ(u->hosts,
            (std::vector<HostPort>{
                {"127.0.0.1", 7001}, {"127.0.0.1", 7002}, {"::1", 7003}, {"seed", 6379}}));
  EXPECT_EQ(to_string(*u), "redis-cluster://127.0.0.1:7001,127.0.0.1:7002,[::1]:7003,seed:6379");
  EXPECT_TRUE(parse_store_url("redis-cluster://u:p@a:1/0"));
  EXPECT_FALSE(u->tls);
}

TEST(configStoreUrl, ClusterOverTls) {
  auto u = parse_store_url(
      "rediss-cluster://fg:pw@10.0.0.1:6379,cfg.cache.amazonaws.com?ca=/ca.pem&cert=/c.pem&"
      "key=/k.pem&server_name=redis.internal");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->kind, StoreKind::kRedisCluster);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->user, "fg");
  EXPECT_EQ(u->password, "pw");
  EXPECT_EQ(u->hosts,
            (std::vector<HostPort>{{"10.0.0.1", 6379}, {"cfg.cache.amazonaws.com", 6379}}));
  EXPECT_EQ(u->tls_options.ca_file, "/ca.pem");
  EXPECT_EQ(u->tls_options.cert_file, "/c.pem");
  EXPECT_EQ(u->tls_options.key_file, "/k.pem");
  EXPECT_EQ(u->tls_options.server_name, "redis.internal");
  EXPECT_TRUE(u->tls_options.verify);
  EXPECT_EQ(to_string(*u), "rediss-cluster://fg:***@10.0.0.1:6379,cfg.cache.amazonaws.com:6379");
  u = parse_store_url("rediss-cluster://a:1?insecure=1");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_FALSE(u->tls_options.verify);
}

TEST(configStoreUrl, Refuses) {
  for (const char* bad : {"",
                          "memory",
                          "memory://x",
                          "memory:///",
                          "redis://",
                          "redis:///0",
                          "redis://h:0",
                          "redis://h:1/x",
                          "redis://h:1/-1",
                          "redis://h:1/99999999999",
                          "redis://a:1,b:2",
                          "redis://user@h",
                          "redis://u:@h",
                          "redis://u:%zz@h",
                          "redis://u:%4@h",
                          "redis://h?x=1",
                          "redis://h#f",
                          "REDIS://h",
                          "http://h:1",
                          "redis-cluster://",
                          "redis-cluster://a:1,",
                          "redis-cluster://,a:1",
                          "redis-cluster://a:1/2",
                          "redis://::1:6379",
                          "rediss-cluster://a:1/2",
                          "redis-cluster://a:1?ca=/ca.pem",
                          "redis-cluster+tls://a:1"}) {
    EXPECT_FALSE(parse_store_url(bad)) << bad;
  }
}

TEST(configStoreUrl, ErrorsNeverShowThePassword) {
  // Every way a URL with credentials can be refused: the message names the URL with the
  // password hidden, because it reaches logs, terminals and `floodgate validate` output.
  for (const char* bad : {"redis://alice:S3cretPw@h#frag",
                          "redis://alice:S3cretPw#x@h:1",
                          "redis://alice:S3cretPw@",
                          "redis://alice:S3cretPw@/0",
                          "redis://alice:S3cretPw@h:1,h:2",
                          "redis://alice:S3cretPw@h:1/zero",
                          "redis-cluster://alice:S3cretPw@h:1/3",
                          "redis-cluster://alice:S3cretPw@h:1,,h:2",
                          "redis-cluster://:S3cretPw@h:99999",
                          "redis://alice:S3cretPw@h:1?ca=/x",
                          "rediss://alice:S3cretPw@h:1?nope=1",
                          "rediss://alice:S3cretPw@h:1?cert=/c",
                          "redis:/alice:S3cretPw@h:1",
                          "alice:S3cretPw@h:1",
                          "redis://alice:S3cretPw@bad_host!:1"}) {
    const auto u = parse_store_url(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_EQ(u.error().message.find("S3cretPw"), std::string::npos) << u.error().message;
  }
  const auto u = parse_store_url("redis://alice:S3cretPw@h:1/zero");
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message.find("redis://alice:***@h:1/zero"), std::string::npos)
      << u.error().message;
}

TEST(configUpstream, ParsesHttpHostPort) {
  EXPECT_EQ(parse_upstream_url("http://127.0.0.1:3000"), (HostPort{"127.0.0.1", 3000}));
  EXPECT_EQ(parse_upstream_url("http://backend/"), (HostPort{"backend", 80}));
  EXPECT_EQ(parse_upstream_url("http://[::1]:8000"), (HostPort{"::1", 8000}));
  for (const char* bad : {"", "127.0.0.1:3000", "https://h:1", "http://", "http://h:1/api",
                          "http://u:p@h:1", "http://h:1?x", "http://h:0", "ftp://h"}) {
    EXPECT_FALSE(parse_upstream_url(bad)) << bad;
  }
}

TEST(configOrigin, Parses) {
  EXPECT_EQ(parse_origin("https://app.example.com"), "https://app.example.com");
  EXPECT_EQ(parse_origin("HTTPS://App.Example.COM:8443"), "https://app.example.com:8443");
  EXPECT_EQ(parse_origin("http://localhost:3000"), "http://localhost:3000");
  EXPECT_EQ(parse_origin("*"), "*");
  for (const char* bad : {"", "app.example.com", "https://", "https://a.com/", "https://a.com/x",
                          "ftp://a.com", "https://a.com:0", "https://*.a.com", "null", "**"}) {
    EXPECT_FALSE(parse_origin(bad)) << bad;
  }
}

TEST(configIp, ParsesBothFamilies) {
  auto v4 = parse_ip("192.0.2.1");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family, IpAddress::Family::kIpv4);
  EXPECT_EQ(v4->bytes[0], 192);
  EXPECT_EQ(v4->bytes[3], 1);
  EXPECT_EQ(to_string(*v4), "192.0.2.1");
  auto v6 = parse_ip("2001:DB8::1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->family, IpAddress::Family::kIpv6);
  EXPECT_EQ(to_string(*v6), "2001:db8::1");
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "::g",
                          "fe80::1%eth0", "[::1]", "localhost", "0x7f.0.0.1"}) {
    EXPECT_FALSE(parse_ip(bad)) << bad;
  }
  EXPECT_FALSE(parse_ip(std::string(100, '1')));
}

TEST(configCidr, ParsesAndContains) {
  auto c = parse_cidr("10.0.0.0/8");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->prefix_length, 8);
  EXPECT_TRUE(c->contains(*parse_ip("10.255.1.2")));
  EXPECT_FALSE(c->contains(*parse_ip("11.0.0.1")));
  EXPECT_TRUE(c->contains(*parse_ip("::ffff:10.1.2.3")));  // IPv4-mapped
  EXPECT_FALSE(c->contains(*parse_ip("::a01:203")));       // IPv4-compatible is not mapped
  EXPECT_FALSE(c->contains(*parse_ip("fd00::1")));

  auto one = parse_cidr("192.0.2.7");
  ASSERT_TRUE(one);
  EXPECT_EQ(to_string(*one), "192.0.2.7/32");
  EXPECT_TRUE(one->contains(*parse_ip("192.0.2.7")));
  EXPECT_FALSE(one->contains(*parse_ip("192.0.2.6")));

  auto v6 = parse_cidr("fd00::/8");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*parse_ip("fdff::1")));
  EXPECT_FALSE(v6->contains(*parse_ip("fe00::1")));
  EXPECT_FALSE(v6->contains(*parse_ip("10.0.0.1")));

  auto odd = parse_cidr("2001:db8:ab80::/41");
  ASSERT_TRUE(odd) << odd.error().message;
  EXPECT_TRUE(odd->contains(*parse_ip("2001:db8:abff::1")));
  EXPECT_FALSE(odd->contains(*parse_ip("2001:db8:ab00::1")));

  auto all = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(*parse_ip("255.255.255.255")));
  EXPECT_TRUE(parse_cidr("::/0"));
  EXPECT_TRUE(parse_cidr("::1/128"));
}

TEST(configCidr, Refuses) {
  EXPECT_EQ(error_of(parse_cidr("10.0.0.1/8")),
            R"("10.0.0.1/8" has host bits set (the block is 10.0.0.0/8))");
  EXPECT_EQ(error_of(parse_cidr("fd00::1/8")),
            R"("fd00::1/8" has host bits set (the block is fd00::/8))");
  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8",
                          "10.0.0.0/8/8", "::/129", "10.0.0.0/08x", "banana/8", "10.0.0.0 /8"}) {
    EXPECT_FALSE(parse_cidr(bad)) << bad;
  }
}

TEST(configQuote, EscapesAndTruncates) {
  EXPECT_EQ(quote("abc"), R"("abc")");
  EXPECT_EQ(quote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(quote(std::string_view("\x00\n\xff", 3)), R"("\x00\x0a\xff")");
  EXPECT_EQ(quote(std::string(100, 'x')), "\"" + std::string(64, 'x') + "...\"");
}

}  // namespace
}  // namespace fg::config
