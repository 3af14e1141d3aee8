#include "store/redis/cluster.h"

#include <charconv>

#include "store/redis/keys.h"

namespace fg::redis {
namespace {

template <typename T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// One node of a CLUSTER SLOTS entry: [host, port, id, ...]. Redis 7 may append a map of
// hostnames; only the first two fields matter here.
std::optional<NodeAddress> node_of(const Reply& r, const NodeAddress& queried) {
  if (!r.is_array() || r.elements.size() < 2) return std::nullopt;
  const Reply& host = r.elements[0];
  const Reply& port = r.elements[1];
  if (host.type != Reply::Type::kString || !port.is_integer()) return std::nullopt;
  if (port.integer <= 0 || port.integer > 65535) return std::nullopt;
  NodeAddress a;
  a.host = host.str.empty() ? queried.host : host.str;
  a.port = static_cast<std::uint16_t>(port.integer);
  // "?" is Redis 7's "preferred endpoint unknown": such a node cannot be reached by name.
  if (a.host == "?") return std::nullopt;
  return a;
}

}  // namespace

std::optional<NodeAddress> parse_node_address(std::string_view text) {
  // Redis 7 may append the cluster bus port ("host:port@bus"); it is not ours to use.
  if (const std::size_t at = text.find('@'); at != std::string_view::npos) {
    text = text.substr(0, at);
  }
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const auto port = parse_number<std::uint32_t>(text.substr(colon + 1));
  if (!port || *port == 0 || *port > 65535) return std::nullopt;
  NodeAddress a;
  a.host = std::string(text.substr(0, colon));
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') {
    a.host = a.host.substr(1, a.host.size() - 2);
  }
  a.port = static_cast<std::uint16_t>(*port);
  return a;
}

Result<std::vector<SlotRange>> parse_cluster_slots(const Reply& reply, const NodeAddress& queried) {
  if (reply.is_error()) return fail(ErrorCode::kUnavailable, "CLUSTER SLOTS: " + reply.str);
  if (!reply.is_array()) {
    return fail(ErrorCode::kUnavailable, "CLUSTER SLOTS: unexpected reply " + describe(reply));
  }
  std::vector<SlotRange> ranges;
  ranges.reserve(reply.elements.size());
  for (const Reply& e : reply.elements) {
    if (!e.is_array() || e.elements.size() < 3 || !e.elements[0].is_integer() ||
        !e.elements[1].is_integer()) {
      return fail(ErrorCode::kUnavailable, "CLUSTER SLOTS: malformed entry " + describe(e));
    }
    SlotRange r;
    const std::int64_t first = e.elements[0].integer;
    const std::int64_t last = e.elements[1].integer;
    if (first < 0 || last < first || last >= kClusterSlots) {
      return fail(ErrorCode::kUnavailable, "CLUSTER SLOTS: bad slot range " + describe(e));
    }
    r.first = static_cast<int>(first);
    r.last = static_cast<int>(last);
    auto master = node_of(e.elements[2], queried);
    if (!master) continue;  // a master nobody can reach: leave its slots unmapped
    r.master = std::move(*master);
    for (std::size_t i = 3; i < e.elements.size(); ++i) {
      if (auto replica = node_of(e.elements[i], queried)) r.replicas.push_back(*replica);
    }
    ranges.push_back(std::move(r));
  }
  return ranges;
}

std::optional<Redirect> parse_redirect(std::string_view error) {
  Redirect r;
  if (error.starts_with("MOVED ")) {
    r.kind = RedirectKind::kMoved;
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    r.kind = RedirectKind::kAsk;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const std::size_t space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto slot = parse_number<int>(error.substr(0, space));
  if (!slot || *slot < 0 || *slot >= kClusterSlots) return std::nullopt;
  auto node = parse_node_address(error.substr(space + 1));
  if (!node) return std::nullopt;
  r.slot = *slot;
  r.node = std::move(*node);
  return r;
}

}  // namespace fg::redis
