// The YAML adapter: the only code that sees yaml-cpp. It walks the document against the schema
// of design §2.2 and records every problem instead of stopping at the first, so one run of
// `floodgate validate` shows everything to fix. yaml-cpp throws (syntax errors, too deep
// nesting); those exceptions are caught here and become problems.
#include "config/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>
#include <variant>

#include "util/text.h"

namespace fg::config {

std::string_view to_string(OnStoreError e) {
  switch (e) {
    case OnStoreError::kAllow:
      return "allow";
    case OnStoreError::kDeny:
      return "deny";
    case OnStoreError::kLocal:
      return "local";
  }
  return "unknown";
}

std::string_view to_string(RateLimitStandard s) {
  switch (s) {
    case RateLimitStandard::kDraft8:
      return "draft-8";
    case RateLimitStandard::kDraft7:
      return "draft-7";
    case RateLimitStandard::kDraft6:
      return "draft-6";
    case RateLimitStandard::kNone:
      return "none";
  }
  return "unknown";
}

std::optional<RateLimitStandard> parse_rate_limit_standard(std::string_view s) {
  for (RateLimitStandard r : {RateLimitStandard::kDraft8, RateLimitStandard::kDraft7,
                              RateLimitStandard::kDraft6, RateLimitStandard::kNone}) {
    if (s == to_string(r)) return r;
  }
  return std::nullopt;
}

HeaderStyle header_style(const Config& config, bool admin_listener, std::size_t policy_index) {
  HeaderStyle style = config.rate_limit_headers;
  if (admin_listener) style = config.admin_rate_limit_headers.over(style);
  if (policy_index < config.policies.size()) {
    style = config.policies[policy_index].rate_limit_headers.over(style);
  }
  return style;
}

std::vector<std::string> default_access_log_redact() {
  return {"api_key",
          "apikey",
          "key",
          "token",
          "access_token",
          "refresh_token",
          "id_token",
          "private_token",
          "auth",
          "authorization",
          "bearer",
          "jwt",
          "signature",
          "sig",
          "password",
          "passwd",
          "pwd",
          "secret",
          "client_secret",
          "session",
          "code",
          "credential",
          "x_amz_signature",
          "x_amz_credential",
          "x_amz_security_token",
          "x_goog_signature",
          "x_goog_credential"};
}

Policy default_check_api_policy() {
  Policy p;
  p.name = "floodgate/check-api";
  p.algorithm = Algorithm::kTokenBucket;
  p.limit = 600;
  p.burst = 600;
  p.period = std::chrono::minutes(1);
  p.cost = 1;
  return p;
}

namespace {

// Whether a policy's path is written as the server compares paths (http/canonical.h): '/', then
// segments of unreserved characters, sub-delimiters but ';', ':' and '@', none empty, "." or "..".
// Anything else could never match a request, or would match a different one than it reads.
bool is_canonical_match_path(std::string_view p, bool prefix) {
  if (p.empty() || p.front() != '/') return false;
  std::size_t start = 1;
  while (start <= p.size()) {
    const std::size_t slash = std::min(p.find('/', start), p.size());
    const std::string_view seg = p.substr(start, slash - start);
    const bool last = slash == p.size();
    if (seg == "." || seg == "..") return false;
    if (seg.empty() && !last) return false;
    // A prefix may end inside a segment ("/api" matches "/api/x" and "/apis"); "/api/." may not.
    (void)prefix;
    for (char ch : seg) {
      const bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') ||
                      std::string_view("-._~!$&'()*+,=:@").find(ch) != std::string_view::npos;
      if (!ok) return false;
    }
    start = slash + 1;
  }
  return true;
}

}  // namespace

const PolicyConfig* Config::find_policy(std::string_view name) const {
  for (const PolicyConfig& p : policies) {
    if (p.policy.name == name) return &p;
  }
  return nullptr;
}

std::string Problem::to_string() const {
  std::string out = source;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

namespace {

using Node = YAML::Node;

// RFC 9110 token: what header names and methods are made of.
bool is_token(std::string_view s) {
  return !s.empty() && s.size() <= 256 && std::all_of(s.begin(), s.end(), util::is_tchar);
}
// Policy names and key prefixes go into Redis keys and response headers.
bool is_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNameLength && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}
bool has_control_char(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && u != '\t') || u == 0x7f;
  });
}

// Levenshtein distance, for "did you mean". Field names are short, so O(n*m) is nothing.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string describe(const Node& n) {
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "empty";
  return quote(n.Scalar());
}

// A plain scalar (`100`) rather than a quoted one (`"100"`): numbers and booleans must be plain.
bool is_plain(const Node& n) {
  return n.Tag() == "?" || n.Tag() == "tag:yaml.org,2002:int" ||
         n.Tag() == "tag:yaml.org,2002:bool";
}

// Records where each document starts; ignores everything else.
class DocumentCounter final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;

  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The mapping of one object in the file, with its keys checked against the schema.
struct Fields {
  struct Entry {
    std::string key;
    Node key_node;
    Node value;
  };
  std::string path;
  int line = 0;
  std::vector<Entry> entries;

  const Entry* find(std::string_view key) const {
    for (const Entry& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  std::string child(std::string_view key) const {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
};

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  std::optional<Config> parse(std::string_view text) {
    Node doc;
    try {
      // Count the documents first, on parser events only. YAML::LoadAll is not used: on a stray
      // ',' at the top level yaml-cpp returns an empty document without consuming the token, so
      // LoadAll loops until memory runs out (a one-byte file "," does it).
      std::istringstream in{std::string(text)};
      YAML::Parser parser(in);
      DocumentCounter counter;
      while (counter.starts.size() < 2 && parser.HandleNextDocument(counter)) {
      }
      if (counter.starts.size() == 2) {
        const YAML::Mark& first = counter.starts[0];
        const YAML::Mark& second = counter.starts[1];
        const auto at = static_cast<std::size_t>(second.pos);
        if (second.pos == first.pos || (at < text.size() && text[at] == ',')) {
          add(second.line + 1, "", "invalid YAML: unexpected \",\"");
        } else {
          add(second.line + 1, "", "only one YAML document is allowed (remove the `---`)");
        }
        return std::nullopt;
      }
      doc = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      add(e.mark.line + 1, "", "invalid YAML: " + e.msg);
      return std::nullopt;
    } catch (const std::exception& e) {
      add(0, "", std::string("cannot parse YAML: ") + e.what());
      return std::nullopt;
    }
    try {
      return parse_document(doc);
    } catch (const std::exception& e) {
      // Accessors are used only after checking the node's type, so this is not expected; keep
      // the promise that nothing escapes anyway.
      add(0, "", std::string("internal error while reading the config: ") + e.what());
      return std::nullopt;
    }
  }

  void add(int line, std::string path, std::string message) {
    if (problems_.size() > kMaxProblems) return;
    if (problems_.size() == kMaxProblems) {
      problems_.push_back(Problem{
          source_, 0, "", "too many problems; stopped after " + std::to_string(kMaxProblems)});
      return;
    }
    problems_.push_back(Problem{source_, line, std::move(path), std::move(message)});
  }

  // The problems in the order of the file (the walk visits fields in schema order, so a
  // missing field can be reported before a later line); the "too many" note stays last.
  std::vector<Problem> take_problems() {
    const auto end = problems_.size() > kMaxProblems ? problems_.end() - 1 : problems_.end();
    std::stable_sort(problems_.begin(), end,
                     [](const Problem& a, const Problem& b) { return a.line < b.line; });
    return std::move(problems_);
  }

 private:
  // The 1-based line of `n`. An empty value (`limit:`) is placed at its key, `fallback`: yaml-cpp
  // marks it where the next token starts, often the next line.
  static int line_of(const Node& n, int fallback) {
    const YAML::Mark m = n.Mark();
    if (m.is_null() || m.line < 0 || (n.IsNull() && fallback > 0)) return fallback;
    return m.line + 1;
  }

  // Checks that `n` is a mapping whose keys are all in `known`, each at most once. Unknown and
  // duplicate keys are problems; the known ones are returned.
  std::optional<Fields> fields(const Node& n, const std::string& path, int fallback_line,
                               std::initializer_list<std::string_view> known,
                               std::string_view expected = "a mapping") {
    const int line = line_of(n, fallback_line);
    if (!n.IsMap()) {
      add(line, path, "must be " + std::string(expected) + ", not " + describe(n));
      return std::nullopt;
    }
    Fields f{path, line, {}};
    for (const auto& kv : n) {
      const int key_line = line_of(kv.first, line);
      if (!kv.first.IsScalar()) {
        add(key_line, path, "field names must be plain words, not " + describe(kv.first));
        continue;
      }
      const std::string& key = kv.first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string message = "unknown field";
        for (std::string_view k : known) {
          if (edit_distance(key, k) <= 2) {
            message += " (did you mean " + std::string(k) + "?)";
            break;
          }
        }
        const bool printable = key.size() <= 64 && std::all_of(key.begin(), key.end(), [](char ch) {
                                 return ch > 0x20 && ch < 0x7f;
                               });
        add(key_line, f.child(printable ? key : quote(key)), message);
        continue;
      }
      if (const Fields::Entry* first = f.find(key)) {
        add(key_line, f.child(key),
            "duplicate field (first at line " + std::to_string(line_of(first->key_node, line)) +
                ")");
        continue;
      }
      f.entries.push_back(Fields::Entry{key, kv.first, kv.second});
    }
    return f;
  }

  std::optional<std::string> string_value(const Node& n, const std::string& path, int line) {
    if (!n.IsScalar()) {
      add(line_of(n, line), path, "must be a string, not " + describe(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  // An integer in [min, max]. Floats, quoted numbers, signs other than '-', digits followed by
  // anything and values beyond int64 are all refused. Small ranges (prefix lengths) are stated
  // in full; large ones as "a positive integer", with "at most" when exceeded.
  std::optional<std::int64_t> int_value(const Node& n, const std::string& path, int line,
                                        std::int64_t min, std::int64_t max) {
    line = line_of(n, line);
    const bool small = max < 1000 || min > 1;
    const std::string range =
        small      ? "must be an integer from " + std::to_string(min) + " to " + std::to_string(max)
        : min == 1 ? "must be a positive integer"
                   : "must be zero or a positive integer";
    if (!n.IsScalar() || !is_plain(n)) {
      add(line, path, range + ", not " + describe(n) + (n.IsScalar() ? " (a quoted string)" : ""));
      return std::nullopt;
    }
    std::string_view s = n.Scalar();
    const bool negative = !s.empty() && s.front() == '-';
    if (negative) s.remove_prefix(1);
    if (s.empty() ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      add(line, path, range + ", not " + describe(n));
      return std::nullopt;
    }
    // Saturate instead of overflowing: every bound is far below 10^17.
    constexpr std::int64_t kSaturated = 100'000'000'000'000'000;
    std::int64_t v = 0;
    for (char c : s) {
      v = v * 10 + (c - '0');
      if (v >= kSaturated) break;  // v < 10^18 here, so v * 10 above never overflowed
    }
    if (negative) v = -v;
    if (v < min) {
      add(line, path, range);
      return std::nullopt;
    }
    if (v > max) {
      add(line, path, small ? range : "must be at most " + std::to_string(max));
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> bool_value(const Node& n, const std::string& path, int line) {
    if (n.IsScalar() && is_plain(n)) {
      if (n.Scalar() == "true") return true;
      if (n.Scalar() == "false") return false;
    }
    add(line_of(n, line), path, "must be true or false, not " + describe(n));
    return std::nullopt;
  }

  std::optional<Duration> duration_value(const Node& n, const std::string& path, int line) {
    auto s = string_value(n, path, line);
    if (!s) return std::nullopt;
    auto d = parse_duration(*s);
    if (!d) {
      add(line_of(n, line), path, d.error().message);
      return std::nullopt;
    }
    return *d;
  }

  // Applies `each` to every item of a list. A single scalar counts as a list of one when
  // `scalar_ok` (`method: GET`).
  template <typename F>
  bool for_each_item(const Node& n, const std::string& path, int line, F each,
                     bool scalar_ok = false) {
    if (scalar_ok && n.IsScalar()) {
      each(n, path);
      return true;
    }
    if (!n.IsSequence()) {
      add(line_of(n, line), path, "must be a list, not " + describe(n));
      return false;
    }
    std::size_t i = 0;
    for (const Node& item : n) {
      if (problems_.size() > kMaxProblems) break;
      each(item, path + "[" + std::to_string(i++) + "]");
    }
    return true;
  }

  std::optional<Config> parse_document(const Node& doc) {
    Config c;
    c.source = source_;
    c.threads =
        static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, kMaxThreads));
    c.identity = {IdentitySource{}};

    if (doc.IsNull()) {
      add(1, "policies", "required: the file is empty (see examples/floodgate.yaml)");
      return std::nullopt;
    }
    int admin_line = 1;
    int admin_headers_line = 0;  // where admin_rate_limit_headers is, when it is
    auto top = fields(doc, "", 1,
                      {"listen",
                       "threads",
                       "store",
                       "store_timeout",
                       "on_store_error",
                       "local_fallback",
                       "trusted_proxies",
                       "upstream",
                       "upstream_timeout",
                       "upstream_hold_timeout",
                       "key_prefix",
                       "cors",
                       "identity",
                       "policies",
                       "server",
                       "memory",
                       "deny_cache",
                       "access_log",
                       "key_secret",
                       "admin_listen",
                       "check_api",
                       "dashboard",
                       "rate_limit_headers",
                       "admin_rate_limit_headers"},
                      "a mapping of fields (listen, store, policies, ...)");
    if (!top) return std::nullopt;

    for (const Fields::Entry& e : top->entries) {
      const std::string path = e.key;
      const Node& v = e.value;
      const int line = line_of(e.key_node, 1);
      if (e.key == "listen") {
        if (auto s = string_value(v, path, line)) {
          if (auto hp = parse_host_port(*s, /*allow_port_zero=*/true)) {  // 0: any free port
            c.listen = std::move(*hp);
          } else {
            add(line_of(v, line), path, hp.error().message);
          }
        }
      } else if (e.key == "threads") {
        if (auto n = int_value(v, path, line, 1, kMaxThreads)) c.threads = static_cast<int>(*n);
      } else if (e.key == "store") {
        if (auto s = string_value(v, path, line)) {
          if (auto url = parse_store_url(*s)) {
            c.store = std::move(*url);
          } else {
            add(line_of(v, line), path, url.error().message);
          }
        }
      } else if (e.key == "store_timeout") {
        if (auto d = duration_value(v, path, line)) {
          if (*d > kMaxStoreTimeout) {
            add(line_of(v, line), path, "must be at most " + format_duration(kMaxStoreTimeout));
          } else {
            c.store_timeout = *d;
          }
        }
      } else if (e.key == "on_store_error") {
        if (auto s = string_value(v, path, line)) {
          if (*s == "allow") {
            c.on_store_error = OnStoreError::kAllow;
          } else if (*s == "deny") {
            c.on_store_error = OnStoreError::kDeny;
          } else if (*s == "local") {
            c.on_store_error = OnStoreError::kLocal;
          } else {
            add(line_of(v, line), path, quote(*s) + " is not one of allow, deny, local");
          }
        }
      } else if (e.key == "local_fallback") {
        if (auto f = fields(v, path, line, {"instances"})) {
          if (const auto* inst = f->find("instances")) {
            if (auto n = int_value(inst->value, f->child("instances"), f->line, 1,
                                   kMaxFallbackInstances)) {
              c.local_fallback_instances = static_cast<int>(*n);
            }
          }
        }
      } else if (e.key == "trusted_proxies") {
        for_each_item(v, path, line, [&](const Node& item, const std::string& p) {
          if (auto s = string_value(item, p, line)) {
            if (auto cidr = parse_cidr(*s)) {
              c.trusted_proxies.push_back(*cidr);
            } else {
              add(line_of(item, line), p, cidr.error().message);
            }
          }
        });
      } else if (e.key == "upstream") {
        if (auto s = string_value(v, path, line)) {
          if (auto hp = parse_upstream_url(*s)) {
            c.upstream = std::move(*hp);
          } else {
            add(line_of(v, line), path, hp.error().message);
          }
        }
      } else if (e.key == "upstream_timeout") {
        if (auto d = positive_duration(v, path, line, std::chrono::hours(1))) {
          c.upstream_timeout = *d;
        }
      } else if (e.key == "upstream_hold_timeout") {
        if (auto d = positive_duration(v, path, line, std::chrono::hours(24))) {
          c.upstream_hold_timeout = *d;
        }
      } else if (e.key == "server") {
        parse_server(v, path, line, c.server);
      } else if (e.key == "memory") {
        if (auto f = fields(v, path, line, {"max_keys"})) {
          if (const auto* mk = f->find("max_keys")) {
            if (auto n = int_value(mk->value, f->child("max_keys"), f->line, 1, kMaxMemoryKeys)) {
              c.memory.max_keys = static_cast<std::size_t>(*n);
            }
          }
        }
      } else if (e.key == "deny_cache") {
        parse_deny_cache(v, path, line, c);
      } else if (e.key == "access_log") {
        parse_access_log(v, path, line, c);
      } else if (e.key == "check_api") {
        parse_check_api(v, path, line, c);
      } else if (e.key == "dashboard") {
        parse_dashboard(v, path, line, c);
      } else if (e.key == "rate_limit_headers") {
        c.rate_limit_headers = parse_header_style(v, path, line).over(c.rate_limit_headers);
      } else if (e.key == "admin_rate_limit_headers") {
        c.admin_rate_limit_headers = parse_header_style(v, path, line);
        admin_headers_line = line;
      } else if (e.key == "key_prefix") {
        if (auto s = string_value(v, path, line)) {
          if (is_name(*s)) {
            c.key_prefix = *s;
          } else {
            add(line_of(v, line), path,
                quote(*s) + " is not a valid key prefix (letters, digits, '_', '.', '-'; at most " +
                    std::to_string(kMaxNameLength) + ")");
          }
        }
      } else if (e.key == "key_secret") {
        // Never quoted back: the value is a secret, and messages reach logs and terminals.
        if (auto s = string_value(v, path, line)) {
          if (s->size() < kMinKeySecretBytes || s->size() > kMaxKeySecretBytes) {
            add(line_of(v, line), path,
                "must be " + std::to_string(kMinKeySecretBytes) + " to " +
                    std::to_string(kMaxKeySecretBytes) +
                    " characters (e.g. the output of `openssl rand -hex 32`)");
          } else {
            c.key_secret = std::move(*s);
          }
        }
      } else if (e.key == "admin_listen") {
        if (auto s = string_value(v, path, line)) {
          if (auto hp = parse_host_port(*s, /*allow_port_zero=*/true)) {
            c.admin_listen = std::move(*hp);
            admin_line = line_of(v, line);
          } else {
            add(line_of(v, line), path, hp.error().message);
          }
        }
      } else if (e.key == "cors") {
        parse_cors(v, path, line, c);
      } else if (e.key == "identity") {
        auto sources = parse_identity(v, path, line);
        if (!sources.empty()) c.identity = std::move(sources);
      } else if (e.key == "policies") {
        parse_policies(v, path, line, c);
      }
    }
    if (!top->find("policies")) {
      add(top->line, "policies", "required: at least one policy (see examples/floodgate.yaml)");
    }
    if (c.admin_listen && *c.admin_listen == c.listen && c.listen.port != 0) {
      add(admin_line, "admin_listen",
          "must differ from listen (" + to_string(c.listen) +
              "): /metrics is moved to its own address so that it can be kept private");
    }
    if (admin_headers_line != 0 && !c.admin_listen) {
      add(admin_headers_line, "admin_rate_limit_headers",
          "only with admin_listen (the fields of listen are rate_limit_headers)");
    }
    // Unset, it is at least upstream_timeout; set below it, slots would be given back before the
    // client is answered.
    if (c.upstream_hold_timeout < c.upstream_timeout) {
      if (const Fields::Entry* h = top->find("upstream_hold_timeout")) {
        add(line_of(h->key_node, 1), "upstream_hold_timeout",
            "must be at least upstream_timeout (" + format_duration(c.upstream_timeout) + ")");
      } else {
        c.upstream_hold_timeout = c.upstream_timeout;
      }
    }
    check_header_spellings(c);
    if (!problems_.empty()) return std::nullopt;
    return c;
  }

  // The header fields floodgate reads (identity sources, policies' match) in one spelling each:
  // servers that read '_' as '-' take X_API_Key for X-API-Key, and a request carrying a field
  // spelled otherwise than floodgate reads it is refused (http/canonical.h), so two spellings of
  // one field would refuse every request that carries it.
  void check_header_spellings(const Config& c) {
    std::vector<std::pair<std::string, int>> seen;  // a name as first spelled, and its line
    const auto note = [&](const std::string& name, int line) {
      for (const auto& [first, first_line] : seen) {
        if (util::iequals(first, name)) return;
        if (util::same_field_name(first, name)) {
          add(line, "policies",
              "header " + quote(name) + " is " + quote(first) + " (line " +
                  std::to_string(first_line) + ") to servers that read '_' as '-': spell it " +
                  quote(first) + " everywhere");
          return;
        }
      }
      seen.emplace_back(name, line);
    };
    const auto sources = [&](const std::vector<IdentitySource>& list, int line) {
      for (const IdentitySource& src : list) {
        if (src.kind == IdentitySource::Kind::kHeader) note(src.header, line);
      }
    };
    sources(c.identity, 0);
    for (const PolicyConfig& pc : c.policies) {
      sources(pc.identity, pc.line);
      if (pc.match.header) note(pc.match.header->name, pc.line);
    }
  }

  // `rate_limit_headers: {standard: draft-8|draft-7|draft-6|none, legacy: true|false}`: the parts
  // given (a policy's or admin_listen's inherit the others).
  HeaderStyleOverride parse_header_style(const Node& v, const std::string& path, int line) {
    HeaderStyleOverride out;
    auto f = fields(v, path, line, {"standard", "legacy"},
                    "{standard: draft-8|draft-7|draft-6|none, legacy: true|false}");
    if (!f) return out;
    if (const auto* e = f->find("standard")) {
      const std::string p = f->child("standard");
      if (auto s = string_value(e->value, p, f->line)) {
        if (auto r = parse_rate_limit_standard(*s)) {
          out.standard = *r;
        } else {
          add(line_of(e->value, f->line), p,
              quote(*s) + " is not one of draft-8, draft-7, draft-6, none");
        }
      }
    }
    if (const auto* e = f->find("legacy")) {
      if (auto b = bool_value(e->value, f->child("legacy"), f->line)) out.legacy = *b;
    }
    return out;
  }

  // A duration in (0, max] (or [0, max] when zero_ok).
  std::optional<Duration> positive_duration(const Node& n, const std::string& path, int line,
                                            Duration max, bool zero_ok = false) {
    // parse_duration refuses zero (no period or timeout may be 0); a delay may be: "0s", "0ms".
    if (zero_ok && n.IsScalar()) {
      const std::string& t = n.Scalar();
      const std::size_t unit = t.find_first_not_of('0');
      if (unit != 0 && unit != std::string::npos && parse_duration("1" + t.substr(unit))) {
        return Duration::zero();
      }
    }
    auto d = duration_value(n, path, line);
    if (!d) return std::nullopt;
    if (*d > max) {
      add(line_of(n, line), path, "must be at most " + format_duration(max));
      return std::nullopt;
    }
    if (!zero_ok && *d <= Duration::zero()) {
      add(line_of(n, line), path, "must be longer than 0");
      return std::nullopt;
    }
    return d;
  }

  void parse_server(const Node& v, const std::string& path, int line, ServerLimits& s) {
    auto f = fields(v, path, line,
                    {"max_connections", "max_header_bytes", "max_body_bytes", "max_body_memory",
                     "max_response_memory", "header_timeout", "body_timeout", "idle_timeout",
                     "write_timeout", "drain_delay", "drain_timeout"});
    if (!f) return;
    for (const Fields::Entry& e : f->entries) {
      const std::string p = f->child(e.key);
      const Node& n = e.value;
      const int l = line_of(e.key_node, f->line);
      if (e.key == "max_connections") {
        if (auto i = int_value(n, p, l, 1, 1'000'000)) s.max_connections = static_cast<int>(*i);
      } else if (e.key == "max_header_bytes") {
        if (auto i = int_value(n, p, l, 1024, 1 << 20)) {
          s.max_header_bytes = static_cast<std::size_t>(*i);
        }
      } else if (e.key == "max_body_bytes") {
        if (auto i = int_value(n, p, l, 0, std::int64_t{1} << 32)) {
          s.max_body_bytes = static_cast<std::size_t>(*i);
        }
      } else if (e.key == "max_body_memory") {
        if (auto i = int_value(n, p, l, 0, std::int64_t{1} << 40)) {
          s.max_body_memory = static_cast<std::size_t>(*i);
        }
      } else if (e.key == "max_response_memory") {
        // Smaller, ordinary responses would be refused.
        if (auto i = int_value(n, p, l, 65536, std::int64_t{1} << 40)) {
          s.max_response_memory = static_cast<std::size_t>(*i);
        }
      } else if (e.key == "header_timeout") {
        if (auto d = positive_duration(n, p, l, std::chrono::hours(1))) s.header_timeout = *d;
      } else if (e.key == "body_timeout") {
        if (auto d = positive_duration(n, p, l, std::chrono::hours(1))) s.body_timeout = *d;
      } else if (e.key == "idle_timeout") {
        if (auto d = positive_duration(n, p, l, std::chrono::hours(24))) s.idle_timeout = *d;
      } else if (e.key == "write_timeout") {
        if (auto d = positive_duration(n, p, l, std::chrono::hours(1))) s.write_timeout = *d;
      } else if (e.key == "drain_delay") {
        if (auto d = positive_duration(n, p, l, std::chrono::hours(1), true)) s.drain_delay = *d;
      } else if (e.key == "drain_timeout") {
        if (auto d = positive_duration(n, p, l, std::chrono::hours(1))) s.drain_timeout = *d;
      }
    }
    // Unset, it is at least max_body_bytes (a config raising max_body_bytes alone keeps working);
    // set below it, a body that size could never be read.
    if (s.max_body_memory < s.max_body_bytes) {
      if (const Fields::Entry* m = f->find("max_body_memory")) {
        add(line_of(m->key_node, f->line), f->child("max_body_memory"),
            "must be at least server.max_body_bytes (" + std::to_string(s.max_body_bytes) +
                "): a body that size could never be read");
      } else {
        s.max_body_memory = s.max_body_bytes;
      }
    }
  }

  void parse_cors(const Node& v, const std::string& path, int line, Config& c) {
    auto f = fields(v, path, line, {"allow_origins"});
    if (!f) return;
    const auto* origins = f->find("allow_origins");
    if (!origins) {
      add(f->line, f->child("allow_origins"), "required when cors is given");
      return;
    }
    Cors cors;
    const std::string p = f->child("allow_origins");
    const bool is_list =
        for_each_item(origins->value, p, f->line, [&](const Node& item, const std::string& ip) {
          if (auto s = string_value(item, ip, f->line)) {
            if (auto o = parse_origin(*s)) {
              cors.allow_origins.push_back(std::move(*o));
            } else {
              add(line_of(item, f->line), ip, o.error().message);
            }
          }
        });
    if (is_list && origins->value.size() == 0) {
      add(line_of(origins->value, f->line), p, "must not be empty");
    }
    c.cors = std::move(cors);
  }

  // `deny_cache: false`, `true`, or `{enabled: true, max_entries: 100000}`.
  void parse_deny_cache(const Node& v, const std::string& path, int line, Config& c) {
    if (v.IsScalar()) {
      if (auto b = bool_value(v, path, line)) c.deny_cache.enabled = *b;
      return;
    }
    auto f =
        fields(v, path, line, {"enabled", "max_entries"}, "true, false or {enabled, max_entries}");
    if (!f) return;
    c.deny_cache.enabled = true;
    if (const auto* e = f->find("enabled")) {
      if (auto b = bool_value(e->value, f->child("enabled"), f->line)) c.deny_cache.enabled = *b;
    }
    if (const auto* e = f->find("max_entries")) {
      if (auto n = int_value(e->value, f->child("max_entries"), f->line, 1, kMaxDenyCacheEntries)) {
        c.deny_cache.max_entries = static_cast<std::size_t>(*n);
      }
    }
  }

  // `dashboard: {public: true}`.
  void parse_dashboard(const Node& v, const std::string& path, int line, Config& c) {
    auto f = fields(v, path, line, {"public"}, "{public: true|false}");
    if (!f) return;
    if (const auto* e = f->find("public")) {
      if (auto b = bool_value(e->value, f->child("public"), f->line)) c.dashboard_public = *b;
    }
  }

  // `access_log: true`, or `{enabled: true, redact: [api_key, token]}`.
  void parse_access_log(const Node& v, const std::string& path, int line, Config& c) {
    if (v.IsScalar()) {
      if (auto b = bool_value(v, path, line)) c.access_log = *b;
      return;
    }
    auto f = fields(v, path, line, {"enabled", "redact"}, "true, false or {enabled, redact}");
    if (!f) return;
    c.access_log = true;
    if (const auto* e = f->find("enabled")) {
      if (auto b = bool_value(e->value, f->child("enabled"), f->line)) c.access_log = *b;
    }
    if (const auto* r = f->find("redact")) {
      std::vector<std::string> names;
      for_each_item(r->value, f->child("redact"), f->line,
                    [&](const Node& item, const std::string& ip) {
                      auto s = string_value(item, ip, f->line);
                      if (!s) return;
                      if (s->empty() || has_control_char(*s)) {
                        add(line_of(item, f->line), ip, quote(*s) + " is not a parameter name");
                        return;
                      }
                      names.push_back(std::move(*s));
                    });
      c.access_log_redact = std::move(names);
    }
  }

  // `check_api: false`, `true`, or `{limit: 600, period: 1m}` (implies true).
  void parse_check_api(const Node& v, const std::string& path, int line, Config& c) {
    if (v.IsScalar()) {
      if (auto b = bool_value(v, path, line)) c.check_api = *b;
      return;
    }
    auto f = fields(v, path, line, {"enabled", "limit", "period"},
                    "true, false or {limit: 600, period: 1m}");
    if (!f) return;
    c.check_api = true;
    Policy p = c.check_api_policy;
    if (const auto* e = f->find("enabled")) {
      if (auto b = bool_value(e->value, f->child("enabled"), f->line)) c.check_api = *b;
    }
    if (const auto* e = f->find("limit")) {
      if (auto n = int_value(e->value, f->child("limit"), f->line, 1, kMaxCount)) {
        p.limit = *n;
        p.burst = *n;
      }
    }
    if (const auto* e = f->find("period")) {
      if (auto d = duration_value(e->value, f->child("period"), f->line)) {
        if (*d > kMaxPeriod) {
          add(line_of(e->value, f->line), f->child("period"),
              "must be at most " + format_duration(kMaxPeriod));
        } else {
          p.period = *d;
        }
      }
    }
    if (auto ok = validate_policy(p); !ok) {
      add(f->line, path, ok.error().message);
      return;
    }
    c.check_api_policy = p;
  }

  std::vector<IdentitySource> parse_identity(const Node& v, const std::string& path, int line) {
    std::vector<IdentitySource> sources;
    const bool is_list = for_each_item(v, path, line, [&](const Node& item, const std::string& p) {
      const std::size_t before = problems_.size();
      auto f = fields(item, p, line, {"header", "ip"}, "`header: NAME` or `ip: {}`");
      if (!f) return;
      if (f->entries.size() > 1 || (f->entries.empty() && problems_.size() == before)) {
        add(f->line, p, "must be exactly one of `header: NAME` or `ip: {}`");
        return;
      }
      if (f->entries.empty()) return;
      const Fields::Entry& e = f->entries.front();
      const std::string ep = f->child(e.key);
      IdentitySource src;
      if (e.key == "header") {
        src.kind = IdentitySource::Kind::kHeader;
        auto name = string_value(e.value, ep, f->line);
        if (!name) return;
        if (!is_token(*name)) {
          add(line_of(e.value, f->line), ep, quote(*name) + " is not a valid header name");
          return;
        }
        src.header = *name;
      } else {
        src.kind = IdentitySource::Kind::kIp;
        if (!e.value.IsNull()) {  // `- ip:` is the same as `- ip: {}`
          auto opts = fields(e.value, ep, f->line, {"ipv4_prefix", "ipv6_prefix"});
          if (!opts) return;
          if (const auto* o = opts->find("ipv4_prefix")) {
            auto n = int_value(o->value, opts->child("ipv4_prefix"), opts->line, 1, 32);
            if (!n) return;
            src.ipv4_prefix = static_cast<int>(*n);
          }
          if (const auto* o = opts->find("ipv6_prefix")) {
            auto n = int_value(o->value, opts->child("ipv6_prefix"), opts->line, 1, 128);
            if (!n) return;
            src.ipv6_prefix = static_cast<int>(*n);
          }
        }
      }
      sources.push_back(std::move(src));
    });
    if (is_list && v.size() == 0) {
      add(line_of(v, line), path, "must not be empty (e.g. [{header: X-API-Key}, {ip: {}}])");
    }
    return sources;
  }

  void parse_policies(const Node& v, const std::string& path, int line, Config& c) {
    std::map<std::string, int, std::less<>> names;  // name -> line of its first use
    std::size_t index = 0;
    const bool is_list = for_each_item(v, path, line, [&](const Node& item, const std::string& p) {
      ++index;
      PolicyConfig pc;
      int name_line = 0;
      const bool ok = parse_policy(item, p, line, pc, name_line);
      // Names are checked even when the policy has other problems, to report everything.
      if (pc.policy.name.empty()) return;
      const auto [it, inserted] = names.emplace(pc.policy.name, name_line);
      if (!inserted) {
        add(name_line, p + ".name",
            "duplicate policy name " + quote(pc.policy.name) + " (first at line " +
                std::to_string(it->second) + ")");
        return;
      }
      if (ok) c.policies.push_back(std::move(pc));
    });
    if (is_list && index == 0) {
      add(line_of(v, line), path, "must not be empty: at least one policy");
    }
  }

  // Fills `pc` with what could be read (its name as soon as the name is valid); true when the
  // whole policy is valid.
  bool parse_policy(const Node& item, const std::string& p, int line, PolicyConfig& pc,
                    int& name_line) {
    const std::size_t before = problems_.size();
    auto f = fields(item, p, line,
                    {"name", "match", "algorithm", "limit", "period", "burst", "cost", "shadow",
                     "identity", "rate_limit_headers", "lease"});
    if (!f) return false;
    pc.line = f->line;
    Policy& policy = pc.policy;
    bool have_burst = false;

    for (const Fields::Entry& e : f->entries) {
      const std::string ep = f->child(e.key);
      const int el = line_of(e.key_node, f->line);
      if (e.key == "name") {
        if (auto s = string_value(e.value, ep, el)) {
          if (is_name(*s)) {
            policy.name = *s;
            name_line = line_of(e.value, el);
          } else {
            add(line_of(e.value, el), ep,
                quote(*s) + " is not a valid policy name (letters, digits, '_', '.', '-'; at " +
                    "most " + std::to_string(kMaxNameLength) + ")");
          }
        }
      } else if (e.key == "match") {
        parse_match(e.value, ep, el, pc.match);
      } else if (e.key == "algorithm") {
        if (auto s = string_value(e.value, ep, el)) {
          constexpr std::string_view kKnown =
              " (token_bucket, gcra, sliding_window, fixed_window, concurrency)";
          if (auto a = parse_algorithm(*s)) {
            policy.algorithm = *a;
          } else {
            add(line_of(e.value, el), ep, quote(*s) + " is not an algorithm" + std::string(kKnown));
          }
        }
      } else if (e.key == "limit") {
        if (auto n = int_value(e.value, ep, el, 1, kMaxCount)) policy.limit = *n;
      } else if (e.key == "period" || e.key == "lease") {
        // `lease` is a concurrency policy's `period` (policy.h); which key suits which
        // algorithm is checked below, once the algorithm is known.
        if (auto d = duration_value(e.value, ep, el)) {
          if (*d > kMaxPeriod) {
            add(line_of(e.value, el), ep, "must be at most " + format_duration(kMaxPeriod));
          } else {
            policy.period = *d;
          }
        }
      } else if (e.key == "burst") {
        if (auto n = int_value(e.value, ep, el, 1, kMaxCount)) {
          policy.burst = *n;
          have_burst = true;
        }
      } else if (e.key == "cost") {
        // valid_cost's range, read here so that it is reported with the file's other problems
        // (validate_policy below checks it again with valid_cost).
        if (auto n = int_value(e.value, ep, el, 0, kMaxCount)) policy.cost = *n;
      } else if (e.key == "shadow") {
        if (auto b = bool_value(e.value, ep, el)) policy.shadow = *b;
      } else if (e.key == "identity") {
        pc.identity = parse_identity(e.value, ep, el);
      } else if (e.key == "rate_limit_headers") {
        pc.rate_limit_headers = parse_header_style(e.value, ep, el);
      }
    }
    const bool concurrency = policy.is_concurrency();
    for (std::string_view required : {"name", "limit", concurrency ? "" : "period"}) {
      if (!required.empty() && !f->find(required)) add(f->line, f->child(required), "required");
    }
    if (const Fields::Entry* e = f->find(concurrency ? "period" : "lease")) {
      add(line_of(e->key_node, f->line), f->child(e->key),
          concurrency ? "a concurrency policy has no period (its slots are held until each "
                        "response ends; `lease` bounds how long one outlives a dead instance)"
                      : "applies to algorithm: concurrency only");
    }
    if (concurrency && !f->find("lease")) policy.period = kDefaultLease;
    if (problems_.size() != before) return false;

    if (!have_burst) policy.burst = policy.limit;
    // The core's own checks: exactness bounds, burst with windows. Its messages start with the
    // field ("burst: ..."), which we place at that field's line when it is in the file.
    if (auto ok = validate_policy(policy); !ok) {
      const std::string& m = ok.error().message;
      const std::size_t colon = m.find(": ");
      std::string field = colon == std::string::npos ? "" : m.substr(0, colon);
      const Fields::Entry* e = f->find(field);
      add(e ? line_of(e->key_node, f->line) : f->line, field.empty() ? p : f->child(field),
          colon == std::string::npos ? m : m.substr(colon + 2));
      return false;
    }
    return true;
  }

  void parse_match(const Node& v, const std::string& path, int line, Match& m) {
    auto f = fields(v, path, line, {"path_prefix", "path", "method", "header"},
                    "a mapping (e.g. {path_prefix: /api/})");
    if (!f) return;
    for (const Fields::Entry& e : f->entries) {
      const std::string ep = f->child(e.key);
      const int el = line_of(e.key_node, f->line);
      if (e.key == "path_prefix" || e.key == "path") {
        auto s = string_value(e.value, ep, el);
        if (!s) continue;
        if (s->empty() || s->front() != '/' || s->find(' ') != std::string::npos ||
            has_control_char(*s)) {
          add(line_of(e.value, el), ep, quote(*s) + " is not a path (it starts with '/')");
          continue;
        }
        if (!is_canonical_match_path(*s, e.key == "path_prefix")) {
          add(line_of(e.value, el), ep,
              quote(*s) +
                  " is not a path as requests are compared (no '%', '\\', ';', '//', '.' or "
                  "'..' segments; letters, digits and -._~!$&'()*+,=:@ between slashes)");
          continue;
        }
        (e.key == "path" ? m.path : m.path_prefix) = *s;
      } else if (e.key == "method") {
        const bool is_list = for_each_item(
            e.value, ep, el,
            [&](const Node& item, const std::string& ip) {
              auto s = string_value(item, ip, el);
              if (!s) return;
              if (!is_token(*s)) {
                add(line_of(item, el), ip, quote(*s) + " is not an HTTP method");
                return;
              }
              std::string upper = *s;
              std::transform(upper.begin(), upper.end(), upper.begin(), [](char ch) {
                return ch >= 'a' && ch <= 'z' ? static_cast<char>(ch - 'a' + 'A') : ch;
              });
              m.methods.push_back(std::move(upper));
            },
            /*scalar_ok=*/true);
        if (is_list && e.value.IsSequence() && e.value.size() == 0) {
          add(line_of(e.value, el), ep, "must not be empty (leave it out to match any method)");
        }
      } else if (e.key == "header") {
        auto h = fields(e.value, ep, el, {"name", "value"}, "a mapping {name: ..., value: ...}");
        if (!h) continue;
        Match::Header header;
        if (const auto* n = h->find("name")) {
          if (auto s = string_value(n->value, h->child("name"), h->line)) {
            if (is_token(*s)) {
              header.name = *s;
            } else {
              add(line_of(n->value, h->line), h->child("name"),
                  quote(*s) + " is not a valid header name");
            }
          }
        } else {
          add(h->line, h->child("name"), "required");
        }
        if (const auto* val = h->find("value")) {
          if (auto s = string_value(val->value, h->child("value"), h->line)) {
            if (has_control_char(*s)) {
              add(line_of(val->value, h->line), h->child("value"),
                  "must not contain control characters");
            } else {
              header.value = *s;
            }
          }
        }
        m.header = std::move(header);
      }
    }
    if (m.path && m.path_prefix) {
      add(line_of(f->find("path")->key_node, f->line), f->child("path"),
          "give either path or path_prefix, not both");
    }
  }

  std::string source_;
  std::vector<Problem> problems_;
};

Error to_error(const std::vector<Problem>& problems) {
  std::string message;
  for (const Problem& p : problems) {
    if (!message.empty()) message += '\n';
    message += p.to_string();
  }
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

struct Outcome {
  std::optional<Config> config;
  std::vector<Problem> problems;
};

Outcome parse_text(std::string_view text, std::string_view source) {
  Parser parser(source);
  Outcome out;
  out.config = parser.parse(text);
  out.problems = parser.take_problems();
  if (!out.problems.empty()) out.config.reset();
  return out;
}

// Reads at most kMaxFileBytes; the text or the one problem that stopped it.
std::variant<std::string, Problem> read_file(const std::string& path) {
  const auto problem = [&](std::string message) {
    return Problem{path, 0, "", std::move(message)};
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return problem("cannot open: " + std::string(std::strerror(errno)));
  std::string text;
  char buf[16384];
  while (true) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
    text.append(buf, n);
    if (text.size() > kMaxFileBytes) {
      return problem("larger than " + std::to_string(kMaxFileBytes) + " bytes: not a config file");
    }
    if (n < sizeof buf) break;
  }
  if (std::ferror(f.get())) return problem("cannot read: " + std::string(std::strerror(errno)));
  return text;
}

}  // namespace

std::vector<Problem> config_problems(std::string_view yaml_text, std::string_view source_name) {
  return parse_text(yaml_text, source_name).problems;
}

Result<Config> parse_config(std::string_view yaml_text, std::string_view source_name) {
  Outcome out = parse_text(yaml_text, source_name);
  if (!out.config) return tl::unexpected(to_error(out.problems));
  return std::move(*out.config);
}

std::vector<Problem> config_file_problems(const std::string& path) {
  auto text = read_file(path);
  if (auto* p = std::get_if<Problem>(&text)) return {std::move(*p)};
  return config_problems(std::get<std::string>(text), path);
}

Result<Config> load_config_file(const std::string& path) {
  auto text = read_file(path);
  if (auto* p = std::get_if<Problem>(&text)) return tl::unexpected(to_error({*p}));
  return parse_config(std::get<std::string>(text), path);
}

namespace {

// One restart-only field: its name in the file, and the member it is read into.
struct RestartOnlyField {
  std::string_view name;
  bool (*differs)(const Config&, const Config&);
  void (*keep)(const Config& from, Config& to);
};

template <auto Member>
constexpr RestartOnlyField restart_only(std::string_view name) {
  return {name, [](const Config& a, const Config& b) { return !(a.*Member == b.*Member); },
          [](const Config& from, Config& to) { to.*Member = from.*Member; }};
}

constexpr std::array kRestartOnlyFields = {
    restart_only<&Config::listen>("listen"),
    restart_only<&Config::admin_listen>("admin_listen"),
    restart_only<&Config::threads>("threads"),
    restart_only<&Config::store>("store"),
    restart_only<&Config::store_timeout>("store_timeout"),
    restart_only<&Config::key_prefix>("key_prefix"),
    restart_only<&Config::key_secret>("key_secret"),
    restart_only<&Config::memory>("memory"),
};

}  // namespace

std::vector<std::string_view> restart_only_fields() {
  std::vector<std::string_view> names;
  for (const RestartOnlyField& f : kRestartOnlyFields) names.push_back(f.name);
  return names;
}

std::vector<std::string> keep_restart_only_fields(const Config& running, Config& next) {
  std::vector<std::string> kept;
  for (const RestartOnlyField& f : kRestartOnlyFields) {
    if (f.differs(running, next)) {
      kept.emplace_back(f.name);
      f.keep(running, next);
    }
  }
  return kept;
}

Config default_config() {
  Config c;
  c.threads =
      static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, kMaxThreads));
  IdentitySource api_key;
  api_key.kind = IdentitySource::Kind::kHeader;
  api_key.header = "X-API-Key";
  c.identity = {api_key, IdentitySource{}};  // then the client's IP
  PolicyConfig pc;
  pc.policy.name = "per-minute";
  pc.policy.algorithm = Algorithm::kTokenBucket;
  pc.policy.limit = 100;
  pc.policy.period = std::chrono::seconds(60);
  pc.policy.burst = 100;
  pc.policy.cost = 1;
  pc.match.path_prefix = "/api/";
  c.policies.push_back(std::move(pc));
  return c;
}

}  // namespace fg::config
