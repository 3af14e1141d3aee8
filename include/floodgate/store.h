// store.h — where rate-limit state lives, behind one asynchronous call.
//
// A Store decides one request (one identity, all its matching policies) atomically: no other
// decision on the same identity interleaves with it, on this instance or, for shared stores, on
// any instance. decide() never blocks the calling thread on I/O: the memory store completes
// before it returns; the Redis store completes later, on an I/O thread of its own event loop.
//
// The request (identity, charges, policies) need only live until decide() returns: a store
// copies or encodes what it needs at once. The callback is called exactly once.
//
// Errors: kUnavailable / kDeadlineExceeded when the store cannot answer (the caller applies
// on_store_error), kResourceExhausted when a memory store is full of states that still count (the
// caller refuses that request), kInvalidArgument for a request no store could decide (no charges).
//
// refund() gives back what an allowed decide() consumed, for a caller that decides several
// identities one after the other (their keys may live in different Redis Cluster slots, so one
// atomic call cannot cover them) and must undo the earlier ones when a later one denies. It is
// atomic per identity, like decide(), and obeys one rule above all: it never leaves a state more
// permissive than if the refunded decision had not been admitted, so refunds can never let the
// fleet admit beyond a limit. It gives back as much as that rule allows (docs/algorithms.md,
// "Refunds"), with `now` the store's clock at the refund:
//   token bucket, GCRA  the part of the charge the bucket has not refilled by itself since
//                       consumed_at: max(0, cost - (now - consumed_at) * limit / period) tokens,
//                       capped at burst. Refunded at once, that is the whole cost.
//   fixed window        count -= cost (floor 0), only while `now` is in consumed_at's window;
//   sliding window      in consumed_at's window: current -= cost; in the next one:
//                       previous -= cost (floor 0); later: nothing;
//   every algorithm     nothing for a missing (expired, evicted) state, a cost 0 charge, or a
//                       charge whose decision did not consume (a shadow policy that denied).
// A state that becomes equivalent to none is deleted; any other is written with the ttl rule of
// decide() (the time until it is equivalent to none). A refund that gives nothing back writes
// nothing. Errors are those of decide(); a refund that failed may or may not have been applied,
// and is never worse than no refund.
//
// Thread safety: decide() and refund() may be called from any thread, concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/inline_function.h"
#include "floodgate/limiter.h"
#include "floodgate/result.h"

namespace fg {

struct DecideRequest {
  std::string_view identity;  // the client, as the identity sources named it (any bytes)
  std::span<const Charge> charges;
  // The request's lease id, unique across the fleet (make_lease_id()): a concurrency charge that
  // allows takes its slot under this id, and release() gives it back by it. Needed only when a
  // charge is a concurrency policy with cost > 0; empty otherwise (an empty id still takes a
  // slot, which then only its lease ends).
  std::string_view lease{};
};

// A decision's completion: move-only, held inline (inline_function.h), so that no decision
// allocates for its callback. The capacity is that of the largest callback on the request path:
// the decider's (decider.cc: 80 bytes of its own around the door's decide::OutcomeCallback, 48
// bytes). A larger callback does not compile; capture a pointer to larger state instead.
inline constexpr std::size_t kDecideCallbackCapacity = 136;
using DecideCallback = InlineFunction<void(Result<Verdict>), kDecideCallbackCapacity>;

struct RefundRequest {
  std::string_view identity;
  // The charges of an ALLOWED decide() on this identity, as given to it (same policies, same
  // order, same costs).
  std::span<const Charge> charges;
  // That decision's Verdict::decided_at.
  Timestamp consumed_at{};
  // That decision's Verdict::decisions, one per charge, to tell which charges consumed: in an
  // allowed verdict every non-shadow policy consumed its cost, and a shadow policy only if its own
  // decision allowed. Empty: every non-shadow charge is refunded and no shadow one (a shadow
  // charge of unknown outcome is left alone, never refunded blindly).
  std::span<const Decision> decisions{};
  // That decision's DecideRequest::lease: a refund gives back its concurrency slots too.
  std::string_view lease{};
};

// The concurrency slots one allowed request holds, for release() and renew(): the identity and
// charges it was decided with (only concurrency charges matter; others are ignored) and its
// lease id.
struct LeaseRequest {
  std::string_view identity;
  std::span<const Charge> charges;
  std::string_view lease;
};

// A lease id no other request of the fleet holds at the same time: this process's random 64-bit
// nonce and a counter, as text ("9f0c2a41d3b7e655.17"). Thread-safe.
std::string make_lease_id();

using RefundCallback = std::function<void(Result<void>)>;

// One counter of Store::count(): Envoy's ratelimit service's INCRBY decision
// (include/floodgate/counter.h says what is decided with it).
struct CountRequest {
  std::string_view key;   // the whole counter name, its window included; any bytes
  std::int64_t hits = 0;  // added to the counter; 0 reads it without writing anything
  Duration ttl{0};        // the counter's expiry, set (from now) whenever hits > 0 are added
};

// The counters after the hits were added, one per CountRequest, in order (a counter never
// written, or expired, reads 0).
using CountCallback = std::function<void(Result<std::vector<std::int64_t>>)>;

// kInvalidArgument for charges no store could decide: none at all, a charge without a policy, a
// cost outside [0, kMaxCount]. Every store checks this before anything else.
Result<void> check_charges(std::span<const Charge> charges);

// check_charges(request.charges), and kInvalidArgument when `decisions` is given but does not
// hold one decision per charge. Every store checks this before anything else in refund().
Result<void> check_refund(const RefundRequest& request);

// The cost `request` gives back for charges[i]: 0 when that charge consumed nothing (see
// RefundRequest::decisions). Precondition: check_refund(request) succeeded.
std::int64_t refund_cost(const RefundRequest& request, std::size_t i);

// What a memory store holds and has done, for /metrics.
struct MemoryStoreStats {
  std::size_t keys = 0;        // states held now
  std::size_t capacity = 0;    // most states it may hold (<= max_keys)
  std::uint64_t expired = 0;   // states dropped by the steady clean-up (equivalent to no state)
  std::uint64_t evicted = 0;   // states equivalent to no state dropped to make room
  std::uint64_t refused = 0;   // decisions refused: no room, and nothing equivalent to no state
};

class Store {
 public:
  virtual ~Store() = default;
  virtual void decide(const DecideRequest& request, DecideCallback done) = 0;
  // Gives back what an allowed decide() consumed (see above). Completes like decide(): the
  // callback is called exactly once, on the thread decide()'s would be called on.
  virtual void refund(const RefundRequest& request, RefundCallback done) = 0;
  // Concurrency slots (algorithm: concurrency). A slot is taken by decide() under the request's
  // lease id and lives until release() gives it back or its lease (policy.period) runs out (the
  // instance holding it died); renew() restarts the lease of a request still in flight. Both are
  // idempotent (a slot already gone is no error) and atomic per identity; callbacks as refund()'s.
  // Defaults: nothing to do (a store without concurrency policies).
  virtual void release(const LeaseRequest& request, RefundCallback done);
  virtual void renew(const LeaseRequest& request, RefundCallback done);
  // Adds each request's hits to its counter and answers the counters' new values. Each counter
  // is atomic on its own (no two adds are lost); the counters of one call are not atomic
  // together (on a Redis Cluster their keys may live on different masters), as Envoy's own
  // service counts them. Completes like decide(). Errors are decide()'s; kResourceExhausted
  // from a memory store full of counters that still count; kInvalidArgument for hits < 0, a
  // counter without a ttl while hits > 0, or a store that keeps no counters (the default).
  virtual void count(std::span<const CountRequest> counters, CountCallback done);
  // "memory", "redis", "redis-cluster": for logs and metrics (never branched on: the
  // capabilities below say what a caller may rely on).
  virtual std::string_view kind() const = 0;

  // Capabilities.
  // Whether decide() and refund() always call back before they return (a store in this
  // process). Such a store is asked through decide_now(), without a callback.
  virtual bool completes_inline() const { return false; }
  // decide() answered at once, for a store that completes_inline(); any other store answers
  // kInternal here.
  virtual Result<Verdict> decide_now(const DecideRequest& request);
  // How many keys a readiness probe may try before concluding that no part of the store answers:
  // 1 for a store that answers as a whole; more for a cluster, whose masters fail one by one
  // (enough keys to reach every master whatever key_secret hashes them to).
  virtual int probe_keys() const { return 1; }
  // A memory store's figures (for /metrics); nullopt for any other store.
  virtual std::optional<MemoryStoreStats> memory_stats() const { return std::nullopt; }

  // Nodes: the parts of a store that fail one by one (a Redis Cluster's masters), for circuit
  // breakers per node. node_of() is the node that decides `identity` now, as far as this store
  // knows: a small index, stable for the life of the store (a node seen again keeps its index),
  // 0 for a store that is one whole, -1 when it does not know yet (no slot map). An error of
  // decide() or refund() names the node the call failed on in Error::node when the store can
  // tell. Thread-safe; cheap (a hash of the identity and a relaxed load), but not free: ask only
  // when it matters.
  virtual int node_of(std::string_view identity) const {
    (void)identity;
    return 0;
  }
  // The node's name for metrics and status ("127.0.0.1:7001"); "" for an unknown index.
  virtual std::string node_name(int node) const {
    (void)node;
    return {};
  }
  // Whether node_of() still answers `node` for some identity (a cluster master that still has
  // slots; -1: some slot is unmapped). A failed-over master is not: its breaker can be forgotten.
  virtual bool node_in_use(int node) const { return node == 0; }
};

// Decides one request that is counted per several identities (policies with identities of their
// own: per API key AND per IP). Each identity is decided atomically by the store, one after the
// other in the order given (a fixed order, so concurrent requests never wait on each other). The
// verdict is allowed only when every identity allowed. When one denies, the identities after it
// are only looked at (cost 0: their figures, nothing consumed) and what the identities before it
// consumed is given back with Store::refund before `done` is called; when one fails, what was
// consumed is given back and `done` gets the error. So no policy ever admits beyond its limit;
// while a refund is in flight, the budget it returns is missing (a brief, conservative error),
// and a refund the store cannot make leaves it spent (conservative too).
// The verdict's decisions are those of every request, in order, concatenated. `requests` need
// only live until decide_all() returns (it copies them), but the identities, charges and leases
// they point to must live until `done` is called. One request: the same as decide().
void decide_all(Store& store, std::span<const DecideRequest> requests, DecideCallback done);

// The decisions of requests[i] in a verdict of decide_all(requests) (or of several stores'
// verdicts concatenated in that order): the ones its refund gives back.
std::span<const Decision> decisions_of(std::span<const DecideRequest> requests, std::size_t i,
                                       const Verdict& verdict);

// Calls decide() and waits for the answer. For command-line tools and tests only: never call it
// on a thread that must run the store's own completions.
Result<Verdict> decide_and_wait(Store& store, const DecideRequest& request);

// Calls count() and waits for the answer; the same restrictions as decide_and_wait().
Result<std::vector<std::int64_t>> count_and_wait(Store& store,
                                                 std::span<const CountRequest> counters);

// kInvalidArgument for counters no store could count (see Store::count). Every store checks
// this before anything else in count().
Result<void> check_counters(std::span<const CountRequest> counters);

// Calls refund() and waits for the answer; the same restrictions as decide_and_wait().
Result<void> refund_and_wait(Store& store, const RefundRequest& request);

// Calls release() and waits for the answer; the same restrictions as decide_and_wait().
Result<void> release_and_wait(Store& store, const LeaseRequest& request);

struct MemoryStoreOptions {
  // Most (identity, policy) states held at once (`memory.max_keys` in the config). Size it above
  // the states of the clients active within your longest period: the store never forgets a state
  // that still counts to make room. Only states that decide exactly as no state would (a full
  // bucket, a window that no longer counts) are dropped for a new key; when a shard holds none,
  // the decision that needs a new key fails with kResourceExhausted ("memory store full: N keys")
  // and the server answers that request 503 (not on_store_error: a full store is not an outage,
  // and allowing newcomers would let a flood of fresh identities go unlimited). Evicting a spent
  // state instead would hand its client a fresh budget: a flood of new identities would reset
  // every exhausted client. So under such a flood the newcomers wait (503, Retry-After), and
  // every client already held keeps its exact limit.
  // Identities over 64 bytes are held as their SHA-256, so a state's size is bounded whatever
  // the identity: at most ~300 bytes of RSS per state, measured with the worst case (64-byte
  // identities, 64-byte policy names: 299 bytes; bench/memory_bound.sh, docs/security.md), so
  // the default bounds the store at ~285 MiB.
  std::size_t max_keys = 1'000'000;
  // Independent locks. More shards, less contention between threads; identities are spread over
  // them by hash and all of one identity's policies share a shard. Each shard holds
  // max_keys / shards states (shards is lowered to max_keys when larger).
  std::size_t shards = 64;
};



// An in-process store: exact under concurrency, bounded memory. `clock` must outlive the store.
std::unique_ptr<Store> make_memory_store(const MemoryStoreOptions& options, const Clock& clock);

}  // namespace fg
