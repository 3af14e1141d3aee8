#include "http/server.h"

#include <algorithm>

#include "http/server_impl.h"

namespace fg::http {

auto Server::Impl::probe_loop(Worker& w) -> awaitable<void> {
  asio::steady_timer timer(w.ioc);
  int failed_rounds = 0;  // probe rounds in a row in which no part of the store answered
  while (!stopped.load()) {
    if (!inline_store) {
      decide::Decider& d = *decider;
      auto start = [&d](auto done) { d.probe(std::move(done)); };
      Result<void> r;
      co_await completion(r, start);
      failed_rounds = r.has_value() ? 0 : failed_rounds + 1;
      const bool answers = failed_rounds < kProbeFailuresBeforeNotReady;
      if (answers != d.store_answers()) {
        d.set_store_answers(answers);
        if (answers) {
          spdlog::info("store {} answers again; ready", d.store().kind());
        } else {
          spdlog::warn("store {} has not answered {} probes in a row ({}); /readyz says 503",
                       d.store().kind(), failed_rounds, r.error().to_string());
        }
      }
    }
    timer.expires_after(kProbeInterval);
    co_await timer.async_wait(kTuple);
  }
}

auto Server::Impl::status_loop(Worker& w) -> awaitable<void> {
  asio::steady_timer timer(w.ioc);
  while (!stopped.load()) {
    const Timestamp at = now();
    InstanceFlags flags;
    flags.ready = ready();
    flags.draining = draining.load(std::memory_order_relaxed);
    flags.circuit_open = decider->circuit_open();
    flags.open_circuits = decider->open_circuits();
    status_board->sample(at, metrics.totals(), *w.runtime, flags,
                         decider->top_denied().top(at, kTopDeniedShown));
    if (fleet) fleet->publish(status_board->info().id, status_board->record());
    timer.expires_after(kStatusInterval);
    co_await timer.async_wait(kTuple);
  }
}

auto Server::Impl::idle_sweep(Worker& w) -> awaitable<void> {
  asio::steady_timer timer(w.ioc);
  while (!stopped.load()) {
    const Duration idle = w.runtime->config->server.idle_timeout;
    timer.expires_after(
        std::clamp<Duration>(idle / 8, std::chrono::milliseconds(10), std::chrono::seconds(1)));
    co_await timer.async_wait(kTuple);
    const auto at = std::chrono::steady_clock::now();
    const Duration limit = w.runtime->config->server.idle_timeout;
    for (Worker::SessionEntry* e : w.sessions) {
      if (!e->idle || at - e->idle_since < limit) continue;
      e->idle = false;  // cancelled once; the session ends at its read's completion
      boost::system::error_code ignored;
      e->socket->cancel(ignored);
    }
  }
}

auto Server::Impl::render_status(const Request& req) -> std::string {
  std::shared_ptr<const config::Config> c;
  {
    std::lock_guard lock(mutex);
    c = config;
  }
  // The configuration's policies and their metric ids: this thread's runtime would do, but the
  // request may come on any thread; the ids are stable per name (Metrics::policy_id).
  const std::string wanted = status_policy_param(req);
  std::optional<LastDecisionFields> last;
  for (const config::PolicyConfig& pc : c->policies) {
    if (!wanted.empty() && pc.policy.name != wanted) continue;
    if (auto d = metrics.last_decision(metrics.policy_id(pc.policy.name))) {
      const auto index = static_cast<std::size_t>(&pc - c->policies.data());
      last = last_decision_fields(pc.policy, d->first, d->second,
                                  config::header_style(*c, false, index));
    }
    break;
  }
  if (fleet) {
    const FleetView view = fleet->view();
    return status_board->render(now(), &view, last);
  }
  return status_board->render(now(), nullptr, last);
}

auto Server::Impl::run_worker(Worker& w) -> void {
  wired.bind_thread(w.ioc);
  w.ioc.run();
  wired.unbind_thread();
}

auto Server::Impl::close_idle_sessions(Worker& w) -> void {
  for (Worker::SessionEntry* e : w.sessions) {
    boost::system::error_code ignored;
    if (e->idle) e->socket->cancel(ignored);
  }
}

auto Server::Impl::drain_sequence(config::ServerLimits limits) -> awaitable<void> {
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
  // An exchange held past its client's 504 keeps its concurrency slots until the upstream
  // answers it, and is waited for like a connection: stopping earlier would give its slots back
  // while the upstream still runs the request, and another instance could admit one more.
  const auto deadline = std::chrono::steady_clock::now() + limits.drain_timeout;
  const auto open = [this] { return open_connections.load() + admin_connections.load(); };
  const auto held = [this] { return held_exchanges.load(std::memory_order_relaxed); };
  while ((open() > 0 || held() > 0) && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(kTuple);
  }
  const int left = open();
  const int left_held = held();
  if (left > 0 || left_held > 0) {
    spdlog::warn(
        "drain timeout: closing {} connection(s) still open; {} exchange(s) held past their 504 "
        "let go of their concurrency slots while the upstream may still run them",
        left, left_held);
  } else {
    spdlog::info("drained: no connection left, no exchange held");
  }
  stop_all();
}

auto Server::Impl::stop_all() -> void {
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

Result<std::unique_ptr<Server>> Server::make(ServerOptions options) {
  if (!options.config) return fail(ErrorCode::kInvalidArgument, "no configuration");
  const config::Config& c = *options.config;
  const std::size_t threads = static_cast<std::size_t>(std::max(1, c.threads));
  auto impl = std::make_unique<Impl>(threads);

  if (options.store) {
    impl->wired = serve_store(std::move(options.store));
  } else if (c.store.kind == config::StoreKind::kMemory) {
    impl->wired = serve_store(make_memory_store(MemoryStoreOptions{.max_keys = c.memory.max_keys},
                                                SystemClock::instance()));
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
    w->response_memory = &impl->response_memory;
    w->set_runtime(rt);
    impl->workers.push_back(std::move(w));
  }
  std::vector<std::shared_ptr<const UpstreamCounters>> upstream_counters;
  for (const auto& w : impl->workers) upstream_counters.push_back(w->upstream_counters);
  add_upstream_metrics(impl->metrics, std::move(upstream_counters), &impl->held_exchanges,
                       &impl->response_memory);

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
  InstanceInfo info;
  info.version = options.version;
  info.store = std::string(store.kind());
  info.threads = static_cast<int>(threads);
  info.started_at = now();
  info.id = instance_address(c.listen.host, impl->port);
  info.address =
      c.admin_listen ? instance_address(c.admin_listen->host, impl->admin_port) : info.id;
  impl->status_board = std::make_unique<StatusBoard>(std::move(info));
  impl->fleet = std::move(options.fleet);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  // A readiness probe may still be answered on the store's own thread (a probe of several keys
  // goes on from there once the server thread has stopped): its callback uses the decider and
  // posts to thread 0's io_context, so both stay until it has run. The store's deadline bounds
  // the wait; past kProbeDrainLimit (a store that never answers) the server is destroyed anyway.
  const auto waited_from = std::chrono::steady_clock::now();
  while (impl_->decider && impl_->decider->probes_in_flight() > 0) {
    if (std::chrono::steady_clock::now() - waited_from > kProbeDrainLimit) {
      spdlog::warn("stopping with a readiness probe still unanswered by the store");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
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
  asio::co_spawn(home.ioc, s.status_loop(home), asio::detached);
  for (auto& w : s.workers) {
    Worker* wp = w.get();
    asio::co_spawn(w->ioc, s.idle_sweep(*wp), asio::detached);
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
