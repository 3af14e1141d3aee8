#include "http/canonical.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>

namespace fg::http {
namespace {

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

bool ieq(std::string_view a, std::string_view b) {
  return boost::beast::iequals(boost::beast::string_view(a.data(), a.size()),
                               boost::beast::string_view(b.data(), b.size()));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Written as themselves in a canonical path segment: unreserved, sub-delimiters but ';' (which
// is refused), ':' and '@' (RFC 3986 §3.3 pchar). Everything else is percent-encoded.
bool is_raw_pchar(unsigned char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("-._~!$&'()*+,=:@").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Whether `path` is already canonical and can be kept as it is (most paths).
bool already_canonical(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  char prev = 0;
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c == '/') {
      if (prev == '/') return false;  // an empty segment
    } else if (c == '.' && prev == '/') {
      const std::size_t end = path.find('/', i);
      const std::string_view seg = path.substr(i, end == std::string_view::npos ? end : end - i);
      if (seg == "." || seg == "..") return false;
    } else if (!is_raw_pchar(c)) {
      return false;  // '%', '\', ';', a space, non-ASCII ...
    }
    prev = static_cast<char>(c);
  }
  return true;
}

std::optional<std::string> refuse(std::string why) { return std::optional<std::string>(why); }

}  // namespace

CanonicalPath canonical_path(std::string_view path) {
  CanonicalPath out;
  if (already_canonical(path)) {
    out.path = std::string(path);
    return out;
  }
  if (path.empty() || path.front() != '/') {
    out.error = "the request target's path must start with '/'";
    return out;
  }
  // Decode every escape once, into segments (only a raw '/' separates them).
  std::vector<std::string> segments;
  std::string seg;
  bool trailing_slash = false;
  const auto end_segment = [&](bool last) {
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      trailing_slash = last;
    } else if (seg.empty() || seg == ".") {
      trailing_slash = last;
    } else {
      segments.push_back(std::move(seg));
      trailing_slash = false;
    }
    seg.clear();
  };
  for (std::size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size()) {
      end_segment(true);
      break;
    }
    auto c = static_cast<unsigned char>(path[i]);
    if (c == '/') {
      end_segment(false);
      continue;
    }
    if (c == '%') {
      const int hi = i + 2 < path.size() ? hex_value(path[i + 1]) : -1;
      const int lo = i + 2 < path.size() ? hex_value(path[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        out.error = "the path has a '%' that starts no %XX escape";
        return out;
      }
      c = static_cast<unsigned char>(hi * 16 + lo);
      i += 2;
      if (c == '/' || c == '\\') {
        out.error = "the path has an encoded '/' or '\\' (%2F, %5C), which servers read differently";
        return out;
      }
      if (c == '%') {
        out.error = "the path has an encoded '%' (%25), which a server decoding twice would read "
                    "as another escape";
        return out;
      }
    } else if (c == '\\') {
      out.error = "the path has a '\\', which many servers read as '/'";
      return out;
    }
    if (is_control(c)) {
      out.error = "the path has a control character";
      return out;
    }
    if (c == ';') {
      out.error = "the path has a ';', which many servers strip with what follows in its segment";
      return out;
    }
    seg += static_cast<char>(c);
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const std::string& s : segments) {
    out.path += '/';
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (is_raw_pchar(c)) {
        out.path += ch;
      } else {
        out.path += '%';
        out.path += kHex[c >> 4];
        out.path += kHex[c & 15];
      }
    }
  }
  if (out.path.empty() || trailing_slash) out.path += '/';
  return out;
}

std::optional<std::string> canonicalize(Request& req, const std::vector<std::string>& single) {
  // Method: upper case.
  const std::string_view method = sv(req.method_string());
  if (std::any_of(method.begin(), method.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
    std::string upper(method);
    for (char& c : upper) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    req.method_string(upper);
  }

  // Fields read by floodgate: at most one of each.
  if (req.count(boost::beast::http::field::host) > 1) return refuse("more than one Host field");
  for (const std::string& name : single) {
    if (req.count(boost::beast::string_view(name.data(), name.size())) > 1) {
      return refuse("more than one " + name + " field");
    }
  }

  std::string_view target = sv(req.target());
  if (target.find('#') != std::string_view::npos) {
    return refuse("the request target has a fragment ('#')");
  }
  if (target == "*") {
    if (req.method() != boost::beast::http::verb::options) {
      return refuse("the target '*' is for OPTIONS only");
    }
    return std::nullopt;
  }
  std::string authority;
  bool absolute = false;
  if (target.empty() || target.front() != '/') {
    const std::size_t colon = target.find("://");
    const std::string_view scheme = target.substr(0, colon);
    if (colon == std::string_view::npos || !(ieq(scheme, "http") || ieq(scheme, "https"))) {
      return refuse("the request target must be a path (\"/...\") or an http(s) absolute URI");
    }
    const std::size_t start = colon + 3;
    const std::size_t slash = target.find_first_of("/?", start);
    authority = std::string(target.substr(start, slash == std::string_view::npos ? slash
                                                                                 : slash - start));
    if (authority.empty()) return refuse("the absolute URI has no host");
    target = slash == std::string_view::npos ? std::string_view() : target.substr(slash);
    absolute = true;
  }
  const std::size_t q = target.find('?');
  const std::string_view raw_path =
      q == std::string_view::npos ? (target.empty() ? std::string_view("/") : target)
                                  : (q == 0 ? std::string_view("/") : target.substr(0, q));
  const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q);
  CanonicalPath cp = canonical_path(raw_path);
  if (!cp.error.empty()) return refuse(std::move(cp.error));
  if (absolute || cp.path != raw_path) {
    std::string t = std::move(cp.path);
    t += query;
    req.target(t);
  }
  if (absolute) req.set(boost::beast::http::field::host, authority);
  return std::nullopt;
}

std::string_view target_path(const Request& req) {
  const std::string_view t = sv(req.target());
  return t.substr(0, t.find('?'));
}

}  // namespace fg::http
