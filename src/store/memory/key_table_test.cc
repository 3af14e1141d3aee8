#include "store/memory/key_table.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace fg::memory {
namespace {

using Table = KeyTable<int>;

// The table against std::unordered_map over random inserts, erases and lookups, with few slot
// bits in use so that runs of probes wrap around the end of the array and meet each other.
TEST(KeyTable, AgreesWithAMapOverRandomOperations) {
  std::mt19937_64 rng(7);
  for (const int key_space : {8, 60, 1000}) {
    Table table;
    std::unordered_map<std::string, Table::Node*> model;
    for (int step = 0; step < 200'000; ++step) {
      const std::string key = "k" + std::to_string(rng() % key_space);
      const int op = static_cast<int>(rng() % 3);
      Table::Node* found = table.find(key);
      const auto m = model.find(key);
      ASSERT_EQ(found, m == model.end() ? nullptr : m->second) << key << " at step " << step;
      if (op == 0 && found == nullptr) {
        Table::Node* node = table.insert(key);
        ASSERT_EQ(node->key(), key);
        node->value = step;
        model.emplace(key, node);
      } else if (op == 1 && found != nullptr) {
        table.erase(found);
        model.erase(m);
      }
      ASSERT_EQ(table.size(), model.size());
    }
    // Every node left is found at the address it was given, with the value written then.
    for (const auto& [key, node] : model) {
      ASSERT_EQ(table.find(key), node);
      ASSERT_EQ(node->key(), key);
    }
    // The table holds at most 4 slots per 3 keys it held at once, and never fewer than 16.
    EXPECT_LE(table.slot_count(), std::max<std::size_t>(16, key_space * 8 / 3));
  }
}

// Keys whose hashes share their low bits all probe from one slot: erasing from the middle of
// such a run must keep every later key reachable.
TEST(KeyTable, ErasingFromACollidingRunKeepsTheRestReachable) {
  Table table;
  // Find keys that share a home slot in a 16-slot table (the first size).
  std::vector<std::string> same_home;
  for (int i = 0; same_home.size() < 6; ++i) {
    std::string key = "c" + std::to_string(i);
    if ((Table::hash_of(key) & 15) == 3) same_home.push_back(std::move(key));
  }
  std::vector<Table::Node*> nodes;
  for (const std::string& key : same_home) nodes.push_back(table.insert(key));
  ASSERT_EQ(table.slot_count(), 16u);
  for (std::size_t gone = 0; gone < same_home.size(); ++gone) {
    table.erase(nodes[gone]);
    EXPECT_EQ(table.find(same_home[gone]), nullptr);
    for (std::size_t k = gone + 1; k < same_home.size(); ++k) {
      EXPECT_EQ(table.find(same_home[k]), nodes[k]) << same_home[k] << " after erasing "
                                                    << same_home[gone];
    }
  }
  EXPECT_EQ(table.size(), 0u);
}

TEST(KeyTable, KeysOfAnyBytesAndLengthAreTheirOwn) {
  Table table;
  const std::string with_nul("p\0=id", 5);
  const std::string long_key(300, 'x');
  Table::Node* a = table.insert(with_nul);
  Table::Node* b = table.insert(std::string("p\0=ie", 5));
  Table::Node* c = table.insert(long_key);
  Table::Node* d = table.insert("");
  EXPECT_EQ(table.find(with_nul), a);
  EXPECT_EQ(table.find(std::string("p\0=ie", 5)), b);
  EXPECT_EQ(table.find(long_key), c);
  EXPECT_EQ(table.find(""), d);
  EXPECT_EQ(table.find(std::string("p\0=i", 4)), nullptr);
  EXPECT_EQ(table.find(std::string(299, 'x')), nullptr);
  EXPECT_EQ(c->key(), long_key);
}

// Hash flooding: a client picks its identities, so it can pick, offline, keys that all fall on
// one slot under any hash it can compute. std::hash is one (MurmurHash, the same seed in every
// process): 2,000 keys that share the low 12 bits of it, as a 4,096-slot table would index them,
// took 8 million tries. The table hashes under the process's secret key instead, so those keys
// land where chance puts them, and no lookup reads more than a few slots.
TEST(KeyTable, KeysChosenToCollideUnderAnUnkeyedHashDoNotLengthenProbes) {
  constexpr std::size_t kKeys = 2000;
  std::vector<std::string> chosen;
  for (std::uint64_t i = 0; chosen.size() < kKeys; ++i) {
    std::string key = "api-key-" + std::to_string(i);
    if ((std::hash<std::string_view>{}(key) & 0xfff) == 0x5a5) chosen.push_back(std::move(key));
  }
  Table table;
  for (const std::string& key : chosen) table.insert(key);
  ASSERT_EQ(table.slot_count(), 4096u);  // the table those keys were chosen against
  // At this load (under 1/2) a key sits within a few dozen slots of its own, with room to spare.
  EXPECT_LT(table.longest_probe(), 100u);
  for (const std::string& key : chosen) ASSERT_NE(table.find(key), nullptr);
}

}  // namespace
}  // namespace fg::memory
