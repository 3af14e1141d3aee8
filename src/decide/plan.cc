#include "decide/plan.h"

#include <algorithm>

#include "decide/deny_cache.h"
#include "util/text.h"

namespace fg::decide {
namespace {

// A policy's limit divided among `n` instances deciding alone, at least 1. If the division
// breaks exactness bounds, the policy is kept whole (validate_policy accepted it as it is).
Policy divided(const Policy& p, std::int64_t n) {
  Policy local = p;
  local.limit = std::max<std::int64_t>(1, local.limit / n);
  local.burst = std::max<std::int64_t>(1, local.burst / n);
  if (!validate_policy(local)) local = p;
  return local;
}

}  // namespace

std::string_view host_name(std::string_view host) {
  const std::size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos &&
      (host.front() == '[' || host.find(':') == colon)) {
    host = host.substr(0, colon);
  }
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  return host;
}

std::shared_ptr<Rules> make_rules(std::shared_ptr<const config::Config> config) {
  auto rules = std::make_shared<Rules>();
  // Each instance gets 1/n of the fleet's allowance, so n instances deciding alone admit about
  // what the shared store would have.
  const std::int64_t n = std::max(1, config->local_fallback_instances);
  for (const config::PolicyConfig& pc : config->policies) {
    rules->local_policies.push_back(divided(pc.policy, n));
  }
  const auto add_single = [&rules](const std::string& name) {
    for (const std::string& known : rules->single_fields) {
      if (util::iequals(known, name)) return;
    }
    rules->single_fields.push_back(name);
  };
  const auto add_sources = [&](const std::vector<config::IdentitySource>& sources) {
    for (const config::IdentitySource& src : sources) {
      if (src.kind == config::IdentitySource::Kind::kHeader) add_single(src.header);
    }
  };
  add_sources(config->identity);
  for (const config::PolicyConfig& pc : config->policies) {
    add_sources(pc.identity);
    if (pc.match.header) add_single(pc.match.header->name);
    if (pc.match.header && util::iequals(pc.match.header->name, "Host")) rules->matches_host = true;
  }
  rules->check_api_policy = config->check_api_policy;
  rules->check_api_local_policy = divided(config->check_api_policy, n);
  if (config->deny_cache.enabled) {
    rules->deny_cache = std::make_shared<DenyCache>(config->deny_cache.max_entries);
  }
  rules->config = std::move(config);
  return rules;
}

boost::container::small_vector<DecideRequest, 2> Plan::requests(std::span<const Charge> of) const {
  boost::container::small_vector<DecideRequest, 2> out;
  std::size_t start = 0;
  for (std::size_t i = 1; i <= of.size(); ++i) {
    if (i == of.size() || charge_identity[i] != charge_identity[start]) {
      out.push_back(
          DecideRequest{identities[charge_identity[start]], of.subspan(start, i - start), lease});
      start = i;
    }
  }
  return out;
}

namespace {

// Whether a request names `value`'s host (any when nullopt) in Host (`host`) or in one of
// `forwarded_hosts`: case-insensitively, without port or trailing dot. Upstreams behind a proxy
// (Rails, Express, Django, Spring, Symfony) route on X-Forwarded-Host or Forwarded's host= when
// present, so a request that names the host there is counted whatever its Host says.
bool names_host(const std::optional<std::string>& value, std::optional<std::string_view> host,
                std::string_view forwarded_hosts) {
  if (!value) return host.has_value() || !forwarded_hosts.empty();
  const std::string_view want = host_name(*value);
  if (host && !host->empty() && util::iequals(host_name(*host), want)) return true;
  while (!forwarded_hosts.empty()) {
    const std::size_t comma = forwarded_hosts.find(',');
    const std::string_view h = forwarded_hosts.substr(0, comma);
    if (!h.empty() && util::iequals(host_name(h), want)) return true;
    forwarded_hosts.remove_prefix(comma == std::string_view::npos ? forwarded_hosts.size()
                                                                  : comma + 1);
  }
  return false;
}

// `path` without the one trailing '/' a canonical path may end with (but "/" itself).
std::string_view without_trailing_slash(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

}  // namespace

bool policy_matches(const config::Match& match, const Query& q) {
  // A trailing '/' does not make another path: most routers (Express unless strict, Rails,
  // Django's APPEND_SLASH redirect aside, Spring before 6) serve "/login/" as "/login", so a
  // policy on either counts both, and a prefix "/admin/" counts "/admin" too.
  if (match.path && without_trailing_slash(q.path) != without_trailing_slash(*match.path)) {
    return false;
  }
  if (match.path_prefix && !q.path.starts_with(*match.path_prefix) &&
      q.path != without_trailing_slash(*match.path_prefix)) {
    return false;
  }
  if (!match.methods.empty()) {
    const auto has = [&](std::string_view m) {
      return std::find(match.methods.begin(), match.methods.end(), m) != match.methods.end();
    };
    // HEAD is GET without the body (RFC 9110 §9.3.2): servers run the GET handler for it.
    if (!has(q.method) && !(q.method == "HEAD" && has("GET"))) return false;
  }
  if (match.header) {
    const auto v = q.header(match.header->name);
    if (util::iequals(match.header->name, "Host")) {
      if (!names_host(match.header->value, v, q.forwarded_hosts)) return false;
    } else {
      if (!v) return false;
      if (match.header->value && *v != *match.header->value) {
        // Authorization in any spelling that names the same credentials (identity.h).
        if (!util::iequals(match.header->name, "Authorization") ||
            canonical_authorization(*v) != canonical_authorization(*match.header->value)) {
          return false;
        }
      }
    }
  }
  return true;
}

bool plan(const Rules& rules, const Query& q, bool with_check_api, Plan& out,
          std::string* missing) {
  const config::Config& c = *rules.config;
  struct Matched {
    std::size_t index;  // into c.policies, or kCheckApiPolicy
    const std::vector<config::IdentitySource>* sources;
  };
  boost::container::small_vector<Matched, 4> matched;
  for (std::size_t i = 0; i < c.policies.size(); ++i) {
    const config::PolicyConfig& pc = c.policies[i];
    if (policy_matches(pc.match, q)) matched.push_back(Matched{i, &c.identity_of(pc)});
  }
  if (with_check_api) {
    // Callers of the check API are counted per address: a client-chosen header would let each
    // call name a new caller.
    static const std::vector<config::IdentitySource> kByAddress{config::IdentitySource{}};
    matched.push_back(Matched{kCheckApiPolicy, &kByAddress});
  }
  if (matched.empty()) return true;
  // X-Forwarded-For is read only when some peer may be believed.
  const std::string_view xff = c.trusted_proxies.empty() ? std::string_view() : q.forwarded_for;
  // Identities by source list (most policies share the global one): each source list's slot in
  // out.identities, or nullopt when the client sent none of its sources.
  boost::container::small_vector<std::pair<const void*, std::optional<std::uint8_t>>, 2> known;
  boost::container::small_vector<std::pair<std::uint8_t, Matched>, 4> placed;
  for (const Matched& m : matched) {
    auto it = std::find_if(known.begin(), known.end(),
                           [&](const auto& k) { return k.first == m.sources; });
    if (it == known.end()) {
      std::string id = std::move(out.spare);
      std::optional<std::uint8_t> slot;
      if (identify_into(id, *m.sources, q.header, q.peer, xff, c.trusted_proxies)) {
        std::size_t i = 0;
        while (i < out.identities.size() && out.identities[i] != id) ++i;
        if (i == out.identities.size()) {
          out.identities.push_back(std::move(id));
        } else {
          out.spare = std::move(id);
        }
        slot = static_cast<std::uint8_t>(i);
      } else {
        out.spare = std::move(id);
      }
      known.emplace_back(m.sources, slot);
      it = known.end() - 1;
    }
    if (!it->second) {
      if (missing != nullptr) {
        missing->clear();
        for (const config::IdentitySource& s : *m.sources) {
          if (s.kind == config::IdentitySource::Kind::kHeader) {
            *missing += (missing->empty() ? "" : " or ") + s.header;
          }
        }
      }
      return false;
    }
    placed.emplace_back(*it->second, m);
  }
  // Grouped by identity, in the order identities first appear (the order the store decides them).
  for (std::uint8_t g = 0; g < out.identities.size(); ++g) {
    for (const auto& [slot, m] : placed) {
      if (slot != g) continue;
      out.charge_identity.push_back(g);
      if (m.index == kCheckApiPolicy) {
        out.charges.push_back(Charge{&rules.check_api_policy, rules.check_api_policy.cost});
        out.local_charges.push_back(
            Charge{&rules.check_api_local_policy, rules.check_api_local_policy.cost});
      } else {
        const Policy& p = c.policies[m.index].policy;
        out.charges.push_back(Charge{&p, p.cost});
        out.local_charges.push_back(Charge{&rules.local_policies[m.index], p.cost});
      }
      out.policy_indices.push_back(m.index);
    }
  }
  out.takes_slots = false;
  for (const Charge& ch : out.charges) {
    if (ch.policy->is_concurrency() && ch.cost > 0) out.takes_slots = true;
  }
  if (out.takes_slots) {
    out.lease = make_lease_id();
  } else {
    out.lease.clear();
  }
  return true;
}

std::string check_identity(std::string_view key) { return "check:" + std::string(key); }

std::optional<Plan> check_plan(const Rules& rules, std::string_view policy, std::string_view key,
                               std::int64_t cost) {
  const auto& policies = rules.config->policies;
  const auto it = std::find_if(policies.begin(), policies.end(),
                               [&](const auto& p) { return p.policy.name == policy; });
  if (it == policies.end()) return std::nullopt;
  const auto index = static_cast<std::size_t>(it - policies.begin());
  Plan out;
  out.identities.push_back(check_identity(key));
  out.charge_identity.push_back(0);
  if (it->policy.is_concurrency()) cost = 0;  // a look at the free slots (see plan.h)
  out.charges.push_back(Charge{&it->policy, cost});
  out.local_charges.push_back(Charge{&rules.local_policies[index], cost});
  out.policy_indices.push_back(index);
  return out;
}

}  // namespace fg::decide
