#include "store/redis/resp.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>

namespace fg::redis {
namespace {

// Arrays open at once, at most: hiredis's reader (used before) refused a ninth level, and
// floodgate's deepest reply (CLUSTER SLOTS) has three.
constexpr std::size_t kMaxDepth = 8;

// An integer line (":42", "*3", "$5" without the type byte) read strictly, as hiredis did: "0",
// or an optional '-' then digits without a leading zero, within int64; nothing else (no '+', no
// "-0", no spaces). nullopt when it is not one.
std::optional<std::int64_t> read_integer(const char* s, std::size_t len) {
  if (len == 1 && s[0] == '0') return 0;
  std::size_t i = 0;
  const bool negative = len > 0 && s[0] == '-';
  if (negative) ++i;
  if (i >= len || s[i] < '1' || s[i] > '9') return std::nullopt;
  std::uint64_t v = 0;
  for (; i < len; ++i) {
    const unsigned digit = static_cast<unsigned char>(s[i]) - unsigned{'0'};
    if (digit > 9) return std::nullopt;
    if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (v > kMax + (negative ? 1 : 0)) return std::nullopt;
  return negative ? static_cast<std::int64_t>(0 - v) : static_cast<std::int64_t>(v);
}

// The type byte in a protocol error, quoted and escaped as hiredis wrote it.
std::string quote_byte(char c) {
  switch (c) {
    case '\\':
    case '"':
      return std::string("\"\\") + c + '"';
    case '\n':
      return "\"\\n\"";
    case '\r':
      return "\"\\r\"";
    case '\t':
      return "\"\\t\"";
    case '\a':
      return "\"\\a\"";
    case '\b':
      return "\"\\b\"";
    default:
      break;
  }
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("\"") + c + '"';
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("\"\\x") + kHex[u >> 4] + kHex[u & 15] + '"';
}

Reply integer_reply(std::int64_t value) {
  Reply r;
  r.type = Reply::Type::kInteger;
  r.integer = value;
  return r;
}

}  // namespace

std::string describe(const Reply& reply) {
  constexpr std::size_t kMax = 200;
  std::string out;
  switch (reply.type) {
    case Reply::Type::kNil:
      out = "(nil)";
      break;
    case Reply::Type::kInteger:
      out = "(integer) " + std::to_string(reply.integer);
      break;
    case Reply::Type::kString:
      out = "\"" + reply.str.substr(0, kMax) + "\"";
      break;
    case Reply::Type::kStatus:
      out = reply.str.substr(0, kMax);
      break;
    case Reply::Type::kError:
      out = "(error) " + reply.str.substr(0, kMax);
      break;
    case Reply::Type::kArray:
      out = "[";
      for (std::size_t i = 0; i < reply.elements.size() && out.size() < kMax; ++i) {
        if (i > 0) out += ", ";
        out += describe(reply.elements[i]);
      }
      out += "]";
      break;
  }
  if (out.size() > kMax) out = out.substr(0, kMax) + "...";
  return out;
}

RespReader::RespReader() = default;
RespReader::~RespReader() = default;

Result<void> RespReader::feed(std::string_view bytes) {
  if (!error_.empty()) return fail(ErrorCode::kInternal, "RESP reader: " + error_);
  // Consumed bytes go before appending, so the buffer holds at most one partial reply plus a read:
  // all of it when everything was consumed (the usual case: no copy), else once they are the
  // larger part.
  if (pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
    // A huge reply grew the buffer once; don't keep that memory for every later small one.
    constexpr std::size_t kKeptCapacity = 1 << 20;
    if (buffer_.capacity() > kKeptCapacity) buffer_.shrink_to_fit();
  } else if (pos_ > buffer_.size() - pos_) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  buffer_.append(bytes);
  return {};
}

Reply& RespReader::slot() {
  if (stack_.empty()) return building_;
  Frame& innermost = stack_.back();
  if (innermost.array == nullptr) {
    // The top-level array held only integers until now: from here on it is a tree.
    building_ = Reply();
    building_.type = Reply::Type::kArray;
    building_.elements.reserve(integers_.size() + 1);
    for (std::int64_t v : integers_) building_.elements.push_back(integer_reply(v));
    integers_.clear();
    top_integers_ = false;
    innermost.array = &building_;
  }
  // The innermost array is the only one growing: every outer array's last element is open, and
  // the frames point at them, so an outer vector must not (and does not) reallocate meanwhile.
  return innermost.array->elements.emplace_back();
}

void RespReader::complete_element() {
  while (!stack_.empty()) {
    Frame& innermost = stack_.back();
    if (--innermost.left > 0) return;
    stack_.pop_back();  // that array is complete: it was an element of the one around it
  }
  done_ = true;
}

namespace {

// The elements of a top-level array of integers, in one pass: ":<digits>\r\n" each, without the
// general path's line search and dispatch (a decision batch's reply is some 60 of them). It stops
// at anything else (another type, a leading zero, 18 digits or more, the end of the bytes) and
// leaves that element to the general path, which reads or refuses it.
const char* read_plain_integers(const char* p, const char* end, std::uint32_t& left,
                                std::vector<std::int64_t>& out) {
  constexpr std::ptrdiff_t kMaxDigits = 17;  // below 10^18: no overflow to check
  while (left > 0 && p < end && *p == ':') {
    const char* q = p + 1;
    const bool negative = q < end && *q == '-';
    if (negative) ++q;
    const char* const digits = q;
    std::uint64_t v = 0;
    while (q < end && q - digits <= kMaxDigits) {
      const unsigned digit = static_cast<unsigned char>(*q) - unsigned{'0'};
      if (digit > 9) break;
      v = v * 10 + digit;
      ++q;
    }
    const std::ptrdiff_t n = q - digits;
    if (n == 0 || n > kMaxDigits || (*digits == '0' && (n > 1 || negative)) || end - q < 2 ||
        q[0] != '\r' || q[1] != '\n') {
      break;
    }
    out.push_back(negative ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v));
    --left;
    p = q + 2;
  }
  return p;
}

}  // namespace

bool RespReader::parse() {
  while (!done_ && pos_ < buffer_.size()) {
    if (top_integers_ && stack_.size() == 1) {
      const char* const to = read_plain_integers(buffer_.data() + pos_,
                                                 buffer_.data() + buffer_.size(),
                                                 stack_[0].left, integers_);
      pos_ = static_cast<std::size_t>(to - buffer_.data());
      if (stack_[0].left == 0) {
        stack_.clear();
        done_ = true;
        break;
      }
      if (pos_ == buffer_.size()) break;
    }
    const char* const begin = buffer_.data() + pos_;
    const char* const end = buffer_.data() + buffer_.size();
    const char type = *begin;
    if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*') {
      error_ = "Protocol error, got " + quote_byte(type) + " as reply type byte";
      return false;
    }
    if (type == '*' && stack_.size() == kMaxDepth) {
      error_ = "No support for nested multi bulk replies with depth > 7";
      return false;
    }
    // The line after the type byte ends at the first "\r\n".
    const char* line_end = begin + 1;
    for (;;) {
      line_end = static_cast<const char*>(
          std::memchr(line_end, '\r', static_cast<std::size_t>(end - line_end)));
      if (line_end == nullptr || line_end + 1 >= end) return false;  // wait for the rest
      if (line_end[1] == '\n') break;
      ++line_end;
    }
    const char* const line = begin + 1;
    const auto line_len = static_cast<std::size_t>(line_end - line);
    const char* const after = line_end + 2;
    const auto consume = [&](const char* to) { pos_ = static_cast<std::size_t>(to - buffer_.data()); };
    switch (type) {
      case ':': {
        const std::optional<std::int64_t> value = read_integer(line, line_len);
        if (!value) {
          error_ = "Bad integer value";
          return false;
        }
        if (top_integers_ && stack_.size() == 1) {
          integers_.push_back(*value);
        } else {
          Reply& r = slot();
          r.type = Reply::Type::kInteger;
          r.integer = *value;
        }
        consume(after);
        complete_element();
        break;
      }
      case '+':
      case '-': {
        Reply& r = slot();
        r.type = type == '+' ? Reply::Type::kStatus : Reply::Type::kError;
        r.str.assign(line, line_len);
        consume(after);
        complete_element();
        break;
      }
      case '$': {
        const std::optional<std::int64_t> len = read_integer(line, line_len);
        if (!len) {
          error_ = "Bad bulk string length";
          return false;
        }
        if (*len < -1) {
          error_ = "Bulk string length out of range";
          return false;
        }
        if (*len == -1) {
          slot().type = Reply::Type::kNil;
          consume(after);
        } else {
          // The string and two bytes after it (its "\r\n", skipped unchecked as hiredis did).
          const auto available = static_cast<std::uint64_t>(end - after);
          if (available < 2 || static_cast<std::uint64_t>(*len) > available - 2) return false;
          Reply& r = slot();
          r.type = Reply::Type::kString;
          r.str.assign(after, static_cast<std::size_t>(*len));
          consume(after + *len + 2);
        }
        complete_element();
        break;
      }
      case '*': {
        const std::optional<std::int64_t> count = read_integer(line, line_len);
        if (!count) {
          error_ = "Bad multi-bulk length";
          return false;
        }
        if (*count < -1 || *count > std::numeric_limits<std::int32_t>::max()) {
          error_ = "Multi-bulk length out of range";
          return false;
        }
        consume(after);
        if (*count == -1) {
          slot().type = Reply::Type::kNil;
          complete_element();
          break;
        }
        const auto left = static_cast<std::uint32_t>(*count);
        if (stack_.empty()) {
          // A top-level array: its integers go to integers_ until something else comes.
          top_integers_ = true;
          integers_.clear();
          if (left == 0) {
            done_ = true;
          } else {
            stack_.push_back(Frame{nullptr, left});
          }
          break;
        }
        Reply& r = slot();
        r.type = Reply::Type::kArray;
        if (left == 0) {
          complete_element();
          break;
        }
        // Not sized from the header: "*N" is a few bytes whatever N is (13 bytes could ask for
        // 100 GB). A few slots cover every nested array floodgate reads without regrowth.
        r.elements.reserve(std::min<std::size_t>(left, 16));
        stack_.push_back(Frame{&r, left});
        break;
      }
    }
  }
  return done_;
}

Result<RespReader::Read> RespReader::read(Reply& reply, std::vector<std::int64_t>& integers) {
  if (error_.empty()) parse();
  if (!error_.empty()) return fail(ErrorCode::kInternal, "RESP protocol error: " + error_);
  if (!done_) return Read::kMore;
  done_ = false;
  if (top_integers_) {
    top_integers_ = false;
    // Swapped, not copied: both vectors keep their capacity, so a warm reader allocates nothing.
    integers.swap(integers_);
    integers_.clear();
    return Read::kIntegers;
  }
  reply = std::move(building_);
  building_ = Reply();
  return Read::kReply;
}

Result<std::optional<Reply>> RespReader::next() {
  Reply reply;
  std::vector<std::int64_t> integers;
  auto got = read(reply, integers);
  if (!got) return tl::unexpected(std::move(got.error()));
  switch (*got) {
    case Read::kMore:
      return std::optional<Reply>();
    case Read::kReply:
      return std::optional<Reply>(std::move(reply));
    case Read::kIntegers:
      break;
  }
  return std::optional<Reply>(integer_array_reply(integers));
}

void RespReader::reset() {
  buffer_.clear();
  pos_ = 0;
  stack_.clear();
  top_integers_ = false;
  done_ = false;
  error_.clear();
  building_ = Reply();
  integers_.clear();
}

Reply integer_array_reply(std::span<const std::int64_t> values) {
  Reply r;
  r.type = Reply::Type::kArray;
  r.elements.reserve(values.size());
  for (std::int64_t v : values) r.elements.push_back(integer_reply(v));
  return r;
}

void append_command(std::string& out, std::span<const std::string_view> argv) {
  // A RESP array of bulk strings: "*<n>\r\n" then "$<len>\r\n<bytes>\r\n" per argument. Sized
  // first, so the command is one allocation at most; the counts are written with to_chars (a
  // printf per argument cost more than the rest of a decision's client side).
  const auto decimal_size = [](std::size_t n) {
    std::size_t digits = 1;
    while (n >= 10) {
      n /= 10;
      ++digits;
    }
    return digits;
  };
  std::size_t size = 3 + decimal_size(argv.size());
  for (std::string_view a : argv) size += 5 + decimal_size(a.size()) + a.size();
  out.reserve(out.size() + size);
  const auto append_count = [&out](char marker, std::size_t n) {
    char digits[24];
    digits[0] = marker;
    const auto end = std::to_chars(digits + 1, digits + sizeof(digits) - 2, n).ptr;
    end[0] = '\r';
    end[1] = '\n';
    out.append(digits, static_cast<std::size_t>(end + 2 - digits));
  };
  append_count('*', argv.size());
  for (std::string_view a : argv) {
    append_count('$', a.size());
    out.append(a);
    out.append("\r\n", 2);
  }
}

void append_command(std::string& out, std::initializer_list<std::string_view> argv) {
  append_command(out, std::span<const std::string_view>(argv.begin(), argv.size()));
}

std::string format_command(std::initializer_list<std::string_view> argv) {
  std::string out;
  append_command(out, argv);
  return out;
}

std::string format_command(std::span<const std::string> argv) {
  std::vector<std::string_view> views(argv.begin(), argv.end());
  std::string out;
  append_command(out, views);
  return out;
}

}  // namespace fg::redis
