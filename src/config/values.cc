#include "config/values.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

namespace fg::config {
namespace {

tl::unexpected<Error> invalid(std::string message) {
  return fail(ErrorCode::kInvalidArgument, std::move(message));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// Decimal digits only (no sign, no spaces), at most `max`.
std::optional<std::int64_t> parse_unsigned(std::string_view s, std::int64_t max) {
  if (!all_digits(s)) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    v = v * 10 + (c - '0');
    if (v > max) return std::nullopt;  // every max < 9e17, so v * 10 + 9 never overflows
  }
  return v;
}

std::optional<std::uint16_t> parse_port(std::string_view s, bool allow_zero) {
  const auto v = parse_unsigned(s, 65535);
  if (!v || (*v == 0 && !allow_zero)) return std::nullopt;
  return static_cast<std::uint16_t>(*v);
}

// RFC 1123 host names, plus '_' (container and service names use it). No resolution here.
bool is_hostname(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = s.find('.', start);
    const std::string_view label =
        s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// A host as it appears before ":port": [v6], dotted IPv4, or a hostname. Returns the host without
// brackets, or an error message.
Result<std::string> parse_host(std::string_view host, std::string_view whole) {
  if (host.empty()) return invalid(quote(whole) + " has no host");
  if (host.front() == '[') {
    if (host.back() != ']') return invalid(quote(whole) + ": unbalanced '['");
    const std::string_view inner = host.substr(1, host.size() - 2);
    const auto ip = parse_ip(inner);
    if (!ip || ip->family != IpAddress::Family::kIpv6) {
      return invalid(quote(inner) + " is not an IPv6 address");
    }
    return std::string(inner);
  }
  if (host.find(':') != std::string_view::npos) {
    return invalid(quote(whole) + ": an IPv6 address needs brackets, as in [::1]:8080");
  }
  // Only digits and dots: it can only be meant as an IPv4 address, so it must be one.
  if (std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; })) {
    if (!parse_ip(host)) return invalid(quote(host) + " is not an IPv4 address");
    return std::string(host);
  }
  if (!is_hostname(host)) return invalid(quote(host) + " is not a valid host name");
  return std::string(host);
}

// "host:port", "[v6]:port", and "host" alone when default_port is given.
Result<HostPort> parse_endpoint(std::string_view text, std::optional<std::uint16_t> default_port,
                                bool allow_port_zero) {
  std::string_view host = text;
  std::optional<std::string_view> port;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return invalid(quote(text) + ": unbalanced '['");
    host = text.substr(0, close + 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return invalid(quote(text) + " is not host:port");
      port = rest.substr(1);
    }
  } else if (const std::size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    // More than one colon without brackets: an IPv6 address; parse_host explains.
    if (text.find(':') == colon) {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
  }
  auto h = parse_host(host, text);
  if (!h) return tl::unexpected(h.error());
  if (!port) {
    if (!default_port) return invalid(quote(text) + " is not host:port (e.g. 127.0.0.1:8080)");
    return HostPort{std::move(*h), *default_port};
  }
  const auto p = parse_port(*port, allow_port_zero);
  if (!p) {
    return invalid(quote(text) + ": port must be " + (allow_port_zero ? "0-65535" : "1-65535"));
  }
  return HostPort{std::move(*h), *p};
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

const std::string_view kStoreUrlForms =
    "memory://, redis://host:port[/db], rediss://host:port[/db], "
    "redis-cluster://host:port[,host:port...] or rediss-cluster://host:port[,host:port...]";

}  // namespace

std::string quote(std::string_view text) {
  constexpr std::size_t kMaxShown = 64;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  out += '"';
  return out;
}

Result<Duration> parse_duration(std::string_view text) {
  const auto not_a_duration = [&] {
    if (all_digits(text) && text.size() <= 18) {
      return invalid(quote(text) + " is not a duration (use e.g. " + std::string(text) + "s)");
    }
    return invalid(quote(text) + " is not a duration (use a whole number and a unit: ms, s, m, " +
                   "h or d, e.g. 250ms, 30s, 5m)");
  };
  std::size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  if (digits == 0) return not_a_duration();
  const std::string_view unit = text.substr(digits);
  std::int64_t unit_us = 0;
  if (unit == "ms") {
    unit_us = 1'000;
  } else if (unit == "s") {
    unit_us = 1'000'000;
  } else if (unit == "m") {
    unit_us = 60'000'000;
  } else if (unit == "h") {
    unit_us = 3'600'000'000;
  } else if (unit == "d") {
    unit_us = 86'400'000'000;
  } else {
    return not_a_duration();
  }
  constexpr std::int64_t kMaxUs = std::int64_t{1'000'000} * 86'400'000'000;  // 10^6 days
  const auto n = parse_unsigned(text.substr(0, digits), kMaxUs / unit_us);
  if (!n) return invalid(quote(text) + " is too long (at most 1000000d)");
  if (*n == 0) return invalid("must be positive");
  return Duration(*n * unit_us);
}

std::string format_duration(Duration d) {
  const std::int64_t ms = (std::max<std::int64_t>(d.count(), 0) + 999) / 1000;
  if (ms == 0) return "0ms";
  static constexpr std::pair<std::int64_t, const char*> kUnits[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1'000, "s"}};
  for (const auto& [unit_ms, name] : kUnits) {
    if (ms % unit_ms == 0) return std::to_string(ms / unit_ms) + name;
  }
  return std::to_string(ms) + "ms";
}

Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero) {
  return parse_endpoint(text, std::nullopt, allow_port_zero);
}

std::string to_string(const HostPort& hp) {
  const bool v6 = hp.host.find(':') != std::string::npos;
  return (v6 ? "[" + hp.host + "]" : hp.host) + ":" + std::to_string(hp.port);
}

Result<HostPort> parse_upstream_url(std::string_view text) {
  constexpr std::string_view kScheme = "http://";
  if (text.starts_with("https://")) {
    return invalid(quote(text) + ": https upstreams are not supported (use http://host:port)");
  }
  if (!text.starts_with(kScheme)) return invalid(quote(text) + " is not an http://host:port URL");
  std::string_view rest = text.substr(kScheme.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return invalid(quote(text) + ": only http://host:port (no path, query or credentials)");
  }
  return parse_endpoint(rest, 80, false);
}

Result<std::string> parse_origin(std::string_view text) {
  if (text == "*") return std::string(text);
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  const std::size_t sep = lower.find("://");
  const std::string_view scheme = std::string_view(lower).substr(0, sep);
  if (sep == std::string::npos || (scheme != "http" && scheme != "https")) {
    return invalid(quote(text) + " is not an origin (e.g. https://app.example.com, or *)");
  }
  const std::string_view rest = std::string_view(lower).substr(sep + 3);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return invalid(quote(text) + " is not an origin: scheme://host[:port] only, without a path " +
                   "or a trailing '/'");
  }
  auto hp = parse_endpoint(rest, scheme == "https" ? 443 : 80, false);
  if (!hp) return tl::unexpected(hp.error());
  return lower;
}

std::string_view to_string(StoreKind k) {
  switch (k) {
    case StoreKind::kMemory:
      return "memory";
    case StoreKind::kRedis:
      return "redis";
    case StoreKind::kRedisCluster:
      return "redis-cluster";
  }
  return "unknown";
}

namespace {

// "ca=/x.pem&insecure=1" into url.tls_options; only rediss:// and rediss-cluster:// take these.
Result<void> parse_tls_query(std::string_view query, StoreUrl& url) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    auto value = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (!value) return invalid("store URL: bad percent-encoding in " + quote(name));
    if (!url.tls)
      return invalid("store URL: " + std::string(name) +
                     "= needs rediss:// or rediss-cluster:// (TLS)");
    StoreTls& tls = url.tls_options;
    if (name == "ca") {
      tls.ca_file = std::move(*value);
    } else if (name == "cert") {
      tls.cert_file = std::move(*value);
    } else if (name == "key") {
      tls.key_file = std::move(*value);
    } else if (name == "server_name" || name == "sni") {
      tls.server_name = std::move(*value);
    } else if (name == "insecure") {
      tls.verify = !(*value == "1" || *value == "true");
    } else {
      return invalid("store URL: unknown parameter " + quote(name) +
                     " (rediss:// takes ca, cert, key, server_name, insecure)");
    }
  }
  if (url.tls_options.cert_file.empty() != url.tls_options.key_file.empty()) {
    return invalid("store URL: cert and key go together");
  }
  return {};
}

}  // namespace

namespace {

// `text` with the password of its "user:password@" part replaced by "***", for messages: a store
// URL that fails to parse is still quoted in the error, which reaches logs and terminals. The
// credentials end at the last '@' (as parse_store_url reads them); an '@' further right (in the
// query) only hides more than it must.
std::string without_password(std::string_view text) {
  const std::size_t sep = text.find("://");
  const std::size_t start = sep == std::string_view::npos ? 0 : sep + 3;
  const std::size_t at = text.rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(text);
  const std::string_view userinfo = text.substr(start, at - start);
  const std::size_t colon = userinfo.find(':');
  std::string out(text.substr(0, start));
  if (colon != std::string_view::npos) out += userinfo.substr(0, colon + 1);
  out += "***";
  out += text.substr(at);
  return out;
}

}  // namespace

Result<StoreUrl> parse_store_url(std::string_view text) {
  const std::string shown = quote(without_password(text));
  const std::size_t sep = text.find("://");
  if (sep == std::string_view::npos) {
    return invalid(shown + " is not a store URL (" + std::string(kStoreUrlForms) + ")");
  }
  const std::string_view scheme = text.substr(0, sep);
  std::string_view rest = text.substr(sep + 3);
  StoreUrl url;
  if (scheme == "memory") {
    if (!rest.empty()) return invalid(shown + ": memory:// takes nothing after it");
    return url;
  }
  if (scheme == "redis" || scheme == "rediss") {
    url.kind = StoreKind::kRedis;
    url.tls = scheme == "rediss";
  } else if (scheme == "redis-cluster" || scheme == "rediss-cluster") {
    // rediss-cluster://: TLS to every node, the seeds and those discovered or redirected to
    // alike (a TLS cluster announces its TLS ports to TLS clients).
    url.kind = StoreKind::kRedisCluster;
    url.tls = scheme == "rediss-cluster";
  } else {
    return invalid("unknown store scheme " + quote(scheme) + " (" + std::string(kStoreUrlForms) +
                   ")");
  }
  if (rest.find('#') != std::string_view::npos) {
    return invalid(shown + ": fragments are not supported (write '#' in a password as %23)");
  }
  // The query starts after the credentials, which may hold an unencoded '?'.
  const std::size_t at_end = rest.rfind('@');
  if (const std::size_t q = rest.find('?', at_end == rest.npos ? 0 : at_end);
      q != std::string_view::npos) {
    if (auto ok = parse_tls_query(rest.substr(q + 1), url); !ok) return tl::unexpected(ok.error());
    rest = rest.substr(0, q);
  }
  // The last '@' ends the credentials: an unencoded '@' or '/' in a password still parses.
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const std::size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return invalid("store URL: a user needs a password (user:password@host, or :password@host)");
    }
    auto user = percent_decode(userinfo.substr(0, colon));
    auto password = percent_decode(userinfo.substr(colon + 1));
    if (!user || !password) return invalid("store URL: bad percent-encoding in user:password");
    if (password->empty()) return invalid("store URL: empty password");
    url.user = std::move(*user);
    url.password = std::move(*password);
  }
  const std::size_t slash = rest.find('/');
  const std::string_view hosts = rest.substr(0, slash);
  const std::optional<std::string_view> db =
      slash == std::string_view::npos ? std::nullopt : std::optional(rest.substr(slash + 1));
  if (hosts.empty()) return invalid(shown + " has no host");

  if (url.kind == StoreKind::kRedisCluster) {
    if (db && !db->empty() && *db != "0") {
      return invalid(shown + ": Redis Cluster has only db 0");
    }
    std::size_t start = 0;
    while (true) {
      const std::size_t comma = hosts.find(',', start);
      const std::string_view one =
          hosts.substr(start, comma == hosts.npos ? hosts.npos : comma - start);
      if (one.empty()) return invalid(shown + ": empty host in the seed list");
      auto hp = parse_endpoint(one, kDefaultRedisPort, false);
      if (!hp) return tl::unexpected(hp.error());
      url.hosts.push_back(std::move(*hp));
      if (comma == hosts.npos) break;
      start = comma + 1;
    }
    return url;
  }

  if (hosts.find(',') != std::string_view::npos) {
    return invalid(shown + ": several hosts need redis-cluster://");
  }
  auto hp = parse_endpoint(hosts, kDefaultRedisPort, false);
  if (!hp) return tl::unexpected(hp.error());
  url.hosts.push_back(std::move(*hp));
  if (db && !db->empty()) {
    const auto n = parse_unsigned(*db, std::numeric_limits<std::int32_t>::max());
    if (!n) return invalid(shown + ": db must be a number (redis://host:port/0)");
    url.db = static_cast<int>(*n);
  }
  return url;
}

std::string to_string(const StoreUrl& url) {
  if (url.kind == StoreKind::kMemory) return "memory://";
  std::string out = url.kind == StoreKind::kRedisCluster
                        ? (url.tls ? "rediss-cluster://" : "redis-cluster://")
                    : url.tls ? "rediss://"
                              : "redis://";
  if (!url.password.empty()) out += url.user + ":***@";
  for (std::size_t i = 0; i < url.hosts.size(); ++i) {
    if (i > 0) out += ',';
    out += to_string(url.hosts[i]);
  }
  if (url.kind == StoreKind::kRedis && url.db != 0) out += "/" + std::to_string(url.db);
  return out;
}

std::optional<IpAddress> parse_ip(std::string_view text) {
  // inet_pton needs a terminated string; the longest textual IPv6 address is 45 characters.
  if (text.empty() || text.size() > 45) return std::nullopt;
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress ip;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, ip.bytes.data()) != 1) return std::nullopt;
    ip.family = IpAddress::Family::kIpv4;
  } else {
    if (inet_pton(AF_INET6, buf, ip.bytes.data()) != 1) return std::nullopt;
    ip.family = IpAddress::Family::kIpv6;
  }
  return ip;
}

std::string to_string(const IpAddress& ip) {
  if (ip.family == IpAddress::Family::kIpv4) {  // the common case, without inet_ntop's cost
    std::string out;
    out.reserve(15);
    for (int i = 0; i < 4; ++i) {
      if (i > 0) out += '.';
      const unsigned b = ip.bytes[i];
      if (b >= 100) out += static_cast<char>('0' + b / 100);
      if (b >= 10) out += static_cast<char>('0' + b / 10 % 10);
      out += static_cast<char>('0' + b % 10);
    }
    return out;
  }
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = ip.family == IpAddress::Family::kIpv4 ? AF_INET : AF_INET6;
  if (inet_ntop(af, ip.bytes.data(), buf, sizeof buf) == nullptr) return "?";
  return buf;
}

namespace {

int max_prefix(IpAddress::Family f) { return f == IpAddress::Family::kIpv4 ? 32 : 128; }

// Whether the first `bits` bits of a and b are equal.
bool same_prefix(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                 int bits) {
  const int whole = bits / 8;
  if (!std::equal(a.begin(), a.begin() + whole, b.begin())) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

IpAddress masked(IpAddress ip, int bits) {
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(bits - i * 8, 0, 8);
    ip.bytes[i] &= static_cast<std::uint8_t>(0xff << (8 - keep));
  }
  return ip;
}

}  // namespace

bool Cidr::contains(const IpAddress& ip) const {
  IpAddress addr = ip;
  // ::ffff:a.b.c.d -> a.b.c.d
  static constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0,    0,
                                                                 0, 0, 0, 0, 0xff, 0xff};
  if (addr.family == IpAddress::Family::kIpv6 && network.family == IpAddress::Family::kIpv4 &&
      std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), addr.bytes.begin())) {
    IpAddress v4;
    std::copy(addr.bytes.begin() + 12, addr.bytes.end(), v4.bytes.begin());
    addr = v4;
  }
  if (addr.family != network.family) return false;
  return same_prefix(addr.bytes, network.bytes, prefix_length);
}

Result<Cidr> parse_cidr(std::string_view text) {
  const std::size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  const auto ip = parse_ip(addr_text);
  if (!ip) {
    return invalid(quote(text) + " is not a CIDR block (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8)");
  }
  const int max = max_prefix(ip->family);
  int prefix = max;
  if (slash != std::string_view::npos) {
    const auto n = parse_unsigned(text.substr(slash + 1), max);
    if (!n) {
      return invalid(quote(text) + ": prefix length must be 0-" + std::to_string(max));
    }
    prefix = static_cast<int>(*n);
  }
  Cidr cidr{masked(*ip, prefix), prefix};
  if (cidr.network != *ip) {
    return invalid(quote(text) + " has host bits set (the block is " + to_string(cidr) + ")");
  }
  return cidr;
}

std::string to_string(const Cidr& cidr) {
  return to_string(cidr.network) + "/" + std::to_string(cidr.prefix_length);
}

}  // namespace fg::config
