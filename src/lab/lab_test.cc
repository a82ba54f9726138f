#include "lab/lab.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "lab/command.h"
#include "lab/layout.h"
#include "lab/state.h"

namespace weft::lab {
namespace {

constexpr const char* kStateDir = "/state";

// A machine in memory: namespaces, root interfaces, iptables rules and files, enough of `ip`
// and `iptables` to answer what Lab asks. Records every command with the state file as it was
// when the command ran.
class FakeSystem final : public System {
 public:
  struct Call {
    std::vector<std::string> argv;
    std::string state;  // the lab's state file at that moment ("" when absent)
  };
  std::vector<Call> calls;
  std::set<std::string> netns;
  std::set<std::string> root_links;
  std::vector<std::vector<std::string>> rules;  // chain, args...
  std::map<std::string, std::string> files;
  std::set<std::string> dirs;
  std::map<std::string, std::vector<int>> pids;  // namespace -> pids inside
  std::set<int> live;
  std::vector<std::pair<std::vector<std::string>, EnvList>> spawned, execs;
  std::string watch_state = std::string(kStateDir) + "/lab.json";
  // A command for which this answers true fails with exit 2 and stderr "injected failure".
  std::function<bool(const std::vector<std::string>&)> fail_on;

  Result<CommandOutput> run(const std::vector<std::string>& a) override {
    calls.push_back({a, files.count(watch_state) ? files[watch_state] : ""});
    if (fail_on && fail_on(a)) return CommandOutput{2, "", "injected failure\n"};
    auto is = [&](std::initializer_list<const char*> prefix) {
      size_t i = 0;
      for (const char* p : prefix) {
        if (i >= a.size() || a[i] != p) return false;
        ++i;
      }
      return true;
    };
    CommandOutput ok;
    if (is({"ip", "netns", "add"})) {
      if (!netns.insert(a[3]).second) return CommandOutput{1, "", "File exists\n"};
      return ok;
    }
    if (is({"ip", "netns", "del"})) {
      if (!netns.erase(a[3])) return CommandOutput{1, "", "No such file\n"};
      pids.erase(a[3]);
      return ok;
    }
    if (is({"ip", "netns", "list"})) {
      for (const std::string& n : netns) ok.out += n + " (id: 1)\n";
      return ok;
    }
    if (is({"ip", "netns", "pids"})) {
      for (int p : pids[a[3]])
        if (live.count(p)) ok.out += std::to_string(p) + "\n";
      return ok;
    }
    if (is({"ip", "-o", "link", "show"})) {
      int i = 1;
      ok.out += "1: lo: <LOOPBACK,UP> mtu 65536\n";
      for (const std::string& l : root_links)
        ok.out += std::to_string(++i) + ": " + l + "@if2: <BROADCAST> mtu 1500\n";
      return ok;
    }
    if (is({"ip", "link", "add"})) {
      // `ip link add NAME type veth ...` puts NAME in the root namespace; `ip link add name
      // NAME netns NS ...` does not.
      if (a[3] != "name") {
        if (!root_links.insert(a[3]).second) return CommandOutput{2, "", "File exists\n"};
      }
      return ok;
    }
    if (is({"ip", "link", "del"})) {
      if (!root_links.erase(a[3])) return CommandOutput{1, "", "Cannot find device\n"};
      return ok;
    }
    if (is({"iptables", "-w"})) {
      std::vector<std::string> rule(a.begin() + 4, a.end());
      if (a[3] == "-t") {  // iptables -w 5 -t filter -D CHAIN ...
        rule.assign(a.begin() + 7, a.end());
        rule.insert(rule.begin(), a[6]);
        return removeRule(rule);
      }
      if (a[3] == "-I") {
        rules.insert(rules.begin(), rule);
        return ok;
      }
      if (a[3] == "-D") return removeRule(rule);
    }
    if (is({"iptables-save"})) {
      ok.out = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i docker0 -j ACCEPT\n";
      for (const auto& r : rules) {
        ok.out += "-A";
        for (const std::string& x : r)
          ok.out += " " + (x.rfind("weft-lab:", 0) == 0 ? "\"" + x + "\"" : x);
        ok.out += "\n";
      }
      ok.out += "COMMIT\n";
      return ok;
    }
    return ok;
  }

  CommandOutput removeRule(const std::vector<std::string>& rule) {
    auto it = std::find(rules.begin(), rules.end(), rule);
    if (it == rules.end()) return CommandOutput{1, "", "Bad rule\n"};
    rules.erase(it);
    return CommandOutput{};
  }

  Result<std::string> readFile(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return makeError("cannot read " + path, ENOENT);
    return it->second;
  }
  Status writeFile(const std::string& path, std::string_view data, unsigned) override {
    files[path] = std::string(data);
    return {};
  }
  Status removeFile(const std::string& path) override {
    files.erase(path);
    return {};
  }
  Status makeDirs(const std::string& path, unsigned) override {
    dirs.insert(path);
    return {};
  }
  Status removeDir(const std::string& path) override {
    for (const auto& [f, _] : files)
      if (f.rfind(path + "/", 0) == 0) return makeError("not empty: " + path);
    dirs.erase(path);
    return {};
  }
  bool exists(const std::string& path) override {
    if (path.rfind("/run/netns/", 0) == 0) return netns.count(path.substr(11)) > 0;
    return files.count(path) || dirs.count(path);
  }
  std::vector<std::string> listDir(const std::string& path) override {
    std::vector<std::string> out;
    for (const auto& [f, _] : files)
      if (f.rfind(path + "/", 0) == 0 && f.find('/', path.size() + 1) == std::string::npos)
        out.push_back(f.substr(path.size() + 1));
    return out;
  }
  Status lock(const std::string& path) override {
    if (busy_locks.count(path)) return makeError("another `weft lab` command holds " + path);
    return {};
  }
  std::set<std::string> busy_locks;  // lock() fails on these, lockWait() gets them
  Status lockWait(const std::string& path) override {
    waited_locks.push_back(path);
    return {};
  }
  std::vector<std::string> waited_locks;
  Result<int> spawn(const std::vector<std::string>& argv, const EnvList& env,
                    const std::string&) override {
    spawned.push_back({argv, env});
    int pid = 1000 + static_cast<int>(spawned.size());
    live.insert(pid);
    pids[argv[3]].push_back(pid);  // ip netns exec NS ...
    return pid;
  }
  Status execReplace(const std::vector<std::string>& argv, const EnvList& env) override {
    execs.push_back({argv, env});
    return makeError("(fake exec)");
  }
  bool alive(int pid) override { return live.count(pid) > 0; }
  void signal(int pid, int sig) override {
    signals.push_back({pid, sig});
    if (!stubborn.count(pid) || sig == SIGKILL) live.erase(pid);
  }
  std::vector<std::pair<int, int>> signals;
  std::set<int> stubborn;  // ignore SIGTERM
  void pause(std::chrono::milliseconds) override {}
  int64_t unixSeconds() override { return 1700000000; }

  bool ran(const std::vector<std::string>& argv) const {
    for (const Call& c : calls)
      if (c.argv == argv) return true;
    return false;
  }
  size_t indexOf(const std::vector<std::string>& argv) const {
    for (size_t i = 0; i < calls.size(); ++i)
      if (calls[i].argv == argv) return i;
    return calls.size();
  }
};

class FakeRegistrar final : public NetworkRegistrar {
 public:
  std::vector<RegisteredNetwork> networks;
  bool reachable = true;
  int next = 1;
  std::string endpoint() const override { return "http://127.0.0.1:7080"; }
  Result<std::vector<RegisteredNetwork>> list() override {
    if (!reachable) return makeError("connect to 127.0.0.1:7080: Connection refused");
    return networks;
  }
  Result<std::string> create(const std::string& name, const std::string& cidr) override {
    if (!reachable) return makeError("connect to 127.0.0.1:7080: Connection refused");
    std::string id = "vpc-" + std::to_string(next++);
    networks.push_back({id, name, {cidr}});
    return id;
  }
  Status remove(const std::string& id) override {
    if (!reachable) return makeError("connect to 127.0.0.1:7080: Connection refused");
    for (auto it = networks.begin(); it != networks.end(); ++it)
      if (it->id == id) {
        networks.erase(it);
        return {};
      }
    return makeError("NotFoundException: network " + id + " not found", 404);
  }
};

// A registrar factory lending `r` (owned by the test).
RegistrarFactory lend(FakeRegistrar& r) {
  struct Proxy final : NetworkRegistrar {
    FakeRegistrar& r;
    explicit Proxy(FakeRegistrar& x) : r(x) {}
    std::string endpoint() const override { return r.endpoint(); }
    Result<std::vector<RegisteredNetwork>> list() override { return r.list(); }
    Result<std::string> create(const std::string& n, const std::string& c) override {
      return r.create(n, c);
    }
    Status remove(const std::string& id) override { return r.remove(id); }
  };
  return [&r]() -> Result<std::unique_ptr<NetworkRegistrar>> {
    return std::unique_ptr<NetworkRegistrar>(std::make_unique<Proxy>(r));
  };
}

constexpr const char* kTopology = R"(
name: lab
networks:
  - name: vpc1
    cidr: 198.18.0.0/16
    subnets: [{name: vpc1-a, cidr: 198.18.1.0/24, zone: us-west-2a},
              {name: vpc1-b, cidr: 198.18.2.0/24, zone: us-west-2b}]
  - name: vpc2
    cidr: 198.19.0.0/17
    subnets: [{name: vpc2-a, cidr: 198.19.1.0/24, zone: us-west-2a}]
  - name: vpc3
    cidr: 198.19.128.0/17
    subnets: [{name: vpc3-a, cidr: 198.19.130.0/24}]
peerings: [{between: [vpc1, vpc2]}]
hosts:
  - {name: web, subnet: vpc1-a}
  - {name: api, subnet: vpc1-b, run: [python3, app.py]}
  - {name: node, subnet: vpc2-a}
  - {name: lone, subnet: vpc3-a}
control_plane: {dns_search: [mesh.local]}
)";

Topology topology(const char* text = kTopology) {
  auto t = parseTopology(text, "lab");
  EXPECT_TRUE(t) << t.error().message;
  return *t;
}

class LabTest : public ::testing::Test {
 protected:
  FakeSystem sys;
  std::ostringstream progress;
  Lab lab{sys, kStateDir, progress};
  FakeRegistrar registrar;

  // Nothing of the lab is left on the fake machine.
  void expectClean() {
    EXPECT_TRUE(sys.netns.empty()) << "namespaces left: " << sys.netns.size();
    EXPECT_TRUE(sys.root_links.empty()) << "root links left: " << sys.root_links.size();
    EXPECT_TRUE(sys.rules.empty()) << "iptables rules left: " << sys.rules.size();
    for (const auto& [f, _] : sys.files)
      EXPECT_EQ(f.rfind("/etc/netns/", 0), std::string::npos) << "left: " << f;
    EXPECT_FALSE(sys.files.count("/state/lab.json")) << "the state file is still there";
    for (const auto& [f, _] : sys.files)
      EXPECT_EQ(f.rfind("/state/lab.netns/", 0), std::string::npos) << "marker left: " << f;
    EXPECT_FALSE(sys.dirs.count("/state/lab.netns")) << "the marker directory is still there";
  }
};

TEST_F(LabTest, UpBuildsTheTopology) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr)) << progress.str();
  std::string tag = labTag("lab");
  EXPECT_EQ(sys.netns, (std::set<std::string>{"lab-vpc1", "lab-vpc2", "lab-vpc3", "lab-web",
                                              "lab-api", "lab-node", "lab-lone"}));
  EXPECT_EQ(sys.root_links, (std::set<std::string>{tag + "e0", tag + "e1", tag + "e2"}));
  // Isolation before anything else: the root namespace drops forwarding to/from the lab.
  ASSERT_EQ(sys.rules.size(), 2u);
  EXPECT_EQ(sys.calls[sys.indexOf({"iptables", "-w", "5", "-I", "FORWARD", "-i", tag + "+", "-m",
                                   "comment", "--comment", "weft-lab:lab", "-j", "DROP"})]
                .argv[3],
            "-I");
  EXPECT_LT(sys.indexOf({"iptables", "-w", "5", "-I", "FORWARD", "-o", tag + "+", "-m", "comment",
                         "--comment", "weft-lab:lab", "-j", "DROP"}),
            sys.indexOf({"ip", "netns", "add", "lab-vpc1"}));
  // The router: forwarding on, a bridge per subnet with its gateway address.
  EXPECT_TRUE(
      sys.ran({"ip", "netns", "exec", "lab-vpc1", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc1", "addr", "add", "198.18.2.1/24", "dev", "br1"}));
  // The endpoint link: root side holds the endpoint, forwards nothing, routes the CIDR back.
  EXPECT_TRUE(sys.ran({"sysctl", "-q", "-w", "net.ipv4.conf." + tag + "e0.forwarding=0"}));
  EXPECT_TRUE(sys.ran(
      {"ip", "addr", "add", "198.18.255.254/32", "peer", "198.18.255.253/32", "dev", tag + "e0"}));
  EXPECT_TRUE(sys.ran(
      {"ip", "route", "add", "198.19.128.0/17", "via", "198.19.255.253", "dev", tag + "e2"}));
  // A host: veth into its subnet's bridge, its address, default route via the gateway.
  EXPECT_TRUE(sys.ran({"ip", "link", "add", "name", "eth0", "netns", "lab-api", "type", "veth",
                       "peer", "name", "h1", "netns", "lab-vpc1"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc1", "link", "set", "h1", "master", "br1"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-api", "addr", "add", "198.18.2.4/24", "dev", "eth0"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-api", "route", "add", "default", "via", "198.18.2.1"}));
  // The peering: a veth pair between the routers, onlink routes to each other's router.
  EXPECT_TRUE(sys.ran({"ip", "link", "add", "name", "p1", "netns", "lab-vpc1", "type", "veth",
                       "peer", "name", "p0", "netns", "lab-vpc2"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc1", "route", "add", "198.19.0.0/17", "via",
                       "198.19.127.253", "dev", "p1", "onlink"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc2", "route", "add", "198.18.0.0/16", "via",
                       "198.18.255.253", "dev", "p0", "onlink"}));
  // vpc3 is peered with nobody.
  for (const auto& c : sys.calls) {
    if (c.argv.size() > 2 && c.argv[1] == "-n" && c.argv[2] == "lab-vpc3") {
      EXPECT_EQ(std::find(c.argv.begin(), c.argv.end(), "onlink"), c.argv.end())
          << formatArgv(c.argv);
    }
  }
  // DNS through the network's endpoint.
  EXPECT_EQ(
      sys.files["/etc/netns/lab-node/resolv.conf"].find("nameserver 198.19.127.254\n"
                                                        "search mesh.local\n") != std::string::npos,
      true)
      << sys.files["/etc/netns/lab-node/resolv.conf"];
  // The run: process, in its namespace, with the host's description.
  ASSERT_EQ(sys.spawned.size(), 1u);
  EXPECT_EQ(sys.spawned[0].first,
            (std::vector<std::string>{"ip", "netns", "exec", "lab-api", "python3", "app.py"}));
  EnvList env = sys.spawned[0].second;
  EXPECT_NE(std::find(env.begin(), env.end(),
                      std::pair<std::string, std::string>{"WEFT_LAB_ZONE", "us-west-2b"}),
            env.end());
  // The state: complete, with every object.
  auto st = parseState(sys.files["/state/lab.json"]);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_TRUE(st->complete);
  EXPECT_EQ(st->tag, tag);
  EXPECT_EQ(st->topology_file, "lab.yaml");
  EXPECT_NE(progress.str().find("creating network vpc1 (198.18.0.0/16)"), std::string::npos)
      << progress.str();
}

TEST_F(LabTest, EveryObjectIsJournaledBeforeItIsCreated) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  int checked = 0;
  for (const FakeSystem::Call& c : sys.calls) {
    const auto& a = c.argv;
    std::string wanted;
    if (a.size() >= 4 && a[0] == "ip" && a[1] == "netns" && a[2] == "add")
      wanted = "{\"kind\": \"netns\", \"name\": \"" + a[3] + "\"}";
    else if (a.size() >= 4 && a[0] == "ip" && a[1] == "link" && a[2] == "add" && a[3] != "name")
      wanted = "{\"kind\": \"link\", \"name\": \"" + a[3] + "\"}";
    else if (a.size() >= 5 && a[0] == "iptables" && a[3] == "-I")
      wanted = "\"args\": [\"" + a[5] + "\"";
    if (wanted.empty()) continue;
    EXPECT_NE(c.state.find(wanted), std::string::npos)
        << "`" << formatArgv(a) << "` ran before the state file had " << wanted << ":\n"
        << c.state;
    ++checked;
  }
  EXPECT_EQ(checked, 7 + 3 + 2);  // namespaces, root links, iptables rules
}

TEST_F(LabTest, RefusesALabThatIsUp) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  size_t calls = sys.calls.size();
  auto again = lab.up(topology(), "lab.yaml", false, nullptr);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message,
            "lab lab is already up (state file /state/lab.json); run `weft lab down --name lab` "
            "first, or use another --name");
  EXPECT_EQ(sys.calls.size(), calls);
}

TEST_F(LabTest, RefusesAnExistingNamespace) {
  sys.netns.insert("lab-node");
  auto r = lab.up(topology(), "lab.yaml", false, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("network namespace lab-node already exists"), std::string::npos)
      << r.error().message;
  EXPECT_FALSE(sys.files.count("/state/lab.json"));
}

TEST_F(LabTest, RefusesOverlapWithAnotherLab) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  Topology other = topology();
  other.name = "other";
  auto r = lab.up(other, "other.yaml", false, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("network vpc1 (198.18.0.0/16) overlaps network vpc1 "
                                   "(198.18.0.0/16) of lab lab"),
            std::string::npos)
      << r.error().message;
  Topology prefixed = topology();
  prefixed.name = "lab-x";
  r = lab.up(prefixed, "x.yaml", false, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("would share namespace names with lab lab"), std::string::npos);
}

TEST_F(LabTest, AFailedStepIsReportedAndRolledBack) {
  sys.fail_on = [](const std::vector<std::string>& a) {
    return a.size() > 6 && a[1] == "-n" && a[2] == "lab-vpc2" && a[4] == "add" && a[5] == "br0";
  };
  auto r = lab.up(topology(), "lab.yaml", false, nullptr);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "`ip -n lab-vpc2 link add br0 type bridge` failed (exit 2): injected failure");
  EXPECT_NE(progress.str().find("removing what was made"), std::string::npos);
  expectClean();
}

TEST_F(LabTest, AnInterruptStopsAndRollsBack) {
  std::atomic<bool> stop{false};
  sys.fail_on = [&](const std::vector<std::string>& a) {
    if (a.size() > 3 && a[2] == "add" && a[3] == "lab-web") stop = true;
    return false;
  };
  auto r = lab.up(topology(), "lab.yaml", false, nullptr, &stop);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("interrupted before"), std::string::npos) << r.error().message;
  expectClean();
}

TEST_F(LabTest, DownRemovesEverything) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.pids["lab-web"].push_back(77);  // something started by hand in a host
  sys.live.insert(77);
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  expectClean();
  EXPECT_FALSE(sys.alive(77));
  EXPECT_FALSE(sys.alive(1001));  // the run: process
  EXPECT_NE(progress.str().find("lab lab is down"), std::string::npos);
  // Down again: nothing to do, still fine.
  EXPECT_TRUE(lab.down("lab", nullptr, false));
}

TEST_F(LabTest, DownEscalatesToSigkill) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.stubborn.insert(1001);
  ASSERT_TRUE(lab.down("lab", nullptr, false));
  EXPECT_EQ(sys.signals, (std::vector<std::pair<int, int>>{{1001, SIGTERM}, {1001, SIGKILL}}));
}

TEST_F(LabTest, DownAfterACrashedUpRemovesEverything) {
  // `up` ran to the end on the machine, but the state file is the one written when it had
  // got only as far as the first host (as if it had been killed there and the rest came from
  // another run): down must still remove all of it.
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  std::string partial = sys.calls[sys.indexOf({"ip", "netns", "add", "lab-web"})].state;
  ASSERT_NE(partial.find("lab-web"), std::string::npos);
  ASSERT_EQ(partial.find("lab-node"), std::string::npos);
  ASSERT_NE(partial.find("\"complete\": false"), std::string::npos);
  sys.files["/state/lab.json"] = partial;
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  expectClean();
}

TEST_F(LabTest, DownWithoutStateSweepsByName) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.files.erase("/state/lab.json");
  sys.netns.insert("labx-web");  // another lab's, not ours: "labx" is not "lab-"
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  EXPECT_EQ(sys.netns, std::set<std::string>{"labx-web"});
  EXPECT_TRUE(sys.root_links.empty());
  EXPECT_TRUE(sys.rules.empty());
  EXPECT_NE(progress.str().find("no state file for lab lab"), std::string::npos);
}

TEST_F(LabTest, UpMarksEachNamespaceBeforeCreatingIt) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  for (const std::string& ns : sys.netns) {
    EXPECT_EQ(sys.files["/state/lab.netns/" + ns], "lab\n") << "marker of " << ns;
  }
}

TEST_F(LabTest, DownNeverTouchesANamespaceTheLabDidNotMake) {
  // A namespace named like one of the lab's, made by someone else, with a process inside.
  sys.netns.insert("lab-keep");
  sys.pids["lab-keep"].push_back(77);
  sys.live.insert(77);
  // Without any state file (a typo'd --name) ...
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  EXPECT_TRUE(sys.netns.count("lab-keep")) << progress.str();
  EXPECT_TRUE(sys.alive(77));
  EXPECT_TRUE(sys.signals.empty());
  // ... and beside a lab that is up and then brought down: only the lab's own go.
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr)) << progress.str();
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  EXPECT_EQ(sys.netns, std::set<std::string>{"lab-keep"});
  EXPECT_TRUE(sys.alive(77));
  EXPECT_EQ(sys.signals, (std::vector<std::pair<int, int>>{{1001, SIGTERM}}));
  // A marker file with another lab's name in it does not make the namespace ours either.
  sys.files["/state/lab.netns/lab-keep"] = "other\n";
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  EXPECT_TRUE(sys.netns.count("lab-keep"));
}

TEST_F(LabTest, DownRefusesStateEntriesOutsideTheLabsLayout) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  // Someone who can write the state file lists things that are not the lab's.
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  sys.files["/etc/passwd"] = "root:x:0:0";
  sys.root_links.insert("eth0");
  sys.netns.insert("other");
  sys.rules.push_back({"INPUT", "-j", "ACCEPT"});
  auto add = [&](ObjectKind k, std::string ns, std::string name, std::string path) {
    LabObject o;
    o.kind = k;
    o.ns = std::move(ns);
    o.name = std::move(name);
    o.path = std::move(path);
    st->objects.push_back(o);
  };
  add(ObjectKind::kFile, "", "", "/etc/passwd");
  add(ObjectKind::kFile, "", "", "/etc/netns/lab-web/../../passwd");
  add(ObjectKind::kDirectory, "", "", "/etc");
  add(ObjectKind::kLink, "", "eth0", "");
  add(ObjectKind::kNamespace, "", "other", "");
  LabObject rule;
  rule.kind = ObjectKind::kIptablesRule;
  rule.chain = "INPUT";
  rule.args = {"-j", "ACCEPT"};
  st->objects.push_back(rule);
  sys.files["/state/lab.json"] = stateToJson(*st);

  auto r = lab.down("lab", nullptr, false);
  ASSERT_FALSE(r) << progress.str();
  for (const char* entry :
       {"refused state-file entry {file path=/etc/passwd}: not /etc/netns/lab-<name>/resolv.conf",
        "refused state-file entry {file path=/etc/netns/lab-web/../../passwd}",
        "refused state-file entry {dir path=/etc}", "refused state-file entry {link name=eth0}",
        "refused state-file entry {netns name=other}",
        "refused state-file entry {iptables chain=INPUT args=[-j ACCEPT]}"})
    EXPECT_NE(r.error().message.find(entry), std::string::npos)
        << "expected \"" << entry << "\" in: " << r.error().message;
  EXPECT_EQ(sys.files["/etc/passwd"], "root:x:0:0");
  EXPECT_EQ(sys.root_links, std::set<std::string>{"eth0"});
  EXPECT_EQ(sys.netns, std::set<std::string>{"other"});
  EXPECT_EQ(sys.rules, (std::vector<std::vector<std::string>>{{"INPUT", "-j", "ACCEPT"}}));
  EXPECT_FALSE(sys.ran({"ip", "link", "del", "eth0"}));
  EXPECT_FALSE(sys.ran({"ip", "netns", "del", "other"}));
  // The refused entries stay in the state file, for a human to look at.
  auto after = lab.load("lab");
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->objects.size(), 6u);
}

TEST_F(LabTest, ACorruptStateFileIsReportedAndKeptAndOnlyMarkedNamespacesGo) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.netns.insert("lab-keep");  // not the lab's: no marker
  sys.files["/state/lab.json"] = "{\"version\": 1, \"objects\": [";
  auto r = lab.down("lab", nullptr, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the state file of lab lab cannot be used"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("it is kept"), std::string::npos) << r.error().message;
  EXPECT_EQ(sys.files["/state/lab.json"], "{\"version\": 1, \"objects\": [");
  EXPECT_EQ(sys.netns, std::set<std::string>{"lab-keep"});
  EXPECT_TRUE(sys.root_links.empty());
  EXPECT_TRUE(sys.rules.empty());
}

TEST_F(LabTest, PeerUnpeerExecAndRegisterRefuseAStateFileOutsideTheLayout) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  LabObject o;
  o.kind = ObjectKind::kNamespace;
  o.name = "other";
  st->objects.push_back(o);
  sys.files["/state/lab.json"] = stateToJson(*st);
  const std::string before = sys.files["/state/lab.json"];
  FakeRegistrar registrar;
  size_t calls = sys.calls.size();
  for (const auto& r :
       {lab.peer("lab", "vpc3", "vpc1"), lab.unpeer("lab", "vpc1", "vpc2"),
        lab.exec("lab", "web", {"true"}), lab.registerNetworks("lab", lend(registrar))}) {
    ASSERT_FALSE(r) << "expected a refusal of the state file";
    EXPECT_NE(r.error().message.find("cannot be trusted: its entry {netns name=other} is not a "
                                     "namespace named lab-<name>"),
              std::string::npos)
        << r.error().message;
  }
  EXPECT_EQ(sys.calls.size(), calls) << "nothing may run on an untrusted state file";
  EXPECT_TRUE(sys.execs.empty());
  EXPECT_EQ(sys.files["/state/lab.json"], before) << "the state file is kept as it was";
}

TEST_F(LabTest, DownOfTheLastLabRemovesTheUpLock) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.files["/state/up.lock"] = "";
  sys.files["/state/other.json"] = "{}";  // another lab is up: the lock file stays
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  EXPECT_TRUE(sys.files.count("/state/up.lock"));
  sys.files.erase("/state/other.json");
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  ASSERT_TRUE(lab.down("lab", nullptr, false)) << progress.str();
  EXPECT_FALSE(sys.files.count("/state/up.lock")) << "no lab left: nothing of up is left";
}

TEST_F(LabTest, UpWaitsForAnotherUpOfAnyLab) {
  sys.busy_locks.insert("/state/up.lock");
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr)) << progress.str();
  EXPECT_EQ(sys.waited_locks, std::vector<std::string>{"/state/up.lock"});
  EXPECT_NE(progress.str().find("waiting for another `weft lab up` to finish"), std::string::npos)
      << progress.str();
}

TEST_F(LabTest, AStateFileOfAnotherLabIsNotUsed) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  std::string text = sys.files["/state/lab.json"];
  size_t at = text.find("\"name\": \"lab\"");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, std::string("\"name\": \"lab\"").size(), "\"name\": \"other\"");
  sys.files["/state/lab.json"] = text;
  auto r = lab.down("lab", nullptr, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("names lab \"other\", not lab"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(sys.files["/state/lab.json"], text);
  EXPECT_TRUE(sys.netns.empty()) << "the marked namespaces are swept";
}

TEST(RealSystemTest, ASpawnedProcessInheritsNoOtherFds) {
  char tmpl[] = "/tmp/weft-lab-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl, log = dir + "/log";
  int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC, like an fd a caller passed on
  ASSERT_GE(leaked, 3);
  auto sys = makeRealSystem();
  std::string check = "if [ -e /proc/self/fd/" + std::to_string(leaked) +
                      " ]; then echo inherited; else echo closed; fi";
  auto pid = sys->spawn({"sh", "-c", check}, {}, log);
  ASSERT_TRUE(pid) << pid.error().message;
  int status = 0;
  ASSERT_EQ(::waitpid(*pid, &status, 0), *pid);
  ::close(leaked);
  auto out = sys->readFile(log);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(*out, "closed\n") << "expected fd " << leaked << " not to reach the spawned process";
  ::unlink(log.c_str());
  ::rmdir(dir.c_str());
}

TEST(RealSystemTest, LockWaitWaitsUntilTheHolderLetsGo) {
  char tmpl[] = "/tmp/weft-lab-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/up.lock";
  auto holder = makeRealSystem();
  ASSERT_TRUE(holder->lock(path));
  auto waiter = makeRealSystem();
  ASSERT_FALSE(waiter->lock(path)) << "the lock is held";
  std::atomic<bool> got{false};
  std::thread t([&] { got = static_cast<bool>(waiter->lockWait(path)); });
  holder.reset();  // closes the holder's descriptor: the waiter gets the lock
  t.join();
  EXPECT_TRUE(got.load());
  waiter.reset();
  ::unlink(path.c_str());
  ::rmdir(tmpl);
}

TEST(RealSystemTest, ALockFileRemovedByItsHolderIsLockedAgainWhereItIsNow) {
  char tmpl[] = "/tmp/weft-lab-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/up.lock";
  auto holder = makeRealSystem();
  ASSERT_TRUE(holder->lock(path));
  ASSERT_TRUE(holder->lock(path)) << "a lock this System holds is taken again at once";
  auto waiter = makeRealSystem();
  std::atomic<bool> got{false};
  std::thread t([&] { got = static_cast<bool>(waiter->lockWait(path)); });
  ASSERT_TRUE(holder->removeFile(path));  // as `down` removes the lock files it holds
  holder.reset();
  t.join();
  ASSERT_TRUE(got.load());
  auto third = makeRealSystem();
  EXPECT_FALSE(third->lock(path))
      << "the waiter holds the file now at the path, not only the removed one";
  waiter.reset();
  third.reset();
  ::unlink(path.c_str());
  ::rmdir(tmpl);
}

TEST(RealSystemTest, TheLockFileIsNeverASymlink) {
  char tmpl[] = "/tmp/weft-lab-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string target = dir + "/target", link = dir + "/lab.json.lock";
  auto sys = makeRealSystem();
  ASSERT_TRUE(sys->writeFile(target, "precious", 0644));
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto r = sys->lock(link);
  ASSERT_FALSE(r) << "expected a symlink at the lock's path to be refused";
  EXPECT_NE(r.error().message.find(link), std::string::npos) << r.error().message;
  EXPECT_EQ(*sys->readFile(target), "precious");
  ::unlink(link.c_str());
  ASSERT_TRUE(sys->lock(link)) << "a plain lock file works";
  ::unlink(link.c_str());
  ::unlink(target.c_str());
  ::rmdir(dir.c_str());
}

TEST_F(LabTest, ANamespaceSomeoneElseMakesDuringUpIsNotRolledBack) {
  // Between up's checks and its `ip netns add lab-web`, someone else makes lab-web.
  sys.fail_on = [this](const std::vector<std::string>& a) {
    if (a != std::vector<std::string>{"ip", "netns", "add", "lab-web"}) return false;
    sys.netns.insert("lab-web");
    sys.pids["lab-web"].push_back(77);
    sys.live.insert(77);
    return true;
  };
  ASSERT_FALSE(lab.up(topology(), "lab.yaml", false, nullptr));
  EXPECT_EQ(sys.netns, std::set<std::string>{"lab-web"}) << progress.str();
  EXPECT_TRUE(sys.alive(77));
  EXPECT_FALSE(sys.files.count("/state/lab.netns/lab-web"));
  EXPECT_FALSE(sys.files.count("/state/lab.json"));
}

TEST_F(LabTest, DownReportsWhatIsLeft) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.fail_on = [](const std::vector<std::string>& a) {
    return a.size() == 4 && a[1] == "netns" && a[2] == "del" && a[3] == "lab-node";
  };
  auto r = lab.down("lab", nullptr, false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "lab lab is not entirely gone; left:\n  - namespace lab-node");
  EXPECT_TRUE(sys.files.count("/state/lab.json")) << "the state file must stay for a retry";
  sys.fail_on = nullptr;
  EXPECT_TRUE(lab.down("lab", nullptr, false));
  expectClean();
}

TEST_F(LabTest, PeerAndUnpeer) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  ASSERT_TRUE(lab.unpeer("lab", "vpc2", "vpc1"));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc2", "link", "del", "p0"}));
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->topology.peerings.empty());
  auto twice = lab.unpeer("lab", "vpc1", "vpc2");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().message, "vpc1 and vpc2 are not peered");

  ASSERT_TRUE(lab.peer("lab", "vpc3", "vpc1"));
  EXPECT_TRUE(sys.ran({"ip", "link", "add", "name", "p0", "netns", "lab-vpc3", "type", "veth",
                       "peer", "name", "p2", "netns", "lab-vpc1"}));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc3", "route", "add", "198.18.0.0/16", "via",
                       "198.18.255.253", "dev", "p0", "onlink"}));
  st = lab.load("lab");
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->topology.peered("vpc1", "vpc3"));
  auto bad = lab.peer("lab", "vpc1", "vpc9");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "lab lab has no network \"vpc9\" (networks: vpc1, vpc2, vpc3)");
}

TEST_F(LabTest, AFailedPeerIsUndone) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.fail_on = [](const std::vector<std::string>& a) {
    return std::find(a.begin(), a.end(), "onlink") != a.end();
  };
  ASSERT_FALSE(lab.peer("lab", "vpc3", "vpc2"));
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->topology.peered("vpc2", "vpc3"));
  EXPECT_TRUE(sys.ran({"ip", "-n", "lab-vpc3", "link", "del", "p1"}));
}

TEST_F(LabTest, RegistersAndDeregistersNetworks) {
  registrar.networks.push_back({"vpc-old", "vpc1", {"198.18.0.0/16"}});  // not ours
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", true, lend(registrar))) << progress.str();
  ASSERT_EQ(registrar.networks.size(), 4u);
  EXPECT_EQ(registrar.networks[1].name, "vpc1");
  EXPECT_EQ(registrar.networks[3].cidrs, std::vector<std::string>{"198.19.128.0/17"});
  std::string json = lab.statusJson(*lab.load("lab"));
  EXPECT_NE(json.find("\"network_id\":\"vpc-1\""), std::string::npos) << json;
  ASSERT_TRUE(lab.down("lab", lend(registrar), false)) << progress.str();
  ASSERT_EQ(registrar.networks.size(), 1u);
  EXPECT_EQ(registrar.networks[0].id, "vpc-old");
}

TEST_F(LabTest, RegistersTheNetworksOfARunningLab) {
  registrar.networks.push_back({"vpc-old", "vpc1", {"198.18.0.0/16"}});
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  ASSERT_TRUE(lab.registerNetworks("lab", lend(registrar))) << progress.str();
  ASSERT_EQ(registrar.networks.size(), 4u);
  EXPECT_TRUE(lab.registerNetworks("lab", lend(registrar)));
  EXPECT_EQ(registrar.networks.size(), 4u) << "registered once";
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->server, "http://127.0.0.1:7080");
  EXPECT_EQ(st->preexisting_networks, std::vector<std::string>{"vpc-old"});
  ASSERT_TRUE(lab.down("lab", lend(registrar), false));
  ASSERT_EQ(registrar.networks.size(), 1u);
  registrar.reachable = false;
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  auto r = lab.registerNetworks("lab", lend(registrar));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("cannot reach the weft server"), std::string::npos);
}

TEST_F(LabTest, AnUnreachableServerFailsUpBeforeAnythingIsBuilt) {
  registrar.reachable = false;
  auto r = lab.up(topology(), "lab.yaml", true, lend(registrar));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "cannot reach the weft server at http://127.0.0.1:7080 to register the networks: "
            "connect to 127.0.0.1:7080: Connection refused (start `weft server`, or drop "
            "--register / control_plane.register_networks)");
  EXPECT_TRUE(sys.netns.empty());
  EXPECT_FALSE(sys.files.count("/state/lab.json"));
}

TEST_F(LabTest, ARegistrationWithoutItsAnswerIsFoundByNameAndCidr) {
  registrar.networks.push_back({"vpc-old", "vpc1", {"198.18.0.0/16"}});
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", true, lend(registrar)));
  // As if `up` died between the server's answer and writing the id down.
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  for (LabObject& o : st->objects)
    if (o.kind == ObjectKind::kRegistration) o.id.clear();
  sys.files["/state/lab.json"] = stateToJson(*st);
  ASSERT_TRUE(lab.down("lab", lend(registrar), false)) << progress.str();
  ASSERT_EQ(registrar.networks.size(), 1u);
  EXPECT_EQ(registrar.networks[0].id, "vpc-old");
}

TEST_F(LabTest, DownKeepsTheStateWhenTheServerIsGone) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", true, lend(registrar)));
  registrar.reachable = false;
  auto r = lab.down("lab", lend(registrar), false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("network vpc1 (vpc-1) on the weft server at "
                                   "http://127.0.0.1:7080: connect to 127.0.0.1:7080: "
                                   "Connection refused"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(sys.netns.empty()) << "the local objects go anyway";
  // The state keeps only the registrations; --keep-networks lets them go.
  auto st = lab.load("lab");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->objects.size(), 3u);
  EXPECT_TRUE(lab.down("lab", lend(registrar), true));
  EXPECT_FALSE(sys.files.count("/state/lab.json"));
}

TEST_F(LabTest, StatusJsonDescribesTheLab) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  sys.netns.erase("lab-lone");
  std::string json = lab.statusJson(*lab.load("lab"));
  for (const char* want :
       {"\"name\":\"lab\"", "\"complete\":true",
        "{\"name\":\"vpc1\",\"cidr\":\"198.18.0.0/16\",\"endpoint\":\"198.18.255.254\","
        "\"router_address\":\"198.18.255.253\"",
        "\"namespace\":\"lab-vpc1\",\"namespace_exists\":true,\"network_id\":null,"
        "\"peers\":[\"vpc2\"]",
        "{\"name\":\"vpc1-b\",\"cidr\":\"198.18.2.0/24\",\"zone\":\"us-west-2b\","
        "\"gateway\":\"198.18.2.1\",\"bridge\":\"br1\"}",
        "{\"name\":\"web\",\"network\":\"vpc1\",\"subnet\":\"vpc1-a\",\"zone\":\"us-west-2a\","
        "\"address\":\"198.18.1.4\",\"gateway\":\"198.18.1.1\",\"nameserver\":\"198.18.255.254\","
        "\"namespace\":\"lab-web\",\"namespace_exists\":true,"
        "\"resolv_conf\":\"/etc/netns/lab-web/resolv.conf\",\"process\":null}",
        "\"process\":{\"command\":[\"python3\",\"app.py\"],\"pid\":1001,\"running\":true",
        "\"namespace\":\"lab-lone\",\"namespace_exists\":false",
        "\"peerings\":[{\"between\":[\"vpc1\",\"vpc2\"]}]"})
    EXPECT_NE(json.find(want), std::string::npos) << "expected " << want << " in " << json;
  std::string table = lab.statusTable(*lab.load("lab"));
  EXPECT_NE(table.find("lab-lone"), std::string::npos);
  EXPECT_NE(table.find("MISSING"), std::string::npos) << table;
}

TEST_F(LabTest, ExecRunsInTheHostsNamespace) {
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  EXPECT_FALSE(lab.exec("lab", "node", {"curl", "-s", "http://x/"}));
  ASSERT_EQ(sys.execs.size(), 1u);
  EXPECT_EQ(sys.execs[0].first, (std::vector<std::string>{"ip", "netns", "exec", "lab-node", "curl",
                                                          "-s", "http://x/"}));
  EnvList env = sys.execs[0].second;
  for (const auto& kv : EnvList{{"WEFT_LAB", "lab"},
                                {"WEFT_LAB_HOST", "node"},
                                {"WEFT_LAB_NETWORK", "vpc2"},
                                {"WEFT_LAB_SUBNET", "vpc2-a"},
                                {"WEFT_LAB_ZONE", "us-west-2a"},
                                {"WEFT_LAB_ADDRESS", "198.19.1.4"},
                                {"WEFT_LAB_ENDPOINT", "198.19.127.254"}})
    EXPECT_NE(std::find(env.begin(), env.end(), kv), env.end()) << kv.first << "=" << kv.second;
  auto unknown = lab.exec("lab", "nobody", {"true"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message,
            "lab lab has no host \"nobody\" (hosts: web, api, node, lone; a network's name runs "
            "in its router)");
  EXPECT_FALSE(lab.exec("lab", "vpc3", {"ip", "route"}));
  EXPECT_EQ(sys.execs.back().first[3], "lab-vpc3");
}

TEST_F(LabTest, PicksTheOnlyLab) {
  auto none = lab.pickLab("");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message, "no lab is up (no state file in /state)");
  ASSERT_TRUE(lab.up(topology(), "lab.yaml", false, nullptr));
  EXPECT_EQ(*lab.pickLab(""), "lab");
  sys.files["/state/other.json"] = "{}";
  auto two = lab.pickLab("");
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error().message, "several labs are up (lab, other); say which with --name");
}

TEST(StateTest, RoundTrips) {
  LabState s;
  s.name = "lab";
  s.tag = labTag("lab");
  s.topology_file = "/x/lab \"1\".yaml";
  s.created_at = 1700000000;
  s.complete = true;
  s.server = "http://127.0.0.1:7080";
  s.preexisting_networks = {"vpc-1"};
  s.topology = topology();
  LabObject rule;
  rule.kind = ObjectKind::kIptablesRule;
  rule.chain = "FORWARD";
  rule.args = {"-i", "wl+", "-j", "DROP"};
  LabObject proc;
  proc.kind = ObjectKind::kProcess;
  proc.ns = "lab-api";
  proc.name = "api";
  proc.pid = 42;
  proc.path = "/state/lab.logs/api.log";
  s.objects = {rule, proc};
  std::string json = stateToJson(s);
  auto back = parseState(json);
  ASSERT_TRUE(back) << back.error().message << "\n" << json;
  EXPECT_EQ(back->topology_file, s.topology_file);
  EXPECT_EQ(back->created_at, s.created_at);
  EXPECT_TRUE(back->complete);
  EXPECT_EQ(back->preexisting_networks, s.preexisting_networks);
  EXPECT_EQ(back->objects, s.objects);
  EXPECT_EQ(topologyToJson(back->topology), topologyToJson(s.topology));
  EXPECT_EQ(stateToJson(*back), json);
  EXPECT_FALSE(parseState("{\"version\": 9}"));
  EXPECT_FALSE(parseState("[1"));
}

TEST(CommandTest, UsageErrors) {
  FakeSystem sys;
  std::ostringstream out, err;
  LabIo io{out, err, nullptr, nullptr, &sys};
  auto run = [&](std::vector<std::string> positional, LabInvocation inv = {}) {
    err.str("");
    inv.positional = std::move(positional);
    inv.state_dir = kStateDir;
    return runLabCommand(inv, io);
  };
  EXPECT_EQ(run({}), 2);
  EXPECT_EQ(err.str(),
            "weft lab: expected up, down, status, exec, register, peer or unpeer (see weft lab "
            "--help)\n");
  EXPECT_EQ(run({"up"}), 2);
  EXPECT_EQ(err.str(), "weft lab up: expected the topology FILE (see weft lab --help)\n");
  EXPECT_EQ(run({"exec", "h"}), 2);
  EXPECT_EQ(run({"peer", "a"}), 2);
  EXPECT_EQ(run({"frobnicate"}), 2);
  LabInvocation json;
  json.output = "yaml";
  EXPECT_EQ(run({"status"}, json), 2);
  EXPECT_EQ(run({"up", "/nope.yaml"}), 1);
  EXPECT_EQ(err.str(), "weft lab up: cannot read /nope.yaml\n");
  sys.files["/bad.yaml"] = "networks: []\n";
  EXPECT_EQ(run({"up", "/bad.yaml"}), 1);
  EXPECT_NE(err.str().find("weft lab up: /bad.yaml: 1 problem in the topology:"), std::string::npos)
      << err.str();
  EXPECT_EQ(run({"status"}), 1);
  EXPECT_EQ(err.str(), "weft lab status: no lab is up (no state file in /state)\n");
}

TEST(CommandTest, UpNamesTheLabAfterTheFileOrFlag) {
  FakeSystem sys;
  std::ostringstream out, err;
  LabIo io{out, err, nullptr, nullptr, &sys};
  sys.files["/t/small.yaml"] =
      "networks: [{name: n1, cidr: 198.18.0.0/24, subnets: [{name: s1, cidr: 198.18.0.0/25}]}]\n"
      "hosts: [{name: h1, subnet: s1}]\n";
  LabInvocation inv;
  inv.state_dir = kStateDir;
  inv.positional = {"up", "/t/small.yaml"};
  ASSERT_EQ(runLabCommand(inv, io), 0) << err.str();
  EXPECT_TRUE(sys.netns.count("small-h1"));
  inv.name = "t42";
  ASSERT_EQ(runLabCommand(inv, io), 1) << "overlaps lab small";
  EXPECT_NE(err.str().find("overlaps network n1 (198.18.0.0/24) of lab small"), std::string::npos)
      << err.str();
  inv.positional = {"status"};
  inv.name = "";
  inv.output = "json";
  ASSERT_EQ(runLabCommand(inv, io), 0) << err.str();
  EXPECT_EQ(out.str().rfind("{\"name\":\"small\"", 0), 0u) << out.str();
  inv.positional = {"down"};
  inv.output = "";
  ASSERT_EQ(runLabCommand(inv, io), 0) << err.str();
  EXPECT_TRUE(sys.netns.empty());
}

}  // namespace
}  // namespace weft::lab
