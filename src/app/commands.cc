#include "app/commands.h"

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <future>
#include <ostream>
#include <utility>

#include "app/fleet.h"
#include "app/wiring.h"
#include "config/config.h"
#include "config/envoy_descriptors.h"
#include "decide/decider.h"
#include "decide/identity.h"
#include "decide/plan.h"
#include "floodgate/clock.h"
#include "floodgate/limiter.h"
#include "floodgate/policy.h"
#include "floodgate/store.h"
#include "http/handler.h"
#include "http/server.h"
#include "rls/server.h"
#include "rls/service.h"
#include "rls/settings.h"
#include "store/redis/keys.h"
#include "util/text.h"

namespace fg::app {

namespace {

std::optional<std::string> getenv_of(std::string_view name) {
  const char* v = std::getenv(std::string(name).c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

// `floodgate validate DIR`: envoyproxy/ratelimit's runtime directory, loaded as `rls` would
// (MERGE_DOMAIN_CONFIG and RUNTIME_IGNOREDOTFILES from the environment), files named
// "<dir name>.<file>" as upstream names them.
int validate_descriptor_dir(const std::string& path, std::ostream& out, std::ostream& err) {
  auto settings = rls::settings_from_env(getenv_of);
  if (!settings) {
    err << settings.error().message << '\n';
    return kExitInvalid;
  }
  const std::string name = std::filesystem::path(path).lexically_normal().filename().string();
  auto files = config::envoy::read_runtime_dir(
      path,
      (name.empty() ? std::filesystem::path(path).parent_path().filename().string() : name) + ".",
      settings->runtime_ignore_dot_files);
  if (!files) {
    err << files.error().message << '\n';
    return kExitInvalid;
  }
  auto tree = config::envoy::load_descriptor_config(
      *files, config::envoy::LoadOptions{.merge_domains = settings->merge_domain_config,
                                         .default_counting = settings->default_counting});
  if (!tree) {
    err << tree.error().message << '\n';
    return kExitInvalid;
  }
  const std::size_t n = tree->domains.size();
  out << path << ": ok (" << n << (n == 1 ? " domain" : " domains") << " in " << files->size()
      << (files->size() == 1 ? " file)" : " files)") << '\n';
  return kExitOk;
}

}  // namespace

int run_validate(const std::string& path, std::ostream& out, std::ostream& err) {
  if (std::error_code ec; std::filesystem::is_directory(path, ec)) {
    return validate_descriptor_dir(path, out, err);
  }
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
  if (!valid_cost(cost)) {
    err << "--cost: must be from 0 to " << kMaxCount << '\n';
    return kExitNoDecision;
  }
  const OpenStoreOptions opened_with = store_options(*cfg);
  auto store = open_store(store_url, opened_with, SystemClock::instance());
  if (!store) {
    err << "store " << config::to_string(store_url) << ": " << store.error().to_string() << '\n';
    return kExitNoDecision;
  }
  // The deciding service, as the server runs it: the same guard, on_store_error (local: this
  // process's own limiter) and answer.
  auto rules = decide::make_rules(std::make_shared<const config::Config>(std::move(*cfg)));
  const auto plan = decide::check_plan(*rules, args.policy, args.key, cost);
  decide::DeciderOptions options;
  options.store = std::shared_ptr<Store>(std::move(*store));
  options.local_store = make_memory_store(opened_with.memory, SystemClock::instance());
  options.on_degraded = [&](const Error& why, config::OnStoreError mode) {
    err << "store " << config::to_string(store_url) << ": " << why.to_string()
        << "; answered with on_store_error: " << config::to_string(mode) << '\n';
  };
  decide::Decider decider(std::move(options));
  std::promise<decide::Outcome> promise;
  auto answer = promise.get_future();
  decider.decide(*rules, *plan, nullptr,
                 [&promise](decide::Outcome o) { promise.set_value(std::move(o)); });
  const decide::Outcome outcome = answer.get();
  const auto json = http::check_outcome_json(args.policy, outcome);
  if (!json) {
    if (outcome.verdict) return kExitNoDecision;  // not reached: a verdict is always printed
    if (outcome.degraded == decide::Degraded::kNo) {
      err << "store " << config::to_string(store_url) << ": " << outcome.verdict.error().to_string()
          << '\n';
    }
    return kExitNoDecision;
  }
  out << *json << '\n';
  return outcome.served() ? kExitOk : kExitDenied;
}

namespace {

// The config for `serve`: the file (or the default) with the flags applied over it.
Result<std::shared_ptr<const config::Config>> serve_config(const ServeArgs& args) {
  Result<config::Config> cfg =
      args.config_path ? config::load_config_file(*args.config_path) : config::default_config();
  if (!cfg) return tl::unexpected(cfg.error());
  if (args.listen) {
    auto hp = config::parse_host_port(*args.listen, /*allow_port_zero=*/true);
    if (!hp) return fail(ErrorCode::kInvalidArgument, "--listen: " + hp.error().message);
    cfg->listen = std::move(*hp);
  }
  if (args.store) {
    auto url = config::parse_store_url(*args.store);
    if (!url) return fail(ErrorCode::kInvalidArgument, "--store: " + url.error().message);
    cfg->store = std::move(*url);
  }
  if (args.threads) {
    if (*args.threads < 1 || *args.threads > config::kMaxThreads) {
      return fail(ErrorCode::kInvalidArgument,
                  "--threads: must be from 1 to " + std::to_string(config::kMaxThreads));
    }
    cfg->threads = *args.threads;
  }
  return std::make_shared<const config::Config>(std::move(*cfg));
}

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("floodgate");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
}

}  // namespace

int run_rls(const RlsArgs& args, std::ostream& err) {
  auto settings = rls::settings_from_env(getenv_of);
  if (!settings) {
    err << settings.error().message << '\n';
    return 1;
  }
  setup_logging();
  if (util::iequals(settings->log_level, "debug")) spdlog::set_level(spdlog::level::debug);
  if (util::iequals(settings->log_level, "info")) spdlog::set_level(spdlog::level::info);
  if (util::iequals(settings->log_level, "warn")) spdlog::set_level(spdlog::level::warn);
  if (util::iequals(settings->log_level, "error")) spdlog::set_level(spdlog::level::err);
  if (settings->log_format == "json") {
    spdlog::set_pattern(R"({"@timestamp":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","@message":"%v"})",
                        spdlog::pattern_time_type::utc);
  }
  if (settings->use_statsd) {
    spdlog::warn(
        "USE_STATSD: statsd is not supported; the same counters are on "
        "http://{}:{}/metrics (set USE_STATSD=false to silence this)",
        settings->debug_host, settings->debug_port);
  }
  std::string url_text;
  if (args.store) {
    url_text = *args.store;
  } else {
    auto named = settings->store_url();
    if (!named) {
      err << named.error().message << '\n';
      return 1;
    }
    url_text = *named;
  }
  auto url = config::parse_store_url(url_text);
  if (!url) {
    err << (args.store ? "--store: " : "REDIS_URL: ") << url.error().message << '\n';
    return 1;
  }
  OpenStoreOptions store_opts;
  if (settings->redis_timeout) store_opts.timeout = *settings->redis_timeout;
  auto store = open_store(*url, store_opts, SystemClock::instance());
  if (!store) {
    err << "store " << config::to_string(*url) << ": " << store.error().to_string() << '\n';
    return 1;
  }
  decide::DeciderOptions options;
  options.store = std::shared_ptr<Store>(std::move(*store));
  options.local_store = make_memory_store(store_opts.memory, SystemClock::instance());
  options.on_degraded = [](const Error& why, config::OnStoreError mode) {
    spdlog::warn("store: {}; answered with on_store_error: {}", why.to_string(),
                 config::to_string(mode));
  };
  decide::Decider decider(std::move(options));
  rls::Service service(*settings, decider, SystemClock::instance());
  auto initial = rls::load_snapshot(*settings);
  if (initial) {
    service.set_config(std::move(*initial));
    service.metrics().config_load_success.fetch_add(1);
  } else if (settings->force_start_without_initial_config) {
    service.metrics().config_load_error.fetch_add(1);
    spdlog::warn(
        "no initial configuration ({}); starting anyway "
        "(FORCE_START_WITHOUT_INITIAL_CONFIG)",
        initial.error().message);
  } else {
    err << initial.error().message << '\n';
    return 1;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  rls::Server server(*settings, service);
  if (auto started = server.start(); !started) {
    err << started.error().message << '\n';
    return 1;
  }
  spdlog::info("floodgate {} rls: store {}, config {}", args.version, config::to_string(*url),
               settings->config_dir());
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: stopping", sig);
  server.fail_health();
  server.stop();
  return 0;
}

int run_serve(const ServeArgs& args, std::ostream& err) {
  auto cfg = serve_config(args);
  if (!cfg) {
    err << cfg.error().message << '\n';
    return 1;
  }
  // Signals are taken by this thread alone, with sigtimedwait: block them before any thread
  // starts, so every server thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a peer that went away is an error code, not a signal
  setup_logging();

  http::ServerOptions options;
  options.config = *cfg;
  options.version = args.version;
  {
    const config::Config& c = **cfg;
    auto store = open_store(c.store, store_options(c), SystemClock::instance());
    if (!store) {
      err << "store " << config::to_string(c.store) << ": " << store.error().message << '\n';
      return 1;
    }
    options.store = std::shared_ptr<Store>(std::move(*store));
    if (c.store.kind != config::StoreKind::kMemory) {
      // The fleet view of /v1/status: every instance's record through the shared Redis.
      RedisFleetOptions f;
      f.endpoint = redis_endpoint(c.store);
      f.key_prefix = c.key_prefix;
      f.store_kind = std::string(options.store->kind());
      std::string why;
      options.fleet = make_redis_fleet(std::move(f), &why);
      if (!options.fleet) {
        spdlog::warn("the status page shows this instance alone: no fleet view ({})", why);
      }
    }
  }
  auto server = http::Server::make(options);
  if (!server) {
    err << server.error().message << '\n';
    return 1;
  }
  const config::Config& c = **cfg;
  (*server)->start();
  spdlog::info(
      "floodgate {} serving on http://{}:{} ({} thread{}, store {}, {} polic{}{})", args.version,
      c.listen.host.find(':') != std::string::npos ? "[" + c.listen.host + "]" : c.listen.host,
      (*server)->port(), c.threads, c.threads == 1 ? "" : "s", config::to_string(c.store),
      c.policies.size(), c.policies.size() == 1 ? "y" : "ies",
      c.upstream ? ", upstream http://" + config::to_string(*c.upstream) : "");
  if (c.admin_listen) {
    spdlog::info("/metrics on http://{}:{} only (with /healthz and /readyz)",
                 c.admin_listen->host.find(':') != std::string::npos
                     ? "[" + c.admin_listen->host + "]"
                     : c.admin_listen->host,
                 (*server)->admin_port());
  }
  {
    const bool admin = c.admin_listen.has_value();
    const config::HostPort& where = admin ? *c.admin_listen : c.listen;
    if (admin || c.dashboard_public || http::is_loopback_host(c.listen.host)) {
      spdlog::info("dashboard on http://{}:{}/dashboard (its data: /v1/status)",
                   where.host.find(':') != std::string::npos ? "[" + where.host + "]" : where.host,
                   admin ? (*server)->admin_port() : (*server)->port());
    }
  }
  if (c.store.kind == config::StoreKind::kRedisCluster && c.key_secret.empty()) {
    spdlog::warn(
        "no key_secret: the cluster slot of each client's keys can be computed from its "
        "identity, so a client with many identities can aim them all at one master; set "
        "key_secret (the same on every instance) to prevent it");
  }

  const timespec tick{0, 200'000'000};
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGHUP) {
      if (!args.config_path) {
        spdlog::warn("SIGHUP: no config file to reload (started without --config)");
        continue;
      }
      auto next = serve_config(args);
      if (!next) {
        (*server)->reload_failed();
        spdlog::error("SIGHUP: {} is invalid; keeping the running config:\n{}", *args.config_path,
                      next.error().message);
        continue;
      }
      const std::vector<std::string> ignored = (*server)->reload(*next);
      std::string note;
      for (const std::string& f : ignored) note += (note.empty() ? "" : ", ") + f;
      spdlog::info("SIGHUP: reloaded {} ({} policies){}", *args.config_path,
                   (*next)->policies.size(),
                   note.empty() ? "" : "; needs a restart, kept as it was: " + note);
    } else if (sig == SIGTERM || sig == SIGINT) {
      if ((*server)->draining()) {
        spdlog::warn("{} again: stopping now", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        (*server)->stop();
        break;
      }
      spdlog::info("{}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      (*server)->drain();
    } else if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      spdlog::error("sigtimedwait: {}", std::strerror(errno));
      break;
    }
    if ((*server)->stopped()) break;
  }
  (*server)->wait();
  spdlog::info("stopped");
  return 0;
}

int run_debug_key(const DebugKeyArgs& args, std::ostream& out, std::ostream& err) {
  Result<config::Config> cfg =
      args.config_path ? config::load_config_file(*args.config_path) : config::default_config();
  if (!cfg) {
    err << cfg.error().message << '\n';
    return kExitNoDecision;
  }
  if (cfg->find_policy(args.policy) == nullptr) {
    err << "unknown policy " << config::quote(args.policy) << " in " << cfg->source << '\n';
    return kExitNoDecision;
  }
  std::string identity;
  if (args.identity) {
    identity = *args.identity;
  } else if (args.header) {
    const std::size_t colon = args.header->find(':');
    if (colon == std::string::npos) {
      err << "--header: want \"Name: value\"\n";
      return kExitUsage;
    }
    const std::string name = args.header->substr(0, colon);
    const std::string value = args.header->substr(colon + 1);
    const decide::HeaderLookup lookup =
        [&](std::string_view wanted) -> std::optional<std::string_view> {
      if (wanted.size() != name.size()) return std::nullopt;
      for (std::size_t i = 0; i < name.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(wanted[i])) !=
            std::tolower(static_cast<unsigned char>(name[i]))) {
          return std::nullopt;
        }
      }
      return std::string_view(value);
    };
    auto peer = config::parse_ip("127.0.0.1");
    auto id = decide::identify(cfg->identity, lookup, *peer, "", cfg->trusted_proxies);
    if (!id) {
      err << "no identity source of the config is present in --header\n";
      return kExitNoDecision;
    }
    identity = std::move(*id);
  } else {
    err << "--identity or --header is required\n";
    return kExitUsage;
  }
  const std::string key =
      redis::make_key(cfg->key_prefix, redis::make_tag_key(cfg->key_secret), identity, args.policy);
  out << key << ' ' << redis::key_slot(key) << '\n';
  return kExitOk;
}

}  // namespace fg::app
