// window_accuracy — how far floodgate's algorithms are from their exact definitions, in simulated
// time. Run: build/release/bench/window_accuracy (bench/accuracy.sh puts its output in
// docs/accuracy.md).
//
// Every traffic pattern is a list of arrival times (integer µs). Each algorithm decides them
// with floodgate's own core::apply (the function the memory store runs and decide.lua mirrors),
// with the state kept as a store keeps it (dropped after its ttl), side by side with an exact
// reference:
//
//   sliding log    the exact sliding window: a request is admitted iff fewer than `limit`
//                  requests were admitted in (t - period, t]. The reference of sliding_window,
//                  and what users usually mean by "100 per minute", so fixed_window too.
//   aligned        fixed_window's own definition: at most `limit` per [k·period, (k+1)·period).
//   arrival curve  the exact token bucket, defined without tokens: a request is admitted iff
//                  afterwards every interval [t_i, t_j] of admitted requests holds at most
//                  burst + limit · (t_j - t_i) / period of them (the bucket starts full, refills
//                  continuously, holds at most `burst`). The reference of token_bucket and gcra.
//                  Checked in O(1) per request with exact integers: the condition for every
//                  earlier admission i (0-based, n admitted so far) is
//                  limit·t_i - period·i <= burst·period + limit·t - (n + 1)·period,
//                  so only the maximum of the left side over i is kept.
//
// Reported per (algorithm, reference, pattern):
//   admitted        by the algorithm, and by the reference deciding the same arrivals on its own
//   false admits    the algorithm admitted a request that the reference, given the same history
//                   (the requests the algorithm had admitted so far), would have denied
//   false denies    the converse
//   beyond          the most requests admitted beyond the reference's bound in any interval:
//                   for the sliding log, max over windows (t - period, t] of admits - limit; for
//                   aligned windows, max per window - limit; for the arrival curve,
//                   max over intervals of ceil(admits - burst - limit · length / period). 0 means
//                   the algorithm never exceeded its exact definition.
//
// The last patterns decide with `now` taken from two instances' clocks, skewed by +5 s and -7 s
// and alternating, while the references use the true time: what would happen if instances used
// their own clocks. floodgate on Redis does not (every decision takes Redis TIME); on the memory
// store there is one clock per instance and no sharing.
//
// Deterministic: fixed seeds, no wall clock. Output: markdown on stdout.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/algorithms.h"
#include "floodgate/policy.h"

namespace fg {
namespace {

// Products of µs timestamps and limits can pass 2^63 in the references; __extension__ keeps
// -Wpedantic quiet about the GCC/Clang 128-bit type.
__extension__ typedef __int128 i128;

constexpr std::int64_t kLimit = 100;
constexpr std::int64_t kPeriodUs = 60'000'000;  // 100 per minute, burst 100
// A start aligned on a window boundary (2027-01-15T00:00:00Z), so that window edges are known.
constexpr std::int64_t kT0 = 1'799'971'200'000'000;

Policy make_policy(Algorithm a) {
  Policy p;
  p.name = "sim";
  p.algorithm = a;
  p.limit = kLimit;
  p.burst = kLimit;
  p.period = Duration(kPeriodUs);
  return p;
}

// ---- traffic patterns: sorted arrival times (true time, µs), and for each the clock skew of the
// instance that decides it.

struct Arrival {
  std::int64_t t;
  std::int64_t skew = 0;
};

struct Pattern {
  std::string name;
  std::string what;
  std::vector<Arrival> arrivals;
};

constexpr int kPeriods = 120;  // each pattern spans this many periods (2 hours)

// Evenly spaced at `factor` times the limit's rate.
Pattern steady(double factor) {
  Pattern p;
  char name[64];
  std::snprintf(name, sizeof name, "steady %.2gx", factor);
  p.name = name;
  p.what = "evenly spaced at this multiple of limit/period";
  const double gap = kPeriodUs / (kLimit * factor);
  for (double t = 0; t < kPeriods * double(kPeriodUs); t += gap) {
    p.arrivals.push_back({kT0 + std::int64_t(t)});
  }
  return p;
}

// `limit` requests in the last 0.5 s of a window and `limit` in the first 0.5 s of the next, then
// two idle windows; repeated. The worst case of a fixed window.
Pattern edge_bursts() {
  Pattern p{
      "edge bursts",
      "limit in the last 0.5 s of a window, limit in the first 0.5 s of the next, 2 windows idle",
      {}};
  for (int w = 1; w < kPeriods; w += 3) {
    const std::int64_t edge = kT0 + w * kPeriodUs;
    for (int i = 0; i < kLimit; ++i) p.arrivals.push_back({edge - 500'000 + i * 5'000});
    for (int i = 0; i < kLimit; ++i) p.arrivals.push_back({edge + i * 5'000});
  }
  return p;
}

// `limit` requests in the last 0.5 s of a window, then 2x the limit's rate through the whole next
// window, then two idle windows. The sliding window counter assumes the previous window's requests
// were spread evenly; here they were all at its end.
Pattern edge_then_steady() {
  Pattern p{"edge burst + steady",
            "limit in the last 0.5 s of a window, then 2x the rate through the next window, 2 "
            "windows idle",
            {}};
  const std::int64_t gap = kPeriodUs / (2 * kLimit);
  for (int w = 1; w < kPeriods; w += 3) {
    const std::int64_t edge = kT0 + w * kPeriodUs;
    for (int i = 0; i < kLimit; ++i) p.arrivals.push_back({edge - 500'000 + i * 5'000});
    for (std::int64_t t = edge; t < edge + kPeriodUs; t += gap) p.arrivals.push_back({t});
  }
  return p;
}

// Poisson arrivals at `factor` times the limit's rate.
Pattern poisson(double factor, std::uint64_t seed) {
  Pattern p;
  char name[64];
  std::snprintf(name, sizeof name, "Poisson %.2gx", factor);
  p.name = name;
  p.what = "exponential gaps, mean rate this multiple of limit/period (fixed seed)";
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(kLimit * factor / kPeriodUs);
  for (double t = gap(rng); t < kPeriods * double(kPeriodUs); t += gap(rng)) {
    p.arrivals.push_back({kT0 + std::int64_t(t)});
  }
  return p;
}

// Bursts of 1..limit requests 1 ms apart, starting at Poisson times, 1.2x the limit on average.
Pattern random_bursts(std::uint64_t seed) {
  Pattern p{"random bursts",
            "bursts of 1..limit requests 1 ms apart at Poisson times, 1.2x limit/period on average "
            "(fixed seed)",
            {}};
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> size(1, kLimit);
  const double mean_size = (1 + kLimit) / 2.0;
  std::exponential_distribution<double> gap(kLimit * 1.2 / mean_size / kPeriodUs);
  for (double t = gap(rng); t < kPeriods * double(kPeriodUs); t += gap(rng)) {
    const int n = size(rng);
    for (int i = 0; i < n; ++i) p.arrivals.push_back({kT0 + std::int64_t(t) + i * 1'000});
  }
  std::sort(p.arrivals.begin(), p.arrivals.end(),
            [](const Arrival& a, const Arrival& b) { return a.t < b.t; });
  return p;
}

// `base`, decided alternately by two instances whose clocks are +5 s and -7 s off.
Pattern skewed(Pattern base) {
  Pattern p = std::move(base);
  p.what = p.name + ", `now` from two instances' clocks (+5 s, -7 s), alternating";
  p.name = "skewed: " + p.name;
  for (std::size_t i = 0; i < p.arrivals.size(); ++i) {
    p.arrivals[i].skew = (i % 2 == 0) ? 5'000'000 : -7'000'000;
  }
  return p;
}

// ---- exact references. fits(t): would a request at t be admitted after the admitted ones?

class Reference {
 public:
  virtual ~Reference() = default;
  virtual bool fits(std::int64_t t) const = 0;
  virtual void admit(std::int64_t t) = 0;
  // Admissions beyond the definition's bound in any interval ending with the last admission.
  virtual std::int64_t beyond() const = 0;
};

// At most kLimit admitted in any (t - period, t].
class SlidingLog final : public Reference {
 public:
  bool fits(std::int64_t t) const override { return in_window(t) < kLimit; }
  void admit(std::int64_t t) override { log_.push_back(t); }
  std::int64_t beyond() const override {
    return log_.empty() ? 0 : in_window(log_.back()) - kLimit;
  }

 private:
  std::int64_t in_window(std::int64_t t) const {
    while (!log_.empty() && log_.front() <= t - kPeriodUs) log_.pop_front();
    return static_cast<std::int64_t>(log_.size());
  }
  mutable std::deque<std::int64_t> log_;  // admissions within the last period
};

// At most kLimit admitted in [k·period, (k+1)·period).
class Aligned final : public Reference {
 public:
  bool fits(std::int64_t t) const override { return count_at(t) < kLimit; }
  void admit(std::int64_t t) override {
    const std::int64_t w = t / kPeriodUs;
    if (w != window_) window_ = w, count_ = 0;
    ++count_;
  }
  std::int64_t beyond() const override { return count_ - kLimit; }

 private:
  std::int64_t count_at(std::int64_t t) const { return t / kPeriodUs == window_ ? count_ : 0; }
  std::int64_t window_ = -1;
  std::int64_t count_ = 0;
};

// Every interval [t_i, t_j] of admissions holds at most burst + limit·(t_j - t_i)/period.
class ArrivalCurve final : public Reference {
 public:
  bool fits(std::int64_t t) const override {
    if (n_ == 0) return kLimit >= 1;  // burst >= 1
    return max_ <= i128(kLimit) * kPeriodUs + i128(kLimit) * t - i128(n_ + 1) * kPeriodUs;
  }
  void admit(std::int64_t t) override {
    const i128 v = i128(kLimit) * t - i128(n_) * kPeriodUs;
    max_ = n_ == 0 ? v : std::max(max_, v);
    ++n_;
    // Excess of the interval [t_i, t] that is fullest relative to its bound, in 1/period units:
    // (n - i) * period - burst * period - limit * (t - t_i), maximised over i.
    const i128 excess = max_ - i128(kLimit) * t + i128(n_) * kPeriodUs - i128(kLimit) * kPeriodUs;
    last_excess_ = excess;
  }
  std::int64_t beyond() const override {
    // ceil(excess / period) requests, when positive.
    if (last_excess_ <= 0) return 0;
    return static_cast<std::int64_t>((last_excess_ + kPeriodUs - 1) / kPeriodUs);
  }

 private:
  std::int64_t n_ = 0;  // admissions so far
  i128 max_ = 0;        // max over i of limit·t_i - period·i
  i128 last_excess_ = 0;
};

enum class Ref { kSlidingLog, kAligned, kArrivalCurve };

const char* to_cstr(Ref r) {
  switch (r) {
    case Ref::kSlidingLog:
      return "sliding log";
    case Ref::kAligned:
      return "aligned windows";
    case Ref::kArrivalCurve:
      return "arrival curve";
  }
  return "?";
}

std::unique_ptr<Reference> make_reference(Ref r) {
  switch (r) {
    case Ref::kSlidingLog:
      return std::make_unique<SlidingLog>();
    case Ref::kAligned:
      return std::make_unique<Aligned>();
    case Ref::kArrivalCurve:
      return std::make_unique<ArrivalCurve>();
  }
  return nullptr;
}

struct Outcome {
  std::int64_t requests = 0;
  std::int64_t admitted = 0;
  std::int64_t reference_admitted = 0;
  std::int64_t false_admits = 0;
  std::int64_t false_denies = 0;
  std::int64_t beyond = 0;
};

Outcome run(Algorithm a, Ref r, const Pattern& pattern) {
  const Policy policy = make_policy(a);
  std::optional<State> state;
  std::int64_t expires_at = 0;           // true time, as the store's clock (Redis PX) counts it
  auto shadow = make_reference(r);       // fed the algorithm's own admissions
  auto independent = make_reference(r);  // decides the same arrivals on its own
  Outcome o;
  for (const Arrival& arr : pattern.arrivals) {
    ++o.requests;
    if (state && arr.t >= expires_at) state.reset();
    const core::Step step = core::apply(policy, state, 1, arr.t + arr.skew);
    if (step.write) {
      state = step.next;
      expires_at = arr.t + step.ttl.count();
    }
    const bool exact = shadow->fits(arr.t);
    if (step.decision.allowed) {
      ++o.admitted;
      if (!exact) ++o.false_admits;
      shadow->admit(arr.t);
      o.beyond = std::max(o.beyond, shadow->beyond());
    } else if (exact) {
      ++o.false_denies;
    }
    if (independent->fits(arr.t)) {
      independent->admit(arr.t);
      ++o.reference_admitted;
    }
  }
  return o;
}

void print_table(const std::vector<Pattern>& patterns) {
  struct Row {
    Algorithm a;
    Ref r;
  };
  const Row rows[] = {
      {Algorithm::kSlidingWindow, Ref::kSlidingLog}, {Algorithm::kFixedWindow, Ref::kSlidingLog},
      {Algorithm::kFixedWindow, Ref::kAligned},      {Algorithm::kTokenBucket, Ref::kArrivalCurve},
      {Algorithm::kGcra, Ref::kArrivalCurve},
  };
  std::printf(
      "| algorithm | exact reference | pattern | requests | admitted | reference admits | "
      "false admits | false denies | beyond (max in any interval) |\n");
  std::printf("|---|---|---|--:|--:|--:|--:|--:|--:|\n");
  for (const Row& row : rows) {
    for (const Pattern& p : patterns) {
      const Outcome o = run(row.a, row.r, p);
      const double pct_fa = o.admitted ? 100.0 * o.false_admits / o.admitted : 0;
      const double pct_fd =
          (o.requests - o.admitted) ? 100.0 * o.false_denies / (o.requests - o.admitted) : 0;
      std::printf("| %s | %s | %s | %" PRId64 " | %" PRId64 " | %" PRId64 " | %" PRId64
                  " (%.2f%%) | %" PRId64 " (%.2f%%) | %" PRId64 " |\n",
                  std::string(to_string(row.a)).c_str(), to_cstr(row.r), p.name.c_str(), o.requests,
                  o.admitted, o.reference_admitted, o.false_admits, pct_fa, o.false_denies, pct_fd,
                  std::max<std::int64_t>(o.beyond, 0));
    }
  }
}

}  // namespace
}  // namespace fg

int main() {
  using namespace fg;
  const std::vector<Pattern> patterns = {
      steady(0.9),
      steady(2),
      edge_bursts(),
      edge_then_steady(),
      poisson(1.5, 42),
      random_bursts(7),
      skewed(poisson(1.5, 42)),
      skewed(random_bursts(7)),
  };
  std::printf("Policy: %" PRId64 " per %" PRId64 " s (burst %" PRId64
              "), cost 1, %d periods per pattern.\n\n",
              kLimit, kPeriodUs / 1'000'000, kLimit, kPeriods);
  std::printf("| pattern | what |\n|---|---|\n");
  for (const Pattern& p : patterns) std::printf("| %s | %s |\n", p.name.c_str(), p.what.c_str());
  std::printf("\n");
  print_table(patterns);
  return 0;
}
