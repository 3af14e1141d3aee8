// Every case of tests/vectors/*.yaml against the Redis function library on a real redis-server,
// side by side with the C++ core: the YAML's expectations must hold, every decision must equal
// the core's field for field, and every state written must be the core's state, to the integer,
// with a PX matching its ttl. Time is fixed through the function's now_us argument.
//
// Real time would otherwise expire keys between steps while the replayed clock stands still; so
// after checking each written key's PTTL the test PERSISTs it. That changes no decision: a state
// kept past its ttl decides exactly like no state (docs/algorithms.md), which the comparison
// with the core, which does drop expired states, checks too.
#include <gtest/gtest.h>

#include <map>

#include "fixtures/redis_server.h"
#include "floodgate/limiter.h"
#include "floodgate/store.h"
#include "store/redis/keys.h"
#include "store/redis/resp.h"
#include "store/redis/script.h"
#include "time_scale.h"
#include "vectors.h"

namespace fg::test {
namespace {

redis::Reply to_reply(const AdminReply& a) {
  redis::Reply r;
  if (a.is_error) {
    r.type = redis::Reply::Type::kError;
    r.str = a.str;
  } else if (a.is_nil) {
    r.type = redis::Reply::Type::kNil;
  } else if (!a.elements.empty()) {
    r.type = redis::Reply::Type::kArray;
    for (const auto& e : a.elements) r.elements.push_back(to_reply(e));
  } else {
    r.type = redis::Reply::Type::kInteger;
    r.integer = a.integer;
  }
  return r;
}

std::string state_text(const State& s) {
  return std::to_string(s.a) + ":" + std::to_string(s.b) + ":" + std::to_string(s.c);
}

class LuaVectors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    server_ = RedisServer::start({}, &why);
    if (!server_) {
      if (!RedisServer::installed()) FG_MISSING_TOOL(why);
      FAIL() << "redis-server did not start: " << why;
    }
    const AdminReply loaded =
        server_->command({"FUNCTION", "LOAD", "REPLACE", redis::library_code()});
    ASSERT_FALSE(loaded.is_error) << loaded.str;
  }
  std::unique_ptr<RedisServer> server_;
};

TEST_F(LuaVectors, ScriptAgreesWithTheCoreOnEveryCase) {
  const auto cases = load_all_vectors();
  ASSERT_GT(cases.size(), 20u);
  int case_number = 0;
  for (const VectorCase& vc : cases) {
    SCOPED_TRACE(vc.file + ": " + vc.name);
    const std::string identity = "case-" + std::to_string(case_number++);
    std::vector<Charge> charges;
    std::vector<std::string> keys;
    for (const Policy& p : vc.policies) {
      charges.push_back(Charge{&p, 1});
      keys.push_back(redis::make_key("fgtest", redis::TagKey{}, identity, p.name));
    }
    struct Stored {
      State state;
      std::int64_t expires_us;
    };
    std::map<std::size_t, Stored> core_states;
    std::vector<Verdict> verdicts;  // the script's, per step (empty for a refund step)
    for (const VectorStep& step : vc.steps) {
      const std::string where = vc.file + ":" + std::to_string(step.line);
      const std::int64_t now_us = kVectorEpochUs + step.at_us;
      for (auto& c : charges) c.cost = step.cost;

      // The core, as a store runs it.
      std::vector<std::optional<State>> states(charges.size());
      for (std::size_t i = 0; i < charges.size(); ++i) {
        auto it = core_states.find(i);
        if (it != core_states.end() && it->second.expires_us > now_us) states[i] = it->second.state;
      }
      if (step.refund_of) {
        const Verdict& refunded = verdicts[*step.refund_of];
        ASSERT_TRUE(refunded.allowed) << where << ": refund of a denial";
        const RefundRequest request{identity, charges, refunded.decided_at, refunded.decisions};
        std::vector<Charge> given = charges;
        for (std::size_t i = 0; i < given.size(); ++i) given[i].cost = refund_cost(request, i);
        const auto writes = plan_refund(given, states, refunded.decided_at, from_us(now_us));
        std::vector<std::string> argv = {"FCALL", std::string(redis::kRefundFunction),
                                         std::to_string(keys.size())};
        argv.insert(argv.end(), keys.begin(), keys.end());
        for (auto& a : redis::encode_refund_args(request, std::to_string(now_us))) {
          argv.push_back(std::move(a));
        }
        const AdminReply raw = server_->command(argv);
        ASSERT_FALSE(raw.is_error) << where << ": " << raw.str;
        EXPECT_EQ(raw.integer, static_cast<long long>(writes.size())) << where;
        for (const StateWrite& w : writes) {
          const std::string& key = keys[w.index];
          if (w.ttl.count() == 0) {
            core_states.erase(w.index);
            EXPECT_EQ(server_->command({"EXISTS", key}).integer, 0) << where << ": " << key;
            continue;
          }
          core_states[w.index] = Stored{w.state, now_us + w.ttl.count()};
          const AdminReply got = server_->command(
              {"EVAL",
               "local v = redis.call('GET', KEYS[1]) local t = redis.call('PTTL', KEYS[1]) "
               "redis.call('PERSIST', KEYS[1]) return {v or '', t}",
               "1", key});
          ASSERT_EQ(got.elements.size(), 2u) << where;
          const long long ttl_ms = (w.ttl.count() + 999) / 1000;
          const long long pttl = got.elements[1].integer;
          if (pttl == -2 && ttl_ms <= 5 * test::time_scale()) {
            server_->command({"SET", key, state_text(w.state)});
            continue;
          }
          EXPECT_EQ(got.elements[0].str, state_text(w.state)) << where << " " << key;
          EXPECT_LE(pttl, ttl_ms) << where;
          EXPECT_GE(pttl, ttl_ms - 1000) << where;
        }
        verdicts.emplace_back();
        continue;
      }
      const Evaluation core = evaluate(charges, states, from_us(now_us));

      // The script.
      std::vector<std::string> argv = {"FCALL", std::string(redis::kDecideFunction),
                                       std::to_string(keys.size())};
      argv.insert(argv.end(), keys.begin(), keys.end());
      for (auto& a : redis::encode_decide_args(charges, std::to_string(now_us))) {
        argv.push_back(std::move(a));
      }
      const AdminReply raw = server_->command(argv);
      ASSERT_FALSE(raw.is_error) << where << ": " << raw.str;
      auto verdict = redis::parse_decide_reply(to_reply(raw), charges.size());
      ASSERT_TRUE(verdict.has_value()) << where << ": " << verdict.error().to_string();

      EXPECT_EQ(compare(step, *verdict), "") << where << " (script)";
      EXPECT_EQ(verdict->allowed, core.verdict.allowed) << where;
      EXPECT_EQ(verdict->most_restrictive, core.verdict.most_restrictive) << where;
      EXPECT_EQ(verdict->decisions, core.verdict.decisions) << where;
      EXPECT_EQ(verdict->decided_at, from_us(now_us)) << where;
      verdicts.push_back(*verdict);

      for (const StateWrite& w : core.writes) {
        core_states[w.index] = Stored{w.state, now_us + w.ttl.count()};
        const std::string& key = keys[w.index];
        // Value, PTTL and PERSIST in one atomic step.
        const AdminReply got = server_->command(
            {"EVAL",
             "local v = redis.call('GET', KEYS[1]) local t = redis.call('PTTL', KEYS[1]) "
             "redis.call('PERSIST', KEYS[1]) return {v or '', t}",
             "1", key});
        ASSERT_EQ(got.elements.size(), 2u) << where;
        const long long ttl_ms = (w.ttl.count() + 999) / 1000;
        const long long pttl = got.elements[1].integer;
        if (pttl == -2 && ttl_ms <= 5 * test::time_scale()) {
          // A PX of a few ms can pass in real time between two commands (more of them in a
          // sanitizer build); put the state back (a state past its ttl decides like no state,
          // so this changes no decision).
          server_->command({"SET", key, state_text(w.state)});
          continue;
        }
        EXPECT_EQ(got.elements[0].str, state_text(w.state)) << where << " " << key;
        EXPECT_NE(pttl, -1) << where << ": " << key << " was written without a ttl";
        EXPECT_GE(pttl, 0) << where << ": " << key << " was not written";
        EXPECT_LE(pttl, ttl_ms) << where;
        EXPECT_GE(pttl, ttl_ms - 1000) << where;
      }
      if (core.writes.empty()) {
        // Nothing consumed: the script must not have written either (checked through the
        // states, which stay what the core holds).
        for (const auto& [index, stored] : core_states) {
          EXPECT_EQ(server_->command({"GET", keys[index]}).str, state_text(stored.state)) << where;
        }
      }
    }
  }
}

TEST_F(LuaVectors, RefundRefusesMalformedArguments) {
  // consumed_at missing: n read as consumed_at, the count then wrong.
  EXPECT_TRUE(server_
                  ->command({"FCALL", std::string(redis::kRefundFunction), "1", "k", "", "1", "1",
                             "1", "0", "1", "1", "1"})
                  .is_error);
  // Unknown algorithm.
  EXPECT_TRUE(server_
                  ->command({"FCALL", std::string(redis::kRefundFunction), "1", "k", "", "5", "1",
                             "9", "1", "0", "1", "1", "1"})
                  .is_error);
}

TEST_F(LuaVectors, RefusesMalformedArguments) {
  const AdminReply r = server_->command({"FCALL", std::string(redis::kDecideFunction), "1", "k", "",
                                         "1", "9", "1", "0", "1", "1", "1"});
  EXPECT_TRUE(r.is_error);
  const AdminReply n = server_->command({"FCALL", std::string(redis::kDecideFunction), "1", "k", "",
                                         "2", "1", "1", "0", "1", "1", "1"});
  EXPECT_TRUE(n.is_error);
}

}  // namespace
}  // namespace fg::test
