// rate_limit_headers.h — the rate-limit response fields and the 429 body (design §2.3,
// docs/headers.md), computed from a Verdict as plain strings.
//
// What: given the policies that matched a request (its Charges) and the Verdict over them,
// rate_limit_headers() returns the header fields to add to the response, in order, and, when the
// verdict is a denial, the RFC 9457 problem body of the 429:
//
//   X-RateLimit-Limit: 100                 headline decision's limit (Policy::capacity())
//   X-RateLimit-Remaining: 94              headline decision's remaining
//   X-RateLimit-Reset: 4                   ceil_seconds(headline.reset_after)
//   RateLimit-Policy: "per-minute";q=100;w=60, "per-second";q=10;w=1
//   RateLimit: "per-minute";r=94;t=4, "per-second";r=9;t=1
//   Retry-After: 12                        only when denied: max(1, ceil_seconds(retry_after))
//
// The headline is verdict.headline() (fg::most_restrictive: a denying non-shadow policy first,
// else the least remaining). RateLimit-Policy and RateLimit carry one item per charge, in the
// order given, shadow policies included (they are matching policies; they never cause a 429).
//
// Choices, argued in the .cc:
//   - q is Policy::capacity() (burst for buckets, limit for windows), the same figure as
//     X-RateLimit-Limit, so that r <= q always holds; w is the period in whole seconds, rounded
//     up, at least 1. With the default burst == limit, q is simply the limit.
//   - kCostExceedsBurst (the request can never pass; retry_after is 0): Retry-After is still
//     present and is 1, the same formula as every denial, and the problem body gains a
//     "detail" saying that retrying the same request will not help.
//
// Forms (config::HeaderStyle, `rate_limit_headers` in the config; the default above is
// {kDraft8, legacy: true}). `legacy: false` leaves out the three X-RateLimit-* fields; the
// standard part is one of:
//   kDraft8  RateLimit-Policy and RateLimit as above (one named item per charge)
//   kDraft7  RateLimit-Policy: 100;w=60, 10;w=1          one unnamed item per charge
//            RateLimit: limit=10, remaining=9, reset=1   the headline's figures (an sf-dictionary)
//   kDraft6  RateLimit-Policy: 100;w=60, 10;w=1          as draft-7
//            RateLimit-Limit: 10, RateLimit-Remaining: 9, RateLimit-Reset: 1   the headline's
//   kNone    no RateLimit* field
// Retry-After on a denial is sent whatever the form. The figures are always the same ones:
// limit = X-RateLimit-Limit = q, remaining, reset = t, in whole delta seconds.
//
// Degraded (store unavailable, on_store_error: allow): degraded_rate_limit_headers() gives only
// RateLimit-Policy (known from the config; in the form's syntax, none with kNone) and
// X-RateLimit-Degraded: store-unavailable (whatever the form); no figures are invented.
//
// Units: Durations are integer µs (fg::Duration); every field carries whole delta seconds,
// rounded up (never timestamps).
// Thread safety: pure functions over values; no clock reads, no I/O.
// Failure: none. Preconditions (asserted): decisions.size() == charges.size(), every policy
// non-null. No charges at all gives no fields.
#pragma once

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "floodgate/clock.h"
#include "floodgate/decision.h"
#include "floodgate/limiter.h"

namespace fg::http {

// Field names, spelled as docs/headers.md spells them.
inline constexpr std::string_view kXRateLimitLimit = "X-RateLimit-Limit";
inline constexpr std::string_view kXRateLimitRemaining = "X-RateLimit-Remaining";
inline constexpr std::string_view kXRateLimitReset = "X-RateLimit-Reset";
inline constexpr std::string_view kXRateLimitDegraded = "X-RateLimit-Degraded";
inline constexpr std::string_view kRateLimitPolicy = "RateLimit-Policy";
inline constexpr std::string_view kRateLimit = "RateLimit";
inline constexpr std::string_view kRetryAfter = "Retry-After";
// draft-6's separate fields (kDraft6).
inline constexpr std::string_view kRateLimitLimit = "RateLimit-Limit";
inline constexpr std::string_view kRateLimitRemaining = "RateLimit-Remaining";
inline constexpr std::string_view kRateLimitReset = "RateLimit-Reset";

// The value of X-RateLimit-Degraded when the store could not decide and the request was let
// through (on_store_error: allow).
inline constexpr std::string_view kDegradedStoreUnavailable = "store-unavailable";

// Value of Access-Control-Expose-Headers on responses to an allowed origin: every field above
// (none of them is CORS-safelisted, so browsers hide them from scripts otherwise).
inline constexpr std::string_view kExposeHeaders =
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit-Policy, RateLimit, "
    "Retry-After, X-RateLimit-Degraded";
// The same, with draft-6's fields, for a configuration that sends them (kDraft6 anywhere).
inline constexpr std::string_view kExposeHeadersDraft6 =
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit-Policy, RateLimit, "
    "Retry-After, X-RateLimit-Degraded, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset";

inline constexpr int kTooManyRequests = 429;
inline constexpr std::string_view kProblemContentType = "application/problem+json";
inline constexpr std::string_view kQuotaExceededType =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

// Whole seconds in `d`, rounded up: 0 µs → 0, 1 µs → 1, 1,000,000 µs → 1, 1,000,001 µs → 2.
// Negative durations (which no decision produces) give 0.
std::int64_t ceil_seconds(Duration d);

// A minimal Structured Field Values writer (RFC 9651 §4.1): what the RateLimit fields need.
namespace sf {

// Largest magnitude of an sf-integer (RFC 9651 §3.3.1: at most 15 digits).
inline constexpr std::int64_t kMaxInteger = 999'999'999'999'999;

// An Item whose bare value is an sf-string, with Integer parameters, e.g. "per-minute";q=100.
// Keys must be sf-keys (lcalpha / "*" then lcalpha, digit, "_-.*"); callers pass constants.
struct Item {
  std::string name;
  std::vector<std::pair<std::string, std::int64_t>> params;
};

// `"` + s + `"` with `"` and `\` escaped. Characters an sf-string cannot hold (controls, DEL,
// bytes >= 0x80) become '?': the output is always a valid sf-string.
void append_string(std::string& out, std::string_view s);
std::string serialize_string(std::string_view s);

// Decimal, clamped to [-kMaxInteger, kMaxInteger] (no floodgate figure comes near it).
void append_integer(std::string& out, std::int64_t n);

// An sf-list of items: `"a";q=1;w=60, "b";q=2`. An empty list serializes as "" (RFC 9651: the
// field should then be left out).
std::string serialize_list(std::span<const Item> items);

}  // namespace sf

// Header fields to add to a response, in order, held as the bytes they take on the wire: one
// "Name: value\r\n" line each, in one buffer with room inline for the rate-limit fields of a
// request under a few policies. Every response served under a policy carries five or six of
// them: built this way they cost no allocation, and the serializer copies them in one piece.
// Names and values are written as given (callers pass field names and values without CR or LF).
class HeaderFields {
 public:
  using Field = std::pair<std::string_view, std::string_view>;  // name, value: into this object

  class const_iterator {
   public:
    using value_type = Field;
    using difference_type = std::ptrdiff_t;
    using reference = Field;
    using pointer = void;
    using iterator_category = std::input_iterator_tag;
    const_iterator() = default;
    const_iterator(const HeaderFields* fields, std::size_t i) : fields_(fields), i_(i) {}
    Field operator*() const { return (*fields_)[i_]; }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) { return const_iterator(fields_, i_++); }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.i_ == b.i_;
    }

   private:
    const HeaderFields* fields_ = nullptr;
    std::size_t i_ = 0;
  };
  using iterator = const_iterator;
  using value_type = Field;

  HeaderFields() = default;
  HeaderFields(std::initializer_list<Field> fields) {
    for (const Field& f : fields) emplace_back(f.first, f.second);
  }

  void emplace_back(std::string_view name, std::string_view value);
  void push_back(const Field& field) { emplace_back(field.first, field.second); }
  // Appends a field whose value `write` writes in place: it is given where the value starts,
  // with room for `max_value` bytes, and returns where the value ends (at most that far).
  template <typename Write>
  void emplace_written(std::string_view name, std::size_t max_value, Write&& write) {
    const std::size_t at = text_.size();
    text_.resize(at + name.size() + 2 + max_value + 2, boost::container::default_init);
    char* p = std::copy(name.begin(), name.end(), text_.data() + at);
    *p++ = ':';
    *p++ = ' ';
    char* const value = p;
    p = write(value);
    const auto value_size = static_cast<std::uint32_t>(p - value);
    *p++ = '\r';
    *p++ = '\n';
    text_.resize(static_cast<std::size_t>(p - text_.data()));
    lines_.push_back(Line{static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(name.size()),
                          value_size});
  }
  void clear() {
    text_.clear();
    lines_.clear();
  }
  bool empty() const { return lines_.empty(); }
  std::size_t size() const { return lines_.size(); }
  Field operator[](std::size_t i) const;
  Field back() const { return (*this)[size() - 1]; }
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, size()); }

  // Every field as "Name: value\r\n", in order.
  std::string_view wire() const { return {text_.data(), text_.size()}; }

  friend bool operator==(const HeaderFields& a, const HeaderFields& b);

 private:
  // Where one field's line starts in text_, and its name's and value's sizes.
  struct Line {
    std::uint32_t at = 0;
    std::uint32_t name_size = 0;
    std::uint32_t value_size = 0;
  };
  // The fields of one policy's allowed answer take about 150 bytes, a denial's about 170; with
  // Server and Content-Length (handler.h: prepare()), seven or eight fields, about 190 bytes.
  // (draft-6 with the legacy fields makes ten: those responses spill to the heap.)
  static constexpr std::size_t kInlineBytes = 256;
  static constexpr std::size_t kInlineFields = 8;
  boost::container::small_vector<char, kInlineBytes> text_;
  boost::container::small_vector<Line, kInlineFields> lines_;
};

struct RateLimitHeaders {
  HeaderFields fields;       // add every one to the response, in this order
  bool denied = false;       // answer kTooManyRequests with problem_body
  std::string problem_body;  // kProblemContentType; empty unless denied
};

// The fields (and, when !verdict.allowed, the 429 body) for one decided request, in `style`.
RateLimitHeaders rate_limit_headers(std::span<const Charge> charges, const Verdict& verdict,
                                    const config::HeaderStyle& style = {});

// Fail-open answer when the store is unavailable: RateLimit-Policy and X-RateLimit-Degraded only.
RateLimitHeaders degraded_rate_limit_headers(std::span<const Charge> charges,
                                             const config::HeaderStyle& style = {});

// The pieces, for callers that need one of them (and for tests).
std::string rate_limit_policy_value(std::span<const Charge> charges);
std::string rate_limit_value(std::span<const Charge> charges, std::span<const Decision> decisions);
// draft-6 and draft-7's RateLimit-Policy: "100;w=60, 10;w=1".
std::string unnamed_rate_limit_policy_value(std::span<const Charge> charges);
// draft-7's RateLimit: "limit=10, remaining=9, reset=1" for one decision.
std::string draft7_rate_limit_value(const Decision& d);
// Retry-After for a denying decision: max(1, ceil_seconds(d.retry_after)).
std::int64_t retry_after_seconds(const Decision& d);
// {"type":...,"title":"Too Many Requests","status":429,["detail":...,]"policy":<headline>,
//  "retry_after":<Retry-After>,"violated-policies":[<denying non-shadow policies, in order>]}
std::string problem_body(std::span<const Charge> charges, const Verdict& verdict);

}  // namespace fg::http
