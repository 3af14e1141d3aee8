#include "store/redis/resp.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <charconv>
#include <algorithm>
#include <cstdlib>
#include <new>

namespace fg::redis {
namespace {

// hiredis calls these to build each reply element; they build our Reply tree in place. The root
// is allocated here and handed over by redisReaderGetReply; an element is stored in its parent's
// `elements`, which grows as its elements arrive. It is not sized from the array header: "*N"
// is a few bytes whatever N is, and sizing from it let 13 bytes ("*2147483647\r\n") ask for
// over 100 GB. Growing moves only completed siblings: hiredis holds pointers to the element being
// built and its ancestors, and an ancestor's vector grows only once that ancestor is complete.
// hiredis frees only the root (freeObject), and deleting the root frees the whole tree.
//
// They are called from C: nothing may throw through them. Allocation failure returns nullptr,
// which hiredis reports as an out-of-memory reader error.

Reply* slot_for(const redisReadTask* task) {
  if (task->parent == nullptr) return new (std::nothrow) Reply();
  auto& elements = static_cast<Reply*>(task->parent->obj)->elements;
  const auto idx = static_cast<std::size_t>(task->idx);  // 0, 1, 2 ... in order
  if (idx >= elements.size()) elements.resize(idx + 1);
  return &elements[idx];
}

Reply::Type string_type(int hiredis_type) {
  switch (hiredis_type) {
    case REDIS_REPLY_STATUS:
      return Reply::Type::kStatus;
    case REDIS_REPLY_ERROR:
      return Reply::Type::kError;
    default:
      return Reply::Type::kString;
  }
}

void* create_string(const redisReadTask* task, char* str, size_t len) {
  try {
    Reply* r = slot_for(task);
    if (r == nullptr) return nullptr;
    r->type = string_type(task->type);
    r->str.assign(str, len);
    return r;
  } catch (...) {
    return nullptr;
  }
}

void* create_array(const redisReadTask* task, int elements) {
  try {
    Reply* r = slot_for(task);
    if (r == nullptr) return nullptr;
    r->type = Reply::Type::kArray;
    // A small reservation covers every reply floodgate expects without regrowth; the rest is
    // paid for by the bytes of the elements themselves.
    constexpr int kReserved = 16;
    r->elements.reserve(static_cast<std::size_t>(std::clamp(elements, 0, kReserved)));
    return r;
  } catch (...) {
    return nullptr;
  }
}

void* create_integer(const redisReadTask* task, long long value) {
  try {
    Reply* r = slot_for(task);
    if (r == nullptr) return nullptr;
    r->type = Reply::Type::kInteger;
    r->integer = value;
    return r;
  } catch (...) {
    return nullptr;
  }
}

void* create_nil(const redisReadTask* task) {
  try {
    Reply* r = slot_for(task);
    if (r == nullptr) return nullptr;
    r->type = Reply::Type::kNil;
    return r;
  } catch (...) {
    return nullptr;
  }
}

void free_object(void* root) { delete static_cast<Reply*>(root); }

// hiredis keeps a pointer to this table (it does not copy it): it must live forever.
redisReplyObjectFunctions kReplyFunctions = {create_string, create_array, create_integer,
                                             create_nil, free_object};

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

struct RespReader::Impl {
  redisReader* reader = nullptr;
  ~Impl() {
    if (reader != nullptr) redisReaderFree(reader);
  }
};

RespReader::RespReader() : impl_(std::make_unique<Impl>()) {
  impl_->reader = redisReaderCreateWithFunctions(&kReplyFunctions);
  if (impl_->reader == nullptr) throw std::bad_alloc();
}

RespReader::~RespReader() = default;

Result<void> RespReader::feed(std::string_view bytes) {
  if (redisReaderFeed(impl_->reader, bytes.data(), bytes.size()) != REDIS_OK) {
    return fail(ErrorCode::kInternal,
                std::string("RESP reader: ") + redisReaderGetError(impl_->reader));
  }
  return {};
}

Result<std::optional<Reply>> RespReader::next() {
  void* raw = nullptr;
  if (redisReaderGetReply(impl_->reader, &raw) != REDIS_OK) {
    return fail(ErrorCode::kInternal,
                std::string("RESP protocol error: ") + redisReaderGetError(impl_->reader));
  }
  if (raw == nullptr) return std::optional<Reply>();
  std::unique_ptr<Reply> owned(static_cast<Reply*>(raw));
  return std::optional<Reply>(std::move(*owned));
}

void RespReader::reset() {
  redisReader* fresh = redisReaderCreateWithFunctions(&kReplyFunctions);
  if (fresh == nullptr) throw std::bad_alloc();
  redisReaderFree(impl_->reader);
  impl_->reader = fresh;
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
