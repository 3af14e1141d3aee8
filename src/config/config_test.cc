#include "config/config.h"

#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace fg::config {
namespace {

// Suite names start with "config" so that `ctest -R config` selects them (ctest sees only the
// gtest names).

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

std::string source_path(const std::string& relative) {
  return std::string(FG_SOURCE_DIR) + "/" + relative;
}

std::vector<std::string> problem_lines(std::string_view yaml) {
  std::vector<std::string> out;
  for (const Problem& p : config_problems(yaml, "t.yaml")) out.push_back(p.to_string());
  return out;
}

int default_threads() {
  return static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 1024));
}

// A valid policy list: line 1 is free for one top-level field, the policy starts on line 3.
constexpr std::string_view kPolicies =
    "policies:\n"        // 2
    "  - name: p\n"      // 3
    "    limit: 10\n"    // 4
    "    period: 1s\n";  // 5

TEST(configFile, DesignExampleParsesWithEveryField) {
  auto c = load_config_file(source_path("tests/configs/design_example.yaml"));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->source, source_path("tests/configs/design_example.yaml"));
  EXPECT_EQ(c->listen, (HostPort{"127.0.0.1", 8080}));
  EXPECT_EQ(c->threads, 2);
  EXPECT_EQ(c->store.kind, StoreKind::kRedisCluster);
  EXPECT_EQ(c->store.hosts, (std::vector<HostPort>{{"127.0.0.1", 7001}, {"127.0.0.1", 7002}}));
  EXPECT_FALSE(c->store.tls);
  EXPECT_EQ(c->store_timeout, milliseconds(20));
  EXPECT_EQ(c->on_store_error, OnStoreError::kAllow);
  EXPECT_EQ(c->local_fallback_instances, 1);
  ASSERT_EQ(c->trusted_proxies.size(), 1u);
  EXPECT_EQ(to_string(c->trusted_proxies[0]), "127.0.0.1/32");
  ASSERT_TRUE(c->upstream);
  EXPECT_EQ(*c->upstream, (HostPort{"127.0.0.1", 3000}));
  EXPECT_EQ(c->key_prefix, "fg");
  ASSERT_TRUE(c->cors);
  EXPECT_EQ(c->cors->allow_origins, std::vector<std::string>{"https://app.example.com"});
  ASSERT_EQ(c->identity.size(), 2u);
  EXPECT_EQ(c->identity[0].kind, IdentitySource::Kind::kHeader);
  EXPECT_EQ(c->identity[0].header, "X-API-Key");
  EXPECT_EQ(c->identity[1].kind, IdentitySource::Kind::kIp);
  EXPECT_EQ(c->identity[1].ipv4_prefix, 32);
  EXPECT_EQ(c->identity[1].ipv6_prefix, 64);

  ASSERT_EQ(c->policies.size(), 2u);
  const PolicyConfig& a = c->policies[0];
  EXPECT_EQ(a.policy.name, "per-minute");
  EXPECT_EQ(a.policy.algorithm, Algorithm::kTokenBucket);
  EXPECT_EQ(a.policy.limit, 100);
  EXPECT_EQ(a.policy.period, seconds(60));
  EXPECT_EQ(a.policy.burst, 100);
  EXPECT_EQ(a.policy.cost, 1);
  EXPECT_FALSE(a.policy.shadow);
  EXPECT_EQ(a.match.path_prefix, "/api/");
  EXPECT_EQ(a.line, 16);
  const PolicyConfig& b = c->policies[1];
  EXPECT_EQ(b.policy.name, "per-second");
  EXPECT_EQ(b.policy.limit, 10);
  EXPECT_EQ(b.policy.period, seconds(1));
  EXPECT_EQ(b.policy.burst, 10);
  EXPECT_EQ(b.line, 24);
  EXPECT_EQ(c->find_policy("per-second"), &c->policies[1]);
  EXPECT_EQ(c->find_policy("nope"), nullptr);
}

TEST(configFile, EveryFieldSetAwayFromItsDefault) {
  auto c = load_config_file(source_path("tests/configs/every_field.yaml"));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->listen, (HostPort{"::1", 9090}));
  EXPECT_EQ(c->threads, 3);
  EXPECT_EQ(c->store.kind, StoreKind::kRedis);
  EXPECT_TRUE(c->store.tls);
  EXPECT_EQ(c->store.user, "app");
  EXPECT_EQ(c->store.password, "s3cr@t");
  EXPECT_EQ(c->store.db, 2);
  EXPECT_EQ(c->store.hosts, std::vector<HostPort>{(HostPort{"redis.internal", 6380})});
  EXPECT_EQ(c->store_timeout, milliseconds(250));
  EXPECT_EQ(c->on_store_error, OnStoreError::kLocal);
  EXPECT_EQ(c->local_fallback_instances, 4);
  EXPECT_EQ(c->memory.max_keys, 250'000u);
  ASSERT_EQ(c->trusted_proxies.size(), 3u);
  EXPECT_EQ(to_string(c->trusted_proxies[0]), "10.0.0.0/8");
  EXPECT_EQ(to_string(c->trusted_proxies[1]), "192.168.1.7/32");
  EXPECT_EQ(to_string(c->trusted_proxies[2]), "fd00::/8");
  EXPECT_EQ(c->upstream, (HostPort{"backend", 3000}));
  EXPECT_EQ(c->key_prefix, "staging.api_v2");
  EXPECT_EQ(c->key_secret, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(c->admin_listen, (HostPort{"127.0.0.1", 9091}));
  ASSERT_TRUE(c->cors);
  EXPECT_EQ(c->cors->allow_origins,
            (std::vector<std::string>{"https://app.example.com", "http://localhost:3000", "*"}));
  ASSERT_EQ(c->identity.size(), 2u);
  EXPECT_EQ(c->identity[0].header, "Authorization");
  EXPECT_EQ(c->identity[1].kind, IdentitySource::Kind::kIp);
  EXPECT_EQ(c->identity[1].ipv4_prefix, 24);
  EXPECT_EQ(c->identity[1].ipv6_prefix, 56);

  ASSERT_EQ(c->policies.size(), 3u);
  const PolicyConfig& login = c->policies[0];
  EXPECT_EQ(login.policy.algorithm, Algorithm::kGcra);
  EXPECT_EQ(login.policy.limit, 5);
  EXPECT_EQ(login.policy.period, minutes(1));
  EXPECT_EQ(login.policy.burst, 10);
  EXPECT_EQ(login.policy.cost, 2);
  EXPECT_TRUE(login.policy.shadow);
  EXPECT_EQ(login.match.path, "/login");
  EXPECT_FALSE(login.match.path_prefix);
  EXPECT_EQ(login.match.methods, (std::vector<std::string>{"POST", "PUT"}));
  ASSERT_TRUE(login.match.header);
  EXPECT_EQ(login.match.header->name, "X-Tenant");
  EXPECT_EQ(login.match.header->value, "acme");

  const PolicyConfig& search = c->policies[1];
  EXPECT_EQ(search.policy.name, "search.daily");
  EXPECT_EQ(search.policy.algorithm, Algorithm::kSlidingWindow);
  EXPECT_EQ(search.policy.period, hours(24));
  EXPECT_EQ(search.match.methods, std::vector<std::string>{"GET"});
  ASSERT_TRUE(search.match.header);
  EXPECT_FALSE(search.match.header->value);

  const PolicyConfig& uploads = c->policies[2];
  EXPECT_EQ(uploads.policy.algorithm, Algorithm::kFixedWindow);
  EXPECT_EQ(uploads.policy.cost, 0);
  EXPECT_EQ(uploads.match, Match{});
}

TEST(configFile, DefaultsFillEverythingLeftOut) {
  auto c = load_config_file(source_path("tests/configs/minimal.yaml"));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->listen, (HostPort{"127.0.0.1", 8080}));
  EXPECT_EQ(c->threads, default_threads());
  EXPECT_EQ(c->store, StoreUrl{});
  EXPECT_EQ(c->store.kind, StoreKind::kMemory);
  EXPECT_EQ(c->store_timeout, milliseconds(20));
  EXPECT_EQ(c->on_store_error, OnStoreError::kAllow);
  EXPECT_EQ(c->local_fallback_instances, 1);
  EXPECT_EQ(c->memory.max_keys, 1'000'000u);
  EXPECT_TRUE(c->trusted_proxies.empty());
  EXPECT_FALSE(c->upstream);
  EXPECT_EQ(c->key_prefix, "fg");
  EXPECT_EQ(c->key_secret, "");
  EXPECT_FALSE(c->admin_listen);
  EXPECT_FALSE(c->cors);
  ASSERT_EQ(c->identity.size(), 1u);
  EXPECT_EQ(c->identity[0].kind, IdentitySource::Kind::kIp);
  ASSERT_EQ(c->policies.size(), 1u);
  const Policy& p = c->policies[0].policy;
  EXPECT_EQ(p.name, "api");
  EXPECT_EQ(p.algorithm, Algorithm::kTokenBucket);
  EXPECT_EQ(p.limit, 100);
  EXPECT_EQ(p.period, minutes(1));
  EXPECT_EQ(p.burst, 100);
  EXPECT_EQ(p.cost, 1);
  EXPECT_FALSE(p.shadow);
  EXPECT_EQ(c->policies[0].match, Match{});
}

TEST(configFile, IpIdentityWithoutOptions) {
  auto c = parse_config(
      std::string("identity:\n  - ip:\n  - header: X-Key\n") + std::string(kPolicies), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->identity.size(), 2u);
  EXPECT_EQ(c->identity[0].kind, IdentitySource::Kind::kIp);
  EXPECT_EQ(c->identity[1].header, "X-Key");
}

TEST(configFile, DefaultConfig) {
  const Config c = default_config();
  EXPECT_EQ(c.listen, (HostPort{"127.0.0.1", 8080}));
  EXPECT_EQ(c.store.kind, StoreKind::kMemory);
  EXPECT_EQ(c.threads, default_threads());
  EXPECT_EQ(c.store_timeout, milliseconds(20));
  ASSERT_EQ(c.identity.size(), 2u);
  EXPECT_EQ(c.identity[0].kind, IdentitySource::Kind::kHeader);
  EXPECT_EQ(c.identity[0].header, "X-API-Key");
  EXPECT_EQ(c.identity[1].kind, IdentitySource::Kind::kIp);
  ASSERT_EQ(c.policies.size(), 1u);
  const PolicyConfig& pc = c.policies[0];
  EXPECT_EQ(pc.policy.name, "per-minute");
  EXPECT_EQ(pc.policy.limit, 100);
  EXPECT_EQ(pc.policy.period, seconds(60));
  EXPECT_EQ(pc.policy.burst, 100);
  EXPECT_EQ(pc.match.path_prefix, "/api/");
  EXPECT_TRUE(validate_policy(pc.policy));
}

TEST(configFile, ExampleFileInTheRepositoryIsValid) {
  auto c = load_config_file(source_path("examples/floodgate.yaml"));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_NE(c->find_policy("per-minute"), nullptr);
  EXPECT_EQ(c->store.kind, StoreKind::kMemory);  // `floodgate check` works with it today
}

// One bad value, the one problem it must produce (exactly, with its line).
struct BadCase {
  std::string yaml;
  std::string problem;
};

// ctest names each case after what PrintTo prints (gtest_discover_tests puts GetParam() in the
// name): the YAML, e.g. config/BadTopLevelValue.IsReportedWithFieldAndLine/"threads: 0".
void PrintTo(const BadCase& c, std::ostream* os) { *os << testing::PrintToString(c.yaml); }

class BadTopLevelValue : public testing::TestWithParam<BadCase> {};

TEST_P(BadTopLevelValue, IsReportedWithFieldAndLine) {
  const std::string yaml = GetParam().yaml + "\n" + std::string(kPolicies);
  EXPECT_EQ(problem_lines(yaml), std::vector<std::string>{GetParam().problem}) << yaml;
  auto c = parse_config(yaml, "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(c.error().message, GetParam().problem);
}

INSTANTIATE_TEST_SUITE_P(
    config, BadTopLevelValue,
    testing::Values(
        BadCase{"listen: localhost",
                R"(t.yaml:1: listen: "localhost" is not host:port (e.g. 127.0.0.1:8080))"},
        BadCase{"listen: 127.0.0.1:-1",
                R"(t.yaml:1: listen: "127.0.0.1:-1": port must be 0-65535)"},
        BadCase{"listen: 127.0.0.1:65536",
                R"(t.yaml:1: listen: "127.0.0.1:65536": port must be 0-65535)"},
        BadCase{"listen: 127.0.0.1:http",
                R"(t.yaml:1: listen: "127.0.0.1:http": port must be 0-65535)"},
        BadCase{
            "listen: '::1:8080'",
            R"(t.yaml:1: listen: "::1:8080": an IPv6 address needs brackets, as in [::1]:8080)"},
        BadCase{"listen: '[::g]:8080'", R"(t.yaml:1: listen: "::g" is not an IPv6 address)"},
        BadCase{"listen: 999.1.1.1:80", R"(t.yaml:1: listen: "999.1.1.1" is not an IPv4 address)"},
        BadCase{"listen: bad_host!:80",
                R"(t.yaml:1: listen: "bad_host!" is not a valid host name)"},
        BadCase{"listen: [a, b]", "t.yaml:1: listen: must be a string, not a list"},
        BadCase{"listen:", "t.yaml:1: listen: must be a string, not empty"},
        BadCase{"threads: 0", "t.yaml:1: threads: must be a positive integer"},
        BadCase{"threads: -3", "t.yaml:1: threads: must be a positive integer"},
        BadCase{"threads: 1.5", R"(t.yaml:1: threads: must be a positive integer, not "1.5")"},
        BadCase{"threads: 10abc", R"(t.yaml:1: threads: must be a positive integer, not "10abc")"},
        BadCase{"threads: '4'",
                R"(t.yaml:1: threads: must be a positive integer, not "4" (a quoted string))"},
        BadCase{"threads: 0x10", R"(t.yaml:1: threads: must be a positive integer, not "0x10")"},
        BadCase{"threads: 1e3", R"(t.yaml:1: threads: must be a positive integer, not "1e3")"},
        BadCase{"threads: true", R"(t.yaml:1: threads: must be a positive integer, not "true")"},
        BadCase{"threads: {n: 1}", "t.yaml:1: threads: must be a positive integer, not a mapping"},
        BadCase{"threads: 2000", "t.yaml:1: threads: must be at most 1024"},
        BadCase{"threads: 99999999999999999999999999999",
                "t.yaml:1: threads: must be at most 1024"},
        BadCase{"threads: -99999999999999999999999999999",
                "t.yaml:1: threads: must be a positive integer"},
        BadCase{
            "store: ftp://x",
            R"(t.yaml:1: store: unknown store scheme "ftp" (memory://, redis://host:port[/db], rediss://host:port[/db], redis-cluster://host:port[,host:port...] or rediss-cluster://host:port[,host:port...]))"},
        BadCase{
            "store: redis",
            R"(t.yaml:1: store: "redis" is not a store URL (memory://, redis://host:port[/db], rediss://host:port[/db], redis-cluster://host:port[,host:port...] or rediss-cluster://host:port[,host:port...]))"},
        BadCase{"store: memory://x",
                R"(t.yaml:1: store: "memory://x": memory:// takes nothing after it)"},
        BadCase{"store: redis://h:99999", R"(t.yaml:1: store: "h:99999": port must be 1-65535)"},
        BadCase{"store: redis://a:1,b:2",
                R"(t.yaml:1: store: "redis://a:1,b:2": several hosts need redis-cluster://)"},
        BadCase{"store: redis-cluster://a:1,,b:2",
                R"(t.yaml:1: store: "redis-cluster://a:1,,b:2": empty host in the seed list)"},
        BadCase{"store: redis-cluster://a:1/3",
                R"(t.yaml:1: store: "redis-cluster://a:1/3": Redis Cluster has only db 0)"},
        BadCase{"store: redis://user@h:1",
                "t.yaml:1: store: store URL: a user needs a password (user:password@host, or "
                ":password@host)"},
        BadCase{"store: redis://h:1/x",
                R"(t.yaml:1: store: "redis://h:1/x": db must be a number (redis://host:port/0))"},
        BadCase{"store: redis://", R"(t.yaml:1: store: "redis://" has no host)"},
        BadCase{"store: redis://h:1?ca=/ca.pem",
                R"(t.yaml:1: store: store URL: ca= needs rediss:// or rediss-cluster:// (TLS))"},
        BadCase{
            "store: rediss://h:1?tls=1",
            R"(t.yaml:1: store: store URL: unknown parameter "tls" (rediss:// takes ca, cert, key, server_name, insecure))"},
        BadCase{"store: rediss://h:1?cert=/c.pem",
                R"(t.yaml:1: store: store URL: cert and key go together)"},
        BadCase{
            "store: redis://h:1#x",
            R"(t.yaml:1: store: "redis://h:1#x": fragments are not supported (write '#' in a password as %23))"},
        BadCase{"store_timeout: 20",
                R"(t.yaml:1: store_timeout: "20" is not a duration (use e.g. 20s))"},
        BadCase{"store_timeout: 0ms", "t.yaml:1: store_timeout: must be positive"},
        BadCase{
            "store_timeout: 1.5s",
            R"(t.yaml:1: store_timeout: "1.5s" is not a duration (use a whole number and a unit: ms, s, m, h or d, e.g. 250ms, 30s, 5m))"},
        BadCase{"store_timeout: 2m", "t.yaml:1: store_timeout: must be at most 1m"},
        BadCase{"on_store_error: maybe",
                R"(t.yaml:1: on_store_error: "maybe" is not one of allow, deny, local)"},
        BadCase{"on_store_error: [allow]",
                "t.yaml:1: on_store_error: must be a string, not a list"},
        BadCase{"memory: {max_keys: 0}", "t.yaml:1: memory.max_keys: must be a positive integer"},
        BadCase{"memory: {max_keys: 100000001}",
                "t.yaml:1: memory.max_keys: must be at most 100000000"},
        BadCase{"memory: {max_keys: 1e6}",
                R"(t.yaml:1: memory.max_keys: must be a positive integer, not "1e6")"},
        BadCase{"memory: {max_key: 10}",
                "t.yaml:1: memory.max_key: unknown field (did you mean max_keys?)"},
        BadCase{"memory: 10", R"(t.yaml:1: memory: must be a mapping, not "10")"},
        BadCase{"local_fallback: {instances: 0}",
                "t.yaml:1: local_fallback.instances: must be a positive integer"},
        BadCase{"local_fallback: {instances: 20000}",
                "t.yaml:1: local_fallback.instances: must be at most 10000"},
        BadCase{"local_fallback: 3", R"(t.yaml:1: local_fallback: must be a mapping, not "3")"},
        BadCase{"local_fallback: {instance: 3}",
                "t.yaml:1: local_fallback.instance: unknown field (did you mean instances?)"},
        BadCase{
            "trusted_proxies: [10.0.0.1/8]",
            R"(t.yaml:1: trusted_proxies[0]: "10.0.0.1/8" has host bits set (the block is 10.0.0.0/8))"},
        BadCase{"trusted_proxies: [10.0.0.0/33]",
                R"(t.yaml:1: trusted_proxies[0]: "10.0.0.0/33": prefix length must be 0-32)"},
        BadCase{"trusted_proxies: ['fd00::/129']",
                R"(t.yaml:1: trusted_proxies[0]: "fd00::/129": prefix length must be 0-128)"},
        BadCase{
            "trusted_proxies: [127.0.0.0/8, banana]",
            R"(t.yaml:1: trusted_proxies[1]: "banana" is not a CIDR block (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8))"},
        BadCase{"trusted_proxies: 10.0.0.0/8",
                R"(t.yaml:1: trusted_proxies: must be a list, not "10.0.0.0/8")"},
        BadCase{
            "upstream: https://x:1",
            R"(t.yaml:1: upstream: "https://x:1": https upstreams are not supported (use http://host:port))"},
        BadCase{
            "upstream: http://x:1/path",
            R"(t.yaml:1: upstream: "http://x:1/path": only http://host:port (no path, query or credentials))"},
        BadCase{"upstream: x:1", R"(t.yaml:1: upstream: "x:1" is not an http://host:port URL)"},
        BadCase{
            "key_prefix: 'fg{x}'",
            R"(t.yaml:1: key_prefix: "fg{x}" is not a valid key prefix (letters, digits, '_', '.', '-'; at most 64))"},
        BadCase{
            "key_prefix: ''",
            R"(t.yaml:1: key_prefix: "" is not a valid key prefix (letters, digits, '_', '.', '-'; at most 64))"},
        BadCase{"key_secret: short",
                "t.yaml:1: key_secret: must be 16 to 1024 characters (e.g. the output of "
                "`openssl rand -hex 32`)"},
        BadCase{"key_secret: [a]", "t.yaml:1: key_secret: must be a string, not a list"},
        BadCase{"admin_listen: localhost",
                R"(t.yaml:1: admin_listen: "localhost" is not host:port (e.g. 127.0.0.1:8080))"},
        BadCase{"admin_listen: 127.0.0.1:8080",
                "t.yaml:1: admin_listen: must differ from listen (127.0.0.1:8080): /metrics is "
                "moved to its own address so that it can be kept private"},
        BadCase{"cors: {allow_origins: []}", "t.yaml:1: cors.allow_origins: must not be empty"},
        BadCase{
            "cors: {allow_origins: ['https://a.com/']}",
            R"(t.yaml:1: cors.allow_origins[0]: "https://a.com/" is not an origin: scheme://host[:port] only, without a path or a trailing '/')"},
        BadCase{
            "cors: {allow_origins: [ftp://a.com]}",
            R"(t.yaml:1: cors.allow_origins[0]: "ftp://a.com" is not an origin (e.g. https://app.example.com, or *))"},
        BadCase{"cors: {}", "t.yaml:1: cors.allow_origins: required when cors is given"},
        BadCase{"cors: [x]", "t.yaml:1: cors: must be a mapping, not a list"},
        BadCase{"identity: []",
                "t.yaml:1: identity: must not be empty (e.g. [{header: X-API-Key}, {ip: {}}])"},
        BadCase{"identity: [{header: 'X API Key'}]",
                R"(t.yaml:1: identity[0].header: "X API Key" is not a valid header name)"},
        BadCase{"identity: [{header: X-Key, ip: {}}]",
                "t.yaml:1: identity[0]: must be exactly one of `header: NAME` or `ip: {}`"},
        BadCase{"identity: [{}]",
                "t.yaml:1: identity[0]: must be exactly one of `header: NAME` or `ip: {}`"},
        BadCase{"identity: [{cookie: x}]", "t.yaml:1: identity[0].cookie: unknown field"},
        BadCase{"identity: [{ip: {ipv6_prefix: 129}}]",
                "t.yaml:1: identity[0].ip.ipv6_prefix: must be an integer from 1 to 128"},
        BadCase{"identity: [{ip: {ipv4_prefix: 0}}]",
                "t.yaml:1: identity[0].ip.ipv4_prefix: must be an integer from 1 to 32"},
        BadCase{"identity: [{ip: {ipv4: 24}}]", "t.yaml:1: identity[0].ip.ipv4: unknown field"},
        BadCase{"identity: [ip]",
                R"(t.yaml:1: identity[0]: must be `header: NAME` or `ip: {}`, not "ip")"},
        BadCase{"identity: {ip: {}}", "t.yaml:1: identity: must be a list, not a mapping"},
        BadCase{"thread: 2", "t.yaml:1: thread: unknown field (did you mean threads?)"},
        BadCase{"Listen: 127.0.0.1:80", "t.yaml:1: Listen: unknown field (did you mean listen?)"}));

// The policies list itself, in place of kPolicies.
TEST(configFile, PoliciesListItself) {
  EXPECT_EQ(problem_lines("listen: 127.0.0.1:80\n"),
            std::vector<std::string>{
                "t.yaml:1: policies: required: at least one policy (see examples/floodgate.yaml)"});
  EXPECT_EQ(problem_lines("policies: []\n"),
            std::vector<std::string>{"t.yaml:1: policies: must not be empty: at least one policy"});
  EXPECT_EQ(problem_lines("policies: {name: p}\n"),
            std::vector<std::string>{"t.yaml:1: policies: must be a list, not a mapping"});
  EXPECT_EQ(problem_lines("policies:\n"),
            std::vector<std::string>{"t.yaml:1: policies: must be a list, not empty"});
  EXPECT_EQ(
      problem_lines("policies: [per-minute]\n"),
      std::vector<std::string>{R"(t.yaml:1: policies[0]: must be a mapping, not "per-minute")"});
}

class BadPolicyValue : public testing::TestWithParam<BadCase> {};

// The fields are inserted after `period`, at line 5 (and 6...).
TEST_P(BadPolicyValue, IsReportedWithFieldAndLine) {
  const std::string yaml = std::string(
                               "listen: 127.0.0.1:8080\n"  // 1
                               "policies:\n"               // 2
                               "  - name: p\n"             // 3
                               "    period: 1s\n") +       // 4
                           GetParam().yaml;
  EXPECT_EQ(problem_lines(yaml), std::vector<std::string>{GetParam().problem}) << yaml;
}

INSTANTIATE_TEST_SUITE_P(
    config, BadPolicyValue,
    testing::Values(
        BadCase{"    limit: 0\n", "t.yaml:5: policies[0].limit: must be a positive integer"},
        BadCase{"    limit: -1\n", "t.yaml:5: policies[0].limit: must be a positive integer"},
        BadCase{"    limit: ten\n",
                R"(t.yaml:5: policies[0].limit: must be a positive integer, not "ten")"},
        BadCase{"    limit: 10.0\n",
                R"(t.yaml:5: policies[0].limit: must be a positive integer, not "10.0")"},
        BadCase{"    limit: 1000000001\n",
                "t.yaml:5: policies[0].limit: must be at most 1000000000"},
        BadCase{"    limit: 123456789012345678901234567890\n",
                "t.yaml:5: policies[0].limit: must be at most 1000000000"},
        BadCase{"    limit: [1]\n",
                "t.yaml:5: policies[0].limit: must be a positive integer, not a list"},
        BadCase{"    limit:\n",
                "t.yaml:5: policies[0].limit: must be a positive integer, not empty"},
        BadCase{"    limit: 10\n    burst: 0\n",
                "t.yaml:6: policies[0].burst: must be a positive integer"},
        BadCase{"    limit: 10\n    burst: 1e9\n",
                R"(t.yaml:6: policies[0].burst: must be a positive integer, not "1e9")"},
        BadCase{"    limit: 10\n    cost: -1\n",
                "t.yaml:6: policies[0].cost: must be zero or a positive integer"},
        BadCase{"    limit: 10\n    cost: 2000000000\n",
                "t.yaml:6: policies[0].cost: must be at most 1000000000"},
        BadCase{"    limit: 10\n    shadow: yes\n",
                R"(t.yaml:6: policies[0].shadow: must be true or false, not "yes")"},
        BadCase{"    limit: 10\n    shadow: 'true'\n",
                R"(t.yaml:6: policies[0].shadow: must be true or false, not "true")"},
        BadCase{
            "    limit: 10\n    algorithm: concurrency\n",
            "t.yaml:4: policies[0].period: a concurrency policy has no period (its slots are held "
            "until each response ends; `lease` bounds how long one outlives a dead instance)"},
        BadCase{"    limit: 10\n    lease: 30s\n",
                "t.yaml:6: policies[0].lease: applies to algorithm: concurrency only"},
        BadCase{
            "    limit: 10\n    algorithm: leaky_bucket\n",
            R"(t.yaml:6: policies[0].algorithm: "leaky_bucket" is not an algorithm (token_bucket, gcra, sliding_window, fixed_window, concurrency))"},
        BadCase{"    limit: 10\n    algorithm: fixed_window\n    burst: 20\n",
                "t.yaml:7: policies[0].burst: applies to token_bucket and gcra only; fixed_window "
                "allows `limit` per window"},
        BadCase{"    limit: 10\n    limt: 10\n",
                "t.yaml:6: policies[0].limt: unknown field (did you mean limit?)"},
        BadCase{"    limit: 10\n    limit: 20\n",
                "t.yaml:6: policies[0].limit: duplicate field (first at line 5)"},
        BadCase{
            "    limit: 10\n    match: /api/\n",
            R"(t.yaml:6: policies[0].match: must be a mapping (e.g. {path_prefix: /api/}), not "/api/")"},
        BadCase{
            "    limit: 10\n    match: {path_prefix: api}\n",
            R"(t.yaml:6: policies[0].match.path_prefix: "api" is not a path (it starts with '/'))"},
        BadCase{"    limit: 10\n    match: {path: /a, path_prefix: /b}\n",
                "t.yaml:6: policies[0].match.path: give either path or path_prefix, not both"},
        BadCase{"    limit: 10\n    match: {method: []}\n",
                "t.yaml:6: policies[0].match.method: must not be empty (leave it out to match any "
                "method)"},
        BadCase{"    limit: 10\n    match: {method: [GET, 'G T']}\n",
                R"(t.yaml:6: policies[0].match.method[1]: "G T" is not an HTTP method)"},
        BadCase{
            "    limit: 10\n    match: {header: X-Beta}\n",
            R"(t.yaml:6: policies[0].match.header: must be a mapping {name: ..., value: ...}, not "X-Beta")"},
        BadCase{"    limit: 10\n    match: {header: {value: x}}\n",
                "t.yaml:6: policies[0].match.header.name: required"},
        BadCase{"    limit: 10\n    match: {header: {name: 'a:b'}}\n",
                R"(t.yaml:6: policies[0].match.header.name: "a:b" is not a valid header name)"},
        BadCase{"    limit: 10\n    match: {host: example.com}\n",
                "t.yaml:6: policies[0].match.host: unknown field"},
        BadCase{"    limit: 10\n    match:\n      path_prefix: /api/\n      methods: GET\n",
                "t.yaml:8: policies[0].match.methods: unknown field (did you mean method?)"},
        BadCase{"", "t.yaml:3: policies[0].limit: required"}));

TEST(configFile, PolicyNameAndPeriod) {
  const auto one = [](std::string_view name, std::string_view period) {
    return problem_lines("policies:\n  - name: " + std::string(name) + "\n    limit: 10\n" +
                         "    period: " + std::string(period) + "\n");
  };
  EXPECT_EQ(
      one("p", "sixty"),
      std::vector<std::string>{
          R"(t.yaml:4: policies[0].period: "sixty" is not a duration (use a whole number and a unit: ms, s, m, h or d, e.g. 250ms, 30s, 5m))"});
  EXPECT_EQ(one("p", "60"),
            std::vector<std::string>{
                R"(t.yaml:4: policies[0].period: "60" is not a duration (use e.g. 60s))"});
  EXPECT_EQ(one("p", "0s"),
            std::vector<std::string>{"t.yaml:4: policies[0].period: must be positive"});
  EXPECT_EQ(one("p", "400d"),
            std::vector<std::string>{"t.yaml:4: policies[0].period: must be at most 366d"});
  EXPECT_EQ(
      one("'has space'", "1s"),
      std::vector<std::string>{
          R"(t.yaml:2: policies[0].name: "has space" is not a valid policy name (letters, digits, '_', '.', '-'; at most 64))"});
  EXPECT_EQ(one("'a{b}'", "1s").size(), 1u);
  EXPECT_EQ(one(std::string(65, 'a'), "1s").size(), 1u);
  EXPECT_TRUE(one(std::string(64, 'a'), "1s").empty());
  // validate_policy's own checks, placed at the policy when the field is not in the file.
  EXPECT_EQ(problem_lines("policies:\n  - name: p\n    limit: 999999937\n    period: 1h\n"),
            std::vector<std::string>{
                "t.yaml:2: policies[0].burst: 999999937 tokens refilled 999999937 per "
                "3600000000 us cannot be counted exactly; use a limit that divides the period in "
                "microseconds more evenly, or a shorter period"});
  EXPECT_EQ(problem_lines("policies:\n  - limit: 10\n    period: 1s\n"),
            std::vector<std::string>{"t.yaml:2: policies[0].name: required"});
}

TEST(configFile, ConcurrencyPolicyHasALeaseAndNoPeriod) {
  auto c = parse_config(
      "policies:\n"
      "  - name: in-flight\n"
      "    algorithm: concurrency\n"
      "    limit: 4\n"
      "    lease: 10s\n"
      "  - name: default-lease\n"
      "    algorithm: concurrency\n"
      "    limit: 2\n",
      "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  const Policy* p = &c->find_policy("in-flight")->policy;
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->algorithm, Algorithm::kConcurrency);
  EXPECT_EQ(p->limit, 4);
  EXPECT_EQ(p->burst, 4);
  EXPECT_EQ(p->period, std::chrono::seconds(10));  // the lease
  EXPECT_EQ(c->find_policy("default-lease")->policy.period, kDefaultLease);
  EXPECT_EQ(problem_lines("policies:\n  - name: p\n    algorithm: concurrency\n"
                          "    limit: 2\n    cost: 3\n"),
            std::vector<std::string>{"t.yaml:5: policies[0].cost: a concurrency policy takes one "
                                     "slot per request (0 or 1)"});
  EXPECT_EQ(problem_lines("policies:\n  - name: p\n    algorithm: concurrency\n"
                          "    limit: 2\n    lease: 0s\n"),
            std::vector<std::string>{"t.yaml:5: policies[0].lease: must be positive"});
}

TEST(configFile, EveryProblemIsReportedInFileOrder) {
  const std::string path = source_path("tests/configs/invalid_many.yaml");
  const std::vector<std::string> expected = {
      path + R"(:1: listen: "localhost" is not host:port (e.g. 127.0.0.1:8080))",
      path + R"(:2: threads: must be a positive integer, not "many")",
      path + R"(:3: store_timeout: "20" is not a duration (use e.g. 20s))",
      path + ":5: policies[0].limit: required",
      path + ":6: policies[0].limt: unknown field (did you mean limit?)",
      path +
          R"(:10: policies[1].period: "sixty" is not a duration (use a whole number and a unit: ms, s, m, h or d, e.g. 250ms, 30s, 5m))",
      path + ":12: policies[2].limit: must be a positive integer",
      path + R"(:14: policies[3].name: duplicate policy name "per-minute" (first at line 5))",
      path +
          ":16: policies[3].period: a concurrency policy has no period (its slots are held until "
          "each response ends; `lease` bounds how long one outlives a dead instance)",
  };
  std::vector<std::string> got;
  for (const Problem& p : config_file_problems(path)) got.push_back(p.to_string());
  EXPECT_EQ(got, expected);

  auto c = load_config_file(path);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  std::string joined;
  for (const std::string& line : expected) joined += (joined.empty() ? "" : "\n") + line;
  EXPECT_EQ(c.error().message, joined);
}

TEST(configFile, UnknownFieldsAtEveryLevel) {
  const std::string path = source_path("tests/configs/invalid_unknown_fields.yaml");
  std::vector<std::string> got;
  for (const Problem& p : config_file_problems(path)) got.push_back(p.to_string());
  EXPECT_EQ(got, (std::vector<std::string>{
                     path + ":2: stores: unknown field (did you mean store?)",
                     path + ":5: identity[0].ipp: unknown field (did you mean ip?)",
                     path + ":8: policies[0].match.path_prefx: unknown field (did you mean "
                            "path_prefix?)",
                 }));
}

TEST(configFile, DuplicatePolicyNames) {
  EXPECT_EQ(problem_lines("policies:\n"
                          "  - {name: a, limit: 1, period: 1s}\n"
                          "  - {name: b, limit: 1, period: 1s}\n"
                          "  - {name: a, limit: 2, period: 1m}\n"
                          "  - name: b\n"
                          "    limit: 2\n"
                          "    period: 1m\n"),
            (std::vector<std::string>{
                R"(t.yaml:4: policies[2].name: duplicate policy name "a" (first at line 2))",
                R"(t.yaml:5: policies[3].name: duplicate policy name "b" (first at line 3))"}));
}

TEST(configFile, DuplicateTopLevelField) {
  EXPECT_EQ(problem_lines("threads: 2\nthreads: 3\n" + std::string(kPolicies)),
            std::vector<std::string>{"t.yaml:2: threads: duplicate field (first at line 1)"});
}

TEST(configFile, YamlSyntaxErrorIsOneProblemWithItsLine) {
  const std::string path = source_path("tests/configs/invalid_syntax.yaml");
  const auto problems = config_file_problems(path);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].source, path);
  EXPECT_GE(problems[0].line, 5);
  EXPECT_EQ(problems[0].message.rfind("invalid YAML: ", 0), 0u) << problems[0].message;

  EXPECT_EQ(problem_lines("listen: 127.0.0.1:80\n  threads: 2\n"),
            std::vector<std::string>{"t.yaml:2: invalid YAML: illegal map value"});
  EXPECT_EQ(
      problem_lines("policies: *undefined\n"),
      std::vector<std::string>{"t.yaml:1: invalid YAML: the referenced anchor is not defined"});
  // yaml-cpp's LoadAll would loop on this one until memory runs out.
  EXPECT_EQ(problem_lines(","),
            std::vector<std::string>{"t.yaml:1: invalid YAML: unexpected \",\""});
  EXPECT_EQ(problem_lines(", policies: []"),
            std::vector<std::string>{"t.yaml:1: invalid YAML: unexpected \",\""});
  const auto tab = config_problems("policies:\n\t- name: x\n", "t.yaml");
  ASSERT_EQ(tab.size(), 1u);
  EXPECT_EQ(tab[0].line, 2);
}

TEST(configFile, OddDocuments) {
  EXPECT_EQ(problem_lines(""),
            std::vector<std::string>{
                "t.yaml:1: policies: required: the file is empty (see examples/floodgate.yaml)"});
  EXPECT_EQ(problem_lines("# only a comment\n"),
            std::vector<std::string>{
                "t.yaml:1: policies: required: the file is empty (see examples/floodgate.yaml)"});
  EXPECT_EQ(problem_lines("- a\n- b\n"),
            std::vector<std::string>{"t.yaml:1: must be a mapping of fields (listen, store, "
                                     "policies, ...), not a list"});
  EXPECT_EQ(problem_lines("just text\n"),
            std::vector<std::string>{"t.yaml:1: must be a mapping of fields (listen, store, "
                                     "policies, ...), not \"just text\""});
  EXPECT_EQ(
      problem_lines(std::string(kPolicies) + "---\n" + std::string(kPolicies)),
      std::vector<std::string>{"t.yaml:5: only one YAML document is allowed (remove the `---`)"});
  EXPECT_EQ(problem_lines("? [a, b]\n: 1\n" + std::string(kPolicies)),
            std::vector<std::string>{"t.yaml:1: field names must be plain words, not a list"});
}

TEST(configFile, UnreadableFiles) {
  auto missing = config_file_problems("/nonexistent/floodgate.yaml");
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].to_string(),
            "/nonexistent/floodgate.yaml: cannot open: No such file or directory");
  auto c = load_config_file("/nonexistent/floodgate.yaml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);

  auto dir = config_file_problems(source_path("tests/configs"));
  ASSERT_EQ(dir.size(), 1u);
  EXPECT_NE(dir[0].message.find("cannot read"), std::string::npos) << dir[0].message;
}

TEST(configFile, ProblemFormatting) {
  EXPECT_EQ((Problem{"f.yaml", 12, "policies[1].period", "bad"}).to_string(),
            "f.yaml:12: policies[1].period: bad");
  EXPECT_EQ((Problem{"f.yaml", 3, "", "invalid YAML: x"}).to_string(), "f.yaml:3: invalid YAML: x");
  EXPECT_EQ((Problem{"f.yaml", 0, "", "cannot open: x"}).to_string(), "f.yaml: cannot open: x");
}

// --- hostile input: never a crash, never an exception, always problems or a config ---

TEST(configHostile, DeepNesting) {
  for (const char* open : {"[", "{", "{a: ", "- "}) {
    std::string yaml = "policies: ";
    for (int i = 0; i < 100000; ++i) yaml += open;
    EXPECT_FALSE(config_problems(yaml, "t.yaml").empty()) << open;
  }
  std::string indented = "policies:\n";
  for (int i = 0; i < 5000; ++i) indented += std::string(i, ' ') + "- \n";
  EXPECT_FALSE(config_problems(indented, "t.yaml").empty());
}

TEST(configHostile, SelfReferencingAliases) {
  EXPECT_FALSE(config_problems("policies: &a [*a]\n", "t.yaml").empty());
  EXPECT_FALSE(config_problems("identity: &a [*a]\n" + std::string(kPolicies), "t.yaml").empty());
  EXPECT_FALSE(config_problems("&a {policies: *a}\n", "t.yaml").empty());
  EXPECT_FALSE(
      config_problems("policies:\n  - &p {name: a, limit: 1, period: 1s, match: *p}\n", "t.yaml")
          .empty());
}

TEST(configHostile, ManyProblemsAreCapped) {
  std::string yaml = "trusted_proxies:\n";
  for (int i = 0; i < 10000; ++i) yaml += "  - bad" + std::to_string(i) + "\n";
  yaml += kPolicies;
  const auto problems = config_problems(yaml, "t.yaml");
  ASSERT_EQ(problems.size(), kMaxProblems + 1);
  EXPECT_EQ(problems.back().message, "too many problems; stopped after 100");
}

TEST(configHostile, BinaryBytesAndHugeValues) {
  using namespace std::string_literals;
  const std::string nul_and_binary = "listen: \"a\0b\"\nthreads: \xff\xfe\n"s;
  EXPECT_FALSE(config_problems(nul_and_binary, "t.yaml").empty());
  EXPECT_FALSE(config_problems(std::string(1000, '\0'), "t.yaml").empty());
  EXPECT_FALSE(config_problems("limit: " + std::string(100000, '9'), "t.yaml").empty());
  EXPECT_FALSE(config_problems("policies:\n  - name: " + std::string(100000, 'x') +
                                   "\n    limit: 1\n    period: " + std::string(5000, '9') + "d\n",
                               "t.yaml")
                   .empty());
  const auto binary_key =
      config_problems(std::string("\x01\x02\xc3: 1\n") + std::string(kPolicies), "t.yaml");
  ASSERT_EQ(binary_key.size(), 1u);
  EXPECT_EQ(binary_key[0].to_string(), "t.yaml:1: \"\\x01\\x02\\xc3\": unknown field");
}

TEST(configHostile, RandomBytes) {
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string text(rng() % 200, '\0');
    for (char& c : text) c = static_cast<char>(rng());
    const auto problems = config_problems(text, "t.yaml");
    EXPECT_FALSE(problems.empty());
  }
}

TEST(configHostile, MutatedValidFiles) {
  // Flip, insert and delete bytes of valid files: each result parses or lists problems.
  const std::string base = std::string(
      "listen: 127.0.0.1:8080\nstore: redis://u:p@h:1/2\nstore_timeout: 20ms\n"
      "trusted_proxies: [127.0.0.1/32, 'fd00::/8']\nupstream: http://h:1\n"
      "cors: {allow_origins: [https://a.b]}\n"
      "identity: [{header: X-K}, {ip: {ipv6_prefix: 48}}]\n"
      "policies:\n  - name: a\n    match: {path_prefix: /api/, method: [GET], "
      "header: {name: X, value: y}}\n    algorithm: gcra\n    limit: 10\n"
      "    period: 1s\n    burst: 20\n    cost: 1\n    shadow: false\n");
  ASSERT_TRUE(config_problems(base, "t.yaml").empty());
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]:,-&*!|>'\"#%@` \n\t0123456789abc/.";
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
      const std::size_t at = rng() % text.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          text.erase(at, 1);
          break;
      }
    }
    auto c = parse_config(text, "t.yaml");
    if (c) {
      for (const PolicyConfig& pc : c->policies) EXPECT_TRUE(validate_policy(pc.policy)) << text;
    } else {
      EXPECT_FALSE(c.error().message.empty());
    }
  }
}

TEST(Config, ReloadKeepsTheRestartOnlyFields) {
  EXPECT_EQ(restart_only_fields(),
            (std::vector<std::string_view>{"listen", "admin_listen", "threads", "store",
                                           "store_timeout", "key_prefix", "key_secret", "memory"}));
  const Config running = default_config();
  Config same = running;
  EXPECT_TRUE(keep_restart_only_fields(running, same).empty());

  Config next = running;
  next.listen.port = 9090;
  next.admin_listen = HostPort{"127.0.0.1", 9091};
  next.threads = running.threads + 1;
  next.store.kind = StoreKind::kRedis;
  next.store.hosts = {HostPort{"127.0.0.1", 6379}};
  next.store_timeout = milliseconds(50);
  next.key_prefix = "other";
  next.key_secret = "0123456789abcdef";
  next.memory.max_keys = 10;
  next.access_log = true;  // reloadable: applied
  next.policies[0].policy.limit = 7;
  EXPECT_EQ(keep_restart_only_fields(running, next),
            (std::vector<std::string>{"listen", "admin_listen", "threads", "store", "store_timeout",
                                      "key_prefix", "key_secret", "memory"}));
  EXPECT_EQ(next.listen, running.listen);
  EXPECT_EQ(next.admin_listen, running.admin_listen);
  EXPECT_EQ(next.threads, running.threads);
  EXPECT_EQ(next.store, running.store);
  EXPECT_EQ(next.store_timeout, running.store_timeout);
  EXPECT_EQ(next.key_prefix, running.key_prefix);
  EXPECT_EQ(next.key_secret, running.key_secret);
  EXPECT_EQ(next.memory, running.memory);
  EXPECT_TRUE(next.access_log);
  EXPECT_EQ(next.policies[0].policy.limit, 7);

  Config one = running;
  one.key_secret = "fedcba9876543210";
  EXPECT_EQ(keep_restart_only_fields(running, one), std::vector<std::string>{"key_secret"});
  EXPECT_EQ(one.key_secret, running.key_secret);
}

}  // namespace
TEST(configFile, PolicyIdentityCheckApiAndAccessLogRedaction) {
  auto c = parse_config(
      "identity: [{header: X-API-Key}, {ip: {}}]\n"
      "check_api: {limit: 30, period: 1m}\n"
      "access_log: {enabled: true, redact: [sig, Token]}\n"
      "policies:\n"
      "  - {name: per-key, limit: 100, period: 1m}\n"
      "  - {name: per-ip, limit: 1000, period: 1m, identity: [{ip: {ipv4_prefix: 24}}]}\n",
      "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->policies[0].identity.empty());
  EXPECT_EQ(c->identity_of(c->policies[0]).size(), 2u);  // the global list
  ASSERT_EQ(c->policies[1].identity.size(), 1u);
  EXPECT_EQ(c->identity_of(c->policies[1]).front().ipv4_prefix, 24);
  EXPECT_TRUE(c->check_api);
  EXPECT_EQ(c->check_api_policy.limit, 30);
  EXPECT_EQ(c->check_api_policy.burst, 30);
  EXPECT_EQ(c->check_api_policy.period, minutes(1));
  EXPECT_EQ(c->check_api_policy.name, "floodgate/check-api");
  EXPECT_TRUE(c->access_log);
  EXPECT_EQ(c->access_log_redact, (std::vector<std::string>{"sig", "Token"}));

  auto off = parse_config("check_api: false\naccess_log: true\n" + std::string(kPolicies), "t");
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->check_api);
  EXPECT_EQ(off->access_log_redact, default_access_log_redact());  // the defaults
  EXPECT_NE(std::find(off->access_log_redact.begin(), off->access_log_redact.end(), "api_key"),
            off->access_log_redact.end());

  EXPECT_FALSE(off->dashboard_public);
  auto pub = parse_config("dashboard: {public: true}\n" + std::string(kPolicies), "t");
  ASSERT_TRUE(pub);
  EXPECT_TRUE(pub->dashboard_public);
  EXPECT_EQ(
      problem_lines("dashboard: {public: 3}\n" + std::string(kPolicies)),
      std::vector<std::string>{"t.yaml:1: dashboard.public: must be true or false, not \"3\""});
  EXPECT_EQ(problem_lines("dashboard: {open: true}\n" + std::string(kPolicies)).size(), 1u);

  EXPECT_EQ(problem_lines("check_api: {limit: 0}\n" + std::string(kPolicies)),
            std::vector<std::string>{"t.yaml:1: check_api.limit: must be a positive integer"});
  EXPECT_EQ(problem_lines("policies:\n  - {name: p, limit: 1, period: 1s, identity: []}\n"),
            std::vector<std::string>{
                "t.yaml:2: policies[0].identity: must not be empty (e.g. [{header: X-API-Key}, "
                "{ip: {}}])"});
}

TEST(configFile, MatchPathsMustBeCanonical) {
  for (std::string_view bad :
       {"/api%2F", "/api/../x", "/a//b", "/a\\\\b", "/a;b", "/./a", "/a/.", "/caf\xc3\xa9"}) {
    const auto lines = problem_lines(
        "policies:\n  - {name: p, limit: 1, period: 1s, match: "
        "{path_prefix: \"" +
        std::string(bad) + "\"}}\n");
    ASSERT_EQ(lines.size(), 1u) << bad;
    EXPECT_NE(lines[0].find("is not a path as requests are compared"), std::string::npos) << bad;
  }
  for (std::string_view good : {"/", "/api/", "/api", "/v1/items:batch", "/~u/a-b_c.d"}) {
    EXPECT_TRUE(problem_lines("policies:\n  - {name: p, limit: 1, period: 1s, match: {path: \"" +
                              std::string(good) + "\"}}\n")
                    .empty())
        << good;
  }
}

// A header floodgate reads is spelled one way in the whole file: servers read X_API_Key as
// X-API-Key, and a request spelling a read field otherwise is refused, so two spellings would
// refuse every request carrying either.
TEST(configFile, AHeaderIsSpelledOneWayEverywhere) {
  auto two = parse_config(
      "identity: [{header: X-API-Key}]\n"
      "policies:\n"
      "  - {name: a, match: {path_prefix: /a/, header: {name: X_API_Key}}, limit: 1, period: 1m}\n",
      "t.yaml");
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message.find("header \"X_API_Key\" is \"X-API-Key\""), std::string::npos)
      << two.error().message;
  auto cased = parse_config(
      "identity: [{header: X-API-Key}]\n"
      "policies:\n"
      "  - {name: a, match: {path_prefix: /a/, header: {name: x-api-key}}, limit: 1, period: 1m}\n",
      "t.yaml");
  EXPECT_TRUE(cased) << cased.error().message;
}

// server.max_body_memory bounds the bodies held at once, over every connection: at least
// max_body_bytes, or a body that size could never be read.
TEST(configFile, MaxBodyMemoryIsAtLeastMaxBodyBytes) {
  auto c = parse_config(
      std::string("server:\n  max_body_memory: 1048576\n") + std::string(kPolicies), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.max_body_memory, 1048576u);
  EXPECT_EQ(config::default_config().server.max_body_memory, 256u * 1024 * 1024);
  auto small =
      parse_config(std::string("server:\n  max_body_bytes: 2048\n  max_body_memory: 1024\n") +
                       std::string(kPolicies),
                   "t.yaml");
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("t.yaml:3: server.max_body_memory: must be at least "
                                       "server.max_body_bytes (2048)"),
            std::string::npos)
      << small.error().message;
  // Unset, it follows a larger max_body_bytes.
  auto large = parse_config(
      std::string("server:\n  max_body_bytes: 536870912\n") + std::string(kPolicies), "t.yaml");
  ASSERT_TRUE(large) << large.error().message;
  EXPECT_EQ(large->server.max_body_memory, 536870912u);
}

TEST(configFile, MaxResponseMemoryIsAtLeast64KiB) {
  auto c = parse_config(
      std::string("server:\n  max_response_memory: 65536\n") + std::string(kPolicies), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.max_response_memory, 65536u);
  EXPECT_EQ(config::default_config().server.max_response_memory, 256u * 1024 * 1024);
  auto small = parse_config(
      std::string("server:\n  max_response_memory: 65535\n") + std::string(kPolicies), "t.yaml");
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("t.yaml:2: server.max_response_memory"), std::string::npos)
      << small.error().message;
}

TEST(configFile, UpstreamHoldTimeoutIsAtLeastUpstreamTimeout) {
  auto c = parse_config(
      std::string("upstream_timeout: 5s\nupstream_hold_timeout: 1m\n") + std::string(kPolicies),
      "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->upstream_hold_timeout, std::chrono::minutes(1));
  EXPECT_EQ(config::default_config().upstream_hold_timeout, std::chrono::minutes(10));
  auto small = parse_config(
      std::string("upstream_timeout: 5s\nupstream_hold_timeout: 2s\n") + std::string(kPolicies),
      "t.yaml");
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find(
                "t.yaml:2: upstream_hold_timeout: must be at least upstream_timeout (5s)"),
            std::string::npos)
      << small.error().message;
  // Unset, it follows a larger upstream_timeout.
  auto large =
      parse_config(std::string("upstream_timeout: 30m\n") + std::string(kPolicies), "t.yaml");
  ASSERT_TRUE(large) << large.error().message;
  EXPECT_EQ(large->upstream_hold_timeout, std::chrono::minutes(30));
}

TEST(configFile, ServerLimitsAccessLogAndUpstreamTimeout) {
  auto c = parse_config(std::string("server:\n"
                                    "  max_connections: 50\n"
                                    "  max_header_bytes: 4096\n"
                                    "  max_body_bytes: 0\n"
                                    "  header_timeout: 2s\n"
                                    "  body_timeout: 3s\n"
                                    "  idle_timeout: 5m\n"
                                    "  write_timeout: 4s\n"
                                    "  drain_delay: 0s\n"
                                    "  drain_timeout: 9s\n"
                                    "access_log: true\n"
                                    "upstream: http://127.0.0.1:3000\n"
                                    "upstream_timeout: 1500ms\n") +
                            std::string(kPolicies),
                        "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.max_connections, 50);
  EXPECT_EQ(c->server.max_header_bytes, 4096u);
  EXPECT_EQ(c->server.max_body_bytes, 0u);
  EXPECT_EQ(c->server.header_timeout, seconds(2));
  EXPECT_EQ(c->server.body_timeout, seconds(3));
  EXPECT_EQ(c->server.idle_timeout, minutes(5));
  EXPECT_EQ(c->server.write_timeout, seconds(4));
  EXPECT_EQ(c->server.drain_delay, seconds(0));
  EXPECT_EQ(c->server.drain_timeout, seconds(9));
  EXPECT_TRUE(c->access_log);
  EXPECT_EQ(c->upstream_timeout, milliseconds(1500));

  auto d = parse_config(std::string(kPolicies), "t.yaml");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->server, ServerLimits{});
  EXPECT_FALSE(d->access_log);
  EXPECT_EQ(d->upstream_timeout, seconds(30));

  EXPECT_EQ(problem_lines("server:\n  max_connections: 0\n  idle_timeout: 0s\n"
                          "  drain_delay: 2h\n  max_header_bytes: 10\n  linger: 1s\n"
                          "access_log: yes\n" +
                          std::string(kPolicies)),
            (std::vector<std::string>{
                "t.yaml:2: server.max_connections: must be a positive integer",
                "t.yaml:3: server.idle_timeout: must be positive",
                "t.yaml:4: server.drain_delay: must be at most 1h",
                "t.yaml:5: server.max_header_bytes: must be an integer from 1024 to 1048576",
                "t.yaml:6: server.linger: unknown field",
                R"(t.yaml:7: access_log: must be true or false, not "yes")",
            }));
}

// rate_limit_headers: the listener's form, admin_listen's over it, a policy's over both.
TEST(configRateLimitHeaders, DefaultIsDraft8AndLegacy) {
  auto c = parse_config(kPolicies, "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->rate_limit_headers, (HeaderStyle{RateLimitStandard::kDraft8, true}));
  EXPECT_TRUE(c->admin_rate_limit_headers.empty());
  EXPECT_TRUE(c->policies[0].rate_limit_headers.empty());
  EXPECT_EQ(header_style(*c, false, 0), HeaderStyle{});
  EXPECT_EQ(default_config().rate_limit_headers, HeaderStyle{});
}

TEST(configRateLimitHeaders, PolicyOverListenerOverDefaultPartByPart) {
  const std::string yaml =
      "listen: 127.0.0.1:8080\n"
      "admin_listen: 127.0.0.1:9090\n"
      "rate_limit_headers: {standard: draft-7}\n"
      "admin_rate_limit_headers: {legacy: false}\n"
      "policies:\n"
      "  - {name: a, limit: 1, period: 1s, rate_limit_headers: {standard: draft-6}}\n"
      "  - {name: b, limit: 1, period: 1s, rate_limit_headers: {legacy: false}}\n"
      "  - {name: c, limit: 1, period: 1s, rate_limit_headers: {standard: none, legacy: true}}\n"
      "  - {name: d, limit: 1, period: 1s}\n";
  auto c = parse_config(yaml, "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  using S = RateLimitStandard;
  EXPECT_EQ(c->rate_limit_headers, (HeaderStyle{S::kDraft7, true}));
  EXPECT_EQ(header_style(*c, false, 0), (HeaderStyle{S::kDraft6, true}));
  EXPECT_EQ(header_style(*c, false, 1), (HeaderStyle{S::kDraft7, false}));
  EXPECT_EQ(header_style(*c, false, 2), (HeaderStyle{S::kNone, true}));
  EXPECT_EQ(header_style(*c, false, 3), (HeaderStyle{S::kDraft7, true}));
  EXPECT_EQ(header_style(*c, false, 99), (HeaderStyle{S::kDraft7, true}));  // the check API's
  EXPECT_EQ(header_style(*c, true, 0), (HeaderStyle{S::kDraft6, false}));
  EXPECT_EQ(header_style(*c, true, 2), (HeaderStyle{S::kNone, true}));
  EXPECT_EQ(header_style(*c, true, 3), (HeaderStyle{S::kDraft7, false}));
}

TEST(configRateLimitHeaders, EveryValueRoundTrips) {
  for (RateLimitStandard s : {RateLimitStandard::kDraft8, RateLimitStandard::kDraft7,
                              RateLimitStandard::kDraft6, RateLimitStandard::kNone}) {
    EXPECT_EQ(parse_rate_limit_standard(to_string(s)), s);
  }
  EXPECT_EQ(parse_rate_limit_standard("Draft-8"), std::nullopt);
  EXPECT_EQ(parse_rate_limit_standard("ietf"), std::nullopt);
}

TEST(configRateLimitHeaders, ProblemsNameTheFieldAndLine) {
  EXPECT_EQ(problem_lines("rate_limit_headers: {standard: draft-9}\n" + std::string(kPolicies)),
            std::vector<std::string>{
                R"(t.yaml:1: rate_limit_headers.standard: "draft-9" is not one of draft-8, )"
                R"(draft-7, draft-6, none)"});
  EXPECT_EQ(problem_lines("rate_limit_headers: draft-7\n" + std::string(kPolicies)),
            std::vector<std::string>{
                R"(t.yaml:1: rate_limit_headers: must be {standard: draft-8|draft-7|draft-6|none, )"
                R"(legacy: true|false}, not "draft-7")"});
  EXPECT_EQ(problem_lines("rate_limit_headers: {legacy: no}\n" + std::string(kPolicies)),
            std::vector<std::string>{
                R"(t.yaml:1: rate_limit_headers.legacy: must be true or false, not "no")"});
  EXPECT_EQ(problem_lines("rate_limit_headers: {standrd: draft-7}\n" + std::string(kPolicies)),
            std::vector<std::string>{"t.yaml:1: rate_limit_headers.standrd: unknown field (did "
                                     "you mean standard?)"});
  EXPECT_EQ(problem_lines("admin_rate_limit_headers: {legacy: false}\n" + std::string(kPolicies)),
            std::vector<std::string>{"t.yaml:1: admin_rate_limit_headers: only with admin_listen "
                                     "(the fields of listen are rate_limit_headers)"});
  EXPECT_EQ(problem_lines("\n" + std::string(kPolicies) +
                          "    rate_limit_headers:\n"    // 6
                          "      standard: draft-5\n"),  // 7
            std::vector<std::string>{R"(t.yaml:7: policies[0].rate_limit_headers.standard: )"
                                     R"("draft-5" is not one of draft-8, draft-7, draft-6, none)"});
}

}  // namespace fg::config
