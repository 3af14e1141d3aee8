// request_arena.h — where the header section of the request being served lives: a block of
// memory a connection keeps from one request to the next, handed out front to back and taken
// back all at once when the next request begins.
//
// Beast's field container allocates once per field and once for the request line, so a request
// with a Host and an API key costs three allocations and three frees before anything else is
// done with it. With the container's allocator drawing from the connection's RequestArena they
// cost a pointer increment each. A request whose fields do not fit (a header section larger than
// kInlineBytes) takes the rest from the heap, as before.
//
// ArenaAllocator without an arena (default-constructed: every Request a test, the fuzzer or the
// upstream client makes) is the heap's allocator. A copy of a request is never in the arena
// (select_on_container_copy_construction): only the parser's own message, which does not outlive
// its request, is.
//
// Thread safety: an arena belongs to one connection (one thread). Failure: the heap's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

namespace fg::http {

class RequestArena {
 public:
  // Room for the fields of a request of a kilobyte or two (each field takes its name and value and
  // about 64 bytes of Beast's bookkeeping): a client's usual header section, at a cost of this
  // much more memory per open connection (nginx keeps 1 KiB per connection for the same purpose).
  static constexpr std::size_t kInlineBytes = 2048;

  RequestArena() = default;
  RequestArena(const RequestArena&) = delete;
  RequestArena& operator=(const RequestArena&) = delete;

  void* allocate(std::size_t bytes) {
    constexpr std::size_t kAlign = alignof(std::max_align_t);
    const std::size_t size = (bytes + kAlign - 1) / kAlign * kAlign;
    if (size <= kInlineBytes - used_) {
      void* p = buffer_ + used_;
      used_ += size;
      return p;
    }
    return ::operator new(bytes);
  }

  // Memory of the arena comes back with reset(); what came from the heap goes back to it now.
  void deallocate(void* p) noexcept {
    if (!owns(p)) ::operator delete(p);
  }

  // Everything handed out is free again: only when nothing allocated from it is still alive.
  void reset() noexcept { used_ = 0; }

  bool owns(const void* p) const noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const auto begin = reinterpret_cast<std::uintptr_t>(buffer_);
    return a >= begin && a < begin + kInlineBytes;
  }

  std::size_t used() const noexcept { return used_; }

 private:
  alignas(std::max_align_t) std::byte buffer_[kInlineBytes];
  std::size_t used_ = 0;
};

template <typename T>
class ArenaAllocator {
 public:
  using value_type = T;
  using propagate_on_container_copy_assignment = std::false_type;
  using propagate_on_container_move_assignment = std::false_type;
  using propagate_on_container_swap = std::false_type;
  using is_always_equal = std::false_type;

  ArenaAllocator() noexcept = default;
  explicit ArenaAllocator(RequestArena* arena) noexcept : arena_(arena) {}
  template <typename U>
  ArenaAllocator(const ArenaAllocator<U>& other) noexcept  // NOLINT: rebinding is implicit
      : arena_(other.arena()) {}

  T* allocate(std::size_t n) {
    if (arena_ == nullptr) return std::allocator<T>().allocate(n);
    static_assert(alignof(T) <= alignof(std::max_align_t));
    return static_cast<T*>(arena_->allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (arena_ == nullptr) return std::allocator<T>().deallocate(p, n);
    arena_->deallocate(p);
  }

  // A copy of a message is a value of its own: on the heap, whatever the original's arena.
  ArenaAllocator select_on_container_copy_construction() const noexcept { return {}; }

  RequestArena* arena() const noexcept { return arena_; }

  template <typename U>
  friend bool operator==(const ArenaAllocator& a, const ArenaAllocator<U>& b) noexcept {
    return a.arena() == b.arena();
  }

 private:
  RequestArena* arena_ = nullptr;
};

}  // namespace fg::http
