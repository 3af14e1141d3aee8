// http_request.cc — fuzz target: bytes on a connection -> Boost.Beast's request parser with the
// server's limits -> the pure handler (src/http/handler.h): route() (operations endpoints, CORS,
// path normalization, policy matching, identity), a real decision by a MemoryStore, then
// answer_decision / answer_check, the demo resource, finish() and serialize_response(): every
// step the session in server.cc takes, but the sockets.
//
// Input: two flags bytes (TCP peer, readiness, draining; store outcome, on_store_error), then
// the bytes a client sends, possibly several pipelined requests. Each request is read as the
// session reads it: header (limit server.max_header_bytes), a Transfer-Encoding that is not a final
// "chunked" refused, body (limit server.max_body_bytes); a read error is answered as the session
// answers it and ends the connection. The store's clock advances 250 ms per request.
//
// Invariants, per request and answer:
//   - framing: a request that is read has no Content-Length with Transfer-Encoding, a final
//     "chunked" if any, and every Content-Length field (repeats must agree) its body size;
//   - it serializes, and the bytes parse back as one HTTP/1.x response with a status 100-599,
//     field names that are tokens, values without CR/LF/NUL, Content-Length = the body;
//   - a read error is 400/413/431 with Connection: close;
//   - what proxy mode sends upstream for the canonical request is Beast's serialization of
//     make_upstream_request()'s message, byte for byte, and parses back as one request with the
//     same method, target and body;
//   - canonicalize() (canonical.h) either refuses the request (400) or leaves a target whose path
//     is canonical (canonicalizing it again changes nothing: "/..." without "//", "." or ".."
//     segments, '\\', ';'), which a lenient upstream (tests/fixtures/lenient_view.h) reads as the
//     same path, and which it would have read under /api/ only if the canonical path is under
//     /api/; a path under /api/ is never served without a decision (no slipping past);
//   - a decided request answers 200 with every rate-limit field, or 429 with Retry-After and the
//     problem body, or per on_store_error when the store is out (503, or X-RateLimit-Degraded);
//   - identity: X-API-Key when sent, else the peer (untrusted) or a forwarded address, masked;
//   - the header policy applies exactly when X-Beta is 1; CORS fields only for the allowed origin;
//     a draining instance closes the connection; operations endpoints are never rate limited.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>  // operator<<: Beast's serialization, for comparison
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include "config/config.h"
#include "decide/identity.h"
#include "fixtures/lenient_view.h"
#include "floodgate/clock.h"
#include "floodgate/store.h"
#include "fuzz_check.h"
#include "http/canonical.h"
#include "http/handler.h"
#include "http/upstream_request.h"
#include "http/wire.h"
#include "store/memory/memory_store.h"
#include "util/text.h"

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using namespace fg;
using namespace fg::http;

constexpr std::string_view kConfigTemplate = R"(
on_store_error: ON_STORE_ERROR
trusted_proxies: [10.0.0.0/8, "2001:db8::/32"]
cors: {allow_origins: ["https://app.example.com"]}
identity:
  - header: X-API-Key
  - ip: {ipv4_prefix: 24, ipv6_prefix: 56}
server: {max_header_bytes: 4096, max_body_bytes: 8192}
policies:
  - {name: per-minute, match: {path_prefix: /api/}, limit: 100, period: 60s}
  - {name: per-second, match: {path_prefix: /api/}, algorithm: sliding_window, limit: 3, period: 1s}
  - name: login
    match: {path: /login, method: [POST]}
    algorithm: fixed_window
    limit: 5
    period: 1m
    cost: 2
  - name: upload
    match: {path_prefix: /api/upload, method: [PUT, POST]}
    algorithm: gcra
    limit: 20
    period: 10s
    burst: 30
    cost: 10
  - {name: admin-shadow, match: {path_prefix: /admin/}, limit: 1, period: 1h, shadow: true}
  - name: beta
    match: {header: {name: X-Beta, value: "1"}}
    algorithm: fixed_window
    limit: 2
    period: 10s
)";

std::shared_ptr<Runtime> runtime_with(std::string_view on_store_error) {
  std::string text(kConfigTemplate);
  text.replace(text.find("ON_STORE_ERROR"), 14, on_store_error);
  auto c = config::parse_config(text, "fuzz");
  if (!c) {
    std::fprintf(stderr, "fuzz config: %s\n", c.error().message.c_str());
    std::abort();
  }
  return make_runtime(std::make_shared<const config::Config>(std::move(*c)));
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

// Parses `bytes` back as one response to a request with `method`.
void check_wire(const std::string& bytes, bhttp::verb method) {
  bhttp::response_parser<bhttp::string_body> p;
  p.eager(true);
  p.skip(method == bhttp::verb::head);
  beast::error_code ec;
  std::size_t used = p.put(boost::asio::buffer(bytes), ec);
  if (!ec && !p.is_done()) p.put_eof(ec);
  FG_FUZZ_CHECK(!ec && p.is_done(), "the response does not parse back (%s):\n%s",
                ec.message().c_str(), bytes.c_str());
  FG_FUZZ_CHECK(used == bytes.size() || method == bhttp::verb::head, "%zu bytes after the response",
                bytes.size() - used);
  const auto& res = p.get();
  FG_FUZZ_CHECK(res.result_int() >= 100 && res.result_int() <= 599, "status %u", res.result_int());
  for (const auto& f : res) {
    const std::string_view name = sv(f.name_string());
    FG_FUZZ_CHECK(!name.empty() && std::all_of(name.begin(), name.end(), fg::util::is_tchar),
                  "field name \"%.*s\"", static_cast<int>(name.size()), name.data());
    const std::string_view value = sv(f.value());
    FG_FUZZ_CHECK(value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos,
                  "CR, LF or NUL in %.*s", static_cast<int>(name.size()), name.data());
  }
}

// What proxy mode sends upstream for the canonical `req` (make_upstream_request, then
// serialize_request): Beast's serialization of that message, byte for byte, and it parses back
// as exactly one request with the method, target and body that were decided on.
void check_forwarded(const Request& req) {
  const Request up = make_upstream_request(req, "192.0.2.7", config::HostPort{"10.0.0.5", 8080});
  std::string head;
  const std::string_view tail = serialize_request(head, up);
  const std::string bytes = head + up.body() + std::string(tail);
  std::ostringstream beast_bytes;
  beast_bytes << up;
  FG_FUZZ_CHECK(bytes == beast_bytes.str(), "forwarded:\n%s\nBeast writes:\n%s", bytes.c_str(),
                beast_bytes.str().c_str());
  RequestParser p;
  p.eager(true);
  p.header_limit(static_cast<std::uint32_t>(bytes.size()));
  p.body_limit(bytes.size());
  beast::error_code ec;
  const std::size_t used = p.put(boost::asio::buffer(bytes), ec);
  FG_FUZZ_CHECK(!ec && p.is_done() && used == bytes.size(),
                "the forwarded request does not parse back as one (%s, %zu of %zu bytes):\n%s",
                ec.message().c_str(), used, bytes.size(), bytes.c_str());
  const Request& seen = p.get();
  FG_FUZZ_CHECK(sv(seen.method_string()) == sv(req.method_string()) &&
                    sv(seen.target()) == sv(req.target()) && seen.body() == req.body(),
                "forwarded %.*s %.*s (%zu body bytes) for %.*s %.*s (%zu)",
                static_cast<int>(seen.method_string().size()), seen.method_string().data(),
                static_cast<int>(seen.target().size()), seen.target().data(), seen.body().size(),
                static_cast<int>(req.method_string().size()), req.method_string().data(),
                static_cast<int>(req.target().size()), req.target().data(), req.body().size());
}

bool has(const Response& r, std::string_view name) {
  return r.find(beast::string_view(name.data(), name.size())) != r.end();
}

// `original` is the target as sent; `req` has been canonicalized.
void check_path(std::string_view original, const Request& req) {
  const std::string target(sv(req.target()));
  if (target == "*") return;
  const std::string p(target_path(req));
  FG_FUZZ_CHECK(!p.empty() && p.front() == '/', "canonical path \"%s\"", p.c_str());
  FG_FUZZ_CHECK(p.find("//") == std::string::npos, "\"//\" in \"%s\"", p.c_str());
  for (std::string_view seg : {"/./", "/../"}) {
    FG_FUZZ_CHECK(p.find(seg) == std::string::npos, "dot segment in \"%s\"", p.c_str());
  }
  FG_FUZZ_CHECK(!p.ends_with("/.") && !p.ends_with("/.."), "dot segment at the end of \"%s\"",
                p.c_str());
  FG_FUZZ_CHECK(p.find_first_of("\\;#") == std::string::npos, "'\\', ';' or '#' in \"%s\"",
                p.c_str());
  const CanonicalPath again = canonical_path(p);
  FG_FUZZ_CHECK(again.error.empty() && again.path == p, "not idempotent: \"%s\" -> \"%s\"",
                p.c_str(), again.path.c_str());
  const std::string upstream_reads = fg::testing::lenient_path(target);
  const std::string as_sent = fg::testing::lenient_path(std::string(original));
  for (std::string_view prefix : {"/api/", "/api"}) {
    FG_FUZZ_CHECK(p.starts_with(prefix) == upstream_reads.starts_with(prefix),
                  "matched %s, a lenient upstream reads %s", p.c_str(), upstream_reads.c_str());
    FG_FUZZ_CHECK(!as_sent.starts_with(prefix) || p.starts_with(prefix),
                  "sent %s (a lenient upstream reads %s), matched as %s",
                  std::string(original).c_str(), as_sent.c_str(), p.c_str());
  }
}

// Request smuggling shapes never reach the handler: what a front proxy and floodgate could read
// as different message boundaries is refused while reading (400), so a request that got through
// has one unambiguous length. Repeated Content-Length fields with one value are unambiguous and
// may be accepted (RFC 9110 §8.6; Beast does); differing ones must not be.
void check_framing(const Request& req) {
  const auto [cl_begin, cl_end] = req.equal_range(bhttp::field::content_length);
  const bool te = req.find(bhttp::field::transfer_encoding) != req.end();
  FG_FUZZ_CHECK(!(te && cl_begin != cl_end), "Content-Length with Transfer-Encoding got through");
  if (te) FG_FUZZ_CHECK(req.chunked(), "a Transfer-Encoding without a final chunked got through");
  for (auto it = cl_begin; it != cl_end; ++it) {
    // A field may be a list of the same length ("5, 5", RFC 9110 §8.6: fields combined on the
    // way), and a length any number of digits: Beast takes leading zeros (1*DIGIT), so
    // "000…0001" with more digits than a 64-bit integer holds is 1. Every element must be the
    // body's size; none may be empty.
    std::string_view rest = sv(it->value());
    for (;;) {
      const std::size_t comma = rest.find(',');
      const std::string_view text = fg::util::trim_ows(rest.substr(0, comma));
      std::uint64_t n = 0;
      bool digits = !text.empty();
      for (char c : text) {
        digits = digits && c >= '0' && c <= '9' && n < 1'000'000'000'000'000'000ULL;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      FG_FUZZ_CHECK(digits && n == req.body().size(), "Content-Length %.*s, body of %zu bytes",
                    static_cast<int>(it->value().size()), it->value().data(), req.body().size());
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
}

struct Flags {
  config::IpAddress peer;
  bool ready;
  bool draining;
  int store;  // 0, 1: the memory store decides; 2: the store is out (kUnavailable)
  int on_store_error;
};

void check_answer(const Request& req, const Route& r, const Response& res, const Runtime& rt,
                  const Flags& f, bool store_ok) {
  const std::string path(target_path(req));
  const bool ops =
      path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/v1/check";
  const bool preflight = req.method() == bhttp::verb::options &&
                         req.find(bhttp::field::origin) != req.end() &&
                         req.find("Access-Control-Request-Method") != req.end();
  if (ops) {
    FG_FUZZ_CHECK(r.kind != Route::Kind::kDecide, "%s rate limited", path.c_str());
  }
  if (!ops && !preflight && path.starts_with("/api/")) {
    // The demo resource (as an upstream would) sees this path under /api/: a decision first.
    FG_FUZZ_CHECK(r.kind == Route::Kind::kDecide || r.kind == Route::Kind::kReply,
                  "%s served without a decision", path.c_str());
    FG_FUZZ_CHECK(r.kind == Route::Kind::kDecide || res.result_int() == 400,
                  "%s: %u without a decision", path.c_str(), res.result_int());
  }
  if (r.kind == Route::Kind::kDecide) {
    bool beta = false;
    if (const auto it = req.find("X-Beta"); it != req.end()) beta = sv(it->value()) == "1";
    bool has_beta_charge = false;
    for (const Charge& c : r.charges) has_beta_charge |= c.policy->name == "beta";
    FG_FUZZ_CHECK(beta == has_beta_charge, "X-Beta %d, beta policy charged %d", beta,
                  has_beta_charge);
    const auto key = req.find("X-API-Key");
    const bool keyed = key != req.end() && !fg::util::trim_ows(sv(key->value())).empty();
    const std::string& identity = r.identities.at(0);
    if (keyed) {
      FG_FUZZ_CHECK(
          identity.starts_with("key:x-api-key:") || identity.starts_with("key#x-api-key:"),
          "identity %s with an X-API-Key", identity.c_str());
    } else {
      FG_FUZZ_CHECK(identity.starts_with("ip:"), "identity %s", identity.c_str());
      const bool trusted =
          std::any_of(rt.config->trusted_proxies.begin(), rt.config->trusted_proxies.end(),
                      [&](const config::Cidr& c) { return c.contains(f.peer); });
      if (!trusted) {
        FG_FUZZ_CHECK(identity == "ip:" + decide::ip_identity(f.peer, 24, 56),
                      "untrusted peer, identity %s", identity.c_str());
      }
    }
    const int status = static_cast<int>(res.result_int());
    if (store_ok) {
      FG_FUZZ_CHECK(status == 200 || status == 404 || status == 429, "decided, status %d", status);
      for (std::string_view name : {"X-RateLimit-Limit", "X-RateLimit-Remaining",
                                    "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit"}) {
        FG_FUZZ_CHECK(has(res, name), "decided (%d) without %.*s", status,
                      static_cast<int>(name.size()), name.data());
      }
      FG_FUZZ_CHECK((status == 429) == has(res, "Retry-After"), "%d and Retry-After %d", status,
                    has(res, "Retry-After"));
      if (status == 429) {
        FG_FUZZ_CHECK(res.body().find("\"violated-policies\":[\"") != std::string::npos,
                      "429 body: %s", res.body().c_str());
      }
    } else if (f.on_store_error == 0) {
      FG_FUZZ_CHECK(status != 429 && status != 503 && has(res, "X-RateLimit-Degraded"),
                    "on_store_error allow: %d", status);
    } else if (f.on_store_error == 1) {
      FG_FUZZ_CHECK(status == 503 && has(res, "Retry-After"), "on_store_error deny: %d", status);
    } else {
      FG_FUZZ_CHECK((status == 200 || status == 404 || status == 429) &&
                        has(res, "X-RateLimit-Degraded") && has(res, "RateLimit"),
                    "on_store_error local: %d", status);
    }
  }
  const auto origin = req.find(bhttp::field::origin);
  const bool allowed_origin =
      origin != req.end() && beast::iequals(origin->value(), "https://app.example.com");
  FG_FUZZ_CHECK(has(res, "Access-Control-Allow-Origin") == allowed_origin,
                "CORS fields for origin %d", allowed_origin);
  if (f.draining) FG_FUZZ_CHECK(!res.keep_alive(), "draining, yet keep-alive");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::shared_ptr<Runtime> runtimes[] = {runtime_with("allow"), runtime_with("deny"),
                                                      runtime_with("local")};
  static const config::IpAddress peers[] = {
      *config::parse_ip("203.0.113.7"),     *config::parse_ip("10.1.2.3"),
      *config::parse_ip("2001:db8::1"),     *config::parse_ip("2001:db9:1:2:3:4:5:6"),
      *config::parse_ip("::ffff:10.9.9.9"), *config::parse_ip("::1"),
      *config::parse_ip("198.51.100.200"),  *config::parse_ip("10.255.255.255")};

  fuzz::Input in(data, size);
  const std::uint8_t b = in.byte();
  const std::uint8_t s = in.byte();
  Flags f{peers[b & 7], (b & 8) == 0, (b & 16) != 0, s % 3, (s / 3) % 3};
  const Runtime& rt = *runtimes[f.on_store_error];
  const config::ServerLimits& limits = rt.config->server;

  ManualClock clock;
  memory::MemoryStore store(MemoryStoreOptions{64, 4}, clock);
  memory::MemoryStore local_store(MemoryStoreOptions{64, 4}, clock);
  const RequestContext ctx{f.peer, f.ready, f.draining};

  std::string_view stream = in.rest();
  for (int requests = 0; requests < 16 && !stream.empty(); ++requests) {
    clock.advance(std::chrono::milliseconds(250));
    RequestParser parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    parser.eager(false);
    beast::error_code ec;
    // The header, as async_read_header reads it, then the body, as async_read does. Beast takes
    // a header only whole: need_more with nothing used means the client stopped mid-message.
    const auto read_until = [&](auto done) {
      while (!ec && !done()) {
        const std::size_t used = parser.put(boost::asio::buffer(stream.data(), stream.size()), ec);
        stream.remove_prefix(used);
        if (ec == bhttp::error::need_more) ec = {};
        // End of input, or nothing Beast can use: the client stopped mid-message.
        if (!ec && used == 0) ec = bhttp::error::partial_message;
      }
    };
    read_until([&] { return parser.is_header_done(); });
    if (!ec && parser.get().find(bhttp::field::transfer_encoding) != parser.get().end() &&
        (!parser.chunked() || !transfer_encoding_acceptable(parser.get().base()))) {
      ec = bhttp::error::bad_transfer_encoding;
    }
    parser.eager(true);
    read_until([&] { return parser.is_done(); });
    if (ec) {
      // What the session answers (server.cc, read_error_status); end of input closes quietly.
      int status = 0;
      if (ec == bhttp::error::header_limit) {
        status = 431;
      } else if (ec == bhttp::error::body_limit) {
        status = 413;
      } else if (ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        status = 400;
      }
      if (status != 0) {
        const Response res = read_error_response(status);
        FG_FUZZ_CHECK(static_cast<int>(res.result_int()) == status && !res.keep_alive(),
                      "read error answer %u", res.result_int());
        check_wire(serialize_response(res), bhttp::verb::get);
      }
      break;
    }

    Request req = parser.release();
    check_framing(req);
    // As the session: canonical form first (or 400), then the route on it.
    const std::string original(sv(req.target()));
    Route r;
    if (auto refused = canonicalize(req, rt.single_fields)) {
      r.reply = problem_response(req.version(), 400, *refused);
    } else {
      check_path(original, req);
      check_forwarded(req);
      r = route(req, rt, ctx);
      // A /v1/check caller (not limited in this config's runtime when the store is out) is then
      // routed on its body.
      if (r.kind == Route::Kind::kCheckCaller) r = check_route(req, rt);
    }
    Response res;
    HeaderFields fields;
    bool store_ok = true;
    switch (r.kind) {
      case Route::Kind::kReply:
        res = std::move(r.reply);
        break;
      case Route::Kind::kMetrics:
        res = metrics_response(req, "# HELP fuzz\n");
        break;
      case Route::Kind::kStatus:
        res = status_response(req, "{}");
        break;
      case Route::Kind::kServe:
        res = demo_resource(req, r.path);
        break;
      case Route::Kind::kCheckCaller:  // routed above
      case Route::Kind::kDecide:
      case Route::Kind::kCheck: {
        StoreOutcome so{fail(ErrorCode::kUnavailable, "store out (fuzz flags)"), std::nullopt};
        if (f.store != 2) {
          so.verdict = store.decide_now(DecideRequest{r.identities.at(0), r.charges});
        } else {
          store_ok = false;
          // What the deciding service makes of an outage (decider.h).
          const config::OnStoreError mode = rt.config->on_store_error;
          so.degraded = mode == config::OnStoreError::kAllow  ? decide::Degraded::kAllow
                        : mode == config::OnStoreError::kDeny ? decide::Degraded::kDeny
                                                              : decide::Degraded::kLocal;
          if (mode == config::OnStoreError::kLocal) {
            auto local = local_store.decide_now(DecideRequest{r.identities.at(0), r.local_charges});
            if (local) so.local_verdict = std::move(*local);
          }
        }
        if (so.verdict) {
          FG_FUZZ_CHECK(so.verdict->decisions.size() == r.charges.size(), "%zu decisions",
                        so.verdict->decisions.size());
          for (const Decision& d : so.verdict->decisions) {
            FG_FUZZ_CHECK(d.remaining >= 0 && d.remaining <= d.limit, "remaining %lld of %lld",
                          static_cast<long long>(d.remaining), static_cast<long long>(d.limit));
          }
        } else if (store_ok) {
          // Only a /v1/check cost or charges the store refuses make no decision.
          FG_FUZZ_CHECK(so.verdict.error().code == ErrorCode::kInvalidArgument, "memory store: %s",
                        so.verdict.error().message.c_str());
        }
        Answer a = r.kind == Route::Kind::kDecide ? answer_decision(req, r, rt, so)
                                                  : answer_check(req, r, rt, so);
        if (a.serve) {
          res = demo_resource(req, r.path);
          fields = std::move(a.fields);
        } else {
          res = std::move(a.response);
        }
        break;
      }
    }
    finish(res, req, rt, fields, ctx);
    const std::string bytes = serialize_response(res);
    check_wire(bytes, req.method());
    check_answer(req, r, res, rt, f, store_ok);
    if (!res.keep_alive()) break;
  }
  return 0;
}
