#include "core/algorithms.h"

#include <algorithm>
#include <cassert>
#include <numeric>

namespace fg::core {
namespace {

// ceil(n / d) for n >= 0, d > 0.
constexpr std::int64_t ceil_div(std::int64_t n, std::int64_t d) { return (n + d - 1) / d; }

Decision denied_cost_exceeds(std::int64_t capacity) {
  Decision d;
  d.allowed = false;
  d.reason = DenyReason::kCostExceedsBurst;
  d.limit = capacity;
  return d;
}

}  // namespace

BucketScale bucket_scale(const Policy& p) {
  const std::int64_t period_us = p.period.count();
  const std::int64_t g = std::gcd(period_us, p.limit);
  BucketScale s;
  s.unit = period_us / g;
  s.rate = p.limit / g;
  s.capacity = p.burst * s.unit;
  return s;
}

std::int64_t window_granule_us(const Policy& p) { return p.period.count() % 1000 == 0 ? 1000 : 1; }

// Token bucket. Worked example, 100 per minute, burst 100: unit = 600000, rate = 1. A full bucket
// holds 60,000,000 scaled units; one request takes 600,000. After 90 requests at t0, 10 tokens
// (6,000,000) remain; at t0 + 1.5 s, 1,500,000 more have arrived: 12 whole tokens.
Step apply_token_bucket(const Policy& p, const std::optional<State>& state, std::int64_t cost,
                        std::int64_t now_us) {
  const BucketScale s = bucket_scale(p);
  std::int64_t tokens = s.capacity;
  std::int64_t ts = now_us;
  if (state) {
    // A policy whose burst shrank since the state was written: clamp, never mint.
    tokens = std::clamp<std::int64_t>(state->a, 0, s.capacity);
    ts = state->b;
  }
  // Refill up to `t`; when the clock went backwards, t stays at the stored time.
  const std::int64_t t = std::max(now_us, ts);
  if (t > ts && tokens < s.capacity) {
    const std::int64_t to_full_us = ceil_div(s.capacity - tokens, s.rate);
    tokens = (t - ts >= to_full_us) ? s.capacity : tokens + (t - ts) * s.rate;
  }
  // Figures are reported from the caller's `now`, even when t is later.
  const std::int64_t ahead_us = t - now_us;

  Step step;
  if (cost > p.burst) {
    step.decision = denied_cost_exceeds(p.burst);
    step.decision.remaining = tokens / s.unit;
    step.decision.reset_after = Duration(ahead_us + ceil_div(s.capacity - tokens, s.rate));
    return step;
  }
  const std::int64_t need = cost * s.unit;
  Decision& d = step.decision;
  d.limit = p.burst;
  if (tokens >= need) {
    tokens -= need;
    d.allowed = true;
    step.write = cost > 0;
  } else {
    d.reason = DenyReason::kOverLimit;
    d.retry_after = Duration(ahead_us + ceil_div(need - tokens, s.rate));
  }
  d.remaining = tokens / s.unit;
  d.reset_after = Duration(ahead_us + ceil_div(s.capacity - tokens, s.rate));
  if (step.write) {
    step.next = State{tokens, t, 0};
    step.ttl = d.reset_after;
  }
  return step;
}

// GCRA. The state is the theoretical arrival time TAT = a + b / rate µs. The deficit at `now` is
// how far TAT lies ahead of now, in scaled units; tokens = capacity - deficit. With the same
// scale as the token bucket, every decision and figure equals the token bucket's (as long as
// time does not go backwards: there GCRA counts the extra wait against the client, the bucket
// ignores it; neither mints tokens).
Step apply_gcra(const Policy& p, const std::optional<State>& state, std::int64_t cost,
                std::int64_t now_us) {
  const BucketScale s = bucket_scale(p);
  std::int64_t deficit = 0;
  if (state && (state->a > now_us || (state->a == now_us && state->b > 0))) {
    // A TAT far ahead (this clock far behind) is clamped so the product stays below 2^53.
    const std::int64_t ahead_us = std::min(state->a - now_us, kMaxExactInteger / s.rate - 1);
    deficit = ahead_us * s.rate + std::clamp<std::int64_t>(state->b, 0, s.rate - 1);
  }
  const std::int64_t clamped = std::min(deficit, s.capacity);

  Step step;
  if (cost > p.burst) {
    step.decision = denied_cost_exceeds(p.burst);
    step.decision.remaining = (s.capacity - clamped) / s.unit;
    step.decision.reset_after = Duration(ceil_div(deficit, s.rate));
    return step;
  }
  const std::int64_t need = cost * s.unit;
  Decision& d = step.decision;
  d.limit = p.burst;
  if (deficit + need <= s.capacity) {
    deficit += need;
    d.allowed = true;
    step.write = cost > 0;
  } else {
    d.reason = DenyReason::kOverLimit;
    // As decide.lua computes it, where deficit + need could pass 2^53 (a clamped deficit).
    d.retry_after = Duration(ceil_div(deficit - (s.capacity - need), s.rate));
  }
  d.remaining = (s.capacity - std::min(deficit, s.capacity)) / s.unit;
  d.reset_after = Duration(ceil_div(deficit, s.rate));
  if (step.write) {
    step.next = State{now_us + deficit / s.rate, deficit % s.rate, 0};
    step.ttl = d.reset_after;
  }
  return step;
}

// Sliding window counter. The estimate at elapsed time e into the current window is
//   previous * (P - e) / P + current,
// compared without division: previous * (P - e) <= (limit - current - cost) * P. Time is counted
// in granules (1 ms for whole-millisecond periods) so the products stay below 2^53.
Step apply_sliding_window(const Policy& p, const std::optional<State>& state, std::int64_t cost,
                          std::int64_t now_us) {
  const std::int64_t g = window_granule_us(p);
  const std::int64_t period_us = p.period.count();
  const std::int64_t P = period_us / g;  // period in granules
  const std::int64_t limit = p.limit;
  std::int64_t window = now_us / period_us;
  std::int64_t current = 0;
  std::int64_t previous = 0;
  if (state) {
    if (state->a >= window) {  // same window, or a later one (clock went backwards)
      window = state->a;
      current = state->b;
      previous = state->c;
    } else if (state->a == window - 1) {
      previous = state->b;
    }
  }
  current = std::clamp<std::int64_t>(current, 0, limit);
  previous = std::clamp<std::int64_t>(previous, 0, limit);
  const std::int64_t start_us = window * period_us;
  const std::int64_t elapsed_us = std::max<std::int64_t>(0, now_us - start_us);
  const std::int64_t e = elapsed_us / g;  // granules elapsed in this window, < P unless skewed
  const std::int64_t weight = std::max<std::int64_t>(0, P - e);
  const std::int64_t to_window_end_us = start_us + period_us - now_us;

  Step step;
  Decision& d = step.decision;
  d.limit = limit;
  if (cost > limit) {
    d = denied_cost_exceeds(limit);
  } else if (current + cost <= limit && previous * weight <= (limit - current - cost) * P) {
    current += cost;
    d.allowed = true;
    step.write = cost > 0;
  } else {
    d.reason = DenyReason::kOverLimit;
    std::int64_t at_granule;  // first granule, from this window's start, at which cost fits
    if (current + cost <= limit) {
      // Blocked by the previous window's weight only: wait inside this window (previous > 0).
      at_granule = P - ((limit - current - cost) * P) / previous;
    } else {
      // Only the next window can fit it, once this window's count has decayed enough.
      at_granule = P + P - ((limit - cost) * P) / current;
    }
    d.retry_after = Duration(std::max<std::int64_t>(0, start_us + at_granule * g - now_us));
  }
  const std::int64_t room = (limit - current) * P - previous * weight;
  d.remaining = room > 0 ? room / P : 0;
  if (current > 0) {
    d.reset_after = Duration(to_window_end_us + period_us);
  } else if (previous > 0 && weight > 0) {
    d.reset_after = Duration(to_window_end_us);
  }
  if (step.write) {
    step.next = State{window, current, previous};
    step.ttl = d.reset_after;
  }
  return step;
}

// Fixed window: one counter per window [k * P, (k + 1) * P).
Step apply_fixed_window(const Policy& p, const std::optional<State>& state, std::int64_t cost,
                        std::int64_t now_us) {
  const std::int64_t period_us = p.period.count();
  std::int64_t window = now_us / period_us;
  std::int64_t count = 0;
  if (state && state->a >= window) {  // same window, or a later one (clock went backwards)
    window = state->a;
    count = std::clamp<std::int64_t>(state->b, 0, p.limit);
  }
  const std::int64_t to_window_end_us = (window + 1) * period_us - now_us;

  Step step;
  Decision& d = step.decision;
  d.limit = p.limit;
  if (cost > p.limit) {
    d = denied_cost_exceeds(p.limit);
  } else if (count + cost <= p.limit) {
    count += cost;
    d.allowed = true;
    step.write = cost > 0;
  } else {
    d.reason = DenyReason::kOverLimit;
    d.retry_after = Duration(to_window_end_us);
  }
  d.remaining = p.limit - count;
  d.reset_after = Duration(count > 0 ? to_window_end_us : 0);
  if (step.write) {
    step.next = State{window, count, 0};
    step.ttl = d.reset_after;
  }
  return step;
}

// Refunds. Why a bucket gives back only the part of the charge it has not refilled: the deficit
// (capacity - tokens) of a bucket is, at any time t, max over a <= t of (cost admitted in
// [a, t] - rate * (t - a)), the most any interval ending now is over its allowance. Removing one
// admitted charge of `need` at t1 lowers every such term by `need` for a < t1 and none for
// a >= t1; the terms with a >= t1 are at most deficit - (need - rate * (t - t1)). So the deficit
// without that charge is at least deficit - max(0, need - rate * (t - t1)): giving back that much
// is always safe. Giving back all of `need` is not once the bucket has been full since t1 (it
// refilled the charge) and others consumed after: their cost would be forgiven instead.
namespace {

// max(0, need - elapsed * rate) without overflow (elapsed may be years, rate up to 10^9).
std::int64_t unrefilled(std::int64_t need, std::int64_t elapsed_us, std::int64_t rate) {
  if (elapsed_us <= 0) return need;
  if (elapsed_us >= ceil_div(need, rate)) return 0;
  return need - elapsed_us * rate;
}

}  // namespace

RefundStep refund_token_bucket(const Policy& p, const std::optional<State>& state,
                               std::int64_t cost, std::int64_t consumed_at_us,
                               std::int64_t now_us) {
  RefundStep out;
  if (!state || cost <= 0) return out;
  const BucketScale s = bucket_scale(p);
  // The refill to now, exactly as apply_token_bucket.
  std::int64_t tokens = std::clamp<std::int64_t>(state->a, 0, s.capacity);
  const std::int64_t ts = state->b;
  const std::int64_t t = std::max(now_us, ts);
  if (t > ts && tokens < s.capacity) {
    const std::int64_t to_full_us = ceil_div(s.capacity - tokens, s.rate);
    tokens = (t - ts >= to_full_us) ? s.capacity : tokens + (t - ts) * s.rate;
  }
  // The bucket's own time has moved from (at least) consumed_at to t since the charge.
  const std::int64_t back = unrefilled(cost * s.unit, t - consumed_at_us, s.rate);
  if (back == 0 || tokens == s.capacity) return out;
  tokens = std::min(s.capacity, tokens + back);
  out.write = true;
  out.next = State{tokens, t, 0};
  out.ttl = tokens == s.capacity ? Duration(0)
                                 : Duration((t - now_us) + ceil_div(s.capacity - tokens, s.rate));
  return out;
}

RefundStep refund_gcra(const Policy& p, const std::optional<State>& state, std::int64_t cost,
                       std::int64_t consumed_at_us, std::int64_t now_us) {
  RefundStep out;
  if (!state || cost <= 0) return out;
  const BucketScale s = bucket_scale(p);
  // The deficit at now, exactly as apply_gcra.
  std::int64_t deficit = 0;
  if (state->a > now_us || (state->a == now_us && state->b > 0)) {
    const std::int64_t ahead_us = std::min(state->a - now_us, kMaxExactInteger / s.rate - 1);
    deficit = ahead_us * s.rate + std::clamp<std::int64_t>(state->b, 0, s.rate - 1);
  }
  const std::int64_t back = unrefilled(cost * s.unit, now_us - consumed_at_us, s.rate);
  if (back == 0 || deficit == 0) return out;
  // tat = max(now, tat - back / rate): the token bucket's min(capacity, tokens + back).
  deficit = std::max<std::int64_t>(0, deficit - back);
  out.write = true;
  out.next = State{now_us + deficit / s.rate, deficit % s.rate, 0};
  out.ttl = Duration(ceil_div(deficit, s.rate));
  return out;
}

RefundStep refund_sliding_window(const Policy& p, const std::optional<State>& state,
                                 std::int64_t cost, std::int64_t consumed_at_us,
                                 std::int64_t now_us) {
  RefundStep out;
  if (!state || cost <= 0) return out;
  const std::int64_t g = window_granule_us(p);
  const std::int64_t period_us = p.period.count();
  const std::int64_t P = period_us / g;
  const std::int64_t limit = p.limit;
  // The window and counts at now, exactly as apply_sliding_window.
  std::int64_t window = now_us / period_us;
  std::int64_t current = 0;
  std::int64_t previous = 0;
  if (state->a >= window) {
    window = state->a;
    current = state->b;
    previous = state->c;
  } else if (state->a == window - 1) {
    previous = state->b;
  }
  current = std::clamp<std::int64_t>(current, 0, limit);
  previous = std::clamp<std::int64_t>(previous, 0, limit);
  const std::int64_t consumed_window = consumed_at_us / period_us;
  if (window == consumed_window && current > 0) {
    current = std::max<std::int64_t>(0, current - cost);
  } else if (window == consumed_window + 1 && previous > 0) {
    previous = std::max<std::int64_t>(0, previous - cost);
  } else {
    return out;
  }
  const std::int64_t start_us = window * period_us;
  const std::int64_t e = std::max<std::int64_t>(0, now_us - start_us) / g;
  const std::int64_t weight = std::max<std::int64_t>(0, P - e);
  const std::int64_t to_window_end_us = start_us + period_us - now_us;
  out.write = true;
  out.next = State{window, current, previous};
  if (current > 0) {
    out.ttl = Duration(to_window_end_us + period_us);
  } else if (previous > 0 && weight > 0) {
    out.ttl = Duration(to_window_end_us);
  }
  return out;
}

RefundStep refund_fixed_window(const Policy& p, const std::optional<State>& state,
                               std::int64_t cost, std::int64_t consumed_at_us,
                               std::int64_t now_us) {
  RefundStep out;
  if (!state || cost <= 0) return out;
  const std::int64_t period_us = p.period.count();
  // The window and count at now, exactly as apply_fixed_window: a stored window older than now's
  // holds nothing any more.
  const std::int64_t window = std::max(now_us / period_us, state->a);
  if (state->a != window || window != consumed_at_us / period_us) return out;
  std::int64_t count = std::clamp<std::int64_t>(state->b, 0, p.limit);
  if (count == 0) return out;
  count = std::max<std::int64_t>(0, count - cost);
  out.write = true;
  out.next = State{window, count, 0};
  out.ttl = Duration(count > 0 ? (window + 1) * period_us - now_us : 0);
  return out;
}

Step apply_concurrency(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                       std::int64_t now_us) {
  (void)now_us;  // the store has already dropped the leases that expired by now
  const std::int64_t limit = policy.limit;
  std::int64_t held = state ? state->a : 0;
  if (held < 0) held = 0;
  const std::int64_t take = cost > 0 ? 1 : 0;
  Step out;
  out.decision.limit = limit;
  if (held + take <= limit) {
    out.decision.allowed = true;
    out.decision.reason = DenyReason::kNone;
    out.decision.remaining = limit - held - take;
    out.write = take > 0;
    out.next = State{held + take, 0, 0};
    out.ttl = policy.period;
  } else {
    out.decision.allowed = false;
    out.decision.reason = DenyReason::kOverLimit;
    out.decision.remaining = held >= limit ? 0 : limit - held;
    out.decision.retry_after = kConcurrencyRetryAfter;
  }
  return out;
}

RefundStep refund(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
                  std::int64_t consumed_at_us, std::int64_t now_us) {
  switch (policy.algorithm) {
    case Algorithm::kTokenBucket:
      return refund_token_bucket(policy, state, cost, consumed_at_us, now_us);
    case Algorithm::kGcra:
      return refund_gcra(policy, state, cost, consumed_at_us, now_us);
    case Algorithm::kSlidingWindow:
      return refund_sliding_window(policy, state, cost, consumed_at_us, now_us);
    case Algorithm::kFixedWindow:
      return refund_fixed_window(policy, state, cost, consumed_at_us, now_us);
    case Algorithm::kConcurrency:
      return {};  // a slot is given back by removing its lease (Store::release), not by a write
  }
  assert(false && "unknown algorithm");
  return {};
}

Step apply(const Policy& policy, const std::optional<State>& state, std::int64_t cost,
           std::int64_t now_us) {
  switch (policy.algorithm) {
    case Algorithm::kTokenBucket:
      return apply_token_bucket(policy, state, cost, now_us);
    case Algorithm::kGcra:
      return apply_gcra(policy, state, cost, now_us);
    case Algorithm::kSlidingWindow:
      return apply_sliding_window(policy, state, cost, now_us);
    case Algorithm::kFixedWindow:
      return apply_fixed_window(policy, state, cost, now_us);
    case Algorithm::kConcurrency:
      return apply_concurrency(policy, state, cost, now_us);
  }
  assert(false && "unknown algorithm");
  return {};
}

}  // namespace fg::core
