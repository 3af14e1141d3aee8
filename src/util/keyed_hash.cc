// keyed_hash.cc — the process's SipHash key (keyed_hash.h).
#include "util/keyed_hash.h"

#include <random>

namespace fg::util {

const HashKey& process_hash_key() {
  // std::random_device reads the kernel's random source (getrandom) on Linux; a failure to read
  // it throws, at the first table's first use, rather than hashing under a guessable key.
  static const HashKey key = [] {
    std::random_device rd;
    HashKey k{};
    for (std::uint64_t& word : k) word = (std::uint64_t{rd()} << 32) | rd();
    return k;
  }();
  return key;
}

}  // namespace fg::util
