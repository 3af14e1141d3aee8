#include "decide/metrics.h"

#include <algorithm>
#include <cstdio>

namespace fg::decide {
namespace {

// fetch_add, not load+store: a shard normally has one writer, but nothing stops two threads from
// sharing one (shard(i) folds i), and an uncontended locked add on a line the core already owns
// costs a few nanoseconds.
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
  c.fetch_add(n, std::memory_order_relaxed);
}

std::uint64_t read(const std::atomic<std::uint64_t>& c) {
  return c.load(std::memory_order_relaxed);
}

constexpr std::array<std::string_view, 3> kOutcomeNames = {"allowed", "denied", "shadow_denied"};
constexpr std::array<std::string_view, 5> kStoreResultNames = {"ok", "unavailable", "timeout",
                                                               "circuit_open", "error"};
constexpr std::array<std::string_view, 3> kDegradedModeNames = {"allow", "deny", "local"};
constexpr std::array<std::string_view, 4> kUpstreamResultNames = {"ok", "unavailable", "timeout",
                                                                  "no_memory"};

// The le labels of kStoreLatencyBuckets, as Prometheus client libraries print them.
constexpr std::array<std::string_view, kStoreLatencyBuckets.size() + 1> kBucketLabels = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",     "+Inf"};

// µs as decimal seconds with no trailing zeros: 1500 → "0.0015", 2000000 → "2", 0 → "0". Exact
// (no double rounding), so a sum of integer µs renders as exactly that sum.
std::string format_seconds(std::uint64_t us) {
  std::string out = std::to_string(us / 1'000'000);
  std::uint64_t frac = us % 1'000'000;
  if (frac != 0) {
    char digits[8];
    std::snprintf(digits, sizeof digits, "%06llu", static_cast<unsigned long long>(frac));
    std::string_view d(digits, 6);
    while (d.back() == '0') d.remove_suffix(1);
    out.push_back('.');
    out += d;
  }
  return out;
}

void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out += "# HELP ";
  out += name;
  out.push_back(' ');
  out += help;  // constants below: no '\' or newline to escape
  out += "\n# TYPE ";
  out += name;
  out.push_back(' ');
  out += type;
  out.push_back('\n');
}

// name{label="value"} n — `value` escaped here.
void append_sample(std::string& out, std::string_view name, std::string_view label,
                   std::string_view value, std::uint64_t n) {
  out += name;
  out.push_back('{');
  out += label;
  out += "=\"";
  out += escape_label_value(value);
  out += "\"} ";
  out += std::to_string(n);
  out.push_back('\n');
}

void append_sample(std::string& out, std::string_view name, std::uint64_t n) {
  out += name;
  out.push_back(' ');
  out += std::to_string(n);
  out.push_back('\n');
}

template <std::size_t N>
void append_fixed_family(std::string& out, std::string_view name, std::string_view help,
                         std::string_view label, const std::array<std::string_view, N>& values,
                         const std::array<std::uint64_t, N>& counts) {
  append_header(out, name, "counter", help);
  for (std::size_t i = 0; i < N; ++i) append_sample(out, name, label, values[i], counts[i]);
}

// The le labels of kPipelineDepthBuckets.
constexpr std::array<std::string_view, kPipelineDepthBuckets.size() + 1> kPipelineDepthLabels = {
    "1", "2", "4", "8", "16", "32", "64", "128", "256", "+Inf"};

void append_counter(std::string& out, std::string_view name, std::string_view help,
                    std::uint64_t n) {
  append_header(out, name, "counter", help);
  append_sample(out, name, n);
}

// The floodgate_redis_* families, the sources summed (each called once).
void append_redis_families(std::string& out,
                           const std::vector<std::function<RedisClientCounters()>>& sources) {
  RedisClientCounters t;
  for (const auto& source : sources) {
    const RedisClientCounters c = source();
    t.calls += c.calls;
    t.errors += c.errors;
    t.timeouts += c.timeouts;
    t.moved += c.moved;
    t.asks += c.asks;
    t.retries += c.retries;
    t.function_loads_connect += c.function_loads_connect;
    t.function_loads_missing += c.function_loads_missing;
    t.slot_refreshes += c.slot_refreshes;
    t.connects += c.connects;
    t.disconnects += c.disconnects;
    t.connect_failures += c.connect_failures;
    t.reconnects += c.reconnects;
    for (std::size_t i = 0; i < t.writes_by_commands.size(); ++i) {
      t.writes_by_commands[i] += c.writes_by_commands[i];
    }
    t.commands_written += c.commands_written;
  }

  append_counter(out, "floodgate_redis_calls_total",
                 "Redis store calls (decisions and refunds) completed, answered or failed.",
                 t.calls);
  append_counter(out, "floodgate_redis_errors_total",
                 "Redis store calls that failed, timeouts included.", t.errors);
  append_counter(out, "floodgate_redis_timeouts_total",
                 "Redis store calls that failed past store_timeout.", t.timeouts);
  append_fixed_family(out, "floodgate_redis_redirects_total",
                      "Redis Cluster redirections followed, by kind.", "kind",
                      std::array<std::string_view, 2>{"moved", "ask"},
                      std::array<std::uint64_t, 2>{t.moved, t.asks});
  append_counter(out, "floodgate_redis_retries_total",
                 "Redis commands retried with backoff (TRYAGAIN, CLUSTERDOWN, LOADING, READONLY, "
                 "BUSY, a connection lost before the write).",
                 t.retries);
  append_fixed_family(
      out, "floodgate_redis_function_loads_total",
      "FUNCTION LOAD of the floodgate library, by reason (connect: at the head of "
      "the connection that loads it on a node; missing: after Function not found or NOSCRIPT).",
      "reason", std::array<std::string_view, 2>{"connect", "missing"},
      std::array<std::uint64_t, 2>{t.function_loads_connect, t.function_loads_missing});
  append_counter(out, "floodgate_redis_slot_refreshes_total",
                 "Redis Cluster slot map refreshes (CLUSTER SLOTS) started.", t.slot_refreshes);
  append_fixed_family(out, "floodgate_redis_connections_total",
                      "Redis connections, by event (opened: established; lost: established and "
                      "then lost; failed: never established).",
                      "event", std::array<std::string_view, 3>{"opened", "lost", "failed"},
                      std::array<std::uint64_t, 3>{t.connects, t.disconnects, t.connect_failures});
  append_counter(out, "floodgate_redis_reconnects_total",
                 "Redis connections established again to a node after the previous one was lost.",
                 t.reconnects);

  // Histogram: cumulative buckets; _count is the +Inf bucket, from the same values.
  constexpr std::string_view kName = "floodgate_redis_pipeline_commands_per_write";
  append_header(out, kName, "histogram",
                "Redis commands carried by each socket write (auto-pipelining depth).");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < t.writes_by_commands.size(); ++b) {
    cumulative += t.writes_by_commands[b];
    out += kName;
    out += "_bucket{le=\"";
    out += kPipelineDepthLabels[b];
    out += "\"} ";
    out += std::to_string(cumulative);
    out.push_back('\n');
  }
  out += kName;
  out += "_sum ";
  out += std::to_string(t.commands_written);
  out.push_back('\n');
  out += kName;
  out += "_count ";
  out += std::to_string(cumulative);
  out.push_back('\n');
}

// floodgate_upstream_connections_total, the sources summed (each called once).
void append_upstream_families(
    std::string& out, const std::vector<std::function<UpstreamConnectionCounters()>>& sources) {
  std::array<std::uint64_t, 5> t{};
  std::uint64_t held = 0;
  std::uint64_t response_bytes = 0;
  for (const auto& source : sources) {
    const UpstreamConnectionCounters c = source();
    held += c.held;
    response_bytes += c.response_bytes;
    t[0] += c.opened;
    t[1] += c.reused;
    t[2] += c.retried;
    t[3] += c.closed;
    t[4] += c.connect_failed;
  }
  append_fixed_family(
      out, "floodgate_upstream_connections_total",
      "Upstream (proxy) connections, by event (opened - closed are open now; retried: a reused "
      "connection found closed upstream, the request sent on a new one).",
      "event",
      std::array<std::string_view, 5>{"opened", "reused", "retried", "closed", "connect_failed"},
      t);
  append_header(out, "floodgate_upstream_held_exchanges", "gauge",
                "Upstream exchanges held past their client's 504 now: their concurrency slots stay "
                "taken until the upstream answers (upstream_hold_timeout).");
  append_sample(out, "floodgate_upstream_held_exchanges", held);
  append_header(out, "floodgate_upstream_response_bytes", "gauge",
                "Bytes of upstream response bodies held now, being read or written to clients "
                "(server.max_response_memory).");
  append_sample(out, "floodgate_upstream_response_bytes", response_bytes);
}

}  // namespace

std::string escape_label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// --- ThreadMetrics -------------------------------------------------------------------------------

void ThreadMetrics::on_request(int status) {
  const std::size_t slot =
      status >= 100 && status <= 599 ? static_cast<std::size_t>(status - 100) : kStatusSlots - 1;
  bump(requests_[slot]);
}

void ThreadMetrics::on_decision(std::size_t policy_id, PolicyOutcome o) {
  const std::size_t id = std::min(policy_id, kOtherPolicyId);
  bump(decisions_[id * kOutcomes + static_cast<std::size_t>(o)]);
}

void ThreadMetrics::on_last_decision(std::size_t policy_id, const Decision& d,
                                     Timestamp decided_at) {
  if (policy_id >= kLastDecisionPolicies) return;
  LastDecision& l = last_[policy_id];
  constexpr auto r = std::memory_order_relaxed;
  l.limit.store(d.limit, r);
  l.remaining.store(d.remaining, r);
  l.reset_after_us.store(d.reset_after.count(), r);
  l.retry_after_us.store(d.retry_after.count(), r);
  l.allowed_reason.store((d.allowed ? 1 : 0) | static_cast<int>(d.reason) << 1, r);
  // Last and released: a reader that sees this time sees the fields above (or newer ones).
  l.decided_at_us.store(std::max<std::int64_t>(to_us(decided_at), 1), std::memory_order_release);
}

void ThreadMetrics::on_store(StoreResult r, Duration latency) {
  bump(store_[static_cast<std::size_t>(r)]);
  if (r == StoreResult::kCircuitOpen) return;  // no call was made: nothing to time
  const std::int64_t us = std::max<std::int64_t>(latency.count(), 0);
  // 13 bounds: a linear scan is as fast as a binary search and the common case (sub-ms) exits
  // in the first few compares.
  std::size_t b = 0;
  while (b < kStoreLatencyBuckets.size() && us > kStoreLatencyBuckets[b]) ++b;
  bump(latency_buckets_[b]);
  bump(latency_sum_us_, static_cast<std::uint64_t>(us));
}

void ThreadMetrics::on_degraded(DegradedMode m) { bump(degraded_[static_cast<std::size_t>(m)]); }

void ThreadMetrics::on_upstream(UpstreamResult r) { bump(upstream_[static_cast<std::size_t>(r)]); }

void ThreadMetrics::on_connection_open() { bump(connections_opened_); }

void ThreadMetrics::on_connection_close() { bump(connections_closed_); }

void ThreadMetrics::on_connection_rejected() { bump(connections_rejected_); }

void ThreadMetrics::on_deny_cache_hit() { bump(deny_cache_hits_); }

// --- Metrics -------------------------------------------------------------------------------------

Metrics::Metrics(std::size_t shards)
    : shard_count_(std::max<std::size_t>(shards, 1)),
      shards_(std::make_unique<ThreadMetrics[]>(shard_count_)),
      in_flight_(std::make_unique<std::atomic<std::int64_t>[]>(kOtherPolicyId + 1)),
      in_flight_shown_(std::make_unique<std::atomic<bool>[]>(kOtherPolicyId + 1)) {}

ThreadMetrics& Metrics::shard(std::size_t i) { return shards_[i % shard_count_]; }

std::size_t Metrics::policy_id(std::string_view name) {
  if (name == kOtherPolicyName) return kOtherPolicyId;
  std::lock_guard lock(mutex_);
  std::string key(name);
  if (auto it = policy_ids_.find(key); it != policy_ids_.end()) return it->second;
  if (policy_names_.size() >= kMaxPolicyIds) return kOtherPolicyId;
  const std::size_t id = policy_names_.size();
  policy_names_.push_back(key);
  policy_ids_.emplace(std::move(key), id);
  return id;
}

void Metrics::on_reload(bool ok) { bump(ok ? reloads_ok_ : reloads_error_); }

void Metrics::declare_in_flight(std::size_t policy_id) {
  in_flight_shown_[std::min(policy_id, kOtherPolicyId)].store(true, std::memory_order_relaxed);
}

void Metrics::add_in_flight(std::size_t policy_id, std::int64_t delta) {
  const std::size_t i = std::min(policy_id, kOtherPolicyId);
  in_flight_shown_[i].store(true, std::memory_order_relaxed);
  in_flight_[i].fetch_add(delta, std::memory_order_relaxed);
}

std::int64_t Metrics::in_flight(std::size_t policy_id) const {
  return in_flight_[std::min(policy_id, kOtherPolicyId)].load(std::memory_order_relaxed);
}

void Metrics::set_draining(bool draining) { draining_.store(draining, std::memory_order_relaxed); }

void Metrics::set_circuit_open(bool open) { circuit_open_.store(open, std::memory_order_relaxed); }

void Metrics::set_node_circuit_open(std::string node, bool open) {
  std::lock_guard lock(mutex_);
  node_circuits_[std::move(node)] = open;
}

void Metrics::set_info(std::string_view version, std::string_view store_kind) {
  std::lock_guard lock(mutex_);
  have_info_ = true;
  version_ = version;
  store_kind_ = store_kind;
}

void Metrics::add_memory_store(std::string name, std::function<MemoryStoreStats()> stats) {
  std::lock_guard lock(mutex_);
  memory_stores_.emplace_back(std::move(name), std::move(stats));
}

void Metrics::add_redis_source(std::function<RedisClientCounters()> counters) {
  std::lock_guard lock(mutex_);
  redis_sources_.push_back(std::move(counters));
}

void Metrics::add_upstream_source(std::function<UpstreamConnectionCounters()> counters) {
  std::lock_guard lock(mutex_);
  upstream_sources_.push_back(std::move(counters));
}

MetricsTotals Metrics::totals() const {
  using T = ThreadMetrics;
  std::size_t policies = 0;
  {
    std::lock_guard lock(mutex_);
    policies = policy_names_.size();
  }
  MetricsTotals t;
  t.decisions.assign(policies, {});
  for (std::size_t s = 0; s < shard_count_; ++s) {
    const ThreadMetrics& m = shards_[s];
    for (std::size_t i = 0; i < T::kStatusSlots; ++i) {
      const std::uint64_t n = read(m.requests_[i]);
      t.requests_by_status[i] += n;
      t.requests += n;
    }
    for (std::size_t id = 0; id < policies; ++id) {
      for (std::size_t o = 0; o < T::kOutcomes; ++o) {
        t.decisions[id][o] += read(m.decisions_[id * T::kOutcomes + o]);
      }
    }
    for (std::size_t i = 0; i < T::kBuckets; ++i) {
      const std::uint64_t n = read(m.latency_buckets_[i]);
      t.latency_buckets[i] += n;
      t.store_calls += n;
    }
    for (std::size_t i = 0; i < T::kDegradedModes; ++i) t.degraded += read(m.degraded_[i]);
    t.deny_cache_hits += read(m.deny_cache_hits_);
  }
  return t;
}

std::optional<std::pair<Decision, Timestamp>> Metrics::last_decision(std::size_t policy_id) const {
  if (policy_id >= kLastDecisionPolicies) return std::nullopt;
  std::optional<std::pair<Decision, Timestamp>> newest;
  constexpr auto r = std::memory_order_relaxed;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    const ThreadMetrics::LastDecision& l = shards_[s].last_[policy_id];
    const std::int64_t at = l.decided_at_us.load(std::memory_order_acquire);
    if (at == 0 || (newest && to_us(newest->second) >= at)) continue;
    Decision d;
    const int ar = l.allowed_reason.load(r);
    d.allowed = (ar & 1) != 0;
    d.reason = static_cast<DenyReason>(ar >> 1);
    d.limit = l.limit.load(r);
    d.remaining = l.remaining.load(r);
    d.reset_after = Duration(l.reset_after_us.load(r));
    d.retry_after = Duration(l.retry_after_us.load(r));
    newest.emplace(d, from_us(at));
  }
  return newest;
}

std::string Metrics::render() const {
  using T = ThreadMetrics;

  std::vector<std::string> names;
  bool have_info = false;
  std::string version, store_kind;
  std::vector<std::pair<std::string, std::function<MemoryStoreStats()>>> memory_sources;
  std::vector<std::function<RedisClientCounters()>> redis_sources;
  std::vector<std::function<UpstreamConnectionCounters()>> upstream_sources;
  std::map<std::string, bool> node_circuits;
  {
    std::lock_guard lock(mutex_);
    node_circuits = node_circuits_;
    names = policy_names_;
    memory_sources = memory_stores_;
    redis_sources = redis_sources_;
    upstream_sources = upstream_sources_;
    have_info = have_info_;
    version = version_;
    store_kind = store_kind_;
  }

  // Sum the shards. Each counter is read once; everything printed derives from these reads.
  std::array<std::uint64_t, T::kStatusSlots> requests{};
  std::vector<std::uint64_t> decisions((names.size() + 1) * T::kOutcomes, 0);  // last: _other
  std::array<std::uint64_t, T::kStoreResults> store{};
  std::array<std::uint64_t, T::kBuckets> buckets{};
  std::uint64_t latency_sum_us = 0;
  std::array<std::uint64_t, T::kDegradedModes> degraded{};
  std::array<std::uint64_t, T::kUpstreamResults> upstream{};
  std::uint64_t opened = 0, closed = 0, rejected = 0, deny_cache_hits = 0;

  for (std::size_t s = 0; s < shard_count_; ++s) {
    const ThreadMetrics& m = shards_[s];
    for (std::size_t i = 0; i < T::kStatusSlots; ++i) requests[i] += read(m.requests_[i]);
    for (std::size_t id = 0; id <= names.size(); ++id) {
      // Registered ids are 0..names.size()-1; row names.size() collects kOtherPolicyId.
      const std::size_t src = id < names.size() ? id : kOtherPolicyId;
      for (std::size_t o = 0; o < T::kOutcomes; ++o) {
        decisions[id * T::kOutcomes + o] += read(m.decisions_[src * T::kOutcomes + o]);
      }
    }
    for (std::size_t i = 0; i < T::kStoreResults; ++i) store[i] += read(m.store_[i]);
    for (std::size_t i = 0; i < T::kBuckets; ++i) buckets[i] += read(m.latency_buckets_[i]);
    latency_sum_us += read(m.latency_sum_us_);
    for (std::size_t i = 0; i < T::kDegradedModes; ++i) degraded[i] += read(m.degraded_[i]);
    for (std::size_t i = 0; i < T::kUpstreamResults; ++i) upstream[i] += read(m.upstream_[i]);
    // Closes before opens: a close follows its open, so reading in this order rarely sees a close
    // without its open. Relaxed loads do not promise it, hence the clamp below.
    closed += read(m.connections_closed_);
    opened += read(m.connections_opened_);
    rejected += read(m.connections_rejected_);
    deny_cache_hits += read(m.deny_cache_hits_);
  }

  std::string out;
  out.reserve(4096 + names.size() * 3 * 80);

  // Requests: only the codes seen.
  {
    constexpr std::string_view kName = "floodgate_http_requests_total";
    append_header(out, kName, "counter", "HTTP responses sent, by status code.");
    for (std::size_t i = 0; i < T::kStatusSlots; ++i) {
      if (requests[i] == 0) continue;
      const std::string code = i + 1 < T::kStatusSlots ? std::to_string(100 + i) : "other";
      append_sample(out, kName, "code", code, requests[i]);
    }
  }

  // Decisions: every registered policy (zeros are information: "never denied"), then _other.
  {
    constexpr std::string_view kName = "floodgate_decisions_total";
    append_header(out, kName, "counter",
                  "Policy decisions, by policy and outcome (shadow_denied: a shadow policy would "
                  "have denied).");
    for (std::size_t id = 0; id <= names.size(); ++id) {
      const bool other = id == names.size();
      const std::uint64_t* row = &decisions[id * T::kOutcomes];
      if (other && row[0] == 0 && row[1] == 0 && row[2] == 0) continue;
      const std::string policy = escape_label_value(other ? kOtherPolicyName : names[id]);
      for (std::size_t o = 0; o < T::kOutcomes; ++o) {
        out += kName;
        out += "{policy=\"";
        out += policy;
        out += "\",outcome=\"";
        out += kOutcomeNames[o];
        out += "\"} ";
        out += std::to_string(row[o]);
        out.push_back('\n');
      }
    }
  }

  append_fixed_family(out, "floodgate_store_requests_total",
                      "Rate-limit store calls, by result (circuit_open: refused without a call).",
                      "result", kStoreResultNames, store);

  // Histogram: cumulative buckets; _count is the +Inf bucket, from the same reads.
  {
    constexpr std::string_view kName = "floodgate_store_latency_seconds";
    append_header(out, kName, "histogram",
                  "Latency of rate-limit store calls, in seconds (circuit_open calls excluded).");
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < T::kBuckets; ++b) {
      cumulative += buckets[b];
      out += kName;
      out += "_bucket{le=\"";
      out += kBucketLabels[b];
      out += "\"} ";
      out += std::to_string(cumulative);
      out.push_back('\n');
    }
    out += kName;
    out += "_sum ";
    out += format_seconds(latency_sum_us);
    out.push_back('\n');
    out += kName;
    out += "_count ";
    out += std::to_string(cumulative);
    out.push_back('\n');
  }

  append_fixed_family(out, "floodgate_degraded_decisions_total",
                      "Requests answered without the store, by on_store_error mode.", "mode",
                      kDegradedModeNames, degraded);
  append_header(out, "floodgate_deny_cache_hits_total", "counter",
                "Requests denied again from the deny cache, without a store call.");
  append_sample(out, "floodgate_deny_cache_hits_total", deny_cache_hits);
  append_fixed_family(out, "floodgate_upstream_requests_total",
                      "Requests proxied to the upstream, by result.", "result",
                      kUpstreamResultNames, upstream);

  append_header(out, "floodgate_connections_total", "counter", "Client connections accepted.");
  append_sample(out, "floodgate_connections_total", opened);
  append_header(out, "floodgate_connections_rejected_total", "counter",
                "Client connections refused over max_connections.");
  append_sample(out, "floodgate_connections_rejected_total", rejected);
  append_header(out, "floodgate_open_connections", "gauge", "Client connections open now.");
  append_sample(out, "floodgate_open_connections", opened > closed ? opened - closed : 0);

  append_fixed_family(out, "floodgate_config_reloads_total", "Configuration reloads, by result.",
                      "result", std::array<std::string_view, 2>{"ok", "error"},
                      std::array<std::uint64_t, 2>{read(reloads_ok_), read(reloads_error_)});

  append_header(out, "floodgate_draining", "gauge",
                "1 while the server drains connections before exiting, else 0.");
  append_sample(out, "floodgate_draining", draining_.load(std::memory_order_relaxed) ? 1 : 0);
  // Only with a concurrency policy: a config without one shows no such family.
  bool in_flight_header = false;
  for (std::size_t i = 0; i <= names.size() && i <= kOtherPolicyId; ++i) {
    const std::size_t id = i == names.size() ? kOtherPolicyId : i;
    if (!in_flight_shown_[id].load(std::memory_order_relaxed)) continue;
    if (!in_flight_header) {
      append_header(out, "floodgate_concurrency_in_flight", "gauge",
                    "Concurrency slots this instance holds now (requests in flight), per policy.");
      in_flight_header = true;
    }
    const std::int64_t held = in_flight_[id].load(std::memory_order_relaxed);
    append_sample(out, "floodgate_concurrency_in_flight", "policy",
                  id == kOtherPolicyId ? std::string(kOtherPolicyName) : names[i],
                  static_cast<std::uint64_t>(std::max<std::int64_t>(0, held)));
  }
  append_header(out, "floodgate_store_circuit_open", "gauge",
                "1 while any store node's circuit breaker is open (calls to it refused), else 0.");
  append_sample(out, "floodgate_store_circuit_open",
                circuit_open_.load(std::memory_order_relaxed) ? 1 : 0);
  if (!node_circuits.empty()) {
    append_header(out, "floodgate_store_node_circuit_open", "gauge",
                  "1 while the circuit breaker of this store node (a Redis Cluster master) is "
                  "open (calls for its slots refused), else 0.");
    for (const auto& [node, open] : node_circuits) {
      append_sample(out, "floodgate_store_node_circuit_open", "node", node, open ? 1 : 0);
    }
  }

  std::vector<std::pair<std::string, MemoryStoreStats>> memory;
  for (const auto& [name, stats] : memory_sources) memory.emplace_back(name, stats());
  const auto memory_family = [&](std::string_view name, std::string_view type,
                                 std::string_view help, auto value) {
    append_header(out, name, type, help);
    for (const auto& [store_name, st] : memory) {
      append_sample(out, name, "store", store_name, static_cast<std::uint64_t>(value(st)));
    }
  };
  memory_family("floodgate_memory_store_keys", "gauge", "States the memory store holds now.",
                [](const MemoryStoreStats& st) { return st.keys; });
  memory_family("floodgate_memory_store_capacity", "gauge",
                "Most states the memory store may hold (memory.max_keys).",
                [](const MemoryStoreStats& st) { return st.capacity; });
  memory_family("floodgate_memory_store_evictions_total", "counter",
                "States equivalent to no state (full, expired) dropped to make room for a new one.",
                [](const MemoryStoreStats& st) { return st.evicted; });
  memory_family("floodgate_memory_store_refusals_total", "counter",
                "Decisions refused (on_store_error applied): the memory store was full of states "
                "that still count.",
                [](const MemoryStoreStats& st) { return st.refused; });

  if (!redis_sources.empty()) append_redis_families(out, redis_sources);
  if (!upstream_sources.empty()) append_upstream_families(out, upstream_sources);

  append_header(out, "floodgate_build_info", "gauge",
                "Version and store kind of this instance; the value is always 1.");
  if (have_info) {
    out += "floodgate_build_info{version=\"";
    out += escape_label_value(version);
    out += "\",store=\"";
    out += escape_label_value(store_kind);
    out += "\"} 1\n";
  }
  return out;
}

}  // namespace fg::decide
