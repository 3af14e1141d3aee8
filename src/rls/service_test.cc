// service_test.cc — the mapping at fixed times over the memory store: figures of the statuses
// (limit_remaining, duration_until_reset), windows aligned to the epoch, the per-rule counters
// with the near-limit arithmetic, and the headers. The black-box tests over gRPC are tests/rls.
#include "rls/service.h"

#include <gtest/gtest.h>

#include <map>

#include "rls/settings.h"

namespace fg::rls {
namespace {

namespace pb = envoy::service::ratelimit::v3;

struct World {
  // 1,800,000,020 s since the epoch is 20 s into a minute (1,800,000,000 is a multiple of 60).
  ManualClock clock{from_us(1'800'000'020'000'000)};
  Settings settings;
  std::unique_ptr<decide::Decider> decider;
  std::unique_ptr<Service> service;

  explicit World(const std::string& yaml, const std::function<void(Settings&)>& tweak = {},
                 std::shared_ptr<Store> store = nullptr) {
    decide::DeciderOptions o;
    o.store = store ? std::move(store) : std::shared_ptr<Store>(make_memory_store({}, clock));
    o.clock = &clock;
    decider = std::make_unique<decide::Decider>(std::move(o));
    settings.response_headers_enabled = true;
    if (tweak) tweak(settings);
    service = std::make_unique<Service>(settings, *decider, clock);
    auto tree = config::envoy::load_descriptor_config(
        std::vector<config::envoy::ConfigFile>{{"config.test", yaml}}, {});
    EXPECT_TRUE(tree) << tree.error().message;
    auto snap = std::make_shared<Snapshot>();
    snap->tree = std::move(*tree);
    config::Config cfg = config::default_config();
    cfg.deny_cache.enabled = false;
    snap->rules = decide::make_rules(std::make_shared<const config::Config>(std::move(cfg)));
    service->set_config(std::move(snap));
  }

  Result<void> try_ask(const std::string& key, const std::string& value, pb::RateLimitResponse& res,
                       int hits = 0) {
    pb::RateLimitRequest req;
    req.set_domain("d");
    req.set_hits_addend(static_cast<std::uint32_t>(hits));
    auto* e = req.add_descriptors()->add_entries();
    e->set_key(key);
    e->set_value(value);
    return service->should_rate_limit(req, res);
  }

  pb::RateLimitResponse ask(const std::string& key, const std::string& value, int hits = 0) {
    pb::RateLimitResponse res;
    EXPECT_TRUE(try_ask(key, value, res, hits));
    return res;
  }
};

constexpr const char* kFivePerMinute =
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5}\n";

TEST(RlsService, FiguresAndWindowAlignedToTheEpoch) {
  World w(kFivePerMinute);
  for (int i = 4; i >= 0; --i) {
    const auto r = w.ask("k", "a");
    ASSERT_EQ(r.overall_code(), pb::RateLimitResponse::OK);
    EXPECT_EQ(r.statuses(0).limit_remaining(), static_cast<std::uint32_t>(i));
    EXPECT_EQ(r.statuses(0).duration_until_reset().seconds(), 40);  // 60 - 20
    EXPECT_EQ(r.statuses(0).current_limit().requests_per_unit(), 5u);
    EXPECT_EQ(r.statuses(0).current_limit().unit(), pb::RateLimitResponse::RateLimit::MINUTE);
  }
  auto r = w.ask("k", "a");
  EXPECT_EQ(r.overall_code(), pb::RateLimitResponse::OVER_LIMIT);
  EXPECT_EQ(r.statuses(0).limit_remaining(), 0u);
  ASSERT_EQ(r.response_headers_to_add_size(), 3);
  EXPECT_EQ(r.response_headers_to_add(0).key(), "RateLimit-Limit");
  EXPECT_EQ(r.response_headers_to_add(0).value(), "5");
  EXPECT_EQ(r.response_headers_to_add(1).value(), "0");
  EXPECT_EQ(r.response_headers_to_add(2).value(), "40");
  // Another value of the same key is another counter.
  EXPECT_EQ(w.ask("k", "b").overall_code(), pb::RateLimitResponse::OK);
  // The next minute starts at the epoch-aligned boundary, 40 s later, not 60 s after the first.
  w.clock.advance(std::chrono::seconds(40));
  r = w.ask("k", "a");
  EXPECT_EQ(r.overall_code(), pb::RateLimitResponse::OK);
  EXPECT_EQ(r.statuses(0).limit_remaining(), 4u);
  EXPECT_EQ(r.statuses(0).duration_until_reset().seconds(), 60);
}

// LOCAL_CACHE_SIZE_IN_BYTES bounds the bytes the local cache holds, whatever the keys' length
// (a descriptor value comes from a request header, which a client chooses): 300 over-limit keys
// of over 1 KiB each against 8 KiB. Asked again, at most 8 KiB of them are answered from the
// cache (7: each counts its key and kEntryOverhead); the others are asked of the store again.
TEST(RlsService, TheLocalCacheHoldsAtMostItsBytes) {
  World w(kFivePerMinute, [](Settings& s) { s.local_cache_size_in_bytes = 8192; });
  const auto value = [](int i) { return std::string(1024, 'v') + std::to_string(i); };
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(w.ask("k", value(i), 6).overall_code(), pb::RateLimitResponse::OVER_LIMIT);
    ASSERT_LE(w.service->local_cache_bytes(), 8192u) << i;
  }
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(w.ask("k", value(i)).overall_code(), pb::RateLimitResponse::OVER_LIMIT);
  }
  const std::string m = w.service->metrics().prometheus();
  const std::string name =
      "ratelimit_service_rate_limit_over_limit_with_local_cache{domain=\"d\",rule=\"k\"} ";
  const std::size_t at = m.find(name);
  ASSERT_NE(at, std::string::npos) << m;
  const long cached = std::stol(m.substr(at + name.size()));
  EXPECT_GE(cached, 1);
  EXPECT_LE(cached, 8192 / (1024 + 128)) << m;
}

TEST(RlsService, PerRuleCountersAsUpstreamCountsThem) {
  World w(kFivePerMinute);  // near limit: floor(5 * 0.8) = 4
  w.ask("k", "a", 3);       // 0 -> 3: within 3
  w.ask("k", "a", 2);       // 3 -> 5: within 2, near 1 (the 5th)
  w.ask("k", "a", 2);       // 5 + 2 > 5: over 2
  const std::string m = w.service->metrics().prometheus();
  EXPECT_NE(m.find("ratelimit_service_rate_limit_total_hits{domain=\"d\",rule=\"k\"} 7"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("ratelimit_service_rate_limit_within_limit{domain=\"d\",rule=\"k\"} 5"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("ratelimit_service_rate_limit_near_limit{domain=\"d\",rule=\"k\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("ratelimit_service_rate_limit_over_limit{domain=\"d\",rule=\"k\"} 2"),
            std::string::npos)
      << m;
}

TEST(RlsService, RefusesWhatUpstreamRefuses) {
  World w(kFivePerMinute);
  pb::RateLimitRequest req;
  pb::RateLimitResponse res;
  EXPECT_FALSE(w.service->should_rate_limit(req, res));
  req.set_domain("d");
  auto r = w.service->should_rate_limit(req, res);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "rate limit descriptor list must not be empty");
}

// A store whose counters never answer (a Redis that is down), counting the calls that reach it.
class DownStore final : public Store {
 public:
  void decide(const DecideRequest&, DecideCallback done) override {
    done(fail(ErrorCode::kUnavailable, "down"));
  }
  void refund(const RefundRequest&, RefundCallback done) override {
    done(fail(ErrorCode::kUnavailable, "down"));
  }
  void count(std::span<const CountRequest>, CountCallback done) override {
    ++calls;
    done(fail(ErrorCode::kUnavailable, "down"));
  }
  std::string_view kind() const override { return "down"; }
  int calls = 0;
};

TEST(RlsService, CountersThatCannotBeCountedAreAnsweredByOnStoreError) {
  using E = Settings::OnStoreError;
  for (const E mode : {E::kAllow, E::kDeny, E::kError}) {
    auto store = std::make_shared<DownStore>();
    World w(
        kFivePerMinute, [mode](Settings& s) { s.on_store_error = mode; }, store);
    pb::RateLimitResponse r;
    const Result<void> asked = w.try_ask("k", "a", r);
    if (mode == E::kError) {  // as upstream: the call fails, Envoy's failure_mode_deny decides
      ASSERT_FALSE(asked);
      EXPECT_EQ(asked.error().code, ErrorCode::kUnavailable);
      continue;
    }
    ASSERT_TRUE(asked);
    EXPECT_EQ(r.overall_code(),
              mode == E::kAllow ? pb::RateLimitResponse::OK : pb::RateLimitResponse::OVER_LIMIT);
    EXPECT_NE(w.service->metrics().prometheus().find(
                  "ratelimit_service_should_rate_limit_error{err_type=\"redis_error\"} 1"),
              std::string::npos);
  }
}

TEST(RlsService, TheBreakerStopsAskingAStoreThatKeepsFailing) {
  auto store = std::make_shared<DownStore>();
  World w(kFivePerMinute, {}, store);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(w.ask("k", "a").overall_code(), pb::RateLimitResponse::OK);
  // Five failures open the circuit (CircuitBreakerOptions' default); the clock stands still, so
  // no probe is due: the other fifteen were answered without the store.
  EXPECT_EQ(store->calls, 5);
  w.clock.advance(std::chrono::milliseconds(500));
  w.ask("k", "a");  // the probe
  EXPECT_EQ(store->calls, 6);
}

TEST(RlsService, CounterCountsPastTheLimitAsUpstream) {
  World w(kFivePerMinute);
  for (int i = 0; i < 3; ++i) w.ask("k", "c");
  EXPECT_EQ(w.ask("k", "c", 3).overall_code(), pb::RateLimitResponse::OVER_LIMIT);  // 6 of 5
  EXPECT_EQ(w.ask("k", "c", 2).overall_code(), pb::RateLimitResponse::OVER_LIMIT);  // 8 of 5
  // The next window starts afresh (the key holds its window).
  w.clock.advance(std::chrono::seconds(40));
  const auto r = w.ask("k", "c");
  EXPECT_EQ(r.overall_code(), pb::RateLimitResponse::OK);
  EXPECT_EQ(r.statuses(0).limit_remaining(), 4u);
}

// REDIS_TYPE / REDIS_TLS / REDIS_AUTH as upstream reads them, into floodgate's store URL.
TEST(RlsSettings, RedisTypeAndTlsNameTheStoreUrl) {
  auto url_for = [](std::map<std::string, std::string, std::less<>> vars) {
    vars.emplace("REDIS_SOCKET_TYPE", "tcp");
    auto s = settings_from_env([&vars](std::string_view name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    });
    EXPECT_TRUE(s) << s.error().to_string();
    auto url = s->store_url();
    return url ? *url : "error: " + url.error().message;
  };
  EXPECT_EQ(url_for({{"REDIS_TYPE", "single"}, {"REDIS_URL", "r:6379"}}), "redis://r:6379");
  EXPECT_EQ(url_for({{"REDIS_TYPE", "single"}, {"REDIS_URL", "r:6379"}, {"REDIS_TLS", "true"}}),
            "rediss://r:6379");
  EXPECT_EQ(url_for({{"REDIS_TYPE", "cluster"}, {"REDIS_URL", "a:7001,b:7002"}}),
            "redis-cluster://a:7001,b:7002");
  EXPECT_EQ(url_for({{"REDIS_TYPE", "cluster"},
                     {"REDIS_URL", "a:7001,b:7002"},
                     {"REDIS_TLS", "true"},
                     {"REDIS_AUTH", "fg:pw"}}),
            "rediss-cluster://fg:pw@a:7001,b:7002");
  EXPECT_EQ(url_for({{"REDIS_URL", "rediss-cluster://a:7001?ca=/ca.pem"}}),
            "rediss-cluster://a:7001?ca=/ca.pem");
}

}  // namespace
}  // namespace fg::rls
