#include "store/redis/script.h"

#include <charconv>

#include "floodgate/limiter.h"
#include "store/redis/decide_lua.h"  // generated from lua/decide.lua (see CMakeLists.txt)
#include "store/redis/keys.h"

namespace fg::redis {
namespace {

int algorithm_code(Algorithm a) {
  switch (a) {
    case Algorithm::kTokenBucket:
      return 1;
    case Algorithm::kGcra:
      return 2;
    case Algorithm::kSlidingWindow:
      return 3;
    case Algorithm::kFixedWindow:
      return 4;
  }
  return 0;
}

void push_int(std::vector<std::string>& out, std::int64_t v) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;  // 24 bytes hold any int64
  out.emplace_back(buf, end);
}

tl::unexpected<Error> malformed(const Reply& reply, const std::string& why) {
  return fail(ErrorCode::kInternal, "malformed reply from " + std::string(kDecideFunction) + " (" +
                                        why + "): " + describe(reply));
}

}  // namespace

std::string_view decide_lua_source() { return kDecideLuaSource; }

const std::string& library_code() {
  // decide.lua is the whole library: its shebang names it, its last line registers the function.
  static const std::string code(kDecideLuaSource);
  return code;
}

namespace {

// The six values of one charge, with `cost`.
void push_charge(std::vector<std::string>& args, const Charge& c, std::int64_t cost) {
  const Policy& p = *c.policy;
  push_int(args, algorithm_code(p.algorithm));
  push_int(args, cost);
  push_int(args, p.shadow ? 1 : 0);
  const AlgorithmParameters a = algorithm_parameters(p);
  push_int(args, a.p1);
  push_int(args, a.p2);
  push_int(args, a.p3);
}

// FCALL <function> n <keys> <args> as RESP bytes; `slot` receives the keys' slot.
std::string format_fcall(std::string_view function, std::string_view key_prefix,
                         const TagKey& tag_key, std::string_view identity,
                         std::span<const Charge> charges, const std::vector<std::string>& args,
                         int* slot) {
  const std::string escaped = escape_identity(identity);
  const std::string tag = hash_tag(tag_key, escaped);
  std::vector<std::string> keys;
  keys.reserve(charges.size());
  for (const Charge& c : charges) {
    std::string& k = keys.emplace_back();
    append_key(k, key_prefix, tag, escaped, c.policy->name);
  }
  if (slot != nullptr) *slot = key_slot(keys.front());
  std::string numkeys = std::to_string(keys.size());

  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.emplace_back("FCALL");
  argv.emplace_back(function);
  argv.emplace_back(numkeys);
  for (const auto& k : keys) argv.emplace_back(k);
  for (const auto& a : args) argv.emplace_back(a);
  std::string out;
  append_command(out, argv);
  return out;
}

}  // namespace

std::vector<std::string> encode_decide_args(std::span<const Charge> charges,
                                            std::string_view now_us_override) {
  std::vector<std::string> args;
  args.reserve(2 + kArgsPerPolicy * charges.size());
  args.emplace_back(now_us_override);
  push_int(args, static_cast<std::int64_t>(charges.size()));
  for (const Charge& c : charges) push_charge(args, c, c.cost);
  return args;
}

std::vector<std::string> encode_refund_args(const RefundRequest& request,
                                            std::string_view now_us_override) {
  std::vector<std::string> args;
  args.reserve(3 + kArgsPerPolicy * request.charges.size());
  args.emplace_back(now_us_override);
  push_int(args, to_us(request.consumed_at));
  push_int(args, static_cast<std::int64_t>(request.charges.size()));
  for (std::size_t i = 0; i < request.charges.size(); ++i) {
    push_charge(args, request.charges[i], refund_cost(request, i));
  }
  return args;
}

std::string format_refund_command(std::string_view key_prefix, const TagKey& tag_key,
                                  const RefundRequest& request, int* slot,
                                  std::string_view now_us_override) {
  return format_fcall(kRefundFunction, key_prefix, tag_key, request.identity, request.charges,
                      encode_refund_args(request, now_us_override), slot);
}

Result<void> parse_refund_reply(const Reply& reply) {
  if (reply.is_error()) return fail(ErrorCode::kUnavailable, "redis: " + reply.str);
  if (!reply.is_integer() || reply.integer < 0) {
    return fail(ErrorCode::kInternal,
                "malformed reply from " + std::string(kRefundFunction) + ": " + describe(reply));
  }
  return {};
}

std::string format_decide_command(std::string_view key_prefix, const TagKey& tag_key,
                                  std::string_view identity, std::span<const Charge> charges,
                                  int* slot, std::string_view now_us_override) {
  return format_fcall(kDecideFunction, key_prefix, tag_key, identity, charges,
                      encode_decide_args(charges, now_us_override), slot);
}

Result<Verdict> parse_decide_reply(const Reply& reply, std::size_t policies) {
  if (reply.is_error()) {
    return fail(ErrorCode::kUnavailable, "redis: " + reply.str);
  }
  if (!reply.is_array()) return malformed(reply, "not an array");
  if (reply.elements.size() != kReplyHead + kReplyPerPolicy * policies) {
    return malformed(reply, "expected " + std::to_string(kReplyHead + kReplyPerPolicy * policies) +
                                " integers for " + std::to_string(policies) + " policies");
  }
  for (const Reply& e : reply.elements) {
    if (!e.is_integer()) return malformed(reply, "not all integers");
  }
  auto at = [&](std::size_t i) { return reply.elements[i].integer; };
  auto is_flag = [](std::int64_t v) { return v == 0 || v == 1; };

  Verdict v;
  if (!is_flag(at(0))) return malformed(reply, "allowed is not 0 or 1");
  v.allowed = at(0) == 1;
  if (at(1) < 0 || static_cast<std::size_t>(at(1)) >= policies) {
    return malformed(reply, "most restrictive index out of range");
  }
  v.most_restrictive = static_cast<std::size_t>(at(1));
  if (at(2) < 0) return malformed(reply, "negative decision time");
  v.decided_at = from_us(at(2));
  v.decisions.reserve(policies);
  for (std::size_t i = 0; i < policies; ++i) {
    const std::size_t base = kReplyHead + kReplyPerPolicy * i;
    Decision d;
    if (!is_flag(at(base))) return malformed(reply, "a policy's allowed is not 0 or 1");
    d.allowed = at(base) == 1;
    switch (at(base + 1)) {
      case 0:
        d.reason = DenyReason::kNone;
        break;
      case 1:
        d.reason = DenyReason::kOverLimit;
        break;
      case 2:
        d.reason = DenyReason::kCostExceedsBurst;
        break;
      default:
        return malformed(reply, "unknown deny reason");
    }
    if (d.allowed != (d.reason == DenyReason::kNone)) {
      return malformed(reply, "allowed and reason disagree");
    }
    d.limit = at(base + 2);
    d.remaining = at(base + 3);
    const std::int64_t reset_after_us = at(base + 4);
    const std::int64_t retry_after_us = at(base + 5);
    if (d.limit < 0 || d.remaining < 0 || reset_after_us < 0 || retry_after_us < 0) {
      return malformed(reply, "negative figure");
    }
    d.reset_after = Duration(reset_after_us);
    d.retry_after = Duration(retry_after_us);
    v.decisions.push_back(d);
  }
  return v;
}

}  // namespace fg::redis
