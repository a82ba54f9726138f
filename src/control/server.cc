// `weft server`: flags and config file, the data directory, the store, the credentials and the
// HTTP API, and a clean stop on SIGTERM/SIGINT.
//
// Data directory layout (created 0700; see docs/control-plane.md):
//   weft.db, weft.db-wal, weft.db-shm   the SQLite store (0600)
//   admin-credentials                   the first admin key, AWS shared-credentials format,
//                                       profile [weft] (0600); written on first start only
//   aws-config                          [profile weft] region = <region> (0600), every start
//   lock                                held (flock) while a server uses the directory
//   ca-bundle.pem                       the config stream's CA certificate (0644, public): what
//                                       weft-proxy --ca-file trusts (docs/config-push.md)

#include "control/server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/log.h"
#include "control/api/api_router.h"
#include "control/api/crypto_util.h"
#include "control/api/http_server.h"
#include "control/ca/ca_api.h"
#include "control/ca/certificate_source.h"
#include "control/ca/kek.h"
#include "control/ca/maintenance.h"
#include "control/ca/mesh_identity.h"
#include "control/ca/rekey.h"
#include "control/ca/rotation.h"
#include "control/compile/compiler.h"
#include "control/credentials/credentials.h"
#include "control/model/appmesh_api.h"
#include "control/push/identity_signer.h"
#include "control/push/push_api.h"
#include "control/push/push_server.h"
#include "control/push/stream_ca.h"
#include "control/push/tokens.h"
#include "control/registry/auto_registration.h"
#include "control/registry/dns_server.h"
#include "control/registry/registry_api.h"
#include "control/server_metrics.h"
#include "control/server_rekey.h"
#include "control/stacks/stack_api.h"
#include "control/store/notifying_store.h"
#include "control/store/sqlite_store.h"

namespace weft::control {
namespace {

constexpr const char* kDefaultDataDir = "./weft-data";
constexpr const char* kDefaultApi = "127.0.0.1:7080";
constexpr const char* kDefaultStream = "127.0.0.1:7081";
constexpr const char* kDefaultRegion = "us-west-2";
constexpr std::string_view kAccountIdKey = "weft/server/account-id";

constexpr const char* kHelp =
    "Usage: weft server [flags]\n"
    "\n"
    "Runs the control plane: the App Mesh-compatible API (AWS CLI, boto3, `weft`), its store,\n"
    "and the credentials that sign requests to it. Stops cleanly on SIGTERM or SIGINT.\n"
    "\n"
    "Flags (each may also be set in --config; flags win):\n"
    "  --data-dir DIR       state directory, created 0700 (default ./weft-data)\n"
    "  --api HOST:PORT      API listener (default 127.0.0.1:7080; port 0 picks a free port)\n"
    "  --region R           region of ARNs and of the SigV4 scope clients sign for\n"
    "                       (default us-west-2)\n"
    "  --account-id ID      12-digit account id of ARNs (default: one generated on first start\n"
    "                       and kept in the store)\n"
    "  --ports-file F       write \"api=<port>\", \"dns=<port>\" and \"stream=<port>\" to F once\n"
    "                       listening\n"
    "  --log-level L        debug, info, warn or error (default info)\n"
    "  --ca-key-file F      key that encrypts CA keys at rest (32 bytes: raw, hex or base64;\n"
    "                       default: env WEFT_CA_KEY, else DIR/ca-kek made on first start)\n"
    "  --dns HOST:PORT      registry DNS server, UDP and TCP; comma-separated for several\n"
    "                       (default 127.0.0.1:7053; the ports file gets \"dns=<port>\")\n"
    "  --dns-upstream HOST:PORT[,HOST:PORT...]\n"
    "                       resolvers that names outside the mesh's DNS namespaces are\n"
    "                       forwarded to (default none: such names are REFUSED)\n"
    "  --stream HOST:PORT   the config stream weft-proxy connects to (gRPC over TLS; default\n"
    "                       127.0.0.1:7081; port 0 picks a free port). Its certificate comes\n"
    "                       from the server's own CA, whose certificate is written to\n"
    "                       DIR/ca-bundle.pem (give it to weft-proxy --ca-file)\n"
    "  --stream-san NAMES   extra DNS names or IP addresses (comma-separated) the stream's\n"
    "                       certificate is valid for, besides 127.0.0.1, ::1, localhost and\n"
    "                       the --stream host: the names proxies use in --control-plane\n"
    "  --insecure           serve the config stream in plaintext, without TLS (local tests\n"
    "                       only; proxies need --insecure too)\n"
    "  --proxy-stale-after D  a proxy gone (or silent) this long makes its auto-registered\n"
    "                       instance UNHEALTHY, twice this deregisters it (default 30s;\n"
    "                       forms 45s, 1500ms, 2m)\n"
    "  --identity-validity D  lifetime of the mesh identity certificates proxies get (default\n"
    "                       24h; 10s to 30d; forms 90s, 30m, 24h, 7d); renewed at half-life\n"
    "  --identity-expiry-warning D  proxies warn (log, metric) this long before their identity\n"
    "                       expires unrenewed (default: a quarter of its lifetime)\n"
    "  --ca-maintenance-interval D  how often the CA's scheduled work runs (renewals, CRL\n"
    "                       re-signing, rotation phases; default 60s; 1s to 1h)\n"
    "  --acm-renew-before D  ACM certificates are renewed this long before they expire\n"
    "                       (default 60d, as ACM; never before two thirds of a certificate's\n"
    "                       lifetime)\n"
    "  --config FILE        YAML file with the keys data-dir, api, region, account-id,\n"
    "                       ports-file, log-level, dns, dns-upstream, stream, stream-san,\n"
    "                       insecure (true/false), proxy-stale-after, identity-validity,\n"
    "                       identity-expiry-warning, ca-maintenance-interval, acm-renew-before\n"
    "                       and quotas (a map of\n"
    "                       App Mesh quota names:\n"
    "                       virtual_nodes_per_mesh, virtual_services_per_mesh,\n"
    "                       virtual_routers_per_mesh, routes_per_virtual_router,\n"
    "                       backends_per_virtual_node, virtual_gateways_per_mesh,\n"
    "                       gateway_routes_per_virtual_gateway, meshes_per_account)\n"
    "  -h, --help           this text\n"
    "\n"
    "On first start the server creates an admin access key and writes it to\n"
    "DIR/admin-credentials (profile [weft]):\n"
    "  AWS_SHARED_CREDENTIALS_FILE=DIR/admin-credentials AWS_CONFIG_FILE=DIR/aws-config \\\n"
    "    aws --profile weft --endpoint-url http://127.0.0.1:7080 appmesh list-meshes\n"
    "\n"
    "A proxy joins with a token: `weft token create --resource mesh/M/virtualNode/N`.\n"
    "\n"
    "weft server rekey --help: change the CA key-encryption key (server stopped).\n";

struct Settings {
  std::string data_dir = kDefaultDataDir;
  std::string api = kDefaultApi;
  std::string region = kDefaultRegion;
  std::string account_id;  // empty: stored or generated
  std::string ports_file;
  std::string dns = "127.0.0.1:7053";           // registry DNS: HOST:PORT[,HOST:PORT...]
  std::string dns_upstream;                     // forwarding resolvers: HOST:PORT[,HOST:PORT...]
  std::string stream = kDefaultStream;          // the config stream (gRPC)
  std::string stream_san;                       // extra SANs, comma-separated
  std::string insecure = "false";               // "true": plaintext stream
  std::string proxy_stale_after = "30s";        // docs/registry.md "Instances from proxies"
  std::string identity_validity = "24h";        // docs/security.md "Mesh identities"
  std::string identity_expiry_warning;          // empty: a quarter of the lifetime
  std::string ca_maintenance_interval = "60s";  // docs/ca.md "Scheduled work"
  std::string acm_renew_before = "60d";         // docs/ca.md "Scheduled work"
  std::string log_level = "info";
  std::string ca_key_file;  // CA key-encryption key (docs/ca.md); empty: WEFT_CA_KEY or DIR/ca-kek
  std::map<std::string, int> quotas;
};

const char* const kKeys[] = {"data-dir",
                             "api",
                             "region",
                             "account-id",
                             "ports-file",
                             "log-level",
                             "dns",
                             "dns-upstream",
                             "stream",
                             "stream-san",
                             "insecure",
                             "proxy-stale-after",
                             "identity-validity",
                             "identity-expiry-warning",
                             "ca-maintenance-interval",
                             "acm-renew-before"};

std::string* field(Settings& s, std::string_view key) {
  if (key == "data-dir") return &s.data_dir;
  if (key == "api") return &s.api;
  if (key == "region") return &s.region;
  if (key == "account-id") return &s.account_id;
  if (key == "ports-file") return &s.ports_file;
  if (key == "log-level") return &s.log_level;
  if (key == "ca-key-file") return &s.ca_key_file;
  if (key == "dns") return &s.dns;
  if (key == "dns-upstream") return &s.dns_upstream;
  if (key == "stream") return &s.stream;
  if (key == "stream-san") return &s.stream_san;
  if (key == "insecure") return &s.insecure;
  if (key == "proxy-stale-after") return &s.proxy_stale_after;
  if (key == "identity-validity") return &s.identity_validity;
  if (key == "identity-expiry-warning") return &s.identity_expiry_warning;
  if (key == "ca-maintenance-interval") return &s.ca_maintenance_interval;
  if (key == "acm-renew-before") return &s.acm_renew_before;
  return nullptr;
}

int* quotaField(appmesh::Quotas& q, std::string_view name) {
  if (name == "virtual_nodes_per_mesh") return &q.virtual_nodes_per_mesh;
  if (name == "virtual_services_per_mesh") return &q.virtual_services_per_mesh;
  if (name == "virtual_routers_per_mesh") return &q.virtual_routers_per_mesh;
  if (name == "routes_per_virtual_router") return &q.routes_per_virtual_router;
  if (name == "backends_per_virtual_node") return &q.backends_per_virtual_node;
  if (name == "virtual_gateways_per_mesh") return &q.virtual_gateways_per_mesh;
  if (name == "gateway_routes_per_virtual_gateway") return &q.gateway_routes_per_virtual_gateway;
  if (name == "meshes_per_account") return &q.meshes_per_account;
  return nullptr;
}

// Reads the YAML config file into `s` (before flags are applied over it).
Status loadConfig(const std::string& path, Settings& s) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return makeError("--config " + path + ": " + e.what());
  }
  if (root.IsNull()) return {};
  if (!root.IsMap()) return makeError("--config " + path + ": expected a map of settings");
  try {
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      std::string norm = key;
      for (char& c : norm)
        if (c == '_') c = '-';
      if (norm == "quotas") {
        if (!kv.second.IsMap())
          return makeError("--config " + path + ": quotas must be a map of name: number");
        for (const auto& q : kv.second) s.quotas[q.first.as<std::string>()] = q.second.as<int>();
        continue;
      }
      std::string* f = field(s, norm);
      if (!f) {
        std::string known;
        for (const char* k : kKeys) known += std::string(known.empty() ? "" : ", ") + k;
        return makeError("--config " + path + ": unknown key '" + key + "' (known: " + known +
                         ", quotas)");
      }
      if (!kv.second.IsScalar())
        return makeError("--config " + path + ": '" + key + "' must be a single value");
      *f = kv.second.as<std::string>();
    }
  } catch (const YAML::Exception& e) {
    return makeError("--config " + path + ": " + e.what());
  }
  return {};
}

// "45s", "1500ms", "2m" (a bare number is seconds); positive, at most a day.
Result<std::chrono::milliseconds> parseStaleAfter(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && digits < 9 && s[digits] >= '0' && s[digits] <= '9') ++digits;
  std::string_view unit = s.substr(digits);
  long long n = digits ? std::stoll(std::string(s.substr(0, digits))) : 0;
  long long ms = unit == "ms"                  ? n
                 : unit == "s" || unit.empty() ? n * 1000
                 : unit == "m"                 ? n * 60'000
                                               : -1;
  if (digits == 0 || ms <= 0 || ms > 86'400'000)
    return makeError("--proxy-stale-after '" + std::string(s) +
                     "': expected a duration such as 30s, 1500ms or 2m (at most 24h)");
  return std::chrono::milliseconds(ms);
}

// "90s", "30m", "24h", "7d" (a bare number is seconds) within [min, max] seconds.
Result<std::chrono::seconds> parseDuration(std::string_view flag, std::string_view s, int64_t min,
                                           int64_t max) {
  size_t digits = 0;
  while (digits < s.size() && digits < 9 && s[digits] >= '0' && s[digits] <= '9') ++digits;
  std::string_view unit = s.substr(digits);
  long long n = digits ? std::stoll(std::string(s.substr(0, digits))) : 0;
  long long mul = unit == "s" || unit.empty() ? 1
                  : unit == "m"               ? 60
                  : unit == "h"               ? 3600
                  : unit == "d"               ? 86400
                                              : -1;
  if (digits == 0 || mul < 0 || n * mul < min || n * mul > max)
    return makeError("--" + std::string(flag) + " '" + std::string(s) +
                     "': expected a duration such as 90s, 30m, 24h or 7d, from " +
                     std::to_string(min) + "s to " + std::to_string(max) + "s");
  return std::chrono::seconds(n * mul);
}

// Parses "HOST:PORT" ("127.0.0.1:7080", "[::1]:7080", "localhost:7080").
Result<net::Address> parseHostPort(std::string_view s) {
  std::string_view host, port;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return makeError("--api '" + std::string(s) + "': expected [IPV6]:PORT");
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos)
      return makeError("--api '" + std::string(s) + "': expected HOST:PORT, e.g. 127.0.0.1:7080");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty()) host = "0.0.0.0";
  char* end = nullptr;
  std::string port_str(port);
  long p = std::strtol(port_str.c_str(), &end, 10);
  if (port_str.empty() || *end != '\0' || p < 0 || p > 65535)
    return makeError("--api '" + std::string(s) + "': the port must be a number 0-65535");
  auto addr = net::parseAddress(host, static_cast<uint16_t>(p));
  if (!addr)
    return makeError("--api '" + std::string(s) + "': " + addr.error().message +
                     " (the host must be an IP address or localhost)");
  return addr;
}

bool validRegion(std::string_view r) {
  if (r.empty() || r.size() > 32) return false;
  for (char c : r)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

bool validAccountId(std::string_view a) {
  if (a.size() != 12) return false;
  for (char c : a)
    if (c < '0' || c > '9') return false;
  return true;
}

// Creates DIR (and missing parents) with mode 0700.
Status makeDataDir(const std::string& dir) {
  std::string path;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t slash = dir.find('/', pos);
    if (slash == std::string::npos) slash = dir.size();
    path = dir.substr(0, slash);
    pos = slash + 1;
    if (path.empty() || path == ".") continue;
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
      return makeError("cannot create the data directory " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return makeError("data directory " + dir + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return makeError("--data-dir " + dir + " is not a directory");
  if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0)
    return makeError("data directory " + dir + " is not writable by this user (" +
                     std::strerror(errno) + "); fix its permissions or choose another --data-dir");
  if (st.st_mode & 077)
    log::warn("server", "data directory " + dir +
                            " is readable by other users; it holds access key secrets: chmod 700 " +
                            dir);
  return {};
}

}  // namespace

Result<int> lockDataDir(const std::string& dir) {
  std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return makeError("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return makeError("another weft server (pid " + pid + ") is using the data directory " + dir +
                     "; stop it or choose another --data-dir");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    ssize_t unused = ::pwrite(fd, pid.data(), pid.size(), 0);
    (void)unused;
  }
  return fd;
}

namespace {

std::string randomAccountId() {
  // No leading zero, so it never reads as a shorter number.
  return randomString(1, "123456789") + randomString(11, "0123456789");
}

// The account id: the stored one, else the flag's or a new one (stored). A flag that differs
// from the stored id is refused: the stored ARNs, keys and CA records name the stored account.
Result<std::string> resolveAccountId(Store& store, const std::string& flag) {
  auto stored = store.get(kAccountIdKey);
  if (!stored) return Unexpected<Error>{stored.error()};
  if (stored->has_value()) {
    const std::string& have = (*stored)->value;
    if (!flag.empty() && flag != have)
      return makeError("--account-id " + flag + " differs from the account id " + have +
                       " this data directory was created with (its ARNs and access keys name " +
                       have + "); drop --account-id, pass --account-id " + have +
                       ", or use another --data-dir");
    return have;
  }
  std::string id = flag.empty() ? randomAccountId() : flag;
  auto r = store.commit({StoreOp::put(std::string(kAccountIdKey), id, StoreOp::kAbsent)});
  if (!r && r.error().code == kStoreConflict) return resolveAccountId(store, flag);
  if (!r) return Unexpected<Error>{r.error()};
  return id;
}

int usageError(const std::string& message) {
  std::cerr << "weft server: " << message << " (see weft server --help)\n";
  return 2;
}

}  // namespace

int runServer(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "rekey") return runRekey(argc - 1, argv + 1);
  // 1. Settings: config file first, flags over it.
  Settings settings;
  std::map<std::string, std::string> flags;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "help") {
      std::cout << kHelp;
      return 0;
    }
    if (arg.rfind("--", 0) != 0) return usageError("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (name == "insecure") {
      value = "true";  // a switch
    } else {
      if (i + 1 >= argc) return usageError("--" + name + " needs a value");
      value = argv[++i];
    }
    if (name == "config") {
      config_path = value;
    } else if (field(settings, name)) {
      flags[name] = value;
    } else {
      return usageError("unknown flag --" + name);
    }
  }
  if (!config_path.empty()) {
    if (auto st = loadConfig(config_path, settings); !st) {
      std::cerr << "weft server: " << st.error().message << "\n";
      return 2;
    }
  }
  for (const auto& [name, value] : flags) *field(settings, name) = value;

  log::Level level;
  if (!log::parseLevel(settings.log_level, level))
    return usageError("--log-level must be debug, info, warn or error, not '" + settings.log_level +
                      "'");
  log::setLevel(level);
  if (!validRegion(settings.region))
    return usageError("--region '" + settings.region +
                      "' is not a region name (lower-case letters, digits and '-')");
  if (!settings.account_id.empty() && !validAccountId(settings.account_id))
    return usageError("--account-id must be 12 digits, not '" + settings.account_id + "'");
  appmesh::Options mesh_options;
  mesh_options.region = settings.region;
  for (const auto& [name, value] : settings.quotas) {
    int* q = quotaField(mesh_options.quotas, name);
    if (!q) return usageError("unknown quota '" + name + "' in --config");
    if (value < 1) return usageError("quota " + name + " must be at least 1");
    *q = value;
  }
  auto api_address = parseHostPort(settings.api);
  if (!api_address) return usageError(api_address.error().message);
  auto stream_address = parseHostPort(settings.stream);
  if (!stream_address) return usageError("--stream: " + stream_address.error().message);
  if (settings.insecure != "true" && settings.insecure != "false")
    return usageError("insecure must be true or false, not '" + settings.insecure + "'");
  const bool insecure = settings.insecure == "true";
  // The names the stream's certificate is valid for.
  std::vector<std::string> stream_names = {"127.0.0.1", "::1", "localhost"};
  {
    std::string host = stream_address->toString();
    host = host.substr(0, host.rfind(':'));
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (host != "0.0.0.0" && host != "::" &&
        std::find(stream_names.begin(), stream_names.end(), host) == stream_names.end())
      stream_names.push_back(host);
    for (size_t pos = 0; pos < settings.stream_san.size();) {
      size_t comma = std::min(settings.stream_san.find(',', pos), settings.stream_san.size());
      std::string name = settings.stream_san.substr(pos, comma - pos);
      pos = comma + 1;
      while (!name.empty() && name.back() == ' ') name.pop_back();
      while (!name.empty() && name.front() == ' ') name.erase(0, 1);
      if (name.empty()) continue;
      if (name.find_first_of("/ \t") != std::string::npos)
        return usageError("--stream-san '" + name + "' is not a DNS name or IP address");
      if (std::find(stream_names.begin(), stream_names.end(), name) == stream_names.end())
        stream_names.push_back(name);
    }
  }
  if (settings.data_dir.empty()) return usageError("--data-dir must not be empty");
  while (settings.data_dir.size() > 1 && settings.data_dir.back() == '/')
    settings.data_dir.pop_back();
  const std::string& dir = settings.data_dir;

  // 2. Signals: blocked before any thread starts, so every thread inherits the mask and only
  // the sigwait below takes them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // 3. Data directory, store, account, credentials.
  ::umask(077);  // everything the server writes holds or guards secrets
  auto fail = [](const std::string& message) {
    log::error("server", message);
    return 1;
  };
  if (auto st = makeDataDir(dir); !st) return fail(st.error().message);
  auto lock_fd = lockDataDir(dir);
  if (!lock_fd) return fail(lock_fd.error().message);
  auto store = SqliteStore::open(dir + "/weft.db");
  if (!store) return fail(store.error().message);
  auto account = resolveAccountId(**store, settings.account_id);
  if (!account) return fail(account.error().message);
  mesh_options.account_id = *account;

  const TimeSource& time = RealTimeSource::instance();
  // Every API writes through `notifying`, so each committed change to appmesh/, registry/ or
  // push/tokens/ reaches the push server (set up below, before any other thread runs).
  NotifyingStore notifying(**store);
  credentials::Credentials creds(notifying, time, *account);
  const std::string creds_path = dir + "/admin-credentials";
  auto admin = creds.ensureAdminKey([&](const credentials::AccessKey& key) {
    return credentials::writeSharedCredentialsFile(creds_path, "weft", key);
  });
  if (!admin) return fail("creating the admin access key: " + admin.error().message);
  if (admin->has_value()) {
    log::info("server", "created the admin access key " + (*admin)->access_key_id + " in " +
                            creds_path + " (profile weft)");
  } else if (::access(creds_path.c_str(), F_OK) != 0) {
    log::info("server", "access keys exist but " + creds_path +
                            " does not; use a key made with `weft credentials create`");
  }
  if (auto st = credentials::writeAwsConfigFile(dir + "/aws-config", "weft", settings.region); !st)
    log::warn("server", st.error().message);

  // 4. The API.
  appmesh::AppMeshApi mesh_api(notifying, time, mesh_options);
  stacks::StackApi stack_api(notifying, time);
  ApiRouter router(
      settings.region,
      [&creds](std::string_view id) -> std::optional<KeyInfo> {
        auto k = creds.find(id);
        if (!k) {
          log::error("server", "reading access key " + std::string(id) + ": " + k.error().message);
          return std::nullopt;
        }
        if (!k->has_value()) return std::nullopt;
        return KeyInfo{(*k)->secret_access_key, (*k)->account_id};
      },
      time);
  // The certificate authority (ACM PCA and ACM JSON 1.1 APIs; docs/ca.md).
  if (const char* env = std::getenv("WEFT_CA_KEY");
      settings.ca_key_file.empty() && (env == nullptr || *env == '\0')) {
    // A `weft server rekey` interrupted between its commit and its rename (docs/ca.md).
    if (auto done = ca::finishKekChange(**store, dir); !done)
      return fail("CA key-encryption key: " + done.error().message);
  }
  auto ca_kek = ca::Kek::load(settings.ca_key_file, std::getenv("WEFT_CA_KEY"), dir);
  if (!ca_kek) return fail("CA key-encryption key: " + ca_kek.error().message);
  ca::CaApi ca_api(notifying, time, *ca_kek, ca::Options{settings.region, *account});
  if (auto st = ca_api.init(); !st) return fail("CA: " + st.error().message);
  router.addTargetRoute("ACMPrivateCA.", "acm-pca",
                        [&ca_api](const ApiRequest& r) { return ca_api.handlePca(r); });
  router.addTargetRoute("CertificateManager.", "acm",
                        [&ca_api](const ApiRequest& r) { return ca_api.handleAcm(r); });
  router.addRoute(&ca::CaApi::handles, "",  // POST /weft/v1/certificate-authorities/import
                  [&ca_api](const ApiRequest& r) { return ca_api.handleWeft(r); });
  router.addRoute(&appmesh::AppMeshApi::handles, "appmesh",
                  [&mesh_api](const ApiRequest& r) { return mesh_api.handle(r); });
  router.addRoute(&stacks::StackApi::handles, "",
                  [&stack_api](const ApiRequest& r) { return stack_api.handle(r); });
  router.addRoute(&credentials::Credentials::handles, "",
                  [&creds](const ApiRequest& r) { return creds.handle(r); });

  // Service registry (Cloud Map, Route 53 hosted zones, networks) and its DNS server.
  registry::RegistryApi registry_api(notifying, time, {settings.region, *account});
  if (auto st = registry_api.refresh(); !st) return fail("registry: " + st.error().message);
  router.addTargetRoute(
      std::string(registry::RegistryApi::kTargetPrefix), "servicediscovery",
      [&registry_api](const ApiRequest& r) { return registry_api.handleCloudMap(r); });
  router.addRoute(&registry::RegistryApi::handlesRoute53, "route53",
                  [&registry_api](const ApiRequest& r) { return registry_api.handleRoute53(r); });
  router.addRoute(&registry::RegistryApi::handlesNetworks, "",
                  [&registry_api](const ApiRequest& r) { return registry_api.handleNetworks(r); });
  std::vector<net::Address> dns_addresses;
  for (size_t pos = 0; pos <= settings.dns.size();) {
    size_t comma = std::min(settings.dns.find(',', pos), settings.dns.size());
    auto a = parseHostPort(settings.dns.substr(pos, comma - pos));
    if (!a) return usageError("--dns: " + a.error().message);
    dns_addresses.push_back(*a);
    pos = comma + 1;
  }
  registry::DnsServerOptions dns_options;
  for (size_t pos = 0; pos < settings.dns_upstream.size();) {
    size_t comma = std::min(settings.dns_upstream.find(',', pos), settings.dns_upstream.size());
    auto a = parseHostPort(settings.dns_upstream.substr(pos, comma - pos));
    if (!a) return usageError("--dns-upstream: " + a.error().message);
    dns_options.upstreams.push_back(*a);
    pos = comma + 1;
  }
  registry::DnsServer dns_server(registry_api.snapshots(), time, dns_options);
  auto dns_bound = dns_server.start(dns_addresses);
  if (!dns_bound) return fail(dns_bound.error().message);
  for (const auto& a : *dns_bound)
    log::info("server", "registry DNS on " + a.toString() + " (UDP and TCP)");

  // Config push: the compiler, join tokens, the stream (TLS from the stream CA) and its API.
  // ACM certificates and ACM PCA trust named by specs come from the CA (docs/security.md).
  // Mesh identities (docs/security.md): each mesh's identity CA signs the proxies' CSRs.
  auto identity_validity =
      parseDuration("identity-validity", settings.identity_validity, 10, 30 * 86400);
  if (!identity_validity) return usageError(identity_validity.error().message);
  std::chrono::seconds identity_warning{0};
  if (!settings.identity_expiry_warning.empty()) {
    auto w = parseDuration("identity-expiry-warning", settings.identity_expiry_warning, 1,
                           identity_validity->count());
    if (!w) return usageError(w.error().message);
    identity_warning = *w;
  }
  auto maintenance_interval =
      parseDuration("ca-maintenance-interval", settings.ca_maintenance_interval, 1, 3600);
  if (!maintenance_interval) return usageError(maintenance_interval.error().message);
  // Scheduled CA work (docs/ca.md "Scheduled work"): tasks are added next to what they maintain.
  ca::Maintenance ca_maintenance(time, *maintenance_interval);
  auto acm_renew_before =
      parseDuration("acm-renew-before", settings.acm_renew_before, 60, int64_t{3650} * 86400);
  if (!acm_renew_before) return usageError(acm_renew_before.error().message);
  ca_maintenance.add("ACM renewal", [&ca_api, before = *acm_renew_before](auto now) {
    return ca_api.renewDueAcmCertificates(now, before);
  });
  ca_maintenance.add("CRL re-signing", [&ca_api](auto now) { return ca_api.resignDueCrls(now); });
  ca::MeshIdentityIssuer identity_issuer(notifying, *ca_kek, time,
                                         ca::MeshIdentityOptions{*identity_validity});
  push::MeshIdentitySigner identity_signer(notifying, identity_issuer, identity_warning);
  ca::CaCertificateSource ca_certificates(ca_api, &identity_issuer);
  compile::Compiler compiler(notifying, compile::CompileOptions{settings.region, *account},
                             &ca_certificates);
  push::Tokens tokens(notifying, time);
  auto stream_cert = push::issueStreamCertificate(notifying, *ca_kek, time, stream_names);
  if (!stream_cert) return fail("config stream certificate: " + stream_cert.error().message);
  const std::string bundle_path = dir + "/ca-bundle.pem";
  if (auto st = writeFileAtomically(bundle_path, stream_cert->ca_pem, 0644); !st)
    return fail("writing the CA bundle: " + st.error().message);
  push::PushOptions push_options;
  push_options.address = stream_address->toString();
  push_options.insecure = insecure;
  push_options.cert_pem = stream_cert->cert_pem;
  push_options.key_pem = stream_cert->key_pem;
  // The registry learns from the proxies: Hellos and health reports auto-register instances.
  auto stale_after = parseStaleAfter(settings.proxy_stale_after);
  if (!stale_after) return fail(stale_after.error().message);
  registry::AutoRegistration auto_registration(notifying, registry_api, time);
  push_options.registrar = &auto_registration;
  push_options.stale_after = *stale_after;
  push_options.identities = &identity_signer;
  push::PushServer push_server(compiler, tokens, time, push_options);
  notifying.setListener(
      [&push_server](const std::vector<std::string>& keys) { push_server.onStoreChanged(keys); });
  push::PushApi push_api(
      tokens, compiler, [&push_server] { return push_server.proxies(); }, notifying,
      &identity_issuer);
  router.addRoute(&push::PushApi::handles, "",
                  [&push_api](const ApiRequest& r) { return push_api.handle(r); });
  // CA rotation (docs/security.md "Rotation"): phases move once every proxy acked its config.
  ca::CaRotation ca_rotation(ca_api, &identity_issuer, [&push_server] {
    for (const push::ProxyStatus& p : push_server.proxies())
      if (p.version_acked != p.version_sent) return false;
    return true;
  });
  ca_maintenance.add("CA rotation",
                     [&ca_rotation](auto now) { return ca_rotation.runMaintenance(now); });
  router.addRoute(&ca::CaRotation::handles, "",
                  [&ca_rotation](const ApiRequest& r) { return ca_rotation.handle(r); });
  auto stream_port = push_server.start();
  if (!stream_port) return fail("config stream: " + stream_port.error().message);
  {
    std::string where = stream_address->toString();
    where = where.substr(0, where.rfind(':')) + ":" + std::to_string(*stream_port);
    if (insecure)
      log::warn("server", "config stream on " + where +
                              " in PLAINTEXT (--insecure): anyone on the path can read configs "
                              "and tokens; for local tests only");
    else
      log::info("server",
                "config stream on " + where + " (TLS; proxies trust " + bundle_path + ")");
  }

  ca_maintenance.start();

  // Heads are authenticated before bodies are read (1 MiB; stack records up to 8 MiB).
  router.addLargeBodyPrefix("/weft/v1/stacks", 8 << 20);
  // GET /metrics is the one unauthenticated path (Prometheus scrapes it; counters only).
  const int64_t started_at =
      std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch()).count();
  auto metrics = [&]() {
    ServerMetricsInput in;
    in.dns = &dns_server.stats();
    auto snapshot = registry_api.snapshots().load();
    in.registry = snapshot.get();
    in.proxies = push_server.proxies();
    in.started_at = started_at;
    ApiResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = renderServerMetrics(in);
    return r;
  };
  HttpServerOptions http_options;
  http_options.check_head = [&router](const HttpRequest& r) {
    return isMetricsRequest(r.method, r.path) ? HeadCheck{} : router.checkHead(r);
  };
  HttpServer http(
      http_options,
      [&router, &metrics](const HttpRequest& r) {
        return isMetricsRequest(r.method, r.path) ? metrics() : router.handle(r);
      },
      time);
  auto bound = http.start(*api_address);
  if (!bound) {
    ca_maintenance.stop();  // its tasks use objects destroyed before it
    push_server.stop();
    return fail("API listener: " + bound.error().message);
  }
  log::info("server", "weft server " WEFT_VERSION ": API on http://" + bound->toString() +
                          " (region " + settings.region + ", account " + *account + ", data " +
                          dir + ")");
  if (!settings.ports_file.empty()) {
    std::string text = "api=" + std::to_string(bound->port()) + "\n";
    text += "dns=" + std::to_string(dns_bound->front().port()) + "\n";  // registry DNS
    text += "stream=" + std::to_string(*stream_port) + "\n";            // config stream
    if (auto st = writeFileAtomically(settings.ports_file, text, 0600); !st) {
      http.stop();
      ca_maintenance.stop();
      push_server.stop();
      return fail("--ports-file: " + st.error().message);
    }
  }

  // 5. Until SIGTERM/SIGINT.
  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  log::info("server", std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                          "; finishing in-flight requests");
  http.stop();
  ca_maintenance.stop();
  // Streams end (proxies keep serving their config and reconnect later) before the store and
  // the compiler go away.
  push_server.stop();
  if (http.abandonedHandlers() > 0) {
    // A handler is stuck past the drain deadline and still uses the store and the APIs: do not
    // destroy them under it. Every acknowledged write is already on disk.
    log::error("server", std::to_string(http.abandonedHandlers()) +
                             " request handler(s) did not finish; exiting without cleanup");
    std::fflush(nullptr);
    ::_exit(1);
  }
  log::info("server", "stopped");
  ::close(*lock_fd);
  return 0;
}

}  // namespace weft::control
