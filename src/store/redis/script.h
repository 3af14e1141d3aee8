// script.h — the decide function on the Redis side: its library text, the FCALL arguments that
// describe a request, and the reply that describes the verdict. Pure functions, no I/O.
//
// The Lua (src/store/redis/lua/decide.lua, embedded at build time) is a Redis 7 FUNCTION library,
// `floodgate_v2`, registering `fg_decide_v2` and `fg_refund_v2`:
// FUNCTION LOAD is replicated to replicas, so the function survives a failover (SCRIPT LOAD does
// not: design §4), and one FCALL runs the whole all-or-nothing decision atomically.
//
//   FCALL fg_decide_v2 <n> key_1 .. key_n  now_us n  (alg cost shadow p1 p2 p3) x n
//
//   now_us   "" in production: the script reads Redis TIME (one clock for every instance);
//            tests pass an integer to fix time.
//   alg      1 token_bucket, 2 gcra, 3 sliding_window, 4 fixed_window
//   shadow   0 | 1
//   p1 p2 p3 token_bucket, gcra:  burst, unit, rate      (algorithm_parameters, limiter.h)
//            sliding_window:      limit, period_us, granule_us (algorithm_parameters)
//            fixed_window:        limit, period_us, 0
//
// Reply: a flat array of integers, [allowed, most_restrictive (0-based), decided_at_us (the TIME
// it used), then per policy: allowed, reason (0 none, 1 over_limit, 2 cost_exceeds_burst), limit,
// remaining, reset_after_us, retry_after_us].
//
//   FCALL fg_refund_v2 <n> key_1 .. key_n  now_us consumed_at_us n  (alg cost shadow p1 p2 p3) x n
//
// gives back what an allowed fg_decide_v2 consumed (store.h: Store::refund), with the same keys
// and per-charge values, `cost` being what that charge consumed (fg::refund_cost). Reply: an
// integer, the number of states written or deleted.
//
// Changing the protocol means a new function name (fg_decide_v3) and library name, so instances
// of two versions can share one Redis during a rolling upgrade (v1 had no refund and no
// decided_at in its reply).
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/decision.h"
#include "floodgate/limiter.h"
#include "floodgate/store.h"
#include "floodgate/result.h"
#include "store/redis/keys.h"
#include "store/redis/resp.h"

namespace fg::redis {

inline constexpr std::string_view kLibraryName = "floodgate_v2";
inline constexpr std::string_view kDecideFunction = "fg_decide_v2";
inline constexpr std::string_view kRefundFunction = "fg_refund_v2";

// Values per policy in the arguments, and in the reply after its three-value head.
inline constexpr std::size_t kArgsPerPolicy = 6;
inline constexpr std::size_t kReplyHead = 3;
inline constexpr std::size_t kReplyPerPolicy = 6;

// The library as given to FUNCTION LOAD REPLACE: decide.lua, embedded at build time.
const std::string& library_code();

// The Lua source the library was built from (the file as embedded).
std::string_view decide_lua_source();

// The script arguments after the keys: now_us, n, then six values per charge.
// Precondition: fg::check_charges(charges) succeeded.
std::vector<std::string> encode_decide_args(std::span<const Charge> charges,
                                            std::string_view now_us_override = "");

// The whole FCALL as RESP bytes: FCALL fg_decide_v2 n <keys> <args>, with the keys built from
// `key_prefix`, the identity's hash tag under `tag_key`, the identity and each policy's name
// (keys.h). `slot` receives the keys' slot. Precondition: fg::check_charges(charges) succeeded.
std::string format_decide_command(std::string_view key_prefix, const TagKey& tag_key,
                                  std::string_view identity, std::span<const Charge> charges,
                                  int* slot, std::string_view now_us_override = "");

// The verdict in a reply to FCALL fg_decide_v2 for `policies` charges. An error reply is
// kUnavailable with Redis's message; a reply of the wrong shape or with values out of range is
// kInternal (a script and a binary that disagree): never a crash, never a made-up verdict.
Result<Verdict> parse_decide_reply(const Reply& reply, std::size_t policies);

// The refund's arguments after the keys: now_us, consumed_at_us, n, then six values per charge
// of `request` (the decide encoding, with each cost replaced by fg::refund_cost).
// Precondition: fg::check_refund(request) succeeded.
std::vector<std::string> encode_refund_args(const RefundRequest& request,
                                            std::string_view now_us_override = "");

// The whole FCALL fg_refund_v2 as RESP bytes, keys as format_decide_command's; `slot` receives
// their slot. Precondition: fg::check_refund(request) succeeded.
std::string format_refund_command(std::string_view key_prefix, const TagKey& tag_key,
                                  const RefundRequest& request, int* slot,
                                  std::string_view now_us_override = "");

// A reply to FCALL fg_refund_v2: success for an integer; an error reply is kUnavailable, any
// other shape kInternal.
Result<void> parse_refund_reply(const Reply& reply);

}  // namespace fg::redis
