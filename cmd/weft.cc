// `weft`: the control plane (`weft server`) and the command line that drives it.
#include <iostream>
#include <string_view>

#include "cli/commands.h"
#include "control/server.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "server") {
    return weft::control::runServer(argc - 1, argv + 1);
  }
  weft::cli::CliEnv env{std::cout, std::cerr};
  return weft::cli::runCli(argc, argv, env);
}
