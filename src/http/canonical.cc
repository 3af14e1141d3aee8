#include "http/canonical.h"

#include <algorithm>
#include <array>
#include <boost/beast/core/string.hpp>
#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <utility>

#include "decide/plan.h"
#include "util/text.h"

namespace fg::http {
namespace {

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Letters, digits and `extra`, as a table: every byte of a request's path and Host is looked up
// in one, so membership is one load rather than a search of `extra`.
class ByteSet {
 public:
  constexpr explicit ByteSet(std::string_view extra) {
    for (int c = 0; c < 256; ++c) {
      in_[c] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    }
    for (const char c : extra) in_[static_cast<unsigned char>(c)] = true;
  }
  constexpr bool operator()(unsigned char c) const { return in_[c]; }

 private:
  std::array<bool, 256> in_{};
};

// Written as themselves in a canonical path segment: unreserved, sub-delimiters but ';' (which
// is refused), ':' and '@' (RFC 3986 §3.3 pchar). Everything else is percent-encoded.
constexpr ByteSet is_raw_pchar("-._~!$&'()*+,=:@");

// A reg-name's bytes (RFC 3986 §3.2.2): unreserved and sub-delimiters.
constexpr ByteSet is_reg_name("-._~!$&'()*+,;=");

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Whether `path` is already canonical and can be kept as it is (most paths).
bool already_canonical(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  char prev = 0;
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c == '/') {
      if (prev == '/' || prev == '.') return false;  // an empty segment; one ending with '.'
    } else if (c == '.' && prev == '/') {
      const std::size_t end = path.find('/', i);
      const std::string_view seg = path.substr(i, end == std::string_view::npos ? end : end - i);
      if (seg == "." || seg == "..") return false;
    } else if (!is_raw_pchar(c)) {
      return false;  // '%', '\', ';', a space, non-ASCII ...
    }
    prev = static_cast<char>(c);
  }
  return prev != '.';
}

std::optional<std::string> refuse(std::string why) { return std::optional<std::string>(why); }

// Field names as CGI-style servers compare them (X_API_Key is X-API-Key there).
constexpr auto same_field = util::same_field_name;

// Whether `host` is a uri-host with an optional port (RFC 9112 §3.2, RFC 3986 §3.2.2): a name
// of letters, digits and -._~!$&'()*+,;= or an IP literal in brackets, then ':' and digits; or
// empty. RFC 9112 makes any other Host a 400, and the bytes it excludes are where readers part:
// a WHATWG URL parser (Node.js's `new URL(req.url, "http://" + host)`) reads
// "api.example.com/x", "...?x", "...#x" and "...\\x" as api.example.com, percent-decodes
// "api%2Eexample.com" and maps fullwidth letters to ASCII (IDNA), so a policy on a host
// would not have counted them.
bool valid_host(std::string_view host) {
  std::size_t i = 0;
  if (!host.empty() && host.front() == '[') {
    const std::size_t close = host.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      if (hex_value(host[i]) < 0 && host[i] != ':' && host[i] != '.') return false;
    }
    i = close + 1;
  } else {
    while (i < host.size() && is_reg_name(static_cast<unsigned char>(host[i]))) ++i;
  }
  if (i == host.size()) return true;
  if (host[i] != ':') return false;
  return std::all_of(host.begin() + static_cast<std::ptrdiff_t>(i) + 1, host.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// Calls f(entry) for each host an upstream behind a proxy may read instead of Host in one field's
// `value`, as written: each comma-separated entry of an X-Forwarded-Host field
// (`x_forwarded_host`), or what follows each "host=" anywhere in a Forwarded field (spaces
// around '=' allowed) up to the next ',' or ';', quotes and all, so a host parameter that holds
// a quoted ',' or ';' comes in pieces.
template <typename F>
void forwarded_hosts_in(bool x_forwarded_host, std::string_view value, F f) {
  if (x_forwarded_host) {
    for (std::size_t start = 0; start <= value.size();) {
      const std::size_t comma = std::min(value.find(',', start), value.size());
      f(value.substr(start, comma - start));
      start = comma + 1;
    }
    return;
  }
  for (std::size_t at = 0; at + 4 <= value.size(); ++at) {
    if (!util::iequals(value.substr(at, 4), "host")) continue;
    std::size_t i = at + 4;
    while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
    if (i == value.size() || value[i] != '=') continue;
    ++i;
    const std::size_t end = std::min(value.find_first_of(",;", i), value.size());
    f(value.substr(i, end - i));
  }
}

// Whether a field named `name` is X-Forwarded-Host (1), Forwarded (0), or neither (-1).
int forwarded_kind(std::string_view name) {
  if (same_field(name, "X-Forwarded-Host")) return 1;
  return same_field(name, "Forwarded") ? 0 : -1;
}

// forwarded_hosts_in() over every field of the request.
template <typename F>
void for_each_forwarded_host(const Request& req, F f) {
  for (const auto& field : req) {
    const int kind = forwarded_kind(sv(field.name_string()));
    if (kind >= 0) forwarded_hosts_in(kind == 1, sv(field.value()), f);
  }
}

// Whether a Forwarded field's value is a list of plain parameters, which every reader splits
// alike: elements separated by ',', pairs by ';', each pair a token, '=' (spaces around it
// allowed), and a token or a quoted string with no quote, backslash, ',' or ';' inside; empty
// elements allowed. Readers unquote and unescape parameter names too (Symfony's HeaderUtils
// reads `"host"=a`, `ho""st=a` and `h\ost=a` as host=a), which a scan for "host=" would miss.
bool plain_forwarded(std::string_view v) {
  const auto tchar = util::is_tchar;
  const auto ows = [&v](std::size_t& i) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) ++i;
  };
  std::size_t i = 0;
  for (;;) {
    ows(i);
    if (i == v.size()) return true;
    if (v[i] == ',' || v[i] == ';') {  // an empty element or pair
      ++i;
      continue;
    }
    const std::size_t name = i;
    while (i < v.size() && tchar(v[i])) ++i;
    if (i == name) return false;
    ows(i);
    if (i == v.size() || v[i] != '=') return false;
    ++i;
    ows(i);
    if (i < v.size() && v[i] == '"') {
      const std::size_t close = v.find_first_of("\"\\,;", i + 1);
      if (close == std::string_view::npos || v[close] != '"') return false;
      i = close + 1;
    } else {
      const std::size_t value = i;
      while (i < v.size() && tchar(v[i])) ++i;
      // A host or an address with a port, an IPv6 literal in brackets: ':', '[' and ']' too.
      while (i < v.size() && (tchar(v[i]) || v[i] == ':' || v[i] == '[' || v[i] == ']')) ++i;
      if (i == value) return false;
    }
    ows(i);
    if (i == v.size()) return true;
    if (v[i] != ',' && v[i] != ';') return false;
    ++i;
  }
}

// Whether a forwarded host entry (for_each_forwarded_host) reads the same to every reader: no
// quote or backslash, or one quoted string around a host that has neither. Readers unquote
// differently: Symfony's HeaderUtils (and tests/fixtures/lenient_upstream.cc) drop every '"',
// so `host=api".example.com"` is api.example.com there, and api to a reader that stops at the
// first quote; an RFC 7239 reader takes a backslash as an escape, and a quoted ',' or ';' as part
// of the host, where a reader that splits first cuts the host there.
bool plainly_quoted(std::string_view entry) {
  const std::string_view e = util::trim_ows(entry);
  if (e.find_first_of("\"\\") == std::string_view::npos) return true;
  return e.size() >= 2 && e.front() == '"' && e.back() == '"' &&
         e.substr(1, e.size() - 2).find_first_of("\"\\") == std::string_view::npos;
}

// The header fields in which frameworks let a POST name the method to run instead (Rack,
// Symfony, ASP.NET Core and gorilla read the first; others the other two).
constexpr std::string_view kMethodOverrideFields[] = {"X-HTTP-Method-Override", "X-HTTP-Method",
                                                      "X-Method-Override"};

// `s` with every %XX escape decoded and '+' read as a space, as query parameters are read.
std::string form_decoded(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// Whether a query parameter's name is `_method` as the most forgiving framework reads it:
// decoded, without leading spaces, '.' and spaces as '_' (PHP), an array suffix cut, any case.
bool names_method_parameter(std::string_view raw_name) {
  std::string name = form_decoded(raw_name);
  name.erase(0, name.find_first_not_of(' '));
  name.resize(std::min(name.size(), name.find('[')));
  for (char& c : name) {
    if (c == '.' || c == ' ') c = '_';
  }
  return util::iequals(name, "_method");
}

// Why a field named `name` with `value` names another method than the request's `method`, or
// nullopt (not a method-override field, or naming the request's own method). Frameworks run the
// handler of the method a POST names in a method-override field or a `_method` query parameter
// (Laravel and Spring's HiddenHttpMethodFilter read the query too), so a policy on DELETE would
// not count a POST that the upstream runs as DELETE. Naming its own method changes nothing and is
// let through.
std::optional<std::string> other_method_in_field(std::string_view name, std::string_view value,
                                                 std::string_view method) {
  for (const std::string_view field : kMethodOverrideFields) {
    if (same_field(name, field) && !util::iequals(util::trim_ows(value), method)) {
      return std::string(field) + " names another method than the request's " +
             std::string(method) + ": send that method itself";
    }
  }
  return std::nullopt;
}

// The same for the query's `_method` parameters ("?a=1&_method=DELETE": parameters are split on
// '&', and by some servers on ';').
std::optional<std::string> other_method_in_query(std::string_view query, std::string_view method) {
  std::string_view rest = query.empty() ? query : query.substr(1);
  while (!rest.empty()) {
    const std::size_t end = rest.find_first_of("&;");
    const std::string_view param = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    const std::size_t eq = param.find('=');
    if (eq == std::string_view::npos || !names_method_parameter(param.substr(0, eq))) continue;
    if (!util::iequals(util::trim_ows(form_decoded(param.substr(eq + 1))), method)) {
      return "the query's _method names another method than the request's " + std::string(method) +
             ": send that method itself";
    }
  }
  return std::nullopt;
}

// The header fields in which some frameworks take the path to route instead of the request
// line's: X-Original-URL and X-Rewrite-URL (Symfony before 2.7.49/3.4.14/4.1.3, Zend Framework,
// and servers fronted by IIS URL Rewrite trust them).
constexpr std::string_view kPathOverrideFields[] = {"X-Original-URL", "X-Rewrite-URL"};

// The name of kPathOverrideFields a field named `name` is, or "".
std::string_view path_override_field(std::string_view name) {
  for (const std::string_view field : kPathOverrideFields) {
    if (same_field(name, field)) return field;
  }
  return {};
}

// Why a path-override field (path_override_field) whose `value` names another path to route than
// the request's own (canonical `path`) is refused, or nullopt. Only one naming exactly that path
// (before any '?') is let through: the field is forwarded as written, and readers parse it
// differently (a '#' starts a fragment to a URI parser, Symfony before its fix did not resolve
// "..").
std::optional<std::string> other_path_named(std::string_view field, std::string_view value,
                                            std::string_view path) {
  value = util::trim_ows(value);
  if (value.substr(0, value.find('?')) != path || value.find('#') != std::string_view::npos) {
    return std::string(field) + " names another path than the request's: send that path itself";
  }
  return std::nullopt;
}

// Whether canonical_host(host) is `host` itself (most Hosts), found without building it.
bool canonical_already(std::string_view host) {
  const std::string_view name = decide::host_name(host);
  if (std::any_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return false;
  }
  return name.size() == host.size() || host[name.size()] == ':';
}

// Why the value of a field floodgate reads (`name`) is refused, or nullopt: spellings that
// upstreams read as the same value, which would each be another client here.
// - A byte that is not printable ASCII: servers decode field values as Latin-1 (WSGI, Node.js)
//   and frameworks trim them as text, so "tok\xa0" is "tok" to Python's strip() (U+00A0, U+0085,
//   U+001C-U+001F too) and JavaScript's trim() (U+00A0).
// - Basic credentials that are not canonical base64 (util::canonical_base64): decoders part on
//   the rest (Node.js reads '-', '_' and stops at the first '=', Python drops '-', '_' and skips
//   an '=' between groups), so "Ym9i-Om..." is bob's to one of them, whichever this one read.
// - Authorization credentials with whitespace inside ("Bearer <token> junk"): servers take the
//   first word after the scheme (authHeader.split(' ')[1], passport-jwt), so each junk word made
//   a new client of one token.
// - A JWS ("eyJ<header>.<payload>.<signature>", as JWTs are written: Authorization's credentials
//   whatever the scheme, a value without one, or the whole value of another field) whose
//   signature is not canonical base64url: verifiers decode it leniently (jsonwebtoken ignores the
//   bits left over in its last character, PyJWT drops characters outside the alphabet), so one
//   signed token had 16 spellings, each verified as the same subject.
std::optional<std::string> ambiguous_value(const std::string& name, std::string_view value) {
  for (const char c : value) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x7f || (b < 0x20 && b != '\t')) {
      return name +
             " holds a byte that is not printable ASCII, which upstreams trim or decode otherwise: "
             "send ASCII";
    }
  }
  // The token a JWS would be: the field's value, or Authorization's credentials.
  std::string_view token = value;
  if (util::iequals(name, "Authorization")) {
    const auto [scheme, credentials] = util::split_authorization(value);
    token = credentials;
    if (token.find_first_of(" \t") != std::string_view::npos) {
      return std::string(
          "Authorization's credentials hold whitespace: servers that take the first word after "
          "the scheme would read many values as one; send one token");
    }
    if (util::iequals(scheme, "Basic") && !util::canonical_base64(token, false)) {
      return std::string(
          "Authorization's Basic credentials are not base64 as encoders write it (A-Z a-z 0-9 + "
          "/, '=' only as padding, no leftover bits): decoders read other spellings differently");
    }
  }
  if (const auto signature = util::jws_signature(token);
      signature && !util::canonical_base64(*signature, true)) {
    return name +
           " holds a JWS whose signature is not base64url as encoders write it (A-Z a-z 0-9 - _, "
           "no padding, no leftover bits): verifiers read other spellings as the same signature";
  }
  return std::nullopt;
}

// What one pass over a request's fields found, for canonicalize() to judge in its order.
struct FieldScan {
  std::size_t hosts = 0;                  // Host fields
  std::string_view host;                  // the first one's value
  std::optional<std::string> single;      // the first refusal of a field floodgate reads
  std::optional<std::string> connection;  // the first refusal of a Connection token
  bool forwarded_plain = true;            // every Forwarded field is plain_forwarded()
  bool hosts_plainly_quoted = true;       // every forwarded host entry is plainly_quoted()
  bool hosts_valid = true;                // every forwarded host is valid_host()
  std::optional<std::string> method;      // the first field naming another method
  // The path-override fields (their names as floodgate spells them, and values).
  boost::container::small_vector<std::pair<std::string_view, std::string_view>, 2> paths;
};

// One pass over `req`'s fields (each name compared once per rule), for canonicalize().
FieldScan scan_fields(const Request& req, const std::vector<std::string>& single,
                      std::string_view method) {
  FieldScan scan;
  boost::container::small_vector<std::uint32_t, 8> seen(single.size(), 0);
  for (const auto& f : req) {
    const std::string_view spelled = sv(f.name_string());
    const std::string_view value = sv(f.value());
    if (f.name() == boost::beast::http::field::host && scan.hosts++ == 0) scan.host = value;
    for (std::size_t i = 0; i < single.size() && !scan.single; ++i) {
      const std::string& name = single[i];
      if (!same_field(spelled, name)) continue;
      if (!util::iequals(spelled, name)) {
        scan.single = std::string(spelled) + " is " + name +
                      " to servers that read '_' as '-': spell it " + name;
      } else if (++seen[i] > 1) {
        scan.single = "more than one " + name + " field";
      } else if (value.find(',') != std::string_view::npos) {
        scan.single = name + " holds a list (a ','): send one value";
      } else {
        scan.single = ambiguous_value(name, value);
      }
    }
    if (f.name() == boost::beast::http::field::connection && !scan.connection) {
      for (std::size_t start = 0; start <= value.size() && !scan.connection;) {
        const std::size_t comma = std::min(value.find(',', start), value.size());
        const std::string_view t = util::trim_ows(value.substr(start, comma - start));
        if (same_field(t, "Host")) scan.connection = "Connection names Host";
        for (const std::string& name : single) {
          if (!scan.connection && same_field(t, name)) scan.connection = "Connection names " + name;
        }
        start = comma + 1;
      }
    }
    if (const int kind = forwarded_kind(spelled); kind >= 0) {
      if (kind == 0 && !plain_forwarded(value)) scan.forwarded_plain = false;
      forwarded_hosts_in(kind == 1, value, [&scan](std::string_view entry) {
        if (!plainly_quoted(entry)) {
          scan.hosts_plainly_quoted = false;
          return;
        }
        // Plainly quoted: the host is the entry without its spaces and its one pair of quotes.
        std::string_view host = util::trim_ows(entry);
        if (host.size() >= 2 && host.front() == '"') host = host.substr(1, host.size() - 2);
        if (!host.empty() && !valid_host(host)) scan.hosts_valid = false;
      });
    }
    if (!scan.method) scan.method = other_method_in_field(spelled, value, method);
    if (const std::string_view field = path_override_field(spelled); !field.empty()) {
      scan.paths.emplace_back(field, value);
    }
  }
  return scan;
}

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
        out.error =
            "the path has an encoded '/' or '\\' (%2F, %5C), which servers read differently";
        return out;
      }
      if (c == '%') {
        out.error =
            "the path has an encoded '%' (%25), which a server decoding twice would read "
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
  for (const std::string& s : segments) {
    if (s.back() == '.' || s.back() == ' ') {
      out.error = "a path segment ends with '.' or a space, which some servers strip";
      return out;
    }
    // Servers that decode ill-formed UTF-8 leniently read overlong forms (%C0%AF) and the like
    // as '/', '.' or '\\'.
    if (!util::valid_utf8(s)) {
      out.error = "the path is not well-formed UTF-8 once decoded";
      return out;
    }
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

  // Fields read by floodgate: at most one of each (X_API_Key counts as X-API-Key: CGI-style
  // servers read both as one), spelled as floodgate reads it (alone, X_API_Key would be another
  // field to floodgate and X-API-Key to such a server), one value (no list: "k1, k2" is two
  // fields to RFC 9110), and none of them named by Connection, which would drop it on the way to
  // the upstream.
  const FieldScan scan = scan_fields(req, single, sv(req.method_string()));
  if (scan.hosts > 1) return refuse("more than one Host field");
  if (scan.single) return scan.single;
  if (scan.connection) return scan.connection;
  // No Host: an HTTP/1.1 request must have one (RFC 9112 §3.2); an absolute-form target's
  // authority stands in for it (below). An HTTP/1.0 request may lack it, and is given an empty
  // one: forwarded without it, it would get the name of floodgate's `upstream` as its Host
  // (make_upstream_request), which a policy on Host may limit, without having matched it.
  bool set_empty_host = false;
  if (scan.hosts == 0) {
    const std::string_view t = sv(req.target());
    if (t.empty() || t.front() == '/' || t == "*") {
      if (req.version() >= 11) return refuse("an HTTP/1.1 request must have a Host field");
      set_empty_host = true;
    }
  }
  // What upstreams behind a proxy read instead of Host: host names too, quoted plainly if at all,
  // in a Forwarded field every reader splits alike.
  if (!scan.forwarded_plain) {
    return refuse(
        "Forwarded is not a list of token=value parameters (a token, or a quoted string without "
        "quotes, backslashes, ',' or ';' inside)");
  }
  if (!scan.hosts_plainly_quoted) {
    return refuse(
        "X-Forwarded-Host or Forwarded quotes a host otherwise than as one quoted string without "
        "quotes, backslashes, ',' or ';' inside");
  }
  if (!scan.hosts_valid) {
    return refuse("X-Forwarded-Host or Forwarded names a host that is not a host name");
  }
  // Host: lower case, without a trailing dot; no userinfo.
  bool rewrite_host = false;
  if (scan.hosts == 1) {
    if (scan.host.find('@') != std::string_view::npos) return refuse("Host has userinfo ('@')");
    if (!valid_host(scan.host)) return refuse("Host is not a host name or address with a port");
    rewrite_host = !canonical_already(scan.host);
  }
  // The request is changed only from here on (the scan's views are into its fields).
  if (set_empty_host) req.set(boost::beast::http::field::host, "");
  if (rewrite_host) req.set(boost::beast::http::field::host, canonical_host(scan.host));

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
    if (colon == std::string_view::npos ||
        !(util::iequals(scheme, "http") || util::iequals(scheme, "https"))) {
      return refuse("the request target must be a path (\"/...\") or an http(s) absolute URI");
    }
    const std::size_t start = colon + 3;
    const std::size_t slash = target.find_first_of("/?", start);
    authority =
        std::string(target.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (authority.empty()) return refuse("the absolute URI has no host");
    if (authority.find('@') != std::string::npos) {
      return refuse("the absolute URI has userinfo ('@')");
    }
    if (!valid_host(authority)) {
      return refuse("the absolute URI's host is not a host name or address with a port");
    }
    authority = canonical_host(authority);
    target = slash == std::string_view::npos ? std::string_view() : target.substr(slash);
    absolute = true;
  }
  const std::size_t q = target.find('?');
  const std::string_view raw_path = q == std::string_view::npos
                                        ? (target.empty() ? std::string_view("/") : target)
                                        : (q == 0 ? std::string_view("/") : target.substr(0, q));
  const std::string_view query =
      q == std::string_view::npos ? std::string_view() : target.substr(q);
  CanonicalPath cp = canonical_path(raw_path);
  if (!cp.error.empty()) return refuse(std::move(cp.error));
  if (scan.method) return scan.method;
  if (auto why = other_method_in_query(query, sv(req.method_string()))) return why;
  for (const auto& [field, value] : scan.paths) {
    if (auto why = other_path_named(field, value, cp.path)) return why;
  }
  if (absolute || cp.path != raw_path) {
    std::string t = std::move(cp.path);
    t += query;
    req.target(t);
  }
  if (absolute) req.set(boost::beast::http::field::host, authority);
  return std::nullopt;
}

std::string canonical_host(std::string_view host) {
  // "Example.COM.:80" -> "example.com:80"; "[::1]:80" stays. The name is what host_name() reads.
  const std::string_view name = decide::host_name(host);
  const std::size_t port = host.find(':', name.size());
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (port != std::string_view::npos) out += host.substr(port);
  return out;
}

std::string forwarded_hosts(const Request& req) {
  std::string out;
  for_each_forwarded_host(req, [&out](std::string_view h) {
    std::string clean;
    for (const char c : util::trim_ows(h)) {
      if (c != '"') clean += c;
    }
    if (clean.empty()) return;
    if (!out.empty()) out += ',';
    out += clean;
  });
  return out;
}

std::string_view target_path(const Request& req) {
  const std::string_view t = sv(req.target());
  return t.substr(0, t.find('?'));
}

}  // namespace fg::http
