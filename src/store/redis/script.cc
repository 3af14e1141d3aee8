#include "store/redis/script.h"

#include <charconv>
#include <cstring>

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
    case Algorithm::kConcurrency:
      return 5;
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

// "$<len>\r\n".
void append_bulk_header(std::string& out, std::size_t len) {
  char digits[24];
  digits[0] = '$';
  const auto end = std::to_chars(digits + 1, digits + sizeof(digits) - 2, len).ptr;
  end[0] = '\r';
  end[1] = '\n';
  out.append(digits, static_cast<std::size_t>(end + 2 - digits));
}

// "$<len>\r\n<bytes>\r\n".
void append_bulk(std::string& out, std::string_view bytes) {
  append_bulk_header(out, bytes.size());
  out.append(bytes);
  out.append("\r\n", 2);
}

// "$<len>\r\n<v>\r\n", built on the stack and appended once (a batch writes several per
// decision).
void append_bulk_int(std::string& out, std::int64_t v) {
  char digits[24];
  const auto n = static_cast<std::size_t>(std::to_chars(digits, digits + sizeof digits, v).ptr -
                                          digits);  // 1 to 20
  char buf[32];
  char* p = buf;
  *p++ = '$';
  if (n >= 10) *p++ = static_cast<char>('0' + n / 10);
  *p++ = static_cast<char>('0' + n % 10);
  *p++ = '\r';
  *p++ = '\n';
  std::memcpy(p, digits, n);
  p += n;
  *p++ = '\r';
  *p++ = '\n';
  out.append(buf, static_cast<std::size_t>(p - buf));
}

// A policy's five values in a call (alg shadow p1 p2 p3), as bulk strings: the block a batch
// sends once per distinct policy.
void append_policy_block(std::string& out, const Policy& p) {
  const AlgorithmParameters a = algorithm_parameters(p);
  append_bulk_int(out, algorithm_code(p.algorithm));
  append_bulk_int(out, p.shadow ? 1 : 0);
  append_bulk_int(out, a.p1);
  append_bulk_int(out, a.p2);
  append_bulk_int(out, a.p3);
}

void append_array_header(std::string& out, std::size_t n) {
  char digits[24];
  digits[0] = '*';
  const auto end = std::to_chars(digits + 1, digits + sizeof(digits) - 2, n).ptr;
  end[0] = '\r';
  end[1] = '\n';
  out.append(digits, static_cast<std::size_t>(end + 2 - digits));
}

// The keys of one identity's charges, appended to `out` as bulk strings; returns their slot.
int append_keys(std::string& out, std::string_view key_prefix, const TagKey& tag_key,
                std::string_view identity, std::span<const Charge> charges) {
  const std::string escaped = escape_identity(identity);
  const std::string tag = hash_tag(tag_key, escaped);
  std::string key;
  int slot = 0;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    key.clear();
    append_key(key, key_prefix, tag, escaped, charges[i].policy->name);
    if (i == 0) slot = key_slot(key);
    append_bulk(out, key);
  }
  return slot;
}

// One item's verdict from values[at ..]: `head` values (allowed, most_restrictive), `gap` values
// skipped, then six per policy, written to `*v` unless `v` is null (a check only). "" on
// success, else what is wrong. Precondition: the values are there (the reply's size checked).
std::string parse_item(std::span<const std::int64_t> values, std::size_t at, std::size_t gap,
                       std::size_t policies, Verdict* v) {
  auto is_flag = [](std::int64_t x) { return x == 0 || x == 1; };
  if (!is_flag(values[at])) return "allowed is not 0 or 1";
  if (values[at + 1] < 0 || static_cast<std::size_t>(values[at + 1]) >= policies) {
    return "most restrictive index out of range";
  }
  if (v != nullptr) {
    v->allowed = values[at] == 1;
    v->most_restrictive = static_cast<std::size_t>(values[at + 1]);
    v->decisions.clear();
    v->decisions.reserve(policies);
  }
  for (std::size_t i = 0; i < policies; ++i) {
    const std::size_t base = at + kItemReplyHead + gap + kReplyPerPolicy * i;
    Decision d;
    if (!is_flag(values[base])) return "a policy's allowed is not 0 or 1";
    d.allowed = values[base] == 1;
    switch (values[base + 1]) {
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
        return "unknown deny reason";
    }
    if (d.allowed != (d.reason == DenyReason::kNone)) return "allowed and reason disagree";
    d.limit = values[base + 2];
    d.remaining = values[base + 3];
    const std::int64_t reset_after_us = values[base + 4];
    const std::int64_t retry_after_us = values[base + 5];
    if (d.limit < 0 || d.remaining < 0 || reset_after_us < 0 || retry_after_us < 0) {
      return "negative figure";
    }
    d.reset_after = Duration(reset_after_us);
    d.retry_after = Duration(retry_after_us);
    if (v != nullptr) v->decisions.push_back(d);
  }
  return "";
}

// Whether `reply` is an array of `size` integers; "" if so, else what is wrong.
std::string check_integers(const Reply& reply, std::size_t size) {
  if (!reply.is_array()) return "not an array";
  if (reply.elements.size() != size) {
    return "expected " + std::to_string(size) + " integers, got " +
           std::to_string(reply.elements.size());
  }
  for (const Reply& e : reply.elements) {
    if (!e.is_integer()) return "not all integers";
  }
  return "";
}

std::vector<std::int64_t> integers_of(const Reply& reply) {
  std::vector<std::int64_t> values;
  values.reserve(reply.elements.size());
  for (const Reply& e : reply.elements) values.push_back(e.integer);
  return values;
}

tl::unexpected<Error> malformed(std::span<const std::int64_t> values, const std::string& why) {
  return malformed(integer_array_reply(values), why);
}

}  // namespace

std::vector<std::string> library_load_commands() {
  return {format_command({"MULTI"}), format_command({"FUNCTION", "DELETE", kPreviousLibraryName}),
          format_command({"FUNCTION", "DELETE", kOlderLibraryName}),
          format_command({"FUNCTION", "LOAD", "REPLACE", library_code()}),
          format_command({"EXEC"})};
}

EncodedDecision encode_decision(std::string_view key_prefix, const TagKey& tag_key,
                                std::string_view identity, std::span<const Charge> charges) {
  EncodedDecision d;
  d.slot = append_keys(d.keys, key_prefix, tag_key, identity, charges);
  d.key_count = static_cast<std::uint32_t>(charges.size());
  d.policies = charges.size();
  d.blocks.reserve(charges.size() * 48);
  for (const Charge& c : charges) {
    append_policy_block(d.blocks, *c.policy);
    d.block_ends.push_back(static_cast<std::uint32_t>(d.blocks.size()));
    d.costs.push_back(c.cost);
  }
  return d;
}

void append_decide_batch(std::string& out, std::span<const EncodedDecision* const> items,
                         std::string_view now_us_override) {
  // The call's distinct policies, in order of first use, and each charge's 1-based index among
  // them. A batch holds a few policies (those of the config), so a linear search is enough.
  boost::container::small_vector<std::string_view, 8> table;
  boost::container::small_vector<std::uint16_t, 64> index;
  std::size_t keys = 0, charges = 0, bytes = 64 + now_us_override.size();
  for (const EncodedDecision* d : items) {
    keys += d->key_count;
    charges += d->policies;
    bytes += d->keys.size() + 4 + d->policies * 16;
    for (std::size_t i = 0; i < d->policies; ++i) {
      const std::string_view block = d->block(i);
      std::size_t j = 0;
      while (j < table.size() && table[j] != block) ++j;
      if (j == table.size()) {
        table.push_back(block);
        bytes += block.size();
      }
      index.push_back(static_cast<std::uint16_t>(j + 1));
    }
  }
  out.reserve(out.size() + bytes);
  // FCALL fg_decide_v4 numkeys keys.. now_us m p (alg shadow p1 p2 p3) x p (n (j cost) x n) x m
  append_array_header(out, 3 + keys + 3 + 5 * table.size() + items.size() + 2 * charges);
  append_bulk(out, "FCALL");
  append_bulk(out, kDecideFunction);
  append_bulk_int(out, static_cast<std::int64_t>(keys));
  for (const EncodedDecision* d : items) out.append(d->keys);
  append_bulk(out, now_us_override);
  append_bulk_int(out, static_cast<std::int64_t>(items.size()));
  append_bulk_int(out, static_cast<std::int64_t>(table.size()));
  for (std::string_view block : table) out.append(block);
  std::size_t at = 0;
  for (const EncodedDecision* d : items) {
    append_bulk_int(out, static_cast<std::int64_t>(d->policies));
    for (std::size_t i = 0; i < d->policies; ++i) {
      append_bulk_int(out, index[at++]);
      append_bulk_int(out, d->costs[i]);
    }
  }
}

namespace {

// Whether `a` and `b` encode alike: the fields of a block and of a key's policy part.
bool same_encoding(const Policy& a, const Policy& b) {
  return a.algorithm == b.algorithm && a.limit == b.limit && a.period == b.period &&
         a.burst == b.burst && a.shadow == b.shadow && a.name == b.name;
}

void encode_block(PolicyBlock& b, const Policy& p) {
  b.source = &p;
  b.policy = p;
  b.block.clear();
  append_policy_block(b.block, p);
  b.escaped_name.clear();
  append_escaped(b.escaped_name, p.name);
}

}  // namespace

PolicyBlocks::Ref PolicyBlocks::get(const Policy& policy) {
  // The usual case: the same policy object as before, one pointer comparison per block ahead of
  // it, then its fields (its address may have been reused).
  PolicyBlock* stale = nullptr;
  for (const auto& b : blocks_) {
    if (b->source != &policy) continue;
    if (same_encoding(b->policy, policy)) return Ref(b.get());
    stale = b.get();
    break;
  }
  // Another object with the same fields (a reload that kept the policy): its block, found
  // where this address will find it next time.
  for (const auto& b : blocks_) {
    if (same_encoding(b->policy, policy)) {
      b->source = &policy;
      return Ref(b.get());
    }
  }
  PolicyBlock* target = stale != nullptr && stale->uses == 0 ? stale : nullptr;
  if (target == nullptr && blocks_.size() >= kMaxKept) {
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      if ((*it)->uses == 0) {
        target = it->get();
        break;
      }
    }
  }
  if (target == nullptr) target = blocks_.emplace_back(std::make_unique<PolicyBlock>()).get();
  encode_block(*target, policy);
  return Ref(target);
}

void prepare_decision(PendingDecision& d, std::string_view key_prefix, const TagKey& tag_key,
                      std::string_view identity, std::span<const Charge> charges,
                      PolicyBlocks& blocks, std::string& scratch) {
  d.blocks.clear();
  d.costs.clear();
  scratch.clear();
  append_escaped_identity(scratch, identity);
  const std::size_t escaped_size = scratch.size();
  const std::string tag = hash_tag(tag_key, scratch);
  // The stem goes after the escaped identity in `scratch`, read from there meanwhile: reserved
  // first (the prefix escapes to at most 3 bytes per byte), so the appends cannot move it.
  scratch.reserve(2 * escaped_size + 3 * key_prefix.size() + kTagLength + 8);
  const std::string_view escaped(scratch.data(), escaped_size);
  append_key_stem(scratch, key_prefix, tag, escaped);
  const std::string_view stem = std::string_view(scratch).substr(escaped_size);
  d.stem.assign(stem.begin(), stem.end());
  d.slot = key_slot(stem);
  for (const Charge& c : charges) {
    d.blocks.push_back(blocks.get(*c.policy));
    d.costs.push_back(c.cost);
  }
}

void write_decide_batch(std::string& out, std::span<const PendingDecision> items,
                        std::string_view now_us_override) {
  // As append_decide_batch: the distinct blocks in order of first use, and each charge's 1-based
  // index among them. Usually the same block is the same PolicyBlock; two policies with equal
  // blocks are one entry there too.
  boost::container::small_vector<const PolicyBlock*, 8> table;
  boost::container::small_vector<std::uint16_t, 64> index;
  std::size_t keys = 0, bytes = 64 + now_us_override.size();
  for (const PendingDecision& d : items) {
    keys += d.policies();
    bytes += 4;
    for (std::size_t i = 0; i < d.policies(); ++i) {
      const PolicyBlock* b = d.blocks[i].get();
      bytes += 8 + d.stem.size() + b->escaped_name.size() + 16;
      std::size_t j = 0;
      while (j < table.size() && table[j] != b && table[j]->block != b->block) ++j;
      if (j == table.size()) {
        table.push_back(b);
        bytes += b->block.size();
      }
      index.push_back(static_cast<std::uint16_t>(j + 1));
    }
  }
  out.reserve(out.size() + bytes);
  const std::size_t charges = keys;  // one key per charge
  append_array_header(out, 3 + keys + 3 + 5 * table.size() + items.size() + 2 * charges);
  append_bulk(out, "FCALL");
  append_bulk(out, kDecideFunction);
  append_bulk_int(out, static_cast<std::int64_t>(keys));
  for (const PendingDecision& d : items) {
    for (std::size_t i = 0; i < d.policies(); ++i) {
      const std::string& name = d.blocks[i]->escaped_name;
      append_bulk_header(out, d.stem.size() + name.size());
      out.append(d.stem.data(), d.stem.size());
      out.append(name);
      out.append("\r\n", 2);
    }
  }
  append_bulk(out, now_us_override);
  append_bulk_int(out, static_cast<std::int64_t>(items.size()));
  append_bulk_int(out, static_cast<std::int64_t>(table.size()));
  for (const PolicyBlock* b : table) out.append(b->block);
  std::size_t at = 0;
  for (const PendingDecision& d : items) {
    append_bulk_int(out, static_cast<std::int64_t>(d.policies()));
    for (std::size_t i = 0; i < d.policies(); ++i) {
      append_bulk_int(out, index[at++]);
      append_bulk_int(out, d.costs[i]);
    }
  }
}

void append_decide_batch_v3(std::string& out, std::span<const EncodedDecision* const> items,
                            std::string_view now_us_override) {
  std::size_t keys = 0, charges = 0;
  for (const EncodedDecision* d : items) {
    keys += d->key_count;
    charges += d->policies;
  }
  // FCALL fg_decide_v3 numkeys keys.. now_us m (n (alg cost shadow p1 p2 p3) x n) x m
  append_array_header(out, 3 + keys + 2 + items.size() + kArgsPerPolicy * charges);
  append_bulk(out, "FCALL");
  append_bulk(out, kDecideFunctionV3);
  append_bulk_int(out, static_cast<std::int64_t>(keys));
  for (const EncodedDecision* d : items) out.append(d->keys);
  append_bulk(out, now_us_override);
  append_bulk_int(out, static_cast<std::int64_t>(items.size()));
  for (const EncodedDecision* d : items) {
    append_bulk_int(out, static_cast<std::int64_t>(d->policies));
    for (std::size_t i = 0; i < d->policies; ++i) {
      // The block is alg shadow p1 p2 p3; v3 wants alg cost shadow p1 p2 p3.
      const std::string_view block = d->block(i);
      const std::size_t alg_end = block.find('\n', block.find('\n') + 1) + 1;
      out.append(block.substr(0, alg_end));
      append_bulk_int(out, d->costs[i]);
      out.append(block.substr(alg_end));
    }
  }
}

Result<void> check_decide_batch_reply(std::span<const std::int64_t> values,
                                      std::span<const std::size_t> policies_per_item) {
  std::size_t size = kBatchReplyHead;
  for (std::size_t n : policies_per_item) size += kItemReplyHead + kReplyPerPolicy * n;
  if (values.size() != size) {
    return malformed(values, "expected " + std::to_string(size) + " integers, got " +
                                 std::to_string(values.size()));
  }
  if (values[0] < 0) return malformed(values, "negative decision time");
  std::size_t at = kBatchReplyHead;
  for (std::size_t i = 0; i < policies_per_item.size(); ++i) {
    if (policies_per_item[i] == 0) return malformed(values, "an item without policies");
    if (std::string why = parse_item(values, at, 0, policies_per_item[i], nullptr); !why.empty()) {
      return malformed(values, "item " + std::to_string(i) + ": " + why);
    }
    at += kItemReplyHead + kReplyPerPolicy * policies_per_item[i];
  }
  return {};
}

Verdict decide_batch_verdict(std::span<const std::int64_t> values, std::size_t at,
                             std::size_t policies) {
  Verdict v;
  v.decided_at = from_us(values[0]);
  (void)parse_item(values, at, 0, policies, &v);  // checked by check_decide_batch_reply
  return v;
}

Result<std::vector<Verdict>> parse_decide_batch_reply(
    const Reply& reply, std::span<const std::size_t> policies_per_item) {
  if (reply.is_error()) return fail(ErrorCode::kUnavailable, "redis: " + reply.str);
  std::size_t size = kBatchReplyHead;
  for (std::size_t n : policies_per_item) size += kItemReplyHead + kReplyPerPolicy * n;
  if (std::string why = check_integers(reply, size); !why.empty()) return malformed(reply, why);
  const std::vector<std::int64_t> values = integers_of(reply);
  std::vector<Verdict> verdicts;
  verdicts.reserve(policies_per_item.size());
  auto parsed = parse_decide_batch_reply(
      values, policies_per_item, [&](std::size_t, Verdict&& v) { verdicts.push_back(std::move(v)); });
  if (!parsed) return tl::unexpected(std::move(parsed.error()));
  return verdicts;
}

std::vector<std::string> encode_decide_v2_args(std::span<const Charge> charges,
                                               std::string_view now_us_override) {
  std::vector<std::string> args;
  args.reserve(2 + kArgsPerPolicy * charges.size());
  args.emplace_back(now_us_override);
  push_int(args, static_cast<std::int64_t>(charges.size()));
  for (const Charge& c : charges) push_charge(args, c, c.cost);
  return args;
}

Result<Verdict> parse_decide_v2_reply(const Reply& reply, std::size_t policies) {
  if (reply.is_error()) return fail(ErrorCode::kUnavailable, "redis: " + reply.str);
  if (policies == 0) return malformed(reply, "no policies");
  if (std::string why = check_integers(reply, kV2ReplyHead + kReplyPerPolicy * policies);
      !why.empty()) {
    return malformed(reply, why);
  }
  if (reply.elements[2].integer < 0) return malformed(reply, "negative decision time");
  Verdict v;
  v.decided_at = from_us(reply.elements[2].integer);
  // [allowed, most_restrictive, decided_at, policies..]: an item with decided_at in between.
  if (std::string why = parse_item(integers_of(reply), 0, 1, policies, &v); !why.empty()) {
    return malformed(reply, why);
  }
  return v;
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
  const std::vector<std::string> args = encode_refund_args(request, now_us_override);
  std::string out;
  append_array_header(out, 3 + request.charges.size() + args.size());
  append_bulk(out, "FCALL");
  append_bulk(out, kRefundFunction);
  append_bulk_int(out, static_cast<std::int64_t>(request.charges.size()));
  const int s = append_keys(out, key_prefix, tag_key, request.identity, request.charges);
  if (slot != nullptr) *slot = s;
  for (const std::string& a : args) append_bulk(out, a);
  return out;
}

bool has_concurrency(std::span<const Charge> charges) {
  for (const Charge& c : charges) {
    if (c.policy != nullptr && c.policy->is_concurrency()) return true;
  }
  return false;
}

std::string format_acquire_command(std::string_view key_prefix, const TagKey& tag_key,
                                   std::string_view identity, std::span<const Charge> charges,
                                   std::string_view lease, int* slot,
                                   std::string_view now_us_override) {
  std::vector<std::string> args;
  args.reserve(3 + kArgsPerPolicy * charges.size());
  args.emplace_back(now_us_override);
  args.emplace_back(lease);
  push_int(args, static_cast<std::int64_t>(charges.size()));
  for (const Charge& c : charges) push_charge(args, c, c.cost);
  std::string out;
  append_array_header(out, 3 + charges.size() + args.size());
  append_bulk(out, "FCALL");
  append_bulk(out, kAcquireFunction);
  append_bulk_int(out, static_cast<std::int64_t>(charges.size()));
  const int s = append_keys(out, key_prefix, tag_key, identity, charges);
  if (slot != nullptr) *slot = s;
  for (const std::string& a : args) append_bulk(out, a);
  return out;
}

std::string format_release_command(std::string_view key_prefix, const TagKey& tag_key,
                                   const LeaseRequest& request, bool renew, int* slot,
                                   std::string_view now_us_override) {
  std::vector<Charge> slots;
  for (const Charge& c : request.charges) {
    if (c.policy != nullptr && c.policy->is_concurrency()) slots.push_back(c);
  }
  if (slots.empty()) return {};
  std::string out;
  append_array_header(out, 3 + 2 * slots.size() + 3);
  append_bulk(out, "FCALL");
  append_bulk(out, kReleaseFunction);
  append_bulk_int(out, static_cast<std::int64_t>(slots.size()));
  const int s = append_keys(out, key_prefix, tag_key, request.identity, slots);
  if (slot != nullptr) *slot = s;
  append_bulk(out, now_us_override);
  append_bulk(out, request.lease);
  append_bulk(out, renew ? "1" : "0");
  for (const Charge& c : slots) append_bulk_int(out, c.policy->period.count());
  return out;
}

Result<void> parse_refund_reply(const Reply& reply) {
  if (reply.is_error()) return fail(ErrorCode::kUnavailable, "redis: " + reply.str);
  if (!reply.is_integer() || reply.integer < 0) {
    return fail(ErrorCode::kInternal,
                "malformed reply from " + std::string(kRefundFunction) + ": " + describe(reply));
  }
  return {};
}

}  // namespace fg::redis
