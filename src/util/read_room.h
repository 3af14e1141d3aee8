// read_room.h — a buffer to read a socket into, read the way nginx reads: a read that returns
// less than its room has emptied the socket, so the socket's next read waits for epoll to report
// new bytes instead of first trying one that fails (EAGAIN).
//
// Asio tries every read at once before it waits (a "speculative" read), unless the last one said
// the socket is exhausted, and it says so only at end of stream. On a kept-alive client connection
// the next request is never there yet when the answer to the last one has just been written, nor
// is Redis's reply when a batch has just been sent, nor (unless floodgate is busy) an upstream's
// answer to the request just written to it: each cost a read that failed, a system call,
// which is the larger part of what a request costs the server (bench/instructions.sh counts only
// user space; `perf stat -e 'syscalls:sys_enter_recv*'` counts the calls). Through a ReadRoom a
// short read is exhausting too.
//
// How: Asio's reactor asks the read operation whether a read exhausted the socket
// (reactor_op::done_and_exhausted), and the operation's base class is a template of the buffer
// type. It is specialised below for a ReadRoom, as a socket gets it and as Beast's tcp_stream
// passes it (in a buffers_prefix_view): Asio's own read, and one more condition. Nothing is lost:
// the reactor marks the socket readable again on the next edge epoll reports, whenever it comes
// (also while no read is waiting), and then reads. The specialisation is written against Boost
// 1.81 (Debian 12's) and compiled only there; with another Boost a ReadRoom reads as any buffer
// does (session_read_test says which).
#pragma once

// basic_stream_socket.hpp (socket_base) before Asio's detail header, which uses it unincluded.
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/reactive_socket_recv_op.hpp>
#include <boost/beast/core/buffers_prefix.hpp>
#include <boost/version.hpp>
#include <utility>

namespace fg::util {

// One mutable buffer, as a buffer sequence of its own type.
struct ReadRoom {
  using value_type = boost::asio::mutable_buffer;
  using const_iterator = const boost::asio::mutable_buffer*;
  boost::asio::mutable_buffer room;
  const_iterator begin() const { return &room; }
  const_iterator end() const { return &room + 1; }
};

// A stream whose reads all go through a ReadRoom, for Beast's algorithms (http::async_read),
// which read into buffers of their own type: each read takes the first buffer it is given, as a
// socket's read_some fills that one first anyway.
template <typename Stream>
class RoomReads {
 public:
  using executor_type = typename Stream::executor_type;
  explicit RoomReads(Stream& next) : next_(next) {}
  executor_type get_executor() { return next_.get_executor(); }
  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    const boost::asio::mutable_buffer first = *boost::asio::buffer_sequence_begin(buffers);
    return next_.async_read_some(ReadRoom{first}, std::forward<Token>(token));
  }

 private:
  Stream& next_;
};

// Whether reads through a ReadRoom stop at a short read (this build's Boost is the one the
// specialisation below is written for).
#define FG_SHORT_READ_EXHAUSTS (BOOST_VERSION / 100 == 1081)
inline constexpr bool kShortReadExhausts = FG_SHORT_READ_EXHAUSTS;

}  // namespace fg::util

#if FG_SHORT_READ_EXHAUSTS
namespace boost::asio::detail {

// Asio 1.81's reactive_socket_recv_op_base (socket reads), with the short read exhausting.
template <typename Buffers>
class ShortReadExhausts : public reactor_op {
 public:
  ShortReadExhausts(const boost::system::error_code& success_ec, socket_type socket,
                    socket_ops::state_type state, const Buffers& buffers,
                    socket_base::message_flags flags, func_type complete_func)
      : reactor_op(success_ec, &ShortReadExhausts::do_perform, complete_func),
        socket_(socket),
        state_(state),
        buffers_(buffers),
        flags_(flags) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<ShortReadExhausts*>(base);
    // The one buffer a ReadRoom holds (a prefix of it when Beast passes it).
    const boost::asio::mutable_buffer room = *boost::asio::buffer_sequence_begin(o->buffers_);
    if (!socket_ops::non_blocking_recv1(o->socket_, room.data(), room.size(), o->flags_,
                                        (o->state_ & socket_ops::stream_oriented) != 0, o->ec_,
                                        o->bytes_transferred_)) {
      return not_done;  // nothing to read yet: wait for epoll
    }
    // Asio's own rule (end of stream) and the short read: the socket is empty now.
    if ((o->state_ & socket_ops::stream_oriented) != 0 && o->bytes_transferred_ < room.size()) {
      return done_and_exhausted;
    }
    return done;
  }

 private:
  socket_type socket_;
  socket_ops::state_type state_;
  Buffers buffers_;
  socket_base::message_flags flags_;
};

template <>
class reactive_socket_recv_op_base<fg::util::ReadRoom>
    : public ShortReadExhausts<fg::util::ReadRoom> {
 public:
  using ShortReadExhausts::ShortReadExhausts;
};

template <>
class reactive_socket_recv_op_base<boost::beast::buffers_prefix_view<fg::util::ReadRoom>>
    : public ShortReadExhausts<boost::beast::buffers_prefix_view<fg::util::ReadRoom>> {
 public:
  using ShortReadExhausts::ShortReadExhausts;
};

}  // namespace boost::asio::detail
#endif
