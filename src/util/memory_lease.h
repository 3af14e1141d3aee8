// memory_lease.h — a share of a byte budget that many threads draw on (server.max_body_memory
// for request bodies, server.max_response_memory for upstream responses), given back when the
// lease is dropped.
//
// The budget is a counter of the bytes leased now; its bound is given at each take, so a reload
// that changes it applies to the next take. A take is all or nothing, by compare-and-swap: a
// share that would pass the bound never counts, not even for a moment, against another that
// would fit.
//
// Thread safety: the counter may be shared by any threads; one lease is used by one thread at a
// time. Header-only.
#pragma once

#include <atomic>
#include <cstddef>
#include <utility>

namespace fg::util {

class MemoryLease {
 public:
  MemoryLease() = default;
  explicit MemoryLease(std::atomic<std::size_t>* budget) : budget_(budget) {}
  MemoryLease(MemoryLease&& o) noexcept
      : budget_(std::exchange(o.budget_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  MemoryLease& operator=(MemoryLease&& o) noexcept {
    if (this != &o) {
      release();
      budget_ = std::exchange(o.budget_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  MemoryLease(const MemoryLease&) = delete;
  MemoryLease& operator=(const MemoryLease&) = delete;
  ~MemoryLease() { release(); }

  // Makes the share `total` bytes if it already is, or if taking the difference keeps the budget
  // at most `bound`; false, and the share unchanged, otherwise. Without a budget: true.
  bool grow_to(std::size_t total, std::size_t bound) {
    if (budget_ == nullptr || total <= bytes_) return true;
    const std::size_t more = total - bytes_;
    std::size_t held = budget_->load(std::memory_order_relaxed);
    do {
      if (held > bound || more > bound - held) return false;
    } while (!budget_->compare_exchange_weak(held, held + more, std::memory_order_relaxed));
    bytes_ = total;
    return true;
  }

  // Makes the share `total` bytes if it is more, giving the difference back.
  void shrink_to(std::size_t total) {
    if (budget_ == nullptr || total >= bytes_) return;
    budget_->fetch_sub(bytes_ - total, std::memory_order_relaxed);
    bytes_ = total;
  }

  std::size_t bytes() const { return bytes_; }

  // Gives the share back now (as dropping the lease does).
  void release() { shrink_to(0); }

 private:
  std::atomic<std::size_t>* budget_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace fg::util
