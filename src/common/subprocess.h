#pragma once
// Running external programs (ip, iptables, sysctl, ...) to completion: by argv, never through a
// shell, stdin from /dev/null, stdout and stderr captured. Used by the lab and the workload
// commands; the data plane never runs programs.

#include <chrono>
#include <string>
#include <vector>

#include "common/result.h"

namespace weft {

// What a finished command left.
struct CommandResult {
  int exit_code = 0;  // 0..255; 128+N when killed by signal N
  std::string out;
  std::string err;
  bool timed_out = false;  // killed (SIGKILL) for running past the timeout; err says so
};

// Runs argv (argv[0] a path, or a name looked up as findExecutable does) and waits for it, at
// most `timeout` (then kills it). An Error only when the program could not be started at all;
// a program that ran and failed is a CommandResult with a non-zero exit_code. Synchronous;
// waits for its own child's pid only. The child starts with no blocked signals and SIGPIPE at
// its default; every fd of this process is close-on-exec except the three it is given.
Result<CommandResult> runCommand(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(60));

// `name` if it contains a '/' (and is an executable file), else the first executable
// `dir/name` for dir in $PATH and then /usr/local/sbin, /usr/sbin, /sbin, /usr/bin, /bin (root's
// tools are often outside a user's PATH). Empty when none is found.
std::string findExecutable(const std::string& name);

// argv as one line for messages: words joined by spaces, a word with spaces, quotes or shell
// characters (or an empty one) in single quotes. For humans only; nothing parses it back.
std::string formatArgv(const std::vector<std::string>& argv);

}  // namespace weft
