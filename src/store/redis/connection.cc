#include "store/redis/connection.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <optional>

#include "util/read_room.h"

namespace fg::redis {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Tags of the handshake entries (the handler knows which is which; tags are for debugging).
constexpr int kTagAuth = 1;
constexpr int kTagInit = 2;

// Reads of up to 32 KB: a decision's reply is ~50 bytes, so one read drains hundreds of them.
constexpr std::size_t kReadBufferBytes = 32 * 1024;

Error unavailable(std::string message) {
  return make_error(ErrorCode::kUnavailable, std::move(message));
}

}  // namespace

// One connection attempt: its socket (plain or TLS), the bytes being written on it, and the read
// buffer. Completions carry the Link they were started on and do nothing once it is no longer
// the connection's current link, so a late completion of a dropped socket cannot touch its
// successor.
struct Connection::Link {
  Link(asio::io_context& ioc, asio::ssl::context* tls_context) {
    if (tls_context != nullptr) {
      tls.emplace(ioc, *tls_context);
    } else {
      plain.emplace(ioc);
    }
  }
  tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }
  void close() {
    error_code ignored;
    socket().close(ignored);
  }
  template <typename Buffer>
  asio::awaitable<std::size_t> read_some(const Buffer& buffer, error_code& ec) {
    if (tls)
      co_return co_await tls->async_read_some(buffer,
                                              asio::redirect_error(asio::use_awaitable, ec));
    co_return co_await plain->async_read_some(buffer,
                                              asio::redirect_error(asio::use_awaitable, ec));
  }
  template <typename Handler>
  void write(Handler&& handler) {
    if (tls) {
      asio::async_write(*tls, asio::buffer(writing), std::forward<Handler>(handler));
    } else {
      asio::async_write(*plain, asio::buffer(writing), std::forward<Handler>(handler));
    }
  }

  std::optional<tcp::socket> plain;
  std::optional<asio::ssl::stream<tcp::socket>> tls;
  std::string writing;  // the batch being written; out_ fills meanwhile
  bool write_in_flight = false;
  std::array<char, kReadBufferBytes> read_buffer;
};

std::shared_ptr<Connection> Connection::make(asio::io_context& ioc, ConnectionOptions options) {
  return std::shared_ptr<Connection>(new Connection(ioc, std::move(options)));
}

Connection::Connection(asio::io_context& ioc, ConnectionOptions options)
    : ioc_(ioc),
      options_(std::move(options)),
      name_(options_.host + ":" + std::to_string(options_.port)),
      connect_timer_(ioc),
      deadline_timer_(ioc) {}

Connection::~Connection() {
  if (link_) link_->close();
}

bool Connection::connected() const { return state_ == State::kReady; }

void Connection::post_failure(std::shared_ptr<ReplyHandler> handler, int tag, Error why) {
  asio::post(ioc_, [handler = std::move(handler), tag, why = std::move(why)]() mutable {
    handler->on_reply(tag, tl::unexpected(std::move(why)), false);
  });
}

void Connection::request(std::string_view command, SteadyTime deadline,
                         std::shared_ptr<ReplyHandler> handler, int tag) {
  request_into(deadline, std::move(handler), tag,
               [command](std::string& out) { out.append(command); });
}

bool Connection::admit(std::shared_ptr<ReplyHandler>& handler, int tag) {
  switch (state_) {
    case State::kClosed:
      post_failure(std::move(handler), tag, unavailable("connection to " + name_ + " closed"));
      return false;
    case State::kBackoff:
      if (SteadyClock::now() < retry_at_) {
        post_failure(std::move(handler), tag, last_error_);
        return false;
      }
      start_connect();
      break;
    case State::kIdle:
      start_connect();
      break;
    case State::kConnecting:
    case State::kReady:
      break;
  }
  return true;
}

void Connection::enqueue(std::shared_ptr<ReplyHandler> handler, SteadyTime deadline, int tag) {
  pending_.push_back(Entry{std::move(handler), deadline, tag});
  ++unsent_;
  count(&ConnectionCounters::commands);
  arm_deadline(deadline);
  if (state_ == State::kReady) schedule_flush();
}

void Connection::start_connect() {
  state_ = State::kConnecting;
  auto link = std::make_shared<Link>(ioc_, options_.tls.get());
  link_ = link;
  reader_.reset();

  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([weak = weak_from_this(), link](const error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->link_ != link || self->state_ != State::kConnecting) return;
    self->drop(link,
               unavailable("connect to " + self->name_ + ": timed out after " +
                           std::to_string(self->options_.connect_timeout.count() / 1000) + " ms"));
  });

  asio::co_spawn(ioc_, run(shared_from_this(), link), [](std::exception_ptr e) {
    // Only a bug or bad_alloc gets here (every I/O error is a value): crash, don't limp.
    if (e) std::rethrow_exception(e);
  });
}

// The connect-and-read coroutine of one link. `self` keeps the connection alive until the last
// completion it waits for has run.
asio::awaitable<void> Connection::run(std::shared_ptr<Connection> self,
                                      std::shared_ptr<Link> link) {
  error_code ec;
  std::vector<tcp::endpoint> endpoints;
  const ConnectionOptions& options = self->options_;
  const asio::ip::address address = asio::ip::make_address(options.host, ec);
  if (!ec) {
    endpoints.emplace_back(address, options.port);
  } else {
    // A host name: resolve it (asio runs getaddrinfo on its own thread, never this one).
    tcp::resolver resolver(self->ioc_);
    auto results = co_await resolver.async_resolve(options.host, std::to_string(options.port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    if (self->link_ != link) co_return;
    if (ec) {
      self->drop(link, unavailable("resolve " + options.host + ": " + ec.message()));
      co_return;
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
  }
  co_await asio::async_connect(link->socket(), endpoints,
                               asio::redirect_error(asio::use_awaitable, ec));
  if (self->link_ != link) co_return;
  if (ec) {
    self->drop(link, unavailable("connect to " + self->name_ + ": " + ec.message()));
    co_return;
  }
  error_code ignored;
  // Batches are already coalesced here: Nagle would only add latency.
  link->socket().set_option(tcp::no_delay(true), ignored);
  if (link->tls) {
    const std::string& server_name =
        options.tls_server_name.empty() ? options.host : options.tls_server_name;
    error_code not_ip;
    (void)asio::ip::make_address(server_name, not_ip);
    if (not_ip) {
      // SNI takes a host name only. (SSL_set_tlsext_host_name is a macro with a C cast.)
      SSL_ctrl(link->tls->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(server_name.c_str()));
    }
    if (options.tls_verify) {
      link->tls->set_verify_mode(asio::ssl::verify_peer);
      link->tls->set_verify_callback(asio::ssl::host_name_verification(server_name));
    } else {
      link->tls->set_verify_mode(asio::ssl::verify_none);
    }
    co_await link->tls->async_handshake(asio::ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, ec));
    if (self->link_ != link) co_return;
    if (ec) {
      self->drop(link, unavailable("TLS handshake with " + self->name_ + ": " + ec.message()));
      co_return;
    }
  }
  self->connect_timer_.cancel();
  self->on_connected(link);

  while (self->link_ == link) {
    // A ReadRoom (util/read_room.h): after a read that took every reply there was, the next waits
    // for epoll rather than first failing with EAGAIN (the replies to what was just sent are not
    // back yet).
    const std::size_t n =
        co_await link->read_some(util::ReadRoom{asio::buffer(link->read_buffer)}, ec);
    if (self->link_ != link) co_return;
    if (ec) {
      self->drop(link,
                 unavailable(ec == asio::error::eof
                                 ? "connection to " + self->name_ + " closed by the server"
                                 : "connection to " + self->name_ + " lost: " + ec.message()));
      co_return;
    }
    self->on_bytes(link, n);
  }
}

void Connection::on_connected(const std::shared_ptr<Link>& link) {
  state_ = State::kReady;
  count(&ConnectionCounters::connects);
  if (established_once_) count(&ConnectionCounters::reconnects);
  established_once_ = true;
  last_progress_ = SteadyClock::now();

  // The handshake goes ahead of everything queued while connecting: nothing has been written on
  // this socket yet, so every pending entry's bytes are in out_ and the handshake can be put in
  // front of both.
  const SteadyTime deadline = SteadyClock::now() + options_.connect_timeout;
  std::string head;
  std::vector<Entry> entries;
  auto add = [&](std::string_view bytes, bool fatal, std::string what) {
    head.append(bytes);
    auto handler = make_reply_handler([weak = weak_from_this(), link, fatal,
                                       what = std::move(what)](int, Result<Reply> reply, bool) {
      auto self = weak.lock();
      if (!self || !reply) return;  // failed with everything else
      self->on_handshake_reply(link, fatal, what, *reply);
    });
    entries.push_back(Entry{std::move(handler), deadline, fatal ? kTagAuth : kTagInit});
  };
  if (!options_.password.empty()) {
    if (options_.user.empty()) {
      add(format_command({"AUTH", options_.password}), true, "AUTH");
    } else {
      add(format_command({"AUTH", options_.user, options_.password}), true, "AUTH");
    }
  }
  if (options_.db != 0) {
    const std::string db = std::to_string(options_.db);
    add(format_command({"SELECT", db}), true, "SELECT " + db);
  }
  if (!options_.init_commands.empty() && (!options_.send_init || options_.send_init())) {
    for (const std::string& cmd : options_.init_commands) add(cmd, false, "init");
    count(&ConnectionCounters::init_sends);
  }

  handshake_left_ = entries.size();
  if (handshake_left_ == 0) failures_ = 0;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) pending_.push_front(std::move(*it));
  unsent_ += entries.size();
  out_.insert(0, head);
  for (std::size_t i = 0; i < entries.size(); ++i) count(&ConnectionCounters::commands);
  if (!entries.empty()) arm_deadline(deadline);
  if (!pending_.empty()) flush();
}

void Connection::on_handshake_reply(const std::shared_ptr<Link>& link, bool fatal,
                                    std::string_view what, const Reply& reply) {
  if (link_ != link) return;
  if (reply.is_error()) {
    if (fatal) {
      drop(link, unavailable(std::string(what) + " on " + name_ + " failed: " + reply.str));
      return;
    }
    last_init_error_ = reply.str;
  }
  if (handshake_left_ > 0 && --handshake_left_ == 0) failures_ = 0;
}

void Connection::schedule_flush() {
  if (flush_posted_ || (link_ && link_->write_in_flight)) return;
  flush_posted_ = true;
  // Deferred to the end of the current round of the event loop: every request made until then
  // (by the same handler, or by handlers already queued) goes into the same write.
  asio::post(ioc_, [weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    self->flush_posted_ = false;
    self->flush();
  });
}

void Connection::flush() {
  if (state_ != State::kReady || !link_ || link_->write_in_flight || out_.empty()) return;
  const std::shared_ptr<Link> link = link_;
  if (sent_count() == 0) last_progress_ = SteadyClock::now();
  for (std::size_t i = pending_.size() - unsent_; i < pending_.size(); ++i) pending_[i].sent = true;
  count_write(unsent_);
  unsent_ = 0;
  link->writing.swap(out_);  // both buffers keep their capacity: no allocation once warm
  link->write_in_flight = true;
  count(&ConnectionCounters::writes);
  link->write([self = shared_from_this(), link](const error_code& ec, std::size_t) {
    link->write_in_flight = false;
    link->writing.clear();
    if (self->link_ != link) return;
    if (ec) {
      self->drop(link, unavailable("write to " + self->name_ + ": " + ec.message()));
      return;
    }
    // Everything requested while this write was in flight goes out as one batch.
    self->flush();
  });
}

void Connection::count_write(std::size_t commands) {
  if (options_.counters == nullptr || commands == 0) return;
  options_.counters->written_commands.fetch_add(commands, std::memory_order_relaxed);
  options_.counters->write_sizes[write_size_bucket(commands)].fetch_add(1,
                                                                        std::memory_order_relaxed);
}

void Connection::on_bytes(const std::shared_ptr<Link>& link, std::size_t n) {
  last_progress_ = SteadyClock::now();
  if (auto fed = reader_.feed(std::string_view(link->read_buffer.data(), n)); !fed) {
    drop(link, unavailable(name_ + ": " + fed.error().message));
    return;
  }
  while (link_ == link) {
    auto got = reader_.read(reply_, integers_);
    if (!got) {
      drop(link, unavailable(name_ + ": " + got.error().message));
      return;
    }
    if (*got == RespReader::Read::kMore) return;
    const bool integers = *got == RespReader::Read::kIntegers;
    if (sent_count() == 0) {
      drop(link, unavailable(name_ + ": reply without a request: " +
                             describe(integers ? integer_array_reply(integers_) : reply_)));
      return;
    }
    Entry entry = std::move(pending_.front());
    pending_.pop_front();
    count(&ConnectionCounters::replies);
    if (entry.done) continue;
    if (integers) {
      entry.handler->on_integers(entry.tag, integers_, true);
    } else {
      entry.handler->on_reply(entry.tag, std::move(reply_), true);
    }
  }
}

void Connection::drop(const std::shared_ptr<Link>& link, Error why) {
  if (link_ != link) return;
  const bool was_ready = state_ == State::kReady;
  link_->close();
  link_.reset();
  connect_timer_.cancel();
  handshake_left_ = 0;
  count(was_ready ? &ConnectionCounters::disconnects : &ConnectionCounters::connect_failures);
  // The first attempt after a working connection is immediate (the server may be back already,
  // or it was a one-off); consecutive failures back off exponentially.
  const SteadyTime now = SteadyClock::now();
  if (failures_ == 0) {
    retry_at_ = now;
  } else {
    const int shift = std::min(failures_ - 1, 16);
    retry_at_ = now + std::min<Duration>(options_.min_backoff * (1 << shift), options_.max_backoff);
  }
  ++failures_;
  state_ = State::kBackoff;
  last_error_ = why;
  fail_all(why);
  if (on_lost) on_lost(why);
}

void Connection::fail_all(const Error& why) {
  std::deque<Entry> failed;
  failed.swap(pending_);
  unsent_ = 0;
  out_.clear();
  for (Entry& e : failed) {
    if (e.done) continue;
    e.done = true;
    e.handler->on_reply(e.tag, tl::unexpected(why), e.sent);
  }
}

void Connection::close() {
  if (state_ == State::kClosed) return;
  on_lost = nullptr;
  if (link_) {
    link_->close();
    link_.reset();
  }
  state_ = State::kClosed;
  connect_timer_.cancel();
  deadline_timer_.cancel();
  fail_all(unavailable("connection to " + name_ + " closed"));
}

void Connection::arm_deadline(SteadyTime at) {
  if (at >= deadline_armed_) return;
  deadline_armed_ = at;
  deadline_timer_.expires_at(at);  // cancels the wait for a later time, if any
  deadline_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (auto self = weak.lock()) self->on_deadline_timer();
  });
}

void Connection::on_deadline_timer() {
  deadline_armed_ = SteadyTime::max();
  if (state_ == State::kClosed) return;
  const SteadyTime now = SteadyClock::now();

  // A server that owes replies and sends nothing for stall_timeout (stopped, wedged, a network
  // black hole) is dropped: the connection cannot recover by waiting, and its queue would grow.
  if (link_ && state_ == State::kReady && sent_count() > 0 &&
      now - last_progress_ >= options_.stall_timeout) {
    drop(link_, unavailable("no reply from " + name_ + " for " +
                            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               options_.stall_timeout)
                                               .count()) +
                            " ms"));
    return;
  }

  // Complete every expired request; collect first, call after, as handlers may queue more.
  struct Expired {
    std::shared_ptr<ReplyHandler> handler;
    int tag;
    bool sent;
  };
  std::vector<Expired> expired;
  SteadyTime next = SteadyTime::max();
  for (Entry& e : pending_) {
    if (e.done) continue;
    if (e.deadline <= now) {
      e.done = true;
      expired.push_back(Expired{e.handler, e.tag, e.sent});
    } else {
      next = std::min(next, e.deadline);
    }
  }
  if (state_ == State::kReady && sent_count() > 0) {
    next = std::min(next, last_progress_ + options_.stall_timeout);
  }
  if (next != SteadyTime::max()) arm_deadline(next);
  for (Expired& x : expired) {
    count(&ConnectionCounters::timeouts);
    x.handler->on_reply(
        x.tag,
        fail(ErrorCode::kDeadlineExceeded, "no reply from " + name_ + " before the deadline"),
        x.sent);
  }
}

}  // namespace fg::redis
