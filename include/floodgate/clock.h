// clock.h — time in floodgate.
//
// Every algorithm takes `now` as an argument; only a Clock reads time, and only at the edge
// (the memory store, the HTTP server). The Redis store does not use a Clock at all: its scripts
// read Redis TIME, so every instance shares one clock.
//
// Units: a Timestamp is integer microseconds since the Unix epoch (2026 is ~1.8e15 µs, far below
// 2^53, so the same integers are exact in Redis's Lua doubles). A Duration is integer µs.
//
// Thread safety: SystemClock is stateless and thread-safe; ManualClock is thread-safe (atomic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace fg {

using Duration = std::chrono::microseconds;
using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

// Microseconds since the epoch, the representation the algorithms and scripts work in.
inline constexpr std::int64_t to_us(Timestamp t) { return t.time_since_epoch().count(); }
inline constexpr Timestamp from_us(std::int64_t us) { return Timestamp(Duration(us)); }

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp now() const = 0;
};

// Wall clock (CLOCK_REALTIME). Wall time may step backwards (NTP); the algorithms tolerate it:
// time going backwards never adds tokens.
class SystemClock final : public Clock {
 public:
  Timestamp now() const override {
    return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
  }
  // One process-wide instance.
  static const SystemClock& instance() {
    static const SystemClock clock;
    return clock;
  }
};

// Monotonic time (CLOCK_MONOTONIC) carried in a Timestamp: not a date, only differences mean
// anything. For intervals that must not move when wall time steps (the deny cache).
class MonotonicClock final : public Clock {
 public:
  Timestamp now() const override {
    return Timestamp(std::chrono::duration_cast<Duration>(
        std::chrono::steady_clock::now().time_since_epoch()));
  }
  static const MonotonicClock& instance() {
    static const MonotonicClock clock;
    return clock;
  }
};

// A clock that moves only when told to. For tests and simulations.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp start = from_us(1'800'000'000'000'000)) : us_(to_us(start)) {}
  Timestamp now() const override { return from_us(us_.load(std::memory_order_relaxed)); }
  void set(Timestamp t) { us_.store(to_us(t), std::memory_order_relaxed); }
  void advance(Duration d) { us_.fetch_add(d.count(), std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> us_;
};

}  // namespace fg
