// counter.h — the fixed-window counter that Envoy's ratelimit service (envoyproxy/ratelimit)
// decides with, as pure functions (public: the doors use it): a counter per descriptor and
// epoch-aligned window, to which every request adds its hits whatever the answer (INCRBY), over
// the limit when the counter passes it. What a store does with it: Store::count (store.h); who uses
// it: `floodgate rls` by default (src/rls/service.cc), for answers identical to upstream's.
//
//   count += hits                (always; see hits_to_add for the one exception)
//   over_limit       = count > limit
//   limit_remaining  = over ? 0 : limit - count
//   before           = count - hits   (unsigned, wrapping as upstream's arithmetic does when
//                                      fewer than `hits` were added: its counters use `before`)
//
// Worked example: limit 5, counter at 3; a request of 3 hits makes it 6: OVER_LIMIT; a request
// of 2 hits after it makes it 8: OVER_LIMIT again (floodgate's own algorithms would admit it:
// 3 + 2 fits), and the counter stays past the limit until its window ends.
//
// Units: seconds (upstream's unit lengths: unit_seconds() in config/envoy_descriptors.h).
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace fg::counter {

// The start of the window `now_s` lies in, windows of `unit_s` > 0 seconds aligned to the Unix
// epoch: (now_s / unit_s) * unit_s, upstream's key suffix.
std::int64_t window_start(std::int64_t now_s, std::int64_t unit_s);

// Seconds until that window ends: unit_s - now_s % unit_s (1 .. unit_s), upstream's
// duration_until_reset.
std::int64_t until_reset(std::int64_t now_s, std::int64_t unit_s);

// One descriptor's answer from its counter after this request.
struct Counted {
  std::uint64_t before = 0;  // after - hits, wrapping (see above)
  std::uint64_t after = 0;
  bool over = false;            // after > limit
  std::uint32_t remaining = 0;  // limit - after when within, else 0
};
Counted judge(std::uint64_t after, std::uint64_t hits, std::uint64_t limit);

// One descriptor of a request, before it is counted.
struct Pending {
  bool counted = false;      // has a counter (a limit, not unlimited); false: left alone
  bool cached_over = false;  // answered OVER_LIMIT by the local cache: never counted
  std::uint64_t hits = 0;
  std::uint64_t limit = 0;
  std::uint64_t current = 0;  // its counter now (read first), only with stop_when_over
};

// The hits each descriptor adds (0 for one not counted), by upstream's rules:
//   - a descriptor answered by the local cache adds nothing;
//   - without STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT every other one adds its hits;
//   - with it: when any descriptor was answered by the local cache, none adds anything; else,
//     when any descriptor's current + hits would pass its limit, only those add their hits (they
//     are counted over, the others are left as they are); else every one adds its hits.
std::vector<std::uint64_t> hits_to_add(std::span<const Pending> descriptors, bool stop_when_over);

}  // namespace fg::counter
