#include "floodgate/counter.h"

#include <algorithm>
#include <limits>

namespace fg::counter {

std::int64_t window_start(std::int64_t now_s, std::int64_t unit_s) {
  return (now_s / unit_s) * unit_s;
}

std::int64_t until_reset(std::int64_t now_s, std::int64_t unit_s) {
  return unit_s - now_s % unit_s;
}

Counted judge(std::uint64_t after, std::uint64_t hits, std::uint64_t limit) {
  Counted c;
  c.after = after;
  c.before = after - hits;  // wraps when fewer were added, as upstream's uint64 does
  c.over = after > limit;
  if (!c.over) {
    c.remaining = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(limit - after, std::numeric_limits<std::uint32_t>::max()));
  }
  return c;
}

std::vector<std::uint64_t> hits_to_add(std::span<const Pending> descriptors, bool stop_when_over) {
  bool any_cached = false;
  bool any_would_pass = false;
  for (const Pending& d : descriptors) {
    if (!d.counted) continue;
    any_cached = any_cached || d.cached_over;
    any_would_pass = any_would_pass || (!d.cached_over && d.current + d.hits > d.limit);
  }
  std::vector<std::uint64_t> hits(descriptors.size(), 0);
  for (std::size_t i = 0; i < descriptors.size(); ++i) {
    const Pending& d = descriptors[i];
    if (!d.counted || d.cached_over) continue;
    if (!stop_when_over) {
      hits[i] = d.hits;
    } else if (any_cached) {
      hits[i] = 0;
    } else if (!any_would_pass) {
      hits[i] = d.hits;
    } else {
      hits[i] = d.current + d.hits > d.limit ? d.hits : 0;
    }
  }
  return hits;
}

}  // namespace fg::counter
