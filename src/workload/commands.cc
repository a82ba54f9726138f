#include "workload/commands.h"

#include <cstdlib>

namespace weft::workload {

int interceptCommand(const std::string& sub, const InterceptFlags& flags, bool id_given,
                     std::ostream& out, std::ostream& err) {
  const std::string name = "weft intercept " + sub;
  auto usage = [&](const std::string& m) {
    err << name << ": " << m << "\n";
    return 2;
  };
  auto failure = [&](const std::string& m) {
    err << name << ": " << m << "\n";
    return 1;
  };
  if (sub != "install" && sub != "remove" && sub != "status")
    return usage("unknown subcommand (expected install, remove or status)");
  auto config = makeInterceptConfig(flags);
  if (!config) return usage(config.error().message);
  if (sub != "install") {
    bool install_only = !flags.app_ports.empty() || !flags.proxy_ingress_port.empty() ||
                        !flags.proxy_egress_port.empty() || !flags.ignored_uid.empty() ||
                        !flags.ignored_gid.empty() || flags.egress_ignored_ports ||
                        flags.egress_ignored_ips;
    if (install_only) return usage("takes only --id (the rules flags are for install)");
  }
  ProcessCommandRunner runner;
  Interceptor interceptor(runner);
  if (sub == "install") {
    if (auto st = interceptor.install(*config); !st) return failure(st.error().message);
    const InterceptConfig& c = *config;
    std::string ports;
    for (uint16_t p : c.app_ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
    out << "installed interception " << c.id << ": inbound TCP to "
        << (ports.empty() ? std::string("no app port") : "port(s) " + ports) << " -> "
        << c.proxy_ingress_port << ", outbound TCP -> " << c.proxy_egress_port << " (uid "
        << c.ignored_uid << " exempt)\n";
    return 0;
  }
  if (sub == "remove") {
    auto r = interceptor.remove(config->id);
    if (!r) return failure(r.error().message);
    out << (*r ? "removed interception " : "no interception ") << config->id
        << (*r ? "" : " installed; nothing to remove") << "\n";
    return 0;
  }
  auto all = interceptor.list();
  if (!all) return failure(all.error().message);
  if (id_given) {
    auto it = all->find(config->id);
    if (it == all->end()) return failure("no interception " + config->id + " installed");
    out << "interception " << it->first << " (nat table):\n";
    for (const std::string& l : it->second) out << "  " << l << "\n";
    return 0;
  }
  if (all->empty()) {
    out << "No weft interception installed in this network namespace.\n";
    return 0;
  }
  for (const auto& [id, lines] : *all) {
    out << "interception " << id << " (nat table):\n";
    for (const std::string& l : lines) out << "  " << l << "\n";
  }
  return 0;
}

int runCommand(const RunFlags& flags, std::ostream& err) {
  auto options = makeRunOptions(flags, [](const char* name) { return std::getenv(name); });
  if (!options) {
    err << "weft run: " << options.error().message << "\n";
    return 2;
  }
  return runWorkload(*options, err);
}

}  // namespace weft::workload
