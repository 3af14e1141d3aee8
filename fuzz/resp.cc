// resp.cc — fuzz target: bytes from a Redis server -> RespReader (src/store/redis/resp.h), the
// reader every Redis connection parses its replies with.
//
// Input: one byte n (mod 16), then n chunk lengths (one byte each), then the bytes. The bytes are
// read three ways: fed at once and taken out with next() (every reply a Reply); fed in the chunks
// (what is left after the last chunk goes in one more) and taken out with read(), as the
// connection does (a flat array of integers as its values); and fed at once to hiredis 0.14's
// reader (hiredis_reference.h), which floodgate used before.
//
// Invariants:
//   - read() gives exactly the integers next() gives as an array of integer Replies, and every
//     other reply the same Reply; a flat array of integers never comes as a Reply.
//   - floodgate's reader reads what hiredis's read: the same replies, the same ending, and on a
//     protocol error the same message.
//   - No crash, no leak, whatever the server sends; memory follows the bytes received (an array
//     header "*N" allocates nothing for N elements up front), so no input runs out of memory.
//   - The chunking changes nothing: the same replies, in the same order, and the same ending
//     (waiting for more, or a protocol error, after which the reader stays failed).
//   - describe() of every reply is bounded (it goes into log lines).
//   - reset() forgets everything: after it, a well-formed reply parses.
#include "store/redis/resp.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "hiredis_reference.h"

namespace {

using fg::redis::Reply;
using fg::redis::RespReader;

struct Parse {
  std::vector<Reply> replies;
  bool failed = false;
  std::string error;  // the protocol error's own words (no prefix), when failed
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
      const std::string& m = r.error().message;
      out.error = m.substr(m.find(": ") + 2);
      return false;
    }
    if (!r->has_value()) return true;
    out.replies.push_back(std::move(**r));
  }
}

// Fed in `chunks` (then the rest), taken out with next(), or with read() when `integers` (a flat
// integer array then becomes its Reply, to be compared, after checking it is one).
Parse parse(RespReader& reader, std::string_view bytes, const std::vector<std::size_t>& chunks,
            bool integers) {
  Parse out;
  Reply reply;
  std::vector<std::int64_t> values;
  const auto take = [&]() {
    if (!integers) return drain(reader, out);
    for (;;) {
      auto r = reader.read(reply, values);
      if (!r) {
        out.failed = true;
        const std::string& m = r.error().message;
        out.error = m.substr(m.find(": ") + 2);
        return false;
      }
      if (*r == RespReader::Read::kMore) return true;
      if (*r == RespReader::Read::kReply) {
        const bool flat = reply.is_array() &&
                          std::all_of(reply.elements.begin(), reply.elements.end(),
                                      [](const Reply& e) { return e.is_integer(); });
        FG_FUZZ_CHECK(!flat, "a flat integer array came as a Reply: %s", describe(reply).c_str());
        out.replies.push_back(std::move(reply));
      } else {
        out.replies.push_back(fg::redis::integer_array_reply(values));
      }
    }
  };
  for (std::size_t len : chunks) {
    const std::string_view piece = bytes.substr(0, len);
    bytes.remove_prefix(piece.size());
    if (!reader.feed(piece)) {
      out.failed = true;
      return out;
    }
    if (!take()) return out;
  }
  if (!reader.feed(bytes)) {
    out.failed = true;
    return out;
  }
  take();
  return out;
}

// hiredis's reading of the same bytes, fed at once.
Parse parse_hiredis(std::string_view bytes) {
  Parse out;
  fg::fuzz::hiredis_reference::Reader reader;
  if (!reader.feed(bytes)) {
    out.failed = true;
    return out;
  }
  for (;;) {
    std::optional<Reply> r;
    if (!reader.next(r)) {
      out.failed = true;
      out.error = reader.error();
      return out;
    }
    if (!r) return out;
    out.replies.push_back(std::move(*r));
  }
}

void check_same(const Parse& a, const Parse& b, const char* what) {
  FG_FUZZ_CHECK(a.failed == b.failed, "%s: %s vs %s", what, a.failed ? "error" : "ok",
                b.failed ? "error" : "ok");
  FG_FUZZ_CHECK(a.error == b.error, "%s: \"%s\" vs \"%s\"", what, a.error.c_str(),
                b.error.c_str());
  FG_FUZZ_CHECK(a.replies.size() == b.replies.size(), "%s: %zu replies vs %zu", what,
                a.replies.size(), b.replies.size());
  for (std::size_t i = 0; i < a.replies.size(); ++i) {
    FG_FUZZ_CHECK(equal(a.replies[i], b.replies[i]), "%s: reply %zu: %s vs %s", what, i,
                  describe(a.replies[i]).c_str(), describe(b.replies[i]).c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fg::fuzz::Input in(data, size);
  const int n = in.byte() % 16;
  std::vector<std::size_t> chunks;
  for (int i = 0; i < n; ++i) chunks.push_back(in.byte());
  const std::string_view bytes = in.rest();

  RespReader whole;
  const Parse a = parse(whole, bytes, {}, false);
  RespReader chunked;
  const Parse b = parse(chunked, bytes, chunks, true);

  check_same(a, b, "whole with next() vs chunked with read()");
  for (const Reply& r : a.replies) {
    FG_FUZZ_CHECK(describe(r).size() <= 256, "describe() unbounded: %zu bytes", describe(r).size());
  }
  const Parse h = parse_hiredis(bytes);
  check_same(h, a, "hiredis vs floodgate");
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
