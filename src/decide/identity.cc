#include "decide/identity.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>

#include "util/text.h"

namespace fg::decide {
namespace {

using Family = IpAddress::Family;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 1-5 decimal digits, at most 65535. The port is checked only so that "1.2.3.4:junk" is refused
// as the malformed entry it is; its value is not used.
bool is_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), is_digit)) return false;
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v <= 65535;
}

// Only the characters an address entry can hold reach parse_ip, so a NUL or other control byte
// cannot cut the text short inside inet_pton ("1.2.3.4\0x" must not read as 1.2.3.4).
bool has_only_address_chars(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
           c == ':' || c == '[' || c == ']';
  });
}

// One X-Forwarded-For entry, already trimmed: "a.b.c.d", "a.b.c.d:port", "v6", "[v6]",
// "[v6]:port". nullopt for anything else.
std::optional<IpAddress> parse_forwarded_entry(std::string_view e) {
  if (!has_only_address_chars(e)) return std::nullopt;
  if (!e.empty() && e.front() == '[') {
    const std::size_t close = e.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view rest = e.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !is_port(rest.substr(1)))) return std::nullopt;
    auto ip = config::parse_ip(e.substr(1, close - 1));
    if (!ip || ip->family != Family::kIpv6) return std::nullopt;
    return ip;
  }
  // Exactly one colon: IPv4 with a port. A textual IPv6 address always has at least two ("::").
  if (const std::size_t colon = e.find(':');
      colon != std::string_view::npos && e.find(':', colon + 1) == std::string_view::npos) {
    if (!is_port(e.substr(colon + 1))) return std::nullopt;
    auto ip = config::parse_ip(e.substr(0, colon));
    if (!ip || ip->family != Family::kIpv4) return std::nullopt;
    return ip;
  }
  return config::parse_ip(e);
}

bool is_trusted(const IpAddress& ip, std::span<const Cidr> trusted) {
  return std::any_of(trusted.begin(), trusted.end(), [&](const Cidr& c) { return c.contains(ip); });
}

// ::ffff:a.b.c.d -> a.b.c.d; anything else unchanged.
IpAddress unmap(const IpAddress& ip) {
  static constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0,    0,
                                                                 0, 0, 0, 0, 0xff, 0xff};
  if (ip.family != Family::kIpv6 ||
      !std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), ip.bytes.begin())) {
    return ip;
  }
  IpAddress v4;
  std::copy(ip.bytes.begin() + 12, ip.bytes.end(), v4.bytes.begin());
  return v4;
}

void append_lower(std::string& out, std::string_view s) {
  const std::size_t at = out.size();
  out.resize(at + s.size());  // written in place: no capacity check per character
  std::transform(s.begin(), s.end(), out.begin() + static_cast<std::ptrdiff_t>(at), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
}

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  // EVP_Digest fails only when OpenSSL cannot allocate or has no SHA-256: impossible in a working
  // process, and an identity cannot be formed without it.
  if (EVP_Digest(data.data(), data.size(), md.data(), &md_len, EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * md_len);
  for (unsigned int i = 0; i < md_len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

// `text` decoded as the most lenient base64 decoders do (Node.js; Python, Go and Java accept
// part of it): both alphabets, padding optional, other characters skipped, decoding ends at the
// first '=', and the bits left over in the last character are dropped. Requests reach identify()
// through canonicalize() (http/canonical.cc), which refuses every spelling but an encoder's; the
// CLI and /v1/check name identities as they are.
std::string lenient_base64_decode(std::string_view text) {
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  for (const char c : text) {
    if (c == '=') break;
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    if (c >= '0' && c <= '9') v = c - '0' + 52;
    if (c == '+' || c == '-') v = 62;
    if (c == '/' || c == '_') v = 63;
    if (v < 0) continue;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

// The order n of the curve of each ECDSA algorithm of JWS (RFC 7518 §3.4), in hex: a signature
// is r || s, each as many bytes as n.
struct EcdsaCurve {
  std::string_view alg;    // as quoted in the JWS header
  std::string_view order;  // n, big-endian hex
};
constexpr EcdsaCurve kEcdsaCurves[] = {
    {"\"ES256\"", "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"},
    {"\"ES384\"",
     "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52"
     "973"},
    {"\"ES512\"",
     "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f"
     "709a5d0"
     "3bb5c9b8899c47aebb6fb71e91386409"},
};
static_assert(kEcdsaCurves[0].order.size() == 64 && kEcdsaCurves[1].order.size() == 96 &&
              kEcdsaCurves[2].order.size() == 132);

int hex_digit(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// `token` as one spelling per signed token: a JWS ("eyJ<header>.<payload>.<signature>") signed
// with ECDSA (its header names ES256, ES384 or ES512) with its signature's s in the lower half,
// n - s where s > n / 2. Both (r, s) and (r, n - s) verify (OpenSSL, Go and the JWT libraries
// on them accept either), so without this anyone holding one token could spell a second one
// with a budget of its own. Anything else is returned as it is.
std::string low_s_jws(std::string_view token) {
  const std::optional<std::string_view> jws_signature = util::jws_signature(token);
  if (!jws_signature) return std::string(token);
  const std::size_t signature_at = token.size() - jws_signature->size();
  const std::string header = lenient_base64_decode(token.substr(0, token.find('.')));
  for (const EcdsaCurve& curve : kEcdsaCurves) {
    if (header.find(curve.alg) == std::string::npos) continue;
    std::string signature = lenient_base64_decode(*jws_signature);
    const std::size_t half = curve.order.size() / 2;
    if (signature.size() != 2 * half) break;
    std::string other(half, '\0');  // n - s
    int borrow = 0;
    for (std::size_t i = half; i-- > 0;) {
      const int n = hex_digit(curve.order[2 * i]) * 16 + hex_digit(curve.order[2 * i + 1]);
      int d = n - static_cast<unsigned char>(signature[half + i]) - borrow;
      borrow = d < 0 ? 1 : 0;
      other[i] = static_cast<char>(d + 256 * borrow);
    }
    // s >= n is no signature; s <= n - s is the low form already.
    const std::string_view s = std::string_view(signature).substr(half);
    if (borrow != 0 || s <= std::string_view(other)) break;
    signature.replace(half, half, other);
    std::string out(token.substr(0, signature_at));
    for (const char c : util::base64(signature)) {
      if (c == '=') break;
      out += c == '+' ? '-' : c == '/' ? '_' : c;
    }
    return out;
  }
  return std::string(token);
}

}  // namespace

// An Authorization value ("<scheme> <credentials>", trimmed) in the one spelling that names its
// credentials: the scheme as clients usually write it (first letter upper case, the rest lower:
// "Bearer", "Basic"), one space, and Basic credentials as canonical base64. The scheme is
// case-insensitive (RFC 9110 §11.1) and servers skip the whitespace after it (ASP.NET Core
// trims; Spring compares the scheme ignoring case), and lenient base64 decoders read one
// user:password from many spellings ("dXNlcjpwYQ==", "dXNlcjpwYQ", "dXNlcjpwYR=="): without
// this, each spelling of one token was another client with a budget of its own. The usual
// spelling is its own canonical form, so the identities (and Redis keys) of clients that send
// it do not change. A JWS among the credentials (whatever the scheme, or a value without one)
// is counted in its low-s form (low_s_jws).
std::string canonical_authorization(std::string_view value) {
  const auto [scheme, credentials] = util::split_authorization(value);
  if (scheme.empty()) return low_s_jws(credentials);  // a token without a scheme
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    const char c = scheme[i];
    if (i == 0) {
      out += c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    } else {
      out += c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  out += ' ';
  // Basic credentials that decode to nothing ("!!", "=dXNl", "!1") are the empty credentials to
  // those decoders: one client, "Basic " (kept as written, each was a client of its own).
  if (util::iequals(scheme, "Basic")) {
    out += util::base64(lenient_base64_decode(credentials));
  } else {
    out += low_s_jws(credentials);
  }
  return out;
}

IpAddress client_ip(const IpAddress& peer, std::string_view x_forwarded_for,
                    std::span<const Cidr> trusted_proxies) {
  if (!is_trusted(peer, trusted_proxies)) return peer;

  // Proxies append on the right, so the bound keeps the right end. If the window starts inside an
  // entry, that partial entry ("11.2.3.4" cut to "1.2.3.4") is dropped.
  std::string_view list = x_forwarded_for;
  if (list.size() > kMaxForwardedForBytes) {
    const std::size_t start = list.size() - kMaxForwardedForBytes;
    const bool cut_inside_entry = list[start - 1] != ',';
    list.remove_prefix(start);
    if (cut_inside_entry) {
      const std::size_t comma = list.find(',');
      list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
    }
  }

  IpAddress last_trusted = peer;
  std::size_t examined = 0;
  while (!list.empty() && examined < kMaxForwardedForEntries) {
    const std::size_t comma = list.rfind(',');
    const std::size_t begin = comma == std::string_view::npos ? 0 : comma + 1;
    const std::string_view entry = util::trim_ows(list.substr(begin));
    list.remove_suffix(list.size() - (comma == std::string_view::npos ? 0 : comma));
    if (entry.empty()) continue;  // "a,,b": an empty list element, not an entry
    ++examined;
    const auto ip = parse_forwarded_entry(entry);
    // Malformed: the trusted hop that wrote it did not know the address; anything further left
    // is the client's own text.
    if (!ip) break;
    if (!is_trusted(*ip, trusted_proxies)) return *ip;
    last_trusted = *ip;
  }
  return last_trusted;
}

namespace {

// ip_identity(), appended to `out`: identify() writes "ip:" and the network into one string.
void append_ip_identity(std::string& out, const IpAddress& ip, int ipv4_prefix, int ipv6_prefix) {
  IpAddress net = unmap(ip);
  const bool v4 = net.family == Family::kIpv4;
  const int max = v4 ? 32 : 128;
  const int prefix = std::clamp(v4 ? ipv4_prefix : ipv6_prefix, 0, max);
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(prefix - i * 8, 0, 8);
    // keep == 0 shifts a uint8 0xff by 8 after promotion to int: 0xff00, truncated to 0.
    net.bytes[i] &= static_cast<std::uint8_t>(0xff << (8 - keep));
  }
  // IPv4 fits the small-string buffer (no allocation); IPv6 is inet_ntop's RFC 5952 form.
  out += config::to_string(net);
  if (prefix < max) {
    out.push_back('/');
    if (prefix >= 100) out.push_back(static_cast<char>('0' + prefix / 100));
    if (prefix >= 10) out.push_back(static_cast<char>('0' + prefix / 10 % 10));
    out.push_back(static_cast<char>('0' + prefix % 10));
  }
}

}  // namespace

std::string ip_identity(const IpAddress& ip, int ipv4_prefix, int ipv6_prefix) {
  std::string out;
  append_ip_identity(out, ip, ipv4_prefix, ipv6_prefix);
  return out;
}

bool identify_into(std::string& out, const std::vector<config::IdentitySource>& sources,
                   const HeaderLookup& lookup, const IpAddress& peer,
                   std::string_view x_forwarded_for, std::span<const Cidr> trusted_proxies) {
  out.clear();
  for (const config::IdentitySource& source : sources) {
    switch (source.kind) {
      case config::IdentitySource::Kind::kIp: {
        const IpAddress ip = client_ip(peer, x_forwarded_for, trusted_proxies);
        out += "ip:";
        append_ip_identity(out, ip, source.ipv4_prefix, source.ipv6_prefix);
        return true;
      }
      case config::IdentitySource::Kind::kHeader: {
        const auto raw = lookup ? lookup(source.header) : std::nullopt;
        if (!raw) break;
        std::string_view value = util::trim_ows(*raw);
        if (value.empty()) break;
        std::string authorization;
        if (util::iequals(source.header, "Authorization")) {
          authorization = canonical_authorization(value);
          value = authorization;
        } else if (value.starts_with("eyJ")) {
          authorization = low_s_jws(value);  // a JWS as an API key
          value = authorization;
        }
        // The header name keeps two header sources with the same value apart; it cannot contain
        // ':' (an HTTP token), so "key:<name>:" ends where the value starts.
        const bool hashed = value.size() > kMaxHeaderIdentityBytes;
        out += hashed ? "key#" : "key:";
        out.reserve(4 + source.header.size() + 1 + (hashed ? 64 : value.size()));
        append_lower(out, source.header);
        out.push_back(':');
        if (hashed) {
          out += sha256_hex(value);
        } else {
          out.append(value);
        }
        return true;
      }
    }
  }
  return false;
}

std::optional<std::string> identify(const std::vector<config::IdentitySource>& sources,
                                    const HeaderLookup& lookup, const IpAddress& peer,
                                    std::string_view x_forwarded_for,
                                    std::span<const Cidr> trusted_proxies) {
  std::string out;
  if (!identify_into(out, sources, lookup, peer, x_forwarded_for, trusted_proxies)) {
    return std::nullopt;
  }
  return out;
}

std::string loggable_identity(std::string_view identity) {
  constexpr std::size_t kShown = 12;  // 48 bits: enough to tell clients apart in a log
  if (identity.starts_with("ip:")) return std::string(identity);
  // "key:<name>:<value>" and "key#<name>:<sha256>": keep the name, hash what follows.
  if (identity.starts_with("key:") || identity.starts_with("key#")) {
    const std::size_t colon = identity.find(':', 4);
    if (colon != std::string_view::npos) {
      const std::string_view value = identity.substr(colon + 1);
      const std::string digest = identity[3] == '#' ? std::string(value) : sha256_hex(value);
      return "key:" + std::string(identity.substr(4, colon - 4)) +
             ":sha256=" + digest.substr(0, kShown);
    }
  }
  return "sha256=" + sha256_hex(identity).substr(0, kShown);
}

}  // namespace fg::decide
