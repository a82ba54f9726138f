#pragma once
// `weft demo up|down|status`: the reference scenario — App Mesh's cross-VPC walkthrough with
// TLS — brought up on this machine from examples/crossvpc (docs/walkthrough.md):
//
//   1. the Crystal backend built (apps/crystal/build.sh) into the cache directory;
//   2. the networks: `weft lab up lab.yaml` (VPC1 with the frontend's three hosts and the
//      Crystal tasks, VPC2 with the Node.js tasks, a peering);
//   3. the control plane: `weft server`, its API on loopback, its config stream and DNS where
//      each network's endpoint reaches it;
//   4. the networks registered, then the stacks in the walkthrough's order: CA, registry (the
//      private namespace attached to VPC1, VPC2 associated through the Route 53 API), mesh;
//   5. every host's app with its sidecar: `weft lab exec H -- weft run ... -- APP`;
//   6. the ingress gateway: weft-proxy for the virtual gateway, in the root namespace;
//   7. the page through the gateway, waited for until all three lines answer.
//
// Every step is a `weft` command (run as a child process of this one, logged under the state
// directory), so the demo does nothing a user could not type; docs/walkthrough.md lists them.
// State: <state-dir>/demo.json (state.h), journaled before each process is started, so `down`
// works after a failed or crashed `up`. Not thread-safe; one Demo per command, serialised by a
// lock file in the state directory.

#include <atomic>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "common/result.h"
#include "demo/state.h"
#include "lab/system.h"

namespace weft::demo {

inline constexpr std::string_view kDefaultStateDir = "/run/weft/demo";
inline constexpr std::string_view kDefaultCacheDir = "/var/cache/weft/demo";
inline constexpr std::string_view kMesh = "appmesh-workshop";
inline constexpr std::string_view kGateway = "ingress-gw";
inline constexpr std::string_view kDomain = "appmeshworkshop.hosted.local";
inline constexpr int kAppPort = 3000;

struct DemoOptions {
  std::string state_dir;               // "" = kDefaultStateDir
  std::string name;                    // the lab's name and the stacks' prefix; "" = "crossvpc"
  std::string examples_dir;            // examples/crossvpc; "" = found from the binary or the cwd
  std::string topology;                // the lab file; "" = <examples_dir>/lab.yaml
  std::string cache_dir;               // where the Crystal backend is built; "" = kDefaultCacheDir
  std::string api = "127.0.0.1:7080";  // weft server --api (port 0: a free one)
  int stream_port = 7081;              // the config stream, on 0.0.0.0 (0: a free one)
  int dns_port = 7053;                 // the mesh DNS on 127.0.0.1 (0: a free one)
  int gateway_port = 8080;             // the ingress gateway's listener
  std::string app_user = "nobody";     // weft run --app-user ("" = root)
  std::chrono::seconds timeout{300};   // for the page to answer once everything runs
  std::string weft_bin;                // "" = this process's executable
  std::string proxy_bin;               // "" = weft-proxy beside weft_bin
};

// A lab host and the app `up` runs on it (from its name: frontend-*, crystal-*, nodejs-*).
struct HostPlan {
  std::string host;
  std::string node;     // the virtual node: frontend, crystal, nodejs ("" = no app)
  std::string network;  // the lab network
  std::string address;
  std::string zone;
};

// The virtual node a host of this name runs: "frontend-2" -> "frontend"; "" for other names.
std::string nodeForHost(std::string_view host);

class Demo {
 public:
  // `out` gets the result (the URL and the page's sample, status tables); `progress` one line
  // per step. `interrupted`, when it becomes true, stops `up` between steps (and its waits) and
  // rolls back.
  Demo(lab::System& sys, DemoOptions options, std::ostream& out, std::ostream& progress,
       const std::atomic<bool>* interrupted = nullptr);

  // Brings the scenario up. On failure (or interruption) removes what it made, keeps the logs,
  // and answers an error naming the step and the log directory.
  Status up();
  // Removes everything `up` made: processes, the lab (namespaces, links, rules), the control
  // plane's data, the state. Succeeds when nothing is left; a demo that is not up is nothing to
  // do. The Crystal build in the cache directory stays.
  Status down();
  // Hosts, processes, proxies and their health; an error when the demo is not up or something
  // in it is not working (the table says what).
  Status status();

  const std::string& stateDir() const { return state_dir_; }

 private:
  struct Ctx;
  Status preflight(Ctx& c);
  Status runUp(Ctx& c);
  Status teardown(DemoState& st, bool keep_logs);
  Status associateVpc(const DemoState& st, const std::string& vpc_id);
  // `quiet`: not written to demo.log (polls).
  Result<lab::CommandOutput> weft(const DemoState& st, const std::vector<std::string>& args,
                                  bool api, bool quiet = false);
  Status checkedWeft(const DemoState& st, const std::vector<std::string>& args, bool api,
                     std::string* out = nullptr);
  Status saveState(const DemoState& st);
  Result<DemoState> loadState();
  bool running(const DemoProcess& p);
  void stopProcesses(DemoState& st, const std::string& role, std::chrono::seconds grace);
  void logLine(const std::string& line);
  bool interrupted() const;
  std::string statePath() const { return state_dir_ + "/demo.json"; }
  std::string logDir() const { return state_dir_ + "/logs"; }

  lab::System& sys_;
  DemoOptions o_;
  std::string state_dir_;
  std::ostream& out_;
  std::ostream& progress_;
  const std::atomic<bool>* interrupted_;
};

}  // namespace weft::demo
