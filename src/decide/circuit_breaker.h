// circuit_breaker.h — stops the server from waiting on a store that keeps failing, and probes the
// store so that it recovers on its own. The decider keeps one per store node (a Redis Cluster
// master, decider.h), so one node's outage opens only its own.
//
// What: the caller asks allow(now) before each store call and reports the call's end with
// on_success() or on_failure(now). The breaker has three states:
//
//   closed     every call allowed. failure_threshold consecutive failures open the circuit.
//   open       no call allowed until the open duration has passed since it opened. The first
//              allow() after that is the probe: it gets true and the state becomes half-open.
//   half-open  one probe is out; every other allow() gets false. The probe's success closes the
//              circuit; its failure reopens it for twice the previous duration (capped at
//              max_open_duration). A probe that never reports frees the slot after probe_timeout:
//              the next allow() then sends another probe.
//
// Any success, from the probe or from a call started before the circuit opened, closes the
// circuit and resets the failure count and the backoff: the store evidently answers. A failure
// reported while open is ignored (a call started before the circuit opened); a failure reported
// while half-open is taken as the probe's, whichever call it came from (the breaker does not tell
// calls apart; it errs towards staying open).
//
// Worked example (defaults: threshold 5, 500 ms doubling to at most 5 s): failures 1-5 at t=0
// open it until t=0.5 s; allow(0.5 s) is the probe and it fails at 0.6 s → open until 1.6 s; the
// next probe fails at 1.7 s → open until 3.7 s; ... 4 s, then 5 s, 5 s, ...; a probe's success
// closes it and the next opening waits 500 ms again.
//
// Thread safety: every method may be called from any thread. The healthy hot path (closed, no
// failures) is an acquire load in allow() and two relaxed/acquire loads in on_success(), with no
// store: the breaker's cache line stays shared by every core. Transitions take a mutex; so does
// allow() in the open or half-open state once its wait has run out (only then can it change
// anything).
//
// Units: fg::Timestamp / fg::Duration, integer µs. Time is passed in; the breaker never reads a
// clock. Time going backwards changes nothing (the circuit stays open longer).
//
// Failure: none. Options out of range are clamped: failure_threshold < 1 is 1, negative
// durations are 0, max_open_duration < open_duration is open_duration.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "floodgate/clock.h"

namespace fg::decide {

struct CircuitBreakerOptions {
  // Consecutive failures that open the circuit. Lower opens faster on a real outage, and also on
  // a short burst of timeouts.
  int failure_threshold = 5;
  // First wait before a probe; doubles after each failed probe. While open, every request is
  // answered without the store (on_store_error), so this is how long a recovered store goes
  // unused at worst on the first opening.
  Duration open_duration = std::chrono::milliseconds(500);
  // Cap of the doubling: a store that stays down is probed this often.
  Duration max_open_duration = std::chrono::seconds(5);
  // A probe that never reports frees the slot for another probe after this. Set it above the
  // store timeout, or a slow probe is joined by a second one.
  Duration probe_timeout = std::chrono::seconds(5);
};

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  explicit CircuitBreaker(CircuitBreakerOptions options = {});
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Whether the caller may call the store now. Closed: true. Open: false until the open duration
  // has passed; then exactly one caller gets true (the probe; the state becomes half-open) and
  // everyone else gets false until that probe reports (or probe_timeout passes).
  bool allow(Timestamp now);

  // Any success closes the circuit and resets the backoff and the failure count.
  void on_success();

  // Closed: counts consecutive failures, opening at the threshold. Half-open: reopens with the
  // doubled duration (capped). Open: ignored.
  void on_failure(Timestamp now);

  State state() const;
  // Closed with no failure counted: nothing a success could change.
  bool healthy() const;
  // Transitions into open, reopenings after a failed probe included.
  std::uint64_t times_opened() const;

  const CircuitBreakerOptions& options() const { return options_; }

 private:
  // Opens (or reopens) for `wait` from `now`. Caller holds mutex_.
  void open_locked(Timestamp now, Duration wait);

  const CircuitBreakerOptions options_;

  std::atomic<State> state_{State::kClosed};
  std::atomic<int> failures_{0};  // consecutive failures while closed
  // Open: the end of the wait. Half-open: when the probe's slot frees (sent + probe_timeout).
  // Written under mutex_ before state_ (release), so a reader of state_ (acquire) sees a deadline
  // of the same or a later transition; the mutex path re-checks anyway.
  std::atomic<std::int64_t> deadline_us_{0};
  std::atomic<std::uint64_t> times_opened_{0};

  std::mutex mutex_;  // serializes transitions
  Duration backoff_;  // the current open duration; guarded by mutex_
};

}  // namespace fg::decide
