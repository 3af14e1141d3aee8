// service.cc — ShouldRateLimit: match, decide, answer, count. The answer's rules (which
// descriptor's figures the headers show, when quota mode makes the overall code OVER_LIMIT, what
// a shadow rule answers, the near-limit arithmetic) are envoyproxy/ratelimit's documented
// behaviour, reproduced so that Envoy sees the same answers.
#include "rls/service.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "floodgate/counter.h"
#include "util/keyed_hash.h"

namespace fg::rls {

namespace pb = envoy::service::ratelimit::v3;
using config::envoy::Counting;
using config::envoy::Rule;
using config::envoy::Unit;

// One descriptor of a request, as the mapping sees it.
struct Service::Item {
  const Rule* rule = nullptr;  // null: no limit applies
  std::string stats_key;
  bool unlimited = false;
  Counting counting = Counting::kCounter;  // the rule's (resolved at load time)
  std::uint64_t hits = 1;  // hits_addend: the descriptor's own, else the request's (0 -> 1)
  std::string identity;    // upstream's cache key without its window start
  // The decision, when one was asked for.
  bool decided = false;
  bool over = false;
  bool from_local_cache = false;
  std::uint64_t before = 0, after = 0;  // the counter before and after this request's hits
  std::uint32_t remaining = 0;
  // Seconds until the limit resets: the counter's window end (the instance's clock, as
  // upstream), or a floodgate algorithm's reset_after (the store's clock); 0: not known.
  std::int64_t reset_s = 0;
};

class Service::OverLimitCache {
 public:
  // What an entry is counted as: its key's bytes and this for the rest, rounded up: a node of
  // std::unordered_map<std::string, int64_t> is 56 bytes with libstdc++, with malloc's header
  // 64; a key longer than 15 bytes is a heap block of its own, with its header; a bucket slot.
  static constexpr std::size_t kEntryOverhead = 128;

  explicit OverLimitCache(std::size_t max_bytes) : max_bytes_(max_bytes) {
    util::process_hash_key();  // drawn now, at start (keyed_hash.h)
  }

  bool contains(const std::string& key, std::int64_t now_s) const {
    std::lock_guard lock(mu_);
    auto it = until_.find(key);
    return it != until_.end() && it->second > now_s;
  }

  // Remembers `key` until `until_s`, within max_bytes (keys of any length count what they hold).
  // When it would not fit, expired entries go first, looked for at most once a second (a sweep
  // is a pass over every entry); when it still does not fit, the key is not remembered (the store
  // is asked again: slower, never a different answer).
  void insert(const std::string& key, std::int64_t until_s, std::int64_t now_s) {
    std::lock_guard lock(mu_);
    if (auto it = until_.find(key); it != until_.end()) {
      it->second = until_s;
      return;
    }
    const std::size_t cost = key.size() + kEntryOverhead;
    if (used_ + cost > max_bytes_ && now_s != swept_at_s_) {
      swept_at_s_ = now_s;
      for (auto it = until_.begin(); it != until_.end();) {
        if (it->second <= now_s) {
          used_ -= it->first.size() + kEntryOverhead;
          it = until_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (used_ + cost > max_bytes_) return;
    until_.emplace(key, until_s);
    used_ += cost;
  }

  std::size_t used_bytes() const {
    std::lock_guard lock(mu_);
    return used_;
  }

 private:
  const std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::int64_t, util::KeyedHash, std::equal_to<>> until_;
  std::size_t used_ = 0;          // the entries' bytes, as counted by insert()
  std::int64_t swept_at_s_ = -1;  // the second of the last sweep for expired entries
};

namespace {

// upstream's cache key, without the window start: prefix + domain + "_" + key_value_ per entry
// (the wildcard pattern in place of the value where share_threshold asks for it). A counter's
// key is this and its window start (count_descriptors); an opted-in state's policy is named
// after it (decide_opted_in).
std::string identity_of(const std::string& prefix, const std::string& domain,
                        const envoy::extensions::common::ratelimit::v3::RateLimitDescriptor& d,
                        const std::vector<std::string>& shared) {
  std::string id = prefix + domain + "_";
  for (int i = 0; i < d.entries_size(); ++i) {
    const auto& e = d.entries(i);
    const std::size_t at = static_cast<std::size_t>(i);
    id +=
        e.key() + "_" + (at < shared.size() && !shared[at].empty() ? shared[at] : e.value()) + "_";
  }
  return id;
}

// "domain.key_value.key": upstream's stats key of a limit the descriptor carries itself.
std::string override_key(const std::string& domain,
                         const envoy::extensions::common::ratelimit::v3::RateLimitDescriptor& d) {
  std::string key = domain + ".";
  for (int i = 0; i < d.entries_size(); ++i) {
    if (i > 0) key += ".";
    key += d.entries(i).key();
    if (!d.entries(i).value().empty()) key += "_" + d.entries(i).value();
  }
  return key;
}

std::uint32_t duration_until_reset(Unit unit, Timestamp now) {
  const std::int64_t sec = config::envoy::unit_seconds(unit);
  const std::int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return static_cast<std::uint32_t>(sec - now_s % sec);
}

// Upstream's merge of the metadata of the descriptors that passed: a key already present stays,
// unless both are objects, which merge.
void merge_metadata(nlohmann::json& dest, const nlohmann::json& src) {
  if (!src.is_object()) return;
  for (const auto& [k, v] : src.items()) {
    auto it = dest.find(k);
    if (it == dest.end()) {
      dest[k] = v;
    } else if (it->is_object() && v.is_object()) {
      merge_metadata(*it, v);
    }
  }
}

}  // namespace

RuleMetrics::Counters& RuleMetrics::rule(const std::string& stats_key) {
  {
    std::shared_lock lock(mutex_);
    if (auto it = rules_.find(stats_key); it != rules_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  auto& slot = rules_[stats_key];
  if (!slot) slot = std::make_unique<Counters>();
  return *slot;
}

std::string RuleMetrics::prometheus() const {
  std::string out;
  const auto escape = [](const std::string& s) {
    std::string e;
    for (char c : s) {
      if (c == '\\' || c == '"') e += '\\';
      if (c == '\n') {
        e += "\\n";
        continue;
      }
      e += c;
    }
    return e;
  };
  struct Series {
    const char* name;
    std::atomic<std::uint64_t> Counters::*field;
    const char* help;
  };
  static constexpr Series kSeries[] = {
      {"total_hits", &Counters::total_hits, "Hits counted against the rule (hits_addend each)."},
      {"over_limit", &Counters::over_limit, "Hits over the rule's limit."},
      {"near_limit", &Counters::near_limit, "Hits past NEAR_LIMIT_RATIO of the limit."},
      {"within_limit", &Counters::within_limit, "Hits within the limit."},
      {"shadow_mode", &Counters::shadow_mode, "Hits over the limit let through by shadow_mode."},
      {"over_limit_with_local_cache", &Counters::over_limit_with_local_cache,
       "Hits over the limit answered by the local (deny) cache, without the store."},
  };
  std::shared_lock lock(mutex_);
  for (const Series& s : kSeries) {
    const std::string name = std::string("ratelimit_service_rate_limit_") + s.name;
    out += "# HELP " + name + " " + s.help + "\n# TYPE " + name + " counter\n";
    for (const auto& [key, c] : rules_) {
      const std::size_t dot = key.find('.');
      const std::string domain = key.substr(0, dot);
      const std::string rule = dot == std::string::npos ? "" : key.substr(dot + 1);
      out += name + "{domain=\"" + escape(domain) + "\",rule=\"" + escape(rule) + "\"} " +
             std::to_string(((*c).*(s.field)).load(std::memory_order_relaxed)) + "\n";
    }
  }
  const auto plain = [&out](const std::string& name, const char* help, std::uint64_t v,
                            const std::string& labels = "") {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n" + name + labels + " " +
           std::to_string(v) + "\n";
  };
  plain("ratelimit_service_config_load_success", "Configurations loaded.",
        config_load_success.load());
  plain("ratelimit_service_config_load_error", "Configurations refused (the old one stays).",
        config_load_error.load());
  out +=
      "# HELP ratelimit_service_should_rate_limit_error Calls answered with an error.\n"
      "# TYPE ratelimit_service_should_rate_limit_error counter\n"
      "ratelimit_service_should_rate_limit_error{err_type=\"service_error\"} " +
      std::to_string(service_error.load()) +
      "\nratelimit_service_should_rate_limit_error{err_type=\"redis_error\"} " +
      std::to_string(redis_error.load()) + "\n";
  plain("ratelimit_service_global_shadow_mode",
        "Calls over the limit answered OK because of SHADOW_MODE.", global_shadow_mode.load());
  return out;
}

Service::Service(const Settings& settings, decide::Decider& decider, const Clock& clock)
    : settings_(settings), decider_(decider), clock_(clock) {
  // Upstream's freecache of LOCAL_CACHE_SIZE_IN_BYTES: the same number of bytes, each entry
  // counted as its key and its node (OverLimitCache::kEntryOverhead).
  if (settings_.local_cache_size_in_bytes > 0) {
    over_limit_cache_ = std::make_unique<OverLimitCache>(
        static_cast<std::size_t>(settings_.local_cache_size_in_bytes));
  }
}

Service::~Service() = default;

std::size_t Service::local_cache_bytes() const {
  return over_limit_cache_ ? over_limit_cache_->used_bytes() : 0;
}

// One ShouldRateLimit in progress: what it asked, what it matched, what the stores answered. Held
// by the callbacks of its store calls, so it lives until the answer.
struct Service::Call {
  Call(const pb::RateLimitRequest& req, pb::RateLimitResponse& res, Done d)
      : request(req), response(res), done(std::move(d)) {}
  const pb::RateLimitRequest& request;
  pb::RateLimitResponse& response;
  Done done;
  std::shared_ptr<const Snapshot> snap;
  Timestamp now{};
  std::vector<Item> items;
  std::vector<std::unique_ptr<Rule>> own_rules;  // limits the descriptors carry themselves
  // The opted-in descriptors: their Plan and the policies it points to.
  std::vector<std::size_t> opted;
  std::vector<Policy> policies;
  decide::Plan plan;
  // The counters: the items counted, their keys (window included), upstream's view of them.
  std::vector<std::size_t> asked;
  std::vector<std::string> keys;
  std::vector<counter::Pending> pending;
  std::vector<CountRequest> requests;  // the last store call's
  std::vector<std::size_t> requested;  // which of `asked` each of `requests` is
  std::int64_t now_s = 0;
};

void Service::should_rate_limit_async(const pb::RateLimitRequest& request,
                                      pb::RateLimitResponse& response, Done done) {
  auto call = std::make_shared<Call>(request, response, std::move(done));
  if (auto matched = match(*call); !matched) {
    Done d = std::move(call->done);
    d(std::move(matched));
    return;
  }
  decide_descriptors(std::move(call));
}

Result<void> Service::should_rate_limit(const pb::RateLimitRequest& request,
                                        pb::RateLimitResponse& response) {
  std::promise<Result<void>> promise;
  auto answered = promise.get_future();
  should_rate_limit_async(request, response,
                          [&promise](Result<void> r) { promise.set_value(std::move(r)); });
  return answered.get();
}

// THE counting choice of this door: counter rules (the default) are counted as upstream counts
// them; opted-in rules are decided together by the Decider, one Plan for the request; the
// opted-in first, then the counters, then the answer. Each step continues from its store's
// callback, on whichever thread that runs (the store's I/O thread for Redis), so no thread waits.
void Service::decide_descriptors(std::shared_ptr<Call> call) {
  Call& c = *call;
  for (std::size_t i = 0; i < c.items.size(); ++i) {
    Item& it = c.items[i];
    if (it.rule == nullptr || it.unlimited || it.counting == Counting::kCounter) continue;
    if (it.rule->requests_per_unit == 0) {  // blocks without a state: the limit is never open
      it.decided = true;
      it.over = true;
      it.before = 0;
      it.after = it.hits;
      continue;
    }
    Policy p = it.rule->policy;
    p.shadow = it.rule->shadow_mode;
    // The algorithm in the name: a rule that changes algorithm on a reload starts afresh rather
    // than reading another algorithm's state.
    p.name = it.identity + "@" + std::string(config::envoy::to_string(it.counting));
    c.policies.push_back(std::move(p));
    c.opted.push_back(i);
  }
  if (c.opted.empty()) {
    count_descriptors(std::move(call));
    return;
  }
  // One identity (the prefix and the domain: every state of a request shares a hash slot), one
  // charge per descriptor under a policy named after the descriptor's counter, so that one atomic
  // store call decides them all, all or nothing, on the store's clock (Redis TIME).
  c.plan.identities.push_back(settings_.cache_key_prefix + c.request.domain());
  for (std::size_t k = 0; k < c.opted.size(); ++k) {
    const Charge charge{&c.policies[k], static_cast<std::int64_t>(std::min<std::uint64_t>(
                                            c.items[c.opted[k]].hits, kMaxCount))};
    c.plan.charge_identity.push_back(0);
    c.plan.charges.push_back(charge);
    c.plan.local_charges.push_back(charge);
    c.plan.policy_indices.push_back(decide::kCheckApiPolicy);  // counted in RuleMetrics instead
  }
  const decide::Rules& rules = *c.snap->rules;
  const decide::Plan& plan = c.plan;
  decider_.decide(rules, plan, nullptr, [this, call = std::move(call)](decide::Outcome o) mutable {
    if (auto applied = apply_opted_in(*call, o); !applied) {
      Done d = std::move(call->done);
      d(std::move(applied));
      return;
    }
    count_descriptors(std::move(call));
  });
}

Result<void> Service::apply_opted_in(Call& c, const decide::Outcome& o) {
  if (o.degraded != decide::Degraded::kNo) {
    metrics_.redis_error.fetch_add(1, std::memory_order_relaxed);
    if (settings_.on_store_error == Settings::OnStoreError::kError) {
      return fail(ErrorCode::kUnavailable,
                  "could not decide: " +
                      (o.verdict ? std::string("store unavailable") : o.verdict.error().message));
    }
  }
  const Verdict* v = o.counting();
  for (std::size_t k = 0; k < c.opted.size(); ++k) {
    Item& it = c.items[c.opted[k]];
    const std::uint64_t limit = it.rule->requests_per_unit;
    it.decided = true;
    // The deny cache answers for the request; a descriptor is its answer only where its own
    // decision denied.
    it.from_local_cache =
        o.from_deny_cache && (v == nullptr || k >= v->decisions.size() || !v->decisions[k].allowed);
    if (v != nullptr && k < v->decisions.size()) {
      const Decision& d = v->decisions[k];
      const auto remaining = static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.remaining));
      it.over = !d.allowed;
      it.reset_s = std::max<std::int64_t>(
          1,
          (std::chrono::duration_cast<std::chrono::microseconds>(d.reset_after).count() + 999'999) /
              1'000'000);
      if (d.allowed && v->allowed) {
        it.after = limit - std::min(limit, remaining);
        it.before = it.after >= it.hits ? it.after - it.hits : 0;
        it.remaining = static_cast<std::uint32_t>(remaining);
      } else if (d.allowed) {  // within its own limit, but another descriptor denied: all or
                               // nothing, so nothing was counted
        it.before = limit - std::min(limit, remaining + it.hits);
        it.after = it.before + it.hits;
        it.remaining = static_cast<std::uint32_t>(remaining);
      } else {  // nothing was counted: the state stands where it was
        it.before = limit - std::min(limit, remaining);
        it.after = it.before + it.hits;
      }
    } else {  // no verdict: on_store_error answered (allow: OK with nothing left; else over)
      it.over = !o.served();
      it.before = 0;
      it.after = it.over ? limit + it.hits : 0;
    }
  }
  return {};
}

// Upstream's DoLimit over Store::count: the local cache first, then (with
// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT) a look at every counter, then the counting, each
// descriptor under its own key (prefix + domain + entries + window start), then the answers.
void Service::count_descriptors(std::shared_ptr<Call> call) {
  Call& c = *call;
  c.now_s = std::chrono::duration_cast<std::chrono::seconds>(c.now.time_since_epoch()).count();
  for (std::size_t i = 0; i < c.items.size(); ++i) {
    Item& it = c.items[i];
    if (it.rule == nullptr || it.unlimited || it.counting != Counting::kCounter) continue;
    const std::int64_t unit_s = config::envoy::unit_seconds(it.rule->unit);
    c.asked.push_back(i);
    c.keys.push_back(it.identity + std::to_string(counter::window_start(c.now_s, unit_s)));
    it.reset_s = counter::until_reset(c.now_s, unit_s);
    counter::Pending p;
    p.counted = true;
    p.hits = it.hits;
    p.limit = it.rule->requests_per_unit;
    p.cached_over = over_limit_cache_ && over_limit_cache_->contains(c.keys.back(), c.now_s);
    c.pending.push_back(p);
  }
  if (c.asked.empty()) {
    answer(std::move(call));
    return;
  }
  bool any_cached = false;
  for (const counter::Pending& p : c.pending) any_cached = any_cached || p.cached_over;
  const bool stop = settings_.stop_cache_key_increment_when_overlimit;
  if (!stop || any_cached) {
    const auto hits = counter::hits_to_add(c.pending, stop);
    count_then(std::move(call), hits,
               [this](std::shared_ptr<Call> then, Result<std::vector<std::int64_t>> after) {
                 counted(std::move(then), std::move(after));
               });
    return;
  }
  // A look at every counter first: which would pass their limit decides who is counted.
  count_then(std::move(call), std::vector<std::uint64_t>(c.asked.size(), 0),
             [this](std::shared_ptr<Call> then, Result<std::vector<std::int64_t>> current) {
               looked(std::move(then), std::move(current));
             });
}

void Service::looked(std::shared_ptr<Call> call, Result<std::vector<std::int64_t>> current) {
  if (!current) {
    counted(std::move(call), std::move(current));
    return;
  }
  Call& c = *call;
  for (std::size_t k = 0; k < c.asked.size(); ++k) {
    c.pending[k].current = static_cast<std::uint64_t>((*current)[k]);
  }
  const auto hits = counter::hits_to_add(c.pending, true);
  count_then(std::move(call), hits,
             [this](std::shared_ptr<Call> then, Result<std::vector<std::int64_t>> after) {
               counted(std::move(then), std::move(after));
             });
}

// One store call adding `hits` to each counter (those the local cache answered are left out),
// guarded by the breaker; `next` gets the values per counted item, or the error.
void Service::count_then(std::shared_ptr<Call> call, const std::vector<std::uint64_t>& hits,
                         Counted next) {
  Call& c = *call;
  c.requests.clear();
  c.requested.clear();
  for (std::size_t k = 0; k < c.asked.size(); ++k) {
    if (c.pending[k].cached_over) continue;
    const auto unit_s = config::envoy::unit_seconds(c.items[c.asked[k]].rule->unit);
    c.requests.push_back(CountRequest{c.keys[k],
                                      static_cast<std::int64_t>(std::min<std::uint64_t>(
                                          hits[k], std::numeric_limits<std::uint32_t>::max())),
                                      std::chrono::seconds(unit_s)});
    c.requested.push_back(k);
  }
  if (c.requests.empty()) {
    next(std::move(call), std::vector<std::int64_t>(c.asked.size(), 0));
    return;
  }
  if (!counter_breaker_.allow(clock_.now())) {
    next(std::move(call), fail(ErrorCode::kUnavailable, "circuit open: the store keeps failing"));
    return;
  }
  const std::span<const CountRequest> requests = c.requests;
  decider_.store().count(requests, [this, call = std::move(call), next = std::move(next)](
                                       Result<std::vector<std::int64_t>> got) mutable {
    if (!got) {
      if (got.error().code != ErrorCode::kInvalidArgument)
        counter_breaker_.on_failure(clock_.now());
      next(std::move(call), tl::unexpected(std::move(got.error())));
      return;
    }
    counter_breaker_.on_success();
    std::vector<std::int64_t> values(call->asked.size(), 0);
    for (std::size_t j = 0; j < call->requested.size(); ++j) values[call->requested[j]] = (*got)[j];
    next(std::move(call), std::move(values));
  });
}

void Service::counted(std::shared_ptr<Call> call, Result<std::vector<std::int64_t>> after) {
  Call& c = *call;
  if (!after) {
    // The store could not count: FLOODGATE_RLS_ON_STORE_ERROR answers (allow: OK with nothing
    // known left; deny: OVER_LIMIT), or the call fails as upstream's does.
    metrics_.redis_error.fetch_add(1, std::memory_order_relaxed);
    if (settings_.on_store_error == Settings::OnStoreError::kError) {
      Done d = std::move(c.done);
      d(fail(ErrorCode::kUnavailable, "could not count: " + after.error().message));
      return;
    }
    const bool deny = settings_.on_store_error == Settings::OnStoreError::kDeny;
    for (std::size_t k = 0; k < c.asked.size(); ++k) {
      Item& it = c.items[c.asked[k]];
      it.decided = true;
      it.from_local_cache = c.pending[k].cached_over;
      it.over = deny || c.pending[k].cached_over;
      it.before = 0;
      it.after = it.over ? it.rule->requests_per_unit + it.hits : 0;
    }
    answer(std::move(call));
    return;
  }
  for (std::size_t k = 0; k < c.asked.size(); ++k) {
    Item& it = c.items[c.asked[k]];
    it.decided = true;
    if (c.pending[k].cached_over) {
      it.from_local_cache = true;
      it.over = true;
      continue;
    }
    const counter::Counted r = counter::judge(static_cast<std::uint64_t>((*after)[k]), it.hits,
                                              it.rule->requests_per_unit);
    it.before = r.before;
    it.after = r.after;
    it.over = r.over;
    it.remaining = r.remaining;
    if (r.over && over_limit_cache_) {
      // Upstream keeps an over-limit key for a whole unit from now; its name holds its window,
      // so the entry is never consulted after the window ends.
      over_limit_cache_->insert(c.keys[k], c.now_s + config::envoy::unit_seconds(it.rule->unit),
                                c.now_s);
    }
  }
  answer(std::move(call));
}

// Checks the request as upstream does and matches its descriptors into c.items.
Result<void> Service::match(Call& c) {
  const pb::RateLimitRequest& request = c.request;
  const auto refuse = [this](std::string why) {
    metrics_.service_error.fetch_add(1, std::memory_order_relaxed);
    return fail(ErrorCode::kInvalidArgument, std::move(why));
  };
  if (request.domain().empty()) return refuse("rate limit domain must not be empty");
  if (request.descriptors_size() == 0) {
    return refuse("rate limit descriptor list must not be empty");
  }
  c.snap = config();
  const std::shared_ptr<const Snapshot>& snap = c.snap;
  if (!snap) return refuse("no rate limit configuration loaded");
  c.now = clock_.now();

  // Match every descriptor; a limit the descriptor carries itself stands in for the tree's.
  const std::size_t n = static_cast<std::size_t>(request.descriptors_size());
  std::vector<Item>& items = c.items;
  items.resize(n);
  std::vector<std::unique_ptr<Rule>>& own_rules = c.own_rules;
  std::set<std::string, std::less<>> replacing;
  std::vector<config::envoy::Entry> entries;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& d = request.descriptors(static_cast<int>(i));
    Item& it = items[i];
    it.hits = d.has_hits_addend() ? d.hits_addend().value()
                                  : std::max<std::uint64_t>(1, request.hits_addend());
    std::vector<std::string> shared;
    if (d.has_limit()) {
      auto rule = std::make_unique<Rule>();
      rule->requests_per_unit = d.limit().requests_per_unit();
      rule->unit = static_cast<Unit>(d.limit().unit());
      if (config::envoy::unit_seconds(rule->unit) == 0) rule->unit = Unit::kSecond;
      rule->full_key = override_key(request.domain(), d);
      rule->counting = settings_.default_counting;
      rule->policy = config::envoy::policy_of(*rule);
      it.rule = rule.get();
      it.stats_key = rule->full_key;
      own_rules.push_back(std::move(rule));
    } else {
      entries.clear();
      for (const auto& e : d.entries()) entries.emplace_back(e.key(), e.value());
      config::envoy::Match m = config::envoy::find_limit(snap->tree, request.domain(), entries);
      it.rule = m.rule;
      it.stats_key = std::move(m.stats_key);
      shared = std::move(m.shared_values);
    }
    if (it.rule == nullptr) continue;
    for (const std::string& r : it.rule->replaces) replacing.insert(r);
    it.unlimited = it.rule->unlimited;
    it.counting = it.rule->counting;
    if (!it.unlimited) {
      it.identity = identity_of(settings_.cache_key_prefix, request.domain(), d, shared);
    }
  }
  for (Item& it : items) {
    if (it.rule != nullptr && !it.unlimited && !it.rule->name.empty() &&
        replacing.contains(it.rule->name)) {
      it.rule = nullptr;
    }
  }
  for (Item& it : items) {
    if (it.rule != nullptr && !it.unlimited) {
      metrics_.rule(it.stats_key).total_hits.fetch_add(it.hits, std::memory_order_relaxed);
    }
  }
  return {};
}

// The answer, descriptor by descriptor, with upstream's counters; then the call is done.
void Service::answer(std::shared_ptr<Call> call) {
  const pb::RateLimitRequest& request = call->request;
  pb::RateLimitResponse& response = call->response;
  std::vector<Item>& items = call->items;
  const std::size_t n = items.size();
  const Timestamp now = call->now;
  const auto near_threshold = [this](std::uint64_t limit) {
    return static_cast<std::uint64_t>(
        std::floor(static_cast<double>(static_cast<float>(limit) * settings_.near_limit_ratio)));
  };
  std::uint32_t min_remaining = std::numeric_limits<std::uint32_t>::max();
  const pb::RateLimitResponse::DescriptorStatus* headline = nullptr;
  std::vector<std::size_t> passed;
  int failed_rate_limit = 0, failed_quota = 0, total_quota = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Item& it = items[i];
    pb::RateLimitResponse::DescriptorStatus* st = response.add_statuses();
    if (it.unlimited) {
      st->set_code(pb::RateLimitResponse::OK);
      st->set_limit_remaining(std::numeric_limits<std::uint32_t>::max());
      passed.push_back(i);
      continue;
    }
    if (it.rule == nullptr) {
      st->set_code(pb::RateLimitResponse::OK);
      passed.push_back(i);
      continue;
    }
    const Rule& rule = *it.rule;
    RuleMetrics::Counters& c = metrics_.rule(it.stats_key);
    auto* limit = st->mutable_current_limit();
    limit->set_requests_per_unit(rule.requests_per_unit);
    limit->set_unit(static_cast<pb::RateLimitResponse::RateLimit::Unit>(rule.unit));
    limit->set_name(rule.name);
    st->mutable_duration_until_reset()->set_seconds(
        it.reset_s > 0 ? it.reset_s : duration_until_reset(rule.unit, now));
    const std::uint64_t over_at = rule.requests_per_unit;
    const std::uint64_t near_at = near_threshold(over_at);
    if (it.from_local_cache) {
      st->set_code(pb::RateLimitResponse::OVER_LIMIT);
      c.over_limit.fetch_add(it.hits);
      c.over_limit_with_local_cache.fetch_add(it.hits);
    } else if (it.over) {
      st->set_code(pb::RateLimitResponse::OVER_LIMIT);
      if (it.before >= over_at) {
        c.over_limit.fetch_add(it.hits);
      } else {
        c.over_limit.fetch_add(it.after - over_at);
        c.near_limit.fetch_add(over_at - std::max(near_at, it.before));
      }
    } else {
      st->set_code(pb::RateLimitResponse::OK);
      st->set_limit_remaining(it.remaining);
      if (it.after > near_at)
        c.near_limit.fetch_add(it.before >= near_at ? it.hits : it.after - near_at);
      c.within_limit.fetch_add(it.hits);
    }
    if (it.over && rule.shadow_mode) {
      st->set_code(pb::RateLimitResponse::OK);
      c.shadow_mode.fetch_add(it.from_local_cache || it.before >= over_at ? it.hits
                                                                          : it.after - over_at);
    }
    if (settings_.response_headers_enabled && st->limit_remaining() < min_remaining) {
      headline = st;
      min_remaining = st->limit_remaining();
    }
    const bool quota = settings_.global_quota_mode || rule.quota_mode;
    if (st->code() == pb::RateLimitResponse::OVER_LIMIT) {
      if (quota) {
        ++failed_quota;
      } else {
        ++failed_rate_limit;
        headline = st;
        min_remaining = 0;
      }
    } else {
      passed.push_back(i);
    }
    if (quota) ++total_quota;
  }

  auto code = pb::RateLimitResponse::OK;
  if (failed_rate_limit > 0 || (total_quota > 0 && total_quota == failed_quota)) {
    code = pb::RateLimitResponse::OVER_LIMIT;
  }
  if (settings_.response_headers_enabled && headline != nullptr) {
    const auto add = [&response](const std::string& key, std::uint64_t value) {
      auto* h = response.add_response_headers_to_add();
      h->set_key(key);
      h->set_value(std::to_string(value));
    };
    add(settings_.header_limit, headline->current_limit().requests_per_unit());
    add(settings_.header_remaining, headline->limit_remaining());
    add(settings_.header_reset,
        static_cast<std::uint64_t>(headline->duration_until_reset().seconds()));
  }
  if (code == pb::RateLimitResponse::OVER_LIMIT && settings_.global_shadow_mode) {
    code = pb::RateLimitResponse::OK;
    metrics_.global_shadow_mode.fetch_add(1, std::memory_order_relaxed);
  }
  if (settings_.response_dynamic_metadata) {
    // Built as JSON (the rules' metadata is JSON already, and upstream's merge is simplest
    // there), converted to the Struct once by protobuf's own parser.
    nlohmann::json md = {{"domain", request.domain()}, {"descriptors", nlohmann::json::array()}};
    for (const auto& d : request.descriptors()) {
      nlohmann::json dj = {{"entries", nlohmann::json::array()}};
      for (const auto& e : d.entries()) dj["entries"].push_back(e.key() + "=" + e.value());
      if (d.has_limit()) dj["limit"] = d.limit().ShortDebugString();
      if (d.has_hits_addend()) dj["hitsAddend"] = static_cast<double>(d.hits_addend().value());
      md["descriptors"].push_back(std::move(dj));
    }
    if (request.hits_addend() != 0) md["hitsAddend"] = static_cast<double>(request.hits_addend());
    nlohmann::json merged = nlohmann::json::object();
    for (std::size_t i : passed) {
      if (items[i].rule == nullptr || items[i].rule->metadata_json.empty()) continue;
      merge_metadata(merged, nlohmann::json::parse(items[i].rule->metadata_json, nullptr, false));
    }
    if (!merged.empty()) md["metadata"] = std::move(merged);
    (void)google::protobuf::util::JsonStringToMessage(md.dump(),
                                                      response.mutable_dynamic_metadata());
  }
  response.set_overall_code(code);
  Done d = std::move(call->done);
  d({});
}

void Service::set_config(std::shared_ptr<const Snapshot> snapshot) {
  std::lock_guard lock(config_mutex_);
  config_ = std::move(snapshot);
}

std::shared_ptr<const Snapshot> Service::config() const {
  std::lock_guard lock(config_mutex_);
  return config_;
}

Result<std::shared_ptr<const Snapshot>> load_snapshot(const Settings& settings) {
  auto files = config::envoy::read_runtime_dir(settings.config_dir(), settings.file_prefix(),
                                               settings.runtime_ignore_dot_files);
  if (!files) return tl::unexpected(files.error());
  auto tree = config::envoy::load_descriptor_config(
      *files, config::envoy::LoadOptions{.merge_domains = settings.merge_domain_config,
                                         .default_counting = settings.default_counting});
  if (!tree) return tl::unexpected(tree.error());
  auto snap = std::make_shared<Snapshot>();
  snap->tree = std::move(*tree);
  config::Config cfg = config::default_config();
  cfg.source = settings.config_dir();
  // LOCAL_CACHE_SIZE_IN_BYTES: upstream's local cache of over-limit keys is floodgate's deny
  // cache, sized in entries (~256 bytes each, docs/operations.md measures them).
  cfg.deny_cache.enabled = settings.local_cache_size_in_bytes > 0;
  // FLOODGATE_RLS_ON_STORE_ERROR for the opted-in rules (`error` is answered as deny by the
  // Decider, then turned into the call's error by the service).
  cfg.on_store_error = settings.on_store_error == Settings::OnStoreError::kAllow
                           ? config::OnStoreError::kAllow
                           : config::OnStoreError::kDeny;
  cfg.deny_cache.max_entries =
      static_cast<std::size_t>(std::max<std::int64_t>(1, settings.local_cache_size_in_bytes / 256));
  snap->rules = decide::make_rules(std::make_shared<const config::Config>(std::move(cfg)));
  return std::shared_ptr<const Snapshot>(std::move(snap));
}

}  // namespace fg::rls
