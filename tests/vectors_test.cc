// Runs every case of tests/vectors/*.yaml against the C++ core, the way a store runs it:
// states are kept between steps and dropped once their ttl has passed (as Redis PEXPIRE does),
// so a ttl that is too short shows up as a wrong decision.
#include "vectors.h"

#include <gtest/gtest.h>

#include <map>

#include "floodgate/limiter.h"
#include "floodgate/store.h"

namespace fg::test {
namespace {

struct Stored {
  State state;
  std::int64_t expires_us;
};

TEST(Vectors, CoreAgreesWithEveryCase) {
  const auto cases = load_all_vectors();
  ASSERT_GT(cases.size(), 20u);
  for (const VectorCase& vc : cases) {
    SCOPED_TRACE(vc.file + ": " + vc.name);
    std::vector<Charge> charges;
    for (const Policy& p : vc.policies) charges.push_back(Charge{&p, 1});
    std::map<std::size_t, Stored> store;
    std::vector<Verdict> verdicts;  // per step (empty for a refund step)
    for (const VectorStep& step : vc.steps) {
      const std::int64_t now_us = kVectorEpochUs + step.at_us;
      std::vector<std::optional<State>> states(charges.size());
      for (std::size_t i = 0; i < charges.size(); ++i) {
        charges[i].cost = step.cost;
        auto it = store.find(i);
        if (it != store.end() && it->second.expires_us > now_us) states[i] = it->second.state;
      }
      if (step.refund_of) {
        // As a store runs a refund: the costs that consumed, the writes (ttl 0 deletes).
        const Verdict& refunded = verdicts[*step.refund_of];
        ASSERT_TRUE(refunded.allowed) << vc.file << ":" << step.line << ": refund of a denial";
        const RefundRequest request{"v", charges, refunded.decided_at, refunded.decisions};
        std::vector<Charge> given = charges;
        for (std::size_t i = 0; i < given.size(); ++i) given[i].cost = refund_cost(request, i);
        for (const StateWrite& w :
             plan_refund(given, states, refunded.decided_at, from_us(now_us))) {
          if (w.ttl.count() == 0) {
            store.erase(w.index);
          } else {
            store[w.index] = Stored{w.state, now_us + w.ttl.count()};
          }
        }
        verdicts.emplace_back();
        continue;
      }
      const Evaluation eval = evaluate(charges, states, from_us(now_us));
      EXPECT_EQ(eval.verdict.decided_at, from_us(now_us));
      verdicts.push_back(eval.verdict);
      EXPECT_EQ(compare(step, eval.verdict), "") << vc.file << ":" << step.line;
      for (const StateWrite& w : eval.writes) {
        EXPECT_GT(w.ttl.count(), 0) << vc.file << ":" << step.line << ": a write without ttl";
        store[w.index] = Stored{w.state, now_us + w.ttl.count()};
      }
    }
  }
}

}  // namespace
}  // namespace fg::test
