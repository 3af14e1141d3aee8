// session_read_test.cc — how a connection reads its requests (util/read_room.h): a read that
// returns less than its room emptied the socket, so the next read waits for epoll instead of first
// failing with EAGAIN; and no request is left unread for it, whenever its bytes arrive.
//
// The reads that found nothing are counted by tests/empty_reads.h.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "empty_reads.h"
#include "fixtures/redis_server.h"
#include "http/server_test_util.h"
#include "util/read_room.h"

namespace fg::http::test {
namespace {

constexpr std::string_view kConfig = R"(
listen: 127.0.0.1:0
threads: 1
identity: [{header: X-API-Key}]
policies:
  - {name: roomy, match: {path_prefix: /api/}, limit: 100000, period: 1h}
)";

// The reads of this process that found nothing while one kept-alive client sends `requests`
// requests in turn, each a moment after the last answer (as a busy client does: the server has
// long gone back to reading by then). -1 when a request is not answered 200.
long empty_reads_over(std::uint16_t port, int requests) {
  Client c(port);
  if (!c.get("/api/warm", {{"X-API-Key", "k"}})) return -1;  // accepted, served, store connected
  const long before = fg::test::g_empty_reads.load();
  for (int i = 0; i < requests; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    auto res = c.get("/api/x", {{"X-API-Key", "k"}});
    if (!res || res->result_int() != 200) return -1;
  }
  return fg::test::g_empty_reads.load() - before;
}

constexpr int kRequests = 200;

// An upstream on threads of its own that answers every request 200 on a kept-alive connection.
// It reads with blocking calls, which wait rather than find nothing, so the empty reads counted
// are floodgate's alone.
class BlockingUpstream {
 public:
  BlockingUpstream() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof at;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 ||
        ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&at), &size) != 0) {
      return;
    }
    port_ = ntohs(at.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~BlockingUpstream() {
    ::shutdown(listener_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();  // no connection is added after this
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    for (std::thread& t : servers_) t.join();
    // Closed here, after their threads: a number closed earlier could already name another
    // socket of the process when it is shut down above.
    for (int fd : connections_) ::close(fd);
    ::close(listener_);
  }
  std::uint16_t port() const { return port_; }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      connections_.push_back(fd);
      servers_.emplace_back([fd] { serve(fd); });
    }
  }
  static void serve(int fd) {
    static constexpr std::string_view kAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    std::string in;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      in.append(chunk, static_cast<std::size_t>(n));
      for (std::size_t end; (end = in.find("\r\n\r\n")) != std::string::npos;) {
        in.erase(0, end + 4);  // requests through floodgate here have no body
        if (::send(fd, kAnswer.data(), kAnswer.size(), MSG_NOSIGNAL) < 0) break;
      }
    }
  }

  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  // Written by the accept loop only, read by the destructor once it has joined that loop; each
  // is closed by the destructor.
  std::vector<int> connections_;
  std::vector<std::thread> servers_;
};

// kRequests requests of such a client to `r`: fewer than one in ten may find nothing to read.
void expect_few_empty_reads(const Running& r) {
  ASSERT_TRUE(r.server);
  const long empty = empty_reads_over(r.port, kRequests);
  ASSERT_GE(empty, 0) << "a request was not answered 200";
  EXPECT_LT(empty, kRequests / 10)
      << empty << " reads found nothing in " << kRequests << " requests";
}

TEST(SessionRead, AKeptAliveConnectionReadsEachRequestOnceWithoutAFailedRead) {
  ASSERT_TRUE(util::kShortReadExhausts)
      << "util/read_room.h's specialisation is not compiled for this Boost";
  // Each answer is written before the client sends the next request, so a read tried right after
  // it finds nothing: with Asio's own reads, about one per request failed here (kRequests).
  expect_few_empty_reads(start_server(kConfig));
}

TEST(SessionRead, TheRedisConnectionWaitsForItsRepliesWithoutAFailedRead) {
  if (!fg::test::RedisServer::installed()) GTEST_SKIP() << "redis-server is not installed";
  std::string why;
  auto redis = fg::test::RedisServer::start({}, &why);
  ASSERT_TRUE(redis) << why;
  // Each request is a batch of its own, sent when nothing else is on the connection: a read tried
  // right after it finds nothing, the reply not being back yet (with Asio's own reads, one per
  // request here, besides the client connection's).
  expect_few_empty_reads(
      start_server(std::string(kConfig) + "store: redis://" + redis->address() + "\n"));
}

TEST(SessionRead, AProxiedRequestWaitsForItsResponseWithoutAFailedRead) {
  BlockingUpstream up;
  ASSERT_NE(up.port(), 0);
  // At this pace floodgate is idle when it writes each request to the upstream, so the answer is
  // not there yet: with Beast's own reads, 44 to 114 of 200 reads found nothing here (two runs),
  // besides the client connection's.
  expect_few_empty_reads(start_server(
      std::string(kConfig) + "upstream: http://127.0.0.1:" + std::to_string(up.port()) + "\n"));
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
