#include "floodgate/inline_function.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

// Every allocation of this test program is counted (count_allocations.h), to show that
// InlineFunction makes none.
#include "count_allocations.h"

using count_allocations::allocations;

namespace fg {
namespace {

// Counts its live copies and how they ended, to check that every target is destroyed exactly
// once whatever moves it went through.
struct Tracked {
  static inline int alive = 0;
  static inline int destroyed = 0;
  explicit Tracked(int v) : value(v) { ++alive; }
  Tracked(Tracked&& o) noexcept : value(o.value), moved_from(false) {
    o.moved_from = true;
    ++alive;
  }
  Tracked(const Tracked&) = delete;
  ~Tracked() {
    --alive;
    ++destroyed;
  }
  int value;
  bool moved_from = false;
};

class InlineFunctionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Tracked::alive = 0;
    Tracked::destroyed = 0;
  }
};

using Fn = InlineFunction<int(int), 64>;

TEST_F(InlineFunctionTest, EmptyUntilGivenATarget) {
  Fn none;
  EXPECT_FALSE(none);
  Fn null = nullptr;
  EXPECT_FALSE(null);
  int (*no_function)(int) = nullptr;
  Fn from_null_pointer = no_function;
  EXPECT_FALSE(from_null_pointer) << "a null function pointer is no target";
  Fn some = [](int x) { return x + 1; };
  EXPECT_TRUE(some);
  EXPECT_EQ(some(41), 42);
  some = nullptr;
  EXPECT_FALSE(some);
}

TEST_F(InlineFunctionTest, CallsAsOftenAsAskedAndKeepsItsState) {
  Fn counter = [n = 0](int step) mutable { return n += step; };
  EXPECT_EQ(counter(1), 1);
  EXPECT_EQ(counter(2), 3);
  EXPECT_EQ(counter(3), 6);
  int (*twice)(int) = [](int x) { return 2 * x; };
  Fn plain = twice;
  EXPECT_EQ(plain(21), 42);
}

TEST_F(InlineFunctionTest, MovesTheTargetAndEmptiesTheSource) {
  Fn a = [t = Tracked(7)](int x) { return t.value + x; };
  EXPECT_EQ(Tracked::alive, 1);
  Fn b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): a moved-from InlineFunction is empty
  ASSERT_TRUE(b);
  EXPECT_EQ(b(1), 8);
  EXPECT_EQ(Tracked::alive, 1) << "the move relocates the target: one live copy";
  Fn c = [](int x) { return x; };
  c = std::move(b);
  EXPECT_EQ(c(2), 9);
  EXPECT_EQ(Tracked::alive, 1);
  c = std::move(c);  // NOLINT: self-move leaves the target in place
  ASSERT_TRUE(c);
  EXPECT_EQ(c(3), 10);
}

TEST_F(InlineFunctionTest, DestroysEveryTargetExactlyOnce) {
  {
    Fn a = [t = Tracked(1)](int) { return t.value; };
    Fn b = std::move(a);
    Fn c;
    c = std::move(b);
    std::vector<Fn> held;
    held.push_back(std::move(c));
    for (int i = 0; i < 20; ++i) {  // growth moves every element
      held.push_back([t = Tracked(i)](int) { return t.value; });
    }
    EXPECT_EQ(Tracked::alive, 21);
    held[3] = nullptr;  // destroys that target now
    EXPECT_EQ(Tracked::alive, 20);
    held[4] = std::move(held[5]);  // destroys held[4]'s target, takes held[5]'s
    EXPECT_EQ(Tracked::alive, 19);
  }
  EXPECT_EQ(Tracked::alive, 0) << "each target destroyed once: none leaked, none twice";
}

TEST_F(InlineFunctionTest, OwnsMoveOnlyAndNonTrivialCaptures) {
  auto owned = std::make_unique<std::string>("a string long enough to live on the heap itself");
  const std::string* where = owned.get();
  InlineFunction<std::string(std::string), 64> f =
      [p = std::move(owned), v = std::vector<int>{1, 2, 3}](std::string suffix) {
        return *p + ":" + std::to_string(v.size()) + suffix;
      };
  InlineFunction<std::string(std::string), 64> g = std::move(f);
  EXPECT_EQ(g("!"), *where + ":3!");
}

TEST_F(InlineFunctionTest, PassesMoveOnlyArguments) {
  InlineFunction<int(std::unique_ptr<int>), 16> take = [](std::unique_ptr<int> p) { return *p; };
  EXPECT_EQ(take(std::make_unique<int>(5)), 5);
}

TEST_F(InlineFunctionTest, HoldsTheLargestCallableThatFits) {
  std::array<unsigned char, 64> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i);
  auto largest = [bytes](int i) { return static_cast<int>(bytes[static_cast<std::size_t>(i)]); };
  static_assert(sizeof(largest) == Fn::kCapacity);
  static_assert(Fn::fits<decltype(largest)>);
  auto one_more = [bytes, extra = char{1}](int) { return bytes[0] + extra; };
  static_assert(!Fn::fits<decltype(one_more)>, "a callable over the capacity does not compile");
  Fn f = largest;
  Fn g = std::move(f);
  EXPECT_EQ(g(0), 0);
  EXPECT_EQ(g(63), 63);
}

TEST_F(InlineFunctionTest, AllocatesNothing) {
  std::string text = "captured by copy: a std::string over the small string buffer";
  auto make = [&] { return [s = std::move(text), t = Tracked(1)](int x) { return x + t.value; }; };
  auto target = make();  // the std::string's own buffer moves with it, never copied
  const long before = allocations();
  {
    Fn a = std::move(target);
    Fn b = std::move(a);
    EXPECT_EQ(b(1), 2);
    std::array<Fn, 4> moved;
    moved[0] = std::move(b);
    moved[1] = std::move(moved[0]);
    EXPECT_EQ(moved[1](2), 3);
  }
  EXPECT_EQ(allocations() - before, 0);
  // The control: std::function allocates for this capture, which is why floodgate's callbacks
  // are InlineFunctions (were it not so, this test would show nothing).
  const long control = allocations();
  std::function<int(int)> heavy = [a = std::array<char, 64>{}](int x) { return x + a[0]; };
  EXPECT_GT(allocations() - control, 0);
  EXPECT_EQ(heavy(1), 1);
}

}  // namespace
}  // namespace fg
