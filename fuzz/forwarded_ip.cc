// forwarded_ip.cc — fuzz target: X-Forwarded-For and address text -> the parsing and masking of
// src/http/identity.h and src/config/values.h.
//
// Input: a byte choosing the TCP peer, two bytes of prefix lengths, then the text, used as an
// X-Forwarded-For value and, split at ',', as address and CIDR candidates.
//
// Invariants:
//   - parse_ip: a parsed address printed and parsed again gives the same address, and printing
//     is stable; the same for parse_cidr (and a parsed block contains its own network).
//   - client_ip: an untrusted peer is the client, whatever the header says; the answer is the
//     peer or an address written in the header; with a trusted peer, appending a trusted hop on
//     the right is the same as that hop being the peer (what a chain of proxies does).
//   - ip_identity: "<address>" or "<network>/<prefix>", which parses back (as an address or a
//     CIDR with zero host bits) and contains the client; masking twice changes nothing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/values.h"
#include "fuzz_check.h"
#include "decide/identity.h"
#include "util/text.h"

namespace {

using fg::config::Cidr;
using fg::config::IpAddress;

std::vector<Cidr> trusted_proxies() {
  std::vector<Cidr> out;
  for (const char* text : {"10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "::1"}) {
    out.push_back(*fg::config::parse_cidr(text));
  }
  return out;
}

IpAddress ip(const char* text) { return *fg::config::parse_ip(text); }

std::string show(const IpAddress& a) { return fg::config::to_string(a); }

void check_address_text(std::string_view text) {
  if (const auto a = fg::config::parse_ip(text)) {
    const std::string printed = show(*a);
    const auto again = fg::config::parse_ip(printed);
    FG_FUZZ_CHECK(again && *again == *a, "parse_ip(\"%s\") does not round-trip", printed.c_str());
    FG_FUZZ_CHECK(show(*again) == printed, "printing is not stable: %s", printed.c_str());
  }
  if (const auto c = fg::config::parse_cidr(text)) {
    const std::string printed = fg::config::to_string(*c);
    const auto again = fg::config::parse_cidr(printed);
    FG_FUZZ_CHECK(again && *again == *c, "parse_cidr(\"%s\") does not round-trip", printed.c_str());
    FG_FUZZ_CHECK(c->contains(c->network), "%s does not contain its network", printed.c_str());
  }
}

// Whether `a` is written in the header as an entry ("a", "a:port", "[a]", "[a]:port").
bool in_header(const IpAddress& a, std::string_view xff) {
  while (!xff.empty()) {
    const std::size_t comma = xff.find(',');
    std::string_view e = fg::util::trim_ows(xff.substr(0, comma));
    xff.remove_prefix(comma == std::string_view::npos ? xff.size() : comma + 1);
    if (!e.empty() && e.front() == '[') e = e.substr(1, e.find(']') - 1);
    if (auto p = fg::config::parse_ip(e); p && *p == a) return true;
    // "a.b.c.d:port"
    if (auto p = fg::config::parse_ip(e.substr(0, e.rfind(':'))); p && *p == a) return true;
  }
  return false;
}

void check_identity(const IpAddress& client, int v4, int v6) {
  const std::string id = fg::decide::ip_identity(client, v4, v6);
  const std::size_t slash = id.find('/');
  if (slash == std::string::npos) {
    const auto a = fg::config::parse_ip(id);
    FG_FUZZ_CHECK(a.has_value(), "identity %s is not an address", id.c_str());
    const Cidr exact{*a, a->family == IpAddress::Family::kIpv4 ? 32 : 128};
    FG_FUZZ_CHECK(exact.contains(client), "identity %s is not the client %s", id.c_str(),
                  show(client).c_str());
    FG_FUZZ_CHECK(fg::decide::ip_identity(*a, v4, v6) == id, "masking %s again changes it",
                  id.c_str());
    return;
  }
  const auto c = fg::config::parse_cidr(id);
  FG_FUZZ_CHECK(c.has_value(), "identity %s is not a CIDR with zero host bits: %s", id.c_str(),
                c.error().message.c_str());
  FG_FUZZ_CHECK(c->contains(client), "identity %s does not contain the client %s", id.c_str(),
                show(client).c_str());
  FG_FUZZ_CHECK(fg::decide::ip_identity(c->network, v4, v6) == id, "masking %s again changes it",
                id.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<Cidr> trusted = trusted_proxies();
  static const IpAddress peers[] = {
      ip("10.1.2.3"),    ip("192.0.2.77"),  ip("2001:db8::5"),     ip("::1"),
      ip("203.0.113.9"), ip("2001:db9::1"), ip("::ffff:10.0.0.1"), ip("::ffff:198.51.100.1")};
  fg::fuzz::Input in(data, size);
  const IpAddress& peer = peers[in.byte() % 8];
  const int v4 = in.byte() % 34;  // 0-33: outside 1-32 too (clamped)
  const int v6 = in.byte() % 130;
  const std::string_view xff = in.rest();

  check_address_text(xff);
  for (std::string_view rest = xff; !rest.empty();) {
    const std::size_t comma = rest.find(',');
    check_address_text(fg::util::trim_ows(rest.substr(0, comma)));
    rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma + 1);
  }

  const IpAddress client = fg::decide::client_ip(peer, xff, trusted);
  const bool peer_trusted =
      std::any_of(trusted.begin(), trusted.end(), [&](const Cidr& c) { return c.contains(peer); });
  if (!peer_trusted) {
    FG_FUZZ_CHECK(client == peer, "untrusted peer %s, yet the client is %s", show(peer).c_str(),
                  show(client).c_str());
  } else {
    FG_FUZZ_CHECK(client == peer || in_header(client, xff),
                  "client %s is neither the peer nor in the header", show(client).c_str());
    // One more trusted proxy on the right: within the bounds, the same client.
    if (xff.size() + 16 < fg::decide::kMaxForwardedForBytes &&
        static_cast<std::size_t>(std::count(xff.begin(), xff.end(), ',')) + 2 <
            fg::decide::kMaxForwardedForEntries) {
      const IpAddress hop = ip("192.0.2.10");
      const std::string longer = std::string(xff) + ", 192.0.2.10";
      const IpAddress via_hop = fg::decide::client_ip(peer, longer, trusted);
      const IpAddress direct = fg::decide::client_ip(hop, xff, trusted);
      FG_FUZZ_CHECK(via_hop == direct, "through one more proxy: %s, directly: %s",
                    show(via_hop).c_str(), show(direct).c_str());
    }
  }
  check_identity(client, v4, v6);
  return 0;
}
