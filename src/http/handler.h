// handler.h — what floodgate answers, as pure functions of the request, the configuration and
// the store's decision (design §2.3, §2.4). No sockets, no clock reads, no store calls: the
// session (server.cc) reads a request, asks route() what it is, makes the one store call route()
// asks for, and hands the answer to the functions below, which build every header, status and
// body. Handler tests use plain Beast messages.
//
// A request goes through, in order:
//   1. route(): the operations endpoints (/healthz, /readyz, /metrics, POST /v1/check, never rate
//      limited), a CORS preflight (answered without consuming anything), else the policies whose
//      `match` holds. No policy matches: the request is served as it is (kServe). Some match:
//      the client is identified (identity sources in order) and the store must decide (kDecide).
//   2. answer_decision(): 429 with the problem body, 503 (on_store_error: deny), or "serve it"
//      with the rate-limit fields to add. A store error is answered by on_store_error: `allow`
//      serves with X-RateLimit-Degraded and no figures, `deny` answers 503, `local` uses the
//      verdict of the per-instance limiter the session consulted.
//   3. demo_resource() (no upstream) or the upstream's response, then finish(): rate-limit fields,
//      CORS fields, keep-alive.
//
// The session first rewrites the request into its canonical form (canonical.h: method case,
// percent-decoding, dot segments, absolute-form, repeated fields), so "/api/../x", "//api/x",
// "/%61pi/x" and "post" cannot slip past a policy; route() matches on that form, and proxy mode
// forwards exactly it. route() needs only the header section: the body is read afterwards, and
// only when the request is served (or is a /v1/check call whose caller was allowed).
//
// Thread safety: pure functions over values; a Runtime is immutable and shared between threads.
// Failure: none; every bad input is an HTTP answer (400, 404, 405, 413 ...).
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "decide/decider.h"
#include "decide/plan.h"
#include "floodgate/decision.h"
#include "floodgate/limiter.h"
#include "floodgate/result.h"
#include "http/rate_limit_headers.h"
#include "http/request_arena.h"

namespace fg::http {

namespace beast_http = boost::beast::http;
// A request's fields are allocated by ArenaAllocator: from the connection's RequestArena while
// the session serves it, from the heap anywhere else (request_arena.h).
using RequestFields = beast_http::basic_fields<ArenaAllocator<char>>;
using Request = beast_http::request<beast_http::string_body, RequestFields>;
using RequestParser = beast_http::request_parser<beast_http::string_body, ArenaAllocator<char>>;
using Response = beast_http::response<beast_http::string_body>;

// A loaded configuration, ready for requests (the deciding layer's Rules).
using Runtime = decide::Rules;
inline std::shared_ptr<Runtime> make_runtime(std::shared_ptr<const config::Config> config) {
  return decide::make_rules(std::move(config));
}

// Whether `match` holds for a request (method upper case; path canonical): decide::policy_matches
// over the request's fields.
bool policy_matches(const config::Match& match, std::string_view method, std::string_view path,
                    const Request& request);

// What the session needs besides the request.
struct RequestContext {
  config::IpAddress peer;  // the TCP peer
  bool ready = true;       // store reachable and not draining: /readyz
  bool draining = false;   // answer with Connection: close
  bool admin = false;      // the request came to admin_listen
  // The request passed canonicalize() (canonical.h) and has not changed since: its path is
  // canonical already, and route_into() takes it as it is instead of checking it again.
  bool canonical = false;
};

// The deciding layer's Plan (which policies, per which identity), and what the door does with it.
struct Route : decide::Plan {
  enum class Kind {
    kReply,    // `reply` is the whole answer (operations endpoints, preflight, 400 ...)
    kMetrics,  // GET /metrics: the session renders the metrics text into metrics_response()
    kStatus,   // GET /v1/status: the session renders its status board (status.h)
    kServe,    // no policy applies: serve the resource (demo or upstream) without rate limiting
    kDecide,   // ask the store about `identities` for `charges`, then answer_decision()
    // POST /v1/check before its body is read: decide the caller's own `charges` (none on
    // admin_listen) as kDecide does; when allowed, read the body and route it with check_route().
    kCheckCaller,
    kCheck,  // POST /v1/check, body read: ask the store about the key, then answer_check()
  };
  Kind kind = Kind::kReply;
  Response reply;
  std::string path;  // the canonical path, when a policy could apply
};

Route route(const Request& request, const Runtime& runtime, const RequestContext& context);
// The same, written into `out` (a Route as default-constructed): a request's route is built in
// its Exchange, not moved there (a Route's plan holds its charges inline).
void route_into(const Request& request, const Runtime& runtime, const RequestContext& context,
                Route& out);

// kCheck for a POST /v1/check whose body has been read: {"policy":"per-minute","key":"user-42",
// "cost":1} decided for the identity "check:<key>" (a namespace no HTTP identity can be in:
// identity.h), or kReply with a 400/404.
Route check_route(const Request& request, const Runtime& runtime);

using decide::check_identity;

// How a decision turned out (decider.h): the store's verdict, the local limiter's, the mode.
using StoreOutcome = decide::Outcome;

// What to do with a decided request.
struct Answer {
  bool serve = false;   // allowed: serve the resource, then add `fields`
  Response response;    // !serve: the whole answer (429, 503)
  HeaderFields fields;  // rate-limit fields for whatever is served
  using Degraded = decide::Degraded;
  Degraded degraded = Degraded::kNo;
};

// kDecide: the answer for `route` given the store's outcome and on_store_error.
Answer answer_decision(const Request& request, const Route& route, const Runtime& runtime,
                       const StoreOutcome& outcome);

// The rate-limit fields (and, when the verdict denies, the 429's body) for `verdict` on `route`,
// in the form configured for its headline policy: what answer_decision() answers a verdict with.
RateLimitHeaders verdict_headers(const Route& route, const Runtime& runtime,
                                 const Verdict& verdict);

// The plain answers: the demo resource's 200 and the 429 of a verdict, for a request the session
// serves without an upstream. They are most of what a limiter under load answers, and every
// field of theirs is known in advance, so write_plain_answer() writes their bytes directly, the
// bytes serialize_response() writes for the same answer built as a Response and passed through
// answer_decision(), demo_resource() and prepare(), without building that Response: no field
// container (one allocation per field), no lookups in it.
//
// Whether `request` (routed kServe or kDecide) gets a plain answer: not a HEAD (whose
// Content-Length is a GET's), not a request CORS may answer with its fields (an Origin under
// `cors`), and a path the demo resource answers 200. Else the answer is built as a Response.
bool plain_answer_applies(const Request& request, const Route& route, const Runtime& runtime);

struct PlainAnswer {
  int status = 200;
  bool keep_alive = true;
  std::size_t body_bytes = 0;
};

// Writes into `out` (replacing what it held) the answer to `request`: with `headers.denied`, the
// 429 with headers.problem_body; else the demo resource's 200. Both carry headers.fields (empty
// for kServe). `draining`: answer with Connection: close. Only where plain_answer_applies().
PlainAnswer write_plain_answer(std::string& out, const Request& request, const Route& route,
                               const RateLimitHeaders& headers, bool draining);

// kCheck: the JSON answer of POST /v1/check (200 allowed, 429 denied, 503 when no decision and
// on_store_error is deny): {"allowed":true,"limit":100,"remaining":94,"reset_after_ms":3600,
// "retry_after_ms":0}, with the rate-limit fields. A degraded allow carries "degraded".
Answer answer_check(const Request& request, const Route& route, const Runtime& runtime,
                    const StoreOutcome& outcome);

// The built-in resource (no upstream): any method on /api/... answers 200 with a small JSON
// body naming the method and path; anything else is a 404 problem. `path` is the canonical path.
Response demo_resource(const Request& request, std::string_view path);

// Whether GET /dashboard and /v1/status are served on this listener: on admin_listen when that is
// set; else on `listen` when it is a loopback address or `dashboard: {public: true}`.
bool dashboard_served(const config::Config& config, const RequestContext& context);

// Whether `host` (a listen address) is a loopback address: 127.0.0.0/8, ::1 or "localhost".
bool is_loopback_host(std::string_view host);

// GET /v1/status with its document (status.h), not cached.
Response status_response(const Request& request, std::string json);

// The policy a /v1/status request names (`?policy=per-minute`, percent-decoded), or "".
std::string status_policy_param(const Request& request);

// GET /metrics with the rendered text.
Response metrics_response(const Request& request, std::string text);

// An RFC 9457 problem (application/problem+json) answer: {"type":"about:blank","title":...,
// "status":...,"detail":...}.
Response problem_response(unsigned version, int status, std::string_view detail);

// The last step for every response to `request`: adds `fields`, the CORS fields when the
// request's Origin is allowed, Server, and keep-alive (off when draining or the client asked),
// then fixes Content-Length (kept as is for HEAD).
void finish(Response& response, const Request& request, const Runtime& runtime,
            const HeaderFields& fields, const RequestContext& context);

// finish() except adding `fields` (an upstream's fields of the same names are still removed):
// the server hands them to serialize_response() instead, which writes them without building
// them into the response's field container first. For a response floodgate made (not an
// upstream's) to a request other than HEAD, Server and Content-Length are appended to `fields`
// too, rather than set in the container: the same fields, without an allocation each.
void prepare(Response& response, const Request& request, const Runtime& runtime,
             HeaderFields& fields, const RequestContext& context);

// The body of a /v1/check answer and of `floodgate check`'s output line, without a newline:
// {"allowed":true,"policy":"per-minute","limit":100,"remaining":94,"reset_after_ms":3600,
// "retry_after_ms":0}; figures from verdict.headline(), milliseconds rounded up.
std::string check_result_json(std::string_view policy, const Verdict& verdict);

// The JSON of a check's outcome, as /v1/check and `floodgate check` print it: check_result_json of
// the verdict that counts (with "degraded":"local-fallback" when the local limiter decided), or
// {"allowed":true,"policy":"p","degraded":"store-unavailable"} for on_store_error: allow; nullopt
// when nothing was decided (on_store_error: deny, a full memory store).
std::optional<std::string> check_outcome_json(std::string_view policy,
                                              const decide::Outcome& outcome);

}  // namespace fg::http
