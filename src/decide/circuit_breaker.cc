#include "decide/circuit_breaker.h"

#include <algorithm>

namespace fg::decide {
namespace {

CircuitBreakerOptions clamped(CircuitBreakerOptions o) {
  o.failure_threshold = std::max(o.failure_threshold, 1);
  o.open_duration = std::max(o.open_duration, Duration(0));
  o.max_open_duration = std::max(o.max_open_duration, o.open_duration);
  o.probe_timeout = std::max(o.probe_timeout, Duration(0));
  return o;
}

}  // namespace

CircuitBreaker::CircuitBreaker(CircuitBreakerOptions options)
    : options_(clamped(options)), backoff_(options_.open_duration) {}

bool CircuitBreaker::allow(Timestamp now) {
  State s = state_.load(std::memory_order_acquire);
  if (s == State::kClosed) return true;
  // Open or half-open: nothing can change before the deadline, so the many callers that arrive
  // during an outage answer from two loads, without the mutex.
  if (to_us(now) < deadline_us_.load(std::memory_order_relaxed)) return false;

  std::lock_guard lock(mutex_);
  s = state_.load(std::memory_order_relaxed);
  if (s == State::kClosed) return true;  // a success closed it meanwhile
  const std::int64_t deadline = deadline_us_.load(std::memory_order_relaxed);
  if (to_us(now) < deadline) return false;  // another caller became the probe meanwhile
  // Open and the wait is over, or half-open and the probe never reported: this caller probes,
  // and holds the slot for probe_timeout. Every other caller sees the new deadline.
  deadline_us_.store(to_us(now + options_.probe_timeout), std::memory_order_relaxed);
  state_.store(State::kHalfOpen, std::memory_order_release);
  return true;
}

void CircuitBreaker::on_success() {
  // The hot path: closed and healthy writes nothing, so the line is never invalidated.
  if (state_.load(std::memory_order_acquire) == State::kClosed) {
    if (failures_.load(std::memory_order_relaxed) != 0) {
      failures_.store(0, std::memory_order_relaxed);
    }
    return;
  }
  std::lock_guard lock(mutex_);
  failures_.store(0, std::memory_order_relaxed);
  backoff_ = options_.open_duration;
  deadline_us_.store(0, std::memory_order_relaxed);
  state_.store(State::kClosed, std::memory_order_release);
}

void CircuitBreaker::on_failure(Timestamp now) {
  const State s = state_.load(std::memory_order_acquire);
  if (s == State::kOpen) return;  // a call from before the opening: the wait stands
  if (s == State::kClosed) {
    // Lock-free count: racing failures each add one, and exactly one of them sees the threshold
    // (or a later one sees more, if a success reset the count meanwhile).
    const int n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n < options_.failure_threshold) return;
  }

  std::lock_guard lock(mutex_);
  switch (state_.load(std::memory_order_relaxed)) {
    case State::kClosed:
      // Re-check under the lock: a success may have reset the count since the fetch_add.
      if (failures_.load(std::memory_order_relaxed) < options_.failure_threshold) return;
      open_locked(now, backoff_);
      return;
    case State::kHalfOpen:
      // The probe failed: wait twice as long. Doubling a value capped at max_open_duration
      // cannot overflow (Durations are 64-bit µs).
      backoff_ = std::min(backoff_ * 2, options_.max_open_duration);
      open_locked(now, backoff_);
      return;
    case State::kOpen:
      return;  // another failure opened it first
  }
}

void CircuitBreaker::open_locked(Timestamp now, Duration wait) {
  failures_.store(0, std::memory_order_relaxed);
  deadline_us_.store(to_us(now + wait), std::memory_order_relaxed);
  state_.store(State::kOpen, std::memory_order_release);
  times_opened_.fetch_add(1, std::memory_order_relaxed);
}

CircuitBreaker::State CircuitBreaker::state() const {
  return state_.load(std::memory_order_acquire);
}

bool CircuitBreaker::healthy() const {
  return state_.load(std::memory_order_acquire) == State::kClosed &&
         failures_.load(std::memory_order_relaxed) == 0;
}

std::uint64_t CircuitBreaker::times_opened() const {
  return times_opened_.load(std::memory_order_relaxed);
}

}  // namespace fg::decide
