// rate_limit_headers.h — the rate-limit response fields and the 429 body (design §2.3,
// docs/headers.md), computed from a Verdict as plain strings.
//
// What: given the policies that matched a request (its Charges) and the Verdict over them,
// rate_limit_headers() returns the header fields to add to the response, in order, and, when the
// verdict is a denial, the RFC 9457 problem body of the 429:
//
//   X-RateLimit-Limit: 100                 headline decision's limit (Policy::capacity())
//   X-RateLimit-Remaining: 94              headline decision's remaining
//   X-RateLimit-Reset: 4                   ceil_seconds(headline.reset_after)
//   RateLimit-Policy: "per-minute";q=100;w=60, "per-second";q=10;w=1
//   RateLimit: "per-minute";r=94;t=4, "per-second";r=9;t=1
//   Retry-After: 12                        only when denied: max(1, ceil_seconds(retry_after))
//
// The headline is verdict.headline() (fg::most_restrictive: a denying non-shadow policy first,
// else the least remaining). RateLimit-Policy and RateLimit carry one item per charge, in the
// order given, shadow policies included (they are matching policies; they never cause a 429).
//
// Choices, argued in the .cc:
//   - q is Policy::capacity() (burst for buckets, limit for windows), the same figure as
//     X-RateLimit-Limit, so that r <= q always holds; w is the period in whole seconds, rounded
//     up, at least 1. With the default burst == limit, q is simply the limit.
//   - kCostExceedsBurst (the request can never pass; retry_after is 0): Retry-After is still
//     present and is 1, the same formula as every denial, and the problem body gains a
//     "detail" saying that retrying the same request will not help.
//
// Degraded (store unavailable, on_store_error: allow): degraded_rate_limit_headers() gives only
// RateLimit-Policy (known from the config) and X-RateLimit-Degraded: store-unavailable; no
// figures are invented.
//
// Units: Durations are integer µs (fg::Duration); every field carries whole delta seconds,
// rounded up (never timestamps).
// Thread safety: pure functions over values; no clock reads, no I/O.
// Failure: none. Preconditions (asserted): decisions.size() == charges.size(), every policy
// non-null. No charges at all gives no fields.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/limiter.h"

namespace fg::http {

// Field names, spelled as docs/headers.md spells them.
inline constexpr std::string_view kXRateLimitLimit = "X-RateLimit-Limit";
inline constexpr std::string_view kXRateLimitRemaining = "X-RateLimit-Remaining";
inline constexpr std::string_view kXRateLimitReset = "X-RateLimit-Reset";
inline constexpr std::string_view kXRateLimitDegraded = "X-RateLimit-Degraded";
inline constexpr std::string_view kRateLimitPolicy = "RateLimit-Policy";
inline constexpr std::string_view kRateLimit = "RateLimit";
inline constexpr std::string_view kRetryAfter = "Retry-After";

// The value of X-RateLimit-Degraded when the store could not decide and the request was let
// through (on_store_error: allow).
inline constexpr std::string_view kDegradedStoreUnavailable = "store-unavailable";

// Value of Access-Control-Expose-Headers on responses to an allowed origin: every field above
// (none of them is CORS-safelisted, so browsers hide them from scripts otherwise).
inline constexpr std::string_view kExposeHeaders =
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit-Policy, RateLimit, "
    "Retry-After, X-RateLimit-Degraded";

inline constexpr int kTooManyRequests = 429;
inline constexpr std::string_view kProblemContentType = "application/problem+json";
inline constexpr std::string_view kQuotaExceededType =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

// Whole seconds in `d`, rounded up: 0 µs → 0, 1 µs → 1, 1,000,000 µs → 1, 1,000,001 µs → 2.
// Negative durations (which no decision produces) give 0.
std::int64_t ceil_seconds(Duration d);

// A minimal Structured Field Values writer (RFC 9651 §4.1): what the RateLimit fields need.
namespace sf {

// Largest magnitude of an sf-integer (RFC 9651 §3.3.1: at most 15 digits).
inline constexpr std::int64_t kMaxInteger = 999'999'999'999'999;

// An Item whose bare value is an sf-string, with Integer parameters, e.g. "per-minute";q=100.
// Keys must be sf-keys (lcalpha / "*" then lcalpha, digit, "_-.*"); callers pass constants.
struct Item {
  std::string name;
  std::vector<std::pair<std::string, std::int64_t>> params;
};

// `"` + s + `"` with `"` and `\` escaped. Characters an sf-string cannot hold (controls, DEL,
// bytes >= 0x80) become '?': the output is always a valid sf-string.
void append_string(std::string& out, std::string_view s);
std::string serialize_string(std::string_view s);

// Decimal, clamped to [-kMaxInteger, kMaxInteger] (no floodgate figure comes near it).
void append_integer(std::string& out, std::int64_t n);

// An sf-list of items: `"a";q=1;w=60, "b";q=2`. An empty list serializes as "" (RFC 9651: the
// field should then be left out).
std::string serialize_list(std::span<const Item> items);

}  // namespace sf

using HeaderFields = std::vector<std::pair<std::string, std::string>>;

struct RateLimitHeaders {
  HeaderFields fields;       // add every one to the response, in this order
  bool denied = false;       // answer kTooManyRequests with problem_body
  std::string problem_body;  // kProblemContentType; empty unless denied
};

// The fields (and, when !verdict.allowed, the 429 body) for one decided request.
RateLimitHeaders rate_limit_headers(std::span<const Charge> charges, const Verdict& verdict);

// Fail-open answer when the store is unavailable: RateLimit-Policy and X-RateLimit-Degraded only.
RateLimitHeaders degraded_rate_limit_headers(std::span<const Charge> charges);

// The pieces, for callers that need one of them (and for tests).
std::string rate_limit_policy_value(std::span<const Charge> charges);
std::string rate_limit_value(std::span<const Charge> charges, std::span<const Decision> decisions);
// Retry-After for a denying decision: max(1, ceil_seconds(d.retry_after)).
std::int64_t retry_after_seconds(const Decision& d);
// {"type":...,"title":"Too Many Requests","status":429,["detail":...,]"policy":<headline>,
//  "retry_after":<Retry-After>,"violated-policies":[<denying non-shadow policies, in order>]}
std::string problem_body(std::span<const Charge> charges, const Verdict& verdict);

}  // namespace fg::http
