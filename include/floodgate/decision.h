// decision.h — the answer to "may this request pass?".
//
// A Decision is made for one policy; a Verdict combines the decisions of every policy that
// applied to one request. Both are answers: "denied" is a Decision, not an error. When no
// decision could be made at all, callers get Result<Verdict> holding an Error instead.
//
// Units: durations are integer microseconds; the HTTP layer rounds them up to whole seconds.
// Thread safety: plain values.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "floodgate/clock.h"

namespace fg {

enum class DenyReason {
  kNone,              // allowed
  kOverLimit,         // not enough tokens now; retry_after says when there will be
  kCostExceedsBurst,  // cost > capacity: this request can never pass; retry_after is zero
};

std::string_view to_string(DenyReason r);

struct Decision {
  bool allowed = false;
  DenyReason reason = DenyReason::kNone;
  std::int64_t limit = 0;      // capacity: burst for buckets, limit for windows
  std::int64_t remaining = 0;  // whole tokens left after this request (>= 0)
  Duration reset_after{0};     // until the state is back to full (equivalent to no state)
  Duration retry_after{0};     // 0 when allowed; else until `cost` tokens exist (kOverLimit)

  friend bool operator==(const Decision&, const Decision&) = default;
};

// The outcome for one request over all the policies that matched it.
struct Verdict {
  bool allowed = false;  // every non-shadow policy allowed; then all consumed
  // One per policy, in the order they were given. Most requests match one or two policies: held
  // inline, a verdict costs no allocation.
  boost::container::small_vector<Decision, 2> decisions;
  std::size_t most_restrictive = 0;  // index into decisions: what the X-RateLimit-* headers show
  // The store's clock when the decision was taken: Redis TIME on the Redis stores, the store's
  // Clock on the memory store. A refund of this decision passes it back (store.h: RefundRequest).
  Timestamp decided_at{};

  const Decision& headline() const { return decisions.at(most_restrictive); }
};

}  // namespace fg
