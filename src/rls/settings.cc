// settings.cc — envoyproxy/ratelimit's environment variables. Booleans parse as Go's
// strconv.ParseBool does (1 t T TRUE true True, 0 f F FALSE false False), durations as Go's
// "250ms" / "10s" / "1m" (whole milliseconds or more).
#include "rls/settings.h"

#include <charconv>
#include <filesystem>

#include "util/text.h"

namespace fg::rls {
namespace {

using Env = std::function<std::optional<std::string>(std::string_view)>;

Result<void> read_bool(const Env& env, std::string_view name, bool& out) {
  const auto v = env(name);
  if (!v) return {};
  static constexpr std::string_view kTrue[] = {"1", "t", "T", "TRUE", "true", "True"};
  static constexpr std::string_view kFalse[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (std::string_view t : kTrue) {
    if (*v == t) return out = true, Result<void>{};
  }
  for (std::string_view f : kFalse) {
    if (*v == f) return out = false, Result<void>{};
  }
  return fail(ErrorCode::kInvalidArgument,
              std::string(name) + ": \"" + *v + "\" is not a boolean (true or false)");
}

void read_string(const Env& env, std::string_view name, std::string& out) {
  if (auto v = env(name)) out = *v;
}

template <typename Int>
Result<void> read_int(const Env& env, std::string_view name, Int& out) {
  const auto v = env(name);
  if (!v) return {};
  Int n{};
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || end != v->data() + v->size()) {
    return fail(ErrorCode::kInvalidArgument,
                std::string(name) + ": \"" + *v + "\" is not an integer");
  }
  out = n;
  return {};
}

Result<void> read_port(const Env& env, std::string_view name, int& out) {
  if (auto r = read_int(env, name, out); !r) return r;
  if (out < 0 || out > 65535) {
    return fail(ErrorCode::kInvalidArgument, std::string(name) + ": not a port (0 to 65535)");
  }
  return {};
}

Result<void> read_duration_ms(const Env& env, std::string_view name,
                              std::optional<std::chrono::milliseconds>& out) {
  const auto v = env(name);
  if (!v) return {};
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  const std::string_view unit(end, static_cast<std::size_t>(v->data() + v->size() - end));
  std::int64_t scale = 0;
  if (unit == "ms") scale = 1;
  if (unit == "s") scale = 1000;
  if (unit == "m") scale = 60'000;
  if (ec != std::errc() || scale == 0 || n <= 0) {
    return fail(ErrorCode::kInvalidArgument,
                std::string(name) + ": \"" + *v + "\" is not a positive duration (250ms, 1s, 1m)");
  }
  out = std::chrono::milliseconds(n * scale);
  return {};
}

}  // namespace

std::string Settings::config_dir() const {
  std::filesystem::path p(runtime_root);
  if (!runtime_subdirectory.empty()) p /= runtime_subdirectory;
  p /= runtime_app_directory;
  return p.string();
}

Result<std::string> Settings::store_url() const {
  if (util::iequals(backend_type, "memory")) return std::string("memory://");
  if (!util::iequals(backend_type, "redis")) {
    return fail(ErrorCode::kInvalidArgument,
                "BACKEND_TYPE: \"" + backend_type + "\" is not supported (redis or memory)");
  }
  if (!util::iequals(redis_socket_type, "tcp")) {
    return fail(ErrorCode::kInvalidArgument,
                "REDIS_SOCKET_TYPE: \"" + redis_socket_type +
                    "\": floodgate reaches Redis over tcp only (set REDIS_SOCKET_TYPE=tcp and "
                    "REDIS_URL=host:port)");
  }
  if (redis_url.starts_with("redis://") || redis_url.starts_with("rediss://") ||
      redis_url.starts_with("redis-cluster://") || redis_url.starts_with("rediss-cluster://")) {
    return redis_url;
  }
  std::string auth;
  if (!redis_auth.empty()) {
    auth = redis_auth.find(':') == std::string::npos ? ":" + redis_auth : redis_auth;
    auth += "@";
  }
  if (util::iequals(redis_type, "single")) {
    return std::string(redis_tls ? "rediss://" : "redis://") + auth + redis_url;
  }
  if (util::iequals(redis_type, "cluster")) {
    return std::string(redis_tls ? "rediss-cluster://" : "redis-cluster://") + auth + redis_url;
  }
  return fail(ErrorCode::kInvalidArgument,
              "REDIS_TYPE: \"" + redis_type + "\" is not supported (single or cluster)");
}

Result<Settings> settings_from_env(const Env& env) {
  Settings s;
  read_string(env, "RUNTIME_ROOT", s.runtime_root);
  read_string(env, "RUNTIME_SUBDIRECTORY", s.runtime_subdirectory);
  read_string(env, "RUNTIME_APPDIRECTORY", s.runtime_app_directory);
  read_string(env, "HOST", s.host);
  read_string(env, "GRPC_HOST", s.grpc_host);
  read_string(env, "DEBUG_HOST", s.debug_host);
  read_string(env, "BACKEND_TYPE", s.backend_type);
  read_string(env, "REDIS_SOCKET_TYPE", s.redis_socket_type);
  read_string(env, "REDIS_TYPE", s.redis_type);
  read_string(env, "REDIS_URL", s.redis_url);
  read_string(env, "REDIS_AUTH", s.redis_auth);
  read_string(env, "CACHE_KEY_PREFIX", s.cache_key_prefix);
  read_string(env, "LIMIT_LIMIT_HEADER", s.header_limit);
  read_string(env, "LIMIT_REMAINING_HEADER", s.header_remaining);
  read_string(env, "LIMIT_RESET_HEADER", s.header_reset);
  read_string(env, "LOG_LEVEL", s.log_level);
  read_string(env, "LOG_FORMAT", s.log_format);
  for (const auto& r : {
           read_bool(env, "RUNTIME_WATCH_ROOT", s.runtime_watch_root),
           read_bool(env, "RUNTIME_IGNOREDOTFILES", s.runtime_ignore_dot_files),
           read_bool(env, "REDIS_TLS", s.redis_tls),
           read_bool(env, "SHADOW_MODE", s.global_shadow_mode),
           read_bool(env, "QUOTA_MODE", s.global_quota_mode),
           read_bool(env, "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
                     s.stop_cache_key_increment_when_overlimit),
           read_bool(env, "LIMIT_RESPONSE_HEADERS_ENABLED", s.response_headers_enabled),
           read_bool(env, "MERGE_DOMAIN_CONFIG", s.merge_domain_config),
           read_bool(env, "RESPONSE_DYNAMIC_METADATA", s.response_dynamic_metadata),
           read_bool(env, "FORCE_START_WITHOUT_INITIAL_CONFIG",
                     s.force_start_without_initial_config),
           read_bool(env, "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED",
                     s.healthy_with_at_least_one_config_loaded),
           read_bool(env, "USE_STATSD", s.use_statsd),
           read_port(env, "PORT", s.port),
           read_port(env, "GRPC_PORT", s.grpc_port),
           read_port(env, "DEBUG_PORT", s.debug_port),
           read_int(env, "LOCAL_CACHE_SIZE_IN_BYTES", s.local_cache_size_in_bytes),
           read_duration_ms(env, "REDIS_TIMEOUT", s.redis_timeout),
       }) {
    if (!r) return tl::unexpected(r.error());
  }
  if (auto v = env("NEAR_LIMIT_RATIO")) {
    char* end = nullptr;
    const float ratio = std::strtof(v->c_str(), &end);
    if (v->empty() || end != v->c_str() + v->size() || !(ratio >= 0)) {
      return fail(ErrorCode::kInvalidArgument,
                  "NEAR_LIMIT_RATIO: \"" + *v + "\" is not a non-negative number");
    }
    s.near_limit_ratio = ratio;
  }
  if (auto v = env("FLOODGATE_RLS_ALGORITHM"); v && !v->empty()) {
    const auto counting = config::envoy::parse_counting(*v);
    if (!counting) {
      return fail(ErrorCode::kInvalidArgument,
                  "FLOODGATE_RLS_ALGORITHM: \"" + *v +
                      "\" is not an algorithm (counter, fixed_window, token_bucket, gcra or "
                      "sliding_window)");
    }
    s.default_counting = *counting;
  }
  if (auto v = env("FLOODGATE_RLS_ON_STORE_ERROR"); v && !v->empty()) {
    if (*v == "allow") {
      s.on_store_error = Settings::OnStoreError::kAllow;
    } else if (*v == "deny") {
      s.on_store_error = Settings::OnStoreError::kDeny;
    } else if (*v == "error") {
      s.on_store_error = Settings::OnStoreError::kError;
    } else {
      return fail(ErrorCode::kInvalidArgument,
                  "FLOODGATE_RLS_ON_STORE_ERROR: \"" + *v + "\" is not allow, deny or error");
    }
  }
  return s;
}

}  // namespace fg::rls
