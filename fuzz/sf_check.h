// sf_check.h — a strict reader of the Structured Field Values that floodgate writes
// (RFC 9651; docs/headers.md): an sf-list of items, each an sf-string with Integer parameters,
// members separated by ", " exactly as the serializer of RFC 9651 §4.1.1 writes them. Anything
// else is refused, so a fuzz target can check that the writer's output is well formed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fg::fuzz {

struct SfItem {
  std::string name;  // the sf-string, unescaped
  std::vector<std::pair<std::string, std::int64_t>> params;
};

namespace sf_detail {

inline bool is_lcalpha(char c) { return c >= 'a' && c <= 'z'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// sf-string = DQUOTE *( unescaped / "%" / "\" ( DQUOTE / "\" ) ) DQUOTE, printable ASCII only.
inline std::optional<std::string> string(std::string_view& s) {
  if (s.empty() || s.front() != '"') return std::nullopt;
  s.remove_prefix(1);
  std::string out;
  while (!s.empty()) {
    const char c = s.front();
    s.remove_prefix(1);
    if (c == '"') return out;
    if (c == '\\') {
      if (s.empty() || (s.front() != '"' && s.front() != '\\')) return std::nullopt;
      out += s.front();
      s.remove_prefix(1);
      continue;
    }
    if (c < 0x20 || c > 0x7e) return std::nullopt;
    out += c;
  }
  return std::nullopt;  // no closing quote
}

// key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
inline std::optional<std::string> key(std::string_view& s) {
  if (s.empty() || !(is_lcalpha(s.front()) || s.front() == '*')) return std::nullopt;
  std::size_t n = 1;
  while (n < s.size() && (is_lcalpha(s[n]) || is_digit(s[n]) || s[n] == '_' || s[n] == '-' ||
                          s[n] == '.' || s[n] == '*')) {
    ++n;
  }
  std::string out(s.substr(0, n));
  s.remove_prefix(n);
  return out;
}

// sf-integer = ["-"] 1*15DIGIT (the canonical form: no leading zeros but for 0 itself).
inline std::optional<std::int64_t> integer(std::string_view& s) {
  bool negative = false;
  if (!s.empty() && s.front() == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  std::size_t n = 0;
  while (n < s.size() && is_digit(s[n])) ++n;
  if (n == 0 || n > 15) return std::nullopt;
  if (n > 1 && s.front() == '0') return std::nullopt;
  if (negative && n == 1 && s.front() == '0') return std::nullopt;  // "-0"
  std::int64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = v * 10 + (s[i] - '0');
  s.remove_prefix(n);
  return negative ? -v : v;
}

}  // namespace sf_detail

// The items of an sf-list, or nullopt if `s` is not exactly one in the canonical form. An empty
// list is the empty string.
inline std::optional<std::vector<SfItem>> parse_sf_list(std::string_view s) {
  std::vector<SfItem> out;
  if (s.empty()) return out;
  for (;;) {
    SfItem item;
    auto name = sf_detail::string(s);
    if (!name) return std::nullopt;
    item.name = std::move(*name);
    while (!s.empty() && s.front() == ';') {
      s.remove_prefix(1);
      auto k = sf_detail::key(s);
      if (!k || s.empty() || s.front() != '=') return std::nullopt;
      s.remove_prefix(1);
      auto v = sf_detail::integer(s);
      if (!v) return std::nullopt;
      for (const auto& [pk, pv] : item.params) {
        if (pk == *k) return std::nullopt;  // a key appears once
      }
      item.params.emplace_back(std::move(*k), *v);
    }
    out.push_back(std::move(item));
    if (s.empty()) return out;
    if (!s.starts_with(", ")) return std::nullopt;
    s.remove_prefix(2);
  }
}

// A non-negative decimal integer as the legacy fields and Retry-After carry it ("0", "12";
// no sign, no leading zero, at most INT64_MAX), or nullopt.
inline std::optional<std::int64_t> parse_delta_seconds(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  if (s.size() > 1 && s.front() == '0') return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (!sf_detail::is_digit(c)) return std::nullopt;
    const int d = c - '0';
    if (v > (INT64_MAX - d) / 10) return std::nullopt;  // beyond int64: no figure is
    v = v * 10 + d;
  }
  return v;
}

}  // namespace fg::fuzz
