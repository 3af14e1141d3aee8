// count.h's pure half: the FCALL fg_count_v1 as bytes, its reply, the library's text.
#include "store/redis/count.h"

#include <gtest/gtest.h>

namespace fg::redis {
namespace {

using namespace std::chrono_literals;

Reply integer(std::int64_t v) {
  Reply e;
  e.type = Reply::Type::kInteger;
  e.integer = v;
  return e;
}

TEST(Count, FormatsKeysThenHitsAndWholeSecondTtls) {
  const CountRequest counters[] = {{"rl_k_v_60", 3, 60s}, {"rl_j_w_3600", 0, 0s}, {"x", 1, 1500ms}};
  EXPECT_EQ(format_count_command(counters),
            format_command({"FCALL", "fg_count_v1", "3", "rl_k_v_60", "rl_j_w_3600", "x", "3", "60",
                            "0", "1", "1", "2"}));
}

TEST(Count, ParsesOneIntegerPerKey) {
  Reply r;
  r.type = Reply::Type::kArray;
  r.elements = {integer(4), integer(0)};
  auto values = parse_count_reply(r, 2);
  ASSERT_TRUE(values.has_value());
  EXPECT_EQ(*values, (std::vector<std::int64_t>{4, 0}));
  EXPECT_EQ(parse_count_reply(r, 3).error().code, ErrorCode::kInternal);  // wrong length
  r.elements[1] = integer(-1);
  EXPECT_EQ(parse_count_reply(r, 2).error().code, ErrorCode::kInternal);  // never negative
  Reply err;
  err.type = Reply::Type::kError;
  err.str = "ERR Function not found";
  EXPECT_EQ(parse_count_reply(err, 2).error().code, ErrorCode::kUnavailable);
}

TEST(Count, TheLibraryNamesItselfAndItsFunction) {
  const std::string& code = count_library_code();
  EXPECT_EQ(code.rfind("#!lua name=floodgate_count_v1\n", 0), 0U);
  EXPECT_NE(code.find("redis.register_function('fg_count_v1', count)"), std::string::npos);
  EXPECT_NE(count_load_command().find("floodgate_count_v1"), std::string::npos);
}

}  // namespace
}  // namespace fg::redis
