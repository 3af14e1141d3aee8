#include "http/status.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

namespace fg::http {
namespace {

using json = nlohmann::json;
using Buckets = std::array<std::uint64_t, decide::kStoreLatencyBuckets.size() + 1>;

// Rates with one decimal: enough for a page, and a stable text for tests.
double rate(std::uint64_t before, std::uint64_t after, double seconds) {
  if (seconds <= 0 || after < before) return 0;
  return std::round(static_cast<double>(after - before) / seconds * 10) / 10;
}

std::uint64_t sum_range(const decide::MetricsTotals& t, int from, int to) {
  std::uint64_t n = 0;
  for (int s = from; s <= to; ++s) n += t.requests_by_status[static_cast<std::size_t>(s - 100)];
  return n;
}

std::int64_t ms_since(Timestamp now, Timestamp then) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - then).count();
}

json round_ms(std::optional<double> ms) {
  if (!ms) return nullptr;
  return std::round(*ms * 1000) / 1000;
}

}  // namespace

std::optional<double> histogram_quantile_ms(const Buckets& counts, double q) {
  std::uint64_t total = 0;
  for (std::uint64_t c : counts) total += c;
  if (total == 0) return std::nullopt;
  const double rank = q * static_cast<double>(total);
  double seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    const double next = seen + static_cast<double>(counts[i]);
    if (next >= rank) {
      if (i == decide::kStoreLatencyBuckets.size()) {  // +Inf: the last bound is all we know
        return static_cast<double>(decide::kStoreLatencyBuckets.back()) / 1000;
      }
      const double lower = i == 0 ? 0 : static_cast<double>(decide::kStoreLatencyBuckets[i - 1]);
      const double upper = static_cast<double>(decide::kStoreLatencyBuckets[i]);
      const double within = (rank - seen) / static_cast<double>(counts[i]);
      return (lower + (upper - lower) * within) / 1000;
    }
    seen = next;
  }
  return static_cast<double>(decide::kStoreLatencyBuckets.back()) / 1000;
}

LastDecisionFields last_decision_fields(const Policy& policy, const Decision& decision,
                                        Timestamp decided_at, const config::HeaderStyle& style) {
  const Charge charge{&policy, policy.cost};
  Verdict v;
  v.allowed = decision.allowed || policy.shadow;
  v.decisions = {decision};
  v.decided_at = decided_at;
  LastDecisionFields out;
  out.policy = policy.name;
  out.allowed = decision.allowed;
  out.decided_at = decided_at;
  out.fields = rate_limit_headers({&charge, 1}, v, style).fields;
  return out;
}

StatusBoard::StatusBoard(InstanceInfo info) : info_(std::move(info)) {
  json r = {{"id", info_.id}, {"address", info_.address}};
  record_ = r.dump();
}

void StatusBoard::sample(Timestamp now, const decide::MetricsTotals& t, const decide::Rules& rules,
                         const InstanceFlags& flags, std::vector<decide::DeniedCount> top_denied) {
  std::lock_guard lock(mutex_);
  const double dt =
      last_at_ ? std::chrono::duration<double>(now - *last_at_).count() : 0.0;  // 0: no rates yet
  const decide::MetricsTotals& p = last_at_ ? last_ : t;

  json inst;
  inst["id"] = info_.id;
  inst["address"] = info_.address;
  inst["version"] = info_.version;
  inst["store"] = info_.store;
  inst["threads"] = info_.threads;
  inst["uptime_s"] = std::max<std::int64_t>(0, ms_since(now, info_.started_at) / 1000);
  inst["state"] = flags.draining ? "draining" : flags.ready ? "ready" : "not_ready";
  inst["circuit"] = flags.circuit_open ? "open" : "closed";
  inst["open_circuits"] = flags.open_circuits;
  inst["sampled_at_ms"] = to_us(now) / 1000;
  const double requests = rate(p.requests, t.requests, dt);
  const double allowed = rate(sum_range(p, 200, 299), sum_range(t, 200, 299), dt);
  const double denied = rate(sum_range(p, 429, 429), sum_range(t, 429, 429), dt);
  const double degraded = rate(p.degraded, t.degraded, dt);
  inst["requests_per_s"] = requests;
  inst["allowed_per_s"] = allowed;
  inst["denied_per_s"] = denied;
  inst["degraded_per_s"] = degraded;
  json by_status = json::object();
  for (std::size_t i = 0; i + 1 < t.requests_by_status.size(); ++i) {
    const double r = rate(p.requests_by_status[i], t.requests_by_status[i], dt);
    if (r > 0) by_status[std::to_string(i + 100)] = r;
  }
  inst["responses_per_s"] = std::move(by_status);

  latency_.push_back(t.latency_buckets);
  while (latency_.size() > kLatencyWindow + 1) latency_.pop_front();
  Buckets window{};
  for (std::size_t i = 0; i < window.size(); ++i) {
    const std::uint64_t a = latency_.front()[i], b = latency_.back()[i];
    window[i] = latency_.size() > 1 && b >= a ? b - a : 0;
  }
  inst["store_latency_ms"] = {{"p50", round_ms(histogram_quantile_ms(window, 0.50))},
                              {"p99", round_ms(histogram_quantile_ms(window, 0.99))},
                              {"window_s", latency_.size() - 1}};

  json policies = json::array();
  const auto& pcs = rules.config->policies;
  for (std::size_t i = 0; i < pcs.size(); ++i) {
    const Policy& pol = pcs[i].policy;
    json row = {
        {"name", pol.name},
        {"algorithm", std::string(to_string(pol.algorithm))},
        {"limit", pol.limit},
        {"burst", pol.burst},
        {"window_s", std::round(std::chrono::duration<double>(pol.period).count() * 1000) / 1000},
        {"shadow", pol.shadow}};
    std::array<double, 3> rates{};
    if (i < rules.metric_ids.size()) {
      const std::size_t id = rules.metric_ids[i];
      if (id < t.decisions.size()) {
        const std::array<std::uint64_t, 3> before =
            id < p.decisions.size() ? p.decisions[id] : t.decisions[id];
        for (std::size_t o = 0; o < 3; ++o) rates[o] = rate(before[o], t.decisions[id][o], dt);
      }
    }
    row["allowed_per_s"] = rates[0];
    row["denied_per_s"] = rates[1];
    row["shadow_denied_per_s"] = rates[2];
    policies.push_back(std::move(row));
  }
  inst["policies"] = std::move(policies);

  json top = json::array();
  for (const decide::DeniedCount& d : top_denied) {
    top.push_back({{"identity", d.identity}, {"denials", d.denials}, {"error", d.error}});
  }
  inst["top_denied"] = std::move(top);
  record_ = inst.dump();

  if (last_at_) {
    history_.push_back(Point{to_us(now) / 1'000'000, requests, allowed, denied, degraded});
    while (history_.size() > kHistorySeconds) history_.pop_front();
  }
  last_at_ = now;
  last_ = t;
}

std::string StatusBoard::record() const {
  std::lock_guard lock(mutex_);
  return record_;
}

std::string StatusBoard::render(Timestamp now, const FleetView* fleet,
                                const std::optional<LastDecisionFields>& last) const {
  json doc;
  doc["schema"] = 1;
  doc["now_ms"] = to_us(now) / 1000;
  json self;
  json history = json::array();
  {
    std::lock_guard lock(mutex_);
    self = json::parse(record_, nullptr, false);
    for (const Point& p : history_) {
      history.push_back({p.t_s, p.requests, p.allowed, p.denied, p.degraded});
    }
  }
  doc["instance"] = self;
  doc["history"] = {{"interval_s", 1},
                    {"columns", {"t", "requests", "allowed", "denied", "degraded"}},
                    {"points", std::move(history)}};
  if (last) {
    json fields = json::array();
    for (const auto& [name, value] : last->fields) fields.push_back({name, value});
    doc["last_decision"] = {{"policy", last->policy},
                            {"allowed", last->allowed},
                            {"age_ms", std::max<std::int64_t>(0, ms_since(now, last->decided_at))},
                            {"headers", std::move(fields)}};
  } else {
    doc["last_decision"] = nullptr;
  }

  // The fleet: every live record, this instance's own from this sample (fresher than the one
  // published), sorted by id.
  std::map<std::string, json> instances;
  json fleet_doc;
  fleet_doc["source"] = fleet != nullptr ? "store" : "local";
  if (fleet != nullptr) {
    for (const std::string& r : fleet->records) {
      json j = json::parse(r, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) continue;
      if (instances.size() >= kMaxFleetInstances) break;
      const std::string id = j["id"].get<std::string>();
      instances[id] = std::move(j);
    }
    if (!fleet->error.empty()) fleet_doc["error"] = fleet->error;
    if (fleet->read_at != Timestamp{}) fleet_doc["read_ms_ago"] = ms_since(now, fleet->read_at);
  }
  if (self.is_object() && self.contains("id")) instances[self["id"].get<std::string>()] = self;
  json list = json::array();
  double requests = 0, allowed = 0, denied = 0, degraded = 0;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> merged;
  for (auto& [id, j] : instances) {
    requests += j.value("requests_per_s", 0.0);
    allowed += j.value("allowed_per_s", 0.0);
    denied += j.value("denied_per_s", 0.0);
    degraded += j.value("degraded_per_s", 0.0);
    if (j.contains("top_denied") && j["top_denied"].is_array()) {
      for (const json& d : j["top_denied"]) {
        if (!d.is_object() || !d.contains("identity") || !d["identity"].is_string()) continue;
        auto& [n, e] = merged[d["identity"].get<std::string>()];
        n += d.value("denials", std::uint64_t{0});
        e += d.value("error", std::uint64_t{0});
      }
    }
    list.push_back(std::move(j));
  }
  std::vector<std::pair<std::string, std::pair<std::uint64_t, std::uint64_t>>> top(merged.begin(),
                                                                                   merged.end());
  std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) {
    return a.second.first != b.second.first ? a.second.first > b.second.first : a.first < b.first;
  });
  if (top.size() > kTopDeniedShown) top.resize(kTopDeniedShown);
  json top_doc = json::array();
  for (const auto& [identity, ne] : top) {
    top_doc.push_back({{"identity", identity}, {"denials", ne.first}, {"error", ne.second}});
  }
  auto one_decimal = [](double x) { return std::round(x * 10) / 10; };
  fleet_doc["requests_per_s"] = one_decimal(requests);
  fleet_doc["allowed_per_s"] = one_decimal(allowed);
  fleet_doc["denied_per_s"] = one_decimal(denied);
  fleet_doc["degraded_per_s"] = one_decimal(degraded);
  fleet_doc["instances"] = std::move(list);
  fleet_doc["top_denied"] = std::move(top_doc);
  doc["fleet"] = std::move(fleet_doc);

  json store;
  if (fleet != nullptr && !fleet->store.empty()) store = json::parse(fleet->store, nullptr, false);
  if (!store.is_object()) {
    store = {{"kind", info_.store}, {"nodes", json::array()}};
  }
  doc["store"] = std::move(store);
  return doc.dump();
}

}  // namespace fg::http
