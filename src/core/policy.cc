#include "floodgate/policy.h"

#include <numeric>
#include <string>

#include "core/algorithms.h"
#include "floodgate/decision.h"

namespace fg {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kDeadlineExceeded:
      return "deadline exceeded";
    case ErrorCode::kResourceExhausted:
      return "resource exhausted";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Error::to_string() const {
  return std::string(fg::to_string(code)) + ": " + message;
}

std::string_view to_string(DenyReason r) {
  switch (r) {
    case DenyReason::kNone:
      return "none";
    case DenyReason::kOverLimit:
      return "over_limit";
    case DenyReason::kCostExceedsBurst:
      return "cost_exceeds_burst";
  }
  return "unknown";
}

std::string_view to_string(Algorithm a) {
  switch (a) {
    case Algorithm::kTokenBucket:
      return "token_bucket";
    case Algorithm::kGcra:
      return "gcra";
    case Algorithm::kSlidingWindow:
      return "sliding_window";
    case Algorithm::kFixedWindow:
      return "fixed_window";
    case Algorithm::kConcurrency:
      return "concurrency";
  }
  return "unknown";
}

std::optional<Algorithm> parse_algorithm(std::string_view s) {
  for (Algorithm a : {Algorithm::kTokenBucket, Algorithm::kGcra, Algorithm::kSlidingWindow,
                      Algorithm::kFixedWindow, Algorithm::kConcurrency}) {
    if (s == to_string(a)) return a;
  }
  return std::nullopt;
}

std::int64_t Policy::capacity() const {
  return (algorithm == Algorithm::kTokenBucket || algorithm == Algorithm::kGcra) ? burst : limit;
}

Result<void> validate_policy(const Policy& p) {
  auto bad = [](std::string m) { return fail(ErrorCode::kInvalidArgument, std::move(m)); };
  const std::string max = std::to_string(kMaxCount);
  if (p.name.empty()) return bad("name: must not be empty");
  if (p.limit <= 0) return bad("limit: must be a positive integer");
  if (p.limit > kMaxCount) return bad("limit: must be at most " + max);
  if (p.burst <= 0) return bad("burst: must be a positive integer");
  if (p.burst > kMaxCount) return bad("burst: must be at most " + max);
  if (!valid_cost(p.cost)) {
    return bad(p.cost < 0 ? "cost: must be zero or a positive integer"
                          : "cost: must be at most " + max);
  }
  if (p.period.count() <= 0) {
    return bad(p.is_concurrency() ? "lease: must be positive" : "period: must be positive");
  }
  if (p.period > kMaxPeriod) {
    return bad(p.is_concurrency() ? "lease: must be at most 366d" : "period: must be at most 366d");
  }
  switch (p.algorithm) {
    case Algorithm::kTokenBucket:
    case Algorithm::kGcra: {
      // burst * unit must stay exact in a double (the Lua scripts' numbers); checked without
      // computing the product, which could overflow.
      const std::int64_t unit = p.period.count() / std::gcd(p.period.count(), p.limit);
      if (unit > kMaxExactInteger / p.burst) {
        return bad("burst: " + std::to_string(p.burst) + " tokens refilled " +
                   std::to_string(p.limit) + " per " + std::to_string(p.period.count()) +
                   " us cannot be counted exactly; use a limit that divides the period in "
                   "microseconds more evenly, or a shorter period");
      }
      break;
    }
    case Algorithm::kSlidingWindow:
    case Algorithm::kFixedWindow: {
      if (p.burst != p.limit) {
        return bad("burst: applies to token_bucket and gcra only; " +
                   std::string(to_string(p.algorithm)) + " allows `limit` per window");
      }
      const std::int64_t granules = p.period.count() / core::window_granule_us(p);
      if (p.algorithm == Algorithm::kSlidingWindow && granules > kMaxExactInteger / p.limit) {
        return bad("limit: too large for a sliding window of this period (limit x period in ms "
                   "must not exceed 2^53); use a shorter period or token_bucket");
      }
      break;
    }
    case Algorithm::kConcurrency:
      if (p.burst != p.limit) return bad("burst: applies to token_bucket and gcra only");
      // A request takes one slot whatever its cost; cost 0 looks without taking one.
      if (p.cost > 1) return bad("cost: a concurrency policy takes one slot per request (0 or 1)");
      break;
  }
  return {};
}

}  // namespace fg
