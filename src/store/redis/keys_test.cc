#include "store/redis/keys.h"

#include <gtest/gtest.h>

#include <array>
#include <map>
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

TEST(EscapeIdentity, FindsEachByteToEscapeWhereverItIsInALongIdentity) {
  // The scan reads eight bytes at a time: every kind of byte at every place of a 24-byte
  // identity, alone and twice in a row, and the printable bytes next to those it escapes.
  struct Case {
    std::string in;
    std::string out;  // as escape_identity writes it alone
  };
  const Case cases[] = {{"{", "%7B"},
                        {"}", "%7D"},
                        {"%", "%25"},
                        {"#", "%23"},
                        {std::string(1, '\0'), "%00"},
                        {"\x1f", "%1F"},
                        {"\x7f", "%7F"},
                        {"\x80", "%80"},
                        {"\xff", "%FF"},
                        {" ", " "},
                        {"~", "~"},
                        {"\"", "\""},
                        {"\\", "\\"},
                        {"$", "$"},
                        {"|", "|"}};
  for (const Case& c : cases) {
    for (std::size_t at = 0; at <= 24; ++at) {
      const std::string before(at, 'a'), after(24 - at, 'z');
      EXPECT_EQ(escape_identity(before + c.in + after), before + c.out + after)
          << "at " << at << ": " << c.out;
      EXPECT_EQ(escape_identity(before + c.in + c.in + after), before + c.out + c.out + after)
          << "twice at " << at << ": " << c.out;
    }
  }
}

TEST(EscapeIdentity, TheEmptyIdentityIsALonePercent) {
  EXPECT_EQ(escape_identity(""), "%");
  const TagKey k = make_tag_key("a deployment secret");
  EXPECT_EQ(make_key("fg", k, "", "p"), "fg:{" + hash_tag(k, "%") + "}:%:p");
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
  // A client cannot present someone's digest as its own identity: '#' is escaped.
  EXPECT_NE(escape_identity(escaped), escaped);
}

// The tag's SipHash-2-4 against the reference vectors (key 00 01 .. 0f, message 00 01 .. n-1; the
// paper's appendix and the reference implementation's vectors.h): the key read as two
// little-endian words. util/keyed_hash_test checks the function against OpenSSL's SIPHASH MAC.
TEST(SipHash, MatchesTheReferenceVectors) {
  const TagKey key{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  std::string msg;
  EXPECT_EQ(siphash24(key, msg), 0x726fdb47dd0e0e31ULL);
  msg.push_back('\x00');
  EXPECT_EQ(siphash24(key, msg), 0x74f839c593dc67fdULL);
  for (char c = 1; c < 15; ++c) msg.push_back(c);
  ASSERT_EQ(msg.size(), 15u);
  EXPECT_EQ(siphash24(key, msg), 0xa129ca6149be45e5ULL);
}

TEST(TagKey, ComesFromTheSecretAndAnEmptySecretIsPublic) {
  const TagKey none = make_tag_key("");
  EXPECT_EQ(none.k0, 0u);
  EXPECT_EQ(none.k1, 0u);
  const TagKey a = make_tag_key("secret-of-deployment-a");
  const TagKey a2 = make_tag_key("secret-of-deployment-a");
  const TagKey b = make_tag_key("secret-of-deployment-b");
  EXPECT_EQ(a.k0, a2.k0);  // every instance with the secret computes the same keys
  EXPECT_EQ(a.k1, a2.k1);
  EXPECT_NE(a.k0, b.k0);
  EXPECT_EQ(hash_tag(a, "user-42"), hash_tag(a2, "user-42"));
  EXPECT_NE(hash_tag(a, "user-42"), hash_tag(b, "user-42"));
}

TEST(MakeKey, PutsTheKeyedTagFirstAndTheIdentityAfterIt) {
  const TagKey k = make_tag_key("a deployment secret");
  const std::string tag = hash_tag(k, "user-42");
  ASSERT_EQ(tag.size(), kTagLength);
  EXPECT_EQ(tag.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(make_key("fg", k, "user-42", "per-minute"), "fg:{" + tag + "}:user-42:per-minute");
  // Every policy of one identity: one slot, the tag's (the script needs them together).
  EXPECT_EQ(key_slot(make_key("fg", k, "user-42", "a")),
            key_slot(make_key("fg", k, "user-42", "b")));
  EXPECT_EQ(key_slot(make_key("fg", k, "user-42", "a")), key_slot(tag));
  EXPECT_EQ(key_slot(make_key("fg", k, "user-42", "a")), identity_slot(k, "user-42"));
}

// The keys a running deployment already holds in Redis: an instance of a later version must
// name them byte for byte, or a rolling upgrade starts every client over on a fresh key. These
// were written by the store as it was before its SipHash moved to util/keyed_hash.h (532fc90),
// under no secret and under one, across tail lengths 7, 8 and 9, escaped bytes and a long
// identity's digest.
TEST(MakeKey, KeysWrittenBeforeAreNamedTheSame) {
  const std::string ids[] = {
      "user-42",  "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",     "abcdefg",
      "abcdefgh", "\x80\x81\x82\x83\x84\x85\x86\x87\xff", std::string(300, '\xe9')};
  const std::string long_digest =
      "#BF7B9766B2339B8CC2E95551D4F6ACFE3D9D920418D574AA222529B6F04FC3BC";
  const std::string public_keys[] = {"fg:{694f53aa}:user-42:per-minute",
                                     "fg:{6383c1e1}:%D0%BA%D0%BB%D1%8E%D1%87:per-minute",
                                     "fg:{e3650078}:abcdefg:per-minute",
                                     "fg:{cce22193}:abcdefgh:per-minute",
                                     "fg:{e5db5f51}:%80%81%82%83%84%85%86%87%FF:per-minute",
                                     "fg:{ec946d6a}:" + long_digest + ":per-minute"};
  const std::string secret_keys[] = {"fg:{187c4aa9}:user-42:per-minute",
                                     "fg:{d5a0142a}:%D0%BA%D0%BB%D1%8E%D1%87:per-minute",
                                     "fg:{9bf353ff}:abcdefg:per-minute",
                                     "fg:{70b6c7da}:abcdefgh:per-minute",
                                     "fg:{dcc8f759}:%80%81%82%83%84%85%86%87%FF:per-minute",
                                     "fg:{0952c3a4}:" + long_digest + ":per-minute"};
  for (std::size_t i = 0; i < std::size(ids); ++i) {
    EXPECT_EQ(make_key("fg", make_tag_key(""), ids[i], "per-minute"), public_keys[i]) << i;
    EXPECT_EQ(make_key("fg", make_tag_key("s3cret"), ids[i], "per-minute"), secret_keys[i]) << i;
  }
}

TEST(MakeKey, NoIdentityCanChooseItsSlotOrEscapeItsKey) {
  const TagKey k = make_tag_key("a deployment secret");
  // Brace injection: an identity that carries its own tag, or closes ours early, is escaped,
  // and the only tag in the key is the keyed hash, wherever the client's braces were.
  for (const std::string id : {"{victim}", "x}:p{y", "{}", "}{", "{{a}}", "a{b}c", "{%7B}"}) {
    const std::string escaped = escape_identity(id);
    const std::string key = make_key("fg", k, id, "p");
    EXPECT_EQ(escaped.find_first_of("{}"), std::string::npos) << id;
    EXPECT_EQ(key, "fg:{" + hash_tag(k, escaped) + "}:" + escaped + ":p") << id;
    EXPECT_EQ(key_slot(key), key_slot(hash_tag(k, escaped))) << id;
  }
  EXPECT_EQ(make_key("fg", k, "x}:p{y", "p"),
            "fg:{" + hash_tag(k, "x%7D:p%7By") + "}:x%7D:p%7By:p");
  // A prefix or policy with braces cannot take the tag either.
  EXPECT_EQ(make_key("f{g", k, "id", "p{o}l"), "f%7Bg:{" + hash_tag(k, "id") + "}:id:p%7Bo%7Dl");
  EXPECT_EQ(key_slot(make_key("f{g", k, "id", "p{o}l")), key_slot(hash_tag(k, "id")));
}

// The attack the keyed tag stops: with a public tag function, a client searches its own
// identity space offline for values that share one slot (one master). Here the attacker does
// exactly that against the public (no-secret) key and finds 300 API keys for slot 42. Under a
// deployment's secret, those same chosen identities land wherever the secret puts them: spread
// over the slots like any others.
TEST(MakeKey, ClientChosenIdentitiesDoNotConcentrateUnderASecret) {
  const TagKey public_key = make_tag_key("");
  const TagKey secret_key = make_tag_key("7f3c9a1e5b2d48c6a0e19f7b3d5c2a84");
  const int target = 42;
  std::vector<std::string> chosen;
  for (int i = 0; chosen.size() < 300 && i < 20'000'000; ++i) {
    const std::string id = "key:x-api-key:attacker-" + std::to_string(i);
    if (identity_slot(public_key, id) == target) chosen.push_back(id);
  }
  ASSERT_EQ(chosen.size(), 300u);   // found by brute force: the public tag is predictable
  std::array<int, 3> per_master{};  // the slot ranges of a 3-master cluster
  std::map<int, int> per_slot;
  for (const std::string& id : chosen) {
    const int slot = identity_slot(secret_key, id);
    ++per_master[static_cast<std::size_t>(slot * 3 / kClusterSlots)];
    ++per_slot[slot];
  }
  // Binomial(300, 1/3): mean 100, sd 8.2; 60-140 is ~5 sd either side.
  for (int m : per_master) {
    EXPECT_GT(m, 60);
    EXPECT_LT(m, 140);
  }
  // 300 uniform ids over 16384 slots: some slot holding 4 or more has probability < 1e-4.
  int largest = 0;
  for (const auto& [slot, n] : per_slot) largest = std::max(largest, n);
  EXPECT_LE(largest, 3);
}

TEST(MakeKey, DistinctIdentitiesGiveDistinctKeys) {
  const TagKey k = make_tag_key("a deployment secret");
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
                                        "a:p",
                                        std::string(257, 'x')};
  std::set<std::string> keys;
  for (const auto& id : ids) keys.insert(make_key("fg", k, id, "p"));
  EXPECT_EQ(keys.size(), ids.size());
  // "<identity>:<policy>" splits at the last ':': identity "a" with policy "p:p" cannot exist
  // (policy names have no ':'), so "a:p" + "p" is the only reading of its key.
}

}  // namespace
}  // namespace fg::redis
