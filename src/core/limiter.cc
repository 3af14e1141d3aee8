#include "floodgate/limiter.h"

#include <cassert>

#include "core/algorithms.h"

namespace fg {

std::size_t most_restrictive(std::span<const Charge> charges, std::span<const Decision> decisions) {
  std::size_t best = 0;
  bool best_denies = false;
  bool best_enforced = false;
  for (std::size_t i = 0; i < decisions.size(); ++i) {
    const Decision& d = decisions[i];
    const bool enforced = !charges[i].policy->shadow;
    const bool denies = !d.allowed && enforced;
    if (i == 0) {
      best_denies = denies;
      best_enforced = enforced;
      continue;
    }
    const Decision& b = decisions[best];
    bool better;
    if (denies != best_denies) {
      better = denies;
    } else if (enforced != best_enforced) {
      // A shadow policy is never what the client must respect: it heads the fields only when
      // every matching policy is in shadow mode.
      better = enforced;
    } else if (denies) {
      better = d.retry_after > b.retry_after;
    } else {
      better = d.remaining < b.remaining ||
               (d.remaining == b.remaining && d.reset_after > b.reset_after);
    }
    if (better) {
      best = i;
      best_denies = denies;
      best_enforced = enforced;
    }
  }
  return best;
}

Evaluation evaluate(std::span<const Charge> charges, std::span<const std::optional<State>> states,
                    Timestamp now) {
  assert(charges.size() == states.size() && !charges.empty());
  const std::int64_t now_us = to_us(now);
  // Decisions go straight into the verdict and writes into their vector, both held inline for a
  // few policies (this runs on every request): no allocation, reserved once beyond that.
  Evaluation out;
  auto& decisions = out.verdict.decisions;
  decisions.reserve(charges.size());
  bool allowed = true;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    const core::Step step = core::apply(*charges[i].policy, states[i], charges[i].cost, now_us);
    if (!step.decision.allowed && !charges[i].policy->shadow) allowed = false;
    if (allowed && step.write) {
      // Collected while every policy so far allows; dropped below if a later one denies.
      if (out.writes.empty()) out.writes.reserve(charges.size() - i);
      out.writes.push_back(StateWrite{i, step.next, step.ttl});
    }
    decisions.push_back(step.decision);
  }
  out.verdict.allowed = allowed;
  out.verdict.decided_at = now;
  if (!allowed) {
    out.writes.clear();
    for (std::size_t i = 0; i < charges.size(); ++i) {
      // Another policy denied: this one consumes nothing, so report what it holds untouched.
      if (decisions[i].allowed) {
        decisions[i] = core::apply(*charges[i].policy, states[i], 0, now_us).decision;
      }
    }
  }
  out.verdict.most_restrictive = most_restrictive(charges, decisions);
  return out;
}

std::vector<StateWrite> plan_refund(std::span<const Charge> charges,
                                    std::span<const std::optional<State>> states,
                                    Timestamp consumed_at, Timestamp now) {
  assert(charges.size() == states.size());
  std::vector<StateWrite> writes;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    const core::RefundStep step = core::refund(*charges[i].policy, states[i], charges[i].cost,
                                               to_us(consumed_at), to_us(now));
    if (step.write) writes.push_back(StateWrite{i, step.next, step.ttl});
  }
  return writes;
}

AlgorithmParameters algorithm_parameters(const Policy& p) {
  switch (p.algorithm) {
    case Algorithm::kTokenBucket:
    case Algorithm::kGcra: {
      const core::BucketScale s = core::bucket_scale(p);
      return {p.burst, s.unit, s.rate};
    }
    case Algorithm::kSlidingWindow:
      return {p.limit, p.period.count(), core::window_granule_us(p)};
    case Algorithm::kFixedWindow:
      return {p.limit, p.period.count(), 0};
    case Algorithm::kConcurrency:
      return {p.limit, p.period.count(), 0};  // slots, lease in µs
  }
  return {};
}

}  // namespace fg
