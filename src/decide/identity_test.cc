#include "decide/identity.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "util/text.h"

namespace fg::decide {
namespace {

using config::IdentitySource;

IpAddress ip(std::string_view text) {
  auto a = config::parse_ip(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

std::vector<Cidr> cidrs(std::initializer_list<std::string_view> texts) {
  std::vector<Cidr> out;
  for (auto t : texts) {
    auto c = config::parse_cidr(t);
    EXPECT_TRUE(c.has_value()) << t;
    if (c) out.push_back(*c);
  }
  return out;
}

// client_ip as a string, for readable expectations.
std::string client(std::string_view peer, std::string_view xff, const std::vector<Cidr>& trusted) {
  return config::to_string(client_ip(ip(peer), xff, trusted));
}

const std::vector<Cidr> kProxies = cidrs({"10.0.0.0/8", "fd00::/8", "127.0.0.1"});

// ---- client_ip -------------------------------------------------------------------------------

TEST(ClientIp, UntrustedPeerIsTheClientAndItsXffIsIgnored) {
  EXPECT_EQ(client("203.0.113.7", "", kProxies), "203.0.113.7");
  // A client spoofing XFF directly: whatever it claims, it is its own address.
  EXPECT_EQ(client("203.0.113.7", "198.51.100.1", kProxies), "203.0.113.7");
  EXPECT_EQ(client("203.0.113.7", "10.0.0.1, 198.51.100.1", kProxies), "203.0.113.7");
}

TEST(ClientIp, NoTrustedProxiesMeansPeerAlways) {
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1", {}), "10.0.0.1");
}

TEST(ClientIp, TrustedPeerUsesRightMostEntry) {
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1", kProxies), "198.51.100.1");
  EXPECT_EQ(client("127.0.0.1", "198.51.100.1", kProxies), "198.51.100.1");
}

TEST(ClientIp, SpoofedEntriesLeftOfTheRealClientAreIgnored) {
  // The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real address.
  EXPECT_EQ(client("10.0.0.1", "1.1.1.1, 198.51.100.1", kProxies), "198.51.100.1");
  // Even when the client claims to be a trusted proxy itself.
  EXPECT_EQ(client("10.0.0.1", "10.9.9.9, 198.51.100.1", kProxies), "198.51.100.1");
}

TEST(ClientIp, ChainOfTrustedProxiesIsSkipped) {
  // client -> 10.0.0.3 -> 10.0.0.2 -> peer 10.0.0.1
  EXPECT_EQ(client("10.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.3, 10.0.0.2", kProxies),
            "198.51.100.1");
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1,10.0.0.3,fd00::2", kProxies), "198.51.100.1");
}

TEST(ClientIp, MissingOrEmptyXffFromTrustedPeerIsThePeer) {
  EXPECT_EQ(client("10.0.0.1", "", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", "  ", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", ",,", kProxies), "10.0.0.1");
}

TEST(ClientIp, AllTrustedUsesLeftMostEntry) {
  EXPECT_EQ(client("10.0.0.1", "10.0.0.3, 10.0.0.2", kProxies), "10.0.0.3");
}

TEST(ClientIp, EmptyElementsAreSkipped) {
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1,, 10.0.0.2,", kProxies), "198.51.100.1");
  // Several XFF fields joined with ',' by the caller, one of them empty.
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1,,10.0.0.2", kProxies), "198.51.100.1");
}

TEST(ClientIp, MalformedEntryStopsAtLastTrustedHop) {
  // The malformed entry is right-most: the peer wrote it; nothing further left is believed.
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1, unknown", kProxies), "10.0.0.1");
  // Behind one more trusted hop: that hop is the last one we can vouch for.
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1, unknown, 10.0.0.2", kProxies), "10.0.0.2");
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1, _hidden, 10.0.0.2", kProxies), "10.0.0.2");
  EXPECT_EQ(client("10.0.0.1", "1.2.3", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", "1.2.3.4.5", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", "example.com", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", "fe80::1%eth0", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", "01.2.3.4", kProxies), "10.0.0.1");
  EXPECT_EQ(client("10.0.0.1", "1.2.3.4 5.6.7.8", kProxies), "10.0.0.1");
  // A NUL must not end the address early inside inet_pton.
  EXPECT_EQ(client("10.0.0.1", std::string_view("1.2.3.4\0x", 9), kProxies), "10.0.0.1");
  // A malformed entry left of the client does not matter: the walk never reaches it.
  EXPECT_EQ(client("10.0.0.1", "garbage, 198.51.100.1", kProxies), "198.51.100.1");
}

TEST(ClientIp, PortsAndBrackets) {
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1:5678", kProxies), "198.51.100.1");
  EXPECT_EQ(client("10.0.0.1", "[2001:db8::1]:443", kProxies), "2001:db8::1");
  EXPECT_EQ(client("10.0.0.1", "[2001:db8::1]", kProxies), "2001:db8::1");
  EXPECT_EQ(client("10.0.0.1", " 2001:db8::1 ", kProxies), "2001:db8::1");
  EXPECT_EQ(client("10.0.0.1", "\t198.51.100.1:1\t", kProxies), "198.51.100.1");
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1, [fd00::2]:80", kProxies), "198.51.100.1");
}

TEST(ClientIp, BadPortsAndBracketsAreMalformed) {
  for (std::string_view bad :
       {"198.51.100.1:", "198.51.100.1:65536", "198.51.100.1:123456", "198.51.100.1:8a",
        "[2001:db8::1", "[2001:db8::1]443", "[2001:db8::1]:", "[2001:db8::1]:99999",
        "[198.51.100.1]", "[198.51.100.1]:80", "2001:db8::1:443]", "::ffff:1.2.3.4:80]"}) {
    EXPECT_EQ(client("10.0.0.1", bad, kProxies), "10.0.0.1") << bad;
  }
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1:65535", kProxies), "198.51.100.1");
}

TEST(ClientIp, Ipv6AndMappedAddresses) {
  // An IPv6 peer inside fd00::/8 is trusted.
  EXPECT_EQ(client("fd00::1", "2001:db8::7", kProxies), "2001:db8::7");
  // A dual-stack socket reports an IPv4 proxy as ::ffff:10.0.0.1: still trusted.
  EXPECT_EQ(client("::ffff:10.0.0.1", "198.51.100.1", kProxies), "198.51.100.1");
  // A mapped entry of a trusted proxy is skipped too.
  EXPECT_EQ(client("10.0.0.1", "198.51.100.1, ::ffff:10.0.0.2", kProxies), "198.51.100.1");
  // A mapped untrusted peer is the client, returned as given (ip_identity unmaps it).
  EXPECT_EQ(client("::ffff:203.0.113.7", "198.51.100.1", kProxies), "::ffff:203.0.113.7");
}

TEST(ClientIp, OnlyTheRightMostEntriesAreExamined) {
  // 64 trusted entries right of the client: the bound is reached before it, so the answer is
  // the left-most trusted entry examined.
  std::string xff = "198.51.100.1";
  for (int i = 0; i < 64; ++i) xff += ", 10.0.1." + std::to_string(i);
  EXPECT_EQ(client("10.0.0.1", xff, kProxies), "10.0.1.0");
  // 63 trusted entries: the client is the 64th examined.
  xff = "198.51.100.1";
  for (int i = 1; i < 64; ++i) xff += ", 10.0.1." + std::to_string(i);
  EXPECT_EQ(client("10.0.0.1", xff, kProxies), "198.51.100.1");
}

TEST(ClientIp, OnlyTheRightMost8KiBAreRead) {
  // A client pads the header far beyond the bound: the real address on the right still wins.
  std::string xff(100'000, ' ');
  xff += "1.1.1.1, 198.51.100.1";
  EXPECT_EQ(client("10.0.0.1", xff, kProxies), "198.51.100.1");

  // An entry cut by the window is dropped, not read as a shorter address: the window starts one
  // byte into "11.2.3.4", whose tail "1.2.3.4" must not become the client.
  std::string cut = "11.2.3.4," + std::string(kMaxForwardedForBytes - 17, ' ') + ",10.0.0.2";
  ASSERT_EQ(cut.size(), kMaxForwardedForBytes + 1);
  EXPECT_EQ(client("10.0.0.1", cut, kProxies), "10.0.0.2");

  // A window that starts exactly at an entry keeps that entry.
  std::string exact =
      "9.9.9.9," + std::string("198.51.100.1") + std::string(kMaxForwardedForBytes - 12, ' ');
  ASSERT_EQ(exact.size(), kMaxForwardedForBytes + 8);
  EXPECT_EQ(client("10.0.0.1", exact, kProxies), "198.51.100.1");
}

// ---- ip_identity -----------------------------------------------------------------------------

TEST(IpIdentity, Ipv4Prefixes) {
  EXPECT_EQ(ip_identity(ip("203.0.113.7"), 32, 64), "203.0.113.7");
  EXPECT_EQ(ip_identity(ip("203.0.113.7"), 24, 64), "203.0.113.0/24");
  EXPECT_EQ(ip_identity(ip("203.0.113.7"), 16, 64), "203.0.0.0/16");
  EXPECT_EQ(ip_identity(ip("203.0.113.255"), 30, 64), "203.0.113.252/30");
  EXPECT_EQ(ip_identity(ip("203.0.113.7"), 1, 64), "128.0.0.0/1");
}

TEST(IpIdentity, Ipv6Prefixes) {
  const IpAddress a = ip("2001:db8:1:2:a:b:c:d");
  EXPECT_EQ(ip_identity(a, 32, 128), "2001:db8:1:2:a:b:c:d");
  EXPECT_EQ(ip_identity(a, 32, 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ip_identity(a, 32, 48), "2001:db8:1::/48");
  EXPECT_EQ(ip_identity(a, 32, 56), "2001:db8:1::/56");
  EXPECT_EQ(ip_identity(a, 32, 60), "2001:db8:1::/60");
  EXPECT_EQ(ip_identity(ip("2001:db8:1:ff::1"), 32, 60), "2001:db8:1:f0::/60");
  // RFC 5952: lower case, the longest zero run compressed.
  EXPECT_EQ(ip_identity(ip("2001:DB8:0:0:1:0:0:1"), 32, 128), "2001:db8::1:0:0:1");
}

TEST(IpIdentity, OneHostRotatingInsideItsSlash64IsOneClient) {
  EXPECT_EQ(ip_identity(ip("2001:db8:1:2::1"), 32, 64),
            ip_identity(ip("2001:db8:1:2:dead:beef:0:1"), 32, 64));
  EXPECT_NE(ip_identity(ip("2001:db8:1:2::1"), 32, 64), ip_identity(ip("2001:db8:1:3::1"), 32, 64));
}

TEST(IpIdentity, MappedIpv6IsIpv4) {
  EXPECT_EQ(ip_identity(ip("::ffff:203.0.113.7"), 32, 64), "203.0.113.7");
  EXPECT_EQ(ip_identity(ip("::ffff:203.0.113.7"), 24, 64), "203.0.113.0/24");
  EXPECT_EQ(ip_identity(ip("::ffff:203.0.113.7"), 32, 64), ip_identity(ip("203.0.113.7"), 32, 64));
}

TEST(IpIdentity, OutOfRangePrefixesAreClamped) {
  EXPECT_EQ(ip_identity(ip("203.0.113.7"), 40, 64), "203.0.113.7");
  EXPECT_EQ(ip_identity(ip("203.0.113.7"), -1, 64), "0.0.0.0/0");
  EXPECT_EQ(ip_identity(ip("2001:db8::1"), 32, 200), "2001:db8::1");
  EXPECT_EQ(ip_identity(ip("2001:db8::1"), 32, 0), "::/0");
}

// ---- identify --------------------------------------------------------------------------------

IdentitySource header_source(std::string name) {
  IdentitySource s;
  s.kind = IdentitySource::Kind::kHeader;
  s.header = std::move(name);
  return s;
}

IdentitySource ip_source(int v4 = 32, int v6 = 64) {
  IdentitySource s;
  s.kind = IdentitySource::Kind::kIp;
  s.ipv4_prefix = v4;
  s.ipv6_prefix = v6;
  return s;
}

// A case-insensitive lookup over a small map, as the handler's would be over Beast's fields.
HeaderLookup headers(std::map<std::string, std::string> h) {
  std::map<std::string, std::string> lower_keys;
  for (auto& [k, v] : h) {
    std::string l = k;
    for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lower_keys[l] = v;
  }
  return [m = std::move(lower_keys)](std::string_view name) -> std::optional<std::string_view> {
    std::string l(name);
    for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = m.find(l);
    if (it == m.end()) return std::nullopt;
    return std::string_view(it->second);
  };
}

const std::vector<IdentitySource> kDefault = {header_source("X-API-Key"), ip_source()};

TEST(Identify, HeaderFirstWhenPresent) {
  EXPECT_EQ(identify(kDefault, headers({{"x-api-key", "abc123"}}), ip("203.0.113.7"), "", {}),
            "key:x-api-key:abc123");
}

TEST(Identify, FallsBackToIp) {
  EXPECT_EQ(identify(kDefault, headers({}), ip("203.0.113.7"), "", {}), "ip:203.0.113.7");
  EXPECT_EQ(identify(kDefault, headers({{"X-Other", "x"}}), ip("2001:db8:1:2::9"), "", {}),
            "ip:2001:db8:1:2::/64");
}

TEST(Identify, EmptyHeaderValueCountsAsAbsent) {
  EXPECT_EQ(identify(kDefault, headers({{"X-API-Key", ""}}), ip("203.0.113.7"), "", {}),
            "ip:203.0.113.7");
  EXPECT_EQ(identify(kDefault, headers({{"X-API-Key", " \t "}}), ip("203.0.113.7"), "", {}),
            "ip:203.0.113.7");
}

TEST(Identify, HeaderValueIsTrimmed) {
  EXPECT_EQ(identify(kDefault, headers({{"X-API-Key", "  abc "}}), ip("203.0.113.7"), "", {}),
            "key:x-api-key:abc");
}

// Servers read the scheme in any case and skip the whitespace after it, and lenient base64
// decoders read one user:password from many spellings: each names one client.
TEST(Identify, AuthorizationIsNamedInOneSpellingPerCredentials) {
  const std::vector<IdentitySource> auth = {header_source("Authorization")};
  const auto id = [&](const char* value) {
    return identify(auth, headers({{"Authorization", value}}), ip("203.0.113.7"), "", {});
  };
  for (const char* v : {"Bearer tok-1", "bearer tok-1", "BEARER tok-1", "bEaReR  tok-1",
                        "Bearer\ttok-1", "Bearer \t tok-1 "}) {
    EXPECT_EQ(id(v), "key:authorization:Bearer tok-1") << v;
  }
  for (const char* v :
       {"Basic dXNlcjpwYQ==", "basic dXNlcjpwYQ", "Basic  dXNlcjpwYR==", "BASIC dXNlcjpwYR",
        "Basic dXNlcjpwYQ=", "Basic dXNl!cjpwYQ==", "Basic dXNlcjpwYQ==garbage"}) {
    EXPECT_EQ(id(v), "key:authorization:Basic dXNlcjpwYQ==") << v;
  }
  EXPECT_EQ(id("Basic dXNlcjpwYg=="), "key:authorization:Basic dXNlcjpwYg==");  // user:pb
  EXPECT_EQ(id("Basic -_-_"), "key:authorization:Basic +/+/");                  // URL-safe
  EXPECT_EQ(id("Bearer TOK-1"), "key:authorization:Bearer TOK-1");  // credentials keep their case
  EXPECT_EQ(id("tok-1"), "key:authorization:tok-1");                // no scheme: as it is
  // Nothing to decode: the empty credentials, as lenient decoders read them (one client).
  for (const char* v : {"Basic !!", "Basic !1", "basic !2", "Basic =dXNlcjpwYQ==", "Basic =x"}) {
    EXPECT_EQ(id(v), "key:authorization:Basic ") << v;
  }
  // Another header keeps its bytes.
  EXPECT_EQ(identify(kDefault, headers({{"X-API-Key", "Bearer  t"}}), ip("203.0.113.7"), "", {}),
            "key:x-api-key:Bearer  t");
}

// ---- JWS signed with ECDSA: (r, s) and (r, n - s) --------------------------------------------

// Base64url without padding, as JWS writes it.
std::string base64url(std::string_view bytes) {
  std::string out;
  for (const char c : util::base64(bytes)) {
    if (c == '=') break;
    out += c == '+' ? '-' : c == '/' ? '_' : c;
  }
  return out;
}

std::string big_endian(const BIGNUM* n, int bytes) {
  std::string out(static_cast<std::size_t>(bytes), '\0');
  EXPECT_EQ(BN_bn2binpad(n, reinterpret_cast<unsigned char*>(out.data()), bytes), bytes);
  return out;
}

// Whether OpenSSL verifies the ECDSA signature (r, s) of `input` by `key`.
bool verifies(EVP_PKEY* key, const EVP_MD* md, std::string_view input, const BIGNUM* r,
              const BIGNUM* s) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_dup(r), BN_dup(s));
  unsigned char* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(sig, &der);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, der, static_cast<std::size_t>(der_len),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return ok;
}

// A client holding one ECDSA-signed token could spell a second one that every verifier accepts
// (s and n - s): both are one client, and a token of another subject is another.
TEST(Identify, AnEcdsaSignedJwsIsOneClientWhicheverOfItsTwoSignatures) {
  struct Curve {
    const char* alg;
    const char* group;
    const EVP_MD* md;
    int bytes;
  };
  for (const Curve& c :
       {Curve{"ES256", "P-256", EVP_sha256(), 32}, Curve{"ES384", "P-384", EVP_sha384(), 48},
        Curve{"ES512", "P-521", EVP_sha512(), 66}}) {
    SCOPED_TRACE(c.alg);
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", c.group);
    ASSERT_NE(key, nullptr);
    BIGNUM* n = nullptr;
    ASSERT_EQ(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_ORDER, &n), 1);
    // The token signed once, with its signature's two forms: s below n / 2, and above.
    const auto sign = [&](std::string_view subject) {
      const std::string input =
          base64url(std::string("{\"alg\":\"") + c.alg + "\",\"typ\":\"JWT\"}") + "." +
          base64url(std::string("{\"sub\":\"") + std::string(subject) + "\"}");
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      std::size_t len = 0;
      EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, c.md, nullptr, key), 1);
      EXPECT_EQ(EVP_DigestSign(ctx, nullptr, &len,
                               reinterpret_cast<const unsigned char*>(input.data()), input.size()),
                1);
      std::string der(len, '\0');
      EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(der.data()), &len,
                               reinterpret_cast<const unsigned char*>(input.data()), input.size()),
                1);
      EVP_MD_CTX_free(ctx);
      const auto* p = reinterpret_cast<const unsigned char*>(der.data());
      ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len));
      const BIGNUM* r = nullptr;
      const BIGNUM* s = nullptr;
      ECDSA_SIG_get0(sig, &r, &s);
      BIGNUM* other = BN_new();
      BN_sub(other, n, s);  // n - s
      const bool s_is_high = BN_cmp(s, other) > 0;
      const BIGNUM* low = s_is_high ? other : s;
      const BIGNUM* high = s_is_high ? s : other;
      EXPECT_TRUE(verifies(key, c.md, input, r, low));
      EXPECT_TRUE(verifies(key, c.md, input, r, high));
      const std::string r_bytes = big_endian(r, c.bytes);
      std::pair<std::string, std::string> tokens{
          input + "." + base64url(r_bytes + big_endian(low, c.bytes)),
          input + "." + base64url(r_bytes + big_endian(high, c.bytes))};
      BN_free(other);
      ECDSA_SIG_free(sig);
      return tokens;
    };
    const std::vector<IdentitySource> auth = {header_source("Authorization")};
    const auto id = [&](const std::string& token) {
      return identify(auth, headers({{"Authorization", "Bearer " + token}}), ip("203.0.113.7"), "",
                      {});
    };
    const auto key_id = [&](const std::string& token) {
      return identify(kDefault, headers({{"X-API-Key", token}}), ip("203.0.113.7"), "", {});
    };
    const auto [low, high] = sign("alice");
    EXPECT_NE(low, high);
    EXPECT_EQ(id(high), id(low));
    EXPECT_EQ(id(low), "key:authorization:Bearer " + low);  // the low form is its own
    EXPECT_EQ(key_id(high), key_id(low));
    // Whatever the scheme, or none.
    for (const char* prefix : {"", "JWT ", "Token "}) {
      const auto as = [&](const std::string& token) {
        return identify(auth, headers({{"Authorization", prefix + token}}), ip("203.0.113.7"), "",
                        {});
      };
      EXPECT_EQ(as(high), as(low)) << prefix;
    }
    EXPECT_NE(id(sign("bob").second), id(low));
    EXPECT_NE(id(sign("alice").second), id(low));  // signed again: another token
    BN_free(n);
    EVP_PKEY_free(key);
  }
}

TEST(Identify, SourceOrderDecides) {
  const std::vector<IdentitySource> two = {header_source("X-User"), header_source("X-API-Key"),
                                           ip_source()};
  const auto both = headers({{"X-API-Key", "k"}, {"X-User", "u"}});
  EXPECT_EQ(identify(two, both, ip("203.0.113.7"), "", {}), "key:x-user:u");
  EXPECT_EQ(identify(two, headers({{"X-API-Key", "k"}}), ip("203.0.113.7"), "", {}),
            "key:x-api-key:k");
  // ip first: the header is never consulted.
  const std::vector<IdentitySource> ip_first = {ip_source(), header_source("X-API-Key")};
  int calls = 0;
  HeaderLookup counting = [&](std::string_view) -> std::optional<std::string_view> {
    ++calls;
    return "k";
  };
  EXPECT_EQ(identify(ip_first, counting, ip("203.0.113.7"), "", {}), "ip:203.0.113.7");
  EXPECT_EQ(calls, 0);
}

TEST(Identify, NoSourcePresentIsNullopt) {
  const std::vector<IdentitySource> only_header = {header_source("X-API-Key")};
  EXPECT_EQ(identify(only_header, headers({}), ip("203.0.113.7"), "", {}), std::nullopt);
  EXPECT_EQ(identify({}, headers({}), ip("203.0.113.7"), "", {}), std::nullopt);
  EXPECT_EQ(identify(only_header, nullptr, ip("203.0.113.7"), "", {}), std::nullopt);
}

TEST(Identify, HeaderValuesCannotImpersonateIpsOrOtherSources) {
  // A client sending "X-API-Key: ip:203.0.113.7" is not the client at 203.0.113.7.
  const auto spoof =
      identify(kDefault, headers({{"X-API-Key", "ip:203.0.113.7"}}), ip("198.51.100.1"), "", {});
  const auto real = identify(kDefault, headers({}), ip("203.0.113.7"), "", {});
  EXPECT_NE(spoof, real);
  // The same value in two different headers names two clients.
  const std::vector<IdentitySource> two = {header_source("X-User"), header_source("X-API-Key")};
  EXPECT_NE(identify(two, headers({{"X-User", "42"}}), ip("203.0.113.7"), "", {}),
            identify(two, headers({{"X-API-Key", "42"}}), ip("203.0.113.7"), "", {}));
}

TEST(Identify, LongHeaderValuesAreHashed) {
  const std::string at_limit(256, 'a');
  EXPECT_EQ(identify(kDefault, headers({{"X-API-Key", at_limit}}), ip("203.0.113.7"), "", {}),
            "key:x-api-key:" + at_limit);
  // Check value: sha256("a" x 257), from Python's hashlib.
  EXPECT_EQ(identify(kDefault, headers({{"X-API-Key", std::string(257, 'a')}}), ip("203.0.113.7"),
                     "", {}),
            "key#x-api-key:e8d95cc2b4bc198c54b40bd214df958afb65f5e73d2c2eafe0593cf5c635c1f0");
  // A short value that looks like a hash is still a plain key, not the hashed identity.
  const std::string fake = "e8d95cc2b4bc198c54b40bd214df958afb65f5e73d2c2eafe0593cf5c635c1f0";
  EXPECT_NE(identify(kDefault, headers({{"X-API-Key", fake}}), ip("203.0.113.7"), "", {}),
            identify(kDefault, headers({{"X-API-Key", std::string(257, 'a')}}), ip("203.0.113.7"),
                     "", {}));
}

TEST(Identify, IpSourceGoesThroughTrustedProxiesAndPrefixes) {
  const std::vector<IdentitySource> ip24 = {ip_source(24, 48)};
  EXPECT_EQ(identify(ip24, headers({}), ip("10.0.0.1"), "1.1.1.1, 198.51.100.77", kProxies),
            "ip:198.51.100.0/24");
  EXPECT_EQ(identify(ip24, headers({}), ip("203.0.113.7"), "198.51.100.77", kProxies),
            "ip:203.0.113.0/24");
  EXPECT_EQ(identify(ip24, headers({}), ip("10.0.0.1"), "[2001:db8:1:2::5]:443", kProxies),
            "ip:2001:db8:1::/48");
  EXPECT_EQ(identify(ip24, headers({}), ip("::ffff:10.0.0.1"), "::ffff:198.51.100.77", kProxies),
            "ip:198.51.100.0/24");
}

TEST(LoggableIdentity, NeverShowsAHeaderValue) {
  EXPECT_EQ(loggable_identity("ip:203.0.113.7"), "ip:203.0.113.7");
  EXPECT_EQ(loggable_identity("ip:2001:db8:1:2::/64"), "ip:2001:db8:1:2::/64");
  // sha256("abc123") = 6ca13d52ca70...
  EXPECT_EQ(loggable_identity("key:x-api-key:abc123"), "key:x-api-key:sha256=6ca13d52ca70");
  const std::string hashed = "key#x-api-key:" + std::string(64, 'f');
  EXPECT_EQ(loggable_identity(hashed), "key:x-api-key:sha256=ffffffffffff");
  // Anything else (a /v1/check key): sha256("user-42") = 6d894aa3ee80...
  EXPECT_EQ(loggable_identity("user-42"), "sha256=6d894aa3ee80");
  EXPECT_EQ(loggable_identity("key:"), "sha256=" + loggable_identity("key:").substr(7));
  EXPECT_EQ(loggable_identity("key:").find("key:"), std::string::npos);
}

}  // namespace
}  // namespace fg::decide
