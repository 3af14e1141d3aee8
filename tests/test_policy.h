// test_policy.h — the one way tests make a Policy: from a name and a limit, everything else
// defaulted (a token bucket over 24 h, burst = limit, cost 1, enforced) unless named:
//
//   make_policy("per-day", 10)
//   make_policy("tight", 1, {.period = std::chrono::seconds(1)})
//   make_policy("p", 5, {.algorithm = Algorithm::kGcra, .period = 1s, .burst = 8, .shadow = true})
//
// Header-only; every test target has tests/ on its include path (fg_test).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "floodgate/clock.h"
#include "floodgate/policy.h"

namespace fg::test {

// The fields make_policy() lets a test choose, in Policy's order (designated initializers).
struct PolicyOptions {
  Algorithm algorithm = Algorithm::kTokenBucket;
  Duration period = std::chrono::hours(24);
  std::int64_t burst = 0;  // 0: the limit
  bool shadow = false;
};

inline Policy make_policy(std::string name, std::int64_t limit, PolicyOptions options = {}) {
  Policy p;
  p.name = std::move(name);
  p.algorithm = options.algorithm;
  p.limit = limit;
  p.period = options.period;
  p.burst = options.burst > 0 ? options.burst : limit;
  p.shadow = options.shadow;
  return p;
}

}  // namespace fg::test
