// upstream_test.cc — the pure request/response rewrites, and UpstreamPool against a small HTTP
// upstream on 127.0.0.1 (port 0) running on the test's own io_context, on the test thread.
//
// Every network test runs one coroutine to completion with a bounded io_context::run_for; waits
// for a condition poll it on a timer with a bound (eventually()), never sleep.
#include "http/upstream.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "http/handler.h"

namespace fg::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;
using beast_http::field;
using beast_http::verb;

constexpr std::size_t kHugeBodyBytes = 2 * 1024 * 1024;

std::vector<std::string> values(const beast_http::fields& fields, std::string_view name) {
  std::vector<std::string> out;
  for (auto [it, end] = fields.equal_range(name); it != end; ++it) out.emplace_back(it->value());
  return out;
}

// ---------------------------------------------------------------------------------------------
// make_upstream_request / strip_hop_by_hop

const config::HostPort kTarget{"10.0.0.5", 8080};

TEST(MakeUpstreamRequest, RemovesHopByHopFieldsAndTheFieldsConnectionNames) {
  Request in{verb::get, "/a", 11};
  in.set(field::host, "api.example.com");
  in.insert(field::connection, "keep-alive, X-Private");
  in.insert(field::connection, " x-other ,, ");  // a second Connection field, spaces, empty items
  in.insert("X-Private", "secret");
  in.insert("X-Other", "secret too");
  in.insert(field::keep_alive, "timeout=5");
  in.insert(field::proxy_connection, "keep-alive");
  in.insert(field::te, "trailers");
  in.insert(field::trailer, "X-Checksum");
  in.insert(field::upgrade, "websocket");
  in.insert(field::proxy_authorization, "Basic Zm9vOmJhcg==");
  in.insert(field::proxy_authenticate, "Basic");
  in.insert("X-Kept", "1");

  const Request out = make_upstream_request(in, "203.0.113.9", kTarget);
  for (std::string_view name :
       {"Connection", "X-Private", "X-Other", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
        "Upgrade", "Proxy-Authorization", "Proxy-Authenticate", "Transfer-Encoding"}) {
    EXPECT_EQ(out.count(name), 0u) << name;
  }
  EXPECT_EQ(out["X-Kept"], "1");
  EXPECT_EQ(out[field::host], "api.example.com");
}

// The names Connection lists are read from the request's own fields (RequestFields, on the
// connection's arena when parsed), never from a converted copy: a copy freed before the fields
// were compared left its names in memory the next insertions reused, and the named field went
// through (this layout did so every time).
TEST(MakeUpstreamRequest, RemovesTheFieldsConnectionNamesAmongMany) {
  RequestArena arena;
  RequestParser parser(std::piecewise_construct, std::make_tuple(),
                       std::make_tuple(ArenaAllocator<char>(&arena)));
  std::string raw = "GET /a HTTP/1.1\r\nHost: api.example.com\r\nConnection: X-Secret\r\n";
  for (int i = 0; i < 8; ++i) raw += "X-Aaaaaaa" + std::to_string(i) + ": zzzzzzzz\r\n";
  raw += "X-Secret: s3cr3t\r\n\r\n";
  boost::system::error_code ec;
  parser.eager(true);
  parser.put(boost::asio::buffer(raw), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  for (int round = 0; round < 3; ++round) {
    const Request out = make_upstream_request(parser.get(), "203.0.113.9", kTarget);
    EXPECT_EQ(out.count("X-Secret"), 0u) << "round " << round;
    EXPECT_EQ(out.count("X-Aaaaaaa7"), 1u);
  }
}

TEST(MakeUpstreamRequest, AppendsTheClientToXForwardedFor) {
  Request none{verb::get, "/", 11};
  EXPECT_EQ(values(make_upstream_request(none, "203.0.113.9", kTarget), "X-Forwarded-For"),
            std::vector<std::string>{"203.0.113.9"});

  Request one{verb::get, "/", 11};
  one.insert("X-Forwarded-For", "198.51.100.1");
  EXPECT_EQ(values(make_upstream_request(one, "203.0.113.9", kTarget), "X-Forwarded-For"),
            std::vector<std::string>{"198.51.100.1, 203.0.113.9"});

  // Several fields become one, in order; a field's own list is kept as written; empty ones go.
  Request several{verb::get, "/", 11};
  several.insert("X-Forwarded-For", "198.51.100.1, 198.51.100.2");
  several.insert("x-forwarded-for", "  ");
  several.insert("X-Forwarded-For", " 2001:db8::1 ");
  EXPECT_EQ(values(make_upstream_request(several, "::1", kTarget), "X-Forwarded-For"),
            std::vector<std::string>{"198.51.100.1, 198.51.100.2, 2001:db8::1, ::1"});
}

TEST(MakeUpstreamRequest, KeepsTheClientsHostOrSetsTheTarget) {
  Request with{verb::get, "/", 11};
  with.set(field::host, "api.example.com:8443");
  EXPECT_EQ(make_upstream_request(with, "203.0.113.9", kTarget)[field::host],
            "api.example.com:8443");

  Request without{verb::get, "/", 10};  // HTTP/1.0 may omit Host
  EXPECT_EQ(make_upstream_request(without, "203.0.113.9", kTarget)[field::host], "10.0.0.5:8080");
  EXPECT_EQ(make_upstream_request(without, "203.0.113.9", {"::1", 81})[field::host], "[::1]:81");
}

TEST(MakeUpstreamRequest, KeepsMethodTargetBodyAndEveryOtherFieldInOrder) {
  Request in{verb::post, "/v1/items?q=a%20b&x=1", 10};  // HTTP/1.0 in, HTTP/1.1 out
  in.set(field::host, "api.example.com");
  in.insert(field::content_type, "application/json");
  in.insert("X-Multi", "1");
  in.insert("X-Multi", "2");
  in.insert("x-MiXeD-case", "v");
  in.insert(field::transfer_encoding, "chunked");  // the server decoded it: the body is whole
  in.insert(field::content_length, "999");         // wrong on purpose: recomputed
  in.body() = R"({"a":1})";

  const Request out = make_upstream_request(in, "203.0.113.9", kTarget);
  EXPECT_EQ(out.method(), verb::post);
  EXPECT_EQ(out.target(), "/v1/items?q=a%20b&x=1");
  EXPECT_EQ(out.version(), 11u);
  EXPECT_TRUE(out.keep_alive());
  EXPECT_EQ(out.body(), R"({"a":1})");
  EXPECT_EQ(out[field::content_length], "7");
  EXPECT_EQ(out.count(field::transfer_encoding), 0u);

  std::vector<std::string> names;
  for (const auto& f : out) names.emplace_back(f.name_string());
  EXPECT_EQ(names, (std::vector<std::string>{"Host", "Content-Type", "X-Multi", "X-Multi",
                                             "x-MiXeD-case", "X-Forwarded-For", "Content-Length"}));
  EXPECT_EQ(values(out, "X-Multi"), (std::vector<std::string>{"1", "2"}));
}

TEST(MakeUpstreamRequest, ContentLengthFollowsTheBody) {
  Request get{verb::get, "/", 11};
  EXPECT_EQ(make_upstream_request(get, "203.0.113.9", kTarget).count(field::content_length), 0u);

  Request empty_post{verb::post, "/", 11};
  EXPECT_EQ(make_upstream_request(empty_post, "203.0.113.9", kTarget)[field::content_length], "0");

  Request purge{verb::unknown, "/cache/x", 11};
  purge.method_string("PURGE");
  const Request out = make_upstream_request(purge, "203.0.113.9", kTarget);
  EXPECT_EQ(out.method_string(), "PURGE");

  Request trace{verb::trace, "/", 11};  // prepare_payload() would throw here
  trace.body() = "x";
  EXPECT_EQ(make_upstream_request(trace, "203.0.113.9", kTarget)[field::content_length], "1");

  // A body where servers expect none goes with Connection: close (a server that ignores it would
  // read it as the next request); a POST's keeps the connection.
  for (verb m : {verb::get, verb::head, verb::delete_, verb::options}) {
    Request r{m, "/", 11};
    r.body() = "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_FALSE(make_upstream_request(r, "203.0.113.9", kTarget).keep_alive()) << m;
    r.body().clear();
    EXPECT_TRUE(make_upstream_request(r, "203.0.113.9", kTarget).keep_alive()) << m;
  }
  Request post{verb::post, "/", 11};
  post.body() = "x=1";
  EXPECT_TRUE(make_upstream_request(post, "203.0.113.9", kTarget).keep_alive());
  // So do the bodies of methods beyond the usual ones (WebDAV's, a cache's PURGE, any token).
  for (std::string_view m : {"PROPFIND", "PURGE", "FROB"}) {
    Request r{verb::get, "/", 11};
    r.method_string(boost::beast::string_view(m.data(), m.size()));
    r.body() = "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_FALSE(make_upstream_request(r, "203.0.113.9", kTarget).keep_alive()) << m;
  }
  for (verb m : {verb::put, verb::patch}) {
    Request r{m, "/", 11};
    r.body() = "x=1";
    EXPECT_TRUE(make_upstream_request(r, "203.0.113.9", kTarget).keep_alive()) << m;
  }
}

// serialize_request() writes what Beast's serializer writes, byte for byte: the request line,
// the fields in order with their spelling, and the body framed as the fields say.
TEST(SerializeRequest, WritesWhatBeastsSerializerWrites) {
  std::vector<Request> requests;
  Request get{verb::get, "/a?b=c%20d", 11};
  get.set(field::host, "api.example.com");
  get.insert("x-MiXeD-case", "v");
  get.insert("X-Multi", "1");
  get.insert("X-Multi", "2");
  requests.push_back(get);

  Request post{verb::post, "/v1/items", 11};
  post.set(field::host, "api.example.com");
  post.body() = R"({"a":1})";
  post.content_length(post.body().size());
  requests.push_back(make_upstream_request(post, "203.0.113.9", kTarget));

  Request purge{verb::unknown, "/cache/x", 10};  // an extension method, HTTP/1.0
  purge.method_string("PURGE");
  requests.push_back(purge);
  purge.version(11);
  purge.set("X-Empty", "");
  purge.set("X-Obs-Text", "caf\xc3\xa9 \x80\xff");
  requests.push_back(purge);
  Request other{verb::get, "*", 20};  // any version Beast holds
  other.set(field::host, "a");
  requests.push_back(other);

  Request chunked{verb::put, "/upload", 11};  // framed as one chunk and the last chunk
  chunked.set(field::transfer_encoding, "gzip, chunked");
  chunked.body() = "hello world";
  requests.push_back(chunked);
  Request gzip_only{verb::post, "/raw", 11};  // not chunked: the body as it is
  gzip_only.set(field::transfer_encoding, "gzip");
  gzip_only.body() = "abc";
  requests.push_back(gzip_only);

  // What goes on the wire: the head, the body as it is, the tail.
  std::string head = "left over from the last request";
  const auto wire = [&](const Request& r) {
    const std::string_view tail = serialize_request(head, r);
    return head + r.body() + std::string(tail);
  };
  for (const Request& r : requests) {
    std::ostringstream beast_bytes;
    beast_bytes << r;
    EXPECT_EQ(wire(r), beast_bytes.str());
  }

  // An empty chunked body is the last chunk alone. (Beast's serializer writes the last chunk twice
  // there, and a server would read the second as the start of another request.)
  Request empty{verb::put, "/upload", 11};
  empty.set(field::transfer_encoding, "chunked");
  EXPECT_EQ(wire(empty), "PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");

  // The head holds no body: what a connection keeps is bounded by the header section.
  Request large{verb::post, "/v1/upload", 11};
  large.body().assign(kHugeBodyBytes, 'x');
  large.content_length(large.body().size());
  EXPECT_EQ(serialize_request(head, large), "");
  EXPECT_LT(head.capacity(), 1024u);
}

TEST(StripHopByHop, RemovesHopByHopFieldsKeepsTheRest) {
  Response r{beast_http::status::ok, 11};
  r.insert(field::connection, "keep-alive, X-Private");
  r.insert("X-Private", "internal");
  r.insert(field::keep_alive, "timeout=5, max=100");
  r.insert(field::transfer_encoding, "chunked");
  r.insert(field::trailer, "X-Checksum");
  r.insert(field::upgrade, "h2c");
  r.insert(field::proxy_authenticate, "Basic");
  r.insert(field::content_type, "text/plain");
  r.insert(field::content_length, "5");
  r.insert(field::set_cookie, "a=1");
  r.insert(field::set_cookie, "b=2");
  strip_hop_by_hop(r);
  std::vector<std::string> names;
  for (const auto& f : r) names.emplace_back(f.name_string());
  EXPECT_EQ(names, (std::vector<std::string>{"Content-Type", "Content-Length", "Set-Cookie",
                                             "Set-Cookie"}));
  strip_hop_by_hop(r);  // idempotent
  EXPECT_EQ(std::distance(r.begin(), r.end()), 4);

  // Named fields before and after the Connection fields that name them, several of those.
  Response named{beast_http::status::ok, 11};
  named.insert("X-Before", "1");
  named.insert(field::connection, "X-Before, x-after");
  named.insert("X-Kept", "2");
  named.insert(field::connection, "X-Second");
  named.insert("X-After", "3");
  named.insert("X-Second", "4");
  named.insert(field::connection, "a, b, c, X-Seventh");  // more names than are held inline
  named.insert("X-Seventh", "5");
  strip_hop_by_hop(named);
  names.clear();
  for (const auto& f : named) names.emplace_back(f.name_string());
  EXPECT_EQ(names, std::vector<std::string>{"X-Kept"});
}

// ---------------------------------------------------------------------------------------------
// The answer to /parts/AT/GAP, below: a header section of 38 bytes and a body of 10.
constexpr std::string_view kParts = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";

// A test upstream: HTTP/1.1 on 127.0.0.1:0, on the test's io_context. What it answers depends on
// the request target:
//   HEAD anything      200, Content-Length: 1234, no body
//   /slow              echo after 5 s          /delay          echo after 100 ms
//   /close-after       echo (keep-alive, no Connection: close), then closes the connection
//   /connection-close  echo with Connection: close, then closes
//   /http10            HTTP/1.0 200 with Content-Length, no keep-alive, then closes
//   /no-length         200 without Content-Length: body up to the end of the connection
//   /no-length/N       the same with N bytes of body
//   /huge              2 MiB body (Content-Length)       /huge-chunked   the same, chunked
//   /big-header        a 32 KiB header field             /chunked        "hello world" in chunks
//   /big-trailer       chunked, a 70,000-byte trailer    /big-extension  chunked, a 512 KiB chunk
//                                                                        extension
//   /hop               hop-by-hop response fields        /continue       100 Continue, then 200
//   /no-content        204                               /garbage        not HTTP at all
//   /reset             closes without answering
//   /parts/AT/GAP      a fixed answer in two writes, split at byte AT, GAP µs apart
//   /stall/N           Content-Length: N, 1,000 bytes of the body, the rest 300 ms later
//   anything else      echo: X-Echo-Method, X-Echo-Target, the request's body
// It counts accepted and closed connections and keeps every request it read.
class TestUpstream {
 public:
  explicit TestUpstream(asio::io_context& ioc) : ioc_(ioc), acceptor_(ioc) {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    // A small receive buffer (the accepted sockets inherit it): a request of a few megabytes
    // cannot be taken at once, so the pool's write of the rest is always exercised.
    acceptor_.set_option(asio::socket_base::receive_buffer_size(64 * 1024));
    acceptor_.listen();
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
  }

  config::HostPort target() const { return {"127.0.0.1", acceptor_.local_endpoint().port()}; }
  int accepts() const { return accepts_; }
  int closed() const { return closed_; }
  const std::vector<Request>& requests() const { return requests_; }

 private:
  asio::awaitable<void> accept_loop() {
    for (int i = 0; i < 10'000; ++i) {  // far more than any test opens
      error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;  // the acceptor is closed: the test is over
      ++accepts_;
      asio::co_spawn(ioc_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    beast::flat_buffer buffer;
    error_code ec;
    for (int served = 0; served < 1'000; ++served) {
      RequestParser parser;
      parser.body_limit(kHugeBodyBytes * 4);  // Beast's default for requests is 1 MB
      co_await beast_http::async_read(socket, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      Request request = parser.release();
      requests_.push_back(request);
      const bool keep_open = co_await respond(socket, request);
      if (!keep_open) break;
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    ++closed_;
  }

  // `text` must outlive the write (a literal, or a named local of the caller).
  static asio::awaitable<bool> write_raw(tcp::socket& socket, std::string_view text) {
    error_code ec;
    co_await asio::async_write(socket, asio::buffer(text),
                               asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  static asio::awaitable<bool> write(tcp::socket& socket, Response& response) {
    error_code ec;
    co_await beast_http::async_write(socket, response,
                                     asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  static Response echo(const Request& request) {
    Response response{beast_http::status::ok, 11};
    response.set("X-Echo-Method", request.method_string());
    response.set("X-Echo-Target", request.target());
    response.body() = request.body();
    response.prepare_payload();
    return response;
  }

  static std::string chunked(std::string_view body, std::size_t chunk_bytes) {
    std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    char size[32];
    for (std::size_t at = 0; at < body.size(); at += chunk_bytes) {
      const std::string_view chunk = body.substr(at, chunk_bytes);
      std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
      out += size;
      out += chunk;
      out += "\r\n";
    }
    out += "0\r\n\r\n";
    return out;
  }

  // Answers one request; false when the connection is to be closed.
  asio::awaitable<bool> respond(tcp::socket& socket, const Request& request) {
    const std::string_view target = request.target();
    if (request.method() == verb::head) {
      co_return co_await write_raw(socket, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    }
    if (target == "/slow" || target == "/delay") {
      asio::steady_timer timer(ioc_);
      timer.expires_after(target == "/slow" ? milliseconds(5'000) : milliseconds(100));
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (target == "/close-after") {
      Response response = echo(request);
      co_await write(socket, response);
      co_return false;
    }
    if (target == "/connection-close") {
      Response response = echo(request);
      response.keep_alive(false);
      co_await write(socket, response);
      co_return false;
    }
    if (target == "/http10") {
      co_await write_raw(socket, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
      co_return false;
    }
    if (target == "/no-length") {
      co_await write_raw(socket, "HTTP/1.1 200 OK\r\n\r\nuntil the end");
      co_return false;
    }
    if (target.starts_with("/no-length/")) {
      // Written and closed at once, in one turn of the loop: the close arrives with the bytes.
      const std::size_t n = std::stoul(std::string(target.substr(11)));
      error_code ec;
      asio::write(socket, asio::buffer("HTTP/1.1 200 OK\r\n\r\n" + std::string(n, 'n')), ec);
      socket.shutdown(tcp::socket::shutdown_send, ec);
      co_return false;
    }
    if (target == "/huge") {
      Response response{beast_http::status::ok, 11};
      response.body().assign(kHugeBodyBytes, 'x');
      response.prepare_payload();
      co_return co_await write(socket, response);
    }
    if (target == "/huge-chunked") {
      const std::string text = chunked(std::string(kHugeBodyBytes, 'x'), 64 * 1024);
      co_return co_await write_raw(socket, text);
    }
    if (target.starts_with("/stall/")) {
      // /stall/N: a Content-Length of N, 1,000 bytes of the body, then the rest 300 ms later.
      const std::size_t n = std::stoul(std::string(target.substr(7)));
      std::string text = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(n) + "\r\n\r\n";
      if (!co_await write_raw(socket, text + std::string(1000, 's'))) co_return false;
      asio::steady_timer timer(ioc_);
      timer.expires_after(milliseconds(300));
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_return co_await write_raw(socket, std::string(n - 1000, 's'));
    }
    if (target == "/big-trailer" || target == "/big-extension") {
      // A chunked body with a 70,000-byte trailer field, or a 512 KiB chunk extension.
      std::string text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      text += target == "/big-trailer"
                  ? "5\r\nhello\r\n0\r\nX-Trailer: " + std::string(70'000, 't') + "\r\n\r\n"
                  : "5;ext=" + std::string(512 * 1024, 'e') + "\r\nhello\r\n0\r\n\r\n";
      co_return co_await write_raw(socket, text);
    }
    if (target == "/big-header") {
      std::string text = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(32 * 1024, 'h') +
                         "\r\nContent-Length: 0\r\n\r\n";
      co_return co_await write_raw(socket, text);
    }
    if (target == "/chunked") {
      // Three writes, so the client reads the body in several pieces.
      if (!co_await write_raw(socket, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")) {
        co_return false;
      }
      if (!co_await write_raw(socket, "5\r\nhello\r\n1\r\n \r\n")) co_return false;
      co_return co_await write_raw(socket, "5\r\nworld\r\n0\r\n\r\n");
    }
    if (target == "/hop") {
      Response response{beast_http::status::ok, 11};
      response.insert(field::connection, "keep-alive, X-Private");
      response.insert("X-Private", "internal");
      response.insert(field::keep_alive, "timeout=5");
      response.insert(field::proxy_authenticate, "Basic");
      response.insert(field::upgrade, "h2c");
      response.insert("X-Public", "yes");
      response.body() = "hop";
      response.prepare_payload();
      co_return co_await write(socket, response);
    }
    if (target == "/continue") {
      co_return co_await write_raw(socket,
                                   "HTTP/1.1 100 Continue\r\n\r\n"
                                   "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
    }
    if (target == "/no-content") {
      co_return co_await write_raw(socket, "HTTP/1.1 204 No Content\r\n\r\n");
    }
    if (target == "/garbage") {
      co_await write_raw(socket, "HELLO THERE\r\n\r\n");
      co_return false;
    }
    if (target == "/reset") co_return false;
    if (target.starts_with("/parts/")) {
      // /parts/AT/GAP: kParts in two writes, split at byte AT, GAP µs apart (0: the next turn of
      // the loop), so the reader has read the first part, and found no more, before the second.
      const std::string_view rest = target.substr(7);
      const std::size_t slash = rest.find('/');
      const std::size_t at = std::stoul(std::string(rest.substr(0, slash)));
      const long gap = std::stol(std::string(rest.substr(slash + 1)));
      error_code ec;
      socket.set_option(tcp::no_delay(true), ec);  // the second part is not held for an ACK
      if (!co_await write_raw(socket, kParts.substr(0, at))) co_return false;
      asio::steady_timer timer(ioc_);
      timer.expires_after(std::chrono::microseconds(gap));
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_return co_await write_raw(socket, kParts.substr(at));
    }
    Response response = echo(request);
    co_return co_await write(socket, response);
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  int accepts_ = 0;
  int closed_ = 0;
  std::vector<Request> requests_;
};

// Runs `body` to completion on `ioc`, for at most `bound` of wall time. False if it did not
// finish; an exception escaping it is rethrown (and fails the test).
bool run(asio::io_context& ioc, asio::awaitable<void> body, seconds bound = seconds(20)) {
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(ioc, std::move(body), [&](std::exception_ptr e) {
    done = true;
    error = e;
    ioc.stop();
  });
  ioc.run_for(bound);
  if (error) std::rethrow_exception(error);
  return done;
}

// Polls `condition` every millisecond until it holds, at most `bound`; whether it held.
// `condition` is a lambda capturing by reference only: g++ 12 may destroy a temporary in a
// co_await expression twice, harmless only for trivially destructible ones.
template <typename Condition>
asio::awaitable<bool> eventually(Condition condition, milliseconds bound = milliseconds(2'000)) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto until = SteadyClock::now() + bound;
  for (long i = 0; i <= bound.count(); ++i) {
    if (condition()) co_return true;
    if (SteadyClock::now() >= until) break;
    timer.expires_after(milliseconds(1));
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return condition();
}

asio::awaitable<void> wait_for(milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(d);
  co_await timer.async_wait(asio::use_awaitable);
}

Request client_request(verb method, std::string target) {
  Request r{method, target, 11};
  r.set(field::host, "api.example.com");
  return r;
}

// forward() into `out`, then ++done: for requests spawned side by side.
asio::awaitable<void> forward_into(UpstreamPool& pool, Request req, Result<Response>& out,
                                   int& done, util::MemoryLease* lease = nullptr) {
  out = co_await pool.forward(std::move(req), std::nullopt, lease);
  ++done;
}

class UpstreamPoolTest : public ::testing::Test {
 protected:
  UpstreamOptions options() const {
    UpstreamOptions o;
    o.target = server_.target();
    o.timeout = seconds(10);
    o.connect_timeout = seconds(5);
    return o;
  }

  // Declared first: destroyed last, after everything bound to it.
  asio::io_context ioc_;
  TestUpstream server_{ioc_};
};

TEST_F(UpstreamPoolTest, ForwardsMethodTargetHeadersBodyAndAppendsXForwardedFor) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> result;
  auto body = [&]() -> asio::awaitable<void> {
    Request in = client_request(verb::put, "/v1/items/7?dry_run=1");
    in.insert(field::content_type, "application/json");
    in.insert("X-Api-Key", "abc123");
    in.insert("X-Forwarded-For", "198.51.100.1");
    in.insert(field::connection, "keep-alive, X-Private");
    in.insert("X-Private", "not for upstream");
    in.insert(field::te, "trailers");
    in.insert(field::proxy_authorization, "Basic Zm9vOmJhcg==");
    in.body() = R"({"name":"seven"})";
    Request out = make_upstream_request(in, "203.0.113.9", server_.target());
    result = co_await pool.forward(std::move(out));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ(result->result(), beast_http::status::ok);
  EXPECT_EQ(result->body(), R"({"name":"seven"})");
  EXPECT_EQ((*result)["X-Echo-Method"], "PUT");
  EXPECT_EQ((*result)["X-Echo-Target"], "/v1/items/7?dry_run=1");

  ASSERT_EQ(server_.requests().size(), 1u);
  const Request& seen = server_.requests()[0];
  EXPECT_EQ(seen.method(), verb::put);
  EXPECT_EQ(seen.target(), "/v1/items/7?dry_run=1");
  EXPECT_EQ(seen.version(), 11u);
  EXPECT_EQ(seen[field::host], "api.example.com");
  EXPECT_EQ(seen[field::content_type], "application/json");
  EXPECT_EQ(seen["X-Api-Key"], "abc123");
  EXPECT_EQ(seen["X-Forwarded-For"], "198.51.100.1, 203.0.113.9");
  EXPECT_EQ(seen[field::content_length], "16");
  EXPECT_EQ(seen.body(), R"({"name":"seven"})");
  for (std::string_view name : {"Connection", "X-Private", "TE", "Proxy-Authorization"}) {
    EXPECT_EQ(seen.count(name), 0u) << name;
  }
}

// A request larger than the socket takes at once: the rest is written as the upstream reads it,
// on the same connection, and the connection is pooled after the answer. Twice, so that the
// second request starts with the first one's buffer.
TEST_F(UpstreamPoolTest, ARequestLargerThanTheSocketTakesAtOnceIsWrittenWhole) {
  UpstreamPool pool(ioc_.get_executor(), options());
  // More than the socket's send buffer and the test upstream's receive buffer hold together
  // (net.ipv4.tcp_wmem's 4 MiB at most, and 64 KiB), below the test upstream's body limit (8 MiB).
  std::string big(6 * 1024 * 1024, 'b');
  for (std::size_t i = 0; i < big.size(); i += 4096)
    big[i] = static_cast<char>('a' + i / 4096 % 26);
  std::vector<Result<Response>> results;
  auto body = [&]() -> asio::awaitable<void> {
    for (const std::string_view sent : {std::string_view(big), std::string_view("small")}) {
      Request in = client_request(verb::post, "/v1/upload");
      in.body() = sent;
      results.push_back(
          co_await pool.forward(make_upstream_request(in, "203.0.113.9", server_.target())));
    }
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_EQ(results.size(), 2u);
  for (const auto& result : results) ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ(results[0]->body().size(), big.size());
  EXPECT_TRUE(results[0]->body() == big);
  EXPECT_EQ(results[1]->body(), "small");
  ASSERT_EQ(server_.requests().size(), 2u);
  EXPECT_EQ(server_.requests()[0][field::content_length], std::to_string(big.size()));
  EXPECT_EQ(server_.requests()[1][field::content_length], "5");
  EXPECT_EQ(server_.accepts(), 1);
}

TEST_F(UpstreamPoolTest, RemovesHopByHopFieldsFromTheResponse) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> result;
  auto body = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::get, "/hop");
    result = co_await pool.forward(std::move(r));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ(result->body(), "hop");
  EXPECT_EQ((*result)["X-Public"], "yes");
  for (std::string_view name :
       {"Connection", "X-Private", "Keep-Alive", "Proxy-Authenticate", "Upgrade"}) {
    EXPECT_EQ(result->count(name), 0u) << name;
  }
  EXPECT_EQ(pool.idle_connections(), 1u);  // Connection: keep-alive, X-Private still keeps it
}

TEST_F(UpstreamPoolTest, SequentialForwardsReuseOneConnection) {
  UpstreamPool pool(ioc_.get_executor(), options());
  int ok = 0;
  auto body = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 10; ++i) {
      Request r = client_request(verb::get, "/n/" + std::to_string(i));
      Result<Response> result = co_await pool.forward(std::move(r));
      EXPECT_TRUE(result.has_value()) << result.error().to_string();
      if (result && (*result)["X-Echo-Target"] == "/n/" + std::to_string(i)) ++ok;
    }
  };
  ASSERT_TRUE(run(ioc_, body()));
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(server_.accepts(), 1);
  EXPECT_EQ(pool.stats().connects, 1u);
  EXPECT_EQ(pool.stats().reuses, 9u);
  EXPECT_EQ(pool.stats().retries, 0u);
  EXPECT_EQ(pool.idle_connections(), 1u);
}

// A request sent with Connection: close (a GET with a body) ends its connection: the server
// reads no further request there, so it is not pooled.
TEST_F(UpstreamPoolTest, ARequestSentWithConnectionCloseIsNotPooled) {
  UpstreamPool pool(ioc_.get_executor(), options());
  auto body = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::get, "/n/1");
    r.body() = "data";
    Result<Response> result =
        co_await pool.forward(make_upstream_request(r, "203.0.113.9", kTarget));
    EXPECT_TRUE(result.has_value()) << result.error().to_string();
  };
  ASSERT_TRUE(run(ioc_, body()));
  EXPECT_EQ(pool.idle_connections(), 0u);
}

TEST_F(UpstreamPoolTest, ConcurrentForwardsEachTakeTheirOwnConnection) {
  UpstreamPool pool(ioc_.get_executor(), options());
  constexpr int kConcurrent = 20;
  std::vector<Result<Response>> first(kConcurrent), second(kConcurrent);
  int done = 0;
  bool all_done_first = false, all_done_second = false;
  auto body = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < kConcurrent; ++i) {
      Request r = client_request(verb::get, "/delay");  // all 20 in flight at once
      asio::co_spawn(ioc_, forward_into(pool, std::move(r), first[i], done), asio::detached);
    }
    all_done_first = co_await eventually([&] { return done == kConcurrent; }, milliseconds(10'000));
    // A second wave finds 20 idle connections and opens none.
    done = 0;
    for (int i = 0; i < kConcurrent; ++i) {
      Request r = client_request(verb::get, "/c/" + std::to_string(i));
      asio::co_spawn(ioc_, forward_into(pool, std::move(r), second[i], done), asio::detached);
    }
    all_done_second =
        co_await eventually([&] { return done == kConcurrent; }, milliseconds(10'000));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(all_done_first);
  ASSERT_TRUE(all_done_second);
  for (int i = 0; i < kConcurrent; ++i) {
    ASSERT_TRUE(first[i].has_value()) << i << ": " << first[i].error().to_string();
    ASSERT_TRUE(second[i].has_value()) << i << ": " << second[i].error().to_string();
    EXPECT_EQ((*second[i])["X-Echo-Target"], "/c/" + std::to_string(i));
  }
  EXPECT_EQ(server_.accepts(), kConcurrent);
  EXPECT_EQ(pool.stats().connects, static_cast<std::uint64_t>(kConcurrent));
  EXPECT_EQ(pool.stats().reuses, static_cast<std::uint64_t>(kConcurrent));
  EXPECT_EQ(pool.idle_connections(), static_cast<std::size_t>(kConcurrent));
}

TEST_F(UpstreamPoolTest, KeepsAtMostMaxIdleConnections) {
  UpstreamOptions o = options();
  o.max_idle_connections = 4;
  UpstreamPool pool(ioc_.get_executor(), o);
  constexpr int kConcurrent = 10;
  std::vector<Result<Response>> results(kConcurrent);
  int done = 0;
  bool all_done = false, extra_closed = false;
  auto body = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < kConcurrent; ++i) {
      Request r = client_request(verb::get, "/delay");
      asio::co_spawn(ioc_, forward_into(pool, std::move(r), results[i], done), asio::detached);
    }
    all_done = co_await eventually([&] { return done == kConcurrent; }, milliseconds(10'000));
    extra_closed = co_await eventually([&] { return server_.closed() == kConcurrent - 4; });
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(all_done);
  for (const auto& r : results) EXPECT_TRUE(r.has_value());
  EXPECT_EQ(pool.idle_connections(), 4u);
  EXPECT_TRUE(extra_closed) << server_.closed();
  // Opened minus closed is what the pool holds.
  EXPECT_EQ(pool.stats().connects, static_cast<std::uint64_t>(kConcurrent));
  EXPECT_EQ(pool.stats().closes, static_cast<std::uint64_t>(kConcurrent - 4));
  pool.close_idle();
  EXPECT_EQ(pool.stats().closes, static_cast<std::uint64_t>(kConcurrent));
}

TEST_F(UpstreamPoolTest, PoolsSharingCountersKeepCountingAcrossAReplacement) {
  UpstreamOptions o = options();
  o.counters = std::make_shared<UpstreamCounters>();
  auto forward_twice = [&](UpstreamPool& pool) {
    auto body = [&]() -> asio::awaitable<void> {
      for (int i = 0; i < 2; ++i) {
        Request r = client_request(verb::get, "/s");  // named: see eventually()
        Result<Response> result = co_await pool.forward(std::move(r));
        EXPECT_TRUE(result.has_value());
      }
    };
    ioc_.restart();  // run() stops it
    return run(ioc_, body());
  };
  {
    UpstreamPool first(ioc_.get_executor(), o);
    ASSERT_TRUE(forward_twice(first));
  }  // destroyed: its idle connection is closed
  UpstreamPool second(ioc_.get_executor(), o);
  ASSERT_TRUE(forward_twice(second));
  EXPECT_EQ(o.counters->connects.load(), 2u);
  EXPECT_EQ(o.counters->reuses.load(), 2u);
  EXPECT_EQ(o.counters->closes.load(), 1u);
  EXPECT_EQ(second.stats().connects, 2u);  // the shared counters, not the pool's own
}

TEST_F(UpstreamPoolTest, RetriesOnceWhenTheUpstreamClosedAnIdleConnection) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> first, second;
  bool server_closed = false;
  auto body = [&]() -> asio::awaitable<void> {
    Request r1 = client_request(verb::post, "/close-after");  // no Connection: close, then closes
    first = co_await pool.forward(std::move(r1));
    server_closed = co_await eventually([&] { return server_.closed() == 1; });
    Request r2 = client_request(verb::post, "/after-retry");
    r2.body() = "payload";
    r2.prepare_payload();
    second = co_await pool.forward(std::move(r2));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(first.has_value()) << first.error().to_string();
  ASSERT_TRUE(server_closed);
  ASSERT_TRUE(second.has_value()) << second.error().to_string();
  EXPECT_EQ(second->body(), "payload");
  EXPECT_EQ(pool.stats().retries, 1u);
  EXPECT_EQ(pool.stats().reuses, 1u);
  EXPECT_EQ(pool.stats().connects, 2u);
  EXPECT_EQ(pool.stats().closes, 1u);  // the stale one; the fresh one is pooled
  EXPECT_EQ(pool.stats().failures, 0u);
  EXPECT_EQ(server_.accepts(), 2);
  ASSERT_EQ(server_.requests().size(), 2u);  // the stale connection never delivered it
  EXPECT_EQ(server_.requests()[1].target(), "/after-retry");
}

TEST_F(UpstreamPoolTest, DoesNotRetryAFreshConnectionOrOneThatAnswered) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> reset, warm, garbage;
  auto body = [&]() -> asio::awaitable<void> {
    Request r1 = client_request(verb::get, "/reset");  // fresh connection closed without an answer
    reset = co_await pool.forward(std::move(r1));
    Request r2 = client_request(verb::get, "/");
    warm = co_await pool.forward(std::move(r2));
    Request r3 = client_request(verb::get, "/garbage");  // reused, but bytes came back
    garbage = co_await pool.forward(std::move(r3));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_FALSE(reset.has_value());
  EXPECT_EQ(reset.error().code, ErrorCode::kUnavailable) << reset.error().to_string();
  ASSERT_TRUE(warm.has_value()) << warm.error().to_string();
  ASSERT_FALSE(garbage.has_value());
  EXPECT_EQ(garbage.error().code, ErrorCode::kUnavailable) << garbage.error().to_string();
  EXPECT_NE(garbage.error().message.find("malformed"), std::string::npos)
      << garbage.error().message;
  EXPECT_EQ(pool.stats().retries, 0u);
  EXPECT_EQ(pool.stats().failures, 2u);
  EXPECT_EQ(server_.accepts(), 2);
  EXPECT_EQ(pool.idle_connections(), 0u);
}

TEST_F(UpstreamPoolTest, ConnectionRefusedIsUnavailableAtOnce) {
  std::uint16_t port = 0;
  {
    tcp::acceptor probe(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }  // closed: nothing listens there now
  UpstreamOptions o = options();
  o.target = {"127.0.0.1", port};
  UpstreamPool pool(ioc_.get_executor(), o);
  Result<Response> result;
  SteadyClock::duration elapsed{};
  auto body = [&]() -> asio::awaitable<void> {
    const auto start = SteadyClock::now();
    Request r = client_request(verb::get, "/");
    result = co_await pool.forward(std::move(r));
    elapsed = SteadyClock::now() - start;
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnavailable) << result.error().to_string();
  EXPECT_LT(elapsed, seconds(2));  // far below connect_timeout (5 s): refused, not timed out
  EXPECT_EQ(pool.stats().failures, 1u);
  EXPECT_EQ(pool.stats().connects, 0u);
  EXPECT_EQ(pool.stats().connect_failures, 1u);
  EXPECT_EQ(pool.stats().closes, 0u);  // never established
}

TEST_F(UpstreamPoolTest, SlowUpstreamIsDeadlineExceeded) {
  UpstreamOptions o = options();
  o.timeout = milliseconds(200);
  UpstreamPool pool(ioc_.get_executor(), o);
  Result<Response> result;
  SteadyClock::duration elapsed{};
  auto body = [&]() -> asio::awaitable<void> {
    const auto start = SteadyClock::now();
    Request r = client_request(verb::get, "/slow");  // answers after 5 s
    result = co_await pool.forward(std::move(r));
    elapsed = SteadyClock::now() - start;
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kDeadlineExceeded) << result.error().to_string();
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LT(elapsed, seconds(1));
  EXPECT_EQ(pool.stats().timeouts, 1u);
  EXPECT_EQ(pool.stats().failures, 0u);
  EXPECT_EQ(pool.idle_connections(), 0u);
}

// A listener whose accept queue is full drops new SYNs (Linux), so the connect hangs.
TEST_F(UpstreamPoolTest, ConnectTimeoutIsDeadlineExceeded) {
  tcp::acceptor full(ioc_);
  const tcp::endpoint any(asio::ip::make_address("127.0.0.1"), 0);
  full.open(any.protocol());
  full.bind(any);
  full.listen(0);
  const tcp::endpoint endpoint = full.local_endpoint();
  std::vector<std::unique_ptr<tcp::socket>> fillers;
  UpstreamOptions o = options();
  o.target = {"127.0.0.1", endpoint.port()};
  o.connect_timeout = milliseconds(200);
  UpstreamPool pool(ioc_.get_executor(), o);
  Result<Response> result;
  SteadyClock::duration elapsed{};
  auto body = [&]() -> asio::awaitable<void> {
    // Fill the accept queue (backlog 0 holds one; a second may be needed on some kernels):
    // each filler connect either completes at once or hangs, so wait for it with a bound.
    for (int i = 0; i < 2; ++i) {
      fillers.push_back(std::make_unique<tcp::socket>(ioc_));
      auto connected = std::make_shared<bool>(false);  // the handler may outlive this frame
      fillers.back()->async_connect(endpoint,
                                    [connected](const error_code& ec) { *connected = !ec; });
      if (!co_await eventually([&connected] { return *connected; }, milliseconds(300))) break;
    }
    const auto start = SteadyClock::now();
    Request r = client_request(verb::get, "/");
    result = co_await pool.forward(std::move(r));
    elapsed = SteadyClock::now() - start;
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kDeadlineExceeded) << result.error().to_string();
  EXPECT_LT(elapsed, seconds(2));  // connect_timeout, not timeout (10 s)
  EXPECT_EQ(pool.stats().timeouts, 1u);
}

TEST_F(UpstreamPoolTest, OversizedResponsesAreUnavailable) {
  UpstreamOptions o = options();
  o.max_response_body_bytes = 1024 * 1024;  // the server sends 2 MiB
  o.max_response_header_bytes = 16 * 1024;  // the server sends 32 KiB
  UpstreamPool pool(ioc_.get_executor(), o);
  Result<Response> huge, huge_chunked, big_header, small;
  auto body = [&]() -> asio::awaitable<void> {
    Request r1 = client_request(verb::get, "/huge");
    huge = co_await pool.forward(std::move(r1));
    Request r2 = client_request(verb::get, "/huge-chunked");
    huge_chunked = co_await pool.forward(std::move(r2));
    Request r3 = client_request(verb::get, "/big-header");
    big_header = co_await pool.forward(std::move(r3));
    Request r4 = client_request(verb::get, "/");
    small = co_await pool.forward(std::move(r4));
  };
  ASSERT_TRUE(run(ioc_, body()));
  for (const Result<Response>* r : {&huge, &huge_chunked}) {
    ASSERT_FALSE(r->has_value());
    EXPECT_EQ(r->error().code, ErrorCode::kUnavailable);
    EXPECT_NE(r->error().message.find("body larger than 1048576 bytes"), std::string::npos)
        << r->error().message;
  }
  ASSERT_FALSE(big_header.has_value());
  EXPECT_EQ(big_header.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(big_header.error().message.find("header larger"), std::string::npos)
      << big_header.error().message;
  EXPECT_TRUE(small.has_value());   // the pool is fine afterwards
  EXPECT_EQ(server_.accepts(), 4);  // each oversized response cost its connection
  EXPECT_EQ(pool.stats().failures, 3u);

  // Within the limits, the same 2 MiB arrive whole.
  UpstreamOptions roomy = options();
  roomy.max_response_body_bytes = kHugeBodyBytes;
  UpstreamPool big_pool(ioc_.get_executor(), roomy);
  Result<Response> whole;
  auto again = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::get, "/huge-chunked");
    whole = co_await big_pool.forward(std::move(r));
  };
  ioc_.restart();
  ASSERT_TRUE(run(ioc_, again()));
  ASSERT_TRUE(whole.has_value()) << whole.error().to_string();
  EXPECT_EQ(whole->body().size(), kHugeBodyBytes);
}

// Response bodies draw on options.response_memory, as they grow: a body that does not fit fails
// with kResourceExhausted and leaves nothing taken; a forward()'s `lease` keeps the share until
// the caller drops it.
TEST_F(UpstreamPoolTest, ResponseBodiesHoldTheirShareOfResponseMemoryUntilTheLeaseIsDropped) {
  std::atomic<std::size_t> budget{0};
  UpstreamOptions o = options();
  o.max_response_body_bytes = kHugeBodyBytes;
  o.response_memory = &budget;
  // One 2 MiB body, and the copies of its growth (up to 1 MiB beside 2 MiB), not two bodies.
  o.max_response_memory = kHugeBodyBytes + kHugeBodyBytes * 3 / 4;
  UpstreamPool pool(ioc_.get_executor(), o);
  util::MemoryLease first, refused, refused_chunked, chunked;
  Result<Response> a, b, c, d, e;
  std::size_t held_after_a = 0, held_after_c = 0, held_after_drop = 0, held_after_e = 0;
  auto body = [&]() -> asio::awaitable<void> {
    a = co_await pool.forward(client_request(verb::get, "/huge"), std::nullopt, &first);
    held_after_a = budget.load();
    b = co_await pool.forward(client_request(verb::get, "/huge"), std::nullopt, &refused);
    c = co_await pool.forward(client_request(verb::get, "/huge-chunked"), std::nullopt,
                              &refused_chunked);
    held_after_c = budget.load();
    first.release();
    held_after_drop = budget.load();
    d = co_await pool.forward(client_request(verb::get, "/huge-chunked"), std::nullopt, &chunked);
    e = co_await pool.forward(client_request(verb::get, "/"));  // no lease: given back at once
    held_after_e = budget.load();
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(a.has_value()) << a.error().to_string();
  EXPECT_EQ(a->body().size(), kHugeBodyBytes);
  EXPECT_EQ(held_after_a, kHugeBodyBytes);  // grown to its Content-Length, exactly
  for (const Result<Response>* r : {&b, &c}) {
    ASSERT_FALSE(r->has_value());
    EXPECT_EQ(r->error().code, ErrorCode::kResourceExhausted) << r->error().to_string();
    EXPECT_NE(r->error().message.find("memory for responses"), std::string::npos);
  }
  EXPECT_EQ(refused.bytes(), 0u);
  EXPECT_EQ(refused_chunked.bytes(), 0u);
  EXPECT_EQ(held_after_c, kHugeBodyBytes);  // the refused ones left nothing taken
  EXPECT_EQ(held_after_drop, 0u);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  EXPECT_EQ(d->body().size(), kHugeBodyBytes);
  EXPECT_EQ(chunked.bytes(), kHugeBodyBytes);  // doubled from 4 KiB to its size, 2 MiB
  ASSERT_TRUE(e.has_value()) << e.error().to_string();
  EXPECT_EQ(held_after_e, chunked.bytes());
  EXPECT_EQ(pool.stats().failures, 2u);
  chunked.release();
  EXPECT_EQ(budget.load(), 0u);

  // A share is what the body has allocated, grown as its bytes arrive: an upstream that declares
  // 1 MiB and stalls after 1,000 bytes holds the first allocation (4 KiB), not the 1 MiB; whole,
  // the body holds exactly its declared length (the growth stops there).
  util::MemoryLease parts_lease;
  Result<Response> parts;
  int done = 0;
  std::size_t held_before_body = 0;
  bool answered = false;
  auto watch = [&]() -> asio::awaitable<void> {
    asio::co_spawn(
        ioc_,
        forward_into(pool, client_request(verb::get, "/stall/1048576"), parts, done, &parts_lease),
        asio::detached);
    co_await wait_for(milliseconds(150));
    held_before_body = budget.load();
    answered = co_await eventually([&] { return done == 1; });
  };
  ioc_.restart();
  ASSERT_TRUE(run(ioc_, watch()));
  EXPECT_EQ(held_before_body, 4096u);
  ASSERT_TRUE(answered);
  ASSERT_TRUE(parts.has_value()) << parts.error().to_string();
  EXPECT_EQ(parts->body().size(), 1048576u);
  EXPECT_EQ(parts_lease.bytes(), 1048576u);
}

// A body of a declared length that is not a power of two ends in an allocation of exactly that
// length: its growth doubles from 4 KiB until the next step would pass half of the length, then
// jumps to the length, never past it to the next power of two (1,048,576 for 1,000,000).
TEST_F(UpstreamPoolTest, ABodyOfADeclaredLengthEndsInAnAllocationOfThatLengthExactly) {
  std::atomic<std::size_t> budget{0};
  UpstreamOptions o = options();
  o.max_response_body_bytes = kHugeBodyBytes;
  o.response_memory = &budget;
  UpstreamPool pool(ioc_.get_executor(), o);
  util::MemoryLease lease;
  Result<Response> r;
  auto body = [&]() -> asio::awaitable<void> {
    r = co_await pool.forward(client_request(verb::get, "/stall/1000000"), std::nullopt, &lease);
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->body().size(), 1'000'000u);
  EXPECT_EQ(lease.bytes(), 1'000'000u);
  EXPECT_EQ(budget.load(), 1'000'000u);
  lease.release();
  EXPECT_EQ(budget.load(), 0u);
}

// Beast's parser takes a chunk line and a trailer section only whole from the connection's read
// buffer: a trailer field over 64 KiB threw std::length_error out of the read and ended the
// process, and a long chunk extension grew the buffer without end. The buffer is bounded (64 KiB):
// both are kUnavailable, and the pool serves on.
TEST_F(UpstreamPoolTest, ChunkLinesAndTrailersOver64KiBAreUnavailable) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> trailer, extension, after;
  auto body = [&]() -> asio::awaitable<void> {
    trailer = co_await pool.forward(client_request(verb::get, "/big-trailer"));
    extension = co_await pool.forward(client_request(verb::get, "/big-extension"));
    after = co_await pool.forward(client_request(verb::get, "/chunked"));
  };
  ASSERT_TRUE(run(ioc_, body()));
  for (const Result<Response>* r : {&trailer, &extension}) {
    ASSERT_FALSE(r->has_value());
    EXPECT_EQ(r->error().code, ErrorCode::kUnavailable) << r->error().to_string();
  }
  ASSERT_TRUE(after.has_value()) << after.error().to_string();
  EXPECT_EQ(after->body(), "hello world");
}

// A body read to the end of the connection, whose close arrives with its last bytes: a read that
// waited for epoll's next edge after a short read never saw the close, and the response waited
// out the deadline (kDeadlineExceeded, 504) for the bodies that came in one read.
TEST_F(UpstreamPoolTest, ABodyToTheEndOfTheConnectionEndsWithTheClose) {
  UpstreamOptions o = options();
  o.timeout = seconds(2);
  UpstreamPool pool(ioc_.get_executor(), o);
  const std::vector<std::size_t> sizes = {0, 100, 100000};
  std::vector<Result<Response>> results;
  auto body = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 4; ++i) {
      for (const std::size_t n : sizes) {
        results.push_back(
            co_await pool.forward(client_request(verb::get, "/no-length/" + std::to_string(n))));
      }
    }
  };
  ASSERT_TRUE(run(ioc_, body(), seconds(60)));
  ASSERT_EQ(results.size(), 4 * sizes.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    const std::size_t n = sizes[i % sizes.size()];
    ASSERT_TRUE(results[i].has_value()) << n << " bytes: " << results[i].error().to_string();
    EXPECT_EQ(results[i]->body().size(), n);
  }
}

TEST_F(UpstreamPoolTest, ChunkedResponseIsReadWhole) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> result, next;
  auto body = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::get, "/chunked");
    result = co_await pool.forward(std::move(r));
    Request r2 = client_request(verb::get, "/");
    next = co_await pool.forward(std::move(r2));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ(result->body(), "hello world");
  EXPECT_EQ(result->count(field::transfer_encoding), 0u);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(server_.accepts(), 1);  // chunked is length-delimited: the connection was reused
}

TEST_F(UpstreamPoolTest, AnAnswerThatArrivesInPartsIsReadWhole) {
  // After a read that returned less than its room, the next read of the connection waits for new
  // bytes (util::RoomReads): none may be left unread, wherever the answer is split and however
  // late its second part comes. One kept-alive connection for every round.
  UpstreamPool pool(ioc_.get_executor(), options());
  const std::size_t header_bytes = kParts.find("\r\n\r\n") + 4;
  int forwarded = 0;
  std::string failure;
  auto body = [&]() -> asio::awaitable<void> {
    for (const std::size_t at :
         {std::size_t{9}, header_bytes - 1, header_bytes, header_bytes + 4}) {
      for (const long gap : {0L, 50L, 2000L}) {
        for (int round = 0; round < 5; ++round) {
          const std::string target = "/parts/" + std::to_string(at) + "/" + std::to_string(gap);
          Result<Response> res = co_await pool.forward(client_request(verb::get, target));
          if (!res || res->body() != "0123456789") {
            failure =
                target + ": " + (res ? "body \"" + res->body() + "\"" : res.error().to_string());
            co_return;
          }
          ++forwarded;
        }
      }
    }
  };
  ASSERT_TRUE(run(ioc_, body()));
  EXPECT_EQ(failure, "");
  EXPECT_EQ(forwarded, 4 * 3 * 5);
  EXPECT_EQ(server_.accepts(), 1);
}

TEST_F(UpstreamPoolTest, HeadAnd204HaveNoBodyAndKeepTheConnection) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> head, no_content, get;
  auto body = [&]() -> asio::awaitable<void> {
    Request r1 = client_request(verb::head, "/doc");
    head = co_await pool.forward(std::move(r1));
    Request r2 = client_request(verb::delete_, "/no-content");
    no_content = co_await pool.forward(std::move(r2));
    Request r3 = client_request(verb::get, "/doc");
    get = co_await pool.forward(std::move(r3));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(head.has_value()) << head.error().to_string();
  EXPECT_EQ(head->result(), beast_http::status::ok);
  EXPECT_TRUE(head->body().empty());
  EXPECT_EQ((*head)[field::content_length], "1234");  // describes the GET; kept
  ASSERT_TRUE(no_content.has_value()) << no_content.error().to_string();
  EXPECT_EQ(no_content->result(), beast_http::status::no_content);
  ASSERT_TRUE(get.has_value()) << get.error().to_string();
  EXPECT_EQ((*get)["X-Echo-Target"], "/doc");
  EXPECT_EQ(server_.accepts(), 1);
  EXPECT_EQ(pool.stats().reuses, 2u);
  EXPECT_EQ(pool.stats().retries, 0u);
}

TEST_F(UpstreamPoolTest, InterimResponsesAreSkipped) {
  UpstreamPool pool(ioc_.get_executor(), options());
  Result<Response> result;
  auto body = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::post, "/continue");
    r.set(field::expect, "100-continue");
    r.body() = "data";
    r.prepare_payload();
    result = co_await pool.forward(std::move(r));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ(result->result(), beast_http::status::ok);
  EXPECT_EQ(result->body(), "done");
}

TEST_F(UpstreamPoolTest, ConnectionsPastIdleTimeoutAreNotReused) {
  UpstreamOptions o = options();
  o.idle_timeout = milliseconds(20);
  UpstreamPool pool(ioc_.get_executor(), o);
  Result<Response> first, second;
  bool old_one_closed = false;
  auto body = [&]() -> asio::awaitable<void> {
    Request r1 = client_request(verb::get, "/");
    first = co_await pool.forward(std::move(r1));
    co_await wait_for(milliseconds(60));  // the time passing is what is tested
    Request r2 = client_request(verb::get, "/");
    second = co_await pool.forward(std::move(r2));
    old_one_closed = co_await eventually([&] { return server_.closed() == 1; });
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(server_.accepts(), 2);
  EXPECT_EQ(pool.stats().reuses, 0u);
  EXPECT_TRUE(old_one_closed);  // closed, not merely left aside
  EXPECT_EQ(pool.idle_connections(), 1u);
}

TEST_F(UpstreamPoolTest, ResponsesThatEndTheConnectionAreNotPooled) {
  UpstreamPool pool(ioc_.get_executor(), options());
  std::vector<std::string> bodies;
  std::vector<std::size_t> idle_after;
  auto body = [&]() -> asio::awaitable<void> {
    for (std::string target : {"/connection-close", "/http10", "/no-length"}) {
      Request r = client_request(verb::get, target);
      Result<Response> result = co_await pool.forward(std::move(r));
      EXPECT_TRUE(result.has_value()) << target << ": " << result.error().to_string();
      bodies.push_back(result ? result->body() : "");
      idle_after.push_back(pool.idle_connections());
    }
  };
  ASSERT_TRUE(run(ioc_, body()));
  EXPECT_EQ(bodies[1], "ok");
  EXPECT_EQ(bodies[2], "until the end");
  EXPECT_EQ(idle_after, (std::vector<std::size_t>{0, 0, 0}));
  EXPECT_EQ(server_.accepts(), 3);
  EXPECT_EQ(pool.stats().retries, 0u);
}

TEST_F(UpstreamPoolTest, CloseIdleAndDestructionCloseConnections) {
  auto pool = std::make_unique<UpstreamPool>(ioc_.get_executor(), options());
  bool closed_by_close_idle = false, closed_by_destructor = false;
  auto body = [&]() -> asio::awaitable<void> {
    Request r1 = client_request(verb::get, "/");
    Result<Response> first = co_await pool->forward(std::move(r1));
    EXPECT_TRUE(first.has_value());
    EXPECT_EQ(pool->idle_connections(), 1u);
    pool->close_idle();
    EXPECT_EQ(pool->idle_connections(), 0u);
    closed_by_close_idle = co_await eventually([&] { return server_.closed() == 1; });
    Request r2 = client_request(verb::get, "/");
    Result<Response> second = co_await pool->forward(std::move(r2));  // a new connection
    EXPECT_TRUE(second.has_value());
    pool.reset();
    closed_by_destructor = co_await eventually([&] { return server_.closed() == 2; });
  };
  ASSERT_TRUE(run(ioc_, body()));
  EXPECT_TRUE(closed_by_close_idle);
  EXPECT_TRUE(closed_by_destructor);
  EXPECT_EQ(server_.accepts(), 2);
}

TEST_F(UpstreamPoolTest, APoolDestroyedMidForwardLetsTheForwardFinish) {
  auto pool = std::make_unique<UpstreamPool>(ioc_.get_executor(), options());
  Result<Response> result;
  int done = 0;
  bool finished = false, connection_closed = false;
  auto body = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::get, "/delay");
    asio::co_spawn(ioc_, forward_into(*pool, std::move(r), result, done), asio::detached);
    // Destroy the pool while the request is at the upstream.
    if (!co_await eventually([&] { return server_.requests().size() == 1; })) co_return;
    pool.reset();
    finished = co_await eventually([&] { return done == 1; });
    connection_closed = co_await eventually([&] { return server_.closed() == 1; });
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(finished);
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ((*result)["X-Echo-Target"], "/delay");
  EXPECT_TRUE(connection_closed);  // not pooled into a pool that is gone
}

TEST_F(UpstreamPoolTest, ResolvesAHostName) {
  UpstreamOptions o = options();
  o.target.host = "localhost";
  UpstreamPool pool(ioc_.get_executor(), o);
  Result<Response> result;
  auto body = [&]() -> asio::awaitable<void> {
    Request r = client_request(verb::get, "/by-name");
    result = co_await pool.forward(std::move(r));
  };
  ASSERT_TRUE(run(ioc_, body()));
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  EXPECT_EQ((*result)["X-Echo-Target"], "/by-name");
}

}  // namespace
}  // namespace fg::http
