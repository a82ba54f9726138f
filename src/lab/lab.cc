#include "lab/lab.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <set>

#include "common/json.h"
#include "common/text.h"
#include "lab/layout.h"

namespace weft::lab {

namespace {

constexpr std::string_view kNetnsRun = "/run/netns";
constexpr const char* kIptablesWait = "5";  // seconds to wait for the xtables lock
constexpr auto kTermGrace = std::chrono::milliseconds(5000);
constexpr auto kKillGrace = std::chrono::milliseconds(2000);
constexpr auto kPoll = std::chrono::milliseconds(50);

std::string oneLine(std::string s) {
  s = trimSpace(std::move(s));
  for (char& c : s)
    if (c == '\n') c = ';';
  return s;
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

LabObject object(ObjectKind kind, std::string ns, std::string name, std::string path = "") {
  LabObject o;
  o.kind = kind;
  o.ns = std::move(ns);
  o.name = std::move(name);
  o.path = std::move(path);
  return o;
}

std::string cidrOf(uint32_t a, int len) { return formatIpv4(a) + "/" + std::to_string(len); }

// Splits an iptables-save line into arguments: whitespace separates, "..." groups (with \"
// and \\ escapes), as iptables-save quotes comments.
std::vector<std::string> splitRule(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size()) break;
    std::string tok;
    bool quoted = false;
    while (i < line.size() && (quoted || (line[i] != ' ' && line[i] != '\t'))) {
      char c = line[i++];
      if (c == '"') {
        quoted = !quoted;
      } else if (c == '\\' && quoted && i < line.size()) {
        tok += line[i++];
      } else {
        tok += c;
      }
    }
    out.push_back(std::move(tok));
  }
  return out;
}

// A name the lab gives things ("<lab>-" is followed by one, a log file's stem is one):
// lowercase letters, digits and '-', not at either end; so never "..", "/" or empty.
bool plainName(std::string_view n) {
  if (n.empty() || n.size() > 64 || n.front() == '-' || n.back() == '-') return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

bool isLabNamespace(const std::string& lab, std::string_view ns) {
  std::string prefix = lab + "-";
  return startsWith(ns, prefix) && plainName(ns.substr(prefix.size()));
}

// `prefix` followed by 1-3 digits ("br0", "h12", "wl0123abcde1").
bool numbered(std::string_view name, std::string_view prefix) {
  if (!startsWith(name, prefix) || name.size() == prefix.size() || name.size() > prefix.size() + 3)
    return false;
  return name.substr(prefix.size()).find_first_not_of("0123456789") == std::string_view::npos;
}

// The namespace of "/etc/netns/<ns>" or "/etc/netns/<ns>/<file>" (file "" for the former), or
// "" when `path` is not of that shape.
std::string netnsEtcNamespace(std::string_view path, std::string* file) {
  std::string base = std::string(kNetnsEtc) + "/";
  if (!startsWith(path, base)) return "";
  std::string_view rest = path.substr(base.size());
  size_t slash = rest.find('/');
  *file = slash == std::string_view::npos ? "" : std::string(rest.substr(slash + 1));
  return std::string(rest.substr(0, slash));
}

// Why `o` is not an object lab `lab` (state directory `state_dir`) makes, for an error; "" when
// it is one. Everything `down` does to an object first passes this check (layout.h): a state
// file is not trusted to name arbitrary paths, interfaces or rules.
std::string foreignReason(const std::string& state_dir, const std::string& lab,
                          const LabObject& o) {
  std::string tag = labTag(lab);
  std::string logs = state_dir + "/" + lab + ".logs";
  std::string file;
  switch (o.kind) {
    case ObjectKind::kNamespace:
      if (isLabNamespace(lab, o.name)) return "";
      return "not a namespace named " + lab + "-<name>";
    case ObjectKind::kLink:
      if (o.ns.empty()) {
        if (numbered(o.name, tag + "e")) return "";
        return "not a root interface named " + tag + "e<n>";
      }
      if (!isLabNamespace(lab, o.ns)) return "not in a namespace named " + lab + "-<name>";
      if (o.name == kRouterEndpointLink || o.name == kHostLink || numbered(o.name, "br") ||
          numbered(o.name, "h") || numbered(o.name, "p"))
        return "";
      return "not an interface name the lab uses (ep0, eth0, br<n>, h<n>, p<n>)";
    case ObjectKind::kFile: {
      if (isLabNamespace(lab, netnsEtcNamespace(o.path, &file)) && file == "resolv.conf") return "";
      std::string log = startsWith(o.path, logs + "/") ? o.path.substr(logs.size() + 1) : "";
      if (log.size() > 4 && log.substr(log.size() - 4) == ".log" &&
          plainName(log.substr(0, log.size() - 4)))
        return "";
      return "not " + std::string(kNetnsEtc) + "/" + lab + "-<name>/resolv.conf or " + logs +
             "/<host>.log";
    }
    case ObjectKind::kDirectory:
      if (o.path == logs) return "";
      if (isLabNamespace(lab, netnsEtcNamespace(o.path, &file)) && file.empty()) return "";
      return "not " + std::string(kNetnsEtc) + "/" + lab + "-<name> or " + logs;
    case ObjectKind::kIptablesRule:
      for (const char* dir : {"-i", "-o"})
        if (o.chain == "FORWARD" &&
            o.args == std::vector<std::string>{dir, tag + "+", "-m", "comment", "--comment",
                                               iptablesComment(lab), "-j", "DROP"})
          return "";
      return "not one of the lab's FORWARD drops of " + tag + "+ commented " + iptablesComment(lab);
    case ObjectKind::kRegistration:
      if (plainName(o.name)) return "";
      return "not a network name";
    case ObjectKind::kProcess:
      if (isLabNamespace(lab, o.ns)) return "";
      return "not in a namespace named " + lab + "-<name>";
  }
  return "unknown kind";
}

std::string describeObject(const LabObject& o) {
  std::string d(objectKindName(o.kind));
  if (!o.ns.empty()) d += " ns=" + o.ns;
  if (!o.name.empty()) d += " name=" + o.name;
  if (!o.path.empty()) d += " path=" + o.path;
  if (!o.chain.empty()) d += " chain=" + o.chain;
  if (!o.args.empty()) d += " args=[" + formatArgv(o.args) + "]";
  return d;
}

// The namespaces lab `t` is made of: its routers, then its hosts.
std::vector<std::string> derivedNamespaces(const std::string& lab, const Topology& t) {
  std::vector<std::string> out;
  for (const Network& n : t.networks) out.push_back(routerNamespace(lab, n.name));
  for (const Host& h : t.hosts) out.push_back(hostNamespace(lab, h.name));
  return out;
}

EnvList hostEnv(const LabState& s, const Host& h) {
  const Network* net = nullptr;
  const Subnet* sub = s.topology.findSubnet(h.subnet, &net);
  EnvList env = {{"WEFT_LAB", s.name},
                 {"WEFT_LAB_HOST", h.name},
                 {"WEFT_LAB_NAMESPACE", hostNamespace(s.name, h.name)},
                 {"WEFT_LAB_ADDRESS", formatIpv4(h.address)}};
  if (sub != nullptr && net != nullptr) {
    env.push_back({"WEFT_LAB_NETWORK", net->name});
    env.push_back({"WEFT_LAB_SUBNET", sub->name});
    env.push_back({"WEFT_LAB_ZONE", sub->zone});
    env.push_back({"WEFT_LAB_GATEWAY", formatIpv4(sub->gateway)});
    env.push_back({"WEFT_LAB_ENDPOINT", formatIpv4(net->endpoint)});
  }
  return env;
}

std::string resolvConf(const LabState& s, const Host& h, const Network& net) {
  std::string o = "# written by `weft lab up` for host " + h.name + " of lab " + s.name +
                  "; removed by `weft lab down`\n";
  o += "nameserver " + formatIpv4(net.endpoint) + "\n";
  if (!s.topology.control_plane.dns_search.empty()) {
    o += "search";
    for (const std::string& d : s.topology.control_plane.dns_search) o += " " + d;
    o += "\n";
  }
  o += "options timeout:2 attempts:2\n";
  return o;
}

}  // namespace

// One command's work on one lab: the state, the journal and the commands.
class Lab::Session {
 public:
  Session(Lab& lab, const std::atomic<bool>* interrupted)
      : lab_(lab), sys_(lab.sys_), out_(lab.progress_), interrupted_(interrupted) {}

  LabState state;

  // Runs a command that must succeed.
  Status cmd(std::vector<std::string> argv) {
    if (interrupted_ != nullptr && interrupted_->load())
      return makeError("interrupted before `" + formatArgv(argv) + "`");
    auto r = sys_.run(argv);
    if (!r) return makeError("`" + formatArgv(argv) + "`: " + r.error().message);
    if (r->exit_code != 0) {
      std::string err = oneLine(r->err.empty() ? r->out : r->err);
      return makeError("`" + formatArgv(argv) + "` failed (exit " + std::to_string(r->exit_code) +
                       ")" + (err.empty() ? "" : ": " + err));
    }
    return {};
  }

  // Runs a command whose failure is expected at times (removing what may be gone already).
  CommandOutput tryCmd(std::vector<std::string> argv) {
    auto r = sys_.run(argv);
    if (!r) return CommandOutput{127, "", r.error().message};
    return *r;
  }

  Status save() { return sys_.writeFile(lab_.statePath(state.name), stateToJson(state), 0644); }

  // Records `o` in the state file before it is created.
  Status journal(LabObject o) {
    state.objects.push_back(std::move(o));
    return save();
  }

  std::ostream& out() { return out_; }

  // ---- the namespace markers (layout.h): the lab's proof that it made a namespace

  std::string markerDir() const { return namespaceMarkerDir(lab_.state_dir_, state.name); }

  // Writes `ns`'s marker; called after the namespace is journaled and before it is created.
  Status mark(const std::string& ns) {
    if (auto s = sys_.makeDirs(markerDir(), 0755); !s) return s;
    return sys_.writeFile(markerDir() + "/" + ns, state.name + "\n", 0644);
  }

  // `ip netns add ns`, ns being journaled and marked (the last journal entry). When it fails,
  // whatever is named `ns` now (made by someone else since up's checks) is not the lab's: the
  // journal entry and the marker are withdrawn so the rollback leaves it alone.
  Status addNamespace(const std::string& ns) {
    Status s = cmd({"ip", "netns", "add", ns});
    if (s) return s;
    if (!state.objects.empty() && state.objects.back().kind == ObjectKind::kNamespace &&
        state.objects.back().name == ns) {
      state.objects.pop_back();
      (void)save();
    }
    (void)sys_.removeFile(markerDir() + "/" + ns);
    return s;
  }

  // The namespaces whose marker names this lab: "<lab>-<name>" files holding the lab's name.
  std::set<std::string> markedNamespaces() {
    std::set<std::string> out;
    std::string prefix = state.name + "-";
    for (const std::string& f : sys_.listDir(markerDir())) {
      if (!isLabNamespace(state.name, f)) continue;
      auto text = sys_.readFile(markerDir() + "/" + f);
      if (text && trimSpace(*text) == state.name) out.insert(f);
    }
    return out;
  }

  // ---- what is there now

  std::set<std::string> namespaces() {
    std::set<std::string> out;
    CommandOutput r = tryCmd({"ip", "netns", "list"});
    size_t pos = 0;
    while (pos < r.out.size()) {
      size_t nl = r.out.find('\n', pos);
      std::string line = r.out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? r.out.size() : nl + 1;
      std::string name = line.substr(0, line.find(' '));
      if (!name.empty()) out.insert(name);
    }
    return out;
  }

  bool namespaceExists(const std::string& ns) {
    return sys_.exists(std::string(kNetnsRun) + "/" + ns);
  }

  // Interface names in the root namespace.
  std::vector<std::string> rootLinks() {
    std::vector<std::string> out;
    CommandOutput r = tryCmd({"ip", "-o", "link", "show"});
    size_t pos = 0;
    while (pos < r.out.size()) {
      size_t nl = r.out.find('\n', pos);
      std::string line = r.out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? r.out.size() : nl + 1;
      size_t a = line.find(": ");
      if (a == std::string::npos) continue;
      size_t b = line.find_first_of(":@", a + 2);
      if (b == std::string::npos) continue;
      out.push_back(line.substr(a + 2, b - a - 2));
    }
    return out;
  }

  std::vector<std::string> tagLinks(const std::string& tag) {
    std::vector<std::string> out;
    for (std::string& l : rootLinks())
      if (startsWith(l, tag)) out.push_back(std::move(l));
    return out;
  }

  // The filter table's rules carrying `comment`, as iptables-save prints them ("-A", chain,
  // matches...).
  std::vector<std::vector<std::string>> commentedRules(const std::string& comment) {
    std::vector<std::vector<std::string>> out;
    CommandOutput r = tryCmd({"iptables-save", "-t", "filter"});
    size_t pos = 0;
    while (pos < r.out.size()) {
      size_t nl = r.out.find('\n', pos);
      std::string line = r.out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? r.out.size() : nl + 1;
      if (!startsWith(line, "-A ")) continue;
      std::vector<std::string> args = splitRule(line);
      for (size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == "--comment" && args[i + 1] == comment) {
          out.push_back(args);
          break;
        }
    }
    return out;
  }

  // ---- building

  Status addPeering(const std::string& a, const std::string& b) {
    const Topology& t = state.topology;
    int ia = t.networkIndex(a), ib = t.networkIndex(b);
    const Network& na = t.networks[static_cast<size_t>(ia)];
    const Network& nb = t.networks[static_cast<size_t>(ib)];
    std::string ra = routerNamespace(state.name, a), rb = routerNamespace(state.name, b);
    std::string la = peeringLink(static_cast<size_t>(ib)),
                lb = peeringLink(static_cast<size_t>(ia));
    out_ << "peering " << a << " (" << na.cidr.str() << ") <-> " << b << " (" << nb.cidr.str()
         << ")...\n";
    if (auto s = journal(object(ObjectKind::kLink, ra, la)); !s) return s;
    if (auto s = cmd({"ip", "link", "add", "name", la, "netns", ra, "type", "veth", "peer", "name",
                      lb, "netns", rb});
        !s)
      return s;
    for (auto argv :
         std::vector<std::vector<std::string>>{{"ip", "-n", ra, "link", "set", la, "up"},
                                               {"ip", "-n", rb, "link", "set", lb, "up"},
                                               {"ip", "-n", ra, "route", "add", nb.cidr.str(),
                                                "via", formatIpv4(nb.router), "dev", la, "onlink"},
                                               {"ip", "-n", rb, "route", "add", na.cidr.str(),
                                                "via", formatIpv4(na.router), "dev", lb, "onlink"}})
      if (auto s = cmd(argv); !s) return s;
    return {};
  }

  // Registers every network of the lab not registered yet (journaled first; the id recorded
  // once the server answers).
  Status registerNetworks(NetworkRegistrar& registrar) {
    for (const Network& n : state.topology.networks) {
      bool done = false;
      for (const LabObject& o : state.objects)
        if (o.kind == ObjectKind::kRegistration && o.name == n.name && !o.id.empty()) done = true;
      if (done) continue;
      LabObject reg = object(ObjectKind::kRegistration, "", n.name);
      reg.args = {n.cidr.str()};
      if (auto s = journal(reg); !s) return s;
      auto id = registrar.create(n.name, n.cidr.str());
      if (!id)
        return makeError("registering network " + n.name + " with the weft server at " +
                         registrar.endpoint() + " failed: " + id.error().message);
      state.objects.back().id = *id;
      if (auto s = save(); !s) return s;
      out_ << "registered network " << n.name << " (" << n.cidr.str()
           << ") with the weft server at " << registrar.endpoint() << ": " << *id << "\n";
    }
    return {};
  }

  Status build(NetworkRegistrar* registrar) {
    const Topology& t = state.topology;
    const std::string& lab = state.name;
    const std::string& tag = state.tag;

    // Isolation first: the root namespace never forwards to or from the lab's interfaces.
    out_ << "isolating: iptables FORWARD drops " << tag << "+ in the root namespace\n";
    for (const char* dir : {"-i", "-o"}) {
      LabObject rule = object(ObjectKind::kIptablesRule, "", "");
      rule.chain = "FORWARD";
      rule.args = {dir,  tag + "+", "-m", "comment", "--comment", iptablesComment(lab),
                   "-j", "DROP"};
      if (auto s = journal(rule); !s) return s;
      std::vector<std::string> argv = {"iptables", "-w", kIptablesWait, "-I", "FORWARD"};
      argv.insert(argv.end(), rule.args.begin(), rule.args.end());
      if (auto s = cmd(argv); !s) return s;
    }

    for (size_t i = 0; i < t.networks.size(); ++i) {
      const Network& n = t.networks[i];
      std::string r = routerNamespace(lab, n.name);
      out_ << "creating network " << n.name << " (" << n.cidr.str() << "), router namespace " << r
           << "...\n";
      if (auto s = journal(object(ObjectKind::kNamespace, "", r)); !s) return s;
      if (auto s = mark(r); !s) return s;
      if (auto s = addNamespace(r); !s) return s;
      for (auto argv : std::vector<std::vector<std::string>>{
               {"ip", "-n", r, "link", "set", "lo", "up"},
               {"ip", "netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}})
        if (auto s = cmd(argv); !s) return s;
      for (size_t k = 0; k < n.subnets.size(); ++k) {
        const Subnet& sub = n.subnets[k];
        out_ << "  subnet " << sub.name << " " << sub.cidr.str()
             << (sub.zone.empty() ? "" : " in " + sub.zone) << ", gateway "
             << formatIpv4(sub.gateway) << "\n";
        std::string br = bridgeLink(k);
        for (auto argv : std::vector<std::vector<std::string>>{
                 {"ip", "-n", r, "link", "add", br, "type", "bridge"},
                 {"ip", "-n", r, "addr", "add", cidrOf(sub.gateway, sub.cidr.len), "dev", br},
                 {"ip", "-n", r, "link", "set", br, "up"}})
          if (auto s = cmd(argv); !s) return s;
      }
      std::string e = rootEndpointLink(tag, i);
      std::string ep(kRouterEndpointLink);
      out_ << "  endpoint " << formatIpv4(n.endpoint) << " in the root namespace (" << e
           << "), router " << formatIpv4(n.router) << "\n";
      if (auto s = journal(object(ObjectKind::kLink, "", e)); !s) return s;
      for (auto argv : std::vector<std::vector<std::string>>{
               {"ip", "link", "add", e, "type", "veth", "peer", "name", ep, "netns", r},
               {"sysctl", "-q", "-w", "net.ipv4.conf." + e + ".forwarding=0"},
               {"ip", "addr", "add", cidrOf(n.endpoint, 32), "peer", cidrOf(n.router, 32), "dev",
                e},
               {"ip", "link", "set", e, "up"},
               {"ip", "-n", r, "addr", "add", cidrOf(n.router, 32), "peer", cidrOf(n.endpoint, 32),
                "dev", ep},
               {"ip", "-n", r, "link", "set", ep, "up"},
               {"ip", "route", "add", n.cidr.str(), "via", formatIpv4(n.router), "dev", e}})
        if (auto s = cmd(argv); !s) return s;
    }

    for (size_t j = 0; j < t.hosts.size(); ++j) {
      const Host& h = t.hosts[j];
      const Network* net = nullptr;
      const Subnet* sub = t.findSubnet(h.subnet, &net);
      size_t k = static_cast<size_t>(sub - net->subnets.data());
      std::string hn = hostNamespace(lab, h.name);
      std::string r = routerNamespace(lab, net->name);
      std::string port = hostPortLink(j);
      std::string eth(kHostLink);
      out_ << "creating host " << h.name << " (" << formatIpv4(h.address) << " in " << sub->name
           << (sub->zone.empty() ? "" : ", " + sub->zone) << "), namespace " << hn << "...\n";
      if (auto s = journal(object(ObjectKind::kNamespace, "", hn)); !s) return s;
      if (auto s = mark(hn); !s) return s;
      if (auto s = addNamespace(hn); !s) return s;
      if (auto s = cmd({"ip", "-n", hn, "link", "set", "lo", "up"}); !s) return s;
      if (auto s = journal(object(ObjectKind::kLink, r, port)); !s) return s;
      for (auto argv : std::vector<std::vector<std::string>>{
               {"ip", "link", "add", "name", eth, "netns", hn, "type", "veth", "peer", "name", port,
                "netns", r},
               {"ip", "-n", r, "link", "set", port, "master", bridgeLink(k)},
               {"ip", "-n", r, "link", "set", port, "up"},
               {"ip", "-n", hn, "addr", "add", cidrOf(h.address, sub->cidr.len), "dev", eth},
               {"ip", "-n", hn, "link", "set", eth, "up"},
               {"ip", "-n", hn, "route", "add", "default", "via", formatIpv4(sub->gateway)}})
        if (auto s = cmd(argv); !s) return s;
      std::string dir = resolvConfDir(hn);
      if (auto s = journal(object(ObjectKind::kDirectory, "", "", dir)); !s) return s;
      if (auto s = sys_.makeDirs(dir, 0755); !s) return s;
      std::string file = dir + "/resolv.conf";
      if (auto s = journal(object(ObjectKind::kFile, "", "", file)); !s) return s;
      if (auto s = sys_.writeFile(file, resolvConf(state, h, *net), 0644); !s) return s;
    }

    for (const Peering& p : t.peerings)
      if (auto s = addPeering(p.a, p.b); !s) return s;

    if (registrar != nullptr)
      if (auto s = registerNetworks(*registrar); !s) return s;

    std::string logs = lab_.state_dir_ + "/" + lab + ".logs";
    bool logs_made = false;
    for (const Host& h : t.hosts) {
      if (h.run.empty()) continue;
      if (!logs_made) {
        if (auto s = journal(object(ObjectKind::kDirectory, "", "", logs)); !s) return s;
        if (auto s = sys_.makeDirs(logs, 0755); !s) return s;
        logs_made = true;
      }
      std::string hn = hostNamespace(lab, h.name);
      std::string log = logs + "/" + h.name + ".log";
      if (auto s = journal(object(ObjectKind::kFile, "", "", log)); !s) return s;
      LabObject proc = object(ObjectKind::kProcess, hn, h.name, log);
      if (auto s = journal(proc); !s) return s;
      std::vector<std::string> argv = {"ip", "netns", "exec", hn};
      argv.insert(argv.end(), h.run.begin(), h.run.end());
      if (interrupted_ != nullptr && interrupted_->load()) return makeError("interrupted");
      auto pid = sys_.spawn(argv, hostEnv(state, h), log);
      if (!pid)
        return makeError("starting `" + formatArgv(h.run) + "` on host " + h.name + ": " +
                         pid.error().message);
      state.objects.back().pid = *pid;
      if (auto s = save(); !s) return s;
      out_ << "started on " << h.name << ": " << formatArgv(h.run) << " (pid " << *pid << ", log "
           << log << ")\n";
    }
    return {};
  }

  // ---- tearing down

  // The namespaces this lab made: the journal's and those carrying its marker (never a
  // namespace merely named like the lab's: `down` must not touch what it did not make). A
  // namespace another lab in the state directory derives is never this lab's.
  std::set<std::string> candidateNamespaces() {
    std::set<std::string> out = markedNamespaces();
    for (const LabObject& o : state.objects)
      if (o.kind == ObjectKind::kNamespace) out.insert(o.name);
    for (const std::string& ns : lab_.claimedByOthers(state.name)) out.erase(ns);
    return out;
  }

  // Stops every process inside `spaces`: SIGTERM, then SIGKILL after a grace period.
  void killProcesses(const std::set<std::string>& spaces) {
    std::vector<int> pids;
    for (const std::string& ns : spaces) {
      if (!namespaceExists(ns)) continue;
      CommandOutput r = tryCmd({"ip", "netns", "pids", ns});
      size_t pos = 0;
      while (pos < r.out.size()) {
        size_t nl = r.out.find('\n', pos);
        std::string line =
            trimSpace(r.out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
        pos = nl == std::string::npos ? r.out.size() : nl + 1;
        if (line.empty() || line.find_first_not_of("0123456789") != std::string::npos) continue;
        int pid = std::stoi(line);
        if (pid > 1) pids.push_back(pid);
      }
    }
    if (pids.empty()) return;
    out_ << "stopping " << pids.size() << (pids.size() == 1 ? " process" : " processes")
         << " in the lab's namespaces...\n";
    auto wait = [&](std::chrono::milliseconds grace) {
      for (auto waited = std::chrono::milliseconds(0); waited < grace; waited += kPoll) {
        bool any = false;
        for (int p : pids) any = any || sys_.alive(p);
        if (!any) return true;
        sys_.pause(kPoll);
      }
      return false;
    };
    for (int p : pids) sys_.signal(p, SIGTERM);
    if (wait(kTermGrace)) return;
    for (int p : pids)
      if (sys_.alive(p)) sys_.signal(p, SIGKILL);
    wait(kKillGrace);
  }

  // Removes everything; answers what could not be removed (empty: all gone). `registrar`
  // may be null until a registration needs it, then `factory` makes it.
  std::vector<std::string> teardown(std::unique_ptr<NetworkRegistrar>& registrar,
                                    const RegistrarFactory& factory, bool keep_networks) {
    std::vector<std::string> left;
    std::set<std::string> spaces = candidateNamespaces();
    killProcesses(spaces);

    // Registrations with the server.
    std::vector<LabObject> kept;
    for (const LabObject& o : state.objects) {
      if (o.kind != ObjectKind::kRegistration) continue;
      std::string what = "network " + o.name + (o.id.empty() ? "" : " (" + o.id + ")");
      if (keep_networks) {
        out_ << "keeping " << what << " registered with the weft server (--keep-networks)\n";
        continue;
      }
      if (!registrar) {
        if (!factory) {
          left.push_back(what + " registered with the weft server (no server configured)");
          kept.push_back(o);
          continue;
        }
        auto made = factory();
        if (!made) {
          left.push_back(what + " registered with the weft server: " + made.error().message);
          kept.push_back(o);
          continue;
        }
        registrar = std::move(*made);
      }
      std::vector<std::string> ids;
      if (!o.id.empty()) {
        ids.push_back(o.id);
      } else {  // journaled, answer never recorded: find it by name and CIDR
        auto all = registrar->list();
        if (!all) {
          left.push_back(what + " may be registered with the weft server at " +
                         registrar->endpoint() + ": " + all.error().message);
          kept.push_back(o);
          continue;
        }
        for (const RegisteredNetwork& n : *all)
          if (n.name == o.name && n.cidrs == o.args &&
              std::find(state.preexisting_networks.begin(), state.preexisting_networks.end(),
                        n.id) == state.preexisting_networks.end())
            ids.push_back(n.id);
      }
      for (const std::string& id : ids) {
        Status s = registrar->remove(id);
        if (!s && s.error().code != 404) {
          left.push_back("network " + o.name + " (" + id + ") on the weft server at " +
                         registrar->endpoint() + ": " + s.error().message);
          LabObject k = o;
          k.id = id;
          kept.push_back(k);
        } else {
          out_ << "deregistered network " << o.name << " (" << id << ")\n";
        }
      }
    }

    // The journal, newest first.
    for (auto it = state.objects.rbegin(); it != state.objects.rend(); ++it) {
      const LabObject& o = *it;
      switch (o.kind) {
        case ObjectKind::kIptablesRule: {
          std::vector<std::string> argv = {"iptables", "-w", kIptablesWait, "-D", o.chain};
          argv.insert(argv.end(), o.args.begin(), o.args.end());
          for (int i = 0; i < 20 && tryCmd(argv).exit_code == 0; ++i) {
          }
          break;
        }
        case ObjectKind::kNamespace:
          if (namespaceExists(o.name)) tryCmd({"ip", "netns", "del", o.name});
          break;
        case ObjectKind::kLink:
          if (o.ns.empty())
            tryCmd({"ip", "link", "del", o.name});
          else if (namespaceExists(o.ns))
            tryCmd({"ip", "-n", o.ns, "link", "del", o.name});
          break;
        case ObjectKind::kFile:
          if (auto s = sys_.removeFile(o.path); !s) left.push_back(s.error().message);
          break;
        case ObjectKind::kDirectory:
          if (auto s = sys_.removeDir(o.path); !s) left.push_back(s.error().message);
          break;
        case ObjectKind::kRegistration:
        case ObjectKind::kProcess:
          break;
      }
    }

    // The sweep: anything carrying the lab's names.
    for (const std::string& ns : spaces) {
      if (namespaceExists(ns)) {
        out_ << "sweeping namespace " << ns << "\n";
        tryCmd({"ip", "netns", "del", ns});
      }
      std::string dir = resolvConfDir(ns);
      if (sys_.exists(dir + "/resolv.conf")) (void)sys_.removeFile(dir + "/resolv.conf");
      if (sys_.exists(dir) && sys_.listDir(dir).empty()) (void)sys_.removeDir(dir);
    }
    for (const std::string& l : tagLinks(state.tag)) {
      out_ << "sweeping interface " << l << "\n";
      tryCmd({"ip", "link", "del", l});
    }
    for (std::vector<std::string>& rule : commentedRules(iptablesComment(state.name))) {
      rule[0] = "-D";
      std::vector<std::string> argv = {"iptables", "-w", kIptablesWait, "-t", "filter"};
      argv.insert(argv.end(), rule.begin(), rule.end());
      out_ << "sweeping iptables rule: " << formatArgv(argv) << "\n";
      tryCmd(argv);
    }

    // What is left.
    std::set<std::string> now = namespaces();
    for (const std::string& ns : spaces) {
      if (now.count(ns)) left.push_back("namespace " + ns);
      std::string file = resolvConfDir(ns) + "/resolv.conf";
      if (sys_.exists(file)) left.push_back("file " + file);
    }
    for (const std::string& l : tagLinks(state.tag)) left.push_back("interface " + l);
    for (const auto& rule : commentedRules(iptablesComment(state.name)))
      left.push_back("iptables rule " + formatArgv(rule));
    // The markers of the namespaces that are gone; a namespace still there keeps its marker, so
    // a retry finds it again.
    for (const std::string& ns : spaces) {
      if (now.count(ns) || !sys_.exists(markerDir() + "/" + ns)) continue;
      if (auto s = sys_.removeFile(markerDir() + "/" + ns); !s) left.push_back(s.error().message);
    }
    if (sys_.exists(markerDir()) && sys_.listDir(markerDir()).empty())
      if (auto s = sys_.removeDir(markerDir()); !s) left.push_back(s.error().message);
    state.objects = kept;
    return left;
  }

 private:
  Lab& lab_;
  System& sys_;
  std::ostream& out_;
  const std::atomic<bool>* interrupted_;
};

Lab::Lab(System& system, std::string state_dir, std::ostream& progress)
    : sys_(system), state_dir_(std::move(state_dir)), progress_(progress) {}

std::string Lab::statePath(const std::string& name) const {
  return state_dir_ + "/" + name + ".json";
}

std::vector<std::string> Lab::labsInStateDir() {
  std::vector<std::string> out;
  for (const std::string& f : sys_.listDir(state_dir_)) {
    if (f.size() <= 5 || f.substr(f.size() - 5) != ".json") continue;
    std::string name = f.substr(0, f.size() - 5);
    if (validateLabName(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::set<std::string> Lab::claimedByOthers(const std::string& name) {
  std::set<std::string> out;
  for (const std::string& other : labsInStateDir()) {
    if (other == name) continue;
    auto s = load(other);
    if (!s) continue;
    for (std::string& ns : derivedNamespaces(s->name, s->topology)) out.insert(std::move(ns));
  }
  return out;
}

Result<LabState> Lab::load(const std::string& name) {
  if (auto v = validateLabName(name); !v) return Unexpected<Error>{v.error()};
  std::string path = statePath(name);
  auto text = sys_.readFile(path);
  if (!text) {
    if (text.error().code == ENOENT) {
      std::vector<std::string> labs = labsInStateDir();
      std::string known;
      for (const std::string& l : labs) known += (known.empty() ? "" : ", ") + l;
      return makeError("no lab named " + name + " is up (no " + path + ")" +
                       (known.empty() ? "" : "; labs up: " + known));
    }
    return Unexpected<Error>{text.error()};
  }
  auto s = parseState(*text);
  if (!s) return makeError(path + ": " + s.error().message);
  return s;
}

void Lab::removeUpLockIfLast() {
  if (!labsInStateDir().empty()) return;
  const std::string up_lock = state_dir_ + "/up.lock";
  // Held by this process already (a failed up) or free; busy means another up is starting.
  if (!sys_.lock(up_lock)) return;
  (void)sys_.removeFile(up_lock);
}

Result<LabState> Lab::loadTrusted(const std::string& name) {
  auto s = load(name);
  if (!s) return s;
  std::string why;
  if (s->name != name) why = "it names lab \"" + s->name + "\"";
  for (const LabObject& o : s->objects) {
    if (!why.empty()) break;
    if (std::string r = foreignReason(state_dir_, name, o); !r.empty())
      why = "its entry {" + describeObject(o) + "} is " + r;
  }
  if (why.empty()) return s;
  return makeError("the state file " + statePath(name) + " of lab " + name +
                   " cannot be trusted: " + why + " (`weft lab down --name " + name +
                   "` removes what the lab made and keeps that file for inspection)");
}

Result<std::string> Lab::pickLab(const std::string& given) {
  if (!given.empty()) {
    if (auto v = validateLabName(given); !v) return Unexpected<Error>{v.error()};
    return given;
  }
  std::vector<std::string> labs = labsInStateDir();
  if (labs.size() == 1) return labs[0];
  if (labs.empty()) return makeError("no lab is up (no state file in " + state_dir_ + ")");
  std::string known;
  for (const std::string& l : labs) known += (known.empty() ? "" : ", ") + l;
  return makeError("several labs are up (" + known + "); say which with --name");
}

Result<std::unique_ptr<NetworkRegistrar>> Lab::connectRegistrar(const RegistrarFactory& factory,
                                                                LabState& st) {
  if (!factory) return makeError("networks are to be registered, but no weft server is configured");
  auto made = factory();
  if (!made)
    return makeError("networks are to be registered with the weft server, but: " +
                     made.error().message);
  std::unique_ptr<NetworkRegistrar> registrar = std::move(*made);
  auto before = registrar->list();
  if (!before)
    return makeError("cannot reach the weft server at " + registrar->endpoint() +
                     " to register the networks: " + before.error().message +
                     " (start `weft server`, or drop --register / "
                     "control_plane.register_networks)");
  bool registered_before = false;
  for (const LabObject& o : st.objects)
    if (o.kind == ObjectKind::kRegistration) registered_before = true;
  if (!registered_before) {  // the ids a crashed registration must never be confused with
    st.preexisting_networks.clear();
    for (const RegisteredNetwork& n : *before) st.preexisting_networks.push_back(n.id);
  }
  st.server = registrar->endpoint();
  return registrar;
}

Status Lab::registerNetworks(const std::string& name, const RegistrarFactory& factory) {
  if (auto s = sys_.lock(statePath(name) + ".lock"); !s) return s;
  auto loaded = loadTrusted(name);
  if (!loaded) return Unexpected<Error>{loaded.error()};
  Session session(*this, nullptr);
  session.state = std::move(*loaded);
  auto registrar = connectRegistrar(factory, session.state);
  if (!registrar) return Unexpected<Error>{registrar.error()};
  if (auto s = session.save(); !s) return s;
  return session.registerNetworks(**registrar);
}

Status Lab::up(const Topology& t, const std::string& topology_file, bool register_networks,
               const RegistrarFactory& factory, const std::atomic<bool>* interrupted) {
  if (auto s = sys_.makeDirs(state_dir_, 0755); !s) return s;
  if (auto s = sys_.lock(statePath(t.name) + ".lock"); !s) return s;
  // Labs come up one at a time: the checks against the other labs below (shared namespace
  // prefixes, overlapping networks) must see every lab that is coming up, not race it.
  const std::string up_lock = state_dir_ + "/up.lock";
  if (auto s = sys_.lock(up_lock); !s) {
    progress_ << "waiting for another `weft lab up` to finish (it holds " << up_lock << ")...\n";
    if (auto w = sys_.lockWait(up_lock); !w) return w;
  }
  std::string path = statePath(t.name);
  if (sys_.exists(path))
    return makeError("lab " + t.name + " is already up (state file " + path +
                     "); run `weft lab down --name " + t.name + "` first, or use another --name");

  Session session(*this, interrupted);
  // Other labs: no shared namespace prefix, no overlapping networks.
  for (const std::string& other : labsInStateDir()) {
    if (other == t.name) continue;
    if (startsWith(other, t.name + "-") || startsWith(t.name, other + "-"))
      return makeError("lab " + t.name + " would share namespace names with lab " + other +
                       ", which is up (one name is the other's prefix); use another --name");
    auto s = load(other);
    if (!s) continue;
    for (const Network& mine : t.networks)
      for (const Network& theirs : s->topology.networks)
        if (mine.cidr.overlaps(theirs.cidr))
          return makeError("network " + mine.name + " (" + mine.cidr.str() + ") overlaps network " +
                           theirs.name + " (" + theirs.cidr.str() + ") of lab " + other +
                           ", which is up; bring that lab down first or pick other CIDRs");
  }
  std::string tag = labTag(t.name);
  std::set<std::string> existing = session.namespaces();
  for (const std::string& ns : derivedNamespaces(t.name, t))
    if (existing.count(ns) || session.namespaceExists(ns))
      return makeError("network namespace " + ns + " already exists (left over from a lab " +
                       t.name + "? `weft lab down --name " + t.name +
                       "` removes it if that lab made it; otherwise `ip netns del " + ns +
                       "` or use another --name)");
  if (std::vector<std::string> links = session.tagLinks(tag); !links.empty())
    return makeError("interface " + links[0] + " of a lab named " + t.name +
                     " is still there; run `weft lab down --name " + t.name + "` first");

  std::unique_ptr<NetworkRegistrar> registrar;
  LabState& st = session.state;
  if (register_networks) {
    auto made = connectRegistrar(factory, st);
    if (!made) return Unexpected<Error>{made.error()};
    registrar = std::move(*made);
  }

  st.name = t.name;
  st.tag = tag;
  st.topology_file = topology_file;
  st.created_at = sys_.unixSeconds();
  st.topology = t;
  if (auto s = session.save(); !s) return s;

  Status built = session.build(registrar.get());
  if (built) {
    st.complete = true;
    if (auto s = session.save(); !s) return s;
    progress_ << "lab " << t.name << " is up: " << t.networks.size() << " networks, "
              << t.hosts.size() << " hosts, " << t.peerings.size()
              << (t.peerings.size() == 1 ? " peering" : " peerings") << " (state " << path << ")\n";
    return {};
  }
  progress_ << "up failed: " << built.error().message << "\nremoving what was made...\n";
  std::vector<std::string> left = session.teardown(registrar, factory, false);
  if (left.empty()) {
    (void)sys_.removeFile(path);
    (void)sys_.removeFile(path + ".lock");
    removeUpLockIfLast();
    return built;
  }
  (void)session.save();
  std::string msg = built.error().message + "\nand the rollback left:";
  for (const std::string& l : left) msg += "\n  - " + l;
  msg += "\n(run `weft lab down --name " + t.name + "` to retry)";
  return makeError(msg);
}

Status Lab::down(const std::string& name, const RegistrarFactory& factory, bool keep_networks) {
  if (auto v = validateLabName(name); !v) return v;
  if (auto s = sys_.makeDirs(state_dir_, 0755); !s) return s;
  std::string path = statePath(name);
  if (auto s = sys_.lock(path + ".lock"); !s) return s;
  Session session(*this, nullptr);
  bool had_state = sys_.exists(path);
  std::string corrupt;  // why the state file cannot be used
  std::vector<LabObject> refused;
  std::vector<std::string> refusals;
  if (had_state) {
    auto s = load(name);
    if (s && s->name != name)
      corrupt = path + " names lab \"" + s->name + "\", not " + name;
    else if (!s)
      corrupt = s.error().message;
    if (corrupt.empty()) {
      session.state = std::move(*s);
      // Only what the lab's layout allows is acted on; anything else stays in the state file.
      std::vector<LabObject> trusted;
      for (LabObject& o : session.state.objects) {
        std::string why = foreignReason(state_dir_, name, o);
        if (why.empty()) {
          trusted.push_back(std::move(o));
          continue;
        }
        refusals.push_back("refused state-file entry {" + describeObject(o) + "}: " + why);
        progress_ << "error: " << refusals.back() << "\n";
        refused.push_back(std::move(o));
      }
      session.state.objects = std::move(trusted);
    } else {
      progress_ << "error: " << corrupt
                << "; the state file is kept; sweeping only what carries the lab's marks\n";
    }
  } else {
    progress_ << "no state file for lab " << name << " (" << path
              << "); sweeping for anything left by that name\n";
  }
  LabState& st = session.state;
  st.name = name;
  st.tag = labTag(name);
  progress_ << "removing lab " << name << "...\n";
  std::unique_ptr<NetworkRegistrar> registrar;
  std::vector<std::string> left = session.teardown(registrar, factory, keep_networks);
  left.insert(left.end(), refusals.begin(), refusals.end());
  st.objects.insert(st.objects.end(), refused.begin(), refused.end());
  if (!corrupt.empty()) {
    std::string msg = "the state file of lab " + name + " cannot be used: " + corrupt +
                      "\nit is kept (inspect it, then remove it by hand); only the lab's marked "
                      "namespaces, its tagged interfaces and its commented iptables rules were "
                      "swept: networks registered with a weft server and " +
                      state_dir_ + "/" + name + ".logs are not known without it";
    for (const std::string& l : left) msg += "\n  - left: " + l;
    return makeError(msg);
  }
  if (!left.empty()) {
    if (had_state) (void)session.save();
    std::string msg = "lab " + name + " is not entirely gone; left:";
    for (const std::string& l : left) msg += "\n  - " + l;
    return makeError(msg);
  }
  if (auto s = sys_.removeFile(path); !s) return s;
  (void)sys_.removeFile(path + ".lock");
  removeUpLockIfLast();
  progress_ << "lab " << name << " is down\n";
  return {};
}

Status Lab::peer(const std::string& name, const std::string& a, const std::string& b) {
  if (auto s = sys_.lock(statePath(name) + ".lock"); !s) return s;
  auto loaded = loadTrusted(name);
  if (!loaded) return Unexpected<Error>{loaded.error()};
  Session session(*this, nullptr);
  session.state = std::move(*loaded);
  if (auto s = checkPeering(session.state.topology, a, b, false); !s) return s;
  session.state.topology.peerings.push_back(Peering{a, b});
  Status s = session.addPeering(a, b);
  if (!s) {
    // Undo: the link (and the routes on it) and the peering.
    LabObject link = session.state.objects.back();
    session.tryCmd({"ip", "-n", link.ns, "link", "del", link.name});
    session.state.objects.pop_back();
    session.state.topology.peerings.pop_back();
    (void)session.save();
    return s;
  }
  if (auto saved = session.save(); !saved) return saved;
  progress_ << a << " and " << b << " are peered\n";
  return {};
}

Status Lab::unpeer(const std::string& name, const std::string& a, const std::string& b) {
  if (auto s = sys_.lock(statePath(name) + ".lock"); !s) return s;
  auto loaded = loadTrusted(name);
  if (!loaded) return Unexpected<Error>{loaded.error()};
  Session session(*this, nullptr);
  LabState& st = session.state;
  st = std::move(*loaded);
  if (auto s = checkPeering(st.topology, a, b, true); !s) return s;
  const Topology& t = st.topology;
  size_t ia = static_cast<size_t>(t.networkIndex(a)), ib = static_cast<size_t>(t.networkIndex(b));
  std::string ra = routerNamespace(name, a), rb = routerNamespace(name, b);
  std::string la = peeringLink(ib), lb = peeringLink(ia);
  progress_ << "unpeering " << a << " and " << b << "...\n";
  // Deleting one end of the veth pair deletes the other and the routes through them.
  CommandOutput r = session.tryCmd({"ip", "-n", ra, "link", "del", la});
  if (r.exit_code != 0 && session.namespaceExists(rb)) {
    CommandOutput r2 = session.tryCmd({"ip", "-n", rb, "link", "del", lb});
    if (r2.exit_code != 0 && session.namespaceExists(ra))
      return makeError("`ip -n " + ra + " link del " + la + "` failed: " + oneLine(r.err));
  }
  auto& objs = st.objects;
  objs.erase(std::remove_if(objs.begin(), objs.end(),
                            [&](const LabObject& o) {
                              return o.kind == ObjectKind::kLink &&
                                     ((o.ns == ra && o.name == la) || (o.ns == rb && o.name == lb));
                            }),
             objs.end());
  auto& ps = st.topology.peerings;
  ps.erase(std::remove_if(
               ps.begin(), ps.end(),
               [&](const Peering& p) { return (p.a == a && p.b == b) || (p.a == b && p.b == a); }),
           ps.end());
  if (auto s = session.save(); !s) return s;
  progress_ << a << " and " << b << " are no longer peered\n";
  return {};
}

Status Lab::exec(const std::string& name, const std::string& target,
                 const std::vector<std::string>& command) {
  auto loaded = loadTrusted(name);
  if (!loaded) return Unexpected<Error>{loaded.error()};
  const LabState& st = *loaded;
  std::string ns;
  EnvList env;
  if (const Host* h = st.topology.findHost(target)) {
    ns = hostNamespace(name, h->name);
    env = hostEnv(st, *h);
  } else if (const Network* n = st.topology.findNetwork(target)) {
    ns = routerNamespace(name, n->name);
    env = {{"WEFT_LAB", name},
           {"WEFT_LAB_NETWORK", n->name},
           {"WEFT_LAB_NAMESPACE", ns},
           {"WEFT_LAB_ENDPOINT", formatIpv4(n->endpoint)}};
  } else {
    std::string known;
    for (const Host& h : st.topology.hosts) known += (known.empty() ? "" : ", ") + h.name;
    return makeError("lab " + name + " has no host \"" + target + "\" (hosts: " +
                     (known.empty() ? "none" : known) + "; a network's name runs in its router)");
  }
  if (!sys_.exists(std::string(kNetnsRun) + "/" + ns))
    return makeError("namespace " + ns + " of lab " + name +
                     " does not exist (the lab is broken: `weft lab down` then `up`)");
  std::vector<std::string> argv = {"ip", "netns", "exec", ns};
  argv.insert(argv.end(), command.begin(), command.end());
  return sys_.execReplace(argv, env);
}

// ---- status

std::string Lab::statusJson(const LabState& s) {
  Session session(*this, nullptr);
  auto exists = [&](const std::string& ns) { return session.namespaceExists(ns); };
  std::map<std::string, std::string> ids;  // network name -> registered id
  std::map<std::string, const LabObject*> procs;
  for (const LabObject& o : s.objects) {
    if (o.kind == ObjectKind::kRegistration) ids[o.name] = o.id;
    if (o.kind == ObjectKind::kProcess) procs[o.name] = &o;
  }
  const Topology& t = s.topology;
  std::string o =
      "{\"name\":" + jsonString(s.name) + ",\"state_file\":" + jsonString(statePath(s.name)) +
      ",\"topology_file\":" + jsonString(s.topology_file) +
      ",\"complete\":" + (s.complete ? "true" : "false") +
      ",\"created_at\":" + std::to_string(s.created_at) + ",\"tag\":" + jsonString(s.tag) +
      ",\"server\":" + jsonString(s.server) + ",\"networks\":[";
  for (size_t i = 0; i < t.networks.size(); ++i) {
    const Network& n = t.networks[i];
    std::string r = routerNamespace(s.name, n.name);
    if (i) o += ',';
    o += "{\"name\":" + jsonString(n.name) + ",\"cidr\":" + jsonString(n.cidr.str()) +
         ",\"endpoint\":" + jsonString(formatIpv4(n.endpoint)) +
         ",\"router_address\":" + jsonString(formatIpv4(n.router)) +
         ",\"endpoint_interface\":" + jsonString(rootEndpointLink(s.tag, i)) +
         ",\"namespace\":" + jsonString(r) +
         ",\"namespace_exists\":" + (exists(r) ? "true" : "false") + ",\"network_id\":" +
         (ids.count(n.name) && !ids[n.name].empty() ? jsonString(ids[n.name]) : "null") +
         ",\"peers\":[";
    bool first = true;
    for (const Network& other : t.networks)
      if (t.peered(n.name, other.name)) {
        o += (first ? "" : ",") + jsonString(other.name);
        first = false;
      }
    o += "],\"subnets\":[";
    for (size_t k = 0; k < n.subnets.size(); ++k) {
      const Subnet& sub = n.subnets[k];
      if (k) o += ',';
      o += "{\"name\":" + jsonString(sub.name) + ",\"cidr\":" + jsonString(sub.cidr.str()) +
           ",\"zone\":" + jsonString(sub.zone) +
           ",\"gateway\":" + jsonString(formatIpv4(sub.gateway)) +
           ",\"bridge\":" + jsonString(bridgeLink(k)) + "}";
    }
    o += "]}";
  }
  o += "],\"hosts\":[";
  for (size_t j = 0; j < t.hosts.size(); ++j) {
    const Host& h = t.hosts[j];
    const Network* net = nullptr;
    const Subnet* sub = t.findSubnet(h.subnet, &net);
    std::string hn = hostNamespace(s.name, h.name);
    if (j) o += ',';
    o += "{\"name\":" + jsonString(h.name) + ",\"network\":" + jsonString(h.network) +
         ",\"subnet\":" + jsonString(h.subnet) + ",\"zone\":" + jsonString(sub ? sub->zone : "") +
         ",\"address\":" + jsonString(formatIpv4(h.address)) +
         ",\"gateway\":" + jsonString(sub ? formatIpv4(sub->gateway) : "") +
         ",\"nameserver\":" + jsonString(net ? formatIpv4(net->endpoint) : "") +
         ",\"namespace\":" + jsonString(hn) +
         ",\"namespace_exists\":" + (exists(hn) ? "true" : "false") +
         ",\"resolv_conf\":" + jsonString(resolvConfDir(hn) + "/resolv.conf") + ",\"process\":";
    if (auto it = procs.find(h.name); it != procs.end()) {
      const LabObject& p = *it->second;
      o += "{\"command\":[";
      for (size_t a = 0; a < h.run.size(); ++a) o += (a ? "," : "") + jsonString(h.run[a]);
      o += "],\"pid\":" + std::to_string(p.pid) +
           ",\"running\":" + (p.pid > 0 && sys_.alive(p.pid) ? "true" : "false") +
           ",\"log\":" + jsonString(p.path) + "}";
    } else {
      o += "null";
    }
    o += "}";
  }
  o += "],\"peerings\":[";
  for (size_t i = 0; i < t.peerings.size(); ++i)
    o += (i ? "," : "") + std::string("{\"between\":[") + jsonString(t.peerings[i].a) + "," +
         jsonString(t.peerings[i].b) + "]}";
  o += "]}";
  return o;
}

namespace {

void table(std::string& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
}

}  // namespace

std::string Lab::statusTable(const LabState& s) {
  Session session(*this, nullptr);
  auto yes = [&](const std::string& ns) { return session.namespaceExists(ns) ? "yes" : "MISSING"; };
  std::map<std::string, std::string> ids;
  std::map<std::string, const LabObject*> procs;
  for (const LabObject& o : s.objects) {
    if (o.kind == ObjectKind::kRegistration) ids[o.name] = o.id;
    if (o.kind == ObjectKind::kProcess) procs[o.name] = &o;
  }
  const Topology& t = s.topology;
  std::string out = "lab " + s.name +
                    (s.complete ? " (up)" : " (INCOMPLETE: `up` did not finish)") + ", state " +
                    statePath(s.name) + "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"NETWORK", "CIDR", "ENDPOINT", "PEERS", "NAMESPACE", "EXISTS", "NETWORK ID"}};
  for (const Network& n : t.networks) {
    std::string peers;
    for (const Network& other : t.networks)
      if (t.peered(n.name, other.name)) peers += (peers.empty() ? "" : ",") + other.name;
    std::string r = routerNamespace(s.name, n.name);
    rows.push_back({n.name, n.cidr.str(), formatIpv4(n.endpoint), peers.empty() ? "-" : peers, r,
                    yes(r), ids.count(n.name) && !ids[n.name].empty() ? ids[n.name] : "-"});
  }
  table(out, rows);
  out += "\n";
  rows = {{"SUBNET", "NETWORK", "CIDR", "ZONE", "GATEWAY"}};
  for (const Network& n : t.networks)
    for (const Subnet& sub : n.subnets)
      rows.push_back({sub.name, n.name, sub.cidr.str(), sub.zone.empty() ? "-" : sub.zone,
                      formatIpv4(sub.gateway)});
  table(out, rows);
  if (!t.hosts.empty()) {
    out += "\n";
    rows = {{"HOST", "ADDRESS", "SUBNET", "ZONE", "NAMESPACE", "EXISTS", "PROCESS"}};
    for (const Host& h : t.hosts) {
      const Subnet* sub = t.findSubnet(h.subnet);
      std::string hn = hostNamespace(s.name, h.name);
      std::string proc = "-";
      if (auto it = procs.find(h.name); it != procs.end())
        proc = "pid " + std::to_string(it->second->pid) +
               (it->second->pid > 0 && sys_.alive(it->second->pid) ? " running" : " EXITED");
      rows.push_back({h.name, formatIpv4(h.address), h.subnet,
                      sub && !sub->zone.empty() ? sub->zone : "-", hn, yes(hn), proc});
    }
    table(out, rows);
  }
  return out;
}

}  // namespace weft::lab
