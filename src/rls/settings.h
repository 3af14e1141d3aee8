// settings.h — `floodgate rls` configured as envoyproxy/ratelimit is: its environment variables,
// with its defaults (its settings.go), read once at start-up.
//
// Accepted and acted on: RUNTIME_ROOT, RUNTIME_SUBDIRECTORY, RUNTIME_APPDIRECTORY,
// RUNTIME_WATCH_ROOT, RUNTIME_IGNOREDOTFILES, HOST/PORT, GRPC_HOST/GRPC_PORT,
// DEBUG_HOST/DEBUG_PORT, BACKEND_TYPE (redis; floodgate adds `memory`), REDIS_SOCKET_TYPE,
// REDIS_TYPE, REDIS_URL, REDIS_AUTH, REDIS_TLS, REDIS_TIMEOUT, CACHE_KEY_PREFIX,
// LOCAL_CACHE_SIZE_IN_BYTES, NEAR_LIMIT_RATIO, SHADOW_MODE, QUOTA_MODE,
// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT, LIMIT_RESPONSE_HEADERS_ENABLED, LIMIT_LIMIT_HEADER,
// LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER, MERGE_DOMAIN_CONFIG, RESPONSE_DYNAMIC_METADATA,
// FORCE_START_WITHOUT_INITIAL_CONFIG, HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED, LOG_LEVEL,
// LOG_FORMAT.
// floodgate's own (FLOODGATE_RLS_*): FLOODGATE_RLS_ALGORITHM (how rules without `algorithm:` are
// counted: counter, upstream's, by default; fixed_window, token_bucket, gcra, sliding_window),
// FLOODGATE_RLS_ON_STORE_ERROR (allow, the default; deny; error: the call fails, as upstream's
// does, and Envoy's failure_mode_deny decides).
// Accepted and ignored (floodgate pipelines and pools on its own): REDIS_POOL_SIZE,
// REDIS_PIPELINE_WINDOW, REDIS_PIPELINE_LIMIT, EXPIRATION_JITTER_MAX_SECONDS. Statsd is not
// supported: floodgate serves Prometheus on DEBUG_HOST:DEBUG_PORT/metrics instead, and
// USE_STATSD=true (upstream's default) only draws a warning at start-up.
//
// Failure: kInvalidArgument naming the variable ("NEAR_LIMIT_RATIO: \"x\" is not a number").
// Thread safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/envoy_descriptors.h"
#include "floodgate/result.h"

namespace fg::rls {

struct Settings {
  std::string runtime_root = "/srv/runtime_data/current";
  std::string runtime_subdirectory;
  std::string runtime_app_directory = "config";
  bool runtime_watch_root = true;
  bool runtime_ignore_dot_files = false;

  std::string host = "0.0.0.0";
  int port = 8080;  // HTTP: POST /json, GET /healthcheck
  std::string grpc_host = "0.0.0.0";
  int grpc_port = 8081;
  std::string debug_host = "0.0.0.0";
  int debug_port = 6070;  // /rlconfig, /metrics

  std::string backend_type = "redis";  // redis | memory
  std::string redis_socket_type = "unix";
  std::string redis_type = "SINGLE";  // SINGLE | CLUSTER (any case); SENTINEL is refused
  std::string redis_url = "/var/run/nutcracker/ratelimit.sock";
  std::string redis_auth;  // "password" or "user:password"
  bool redis_tls = false;
  // floodgate's deadline of one store decision; upstream's 10 s default would stall a proxy, so
  // an unset REDIS_TIMEOUT keeps floodgate's own default.
  std::optional<std::chrono::milliseconds> redis_timeout;

  std::string cache_key_prefix;
  std::int64_t local_cache_size_in_bytes = 0;
  float near_limit_ratio = 0.8F;
  bool global_shadow_mode = false;
  bool global_quota_mode = false;
  bool stop_cache_key_increment_when_overlimit = false;
  bool response_headers_enabled = false;
  std::string header_limit = "RateLimit-Limit";
  std::string header_remaining = "RateLimit-Remaining";
  std::string header_reset = "RateLimit-Reset";
  bool merge_domain_config = false;
  bool response_dynamic_metadata = false;
  bool force_start_without_initial_config = false;
  bool healthy_with_at_least_one_config_loaded = false;
  std::string log_level = "WARN";
  std::string log_format = "text";
  bool use_statsd = false;  // only warned about

  // FLOODGATE_RLS_ALGORITHM: how rules without `algorithm:` are counted.
  config::envoy::Counting default_counting = config::envoy::Counting::kCounter;
  // FLOODGATE_RLS_ON_STORE_ERROR: what a store that cannot answer gets (after REDIS_TIMEOUT, or
  // at once while the circuit breaker is open).
  enum class OnStoreError { kAllow, kDeny, kError };
  OnStoreError on_store_error = OnStoreError::kAllow;

  // The directory whose files are the configuration: RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/
  // RUNTIME_APPDIRECTORY.
  std::string config_dir() const;
  // The runtime name prefix of its files, as upstream names them in its errors: relative to the
  // watched directory, so "config." under RUNTIME_WATCH_ROOT (the default: "config.basic"), and
  // none without it ("basic").
  std::string file_prefix() const {
    return runtime_watch_root ? runtime_app_directory + "." : std::string();
  }
  // The store URL these settings name (memory://, redis://, rediss://, redis-cluster://,
  // rediss-cluster://: REDIS_TYPE=cluster with REDIS_TLS=true).
  Result<std::string> store_url() const;
};

// The settings from `env` (a lookup: nullopt when the variable is not set).
Result<Settings> settings_from_env(
    const std::function<std::optional<std::string>(std::string_view)>& env);

}  // namespace fg::rls
