// algorithms.h — one policy, one request: the four algorithms as pure functions.
//
// apply(policy, state, cost, now) returns the decision and, when the request consumes, the state
// to store and its ttl. Nothing is read from a clock or written anywhere: callers pass `now`
// (integer µs since the epoch) and store the result. src/store/redis/lua/*.lua implement the same
// functions with the same integers; tests/vectors/*.yaml hold the cases both must pass.
//
// Scaled tokens (token bucket, GCRA). With g = gcd(period_us, limit), one token is
// `unit = period_us / g` scaled units and the bucket refills `rate = limit / g` scaled units per
// µs; capacity is `burst * unit`. Every refill is then an exact integer: 100 per minute is
// unit 600000, rate 1 (one token every 0.6 s); 3 per second is unit 1000000, rate 3.
//
// State layout (State{a, b, c}):
//   token bucket    a = scaled tokens left, b = time they were counted (µs)
//   GCRA            a = theoretical arrival time (µs), b = its fraction, in 1/rate µs
//   sliding window  a = current window index (now / period), b = its count, c = previous count
//   fixed window    a = window index, b = count
//   concurrency     a = slots held now (the store counts its live leases: the slots themselves
//                   live in the store, one lease per request, see apply_concurrency)
// Missing state is a full bucket / empty window. The ttl of a written state is the time until
// it becomes equivalent to missing state (the Redis PEXPIRE).
//
// Time going backwards (a stepped wall clock, another instance's skew) never adds tokens: the
// bucket keeps the later timestamp; windows keep the later window.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>

#include "floodgate/decision.h"
#include "floodgate/limiter.h"
#include "floodgate/policy.h"

namespace fg::core {

struct Step {
  Decision decision;
  bool write = false;  // the request consumed: store `next` for `ttl`
  State next;
  Duration ttl{0};
};

// Precondition: validate_policy(policy) succeeded; 0 <= cost <= kMaxCount. Cost 0 is a peek: it
// reports the figures without consuming.
Step apply(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
           std::int64_t now_us);

Step apply_token_bucket(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                        std::int64_t now_us);
Step apply_gcra(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                std::int64_t now_us);
Step apply_sliding_window(const Policy& policy, const std::optional<State>& state,
                          std::int64_t cost, std::int64_t now_us);
Step apply_fixed_window(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                        std::int64_t now_us);
// In-flight requests: allowed while the slots held (state->a, the store's count of live leases)
// are below limit; an allowed request with cost > 0 takes one slot whatever its cost. The
// `next` state is the count with it (a store adds the request's lease rather than writing it),
// `ttl` the lease (policy.period). remaining = free slots after this request; reset_after 0 (no
// clock can say when responses end); a denial's retry_after is kConcurrencyRetryAfter.
Step apply_concurrency(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                       std::int64_t now_us);

// A refund (include/floodgate/store.h): gives back `cost` consumed by an allowed apply() at
// `consumed_at_us`, as far as that can be done without leaving a state more permissive than if
// that request had not been admitted. With `now_us` the clock at the refund:
//   token bucket, GCRA  gives back max(0, cost * unit - elapsed * rate) scaled units, elapsed =
//                       the time the bucket has refilled since consumed_at (the part of the
//                       charge not yet refilled by itself), capped at capacity;
//   fixed window        count -= cost (floor 0) if the current window is consumed_at's;
//   sliding window      the same for `current`; in the next window, previous -= cost (floor 0).
// Missing state, cost 0: nothing. `write` false: nothing to store; else store `next` for `ttl`,
// or delete the state when `ttl` is 0 (it is then equivalent to no state).
struct RefundStep {
  bool write = false;
  State next;
  Duration ttl{0};
};

// Precondition: validate_policy(policy) succeeded; 0 <= cost <= kMaxCount.
RefundStep refund(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                  std::int64_t consumed_at_us, std::int64_t now_us);

RefundStep refund_token_bucket(const Policy& policy, const std::optional<State>& state,
                               std::int64_t cost, std::int64_t consumed_at_us, std::int64_t now_us);
RefundStep refund_gcra(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                       std::int64_t consumed_at_us, std::int64_t now_us);
RefundStep refund_sliding_window(const Policy& policy, const std::optional<State>& state,
                                 std::int64_t cost, std::int64_t consumed_at_us,
                                 std::int64_t now_us);
RefundStep refund_fixed_window(const Policy& policy, const std::optional<State>& state,
                               std::int64_t cost, std::int64_t consumed_at_us, std::int64_t now_us);

// The scaled-token parameters of a token bucket or GCRA policy (see above).
struct BucketScale {
  std::int64_t unit = 1;      // scaled units per token
  std::int64_t rate = 1;      // scaled units refilled per µs
  std::int64_t capacity = 1;  // burst * unit
};
BucketScale bucket_scale(const Policy& policy);

// Time granule of a sliding window: 1 ms when the period is whole milliseconds, else 1 µs, so
// that limit * (period / granule) stays exact for windows of up to ~10^8 requests a day.
std::int64_t window_granule_us(const Policy& policy);

}  // namespace fg::core
