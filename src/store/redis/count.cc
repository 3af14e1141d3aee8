#include "store/redis/count.h"

#include <algorithm>
#include <string>

#include "store/redis/count_lua.h"  // generated from lua/count.lua (see CMakeLists.txt)

namespace fg::redis {

const std::string& count_library_code() {
  static const std::string code(kCountLuaSource);
  return code;
}

std::string count_load_command() {
  return format_command({"FUNCTION", "LOAD", "REPLACE", count_library_code()});
}

std::string format_count_command(std::span<const CountRequest> counters) {
  std::vector<std::string> argv;
  argv.reserve(3 + counters.size() * 3);
  argv.emplace_back("FCALL");
  argv.emplace_back(kCountFunction);
  argv.push_back(std::to_string(counters.size()));
  for (const CountRequest& c : counters) argv.emplace_back(c.key);
  for (const CountRequest& c : counters) {
    argv.push_back(std::to_string(c.hits));
    // EXPIRE takes whole seconds: rounded up, so that a counter never expires inside its window.
    const std::int64_t ttl_us = c.ttl.count();
    argv.push_back(std::to_string(std::max<std::int64_t>(1, (ttl_us + 999'999) / 1'000'000)));
  }
  return format_command(std::span<const std::string>(argv));
}

Result<std::vector<std::int64_t>> parse_count_reply(const Reply& reply, std::size_t n) {
  if (reply.is_error()) return fail(ErrorCode::kUnavailable, reply.str);
  if (!reply.is_array() || reply.elements.size() != n) {
    return fail(ErrorCode::kInternal,
                "malformed reply from " + std::string(kCountFunction) + ": " + describe(reply));
  }
  std::vector<std::int64_t> values;
  values.reserve(n);
  for (const Reply& e : reply.elements) {
    if (!e.is_integer()) {
      return fail(ErrorCode::kInternal,
                  "malformed reply from " + std::string(kCountFunction) + ": " + describe(reply));
    }
    values.push_back(e.integer);
  }
  return parse_count_reply(values, n);
}

Result<std::vector<std::int64_t>> parse_count_reply(std::span<const std::int64_t> values,
                                                    std::size_t n) {
  const bool negative = std::any_of(values.begin(), values.end(), [](auto v) { return v < 0; });
  if (values.size() != n || negative) {
    return fail(ErrorCode::kInternal, "malformed reply from " + std::string(kCountFunction) +
                                          ": " + describe(integer_array_reply(values)));
  }
  return std::vector<std::int64_t>(values.begin(), values.end());
}

}  // namespace fg::redis
