// RedisStore against one real redis-server: the store conformance suite, exactness across
// instances and threads, deadlines, failures, reloading the library, TTLs, AUTH and SELECT, and
// I/O threads bound to the store. Every allocation of this test program is counted
// (count_allocations.h), for the batches of a warm thread.
#include "store/redis/redis_store.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <future>
#include <iostream>
#include <thread>

#include "app/wiring.h"
#include "count_allocations.h"
#include "store/redis/keys.h"
#include "store/redis/redis_test_util.h"
#include "store/redis/script.h"
#include "store_conformance.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;
using test::make_policy;

// One server for the whole process (ctest runs each test in its own process: one each).
class RedisEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string why;
    if (!test::RedisServer::installed())
      FG_MISSING_TOOL("redis-server is not installed (apt-get install redis-server)");
    test::RedisServerOptions options;
    options.extra_args = {"--enable-debug-command", "yes"};
    server_ = test::RedisServer::start(options, &why);
    ASSERT_TRUE(server_) << why;
  }
  void TearDown() override { server_.reset(); }
  static test::RedisServer& server() { return *server_; }

 private:
  static inline std::unique_ptr<test::RedisServer> server_;
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new RedisEnvironment);

RedisStoreOptions options_for(const std::string& url, Duration timeout = 5s) {
  RedisStoreOptions o;
  auto parsed = parse_redis_url(url, o);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().to_string();
  // Generous: these tests check answers, not latency, on a shared 2-core machine. The
  // deadline tests set their own.
  o.timeout = timeout;
  return o;
}

std::unique_ptr<RedisStore> make_store(const std::string& url, Duration timeout = 5s) {
  auto store = RedisStore::make(options_for(url, timeout));
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

std::string url_of(const test::RedisServer& s) { return "redis://" + s.address(); }

// Unbinds `store` from the thread that runs `ioc`, on that thread, and waits until it has.
void unbind_on(RedisStore& store, boost::asio::io_context& ioc) {
  std::promise<void> unbound;
  boost::asio::post(ioc, [&] {
    store.unbind_current_thread();
    unbound.set_value();
  });
  unbound.get_future().wait();
}

// Every key on the server, visited with SCAN (which, unlike DBSIZE, skips expired keys).
std::vector<std::string> all_keys(const test::RedisServer& s) {
  std::vector<std::string> keys;
  std::string cursor = "0";
  for (int i = 0; i < 100000; ++i) {
    auto r = s.command({"SCAN", cursor, "COUNT", "1000"});
    if (r.is_error || r.elements.size() != 2) break;
    for (const auto& k : r.elements[1].elements) keys.push_back(k.str);
    cursor = r.elements[0].str;
    if (cursor == "0") break;
  }
  return keys;
}

struct SingleRedisTraits {
  std::unique_ptr<Store> make() {
    RedisEnvironment::server().command({"FLUSHALL"});
    return make_store(url_of(RedisEnvironment::server()));
  }
  // Redis time is real time: let it pass.
  void advance(Duration d) { std::this_thread::sleep_for(d); }
  std::size_t live_states() { return all_keys(RedisEnvironment::server()).size(); }
};

}  // namespace
}  // namespace fg::redis

namespace fg::test {
INSTANTIATE_TYPED_TEST_SUITE_P(SingleRedis, StoreConformance,
                               ::testing::Types<fg::redis::SingleRedisTraits>);
}  // namespace fg::test

namespace fg::redis {
namespace {

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { server().command({"FLUSHALL"}); }
  test::RedisServer& server() { return RedisEnvironment::server(); }
};

TEST_F(RedisStoreTest, KindSaysRedis) {
  auto store = make_store(url_of(server()));
  EXPECT_EQ(store->kind(), "redis");
}

TEST_F(RedisStoreTest, KeysAreNamedAfterPrefixIdentityAndPolicy) {
  auto o = options_for(url_of(server()));
  o.key_prefix = "deploy-a";
  auto store = RedisStore::make(o);
  ASSERT_TRUE(store.has_value());
  const Policy p = make_policy("per-day", 5);
  ASSERT_TRUE(test::decide(**store, "user {42}", {{&p, 1}})->allowed);
  const auto keys = all_keys(server());
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0],
            "deploy-a:{" + hash_tag(TagKey{}, "user %7B42%7D") + "}:user %7B42%7D:per-day");
}

TEST_F(RedisStoreTest, SeveralInstancesAndThreadsAdmitExactlyTheLimit) {
  // Four stores are four floodgate instances, each with its own connection(s); three threads
  // each hammer through every one of them. 4 x 3 x 200 = 2400 attempts on a limit of 1000.
  constexpr int kStores = 4;
  constexpr int kThreads = 3;
  constexpr int kPerThread = 200;
  const Policy p = make_policy("exact", 1000, {.algorithm = Algorithm::kGcra});
  std::vector<std::unique_ptr<RedisStore>> stores;
  for (int i = 0; i < kStores; ++i) stores.push_back(make_store(url_of(server())));
  std::atomic<int> allowed{0}, errors{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < kStores; ++s) {
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, s] {
        for (int i = 0; i < kPerThread; ++i) {
          auto r = test::decide(*stores[s], "hot", {{&p, 1}});
          if (!r) {
            ++errors;
          } else if (r->allowed) {
            ++allowed;
          }
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(allowed.load(), 1000);
}

// 1000 decisions issued by one handler on a bound I/O thread (as an HTTP server thread issues
// them) are all queued before the first write completes, so they share a handful of writes.
// (From an unbound thread each decision is a post to the store's thread, and how many share a
// write depends on scheduling: not a property to test.)
TEST_F(RedisStoreTest, DecisionsInFlightTogetherShareWrites) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("pipelined", 1000000);
  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  std::thread io([&] { ioc.run(); });
  constexpr int kDecisions = 1000;
  std::atomic<int> errors{0};
  std::promise<void> warmed, all_done;
  boost::asio::post(ioc, [&] {
    store->bind_current_thread(ioc);
    const std::vector<Charge> charges = {{&p, 1}};
    store->decide(DecideRequest{"warm-up", charges}, [&](Result<Verdict> r) {
      if (!r) ++errors;
      warmed.set_value();
    });
  });
  ASSERT_EQ(warmed.get_future().wait_for(10s), std::future_status::ready);
  const RedisStoreStats before = store->stats();
  boost::asio::post(ioc, [&] {
    auto left = std::make_shared<int>(kDecisions);
    for (int i = 0; i < kDecisions; ++i) {
      const std::vector<Charge> charges = {{&p, 1}};
      store->decide(DecideRequest{"client-" + std::to_string(i % 50), charges},
                    [&, left](Result<Verdict> r) {
                      if (!r) ++errors;
                      if (--*left == 0) all_done.set_value();
                    });
    }
  });
  ASSERT_EQ(all_done.get_future().wait_for(30s), std::future_status::ready);
  const RedisStoreStats after = store->stats();
  const auto writes = after.writes - before.writes;
  std::cout << kDecisions << " decisions in flight together took " << writes << " writes\n";
  EXPECT_EQ(errors.load(), 0);
  EXPECT_LE(writes, 10u);
  EXPECT_EQ(after.decisions - before.decisions, static_cast<std::uint64_t>(kDecisions));
  // Decided in one handler, they were staged together: FCALLs of 64 decisions (the batch cap),
  // nothing else was sent; every write falls in one bucket of the pipeline depth.
  std::uint64_t bucketed = 0;
  for (std::size_t i = 0; i < after.write_sizes.size(); ++i) {
    bucketed += after.write_sizes[i] - before.write_sizes[i];
  }
  EXPECT_EQ(bucketed, writes);
  EXPECT_EQ(after.written_commands - before.written_commands,
            static_cast<std::uint64_t>((kDecisions + 63) / 64));
  unbind_on(*store, ioc);
  // An unbound thread's counts stay in the totals.
  EXPECT_GE(store->stats().decisions, after.decisions);
  EXPECT_GE(store->stats().written_commands, after.written_commands);
  work.reset();
  io.join();
}

TEST_F(RedisStoreTest, ConcurrentDecisionsShareCallsAndAdmitExactlyTheLimit) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("shared", 10);
  const Policy other = make_policy("other", 3, {.algorithm = Algorithm::kSlidingWindow});
  constexpr int kDecisions = 64;
  std::atomic<int> allowed{0}, other_allowed{0}, errors{0};
  const RedisStoreStats before = store->stats();
  testing::on_bound_thread(*store, kDecisions, [&](auto one_done) {
    for (int i = 0; i < kDecisions; ++i) {
      // One identity for most, so that a later item must see an earlier one's write; a few
      // others with two policies, so that items differ in shape.
      std::vector<Charge> charges = {{&p, 1}};
      std::string identity = "one";
      if (i % 8 == 7) {
        charges.push_back(Charge{&other, 1});
        identity = "two-" + std::to_string(i % 16);
      }
      store->decide(DecideRequest{identity, charges}, [&, i, one_done](Result<Verdict> r) {
        if (!r) {
          ++errors;
        } else if (r->allowed) {
          ++(i % 8 == 7 ? other_allowed : allowed);
        }
        one_done();
      });
    }
  });
  const RedisStoreStats after = store->stats();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(allowed.load(), 10);       // 56 asked on "one", limit 10
  EXPECT_EQ(other_allowed.load(), 6);  // 2 identities, 4 each, limit 3 on "other"
  // The bound thread's new connection loaded the library (library_load_commands()), the warm-up
  // was one FCALL, and the 64, made in one handler, one more.
  EXPECT_EQ(after.commands - before.commands, library_load_commands().size() + 2u);
  EXPECT_EQ(after.decisions - before.decisions, kDecisions + 1u);
}

TEST_F(RedisStoreTest, TheLibraryIsLoadedOncePerNodeNotPerConnection) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("once", 100);
  const std::vector<Charge> charges = {{&p, 1}};
  server().command({"CONFIG", "RESETSTAT"});
  // The store's own thread, then three bound threads: four connections to the one node.
  ASSERT_TRUE(decide_and_wait(*store, DecideRequest{"own", charges}).has_value());
  for (int t = 0; t < 3; ++t) {
    testing::on_bound_thread(*store, 1, [&](auto one_done) {
      store->decide(DecideRequest{"bound", charges}, [&, one_done](Result<Verdict> r) {
        EXPECT_TRUE(r.has_value()) << r.error().to_string();
        one_done();
      });
    });
  }
  EXPECT_EQ(store->stats().connects, 4u);
  EXPECT_EQ(store->stats().loads, 1u);
  EXPECT_EQ(store->stats().reloads, 0u);
  const std::string info = server().command({"INFO", "commandstats"}).str;
  EXPECT_NE(info.find("cmdstat_function|load:calls=1,"), std::string::npos) << info;
}

TEST_F(RedisStoreTest, DecisionsFromSeveralThreadsAdmitExactlyTheLimit) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("threads", 10);
  constexpr int kThreads = 4, kEach = 16;
  std::atomic<int> allowed{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        const std::vector<Charge> charges = {{&p, 1}};
        auto r = decide_and_wait(*store, DecideRequest{"many", charges});
        if (!r) {
          ++errors;
        } else if (r->allowed) {
          ++allowed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(allowed.load(), 10);
  // Never more FCALLs than decisions (plus the four commands that load the library).
  EXPECT_LE(store->stats().commands, kThreads * kEach + 4u);
}

TEST_F(RedisStoreTest, EveryDecisionOfABatchGetsItsDeadline) {
  auto store = make_store(url_of(server()), 30ms);
  const Policy p = make_policy("batch-deadline", 1000);
  const std::vector<Charge> charges = {{&p, 1}};
  constexpr int kDecisions = 100;  // two calls: 64 and 36
  std::atomic<int> timeouts{0};
  std::atomic<std::int64_t> slowest_us{0};
  testing::on_bound_thread(
      *store, kDecisions,
      [&](auto one_done) {
        for (int i = 0; i < kDecisions; ++i) {
          const auto start = std::chrono::steady_clock::now();
          store->decide(DecideRequest{"d-" + std::to_string(i), charges},
                    [&, start, one_done](Result<Verdict> r) {
                      if (!r && r.error().code == ErrorCode::kDeadlineExceeded) ++timeouts;
                      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::steady_clock::now() - start)
                                          .count();
                      if (us > slowest_us.load()) slowest_us = us;
                      one_done();
                    });
        }
      },
      [&] { ASSERT_EQ(::kill(server().pid(), SIGSTOP), 0); });
  ::kill(server().pid(), SIGCONT);
  EXPECT_EQ(timeouts.load(), kDecisions);
  EXPECT_LT(slowest_us.load(), 250'000);
}

// A script that keeps the server busy for ARGV[1] µs: past lua-time-limit, every other client
// is answered "BUSY ...", one of the "try again" errors (with TRYAGAIN, CLUSTERDOWN, LOADING,
// MASTERDOWN, READONLY) that the store retries with backoff inside the deadline. BUSY is the one
// a single real server can be made to answer on demand; they share one path.
constexpr const char* kSpinScript =
    "local s = redis.call('TIME') local start = s[1] * 1000000 + s[2] "
    "repeat local t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) "
    "return 1";

// Starts the spin on its own admin connection and returns once the server answers BUSY.
std::thread spin(test::RedisServer& s, std::chrono::microseconds how_long) {
  s.command({"CONFIG", "SET", "lua-time-limit", "20"});
  std::thread t([&s, how_long] {
    s.command({"EVAL", kSpinScript, "0", std::to_string(how_long.count())});
  });
  EXPECT_TRUE(testing::eventually([&] {
    const auto r = s.command({"PING"});
    return r.is_error && r.str.starts_with("BUSY");
  }));
  return t;
}

TEST_F(RedisStoreTest, ABusyServerIsRetriedUntilItAnswers) {
  auto store = make_store(url_of(server()), 5s);
  const Policy p = make_policy("busy", 100);
  ASSERT_TRUE(test::decide(*store, "b", {{&p, 1}}).has_value());  // connected, library loaded
  std::thread busy = spin(server(), 400ms);
  const auto retries_before = store->stats().retries;
  auto r = test::decide(*store, "b", {{&p, 1}});
  busy.join();
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->allowed);
  EXPECT_EQ(r->headline().remaining, 98);
  EXPECT_GT(store->stats().retries, retries_before);
}

TEST_F(RedisStoreTest, ABusyServerPastTheDeadlineIsAnErrorOnTime) {
  auto store = make_store(url_of(server()), 100ms);
  const Policy p = make_policy("busy-deadline", 100);
  ASSERT_TRUE(test::decide(*store, "b", {{&p, 1}}).has_value());
  std::thread busy = spin(server(), 1500ms);
  const auto start = std::chrono::steady_clock::now();
  auto r = test::decide(*store, "b", {{&p, 1}});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  busy.join();
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().code == ErrorCode::kUnavailable ||
              r.error().code == ErrorCode::kDeadlineExceeded)
      << r.error().to_string();
  EXPECT_LT(elapsed, 250ms) << "retries never run past the deadline";
  // Once the server is free again, the store answers, and nothing was consumed meanwhile.
  auto after = test::decide(*store, "b", {{&p, 0}});
  ASSERT_TRUE(after.has_value()) << after.error().to_string();
  EXPECT_EQ(after->headline().remaining, 99);
}

TEST_F(RedisStoreTest, AStoppedServerMeansDeadlineExceededOnTime) {
  auto store = make_store(url_of(server()), 30ms);
  const Policy p = make_policy("deadline", 100);
  ASSERT_TRUE(test::decide(*store, "d", {{&p, 1}}).has_value());
  ASSERT_EQ(::kill(server().pid(), SIGSTOP), 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = test::decide(*store, "d", {{&p, 1}});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ::kill(server().pid(), SIGCONT);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_GE(elapsed, 30ms);
  EXPECT_LT(elapsed, 250ms);
  EXPECT_EQ(store->stats().timeouts, 1u);
  // The server is back; its late answer was discarded, and the next decision sees both.
  auto after = testing::eventually([&] {
    auto again = test::decide(*store, "d", {{&p, 1}});
    return again.has_value() && again->allowed && again->headline().remaining == 97;
  });
  EXPECT_TRUE(after);
}

TEST_F(RedisStoreTest, ADebugSleepMeansDeadlineExceededOnTime) {
  auto store = make_store(url_of(server()), 40ms);
  const Policy p = make_policy("sleepy", 100);
  ASSERT_TRUE(test::decide(*store, "s", {{&p, 1}}).has_value());
  std::thread sleeper([&] { server().command({"DEBUG", "SLEEP", "0.3"}); });
  // Wait until the server is really asleep (its PING stops answering quickly).
  testing::eventually([&] { return false; }, 50ms);
  const auto start = std::chrono::steady_clock::now();
  auto r = test::decide(*store, "s", {{&p, 1}});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  sleeper.join();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_LT(elapsed, 250ms);
}

TEST_F(RedisStoreTest, NoServerMeansUnavailableAtOnce) {
  auto store = make_store("redis://127.0.0.1:" + std::to_string(test::free_port()), 1s);
  const Policy p = make_policy("down", 10);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto r = test::decide(*store, "x", {{&p, 1}});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().to_string();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 200ms);
}

TEST_F(RedisStoreTest, ReloadsTheLibraryAfterFunctionFlush) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("flushed", 10);
  ASSERT_TRUE(test::decide(*store, "f", {{&p, 1}})->allowed);
  ASSERT_FALSE(server().command({"FUNCTION", "FLUSH"}).is_error);
  auto r = test::decide(*store, "f", {{&p, 1}});
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->headline().remaining, 8);
  EXPECT_EQ(store->stats().reloads, 1u);
  EXPECT_FALSE(server()
                   .command({"FUNCTION", "LIST", "LIBRARYNAME", std::string(kLibraryName)})
                   .elements.empty());
}

TEST_F(RedisStoreTest, ReconnectsAndReloadsAfterTheServerRestarts) {
  auto store = make_store(url_of(server()), 500ms);
  const Policy p = make_policy("restart", 10);
  ASSERT_TRUE(test::decide(*store, "r", {{&p, 1}})->allowed);
  server().kill();
  auto down = test::decide(*store, "r", {{&p, 1}});
  ASSERT_FALSE(down.has_value());
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable);
  std::string why;
  ASSERT_TRUE(server().restart(&why)) << why;
  // A restarted server has neither the data (no persistence) nor the library.
  EXPECT_TRUE(testing::eventually([&] {
    auto r = test::decide(*store, "r", {{&p, 1}});
    return r.has_value() && r->allowed && r->headline().remaining == 9;
  }));
  const RedisStoreStats stats = store->stats();
  EXPECT_GE(stats.connects, 2u);
  EXPECT_GE(stats.disconnects, 1u);
  EXPECT_GE(stats.reconnects, 1u);  // the same node, connected again
}

TEST_F(RedisStoreTest, EveryKeyWrittenHasATtl) {
  auto store = make_store(url_of(server()));
  const Policy bucket = make_policy("bucket", 50);
  const Policy gcra = make_policy("gcra", 50, {.algorithm = Algorithm::kGcra});
  const Policy sliding = make_policy("sliding", 50, {.algorithm = Algorithm::kSlidingWindow});
  Policy fixed = make_policy("fixed", 50, {.algorithm = Algorithm::kFixedWindow});
  fixed.period = 10s;
  Policy shadow = make_policy("shadow", 3);
  shadow.shadow = true;
  for (int i = 0; i < 200; ++i) {
    const std::string id = "client-" + std::to_string(i % 37);
    const std::vector<Charge> charges = {
        {&bucket, i % 3}, {&gcra, 1}, {&sliding, 2}, {&fixed, 1}, {&shadow, 1}};
    auto r = decide_and_wait(*store, DecideRequest{id, charges});
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
  }
  const auto keys = all_keys(server());
  EXPECT_EQ(keys.size(), 37u * 5u);
  for (const auto& k : keys) {
    const auto ttl = server().command({"PTTL", k});
    EXPECT_GT(ttl.integer, 0) << k;
  }
}

TEST_F(RedisStoreTest, AuthAndDatabaseComeFromTheUrl) {
  test::RedisServerOptions options;
  options.requirepass = "pw";
  FG_START_REDIS(secured, options);
  ASSERT_FALSE(
      secured->command({"ACL", "SETUSER", "floodgate", "on", ">limiter-pw", "~fg:*", "+@all"})
          .is_error);
  const Policy p = make_policy("auth", 10);
  for (const std::string userinfo : {":pw@", "floodgate:limiter-pw@"}) {
    auto store = make_store("redis://" + userinfo + secured->address() + "/2");
    auto r = test::decide(*store, "a", {{&p, 1}});
    ASSERT_TRUE(r.has_value()) << userinfo << ": " << r.error().to_string();
    EXPECT_TRUE(r->allowed);
  }
  // Both decisions landed in db 2, on one key.
  const auto in_db2 =
      secured->command({"EVAL", "redis.call('SELECT', 2) return redis.call('GET', KEYS[1])", "1",
                        make_key("fg", TagKey{}, "a", "auth")});
  EXPECT_FALSE(in_db2.is_nil) << in_db2.str;
  EXPECT_EQ(secured->command({"DBSIZE"}).integer, 0);

  auto wrong = make_store("redis://:nope@" + secured->address());
  auto r = test::decide(*wrong, "a", {{&p, 1}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("AUTH"), std::string::npos) << r.error().message;
}

TEST_F(RedisStoreTest, ABoundThreadUsesItsOwnConnectionsAndIsCalledBackOnIt) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("bound", 100);
  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  std::thread io([&] { ioc.run(); });
  const std::thread::id io_id = io.get_id();

  std::promise<void> bound;
  boost::asio::post(ioc, [&] {
    store->bind_current_thread(ioc);
    bound.set_value();
  });
  bound.get_future().wait();
  const auto connects_before = store->stats().connects;

  // 100 decisions made on the bound thread: called back on it, over its own connection.
  std::promise<int> allowed_promise;
  boost::asio::post(ioc, [&] {
    auto allowed = std::make_shared<int>(0);
    auto left = std::make_shared<int>(100);
    for (int i = 0; i < 100; ++i) {
      const std::vector<Charge> charges = {{&p, 1}};
      store->decide(DecideRequest{"on-io-thread", charges},
                    [&, allowed, left, io_id](Result<Verdict> r) {
                      EXPECT_EQ(std::this_thread::get_id(), io_id);
                      if (r && r->allowed) ++*allowed;
                      if (--*left == 0) allowed_promise.set_value(*allowed);
                    });
    }
  });
  auto f = allowed_promise.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), 100);
  EXPECT_EQ(store->stats().connects, connects_before + 1);

  // The same store from an unbound thread goes through the store's own thread and sees the
  // same state.
  auto r = test::decide(*store, "on-io-thread", {{&p, 1}});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->allowed);
  EXPECT_EQ(r->headline().remaining, 0);

  unbind_on(*store, ioc);
  work.reset();
  io.join();
}

// A batch's vectors (its items, their policy counts, their callbacks) go back to the thread when
// it is done, for the next batch: once warm, a bound thread's batches take (almost) nothing from
// the heap. What is left is the connection's queue growing by a block now and then; a batch
// that allocated its vectors again would cost three allocations, every time.
TEST_F(RedisStoreTest, AWarmThreadsBatchesReuseTheirVectors) {
  auto store = make_store(url_of(server()));
  const Policy p = make_policy("reused", 1000000);
  const std::vector<Charge> charges = {{&p, 1}};
  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  std::thread io([&] { ioc.run(); });
  constexpr int kWarmRounds = 8, kRounds = 40, kPerRound = 32;
  std::atomic<int> errors{0};
  long counted_from = 0, counted_to = 0;
  int left = 0;  // answers the running round still waits for
  std::promise<void> finished;
  // Round k: kPerRound decisions made in one handler (one batch); the last answer starts round
  // k + 1. The allocations of the counted rounds are read on this thread, between rounds.
  std::function<void(int)> round = [&](int k) {
    if (k == kWarmRounds) counted_from = count_allocations::allocations();
    if (k == kWarmRounds + kRounds) {
      counted_to = count_allocations::allocations();
      finished.set_value();
      return;
    }
    left = kPerRound;
    for (int i = 0; i < kPerRound; ++i) {
      store->decide(DecideRequest{"client-" + std::to_string(i), charges},
                    [&, k](Result<Verdict> r) {
                      if (!r) ++errors;
                      if (--left == 0) boost::asio::post(ioc, [&round, k] { round(k + 1); });
                    });
    }
  };
  boost::asio::post(ioc, [&] {
    store->bind_current_thread(ioc);
    round(0);
  });
  ASSERT_EQ(finished.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_EQ(errors.load(), 0);
  const long allocations = counted_to - counted_from;
  std::cout << allocations << " allocations in " << kRounds << " rounds of " << kPerRound
            << " decisions\n";
  // Fewer than one per batch; three or more each if the vectors were allocated again.
  EXPECT_LT(allocations, kRounds);
  unbind_on(*store, ioc);
  work.reset();
  io.join();
}

TEST_F(RedisStoreTest, DestroyingTheStoreFailsWhatWaits) {
  auto store = make_store(url_of(server()), 5s);
  const Policy p = make_policy("destroy", 100);
  ASSERT_TRUE(test::decide(*store, "z", {{&p, 1}}).has_value());
  ASSERT_EQ(::kill(server().pid(), SIGSTOP), 0);
  std::atomic<int> called{0};
  std::atomic<int> unavailable{0};
  for (int i = 0; i < 10; ++i) {
    const std::vector<Charge> charges = {{&p, 1}};
    store->decide(DecideRequest{"z", charges}, [&](Result<Verdict> r) {
      ++called;
      if (!r && r.error().code == ErrorCode::kUnavailable) ++unavailable;
    });
  }
  // Let the requests reach the socket, then destroy the store while they wait.
  testing::eventually([&] { return store->stats().commands >= 11; }, 1s);
  const auto start = std::chrono::steady_clock::now();
  store.reset();
  ::kill(server().pid(), SIGCONT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(called.load(), 10);
  EXPECT_EQ(unavailable.load(), 10);
}

}  // namespace
}  // namespace fg::redis
