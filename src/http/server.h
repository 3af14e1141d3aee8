// server.h — `floodgate serve`: the HTTP/1.1 server of design §1 and §2.3.
//
// One io_context per thread (config.threads). One acceptor (on thread 0) hands each new
// connection to the next thread, round robin; a connection stays on its thread for its life, and
// so do the store connections it uses (a Redis store is bound to every server thread) and the
// upstream connections it proxies through (one pool per thread). The request path takes no lock.
//
// Each connection is a session (server.cc) that only reads, enforces limits and timeouts, and
// writes; every answer is computed by handler.h's pure functions. Keep-alive and pipelining:
// requests on one connection are answered in order. Limits (config.server): max_connections
// (more are answered 503 and closed), the header section (431), the body (413), a header
// timeout (408, closed), a body timeout, an idle keep-alive timeout, a write timeout (a client
// that never reads is closed). None of them affects other connections.
//
// Store calls: every decision has the store's own deadline (store_timeout); a circuit breaker
// answers at once while the store keeps failing, and lets one probe through now and then; a
// background probe (every second, over keys in several slots) tells /readyz whether any part of
// the store answers (a cluster with one master down still does), and closes the breaker when
// it does. Failures are answered by on_store_error (handler.h).
//
// Status (status.h, docs/status.md): once a second, off the request path, thread 0 samples the
// metrics into a status board for GET /v1/status and GET /dashboard, and hands this instance's
// record to the fleet (ServerOptions::fleet), which publishes it.
//
// Admin listener (config.admin_listen): a second listening socket for /metrics, which the
// public one then answers 404; /healthz and /readyz are on both (the load balancer reads the
// public one). It answers nothing else, has its own small connection limit (public connections
// never count against it), and closes with the public one on drain.
//
// Reload: reload() swaps the configuration on every thread between requests (a request in
// flight finishes with the configuration it started with). The fields that need a restart
// (config::restart_only_fields()) keep their old values, and reload() names them.
// Drain: drain() turns /readyz to 503 at once; after server.drain_delay it stops accepting and
// closes idle connections; requests in flight finish (their responses say Connection: close);
// when none is left, or after server.drain_timeout, the server stops and wait() returns.
//
// Thread safety: every public member may be called from any thread (signal handlers post here).
// Failure: make() answers kInvalidArgument for a store it cannot open and kUnavailable for an
// address it cannot listen on; once running, nothing fails the server: bad requests, dead
// stores and dead upstreams are HTTP answers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "floodgate/result.h"
#include "floodgate/store.h"

namespace fg::decide {
class Metrics;
}

namespace fg::http {

using decide::Metrics;
class Fleet;

struct ServerOptions {
  std::shared_ptr<const config::Config> config;
  // The store to decide with (app/wiring.h opens the one config->store names); null: a memory
  // store, when config->store is memory://. Tests pass fault-injecting stores here. A Redis store
  // is bound to every server thread.
  std::shared_ptr<Store> store;
  std::string version = "0.0.0";  // for floodgate_build_info
  // Where the instances of a fleet meet for GET /v1/status (status.h; app/fleet.h opens one on
  // a Redis store); null: the fleet is this instance.
  std::shared_ptr<Fleet> fleet;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> make(ServerOptions options);
  ~Server();  // stop() and join
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts the threads and accepting; returns at once.
  void start();
  // The port listened on (the chosen one when config.listen has port 0).
  std::uint16_t port() const;
  // The admin listener's port (config.admin_listen); 0 without one.
  std::uint16_t admin_port() const;

  // Applies `config` from the next request on; answers the fields that changed but need a
  // restart, kept at their old values (config::keep_restart_only_fields).
  std::vector<std::string> reload(std::shared_ptr<const config::Config> config);
  // Counts a reload that failed (the old config stays): floodgate_config_reloads_total.
  void reload_failed();

  void drain();  // idempotent
  void stop();   // now: open connections are closed
  void wait();   // until stopped (by drain or stop)
  bool draining() const;
  bool stopped() const;  // stop() was called, or a drain finished

  Metrics& metrics();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fg::http
