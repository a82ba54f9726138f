#pragma once
// The workload commands' seam to external programs (iptables): an interface so that the
// interception logic can be tested against a fake. Running, finding and formatting commands is
// common/subprocess.h's.

#include <string>
#include <vector>

#include "common/result.h"
#include "common/subprocess.h"

namespace weft::workload {

using Argv = std::vector<std::string>;

// Runs commands to completion.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs argv as weft::runCommand does. An error when the program could not be started or ran
  // past the timeout; a program that ran and failed is a CommandResult with a non-zero
  // exit_code.
  virtual Result<CommandResult> run(const Argv& argv) = 0;
};

// The real one: weft::runCommand.
class ProcessCommandRunner : public CommandRunner {
 public:
  Result<CommandResult> run(const Argv& argv) override;
};

}  // namespace weft::workload
