#include <future>
#include <string>

#include "floodgate/store.h"

namespace fg {

Result<void> check_charges(std::span<const Charge> charges) {
  if (charges.empty()) return fail(ErrorCode::kInvalidArgument, "no policy to decide");
  for (const Charge& c : charges) {
    if (c.policy == nullptr) return fail(ErrorCode::kInvalidArgument, "charge without policy");
    if (c.cost < 0 || c.cost > kMaxCount) {
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

Result<Verdict> decide_and_wait(Store& store, const DecideRequest& request) {
  std::promise<Result<Verdict>> promise;
  auto future = promise.get_future();
  store.decide(request, [&promise](Result<Verdict> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace fg

namespace fg {

Result<void> refund_and_wait(Store& store, const RefundRequest& request) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  store.refund(request, [&promise](Result<void> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace fg
