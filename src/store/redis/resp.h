// resp.h — the Redis wire protocol (RESP2) as values: a parsed Reply, an incremental reader and
// a command formatter. hiredis does the byte work (redisReader, redisFormatCommandArgv); its
// types never leave resp.cc, and none of its I/O is used.
//
// A Reply is an owned tree (strings, integers, arrays, nil, status, error). The reader builds it
// directly through hiredis's object callbacks, so a reply is allocated once.
//
// Failure: feed() never fails except for a protocol error (garbage from the server), which
// poisons the reader: the connection must be dropped. Formatting cannot fail.
//
// Thread safety: a RespReader is used by one thread at a time; the functions are pure.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
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
  // Forgets buffered bytes and any error: for a new connection.
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The RESP encoding of one command ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), appended to `out`.
void append_command(std::string& out, std::span<const std::string_view> argv);
void append_command(std::string& out, std::initializer_list<std::string_view> argv);
std::string format_command(std::initializer_list<std::string_view> argv);
std::string format_command(std::span<const std::string> argv);

}  // namespace fg::redis
