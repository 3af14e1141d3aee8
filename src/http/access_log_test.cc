// The access-log line (exact text, escaping, truncation), LineWriter on real pipes, and the log
// throttle with literal times.
#include "http/access_log.h"

#include "config/config.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <latch>
#include <nlohmann/json.hpp>  // header-only: parses the lines back, no link needed
#include <string>
#include <thread>
#include <vector>

namespace fg::http {
namespace {

using namespace std::chrono;
using namespace std::string_view_literals;

// 2026-11-28T06:30:32.123456Z.
const Timestamp kTime = from_us(1'795'847'432'123'456);

AccessLogEntry full_entry() {
  AccessLogEntry e;
  e.time = kTime;
  e.peer = "192.0.2.7:51234";
  e.client = "ip:192.0.2.7";
  e.method = "GET";
  e.target = "/api/items?page=2";
  e.status = 429;
  e.bytes_sent = 187;
  e.duration = microseconds(412);
  e.policy = "per-minute";
  e.outcome = "denied";
  e.user_agent = "curl/8.4.0";
  return e;
}

TEST(AccessLog, RedactsCredentialQueryValues) {
  const std::vector<std::string> names = config::default_access_log_redact();
  EXPECT_EQ(redact_query("/x?api_key=s3cr3t&n=1", names), "/x?api_key=REDACTED&n=1");
  EXPECT_EQ(redact_query("/x?n=1&TOKEN=a;Api%5FKey=b&key=", names),
            "/x?n=1&TOKEN=REDACTED;Api%5FKey=REDACTED&key=REDACTED");
  EXPECT_EQ(redact_query("/x?password", names), "/x?password");  // no value to hide
  EXPECT_EQ(redact_query("/x?keys=1&monkey=2", names), "/x?keys=1&monkey=2");
  EXPECT_EQ(redact_query("/x", names), "/x");
  EXPECT_EQ(redact_query("/x?a=1&&b=2&", {"b"}), "/x?a=1&&b=REDACTED&");
  EXPECT_EQ(redact_query("/x?api_key=s", {}), "/x?api_key=s");
  // Names as forgiving servers read them.
  EXPECT_EQ(redact_query("/x?api_key[]=a&api.key=b&api%20key=c&api_key%00=d&%20api_key=e&"
                         "access-token=f&X-Amz-Signature=g",
                         names),
            "/x?api_key[]=REDACTED&api.key=REDACTED&api%20key=REDACTED&api_key%00=REDACTED&"
            "%20api_key=REDACTED&access-token=REDACTED&X-Amz-Signature=REDACTED");
  EXPECT_EQ(redact_query("http://user:pw@h/api?token=t", names), "http://REDACTED@h/api?token=REDACTED");
}

TEST(AccessLog, ExactLine) {
  EXPECT_EQ(format_access_log(full_entry()),
            R"({"time":"2026-11-28T06:30:32.123Z","peer":"192.0.2.7:51234",)"
            R"("client":"ip:192.0.2.7","method":"GET","target":"/api/items?page=2","status":429,)"
            R"("bytes_sent":187,"duration_ms":0.412,"policy":"per-minute","outcome":"denied",)"
            R"("user_agent":"curl/8.4.0"})"
            "\n");
}

TEST(AccessLog, EmptyOptionalFieldsAreLeftOut) {
  AccessLogEntry e = full_entry();
  e.client = "";
  e.policy = "";
  e.outcome = "";
  e.user_agent = "";
  e.status = 200;
  e.bytes_sent = 0;
  e.duration = Duration(0);
  EXPECT_EQ(format_access_log(e),
            R"({"time":"2026-11-28T06:30:32.123Z","peer":"192.0.2.7:51234","method":"GET",)"
            R"("target":"/api/items?page=2","status":200,"bytes_sent":0,"duration_ms":0.000,)"
            R"("user_agent":""})"
            "\n");
}

TEST(AccessLog, LineParsesAsJson) {
  AccessLogEntry e = full_entry();
  e.outcome = "degraded";
  const std::string line = format_access_log(e);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["status"], 429);
  EXPECT_EQ(j["outcome"], "degraded");
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 0.412);
}

TEST(AccessLog, DurationHasThreeDecimals) {
  AccessLogEntry e = full_entry();
  const auto duration_of = [&](Duration d) {
    e.duration = d;
    const std::string line = format_access_log(e);
    const std::size_t start = line.find("\"duration_ms\":") + 14;
    return line.substr(start, line.find(',', start) - start);
  };
  EXPECT_EQ(duration_of(Duration(0)), "0.000");
  EXPECT_EQ(duration_of(Duration(5)), "0.005");
  EXPECT_EQ(duration_of(Duration(1'234)), "1.234");
  EXPECT_EQ(duration_of(Duration(1'000)), "1.000");
  EXPECT_EQ(duration_of(seconds(61)), "61000.000");
  EXPECT_EQ(duration_of(Duration(-7)), "0.000");
}

TEST(AccessLog, TimeIsRfc3339UtcWithTruncatedMilliseconds) {
  EXPECT_EQ(format_rfc3339_ms(from_us(0)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(kTime), "2026-11-28T06:30:32.123Z");
  // 2000-02-29T23:59:59.999999Z: a leap day, and .999999 s stays .999 (never rounds up to the
  // next day).
  EXPECT_EQ(format_rfc3339_ms(from_us(951'868'799'999'999)), "2000-02-29T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339_ms(from_us(951'868'800'000'000)), "2000-03-01T00:00:00.000Z");
}

// The escaping itself (util::append_json_string) is tested in util/text_test.cc; here, a whole
// line with hostile fields still parses, and the strings come back as escaped.
TEST(AccessLog, HostileFieldsGiveValidJson) {
  AccessLogEntry e = full_entry();
  e.target = "/\xff\x00\"\n"sv;
  e.user_agent = "\xe2\x82";
  e.client = "key:x-api-key:\\";
  const std::string line = format_access_log(e);
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
  const auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["target"].get<std::string>(), "/\xef\xbf\xbd\0\"\n"sv);
  EXPECT_EQ(j["user_agent"].get<std::string>(), "\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(j["client"].get<std::string>(), "key:x-api-key:\\");
}

TEST(AccessLog, TruncatesTargetAndUserAgent) {
  AccessLogEntry e = full_entry();
  const std::string target(3000, 'a');
  const std::string agent(300, 'b');
  e.target = target;
  e.user_agent = agent;
  const auto j = nlohmann::json::parse(format_access_log(e), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["target"].get<std::string>(), std::string(kMaxLoggedTargetBytes, 'a'));
  EXPECT_EQ(j["user_agent"].get<std::string>(), std::string(kMaxLoggedUserAgentBytes, 'b'));

  // Exactly at the bound: kept whole.
  const std::string exact(kMaxLoggedTargetBytes, 'c');
  e.target = exact;
  EXPECT_EQ(nlohmann::json::parse(format_access_log(e))["target"].get<std::string>(), exact);
}

TEST(AccessLog, TruncationDoesNotSplitACharacter) {
  // "€" is 3 bytes: with 2046 'a's before it, it spans bytes 2046-2048 and would be cut.
  const std::string target = std::string(2046, 'a') + "\xe2\x82\xac" + "tail";
  EXPECT_EQ(truncate_utf8(target, kMaxLoggedTargetBytes), std::string(2046, 'a'));
  const std::string fits = std::string(2045, 'a') + "\xe2\x82\xac" + "tail";
  EXPECT_EQ(truncate_utf8(fits, kMaxLoggedTargetBytes), std::string(2045, 'a') + "\xe2\x82\xac");
  EXPECT_EQ(truncate_utf8("ab\xf0\x9f\x98\x80", 4), "ab");  // 4-byte char cut after 2 bytes
  EXPECT_EQ(truncate_utf8("abc", 3), "abc");
  EXPECT_EQ(truncate_utf8("abc", 0), "");
  // Continuation bytes with no lead are just invalid: cut at the bound.
  EXPECT_EQ(truncate_utf8("\x80\x80\x80\x80\x80\x80", 5), "\x80\x80\x80\x80\x80");

  AccessLogEntry e = full_entry();
  e.target = target;
  const auto j = nlohmann::json::parse(format_access_log(e), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["target"].get<std::string>(), std::string(2046, 'a'));  // no \ufffd from a cut
}

// --- LogThrottle ---------------------------------------------------------------------------------

const Timestamp kT0 = from_us(1'800'000'000'000'000);

TEST(LogThrottle, OnePerSecondReportsTheSuppressed) {
  LogThrottle t(1);
  std::uint64_t suppressed = 777;
  EXPECT_TRUE(t.admit(kT0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 1; i < 10; ++i) {
    std::uint64_t untouched = 777;
    EXPECT_FALSE(t.admit(kT0 + milliseconds(100 * i), &untouched)) << i;
    EXPECT_EQ(untouched, 777u);
  }
  EXPECT_TRUE(t.admit(kT0 + seconds(1), &suppressed));
  EXPECT_EQ(suppressed, 9u);
  EXPECT_FALSE(t.admit(kT0 + seconds(1), &suppressed));
  EXPECT_TRUE(t.admit(kT0 + seconds(5), &suppressed));  // idle time does not save up beyond burst
  EXPECT_EQ(suppressed, 1u);
  EXPECT_FALSE(t.admit(kT0 + seconds(5), &suppressed));
}

TEST(LogThrottle, BurstEqualsTheRate) {
  LogThrottle t(3);
  std::uint64_t suppressed = 0;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.admit(kT0, &suppressed)) << i;
  EXPECT_FALSE(t.admit(kT0, &suppressed));
  EXPECT_FALSE(t.admit(kT0, &suppressed));
  // One token back every 1/3 s.
  EXPECT_FALSE(t.admit(kT0 + microseconds(333'332), &suppressed));
  EXPECT_TRUE(t.admit(kT0 + microseconds(333'333), &suppressed));
  EXPECT_EQ(suppressed, 3u);
  // After a long pause, a full burst of 3 again, no more.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.admit(kT0 + seconds(60), &suppressed)) << i;
  EXPECT_FALSE(t.admit(kT0 + seconds(60), &suppressed));
}

TEST(LogThrottle, TimeGoingBackwardsPassesNothingExtra) {
  LogThrottle t(1);
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(t.admit(kT0, &suppressed));
  EXPECT_FALSE(t.admit(kT0 - seconds(30), &suppressed));
  EXPECT_FALSE(t.admit(kT0 + milliseconds(999), &suppressed));
  EXPECT_TRUE(t.admit(kT0 + seconds(1), &suppressed));
  EXPECT_EQ(suppressed, 2u);
}

TEST(LogThrottle, NullSuppressedAndClampedRates) {
  LogThrottle zero(0);  // taken as 1
  EXPECT_TRUE(zero.admit(kT0, nullptr));
  EXPECT_FALSE(zero.admit(kT0, nullptr));
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(zero.admit(kT0 + seconds(1), &suppressed));
  EXPECT_EQ(suppressed, 1u);

  LogThrottle huge(2'000'000'000);  // taken as 1,000,000 a second
  int passed = 0;
  for (int i = 0; i < 1'000'001; ++i) passed += huge.admit(kT0, nullptr) ? 1 : 0;
  EXPECT_EQ(passed, 1'000'000);
}

// Threads racing at one instant: exactly `per_second` pass, and every held-back event is reported
// exactly once, by some later pass.
TEST(LogThrottle, ExactUnderThreads) {
  constexpr int kThreads = 8;
  constexpr int kEach = 5'000;
  LogThrottle t(5);
  std::atomic<int> passed{0};
  std::atomic<std::uint64_t> reported{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int k = 0; k < kEach; ++k) {
        std::uint64_t s = 0;
        if (t.admit(kT0, &s)) {
          passed.fetch_add(1);
          reported.fetch_add(s);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(passed.load(), 5);
  std::uint64_t last = 0;
  ASSERT_TRUE(t.admit(kT0 + seconds(1), &last));
  EXPECT_EQ(reported.load() + last, std::uint64_t{kThreads} * kEach - 5);
}

// --- LineWriter ----------------------------------------------------------------------------------

struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    read_fd = fds[0];
    write_fd = fds[1];
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (read_fd >= 0) ::close(read_fd);
    read_fd = -1;
  }
  void close_write() {
    if (write_fd >= 0) ::close(write_fd);
    write_fd = -1;
  }
  // Everything until EOF (the write end must be closed).
  std::string read_to_eof() const {
    std::string out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(read_fd, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        return out;
      }
    }
  }
  // Whatever is buffered now, without waiting.
  std::string drain() const {
    const int flags = ::fcntl(read_fd, F_GETFL);
    ::fcntl(read_fd, F_SETFL, flags | O_NONBLOCK);
    std::string out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(read_fd, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    ::fcntl(read_fd, F_SETFL, flags);
    return out;
  }
};

TEST(LineWriter, WritesLinesToAPipe) {
  Pipe p;
  LineWriter w(p.write_fd);
  w.write("first\n");
  w.write("");  // ignored
  w.write(format_access_log(full_entry()));
  p.close_write();
  EXPECT_EQ(p.read_to_eof(), "first\n" + format_access_log(full_entry()));
  EXPECT_EQ(w.dropped(), 0u);
}

// Four threads write 2,000 lines each, some longer than PIPE_BUF (written in chunks), while a
// reader drains the pipe: every line arrives whole, none interleaved.
TEST(LineWriter, LinesFromManyThreadsStayWhole) {
  constexpr int kThreads = 4;
  constexpr int kLines = 2'000;
  Pipe p;
  std::string received;
  std::thread reader([&] { received = p.read_to_eof(); });
  {
    LineWriter w(p.write_fd, seconds(30));  // a generous bound: the reader is always reading
    std::latch start(kThreads);
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t] {
        start.arrive_and_wait();
        for (int i = 0; i < kLines; ++i) {
          const std::size_t pad = i % 100 == 0 ? 10'000 : static_cast<std::size_t>(i % 50);
          w.write("t" + std::to_string(t) + " " + std::to_string(i) + " " +
                  std::string(pad, static_cast<char>('a' + t)) + "\n");
        }
      });
    }
    for (auto& th : writers) th.join();
    EXPECT_EQ(w.dropped(), 0u);
  }
  p.close_write();
  reader.join();

  std::vector<int> next(kThreads, 0);  // each thread's lines arrive in its order
  std::size_t pos = 0, lines = 0;
  while (pos < received.size()) {
    const std::size_t end = received.find('\n', pos);
    ASSERT_NE(end, std::string::npos);
    const std::string line = received.substr(pos, end - pos);
    pos = end + 1;
    ++lines;
    const int t = line[1] - '0';
    ASSERT_TRUE(t >= 0 && t < kThreads) << line.substr(0, 40);
    const std::size_t sp = line.find(' ', 3);
    const int i = std::stoi(line.substr(3, sp - 3));
    ASSERT_EQ(i, next[static_cast<std::size_t>(t)]++);
    const std::size_t pad = i % 100 == 0 ? 10'000 : static_cast<std::size_t>(i % 50);
    ASSERT_EQ(line.substr(sp + 1), std::string(pad, static_cast<char>('a' + t)));
  }
  EXPECT_EQ(lines, std::size_t{kThreads} * kLines);
}

TEST(LineWriter, AFailedWriteIsDroppedAndCounted) {
  std::signal(SIGPIPE, SIG_IGN);  // as the server does; otherwise EPIPE kills the process
  Pipe p;
  p.close_read();
  LineWriter w(p.write_fd);
  w.write("nobody reads this\n");  // EPIPE
  w.write("nor this\n");
  EXPECT_EQ(w.dropped(), 2u);

  LineWriter invalid(-1);
  invalid.write("x\n");
  EXPECT_EQ(invalid.dropped(), 1u);
}

// A reader that stops: the writer gives up after its timeout instead of blocking, drops lines
// without waiting while the pipe stays full, and resumes (ending the cut line first) once the
// reader is back.
TEST(LineWriter, AStuckReaderCostsDropsNotABlockedThread) {
  Pipe p;
  // Two pages: a pipe polls writable only while a whole page slot is free, so a one-page pipe
  // holding a single byte would already refuse the next line.
  ASSERT_GE(::fcntl(p.write_fd, F_SETPIPE_SZ, 8192), 8192);
  const int capacity = ::fcntl(p.write_fd, F_GETPIPE_SZ);
  LineWriter w(p.write_fd, milliseconds(1));

  // A line longer than the pipe: the first PIPE_BUF-sized chunks fill it, the rest cannot.
  const std::string big = std::string(static_cast<std::size_t>(capacity) + 2000, 'x') + "\n";
  w.write(big);
  EXPECT_EQ(w.dropped(), 1u);
  for (int i = 0; i < 100; ++i) w.write("while stuck\n");  // no wait each: stalled
  EXPECT_EQ(w.dropped(), 101u);

  const std::string head = p.drain();  // the reader is back
  EXPECT_EQ(head, std::string(static_cast<std::size_t>(capacity), 'x'));
  w.write("after\n");
  EXPECT_EQ(w.dropped(), 101u);
  p.close_write();
  EXPECT_EQ(p.read_to_eof(), "\nafter\n");  // the cut line was ended first
}

}  // namespace
}  // namespace fg::http
