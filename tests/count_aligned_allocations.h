// count_aligned_allocations.h — counts the aligned allocations of the test program that includes
// it: Asio takes every block it does not find in its per-thread recycling cache from
// std::aligned_alloc, so a test can show that a path's operations and coroutine frames come from
// that cache (aligned_allocations() before and after). Include it in exactly one translation
// unit of a test program, and only in tests.
#pragma once

#include <atomic>
#include <cstdlib>

namespace count_aligned_allocations {

inline std::atomic<long> g_aligned_allocations{0};

// Calls to aligned_alloc so far, in this program.
inline long aligned_allocations() { return g_aligned_allocations.load(std::memory_order_relaxed); }

}  // namespace count_aligned_allocations

// Counted here, and served by posix_memalign (freed by free(), as aligned_alloc's blocks are).
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  count_aligned_allocations::g_aligned_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  return posix_memalign(&p, alignment, size) == 0 ? p : nullptr;
}
