// access_log.h — the access log (one JSON line per request; off by default in the server), the
// writer that puts whole lines on a file descriptor, and a throttle for warning logs.
//
// What:
//   format_access_log()  an entry → one JSON object and '\n', e.g. (one line in the output)
//     {"time":"2026-11-28T06:30:32.123Z","peer":"192.0.2.7:51234","client":"ip:192.0.2.7",
//      "method":"GET","target":"/api/items?page=2","status":429,"bytes_sent":187,
//      "duration_ms":0.412,"policy":"per-minute","outcome":"denied","user_agent":"curl/8.4.0"}
//     Keys in that order. "client", "policy" and "outcome" are left out when empty; the others are
//     always there. Every string is JSON-escaped by util::append_json_string (util/text.h): `"`
//     and `\` with a backslash, \b \f \n \r \t as themselves, the other control characters
//     (U+0000-U+001F, U+007F-U+009F) as \u00XX, and every byte that is not part of valid UTF-8
//     (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) as \ufffd, so the line is
//     always valid JSON and never carries a raw terminal escape. `target` is cut to
//     kMaxLoggedTargetBytes and `user_agent` to kMaxLoggedUserAgentBytes before escaping (at a
//     UTF-8 character boundary when the cut falls inside one).
//   LineWriter  writes whole lines to a file descriptor from any thread.
//   LogThrottle  lets at most N events a second through and counts the ones held back, so that a
//     warning can say "(12 similar suppressed)".
//
// Thread safety: format_access_log is a pure function. LineWriter and LogThrottle may be used
// from any thread.
//
// Units: Timestamp / Duration are integer µs (fg::Timestamp, fg::Duration). "time" is RFC 3339
// UTC with milliseconds (truncated); "duration_ms" is milliseconds with 3 decimals (the µs, exact).
//
// Failure: nothing throws. A line LineWriter cannot write (an error, or an fd that stays
// unwritable for the write timeout) is dropped and counted in dropped(). The process must ignore
// SIGPIPE (the server does at start-up), or a write to a closed pipe kills it, as for any writer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/clock.h"

namespace fg::http {

// Bounds on the two client-chosen fields that can be long: the line stays a few KiB at most.
inline constexpr std::size_t kMaxLoggedTargetBytes = 2048;
inline constexpr std::size_t kMaxLoggedUserAgentBytes = 256;

struct AccessLogEntry {
  Timestamp time;                   // "2026-11-28T06:30:32.123Z" (UTC, ms truncated)
  std::string_view peer;            // TCP peer address
  std::string_view client;          // identity as shown (already redacted); empty: omitted
  std::string_view method, target;  // target cut to kMaxLoggedTargetBytes
  int status = 0;
  std::uint64_t bytes_sent = 0;  // response body bytes
  Duration duration{};           // "duration_ms" with 3 decimals; negative prints as 0
  std::string_view policy;       // headline policy; empty: omitted
  std::string_view outcome;      // "allowed" | "denied" | "degraded"; empty: omitted
  std::string_view user_agent;   // cut to kMaxLoggedUserAgentBytes
};

// One JSON object and '\n' (format at the top of this file).
std::string format_access_log(const AccessLogEntry& e);

// `target` with the value of every query parameter named in `names` replaced by "REDACTED", so
// that credentials sent in a URL never reach the log: "/x?api_key=s3cr3t&n=1" ->
// "/x?api_key=REDACTED&n=1". Names are compared as the most forgiving servers read them:
// percent-decoded, '+' as space, case-insensitively, without an array suffix, with '.', '-' and
// spaces as '_' ("API%5Fkey", "api_key[]", "api.key", "access-token"). A parameter without '='
// has no value to hide. The userinfo of an absolute-form target is replaced by "REDACTED".
std::string redact_query(std::string_view target, const std::vector<std::string>& names);

// The pieces, for other log lines and for tests (strings: util::append_json_string).
// "2026-11-28T06:30:32.123Z".
std::string format_rfc3339_ms(Timestamp t);
// The longest prefix of `s` of at most `max_bytes` that does not end inside a UTF-8 sequence.
std::string_view truncate_utf8(std::string_view s, std::size_t max_bytes);

// Writes whole lines to a file descriptor (stdout by default) from any thread: a mutex, and a
// write(2) loop that retries EINTR and short writes. It never blocks for long: before each chunk
// (at most PIPE_BUF bytes, which a pipe or socket that polls writable accepts without blocking)
// it polls the fd for at most `timeout`; a line not fully written by then is dropped. After a
// drop, later lines do not wait at all until the fd accepts a write again, so a stuck reader
// costs one timeout, not one per line. A line cut short by a drop is ended with '\n' before the
// next one, so readers never see two lines run together. (A regular file never holds a write for
// long; a terminal stopped with ^S can, as poll() cannot see that.)
// The fd is borrowed: LineWriter never closes it.
class LineWriter {
 public:
  static constexpr Duration kDefaultTimeout = std::chrono::milliseconds(100);

  explicit LineWriter(int fd = 1, Duration timeout = kDefaultTimeout);
  LineWriter(const LineWriter&) = delete;
  LineWriter& operator=(const LineWriter&) = delete;

  // Writes `line` as given (the caller includes the '\n'). Empty lines are ignored.
  void write(std::string_view line);
  // Lines dropped, whole or in part, since construction.
  std::uint64_t dropped() const;

 private:
  // Writes `data` until done, an error, or the deadline; returns the bytes written. Caller holds
  // mutex_.
  std::size_t write_all_locked(std::string_view data,
                               std::chrono::steady_clock::time_point deadline);

  const int fd_;
  const Duration timeout_;
  std::mutex mutex_;
  bool stalled_ = false;   // the last line was dropped: do not wait on the next
  bool cut_line_ = false;  // part of a dropped line went out: start with '\n'
  std::atomic<std::uint64_t> dropped_{0};
};

// At most `per_second` events pass per second: a token bucket refilled at per_second a second
// with a burst of per_second, kept as one number (GCRA: the theoretical arrival time), so admit()
// is a compare-and-swap loop without a lock. The events held back are counted and reported with
// the next one that passes. Thread-safe. Time is passed in; going backwards passes nothing extra.
class LogThrottle {
 public:
  // per_second is clamped to 1..1,000,000.
  explicit LogThrottle(int per_second = 1);

  // true: log now; *suppressed (if not null) receives how many events were held back since the
  // last one that passed. false: *suppressed is left alone.
  bool admit(Timestamp now, std::uint64_t* suppressed);

 private:
  const std::int64_t interval_us_;   // 1 s / per_second
  const std::int64_t tolerance_us_;  // (burst - 1) × interval: how far ahead of now TAT may be
  std::atomic<std::int64_t> tat_us_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> suppressed_{0};
};

}  // namespace fg::http
