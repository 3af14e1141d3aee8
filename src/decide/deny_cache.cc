#include "decide/deny_cache.h"

#include <algorithm>
#include <functional>
#include <string_view>

#include "util/keyed_hash.h"

namespace fg::decide {
namespace {

// Entries a full shard looks at for an expired one before it drops one that still holds.
constexpr int kScanOnFull = 8;

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  // boost::hash_combine's step, widened to 64 bits.
  return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 12) + (h >> 4));
}

Duration shortened(Duration d, std::int64_t elapsed_us) {
  return std::max(Duration::zero(), d - Duration(elapsed_us));
}

}  // namespace

DenyCache::DenyCache(std::size_t max_entries) : capacity_(max_entries) {
  for (std::size_t i = 0; i < kShards; ++i) {
    shards_[i].capacity = max_entries / kShards + (i < max_entries % kShards ? 1 : 0);
  }
  util::process_hash_key();  // drawn now, at start (keyed_hash.h)
}

bool DenyCache::cacheable(const Plan& plan) {
  if (plan.charges.empty()) return false;
  for (const Charge& c : plan.charges) {
    if (c.policy == nullptr || c.policy->shadow) return false;
  }
  std::size_t bytes = 0;
  for (const std::string& id : plan.identities) bytes += id.size();
  return bytes <= kMaxCachedIdentityBytes;
}

std::uint64_t DenyCache::hash(const Plan& plan) {
  std::uint64_t h = plan.charges.size();
  for (const std::string& id : plan.identities) h = mix(h, util::keyed_hash(id));
  for (std::size_t i = 0; i < plan.charges.size(); ++i) {
    h = mix(h, plan.policy_indices[i]);
    h = mix(h, plan.charge_identity[i]);
  }
  return h;
}

bool DenyCache::same(const Entry& e, const Plan& plan) {
  return std::ranges::equal(e.identities, plan.identities) &&
         std::ranges::equal(e.charge_identity, plan.charge_identity) &&
         std::ranges::equal(e.policy_indices, plan.policy_indices);
}

std::optional<Verdict> DenyCache::lookup(const Plan& plan, std::int64_t now_us) {
  if (!cacheable(plan)) return std::nullopt;
  const std::uint64_t h = hash(plan);
  Shard& s = shard_of(h);
  std::lock_guard lock(s.mutex);
  const auto it = s.entries.find(h);
  if (it == s.entries.end()) return std::nullopt;
  const Entry& e = it->second;
  if (now_us >= e.until_us) {
    s.entries.erase(it);
    return std::nullopt;
  }
  if (!same(e, plan)) return std::nullopt;
  const std::int64_t elapsed = std::max<std::int64_t>(0, now_us - e.asked_us);
  // Still denied if some charge that denied asks at least as much now and has not had the time
  // to refill it.
  bool holds = false;
  for (std::size_t i = 0; i < e.costs.size() && !holds; ++i) {
    const Decision& d = e.verdict.decisions[i];
    holds = !d.allowed && d.reason == DenyReason::kOverLimit &&
            plan.charges[i].cost >= e.costs[i] && d.retry_after.count() > elapsed;
  }
  if (!holds) return std::nullopt;
  Verdict v = e.verdict;
  for (Decision& d : v.decisions) {
    d.retry_after = shortened(d.retry_after, elapsed);
    d.reset_after = shortened(d.reset_after, elapsed);
  }
  v.decided_at += Duration(elapsed);
  return v;
}

void DenyCache::remember(const Plan& plan, const Verdict& denied, std::int64_t asked_us) {
  if (denied.allowed || denied.decisions.size() != plan.charges.size() || !cacheable(plan)) return;
  std::int64_t longest = 0;
  for (const Decision& d : denied.decisions) {
    if (!d.allowed && d.reason == DenyReason::kOverLimit) {
      longest = std::max<std::int64_t>(longest, d.retry_after.count());
    }
  }
  if (longest <= 0) return;
  const std::uint64_t h = hash(plan);
  Shard& s = shard_of(h);
  std::lock_guard lock(s.mutex);
  if (s.capacity == 0) return;
  if (s.entries.size() >= s.capacity && !s.entries.contains(h)) {
    // Make room: an expired entry among the first few, else the first one (always safe).
    auto victim = s.entries.begin();
    int scanned = 0;
    for (auto it = s.entries.begin(); it != s.entries.end() && scanned < kScanOnFull;
         ++it, ++scanned) {
      if (it->second.until_us <= asked_us) {
        victim = it;
        break;
      }
    }
    s.entries.erase(victim);
  }
  Entry& e = s.entries[h];
  e.identities.assign(plan.identities.begin(), plan.identities.end());
  e.charge_identity.assign(plan.charge_identity.begin(), plan.charge_identity.end());
  e.policy_indices.assign(plan.policy_indices.begin(), plan.policy_indices.end());
  e.costs.clear();
  for (const Charge& c : plan.charges) e.costs.push_back(c.cost);
  e.verdict = denied;
  e.asked_us = asked_us;
  e.until_us = asked_us + longest;
}

void DenyCache::forget(const Plan& plan) {
  if (!cacheable(plan)) return;
  const std::uint64_t h = hash(plan);
  Shard& s = shard_of(h);
  std::lock_guard lock(s.mutex);
  const auto it = s.entries.find(h);
  if (it != s.entries.end() && same(it->second, plan)) s.entries.erase(it);
}

std::size_t DenyCache::size() const {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.entries.size();
  }
  return n;
}

}  // namespace fg::decide
