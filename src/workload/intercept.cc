#include "workload/intercept.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <set>
#include <sstream>

#include "common/text.h"

namespace weft::workload {
namespace {

constexpr size_t kMaxIdLength = 19;  // "WEFT_OUT_" + 19 = 28, iptables' longest chain name
constexpr const char* kIngressPrefix = "WEFT_IN_";
constexpr const char* kEgressPrefix = "WEFT_OUT_";
// Seconds each iptables command waits for the xtables lock held by another one.
constexpr const char* kLockWaitSeconds = "10";

bool isNone(const std::string& s) {
  std::string t = trimSpace(s);
  return t.empty() || t == "none";
}

Result<uint32_t> parseNumber(const std::string& text, const std::string& flag, uint64_t min,
                             uint64_t max, const char* what) {
  std::string t = trimSpace(text);
  bool digits =
      !t.empty() && t.size() <= 10 && t.find_first_not_of("0123456789") == std::string::npos;
  uint64_t v = digits ? std::strtoull(t.c_str(), nullptr, 10) : 0;
  if (!digits || v < min || v > max)
    return makeError(flag + ": '" + t + "' is not " + what + " (" + std::to_string(min) + ".." +
                     std::to_string(max) + ")");
  return static_cast<uint32_t>(v);
}

Result<uint16_t> parsePort(const std::string& text, const std::string& flag) {
  auto v = parseNumber(text, flag, 1, 65535, "a port");
  if (!v) return Unexpected<Error>{v.error()};
  return static_cast<uint16_t>(*v);
}

Result<std::vector<uint16_t>> parsePorts(const std::string& text, const std::string& flag) {
  std::vector<uint16_t> out;
  std::set<uint16_t> seen;
  for (const std::string& item : splitList(text)) {
    auto p = parsePort(item, flag);
    if (!p) return Unexpected<Error>{p.error()};
    if (seen.insert(*p).second) out.push_back(*p);
  }
  return out;
}

// An IPv4 address or a.b.c.d/n with n in 0..32.
bool isIpv4OrCidr(const std::string& s) {
  std::string addr = s;
  size_t slash = s.find('/');
  if (slash != std::string::npos) {
    std::string len = s.substr(slash + 1);
    if (len.empty() || len.size() > 2 || len.find_first_not_of("0123456789") != std::string::npos ||
        std::atoi(len.c_str()) > 32)
      return false;
    addr = s.substr(0, slash);
  }
  in_addr a{};
  return ::inet_pton(AF_INET, addr.c_str(), &a) == 1;
}

bool validId(const std::string& id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  return true;
}

Argv nat(std::initializer_list<std::string> args) {
  Argv out = {"-t", "nat"};
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

// The words of one `iptables -S` line (iptables quotes only comments, which we never use and
// which only matter to the word match below when they contain our chain names verbatim).
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

}  // namespace

std::string ingressChain(const std::string& id) { return kIngressPrefix + id; }
std::string egressChain(const std::string& id) { return kEgressPrefix + id; }

Status validateInterceptConfig(const InterceptConfig& c) {
  if (!validId(c.id))
    return makeError("--id: '" + c.id + "' must be 1 to " + std::to_string(kMaxIdLength) +
                     " characters of A-Z, a-z, 0-9, '_' and '-'");
  if (c.proxy_ingress_port == 0) return makeError("--proxy-ingress-port: must be 1..65535");
  if (c.proxy_egress_port == 0) return makeError("--proxy-egress-port: must be 1..65535");
  if (c.proxy_ingress_port == c.proxy_egress_port)
    return makeError("--proxy-ingress-port and --proxy-egress-port must differ (both " +
                     std::to_string(c.proxy_egress_port) + ")");
  for (uint16_t p : c.app_ports) {
    if (p == 0) return makeError("--app-ports: 0 is not a port");
    if (p == c.proxy_ingress_port || p == c.proxy_egress_port)
      return makeError("--app-ports: " + std::to_string(p) +
                       " is one of the proxy's own ports (ingress " +
                       std::to_string(c.proxy_ingress_port) + ", egress " +
                       std::to_string(c.proxy_egress_port) + ")");
  }
  for (uint16_t p : c.egress_ignored_ports)
    if (p == 0) return makeError("--egress-ignored-ports: 0 is not a port");
  for (const std::string& ip : c.egress_ignored_ips)
    if (!isIpv4OrCidr(ip))
      return makeError("--egress-ignored-ips: '" + ip +
                       "' is not an IPv4 address or CIDR (IPv6 is not intercepted)");
  return {};
}

Result<InterceptConfig> makeInterceptConfig(const InterceptFlags& f) {
  InterceptConfig c;
  if (!f.id.empty()) c.id = trimSpace(f.id);
  if (!f.app_ports.empty()) {
    auto p = parsePorts(f.app_ports, "--app-ports");
    if (!p) return Unexpected<Error>{p.error()};
    c.app_ports = *p;
  }
  if (!f.proxy_ingress_port.empty()) {
    auto p = parsePort(f.proxy_ingress_port, "--proxy-ingress-port");
    if (!p) return Unexpected<Error>{p.error()};
    c.proxy_ingress_port = *p;
  }
  if (!f.proxy_egress_port.empty()) {
    auto p = parsePort(f.proxy_egress_port, "--proxy-egress-port");
    if (!p) return Unexpected<Error>{p.error()};
    c.proxy_egress_port = *p;
  }
  if (!f.ignored_uid.empty()) {
    auto v = parseNumber(f.ignored_uid, "--ignored-uid", 0, 4294967294u, "a user id");
    if (!v) return Unexpected<Error>{v.error()};
    c.ignored_uid = *v;
  }
  if (!f.ignored_gid.empty()) {
    auto v = parseNumber(f.ignored_gid, "--ignored-gid", 0, 4294967294u, "a group id");
    if (!v) return Unexpected<Error>{v.error()};
    c.ignored_gid = *v;
  }
  if (f.egress_ignored_ports) {
    c.egress_ignored_ports.clear();
    if (!isNone(*f.egress_ignored_ports)) {
      auto p = parsePorts(*f.egress_ignored_ports, "--egress-ignored-ports");
      if (!p) return Unexpected<Error>{p.error()};
      c.egress_ignored_ports = *p;
    }
  }
  if (f.egress_ignored_ips) {
    c.egress_ignored_ips.clear();
    if (!isNone(*f.egress_ignored_ips)) {
      std::set<std::string> seen;
      for (const std::string& ip : splitList(*f.egress_ignored_ips))
        if (seen.insert(ip).second) c.egress_ignored_ips.push_back(ip);
    }
  }
  if (auto st = validateInterceptConfig(c); !st) return Unexpected<Error>{st.error()};
  return c;
}

std::vector<Argv> chainRules(const InterceptConfig& c) {
  const std::string in = ingressChain(c.id), out = egressChain(c.id);
  const std::string ingress = std::to_string(c.proxy_ingress_port);
  const std::string egress = std::to_string(c.proxy_egress_port);
  std::vector<Argv> rules;
  // Inbound: connections from other hosts to an app port go to the proxy's ingress listener.
  for (uint16_t p : c.app_ports)
    rules.push_back(nat({"-A", in, "-p", "tcp", "--dport", std::to_string(p), "-j", "REDIRECT",
                         "--to-ports", ingress}));
  // Outbound, exemptions first: the proxy's own connections (to the app and upstream), ...
  rules.push_back(nat(
      {"-A", out, "-m", "owner", "--uid-owner", std::to_string(c.ignored_uid), "-j", "RETURN"}));
  if (c.ignored_gid)
    rules.push_back(nat(
        {"-A", out, "-m", "owner", "--gid-owner", std::to_string(*c.ignored_gid), "-j", "RETURN"}));
  // ... traffic to this host's own addresses (loopback: the app, the proxy's admin port,
  // local agents), ...
  rules.push_back(nat({"-A", out, "-o", "lo", "-j", "RETURN"}));
  // ... the ignored ports and addresses, ...
  for (uint16_t p : c.egress_ignored_ports)
    rules.push_back(nat({"-A", out, "-p", "tcp", "--dport", std::to_string(p), "-j", "RETURN"}));
  for (const std::string& ip : c.egress_ignored_ips)
    rules.push_back(nat({"-A", out, "-d", ip, "-j", "RETURN"}));
  // ... and every other TCP connection goes to the proxy's egress listener.
  rules.push_back(nat({"-A", out, "-p", "tcp", "-j", "REDIRECT", "--to-ports", egress}));
  return rules;
}

std::vector<Jump> jumps(const std::string& id) {
  return {{"PREROUTING", {"-p", "tcp", "-j", ingressChain(id)}},
          {"OUTPUT", {"-p", "tcp", "-j", egressChain(id)}}};
}

std::vector<Argv> installCommands(const InterceptConfig& c, bool ingress_exists,
                                  bool egress_exists) {
  std::vector<Argv> cmds;
  cmds.push_back(nat({ingress_exists ? "-F" : "-N", ingressChain(c.id)}));
  cmds.push_back(nat({egress_exists ? "-F" : "-N", egressChain(c.id)}));
  for (Argv& r : chainRules(c)) cmds.push_back(std::move(r));
  return cmds;
}

std::map<std::string, std::vector<std::string>> installedInterceptions(const std::string& listing) {
  std::map<std::string, std::vector<std::string>> out;
  std::istringstream in(listing);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (const std::string& w : words(line)) {
      std::string id;
      if (w.rfind(kIngressPrefix, 0) == 0)
        id = w.substr(std::string(kIngressPrefix).size());
      else if (w.rfind(kEgressPrefix, 0) == 0)
        id = w.substr(std::string(kEgressPrefix).size());
      if (!validId(id)) continue;
      out[id].push_back(line);
      break;
    }
  }
  return out;
}

Interceptor::Interceptor(CommandRunner& runner, std::string iptables)
    : runner_(runner), iptables_(std::move(iptables)) {}

Result<CommandResult> Interceptor::iptables(const Argv& args) {
  Argv argv = {iptables_, "-w", kLockWaitSeconds};
  argv.insert(argv.end(), args.begin(), args.end());
  return runner_.run(argv);
}

Status Interceptor::mustRun(const Argv& args) {
  auto r = iptables(args);
  if (!r) return Unexpected<Error>{r.error()};
  if (r->exit_code != 0) {
    Argv shown = {iptables_};
    shown.insert(shown.end(), args.begin(), args.end());
    std::string err = trimSpace(r->err);
    while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
    return makeError(formatArgv(shown) + " failed (exit " + std::to_string(r->exit_code) + ")" +
                     (err.empty() ? "" : ": " + err));
  }
  return {};
}

Result<std::map<std::string, std::vector<std::string>>> Interceptor::list() {
  auto r = iptables({"-t", "nat", "-S"});
  if (!r) return Unexpected<Error>{r.error()};
  if (r->exit_code != 0)
    return makeError(formatArgv({iptables_, "-t", "nat", "-S"}) + " failed (exit " +
                     std::to_string(r->exit_code) + "): " + trimSpace(r->err));
  return installedInterceptions(r->out);
}

Result<std::set<std::string>> Interceptor::existingChains() {
  auto all = list();
  if (!all) return Unexpected<Error>{all.error()};
  std::set<std::string> chains;
  for (const auto& [id, lines] : *all)
    for (const std::string& l : lines) {
      std::vector<std::string> w = words(l);
      if (w.size() == 2 && w[0] == "-N") chains.insert(w[1]);
    }
  return chains;
}

Status Interceptor::install(const InterceptConfig& config) {
  if (auto st = validateInterceptConfig(config); !st) return st;
  auto chains = existingChains();
  if (!chains) return Unexpected<Error>{chains.error()};
  auto fail = [&](const Error& e) -> Status {
    (void)remove(config.id);  // best effort: leave nothing half-made
    return Unexpected<Error>{e};
  };
  for (const Argv& cmd : installCommands(config, chains->count(ingressChain(config.id)) > 0,
                                         chains->count(egressChain(config.id)) > 0))
    if (auto st = mustRun(cmd); !st) return fail(st.error());
  for (const Jump& j : jumps(config.id)) {
    Argv check = {"-t", "nat", "-C", j.hook};
    check.insert(check.end(), j.spec.begin(), j.spec.end());
    auto r = iptables(check);
    if (!r) return fail(r.error());
    if (r->exit_code == 0) continue;  // already there: install twice adds nothing
    Argv insert = {"-t", "nat", "-I", j.hook, "1"};
    insert.insert(insert.end(), j.spec.begin(), j.spec.end());
    if (auto st = mustRun(insert); !st) return fail(st.error());
  }
  return {};
}

Result<bool> Interceptor::remove(const std::string& id) {
  if (!validId(id))
    return makeError("--id: '" + id + "' must be 1 to " + std::to_string(kMaxIdLength) +
                     " characters of A-Z, a-z, 0-9, '_' and '-'");
  auto chains = existingChains();
  if (!chains) return Unexpected<Error>{chains.error()};
  bool found = false;
  for (const Jump& j : jumps(id)) {
    const std::string& chain = j.spec.back();
    if (chains->count(chain) == 0) continue;
    found = true;
    // Every jump to the chain from its hook (a rule can only be deleted once it is not
    // referenced; more than one jump can exist if someone added one by hand).
    for (int guard = 0; guard < 64; ++guard) {
      Argv check = {"-t", "nat", "-C", j.hook};
      check.insert(check.end(), j.spec.begin(), j.spec.end());
      auto r = iptables(check);
      if (!r) return Unexpected<Error>{r.error()};
      if (r->exit_code != 0) break;
      Argv del = {"-t", "nat", "-D", j.hook};
      del.insert(del.end(), j.spec.begin(), j.spec.end());
      if (auto st = mustRun(del); !st) return Unexpected<Error>{st.error()};
    }
    if (auto st = mustRun({"-t", "nat", "-F", chain}); !st) return Unexpected<Error>{st.error()};
    if (auto st = mustRun({"-t", "nat", "-X", chain}); !st) return Unexpected<Error>{st.error()};
  }
  return found;
}

}  // namespace weft::workload
