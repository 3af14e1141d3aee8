// memory_store.h — the in-process Store: sharded maps under mutexes, bounded memory.
//
// Exactness: all the states of one identity live in one shard, and a decision holds that shard's
// lock while it reads, evaluates and writes them, so decisions on one identity are serialised
// and exact under any number of threads. Different identities mostly take different locks.
//
// Memory: at most max_keys / shards states per shard (shards is lowered to max_keys when it is
// larger, so capacity() <= max_keys). Each shard keeps its states ordered by expiry: a state's
// expiry is the instant from which it decides exactly as no state would (a full bucket, a window
// that no longer counts). A state past its expiry is dropped (a few on every decision, all of
// them when a shard is full and a new key must be inserted: counted as evictions). A state before
// its expiry, i.e. a client that has spent part of its budget, is never dropped to make room: when
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
// Counters (count(), Envoy's INCRBY semantics) live in the same maps under "\0count\0" + the
// counter's name stored as identities are: no policy name starts with NUL, so no counter can
// name a policy's state.
//
// Thread safety: every public method is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <utility>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "floodgate/store.h"

namespace fg::memory {

// Identities longer than this are stored as their SHA-256 digest.
inline constexpr std::size_t kMaxRawIdentityBytes = 64;

class MemoryStore final : public Store {
 public:
  MemoryStore(const MemoryStoreOptions& options, const Clock& clock);

  // Completes before returning, on the calling thread.
  void decide(const DecideRequest& request, DecideCallback done) override;
  // Completes before returning, on the calling thread, under the same shard lock as decide().
  void refund(const RefundRequest& request, RefundCallback done) override;
  std::string_view kind() const override { return "memory"; }
  // Completes before returning. Counters share the states' shards, capacity and expiry index
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
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // A map node: the key ("<policy>\0<identity>") and its Entry. Nodes never move.
  struct Entry;
  using Node = std::pair<const std::string, Entry>;
  // The expiry index orders nodes by (entry.expires_us, address). It holds only the node's
  // address: a write whose new expiry keeps the node between the same neighbours (most writes)
  // changes entry.expires_us in place and leaves the index untouched (see rekey).
  struct ExpiryOrder {
    bool operator()(const Node* a, const Node* b) const;
  };
  using ExpiryIndex = std::set<const Node*, ExpiryOrder>;
  struct Entry {
    State state;
    std::int64_t expires_us = 0;  // from then on the state is equivalent to no state
    ExpiryIndex::iterator expiry;
  };
  using Map = std::unordered_map<std::string, Entry, StringHash, std::equal_to<>>;
  struct Shard {
    mutable std::mutex mu;
    Map map;
    ExpiryIndex by_expiry;
    std::uint64_t expired = 0;
    std::uint64_t evicted = 0;
    std::uint64_t refused = 0;
  };

  // `stored` is the identity as keys hold it (see make_key).
  Shard& shard_for(std::string_view stored);
  // Drops up to `budget` states whose ttl has passed; returns how many it dropped.
  std::size_t drop_expired(Shard& shard, std::int64_t now_us, std::size_t budget);
  // Makes room for `needed` new keys by dropping states whose ttl has passed (all of them, except
  // the nodes in `keep`, which this decision reuses). False when they would still not fit: no
  // state that still counts is ever dropped.
  bool make_room(Shard& shard, std::int64_t now_us, std::size_t needed,
                 std::span<Node* const> keep);
  // Sets `node`'s expiry to `expires_us`, moving it in the shard's expiry index if it must.
  static void rekey(Shard& shard, Node& node, std::int64_t expires_us);

  const Clock& clock_;
  std::size_t per_shard_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace fg::memory
