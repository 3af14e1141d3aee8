// The server over real loopback sockets, on the memory store (and a fault-injecting store in
// front of it): every contract bullet of design §2.3/§2.4 that needs a socket, bad input, limits,
// reload, drain, and proxy mode against an upstream started here.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "decide/identity.h"
#include "decide/metrics.h"
#include "http/server_test_util.h"

namespace fg::http::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kBase = R"(
listen: 127.0.0.1:0
threads: 2
identity: [{header: X-API-Key}, {ip: {}}]
)";

std::string with_policies(std::string_view extra = "", std::string_view policies =
                                                           "policies:\n"
                                                           "  - name: five\n"
                                                           "    match: {path_prefix: /api/}\n"
                                                           "    limit: 5\n"
                                                           "    period: 1h\n") {
  return std::string(kBase) + std::string(extra) + std::string(policies);
}

TEST(Server, StatusShowsRatesTopDeniedAndTheLastDecisionOnTheMemoryStore) {
  Running r = start_server(R"(
listen: 127.0.0.1:0
threads: 2
identity: [{header: X-API-Key}, {ip: {}}]
policies:
  - {name: tight, match: {path_prefix: /api/}, limit: 3, period: 1h}
)");
  ASSERT_TRUE(r.server);
  for (int i = 0; i < 8; ++i) get_once(r.port, "/api/x", {{"X-API-Key", "status-test-key"}});
  // Sampled once a second: wait for a sample that has seen the denials.
  nlohmann::json doc;
  EXPECT_TRUE(eventually(
      [&] {
        auto res = get_once(r.port, "/v1/status?policy=tight");
        if (!res || res->result_int() != 200) return false;
        doc = nlohmann::json::parse(res->body());
        return !doc["fleet"]["top_denied"].empty();
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(doc["schema"], 1);
  EXPECT_EQ(doc["fleet"]["source"], "local");
  ASSERT_EQ(doc["fleet"]["instances"].size(), 1u);
  EXPECT_EQ(doc["instance"]["id"], "127.0.0.1:" + std::to_string(r.port));
  EXPECT_EQ(doc["instance"]["threads"], 2);
  EXPECT_EQ(doc["instance"]["state"], "ready");
  EXPECT_EQ(doc["store"]["kind"], "memory");
  const auto& top = doc["fleet"]["top_denied"][0];
  EXPECT_EQ(top["identity"], decide::loggable_identity("key:x-api-key:status-test-key"));
  EXPECT_EQ(top["denials"], 5);
  EXPECT_EQ(doc["last_decision"]["policy"], "tight");
  EXPECT_EQ(doc["last_decision"]["allowed"], false);
  EXPECT_EQ(doc["last_decision"]["headers"][0],
            nlohmann::json::parse(R"(["X-RateLimit-Limit","3"])"));
  EXPECT_EQ(doc["instance"]["policies"][0]["name"], "tight");
  const auto page = get_once(r.port, "/dashboard");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->result_int(), 200u);
  EXPECT_NE(page->body().find("<title>floodgate</title>"), std::string::npos);
}

TEST(Server, ServesTheDemoResourceWithEveryRateLimitField) {
  Running r = start_server(with_policies());
  ASSERT_TRUE(r.server);
  auto res = get_once(r.port, "/api/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(field(*res, "X-RateLimit-Limit"), "5");
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");
  EXPECT_EQ(field(*res, "X-RateLimit-Reset"), "720");
  EXPECT_EQ(field(*res, "RateLimit-Policy"), R"("five";q=5;w=3600)");
  EXPECT_EQ(field(*res, "RateLimit"), R"("five";r=4;t=720)");
  EXPECT_EQ(res->body(), R"({"message":"hello from floodgate","method":"GET","path":"/api/hello"})"
                         "\n");
  // Not a limited route: no fields.
  res = get_once(r.port, "/elsewhere");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 404u);
  EXPECT_EQ(field(*res, "X-RateLimit-Limit"), "<absent>");
}

TEST(Server, TheLimitHoldsExactlyAcrossConnectionsAndThreads) {
  Running r = start_server(with_policies());
  ASSERT_TRUE(r.server);
  std::atomic<int> ok{0}, limited{0}, other{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      Client c(r.port);
      for (int i = 0; i < 5; ++i) {
        auto res = c.get("/api/x", {{"X-API-Key", "shared"}});
        if (!res) {
          ++other;
        } else if (res->result_int() == 200) {
          ++ok;
        } else if (res->result_int() == 429) {
          ++limited;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 5);
  EXPECT_EQ(limited.load(), 35);
  EXPECT_EQ(other.load(), 0);
}

TEST(Server, DeniedIs429WithRetryAfterAndProblemBody) {
  Running r = start_server(with_policies());
  ASSERT_TRUE(r.server);
  Client c(r.port);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c.get("/api/x")->result_int(), 200u);
  auto res = c.get("/api/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 429u);
  EXPECT_EQ(field(*res, "Content-Type"), "application/problem+json");
  EXPECT_EQ(field(*res, "Retry-After"), "720");
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "0");
  const auto body = nlohmann::json::parse(res->body());
  EXPECT_EQ(body["type"], "https://iana.org/assignments/http-problem-types#quota-exceeded");
  EXPECT_EQ(body["policy"], "five");
  EXPECT_EQ(body["retry_after"], 720);
  // Another client is unaffected.
  EXPECT_EQ(get_once(r.port, "/api/x", {{"X-API-Key", "other"}})->result_int(), 200u);
}

TEST(Server, KeepAliveAndPipelining) {
  Running r = start_server(with_policies());
  ASSERT_TRUE(r.server);
  Client c(r.port);
  // Three requests in one write: three answers, in order.
  ASSERT_TRUE(c.send(request_bytes("GET", "/api/a") + request_bytes("GET", "/api/b") +
                     request_bytes("GET", "/healthz")));
  auto a = c.read();
  auto b = c.read();
  auto h = c.read();
  ASSERT_TRUE(a && b && h);
  EXPECT_NE(a->body().find("/api/a"), std::string::npos);
  EXPECT_NE(b->body().find("/api/b"), std::string::npos);
  EXPECT_EQ(h->body(), "ok\n");
  EXPECT_EQ(field(*b, "X-RateLimit-Remaining"), "3");
  // Connection: close is honoured.
  ASSERT_TRUE(c.send(request_bytes("GET", "/api/c", {{"Connection", "close"}})));
  auto last = c.read();
  ASSERT_TRUE(last);
  EXPECT_EQ(field(*last, "Connection"), "close");
  EXPECT_TRUE(c.closed_by_server());
}

TEST(Server, BadInputGetsAClearStatusAndOthersAreUnaffected) {
  Running r = start_server(with_policies("server:\n  max_body_bytes: 1024\n"));
  ASSERT_TRUE(r.server);
  {
    Client c(r.port);
    ASSERT_TRUE(c.send("THIS IS NOT HTTP\r\n\r\n"));
    auto res = c.read();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 400u);
    EXPECT_EQ(field(*res, "Content-Type"), "application/problem+json");
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    Client c(r.port);  // a 100 kB header
    // The server may answer before it has read all of it: the send itself may then fail.
    c.send("GET /api/x HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(100'000, 'a') + "\r\n\r\n");
    auto res = c.read();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 431u);
  }
  {
    Client c(r.port);  // a body over max_body_bytes
    c.send("POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" +
           std::string(5000, 'b'));
    auto res = c.read();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 413u);
  }
  {
    Client c(r.port);  // a chunked body over max_body_bytes
    std::string chunked = "POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) chunked += "400\r\n" + std::string(1024, 'c') + "\r\n";
    chunked += "0\r\n\r\n";
    c.send(chunked);
    auto res = c.read();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 413u);
  }
  // Request smuggling shapes: both framings at once, or two different lengths.
  for (const std::string& smuggle :
       {std::string("POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        std::string("POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                    "Content-Length: 5\r\n\r\nabcde"),
        std::string("GET /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")}) {
    Client c(r.port);
    ASSERT_TRUE(c.send(smuggle));
    auto res = c.read();
    ASSERT_TRUE(res) << smuggle;
    EXPECT_EQ(res->result_int(), 400u) << smuggle;
    EXPECT_TRUE(c.closed_by_server()) << smuggle;
  }
  // Nothing was consumed by any of them, and the server still answers.
  auto res = get_once(r.port, "/api/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");
}

TEST(Server, SlowClientsAreCutOffWithoutAffectingOthers) {
  Running r =
      start_server(with_policies("server:\n  header_timeout: 300ms\n  idle_timeout: 400ms\n"));
  ASSERT_TRUE(r.server);
  // Slowloris: a header that never ends. Others are served meanwhile; the slow one gets 408.
  Client slow(r.port);
  ASSERT_TRUE(slow.send("GET /api/x HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n"));
  const auto begin = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    auto res = get_once(r.port, "/healthz");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200u);
  }
  auto res = slow.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 408u);
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_LT(std::chrono::steady_clock::now() - begin, seconds(3));
  // An idle keep-alive connection is closed quietly after idle_timeout.
  Client idle(r.port);
  ASSERT_EQ(idle.get("/healthz")->result_int(), 200u);
  EXPECT_TRUE(idle.closed_by_server());
}

// idle_timeout is kept by a sweep on each server thread (idle_sweep), not by a timer per read:
// a connection is closed once it has waited idle_timeout for its next request, never before,
// and each request starts its wait anew.
TEST(Server, AnIdleConnectionIsClosedAfterIdleTimeoutAndNotBefore) {
  Running r = start_server(with_policies("server:\n  idle_timeout: 600ms\n"));
  ASSERT_TRUE(r.server);
  Client c(r.port);
  // Six requests 200 ms apart: 1 s in all, more than idle_timeout, but no wait as long.
  for (int i = 0; i < 6; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto res = c.get("/healthz");
    ASSERT_TRUE(res) << "request " << i << ": " << c.last_error().message();
    EXPECT_EQ(res->result_int(), 200u);
  }
  const auto last = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.closed_by_server());
  const auto waited = std::chrono::steady_clock::now() - last;
  // The server's wait began before the answer reached this client, so it may have seen a little
  // more than this client did; a sweep every 75 ms closes it well within a second.
  EXPECT_GE(waited, std::chrono::milliseconds(550));
  EXPECT_LT(waited, std::chrono::seconds(2));
}

TEST(Server, ClientThatNeverReadsIsClosedAfterTheWriteTimeout) {
  Running r = start_server(
      with_policies("server:\n  write_timeout: 300ms\n",
                    "policies:\n  - {name: p, match: {path: /never}, limit: 1, period: 1s}\n"));
  ASSERT_TRUE(r.server);
  Client hog(r.port);
  int rcvbuf = 4096;
  setsockopt(hog.socket().native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  // Pipeline requests for ~12 MB of 404s (each names its 12 kB target) and never read: more
  // than the socket buffers hold, so the server's writes block.
  std::string many;
  for (int i = 0; i < 1000; ++i) many += request_bytes("GET", "/" + std::string(12'000, 'x'));
  hog.send(many);
  // Others are served meanwhile, and the hog's connection is closed within bounds.
  for (int i = 0; i < 3; ++i) ASSERT_EQ(get_once(r.port, "/healthz")->result_int(), 200u);
  EXPECT_TRUE(eventually([&] {
    return r.server->metrics().render().find("floodgate_open_connections 0") != std::string::npos;
  }));
}

TEST(Server, MaxConnectionsRefusesCleanly) {
  Running r = start_server(with_policies("server:\n  max_connections: 3\n"));
  ASSERT_TRUE(r.server);
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<Client>(r.port));
    ASSERT_EQ(held.back()->get("/healthz")->result_int(), 200u);
  }
  Client extra(r.port);
  auto res = extra.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 503u);
  EXPECT_EQ(field(*res, "Connection"), "close");
  // The held ones still work; once one goes, a new connection is accepted.
  EXPECT_EQ(held[0]->get("/healthz")->result_int(), 200u);
  held.pop_back();
  EXPECT_TRUE(eventually([&] {
    auto again = get_once(r.port, "/healthz");
    return again && again->result_int() == 200;
  }));
  EXPECT_NE(r.server->metrics().render().find("floodgate_connections_rejected_total 1"),
            std::string::npos);
}

TEST(Server, ForwardedForIsBelievedOnlyFromTrustedProxies) {
  // Untrusted peer: X-Forwarded-For is ignored, so rotating it does not escape the limit.
  Running r = start_server(with_policies());
  ASSERT_TRUE(r.server);
  int ok = 0;
  for (int i = 0; i < 7; ++i) {
    auto res = get_once(r.port, "/api/x", {{"X-Forwarded-For", "198.51.100." + std::to_string(i)}});
    ASSERT_TRUE(res);
    ok += res->result_int() == 200;
  }
  EXPECT_EQ(ok, 5);
  // From a trusted proxy (this test is 127.0.0.1), each forwarded client has its own bucket.
  Running t = start_server(with_policies("trusted_proxies: [127.0.0.1/32]\n"));
  ASSERT_TRUE(t.server);
  for (int i = 0; i < 7; ++i) {
    auto res = get_once(t.port, "/api/x", {{"X-Forwarded-For", "198.51.100." + std::to_string(i)}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200u);
    EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");
  }
}

TEST(Server, OperationsEndpointsAndCheckApi) {
  Running r = start_server(with_policies("", "policies:\n  - {name: all, limit: 1, period: 1h}\n"));
  ASSERT_TRUE(r.server);
  for (int i = 0; i < 3; ++i) {  // a policy on every path does not reach them
    EXPECT_EQ(get_once(r.port, "/healthz")->result_int(), 200u);
    EXPECT_EQ(get_once(r.port, "/readyz")->result_int(), 200u);
  }
  Client c(r.port);
  ASSERT_TRUE(c.send(request_bytes("POST", "/v1/check", {{"Content-Type", "application/json"}},
                                   R"({"policy":"all","key":"user-42"})")));
  auto res = c.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(res->body(),
            R"({"allowed":true,"policy":"all","limit":1,"remaining":0,"reset_after_ms":3600000,)"
            R"("retry_after_ms":0})");
  // On the public listener a /v1/check caller is a client like any other: `all` matches its
  // request too, and its one request an hour is spent (a 429 problem, before its body is read).
  ASSERT_TRUE(
      c.send(request_bytes("POST", "/v1/check", {}, R"({"policy":"all","key":"user-42"})")));
  res = c.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 429u);
  EXPECT_EQ(nlohmann::json::parse(res->body())["violated-policies"][0], "all");

  auto m = get_once(r.port, "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(field(*m, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  // Allowed: the caller's first request and the key user-42; denied: the caller's second.
  EXPECT_NE(m->body().find(R"(floodgate_decisions_total{policy="all",outcome="allowed"} 2)"),
            std::string::npos)
      << m->body();
  EXPECT_NE(m->body().find(R"(floodgate_decisions_total{policy="all",outcome="denied"} 1)"),
            std::string::npos);
  EXPECT_NE(m->body().find(R"(floodgate_http_requests_total{code="429"} 1)"), std::string::npos);
  EXPECT_NE(m->body().find("floodgate_store_latency_seconds_count 3"), std::string::npos);
  EXPECT_NE(m->body().find(R"(floodgate_build_info{version="test",store="memory"} 1)"),
            std::string::npos);
}

TEST(Server, ReloadAppliesANewConfigBetweenRequests) {
  Running r = start_server(with_policies());
  ASSERT_TRUE(r.server);
  Client c(r.port);  // a connection kept open across the reload
  ASSERT_EQ(field(*c.get("/api/x"), "X-RateLimit-Limit"), "5");
  auto next = parse(with_policies("store_timeout: 1s\n",
                                  "policies:\n  - {name: ten, match: {path_prefix: /api/}, "
                                  "limit: 10, period: 1h}\n"));
  ASSERT_TRUE(next);
  const std::vector<std::string> ignored = r.server->reload(next);
  EXPECT_EQ(ignored, std::vector<std::string>{"store_timeout"});
  EXPECT_TRUE(eventually([&] {
    auto res = c.get("/api/x");
    return res && field(*res, "X-RateLimit-Limit") == "10";
  }));
  EXPECT_NE(r.server->metrics().render().find(R"(floodgate_config_reloads_total{result="ok"} 1)"),
            std::string::npos);
}

TEST(Server, DrainAnswers503OnReadyzThenFinishesInFlightAndStops) {
  Running r = start_server(with_policies("server:\n  drain_delay: 300ms\n  drain_timeout: 5s\n"));
  ASSERT_TRUE(r.server);
  Client idle(r.port);
  ASSERT_EQ(idle.get("/api/x")->result_int(), 200u);
  Client busy(r.port);
  ASSERT_EQ(busy.get("/readyz")->result_int(), 200u);

  r.server->drain();
  // During drain_delay: still accepting, /readyz is 503, responses close their connection.
  auto ready = get_once(r.port, "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->result_int(), 503u);
  EXPECT_EQ(ready->body(), "draining\n");
  auto res = busy.get("/api/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(field(*res, "Connection"), "close");
  // After it the idle connection is closed, and the server stops by itself.
  EXPECT_TRUE(idle.closed_by_server());
  auto done = std::async(std::launch::async, [&] { r.server->wait(); });
  EXPECT_EQ(done.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_TRUE(r.server->stopped());
  Client after(r.port);
  EXPECT_FALSE(after.connected() && after.get("/healthz").has_value());
}

// ---- store failures ------------------------------------------------------------------------

struct Faulty {
  std::shared_ptr<FaultyStore> store =
      std::make_shared<FaultyStore>(make_memory_store({}, SystemClock::instance()));
};

TEST(Server, StoreDownFailOpenWithDegradedHeader) {
  Faulty f;
  Running r = start_server(with_policies("on_store_error: allow\n"), f.store);
  ASSERT_TRUE(r.server);
  f.store->failing = true;
  auto res = get_once(r.port, "/api/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(field(*res, "X-RateLimit-Degraded"), "store-unavailable");
  EXPECT_EQ(field(*res, "RateLimit-Policy"), R"("five";q=5;w=3600)");
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "<absent>");
  // /readyz turns 503 once the probe sees it, and back to 200 when the store answers again.
  EXPECT_TRUE(eventually([&] { return get_once(r.port, "/readyz")->result_int() == 503; }));
  f.store->failing = false;
  EXPECT_TRUE(eventually([&] { return get_once(r.port, "/readyz")->result_int() == 200; }));
  EXPECT_TRUE(eventually([&] {
    auto ok = get_once(r.port, "/api/x");
    return ok && field(*ok, "X-RateLimit-Degraded") == "<absent>" && ok->result_int() == 200;
  }));
  const std::string m = r.server->metrics().render();
  EXPECT_NE(m.find(R"(floodgate_degraded_decisions_total{mode="allow"} )"), std::string::npos);
  EXPECT_EQ(m.find(R"(floodgate_degraded_decisions_total{mode="allow"} 0)"), std::string::npos);
}

TEST(Server, StoreDownFailClosedIs503) {
  Faulty f;
  Running r = start_server(with_policies("on_store_error: deny\n"), f.store);
  ASSERT_TRUE(r.server);
  f.store->failing = true;
  f.store->error = ErrorCode::kDeadlineExceeded;
  auto res = get_once(r.port, "/api/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 503u);
  EXPECT_EQ(field(*res, "Content-Type"), "application/problem+json");
  EXPECT_EQ(field(*res, "X-RateLimit-Degraded"), "store-unavailable");
  // Unlimited routes and operations endpoints do not need the store.
  EXPECT_EQ(get_once(r.port, "/healthz")->result_int(), 200u);
}

TEST(Server, StoreDownLocalFallbackLimitsPerInstance) {
  Faulty f;
  Running r = start_server(
      with_policies(
          "on_store_error: local\nlocal_fallback: {instances: 2}\n",
          "policies:\n  - {name: ten, match: {path_prefix: /api/}, limit: 10, period: 1h}\n"),
      f.store);
  ASSERT_TRUE(r.server);
  f.store->failing = true;
  int ok = 0, limited = 0;
  for (int i = 0; i < 8; ++i) {
    auto res = get_once(r.port, "/api/x");
    ASSERT_TRUE(res);
    if (res->result_int() == 200) ++ok;
    if (res->result_int() == 429) ++limited;
    EXPECT_EQ(field(*res, "X-RateLimit-Degraded"), "local-fallback");
    EXPECT_EQ(field(*res, "X-RateLimit-Limit"), "5");
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(limited, 3);
}

TEST(Server, CircuitBreakerStopsCallingAFailingStore) {
  Faulty f;
  Running r = start_server(with_policies("on_store_error: allow\n"), f.store);
  ASSERT_TRUE(r.server);
  f.store->failing = true;
  Client c(r.port);
  for (int i = 0; i < 200; ++i) {
    auto res = c.get("/api/x", {{"X-API-Key", "k" + std::to_string(i)}});
    ASSERT_TRUE(res);
    ASSERT_EQ(res->result_int(), 200u);
  }
  // 200 requests, but the store saw only the failures that opened the circuit, a few probes and
  // the background readiness probes.
  EXPECT_LT(f.store->calls.load(), 50);
  const std::string m = r.server->metrics().render();
  EXPECT_NE(m.find(R"(floodgate_store_requests_total{result="circuit_open"} )"), std::string::npos);
  EXPECT_NE(m.find("floodgate_store_circuit_open 1"), std::string::npos) << m;
  // Recovery on its own once the store answers.
  f.store->failing = false;
  EXPECT_TRUE(eventually([&] {
    auto res = c.get("/api/x", {{"X-API-Key", "after"}});
    return res && field(*res, "X-RateLimit-Degraded") == "<absent>";
  }));
}

// ---- proxy mode ----------------------------------------------------------------------------

// A small upstream on its own thread: echoes what it received as JSON; /slow answers after 2 s;
// /api/big/N and /api/big-chunked/N answer N bytes.
class EchoUpstream {
 public:
  EchoUpstream() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, accept(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~EchoUpstream() {
    ioc_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      ++connections_;
      asio::co_spawn(ioc_, serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket socket) {
    boost::beast::tcp_stream stream(std::move(socket));
    boost::beast::flat_buffer buffer;
    for (;;) {
      bhttp::request<bhttp::string_body> req;
      auto [ec, n] =
          co_await bhttp::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (req.target() == "/slow") {
        asio::steady_timer t(ioc_, seconds(2));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      // /api/big/N and /api/big-chunked/N: N bytes of body, with a Content-Length or chunked.
      const std::string target(req.target());
      for (const std::string prefix : {"/api/big/", "/api/big-chunked/"}) {
        if (!target.starts_with(prefix)) continue;
        bhttp::response<bhttp::string_body> big{bhttp::status::ok, 11};
        big.body().assign(std::stoul(target.substr(prefix.size())), 'z');
        big.keep_alive(req.keep_alive());
        if (prefix == "/api/big/") {
          big.prepare_payload();
        } else {
          big.chunked(true);
        }
        auto [bec, bn] =
            co_await bhttp::async_write(stream, big, asio::as_tuple(asio::use_awaitable));
        if (bec || !big.keep_alive()) co_return;
        break;
      }
      if (target.starts_with("/api/big")) continue;
      nlohmann::json j;
      j["method"] = std::string(req.method_string());
      j["target"] = std::string(req.target());
      j["body"] = req.body();
      for (const auto& f : req) j["headers"][std::string(f.name_string())] = std::string(f.value());
      bhttp::response<bhttp::string_body> res{bhttp::status::created, 11};
      res.set("Content-Type", "application/json");
      res.set("X-Upstream", "echo");
      res.set("X-RateLimit-Limit", "999");  // must not leak through
      res.body() = j.dump();
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] =
          co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec || !res.keep_alive()) co_return;
    }
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(Server, ProxiesAllowedRequestsToTheUpstream) {
  EchoUpstream up;
  Running r = start_server(with_policies("upstream: http://127.0.0.1:" + std::to_string(up.port()) +
                                         "\nupstream_timeout: 500ms\n"));
  ASSERT_TRUE(r.server);
  Client c(r.port);
  ASSERT_TRUE(c.send(request_bytes("POST", "/api/orders?id=7",
                                   {{"X-API-Key", "k1"},
                                    {"X-Custom", "yes"},
                                    {"Connection", "keep-alive, X-Hop"},
                                    {"X-Hop", "drop me"}},
                                   "payload")));
  auto res = c.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 201u);
  EXPECT_EQ(field(*res, "X-Upstream"), "echo");
  EXPECT_EQ(field(*res, "X-RateLimit-Limit"), "5");  // ours, not the upstream's 999
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");
  const auto echo = nlohmann::json::parse(res->body());
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["target"], "/api/orders?id=7");
  EXPECT_EQ(echo["body"], "payload");
  EXPECT_EQ(echo["headers"]["X-Custom"], "yes");
  EXPECT_EQ(echo["headers"]["X-Forwarded-For"], "127.0.0.1");
  EXPECT_FALSE(echo["headers"].contains("X-Hop"));
  // Keep-alive to the upstream: more requests, one upstream connection.
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(c.get("/api/more", {{"X-API-Key", "k1"}})->result_int(), 201u);
  EXPECT_EQ(up.connections(), 1);
  // /metrics counts that one connection and its four reuses, summed over the threads' pools.
  auto m = get_once(r.port, "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body().find(R"(floodgate_upstream_connections_total{event="opened"} 1)"),
            std::string::npos)
      << m->body();
  EXPECT_NE(m->body().find(R"(floodgate_upstream_connections_total{event="reused"} 4)"),
            std::string::npos);
  EXPECT_NE(m->body().find(R"(floodgate_upstream_connections_total{event="closed"} 0)"),
            std::string::npos);
  // A denied request never reaches the upstream.
  auto denied = c.get("/api/more", {{"X-API-Key", "k1"}});
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->result_int(), 429u);
  // Timeout: 504 with a problem body.
  auto slow = c.get("/slow");  // not limited, proxied
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->result_int(), 504u);
  EXPECT_EQ(field(*slow, "Content-Type"), "application/problem+json");
}

// X-Forwarded-For names each request's own peer, whichever peer the same thread served before.
TEST(Server, EachProxiedRequestNamesItsOwnPeer) {
  EchoUpstream up;
  std::string yaml = with_policies("upstream: http://127.0.0.1:" + std::to_string(up.port()) +
                                   "\nupstream_timeout: 2s\n");
  yaml.replace(yaml.find("threads: 2"), 10, "threads: 1");
  Running r = start_server(yaml);
  ASSERT_TRUE(r.server);
  for (const char* peer : {"127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.1"}) {
    Client c(r.port, seconds(5), peer);
    ASSERT_TRUE(c.connected()) << peer;
    ASSERT_TRUE(c.send(request_bytes("GET", "/api/who", {{"X-API-Key", peer}})));
    auto res = c.read();
    ASSERT_TRUE(res) << peer;
    ASSERT_EQ(res->result_int(), 201u) << peer;
    EXPECT_EQ(nlohmann::json::parse(res->body())["headers"]["X-Forwarded-For"], peer);
  }
}

// Upstream responses are held whole until their client has been sent them: clients that ask for
// a large resource and read it slowly would hold as many between them. Here two 16 MiB responses
// fit server.max_response_memory (40 MiB) and are held (their clients read nothing yet, and
// 16 MiB is more than the kernel buffers between them and the server hold: a 256 KiB receive
// buffer, a send buffer of at most net.ipv4.tcp_wmem's 4 MiB): a third is answered 503 with
// Retry-After, chunked or not, while small responses still fit; once a client has read its
// response, its share is free for the next, and a client that goes away frees its own.
// X-Forwarded-For is forwarded as one field: the client's fields of that name joined, its
// address added. Past Beast's bound of a field (65,533 bytes), which only a header allowed past
// 64 KiB can reach, that is a 431 before anything is forwarded, not a connection closed without an
// answer; the server serves on.
TEST(Server, AForwardedForTooLongToForwardIs431) {
  EchoUpstream up;
  Running r = start_server(with_policies("upstream: http://127.0.0.1:" + std::to_string(up.port()) +
                                         "\nserver:\n  max_header_bytes: 1048576\n"));
  ASSERT_TRUE(r.server);
  for (const std::string& fields : {"X-Forwarded-For: " + std::string(40'000, '1') +
                                        "\r\nX-Forwarded-For: " + std::string(40'000, '2') + "\r\n",
                                    "X-Forwarded-For: " + std::string(65'530, '1') + "\r\n"}) {
    Client c(r.port);
    ASSERT_TRUE(c.send("GET /api/x HTTP/1.1\r\nHost: t\r\n" + fields + "\r\n"));
    auto res = c.read();
    ASSERT_TRUE(res) << "no answer: " << c.last_error().message();
    EXPECT_EQ(res->result_int(), 431u);
  }
  auto next = get_once(r.port, "/api/x");
  ASSERT_TRUE(next) << "the server is gone";
  EXPECT_EQ(next->result_int(), 201u);  // the upstream's answer
}

// The same under a concurrency policy, whose requests are forwarded holding a slot
// (serve_holding): 431 before anything is forwarded, and the slot given back: with one slot, the
// next request is served. A slot is given back once its answer has been written, so the client
// can read the 431 a moment before: a request that meets the slot still held (429) is sent again
// (for at most 2 s); a slot never given back (its lease is 1 h) fails the test.
TEST(Server, AForwardedForTooLongToForwardIs431AndGivesItsSlotBack) {
  EchoUpstream up;
  Running r = start_server(with_policies("upstream: http://127.0.0.1:" + std::to_string(up.port()) +
                                             "\nserver:\n  max_header_bytes: 1048576\n",
                                         "policies:\n"
                                         "  - name: one-at-a-time\n"
                                         "    match: {path_prefix: /api/}\n"
                                         "    algorithm: concurrency\n"
                                         "    limit: 1\n"
                                         "    lease: 1h\n"));
  ASSERT_TRUE(r.server);
  const auto long_forwarded_for = [&]() -> unsigned {
    Client c(r.port);
    if (!c.send("GET /api/x HTTP/1.1\r\nHost: t\r\nX-API-Key: k\r\nX-Forwarded-For: " +
                std::string(65'530, '1') + "\r\n\r\n")) {
      return 0;
    }
    auto res = c.read();
    return res ? res->result_int() : 0;
  };
  const auto short_forwarded_for = [&]() -> unsigned {
    auto res = get_once(r.port, "/api/x", {{"X-API-Key", "k"}});
    return res ? res->result_int() : 0;
  };
  const auto past_a_held_slot = [](const auto& send) {
    unsigned status = send();
    for (int tries = 0; status == 429 && tries < 200; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      status = send();
    }
    return status;
  };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(past_a_held_slot(long_forwarded_for), 431u) << i;
  // The upstream's answer: the slot was free.
  EXPECT_EQ(past_a_held_slot(short_forwarded_for), 201u);
}

TEST(Server, UpstreamResponsesHoldAtMostMaxResponseMemory) {
  EchoUpstream up;
  Running r = start_server(with_policies("upstream: http://127.0.0.1:" + std::to_string(up.port()) +
                                         "\nupstream_timeout: 10s\nserver:\n"
                                         "  max_response_memory: 41943040\n"));
  ASSERT_TRUE(r.server);
  constexpr std::size_t kBig = 16 * 1024 * 1024;
  const std::string big = "/api/big/" + std::to_string(kBig);
  const auto gauge = [&](std::string_view name) -> long long {
    auto m = get_once(r.port, "/metrics");
    if (!m) return -1;
    const std::string line = "\n" + std::string(name) + " ";
    const std::size_t at = m->body().find(line);
    return at == std::string::npos ? -1 : std::stoll(m->body().substr(at + line.size()));
  };
  const auto wait_for = [&](long long bytes) {
    for (int i = 0; i < 250; ++i) {
      if (gauge("floodgate_upstream_response_bytes") == bytes) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  };
  std::vector<std::unique_ptr<Client>> slow;
  for (int i = 0; i < 2; ++i) {
    slow.push_back(std::make_unique<Client>(r.port, seconds(10)));
    int rcvbuf = 256 * 1024;  // fixed: not grown by the kernel
    setsockopt(slow.back()->socket().native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf,
               sizeof rcvbuf);
    ASSERT_TRUE(slow.back()->send(request_bytes("GET", big, {{"X-API-Key", "slow"}})));
    ASSERT_TRUE(wait_for(static_cast<long long>((i + 1) * kBig))) << i;
  }
  for (const std::string& target : {big, "/api/big-chunked/" + std::to_string(kBig)}) {
    auto refused = get_once(r.port, target, {{"X-API-Key", "third"}});
    ASSERT_TRUE(refused) << target;
    EXPECT_EQ(refused->result_int(), 503u) << target;
    EXPECT_EQ(field(*refused, "Retry-After"), "1");
    EXPECT_EQ(field(*refused, "Content-Type"), "application/problem+json");
  }
  EXPECT_EQ(gauge(R"(floodgate_upstream_requests_total{result="no_memory"})"), 2);
  EXPECT_EQ(get_once(r.port, "/api/small", {{"X-API-Key", "small"}})->result_int(), 201u);
  // The first slow client reads its response: its share comes back, and a third one fits.
  auto first = slow[0]->read();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result_int(), 200u);
  EXPECT_EQ(first->body().size(), kBig);
  ASSERT_TRUE(wait_for(static_cast<long long>(kBig)));
  auto third = get_once(r.port, big, {{"X-API-Key", "third"}});
  ASSERT_TRUE(third);
  EXPECT_EQ(third->result_int(), 200u);
  EXPECT_EQ(third->body().size(), kBig);
  // The second goes away without reading: the write fails, and its share comes back.
  slow.clear();
  EXPECT_TRUE(wait_for(0));
}

TEST(Server, UnreachableUpstreamIs502) {
  std::uint16_t dead_port;
  {
    asio::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  Running r =
      start_server(with_policies("upstream: http://127.0.0.1:" + std::to_string(dead_port) + "\n"));
  ASSERT_TRUE(r.server);
  auto res = get_once(r.port, "/api/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 502u);
  EXPECT_EQ(field(*res, "Content-Type"), "application/problem+json");
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");  // it was counted: the limiter allowed it
  auto m = get_once(r.port, "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body().find(R"(floodgate_upstream_connections_total{event="connect_failed"} 1)"),
            std::string::npos)
      << m->body();
  EXPECT_NE(m->body().find(R"(floodgate_upstream_connections_total{event="opened"} 0)"),
            std::string::npos);
}

TEST(Server, CorsOnRealResponses) {
  Running r = start_server(with_policies("cors: {allow_origins: [https://app.example.com]}\n"));
  ASSERT_TRUE(r.server);
  Client c(r.port);
  ASSERT_TRUE(c.send(request_bytes(
      "OPTIONS", "/api/x",
      {{"Origin", "https://app.example.com"}, {"Access-Control-Request-Method", "GET"}})));
  auto pre = c.read();
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->result_int(), 204u);
  EXPECT_EQ(field(*pre, "Access-Control-Allow-Origin"), "https://app.example.com");
  auto res = c.get("/api/x", {{"Origin", "https://app.example.com"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(field(*res, "X-RateLimit-Remaining"), "4");  // the preflight consumed nothing
  EXPECT_NE(field(*res, "Access-Control-Expose-Headers").find("X-RateLimit-Remaining"),
            std::string::npos);
}

}  // namespace
}  // namespace fg::http::test
