// keyed_hash.h — the hash of every table that a client's bytes choose a place in (the memory
// store's states and shards, the deny cache, the most-denied sketch, the RLS deny memo).
//
// Why keyed: std::hash of a string is MurmurHash with a fixed seed, the same in every process,
// so a client who picks its own identities (an API key is any bytes) can compute offline, by
// trying keys, thousands that fall on one shard and one slot, and make every lookup there scan
// all of them (hash flooding). Seeding MurmurHash does not help: it has multicollisions that hold
// for every seed. SipHash is a pseudorandom function of a secret 128-bit key: without the key,
// where a string lands cannot be computed, so no chosen set of keys collides more than chance.
//
// What:
//   siphash<C, D>(key, bytes)  SipHash-C-D (Aumasson and Bernstein, 2012) of `bytes` under `key`
//                              (two little-endian words of its 16 bytes), the 64-bit output;
//                              siphash<2, 4> is the reference's SipHash-2-4, which the Redis
//                              store's hash tags use under key_secret (store/redis/keys.h).
//   keyed_hash(bytes)          SipHash-1-3 under the process's key: 128 bits read from the
//                              kernel (getrandom) the first time it is needed, never
//                              written anywhere. 1-3 rounds, as hash tables use it: a table
//                              needs only that an attacker cannot predict collisions, and a
//                              request hashes its identity a few times.
//   KeyedHash                  keyed_hash as a transparent hasher for unordered containers.
//
// Thread safety: pure, but for the process key's first draw (a thread-safe static).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace fg::util {

using HashKey = std::array<std::uint64_t, 2>;

namespace siphash_detail {

inline std::uint64_t load_le64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

struct State {
  std::uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }
};

}  // namespace siphash_detail

template <int C, int D>
std::uint64_t siphash(const HashKey& key, std::string_view bytes) {
  siphash_detail::State s{key[0] ^ 0x736f6d6570736575ULL, key[1] ^ 0x646f72616e646f6dULL,
                          key[0] ^ 0x6c7967656e657261ULL, key[1] ^ 0x7465646279746573ULL};
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  const std::size_t whole = n - n % 8;
  for (std::size_t i = 0; i < whole; i += 8) {
    const std::uint64_t m = siphash_detail::load_le64(p + i);
    s.v3 ^= m;
    for (int r = 0; r < C; ++r) s.round();
    s.v0 ^= m;
  }
  // The constants above are "somepseudorandomlygeneratedbytes" in ASCII (the reference's IV).
  // The last word: the remaining 0-7 bytes, little-endian, and the length's low byte on top.
  std::uint64_t last = static_cast<std::uint64_t>(n & 0xff) << 56;
  for (std::size_t i = 0; i < n % 8; ++i) {
    last |= static_cast<std::uint64_t>(p[whole + i]) << (8 * i);
  }
  s.v3 ^= last;
  for (int r = 0; r < C; ++r) s.round();
  s.v0 ^= last;
  s.v2 ^= 0xff;
  for (int r = 0; r < D; ++r) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

// The process's key, drawn once, on first use. Every table that uses it calls this when it is
// made (at start), so that a random source that cannot be read fails the start, never a request.
const HashKey& process_hash_key();

inline std::uint64_t keyed_hash(std::string_view bytes) {
  return siphash<1, 3>(process_hash_key(), bytes);
}

struct KeyedHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return keyed_hash(s); }
};

}  // namespace fg::util
