#include "util/text.h"

#include <algorithm>
#include <cstdint>

namespace fg::util {
namespace {

constexpr bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

void append_u00(std::string& out, unsigned c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u00";
  out.push_back(kHex[(c >> 4) & 0xF]);
  out.push_back(kHex[c & 0xF]);
}

}  // namespace

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return 0;  // ASCII, a stray continuation byte, C0, C1 or F5-FF
  }
  if (s.size() - i < len) return 0;
  const auto second = static_cast<unsigned char>(s[i + 1]);
  if (second < lo || second > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (!is_continuation(static_cast<unsigned char>(s[i + k]))) return 0;
  }
  return len;
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t group = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) group |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) group |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(group >> 18) & 63];
    out += kAlphabet[(group >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(group >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[group & 63] : '=';
  }
  return out;
}

AuthorizationParts split_authorization(std::string_view value) {
  value = trim_ows(value);
  const std::size_t gap = value.find_first_of(" \t");
  if (gap == std::string_view::npos) return {{}, value};
  return {value.substr(0, gap), trim_ows(value.substr(gap))};
}

std::optional<std::string_view> jws_signature(std::string_view token) {
  if (!token.starts_with("eyJ") || std::count(token.begin(), token.end(), '.') != 2) {
    return std::nullopt;
  }
  return token.substr(token.rfind('.') + 1);
}

bool canonical_base64(std::string_view s, bool url) {
  std::size_t n = s.size();
  if (!url) {
    if (n % 4 != 0) return false;
    for (int pad = 0; pad < 2 && n > 0 && s[n - 1] == '='; ++pad) --n;
  } else if (n % 4 == 1) {
    return false;
  }
  int last = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (c >= 'A' && c <= 'Z') {
      last = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      last = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      last = c - '0' + 52;
    } else if (c == (url ? '-' : '+')) {
      last = 62;
    } else if (c == (url ? '_' : '/')) {
      last = 63;
    } else {
      return false;
    }
  }
  // 4n + 2 characters carry 4 bits too many, 4n + 3 two; padding stands for the missing ones.
  const int spare = n % 4 == 2 ? 4 : n % 4 == 3 ? 2 : 0;
  return (last & ((1 << spare) - 1)) == 0;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    // A run of printable ASCII but '"' and '\\' (json_as_is; most strings are one) is copied in
    // one piece.
    const std::size_t plain = printable_run<'"', '\\'>(s, i);
    if (plain > i) {
      out.append(s.data() + i, plain - i);
      i = plain;
      continue;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7F) {
            append_u00(out, c);  // JSON requires < 0x20; DEL too, so no raw control reaches a tty
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) {
      out += "\\ufffd";  // one per invalid byte; the rest of the string is still read
      ++i;
    } else if (len == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      // U+0080-U+009F, the C1 controls: valid JSON raw, but some terminals act on them (CSI).
      append_u00(out, static_cast<unsigned char>(s[i + 1]));
      i += 2;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  out.push_back('"');
}

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

}  // namespace fg::util
