// resp.cc — fuzz target: bytes from a Redis server -> RespReader (src/store/redis/resp.h), the
// reader every Redis connection parses its replies with.
//
// Input: one byte n (mod 16), then n chunk lengths (one byte each), then the bytes. The bytes are
// read twice: fed at once, and fed in the chunks (what is left after the last chunk goes in one
// more), taking out every complete reply after each feed, as the connection does.
//
// Invariants:
//   - No crash, no leak, whatever the server sends; memory follows the bytes received (an array
//     header "*N" allocates nothing for N elements up front), so no input runs out of memory.
//   - The chunking changes nothing: the same replies, in the same order, and the same ending
//     (waiting for more, or a protocol error, after which the reader stays failed).
//   - describe() of every reply is bounded (it goes into log lines).
//   - reset() forgets everything: after it, a well-formed reply parses.
#include "store/redis/resp.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"

namespace {

using fg::redis::Reply;
using fg::redis::RespReader;

struct Parse {
  std::vector<Reply> replies;
  bool failed = false;
};

bool equal(const Reply& a, const Reply& b) {
  if (a.type != b.type || a.integer != b.integer || a.str != b.str ||
      a.elements.size() != b.elements.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.elements.size(); ++i) {
    if (!equal(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

// Takes out every complete reply; false once the reader failed.
bool drain(RespReader& reader, Parse& out) {
  for (;;) {
    auto r = reader.next();
    if (!r) {
      FG_FUZZ_CHECK(!r.error().message.empty(), "protocol error without a message");
      // Memory follows the bytes received: a few KiB of input never exhausts it.
      FG_FUZZ_CHECK(r.error().message.find("Out of memory") == std::string::npos, "%s",
                    r.error().message.c_str());
      out.failed = true;
      return false;
    }
    if (!r->has_value()) return true;
    out.replies.push_back(std::move(**r));
  }
}

Parse parse(RespReader& reader, std::string_view bytes, const std::vector<std::size_t>& chunks) {
  Parse out;
  for (std::size_t len : chunks) {
    const std::string_view piece = bytes.substr(0, len);
    bytes.remove_prefix(piece.size());
    if (!reader.feed(piece)) {
      out.failed = true;
      return out;
    }
    if (!drain(reader, out)) return out;
  }
  if (!reader.feed(bytes)) {
    out.failed = true;
    return out;
  }
  drain(reader, out);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fg::fuzz::Input in(data, size);
  const int n = in.byte() % 16;
  std::vector<std::size_t> chunks;
  for (int i = 0; i < n; ++i) chunks.push_back(in.byte());
  const std::string_view bytes = in.rest();

  RespReader whole;
  const Parse a = parse(whole, bytes, {});
  RespReader chunked;
  const Parse b = parse(chunked, bytes, chunks);

  FG_FUZZ_CHECK(a.failed == b.failed, "whole: %s, chunked: %s", a.failed ? "error" : "ok",
                b.failed ? "error" : "ok");
  FG_FUZZ_CHECK(a.replies.size() == b.replies.size(), "whole: %zu replies, chunked: %zu",
                a.replies.size(), b.replies.size());
  for (std::size_t i = 0; i < a.replies.size(); ++i) {
    FG_FUZZ_CHECK(equal(a.replies[i], b.replies[i]), "reply %zu: %s vs %s", i,
                  describe(a.replies[i]).c_str(), describe(b.replies[i]).c_str());
    FG_FUZZ_CHECK(describe(a.replies[i]).size() <= 256, "describe() unbounded: %zu bytes",
                  describe(a.replies[i]).size());
  }
  if (a.failed) {
    // A failed reader stays failed until reset.
    FG_FUZZ_CHECK(!whole.feed("+OK\r\n") || !whole.next(), "a failed reader recovered");
  }
  whole.reset();
  FG_FUZZ_CHECK(whole.feed("+OK\r\n").has_value(), "feed after reset failed");
  auto r = whole.next();
  FG_FUZZ_CHECK(r && r->has_value() && (*r)->type == Reply::Type::kStatus && (*r)->str == "OK",
                "after reset, +OK does not parse");
  return 0;
}
