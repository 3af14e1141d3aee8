#include "http/access_log.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>

#include "util/text.h"

namespace fg::http {
namespace {

constexpr bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

void append_key(std::string& out, std::string_view key) {
  out.push_back(',');
  out.push_back('"');
  out += key;  // constants: nothing to escape
  out += "\":";
}

}  // namespace

std::string format_rfc3339_ms(Timestamp t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const auto since_midnight = t - day;  // [0, 24 h), in µs
  const auto h = duration_cast<hours>(since_midnight);
  const auto m = duration_cast<minutes>(since_midnight - h);
  const auto s = duration_cast<seconds>(since_midnight - h - m);
  const auto ms = duration_cast<milliseconds>(since_midnight - h - m - s);  // truncated
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(h.count()),
                static_cast<int>(m.count()), static_cast<int>(s.count()),
                static_cast<int>(ms.count()));
  return buf;
}

std::string_view truncate_utf8(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  // s[cut] is the first byte left out. If it continues a character, cut before that character's
  // lead byte (at most 3 bytes back). If no lead is found, the bytes are invalid anyway and are
  // replaced when escaped: cut at max_bytes.
  std::size_t cut = max_bytes;
  for (int k = 0; k < 3 && cut > 0 && is_continuation(static_cast<unsigned char>(s[cut])); ++k) {
    --cut;
  }
  if (is_continuation(static_cast<unsigned char>(s[cut]))) cut = max_bytes;
  return s.substr(0, cut);
}

std::string format_access_log(const AccessLogEntry& e) {
  const std::string_view target = truncate_utf8(e.target, kMaxLoggedTargetBytes);
  const std::string_view user_agent = truncate_utf8(e.user_agent, kMaxLoggedUserAgentBytes);

  std::string out;
  out.reserve(200 + e.peer.size() + e.client.size() + e.method.size() + target.size() +
              e.policy.size() + e.outcome.size() + user_agent.size());
  out += "{\"time\":\"";
  out += format_rfc3339_ms(e.time);
  out.push_back('"');
  append_key(out, "peer");
  util::append_json_string(out, e.peer);
  if (!e.client.empty()) {
    append_key(out, "client");
    util::append_json_string(out, e.client);
  }
  append_key(out, "method");
  util::append_json_string(out, e.method);
  append_key(out, "target");
  util::append_json_string(out, target);
  append_key(out, "status");
  out += std::to_string(e.status);
  append_key(out, "bytes_sent");
  out += std::to_string(e.bytes_sent);
  append_key(out, "duration_ms");
  const std::int64_t us = std::max<std::int64_t>(e.duration.count(), 0);
  char ms[32];
  std::snprintf(ms, sizeof ms, "%lld.%03lld", static_cast<long long>(us / 1000),
                static_cast<long long>(us % 1000));
  out += ms;
  if (!e.policy.empty()) {
    append_key(out, "policy");
    util::append_json_string(out, e.policy);
  }
  if (!e.outcome.empty()) {
    append_key(out, "outcome");
    util::append_json_string(out, e.outcome);
  }
  append_key(out, "user_agent");
  util::append_json_string(out, user_agent);
  out += "}\n";
  return out;
}

// --- LineWriter ----------------------------------------------------------------------------------

LineWriter::LineWriter(int fd, Duration timeout)
    : fd_(fd), timeout_(std::max(timeout, Duration(0))) {}

void LineWriter::write(std::string_view line) {
  if (line.empty()) return;
  if (fd_ < 0) {  // poll() would ignore it and wait the whole timeout
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  // Stalled: the previous line timed out. Try once without waiting; a reader that is back gets
  // lines again, a reader still stuck costs nothing more.
  const auto deadline = stalled_ ? now : now + timeout_;

  if (cut_line_) {
    if (write_all_locked("\n", deadline) != 1) {
      stalled_ = true;
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    cut_line_ = false;
  }
  const std::size_t written = write_all_locked(line, deadline);
  if (written == line.size()) {
    stalled_ = false;
    return;
  }
  stalled_ = true;
  cut_line_ = written > 0 && line.substr(0, written).back() != '\n';
  dropped_.fetch_add(1, std::memory_order_relaxed);
}

std::size_t LineWriter::write_all_locked(std::string_view data,
                                         std::chrono::steady_clock::time_point deadline) {
  using namespace std::chrono;
  std::size_t done = 0;
  while (done < data.size()) {
    const auto left = deadline - steady_clock::now();
    // Round up, so a timeout below 1 ms still waits (and 0 only when the deadline has passed).
    const int wait_ms =
        left <= steady_clock::duration::zero()
            ? 0
            : static_cast<int>(std::min<std::int64_t>(ceil<milliseconds>(left).count(), INT_MAX));
    pollfd p{fd_, POLLOUT, 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return done;
    }
    if (ready == 0 || (p.revents & POLLOUT) == 0) return done;  // timed out, or POLLERR/POLLNVAL
    // At most PIPE_BUF per write: a pipe that polls writable has a free page and takes that much
    // without blocking; a bigger write on a blocking fd could sleep until the reader reads.
    const std::size_t chunk = std::min<std::size_t>(data.size() - done, PIPE_BUF);
    const ssize_t n = ::write(fd_, data.data() + done, chunk);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (steady_clock::now() >= deadline) return done;  // poll and write disagree: give up
    } else {
      return done;  // EPIPE, EBADF, ENOSPC, EIO, ... or a write of 0
    }
  }
  return done;
}

std::uint64_t LineWriter::dropped() const { return dropped_.load(std::memory_order_relaxed); }

// --- LogThrottle ---------------------------------------------------------------------------------

namespace {
constexpr std::int64_t kUsPerSecond = 1'000'000;
std::int64_t clamp_rate(int per_second) {
  return std::clamp<std::int64_t>(per_second, 1, kUsPerSecond);
}
}  // namespace

LogThrottle::LogThrottle(int per_second)
    : interval_us_(kUsPerSecond / clamp_rate(per_second)),
      tolerance_us_((clamp_rate(per_second) - 1) * interval_us_) {}

bool LogThrottle::admit(Timestamp now, std::uint64_t* suppressed) {
  // GCRA (the same algorithm as fg's gcra, over one atomic): an event passes when the theoretical
  // arrival time TAT is at most `tolerance` ahead of now, and pushes TAT one interval further.
  // per_second = 1: interval 1 s, tolerance 0: events at 0, 0.1 .. 0.9 s → the first passes
  // (TAT = 1 s), nine are held; at 1 s TAT - now = 0 → passes, reporting 9.
  const std::int64_t t = to_us(now);
  std::int64_t tat = tat_us_.load(std::memory_order_relaxed);
  for (;;) {
    const std::int64_t base = std::max(tat, t);
    if (base - t > tolerance_us_) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (tat_us_.compare_exchange_weak(tat, base + interval_us_, std::memory_order_relaxed)) break;
  }
  // Held-back events that race with this exchange are reported by the next pass: none is lost.
  const std::uint64_t held = suppressed_.exchange(0, std::memory_order_relaxed);
  if (suppressed != nullptr) *suppressed = held;
  return true;
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A query parameter's name as the most forgiving server would read it: %XX decoded, '+' as space,
// lower case, an array suffix cut ("api_key[]", "api_key[0]"), '.', '-' and spaces as '_' (PHP
// reads "api.key" and "api key" as api_key), and what is neither a letter nor a digit at either
// end dropped ("api_key%00", " api_key", "_api_key").
std::string decoded_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      c = static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else if (c == '+') {
      c = ' ';
    }
    if (c == '[') break;
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '.' || c == '-' || c == ' ') c = '_';
    out += c;
  }
  const auto word = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  while (!out.empty() && !word(out.back())) out.pop_back();
  std::size_t start = 0;
  while (start < out.size() && !word(out[start])) ++start;
  return out.substr(start);
}

}  // namespace

std::string redact_query(std::string_view target, const std::vector<std::string>& names) {
  // Userinfo of an absolute-form target ("http://user:password@host/..."), which floodgate
  // refuses, but logs.
  std::string without_userinfo;
  if (const std::size_t scheme = target.find("://");
      scheme != std::string_view::npos && !target.starts_with("/")) {
    const std::size_t end = target.find_first_of("/?#", scheme + 3);
    const std::size_t at = target.substr(0, end).rfind('@');
    if (at != std::string_view::npos && at > scheme) {
      without_userinfo = std::string(target.substr(0, scheme + 3)) + "REDACTED" +
                         std::string(target.substr(at));
      target = without_userinfo;
    }
  }
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos || names.empty()) return std::string(target);
  std::string out(target.substr(0, q + 1));
  std::string_view rest = target.substr(q + 1);
  bool first = true;
  while (true) {
    // Servers split parameters on '&' (and some on ';').
    const std::size_t end = rest.find_first_of("&;");
    const std::string_view param = rest.substr(0, end);
    if (!first) out += rest.data()[-1];
    first = false;
    const std::size_t eq = param.find('=');
    bool hide = false;
    if (eq != std::string_view::npos) {
      const std::string name = decoded_lower(param.substr(0, eq));
      for (const std::string& n : names) {
        if (decoded_lower(n) == name) hide = true;
      }
    }
    if (hide) {
      out += param.substr(0, eq + 1);
      out += "REDACTED";
    } else {
      out += param;
    }
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return out;
}

}  // namespace fg::http
