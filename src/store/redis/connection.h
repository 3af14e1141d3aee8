// connection.h — one RESP connection to one Redis node, over Boost.Asio, with auto-pipelining.
//
// Requests are queued in order and written in batches: a request made while a write is in
// flight (or while the event loop has not yet come back to flush) joins the next write, so 1,000
// concurrent requests cost a handful of writes, not 1,000. Replies are matched to requests in
// order (RESP has no request ids).
//
// Every request carries a deadline. Past it, the request completes with kDeadlineExceeded at
// once, whether or not its reply comes later; a late reply is read and discarded in its turn.
// Deadlines are checked by one timer per connection, armed at the earliest pending deadline.
//
// Connecting is lazy: the first request opens the connection (TCP, TLS, then AUTH / SELECT and
// the `init_commands`, pipelined ahead of the queued requests, so a new connection costs no extra
// round trip). When a connection fails or is lost, every request waiting on it completes with
// kUnavailable and the connection backs off: the first reconnection is attempted by the next
// request, further ones no sooner than 10 ms, 20 ms, ... 1 s after the last failure; meanwhile
// requests fail at once, so a dead server never makes callers wait for their deadline. A
// connection that owes replies and reads nothing for `stall_timeout` is dropped the same way.
//
// Completion: ReplyHandler::on_reply(tag, reply, sent), or on_integers(tag, values, sent) for a
// reply that is a flat array of integers, called exactly once per request, on the connection's
// thread, never from inside request(). `sent == false` means the command surely did
// not reach the server (it may be sent again safely); a Redis error reply is a Reply of type
// kError, not an Error.
//
// Thread safety: none. A connection belongs to the thread running its io_context, and every call
// must be made on that thread.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "floodgate/clock.h"
#include "floodgate/result.h"
#include "store/redis/resp.h"

namespace fg::redis {

using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;

class ReplyHandler {
 public:
  virtual ~ReplyHandler() = default;
  virtual void on_reply(int tag, Result<Reply> reply, bool sent) = 0;
  // A reply that is an array of integers only (possibly none: "*0"), as its values, in place of
  // on_reply. `values` is the connection's buffer, valid during the call only. Every other reply
  // (an error such as MOVED or NOSCRIPT, a nil, a string, an array holding anything else) and
  // every failure still comes to on_reply. By default the values become a Reply for on_reply: a
  // handler that reads integer replies overrides this and allocates nothing for them.
  virtual void on_integers(int tag, std::span<const std::int64_t> values, bool sent) {
    on_reply(tag, integer_array_reply(values), sent);
  }
};

// A ReplyHandler from a callable `void(int tag, Result<Reply>, bool sent)`.
template <typename F>
std::shared_ptr<ReplyHandler> make_reply_handler(F f) {
  struct Handler final : ReplyHandler {
    explicit Handler(F fn) : fn_(std::move(fn)) {}
    void on_reply(int tag, Result<Reply> reply, bool sent) override {
      fn_(tag, std::move(reply), sent);
    }
    F fn_;
  };
  return std::make_shared<Handler>(std::move(f));
}

// Counters for metrics, tests and benchmarks. Written by the owning thread only (relaxed
// atomics), so any thread may read them; several connections may share one set.
//
// Pipeline depth: every write also counts the commands it carries in write_sizes, bucket i holding
// the writes of (2^(i-1), 2^i] commands (bucket 0: exactly 1; the last: more than
// 2^(kWriteSizeBuckets-2)), and adds them to written_commands. Two relaxed adds per write.
inline constexpr std::size_t kWriteSizeBuckets = 10;  // <=1, <=2, <=4 .. <=256, more

// The write_sizes bucket of a write of `commands` (>= 1) commands.
constexpr std::size_t write_size_bucket(std::size_t commands) {
  std::size_t b = 0;
  while (b + 1 < kWriteSizeBuckets && (std::size_t{1} << b) < commands) ++b;
  return b;
}

struct ConnectionCounters {
  std::atomic<std::uint64_t> writes{0};    // socket writes started (each carries >= 1 command)
  std::atomic<std::uint64_t> commands{0};  // commands queued
  std::atomic<std::uint64_t> replies{0};   // replies read (including discarded late ones)
  std::atomic<std::uint64_t> timeouts{0};  // requests completed with kDeadlineExceeded
  std::atomic<std::uint64_t> connects{0};  // connections established (TCP + TLS)
  std::atomic<std::uint64_t> connect_failures{0};  // attempts that never became established
  std::atomic<std::uint64_t> disconnects{0};  // established connections lost or dropped
  // Connections established by a Connection that had been established before (the same node,
  // after a loss): connects minus the first connection to each node.
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> written_commands{0};  // commands handed to the socket, summed
  // Connects that sent the init_commands (ConnectionOptions::send_init said yes).
  std::atomic<std::uint64_t> init_sends{0};
  std::array<std::atomic<std::uint64_t>, kWriteSizeBuckets> write_sizes{};  // see above
};

struct ConnectionOptions {
  std::string host;  // IP address or host name
  std::uint16_t port = 0;
  // TLS when set (rediss://). Shared by all connections of a store: an SSL_CTX is thread-safe.
  std::shared_ptr<boost::asio::ssl::context> tls;
  bool tls_verify = true;       // verify the certificate chain and that it names tls_server_name
  std::string tls_server_name;  // SNI and verified name; empty: `host`
  std::string user;             // AUTH user password (ACL), or AUTH password when user is empty
  std::string password;         // empty: no AUTH
  int db = 0;                   // SELECT db when non-zero
  // Formatted commands sent on every new connection (when send_init allows) after AUTH and
  // SELECT, before any queued request; their error replies are remembered (last_init_error) and
  // otherwise ignored.
  std::vector<std::string> init_commands;
  // Asked at every connect whether to send init_commands this time; null: always.
  std::function<bool()> send_init;
  Duration connect_timeout = std::chrono::seconds(1);  // TCP + TLS handshake
  Duration stall_timeout = std::chrono::seconds(2);    // see above
  Duration min_backoff = std::chrono::milliseconds(10);
  Duration max_backoff = std::chrono::seconds(1);
  ConnectionCounters* counters = nullptr;  // must outlive the connection; null: none kept
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  static std::shared_ptr<Connection> make(boost::asio::io_context& ioc, ConnectionOptions options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues one formatted command (resp.h) to be written with the next batch. The handler is
  // called once with `tag`: the reply, or kUnavailable / kDeadlineExceeded.
  void request(std::string_view command, SteadyTime deadline, std::shared_ptr<ReplyHandler> handler,
               int tag);

  // The same, for a command written in place: `write(std::string& out)` appends exactly one
  // formatted command to the connection's outgoing buffer, and is not called at all when the
  // request fails at once (a closed connection, or one backing off). The bytes belong to the
  // connection from then on, and are gone once written: a caller that may send the command
  // again keeps what it needs to write it again.
  template <typename Write>
  void request_into(SteadyTime deadline, std::shared_ptr<ReplyHandler> handler, int tag,
                    Write&& write) {
    if (!admit(handler, tag)) return;
    write(out_);
    enqueue(std::move(handler), deadline, tag);
  }

  // Fails every waiting request (kUnavailable "closed") and refuses new ones. Final.
  void close();

  // Called (on the connection's thread) when an established connection is lost or a connection
  // attempt fails, after the waiting requests have been failed. Not called by close().
  std::function<void(const Error&)> on_lost;

  const std::string& name() const { return name_; }  // "host:port"
  bool connected() const;
  // Requests not yet completed (queued, written, or timed out and awaiting their late reply).
  std::size_t pending() const { return pending_.size(); }
  // The last error reply to an init command on this connection ("" if none).
  const std::string& last_init_error() const { return last_init_error_; }

 private:
  struct Link;
  struct Entry {
    std::shared_ptr<ReplyHandler> handler;
    SteadyTime deadline;
    int tag = 0;
    bool done = false;  // completed already (deadline): its reply is discarded
    bool sent = false;  // handed to the socket
  };
  enum class State { kIdle, kConnecting, kReady, kBackoff, kClosed };

  Connection(boost::asio::io_context& ioc, ConnectionOptions options);

  // request()'s halves: whether the request may be queued (if not, its failure is posted to the
  // handler, which is moved from), connecting if needed; then its entry, once its bytes are in
  // out_.
  bool admit(std::shared_ptr<ReplyHandler>& handler, int tag);
  void enqueue(std::shared_ptr<ReplyHandler> handler, SteadyTime deadline, int tag);
  void start_connect();
  static boost::asio::awaitable<void> run(std::shared_ptr<Connection> self,
                                          std::shared_ptr<Link> link);
  void on_connected(const std::shared_ptr<Link>& link);
  void on_handshake_reply(const std::shared_ptr<Link>& link, bool fatal, std::string_view what,
                          const Reply& reply);
  void schedule_flush();
  void flush();
  void on_bytes(const std::shared_ptr<Link>& link, std::size_t n);
  void drop(const std::shared_ptr<Link>& link, Error why);
  void fail_all(const Error& why);
  void arm_deadline(SteadyTime at);
  void on_deadline_timer();
  void post_failure(std::shared_ptr<ReplyHandler> handler, int tag, Error why);
  std::size_t sent_count() const { return pending_.size() - unsent_; }
  template <typename Counter>
  void count(Counter ConnectionCounters::*counter) {
    if (options_.counters != nullptr) {
      (options_.counters->*counter).fetch_add(1, std::memory_order_relaxed);
    }
  }
  void count_write(std::size_t commands);

  boost::asio::io_context& ioc_;
  ConnectionOptions options_;
  std::string name_;
  State state_ = State::kIdle;
  std::shared_ptr<Link> link_;  // the current socket; null when not connecting or connected
  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer deadline_timer_;
  SteadyTime deadline_armed_ = SteadyTime::max();

  std::deque<Entry> pending_;  // in send order; the last unsent_ are not written yet
  std::size_t unsent_ = 0;
  std::string out_;  // the bytes of the unsent entries
  bool flush_posted_ = false;
  std::size_t handshake_left_ = 0;

  RespReader reader_;
  Reply reply_;                        // the reply read last (moved to its handler)
  std::vector<std::int64_t> integers_;  // the integers read last; capacity kept
  SteadyTime last_progress_;  // last read, or when replies started to be owed
  int failures_ = 0;          // consecutive failed attempts; 0 once a handshake completed
  bool established_once_ = false;  // a connection was established before: the next reconnects
  SteadyTime retry_at_;
  Error last_error_;
  std::string last_init_error_;
};

}  // namespace fg::redis
