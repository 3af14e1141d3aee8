// keyed_hash.cc — the process's SipHash key (keyed_hash.h).
#include "util/keyed_hash.h"

#include <sys/random.h>

#include <cerrno>
#include <system_error>

namespace fg::util {

const HashKey& process_hash_key() {
  // getrandom(2) reads the kernel's pool, which mixes every source the kernel has and, with no
  // flags, waits only until that pool is first seeded (early at boot). Not std::random_device:
  // libstdc++'s default device executes the CPU's RDSEED or RDRAND where the CPU has them (no
  // system call; strace shows none), and CPUs have shipped whose instruction reports success
  // while returning a constant (AMD's RDRAND after a resume, RDSEED on some Zen 5 parts), which
  // would give every process the same, known key. A failure to read throws, at the first
  // table's construction, at start, rather than hashing under a guessable key.
  static const HashKey key = [] {
    HashKey k{};
    auto* out = reinterpret_cast<unsigned char*>(k.data());
    std::size_t filled = 0;
    while (filled < sizeof k) {
      const ssize_t n = getrandom(out + filled, sizeof k - filled, 0);
      if (n < 0) {
        if (errno == EINTR) continue;  // a signal before any byte: ask again
        throw std::system_error(errno, std::generic_category(), "getrandom");
      }
      filled += static_cast<std::size_t>(n);
    }
    return k;
  }();
  return key;
}

}  // namespace fg::util
