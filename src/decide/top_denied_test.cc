// The heavy-hitter sketch: Space-Saving's exact replacement rule, the one-minute window of
// 10-second slices, stripes summed, identities shown as the access log shows them.
#include "decide/top_denied.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "decide/identity.h"

namespace fg::decide {
namespace {

using std::chrono::seconds;

const Timestamp kT0 = from_us(1'800'000'000'000'000);  // a slice boundary (divisible by 10 s)

std::vector<std::pair<std::string, std::uint64_t>> keys(const SpaceSaving& s) {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const auto& e : s.entries()) out.emplace_back(e.key, e.count);
  return out;
}

TEST(SpaceSaving, CountsExactlyWhileNotFull) {
  SpaceSaving s(3);
  for (const char* k : {"a", "b", "a", "c", "a", "b"}) s.add(k);
  const std::vector<std::pair<std::string, std::uint64_t>> want = {{"a", 3}, {"b", 2}, {"c", 1}};
  EXPECT_EQ(keys(s), want);
  for (const auto& e : s.entries()) EXPECT_EQ(e.error, 0u);
}

TEST(SpaceSaving, ANewcomerReplacesTheLeastCountedAndInheritsItsCountAsError) {
  SpaceSaving s(2);
  for (const char* k : {"a", "a", "b", "c"}) s.add(k);
  // c took b's place (count 1): c = 1 + 1, error 1.
  ASSERT_EQ(s.entries().size(), 2u);
  EXPECT_EQ(s.entries()[0].key, "a");
  EXPECT_EQ(s.entries()[0].count, 2u);
  EXPECT_EQ(s.entries()[1].key, "c");
  EXPECT_EQ(s.entries()[1].count, 2u);
  EXPECT_EQ(s.entries()[1].error, 1u);
  s.add("b");  // b comes back in place of the first least (a and c tie at 2): a
  EXPECT_EQ(s.entries()[0].key, "b");
  EXPECT_EQ(s.entries()[0].count, 3u);
  EXPECT_EQ(s.entries()[0].error, 2u);
}

TEST(SpaceSaving, AHeavyHitterIsNeverLost) {
  // Every identity with more than N / capacity occurrences is monitored: 100 distinct one-off
  // identities interleaved with 50 of "hot", capacity 4 (N = 150 > 4 × ... 37.5 < 50).
  SpaceSaving s(4);
  for (int i = 0; i < 100; ++i) {
    s.add("one-off-" + std::to_string(i));
    if (i % 2 == 0) s.add("hot");
  }
  bool found = false;
  for (const auto& e : s.entries()) {
    if (e.key == "hot") {
      found = true;
      EXPECT_GE(e.count, 50u);
      EXPECT_LE(e.count - e.error, 50u);
    }
  }
  EXPECT_TRUE(found);
}

TEST(TopDenied, TopOfTheMinuteMostFirstAndTiesByIdentity) {
  TopDenied t;
  for (int i = 0; i < 5; ++i) t.add("ip:203.0.113.7", kT0);
  for (int i = 0; i < 3; ++i) t.add("ip:198.51.100.1", kT0 + seconds(15));
  for (int i = 0; i < 3; ++i) t.add("ip:192.0.2.1", kT0 + seconds(25));
  t.add("ip:192.0.2.9", kT0 + seconds(59));
  const std::vector<DeniedCount> want = {
      {"ip:203.0.113.7", 5, 0}, {"ip:192.0.2.1", 3, 0}, {"ip:198.51.100.1", 3, 0}};
  EXPECT_EQ(t.top(kT0 + seconds(59), 3), want);
}

TEST(TopDenied, ApiKeysAreShownOnlyAsTheAccessLogsHashPrefix) {
  TopDenied t;
  t.add("key:x-api-key:secret-key-1", kT0);
  const auto top = t.top(kT0, 10);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].identity, loggable_identity("key:x-api-key:secret-key-1"));
  EXPECT_EQ(top[0].identity.find("secret"), std::string::npos);
  EXPECT_EQ(top[0].identity.rfind("key:x-api-key:sha256=", 0), 0u);
}

TEST(TopDenied, SlicesOlderThanAMinuteDropOut) {
  TopDenied t;
  t.add("ip:192.0.2.1", kT0);                // slice 0
  t.add("ip:192.0.2.2", kT0 + seconds(10));  // slice 1
  t.add("ip:192.0.2.2", kT0 + seconds(55));  // slice 5
  // At 59 s: slices 0-5 count.
  EXPECT_EQ(t.top(kT0 + seconds(59), 10).size(), 2u);
  // At 60 s: slice 6 is current, slice 0 has left the window.
  const std::vector<DeniedCount> at60 = {{"ip:192.0.2.2", 2, 0}};
  EXPECT_EQ(t.top(kT0 + seconds(60), 10), at60);
  // A slice's place is reused for a new slice: slice 6 lands where slice 0 was, cleared.
  t.add("ip:192.0.2.3", kT0 + seconds(61));
  const std::vector<DeniedCount> at61 = {{"ip:192.0.2.2", 2, 0}, {"ip:192.0.2.3", 1, 0}};
  EXPECT_EQ(t.top(kT0 + seconds(61), 10), at61);
  EXPECT_TRUE(t.top(kT0 + seconds(200), 10).empty());
}

TEST(TopDenied, TimeGoingBackwardsCountsInTheNewestSlice) {
  TopDenied t;
  t.add("ip:192.0.2.1", kT0 + seconds(30));
  t.add("ip:192.0.2.1", kT0);  // earlier than the newest slice: counted in slice 3
  const std::vector<DeniedCount> want = {{"ip:192.0.2.1", 2, 0}};
  EXPECT_EQ(t.top(kT0 + seconds(89), 10), want);  // slice 3 is still in [3, 8]
  EXPECT_TRUE(t.top(kT0 + seconds(90), 10).empty());
}

TEST(TopDenied, StripesAreSummed) {
  TopDenied t;
  t.add("ip:192.0.2.1", kT0, 0);
  t.add("ip:192.0.2.1", kT0, 1);
  t.add("ip:192.0.2.1", kT0, 5);  // stripe 5 % 4 = 1
  t.add("ip:192.0.2.2", kT0, 2);
  const std::vector<DeniedCount> want = {{"ip:192.0.2.1", 3, 0}, {"ip:192.0.2.2", 1, 0}};
  EXPECT_EQ(t.top(kT0, 10), want);
  const std::vector<DeniedCount> one = {{"ip:192.0.2.1", 3, 0}};
  EXPECT_EQ(t.top(kT0, 1), one);
}

TEST(TopDenied, MemoryIsBoundedUnderAFloodOfIdentities) {
  TopDenied t(8);
  for (int i = 0; i < 10'000; ++i) t.add("ip:10.0.0." + std::to_string(i), kT0);
  EXPECT_EQ(t.top(kT0, 1'000).size(), 8u);
}

}  // namespace
}  // namespace fg::decide
