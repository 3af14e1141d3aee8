// time_scale.h — how much longer a test may wait in this build.
//
// Sanitizer builds run several times slower (ThreadSanitizer 5-15x); the `asan` and `tsan` test
// presets set FG_TEST_TIME_SCALE (docs/sanitizers.md). A test multiplies by it the time it gives
// real work on a busy machine: a store deadline that a cold or slowed process must meet, an
// upper bound on how long a request may take. Never what floodgate decides from a clock (windows,
// Retry-After, reset times), and never a lower bound. Unset or invalid: 1.
#pragma once

#include <chrono>
#include <cstdlib>

namespace fg::test {

inline int time_scale() {
  static const int scale = [] {
    const char* text = std::getenv("FG_TEST_TIME_SCALE");
    if (text == nullptr) return 1;
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    return (end != text && *end == '\0' && value >= 1 && value <= 100) ? static_cast<int>(value)
                                                                       : 1;
  }();
  return scale;
}

// `d` times the scale: scaled(std::chrono::seconds(2)).
template <class Rep, class Period>
std::chrono::duration<Rep, Period> scaled(std::chrono::duration<Rep, Period> d) {
  return d * time_scale();
}

}  // namespace fg::test
