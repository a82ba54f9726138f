#include "workload/intercept.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace weft::workload {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string join(const Argv& a) { return formatArgv(a); }

std::vector<std::string> joined(const std::vector<Argv>& cmds) {
  std::vector<std::string> out;
  for (const Argv& a : cmds) out.push_back(join(a));
  return out;
}

TEST(InterceptConfig, DefaultsFollowAppMeshAndTheWalkthrough) {
  auto c = makeInterceptConfig({});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->id, "weft");
  EXPECT_TRUE(c->app_ports.empty());
  EXPECT_EQ(c->proxy_ingress_port, 15000);
  EXPECT_EQ(c->proxy_egress_port, 15001);
  EXPECT_EQ(c->ignored_uid, 1337u);
  EXPECT_FALSE(c->ignored_gid.has_value());
  EXPECT_THAT(c->egress_ignored_ports, ElementsAre(22));
  EXPECT_THAT(c->egress_ignored_ips, ElementsAre("169.254.169.254", "169.254.170.2"));
}

TEST(InterceptConfig, ParsesEveryFlag) {
  InterceptFlags f;
  f.id = "web-1";
  f.app_ports = "3000, 8080,3000";
  f.proxy_ingress_port = "16000";
  f.proxy_egress_port = "16001";
  f.ignored_uid = "999";
  f.ignored_gid = "998";
  f.egress_ignored_ports = "22,2222";
  f.egress_ignored_ips = "10.0.0.0/8,192.0.2.1";
  auto c = makeInterceptConfig(f);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->id, "web-1");
  EXPECT_THAT(c->app_ports, ElementsAre(3000, 8080)) << "duplicates dropped, order kept";
  EXPECT_EQ(c->proxy_ingress_port, 16000);
  EXPECT_EQ(c->proxy_egress_port, 16001);
  EXPECT_EQ(c->ignored_uid, 999u);
  EXPECT_EQ(c->ignored_gid, 998u);
  EXPECT_THAT(c->egress_ignored_ports, ElementsAre(22, 2222));
  EXPECT_THAT(c->egress_ignored_ips, ElementsAre("10.0.0.0/8", "192.0.2.1"));
}

TEST(InterceptConfig, EmptyOrNoneClearsTheExemptionLists) {
  InterceptFlags f;
  f.egress_ignored_ports = "";
  f.egress_ignored_ips = "none";
  auto c = makeInterceptConfig(f);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->egress_ignored_ports.empty());
  EXPECT_TRUE(c->egress_ignored_ips.empty());
}

TEST(InterceptConfig, RefusalsNameTheFlag) {
  auto refused = [](InterceptFlags f) {
    auto c = makeInterceptConfig(f);
    return c ? std::string("accepted") : c.error().message;
  };
  InterceptFlags f;
  f.app_ports = "3000,70000";
  EXPECT_THAT(refused(f), HasSubstr("--app-ports: '70000' is not a port"));
  f = {};
  f.app_ports = "15000";
  EXPECT_THAT(refused(f), HasSubstr("--app-ports: 15000 is one of the proxy's own ports"));
  f = {};
  f.proxy_egress_port = "15000";
  EXPECT_THAT(refused(f), HasSubstr("must differ"));
  f = {};
  f.id = "a-name-much-too-long-for-a-chain";
  EXPECT_THAT(refused(f), HasSubstr("--id:"));
  f = {};
  f.id = "bad id";
  EXPECT_THAT(refused(f), HasSubstr("--id:"));
  f = {};
  f.egress_ignored_ips = "fd00::1";
  EXPECT_THAT(refused(f), HasSubstr("--egress-ignored-ips: 'fd00::1' is not an IPv4"));
  f = {};
  f.egress_ignored_ips = "10.0.0.0/33";
  EXPECT_THAT(refused(f), HasSubstr("--egress-ignored-ips"));
  f = {};
  f.ignored_uid = "-1";
  EXPECT_THAT(refused(f), HasSubstr("--ignored-uid"));
  f = {};
  f.egress_ignored_ports = "ssh";
  EXPECT_THAT(refused(f), HasSubstr("--egress-ignored-ports: 'ssh' is not a port"));
}

TEST(InterceptRules, TheRulesOfAConfigInOrder) {
  InterceptConfig c;
  c.id = "t";
  c.app_ports = {3000, 3001};
  c.ignored_gid = 1338;
  EXPECT_THAT(joined(chainRules(c)),
              ElementsAre("-t nat -A WEFT_IN_t -p tcp --dport 3000 -j REDIRECT --to-ports 15000",
                          "-t nat -A WEFT_IN_t -p tcp --dport 3001 -j REDIRECT --to-ports 15000",
                          "-t nat -A WEFT_OUT_t -m owner --uid-owner 1337 -j RETURN",
                          "-t nat -A WEFT_OUT_t -m owner --gid-owner 1338 -j RETURN",
                          "-t nat -A WEFT_OUT_t -o lo -j RETURN",
                          "-t nat -A WEFT_OUT_t -p tcp --dport 22 -j RETURN",
                          "-t nat -A WEFT_OUT_t -d 169.254.169.254 -j RETURN",
                          "-t nat -A WEFT_OUT_t -d 169.254.170.2 -j RETURN",
                          "-t nat -A WEFT_OUT_t -p tcp -j REDIRECT --to-ports 15001"));
}

TEST(InterceptRules, NoAppPortsMeansOutboundOnly) {
  InterceptConfig c;
  c.egress_ignored_ports.clear();
  c.egress_ignored_ips.clear();
  EXPECT_THAT(joined(chainRules(c)),
              ElementsAre("-t nat -A WEFT_OUT_weft -m owner --uid-owner 1337 -j RETURN",
                          "-t nat -A WEFT_OUT_weft -o lo -j RETURN",
                          "-t nat -A WEFT_OUT_weft -p tcp -j REDIRECT --to-ports 15001"));
}

TEST(InterceptRules, InstallCreatesMissingChainsAndFlushesPresentOnes) {
  InterceptConfig c;
  c.id = "x";
  auto fresh = joined(installCommands(c, false, false));
  ASSERT_GE(fresh.size(), 2u);
  EXPECT_EQ(fresh[0], "-t nat -N WEFT_IN_x");
  EXPECT_EQ(fresh[1], "-t nat -N WEFT_OUT_x");
  auto again = joined(installCommands(c, true, true));
  EXPECT_EQ(again[0], "-t nat -F WEFT_IN_x");
  EXPECT_EQ(again[1], "-t nat -F WEFT_OUT_x");
  EXPECT_EQ(fresh.size(), again.size());
  auto j = jumps("x");
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0].hook, "PREROUTING");
  EXPECT_EQ(join(j[0].spec), "-p tcp -j WEFT_IN_x");
  EXPECT_EQ(j[1].hook, "OUTPUT");
  EXPECT_EQ(join(j[1].spec), "-p tcp -j WEFT_OUT_x");
}

TEST(InterceptRules, InstalledInterceptionsGroupsTheListingById) {
  std::string listing =
      "-P PREROUTING ACCEPT\n"
      "-P OUTPUT ACCEPT\n"
      "-N DOCKER\n"
      "-N WEFT_IN_a\n"
      "-N WEFT_OUT_a\n"
      "-N WEFT_OUT_run12\n"
      "-A PREROUTING -p tcp -j WEFT_IN_a\n"
      "-A OUTPUT -p tcp -j WEFT_OUT_run12\n"
      "-A OUTPUT -p tcp -j WEFT_OUT_a\n"
      "-A OUTPUT -d 10.0.0.1/32 -j DOCKER\n"
      "-A WEFT_IN_a -p tcp -m tcp --dport 3000 -j REDIRECT --to-ports 15000\n"
      "-A WEFT_OUT_a -p tcp -j REDIRECT --to-ports 15001\n";
  auto got = installedInterceptions(listing);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got["a"],
              ElementsAre("-N WEFT_IN_a", "-N WEFT_OUT_a", "-A PREROUTING -p tcp -j WEFT_IN_a",
                          "-A OUTPUT -p tcp -j WEFT_OUT_a",
                          "-A WEFT_IN_a -p tcp -m tcp --dport 3000 -j REDIRECT "
                          "--to-ports 15000",
                          "-A WEFT_OUT_a -p tcp -j REDIRECT --to-ports 15001"));
  EXPECT_THAT(got["run12"], ElementsAre("-N WEFT_OUT_run12", "-A OUTPUT -p tcp -j WEFT_OUT_run12"));
}

// A fake nat table: enough of iptables' behaviour (-S, -N, -F, -X, -A, -I, -C, -D) to check
// what Interceptor runs and what it leaves.
class FakeIptables : public CommandRunner {
 public:
  Result<CommandResult> run(const Argv& argv) override {
    calls.push_back(argv);
    // argv: iptables -w 10 -t nat OP ...
    if (argv.size() < 6 || argv[0] != "iptables" || argv[1] != "-w" || argv[3] != "-t" ||
        argv[4] != "nat")
      return CommandResult{2, "", "bad invocation"};
    const std::string& op = argv[5];
    Argv rest(argv.begin() + 6, argv.end());
    if (op == fail_op) return CommandResult{1, "", "iptables: simulated failure."};
    if (op == "-S") {
      std::string out = "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n";
      for (const auto& [chain, rules] : chains)
        if (chain != "PREROUTING" && chain != "OUTPUT") out += "-N " + chain + "\n";
      for (const auto& [chain, rules] : chains)
        for (const std::string& r : rules) out += "-A " + chain + " " + r + "\n";
      return CommandResult{0, out, ""};
    }
    if (rest.empty()) return CommandResult{2, "", "no chain"};
    std::string chain = rest[0];
    auto rule = [&](size_t from) { return formatArgv(Argv(rest.begin() + from, rest.end())); };
    bool exists = chains.count(chain) > 0;
    if (op == "-N") {
      if (exists) return CommandResult{1, "", "iptables: Chain already exists."};
      chains[chain];
      return CommandResult{0, "", ""};
    }
    if (!exists) return CommandResult{1, "", "iptables: No chain/target/match by that name."};
    auto& rules = chains[chain];
    if (op == "-F") {
      rules.clear();
    } else if (op == "-X") {
      if (!rules.empty()) return CommandResult{1, "", "Directory not empty"};
      chains.erase(chain);
    } else if (op == "-A") {
      rules.push_back(rule(1));
    } else if (op == "-I") {
      rules.insert(rules.begin(), rule(2));
    } else if (op == "-C") {
      bool found = std::find(rules.begin(), rules.end(), rule(1)) != rules.end();
      return CommandResult{found ? 0 : 1, "", found ? "" : "iptables: Bad rule."};
    } else if (op == "-D") {
      auto it = std::find(rules.begin(), rules.end(), rule(1));
      if (it == rules.end()) return CommandResult{1, "", "iptables: Bad rule."};
      rules.erase(it);
    } else {
      return CommandResult{2, "", "unknown op " + op};
    }
    return CommandResult{0, "", ""};
  }

  std::map<std::string, std::vector<std::string>> chains = {{"PREROUTING", {"-p udp -j RETURN"}},
                                                            {"OUTPUT", {}}};
  std::vector<Argv> calls;
  std::string fail_op;  // an op that fails, to test rollback
};

TEST(Interceptor, InstallTwiceChangesNothingAndRemoveRestoresTheTable) {
  FakeIptables ipt;
  auto before = ipt.chains;
  Interceptor i(ipt);
  InterceptConfig c;
  c.id = "t";
  c.app_ports = {3000};
  ASSERT_TRUE(i.install(c));
  auto once = ipt.chains;
  EXPECT_THAT(once["PREROUTING"], ElementsAre("-p tcp -j WEFT_IN_t", "-p udp -j RETURN"))
      << "the jump goes first, other rules stay";
  EXPECT_THAT(once["OUTPUT"], ElementsAre("-p tcp -j WEFT_OUT_t"));
  EXPECT_EQ(once["WEFT_IN_t"].size(), 1u);
  EXPECT_EQ(once["WEFT_OUT_t"].size(), 6u);
  ASSERT_TRUE(i.install(c));
  EXPECT_EQ(ipt.chains, once) << "a second install must not duplicate anything";

  auto listed = i.list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->count("t"), 1u);

  auto removed = i.remove("t");
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_TRUE(*removed);
  EXPECT_EQ(ipt.chains, before);
  auto again = i.remove("t");
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again) << "removing what is not there reports nothing removed";
  EXPECT_EQ(ipt.chains, before);
}

TEST(Interceptor, ReinstallWithOtherPortsReplacesTheRules) {
  FakeIptables ipt;
  Interceptor i(ipt);
  InterceptConfig c;
  c.id = "t";
  c.app_ports = {3000};
  ASSERT_TRUE(i.install(c));
  c.app_ports = {4000, 4001};
  ASSERT_TRUE(i.install(c));
  EXPECT_THAT(ipt.chains["WEFT_IN_t"],
              ElementsAre("-p tcp --dport 4000 -j REDIRECT --to-ports 15000",
                          "-p tcp --dport 4001 -j REDIRECT --to-ports 15000"));
  EXPECT_EQ(std::count(ipt.chains["PREROUTING"].begin(), ipt.chains["PREROUTING"].end(),
                       "-p tcp -j WEFT_IN_t"),
            1);
}

TEST(Interceptor, TwoIdsAreIndependent) {
  FakeIptables ipt;
  Interceptor i(ipt);
  InterceptConfig a, b;
  a.id = "a";
  b.id = "b";
  ASSERT_TRUE(i.install(a));
  auto only_a = ipt.chains;
  ASSERT_TRUE(i.install(b));
  ASSERT_TRUE(i.remove("b"));
  EXPECT_EQ(ipt.chains, only_a);
}

TEST(Interceptor, AFailureNamesTheCommandAndLeavesNothing) {
  FakeIptables ipt;
  auto before = ipt.chains;
  Interceptor i(ipt);
  ipt.fail_op = "-I";
  InterceptConfig c;
  c.id = "t";
  auto st = i.install(c);
  ASSERT_FALSE(st);
  EXPECT_THAT(st.error().message,
              HasSubstr("iptables -t nat -I PREROUTING 1 -p tcp -j WEFT_IN_t failed (exit 1): "
                        "iptables: simulated failure."));
  ipt.fail_op.clear();
  EXPECT_EQ(ipt.chains, before) << "the chains made before the failure are removed";
}

TEST(Interceptor, EveryCommandWaitsForTheXtablesLock) {
  FakeIptables ipt;
  Interceptor i(ipt);
  ASSERT_TRUE(i.install(InterceptConfig{}));
  ASSERT_TRUE(i.remove("weft"));
  for (const Argv& a : ipt.calls) {
    ASSERT_GE(a.size(), 3u);
    EXPECT_EQ(a[1], "-w") << formatArgv(a);
  }
}

TEST(Command, FormatArgvQuotesWhatAShellWouldSplit) {
  EXPECT_EQ(formatArgv({"iptables", "-t", "nat"}), "iptables -t nat");
  EXPECT_EQ(formatArgv({"echo", "a b", "", "it's"}), "echo 'a b' '' 'it'\\''s'");
}

TEST(Command, ProcessRunnerCapturesOutputAndExitCode) {
  ProcessCommandRunner r;
  auto ok = r.run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->exit_code, 3);
  EXPECT_EQ(ok->out, "out\n");
  EXPECT_EQ(ok->err, "err\n");
  auto missing = r.run({"weft-no-such-program-anywhere"});
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("not found"));
}

}  // namespace
}  // namespace weft::workload
