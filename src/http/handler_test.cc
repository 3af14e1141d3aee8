// The handler as pure functions over plain Beast messages: every status, header and body of
// design §2.3, with verdicts from a real memory store on a manual clock. No sockets.
#include "http/handler.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "floodgate/store.h"
#include "http/canonical.h"
#include "http/wire.h"

namespace fg::http {
namespace {

using std::chrono::seconds;

constexpr std::string_view kConfig = R"(
identity:
  - header: X-API-Key
  - ip: {}
trusted_proxies: [10.0.0.0/8]
on_store_error: allow
local_fallback: {instances: 4}
cors:
  allow_origins: [https://app.example.com]
policies:
  - name: per-minute
    match: {path_prefix: /api/}
    limit: 100
    period: 60s
  - name: per-second
    match: {path_prefix: /api/}
    limit: 10
    period: 1s
  - name: login
    match: {path: /api/login, method: POST}
    algorithm: sliding_window
    limit: 5
    period: 15m
  - name: trial
    match:
      path_prefix: /api/
      header: {name: X-Tenant, value: trial}
    limit: 2
    period: 1m
    shadow: true
)";

std::shared_ptr<const config::Config> load(std::string_view yaml, std::string_view extra = "") {
  auto c = config::parse_config(std::string(extra) + std::string(yaml), "test.yaml");
  EXPECT_TRUE(c) << c.error().message;
  return std::make_shared<const config::Config>(std::move(*c));
}

// kConfig with another on_store_error.
std::shared_ptr<Runtime> runtime_with(std::string_view mode) {
  std::string yaml(kConfig);
  const std::string_view from = "on_store_error: allow";
  yaml.replace(yaml.find(from), from.size(), "on_store_error: " + std::string(mode));
  return make_runtime(load(yaml));
}

config::IpAddress ip(std::string_view text) {
  auto a = config::parse_ip(text);
  EXPECT_TRUE(a) << text;
  return *a;
}

Request get(std::string target, std::vector<std::pair<std::string, std::string>> headers = {},
            beast_http::verb method = beast_http::verb::get) {
  Request r{method, target, 11};
  for (auto& [k, v] : headers) r.insert(k, v);
  return r;
}

std::string header(const Response& r, std::string_view name) {
  const auto it = r.find(boost::beast::string_view(name.data(), name.size()));
  return it == r.end() ? "<absent>" : std::string(it->value());
}

std::vector<std::string> policy_names(const Route& r) {
  std::vector<std::string> out;
  for (const Charge& c : r.charges) out.push_back(c.policy->name);
  return out;
}

class HandlerTest : public ::testing::Test {
 protected:
  std::shared_ptr<Runtime> rt = make_runtime(load(kConfig));
  RequestContext ctx{ip("203.0.113.7"), true, false};
  ManualClock clock;
  std::unique_ptr<Store> store = make_memory_store({}, clock);

  // route() then the store, as the session does; the answer and its route.
  std::pair<Answer, Route> decide(const Request& req) {
    Route r = route(req, *rt, ctx);
    if (r.kind == Route::Kind::kCheckCaller) r = check_route(req, *rt);  // the caller allowed
    EXPECT_TRUE(r.kind == Route::Kind::kDecide || r.kind == Route::Kind::kCheck);
    StoreOutcome out{decide_and_wait(*store, DecideRequest{r.identities.at(0), r.charges}),
                     std::nullopt};
    Answer a = r.kind == Route::Kind::kDecide ? answer_decision(req, r, *rt, out)
                                              : answer_check(req, r, *rt, out);
    return {std::move(a), std::move(r)};
  }

  // The whole response for an allowed-or-denied demo request.
  Response respond(const Request& req) {
    auto [a, r] = decide(req);
    Response res = a.serve ? demo_resource(req, req.target()) : std::move(a.response);
    finish(res, req, *rt, a.serve ? a.fields : HeaderFields{}, ctx);
    return res;
  }
};

// route() on a request that did not pass through canonicalize() (RequestContext::canonical
// false) canonicalizes its path itself: a dot segment cannot reach another route, an encoded '/'
// is refused. With the flag, the path is taken as it is (canonicalize() has checked it).
TEST_F(HandlerTest, ARouteOfARequestNotCanonicalizedChecksItsPathAllTheSame) {
  ASSERT_FALSE(ctx.canonical);
  Route r = route(get("/api/x/../../healthz"), *rt, ctx);
  EXPECT_EQ(r.path, "/healthz");
  EXPECT_EQ(r.reply.body(), "ok\n");
  r = route(get("/api/a%2Fb"), *rt, ctx);
  EXPECT_EQ(r.reply.result_int(), 400u);
  EXPECT_EQ(route(get("/api/./resource"), *rt, ctx).path, "/api/resource");

  RequestContext canonical = ctx;
  canonical.canonical = true;
  EXPECT_EQ(route(get("/api/resource"), *rt, canonical).path, "/api/resource");
  EXPECT_EQ(route(get("*", {}, beast_http::verb::options), *rt, canonical).path, "/*");
}

TEST_F(HandlerTest, OperationsEndpointsAreNeverLimited) {
  Route r = route(get("/healthz"), *rt, ctx);
  ASSERT_EQ(r.kind, Route::Kind::kReply);
  EXPECT_EQ(r.reply.result_int(), 200u);
  EXPECT_EQ(r.reply.body(), "ok\n");
  EXPECT_TRUE(r.charges.empty());

  EXPECT_EQ(route(get("/readyz"), *rt, ctx).reply.result_int(), 200u);
  RequestContext down = ctx;
  down.ready = false;
  r = route(get("/readyz"), *rt, down);
  EXPECT_EQ(r.reply.result_int(), 503u);
  EXPECT_EQ(r.reply.body(), "store unavailable\n");
  down.draining = true;
  EXPECT_EQ(route(get("/readyz"), *rt, down).reply.body(), "draining\n");
  EXPECT_EQ(route(get("/healthz"), *rt, down).reply.result_int(), 200u);

  EXPECT_EQ(route(get("/metrics"), *rt, ctx).kind, Route::Kind::kMetrics);
  r = route(get("/metrics", {}, beast_http::verb::post), *rt, ctx);
  EXPECT_EQ(r.reply.result_int(), 405u);
  EXPECT_EQ(header(r.reply, "Allow"), "GET, HEAD");
  r = route(get("/v1/check"), *rt, ctx);
  EXPECT_EQ(r.reply.result_int(), 405u);
  EXPECT_EQ(header(r.reply, "Allow"), "POST");

  // A policy on "/" does not reach them either.
  auto all = make_runtime(load("policies:\n  - {name: all, limit: 1, period: 1s}\n"));
  EXPECT_EQ(route(get("/healthz"), *all, ctx).kind, Route::Kind::kReply);
  EXPECT_EQ(route(get("/anything"), *all, ctx).kind, Route::Kind::kDecide);
}

TEST(Dashboard, ServedOnAdminOrALoopbackListenOrWhenPublic) {
  const config::IpAddress peer = *config::parse_ip("203.0.113.7");
  const RequestContext pub{peer, true, false, false};
  const RequestContext admin{peer, true, false, true};
  // The default listen (127.0.0.1:8080) is loopback: served there.
  auto rt = make_runtime(load(kConfig));
  Route r = route(get("/v1/status"), *rt, pub);
  EXPECT_EQ(r.kind, Route::Kind::kStatus);
  EXPECT_TRUE(r.charges.empty());
  r = route(get("/dashboard"), *rt, pub);
  ASSERT_EQ(r.kind, Route::Kind::kReply);
  EXPECT_EQ(r.reply.result_int(), 200u);
  EXPECT_EQ(header(r.reply, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(r.reply.body().find("/v1/status"), std::string::npos);
  // Nothing is loaded from anywhere (the one "http://" is the SVG namespace, a name).
  const std::string& page = r.reply.body();
  for (const char* loads : {"src=", "<link", "@import", "url(", "https://"}) {
    EXPECT_EQ(page.find(loads), std::string::npos) << loads;
  }
  EXPECT_EQ(page.find("fetch("), page.rfind("fetch(")) << "one fetch";
  EXPECT_NE(page.find("fetch(\"/v1/status\""), std::string::npos);
  EXPECT_NE(header(r.reply, "Content-Security-Policy").find("connect-src 'self'"),
            std::string::npos);
  r = route(get("/v1/status", {}, beast_http::verb::post), *rt, pub);
  EXPECT_EQ(r.reply.result_int(), 405u);

  // A public address: not served (the path is then an ordinary one), unless dashboard.public.
  auto wide = make_runtime(load(kConfig, "listen: 0.0.0.0:8080\n"));
  EXPECT_NE(route(get("/v1/status"), *wide, pub).kind, Route::Kind::kStatus);
  EXPECT_EQ(route(get("/dashboard"), *wide, pub).kind, Route::Kind::kServe);  // the demo's 404
  auto open = make_runtime(load(kConfig, "listen: 0.0.0.0:8080\ndashboard: {public: true}\n"));
  EXPECT_EQ(route(get("/v1/status"), *open, pub).kind, Route::Kind::kStatus);

  // With admin_listen: only there, whatever `listen` is.
  auto split = make_runtime(load(kConfig, "admin_listen: 127.0.0.1:9091\n"));
  EXPECT_NE(route(get("/v1/status"), *split, pub).kind, Route::Kind::kStatus);
  EXPECT_EQ(route(get("/v1/status"), *split, admin).kind, Route::Kind::kStatus);
  EXPECT_EQ(route(get("/dashboard"), *split, admin).reply.result_int(), 200u);

  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.8.0.2"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
  EXPECT_FALSE(is_loopback_host("1270.0.0.1.example"));
  EXPECT_FALSE(is_loopback_host("127.0.0.1.example.com"));
}

TEST(Dashboard, ThePolicyParameter) {
  EXPECT_EQ(status_policy_param(get("/v1/status")), "");
  EXPECT_EQ(status_policy_param(get("/v1/status?policy=per-minute")), "per-minute");
  EXPECT_EQ(status_policy_param(get("/v1/status?x=1&policy=per%2Dsecond&y=2")), "per-second");
  EXPECT_EQ(status_policy_param(get("/v1/status?policy=a%2")), "a%2");
}

TEST(PolicyMatches, HeadCountsAsGetAndHostsAreNamesNotBytes) {
  config::Match get_only;
  get_only.methods = {"GET"};
  Request r;
  EXPECT_TRUE(policy_matches(get_only, "GET", "/x", r));
  EXPECT_TRUE(policy_matches(get_only, "HEAD", "/x", r));
  EXPECT_FALSE(policy_matches(get_only, "POST", "/x", r));
  config::Match head_only;
  head_only.methods = {"HEAD"};
  EXPECT_FALSE(policy_matches(head_only, "GET", "/x", r));

  config::Match vhost;
  vhost.header = config::Match::Header{"Host", std::string("api.example.com")};
  for (const char* h : {"api.example.com", "API.Example.com", "api.example.com.",
                        "api.example.com:443", "api.example.com.:80"}) {
    Request q;
    q.set(beast_http::field::host, h);
    EXPECT_TRUE(policy_matches(vhost, "GET", "/x", q)) << h;
  }
  Request other;
  other.set(beast_http::field::host, "api.example.org");
  EXPECT_FALSE(policy_matches(vhost, "GET", "/x", other));
}

// A policy on an Authorization value counts every spelling servers read as the same credentials
// (the scheme in any case, any whitespace after it), as an Authorization identity does.
TEST(PolicyMatches, AnAuthorizationValueInAnySpellingOfItsCredentials) {
  config::Match demo;
  demo.header = config::Match::Header{"Authorization", std::string("Bearer demo-token")};
  for (const char* v : {"Bearer demo-token", "bearer demo-token", "BEARER demo-token",
                        "Bearer  demo-token", "Bearer \t demo-token"}) {
    Request q;
    q.set("Authorization", v);
    EXPECT_TRUE(policy_matches(demo, "GET", "/x", q)) << v;
  }
  for (const char* v : {"Bearer demo-tokens", "Bearer Demo-token", "Basic demo-token"}) {
    Request q;
    q.set("Authorization", v);
    EXPECT_FALSE(policy_matches(demo, "GET", "/x", q)) << v;
  }
  config::Match other;  // other fields keep their bytes
  other.header = config::Match::Header{"X-Tenant", std::string("Bearer a")};
  Request q;
  q.set("X-Tenant", "bearer a");
  EXPECT_FALSE(policy_matches(other, "GET", "/x", q));
}

// Routers serve "/login/" as "/login" (Express unless strict, Rails, Spring before 6): a trailing
// '/' does not make another path, for `path` either way, and a prefix "/admin/" holds for "/admin".
TEST(PolicyMatches, ATrailingSlashIsTheSamePath) {
  Request r;
  config::Match login;
  login.path = "/login";
  EXPECT_TRUE(policy_matches(login, "POST", "/login", r));
  EXPECT_TRUE(policy_matches(login, "POST", "/login/", r));
  EXPECT_FALSE(policy_matches(login, "POST", "/login/x", r));
  EXPECT_FALSE(policy_matches(login, "POST", "/logins", r));
  EXPECT_FALSE(policy_matches(login, "POST", "/", r));
  config::Match slashed;
  slashed.path = "/login/";
  EXPECT_TRUE(policy_matches(slashed, "POST", "/login", r));
  EXPECT_TRUE(policy_matches(slashed, "POST", "/login/", r));
  config::Match root;
  root.path = "/";
  EXPECT_TRUE(policy_matches(root, "GET", "/", r));
  EXPECT_FALSE(policy_matches(root, "GET", "/x", r));
  config::Match admin;
  admin.path_prefix = "/admin/";
  EXPECT_TRUE(policy_matches(admin, "GET", "/admin", r));
  EXPECT_TRUE(policy_matches(admin, "GET", "/admin/", r));
  EXPECT_TRUE(policy_matches(admin, "GET", "/admin/x", r));
  EXPECT_FALSE(policy_matches(admin, "GET", "/administrators", r));
  EXPECT_FALSE(policy_matches(admin, "GET", "/", r));
}

// Upstreams behind a proxy act on X-Forwarded-Host or Forwarded's host= instead of Host: a
// policy on a host counts a request that names it there, whatever Host says.
TEST(PolicyMatches, AHostNamedInForwardingFieldsCounts) {
  config::Match vhost;
  vhost.header = config::Match::Header{"Host", std::string("api.example.com")};
  const std::vector<std::pair<const char*, const char*>> named = {
      {"X-Forwarded-Host", "api.example.com"},
      {"X-Forwarded-Host", "API.example.com.:443"},
      {"x-forwarded-host", "other.example.com, api.example.com"},
      {"X_Forwarded_Host", "api.example.com"},
      {"Forwarded", "host=api.example.com"},
      {"Forwarded", "for=192.0.2.1;HOST=\"Api.Example.com\";proto=https"},
      {"Forwarded", "for=192.0.2.1, host = api.example.com"},
      {"Forwarded", "for=192.0.2.1;by=\"x,host=api.example.com\""},
  };
  for (const auto& [name, value] : named) {
    Request q;
    q.set(beast_http::field::host, "other.example.com");
    q.insert(name, value);
    EXPECT_TRUE(policy_matches(vhost, "GET", "/x", q)) << name << ": " << value;
  }
  Request twice;
  twice.set(beast_http::field::host, "other.example.com");
  twice.insert("X-Forwarded-Host", "other.example.com");
  twice.insert("X-Forwarded-Host", "api.example.com");
  EXPECT_TRUE(policy_matches(vhost, "GET", "/x", twice));
  EXPECT_EQ(forwarded_hosts(twice), "other.example.com,api.example.com");

  Request elsewhere;
  elsewhere.set(beast_http::field::host, "other.example.com");
  elsewhere.insert("X-Forwarded-Host", "other.example.com");
  elsewhere.insert("Forwarded", "for=192.0.2.1;host=api.example.com.evil");
  elsewhere.insert("X-Forwarded-Hostname", "api.example.com");
  EXPECT_FALSE(policy_matches(vhost, "GET", "/x", elsewhere));
}

TEST_F(HandlerTest, PoliciesMatchByPathMethodAndHeader) {
  EXPECT_EQ(route(get("/other"), *rt, ctx).kind, Route::Kind::kServe);
  Route r = route(get("/api/items"), *rt, ctx);
  ASSERT_EQ(r.kind, Route::Kind::kDecide);
  EXPECT_EQ(policy_names(r), (std::vector<std::string>{"per-minute", "per-second"}));
  EXPECT_EQ(std::vector<std::size_t>(r.policy_indices.begin(), r.policy_indices.end()),
            (std::vector<std::size_t>{0, 1}));

  r = route(get("/api/login", {}, beast_http::verb::post), *rt, ctx);
  EXPECT_EQ(policy_names(r), (std::vector<std::string>{"per-minute", "per-second", "login"}));
  r = route(get("/api/login"), *rt, ctx);  // GET: not the login policy
  EXPECT_EQ(policy_names(r).size(), 2u);

  r = route(get("/api/x", {{"x-tenant", "trial"}}), *rt, ctx);
  EXPECT_EQ(policy_names(r), (std::vector<std::string>{"per-minute", "per-second", "trial"}));
  r = route(get("/api/x", {{"X-Tenant", "paid"}}), *rt, ctx);
  EXPECT_EQ(policy_names(r).size(), 2u);

  // Paths that mean /api/... are matched as /api/...
  for (const char* sneaky : {"//api/x", "/%61pi/x", "/x/../api/x", "/./api/x"}) {
    EXPECT_EQ(route(get(sneaky), *rt, ctx).kind, Route::Kind::kDecide) << sneaky;
  }
  // Costs come from the policies; local charges point at the divided policies.
  EXPECT_EQ(r.charges[0].cost, 1);
  EXPECT_EQ(r.local_charges[0].policy->limit, 25);
  EXPECT_EQ(r.local_charges[1].policy->limit, 2);
}

TEST_F(HandlerTest, IdentityFromApiKeyThenTrustedForwardedForThenPeer) {
  EXPECT_EQ(route(get("/api/x", {{"X-API-Key", "abc"}}), *rt, ctx).identities.at(0),
            "key:x-api-key:abc");
  EXPECT_EQ(route(get("/api/x"), *rt, ctx).identities.at(0), "ip:203.0.113.7");
  // The field is found in any case, among others of the same length; of two (which only a
  // request that skipped canonicalize() can have), the first sent.
  EXPECT_EQ(
      route(get("/api/x", {{"Forwarded", "for=x"}, {"x-api-KEY", "first"}, {"X-API-Key", "2nd"}}),
            *rt, ctx)
          .identities.at(0),
      "key:x-api-key:first");
  // The same past the fields find_header() walks (a request of many fields is searched).
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 30; ++i) many.emplace_back("X-Other-" + std::to_string(i), "o");
  many.emplace_back("x-api-KEY", "first");
  many.emplace_back("X-API-Key", "2nd");
  EXPECT_EQ(route(get("/api/x", many), *rt, ctx).identities.at(0), "key:x-api-key:first");
  // An untrusted peer cannot choose its identity with X-Forwarded-For.
  EXPECT_EQ(route(get("/api/x", {{"X-Forwarded-For", "198.51.100.1"}}), *rt, ctx).identities.at(0),
            "ip:203.0.113.7");
  RequestContext via_proxy = ctx;
  via_proxy.peer = ip("10.1.2.3");
  EXPECT_EQ(route(get("/api/x", {{"X-Forwarded-For", "1.1.1.1, 198.51.100.1"}}), *rt, via_proxy)
                .identities.at(0),
            "ip:198.51.100.1");
  // Several fields are one list.
  EXPECT_EQ(route(get("/api/x", {{"X-Forwarded-For", "1.1.1.1"}, {"X-Forwarded-For", "10.9.9.9"}}),
                  *rt, via_proxy)
                .identities.at(0),
            "ip:1.1.1.1");
}

TEST_F(HandlerTest, NoIdentityIsA400NamingTheHeader) {
  auto keyed = make_runtime(
      load("identity: [{header: X-API-Key}]\npolicies:\n  - {name: p, limit: 1, period: 1s}\n"));
  Route r = route(get("/api/x"), *keyed, ctx);
  ASSERT_EQ(r.kind, Route::Kind::kReply);
  EXPECT_EQ(r.reply.result_int(), 400u);
  EXPECT_EQ(header(r.reply, "Content-Type"), "application/problem+json");
  EXPECT_NE(r.reply.body().find("send X-API-Key"), std::string::npos) << r.reply.body();
}

TEST_F(HandlerTest, AllowedRequestCarriesEveryField) {
  const Response res = respond(get("/api/items"));
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(header(res, "X-RateLimit-Limit"), "10");  // per-second: least remaining
  EXPECT_EQ(header(res, "X-RateLimit-Remaining"), "9");
  EXPECT_EQ(header(res, "X-RateLimit-Reset"), "1");
  EXPECT_EQ(header(res, "RateLimit-Policy"), R"("per-minute";q=100;w=60, "per-second";q=10;w=1)");
  EXPECT_EQ(header(res, "RateLimit"), R"("per-minute";r=99;t=1, "per-second";r=9;t=1)");
  EXPECT_EQ(header(res, "Retry-After"), "<absent>");
  EXPECT_EQ(header(res, "Content-Type"), "application/json");
  EXPECT_EQ(res.body(), R"({"message":"hello from floodgate","method":"GET","path":"/api/items"})"
                        "\n");
  EXPECT_EQ(header(res, "Content-Length"), std::to_string(res.body().size()));
  EXPECT_TRUE(res.keep_alive());
}

TEST_F(HandlerTest, DeniedRequestIs429WithProblemBodyAndRetryAfter) {
  for (int i = 0; i < 10; ++i) ASSERT_EQ(respond(get("/api/items")).result_int(), 200u);
  clock.advance(std::chrono::milliseconds(50));  // half a token: not enough
  const Response res = respond(get("/api/items"));
  EXPECT_EQ(res.result_int(), 429u);
  EXPECT_EQ(header(res, "Content-Type"), "application/problem+json");
  EXPECT_EQ(header(res, "Retry-After"), "1");
  EXPECT_EQ(header(res, "X-RateLimit-Limit"), "10");
  EXPECT_EQ(header(res, "X-RateLimit-Remaining"), "0");
  EXPECT_EQ(header(res, "RateLimit"), R"("per-minute";r=90;t=6, "per-second";r=0;t=1)");
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["type"], "https://iana.org/assignments/http-problem-types#quota-exceeded");
  EXPECT_EQ(body["title"], "Too Many Requests");
  EXPECT_EQ(body["status"], 429);
  EXPECT_EQ(body["policy"], "per-second");
  EXPECT_EQ(body["retry_after"], 1);
  EXPECT_EQ(body["violated-policies"], nlohmann::json::array({"per-second"}));
  // Nothing was consumed by the denial: 1.05 s later per-minute has refilled 1.75 tokens, one
  // is taken: 90.75 left (a denial consuming would leave 89.75).
  clock.advance(seconds(1));
  EXPECT_EQ(header(respond(get("/api/items")), "RateLimit"),
            R"("per-minute";r=90;t=6, "per-second";r=9;t=1)");
}

TEST_F(HandlerTest, ShadowPolicyIsCountedAndShownButNeverDenies) {
  const Request req = get("/api/x", {{"X-Tenant", "trial"}});
  for (int i = 0; i < 2; ++i) ASSERT_EQ(respond(req).result_int(), 200u);
  auto [a, r] = decide(req);
  EXPECT_TRUE(a.serve);
  Response res = demo_resource(req, req.target());
  finish(res, req, *rt, a.fields, ctx);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_NE(header(res, "RateLimit").find(R"("trial";r=0)"), std::string::npos)
      << header(res, "RateLimit");
  // The headline is the most restrictive enforced policy, not the shadow one.
  EXPECT_EQ(header(res, "X-RateLimit-Limit"), "10");
}

TEST_F(HandlerTest, StoreFailureAnsweredByOnStoreError) {
  const Request req = get("/api/x");
  Route r = route(req, *rt, ctx);
  // The deciding service works out on_store_error (decider_test); the answer maps its outcome.
  StoreOutcome down{fail(ErrorCode::kDeadlineExceeded, "timeout"), std::nullopt,
                    decide::Degraded::kAllow};

  Answer a = answer_decision(req, r, *rt, down);  // allow
  EXPECT_TRUE(a.serve);
  EXPECT_EQ(a.degraded, Answer::Degraded::kAllow);
  Response res = demo_resource(req, req.target());
  finish(res, req, *rt, a.fields, ctx);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(header(res, "X-RateLimit-Degraded"), "store-unavailable");
  EXPECT_EQ(header(res, "RateLimit-Policy"), R"("per-minute";q=100;w=60, "per-second";q=10;w=1)");
  EXPECT_EQ(header(res, "X-RateLimit-Remaining"), "<absent>");  // no invented figures
  EXPECT_EQ(header(res, "RateLimit"), "<absent>");

  auto deny = runtime_with("deny");
  r = route(req, *deny, ctx);
  down.degraded = decide::Degraded::kDeny;
  a = answer_decision(req, r, *deny, down);
  EXPECT_FALSE(a.serve);
  EXPECT_EQ(a.degraded, Answer::Degraded::kDeny);
  EXPECT_EQ(a.response.result_int(), 503u);
  EXPECT_EQ(header(a.response, "Content-Type"), "application/problem+json");
  EXPECT_EQ(header(a.response, "Retry-After"), "1");
  EXPECT_EQ(nlohmann::json::parse(a.response.body())["status"], 503);

  auto local = runtime_with("local");
  r = route(req, *local, ctx);
  StoreOutcome fallback{fail(ErrorCode::kUnavailable, "refused"), std::nullopt,
                        decide::Degraded::kLocal};
  for (int i = 0; i < 2; ++i) {
    fallback.local_verdict =
        *decide_and_wait(*store, DecideRequest{r.identities.at(0), r.local_charges});
    a = answer_decision(req, r, *local, fallback);
    ASSERT_TRUE(a.serve) << i;
  }
  res = demo_resource(req, req.target());
  finish(res, req, *local, a.fields, ctx);
  EXPECT_EQ(header(res, "X-RateLimit-Limit"), "2");  // 10 per second / 4 instances
  EXPECT_EQ(header(res, "X-RateLimit-Remaining"), "0");
  EXPECT_EQ(header(res, "X-RateLimit-Degraded"), "local-fallback");
  fallback.local_verdict =
      *decide_and_wait(*store, DecideRequest{r.identities.at(0), r.local_charges});
  a = answer_decision(req, r, *local, fallback);
  EXPECT_FALSE(a.serve);
  EXPECT_EQ(a.response.result_int(), 429u);
  EXPECT_EQ(header(a.response, "X-RateLimit-Degraded"), "local-fallback");

  // A request no store can decide is a bug, not an outage.
  a = answer_decision(req, r, *rt, StoreOutcome{fail(ErrorCode::kInvalidArgument, "x"), {}});
  EXPECT_EQ(a.response.result_int(), 500u);
}

TEST_F(HandlerTest, CheckEndpoint) {
  const auto post = [](std::string body) {
    Request r = get("/v1/check", {{"Content-Type", "application/json"}}, beast_http::verb::post);
    r.body() = std::move(body);
    return r;
  };
  auto [a, r] = decide(post(R"({"policy":"per-second","key":"user-42","cost":3})"));
  EXPECT_EQ(r.identities.at(0), "check:user-42");  // a namespace of its own
  EXPECT_EQ(r.charges[0].cost, 3);
  EXPECT_EQ(a.response.result_int(), 200u);
  EXPECT_EQ(a.response.body(), R"({"allowed":true,"policy":"per-second","limit":10,"remaining":7,)"
                               R"("reset_after_ms":300,"retry_after_ms":0})");
  EXPECT_EQ(header(a.response, "X-RateLimit-Remaining"), "7");

  auto [d, r2] = decide(post(R"({"policy":"per-second","key":"user-42","cost":8})"));
  EXPECT_EQ(d.response.result_int(), 429u);
  EXPECT_EQ(d.response.body(), R"({"allowed":false,"policy":"per-second","limit":10,"remaining":7,)"
                               R"("reset_after_ms":300,"retry_after_ms":100})");
  EXPECT_EQ(header(d.response, "Retry-After"), "1");

  const auto status_of = [&](std::string body) {
    return check_route(post(std::move(body)), *rt).reply.result_int();
  };
  EXPECT_EQ(status_of("not json"), 400u);
  EXPECT_EQ(status_of("[]"), 400u);
  EXPECT_EQ(status_of(R"({"key":"k"})"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"per-second"})"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"per-second","key":""})"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"per-second","key":"k","cost":-1})"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"per-second","key":"k","cost":1.5})"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"per-second","key":"k","extra":1})"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"per-second","key":")" + std::string(2000, 'k') + "\"}"), 400u);
  EXPECT_EQ(status_of(R"({"policy":"nope","key":"k"})"), 404u);

  // Store down, fail open: allowed without figures.
  Route cr = check_route(post(R"({"policy":"per-second","key":"k"})"), *rt);
  Answer open = answer_check(post("{}"), cr, *rt,
                             {fail(ErrorCode::kUnavailable, "x"), {}, decide::Degraded::kAllow});
  EXPECT_EQ(open.response.result_int(), 200u);
  EXPECT_EQ(open.response.body(),
            R"({"allowed":true,"policy":"per-second","degraded":"store-unavailable"})");

  // On the public listener the caller is limited first (check_api_policy), before its body.
  Route caller = route(post(""), *rt, ctx);
  ASSERT_EQ(caller.kind, Route::Kind::kCheckCaller);
  ASSERT_EQ(caller.charges.size(), 1u);
  EXPECT_EQ(caller.charges[0].policy->name, "floodgate/check-api");
  EXPECT_EQ(caller.identities.at(0), "ip:203.0.113.7");
  RequestContext admin_ctx = ctx;
  admin_ctx.admin = true;  // without admin_listen: not served there
  EXPECT_NE(route(post(""), *rt, admin_ctx).kind, Route::Kind::kCheckCaller);
}

TEST_F(HandlerTest, CorsPreflightAndExposedHeaders) {
  const std::vector<std::pair<std::string, std::string>> preflight_headers = {
      {"Origin", "https://app.example.com"},
      {"Access-Control-Request-Method", "POST"},
      {"Access-Control-Request-Headers", "x-api-key, content-type"}};
  Route r = route(get("/api/items", preflight_headers, beast_http::verb::options), *rt, ctx);
  ASSERT_EQ(r.kind, Route::Kind::kReply);  // no store call: nothing consumed
  EXPECT_EQ(r.reply.result_int(), 204u);
  EXPECT_EQ(header(r.reply, "Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(header(r.reply, "Access-Control-Allow-Methods"), "POST");
  EXPECT_EQ(header(r.reply, "Access-Control-Allow-Headers"), "x-api-key, content-type");

  r = route(get("/api/items",
                {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}},
                beast_http::verb::options),
            *rt, ctx);
  EXPECT_EQ(r.reply.result_int(), 204u);
  EXPECT_EQ(header(r.reply, "Access-Control-Allow-Origin"), "<absent>");

  // Responses to an allowed origin expose the rate-limit fields, 429s included.
  const Request from_app = get("/api/items", {{"Origin", "https://app.example.com"}});
  Response ok = respond(from_app);
  EXPECT_EQ(header(ok, "Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(header(ok, "Access-Control-Expose-Headers"), std::string(kExposeHeaders));
  for (int i = 0; i < 9; ++i) respond(from_app);
  Response denied = respond(from_app);
  ASSERT_EQ(denied.result_int(), 429u);
  EXPECT_EQ(header(denied, "Access-Control-Expose-Headers"), std::string(kExposeHeaders));
  Response other = respond(get("/api/items", {{"Origin", "https://evil.example"}}));
  EXPECT_EQ(header(other, "Access-Control-Allow-Origin"), "<absent>");
}

// rate_limit_headers: the listener's form, a policy's for the responses it is the headline of,
// admin_listen's for /v1/check there.
constexpr std::string_view kFormsConfig = R"(
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
rate_limit_headers: {standard: draft-7, legacy: false}
admin_rate_limit_headers: {standard: draft-6}
cors:
  allow_origins: [https://app.example.com]
policies:
  - name: per-minute
    match: {path_prefix: /api/}
    limit: 100
    period: 60s
  - name: per-second
    match: {path_prefix: /api/fast/}
    limit: 10
    period: 1s
    rate_limit_headers: {standard: none, legacy: true}
)";

class HeaderFormsTest : public HandlerTest {
 protected:
  HeaderFormsTest() { rt = make_runtime(load(kFormsConfig)); }
};

TEST_F(HeaderFormsTest, TheListenersFormThenTheHeadlinePolicys) {
  // Only per-minute matches: the listener's draft-7 without X-RateLimit-*.
  Response res = respond(get("/api/items"));
  EXPECT_EQ(header(res, "RateLimit"), "limit=100, remaining=99, reset=1");
  EXPECT_EQ(header(res, "RateLimit-Policy"), "100;w=60");
  EXPECT_EQ(header(res, "X-RateLimit-Limit"), "<absent>");
  // per-second is the headline (least remaining): its own form, the X fields only.
  res = respond(get("/api/fast/x"));
  EXPECT_EQ(header(res, "X-RateLimit-Limit"), "10");
  EXPECT_EQ(header(res, "X-RateLimit-Remaining"), "9");
  EXPECT_EQ(header(res, "RateLimit"), "<absent>");
  EXPECT_EQ(header(res, "RateLimit-Policy"), "<absent>");
  // Its 429 still carries Retry-After.
  for (int i = 0; i < 9; ++i) ASSERT_EQ(respond(get("/api/fast/x")).result_int(), 200u);
  res = respond(get("/api/fast/x"));
  ASSERT_EQ(res.result_int(), 429u);
  EXPECT_EQ(header(res, "Retry-After"), "1");
  EXPECT_EQ(header(res, "X-RateLimit-Remaining"), "0");
  EXPECT_EQ(header(res, "RateLimit"), "<absent>");
}

TEST_F(HeaderFormsTest, CheckOnAdminListenDegradedAndCors) {
  Request post = get("/v1/check", {{"Content-Type", "application/json"}}, beast_http::verb::post);
  post.body() = R"({"policy":"per-minute","key":"k","cost":4})";
  ctx.admin = true;  // served on admin_listen only
  auto [a, r] = decide(post);
  ctx.admin = false;
  ASSERT_EQ(r.kind, Route::Kind::kCheck);
  EXPECT_EQ(a.response.body(), R"({"allowed":true,"policy":"per-minute","limit":100,)"
                               R"("remaining":96,"reset_after_ms":2400,"retry_after_ms":0})");
  // admin_listen's draft-6 over the listener's legacy: false; the figures are the body's.
  EXPECT_EQ(header(a.response, "RateLimit-Limit"), "100");
  EXPECT_EQ(header(a.response, "RateLimit-Remaining"), "96");
  EXPECT_EQ(header(a.response, "RateLimit-Reset"), "3");
  EXPECT_EQ(header(a.response, "RateLimit-Policy"), "100;w=60");
  EXPECT_EQ(header(a.response, "X-RateLimit-Limit"), "<absent>");

  // Store down, fail open: the policy in the form's syntax, and the marker.
  Route dr = route(get("/api/items"), *rt, ctx);
  Answer open = answer_decision(get("/api/items"), dr, *rt,
                                {fail(ErrorCode::kUnavailable, "x"), {}, decide::Degraded::kAllow});
  const HeaderFields expected = {{"RateLimit-Policy", "100;w=60"},
                                 {"X-RateLimit-Degraded", "store-unavailable"}};
  EXPECT_EQ(open.fields, expected);

  // A configuration that sends draft-6 fields exposes them to scripts too.
  Response res = respond(get("/api/items", {{"Origin", "https://app.example.com"}}));
  EXPECT_EQ(header(res, "Access-Control-Expose-Headers"), std::string(kExposeHeadersDraft6));
}

TEST_F(HandlerTest, DemoResourceHeadAndKeepAlive) {
  EXPECT_EQ(demo_resource(get("/nothing"), "/nothing").result_int(), 404u);
  Request head = get("/api/x", {}, beast_http::verb::head);
  Response res = respond(head);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_TRUE(res.body().empty());
  // HEAD: no body, and the Content-Length of the body it would have had.
  Request get_like = get("/api/x");
  get_like.method(beast_http::verb::head);
  EXPECT_EQ(header(res, "Content-Length"),
            std::to_string(demo_resource(get_like, get_like.target()).body().size()));
  RequestContext draining = ctx;
  draining.draining = true;
  Response r2 = demo_resource(get("/api/x"), "/api/x");
  finish(r2, get("/api/x"), *rt, {}, draining);
  EXPECT_FALSE(r2.keep_alive());
  Request close = get("/api/x", {{"Connection", "close"}});
  Response r3 = demo_resource(close, close.target());
  finish(r3, close, *rt, {}, ctx);
  EXPECT_FALSE(r3.keep_alive());
}

TEST(Runtime, LocalPoliciesDivideTheLimitAtLeastOne) {
  auto rt = make_runtime(load(kConfig));
  ASSERT_EQ(rt->local_policies.size(), 4u);
  EXPECT_EQ(rt->local_policies[0].limit, 25);
  EXPECT_EQ(rt->local_policies[0].burst, 25);
  EXPECT_EQ(rt->local_policies[1].limit, 2);
  EXPECT_EQ(rt->local_policies[2].limit, 1);  // 5 / 4
  EXPECT_EQ(rt->local_policies[3].limit, 1);  // 2 / 4, at least 1
  EXPECT_EQ(rt->local_policies[0].name, "per-minute");
}

TEST(ReadErrors, StatusesAndConnectionClose) {
  for (int s : {400, 408, 413, 431}) {
    const Response r = read_error_response(s);
    EXPECT_EQ(r.result_int(), static_cast<unsigned>(s));
    EXPECT_FALSE(r.keep_alive());
    EXPECT_EQ(nlohmann::json::parse(r.body())["status"], s);
  }
}

TEST(Serialize, StatusLineFieldsInOrderAndBody) {
  Response r{beast_http::status::too_many_requests, 11};
  r.set("Content-Type", "application/problem+json");
  r.insert("RateLimit", R"("p";r=0;t=1)");
  r.body() = "{}";
  r.prepare_payload();
  EXPECT_EQ(serialize_response(r),
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\n"
            "RateLimit: \"p\";r=0;t=1\r\nContent-Length: 2\r\n\r\n{}");
  Response old{beast_http::status::ok, 10};
  old.keep_alive(true);
  old.prepare_payload();
  EXPECT_EQ(serialize_response(old),
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
}

// The plain answers (write_plain_answer) are the bytes the session writes for the same answer
// built as a Response: answer_decision(), demo_resource(), prepare(), serialize_response(). Every
// form of the rate-limit fields, allowed and denied, several policies (one in shadow mode), no
// policy at all (kServe), HTTP/1.0 and 1.1, keep-alive asked or refused, draining or not.
TEST(PlainAnswer, SameBytesAsTheBuiltResponse) {
  const std::vector<std::string> standards = {"draft-8", "draft-7", "draft-6", "none"};
  int compared = 0;
  int denied = 0;
  for (const std::string& standard : standards) {
    for (const bool legacy : {true, false}) {
      const std::string yaml =
          "identity:\n  - header: X-API-Key\n"
          "rate_limit_headers: {standard: " +
          standard + ", legacy: " + (legacy ? "true" : "false") + "}\n" + R"(policies:
  - name: per-minute
    match: {path_prefix: /api/v1/}
    limit: 2
    period: 60s
  - name: per-second
    match: {path_prefix: /api/v1/}
    algorithm: sliding_window
    limit: 3
    period: 1500ms
  - name: trial
    match: {path_prefix: /api/v1/}
    limit: 1
    period: 10m
    shadow: true
)";
      auto rt = make_runtime(load(yaml));
      ManualClock clock;
      std::unique_ptr<Store> store = make_memory_store({}, clock);
      int key = 0;
      for (const std::string target : {"/api/v1/x", "/api/v1/./a%22b%C3%A9?q=1", "/api/free"}) {
        for (const unsigned version : {10u, 11u}) {
          for (const std::string connection : {"", "close", "keep-alive"}) {
            for (const bool draining : {false, true}) {
              const std::string api_key = "k" + std::to_string(key++);
              for (int n = 0; n < 3; ++n) {  // allowed, allowed, denied (per-minute)
                Request req{n == 1 ? beast_http::verb::post : beast_http::verb::get, target,
                            version};
                req.set("X-API-Key", api_key);
                if (!connection.empty()) req.set(beast_http::field::connection, connection);
                req.set(beast_http::field::host, "api.example.com");
                const auto refused = canonicalize(req, rt->single_fields);
                ASSERT_FALSE(refused) << *refused << " " << target;
                const RequestContext ctx{ip("192.0.2.1"), true, draining};
                const Route r = route(req, *rt, ctx);
                ASSERT_TRUE(r.kind == Route::Kind::kDecide || r.kind == Route::Kind::kServe);
                ASSERT_TRUE(plain_answer_applies(req, r, *rt));
                Response res;
                HeaderFields fields;
                RateLimitHeaders headers;
                if (r.kind == Route::Kind::kDecide) {
                  const StoreOutcome out{
                      decide_and_wait(*store, DecideRequest{r.identities.at(0), r.charges}),
                      std::nullopt};
                  ASSERT_TRUE(out.verdict);
                  headers = verdict_headers(r, *rt, *out.verdict);
                  Answer a = answer_decision(req, r, *rt, out);
                  ASSERT_EQ(a.serve, !headers.denied);
                  if (a.serve) fields = std::move(a.fields);
                  res = a.serve ? demo_resource(req, r.path) : std::move(a.response);
                } else {
                  res = demo_resource(req, r.path);
                }
                prepare(res, req, *rt, fields, ctx);
                const std::string built = serialize_response(res, fields);
                std::string out = "left over from the previous answer";
                const PlainAnswer plain = write_plain_answer(out, req, r, headers, draining);
                EXPECT_EQ(out, built) << standard << " legacy " << legacy << " " << target
                                      << " HTTP " << version << " " << connection;
                EXPECT_EQ(plain.status, static_cast<int>(res.result_int()));
                EXPECT_EQ(plain.keep_alive, res.keep_alive());
                EXPECT_EQ(plain.body_bytes, res.body().size());
                ++compared;
                denied += headers.denied ? 1 : 0;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(compared, 8 * 3 * 2 * 3 * 2 * 3);
  EXPECT_EQ(denied, 8 * 2 * 2 * 3 * 2);  // the third request to each decided path
}

TEST(PlainAnswer, NotForHeadNorCorsOriginsNorOtherPaths) {
  auto rt = make_runtime(load(kConfig));
  const RequestContext ctx{ip("192.0.2.1"), true, false};
  const auto applies = [&](Request req) {
    req.set(beast_http::field::host, "t");  // an HTTP/1.1 request has one (canonicalize)
    EXPECT_FALSE(canonicalize(req, rt->single_fields));
    return plain_answer_applies(req, route(req, *rt, ctx), *rt);
  };
  EXPECT_TRUE(applies(get("/api/x", {{"X-API-Key", "a"}})));
  EXPECT_FALSE(applies(get("/api/x", {{"X-API-Key", "a"}}, beast_http::verb::head)));
  EXPECT_FALSE(applies(get("/api/x", {{"X-API-Key", "a"}, {"Origin", "https://app.example.com"}})));
  EXPECT_FALSE(applies(get("/other", {{"X-API-Key", "a"}})));
  auto no_cors = make_runtime(load("policies:\n  - {name: p, limit: 1, period: 1s}\n"));
  Request req = get("/api/x", {{"Origin", "https://app.example.com"}});
  req.set(beast_http::field::host, "t");
  EXPECT_FALSE(canonicalize(req, no_cors->single_fields));
  EXPECT_TRUE(plain_answer_applies(req, route(req, *no_cors, ctx), *no_cors));
}

// The session's parser takes its fields from the connection's arena (request_arena.h): the
// request reads as it was sent, canonicalize() rewrites it there, fields past the arena's room
// come from the heap, and a copy is a value of its own, untouched when the arena serves the next
// request.
TEST(RequestArena, HoldsTheParsedRequestAndNotItsCopies) {
  RequestArena arena;
  const auto parse = [&](std::string_view text) {
    arena.reset();
    auto parser = std::make_unique<RequestParser>(std::piecewise_construct, std::make_tuple(),
                                                  std::make_tuple(ArenaAllocator<char>(&arena)));
    boost::beast::error_code ec;
    parser->put(boost::asio::buffer(text.data(), text.size()), ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_TRUE(parser->is_header_done());
    return parser;
  };
  auto first =
      parse("get /a/../api/x HTTP/1.1\r\nHost: EXAMPLE.com\r\nX-API-Key: first-key\r\n\r\n");
  EXPECT_GT(arena.used(), 0u);
  Request& req = first->get();
  ASSERT_FALSE(canonicalize(req, {"X-API-Key"}));
  EXPECT_EQ(req.method_string(), "GET");
  EXPECT_EQ(req.target(), "/api/x");
  EXPECT_EQ(req[beast_http::field::host], "example.com");
  const Request copy = req;
  EXPECT_EQ(copy.get_allocator().arena(), nullptr);
  first.reset();

  const std::string big(2000, 'v');
  auto second = parse("POST /zzzzzzzzzzzz HTTP/1.1\r\nHost: other.example\r\nX-API-Key: " + big +
                      "\r\nX-B: " + big + "\r\nX-C: " + big + "\r\n\r\n");
  EXPECT_LE(arena.used(), RequestArena::kInlineBytes);
  EXPECT_EQ(second->get()["X-API-Key"], big);
  EXPECT_EQ(second->get()["X-B"], big);
  EXPECT_EQ(second->get()["X-C"], big);
  EXPECT_EQ(copy.method_string(), "GET");
  EXPECT_EQ(copy.target(), "/api/x");
  EXPECT_EQ(copy[beast_http::field::host], "example.com");
  EXPECT_EQ(copy["X-API-Key"], "first-key");
}

TEST(Finish, HeadKeepsAnUpstreamContentLength) {
  auto rt = make_runtime(load("policies:\n  - {name: p, limit: 1, period: 1s}\n"));
  Request head = get("/x", {}, beast_http::verb::head);
  Response up{beast_http::status::ok, 11};
  up.content_length(1234);
  finish(up, head, *rt, {}, RequestContext{});
  EXPECT_EQ(header(up, "Content-Length"), "1234");
  EXPECT_TRUE(up.body().empty());
}

TEST(TransferEncoding, OnlyOneFieldEndingInTheOnlyChunked) {
  const auto te = [](std::initializer_list<std::string_view> values) {
    Request r{beast_http::verb::post, "/api/x", 11};
    for (std::string_view v : values) {
      r.insert(beast_http::field::transfer_encoding, boost::beast::string_view(v.data(), v.size()));
    }
    return transfer_encoding_acceptable(r.base());
  };
  EXPECT_TRUE(te({}));
  EXPECT_TRUE(te({"chunked"}));
  EXPECT_TRUE(te({"Chunked"}));
  EXPECT_TRUE(te({"gzip, chunked"}));
  EXPECT_TRUE(te({" gzip ,, chunked "}));
  EXPECT_FALSE(te({""}));
  EXPECT_FALSE(te({"gzip"}));
  EXPECT_FALSE(te({"chunked, gzip"}));
  EXPECT_FALSE(te({"chunked, chunked"}));
  EXPECT_FALSE(te({"chunked;q=1"}));
  // Not a list: Beast's own reading stops at the bad byte and sees "chunked" last.
  EXPECT_FALSE(te({"chunked\xf3 gzip"}));
  EXPECT_FALSE(te({"chunked gzip"}));
  // Several fields: the parser reads the last, the message's chunked() the first.
  EXPECT_FALSE(te({"gzip", "chunked"}));
  EXPECT_FALSE(te({"chunkest: x", "chunked"}));
}

}  // namespace
}  // namespace fg::http
