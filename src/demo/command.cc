#include "demo/command.h"

#include <csignal>

#include "demo/demo.h"

namespace weft::demo {
namespace {

constexpr char kHelp[] =
    "Usage: weft demo up [flags]\n"
    "       weft demo status [--state-dir DIR]\n"
    "       weft demo down [--state-dir DIR]\n"
    "\n"
    "The reference scenario - App Mesh's cross-VPC walkthrough with TLS - on this machine\n"
    "(as root; docs/walkthrough.md). `up` builds the Crystal backend, the two networks\n"
    "(weft lab), starts weft server, deploys the CA, registry and mesh stacks of\n"
    "examples/crossvpc, runs each app with its sidecar on its host (weft run), starts the\n"
    "ingress gateway and waits for the page; it prints the gateway's URL and the page's\n"
    "three lines. Progress goes to stderr, every command and its output to\n"
    "<state-dir>/logs/demo.log. A failed or interrupted `up` removes what it made and keeps\n"
    "the logs. `down` removes everything (processes, namespaces, rules, the control plane's\n"
    "data, the state), also after a crash. `status` shows the hosts, the proxies and their\n"
    "health, and the page; it exits 1 when something is not working.\n"
    "\n"
    "Flags:\n"
    "  --state-dir DIR      state, logs and the control plane's data (default\n"
    "                       $WEFT_DEMO_STATE_DIR, else /run/weft/demo)\n"
    "  --name NAME          the lab's name (namespaces NAME-<host>) and the stacks' prefix\n"
    "                       (default crossvpc)\n"
    "  --examples-dir DIR   the scenario's files (default examples/crossvpc beside the binary's\n"
    "                       build tree, else in the current directory)\n"
    "  --topology FILE      the lab topology (default <examples-dir>/lab.yaml); hosts named\n"
    "                       frontend-*, crystal-* and nodejs-* run those apps, others none\n"
    "  --cache-dir DIR      where the Crystal backend is built, kept across `down`\n"
    "                       (default /var/cache/weft/demo)\n"
    "  --api HOST:PORT      the control plane's API (default 127.0.0.1:7080; port 0: free)\n"
    "  --stream-port P      the config stream, on 0.0.0.0 (default 7081; 0: free)\n"
    "  --dns-port P         the mesh DNS on 127.0.0.1, besides each network endpoint's port\n"
    "                       53 (default 7053; 0: free)\n"
    "  --gateway-port P     the ingress gateway (default 8080)\n"
    "  --app-user USER      the apps' user (default nobody; '' runs them as root)\n"
    "  --timeout D          up: how long the page may take once everything runs (default\n"
    "                       300s; forms 90, 90s, 5m)\n";

std::atomic<bool> g_interrupted{false};

extern "C" void onSignal(int) { g_interrupted.store(true); }

// SIGINT, SIGTERM and SIGHUP set the flag while `up` runs (it then rolls back).
class InterruptGuard {
 public:
  InterruptGuard() {
    struct sigaction sa {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~InterruptGuard() {
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3];
};

int usage(DemoIo& io, const std::string& why) {
  io.err << "weft demo: " << why << " (see weft demo --help)\n";
  return 2;
}

// "300", "300s", "5m" -> seconds; -1 when malformed.
long parseSeconds(const std::string& s) {
  if (s.empty()) return -1;
  long unit = 1;
  std::string digits = s;
  if (s.back() == 's' || s.back() == 'm') {
    unit = s.back() == 'm' ? 60 : 1;
    digits = s.substr(0, s.size() - 1);
  }
  if (digits.empty() || digits.size() > 6 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stol(digits) * unit;
}

// A port flag: 0-65535 (`allow_zero`) or 1-65535; -1 when malformed.
int parsePort(const std::string& s, bool allow_zero) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  int p = std::stoi(s);
  if (p > 65535 || (p == 0 && !allow_zero)) return -1;
  return p;
}

}  // namespace

const char* demoHelp() { return kHelp; }

int runDemoCommand(const DemoInvocation& inv, DemoIo& io) {
  if (inv.positional.size() != 1)
    return usage(io, inv.positional.empty() ? "expected up, down or status"
                                            : "takes one subcommand: up, down or status");
  const std::string& sub = inv.positional[0];
  if (sub != "up" && sub != "down" && sub != "status")
    return usage(io, "unknown subcommand '" + sub + "' (expected up, down or status)");
  DemoOptions o;
  o.state_dir = inv.state_dir;
  if (o.state_dir.empty() && io.env)
    if (auto v = io.env("WEFT_DEMO_STATE_DIR"); v && !v->empty()) o.state_dir = *v;
  o.name = inv.name;
  o.examples_dir = inv.examples_dir;
  o.topology = inv.topology;
  o.cache_dir = inv.cache_dir;
  if (!inv.api.empty()) o.api = inv.api;
  struct PortFlag {
    const char* flag;
    const std::string& value;
    int& target;
    bool zero;
  };
  for (const PortFlag& f : {PortFlag{"--stream-port", inv.stream_port, o.stream_port, true},
                            PortFlag{"--dns-port", inv.dns_port, o.dns_port, true},
                            PortFlag{"--gateway-port", inv.gateway_port, o.gateway_port, false}}) {
    if (f.value.empty()) continue;
    int p = parsePort(f.value, f.zero);
    if (p < 0)
      return usage(io, std::string(f.flag) + " '" + f.value + "' is not a port (" +
                           (f.zero ? "0" : "1") + "-65535)");
    f.target = p;
  }
  if (inv.app_user_set) o.app_user = inv.app_user;
  if (!inv.timeout.empty()) {
    long t = parseSeconds(inv.timeout);
    if (t <= 0) return usage(io, "--timeout '" + inv.timeout + "' is not a duration (90s, 5m)");
    o.timeout = std::chrono::seconds(t);
  }
  if (sub != "up" && (!inv.topology.empty() || !inv.api.empty() || !inv.gateway_port.empty() ||
                      !inv.stream_port.empty() || !inv.dns_port.empty() || !inv.timeout.empty()))
    return usage(io, "--topology, --api, the port flags and --timeout apply only to up");

  auto sys = lab::makeRealSystem();
  g_interrupted.store(false);
  Demo demo(*sys, o, io.out, io.err, &g_interrupted);
  Status s;
  if (sub == "up") {
    InterruptGuard guard;
    s = demo.up();
  } else if (sub == "down") {
    s = demo.down();
  } else {
    s = demo.status();
  }
  if (!s) {
    io.err << "weft demo " << sub << ": " << s.error().message << "\n";
    return 1;
  }
  return 0;
}

}  // namespace weft::demo
