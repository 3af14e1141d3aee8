// count_allocations.h — counts every allocation of the test program that includes it, so a test
// can show that a path allocates nothing (or as little as another): allocations() before and
// after. It replaces the global operator new and delete, so include it in exactly one
// translation unit of a test program, and only in tests.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace count_allocations {

inline std::atomic<long> g_allocations{0};

// Calls to operator new so far, in this program.
inline long allocations() { return g_allocations.load(std::memory_order_relaxed); }

}  // namespace count_allocations

void* operator new(std::size_t size) {
  count_allocations::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// g++ 12 inlines these into delete-expressions and then warns that free() is given what operator
// new returned, not seeing that this operator new is malloc itself: a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
