// session_read_test.cc — how a connection reads its requests (read_room.h): a read that returns
// less than its room emptied the socket, so the next read waits for epoll instead of first failing
// with EAGAIN; and no request is left unread for it, whenever its bytes arrive.
//
// The server's socket reads are counted here: this executable's recv and recvmsg stand in for the
// C library's (the server's code is linked into it, so its calls reach these), and count the reads
// that found nothing to read.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "http/read_room.h"
#include "http/server_test_util.h"

namespace {
std::atomic<long> g_empty_reads{0};

ssize_t counted(long result) {
  if (result < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    g_empty_reads.fetch_add(1, std::memory_order_relaxed);
  }
  return static_cast<ssize_t>(result);
}
}  // namespace

extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
  return counted(syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr));
}

extern "C" ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  return counted(syscall(SYS_recvmsg, fd, msg, flags));
}

namespace fg::http::test {
namespace {

constexpr std::string_view kConfig = R"(
listen: 127.0.0.1:0
threads: 1
identity: [{header: X-API-Key}]
policies:
  - {name: roomy, match: {path_prefix: /api/}, limit: 100000, period: 1h}
)";

TEST(SessionRead, AKeptAliveConnectionReadsEachRequestOnceWithoutAFailedRead) {
  ASSERT_TRUE(kShortReadExhausts) << "read_room.h's specialisation is not compiled for this Boost";
  Running r = start_server(kConfig);
  ASSERT_TRUE(r.server);
  Client c(r.port);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.get("/api/warm", {{"X-API-Key", "k"}}));  // the connection is accepted and served
  constexpr int kRequests = 200;
  const long before = g_empty_reads.load();
  for (int i = 0; i < kRequests; ++i) {
    // A client that takes a moment before its next request (as a busy one does): the server has
    // long gone back to reading by then.
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    auto res = c.get("/api/x", {{"X-API-Key", "k"}});
    ASSERT_TRUE(res) << "request " << i;
    ASSERT_EQ(res->result_int(), 200u);
  }
  // Each answer is written before the client sends the next request, so a read tried right after
  // it finds nothing: with Asio's own reads, about one per request failed here (kRequests).
  const long empty = g_empty_reads.load() - before;
  EXPECT_LT(empty, kRequests / 10)
      << empty << " reads found nothing in " << kRequests << " requests";
}

TEST(SessionRead, BytesThatArriveAfterAShortReadAreStillRead) {
  Running r = start_server(kConfig);
  ASSERT_TRUE(r.server);
  const std::string one = request_bytes("GET", "/api/one", {{"X-API-Key", "k"}});
  const std::string two = request_bytes("GET", "/api/two", {{"X-API-Key", "k"}});
  // The second request comes after the first was read (a short read), at several moments: while
  // the first is being answered, after it was, and split across the two writes.
  const std::chrono::microseconds gaps[] = {
      std::chrono::microseconds(0), std::chrono::microseconds(50), std::chrono::microseconds(2000)};
  for (const auto gap : gaps) {
    for (const std::size_t split : {std::size_t{0}, two.size() / 2}) {
      for (int round = 0; round < 20; ++round) {
        Client c(r.port, std::chrono::seconds(2));
        ASSERT_TRUE(c.connected());
        ASSERT_TRUE(c.send(one + two.substr(0, split)));
        std::this_thread::sleep_for(gap);
        ASSERT_TRUE(c.send(two.substr(split)));
        for (const char* path : {"/api/one", "/api/two"}) {
          auto res = c.read();
          ASSERT_TRUE(res) << path << " unanswered (gap " << gap.count() << " µs, split " << split
                           << ", round " << round << "): " << c.last_error().message();
          EXPECT_EQ(res->result_int(), 200u);
          EXPECT_NE(res->body().find(path), std::string::npos) << res->body();
        }
      }
    }
  }
}

}  // namespace
}  // namespace fg::http::test
