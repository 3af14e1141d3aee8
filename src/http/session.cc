// session.cc — a connection's I/O: reading, limits and timeouts, writing (server_impl.h).
#include <algorithm>
#include <array>
#include <boost/beast/core/buffers_suffix.hpp>
#include <stdexcept>

#include "http/server_impl.h"
#include "util/read_room.h"

// g++ 12 warns that the frame of a coroutine defined outside its class (here session()) is freed
// by a mismatched operator delete: it pairs Asio's awaitable_frame_base operator new/delete
// itself, and the warning is a false positive of its coroutine lowering (the same coroutines
// defined in the class body draw none).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace fg::http {

auto Server::Impl::read_body(Inbound& in) -> awaitable<int> {
  if (in.parser.is_done()) co_return kBodyRead;
  const auto length = in.parser.content_length();
  const std::size_t need =
      length ? static_cast<std::size_t>(std::min<std::uint64_t>(*length, in.limits.max_body_bytes))
             : in.limits.max_body_bytes;
  in.body = util::MemoryLease(&body_memory);
  if (!in.body.grow_to(need, in.limits.max_body_memory)) co_return 503;
  if (beast::iequals(in.parser.get()[beast::http::field::expect], "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    in.stream.expires_after(in.limits.write_timeout);
    auto [cec, cn] = co_await asio::async_write(
        in.stream, asio::buffer(kContinue.data(), kContinue.size()), kTuple);
    (void)cn;
    if (cec) co_return kClientGone;
  }
  in.stream.expires_after(in.limits.body_timeout);
  const std::size_t unbounded = in.buffer.max_size();
  in.buffer.max_size(std::max(kBodyReadBufferBytes, in.buffer.size()));
  auto [ec, n] = co_await beast::http::async_read(in.stream, in.buffer, in.parser, kTuple);
  in.buffer.max_size(unbounded);
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

auto Server::Impl::linger(beast::tcp_stream& stream) -> awaitable<void> {
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

auto Server::Impl::scan_header(const beast::flat_buffer& buffer, std::size_t limit,
                               std::size_t& scanned) -> boost::system::error_code {
  const std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
  std::size_t end = data.find("\r\n\r\n", scanned < 3 ? 0 : scanned - 3);
  if (end == std::string_view::npos) end = data.find("\n\n", scanned < 1 ? 0 : scanned - 1);
  if (end != std::string_view::npos) {
    const std::string_view header = data.substr(0, end + 1);
    if (header.find("\n ") != std::string_view::npos ||
        header.find("\n\t") != std::string_view::npos) {
      return beast::http::error::bad_value;
    }
    return {};
  }
  if (data.size() > limit) return {};
  scanned = data.size();
  return beast::http::error::need_more;
}

auto Server::Impl::read_whole_header(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                     std::size_t limit, std::size_t scanned)
    -> awaitable<boost::system::error_code> {
  for (;;) {
    auto [ec, n] = co_await stream.async_read_some(util::ReadRoom{buffer.prepare(4096)}, kTuple);
    if (ec) co_return ec;
    buffer.commit(n);
    const boost::system::error_code scan = scan_header(buffer, limit, scanned);
    if (scan != beast::http::error::need_more) co_return scan;
  }
}

auto Server::Impl::session(Worker& w, tcp::socket socket, bool admin) -> awaitable<void> {
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
  // Synchronous writes (the answers, below) must never wait: they fail with would_block instead,
  // and the rest is written asynchronously. Asynchronous operations are not affected.
  stream.socket().non_blocking(true, ec);
  if (ec) co_return;
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
  std::string out;      // each answer's bytes: its capacity serves the next answer too
  std::string identity;  // the last request's identity: its capacity serves the next one's
  RequestArena arena;   // each request's fields: freed at once when the next one begins

  for (;;) {
    const config::ServerLimits limits = w.runtime->config->server;
    if (buffer.size() == 0) {  // idle: wait for the next request's first byte
      // Draining, past drain_delay: an idle kept-alive connection ends here. Before that it
      // is still served (each answer then says Connection: close), as are new connections,
      // so a load balancer can read /readyz and nothing in flight is cut.
      if (served && closing_idle.load(std::memory_order_relaxed)) break;
      // The wait is bounded by idle_timeout through idle_sweep() (server.cc), which cancels this
      // read, rather than by a timer armed and cancelled around every read.
      entry.idle = true;
      entry.idle_since = std::chrono::steady_clock::now();
      // A ReadRoom (util/read_room.h): after a read that emptied the socket, the next one waits for
      // epoll rather than first failing with EAGAIN.
      auto [rec, n] =
          co_await stream.socket().async_read_some(util::ReadRoom{buffer.prepare(4096)}, kTuple);
      entry.idle = false;
      if (rec) break;
      buffer.commit(n);
    }
    // The previous request's parser, exchange and answer are gone: its fields' memory is free.
    arena.reset();
    RequestParser parser(std::piecewise_construct, std::make_tuple(),
                         std::make_tuple(ArenaAllocator<char>(&arena)));
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    // The header phase has its own timer, which cancels the read instead of closing the
    // socket (as the stream's own timeout does), so the client can still be told 408. It is
    // armed only when the header section is not already whole in the buffer: usually it came
    // with the request's first bytes, and is parsed at once, with no timer and no read.
    stream.expires_never();
    bool timed = false;
    const auto arm_header_timer = [&] {
      timed = true;
      watchdog->fired = false;
      header_timer.expires_after(limits.header_timeout);
      header_timer.async_wait([wd = watchdog](const boost::system::error_code& tec) {
        if (tec || wd->socket == nullptr) return;
        wd->fired = true;
        boost::system::error_code ignored;
        wd->socket->cancel(ignored);
      });
    };
    std::size_t scanned = 0;
    boost::system::error_code hec = scan_header(buffer, limits.max_header_bytes, scanned);
    if (hec == beast::http::error::need_more) {
      arm_header_timer();
      hec = co_await read_whole_header(stream, buffer, limits.max_header_bytes, scanned);
    }
    if (!hec) {
      // What async_read_header would do with the bytes already read, without posting its
      // completion through the io_context: one put() takes the header section (or finds it
      // over header_limit: 431) and leaves the body in the buffer.
      // Beast keeps a field's name and value in at most 65,535 bytes each, and throws
      // std::length_error for a longer one, which max_header_bytes (up to 1 MiB) lets through:
      // that is a header too large for floodgate, 431, like one over max_header_bytes.
      try {
        const std::size_t used = parser.put(buffer.data(), hec);
        buffer.consume(used);
        if (hec == beast::http::error::need_more) {  // not expected: let Beast read the rest
          if (!timed) arm_header_timer();
          auto [rec, rn] = co_await beast::http::async_read_header(stream, buffer, parser, kTuple);
          (void)rn;
          hec = rec;
        }
      } catch (const std::length_error&) {
        hec = beast::http::error::header_limit;
      }
    }
    if (timed) {
      header_timer.cancel();
      if (watchdog->fired) hec = beast::error::timeout;
    }
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
    Exchange x = begin(req, w, peer_ip, admin, identity);
    Inbound in{stream,
               buffer,
               parser,
               limits,
               static_cast<std::size_t>(std::distance(req.begin(), req.end())),
               out};
    Reply reply;
    if (!respond_now(req, w, peer, x, parser.is_done(), out, reply)) {
      co_await respond(req, w, peer, x, in, reply);
    }
    if (reply.abandon) break;
    const bool keep_alive = reply.written ? reply.keep_alive : reply.response.keep_alive();
    served = true;
    // A large body (an upstream's) is written from the response itself, behind its head: copied
    // into `out`, it would be held twice, and `out` would keep its capacity for the connection's
    // life. Its share of response memory goes when the Reply does, after the write.
    std::string_view body;
    if (!reply.written) {
      if (reply.response.body().size() > kBodyApartBytes) {
        serialize_response_head(out, reply.response, reply.fields);
        body = reply.response.body();
      } else {
        serialize_response(out, reply.response, reply.fields);
      }
    }
    // Written at once when the socket takes the whole answer (it usually fits the send buffer):
    // the send async_write would try first anyway, without its completion posted through the
    // io_context. What is left is written asynchronously, within write_timeout.
    const std::array<asio::const_buffer, 2> wire = {asio::buffer(out),
                                                    asio::buffer(body.data(), body.size())};
    const std::size_t total = out.size() + body.size();
    boost::system::error_code wec;
    const std::size_t sent = body.empty() ? stream.socket().write_some(wire[0], wec)
                                          : stream.socket().write_some(wire, wec);
    if (wec == asio::error::would_block || (!wec && sent < total)) {
      stream.expires_after(limits.write_timeout);
      beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(wire);
      rest.consume(sent);
      auto [aec, an] = co_await asio::async_write(stream, rest, kTuple);
      (void)an;
      wec = aec;
    }
    // A large head (an upstream's fields) does not stay with the connection.
    if (out.capacity() > kBodyApartBytes) std::string().swap(out);
    if (wec) break;
    if (reply.linger) {
      co_await linger(stream);
      break;
    }
    if (!keep_alive) break;
    identity = std::move(x.route.identities.empty() ? x.route.spare : x.route.identities.front());
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.socket().close(ec);
}

auto Server::Impl::accept_loop(tcp::acceptor& listener, bool admin) -> awaitable<void> {
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

}  // namespace fg::http
