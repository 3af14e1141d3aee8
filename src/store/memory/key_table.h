// key_table.h — the memory store's index of its states by key.
//
// Open addressing with linear probing over an array of (hash, node) slots; each node is one
// allocation that holds the value and the key's bytes after it. A lookup reads the slot array
// (the hash compared there, so a collision of the slot does not touch the other node) and the
// node itself: two places in memory, where std::unordered_map reads four (the bucket, the node
// before the first of the bucket, the node, and the key's own allocation when it is longer than
// the string's inline buffer). Those reads were the store's largest cost under load (perf, 10,000
// clients). Nodes never move: a pointer to one holds until it is erased.
//
// Keys are hashed under the process's secret key (util/keyed_hash.h): a client chooses its
// identities, and under a hash it could compute it could choose thousands that probe from one
// slot, making each lookup there read all of them. find and insert take the hash from the caller
// too: the memory store derives its keys' hashes from their identity's (memory_store.cc,
// key_hash), which is as unpredictable. A table is given its hashes one way throughout.
//
// The table is at most 3/4 full, and grows by doubling; it never shrinks, so its slots are bounded
// by the most keys it held at once (the memory store bounds those by max_keys). Erasing shifts
// the slots after it back, so no erased slot is left behind to lengthen later probes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#include "util/keyed_hash.h"

namespace fg::memory {

template <typename Value>
class KeyTable {
 public:
  struct Node {
    Value value{};
    std::uint64_t hash = 0;
    std::size_t key_size = 0;
    std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), key_size}; }
  };

  static std::uint64_t hash_of(std::string_view key) { return util::keyed_hash(key); }

  KeyTable() = default;
  KeyTable(const KeyTable&) = delete;
  KeyTable& operator=(const KeyTable&) = delete;
  ~KeyTable() {
    for (const Slot& s : slots_) {
      if (s.node != nullptr) destroy(s.node);
    }
  }

  std::size_t size() const { return size_; }
  // Slots allocated (for the memory bound).
  std::size_t slot_count() const { return slots_.size(); }
  // The farthest any key sits from the slot its hash names: the most slots a lookup of a key
  // there reads, or a lookup of an absent key nearby (for the hash flooding test).
  std::size_t longest_probe() const {
    std::size_t longest = 0;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].node == nullptr) continue;
      longest = std::max<std::size_t>(longest, ((i - (slots_[i].hash & mask_)) & mask_) + 1);
    }
    return longest;
  }

  Node* find(std::string_view key) const { return find(key, hash_of(key)); }
  Node* find(std::string_view key, std::uint64_t hash) const {
    if (slots_.empty()) return nullptr;
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.node == nullptr) return nullptr;
      if (s.hash == hash && s.node->key() == key) return s.node;
    }
  }

  // A new node for `key`, which must not be in the table, with a value-initialised value.
  Node* insert(std::string_view key) { return insert(key, hash_of(key)); }
  Node* insert(std::string_view key, std::uint64_t hash) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    static_assert(alignof(Node) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    void* raw = ::operator new(sizeof(Node) + key.size());
    Node* node = new (raw) Node{};
    node->hash = hash;
    node->key_size = key.size();
    if (!key.empty()) std::memcpy(node + 1, key.data(), key.size());
    place(node);
    ++size_;
    return node;
  }

  // Takes `node` (in this table) out, and frees it.
  void erase(Node* node) {
    std::size_t i = node->hash & mask_;
    while (slots_[i].node != node) i = (i + 1) & mask_;
    // Backward shift: each following slot of the run that may sit at i (its home is not between
    // i and it) moves there, until an empty slot ends the run.
    for (std::size_t j = (i + 1) & mask_; slots_[j].node != nullptr; j = (j + 1) & mask_) {
      const std::size_t home = slots_[j].hash & mask_;
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
    --size_;
    destroy(node);
  }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    Node* node = nullptr;  // null: empty
  };

  static void destroy(Node* node) {
    node->~Node();
    ::operator delete(node);
  }

  void place(Node* node) {
    std::size_t i = node->hash & mask_;
    while (slots_[i].node != nullptr) i = (i + 1) & mask_;
    slots_[i] = Slot{node->hash, node};
  }

  void grow() {
    const std::size_t count = slots_.empty() ? 16 : slots_.size() * 2;
    std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(count));
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.node != nullptr) place(s.node);
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace fg::memory
