#include "store/redis/resp.h"

#include <gtest/gtest.h>

#include <limits>
#include <utility>

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

// What read() gave, one entry per reply: the integers of a flat array, or the Reply.
struct Read {
  bool integers = false;
  std::vector<std::int64_t> values;
  Reply reply;
};

// Feeds `bytes` in pieces cut at `cuts` (ascending offsets), reading after each feed.
Result<std::vector<Read>> read_in_pieces(RespReader& reader, std::string_view bytes,
                                         const std::vector<std::size_t>& cuts) {
  std::vector<Read> out;
  Reply reply;
  std::vector<std::int64_t> values;
  std::size_t at = 0;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : bytes.size();
    if (auto fed = reader.feed(bytes.substr(at, to - at)); !fed) {
      return tl::unexpected(fed.error());
    }
    at = to;
    for (;;) {
      auto r = reader.read(reply, values);
      if (!r) return tl::unexpected(r.error());
      if (*r == RespReader::Read::kMore) break;
      if (*r == RespReader::Read::kIntegers) {
        out.push_back(Read{true, values, {}});
      } else {
        out.push_back(Read{false, {}, std::move(reply)});
      }
    }
  }
  return out;
}

// A reply to fg_decide_v4 for two items of one and two policies (script.h), then "+OK".
const std::vector<std::int64_t> kBatch = {1700000000123456, 1, 0, 1, 0, 10, 9, 1000000, 0,
                                          0, 1, 1, 0, 5, 4, 200000, 0, 0, 1, 3,
                                          0, 0, 0, 999999, 1};
std::string batch_bytes() {
  std::string bytes = "*" + std::to_string(kBatch.size()) + "\r\n";
  for (std::int64_t v : kBatch) bytes += ":" + std::to_string(v) + "\r\n";
  return bytes + "+OK\r\n";
}

TEST(RespReaderIntegers, ABatchReplySplitAnywhereGivesItsIntegers) {
  const std::string bytes = batch_bytes();
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    RespReader reader;
    auto got = read_in_pieces(reader, bytes, {cut});
    ASSERT_TRUE(got.has_value()) << got.error().message;
    ASSERT_EQ(got->size(), 2u) << "cut at " << cut;
    EXPECT_TRUE((*got)[0].integers) << "cut at " << cut;
    EXPECT_EQ((*got)[0].values, kBatch) << "cut at " << cut;
    EXPECT_EQ((*got)[1].reply.str, "OK") << "cut at " << cut;
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t i = 1; i < bytes.size(); ++i) every_byte.push_back(i);
  RespReader reader;
  auto got = read_in_pieces(reader, bytes, every_byte);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].values, kBatch);
  // Twice more on the same reader: the reader's state is clean after each reply.
  got = read_in_pieces(reader, bytes + bytes, {bytes.size() / 2, bytes.size() + 7});
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 4u);
  EXPECT_EQ((*got)[2].values, kBatch);
}

TEST(RespReaderIntegers, AnErrorReplyComesAsAReplyAndLeavesTheIntegersAlone) {
  RespReader reader;
  Reply reply;
  std::vector<std::int64_t> values = {7, 8};
  ASSERT_TRUE(reader.feed("-MOVED 3999 127.0.0.1:6381\r\n*-1\r\n").has_value());
  auto r = reader.read(reply, values);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(*r, RespReader::Read::kReply);
  EXPECT_TRUE(reply.is_error());
  EXPECT_EQ(reply.str, "MOVED 3999 127.0.0.1:6381");
  EXPECT_EQ(values, (std::vector<std::int64_t>{7, 8}));
  r = reader.read(reply, values);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(*r, RespReader::Read::kReply);
  EXPECT_EQ(reply.type, Reply::Type::kNil) << "a nil array is not an empty one";
}

TEST(RespReaderIntegers, AnArrayWithAnythingButIntegersBecomesAReply) {
  // The integers read before the other element are kept, in order, as the tree's first elements.
  const std::string bytes =
      "*4\r\n:1\r\n:-2\r\n$1\r\nx\r\n:3\r\n"     // a string among integers
      "*3\r\n:1\r\n*2\r\n:2\r\n:3\r\n:4\r\n"      // a nested array
      "*2\r\n:1\r\n$-1\r\n"                       // a nil
      "*2\r\n:5\r\n-ERR in EXEC\r\n"               // an error inside
      "*0\r\n";                                      // no integers at all: still integers
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    RespReader reader;
    auto got = read_in_pieces(reader, bytes, {cut});
    ASSERT_TRUE(got.has_value());
    ASSERT_EQ(got->size(), 5u);
    EXPECT_FALSE((*got)[0].integers);
    EXPECT_EQ(describe((*got)[0].reply),
              "[(integer) 1, (integer) -2, \"x\", (integer) 3]") << "cut at " << cut;
    EXPECT_EQ(describe((*got)[1].reply), "[(integer) 1, [(integer) 2, (integer) 3], (integer) 4]");
    EXPECT_EQ(describe((*got)[2].reply), "[(integer) 1, (nil)]");
    EXPECT_EQ(describe((*got)[3].reply), "[(integer) 5, (error) ERR in EXEC]");
    EXPECT_TRUE((*got)[4].integers);
    EXPECT_TRUE((*got)[4].values.empty());
  }
}

TEST(RespReaderIntegers, AProtocolErrorPoisonsTheReader) {
  RespReader reader;
  Reply reply;
  std::vector<std::int64_t> values;
  ASSERT_TRUE(reader.feed(":1\r\n*3\r\n:1\r\n:2\r\n").has_value());
  auto r = reader.read(reply, values);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, RespReader::Read::kReply);
  EXPECT_EQ(reader.read(reply, values), RespReader::Read::kMore);
  ASSERT_TRUE(reader.feed("?3\r\n").has_value()) << "feeding is not parsing";
  r = reader.read(reply, values);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInternal);
  EXPECT_NE(r.error().message.find("\"?\""), std::string::npos) << r.error().message;
  EXPECT_FALSE(reader.feed(":1\r\n").has_value());
  EXPECT_FALSE(reader.read(reply, values).has_value());
  EXPECT_FALSE(reader.next().has_value());
  reader.reset();
  ASSERT_TRUE(reader.feed("*1\r\n:9\r\n").has_value());
  ASSERT_EQ(reader.read(reply, values), RespReader::Read::kIntegers);
  EXPECT_EQ(values, std::vector<std::int64_t>{9});
}

TEST(RespReaderIntegers, ArraysNestEightDeepAndNoDeeper) {
  RespReader reader;
  std::string eight;
  for (int i = 0; i < 8; ++i) eight += "*1\r\n";
  auto replies = read_all(reader, eight + ":1\r\n");
  ASSERT_EQ(replies.size(), 1u);
  RespReader deeper;
  ASSERT_TRUE(deeper.feed(eight + "*1\r\n:1\r\n").has_value());
  EXPECT_FALSE(deeper.next().has_value());
}

TEST(RespReaderIntegers, RefusesWhatHiredisRefusedWithItsWords) {
  // fuzz/resp.cc compares every input with hiredis 0.14's reader; these are pinned here too.
  const std::pair<std::string_view, std::string_view> cases[] = {
      {":abc\r\n", "Bad integer value"},
      {"*2\r\n:1\r\n:+7\r\n", "Bad integer value"},
      {":007\r\n", "Bad integer value"},
      {":-0\r\n", "Bad integer value"},
      {":9223372036854775808\r\n", "Bad integer value"},
      // The same inside an array of integers (read by a faster path of its own).
      {"*2\r\n:1\r\n:007\r\n", "Bad integer value"},
      {"*2\r\n:1\r\n:-0\r\n", "Bad integer value"},
      {"*1\r\n:-\r\n", "Bad integer value"},
      {"*1\r\n:\r\n", "Bad integer value"},
      {"*1\r\n:12 \r\n", "Bad integer value"},
      {"*1\r\n:-9223372036854775809\r\n", "Bad integer value"},
      {":1\r2\r\n", "Bad integer value"},
      {"$03\r\nabc\r\n", "Bad bulk string length"},
      {"$-2\r\n", "Bulk string length out of range"},
      {"*1x\r\n", "Bad multi-bulk length"},
      {"*-2\r\n", "Multi-bulk length out of range"},
      {"*2147483648\r\n", "Multi-bulk length out of range"},
      {"_\r\n", "Protocol error, got \"_\" as reply type byte"},
      {"\x01", "Protocol error, got \"\\x01\" as reply type byte"},
      {"*1\r\n\"", "Protocol error, got \"\\\"\" as reply type byte"},
  };
  for (const auto& [bytes, message] : cases) {
    RespReader reader;
    Reply reply;
    std::vector<std::int64_t> values;
    ASSERT_TRUE(reader.feed(bytes).has_value());
    auto r = reader.read(reply, values);
    ASSERT_FALSE(r.has_value()) << bytes;
    EXPECT_EQ(r.error().message, "RESP protocol error: " + std::string(message)) << bytes;
  }
  RespReader reader;
  auto replies = read_all(reader,
                          ":-9223372036854775808\r\n:0\r\n+a\rb\r\n$-1\r\n$3\r\nabcXY");
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_EQ(replies[0].integer, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(replies[1].integer, 0);
  EXPECT_EQ(replies[2].str, "a\rb") << "a status line ends at \\r\\n only";
  EXPECT_EQ(replies[3].type, Reply::Type::kNil);
  EXPECT_EQ(replies[4].str, "abc") << "a bulk string's two trailing bytes are not checked";

  // Long numbers inside an array of integers, where the faster path hands them on.
  Reply reply;
  std::vector<std::int64_t> values;
  ASSERT_TRUE(reader.feed("*5\r\n:0\r\n:-7\r\n:99999999999999999\r\n:123456789012345678\r\n"
                          ":-9223372036854775808\r\n")
                  .has_value());
  ASSERT_EQ(reader.read(reply, values), RespReader::Read::kIntegers);
  EXPECT_EQ(values, (std::vector<std::int64_t>{0, -7, 99999999999999999, 123456789012345678,
                                               std::numeric_limits<std::int64_t>::min()}));
}

TEST(RespReaderIntegers, AHugeArrayArrivesWholeWhateverItsHeaderSays) {
  constexpr int kCount = 200000;
  std::string bytes = "*" + std::to_string(kCount) + "\r\n";
  for (int i = 0; i < kCount; ++i) bytes += ":" + std::to_string(i * 1000003LL) + "\r\n";
  std::vector<std::size_t> reads;  // 32 KB reads, as the connection's
  for (std::size_t at = 32 * 1024; at < bytes.size(); at += 32 * 1024) reads.push_back(at);
  RespReader reader;
  auto got = read_in_pieces(reader, bytes, reads);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 1u);
  ASSERT_EQ((*got)[0].values.size(), static_cast<std::size_t>(kCount));
  EXPECT_EQ((*got)[0].values.back(), (kCount - 1) * 1000003LL);
  // A header promising more than ever comes waits, having allocated for what came.
  ASSERT_TRUE(reader.feed("*2147483647\r\n:1\r\n:2\r\n").has_value());
  Reply reply;
  std::vector<std::int64_t> values;
  EXPECT_EQ(reader.read(reply, values), RespReader::Read::kMore);
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
