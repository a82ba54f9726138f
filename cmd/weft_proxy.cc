// weft-proxy: the data plane (sidecar or gateway). See `weft-proxy --help`.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.h"
#include "http/router.h"
#include "proxy/config_loader.h"
#include "proxy/server.h"

namespace {

constexpr const char* kUsage = R"(Usage: weft-proxy --config FILE [options]
       weft-proxy --validate FILE

weft's data-plane proxy: HTTP/1.1 listeners (plaintext, TLS or both), routing, load balancing,
connection pooling, mutual TLS, metrics and access logs, from a YAML or JSON config file
(schema: api/weft/v1/config.proto; guide: docs/configuration.md).

Options:
  -c, --config FILE        run with this config file (YAML or JSON)
      --validate FILE      check FILE (syntax, schema and semantics) and exit: 0 valid, 1 not
      --concurrency N      worker threads (default 1, as sidecars run)
      --ports-file FILE    once listening, write {"admin": P, "listeners": {"name": P}} to FILE
                           (useful with port 0)
      --log-level LEVEL    debug, info (default), warn or error
  -h, --help               this text
      --version            print the version

Signals: SIGHUP reloads the config file (an invalid file is refused and the running config
stays); SIGTERM or SIGINT drains (stop accepting, finish in-flight requests within drain_time)
and exits 0; SIGUSR1 reopens access log files (log rotation).
)";

int usageError(const std::string& msg) {
  std::fprintf(stderr, "weft-proxy: %s\nRun 'weft-proxy --help' for usage.\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  weft::proxy::ServerOptions opts;
  std::string validate;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("weft-proxy %s\n", WEFT_VERSION);
      return 0;
    } else if (a == "-c" || a == "--config") {
      const char* v = value("--config");
      if (!v) return usageError("--config needs a file name");
      opts.config_path = v;
    } else if (a == "--validate") {
      const char* v = value("--validate");
      if (!v) return usageError("--validate needs a file name");
      validate = v;
    } else if (a == "--concurrency") {
      const char* v = value("--concurrency");
      char* end = nullptr;
      long n = v ? std::strtol(v, &end, 10) : 0;
      if (!v || *end != '\0' || n < 1 || n > 256)
        return usageError("--concurrency needs a number from 1 to 256");
      opts.concurrency = static_cast<uint32_t>(n);
    } else if (a == "--ports-file") {
      const char* v = value("--ports-file");
      if (!v) return usageError("--ports-file needs a file name");
      opts.ports_file = v;
    } else if (a == "--log-level") {
      const char* v = value("--log-level");
      weft::log::Level level;
      if (!v || !weft::log::parseLevel(v, level))
        return usageError("--log-level must be debug, info, warn or error");
      weft::log::setLevel(level);
    } else {
      return usageError("unknown argument '" + a + "'");
    }
  }
  if (!validate.empty()) {
    auto cfg = weft::proxy::loadConfigFile(validate);
    if (!cfg) {
      std::fprintf(stderr, "%s: invalid\n%s\n", validate.c_str(), cfg.error().message.c_str());
      return 1;
    }
    // The routers are compiled too, so --validate refuses exactly what the proxy would refuse
    // (regex syntax, domain forms, header names).
    std::string errors;
    for (const auto& l : cfg->listeners()) {
      auto router = weft::http::Router::compile(
          l.route_config(),
          [&](std::string_view name) {
            for (const auto& c : cfg->clusters())
              if (c.name() == name) return true;
            return false;
          },
          "listeners[" + l.name() + "].route_config");
      if (!router) errors += router.error().message + "\n";
    }
    if (!errors.empty()) {
      std::fprintf(stderr, "%s: invalid\n%s", validate.c_str(), errors.c_str());
      return 1;
    }
    std::printf("%s: valid (%d listener(s), %d cluster(s))\n", validate.c_str(),
                cfg->listeners_size(), cfg->clusters_size());
    return 0;
  }
  if (opts.config_path.empty()) return usageError("--config FILE is required");

  weft::proxy::Server server(opts);
  weft::Status st = server.start();
  if (!st) {
    std::fprintf(stderr, "weft-proxy: cannot start:\n%s\n", st.error().message.c_str());
    return 1;
  }
  return server.run();
}
