// The `floodgate` command line (design §2.1). This file only parses flags (CLI11, a heavy header,
// stays here); commands.cc does the work.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <string>

#include "app/commands.h"

int main(int argc, char** argv) {
  // Blocks of 256 KiB and more (upstream response bodies, above all) come from mmap and go back
  // to the system when freed. By default glibc raises that threshold to the size of the first
  // such block freed, and later bodies, once freed, stayed in its heap: with every body counted
  // against server.max_response_memory, the process still held about twice that (measured with
  // 20 clients each asking for 16 MiB, 64 MiB allowed: 123-135 MB of RSS, 64-69 MB with this).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  CLI::App app{"floodgate: a distributed rate limiter for HTTP APIs", "floodgate"};
  app.set_version_flag("--version", "floodgate " FG_VERSION, "Print the version and exit");
  app.require_subcommand(1);

  std::string validate_path;
  CLI::App* validate = app.add_subcommand(
      "validate", "Check a config file: exit 0, or exit 1 with one line per problem on stderr");
  validate
      ->add_option("FILE", validate_path,
                   "The YAML config file, or an envoyproxy/ratelimit config directory")
      ->required();

  fg::app::CheckArgs check_args;
  std::string config_path;
  std::string store_url;
  std::int64_t cost = 0;
  CLI::App* check = app.add_subcommand(
      "check",
      "Make one decision against the configured store and print it as one JSON line; exit 0 "
      "allowed, 1 denied, 2 no decision");
  CLI::Option* config_opt =
      check->add_option("--config", config_path,
                        "The YAML config file (default: the built-in config, which "
                        "limits /api/ to 100 requests per minute as `per-minute`)");
  check->add_option("--policy", check_args.policy, "The policy's name")->required();
  check->add_option("--key", check_args.key, "The client's identity (any bytes)")->required();
  CLI::Option* cost_opt =
      check->add_option("--cost", cost, "Tokens this request takes (default: the policy's cost)");
  CLI::Option* store_opt =
      check->add_option("--store", store_url, "Store URL, overriding the config's `store`");

  fg::app::ServeArgs serve_args;
  serve_args.version = FG_VERSION;
  std::string serve_config, serve_listen, serve_store;
  int serve_threads = 0;
  CLI::App* serve = app.add_subcommand(
      "serve",
      "Run the HTTP server: rate-limit requests and serve the demo resource or proxy to the "
      "upstream. SIGTERM drains, SIGHUP reloads the config");
  CLI::Option* serve_config_opt = serve->add_option(
      "--config", serve_config,
      "The YAML config file (default: the built-in config: /api/ limited to 100 requests per "
      "minute per client, on 127.0.0.1:8080 with the memory store)");
  CLI::Option* serve_listen_opt =
      serve->add_option("--listen", serve_listen, "HOST:PORT to listen on, overriding `listen`");
  CLI::Option* serve_store_opt =
      serve->add_option("--store", serve_store, "Store URL, overriding the config's `store`");
  CLI::Option* serve_threads_opt =
      serve->add_option("--threads", serve_threads, "Server threads, overriding `threads`");

  fg::app::RlsArgs rls_args;
  rls_args.version = FG_VERSION;
  std::string rls_store;
  CLI::App* rls = app.add_subcommand(
      "rls",
      "Serve Envoy's Rate Limit Service (gRPC) as envoyproxy/ratelimit does, configured by its "
      "environment variables and runtime directory (docs/envoy.md). SIGTERM stops it");
  CLI::Option* rls_store_opt = rls->add_option(
      "--store", rls_store, "Store URL, overriding BACKEND_TYPE and the REDIS_* variables");

  // Hidden (no help group): the Redis key and slot of an identity, for the end-to-end tests and
  // bench/accuracy.sh, which must aim at the master that really holds a client's key.
  fg::app::DebugKeyArgs debug_key_args;
  std::string debug_key_config, debug_key_identity, debug_key_header;
  CLI::App* debug_key = app.add_subcommand(
      "debug-key", "Print the Redis key and cluster slot an instance uses for an identity");
  debug_key->group("");
  CLI::Option* debug_key_config_opt =
      debug_key->add_option("--config", debug_key_config, "The YAML config file");
  debug_key->add_option("--policy", debug_key_args.policy, "The policy's name")->required();
  CLI::Option* debug_key_identity_opt = debug_key->add_option(
      "--identity", debug_key_identity, "The identity as instances name it (key:x-api-key:k)");
  CLI::Option* debug_key_header_opt = debug_key->add_option(
      "--header", debug_key_header, "A request header \"Name: value\", identified as serve does");
  debug_key_identity_opt->excludes(debug_key_header_opt);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive here too, as "errors" with exit code 0.
    const int code = app.exit(e);
    return code == 0 ? 0 : fg::app::kExitUsage;
  }

  if (validate->parsed()) return fg::app::run_validate(validate_path, std::cout, std::cerr);
  if (check->parsed()) {
    if (config_opt->count() > 0) check_args.config_path = config_path;
    if (cost_opt->count() > 0) check_args.cost = cost;
    if (store_opt->count() > 0) check_args.store = store_url;
    return fg::app::run_check(check_args, std::cout, std::cerr);
  }
  if (serve->parsed()) {
    if (serve_config_opt->count() > 0) serve_args.config_path = serve_config;
    if (serve_listen_opt->count() > 0) serve_args.listen = serve_listen;
    if (serve_store_opt->count() > 0) serve_args.store = serve_store;
    if (serve_threads_opt->count() > 0) serve_args.threads = serve_threads;
    return fg::app::run_serve(serve_args, std::cerr);
  }
  if (rls->parsed()) {
    if (rls_store_opt->count() > 0) rls_args.store = rls_store;
    return fg::app::run_rls(rls_args, std::cerr);
  }
  if (debug_key->parsed()) {
    if (debug_key_config_opt->count() > 0) debug_key_args.config_path = debug_key_config;
    if (debug_key_identity_opt->count() > 0) debug_key_args.identity = debug_key_identity;
    if (debug_key_header_opt->count() > 0) debug_key_args.header = debug_key_header;
    return fg::app::run_debug_key(debug_key_args, std::cout, std::cerr);
  }
  return fg::app::kExitUsage;  // unreachable: require_subcommand(1)
}
