// Every case of tests/vectors/*.yaml against the Redis function library on a real redis-server,
// side by side with the C++ core: the YAML's expectations must hold, every decision must equal
// the core's field for field, and every state written must be the core's state, to the integer,
// with a PX matching its ttl. Time is fixed through the function's now_us argument.
//
// Each case runs through every way in: fg_decide_v3 with one item, fg_decide_v3 with the case's
// item between two unrelated ones, the same with every state rewritten in floodgate_v2's text
// form before each step (v3 reads both), and the compat fg_decide_v2 / fg_refund_v2 that
// instances of the release before call.
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
#include "test_policy.h"
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

// A state as decide.lua writes it (a version byte 3, then a, b, c little-endian int64), as
// state_text; anything else is returned as it is (so a mismatch shows the bytes).
std::string stored_text(const std::string& v) {
  if (v.size() != 25 || v[0] != 3) return v;
  std::int64_t x[3];
  for (int i = 0; i < 3; ++i) {
    std::uint64_t u = 0;
    for (int j = 7; j >= 0; --j) u = (u << 8) | static_cast<unsigned char>(v[1 + 8 * i + j]);
    x[i] = static_cast<std::int64_t>(u);
  }
  return state_text(State{x[0], x[1], x[2]});
}

// The arguments of one RESP command (as the store would send it), for the admin client.
std::vector<std::string> argv_of(const std::string& resp) {
  redis::RespReader reader;
  std::vector<std::string> argv;
  if (!reader.feed(resp)) return argv;
  auto parsed = reader.next();
  if (!parsed || !parsed->has_value()) return argv;
  for (const redis::Reply& e : (**parsed).elements) argv.push_back(e.str);
  return argv;
}

enum class Way { kV3Single, kV3Batch, kV3FromText, kV2Compat };

std::string way_name(Way w) {
  switch (w) {
    case Way::kV3Single:
      return "fg_decide_v3, one item";
    case Way::kV3Batch:
      return "fg_decide_v3, among other items";
    case Way::kV3FromText:
      return "fg_decide_v3 on text states";
    case Way::kV2Compat:
      return "fg_decide_v2 (compat)";
  }
  return "?";
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
  // The unrelated items around a case's in kV3Batch: a fixed window no case reaches.
  const Policy filler_policy = test::make_policy(
      "filler", 1000000, {.algorithm = Algorithm::kFixedWindow, .period = std::chrono::hours(1)});
  const std::vector<Charge> filler = {{&filler_policy, 1}};
  int case_number = 0;
  for (const Way way : {Way::kV3Single, Way::kV3Batch, Way::kV3FromText, Way::kV2Compat}) {
    SCOPED_TRACE(way_name(way));
    for (const VectorCase& vc : cases) {
      SCOPED_TRACE(vc.file + ": " + vc.name);
      const std::string identity = "case-" + std::to_string(case_number++);
      const bool v2 = way == Way::kV2Compat;
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
        if (way == Way::kV3FromText) {
          // Every state in floodgate_v2's text form, as an instance of the release before left it.
          for (const auto& [index, stored] : core_states) {
            server_->command({"SET", keys[index], state_text(stored.state)});
          }
        }

        // The core, as a store runs it.
        std::vector<std::optional<State>> states(charges.size());
        for (std::size_t i = 0; i < charges.size(); ++i) {
          auto it = core_states.find(i);
          if (it != core_states.end() && it->second.expires_us > now_us)
            states[i] = it->second.state;
        }
        if (step.refund_of) {
          const Verdict& refunded = verdicts[*step.refund_of];
          ASSERT_TRUE(refunded.allowed) << where << ": refund of a denial";
          const RefundRequest request{identity, charges, refunded.decided_at, refunded.decisions};
          std::vector<Charge> given = charges;
          for (std::size_t i = 0; i < given.size(); ++i) given[i].cost = refund_cost(request, i);
          const auto writes = plan_refund(given, states, refunded.decided_at, from_us(now_us));
          std::vector<std::string> argv = {
              "FCALL", std::string(v2 ? redis::kRefundFunctionV2 : redis::kRefundFunction),
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
            EXPECT_EQ(stored_text(got.elements[0].str), state_text(w.state)) << where << " " << key;
            EXPECT_EQ(got.elements[0].str.size(), 25u) << where << ": not written packed";
            EXPECT_LE(pttl, ttl_ms) << where;
            EXPECT_GE(pttl, ttl_ms - 1000) << where;
          }
          verdicts.emplace_back();
          continue;
        }
        const Evaluation core = evaluate(charges, states, from_us(now_us));

        // The script.
        std::optional<Verdict> verdict;
        if (v2) {
          std::vector<std::string> argv = {"FCALL", std::string(redis::kDecideFunctionV2),
                                           std::to_string(keys.size())};
          argv.insert(argv.end(), keys.begin(), keys.end());
          for (auto& a : redis::encode_decide_v2_args(charges, std::to_string(now_us))) {
            argv.push_back(std::move(a));
          }
          const AdminReply raw = server_->command(argv);
          ASSERT_FALSE(raw.is_error) << where << ": " << raw.str;
          auto parsed = redis::parse_decide_v2_reply(to_reply(raw), charges.size());
          ASSERT_TRUE(parsed.has_value()) << where << ": " << parsed.error().to_string();
          verdict = *parsed;
        } else {
          const redis::EncodedDecision mine =
              redis::encode_decision("fgtest", redis::TagKey{}, identity, charges);
          const redis::EncodedDecision other =
              redis::encode_decision("fgtest", redis::TagKey{}, identity + "-filler", filler);
          std::vector<const redis::EncodedDecision*> items = {&mine};
          std::vector<std::size_t> policies = {charges.size()};
          std::size_t at = 0;
          if (way == Way::kV3Batch) {
            items = {&other, &mine, &other};
            policies = {1, charges.size(), 1};
            at = 1;
          }
          std::string command;
          redis::append_decide_batch(command, items, std::to_string(now_us));
          const AdminReply raw = server_->command(argv_of(command));
          ASSERT_FALSE(raw.is_error) << where << ": " << raw.str;
          auto parsed = redis::parse_decide_batch_reply(to_reply(raw), policies);
          ASSERT_TRUE(parsed.has_value()) << where << ": " << parsed.error().to_string();
          verdict = (*parsed)[at];
        }

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
          EXPECT_EQ(stored_text(got.elements[0].str), state_text(w.state)) << where << " " << key;
          EXPECT_EQ(got.elements[0].str.size(), 25u) << where << ": not written packed";
          EXPECT_NE(pttl, -1) << where << ": " << key << " was written without a ttl";
          EXPECT_GE(pttl, 0) << where << ": " << key << " was not written";
          EXPECT_LE(pttl, ttl_ms) << where;
          EXPECT_GE(pttl, ttl_ms - 1000) << where;
        }
        if (core.writes.empty()) {
          // Nothing consumed: the script must not have written either (checked through the
          // states, which stay what the core holds).
          for (const auto& [index, stored] : core_states) {
            EXPECT_EQ(stored_text(server_->command({"GET", keys[index]}).str),
                      state_text(stored.state))
                << where;
          }
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
  for (std::string_view f : {redis::kDecideFunction, redis::kDecideFunctionV2}) {
    SCOPED_TRACE(f);
    // v2's arguments with an unknown algorithm, then with n = 2 for one key: malformed for both.
    EXPECT_TRUE(
        server_->command({"FCALL", std::string(f), "1", "k", "", "1", "9", "1", "0", "1", "1", "1"})
            .is_error);
    EXPECT_TRUE(
        server_->command({"FCALL", std::string(f), "1", "k", "", "2", "1", "1", "0", "1", "1", "1"})
            .is_error);
  }
  // A batch whose second item is malformed fails whole, before the first consumes anything.
  const AdminReply batch = server_->command({"FCALL",   std::string(redis::kDecideFunction),
                                             "2",       "k1",
                                             "k2",      "",
                                             "2",       "1",
                                             "4",       "1",
                                             "0",       "5",
                                             "1000000", "0",
                                             "1",       "7",
                                             "1",       "0",
                                             "5",       "1000000",
                                             "0"});
  EXPECT_TRUE(batch.is_error);
  EXPECT_TRUE(server_->command({"GET", "k1"}).is_nil);
}

TEST_F(LuaVectors, RefusesMalformedArgumentsV2Only) {
  const AdminReply r = server_->command({"FCALL", std::string(redis::kDecideFunctionV2), "1", "k",
                                         "", "1", "9", "1", "0", "1", "1", "1"});
  EXPECT_TRUE(r.is_error);
  const AdminReply n = server_->command({"FCALL", std::string(redis::kDecideFunctionV2), "1", "k",
                                         "", "2", "1", "1", "0", "1", "1", "1"});
  EXPECT_TRUE(n.is_error);
}

}  // namespace
}  // namespace fg::test
