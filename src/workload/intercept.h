#pragma once
// Traffic interception as App Mesh installs it for a sidecar (ECS task definitions'
// ProxyConfiguration; the EC2 walkthrough's SSM document): iptables rules in the nat table of the
// current network namespace send the app's inbound TCP to the proxy's ingress port and its
// outbound TCP to the proxy's egress port, except what is exempt. docs/workloads.md has the
// rules as a table.
//
// Each installation has an id and owns exactly two chains, WEFT_IN_<id> (jumped to from
// PREROUTING) and WEFT_OUT_<id> (from OUTPUT), so that `remove` deletes exactly what `install`
// made and a second `install` of the same id replaces its rules instead of adding more.
//
// IPv4 only (iptables): the listeners the control plane pushes bind 0.0.0.0, so IPv6 traffic is
// left alone rather than redirected to a port nothing listens on.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "workload/command.h"

namespace weft::workload {

// App Mesh's ProxyConfiguration properties (AppPorts, ProxyIngressPort, ProxyEgressPort,
// IgnoredUID, IgnoredGID, EgressIgnoredPorts, EgressIgnoredIPs) plus the installation id.
struct InterceptConfig {
  std::string id = "weft";
  std::vector<uint16_t> app_ports;  // inbound TCP to these goes to proxy_ingress_port
  uint16_t proxy_ingress_port = 15000;
  uint16_t proxy_egress_port = 15001;
  uint32_t ignored_uid = 1337;  // the proxy's user: its own connections are never redirected
  std::optional<uint32_t> ignored_gid;
  std::vector<uint16_t> egress_ignored_ports = {22};
  // IPv4 addresses or CIDRs (a.b.c.d/n) whose outbound traffic is not redirected.
  std::vector<std::string> egress_ignored_ips = {"169.254.169.254", "169.254.170.2"};
};

// Flag values as typed (empty = the default), for makeInterceptConfig.
struct InterceptFlags {
  std::string id;
  std::string app_ports;
  std::string proxy_ingress_port;
  std::string proxy_egress_port;
  std::string ignored_uid;
  std::string ignored_gid;
  std::optional<std::string> egress_ignored_ports;  // set and "" (or "none"): no ports
  std::optional<std::string> egress_ignored_ips;    // set and "" (or "none"): no addresses
};

// Parses and checks flag values into a config: ports 1..65535 (lists comma-separated), the id
// 1-19 characters of [A-Za-z0-9_-] (so that WEFT_OUT_<id> fits iptables' 28-character chain
// names), ingress and egress ports distinct and not among the app ports, IPv4 addresses or CIDRs.
// Errors name the flag.
Result<InterceptConfig> makeInterceptConfig(const InterceptFlags& flags);

// Checks a config built in code (the same rules as makeInterceptConfig).
Status validateInterceptConfig(const InterceptConfig& config);

std::string ingressChain(const std::string& id);  // WEFT_IN_<id>
std::string egressChain(const std::string& id);   // WEFT_OUT_<id>

// iptables arguments (no program name; each starts with "-t", "nat") that fill the two chains,
// in order: first WEFT_IN_<id>'s rules, then WEFT_OUT_<id>'s. Pure: the rules of a config.
std::vector<Argv> chainRules(const InterceptConfig& config);

// The rule spec of the jump into each chain, without the command: {"PREROUTING", "-p", "tcp",
// "-j", "WEFT_IN_<id>"} and the same from OUTPUT. Used with -C, -I <hook> 1 and -D.
struct Jump {
  std::string hook;
  Argv spec;  // after the chain name
};
std::vector<Jump> jumps(const std::string& id);

// What `install` runs, given which of the two chains already exist: -N (missing) or -F
// (present) for each chain, then chainRules. The jumps are added afterwards only where `-C`
// says they are missing (see Interceptor::install).
std::vector<Argv> installCommands(const InterceptConfig& config, bool ingress_exists,
                                  bool egress_exists);

// The ids of the weft interceptions in an `iptables -t nat -S` listing, each with its lines
// (the chains' -N and -A lines and the jumps to them), in listing order.
std::map<std::string, std::vector<std::string>> installedInterceptions(const std::string& listing);

// Installs, removes and lists interceptions by running iptables through a CommandRunner.
// Not thread-safe; two Interceptors changing the same id at once race (iptables itself
// serializes each single command).
class Interceptor {
 public:
  // `iptables`: the program to run (a path or a name found like findExecutable).
  Interceptor(CommandRunner& runner, std::string iptables = "iptables");

  // Makes the chains (or empties them if present), fills them, and inserts each jump at the top
  // of its hook unless it is already there. On failure, what this id had is removed (best
  // effort) and the error names the command that failed and what it wrote on stderr.
  Status install(const InterceptConfig& config);

  // Deletes the jumps and the chains of `id`. Answers whether anything was there (removing an
  // id that is not installed is not an error).
  Result<bool> remove(const std::string& id);

  // The installed interceptions: id -> their lines from `iptables -t nat -S`.
  Result<std::map<std::string, std::vector<std::string>>> list();

 private:
  Result<CommandResult> iptables(const Argv& args);
  // Runs, and makes a non-zero exit an error with the command line and its stderr.
  Status mustRun(const Argv& args);
  // The WEFT_* chains present in the nat table.
  Result<std::set<std::string>> existingChains();

  CommandRunner& runner_;
  std::string iptables_;
};

}  // namespace weft::workload
