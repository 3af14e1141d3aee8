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

Result<Verdict> decide_and_wait(Store& store, const DecideRequest& request) {
  std::promise<Result<Verdict>> promise;
  auto future = promise.get_future();
  store.decide(request, [&promise](Result<Verdict> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace fg
