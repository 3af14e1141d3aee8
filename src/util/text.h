// text.h — the few text rules that several layers apply to bytes they did not choose: JSON
// string escaping, UTF-8 well-formedness, HTTP optional whitespace and token characters. One
// definition of each, so that the access log, the response bodies, the config and the HTTP
// edge cannot drift apart.
//
// What:
//   append_json_string() / json_string()  any bytes → one JSON string (RFC 8259), quotes included:
//     `"` and `\` with a backslash; \b \f \n \r \t as themselves; every other control character
//     (U+0000-U+001F, U+007F DEL and the C1 controls U+0080-U+009F) as \u00XX, so no raw
//     terminal escape survives; well-formed UTF-8 (RFC 3629) kept as it is; and every byte that
//     is not part of well-formed UTF-8 (a stray continuation, C0/C1/F5-FF, an overlong form, a
//     surrogate, above U+10FFFF, a sequence cut short) as \ufffd, one per byte, the rest of the
//     string still read. The result is always valid JSON, whatever the input.
//   printable_run()  how far a run of printable ASCII goes, but for a few bytes of the caller's:
//     the scan of every escaping writer (JSON strings here, Redis key parts in store/redis).
//   utf8_sequence_length() / valid_utf8()  RFC 3629 well-formedness.
//   trim_ows()  without leading and trailing spaces and tabs (RFC 9110 §5.6.3 OWS).
//   is_tchar()  an RFC 9110 §5.6.2 token character (header names, methods, codings).
//
// Thread safety: pure functions. Failure: none; nothing throws but std::bad_alloc.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace fg::util {

// `s` as a JSON string, quotes included, escaped as described above; appended to `out`.
void append_json_string(std::string& out, std::string_view s);
// The same, as a new string.
std::string json_string(std::string_view s);
// Whether `c` is printable ASCII (0x20-0x7E: DEL is not) and none of `Except`.
template <unsigned char... Except>
constexpr bool printable_except(unsigned char c) {
  return c >= 0x20 && c < 0x7F && ((c != Except) && ...);
}

// The end of the run of bytes from s[i] on that printable_except<Except...> accepts: where an
// escaping writer has to stop copying. Eight bytes at a time on a little-endian machine: a byte
// of the word is flagged when it is below 0x20, at or above 0x7F, or one of `Except`; the lowest
// flag is exact (a false flag can only follow a true one, from a borrow), so the run ends at the
// first flagged byte. The bytes after the last whole word, one at a time.
template <unsigned char... Except>
std::size_t printable_run(std::string_view s, std::size_t i) {
  if constexpr (std::endian::native == std::endian::little) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
    constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
    const auto zero_byte = [](std::uint64_t x) { return (x - kOnes) & ~x & kHighs; };
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      const std::uint64_t flags = ((w - kOnes * 0x20) & ~w & kHighs)  // below 0x20
                                  | (w & kHighs)                      // 0x80 and above
                                  | zero_byte(w ^ (kOnes * 0x7F)) |
                                  (zero_byte(w ^ (kOnes * Except)) | ... | 0);
      if (flags != 0) return i + static_cast<std::size_t>(std::countr_zero(flags)) / 8;
      i += 8;
    }
  }
  while (i < s.size() && printable_except<Except...>(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// Whether append_json_string() copies the byte `c` as it is: printable ASCII but '"' and '\\'
// (DEL is escaped too). For a text that is written as JSON without it (a constant), check it.
constexpr bool json_as_is(unsigned char c) { return printable_except<'"', '\\'>(c); }
constexpr bool json_as_is(std::string_view s) {
  for (const char c : s) {
    if (!json_as_is(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Length (2 to 4) of the well-formed UTF-8 sequence that starts at s[i], a byte >= 0x80; 0 when
// none does there. The second byte's range depends on the lead (RFC 3629 §4), which rules out
// overlong forms (C0, C1, E0 80-9F, F0 80-8F), surrogates (ED A0-BF) and code points above
// U+10FFFF (F4 90+, F5+).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);
// Whether all of `s` is well-formed UTF-8 (ASCII included).
bool valid_utf8(std::string_view s);

// `bytes` in standard base64 (RFC 4648 §4), with padding.
std::string base64(std::string_view bytes);

// Whether `s` is base64 (RFC 4648) in the one spelling an encoder writes: only the alphabet's
// characters (§4's "+/", or §5's URL-safe "-_" when `url`), the bits left over in the last
// character zero, and padding: '=' to a multiple of 4 characters, only at the end (§4), or none
// at all (`url`, as JWS writes it; then a length of 4n + 1 is no encoding). Decoders part on
// every other spelling: Node.js reads "-" and "_" in standard base64 and stops at the first '=',
// Python's b64decode drops them and skips an '=' between groups, both ignore the leftover bits.
bool canonical_base64(std::string_view s, bool url);

// An Authorization value's scheme and credentials, split at its first SP or HTAB, the
// credentials trimmed ("Bearer \t tok" -> "Bearer", "tok"). A value without whitespace is
// credentials without a scheme ("tok" -> "", "tok"; "Basic" alone is no Basic credentials).
struct AuthorizationParts {
  std::string_view scheme;
  std::string_view credentials;
};
AuthorizationParts split_authorization(std::string_view value);

// The signature of `token` when it is written as a JWS ("eyJ<header>.<payload>.<signature>", as
// JWTs are: a base64url JSON header, and exactly two dots), else nullopt.
std::optional<std::string_view> jws_signature(std::string_view token);

// `s` without leading and trailing SP and HTAB.
constexpr std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// ASCII case-insensitive equality (header names, schemes, host names).
constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// Field names equal as CGI-style servers compare them: in any case, '_' read as '-' (they map
// both to '_': X_API_Key and X-API-Key are one field there).
constexpr bool same_field_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// RFC 9110 tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~".
constexpr bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace fg::util
