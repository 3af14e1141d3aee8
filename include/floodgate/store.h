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
// on_store_error), kInvalidArgument for a request no store could decide (no charges).
//
// Thread safety: decide() may be called from any thread, concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/limiter.h"
#include "floodgate/result.h"

namespace fg {

struct DecideRequest {
  std::string_view identity;  // the client, as the identity sources named it (any bytes)
  std::span<const Charge> charges;
};

using DecideCallback = std::function<void(Result<Verdict>)>;

// kInvalidArgument for charges no store could decide: none at all, a charge without a policy, a
// cost outside [0, kMaxCount]. Every store checks this before anything else.
Result<void> check_charges(std::span<const Charge> charges);

class Store {
 public:
  virtual ~Store() = default;
  virtual void decide(const DecideRequest& request, DecideCallback done) = 0;
  // "memory", "redis", "redis-cluster": for logs and metrics.
  virtual std::string_view kind() const = 0;
};

// Calls decide() and waits for the answer. For command-line tools and tests only: never call it
// on a thread that must run the store's own completions.
Result<Verdict> decide_and_wait(Store& store, const DecideRequest& request);

struct MemoryStoreOptions {
  // Most (identity, policy) states held at once (`memory.max_keys` in the config). Size it above
  // the states of the clients active within your longest period: the store never forgets a state
  // that still counts to make room. Only states that decide exactly as no state would (a full
  // bucket, a window that no longer counts) are dropped for a new key; when a shard holds none,
  // the decision that needs a new key fails with kUnavailable ("memory store full: N keys") and
  // the caller applies on_store_error to that request. Evicting a spent state instead would hand
  // its client a fresh budget: a flood of new identities would reset every exhausted client.
  // So under such a flood the newcomers are degraded (served, 503 or the local limiter, as
  // on_store_error says), and every client already held keeps its exact limit.
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

// What a memory store holds and has done, for /metrics.
struct MemoryStoreStats {
  std::size_t keys = 0;        // states held now
  std::size_t capacity = 0;    // most states it may hold (<= max_keys)
  std::uint64_t expired = 0;   // states dropped by the steady clean-up (equivalent to no state)
  std::uint64_t evicted = 0;   // states equivalent to no state dropped to make room
  std::uint64_t refused = 0;   // decisions refused: no room, and nothing equivalent to no state
};

// An in-process store: exact under concurrency, bounded memory. `clock` must outlive the store.
std::unique_ptr<Store> make_memory_store(const MemoryStoreOptions& options, const Clock& clock);

}  // namespace fg
