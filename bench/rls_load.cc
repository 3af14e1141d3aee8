// rls_load — a closed-loop load generator for Envoy's Rate Limit Service over gRPC (what Envoy's
// ratelimit filter sends): `threads` threads, each with its own channel and completion queue,
// keeping `concurrency / threads` ShouldRateLimit calls in flight for `seconds`, each call one
// descriptor ("user", "u<k>") with k drawn at random out of `keys`, in domain `domain`. Prints
// one JSON line: calls, OK / OVER_LIMIT / errors, calls per second, p50 / p90 / p99 / p99.9 in
// microseconds (from a histogram of 1 µs buckets up to 100 ms).
//
//   rls_load HOST:PORT [seconds=5] [concurrency=64] [threads=1] [keys=10000] [domain=bench]
//            [descriptors=1]
//
// Asynchronous (grpc::CompletionQueue), so one thread keeps many calls in flight: the client
// costs a few µs of CPU per call, well below what the server spends (bench/rls_bench.sh prints
// both processes' CPU per call).
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"

namespace {

namespace pb = envoy::service::ratelimit::v3;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kBuckets = 100'000;  // 1 µs each: up to 100 ms

struct Options {
  std::string target;
  double seconds = 5;
  int concurrency = 64;
  int threads = 1;
  int keys = 10'000;
  std::string domain = "bench";
  int descriptors = 1;
};

struct Totals {
  std::uint64_t calls = 0, ok = 0, over = 0, errors = 0;
  std::vector<std::uint64_t> histogram = std::vector<std::uint64_t>(kBuckets + 1, 0);
};

struct Call {
  grpc::ClientContext context;
  pb::RateLimitResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<pb::RateLimitResponse>> reader;
  Clock::time_point started;
};

void run(const Options& o, int in_flight, Totals& totals, unsigned seed) {
  auto channel = grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(),
                                           grpc::ChannelArguments());
  auto stub = pb::RateLimitService::NewStub(channel);
  grpc::CompletionQueue cq;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> key(0, std::max(0, o.keys - 1));
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o.seconds));
  pb::RateLimitRequest request;
  request.set_domain(o.domain);
  const auto start = [&] {
    request.clear_descriptors();
    const int k = key(rng);
    for (int d = 0; d < o.descriptors; ++d) {
      auto* e = request.add_descriptors()->add_entries();
      e->set_key(d == 0 ? "user" : "user" + std::to_string(d));
      e->set_value("u" + std::to_string(k));
    }
    auto* call = new Call;
    call->started = Clock::now();
    call->reader = stub->PrepareAsyncShouldRateLimit(&call->context, request, &cq);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
  };
  for (int i = 0; i < in_flight; ++i) start();
  int outstanding = in_flight;
  void* tag = nullptr;
  bool ok = false;
  while (outstanding > 0 && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    const auto now = Clock::now();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - call->started);
    ++totals.calls;
    ++totals.histogram[std::min<std::size_t>(static_cast<std::size_t>(us.count()), kBuckets)];
    if (!ok || !call->status.ok()) {
      ++totals.errors;
    } else if (call->response.overall_code() == pb::RateLimitResponse::OVER_LIMIT) {
      ++totals.over;
    } else {
      ++totals.ok;
    }
    if (now < end) {
      start();
    } else {
      --outstanding;
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

double percentile(const std::vector<std::uint64_t>& h, std::uint64_t total, double p) {
  const auto want = static_cast<std::uint64_t>(static_cast<double>(total) * p);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    seen += h[i];
    if (seen > want) return static_cast<double>(i);
  }
  return static_cast<double>(h.size() - 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: rls_load HOST:PORT [seconds] [concurrency] [threads] [keys] [domain] "
                 "[descriptors]\n");
    return 2;
  }
  Options o;
  o.target = argv[1];
  if (argc > 2) o.seconds = std::atof(argv[2]);
  if (argc > 3) o.concurrency = std::max(1, std::atoi(argv[3]));
  if (argc > 4) o.threads = std::max(1, std::atoi(argv[4]));
  if (argc > 5) o.keys = std::max(1, std::atoi(argv[5]));
  if (argc > 6) o.domain = argv[6];
  if (argc > 7) o.descriptors = std::max(1, std::atoi(argv[7]));
  std::vector<Totals> per_thread(static_cast<std::size_t>(o.threads));
  std::vector<std::thread> threads;
  const auto begin = Clock::now();
  for (int t = 0; t < o.threads; ++t) {
    const int in_flight = o.concurrency / o.threads + (t < o.concurrency % o.threads ? 1 : 0);
    threads.emplace_back(run, std::cref(o), std::max(1, in_flight),
                         std::ref(per_thread[static_cast<std::size_t>(t)]),
                         static_cast<unsigned>(std::random_device{}()) + static_cast<unsigned>(t));
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  Totals all;
  for (const Totals& t : per_thread) {
    all.calls += t.calls;
    all.ok += t.ok;
    all.over += t.over;
    all.errors += t.errors;
    for (std::size_t i = 0; i < all.histogram.size(); ++i) all.histogram[i] += t.histogram[i];
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::printf(
      "{\"calls\":%llu,\"ok\":%llu,\"over_limit\":%llu,\"errors\":%llu,\"seconds\":%.3f,"
      "\"calls_per_s\":%.0f,\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,"
      "\"client_cpu_us_per_call\":%.1f}\n",
      static_cast<unsigned long long>(all.calls), static_cast<unsigned long long>(all.ok),
      static_cast<unsigned long long>(all.over), static_cast<unsigned long long>(all.errors),
      elapsed, static_cast<double>(all.calls) / elapsed, percentile(all.histogram, all.calls, 0.50),
      percentile(all.histogram, all.calls, 0.90), percentile(all.histogram, all.calls, 0.99),
      percentile(all.histogram, all.calls, 0.999),
      all.calls > 0 ? cpu_s * 1e6 / static_cast<double>(all.calls) : 0.0);
  return all.errors == 0 ? 0 : 1;
}
