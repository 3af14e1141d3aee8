// upstream.cc — see upstream.h.
//
// Shape: UpstreamPool owns a shared UpstreamPoolState (options, idle connections, counters);
// every forward() coroutine holds its own reference, so a pool destroyed while forwards are in
// flight leaves them a valid state to finish against (they then close their connections).
//
// Timeouts use beast::tcp_stream's expiry: set to the forward's deadline before each operation,
// it closes the socket when the deadline passes and the operation completes with
// beast::error::timeout. Resolution has no such expiry; it is waited for on a timer instead (see
// resolve()).
#include "http/upstream.h"

#include <algorithm>
#include <array>
#include <bit>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/read_room.h"

namespace fg::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;

namespace detail {

struct UpstreamConnection {
  UpstreamConnection(const asio::any_io_executor& executor,
                     std::shared_ptr<UpstreamCounters> pool_counters)
      : stream(executor), counters(std::move(pool_counters)) {}
  ~UpstreamConnection() {
    if (established) counters->closes.fetch_add(1, std::memory_order_relaxed);
  }
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  beast::tcp_stream stream;  // closed by its destructor
  // Shared: a connection may outlive its pool's state (a forward's frame torn down last).
  std::shared_ptr<UpstreamCounters> counters;
  bool established = false;  // connected: its destruction is a close
  // Bytes read past the last response: must be empty to pool. At most 64 KiB (the response
  // header's bound): Beast takes a chunk line and a trailer section only whole from it, without a
  // bound of its own, and a trailer field value over 65,533 bytes throws out of its read.
  beast::flat_buffer buffer{64 * 1024};
  // The request line and fields being written (serialize_request): at most a header section's
  // size, as the body is written from the request itself.
  std::string head;
  SteadyTime idle_since{};  // when it went back to the pool
};

struct UpstreamPoolState {
  asio::any_io_executor executor;
  UpstreamOptions options;
  std::string name;  // "upstream 127.0.0.1:8080", the prefix of every error message
  // Oldest first. Connections are pushed at the back with the current time and taken from the
  // back (the most recently used is the least likely to have been closed upstream), so the
  // front is always the one idle the longest: expiry pops from the front.
  std::shared_ptr<UpstreamCounters> counters;  // never null
  std::deque<std::unique_ptr<UpstreamConnection>> idle;
  bool pool_destroyed = false;  // forwards still in flight close their connections
};

}  // namespace detail

namespace {

void bump(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

using detail::UpstreamConnection;
using State = detail::UpstreamPoolState;

// A bound on interim (1xx) responses before the final one; real servers send one or two
// (100 Continue, 103 Early Hints). More is a misbehaving upstream.
constexpr int kMaxInterimResponses = 8;

std::string ms_text(Duration d) { return std::to_string(d.count() / 1000) + " ms"; }

// The smallest allocation of a body of unknown length (a declared length smaller than this is
// allocated as it is).
constexpr std::size_t kFirstBodyBytes = 4 * 1024;

// Beast's string_body, read under a share of response memory (UpstreamOptions::response_memory).
// The body's string is grown here, not by resize(): as its bytes arrive (never for bytes not
// received: an upstream that declares a large body and stalls holds only what it sent), in powers
// of two from kFirstBodyBytes, to a declared Content-Length at once past half of it; and the share
// is its allocation, counting, while the bytes move to a larger one, both. What does not fit stops
// the read with errc::not_enough_memory. Only read: the response handed on is a string_body one.
struct CountedBody {
  struct value_type {
    std::string text;
    util::MemoryLease* lease = nullptr;  // null: not counted
    std::size_t bound = 0;
  };

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(beast_http::header<isRequest, Fields>& /*header*/, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, error_code& ec) {
      ec = {};
      if (length) length_ = static_cast<std::size_t>(*length);
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, error_code& ec) {
      ec = {};
      const std::size_t n = asio::buffer_size(buffers);
      std::string& text = body_.text;
      const std::size_t size = text.size() + n;
      if (size > text.capacity() && !grow(size, ec)) return 0;
      text.resize(size);  // within the capacity: no allocation
      asio::buffer_copy(asio::buffer(text.data() + size - n, n), buffers);
      return n;
    }

    void finish(error_code& ec) { ec = {}; }

   private:
    // What a string holds on the heap (none while its bytes fit in the string itself).
    static std::size_t allocated(const std::string& s) {
      static const std::size_t inline_capacity = std::string().capacity();
      return s.capacity() > inline_capacity ? s.capacity() : 0;
    }

    // A new allocation of at least `size` bytes, the bytes moved into it.
    bool grow(std::size_t size, error_code& ec) {
      std::string& text = body_.text;
      // Powers of two: a body of one (a common size) ends in an allocation of its size.
      std::size_t capacity = std::bit_ceil(std::max({size, 2 * allocated(text), kFirstBodyBytes}));
      // A declared length is allocated once the doubling would pass half of it (not in a last
      // step that would hold a copy of nearly all of it beside it).
      if (length_ && capacity > *length_ / 2) capacity = std::max(*length_, size);
      util::MemoryLease* lease = body_.lease;
      // The old allocation and the new one, while the bytes move.
      if (lease != nullptr && !lease->grow_to(capacity + allocated(text), body_.bound)) {
        ec = make_error_code(boost::system::errc::not_enough_memory);
        return false;
      }
      // Reserved on an empty string, the capacity is what is asked (reserve() on a full one may
      // double it instead).
      std::string larger;
      larger.reserve(capacity);
      larger.append(text);
      text.swap(larger);
      if (lease != nullptr) lease->shrink_to(allocated(text));
      return true;
    }

    value_type& body_;
    std::optional<std::size_t> length_;  // the declared Content-Length, if any
  };
};

// One failed I/O step as an Error: the tcp_stream expiry is the deadline; Beast's parser errors
// and a connection closed or reset mid-way are the upstream's fault (kUnavailable).
Error io_error(const State& state, std::string_view step, const error_code& ec) {
  const std::string& name = state.name;
  if (ec == beast::error::timeout) {
    return make_error(ErrorCode::kDeadlineExceeded,
                      name + ": no complete response within " + ms_text(state.options.timeout));
  }
  if (ec == beast_http::error::body_limit) {
    return make_error(ErrorCode::kUnavailable,
                      name + ": response body larger than " +
                          std::to_string(state.options.max_response_body_bytes) + " bytes");
  }
  if (ec == boost::system::errc::not_enough_memory) {
    return make_error(ErrorCode::kResourceExhausted,
                      name + ": the response body does not fit the memory for responses (" +
                          std::to_string(state.options.max_response_memory) +
                          " bytes held at once)");
  }
  if (ec == beast_http::error::header_limit) {
    return make_error(ErrorCode::kUnavailable,
                      name + ": response header larger than " +
                          std::to_string(state.options.max_response_header_bytes) + " bytes");
  }
  if (ec == beast_http::error::end_of_stream || ec == beast_http::error::partial_message ||
      ec == asio::error::eof) {
    return make_error(ErrorCode::kUnavailable,
                      name + ": connection closed before a complete response");
  }
  if (ec.category() == beast_http::make_error_code(beast_http::error::bad_version).category()) {
    return make_error(ErrorCode::kUnavailable, name + ": malformed response: " + ec.message());
  }
  return make_error(ErrorCode::kUnavailable, name + ": " + std::string(step) + ": " + ec.message());
}

// The addresses of the target. An IP literal needs no resolver. A host name goes to Asio's
// resolver (getaddrinfo on a private thread), whose cancel() cannot interrupt a getaddrinfo in
// progress: so the result is not awaited directly but signalled through a timer armed at the
// deadline. Past the deadline the caller gets kDeadlineExceeded at once; the abandoned lookup
// finishes in the background, holding its own state.
asio::awaitable<Result<std::vector<tcp::endpoint>>> resolve(const State& state,
                                                            SteadyTime deadline) {
  const config::HostPort& target = state.options.target;
  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  const asio::ip::address address = asio::ip::make_address(target.host, ec);
  if (!ec) {
    endpoints.emplace_back(address, target.port);
    co_return endpoints;
  }

  struct Lookup {
    explicit Lookup(const asio::any_io_executor& executor) : resolver(executor), wake(executor) {}
    tcp::resolver resolver;
    asio::steady_timer wake;  // expires at the deadline; cancelled when the lookup is done
    bool done = false;
    error_code ec;
    tcp::resolver::results_type results;
  };
  auto lookup = std::make_shared<Lookup>(state.executor);
  lookup->wake.expires_at(deadline);
  lookup->resolver.async_resolve(
      target.host, std::to_string(target.port),
      [lookup](const error_code& e, tcp::resolver::results_type results) {
        lookup->done = true;
        lookup->ec = e;
        lookup->results = std::move(results);
        lookup->wake.cancel();
      });
  error_code wait_ec;  // expiry or cancellation: `done` says which mattered
  co_await lookup->wake.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
  if (!lookup->done) {
    lookup->resolver.cancel();
    co_return fail(ErrorCode::kDeadlineExceeded, state.name + ": resolving " + target.host +
                                                     " took longer than " +
                                                     ms_text(state.options.connect_timeout));
  }
  if (lookup->ec) {
    co_return fail(ErrorCode::kUnavailable,
                   state.name + ": resolve " + target.host + ": " + lookup->ec.message());
  }
  for (const auto& entry : lookup->results) endpoints.push_back(entry.endpoint());
  co_return endpoints;
}

// A new connection, resolve + connect bounded by connect_timeout (and the forward's deadline).
asio::awaitable<Result<std::unique_ptr<UpstreamConnection>>> connect(State& state,
                                                                     SteadyTime deadline) {
  const SteadyTime connect_deadline =
      std::min(deadline, SteadyClock::now() + state.options.connect_timeout);
  Result<std::vector<tcp::endpoint>> endpoints = co_await resolve(state, connect_deadline);
  if (!endpoints) co_return tl::unexpected<Error>(std::move(endpoints.error()));

  auto conn = std::make_unique<UpstreamConnection>(state.executor, state.counters);
  conn->stream.expires_at(connect_deadline);
  error_code ec;
  // Every address in turn (localhost: ::1, then 127.0.0.1); the error is the last one's.
  co_await conn->stream.async_connect(*endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == beast::error::timeout) {
    const bool connect_bound = connect_deadline < deadline;
    co_return fail(
        ErrorCode::kDeadlineExceeded,
        state.name + ": no connection within " +
            ms_text(connect_bound ? state.options.connect_timeout : state.options.timeout));
  }
  if (ec) co_return fail(ErrorCode::kUnavailable, state.name + ": connect: " + ec.message());
  error_code ignored;
  // One write per request: Nagle would only delay it behind the previous one's ACK.
  conn->stream.socket().set_option(tcp::no_delay(true), ignored);
  // exchange() first tries to write the request at once, without waiting for the reactor.
  conn->stream.socket().non_blocking(true, ignored);
  conn->established = true;
  bump(state.counters->connects);
  co_return conn;
}

// What one request/response exchange on one connection came to.
struct Exchange {
  Result<Response> response;
  util::MemoryLease lease;  // the body's share of options.response_memory, with `response`
  bool got_bytes = false;   // some response byte arrived: the upstream saw the request
  bool reusable = false;    // the connection may go back to the pool
};

using ResponseParser = beast_http::response_parser<CountedBody>;

// Parses what `conn` has buffered into `parser`, as far as it goes.
void parse_buffered(UpstreamConnection& conn, ResponseParser& parser, error_code& ec) {
  while (!ec && conn.buffer.size() > 0 && !parser.is_done()) {
    const std::size_t used = parser.put(conn.buffer.data(), ec);
    conn.buffer.consume(used);
    if (ec == beast_http::error::need_more) {
      ec = {};
      return;
    }
    if (used == 0) return;
  }
}

// Reads what the socket holds now, without waiting, and parses it: until the socket is empty,
// the response is whole, the upstream has closed, or a read fails.
void read_now(UpstreamConnection& conn, ResponseParser& parser, error_code& ec) {
  while (!ec && !parser.is_done()) {
    const std::size_t room = conn.buffer.max_size() - conn.buffer.size();
    if (room == 0) {
      ec = beast_http::error::buffer_overflow;
      return;
    }
    const std::size_t n = conn.stream.socket().read_some(conn.buffer.prepare(room), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      return;
    }
    if (ec == asio::error::eof) {  // as Beast's read judges the end of the stream
      ec = {};
      if (parser.got_some()) {
        parser.put_eof(ec);
      } else {
        ec = beast_http::error::end_of_stream;
      }
      return;
    }
    if (ec) return;
    conn.buffer.commit(n);
    parse_buffered(conn, parser, ec);
  }
}

// One response from `conn` into `parser`. The first read, unless bytes are already buffered
// (after an interim response), goes through a ReadRoom (util/read_room.h): unless floodgate is
// busy, the answer is not there yet when the request has just been written, and the read waits
// for epoll rather than first failing with EAGAIN. What it brought is parsed at once, without an
// operation of Beast's (whose completion would be posted). A response not whole yet is read on
// at once, without waiting, before Beast's read waits for more: after a short read through a
// ReadRoom, Asio waits for epoll's next edge before it reads again, and a close that came with the
// bytes makes none (a body read to the end of the connection then waited out the deadline: 504,
// not 200). A coroutine of its own: in exchange(), the reads made its frame larger than the
// blocks Asio recycles (server_frames_test.cc).
asio::awaitable<error_code> read_response(UpstreamConnection& conn, ResponseParser& parser) {
  error_code ec;
  parser.eager(true);
  if (conn.buffer.size() == 0) {
    const std::size_t n = co_await conn.stream.async_read_some(
        util::ReadRoom{conn.buffer.prepare(conn.buffer.max_size())},
        asio::redirect_error(asio::use_awaitable, ec));
    conn.buffer.commit(n);
    if (ec == asio::error::eof) co_return beast_http::error::end_of_stream;
    if (ec) co_return ec;
  }
  parse_buffered(conn, parser, ec);
  if (!ec && !parser.is_done()) read_now(conn, parser, ec);
  if (!ec && !parser.is_done()) {
    co_await beast_http::async_read(conn.stream, conn.buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return ec;
}

asio::awaitable<Exchange> exchange(const State& state, UpstreamConnection& conn,
                                   const Request& request, SteadyTime deadline) {
  Exchange out;
  error_code ec;
  conn.stream.expires_at(deadline);
  // The head from the connection's buffer, the body from the request itself (never copied):
  // written at once when the socket takes them (a request usually fits the send buffer), as the
  // session writes its answers; what is left is written asynchronously, within the deadline.
  const std::string_view tail = serialize_request(conn.head, request);
  const std::array<asio::const_buffer, 3> wire = {asio::buffer(conn.head),
                                                  asio::buffer(request.body()), asio::buffer(tail)};
  const std::size_t total = asio::buffer_size(wire);
  tcp::socket& socket = conn.stream.socket();
  const std::size_t sent = socket.non_blocking() ? socket.write_some(wire, ec) : 0;
  if (ec == asio::error::would_block || (!ec && sent < total)) {
    ec = {};
    beast::buffers_suffix<std::array<asio::const_buffer, 3>> rest(wire);
    rest.consume(sent);
    co_await asio::async_write(conn.stream, rest, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    out.response = tl::unexpected<Error>(io_error(state, "write the request", ec));
    co_return out;
  }

  const UpstreamOptions& options = state.options;
  const auto header_limit = static_cast<std::uint32_t>(std::min<std::size_t>(
      options.max_response_header_bytes, std::numeric_limits<std::uint32_t>::max()));
  for (int interim = 0; interim <= kMaxInterimResponses; ++interim) {
    ResponseParser parser;
    parser.header_limit(header_limit);
    parser.body_limit(static_cast<std::uint64_t>(options.max_response_body_bytes));
    if (options.response_memory != nullptr) {
      out.lease = util::MemoryLease(options.response_memory);
      parser.get().body().lease = &out.lease;
      parser.get().body().bound = options.max_response_memory;
    }
    // A response to HEAD carries the Content-Length of the GET it describes, and no body.
    if (request.method() == beast_http::verb::head) parser.skip(true);

    ec = co_await read_response(conn, parser);
    out.got_bytes = out.got_bytes || parser.got_some() || conn.buffer.size() > 0;
    if (ec) {
      out.response = tl::unexpected<Error>(io_error(state, "read the response", ec));
      co_return out;
    }
    const unsigned status = parser.get().result_int();
    if (status == 101) {
      // We never ask for an upgrade (Upgrade is stripped from requests).
      out.response =
          fail(ErrorCode::kUnavailable, state.name + ": unexpected 101 Switching Protocols");
      co_return out;
    }
    if (status / 100 == 1) continue;  // interim (100 Continue, 103 Early Hints): the final follows

    // need_eof: the body ran to the end of the connection, which is now closed. Bytes already
    // buffered past the response would be taken for the next response's: don't risk it.
    // A request sent with Connection: close ends its connection too (make_upstream_request).
    out.reusable = request.keep_alive() && parser.get().keep_alive() && !parser.need_eof() &&
                   conn.buffer.size() == 0;
    // Into `out` at once: a named Response would be one more in this frame, which must stay
    // within the 1,020 bytes Asio's per-thread cache recycles (server_frames_test.cc).
    out.response = Response(std::move(parser.get().base()), std::move(parser.get().body().text));
    strip_hop_by_hop(*out.response);
    co_return out;
  }
  out.response = fail(ErrorCode::kUnavailable, state.name + ": more than " +
                                                   std::to_string(kMaxInterimResponses) +
                                                   " interim (1xx) responses");
  co_return out;
}

// Closes the idle connections that are past idle_timeout.
void close_expired(State& state, SteadyTime now) {
  while (!state.idle.empty() && now - state.idle.front()->idle_since > state.options.idle_timeout) {
    state.idle.pop_front();  // ~tcp_stream closes the socket
  }
}

std::unique_ptr<UpstreamConnection> take_idle(State& state) {
  close_expired(state, SteadyClock::now());
  if (state.idle.empty()) return nullptr;
  std::unique_ptr<UpstreamConnection> conn = std::move(state.idle.back());
  state.idle.pop_back();
  bump(state.counters->reuses);
  return conn;
}

void put_idle(State& state, std::unique_ptr<UpstreamConnection> conn) {
  if (state.pool_destroyed || state.options.max_idle_connections == 0) return;  // closed
  const SteadyTime now = SteadyClock::now();
  close_expired(state, now);
  while (state.idle.size() >= state.options.max_idle_connections) state.idle.pop_front();
  conn->stream.expires_never();
  conn->idle_since = now;
  state.idle.push_back(std::move(conn));
}

// On success, the body's share of response memory is moved into `lease`.
asio::awaitable<Result<Response>> forward_with_retry(State& state, const Request& request,
                                                     Duration timeout, util::MemoryLease& lease) {
  const SteadyTime deadline = SteadyClock::now() + timeout;
  std::unique_ptr<UpstreamConnection> conn = take_idle(state);
  bool reused = conn != nullptr;
  // At most two attempts: the second only after a reused connection failed before any byte.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn) {
      Result<std::unique_ptr<UpstreamConnection>> fresh = co_await connect(state, deadline);
      if (!fresh) {
        bump(state.counters->connect_failures);
        co_return tl::unexpected<Error>(std::move(fresh.error()));
      }
      conn = std::move(*fresh);
    }
    Exchange result = co_await exchange(state, *conn, request, deadline);
    if (result.response) {
      if (result.reusable) put_idle(state, std::move(conn));
      lease = std::move(result.lease);
      co_return std::move(result.response);
    }
    conn.reset();  // a failed connection is never pooled
    // A keep-alive connection the upstream closed while it sat idle fails like this: nothing
    // came back, so the upstream never processed the request, and sending it again on a fresh
    // connection is safe, whatever the method (RFC 9112 §9.3.1 allows it; browsers do the same).
    const bool stale =
        reused && !result.got_bytes && result.response.error().code != ErrorCode::kDeadlineExceeded;
    if (!stale) co_return std::move(result.response);
    bump(state.counters->retries);
    reused = false;
  }
  co_return fail(ErrorCode::kInternal, state.name + ": retry loop exhausted");  // unreachable
}

// The coroutine behind forward(): `state` by value keeps the pool's state alive for as long as
// this forward is in flight.
asio::awaitable<Result<Response>> do_forward(std::shared_ptr<State> state, Request request,
                                             Duration timeout, util::MemoryLease* lease) {
  Result<Response> result;
  util::MemoryLease held;
  try {
    result = co_await forward_with_retry(*state, request, timeout, held);
  } catch (const std::exception& e) {
    // Every I/O error is a value; only a bug or bad_alloc gets here.
    result = fail(ErrorCode::kInternal, state->name + ": " + e.what());
  }
  if (!result) {
    if (result.error().code == ErrorCode::kDeadlineExceeded) {
      bump(state->counters->timeouts);
    } else {
      bump(state->counters->failures);
    }
  } else if (lease != nullptr) {
    *lease = std::move(held);
  }
  co_return result;
}

}  // namespace

UpstreamPool::UpstreamPool(boost::asio::any_io_executor executor, UpstreamOptions options)
    : state_(std::make_shared<State>()) {
  state_->executor = std::move(executor);
  state_->name = "upstream " + config::to_string(options.target);
  state_->counters =
      options.counters ? std::move(options.counters) : std::make_shared<UpstreamCounters>();
  state_->options = std::move(options);
}

UpstreamPool::~UpstreamPool() {
  state_->pool_destroyed = true;
  state_->idle.clear();
}

boost::asio::awaitable<Result<Response>> UpstreamPool::forward(Request request,
                                                               std::optional<Duration> timeout,
                                                               util::MemoryLease* lease) {
  return do_forward(state_, std::move(request), timeout.value_or(state_->options.timeout), lease);
}

std::size_t UpstreamPool::idle_connections() const { return state_->idle.size(); }

UpstreamPool::Stats UpstreamPool::stats() const {
  const UpstreamCounters& c = *state_->counters;
  const auto read = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  Stats s;
  s.connects = read(c.connects);
  s.reuses = read(c.reuses);
  s.retries = read(c.retries);
  s.closes = read(c.closes);
  s.connect_failures = read(c.connect_failures);
  s.failures = read(c.failures);
  s.timeouts = read(c.timeouts);
  return s;
}

void UpstreamPool::close_idle() { state_->idle.clear(); }

}  // namespace fg::http
