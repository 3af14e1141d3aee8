// top_denied.h — who is being limited: the identities denied most often by this instance over the
// last minute, in bounded memory (docs/status.md, "top_denied").
//
// What: a Space-Saving summary (Metwally, Agrawal, El Abbadi, "Efficient Computation of Frequent
// and Top-k Elements in Data Streams", ICDT 2005) of at most `capacity` identities per 10-second
// slice; the last kSlices slices (the current one, partial, and the five before it) make the
// minute. Space-Saving keeps a counter per monitored identity; an identity not monitored when the
// summary is full takes the place of the one with the smallest count c and starts at c + 1 with
// error c. So a count over-estimates by at most its error, and every identity denied more than
// N / capacity times in a slice of N denials is monitored. Worked example, capacity 2: a, a, b, c
// → a 2 (error 0), c 2 (error 1: it replaced b's 1).
//
// Memory: stripes × slices × capacity entries, each an identity (at most a few hundred bytes,
// identity.h) and two counters: 4 × 6 × 64 ≈ 1,500 entries at most.
//
// Threads: add() and top() may be called from any thread. Each stripe has its own mutex; the
// server passes each I/O thread's own stripe (`stripe`, taken modulo kStripes), so denials on
// different threads do not contend. top() sums the stripes (an identity seen by several
// threads: its counts and errors are added) and the slices of the window.
//
// Time is an argument (`now`, wall time): a slice is [k × 10 s, (k + 1) × 10 s) since the epoch.
// A time earlier than the newest slice seen is counted in the newest slice (time going backwards
// neither loses nor resurrects counts).
//
// Identities are kept as given and shown by top() as the access log shows them
// (decide::loggable_identity): API keys only as a hash prefix.
//
// Failure: none.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "floodgate/clock.h"
#include "util/keyed_hash.h"

namespace fg::decide {

struct DeniedCount {
  std::string identity;       // as loggable_identity() shows it
  std::uint64_t denials = 0;  // over-estimate by at most `error`
  std::uint64_t error = 0;

  friend bool operator==(const DeniedCount&, const DeniedCount&) = default;
};

// One Space-Saving summary. Not thread-safe.
class SpaceSaving {
 public:
  explicit SpaceSaving(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // Counts one occurrence of `key`.
  void add(std::string_view key);
  void clear() {
    entries_.clear();
    index_.clear();
  }
  struct Entry {
    std::string key;
    std::uint64_t count = 0;
    std::uint64_t error = 0;
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::size_t capacity_;
  std::vector<Entry> entries_;
  // Heterogeneous lookup: a denial of a monitored identity allocates nothing.
  // -> entries_
  std::unordered_map<std::string, std::size_t, util::KeyedHash, std::equal_to<>> index_;
};

class TopDenied {
 public:
  static constexpr std::size_t kDefaultCapacity = 64;
  static constexpr std::size_t kSlices = 6;
  static constexpr std::size_t kStripes = 4;
  static constexpr Duration kSlice = std::chrono::seconds(10);

  explicit TopDenied(std::size_t capacity = kDefaultCapacity);

  // Counts one denial of `identity` at `now`, in stripe `stripe` (mod kStripes).
  void add(std::string_view identity, Timestamp now, std::size_t stripe = 0);

  // The `n` identities with the most denials in the minute ending at `now`, most first (ties by
  // identity), identities as loggable_identity() shows them.
  std::vector<DeniedCount> top(Timestamp now, std::size_t n) const;

 private:
  struct Slice {
    std::int64_t number = -1;  // now / kSlice; -1: never used
    SpaceSaving summary;
  };
  struct alignas(128) Stripe {
    mutable std::mutex mutex;
    std::int64_t newest = -1;
    std::vector<Slice> slices;  // kSlices, slice k at k % kSlices
  };
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace fg::decide
