// exchange.cc — one request's orchestration: canonical form, route, outcome, resource, answer
// (server_impl.h).
#include "http/server_impl.h"

// g++ 12 warns that the frame of a coroutine defined outside its class (here respond()) is freed
// by a mismatched operator delete: it pairs Asio's awaitable_frame_base operator new/delete
// itself, and the warning is a false positive of its coroutine lowering (the same coroutines
// defined in the class body draw none).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace fg::http {

auto Server::Impl::decide(Worker& w, const Route& r, const Runtime& rt)
    -> awaitable<decide::Outcome> {
  // Not a coroutine itself: completion()'s frame is the only one (it holds `start`, whose
  // references are to objects that outlive the call).
  decide::Decider* d = decider.get();
  ThreadMetrics* shard = w.metrics;
  auto start = [d, &r, &rt, shard](auto done) { d->decide(rt, r, shard, std::move(done)); };
  return completion<decide::Outcome>(start);
}

auto Server::Impl::serve(Request& req, Worker& w, const tcp::endpoint& peer,
                         const std::string& path) -> awaitable<Response> {
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

auto Server::Impl::body_failed(Worker& w, int result) -> Reply {
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

auto Server::Impl::begin(Request& req, Worker& w, const config::IpAddress& peer_ip, bool admin)
    -> Exchange {
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
  if (x.route.kind == Route::Kind::kStatus) x.response = status_response(req, render_status(req));
  return x;
}

auto Server::Impl::decided(Request& req, Exchange& x, decide::Outcome so) -> bool {
  const Route& r = x.route;
  const Runtime& rt = *x.rt;
  Answer a = r.kind == Route::Kind::kCheck ? answer_check(req, r, rt, so)
                                           : answer_decision(req, r, rt, so);
  const Verdict* v = so.counting();
  x.outcome = so.degraded != decide::Degraded::kNo ? "degraded"
              : (v != nullptr && v->allowed)       ? "allowed"
                                                   : "denied";
  if (a.serve && x.route.takes_slots) x.slots = decider->hold(x.rt, x.route, so);
  if (so.verdict && so.verdict->allowed) x.consumed = std::move(*so.verdict);  // last use of `so`
  if (a.serve) {
    x.fields = std::move(a.fields);
    return true;
  }
  x.response = std::move(a.response);
  return false;
}

auto Server::Impl::give_back(Exchange& x) -> void {
  x.slots.reset();  // not served: its slots go back at once
  if (!x.consumed) return;
  decider->give_back(*x.rt, x.route, *x.consumed);
  x.consumed.reset();
}

auto Server::Impl::end(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                       bool body_unread) -> Reply {
  // The request's own runtime decides CORS and keep-alive; draining is read again (it may
  // have begun while this request waited).
  RequestContext done_ctx = x.ctx;
  done_ctx.draining = draining.load(std::memory_order_relaxed);
  prepare(x.response, req, *x.rt, x.fields, done_ctx);
  if (body_unread) x.response.keep_alive(false);
  w.metrics->on_request(static_cast<int>(x.response.result_int()));
  if (x.rt->config->access_log) log_access(req, peer, x);
  return Reply{std::move(x.response), std::move(x.fields), body_unread, false, std::move(x.slots)};
}

auto Server::Impl::log_access(const Request& req, const tcp::endpoint& peer, const Exchange& x)
    -> void {
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

auto Server::Impl::respond_now(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                               bool body_read) -> std::optional<Reply> {
  switch (x.route.kind) {
    case Route::Kind::kReply:
    case Route::Kind::kMetrics:
    case Route::Kind::kStatus:
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

auto Server::Impl::respond(Request& req, Worker& w, const tcp::endpoint& peer, Exchange& x,
                           Inbound& in) -> awaitable<Reply> {
  bool serve_it = false;
  switch (x.route.kind) {
    case Route::Kind::kReply:
    case Route::Kind::kMetrics:
    case Route::Kind::kStatus:
    case Route::Kind::kCheck:  // only after kCheckCaller, below
      break;
    case Route::Kind::kServe:
      serve_it = true;
      break;
    case Route::Kind::kDecide: {
      decide::Outcome so = co_await decide(w, x.route, *x.rt);
      serve_it = decided(req, x, std::move(so));
      break;
    }
    case Route::Kind::kCheckCaller: {
      if (!x.route.charges.empty()) {
        decide::Outcome caller = co_await decide(w, x.route, *x.rt);
        if (!decided(req, x, std::move(caller))) {
          break;  // the caller is over its own limit: 429 (or 503), body unread
        }
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
      decide::Outcome checked = co_await decide(w, x.route, *x.rt);
      decided(req, x, std::move(checked));  // answer_check: never serves
      break;
    }
  }
  if (serve_it) {
    const int got = co_await read_body(in);
    if (got != kBodyRead) {
      give_back(x);
      co_return body_failed(w, got);
    }
    if (w.upstream) {
      std::shared_ptr<ClientWatch> watch;
      if (x.slots) watch = watch_client(w, in.stream, x.slots.get());
      x.response = co_await serve(req, w, peer, x.route.path);
      if (watch) stop_watch(watch);
    } else {
      x.response = demo_resource(req, x.route.path);  // without serve()'s coroutine frame
    }
  }
  Reply reply = end(req, w, peer, x, !in.parser.is_done());
  co_return reply;
}

struct Server::Impl::ClientWatch {
  tcp::socket* socket = nullptr;  // null once stopped
  decide::Slots* slots = nullptr;
  asio::steady_timer renew_timer;
  explicit ClientWatch(asio::io_context& ioc) : renew_timer(ioc) {}
};

namespace {

void watch_readable(std::shared_ptr<Server::Impl::ClientWatch> watch);

void on_readable(std::shared_ptr<Server::Impl::ClientWatch> watch,
                 const boost::system::error_code& ec) {
  if (watch->socket == nullptr || ec == asio::error::operation_aborted) return;
  bool gone = static_cast<bool>(ec);
  if (!gone) {
    // Readable: the end of the stream (the client closed), a reset, or the next pipelined
    // request. A peek tells them apart without taking any byte from the session.
    char byte = 0;
    boost::system::error_code pec;
    const std::size_t n =
        watch->socket->receive(asio::buffer(&byte, 1), tcp::socket::message_peek, pec);
    if (pec == asio::error::would_block || pec == asio::error::try_again) {
      return watch_readable(std::move(watch));
    }
    gone = pec || n == 0;
    if (!gone) return;  // more requests are coming: the client is still there; stop watching
  }
  watch->slots->release();
}

void watch_readable(std::shared_ptr<Server::Impl::ClientWatch> watch) {
  tcp::socket& socket = *watch->socket;
  socket.async_wait(tcp::socket::wait_read,
                    [watch = std::move(watch)](const boost::system::error_code& ec) mutable {
                      on_readable(std::move(watch), ec);
                    });
}

void renew_later(std::shared_ptr<Server::Impl::ClientWatch> watch) {
  asio::steady_timer& timer = watch->renew_timer;
  timer.expires_after(watch->slots->renew_every());
  timer.async_wait([watch = std::move(watch)](const boost::system::error_code& ec) mutable {
    if (ec || watch->socket == nullptr) return;
    watch->slots->renew();
    renew_later(std::move(watch));
  });
}

}  // namespace

auto Server::Impl::watch_client(Worker& w, beast::tcp_stream& stream, decide::Slots* slots)
    -> std::shared_ptr<ClientWatch> {
  auto watch = std::make_shared<ClientWatch>(w.ioc);
  watch->socket = &stream.socket();
  watch->slots = slots;
  watch_readable(watch);
  renew_later(watch);
  return watch;
}

void Server::Impl::stop_watch(const std::shared_ptr<ClientWatch>& watch) {
  boost::system::error_code ignored;
  tcp::socket* socket = watch->socket;
  watch->socket = nullptr;
  // Nothing else waits on the socket while the upstream answers: this cancels the watch alone.
  if (socket != nullptr) socket->cancel(ignored);
  watch->renew_timer.cancel();
}

}  // namespace fg::http
