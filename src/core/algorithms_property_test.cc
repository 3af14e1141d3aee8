// Properties of the four algorithms over random policies and arrival sequences (rapidcheck).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <vector>

#include "core/algorithms.h"
#include "test_policy.h"

namespace fg::core {
namespace {

constexpr std::int64_t kT0 = 1'799'971'200'000'000;  // day-aligned

// Products of a count and a period can pass 2^63 in the checks below; the checks are exact.
__extension__ using Wide = __int128;

struct Arrival {
  std::int64_t at_us;
  std::int64_t cost;
};

// Periods a config can express, from 1 ms to a day.
rc::Gen<Duration> gen_period() {
  return rc::gen::map(
      rc::gen::element<std::int64_t>(1, 7, 10, 100, 250, 1000, 1500, 60000, 3600000, 86400000),
      [](std::int64_t ms) { return Duration(ms * 1000); });
}

rc::Gen<Policy> gen_policy(Algorithm algorithm) {
  return rc::gen::exec([algorithm] {
    const Duration period = *gen_period();
    const std::int64_t limit = *rc::gen::inRange<std::int64_t>(1, 2000);
    const bool bucket = algorithm == Algorithm::kTokenBucket || algorithm == Algorithm::kGcra;
    const std::int64_t burst = bucket ? *rc::gen::inRange<std::int64_t>(1, 3000) : limit;
    const Policy p =
        test::make_policy("p", limit, {.algorithm = algorithm, .period = period, .burst = burst});
    RC_PRE(validate_policy(p).has_value());
    return p;
  });
}

// Non-decreasing times with gaps from 0 to about two periods, costs up to a little over the
// capacity (so cost > burst is exercised too).
rc::Gen<std::vector<Arrival>> gen_arrivals(const Policy& p) {
  const std::int64_t max_gap = 2 * p.period.count() / std::max<std::int64_t>(1, p.limit) + 2;
  return rc::gen::exec([p, max_gap] {
    const auto n = *rc::gen::inRange<std::size_t>(1, 120);
    std::vector<Arrival> out;
    std::int64_t t = kT0 + *rc::gen::inRange<std::int64_t>(0, p.period.count());
    for (std::size_t i = 0; i < n; ++i) {
      const bool long_gap = *rc::gen::inRange(0, 20) == 0;
      t += long_gap ? *rc::gen::inRange<std::int64_t>(0, 3 * p.period.count())
                    : *rc::gen::inRange<std::int64_t>(0, max_gap);
      const auto cost =
          *rc::gen::inRange<std::int64_t>(0, std::min<std::int64_t>(p.capacity() + 2, 50));
      out.push_back({t, cost});
    }
    return out;
  });
}

// Runs a sequence the way a store does (keeping state until its ttl passes); returns decisions.
std::vector<Decision> run(const Policy& p, const std::vector<Arrival>& arrivals) {
  std::optional<State> state;
  std::int64_t expires = 0;
  std::vector<Decision> out;
  for (const Arrival& a : arrivals) {
    if (state && expires <= a.at_us) state.reset();
    const Step s = apply(p, state, a.cost, a.at_us);
    if (s.write) {
      state = s.next;
      expires = a.at_us + s.ttl.count();
    }
    out.push_back(s.decision);
  }
  return out;
}

rc::Gen<Algorithm> gen_algorithm() {
  return rc::gen::element(Algorithm::kTokenBucket, Algorithm::kGcra, Algorithm::kSlidingWindow,
                          Algorithm::kFixedWindow);
}

RC_GTEST_PROP(Buckets, NeverAdmitMoreThanBurstPlusRateTimesInterval, ()) {
  const auto algorithm = *rc::gen::element(Algorithm::kTokenBucket, Algorithm::kGcra);
  const Policy p = *gen_policy(algorithm);
  const auto arrivals = *gen_arrivals(p);
  const auto decisions = run(p, arrivals);
  // For every interval [t_i, t_j]: admitted cost * period <= burst * period + dt * limit.
  for (std::size_t i = 0; i < arrivals.size(); ++i) {
    Wide admitted = 0;
    for (std::size_t j = i; j < arrivals.size(); ++j) {
      if (decisions[j].allowed) admitted += arrivals[j].cost;
      const Wide dt = arrivals[j].at_us - arrivals[i].at_us;
      RC_ASSERT(admitted * p.period.count() <= Wide{p.burst} * p.period.count() + dt * p.limit);
    }
  }
}

RC_GTEST_PROP(Buckets, TokenBucketAndGcraMakeTheSameDecisions, ()) {
  Policy tb = *gen_policy(Algorithm::kTokenBucket);
  Policy gcra = tb;
  gcra.algorithm = Algorithm::kGcra;
  const auto arrivals = *gen_arrivals(tb);
  const auto a = run(tb, arrivals);
  const auto b = run(gcra, arrivals);
  for (std::size_t i = 0; i < a.size(); ++i) RC_ASSERT(a[i] == b[i]);
}

RC_GTEST_PROP(Windows, NeverAdmitMoreThanTheLimitInOneWindow, ()) {
  const auto algorithm = *rc::gen::element(Algorithm::kFixedWindow, Algorithm::kSlidingWindow);
  const Policy p = *gen_policy(algorithm);
  const auto arrivals = *gen_arrivals(p);
  const auto decisions = run(p, arrivals);
  std::int64_t window = -1, admitted = 0;
  for (std::size_t i = 0; i < arrivals.size(); ++i) {
    const std::int64_t w = arrivals[i].at_us / p.period.count();
    if (w != window) {
      window = w;
      admitted = 0;
    }
    if (decisions[i].allowed) admitted += arrivals[i].cost;
    RC_ASSERT(admitted <= p.limit);
  }
}

// The sliding window's estimate, checked against its definition with exact rationals: over any
// window-length span ending at an admitted request, previous * overlap + current <= limit.
RC_GTEST_PROP(Windows, SlidingWindowEstimateNeverExceedsTheLimit, ()) {
  const Policy p = *gen_policy(Algorithm::kSlidingWindow);
  const auto arrivals = *gen_arrivals(p);
  const auto decisions = run(p, arrivals);
  const std::int64_t P = p.period.count();
  const std::int64_t g = window_granule_us(p);
  for (std::size_t j = 0; j < arrivals.size(); ++j) {
    if (!decisions[j].allowed) continue;
    const std::int64_t w = arrivals[j].at_us / P;
    Wide prev = 0, cur = 0;
    for (std::size_t i = 0; i <= j; ++i) {
      if (!decisions[i].allowed) continue;
      const std::int64_t wi = arrivals[i].at_us / P;
      if (wi == w) cur += arrivals[i].cost;
      if (wi == w - 1) prev += arrivals[i].cost;
    }
    const std::int64_t e = (arrivals[j].at_us - w * P) / g;
    const std::int64_t granules = P / g;
    RC_ASSERT(prev * (granules - e) + cur * granules <= Wide{p.limit} * granules);
  }
}

RC_GTEST_PROP(All, FiguresAreInRangeAndRetryAfterIsExact, ()) {
  const Policy p = *gen_policy(*gen_algorithm());
  const auto arrivals = *gen_arrivals(p);
  std::optional<State> state;
  for (const Arrival& a : arrivals) {
    const Step s = apply(p, state, a.cost, a.at_us);
    const Decision& d = s.decision;
    RC_ASSERT(d.remaining >= 0);
    RC_ASSERT(d.remaining <= p.capacity());
    RC_ASSERT(d.reset_after.count() >= 0);
    RC_ASSERT(d.limit == p.capacity());
    if (d.allowed) {
      RC_ASSERT(d.retry_after.count() == 0);
      RC_ASSERT(s.write == (a.cost > 0));
      if (s.write) RC_ASSERT(s.ttl.count() > 0);
    } else if (d.reason == DenyReason::kCostExceedsBurst) {
      RC_ASSERT(a.cost > p.capacity());
    } else {
      // The same request is allowed exactly retry_after later, and not a microsecond sooner.
      RC_ASSERT(d.retry_after.count() > 0);
      const std::int64_t at = a.at_us + d.retry_after.count();
      RC_ASSERT(apply(p, state, a.cost, at).decision.allowed);
      RC_ASSERT(!apply(p, state, a.cost, at - 1).decision.allowed);
    }
    if (s.write) state = s.next;
  }
}

RC_GTEST_PROP(All, TimeGoingBackwardsNeverAddsTokens, ()) {
  const Policy p = *gen_policy(*gen_algorithm());
  const auto arrivals = *gen_arrivals(p);
  std::optional<State> state;
  for (const Arrival& a : arrivals) {
    const Step s = apply(p, state, a.cost, a.at_us);
    if (s.write) state = s.next;
    const auto back = *rc::gen::inRange<std::int64_t>(1, 10 * p.period.count());
    const Decision now = apply(p, state, 0, a.at_us).decision;
    const Decision earlier = apply(p, state, 0, a.at_us - back).decision;
    RC_ASSERT(earlier.remaining <= now.remaining);
  }
}

// Refunds. A state as a store keeps it: dropped once its ttl has passed, deleted by a refund
// write of ttl 0.
struct Sim {
  explicit Sim(const Policy* policy) : p(policy) {}
  const Policy* p;
  std::optional<State> state;
  std::int64_t expires = 0;

  void expire(std::int64_t now) {
    if (state && expires <= now) state.reset();
  }
  Decision decide(std::int64_t cost, std::int64_t now) {
    expire(now);
    const Step s = apply(*p, state, cost, now);
    if (s.write) {
      state = s.next;
      expires = now + s.ttl.count();
    }
    return s.decision;
  }
  Decision peek(std::int64_t now) {
    expire(now);
    return apply(*p, state, 0, now).decision;
  }
  bool admits(std::int64_t cost, std::int64_t now) {
    expire(now);
    return apply(*p, state, cost, now).decision.allowed;
  }
  void refund(std::int64_t cost, std::int64_t consumed_at, std::int64_t now) {
    expire(now);
    const RefundStep r = core::refund(*p, state, cost, consumed_at, now);
    if (!r.write) return;
    if (r.ttl.count() == 0) {
      state.reset();
    } else {
      state = r.next;
      expires = now + r.ttl.count();
    }
  }
};

// The brief's property: a decision followed by its refund never leaves a state that admits more
// than the state without that decision, at the refund and at any time after; refunded at once,
// it leaves exactly that state.
RC_GTEST_PROP(Refund, NeverAdmitsMoreThanWithoutTheDecision, ()) {
  const Policy p = *gen_policy(*gen_algorithm());
  const auto history = *gen_arrivals(p);
  const std::int64_t t1 =
      history.back().at_us + *rc::gen::inRange<std::int64_t>(0, p.period.count());
  const auto cost = *rc::gen::inRange<std::int64_t>(1, p.capacity() + 1);
  const bool at_once = *rc::gen::inRange(0, 4) == 0;
  const std::int64_t t2 =
      t1 + (at_once ? 0 : *rc::gen::inRange<std::int64_t>(0, 2 * p.period.count() + 2));
  Sim with{&p}, without{&p};
  for (const Arrival& a : history) {
    with.decide(a.cost, a.at_us);
    without.decide(a.cost, a.at_us);
  }
  RC_PRE(with.decide(cost, t1).allowed);
  with.refund(cost, t1, t2);
  for (int k = 0; k < 8; ++k) {
    const std::int64_t t =
        t2 + (k == 0 ? 0 : *rc::gen::inRange<std::int64_t>(0, 2 * p.period.count()));
    const Decision a = with.peek(t);
    const Decision b = without.peek(t);
    RC_ASSERT(a.remaining <= b.remaining);
    for (std::int64_t q = 1; q <= std::min<std::int64_t>(p.capacity(), 64); ++q) {
      if (with.admits(q, t)) RC_ASSERT(without.admits(q, t));
    }
    if (at_once) RC_ASSERT(a == b);
  }
}

// What keeps the fleet within its limits when refunds interleave with other decisions: every
// bound the algorithms guarantee still holds over the requests admitted and not refunded.
struct Refunded {
  std::vector<Arrival> arrivals;
  std::vector<bool> kept;  // admitted and not refunded
};

Refunded run_with_refunds(const Policy& p, const std::vector<Arrival>& arrivals) {
  Sim sim{&p};
  Refunded out{arrivals, std::vector<bool>(arrivals.size(), false)};
  struct Pending {
    std::int64_t at;
    std::int64_t cost;
    std::int64_t consumed_at;
  };
  std::vector<Pending> pending;  // kept sorted by time
  auto run_refunds_until = [&](std::int64_t t) {
    while (!pending.empty() && pending.front().at <= t) {
      sim.refund(pending.front().cost, pending.front().consumed_at, pending.front().at);
      pending.erase(pending.begin());
    }
  };
  // Up to the time a bucket takes to refill from empty, and a little more: refunds that come
  // after the bucket was full again are the ones a careless refund gets wrong.
  const std::int64_t max_delay =
      (std::min<std::int64_t>(p.capacity(), 20) + 3) * (p.period.count() / p.limit + 1);
  for (std::size_t i = 0; i < arrivals.size(); ++i) {
    run_refunds_until(arrivals[i].at_us);
    const bool allowed = sim.decide(arrivals[i].cost, arrivals[i].at_us).allowed;
    if (!allowed || arrivals[i].cost == 0) continue;
    if (*rc::gen::inRange(0, 3) == 0) {
      // Half the time up to a period and a half: across window boundaries.
      const std::int64_t delay_bound =
          *rc::gen::arbitrary<bool>() ? max_delay : 3 * p.period.count() / 2 + 1;
      const std::int64_t at = arrivals[i].at_us + *rc::gen::inRange<std::int64_t>(0, delay_bound);
      auto it = std::find_if(pending.begin(), pending.end(),
                             [at](const Pending& x) { return x.at > at; });
      pending.insert(it, Pending{at, arrivals[i].cost, arrivals[i].at_us});
    } else {
      out.kept[i] = true;
    }
  }
  return out;
}

RC_GTEST_PROP(Refund, BucketsStayWithinBurstPlusRateOverWhatIsKept, ()) {
  const auto algorithm = *rc::gen::element(Algorithm::kTokenBucket, Algorithm::kGcra);
  Policy p = *gen_policy(algorithm);
  // Small buckets half the time: they fill up again between a decision and its refund.
  if (*rc::gen::arbitrary<bool>())
    p.burst = std::min<std::int64_t>(p.burst, *rc::gen::inRange(1, 6));
  RC_PRE(validate_policy(p).has_value());
  for (int run = 0; run < 5; ++run) {  // several sequences per policy: a rare interleaving
    const auto r = run_with_refunds(p, *gen_arrivals(p));
    for (std::size_t i = 0; i < r.arrivals.size(); ++i) {
      Wide kept = 0;
      for (std::size_t j = i; j < r.arrivals.size(); ++j) {
        if (r.kept[j]) kept += r.arrivals[j].cost;
        const Wide dt = r.arrivals[j].at_us - r.arrivals[i].at_us;
        RC_ASSERT(kept * p.period.count() <= Wide{p.burst} * p.period.count() + dt * p.limit);
      }
    }
  }
}

RC_GTEST_PROP(Refund, WindowsStayWithinTheLimitOverWhatIsKept, ()) {
  const auto algorithm = *rc::gen::element(Algorithm::kFixedWindow, Algorithm::kSlidingWindow);
  const Policy p = *gen_policy(algorithm);
  const std::int64_t P = p.period.count();
  const std::int64_t g = window_granule_us(p);
  for (int run = 0; run < 10; ++run) {  // several sequences per policy: a rare interleaving
    const auto r = run_with_refunds(p, *gen_arrivals(p));
    for (std::size_t j = 0; j < r.arrivals.size(); ++j) {
      if (!r.kept[j]) continue;
      const std::int64_t w = r.arrivals[j].at_us / P;
      Wide prev = 0, cur = 0;
      for (std::size_t i = 0; i <= j; ++i) {
        if (!r.kept[i]) continue;
        const std::int64_t wi = r.arrivals[i].at_us / P;
        if (wi == w) cur += r.arrivals[i].cost;
        if (wi == w - 1) prev += r.arrivals[i].cost;
      }
      RC_ASSERT(cur <= p.limit);
      if (algorithm == Algorithm::kSlidingWindow) {
        const std::int64_t e = (r.arrivals[j].at_us - w * P) / g;
        const std::int64_t granules = P / g;
        RC_ASSERT(prev * (granules - e) + cur * granules <= Wide{p.limit} * granules);
      }
    }
  }
}

RC_GTEST_PROP(Refund, TokenBucketAndGcraStillMakeTheSameDecisions, ()) {
  Policy tb = *gen_policy(Algorithm::kTokenBucket);
  Policy gcra = tb;
  gcra.algorithm = Algorithm::kGcra;
  const auto arrivals = *gen_arrivals(tb);
  // The same refunds for both: which arrivals and when, drawn once.
  std::vector<std::int64_t> delay(arrivals.size(), -1);
  for (auto& d : delay) {
    if (*rc::gen::inRange(0, 3) == 0)
      d = *rc::gen::inRange<std::int64_t>(0, tb.period.count() / tb.limit + 2);
  }
  auto run_one = [&](const Policy& p) {
    Sim sim{&p};
    std::vector<Decision> out;
    std::vector<std::pair<std::int64_t, std::size_t>> pending;  // (at, arrival), sorted
    for (std::size_t i = 0; i < arrivals.size(); ++i) {
      while (!pending.empty() && pending.front().first <= arrivals[i].at_us) {
        const auto [at, k] = pending.front();
        sim.refund(arrivals[k].cost, arrivals[k].at_us, at);
        out.push_back(sim.peek(at));
        pending.erase(pending.begin());
      }
      const Decision d = sim.decide(arrivals[i].cost, arrivals[i].at_us);
      out.push_back(d);
      if (d.allowed && delay[i] >= 0) {
        const std::int64_t at = arrivals[i].at_us + delay[i];
        auto it = std::find_if(pending.begin(), pending.end(),
                               [at](const auto& x) { return x.first > at; });
        pending.insert(it, {at, i});
      }
    }
    return out;
  };
  const auto a = run_one(tb);
  const auto b = run_one(gcra);
  RC_ASSERT(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) RC_ASSERT(a[i] == b[i]);
}


// Arrivals timed where a bucket's arithmetic turns: a microsecond before, at and after the
// moment the last decision said it would be full again (its reset_after), at its retry_after, or
// anywhere. The token bucket and GCRA must still decide alike (design §3.2).
RC_GTEST_PROP(Buckets, TokenBucketAndGcraAgreeWhereTheBucketTurns, ()) {
  const Policy tb = *gen_policy(Algorithm::kTokenBucket);
  Policy gcra = tb;
  gcra.algorithm = Algorithm::kGcra;
  const std::int64_t max_gap = 2 * tb.period.count() / tb.limit + 2;
  Sim a{&tb}, b{&gcra};
  std::int64_t t = kT0 + *rc::gen::inRange<std::int64_t>(0, tb.period.count());
  Decision last;
  const auto n = *rc::gen::inRange(1, 100);
  for (int i = 0; i < n; ++i) {
    const std::int64_t reset = last.reset_after.count();
    const std::int64_t retry = last.retry_after.count();
    t += std::max<std::int64_t>(
        0, *rc::gen::element(reset - 1, reset, reset + 1, retry - 1, retry,
                             *rc::gen::inRange<std::int64_t>(0, max_gap)));
    const auto cost = *rc::gen::inRange<std::int64_t>(0, std::min<std::int64_t>(tb.burst + 1, 50));
    last = a.decide(cost, t);
    RC_ASSERT(last == b.decide(cost, t));
  }
}

// A reload that changes a policy's limit or burst keeps its name, so it decides on the state the
// old values left. That state must hold the new figures: never more than the new capacity at one
// instant, every figure in range, and a denial's retry_after exact.
RC_GTEST_PROP(All, AStateLeftBeforeAReloadHoldsTheNewFigures, ()) {
  const Algorithm algorithm = *gen_algorithm();
  const Policy before = *gen_policy(algorithm);
  Policy p = *gen_policy(algorithm);
  p.period = before.period;
  if (*rc::gen::arbitrary<bool>()) {
    // Lowered: the old state may hold more than the new policy ever can.
    p.limit = std::min(p.limit, std::max<std::int64_t>(1, before.limit / 2));
    p.burst = std::min(p.burst, std::max<std::int64_t>(1, before.burst / 2));
    if (algorithm != Algorithm::kTokenBucket && algorithm != Algorithm::kGcra) p.burst = p.limit;
  }
  RC_PRE(validate_policy(p).has_value());
  const auto arrivals = *gen_arrivals(before);
  Sim old_sim{&before};
  for (const Arrival& a : arrivals) old_sim.decide(a.cost, a.at_us);
  const std::int64_t t =
      arrivals.back().at_us + *rc::gen::inRange<std::int64_t>(0, p.period.count() / 4 + 1);
  old_sim.expire(t);
  const std::optional<State> state = old_sim.state;

  const auto cost = *rc::gen::inRange<std::int64_t>(1, p.capacity());
  const Decision d = apply(p, state, cost, t).decision;
  RC_ASSERT(d.remaining >= 0);
  RC_ASSERT(d.remaining <= p.capacity());
  RC_ASSERT(d.reset_after.count() >= 0);
  if (!d.allowed) {
    RC_ASSERT(d.reason == DenyReason::kOverLimit);
    RC_ASSERT(d.retry_after.count() > 0);
    const std::int64_t at = t + d.retry_after.count();
    RC_ASSERT(apply(p, state, cost, at).decision.allowed);
    RC_ASSERT(!apply(p, state, cost, at - 1).decision.allowed);
  }
  Sim sim{&p};
  sim.state = state;
  sim.expires = old_sim.expires;
  std::int64_t admitted = 0;
  for (std::int64_t k = 0; k <= p.capacity(); ++k) admitted += sim.decide(1, t).allowed ? 1 : 0;
  RC_ASSERT(admitted <= p.capacity());
}

// A refund only gives back: whenever it comes, the state after it admits whatever the state
// before it admitted, reports no fewer remaining and is full again no later. In particular at the microsecond a bucket
// has refilled the charge by itself (cost * unit / rate after it, rounded up), from when there
// is nothing left to give back.
RC_GTEST_PROP(Refund, NeverTakesAway, ()) {
  const Policy p = *gen_policy(*gen_algorithm());
  const auto history = *gen_arrivals(p);
  Sim sim{&p};
  for (const Arrival& a : history) sim.decide(a.cost, a.at_us);
  const std::int64_t t1 = history.back().at_us + *rc::gen::inRange<std::int64_t>(0, 1000);
  const auto cost = *rc::gen::inRange<std::int64_t>(1, p.capacity());
  RC_PRE(sim.decide(cost, t1).allowed);
  std::int64_t refilled = *rc::gen::inRange<std::int64_t>(0, 2 * p.period.count());
  if (p.algorithm == Algorithm::kTokenBucket || p.algorithm == Algorithm::kGcra) {
    const BucketScale s = bucket_scale(p);
    refilled = (cost * s.unit + s.rate - 1) / s.rate;
  }
  const std::int64_t t2 = t1 + std::max<std::int64_t>(
                                   0, *rc::gen::element(refilled - 1, refilled, refilled + 1,
                                                        *rc::gen::inRange<std::int64_t>(
                                                            0, 2 * p.period.count())));
  Sim refunded = sim;
  refunded.refund(cost, t1, t2);
  RC_ASSERT(refunded.peek(t2).remaining >= sim.peek(t2).remaining);
  RC_ASSERT(refunded.peek(t2).reset_after <= sim.peek(t2).reset_after);
  for (std::int64_t q = 1; q <= std::min<std::int64_t>(p.capacity(), 64); ++q) {
    if (sim.admits(q, t2)) RC_ASSERT(refunded.admits(q, t2));
  }
}

}  // namespace
}  // namespace fg::core
