// server.h — `floodgate rls`'s listeners around one Service (service.h):
//
//   GRPC_HOST:GRPC_PORT    envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit and
//                          grpc.health.v1.Health (services "ratelimit" and "")
//   HOST:PORT              POST /json (the same call as JSON: 200, 429 when OVER_LIMIT, 400 for
//                          a request that cannot be decided) and GET /healthcheck ("OK" or 500)
//   DEBUG_HOST:DEBUG_PORT  GET /rlconfig (the loaded rules, one per line) and GET /metrics
//                          (Prometheus: upstream's per-rule and service counters)
//
// and a watcher that reloads the runtime directory when it changes (polled once a second: names,
// sizes and modification times), keeping the old configuration when the new one is refused.
//
// Port 0 picks a free port; the ports chosen are logged and returned by the accessors. The HTTP
// listeners run on one thread of their own (they are the operations side; Envoy speaks gRPC).
// Thread safety: start() and stop() from one thread.
#pragma once

#include <memory>
#include <string>

#include "floodgate/result.h"
#include "rls/service.h"
#include "rls/settings.h"

namespace fg::rls {

class Server {
 public:
  // `service` must outlive the server. Nothing listens before start().
  Server(const Settings& settings, Service& service);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener and starts serving; kUnavailable naming the address that could not be
  // bound.
  Result<void> start();
  // Marks the health services NOT_SERVING (what a load balancer sees while draining).
  void fail_health();
  // Stops every listener and the watcher; requests in flight complete.
  void stop();

  int grpc_port() const;
  int http_port() const;
  int debug_port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fg::rls
