// count.h — Envoy's ratelimit counters on the Redis side (Store::count): the library
// `floodgate_count_v1` (src/store/redis/lua/count.lua, embedded at build time) with its function
// `fg_count_v1`, the FCALL that counts, and its reply. Pure functions, no I/O.
//
//   FCALL fg_count_v1 <n> key_1 .. key_n  (hits ttl_s) x n
//   reply: n integers, each counter after its hits.
//
// A library of its own, beside floodgate_v3 (script.h): it is loaded with FUNCTION LOAD REPLACE
// when a node first answers "Function not found" to a count (then the FCALL is sent again), so a
// store that never counts never loads it. The keys are the caller's, unchanged (for `floodgate
// rls`: envoyproxy/ratelimit's own key names, so that both services could share counters); on a
// cluster one FCALL holds keys of one hash slot.
//
// Thread safety: pure functions over values.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/result.h"
#include "floodgate/store.h"
#include "store/redis/resp.h"

namespace fg::redis {

inline constexpr std::string_view kCountLibraryName = "floodgate_count_v1";
inline constexpr std::string_view kCountFunction = "fg_count_v1";

// The library text given to FUNCTION LOAD REPLACE (count.lua as embedded).
const std::string& count_library_code();

// The command that loads it (RESP bytes): FUNCTION LOAD REPLACE <count.lua>. One reply: the
// library's name, or an error.
std::string count_load_command();

// The whole FCALL fg_count_v1 for `counters` (at least one; ttl rounded up to whole seconds, at
// least 1) as RESP bytes. Precondition: fg::check_counters(counters) succeeded.
std::string format_count_command(std::span<const CountRequest> counters);

// The counters in a reply to fg_count_v1 for `n` keys. An error reply is kUnavailable with
// Redis's message; any other shape kInternal.
Result<std::vector<std::int64_t>> parse_count_reply(const Reply& reply, std::size_t n);
// The same from a reply's values (a flat array of integers: ReplyHandler::on_integers).
Result<std::vector<std::int64_t>> parse_count_reply(std::span<const std::int64_t> values,
                                                    std::size_t n);

}  // namespace fg::redis
