// envoy_descriptors.cc — loading and matching envoyproxy/ratelimit's descriptor files. The load
// errors and the matching order follow upstream's documented behaviour (config_impl.go is the
// reference); the code is floodgate's own.
#include "config/envoy_descriptors.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace fg::config::envoy {
namespace {

// A load error: "<file>: <message>". Carried out of the recursive walk as an exception that never
// leaves this file.
struct LoadError {
  std::string message;
};

[[noreturn]] void refuse(const std::string& file, const std::string& message) {
  throw LoadError{file + ": " + message};
}

nlohmann::json to_json(const YAML::Node& n);

const std::set<std::string, std::less<>>& valid_keys() {
  static const std::set<std::string, std::less<>> keys = {
      "domain", "key", "value", "descriptors", "rate_limit", "unit", "requests_per_unit",
      "unlimited", "shadow_mode", "quota_mode", "name", "replaces", "detailed_metric",
      "value_to_metric", "share_threshold", "metadata",
      // floodgate's, in rate_limit
      "algorithm"};
  return keys;
}

// Upstream checks every key of every map (metadata's contents aside) before decoding, and refuses
// a list of anything but maps.
void validate_keys(const std::string& file, const YAML::Node& map) {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar()) refuse(file, "config error, key is not of type string");
    const std::string key = kv.first.Scalar();
    // A plain number or boolean is not a string key to a YAML decoder that types scalars.
    if (const nlohmann::json typed = to_json(kv.first); !typed.is_string()) {
      refuse(file, "config error, key is not of type string: " + key);
    }
    if (!valid_keys().contains(key)) refuse(file, "config error, unknown key '" + key + "'");
    if (key == "metadata") continue;
    const YAML::Node& v = kv.second;
    if (v.IsSequence()) {
      for (const YAML::Node& e : v) {
        if (!e.IsMap()) {
          refuse(file,
                 "config error, yaml file contains list of type other than map: " + YAML::Dump(e));
        }
        validate_keys(file, e);
      }
    } else if (v.IsMap()) {
      validate_keys(file, v);
    }
  }
}

[[noreturn]] void unmarshal_error(const std::string& file, const YAML::Node& n,
                                  const std::string& what) {
  refuse(file, "error loading config file: yaml: unmarshal errors:\n  line " +
                   std::to_string(n.Mark().line + 1) + ": cannot unmarshal " + what);
}

std::string scalar(const std::string& file, const YAML::Node& n) {
  if (!n || n.IsNull()) return "";
  if (!n.IsScalar()) unmarshal_error(file, n, "a non-scalar into string");
  return n.Scalar();
}

bool boolean(const std::string& file, const YAML::Node& n) {
  if (!n || n.IsNull()) return false;
  bool b = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b)) {
    unmarshal_error(file, n, "!!str `" + n.Scalar() + "` into bool");
  }
  return b;
}

std::uint32_t uint32(const std::string& file, const YAML::Node& n) {
  if (!n || n.IsNull()) return 0;
  const std::string& s = n.IsScalar() ? n.Scalar() : std::string();
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    unmarshal_error(file, n, "!!str `" + s + "` into uint32");
  }
  return v;
}

nlohmann::json to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& kv : n) j[kv.first.Scalar()] = to_json(kv.second);
    return j;
  }
  if (n.IsSequence()) {
    nlohmann::json j = nlohmann::json::array();
    for (const YAML::Node& e : n) j.push_back(to_json(e));
    return j;
  }
  if (!n.IsScalar()) return nullptr;
  // Plain scalars as YAML types them (protobuf Struct numbers are doubles); quoted ones stay text.
  const std::string& s = n.Scalar();
  if (n.Tag() == "?") {
    if (s == "true" || s == "false") return s == "true";
    double d = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return d;
    if (s == "~" || s == "null") return nullptr;
  }
  return s;
}

std::string join(std::span<const std::string> parts, char sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

std::vector<std::string> split_star(const std::string& s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t star = s.find('*', start);
    parts.push_back(s.substr(start, star == std::string::npos ? std::string::npos : star - start));
    if (star == std::string::npos) return parts;
    start = star + 1;
  }
}

// Whether `value` matches a pattern split on '*': its first part a prefix, its last a suffix,
// the middle ones in order between them without overlap.
bool wildcard_match(std::span<const std::string> parts, std::string_view value) {
  if (parts.size() == 1) return parts[0] == value;
  std::size_t fixed = 0;
  for (const std::string& p : parts) fixed += p.size();
  if (value.size() < fixed) return false;
  if (!value.starts_with(parts.front()) || !value.ends_with(parts.back())) return false;
  std::string_view rest =
      value.substr(parts.front().size(), value.size() - parts.front().size() - parts.back().size());
  for (std::size_t i = 1; i + 1 < parts.size(); ++i) {
    const std::size_t at = rest.find(parts[i]);
    if (at == std::string_view::npos) return false;
    rest.remove_prefix(at + parts[i].size());
  }
  return true;
}

Algorithm algorithm_of(Counting counting) {
  switch (counting) {
    case Counting::kTokenBucket:
      return Algorithm::kTokenBucket;
    case Counting::kGcra:
      return Algorithm::kGcra;
    case Counting::kSlidingWindow:
      return Algorithm::kSlidingWindow;
    case Counting::kCounter:
    case Counting::kFixedWindow:
      break;
  }
  return Algorithm::kFixedWindow;
}

}  // namespace

Policy policy_of(const Rule& rule) {
  Policy p;
  p.name = rule.full_key;
  p.algorithm = algorithm_of(rule.counting);
  p.limit = std::clamp<std::int64_t>(rule.requests_per_unit, 1, kMaxCount);
  p.burst = p.limit;
  p.period = std::chrono::seconds(std::max<std::int64_t>(1, unit_seconds(rule.unit)));
  return p;
}

namespace {

void load_descriptors(const std::string& file, Node& parent, const std::string& parent_key,
                      const YAML::Node& list, Counting default_counting) {
  if (!list || list.IsNull()) return;
  if (!list.IsSequence()) unmarshal_error(file, list, "!!map into []config.YamlDescriptor");
  for (const YAML::Node& d : list) {
    const std::string key = scalar(file, d["key"]);
    if (key.empty()) refuse(file, "descriptor has empty key");
    const std::string value = scalar(file, d["value"]);
    const std::string final_key = value.empty() ? key : key + "_" + value;
    const std::string path = parent_key + final_key;
    if (parent.children.contains(final_key)) {
      refuse(file, "duplicate descriptor composite key '" + path + "'");
    }
    auto node = std::make_unique<Node>();
    node->key = key;
    if (const YAML::Node rl = d["rate_limit"]; rl && !rl.IsNull()) {
      if (!rl.IsMap()) unmarshal_error(file, rl, "!!str into config.YamlRateLimit");
      Rule rule;
      rule.unlimited = boolean(file, rl["unlimited"]);
      const std::string unit_text = scalar(file, rl["unit"]);
      const std::optional<Unit> unit = parse_unit(unit_text);
      if (rule.unlimited) {
        if (unit) refuse(file, "should not specify rate limit unit when unlimited");
      } else if (!unit) {
        refuse(file, "invalid rate limit unit '" + unit_text + "'");
      }
      rule.unit = unit.value_or(Unit::kUnknown);
      rule.requests_per_unit = uint32(file, rl["requests_per_unit"]);
      rule.counting = default_counting;
      if (const YAML::Node alg = rl["algorithm"]; alg && !alg.IsNull()) {
        const std::string text = scalar(file, alg);
        const std::optional<Counting> counting = parse_counting(text);
        if (!counting) {
          refuse(file, "invalid rate limit algorithm '" + text +
                           "' (counter, fixed_window, token_bucket, gcra or sliding_window)");
        }
        if (rule.unlimited) refuse(file, "should not specify rate limit algorithm when unlimited");
        rule.counting = *counting;
      }
      // The counter counts any uint32; floodgate's algorithms' integer arithmetic is exact up to
      // kMaxCount (docs/algorithms.md).
      if (!rule.unlimited && rule.counting != Counting::kCounter &&
          rule.requests_per_unit > kMaxCount) {
        refuse(file, "requests_per_unit " + std::to_string(rule.requests_per_unit) +
                         " is above the largest limit of algorithm " +
                         std::string(to_string(rule.counting)) + ", " + std::to_string(kMaxCount));
      }
      rule.name = scalar(file, rl["name"]);
      if (const YAML::Node rep = rl["replaces"]; rep && !rep.IsNull()) {
        if (!rep.IsSequence()) unmarshal_error(file, rep, "!!map into []config.yamlReplaces");
        for (const YAML::Node& r : rep) rule.replaces.push_back(scalar(file, r["name"]));
      }
      for (const std::string& r : rule.replaces) {
        if (r.empty()) refuse(file, "should not have an empty replaces entry");
        if (r == rule.name) refuse(file, "replaces should not contain name of same descriptor");
      }
      rule.shadow_mode = boolean(file, d["shadow_mode"]);
      rule.quota_mode = boolean(file, d["quota_mode"]);
      rule.detailed_metric = boolean(file, d["detailed_metric"]);
      rule.full_key = path;
      if (const YAML::Node md = d["metadata"]; md && md.IsMap() && md.size() > 0) {
        rule.metadata_json = to_json(md).dump();
      }
      rule.policy = policy_of(rule);
      node->rule = std::move(rule);
    }
    node->value_to_metric = boolean(file, d["value_to_metric"]);
    node->share_threshold = boolean(file, d["share_threshold"]);
    const bool wildcard = final_key.find('*') != std::string::npos;
    if (node->share_threshold && !wildcard) {
      refuse(file,
             "share_threshold can only be used with wildcard values (containing '*'), but found "
             "key '" +
                 final_key + "'");
    }
    if (wildcard) parent.wildcards.emplace_back(final_key, split_star(final_key));
    load_descriptors(file, *node, path + ".", d["descriptors"], default_counting);
    parent.children.emplace(final_key, std::move(node));
  }
}

void dump_node(const Node& node, std::string& out) {
  if (node.rule) {
    const Rule& r = *node.rule;
    out += r.full_key + ": unit=" + std::string(to_string(r.unit)) +
           " requests_per_unit=" + std::to_string(r.requests_per_unit) +
           ", shadow_mode: " + (r.shadow_mode ? "true" : "false") +
           ", quota_mode: " + (r.quota_mode ? "true" : "false") +
           (r.counting != Counting::kCounter ? ", algorithm: " + std::string(to_string(r.counting))
                                             : std::string()) +
           "\n";
  }
  for (const auto& [_, child] : node.children) dump_node(*child, out);
}

}  // namespace

std::optional<Counting> parse_counting(std::string_view text) {
  for (Counting c : {Counting::kCounter, Counting::kFixedWindow, Counting::kTokenBucket,
                     Counting::kGcra, Counting::kSlidingWindow}) {
    if (text == to_string(c)) return c;
  }
  return std::nullopt;
}

std::string_view to_string(Counting counting) {
  switch (counting) {
    case Counting::kCounter:
      return "counter";
    case Counting::kFixedWindow:
      return "fixed_window";
    case Counting::kTokenBucket:
      return "token_bucket";
    case Counting::kGcra:
      return "gcra";
    case Counting::kSlidingWindow:
      return "sliding_window";
  }
  return "counter";
}

std::string_view to_string(Unit unit) {
  switch (unit) {
    case Unit::kSecond:
      return "SECOND";
    case Unit::kMinute:
      return "MINUTE";
    case Unit::kHour:
      return "HOUR";
    case Unit::kDay:
      return "DAY";
    case Unit::kWeek:
      return "WEEK";
    case Unit::kMonth:
      return "MONTH";
    case Unit::kYear:
      return "YEAR";
    case Unit::kUnknown:
      break;
  }
  return "UNKNOWN";
}

std::optional<Unit> parse_unit(std::string_view text) {
  std::string upper(text);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  for (Unit u : {Unit::kSecond, Unit::kMinute, Unit::kHour, Unit::kDay, Unit::kWeek, Unit::kMonth,
                 Unit::kYear}) {
    if (upper == to_string(u)) return u;
  }
  return std::nullopt;
}

std::int64_t unit_seconds(Unit unit) {
  constexpr std::int64_t kDay = 24 * 3600;
  switch (unit) {
    case Unit::kSecond:
      return 1;
    case Unit::kMinute:
      return 60;
    case Unit::kHour:
      return 3600;
    case Unit::kDay:
      return kDay;
    case Unit::kWeek:
      return 7 * kDay;
    case Unit::kMonth:
      return 30 * kDay;
    case Unit::kYear:
      return 365 * kDay;
    case Unit::kUnknown:
      break;
  }
  return 0;
}

std::string DescriptorConfig::dump() const {
  std::string out;
  for (const auto& [_, root] : domains) dump_node(root, out);
  return out;
}

Match find_limit(const DescriptorConfig& config, std::string_view domain,
                 std::span<const Entry> entries) {
  Match m;
  const auto it = config.domains.find(domain);
  if (it == config.domains.end() || entries.empty()) return m;
  const Node* level = &it->second;
  std::vector<std::string> detailed{std::string(domain)};
  std::vector<std::string> with_values{std::string(domain)};
  std::vector<std::string> shared(entries.size());
  bool any_shared = false;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto [key, value] = entries[i];
    std::string final_key = std::string(key) + "_" + std::string(value);
    detailed.push_back(final_key);
    const Node* next = nullptr;
    std::string wildcard_key;
    if (auto c = level->children.find(final_key); c != level->children.end()) {
      next = c->second.get();
    } else {
      for (const auto& [pattern, parts] : level->wildcards) {
        if (wildcard_match(parts, final_key)) {
          next = level->children.find(pattern)->second.get();
          wildcard_key = pattern;
          break;
        }
      }
    }
    const bool by_value = next != nullptr;
    if (next == nullptr) {
      if (auto c = level->children.find(key); c != level->children.end()) next = c->second.get();
    }
    // The value this entry shows in a value_to_metric stats key.
    std::string shown;
    if (next != nullptr) {
      const std::string pattern_value =
          wildcard_key.empty() ? "" : wildcard_key.substr(key.size() + 1);
      if (!wildcard_key.empty() && next->share_threshold) {
        shared[i] = pattern_value;
        any_shared = true;
        shown = pattern_value;
      } else if (!wildcard_key.empty()) {
        shown = next->value_to_metric ? std::string(value) : pattern_value;
      } else if (by_value || next->value_to_metric) {
        shown = value;
      }
    }
    with_values.push_back(shown.empty() ? std::string(key) : std::string(key) + "_" + shown);
    if (next != nullptr && next->rule && i + 1 == entries.size()) m.rule = &*next->rule;
    if (next == nullptr || next->children.empty()) break;
    level = next;
  }
  if (m.rule == nullptr) return m;
  if (any_shared) m.shared_values = std::move(shared);
  if (m.rule->detailed_metric) {
    if (any_shared) {
      std::vector<std::string> parts{std::string(domain)};
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto [key, value] = entries[i];
        const std::string v = shared[i].empty() ? std::string(value) : shared[i];
        parts.push_back(v.empty() ? std::string(key) : std::string(key) + "_" + v);
      }
      m.stats_key = join(parts, '.');
    } else {
      m.stats_key = join(detailed, '.');
    }
  } else {
    m.stats_key = join(with_values, '.');
  }
  return m;
}

Result<DescriptorConfig> load_descriptor_config(std::span<const ConfigFile> files,
                                                const LoadOptions& options) {
  DescriptorConfig out;
  try {
    for (const ConfigFile& f : files) {
      YAML::Node root;
      try {
        root = YAML::Load(f.content);
      } catch (const YAML::Exception& e) {
        refuse(f.name, "error loading config file: yaml: line " + std::to_string(e.mark.line + 1) +
                           ": " + e.msg);
      }
      if (!root.IsNull() && !root.IsMap()) {
        refuse(f.name,
               "error loading config file: yaml: unmarshal errors:\n  cannot unmarshal "
               "a non-map into the config");
      }
      if (root.IsMap()) validate_keys(f.name, root);
      const std::string domain = scalar(f.name, root["domain"]);
      if (domain.empty()) refuse(f.name, "config file cannot have empty domain");
      auto [it, fresh] = out.domains.try_emplace(domain);
      if (!fresh && !options.merge_domains) {
        refuse(f.name, "duplicate domain '" + domain + "' in config file");
      }
      load_descriptors(f.name, it->second, domain + ".", root["descriptors"],
                       options.default_counting);
      out.files.push_back(f.name);
    }
  } catch (const LoadError& e) {
    return fail(ErrorCode::kInvalidArgument, e.message);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("error loading config file: ") + e.what());
  }
  return out;
}

Result<std::vector<ConfigFile>> read_runtime_dir(const std::string& dir, std::string_view prefix,
                                                 bool ignore_dot_files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return fail(ErrorCode::kInvalidArgument, dir + ": not a readable directory");
  }
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(
           dir, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const bool dot = it->path().filename().string().starts_with(".");
    if (dot && ignore_dot_files) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec)) paths.push_back(it->path());
  }
  if (ec) return fail(ErrorCode::kInvalidArgument, dir + ": " + ec.message());
  std::sort(paths.begin(), paths.end());
  std::vector<ConfigFile> files;
  for (const fs::path& p : paths) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return fail(ErrorCode::kInvalidArgument, p.string() + ": cannot be read");
    std::ostringstream text;
    text << in.rdbuf();
    fs::path rel = p.lexically_relative(dir);
    rel.replace_extension();
    std::string name = rel.generic_string();
    std::replace(name.begin(), name.end(), '/', '.');
    files.push_back(ConfigFile{std::string(prefix) + name, text.str()});
  }
  return files;
}

std::uint64_t runtime_dir_fingerprint(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a over every entry's name, size and mtime
  const auto mix = [&h](std::string_view bytes) {
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  };
  std::vector<std::string> lines;
  for (auto it = fs::recursive_directory_iterator(
           dir, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    const auto size = it->is_regular_file(e2) ? it->file_size(e2) : 0;
    const auto mtime = fs::last_write_time(it->path(), e2).time_since_epoch().count();
    lines.push_back(it->path().string() + ' ' + std::to_string(size) + ' ' + std::to_string(mtime));
  }
  std::sort(lines.begin(), lines.end());
  for (const std::string& l : lines) mix(l);
  return h == 0 ? 1 : h;
}

}  // namespace fg::config::envoy
