// Rolling upgrades on one real redis-server: instances of the releases before (library
// floodgate_v2, FCALL fg_decide_v2, text states; library floodgate_v3, FCALL fg_decide_v3 with
// six values per charge; simulated here with raw commands and the exact library texts kept in
// tests/fixtures/floodgate_v2.lua and floodgate_v3.lua) and instances of this one (RedisStore,
// library floodgate_v4) deciding on the same identity at once. Admissions must stay exact across
// the switch, whichever side decides, and an old instance reconnecting (FUNCTION LOAD REPLACE
// <its library>) must not bring its library back.
//
// Also here: fg_decide_v4's batches, where items repeating a key see each other's writes.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "app/wiring.h"
#include "store/redis/keys.h"
#include "store/redis/redis_store.h"
#include "store/redis/redis_test_util.h"
#include "store/redis/resp.h"
#include "store/redis/script.h"

namespace fg::redis {
namespace {

using namespace std::chrono_literals;
using test::make_policy;

std::string fixture_text(const std::string& name) {
  std::ifstream in(std::string(FG_SOURCE_DIR) + "/tests/fixtures/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string v2_library_text() { return fixture_text("floodgate_v2.lua"); }
std::string v3_library_text() { return fixture_text("floodgate_v3.lua"); }

std::unique_ptr<RedisStore> make_store(const test::RedisServer& server) {
  RedisStoreOptions o;
  EXPECT_TRUE(parse_redis_url("redis://" + server.address(), o).has_value());
  o.timeout = 5s;
  auto store = RedisStore::make(o);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

Reply to_reply(const test::AdminReply& a) {
  Reply r;
  if (a.is_error) {
    r.type = Reply::Type::kError;
    r.str = a.str;
  } else if (!a.elements.empty()) {
    r.type = Reply::Type::kArray;
    for (const auto& e : a.elements) r.elements.push_back(to_reply(e));
  } else {
    r.type = Reply::Type::kInteger;
    r.integer = a.integer;
  }
  return r;
}

// One decision as an instance of the release before makes it: FCALL fg_decide_v2 with v2's
// arguments, under the store's default key prefix and an empty key secret.
Result<Verdict> old_decide(const test::RedisServer& server, std::string_view identity,
                           std::span<const Charge> charges) {
  std::vector<std::string> argv = {"FCALL", std::string(kDecideFunctionV2),
                                   std::to_string(charges.size())};
  for (const Charge& c : charges) {
    argv.push_back(make_key("fg", TagKey{}, identity, c.policy->name));
  }
  for (auto& a : encode_decide_v2_args(charges)) argv.push_back(std::move(a));
  return parse_decide_v2_reply(to_reply(server.command(argv)), charges.size());
}

Result<Verdict> new_decide(Store& store, std::string_view identity,
                           std::span<const Charge> charges) {
  return decide_and_wait(store, DecideRequest{identity, charges});
}

bool is_packed(const std::string& v) { return v.size() == 33 && v[0] == 4; }
bool is_text(const std::string& v) { return v.find(':') != std::string::npos && !is_packed(v); }

TEST(RollingUpgrade, OldAndNewInstancesTogetherAdmitExactlyTheLimit) {
  FG_START_REDIS(server, {});
  const std::string v2 = v2_library_text();
  ASSERT_TRUE(v2.starts_with("#!lua name=floodgate_v2\n")) << "tests/fixtures/floodgate_v2.lua";
  // 10 per hour: nothing refills while the test runs.
  const Policy p = make_policy("per-hour", 10, {.period = 1h});
  const std::vector<Charge> charges = {{&p, 1}};
  const std::string key = make_key("fg", TagKey{}, "user-1", p.name);

  // Before: only old instances, library floodgate_v2, text states.
  const test::AdminReply loaded = server->command({"FUNCTION", "LOAD", "REPLACE", v2});
  ASSERT_FALSE(loaded.is_error) << loaded.str;
  int allowed = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = old_decide(*server, "user-1", charges);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ASSERT_TRUE(r->allowed);
    EXPECT_EQ(r->decisions[0].remaining, 10 - ++allowed);
  }
  ASSERT_TRUE(is_text(server->command({"GET", key}).str));

  // A new instance starts: its first connection replaces floodgate_v2 by floodgate_v4.
  auto store = make_store(*server);
  ASSERT_TRUE(store);
  ASSERT_TRUE(new_decide(*store, "someone-else", charges)->allowed);
  const test::AdminReply libraries = server->command({"FUNCTION", "LIST"});
  ASSERT_EQ(libraries.elements.size(), 1u) << "floodgate_v2 and floodgate_v4 side by side";
  EXPECT_EQ(libraries.elements[0].elements[1].str, kLibraryName);

  // An old instance reconnecting tries to put v2 back, fails, and ignores the error.
  const test::AdminReply reload = server->command({"FUNCTION", "LOAD", "REPLACE", v2});
  ASSERT_TRUE(reload.is_error);
  EXPECT_NE(reload.str.find("already exists"), std::string::npos) << reload.str;

  // The old instance's next decision reads its own text state through the compat function and
  // writes the packed form.
  {
    auto r = old_decide(*server, "user-1", charges);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ASSERT_TRUE(r->allowed);
    EXPECT_EQ(r->decisions[0].remaining, 10 - ++allowed);
    EXPECT_TRUE(is_packed(server->command({"GET", key}).str));
  }

  // Both sides at once: exactly the limit in total, each answer counting down from the other's.
  int denied = 0;
  for (int i = 0; i < 16; ++i) {
    const bool old_side = i % 2 == 0;
    auto r =
        old_side ? old_decide(*server, "user-1", charges) : new_decide(*store, "user-1", charges);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    if (r->allowed) {
      EXPECT_EQ(r->decisions[0].remaining, 10 - ++allowed) << "step " << i;
    } else {
      ++denied;
      EXPECT_EQ(r->decisions[0].remaining, 0);
    }
    // Whoever decided, the state is the packed form: the compat code writes no text.
    EXPECT_TRUE(is_packed(server->command({"GET", key}).str)) << "step " << i;
  }
  EXPECT_EQ(allowed, 10);
  EXPECT_EQ(denied, 16 - 6);
  // The old instance still gets answers (denials) after its failed reload.
  auto last = old_decide(*server, "user-1", charges);
  ASSERT_TRUE(last.has_value()) << last.error().to_string();
  EXPECT_FALSE(last->allowed);
}

TEST(RollingUpgrade, TheNewStoreContinuesFromTextStates) {
  FG_START_REDIS(server, {});
  ASSERT_FALSE(server->command({"FUNCTION", "LOAD", "REPLACE", v2_library_text()}).is_error);
  const Policy p =
      make_policy("per-hour", 5, {.algorithm = Algorithm::kSlidingWindow, .period = 1h});
  const std::vector<Charge> charges = {{&p, 1}};
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(old_decide(*server, "u", charges)->allowed);
  auto store = make_store(*server);
  ASSERT_TRUE(store);
  int allowed = 2;
  for (int i = 0; i < 5; ++i) {
    auto r = new_decide(*store, "u", charges);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    if (r->allowed) ++allowed;
  }
  EXPECT_EQ(allowed, 5);
}

// One decision as an instance of floodgate_v3 makes it: FCALL fg_decide_v3, six values per
// charge, one item.
Result<Verdict> v3_decide(const test::RedisServer& server, std::string_view identity,
                          std::span<const Charge> charges) {
  const EncodedDecision d = encode_decision("fg", TagKey{}, identity, charges);
  const EncodedDecision* items[] = {&d};
  std::string command;
  append_decide_batch_v3(command, items);
  RespReader reader;
  if (!reader.feed(command).has_value()) return fail(ErrorCode::kInternal, "bad command");
  auto parsed = reader.next();
  std::vector<std::string> argv;
  for (const Reply& e : (**parsed).elements) argv.push_back(e.str);
  const std::size_t n = charges.size();
  auto verdicts = parse_decide_batch_reply(to_reply(server.command(argv)), std::span(&n, 1));
  if (!verdicts) return tl::unexpected(verdicts.error());
  return (*verdicts)[0];
}

TEST(RollingUpgrade, FromFloodgateV3OldAndNewInstancesTogetherAdmitExactlyTheLimit) {
  FG_START_REDIS(server, {});
  const std::string v3 = v3_library_text();
  ASSERT_TRUE(v3.starts_with("#!lua name=floodgate_v3\n")) << "tests/fixtures/floodgate_v3.lua";
  const Policy p = make_policy("per-hour", 10, {.algorithm = Algorithm::kGcra, .period = 1h});
  const Policy q = make_policy("per-day", 12, {.algorithm = Algorithm::kSlidingWindow,
                                               .period = 24h});
  const std::vector<Charge> charges = {{&p, 1}, {&q, 1}};

  // Before: only floodgate_v3 instances.
  ASSERT_FALSE(server->command({"FUNCTION", "LOAD", "REPLACE", v3}).is_error);
  int allowed = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = v3_decide(*server, "user-1", charges);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ASSERT_TRUE(r->allowed);
    EXPECT_EQ(r->decisions[0].remaining, 10 - ++allowed);
  }

  // A new instance starts: floodgate_v4 replaces floodgate_v3, atomically.
  auto store = make_store(*server);
  ASSERT_TRUE(store);
  ASSERT_TRUE(new_decide(*store, "someone-else", charges)->allowed);
  const test::AdminReply libraries = server->command({"FUNCTION", "LIST"});
  ASSERT_EQ(libraries.elements.size(), 1u) << "floodgate_v3 and floodgate_v4 side by side";
  EXPECT_EQ(libraries.elements[0].elements[1].str, kLibraryName);
  const test::AdminReply reload = server->command({"FUNCTION", "LOAD", "REPLACE", v3});
  ASSERT_TRUE(reload.is_error);
  EXPECT_NE(reload.str.find("already exists"), std::string::npos) << reload.str;

  // Both sides at once, on the states v3 wrote: exactly the limit in total.
  int denied = 0;
  for (int i = 0; i < 16; ++i) {
    auto r = i % 2 == 0 ? v3_decide(*server, "user-1", charges)
                        : new_decide(*store, "user-1", charges);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    if (r->allowed) {
      EXPECT_EQ(r->decisions[0].remaining, 10 - ++allowed) << "step " << i;
      EXPECT_EQ(r->decisions[1].remaining, 12 - allowed) << "step " << i;
    } else {
      ++denied;
      EXPECT_EQ(r->decisions[0].remaining, 0);
    }
  }
  EXPECT_EQ(allowed, 10);
  EXPECT_EQ(denied, 16 - 7);
}

// fg_decide_v4 with m items on raw commands.
TEST(DecideBatch, ItemsRepeatingAKeySeeEachOthersWrites) {
  FG_START_REDIS(server, {});
  ASSERT_FALSE(server->command({"FUNCTION", "LOAD", "REPLACE", library_code()}).is_error);
  const Policy p = make_policy("ten", 10, {.algorithm = Algorithm::kGcra, .period = 1h});
  const Policy other =
      make_policy("other", 1, {.algorithm = Algorithm::kFixedWindow, .period = 1h});
  const std::vector<Charge> one = {{&p, 1}};
  const std::vector<Charge> two = {{&p, 1}, {&other, 1}};
  const EncodedDecision hot = encode_decision("fg", TagKey{}, "hot", one);
  const EncodedDecision hot_two = encode_decision("fg", TagKey{}, "hot", two);
  // 16 items on one identity, the 4th with a second policy that then denies the 5th's twin.
  std::vector<const EncodedDecision*> items(16, &hot);
  items[3] = &hot_two;
  items[4] = &hot_two;
  std::vector<std::size_t> policies(16, 1);
  policies[3] = policies[4] = 2;
  std::string command;
  append_decide_batch(command, items, "1800000000000000");
  RespReader reader;
  ASSERT_TRUE(reader.feed(command).has_value());
  auto parsed = reader.next();
  ASSERT_TRUE(parsed && parsed->has_value());
  std::vector<std::string> argv;
  for (const Reply& e : (**parsed).elements) argv.push_back(e.str);
  auto verdicts = parse_decide_batch_reply(to_reply(server->command(argv)), policies);
  ASSERT_TRUE(verdicts.has_value()) << verdicts.error().to_string();
  int allowed = 0;
  for (std::size_t i = 0; i < verdicts->size(); ++i) {
    const Verdict& v = (*verdicts)[i];
    EXPECT_EQ(to_us(v.decided_at), 1800000000000000);
    if (i == 4) {
      // "other" allows one per hour: item 3 took it, so item 4 is denied whole.
      EXPECT_FALSE(v.allowed);
      EXPECT_EQ(v.most_restrictive, 1u);
      EXPECT_EQ(v.decisions[0].remaining, 10 - allowed) << "the denied item consumed nothing";
      continue;
    }
    if (v.allowed) {
      ++allowed;
      EXPECT_EQ(v.decisions[0].remaining, 10 - allowed) << "item " << i;
    }
  }
  EXPECT_EQ(allowed, 10);
}

}  // namespace
}  // namespace fg::redis
