// status.h — what GET /v1/status answers (docs/status.md, a stable contract) and what each
// instance publishes about itself for the fleet view.
//
// What: a StatusBoard is fed once a second by the server (sample(): the metrics' totals, the
// flags, the top denied identities) and turns the differences between samples into rates: requests
// per second, 2xx / 429 / degraded per second, per policy allowed / denied / shadow denied per
// second, the store latency p50 / p99 over the last 10 seconds (from the histogram's buckets), and
// a history of the last kHistorySeconds seconds. render() builds the whole /v1/status document from
// the last sample, the fleet (the records every live instance published, own included) and the
// store's nodes as the Fleet last read them.
//
// The request path pays nothing for it: the board reads the same counters /metrics reads, once a
// second, off the request path; /v1/status reads the board.
//
// Fleet: an implementation of Fleet (app/fleet.h: Redis) publishes record() under a key with a
// TTL of a few seconds and reads every live record back, at most once a second, off the request
// path; without one (the memory store) the fleet is this instance alone.
//
// Time is an argument: sample() and render() take `now` (wall time).
// Thread safety: every member of StatusBoard may be called from any thread (one mutex, taken once
// a second by sample() and per /v1/status request by render()). Fleet implementations say so too.
// Failure: none; a record that does not parse is left out of the fleet.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "decide/metrics.h"
#include "decide/plan.h"
#include "decide/top_denied.h"
#include "floodgate/clock.h"
#include "http/rate_limit_headers.h"

namespace fg::http {

// Seconds of history kept (one point a second).
inline constexpr std::size_t kHistorySeconds = 300;
// Identities shown in the top denied lists (this instance's, the fleet's).
inline constexpr std::size_t kTopDeniedShown = 20;
// The window of the latency percentiles, in samples (seconds).
inline constexpr std::size_t kLatencyWindow = 10;
// Records read from the fleet at most (bounded work per read, bounded page).
inline constexpr std::size_t kMaxFleetInstances = 64;

// What does not change while an instance runs.
struct InstanceInfo {
  std::string id;       // unique in the fleet: the main listener's "host:port"
  std::string address;  // where its dashboard is: the admin listener's "host:port", else the main
  std::string version;
  std::string store;  // Store::kind()
  int threads = 1;
  Timestamp started_at{};
};

// The live flags of one sample.
struct InstanceFlags {
  bool ready = true;  // /readyz would say 200
  bool draining = false;
  bool circuit_open = false;               // any node's circuit
  std::vector<std::string> open_circuits;  // the nodes whose circuit is open (Decider)
};

// The shared view of the fleet, as a Fleet last read it.
struct FleetView {
  std::vector<std::string> records;  // JSON objects (record()) of the live instances
  std::string store;                 // JSON object: the store's nodes (docs/status.md); "" unknown
  std::string error;                 // why the last read failed; "" when it did not
  Timestamp read_at{};               // when; epoch: never
};

// Where the instances meet. Implementations: app/fleet.h (Redis).
class Fleet {
 public:
  virtual ~Fleet() = default;
  // Hands over this instance's record, to be published at the next tick (at most once a second).
  // Thread-safe; never blocks on I/O.
  virtual void publish(std::string id, std::string record) = 0;
  // The last view read. Thread-safe; never blocks on I/O.
  virtual FleetView view() const = 0;
};

// The rate-limit fields a client saw on the last decision of a policy.
struct LastDecisionFields {
  std::string policy;
  bool allowed = false;
  Timestamp decided_at{};
  HeaderFields fields;
};

// The fields of `decision` of `policy` as a response carries them (rate_limit_headers(), in
// `style`: the policy's form on `listen`, config::header_style), plus Retry-After when denied.
LastDecisionFields last_decision_fields(const Policy& policy, const Decision& decision,
                                        Timestamp decided_at,
                                        const config::HeaderStyle& style = {});

class StatusBoard {
 public:
  explicit StatusBoard(InstanceInfo info);

  // Once a second: the totals now, the configuration in force (policies and their metric ids),
  // the flags, this instance's top denied identities.
  void sample(Timestamp now, const decide::MetricsTotals& totals, const decide::Rules& rules,
              const InstanceFlags& flags, std::vector<decide::DeniedCount> top_denied);

  // This instance as the fleet sees it: a JSON object ("instance" of docs/status.md, with its
  // policies and top_denied), as of the last sample.
  std::string record() const;
  const InstanceInfo& info() const { return info_; }

  // The /v1/status document. `fleet`: null without a Fleet (the fleet is this instance).
  // `last`: the chosen policy's last decision, if any.
  std::string render(Timestamp now, const FleetView* fleet,
                     const std::optional<LastDecisionFields>& last) const;

 private:
  struct Point {
    std::int64_t t_s = 0;  // Unix seconds
    double requests = 0, allowed = 0, denied = 0, degraded = 0;
  };

  InstanceInfo info_;
  mutable std::mutex mutex_;
  std::optional<Timestamp> last_at_;
  decide::MetricsTotals last_;
  // Latency bucket snapshots of the last kLatencyWindow + 1 samples, oldest first.
  std::deque<std::array<std::uint64_t, decide::kStoreLatencyBuckets.size() + 1>> latency_;
  std::deque<Point> history_;
  std::string record_;  // JSON object, rebuilt by sample()
};

// The q-quantile (0 < q < 1) of a histogram over kStoreLatencyBuckets, per bucket counts (not
// cumulative, the last one +Inf), in milliseconds, interpolated linearly inside the bucket it
// falls in (the +Inf bucket answers the last bound); nullopt when the histogram is empty.
// Example: counts {0, 10, 0, ...} (ten calls in (100 µs, 250 µs]) → p50 = 0.175 ms.
std::optional<double> histogram_quantile_ms(
    const std::array<std::uint64_t, decide::kStoreLatencyBuckets.size() + 1>& counts, double q);

}  // namespace fg::http
