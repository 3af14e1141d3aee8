#include "app/commands.h"

#include <nlohmann/json.hpp>
#include <ostream>
#include <utility>

#include "config/config.h"
#include "floodgate/clock.h"
#include "floodgate/limiter.h"
#include "floodgate/policy.h"
#include "floodgate/store.h"
#include "store/open_store.h"

namespace fg::app {
namespace {

// Decisions carry µs; the JSON carries ms, rounded up so that a client waiting retry_after_ms
// never comes back early (1 µs -> 1 ms).
std::int64_t ceil_ms(Duration d) { return d.count() <= 0 ? 0 : (d.count() + 999) / 1000; }

}  // namespace

int run_validate(const std::string& path, std::ostream& out, std::ostream& err) {
  const std::vector<config::Problem> problems = config::config_file_problems(path);
  if (!problems.empty()) {
    for (const config::Problem& p : problems) err << p.to_string() << '\n';
    return kExitInvalid;
  }
  // No problems means it loads; load it to count the policies.
  auto cfg = config::load_config_file(path);
  if (!cfg) {
    err << cfg.error().message << '\n';
    return kExitInvalid;
  }
  const std::size_t n = cfg->policies.size();
  out << path << ": ok (" << n << (n == 1 ? " policy)" : " policies)") << '\n';
  return kExitOk;
}

int run_check(const CheckArgs& args, std::ostream& out, std::ostream& err) {
  Result<config::Config> cfg =
      args.config_path ? config::load_config_file(*args.config_path) : config::default_config();
  if (!cfg) {
    err << cfg.error().message << '\n';
    return kExitNoDecision;
  }
  config::StoreUrl store_url = cfg->store;
  if (args.store) {
    auto url = config::parse_store_url(*args.store);
    if (!url) {
      err << "--store: " << url.error().message << '\n';
      return kExitNoDecision;
    }
    store_url = std::move(*url);
  }
  if (args.key.empty()) {
    err << "--key: must not be empty\n";
    return kExitNoDecision;
  }
  const config::PolicyConfig* pc = cfg->find_policy(args.policy);
  if (pc == nullptr) {
    std::string known;
    for (const config::PolicyConfig& p : cfg->policies) {
      known += (known.empty() ? "" : ", ") + p.policy.name;
    }
    err << "unknown policy " << config::quote(args.policy) << " in " << cfg->source
        << " (policies: " << known << ")\n";
    return kExitNoDecision;
  }
  const std::int64_t cost = args.cost.value_or(pc->policy.cost);
  if (cost < 0 || cost > kMaxCount) {
    err << "--cost: must be from 0 to " << kMaxCount << '\n';
    return kExitNoDecision;
  }
  OpenStoreOptions store_options;
  store_options.key_prefix = cfg->key_prefix;
  store_options.timeout = cfg->store_timeout;
  auto store = open_store(store_url, store_options, SystemClock::instance());
  if (!store) {
    err << "store " << config::to_string(store_url) << ": " << store.error().to_string() << '\n';
    return kExitNoDecision;
  }
  const Charge charge{&pc->policy, cost};
  const DecideRequest request{args.key, std::span<const Charge>(&charge, 1)};
  Result<Verdict> verdict = decide_and_wait(**store, request);
  if (!verdict) {
    err << "store " << config::to_string(store_url) << ": " << verdict.error().to_string() << '\n';
    return kExitNoDecision;
  }
  const Decision& d = verdict->headline();
  nlohmann::ordered_json j;
  j["allowed"] = verdict->allowed;
  j["policy"] = pc->policy.name;
  j["limit"] = d.limit;
  j["remaining"] = d.remaining;
  j["reset_after_ms"] = ceil_ms(d.reset_after);
  j["retry_after_ms"] = ceil_ms(d.retry_after);
  out << j.dump() << '\n';
  return verdict->allowed ? kExitOk : kExitDenied;
}

}  // namespace fg::app
