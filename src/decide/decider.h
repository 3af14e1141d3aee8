// decider.h — the deciding service: every front door hands it a Plan (plan.h) and gets one
// Outcome back (design §1, §3). It owns what stands between a plan and an answer:
//
//   the store call     one atomic decision per identity (decide_all: several identities are
//                      decided in order, the earlier refunded on a later denial), with the store's
//                      own deadline (store_timeout);
//   the guard          a circuit breaker per store node (Store::node_of: a Redis Cluster master,
//                      or the one Redis) that answers at once for the identities that node
//                      serves while it keeps failing, and lets a probe through to it now and
//                      then; the other nodes' identities are decided as usual. A failure counts
//                      against the node the store names in Error::node (else the identity's
//                      node_of). A readiness probe over the store's probe keys (any part of a
//                      cluster answering is enough);
//   the deny cache     a denial the shared store gave is answered again without it until the
//                      store could allow it (deny_cache.h; Rules::deny_cache, not for a store
//                      that completes inline);
//   on_store_error     allow (served, degraded), deny (refused) or local (a per-instance memory
//                      limiter with divided limits), worked out once, here;
//   the counting       the store result and latency, the per-policy decisions, the degraded
//                      mode: every door reports the same series (metrics.h).
//
// Doors map the Outcome to their own answer (an HTTP response, a JSON line, a gRPC reply) and
// nothing else: which verdict counts (counting()), whether the request may be served (served())
// and whether it is degraded are decided here.
//
// Threads: decide() may be called from any thread; its callback comes on the thread the store
// completes on (inline for stores that complete inline: Store::completes_inline()). No Asio, no
// HTTP in this interface.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "decide/circuit_breaker.h"
#include "decide/deny_cache.h"
#include "decide/metrics.h"
#include "decide/plan.h"
#include "decide/top_denied.h"
#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/inline_function.h"
#include "floodgate/result.h"
#include "floodgate/store.h"

namespace fg::decide {

// How a store failure was answered (on_store_error), or kNo.
enum class Degraded { kNo, kAllow, kDeny, kLocal };

struct Outcome {
  Result<Verdict> verdict = fail(ErrorCode::kInternal, "not decided");  // the store's answer
  std::optional<Verdict> local_verdict;  // on_store_error: local, after a store outage
  Degraded degraded = Degraded::kNo;
  bool from_deny_cache = false;  // answered by the deny cache, without asking the store

  // The verdict that counts: the store's, else the local limiter's; null when neither decided
  // (degraded allow or deny, a full memory store, a bug).
  const Verdict* counting() const;
  // Whether the request may go on to its resource: allowed by the verdict that counts, or
  // degraded with on_store_error: allow.
  bool served() const;
};

// The concurrency slots one allowed request holds (algorithm: concurrency), from its decision
// until its response has been sent, the upstream exchange ended or the client went away: then
// release() (or the destructor) gives them back, once. While the request lasts, renew() restarts
// their leases (every renew_every()), so only an instance that died leaves slots behind, and
// only for a lease. Each slot is also counted in floodgate_concurrency_in_flight.
//
// Thread safety: release() and renew() may be called from any thread, not concurrently with
// each other or the destructor. Both are fire and forget: a release the store cannot make leaves
// the slot to its lease (conservative: never more than `limit` in flight).
class Slots {
 public:
  ~Slots() { release(); }
  Slots(const Slots&) = delete;
  Slots& operator=(const Slots&) = delete;

  void release();
  void renew();
  // How often renew() should run: a third of the shortest lease, so that two renewals may fail
  // before a slot of a live request expires.
  Duration renew_every() const;
  std::string_view lease() const { return lease_; }

 private:
  friend class Decider;
  Slots() = default;

  struct Held {
    std::string identity;
    std::vector<Charge> charges;  // concurrency charges that took a slot; policies in rules_
    std::vector<std::size_t> metric_ids;
  };
  std::shared_ptr<Store> store_;
  std::shared_ptr<const Rules> rules_;  // keeps the charges' policies alive
  Metrics* metrics_ = nullptr;
  std::string lease_;
  std::vector<Held> held_;
  bool released_ = false;
};

// A door's callback for Decider::decide(): move-only and held inline, never allocated
// (inline_function.h). The doors' callbacks take 8 to 24 bytes: the HTTP exchange's 16 (its
// result slot and the Asio handler that resumes its coroutine, server_impl.h completion()), the
// RLS service's 24; 40 leave room for one more pointer or two.
using OutcomeCallback = InlineFunction<void(Outcome), 40>;

// The readiness probe's callback (Decider::probe(): once a second, not on the request path).
using ProbeCallback = InlineFunction<void(Result<void>), 40>;

struct DeciderOptions {
  std::shared_ptr<Store> store;
  // Per node: each node of the store (Store::node_of) has a breaker with these options.
  // on_store_error: local's per-instance limiter: a store that completes inline (a memory store).
  std::shared_ptr<Store> local_store;
  CircuitBreakerOptions breaker;
  // Keys the readiness probe may try before concluding that no part of the store answers (a
  // cluster: enough to reach every master whatever key_secret hashes them to).
  int probe_keys = 1;
  const Clock* clock = &SystemClock::instance();
  // The deny cache's time: monotonic, so that a step of wall time never lengthens a denial.
  const Clock* monotonic = &MonotonicClock::instance();
  // Called for every degraded decision (the server logs them, rate limited).
  std::function<void(const Error& why, config::OnStoreError answered)> on_degraded;
};

class Decider {
 public:
  explicit Decider(DeciderOptions options);
  ~Decider();
  Decider(const Decider&) = delete;
  Decider& operator=(const Decider&) = delete;

  // Decides `plan` (non-empty) under rules.config->on_store_error; counts it in `shard` (and the
  // circuit gauge in `metrics`, when given). `done` is called exactly once, before decide()
  // returns when the store completes inline. `plan` and `rules` must live until then.
  // `deny_cache_checked`: the caller found no cached denial (cached_denial()) just before, so the
  // cache is not looked in again; a denial the store gives is still remembered.
  void decide(const Rules& rules, const Plan& plan, ThreadMetrics* shard, OutcomeCallback done,
              bool deny_cache_checked = false);
  // decide() for a store that completes inline (store().completes_inline()): the outcome now.
  Outcome decide_now(const Rules& rules, const Plan& plan, ThreadMetrics* shard);
  // What decide() would answer from the deny cache (a denial, counted in `shard` as decide()
  // counts it), now; nullopt when the cache holds no denial for `plan`, and then decide() would
  // ask the store. Lets a caller answer a client over its limit without waiting for a callback.
  std::optional<Outcome> cached_denial(const Rules& rules, const Plan& plan, ThreadMetrics* shard);

  // Gives back what `consumed` (an allowed verdict of `plan`) took, when the request was not
  // served after all (its body could not be read), and forgets the plan's cached denial. Fire
  // and forget.
  void give_back(const Rules& rules, const Plan& plan, const Verdict& consumed);

  // The slots `out` (an outcome of `plan`) took, to be released when the request ends; null when
  // it took none (no concurrency policy, denied, or allowed without the store by
  // on_store_error: allow). With on_store_error: local, the slots are the local store's.
  std::unique_ptr<Slots> hold(std::shared_ptr<const Rules> rules, const Plan& plan,
                              const Outcome& out);

  // Asks whether any part of the store answers, over up to probe_keys keys (cost 0: nothing is
  // consumed); closes the breaker of the node that answered. Also forgets the breakers of nodes
  // that no longer serve anyone (a failed-over master). `done(ok)` once. For /readyz.
  void probe(ProbeCallback done);
  // Probes whose `done` has not been called yet. A probe can be answered on the store's own
  // thread after its caller stopped: whoever destroys this decider, and what `done` refers to,
  // waits for none to be left (Server::~Server), or the answer would use both after they are gone.
  int probes_in_flight() const { return probes_in_flight_.load(std::memory_order_acquire); }

  // The last probe's answer (true until a probe says otherwise).
  bool store_answers() const { return store_ok_.load(std::memory_order_relaxed); }
  void set_store_answers(bool ok) { store_ok_.store(ok, std::memory_order_relaxed); }
  // Whether any node's circuit is open (calls for its identities answered without the store).
  bool circuit_open() const { return open_nodes_.load(std::memory_order_relaxed) > 0; }
  // The nodes whose circuit is open now, by name (Store::node_name; "#<index>" without one,
  // "unmapped" for failures the store could not place). For /v1/status.
  std::vector<std::string> open_circuits() const;
  Store& store() { return *store_; }
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }
  // The identities this decider denied most over the last minute (counted in count(): one per
  // denied request and identity; shadow denials are not denials).
  const TopDenied& top_denied() const { return top_denied_; }

 private:
  // A node's breaker, and whether its open state was reported (metrics, open_nodes_).
  struct NodeBreaker {
    explicit NodeBreaker(const CircuitBreakerOptions& o) : breaker(o) {}
    CircuitBreaker breaker;
    std::atomic<bool> reported_open{false};
  };
  // Breakers: index 0 for node -1 (unknown), node n at n + 1; nodes past the table share its
  // last entry (a cluster of more than a thousand nodes, masters and replicas, seen by one store).
  static constexpr std::size_t kNodeBreakers = 1024;
  using Nodes = boost::container::small_vector<int, 2>;

  NodeBreaker& breaker_for(int node);
  // Before a store call: fills `nodes` while some node has trouble (else leaves it empty) and
  // answers the error to give when one of them has its circuit open.
  std::optional<Error> check_circuits(const Plan& plan, Nodes& nodes);
  std::string node_label(int node) const;
  // The nodes of the plan's identities, in order.
  Nodes nodes_of(const Plan& plan) const;
  // Reports a breaker's open/closed change to the metrics and open_nodes_ (once per change).
  void note(int node, NodeBreaker& b);
  // After a success on a node with trouble: clears trouble_ when every breaker is healthy.
  void maybe_clear_trouble();
  // Closes the circuits of nodes the store no longer routes to (Store::node_in_use).
  void forget_unused_nodes();
  // A decision that takes slots and got no answer (a timeout: the call may still run in Redis
  // and take them) gives them back, so that they do not hold the identity for a whole lease with
  // nothing in flight. Fire and forget; giving back a slot never taken is harmless.
  void release_unanswered(const Plan& plan);
  // The store's answer for `nodes` (empty: not looked up, the store was healthy at the call).
  void on_store_answer(const Plan& plan, const Nodes& nodes, const Result<Verdict>& verdict);

  Outcome after_store(const Rules& rules, const Plan& plan, ThreadMetrics* shard,
                      Result<Verdict> verdict, bool asked, Duration latency,
                      std::int64_t asked_us = 0, const Nodes& nodes = {});
  // The rules' deny cache when this decider uses one (a store that does not complete inline).
  DenyCache* deny_cache(const Rules& rules) const;
  // The deny cache's denial of `plan` at `asked_us`, counted, or nullopt.
  std::optional<Outcome> from_deny_cache(DenyCache& cache, const Rules& rules, const Plan& plan,
                                         ThreadMetrics* shard, std::int64_t asked_us);
  void count(const Rules& rules, const Plan& plan, const Outcome& out, ThreadMetrics* shard);
  void probe_from(int i, std::shared_ptr<ProbeCallback> done);

  std::shared_ptr<Store> store_;
  std::shared_ptr<Store> local_store_;
  CircuitBreakerOptions breaker_options_;
  std::array<std::atomic<NodeBreaker*>, kNodeBreakers> breakers_{};
  std::atomic<int> open_nodes_{0};
  // Some breaker counts failures or is not closed. While not, decide() skips the node lookup
  // (node_of hashes the identity) and the breakers altogether: a healthy store costs nothing.
  std::atomic<bool> trouble_{false};
  int probe_keys_;
  const Clock* clock_;
  const Clock* monotonic_;
  std::function<void(const Error&, config::OnStoreError)> on_degraded_;
  Metrics* metrics_ = nullptr;
  std::atomic<bool> store_ok_{true};
  std::atomic<int> probes_in_flight_{0};
  TopDenied top_denied_;
};

}  // namespace fg::decide
