// The shared text rules: JSON string escaping (exact text, and valid JSON for any bytes), UTF-8
// well-formedness, OWS trimming and token characters.
#include "util/text.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>  // header-only: parses the strings back, no link needed
#include <optional>
#include <random>
#include <string>

namespace fg::util {
namespace {

using namespace std::string_view_literals;

// What nlohmann::json reads back from `escaped` (a JSON string with quotes), or nullopt when it is
// not valid JSON (nlohmann rejects ill-formed UTF-8 too).
std::optional<std::string> decode(const std::string& escaped) {
  const auto j = nlohmann::json::parse(escaped, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_string()) return std::nullopt;
  return j.get<std::string>();
}

TEST(Text, IequalsComparesAsciiCaseInsensitively) {
  EXPECT_TRUE(iequals("X-API-Key", "x-api-key"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("x-api-key", "x-api-kez"));
  EXPECT_FALSE(iequals("abc", "abcd"));
  EXPECT_FALSE(iequals("\xc3\xa9", "\xc3\x89"));  // ASCII only: no Unicode case folding
}

TEST(JsonString, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(json_string(""), R"("")");
  EXPECT_EQ(json_string("per-minute"), R"("per-minute")");
  EXPECT_EQ(json_string("plain /path?a=1&b=2"), R"("plain /path?a=1&b=2")");
  EXPECT_EQ(json_string(R"(say "hi" \o/)"), R"("say \"hi\" \\o/")");
  EXPECT_EQ(json_string(R"(a"b\c)"), R"("a\"b\\c")");
  // The five with a short form, then the other controls as \u00XX.
  EXPECT_EQ(json_string("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(json_string("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(json_string("nul\0here"sv), R"("nul\u0000here")");
  EXPECT_EQ(json_string(std::string("\0\x1f", 2)), R"("\u0000\u001f")");
  EXPECT_EQ(json_string("\x0b"), R"("\u000b")");
  // DEL and the C1 controls too, so no raw terminal escape survives.
  EXPECT_EQ(json_string("\x1b[31mred\x7f"), R"("\u001b[31mred\u007f")");
  EXPECT_EQ(json_string("\xc2\x80\xc2\x9b\xc2\x9f"), R"("\u0080\u009b\u009f")");
  EXPECT_EQ(json_string("\xc2\xa0"), "\"\xc2\xa0\"");  // U+00A0 is no control: kept
  // A value cannot forge a second field or line.
  const std::string forged = json_string("x\",\"status\":200}\n{\"a\":\"");
  EXPECT_EQ(forged, R"("x\",\"status\":200}\n{\"a\":\"")");
  EXPECT_EQ(decode(forged), "x\",\"status\":200}\n{\"a\":\"");
}

// Long strings are scanned eight bytes at a time: a byte to escape is found at every place of a
// word, alone or after another, and nothing around it changes.
TEST(JsonString, FindsEachByteToEscapeWhereverItIsInALongString) {
  struct Special {
    std::string_view in;
    std::string_view out;  // as json_string writes it alone, quotes left out
  };
  for (const Special& sp :
       {Special{"\0"sv, R"(\u0000)"}, Special{"\x1f", R"(\u001f)"}, Special{"\"", R"(\")"},
        Special{"\\", R"(\\)"}, Special{"\x7f", R"(\u007f)"}, Special{"\n", R"(\n)"},
        Special{"\xc2\x9b", R"(\u009b)"}, Special{"\xff", R"(\ufffd)"},
        Special{"\xc3\xa9", "\xc3\xa9"}, Special{" ", " "}, Special{"~", "~"}, Special{"!", "!"},
        Special{"#", "#"}, Special{"[", "["}, Special{"]", "]"}}) {
    for (std::size_t at = 0; at <= 24; ++at) {
      const std::string before(at, 'a'), after(24 - at, 'z');
      EXPECT_EQ(json_string(before + std::string(sp.in) + after),
                "\"" + before + std::string(sp.out) + after + "\"")
          << "at " << at << ": " << json_string(sp.in);
      // Two in a row, and one right after the first.
      EXPECT_EQ(json_string(before + std::string(sp.in) + std::string(sp.in) + after),
                "\"" + before + std::string(sp.out) + std::string(sp.out) + after + "\"")
          << "twice at " << at;
    }
  }
}

TEST(JsonString, AppendsToWhatIsThere) {
  std::string out = "{\"k\":";
  append_json_string(out, "v\"");
  EXPECT_EQ(out, R"({"k":"v\"")");
}

TEST(JsonString, KeepsValidUtf8) {
  const std::string text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0 \xef\xbf\xbd";
  EXPECT_EQ(json_string(text), "\"" + text + "\"");
  EXPECT_EQ(decode(json_string(text)), text);
  // The extremes of each length.
  for (const std::string_view s :
       {"\xc2\x80"sv, "\xdf\xbf"sv, "\xe0\xa0\x80"sv, "\xed\x9f\xbf"sv, "\xee\x80\x80"sv,
        "\xef\xbf\xbf"sv, "\xf0\x90\x80\x80"sv, "\xf4\x8f\xbf\xbf"sv}) {
    EXPECT_TRUE(valid_utf8(s)) << json_string(s);
    EXPECT_EQ(decode(json_string(s)), std::string(s));
  }
}

TEST(JsonString, ReplacesEachInvalidByte) {
  struct Case {
    std::string_view in;
    std::string_view out;
  };
  for (const Case& c : {
           Case{"\x80", R"("\ufffd")"},                                // lone continuation
           Case{"a\xffz", R"("a\ufffdz")"},                            // never valid
           Case{"/\x7f\xff", R"("/\u007f\ufffd")"},                    // DEL, then never valid
           Case{"\xc0\xaf", R"("\ufffd\ufffd")"},                      // overlong '/'
           Case{"\xc1\xbf", R"("\ufffd\ufffd")"},                      // overlong, 2 bytes
           Case{"\xe0\x80\xaf", R"("\ufffd\ufffd\ufffd")"},            // overlong, 3 bytes
           Case{"\xf0\x8f\xbf\xbf", R"("\ufffd\ufffd\ufffd\ufffd")"},  // overlong, 4 bytes
           Case{"\xed\xa0\x80", R"("\ufffd\ufffd\ufffd")"},            // surrogate U+D800
           Case{"\xf4\x90\x80\x80", R"("\ufffd\ufffd\ufffd\ufffd")"},  // above U+10FFFF
           Case{"\xf5\x80\x80\x80", R"("\ufffd\ufffd\ufffd\ufffd")"},  // F5: never a lead
           Case{"\xe2\x82", R"("\ufffd\ufffd")"},                      // cut short at the end
           Case{"\xe2\x82z", R"("\ufffd\ufffdz")"},                    // cut short in the middle
           Case{"\xc3\xa9\xc3", "\"\xc3\xa9\\ufffd\""},                // valid, then a cut one
       }) {
    const std::string out = json_string(c.in);
    EXPECT_EQ(out, c.out);
    EXPECT_TRUE(decode(out).has_value()) << out;
    EXPECT_FALSE(valid_utf8(c.in)) << out;
  }
}

// Every single byte, and random byte strings: the output is always valid JSON (nlohmann checks
// UTF-8 too), with no raw control byte; ASCII and valid UTF-8 input comes back unchanged.
TEST(JsonString, AnyBytesGiveValidJson) {
  for (int b = 0; b < 256; ++b) {
    const std::string in(1, static_cast<char>(b));
    const auto back = decode(json_string(in));
    ASSERT_TRUE(back.has_value()) << b;
    if (b < 0x80) {
      EXPECT_EQ(*back, in);
    }
  }
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 40);
  for (int i = 0; i < 20'000; ++i) {
    std::string in(static_cast<std::size_t>(length(rng)), '\0');
    for (char& ch : in) ch = static_cast<char>(byte(rng));
    const std::string out = json_string(in);
    const auto back = decode(out);
    ASSERT_TRUE(back.has_value()) << out;
    if (valid_utf8(in)) {
      EXPECT_EQ(*back, in) << out;
    }
    for (char ch : out) {  // no raw controls in the output at all
      ASSERT_FALSE(static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) << out;
    }
  }
}

TEST(Utf8, SequenceLengthAndValidity) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii \x01\x7f"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9"));
  EXPECT_EQ(utf8_sequence_length("\xc3\xa9", 0), 2u);
  EXPECT_EQ(utf8_sequence_length("\xe2\x82\xac", 0), 3u);
  EXPECT_EQ(utf8_sequence_length("\xf0\x9f\x98\x80", 0), 4u);
  EXPECT_EQ(utf8_sequence_length("a\xf0\x9f\x98\x80", 1), 4u);
  EXPECT_EQ(utf8_sequence_length("\xf0\x9f\x98", 0), 0u);  // cut short
  EXPECT_EQ(utf8_sequence_length("\x80", 0), 0u);
  EXPECT_EQ(utf8_sequence_length("\xed\xbf\xbf", 0), 0u);  // surrogate U+DFFF
  EXPECT_FALSE(valid_utf8("%\xc0\xaf"));
  EXPECT_FALSE(valid_utf8("ok\xed\xa0\x80"));
}

TEST(TrimOws, SpacesAndTabsOnly) {
  EXPECT_EQ(trim_ows(""), "");
  EXPECT_EQ(trim_ows(" \t "), "");
  EXPECT_EQ(trim_ows("\t chunked \t"), "chunked");
  EXPECT_EQ(trim_ows("a b"), "a b");
  EXPECT_EQ(trim_ows(" 192.0.2.1"), "192.0.2.1");
  // Other whitespace is not OWS.
  EXPECT_EQ(trim_ows("\r\nx\v"), "\r\nx\v");
  static_assert(trim_ows("  x ") == "x");
}

TEST(Base64, CanonicalIsWhatTheEncoderWrites) {
  std::mt19937 rng(7);
  for (int n = 0; n < 200; ++n) {
    std::string bytes(static_cast<std::size_t>(n % 20), '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    const std::string standard = base64(bytes);
    ASSERT_TRUE(canonical_base64(standard, false)) << standard;
    // Base64url as JWS writes it: '-' and '_', no padding.
    std::string url = standard.substr(0, standard.find('='));
    for (char& c : url) c = c == '+' ? '-' : c == '/' ? '_' : c;
    ASSERT_TRUE(canonical_base64(url, true)) << url;
    EXPECT_EQ(canonical_base64(url, false), url.size() % 4 == 0 && url == standard);
    if (url.empty()) continue;
    // The last character with any of its leftover bits set: the same bytes to lenient decoders.
    const int spare = url.size() % 4 == 2 ? 4 : url.size() % 4 == 3 ? 2 : 0;
    for (int bit = 0; bit < spare; ++bit) {
      std::string other = standard;
      const std::size_t last = url.size() - 1;
      const char c = other[last];
      const int v = c >= 'a' ? c - 'a' + 26 : c >= 'A' ? c - 'A' : c >= '0' ? c - '0' + 52 : 62;
      const int w = v | (1 << bit);
      other[last] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[w];
      EXPECT_FALSE(canonical_base64(other, false)) << other;
    }
  }
  EXPECT_EQ(base64("bob:correct-horse"), "Ym9iOmNvcnJlY3QtaG9yc2U=");
  EXPECT_TRUE(canonical_base64("", false));
  EXPECT_TRUE(canonical_base64("", true));
  for (std::string_view bad : {"Ym9i-OmNv", "Ym9i=OmNv", "Ym9iOmN", "Ym9iOmN===", "====", "Ym9i\n",
                               "Ym9iOm==", "Ym9iOmN=", "Ym9iOmO="}) {
    EXPECT_FALSE(canonical_base64(bad, false)) << bad;
  }
  for (std::string_view bad : {"Ym9i+OmN", "Ym9i/OmN", "Ym9iO", "Ym9iOm=", "Ym9iOmN="}) {
    EXPECT_FALSE(canonical_base64(bad, true)) << bad;
  }
  EXPECT_TRUE(canonical_base64("Ym9i-_mN", true));
}

TEST(IsTchar, Rfc9110Token) {
  std::string tchars;
  for (int c = 0; c < 256; ++c) {
    if (is_tchar(static_cast<char>(c))) tchars.push_back(static_cast<char>(c));
  }
  EXPECT_EQ(tchars,
            "!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~");
  static_assert(is_tchar('x') && !is_tchar(' ') && !is_tchar(':') && !is_tchar('\0'));
}

}  // namespace
}  // namespace fg::util
