// fleet.h — the fleet view of GET /v1/status through Redis (http/status.h, docs/status.md): every
// instance publishes its status record, and reads every live instance's record and the store's
// nodes back, at most once a second, on a thread of its own (off the request path).
//
// Keys: every record lives under one fixed hash tag, so that all of them are in one slot (one
// master) of a cluster and one MGET reads them:
//   <key_prefix>:{status}:instance:<id>   the record (JSON), SET ... PX record_ttl: an instance
//                                         that stops publishing disappears on its own
//   <key_prefix>:{status}:instances       a sorted set of ids by last publication (ms), trimmed
//                                         of ids silent for a minute; at most kMaxFleetInstances
//                                         read
// The slot's master is found in CLUSTER NODES (read every tick for the store view anyway); a
// MOVED answer is followed at the next tick.
//
// The store view: CLUSTER NODES on a seed (a single Redis: the one node), then on every node
// (at most kMaxStoreNodes) INFO (role, keys, ops/s, memory) and FUNCTION LIST (the libraries
// loaded), through the generic RESP connection (store/redis/connection.h), one per node.
//
// Thread safety: publish() and view() may be called from any thread and never block on I/O.
// Failure: an unreachable node is shown down; a failed read keeps the last view and sets its
// error. With TLS (rediss://) every connection uses the store's CA, client certificate and
// server name (the same options as the store's own connections).
#pragma once

#include <memory>
#include <string>

#include "floodgate/clock.h"
#include "http/status.h"
#include "store/redis/redis_store.h"

namespace fg {

// Nodes of a cluster shown at most (INFO and FUNCTION LIST are asked of each, once a second).
inline constexpr std::size_t kMaxStoreNodes = 32;

struct RedisFleetOptions {
  redis::RedisEndpoint endpoint;
  std::string key_prefix = "fg";
  std::string store_kind = "redis";  // Store::kind(), shown as the store's kind
  // A record lives this long after its last publication (published every second).
  Duration record_ttl = std::chrono::seconds(3);
  Duration interval = std::chrono::seconds(1);
  Duration request_timeout = std::chrono::milliseconds(500);
};

// Null when the endpoint names no host, or its TLS files cannot be read (`why` set). Starts its
// thread; the destructor stops and joins it.
std::shared_ptr<http::Fleet> make_redis_fleet(RedisFleetOptions options, std::string* why = nullptr);

// The key of an instance's record, and of the registry of ids.
std::string fleet_record_key(std::string_view key_prefix, std::string_view id);
std::string fleet_registry_key(std::string_view key_prefix);

}  // namespace fg
