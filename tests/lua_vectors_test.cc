// Every case of tests/vectors/*.yaml against the Redis function library on a real redis-server,
// side by side with the C++ core: the YAML's expectations must hold, every decision must equal
// the core's field for field, and every state written must be the core's state, to the integer,
// kept until its ttl has passed and not much longer (decide.lua's header: the expiry a state
// records). Time is fixed through the function's now_us argument.
//
// Each case runs through every way in: fg_decide_v4 with one item, fg_decide_v4 with the case's
// item between two unrelated ones, the same with every state rewritten before each step in
// floodgate_v2's text form and in the version 3 form of earlier builds (all three are read),
// and the compat fg_decide_v3 (a batch, as floodgate_v3 instances send it) and fg_decide_v2 /
// fg_refund_v2 that instances of the releases before call.
//
// Real time would otherwise expire keys between steps while the replayed clock stands still; so
// after checking each written key's value and PTTL the test PERSISTs it (a later write that
// keeps the expiry leaves it so). That changes no decision: a state kept past its ttl decides
// exactly like no state (docs/algorithms.md), which the comparison with the core, which does
// drop expired states, checks too.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "fixtures/redis_server.h"
#include "core/algorithms.h"
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

// The little-endian int64 at v[at ..].
std::int64_t int64_at(const std::string& v, std::size_t at) {
  std::uint64_t u = 0;
  for (int j = 7; j >= 0; --j) u = (u << 8) | static_cast<unsigned char>(v[at + j]);
  return static_cast<std::int64_t>(u);
}

// A state as decide.lua writes it (a version byte 4, then a, b, c and the expiry in ms,
// little-endian int64; or version 3 without the expiry), as state_text; anything else is
// returned as it is (so a mismatch shows the bytes).
std::string stored_text(const std::string& v) {
  if ((v.size() != 33 || v[0] != 4) && (v.size() != 25 || v[0] != 3)) return v;
  return state_text(State{int64_at(v, 1), int64_at(v, 9), int64_at(v, 17)});
}

// The expiry (ms on the decision clock) a version 4 state records; -1 for any other value.
std::int64_t stored_expires_ms(const std::string& v) {
  if (v.size() != 33 || v[0] != 4) return -1;
  return int64_at(v, 25);
}

// A state in the version 3 form: a version byte 3, then a, b, c little-endian int64.
std::string version3_bytes(const State& s) {
  std::string v(1, '\x03');
  for (const std::int64_t x : {s.a, s.b, s.c}) {
    auto u = static_cast<std::uint64_t>(x);
    for (int j = 0; j < 8; ++j, u >>= 8) v.push_back(static_cast<char>(u & 0xff));
  }
  return v;
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

enum class Way { kV4Single, kV4Batch, kV4FromText, kV4FromVersion3, kV3Compat, kV2Compat };

std::string way_name(Way w) {
  switch (w) {
    case Way::kV4Single:
      return "fg_decide_v4, one item";
    case Way::kV4Batch:
      return "fg_decide_v4, among other items";
    case Way::kV4FromText:
      return "fg_decide_v4 on text states";
    case Way::kV4FromVersion3:
      return "fg_decide_v4 on version 3 states";
    case Way::kV3Compat:
      return "fg_decide_v3 (compat), among other items";
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
  int kept_writes = 0, new_expiries = 0;  // both paths of decide.lua's write_state are taken
  for (const Way way : {Way::kV4Single, Way::kV4Batch, Way::kV4FromText, Way::kV4FromVersion3,
                        Way::kV3Compat, Way::kV2Compat}) {
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
      // Per key, the expiry (ms, decision clock) its state records as last set; absent when the
      // key holds no state of version 4.
      std::map<std::string, std::int64_t> expires_set;
      // A state the core wrote, `w`, must be the key's value, and the key must live until
      // now + ttl: either its recorded expiry stayed (SET … KEEPTTL: the PERSIST of an earlier
      // step stands, PTTL -1) and is late enough, or the write set a new one, at most ttl / 2
      // later than needed (+ 1 ms), with the PX that matches it.
      auto check_write = [&](const std::string& key, const StateWrite& w, std::int64_t now_us,
                             const std::string& where) {
        // Value, PTTL and PERSIST in one atomic step.
        const AdminReply got = server_->command(
            {"EVAL",
             "local v = redis.call('GET', KEYS[1]) local t = redis.call('PTTL', KEYS[1]) "
             "redis.call('PERSIST', KEYS[1]) return {v or '', t}",
             "1", key});
        ASSERT_EQ(got.elements.size(), 2u) << where;
        const std::string& value = got.elements[0].str;
        const long long pttl = got.elements[1].integer;
        const std::int64_t ttl_us = w.ttl.count();
        const std::int64_t needed_us = now_us + ttl_us;
        const auto before = expires_set.find(key);
        const bool kept = before != expires_set.end() && before->second * 1000 >= needed_us;
        if (pttl == -2 && !kept && (ttl_us + ttl_us / 2) / 1000 + 1 <= 5 * test::time_scale()) {
          // A PX of a few ms can pass in real time between two commands (more of them in a
          // sanitizer build); put the state back (a state past its ttl decides like no state,
          // so this changes no decision).
          server_->command({"SET", key, state_text(w.state)});
          expires_set.erase(key);
          return;
        }
        EXPECT_EQ(stored_text(value), state_text(w.state)) << where << " " << key;
        ASSERT_EQ(value.size(), 33u) << where << ": not written packed";
        const std::int64_t expires_ms = stored_expires_ms(value);
        const std::int64_t px_ms = expires_ms - now_us / 1000;
        EXPECT_GE(expires_ms * 1000, needed_us) << where << ": " << key << " expires too early";
        ++(kept ? kept_writes : new_expiries);
        if (kept) {
          EXPECT_EQ(expires_ms, before->second) << where << ": " << key;
          EXPECT_EQ(pttl, -1) << where << ": " << key << " had its expiry changed";
        } else {
          EXPECT_LE(expires_ms * 1000, needed_us + ttl_us / 2 + 1000) << where << ": " << key;
          EXPECT_GE(pttl, 0) << where << ": " << key << " was written without a ttl";
          EXPECT_LE(pttl, px_ms) << where;
          EXPECT_GE(pttl, px_ms - 1000) << where;
        }
        expires_set[key] = expires_ms;
      };
      for (const VectorStep& step : vc.steps) {
        const std::string where = vc.file + ":" + std::to_string(step.line);
        const std::int64_t now_us = kVectorEpochUs + step.at_us;
        for (auto& c : charges) c.cost = step.cost;
        if (way == Way::kV4FromText || way == Way::kV4FromVersion3) {
          // Every state in floodgate_v2's text form, as an instance of the release before left
          // it, or in the version 3 form of earlier floodgate_v3 builds (no expiry recorded).
          for (const auto& [index, stored] : core_states) {
            server_->command({"SET", keys[index],
                              way == Way::kV4FromText ? state_text(stored.state)
                                                      : version3_bytes(stored.state)});
          }
          expires_set.clear();
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
              expires_set.erase(key);
              EXPECT_EQ(server_->command({"EXISTS", key}).integer, 0) << where << ": " << key;
              continue;
            }
            core_states[w.index] = Stored{w.state, now_us + w.ttl.count()};
            check_write(key, w, now_us, where);
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
          if (way == Way::kV4Batch || way == Way::kV3Compat) {
            items = {&other, &mine, &other};
            policies = {1, charges.size(), 1};
            at = 1;
          }
          std::string command;
          if (way == Way::kV3Compat) {
            redis::append_decide_batch_v3(command, items, std::to_string(now_us));
          } else {
            redis::append_decide_batch(command, items, std::to_string(now_us));
          }
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
          check_write(keys[w.index], w, now_us, where);
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
  EXPECT_GT(kept_writes, 0);
  EXPECT_GT(new_expiries, 0);
}

// Concurrency (tests/vectors/concurrency/): slots are leases, which only a store holds, so the
// core side is the memory store (apply_concurrency under its shard lock) on a manual clock, and
// the script side fg_acquire_v4 / fg_release_v4 at the same times, each request with its own lease.
TEST_F(LuaVectors, AcquireAgreesWithTheMemoryStoreOnConcurrencyCases) {
  const auto cases = load_concurrency_vectors();
  ASSERT_GE(cases.size(), 5u);
  int case_number = 0;
  for (const VectorCase& vc : cases) {
    SCOPED_TRACE(vc.file + ": " + vc.name);
    const std::string identity = "conc-" + std::to_string(case_number++);
    ManualClock clock(from_us(kVectorEpochUs));
    auto memory = make_memory_store(MemoryStoreOptions{}, clock);
    std::vector<Charge> charges;
    for (const Policy& p : vc.policies) charges.push_back(Charge{&p, 1});
    for (std::size_t i = 0; i < vc.steps.size(); ++i) {
      const VectorStep& step = vc.steps[i];
      const std::string where = vc.file + ":" + std::to_string(step.line);
      const std::int64_t now_us = kVectorEpochUs + step.at_us;
      clock.set(from_us(now_us));
      if (step.release_of) {
        const std::string lease = "step-" + std::to_string(*step.release_of);
        ASSERT_TRUE(release_and_wait(*memory, LeaseRequest{identity, charges, lease})) << where;
        const std::string command = redis::format_release_command(
            "fgtest", redis::TagKey{}, LeaseRequest{identity, charges, lease}, false, nullptr,
            std::to_string(now_us));
        const AdminReply raw = server_->command(argv_of(command));
        ASSERT_FALSE(raw.is_error) << where << ": " << raw.str;
        continue;
      }
      for (auto& c : charges) c.cost = step.cost;
      const std::string lease = "step-" + std::to_string(i);
      auto core = memory->decide_now(DecideRequest{identity, charges, lease});
      ASSERT_TRUE(core.has_value()) << where << ": " << core.error().to_string();
      const std::string command =
          redis::format_acquire_command("fgtest", redis::TagKey{}, identity, charges, lease,
                                        nullptr, std::to_string(now_us));
      const AdminReply raw = server_->command(argv_of(command));
      ASSERT_FALSE(raw.is_error) << where << ": " << raw.str;
      const std::vector<std::size_t> policies = {charges.size()};
      auto parsed = redis::parse_decide_batch_reply(to_reply(raw), policies);
      ASSERT_TRUE(parsed.has_value()) << where << ": " << parsed.error().to_string();
      const Verdict& script = parsed->front();
      EXPECT_EQ(compare(step, *core), "") << where << " (memory store)";
      EXPECT_EQ(compare(step, script), "") << where << " (script)";
      EXPECT_EQ(script.allowed, core->allowed) << where;
      EXPECT_EQ(script.most_restrictive, core->most_restrictive) << where;
      EXPECT_EQ(script.decisions, core->decisions) << where;
    }
  }
}

TEST_F(LuaVectors, KeysOutliveTheirStatesOnRedisTime) {
  // Redis's own clock (now_us ""), as in production, and random decisions on short periods, so
  // real time moves windows and refills while the test runs: after every decision that wrote,
  // the key must live at least until decided_at + reset_after (the state's ttl), and at most
  // about one period longer (decide.lua's header: ttl / 2 + 1 ms after what the write that set
  // the expiry needed), read with PEXPIRETIME: Redis's clock, never the test's.
  using namespace std::chrono_literals;
  const std::vector<Policy> policies = {
      test::make_policy("bucket", 8, {.period = 40ms}),
      test::make_policy("gcra", 5, {.algorithm = Algorithm::kGcra, .period = 30ms}),
      test::make_policy("sliding", 6, {.algorithm = Algorithm::kSlidingWindow, .period = 50ms}),
      test::make_policy("fixed", 4, {.algorithm = Algorithm::kFixedWindow, .period = 20ms})};
  auto redis_time_us = [&] {
    const AdminReply t = server_->command({"TIME"});
    return std::stoll(t.elements.at(0).str) * 1000000 + std::stoll(t.elements.at(1).str);
  };
  std::mt19937 rng(14);
  int written = 0, kept = 0;  // kept: writes that left the expiry as it was
  std::map<std::string, std::int64_t> recorded;
  for (int i = 0; i < 3000; ++i) {
    const Policy& policy = policies[rng() % policies.size()];
    const std::string identity = "live-" + std::to_string(rng() % 3);
    const std::vector<Charge> charges = {{&policy, static_cast<std::int64_t>(rng() % 3)}};
    const redis::EncodedDecision item =
        redis::encode_decision("fgtest", redis::TagKey{}, identity, charges);
    const redis::EncodedDecision* items[] = {&item};
    std::string command;
    redis::append_decide_batch(command, items);
    const AdminReply raw = server_->command(argv_of(command));
    ASSERT_FALSE(raw.is_error) << raw.str;
    const std::size_t n = 1;
    auto parsed = redis::parse_decide_batch_reply(to_reply(raw), std::span(&n, 1));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
    const Verdict& v = (*parsed)[0];
    if (!v.allowed || charges[0].cost == 0) continue;
    ++written;
    const std::string key = redis::make_key("fgtest", redis::TagKey{}, identity, policy.name);
    const std::int64_t needed_us = to_us(v.decided_at) + v.decisions[0].reset_after.count();
    const std::string value = server_->command({"GET", key}).str;
    const long long expiry_ms = server_->command({"PEXPIRETIME", key}).integer;
    SCOPED_TRACE("decision " + std::to_string(i) + " on " + key + " at " +
                 std::to_string(to_us(v.decided_at)) + " µs, needed until " +
                 std::to_string(needed_us) + " µs");
    if (expiry_ms == -2) {
      // Gone already: only fine if its state no longer needed it by now.
      EXPECT_LE(needed_us, redis_time_us());
      continue;
    }
    // Redis drops the key once its clock passes expiry_ms (ms).
    EXPECT_GE(expiry_ms * 1000, needed_us) << "expires before its state is spent";
    EXPECT_LE(expiry_ms * 1000, needed_us + policy.period.count() + 1000) << "lives too long";
    // The expiry the state records is the one set, give or take the ms the SET ran in.
    EXPECT_LE(stored_expires_ms(value), expiry_ms);
    EXPECT_GE(stored_expires_ms(value) + 2, expiry_ms);
    if (recorded[key] == stored_expires_ms(value)) ++kept;
    recorded[key] = stored_expires_ms(value);
  }
  EXPECT_GT(written, 200);
  EXPECT_GT(kept, 20);
  EXPECT_LT(kept, written);
}

// Arbitrary states, beyond those the cases' steps reach: what a policy with other values left
// (a reload lowered its burst or limit: more tokens than the bucket now holds, counts above the
// limit), remainders out of range, windows and arrival times ahead of the clock or behind it, no
// state at all; at times drawn around the microsecond a bucket fills, a window or a granule turns.
// On each, an fg_decide_v4 item of one to three policies (some in shadow mode, costs from 0 to
// one past the capacity) must decide and write exactly what the core decides and writes, and a
// written key must live at least its state's ttl and at most 1.5 times it (+ 1 ms, + the time
// the test takes); a refund of arbitrary charges on such states (fg_refund_v3) must write or
// delete exactly what the core's plan_refund does.
TEST_F(LuaVectors, ScriptAgreesWithTheCoreOnArbitraryStates) {
  std::mt19937_64 rng(20833);
  auto pick = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  auto one_of = [&](std::initializer_list<std::int64_t> values) {
    return *(values.begin() + pick(0, static_cast<std::int64_t>(values.size()) - 1));
  };
  // A state near what `p` may hold at now_us (its window, its refill), or past its range.
  auto arbitrary_state = [&](const Policy& p, std::int64_t now_us) -> std::optional<State> {
    if (pick(0, 5) == 0) return std::nullopt;
    const std::int64_t period_us = p.period.count();
    switch (p.algorithm) {
      case Algorithm::kTokenBucket: {
        const core::BucketScale s = core::bucket_scale(p);
        const std::int64_t tokens = one_of({0, 1, 2}) == 0 ? pick(s.capacity + 1, 3 * s.capacity)
                                    : pick(0, 5) == 0      ? pick(-s.unit, -1)
                                                           : pick(0, s.capacity);
        const std::int64_t held = std::clamp<std::int64_t>(tokens, 0, s.capacity);
        const std::int64_t to_full = (s.capacity - held + s.rate - 1) / s.rate;
        const std::int64_t gap = one_of({to_full - 1, to_full, to_full + 1, pick(0, 2 * to_full),
                                         -pick(1, period_us)});
        return State{tokens, now_us - gap, 0};
      }
      case Algorithm::kGcra: {
        const core::BucketScale s = core::bucket_scale(p);
        const std::int64_t most = kMaxExactInteger / s.rate - 1;  // the core's clamp of ahead
        const std::int64_t ahead =
            one_of({0, 1, -1, pick(-period_us, 2 * (s.capacity / s.rate) + 1), most,
                    most + pick(1, 1000)});
        const std::int64_t rem = one_of({0, 1, s.rate - 1, s.rate, -1, pick(0, 2 * s.rate)});
        return State{std::min(now_us + ahead, kMaxExactInteger - 1), rem, 0};
      }
      case Algorithm::kSlidingWindow:
      case Algorithm::kFixedWindow: {
        const std::int64_t window = now_us / period_us + pick(-2, 1);
        return State{window, pick(-1, p.limit + 2), pick(-1, p.limit + 2)};
      }
      case Algorithm::kConcurrency:
        break;
    }
    return std::nullopt;
  };
  const std::int64_t periods_ms[] = {1, 7, 250, 1000, 1500, 60000, 86400000};
  int writes = 0, denials = 0, refund_writes = 0;
  for (int i = 0; i < 3000; ++i) {
    SCOPED_TRACE("iteration " + std::to_string(i));
    const std::string identity = "arbitrary-" + std::to_string(i);
    const auto n = static_cast<std::size_t>(pick(1, 3));
    const std::int64_t period_us = periods_ms[pick(0, std::size(periods_ms) - 1)] * 1000;
    // Times at a window's start, a granule (1 ms) into it, just before its end, or anywhere.
    const std::int64_t start_us = (kVectorEpochUs / period_us + pick(0, 1000)) * period_us;
    const std::int64_t now_us =
        start_us + one_of({0, 1, 999, 1000, 1001, period_us - 1, pick(0, period_us - 1)});
    std::vector<Policy> policies;
    policies.reserve(n);
    for (std::size_t k = 0; k < n; ++k) {
      const auto algorithm = static_cast<Algorithm>(pick(0, 3));
      const bool bucket = algorithm == Algorithm::kTokenBucket || algorithm == Algorithm::kGcra;
      const std::int64_t limit = one_of({1, 2, 3, 7, 10, 100, 1000, 100000});
      const std::int64_t burst = bucket && pick(0, 1) == 0 ? pick(1, 2 * limit + 1) : limit;
      policies.push_back(test::make_policy(
          "p" + std::to_string(k), limit,
          {.algorithm = algorithm,
           .period = k == 0 ? Duration(period_us)
                            : Duration(periods_ms[pick(0, std::size(periods_ms) - 1)] * 1000),
           .burst = burst,
           .shadow = pick(0, 4) == 0}));
      ASSERT_TRUE(validate_policy(policies.back()).has_value());
    }
    std::vector<Charge> charges;
    std::vector<std::string> keys;
    std::vector<std::optional<State>> states;
    for (const Policy& p : policies) {
      const std::int64_t capacity = p.capacity();
      charges.push_back(Charge{&p, one_of({0, 1, capacity, capacity + 1, pick(0, capacity)})});
      keys.push_back(redis::make_key("fgtest", redis::TagKey{}, identity, p.name));
      states.push_back(arbitrary_state(p, now_us));
      if (states.back()) server_->command({"SET", keys.back(), state_text(*states.back())});
    }
    // The key holds `w`'s state and lives its ttl, not 1.5 times longer (+ 2 ms: the expiry is
    // whole ms on the decision clock; the PTTL is read some real ms after the write, hence the
    // slack of the lower bound).
    auto check_written = [&](const StateWrite& w) {
      const std::string& key = keys[w.index];
      const AdminReply got = server_->command(
          {"EVAL", "return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}", "1",
           key});
      ASSERT_EQ(got.elements.size(), 2u);
      const long long pttl_ms = got.elements[1].integer;
      const std::int64_t ttl_us = w.ttl.count();
      // A PX of a few ms can pass in real time before the test reads the key.
      if (pttl_ms == -2 && ttl_us + ttl_us / 2 <= 20000 * test::time_scale()) return;
      EXPECT_EQ(stored_text(got.elements[0].str), state_text(w.state)) << key;
      EXPECT_GE((pttl_ms + 50) * 1000, ttl_us) << key << ": expires before its state is spent";
      EXPECT_LE(pttl_ms * 1000, ttl_us + ttl_us / 2 + 2000) << key << ": lives too long";
    };
    // The keys the core does not write hold what was set.
    auto check_untouched = [&](std::span<const StateWrite> written) {
      for (std::size_t k = 0; k < n; ++k) {
        if (std::ranges::any_of(written, [k](const StateWrite& w) { return w.index == k; })) {
          continue;
        }
        const AdminReply v = server_->command({"GET", keys[k]});
        if (states[k]) {
          EXPECT_EQ(v.str, state_text(*states[k])) << keys[k];
        } else {
          EXPECT_TRUE(v.is_nil) << keys[k];
        }
      }
    };

    if (pick(0, 3) == 0) {
      // A refund of these charges (every enforced one consumed), decided at an arbitrary time.
      // Consumed at an arbitrary time, or when the first charge's own refill would just have
      // given its cost back (a bucket's: cost * unit / rate µs, rounded up, before now).
      std::int64_t refilled_us = 0;
      if (charges[0].policy->algorithm == Algorithm::kTokenBucket ||
          charges[0].policy->algorithm == Algorithm::kGcra) {
        const core::BucketScale s = core::bucket_scale(*charges[0].policy);
        refilled_us = (charges[0].cost * s.unit + s.rate - 1) / s.rate;
      }
      const Timestamp consumed_at =
          from_us(now_us - one_of({0, 1, refilled_us - 1, refilled_us, refilled_us + 1,
                                   pick(0, 2 * period_us)}));
      const RefundRequest request{identity, charges, consumed_at, {}};
      std::vector<Charge> given = charges;
      for (std::size_t k = 0; k < n; ++k) given[k].cost = refund_cost(request, k);
      const auto planned = plan_refund(given, states, consumed_at, from_us(now_us));
      std::vector<std::string> argv = {"FCALL", std::string(redis::kRefundFunction),
                                       std::to_string(n)};
      argv.insert(argv.end(), keys.begin(), keys.end());
      for (auto& a : redis::encode_refund_args(request, std::to_string(now_us))) {
        argv.push_back(std::move(a));
      }
      const AdminReply raw = server_->command(argv);
      ASSERT_FALSE(raw.is_error) << raw.str;
      EXPECT_EQ(raw.integer, static_cast<long long>(planned.size()));
      for (const StateWrite& w : planned) {
        ++refund_writes;
        if (w.ttl.count() == 0) {
          EXPECT_EQ(server_->command({"EXISTS", keys[w.index]}).integer, 0) << keys[w.index];
        } else {
          check_written(w);
        }
      }
      check_untouched(planned);
      continue;
    }

    const Evaluation core = evaluate(charges, states, from_us(now_us));
    const redis::EncodedDecision item =
        redis::encode_decision("fgtest", redis::TagKey{}, identity, charges);
    const redis::EncodedDecision* items[] = {&item};
    std::string command;
    redis::append_decide_batch(command, items, std::to_string(now_us));
    const AdminReply raw = server_->command(argv_of(command));
    ASSERT_FALSE(raw.is_error) << raw.str;
    auto parsed = redis::parse_decide_batch_reply(to_reply(raw), std::span(&n, 1));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
    const Verdict& script = (*parsed)[0];
    EXPECT_EQ(script.allowed, core.verdict.allowed);
    EXPECT_EQ(script.most_restrictive, core.verdict.most_restrictive);
    EXPECT_EQ(script.decisions, core.verdict.decisions);
    denials += core.verdict.allowed ? 0 : 1;
    for (const StateWrite& w : core.writes) {
      ++writes;
      check_written(w);
    }
    check_untouched(core.writes);
    if (HasFailure()) return;  // one iteration's messages, not thousands
  }
  // Each side is exercised: writes, denials and refunds that write.
  EXPECT_GT(writes, 300);
  EXPECT_GT(denials, 300);
  EXPECT_GT(refund_writes, 50);
}

TEST_F(LuaVectors, SlotKeysOutliveTheirLeases) {
  // On Redis's own clock (now_us ""), as in production: a slot's key must not expire while a
  // lease in it still holds, so its expiry (PEXPIRETIME, ms) is at or after every member's score
  // (µs), after fg_acquire_v4 takes a slot and after fg_release_v4 renews it. Leases of whole ms
  // and of odd µs: the key's TTL is whole ms, the score is not.
  using namespace std::chrono_literals;
  for (const Duration lease : {Duration(30s), Duration(1500us), Duration(2001us)}) {
    const Policy policy = test::make_policy(
        "slots", 3, {.algorithm = Algorithm::kConcurrency, .period = lease});
    ASSERT_TRUE(validate_policy(policy).has_value());
    const std::vector<Charge> charges = {{&policy, 1}};
    const std::string key = redis::make_key("fgtest", redis::TagKey{}, "leases", policy.name);
    for (int i = 0; i < 50; ++i) {
      const std::string id = "lease-" + std::to_string(lease.count()) + "-" + std::to_string(i);
      for (const bool renew : {false, true}) {
        const std::string command =
            renew ? redis::format_release_command("fgtest", redis::TagKey{},
                                                  LeaseRequest{"leases", charges, id}, true,
                                                  nullptr)
                  : redis::format_acquire_command("fgtest", redis::TagKey{}, "leases", charges,
                                                  id, nullptr);
        const AdminReply raw = server_->command(argv_of(command));
        ASSERT_FALSE(raw.is_error) << raw.str;
        // The expiry and the score in one atomic step (the lease may have ended since).
        const AdminReply got = server_->command(
            {"EVAL",
             "return {redis.call('PEXPIRETIME', KEYS[1]), redis.call('ZSCORE', KEYS[1], ARGV[1])}",
             "1", key, id});
        if (got.elements.size() < 2 || got.elements[1].is_nil) continue;  // ended already
        const std::int64_t expiry_ms = got.elements[0].integer;
        const std::int64_t score_us = std::stoll(got.elements[1].str);
        EXPECT_GE(expiry_ms * 1000, score_us)
            << id << (renew ? " renewed" : " taken") << ": the key expires before the lease ends";
      }
      // Give the slot back: at most three are held at once.
      server_->command(argv_of(redis::format_release_command(
          "fgtest", redis::TagKey{}, LeaseRequest{"leases", charges, id}, false, nullptr)));
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
  const std::string v4(redis::kDecideFunction);
  auto fcall = [&](std::vector<std::string> argv) { return server_->command(argv).is_error; };
  // A well-formed call first, so that each refusal below is the one change it makes:
  // m = 1, p = 1, fixed_window 5 per second, one charge of policy 1 with cost 1.
  const std::vector<std::string> good = {"FCALL", v4, "1", "k0", "", "1", "1", "4",
                                         "0",     "5", "1000000", "0", "1", "1", "1"};
  EXPECT_FALSE(fcall(good));
  auto with = [&](std::size_t at, std::string value) {
    std::vector<std::string> argv = good;
    argv[at] = std::move(value);
    return argv;
  };
  EXPECT_TRUE(fcall(with(7, "9")));    // unknown algorithm
  EXPECT_TRUE(fcall(with(13, "0")));   // policy index 0
  EXPECT_TRUE(fcall(with(13, "2")));   // policy index past p
  EXPECT_TRUE(fcall(with(13, "x")));   // policy index not a number
  EXPECT_TRUE(fcall(with(14, "x")));   // cost not a number
  EXPECT_TRUE(fcall(with(14, "-1")));  // a negative cost (it would give tokens back)
  EXPECT_TRUE(fcall(with(14, "1.5")));  // not a whole cost
  EXPECT_TRUE(fcall(with(14, "18014398509481984")));  // a cost past 2^53 (2^54)
  EXPECT_TRUE(fcall(with(12, "2")));   // n = 2 for one key
  EXPECT_TRUE(fcall(with(6, "2")));    // p = 2, one policy given
  EXPECT_TRUE(fcall(with(5, "2")));    // m = 2 for one key
  std::vector<std::string> extra = good;
  extra.push_back("1");
  EXPECT_TRUE(fcall(extra));           // a value too many
  std::vector<std::string> short_one(good.begin(), good.end() - 1);
  EXPECT_TRUE(fcall(short_one));       // the cost missing

  // A batch whose second item is malformed fails whole, before the first consumes anything.
  EXPECT_TRUE(fcall({"FCALL", v4, "2", "k1", "k2", "", "2", "1", "4", "0", "5", "1000000", "0",
                     "1", "1", "1", "1", "2", "1"}));
  EXPECT_TRUE(server_->command({"GET", "k1"}).is_nil);

  // The compat fg_decide_v3: an unknown algorithm, then n = 2 for one key; and a batch whose
  // second item is malformed fails whole.
  const std::string v3(redis::kDecideFunctionV3);
  EXPECT_TRUE(fcall({"FCALL", v3, "1", "k", "", "1", "1", "9", "1", "0", "1", "1", "1"}));
  EXPECT_TRUE(fcall({"FCALL", v3, "1", "k", "", "1", "2", "1", "1", "0", "1", "1", "1"}));
  EXPECT_TRUE(fcall({"FCALL", v3, "2", "k1", "k2", "", "2", "1", "4", "1", "0", "5", "1000000",
                     "0", "1", "7", "1", "0", "5", "1000000", "0"}));
  EXPECT_TRUE(server_->command({"GET", "k1"}).is_nil);
  EXPECT_FALSE(fcall({"FCALL", v3, "1", "k3", "", "1", "1", "4", "1", "0", "5", "1000000", "0"}));
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
