#include <future>

#include "floodgate/store.h"

namespace fg {

Result<Verdict> decide_and_wait(Store& store, const DecideRequest& request) {
  std::promise<Result<Verdict>> promise;
  auto future = promise.get_future();
  store.decide(request, [&promise](Result<Verdict> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace fg
