// ns per request of the pure per-request steps of the HTTP edge that a rate-limited response
// goes through besides the store: the rate-limit fields (one and two policies, allowed and
// denied) and the client's identity (the `ip` source). Run: make bench (or
// build/release/bench/http_pure_bench). The whole server under wrk: bench/http_bench.sh.
#include <benchmark/benchmark.h>

#include "floodgate/limiter.h"
#include "decide/identity.h"
#include "http/rate_limit_headers.h"

namespace fg::http {
namespace {

using decide::HeaderLookup;
using decide::identify;

Policy make_policy(std::string name, std::int64_t limit, Duration period) {
  Policy p;
  p.name = std::move(name);
  p.limit = p.burst = limit;
  p.period = period;
  return p;
}

Decision allowed(std::int64_t limit, std::int64_t remaining, Duration reset_after) {
  return Decision{true, DenyReason::kNone, limit, remaining, reset_after, Duration(0)};
}

// The fields of one allowed request: what every 200 of a limited route carries.
void BM_RateLimitHeadersOnePolicy(benchmark::State& bs) {
  const Policy p = make_policy("per-minute", 100, std::chrono::minutes(1));
  const Charge charges[] = {{&p, 1}};
  Verdict v;
  v.allowed = true;
  v.decisions = {allowed(100, 94, Duration(3'600'000))};
  for (auto _ : bs) {
    RateLimitHeaders h = rate_limit_headers(charges, v);
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_RateLimitHeadersOnePolicy);

void BM_RateLimitHeadersTwoPolicies(benchmark::State& bs) {
  const Policy a = make_policy("per-minute", 100, std::chrono::minutes(1));
  const Policy b = make_policy("per-second", 10, std::chrono::seconds(1));
  const Charge charges[] = {{&a, 1}, {&b, 1}};
  Verdict v;
  v.allowed = true;
  v.decisions = {allowed(100, 94, Duration(3'600'000)), allowed(10, 9, Duration(100'000))};
  v.most_restrictive = 1;
  for (auto _ : bs) {
    RateLimitHeaders h = rate_limit_headers(charges, v);
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_RateLimitHeadersTwoPolicies);

// A 429: the fields, Retry-After and the problem body.
void BM_RateLimitHeadersDenied(benchmark::State& bs) {
  const Policy p = make_policy("per-minute", 100, std::chrono::minutes(1));
  const Charge charges[] = {{&p, 1}};
  Verdict v;
  v.allowed = false;
  v.decisions = {Decision{false, DenyReason::kOverLimit, 100, 0, Duration(59'400'000),
                          Duration(11'200'000)}};
  for (auto _ : bs) {
    RateLimitHeaders h = rate_limit_headers(charges, v);
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_RateLimitHeadersDenied);

// identity: [ip] (the default), an IPv4 peer, no trusted proxy.
void BM_IdentifyIpv4(benchmark::State& bs) {
  const std::vector<config::IdentitySource> sources(1);
  const auto peer = config::parse_ip("203.0.113.195").value();
  const HeaderLookup lookup;
  for (auto _ : bs) {
    auto id = identify(sources, lookup, peer, "", {});
    benchmark::DoNotOptimize(id);
  }
}
BENCHMARK(BM_IdentifyIpv4);

// identity: [header X-API-Key, ip], the key present.
void BM_IdentifyApiKey(benchmark::State& bs) {
  std::vector<config::IdentitySource> sources(2);
  sources[0].kind = config::IdentitySource::Kind::kHeader;
  sources[0].header = "X-API-Key";
  const auto peer = config::parse_ip("203.0.113.195").value();
  const HeaderLookup lookup = [](std::string_view) -> std::optional<std::string_view> {
    return std::string_view("k-6f1e2d3c4b5a69788796a5b4");
  };
  for (auto _ : bs) {
    auto id = identify(sources, lookup, peer, "", {});
    benchmark::DoNotOptimize(id);
  }
}
BENCHMARK(BM_IdentifyApiKey);

}  // namespace
}  // namespace fg::http

BENCHMARK_MAIN();
