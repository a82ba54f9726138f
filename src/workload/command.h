#pragma once
// Running external programs (iptables) by argv, never through a shell, and finding them.

#include <string>
#include <vector>

#include "common/result.h"

namespace weft::workload {

using Argv = std::vector<std::string>;

// What a finished command left: its exit status (0..255; 128+N when killed by signal N) and
// everything it wrote.
struct CommandResult {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Runs commands to completion. An interface so that the interception logic can be tested
// against a fake; the real one is ProcessCommandRunner.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs argv (argv[0] is a path or a name looked up like findExecutable) with stdin from
  // /dev/null. An error only when the program could not be started at all; a program that ran
  // and failed is a CommandResult with a non-zero exit_code.
  virtual Result<CommandResult> run(const Argv& argv) = 0;
};

// fork + execv, stdout and stderr captured through pipes. Synchronous; not thread-safe with
// respect to SIGCHLD handling by others (it waits for its own child's pid only).
class ProcessCommandRunner : public CommandRunner {
 public:
  Result<CommandResult> run(const Argv& argv) override;
};

// `name` if it contains a '/', else the first executable `dir/name` for dir in $PATH and then
// /usr/local/sbin, /usr/sbin, /sbin, /usr/bin, /bin (root's tools are often outside a user's
// PATH). Empty when none is found.
std::string findExecutable(const std::string& name);

// argv as one line for messages: words joined by spaces, a word with spaces or quotes (or an
// empty one) in single quotes. For humans only; nothing ever parses it back.
std::string formatArgv(const Argv& argv);

}  // namespace weft::workload
