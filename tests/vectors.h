// vectors.h — the tables of cases in tests/vectors/*.yaml, loaded for any implementation.
//
// One file per algorithm (plus limiter.yaml for several policies at once). A case names its
// policies and a sequence of steps; each step is a request at a time offset from kVectorEpochUs
// with a cost, and the decision expected for every policy. The same cases run against the C++
// core (vectors_test.cc) and against the Lua scripts on a real Redis.
//
// Format:
//   cases:
//     - name: refills exactly at the boundary
//       policy: {algorithm: token_bucket, limit: 10, period: 1s, burst: 10}   # one policy, or
//       policies: [{name: a, ...}, {name: b, ...}]                             # several
//       steps:
//         - {at_us: 0, cost: 1, allowed: true, remaining: 9, reset_after_us: 100000,
//            retry_after_us: 0}                             # figures of the headline decision
//         - at_us: 5
//           allowed: false                                  # the verdict
//           decisions: [{allowed: true, remaining: 3}, {allowed: false, reason: over_limit}]
//         - {at_us: 7, refund: 0}    # gives back what step 0 (0-based, an allowed step) consumed:
//                                    # Store::refund at at_us of step 0's charges, consumed_at
//                                    # step 0's time, with step 0's decisions; checks nothing
//                                    # itself: the steps after it show its effect
//         - {at_us: 9, release: 2}  # gives back the concurrency slots step 2 took (its lease)
// Concurrency cases (algorithm: concurrency, `lease` for the period) live apart, in
// tests/vectors/concurrency/, and run against the memory store and fg_acquire_v4: their state
// is the leases, which only a store holds.
// Figures left out of a step are not checked. Durations in policies use the config syntax.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "floodgate/decision.h"
#include "floodgate/policy.h"

namespace fg::test {

// Day-aligned (20833 days after the epoch, in 2027), so windows of any period that divides a
// day start at offset 0.
inline constexpr std::int64_t kVectorEpochUs = 1'799'971'200'000'000;

struct ExpectedDecision {
  std::optional<bool> allowed;
  std::optional<std::int64_t> remaining;
  std::optional<std::int64_t> limit;
  std::optional<std::int64_t> reset_after_us;
  std::optional<std::int64_t> retry_after_us;
  std::optional<DenyReason> reason;
};

struct VectorStep {
  std::int64_t at_us = 0;  // offset from kVectorEpochUs
  std::int64_t cost = 1;
  std::optional<bool> allowed;                 // the verdict
  ExpectedDecision headline;                   // figures given at step level
  std::vector<ExpectedDecision> decisions;     // per policy, when given
  std::optional<std::size_t> headline_index;   // `headline: N`
  std::optional<std::size_t> refund_of;        // `refund: N`: a refund of step N, not a decision
  std::optional<std::size_t> release_of;       // `release: N`: step N's slots given back
  int line = 0;                                // in the YAML file, for messages
};

struct VectorCase {
  std::string file;
  std::string name;
  std::vector<Policy> policies;
  std::vector<VectorStep> steps;
};

// Loads every case of one file; aborts the test binary with a message on a malformed file.
std::vector<VectorCase> load_vectors(const std::string& path);
// tests/vectors/concurrency/concurrency.yaml.
std::vector<VectorCase> load_concurrency_vectors();
// Every tests/vectors/*.yaml.
std::vector<VectorCase> load_all_vectors();

// Compares a verdict with a step's expectations; returns "" or a description of the mismatch.
std::string compare(const VectorStep& step, const Verdict& verdict);

}  // namespace fg::test
