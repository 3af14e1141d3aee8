#include "app/fleet.h"

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "store/redis/connection.h"
#include "store/redis/keys.h"
#include "store/redis/resp.h"

namespace fg {
namespace {

// How long the registry (fleet_registry_key) keeps an instance that stopped publishing, and the
// registry itself once every instance has.
constexpr std::chrono::milliseconds kRegistryWindow{60'000};

namespace asio = boost::asio;
using json = nlohmann::json;

// One node of the store as CLUSTER NODES (or, for one Redis, the URL) names it.
struct Node {
  std::string address;  // host:port
  std::string role = "master";
  bool up = true;
  std::vector<std::pair<int, int>> slots;  // inclusive ranges
  int slot_count = 0;
  // From INFO and FUNCTION LIST, when they answered.
  std::optional<std::int64_t> keys, ops_per_s, memory_bytes;
  std::vector<std::string> libraries;
  bool answered = false;
};

// CLUSTER NODES: "<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
// <link-state> <slot>..." per line (https://redis.io/docs/latest/commands/cluster-nodes/).
std::vector<Node> parse_cluster_nodes(std::string_view text) {
  std::vector<Node> nodes;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    std::vector<std::string_view> f;
    while (!line.empty()) {
      const std::size_t sp = line.find(' ');
      if (sp != 0) f.push_back(line.substr(0, sp));
      line.remove_prefix(sp == std::string_view::npos ? line.size() : sp + 1);
    }
    if (f.size() < 8) continue;
    Node n;
    n.address = std::string(f[1].substr(0, f[1].find('@')));
    const std::string_view flags = f[2];
    if (flags.find("noaddr") != std::string_view::npos || n.address.starts_with(":")) continue;
    n.role = flags.find("master") != std::string_view::npos ? "master" : "replica";
    n.up = f[7] == "connected" && flags.find("fail") == std::string_view::npos;
    for (std::size_t i = 8; i < f.size(); ++i) {
      if (f[i].starts_with("[")) continue;  // a slot being imported or migrated
      const std::string s(f[i]);
      const std::size_t dash = s.find('-');
      const int first = std::atoi(s.c_str());
      const int last = dash == std::string::npos ? first : std::atoi(s.c_str() + dash + 1);
      n.slots.emplace_back(first, last);
      n.slot_count += last - first + 1;
    }
    nodes.push_back(std::move(n));
  }
  std::sort(nodes.begin(), nodes.end(),
            [](const Node& a, const Node& b) { return a.address < b.address; });
  if (nodes.size() > kMaxStoreNodes) nodes.resize(kMaxStoreNodes);
  return nodes;
}

// "field:value" lines of INFO.
std::optional<std::int64_t> info_field(std::string_view info, std::string_view name) {
  const std::string key = "\n" + std::string(name) + ":";
  std::size_t at = info.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  return std::atoll(std::string(info.substr(at + key.size(), 24)).c_str());
}

std::string info_text_field(std::string_view info, std::string_view name) {
  const std::string key = "\n" + std::string(name) + ":";
  const std::size_t at = info.find(key);
  if (at == std::string_view::npos) return {};
  const std::string_view rest = info.substr(at + key.size());
  return std::string(rest.substr(0, rest.find_first_of("\r\n")));
}

// The keys of every db: "db0:keys=12,expires=12,avg_ttl=0".
std::int64_t info_keys(std::string_view info) {
  std::int64_t keys = 0;
  std::size_t at = 0;
  while ((at = info.find("keys=", at)) != std::string_view::npos) {
    if (at >= 1 && (info[at - 1] == ':'))
      keys += std::atoll(std::string(info.substr(at + 5, 20)).c_str());
    at += 5;
  }
  return keys;
}

// FUNCTION LIST: [[ "library_name", name, "engine", "LUA", "functions", [...] ], ...].
std::vector<std::string> function_libraries(const redis::Reply& r) {
  std::vector<std::string> out;
  if (!r.is_array()) return out;
  for (const redis::Reply& lib : r.elements) {
    for (std::size_t i = 0; i + 1 < lib.elements.size(); i += 2) {
      if (lib.elements[i].str == "library_name") out.push_back(lib.elements[i + 1].str);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

class RedisFleet final : public http::Fleet, public std::enable_shared_from_this<RedisFleet> {
 public:
  RedisFleet(RedisFleetOptions o, std::shared_ptr<boost::asio::ssl::context> tls)
      : options_(std::move(o)), tls_(std::move(tls)) {}

  ~RedisFleet() override {
    asio::post(ioc_, [this] {
      stopping_ = true;
      timer_.cancel();
      for (auto& [address, c] : connections_) c->close();
      connections_.clear();
      work_.reset();
    });
    if (thread_.joinable()) thread_.join();
  }

  void start() {
    thread_ = std::thread([this] { ioc_.run(); });
    asio::post(ioc_, [this] { tick(); });
  }

  void publish(std::string id, std::string record) override {
    std::lock_guard lock(mutex_);
    pending_id_ = std::move(id);
    pending_record_ = std::move(record);
  }

  http::FleetView view() const override {
    std::lock_guard lock(mutex_);
    return view_;
  }

 private:
  using Clock = std::chrono::steady_clock;

  std::shared_ptr<redis::Connection> connection(const std::string& address) {
    auto it = connections_.find(address);
    if (it != connections_.end()) return it->second;
    redis::ConnectionOptions o;
    const std::size_t colon = address.rfind(':');
    o.host = address.substr(0, colon);
    o.port = static_cast<std::uint16_t>(std::atoi(address.c_str() + colon + 1));
    o.user = options_.endpoint.user;
    o.password = options_.endpoint.password;
    o.db = options_.endpoint.db;
    if (tls_) {
      o.tls = tls_;
      o.tls_verify = options_.endpoint.tls_options.verify;
      o.tls_server_name = options_.endpoint.tls_options.server_name;
    }
    auto c = redis::Connection::make(ioc_, std::move(o));
    connections_.emplace(address, c);
    return c;
  }

  // Sends `command` to `address`; `done(reply or error)` on this thread.
  void ask(const std::string& address, std::string command,
           std::function<void(Result<redis::Reply>)> done) {
    auto handler = redis::make_reply_handler(
        [done = std::move(done)](int, Result<redis::Reply> r, bool) { done(std::move(r)); });
    connection(address)->request(command, Clock::now() + options_.request_timeout, handler, 0);
  }

  std::string seed() {
    const auto& hosts = options_.endpoint.hosts;
    const redis::RedisHost& h = hosts[seed_index_ % hosts.size()];
    return h.host + ":" + std::to_string(h.port);
  }

  // One round: topology, then per node INFO and FUNCTION LIST, and publish/read the records on
  // the status slot's master. The next round starts a second after this one began, or when this
  // one ends, whichever is later: a slow store never has two rounds in flight.
  void tick() {
    if (stopping_) return;
    round_started_ = Clock::now();
    if (!options_.endpoint.cluster) {
      Node n;
      n.address = seed();
      n.slot_count = 0;
      on_topology({n}, "");
      return;
    }
    const std::string from = seed();
    ask(from, redis::format_command({"CLUSTER", "NODES"}), [this, from](Result<redis::Reply> r) {
      if (!r || r->type != redis::Reply::Type::kString) {
        ++seed_index_;  // try the next seed next time
        on_topology({}, "CLUSTER NODES on " + from + ": " +
                            (r ? redis::describe(*r) : r.error().to_string()));
        return;
      }
      on_topology(parse_cluster_nodes(r->str), "");
    });
  }

  struct Round {
    std::vector<Node> nodes;
    std::string error;
    int outstanding = 0;
    std::vector<std::string> records;
    bool records_read = false;
  };

  void on_topology(std::vector<Node> nodes, std::string error) {
    auto round = std::make_shared<Round>();
    round->nodes = std::move(nodes);
    round->error = std::move(error);
    if (round->nodes.empty()) return finish(round);
    const std::string registry = fleet_registry_key(options_.key_prefix);
    const int slot = redis::key_slot(registry);
    std::string owner = round->nodes.front().address;
    for (const Node& n : round->nodes) {
      for (const auto& [first, last] : n.slots) {
        if (n.role == "master" && slot >= first && slot <= last) owner = n.address;
      }
    }
    round->outstanding = static_cast<int>(round->nodes.size()) * 2 + 1;
    for (std::size_t i = 0; i < round->nodes.size(); ++i) {
      const std::string address = round->nodes[i].address;
      ask(address, redis::format_command({"INFO"}), [this, round, i](Result<redis::Reply> r) {
        Node& n = round->nodes[i];
        if (r && r->type == redis::Reply::Type::kString) {
          const std::string info = "\n" + r->str;
          n.answered = true;
          n.keys = info_keys(info);
          n.ops_per_s = info_field(info, "instantaneous_ops_per_sec");
          n.memory_bytes = info_field(info, "used_memory");
          if (!options_.endpoint.cluster) {
            n.role = info_text_field(info, "role") == "slave" ? "replica" : "master";
          }
        } else {
          n.up = false;
        }
        done_one(round);
      });
      ask(address, redis::format_command({"FUNCTION", "LIST"}),
          [this, round, i](Result<redis::Reply> r) {
            if (r) round->nodes[i].libraries = function_libraries(*r);
            done_one(round);
          });
    }
    publish_and_read(owner, round);
  }

  void publish_and_read(const std::string& owner, const std::shared_ptr<Round>& round) {
    std::string id, record;
    {
      std::lock_guard lock(mutex_);
      id = pending_id_;
      record = pending_record_;
    }
    const std::string registry = fleet_registry_key(options_.key_prefix);
    const std::int64_t now_ms = to_us(SystemClock::instance().now()) / 1000;
    auto ignore = [](Result<redis::Reply>) {};
    if (!id.empty()) {
      const std::string ttl_ms = std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.record_ttl).count());
      ask(owner,
          redis::format_command(
              {"SET", fleet_record_key(options_.key_prefix, id), record, "PX", ttl_ms}),
          ignore);
      // The registry keeps the instances heard from in the last minute, and goes with them: its
      // expiry is pushed a minute ahead by every publish, so like every key floodgate writes it
      // expires once nothing writes it.
      const std::string window_ms = std::to_string(kRegistryWindow.count());
      ask(owner, redis::format_command({"ZADD", registry, std::to_string(now_ms), id}), ignore);
      ask(owner,
          redis::format_command({"ZREMRANGEBYSCORE", registry, "-inf",
                                 std::to_string(now_ms - kRegistryWindow.count())}),
          ignore);
      ask(owner, redis::format_command({"PEXPIRE", registry, window_ms}), ignore);
    }
    ask(owner,
        redis::format_command(
            {"ZREVRANGE", registry, "0", std::to_string(http::kMaxFleetInstances - 1)}),
        [this, owner, round](Result<redis::Reply> r) {
          if (!r || !r->is_array()) {
            round->error =
                "ZREVRANGE on " + owner + ": " + (r ? redis::describe(*r) : r.error().to_string());
            return done_one(round);
          }
          if (r->elements.empty()) {
            round->records_read = true;
            return done_one(round);
          }
          std::vector<std::string> argv{"MGET"};
          for (const redis::Reply& e : r->elements) {
            argv.push_back(fleet_record_key(options_.key_prefix, e.str));
          }
          ask(owner, redis::format_command(argv), [this, owner, round](Result<redis::Reply> m) {
            if (m && m->is_array()) {
              for (const redis::Reply& e : m->elements) {
                if (e.type == redis::Reply::Type::kString) round->records.push_back(e.str);
              }
              round->records_read = true;
            } else {
              round->error =
                  "MGET on " + owner + ": " + (m ? redis::describe(*m) : m.error().to_string());
            }
            done_one(round);
          });
        });
  }

  void done_one(const std::shared_ptr<Round>& round) {
    if (--round->outstanding == 0) finish(round);
  }

  void finish(const std::shared_ptr<Round>& round) {
    json nodes = json::array();
    for (const Node& n : round->nodes) {
      json j = {{"address", n.address},
                {"role", n.role},
                {"up", n.up && n.answered},
                {"slots", n.slot_count},
                {"libraries", n.libraries}};
      j["keys"] = n.keys ? json(*n.keys) : json(nullptr);
      j["ops_per_s"] = n.ops_per_s ? json(*n.ops_per_s) : json(nullptr);
      j["memory_bytes"] = n.memory_bytes ? json(*n.memory_bytes) : json(nullptr);
      nodes.push_back(std::move(j));
    }
    json store = {{"kind", options_.store_kind}, {"nodes", std::move(nodes)}};
    if (!round->error.empty()) store["error"] = round->error;
    if (stopping_) return;
    {
      std::lock_guard lock(mutex_);
      if (round->records_read) view_.records = std::move(round->records);
      if (!round->nodes.empty() || view_.store.empty()) view_.store = store.dump();
      view_.error = round->error;
      view_.read_at = SystemClock::instance().now();
    }
    const auto elapsed = Clock::now() - round_started_;
    const auto wait =
        elapsed >= options_.interval ? Clock::duration::zero() : options_.interval - elapsed;
    timer_.expires_after(wait);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
  }

  RedisFleetOptions options_;
  std::shared_ptr<boost::asio::ssl::context> tls_;  // null without TLS
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ioc_);
  asio::steady_timer timer_{ioc_};
  std::thread thread_;
  // On the fleet's thread only:
  std::map<std::string, std::shared_ptr<redis::Connection>> connections_;
  std::size_t seed_index_ = 0;
  bool stopping_ = false;
  Clock::time_point round_started_;

  mutable std::mutex mutex_;  // guards the members below
  std::string pending_id_;
  std::string pending_record_;
  http::FleetView view_;
};

}  // namespace

std::string fleet_record_key(std::string_view key_prefix, std::string_view id) {
  return std::string(key_prefix) + ":{status}:instance:" + std::string(id);
}

std::string fleet_registry_key(std::string_view key_prefix) {
  return std::string(key_prefix) + ":{status}:instances";
}

std::shared_ptr<http::Fleet> make_redis_fleet(RedisFleetOptions options, std::string* why) {
  if (options.endpoint.hosts.empty()) {
    if (why != nullptr) *why = "no Redis host";
    return nullptr;
  }
  std::shared_ptr<boost::asio::ssl::context> tls;
  if (options.endpoint.tls) {
    auto ctx = redis::make_tls_context(options.endpoint.tls_options);
    if (!ctx) {
      if (why != nullptr) *why = ctx.error().message;
      return nullptr;
    }
    tls = std::move(*ctx);
  }
  auto f = std::make_shared<RedisFleet>(std::move(options), std::move(tls));
  f->start();
  return f;
}

}  // namespace fg
