#pragma once
// `weft server`: the control plane process. Opens the store in --data-dir, makes the admin
// credentials on first start, serves the HTTP API (App Mesh, stacks, credentials) on --api, and
// stops cleanly on SIGTERM/SIGINT.

namespace weft::control {

// Runs `weft server` with the arguments after "server" (argv[0] is "server"). Answers the exit
// code. Prints --help.
int runServer(int argc, char** argv);

}  // namespace weft::control
