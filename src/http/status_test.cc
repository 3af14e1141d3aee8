// GET /v1/status's document: rates from two samples, the latency quantiles, the history ring,
// the fleet merged from published records, the last decision's fields.
#include "http/status.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace fg::http {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

const Timestamp kT0 = from_us(1'800'000'000'000'000);

std::shared_ptr<decide::Rules> rules_with_ids(decide::Metrics& m) {
  auto c = config::parse_config(
      "policies:\n  - {name: per-minute, limit: 100, period: 1m}\n"
      "  - {name: probe, limit: 5, period: 1s, shadow: true}\n",
      "t");
  EXPECT_TRUE(c);
  auto r = decide::make_rules(std::make_shared<const config::Config>(std::move(*c)));
  r->metric_ids = {m.policy_id("per-minute"), m.policy_id("probe")};
  return r;
}

InstanceInfo info() {
  return InstanceInfo{"127.0.0.1:8081", "127.0.0.1:9091", "1.2.3", "memory", 2, kT0};
}

TEST(HistogramQuantile, InterpolatesInsideTheBucket) {
  std::array<std::uint64_t, decide::kStoreLatencyBuckets.size() + 1> b{};
  EXPECT_FALSE(histogram_quantile_ms(b, 0.5));
  b[1] = 10;  // (100 µs, 250 µs]
  EXPECT_DOUBLE_EQ(*histogram_quantile_ms(b, 0.5), 0.175);
  b[0] = 10;  // [0, 100 µs]: p50 is the 10th of 20, the top of the first bucket
  EXPECT_DOUBLE_EQ(*histogram_quantile_ms(b, 0.5), 0.1);
  EXPECT_DOUBLE_EQ(*histogram_quantile_ms(b, 0.99), 0.247);  // rank 19.8: 98% into (100, 250]
  b.back() = 1000;                                           // +Inf: the last bound
  EXPECT_DOUBLE_EQ(*histogram_quantile_ms(b, 0.99), 1000.0);
}

TEST(StatusBoard, RatesArePerSecondBetweenSamples) {
  decide::Metrics m(2);
  auto rules = rules_with_ids(m);
  StatusBoard board(info());
  board.sample(kT0 + seconds(10), m.totals(), *rules, {}, {});
  for (int i = 0; i < 30; ++i) m.shard(0).on_request(200);
  for (int i = 0; i < 10; ++i) m.shard(1).on_request(429);
  for (int i = 0; i < 30; ++i)
    m.shard(0).on_decision(rules->metric_ids[0], decide::PolicyOutcome::kAllowed);
  for (int i = 0; i < 10; ++i)
    m.shard(1).on_decision(rules->metric_ids[0], decide::PolicyOutcome::kDenied);
  for (int i = 0; i < 4; ++i)
    m.shard(1).on_decision(rules->metric_ids[1], decide::PolicyOutcome::kShadowDenied);
  for (int i = 0; i < 10; ++i)
    m.shard(0).on_store(decide::StoreResult::kOk, std::chrono::microseconds(200));
  board.sample(kT0 + seconds(12), m.totals(), *rules,
               InstanceFlags{true, false, true, {"127.0.0.1:7002"}},
               {{"key:x-api-key:sha256=0123456789ab", 10, 0}});

  const json doc = json::parse(board.render(kT0 + seconds(12), nullptr, std::nullopt));
  const json& inst = doc["instance"];
  EXPECT_EQ(inst["id"], "127.0.0.1:8081");
  EXPECT_EQ(inst["address"], "127.0.0.1:9091");
  EXPECT_EQ(inst["uptime_s"], 12);
  EXPECT_EQ(inst["state"], "ready");
  EXPECT_EQ(inst["circuit"], "open");
  EXPECT_EQ(inst["open_circuits"], json::array({"127.0.0.1:7002"}));
  EXPECT_EQ(inst["threads"], 2);
  EXPECT_DOUBLE_EQ(inst["requests_per_s"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(inst["allowed_per_s"].get<double>(), 15.0);
  EXPECT_DOUBLE_EQ(inst["denied_per_s"].get<double>(), 5.0);
  EXPECT_EQ(inst["responses_per_s"], json::parse(R"({"200":15.0,"429":5.0})"));
  EXPECT_DOUBLE_EQ(inst["store_latency_ms"]["p50"].get<double>(), 0.175);
  ASSERT_EQ(inst["policies"].size(), 2u);
  EXPECT_EQ(inst["policies"][0]["name"], "per-minute");
  EXPECT_EQ(inst["policies"][0]["limit"], 100);
  EXPECT_DOUBLE_EQ(inst["policies"][0]["window_s"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(inst["policies"][0]["allowed_per_s"].get<double>(), 15.0);
  EXPECT_DOUBLE_EQ(inst["policies"][0]["denied_per_s"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(inst["policies"][1]["shadow_denied_per_s"].get<double>(), 2.0);
  EXPECT_EQ(inst["policies"][1]["shadow"], true);
  EXPECT_EQ(doc["history"]["points"], json::parse("[[1800000012, 20.0, 15.0, 5.0, 0.0]]"));
  EXPECT_EQ(doc["fleet"]["source"], "local");
  ASSERT_EQ(doc["fleet"]["instances"].size(), 1u);
  EXPECT_EQ(doc["fleet"]["top_denied"][0]["identity"], "key:x-api-key:sha256=0123456789ab");
  EXPECT_EQ(doc["store"]["kind"], "memory");
  EXPECT_TRUE(doc["last_decision"].is_null());
}

TEST(StatusBoard, HistoryIsBounded) {
  decide::Metrics m(1);
  auto rules = rules_with_ids(m);
  StatusBoard board(info());
  for (std::size_t i = 0; i < kHistorySeconds + 20; ++i) {
    board.sample(kT0 + seconds(static_cast<int>(i)), m.totals(), *rules, {}, {});
  }
  const json doc = json::parse(board.render(kT0 + seconds(400), nullptr, std::nullopt));
  EXPECT_EQ(doc["history"]["points"].size(), kHistorySeconds);
  EXPECT_EQ(doc["history"]["points"].back()[0], 1'800'000'000 + kHistorySeconds + 19);
}

TEST(StatusBoard, TheFleetMergesRecordsAndTheirTopDenied) {
  decide::Metrics m(1);
  auto rules = rules_with_ids(m);
  StatusBoard board(info());
  board.sample(kT0, m.totals(), *rules, {}, {{"ip:192.0.2.1", 4, 0}, {"ip:192.0.2.2", 1, 0}});
  FleetView fleet;
  fleet.records = {
      // A stale copy of this instance's own record: the board's fresher one is shown instead.
      R"({"id":"127.0.0.1:8081","requests_per_s":999,"top_denied":[]})",
      R"({"id":"127.0.0.1:8082","requests_per_s":7.5,"denied_per_s":2,
          "top_denied":[{"identity":"ip:192.0.2.2","denials":6,"error":1}]})",
      "not json", R"({"no":"id"})"};
  fleet.store = R"({"kind":"redis-cluster","nodes":[{"address":"127.0.0.1:7000"}]})";
  fleet.read_at = kT0;
  const json doc = json::parse(board.render(kT0 + seconds(1), &fleet, std::nullopt));
  const json& f = doc["fleet"];
  EXPECT_EQ(f["source"], "store");
  EXPECT_EQ(f["read_ms_ago"], 1000);
  ASSERT_EQ(f["instances"].size(), 2u);
  EXPECT_EQ(f["instances"][0]["id"], "127.0.0.1:8081");
  EXPECT_EQ(f["instances"][1]["id"], "127.0.0.1:8082");
  EXPECT_DOUBLE_EQ(f["requests_per_s"].get<double>(), 7.5);
  EXPECT_EQ(f["top_denied"], json::parse(R"([{"identity":"ip:192.0.2.2","denials":7,"error":1},
                                            {"identity":"ip:192.0.2.1","denials":4,"error":0}])"));
  EXPECT_EQ(doc["store"]["nodes"][0]["address"], "127.0.0.1:7000");
}

TEST(StatusBoard, TheLastDecisionAsAClientSawIt) {
  Policy p;
  p.name = "per-minute";
  p.limit = 100;
  p.burst = 100;
  p.period = std::chrono::minutes(1);
  Decision d;
  d.allowed = false;
  d.reason = DenyReason::kOverLimit;
  d.limit = 100;
  d.remaining = 0;
  d.reset_after = seconds(59);
  d.retry_after = std::chrono::milliseconds(600);
  const LastDecisionFields f = last_decision_fields(p, d, kT0);
  const HeaderFields want = {{"X-RateLimit-Limit", "100"},
                             {"X-RateLimit-Remaining", "0"},
                             {"X-RateLimit-Reset", "59"},
                             {"RateLimit-Policy", R"("per-minute";q=100;w=60)"},
                             {"RateLimit", R"("per-minute";r=0;t=59)"},
                             {"Retry-After", "1"}};
  EXPECT_EQ(f.fields, want);
  // In the policy's form (rate_limit_headers), as its clients see them.
  const HeaderFields want_draft6 = {{"RateLimit-Limit", "100"},
                                    {"RateLimit-Remaining", "0"},
                                    {"RateLimit-Reset", "59"},
                                    {"RateLimit-Policy", "100;w=60"},
                                    {"Retry-After", "1"}};
  EXPECT_EQ(last_decision_fields(p, d, kT0, {config::RateLimitStandard::kDraft6, false}).fields,
            want_draft6);
  decide::Metrics m(1);
  auto rules = rules_with_ids(m);
  StatusBoard board(info());
  const json doc = json::parse(board.render(kT0 + seconds(2), nullptr, f));
  EXPECT_EQ(doc["last_decision"]["policy"], "per-minute");
  EXPECT_EQ(doc["last_decision"]["allowed"], false);
  EXPECT_EQ(doc["last_decision"]["age_ms"], 2000);
  EXPECT_EQ(doc["last_decision"]["headers"][5], json::parse(R"(["Retry-After","1"])"));
}

}  // namespace
}  // namespace fg::http
