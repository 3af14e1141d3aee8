// cluster.h — Redis Cluster topology as values: the slot map from CLUSTER SLOTS and the
// redirections (MOVED, ASK) a node answers with. Pure functions, no I/O; the store keeps one
// slot map for all its I/O threads and refreshes it (redis_store.cc).
//
// Failure: a reply that is not a well-formed CLUSTER SLOTS answer is kUnavailable (the node is
// not usable as a source of topology; the caller asks another one).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "floodgate/result.h"
#include "store/redis/resp.h"

namespace fg::redis {

// "host:port", the form MOVED and ASK use; an IPv6 host is written without brackets, the port
// after the last ':'.
struct NodeAddress {
  std::string host;
  std::uint16_t port = 0;

  std::string to_string() const { return host + ":" + std::to_string(port); }
  friend bool operator==(const NodeAddress&, const NodeAddress&) = default;
};

std::optional<NodeAddress> parse_node_address(std::string_view text);

struct SlotRange {
  int first = 0;  // inclusive
  int last = 0;   // inclusive
  NodeAddress master;
  std::vector<NodeAddress> replicas;
};

// Parses a CLUSTER SLOTS reply. `queried` replaces an empty host (a node that does not know its
// own address names itself ""), as the Redis documentation says clients should.
Result<std::vector<SlotRange>> parse_cluster_slots(const Reply& reply, const NodeAddress& queried);

enum class RedirectKind { kMoved, kAsk };

struct Redirect {
  RedirectKind kind = RedirectKind::kMoved;
  int slot = 0;
  NodeAddress node;
};

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" → the redirection; nullopt for any
// other error text.
std::optional<Redirect> parse_redirect(std::string_view error);

}  // namespace fg::redis
