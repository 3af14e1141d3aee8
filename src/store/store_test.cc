#include "floodgate/store.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "test_policy.h"

namespace fg {
namespace {

TEST(CheckCharges, RefusesWhatNoStoreCouldDecide) {
  const Policy p = test::make_policy("p", 1, {.period = std::chrono::seconds(1)});
  EXPECT_EQ(check_charges({}).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> null_policy = {{nullptr, 1}};
  EXPECT_EQ(check_charges(null_policy).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> negative = {{&p, -1}};
  EXPECT_EQ(check_charges(negative).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> huge = {{&p, kMaxCount + 1}};
  EXPECT_EQ(check_charges(huge).error().code, ErrorCode::kInvalidArgument);
  const std::vector<Charge> ok = {{&p, 0}, {&p, kMaxCount}};
  EXPECT_TRUE(check_charges(ok).has_value());
}

// A store that answers later, when the test says so (as a Redis store answers on its I/O
// thread): it keeps each (move-only) callback and the identity it was asked about.
class LaterStore final : public Store {
 public:
  void decide(const DecideRequest& request, DecideCallback done) override {
    asked.emplace_back(request.identity);
    waiting.push_back(std::move(done));
  }
  void refund(const RefundRequest&, RefundCallback done) override { done(Result<void>{}); }
  std::string_view kind() const override { return "later"; }

  // Answers the oldest decision waiting: allowed, one decision.
  void answer_one() {
    DecideCallback done = std::move(waiting.front());
    waiting.erase(waiting.begin());
    Verdict v;
    v.allowed = true;
    v.decisions.push_back(Decision{.allowed = true});
    done(std::move(v));
  }

  std::vector<std::string> asked;
  std::vector<DecideCallback> waiting;
};

TEST(DecideAll, KeepsItsOwnCopyOfTheRequests) {
  const Policy p = test::make_policy("p", 1, {.period = std::chrono::seconds(1)});
  const std::vector<Charge> charges = {{&p, 1}};
  LaterStore store;
  std::optional<Result<Verdict>> out;
  {
    std::vector<DecideRequest> requests = {{"first", charges}, {"second", charges}};
    decide_all(store, requests, [&out](Result<Verdict> v) { out = std::move(v); });
    // The caller's requests change (or go) once decide_all() returns: the second identity is
    // asked later, from decide_all's own copy.
    requests[1].identity = "changed";
  }
  ASSERT_EQ(store.waiting.size(), 1u);
  store.answer_one();
  ASSERT_EQ(store.waiting.size(), 1u);
  store.answer_one();
  EXPECT_EQ(store.asked, (std::vector<std::string>{"first", "second"}));
  ASSERT_TRUE(out && *out);
  EXPECT_TRUE((*out)->allowed);
  EXPECT_EQ((*out)->decisions.size(), 2u);
}

}  // namespace
}  // namespace fg
