// limiter.h — the all-or-nothing decision over several policies, as a pure function.
//
// A request is checked against every policy that matched it. It is allowed only if every
// non-shadow policy allows it; then every policy that allowed consumes `cost`. If one denies,
// none consumes anything. evaluate() computes that from the policies' stored states and `now`,
// and says which states to write; a store runs it while it holds the identity's keys (the memory
// store under its shard lock; the Redis store mirrors it line for line in Lua, in one script run).
//
// State is three integers whose meaning depends on the algorithm (see src/core/algorithms.h);
// Refunds (store.h) are the other pure function here: plan_refund().
//
// "no state" (std::nullopt) always means "full bucket / empty window", so a store may drop state
// whose ttl has passed without changing any decision.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/policy.h"

namespace fg {

struct State {
  std::int64_t a = 0;
  std::int64_t b = 0;
  std::int64_t c = 0;
  friend bool operator==(const State&, const State&) = default;
};

// One policy applied to one request, with the tokens this request takes from it.
struct Charge {
  const Policy* policy = nullptr;
  std::int64_t cost = 1;
};

struct StateWrite {
  std::size_t index = 0;  // into the charges
  State state;
  Duration ttl{0};        // after this long, the state is equivalent to no state
};

struct Evaluation {
  Verdict verdict;
  // Empty unless the request was allowed and consumed something; inline for a few policies.
  boost::container::small_vector<StateWrite, 4> writes;
};

// `states[i]` is the stored state of `charges[i]`'s policy for this identity (nullopt if none).
// Precondition: states.size() == charges.size(), at least one charge, every policy valid.
Evaluation evaluate(std::span<const Charge> charges, std::span<const std::optional<State>> states,
                    Timestamp now);

// The writes that give back what an allowed evaluate() at `consumed_at` consumed (store.h:
// Store::refund): `charges[i].cost` is what charge i consumed (0 for one that consumed nothing),
// `states[i]` its stored state now. A write whose ttl is 0 deletes the state (it has become
// equivalent to none); a charge with nothing to give back has no write. Same preconditions as
// evaluate().
std::vector<StateWrite> plan_refund(std::span<const Charge> charges,
                                    std::span<const std::optional<State>> states,
                                    Timestamp consumed_at, Timestamp now);

// Which decision the rate-limit headers report: a denying non-shadow policy first (the one
// that makes the client wait longest), else the non-shadow one with the least remaining (then
// the longest reset). Shadow policies head the report only when every policy is in shadow mode.
std::size_t most_restrictive(std::span<const Charge> charges, std::span<const Decision> decisions);

// The three integers every implementation of `policy`'s algorithm derives from it, so that a
// store deciding elsewhere (the Redis store's Lua function) does exactly the core's arithmetic:
//   token bucket, GCRA:  burst, scaled units per token, scaled units refilled per µs
//   sliding window:      limit, period in µs, time granule in µs
//   fixed window:        limit, period in µs, 0
//   concurrency:         limit (slots), lease in µs, 0
struct AlgorithmParameters {
  std::int64_t p1 = 0;
  std::int64_t p2 = 0;
  std::int64_t p3 = 0;
};
AlgorithmParameters algorithm_parameters(const Policy& policy);

}  // namespace fg
