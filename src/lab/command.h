#pragma once
// `weft lab ...`: the subcommands on top of Lab, given arguments the CLI has parsed. The CLI
// (src/cli/commands.cc) only maps its flags into a LabInvocation and supplies the registrar.

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "lab/lab.h"

namespace weft::lab {

struct LabInvocation {
  // After `lab`: the subcommand and its arguments. For exec, everything after "--" is the
  // command (the "--" itself included, so the split is known).
  std::vector<std::string> positional;
  std::string name;                // --name
  std::string state_dir;           // --state-dir ("" = $WEFT_LAB_STATE_DIR, else /run/weft/lab)
  std::string output;              // -o table|json
  bool register_networks = false;  // --register
  bool keep_networks = false;      // --keep-networks
};

struct LabIo {
  std::ostream& out;
  std::ostream& err;
  std::function<std::optional<std::string>(const char*)> env;
  RegistrarFactory registrar;
  System* system = nullptr;  // null: the real machine
};

// Runs one subcommand. Answers the exit code: 0 done, 1 failed (the reason on `err`), 2 usage;
// for exec, the command's own exit code (exec does not return when it works).
int runLabCommand(const LabInvocation& inv, LabIo& io);

// `weft lab --help`.
const char* labHelp();

}  // namespace weft::lab
