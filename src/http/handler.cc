#include "http/handler.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>
#include <nlohmann/json.hpp>

#include "decide/identity.h"
#include "decide/plan.h"
#include "http/canonical.h"
#include "http/dashboard_page.h"
#include "util/text.h"

namespace fg::http {
namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kServerName = "floodgate";
// Longest /v1/check key: a key is a client name, not a payload. Longer keys are refused (400)
// rather than hashed, so a caller always knows which key it decided on.
constexpr std::size_t kMaxCheckKeyBytes = 1024;

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

// The first field of that name in the order sent (Beast's find() gives the same). A request's
// first kWalkedFields fields are walked (iequals compares the lengths first): cheaper than Beast's
// ordered index for the few fields most requests have. Past them the index is asked, so that a
// request of thousands of fields costs each lookup a search, not a walk: a configuration with
// many header-matching policies looks up one field per policy.
constexpr int kWalkedFields = 16;
std::optional<std::string_view> find_header(const Request& r, std::string_view name) {
  int walked = 0;
  for (const auto& f : r) {
    if (util::iequals(sv(f.name_string()), name)) return sv(f.value());
    if (++walked == kWalkedFields) {
      const auto it = r.find(boost::beast::string_view(name.data(), name.size()));
      if (it == r.end()) return std::nullopt;
      return sv(it->value());
    }
  }
  return std::nullopt;
}

Response text_response(unsigned version, beast_http::status status, std::string_view type,
                       std::string body) {
  Response r{status, version};
  r.set(beast_http::field::content_type, boost::beast::string_view(type.data(), type.size()));
  r.body() = std::move(body);
  return r;
}

std::string reason_of(int status) {
  return std::string(
      sv(beast_http::obsolete_reason(beast_http::int_to_status(static_cast<unsigned>(status)))));
}

Response method_not_allowed(const Request& req, std::string_view allow) {
  Response r = problem_response(
      req.version(), 405, "use " + std::string(allow) + " on " + std::string(sv(req.target())));
  r.set(beast_http::field::allow, boost::beast::string_view(allow.data(), allow.size()));
  return r;
}

bool is_get_or_head(const Request& req) {
  return req.method() == beast_http::verb::get || req.method() == beast_http::verb::head;
}

// The value of every X-Forwarded-For field, joined with ',' (a list split over several fields is
// one list, RFC 9110 §5.3).
std::string forwarded_for(const Request& req) {
  std::string out;
  for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) {
    if (!out.empty()) out += ',';
    out += sv(it->value());
  }
  return out;
}

// The origin is allowed by `cors` ("*" allows every origin).
bool origin_allowed(const config::Config& c, std::string_view origin) {
  if (!c.cors || origin.empty()) return false;
  for (const std::string& o : c.cors->allow_origins) {
    if (o == "*" || util::iequals(o, origin)) return true;
  }
  return false;
}

Response preflight(const Request& req, const config::Config& c, std::string_view origin) {
  Response r{beast_http::status::no_content, req.version()};
  if (origin_allowed(c, origin)) {
    r.set(beast_http::field::access_control_allow_origin,
          boost::beast::string_view(origin.data(), origin.size()));
    if (auto m = find_header(req, "Access-Control-Request-Method")) {
      r.set(beast_http::field::access_control_allow_methods,
            boost::beast::string_view(m->data(), m->size()));
    }
    if (auto h = find_header(req, "Access-Control-Request-Headers")) {
      r.set(beast_http::field::access_control_allow_headers,
            boost::beast::string_view(h->data(), h->size()));
    }
    r.set(beast_http::field::access_control_max_age, "600");
  }
  r.set(beast_http::field::vary, "Origin");
  return r;
}

}  // namespace

Route check_route(const Request& req, const Runtime& rt) {
  Route out;
  const auto bad = [&](std::string detail) {
    out.kind = Route::Kind::kReply;
    out.reply = problem_response(req.version(), 400, detail);
    return out;
  };
  const nlohmann::json body = nlohmann::json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return bad(
        R"(the body must be a JSON object: {"policy":"per-minute","key":"user-42","cost":1})");
  }
  for (const auto& [k, v] : body.items()) {
    if (k != "policy" && k != "key" && k != "cost") {
      return bad("unknown field " + util::json_string(k) + " (policy, key, cost)");
    }
  }
  const auto policy = body.find("policy");
  if (policy == body.end() || !policy->is_string()) return bad("policy: a string is required");
  const auto key = body.find("key");
  if (key == body.end() || !key->is_string() || key->get_ref<const std::string&>().empty()) {
    return bad("key: a non-empty string is required");
  }
  if (key->get_ref<const std::string&>().size() > kMaxCheckKeyBytes) {
    return bad("key: at most " + std::to_string(kMaxCheckKeyBytes) + " bytes");
  }
  const std::string& name = policy->get_ref<const std::string&>();
  const config::PolicyConfig* pc = rt.config->find_policy(name);
  if (pc == nullptr) {
    out.kind = Route::Kind::kReply;
    out.reply = problem_response(req.version(), 404, "no policy named " + util::json_string(name));
    return out;
  }
  std::int64_t cost = pc->policy.cost;
  if (const auto c = body.find("cost"); c != body.end()) {
    if (!c->is_number_integer() || !valid_cost(c->get<std::int64_t>())) {
      return bad("cost: an integer from 0 to " + std::to_string(kMaxCount));
    }
    cost = c->get<std::int64_t>();
  }
  static_cast<decide::Plan&>(out) =
      *decide::check_plan(rt, name, key->get_ref<const std::string&>(), cost);
  out.kind = Route::Kind::kCheck;
  return out;
}

namespace {

void add_fields(Response& r, const HeaderFields& fields) {
  for (const auto& [name, value] : fields) {
    r.insert(boost::beast::string_view(name.data(), name.size()),
             boost::beast::string_view(value.data(), value.size()));
  }
}

Response store_unavailable(const Request& req) {
  Response r =
      problem_response(req.version(), 503, "the rate-limit store is unavailable; retry shortly");
  r.set(beast_http::field::retry_after, "1");
  r.insert(boost::beast::string_view(kXRateLimitDegraded.data(), kXRateLimitDegraded.size()),
           boost::beast::string_view(kDegradedStoreUnavailable.data(),
                                     kDegradedStoreUnavailable.size()));
  return r;
}

// A new client refused by a full memory store.
Response at_capacity(const Request& req) {
  Response r = problem_response(req.version(), 503,
                                "the rate limiter holds as many clients as it may; retry shortly");
  r.set(beast_http::field::retry_after, "1");
  return r;
}

// The value of X-RateLimit-Degraded when the per-instance limiter decided instead of the store.
constexpr std::string_view kDegradedLocal = "local-fallback";

std::int64_t ceil_ms(Duration d) {
  const std::int64_t us = d.count();
  return us <= 0 ? 0 : (us + 999) / 1000;
}

}  // namespace

// A Query over `req`'s fields (method and path as given).
decide::Query query_of(const Request& req, std::string_view method, std::string_view path,
                       const RequestContext* ctx, const std::string* forwarded,
                       const std::string* hosts) {
  decide::Query q;
  q.method = method;
  q.path = path;
  q.header = [&req](std::string_view name) { return find_header(req, name); };
  if (ctx != nullptr) q.peer = ctx->peer;
  if (forwarded != nullptr) q.forwarded_for = *forwarded;
  if (hosts != nullptr) q.forwarded_hosts = *hosts;
  return q;
}

bool policy_matches(const config::Match& match, std::string_view method, std::string_view path,
                    const Request& request) {
  const std::string hosts = forwarded_hosts(request);
  return decide::policy_matches(match, query_of(request, method, path, nullptr, nullptr, &hosts));
}

Route route(const Request& req, const Runtime& rt, const RequestContext& ctx) {
  Route out;
  route_into(req, rt, ctx, out);
  return out;
}

void route_into(const Request& req, const Runtime& rt, const RequestContext& ctx, Route& out) {
  const config::Config& c = *rt.config;
  if (sv(req.target()) == "*") {
    out.path = "/*";
  } else if (ctx.canonical) {
    out.path = target_path(req);
  } else {
    // A request that did not pass through canonicalize() is checked here all the same, so that
    // no caller can match on another form.
    CanonicalPath cp = canonical_path(target_path(req));
    if (!cp.error.empty()) {
      out.reply = problem_response(req.version(), 400, cp.error);
      return;
    }
    out.path = std::move(cp.path);
  }
  // Compared as a view: the length first, where std::string == "..." measures the literal.
  const std::string_view path = out.path;

  // Operations endpoints: never rate limited.
  if (path == "/healthz" || path == "/readyz") {
    if (!is_get_or_head(req)) {
      out.reply = method_not_allowed(req, "GET, HEAD");
      return;
    }
    const bool ok = path == "/healthz" || ctx.ready;
    out.reply = text_response(req.version(),
                              ok ? beast_http::status::ok : beast_http::status::service_unavailable,
                              "text/plain; charset=utf-8",
                              ok ? "ok\n" : (ctx.draining ? "draining\n" : "store unavailable\n"));
    out.reply.set(beast_http::field::cache_control, "no-store");
    return;
  }
  if (path == "/metrics") {
    if (!is_get_or_head(req)) {
      out.reply = method_not_allowed(req, "GET, HEAD");
      return;
    }
    out.kind = Route::Kind::kMetrics;
    return;
  }
  // The dashboard and its data show client identities: see dashboard_served().
  if ((path == "/dashboard" || path == "/v1/status") && dashboard_served(c, ctx)) {
    if (!is_get_or_head(req)) {
      out.reply = method_not_allowed(req, "GET, HEAD");
      return;
    }
    if (path == "/v1/status") {
      out.kind = Route::Kind::kStatus;
      return;
    }
    out.reply = text_response(req.version(), beast_http::status::ok, "text/html; charset=utf-8",
                              std::string(dashboard_page()));
    out.reply.set(beast_http::field::cache_control, "no-store");
    // The page fetches only /v1/status from its own origin, and runs only its own inline script.
    out.reply.set("Content-Security-Policy",
                  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                  "connect-src 'self'; img-src data:");
    return;
  }
  // POST /v1/check: on admin_listen when that is set, else on the public listener, where the
  // caller is limited like any client; nowhere with check_api: false.
  const bool check_here = c.check_api && (c.admin_listen ? ctx.admin : !ctx.admin);
  if (path == "/v1/check" && check_here) {
    if (req.method() != beast_http::verb::post) {
      out.reply = method_not_allowed(req, "POST");
      return;
    }
    out.kind = Route::Kind::kCheckCaller;
    if (ctx.admin) return;  // the admin listener's callers are trusted
  }

  // A CORS preflight: answered here, consuming nothing (it is the browser asking, not the app).
  if (out.kind != Route::Kind::kCheckCaller && c.cors &&
      req.method() == beast_http::verb::options) {
    const auto origin = find_header(req, "Origin");
    if (origin && find_header(req, "Access-Control-Request-Method")) {
      out.reply = preflight(req, c, *origin);
      return;
    }
  }

  // The policies that match, each counted per its identity (the deciding layer's plan).
  std::string method(sv(req.method_string()));
  for (char& ch : method) {
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  }
  const bool caller = out.kind == Route::Kind::kCheckCaller;
  const std::string xff = c.trusted_proxies.empty() ? std::string() : forwarded_for(req);
  const std::string hosts = rt.matches_host ? forwarded_hosts(req) : std::string();
  std::string missing;
  if (!decide::plan(rt, query_of(req, method, path, &ctx, &xff, &hosts), caller, out, &missing)) {
    out = Route{};
    out.reply = problem_response(req.version(), 400,
                                 "this API needs to know who is calling: send " + missing);
    return;
  }
  if (!caller) out.kind = out.empty() ? Route::Kind::kServe : Route::Kind::kDecide;
}

namespace {

// The form of this answer's rate-limit fields (config::header_style): the listener's, then the
// headline charge's policy's. A check call (kCheck) is answered on admin_listen when that is set
// (route() serves it nowhere else then), and every other decided route on `listen`.
config::HeaderStyle style_of(const Runtime& rt, const Route& route, std::size_t headline) {
  const bool admin = route.kind == Route::Kind::kCheck && rt.config->admin_listen.has_value();
  const std::size_t policy = headline < route.policy_indices.size() ? route.policy_indices[headline]
                                                                    : decide::kCheckApiPolicy;
  return config::header_style(*rt.config, admin, policy);
}

}  // namespace

Answer answer_decision(const Request& req, const Route& route, const Runtime& rt,
                       const StoreOutcome& outcome) {
  Answer a;
  const auto from_verdict = [&](std::span<const Charge> charges, const Verdict& v) {
    RateLimitHeaders h = rate_limit_headers(charges, v, style_of(rt, route, v.most_restrictive));
    if (h.denied) {
      a.response = text_response(req.version(), beast_http::status::too_many_requests,
                                 kProblemContentType, std::move(h.problem_body));
      add_fields(a.response, h.fields);
    } else {
      a.serve = true;
    }
    a.fields = std::move(h.fields);
  };
  if (outcome.verdict) {
    from_verdict(route.charges, *outcome.verdict);
    return a;
  }
  if (outcome.verdict.error().code == ErrorCode::kInvalidArgument) {
    // No store could decide this request: a bug between the config and the store, not an outage.
    a.response = problem_response(req.version(), 500, "the rate limiter could not decide");
    return a;
  }
  if (outcome.verdict.error().code == ErrorCode::kResourceExhausted) {
    // The memory store is full of clients that still count: a new one is refused, whatever
    // on_store_error says (allowing it would let a flood of fresh identities go unlimited).
    a.response = at_capacity(req);
    return a;
  }
  a.degraded = outcome.degraded;
  switch (outcome.degraded) {
    case Answer::Degraded::kNo:  // an error that is neither an outage nor a full store: a bug
      a.response = problem_response(req.version(), 500, "the rate limiter could not decide");
      return a;
    case Answer::Degraded::kAllow:
      a.serve = true;
      // No verdict, no headline: the first charge's policy stands for the request.
      a.fields = degraded_rate_limit_headers(route.charges, style_of(rt, route, 0)).fields;
      return a;
    case Answer::Degraded::kDeny:
      a.response = store_unavailable(req);
      return a;
    case Answer::Degraded::kLocal:
      if (!outcome.local_verdict) {  // the local limiter refused it too (it is full): closed
        a.response = at_capacity(req);
        return a;
      }
      from_verdict(route.local_charges, *outcome.local_verdict);
      a.fields.emplace_back(kXRateLimitDegraded, kDegradedLocal);
      if (!a.serve) add_fields(a.response, {{kXRateLimitDegraded, kDegradedLocal}});
      return a;
  }
  return a;
}

std::string check_result_json(std::string_view policy, const Verdict& verdict) {
  const Decision& d = verdict.headline();
  nlohmann::ordered_json j;
  j["allowed"] = verdict.allowed;
  j["policy"] = policy;
  j["limit"] = d.limit;
  j["remaining"] = d.remaining;
  j["reset_after_ms"] = ceil_ms(d.reset_after);
  j["retry_after_ms"] = ceil_ms(d.retry_after);
  return j.dump();
}

std::optional<std::string> check_outcome_json(std::string_view policy,
                                              const decide::Outcome& outcome) {
  if (const Verdict* v = outcome.counting()) {
    std::string body = check_result_json(policy, *v);
    if (outcome.degraded == decide::Degraded::kLocal) {
      body.pop_back();
      body += R"(,"degraded":"local-fallback"})";
    }
    return body;
  }
  if (outcome.degraded == decide::Degraded::kAllow) {
    nlohmann::ordered_json j;
    j["allowed"] = true;
    j["policy"] = policy;
    j["degraded"] = kDegradedStoreUnavailable;
    return j.dump();
  }
  return std::nullopt;  // on_store_error: deny, a full store, a bug: no decision
}

Answer answer_check(const Request& req, const Route& route, const Runtime& rt,
                    const StoreOutcome& outcome) {
  Answer a = answer_decision(req, route, rt, outcome);
  if (auto body = check_outcome_json(route.charges.front().policy->name, outcome)) {
    a.response = text_response(
        req.version(),
        outcome.served() ? beast_http::status::ok : beast_http::status::too_many_requests, kJson,
        std::move(*body));
    add_fields(a.response, a.fields);
  }
  // No decision: a.response is already the problem answer (503, 500).
  a.serve = false;
  return a;
}

namespace {

// The demo resource's 200 body for `path` (under /api/).
void append_demo_body(std::string& body, std::string_view method, std::string_view path) {
  constexpr std::string_view kStart = R"({"message":"hello from floodgate","method":)";
  constexpr std::string_view kPath = R"(,"path":)";
  body.reserve(body.size() + kStart.size() + method.size() + kPath.size() + path.size() + 8);
  body += kStart;
  util::append_json_string(body, method);
  body += kPath;
  util::append_json_string(body, path);
  body += "}\n";
}

}  // namespace

Response demo_resource(const Request& req, std::string_view path) {
  if (!path.starts_with("/api/")) {
    return problem_response(
        req.version(), 404,
        "nothing at " + std::string(sv(req.target())) + " (the demo resource answers /api/...)");
  }
  std::string body;  // one allocation: sized for the text and the two strings unescaped
  append_demo_body(body, sv(req.method_string()), path);
  return text_response(req.version(), beast_http::status::ok, kJson, std::move(body));
}

RateLimitHeaders verdict_headers(const Route& route, const Runtime& rt, const Verdict& verdict) {
  return rate_limit_headers(route.charges, verdict, style_of(rt, route, verdict.most_restrictive));
}

bool plain_answer_applies(const Request& req, const Route& route, const Runtime& rt) {
  if (req.method() == beast_http::verb::head) return false;
  // prepare() adds the CORS fields only for a request with an Origin, and only under `cors`.
  if (rt.config->cors && req.find(beast_http::field::origin) != req.end()) return false;
  return route.path.starts_with("/api/");  // else demo_resource()'s 404
}

PlainAnswer write_plain_answer(std::string& out, const Request& req, const Route& route,
                               const RateLimitHeaders& headers, bool draining) {
  PlainAnswer a;
  a.status = headers.denied ? kTooManyRequests : 200;
  a.keep_alive = req.keep_alive() && !draining;
  // The demo body is composed in a per-thread string, so that after a thread's first answers it
  // allocates nothing; its size is Content-Length, written before it.
  thread_local std::string demo;
  std::string_view body = headers.problem_body;
  if (!headers.denied) {
    demo.clear();
    append_demo_body(demo, sv(req.method_string()), route.path);
    body = demo;
  }
  // What Response::keep_alive() leaves in a response without a Connection field: "close" when an
  // HTTP/1.1 connection ends, "keep-alive" when an HTTP/1.0 one stays open, else nothing.
  const unsigned version = req.version();
  const std::string_view connection =
      version < 11 ? (a.keep_alive ? "keep-alive" : "") : (a.keep_alive ? "" : "close");
  const std::string_view wire = headers.fields.wire();
  const std::string_view status_line =
      headers.denied ? "429 Too Many Requests\r\nContent-Type: " : "200 OK\r\nContent-Type: ";
  const std::string_view type = headers.denied ? kProblemContentType : kJson;
  char length[20];
  const std::string_view content_length(
      length, static_cast<std::size_t>(
                  std::to_chars(length, length + sizeof length, body.size()).ptr - length));
  constexpr std::string_view kConnection = "Connection: ";
  constexpr std::string_view kServerAndLength = "Server: floodgate\r\nContent-Length: ";
  static_assert(kServerName == "floodgate");
  // Written through a pointer into room sized up front (a connection's buffer keeps it): one
  // copy per piece, no capacity check per append.
  out.resize(9 + status_line.size() + type.size() + 2 + kConnection.size() + connection.size() + 2 +
             wire.size() + kServerAndLength.size() + content_length.size() + 4 + body.size());
  char* p = out.data();
  const auto put = [&p](std::string_view s) { p = std::copy(s.begin(), s.end(), p); };
  put(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  put(status_line);
  put(type);
  put("\r\n");
  // The built Response's order: a 429's rate-limit fields are in its container before prepare()
  // sets Connection there; a 200's fields are added after the container's (Connection) instead.
  if (headers.denied) put(wire);
  if (!connection.empty()) {
    put(kConnection);
    put(connection);
    put("\r\n");
  }
  if (!headers.denied) put(wire);
  put(kServerAndLength);
  put(content_length);
  put("\r\n\r\n");
  put(body);
  out.resize(static_cast<std::size_t>(p - out.data()));
  a.body_bytes = body.size();
  return a;
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  // 127.0.0.0/8 as a dotted quad (a host name that merely starts with "127." is not one).
  return host.starts_with("127.") &&
         host.find_first_not_of("0123456789.") == std::string_view::npos &&
         std::count(host.begin(), host.end(), '.') == 3;
}

bool dashboard_served(const config::Config& c, const RequestContext& ctx) {
  if (c.admin_listen) return ctx.admin;
  return c.dashboard_public || is_loopback_host(c.listen.host);
}

Response status_response(const Request& req, std::string json) {
  Response r =
      text_response(req.version(), beast_http::status::ok, "application/json", std::move(json));
  r.set(beast_http::field::cache_control, "no-store");
  return r;
}

std::string status_policy_param(const Request& req) {
  const std::string_view target = sv(req.target());
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (pair.starts_with("policy=")) {
      const std::string_view raw = pair.substr(7);
      std::string out;
      for (std::size_t i = 0; i < raw.size(); ++i) {
        auto hex = [](char ch) {
          return ch >= '0' && ch <= '9'   ? ch - '0'
                 : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                          : -1;
        };
        if (raw[i] == '%' && i + 2 < raw.size() && hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
          out.push_back(static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2])));
          i += 2;
        } else {
          out.push_back(raw[i] == '+' ? ' ' : raw[i]);
        }
      }
      return out;
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return {};
}

Response metrics_response(const Request& req, std::string text) {
  Response r = text_response(req.version(), beast_http::status::ok,
                             "text/plain; version=0.0.4; charset=utf-8", std::move(text));
  r.set(beast_http::field::cache_control, "no-store");
  return r;
}

Response problem_response(unsigned version, int status, std::string_view detail) {
  std::string body = R"({"type":"about:blank","title":)";
  body += util::json_string(reason_of(status));
  body += R"(,"status":)" + std::to_string(status) + R"(,"detail":)";
  body += util::json_string(detail);
  body += "}\n";
  return text_response(version, beast_http::int_to_status(static_cast<unsigned>(status)),
                       kProblemContentType, std::move(body));
}

namespace {

// Whether any response of `c` can carry draft-6's RateLimit-Limit/-Remaining/-Reset, which CORS
// must then expose too. Read only for a request from an allowed origin.
bool sends_draft6(const config::Config& c) {
  constexpr auto kDraft6 = config::RateLimitStandard::kDraft6;
  if (c.rate_limit_headers.standard == kDraft6 || c.admin_rate_limit_headers.standard == kDraft6) {
    return true;
  }
  return std::any_of(c.policies.begin(), c.policies.end(), [&](const config::PolicyConfig& p) {
    return p.rate_limit_headers.standard == kDraft6;
  });
}

// prepare() and finish(): with `wire`, a response whose framing is ours to write (below) gets
// Server and Content-Length there instead of in its field container.
void prepare_fields(Response& r, const Request& req, const Runtime& rt, const HeaderFields& fields,
                    const RequestContext& ctx, HeaderFields* wire) {
  // An upstream's own rate-limit fields would contradict ours: ours win.
  for (const auto& [name, value] : fields) {
    r.erase(boost::beast::string_view(name.data(), name.size()));
  }
  if (const auto origin = find_header(req, "Origin");
      origin && origin_allowed(*rt.config, *origin)) {
    r.set(beast_http::field::access_control_allow_origin,
          boost::beast::string_view(origin->data(), origin->size()));
    const std::string_view expose =
        sends_draft6(*rt.config) ? kExposeHeadersDraft6 : kExposeHeaders;
    r.set(beast_http::field::access_control_expose_headers,
          boost::beast::string_view(expose.data(), expose.size()));
    r.set(beast_http::field::vary, "Origin");
  }
  // A response floodgate made (no upstream's framing, no Server yet) to a request other than
  // HEAD, with a status that has a body: Server is added and Content-Length is the body's size,
  // exactly what set() and prepare_payload() below would add. Written by the serializer, they
  // cost no allocation (each field in Beast's container is one).
  const unsigned status = r.result_int();
  const bool framed_by_us = wire != nullptr && req.method() != beast_http::verb::head &&
                            status >= 200 && status != 204 && status != 304 &&
                            r.find(beast_http::field::server) == r.end() &&
                            r.find(beast_http::field::content_length) == r.end() &&
                            r.find(beast_http::field::transfer_encoding) == r.end();
  if (!framed_by_us) {
    r.set(beast_http::field::server,
          boost::beast::string_view(kServerName.data(), kServerName.size()));
  }
  r.keep_alive(req.keep_alive() && !ctx.draining);
  if (framed_by_us) {
    char length[20];
    const auto end = std::to_chars(length, length + sizeof length, r.body().size()).ptr;
    wire->emplace_back("Server", kServerName);
    wire->emplace_back("Content-Length", std::string_view(length, end - length));
    return;
  }
  if (req.method() == beast_http::verb::head) {
    // The Content-Length a GET would have had: an upstream's own, else our body's.
    if (r.find(beast_http::field::content_length) == r.end()) r.content_length(r.body().size());
    r.body().clear();
  } else {
    r.prepare_payload();
  }
}

}  // namespace

void finish(Response& r, const Request& req, const Runtime& rt, const HeaderFields& fields,
            const RequestContext& ctx) {
  prepare_fields(r, req, rt, fields, ctx, nullptr);
  add_fields(r, fields);
}

void prepare(Response& r, const Request& req, const Runtime& rt, HeaderFields& fields,
             const RequestContext& ctx) {
  prepare_fields(r, req, rt, fields, ctx, &fields);
}

}  // namespace fg::http
