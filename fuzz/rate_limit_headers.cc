// rate_limit_headers.cc — fuzz target: the rate-limit field writer (src/http/rate_limit_headers.h)
// fed fuzzed policies (names of any bytes, any valid figures) and decisions.
//
// Input: a mode byte, then per charge (1-8): a name, an algorithm, limit, period, burst, cost,
// shadow, and a decision. In "contract" mode a decision is what a store can answer (limit =
// capacity, 0 <= remaining <= capacity, durations >= 0, retry_after 0 when allowed) and the
// verdict is combined as the limiter does; in "raw" mode every figure and the headline index are
// arbitrary, as a buggy store might send.
//
// Invariants (docs/headers.md), checked with the strict reader of sf_check.h:
//   - the fields, in order: X-RateLimit-Limit, -Remaining, -Reset, RateLimit-Policy, RateLimit,
//     and Retry-After exactly when denied; no value holds a control byte or outer whitespace;
//   - RateLimit-Policy and RateLimit are canonical sf-lists of one item per charge, in order,
//     named by the policy (bytes an sf-string cannot hold as '?'); q = capacity, w > 0; r >= 0,
//     t >= 0; the legacy fields and Retry-After (>= 1) are delta seconds;
//   - in contract mode the figures are the headline decision's, and r <= q;
//   - a denial's problem body is a JSON object naming the quota-exceeded type, status 429, the
//     headline policy, Retry-After's figure and the denying non-shadow policies;
//   - degraded_rate_limit_headers: RateLimit-Policy and X-RateLimit-Degraded only;
//   - every other form (draft-7, draft-6, none; with and without the legacy fields) carries the
//     same figures in its own fields, and the same Retry-After and body;
//   - util::json_string and sf::serialize_string give a JSON string / sf-string of the name.
#include "http/rate_limit_headers.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/limiter.h"
#include "floodgate/policy.h"
#include "fuzz_check.h"
#include "sf_check.h"
#include "util/text.h"

namespace {

using namespace fg;

// The name as an sf-string carries it: bytes outside printable ASCII become '?'.
std::string sf_name(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return out;
}

// The name as util::json_string carries it: well-formed UTF-8 kept, each other byte U+FFFD
// (controls are escaped, and come back as they were).
std::string json_name(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len =
        static_cast<unsigned char>(s[i]) < 0x80 ? 1 : util::utf8_sequence_length(s, i);
    if (len == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

void check_value_bytes(const std::string& name, const std::string& value) {
  for (char c : value) {
    FG_FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f,
                  "%s holds a control byte 0x%02x", name.c_str(), static_cast<unsigned char>(c));
  }
  FG_FUZZ_CHECK(value.empty() || (value.front() != ' ' && value.back() != ' '),
                "%s has outer whitespace: \"%s\"", name.c_str(), value.c_str());
}

std::int64_t delta(const std::string& field, const std::string& value) {
  const auto v = fuzz::parse_delta_seconds(value);
  FG_FUZZ_CHECK(v.has_value(), "%s: \"%s\" is not delta seconds", field.c_str(), value.c_str());
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t mode = in.byte();
  const bool contract = (mode & 1) == 0;
  const std::size_t n = 1 + (mode >> 1) % 8;

  std::deque<Policy> policies;  // stable addresses for the charges
  std::vector<Charge> charges;
  std::vector<Decision> decisions;
  for (std::size_t i = 0; i < n; ++i) {
    Policy p;
    const std::size_t name_len = in.byte() % 24;
    for (std::size_t k = 0; k < name_len; ++k) p.name += static_cast<char>(in.byte());
    if (p.name.empty()) p.name = "p" + std::to_string(i);
    p.algorithm = static_cast<Algorithm>(in.byte() % 4);
    p.limit = 1 + static_cast<std::int64_t>(in.u64() % kMaxCount);
    p.period = Duration(1000 + static_cast<std::int64_t>(in.u64() % kMaxPeriod.count()));
    const bool windows =
        p.algorithm == Algorithm::kSlidingWindow || p.algorithm == Algorithm::kFixedWindow;
    p.burst = windows ? p.limit : 1 + static_cast<std::int64_t>(in.u64() % kMaxCount);
    const std::uint8_t flags = in.byte();
    p.shadow = (flags & 1) != 0;
    p.cost = static_cast<std::int64_t>(in.u64() % (kMaxCount + 1));
    if (!validate_policy(p)) return 0;  // the config never holds such a policy
    policies.push_back(std::move(p));
    charges.push_back(Charge{&policies.back(), policies.back().cost});

    Decision d;
    if (contract) {
      const std::int64_t cap = policies.back().capacity();
      d.allowed = (flags & 2) != 0;
      d.reason = d.allowed     ? DenyReason::kNone
                 : (flags & 4) ? DenyReason::kCostExceedsBurst
                               : DenyReason::kOverLimit;
      d.limit = cap;
      d.remaining = static_cast<std::int64_t>(in.u64() % static_cast<std::uint64_t>(cap + 1));
      d.reset_after = Duration(static_cast<std::int64_t>(in.u64() % kMaxPeriod.count()));
      d.retry_after = d.reason == DenyReason::kOverLimit
                          ? Duration(static_cast<std::int64_t>(
                                in.u64() % static_cast<std::uint64_t>(d.reset_after.count() + 1)))
                          : Duration::zero();
    } else {
      d.allowed = (flags & 2) != 0;
      d.reason = static_cast<DenyReason>(in.byte() % 3);
      d.limit = static_cast<std::int64_t>(in.u64());
      d.remaining = static_cast<std::int64_t>(in.u64());
      d.reset_after = Duration(static_cast<std::int64_t>(in.u64()));
      d.retry_after = Duration(static_cast<std::int64_t>(in.u64()));
    }
    decisions.push_back(d);
  }

  Verdict v;
  v.decisions.assign(decisions.begin(), decisions.end());
  if (contract) {
    v.allowed = std::all_of(decisions.begin(), decisions.end(), [&](const Decision& d) {
      const std::size_t i = static_cast<std::size_t>(&d - decisions.data());
      return d.allowed || charges[i].policy->shadow;
    });
    v.most_restrictive = most_restrictive(charges, decisions);
  } else {
    const std::uint8_t b = in.byte();
    v.allowed = (b & 1) != 0;
    v.most_restrictive = (b >> 1) % n;
  }
  const Decision& head = v.headline();
  const Policy& head_policy = *charges[v.most_restrictive].policy;

  const http::RateLimitHeaders h = http::rate_limit_headers(charges, v);
  FG_FUZZ_CHECK(h.denied == !v.allowed, "denied %d, allowed %d", h.denied, v.allowed);
  std::vector<std::pair<std::string, std::string>> fields;  // as strings, for the checks below
  for (const auto& [name, value] : h.fields) fields.emplace_back(name, value);
  FG_FUZZ_CHECK(h.fields.size() == fields.size(), "%zu fields iterated of %zu", fields.size(),
                h.fields.size());
  const std::vector<std::string> expected_names = {"X-RateLimit-Limit", "X-RateLimit-Remaining",
                                                   "X-RateLimit-Reset", "RateLimit-Policy",
                                                   "RateLimit",         "Retry-After"};
  const std::size_t expected_count = v.allowed ? 5 : 6;
  FG_FUZZ_CHECK(fields.size() == expected_count, "%zu fields, expected %zu", fields.size(),
                expected_count);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    FG_FUZZ_CHECK(fields[i].first == expected_names[i], "field %zu is %s, expected %s", i,
                  fields[i].first.c_str(), expected_names[i].c_str());
    check_value_bytes(fields[i].first, fields[i].second);
  }

  // Legacy fields.
  const std::string& limit_text = fields[0].second;
  if (contract) {
    FG_FUZZ_CHECK(delta("X-RateLimit-Limit", limit_text) == head_policy.capacity(),
                  "X-RateLimit-Limit %s, capacity %lld", limit_text.c_str(),
                  static_cast<long long>(head_policy.capacity()));
    FG_FUZZ_CHECK(delta("X-RateLimit-Remaining", fields[1].second) == head.remaining,
                  "X-RateLimit-Remaining %s", fields[1].second.c_str());
  } else {
    // Any int64, as the store gave it: "-" and 1-19 digits, no leading zero.
    const std::string_view digits =
        std::string_view(limit_text).substr(limit_text.starts_with("-") ? 1 : 0);
    FG_FUZZ_CHECK(
        !digits.empty() && digits.size() <= 19 && (digits.size() == 1 || digits.front() != '0') &&
            std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }),
        "X-RateLimit-Limit: \"%s\" is not an integer", limit_text.c_str());
    delta("X-RateLimit-Remaining", fields[1].second);
  }
  FG_FUZZ_CHECK(
      delta("X-RateLimit-Reset", fields[2].second) == http::ceil_seconds(head.reset_after),
      "X-RateLimit-Reset %s", fields[2].second.c_str());

  // RateLimit-Policy.
  const auto policy_items = fuzz::parse_sf_list(fields[3].second);
  FG_FUZZ_CHECK(policy_items.has_value(), "RateLimit-Policy is not an sf-list: %s",
                fields[3].second.c_str());
  FG_FUZZ_CHECK(policy_items->size() == n, "RateLimit-Policy has %zu items, %zu charges",
                policy_items->size(), n);
  // RateLimit.
  const auto items = fuzz::parse_sf_list(fields[4].second);
  FG_FUZZ_CHECK(items.has_value(), "RateLimit is not an sf-list: %s", fields[4].second.c_str());
  FG_FUZZ_CHECK(items->size() == n, "RateLimit has %zu items, %zu charges", items->size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    const Policy& p = *charges[i].policy;
    const fuzz::SfItem& pi = (*policy_items)[i];
    FG_FUZZ_CHECK(pi.name == sf_name(p.name), "RateLimit-Policy item %zu names %s", i,
                  pi.name.c_str());
    FG_FUZZ_CHECK(pi.params.size() == 2 && pi.params[0].first == "q" && pi.params[1].first == "w",
                  "RateLimit-Policy item %zu: parameters are not q, w", i);
    FG_FUZZ_CHECK(pi.params[0].second == p.capacity(), "q=%lld, capacity %lld",
                  static_cast<long long>(pi.params[0].second),
                  static_cast<long long>(p.capacity()));
    FG_FUZZ_CHECK(
        pi.params[1].second >= 1 &&
            pi.params[1].second == std::max<std::int64_t>(1, http::ceil_seconds(p.period)),
        "w=%lld for a period of %lld us", static_cast<long long>(pi.params[1].second),
        static_cast<long long>(p.period.count()));
    const fuzz::SfItem& it = (*items)[i];
    FG_FUZZ_CHECK(it.name == pi.name, "RateLimit item %zu names %s, policy item %s", i,
                  it.name.c_str(), pi.name.c_str());
    FG_FUZZ_CHECK(it.params.size() == 2 && it.params[0].first == "r" && it.params[1].first == "t",
                  "RateLimit item %zu: parameters are not r, t", i);
    FG_FUZZ_CHECK(it.params[0].second >= 0 && it.params[1].second >= 0, "r=%lld t=%lld",
                  static_cast<long long>(it.params[0].second),
                  static_cast<long long>(it.params[1].second));
    if (contract) {
      FG_FUZZ_CHECK(it.params[0].second == decisions[i].remaining &&
                        it.params[0].second <= pi.params[0].second,
                    "r=%lld, remaining %lld, q=%lld", static_cast<long long>(it.params[0].second),
                    static_cast<long long>(decisions[i].remaining),
                    static_cast<long long>(pi.params[0].second));
      FG_FUZZ_CHECK(it.params[1].second == http::ceil_seconds(decisions[i].reset_after), "t=%lld",
                    static_cast<long long>(it.params[1].second));
    }
  }

  if (!v.allowed) {
    const std::int64_t retry = delta("Retry-After", fields[5].second);
    FG_FUZZ_CHECK(retry >= 1, "Retry-After: %s", fields[5].second.c_str());
    FG_FUZZ_CHECK(retry >= http::ceil_seconds(head.retry_after), "Retry-After %lld before %lld us",
                  static_cast<long long>(retry), static_cast<long long>(head.retry_after.count()));
    const auto body = nlohmann::json::parse(h.problem_body, nullptr, false);
    FG_FUZZ_CHECK(!body.is_discarded() && body.is_object(), "problem body is not JSON: %s",
                  h.problem_body.c_str());
    FG_FUZZ_CHECK(body.value("type", "") == http::kQuotaExceededType &&
                      body.value("status", 0) == 429 &&
                      body.value("title", "") == "Too Many Requests",
                  "problem body: %s", h.problem_body.c_str());
    FG_FUZZ_CHECK(body.value("policy", "") == json_name(head_policy.name),
                  "problem body names the policy %s", h.problem_body.c_str());
    FG_FUZZ_CHECK(body.value("retry_after", std::int64_t{-1}) == retry,
                  "problem body retry_after differs from Retry-After %lld: %s",
                  static_cast<long long>(retry), h.problem_body.c_str());
    std::vector<std::string> violated;
    for (std::size_t i = 0; i < n; ++i) {
      if (!decisions[i].allowed && !charges[i].policy->shadow) {
        violated.push_back(json_name(charges[i].policy->name));
      }
    }
    FG_FUZZ_CHECK(
        body.contains("violated-policies") && body["violated-policies"] == nlohmann::json(violated),
        "violated-policies: %s", h.problem_body.c_str());
  } else {
    FG_FUZZ_CHECK(h.problem_body.empty(), "allowed, yet a problem body");
  }

  const http::RateLimitHeaders degraded = http::degraded_rate_limit_headers(charges);
  FG_FUZZ_CHECK(degraded.fields.size() == 2 && degraded.fields[0].first == "RateLimit-Policy" &&
                    degraded.fields[0].second == h.fields[3].second &&
                    degraded.fields[1].first == "X-RateLimit-Degraded" &&
                    degraded.fields[1].second == "store-unavailable" && !degraded.denied,
                "degraded fields");

  // Every other form (config rate_limit_headers) carries the same figures as the default one
  // checked above, in its own fields: the legacy three as they are; draft-8 the two lists as
  // they are; draft-7 "limit=L, remaining=R, reset=T" of the legacy figures; draft-6 those three
  // as fields of their own; draft-6 and -7 RateLimit-Policy the default's items without names;
  // Retry-After last, as it is, exactly when denied.
  std::string unnamed_policy;
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) unnamed_policy += ", ";
    unnamed_policy += std::to_string((*policy_items)[i].params[0].second) +
                      ";w=" + std::to_string((*policy_items)[i].params[1].second);
  }
  // draft-6 and -7 carry the figures as sf-integers: at most 15 digits (raw mode exceeds them).
  const auto sf_figure = [](const std::string& legacy_text) {
    return std::to_string(std::clamp<std::int64_t>(std::stoll(legacy_text), -http::sf::kMaxInteger,
                                                   http::sf::kMaxInteger));
  };
  const std::string f_limit = sf_figure(fields[0].second);
  const std::string f_remaining = sf_figure(fields[1].second);
  const std::string f_reset = sf_figure(fields[2].second);
  using config::RateLimitStandard;
  for (RateLimitStandard standard : {RateLimitStandard::kDraft8, RateLimitStandard::kDraft7,
                                     RateLimitStandard::kDraft6, RateLimitStandard::kNone}) {
    for (bool legacy : {true, false}) {
      std::vector<std::pair<std::string, std::string>> want;
      if (legacy) want.insert(want.end(), fields.begin(), fields.begin() + 3);
      switch (standard) {
        case RateLimitStandard::kDraft8:
          want.insert(want.end(), fields.begin() + 3, fields.begin() + 5);
          break;
        case RateLimitStandard::kDraft7:
          want.emplace_back("RateLimit-Policy", unnamed_policy);
          want.emplace_back("RateLimit", "limit=" + f_limit + ", remaining=" + f_remaining +
                                             ", reset=" + f_reset);
          break;
        case RateLimitStandard::kDraft6:
          want.emplace_back("RateLimit-Limit", f_limit);
          want.emplace_back("RateLimit-Remaining", f_remaining);
          want.emplace_back("RateLimit-Reset", f_reset);
          want.emplace_back("RateLimit-Policy", unnamed_policy);
          break;
        case RateLimitStandard::kNone:
          break;
      }
      if (!v.allowed) want.push_back(fields[5]);
      const http::RateLimitHeaders form = http::rate_limit_headers(charges, v, {standard, legacy});
      std::vector<std::pair<std::string, std::string>> got;
      for (const auto& [name, value] : form.fields) got.emplace_back(name, value);
      FG_FUZZ_CHECK(got == want && form.denied == h.denied && form.problem_body == h.problem_body,
                    "form %s, legacy %d: %zu fields, expected %zu",
                    std::string(config::to_string(standard)).c_str(), legacy, got.size(),
                    want.size());
      // Degraded: the policy in the form's syntax (none without a standard), then the marker.
      const http::RateLimitHeaders dform =
          http::degraded_rate_limit_headers(charges, {standard, legacy});
      const std::size_t policy_fields = standard == RateLimitStandard::kNone ? 0 : 1;
      FG_FUZZ_CHECK(
          dform.fields.size() == policy_fields + 1 &&
              dform.fields.back().second == http::kDegradedStoreUnavailable &&
              (policy_fields == 0 ||
               dform.fields[0].second ==
                   (standard == RateLimitStandard::kDraft8 ? fields[3].second : unnamed_policy)),
          "degraded fields of form %s", std::string(config::to_string(standard)).c_str());
    }
  }

  for (const Policy& p : policies) {
    const std::string copy = http::sf::serialize_string(p.name);
    std::string_view rest = copy;
    const auto back = fuzz::sf_detail::string(rest);
    FG_FUZZ_CHECK(back && rest.empty() && *back == sf_name(p.name), "sf string of a name: %s",
                  copy.c_str());
    const auto j = nlohmann::json::parse(util::json_string(p.name), nullptr, false);
    FG_FUZZ_CHECK(j.is_string() && j.get<std::string>() == json_name(p.name),
                  "json_string of a name: %s", util::json_string(p.name).c_str());
  }
  return 0;
}
