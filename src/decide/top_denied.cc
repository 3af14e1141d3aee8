#include "decide/top_denied.h"

#include <algorithm>
#include <map>
#include <utility>

#include "decide/identity.h"

namespace fg::decide {

void SpaceSaving::add(std::string_view key) {
  if (auto it = index_.find(key); it != index_.end()) {
    ++entries_[it->second].count;
    return;
  }
  const std::string k(key);
  if (entries_.size() < capacity_) {
    index_.emplace(k, entries_.size());
    entries_.push_back(Entry{k, 1, 0});
    return;
  }
  // Full: the least counted entry gives its place, and its count becomes the newcomer's error
  // (the newcomer may have occurred up to that many times while not monitored). A linear scan:
  // capacity is 64, and this runs only for an identity not already monitored.
  std::size_t least = 0;
  for (std::size_t i = 1; i < entries_.size(); ++i) {
    if (entries_[i].count < entries_[least].count) least = i;
  }
  Entry& e = entries_[least];
  index_.erase(e.key);
  e.error = e.count;
  e.count += 1;
  e.key = k;
  index_.emplace(k, least);
}

TopDenied::TopDenied(std::size_t capacity) {
  util::process_hash_key();  // drawn now, at start (keyed_hash.h)
  for (Stripe& s : stripes_) s.slices.assign(kSlices, Slice{-1, SpaceSaving(capacity)});
}

void TopDenied::add(std::string_view identity, Timestamp now, std::size_t stripe) {
  const std::int64_t number = to_us(now) / kSlice.count();
  Stripe& s = stripes_[stripe % kStripes];
  std::lock_guard lock(s.mutex);
  const std::int64_t at = std::max(number, s.newest);
  s.newest = at;
  Slice& slice = s.slices[static_cast<std::size_t>(at) % kSlices];
  if (slice.number != at) {
    slice.summary.clear();
    slice.number = at;
  }
  slice.summary.add(identity);
}

std::vector<DeniedCount> TopDenied::top(Timestamp now, std::size_t n) const {
  const std::int64_t newest = to_us(now) / kSlice.count();
  const std::int64_t oldest = newest - static_cast<std::int64_t>(kSlices) + 1;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> sum;  // raw identity
  for (const Stripe& s : stripes_) {
    std::lock_guard lock(s.mutex);
    for (const Slice& slice : s.slices) {
      // A slice newer than `now` (the clock stepped back) still counts: it was the newest.
      if (slice.number < oldest || slice.number < 0) continue;
      for (const SpaceSaving::Entry& e : slice.summary.entries()) {
        auto& [count, error] = sum[e.key];
        count += e.count;
        error += e.error;
      }
    }
  }
  // Shown identities may coincide (two raw keys with one hash prefix): merged as one.
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> shown;
  for (const auto& [identity, ce] : sum) {
    auto& [count, error] = shown[loggable_identity(identity)];
    count += ce.first;
    error += ce.second;
  }
  std::vector<DeniedCount> out;
  out.reserve(shown.size());
  for (auto& [identity, ce] : shown) out.push_back(DeniedCount{identity, ce.first, ce.second});
  std::sort(out.begin(), out.end(), [](const DeniedCount& a, const DeniedCount& b) {
    return a.denials != b.denials ? a.denials > b.denials : a.identity < b.identity;
  });
  if (out.size() > n) out.resize(n);
  return out;
}

}  // namespace fg::decide
