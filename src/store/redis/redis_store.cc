#include "store/redis/redis_store.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/redis/cluster.h"
#include "store/redis/connection.h"
#include "store/redis/count.h"
#include "store/redis/keys.h"
#include "store/redis/script.h"

namespace fg::redis {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Redirections one decision follows at once; after that it backs off before following the next.
// A slot moves once per migration, so one or two suffice, except while the nodes disagree: a
// migration's last step (CLUSTER SETSLOT NODE) reaches the source and the target one after the
// other, and in between each can answer MOVED pointing at the other.
constexpr int kImmediateRedirects = 2;
// Redirections followed before giving up (with the backoff, ~100 ms of disagreement).
constexpr int kMaxRedirects = 16;
// Retries after TRYAGAIN, CLUSTERDOWN, a refused connection...: the deadline bounds them first;
// this bounds them for very long deadlines.
constexpr int kMaxRetries = 64;
constexpr Duration kFirstBackoff = std::chrono::milliseconds(1);
constexpr Duration kMaxBackoff = std::chrono::milliseconds(64);
// CLUSTER SLOTS no more often than this for the whole store, whatever triggers it: during a
// failover every failing decision (on every thread) asks for a refresh, and the map can only
// change so fast.
constexpr Duration kMinRefreshInterval = std::chrono::milliseconds(100);
// After a connection to a master is lost, the map is asked for again this often, for as long as
// it still names that master and no connection to it has come back (up to kLostMasterWatch). The
// refresh at the loss itself comes too early to learn of a failover: the cluster promotes a
// replica only after its node timeout. Until then a decision finds the dead node on its own, but
// a caller's circuit breaker (decider.h) stops sending them, so without this nothing would ask
// for the map until the breaker's next probe, seconds after the promotion.
constexpr Duration kLostMasterRefresh = std::chrono::milliseconds(250);
constexpr Duration kLostMasterWatch = std::chrono::seconds(60);

constexpr std::uint16_t kNoNode = 0xffff;

// Decisions per FCALL at most: a reply of 64 single-policy items is 513 integers (~3 KiB), and
// the call holds Redis for ~0.3 ms (bench/redis_cpu.sh: ~5 µs per decision).
constexpr std::size_t kMaxBatch = 64;
// Finished batches' vectors a thread keeps for its next batches (ThreadContext::recycle).
constexpr std::size_t kSpareBatches = 4;

// Tags of the commands a decision sends (ReplyHandler::on_reply).
constexpr int kTagDecide = 1;
constexpr int kTagAsking = 2;
constexpr int kTagLoad = 3;

std::atomic<std::uint64_t> next_store_id{1};

bool is_retryable_cluster_error(std::string_view e) {
  // TRYAGAIN: a multi-key command during a slot migration with keys on both sides.
  // CLUSTERDOWN: the cluster (or this slot) is down, e.g. during a failover.
  // LOADING: a restarted node loading its data. MASTERDOWN: a replica without its master.
  // READONLY: a node that was our master is now a replica (a failover the map has not seen).
  // BUSY: a script is running past lua-time-limit.
  for (std::string_view prefix :
       {"TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY", "BUSY"}) {
    if (e.starts_with(prefix)) return true;
  }
  return false;
}

bool is_function_missing(std::string_view e) {
  return e.find("Function not found") != std::string_view::npos || e.starts_with("NOSCRIPT");
}

struct Counters {
  std::atomic<std::uint64_t> decisions{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> moved{0};
  std::atomic<std::uint64_t> asks{0};
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> reloads{0};
  std::atomic<std::uint64_t> refreshes{0};
  ConnectionCounters connections;
};

void bump(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

static_assert(kWriteSizeStatsBuckets == kWriteSizeBuckets);

// Adds one thread's counters to `s` (relaxed reads).
void add_counters(RedisStoreStats& s, const Counters& c) {
  auto add = [](std::uint64_t& to, const std::atomic<std::uint64_t>& from) {
    to += from.load(std::memory_order_relaxed);
  };
  add(s.decisions, c.decisions);
  add(s.errors, c.errors);
  add(s.timeouts, c.timeouts);
  add(s.moved, c.moved);
  add(s.asks, c.asks);
  add(s.retries, c.retries);
  add(s.reloads, c.reloads);
  add(s.refreshes, c.refreshes);
  add(s.writes, c.connections.writes);
  add(s.commands, c.connections.commands);
  add(s.connects, c.connections.connects);
  add(s.connect_failures, c.connections.connect_failures);
  add(s.disconnects, c.connections.disconnects);
  add(s.reconnects, c.connections.reconnects);
  add(s.loads, c.connections.init_sends);
  add(s.written_commands, c.connections.written_commands);
  for (std::size_t i = 0; i < kWriteSizeBuckets; ++i) {
    add(s.write_sizes[i], c.connections.write_sizes[i]);
  }
}

// Which connection of one store loads the library on each node: the first to connect to it
// (its owner), at the head of that connect and of its every reconnect (so after a restart too),
// until it is closed. The other threads' connections to that node skip the ~25 KB FUNCTION LOAD
// and rely on the owner's, or, if they send an FCALL first, on the reload after "Function not
// found". Thread-safe.
class LoadClaims {
 public:
  std::uint64_t new_owner() { return next_owner_.fetch_add(1, std::memory_order_relaxed); }

  // Whether `owner` loads the library on `node` ("host:port") at this connect: the node has
  // no owner yet (it becomes `owner`), or it is `owner`.
  bool claim(const std::string& node, std::uint64_t owner) {
    std::lock_guard lock(mu_);
    const auto [it, fresh] = owners_.emplace(node, owner);
    return fresh || it->second == owner;
  }

  // `owner` (a closed connection) no longer loads the library on `node`.
  void release(const std::string& node, std::uint64_t owner) {
    std::lock_guard lock(mu_);
    if (auto it = owners_.find(node); it != owners_.end() && it->second == owner) {
      owners_.erase(it);
    }
  }

 private:
  std::atomic<std::uint64_t> next_owner_{1};
  std::mutex mu_;
  std::unordered_map<std::string, std::uint64_t> owners_;
};

// The store's one view of its Redis: the nodes, numbered once for all its threads (Store::node_of,
// Error::node: a circuit breaker per node; each thread maps these ids to connections of its own),
// and, for a cluster, which node serves each slot and the CLUSTER SLOTS refresh that keeps that
// table current. Every thread routes on this one table, so a map learned by one thread (a
// refresh, a MOVED) is every thread's at once, and the store asks for it once, not once per
// thread. Indices are assigned in the order nodes are first seen (the seeds first: a single
// Redis is node 0) and never reused.
//
// Thread-safe. The slot table is lock-free (release stores, acquire loads: a thread that reads an
// id also sees the node registered under it), so routing a decision takes no lock. Ids and
// addresses are under a mutex (first sight of a node, and a thread's first connection to it), and
// so is the refresh gate (taken when a refresh is asked for: a redirection, a lost connection, an
// unmapped slot; never per routed decision).
class NodeRegistry {
 public:
  // What begin_refresh() tells the thread that asks for a refresh.
  enum class RefreshStart {
    kRun,      // run it now, on this thread's connections, then call end_refresh()
    kDefer,    // too soon after the last one: arm a timer for `at`, then call end_defer()
    kCovered,  // one is running, or a deferred one is armed: its map will answer this request
  };

  explicit NodeRegistry(bool cluster) : slot_count_(cluster ? kClusterSlots : 0) {
    if (cluster) {
      slots_ = std::make_unique<std::atomic<std::int32_t>[]>(kClusterSlots);
      for (int s = 0; s < kClusterSlots; ++s) slots_[s].store(-1, std::memory_order_relaxed);
    }
  }

  int id(const NodeAddress& address) {
    std::lock_guard lock(mu_);
    const auto [it, fresh] = ids_.emplace(address.to_string(), static_cast<int>(addresses_.size()));
    if (fresh) addresses_.push_back(address);
    return it->second;
  }

  std::optional<NodeAddress> address(int id) const {
    std::lock_guard lock(mu_);
    if (id < 0 || static_cast<std::size_t>(id) >= addresses_.size()) return std::nullopt;
    return addresses_[static_cast<std::size_t>(id)];
  }

  std::string name(int id) const {
    auto a = address(id);
    return a ? a->to_string() : std::string();
  }

  // Sets one slot (a MOVED); returns the node it had (-1: unmapped).
  int exchange_slot(int slot, int id) {
    if (slot < 0 || slot >= slot_count_) return id;
    return slots_[slot].exchange(id, std::memory_order_acq_rel);
  }

  // Replaces the whole table (a CLUSTER SLOTS answer): `table` holds kClusterSlots ids, -1 for a
  // slot no node serves.
  void set_slots(const std::vector<std::int32_t>& table) {
    for (int s = 0; s < slot_count_; ++s) {
      slots_[s].store(table[static_cast<std::size_t>(s)], std::memory_order_release);
    }
  }

  // A cluster's node for `slot` (-1 when unmapped); 0 for one Redis.
  int node_of_slot(int slot) const {
    if (slot_count_ == 0) return 0;
    return slots_[slot].load(std::memory_order_acquire);
  }

  // Whether some slot maps to `id` (16384 relaxed loads: for a periodic check, not per request).
  bool in_use(int id) const {
    if (slot_count_ == 0) return id == 0;
    for (int s = 0; s < slot_count_; ++s) {
      if (slots_[s].load(std::memory_order_relaxed) == id) return true;
    }
    return false;
  }

  // Whom a refresh asks, in order: the masters of the table first (most likely up to date), then
  // every other node heard of, by id (so the seeds before the nodes learned from the cluster).
  std::vector<int> refresh_candidates() const {
    std::size_t known = 0;
    {
      std::lock_guard lock(mu_);
      known = addresses_.size();
    }
    std::vector<int> order;
    std::vector<bool> seen(known, false);
    auto add = [&](int id) {
      if (id < 0 || static_cast<std::size_t>(id) >= known || seen[static_cast<std::size_t>(id)]) {
        return;
      }
      seen[static_cast<std::size_t>(id)] = true;
      order.push_back(id);
    };
    for (int s = 0; s < slot_count_; ++s) add(slots_[s].load(std::memory_order_acquire));
    for (std::size_t id = 0; id < known; ++id) add(static_cast<int>(id));
    return order;
  }

  // Whether the caller is the first to ask for the store's first map (a thread's start).
  bool claim_first_refresh() { return !first_claimed_.exchange(true, std::memory_order_relaxed); }

  // The refresh gate: at most one CLUSTER SLOTS in flight for the store, and at most one started
  // per kMinRefreshInterval. A request while one runs is covered by it; with `again_if_busy`
  // (the map may have changed after the running one asked: a MOVED to a new node, a lost
  // connection) one more runs after it, when the interval allows.
  RefreshStart begin_refresh(SteadyTime now, bool again_if_busy, SteadyTime* at) {
    std::lock_guard lock(refresh_mu_);
    if (running_) {
      again_ = again_ || again_if_busy;
      return RefreshStart::kCovered;
    }
    if (started_once_ && now - last_start_ < kMinRefreshInterval) {
      if (deferred_) return RefreshStart::kCovered;
      deferred_ = true;
      *at = last_start_ + kMinRefreshInterval;
      return RefreshStart::kDefer;
    }
    running_ = true;
    started_once_ = true;
    last_start_ = now;
    return RefreshStart::kRun;
  }

  // The running refresh is over (answered, or every candidate failed, or its thread closed).
  // Whether another was asked for meanwhile (begin_refresh's `again_if_busy`).
  bool end_refresh() {
    std::lock_guard lock(refresh_mu_);
    running_ = false;
    return std::exchange(again_, false);
  }

  // The deferred refresh's timer fired or was cancelled: the next request may arm another.
  void end_defer() {
    std::lock_guard lock(refresh_mu_);
    deferred_ = false;
  }

 private:
  const int slot_count_;
  std::unique_ptr<std::atomic<std::int32_t>[]> slots_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> ids_;
  std::vector<NodeAddress> addresses_;
  std::atomic<bool> first_claimed_{false};
  std::mutex refresh_mu_;
  bool running_ = false;   // a CLUSTER SLOTS is in flight, on some thread
  bool again_ = false;     // ... and another was asked for since it started
  bool deferred_ = false;  // a thread's timer will ask again at last_start_ + interval
  bool started_once_ = false;
  SteadyTime last_start_{};
};

// What every thread of one store shares, immutable once built (but for load_claims and nodes,
// which lock).
struct Shared {
  RedisStoreOptions options;
  bool cluster = false;
  std::vector<std::string> load_commands;  // library_load_commands(): MULTI .. EXEC
  std::string count_load_command;          // count_load_command(): floodgate_count_v1
  std::string cluster_slots_command;       // CLUSTER SLOTS
  std::string asking_command;              // ASKING
  std::shared_ptr<asio::ssl::context> tls;
  TagKey tag_key;  // from options.key_secret
  std::shared_ptr<LoadClaims> load_claims = std::make_shared<LoadClaims>();
  std::shared_ptr<NodeRegistry> nodes;  // built with `cluster`
};

class DecideOp;

// One decision waiting, on its thread, for the next flush to put it into a batch.
struct Staged {
  Staged(SteadyTime d, DecideCallback callback) : deadline(d), done(std::move(callback)) {}
  PendingDecision decision;
  SteadyTime deadline;
  DecideCallback done;
};

// A batch's per-item vectors. A finished batch hands them back to its thread, emptied, for a
// later one (ThreadContext::recycle): once a thread has seen batches of its usual sizes, a batch
// takes nothing from the heap for them.
struct BatchVectors {
  std::vector<PendingDecision> items;
  std::vector<std::size_t> policies;  // per item
  std::vector<DecideCallback> done;   // per item
};

// The store's state on one I/O thread: its connections, one per node it has used, by the store's
// node ids (NodeRegistry). It routes on the store's one slot map, and may run the store's refresh
// of it, on its own connections. Used only on that thread.
class ThreadContext : public std::enable_shared_from_this<ThreadContext> {
 public:
  ThreadContext(asio::io_context& ioc, std::shared_ptr<const Shared> shared)
      : ioc_(ioc), shared_(std::move(shared)), refresh_timer_(ioc), lost_timer_(ioc) {
    for (const auto& hp : shared_->options.url.hosts) {
      seeds_.push_back(node_for(NodeAddress{hp.host, hp.port}));
    }
  }

  // Only the refresh handlers (which hold weak references) can still be waiting here.
  ~ThreadContext() { shutdown(); }
  ThreadContext(const ThreadContext&) = delete;
  ThreadContext& operator=(const ThreadContext&) = delete;

  asio::io_context& ioc() { return ioc_; }
  const Shared& shared() const { return *shared_; }
  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }
  bool closed() const { return closed_; }

  // The first thread of the store to start asks for the slot map; the others route on it once
  // it lands (a seed's MOVED until then).
  void start() {
    if (shared_->cluster && shared_->nodes->claim_first_refresh()) request_refresh();
  }

  void shutdown() {
    if (closed_) return;
    closed_ = true;
    refresh_timer_.cancel();
    lost_timer_.cancel();
    // The store's refresh, or its deferred one, if this thread held them: the next request, on
    // any thread, starts another.
    if (refreshing_) {
      refreshing_ = false;
      shared_->nodes->end_refresh();
    }
    if (refresh_timer_armed_) {
      refresh_timer_armed_ = false;
      shared_->nodes->end_defer();
    }
    for (Node& n : nodes_) {
      n.conn->close();
      shared_->load_claims->release(n.conn->name(), n.load_owner);
    }
    std::vector<Staged> staged = std::move(staged_);
    staged_.clear();
    for (Staged& d : staged) {
      bump(counters_.decisions);
      bump(counters_.errors);
      d.done(fail(ErrorCode::kUnavailable, "redis store closed"));
    }
  }

  // Queues a decision for the next flush, which sends the decisions staged on this thread as
  // few FCALLs as it can (flush_staged). One post per flush, none per decision; the decision
  // is kept in place (PendingDecision: no allocation) until its batch is written.
  void stage(const DecideRequest& request, SteadyTime deadline, DecideCallback done) {
    if (closed_) {
      bump(counters_.decisions);
      bump(counters_.errors);
      done(fail(ErrorCode::kUnavailable, "redis store closed"));
      return;
    }
    Staged& d = staged_.emplace_back(deadline, std::move(done));
    prepare_decision(d.decision, shared_->options.key_prefix, shared_->tag_key, request.identity,
                     request.charges, blocks_, scratch_);
    if (flush_posted_) return;
    flush_posted_ = true;
    asio::post(ioc_, [self = shared_from_this()] { self->flush_staged(); });
  }

  // The node index of `a`, added (with an idle connection) when first seen.
  std::uint16_t node_for(const NodeAddress& a) {
    std::string name = a.to_string();
    if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
    ConnectionOptions o;
    o.host = a.host;
    o.port = a.port;
    o.tls = shared_->tls;
    o.tls_verify = shared_->options.url.tls_options.verify;
    o.tls_server_name = shared_->options.url.tls_options.server_name;
    o.user = shared_->options.url.user;
    o.password = shared_->options.url.password;
    o.db = shared_->cluster ? 0 : shared_->options.url.db;
    o.init_commands = shared_->load_commands;
    const std::uint64_t owner = shared_->load_claims->new_owner();
    o.send_init = [claims = shared_->load_claims, name, owner] {
      return claims->claim(name, owner);
    };
    o.connect_timeout = shared_->options.connect_timeout;
    o.stall_timeout = shared_->options.stall_timeout;
    o.counters = &counters_.connections;
    auto conn = Connection::make(ioc_, std::move(o));
    const auto index = static_cast<std::uint16_t>(nodes_.size());
    const int global = shared_->nodes->id(a);
    if (shared_->cluster) {
      conn->on_lost = [this, global](const Error&) {
        watch_lost(global);
        request_refresh();
      };
    }
    nodes_.push_back(Node{a, conn, owner, global});
    by_name_.emplace(std::move(name), index);
    if (static_cast<std::size_t>(global) >= local_of_global_.size()) {
      local_of_global_.resize(static_cast<std::size_t>(global) + 1, kNoNode);
    }
    local_of_global_[static_cast<std::size_t>(global)] = index;
    return index;
  }

  // This thread's node for the store's node `global`, or kNoNode when it has none yet.
  std::uint16_t known_node(int global) const {
    return static_cast<std::size_t>(global) < local_of_global_.size()
               ? local_of_global_[static_cast<std::size_t>(global)]
               : kNoNode;
  }

  // This thread's node for the store's node `global`, added when first used.
  std::uint16_t local_node(int global) {
    if (const std::uint16_t n = known_node(global); n != kNoNode) return n;
    auto address = shared_->nodes->address(global);
    return address ? node_for(*address) : seeds_.front();
  }

  Connection& connection(std::uint16_t node) { return *nodes_[node].conn; }
  // The store-wide index of this thread's node `node` (NodeRegistry, Error::node).
  int global_node(std::uint16_t node) const { return nodes_[node].global; }

  // The master serving `slot` by the store's map; for an unmapped slot (no map yet), a seed,
  // whose MOVED will name the right node. Lock-free: one acquire load and this thread's vector.
  std::uint16_t route(int slot) {
    if (!shared_->cluster) return seeds_.front();
    const int global = shared_->nodes->node_of_slot(slot);
    if (global >= 0) return local_node(global);
    request_refresh(false);
    return seeds_[static_cast<std::size_t>(slot) % seeds_.size()];
  }

  void on_moved(const Redirect& r, std::uint16_t node) {
    if (!shared_->cluster) return;
    // The redirection is authoritative for this slot now, for every thread. If the map named
    // another node, the rest of it probably moved too (a resharding, a failover): refresh it in
    // the background, and once more after a refresh already running (it may have asked before
    // the move). If the map already named this node (another thread's MOVED, or a refresh, got
    // there first), there is nothing new to learn; if it named none, the running refresh (the
    // first) will.
    const int before = shared_->nodes->exchange_slot(r.slot, nodes_[node].global);
    if (before == nodes_[node].global) return;
    request_refresh(before >= 0);
  }

  // Asks for the store's refresh of the slot map: runs it on this thread's connections, unless one
  // is running (on any thread: its answer serves this request too; with `again_if_busy`, one more
  // runs after it) or the last one started less than kMinRefreshInterval ago (this thread, or one
  // already waiting, asks again when the interval is over).
  void request_refresh(bool again_if_busy = true) {
    if (!shared_->cluster || closed_) return;
    SteadyTime at{};
    switch (shared_->nodes->begin_refresh(SteadyClock::now(), again_if_busy, &at)) {
      case NodeRegistry::RefreshStart::kCovered:
        return;
      case NodeRegistry::RefreshStart::kDefer:
        refresh_timer_armed_ = true;
        refresh_timer_.expires_at(at);
        refresh_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
          auto self = weak.lock();
          // Cancelled: shutdown() gave the deferral back.
          if (!self || ec || !self->refresh_timer_armed_) return;
          self->refresh_timer_armed_ = false;
          self->shared_->nodes->end_defer();
          self->request_refresh(false);
        });
        return;
      case NodeRegistry::RefreshStart::kRun:
        break;
    }
    refreshing_ = true;
    bump(counters_.refreshes);
    candidates_ = shared_->nodes->refresh_candidates();
    try_refresh(0);
  }

  void run(const std::shared_ptr<DecideOp>& op);

  // The vectors of a finished batch, emptied, for the next one; at most kSpareBatches are kept
  // (their capacity is at most kMaxBatch items each).
  void recycle(BatchVectors&& v) {
    if (spare_batches_.size() >= kSpareBatches) return;
    v.items.clear();
    v.policies.clear();
    v.done.clear();
    spare_batches_.push_back(std::move(v));
  }

 private:
  void flush_staged();

  BatchVectors take_spare_batch() {
    if (spare_batches_.empty()) return {};
    BatchVectors v = std::move(spare_batches_.back());
    spare_batches_.pop_back();
    return v;
  }

  // Keeps asking for the map while it names the lost master `global` (kLostMasterRefresh).
  void watch_lost(int global) {
    if (std::find(lost_masters_.begin(), lost_masters_.end(), global) == lost_masters_.end()) {
      lost_masters_.push_back(global);
    }
    lost_since_ = SteadyClock::now();
    arm_lost_timer();
  }

  void arm_lost_timer() {
    if (lost_timer_armed_) return;
    lost_timer_armed_ = true;
    lost_timer_.expires_after(kLostMasterRefresh);
    lost_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (!self || ec || self->closed_) return;
      self->lost_timer_armed_ = false;
      self->recheck_lost();
    });
  }

  void recheck_lost() {
    // A master the map no longer names (a replica took its slots), or one a connection reached
    // again (it came back), is no longer watched.
    std::erase_if(lost_masters_, [this](int global) {
      if (!names_master(global)) return true;
      const std::uint16_t n = known_node(global);
      return n != kNoNode && nodes_[n].conn->connected();
    });
    if (lost_masters_.empty() || SteadyClock::now() - lost_since_ >= kLostMasterWatch) {
      lost_masters_.clear();
      return;
    }
    request_refresh(false);
    arm_lost_timer();
  }

  // Whether the store's map gives `global` any slot.
  bool names_master(int global) const {
    for (int slot = 0; slot < kClusterSlots; ++slot) {
      if (shared_->nodes->node_of_slot(slot) == global) return true;
    }
    return false;
  }

  struct Node {
    NodeAddress address;
    std::shared_ptr<Connection> conn;
    std::uint64_t load_owner;  // its connection's id in shared_->load_claims
    int global;                // its index in shared_->nodes
  };

  void try_refresh(std::size_t i) {
    if (closed_) return;  // shutdown() ended the refresh
    if (i >= candidates_.size()) {
      end_refresh();
      return;
    }
    const std::uint16_t node = local_node(candidates_[i]);
    auto handler =
        make_reply_handler([weak = weak_from_this(), node, i](int, Result<Reply> reply, bool) {
          auto self = weak.lock();
          if (!self || self->closed_) return;
          if (reply) {
            auto ranges = parse_cluster_slots(*reply, self->nodes_[node].address);
            if (ranges && !ranges->empty()) {
              self->apply(*ranges);
              self->end_refresh();
              return;
            }
          }
          self->try_refresh(i + 1);
        });
    connection(node).request(shared_->cluster_slots_command,
                             SteadyClock::now() + shared_->options.connect_timeout,
                             std::move(handler), 0);
  }

  void end_refresh() {
    refreshing_ = false;
    if (shared_->nodes->end_refresh()) request_refresh(false);
  }

  // The answer becomes every thread's map. Nodes are registered, not connected: a thread connects
  // to a node when it first routes to it.
  void apply(const std::vector<SlotRange>& ranges) {
    std::vector<std::int32_t> table(kClusterSlots, -1);
    for (const SlotRange& r : ranges) {
      const int master = shared_->nodes->id(r.master);
      for (int s = r.first; s <= r.last && s < kClusterSlots; ++s) {
        table[static_cast<std::size_t>(s)] = master;
      }
      for (const NodeAddress& replica : r.replicas) shared_->nodes->id(replica);
    }
    shared_->nodes->set_slots(table);
  }

  asio::io_context& ioc_;
  std::shared_ptr<const Shared> shared_;
  Counters counters_;
  bool closed_ = false;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, std::uint16_t> by_name_;
  std::vector<std::uint16_t> seeds_;
  std::vector<std::uint16_t> local_of_global_;  // store node id -> index in nodes_, or kNoNode
  std::vector<int> candidates_;                 // the running refresh's, by store node id
  bool refreshing_ = false;                     // this thread runs the store's refresh
  bool refresh_timer_armed_ = false;            // this thread holds the store's deferred refresh
  asio::steady_timer refresh_timer_;
  // Masters this thread lost a connection to that the map still named at the last look, since
  // lost_since_ (the latest loss): watch_lost().
  std::vector<int> lost_masters_;
  SteadyTime lost_since_{};
  bool lost_timer_armed_ = false;
  asio::steady_timer lost_timer_;
  PolicyBlocks blocks_;         // the policies' encodings (before staged_: it outlives their Refs)
  std::string scratch_;         // prepare_decision's working space
  std::vector<Staged> staged_;  // decisions for the next flush, in decide() order
  // The flush's decisions (staged_'s, swapped: both keep their capacity), and their order on a
  // cluster: (slot, position).
  std::vector<Staged> flushing_;
  std::vector<std::pair<int, std::uint32_t>> order_;
  bool flush_posted_ = false;
  std::vector<BatchVectors> spare_batches_;  // recycle()'s
};

// One FCALL, from its first send to its callbacks, on one thread context: a batch of decisions
// (fg_decide_v4 with their items, all of one slot on a cluster) or one refund. Follows
// redirections, reloads the library, retries what is retryable, all for the whole call (its
// items share a slot, so a redirection or an error is theirs alike), and calls every callback
// exactly once: each item its verdict, or every item the call's error. A refund goes through
// exactly the same path; only its reply and its callback differ.
class DecideOp final : public ReplyHandler, public std::enable_shared_from_this<DecideOp> {
 public:
  // Decisions: item i has policies[i] policies and is answered through done[i]. The deadline is
  // the earliest of theirs.
  DecideOp(std::string command, int slot, std::vector<std::size_t> policies,
           std::vector<DecideCallback> done, SteadyTime deadline)
      : command_(std::move(command)),
        slot_(slot),
        policies_(std::move(policies)),
        deadline_(deadline),
        done_(std::move(done)) {}

  // A batch of fg_decide_v4 items, written from `batch.items` at each send (write_decide_batch);
  // its vectors go back to the thread when it is done.
  DecideOp(BatchVectors batch, int slot, SteadyTime deadline)
      : slot_(slot),
        policies_(std::move(batch.policies)),
        deadline_(deadline),
        done_(std::move(batch.done)),
        items_(std::move(batch.items)) {}

  DecideOp(std::string command, int slot, SteadyTime deadline, RefundCallback done)
      : command_(std::move(command)),
        slot_(slot),
        deadline_(deadline),
        refund_done_(std::move(done)),
        refund_(true) {}

  // A count: fg_count_v1 over `keys` keys of one slot (count.h), answered through `done`. Its
  // library is floodgate_count_v1, loaded when a node says it lacks the function.
  DecideOp(std::string command, int slot, SteadyTime deadline, std::size_t keys, CountCallback done)
      : command_(std::move(command)),
        slot_(slot),
        deadline_(deadline),
        count_done_(std::move(done)),
        count_keys_(keys),
        count_(true) {}

  void start(std::shared_ptr<ThreadContext> ctx) {
    ctx_ = std::move(ctx);
    if (ctx_->closed()) {
      finish(fail(ErrorCode::kUnavailable, "redis store closed"));
      return;
    }
    send_to(ctx_->route(slot_), false, false);
  }

  void on_reply(int tag, Result<Reply> reply, bool sent) override {
    if (finished_) return;
    if (tag == kTagLoad) {
      if (reply) note_load_reply(*reply);
      return;
    }
    if (tag != kTagDecide) return;  // ASKING: the FCALL right after it reports what matters
    if (!reply) {
      Error& e = reply.error();
      if (e.code == ErrorCode::kUnavailable && !sent && ctx_->shared().cluster) {
        // Never written: safe to send again once the map may have moved on (a failover).
        ctx_->request_refresh();
        retry_later(std::move(e));
        return;
      }
      finish(tl::unexpected(std::move(e)));
      return;
    }
    if (reply->is_error()) {
      on_error_reply(reply->str);
      return;
    }
    if (refund_) {
      auto ok = parse_refund_reply(*reply);
      finish(ok ? Result<Verdict>(Verdict{}) : Result<Verdict>(tl::unexpected(ok.error())));
      return;
    }
    // A batch's or a count's answer: the connection hands every flat array of integers to
    // on_integers, so what comes here has another shape, and the Reply's parse says what is wrong.
    finish(tl::unexpected(count_ ? shape_error(parse_count_reply(*reply, count_keys_), *reply)
                                 : shape_error(parse_decide_batch_reply(*reply, policies_), *reply)));
  }

  // A decision batch's reply, or a count's, read from the connection's buffer: no Reply tree and
  // no vector of verdicts. Anything else an integer array may answer (a load command, a refund
  // that got an array) goes to on_reply as a Reply, as every other shape does.
  void on_integers(int tag, std::span<const std::int64_t> values, bool sent) override {
    if (finished_) return;
    if (tag != kTagDecide || refund_) {
      ReplyHandler::on_integers(tag, values, sent);
      return;
    }
    if (count_) {
      auto counted = parse_count_reply(values, count_keys_);
      if (!counted) {
        finish(tl::unexpected(std::move(counted.error())));
        return;
      }
      finished_ = true;
      bump(ctx_->counters().decisions);
      CountCallback done = std::move(count_done_);
      done(std::move(*counted));
      return;
    }
    // Verdicts are emitted only once the whole reply has been checked, so on an error no item has
    // been answered and finish() answers them all.
    Counters& counters = ctx_->counters();
    std::vector<DecideCallback> done = std::move(done_);
    finished_ = true;
    auto parsed = parse_decide_batch_reply(values, policies_, [&](std::size_t i, Verdict&& v) {
      bump(counters.decisions);
      done[i](std::move(v));
    });
    if (!parsed) {
      done_ = std::move(done);
      finish(tl::unexpected(std::move(parsed.error())));
      return;
    }
    give_back(std::move(done));
  }

 private:
  // The error of a parse of a reply that is not a flat array of integers; one that parsed (which
  // the connection never sends here) is a reply in the wrong place all the same.
  template <typename T>
  static Error shape_error(const Result<T>& parsed, const Reply& reply) {
    if (!parsed) return parsed.error();
    return make_error(ErrorCode::kInternal, "integer reply not read as integers: " + describe(reply));
  }

  // An error among the replies to library_load_commands() (EXEC's array holds the LOAD's),
  // except FUNCTION DELETE's "Library not found": there was no floodgate_v2 to replace.
  void note_load_reply(const Reply& reply) {
    if (reply.is_error()) load_error_ = reply.str;
    for (const Reply& e : reply.elements) {
      if (e.is_error() && e.str.find("Library not found") == std::string::npos) load_error_ = e.str;
    }
  }

  void on_error_reply(const std::string& error) {
    Counters& counters = ctx_->counters();
    if (auto redirect = parse_redirect(error)) {
      if (++redirects_ > kMaxRedirects) {
        finish(fail(ErrorCode::kUnavailable, "too many redirections, last: " + error));
        return;
      }
      const std::uint16_t node = ctx_->node_for(redirect->node);
      const bool asking = redirect->kind == RedirectKind::kAsk;
      if (asking) {
        bump(counters.asks);
      } else {
        bump(counters.moved);
        ctx_->on_moved(*redirect, node);
      }
      if (redirects_ <= kImmediateRedirects) {
        send_to(node, asking, false);
      } else {
        retry_later(make_error(ErrorCode::kUnavailable, "redirections without end, last: " + error),
                    node, asking);
      }
      return;
    }
    if (is_retryable_cluster_error(error)) {
      if (error.starts_with("READONLY")) ctx_->request_refresh();
      retry_later(make_error(ErrorCode::kUnavailable, "redis " + node_name() + ": " + error));
      return;
    }
    if (is_function_missing(error) && !reloaded_) {
      // FUNCTION FLUSH, or a node that never got the library: load it and retry, pipelined.
      reloaded_ = true;
      bump(counters.reloads);
      send_to(node_, asking_, true);
      return;
    }
    std::string message = "redis " + node_name() + ": " + error;
    if (!load_error_.empty()) message += " (FUNCTION LOAD: " + load_error_ + ")";
    finish(fail(ErrorCode::kUnavailable, std::move(message)));
  }

  void send_to(std::uint16_t node, bool asking, bool reload) {
    node_ = node;
    sent_ = true;
    asking_ = asking;
    Connection& conn = ctx_->connection(node);
    auto self = shared_from_this();
    // Order matters: ASKING applies to the next command only, so it goes right before FCALL.
    // The load commands go back to back: nothing else may land inside their MULTI.
    if (reload && count_) {
      conn.request(ctx_->shared().count_load_command, deadline_, self, kTagLoad);
    } else if (reload) {
      for (const std::string& c : ctx_->shared().load_commands) {
        conn.request(c, deadline_, self, kTagLoad);
      }
    }
    if (asking) conn.request(ctx_->shared().asking_command, deadline_, self, kTagAsking);
    if (items_.empty()) {
      conn.request(command_, deadline_, std::move(self), kTagDecide);
      return;
    }
    // A batch is written from its items straight into the connection's buffer, at every send.
    // The bytes of the first are not kept for a resend: the connection hands its buffer to the
    // socket and clears it before any reply can ask for one, a resend may go to another node,
    // and it may need the library loaded ahead of it; the items are kept anyway (their
    // callbacks' answers), and a resend (a redirection, a reload, a retry) is rare.
    conn.request_into(deadline_, std::move(self), kTagDecide,
                      [this](std::string& out) { write_decide_batch(out, items_); });
  }

  // Sends again after a backoff (1, 2, 4 .. 64 ms, never past the deadline): to `node` (with
  // ASKING if `asking`), or where the slot map says when `node` is kNoNode.
  void retry_later(Error why, std::uint16_t node = kNoNode, bool asking = false) {
    bump(ctx_->counters().retries);
    const SteadyTime now = SteadyClock::now();
    if (++retries_ > kMaxRetries || now >= deadline_ || ctx_->closed()) {
      finish(tl::unexpected(std::move(why)));
      return;
    }
    last_error_ = std::move(why);
    const int shift = std::min(retries_ - 1, 6);
    const Duration backoff = std::min(kFirstBackoff * (1 << shift), kMaxBackoff);
    if (!timer_) timer_.emplace(ctx_->ioc());
    timer_->expires_at(std::min<SteadyTime>(now + backoff, deadline_));
    timer_->async_wait([self = shared_from_this(), node, asking](const error_code&) {
      if (self->finished_) return;
      if (self->ctx_->closed()) {
        self->finish(fail(ErrorCode::kUnavailable, "redis store closed"));
      } else if (SteadyClock::now() >= self->deadline_) {
        Error e = std::move(self->last_error_);
        e.message += " (retried until the deadline)";
        self->finish(tl::unexpected(std::move(e)));
      } else {
        self->send_to(node != kNoNode ? node : self->ctx_->route(self->slot_), asking, false);
      }
    });
  }

  // Completes the refund with `result`, or every decision with its error (`result` is then an
  // error: a verdict comes per item, from on_reply).
  void finish(Result<Verdict> result) {
    finished_ = true;
    // The node the call failed on, for a circuit breaker per node (Error::node): where the last
    // send went; none when it never went anywhere (a closed store).
    if (!result && sent_) result.error().node = ctx_->global_node(node_);
    Counters& counters = ctx_->counters();
    const std::size_t calls = refund_ || count_ ? 1 : done_.size();
    for (std::size_t i = 0; i < calls; ++i) {
      bump(counters.decisions);
      if (!result) {
        bump(counters.errors);
        if (result.error().code == ErrorCode::kDeadlineExceeded) bump(counters.timeouts);
      }
    }
    if (count_) {
      CountCallback done = std::move(count_done_);
      done(tl::unexpected(result.error()));
      return;
    }
    if (refund_) {
      RefundCallback done = std::move(refund_done_);
      done(result ? Result<void>() : Result<void>(tl::unexpected(std::move(result.error()))));
      return;
    }
    std::vector<DecideCallback> done = std::move(done_);
    for (DecideCallback& d : done) d(tl::unexpected(result.error()));
    give_back(std::move(done));
  }

  // A finished batch's vectors, to its thread for the next batch. Nothing sends them again: a
  // resend happens only before the call is finished.
  void give_back(std::vector<DecideCallback>&& done) {
    if (items_.empty()) return;  // not a batch
    ctx_->recycle(BatchVectors{std::move(items_), std::move(policies_), std::move(done)});
  }

  std::string node_name() { return ctx_->connection(node_).name(); }

  std::shared_ptr<ThreadContext> ctx_;
  std::string command_;  // the FCALL, formatted once
  int slot_;
  std::vector<std::size_t> policies_;  // per item
  SteadyTime deadline_;
  std::vector<DecideCallback> done_;  // per item
  RefundCallback refund_done_;
  bool refund_ = false;
  CountCallback count_done_;
  std::size_t count_keys_ = 0;
  bool count_ = false;
  std::uint16_t node_ = 0;  // where the last FCALL went
  bool sent_ = false;       // whether node_ is set
  bool asking_ = false;
  bool reloaded_ = false;
  bool finished_ = false;
  int redirects_ = 0;
  int retries_ = 0;
  Error last_error_;
  std::string load_error_;
  std::optional<asio::steady_timer> timer_;
  // A batch's decisions (empty for a command_): after ctx_, so they go before it, as their
  // PolicyBlocks::Refs point into its cache.
  std::vector<PendingDecision> items_;
};

void ThreadContext::run(const std::shared_ptr<DecideOp>& op) { op->start(shared_from_this()); }

void ThreadContext::flush_staged() {
  flush_posted_ = false;
  flushing_.swap(staged_);  // staged_ is empty: the last flush cleared it as flushing_
  // A cluster call holds the items of one slot: group them by slot, keeping the order of each
  // slot's (a later decision on a key sees an earlier one's write, as sent one by one). One
  // Redis takes any keys in one call. The decisions stay where they are; their order is sorted.
  order_.clear();
  for (std::size_t i = 0; i < flushing_.size(); ++i) {
    order_.emplace_back(shared_->cluster ? flushing_[i].decision.slot : 0,
                        static_cast<std::uint32_t>(i));
  }
  if (shared_->cluster) std::sort(order_.begin(), order_.end());
  for (std::size_t first = 0; first < order_.size();) {
    std::size_t last = first + 1;
    while (last < order_.size() && last - first < kMaxBatch &&
           order_[last].first == order_[first].first) {
      ++last;
    }
    BatchVectors batch = take_spare_batch();
    batch.items.reserve(last - first);
    batch.policies.reserve(last - first);
    batch.done.reserve(last - first);
    SteadyTime deadline = SteadyTime::max();
    for (std::size_t k = first; k < last; ++k) {
      Staged& d = flushing_[order_[k].second];
      batch.policies.push_back(d.decision.policies());
      batch.items.push_back(std::move(d.decision));
      batch.done.push_back(std::move(d.done));
      deadline = std::min(deadline, d.deadline);
    }
    const int slot = batch.items.front().slot;
    // The op's block comes from the thread's cache of freed Asio blocks, as its handlers' do.
    run(std::allocate_shared<DecideOp>(asio::recycling_allocator<DecideOp>(), std::move(batch),
                                       slot, deadline));
    first = last;
  }
  flushing_.clear();
}

// The contexts bound on this thread, one per store (a process may hold several stores).
struct Binding {
  std::uint64_t store_id;
  std::shared_ptr<ThreadContext> ctx;
};

std::vector<Binding>& thread_bindings() {
  thread_local std::vector<Binding> bindings;
  return bindings;
}

ThreadContext* bound_context(std::uint64_t store_id) {
  for (const Binding& b : thread_bindings()) {
    if (b.store_id == store_id) return b.ctx.get();
  }
  return nullptr;
}

std::shared_ptr<ThreadContext> unbind(std::uint64_t store_id) {
  auto& bindings = thread_bindings();
  for (auto it = bindings.begin(); it != bindings.end(); ++it) {
    if (it->store_id == store_id) {
      std::shared_ptr<ThreadContext> ctx = std::move(it->ctx);
      bindings.erase(it);
      return ctx;
    }
  }
  return nullptr;
}

}  // namespace

struct RedisStore::Impl {
  std::uint64_t id = next_store_id.fetch_add(1);
  std::shared_ptr<const Shared> shared;
  std::string_view kind;

  mutable std::mutex contexts_mu;  // registration and stats only, never the request path
  std::vector<std::weak_ptr<ThreadContext>> contexts;
  RedisStoreStats retired;  // the counts of unbound threads' contexts (under contexts_mu)

  // The store's own I/O thread, for decide() on unbound threads. Declared last: destroyed first.
  asio::io_context own_ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<ThreadContext> own_ctx;
  std::thread own_thread;

  void register_context(const std::shared_ptr<ThreadContext>& ctx) {
    std::lock_guard lock(contexts_mu);
    std::erase_if(contexts, [](const auto& w) { return w.expired(); });
    contexts.push_back(ctx);
  }
};

namespace {

// Runs `op` on the calling thread's context, or on the store's own thread for an unbound one.
void run_op(RedisStore::Impl& impl, std::shared_ptr<DecideOp> op) {
  if (ThreadContext* ctx = bound_context(impl.id)) {
    ctx->run(op);
    return;
  }
  asio::post(impl.own_ioc, [op = std::move(op), ctx = impl.own_ctx.get()] { ctx->run(op); });
}

// fg_release_v4 for `request`'s concurrency charges (none: done at once).
void lease_call(RedisStore::Impl& impl, const LeaseRequest& request, bool renew,
                RefundCallback done) {
  const Shared& shared = *impl.shared;
  int slot = 0;
  std::string command = format_release_command(shared.options.key_prefix, shared.tag_key,
                                               request, renew, &slot);
  if (command.empty()) return done(Result<void>{});
  run_op(impl, std::make_shared<DecideOp>(std::move(command), slot,
                                          SteadyClock::now() + shared.options.timeout,
                                          std::move(done)));
}

}  // namespace

Result<std::unique_ptr<RedisStore>> RedisStore::make(const RedisStoreOptions& options) {
  if (options.url.hosts.empty()) {
    return fail(ErrorCode::kInvalidArgument, "redis store: the URL names no Redis server");
  }
  if (options.timeout.count() <= 0 || options.connect_timeout.count() <= 0 ||
      options.stall_timeout.count() <= 0) {
    return fail(ErrorCode::kInvalidArgument, "redis store: timeouts must be positive");
  }
  auto shared = std::make_shared<Shared>();
  shared->options = options;
  shared->cluster = options.url.cluster;
  shared->load_commands = library_load_commands();
  shared->count_load_command = count_load_command();
  shared->cluster_slots_command = format_command({"CLUSTER", "SLOTS"});
  shared->asking_command = format_command({"ASKING"});
  shared->tag_key = make_tag_key(options.key_secret);
  shared->nodes = std::make_shared<NodeRegistry>(shared->cluster);
  if (options.url.tls) {
    auto tls = make_tls_context(options.url.tls_options);
    if (!tls) return tl::unexpected(tls.error());
    shared->tls = std::move(*tls);
  }

  auto impl = std::make_unique<Impl>();
  impl->kind = shared->cluster ? "redis-cluster" : "redis";
  impl->shared = std::move(shared);
  impl->work.emplace(impl->own_ioc.get_executor());
  impl->own_ctx = std::make_shared<ThreadContext>(impl->own_ioc, impl->shared);
  impl->register_context(impl->own_ctx);
  Impl* raw = impl.get();
  impl->own_thread = std::thread([raw] {
    pthread_setname_np(pthread_self(), "fg-redis");
    // The own thread is bound like any I/O thread, so decide() from a callback runs inline.
    thread_bindings().push_back(Binding{raw->id, raw->own_ctx});
    raw->own_ctx->start();
    raw->own_ioc.run();
  });
  return std::unique_ptr<RedisStore>(new RedisStore(std::move(impl)));
}

RedisStore::RedisStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RedisStore::~RedisStore() {
  Impl* impl = impl_.get();
  asio::post(impl->own_ioc, [impl] {
    if (auto ctx = unbind(impl->id)) ctx->shutdown();
  });
  // Waiting decisions were failed by shutdown(); retries sleeping in timers wake by their
  // deadline, see the store closed and complete. Then run() runs out of work.
  impl->work.reset();
  impl->own_thread.join();
  impl->own_ctx.reset();
}

std::string_view RedisStore::kind() const { return impl_->kind; }

int RedisStore::probe_keys() const { return impl_->kind == "redis-cluster" ? 32 : 1; }

int RedisStore::node_of(std::string_view identity) const {
  const Shared& shared = *impl_->shared;
  if (!shared.cluster) return 0;
  return shared.nodes->node_of_slot(identity_slot(shared.tag_key, identity));
}

std::string RedisStore::node_name(int node) const { return impl_->shared->nodes->name(node); }

bool RedisStore::node_in_use(int node) const { return impl_->shared->nodes->in_use(node); }

void RedisStore::decide(const DecideRequest& request, DecideCallback done) {
  if (auto ok = check_charges(request.charges); !ok) {
    done(tl::unexpected(ok.error()));
    return;
  }
  const Shared& shared = *impl_->shared;
  if (has_concurrency(request.charges)) {
    // Slots and rate policies in one fg_acquire_v4 call of its own (not batched).
    int slot = 0;
    std::string command = format_acquire_command(shared.options.key_prefix, shared.tag_key,
                                                 request.identity, request.charges,
                                                 request.lease, &slot);
    std::vector<DecideCallback> done_one;
    done_one.push_back(std::move(done));
    run_op(*impl_, std::make_shared<DecideOp>(std::move(command), slot,
                                   std::vector<std::size_t>{request.charges.size()},
                                   std::move(done_one),
                                   SteadyClock::now() + shared.options.timeout));
    return;
  }
  const SteadyTime deadline = SteadyClock::now() + shared.options.timeout;
  if (ThreadContext* ctx = bound_context(impl_->id)) {
    ctx->stage(request, deadline, std::move(done));
    return;
  }
  // Another thread (the CLI, tests): the decision is prepared on the store's own thread, with
  // that thread's PolicyBlocks, from a copy (the request need only live until decide() returns).
  struct Copy {
    std::string identity;
    std::vector<Policy> policies;
    std::vector<Charge> charges;
  };
  auto copy = std::make_unique<Copy>();
  copy->identity = request.identity;
  copy->policies.reserve(request.charges.size());
  for (const Charge& c : request.charges) copy->policies.push_back(*c.policy);
  for (std::size_t i = 0; i < request.charges.size(); ++i) {
    copy->charges.push_back(Charge{&copy->policies[i], request.charges[i].cost});
  }
  // own_ctx outlives every handler of own_ioc: the destructor joins the thread first.
  asio::post(impl_->own_ioc, [copy = std::move(copy), deadline, done = std::move(done),
                              ctx = impl_->own_ctx.get()]() mutable {
    ctx->stage(DecideRequest{copy->identity, copy->charges}, deadline, std::move(done));
  });
}

void RedisStore::refund(const RefundRequest& request, RefundCallback done) {
  if (auto ok = check_refund(request); !ok) {
    done(tl::unexpected(ok.error()));
    return;
  }
  const Shared& shared = *impl_->shared;
  if (has_concurrency(request.charges)) {
    // The slots go back by their lease (fg_release_v4), the rest as any refund, one after the
    // other; the callback gets the first error.
    std::vector<Charge> slots, rest;
    std::vector<Decision> rest_decisions;
    for (std::size_t i = 0; i < request.charges.size(); ++i) {
      const Charge& c = request.charges[i];
      if (c.policy->is_concurrency()) {
        if (refund_cost(request, i) > 0) slots.push_back(c);
      } else {
        rest.push_back(c);
        if (!request.decisions.empty()) rest_decisions.push_back(request.decisions[i]);
      }
    }
    auto then = [this, rest = std::move(rest), rest_decisions = std::move(rest_decisions),
                 identity = std::string(request.identity), at = request.consumed_at,
                 done = std::move(done)](Result<void> released) mutable {
      if (rest.empty()) return done(std::move(released));
      refund(RefundRequest{identity, rest, at, rest_decisions},
             [released = std::move(released), done = std::move(done)](Result<void> r) mutable {
               done(released ? std::move(r) : std::move(released));
             });
    };
    if (slots.empty()) return then(Result<void>{});
    release(LeaseRequest{request.identity, slots, request.lease}, std::move(then));
    return;
  }
  int slot = 0;
  std::string command =
      format_refund_command(shared.options.key_prefix, shared.tag_key, request, &slot);
  run_op(*impl_, std::make_shared<DecideOp>(std::move(command), slot,
                                            SteadyClock::now() + shared.options.timeout,
                                            std::move(done)));
}

void RedisStore::release(const LeaseRequest& request, RefundCallback done) {
  lease_call(*impl_, request, false, std::move(done));
}

void RedisStore::renew(const LeaseRequest& request, RefundCallback done) {
  lease_call(*impl_, request, true, std::move(done));
}

void RedisStore::count(std::span<const CountRequest> counters, CountCallback done) {
  if (auto ok = check_counters(counters); !ok) {
    done(tl::unexpected(ok.error()));
    return;
  }
  if (counters.empty()) {
    done(std::vector<std::int64_t>{});
    return;
  }
  const Shared& shared = *impl_->shared;
  // One FCALL per hash slot on a cluster (one for everything on one Redis). The calls' answers
  // are joined on the one thread context that runs them all, so the join takes no lock.
  struct Join {
    std::vector<std::int64_t> values;
    std::size_t left = 0;
    std::optional<Error> error;
    CountCallback done;
  };
  auto join = std::make_shared<Join>();
  join->values.assign(counters.size(), 0);
  join->done = std::move(done);
  std::vector<std::pair<int, std::size_t>> by_slot;  // (slot, index)
  by_slot.reserve(counters.size());
  for (std::size_t i = 0; i < counters.size(); ++i) {
    by_slot.emplace_back(shared.cluster ? key_slot(counters[i].key) : 0, i);
  }
  std::stable_sort(by_slot.begin(), by_slot.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::shared_ptr<DecideOp>> ops;
  const SteadyTime deadline = SteadyClock::now() + shared.options.timeout;
  for (std::size_t first = 0; first < by_slot.size();) {
    std::size_t last = first + 1;
    while (last < by_slot.size() && by_slot[last].first == by_slot[first].first) ++last;
    std::vector<CountRequest> group;
    std::vector<std::size_t> where;
    for (std::size_t k = first; k < last; ++k) {
      group.push_back(counters[by_slot[k].second]);
      where.push_back(by_slot[k].second);
    }
    ops.push_back(std::make_shared<DecideOp>(
        format_count_command(group), by_slot[first].first, deadline, group.size(),
        [join, where = std::move(where)](Result<std::vector<std::int64_t>> r) {
          if (r) {
            for (std::size_t k = 0; k < where.size(); ++k) join->values[where[k]] = (*r)[k];
          } else if (!join->error) {
            join->error = std::move(r.error());
          }
          if (--join->left > 0) return;
          CountCallback finish = std::move(join->done);
          if (join->error) {
            finish(tl::unexpected(std::move(*join->error)));
          } else {
            finish(std::move(join->values));
          }
        }));
    first = last;
  }
  join->left = ops.size();
  auto run_all = [ops = std::move(ops)](ThreadContext* ctx) {
    for (const auto& op : ops) ctx->run(op);
  };
  if (ThreadContext* ctx = bound_context(impl_->id)) {
    run_all(ctx);
    return;
  }
  asio::post(impl_->own_ioc,
             [run_all = std::move(run_all), ctx = impl_->own_ctx.get()] { run_all(ctx); });
}

void RedisStore::bind_current_thread(asio::io_context& ioc) {
  if (bound_context(impl_->id) != nullptr) return;
  auto ctx = std::make_shared<ThreadContext>(ioc, impl_->shared);
  impl_->register_context(ctx);
  thread_bindings().push_back(Binding{impl_->id, ctx});
  ctx->start();
}

void RedisStore::unbind_current_thread() {
  auto ctx = unbind(impl_->id);
  if (!ctx) return;
  ctx->shutdown();
  // stats() may hold a reference for a moment; it does so under contexts_mu. Dropping ours under
  // the same lock means the context is destroyed here, on its own thread, or never by stats().
  // Its counts move to `retired` in the same step, so stats() never goes backwards (what its
  // failed waiters count after this is not kept).
  std::lock_guard lock(impl_->contexts_mu);
  std::erase_if(impl_->contexts, [&](const std::weak_ptr<ThreadContext>& w) {
    return !w.owner_before(ctx) && !ctx.owner_before(w);
  });
  add_counters(impl_->retired, ctx->counters());
  ctx.reset();
}

RedisStoreStats RedisStore::stats() const {
  std::lock_guard lock(impl_->contexts_mu);
  RedisStoreStats s = impl_->retired;
  for (const auto& weak : impl_->contexts) {
    if (auto ctx = weak.lock()) add_counters(s, ctx->counters());
  }
  return s;
}

Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const RedisTlsOptions& tls) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1,
                   ec);
  if (tls.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    ctx->load_verify_file(tls.ca_file, ec);
  }
  if (ec) return fail(ErrorCode::kInvalidArgument, "tls ca " + tls.ca_file + ": " + ec.message());
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return fail(ErrorCode::kInvalidArgument, "tls: cert and key go together");
  }
  if (!tls.cert_file.empty()) {
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec) {
      return fail(ErrorCode::kInvalidArgument, "tls cert " + tls.cert_file + ": " + ec.message());
    }
    ctx->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
    if (ec) {
      return fail(ErrorCode::kInvalidArgument, "tls key " + tls.key_file + ": " + ec.message());
    }
  }
  return ctx;
}


Result<std::unique_ptr<Store>> make_redis_store(const RedisStoreOptions& options) {
  auto store = RedisStore::make(options);
  if (!store) return tl::unexpected(store.error());
  return std::unique_ptr<Store>(std::move(*store));
}

}  // namespace fg::redis
