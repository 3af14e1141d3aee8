// server_test_util.h — for tests of the running server: a blocking HTTP client over a real
// loopback socket, a server started from YAML on a free port, and a fault-injecting store.
//
// Every read has a timeout (SO_RCVTIMEO), so no test can hang on a server that does not answer.
// Thread safety: a Client is used from one thread; FaultyStore may be used from any.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "app/wiring.h"
#include "config/config.h"
#include "floodgate/store.h"
#include "http/server.h"

namespace fg::http::test {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using ClientResponse = bhttp::response<bhttp::string_body>;

// "GET /api/x HTTP/1.1\r\nHost: t\r\n<headers>\r\n<body>" with Content-Length when there is a
// body.
inline std::string request_bytes(
    std::string_view method, std::string_view target,
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    std::string_view body = {}) {
  std::string out = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") {
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  out += "\r\n";
  out += body;
  return out;
}

class Client {
 public:
  // `source`: the client's own address (any of 127.0.0.0/8 on Linux), else the kernel's choice.
  explicit Client(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                  const char* source = nullptr)
      : socket_(ioc_) {
    boost::system::error_code ec;
    if (source != nullptr) {
      socket_.open(tcp::v4(), ec);
      if (!ec) socket_.bind(tcp::endpoint(asio::ip::make_address(source), 0), ec);
    }
    if (!ec) socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    connected_ = !ec;
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    if (connected_) {
      setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(socket_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
  }

  bool connected() const { return connected_; }

  bool send(std::string_view bytes) {
    boost::system::error_code ec;
    asio::write(socket_, asio::buffer(bytes.data(), bytes.size()), ec);
    return !ec;
  }

  // The next response, or nullopt when the connection ends (or times out) first.
  std::optional<ClientResponse> read(bool head = false) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    if (head) parser.skip(true);
    boost::system::error_code ec;
    bhttp::read(socket_, buffer_, parser, ec);
    if (ec) {
      last_error_ = ec;
      return std::nullopt;
    }
    return parser.release();
  }

  std::optional<ClientResponse> get(
      std::string_view target,
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    if (!send(request_bytes("GET", target, headers))) return std::nullopt;
    return read();
  }

  // Whether the server closed the connection (EOF) within the read timeout.
  bool closed_by_server() {
    char c;
    boost::system::error_code ec;
    socket_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  boost::system::error_code last_error() const { return last_error_; }
  tcp::socket& socket() { return socket_; }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
  boost::system::error_code last_error_;
};

// One request on a fresh connection.
inline std::optional<ClientResponse> get_once(
    std::uint16_t port, std::string_view target,
    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  Client c(port);
  return c.get(target, headers);
}

inline std::string field(const ClientResponse& r, std::string_view name) {
  const auto it = r.find(boost::beast::string_view(name.data(), name.size()));
  return it == r.end() ? "<absent>" : std::string(it->value());
}

// A started server; stopped and joined when it goes out of scope.
struct Running {
  std::unique_ptr<Server> server;
  std::uint16_t port = 0;
  Running() = default;
  Running(Running&&) = default;
  Running& operator=(Running&&) = default;
  ~Running() {
    if (server) server->stop();
  }
};

inline std::shared_ptr<const config::Config> parse(std::string_view yaml) {
  auto c = config::parse_config(yaml, "test.yaml");
  EXPECT_TRUE(c) << (c ? "" : c.error().message);
  if (!c) return nullptr;
  return std::make_shared<const config::Config>(std::move(*c));
}

// Starts a server from YAML (which should say `listen: 127.0.0.1:0`).
inline Running start_server(std::string_view yaml, std::shared_ptr<Store> store = nullptr) {
  Running r;
  ServerOptions o;
  o.config = parse(yaml);
  if (!o.config) return r;
  o.store = std::move(store);
  if (!o.store && o.config->store.kind != config::StoreKind::kMemory) {
    // As `floodgate serve` does (app/wiring.h).
    auto opened = open_store(o.config->store, store_options(*o.config), SystemClock::instance());
    EXPECT_TRUE(opened) << (opened ? "" : opened.error().message);
    if (!opened) return r;
    o.store = std::shared_ptr<Store>(std::move(*opened));
  }
  o.version = "test";
  auto s = Server::make(o);
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  if (!s) return r;
  r.server = std::move(*s);
  r.server->start();
  r.port = r.server->port();
  return r;
}

// Polls `pred` every 10 ms until it holds or `bound` passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// A store in front of another that fails on demand (with `error`) and counts its calls: for
// degraded modes and the circuit breaker without a real outage. kind() is "faulty", so the
// server probes it for /readyz as it would a Redis store.
class FaultyStore final : public Store {
 public:
  explicit FaultyStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}
  void decide(const DecideRequest& request, DecideCallback done) override {
    calls.fetch_add(1);
    if (failing.load()) {
      done(fail(error.load(), "injected failure"));
      return;
    }
    inner_->decide(request, std::move(done));
  }
  void refund(const RefundRequest& request, RefundCallback done) override {
    calls.fetch_add(1);
    if (failing.load()) {
      done(fail(error.load(), "injected failure"));
      return;
    }
    inner_->refund(request, std::move(done));
  }
  std::string_view kind() const override { return "faulty"; }

  std::atomic<bool> failing{false};
  std::atomic<ErrorCode> error{ErrorCode::kUnavailable};
  std::atomic<int> calls{0};

 private:
  std::unique_ptr<Store> inner_;
};

}  // namespace fg::http::test
