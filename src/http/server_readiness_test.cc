// /readyz against a store that is partly down, over a real loopback socket: the circuit breaker
// opens on the failing part under load, and the instance must stay ready, because the probe
// still reaches the rest of the store (server.h: readiness is "does any part of the store
// answer", not the breaker's state). The regression this guards: /readyz following the breaker,
// which under load on one dead cluster master takes every instance out of the load balancer.
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <string>
#include <thread>

#include "decide/metrics.h"
#include "http/server_test_util.h"

namespace fg::http::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A cluster in which one part is down: decisions for client identities fail (as on the dead
// master), and of the readiness probe's keys ("floodgate:readyz:<i>", server.cc) the first one
// fails too and the others answer. kind() is "redis-cluster", so the server probes it as it
// probes a cluster: key after key until one answers.
class PartlyDownStore final : public Store {
 public:
  explicit PartlyDownStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}
  void decide(const DecideRequest& request, DecideCallback done) override {
    const bool probe = request.identity.starts_with("floodgate:readyz:");
    if (probe) probes.fetch_add(1);
    if (!probe || request.identity == "floodgate:readyz:0") {
      done(fail(ErrorCode::kDeadlineExceeded, "injected: this part of the store is down"));
      return;
    }
    inner_->decide(request, std::move(done));
  }
  void refund(const RefundRequest& request, RefundCallback done) override {
    inner_->refund(request, std::move(done));
  }
  std::string_view kind() const override { return "redis-cluster"; }
  // As a cluster's: the probe may try many keys before concluding that no part answers.
  int probe_keys() const override { return 32; }

  std::atomic<int> probes{0};

 private:
  std::unique_ptr<Store> inner_;
};

constexpr std::string_view kConfig = R"(
listen: 127.0.0.1:0
threads: 2
on_store_error: allow
identity: [{header: X-API-Key}, {ip: {}}]
policies:
  - {name: five, match: {path_prefix: /api/}, limit: 5, period: 1h}
)";

bool circuit_open(Server& s) {
  return s.metrics().render().find("floodgate_store_circuit_open 1") != std::string::npos;
}

TEST(Readiness, ReadyzStays200WhileTheBreakerIsOpenAndThePartOfTheStoreAnswers) {
  auto store = std::make_shared<PartlyDownStore>(make_memory_store({}, SystemClock::instance()));
  Running r = start_server(kConfig, store);
  ASSERT_TRUE(r.server);
  // Load on the failing part, as clients of the dead master keep sending: the breaker opens
  // after a few failures, and reopens each time a probe's success has closed it.
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread load([&] {
    Client c(r.port);
    while (!stop.load()) {
      auto res = c.get("/api/x", {{"X-API-Key", "on-the-dead-master"}});
      if (!res) break;
      if (res->result_int() == 200 && field(*res, "X-RateLimit-Degraded") == "store-unavailable") {
        answered.fetch_add(1);
      }
    }
  });
  // Over 3 s (three probe rounds), ask /readyz whenever the breaker is open, before and after.
  int asked_while_open = 0, not_ready_while_open = 0, asked = 0, not_ready = 0;
  const auto end = std::chrono::steady_clock::now() + seconds(3);
  while (std::chrono::steady_clock::now() < end) {
    const bool open_before = circuit_open(*r.server);
    auto res = get_once(r.port, "/readyz");
    const bool open_after = circuit_open(*r.server);
    ASSERT_TRUE(res);
    ++asked;
    if (res->result_int() != 200) ++not_ready;
    if (open_before && open_after) {
      ++asked_while_open;
      if (res->result_int() != 200) ++not_ready_while_open;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  stop = true;
  load.join();
  std::cout << "figure: /readyz asked " << asked << " times, " << asked_while_open
            << " with the breaker open: " << not_ready << " not 200 (" << not_ready_while_open
            << " of them with the breaker open); " << answered.load() << " degraded answers, "
            << store->probes.load() << " probe calls\n";
  // The failure really happened: degraded answers, the breaker open, probes past the dead key.
  EXPECT_GT(answered.load(), 10);
  EXPECT_GT(asked_while_open, 10) << "the breaker was hardly ever open: nothing was shown";
  EXPECT_GT(store->probes.load(), 2);
  const std::string m = r.server->metrics().render();
  EXPECT_EQ(m.find(R"(floodgate_store_requests_total{result="circuit_open"} 0)"), std::string::npos)
      << m;
  // And the instance stayed ready throughout.
  EXPECT_EQ(not_ready_while_open, 0) << "of " << asked_while_open << " asked with the breaker open";
  EXPECT_EQ(not_ready, 0) << "of " << asked;
}

TEST(Readiness, ReadyzStays200ThroughAStoreWideStallOfUpToTwoProbeRounds) {
  // Every master stalled at once for ~1.9 s (a failover's vote on a loaded host): every instance's
  // probe fails in the same rounds. One failed round must not take the instance out of the
  // balancer, or all of them go at once (kProbeFailuresBeforeNotReady).
  auto store = std::make_shared<FaultyStore>(make_memory_store({}, SystemClock::instance()));
  Running r = start_server(kConfig, store);
  ASSERT_TRUE(r.server);
  ASSERT_TRUE(eventually([&] { return get_once(r.port, "/readyz")->result_int() == 200; }));
  const int calls_before = store->calls.load();
  store->failing = true;
  const auto end = std::chrono::steady_clock::now() + milliseconds(1900);
  int asked = 0, not_ready = 0;
  while (std::chrono::steady_clock::now() < end) {
    ++asked;
    if (get_once(r.port, "/readyz")->result_int() != 200) ++not_ready;
    std::this_thread::sleep_for(milliseconds(20));
  }
  // The stall was seen: at least one probe round (each 1 s apart) failed during it.
  const int probed = store->calls.load() - calls_before;
  store->failing = false;
  std::cout << "figure: /readyz asked " << asked << " times during a 1.9 s stall, " << not_ready
            << " not 200; " << probed << " probe calls failed\n";
  EXPECT_GE(probed, 1) << "no probe round fell in the stall: nothing was shown";
  EXPECT_EQ(not_ready, 0) << "of " << asked;
}

TEST(Readiness, ReadyzIs503WhenNoPartOfTheStoreAnswers) {
  // The other side of the same rule: when every probe key fails, the instance is not ready.
  auto store = std::make_shared<FaultyStore>(make_memory_store({}, SystemClock::instance()));
  Running r = start_server(kConfig, store);
  ASSERT_TRUE(r.server);
  EXPECT_TRUE(eventually([&] { return get_once(r.port, "/readyz")->result_int() == 200; }));
  store->failing = true;
  // After kProbeFailuresBeforeNotReady rounds, ~1 s apart.
  EXPECT_TRUE(eventually([&] { return get_once(r.port, "/readyz")->result_int() == 503; }));
  store->failing = false;
  EXPECT_TRUE(eventually([&] { return get_once(r.port, "/readyz")->result_int() == 200; }));
}

}  // namespace
}  // namespace fg::http::test
