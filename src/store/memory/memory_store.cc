#include "store/memory/memory_store.h"

#include <algorithm>
#include <array>

namespace fg::memory {
namespace {

// Keys are "<policy>\0<identity>": policy names never contain NUL, so the first NUL separates
// them whatever bytes the identity holds.
void make_key(std::string& out, std::string_view policy, std::string_view identity) {
  out.clear();
  out.reserve(policy.size() + 1 + identity.size());
  out.append(policy);
  out.push_back('\0');
  out.append(identity);
}

// Up to this many policies per request are looked up without allocating.
constexpr std::size_t kInlinePolicies = 8;

}  // namespace

MemoryStore::MemoryStore(const MemoryStoreOptions& options, const Clock& clock) : clock_(clock) {
  const std::size_t shards = std::max<std::size_t>(1, options.shards);
  per_shard_ = std::max<std::size_t>(1, options.max_keys / shards);
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

bool MemoryStore::ExpiryOrder::operator()(const Node* a, const Node* b) const {
  return a->second.expires_us != b->second.expires_us ? a->second.expires_us < b->second.expires_us
                                                      : std::less<const Node*>{}(a, b);
}

MemoryStore::Shard& MemoryStore::shard_for(std::string_view identity) {
  return *shards_[std::hash<std::string_view>{}(identity) % shards_.size()];
}

std::size_t MemoryStore::drop_expired(Shard& shard, std::int64_t now_us, std::size_t budget) {
  std::size_t dropped = 0;
  while (dropped < budget && !shard.by_expiry.empty() &&
         (*shard.by_expiry.begin())->second.expires_us <= now_us) {
    auto first = shard.by_expiry.begin();
    const Node* node = *first;
    shard.by_expiry.erase(first);
    shard.map.erase(node->first);
    ++dropped;
  }
  if (dropped > 0) shard.expired += dropped;  // no write to the shard's line when none
  return dropped;
}

void MemoryStore::make_room(Shard& shard, std::int64_t now_us) {
  if (shard.map.size() < per_shard_) return;
  if (drop_expired(shard, now_us, shard.by_expiry.size()) > 0) return;
  // Every state is live: forget the one nearest to full.
  auto first = shard.by_expiry.begin();
  const Node* node = *first;
  shard.by_expiry.erase(first);
  shard.map.erase(node->first);
  ++shard.evicted;
}

Result<Verdict> MemoryStore::decide_now(const DecideRequest& request) {
  if (auto ok = check_charges(request.charges); !ok) return tl::unexpected(ok.error());
  const std::size_t n = request.charges.size();
  const Timestamp now = clock_.now();
  const std::int64_t now_us = to_us(now);

  thread_local std::string key;
  std::array<std::optional<State>, kInlinePolicies> inline_states;
  std::array<Node*, kInlinePolicies> inline_nodes;
  std::vector<std::optional<State>> heap_states;
  std::vector<Node*> heap_nodes;
  std::span<std::optional<State>> states;
  std::span<Node*> nodes;  // each charge's map node, found or not yet (null)
  if (n <= kInlinePolicies) {
    states = std::span(inline_states.data(), n);
    nodes = std::span(inline_nodes.data(), n);
  } else {
    heap_states.resize(n);
    heap_nodes.resize(n);
    states = heap_states;
    nodes = heap_nodes;
  }

  Shard& shard = shard_for(request.identity);
  std::lock_guard lock(shard.mu);
  // One lookup per key. A state whose ttl has passed reads as no state, as if dropped, but its
  // node is kept: when this decision writes the key again (a client whose bucket refilled
  // between two requests, the common case for a quiet client or a generous limit), the node is
  // reused instead of freed and reallocated with its index node.
  for (std::size_t i = 0; i < n; ++i) {
    make_key(key, request.charges[i].policy->name, request.identity);
    auto it = shard.map.find(std::string_view(key));
    nodes[i] = it == shard.map.end() ? nullptr : &*it;
    if (nodes[i] != nullptr && nodes[i]->second.expires_us > now_us) {
      states[i] = nodes[i]->second.state;
    }
  }
  Evaluation eval = evaluate(request.charges, states, now);

  // Keys that exist first: nothing has been erased yet, so every node found above is still
  // there (rehashing moves no node). Then new keys, whose insertion may have to make room by
  // erasing others.
  bool inserts = false;
  for (const StateWrite& w : eval.writes) {
    Node* node = nodes[w.index];
    if (node == nullptr) {
      inserts = true;
      continue;
    }
    node->second.state = w.state;
    rekey(shard, *node, now_us + w.ttl.count());
  }
  if (inserts) {
    for (const StateWrite& w : eval.writes) {
      if (nodes[w.index] != nullptr) continue;
      make_key(key, request.charges[w.index].policy->name, request.identity);
      const std::int64_t expires_us = now_us + w.ttl.count();
      // Looked up again: make_room may have erased a node, and a policy given twice in one
      // request has its key inserted by the first of its writes.
      auto it = shard.map.find(std::string_view(key));
      if (it == shard.map.end()) {
        make_room(shard, now_us);
        it = shard.map.emplace(key, Entry{}).first;
        it->second.expires_us = expires_us;
        // A new state usually expires after every other (ttls of one policy are alike): the
        // hint makes that insertion constant time; elsewhere it costs what a plain insert does.
        it->second.expiry = shard.by_expiry.insert(shard.by_expiry.end(), &*it);
      } else {
        rekey(shard, *it, expires_us);
      }
      it->second.state = w.state;
    }
  }
  // Steady, bounded clean-up of states that are full again (after the writes, so that it never
  // frees a node this decision is about to reuse).
  drop_expired(shard, now_us, 2);
  return std::move(eval.verdict);  // decided_at = now, set by evaluate()
}

Result<void> MemoryStore::refund_now(const RefundRequest& request) {
  if (auto ok = check_refund(request); !ok) return ok;
  const std::size_t n = request.charges.size();
  const Timestamp now = clock_.now();
  const std::int64_t now_us = to_us(now);
  // Not the hot path: plain vectors.
  std::vector<Charge> charges(request.charges.begin(), request.charges.end());
  for (std::size_t i = 0; i < n; ++i) charges[i].cost = refund_cost(request, i);
  std::vector<std::optional<State>> states(n);
  std::vector<Node*> nodes(n, nullptr);
  std::string key;

  Shard& shard = shard_for(request.identity);
  std::lock_guard lock(shard.mu);
  for (std::size_t i = 0; i < n; ++i) {
    if (charges[i].cost == 0) continue;
    make_key(key, charges[i].policy->name, request.identity);
    auto it = shard.map.find(std::string_view(key));
    if (it == shard.map.end() || it->second.expires_us <= now_us) continue;  // nothing to give back
    nodes[i] = &*it;
    states[i] = it->second.state;
  }
  // Every write is to a state read above (a missing state gives nothing back): no insertion.
  for (const StateWrite& w : plan_refund(charges, states, request.consumed_at, now)) {
    Node* node = nodes[w.index];
    if (node == nullptr) continue;  // a policy given twice, its key already deleted
    if (w.ttl.count() > 0) {
      node->second.state = w.state;
      rekey(shard, *node, now_us + w.ttl.count());
      continue;
    }
    // Equivalent to no state: forget it.
    for (std::size_t j = w.index; j < n; ++j) {
      if (nodes[j] == node) nodes[j] = nullptr;
    }
    shard.by_expiry.erase(node->second.expiry);
    shard.map.erase(node->first);
  }
  return {};
}

void MemoryStore::refund(const RefundRequest& request, RefundCallback done) {
  done(refund_now(request));  // outside the shard lock, as decide()
}

void MemoryStore::rekey(Shard& shard, Node& node, std::int64_t expires_us) {
  // Touches as few nodes as it can: it runs on every write, and with many states each index
  // node away from the last one is likely a cache miss (with one hot state, a line bounced
  // between the cores deciding on it).
  ExpiryIndex& index = shard.by_expiry;
  Entry& entry = node.second;
  if (index.size() == 1) {  // the shard's only state: nothing to pass
    entry.expires_us = expires_us;
    return;
  }
  // (expires_us, &node) against another node's (expires, address): the index's order.
  const auto before = [&node, expires_us](const Node* other) {
    return expires_us != other->second.expires_us ? expires_us < other->second.expires_us
                                                  : std::less<const Node*>{}(&node, other);
  };
  const auto it = entry.expiry;
  const auto last = std::prev(index.end());
  if (it != last && !before(*last)) {
    // Past every other state: the usual case when writes are spread over many keys (a state
    // just written expires after the others, ttls of one policy being alike). The same index
    // node goes to the end, which the hint makes constant time; no allocation.
    auto moved = index.extract(it);
    entry.expires_us = expires_us;
    entry.expiry = index.insert(index.end(), std::move(moved));
    return;
  }
  // Still between the same neighbours (the last state written again, or a small move): changed
  // in place, the tree untouched. Moving later, only the next state can be passed; moving
  // earlier, only the previous one.
  bool stays;
  if (expires_us >= entry.expires_us) {
    const auto next = std::next(it);
    stays = next == index.end() || before(*next);
  } else {
    stays = it == index.begin() || !before(*std::prev(it));
  }
  if (stays) {
    entry.expires_us = expires_us;
    return;
  }
  auto moved = index.extract(it);
  entry.expires_us = expires_us;
  entry.expiry = index.insert(std::move(moved)).position;
}

void MemoryStore::decide(const DecideRequest& request, DecideCallback done) {
  done(decide_now(request));  // outside the shard lock: the callback may decide again
}

std::size_t MemoryStore::size() const {
  std::size_t total = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    total += s->map.size();
  }
  return total;
}

std::uint64_t MemoryStore::expired_count() const {
  std::uint64_t total = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    total += s->expired;
  }
  return total;
}

std::uint64_t MemoryStore::evicted_count() const {
  std::uint64_t total = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    total += s->evicted;
  }
  return total;
}

}  // namespace fg::memory

namespace fg {

std::unique_ptr<Store> make_memory_store(const MemoryStoreOptions& options, const Clock& clock) {
  return std::make_unique<memory::MemoryStore>(options, clock);
}

}  // namespace fg
