#pragma once
// `weft server`: the control plane process. Opens the store in --data-dir, makes the admin
// credentials on first start, serves the HTTP API (App Mesh, stacks, credentials) on --api, and
// stops cleanly on SIGTERM/SIGINT.

#include <string>

#include "common/result.h"

namespace weft::control {

// Takes an exclusive flock on DIR/lock (writing this pid into it) and answers its fd; the lock
// lasts until the fd is closed or the process ends. Fails, naming the holder's pid, when another
// process (a running server, a `weft server rekey`) holds it.
Result<int> lockDataDir(const std::string& dir);

// Runs `weft server` with the arguments after "server" (argv[0] is "server"). Answers the exit
// code. Prints --help.
int runServer(int argc, char** argv);

}  // namespace weft::control
