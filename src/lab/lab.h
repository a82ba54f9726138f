#pragma once
// The lab's operations: up, down, status, exec, peer and unpeer (docs/lab.md). Everything goes
// through a System (commands, files, processes), and registration with `weft server` through
// a NetworkRegistrar, both injected, so the whole sequence is unit-tested with fakes.
//
// Not thread-safe; one Lab per command. Concurrent commands on one lab are serialised by a
// lock file beside its state file.

#include <atomic>
#include <functional>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "lab/state.h"
#include "lab/system.h"
#include "lab/topology.h"

namespace weft::lab {

inline constexpr std::string_view kDefaultStateDir = "/run/weft/lab";

struct RegisteredNetwork {
  std::string id;
  std::string name;
  std::vector<std::string> cidrs;
};

// The control plane's network API (`weft network create|list|delete`).
class NetworkRegistrar {
 public:
  virtual ~NetworkRegistrar() = default;
  virtual std::string endpoint() const = 0;  // for messages: "http://127.0.0.1:7080"
  virtual Result<std::vector<RegisteredNetwork>> list() = 0;
  virtual Result<std::string> create(const std::string& name, const std::string& cidr) = 0;
  // An Error with code 404 when the server has no such network.
  virtual Status remove(const std::string& id) = 0;
};

// Makes the registrar when one is needed (only then are the endpoint and credentials resolved).
using RegistrarFactory = std::function<Result<std::unique_ptr<NetworkRegistrar>>()>;

class Lab {
 public:
  // `progress` gets one line per step ("creating network vpc1 (198.18.0.0/16)...").
  Lab(System& system, std::string state_dir, std::ostream& progress);

  // Builds `t`. Refuses a lab that is already up, namespaces or interfaces that already exist,
  // and networks overlapping another lab's in the same state directory. With
  // `register_networks`, the server must answer before anything is built. The state file is
  // written before the first object and each object is journaled before it is created; when a
  // step fails (or `interrupted` becomes true) everything made so far is removed again and the
  // error names the failed command and its stderr.
  Status up(const Topology& t, const std::string& topology_file, bool register_networks,
            const RegistrarFactory& registrar, const std::atomic<bool>* interrupted = nullptr);

  // Removes everything lab `name` made: processes in its namespaces, registrations (unless
  // `keep_networks`), iptables rules, links, namespaces, resolv.conf files; then sweeps for
  // anything carrying its names (the root interfaces' tag, the iptables comment, its
  // namespaces) even without a state file. Succeeds only when nothing is left (then the state
  // file is removed); otherwise the error lists what is left and the state file stays.
  Status down(const std::string& name, const RegistrarFactory& registrar, bool keep_networks);

  // Registers the networks of a running lab that are not registered yet (for a server started
  // after `up`, e.g. to listen on the endpoint addresses, which exist only once the lab is up).
  // `down` deregisters them.
  Status registerNetworks(const std::string& name, const RegistrarFactory& registrar);

  Status peer(const std::string& name, const std::string& a, const std::string& b);
  Status unpeer(const std::string& name, const std::string& a, const std::string& b);

  // The lab to act on: `given` if non-empty, else the only lab in the state directory.
  Result<std::string> pickLab(const std::string& given);
  Result<LabState> load(const std::string& name);
  // load(), refusing a state file whose name or entries are not this lab's layout (what `down`
  // checks entry by entry): for the commands that act on what the state file says.
  Result<LabState> loadTrusted(const std::string& name);
  // Removes <state-dir>/up.lock when no lab is left in the state directory and no other `up`
  // holds it, so a state directory of labs all brought down is empty.
  void removeUpLockIfLast();
  std::string statePath(const std::string& name) const;

  // `weft lab status`: JSON (one object, documented in docs/lab.md) or a table.
  std::string statusJson(const LabState& s);
  std::string statusTable(const LabState& s);

  // Replaces this process with `command` run in host `target`'s namespace (or, when `target`
  // names a network, its router's), through `ip netns exec` (which also mounts the host's
  // resolv.conf), with WEFT_LAB_* variables describing the host. Answers only on failure.
  Status exec(const std::string& name, const std::string& target,
              const std::vector<std::string>& command);

 private:
  class Session;

  // Labs with a state file in the state directory, by name.
  std::vector<std::string> labsInStateDir();
  // Makes the registrar and checks the server answers; records the server and (before the
  // first registration) the networks it already has in `st`.
  Result<std::unique_ptr<NetworkRegistrar>> connectRegistrar(const RegistrarFactory& factory,
                                                             LabState& st);
  // The namespaces of every other lab in the state directory (never swept as this lab's).
  std::set<std::string> claimedByOthers(const std::string& name);

  System& sys_;
  std::string state_dir_;
  std::ostream& progress_;
};

}  // namespace weft::lab
