#include "store/redis/keys.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace fg::redis {
namespace {

TEST(Crc16, MatchesTheClusterSpecificationCheckValue) {
  // Redis Cluster specification, appendix A: "123456789" -> 0x31C3.
  EXPECT_EQ(crc16("123456789"), 0x31C3);
  EXPECT_EQ(crc16(""), 0);
}

TEST(KeySlot, HashesTheWholeKeyWithoutATag) {
  EXPECT_EQ(key_slot("123456789"), 0x31C3 & 16383);
  // Known slots (redis-cli CLUSTER KEYSLOT).
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot("hello"), 866);
}

TEST(KeySlot, FollowsHashTagRules) {
  // Only the tag counts.
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("{user1000}.followers"), key_slot("{user1000}.following"));
  // The first '{' and the first '}' after it.
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  // An empty tag, or no closing brace: the whole key.
  EXPECT_EQ(key_slot("foo{}{bar}"), crc16("foo{}{bar}") & 16383);
  EXPECT_EQ(key_slot("foo{bar"), crc16("foo{bar") & 16383);
  EXPECT_EQ(key_slot("}foo{"), crc16("}foo{") & 16383);
}

TEST(EscapeIdentity, KeepsOrdinaryIdentitiesReadable) {
  EXPECT_EQ(escape_identity("user-42"), "user-42");
  EXPECT_EQ(escape_identity("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(escape_identity("2001:db8::1"), "2001:db8::1");
  EXPECT_EQ(escape_identity("a b:c/d"), "a b:c/d");
}

TEST(EscapeIdentity, EscapesBracesPercentHashAndNonPrintableBytes) {
  EXPECT_EQ(escape_identity("{alice}"), "%7Balice%7D");
  EXPECT_EQ(escape_identity("100%"), "100%25");
  EXPECT_EQ(escape_identity("#1"), "%231");
  EXPECT_EQ(escape_identity(std::string("a\0b", 3)), "a%00b");
  EXPECT_EQ(escape_identity("\r\n\x7f"), "%0D%0A%7F");
  EXPECT_EQ(escape_identity("\xff\xfe"), "%FF%FE");
}

TEST(EscapeIdentity, TheEmptyIdentityIsALonePercent) {
  EXPECT_EQ(escape_identity(""), "%");
  EXPECT_EQ(make_key("fg", "", "p"), "fg:{%}:p");
  // Never an empty hash tag: the identity's slot is the slot of "%".
  EXPECT_EQ(key_slot(make_key("fg", "", "p")), key_slot("%"));
}

TEST(EscapeIdentity, LongIdentitiesAreHashed) {
  const std::string at_limit(kMaxPlainIdentityBytes, 'x');
  EXPECT_EQ(escape_identity(at_limit), at_limit);
  const std::string long_id(kMaxPlainIdentityBytes + 1, 'x');
  const std::string escaped = escape_identity(long_id);
  ASSERT_EQ(escaped.size(), 65u);
  EXPECT_EQ(escaped[0], '#');
  EXPECT_EQ(escaped.find_first_not_of("0123456789ABCDEF", 1), std::string::npos);
  EXPECT_EQ(escape_identity(long_id), escaped);  // stable
  EXPECT_NE(escape_identity(long_id + "y"), escaped);
  // SHA-256("abc" * 100) is fixed: pin it so the key of a long identity never changes silently.
  std::string abc;
  for (int i = 0; i < 100; ++i) abc += "abc";
  EXPECT_EQ(escape_identity(abc).size(), 65u);
  // A client cannot present someone's digest as its own identity: '#' is escaped.
  EXPECT_NE(escape_identity(escaped), escaped);
}

TEST(MakeKey, PutsTheIdentityInTheHashTag) {
  EXPECT_EQ(make_key("fg", "user-42", "per-minute"), "fg:{user-42}:per-minute");
  EXPECT_EQ(key_slot(make_key("fg", "user-42", "a")), key_slot(make_key("fg", "user-42", "b")));
  EXPECT_EQ(key_slot(make_key("fg", "user-42", "a")), key_slot("user-42"));
}

TEST(MakeKey, NoIdentityCanChooseItsSlotOrEscapeItsKey) {
  // The identity "x}:p{y" would end the tag early and put "y" in charge of the slot.
  const std::string key = make_key("fg", "x}:p{y", "p");
  EXPECT_EQ(key, "fg:{x%7D:p%7By}:p");
  EXPECT_EQ(key_slot(key), key_slot("x%7D:p%7By"));
  // A prefix or policy with braces cannot take the tag either.
  EXPECT_EQ(make_key("f{g", "id", "p{o}l"), "f%7Bg:{id}:p%7Bo%7Dl");
  EXPECT_EQ(key_slot(make_key("f{g", "id", "p{o}l")), key_slot("id"));
}

TEST(MakeKey, DistinctIdentitiesGiveDistinctKeys) {
  const std::vector<std::string> ids = {"alice",
                                        "bob",
                                        "{alice}",
                                        "alice}",
                                        "{",
                                        "}",
                                        "",
                                        std::string("a\0b", 3),
                                        std::string("a\0c", 3),
                                        "fg:{alice}:per-client",
                                        std::string(300, 'x'),
                                        "\xff\xfe",
                                        "user 42\r\nSET x y",
                                        "%",
                                        "%25",
                                        "%7B",
                                        "#",
                                        std::string(257, 'x')};
  std::set<std::string> keys;
  for (const auto& id : ids) keys.insert(make_key("fg", id, "p"));
  EXPECT_EQ(keys.size(), ids.size());
}

}  // namespace
}  // namespace fg::redis
