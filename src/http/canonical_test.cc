// The canonical view of a request (canonical.h): the rules one by one, then the invariant over
// generated targets that no spelling of a limited path reaches a lenient upstream unmatched.
#include "http/canonical.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

#include "fixtures/lenient_view.h"

namespace fg::http {
namespace {

using fg::testing::lenient_path;

std::string canon(std::string_view p) {
  CanonicalPath c = canonical_path(p);
  return c.error.empty() ? c.path : "refused";
}

TEST(CanonicalPath, DotSegmentsSlashesAndEscapes) {
  EXPECT_EQ(canon("/api/x"), "/api/x");
  EXPECT_EQ(canon("/api/"), "/api/");
  EXPECT_EQ(canon("//api//x"), "/api/x");
  EXPECT_EQ(canon("/api/../x"), "/x");
  EXPECT_EQ(canon("/x/../api/y"), "/api/y");
  EXPECT_EQ(canon("/api/./x"), "/api/x");
  EXPECT_EQ(canon("/a/b/.."), "/a/");
  EXPECT_EQ(canon("/a/b/."), "/a/b/");
  EXPECT_EQ(canon("/../../etc"), "/etc");
  EXPECT_EQ(canon("/"), "/");
  EXPECT_EQ(canon("/%61pi/%7euser"), "/api/~user");  // escapes decoded
  EXPECT_EQ(canon("/%2e%2E/api/x"), "/api/x");       // encoded dots are dots
  EXPECT_EQ(canon("/x/%2e%2e/api"), "/api");
  EXPECT_EQ(canon("/a%20b"), "/a%20b");  // re-encoded in upper-case hex where needed
  EXPECT_EQ(canon("/a b"), "/a%20b");
  EXPECT_EQ(canon("/a%3fb"), "/a%3Fb");
  EXPECT_EQ(canon("/caf\xc3\xa9"), "/caf%C3%A9");
  EXPECT_EQ(canon("/caf%c3%a9"), "/caf%C3%A9");
  EXPECT_EQ(canon("/a:b@c!$&'()*+,="), "/a:b@c!$&'()*+,=");
}

TEST(CanonicalPath, EveryPcharIsWrittenAsItself) {
  // RFC 3986 §3.3: a segment's pchar is unreserved (ALPHA DIGIT - . _ ~), a sub-delimiter, ':'
  // or '@'; ';' is refused (canonical.h). Each stays as it is, sent raw or as %XX (in either
  // hex case), in a path that is already canonical and in one that is not ("//" to collapse).
  std::string pchars = "-._~!$&'()*+,=:@";
  for (char c = 'A'; c <= 'Z'; ++c) pchars += c;
  for (char c = 'a'; c <= 'z'; ++c) pchars += c;
  for (char c = '0'; c <= '9'; ++c) pchars += c;
  static constexpr char kUpper[] = "0123456789ABCDEF";
  static constexpr char kLower[] = "0123456789abcdef";
  for (const char c : pchars) {
    const auto u = static_cast<unsigned char>(c);
    const std::string raw = std::string("/a") + c + "b";
    SCOPED_TRACE(raw);
    EXPECT_EQ(canon(raw), raw);
    EXPECT_EQ(canon("/" + raw), raw);
    for (const char* hex : {kUpper, kLower}) {
      const std::string escaped = std::string("/a%") + hex[u >> 4] + hex[u & 15] + "b";
      EXPECT_EQ(canon(escaped), raw);
      EXPECT_EQ(canon("/" + escaped), raw);
    }
  }
}

TEST(CanonicalPath, RefusesEveryControlCharacter) {
  // C0 controls and DEL (0x7f), raw or as %XX: servers strip or stop at them.
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::vector<unsigned char> controls;
  for (unsigned char c = 0; c < 0x20; ++c) controls.push_back(c);
  controls.push_back(0x7f);
  for (const unsigned char c : controls) {
    SCOPED_TRACE(static_cast<int>(c));
    EXPECT_EQ(canon(std::string("/a") + static_cast<char>(c) + "b"), "refused");
    EXPECT_EQ(canon(std::string("/a%") + kHex[c >> 4] + kHex[c & 15] + "b"), "refused");
  }
}

TEST(CanonicalPath, RefusesWhatServersReadDifferently) {
  for (std::string_view p : {"/api%2Fitems",
                             "/api%2fitems",
                             "/%2Fapi/x",
                             "/api%5Citems",
                             "/api%5citems",
                             "/api\\items",
                             "/api;x/items",
                             "/api%3Bx/items",
                             "/%2561pi",
                             "/a%zz",
                             "/a%4",
                             "/a%",
                             "/a%00b",
                             "/a%0Db",
                             "/a\tb",
                             "api/x",
                             "",
                             "/api./x",
                             "/api%2e/x",
                             "/api%20/x",
                             "/a.",
                             "/api%C0%AFx",
                             "/%C0%AE%C0%AE/api",
                             "/a%ED%A0%80",
                             "/a%F5%80%80%80",
                             "/a%E2%82"}) {
    EXPECT_EQ(canon(p), "refused") << p;
  }
}

Request make(std::string_view method, std::string_view target) {
  Request r;
  r.method_string(boost::beast::string_view(method.data(), method.size()));
  r.target(boost::beast::string_view(target.data(), target.size()));
  r.version(11);
  r.set(boost::beast::http::field::host, "floodgate.test");
  return r;
}

TEST(Canonicalize, MethodUpperCaseTargetAndHost) {
  Request r = make("post", "/x/../api/%69tems?q=%2F");
  EXPECT_FALSE(canonicalize(r, {}));
  EXPECT_EQ(r.method(), boost::beast::http::verb::post);
  EXPECT_EQ(r.method_string(), "POST");
  EXPECT_EQ(r.target(), "/api/items?q=%2F");  // the query is kept as sent

  Request a = make("GET", "HTTP://other.test:81/api/x?y");
  EXPECT_FALSE(canonicalize(a, {}));
  EXPECT_EQ(a.target(), "/api/x?y");
  EXPECT_EQ(a[boost::beast::http::field::host], "other.test:81");  // RFC 9112 §3.2.2

  Request empty = make("GET", "http://other.test?y");
  EXPECT_FALSE(canonicalize(empty, {}));
  EXPECT_EQ(empty.target(), "/?y");

  Request star = make("OPTIONS", "*");
  EXPECT_FALSE(canonicalize(star, {}));
  EXPECT_EQ(star.target(), "*");
}

TEST(Canonicalize, HostIsLowerCaseWithoutTrailingDotAndWithoutUserinfo) {
  Request r = make("GET", "/x");
  r.set(boost::beast::http::field::host, "API.Example.com.:8080");
  EXPECT_FALSE(canonicalize(r, {}));
  EXPECT_EQ(r[boost::beast::http::field::host], "api.example.com:8080");
  // Each rewrite alone, and a canonical Host kept as it is.
  for (const auto& [sent, canonical] :
       std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"api.example.com.", "api.example.com"},
           {"api.example.com.:80", "api.example.com:80"},
           {"Api.example.com", "api.example.com"},
           {"api.example.com:80", "api.example.com:80"},
           {"[::1]:80", "[::1]:80"},
           {"a", "a"}}) {
    Request h = make("GET", "/x");
    h.set(boost::beast::http::field::host, sent);
    EXPECT_FALSE(canonicalize(h, {})) << sent;
    EXPECT_EQ(h[boost::beast::http::field::host], canonical) << sent;
  }
  EXPECT_EQ(decide::host_name("API.example.com.:80"), "API.example.com");
  EXPECT_EQ(decide::host_name("[::1]:80"), "[::1]");
  EXPECT_EQ(decide::host_name("[::1]"), "[::1]");
  EXPECT_EQ(canonical_host("[::1]:80"), "[::1]:80");
  Request u = make("GET", "/x");
  u.set(boost::beast::http::field::host, "user@h");
  EXPECT_TRUE(canonicalize(u, {}));
  Request a = make("GET", "http://user:pw@h/x");
  EXPECT_TRUE(canonicalize(a, {}));
}

// URL parsers read these as api.example.com (or another host than their bytes): RFC 9112 makes
// them a 400, in Host, in an absolute-form authority, and where upstreams read the host instead.
TEST(Canonicalize, RefusesHostsThatAreNotHostNames) {
  for (std::string_view h :
       {"api.example.com/x", "api.example.com?x", "api.example.com#x", "api.example.com\\x",
        "api%2Eexample.com", "\xef\xbd\x81pi.example.com", "api.example.com:80/x",
        "api.example.com x", "api.example.com:8o", "[::1", "[]", "[::g]", "[::1]x", "a:1:2"}) {
    Request r = make("GET", "/x");
    r.set(boost::beast::http::field::host, h);
    EXPECT_TRUE(canonicalize(r, {})) << h;
    Request x = make("GET", "/x");
    x.insert("X-Forwarded-Host", "a.example, " + std::string(h));
    EXPECT_TRUE(canonicalize(x, {})) << h;
    Request f = make("GET", "/x");
    f.insert("Forwarded", "for=192.0.2.1;host=\"" + std::string(h) + "\"");
    EXPECT_TRUE(canonicalize(f, {})) << h;
  }
  for (std::string_view t : {"http://api%2Eexample.com/x", "http://api.example.com\\x/y"}) {
    Request r = make("GET", t);
    EXPECT_TRUE(canonicalize(r, {})) << t;
  }
  for (std::string_view h : {"api.example.com", "API.example.com.:8080", "[2001:db8::1]:443",
                             "192.0.2.1", "a-b_c~d.example", "example.com:", ""}) {
    Request r = make("GET", "/x");
    r.set(boost::beast::http::field::host, h);
    r.insert("X-Forwarded-Host", h);
    r.insert("Forwarded", "for=192.0.2.1;host=\"" + std::string(h) + "\";proto=https");
    EXPECT_FALSE(canonicalize(r, {})) << h;
  }
}

// A forwarded host is a token, or one quoted string with no quote, backslash, ',' or ';' inside:
// readers that drop every quote, stop at the first, or unescape and keep a quoted ',' find
// different hosts in anything else (api.example.com, api, or a.example,api.example.com).
TEST(Canonicalize, RefusesForwardedHostsQuotedAnyOtherWay) {
  for (std::string_view v :
       {"host=api\".example.com\"", "host=\"\"api.example.com",
        "for=192.0.2.1;host=ap\"i.example.com", "host=\"api\".example.com",
        "host=\"api.example.com", "host=api.example.com\"", "host=\"a\\.example.com\"",
        "host=\"a.example,api.example.com\"", "host=\"a.example;api.example.com\"",
        "by=\"x,host=api.example.com\"", "host=\""}) {
    Request f = make("GET", "/x");
    f.insert("Forwarded", v);
    EXPECT_TRUE(canonicalize(f, {})) << v;
  }
  for (std::string_view v : {"api\".example.com\"", "\"\"api.example.com", "\"api\".example.com",
                             "\"api.example.com", "a\\.example.com"}) {
    Request x = make("GET", "/x");
    x.insert("X-Forwarded-Host", "other.example.com, " + std::string(v));
    EXPECT_TRUE(canonicalize(x, {})) << v;
  }
  for (std::string_view v : {"host=api.example.com", "host=\"api.example.com\"",
                             "for=192.0.2.1;host = \"api.example.com\" ;proto=https",
                             "for=\"[2001:db8::1]:4711\";host=api.example.com"}) {
    Request f = make("GET", "/x");
    f.insert("Forwarded", v);
    f.insert("X-Forwarded-Host", "\"other.example.com\", b.example");
    EXPECT_FALSE(canonicalize(f, {})) << v;
    EXPECT_EQ(forwarded_hosts(f), "api.example.com,other.example.com,b.example") << v;
  }
  Request empty = make("GET", "/x");
  empty.insert("Forwarded", "host=\"\"");
  EXPECT_FALSE(canonicalize(empty, {}));
  EXPECT_EQ(forwarded_hosts(empty), "");
}

// Some frameworks route the path named in X-Original-URL or X-Rewrite-URL instead of the request
// line's: one naming another path is refused, one naming the request's own is let through.
TEST(Canonicalize, RefusesAnotherPathNamedToRoute) {
  for (std::string_view h : {"X-Original-URL", "X-Rewrite-URL", "x_original_url"}) {
    // Other paths, and spellings of this one that readers may take for another: the field is
    // forwarded as written ('#' starts a fragment to a URI parser; ".." left unresolved by some).
    for (std::string_view v :
         {"/api/x", "/api/./x?a=1", "http://h/free", "free", "", "/fr%2Fee", "/%66ree", "/./free",
          "/api/x#/../../free", "/api/x/../../free", "/free#x", "/free/"}) {
      Request r = make("DELETE", "/free");
      r.insert(h, v);
      EXPECT_TRUE(canonicalize(r, {})) << h << ": " << v;
    }
    for (std::string_view v : {"/free", "/free?x=1", " /free "}) {
      Request r = make("DELETE", "/fr%65e");  // its canonical path is /free
      r.insert(h, v);
      EXPECT_FALSE(canonicalize(r, {})) << h << ": " << v;
    }
  }
}

// A Forwarded field is a list of token=value parameters, each value a token or a plain quoted
// string: readers unquote and unescape parameter names too ("host"=a, ho""st=a and h\ost=a are
// host=a to Symfony's HeaderUtils), which a scan for "host=" would not see.
TEST(Canonicalize, ForwardedIsAListOfPlainParameters) {
  for (std::string_view v :
       {"for=192.0.2.1;\"host\"=api.example.com", "ho\"\"st=api.example.com",
        "h\\ost=api.example.com", "for=192.0.2.1;host=a b", "=x", "host", "for=\"a;b\"",
        "for=\"a,b\"", "for=\"a\\\"b\"", "for=a\"b", "for==a", "for=\"unterminated"}) {
    Request r = make("GET", "/x");
    r.insert("Forwarded", v);
    EXPECT_TRUE(canonicalize(r, {})) << v;
  }
  for (std::string_view v :
       {"for=\"[2001:db8::1]:4711\";proto=https;host=example.com",
        "for=192.0.2.60;proto=http;by=203.0.113.43", "for=192.0.2.43, for=198.51.100.17",
        "host = \"api.example.com\"", "for=_hidden, for=_SEVKISEK", "for=unknown;host=a:8080",
        "for=[2001:db8::1]", "", " , for=a,"}) {
    Request r = make("GET", "/x");
    r.insert("Forwarded", v);
    EXPECT_FALSE(canonicalize(r, {})) << v;
  }
}

// Without Host, the upstream would get the name of floodgate's `upstream` as its Host.
TEST(Canonicalize, AMissingHostIsRefusedInHttp11AndEmptyInHttp10) {
  Request r = make("GET", "/x");
  r.erase(boost::beast::http::field::host);
  EXPECT_TRUE(canonicalize(r, {}));
  r.version(10);
  EXPECT_FALSE(canonicalize(r, {}));
  ASSERT_NE(r.find(boost::beast::http::field::host), r.end());
  EXPECT_EQ(r[boost::beast::http::field::host], "");
  Request absolute = make("GET", "http://a.example/x");
  absolute.erase(boost::beast::http::field::host);
  EXPECT_FALSE(canonicalize(absolute, {}));
  EXPECT_EQ(absolute[boost::beast::http::field::host], "a.example");
}

TEST(Canonicalize, FieldsFloodgateReadsHoldOneValueOnce) {
  const std::vector<std::string> single{"X-API-Key"};
  Request list = make("GET", "/x");
  list.insert("X-API-Key", "a, b");
  EXPECT_TRUE(canonicalize(list, single));
  Request underscore = make("GET", "/x");
  underscore.insert("X-API-Key", "a");
  underscore.insert("X_API_KEY", "b");
  EXPECT_TRUE(canonicalize(underscore, single));
  // Alone too: floodgate would not read it, a CGI-style server would read it as X-API-Key.
  Request alone = make("GET", "/x");
  alone.insert("X_API_Key", "b");
  const auto why = canonicalize(alone, single);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "X_API_Key is X-API-Key to servers that read '_' as '-': spell it X-API-Key");
  Request reversed = make("GET", "/x");
  reversed.insert("X-Tenant-Id", "t");
  EXPECT_TRUE(canonicalize(reversed, {"X_Tenant_Id"}));
  Request other_case = make("GET", "/x");
  other_case.insert("x-api-KEY", "a");
  EXPECT_FALSE(canonicalize(other_case, single));
  Request dropped = make("GET", "/x");
  dropped.insert("X-API-Key", "a");
  dropped.insert("Connection", "keep-alive, x-api-key");
  EXPECT_TRUE(canonicalize(dropped, single));
  Request host = make("GET", "/x");
  host.insert("Connection", "Host");
  EXPECT_TRUE(canonicalize(host, {}));
  Request fine = make("GET", "/x");
  fine.insert("X-API-Key", "a");
  fine.insert("Connection", "keep-alive");
  EXPECT_FALSE(canonicalize(fine, single));
}

// Values that upstreams read as another, equal value: each would be a client of its own here.
TEST(Canonicalize, RefusesValuesFloodgateReadsThatUpstreamsReadOtherwise) {
  const auto refused = [](std::string_view name, std::string_view value) {
    Request r = make("GET", "/x");
    r.insert(name, value);
    return canonicalize(r, {std::string(name)}).has_value();
  };
  // Bytes that Python's strip() or JavaScript's trim() removes once decoded as Latin-1.
  for (std::string_view v : {"tok\xa0", "\xa0tok", "tok\x85", "tok\x1f", "t\xc3\xa9", "tok\x7f"}) {
    EXPECT_TRUE(refused("X-API-Key", v)) << v;
    EXPECT_TRUE(refused("Authorization", std::string("Bearer ") + std::string(v))) << v;
  }
  EXPECT_FALSE(refused("X-API-Key", "tok"));
  EXPECT_FALSE(refused("X-API-Key", "t\tk"));
  // Basic credentials: bob:correct-horse is "Ym9iOmNvcnJlY3QtaG9yc2U=" and nothing else.
  EXPECT_FALSE(refused("Authorization", "Basic Ym9iOmNvcnJlY3QtaG9yc2U="));
  EXPECT_FALSE(refused("Authorization", "basic  Ym9iOmNvcnJlY3QtaG9yc2U="));
  EXPECT_FALSE(refused("Authorization", "Basic "));
  for (std::string_view c :
       {"Ym9i-OmNvcnJlY3QtaG9yc2U=", "Ym9iOmNvcnJl_Y3QtaG9yc2U=", "Ym9i=OmNvcnJlY3QtaG9yc2U=",
        "Ym9iOmNvcnJlY3QtaG9yc2U", "Ym9iOmNvcnJlY3QtaG9yc2V=", "Ym9iOmNvcnJlY3QtaG9yc2U==",
        "Ym9iOmNv cnJlY3QtaG9yc2U=", "!1", "=dXNl"}) {
    EXPECT_TRUE(refused("Authorization", "Basic " + std::string(c))) << c;
  }
  // A JWS: its signature as encoders write it, and not otherwise.
  const std::string jws = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.";
  EXPECT_FALSE(
      refused("Authorization", "Bearer " + jws + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
  EXPECT_FALSE(refused("Authorization", "Bearer " + jws));  // unsecured: no signature
  for (std::string_view sig : {"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",  // leftover bits
                               "dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk",  // standard alphabet
                               "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk=",
                               "dBjf!tJeZ4CVP-mB92K27"
                               "uhbUJU1p1r_wW1gFWFOEjXk"}) {
    EXPECT_TRUE(refused("Authorization", "Bearer " + jws + std::string(sig))) << sig;
  }
  // Whatever the scheme, or none; and no second word after the credentials.
  for (std::string_view prefix : {"", "JWT ", "Token ", "bearer "}) {
    EXPECT_FALSE(refused("Authorization",
                         std::string(prefix) + jws + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
        << prefix;
    EXPECT_TRUE(refused("Authorization",
                        std::string(prefix) + jws + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"))
        << prefix;
  }
  EXPECT_TRUE(refused("Authorization", "Bearer tok junk."));
  EXPECT_TRUE(refused("Authorization", "Bearer tok\tjunk"));
  EXPECT_FALSE(refused("Authorization", "Bearer  tok"));
  // A JWS as an API key too.
  EXPECT_FALSE(refused("X-API-Key", jws + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
  EXPECT_TRUE(refused("X-API-Key", jws + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"));
  // Opaque tokens are not read as JWS.
  EXPECT_FALSE(refused("Authorization", "Bearer v1.abc.xyz"));
  EXPECT_FALSE(refused("Authorization", "Bearer tok/with+chars=="));
}

TEST(Canonicalize, RefusesOtherSchemesFormsAndRepeatedFields) {
  for (std::string_view t : {"ftp://h/api/x", "x://h/api", "gopher://h/api", "h:80", "api/x",
                             "/api/x#frag", "*", "http:///api"}) {
    Request r = make("GET", t);
    EXPECT_TRUE(canonicalize(r, {})) << t;
  }
  Request two_hosts = make("GET", "/api/x");
  two_hosts.insert(boost::beast::http::field::host, "evil.test");
  EXPECT_TRUE(canonicalize(two_hosts, {}));

  Request two_keys = make("GET", "/api/x");
  two_keys.insert("X-API-Key", "a");
  EXPECT_FALSE(canonicalize(two_keys, {"X-API-Key"}));
  two_keys.insert("x-api-key", "b");
  const auto why = canonicalize(two_keys, {"X-API-Key"});
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("X-API-Key"), std::string::npos);
}

TEST(Canonicalize, RefusesARequestNamingAnotherMethodThanItsOwn) {
  for (std::string_view field :
       {"X-HTTP-Method-Override", "x-http-method", "X-Method-Override", "X_HTTP_Method_Override"}) {
    Request r = make("POST", "/api/x");
    r.insert(boost::beast::string_view(field.data(), field.size()), "DELETE");
    const auto why = canonicalize(r, {});
    ASSERT_TRUE(why) << field;
    EXPECT_NE(why->find("names another method"), std::string::npos) << *why;
  }
  for (std::string_view t :
       {"/api/x?_method=DELETE", "/api/x?a=1&_method=put", "/api/x?%5Fmethod=DELETE",
        "/api/x?_method=DEL%45TE", "/api/x?.method=DELETE", "/api/x?+_method=DELETE",
        "/api/x?_method[]=DELETE", "/api/x?_METHOD=DELETE", "/api/x?a=1;_method=DELETE",
        "http://h/api/x?_method=DELETE"}) {
    Request r = make("POST", t);
    EXPECT_TRUE(canonicalize(r, {})) << t;
  }
  // Naming its own method (in any case), or no method, changes nothing.
  Request same = make("post", "/api/x?_method=Post&method=card&x_method=DELETE");
  same.insert("X-HTTP-Method-Override", " post ");
  EXPECT_FALSE(canonicalize(same, {}));
  EXPECT_EQ(same.target(), "/api/x?_method=Post&method=card&x_method=DELETE");
}

// Targets built from the characters that matter to path readers.
rc::Gen<std::string> targets() {
  const auto piece = rc::gen::element<std::string>(
      "/", "/", "/", ".", "..", "%2F", "%2f", "%5C", "\\", "%2E", "%2e", "%25", "%", "2", "F", ";",
      "?", "#", "a", "api", "pi", "%61", "%69", "x", " ", "%20", "\xc3", "%C3", ":", "@",
      "http://h", "HTTPS://h", "ftp://h", "//");
  return rc::gen::map(rc::gen::container<std::vector<std::string>>(piece),
                      [](const std::vector<std::string>& parts) {
                        std::string t;
                        for (const std::string& p : parts) t += p;
                        return t;
                      });
}

// For every target floodgate accepts: what it forwards is canonical (canonicalizing it again
// changes nothing), a lenient upstream reads it as exactly the decoded path that was matched,
// and a target that a lenient upstream would route under /api/ is matched under /api/ too.
RC_GTEST_PROP(CanonicalProperty, NoSpellingReachesALenientUpstreamUnmatched, ()) {
  // Many targets per case: the spellings that matter are rare among random strings.
  const auto batch = *rc::gen::container<std::vector<std::string>>(64, targets());
  for (const std::string& target : batch) {
    for (const std::string& t : {target, "/api" + target, "/api/" + target}) {
      Request r = make("GET", t);
      if (canonicalize(r, {})) continue;  // refused: nothing reaches the upstream
      const std::string forwarded(r.target());
      if (forwarded == "*") continue;
      const std::string path = forwarded.substr(0, forwarded.find('?'));
      RC_ASSERT(canon(path) == path);
      const std::string upstream_reads = lenient_path(forwarded);
      RC_ASSERT(upstream_reads == lenient_path(path));
      for (std::string_view prefix : {"/api/", "/api", "/a"}) {
        RC_ASSERT(path.starts_with(prefix) == upstream_reads.starts_with(prefix));
        if (lenient_path(t).starts_with(prefix)) RC_ASSERT(path.starts_with(prefix));
      }
    }
  }
}

}  // namespace
}  // namespace fg::http
