#pragma once
// `weft demo up|down|status`: the subcommands on top of Demo, given arguments the CLI has
// parsed. The CLI (src/cli/commands.cc) only maps its flags into a DemoInvocation.

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace weft::demo {

struct DemoInvocation {
  std::vector<std::string> positional;  // after `demo`: the subcommand
  std::string state_dir;                // --state-dir ("" = $WEFT_DEMO_STATE_DIR, else default)
  std::string name;                     // --name
  std::string examples_dir;             // --examples-dir
  std::string topology;                 // --topology
  std::string cache_dir;                // --cache-dir
  std::string api;                      // --api
  std::string stream_port;              // --stream-port
  std::string dns_port;                 // --dns-port
  std::string gateway_port;             // --gateway-port
  std::string app_user;                 // --app-user (set: use it, "" included)
  bool app_user_set = false;
  std::string timeout;  // --timeout (seconds, or 90s / 5m)
};

struct DemoIo {
  std::ostream& out;
  std::ostream& err;
  std::function<std::optional<std::string>(const char*)> env;
};

// Runs one subcommand: 0 done, 1 failed (the reason on `err`), 2 usage.
int runDemoCommand(const DemoInvocation& inv, DemoIo& io);

// `weft demo --help`.
const char* demoHelp();

}  // namespace weft::demo
