// The server against hostile clients, over real loopback sockets on the memory store: floods of
// distinct client keys, crowds of slow and never-reading clients, connection floods, request
// smuggling shapes, spoofed X-Forwarded-For and IPv6 address rotation, and the admin listener
// that keeps /metrics off the public address. docs/security.md lists each attack with its test.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "decide/metrics.h"
#include "http/server_test_util.h"
#include "store/memory/memory_store.h"

namespace fg::http::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string config(std::string_view extra,
                   std::string_view identity = "[{header: X-API-Key}, {ip: {}}]") {
  return "listen: 127.0.0.1:0\nthreads: 2\nidentity: " + std::string(identity) + "\n" +
         std::string(extra) +
         "policies:\n  - {name: five, match: {path_prefix: /api/}, limit: 5, period: 1h}\n";
}

// ---- a flood of distinct client keys -------------------------------------------------------

TEST(Hostile, AFloodOfDistinctKeysKeepsTheMemoryStoreWithinItsCapacity) {
  // A small store (4 shards of 64 states), so that the flood is many times its capacity, and a
  // limit of 1 per hour: every state written is spent, the flood's later than the victim's, so a
  // store that evicted the live state nearest to full would forget the victim first.
  MemoryStoreOptions o;
  o.max_keys = 256;
  o.shards = 4;
  auto store = std::make_shared<memory::MemoryStore>(o, SystemClock::instance());
  ASSERT_EQ(store->capacity(), 256u);
  Running r = start_server(
      "listen: 127.0.0.1:0\nthreads: 2\nidentity: [{header: X-API-Key}, {ip: {}}]\n"
      "policies:\n  - {name: one, match: {path_prefix: /api/}, limit: 1, period: 1h}\n",
      store);
  ASSERT_TRUE(r.server);
  // The victim spends its budget before the flood.
  Client victim(r.port);
  ASSERT_EQ(victim.get("/api/x", {{"X-API-Key", "steady"}})->result_int(), 200);
  ASSERT_EQ(victim.get("/api/x", {{"X-API-Key", "steady"}})->result_int(), 429);
  // 4 connections x 750 requests, every one from a key never seen before: 3000 states wanted.
  std::atomic<int> ok{0}, degraded{0};
  std::atomic<std::size_t> largest{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < 4; ++t) {
    flood.emplace_back([&, t] {
      Client c(r.port);
      for (int i = 0; i < 750; ++i) {
        auto res = c.get("/api/x",
                         {{"X-API-Key", "flood-" + std::to_string(t) + "-" + std::to_string(i)}});
        if (res && res->result_int() == 200 && field(*res, "X-RateLimit-Remaining") == "0") ++ok;
        // Refused: 503, never served (on_store_error: allow would serve it unlimited).
        if (res && res->result_int() == 503) ++degraded;
        if (i % 50 == 0) {  // the size seen while the flood runs, not only after it
          const std::size_t now = store->size();
          std::size_t prev = largest.load();
          while (now > prev && !largest.compare_exchange_weak(prev, now)) {
          }
        }
      }
    });
  }
  for (auto& t : flood) t.join();
  // New keys were decided as the new clients they are while there was room; past it they were
  // refused by the store and answered 503, whatever on_store_error says (allow here) ...
  EXPECT_EQ(ok.load() + degraded.load(), 3000);
  EXPECT_EQ(static_cast<std::size_t>(ok.load()), store->size() - 1);  // all but the victim
  EXPECT_EQ(store->refused_count(), static_cast<std::uint64_t>(degraded.load()));
  EXPECT_EQ(store->evicted_count(), 0u);
  // ... the store never held more than its capacity ...
  EXPECT_LE(largest.load(), store->capacity());
  EXPECT_LE(store->size(), store->capacity());
  // ... and the victim is still limited, exactly, not served degraded: a store that refuses
  // new keys is not an outage, so the circuit breaker stayed closed.
  for (int i = 0; i < 5; ++i) {
    auto res = victim.get("/api/x", {{"X-API-Key", "steady"}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 429);
    EXPECT_EQ(field(*res, "X-RateLimit-Degraded"), "<absent>");
  }
  // The figures are in /metrics.
  auto m = get_once(r.port, "/metrics");
  ASSERT_TRUE(m);
  const std::string page = m->body();
  EXPECT_NE(page.find("floodgate_memory_store_refusals_total{store=\"store\"} " +
                      std::to_string(degraded.load()) + "\n"),
            std::string::npos);
  // Each refusal is a store call that answered an error, not an outage (docs/operations.md).
  EXPECT_NE(page.find("floodgate_store_requests_total{result=\"error\"} " +
                      std::to_string(degraded.load()) + "\n"),
            std::string::npos);
  EXPECT_NE(page.find("floodgate_store_requests_total{result=\"unavailable\"} 0\n"),
            std::string::npos);
  EXPECT_NE(page.find("floodgate_memory_store_keys{store=\"store\"} " +
                      std::to_string(store->size()) + "\n"),
            std::string::npos);
  EXPECT_NE(page.find("floodgate_memory_store_capacity{store=\"store\"} 256\n"), std::string::npos);
}

// ---- slow and never-reading clients --------------------------------------------------------

TEST(Hostile, ACrowdOfSlowlorisClientsIsCutOffWhileOthersAreServed) {
  Running r = start_server(config("server:\n  header_timeout: 500ms\n"));
  ASSERT_TRUE(r.server);
  // 40 clients that each send a header one byte every 50 ms: never idle long enough for a
  // read timeout, never finishing the header. header_timeout counts from the first byte.
  constexpr int kSlow = 40;
  std::vector<std::unique_ptr<Client>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<Client>(r.port));
    ASSERT_TRUE(slow.back()->send("GET /api/x HTTP/1.1\r\nHost: t\r\n"));
  }
  std::atomic<bool> stop{false};
  std::thread dribbler([&] {
    const std::string header = "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for (std::size_t i = 0; !stop.load() && i < 60; ++i) {  // at most 3 s
      for (auto& c : slow) c->send(std::string(1, header[i % header.size()]));
      std::this_thread::sleep_for(milliseconds(50));
    }
  });
  // Meanwhile ordinary clients are answered, each within a generous bound.
  for (int i = 0; i < 10; ++i) {
    const auto begin = std::chrono::steady_clock::now();
    auto res = get_once(r.port, "/api/x", {{"X-API-Key", "ordinary-" + std::to_string(i)}});
    ASSERT_TRUE(res) << i;
    EXPECT_EQ(res->result_int(), 200u);
    EXPECT_LT(std::chrono::steady_clock::now() - begin, seconds(2)) << i;
  }
  // Every slow client is told 408 and closed, long before its header would have ended.
  int timed_out = 0;
  for (auto& c : slow) {
    auto res = c->read();
    if (res && res->result_int() == 408 && c->closed_by_server()) ++timed_out;
  }
  stop = true;
  dribbler.join();
  EXPECT_EQ(timed_out, kSlow);
  EXPECT_NE(r.server->metrics().render().find(R"(floodgate_http_requests_total{code="408"} 40)"),
            std::string::npos);
}

// Clients that each start a large upload and never finish it: without a bound over every
// connection they would hold max_connections x max_body_bytes between them. Here the bodies of 3
// fit server.max_body_memory: a 4th gets 503 with Retry-After at once, before any of its body is
// read (and before a 100 Continue), and is closed; chunked bodies count max_body_bytes. Once one
// of the 3 has finished (and been answered), its share is free for the next.
TEST(Hostile, UnfinishedUploadsHoldAtMostMaxBodyMemory) {
  Running r = start_server(config(
      "server:\n  max_body_bytes: 1048576\n  max_body_memory: 3145728\n  body_timeout: 30s\n"));
  ASSERT_TRUE(r.server);
  const auto upload_head = [](int i, std::size_t length) {
    return "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: up-" + std::to_string(i) +
           "\r\nContent-Length: " + std::to_string(length) + "\r\nExpect: 100-continue\r\n\r\n";
  };
  // Each upload waits for its 100 Continue, which the server sends once the body's share is
  // taken: so the 3 shares are taken, in this order, before the 4th is sent.
  std::vector<std::unique_ptr<Client>> uploads;
  for (int i = 0; i < 3; ++i) {
    uploads.push_back(std::make_unique<Client>(r.port, seconds(10)));
    ASSERT_TRUE(uploads.back()->send(upload_head(i, 1048576)));
    auto interim = uploads.back()->read();
    ASSERT_TRUE(interim) << i;
    ASSERT_EQ(interim->result_int(), 100u) << i;
    ASSERT_TRUE(uploads.back()->send(std::string(1000, 'b')));
  }
  const auto fourth = [&](const std::string& head) {
    Client c(r.port, seconds(10));
    EXPECT_TRUE(c.send(head));
    auto res = c.read();
    return std::make_pair(res ? static_cast<int>(res->result_int()) : 0,
                          res ? field(*res, "Retry-After") : std::string());
  };
  const auto refused = fourth(upload_head(3, 1048576));
  EXPECT_EQ(refused.first, 503);  // not 100: nothing of its body is asked for
  EXPECT_EQ(refused.second, "1");
  // A chunked body counts max_body_bytes: refused too; a request without a body is served.
  EXPECT_EQ(fourth("POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: up-c\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .first,
            503);
  EXPECT_EQ(get_once(r.port, "/api/x", {{"X-API-Key", "no-body"}})->result_int(), 200u);
  // The first upload finishes: answered 200, its share given back, so another 1 MiB one fits
  // beside the 2 still held (it would not, were the share kept).
  ASSERT_TRUE(uploads[0]->send(std::string(1048576 - 1000, 'b')));
  auto done = uploads[0]->read();
  ASSERT_TRUE(done);
  EXPECT_EQ(done->result_int(), 200u);
  // (The server gives the share back just after writing that answer: a moment later, maybe.)
  int status = 0;
  for (int attempt = 0; attempt < 50 && status != 100; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(milliseconds(20));
    Client next(r.port, seconds(10));
    ASSERT_TRUE(next.send(upload_head(5, 1048576)));
    auto go = next.read();
    ASSERT_TRUE(go);
    status = static_cast<int>(go->result_int());
    if (status != 100) continue;
    ASSERT_TRUE(next.send(std::string(1048576, 'b')));
    auto served = next.read();
    ASSERT_TRUE(served);
    EXPECT_EQ(served->result_int(), 200u);
  }
  EXPECT_EQ(status, 100);
}

TEST(Hostile, NeverReadingClientsAreClosedAndOthersServed) {
  Running r = start_server(config("server:\n  write_timeout: 300ms\n"));
  ASSERT_TRUE(r.server);
  // Five clients pipeline ~12 MB of requests each and never read: the server's writes to
  // them block, and write_timeout ends each of them.
  std::string many;
  for (int i = 0; i < 1000; ++i) many += request_bytes("GET", "/" + std::string(12'000, 'x'));
  std::vector<std::unique_ptr<Client>> hogs;
  for (int i = 0; i < 5; ++i) {
    hogs.push_back(std::make_unique<Client>(r.port));
    int rcvbuf = 4096;
    setsockopt(hogs.back()->socket().native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf,
               sizeof rcvbuf);
  }
  std::vector<std::thread> senders;
  for (auto& h : hogs) senders.emplace_back([&many, &h] { h->send(many); });
  for (int i = 0; i < 5; ++i) {
    auto res = get_once(r.port, "/api/x", {{"X-API-Key", "reader"}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200u);
  }
  for (auto& t : senders) t.join();  // each send ends when the server closes (or times out)
  EXPECT_TRUE(eventually([&] {
    return r.server->metrics().render().find("floodgate_open_connections 0") != std::string::npos;
  }));
}

// ---- connection floods ---------------------------------------------------------------------

TEST(Hostile, AConnectionFloodIsRefusedCleanlyAndTheServerRecovers) {
  Running r = start_server(config("server:\n  max_connections: 20\n"));
  ASSERT_TRUE(r.server);
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 20; ++i) {
    held.push_back(std::make_unique<Client>(r.port));
    ASSERT_EQ(held.back()->get("/healthz")->result_int(), 200u) << i;
  }
  // 200 more connections while the 20 are held: each gets a whole 503 and is closed; the held
  // connections keep being served in between.
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    Client extra(r.port);
    ASSERT_TRUE(extra.connected());
    auto res = extra.read();
    if (res && res->result_int() == 503 && field(*res, "Connection") == "close" &&
        field(*res, "Retry-After") == "1" &&
        res->body().find("too many connections") != std::string::npos && extra.closed_by_server()) {
      ++refused;
    }
    if (i % 20 == 0) {
      auto res2 = held[static_cast<std::size_t>(i / 20)]->get(
          "/api/x", {{"X-API-Key", "held-" + std::to_string(i / 20)}});
      ASSERT_TRUE(res2) << i;
      EXPECT_EQ(res2->result_int(), 200u);
    }
  }
  EXPECT_EQ(refused, 200);
  EXPECT_NE(r.server->metrics().render().find("floodgate_connections_rejected_total 200"),
            std::string::npos);
  // The flood ends (the held clients leave): new clients are accepted and served again.
  held.clear();
  EXPECT_TRUE(eventually([&] {
    auto res = get_once(r.port, "/api/x", {{"X-API-Key", "after-the-flood"}});
    return res && res->result_int() == 200;
  }));
  EXPECT_TRUE(eventually([&] {
    return r.server->metrics().render().find("floodgate_open_connections 0") != std::string::npos;
  }));
  std::vector<std::unique_ptr<Client>> again;
  for (int i = 0; i < 20; ++i) {
    again.push_back(std::make_unique<Client>(r.port));
    auto res = again.back()->get("/healthz");
    ASSERT_TRUE(res) << i;
    EXPECT_EQ(res->result_int(), 200u) << i;
  }
}

// ---- request smuggling shapes --------------------------------------------------------------

// Beast's parser takes a chunk line and a trailer section only whole from the read buffer, with no
// bound of its own: a trailer field over 64 KiB threw std::length_error out of Beast's read and
// ended the process (one request from any client), and a long chunk extension grew the buffer
// without end. The buffer is bounded while a body is read: both are 400, and the server serves on.
TEST(Hostile, ChunkLinesAndTrailersOver64KiBAre400AndTheServerServesOn) {
  Running r = start_server(config(""));
  ASSERT_TRUE(r.server);
  const std::string head =
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: big\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::vector<std::string> bodies = {
      "5\r\nhello\r\n0\r\nX-Trailer: " + std::string(70'000, 'a') + "\r\n\r\n",
      "5;ext=" + std::string(512 * 1024, 'e') + "\r\nhello\r\n0\r\n\r\n",
  };
  for (const std::string& body : bodies) {
    Client c(r.port);
    c.send(head + body);  // the server may answer and close before it has read it all
    auto res = c.read();
    ASSERT_TRUE(res) << body.substr(0, 20);
    EXPECT_EQ(res->result_int(), 400u) << body.substr(0, 20);
    EXPECT_EQ(field(*res, "Connection"), "close");
    auto next = get_once(r.port, "/api/x", {{"X-API-Key", "after"}});
    ASSERT_TRUE(next) << "the server is gone";
    EXPECT_EQ(next->result_int(), 200u);
  }
}

// max_header_bytes may be raised to 1 MiB, but Beast holds a field's name and value in at most
// 65,535 bytes each and throws beyond: such a field is a header too large, 431, and the server
// serves on (it used to close the connection without an answer).
TEST(Hostile, AHeaderFieldOver64KiBIs431WhenMaxHeaderBytesAllowsIt) {
  Running r = start_server(config("server:\n  max_header_bytes: 1048576\n"));
  ASSERT_TRUE(r.server);
  const std::vector<std::string> heads = {
      "GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: big\r\nX-Big: " + std::string(70'000, 'a') +
          "\r\n\r\n",
      "GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: big\r\n" + std::string(70'000, 'n') +
          ": v\r\n\r\n",
  };
  for (const std::string& head : heads) {
    Client c(r.port);
    ASSERT_TRUE(c.send(head));
    auto res = c.read();
    ASSERT_TRUE(res) << "no answer: " << c.last_error().message();
    EXPECT_EQ(res->result_int(), 431u);
    auto next = get_once(r.port, "/api/x", {{"X-API-Key", "after"}});
    ASSERT_TRUE(next) << "the server is gone";
    EXPECT_EQ(next->result_int(), 200u);
  }
  // Below Beast's bound, a long field is a request like any other.
  Client c(r.port);
  ASSERT_TRUE(c.send("GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: big\r\nX-Big: " +
                     std::string(60'000, 'a') + "\r\n\r\n"));
  auto res = c.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
}

TEST(Hostile, SmugglingShapesAre400AndConsumeNothing) {
  Running r = start_server(config(""));
  ASSERT_TRUE(r.server);
  // Each is followed, in the same write, by a second request that a parser reading the framing
  // differently would see: it must never be answered (nor counted).
  const std::string smuggled = "GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\n\r\n";
  const std::vector<std::string> shapes = {
      // Content-Length and Transfer-Encoding together (CL.TE / TE.CL).
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nContent-Length: 4\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n"
      "Content-Length: 4\r\n\r\n0\r\n\r\n",
      // Two different lengths, in two fields or in one list.
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nContent-Length: 4\r\n"
      "Content-Length: 5\r\n\r\nabcde",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nContent-Length: 4, 5\r\n\r\nabcde",
      // Lengths that are not plain decimal.
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nContent-Length: +4\r\n\r\nabcd",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nContent-Length: 0x4\r\n\r\nabcd",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nContent-Length: 99999999999999999999"
      "\r\n\r\nabcd",
      // A coding other than a final chunked: no knowable length.
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked, gzip"
      "\r\n\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: xchunked\r\n\r\n"
      "0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
      // obs-fold: a header line continued on the next (RFC 9112 §5.2).
      "GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding:\r\n "
      "chunked\r\n\r\n"
      "0\r\n\r\n",
      "GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nX-Folded: a\r\n b\r\n\r\n",
      // Bad chunk sizes: not hex, negative, overflowing, missing, a bad line end.
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n\r\n"
      "zz\r\nabc\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n\r\n"
      "-1\r\na\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n\r\n"
      "fffffffffffffffff1\r\na\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n\r\n"
      "\r\na\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabcde\r\n0\r\n\r\n",
      "POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: victim\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\nabc\n0\n\n",
  };
  for (const std::string& shape : shapes) {
    Client c(r.port);
    // The server may answer and close before it has read everything: the send may then fail.
    c.send(shape + smuggled);
    auto res = c.read();
    ASSERT_TRUE(res) << shape;
    EXPECT_EQ(res->result_int(), 400u) << shape;
    EXPECT_EQ(field(*res, "Connection"), "close") << shape;
    // No second answer: the connection ends after the 400.
    EXPECT_FALSE(c.read().has_value()) << shape;
  }
  // The victim's bucket is untouched by every one of them.
  auto res = get_once(r.port, "/api/x", {{"X-API-Key", "victim"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");
  // A well-formed chunked request is served.
  Client ok(r.port);
  ASSERT_TRUE(
      ok.send("POST /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: fine\r\n"
              "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
  auto fine = ok.read();
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->result_int(), 200u);
}

// ---- spoofed X-Forwarded-For, IPv6 rotation ------------------------------------------------

// `n` requests to /api/x with X-Forwarded-For set by `xff(i)`; the statuses in order.
template <typename Xff>
std::vector<unsigned> statuses(std::uint16_t port, int n, Xff xff) {
  std::vector<unsigned> out;
  for (int i = 0; i < n; ++i) {
    auto res = get_once(port, "/api/x", {{"X-Forwarded-For", xff(i)}});
    out.push_back(res ? res->result_int() : 0);
  }
  return out;
}

const std::vector<unsigned> kFiveThenDenied = {200, 200, 200, 200, 200, 429, 429};
const std::vector<unsigned> kAllAllowed(7, 200);

TEST(Hostile, ForwardedForFromAnUntrustedPeerIsIgnored) {
  // A trusted proxy is configured, but this peer (127.0.0.1) is not it: every spoofed address,
  // and every shape of the header, is ignored, and the peer is the client.
  Running r = start_server(config("trusted_proxies: [10.0.0.0/8]\n", "[{ip: {}}]"));
  ASSERT_TRUE(r.server);
  EXPECT_EQ(
      statuses(r.port, 7,
               [](int i) {
                 const std::vector<std::string> spoofs = {
                     "198.51.100.1",     "10.0.0.1",         "2001:db8::1, 10.0.0.2",    "unknown",
                     "198.51.100.1:443", "[2001:db8::7]:80", "1.2.3.4, 5.6.7.8, 9.9.9.9"};
                 return spoofs[static_cast<std::size_t>(i)];
               }),
      kFiveThenDenied);
}

TEST(Hostile, Ipv6ClientsRotatingWithinTheirSlash64ShareOneLimit) {
  // Behind a trusted proxy (this test's 127.0.0.1), the client address comes from
  // X-Forwarded-For. A host owns a whole /64: rotating through it changes nothing.
  Running r = start_server(config("trusted_proxies: [127.0.0.1/32]\n", "[{ip: {}}]"));
  ASSERT_TRUE(r.server);
  EXPECT_EQ(statuses(r.port, 7,
                     [](int i) {
                       return "2001:db8:1:2:" + std::to_string(1000 + i * 37) +
                              ":9:" + std::to_string(i) + ":1";
                     }),
            kFiveThenDenied);
  // The next /64 is another client.
  EXPECT_EQ(statuses(r.port, 1, [](int) { return std::string("2001:db8:1:3::1"); }),
            std::vector<unsigned>{200});
  // IPv4 behind the same proxy: one address, one client (ipv4_prefix 32).
  EXPECT_EQ(statuses(r.port, 7, [](int i) { return "198.51.100." + std::to_string(10 + i); }),
            kAllAllowed);
}

TEST(Hostile, AConfiguredPrefixGroupsRotatingClients) {
  // ipv6_prefix: 56 -- a client given a /56 (common for home connections) rotating over its
  // 256 /64s is one client; ipv4_prefix: 24 likewise for a /24.
  Running r = start_server(
      config("trusted_proxies: [127.0.0.1/32]\n", "[{ip: {ipv4_prefix: 24, ipv6_prefix: 56}}]"));
  ASSERT_TRUE(r.server);
  EXPECT_EQ(statuses(r.port, 7,
                     [](int i) {
                       // 2001:db8:1:00XX::/64 for XX = 00, 25, 4a ...: all inside 2001:db8:1::/56
                       char buf[64];
                       std::snprintf(buf, sizeof buf, "2001:db8:1:%x::%d", i * 37, i + 1);
                       return std::string(buf);
                     }),
            kFiveThenDenied);
  EXPECT_EQ(statuses(r.port, 1, [](int) { return std::string("2001:db8:1:100::1"); }),
            std::vector<unsigned>{200});  // the next /56
  EXPECT_EQ(statuses(r.port, 7, [](int i) { return "203.0.113." + std::to_string(1 + i * 30); }),
            kFiveThenDenied);
  EXPECT_EQ(statuses(r.port, 1, [](int) { return std::string("203.0.114.1"); }),
            std::vector<unsigned>{200});
}

// ---- the admin listener --------------------------------------------------------------------

TEST(Hostile, AdminListenKeepsMetricsOffThePublicAddress) {
  Running r = start_server(config("admin_listen: 127.0.0.1:0\n"));
  ASSERT_TRUE(r.server);
  const std::uint16_t admin = r.server->admin_port();
  ASSERT_NE(admin, 0);
  ASSERT_NE(admin, r.port);
  ASSERT_EQ(get_once(r.port, "/api/x")->result_int(), 200u);
  // Public: /metrics (in any spelling, any method) is a 404; the health checks stay.
  for (const std::string target :
       {"/metrics", "/metrics?x=1", "//metrics", "/%6detrics", "/api/../metrics"}) {
    auto res = get_once(r.port, target);
    ASSERT_TRUE(res) << target;
    EXPECT_EQ(res->result_int(), 404u) << target;
    EXPECT_EQ(res->body().find("floodgate_"), std::string::npos) << target;
  }
  Client post(r.port);
  ASSERT_TRUE(post.send(request_bytes("POST", "/metrics", {}, "x")));
  EXPECT_EQ(post.read()->result_int(), 404u);
  EXPECT_EQ(get_once(r.port, "/healthz")->result_int(), 200u);
  EXPECT_EQ(get_once(r.port, "/readyz")->result_int(), 200u);
  // Admin: /metrics, /healthz, /readyz, POST /v1/check, and nothing else (not the API).
  auto m = get_once(admin, "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->result_int(), 200u);
  EXPECT_NE(m->body().find(R"(floodgate_decisions_total{policy="five",outcome="allowed"} 1)"),
            std::string::npos)
      << m->body();
  EXPECT_EQ(get_once(admin, "/healthz")->result_int(), 200u);
  EXPECT_EQ(get_once(admin, "/readyz")->result_int(), 200u);
  EXPECT_EQ(get_once(admin, "/api/x")->result_int(), 404u);
  Client check(admin);
  ASSERT_TRUE(check.send(request_bytes("POST", "/v1/check", {}, R"({"policy":"five","key":"k"})")));
  EXPECT_EQ(check.read()->result_int(), 200u);
  // ... and only there: on the public listener /v1/check is an ordinary path (the demo's 404).
  Client public_check(r.port);
  ASSERT_TRUE(
      public_check.send(request_bytes("POST", "/v1/check", {}, R"({"policy":"five","key":"k"})")));
  EXPECT_EQ(public_check.read()->result_int(), 404u);
  // A reload cannot move it (it needs a restart).
  auto moved = parse(config("admin_listen: 127.0.0.1:1\n"));
  ASSERT_TRUE(moved);
  EXPECT_EQ(r.server->reload(moved), std::vector<std::string>{"admin_listen"});
  EXPECT_TRUE(eventually([&] {
    auto again = get_once(admin, "/metrics");
    return again && again->body().find("floodgate_config_reloads_total{result=\"ok\"} 1") !=
                        std::string::npos;
  }));
}

TEST(Hostile, AdminListenerAnswersWhileThePublicOneIsFull) {
  Running r = start_server(config("admin_listen: 127.0.0.1:0\nserver:\n  max_connections: 2\n"));
  ASSERT_TRUE(r.server);
  Client a(r.port), b(r.port);
  ASSERT_EQ(a.get("/healthz")->result_int(), 200u);
  ASSERT_EQ(b.get("/healthz")->result_int(), 200u);
  Client refused(r.port);
  auto res = refused.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 503u);
  auto m = get_once(r.server->admin_port(), "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->result_int(), 200u);
  EXPECT_NE(m->body().find("floodgate_connections_rejected_total 1"), std::string::npos);
}

TEST(Hostile, TheAdminListenerHoldsAtMost64ConnectionsOfItsOwn) {
  // server.h: the admin listener has its own small limit (64), whatever max_connections says, and
  // public connections never count against it (nor admin ones against the public limit).
  Running r = start_server(config("admin_listen: 127.0.0.1:0\nserver:\n  max_connections: 1000\n"));
  ASSERT_TRUE(r.server);
  const std::uint16_t admin = r.server->admin_port();
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 64; ++i) {
    held.push_back(std::make_unique<Client>(admin));
    auto res = held.back()->get("/healthz");
    ASSERT_TRUE(res) << i;
    ASSERT_EQ(res->result_int(), 200u) << i;
  }
  // The 65th is refused as over-capacity public connections are: a whole 503, then closed.
  Client over(admin);
  ASSERT_TRUE(over.connected());
  auto refused = over.read();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->result_int(), 503u);
  EXPECT_NE(refused->body().find("too many connections"), std::string::npos);
  EXPECT_TRUE(over.closed_by_server());
  // The public listener is unaffected, and the held admin connections are still served.
  auto pub = get_once(r.port, "/api/x", {{"X-API-Key", "public"}});
  ASSERT_TRUE(pub);
  EXPECT_EQ(pub->result_int(), 200u);
  auto m = held.front()->get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->result_int(), 200u);
  // One admin connection leaves: a new one is accepted.
  held.pop_back();
  EXPECT_TRUE(eventually([&] {
    Client again(admin);
    auto res = again.get("/healthz");
    return res && res->result_int() == 200;
  }));
}

TEST(Hostile, WithoutAdminListenMetricsStayOnThePublicListener) {
  Running r = start_server(config(""));
  ASSERT_TRUE(r.server);
  EXPECT_EQ(r.server->admin_port(), 0);
  EXPECT_EQ(get_once(r.port, "/metrics")->result_int(), 200u);
}

}  // namespace
}  // namespace fg::http::test
