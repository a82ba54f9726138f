#pragma once
// A lab's state file (<state-dir>/<lab>.json): the resolved topology and a journal of every
// object the lab made, each entry written BEFORE the object is created, so that `down` can
// remove everything even after `up` crashed half-way. The JSON format is documented in
// docs/lab.md; other tools (weft run --host) read it.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "lab/topology.h"

namespace weft::lab {

enum class ObjectKind {
  kIptablesRule,  // chain + args, in the root namespace
  kNamespace,     // name
  kLink,          // ns ("" = root) + name; deleting either end of a veth deletes both
  kFile,          // path
  kDirectory,     // path (removed only when empty)
  kRegistration,  // a network registered with weft server: name, args {cidr}, id ("" until known)
  kProcess,       // a `run:` process: name (host), ns, pid (0 until started), path (its log)
};

std::string_view objectKindName(ObjectKind k);

struct LabObject {
  ObjectKind kind = ObjectKind::kNamespace;
  std::string ns;
  std::string name;
  std::string path;
  std::string chain;
  std::vector<std::string> args;
  std::string id;
  int pid = 0;

  bool operator==(const LabObject&) const = default;
};

struct LabState {
  static constexpr int kVersion = 1;
  std::string name;
  std::string tag;            // labTag(name)
  std::string topology_file;  // as given to `up`
  int64_t created_at = 0;     // Unix seconds
  bool complete = false;      // `up` finished
  Topology topology;          // peerings follow `peer`/`unpeer`
  std::string server;         // the weft server's endpoint when networks were registered
  // Network ids the server had before `up` registered any: a registration journaled without an
  // id (a crash between the request and its answer) is found again as a network of the same
  // name and CIDR that is not among these.
  std::vector<std::string> preexisting_networks;
  std::vector<LabObject> objects;  // in creation order
};

std::string stateToJson(const LabState& s);
Result<LabState> parseState(std::string_view text);

}  // namespace weft::lab
