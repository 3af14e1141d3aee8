#include "http/server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "http/access_log.h"
#include "http/canonical.h"
#include "decide/decider.h"
#include "http/handler.h"
#include "http/wire.h"
#include "decide/identity.h"
#include "decide/metrics.h"
#include "http/metrics_sources.h"
#include "http/upstream.h"
#include "store/served_store.h"

namespace fg::http {

using decide::DegradedMode;
using decide::Metrics;
using decide::PolicyOutcome;
using decide::StoreResult;
using decide::ThreadMetrics;
using decide::UpstreamResult;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(use_awaitable);

// How often the background probe asks the store whether it answers (for /readyz).
constexpr auto kProbeInterval = std::chrono::seconds(1);
// Connections the admin listener holds at once (a scraper or two, an operator's curl); beyond it
// they are refused as on the public listener. Public connections never count against it, so a
// flood there leaves /metrics reachable.
constexpr int kMaxAdminConnections = 64;
// After accept() fails for lack of descriptors (EMFILE), wait this long before trying again
// rather than spinning; connections in flight free descriptors meanwhile.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);

// Sent to a connection over max_connections, before closing it.
constexpr std::string_view kOverCapacity =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
    "Connection: close\r\nRetry-After: 1\r\nContent-Length: 112\r\n\r\n"
    R"({"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections; retry shortly"})";
static_assert(kOverCapacity.size() - kOverCapacity.find("\r\n\r\n") - 4 == 112);

Timestamp now() { return SystemClock::instance().now(); }

config::IpAddress to_ip(const tcp::endpoint& ep) {
  config::IpAddress ip;
  const auto a = ep.address();
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    ip.family = config::IpAddress::Family::kIpv4;
    std::copy(b.begin(), b.end(), ip.bytes.begin());
  } else {
    const auto b = a.to_v6().to_bytes();
    ip.family = config::IpAddress::Family::kIpv6;
    std::copy(b.begin(), b.end(), ip.bytes.begin());
  }
  return ip;
}

// With admin_listen set: whether `req` (canonical) is answered 404 on this listener. /metrics
// lives only on the admin listener; the admin listener serves only /metrics, /healthz, /readyz
// and POST /v1/check (unless check_api is off).
bool hidden_on_listener(const Request& req, const config::Config& c, bool admin) {
  const std::string_view path = target_path(req);
  const bool metrics = path == "/metrics";
  return admin ? !(metrics || path == "/healthz" || path == "/readyz" ||
                   (path == "/v1/check" && c.check_api))
               : metrics;
}

// A listening socket on `where` (a host name is resolved once, here), run by `ioc`.
Result<std::unique_ptr<tcp::acceptor>> listen_on(asio::io_context& ioc,
                                                 const config::HostPort& where) {
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  const auto results =
      resolver.resolve(where.host, std::to_string(where.port), tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    return fail(ErrorCode::kUnavailable, "listen " + where.host + ": " + ec.message());
  }
  const tcp::endpoint endpoint = results.begin()->endpoint();
  auto acceptor = std::make_unique<tcp::acceptor>(ioc);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable,
                "cannot listen on " + config::to_string(where) + ": " + ec.message());
  }
  return acceptor;
}

// The HTTP status for a request that could not be read, or 0 to close without answering (the
// client left, or was cut off while idle).
int read_error_status(const boost::system::error_code& ec, bool started) {
  namespace he = beast::http;
  if (ec == he::error::header_limit) return 431;
  if (ec == he::error::body_limit) return 413;
  if (ec == beast::error::timeout) return started ? 408 : 0;
  if (ec == he::error::end_of_stream || ec == he::error::partial_message) return 0;
  if (ec.category() == he::make_error_code(he::error::bad_method).category()) return 400;
  return 0;  // reset, aborted (drain), ...
}

}  // namespace

// One server thread: its io_context, the configuration it serves, its upstream pool and its
// sessions. Everything but `ioc` is touched only on this thread.
struct Worker {
  struct SessionEntry {
    tcp::socket* socket = nullptr;
    bool idle = true;  // waiting for a request's first byte
  };

  std::unordered_set<SessionEntry*> sessions;
  std::shared_ptr<const Runtime> runtime;
  ThreadMetrics* metrics = nullptr;
  asio::io_context ioc{1};
  // Keeps run() going while the thread has nothing to do: connections arrive from thread 0.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(ioc);
  std::shared_ptr<UpstreamPool> upstream;  // for runtime->config->upstream; null without one
  // Every pool of this thread counts here, so /metrics keeps the counts across reloads.
  std::shared_ptr<UpstreamCounters> upstream_counters = std::make_shared<UpstreamCounters>();
  std::optional<config::HostPort> upstream_target;
  Duration upstream_timeout{};
  std::thread thread;

  void set_runtime(std::shared_ptr<const Runtime> rt) {
    const config::Config& c = *rt->config;
    if (c.upstream != upstream_target || c.upstream_timeout != upstream_timeout) {
      if (upstream) upstream->close_idle();
      upstream.reset();
      if (c.upstream) {
        UpstreamOptions o;
        o.target = *c.upstream;
        o.timeout = c.upstream_timeout;
        o.counters = upstream_counters;
        upstream = std::make_shared<UpstreamPool>(ioc.get_executor(), o);
      }
      upstream_target = c.upstream;
      upstream_timeout = c.upstream_timeout;
    }
    runtime = std::move(rt);
  }
};

struct Server::Impl {
  std::shared_ptr<const config::Config> config;  // the last one applied (under mutex)
  ServedStore wired;  // the store, and how it is bound to the I/O threads
  Metrics metrics;
  std::unique_ptr<decide::Decider> decider;  // the store behind its guard
  bool inline_store = false;                 // the store answers before decide() returns
  LogThrottle degraded_log{1};
  LineWriter access_log{1};
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<tcp::acceptor> acceptor;  // on workers[0]
  std::uint16_t port = 0;
  std::unique_ptr<tcp::acceptor> admin_acceptor;  // with admin_listen; on workers[0]
  std::uint16_t admin_port = 0;

  std::atomic<int> open_connections{0};   // on the public listener
  std::atomic<int> admin_connections{0};  // on the admin listener
  std::atomic<bool> draining{false};
  std::atomic<bool> closing_idle{false};  // draining and past drain_delay
  std::atomic<bool> stopped{false};
  std::atomic<bool> started{false};
  std::size_t next_worker = 0;  // accept loop only

  std::mutex mutex;  // config, stop/wait
  std::condition_variable stopped_cv;

  explicit Impl(std::size_t threads) : metrics(threads) {}

  // Not the circuit breaker's state: the breaker is per instance, and one dead cluster master
  // opens it while the other masters answer. Under load on that master's slot it reopens as soon
  // as a probe closes it, so every instance would leave the load balancer at once and the whole
  // API would be down for everyone. Whether the store answers at all is store_ok (the probe).
  bool ready() const {
    return !draining.load(std::memory_order_relaxed) && decider->store_answers();
  }

  std::shared_ptr<Runtime> build_runtime(std::shared_ptr<const config::Config> c) {
    auto rt = make_runtime(std::move(c));
    for (const config::PolicyConfig& pc : rt->config->policies) {
      rt->metric_ids.push_back(metrics.policy_id(pc.policy.name));
    }
    return rt;
  }

  // ---- store -------------------------------------------------------------------------------

  // A callback-completed call as an awaitable. Server threads are bound to the store, so the
  // callback comes on this thread: inline (memory store) or later from the io_context (Redis).
  // The coroutine is resumed through post, never from inside the store's own completion.
  template <typename T, typename Start>
  static awaitable<T> completion(Start start) {
    struct State {
      std::optional<T> result;
      std::function<void()> resume;
    };
    auto st = std::make_shared<State>();
    start([st](T r) {
      st->result = std::move(r);
      if (st->resume) std::exchange(st->resume, nullptr)();
    });
    if (!st->result) {
      // A named initiation: g++ 12 destroys the temporaries of a co_await expression twice,
      // which for a lambda holding `st` would release the state early.
      auto initiation = [st](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        st->resume = [h] { asio::post(std::move(*h)); };
      };
      co_await asio::async_initiate<decltype(use_awaitable), void()>(initiation, use_awaitable);
    }
    co_return std::move(*st->result);
  }

  // The deciding service's outcome for `r` (decider.h: the guard, on_store_error, the counting).
  awaitable<decide::Outcome> decide(Worker& w, const Route& r, const Runtime& rt) {
    decide::Decider& d = *decider;
    ThreadMetrics* shard = w.metrics;
    auto start = [&d, &r, &rt, shard](auto done) { d.decide(rt, r, shard, std::move(done)); };
    co_return co_await completion<decide::Outcome>(start);
  }

  // Every second on thread 0: does the store answer? (for /readyz; also closes the breaker).
  // A store in this process always does.
  awaitable<void> probe_loop(Worker& w) {
    asio::steady_timer timer(w.ioc);
    while (!stopped.load()) {
      if (!inline_store) {
        decide::Decider& d = *decider;
        auto start = [&d](auto done) { d.probe(std::move(done)); };
        const Result<void> r = co_await completion<Result<void>>(start);
        const bool ok = r.has_value();
        if (ok != d.store_answers()) {
          d.set_store_answers(ok);
          if (ok) {
            spdlog::info("store {} answers again; ready", d.store().kind());
          } else {
            spdlog::warn("store {} does not answer ({}); /readyz says 503", d.store().kind(),
                         r.error().to_string());
          }
        }
      }
      timer.expires_after(kProbeInterval);
      co_await timer.async_wait(kTuple);
    }
  }

  // ---- requests ----------------------------------------------------------------------------

  awaitable<Response> serve(Request& req, Worker& w, const tcp::endpoint& peer,
                            const std::string& path) {
    if (!w.upstream) co_return demo_resource(req, path);
    auto pool = w.upstream;  // keeps the pool alive across a reload
    // The request is in its canonical form (canonical.h): the upstream gets exactly the method
    // and target that were decided on.
    Request up = make_upstream_request(req, peer.address().to_string(), *w.upstream_target);
    Result<Response> r = co_await pool->forward(std::move(up));
    if (!r) {
      const bool timeout = r.error().code == ErrorCode::kDeadlineExceeded;
      w.metrics->on_upstream(timeout ? UpstreamResult::kTimeout : UpstreamResult::kUnavailable);
      co_return problem_response(
          req.version(), timeout ? 504 : 502,
          timeout ? "the upstream did not answer in time" : "the upstream could not be reached");
    }
    w.metrics->on_upstream(UpstreamResult::kOk);
    Response res = std::move(*r);
    strip_hop_by_hop(res);
    co_return res;
  }

  // A response and the rate-limit fields serialize_response() adds to it.
  struct Reply {
    Response response;
    HeaderFields fields;
    bool linger = false;   // the body was not read: after the answer, drop what still comes, close
    bool abandon = false;  // the client is gone: write nothing, close
  };

  // One request in progress between the steps of respond_now() / respond().
  struct Exchange {
    std::chrono::steady_clock::time_point started_at;
    std::shared_ptr<const Runtime> rt;  // this request's configuration
    RequestContext ctx;
    Route route;
    Response response;
    HeaderFields fields;
    std::string_view outcome;
    // The store's allowed verdict for `route`, until the request is served: a request whose body
    // then cannot be read is not served, and gives back what it consumed (give_back()).
    std::optional<Verdict> consumed;
  };

  // The connection a request arrives on: what reading its body needs, once it is to be served.
  struct Inbound {
    beast::tcp_stream& stream;
    beast::flat_buffer& buffer;
    beast::http::request_parser<beast::http::string_body>& parser;
    config::ServerLimits limits;
    std::size_t header_fields = 0;  // fields of the header section; more after the body: trailers
  };

  // read_body(): read; the client is gone; the body ended with trailer fields. Else a status.
  static constexpr int kBodyRead = 0;
  static constexpr int kClientGone = -1;
  static constexpr int kTrailers = 1;

  // The body of a request that is to be served: "100 Continue" first when the client waits for
  // it, then the body (bounded by max_body_bytes and body_timeout). A body that ends with trailer
  // fields is refused: they arrive after the decision, outside the header section every rule
  // reads, and are never believed or forwarded (design §2.4).
  static awaitable<int> read_body(Inbound& in) {
    if (in.parser.is_done()) co_return kBodyRead;
    if (beast::iequals(in.parser.get()[beast::http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      in.stream.expires_after(in.limits.write_timeout);
      auto [cec, cn] = co_await asio::async_write(
          in.stream, asio::buffer(kContinue.data(), kContinue.size()), kTuple);
      (void)cn;
      if (cec) co_return kClientGone;
    }
    in.stream.expires_after(in.limits.body_timeout);
    auto [ec, n] = co_await beast::http::async_read(in.stream, in.buffer, in.parser, kTuple);
    (void)n;
    if (ec) {
      const int status = read_error_status(ec, true);
      co_return status == 0 ? kClientGone : status;
    }
    const Request& req = in.parser.get();
    if (static_cast<std::size_t>(std::distance(req.begin(), req.end())) != in.header_fields) {
      co_return kTrailers;
    }
    co_return kBodyRead;
  }

  // The answer to a request whose body could not be read (read_body's result).
  Reply body_failed(Worker& w, int result) {
    Reply reply;
    if (result == kClientGone) {
      reply.abandon = true;
      return reply;
    }
    if (result == kTrailers) {
      reply.response = problem_response(
          11, 400, "trailer fields are not accepted: send every field in the header section");
      reply.response.set(beast::http::field::server, "floodgate");
      reply.response.keep_alive(false);
      reply.response.prepare_payload();
    } else {
      reply.response = read_error_response(result);
    }
    w.metrics->on_request(static_cast<int>(reply.response.result_int()));
    reply.linger = true;
    return reply;
  }

  // `admin`: the request came to the admin listener (admin_listen). The request is rewritten
  // into its canonical form (canonical.h) and routed on its header section alone.
  Exchange begin(Request& req, Worker& w, const config::IpAddress& peer_ip, bool admin) {
    Exchange x;
    x.started_at = std::chrono::steady_clock::now();
    x.rt = w.runtime;
    x.ctx = RequestContext{peer_ip, ready(), draining.load(std::memory_order_relaxed), admin};
    if (auto refused = canonicalize(req, x.rt->single_fields)) {
      x.route.reply = problem_response(req.version(), 400, *refused);
    } else if ((admin || x.rt->config->admin_listen) &&
               hidden_on_listener(req, *x.rt->config, admin)) {
      x.route.reply = problem_response(req.version(), 404, "not found");
    } else {
      x.route = route(req, *x.rt, x.ctx);
    }
    // Routes that are their own answer need neither the store nor the resource.
    if (x.route.kind == Route::Kind::kReply) x.response = std::move(x.route.reply);
    if (x.route.kind == Route::Kind::kMetrics) x.response = metrics_response(req, metrics.render());
    return x;
  }

  // After the store's outcome: the answer (x.response), or true when the resource is to be
  // served with x.fields.
  bool decided(Request& req, Exchange& x, const decide::Outcome& so) {
    const Route& r = x.route;
    const Runtime& rt = *x.rt;
    Answer a = r.kind == Route::Kind::kCheck ? answer_check(req, r, rt, so)
                                             : answer_decision(req, r, rt, so);
    const Verdict* v = so.counting();
    x.outcome = so.degraded != decide::Degraded::kNo ? "degraded"
                : (v != nullptr && v->allowed)       ? "allowed"
                                                     : "denied";
    if (so.verdict && so.verdict->allowed) x.consumed = *so.verdict;
    if (a.serve) {
      x.fields = std::move(a.fields);
      return true;
    }
    x.response = std::move(a.response);
    return false;
  }

  // A request that was allowed but is not served after all (its body could not be read): what it
  // consumed is given back, so a malformed or oversized body costs its client nothing.
  void give_back(Exchange& x) {
    if (!x.consumed) return;
    decider->give_back(x.route, *x.consumed);
    x.consumed.reset();
  }

  // `body_unread`: the request's body was not read (it was not served): the connection closes
  // after the answer.
  Reply end(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x, bool body_unread) {
    // The request's own runtime decides CORS and keep-alive; draining is read again (it may
    // have begun while this request waited).
    RequestContext done_ctx = x.ctx;
    done_ctx.draining = draining.load(std::memory_order_relaxed);
    prepare(x.response, req, *x.rt, x.fields, done_ctx);
    if (body_unread) x.response.keep_alive(false);
    w.metrics->on_request(static_cast<int>(x.response.result_int()));
    if (x.rt->config->access_log) log_access(req, peer, x);
    return Reply{std::move(x.response), std::move(x.fields), body_unread, false};
  }

  void log_access(const Request& req, const tcp::endpoint& peer, const Exchange& x) {
    const Route& r = x.route;
    const std::string peer_text = peer.address().to_string();
    const std::string client =
        r.identities.empty() ? std::string() : decide::loggable_identity(r.identities.front());
    const std::string_view policy =
        r.charges.empty() ? std::string_view() : std::string_view(r.charges.front().policy->name);
    const auto ua = req.find(beast::http::field::user_agent);
    const std::string target = redact_query(
        std::string_view(req.target().data(), req.target().size()), x.rt->config->access_log_redact);
    AccessLogEntry e;
    e.time = now();
    e.peer = peer_text;
    e.client = client;
    e.method = std::string_view(req.method_string().data(), req.method_string().size());
    e.target = target;
    e.status = static_cast<int>(x.response.result_int());
    e.bytes_sent = req.method() == beast::http::verb::head ? 0 : x.response.body().size();
    e.duration =
        std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - x.started_at);
    e.policy = policy;
    e.outcome = x.outcome;
    if (ua != req.end()) e.user_agent = std::string_view(ua->value().data(), ua->value().size());
    access_log.write(format_access_log(e));
  }

  // The answer when nothing needs to wait: the routes that are their own answer; and, on a
  // memory store (which decides before returning) with the built-in resource, every request
  // without a body. Most requests of such a server take this path, with no coroutine frame of
  // their own. Empty: use respond().
  std::optional<Reply> respond_now(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                                   bool body_read) {
    switch (x.route.kind) {
      case Route::Kind::kReply:
      case Route::Kind::kMetrics:
        return end(req, w, peer, x, !body_read);  // answered by begin()
      case Route::Kind::kServe:
      case Route::Kind::kDecide:
        if (!inline_store || w.upstream || !body_read) return std::nullopt;
        if (x.route.kind == Route::Kind::kServe ||
            decided(req, x, decider->decide_now(*x.rt, x.route, w.metrics))) {
          x.response = demo_resource(req, x.route.path);
        }
        return end(req, w, peer, x, false);
      case Route::Kind::kCheckCaller:
      case Route::Kind::kCheck:
        break;
    }
    return std::nullopt;
  }

  // Decide on the header section; read the body only for a request that is served (or a
  // /v1/check call whose caller may call), so a denied client never makes the server buffer one.
  awaitable<Reply> respond(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                           Inbound& in) {
    bool serve_it = false;
    switch (x.route.kind) {
      case Route::Kind::kReply:
      case Route::Kind::kMetrics:
      case Route::Kind::kCheck:  // only after kCheckCaller, below
        break;
      case Route::Kind::kServe:
        serve_it = true;
        break;
      case Route::Kind::kDecide:
        serve_it = decided(req, x, co_await decide(w, x.route, *x.rt));
        break;
      case Route::Kind::kCheckCaller: {
        if (!x.route.charges.empty() && !decided(req, x, co_await decide(w, x.route, *x.rt))) {
          break;  // the caller is over its own limit: 429 (or 503), body unread
        }
        x.fields.clear();  // the answer's fields are the checked key's
        const int got = co_await read_body(in);
        if (got != kBodyRead) {
          give_back(x);
          co_return body_failed(w, got);
        }
        x.consumed.reset();
        x.route = check_route(req, *x.rt);
        if (x.route.kind == Route::Kind::kReply) {
          x.response = std::move(x.route.reply);
          break;
        }
        decided(req, x, co_await decide(w, x.route, *x.rt));  // answer_check: never serves
        break;
      }
    }
    if (serve_it) {
      const int got = co_await read_body(in);
      if (got != kBodyRead) {
        give_back(x);
        co_return body_failed(w, got);
      }
      x.response = co_await serve(req, w, peer, x.route.path);
    }
    Reply reply = end(req, w, peer, x, !in.parser.is_done());
    co_return reply;
  }

  // After an error answer, before closing: stop sending and read (and drop) what the client is
  // still sending, for a bounded time and amount. Closing a socket with unread input makes the
  // kernel send a reset, which can destroy the answer before the client reads it.
  static awaitable<void> linger(beast::tcp_stream& stream) {
    constexpr std::size_t kMaxDrainBytes = 1 << 20;
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(std::chrono::seconds(1));
    std::array<char, 16 * 1024> scratch;
    std::size_t drained = 0;
    while (drained < kMaxDrainBytes) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(scratch), kTuple);
      if (ec) break;
      drained += n;
    }
  }

  // Reads until `buffer` holds a whole header section (or more of one than `limit`, which Beast
  // then answers 431), and refuses obs-fold in it: a header line continued on the next one
  // (RFC 9112 §5.2). Beast would unfold it into a space, which the RFC allows, but a proxy in
  // front that reads the fold differently ("Transfer-Encoding:\r\n chunked") would disagree with
  // us about where the body ends; a 400 leaves nothing to disagree about.
  static awaitable<boost::system::error_code> read_whole_header(beast::tcp_stream& stream,
                                                                beast::flat_buffer& buffer,
                                                                std::size_t limit) {
    std::size_t scanned = 0;
    for (;;) {
      const std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
      std::size_t end = data.find("\r\n\r\n", scanned < 3 ? 0 : scanned - 3);
      if (end == std::string_view::npos) end = data.find("\n\n", scanned < 1 ? 0 : scanned - 1);
      if (end != std::string_view::npos) {
        const std::string_view header = data.substr(0, end + 1);
        if (header.find("\n ") != std::string_view::npos ||
            header.find("\n\t") != std::string_view::npos) {
          co_return beast::http::error::bad_value;
        }
        co_return boost::system::error_code();
      }
      if (data.size() > limit) co_return boost::system::error_code();
      scanned = data.size();
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kTuple);
      if (ec) co_return ec;
      buffer.commit(n);
    }
  }

  // `admin`: accepted on the admin listener (admin_listen).
  awaitable<void> session(Worker& w, tcp::socket socket, bool admin) {
    w.metrics->on_connection_open();
    Worker::SessionEntry entry;
    beast::tcp_stream stream(std::move(socket));
    entry.socket = &stream.socket();
    w.sessions.insert(&entry);
    struct Cleanup {
      Worker& w;
      Worker::SessionEntry* e;
      std::atomic<int>& open;
      ~Cleanup() {
        w.sessions.erase(e);
        w.metrics->on_connection_close();
        open.fetch_sub(1, std::memory_order_relaxed);
      }
    } cleanup{w, &entry, admin ? admin_connections : open_connections};

    boost::system::error_code ec;
    const tcp::endpoint peer = stream.socket().remote_endpoint(ec);
    if (ec) co_return;
    const config::IpAddress peer_ip = to_ip(peer);
    beast::flat_buffer buffer;
    asio::steady_timer header_timer(w.ioc);
    // Shared with the header timer's handler, which may run after this frame is gone.
    struct Watchdog {
      tcp::socket* socket = nullptr;
      bool fired = false;
    };
    auto watchdog = std::make_shared<Watchdog>();
    watchdog->socket = &stream.socket();
    struct Disarm {
      std::shared_ptr<Watchdog> wd;
      ~Disarm() { wd->socket = nullptr; }
    } disarm{watchdog};
    bool served = false;  // a request was answered on this connection

    for (;;) {
      const config::ServerLimits limits = w.runtime->config->server;
      if (buffer.size() == 0) {  // idle: wait for the next request's first byte
        // Draining, past drain_delay: an idle kept-alive connection ends here. Before that it
        // is still served (each answer then says Connection: close), as are new connections,
        // so a load balancer can read /readyz and nothing in flight is cut.
        if (served && closing_idle.load(std::memory_order_relaxed)) break;
        entry.idle = true;
        stream.expires_after(limits.idle_timeout);
        auto [rec, n] = co_await stream.async_read_some(buffer.prepare(4096), kTuple);
        entry.idle = false;
        if (rec) break;
        buffer.commit(n);
      }
      beast::http::request_parser<beast::http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      parser.body_limit(limits.max_body_bytes);
      // The header phase has its own timer, which cancels the read instead of closing the
      // socket (as the stream's own timeout does), so the client can still be told 408.
      stream.expires_never();
      watchdog->fired = false;
      header_timer.expires_after(limits.header_timeout);
      header_timer.async_wait([wd = watchdog](const boost::system::error_code& tec) {
        if (tec || wd->socket == nullptr) return;
        wd->fired = true;
        boost::system::error_code ignored;
        wd->socket->cancel(ignored);
      });
      boost::system::error_code hec =
          co_await read_whole_header(stream, buffer, limits.max_header_bytes);
      if (!hec) {
        auto [rec, rn] = co_await beast::http::async_read_header(stream, buffer, parser, kTuple);
        (void)rn;
        hec = rec;
      }
      header_timer.cancel();
      if (watchdog->fired) hec = beast::error::timeout;
      if (!hec && parser.get().find(beast::http::field::transfer_encoding) != parser.get().end() &&
          (!parser.chunked() || !transfer_encoding_acceptable(parser.get().base()))) {
        // A request body framed by any coding but a final "chunked" has no knowable length
        // (RFC 9112 §6.3): refuse it rather than guess where the next request starts. Beast's
        // own judgement (parser.chunked()) is not enough: see transfer_encoding_acceptable.
        hec = beast::http::error::bad_transfer_encoding;
      }
      if (hec) {
        const int status = read_error_status(hec, true);
        if (status != 0) {
          w.metrics->on_request(status);
          const std::string bytes = serialize_response(read_error_response(status));
          stream.expires_after(limits.write_timeout);
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(bytes), kTuple);
          (void)wn;
          if (!wec) co_await linger(stream);
        }
        break;
      }
      // Decided on the header section alone (canonicalized in place); the body is read later,
      // only if the request is served.
      Request& req = parser.get();
      Exchange x = begin(req, w, peer_ip, admin);
      Inbound in{stream, buffer, parser, limits,
                 static_cast<std::size_t>(std::distance(req.begin(), req.end()))};
      std::optional<Reply> now_reply = respond_now(req, w, peer, x, parser.is_done());
      if (!now_reply) now_reply = co_await respond(req, w, peer, x, in);
      Reply& reply = *now_reply;
      if (reply.abandon) break;
      const bool keep_alive = reply.response.keep_alive();
      served = true;
      const std::string bytes = serialize_response(reply.response, reply.fields);
      stream.expires_after(limits.write_timeout);
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(bytes), kTuple);
      (void)wn;
      if (wec) break;
      if (reply.linger) {
        co_await linger(stream);
        break;
      }
      if (!keep_alive) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.socket().close(ec);
  }

  // ---- accepting ---------------------------------------------------------------------------

  // `listener` is `acceptor` or `admin_acceptor` (admin).
  awaitable<void> accept_loop(tcp::acceptor& listener, bool admin) {
    Worker& home = *workers.front();
    asio::steady_timer backoff(home.ioc);
    std::atomic<int>& open = admin ? admin_connections : open_connections;
    while (listener.is_open()) {
      Worker& target = *workers[next_worker++ % workers.size()];
      auto [ec, socket] = co_await listener.async_accept(target.ioc, kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !listener.is_open()) co_return;
        std::uint64_t suppressed = 0;
        if (degraded_log.admit(now(), &suppressed)) {
          spdlog::warn("accept failed: {} ({} similar suppressed)", ec.message(), suppressed);
        }
        backoff.expires_after(kAcceptBackoff);
        co_await backoff.async_wait(kTuple);
        continue;
      }
      // While draining, connections are still accepted until the listener closes: the load
      // balancer learns of the drain from /readyz on them.
      const int max = admin ? kMaxAdminConnections : home.runtime->config->server.max_connections;
      if (open.load(std::memory_order_relaxed) >= max) {
        home.metrics->on_connection_rejected();
        boost::system::error_code ignored;
        socket.non_blocking(true, ignored);
        socket.write_some(asio::buffer(kOverCapacity.data(), kOverCapacity.size()), ignored);
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        continue;
      }
      open.fetch_add(1, std::memory_order_relaxed);
      asio::co_spawn(target.ioc, session(target, std::move(socket), admin), asio::detached);
    }
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  void run_worker(Worker& w) {
    wired.bind_thread(w.ioc);
    w.ioc.run();
    wired.unbind_thread();
  }

  void close_idle_sessions(Worker& w) {
    for (Worker::SessionEntry* e : w.sessions) {
      boost::system::error_code ignored;
      if (e->idle) e->socket->cancel(ignored);
    }
  }

  awaitable<void> drain_sequence(config::ServerLimits limits) {
    Worker& home = *workers.front();
    asio::steady_timer timer(home.ioc);
    spdlog::info("draining: /readyz answers 503; closing the listener in {}",
                 config::format_duration(limits.drain_delay));
    timer.expires_after(limits.drain_delay);
    co_await timer.async_wait(kTuple);
    boost::system::error_code ignored;
    if (acceptor) acceptor->close(ignored);
    if (admin_acceptor) admin_acceptor->close(ignored);
    closing_idle.store(true);
    for (auto& w : workers) {
      asio::post(w->ioc, [this, wp = w.get()] { close_idle_sessions(*wp); });
    }
    const auto deadline = std::chrono::steady_clock::now() + limits.drain_timeout;
    const auto open = [this] { return open_connections.load() + admin_connections.load(); };
    while (open() > 0 && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(kTuple);
    }
    const int left = open();
    if (left > 0) {
      spdlog::warn("drain timeout: closing {} connection(s) still open", left);
    } else {
      spdlog::info("drained: no connection left");
    }
    stop_all();
  }

  void stop_all() {
    if (stopped.exchange(true)) return;
    for (auto& w : workers) {
      asio::post(w->ioc, [wp = w.get()] {
        for (Worker::SessionEntry* e : wp->sessions) {
          boost::system::error_code ignored;
          e->socket->close(ignored);
        }
        wp->work.reset();
        wp->ioc.stop();
      });
    }
    if (!started.load()) {
      std::lock_guard lock(mutex);
      stopped_cv.notify_all();
    }
  }
};

Result<std::unique_ptr<Server>> Server::make(ServerOptions options) {
  if (!options.config) return fail(ErrorCode::kInvalidArgument, "no configuration");
  const config::Config& c = *options.config;
  const std::size_t threads = static_cast<std::size_t>(std::max(1, c.threads));
  auto impl = std::make_unique<Impl>(threads);

  if (options.store) {
    impl->wired = serve_store(std::move(options.store));
  } else if (c.store.kind == config::StoreKind::kMemory) {
    impl->wired = serve_store(make_memory_store(
        MemoryStoreOptions{.max_keys = c.memory.max_keys}, SystemClock::instance()));
  } else {
    // Which store a URL names, and how its options come from the config, is the process's
    // wiring (app/wiring.h), not the server's.
    return fail(ErrorCode::kInvalidArgument,
                "store " + config::to_string(c.store) + ": no store was given to the server");
  }
  Store& store = *impl->wired.store;
  std::shared_ptr<Store> local =
      make_memory_store(MemoryStoreOptions{.max_keys = c.memory.max_keys}, SystemClock::instance());
  impl->inline_store = store.completes_inline();
  impl->metrics.set_info(options.version, store.kind());
  if (store.memory_stats()) {
    impl->metrics.add_memory_store("store", [s = impl->wired.store] { return *s->memory_stats(); });
  }
  impl->metrics.add_memory_store("local_fallback", [local] { return *local->memory_stats(); });
  decide::DeciderOptions d;
  d.store = impl->wired.store;
  d.local_store = local;
  d.probe_keys = store.probe_keys();
  d.on_degraded = [s = impl.get()](const Error& why, config::OnStoreError mode) {
    std::uint64_t suppressed = 0;
    if (s->degraded_log.admit(now(), &suppressed)) {
      spdlog::warn(
          "store {} could not decide ({}); answered with on_store_error: {} ({} similar "
          "suppressed)",
          s->wired.store->kind(), why.to_string(), config::to_string(mode), suppressed);
    }
  };
  impl->decider = std::make_unique<decide::Decider>(std::move(d));
  impl->decider->set_metrics(&impl->metrics);
  if (impl->wired.redis_stats) add_redis_store_metrics(impl->metrics, impl->wired.redis_stats);

  auto rt = impl->build_runtime(options.config);
  impl->config = options.config;
  for (std::size_t i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->metrics = &impl->metrics.shard(i);
    w->set_runtime(rt);
    impl->workers.push_back(std::move(w));
  }
  std::vector<std::shared_ptr<const UpstreamCounters>> upstream_counters;
  for (const auto& w : impl->workers) upstream_counters.push_back(w->upstream_counters);
  add_upstream_metrics(impl->metrics, std::move(upstream_counters));

  // Listen. A host name is resolved once, here.
  auto acceptor = listen_on(impl->workers.front()->ioc, c.listen);
  if (!acceptor) return tl::unexpected(acceptor.error());
  impl->port = (*acceptor)->local_endpoint().port();
  impl->acceptor = std::move(*acceptor);
  if (c.admin_listen) {
    auto admin = listen_on(impl->workers.front()->ioc, *c.admin_listen);
    if (!admin) return fail(admin.error().code, "admin_listen: " + admin.error().message);
    impl->admin_port = (*admin)->local_endpoint().port();
    impl->admin_acceptor = std::move(*admin);
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  // Sessions still suspended are destroyed with their io_context (workers), before the store.
  impl_->acceptor.reset();
  impl_->admin_acceptor.reset();
  impl_->workers.clear();
}

void Server::start() {
  Impl& s = *impl_;
  if (s.started.exchange(true)) return;
  Worker& home = *s.workers.front();
  asio::co_spawn(home.ioc, s.accept_loop(*s.acceptor, false), asio::detached);
  if (s.admin_acceptor) {
    asio::co_spawn(home.ioc, s.accept_loop(*s.admin_acceptor, true), asio::detached);
  }
  asio::co_spawn(home.ioc, s.probe_loop(home), asio::detached);
  for (auto& w : s.workers) {
    Worker* wp = w.get();
    w->thread = std::thread([&s, wp] {
      s.run_worker(*wp);
      std::lock_guard lock(s.mutex);
      s.stopped_cv.notify_all();
    });
  }
}

std::uint16_t Server::port() const { return impl_->port; }

std::uint16_t Server::admin_port() const { return impl_->admin_port; }

std::vector<std::string> Server::reload(std::shared_ptr<const config::Config> next) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  const config::Config& old = *s.config;
  auto c = std::make_shared<config::Config>(*next);
  std::vector<std::string> ignored = config::keep_restart_only_fields(old, *c);
  s.config = c;
  std::shared_ptr<const Runtime> rt = s.build_runtime(c);
  for (auto& w : s.workers) {
    asio::post(w->ioc, [wp = w.get(), rt] { wp->set_runtime(rt); });
  }
  s.metrics.on_reload(true);
  return ignored;
}

void Server::reload_failed() { impl_->metrics.on_reload(false); }

void Server::drain() {
  Impl& s = *impl_;
  if (s.draining.exchange(true)) return;
  s.metrics.set_draining(true);
  config::ServerLimits limits;
  {
    std::lock_guard lock(s.mutex);
    limits = s.config->server;
  }
  asio::co_spawn(s.workers.front()->ioc, s.drain_sequence(limits), asio::detached);
  if (!s.started.load()) s.stop_all();
}

void Server::stop() { impl_->stop_all(); }

void Server::wait() {
  Impl& s = *impl_;
  for (auto& w : s.workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  std::unique_lock lock(s.mutex);
  s.stopped_cv.wait(lock, [&] { return s.stopped.load(); });
}

bool Server::draining() const { return impl_->draining.load(); }

bool Server::stopped() const { return impl_->stopped.load(); }

Metrics& Server::metrics() { return impl_->metrics; }

}  // namespace fg::http
