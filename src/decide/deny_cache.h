// deny_cache.h — denials a shared store gave, answered again by this instance without asking it,
// until the earliest moment the store could allow them (issue: hot keys without Redis).
//
// Why it is exact. A shared store (Redis) answers a denied plan with, per denying policy, a
// retry_after: the time until that policy holds `cost` again if nobody consumes. Capacity only
// comes back with time (every algorithm refills at its rate, windows roll), and other instances
// can only take more, so the store would deny the same identity and policies, for the same or a
// greater cost, for at least that long. The cache measures that time from when this instance
// ASKED (before the store's TIME at the decision, whatever the clock offset between them), on a
// monotonic clock, so it always ends no later than the store's own retry_after: it never denies
// what the store would allow. Tests: deny_cache_test (unit), deny_cache_redis_test (against a
// real Redis, every cached denial checked by asking Redis the same question at that moment).
//
// The one exception is a refund (store.h): a request allowed BEFORE the cached denial and given
// back AFTER it (its body never came; a later identity of the same request denied) returns
// capacity the cache does not see, for at most the cached retry_after. This instance forgets
// the plans it gives back itself (forget()); another instance's refund it cannot see.
//
// What is remembered: a denied Verdict of an enforced plan (no shadow policy in it: their
// denials must be counted as they happen), keyed by its identities, which identity each charge
// counts per, and each charge's policy index. A lookup answers when, for some charge that
// denied, the plan asks at least the cost that was denied and that charge's retry_after has not
// run out; the answer is the cached Verdict with every duration shortened by the time elapsed.
//
// Bounded: at most `max_entries` plans (each holding its identities, at most
// kMaxCachedIdentityBytes bytes in all: longer ones are not cached), over kShards shards with a
// mutex each, each holding its share (max_entries / kShards, one more for the first
// max_entries % kShards). A full shard drops expired entries it meets, else its oldest-looking one;
// dropping an entry is always safe (the store is asked again). Cleared by a reload: each Rules has
// its own.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "decide/plan.h"
#include "floodgate/decision.h"

namespace fg::decide {

// Plans whose identities are longer in all are not cached (a client's key of any length must not
// make the cache's memory grow beyond its documented bound).
inline constexpr std::size_t kMaxCachedIdentityBytes = 256;

class DenyCache {
 public:
  static constexpr std::size_t kShards = 16;

  explicit DenyCache(std::size_t max_entries);
  DenyCache(const DenyCache&) = delete;
  DenyCache& operator=(const DenyCache&) = delete;

  // Whether `plan` may be cached at all: no shadow policy, identities short enough.
  static bool cacheable(const Plan& plan);

  // The cached denial of `plan` at monotonic time `now_us`, durations shortened by the time since
  // it was asked; nullopt when there is none that still holds for the plan's costs.
  std::optional<Verdict> lookup(const Plan& plan, std::int64_t now_us);

  // Remembers `denied` (a store's Verdict for `plan`, not allowed), asked at monotonic time
  // `asked_us` (taken before the store call). Nothing when no enforced charge denied with a
  // retry_after, or the plan is not cacheable.
  void remember(const Plan& plan, const Verdict& denied, std::int64_t asked_us);

  // Forgets `plan` (this instance gave back what it consumed).
  void forget(const Plan& plan);

  std::size_t size() const;
  std::size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    boost::container::small_vector<std::string, 1> identities;
    boost::container::small_vector<std::uint8_t, 4> charge_identity;
    boost::container::small_vector<std::size_t, 4> policy_indices;
    boost::container::small_vector<std::int64_t, 4> costs;
    Verdict verdict;
    std::int64_t asked_us = 0;
    std::int64_t until_us = 0;  // the latest end of a denying charge's retry_after
  };
  struct alignas(128) Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::uint64_t, Entry> entries;
    std::size_t capacity = 0;  // its share of max_entries (0: it caches nothing)
  };

  static std::uint64_t hash(const Plan& plan);
  static bool same(const Entry& e, const Plan& plan);
  Shard& shard_of(std::uint64_t h) { return shards_[h % kShards]; }

  std::size_t capacity_;  // max_entries: the shards' capacities add up to it
  std::array<Shard, kShards> shards_;
};

}  // namespace fg::decide
