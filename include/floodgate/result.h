// result.h — the error vocabulary of floodgate and Result<T>.
//
// An Error means "no decision could be made" (or "this input is unusable"); being over a limit is
// never an Error, it is a Decision with allowed = false. No exception crosses a module boundary:
// code that calls a throwing library converts at the call site.
//
// Codes, with what a caller should do:
//   kInvalidArgument   the input is wrong (bad config, unknown policy, cost > burst): don't retry.
//   kUnavailable       the store could not be reached or answered an error: retry with backoff,
//                      meanwhile apply on_store_error.
//   kDeadlineExceeded  the store did not answer within store_timeout: as kUnavailable.
//   kResourceExhausted a bound was hit (too many keys, too many requests in flight): back off.
//   kInternal          a bug or an impossible state: report it.
//
// Thread safety: plain values.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace fg {

enum class ErrorCode {
  kInvalidArgument,
  kUnavailable,
  kDeadlineExceeded,
  kResourceExhausted,
  kInternal,
};

std::string_view to_string(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // A store's error: which part of the store failed (Store::node_of: a Redis Cluster master),
  // when the store can tell; -1 otherwise. Per-node circuit breakers are keyed by it.
  int node = -1;

  // "unavailable: connection refused (127.0.0.1:6379)"
  std::string to_string() const;
};

inline Error make_error(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
using Result = tl::expected<T, Error>;

// `return fail(ErrorCode::kUnavailable, "...")` inside a function returning Result<T>.
inline tl::unexpected<Error> fail(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace fg
