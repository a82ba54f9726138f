#pragma once
// `weft run`: an app and its sidecar started, watched and stopped together, as an ECS task with
// an App Mesh proxy configuration runs them (docs/workloads.md):
//
//   1. interception installed (unless disabled); without app ports given, the inbound rules are
//      added once the proxy is ready, for the ports of the virtual node's listeners;
//   2. weft-proxy started in agent mode as the proxy user (uid 1337 by default), its stderr
//      passed through to ours;
//   3. the app started only once the proxy's admin /ready answers 200;
//   4. SIGTERM, SIGINT and SIGHUP forwarded to the app's process group (after SIGTERM or
//      SIGINT, SIGKILL once the stop timeout has passed);
//   5. when the app exits: what is left of its processes stopped, the proxy sent SIGTERM so it
//      drains (and says Goodbye to the control plane), waited for (bounded, then SIGKILL),
//      the interception removed, the private run directory removed, and the app's exit code
//      returned (128+N when a signal N ended it).
//
// If the proxy fails to start, exits, or is not ready in time, the app is stopped (or never
// started), everything is cleaned up, and the error says why with the proxy's last stderr lines.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/result.h"
#include "workload/command.h"
#include "workload/intercept.h"

namespace weft::workload {

// A user to run a process as.
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (empty: none)
  std::string shown;          // for messages: "1337", "nobody (65534)"
};

// NAME, UID or UID:GID (NAME:GROUP too). A name takes its passwd entry's group and its
// supplementary groups; a bare UID takes the passwd entry's group if there is one, else the GID
// equal to the UID, and no supplementary groups.
Result<Credentials> resolveUser(const std::string& spec);

// "30s", "500ms", "2m", "1h", or a number of seconds.
Result<std::chrono::milliseconds> parseDuration(const std::string& text, const std::string& flag);

struct RunOptions {
  std::string resource;       // mesh/M/virtualNode/N or its ARN
  std::string control_plane;  // HOST:PORT[,HOST:PORT...]
  std::string token_file;
  std::string ca_file;  // required unless insecure
  bool insecure = false;
  std::string proxy_path;  // empty: weft-proxy next to the running binary
  Credentials proxy_user;
  std::optional<Credentials> app_user;  // empty: ours
  bool intercept = true;
  InterceptConfig intercept_config;  // ignored_uid/gid are the proxy user's
  std::string admin = "127.0.0.1:0";
  std::string state_dir;  // empty: inside the private run directory (removed at the end)
  std::vector<std::string> app_addresses;
  std::string host;
  std::string network;
  std::string proxy_log_level;
  std::chrono::milliseconds ready_timeout{30'000};
  std::chrono::milliseconds stop_timeout{20'000};
  std::vector<std::string> command;  // the app: argv
};

// Flag values as typed (empty: not given), for makeRunOptions.
struct RunFlags {
  std::string resource, control_plane, token_file, ca_file, proxy, proxy_user, app_user;
  std::string admin, state_dir, host, network, proxy_log_level, ready_timeout, stop_timeout;
  std::vector<std::string> app_addresses;
  bool insecure = false;
  bool no_intercept = false;
  InterceptFlags intercept;  // app ports, proxy ports, egress exemptions, id
  std::vector<std::string> command;
};

// Checks the flags and fills the defaults: the resource from $APPMESH_RESOURCE_ARN
// (env("APPMESH_RESOURCE_ARN")), the interception id "run<pid>", the interception's ignored
// uid from the proxy user. `env` answers nullptr for unset variables. Errors name the flag.
Result<RunOptions> makeRunOptions(const RunFlags& flags,
                                  const std::function<const char*(const char*)>& env);

// weft-proxy's argv (argv[0] = proxy_path) for the options, with the run directory's copies of
// the token and CA files and its ports file.
Argv proxyArgv(const RunOptions& options, const std::string& proxy_path,
               const std::string& token_file, const std::string& ca_file,
               const std::string& ports_file, const std::string& state_dir);

// The app ports of a sidecar: the ports of the endpoints of its inbound (cds_ingress_*)
// clusters in weft-proxy's admin /clusters text, in order, without duplicates.
std::vector<uint16_t> appPortsFromClusters(const std::string& clusters);

// The admin port from a weft-proxy --ports-file ({"admin": P, ...}); nullopt if absent.
std::optional<int> adminPortFromPortsFile(const std::string& contents);

// Removes the directory tree at `path` as root may do over a tree another user owns (the run
// directory belongs to the proxy user): no symlink is ever followed, at the top or below, and a
// symlink swapped in for a checked entry at any moment is removed as a link, never through.
// A `path` that is not a directory is unlinked itself. Best effort, no error.
void removeTree(const std::string& path);

// Runs the workload to its end (see the top of this file). Progress lines and the proxy's
// stderr go to `err`. Answers the app's exit code, or 1 when the workload could not run (with
// "weft run: ..." lines saying why). Must be called from a single-threaded process that exits
// right after: it blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD (and leaves them blocked), ignores
// SIGPIPE, makes the process a child subreaper and reaps every child.
int runWorkload(const RunOptions& options, std::ostream& err);

}  // namespace weft::workload
