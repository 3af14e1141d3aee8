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
  // Most (identity, policy) states held at once. A full or idle state is dropped first (it
  // decides nothing: no state means a full bucket), then the one nearest to full. A state with a
  // short identity costs ~200 bytes of heap (docs/benchmarks.md), so the default bounds the
  // store at ~200 MB.
  std::size_t max_keys = 1'000'000;
  // Independent locks. More shards, less contention between threads; identities are spread over
  // them by hash and all of one identity's policies share a shard.
  std::size_t shards = 64;
};

// An in-process store: exact under concurrency, bounded memory. `clock` must outlive the store.
std::unique_ptr<Store> make_memory_store(const MemoryStoreOptions& options, const Clock& clock);

}  // namespace fg
