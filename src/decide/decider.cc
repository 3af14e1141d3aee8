#include "decide/decider.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace fg::decide {
namespace {

bool is_store_outage(const Error& e) {
  return e.code == ErrorCode::kUnavailable || e.code == ErrorCode::kDeadlineExceeded;
}

// The probe's policy: cost 0 never consumes; the key is one no client can name ("/" is not
// allowed in policy names, so no configured policy shares it).
const Policy& probe_policy() {
  static const Policy p = [] {
    Policy q;
    q.name = "floodgate/readyz";
    q.algorithm = Algorithm::kTokenBucket;
    q.limit = 1;
    q.period = std::chrono::seconds(1);
    q.burst = 1;
    q.cost = 0;
    return q;
  }();
  return p;
}

Duration since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - t);
}

}  // namespace

const Verdict* Outcome::counting() const {
  if (verdict) return &*verdict;
  if (local_verdict) return &*local_verdict;
  return nullptr;
}

bool Outcome::served() const {
  if (const Verdict* v = counting()) return v->allowed;
  return degraded == Degraded::kAllow;
}

Decider::Decider(DeciderOptions o)
    : store_(std::move(o.store)),
      local_store_(std::move(o.local_store)),
      breaker_options_(o.breaker),
      probe_keys_(std::max(1, o.probe_keys)),
      clock_(o.clock),
      monotonic_(o.monotonic),
      on_degraded_(std::move(o.on_degraded)) {}

Decider::~Decider() {
  for (auto& b : breakers_) delete b.load(std::memory_order_acquire);
}

Decider::NodeBreaker& Decider::breaker_for(int node) {
  const std::size_t i =
      node < 0 ? 0 : std::min(static_cast<std::size_t>(node) + 1, kNodeBreakers - 1);
  NodeBreaker* b = breakers_[i].load(std::memory_order_acquire);
  if (b != nullptr) return *b;
  // First failure (or lookup) of this node: racing threads may both build one; one wins.
  auto fresh = std::make_unique<NodeBreaker>(breaker_options_);
  if (breakers_[i].compare_exchange_strong(b, fresh.get(), std::memory_order_acq_rel)) {
    return *fresh.release();
  }
  return *b;
}

std::string Decider::node_label(int node) const {
  if (node < 0) return "unmapped";
  std::string name = store_->node_name(node);
  return name.empty() ? "#" + std::to_string(node) : name;
}

Decider::Nodes Decider::nodes_of(const Plan& plan) const {
  Nodes nodes;
  for (const std::string& identity : plan.identities) nodes.push_back(store_->node_of(identity));
  return nodes;
}

std::optional<Error> Decider::check_circuits(const Plan& plan, Nodes& nodes) {
  if (!trouble_.load()) return std::nullopt;
  // Some node has trouble: which nodes the plan needs, and whether their circuits let the call
  // through (one node's outage answers only for the identities it serves). A plan of several
  // identities whose second node is open may have taken the first node's probe slot: that node
  // is probed again after probe_timeout.
  nodes = nodes_of(plan);
  const Timestamp now = clock_->now();
  for (int n : nodes) {
    if (!breaker_for(n).breaker.allow(now)) {
      Error open = make_error(ErrorCode::kUnavailable, "circuit open: " + node_label(n));
      open.node = n;
      return open;
    }
  }
  return std::nullopt;
}

void Decider::note(int node, NodeBreaker& b) {
  const bool open = b.breaker.state() == CircuitBreaker::State::kOpen;
  if (b.reported_open.load(std::memory_order_relaxed) == open) return;  // the usual case
  bool was = !open;
  if (!b.reported_open.compare_exchange_strong(was, open, std::memory_order_relaxed)) return;
  const int now_open =
      open_nodes_.fetch_add(open ? 1 : -1, std::memory_order_relaxed) + (open ? 1 : -1);
  if (metrics_ != nullptr) {
    metrics_->set_circuit_open(now_open > 0);
    metrics_->set_node_circuit_open(node_label(node), open);
  }
}

void Decider::maybe_clear_trouble() {
  // Cleared first, then checked: a failure counted meanwhile either is seen by the scan or sets
  // trouble_ again after it (on_store_answer sets it after counting).
  trouble_.store(false);
  for (std::size_t i = 0; i < kNodeBreakers; ++i) {
    const NodeBreaker* b = breakers_[i].load(std::memory_order_acquire);
    if (b != nullptr && !b->breaker.healthy()) {
      trouble_.store(true);
      return;
    }
  }
}

void Decider::on_store_answer(const Plan& plan, const Nodes& looked_up,
                              const Result<Verdict>& verdict) {
  if (verdict) {
    if (!trouble_.load()) return;  // every breaker healthy: nothing to reset
    // The nodes answered: close their circuits (a call that started before they opened counts
    // too, as with one breaker), reset their failure counts.
    const Nodes nodes = looked_up.empty() ? nodes_of(plan) : looked_up;
    bool changed = false;
    for (int n : nodes) {
      NodeBreaker& b = breaker_for(n);
      if (b.breaker.healthy()) continue;
      b.breaker.on_success();
      note(n, b);
      changed = true;
    }
    if (changed) maybe_clear_trouble();
    return;
  }
  // An outage: the node the store names, else (a store that cannot tell) the one the identity
  // maps to, else the first identity's.
  int node = verdict.error().node;
  if (node < 0 && !plan.identities.empty()) {
    node = looked_up.empty() ? store_->node_of(plan.identities.front()) : looked_up.front();
  }
  NodeBreaker& b = breaker_for(node);
  b.breaker.on_failure(clock_->now());
  trouble_.store(true);
  note(node, b);
}

std::vector<std::string> Decider::open_circuits() const {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < kNodeBreakers; ++i) {
    const NodeBreaker* b = breakers_[i].load(std::memory_order_acquire);
    if (b != nullptr && b->breaker.state() == CircuitBreaker::State::kOpen) {
      out.push_back(node_label(static_cast<int>(i) - 1));
    }
  }
  return out;
}

DenyCache* Decider::deny_cache(const Rules& rules) const {
  return store_->completes_inline() ? nullptr : rules.deny_cache.get();
}

std::optional<Outcome> Decider::from_deny_cache(DenyCache& cache, const Rules& rules,
                                                const Plan& plan, ThreadMetrics* shard,
                                                std::int64_t asked_us) {
  std::optional<Verdict> cached = cache.lookup(plan, asked_us);
  if (!cached) return std::nullopt;
  if (shard != nullptr) shard->on_deny_cache_hit();
  Outcome out{std::move(*cached), std::nullopt, Degraded::kNo, true};
  count(rules, plan, out, shard);
  return out;
}

std::optional<Outcome> Decider::cached_denial(const Rules& rules, const Plan& plan,
                                              ThreadMetrics* shard) {
  DenyCache* cache = deny_cache(rules);
  if (cache == nullptr) return std::nullopt;
  return from_deny_cache(*cache, rules, plan, shard, to_us(monotonic_->now()));
}

void Decider::decide(const Rules& rules, const Plan& plan, ThreadMetrics* shard,
                     OutcomeCallback done, bool deny_cache_checked) {
  const auto started_at = std::chrono::steady_clock::now();
  std::int64_t asked_us = 0;
  if (DenyCache* cache = deny_cache(rules)) {
    asked_us = to_us(monotonic_->now());
    std::optional<Outcome> out;
    if (!deny_cache_checked) out = from_deny_cache(*cache, rules, plan, shard, asked_us);
    if (out) {
      done(std::move(*out));
      return;
    }
  }
  Nodes nodes;
  if (std::optional<Error> open = check_circuits(plan, nodes)) {
    done(
        after_store(rules, plan, shard, tl::unexpected(std::move(*open)), false, Duration::zero()));
    return;
  }
  // Held inline in the store's callback (DecideCallback's capacity is sized for it), with the
  // door's own callback inside: nothing is allocated for the completion.
  auto answered = [this, &rules, &plan, shard, started_at, asked_us, nodes,
                   done = std::move(done)](Result<Verdict> v) mutable {
    done(after_store(rules, plan, shard, std::move(v), true, since(started_at), asked_us, nodes));
  };
  if (plan.identities.size() == 1) {  // the store copies the request: nothing to keep
    store_->decide(DecideRequest{plan.identities.front(), plan.charges, plan.lease},
                   std::move(answered));
    return;
  }
  // decide_all() copies the requests; what they point to is the plan's, which outlives `done`.
  decide_all(*store_, plan.requests(plan.charges), std::move(answered));
}

Outcome Decider::decide_now(const Rules& rules, const Plan& plan, ThreadMetrics* shard) {
  const auto started_at = std::chrono::steady_clock::now();
  Nodes nodes;
  if (std::optional<Error> open = check_circuits(plan, nodes)) {
    return after_store(rules, plan, shard, tl::unexpected(std::move(*open)), false,
                       Duration::zero());
  }
  if (plan.identities.size() == 1) {
    const DecideRequest request{plan.identities.front(), plan.charges, plan.lease};
    return after_store(rules, plan, shard, store_->decide_now(request), true, since(started_at),
                       0, nodes);
  }
  std::optional<Result<Verdict>> verdict;  // (an Error up front would cost every request its text)
  const auto requests = plan.requests(plan.charges);
  decide_all(*store_, requests, [&verdict](Result<Verdict> v) { verdict = std::move(v); });
  if (!verdict) verdict = fail(ErrorCode::kInternal, "the store did not answer inline");
  return after_store(rules, plan, shard, std::move(*verdict), true, since(started_at), 0, nodes);
}

Outcome Decider::after_store(const Rules& rules, const Plan& plan, ThreadMetrics* shard,
                             Result<Verdict> verdict, bool asked, Duration latency,
                             std::int64_t asked_us, const Nodes& nodes) {
  if (asked) {
    StoreResult result = StoreResult::kOk;
    if (verdict) {
      on_store_answer(plan, nodes, verdict);
      // (A full concurrency policy frees a slot when any response ends, which no retry_after
      // foretells: such a denial is not cached.)
      if (!verdict->allowed && !plan.takes_slots) {
        if (DenyCache* cache = deny_cache(rules)) cache->remember(plan, *verdict, asked_us);
      }
    } else if (is_store_outage(verdict.error())) {
      // (A full memory store refuses a new key with kResourceExhausted: that request's answer,
      // not an outage, so it never opens a breaker.)
      on_store_answer(plan, nodes, verdict);
      result = verdict.error().code == ErrorCode::kDeadlineExceeded ? StoreResult::kTimeout
                                                                    : StoreResult::kUnavailable;
      release_unanswered(plan);
    } else {
      result = StoreResult::kError;
      release_unanswered(plan);
    }
    if (shard != nullptr) shard->on_store(result, latency);
  } else if (shard != nullptr) {
    shard->on_store(StoreResult::kCircuitOpen, Duration::zero());
  }
  Outcome out{std::move(verdict), std::nullopt, Degraded::kNo};
  if (!out.verdict && is_store_outage(out.verdict.error())) {
    const config::OnStoreError mode = rules.config->on_store_error;
    out.degraded = mode == config::OnStoreError::kAllow  ? Degraded::kAllow
                   : mode == config::OnStoreError::kDeny ? Degraded::kDeny
                                                         : Degraded::kLocal;
    if (shard != nullptr) {
      shard->on_degraded(mode == config::OnStoreError::kAllow  ? DegradedMode::kAllow
                         : mode == config::OnStoreError::kDeny ? DegradedMode::kDeny
                                                               : DegradedMode::kLocal);
    }
    if (mode == config::OnStoreError::kLocal && local_store_) {
      // The local store completes inline: it answers before decide_all() returns.
      const auto requests = plan.requests(plan.local_charges);
      std::optional<Result<Verdict>> local;
      decide_all(*local_store_, requests, [&local](Result<Verdict> v) { local = std::move(v); });
      if (local && *local) out.local_verdict = std::move(**local);
    }
    if (on_degraded_) on_degraded_(out.verdict.error(), mode);
  }
  count(rules, plan, out, shard);
  return out;
}

void Decider::count(const Rules& rules, const Plan& plan, const Outcome& out,
                    ThreadMetrics* shard) {
  const Verdict* v = out.counting();
  if (shard == nullptr || v == nullptr) return;
  const std::span<const Charge> charges = out.verdict ? std::span<const Charge>(plan.charges)
                                                      : std::span<const Charge>(plan.local_charges);
  const std::size_t none = plan.identities.size();
  std::size_t denied_identity = none;  // the last identity counted in top_denied_
  for (std::size_t i = 0; i < v->decisions.size() && i < charges.size(); ++i) {
    const Decision& d = v->decisions[i];
    const bool denied = !d.allowed && !charges[i].policy->shadow;
    if (denied && i < plan.charge_identity.size() && plan.charge_identity[i] < none &&
        plan.charge_identity[i] != denied_identity) {
      // Once per denied request and identity. The shard's address picks the stripe: one per
      // I/O thread, so threads do not contend (top_denied.h).
      denied_identity = plan.charge_identity[i];
      top_denied_.add(plan.identities[denied_identity], clock_->now(),
                      reinterpret_cast<std::uintptr_t>(shard) / kShardAlignment);
    }
    const std::size_t index = plan.policy_indices[i];
    if (index >= rules.metric_ids.size()) continue;  // the check API's own, or not registered
    shard->on_decision(rules.metric_ids[index], d.allowed  ? PolicyOutcome::kAllowed
                                                : !denied ? PolicyOutcome::kShadowDenied
                                                          : PolicyOutcome::kDenied);
    shard->on_last_decision(rules.metric_ids[index], d, v->decided_at);
  }
}

void Decider::give_back(const Rules& rules, const Plan& plan, const Verdict& consumed) {
  if (DenyCache* cache = deny_cache(rules)) cache->forget(plan);
  // Every identity's refund is dated at the first identity's decision, which can only give back
  // less (docs/algorithms.md, "Refunds").
  const auto requests = plan.requests(plan.charges);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const RefundRequest refund{requests[i].identity, requests[i].charges, consumed.decided_at,
                               decisions_of(requests, i, consumed)};
    store_->refund(refund, [](Result<void>) {});
  }
}

void Decider::forget_unused_nodes() {
  if (!trouble_.load()) return;
  bool changed = false;
  for (std::size_t i = 0; i < kNodeBreakers; ++i) {
    NodeBreaker* b = breakers_[i].load(std::memory_order_acquire);
    const int node = static_cast<int>(i) - 1;
    if (b == nullptr || b->breaker.healthy() || store_->node_in_use(node)) continue;
    // No identity maps to this node any more (its replica took over its slots): nothing will
    // probe it, and its open circuit would stay in the gauges for good.
    b->breaker.on_success();
    note(node, *b);
    changed = true;
  }
  if (changed) maybe_clear_trouble();
}

void Decider::release_unanswered(const Plan& plan) {
  if (!plan.takes_slots || plan.lease.empty()) return;
  // The charges of one identity are consecutive (plan.h).
  for (std::size_t i = 0; i < plan.charges.size();) {
    const std::size_t identity = plan.charge_identity[i];
    std::size_t end = i;
    bool slots = false;
    for (; end < plan.charges.size() && plan.charge_identity[end] == identity; ++end) {
      slots = slots || plan.charges[end].policy->is_concurrency();
    }
    if (slots) {
      const std::span<const Charge> charges(plan.charges.data() + i, end - i);
      store_->release(LeaseRequest{plan.identities[identity], charges, plan.lease},
                      [](Result<void>) {});
    }
    i = end;
  }
}

std::unique_ptr<Slots> Decider::hold(std::shared_ptr<const Rules> rules, const Plan& plan,
                                     const Outcome& out) {
  if (!plan.takes_slots) return nullptr;
  const Verdict* v = out.counting();
  if (v == nullptr || !v->allowed) return nullptr;
  const bool local = !out.verdict;
  const auto& charges = local ? plan.local_charges : plan.charges;
  std::unique_ptr<Slots> slots(new Slots());
  for (std::size_t i = 0; i < charges.size() && i < v->decisions.size(); ++i) {
    const Charge& c = charges[i];
    if (!c.policy->is_concurrency() || c.cost == 0 || !v->decisions[i].allowed) continue;
    const std::string& identity = plan.identities[plan.charge_identity[i]];
    if (slots->held_.empty() || slots->held_.back().identity != identity) {
      slots->held_.push_back(Slots::Held{identity, {}, {}});
    }
    Slots::Held& h = slots->held_.back();
    h.charges.push_back(c);
    const std::size_t index = plan.policy_indices[i];
    h.metric_ids.push_back(index < rules->metric_ids.size() ? rules->metric_ids[index]
                                                            : kOtherPolicyId);
  }
  if (slots->held_.empty()) return nullptr;
  slots->store_ = local ? local_store_ : store_;
  slots->rules_ = std::move(rules);
  slots->metrics_ = metrics_;
  slots->lease_ = plan.lease;
  if (slots->metrics_ != nullptr) {
    for (const Slots::Held& h : slots->held_) {
      for (std::size_t id : h.metric_ids) slots->metrics_->add_in_flight(id, 1);
    }
  }
  return slots;
}

void Slots::release() {
  if (released_ || store_ == nullptr) return;
  released_ = true;
  for (const Held& h : held_) {
    store_->release(LeaseRequest{h.identity, h.charges, lease_}, [](Result<void>) {});
    if (metrics_ != nullptr) {
      for (std::size_t id : h.metric_ids) metrics_->add_in_flight(id, -1);
    }
  }
}

void Slots::renew() {
  if (released_ || store_ == nullptr) return;
  for (const Held& h : held_) {
    store_->renew(LeaseRequest{h.identity, h.charges, lease_}, [](Result<void>) {});
  }
}

Duration Slots::renew_every() const {
  Duration shortest = Duration::max();
  for (const Held& h : held_) {
    for (const Charge& c : h.charges) shortest = std::min(shortest, c.policy->period);
  }
  return std::max<Duration>(shortest / 3, std::chrono::milliseconds(10));
}

void Decider::probe(ProbeCallback done) {
  forget_unused_nodes();
  probes_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  probe_from(0, std::make_shared<ProbeCallback>(std::move(done)));
}

void Decider::probe_from(int i, std::shared_ptr<ProbeCallback> done) {
  // The store answers if any part of it does: probe keys spread over several slots (so over every
  // master of a small cluster), stopping at the first answer. One failed master must not take
  // every instance out of the load balancer: its clients are answered by on_store_error, everyone
  // else as usual.
  static const Charge charge{&probe_policy(), 0};
  const std::string identity = "floodgate:readyz:" + std::to_string(i);
  const DecideRequest probe{identity, {&charge, 1}};
  store_->decide(probe, [this, i, key = std::string(identity), done](Result<Verdict> r) {
    if (r) {
      // The node that answered is up: close its circuit (the others stay as they are).
      const int node = store_->node_of(key);
      NodeBreaker& b = breaker_for(node);
      if (!b.breaker.healthy()) {
        b.breaker.on_success();
        note(node, b);
        maybe_clear_trouble();
      }
      (*done)(Result<void>{});
    } else if (i + 1 < probe_keys_) {
      return probe_from(i + 1, done);
    } else {
      (*done)(tl::unexpected(r.error()));
    }
    // The last use of this decider by the probe (see probes_in_flight()).
    probes_in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  });
}

}  // namespace fg::decide
