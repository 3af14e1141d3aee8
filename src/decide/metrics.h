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
//   deny_cache_hits_total                  counter, requests denied from the deny cache, without
//                                          a store call (decide/deny_cache.h)
//   upstream_requests_total{result}        counter; ok | unavailable | timeout | no_memory (a
//                                          response over server.max_response_memory), all four
//   connections_total                      counter, connections accepted
//   connections_rejected_total             counter, connections refused over max_connections
//   open_connections                       gauge, accepted minus closed, over all shards
//   config_reloads_total{result}           counter; ok | error, always both
//   draining                               gauge 0/1
//   store_circuit_open                     gauge 0/1: 1 while any node's circuit is open
//   store_node_circuit_open{node}          gauge 0/1 per store node (a cluster master, "host:port")
//                                          whose circuit has opened at least once
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
// Counters of the Redis store client, summed over every source given to add_redis_source() (the
// server registers its Redis store's stats(), which sum the store's threads; a thread's counts
// stay after it unbinds). The families are printed only once a source is registered, so an
// instance on the memory store shows none of them:
//   redis_calls_total                      counter, store calls (decisions and refunds) completed,
//                                          answered or failed
//   redis_errors_total                     counter, of those, the failed ones (timeouts included)
//   redis_timeouts_total                   counter, of those, the ones past store_timeout
//   redis_redirects_total{kind}            counter; moved | ask, both always: cluster
//                                          redirections followed (MOVED also updates the slot)
//   redis_retries_total                    counter, retries with backoff decided: answers
//                                          TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, READONLY,
//                                          BUSY, a connection lost before the command was written,
//                                          redirections without end (counted also when the
//                                          deadline then ends the call instead)
//   redis_function_loads_total{reason}     counter; connect | missing, both always: FUNCTION
//                                          LOAD sent at the head of the connection that loads
//                                          the library on a node (one per node and store, at
//                                          each of its connects), and again after "Function
//                                          not found" / NOSCRIPT
//   redis_slot_refreshes_total             counter, CLUSTER SLOTS refreshes started (cluster)
//   redis_connections_total{event}         counter; opened | lost | failed, always all three:
//                                          connections established, established ones lost,
//                                          attempts that never got established
//   redis_reconnects_total                 counter, connections established again to a node
//                                          after the previous one to it was lost (per thread)
//   redis_pipeline_commands_per_write      histogram of the commands carried by each socket
//                                          write (auto-pipelining depth); buckets
//                                          kPipelineDepthBuckets; _sum is the commands written,
//                                          _count the writes
//
// Connections of the upstream pools (proxy mode), summed over every source given to
// add_upstream_source() (the server: every I/O thread's pools, across reloads). Printed once a
// source is registered:
//   upstream_connections_total{event}      counter; opened | reused | retried | closed |
//                                          connect_failed, always all five: connections
//                                          established, idle ones taken from a pool, reused ones
//                                          found closed upstream and retried on a new one,
//                                          established ones closed (either side, any reason;
//                                          opened - closed are open now), resolves or connects
//                                          that failed or timed out
//   upstream_held_exchanges                gauge; upstream exchanges of concurrency-limited
//                                          requests held past their client's 504 now (their
//                                          slots stay taken until the upstream answers)
//   upstream_response_bytes                gauge; bytes of upstream response bodies held now
//                                          (server.max_response_memory bounds it)
//
// Every family above has "# HELP" and "# TYPE" lines, even with no series yet (the redis_ and
// upstream_connections families: once a source is registered). Label values are escaped as the
// format requires (\\, \", \n).
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
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/store.h"

namespace fg::decide {

// One policy's part in one decision.
enum class PolicyOutcome { kAllowed, kDenied, kShadowDenied };
// One store call.
enum class StoreResult { kOk, kUnavailable, kTimeout, kCircuitOpen, kError };
// How a store failure was answered (on_store_error).
enum class DegradedMode { kAllow, kDeny, kLocal };
// One proxied request.
// kNoMemory: the response did not fit server.max_response_memory (answered 503).
enum class UpstreamResult { kOk, kUnavailable, kTimeout, kNoMemory };

// Distinct policy names counted; later names share one overflow id, labelled policy="_other".
// Configs hold a handful of policies; the bound only stops a process that reloads ever-new names
// from growing without end (each id costs 24 bytes per shard).
inline constexpr std::size_t kMaxPolicyIds = 1024;
// The overflow id, and its label value. A policy really named "_other" gets this id too (one
// series, never two with the same labels).
inline constexpr std::size_t kOtherPolicyId = kMaxPolicyIds;
inline constexpr std::string_view kOtherPolicyName = "_other";
// Policies whose last decision is kept for GET /v1/status (ThreadMetrics::on_last_decision).
inline constexpr std::size_t kLastDecisionPolicies = 64;

// Upper bounds of the store latency buckets, in µs (0.1 ms ... 1 s; +Inf is implicit). A Redis
// call on a LAN takes 0.1-1 ms; the default store_timeout is well under a second.
inline constexpr std::array<std::int64_t, 13> kStoreLatencyBuckets = {
    100,    250,    500,     1'000,   2'500,   5'000,    10'000,
    25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000};

// Upper bounds of floodgate_redis_pipeline_commands_per_write's buckets, in commands per socket
// write (+Inf is implicit). One decision alone is 1; under load, auto-pipelining puts every
// decision made during the previous write into the next one.
inline constexpr std::array<std::uint64_t, 9> kPipelineDepthBuckets = {1,  2,  4,   8,  16,
                                                                       32, 64, 128, 256};

// What a Redis store client has done, as plain numbers (this module knows no store type; the
// server fills it from the store's own statistics). Every field only grows.
struct RedisClientCounters {
  std::uint64_t calls = 0;     // store calls completed, answered or failed
  std::uint64_t errors = 0;    // of which failed (timeouts included)
  std::uint64_t timeouts = 0;  // of which past the deadline
  std::uint64_t moved = 0;     // MOVED redirections followed
  std::uint64_t asks = 0;      // ASK redirections followed
  std::uint64_t retries = 0;   // retries with backoff decided (TRYAGAIN, CLUSTERDOWN, ...)
  std::uint64_t function_loads_connect = 0;  // FUNCTION LOAD at the head of a connection
  std::uint64_t function_loads_missing = 0;  // reloads after "Function not found" / NOSCRIPT
  std::uint64_t slot_refreshes = 0;          // CLUSTER SLOTS refreshes started
  std::uint64_t connects = 0;                // connections established
  std::uint64_t disconnects = 0;             // established connections lost
  std::uint64_t connect_failures = 0;        // attempts never established
  std::uint64_t reconnects = 0;              // connections established again after a loss
  // Writes by commands carried: [i] counts those of at most kPipelineDepthBuckets[i] commands and
  // more than the bound before it (not cumulative); the last, more than 256.
  std::array<std::uint64_t, kPipelineDepthBuckets.size() + 1> writes_by_commands{};
  std::uint64_t commands_written = 0;  // commands carried by those writes
};

// What the upstream pools have done with their connections, as plain numbers. Every field only
// grows.
struct UpstreamConnectionCounters {
  std::uint64_t opened = 0;          // connections established
  std::uint64_t reused = 0;          // idle connections taken from a pool
  std::uint64_t retried = 0;         // reused connections found closed upstream, retried
  std::uint64_t closed = 0;          // established connections closed
  std::uint64_t connect_failed = 0;  // resolves or connects that failed or timed out
  std::uint64_t held = 0;  // exchanges held past their client's 504 now (a gauge, not a count)
  std::uint64_t response_bytes = 0;  // response body bytes held now (a gauge)
};

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
  // Not a Prometheus family: the last decision of a policy (ids below kLastDecisionPolicies),
  // for GET /v1/status's rate-limit headers. Six relaxed stores to this shard's own lines.
  void on_last_decision(std::size_t policy_id, const Decision& d, Timestamp decided_at);
  // floodgate_store_requests_total{result=...} and, for every result except kCircuitOpen, the
  // histogram floodgate_store_latency_seconds.
  void on_store(StoreResult r, Duration latency);
  // floodgate_degraded_decisions_total{mode=...}.
  void on_degraded(DegradedMode m);
  // floodgate_deny_cache_hits_total.
  void on_deny_cache_hit();
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
  static constexpr std::size_t kUpstreamResults = 4;

  using Counter = std::atomic<std::uint64_t>;

  // Hot counters first, so that a request's updates touch few lines.
  std::array<Counter, kStoreResults> store_{};
  std::array<Counter, kBuckets> latency_buckets_{};  // per bucket, not cumulative
  Counter latency_sum_us_{0};
  std::array<Counter, kDegradedModes> degraded_{};
  Counter deny_cache_hits_{0};
  std::array<Counter, kUpstreamResults> upstream_{};
  Counter connections_opened_{0};
  Counter connections_closed_{0};
  Counter connections_rejected_{0};
  std::array<Counter, kStatusSlots> requests_{};
  std::array<Counter, kPolicySlots * kOutcomes> decisions_{};

  struct LastDecision {
    std::atomic<std::int64_t> decided_at_us{0};  // 0: none yet
    std::atomic<std::int64_t> limit{0};
    std::atomic<std::int64_t> remaining{0};
    std::atomic<std::int64_t> reset_after_us{0};
    std::atomic<std::int64_t> retry_after_us{0};
    std::atomic<int> allowed_reason{0};  // allowed | reason << 1
  };
  std::array<LastDecision, kLastDecisionPolicies> last_{};
};

// Every counter the status page reads, summed over the shards (Metrics::totals()).
struct MetricsTotals {
  std::array<std::uint64_t, 501> requests_by_status{};  // [status - 100]; [500]: other
  std::uint64_t requests = 0;                           // all of them
  // Per policy id (Metrics::policy_id), up to the last registered id: allowed, denied,
  // shadow_denied.
  std::vector<std::array<std::uint64_t, 3>> decisions;
  std::array<std::uint64_t, kStoreLatencyBuckets.size() + 1> latency_buckets{};  // not cumulative
  std::uint64_t store_calls = 0;  // timed store calls (the histogram's count)
  std::uint64_t degraded = 0;     // all modes
  std::uint64_t deny_cache_hits = 0;
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

  // The gauge floodgate_concurrency_in_flight{policy}: the concurrency slots this instance holds
  // now for `policy_id` (a concurrency policy), over every identity. declare_in_flight() makes a
  // policy's series appear (at 0) before its first request; add_in_flight() moves it (lock free).
  void declare_in_flight(std::size_t policy_id);
  void add_in_flight(std::size_t policy_id, std::int64_t delta);
  std::int64_t in_flight(std::size_t policy_id) const;

  // floodgate_config_reloads_total{result="ok|error"}.
  void on_reload(bool ok);
  // The gauge floodgate_draining (0/1).
  void set_draining(bool draining);
  // The gauge floodgate_store_circuit_open (0/1): any node's circuit open.
  void set_circuit_open(bool open);
  // The gauge floodgate_store_node_circuit_open{node="<node>"} (0/1); a node appears at its
  // first call and stays. Takes the mutex: call on a circuit's transitions, not per request.
  void set_node_circuit_open(std::string node, bool open);
  // floodgate_build_info{version="0.1.0",store="redis-cluster"} 1. The last call wins.
  void set_info(std::string_view version, std::string_view store_kind);

  // Adds the floodgate_memory_store_* series labelled store="<name>", read from `stats` at every
  // render() (outside this registry's mutex; it may take the store's locks). `stats` must stay
  // callable for the life of this Metrics.
  void add_memory_store(std::string name, std::function<MemoryStoreStats()> stats);

  // Adds a source of the floodgate_redis_* families: `counters` is called at every render()
  // (outside this registry's mutex; it may take the store's locks) and the sources are summed.
  // `counters` must stay callable for the life of this Metrics.
  void add_redis_source(std::function<RedisClientCounters()> counters);
  // The same for floodgate_upstream_connections_total.
  void add_upstream_source(std::function<UpstreamConnectionCounters()> counters);

  // The whole page, shards summed. Allocates; meant for the scrape handler.
  std::string render() const;
  // The counters GET /v1/status reads, shards summed. Allocates; about once a second.
  MetricsTotals totals() const;
  // The newest decision of `policy_id` over the shards (ids below kLastDecisionPolicies), with
  // when it was taken; nullopt before the first. Its fields are read without a lock: a decision
  // taken during the read may mix with the one before it.
  std::optional<std::pair<Decision, Timestamp>> last_decision(std::size_t policy_id) const;
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  bool circuit_open() const { return circuit_open_.load(std::memory_order_relaxed); }

 private:
  std::size_t shard_count_;
  std::unique_ptr<ThreadMetrics[]> shards_;

  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_error_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> circuit_open_{false};
  // Per policy id (the last: _other): slots held now, and whether the series is shown.
  std::unique_ptr<std::atomic<std::int64_t>[]> in_flight_;
  std::unique_ptr<std::atomic<bool>[]> in_flight_shown_;

  mutable std::mutex mutex_;               // guards everything below
  std::vector<std::string> policy_names_;  // index = id
  std::unordered_map<std::string, std::size_t> policy_ids_;
  bool have_info_ = false;
  std::string version_;
  std::string store_kind_;
  std::vector<std::pair<std::string, std::function<MemoryStoreStats()>>> memory_stores_;
  std::vector<std::function<RedisClientCounters()>> redis_sources_;
  std::vector<std::function<UpstreamConnectionCounters()>> upstream_sources_;
  std::map<std::string, bool> node_circuits_;  // node name -> open
};

// `s` as a Prometheus label value, without the quotes: \ → \\, " → \", newline → \n.
std::string escape_label_value(std::string_view s);

}  // namespace fg::decide
