// envoy_descriptors.h — envoyproxy/ratelimit's configuration files, unchanged, as one more policy
// source beside floodgate.yaml: a descriptor tree per domain, each node a `key` (and optional
// `value`, exact or with `*` wildcards) that may carry a `rate_limit` and nested `descriptors`.
//
// A directory of such files (the runtime directory: RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/
// RUNTIME_APPDIRECTORY, every file under it, recursively) loads into one DescriptorConfig with
// the load errors envoyproxy/ratelimit gives, under the same conditions and with similar words,
// each prefixed by the file's runtime name ("config.basic: duplicate domain 'x' in config file").
// Like upstream, loading stops at the first error.
//
// find_limit() matches one request descriptor (its entries, in order) as upstream does: at each
// level the entry's exact "key_value" first, then the level's wildcard patterns in file order,
// then the bare `key` (a default for any value); the rule is the one of the node the LAST entry
// lands on (a request with more entries than the tree is deep, or one ending above a rule, gets
// none).
//
// Units: a rule's period is the upstream unit in seconds (week 7 days, month 30 days, year 365
// days, as upstream defines them), windows aligned to the Unix epoch.
// Failure: Result errors, kInvalidArgument, one message; nothing throws (yaml-cpp stays inside).
// Thread safety: a DescriptorConfig is immutable once loaded and shared between threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "floodgate/policy.h"
#include "floodgate/result.h"

namespace fg::config::envoy {

// The wire numbers of envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit.
enum class Unit {
  kUnknown = 0,
  kSecond = 1,
  kMinute = 2,
  kHour = 3,
  kDay = 4,
  kMonth = 5,
  kYear = 6,
  kWeek = 7
};

// "SECOND", ... as upstream spells them (its proto enum names).
std::string_view to_string(Unit unit);
// A unit as the files write it, in any case ("minute", "MINUTE"); nullopt for anything else,
// including "unknown".
std::optional<Unit> parse_unit(std::string_view text);
// The unit's length in seconds: 1, 60, 3600, 86400, 604800, 2592000 (30 days), 31536000 (365
// days); 0 for kUnknown.
std::int64_t unit_seconds(Unit unit);

// How a rule is counted. kCounter is envoyproxy/ratelimit's own counting (floodgate/counter.h:
// every hit added, OVER_LIMIT past the limit), the default, for answers identical to upstream's;
// the others are floodgate's algorithms, decided for all the descriptors of a request in one atomic
// all-or-nothing call (docs/envoy.md, "The opt-in"). Chosen per rule by `algorithm:` in its
// `rate_limit` (a key floodgate accepts beyond upstream's), else by FLOODGATE_RLS_ALGORITHM.
enum class Counting { kCounter, kFixedWindow, kTokenBucket, kGcra, kSlidingWindow };

// "counter", "fixed_window", "token_bucket", "gcra", "sliding_window" (exactly so); nullopt for
// anything else.
std::optional<Counting> parse_counting(std::string_view text);
std::string_view to_string(Counting counting);

// One rate_limit of the tree.
struct Rule {
  std::uint32_t requests_per_unit = 0;  // 0 blocks every request
  Unit unit = Unit::kUnknown;           // kUnknown only when unlimited
  bool unlimited = false;               // OK without counting
  std::string name;                     // may be empty
  std::vector<std::string> replaces;    // names of the rules this one replaces in a request
  bool shadow_mode = false;
  bool quota_mode = false;
  bool detailed_metric = false;
  // The node's path, "domain.key_value.key2": upstream's stats key of the rule.
  std::string full_key;
  // `metadata:` as JSON text ("" when none): returned in the dynamic metadata of passed requests.
  std::string metadata_json;
  // How it is counted: its `algorithm:`, else LoadOptions::default_counting.
  Counting counting = Counting::kCounter;
  // The floodgate policy that decides it when `counting` is one of floodgate's algorithms: limit
  // requests_per_unit per unit (burst = limit), named full_key. Meaningless for kCounter, when
  // unlimited or when requests_per_unit is 0.
  Policy policy;
};

// One node of a domain's tree.
struct Node {
  std::map<std::string, std::unique_ptr<Node>, std::less<>> children;  // by "key" or "key_value"
  // The children whose "key_value" holds a '*', in file order, each with its pattern split on
  // '*' (a '*' matches any run of characters, none included).
  std::vector<std::pair<std::string, std::vector<std::string>>> wildcards;
  std::optional<Rule> rule;
  bool value_to_metric = false;
  bool share_threshold = false;  // every value the pattern matches shares one counter
  std::string key;               // the entry key this node matched ("" for a domain root)
};

struct DescriptorConfig {
  std::map<std::string, Node, std::less<>> domains;
  std::vector<std::string> files;  // the runtime names loaded, in load order

  // Every rule, one line each ("domain.key_value: unit=MINUTE requests_per_unit=5, shadow_mode:
  // false, quota_mode: false"), for /rlconfig.
  std::string dump() const;
};

// The floodgate policy of `rule` (Rule::policy): for a rule made at request time (a limit the
// descriptor carries itself).
Policy policy_of(const Rule& rule);

// One request descriptor, matched.
struct Match {
  const Rule* rule = nullptr;  // into the DescriptorConfig
  // The stats key of this request's rule: full_key, or the request's own path under
  // detailed_metric, or with the values value_to_metric asks for.
  std::string stats_key;
  // Per entry: the wildcard pattern to count under instead of the value (share_threshold), or "".
  std::vector<std::string> shared_values;
};

using Entry = std::pair<std::string_view, std::string_view>;  // key, value

// The rule for one descriptor of `domain`; rule null when none applies (unknown domain included).
Match find_limit(const DescriptorConfig& config, std::string_view domain,
                 std::span<const Entry> entries);

// One file to load: its runtime name (the path under the runtime root, '/' as '.', without the
// extension: "config.basic") and its text.
struct ConfigFile {
  std::string name;
  std::string content;
};

struct LoadOptions {
  bool merge_domains = false;  // MERGE_DOMAIN_CONFIG: a domain in several files is one tree
  // FLOODGATE_RLS_ALGORITHM: how the rules without `algorithm:` are counted.
  Counting default_counting = Counting::kCounter;
};

// The files, in order, as one configuration; the first load error otherwise.
Result<DescriptorConfig> load_descriptor_config(std::span<const ConfigFile> files,
                                                const LoadOptions& options);

// The files of a runtime directory: every regular file under `dir`, recursively, in name order,
// named `prefix` + its path with '/' as '.' and no extension (prefix "config." for the app
// directory, as upstream names them); dot files are skipped when `ignore_dot_files`.
// kInvalidArgument when `dir` is not a readable directory.
Result<std::vector<ConfigFile>> read_runtime_dir(const std::string& dir, std::string_view prefix,
                                                 bool ignore_dot_files);

// A fingerprint of the directory's names, sizes and modification times: a reload is due when it
// changes. 0 for a missing directory.
std::uint64_t runtime_dir_fingerprint(const std::string& dir);

}  // namespace fg::config::envoy
