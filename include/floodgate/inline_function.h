// inline_function.h — a move-only callable whose target lives inside it, never on the heap.
//
// InlineFunction<R(Args...), Capacity> holds any callable of at most Capacity bytes (aligned to
// at most alignof(std::max_align_t), nothrow move constructible) in a buffer of its own, and
// calls it through a pointer to one static table of three functions per target type (invoke,
// move, destroy): 8 bytes beside the buffer, no virtual calls, no allocation. A callable that
// does not fit is a compile error, not a silent heap allocation: that is the point of it, on the
// path of every decision (std::function allocates for any capture over 16 bytes in libstdc++, and
// a decision's completion nests three such captures: the HTTP exchange's, the decider's and the
// store's).
//
// It is move-only, so it may own move-only targets (an Asio completion handler); a moved-from
// InlineFunction is empty. It may be called any number of times, like std::function; calling an
// empty one terminates the process. Its call operator is not const: the target may change its
// own captures (a `mutable` lambda).
//
// Thread safety: none of its own; one object is used by one thread at a time, like a
// std::function.
#pragma once

#include <cstddef>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>

namespace fg {

template <typename Signature, std::size_t Capacity>
class InlineFunction;

template <typename R, typename... Args, std::size_t Capacity>
class InlineFunction<R(Args...), Capacity> {
 public:
  static constexpr std::size_t kCapacity = Capacity;
  static constexpr std::size_t kAlignment = alignof(std::max_align_t);

  // Whether a callable of type F may be held (sizeof, alignment, nothrow move).
  template <typename F>
  static constexpr bool fits = sizeof(F) <= Capacity && alignof(F) <= kAlignment &&
                               std::is_nothrow_move_constructible_v<F>;

  InlineFunction() noexcept = default;
  InlineFunction(std::nullptr_t) noexcept {}  // NOLINT: as std::function, from nullptr

  template <typename F, typename D = std::decay_t<F>>
    requires(!std::is_same_v<D, InlineFunction> && std::is_invocable_r_v<R, D&, Args...>)
  InlineFunction(F&& f) noexcept(std::is_nothrow_constructible_v<D, F&&>) {  // NOLINT: implicit
    static_assert(sizeof(D) <= Capacity,
                  "this callable is larger than the InlineFunction's capacity: raise the "
                  "capacity where the InlineFunction type is named, or capture less");
    static_assert(alignof(D) <= kAlignment, "this callable is over-aligned for InlineFunction");
    static_assert(std::is_nothrow_move_constructible_v<D>,
                  "InlineFunction moves its target with noexcept: the callable's move must not "
                  "throw");
    if constexpr (std::is_pointer_v<D> || std::is_member_pointer_v<D>) {
      if (f == nullptr) return;  // a null function pointer makes an empty InlineFunction
    }
    ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
    ops_ = &kOps<D>;
  }

  InlineFunction(InlineFunction&& other) noexcept { take(other); }

  InlineFunction& operator=(InlineFunction&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }

  InlineFunction& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }

  InlineFunction(const InlineFunction&) = delete;
  InlineFunction& operator=(const InlineFunction&) = delete;

  ~InlineFunction() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  R operator()(Args... args) {
    if (ops_ == nullptr) std::terminate();  // no target: a bug in the caller
    return ops_->invoke(storage_, std::forward<Args>(args)...);
  }

 private:
  struct Ops {
    R (*invoke)(void* target, Args&&... args);
    // Move-constructs the target at `to` from the one at `from`, then destroys the one at `from`.
    void (*relocate)(void* from, void* to) noexcept;
    void (*destroy)(void* target) noexcept;
  };

  template <typename F>
  static R invoke(void* target, Args&&... args) {
    return (*std::launder(static_cast<F*>(target)))(std::forward<Args>(args)...);
  }
  template <typename F>
  static void relocate(void* from, void* to) noexcept {
    F* source = std::launder(static_cast<F*>(from));
    ::new (to) F(std::move(*source));
    source->~F();
  }
  template <typename F>
  static void destroy(void* target) noexcept {
    std::launder(static_cast<F*>(target))->~F();
  }
  template <typename F>
  static constexpr Ops kOps{&invoke<F>, &relocate<F>, &destroy<F>};

  void take(InlineFunction& other) noexcept {
    if (other.ops_ == nullptr) return;
    other.ops_->relocate(other.storage_, storage_);
    ops_ = std::exchange(other.ops_, nullptr);
  }
  void reset() noexcept {
    // Emptied before the target's destructor runs, which may reach this object again.
    if (const Ops* ops = std::exchange(ops_, nullptr)) ops->destroy(storage_);
  }

  alignas(kAlignment) unsigned char storage_[Capacity];
  const Ops* ops_ = nullptr;
};

}  // namespace fg
