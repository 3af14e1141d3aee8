// config.cc — fuzz target: YAML text -> the config loader and validator (src/config).
//
// Invariants:
//   - parse_config never throws and never crashes, whatever the bytes.
//   - A refusal is a clear error: kInvalidArgument, a message of one line per problem, each
//     starting with the source name, at most kMaxProblems (+1 "too many problems") lines, and
//     config_problems() reports the same problems.
//   - An accepted config validates again: written back as YAML (every field, explicitly) and
//     parsed again, it gives an equal Config; every policy passes validate_policy, names are
//     unique, identity and policies are non-empty.
#include "config/config.h"

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "config/values.h"
#include "fuzz_check.h"

namespace {

using namespace fg::config;

// A YAML double-quoted scalar holding exactly the bytes of `s`. Bytes >= 0x80 are written as
// they are: "\xNN" would mean the code point U+00NN, i.e. two bytes of UTF-8.
std::string yq(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string percent_encode_all(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out += '%';
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

// The store URL with its password (to_string(StoreUrl) hides it), every user and password byte
// and every TLS setting percent-encoded.
std::string store_url(const StoreUrl& u) {
  if (u.kind == StoreKind::kMemory) return "memory://";
  std::string out = u.kind == StoreKind::kRedisCluster ? "redis-cluster://"
                    : u.tls                            ? "rediss://"
                                                       : "redis://";
  if (!u.password.empty())
    out += percent_encode_all(u.user) + ":" + percent_encode_all(u.password) + "@";
  for (std::size_t i = 0; i < u.hosts.size(); ++i) {
    if (i > 0) out += ',';
    out += to_string(u.hosts[i]);
  }
  if (u.kind == StoreKind::kRedis) out += "/" + std::to_string(u.db);
  if (u.tls) {
    const StoreTls& t = u.tls_options;
    out += "?ca=" + percent_encode_all(t.ca_file) + "&cert=" + percent_encode_all(t.cert_file) +
           "&key=" + percent_encode_all(t.key_file) +
           "&server_name=" + percent_encode_all(t.server_name) +
           "&insecure=" + (t.verify ? "0" : "1");
  }
  return out;
}

std::string to_yaml(const Config& c) {
  std::string y;
  y += "listen: " + yq(to_string(c.listen)) + "\n";
  y += "threads: " + std::to_string(c.threads) + "\n";
  y += "store: " + yq(store_url(c.store)) + "\n";
  y += "store_timeout: " + format_duration(c.store_timeout) + "\n";
  y += "on_store_error: " + std::string(to_string(c.on_store_error)) + "\n";
  y += "local_fallback: {instances: " + std::to_string(c.local_fallback_instances) + "}\n";
  if (!c.trusted_proxies.empty()) {
    y += "trusted_proxies:\n";
    for (const Cidr& p : c.trusted_proxies) y += "  - " + yq(to_string(p)) + "\n";
  }
  if (c.upstream) y += "upstream: " + yq("http://" + to_string(*c.upstream)) + "\n";
  y += "upstream_timeout: " + format_duration(c.upstream_timeout) + "\n";
  y += "key_prefix: " + yq(c.key_prefix) + "\n";
  if (c.cors) {
    y += "cors:\n  allow_origins:\n";
    for (const std::string& o : c.cors->allow_origins) y += "    - " + yq(o) + "\n";
  }
  y += "identity:\n";
  for (const IdentitySource& s : c.identity) {
    if (s.kind == IdentitySource::Kind::kHeader) {
      y += "  - header: " + yq(s.header) + "\n";
    } else {
      y += "  - ip: {ipv4_prefix: " + std::to_string(s.ipv4_prefix) +
           ", ipv6_prefix: " + std::to_string(s.ipv6_prefix) + "}\n";
    }
  }
  y += "policies:\n";
  for (const PolicyConfig& pc : c.policies) {
    const fg::Policy& p = pc.policy;
    y += "  - name: " + yq(p.name) + "\n";
    y += "    algorithm: " + std::string(fg::to_string(p.algorithm)) + "\n";
    y += "    limit: " + std::to_string(p.limit) + "\n";
    y += "    period: " + format_duration(p.period) + "\n";
    y += "    burst: " + std::to_string(p.burst) + "\n";
    y += "    cost: " + std::to_string(p.cost) + "\n";
    y += std::string("    shadow: ") + (p.shadow ? "true" : "false") + "\n";
    std::string m;
    if (pc.match.path_prefix) m += "      path_prefix: " + yq(*pc.match.path_prefix) + "\n";
    if (pc.match.path) m += "      path: " + yq(*pc.match.path) + "\n";
    if (!pc.match.methods.empty()) {
      m += "      method:\n";
      for (const std::string& meth : pc.match.methods) m += "        - " + yq(meth) + "\n";
    }
    if (pc.match.header) {
      m += "      header:\n        name: " + yq(pc.match.header->name) + "\n";
      if (pc.match.header->value) m += "        value: " + yq(*pc.match.header->value) + "\n";
    }
    if (!m.empty()) y += "    match:\n" + m;
  }
  const ServerLimits& s = c.server;
  y += "server:\n";
  y += "  max_connections: " + std::to_string(s.max_connections) + "\n";
  y += "  max_header_bytes: " + std::to_string(s.max_header_bytes) + "\n";
  y += "  max_body_bytes: " + std::to_string(s.max_body_bytes) + "\n";
  y += "  header_timeout: " + format_duration(s.header_timeout) + "\n";
  y += "  body_timeout: " + format_duration(s.body_timeout) + "\n";
  y += "  idle_timeout: " + format_duration(s.idle_timeout) + "\n";
  y += "  write_timeout: " + format_duration(s.write_timeout) + "\n";
  // drain_delay may be 0, which format_duration writes as "0ms"; a zero is the default anyway.
  if (s.drain_delay != fg::Duration::zero()) {
    y += "  drain_delay: " + format_duration(s.drain_delay) + "\n";
  }
  y += "  drain_timeout: " + format_duration(s.drain_timeout) + "\n";
  y += std::string("access_log: ") + (c.access_log ? "true" : "false") + "\n";
  return y;
}

bool same_policies(const Config& a, const Config& b) {
  if (a.policies.size() != b.policies.size()) return false;
  for (std::size_t i = 0; i < a.policies.size(); ++i) {
    const fg::Policy& p = a.policies[i].policy;
    const fg::Policy& q = b.policies[i].policy;
    if (p.name != q.name || p.algorithm != q.algorithm || p.limit != q.limit ||
        p.period != q.period || p.burst != q.burst || p.cost != q.cost || p.shadow != q.shadow ||
        !(a.policies[i].match == b.policies[i].match)) {
      return false;
    }
  }
  return true;
}

bool same(const Config& a, const Config& b) {
  return a.listen == b.listen && a.threads == b.threads && a.store == b.store &&
         a.store_timeout == b.store_timeout && a.on_store_error == b.on_store_error &&
         a.local_fallback_instances == b.local_fallback_instances &&
         a.trusted_proxies == b.trusted_proxies && a.upstream == b.upstream &&
         a.upstream_timeout == b.upstream_timeout && a.key_prefix == b.key_prefix &&
         a.cors == b.cors && a.identity == b.identity && same_policies(a, b) &&
         a.server == b.server && a.access_log == b.access_log;
}

constexpr std::string_view kSource = "fuzz.yaml";

void check_error(const fg::Error& e, std::string_view text) {
  FG_FUZZ_CHECK(e.code == fg::ErrorCode::kInvalidArgument, "code %d: %s", static_cast<int>(e.code),
                e.message.c_str());
  FG_FUZZ_CHECK(!e.message.empty(), "empty error message");
  std::size_t lines = 0;
  std::string_view rest = e.message;
  while (!rest.empty()) {
    const std::size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    FG_FUZZ_CHECK(line.starts_with(kSource) && line.size() > kSource.size() + 2,
                  "problem line without its source: \"%.*s\"", static_cast<int>(line.size()),
                  line.data());
    ++lines;
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
  }
  FG_FUZZ_CHECK(lines <= kMaxProblems + 1, "%zu problem lines", lines);
  const auto problems = config_problems(text, kSource);
  FG_FUZZ_CHECK(!problems.empty(), "parse_config refused, config_problems found nothing");
  std::string joined;
  for (const Problem& p : problems) joined += (joined.empty() ? "" : "\n") + p.to_string();
  FG_FUZZ_CHECK(joined == e.message, "config_problems differs:\n%s\n---\n%s", joined.c_str(),
                e.message.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const fg::Result<Config> parsed = parse_config(text, kSource);
  if (!parsed) {
    check_error(parsed.error(), text);
    return 0;
  }
  const Config& c = *parsed;
  FG_FUZZ_CHECK(config_problems(text, kSource).empty(), "accepted, yet config_problems reports");
  FG_FUZZ_CHECK(!c.policies.empty() && !c.identity.empty(), "no policy or no identity source");
  std::set<std::string> names;
  for (const PolicyConfig& pc : c.policies) {
    FG_FUZZ_CHECK(fg::validate_policy(pc.policy).has_value(), "policy %s does not validate: %s",
                  pc.policy.name.c_str(), fg::validate_policy(pc.policy).error().message.c_str());
    FG_FUZZ_CHECK(names.insert(pc.policy.name).second, "duplicate name %s", pc.policy.name.c_str());
  }
  const std::string again_text = to_yaml(c);
  const fg::Result<Config> again = parse_config(again_text, "again.yaml");
  FG_FUZZ_CHECK(again.has_value(), "written back, it does not parse:\n%s\n%s", again_text.c_str(),
                again.error().message.c_str());
  FG_FUZZ_CHECK(same(c, *again), "written back and parsed, it differs:\n%s", again_text.c_str());
  return 0;
}
