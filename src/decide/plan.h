// plan.h — what a request asks of the store: the rules a configuration makes (Rules), the
// transport-free view of one request (Query), and the plan (Plan) of which policies it is charged
// against, per which identity (design §2.4).
//
// Every front door (HTTP, /v1/check, `floodgate check`, the next ones) describes its request as a
// Query or names a policy and a key, gets a Plan here, and hands the Plan to the Decider
// (decider.h). Nothing here knows HTTP framing or sockets: a Query is a method, a canonical path,
// a header lookup and the client's addresses.
//
// Thread safety: pure functions over values; a Rules is immutable once built and shared between
// threads. Failure: plan() answers why no plan can be made (no identity source present).
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "decide/identity.h"
#include "floodgate/limiter.h"
#include "floodgate/store.h"

namespace fg::decide {

class DenyCache;

// A loaded configuration, ready for requests. Built once per (re)load, then shared read-only.
struct Rules {
  std::shared_ptr<const config::Config> config;
  // Per policy, in config order: the policy the per-instance fallback limiter applies
  // (on_store_error: local): limit and burst divided by local_fallback_instances, at least 1.
  std::vector<Policy> local_policies;
  // Per policy: its id in Metrics (Metrics::policy_id); may stay empty (nothing is counted).
  std::vector<std::size_t> metric_ids;
  // The header fields the plan reads (identity sources, policies' `match` headers): doors refuse
  // a request that repeats one (http/canonical.h).
  std::vector<std::string> single_fields;
  // Some policy matches on Host: the doors then gather Query::forwarded_hosts.
  bool matches_host = false;
  // The check API's limit per caller (config check_api_policy), and its local form.
  Policy check_api_policy;
  Policy check_api_local_policy;
  // The denials this configuration's store gave, answered again without it (deny_cache.h); null
  // when `deny_cache` is off. The one mutable part (internally synchronized): a reload starts
  // with an empty one.
  std::shared_ptr<DenyCache> deny_cache;
};

// The Rules for `config`: local policies computed, metric_ids empty.
std::shared_ptr<Rules> make_rules(std::shared_ptr<const config::Config> config);

// One request as the deciding layer sees it, whatever door it came through.
struct Query {
  std::string_view method;  // upper case
  std::string_view path;    // canonical (http/canonical.h)
  HeaderLookup header;      // a field's value, case-insensitively; called only for named fields
  IpAddress peer;           // the transport peer
  std::string_view forwarded_for;  // every X-Forwarded-For value, joined with ','
  // Every host an upstream behind a proxy may act on instead of Host (X-Forwarded-Host,
  // Forwarded's host=), joined with ',' (http/canonical.h: forwarded_hosts). A policy on Host
  // matches a request that names its host there too.
  std::string_view forwarded_hosts;
};

// Which policies a request is charged against, per which identity.
struct Plan {
  // Who the charges are counted per, in the order the store decides them: charges[i] is counted
  // per identities[charge_identity[i]], and the charges of one identity are consecutive. One
  // identity unless policies name their own `identity` sources.
  boost::container::small_vector<std::string, 1> identities;
  boost::container::small_vector<std::uint8_t, 4> charge_identity;
  // Inline storage: most requests match a few policies, and these are built for every request.
  boost::container::small_vector<Charge, 4> charges;        // policies point into the Rules
  boost::container::small_vector<Charge, 4> local_charges;  // into Rules::local_policies
  // Per charge: its policy's index in config->policies; kCheckApiPolicy for the check API's.
  boost::container::small_vector<std::size_t, 4> policy_indices;
  // A concurrency policy takes a slot (a charge with cost > 0): the slots are taken under
  // `lease` (make_lease_id()) and given back by it (decider.h: Slots). Else false and empty.
  bool takes_slots = false;
  std::string lease;
  // A string plan() writes the first identity it finds into, for its capacity: a caller that
  // moves the last request's identity here makes no allocation for the next one's.
  std::string spare;

  bool empty() const { return charges.empty(); }
  // The store requests of this plan over `charges` (this->charges or this->local_charges): one
  // per identity, over its consecutive charges. They point into this plan.
  boost::container::small_vector<DecideRequest, 2> requests(std::span<const Charge> charges) const;
};

inline constexpr std::size_t kCheckApiPolicy = static_cast<std::size_t>(-1);

// Whether `match` holds for a query (method upper case; path canonical). A policy naming GET
// matches HEAD too; a Host value is compared as a host name (no port, no trailing dot, any case);
// a path with or without its trailing '/' is one path ("/login" and "/login/"), and a prefix
// "/admin/" holds for "/admin" too.
bool policy_matches(const config::Match& match, const Query& query);

// The plan for `query`, written into `out` (empty: no policy applies): every policy that
// matches, each counted per its identity; `with_check_api` adds the check API's own policy,
// counted per the caller's address. false, with `missing` set, when an identity source needed is
// absent (the header names: "X-API-Key or X-User").
bool plan(const Rules& rules, const Query& query, bool with_check_api, Plan& out,
          std::string* missing);

// The plan of a /v1/check (or `floodgate check`) call: `policy` charged `cost` for the key's
// identity, check_identity(key). nullopt when no policy has that name. A concurrency policy is
// only looked at (cost 0: its free slots): a caller not behind floodgate never says when its
// request ends, so a slot taken for it could only be freed by its lease.
std::optional<Plan> check_plan(const Rules& rules, std::string_view policy, std::string_view key,
                               std::int64_t cost);

// The name part of a Host value: no port, no trailing dot ("API.example.com.:80" ->
// "API.example.com"); compare it case-insensitively.
std::string_view host_name(std::string_view host);

// The identity a check key is decided for: "check:<key>", a namespace no identity source makes.
std::string check_identity(std::string_view key);

}  // namespace fg::decide
