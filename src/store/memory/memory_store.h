// memory_store.h — the in-process Store: sharded maps under mutexes, bounded memory.
//
// Exactness: all the states of one identity live in one shard, and a decision holds that shard's
// lock while it reads, evaluates and writes them, so decisions on one identity are serialised
// and exact under any number of threads. Different identities mostly take different locks.
//
// Memory: at most max(1, max_keys / shards) states per shard. Each shard keeps its states ordered
// by expiry. A state whose ttl has passed is equivalent to no state and is dropped (a few on every
// decision, all before any eviction). Only when the shard is full of live states is one evicted:
// the one nearest to expiring, i.e. nearest to full, whose loss admits the fewest extra requests
// (it fails open for that one client, never closed for anyone).
//
// Thread safety: every public method is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <utility>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "floodgate/store.h"

namespace fg::memory {

class MemoryStore final : public Store {
 public:
  MemoryStore(const MemoryStoreOptions& options, const Clock& clock);

  // Completes before returning, on the calling thread.
  void decide(const DecideRequest& request, DecideCallback done) override;
  // Completes before returning, on the calling thread, under the same shard lock as decide().
  void refund(const RefundRequest& request, RefundCallback done) override;
  std::string_view kind() const override { return "memory"; }

  // The same decision, returned directly.
  Result<Verdict> decide_now(const DecideRequest& request);
  // The same refund, returned directly.
  Result<void> refund_now(const RefundRequest& request);

  // States held now, over all shards (takes every shard's lock in turn).
  std::size_t size() const;
  std::size_t capacity() const { return per_shard_ * shards_.size(); }
  // States dropped because their ttl had passed / evicted while still live.
  std::uint64_t expired_count() const;
  std::uint64_t evicted_count() const;

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
  };

  Shard& shard_for(std::string_view identity);
  // Drops up to `budget` states whose ttl has passed; returns how many it dropped.
  std::size_t drop_expired(Shard& shard, std::int64_t now_us, std::size_t budget);
  void make_room(Shard& shard, std::int64_t now_us);
  // Sets `node`'s expiry to `expires_us`, moving it in the shard's expiry index if it must.
  static void rekey(Shard& shard, Node& node, std::int64_t expires_us);

  const Clock& clock_;
  std::size_t per_shard_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace fg::memory
