// hiredis_reference.h — hiredis 0.14's RESP reader building floodgate's Reply, as
// src/store/redis/resp.cc did before it parsed RESP itself: fuzz/resp.cc's reference, so every
// input is checked to read the same through both (which replies, and whether it is a protocol
// error). Test code only; floodgate itself no longer links hiredis.
#pragma once

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <algorithm>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>

#include "store/redis/resp.h"

namespace fg::fuzz::hiredis_reference {

using fg::redis::Reply;

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

inline Reply* slot_for(const redisReadTask* task) {
  if (task->parent == nullptr) return new (std::nothrow) Reply();
  auto& elements = static_cast<Reply*>(task->parent->obj)->elements;
  const auto idx = static_cast<std::size_t>(task->idx);  // 0, 1, 2 ... in order
  if (idx >= elements.size()) elements.resize(idx + 1);
  return &elements[idx];
}

inline Reply::Type string_type(int hiredis_type) {
  switch (hiredis_type) {
    case REDIS_REPLY_STATUS:
      return Reply::Type::kStatus;
    case REDIS_REPLY_ERROR:
      return Reply::Type::kError;
    default:
      return Reply::Type::kString;
  }
}

inline void* create_string(const redisReadTask* task, char* str, size_t len) {
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

inline void* create_array(const redisReadTask* task, int elements) {
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

inline void* create_integer(const redisReadTask* task, long long value) {
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

inline void* create_nil(const redisReadTask* task) {
  try {
    Reply* r = slot_for(task);
    if (r == nullptr) return nullptr;
    r->type = Reply::Type::kNil;
    return r;
  } catch (...) {
    return nullptr;
  }
}

inline void free_object(void* root) { delete static_cast<Reply*>(root); }

// hiredis keeps a pointer to this table (it does not copy it): it must live forever.
inline redisReplyObjectFunctions kReplyFunctions = {create_string, create_array, create_integer,
                                             create_nil, free_object};


// The reader: feed(), then next() until it gives nothing; a protocol error ends it for good.
class Reader {
 public:
  Reader() : reader_(redisReaderCreateWithFunctions(&kReplyFunctions)) {
    if (reader_ == nullptr) throw std::bad_alloc();
  }
  ~Reader() { redisReaderFree(reader_); }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  bool feed(std::string_view bytes) {
    return redisReaderFeed(reader_, bytes.data(), bytes.size()) == REDIS_OK;
  }
  // false on a protocol error; else `out` holds the next reply, or nothing when more is needed.
  bool next(std::optional<Reply>& out) {
    void* raw = nullptr;
    out.reset();
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) return false;
    if (raw != nullptr) {
      std::unique_ptr<Reply> owned(static_cast<Reply*>(raw));
      out = std::move(*owned);
    }
    return true;
  }
  // The protocol error, after next() returned false.
  std::string error() const { return reader_->errstr; }

 private:
  redisReader* reader_;
};

}  // namespace fg::fuzz::hiredis_reference
