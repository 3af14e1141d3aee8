// commands.h — what the `floodgate` subcommands do, apart from parsing their flags.
//
// Each command writes its normal output to `out` and its problems to `err`, and returns the
// process exit code. Kept apart from main.cc so that only main.cc includes CLI11.
//
// Exit codes (design §2.1):
//   validate  0 valid; 1 one or more problems (one line each on `err`).
//   check     0 allowed; 1 denied; 2 no decision (bad config, unknown policy, bad flag, store
//             error), with the reason on `err`.
//   serve     0 after a drain; 1 when it cannot start.
//
// Thread safety: each call is independent; call from one thread.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace fg::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitDenied = 1;   // check: the decision was "no"
inline constexpr int kExitInvalid = 1;  // validate: the config has problems
inline constexpr int kExitNoDecision = 2;
inline constexpr int kExitUsage = 2;  // bad command line

// `floodgate validate FILE`: "FILE: ok (N policies)" on `out`, or one line per problem on `err`.
// A directory is envoyproxy/ratelimit's runtime directory: "DIR: ok (N domains in M files)", or
// upstream's load error on `err`.
int run_validate(const std::string& path, std::ostream& out, std::ostream& err);

struct CheckArgs {
  std::optional<std::string> config_path;  // none: the built-in default config
  std::string policy;
  std::string key;                   // the identity, any bytes
  std::optional<std::int64_t> cost;  // none: the policy's cost
  std::optional<std::string> store;  // overrides the config's store URL
};

// `floodgate check`: one decision, printed as one JSON line on `out`:
//   {"allowed":true,"policy":"per-minute","limit":100,"remaining":99,"reset_after_ms":600,
//    "retry_after_ms":0}
// Durations are rounded up to whole milliseconds.
int run_check(const CheckArgs& args, std::ostream& out, std::ostream& err);

struct ServeArgs {
  std::optional<std::string> config_path;  // none: the built-in default config
  std::optional<std::string> listen;       // overrides `listen` (HOST:PORT)
  std::optional<std::string> store;        // overrides `store`
  std::optional<int> threads;              // overrides `threads`
  std::string version;
};

// `floodgate serve`: runs the HTTP server until SIGTERM or SIGINT, which drain it (a second one
// stops it at once); SIGHUP reloads the config file (the flags still override it). Logs go to
// stderr, the access log (when on) to stdout. Exit 0 after a drain; 1 when it cannot start (bad
// config, bad flag, address in use), with the reason on `err`.
int run_serve(const ServeArgs& args, std::ostream& err);

struct RlsArgs {
  std::optional<std::string> store;  // overrides REDIS_* / BACKEND_TYPE
  std::string version;
};

// `floodgate rls`: envoyproxy/ratelimit's service (rls/server.h), configured by its environment
// variables (rls/settings.h). Runs until SIGTERM or SIGINT (health turns NOT_SERVING, then the
// listeners stop); exit 0 then, 1 when it cannot start (bad variable, unloadable configuration
// without FORCE_START_WITHOUT_INITIAL_CONFIG, address in use), with the reason on `err`.
int run_rls(const RlsArgs& args, std::ostream& err);

struct DebugKeyArgs {
  std::optional<std::string> config_path;  // none: the built-in default config
  std::string policy;
  std::optional<std::string> identity;  // the identity as an instance names it ("key:x-api-key:k")
  std::optional<std::string> header;  // or a request header "Name: value", identified as serve does
};

// `floodgate debug-key` (hidden; for tests and operators): the Redis key and cluster slot an
// instance with this config uses for (identity, policy), computed by the store's own code
// (store/redis/keys.h: key_prefix, key_secret): "<key> <slot>" on `out`. With --header, the
// identity is what serve derives from that one header under the config's identity sources
// (a request from 127.0.0.1 with no X-Forwarded-For). Exit 0, or 2 with the reason on `err`.
int run_debug_key(const DebugKeyArgs& args, std::ostream& out, std::ostream& err);

}  // namespace fg::app
