#include "store/redis/resp.h"

#include <gtest/gtest.h>

namespace fg::redis {
namespace {

std::vector<Reply> read_all(RespReader& reader, std::string_view bytes) {
  EXPECT_TRUE(reader.feed(bytes).has_value());
  std::vector<Reply> out;
  for (int i = 0; i < 1000; ++i) {
    auto next = reader.next();
    EXPECT_TRUE(next.has_value());
    if (!next || !next->has_value()) break;
    out.push_back(std::move(**next));
  }
  return out;
}

TEST(RespReader, ParsesEveryReplyType) {
  RespReader reader;
  auto replies = read_all(reader, "+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*0\r\n");
  ASSERT_EQ(replies.size(), 7u);
  EXPECT_EQ(replies[0].type, Reply::Type::kStatus);
  EXPECT_EQ(replies[0].str, "OK");
  EXPECT_TRUE(replies[1].is_error());
  EXPECT_EQ(replies[1].str, "ERR bad");
  EXPECT_TRUE(replies[2].is_integer());
  EXPECT_EQ(replies[2].integer, 42);
  EXPECT_EQ(replies[3].type, Reply::Type::kString);
  EXPECT_EQ(replies[3].str, "abc");
  EXPECT_EQ(replies[4].type, Reply::Type::kNil);
  EXPECT_EQ(replies[5].type, Reply::Type::kNil);
  EXPECT_TRUE(replies[6].is_array());
  EXPECT_TRUE(replies[6].elements.empty());
}

TEST(RespReader, BuildsNestedArraysInPlace) {
  RespReader reader;
  // A CLUSTER SLOTS-like shape: [[0, 5460, ["127.0.0.1", 7000, "id"]]].
  auto replies =
      read_all(reader, "*1\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n");
  ASSERT_EQ(replies.size(), 1u);
  const Reply& entry = replies[0].elements.at(0);
  EXPECT_EQ(entry.elements.at(1).integer, 5460);
  EXPECT_EQ(entry.elements.at(2).elements.at(0).str, "127.0.0.1");
  EXPECT_EQ(entry.elements.at(2).elements.at(1).integer, 7000);
}

TEST(RespReader, WaitsForTheRestOfAReply) {
  RespReader reader;
  const std::string bytes = "*2\r\n:1\r\n$5\r\nhello\r\n";
  for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
    ASSERT_TRUE(reader.feed(bytes.substr(i, 1)).has_value());
    auto next = reader.next();
    ASSERT_TRUE(next.has_value());
    ASSERT_FALSE(next->has_value()) << "complete after " << i + 1 << " bytes";
  }
  ASSERT_TRUE(reader.feed(bytes.substr(bytes.size() - 1)).has_value());
  auto next = reader.next();
  ASSERT_TRUE(next.has_value() && next->has_value());
  EXPECT_EQ((**next).elements.at(1).str, "hello");
}

TEST(RespReader, AProtocolErrorIsAnErrorNotACrash) {
  RespReader reader;
  ASSERT_TRUE(reader.feed("?what\r\n").has_value());
  auto next = reader.next();
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().code, ErrorCode::kInternal);
  reader.reset();
  auto replies = read_all(reader, ":1\r\n");
  ASSERT_EQ(replies.size(), 1u);
}

TEST(FormatCommand, WritesRespArraysOfBulkStrings) {
  EXPECT_EQ(format_command({"GET", "k"}), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  const std::string binary("a\0b", 3);
  EXPECT_EQ(format_command({"SET", binary, ""}),
            std::string("*3\r\n$3\r\nSET\r\n$3\r\na\0b\r\n$0\r\n\r\n", 28));
}

TEST(FormatCommand, HandlesManyArguments) {
  std::vector<std::string> argv(100, "x");
  argv[0] = "MSET";
  const std::string cmd = format_command(argv);
  EXPECT_TRUE(cmd.starts_with("*100\r\n$4\r\nMSET\r\n$1\r\nx\r\n"));
  RespReader reader;  // a command is itself a valid RESP array
  auto replies = read_all(reader, cmd);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].elements.size(), 100u);
}

TEST(Describe, IsShortAndReadable) {
  Reply r;
  r.type = Reply::Type::kArray;
  r.elements.resize(2);
  r.elements[0].type = Reply::Type::kInteger;
  r.elements[0].integer = 1;
  r.elements[1].type = Reply::Type::kError;
  r.elements[1].str = "ERR x";
  EXPECT_EQ(describe(r), "[(integer) 1, (error) ERR x]");
  Reply big;
  big.type = Reply::Type::kString;
  big.str = std::string(10000, 'a');
  EXPECT_LT(describe(big).size(), 300u);
}

}  // namespace
}  // namespace fg::redis
