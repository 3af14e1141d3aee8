#include "store/redis/script.h"

#include <gtest/gtest.h>

#include <map>

#include "store/redis/keys.h"
#include "test_policy.h"

namespace fg::redis {
namespace {

using test::make_policy;

Reply integers(std::vector<std::int64_t> values) {
  Reply r;
  r.type = Reply::Type::kArray;
  for (auto v : values) {
    Reply e;
    e.type = Reply::Type::kInteger;
    e.integer = v;
    r.elements.push_back(e);
  }
  return r;
}

using std::chrono::minutes;
using std::chrono::seconds;

TEST(EncodeDecideV2Args, DescribesEachAlgorithmWithItsIntegers) {
  const Policy bucket = make_policy("per-minute", 100, {.period = minutes(1), .burst = 120});
  const Policy gcra = make_policy("gcra", 3, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  Policy sliding =
      make_policy("sliding", 10, {.algorithm = Algorithm::kSlidingWindow, .period = seconds(60)});
  sliding.shadow = true;
  const Policy fixed =
      make_policy("fixed", 5, {.algorithm = Algorithm::kFixedWindow, .period = seconds(10)});
  const std::vector<Charge> charges = {{&bucket, 1}, {&gcra, 2}, {&sliding, 1}, {&fixed, 0}};
  const auto args = encode_decide_v2_args(charges);
  const std::vector<std::string> expected = {
      "", "4",
      // token bucket 100/min burst 120: unit 600000, rate 1 (core::bucket_scale).
      "1", "1", "0", "120", "600000", "1",
      // gcra 3/s: unit 1000000, rate 3.
      "2", "2", "0", "3", "1000000", "3",
      // sliding 10/60s, shadow: period in µs, granule 1 ms.
      "3", "1", "1", "10", "60000000", "1000",
      // fixed 5/10s.
      "4", "0", "0", "5", "10000000", "0"};
  EXPECT_EQ(args, expected);
}

TEST(EncodeDecideV2Args, PassesTheTimeOverrideFirst) {
  const Policy p =
      make_policy("p", 1, {.algorithm = Algorithm::kFixedWindow, .period = seconds(1)});
  const std::vector<Charge> charges = {{&p, 1}};
  EXPECT_EQ(encode_decide_v2_args(charges, "1800000000000000").front(), "1800000000000000");
}

TEST(EncodeDecideV2Args, SubMillisecondWindowsUseMicrosecondGranules) {
  const Policy p =
      make_policy("p", 10, {.algorithm = Algorithm::kSlidingWindow, .period = Duration(1500)});
  const std::vector<Charge> charges = {{&p, 1}};
  EXPECT_EQ(encode_decide_v2_args(charges).back(), "1");
}

// The RESP array of a formatted command, as strings.
std::vector<std::string> parse_command(const std::string& bytes) {
  RespReader reader;
  EXPECT_TRUE(reader.feed(bytes).has_value());
  auto parsed = reader.next();
  EXPECT_TRUE(parsed && parsed->has_value());
  std::vector<std::string> argv;
  if (!parsed || !parsed->has_value()) return argv;
  for (const Reply& e : (**parsed).elements) argv.push_back(e.str);
  auto rest = reader.next();  // exactly one command
  EXPECT_TRUE(rest && !rest->has_value());
  return argv;
}

TEST(EncodeDecision, HoldsTheIdentitysKeysAndTheChargesAsBulkStrings) {
  const Policy a =
      make_policy("a", 1, {.algorithm = Algorithm::kFixedWindow, .period = seconds(1)});
  const Policy b = make_policy("b{x}", 1, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  const std::vector<Charge> charges = {{&a, 1}, {&b, 2}};
  const TagKey k = make_tag_key("a deployment secret");
  const EncodedDecision d = encode_decision("fg", k, "{user}", charges);
  const std::string tag = hash_tag(k, "%7Buser%7D");
  EXPECT_EQ(d.slot, key_slot(tag));
  EXPECT_EQ(d.key_count, 2u);
  EXPECT_EQ(d.policies, 2u);
  const std::string key_a = "fg:{" + tag + "}:%7Buser%7D:a";
  const std::string key_b = "fg:{" + tag + "}:%7Buser%7D:b%7Bx%7D";
  EXPECT_EQ(d.keys, "$" + std::to_string(key_a.size()) + "\r\n" + key_a + "\r\n$" +
                        std::to_string(key_b.size()) + "\r\n" + key_b + "\r\n");
  // Per charge: the policy's alg shadow p1 p2 p3, and the cost apart.
  EXPECT_EQ(d.block(0), "$1\r\n4\r\n$1\r\n0\r\n$1\r\n1\r\n$7\r\n1000000\r\n$1\r\n0\r\n");
  EXPECT_TRUE(d.block(1).starts_with("$1\r\n2\r\n$1\r\n0\r\n"));
  ASSERT_EQ(d.costs.size(), 2u);
  EXPECT_EQ(d.costs[0], 1);
  EXPECT_EQ(d.costs[1], 2);
}

TEST(AppendDecideBatch, IsOneFcallWithTheKeysTheDistinctPoliciesOnceThenEachItemsCharges) {
  const Policy a =
      make_policy("a", 1, {.algorithm = Algorithm::kFixedWindow, .period = seconds(1)});
  const Policy b = make_policy("b", 3, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  const std::vector<Charge> two = {{&a, 1}, {&b, 2}};
  const std::vector<Charge> one = {{&b, 1}};
  const TagKey k{};
  const EncodedDecision first = encode_decision("fg", k, "u", two);
  const EncodedDecision second = encode_decision("fg", k, "v", one);
  const EncodedDecision* items[] = {&first, &second};
  std::string out = "prefix";
  append_decide_batch(out, items, "1800000000000000");
  ASSERT_TRUE(out.starts_with("prefix"));
  const auto argv = parse_command(out.substr(6));
  // b is used twice and sent once: policy 2 for both of its charges.
  const std::vector<std::string> expected = {
      "FCALL", "fg_decide_v4", "3", make_key("fg", k, "u", "a"), make_key("fg", k, "u", "b"),
      make_key("fg", k, "v", "b"), "1800000000000000", "2", "2",
      "4", "0", "1", "1000000", "0",  // a: fixed_window, limit 1, 1 s
      "2", "0", "3", "1000000", "3",  // b: gcra, burst 3, unit, rate
      "2", "1", "1", "2", "2",        // item u: two charges, (a, cost 1), (b, cost 2)
      "1", "2", "1"};                 // item v: one charge, (b, cost 1)
  EXPECT_EQ(argv, expected);
  // One item, Redis TIME.
  std::string single;
  const EncodedDecision* just_second[] = {&second};
  append_decide_batch(single, just_second);
  EXPECT_EQ(parse_command(single),
            (std::vector<std::string>{"FCALL", "fg_decide_v4", "1", make_key("fg", k, "v", "b"),
                                      "", "1", "1", "2", "0", "3", "1000000", "3", "1", "1",
                                      "1"}));
}

// The decisions of the write tests below: identities that escape, hash and are empty, several
// policies (one used by several items, two with different names and equal blocks, a name that
// escapes), a prefix that escapes, a keyed tag.
struct WriteCase {
  Policy minute = make_policy("per-minute", 100, {.period = minutes(1)});
  Policy gcra = make_policy("g{c}ra", 3, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  Policy window =
      make_policy("window", 7, {.algorithm = Algorithm::kSlidingWindow, .period = seconds(10)});
  Policy minute_twin = make_policy("per-minute-twin", 100, {.period = minutes(1)});
  Policy shadow = make_policy("shadow", 100, {.period = minutes(1), .shadow = true});
  std::vector<std::string> identities = {"user-42", "{evil}\n", "", std::string(300, 'x'),
                                         "203.0.113.77", "user-42"};
  std::vector<std::vector<Charge>> charges = {
      {{&minute, 1}},
      {{&gcra, 2}, {&minute, 0}},
      {{&window, 1}, {&minute_twin, 3}, {&shadow, 1}},
      {{&minute, 5}},
      {{&minute_twin, 1}, {&minute, 1}},
      {{&gcra, 1}}};
  std::string prefix = "fg{x}";
  TagKey key = make_tag_key("a deployment secret");
};

// append_decide_batch's bytes for decisions `which` of `c`.
std::string reference_batch(const WriteCase& c, const std::vector<std::size_t>& which,
                            std::string_view now_us = "") {
  std::vector<EncodedDecision> encoded;
  for (std::size_t i : which) {
    encoded.push_back(encode_decision(c.prefix, c.key, c.identities[i], c.charges[i]));
  }
  std::vector<const EncodedDecision*> items;
  for (const EncodedDecision& e : encoded) items.push_back(&e);
  std::string out;
  append_decide_batch(out, items, now_us);
  return out;
}

TEST(PrepareDecision, KeepsTheKeysOfKeysHAndTheirSlot) {
  const WriteCase c;
  PolicyBlocks blocks;
  std::string scratch;
  for (std::size_t i = 0; i < c.identities.size(); ++i) {
    PendingDecision d;
    prepare_decision(d, c.prefix, c.key, c.identities[i], c.charges[i], blocks, scratch);
    ASSERT_EQ(d.policies(), c.charges[i].size());
    for (std::size_t j = 0; j < d.policies(); ++j) {
      const std::string key =
          make_key(c.prefix, c.key, c.identities[i], c.charges[i][j].policy->name);
      EXPECT_EQ(std::string(d.stem.begin(), d.stem.end()) + d.blocks[j]->escaped_name, key);
      EXPECT_EQ(d.slot, key_slot(key));
      EXPECT_EQ(d.costs[j], c.charges[i][j].cost);
    }
  }
}

TEST(WriteDecideBatch, WritesTheBytesOfAppendDecideBatch) {
  const WriteCase c;
  PolicyBlocks blocks;
  std::string scratch;
  std::vector<PendingDecision> all(c.identities.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    prepare_decision(all[i], c.prefix, c.key, c.identities[i], c.charges[i], blocks, scratch);
  }
  // One Redis: every decision in one call, after what the buffer already holds, with Redis TIME
  // or a fixed time.
  std::string out = "*1\r\n$4\r\nPING\r\n";
  write_decide_batch(out, all);
  EXPECT_EQ(out, "*1\r\n$4\r\nPING\r\n" + reference_batch(c, {0, 1, 2, 3, 4, 5}));
  std::string fixed;
  write_decide_batch(fixed, all, "1800000000000000");
  EXPECT_EQ(fixed, reference_batch(c, {0, 1, 2, 3, 4, 5}, "1800000000000000"));
  // per-minute and per-minute-twin have one block, sent once.
  const auto argv = parse_command(fixed);
  ASSERT_GT(argv.size(), 16u);
  EXPECT_EQ(argv[2], "10");          // keys
  EXPECT_EQ(argv[3 + 10 + 2], "4");  // distinct blocks: minute, gcra, window, shadow
  // A cluster: each slot's decisions in their order, alone in their call.
  std::map<int, std::vector<std::size_t>> by_slot;
  for (std::size_t i = 0; i < all.size(); ++i) by_slot[all[i].slot].push_back(i);
  ASSERT_GT(by_slot.size(), 1u);
  for (const auto& [slot, which] : by_slot) {
    std::vector<PendingDecision> items;
    for (std::size_t i : which) {
      PendingDecision& d = items.emplace_back();
      prepare_decision(d, c.prefix, c.key, c.identities[i], c.charges[i], blocks, scratch);
    }
    std::string one;
    write_decide_batch(one, items);
    EXPECT_EQ(one, reference_batch(c, which)) << "slot " << slot;
  }
  // The blocks were encoded once per distinct policy.
  EXPECT_EQ(blocks.size(), 5u);
}

TEST(PolicyBlocks, AnAddressReusedByAnotherPolicyGetsItsOwnBlock) {
  Policy p = make_policy("reused", 10, {.period = seconds(1)});
  PolicyBlocks blocks;
  PolicyBlocks::Ref first = blocks.get(p);
  const std::string first_block = first->block;
  // The same object, changed in place (another configuration's policy at the same address),
  // while a decision still holds the first block.
  p.limit = 20;  // the burst stays: the rate alone differs
  PolicyBlocks::Ref second = blocks.get(p);
  EXPECT_NE(second->block, first_block);
  EXPECT_EQ(first->block, first_block) << "a block in use is never overwritten";
  const std::vector<Charge> charges = {{&p, 1}};
  const EncodedDecision expected = encode_decision("fg", TagKey{}, "u", charges);
  EXPECT_EQ(second->block, expected.block(0));
  p.name = "renamed";
  EXPECT_EQ(blocks.get(p)->escaped_name, "renamed");
  // Blocks no decision holds are reused: policies coming and going at one address do not grow
  // the cache.
  first = PolicyBlocks::Ref();
  second = PolicyBlocks::Ref();
  for (int i = 1; i <= 1000; ++i) {
    p.limit = p.burst = i;
    EXPECT_EQ(blocks.get(p)->policy.limit, i);
  }
  EXPECT_LE(blocks.size(), PolicyBlocks::kMaxKept);
}

TEST(AppendDecideBatchV3, IsWhatTheReleaseBeforeSentSixValuesPerCharge) {
  const Policy a =
      make_policy("a", 1, {.algorithm = Algorithm::kFixedWindow, .period = seconds(1)});
  const Policy b = make_policy("b", 3, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  const std::vector<Charge> two = {{&a, 1}, {&b, 2}};
  const std::vector<Charge> one = {{&b, 1}};
  const TagKey k{};
  const EncodedDecision first = encode_decision("fg", k, "u", two);
  const EncodedDecision second = encode_decision("fg", k, "v", one);
  const EncodedDecision* items[] = {&first, &second};
  std::string out;
  append_decide_batch_v3(out, items, "1800000000000000");
  const std::vector<std::string> expected = {
      "FCALL", "fg_decide_v3", "3", make_key("fg", k, "u", "a"), make_key("fg", k, "u", "b"),
      make_key("fg", k, "v", "b"), "1800000000000000", "2",
      "2", "4", "1", "0", "1", "1000000", "0", "2", "2", "0", "3", "1000000", "3",
      "1", "2", "1", "0", "3", "1000000", "3"};
  EXPECT_EQ(parse_command(out), expected);
  // One item: v2's arguments after m.
  std::string single;
  const EncodedDecision* just_first[] = {&first};
  append_decide_batch_v3(single, just_first);
  const auto one_argv = parse_command(single);
  ASSERT_EQ(one_argv.size(), 3u + 2u + 2u + 13u);
  EXPECT_EQ(one_argv[5], "");
  EXPECT_EQ(one_argv[6], "1");
  const auto v2 = encode_decide_v2_args(two);
  EXPECT_EQ(std::vector<std::string>(one_argv.begin() + 7, one_argv.end()),
            std::vector<std::string>(v2.begin() + 1, v2.end()));
}

TEST(ParseDecideBatchReply, ReadsEachItemsVerdictAtTheCallsTime) {
  const std::size_t policies[] = {2, 1};
  auto v = parse_decide_batch_reply(
      integers({1800000000123456, 0,      1, 1, 0, 100, 99, 600000, 0,   0, 1, 2, 0,
                1000000,          500000, 1, 0, 1, 0,   5,  4,      100, 0}),
      policies);
  ASSERT_TRUE(v.has_value()) << v.error().to_string();
  ASSERT_EQ(v->size(), 2u);
  const Verdict& a = (*v)[0];
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.most_restrictive, 1u);
  EXPECT_EQ(to_us(a.decided_at), 1800000000123456);
  ASSERT_EQ(a.decisions.size(), 2u);
  EXPECT_EQ(a.decisions[0].remaining, 99);
  EXPECT_EQ(a.decisions[1].reason, DenyReason::kOverLimit);
  EXPECT_EQ(a.decisions[1].retry_after, Duration(500000));
  const Verdict& b = (*v)[1];
  EXPECT_TRUE(b.allowed);
  EXPECT_EQ(to_us(b.decided_at), 1800000000123456);
  ASSERT_EQ(b.decisions.size(), 1u);
  EXPECT_EQ(b.decisions[0].limit, 5);
  EXPECT_EQ(b.decisions[0].reset_after, Duration(100));
}

TEST(ParseDecideBatchReply, AnErrorReplyIsUnavailableForTheWholeBatch) {
  Reply e;
  e.type = Reply::Type::kError;
  e.str = "ERR floodgate: bad arguments";
  const std::size_t policies[] = {1, 1};
  auto v = parse_decide_batch_reply(e, policies);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(v.error().message.find("bad arguments"), std::string::npos);
}

TEST(ParseDecideBatchReply, AMalformedReplyIsInternalNeverACrash) {
  const std::vector<std::int64_t> good = {7, 1, 0, 1, 0, 5, 4, 100, 0, 0, 0, 0, 1, 5, 0, 0, 3};
  const std::size_t two[] = {1, 1};
  ASSERT_TRUE(parse_decide_batch_reply(integers(good), two).has_value());
  auto bad = [&](std::vector<std::int64_t> values, std::span<const std::size_t> p) {
    auto v = parse_decide_batch_reply(integers(std::move(values)), p);
    return !v.has_value() && v.error().code == ErrorCode::kInternal;
  };
  const std::size_t one[] = {1}, three[] = {1, 1, 1}, zero[] = {0, 2}, none[] = {0};
  EXPECT_TRUE(bad(good, one));    // long
  EXPECT_TRUE(bad(good, three));  // short
  EXPECT_TRUE(bad(good, zero));   // an item without policies
  EXPECT_TRUE(bad({7, 1, 0}, none));
  EXPECT_TRUE(bad({}, {}));
  auto with = [&](std::size_t i, std::int64_t x) {
    auto v = good;
    v[i] = x;
    return v;
  };
  EXPECT_TRUE(bad(with(0, -7), two));   // negative decision time
  EXPECT_TRUE(bad(with(1, 2), two));    // allowed not a flag
  EXPECT_TRUE(bad(with(10, 1), two));   // second item's index out of range
  EXPECT_TRUE(bad(with(12, 3), two));   // unknown reason
  EXPECT_TRUE(bad(with(11, 1), two));   // allowed with a reason
  EXPECT_TRUE(bad(with(16, -1), two));  // negative retry
  Reply nested = integers(good);
  nested.elements[9].type = Reply::Type::kString;
  EXPECT_EQ(parse_decide_batch_reply(nested, two).error().code, ErrorCode::kInternal);
  Reply nil;
  EXPECT_EQ(parse_decide_batch_reply(nil, two).error().code, ErrorCode::kInternal);
}

// The values path (what DecideOp reads from the connection's buffer), emitting item by item.
struct Emitted {
  Result<void> result;
  std::vector<std::pair<std::size_t, Verdict>> verdicts;
};
Emitted parse_values(std::span<const std::int64_t> values, std::span<const std::size_t> policies) {
  Emitted out;
  out.result = parse_decide_batch_reply(values, policies, [&](std::size_t i, Verdict&& v) {
    out.verdicts.emplace_back(i, std::move(v));
  });
  return out;
}

TEST(ParseDecideBatchReplyValues, EmitsEachItemInOrderAsTheReplyPathReadsIt) {
  const std::vector<std::int64_t> values = {1800000000123456, 0, 1, 1, 0, 100, 99, 600000, 0,
                                            0, 1, 2, 0, 1000000, 500000, 1, 0, 1, 0,
                                            5, 4, 100, 0};
  const std::size_t policies[] = {2, 1};
  const Emitted e = parse_values(values, policies);
  ASSERT_TRUE(e.result.has_value()) << e.result.error().to_string();
  auto tree = parse_decide_batch_reply(integers(values), policies);
  ASSERT_TRUE(tree.has_value());
  ASSERT_EQ(e.verdicts.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(e.verdicts[i].first, i);
    const Verdict& a = e.verdicts[i].second;
    const Verdict& b = (*tree)[i];
    EXPECT_EQ(a.allowed, b.allowed);
    EXPECT_EQ(a.most_restrictive, b.most_restrictive);
    EXPECT_EQ(a.decided_at, b.decided_at);
    ASSERT_EQ(a.decisions.size(), b.decisions.size());
    for (std::size_t j = 0; j < a.decisions.size(); ++j) {
      EXPECT_EQ(a.decisions[j].allowed, b.decisions[j].allowed);
      EXPECT_EQ(a.decisions[j].reason, b.decisions[j].reason);
      EXPECT_EQ(a.decisions[j].limit, b.decisions[j].limit);
      EXPECT_EQ(a.decisions[j].remaining, b.decisions[j].remaining);
      EXPECT_EQ(a.decisions[j].reset_after, b.decisions[j].reset_after);
      EXPECT_EQ(a.decisions[j].retry_after, b.decisions[j].retry_after);
    }
  }
  EXPECT_EQ(e.verdicts[0].second.decisions[1].retry_after, Duration(500000));
  EXPECT_EQ(e.verdicts[1].second.decisions[0].limit, 5);
}

TEST(ParseDecideBatchReplyValues, AMalformedReplyIsInternalNamingWhatIsWrongAndEmitsNothing) {
  const std::vector<std::int64_t> good = {7, 1, 0, 1, 0, 5, 4, 100, 0, 0, 0, 0, 1, 5, 0, 0, 3};
  const std::size_t two[] = {1, 1};
  ASSERT_EQ(parse_values(good, two).verdicts.size(), 2u);
  auto why = [&](std::vector<std::int64_t> values, std::span<const std::size_t> p) {
    const Emitted e = parse_values(values, p);
    EXPECT_TRUE(e.verdicts.empty()) << "emitted before the whole reply was checked";
    if (e.result.has_value()) return std::string("accepted");
    EXPECT_EQ(e.result.error().code, ErrorCode::kInternal);
    return e.result.error().message;
  };
  auto with = [&](std::size_t i, std::int64_t x) {
    auto v = good;
    v[i] = x;
    return v;
  };
  const auto contains = [](const std::string& s, std::string_view part) {
    return s.find(part) != std::string::npos;
  };
  const std::size_t one[] = {1}, three[] = {1, 1, 1}, zero[] = {0, 2}, none[] = {0};
  EXPECT_TRUE(contains(why(good, one), "expected 9 integers, got 17"));
  EXPECT_TRUE(contains(why(good, three), "expected 25 integers, got 17"));
  EXPECT_TRUE(contains(why(good, zero), "an item without policies"));
  EXPECT_TRUE(contains(why({7, 1, 0}, none), "an item without policies"));
  EXPECT_TRUE(contains(why({}, {}), "expected 1 integers, got 0"));
  EXPECT_TRUE(contains(why(with(0, -7), two), "negative decision time"));
  EXPECT_TRUE(contains(why(with(1, 2), two), "item 0: allowed is not 0 or 1"));
  EXPECT_TRUE(contains(why(with(10, 1), two), "item 1: most restrictive index out of range"));
  EXPECT_TRUE(contains(why(with(12, 3), two), "item 1: unknown deny reason"));
  EXPECT_TRUE(contains(why(with(11, 1), two), "item 1: allowed and reason disagree"));
  EXPECT_TRUE(contains(why(with(16, -1), two), "item 1: negative figure"));
  EXPECT_TRUE(contains(why(with(11, 5), two), "item 1: a policy's allowed is not 0 or 1"));
  EXPECT_TRUE(contains(why(with(16, -1), two), "[(integer) 7, (integer) 1"))
      << "the reply is in the message";
}

TEST(LibraryLoadCommands, ReplaceTheV3AndV2LibrariesInOneTransaction) {
  const auto commands = library_load_commands();
  ASSERT_EQ(commands.size(), 5u);
  EXPECT_EQ(parse_command(commands[0]), (std::vector<std::string>{"MULTI"}));
  EXPECT_EQ(parse_command(commands[1]),
            (std::vector<std::string>{"FUNCTION", "DELETE", "floodgate_v3"}));
  EXPECT_EQ(parse_command(commands[2]),
            (std::vector<std::string>{"FUNCTION", "DELETE", "floodgate_v2"}));
  EXPECT_EQ(parse_command(commands[3]),
            (std::vector<std::string>{"FUNCTION", "LOAD", "REPLACE", library_code()}));
  EXPECT_EQ(parse_command(commands[4]), (std::vector<std::string>{"EXEC"}));
}

TEST(FormatRefundCommand, SameKeysAndValuesWithTheCostsThatWereConsumed) {
  const TagKey k{};
  Policy a = make_policy("a", 10, {.period = minutes(1)});
  Policy b = make_policy("b", 5, {.algorithm = Algorithm::kFixedWindow, .period = minutes(1)});
  b.shadow = true;
  const std::vector<Charge> charges = {{&a, 3}, {&b, 2}};
  std::vector<Decision> decisions(2);
  decisions[0].allowed = true;
  decisions[1].allowed = false;  // a shadow policy that denied consumed nothing
  int slot = -1, decide_slot = -2;
  const RefundRequest request{"u", charges, from_us(1800000000000007), decisions};
  const std::string cmd = format_refund_command("fg", k, request, &slot);
  decide_slot = encode_decision("fg", k, "u", charges).slot;
  EXPECT_EQ(slot, decide_slot);
  RespReader reader;
  ASSERT_TRUE(reader.feed(cmd).has_value());
  auto parsed = reader.next();
  ASSERT_TRUE(parsed && parsed->has_value());
  const auto& argv = (**parsed).elements;
  ASSERT_EQ(argv.size(), 3u + 2u + 3u + 12u);
  EXPECT_EQ(argv[1].str, "fg_refund_v3");
  EXPECT_EQ(argv[3].str, make_key("fg", k, "u", "a"));
  EXPECT_EQ(argv[5].str, "");
  EXPECT_EQ(argv[6].str, "1800000000000007");
  EXPECT_EQ(argv[7].str, "2");
  EXPECT_EQ(argv[9].str, "3");   // a's cost
  EXPECT_EQ(argv[15].str, "0");  // b's: it consumed nothing
  // Without decisions a shadow charge is never refunded, an enforced one always.
  const RefundRequest blind{"u", charges, from_us(1800000000000007)};
  const auto args = encode_refund_args(blind);
  EXPECT_EQ(args[4], "3");
  EXPECT_EQ(args[10], "0");
}

TEST(ParseRefundReply, AnIntegerIsSuccessAnythingElseAnError) {
  Reply ok;
  ok.type = Reply::Type::kInteger;
  ok.integer = 2;
  EXPECT_TRUE(parse_refund_reply(ok).has_value());
  Reply e;
  e.type = Reply::Type::kError;
  e.str = "ERR floodgate: bad arguments";
  EXPECT_EQ(parse_refund_reply(e).error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(parse_refund_reply(integers({1})).error().code, ErrorCode::kInternal);
}

TEST(ParseDecideV2Reply, ReadsTheVerdict) {
  auto v = parse_decide_v2_reply(
      integers({0, 1, 1800000000123456, 1, 0, 100, 99, 600000, 0, 0, 1, 2, 0, 1000000, 500000}), 2);
  ASSERT_TRUE(v.has_value()) << v.error().to_string();
  EXPECT_FALSE(v->allowed);
  EXPECT_EQ(v->most_restrictive, 1u);
  EXPECT_EQ(to_us(v->decided_at), 1800000000123456);
  ASSERT_EQ(v->decisions.size(), 2u);
  EXPECT_TRUE(v->decisions[0].allowed);
  EXPECT_EQ(v->decisions[0].limit, 100);
  EXPECT_EQ(v->decisions[0].remaining, 99);
  EXPECT_EQ(v->decisions[0].reset_after, Duration(600000));
  EXPECT_FALSE(v->decisions[1].allowed);
  EXPECT_EQ(v->decisions[1].reason, DenyReason::kOverLimit);
  EXPECT_EQ(v->decisions[1].retry_after, Duration(500000));
  EXPECT_EQ(v->headline().limit, 2);
}

TEST(ParseDecideV2Reply, AnErrorReplyIsUnavailable) {
  Reply e;
  e.type = Reply::Type::kError;
  e.str = "ERR user_script:1: oops";
  auto v = parse_decide_v2_reply(e, 1);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(v.error().message.find("oops"), std::string::npos);
}

TEST(ParseDecideV2Reply, AMalformedReplyIsInternalNeverACrash) {
  const std::vector<std::int64_t> good = {1, 0, 7, 1, 0, 5, 4, 100, 0};
  ASSERT_TRUE(parse_decide_v2_reply(integers(good), 1).has_value());
  auto bad = [&](std::vector<std::int64_t> values, std::size_t n = 1) {
    auto v = parse_decide_v2_reply(integers(std::move(values)), n);
    return !v.has_value() && v.error().code == ErrorCode::kInternal;
  };
  EXPECT_TRUE(bad(good, 2));                           // wrong count for n
  EXPECT_TRUE(bad({1, 0, 7, 1, 0, 5, 4, 100}));        // short
  EXPECT_TRUE(bad({1, 0, 7, 1, 0, 5, 4, 100, 0, 0}));  // long
  EXPECT_TRUE(bad({2, 0, 7, 1, 0, 5, 4, 100, 0}));     // allowed not a flag
  EXPECT_TRUE(bad({1, 1, 7, 1, 0, 5, 4, 100, 0}));     // index out of range
  EXPECT_TRUE(bad({1, -1, 7, 1, 0, 5, 4, 100, 0}));    // negative index
  EXPECT_TRUE(bad({1, 0, 7, 1, 3, 5, 4, 100, 0}));     // unknown reason
  EXPECT_TRUE(bad({1, 0, 7, 0, 0, 5, 4, 100, 0}));     // denied without a reason
  EXPECT_TRUE(bad({1, 0, 7, 1, 0, 5, -4, 100, 0}));    // negative remaining
  EXPECT_TRUE(bad({1, 0, 7, 1, 0, 5, 4, -1, 0}));      // negative reset
  EXPECT_TRUE(bad({}, 0));
  EXPECT_TRUE(bad({1, 0, -7, 1, 0, 5, 4, 100, 0}));  // negative decision time
  Reply not_array;
  not_array.type = Reply::Type::kString;
  not_array.str = "1";
  EXPECT_EQ(parse_decide_v2_reply(not_array, 1).error().code, ErrorCode::kInternal);
  Reply nested = integers(good);
  nested.elements[4].type = Reply::Type::kString;
  EXPECT_EQ(parse_decide_v2_reply(nested, 1).error().code, ErrorCode::kInternal);
  Reply nil;
  EXPECT_EQ(parse_decide_v2_reply(nil, 1).error().code, ErrorCode::kInternal);
}

TEST(LibraryCode, IsAFunctionLibraryRegisteringTheDecideFunction) {
  const std::string& code = library_code();
  EXPECT_TRUE(code.starts_with("#!lua name=floodgate_v4\n"));
  EXPECT_NE(code.find(decide_lua_source()), std::string::npos);
  EXPECT_NE(code.find("redis.register_function("), std::string::npos);
  EXPECT_NE(code.find("'fg_decide_v2'"), std::string::npos);
  EXPECT_NE(code.find("'fg_refund_v2'"), std::string::npos);
  EXPECT_NE(code.find("'fg_decide_v3'"), std::string::npos);
  EXPECT_NE(code.find("'fg_decide_v4'"), std::string::npos);
  EXPECT_NE(code.find("'fg_refund_v3'"), std::string::npos);
  EXPECT_FALSE(decide_lua_source().empty());
}

}  // namespace
}  // namespace fg::redis
