#include "floodgate/store.h"

#include <atomic>
#include <cstdio>
#include <future>
#include <memory>
#include <random>
#include <optional>
#include <string>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "floodgate/limiter.h"

namespace fg {

Result<void> check_charges(std::span<const Charge> charges) {
  if (charges.empty()) return fail(ErrorCode::kInvalidArgument, "no policy to decide");
  for (const Charge& c : charges) {
    if (c.policy == nullptr) return fail(ErrorCode::kInvalidArgument, "charge without policy");
    if (!valid_cost(c.cost)) {
      return fail(ErrorCode::kInvalidArgument,
                  "cost must be between 0 and " + std::to_string(kMaxCount));
    }
  }
  return {};
}

Result<void> check_refund(const RefundRequest& request) {
  if (auto ok = check_charges(request.charges); !ok) return ok;
  if (!request.decisions.empty() && request.decisions.size() != request.charges.size()) {
    return fail(ErrorCode::kInvalidArgument, "refund: one decision per charge");
  }
  return {};
}

std::int64_t refund_cost(const RefundRequest& request, std::size_t i) {
  const Charge& c = request.charges[i];
  const bool consumed =
      request.decisions.empty() ? !c.policy->shadow : request.decisions[i].allowed;
  return consumed ? c.cost : 0;
}

std::span<const Decision> decisions_of(std::span<const DecideRequest> requests, std::size_t i,
                                       const Verdict& verdict) {
  std::size_t offset = 0;  // where request i's decisions start
  for (std::size_t j = 0; j < i; ++j) offset += requests[j].charges.size();
  return std::span<const Decision>(verdict.decisions).subspan(offset, requests[i].charges.size());
}

std::string make_lease_id() {
  static const std::uint64_t nonce = [] {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ rd();
  }();
  static std::atomic<std::uint64_t> counter{0};
  char buf[48];
  const auto count = counter.fetch_add(1, std::memory_order_relaxed);
  const int n = std::snprintf(buf, sizeof buf, "%016llx.%llu",
                              static_cast<unsigned long long>(nonce),
                              static_cast<unsigned long long>(count));
  return std::string(buf, static_cast<std::size_t>(n));
}

void Store::release(const LeaseRequest&, RefundCallback done) { done(Result<void>{}); }
void Store::renew(const LeaseRequest&, RefundCallback done) { done(Result<void>{}); }

Result<Verdict> Store::decide_now(const DecideRequest& request) {
  std::optional<Result<Verdict>> out;
  if (completes_inline()) decide(request, [&out](Result<Verdict> v) { out = std::move(v); });
  if (!out) return fail(ErrorCode::kInternal, "this store does not answer inline");
  return std::move(*out);
}

Result<Verdict> decide_and_wait(Store& store, const DecideRequest& request) {
  std::promise<Result<Verdict>> promise;
  auto future = promise.get_future();
  store.decide(request, [&promise](Result<Verdict> r) { promise.set_value(std::move(r)); });
  return future.get();
}

namespace {

// One decide_all() in progress.
struct DecideAll {
  Store* store = nullptr;
  // The caller's requests, copied (decide_all's contract): the decider need not keep them.
  boost::container::small_vector<DecideRequest, 2> owned;
  std::span<const DecideRequest> requests;  // owned
  DecideCallback done;
  std::size_t next = 0;               // the request being decided
  std::size_t denied = 0;             // requests.size() while every one so far allowed
  Verdict verdict;                    // decisions so far
  std::vector<Charge> peek;           // a later request's charges at cost 0, after a denial
  std::vector<Timestamp> decided_at;  // per request decided with its charges

  static void step(std::shared_ptr<DecideAll> st) {
    if (st->next == st->requests.size()) return finish(std::move(st), {});
    DecideRequest r = st->requests[st->next];
    if (st->denied < st->requests.size()) {
      st->peek.assign(r.charges.begin(), r.charges.end());
      for (Charge& c : st->peek) c.cost = 0;
      r.charges = st->peek;
    }
    Store& store = *st->store;
    store.decide(r, [st = std::move(st)](Result<Verdict> v) mutable {
      if (!v) return finish(std::move(st), std::move(v).error());
      if (st->denied == st->requests.size()) {
        st->decided_at.push_back(v->decided_at);
        if (!v->allowed) st->denied = st->next;
      }
      for (Decision& d : v->decisions) st->verdict.decisions.push_back(std::move(d));
      ++st->next;
      step(std::move(st));
    });
  }

  // Gives back what the requests before the denied (or failed) one consumed, then answers.
  static void finish(std::shared_ptr<DecideAll> st, std::optional<Error> error) {
    const std::size_t consumed = error ? std::min(st->next, st->denied)
                                       : (st->denied == st->requests.size() ? 0 : st->denied);
    refund_then(std::move(st), 0, consumed, std::move(error));
  }

  static void refund_then(std::shared_ptr<DecideAll> st, std::size_t i, std::size_t end,
                          std::optional<Error> error) {
    if (i == end) {
      if (error) return st->done(tl::unexpected(std::move(*error)));
      std::vector<Charge> charges;
      for (const DecideRequest& r : st->requests) {
        charges.insert(charges.end(), r.charges.begin(), r.charges.end());
      }
      st->verdict.allowed = st->denied == st->requests.size();
      st->verdict.most_restrictive = most_restrictive(charges, st->verdict.decisions);
      if (!st->decided_at.empty()) st->verdict.decided_at = st->decided_at.front();
      return st->done(std::move(st->verdict));
    }
    const RefundRequest r{st->requests[i].identity, st->requests[i].charges, st->decided_at[i],
                          decisions_of(st->requests, i, st->verdict), st->requests[i].lease};
    Store& store = *st->store;
    store.refund(r, [st = std::move(st), i, end, error = std::move(error)](Result<void>) mutable {
      refund_then(std::move(st), i + 1, end, std::move(error));
    });
  }
};

}  // namespace

void decide_all(Store& store, std::span<const DecideRequest> requests, DecideCallback done) {
  if (requests.size() == 1) return store.decide(requests.front(), std::move(done));
  if (requests.empty()) {
    return done(fail(ErrorCode::kInvalidArgument, "no policy to decide"));
  }
  auto st = std::make_shared<DecideAll>();
  st->store = &store;
  st->owned.assign(requests.begin(), requests.end());
  st->requests = st->owned;
  st->done = std::move(done);
  st->denied = requests.size();
  DecideAll::step(std::move(st));
}

}  // namespace fg

namespace fg {

Result<void> release_and_wait(Store& store, const LeaseRequest& request) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  store.release(request, [&promise](Result<void> r) { promise.set_value(std::move(r)); });
  return future.get();
}

void Store::count(std::span<const CountRequest> counters, CountCallback done) {
  if (auto ok = check_counters(counters); !ok) {
    done(tl::unexpected(ok.error()));
    return;
  }
  done(fail(ErrorCode::kInvalidArgument, std::string(kind()) + " store keeps no counters"));
}

Result<void> check_counters(std::span<const CountRequest> counters) {
  for (const CountRequest& c : counters) {
    if (c.hits < 0) return fail(ErrorCode::kInvalidArgument, "count: hits must not be negative");
    if (c.hits > 0 && c.ttl.count() <= 0) {
      return fail(ErrorCode::kInvalidArgument, "count: a counter written needs a ttl");
    }
  }
  return {};
}

Result<std::vector<std::int64_t>> count_and_wait(Store& store,
                                                 std::span<const CountRequest> counters) {
  std::promise<Result<std::vector<std::int64_t>>> promise;
  auto future = promise.get_future();
  store.count(counters,
              [&promise](Result<std::vector<std::int64_t>> r) { promise.set_value(std::move(r)); });
  return future.get();
}

Result<void> refund_and_wait(Store& store, const RefundRequest& request) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  store.refund(request, [&promise](Result<void> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace fg
