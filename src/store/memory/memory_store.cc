#include "store/memory/memory_store.h"

#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <limits>

namespace fg::memory {
namespace {

// The identity as keys hold it: '=' + the identity when it has at most kMaxRawIdentityBytes
// bytes, else '#' + its SHA-256 digest (32 bytes). The first byte tells the forms apart, so no
// short identity can name a long one's state.
void stored_identity(std::string& out, std::string_view identity) {
  out.clear();
  if (identity.size() <= kMaxRawIdentityBytes) {
    out.reserve(1 + identity.size());
    out.push_back('=');
    out.append(identity);
    return;
  }
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(identity.data()), identity.size(), digest.data());
  out.reserve(1 + digest.size());
  out.push_back('#');
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
}

// Keys are "<policy>\0<stored identity>": policy names never contain NUL, so the first NUL
// separates them whatever bytes the identity holds.
void make_key(std::string& out, std::string_view policy, std::string_view stored) {
  out.clear();
  out.reserve(policy.size() + 1 + stored.size());
  out.append(policy);
  out.push_back('\0');
  out.append(stored);
}

// The stored identity's keyed hash (util/keyed_hash.h): it names the identity's shard, and
// every key of the identity is placed in that shard's table by it (key_hash).
std::uint64_t identity_hash(std::string_view stored) { return util::keyed_hash(stored); }

// Where the key of `policy` for the identity of `identity_hash` sits in its shard's table: the
// identity's hash and the policy name's (FNV-1a: names come from the config, not from clients),
// mixed by MurmurHash3's 64-bit finalizer. One SipHash per request, not one per identity and
// one per key. For a given policy this is a bijection of the identity's hash, which a client
// cannot compute, so no chosen set of identities collides in a table more than chance; and the
// finalizer spreads every bit to the low bits the table indexes by (the shard's index fixes the
// identity hash's lowest bits).
std::uint64_t key_hash(std::uint64_t identity_hash, std::string_view policy) {
  std::uint64_t p = 0xcbf29ce484222325ULL;
  for (const char c : policy) p = (p ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  std::uint64_t h = identity_hash ^ p;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// Drops the leases of `leases` that expired by `now_us`; returns how many are left.
template <typename Vec>
std::size_t live_leases(Vec& leases, std::int64_t now_us) {
  std::erase_if(leases, [now_us](const auto& l) { return l.expires_us <= now_us; });
  return leases.size();
}

// Up to this many policies per request are looked up without allocating.
constexpr std::size_t kInlinePolicies = 8;

}  // namespace

MemoryStore::MemoryStore(const MemoryStoreOptions& options, const Clock& clock) : clock_(clock) {
  util::process_hash_key();  // drawn now, at start (keyed_hash.h)
  const std::size_t max_keys = std::max<std::size_t>(1, options.max_keys);
  const std::size_t shards = std::clamp<std::size_t>(options.shards, 1, max_keys);
  per_shard_ = max_keys / shards;
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

MemoryStore::Shard& MemoryStore::shard_for(std::uint64_t identity_hash) const {
  return *shards_[identity_hash % shards_.size()];
}

void MemoryStore::link(Shard& shard, Node& node) {
  const std::int64_t id = node.value.expires_us >> kExpiryBucketShift;
  node.value.filed = id;
  if (!shard.has_last_bucket || shard.last_bucket->first != id) {
    shard.last_bucket = shard.buckets.try_emplace(id).first;
    shard.has_last_bucket = true;
  }
  Link& head = shard.last_bucket->second;
  Link& l = node.value.link;
  l.owner = &node;
  l.next = head.next;
  l.prev = &head;
  head.next->prev = &l;
  head.next = &l;
}

void MemoryStore::unlink(Shard& shard, Node& node) {
  Link& l = node.value.link;
  l.prev->next = l.next;
  l.next->prev = l.prev;
  if (l.prev == l.next && l.prev->owner == nullptr) {
    // The bucket's head alone: the bucket is empty.
    const std::int64_t id = node.value.filed;
    if (shard.has_last_bucket && shard.last_bucket->first == id) shard.has_last_bucket = false;
    shard.buckets.erase(id);
  }
  l.prev = l.next = &l;
}

void MemoryStore::erase(Shard& shard, Node& node) {
  unlink(shard, node);
  shard.map.erase(&node);
}

namespace {

// Whether every instant of bucket `id` is before now_us.
bool bucket_passed(std::int64_t id, std::int64_t now_us) {
  return (id + 1) * kExpiryBucketUs <= now_us;
}

}  // namespace

std::size_t MemoryStore::drop_expired(Shard& shard, std::int64_t now_us, std::size_t budget) {
  // Only buckets wholly passed, the oldest first. A state in one has expired, or was filed
  // before a write put its expiry later: it moves to the bucket of its expiry, which has not
  // passed, so each state is looked at once.
  std::size_t dropped = 0;
  for (std::size_t looked = 0; looked < budget && !shard.buckets.empty(); ++looked) {
    const auto first = shard.buckets.begin();
    if (!bucket_passed(first->first, now_us)) break;
    // Either may erase the bucket: `first` is not used again.
    Node& node = *first->second.next->owner;
    if (bucket_passed(node.value.expires_us >> kExpiryBucketShift, now_us)) {
      erase(shard, node);
      ++dropped;
    } else {
      unlink(shard, node);
      link(shard, node);
    }
  }
  if (dropped > 0) shard.expired += dropped;  // no write to the shard's line when none
  return dropped;
}

bool MemoryStore::make_room(Shard& shard, std::int64_t now_us, std::size_t needed,
                            std::span<Node* const> keep) {
  if (shard.map.size() + needed <= per_shard_) return true;
  // Only states equivalent to no state go, and all of them at once (the next insertions find
  // room without another walk): every state in a bucket wholly passed whose own expiry has
  // passed too. The others move to the bucket of their expiry, which has not passed (after
  // `next_bucket`: the map's order). A node this decision found, expired, is kept for reuse.
  std::size_t dropped = 0;
  for (auto it = shard.buckets.begin();
       it != shard.buckets.end() && bucket_passed(it->first, now_us);) {
    const auto next_bucket = std::next(it);
    Link* head = &it->second;
    for (Link* l = head->next; l != head;) {
      Link* next = l->next;
      Node* node = l->owner;
      const bool kept = std::find(keep.begin(), keep.end(), node) != keep.end();
      const bool last = next == head && l->prev == head;  // taking it out erases the bucket
      if (!kept) {
        if (bucket_passed(node->value.expires_us >> kExpiryBucketShift, now_us)) {
          erase(shard, *node);
          ++dropped;
        } else {
          unlink(shard, *node);
          link(shard, *node);
        }
      }
      if (last && !kept) break;
      l = next;
    }
    it = next_bucket;
  }
  shard.evicted += dropped;
  if (shard.map.size() + needed <= per_shard_) return true;
  // Every other state still counts: forgetting one would give its client a new budget.
  ++shard.refused;
  return false;
}

Result<Verdict> MemoryStore::decide_now(const DecideRequest& request) {
  if (auto ok = check_charges(request.charges); !ok) return tl::unexpected(ok.error());
  const std::size_t n = request.charges.size();
  const Timestamp now = clock_.now();
  const std::int64_t now_us = to_us(now);

  thread_local std::string key;
  thread_local std::string stored;
  stored_identity(stored, request.identity);
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

  const std::uint64_t ih = identity_hash(stored);
  Shard& shard = shard_for(ih);
  std::lock_guard lock(shard.mu);
  // One lookup per key. A state whose ttl has passed reads as no state, as if dropped, but its
  // node is kept: when this decision writes the key again (a client whose bucket refilled
  // between two requests, the common case for a quiet client or a generous limit), the node is
  // reused instead of freed and reallocated with its index node.
  bool concurrency = false;
  for (std::size_t i = 0; i < n; ++i) {
    make_key(key, request.charges[i].policy->name, stored);
    if (request.charges[i].policy->is_concurrency()) {
      // Slots are leases, not a state: their live count is the state the core decides on.
      concurrency = true;
      nodes[i] = nullptr;
      auto lt = shard.leases.find(std::string_view(key));
      if (lt == shard.leases.end()) continue;
      if (const std::size_t held = live_leases(lt->second, now_us); held > 0) {
        states[i] = State{static_cast<std::int64_t>(held), 0, 0};
      } else {
        shard.leases.erase(lt);
      }
      continue;
    }
    nodes[i] = shard.map.find(key, key_hash(ih, request.charges[i].policy->name));
    if (nodes[i] != nullptr && nodes[i]->value.expires_us > now_us) {
      states[i] = nodes[i]->value.state;
    }
  }
  Evaluation eval = evaluate(request.charges, states, now);
  // The slots this decision takes: added below once nothing can refuse it any more.
  std::vector<StateWrite> slots;
  if (concurrency) {
    for (const StateWrite& w : eval.writes) {
      if (request.charges[w.index].policy->is_concurrency()) slots.push_back(w);
    }
    eval.writes.erase(std::remove_if(eval.writes.begin(), eval.writes.end(),
                                     [&request](const StateWrite& w) {
                                       return request.charges[w.index].policy->is_concurrency();
                                     }),
                      eval.writes.end());
  }

  // New keys this decision writes (a policy given twice is one key; a state written with no
  // ttl is no state and is not inserted). Room is made for all of them before anything is
  // written, or the decision is refused and nothing is written: all or nothing.
  std::size_t new_keys = 0;
  for (std::size_t j = 0; j < eval.writes.size(); ++j) {
    const StateWrite& w = eval.writes[j];
    if (nodes[w.index] != nullptr || w.ttl.count() <= 0) continue;
    const std::string& name = request.charges[w.index].policy->name;
    bool seen = false;
    for (std::size_t k = 0; k < j && !seen; ++k) {
      const StateWrite& o = eval.writes[k];
      seen = nodes[o.index] == nullptr && o.ttl.count() > 0 &&
             request.charges[o.index].policy->name == name;
    }
    new_keys += seen ? 0 : 1;
  }
  if (new_keys > 0 && !make_room(shard, now_us, new_keys, nodes)) {
    return fail(ErrorCode::kResourceExhausted, "memory store full: " + std::to_string(capacity()) +
                                                   " keys (memory.max_keys), none free to evict");
  }

  // Keys that exist first: make_room erased none of the nodes found above (rehashing moves no
  // node). Then new keys.
  bool inserts = false;
  for (const StateWrite& w : eval.writes) {
    Node* node = nodes[w.index];
    if (node == nullptr) {
      inserts = true;
      continue;
    }
    node->value.state = w.state;
    rekey(shard, *node, now_us + w.ttl.count());
  }
  if (inserts) {
    for (const StateWrite& w : eval.writes) {
      if (nodes[w.index] != nullptr) continue;
      const std::string& name = request.charges[w.index].policy->name;
      make_key(key, name, stored);
      const std::uint64_t hash = key_hash(ih, name);
      const std::int64_t expires_us = now_us + w.ttl.count();
      // A policy given twice in one request has its key inserted by the first of its writes.
      Node* node = shard.map.find(key, hash);
      if (node == nullptr) {
        if (w.ttl.count() <= 0) continue;  // equivalent to no state: nothing to hold
        node = shard.map.insert(key, hash);
        node->value.expires_us = expires_us;
        link(shard, *node);
      } else {
        rekey(shard, *node, expires_us);
      }
      node->value.state = w.state;
    }
  }
  for (const StateWrite& w : slots) {
    make_key(key, request.charges[w.index].policy->name, stored);
    auto lt = shard.leases.find(std::string_view(key));
    if (lt == shard.leases.end()) lt = shard.leases.emplace(key, std::vector<Lease>{}).first;
    lt->second.push_back(Lease{std::string(request.lease), now_us + w.ttl.count()});
  }
  // Steady, bounded clean-up of states that are full again (after the writes, so that it never
  // frees a node this decision is about to reuse).
  drop_expired(shard, now_us, 2);
  return std::move(eval.verdict);  // decided_at = now, set by evaluate()
}

void MemoryStore::update_leases(const LeaseRequest& request, bool renew) {
  std::string key;
  std::string stored;
  stored_identity(stored, request.identity);
  Shard& shard = shard_for(identity_hash(stored));
  const std::int64_t now_us = to_us(clock_.now());
  std::lock_guard lock(shard.mu);
  for (const Charge& c : request.charges) {
    if (c.policy == nullptr || !c.policy->is_concurrency()) continue;
    make_key(key, c.policy->name, stored);
    auto lt = shard.leases.find(std::string_view(key));
    if (lt == shard.leases.end()) continue;
    std::vector<Lease>& leases = lt->second;
    for (auto it = leases.begin(); it != leases.end(); ++it) {
      if (it->id != request.lease) continue;
      if (renew) {
        it->expires_us = now_us + c.policy->period.count();
      } else {
        leases.erase(it);  // one slot: a policy given twice took two under the same id
      }
      break;
    }
    if (live_leases(leases, now_us) == 0) shard.leases.erase(lt);
  }
}

void MemoryStore::release(const LeaseRequest& request, RefundCallback done) {
  update_leases(request, false);
  done(Result<void>{});
}

void MemoryStore::renew(const LeaseRequest& request, RefundCallback done) {
  update_leases(request, true);
  done(Result<void>{});
}

std::size_t MemoryStore::slots_held(std::string_view identity, std::string_view policy) const {
  std::string stored;
  std::string key;
  stored_identity(stored, identity);
  make_key(key, policy, stored);
  const Shard& shard = shard_for(identity_hash(stored));
  const std::int64_t now_us = to_us(clock_.now());
  std::lock_guard lock(shard.mu);
  auto lt = shard.leases.find(std::string_view(key));
  if (lt == shard.leases.end()) return 0;
  std::size_t held = 0;
  for (const Lease& l : lt->second) held += l.expires_us > now_us ? 1 : 0;
  return held;
}

Result<void> MemoryStore::refund_now(const RefundRequest& request) {
  if (auto ok = check_refund(request); !ok) return ok;
  {
    // The slots the refunded decision took (those that consumed), given back by their lease.
    std::vector<Charge> taken;
    for (std::size_t i = 0; i < request.charges.size(); ++i) {
      if (request.charges[i].policy->is_concurrency() && refund_cost(request, i) > 0) {
        taken.push_back(request.charges[i]);
      }
    }
    if (!taken.empty()) update_leases(LeaseRequest{request.identity, taken, request.lease}, false);
  }
  const std::size_t n = request.charges.size();
  const Timestamp now = clock_.now();
  const std::int64_t now_us = to_us(now);
  // Not the hot path: plain vectors.
  std::vector<Charge> charges(request.charges.begin(), request.charges.end());
  for (std::size_t i = 0; i < n; ++i) charges[i].cost = refund_cost(request, i);
  std::vector<std::optional<State>> states(n);
  std::vector<Node*> nodes(n, nullptr);
  std::string key;
  std::string stored;  // as decide() stores it (long identities as their digest)
  stored_identity(stored, request.identity);

  const std::uint64_t ih = identity_hash(stored);
  Shard& shard = shard_for(ih);
  std::lock_guard lock(shard.mu);
  for (std::size_t i = 0; i < n; ++i) {
    if (charges[i].cost == 0 || charges[i].policy->is_concurrency()) continue;
    make_key(key, charges[i].policy->name, stored);
    Node* node = shard.map.find(key, key_hash(ih, charges[i].policy->name));
    if (node == nullptr || node->value.expires_us <= now_us) continue;  // nothing to give back
    nodes[i] = node;
    states[i] = node->value.state;
  }
  // Every write is to a state read above (a missing state gives nothing back): no insertion.
  for (const StateWrite& w : plan_refund(charges, states, request.consumed_at, now)) {
    Node* node = nodes[w.index];
    if (node == nullptr) continue;  // a policy given twice, its key already deleted
    if (w.ttl.count() > 0) {
      node->value.state = w.state;
      rekey(shard, *node, now_us + w.ttl.count());
      continue;
    }
    // Equivalent to no state: forget it.
    for (std::size_t j = w.index; j < n; ++j) {
      if (nodes[j] == node) nodes[j] = nullptr;
    }
    erase(shard, *node);
  }
  return {};
}

void MemoryStore::refund(const RefundRequest& request, RefundCallback done) {
  done(refund_now(request));  // outside the shard lock, as decide()
}

Result<std::vector<std::int64_t>> MemoryStore::count_now(std::span<const CountRequest> counters) {
  if (auto ok = check_counters(counters); !ok) return tl::unexpected(ok.error());
  // A name no policy can have (policy names never contain NUL), so counters and states never
  // share a key.
  static constexpr std::string_view kCounterPolicy{"\0count", 6};
  const std::int64_t now_us = to_us(clock_.now());
  std::vector<std::int64_t> values;
  values.reserve(counters.size());
  std::string key;
  std::string stored;
  for (const CountRequest& c : counters) {
    stored_identity(stored, c.key);
    make_key(key, kCounterPolicy, stored);
    const std::uint64_t ih = identity_hash(stored);
    const std::uint64_t hash = key_hash(ih, kCounterPolicy);
    Shard& shard = shard_for(ih);
    std::lock_guard lock(shard.mu);
    Node* node = shard.map.find(key, hash);
    const bool live = node != nullptr && node->value.expires_us > now_us;
    const std::int64_t before = live ? node->value.state.a : 0;
    if (c.hits == 0) {  // a look: nothing written
      values.push_back(before);
      continue;
    }
    const std::int64_t after =
        before > std::numeric_limits<std::int64_t>::max() - c.hits ? before : before + c.hits;
    const std::int64_t expires_us = now_us + c.ttl.count();
    if (node == nullptr) {
      std::array<Node*, 1> keep{nullptr};
      if (!make_room(shard, now_us, 1, keep)) {
        return fail(ErrorCode::kResourceExhausted,
                    "memory store full: " + std::to_string(capacity()) +
                        " keys (memory.max_keys), none free to evict");
      }
      node = shard.map.insert(key, hash);
      node->value.expires_us = expires_us;
      link(shard, *node);
    } else {
      rekey(shard, *node, expires_us);
    }
    node->value.state = State{after, 0, 0};
    drop_expired(shard, now_us, 2);
    values.push_back(after);
  }
  return values;
}

void MemoryStore::count(std::span<const CountRequest> counters, CountCallback done) {
  done(count_now(counters));  // outside the shard locks, as decide()
}

void MemoryStore::rekey(Shard& shard, Node& node, std::int64_t expires_us) {
  Entry& entry = node.value;
  if ((expires_us >> kExpiryBucketShift) >= entry.filed) {
    entry.expires_us = expires_us;  // filed in its bucket or an earlier one: nothing moves
    return;
  }
  unlink(shard, node);
  entry.expires_us = expires_us;
  link(shard, node);
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

std::size_t MemoryStore::longest_probe() const {
  std::size_t longest = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    longest = std::max(longest, s->map.longest_probe());
  }
  return longest;
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

std::uint64_t MemoryStore::refused_count() const {
  std::uint64_t total = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    total += s->refused;
  }
  return total;
}

MemoryStoreStats MemoryStore::stats() const {
  MemoryStoreStats out;
  out.capacity = capacity();
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    out.keys += s->map.size();
    out.expired += s->expired;
    out.evicted += s->evicted;
    out.refused += s->refused;
  }
  return out;
}

}  // namespace fg::memory

namespace fg {

std::unique_ptr<Store> make_memory_store(const MemoryStoreOptions& options, const Clock& clock) {
  return std::make_unique<memory::MemoryStore>(options, clock);
}

}  // namespace fg
