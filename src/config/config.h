// config.h — the configuration file (design §2.2), parsed and validated into a Config.
//
// A Config is a plain value that has passed every check: each policy has passed
// fg::validate_policy, every address and URL has been parsed, defaults are filled in. Build one
// with parse_config / load_config_file / default_config and share it as
// std::shared_ptr<const Config>; a reload builds a new one and keeps the old one on failure.
//
// Failure: kInvalidArgument whose message lists EVERY problem found, one per line, each as
// "<source>:<line>: <path>: <message>", e.g.
//   cfg.yaml:12: policies[1].period: "sixty" is not a duration (use a whole number and ...)
//   cfg.yaml:15: policies[2].limit: must be a positive integer
// config_problems() returns the same problems one by one (for `floodgate validate`). Unknown
// fields, duplicate fields, wrong types and YAML syntax errors are problems too. yaml-cpp's
// exceptions stop in config.cc: nothing here throws.
//
// Units: durations are fg::Duration (integer µs), written in the file as "250ms", "30s", "5m".
// Thread safety: pure functions over values; a Config is immutable once built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/values.h"
#include "floodgate/clock.h"
#include "floodgate/policy.h"
#include "floodgate/result.h"

namespace fg::config {

enum class OnStoreError {
  kAllow,  // fail open: allow, with X-RateLimit-Degraded and no figures
  kDeny,   // fail closed: 503
  kLocal,  // decide with a per-instance memory limiter, limits divided by local_fallback.instances
};

std::string_view to_string(OnStoreError e);

// The form of the rate-limit response fields (`rate_limit_headers:`; docs/headers.md has each
// field's syntax). express-rate-limit's names for the IETF drafts' revisions, since clients and
// their parsers are written against one of them.
enum class RateLimitStandard {
  kDraft8,  // RateLimit: "per-minute";r=99;t=1 + RateLimit-Policy: "per-minute";q=100;w=60, one
            // item per matching policy (the current draft's structured lists; the default)
  kDraft7,  // RateLimit: limit=100, remaining=99, reset=1 + RateLimit-Policy: 100;w=60
  kDraft6,  // RateLimit-Limit: 100, RateLimit-Remaining: 99, RateLimit-Reset: 1 +
            // RateLimit-Policy: 100;w=60
  kNone,    // none of the RateLimit* fields
};

std::string_view to_string(RateLimitStandard s);
// "draft-8", "draft-7", "draft-6", "none"; nullopt for anything else.
std::optional<RateLimitStandard> parse_rate_limit_standard(std::string_view s);

// Which rate-limit fields a response carries. The default is what floodgate always sent: the
// current draft and the legacy X-RateLimit-Limit/-Remaining/-Reset. Retry-After (on a 429) and
// X-RateLimit-Degraded are sent whatever this says.
struct HeaderStyle {
  RateLimitStandard standard = RateLimitStandard::kDraft8;
  bool legacy = true;  // X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset

  friend bool operator==(const HeaderStyle&, const HeaderStyle&) = default;
};

// A HeaderStyle given in part (a policy's, admin_listen's): what is not given is inherited.
struct HeaderStyleOverride {
  std::optional<RateLimitStandard> standard;
  std::optional<bool> legacy;

  bool empty() const { return !standard && !legacy; }
  // `base` with what this gives replacing its parts.
  HeaderStyle over(HeaderStyle base) const {
    if (standard) base.standard = *standard;
    if (legacy) base.legacy = *legacy;
    return base;
  }
  friend bool operator==(const HeaderStyleOverride&, const HeaderStyleOverride&) = default;
};

// One source of a client's identity; the first one present in a request names the client.
struct IdentitySource {
  enum class Kind {
    kHeader,  // the value of a request header (`header: X-API-Key`)
    kIp,      // the client address (`ip: {}`), through trusted_proxies, masked to a prefix
  };
  Kind kind = Kind::kIp;
  std::string header;    // kHeader: the header name as written (compare case-insensitively)
  int ipv4_prefix = 32;  // kIp: IPv4 clients are named by their /ipv4_prefix network (1-32)
  int ipv6_prefix = 64;  // kIp: IPv6 clients by their /ipv6_prefix (1-128): one /64 is usually
                         // one host, which can use any of its 2^64 addresses

  friend bool operator==(const IdentitySource&, const IdentitySource&) = default;
};

// Which requests a policy applies to. Every condition given must hold; none given: every request.
struct Match {
  struct Header {
    std::string name;                  // compare case-insensitively
    std::optional<std::string> value;  // nullopt: the header's presence is enough

    friend bool operator==(const Header&, const Header&) = default;
  };
  std::optional<std::string> path_prefix;  // "/api/": the path starts with it
  std::optional<std::string> path;         // "/login": the path is exactly this
  std::vector<std::string> methods;        // upper case; empty: any method
  std::optional<Header> header;

  friend bool operator==(const Match&, const Match&) = default;
};

// One entry of `policies`: the limit (a valid fg::Policy) and the requests it applies to.
struct PolicyConfig {
  Policy policy;
  Match match;
  // `identity:` of this policy: who it counts per, overriding Config::identity (empty: that
  // one). One config can so limit per API key AND per IP on the same request.
  std::vector<IdentitySource> identity;
  // `rate_limit_headers:` of this policy: the form of the fields of the responses it is the
  // headline of (http/rate_limit_headers.h: the only matching policy, else the most restrictive
  // one), over the listener's. Empty: the listener's.
  HeaderStyleOverride rate_limit_headers;
  int line = 0;  // where it starts in the source, for later messages
};

struct Cors {
  std::vector<std::string> allow_origins;  // "https://app.example.com" (no path), or "*"

  friend bool operator==(const Cors&, const Cors&) = default;
};

// Limits and timeouts of the HTTP server (`server:` in the file). Each bounds what one client can
// hold: a slow or hostile client is cut off by these without affecting anyone else.
struct ServerLimits {
  int max_connections = 10'000;              // more are accepted and closed at once (503)
  std::size_t max_header_bytes = 16 * 1024;  // request line + header section; larger: 431
  std::size_t max_body_bytes = 1024 * 1024;  // larger: 413
  // Request bodies held in memory at once, over every connection (each body being read or served
  // counts its Content-Length, or max_body_bytes when chunked); one more: 503, closed. At least
  // max_body_bytes. Without it, max_connections clients each sending max_body_bytes would hold
  // max_connections x max_body_bytes (10 GiB at the defaults).
  std::size_t max_body_memory = 256 * 1024 * 1024;
  // Upstream response bodies held in memory at once, over every connection (proxy mode): each
  // counts its allocation, grown as its bytes arrive (powers of two, never past its
  // Content-Length), until its client has been sent it. One that does not fit: 503, Retry-After 1
  // (the upstream has acted on the request). At least 65536. Without it, max_connections clients
  // each asking for a large resource, and reading it slowly, would hold as many responses.
  std::size_t max_response_memory = 256 * 1024 * 1024;
  Duration header_timeout = std::chrono::seconds(10);  // from a request's first byte to its last
                                                       // header byte; past it: 408, closed
  Duration body_timeout = std::chrono::seconds(30);    // to read the body once the header is in
  Duration idle_timeout = std::chrono::seconds(60);    // keep-alive wait for the next request
  Duration write_timeout = std::chrono::seconds(30);   // to write one response (never-reading
                                                       // clients are closed after it)
  Duration drain_delay = Duration::zero();  // SIGTERM: /readyz answers 503 this long before the
                                            // listener closes, so load balancers see it first
  Duration drain_timeout = std::chrono::seconds(30);  // then in-flight requests get this long

  friend bool operator==(const ServerLimits&, const ServerLimits&) = default;
};

// The query parameters the access log redacts unless the config names others.
std::vector<std::string> default_access_log_redact();
// 600 calls per minute per caller (token bucket), named "floodgate/check-api" ('/' cannot be in a
// configured policy's name, so its keys are its own).
Policy default_check_api_policy();

// The memory store (`memory:` in the file): used with store memory:// and by the per-instance
// fallback limiter of on_store_error: local.
struct MemoryLimits {
  // Most (identity, policy) states held. States that still count are never evicted: past this,
  // a new client's request fails as a store error (on_store_error), so size it above the states
  // of the clients active within the longest period (docs/operations.md).
  std::size_t max_keys = 1'000'000;

  friend bool operator==(const MemoryLimits&, const MemoryLimits&) = default;
};

// The deny cache (`deny_cache:` in the file; decide/deny_cache.h): a denial from a shared store
// answered again by this instance, without asking the store, until the earliest moment the store
// could allow it.
struct DenyCacheConfig {
  bool enabled = true;
  // Most plans (identity and policies) remembered; past it, older entries make room.
  std::size_t max_entries = 50'000;

  friend bool operator==(const DenyCacheConfig&, const DenyCacheConfig&) = default;
};
inline constexpr std::int64_t kMaxDenyCacheEntries = 10'000'000;

inline constexpr int kMaxThreads = 1024;
inline constexpr std::int64_t kMaxMemoryKeys = 100'000'000;  // ~30 GB at ~300 bytes a state
inline constexpr Duration kMaxStoreTimeout = std::chrono::seconds(60);
inline constexpr int kMaxFallbackInstances = 10'000;
// A concurrency policy's lease when the file gives none: how long a slot taken by an instance
// that then died stays taken (a live instance renews its slots while a request lasts).
inline constexpr Duration kDefaultLease = std::chrono::seconds(30);
inline constexpr std::size_t kMaxNameLength = 64;      // policy names and key_prefix
inline constexpr std::size_t kMinKeySecretBytes = 16;  // key_secret, in characters
inline constexpr std::size_t kMaxKeySecretBytes = 1024;

struct Config {
  std::string source = "<default>";    // the file name it came from, for messages
  HostPort listen{"127.0.0.1", 8080};  // port 0: a free port, chosen at start-up
  int threads = 1;  // parsed configs default to std::thread::hardware_concurrency()
  StoreUrl store;   // default: memory://
  Duration store_timeout = std::chrono::milliseconds(20);  // deadline of one store decision
  OnStoreError on_store_error = OnStoreError::kAllow;
  int local_fallback_instances = 1;   // `local_fallback: {instances: N}`: with
                                      // on_store_error: local, each limit is divided by N
  std::vector<Cidr> trusted_proxies;  // peers whose X-Forwarded-For is believed
  std::optional<HostPort> upstream;   // `http://host:port`; none: the built-in demo resource
  Duration upstream_timeout = std::chrono::seconds(30);  // one proxied exchange; past it: 504
  // How long a request that holds concurrency slots keeps them at most once it has been answered
  // 504 (past upstream_timeout): until the upstream answers it, or this long after it was sent.
  // Servers do not stop a handler when its client gives up. At least upstream_timeout.
  Duration upstream_hold_timeout = std::chrono::minutes(10);
  std::string key_prefix = "fg";  // [A-Za-z0-9_.-]+, first part of every Redis key
  // Keys the hash tag of every Redis key (store/redis/keys.h), so that no client can choose the
  // cluster slot its keys land in. Shared by every instance of a deployment; empty: a public
  // key (a client can then aim its identities at one slot: fine for one Redis, not a cluster).
  std::string key_secret;
  // Where /metrics is served instead of `listen` (with /healthz and /readyz, which stay on
  // `listen` too); none: everything on `listen`.
  std::optional<HostPort> admin_listen;
  std::optional<Cors> cors;
  std::vector<IdentitySource> identity;  // non-empty; default [ip]
  std::vector<PolicyConfig> policies;    // non-empty, unique names, in file order
  ServerLimits server;
  MemoryLimits memory;
  DenyCacheConfig deny_cache;
  bool access_log = false;  // one JSON line per request on stdout
  // Query parameters whose values the access log shows as "REDACTED" (names compared
  // case-insensitively, after percent-decoding): `access_log: {enabled: true, redact: [...]}`.
  std::vector<std::string> access_log_redact = default_access_log_redact();
  // POST /v1/check (`check_api`): on admin_listen when that is set, else on `listen`, where each
  // caller (named by `identity`) is itself limited by `check_api_policy`; `check_api: false`
  // serves it nowhere.
  bool check_api = true;
  Policy check_api_policy = default_check_api_policy();
  // GET /dashboard and /v1/status (docs/status.md) show client identities: on admin_listen when
  // that is set; else on `listen` only when it is a loopback address, or with
  // `dashboard: {public: true}`.
  bool dashboard_public = false;
  // The form of the rate-limit fields on `listen` (`rate_limit_headers: {standard, legacy}`), and
  // on admin_listen, where /v1/check answers carry the checked key's fields
  // (`admin_rate_limit_headers`, over this one). A policy's own choice overrides both for the
  // responses it is the headline of: header_style() below.
  HeaderStyle rate_limit_headers;
  HeaderStyleOverride admin_rate_limit_headers;

  // The policy named `name`, or nullptr.
  const PolicyConfig* find_policy(std::string_view name) const;
  // The identity sources `pc` counts per: its own, else the global ones.
  const std::vector<IdentitySource>& identity_of(const PolicyConfig& pc) const {
    return pc.identity.empty() ? identity : pc.identity;
  }
};

// The form of the rate-limit fields of one response: the listener's (`rate_limit_headers`, with
// `admin_rate_limit_headers` over it on admin_listen), then, over that, the parts the headline
// policy gives (`policy_index` into policies; out of range, e.g. the check API's own policy:
// none).
HeaderStyle header_style(const Config& config, bool admin_listener, std::size_t policy_index);

// One problem in a config source. `line` is 1-based, 0 when unknown (an unreadable file).
struct Problem {
  std::string source;
  int line = 0;
  std::string path;  // "policies[1].period"; empty for the file as a whole
  std::string message;

  // "<source>:<line>: <path>: <message>", leaving out the parts that are empty or 0.
  std::string to_string() const;
};

// At most this many problems are reported; the last one then says that there were more.
inline constexpr std::size_t kMaxProblems = 100;
// Larger files are refused (a rate-limit config is a few kilobytes).
inline constexpr std::size_t kMaxFileBytes = 1 << 20;

// Parses YAML text; `source_name` is used in messages (the file name, or "<flag>").
Result<Config> parse_config(std::string_view yaml_text, std::string_view source_name);
// Reads and parses a file; a file that cannot be read is one problem.
Result<Config> load_config_file(const std::string& path);

// The problems parse_config / load_config_file would report; empty when the config is valid.
std::vector<Problem> config_problems(std::string_view yaml_text, std::string_view source_name);
std::vector<Problem> config_file_problems(const std::string& path);

// The configuration with no file (design §2.1): 127.0.0.1:8080, memory store, identity
// [header X-API-Key, ip], one policy "per-minute" allowing 100 requests per 60s on /api/
// (token bucket, burst 100).
Config default_config();

// Reload (SIGHUP): the fields a running server cannot change without a restart, named as in the
// file: listen, admin_listen, threads, store, store_timeout, key_prefix, key_secret, memory. This
// is the one list of them.
std::vector<std::string_view> restart_only_fields();
// Sets every restart-only field of `next` that differs from `running` back to `running`'s value
// and answers their names, in the order of restart_only_fields(): what a reload keeps as it was.
std::vector<std::string> keep_restart_only_fields(const Config& running, Config& next);

}  // namespace fg::config
