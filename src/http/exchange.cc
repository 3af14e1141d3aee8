// exchange.cc — one request's orchestration: canonical form, route, outcome, resource, answer
// (server_impl.h).
#include <poll.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <optional>
#include <stdexcept>

#include "http/server_impl.h"

// g++ 12 warns that the frame of a coroutine defined outside its class (here respond()) is freed
// by a mismatched operator delete: it pairs Asio's awaitable_frame_base operator new/delete
// itself, and the warning is a false positive of its coroutine lowering (the same coroutines
// defined in the class body draw none).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace fg::http {
namespace {

// The text of a peer's address, for X-Forwarded-For and the access log. inet_ntop costs about
// 1,700 instructions, 3.5 % of a proxied request; behind a load balancer nearly every
// request comes from one of a few addresses, so each thread keeps the last one's text. The
// reference is valid until the thread's next call.
const std::string& address_text(const asio::ip::address& address) {
  thread_local asio::ip::address last;
  thread_local std::string text;
  if (text.empty() || address != last) {
    text = address.to_string();
    last = address;
  }
  return text;
}

}  // namespace

auto Server::Impl::decide(Worker& w, const Route& r, const Runtime& rt, decide::Outcome& out,
                          bool deny_cache_checked) -> awaitable<void> {
  // Not a coroutine itself: completion()'s frame is the only one (it holds `start`, whose
  // references are to objects that outlive the call).
  decide::Decider* d = decider.get();
  ThreadMetrics* shard = w.metrics;
  auto start = [d, &r, &rt, shard, deny_cache_checked](auto done) {
    d->decide(rt, r, shard, std::move(done), deny_cache_checked);
  };
  return completion(out, start);
}

namespace {

// What the client is answered for the upstream's result `r` (counted in w's metrics): the
// upstream's response without its hop-by-hop fields (forward()), or 502/503/504.
Response answer_of(Worker& w, unsigned version, Result<Response>& r) {
  if (!r) {
    if (r.error().code == ErrorCode::kResourceExhausted) {
      w.metrics->on_upstream(UpstreamResult::kNoMemory);
      Response res = problem_response(version, 503,
                                      "the server holds as many upstream responses as it may "
                                      "(server.max_response_memory); retry shortly");
      res.set(beast::http::field::retry_after, "1");
      return res;
    }
    const bool timeout = r.error().code == ErrorCode::kDeadlineExceeded;
    w.metrics->on_upstream(timeout ? UpstreamResult::kTimeout : UpstreamResult::kUnavailable);
    return problem_response(
        version, timeout ? 504 : 502,
        timeout ? "the upstream did not answer in time" : "the upstream could not be reached");
  }
  w.metrics->on_upstream(UpstreamResult::kOk);
  return std::move(*r);
}

}  // namespace

namespace {

// make_upstream_request() for `req` from `peer`, or nullopt when a field it composes does not fit
// a field: Beast keeps a field's value in at most 65,535 bytes and throws std::length_error for a
// longer one. X-Forwarded-For joins the client's fields of that name and adds its address; with
// max_header_bytes raised past 64 KiB, the client's can be that long.
std::optional<Request> upstream_request(const Request& req, const tcp::endpoint& peer,
                                        const config::HostPort& target) {
  try {
    return make_upstream_request(req, address_text(peer.address()), target);
  } catch (const std::length_error&) {
    return std::nullopt;
  }
}

Response forwarded_too_long(const Request& req) {
  return problem_response(req.version(), 431,
                          "X-Forwarded-For, with this client's address added, would be longer "
                          "than a field may be (65,533 bytes)");
}

}  // namespace

auto Server::Impl::serve(Request& req, Worker& w, const tcp::endpoint& peer,
                         const std::string& path, util::MemoryLease& lease) -> awaitable<Response> {
  if (!w.upstream) co_return demo_resource(req, path);
  auto pool = w.upstream;  // keeps the pool alive across a reload
  // The request is in its canonical form (canonical.h): the upstream gets exactly the method
  // and target that were decided on.
  std::optional<Request> up = upstream_request(req, peer, *w.upstream_target);
  if (!up) co_return forwarded_too_long(req);
  Result<Response> r = co_await pool->forward(std::move(*up), std::nullopt, &lease);
  co_return answer_of(w, req.version(), r);
}

namespace {

// One upstream exchange of serve_holding(), shared by the request's session and the coroutine
// that runs it.
struct HeldExchange {
  explicit HeldExchange(asio::io_context& ioc) : answer(ioc) {}
  asio::steady_timer answer;  // upstream_timeout; cancelled once the upstream has answered
  std::optional<Result<Response>> result;  // the upstream's answer, for the client
  util::MemoryLease lease;                 // its body's share of response memory
  bool client_answered = false;            // 504 sent: the slots below are held here
  std::atomic<int>* held_count = nullptr;  // Impl::held_exchanges, given back once answered
  std::unique_ptr<decide::Slots> slots;
  Server::Impl::SlotRenewal renewal;  // of `slots`; stopped before they are released
};

asio::awaitable<void> run_held(std::shared_ptr<UpstreamPool> pool, Request up, Duration timeout,
                               std::shared_ptr<HeldExchange> held) {
  Result<Response> r = co_await pool->forward(std::move(up), timeout, &held->lease);
  if (held->client_answered) {  // answered 504 already: only now are the slots free
    held->lease.release();      // the response is dropped unread
    held->renewal.stop();
    held->slots.reset();
    held->held_count->fetch_sub(1, std::memory_order_relaxed);
    co_return;
  }
  held->result = std::move(r);
  held->answer.cancel();
}

}  // namespace

auto Server::Impl::serve_holding(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x)
    -> awaitable<Response> {
  if (held_exchanges.load(std::memory_order_relaxed) >= x.rt->config->server.max_connections) {
    co_return co_await serve(req, w, peer, x.route.path, x.response_memory);
  }
  std::optional<Request> up = upstream_request(req, peer, *w.upstream_target);
  if (!up) co_return forwarded_too_long(req);
  auto held = std::make_shared<HeldExchange>(w.ioc);
  asio::co_spawn(w.ioc, run_held(w.upstream, std::move(*up), w.upstream_hold_timeout, held),
                 asio::detached);
  held->answer.expires_after(w.upstream_timeout);
  boost::system::error_code ec;
  co_await held->answer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  // The result decides, not `ec`: the timer may have expired as the answer came.
  if (!held->result) {
    held->client_answered = true;
    held->held_count = &held_exchanges;
    held_exchanges.fetch_add(1, std::memory_order_relaxed);
    held->slots = std::move(x.slots);
    held->renewal = std::move(x.renewal);
    w.metrics->on_upstream(UpstreamResult::kTimeout);
    co_return problem_response(req.version(), 504, "the upstream did not answer in time");
  }
  x.response_memory = std::move(held->lease);
  co_return answer_of(w, req.version(), *held->result);
}

auto Server::Impl::body_failed(Worker& w, int result, Reply& reply) -> void {
  if (result == kClientGone) {
    reply.abandon = true;
    return;
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
}

auto Server::Impl::begin(Request& req, Worker& w, const config::IpAddress& peer_ip, bool admin,
                         std::string& spare_identity) -> Exchange {
  Exchange x;
  x.started_at = std::chrono::steady_clock::now();
  x.rt = w.runtime;
  x.route.spare = std::move(spare_identity);
  x.ctx = RequestContext{peer_ip, ready(), draining.load(std::memory_order_relaxed), admin};
  if (auto refused = canonicalize(req, x.rt->single_fields)) {
    x.route.reply = problem_response(req.version(), 400, *refused);
  } else if ((admin || x.rt->config->admin_listen) &&
             hidden_on_listener(req, *x.rt->config, admin)) {
    x.route.reply = problem_response(req.version(), 404, "not found");
  } else {
    x.ctx.canonical = true;
    route_into(req, *x.rt, x.ctx, x.route);
  }
  // Routes that are their own answer need neither the store nor the resource.
  if (x.route.kind == Route::Kind::kReply) x.response = std::move(x.route.reply);
  if (x.route.kind == Route::Kind::kMetrics) x.response = metrics_response(req, metrics.render());
  if (x.route.kind == Route::Kind::kStatus) x.response = status_response(req, render_status(req));
  return x;
}

auto Server::Impl::decided(Request& req, Worker& w, Exchange& x, decide::Outcome so) -> bool {
  const Route& r = x.route;
  const Runtime& rt = *x.rt;
  Answer a = r.kind == Route::Kind::kCheck ? answer_check(req, r, rt, so)
                                           : answer_decision(req, r, rt, so);
  settle(w, x, so, a.serve);
  if (a.serve) {
    x.fields = std::move(a.fields);
    return true;
  }
  x.response = std::move(a.response);
  return false;
}

auto Server::Impl::settle(Worker& w, Exchange& x, decide::Outcome& so, bool serve) -> void {
  const Verdict* v = so.counting();
  x.outcome = so.degraded != decide::Degraded::kNo ? "degraded"
              : (v != nullptr && v->allowed)       ? "allowed"
                                                   : "denied";
  if (serve && x.route.takes_slots) {
    x.slots = decider->hold(x.rt, x.route, so);
    // Renewed from now on: reading the body and writing the answer may take longer than a lease.
    if (x.slots) x.renewal = SlotRenewal(w.ioc, x.slots.get());
  }
  if (so.verdict && so.verdict->allowed) x.consumed = std::move(*so.verdict);  // last use of `so`
}

auto Server::Impl::plain(const Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                         const RateLimitHeaders& headers, std::string& out, Reply& reply) -> void {
  // Draining is read now, as end() reads it.
  const PlainAnswer a =
      write_plain_answer(out, req, x.route, headers, draining.load(std::memory_order_relaxed));
  w.metrics->on_request(a.status);
  if (x.rt->config->access_log) log_access(req, peer, x, a.status, a.body_bytes);
  reply.written = true;
  reply.keep_alive = a.keep_alive;
  reply.slots = std::move(x.slots);
  reply.renewal = std::move(x.renewal);
}

auto Server::Impl::plain_verdict(const Request& req, Worker& w, const tcp::endpoint& peer,
                                 Exchange& x, decide::Outcome& so, std::string& out, Reply& reply)
    -> void {
  const RateLimitHeaders headers = verdict_headers(x.route, *x.rt, *so.verdict);
  settle(w, x, so, !headers.denied);
  plain(req, w, peer, x, headers, out, reply);
}

auto Server::Impl::give_back(Exchange& x) -> void {
  x.renewal.stop();
  x.slots.reset();  // not served: its slots go back at once
  if (!x.consumed) return;
  decider->give_back(*x.rt, x.route, *x.consumed);
  x.consumed.reset();
}

auto Server::Impl::end(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                       bool body_unread, Reply& reply) -> void {
  // The request's own runtime decides CORS and keep-alive; draining is read again (it may
  // have begun while this request waited).
  RequestContext done_ctx = x.ctx;
  done_ctx.draining = draining.load(std::memory_order_relaxed);
  prepare(x.response, req, *x.rt, x.fields, done_ctx);
  if (body_unread) x.response.keep_alive(false);
  w.metrics->on_request(static_cast<int>(x.response.result_int()));
  if (x.rt->config->access_log) {
    log_access(req, peer, x, static_cast<int>(x.response.result_int()),
               req.method() == beast::http::verb::head ? 0 : x.response.body().size());
  }
  reply.response = std::move(x.response);
  reply.fields = std::move(x.fields);
  reply.linger = body_unread;
  reply.slots = std::move(x.slots);
  reply.renewal = std::move(x.renewal);
  reply.response_memory = std::move(x.response_memory);
}

auto Server::Impl::log_access(const Request& req, const tcp::endpoint& peer, const Exchange& x,
                              int status, std::size_t body_bytes) -> void {
  const Route& r = x.route;
  const std::string& peer_text = address_text(peer.address());
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
  e.status = status;
  e.bytes_sent = body_bytes;
  e.duration =
      std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - x.started_at);
  e.policy = policy;
  e.outcome = x.outcome;
  if (ua != req.end()) e.user_agent = std::string_view(ua->value().data(), ua->value().size());
  access_log.write(format_access_log(e));
}

auto Server::Impl::respond_now(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                               bool body_read, std::string& out, Reply& reply) -> bool {
  switch (x.route.kind) {
    case Route::Kind::kReply:
    case Route::Kind::kMetrics:
    case Route::Kind::kStatus:
      end(req, w, peer, x, !body_read, reply);  // answered by begin()
      return true;
    case Route::Kind::kServe:
    case Route::Kind::kDecide: {
      if (!inline_store && x.route.kind == Route::Kind::kDecide) {
        // A client the deny cache holds as over its limit is answered here, as respond() would
        // answer that denial, without respond()'s coroutine: the common request of a client
        // over its limit on a remote store.
        std::optional<decide::Outcome> so = decider->cached_denial(*x.rt, x.route, w.metrics);
        if (!so) {
          x.deny_cache_checked = true;
          return false;
        }
        if (!w.upstream && body_read && plain_answer_applies(req, x.route, *x.rt)) {
          plain_verdict(req, w, peer, x, *so, out, reply);
          return true;
        }
        // A denial is never served (answer_decision()): nothing to read, forward or await.
        decided(req, w, x, std::move(*so));
        end(req, w, peer, x, !body_read, reply);
        return true;
      }
      if (!inline_store || w.upstream || !body_read) return false;
      const bool plain_answer = plain_answer_applies(req, x.route, *x.rt);
      if (x.route.kind == Route::Kind::kServe) {
        if (plain_answer) {
          plain(req, w, peer, x, RateLimitHeaders{}, out, reply);
          return true;
        }
        x.response = demo_resource(req, x.route.path);
        end(req, w, peer, x, false, reply);
        return true;
      }
      decide::Outcome so = decider->decide_now(*x.rt, x.route, w.metrics);
      if (plain_answer && so.verdict) {
        plain_verdict(req, w, peer, x, so, out, reply);
        return true;
      }
      if (decided(req, w, x, std::move(so))) x.response = demo_resource(req, x.route.path);
      end(req, w, peer, x, false, reply);
      return true;
    }
    case Route::Kind::kCheckCaller:
    case Route::Kind::kCheck:
      break;
  }
  return false;
}

auto Server::Impl::respond(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                           Inbound& in, Reply& reply) -> awaitable<void> {
  // The answer goes into the session's `reply`, and one Outcome serves every decision: what
  // this frame holds stays under the 1,020 bytes Asio's per-thread cache keeps (server_impl.h).
  decide::Outcome so;
  bool serve_it = false;
  switch (x.route.kind) {
    case Route::Kind::kReply:
    case Route::Kind::kMetrics:
    case Route::Kind::kStatus:
    case Route::Kind::kCheck:  // only after kCheckCaller, below
      break;
    case Route::Kind::kServe:
      if (!w.upstream && in.parser.is_done() && plain_answer_applies(req, x.route, *x.rt)) {
        plain(req, w, peer, x, RateLimitHeaders{}, in.out, reply);
        co_return;
      }
      serve_it = true;
      break;
    case Route::Kind::kDecide: {
      co_await decide(w, x.route, *x.rt, so, x.deny_cache_checked);
      // As respond_now() answers when the store decides at once; the upstream is looked at after
      // the store's answer, as serve() would (a reload may have changed it meanwhile).
      if (so.verdict && !w.upstream && in.parser.is_done() &&
          plain_answer_applies(req, x.route, *x.rt)) {
        plain_verdict(req, w, peer, x, so, in.out, reply);
        co_return;
      }
      serve_it = decided(req, w, x, std::move(so));
      break;
    }
    case Route::Kind::kCheckCaller: {
      if (!x.route.charges.empty()) {
        co_await decide(w, x.route, *x.rt, so);  // the caller's own limit
        if (!decided(req, w, x, std::move(so))) {
          break;  // the caller is over its own limit: 429 (or 503), body unread
        }
      }
      x.fields.clear();  // the answer's fields are the checked key's
      const int got = co_await read_body(in);
      if (got != kBodyRead) {
        give_back(x);
        body_failed(w, got, reply);
        co_return;
      }
      x.consumed.reset();
      x.route = check_route(req, *x.rt);
      if (x.route.kind == Route::Kind::kReply) {
        x.response = std::move(x.route.reply);
        break;
      }
      co_await decide(w, x.route, *x.rt, so);  // the checked key
      decided(req, w, x, std::move(so));       // answer_check: never serves
      break;
    }
  }
  if (serve_it) {
    const int got = co_await read_body(in);
    if (got != kBodyRead) {
      give_back(x);
      body_failed(w, got, reply);
      co_return;
    }
    if (w.upstream) {
      std::shared_ptr<ClientWatch> watch;
      if (x.slots) watch = watch_client(in.stream, req.version());
      // Not a conditional expression: built by g++ 12, the response of a co_await in one was
      // freed wrongly (ASan: a free of memory malloc() had not given).
      if (x.slots) {
        x.response = co_await serve_holding(req, w, peer, x);
      } else {
        x.response = co_await serve(req, w, peer, x.route.path, x.response_memory);
      }
      if (watch) {
        stop_watch(watch);
        if (client_gone(watch)) {  // the upstream has answered: only now are the slots free
          x.renewal.stop();
          x.slots.reset();
          body_failed(w, kClientGone, reply);  // abandon: write nothing
          co_return;
        }
      }
    } else {
      x.response = demo_resource(req, x.route.path);  // without serve()'s coroutine frame
    }
  }
  end(req, w, peer, x, !in.parser.is_done(), reply);
}

struct Server::Impl::ClientWatch {
  tcp::socket* socket = nullptr;  // null once stopped
  unsigned http_version = 11;
  bool probed = false;  // an interim response was sent to tell a half-close from a close
  // Once probed: when to look for the reset again (the socket stays readable: the end of the
  // stream). Doubles from kFirstRecheck to kMaxRecheck.
  std::optional<asio::steady_timer> recheck;
  std::chrono::milliseconds recheck_after{0};
  bool gone = false;  // the client went away: its answer is not written
};

struct Server::Impl::SlotRenewal::State {
  asio::steady_timer timer;
  decide::Slots* slots = nullptr;  // null once stopped
  State(asio::io_context& ioc, decide::Slots* s) : timer(ioc), slots(s) {}
};

namespace {

// Sent (once) to a client whose end of the stream arrived while its request is at the upstream:
// a client that only half-closed reads it as an interim response (RFC 9110 §15.2: a client must
// accept unexpected 1xx responses); a client that closed answers it with a reset.
constexpr std::string_view kProbe = "HTTP/1.1 100 Continue\r\n\r\n";

constexpr std::chrono::milliseconds kFirstRecheck{5};
constexpr std::chrono::milliseconds kMaxRecheck{500};

void watch_socket(std::shared_ptr<Server::Impl::ClientWatch> watch);
void recheck_later(std::shared_ptr<Server::Impl::ClientWatch> watch);

// The slots stay taken: the request is at the upstream until it answers (watch_client).
void client_left(Server::Impl::ClientWatch& watch) { watch.gone = true; }

void on_event(std::shared_ptr<Server::Impl::ClientWatch> watch,
              const boost::system::error_code& ec) {
  if (watch->socket == nullptr || ec == asio::error::operation_aborted) return;
  if (ec) return client_left(*watch);
  // Readable (or, once probed, an error): the end of the stream, a reset, or the next
  // pipelined request. A peek tells them apart without taking any byte from the session.
  char byte = 0;
  boost::system::error_code pec;
  const std::size_t n =
      watch->socket->receive(asio::buffer(&byte, 1), tcp::socket::message_peek, pec);
  if (pec == asio::error::would_block || pec == asio::error::try_again) {
    return watch_socket(std::move(watch));
  }
  if (pec && pec != asio::error::eof) return client_left(*watch);  // reset: the client is gone
  if (!pec && n > 0) return;  // more requests are coming: the client is still there; stop watching
  // The end of the stream: the client shut down its sending side. It may still read the answer
  // (a half-close) or be gone (a close): only a write tells. HTTP/1.0 clients may not be sent
  // a 1xx: the end of their stream counts as gone.
  if (watch->probed) {
    // Once the end of the stream has been read, a read reports it before any reset: poll()
    // tells (a reset closes the connection: POLLHUP, with POLLERR until the error is read).
    pollfd p{watch->socket->native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0) {
      return client_left(*watch);
    }
    return recheck_later(std::move(watch));  // no reset yet
  }
  if (watch->http_version < 11) return client_left(*watch);
  boost::system::error_code wec;
  const std::size_t sent = watch->socket->write_some(asio::buffer(kProbe), wec);
  if (wec == asio::error::would_block || wec == asio::error::try_again) {
    return;  // the client is not reading yet: keep the slots until the answer is written
  }
  // Part of it only: the stream is broken anyway.
  if (wec || sent != kProbe.size()) return client_left(*watch);
  watch->probed = true;
  watch->recheck.emplace(watch->socket->get_executor());
  recheck_later(std::move(watch));
}

void recheck_later(std::shared_ptr<Server::Impl::ClientWatch> watch) {
  watch->recheck_after = watch->recheck_after.count() == 0
                             ? kFirstRecheck
                             : std::min(watch->recheck_after * 2, kMaxRecheck);
  asio::steady_timer& timer = *watch->recheck;
  timer.expires_after(watch->recheck_after);
  timer.async_wait([watch = std::move(watch)](const boost::system::error_code& ec) mutable {
    on_event(std::move(watch), ec);
  });
}

void watch_socket(std::shared_ptr<Server::Impl::ClientWatch> watch) {
  tcp::socket& socket = *watch->socket;
  socket.async_wait(tcp::socket::wait_read,
                    [watch = std::move(watch)](const boost::system::error_code& ec) mutable {
                      on_event(std::move(watch), ec);
                    });
}

void renew_later(std::shared_ptr<Server::Impl::SlotRenewal::State> state) {
  asio::steady_timer& timer = state->timer;
  timer.expires_after(state->slots->renew_every());
  timer.async_wait([state = std::move(state)](const boost::system::error_code& ec) mutable {
    if (ec || state->slots == nullptr) return;
    state->slots->renew();
    renew_later(std::move(state));
  });
}

}  // namespace

Server::Impl::SlotRenewal::SlotRenewal(asio::io_context& ioc, decide::Slots* slots)
    : state_(std::make_shared<State>(ioc, slots)) {
  renew_later(state_);
}

void Server::Impl::SlotRenewal::stop() {
  if (!state_) return;
  state_->slots = nullptr;
  state_->timer.cancel();
  state_.reset();
}

auto Server::Impl::watch_client(beast::tcp_stream& stream, unsigned http_version)
    -> std::shared_ptr<ClientWatch> {
  auto watch = std::make_shared<ClientWatch>();
  watch->socket = &stream.socket();
  watch->http_version = http_version;
  watch_socket(watch);
  return watch;
}

void Server::Impl::stop_watch(const std::shared_ptr<ClientWatch>& watch) {
  boost::system::error_code ignored;
  tcp::socket* socket = watch->socket;
  watch->socket = nullptr;
  // Nothing else waits on the socket while the upstream answers: this cancels the watch alone.
  if (socket != nullptr) socket->cancel(ignored);
  if (watch->recheck) watch->recheck->cancel();
}

bool Server::Impl::client_gone(const std::shared_ptr<ClientWatch>& watch) { return watch->gone; }

}  // namespace fg::http
