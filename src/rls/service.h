// service.h — the Envoy Rate Limit Service as a thin mapping over the deciding layer: a
// RateLimitRequest's descriptors are matched against the descriptor tree
// (config/envoy_descriptors.h), each descriptor that has a limit becomes a Plan for the Decider
// (decide/decider.h), and the Outcomes become the RateLimitResponse envoyproxy/ratelimit would
// give: overall_code, per-descriptor statuses, headers, dynamic metadata, and its per-rule
// counters (RuleMetrics).
//
// Counting (decide_descriptors() in service.cc is the one place that chooses): by default each
// descriptor is counted as envoyproxy/ratelimit counts it (floodgate/counter.h: a counter per
// descriptor and epoch-aligned window under upstream's key, every hit added with Store::count,
// OVER_LIMIT past the limit, STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT and the local cache of
// over-limit keys as upstream applies them), so the answers are upstream's. Rules that opt in
// (`algorithm:`, FLOODGATE_RLS_ALGORITHM) are decided instead by floodgate's Decider: all of a
// request's opted-in descriptors in one Plan, one atomic all-or-nothing store call on Redis TIME,
// with the deny cache, the circuit breaker and on_store_error.
//
// Thread safety: should_rate_limit() and should_rate_limit_async() may be called from any thread,
// concurrently; set_config() swaps the configuration atomically (requests in flight finish with
// the one they started with).
// Time: `now` comes from the Clock given at construction (upstream's duration_until_reset is
// computed from the instance's wall clock too).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "config/envoy_descriptors.h"
#include "decide/circuit_breaker.h"
#include "decide/decider.h"
#include "decide/plan.h"
#include "envoy/service/ratelimit/v3/rls.pb.h"
#include "floodgate/clock.h"
#include "floodgate/result.h"
#include "rls/settings.h"

namespace fg::rls {

// Upstream's per-rule counters, keyed by the rule's stats key ("domain.key_value.key2"), and its
// service counters; rendered as Prometheus series (ratelimit_service_rate_limit_total_hits{domain,
// rule}, ...). Thread-safe.
class RuleMetrics {
 public:
  struct Counters {
    std::atomic<std::uint64_t> total_hits{0}, over_limit{0}, near_limit{0}, within_limit{0},
        shadow_mode{0}, over_limit_with_local_cache{0};
  };
  Counters& rule(const std::string& stats_key);

  std::atomic<std::uint64_t> config_load_success{0}, config_load_error{0};
  std::atomic<std::uint64_t> service_error{0}, redis_error{0}, global_shadow_mode{0};

  // Every series in the Prometheus text format.
  std::string prometheus() const;

 private:
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::unique_ptr<Counters>> rules_;
};

// A loaded configuration: the tree, and the Rules the Decider reads (on_store_error, deny cache).
struct Snapshot {
  config::envoy::DescriptorConfig tree;
  std::shared_ptr<decide::Rules> rules;
};

class Service {
 public:
  // `decider` must outlive the service.
  Service(const Settings& settings, decide::Decider& decider, const Clock& clock);
  ~Service();

  // Decides `request` into `response`. kInvalidArgument for a request upstream refuses (empty
  // domain, no descriptors) or when no configuration is loaded; kUnavailable when the store could
  // not decide and on_store_error does not answer for it.
  Result<void> should_rate_limit(const envoy::service::ratelimit::v3::RateLimitRequest& request,
                                 envoy::service::ratelimit::v3::RateLimitResponse& response);

  // The same, answered through `done` (exactly once, with should_rate_limit's result) on the
  // thread the store completes on: before it returns for the memory store, on the Redis store's
  // I/O thread otherwise. Nothing waits. `request` and `response` must live until `done`.
  using Done = std::function<void(Result<void>)>;
  void should_rate_limit_async(const envoy::service::ratelimit::v3::RateLimitRequest& request,
                               envoy::service::ratelimit::v3::RateLimitResponse& response,
                               Done done);

  void set_config(std::shared_ptr<const Snapshot> snapshot);
  std::shared_ptr<const Snapshot> config() const;
  RuleMetrics& metrics() { return metrics_; }

  // Upstream's local cache of over-limit counter keys (LOCAL_CACHE_SIZE_IN_BYTES), until their
  // window ends. Thread-safe.
  class OverLimitCache;
  // The bytes that cache holds, as counted against LOCAL_CACHE_SIZE_IN_BYTES: each key and
  // OverLimitCache::kEntryOverhead (0 without the cache).
  std::size_t local_cache_bytes() const;

 private:
  struct Item;
  struct Call;
  using Counted = std::function<void(std::shared_ptr<Call>, Result<std::vector<std::int64_t>>)>;
  Result<void> match(Call& c);
  // The one choice of how each descriptor is counted (see the header comment), then the answer.
  // The call fails (kUnavailable) when the store could not answer and
  // FLOODGATE_RLS_ON_STORE_ERROR is `error`.
  void decide_descriptors(std::shared_ptr<Call> call);
  Result<void> apply_opted_in(Call& c, const decide::Outcome& o);
  void count_descriptors(std::shared_ptr<Call> call);
  void count_then(std::shared_ptr<Call> call, const std::vector<std::uint64_t>& hits, Counted next);
  void looked(std::shared_ptr<Call> call, Result<std::vector<std::int64_t>> current);
  void counted(std::shared_ptr<Call> call, Result<std::vector<std::int64_t>> after);
  void answer(std::shared_ptr<Call> call);

  const Settings settings_;
  decide::Decider& decider_;
  const Clock& clock_;
  RuleMetrics metrics_;
  std::unique_ptr<OverLimitCache> over_limit_cache_;  // null without LOCAL_CACHE_SIZE_IN_BYTES
  decide::CircuitBreaker counter_breaker_;            // the counters' store calls
  mutable std::mutex config_mutex_;
  std::shared_ptr<const Snapshot> config_;
};

// The Snapshot for a runtime directory (settings.config_dir()), with the Rules a store of
// `settings` needs: the deny cache when LOCAL_CACHE_SIZE_IN_BYTES > 0.
Result<std::shared_ptr<const Snapshot>> load_snapshot(const Settings& settings);

}  // namespace fg::rls
