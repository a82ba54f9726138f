#include "workload/run.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

namespace weft::workload {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct FakeEnv {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> fn() {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

RunFlags validFlags() {
  RunFlags f;
  f.resource = "mesh/m/virtualNode/web";
  f.control_plane = "198.18.0.1:7081";
  f.token_file = "/etc/weft/token";
  f.ca_file = "/etc/weft/ca.pem";
  f.command = {"python3", "-m", "http.server", "3000"};
  f.intercept.app_ports = "3000";
  if (::geteuid() != 0) f.no_intercept = true;
  return f;
}

std::string refusal(const RunFlags& f, FakeEnv env = {}) {
  auto o = makeRunOptions(f, env.fn());
  return o ? std::string("accepted") : o.error().message;
}

TEST(RunOptions, DefaultsAndPassThrough) {
  FakeEnv env;
  auto o = makeRunOptions(validFlags(), env.fn());
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->resource, "mesh/m/virtualNode/web");
  EXPECT_EQ(o->admin, "127.0.0.1:0");
  EXPECT_EQ(o->ready_timeout, std::chrono::seconds(30));
  EXPECT_EQ(o->stop_timeout, std::chrono::seconds(20));
  EXPECT_EQ(o->intercept_config.id, "run" + std::to_string(::getpid()));
  EXPECT_THAT(o->intercept_config.app_ports, ElementsAre(3000));
  EXPECT_EQ(o->intercept_config.ignored_uid, o->proxy_user.uid)
      << "the proxy's own traffic is what interception exempts";
  if (::geteuid() == 0) {
    EXPECT_EQ(o->proxy_user.uid, 1337u);
    EXPECT_TRUE(o->intercept);
  }
  EXPECT_THAT(o->command, ElementsAre("python3", "-m", "http.server", "3000"));
}

TEST(RunOptions, ResourceFromAppMeshEnvironmentVariable) {
  RunFlags f = validFlags();
  f.resource.clear();
  FakeEnv env;
  env.vars["APPMESH_RESOURCE_ARN"] = "arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/w";
  auto o = makeRunOptions(f, env.fn());
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->resource, "arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/w");
  EXPECT_THAT(refusal(f), HasSubstr("--resource mesh/M/virtualNode/N is required"));
}

TEST(RunOptions, Refusals) {
  RunFlags f = validFlags();
  f.resource = "mesh/m/virtualGateway/gw";
  EXPECT_THAT(refusal(f), HasSubstr("is not a virtual node"));
  f.resource = "web";
  EXPECT_THAT(refusal(f), HasSubstr("--resource: 'web' is not mesh/M/virtualNode/N"));
  f = validFlags();
  f.control_plane.clear();
  EXPECT_THAT(refusal(f), HasSubstr("--control-plane HOST:PORT is required"));
  f.control_plane = "198.18.0.1:7081,cp2";
  EXPECT_THAT(refusal(f), HasSubstr("--control-plane: 'cp2' is not HOST:PORT"));
  f.control_plane = "[::1]:7081,cp2:7081";
  EXPECT_EQ(refusal(f), "accepted");
  f = validFlags();
  f.token_file.clear();
  EXPECT_THAT(refusal(f), HasSubstr("weft token create --resource mesh/m/virtualNode/web"));
  f = validFlags();
  f.ca_file.clear();
  EXPECT_THAT(refusal(f), HasSubstr("--ca-file is required"));
  f.insecure = true;
  EXPECT_EQ(refusal(f), "accepted");
  f.ca_file = "x";
  EXPECT_THAT(refusal(f), HasSubstr("exclude each other"));
  f = validFlags();
  f.command.clear();
  EXPECT_THAT(refusal(f), HasSubstr("no app to run"));
  f = validFlags();
  f.ready_timeout = "soon";
  EXPECT_THAT(refusal(f), HasSubstr("--ready-timeout: 'soon' is not a duration"));
  f = validFlags();
  f.intercept.app_ports = "15001";
  EXPECT_THAT(refusal(f), HasSubstr("--app-ports: 15001 is one of the proxy's own ports"));
  f = validFlags();
  f.intercept.id = "no spaces";
  EXPECT_THAT(refusal(f), HasSubstr("--intercept-id:"));
  if (::geteuid() == 0) {
    f = validFlags();
    f.app_user = "1337";
    EXPECT_THAT(refusal(f), HasSubstr("must not run as the proxy user"));
    f = validFlags();
    f.proxy_user = "no-such-user-weft";
    EXPECT_THAT(refusal(f), HasSubstr("--proxy-user: no user named 'no-such-user-weft'"));
  } else {
    f = validFlags();
    f.no_intercept = false;
    EXPECT_THAT(refusal(f), HasSubstr("interception needs root"));
  }
}

TEST(RunOptions, ProxyArgvCarriesTheAgentFlags) {
  RunFlags f = validFlags();
  f.app_addresses = {"198.18.0.5", "198.18.0.6,198.18.0.7"};
  f.host = "h1";
  f.network = "vpc1";
  f.proxy_log_level = "debug";
  f.admin = "127.0.0.1:9901";
  FakeEnv env;
  auto o = makeRunOptions(f, env.fn());
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_THAT(
      proxyArgv(*o, "/opt/weft-proxy", "/run/d/token", "/run/d/ca.pem", "/run/d/ports",
                "/run/d/state"),
      ElementsAre("/opt/weft-proxy", "--control-plane", "198.18.0.1:7081", "--resource",
                  "mesh/m/virtualNode/web", "--token-file", "/run/d/token", "--ca-file",
                  "/run/d/ca.pem", "--admin", "127.0.0.1:9901", "--ports-file", "/run/d/ports",
                  "--state-dir", "/run/d/state", "--app-address", "198.18.0.5", "--app-address",
                  "198.18.0.6", "--app-address", "198.18.0.7", "--host", "h1", "--network", "vpc1",
                  "--log-level", "debug"));
  f = validFlags();
  f.ca_file.clear();
  f.insecure = true;
  o = makeRunOptions(f, env.fn());
  ASSERT_TRUE(o);
  auto argv = proxyArgv(*o, "p", "t", "c", "ports", "s");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--insecure"), argv.end());
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "--ca-file"), argv.end());
}

TEST(RunOptions, Durations) {
  EXPECT_EQ(*parseDuration("30s", "f"), std::chrono::seconds(30));
  EXPECT_EQ(*parseDuration("250ms", "f"), std::chrono::milliseconds(250));
  EXPECT_EQ(*parseDuration("2m", "f"), std::chrono::minutes(2));
  EXPECT_EQ(*parseDuration("1.5", "f"), std::chrono::milliseconds(1500));
  EXPECT_FALSE(parseDuration("", "f"));
  EXPECT_FALSE(parseDuration("5d", "f"));
  EXPECT_FALSE(parseDuration("-1s", "f"));
}

TEST(RunOptions, Users) {
  auto root = resolveUser("0");
  ASSERT_TRUE(root) << root.error().message;
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  auto byname = resolveUser("root");
  ASSERT_TRUE(byname);
  EXPECT_EQ(byname->uid, 0u);
  auto unknown_uid = resolveUser("1337");
  ASSERT_TRUE(unknown_uid);
  EXPECT_EQ(unknown_uid->uid, 1337u);
  EXPECT_EQ(unknown_uid->gid, 1337u) << "a uid without a passwd entry gets the same gid";
  EXPECT_TRUE(unknown_uid->groups.empty());
  auto explicit_gid = resolveUser("1337:42");
  ASSERT_TRUE(explicit_gid);
  EXPECT_EQ(explicit_gid->gid, 42u);
  EXPECT_FALSE(resolveUser("no-such-user-weft"));
}

TEST(RunOptions, AppPortsFromTheProxysClusters) {
  std::string clusters =
      "cds_egress_m_echo_http_8080::198.18.70.2:8080::health_flags::healthy\n"
      "cds_ingress_m_web_http_3000::127.0.0.1:3000::health_flags::healthy\n"
      "cds_ingress_m_web_http_3000::127.0.0.1:3000::hostname::x\n"
      "cds_ingress_m_web_grpc_9090::127.0.0.1:9090::health_flags::unhealthy\n"
      "passthrough::no_endpoints\n";
  EXPECT_THAT(appPortsFromClusters(clusters), ElementsAre(3000, 9090));
  EXPECT_TRUE(appPortsFromClusters("").empty());
}

TEST(RunOptions, AdminPortFromThePortsFile) {
  EXPECT_EQ(adminPortFromPortsFile("{\"admin\": 40123, \"listeners\": {\"x\": 15000}}"), 40123);
  EXPECT_EQ(adminPortFromPortsFile("{\"admin\":9901}"), 9901);
  EXPECT_FALSE(adminPortFromPortsFile(""));
  EXPECT_FALSE(adminPortFromPortsFile("{\"listeners\": {}}"));
  EXPECT_FALSE(adminPortFromPortsFile("{\"admin\": 0}"));
}

// A directory the test owns, removed at the end whatever removeTree did.
class TreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-run-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    outside_ = base_ + "/outside";
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    std::ofstream(outside_ + "/precious") << "keep me";
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + base_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  bool exists(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
  }
  std::string base_, outside_;
};

TEST_F(TreeTest, RemovesATreeWithoutFollowingItsSymlinks) {
  std::string run = base_ + "/run";
  ASSERT_EQ(::mkdir(run.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((run + "/state").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((run + "/state/deeper").c_str(), 0700), 0);
  std::ofstream(run + "/token") << "t";
  std::ofstream(run + "/state/deeper/f") << "f";
  // Planted by the proxy user: links to a directory and to a file of someone else's.
  ASSERT_EQ(::symlink(outside_.c_str(), (run + "/dirlink").c_str()), 0);
  ASSERT_EQ(::symlink((outside_ + "/precious").c_str(), (run + "/state/filelink").c_str()), 0);
  removeTree(run);
  EXPECT_FALSE(exists(run)) << "expected " << run << " to be removed";
  EXPECT_TRUE(exists(outside_ + "/precious")) << "a symlink's target was removed";
}

TEST_F(TreeTest, ARunDirectorySwappedForASymlinkIsNotFollowed) {
  // The proxy user owns the run directory's entry in /tmp and can put a symlink in its place.
  std::string run = base_ + "/run";
  ASSERT_EQ(::symlink(outside_.c_str(), run.c_str()), 0);
  removeTree(run);
  EXPECT_TRUE(exists(outside_ + "/precious")) << "removeTree followed the symlink at the top";
  EXPECT_FALSE(exists(run)) << "expected the symlink itself to be removed";
}

}  // namespace
}  // namespace weft::workload
