// values.h — the small textual values of the configuration: durations, host:port, store URLs,
// IP addresses and CIDR blocks.
//
// Each parser takes the text as written (a YAML scalar, a command-line flag) and returns the value
// or a kInvalidArgument Error whose message describes the problem without naming a field
// (`"sixty" is not a duration (use e.g. 60s)`): the caller prefixes the field, as the config
// parser does ("policies[1].period: ...") and the command line does ("--store: ...").
//
// Pure functions over strings: no I/O, no name resolution (a hostname is checked for its syntax
// only), no exceptions. Thread safety: plain values and pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/clock.h"
#include "floodgate/result.h"

namespace fg::config {

// `text` in double quotes for an error message: control and non-ASCII bytes escaped (\xNN), cut
// after 64 bytes with "...", so hostile input cannot garble a terminal or flood a log.
std::string quote(std::string_view text);

// "<integer><unit>", unit one of ms, s, m, h, d: "250ms", "30s", "5m", "24h", "7d". Whole and
// positive; the largest accepted is 10^6 days (callers bound their own fields further). A bare
// integer is refused, because "60" could mean seconds or milliseconds.
Result<Duration> parse_duration(std::string_view text);

// The shortest exact spelling of a whole number of milliseconds in the largest unit that divides
// it: 60s -> "1m", 1500ms -> "1500ms". Sub-millisecond durations are written in ms, rounded up.
std::string format_duration(Duration d);

struct HostPort {
  std::string host;  // an IPv4 address, an IPv6 address (without brackets) or a hostname
  std::uint16_t port = 0;

  friend bool operator==(const HostPort&, const HostPort&) = default;
};

// "127.0.0.1:8080", "[::1]:8080", "localhost:8080". IPv4 and IPv6 addresses must be valid
// (an IPv6 address needs its brackets); a hostname is letters, digits, '-', '_' and dots. The
// port is 1-65535, or 0 too when `allow_port_zero` (command-line --listen, to let the system
// choose a free port in tests).
Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero = false);

// "127.0.0.1:8080", "[::1]:8080", "example.com:80": the inverse of parse_host_port.
std::string to_string(const HostPort& hp);

// "http://host[:port][/]" (port 80 when omitted): where allowed requests are proxied. No path,
// no credentials; https is not supported (the upstream is expected on a private network).
Result<HostPort> parse_upstream_url(std::string_view text);

// A browser origin for CORS: "https://app.example.com", "http://localhost:3000" (scheme and host
// are returned in lower case, as browsers send them; no path, not even "/"), or "*".
Result<std::string> parse_origin(std::string_view text);

enum class StoreKind {
  kMemory,        // memory://                          this process only
  kRedis,         // redis:// or rediss:// (tls)        one Redis server
  kRedisCluster,  // redis-cluster://seed[,seed...]     Redis Cluster, the rest discovered;
                  // rediss-cluster:// (tls) the same over TLS
};

std::string_view to_string(StoreKind k);

inline constexpr std::uint16_t kDefaultRedisPort = 6379;

// TLS settings of a rediss:// or rediss-cluster:// URL, from its query (a cluster's apply to
// every node):
//   rediss://host:port?ca=/ca.pem&cert=/client.pem&key=/client.key&server_name=redis.internal
//   rediss://host:port?insecure=1        (any certificate: for tests only)
struct StoreTls {
  std::string ca_file;      // PEM bundle of trusted CAs; empty: the system's default store
  std::string cert_file;    // client certificate chain (PEM), for tls-auth-clients servers
  std::string key_file;     // its private key (PEM); given together with cert_file
  std::string server_name;  // name to verify and send as SNI; empty: the URL's host
  bool verify = true;       // false with insecure=1

  friend bool operator==(const StoreTls&, const StoreTls&) = default;
};

struct StoreUrl {
  StoreKind kind = StoreKind::kMemory;
  std::vector<HostPort> hosts;  // empty for memory; one for redis; the seeds for a cluster
  std::string user;             // empty: no ACL user (AUTH <password> alone when password is set)
  std::string password;         // empty: no AUTH; percent-decoded
  int db = 0;                   // SELECT <db>; always 0 for a cluster
  bool tls = false;             // rediss://, rediss-cluster://
  StoreTls tls_options;         // with tls: the query's settings

  friend bool operator==(const StoreUrl&, const StoreUrl&) = default;
};

// memory://
// redis://[user:password@]host[:port][/db]      (port 6379 when omitted)
// rediss://[user:password@]host[:port][/db][?ca=..&cert=..&key=..&server_name=..&insecure=1]
// redis-cluster://[user:password@]host[:port][,host[:port]...]
// rediss-cluster://[user:password@]host[:port][,host[:port]...][?ca=..&cert=..&key=..&...]
// The user and password may be percent-encoded (%40 for '@'); ":password@" alone is a password
// without a user (Redis's default user).
Result<StoreUrl> parse_store_url(std::string_view text);

// The URL with the password replaced by "***", safe for logs and error messages.
std::string to_string(const StoreUrl& url);

struct IpAddress {
  enum class Family { kIpv4, kIpv6 };
  Family family = Family::kIpv4;
  std::array<std::uint8_t, 16> bytes{};  // network order; an IPv4 address uses the first 4

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// "192.0.2.1" or "2001:db8::1" (no brackets, no zone). IPv4 is strictly dotted-quad decimal.
std::optional<IpAddress> parse_ip(std::string_view text);
std::string to_string(const IpAddress& ip);

struct Cidr {
  IpAddress network;      // host bits are zero
  int prefix_length = 0;  // 0-32 for IPv4, 0-128 for IPv6

  // Whether `ip` is inside this block. An IPv4-mapped IPv6 address (::ffff:192.0.2.1) is
  // compared as the IPv4 address it maps, as dual-stack sockets report IPv4 peers that way.
  bool contains(const IpAddress& ip) const;

  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// "10.0.0.0/8", "2001:db8::/32", or a bare address (a block of one: /32 or /128). Host bits
// must be zero ("10.0.0.1/8" is refused, naming 10.0.0.0/8), as a typo there widens trust.
Result<Cidr> parse_cidr(std::string_view text);
std::string to_string(const Cidr& cidr);

}  // namespace fg::config
