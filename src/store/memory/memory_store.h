// memory_store.h — the in-process Store: sharded maps under mutexes, bounded memory.
//
// Exactness: all the states of one identity live in one shard, and a decision holds that shard's
// lock while it reads, evaluates and writes them, so decisions on one identity are serialised
// and exact under any number of threads. Different identities mostly take different locks.
//
// Memory: at most max_keys / shards states per shard (shards is lowered to max_keys when it is
// larger, so capacity() <= max_keys). Each shard files its states by expiry: a state's expiry is
// the instant from which it decides exactly as no state would (a full bucket, a window that no
// longer counts). The files are time buckets of kExpiryBucketUs (65.536 ms), each a list of
// states, in an ordered map of the buckets in use. A state is filed in the bucket of its expiry
// or an earlier one, never a later one: a write that puts its expiry later (a client spending,
// nearly every write) changes only the expiry, and the state is moved to the bucket of its
// expiry when the bucket it is in has passed. So a write searches no index of the states or of
// the buckets (the ordered map of buckets, searched on each write that changed bucket, was most
// of the store's cost under load: perf, 10,000 clients). A write that puts the expiry earlier
// (a refund) moves the state at once. A state is dropped once the bucket of its expiry has
// passed, i.e. at most 65.536 ms after its expiry (a few states looked at on every decision,
// all the passed buckets when a shard is full and a new key must be inserted: counted as
// evictions); until then it decides as no state anyway. A state before its expiry,
// i.e. a client that has spent part of its budget, is never dropped to make room: when
// a shard is full of such states, a decision that would insert a new key is refused
// (kResourceExhausted, "memory store full: N keys"), before anything is written, and counted as
// a refusal. Forgetting a spent state would hand that client a new budget, so a flood of fresh
// identities could reset every exhausted client; refusing the newcomer instead (the server
// answers it 503) keeps every identity already held deciding exactly, and lets no newcomer
// through unlimited.
//
// Keys: "<policy>\0=<identity>" for an identity of at most kMaxRawIdentityBytes bytes,
// "<policy>\0#<SHA-256 of the identity>" (32 raw bytes) for a longer one, so a state's memory is
// bounded whatever the identity's length. The '=' / '#' byte keeps the two forms apart: no short
// identity, whatever its bytes, gives the key of a hashed one. Two long identities share a state
// only if their SHA-256 digests collide.
//
// Concurrency slots (algorithm: concurrency) are not states: each shard holds, per key, the
// leases of the requests in flight (lease id, expiry). A decision drops the key's expired leases
// and decides on the count of the others, under the same shard lock as the identity's other
// policies, so a request takes its slot only when every rate policy allows it too. Their memory
// is bounded by the requests in flight, not by max_keys; a key without leases is dropped.
//
// Counters (count(), Envoy's INCRBY semantics) live in the same maps under "\0count\0" + the
// counter's name stored as identities are: no policy name starts with NUL, so no counter can
// name a policy's state.
//
// Thread safety: every public method is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "floodgate/store.h"
#include "store/memory/key_table.h"
#include "util/keyed_hash.h"

namespace fg::memory {

// Identities longer than this are stored as their SHA-256 digest.
inline constexpr std::size_t kMaxRawIdentityBytes = 64;

// States are filed by expiry in time buckets of 2^16 µs (65.536 ms); a state is dropped once its
// bucket has passed.
inline constexpr int kExpiryBucketShift = 16;
inline constexpr std::int64_t kExpiryBucketUs = std::int64_t{1} << kExpiryBucketShift;

class MemoryStore final : public Store {
 public:
  MemoryStore(const MemoryStoreOptions& options, const Clock& clock);

  // Completes before returning, on the calling thread.
  void decide(const DecideRequest& request, DecideCallback done) override;
  // Completes before returning, on the calling thread, under the same shard lock as decide().
  void refund(const RefundRequest& request, RefundCallback done) override;
  // Complete before returning, on the calling thread, under the identity's shard lock.
  void release(const LeaseRequest& request, RefundCallback done) override;
  void renew(const LeaseRequest& request, RefundCallback done) override;
  // Slots held now for `identity` under `policy` (expired leases not counted). For tests.
  std::size_t slots_held(std::string_view identity, std::string_view policy) const;
  std::string_view kind() const override { return "memory"; }
  // Completes before returning. Counters share the states' shards, capacity and expiry buckets
  // (a counter is one state, kept until its ttl); each counter under its own shard's lock.
  void count(std::span<const CountRequest> counters, CountCallback done) override;
  Result<std::vector<std::int64_t>> count_now(std::span<const CountRequest> counters);

  // The same decision, returned directly.
  Result<Verdict> decide_now(const DecideRequest& request) override;
  bool completes_inline() const override { return true; }
  // The same refund, returned directly.
  Result<void> refund_now(const RefundRequest& request);

  // States held now, over all shards (takes every shard's lock in turn).
  std::size_t size() const;
  std::size_t capacity() const { return per_shard_ * shards_.size(); }
  // The most slots a lookup reads in any shard's table (KeyTable::longest_probe), for the hash
  // flooding test.
  std::size_t longest_probe() const;
  // States dropped by the steady clean-up because their ttl had passed.
  std::uint64_t expired_count() const;
  // States equivalent to no state (ttl passed) dropped to make room for a new key.
  std::uint64_t evicted_count() const;
  // Decisions refused because their shard was full of states that still count.
  std::uint64_t refused_count() const;
  // All of the above at once (each shard's lock taken once, in turn).
  MemoryStoreStats stats() const;
  std::optional<MemoryStoreStats> memory_stats() const override { return stats(); }

 private:
  // A table node: the key ("<policy>\0<identity>") and its Entry (`value`). Nodes never move.
  struct Entry;
  using Map = KeyTable<Entry>;
  using Node = Map::Node;
  // A node of a time bucket's circular list: in each Entry, and as the list's head in the
  // bucket (owner null).
  struct Link {
    Link* prev = this;
    Link* next = this;
    Node* owner = nullptr;
  };
  struct Entry {
    State state;
    std::int64_t expires_us = 0;  // from then on the state is equivalent to no state
    Link link;                    // in the list of bucket `filed`
    // The bucket filed in: at most expires_us >> kExpiryBucketShift.
    std::int64_t filed = 0;
  };
  struct Lease {
    std::string id;
    std::int64_t expires_us = 0;
  };
  using Leases =
      std::unordered_map<std::string, std::vector<Lease>, util::KeyedHash, std::equal_to<>>;
  // Bucket id (expires_us >> kExpiryBucketShift) -> the head of its list, never empty. Map
  // nodes never move, so the heads' addresses hold.
  using Buckets = std::map<std::int64_t, Link>;
  struct Shard {
    mutable std::mutex mu;
    Map map;
    Leases leases;  // concurrency policies' keys -> the leases in flight
    Buckets buckets;
    // The bucket last linked into (new expiries of one policy tend to share one), or none.
    Buckets::iterator last_bucket;
    bool has_last_bucket = false;
    std::uint64_t expired = 0;
    std::uint64_t evicted = 0;
    std::uint64_t refused = 0;
  };

  // The shard of the identity whose stored form (see make_key) hashes to `identity_hash`.
  Shard& shard_for(std::uint64_t identity_hash) const;
  // Looks at up to `budget` states in buckets that have passed: drops those whose ttl has
  // passed, moves the others to the bucket of their expiry. Returns how many it dropped.
  std::size_t drop_expired(Shard& shard, std::int64_t now_us, std::size_t budget);
  // Makes room for `needed` new keys by dropping states whose ttl has passed (all of them, except
  // the nodes in `keep`, which this decision reuses). False when they would still not fit: no
  // state that still counts is ever dropped.
  bool make_room(Shard& shard, std::int64_t now_us, std::size_t needed,
                 std::span<Node* const> keep);
  // Gives back (renew false) or renews (to now + each policy's lease) the slots of `request`.
  void update_leases(const LeaseRequest& request, bool renew);
  // Sets `node`'s expiry to `expires_us`, moving it to that time's bucket only if it is now
  // filed in a later one.
  static void rekey(Shard& shard, Node& node, std::int64_t expires_us);
  // Files `node` in the bucket of its expires_us / takes it out of the bucket it is filed in
  // (erasing the bucket when it empties). Constant time, but for the ordered map's search when
  // a bucket appears or goes.
  static void link(Shard& shard, Node& node);
  static void unlink(Shard& shard, Node& node);
  // Drops `node` from the shard (its bucket, then the map).
  static void erase(Shard& shard, Node& node);

  const Clock& clock_;
  std::size_t per_shard_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace fg::memory
