#include "lab/command.h"

#include <signal.h>

#include <atomic>
#include <cerrno>

namespace weft::lab {

namespace {

constexpr int kUsage = 2;

constexpr const char* kHelp =
    "Usage: weft lab up FILE [--name LAB] [--register]\n"
    "       weft lab down [--name LAB] [--keep-networks]\n"
    "       weft lab status [--name LAB] [-o table|json]\n"
    "       weft lab exec HOST [--name LAB] -- COMMAND [ARG...]\n"
    "       weft lab register [--name LAB]\n"
    "       weft lab peer NETWORK NETWORK [--name LAB]\n"
    "       weft lab unpeer NETWORK NETWORK [--name LAB]\n"
    "\n"
    "Real networks on one machine (needs root): each network (VPC) is a router network\n"
    "namespace with a bridge per subnet, each host a namespace on its subnet's bridge, each\n"
    "peering a veth pair between two routers. Addresses come only from 198.18.0.0/15. Every\n"
    "network reaches the machine's root namespace, where `weft server` runs, at its own\n"
    "endpoint address (by default the last usable address of its CIDR), without that path\n"
    "joining networks: the root namespace never forwards between them. Each host's\n"
    "resolv.conf names its network's endpoint, so the mesh's DNS answers it. See docs/lab.md\n"
    "for the topology file and the wiring.\n"
    "\n"
    "  up       builds the topology in FILE (YAML) and prints progress on stderr. Refuses a\n"
    "           lab that is already up. The state file is written before each object is\n"
    "           made; if a step fails, what was made is removed again\n"
    "  down     removes everything the lab made (processes in its namespaces, network\n"
    "           registrations, iptables rules, interfaces, namespaces, resolv.conf files),\n"
    "           also after a crashed `up`, and sweeps anything else carrying its names.\n"
    "           Exits 0 only when nothing is left; a lab that is not up is nothing to do\n"
    "  status   networks, subnets, endpoints, peerings, hosts and addresses, and whether\n"
    "           each namespace still exists\n"
    "  exec     runs COMMAND in HOST's namespace (ip netns exec, so with the host's\n"
    "           resolv.conf), stdio inherited, its exit code passed through; the environment\n"
    "           gets WEFT_LAB, WEFT_LAB_HOST, WEFT_LAB_NETWORK, WEFT_LAB_SUBNET, WEFT_LAB_ZONE,\n"
    "           WEFT_LAB_ADDRESS, WEFT_LAB_GATEWAY, WEFT_LAB_ENDPOINT, WEFT_LAB_NAMESPACE.\n"
    "           A network's name instead of a host runs COMMAND in its router\n"
    "  register registers the networks of a running lab with the weft server (as --register\n"
    "           does at up), for a server started after `up`: one that listens on the\n"
    "           endpoint addresses, which exist only once the lab is up\n"
    "  peer     peers two networks of a running lab; unpeer removes the peering\n"
    "\n"
    "Without --name, the commands but up act on the only lab that is up.\n"
    "\n"
    "Flags:\n"
    "  --name LAB          the lab (up: overrides the file's `name:`, which defaults to the\n"
    "                      file's name without extension)\n"
    "  --register          up: register each network with the weft server (as\n"
    "                      `weft network create`), like control_plane.register_networks;\n"
    "                      fails when the server does not answer. Uses --endpoint, --profile\n"
    "                      and --region as the other commands do. `down` deregisters them\n"
    "  --keep-networks     down: leave the networks registered with the server\n"
    "  --state-dir DIR     where state files live (default $WEFT_LAB_STATE_DIR, else\n"
    "                      /run/weft/lab): <DIR>/<LAB>.json\n"
    "  -o, --output FMT    status: table (default) or json\n";

std::atomic<bool> g_interrupted{false};

extern "C" void onInterrupt(int) { g_interrupted.store(true); }

// SIGINT, SIGTERM and SIGHUP set g_interrupted while it lives (so `up` stops between steps and
// removes what it made); the previous handlers come back after.
class InterruptGuard {
 public:
  InterruptGuard() {
    struct sigaction sa {};
    sa.sa_handler = onInterrupt;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~InterruptGuard() {
    for (size_t i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3]{};
};

int fail(LabIo& io, const std::string& what, const Error& e) {
  io.err << "weft lab " << what << ": " << e.message << "\n";
  return 1;
}

int usage(LabIo& io, const std::string& what, const std::string& message) {
  io.err << "weft lab" << (what.empty() ? "" : " " + what) << ": " << message
         << " (see weft lab --help)\n";
  return kUsage;
}

std::string fileStem(const std::string& path) {
  std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  size_t dot = base.find('.');
  return dot == std::string::npos ? base : base.substr(0, dot);
}

}  // namespace

const char* labHelp() { return kHelp; }

int runLabCommand(const LabInvocation& inv, LabIo& io) {
  if (inv.positional.empty())
    return usage(io, "", "expected up, down, status, exec, register, peer or unpeer");
  std::unique_ptr<System> real;
  System* sys = io.system;
  if (sys == nullptr) {
    real = makeRealSystem();
    sys = real.get();
  }
  std::string state_dir = inv.state_dir;
  if (state_dir.empty() && io.env)
    if (auto v = io.env("WEFT_LAB_STATE_DIR"); v && !v->empty()) state_dir = *v;
  if (state_dir.empty()) state_dir = std::string(kDefaultStateDir);
  Lab lab(*sys, state_dir, io.err);

  const std::string& sub = inv.positional[0];
  const std::vector<std::string>& p = inv.positional;
  auto noOutputFlag = [&]() { return inv.output.empty() || sub == "status"; };
  if (!noOutputFlag()) return usage(io, sub, "-o applies only to status");
  if (inv.register_networks && sub != "up") return usage(io, sub, "--register applies only to up");
  if (inv.keep_networks && sub != "down")
    return usage(io, sub, "--keep-networks applies only to down");

  if (sub == "up") {
    if (p.size() != 2) return usage(io, sub, "expected the topology FILE");
    auto text = sys->readFile(p[1]);
    if (!text) return fail(io, sub, text.error());
    auto topo = parseTopology(*text, inv.name.empty() ? fileStem(p[1]) : inv.name);
    if (!topo) return fail(io, sub, Error{1, p[1] + ": " + topo.error().message});
    if (!inv.name.empty()) {
      if (auto v = validateLabName(inv.name); !v) return fail(io, sub, v.error());
      topo->name = inv.name;
    }
    bool reg = inv.register_networks || topo->control_plane.register_networks;
    g_interrupted.store(false);
    InterruptGuard guard;
    if (auto s = lab.up(*topo, p[1], reg, io.registrar, &g_interrupted); !s)
      return fail(io, sub, s.error());
    return 0;
  }
  if (sub == "down") {
    if (p.size() != 1) return usage(io, sub, "takes no arguments (use --name)");
    std::string name = inv.name;
    if (name.empty()) {
      auto picked = lab.pickLab("");
      if (!picked) return fail(io, sub, picked.error());
      name = *picked;
    }
    if (auto s = lab.down(name, io.registrar, inv.keep_networks); !s)
      return fail(io, sub, s.error());
    return 0;
  }
  if (sub == "status") {
    if (p.size() != 1) return usage(io, sub, "takes no arguments (use --name)");
    std::string format = inv.output.empty() ? "table" : inv.output;
    if (format != "table" && format != "json")
      return usage(io, sub, "-o must be table or json, not '" + format + "'");
    auto name = lab.pickLab(inv.name);
    if (!name) return fail(io, sub, name.error());
    auto st = lab.load(*name);
    if (!st) return fail(io, sub, st.error());
    io.out << (format == "json" ? lab.statusJson(*st) + "\n" : lab.statusTable(*st));
    return 0;
  }
  if (sub == "exec") {
    if (p.size() < 2 || p[1] == "--") return usage(io, sub, "expected HOST -- COMMAND");
    std::vector<std::string> command(p.begin() + 2, p.end());
    if (!command.empty() && command[0] == "--") command.erase(command.begin());
    if (command.empty()) return usage(io, sub, "expected a COMMAND after HOST --");
    auto name = lab.pickLab(inv.name);
    if (!name) return fail(io, sub, name.error());
    Status s = lab.exec(*name, p[1], command);
    return fail(io, sub, s ? Error{1, "exec returned"} : s.error());
  }
  if (sub == "register") {
    if (p.size() != 1) return usage(io, sub, "takes no arguments (use --name)");
    auto name = lab.pickLab(inv.name);
    if (!name) return fail(io, sub, name.error());
    if (auto s = lab.registerNetworks(*name, io.registrar); !s) return fail(io, sub, s.error());
    return 0;
  }
  if (sub == "peer" || sub == "unpeer") {
    if (p.size() != 3) return usage(io, sub, "expected two network names");
    auto name = lab.pickLab(inv.name);
    if (!name) return fail(io, sub, name.error());
    Status s = sub == "peer" ? lab.peer(*name, p[1], p[2]) : lab.unpeer(*name, p[1], p[2]);
    if (!s) return fail(io, sub, s.error());
    return 0;
  }
  return usage(io, sub,
               "unknown subcommand '" + sub +
                   "' (expected up, down, status, exec, register, peer or unpeer)");
}

}  // namespace weft::lab
