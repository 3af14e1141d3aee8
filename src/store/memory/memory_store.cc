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

MemoryStore::MemoryStore(const MemoryStoreOptions& options, const Clock& clock)
    : clock_(clock) {
  const std::size_t shards = std::max<std::size_t>(1, options.shards);
  per_shard_ = std::max<std::size_t>(1, options.max_keys / shards);
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

MemoryStore::Shard& MemoryStore::shard_for(std::string_view identity) {
  return *shards_[std::hash<std::string_view>{}(identity) % shards_.size()];
}

std::size_t MemoryStore::drop_expired(Shard& shard, std::int64_t now_us, std::size_t budget) {
  std::size_t dropped = 0;
  while (dropped < budget && !shard.by_expiry.empty() &&
         shard.by_expiry.begin()->first <= now_us) {
    auto first = shard.by_expiry.begin();
    shard.map.erase(*first->second);
    shard.by_expiry.erase(first);
    ++dropped;
  }
  shard.expired += dropped;
  return dropped;
}

void MemoryStore::make_room(Shard& shard, std::int64_t now_us) {
  if (shard.map.size() < per_shard_) return;
  if (drop_expired(shard, now_us, shard.by_expiry.size()) > 0) return;
  // Every state is live: forget the one nearest to full.
  auto first = shard.by_expiry.begin();
  shard.map.erase(*first->second);
  shard.by_expiry.erase(first);
  ++shard.evicted;
}

Result<Verdict> MemoryStore::decide_now(const DecideRequest& request) {
  if (auto ok = check_charges(request.charges); !ok) return tl::unexpected(ok.error());
  const std::size_t n = request.charges.size();
  const Timestamp now = clock_.now();
  const std::int64_t now_us = to_us(now);

  thread_local std::string key;
  std::array<std::optional<State>, kInlinePolicies> inline_states;
  std::vector<std::optional<State>> heap_states;
  std::span<std::optional<State>> states;
  if (n <= kInlinePolicies) {
    states = std::span(inline_states.data(), n);
  } else {
    heap_states.resize(n);
    states = heap_states;
  }

  Shard& shard = shard_for(request.identity);
  std::lock_guard lock(shard.mu);
  drop_expired(shard, now_us, 2);  // steady, bounded clean-up of full states
  for (std::size_t i = 0; i < n; ++i) {
    make_key(key, request.charges[i].policy->name, request.identity);
    auto it = shard.map.find(std::string_view(key));
    if (it != shard.map.end() && it->second.expiry->first > now_us) states[i] = it->second.state;
  }
  Evaluation eval = evaluate(request.charges, states, now);
  for (const StateWrite& w : eval.writes) {
    make_key(key, request.charges[w.index].policy->name, request.identity);
    const std::int64_t expires_us = now_us + w.ttl.count();
    auto it = shard.map.find(std::string_view(key));
    if (it == shard.map.end()) {
      make_room(shard, now_us);
      it = shard.map.emplace(key, Entry{}).first;
      it->second.expiry = shard.by_expiry.emplace(expires_us, &it->first).first;
    } else {
      // Re-key the index node in place: no allocation on the hot path.
      auto node = shard.by_expiry.extract(it->second.expiry);
      node.value().first = expires_us;
      it->second.expiry = shard.by_expiry.insert(std::move(node)).position;
    }
    it->second.state = w.state;
  }
  return std::move(eval.verdict);
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
