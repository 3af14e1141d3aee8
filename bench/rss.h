// rss.h — this process's resident set size, for the memory-bound benchmarks
// (memory_bound.cc, deny_cache_bound.cc).
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

namespace fg::bench {

// VmRSS from /proc/self/status, in KiB; -1 if it cannot be read.
inline long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

}  // namespace fg::bench
