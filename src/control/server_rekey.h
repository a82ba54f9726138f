#pragma once
// `weft server rekey`: changes the CA key-encryption key of a stopped server's data directory
// (docs/ca.md, "Changing the KEK"; the mechanism is control/ca/rekey.h).

namespace weft::control {

// Runs `weft server rekey` with the arguments after "server" (argv[0] is "rekey"). Answers the
// exit code: 0 done, 1 failed (nothing changed), 2 usage. Prints --help.
int runRekey(int argc, char** argv);

}  // namespace weft::control
