// memory_bound — the memory a full memory store costs, measured: fills one MemoryStore to its
// capacity (max_keys) with distinct identities of a given length, one state each, and prints the
// process RSS before and after, per state. Run it in a fresh process per case (bench/
// memory_bound.sh does; docs/security.md has the figures):
//
//   build/release/bench/memory_bound MAX_KEYS IDENTITY_BYTES [POLICY_NAME_BYTES]
//
// The worst case per state is the longest identity held as it is (kMaxRawIdentityBytes, 64
// bytes; longer ones are held as a 33-byte digest) under the longest policy name the config
// accepts (64 characters). Every state is spent (1 token of 10 per day), so none can be evicted:
// the store holds exactly max_keys states when the fill stops.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rss.h"
#include "store/memory/memory_store.h"

namespace {

// A distinct identity of exactly `bytes` bytes (at least 12): the counter, padded with 'x'.
std::string identity(std::size_t i, std::size_t bytes) {
  std::string s = std::to_string(i);
  s.insert(0, 12 - std::min<std::size_t>(12, s.size()), '0');
  if (s.size() < bytes) s.append(bytes - s.size(), 'x');
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MAX_KEYS IDENTITY_BYTES [POLICY_NAME_BYTES]\n", argv[0]);
    return 2;
  }
  const std::size_t max_keys = std::strtoull(argv[1], nullptr, 10);
  const std::size_t id_bytes = std::max<std::size_t>(12, std::strtoull(argv[2], nullptr, 10));
  const std::size_t name_bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 64;

  fg::Policy p;
  p.name = std::string(name_bytes, 'p');
  p.limit = p.burst = 10;
  p.period = std::chrono::hours(24);
  const fg::Charge charge{&p, 1};

  const long before = fg::bench::rss_kib();
  fg::memory::MemoryStore store(fg::MemoryStoreOptions{.max_keys = max_keys},
                                fg::SystemClock::instance());
  const std::size_t capacity = store.capacity();
  std::size_t held = 0;
  std::size_t i = 0;
  for (; held < capacity && i < 4 * capacity + 1000; ++i) {
    const std::string id = identity(i, id_bytes);
    auto r = store.decide_now(fg::DecideRequest{id, std::span<const fg::Charge>(&charge, 1)});
    if (r) ++held;
  }
  const long after = fg::bench::rss_kib();
  const double per_state = held == 0 ? 0.0 : (after - before) * 1024.0 / static_cast<double>(held);
  std::printf(
      "max_keys=%zu identity_bytes=%zu policy_name_bytes=%zu states=%zu refused=%llu "
      "rss_before_kib=%ld rss_after_kib=%ld rss_per_state_bytes=%.0f total_mib=%.1f\n",
      max_keys, id_bytes, name_bytes, store.size(),
      static_cast<unsigned long long>(store.refused_count()), before, after, per_state,
      (after - before) / 1024.0);
  return store.size() == capacity ? 0 : 1;
}
