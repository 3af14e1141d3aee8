// Exact field values and 429 bodies for every case of design §2.3 (docs/headers.md syntax).
#include "http/rate_limit_headers.h"

#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <vector>

#include "test_policy.h"

namespace fg::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

using test::make_policy;

Decision allowed(std::int64_t limit, std::int64_t remaining, Duration reset_after) {
  return Decision{true, DenyReason::kNone, limit, remaining, reset_after, Duration(0)};
}

Decision over_limit(std::int64_t limit, std::int64_t remaining, Duration reset_after,
                    Duration retry_after) {
  return Decision{false, DenyReason::kOverLimit, limit, remaining, reset_after, retry_after};
}

// Verdict as fg::evaluate builds it: allowed unless a non-shadow policy denies, headline chosen by
// fg::most_restrictive.
Verdict verdict_of(std::span<const Charge> charges, std::vector<Decision> decisions) {
  Verdict v;
  v.allowed = true;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (!decisions[i].allowed && !charges[i].policy->shadow) v.allowed = false;
  }
  v.decisions.assign(decisions.begin(), decisions.end());
  v.most_restrictive = most_restrictive(charges, v.decisions);
  return v;
}

const Timestamp kNow = from_us(1'799'971'200'000'000);

TEST(CeilSeconds, RoundsUpAtTheBoundaries) {
  EXPECT_EQ(ceil_seconds(Duration(0)), 0);
  EXPECT_EQ(ceil_seconds(Duration(1)), 1);
  EXPECT_EQ(ceil_seconds(Duration(999'999)), 1);
  EXPECT_EQ(ceil_seconds(Duration(1'000'000)), 1);
  EXPECT_EQ(ceil_seconds(Duration(1'000'001)), 2);
  EXPECT_EQ(ceil_seconds(Duration(3'600'000)), 4);
  EXPECT_EQ(ceil_seconds(Duration(-5)), 0);
  EXPECT_EQ(ceil_seconds(Duration(std::numeric_limits<std::int64_t>::max())), 9'223'372'036'855);
}

TEST(StructuredFields, StringEscapesQuoteAndBackslashOnly) {
  EXPECT_EQ(sf::serialize_string("per-minute"), R"("per-minute")");
  EXPECT_EQ(sf::serialize_string(""), R"("")");
  EXPECT_EQ(sf::serialize_string(R"(a"b\c)"), R"("a\"b\\c")");
  EXPECT_EQ(sf::serialize_string("sp ace~!"), R"("sp ace~!")");
}

TEST(StructuredFields, StringReplacesWhatItCannotHold) {
  EXPECT_EQ(sf::serialize_string("a\nb\tc"), R"("a?b?c")");
  EXPECT_EQ(sf::serialize_string(std::string("x\0y", 3)), R"("x?y")");
  EXPECT_EQ(sf::serialize_string("del\x7f"), R"("del?")");
  EXPECT_EQ(sf::serialize_string("caf\xc3\xa9"), R"("caf??")");
}

TEST(StructuredFields, IntegersAndLists) {
  std::string s;
  sf::append_integer(s, 0);
  s += ' ';
  sf::append_integer(s, -42);
  s += ' ';
  sf::append_integer(s, std::numeric_limits<std::int64_t>::max());
  s += ' ';
  sf::append_integer(s, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(s, "0 -42 999999999999999 -999999999999999");

  EXPECT_EQ(sf::serialize_list({}), "");
  const sf::Item items[] = {{"a", {{"q", 1}, {"w", 60}}}, {"b\"", {}}, {"c", {{"r", 0}}}};
  EXPECT_EQ(sf::serialize_list(items), R"("a";q=1;w=60, "b\"", "c";r=0)");
}

// The list values are written in place, into room reserved for the most they can take: names
// that need escaping (every byte doubled at worst), figures past the sf-integer bound, long names,
// a concurrency policy. They must be what sf::serialize_list writes for the same items, in every
// form, as fields and as strings.
TEST(RateLimitHeaders, ListValuesAreWhatTheStructuredFieldWriterWrites) {
  const std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  const Policy quoted = make_policy(R"(q"u\o"te\")", 7, {.period = milliseconds(1500)});
  const Policy escapes = make_policy(std::string(150, '"') + "\x01" + std::string(150, '\\'), huge,
                                     {.period = seconds(60)});
  const Policy slots =
      make_policy("caf\xc3\xa9", 3, {.algorithm = Algorithm::kConcurrency, .period = seconds(30)});
  const Charge charges[] = {{&quoted, 1}, {&escapes, 1}, {&slots, 1}};
  const Verdict v = verdict_of(
      charges, {allowed(7, 5, Duration(1'400'000)), over_limit(huge, -3, Duration(huge), seconds(2)),
                allowed(3, 1, Duration(0))});
  const sf::Item policy_items[] = {{quoted.name, {{"q", 7}, {"w", 2}}},
                                   {escapes.name, {{"q", huge}, {"w", 60}}}};
  const std::string policy_list =
      sf::serialize_list(policy_items) + R"(, "caf??";q=3;qu="concurrent-requests")";
  const sf::Item rate_items[] = {{quoted.name, {{"r", 5}, {"t", 2}}},
                                 {escapes.name, {{"r", 0}, {"t", ceil_seconds(Duration(huge))}}},
                                 {slots.name, {{"r", 1}}}};
  const std::string rate_list = sf::serialize_list(rate_items);
  EXPECT_EQ(rate_limit_policy_value(charges), policy_list);
  EXPECT_EQ(rate_limit_value(charges, v.decisions), rate_list);
  EXPECT_EQ(unnamed_rate_limit_policy_value(charges),
            "7;w=2, 999999999999999;w=60, 3;w=30");
  EXPECT_EQ(draft7_rate_limit_value(over_limit(huge, -3, Duration(huge), seconds(2))),
            "limit=999999999999999, remaining=0, reset=9223372036855");

  const RateLimitHeaders h = rate_limit_headers(charges, v);
  ASSERT_TRUE(h.denied);
  ASSERT_EQ(h.fields.size(), 6u);
  EXPECT_EQ(h.fields[3], HeaderFields::Field(kRateLimitPolicy, policy_list));
  EXPECT_EQ(h.fields[4], HeaderFields::Field(kRateLimit, rate_list));
  const RateLimitHeaders d7 =
      rate_limit_headers(charges, v, {config::RateLimitStandard::kDraft7, false});
  ASSERT_EQ(d7.fields.size(), 3u);
  EXPECT_EQ(d7.fields[0].second, unnamed_rate_limit_policy_value(charges));
  EXPECT_EQ(d7.fields[1].second, draft7_rate_limit_value(v.headline()));
  const RateLimitHeaders degraded = degraded_rate_limit_headers(charges);
  EXPECT_EQ(degraded.fields[0], HeaderFields::Field(kRateLimitPolicy, policy_list));
  // Each field's line is whole: name, value, CRLF, and nothing reserved is left between them.
  std::string lines;
  for (const auto& [name, value] : h.fields) {
    lines += std::string(name) + ": " + std::string(value) + "\r\n";
  }
  EXPECT_EQ(h.fields.wire(), lines);
}

// The design's example, through the real limiter: 6 requests on 100/min leave 94, and the bucket
// is full again 6 × 0.6 s = 3.6 s later, so t=4.
TEST(RateLimitHeaders, AllowedSinglePolicyThroughTheLimiter) {
  const Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  const Charge charges[] = {{&per_minute, 1}};
  std::vector<std::optional<State>> states(1);
  Evaluation e;
  for (int i = 0; i < 6; ++i) {
    e = evaluate(charges, states, kNow);
    for (const auto& w : e.writes) states[w.index] = w.state;
  }
  ASSERT_TRUE(e.verdict.allowed);

  const RateLimitHeaders h = rate_limit_headers(charges, e.verdict);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "100"},
      {"X-RateLimit-Remaining", "94"},
      {"X-RateLimit-Reset", "4"},
      {"RateLimit-Policy", R"("per-minute";q=100;w=60)"},
      {"RateLimit", R"("per-minute";r=94;t=4)"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_FALSE(h.denied);
  EXPECT_EQ(h.problem_body, "");
}

TEST(RateLimitHeaders, MultiPolicyHeadlineIsTheLeastRemaining) {
  const Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  const Policy per_second = make_policy("per-second", 10, {.period = seconds(1)});
  const Charge charges[] = {{&per_minute, 1}, {&per_second, 1}};
  const Verdict v = verdict_of(
      charges, {allowed(100, 94, Duration(3'600'000)), allowed(10, 9, Duration(100'000))});
  ASSERT_EQ(v.most_restrictive, 1u);

  const RateLimitHeaders h = rate_limit_headers(charges, v);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "10"},
      {"X-RateLimit-Remaining", "9"},
      {"X-RateLimit-Reset", "1"},
      {"RateLimit-Policy", R"("per-minute";q=100;w=60, "per-second";q=10;w=1)"},
      {"RateLimit", R"("per-minute";r=94;t=4, "per-second";r=9;t=1)"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_FALSE(h.denied);
}

TEST(RateLimitHeaders, DeniedAddsRetryAfterAndTheProblemBody) {
  const Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  const Policy per_second = make_policy("per-second", 10, {.period = seconds(1)});
  const Charge charges[] = {{&per_minute, 1}, {&per_second, 1}};
  // per-minute is empty: the next token in 11.2 s, full in 59.4 s. per-second untouched.
  const Verdict v =
      verdict_of(charges, {over_limit(100, 0, Duration(59'400'000), Duration(11'200'000)),
                           allowed(10, 10, Duration(0))});
  ASSERT_FALSE(v.allowed);

  const RateLimitHeaders h = rate_limit_headers(charges, v);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "100"},
      {"X-RateLimit-Remaining", "0"},
      {"X-RateLimit-Reset", "60"},
      {"RateLimit-Policy", R"("per-minute";q=100;w=60, "per-second";q=10;w=1)"},
      {"RateLimit", R"("per-minute";r=0;t=60, "per-second";r=10;t=0)"},
      {"Retry-After", "12"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_TRUE(h.denied);
  EXPECT_EQ(h.problem_body,
            R"({"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",)"
            R"("title":"Too Many Requests","status":429,"policy":"per-minute","retry_after":12,)"
            R"("violated-policies":["per-minute"]})");
}

TEST(RateLimitHeaders, AFullConcurrencyPolicyHasNoWindowAndRetriesInOneSecond) {
  const Policy slots =
      make_policy("in-flight", 4, {.algorithm = Algorithm::kConcurrency, .period = seconds(30)});
  const Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  const Charge charges[] = {{&slots, 1}, {&per_minute, 1}};
  const Verdict v = verdict_of(charges, {over_limit(4, 0, Duration(0), kConcurrencyRetryAfter),
                                         allowed(100, 99, Duration(600'000))});
  ASSERT_FALSE(v.allowed);
  const RateLimitHeaders h = rate_limit_headers(charges, v);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "4"},
      {"X-RateLimit-Remaining", "0"},
      {"X-RateLimit-Reset", "0"},
      {"RateLimit-Policy",
       R"("in-flight";q=4;qu="concurrent-requests", "per-minute";q=100;w=60)"},
      {"RateLimit", R"("in-flight";r=0, "per-minute";r=99;t=1)"},
      {"Retry-After", "1"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_TRUE(h.denied);
}

TEST(RateLimitHeaders, RetryAfterIsAtLeastOneSecond) {
  const Policy per_second = make_policy("per-second", 10, {.period = seconds(1)});
  const Charge charges[] = {{&per_second, 1}};
  for (std::int64_t us : {0, 1, 999'999, 1'000'000}) {
    const Verdict v = verdict_of(charges, {over_limit(10, 0, Duration(100'000), Duration(us))});
    const RateLimitHeaders h = rate_limit_headers(charges, v);
    ASSERT_EQ(h.fields.back().first, "Retry-After");
    EXPECT_EQ(h.fields.back().second, "1") << us;
  }
  const Verdict v = verdict_of(charges, {over_limit(10, 0, Duration(0), Duration(1'000'001))});
  EXPECT_EQ(rate_limit_headers(charges, v).fields.back().second, "2");
}

TEST(RateLimitHeaders, SeveralDenialsHeadlineTheLongestWaitAndListAllButShadow) {
  const Policy a = make_policy("a", 10, {.period = seconds(1)});
  const Policy b = make_policy("b", 100, {.period = seconds(60)});
  const Policy s = make_policy("s", 1, {.period = seconds(10), .shadow = true});
  const Charge charges[] = {{&a, 1}, {&b, 1}, {&s, 1}};
  const Verdict v =
      verdict_of(charges, {over_limit(10, 0, Duration(900'000), Duration(100'000)),
                           over_limit(100, 0, Duration(60'000'000), Duration(600'000)),
                           over_limit(1, 0, Duration(10'000'000), Duration(9'000'000))});
  ASSERT_EQ(v.most_restrictive, 1u);

  const RateLimitHeaders h = rate_limit_headers(charges, v);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "100"},
      {"X-RateLimit-Remaining", "0"},
      {"X-RateLimit-Reset", "60"},
      {"RateLimit-Policy", R"("a";q=10;w=1, "b";q=100;w=60, "s";q=1;w=10)"},
      {"RateLimit", R"("a";r=0;t=1, "b";r=0;t=60, "s";r=0;t=10)"},
      {"Retry-After", "1"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_EQ(h.problem_body,
            R"({"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",)"
            R"("title":"Too Many Requests","status":429,"policy":"b","retry_after":1,)"
            R"("violated-policies":["a","b"]})");
}

// A shadow policy that denies is reported in RateLimit like any matching policy, but causes no
// Retry-After and no 429, and the X-RateLimit-* fields show the enforced policy.
TEST(RateLimitHeaders, ShadowDenialIsReportedButNotEnforced) {
  const Policy shadow = make_policy("strict", 1, {.period = seconds(1), .shadow = true});
  const Policy real = make_policy("per-minute", 100, {.period = seconds(60)});
  const Charge charges[] = {{&shadow, 1}, {&real, 1}};
  const Verdict v = verdict_of(charges, {over_limit(1, 0, Duration(1'000'000), Duration(1'000'000)),
                                         allowed(100, 97, Duration(1'800'000))});
  ASSERT_TRUE(v.allowed);

  const RateLimitHeaders h = rate_limit_headers(charges, v);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "100"},
      {"X-RateLimit-Remaining", "97"},
      {"X-RateLimit-Reset", "2"},
      {"RateLimit-Policy", R"("strict";q=1;w=1, "per-minute";q=100;w=60)"},
      {"RateLimit", R"("strict";r=0;t=1, "per-minute";r=97;t=2)"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_FALSE(h.denied);
  EXPECT_EQ(h.problem_body, "");
}

// cost 150 on a burst of 100 can never pass: the limiter reports retry_after 0; Retry-After is 1
// and the body says why waiting will not help.
TEST(RateLimitHeaders, CostExceedsBurstThroughTheLimiter) {
  const Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  const Charge charges[] = {{&per_minute, 150}};
  const std::vector<std::optional<State>> states(1);
  const Evaluation e = evaluate(charges, states, kNow);
  ASSERT_FALSE(e.verdict.allowed);
  ASSERT_EQ(e.verdict.headline().reason, DenyReason::kCostExceedsBurst);

  const RateLimitHeaders h = rate_limit_headers(charges, e.verdict);
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "100"},
      {"X-RateLimit-Remaining", "100"},  // the bucket is full: nothing was taken
      {"X-RateLimit-Reset", "0"},
      {"RateLimit-Policy", R"("per-minute";q=100;w=60)"},
      {"RateLimit", R"("per-minute";r=100;t=0)"},
      {"Retry-After", "1"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_TRUE(h.denied);
  EXPECT_EQ(h.problem_body,
            R"({"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",)"
            R"("title":"Too Many Requests","status":429,)"
            R"("detail":"cost 150 exceeds the capacity 100 of policy per-minute; )"
            R"(this request can never pass","policy":"per-minute","retry_after":1,)"
            R"("violated-policies":["per-minute"]})");
}

TEST(RateLimitHeaders, DegradedSendsOnlyThePolicyAndTheMarker) {
  const Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  const Policy per_second = make_policy("per-second", 10, {.period = seconds(1)});
  const Charge charges[] = {{&per_minute, 1}, {&per_second, 1}};
  const RateLimitHeaders h = degraded_rate_limit_headers(charges);
  const HeaderFields expected = {
      {"RateLimit-Policy", R"("per-minute";q=100;w=60, "per-second";q=10;w=1)"},
      {"X-RateLimit-Degraded", "store-unavailable"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_FALSE(h.denied);
  EXPECT_EQ(h.problem_body, "");
}

TEST(RateLimitHeaders, PolicyQuotaIsCapacityAndWindowIsWholeSecondsRoundedUp) {
  Policy bucket = make_policy("bucket", 100, {.period = seconds(60)});
  bucket.burst = 20;
  Policy window = make_policy("window", 100, {.period = milliseconds(1500)});
  window.algorithm = Algorithm::kSlidingWindow;
  window.burst = 20;  // ignored by windows: capacity is the limit
  const Policy fast = make_policy("fast", 5, {.period = milliseconds(250)});
  const Policy daily = make_policy("daily", 1000, {.period = std::chrono::hours(24)});
  const Charge charges[] = {{&bucket, 1}, {&window, 1}, {&fast, 1}, {&daily, 1}};
  EXPECT_EQ(rate_limit_policy_value(charges),
            R"("bucket";q=20;w=60, "window";q=100;w=2, "fast";q=5;w=1, "daily";q=1000;w=86400)");
}

TEST(RateLimitHeaders, NoChargesNoFields) {
  const Verdict v;
  EXPECT_TRUE(rate_limit_headers({}, v).fields.empty());
  EXPECT_TRUE(degraded_rate_limit_headers({}).fields.empty());
}

TEST(RateLimitHeaders, ExposeHeadersNamesEveryFieldWeSend) {
  const Policy p = make_policy("p", 1, {.period = seconds(1)});
  const Charge charges[] = {{&p, 1}};
  const Verdict v = verdict_of(charges, {over_limit(1, 0, Duration(1), Duration(1))});
  HeaderFields all = rate_limit_headers(charges, v).fields;
  for (const auto& f : degraded_rate_limit_headers(charges).fields) all.push_back(f);
  for (const auto& [name, value] : all) {
    const std::string needle(name);
    bool found = false;
    std::string_view rest = kExposeHeaders;
    while (!rest.empty()) {
      const auto comma = rest.find(", ");
      const std::string_view item = rest.substr(0, comma);
      found = found || item == needle;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 2);
    }
    EXPECT_TRUE(found) << name;
  }
}

// The other forms (config rate_limit_headers), over the same two-policy verdicts as above.
using config::HeaderStyle;
using config::RateLimitStandard;

struct TwoPolicies {
  Policy per_minute = make_policy("per-minute", 100, {.period = seconds(60)});
  Policy per_second = make_policy("per-second", 10, {.period = seconds(1)});
  Charge charges[2] = {{&per_minute, 1}, {&per_second, 1}};
  Verdict allowed_verdict() const {
    return verdict_of(charges,
                      {allowed(100, 94, Duration(3'600'000)), allowed(10, 9, Duration(100'000))});
  }
  Verdict denied_verdict() const {
    return verdict_of(charges, {over_limit(100, 0, Duration(59'400'000), Duration(11'200'000)),
                                allowed(10, 10, Duration(0))});
  }
};

TEST(RateLimitHeaderForms, Draft7IsOneDictionaryOfTheHeadlineAndUnnamedPolicies) {
  const TwoPolicies t;
  const RateLimitHeaders h =
      rate_limit_headers(t.charges, t.allowed_verdict(), {RateLimitStandard::kDraft7, true});
  const HeaderFields expected = {
      {"X-RateLimit-Limit", "10"},
      {"X-RateLimit-Remaining", "9"},
      {"X-RateLimit-Reset", "1"},
      {"RateLimit-Policy", "100;w=60, 10;w=1"},
      {"RateLimit", "limit=10, remaining=9, reset=1"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_EQ(draft7_rate_limit_value(t.allowed_verdict().headline()),
            "limit=10, remaining=9, reset=1");
  EXPECT_EQ(unnamed_rate_limit_policy_value(t.charges), "100;w=60, 10;w=1");
}

TEST(RateLimitHeaderForms, Draft6IsThreeFieldsOfTheHeadlineAndKeepsRetryAfter) {
  const TwoPolicies t;
  const RateLimitHeaders h =
      rate_limit_headers(t.charges, t.denied_verdict(), {RateLimitStandard::kDraft6, false});
  const HeaderFields expected = {
      {"RateLimit-Limit", "100"}, {"RateLimit-Remaining", "0"},
      {"RateLimit-Reset", "60"},  {"RateLimit-Policy", "100;w=60, 10;w=1"},
      {"Retry-After", "12"},
  };
  EXPECT_EQ(h.fields, expected);
  EXPECT_TRUE(h.denied);
  // The body does not depend on the form.
  EXPECT_EQ(h.problem_body, rate_limit_headers(t.charges, t.denied_verdict()).problem_body);
}

TEST(RateLimitHeaderForms, NoneWithoutLegacyLeavesOnlyRetryAfter) {
  const TwoPolicies t;
  const HeaderStyle nothing{RateLimitStandard::kNone, false};
  EXPECT_TRUE(rate_limit_headers(t.charges, t.allowed_verdict(), nothing).fields.empty());
  const HeaderFields expected = {{"Retry-After", "12"}};
  EXPECT_EQ(rate_limit_headers(t.charges, t.denied_verdict(), nothing).fields, expected);
  const HeaderFields legacy_only = {
      {"X-RateLimit-Limit", "10"}, {"X-RateLimit-Remaining", "9"}, {"X-RateLimit-Reset", "1"}};
  EXPECT_EQ(
      rate_limit_headers(t.charges, t.allowed_verdict(), {RateLimitStandard::kNone, true}).fields,
      legacy_only);
}

TEST(RateLimitHeaderForms, Draft8WithoutLegacyIsTheDefaultLessTheXFields) {
  const TwoPolicies t;
  const HeaderFields all = rate_limit_headers(t.charges, t.allowed_verdict()).fields;
  const HeaderFields expected = {all[3], all[4]};
  EXPECT_EQ(rate_limit_headers(t.charges, t.allowed_verdict(), {RateLimitStandard::kDraft8, false})
                .fields,
            expected);
  EXPECT_EQ(HeaderStyle{}, (HeaderStyle{RateLimitStandard::kDraft8, true}));
}

TEST(RateLimitHeaderForms, DegradedSendsThePolicyInTheFormsSyntax) {
  const TwoPolicies t;
  const HeaderFields d7 = {{"RateLimit-Policy", "100;w=60, 10;w=1"},
                           {"X-RateLimit-Degraded", "store-unavailable"}};
  EXPECT_EQ(degraded_rate_limit_headers(t.charges, {RateLimitStandard::kDraft7, true}).fields, d7);
  EXPECT_EQ(degraded_rate_limit_headers(t.charges, {RateLimitStandard::kDraft6, false}).fields, d7);
  const HeaderFields none = {{"X-RateLimit-Degraded", "store-unavailable"}};
  EXPECT_EQ(degraded_rate_limit_headers(t.charges, {RateLimitStandard::kNone, true}).fields, none);
}

TEST(RateLimitHeaderForms, ExposeHeadersDraft6NamesEveryFieldOfEveryForm) {
  const TwoPolicies t;
  for (RateLimitStandard s : {RateLimitStandard::kDraft8, RateLimitStandard::kDraft7,
                              RateLimitStandard::kDraft6, RateLimitStandard::kNone}) {
    HeaderFields all = rate_limit_headers(t.charges, t.denied_verdict(), {s, true}).fields;
    for (const auto& f : degraded_rate_limit_headers(t.charges, {s, true}).fields) all.push_back(f);
    for (const auto& [name, value] : all) {
      const std::string item = ", " + std::string(name) + ",";
      EXPECT_NE((", " + std::string(kExposeHeadersDraft6) + ",").find(item), std::string::npos)
          << name;
    }
  }
}

}  // namespace
}  // namespace fg::http
