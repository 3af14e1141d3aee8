// RedisStore against a scripted RESP server on a loopback port, which records the exact bytes of
// every FCALL it receives: a batch goes out as append_decide_batch would write it (one Redis, and
// one call per slot on a cluster), and a resend after a redirection, a reload of the library or a
// retry writes the very same bytes again.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/redis/redis_store.h"
#include "store/redis/redis_test_util.h"
#include "store/redis/script.h"

namespace fg::redis {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using test::make_policy;

// The first complete command (an array of bulk strings, as clients send) at the start of `in`:
// its raw bytes and its arguments; nullopt when more bytes are needed.
struct Command {
  std::string raw;
  std::vector<std::string> argv;
};
std::optional<Command> split_command(std::string_view in) {
  auto line = [&](std::size_t at, std::size_t* end) -> std::optional<long> {
    const std::size_t crlf = in.find("\r\n", at);
    if (crlf == std::string_view::npos) return std::nullopt;
    *end = crlf + 2;
    return std::stol(std::string(in.substr(at + 1, crlf - at - 1)));
  };
  std::size_t at = 0;
  const auto n = line(0, &at);
  if (!n) return std::nullopt;
  Command c;
  for (long i = 0; i < *n; ++i) {
    const auto len = line(at, &at);
    if (!len || in.size() < at + static_cast<std::size_t>(*len) + 2) return std::nullopt;
    c.argv.emplace_back(in.substr(at, static_cast<std::size_t>(*len)));
    at += static_cast<std::size_t>(*len) + 2;
  }
  c.raw = std::string(in.substr(0, at));
  return c;
}

// A reply to fg_decide_v4 `argv` that admits every charge: [decided_at, (1, 0, (1 0 10 9 0 0) x
// n) x m].
std::string allow_all(const std::vector<std::string>& argv) {
  std::size_t at = 3 + std::stoul(argv[2]) + 1;  // past the keys and now_us
  const std::size_t items = std::stoul(argv[at++]);
  const std::size_t policies = std::stoul(argv[at++]);
  at += 5 * policies;
  std::string body;
  std::size_t values = 1;
  for (std::size_t i = 0; i < items; ++i) {
    const std::size_t n = std::stoul(argv[at]);
    at += 1 + 2 * n;
    body += ":1\r\n:0\r\n";
    for (std::size_t j = 0; j < n; ++j) body += ":1\r\n:0\r\n:10\r\n:9\r\n:0\r\n:0\r\n";
    values += 2 + 6 * n;
  }
  return "*" + std::to_string(values) + "\r\n:1800000000000000\r\n" + body;
}

// A Redis (or a one-node cluster owning every slot) that answers the library's loading, ASKING
// and CLUSTER SLOTS as Redis does, and each FCALL with the next scripted error if any, else
// allow_all. Records every command in order.
class ScriptedRedis {
 public:
  explicit ScriptedRedis(std::deque<std::string> errors) : errors_(std::move(errors)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedRedis() {
    stopping_ = true;
    boost::system::error_code ignored;
    // Blocked accept() and read() calls wake for a connection and a shutdown, not a close.
    tcp::socket wake(ioc_);
    wake.connect(acceptor_.local_endpoint(), ignored);
    {
      std::lock_guard lock(mu_);
      for (auto& s : sockets_) s->shutdown(tcp::socket::shutdown_both, ignored);
    }
    thread_.join();
    for (auto& t : connections_) t.join();
  }

  std::uint16_t port() const { return port_; }
  std::vector<Command> commands() const {
    std::lock_guard lock(mu_);
    return commands_;
  }
  std::vector<std::string> fcalls() const {
    std::vector<std::string> out;
    for (const Command& c : commands()) {
      if (c.argv[0] == "FCALL") out.push_back(c.raw);
    }
    return out;
  }

 private:
  void serve() {
    while (!stopping_) {
      auto socket = std::make_shared<tcp::socket>(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(*socket, ec);
      if (ec || stopping_) return;
      std::lock_guard lock(mu_);
      sockets_.push_back(socket);
      connections_.emplace_back([this, socket] { converse(*socket); });
    }
  }

  void converse(tcp::socket& socket) {
    std::string in;
    char buf[16384];
    for (;;) {
      boost::system::error_code ec;
      const std::size_t n = socket.read_some(asio::buffer(buf), ec);
      if (ec) return;
      in.append(buf, n);
      std::string out;
      while (auto c = split_command(in)) {
        in.erase(0, c->raw.size());
        out += answer(*c);
      }
      asio::write(socket, asio::buffer(out), ec);
      if (ec) return;
    }
  }

  std::string answer(const Command& c) {
    std::lock_guard lock(mu_);
    commands_.push_back(c);
    const std::string& name = c.argv[0];
    if (name == "MULTI" || name == "ASKING") return "+OK\r\n";
    if (name == "FUNCTION") return "+QUEUED\r\n";
    if (name == "EXEC") {
      return "*3\r\n-ERR Library not found\r\n-ERR Library not found\r\n$12\r\nfloodgate_v4\r\n";
    }
    if (name == "CLUSTER") {
      return "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:" + std::to_string(port_) +
             "\r\n";
    }
    if (name == "FCALL" && c.argv[1] == kDecideFunction) {
      if (++fcalls_ > 1 && !errors_.empty()) {  // the first is the warm-up
        std::string e = std::move(errors_.front());
        errors_.pop_front();
        if (auto at = e.find("PORT"); at != std::string::npos) {
          e.replace(at, 4, std::to_string(port_));
        }
        return "-" + e + "\r\n";
      }
      return allow_all(c.argv);
    }
    return "-ERR unexpected command " + name + "\r\n";
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::deque<std::string> errors_;
  int fcalls_ = 0;
  std::vector<Command> commands_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> connections_;
};

std::unique_ptr<RedisStore> make_store(const ScriptedRedis& redis, bool cluster) {
  RedisStoreOptions o;
  o.url.cluster = cluster;
  o.url.hosts = {RedisHost{"127.0.0.1", redis.port()}};
  o.key_secret = "a deployment secret";
  o.timeout = 5s;
  auto store = RedisStore::make(o);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

// Decisions made together on a bound thread (one batch per slot): several policies, one used by
// several decisions, two with equal blocks, identities that escape.
struct Batch {
  Policy minute = make_policy("per-minute", 100, {.period = std::chrono::minutes(1)});
  Policy twin = make_policy("per-minute-twin", 100, {.period = std::chrono::minutes(1)});
  Policy gcra = make_policy("g{c}ra", 3, {.algorithm = Algorithm::kGcra});
  std::vector<std::string> identities = {"user-1", "{user}-2", "", "user-4", "user-5", "user-6"};
  std::vector<std::vector<Charge>> charges = {{{&minute, 1}},
                                              {{&gcra, 2}, {&minute, 1}},
                                              {{&twin, 1}, {&minute, 3}},
                                              {{&gcra, 1}},
                                              {{&minute, 1}},
                                              {{&twin, 2}}};

  // append_decide_batch's bytes for decisions `which`.
  std::string reference(const std::vector<std::size_t>& which) const {
    std::vector<EncodedDecision> encoded;
    for (std::size_t i : which) {
      encoded.push_back(encode_decision("fg", make_tag_key("a deployment secret"), identities[i],
                                        charges[i]));
    }
    std::vector<const EncodedDecision*> items;
    for (const EncodedDecision& e : encoded) items.push_back(&e);
    std::string out;
    append_decide_batch(out, items);
    return out;
  }

  // Decides them all on a thread bound to `store`; every one must be allowed.
  void decide_all(RedisStore& store) {
    std::atomic<int> allowed{0};
    testing::on_bound_thread(store, static_cast<int>(identities.size()), [&](auto one_done) {
      for (std::size_t i = 0; i < identities.size(); ++i) {
        store.decide(DecideRequest{identities[i], charges[i]}, [&, one_done](Result<Verdict> r) {
          EXPECT_TRUE(r.has_value()) << r.error().to_string();
          if (r && r->allowed) ++allowed;
          one_done();
        });
      }
    });
    EXPECT_EQ(allowed.load(), static_cast<int>(identities.size()));
  }
};

TEST(RedisResend, ABatchIsWhatAppendDecideBatchWrites) {
  ScriptedRedis redis({});
  auto store = make_store(redis, false);
  Batch batch;
  batch.decide_all(*store);
  const auto fcalls = redis.fcalls();
  ASSERT_EQ(fcalls.size(), 2u);  // the warm-up, then every decision in one call
  EXPECT_EQ(fcalls[1], batch.reference({0, 1, 2, 3, 4, 5}));
}

TEST(RedisResend, AClusterBatchIsOneCallPerSlotInTheirOrder) {
  ScriptedRedis redis({});
  auto store = make_store(redis, true);
  Batch batch;
  const TagKey key = make_tag_key("a deployment secret");
  std::map<int, std::vector<std::size_t>> by_slot;
  for (std::size_t i = 0; i < batch.identities.size(); ++i) {
    by_slot[identity_slot(key, batch.identities[i])].push_back(i);
  }
  ASSERT_GT(by_slot.size(), 1u);
  batch.decide_all(*store);
  auto fcalls = redis.fcalls();
  ASSERT_EQ(fcalls.size(), 1 + by_slot.size());
  fcalls.erase(fcalls.begin());  // the warm-up
  std::vector<std::string> expected;
  for (const auto& [slot, which] : by_slot) expected.push_back(batch.reference(which));
  EXPECT_EQ(fcalls, expected) << "slot by slot, in slot order";
}

// The batch's first call is answered `error` once (PORT: the server's own port); it must be sent
// again, byte for byte, and the store must count it under `counter`. Returns what the server got.
std::vector<Command> expect_identical_resend(const std::string& error, bool cluster,
                                             std::uint64_t RedisStoreStats::*counter) {
  ScriptedRedis redis({error});
  auto store = make_store(redis, cluster);
  Batch batch;
  batch.decide_all(*store);
  const auto fcalls = redis.fcalls();
  // The warm-up, the batch's calls (all written before any reply), the resend.
  EXPECT_GE(fcalls.size(), 3u);
  if (fcalls.size() < 3) return redis.commands();
  if (!cluster) {
    EXPECT_EQ(fcalls[1], batch.reference({0, 1, 2, 3, 4, 5}));
  }
  EXPECT_EQ(fcalls.back(), fcalls[1]) << "the resend differs from the first send";
  EXPECT_EQ(store->stats().*counter, 1u);
  return redis.commands();
}

TEST(RedisResend, FunctionNotFoundReloadsTheLibraryAndSendsTheSameBytes) {
  const auto commands =
      expect_identical_resend("ERR Function not found", false, &RedisStoreStats::reloads);
  int loads = 0;
  for (const Command& c : commands) loads += c.argv[0] == "MULTI";
  EXPECT_EQ(loads, 2) << "at the connect, then before the resend";
}

TEST(RedisResend, MovedSendsTheSameBytes) {
  expect_identical_resend("MOVED 1 127.0.0.1:PORT", false, &RedisStoreStats::moved);
}

TEST(RedisResend, MovedOnAClusterSendsTheSameBytes) {
  expect_identical_resend("MOVED 1 127.0.0.1:PORT", true, &RedisStoreStats::moved);
}

TEST(RedisResend, AskSendsAskingThenTheSameBytes) {
  const auto commands =
      expect_identical_resend("ASK 1 127.0.0.1:PORT", false, &RedisStoreStats::asks);
  ASSERT_GE(commands.size(), 2u);
  EXPECT_EQ(commands[commands.size() - 2].argv[0], "ASKING");
}

TEST(RedisResend, TryAgainSendsTheSameBytesAfterABackoff) {
  expect_identical_resend("TRYAGAIN Multiple keys request during rehashing of slot", false,
                          &RedisStoreStats::retries);
}

}  // namespace
}  // namespace fg::redis
