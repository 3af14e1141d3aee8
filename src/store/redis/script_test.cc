#include "store/redis/script.h"

#include <gtest/gtest.h>

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

TEST(EncodeDecideArgs, DescribesEachAlgorithmWithItsIntegers) {
  const Policy bucket = make_policy("per-minute", 100, {.period = minutes(1), .burst = 120});
  const Policy gcra = make_policy("gcra", 3, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  Policy sliding =
      make_policy("sliding", 10, {.algorithm = Algorithm::kSlidingWindow, .period = seconds(60)});
  sliding.shadow = true;
  const Policy fixed =
      make_policy("fixed", 5, {.algorithm = Algorithm::kFixedWindow, .period = seconds(10)});
  const std::vector<Charge> charges = {{&bucket, 1}, {&gcra, 2}, {&sliding, 1}, {&fixed, 0}};
  const auto args = encode_decide_args(charges);
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

TEST(EncodeDecideArgs, PassesTheTimeOverrideFirst) {
  const Policy p =
      make_policy("p", 1, {.algorithm = Algorithm::kFixedWindow, .period = seconds(1)});
  const std::vector<Charge> charges = {{&p, 1}};
  EXPECT_EQ(encode_decide_args(charges, "1800000000000000").front(), "1800000000000000");
}

TEST(EncodeDecideArgs, SubMillisecondWindowsUseMicrosecondGranules) {
  const Policy p =
      make_policy("p", 10, {.algorithm = Algorithm::kSlidingWindow, .period = Duration(1500)});
  const std::vector<Charge> charges = {{&p, 1}};
  EXPECT_EQ(encode_decide_args(charges).back(), "1");
}

TEST(FormatDecideCommand, IsOneFcallWithTheIdentitysKeys) {
  const Policy a =
      make_policy("a", 1, {.algorithm = Algorithm::kFixedWindow, .period = seconds(1)});
  const Policy b = make_policy("b{x}", 1, {.algorithm = Algorithm::kGcra, .period = seconds(1)});
  const std::vector<Charge> charges = {{&a, 1}, {&b, 1}};
  int slot = -1;
  const TagKey k = make_tag_key("a deployment secret");
  const std::string cmd = format_decide_command("fg", k, "{user}", charges, &slot);
  const std::string tag = hash_tag(k, "%7Buser%7D");
  EXPECT_EQ(slot, key_slot(tag));
  RespReader reader;
  ASSERT_TRUE(reader.feed(cmd).has_value());
  auto parsed = reader.next();
  ASSERT_TRUE(parsed && parsed->has_value());
  const auto& argv = (**parsed).elements;
  ASSERT_EQ(argv.size(), 3u + 2u + 2u + 12u);
  EXPECT_EQ(argv[0].str, "FCALL");
  EXPECT_EQ(argv[1].str, "fg_decide_v2");
  EXPECT_EQ(argv[2].str, "2");
  EXPECT_EQ(argv[3].str, "fg:{" + tag + "}:%7Buser%7D:a");
  EXPECT_EQ(argv[4].str, "fg:{" + tag + "}:%7Buser%7D:b%7Bx%7D");
  EXPECT_EQ(argv[5].str, "");
  EXPECT_EQ(argv[6].str, "2");
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
  const std::string decide = format_decide_command("fg", k, "u", charges, &decide_slot);
  EXPECT_EQ(slot, decide_slot);
  RespReader reader;
  ASSERT_TRUE(reader.feed(cmd).has_value());
  auto parsed = reader.next();
  ASSERT_TRUE(parsed && parsed->has_value());
  const auto& argv = (**parsed).elements;
  ASSERT_EQ(argv.size(), 3u + 2u + 3u + 12u);
  EXPECT_EQ(argv[1].str, "fg_refund_v2");
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

TEST(ParseDecideReply, ReadsTheVerdict) {
  auto v = parse_decide_reply(
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

TEST(ParseDecideReply, AnErrorReplyIsUnavailable) {
  Reply e;
  e.type = Reply::Type::kError;
  e.str = "ERR user_script:1: oops";
  auto v = parse_decide_reply(e, 1);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(v.error().message.find("oops"), std::string::npos);
}

TEST(ParseDecideReply, AMalformedReplyIsInternalNeverACrash) {
  const std::vector<std::int64_t> good = {1, 0, 7, 1, 0, 5, 4, 100, 0};
  ASSERT_TRUE(parse_decide_reply(integers(good), 1).has_value());
  auto bad = [&](std::vector<std::int64_t> values, std::size_t n = 1) {
    auto v = parse_decide_reply(integers(std::move(values)), n);
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
  EXPECT_EQ(parse_decide_reply(not_array, 1).error().code, ErrorCode::kInternal);
  Reply nested = integers(good);
  nested.elements[4].type = Reply::Type::kString;
  EXPECT_EQ(parse_decide_reply(nested, 1).error().code, ErrorCode::kInternal);
  Reply nil;
  EXPECT_EQ(parse_decide_reply(nil, 1).error().code, ErrorCode::kInternal);
}

TEST(LibraryCode, IsAFunctionLibraryRegisteringTheDecideFunction) {
  const std::string& code = library_code();
  EXPECT_TRUE(code.starts_with("#!lua name=floodgate_v2\n"));
  EXPECT_NE(code.find(decide_lua_source()), std::string::npos);
  EXPECT_NE(code.find("redis.register_function("), std::string::npos);
  EXPECT_NE(code.find("'fg_decide_v2'"), std::string::npos);
  EXPECT_NE(code.find("'fg_refund_v2'"), std::string::npos);
  EXPECT_FALSE(decide_lua_source().empty());
}

}  // namespace
}  // namespace fg::redis
