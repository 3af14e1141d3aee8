// script.h — the decide functions on the Redis side: their library text, the FCALL arguments that
// describe requests, and the replies that describe verdicts. Pure functions, no I/O.
//
// The Lua (src/store/redis/lua/decide.lua, embedded at build time) is a Redis 7 FUNCTION library,
// `floodgate_v4`, registering `fg_decide_v4`, `fg_refund_v3` and, for instances of the releases
// before during a rolling upgrade, `fg_decide_v3`, `fg_decide_v2` and `fg_refund_v2` with their
// exact arguments and replies. FUNCTION LOAD is replicated to replicas, so the functions survive
// a failover (SCRIPT LOAD does not: design §4), and one FCALL runs whole all-or-nothing
// decisions atomically.
//
//   FCALL fg_decide_v4 <keys> key..  now_us m p  (alg shadow p1 p2 p3) x p
//                                    (n_1, (j cost) x n_1) .. (n_m, ..)
//
//   m decisions ("items") in one call, each all or nothing, applied in order (a later item sees
//   an earlier one's writes); the keys are each item's keys in order, all in one hash slot on a
//   cluster. The call's p distinct policies come once; each charge names one by its 1-based
//   index j, with its cost (a batch of 64 decisions of one policy sends 5 + 64 x 3 values, not
//   64 x 7: bench/redis_cpu.sh).
//   now_us   "" in production: the script reads Redis TIME (one clock for every instance);
//            tests pass an integer to fix time.
//   alg      1 token_bucket, 2 gcra, 3 sliding_window, 4 fixed_window
//   shadow   0 | 1
//   p1 p2 p3 token_bucket, gcra:  burst, unit, rate      (algorithm_parameters, limiter.h)
//            sliding_window:      limit, period_us, granule_us (algorithm_parameters)
//            fixed_window:        limit, period_us, 0
//
// Reply: a flat array of integers, [decided_at_us (the TIME it used), then per item: allowed,
// most_restrictive (0-based), then per policy: allowed, reason (0 none, 1 over_limit,
// 2 cost_exceeds_burst), limit, remaining, reset_after_us, retry_after_us].
//
//   FCALL fg_refund_v3 <n> key_1 .. key_n  now_us consumed_at_us n  (alg cost shadow p1 p2 p3) x n
//
// gives back what an allowed decision consumed (store.h: Store::refund), with the same keys and
// per-charge values, `cost` being what that charge consumed (fg::refund_cost). Reply: an
// integer, the number of states written or deleted. (fg_refund_v2 is the same function.)
//
//   FCALL fg_decide_v3 <keys> key..  now_us m  (n_1, (alg cost shadow p1 p2 p3) x n_1) .. (n_m, ..)
//   FCALL fg_decide_v2 <n> key_1 .. key_n  now_us n  (alg cost shadow p1 p2 p3) x n
//
// The releases before's calls, kept for their instances during an upgrade: v3's reply is v4's;
// v2's is [allowed, most_restrictive, decided_at_us, then 6 per policy as above].
//
// Upgrade: library_load_commands() replaces floodgate_v3 and floodgate_v2 by floodgate_v4 in one
// MULTI/EXEC (FUNCTION DELETE of each; FUNCTION LOAD REPLACE <v4>). Afterwards an older
// instance's own FUNCTION LOAD REPLACE fails (its function names are taken) and its FCALLs run
// v4's compat functions on the same states, so admissions stay exact across the upgrade. The
// state format is unchanged since floodgate_v3 (decide.lua's header: how to read one). Changing
// the protocol again means a new function and library name, the same way.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "floodgate/decision.h"
#include "floodgate/limiter.h"
#include "floodgate/policy.h"
#include "floodgate/result.h"
#include "floodgate/store.h"
#include "store/redis/keys.h"
#include "store/redis/resp.h"

namespace fg::redis {

inline constexpr std::string_view kLibraryName = "floodgate_v4";
inline constexpr std::string_view kDecideFunction = "fg_decide_v4";
inline constexpr std::string_view kRefundFunction = "fg_refund_v3";
// Concurrency policies (decide.lua: fg_acquire_v4, fg_release_v4): a decision with a
// concurrency charge is one fg_acquire_v4 call of its own (not batched); release and renewal
// are fg_release_v4.
inline constexpr std::string_view kAcquireFunction = "fg_acquire_v4";
inline constexpr std::string_view kReleaseFunction = "fg_release_v4";
// The libraries of the releases before, replaced at load, and their functions, which
// floodgate_v4 also registers with their arguments and replies.
inline constexpr std::string_view kPreviousLibraryName = "floodgate_v3";
inline constexpr std::string_view kDecideFunctionV3 = "fg_decide_v3";
inline constexpr std::string_view kOlderLibraryName = "floodgate_v2";
inline constexpr std::string_view kDecideFunctionV2 = "fg_decide_v2";
inline constexpr std::string_view kRefundFunctionV2 = "fg_refund_v2";

// Values per policy in the arguments and in the replies; the head of a v3 reply (decided_at) and
// of each item in it (allowed, most_restrictive); the head of a v2 reply.
inline constexpr std::size_t kArgsPerPolicy = 6;
inline constexpr std::size_t kReplyPerPolicy = 6;
inline constexpr std::size_t kBatchReplyHead = 1;
inline constexpr std::size_t kItemReplyHead = 2;
inline constexpr std::size_t kV2ReplyHead = 3;

// The library as given to FUNCTION LOAD REPLACE: decide.lua, embedded at build time.
const std::string& library_code();

// The Lua source the library was built from (the file as embedded).
std::string_view decide_lua_source();

// The commands (RESP bytes, one string each) that load the library on a connection, replacing
// the older ones atomically: MULTI, FUNCTION DELETE floodgate_v3, FUNCTION DELETE floodgate_v2,
// FUNCTION LOAD REPLACE <v4>, EXEC. Five replies: OK, QUEUED x 3, then EXEC's array, in which a
// DELETE's error "Library not found" (nothing to replace) is expected and the LOAD still
// applies. Send them back to back on
// one connection (nothing in between, or it would be queued inside the transaction).
std::vector<std::string> library_load_commands();

// One decision, encoded on its own: its keys, and per charge its policy's five values (alg shadow
// p1 p2 p3) and its cost. RESP bulk strings ("$<len>\r\n<bytes>\r\n" each). The reference
// encoding, for tests and the release before's calls (append_decide_batch_v3); the store keeps
// PendingDecisions instead and writes them with write_decide_batch, to the same bytes.
struct EncodedDecision {
  std::string keys;
  std::string blocks;  // the charges' policy blocks, back to back (five bulk strings each)
  boost::container::small_vector<std::uint32_t, 4> block_ends;  // where each block ends
  boost::container::small_vector<std::int64_t, 4> costs;        // each charge's cost
  std::uint32_t key_count = 0;
  std::size_t policies = 0;
  int slot = 0;  // the keys' hash slot (all of them share it)

  std::string_view block(std::size_t i) const {
    const std::uint32_t begin = i == 0 ? 0 : block_ends[i - 1];
    return std::string_view(blocks).substr(begin, block_ends[i] - begin);
  }
};

// The keys are built from `key_prefix`, the identity's hash tag under `tag_key`, the identity
// and each policy's name (keys.h). Precondition: fg::check_charges(charges) succeeded.
EncodedDecision encode_decision(std::string_view key_prefix, const TagKey& tag_key,
                                std::string_view identity, std::span<const Charge> charges);

// Appends the whole FCALL fg_decide_v4 for `items` (in that order; at least one) to `out` as RESP
// bytes: the keys, now_us, m, the call's distinct policies once (p, then five values each), then
// per item n and (policy index, cost) per charge. On a cluster the caller batches only items of
// one slot.
void append_decide_batch(std::string& out, std::span<const EncodedDecision* const> items,
                         std::string_view now_us_override = "");

// The request path's form of the same thing (redis_store.cc): a decision kept as its keys' common
// part and references to its policies' blocks, encoded once per policy, not once per decision,
// and written straight into a connection's buffer when its batch goes out. The bytes are
// append_decide_batch's for the same decisions (script_test checks it).
//
// Thread safety: a PolicyBlocks and the PendingDecisions referring to it belong to one thread.

// One policy's part of the arguments, encoded once: its five values (alg shadow p1 p2 p3) as bulk
// strings, and its name escaped for keys (append_escaped), with the policy they were encoded from.
struct PolicyBlock {
  const Policy* source = nullptr;  // where the policy was last seen: the lookup's first guess
  Policy policy;
  std::string block;
  std::string escaped_name;
  std::uint32_t uses = 0;  // PolicyBlocks::Refs held (pending decisions): not to be overwritten
};

// The PolicyBlocks of one thread, looked up by Policy pointer. A hit is checked against the
// policy's fields too: a request's policies need only live until decide() returns (store.h), so
// after a configuration reload another policy may live at the same address. A block is reused
// for another policy only when no pending decision refers to it and kMaxKept are kept, so the
// cache holds no more than the policies in use or kMaxKept; blocks never move, so Refs stay
// valid.
class PolicyBlocks {
 public:
  // A counted reference: the block is not overwritten while one exists. Move-only.
  class Ref {
   public:
    Ref() = default;
    explicit Ref(PolicyBlock* b) : block_(b) { ++block_->uses; }
    Ref(Ref&& o) noexcept : block_(std::exchange(o.block_, nullptr)) {}
    Ref& operator=(Ref&& o) noexcept {
      if (this != &o) {
        release();
        block_ = std::exchange(o.block_, nullptr);
      }
      return *this;
    }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    ~Ref() { release(); }
    const PolicyBlock* get() const { return block_; }
    const PolicyBlock* operator->() const { return block_; }

   private:
    void release() {
      if (block_ != nullptr) --block_->uses;
      block_ = nullptr;
    }
    PolicyBlock* block_ = nullptr;
  };

  // Blocks kept before an idle one is overwritten: a configuration holds a few policies, and
  // a reload's new ones find their predecessors' blocks by their fields.
  static constexpr std::size_t kMaxKept = 64;

  PolicyBlocks() = default;
  PolicyBlocks(const PolicyBlocks&) = delete;
  PolicyBlocks& operator=(const PolicyBlocks&) = delete;

  // The block of `policy`, encoded on first use.
  Ref get(const Policy& policy);
  std::size_t size() const { return blocks_.size(); }

 private:
  std::vector<std::unique_ptr<PolicyBlock>> blocks_;
};

// One decision waiting for its batch: what append_decide_batch needs of encode_decision's, held
// inline (no heap allocation for keys up to ~100 bytes and up to 4 charges).
struct PendingDecision {
  // `<prefix>:{<tag>}:<escaped identity>:` (keys.h: append_key_stem); each key is this and the
  // charge's escaped policy name.
  boost::container::small_vector<char, 96> stem;
  boost::container::small_vector<PolicyBlocks::Ref, 4> blocks;  // per charge
  boost::container::small_vector<std::int64_t, 4> costs;        // per charge
  int slot = 0;                                                 // the keys' hash slot

  std::size_t policies() const { return costs.size(); }
};

// Fills `d` (cleared first) for `charges` of `identity`, keys as encode_decision's. `scratch` is
// working space whose capacity is reused. Precondition: fg::check_charges(charges) succeeded.
void prepare_decision(PendingDecision& d, std::string_view key_prefix, const TagKey& tag_key,
                      std::string_view identity, std::span<const Charge> charges,
                      PolicyBlocks& blocks, std::string& scratch);

// Appends the whole FCALL fg_decide_v4 for `items` (at least one) to `out`: exactly the bytes
// append_decide_batch appends for encode_decision's encoding of the same decisions (policies with
// equal blocks are sent once, as there).
void write_decide_batch(std::string& out, std::span<const PendingDecision> items,
                        std::string_view now_us_override = "");

// The same items as the release before sent them: FCALL fg_decide_v3 with six values per charge
// (what instances of floodgate_v3 send during a rolling upgrade; tests call the compat function
// with it). The reply is the same as fg_decide_v4's.
void append_decide_batch_v3(std::string& out, std::span<const EncodedDecision* const> items,
                            std::string_view now_us_override = "");

// The verdicts in a reply to fg_decide_v4 (or v3) for items of `policies_per_item` policies, in
// order, from the reply's values (a flat array of integers: RespReader::read, on_integers).
// emit(i, Verdict&&) is called for item i = 0, 1, .. only once the whole reply has been checked:
// on an error nothing was emitted. A reply of the wrong size or with values out of range is
// kInternal naming what is wrong (a script and a binary that disagree): never a crash, never a
// made-up verdict. No allocation but each verdict's own.
Result<void> check_decide_batch_reply(std::span<const std::int64_t> values,
                                      std::span<const std::size_t> policies_per_item);
// Item i's verdict from a checked reply, `at` being where the item starts (kBatchReplyHead, then
// kItemReplyHead + kReplyPerPolicy x n further per item before).
Verdict decide_batch_verdict(std::span<const std::int64_t> values, std::size_t at,
                             std::size_t policies);
template <typename Emit>
Result<void> parse_decide_batch_reply(std::span<const std::int64_t> values,
                                      std::span<const std::size_t> policies_per_item,
                                      Emit&& emit) {
  if (auto checked = check_decide_batch_reply(values, policies_per_item); !checked) {
    return checked;
  }
  std::size_t at = kBatchReplyHead;
  for (std::size_t i = 0; i < policies_per_item.size(); ++i) {
    emit(i, decide_batch_verdict(values, at, policies_per_item[i]));
    at += kItemReplyHead + kReplyPerPolicy * policies_per_item[i];
  }
  return {};
}

// The same from a Reply (tests, and a reply that is not a flat array of integers): an error reply
// is kUnavailable with Redis's message (for every item: the call did nothing that can be
// reported); any other shape is kInternal, as above.
Result<std::vector<Verdict>> parse_decide_batch_reply(
    const Reply& reply, std::span<const std::size_t> policies_per_item);

// fg_decide_v2's arguments after the keys: now_us, n, then six values per charge (what v2
// instances send; tests call the compat function with them).
// Precondition: fg::check_charges(charges) succeeded.
std::vector<std::string> encode_decide_v2_args(std::span<const Charge> charges,
                                               std::string_view now_us_override = "");

// The verdict in a reply to fg_decide_v2 for `policies` charges; errors as
// parse_decide_batch_reply's.
Result<Verdict> parse_decide_v2_reply(const Reply& reply, std::size_t policies);

// The refund's arguments after the keys: now_us, consumed_at_us, n, then six values per charge
// of `request` (the decide encoding, with each cost replaced by fg::refund_cost).
// Precondition: fg::check_refund(request) succeeded.
std::vector<std::string> encode_refund_args(const RefundRequest& request,
                                            std::string_view now_us_override = "");

// The whole FCALL fg_refund_v3 as RESP bytes, keys as encode_decision's; `slot` receives their
// slot. Precondition: fg::check_refund(request) succeeded.
std::string format_refund_command(std::string_view key_prefix, const TagKey& tag_key,
                                  const RefundRequest& request, int* slot,
                                  std::string_view now_us_override = "");

// Whether any charge is a concurrency policy (such a decision goes to fg_acquire_v4).
bool has_concurrency(std::span<const Charge> charges);

//   FCALL fg_acquire_v4 <n> key_1 .. key_n  now_us lease_id n  (alg cost shadow p1 p2 p3) x n
// One all-or-nothing decision over rate and concurrency charges (alg 5: limit, lease_us, 0);
// its reply is fg_decide_v3's for one item (parse_decide_batch_reply with {n}). `slot` receives
// the keys' slot. Precondition: fg::check_charges(charges) succeeded.
std::string format_acquire_command(std::string_view key_prefix, const TagKey& tag_key,
                                   std::string_view identity, std::span<const Charge> charges,
                                   std::string_view lease, int* slot,
                                   std::string_view now_us_override = "");

//   FCALL fg_release_v4 <n> key_1 .. key_n  now_us lease_id renew lease_us_1 .. lease_us_n
// The request's concurrency charges only (empty string when it has none): release (renew
// false) or renew the lease's slots. Reply: an integer, as fg_refund_v3's (parse_refund_reply).
std::string format_release_command(std::string_view key_prefix, const TagKey& tag_key,
                                   const LeaseRequest& request, bool renew, int* slot,
                                   std::string_view now_us_override = "");

// A reply to FCALL fg_refund_v3: success for an integer; an error reply is kUnavailable, any
// other shape kInternal.
Result<void> parse_refund_reply(const Reply& reply);

}  // namespace fg::redis
