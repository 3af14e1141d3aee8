// deny_cache_bound — the memory a full deny cache costs, measured: fills one DenyCache to its
// capacity (deny_cache.max_entries) with denied plans of distinct identities, and prints the
// process RSS before and after, per entry (docs/operations.md has the figures):
//
//   build/release/bench/deny_cache_bound MAX_ENTRIES IDENTITY_BYTES CHARGES
//
// The worst case per entry is the longest identity the cache holds (kMaxCachedIdentityBytes,
// 256 bytes) and the most policies matching one request; each charge adds its decision.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "decide/deny_cache.h"
#include "rss.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MAX_ENTRIES IDENTITY_BYTES CHARGES\n", argv[0]);
    return 2;
  }
  const std::size_t max_entries = std::strtoull(argv[1], nullptr, 10);
  const std::size_t id_bytes = std::max<std::size_t>(12, std::strtoull(argv[2], nullptr, 10));
  const std::size_t charges = std::max<std::size_t>(1, std::strtoull(argv[3], nullptr, 10));

  std::vector<fg::Policy> policies(charges);
  fg::decide::Plan plan;
  fg::Verdict denied;
  for (std::size_t i = 0; i < charges; ++i) {
    policies[i].name = "p" + std::to_string(i);
    policies[i].limit = policies[i].burst = 10;
    policies[i].period = std::chrono::hours(1);
    plan.charges.push_back(fg::Charge{&policies[i], 1});
    plan.local_charges.push_back(fg::Charge{&policies[i], 1});
    plan.charge_identity.push_back(0);
    plan.policy_indices.push_back(i);
    denied.decisions.push_back(fg::Decision{false, fg::DenyReason::kOverLimit, 10, 0,
                                            std::chrono::hours(1), std::chrono::minutes(6)});
  }
  plan.identities.emplace_back();

  const long before = fg::bench::rss_kib();
  fg::decide::DenyCache cache(max_entries);
  for (std::size_t i = 0; i < 2 * cache.capacity(); ++i) {
    std::string id = std::to_string(i);
    id.insert(0, 12 - std::min<std::size_t>(12, id.size()), '0');
    id.append(id_bytes - id.size(), 'x');
    plan.identities.front() = std::move(id);
    cache.remember(plan, denied, 1);
  }
  const long after = fg::bench::rss_kib();
  const std::size_t held = cache.size();
  std::printf(
      "max_entries=%zu identity_bytes=%zu charges=%zu entries=%zu rss_per_entry_bytes=%.0f "
      "total_mib=%.1f\n",
      max_entries, id_bytes, charges, held,
      held == 0 ? 0.0 : (after - before) * 1024.0 / static_cast<double>(held),
      (after - before) / 1024.0);
  return held == cache.capacity() ? 0 : 1;
}
