#include "store/redis/resp.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

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
  // Up to 64 arguments without a heap allocation for the pointer arrays (a decision over 9
  // policies is 4 + 9 + 2 + 54 = 69 arguments: rare, and then it allocates).
  constexpr std::size_t kInline = 64;
  const char* inline_ptrs[kInline];
  std::size_t inline_lens[kInline];
  std::vector<const char*> heap_ptrs;
  std::vector<std::size_t> heap_lens;
  const char** ptrs = inline_ptrs;
  std::size_t* lens = inline_lens;
  if (argv.size() > kInline) {
    heap_ptrs.resize(argv.size());
    heap_lens.resize(argv.size());
    ptrs = heap_ptrs.data();
    lens = heap_lens.data();
  }
  for (std::size_t i = 0; i < argv.size(); ++i) {
    ptrs[i] = argv[i].data();
    lens[i] = argv[i].size();
  }
  char* cmd = nullptr;
  const int len = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()), ptrs, lens);
  if (len < 0 || cmd == nullptr) throw std::bad_alloc();
  out.append(cmd, static_cast<std::size_t>(len));
  redisFreeCommand(cmd);
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
