// upstream.h — the reverse-proxy client of the HTTP server: pooled keep-alive HTTP/1.1
// connections to the one `upstream` of the config, and the pure rewrites of the request sent
// there and of the response brought back (upstream_request.h).
//
// What: when a config has `upstream: http://host:port`, every request the limiter allows is
// rewritten by make_upstream_request (hop-by-hop fields removed, X-Forwarded-For appended) and
// sent with UpstreamPool::forward, which answers the upstream's response, its body read in full
// (chunked decoded) and its hop-by-hop fields removed. The server maps the errors once, at the
// edge: kDeadlineExceeded -> 504, anything else -> 502.
//
// Thread safety: one UpstreamPool per I/O thread, used only on the thread running its executor
// (no locks; every member but stats() must be called there). The counters are relaxed atomics
// written on that thread: stats(), and UpstreamCounters given in the options, may be read from
// any thread. make_upstream_request and strip_hop_by_hop are pure functions over values.
//
// Units: Durations are integer µs (fg::Duration); byte limits are bytes. Deadlines are measured
// on the steady clock.
//
// Failure: forward() never throws; every failure is a value.
//   kUnavailable       the upstream could not be reached (resolve failed, refused, reset), closed
//                      the connection before a complete response, or sent a malformed or
//                      oversized response (max_response_header_bytes / max_response_body_bytes).
//   kDeadlineExceeded  no complete response within `timeout`, or no connection within
//                      `connect_timeout`.
//   kResourceExhausted the response's body did not fit `max_response_memory` (the upstream has
//                      acted on the request; the rest of the response is not read).
//   kInternal          a bug (an unexpected exception inside the pool, e.g. bad_alloc).
// A failed connection is closed, never pooled.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>

#include "config/values.h"
#include "floodgate/clock.h"
#include "floodgate/result.h"
#include "http/upstream_request.h"
#include "util/memory_lease.h"

namespace fg::http {

namespace detail {
struct UpstreamPoolState;  // defined in upstream.cc
}  // namespace detail

// What pools have done with their connections. Written by one pool's thread at a time (relaxed
// atomics, one add per connection event, never per byte), readable from any thread. Several
// pools may share one (the server gives each I/O thread one for all the pools it creates, so
// that its counts survive a reload that replaces the pool).
struct UpstreamCounters {
  std::atomic<std::uint64_t> connects{0};  // connections established (TCP connect succeeded)
  std::atomic<std::uint64_t> reuses{0};    // idle connections taken from the pool (stale included)
  std::atomic<std::uint64_t> retries{0};   // reused connections found closed upstream, retried
  std::atomic<std::uint64_t> closes{0};    // established connections closed, for any reason
  std::atomic<std::uint64_t> connect_failures{0};  // resolve or connect failed or timed out
  std::atomic<std::uint64_t> failures{0};  // forward() calls that failed other than by timing out
  std::atomic<std::uint64_t> timeouts{0};  // forward() calls that failed with kDeadlineExceeded
};

struct UpstreamOptions {
  // Host name or IP literal, and port. A host name is resolved for every new connection (the
  // system resolver, on Asio's resolver thread); pooled connections make that rare.
  config::HostPort target;
  // The whole exchange of one forward(): connect (if needed), write the request, read the
  // response, the one transparent retry included. Past it: kDeadlineExceeded.
  Duration timeout = std::chrono::seconds(30);
  // Bound on resolve + connect of one new connection, within `timeout`. Past it:
  // kDeadlineExceeded. A resolver that cannot be cancelled is abandoned, not waited for.
  Duration connect_timeout = std::chrono::seconds(5);
  // Idle connections kept open for reuse; when a connection comes back to a full pool, the one
  // idle the longest is closed. Each costs a socket here and upstream, and its read buffer
  // (grown to at most 64 KiB by body reads, or to the largest response header seen).
  // 0: no reuse, one connection per request.
  std::size_t max_idle_connections = 64;
  // A pooled connection idle longer than this is closed, not reused. Keep it below the
  // upstream's own keep-alive timeout (nginx: 75 s, Node.js: 5 s) to make the retry rare.
  Duration idle_timeout = std::chrono::seconds(30);
  // The status line and header fields of a response; larger: kUnavailable. At most 64 KiB, the
  // bound of a connection's read buffer.
  std::size_t max_response_header_bytes = 64 * 1024;
  // The (decoded) body of a response, held in memory whole; larger: kUnavailable.
  std::size_t max_response_body_bytes = 64 * 1024 * 1024;
  // The bytes of response bodies held at once by every pool that shares `response_memory` (the
  // server's, over its threads; null: not counted). A body's share is its allocation, taken
  // before it is made: grown as the body's bytes arrive, in powers of two from 4 KiB, never past a
  // declared Content-Length, and counting both allocations while the bytes move to a larger one.
  // Beyond the shares, only a connection's read buffer (at most 64 KiB) holds response bytes. A
  // share that would pass max_response_memory fails the response with kResourceExhausted; the
  // caller keeps the share of a response forward() answers for as long as it holds the body
  // (forward()'s `lease`).
  std::atomic<std::size_t>* response_memory = nullptr;
  std::size_t max_response_memory = std::numeric_limits<std::size_t>::max();
  // Where the pool counts (see UpstreamCounters); null: counters of its own.
  std::shared_ptr<UpstreamCounters> counters;
};

// Pooled keep-alive HTTP/1.1 connections to one upstream.
//
// Not thread-safe: use on the executor's thread only. Many forward() calls may be in flight at
// once; each takes its own connection: the most recently used idle one from the pool, else a new
// one. A connection goes back to the pool after a complete response that allows it (keep-alive,
// length-delimited, nothing unread after it) and is closed otherwise.
//
// Lifetime: the pool may be destroyed while forward() calls are in flight; they complete
// normally (their state is shared with them) and close their connections instead of pooling.
class UpstreamPool {
 public:
  // A snapshot of the pool's UpstreamCounters (shared with other pools if options.counters
  // was); the server sums every thread's for /metrics (floodgate_upstream_connections_total).
  struct Stats {
    std::uint64_t connects = 0;  // connections established (TCP connect succeeded)
    std::uint64_t reuses = 0;    // idle connections taken from the pool (stale ones included)
    std::uint64_t retries = 0;   // reused connections found closed by the upstream, retried
    std::uint64_t closes = 0;    // established connections closed (by either side, any reason)
    std::uint64_t connect_failures = 0;  // resolve or connect failed or timed out
    std::uint64_t failures = 0;          // forward() calls that failed other than by timing out
    std::uint64_t timeouts = 0;          // forward() calls that failed with kDeadlineExceeded
  };

  UpstreamPool(boost::asio::any_io_executor executor, UpstreamOptions options);
  ~UpstreamPool();  // closes idle connections
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Sends `request` as given (build it with make_upstream_request) and reads the response.
  // The response's body is complete (chunked decoded; empty for HEAD, 1xx, 204, 304); interim
  // 1xx responses (100 Continue, 103 Early Hints) are skipped; its hop-by-hop fields are removed
  // (strip_hop_by_hop; calling it again is harmless).
  //
  // kUnavailable: connection refused/reset, malformed or oversized response; kDeadlineExceeded:
  // no complete response within `timeout` (options.timeout when not given), or no connection
  // within connect_timeout; kResourceExhausted: the body did not fit options.max_response_memory
  // (the upstream has acted on the request).
  //
  // With options.response_memory, the response's body counts there from its header on; its
  // share is moved into `*lease` for the caller to drop with the body (without `lease`, it is
  // given back when forward() returns). A failed forward leaves `*lease` empty.
  //
  // A REUSED pooled connection that fails before any response byte arrives (the upstream closed
  // it while idle) is retried once on a fresh connection, transparently, within the same
  // deadline: the upstream cannot have processed the request. A response with Connection: close
  // (or HTTP/1.0 without keep-alive, or a body delimited by the end of the connection) is not
  // pooled.
  boost::asio::awaitable<Result<Response>> forward(Request request,
                                                   std::optional<Duration> timeout = {},
                                                   util::MemoryLease* lease = nullptr);

  // Connections currently in the pool. Ones past idle_timeout count until the next forward()
  // or close_idle() closes them.
  std::size_t idle_connections() const;

  // Any thread (relaxed reads).
  Stats stats() const;

  // Closes every idle connection (drain, shutdown). In-flight forwards are not affected; their
  // connections are still pooled afterwards unless the pool has been destroyed.
  void close_idle();

 private:
  std::shared_ptr<detail::UpstreamPoolState> state_;  // shared with the forwards in flight
};

}  // namespace fg::http
