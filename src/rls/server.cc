// server.cc — the gRPC server (gRPC's callback API: a handler starts the decision, the store's
// completion finishes the call), the two HTTP listeners (Beast coroutines on one io_context) and the
// reload watcher.
#include "rls/server.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"

namespace fg::rls {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace pb = envoy::service::ratelimit::v3;
using tcp = asio::ip::tcp;

constexpr auto kReloadPoll = std::chrono::seconds(1);
constexpr std::size_t kMaxJsonBody = 1 << 20;

// gRPC's callback API: the handler starts the decision and returns; the call is finished from
// the store's completion (on the Redis store's I/O thread, or before returning for the memory
// store), so no gRPC thread waits on the store.
class GrpcService final : public pb::RateLimitService::CallbackService {
 public:
  explicit GrpcService(rls::Service& service) : service_(service) {}
  grpc::ServerUnaryReactor* ShouldRateLimit(grpc::CallbackServerContext* context,
                                            const pb::RateLimitRequest* request,
                                            pb::RateLimitResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    service_.should_rate_limit_async(*request, *response, [reactor](Result<void> r) {
      reactor->Finish(r ? grpc::Status::OK
                        : grpc::Status(grpc::StatusCode::UNKNOWN, r.error().message));
    });
    return reactor;
  }

 private:
  rls::Service& service_;
};

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using Handler = std::function<Response(const Request&)>;

Response text(const Request& req, http::status status, std::string body,
              std::string_view type = "text/plain; charset=utf-8") {
  Response res{status, req.version()};
  res.set(http::field::content_type, type);
  res.body() = std::move(body);
  return res;
}

asio::awaitable<void> session(beast::tcp_stream stream, const Handler& handler) {
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(std::chrono::seconds(30));
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxJsonBody);
    auto [ec, n] =
        co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    const Request& req = parser.get();
    Response res = handler(req);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    if (wec || !res.keep_alive()) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, const Handler& handler) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor.get_executor(), session(beast::tcp_stream(std::move(socket)), handler),
                   asio::detached);
  }
}

Result<void> listen_on(tcp::acceptor& acceptor, const std::string& host, int port) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return fail(ErrorCode::kInvalidArgument, host + ": not an IP address");
  const tcp::endpoint ep(address, static_cast<unsigned short>(port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable,
                host + ":" + std::to_string(port) + ": cannot listen: " + ec.message());
  }
  return {};
}

}  // namespace

struct Server::Impl {
  Settings settings;
  Service& service;
  GrpcService grpc_service{service};
  std::unique_ptr<grpc::Server> grpc;
  int grpc_port = 0;

  asio::io_context io;
  tcp::acceptor http_acceptor{io};
  tcp::acceptor debug_acceptor{io};
  Handler http_handler;
  Handler debug_handler;
  std::thread io_thread;

  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  bool health_failed = false;
  std::thread watcher;

  Impl(const Settings& s, Service& svc) : settings(s), service(svc) {}

  bool healthy() {
    std::lock_guard lock(mutex);
    if (health_failed) return false;
    if (!settings.healthy_with_at_least_one_config_loaded) return true;
    const auto snap = service.config();
    return snap && !snap->tree.domains.empty();
  }

  void publish_health() {
    if (!grpc) return;
    const bool ok = healthy();
    grpc::HealthCheckServiceInterface* health = grpc->GetHealthCheckService();
    if (health == nullptr) return;
    health->SetServingStatus(ok);
    health->SetServingStatus("ratelimit", ok);
  }

  Response on_http(const Request& req) {
    if (req.target() == "/healthcheck") {
      return healthy() ? text(req, http::status::ok, "OK")
                       : text(req, http::status::internal_server_error, "not healthy");
    }
    if (req.target() == "/json") {
      if (req.method() != http::verb::post) {
        return text(req, http::status::method_not_allowed, "Method Not Allowed\n");
      }
      pb::RateLimitRequest request;
      if (!google::protobuf::util::JsonStringToMessage(req.body(), &request).ok()) {
        return text(req, http::status::bad_request, "Bad Request\n");
      }
      pb::RateLimitResponse response;
      if (!service.should_rate_limit(request, response)) {
        return text(req, http::status::bad_request, "Bad Request\n");
      }
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(response, &json);
      const http::status status = response.overall_code() == pb::RateLimitResponse::OVER_LIMIT
                                      ? http::status::too_many_requests
                                      : http::status::ok;
      return text(req, status, std::move(json), "application/json");
    }
    return text(req, http::status::not_found, "Not Found\n");
  }

  Response on_debug(const Request& req) {
    if (req.target() == "/rlconfig") {
      const auto snap = service.config();
      return text(req, http::status::ok, snap ? snap->tree.dump() : "");
    }
    if (req.target() == "/metrics") {
      return text(req, http::status::ok, service.metrics().prometheus(),
                  "text/plain; version=0.0.4; charset=utf-8");
    }
    if (req.target() == "/healthcheck") return on_http(req);
    return text(req, http::status::not_found, "Not Found\n");
  }

  void watch() {
    const std::string dir = settings.config_dir();
    std::uint64_t seen = config::envoy::runtime_dir_fingerprint(dir);
    std::unique_lock lock(mutex);
    while (!wake.wait_for(lock, kReloadPoll, [this] { return stopping; })) {
      lock.unlock();
      const std::uint64_t now = config::envoy::runtime_dir_fingerprint(dir);
      if (now != seen) {
        seen = now;
        auto snap = load_snapshot(settings);
        if (snap) {
          service.set_config(std::move(*snap));
          service.metrics().config_load_success.fetch_add(1);
          spdlog::info("rls: reloaded {}", dir);
          publish_health();
        } else {
          service.metrics().config_load_error.fetch_add(1);
          spdlog::error("rls: error loading new configuration: {}; keeping the running one",
                        snap.error().message);
        }
      }
      lock.lock();
    }
  }
};

Server::Server(const Settings& settings, Service& service)
    : impl_(std::make_unique<Impl>(settings, service)) {}

Server::~Server() { stop(); }

Result<void> Server::start() {
  Impl& m = *impl_;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const std::string grpc_address =
      m.settings.grpc_host + ":" + std::to_string(m.settings.grpc_port);
  builder.AddListeningPort(grpc_address, grpc::InsecureServerCredentials(), &m.grpc_port);
  builder.RegisterService(&m.grpc_service);
  m.grpc = builder.BuildAndStart();
  if (!m.grpc || m.grpc_port == 0) {
    m.grpc.reset();
    return fail(ErrorCode::kUnavailable, grpc_address + ": cannot listen (gRPC)");
  }
  m.publish_health();

  if (auto r = listen_on(m.http_acceptor, m.settings.host, m.settings.port); !r) return r;
  if (auto r = listen_on(m.debug_acceptor, m.settings.debug_host, m.settings.debug_port); !r)
    return r;
  m.http_handler = [&m](const Request& req) { return m.on_http(req); };
  m.debug_handler = [&m](const Request& req) { return m.on_debug(req); };
  asio::co_spawn(m.io, accept_loop(m.http_acceptor, m.http_handler), asio::detached);
  asio::co_spawn(m.io, accept_loop(m.debug_acceptor, m.debug_handler), asio::detached);
  m.io_thread = std::thread([&m] { m.io.run(); });
  m.watcher = std::thread([&m] { m.watch(); });
  spdlog::info("rls: gRPC on {}:{}, HTTP on {}:{}, debug on {}:{}", m.settings.grpc_host,
               grpc_port(), m.settings.host, http_port(), m.settings.debug_host, debug_port());
  return {};
}

void Server::fail_health() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->health_failed = true;
  }
  impl_->publish_health();
}

void Server::stop() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mutex);
    m.stopping = true;
  }
  m.wake.notify_all();
  if (m.watcher.joinable()) m.watcher.join();
  if (m.grpc) {
    m.grpc->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    m.grpc.reset();
  }
  if (m.io_thread.joinable()) {
    asio::post(m.io, [&m] {
      beast::error_code ignored;
      m.http_acceptor.close(ignored);
      m.debug_acceptor.close(ignored);
    });
    m.io.stop();
    m.io_thread.join();
  }
}

int Server::grpc_port() const { return impl_->grpc_port; }
int Server::http_port() const {
  beast::error_code ec;
  const auto ep = impl_->http_acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}
int Server::debug_port() const {
  beast::error_code ec;
  const auto ep = impl_->debug_acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace fg::rls
