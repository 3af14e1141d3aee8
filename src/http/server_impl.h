// server_impl.h — the inside of `floodgate serve` (server.h), shared by the files that make it:
//   server.cc    lifecycle: make, threads, accepting, the readiness probe, reload, drain, stop;
//   session.cc   a connection's I/O: reading a request (header, then the body when it is to be
//                served), its limits and timeouts, writing the answer, lingering after an error;
//   exchange.cc  one request's orchestration: canonical form, route, the deciding service's
//                outcome, the resource (demo or upstream), the answer and the access log.
// Private to src/http/server*.cc, session.cc and exchange.cc.
#pragma once

#include <spdlog/spdlog.h>
#include <unistd.h>

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

#include "decide/decider.h"
#include "decide/identity.h"
#include "decide/metrics.h"
#include "http/access_log.h"
#include "http/canonical.h"
#include "http/handler.h"
#include "http/metrics_sources.h"
#include "http/server.h"
#include "http/status.h"
#include "http/upstream.h"
#include "http/wire.h"
#include "store/served_store.h"
#include "util/memory_lease.h"

namespace fg::http {

using decide::DegradedMode;
using decide::Metrics;
using decide::PolicyOutcome;
using decide::StoreResult;
using decide::ThreadMetrics;
using decide::UpstreamResult;

namespace detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
inline constexpr auto kTuple = asio::as_tuple(use_awaitable);

// How often the background probe asks the store whether it answers (for /readyz).
inline constexpr auto kProbeInterval = std::chrono::seconds(1);
// How many probe rounds in a row must find no part of the store answering before /readyz says
// 503 (one answer makes it 200 again). Every instance probes the same store, so one failed round
// would take them all out of the balancer at once: a cluster failover's vote can stall every
// master for a second or two together (bench/accuracy.sh (c) saw HAProxy left with no instance
// that way), which three rounds, ~2-3 s, ride out.
inline constexpr int kProbeFailuresBeforeNotReady = 3;
// The longest a stopping server waits for a readiness probe still in flight (~Server): far
// beyond any store deadline a probe can run into.
inline constexpr auto kProbeDrainLimit = std::chrono::seconds(30);
// How often the status board is sampled and this instance's record published (status.h).
inline constexpr auto kStatusInterval = std::chrono::seconds(1);

// "host:port" of a listener, for the fleet: a wildcard address is replaced by the host's name.
inline std::string instance_address(const std::string& host, std::uint16_t port) {
  std::string h = host;
  if (h.empty() || h == "0.0.0.0" || h == "::" || h == "[::]") {
    std::array<char, 256> name{};
    h = ::gethostname(name.data(), name.size() - 1) == 0 ? std::string(name.data()) : "localhost";
  }
  return h + ":" + std::to_string(port);
}

// Connections the admin listener holds at once (a scraper or two, an operator's curl); beyond it
// they are refused as on the public listener. Public connections never count against it, so a
// flood there leaves /metrics reachable.
inline constexpr int kMaxAdminConnections = 64;
// After accept() fails for lack of descriptors (EMFILE), wait this long before trying again
// rather than spinning; connections in flight free descriptors meanwhile.
inline constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);
// Response bodies larger than this are written from the response, not copied behind its head;
// a connection's output buffer grown past it is freed after the answer.
inline constexpr std::size_t kBodyApartBytes = 16 * 1024;
// Beast's parser takes a chunk line (size and extensions) and a trailer section only whole from
// the read buffer, with no bound of its own: a client could grow the buffer without end, and a
// trailer field value over 65,533 bytes throws std::length_error out of Beast's read, where
// nothing can catch it (the process ends). While a body is read (and a response, upstream.cc),
// the buffer holds at most this much: past it, the read fails with buffer_overflow (400).
inline constexpr std::size_t kBodyReadBufferBytes = 64 * 1024;

// Sent to a connection over max_connections, before closing it.
inline constexpr std::string_view kOverCapacity =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
    "Connection: close\r\nRetry-After: 1\r\nContent-Length: 112\r\n\r\n"
    R"({"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections; retry shortly"})";
static_assert(kOverCapacity.size() - kOverCapacity.find("\r\n\r\n") - 4 == 112);

inline Timestamp now() { return SystemClock::instance().now(); }

inline config::IpAddress to_ip(const tcp::endpoint& ep) {
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
// lives only on the admin listener; the admin listener serves only /metrics, /healthz, /readyz,
// /v1/status, /dashboard and POST /v1/check (unless check_api is off).
inline bool hidden_on_listener(const Request& req, const config::Config& c, bool admin) {
  const std::string_view path = target_path(req);
  const bool metrics = path == "/metrics";
  return admin ? !(metrics || path == "/healthz" || path == "/readyz" || path == "/v1/status" ||
                   path == "/dashboard" || (path == "/v1/check" && c.check_api))
               : metrics;
}

// A listening socket on `where` (a host name is resolved once, here), run by `ioc`.
inline Result<std::unique_ptr<tcp::acceptor>> listen_on(asio::io_context& ioc,
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
inline int read_error_status(const boost::system::error_code& ec, bool started) {
  namespace he = beast::http;
  if (ec == he::error::header_limit) return 431;
  if (ec == he::error::body_limit) return 413;
  if (ec == beast::error::timeout) return started ? 408 : 0;
  if (ec == he::error::end_of_stream || ec == he::error::partial_message) return 0;
  if (ec.category() == he::make_error_code(he::error::bad_method).category()) return 400;
  return 0;  // reset, aborted (drain), ...
}

}  // namespace detail

using namespace detail;  // NOLINT: the implementation files share these helpers

// One server thread: its io_context, the configuration it serves, its upstream pool and its
// sessions. Everything but `ioc` is touched only on this thread.
struct Worker {
  struct SessionEntry {
    tcp::socket* socket = nullptr;
    bool idle = true;  // waiting for a request's first byte
    // When it began to wait, for idle_sweep(): one clock read per request, where a timer armed
    // and cancelled around every read cost ~10 % of a memory-store request's instructions.
    std::chrono::steady_clock::time_point idle_since{};
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
  Duration upstream_hold_timeout{};     // config's: how long a request answered 504 keeps its slots
  std::size_t max_response_memory = 0;  // the pool's (server.max_response_memory)
  std::atomic<std::size_t>* response_memory = nullptr;  // Impl::response_memory, every thread's
  std::thread thread;

  void set_runtime(std::shared_ptr<const Runtime> rt) {
    const config::Config& c = *rt->config;
    if (c.upstream != upstream_target || c.upstream_timeout != upstream_timeout ||
        c.server.max_response_memory != max_response_memory) {
      if (upstream) upstream->close_idle();
      upstream.reset();
      if (c.upstream) {
        UpstreamOptions o;
        o.target = *c.upstream;
        o.timeout = c.upstream_timeout;
        o.counters = upstream_counters;
        o.response_memory = response_memory;
        o.max_response_memory = c.server.max_response_memory;
        upstream = std::make_shared<UpstreamPool>(ioc.get_executor(), o);
      }
      upstream_target = c.upstream;
      upstream_timeout = c.upstream_timeout;
      max_response_memory = c.server.max_response_memory;
    }
    upstream_hold_timeout = c.upstream_hold_timeout;
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

  std::unique_ptr<StatusBoard> status_board;  // GET /v1/status (status.h); set by make()
  std::shared_ptr<Fleet> fleet;               // null: the fleet is this instance

  std::atomic<int> open_connections{0};  // on the public listener
  // Upstream exchanges held past their client's 504 (serve_holding), each keeping an upstream
  // connection open. A request is held only if fewer than server.max_connections were held when
  // it was sent, so the count can pass that by the requests in flight at that moment.
  std::atomic<int> held_exchanges{0};
  // Request bodies held in memory now, over every connection (server.max_body_memory): the
  // leases (util/memory_lease.h) of the requests whose bodies are being read or served.
  std::atomic<std::size_t> body_memory{0};
  // Upstream response bodies held in memory now, over every thread (server.max_response_memory):
  // the leases of the responses being read from the upstream or written to their clients.
  std::atomic<std::size_t> response_memory{0};
  std::atomic<int> admin_connections{0};  // on the admin listener
  std::atomic<bool> draining{false};
  std::atomic<bool> closing_idle{false};  // draining and past drain_delay
  std::atomic<bool> stopped{false};
  std::atomic<bool> started{false};
  std::size_t next_worker = 0;  // accept loop only

  std::mutex mutex;  // config, stop/wait
  std::condition_variable stopped_cv;

  explicit Impl(std::size_t threads) : metrics(threads) {}

  // Not the circuit breakers' state: one dead cluster master opens its breaker while the other
  // masters answer. Under load on that master's slots it reopens as soon as a probe closes it,
  // so every instance would leave the load balancer at once and the whole API would be down for
  // everyone. Whether the store answers at all is store_ok (the probe).
  bool ready() const {
    return !draining.load(std::memory_order_relaxed) && decider->store_answers();
  }

  std::shared_ptr<Runtime> build_runtime(std::shared_ptr<const config::Config> c) {
    auto rt = make_runtime(std::move(c));
    for (const config::PolicyConfig& pc : rt->config->policies) {
      rt->metric_ids.push_back(metrics.policy_id(pc.policy.name));
      if (pc.policy.is_concurrency()) metrics.declare_in_flight(rt->metric_ids.back());
    }
    return rt;
  }

  // ---- store -------------------------------------------------------------------------------

  // A callback-completed call as an awaitable, its result written into `out` (the awaiting
  // frame's: a result held here, and one more as the co_await's own value, would be two more
  // copies in frames). Server threads are bound to the store, so the callback comes on this
  // thread: inline (memory store) or later from the io_context (Redis). The coroutine is resumed
  // through post, never from inside the store's own completion. The callback owns the waiting
  // handler (the callee's callback types are move-only and inline: decide::OutcomeCallback,
  // decide::ProbeCallback), so nothing is allocated for either.
  template <typename T, typename Start>
  static awaitable<void> completion(T& out, Start start) {
    // A named initiation: g++ 12 destroys the temporaries of a co_await expression twice (this
    // one holds only references, which that cannot release).
    auto initiation = [&out, &start](auto handler) {
      start([&out, waiting = std::move(handler)](T r) mutable {
        out = std::move(r);
        asio::post(std::move(waiting));
      });
    };
    co_await asio::async_initiate<decltype(use_awaitable), void()>(initiation, use_awaitable);
  }

  // The deciding service's outcome for `r` (decider.h: the guard, on_store_error, the counting),
  // into `out`. `deny_cache_checked`: respond_now() found no cached denial for this request a
  // moment ago (Exchange::deny_cache_checked).
  awaitable<void> decide(Worker& w, const Route& r, const Runtime& rt, decide::Outcome& out,
                         bool deny_cache_checked = false);

  // Every second on thread 0: does the store answer? (for /readyz; also closes the breaker).
  // A store in this process always does.
  awaitable<void> probe_loop(Worker& w);

  // Every second on thread 0: samples the metrics into `status_board` and publishes this instance's
  // record to the fleet (status.h). Off the request path.
  awaitable<void> status_loop(Worker& w);
  // On every server thread: closes the connections that have waited for a request longer than
  // server.idle_timeout (read at each sweep, so a reload applies), a sweep every eighth of it
  // (between 10 ms and 1 s): each is closed between idle_timeout and idle_timeout plus a sweep.
  awaitable<void> idle_sweep(Worker& w);
  // The /v1/status document (the policy named by ?policy=, else the first, for last_decision).
  std::string render_status(const Request& req);

  // ---- requests ----------------------------------------------------------------------------

  // The upstream's response body keeps its share of response memory in `lease` (forward()),
  // for the caller to hold until the response is written.
  awaitable<Response> serve(Request& req, Worker& w, const tcp::endpoint& peer,
                            const std::string& path, util::MemoryLease& lease);
  // serve() for a request that holds concurrency slots (x.slots): the client is answered as
  // serve() answers it, 504 past upstream_timeout included, but the exchange with the upstream
  // goes on in a coroutine of its own, which keeps the slots until the upstream answers (or
  // upstream_hold_timeout after the request was sent): the request is at the upstream until then.
  // While server.max_connections exchanges are held, it is serve(): the slots go with the 504.
  struct Exchange;
  awaitable<Response> serve_holding(Request& req, Worker& w, const tcp::endpoint& peer,
                                    Exchange& x);

  // Renews a request's concurrency slots every renew_every() from the moment they are taken
  // until they are given back (the answer written, or the request abandoned), whatever the
  // request waits for meanwhile: its body, the upstream, the client reading the answer. Only
  // requests holding slots have one (a timer). Stops when dropped; never renews released slots.
  class SlotRenewal {
   public:
    SlotRenewal() = default;
    SlotRenewal(asio::io_context& ioc, decide::Slots* slots);
    SlotRenewal(SlotRenewal&& other) noexcept = default;
    SlotRenewal& operator=(SlotRenewal&& other) noexcept {
      if (this != &other) {
        stop();
        state_ = std::move(other.state_);
      }
      return *this;
    }
    SlotRenewal(const SlotRenewal&) = delete;
    SlotRenewal& operator=(const SlotRenewal&) = delete;
    ~SlotRenewal() { stop(); }
    void stop();

    struct State;

   private:
    std::shared_ptr<State> state_;
  };

  // A response and the rate-limit fields serialize_response() adds to it.
  struct Reply {
    Response response;
    HeaderFields fields;
    bool linger = false;   // the body was not read: after the answer, drop what still comes, close
    bool abandon = false;  // the client is gone: write nothing, close
    // The concurrency slots the request holds: given back once the answer has been written (or
    // could not be), when the session drops this Reply.
    std::unique_ptr<decide::Slots> slots;
    SlotRenewal renewal;  // of `slots`; declared after them: stopped before they are released
    // A plain answer (handler.h): its bytes are already in the session's output buffer, and
    // `response` is empty; keep_alive says whether the connection stays open after it.
    bool written = false;
    bool keep_alive = false;
    // The share of response memory of an upstream's response (server.max_response_memory):
    // given back when the session drops this Reply, the response written.
    util::MemoryLease response_memory;
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
    // The concurrency slots an allowed request took (decider.h), until its answer is written.
    std::unique_ptr<decide::Slots> slots;
    SlotRenewal renewal;  // of `slots` (decided()), until they are given back
    // respond_now() found no cached denial for `route`: respond() does not look again.
    bool deny_cache_checked = false;
    util::MemoryLease response_memory;  // of an upstream's `response` (serve()), until written
  };

  // While a request holding concurrency slots waits for the upstream: notices a client that
  // went away (it will never read the answer); respond() then abandons the request once the
  // upstream has answered (nothing is written), and only then gives the slots back. The
  // upstream exchange is not cut short: servers do not stop a handler when its connection
  // closes, so the request is at the upstream until it answers (or `upstream_timeout`), and
  // giving the slot back earlier let a client that sends and goes away have any number there.
  // A client that only half-closed (shut down its sending side, still reading) is not gone.
  // stop() ends the watch; it never outlives the session's socket.
  struct ClientWatch;
  std::shared_ptr<ClientWatch> watch_client(beast::tcp_stream& stream, unsigned http_version);
  static bool client_gone(const std::shared_ptr<ClientWatch>& watch);
  static void stop_watch(const std::shared_ptr<ClientWatch>& watch);

  // The connection a request arrives on: what reading its body needs, once it is to be served.
  struct Inbound {
    beast::tcp_stream& stream;
    beast::flat_buffer& buffer;
    RequestParser& parser;
    config::ServerLimits limits;
    std::size_t header_fields = 0;  // fields of the header section; more after the body: trailers
    std::string& out;               // the session's output buffer, for a plain answer
    // The body's share of body_memory (read_body()): held until the answer is written, when the
    // session's loop drops this Inbound (and, just after, the parser and the body with it).
    util::MemoryLease body = {};
  };

  // read_body(): read; the client is gone; the body ended with trailer fields. Else a status.
  static constexpr int kBodyRead = 0;
  static constexpr int kClientGone = -1;
  static constexpr int kTrailers = 1;

  // The body of a request that is to be served: "100 Continue" first when the client waits for
  // it, then the body (bounded by max_body_bytes and body_timeout). A body that ends with trailer
  // fields is refused: they arrive after the decision, outside the header section every rule
  // reads, and are never believed or forwarded (design §2.4). Before anything is read, the body
  // takes its share of body_memory (its Content-Length, or max_body_bytes when chunked): 503
  // when that would pass server.max_body_memory, so many clients each sending a large body
  // cannot hold more than that between them.
  awaitable<int> read_body(Inbound& in);

  // The functions below that answer write into `reply`, the session's, which they are given
  // fresh (default-constructed): built in place, not moved there.

  // The answer to a request whose body could not be read (read_body's result).
  void body_failed(Worker& w, int result, Reply& reply);

  // `admin`: the request came to the admin listener (admin_listen). The request is rewritten
  // into its canonical form (canonical.h) and routed on its header section alone.
  // `spare_identity`: a string the route may take for its identity's bytes (decide::Plan::spare).
  Exchange begin(Request& req, Worker& w, const config::IpAddress& peer_ip, bool admin,
                 std::string& spare_identity);

  // After the store's outcome: the answer (x.response), or true when the resource is to be
  // served with x.fields.
  bool decided(Request& req, Worker& w, Exchange& x, decide::Outcome so);
  // What decided() keeps of the outcome whichever way it is answered: the outcome's name for the
  // access log, the concurrency slots of a request that is served (`serve`), what it consumed.
  void settle(Worker& w, Exchange& x, decide::Outcome& so, bool serve);

  // A plain answer (handler.h: write_plain_answer()) with `headers` (empty for kServe), written
  // into `out`, counted and logged as end() counts and logs the others.
  void plain(const Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
             const RateLimitHeaders& headers, std::string& out, Reply& reply);
  // plain() for a decision with a verdict (what answer_decision() answers from it), settled.
  void plain_verdict(const Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                     decide::Outcome& so, std::string& out, Reply& reply);

  // A request that was allowed but is not served after all (its body could not be read): what it
  // consumed is given back, so a malformed or oversized body costs its client nothing.
  void give_back(Exchange& x);

  // `body_unread`: the request's body was not read (it was not served): the connection closes
  // after the answer.
  void end(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x, bool body_unread,
           Reply& reply);

  // `status` and `body_bytes`: the answer's (x.response is empty for a plain answer).
  void log_access(const Request& req, const tcp::endpoint& peer, const Exchange& x, int status,
                  std::size_t body_bytes);

  // The answer when nothing needs to wait: the routes that are their own answer; and, on a
  // memory store (which decides before returning) with the built-in resource, every request
  // without a body. Most requests of such a server take this path, with no coroutine frame of
  // their own, and most of those get a plain answer, written into `out`. False, `reply`
  // untouched: use respond().
  bool respond_now(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x, bool body_read,
                   std::string& out, Reply& reply);

  // Decide on the header section; read the body only for a request that is served (or a
  // /v1/check call whose caller may call), so a denied client never makes the server buffer one.
  // A request without a body to a server without an upstream gets a plain answer, in in.out.
  // The answer is left in `reply` (the session's): the frame of this coroutine, allocated for
  // every request a remote store decides, then holds no Reply of its own, and stays within the
  // 1,020 bytes Asio's per-thread cache recycles (a larger one is a new allocation every time,
  // and evicts a cached block that the next smaller frame then allocates again).
  awaitable<void> respond(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                          Inbound& in, Reply& reply);

  // After an error answer, before closing: stop sending and read (and drop) what the client is
  // still sending, for a bounded time and amount. Closing a socket with unread input makes the
  // kernel send a reset, which can destroy the answer before the client reads it.
  static awaitable<void> linger(beast::tcp_stream& stream);

  // Whether `buffer` holds a whole header section (or more of one than `limit`, which Beast
  // then answers 431): no error; need_more when it does not yet; bad_value when the section has
  // an obs-fold, a header line continued on the next one (RFC 9112 §5.2), which is refused. Beast
  // would unfold it into a space, which the RFC allows, but a proxy in front that reads the fold
  // differently ("Transfer-Encoding:\r\n chunked") would disagree with us about where the body
  // ends; a 400 leaves nothing to disagree about. `scanned`: the bytes already scanned without
  // finding the end (0 at first; updated).
  static boost::system::error_code scan_header(const beast::flat_buffer& buffer, std::size_t limit,
                                               std::size_t& scanned);

  // Reads until scan_header() says other than need_more, and returns what it says (or the read's
  // error). `scanned` as scan_header() left it.
  static awaitable<boost::system::error_code> read_whole_header(beast::tcp_stream& stream,
                                                                beast::flat_buffer& buffer,
                                                                std::size_t limit,
                                                                std::size_t scanned);

  // `admin`: accepted on the admin listener (admin_listen).
  awaitable<void> session(Worker& w, tcp::socket socket, bool admin);

  // ---- accepting ---------------------------------------------------------------------------

  // `listener` is `acceptor` or `admin_acceptor` (admin).
  awaitable<void> accept_loop(tcp::acceptor& listener, bool admin);

  // ---- lifecycle ---------------------------------------------------------------------------

  void run_worker(Worker& w);

  void close_idle_sessions(Worker& w);

  awaitable<void> drain_sequence(config::ServerLimits limits);

  void stop_all();
};

}  // namespace fg::http
