// identity.h — who a request comes from (design §2.4): the client address behind trusted proxies,
// its network as an identity, and the first configured identity source present in a request.
//
// Pure functions over values: no sockets, no Beast, no clock, no exceptions. The caller (the HTTP
// handler) supplies the TCP peer address, the X-Forwarded-For header and a case-insensitive header
// lookup. Thread safety: pure functions (`lookup` is called on the caller's thread).
//
// Identities are strings in three disjoint forms, so that no header value can ever equal an IP
// identity or another source's value (each form starts differently, and a header name cannot
// contain ':'):
//   "ip:<network>"             an `ip` source: "ip:203.0.113.7", "ip:2001:db8:1:2::/64"
//   "key:<header>:<value>"     a `header` source, <header> lower case, value up to 256 bytes:
//                              "key:x-api-key:abc123"
//   "key#<header>:<sha256>"    a value longer than 256 bytes: 64 lower-case hex digits of the
//                              SHA-256 of the value, so an identity is at most a few hundred bytes
// They are not yet safe for a Redis key: the store layer escapes '{' and '}' (design §2.4).
//
// Failure: none. A malformed X-Forwarded-For is not an error: client_ip falls back to the last
// trusted hop (see there). identify answers nullopt only when no source is present.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/values.h"

namespace fg::decide {

using config::Cidr;
using config::IpAddress;

// Bounds on the X-Forwarded-For work per request. Only the right-most kMaxForwardedForBytes of the
// joined header are read (an entry cut by that window is dropped), and at most
// kMaxForwardedForEntries non-empty entries are examined, from the right. Entries further left are
// written by the client anyway; a real chain of trusted proxies is a handful of hops. Reaching a
// bound ends the walk as the left end of the list does.
inline constexpr std::size_t kMaxForwardedForBytes = 8 * 1024;
inline constexpr std::size_t kMaxForwardedForEntries = 64;

// A header value longer than this is replaced by its SHA-256 (design §2.4).
inline constexpr std::size_t kMaxHeaderIdentityBytes = 256;

// The client's address.
//
// `peer` is the TCP peer. Unless it is inside one of `trusted_proxies`, it IS the client and
// `x_forwarded_for` is ignored (anyone can send that header). When the peer is trusted, the
// X-Forwarded-For entries (`x_forwarded_for` holds every XFF field value of the request joined
// with ',') are walked from the right: each trusted proxy appends the address it received the
// request from, so the first entry that is not a trusted proxy is the client. Everything left of
// it was written by the client and is never read.
//
// The walk can end without an untrusted entry: the list is empty or missing, every entry is a
// trusted proxy, a bound above is reached, or an entry is malformed ("unknown", an obfuscated
// RFC 7239 name, garbage). The answer is then the last trusted hop seen: the left-most entry read
// (or the peer, if none was read). That is the furthest hop we can vouch for; on a malformed entry,
// reading further left would let the client choose its identity. Never fails.
//
// Entry syntax (optional spaces/tabs around each): "192.0.2.1", "192.0.2.1:5678", "2001:db8::1",
// "[2001:db8::1]", "[2001:db8::1]:443". Empty entries ("a,,b", "a,") are skipped, as HTTP lists
// allow. No zones ("fe80::1%eth0"), no hostnames.
IpAddress client_ip(const IpAddress& peer, std::string_view x_forwarded_for,
                    std::span<const Cidr> trusted_proxies);

// The network of `ip` masked to a prefix, printed canonically (RFC 5952 for IPv6): the bare
// address at full length, "<network>/<prefix>" otherwise.
//   203.0.113.7 /32 -> "203.0.113.7"      203.0.113.7 /24 -> "203.0.113.0/24"
//   2001:db8:1:2:a:b:c:d /64 -> "2001:db8:1:2::/64"
// An IPv4-mapped IPv6 address (::ffff:203.0.113.7, as dual-stack sockets report IPv4 peers) is
// treated as the IPv4 address it maps. Prefixes outside 0-32 / 0-128 are clamped (the config
// allows 1-32 and 1-128). No "ip:" prefix: identify adds it.
std::string ip_identity(const IpAddress& ip, int ipv4_prefix, int ipv6_prefix);

// The value of the request header `name`, compared case-insensitively, or nullopt when absent.
// With repeated fields, the caller decides which one (the first, as Beast's find does).
using HeaderLookup = std::function<std::optional<std::string_view>(std::string_view name)>;

// The identity of a request (forms at the top of this file): the first of `sources` present.
// A `header` source is present when the header is there with a value that is not empty after
// trimming spaces and tabs; an Authorization value is named in one spelling per credentials
// (the scheme's case, the whitespace after it and Basic's base64 spelling do not matter:
// "bearer  t" is "Bearer t"); an `ip` source is always present (client_ip, then ip_identity).
// nullopt when no source is present (only header sources, none sent): the caller decides (e.g.
// 400, or an unlimited anonymous bucket). `lookup` is only called for header sources, in order.
std::optional<std::string> identify(const std::vector<config::IdentitySource>& sources,
                                    const HeaderLookup& lookup, const IpAddress& peer,
                                    std::string_view x_forwarded_for,
                                    std::span<const Cidr> trusted_proxies);
// The same, written into `out` (replacing what it held, keeping its capacity): false, with `out`
// empty, when no source is present.
bool identify_into(std::string& out, const std::vector<config::IdentitySource>& sources,
                   const HeaderLookup& lookup, const IpAddress& peer,
                   std::string_view x_forwarded_for, std::span<const Cidr> trusted_proxies);

// The identity as logs may show it: IP identities as they are, header values replaced by a short
// SHA-256 prefix ("key:x-api-key:sha256=1f2e3d4c5b6a"), so API keys never reach a log. Any other
// string (a /v1/check key) is shown the same way, as "sha256=...".
std::string loggable_identity(std::string_view identity);

// An Authorization value in the one spelling that names its credentials: what identify() keys an
// Authorization source by, and what a policy's match on Authorization compares. The scheme as
// clients usually write it ("Bearer", "Basic"), one space, Basic credentials as canonical base64,
// and a JWS among the credentials (or as the whole value) with an ECDSA signature in its low-s
// form: spellings that servers read as the same credentials are one.
std::string canonical_authorization(std::string_view value);

}  // namespace fg::decide
