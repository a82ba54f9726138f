// weft-proxy: the data plane (sidecar or gateway). See `weft-proxy --help`.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/text.h"
#include "http/router.h"
#include "net/socket.h"
#include "proxy/agent.h"
#include "proxy/config_loader.h"
#include "proxy/server.h"

namespace {

constexpr const char* kUsage = R"(Usage: weft-proxy --config FILE [options]
       weft-proxy --control-plane HOST:PORT[,HOST:PORT...] --token-file FILE
                  (--ca-file FILE | --insecure) [--resource RESOURCE] [options]
       weft-proxy --validate FILE

weft's data-plane proxy: HTTP/1.1 and HTTP/2 listeners (plaintext, TLS or both), routing, load
balancing, connection pooling, mutual TLS, metrics and access logs. Its config comes either from
a YAML or JSON file (schema: api/weft/v1/config.proto; guide: docs/configuration.md) or from
`weft server` over the config stream (docs/proxy-agent.md, docs/config-push.md).

Config file mode:
  -c, --config FILE        run with this config file (YAML or JSON); SIGHUP reloads it
      --validate FILE      check FILE (syntax, schema and semantics) and exit: 0 valid, 1 not

Control-plane mode (not with --config):
      --control-plane LIST comma-separated HOST:PORT of `weft server --stream` addresses; the
                           first is tried first, then the next on each failure (round robin)
      --resource R         the App Mesh resource this proxy runs as: mesh/M/virtualNode/N,
                           mesh/M/virtualGateway/G or the ARN of either (default: the
                           APPMESH_RESOURCE_ARN environment variable)
      --token-file FILE    file holding the join token (`weft token create --resource R`);
                           surrounding whitespace is ignored
      --ca-file FILE       PEM bundle the server's certificate is verified against (the
                           server's DATA_DIR/ca-bundle.pem); its SAN must match the HOST
      --insecure           plaintext stream (h2c), no server verification: local tests only
      --admin HOST:PORT    admin listener (default 127.0.0.1:9901; port 0 picks one)
      --state-dir DIR      where the last applied config is kept, to start from it while the
                           control plane is unreachable (default /var/lib/weft-proxy)
      --host NAME          shown by `weft proxies` (default: this machine's host name)
      --network ID         the registry network this proxy is in, shown by `weft proxies`
      --app-address IP     the address the app is reached at, registered in the service
                           registry (repeatable or comma-separated; default: this host's
                           non-loopback interface addresses, IPv4 first)
  Until the first config is active the admin listener answers /ready with 503 and /server_info
  with state PRE_INITIALIZING; a config stored by a previous run is served at once.

Common options:
      --concurrency N      worker threads (default 1, as sidecars run)
      --ports-file FILE    write {"admin": P, "listeners": {"name": P}} to FILE once listening
                           and after every applied config (useful with port 0)
      --log-level LEVEL    debug, info (default), warn or error
  -h, --help               this text
      --version            print the version

Signals: SIGHUP reloads the config file (an invalid file is refused and the running config
stays; ignored in control-plane mode); SIGTERM or SIGINT drains (stop accepting, finish
in-flight requests within drain_time) and exits 0; SIGUSR1 reopens access log files.
)";

int usageError(const std::string& msg) {
  std::fprintf(stderr, "weft-proxy: %s\nRun 'weft-proxy --help' for usage.\n", msg.c_str());
  return 2;
}

// HOST:PORT or [V6]:PORT with port 0..65535 (0 picks one).
bool parseAdmin(const std::string& text, weft::v1::Admin& out) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  std::string host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || p < 0 || p > 65535) return false;
  out.set_address(host);
  out.set_port(static_cast<uint32_t>(p));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  weft::proxy::ServerOptions opts;
  std::string validate;
  std::string control_plane, resource, token_file, ca_file, admin;
  bool insecure = false;
  weft::proxy::AgentOptions& agent = opts.agent;
  agent.state_dir = "/var/lib/weft-proxy";
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
    } else if (a == "--control-plane") {
      const char* v = value("--control-plane");
      if (!v) return usageError("--control-plane needs HOST:PORT[,HOST:PORT...]");
      control_plane = v;
    } else if (a == "--resource") {
      const char* v = value("--resource");
      if (!v) return usageError("--resource needs mesh/M/virtualNode/N (or virtualGateway)");
      resource = v;
    } else if (a == "--token-file") {
      const char* v = value("--token-file");
      if (!v) return usageError("--token-file needs a file name");
      token_file = v;
    } else if (a == "--ca-file") {
      const char* v = value("--ca-file");
      if (!v) return usageError("--ca-file needs a file name");
      ca_file = v;
    } else if (a == "--insecure") {
      insecure = true;
    } else if (a == "--admin") {
      const char* v = value("--admin");
      if (!v) return usageError("--admin needs HOST:PORT");
      admin = v;
    } else if (a == "--state-dir") {
      const char* v = value("--state-dir");
      if (!v || !*v) return usageError("--state-dir needs a directory");
      agent.state_dir = v;
    } else if (a == "--host") {
      const char* v = value("--host");
      if (!v) return usageError("--host needs a name");
      agent.host = v;
    } else if (a == "--network") {
      const char* v = value("--network");
      if (!v) return usageError("--network needs an id");
      agent.network = v;
    } else if (a == "--app-address") {
      const char* v = value("--app-address");
      if (!v) return usageError("--app-address needs an IP address");
      for (const std::string& ip : weft::splitList(v)) {
        if (!weft::net::parseAddress(ip, 0))
          return usageError("--app-address '" + ip + "' is not an IPv4 or IPv6 address");
        agent.app_addresses.push_back(ip);
      }
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
  if (!opts.config_path.empty() && !control_plane.empty())
    return usageError(
        "--config and --control-plane are mutually exclusive: run from a file or "
        "from the control plane");
  if (opts.config_path.empty() && control_plane.empty())
    return usageError("either --config FILE or --control-plane HOST:PORT is required");
  if (control_plane.empty()) {
    if (!resource.empty() || !token_file.empty() || !ca_file.empty() || insecure ||
        !admin.empty() || !agent.host.empty() || !agent.network.empty() ||
        !agent.app_addresses.empty()) {
      return usageError(
          "--resource, --token-file, --ca-file, --insecure, --admin, --host, --network and "
          "--app-address "
          "belong to --control-plane mode (with --config, set admin in the file)");
    }
  } else {
    opts.control_plane = true;
    agent.addresses = weft::splitList(control_plane);
    if (agent.addresses.empty()) return usageError("--control-plane needs at least one HOST:PORT");
    if (resource.empty()) {
      const char* env = std::getenv("APPMESH_RESOURCE_ARN");
      if (env) resource = env;
    }
    if (resource.empty())
      return usageError(
          "--resource (or the APPMESH_RESOURCE_ARN environment variable) is "
          "required with --control-plane");
    auto parsed = weft::meshconfig::parseProxyResource(resource);
    if (!parsed) return usageError(parsed.error().message);
    agent.resource = resource;
    if (token_file.empty())
      return usageError(
          "--token-file is required with --control-plane (create a token with "
          "`weft token create --resource " +
          parsed->normalized() + "`)");
    {
      std::ifstream in(token_file, std::ios::binary);
      if (!in)
        return usageError("cannot read the token file " + token_file + ": " + std::strerror(errno));
      std::stringstream ss;
      ss << in.rdbuf();
      agent.token = weft::trimSpace(ss.str());
      if (agent.token.empty()) return usageError("the token file " + token_file + " is empty");
    }
    if (insecure && !ca_file.empty())
      return usageError("--insecure and --ca-file exclude each other");
    if (!insecure && ca_file.empty())
      return usageError(
          "--ca-file is required with --control-plane (the server's "
          "DATA_DIR/ca-bundle.pem), unless --insecure (tests only)");
    if (!ca_file.empty()) {
      std::ifstream in(ca_file);
      if (!in)
        return usageError("cannot read the CA file " + ca_file + ": " + std::strerror(errno));
    }
    agent.ca_file = ca_file;
    agent.insecure = insecure;
    if (insecure)
      weft::log::warn("agent",
                      "--insecure: the config stream is plaintext and the server is not "
                      "verified (local tests only)");
    weft::v1::Admin a;
    if (!admin.empty() && !parseAdmin(admin, a))
      return usageError("--admin needs HOST:PORT (port 0 picks one), got '" + admin + "'");
    opts.admin = a;
    if (agent.host.empty()) {
      char name[256] = {};
      if (::gethostname(name, sizeof name - 1) == 0) agent.host = name;
    }
  }

  weft::proxy::Server server(opts);
  weft::Status st = server.start();
  if (!st) {
    std::fprintf(stderr, "weft-proxy: cannot start:\n%s\n", st.error().message.c_str());
    return 1;
  }
  return server.run();
}
