// redis_store.h — the Store over one Redis or a Redis Cluster (design §3.3).
//
// Decisions are FCALLs of fg_decide_v4 (script.h) on the master owning the identity's slot: the
// script reads the state of every policy, refills from Redis TIME, checks, consumes all or
// nothing, and writes the states with their expiry, atomically. Decisions are batched: those
// made on one thread before its next turn of the event loop (one post per flush, none per
// decision) go out as few calls as they can, up to 64 decisions each: any together on one
// Redis, those of one slot together on a cluster; each decision stays all or nothing on its
// own, and a later one on the same keys sees an earlier one's writes. Calls are auto-pipelined
// as well: those made while a write is in flight share the next write (connection.h). A batch's
// vectors go back to its thread when it is done, for the next batch, and its call object comes
// from the thread's cache of freed Asio blocks: a warm thread's batches take (almost) nothing
// from the heap.
//
// Threads. Connections belong to the I/O thread that uses them (one per node per thread), so
// the request path takes no lock:
//   - a thread that runs an io_context (an HTTP server thread) calls bind_current_thread(ioc)
//     once; decide() on that thread then uses that thread's own connections and calls back on
//     that thread, from its io_context;
//   - decide() on any other thread (CLI, tests) hands the request to the store's own I/O thread,
//     and the callback runs there. Don't block in callbacks: they run on an I/O thread.
// The request (identity, charges) is kept before decide() returns: on a bound thread as its keys'
// common part and references to per-thread policy encodings, without allocating; from another
// thread as a copy, prepared on the store's own thread. The callback may run before
// decide() returns only for kInvalidArgument (a request without charges, a cost out of range).
//
// A refund (store.h) is one FCALL of fg_refund_v3 on the same keys, sent exactly as a decision
// is: the same connections, pipelining, routing, redirections, retries and deadline.
//
// Cluster. The store keeps one slot map for all its threads (which node serves each slot), and
// each thread routes on it to a connection of its own to that node (made on first use), without a
// lock. The map comes from CLUSTER SLOTS (the known masters first, then every known node, the
// seeds first), asked for by the store's first thread at start and whenever a thread meets a
// change: one refresh at a time for the whole store, on the connections of the thread that asked
// first, at most one per 100 ms, its answer every thread's at once. MOVED updates the slot for
// every thread at once and retries on the named node (and refreshes the map, unless it already
// named that node); ASK retries on the named node after ASKING, in the same write; TRYAGAIN,
// CLUSTERDOWN, LOADING, READONLY are retried with backoff (1, 2, 4 .. 64 ms) until the deadline; a
// lost node refreshes the map from the other known nodes, and again every 250 ms while the map
// still names it as a master and no connection reaches it (for up to 60 s after the last loss), so
// the store learns of a promoted replica even while nothing is sent to the lost node's slots.
// Commands go to masters only.
//
// Scripts. The library is loaded with FUNCTION LOAD REPLACE at the head of the store's first
// connection to each node, and of its every reconnect (pipelined, no extra round trip), so a
// restarted server, a new master and a promoted replica all get it; the other threads'
// connections to that node don't send it again. "Function not found" (a FUNCTION FLUSH, or a
// connection that got there before the loading one) reloads it on that node and retries once.
//
// Errors (the callback's Result):
//   kUnavailable       connection refused or lost, a Redis error reply, CLUSTERDOWN or TRYAGAIN
//                      still answered at the deadline; a command that may have run is never
//                      retried (it may have consumed), one that surely did not is, in a cluster.
//   kDeadlineExceeded  no answer within `timeout` of decide(): never later than that (a timer
//                      per connection), even if the reply comes afterwards (it is discarded).
//                      A call carries the earliest deadline of its decisions, so a decision may
//                      fail this way up to the time between its batch's first and its own
//                      decide() early (one event-loop turn).
// A call's outcome is its decisions': a redirection, a retry or a reload resends the whole call
// (its decisions share a slot), and an error reply fails every decision in it (kUnavailable).
//   kInternal          a reply the binary does not understand (script and binary disagree).
// Every error of a call that was sent names, in Error::node, the node it was last sent to (the
// index node_of() uses), so that the caller can keep a circuit breaker per master.
//
// Lifetime: destroying the store fails what is still waiting on its own I/O thread (kUnavailable)
// and joins it. A bound thread must call unbind_current_thread() before the store is destroyed,
// on that thread, while its io_context still exists.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>
#include <memory>
#include <string>
#include <string_view>

#include "floodgate/store.h"

namespace boost::asio {
class io_context;
namespace ssl {
class context;
}  // namespace ssl
}  // namespace boost::asio

namespace fg::redis {

// TLS to the Redis nodes (a rediss:// URL's query).
struct RedisTlsOptions {
  std::string ca_file;      // PEM bundle of trusted CAs; empty: the system's default store
  std::string cert_file;    // client certificate chain (PEM), for tls-auth-clients servers
  std::string key_file;     // its private key (PEM); given together with cert_file
  std::string server_name;  // name to verify and send as SNI; empty: the node's host
  bool verify = true;       // false: any certificate (tests only)
};

struct RedisHost {
  std::string host;
  std::uint16_t port = 6379;
};

// Which Redis, and how to reach it. The store's own type: the configuration's store URL is
// translated into it where the process is wired (src/app/wiring.h).
struct RedisEndpoint {
  bool cluster = false;          // hosts are seeds of a Redis Cluster; the rest is discovered
  std::vector<RedisHost> hosts;  // one for a single Redis; at least one seed for a cluster
  std::string user;              // empty: no ACL user (AUTH <password> alone)
  std::string password;          // empty: no AUTH
  int db = 0;                    // SELECT <db>; a cluster has only 0
  bool tls = false;
  RedisTlsOptions tls_options;   // with tls
};

struct RedisStoreOptions {
  // Where: one Redis, or the seeds of a Redis Cluster.
  RedisEndpoint url;
  // Keys are "<key_prefix>:{<tag>}:<identity>:<policy>" (keys.h), so several deployments can
  // share one Redis.
  std::string key_prefix = "fg";
  // Keys the hash tags (keys.h: make_tag_key), so that clients cannot choose their slot. Every
  // instance sharing the Redis must use the same one. Empty: a public key.
  std::string key_secret;
  // Deadline of one decision, from decide() to the callback (design: store_timeout). A decision
  // costs ~0.1-0.5 ms on a healthy local Redis; the default leaves room for a loaded network.
  Duration timeout = std::chrono::milliseconds(20);
  // Bound on TCP connect + TLS handshake, and on the CLUSTER SLOTS refresh. Requests waiting for a
  // connection still complete by their own deadline.
  Duration connect_timeout = std::chrono::seconds(1);
  // A connection owing replies that reads nothing for this long is dropped and reconnected.
  Duration stall_timeout = std::chrono::seconds(2);
};


// Buckets of RedisStoreStats::write_sizes: writes of 1, 2, 3-4, 5-8 .. 129-256, more commands.
inline constexpr std::size_t kWriteSizeStatsBuckets = 10;

// What the store has done, summed over its threads (relaxed reads: for metrics and tests). Every
// field only grows for the life of the store: the counts of an unbound thread are kept.
struct RedisStoreStats {
  std::uint64_t decisions = 0;    // callbacks called (decisions and refunds), answer or error
  std::uint64_t errors = 0;       // of which errors (kUnavailable, kDeadlineExceeded, kInternal)
  std::uint64_t timeouts = 0;     // of which kDeadlineExceeded
  std::uint64_t writes = 0;       // socket writes; writes / decisions is round trips per decision
  std::uint64_t commands = 0;     // commands sent (FCALL, ASKING, FUNCTION LOAD, CLUSTER SLOTS ...)
  std::uint64_t moved = 0;        // MOVED redirections followed
  std::uint64_t asks = 0;         // ASK redirections followed
  std::uint64_t retries = 0;      // TRYAGAIN / CLUSTERDOWN / lost-connection retries
  std::uint64_t reloads = 0;      // "Function not found" answered by reloading the library
  std::uint64_t refreshes = 0;    // CLUSTER SLOTS refreshes started, by the whole store (one
                                  // map for all threads: not one per thread)
  std::uint64_t connects = 0;     // connections established
  std::uint64_t loads = 0;        // connects that loaded the library (the first per node, see
                                  // "Scripts" above), reloads apart
  std::uint64_t connect_failures = 0;  // connection attempts that failed (refused, timeout, AUTH)
  std::uint64_t disconnects = 0;  // established connections lost
  std::uint64_t reconnects = 0;   // connections established again to a node after a loss
  // Pipeline depth: commands carried by each write. write_sizes[i] counts the writes of
  // (2^(i-1), 2^i] commands (i = 0: one command; the last bucket: more than 256); their sum is
  // `writes`, and written_commands is the commands they carried.
  std::uint64_t written_commands = 0;
  std::array<std::uint64_t, kWriteSizeStatsBuckets> write_sizes{};
};

class RedisStore final : public Store {
 public:
  // Validates the options and builds the TLS context; connects lazily (the first decision, or at
  // once in the background for a cluster's slot map). kInvalidArgument for bad options or
  // unreadable TLS files.
  static Result<std::unique_ptr<RedisStore>> make(const RedisStoreOptions& options);
  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  // Thread-safe; see the header comment for which thread calls back.
  void decide(const DecideRequest& request, DecideCallback done) override;
  void refund(const RefundRequest& request, RefundCallback done) override;
  // fg_release_v4 (script.h), through the same path as a refund.
  void release(const LeaseRequest& request, RefundCallback done) override;
  void renew(const LeaseRequest& request, RefundCallback done) override;
  // Envoy's ratelimit counters (count.h): one FCALL of fg_count_v1 per hash slot, through the
  // same connections, routing, retries and deadline as a decision.
  void count(std::span<const CountRequest> counters, CountCallback done) override;
  std::string_view kind() const override;
  // A cluster: 32 probe keys reach every master of a small cluster whatever key_secret hashes
  // them to (a given master of 3 is missed with probability (2/3)^32 < 1e-5); one Redis: 1.
  int probe_keys() const override;
  // A cluster: the master serving the identity's slot by the store's slot map (-1 before the
  // first); every node seen (masters and replicas, by "host:port")
  // has an index. One Redis: 0. Errors name the node the call last went to (Error::node).
  int node_of(std::string_view identity) const override;
  std::string node_name(int node) const override;
  bool node_in_use(int node) const override;

  // Registers the calling thread, which runs `ioc`, as an I/O thread of this store: decide()
  // made on it afterwards uses connections of its own on `ioc`. Call on that thread; idempotent.
  void bind_current_thread(boost::asio::io_context& ioc);
  // Closes the calling thread's connections (failing what waits on them) and forgets the binding.
  void unbind_current_thread();

  RedisStoreStats stats() const;

  struct Impl;

 private:
  explicit RedisStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The TLS client context the store builds for `tls` (CA, client certificate, TLS >= 1.2), for
// other clients of the same nodes (the status page's fleet view). kInvalidArgument for an
// unreadable file or a certificate without its key.
Result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(const RedisTlsOptions& tls);

// make_store's Redis half: RedisStore::make as a plain Store.
Result<std::unique_ptr<Store>> make_redis_store(const RedisStoreOptions& options);

}  // namespace fg::redis
