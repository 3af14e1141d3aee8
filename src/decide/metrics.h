// metrics.h — the counters behind GET /metrics, rendered in the Prometheus text exposition format
// (version 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// What: the HTTP server counts requests, decisions, store calls, degraded answers, proxied
// requests and connections on the hot path, through one ThreadMetrics shard per I/O thread, and
// Metrics::render() sums the shards into one text page. The families (all prefixed floodgate_):
//
//   http_requests_total{code}              counter, one series per status code seen (100-599;
//                                          anything else is code="other")
//   decisions_total{policy,outcome}        counter; outcome = allowed | denied | shadow_denied;
//                                          every policy named through policy_id() is printed,
//                                          zeros included; policy="_other" once it is non-zero
//   store_requests_total{result}           counter; ok | unavailable | timeout | circuit_open |
//                                          error, always all five
//   store_latency_seconds                  histogram of every store call except circuit_open
//                                          (no call was made); buckets kStoreLatencyBuckets
//   degraded_decisions_total{mode}         counter; allow | deny | local, always all three
//   upstream_requests_total{result}        counter; ok | unavailable | timeout, always all three
//   connections_total                      counter, connections accepted
//   connections_rejected_total             counter, connections refused over max_connections
//   open_connections                       gauge, accepted minus closed, over all shards
//   config_reloads_total{result}           counter; ok | error, always both
//   draining                               gauge 0/1
//   store_circuit_open                     gauge 0/1
//   build_info{version,store}              gauge, always 1; printed once set_info() was called
//   memory_store_keys{store}               gauge, states a memory store holds now
//   memory_store_capacity{store}           gauge, most states it may hold (memory.max_keys)
//   memory_store_evictions_total{store}    counter, states equivalent to no state (full bucket,
//                                          window over) dropped to make room for a new one
//   memory_store_refusals_total{store}     counter, decisions refused because the store was
//                                          full of states that still count (store="store": the
//                                          memory:// store; "local_fallback": on_store_error:
//                                          local's); one series per add_memory_store() call
//
// Every family has "# HELP" and "# TYPE" lines, even with no series yet. Label values are escaped
// as the format requires (\\, \", \n).
//
// Thread safety: a ThreadMetrics shard is updated with relaxed atomic read-modify-writes, so any
// thread may update any shard and no count is lost; the server gives each I/O thread its own
// shard so that the cache lines stay with one core (each shard is aligned to kShardAlignment
// bytes, and nothing else shares its lines). No method of ThreadMetrics takes a lock. Metrics'
// methods may be called from any thread; policy_id(), set_info() and render() take a mutex
// (config load time and scrape time only). render() reads the counters without stopping the
// writers: each series is exact as of some instant during the render, and a histogram's _count
// always equals its +Inf bucket (both are computed from the same bucket reads).
//
// Units: latencies are fg::Duration (integer µs); they are rendered in seconds (a decimal, e.g.
// 0.0015), as Prometheus conventions require. A negative latency counts as 0.
//
// Failure: none. Out-of-range arguments are folded, never rejected: a status outside 100-599 is
// code="other", a policy id >= kMaxPolicyIds counts as policy="_other", a shard index is taken
// modulo the number of shards.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "floodgate/clock.h"
#include "floodgate/store.h"

namespace fg::decide {

// One policy's part in one decision.
enum class PolicyOutcome { kAllowed, kDenied, kShadowDenied };
// One store call.
enum class StoreResult { kOk, kUnavailable, kTimeout, kCircuitOpen, kError };
// How a store failure was answered (on_store_error).
enum class DegradedMode { kAllow, kDeny, kLocal };
// One proxied request.
enum class UpstreamResult { kOk, kUnavailable, kTimeout };

// Distinct policy names counted; later names share one overflow id, labelled policy="_other".
// Configs hold a handful of policies; the bound only stops a process that reloads ever-new names
// from growing without end (each id costs 24 bytes per shard).
inline constexpr std::size_t kMaxPolicyIds = 1024;
// The overflow id, and its label value. A policy really named "_other" gets this id too (one
// series, never two with the same labels).
inline constexpr std::size_t kOtherPolicyId = kMaxPolicyIds;
inline constexpr std::string_view kOtherPolicyName = "_other";

// Upper bounds of the store latency buckets, in µs (0.1 ms ... 1 s; +Inf is implicit). A Redis
// call on a LAN takes 0.1-1 ms; the default store_timeout is well under a second.
inline constexpr std::array<std::int64_t, 13> kStoreLatencyBuckets = {
    100,    250,    500,     1'000,   2'500,   5'000,    10'000,
    25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000};

// The Content-Type of render()'s output.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Two cache lines: the adjacent-line prefetcher of x86 cores pulls lines in pairs, so 64-byte
// separation still lets two cores fight over a pair.
inline constexpr std::size_t kShardAlignment = 128;

// The counters of one I/O thread. Lock-free; see the file comment for thread safety.
class alignas(kShardAlignment) ThreadMetrics {
 public:
  ThreadMetrics() = default;
  ThreadMetrics(const ThreadMetrics&) = delete;
  ThreadMetrics& operator=(const ThreadMetrics&) = delete;

  // floodgate_http_requests_total{code="429"}; status 100-599, others counted as code="other".
  void on_request(int status);
  // floodgate_decisions_total{policy=...,outcome=...}; policy_id from Metrics::policy_id().
  void on_decision(std::size_t policy_id, PolicyOutcome o);
  // floodgate_store_requests_total{result=...} and, for every result except kCircuitOpen, the
  // histogram floodgate_store_latency_seconds.
  void on_store(StoreResult r, Duration latency);
  // floodgate_degraded_decisions_total{mode=...}.
  void on_degraded(DegradedMode m);
  // floodgate_upstream_requests_total{result=...}.
  void on_upstream(UpstreamResult r);
  // floodgate_connections_total, and the gauge floodgate_open_connections +1.
  void on_connection_open();
  // The gauge floodgate_open_connections -1.
  void on_connection_close();
  // floodgate_connections_rejected_total (over max_connections).
  void on_connection_rejected();

 private:
  friend class Metrics;

  static constexpr std::size_t kStatusSlots = 501;  // 100..599, then "other"
  static constexpr std::size_t kPolicySlots = kMaxPolicyIds + 1;
  static constexpr std::size_t kOutcomes = 3;
  static constexpr std::size_t kStoreResults = 5;
  static constexpr std::size_t kBuckets = kStoreLatencyBuckets.size() + 1;  // + the +Inf bucket
  static constexpr std::size_t kDegradedModes = 3;
  static constexpr std::size_t kUpstreamResults = 3;

  using Counter = std::atomic<std::uint64_t>;

  // Hot counters first, so that a request's updates touch few lines.
  std::array<Counter, kStoreResults> store_{};
  std::array<Counter, kBuckets> latency_buckets_{};  // per bucket, not cumulative
  Counter latency_sum_us_{0};
  std::array<Counter, kDegradedModes> degraded_{};
  std::array<Counter, kUpstreamResults> upstream_{};
  Counter connections_opened_{0};
  Counter connections_closed_{0};
  Counter connections_rejected_{0};
  std::array<Counter, kStatusSlots> requests_{};
  std::array<Counter, kPolicySlots * kOutcomes> decisions_{};
};

// The registry of shards and process-wide values. Thread-safe (see the file comment).
class Metrics {
 public:
  // `shards` >= 1 (0 is taken as 1); the server uses one per I/O thread.
  explicit Metrics(std::size_t shards);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Shard i modulo the number of shards. The reference is valid for the life of this Metrics.
  ThreadMetrics& shard(std::size_t i);
  std::size_t shard_count() const { return shard_count_; }

  // A stable id for a policy name for the life of the process: the same name always gets the same
  // id, so config reloads keep their counts. After kMaxPolicyIds distinct names, new names get
  // kOtherPolicyId. Takes a mutex: call when a config is loaded, not per request.
  std::size_t policy_id(std::string_view name);

  // floodgate_config_reloads_total{result="ok|error"}.
  void on_reload(bool ok);
  // The gauge floodgate_draining (0/1).
  void set_draining(bool draining);
  // The gauge floodgate_store_circuit_open (0/1).
  void set_circuit_open(bool open);
  // floodgate_build_info{version="0.1.0",store="redis-cluster"} 1. The last call wins.
  void set_info(std::string_view version, std::string_view store_kind);

  // Adds the floodgate_memory_store_* series labelled store="<name>", read from `stats` at every
  // render() (outside this registry's mutex; it may take the store's locks). `stats` must stay
  // callable for the life of this Metrics.
  void add_memory_store(std::string name, std::function<MemoryStoreStats()> stats);

  // The whole page, shards summed. Allocates; meant for the scrape handler.
  std::string render() const;

 private:
  std::size_t shard_count_;
  std::unique_ptr<ThreadMetrics[]> shards_;

  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_error_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> circuit_open_{false};

  mutable std::mutex mutex_;               // guards everything below
  std::vector<std::string> policy_names_;  // index = id
  std::unordered_map<std::string, std::size_t> policy_ids_;
  bool have_info_ = false;
  std::string version_;
  std::string store_kind_;
  std::vector<std::pair<std::string, std::function<MemoryStoreStats()>>> memory_stores_;
};

// `s` as a Prometheus label value, without the quotes: \ → \\, " → \", newline → \n.
std::string escape_label_value(std::string_view s);

}  // namespace fg::decide
