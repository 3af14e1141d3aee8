#include "http/rate_limit_headers.h"

#include <algorithm>
#include <cassert>
#include <charconv>

#include "util/text.h"

namespace fg::http {
namespace {

// This runs on every rate-limited response. The fields are written into HeaderFields' inline
// buffer, integers with to_chars, the list values in place (below, put_*): no allocation, no
// copy. The values returned as strings (for callers that need one of them) are built in one
// string sized up front.

// Longest decimal int64 ("-9223372036854775808").
constexpr std::size_t kMaxIntegerChars = 20;

void append_decimal(std::string& out, std::int64_t n) {
  char buf[kMaxIntegerChars];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, r.ptr);
}

}  // namespace

void HeaderFields::emplace_back(std::string_view name, std::string_view value) {
  const Line line{static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(name.size()),
                  static_cast<std::uint32_t>(value.size())};
  text_.resize(line.at + name.size() + 2 + value.size() + 2, boost::container::default_init);
  char* p = text_.data() + line.at;
  p = std::copy(name.begin(), name.end(), p);
  *p++ = ':';
  *p++ = ' ';
  p = std::copy(value.begin(), value.end(), p);
  *p++ = '\r';
  *p = '\n';
  lines_.push_back(line);
}

HeaderFields::Field HeaderFields::operator[](std::size_t i) const {
  const Line& l = lines_[i];
  const char* name = text_.data() + l.at;
  return {std::string_view(name, l.name_size),
          std::string_view(name + l.name_size + 2, l.value_size)};
}

bool operator==(const HeaderFields& a, const HeaderFields& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

std::int64_t ceil_seconds(Duration d) {
  constexpr std::int64_t kUsPerSecond = 1'000'000;
  const std::int64_t us = d.count();
  if (us <= 0) return 0;
  // Divide first: (us + 999999) / 1e6 would overflow near INT64_MAX.
  return us / kUsPerSecond + (us % kUsPerSecond != 0 ? 1 : 0);
}

namespace sf {

void append_string(std::string& out, std::string_view s) {
  out.push_back('"');
  std::size_t plain = 0;  // start of the run of characters copied as they are
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(s[i]);
    } else {
      // RFC 9651 §4.1.6: serialization fails on these. Names are validated ASCII, so this only
      // guards against a caller bug; a '?' keeps the field parseable instead of dropping it.
      out.push_back('?');
    }
  }
  out.append(s.data() + plain, s.size() - plain);
  out.push_back('"');
}

std::string serialize_string(std::string_view s) {
  std::string out;
  append_string(out, s);
  return out;
}

void append_integer(std::string& out, std::int64_t n) {
  append_decimal(out, std::clamp(n, -kMaxInteger, kMaxInteger));
}

namespace {

// One Integer parameter: ;key=value.
void append_param(std::string& out, std::string_view key, std::int64_t value) {
  out.push_back(';');
  out.append(key);
  out.push_back('=');
  append_integer(out, value);
}

}  // namespace

std::string serialize_list(std::span<const Item> items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";  // RFC 9651 §4.1.1: "," then one SP between members
    append_string(out, items[i].name);
    for (const auto& [key, value] : items[i].params) append_param(out, key, value);
  }
  return out;
}

}  // namespace sf

namespace {

// A policy denies the request only if it is not in shadow mode (limiter.h).
bool enforced_denial(const Charge& c, const Decision& d) { return !d.allowed && !c.policy->shadow; }

// Window for RateLimit-Policy's w: the period, whole seconds rounded up, at least 1 (w must be a
// positive Integer; a 250ms period is reported as w=1).
std::int64_t window_seconds(const Policy& p) {
  return std::max<std::int64_t>(1, ceil_seconds(p.period));
}

}  // namespace

std::int64_t retry_after_seconds(const Decision& d) {
  // At least 1 (headers.md): "Retry-After: 0" invites an immediate retry that the limiter would
  // deny again. kCostExceedsBurst has retry_after 0 and so gets 1 too: no wait makes it pass,
  // and a longer figure would suggest one does; the problem body's "detail" says so instead.
  return std::max<std::int64_t>(1, ceil_seconds(d.retry_after));
}

namespace {

// The values are written in place, into the field's line in HeaderFields (emplace_written) or
// into a string sized up front, by the put_* functions below: each is given room for the most it
// can write (the *_max figures) and returns where it stopped. No per-character capacity checks,
// no scratch copy.

char* put(char* p, std::string_view s) { return std::copy(s.begin(), s.end(), p); }

// At most kMaxIntegerChars.
char* put_decimal(char* p, std::int64_t n) {
  return std::to_chars(p, p + kMaxIntegerChars, n).ptr;
}

// An sf-integer (clamped as sf::append_integer clamps): at most 16 bytes.
constexpr std::size_t kIntegerMax = 16;
char* put_integer(char* p, std::int64_t n) {
  return put_decimal(p, std::clamp(n, -sf::kMaxInteger, sf::kMaxInteger));
}

// An sf-string as sf::append_string writes it: at most twice `s` and the quotes.
constexpr std::size_t string_max(std::string_view s) { return 2 * s.size() + 2; }
char* put_string(char* p, std::string_view s) {
  *p++ = '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
      *p++ = ch;
    } else if (c == '"' || c == '\\') {
      *p++ = '\\';
      *p++ = ch;
    } else {
      *p++ = '?';  // as sf::append_string: a character an sf-string cannot hold
    }
  }
  *p++ = '"';
  return p;
}

// ;key=value, as sf::append_param writes it (keys are one or two letters here).
constexpr std::size_t kParamMax = 1 + 2 + 1 + kIntegerMax;
char* put_param(char* p, std::string_view key, std::int64_t value) {
  *p++ = ';';
  p = put(p, key);
  *p++ = '=';
  return put_integer(p, value);
}

constexpr std::string_view kConcurrentUnit = ";qu=\"concurrent-requests\"";
constexpr std::size_t kSeparatorMax = 2;  // ", "

// Room for the list values of `charges`: the named lists (RateLimit-Policy, RateLimit) and the
// unnamed one.
std::size_t list_max(std::span<const Charge> charges) {
  std::size_t size = 0;
  for (const Charge& c : charges) {
    size += kSeparatorMax + string_max(c.policy->name) + kParamMax +
            std::max(kParamMax, kConcurrentUnit.size());
  }
  return size;
}

char* put_rate_limit_policy(char* p, std::span<const Charge> charges) {
  // q = capacity(), not limit: X-RateLimit-Limit and every r are counted out of capacity, so
  // this keeps r <= q. For a bucket with burst != limit, q;w then states the burst, not the
  // refill rate (the draft has no separate burst parameter); with the default burst == limit
  // they coincide. Example: 100 per minute, burst 100 → "per-minute";q=100;w=60.
  // Written as sf::serialize_list would write the Items {name, {{"q", ..}, {"w", ..}}}.
  for (std::size_t i = 0; i < charges.size(); ++i) {
    const Policy* p_ = charges[i].policy;
    assert(p_ != nullptr);
    if (i > 0) p = put(p, ", ");
    p = put_string(p, p_->name);
    p = put_param(p, "q", p_->capacity());
    if (p_->is_concurrency()) {
      // No window: q requests in flight at once (docs/algorithms.md, "Concurrency").
      p = put(p, kConcurrentUnit);
    } else {
      p = put_param(p, "w", window_seconds(*p_));
    }
  }
  return p;
}

// draft-6 and draft-7's RateLimit-Policy: the same items without names, "100;w=60, 10;w=1"
// (a List of Integers with a w parameter; those drafts name no policy).
char* put_unnamed_rate_limit_policy(char* p, std::span<const Charge> charges) {
  for (std::size_t i = 0; i < charges.size(); ++i) {
    const Policy* p_ = charges[i].policy;
    assert(p_ != nullptr);
    if (i > 0) p = put(p, ", ");
    p = put_integer(p, p_->capacity());
    p = put_param(p, "w", window_seconds(*p_));
  }
  return p;
}

// draft-7's RateLimit, an sf-dictionary of the headline's figures: "limit=10, remaining=9,
// reset=1" (the same three figures as X-RateLimit-*).
constexpr std::size_t kDraft7Max = 6 + 12 + 8 + 3 * kIntegerMax;
char* put_draft7_rate_limit(char* p, std::int64_t limit, std::int64_t remaining,
                            std::int64_t reset) {
  p = put(p, "limit=");
  p = put_integer(p, limit);
  p = put(p, ", remaining=");
  p = put_integer(p, remaining);
  p = put(p, ", reset=");
  return put_integer(p, reset);
}

char* put_rate_limit(char* p, std::span<const Charge> charges,
                     std::span<const Decision> decisions) {
  assert(charges.size() == decisions.size());
  const std::size_t n = std::min(charges.size(), decisions.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) p = put(p, ", ");
    p = put_string(p, charges[i].policy->name);
    p = put_param(p, "r", std::max<std::int64_t>(0, decisions[i].remaining));
    // t: until the state is full again (reset_after), the same figure as X-RateLimit-Reset.
    // A concurrency policy has none: r free slots now, until responses end (not a time).
    if (!charges[i].policy->is_concurrency()) {
      p = put_param(p, "t", ceil_seconds(decisions[i].reset_after));
    }
  }
  return p;
}

// A string holding what `write` writes, given room for `max` bytes.
template <typename Write>
std::string written(std::size_t max, Write&& write) {
  std::string out(max, '\0');
  out.resize(static_cast<std::size_t>(write(out.data()) - out.data()));
  return out;
}

// A decimal written into a buffer of its own, for a field value.
struct Decimal {
  char buf[kMaxIntegerChars];
  std::size_t size;
  explicit Decimal(std::int64_t n) : size(std::to_chars(buf, buf + sizeof buf, n).ptr - buf) {}
  std::string_view view() const { return {buf, size}; }
};

std::int64_t sf_clamp(std::int64_t n) { return std::clamp(n, -sf::kMaxInteger, sf::kMaxInteger); }

}  // namespace

std::string rate_limit_policy_value(std::span<const Charge> charges) {
  return written(list_max(charges), [&](char* p) { return put_rate_limit_policy(p, charges); });
}

std::string rate_limit_value(std::span<const Charge> charges, std::span<const Decision> decisions) {
  return written(list_max(charges.first(std::min(charges.size(), decisions.size()))),
                 [&](char* p) { return put_rate_limit(p, charges, decisions); });
}

std::string unnamed_rate_limit_policy_value(std::span<const Charge> charges) {
  return written(list_max(charges),
                 [&](char* p) { return put_unnamed_rate_limit_policy(p, charges); });
}

std::string draft7_rate_limit_value(const Decision& d) {
  return written(kDraft7Max, [&](char* p) {
    return put_draft7_rate_limit(p, d.limit, std::max<std::int64_t>(0, d.remaining),
                                 ceil_seconds(d.reset_after));
  });
}

namespace {

static_assert(util::json_as_is(kQuotaExceededType), "kProblemStart quotes the type as it is");

// Every 429's body up to its policy: the problem type and title, written once.
constexpr std::string_view kProblemStart =
    "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
    "\"title\":\"Too Many Requests\",\"status\":429";
static_assert(kProblemStart.substr(9, kQuotaExceededType.size()) == kQuotaExceededType,
              "kProblemStart names kQuotaExceededType");

}  // namespace

std::string problem_body(std::span<const Charge> charges, const Verdict& verdict) {
  assert(charges.size() == verdict.decisions.size());
  const std::size_t n = std::min(charges.size(), verdict.decisions.size());
  if (n == 0 || verdict.most_restrictive >= n) return {};
  const Decision& headline = verdict.headline();
  const Policy& policy = *charges[verdict.most_restrictive].policy;

  // One string, sized for the fixed text (~160 bytes) and the names: one allocation per 429.
  std::size_t size = 192 + policy.name.size();
  for (std::size_t i = 0; i < n; ++i) size += charges[i].policy->name.size() + 3;
  std::string out;
  out.reserve(size);
  out += kProblemStart;
  if (headline.reason == DenyReason::kCostExceedsBurst) {
    out += ",\"detail\":";
    util::append_json_string(out, "cost " + std::to_string(charges[verdict.most_restrictive].cost) +
                                      " exceeds the capacity " + std::to_string(policy.capacity()) +
                                      " of policy " + policy.name +
                                      "; this request can never pass");
  }
  out += ",\"policy\":";
  util::append_json_string(out, policy.name);
  out += ",\"retry_after\":";
  append_decimal(out, retry_after_seconds(headline));
  out += ",\"violated-policies\":[";
  bool first = true;
  for (std::size_t i = 0; i < n; ++i) {
    if (!enforced_denial(charges[i], verdict.decisions[i])) continue;
    if (!first) out.push_back(',');
    first = false;
    util::append_json_string(out, charges[i].policy->name);
  }
  out += "]}";
  return out;
}

RateLimitHeaders rate_limit_headers(std::span<const Charge> charges, const Verdict& verdict,
                                    const config::HeaderStyle& style) {
  using config::RateLimitStandard;
  assert(charges.size() == verdict.decisions.size());
  RateLimitHeaders out;
  const std::size_t n = std::min(charges.size(), verdict.decisions.size());
  if (n == 0 || verdict.most_restrictive >= n) return out;
  const Decision& headline = verdict.headline();
  const std::int64_t remaining = std::max<std::int64_t>(0, headline.remaining);
  const std::int64_t reset = ceil_seconds(headline.reset_after);

  if (style.legacy) {
    out.fields.emplace_back(kXRateLimitLimit, Decimal(headline.limit).view());
    out.fields.emplace_back(kXRateLimitRemaining, Decimal(remaining).view());
    out.fields.emplace_back(kXRateLimitReset, Decimal(reset).view());
  }
  const std::span<const Charge> charged = charges.first(n);
  const std::size_t list = list_max(charged);
  switch (style.standard) {
    case RateLimitStandard::kDraft8:
      out.fields.emplace_written(kRateLimitPolicy, list,
                                 [&](char* p) { return put_rate_limit_policy(p, charged); });
      out.fields.emplace_written(kRateLimit, list, [&](char* p) {
        return put_rate_limit(p, charged, std::span(verdict.decisions).first(n));
      });
      break;
    case RateLimitStandard::kDraft7:
      out.fields.emplace_written(kRateLimitPolicy, list, [&](char* p) {
        return put_unnamed_rate_limit_policy(p, charged);
      });
      out.fields.emplace_written(kRateLimit, kDraft7Max, [&](char* p) {
        return put_draft7_rate_limit(p, headline.limit, remaining, reset);
      });
      break;
    case RateLimitStandard::kDraft6:
      // sf-integers (draft-6 defines them as Structured Fields), so clamped as sf::append_integer
      // clamps; no figure of a store that keeps its contract comes near the bound.
      out.fields.emplace_back(kRateLimitLimit, Decimal(sf_clamp(headline.limit)).view());
      out.fields.emplace_back(kRateLimitRemaining, Decimal(sf_clamp(remaining)).view());
      out.fields.emplace_back(kRateLimitReset, Decimal(sf_clamp(reset)).view());
      out.fields.emplace_written(kRateLimitPolicy, list, [&](char* p) {
        return put_unnamed_rate_limit_policy(p, charged);
      });
      break;
    case RateLimitStandard::kNone:
      break;
  }
  if (!verdict.allowed) {
    // The headline of a denied verdict is a denying non-shadow policy (most_restrictive), so
    // Retry-After and the body name the policy that makes the client wait longest.
    out.fields.emplace_back(kRetryAfter, Decimal(retry_after_seconds(headline)).view());
    out.denied = true;
    out.problem_body = problem_body(charges, verdict);
  }
  return out;
}

RateLimitHeaders degraded_rate_limit_headers(std::span<const Charge> charges,
                                             const config::HeaderStyle& style) {
  using config::RateLimitStandard;
  RateLimitHeaders out;
  if (charges.empty()) return out;
  const std::size_t list = list_max(charges);
  switch (style.standard) {
    case RateLimitStandard::kDraft8:
      out.fields.emplace_written(kRateLimitPolicy, list,
                                 [&](char* p) { return put_rate_limit_policy(p, charges); });
      break;
    case RateLimitStandard::kDraft7:
    case RateLimitStandard::kDraft6:
      out.fields.emplace_written(kRateLimitPolicy, list, [&](char* p) {
        return put_unnamed_rate_limit_policy(p, charges);
      });
      break;
    case RateLimitStandard::kNone:
      break;
  }
  out.fields.emplace_back(kXRateLimitDegraded, kDegradedStoreUnavailable);
  return out;
}

}  // namespace fg::http
