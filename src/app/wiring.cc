#include "app/wiring.h"

#include <utility>

namespace fg {

OpenStoreOptions store_options(const config::Config& c) {
  OpenStoreOptions o;
  o.key_prefix = c.key_prefix;
  o.key_secret = c.key_secret;
  o.timeout = c.store_timeout;
  o.memory.max_keys = c.memory.max_keys;
  return o;
}

redis::RedisEndpoint redis_endpoint(const config::StoreUrl& url) {
  redis::RedisEndpoint e;
  e.cluster = url.kind == config::StoreKind::kRedisCluster;
  for (const config::HostPort& hp : url.hosts)
    e.hosts.push_back(redis::RedisHost{hp.host, hp.port});
  e.user = url.user;
  e.password = url.password;
  e.db = url.db;
  e.tls = url.tls;
  e.tls_options.ca_file = url.tls_options.ca_file;
  e.tls_options.cert_file = url.tls_options.cert_file;
  e.tls_options.key_file = url.tls_options.key_file;
  e.tls_options.server_name = url.tls_options.server_name;
  e.tls_options.verify = url.tls_options.verify;
  return e;
}

Result<std::unique_ptr<Store>> open_store(const config::StoreUrl& url,
                                          const OpenStoreOptions& options, const Clock& clock) {
  if (url.kind == config::StoreKind::kMemory) return make_memory_store(options.memory, clock);
  redis::RedisStoreOptions redis_options;
  redis_options.url = redis_endpoint(url);
  redis_options.key_prefix = options.key_prefix;
  redis_options.key_secret = options.key_secret;
  redis_options.timeout = options.timeout;
  return redis::make_redis_store(redis_options);
}

Result<ServedStore> open_served_store(const config::StoreUrl& url, const OpenStoreOptions& options,
                                      const Clock& clock) {
  auto s = open_store(url, options, clock);
  if (!s) return tl::unexpected(s.error());
  return serve_store(std::shared_ptr<Store>(std::move(*s)));
}

}  // namespace fg

namespace fg::redis {

Result<void> parse_redis_url(std::string_view text, RedisStoreOptions& options) {
  auto url = config::parse_store_url(text);
  if (!url) return tl::unexpected(url.error());
  if (url->kind == config::StoreKind::kMemory) {
    return fail(ErrorCode::kInvalidArgument, "not a Redis URL: " + config::to_string(*url));
  }
  options.url = redis_endpoint(*url);
  return {};
}

}  // namespace fg::redis
