// policy.h — what a rate-limit policy is, independent of where its state lives.
//
// A Policy is a plain value: name, algorithm, limit per period, burst, default cost, shadow.
// Matching requests to policies (paths, methods, headers) is the HTTP layer's business, not
// this one's.
//
// Exactness and its bounds: every algorithm works in integer microseconds, and its state must
// stay exact in Redis's Lua numbers (IEEE doubles, exact integers up to 2^53). validate_policy()
// rejects the few policies whose intermediate products could exceed that, with a message naming
// the limit; in practice those are token buckets with a prime-ish limit over days and windows
// of more than ~100,000 requests per day (see docs/algorithms.md).
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "floodgate/clock.h"
#include "floodgate/result.h"

namespace fg {

enum class Algorithm {
  kTokenBucket,    // capacity = burst, refill limit per period, continuously
  kGcra,           // same decisions as kTokenBucket, state is one theoretical arrival time
  kSlidingWindow,  // counter of the current and previous window, previous weighted by overlap
  kFixedWindow,    // one counter per window aligned on the epoch
  kConcurrency,    // requests in flight: a slot taken when allowed, given back when answered
};

// What a denied concurrency policy tells the client to wait: a slot frees when some response
// ends, which no clock can predict, so the answer is a short, fixed retry (Retry-After: 1).
inline constexpr Duration kConcurrencyRetryAfter = std::chrono::seconds(1);

std::string_view to_string(Algorithm a);
std::optional<Algorithm> parse_algorithm(std::string_view s);

struct Policy {
  std::string name;
  Algorithm algorithm = Algorithm::kTokenBucket;
  std::int64_t limit = 0;   // requests (tokens) per period, > 0; concurrency: slots
  // > 0; the config accepts whole milliseconds or more. For kConcurrency this is the lease: how
  // long a slot outlives an instance that took it and died (the config's `lease`).
  Duration period{0};
  std::int64_t burst = 0;   // bucket capacity (token bucket, GCRA); windows use `limit`; > 0
  std::int64_t cost = 1;    // tokens one request takes unless the caller says otherwise, >= 0
  bool shadow = false;      // decide and report, never deny

  bool is_concurrency() const { return algorithm == Algorithm::kConcurrency; }

  // The most a single request can ever be granted: burst for buckets, limit for windows and
  // concurrency.
  // This is what X-RateLimit-Limit reports.
  std::int64_t capacity() const;
};

// Largest integer every intermediate value must stay within: 2^53, the exact-integer range of a
// double, so that the Lua scripts compute exactly what the C++ core computes.
inline constexpr std::int64_t kMaxExactInteger = std::int64_t{1} << 53;

// Largest cost accepted for one request (and largest limit/burst): far beyond any real policy,
// small enough that no product overflows.
inline constexpr std::int64_t kMaxCount = 1'000'000'000;

// Whether `cost` may be charged for one request: 0 (a peek) to kMaxCount. The one range check of
// a cost, wherever it comes from: a policy's default (validate_policy), /v1/check, `floodgate
// check --cost`, and every store (check_charges).
constexpr bool valid_cost(std::int64_t cost) { return cost >= 0 && cost <= kMaxCount; }

// Largest period: 366 days.
inline constexpr Duration kMaxPeriod = std::chrono::hours(24 * 366);

// kInvalidArgument with a message naming the offending field ("limit: must be a positive
// integer"), or success. Fields are named as in the config file.
Result<void> validate_policy(const Policy& p);

}  // namespace fg
