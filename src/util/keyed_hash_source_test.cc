// The process's hash key comes from the kernel's random source, getrandom(2), and from nothing
// else. This binary defines getrandom itself (the executable's definition is the one the
// library's call binds to), so it sees what the key is read from: a known pattern, handed out in
// short reads after an interrupted first call.
#include <gtest/gtest.h>
#include <sys/types.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "util/keyed_hash.h"

namespace {

int calls = 0;
unsigned last_flags = ~0u;
unsigned char next_byte = 0xa0;

}  // namespace

extern "C" ssize_t getrandom(void* buffer, std::size_t length, unsigned int flags) {
  last_flags = flags;
  if (calls++ == 0) {
    errno = EINTR;
    return -1;
  }
  const std::size_t n = length < 5 ? length : 5;
  auto* out = static_cast<unsigned char*>(buffer);
  for (std::size_t i = 0; i < n; ++i) out[i] = next_byte++;
  return static_cast<ssize_t>(n);
}

namespace fg::util {
namespace {

TEST(ProcessHashKey, IsReadFromGetrandomThroughShortReadsAndInterruptions) {
  const HashKey& key = process_hash_key();
  std::array<unsigned char, 16> expected{};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    expected[i] = static_cast<unsigned char>(0xa0 + i);
  }
  EXPECT_EQ(std::memcmp(key.data(), expected.data(), expected.size()), 0);
  EXPECT_EQ(calls, 5);        // EINTR, then 5 + 5 + 5 + 1 bytes
  EXPECT_EQ(last_flags, 0u);  // the blocking, seeded pool: neither GRND_NONBLOCK nor GRND_RANDOM
  process_hash_key();
  EXPECT_EQ(calls, 5);  // drawn once
}

}  // namespace
}  // namespace fg::util
