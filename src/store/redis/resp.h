// resp.h — the Redis wire protocol (RESP2) as values: a parsed Reply, an incremental reader and
// a command formatter. No hiredis: the reader and the formatter are a few hundred lines here.
//
// A Reply is an owned tree (strings, integers, arrays, nil, status, error). The reader builds it
// as the bytes arrive, so a reply is allocated once. A flat array of integers (every decision's
// reply) need not become a tree at all: read() gives its values in a vector the caller reuses,
// so such a reply allocates nothing once that vector has grown.
//
// The reader accepts exactly what hiredis 0.14's reader (used before; fuzz/resp.cc compares the
// two on every input) accepted, with the same protocol errors: RESP2 only; numbers strictly
// decimal ("0", or digits without a leading zero after an optional '-'), within int64; "$-1" and
// "*-1" are nil, other negative lengths errors, as are arrays of more than 2^31 - 1 elements or
// nested more than 8 deep; a bulk string's two trailing bytes are skipped unchecked.
//
// Failure: feed() never fails except for a protocol error (garbage from the server), which
// poisons the reader: the connection must be dropped. Formatting cannot fail.
//
// Thread safety: a RespReader is used by one thread at a time; the functions are pure.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/result.h"

namespace fg::redis {

struct Reply {
  enum class Type : std::uint8_t { kNil, kString, kStatus, kError, kInteger, kArray };

  Type type = Type::kNil;
  std::int64_t integer = 0;     // kInteger
  std::string str;              // kString, kStatus (e.g. "OK"), kError (e.g. "MOVED 12 h:p")
  std::vector<Reply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
  bool is_integer() const { return type == Type::kInteger; }
  bool is_array() const { return type == Type::kArray; }
  // For strings, statuses and errors: whether `str` starts with `prefix`.
  bool starts_with(std::string_view prefix) const {
    return std::string_view(str).substr(0, prefix.size()) == prefix;
  }
};

// "ERR x", 42, "OK" ... as text for messages and test failures (bounded length).
std::string describe(const Reply& reply);

// An array of integer Replies: what a flat array of integers read by RespReader::read() is as a
// Reply tree (for code that wants a Reply whatever the shape).
Reply integer_array_reply(std::span<const std::int64_t> values);

// Incremental RESP reader: feed bytes as they arrive, take replies out as they complete.
class RespReader {
 public:
  RespReader();
  ~RespReader();
  RespReader(const RespReader&) = delete;
  RespReader& operator=(const RespReader&) = delete;

  // Appends bytes. kInternal when the reader was poisoned by a protocol error.
  Result<void> feed(std::string_view bytes);
  // The next complete reply, nullopt when more bytes are needed, or kInternal on a protocol
  // error (the reader then stays failed).
  Result<std::optional<Reply>> next();

  // What read() found.
  enum class Read : std::uint8_t {
    kMore,      // nothing complete yet: feed more bytes
    kReply,     // a reply of any other shape, in `reply`
    kIntegers,  // an array whose elements are all integers (possibly none), in `integers`
  };
  // The next complete reply, as next() but a flat array of integers comes as its values: they
  // replace the contents of `integers` (its capacity is kept) and `reply` is left alone. Any other
  // reply (an error, a nil, a string, an array holding anything but integers) replaces `reply`.
  // kInternal on a protocol error, as next().
  Result<Read> read(Reply& reply, std::vector<std::int64_t>& integers);

  // Forgets buffered bytes and any error: for a new connection.
  void reset();

 private:
  // One array being read: the Reply it fills (null for the top-level array while its elements
  // are all integers so far, which go to `integers`) and how many elements are still to come.
  struct Frame {
    Reply* array = nullptr;
    std::uint32_t left = 0;
  };

  // Consumes what it can; true when a top-level reply completed. Sets error_ on a protocol error.
  bool parse();
  // One element (or the top-level reply) completed: closes the arrays it completes.
  void complete_element();
  // Where the next element goes: building_ at the top level, else a new element of the innermost
  // array (turning the top-level array of integers into a tree first, if it was one).
  Reply& slot();

  std::string buffer_;   // bytes fed and not yet consumed, from pos_
  std::size_t pos_ = 0;  // the first byte not yet consumed
  std::vector<Frame> stack_;  // arrays open, outermost first
  bool top_integers_ = false;  // the top-level reply is an array of integers only, so far
  bool done_ = false;          // the top-level reply completed
  std::string error_;          // a protocol error: the reader stays failed
  Reply building_;             // the top-level reply, unless top_integers_
  std::vector<std::int64_t> integers_;  // the top-level array's values while top_integers_
};

// The RESP encoding of one command ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), appended to `out`.
void append_command(std::string& out, std::span<const std::string_view> argv);
void append_command(std::string& out, std::initializer_list<std::string_view> argv);
std::string format_command(std::initializer_list<std::string_view> argv);
std::string format_command(std::span<const std::string> argv);

}  // namespace fg::redis
