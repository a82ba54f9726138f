#pragma once
// The `weft` command line (every subcommand but `server`, which cmd/weft.cc hands to
// weft::control::runServer). See docs/cli.md for the commands and flags.

#include <functional>
#include <memory>
#include <ostream>

#include "cli/client.h"

namespace weft::cli {

struct CliEnv {
  std::ostream& out;
  std::ostream& err;
  EnvLookup env = processEnv();
  // Makes the transport for a resolved configuration; tests plug in an in-process one.
  std::function<std::unique_ptr<Transport>(const ClientConfig&)> transport =
      [](const ClientConfig& c) { return std::make_unique<HttpTransport>(c); };
};

// Runs `weft <args>` (argv[0] is the program name). Answers the exit code: 0 on success, 1 when
// the command failed (one line on `err`), 2 for a usage error.
int runCli(int argc, const char* const* argv, CliEnv& env);

// The top-level usage text (`weft --help`).
const char* topLevelHelp();

}  // namespace weft::cli
