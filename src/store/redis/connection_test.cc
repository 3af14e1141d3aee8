// Connection against real redis-server processes: pipelining, ordering, deadlines, failures,
// reconnection, AUTH and SELECT.
#include "store/redis/connection.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <boost/asio/write.hpp>
#include <iostream>
#include <span>
#include <vector>

#include "store/redis/redis_test_util.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;
using testing::run_until;

struct Outcome {
  bool done = false;
  Result<Reply> reply = fail(ErrorCode::kInternal, "no reply yet");
  bool sent = false;
  SteadyTime at;
};

// Sends one command and returns where its outcome will land.
std::shared_ptr<Outcome> send(Connection& c, std::initializer_list<std::string_view> argv,
                              Duration timeout = 2s) {
  auto out = std::make_shared<Outcome>();
  c.request(format_command(argv), SteadyClock::now() + timeout,
            make_reply_handler([out](int, Result<Reply> r, bool sent) {
              EXPECT_FALSE(out->done) << "completed twice";
              out->done = true;
              out->reply = std::move(r);
              out->sent = sent;
              out->at = SteadyClock::now();
            }),
            0);
  return out;
}

// Sends and runs the loop until the outcome is in.
Outcome call(boost::asio::io_context& ioc, Connection& c,
             std::initializer_list<std::string_view> argv, Duration timeout = 2s) {
  auto out = send(c, argv, timeout);
  EXPECT_TRUE(run_until(ioc, [&] { return out->done; })) << "no outcome";
  return *out;
}

ConnectionOptions options_for(const test::RedisServer& server, ConnectionCounters* counters) {
  ConnectionOptions o;
  o.host = "127.0.0.1";
  o.port = server.port();
  o.counters = counters;
  return o;
}

TEST(Connection, SetAndGet) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  auto c = Connection::make(ioc, options_for(*server, nullptr));
  Outcome set = call(ioc, *c, {"SET", "k", "v"});
  ASSERT_TRUE(set.reply.has_value()) << set.reply.error().to_string();
  EXPECT_EQ(set.reply->str, "OK");
  Outcome get = call(ioc, *c, {"GET", "k"});
  ASSERT_TRUE(get.reply.has_value());
  EXPECT_EQ(get.reply->str, "v");
  EXPECT_TRUE(get.sent);
  Outcome err = call(ioc, *c, {"NOSUCHCOMMAND"});
  ASSERT_TRUE(err.reply.has_value()) << "an error reply is a reply";
  EXPECT_TRUE(err.reply->is_error());
  EXPECT_TRUE(c->connected());
}

TEST(Connection, RepliesComeBackInRequestOrder) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  auto c = Connection::make(ioc, options_for(*server, nullptr));
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 1000; ++i) outs.push_back(send(*c, {"INCR", "counter"}));
  ASSERT_TRUE(run_until(ioc, [&] { return outs.back()->done; }));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(outs[i]->done);
    ASSERT_TRUE(outs[i]->reply.has_value());
    EXPECT_EQ(outs[i]->reply->integer, i + 1);
  }
}

TEST(Connection, ConcurrentRequestsShareWrites) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  ConnectionCounters counters;
  auto c = Connection::make(ioc, options_for(*server, &counters));
  ASSERT_TRUE(call(ioc, *c, {"PING"}).reply.has_value());
  const auto writes_before = counters.writes.load();

  // 1000 requests made together: one write for the batch made in this turn of the loop.
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 1000; ++i) outs.push_back(send(*c, {"SET", "k" + std::to_string(i), "v"}));
  ASSERT_TRUE(run_until(ioc, [&] { return outs.back()->done; }));
  const auto batch_writes = counters.writes.load() - writes_before;
  EXPECT_LE(batch_writes, 3u);
  // The depth histogram saw it: some write carried more than 256 commands (the last bucket).
  EXPECT_GE(counters.write_sizes.back().load(), 1u);

  // Requests trickling in while writes are in flight join the next write: 10 rounds of 100
  // requests, each round issued from inside the completion of the previous one's first reply.
  const auto before = counters.writes.load();
  int completed = 0;
  std::function<void(int)> round = [&](int r) {
    for (int i = 0; i < 100; ++i) {
      auto h = make_reply_handler([&, r, i](int, Result<Reply> reply, bool) {
        EXPECT_TRUE(reply.has_value());
        ++completed;
        if (i == 0 && r + 1 < 10) round(r + 1);
      });
      c->request(format_command({"INCR", "n"}), SteadyClock::now() + 5s, h, 0);
    }
  };
  round(0);
  ASSERT_TRUE(run_until(ioc, [&] { return completed == 1000; }));
  const auto writes = counters.writes.load() - before;
  std::cout << "1000 requests in 10 rounds took " << writes << " writes\n";
  EXPECT_LE(writes, 30u);
  EXPECT_GE(counters.commands.load(), 2001u);
  // Every write is in exactly one bucket; every command was written.
  std::uint64_t bucketed = 0;
  for (const auto& b : counters.write_sizes) bucketed += b.load();
  EXPECT_EQ(bucketed, counters.writes.load());
  EXPECT_EQ(counters.written_commands.load(), counters.commands.load());
}

TEST(Connection, WriteSizeBuckets) {
  EXPECT_EQ(write_size_bucket(1), 0u);
  EXPECT_EQ(write_size_bucket(2), 1u);
  EXPECT_EQ(write_size_bucket(3), 2u);
  EXPECT_EQ(write_size_bucket(4), 2u);
  EXPECT_EQ(write_size_bucket(5), 3u);
  EXPECT_EQ(write_size_bucket(256), 8u);
  EXPECT_EQ(write_size_bucket(257), 9u);
  EXPECT_EQ(write_size_bucket(100000), kWriteSizeBuckets - 1);
}

TEST(Connection, ADeadlinePassesWhileTheServerIsStopped) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  ConnectionCounters counters;
  auto c = Connection::make(ioc, options_for(*server, &counters));
  ASSERT_TRUE(call(ioc, *c, {"SET", "x", "before"}).reply.has_value());

  ASSERT_EQ(::kill(server->pid(), SIGSTOP), 0);
  const SteadyTime start = SteadyClock::now();
  auto late = send(*c, {"SET", "x", "during"}, 50ms);
  auto later = send(*c, {"GET", "x"}, 80ms);
  ASSERT_TRUE(run_until(
      ioc, [&] { return late->done && later->done; }, 5s));
  ::kill(server->pid(), SIGCONT);
  ASSERT_FALSE(late->reply.has_value());
  EXPECT_EQ(late->reply.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(late->sent);
  EXPECT_GE(late->at - start, 50ms);
  EXPECT_LT(late->at - start, 300ms) << "a deadline is kept to within a few milliseconds";
  EXPECT_EQ(later->reply.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_GE(later->at - start, 80ms);
  EXPECT_EQ(counters.timeouts.load(), 2u);

  // The late replies arrive now and are discarded in order: the next reply is the next one's.
  Outcome get = call(ioc, *c, {"GET", "x"});
  ASSERT_TRUE(get.reply.has_value()) << get.reply.error().to_string();
  EXPECT_EQ(get.reply->str, "during");  // the SET ran; only its answer came too late
  EXPECT_TRUE(c->connected());
}

TEST(Connection, ADeadlinePassesDuringDebugSleep) {
  test::RedisServerOptions options;
  options.extra_args = {"--enable-debug-command", "yes"};
  FG_START_REDIS(server, options);
  boost::asio::io_context ioc;
  auto sleeper = Connection::make(ioc, options_for(*server, nullptr));
  auto c = Connection::make(ioc, options_for(*server, nullptr));
  ASSERT_TRUE(call(ioc, *c, {"SET", "y", "1"}).reply.has_value());
  ASSERT_TRUE(call(ioc, *sleeper, {"PING"}).reply.has_value());

  auto sleep = send(*sleeper, {"DEBUG", "SLEEP", "0.4"}, 5s);
  // Let the sleep reach the server first.
  run_until(
      ioc, [] { return false; }, 20ms);
  const SteadyTime start = SteadyClock::now();
  auto get = send(*c, {"GET", "y"}, 30ms);
  ASSERT_TRUE(run_until(
      ioc, [&] { return get->done; }, 5s));
  EXPECT_EQ(get->reply.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_LT(get->at - start, 250ms);
  ASSERT_TRUE(run_until(
      ioc, [&] { return sleep->done; }, 5s));
  EXPECT_TRUE(sleep->reply.has_value());
  Outcome set = call(ioc, *c, {"INCR", "y"});
  ASSERT_TRUE(set.reply.has_value());
  EXPECT_EQ(set.reply->integer, 2);
}

TEST(Connection, ARefusedConnectionFailsFastAsUnavailable) {
  boost::asio::io_context ioc;
  ConnectionOptions o;
  o.host = "127.0.0.1";
  o.port = test::free_port();  // nothing listens there
  auto c = Connection::make(ioc, o);
  const SteadyTime start = SteadyClock::now();
  Outcome first = call(ioc, *c, {"PING"}, 5s);
  ASSERT_FALSE(first.reply.has_value());
  EXPECT_EQ(first.reply.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(first.sent);
  EXPECT_NE(first.reply.error().message.find("refused"), std::string::npos)
      << first.reply.error().message;
  EXPECT_LT(first.at - start, 100ms);
  // While backing off, requests fail at once.
  for (int i = 0; i < 3; ++i) {
    Outcome again = call(ioc, *c, {"PING"}, 5s);
    EXPECT_EQ(again.reply.error().code, ErrorCode::kUnavailable);
  }
  EXPECT_LT(SteadyClock::now() - start, 200ms);
}

TEST(Connection, ReconnectsAfterTheServerRestarts) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  ConnectionCounters counters;
  auto c = Connection::make(ioc, options_for(*server, &counters));
  ASSERT_TRUE(call(ioc, *c, {"SET", "a", "1"}).reply.has_value());
  int lost = 0;
  c->on_lost = [&](const Error&) { ++lost; };

  server->kill();
  Outcome down = call(ioc, *c, {"GET", "a"});
  ASSERT_FALSE(down.reply.has_value());
  EXPECT_EQ(down.reply.error().code, ErrorCode::kUnavailable);
  EXPECT_GE(lost, 1);

  std::string why;
  ASSERT_TRUE(server->restart(&why)) << why;
  bool back = false;
  const SteadyTime deadline = SteadyClock::now() + 10s;
  while (!back && SteadyClock::now() < deadline) {
    Outcome o = call(ioc, *c, {"SET", "a", "2"});
    back = o.reply.has_value() && o.reply->str == "OK";
    if (!back)
      run_until(
          ioc, [] { return false; }, 10ms);
  }
  EXPECT_TRUE(back);
  EXPECT_EQ(counters.connects.load(), 2u);
  EXPECT_EQ(counters.reconnects.load(), 1u);  // the second connect, not the first
  EXPECT_GE(counters.disconnects.load(), 1u);
}

TEST(Connection, ASilentServerIsDroppedAfterTheStallTimeout) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  ConnectionCounters counters;
  auto o = options_for(*server, &counters);
  o.stall_timeout = 200ms;
  auto c = Connection::make(ioc, o);
  ASSERT_TRUE(call(ioc, *c, {"PING"}).reply.has_value());
  ASSERT_EQ(::kill(server->pid(), SIGSTOP), 0);
  auto out = send(*c, {"PING"}, 50ms);
  const bool dropped = run_until(
      ioc, [&] { return counters.disconnects.load() == 1; }, 3s);
  ::kill(server->pid(), SIGCONT);
  EXPECT_TRUE(dropped);
  EXPECT_EQ(out->reply.error().code, ErrorCode::kDeadlineExceeded);
  // And it comes back.
  Outcome again = call(ioc, *c, {"PING"});
  ASSERT_TRUE(again.reply.has_value()) << again.reply.error().to_string();
  EXPECT_EQ(again.reply->str, "PONG");
}

TEST(Connection, AuthenticatesWithThePassword) {
  test::RedisServerOptions options;
  options.requirepass = "s3cret";
  FG_START_REDIS(server, options);
  boost::asio::io_context ioc;

  auto without = Connection::make(ioc, options_for(*server, nullptr));
  Outcome denied = call(ioc, *without, {"GET", "k"});
  ASSERT_TRUE(denied.reply.has_value());
  EXPECT_TRUE(denied.reply->starts_with("NOAUTH")) << describe(*denied.reply);

  auto o = options_for(*server, nullptr);
  o.password = "s3cret";
  auto with = Connection::make(ioc, o);
  Outcome ok = call(ioc, *with, {"SET", "k", "v"});
  ASSERT_TRUE(ok.reply.has_value()) << ok.reply.error().to_string();
  EXPECT_EQ(ok.reply->str, "OK");

  o.password = "wrong";
  auto wrong = Connection::make(ioc, o);
  Outcome refused = call(ioc, *wrong, {"GET", "k"});
  ASSERT_FALSE(refused.reply.has_value());
  EXPECT_EQ(refused.reply.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(refused.reply.error().message.find("AUTH"), std::string::npos)
      << refused.reply.error().message;
}

TEST(Connection, AuthenticatesAsAnAclUser) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  ASSERT_FALSE(
      server->command({"ACL", "SETUSER", "limiter", "on", ">pa:ss@word", "~*", "&*", "+@all"})
          .is_error);
  boost::asio::io_context ioc;
  auto o = options_for(*server, nullptr);
  o.user = "limiter";
  o.password = "pa:ss@word";
  auto c = Connection::make(ioc, o);
  Outcome who = call(ioc, *c, {"ACL", "WHOAMI"});
  ASSERT_TRUE(who.reply.has_value()) << who.reply.error().to_string();
  EXPECT_EQ(who.reply->str, "limiter");

  o.password = "nope";
  auto wrong = Connection::make(ioc, o);
  Outcome refused = call(ioc, *wrong, {"PING"});
  ASSERT_FALSE(refused.reply.has_value());
  EXPECT_NE(refused.reply.error().message.find("WRONGPASS"), std::string::npos)
      << refused.reply.error().message;
}

TEST(Connection, SelectsTheDatabase) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  auto o = options_for(*server, nullptr);
  o.db = 3;
  auto db3 = Connection::make(ioc, o);
  auto db0 = Connection::make(ioc, options_for(*server, nullptr));
  ASSERT_TRUE(call(ioc, *db3, {"SET", "only-in-3", "yes"}).reply.has_value());
  Outcome in0 = call(ioc, *db0, {"GET", "only-in-3"});
  ASSERT_TRUE(in0.reply.has_value());
  EXPECT_EQ(in0.reply->type, Reply::Type::kNil);
  Outcome in3 = call(ioc, *db3, {"GET", "only-in-3"});
  EXPECT_EQ(in3.reply->str, "yes");
  EXPECT_EQ(server->command({"DBSIZE"}).integer, 0);  // the admin client is on db 0

  o.db = 99;  // beyond `databases 16`
  auto bad = Connection::make(ioc, o);
  Outcome refused = call(ioc, *bad, {"PING"});
  ASSERT_FALSE(refused.reply.has_value());
  EXPECT_NE(refused.reply.error().message.find("SELECT"), std::string::npos);
}

TEST(Connection, InitCommandsRunFirstAndTheirErrorsAreKept) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  auto o = options_for(*server, nullptr);
  o.init_commands = {format_command({"SET", "init", "done"}), format_command({"BOGUS"})};
  auto c = Connection::make(ioc, o);
  Outcome get = call(ioc, *c, {"GET", "init"});
  ASSERT_TRUE(get.reply.has_value()) << get.reply.error().to_string();
  EXPECT_EQ(get.reply->str, "done");
  EXPECT_NE(c->last_init_error().find("unknown command"), std::string::npos);
}

// Records how each reply came: as integers (on_integers) or as a Reply (on_reply), by tag.
struct Recorder final : ReplyHandler {
  struct Got {
    int tag = 0;
    bool as_integers = false;
    std::vector<std::int64_t> values;
    Result<Reply> reply = fail(ErrorCode::kInternal, "none");
  };
  void on_reply(int tag, Result<Reply> reply, bool) override {
    got.push_back(Got{tag, false, {}, std::move(reply)});
  }
  void on_integers(int tag, std::span<const std::int64_t> values, bool sent) override {
    EXPECT_TRUE(sent);
    got.push_back(Got{tag, true, {values.begin(), values.end()}, fail(ErrorCode::kInternal, "")});
  }
  std::vector<Got> got;
};

TEST(Connection, AFlatIntegerArrayComesAsItsValuesAndAnythingElseAsAReply) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  auto c = Connection::make(ioc, options_for(*server, nullptr));
  auto recorder = std::make_shared<Recorder>();
  const SteadyTime deadline = SteadyClock::now() + 2s;
  c->request(format_command({"EVAL", "return {1700000000123456, 1, -3}", "0"}), deadline, recorder, 1);
  c->request(format_command({"EVAL", "return redis.error_reply('NOSCRIPT gone')", "0"}), deadline,
             recorder, 2);
  c->request(format_command({"EVAL", "return {1, 'x', 2}", "0"}), deadline, recorder, 3);
  c->request(format_command({"EVAL", "return {1, {2, 3}}", "0"}), deadline, recorder, 4);
  c->request(format_command({"EVAL", "return {}", "0"}), deadline, recorder, 5);
  c->request(format_command({"EVAL", "return 7", "0"}), deadline, recorder, 6);
  c->request(format_command({"EVAL", "return {4, 5}", "0"}), deadline, recorder, 7);
  ASSERT_TRUE(run_until(ioc, [&] { return recorder->got.size() == 7; }));
  const auto& got = recorder->got;
  for (int i = 0; i < 7; ++i) EXPECT_EQ(got[i].tag, i + 1) << "in request order";
  EXPECT_TRUE(got[0].as_integers);
  EXPECT_EQ(got[0].values, (std::vector<std::int64_t>{1700000000123456, 1, -3}));
  ASSERT_FALSE(got[1].as_integers);
  ASSERT_TRUE(got[1].reply.has_value());
  EXPECT_TRUE(got[1].reply->is_error());
  EXPECT_EQ(got[1].reply->str, "NOSCRIPT gone");
  ASSERT_FALSE(got[2].as_integers);
  EXPECT_EQ(describe(*got[2].reply), "[(integer) 1, \"x\", (integer) 2]");
  ASSERT_FALSE(got[3].as_integers);
  EXPECT_EQ(describe(*got[3].reply), "[(integer) 1, [(integer) 2, (integer) 3]]");
  EXPECT_TRUE(got[4].as_integers);
  EXPECT_TRUE(got[4].values.empty());
  ASSERT_FALSE(got[5].as_integers);
  EXPECT_EQ(got[5].reply->integer, 7);
  EXPECT_TRUE(got[6].as_integers);
  EXPECT_EQ(got[6].values, (std::vector<std::int64_t>{4, 5}));

  // A handler that reads Replies only gets an integer array as a Reply, as before.
  Outcome plain = call(ioc, *c, {"EVAL", "return {8, 9}", "0"});
  ASSERT_TRUE(plain.reply.has_value());
  EXPECT_EQ(describe(*plain.reply), "[(integer) 8, (integer) 9]");
}

// A server that answers each read with the same bytes, whatever was asked: for what Redis never
// sends.
class CannedServer {
 public:
  CannedServer(boost::asio::io_context& ioc, std::string answer)
      : acceptor_(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0}), answer_(std::move(answer)) {
    accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  using Socket = boost::asio::ip::tcp::socket;
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, Socket s) {
      if (ec) return;
      serve(std::make_shared<Socket>(std::move(s)));
      accept();
    });
  }
  void serve(std::shared_ptr<Socket> s) {
    auto buffer = std::make_shared<std::array<char, 4096>>();
    s->async_read_some(boost::asio::buffer(*buffer),
                       [this, s, buffer](boost::system::error_code ec, std::size_t) {
                         if (ec) return;
                         boost::asio::async_write(
                             *s, boost::asio::buffer(answer_),
                             [this, s](boost::system::error_code ec2, std::size_t) {
                               if (!ec2) serve(s);
                             });
                       });
  }
  boost::asio::ip::tcp::acceptor acceptor_;
  std::string answer_;
};

TEST(Connection, AProtocolErrorInsideAnIntegerArrayDropsTheConnection) {
  boost::asio::io_context ioc;
  CannedServer server(ioc, "*3\r\n:1\r\n:2\r\n?garbage\r\n");
  ConnectionCounters counters;
  ConnectionOptions o;
  o.host = "127.0.0.1";
  o.port = server.port();
  o.counters = &counters;
  auto c = Connection::make(ioc, o);
  auto recorder = std::make_shared<Recorder>();
  c->request(format_command({"FCALL", "f", "0"}), SteadyClock::now() + 2s, recorder, 1);
  ASSERT_TRUE(run_until(ioc, [&] { return recorder->got.size() == 1; }));
  const auto& got = recorder->got[0];
  ASSERT_FALSE(got.as_integers);
  ASSERT_FALSE(got.reply.has_value()) << "no reply made up from the integers before the garbage";
  EXPECT_EQ(got.reply.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(got.reply.error().message.find("protocol error"), std::string::npos)
      << got.reply.error().message;
  EXPECT_EQ(counters.disconnects.load(), 1u);
}

TEST(Connection, CloseFailsWhatWaitsAndRefusesMore) {
  FG_START_REDIS(server, test::RedisServerOptions{});
  boost::asio::io_context ioc;
  auto c = Connection::make(ioc, options_for(*server, nullptr));
  auto waiting = send(*c, {"PING"});
  c->close();
  EXPECT_TRUE(waiting->done);
  EXPECT_EQ(waiting->reply.error().code, ErrorCode::kUnavailable);
  Outcome after = call(ioc, *c, {"PING"});
  EXPECT_EQ(after.reply.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace fg::redis
