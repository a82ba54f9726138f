#pragma once
// The `weft intercept` and `weft run` commands, called by the CLI's hooks (src/cli/commands.cc)
// with the flag values already split out.

#include <ostream>
#include <string>

#include "workload/intercept.h"
#include "workload/run.h"

namespace weft::workload {

// `weft intercept install|remove|status`. Answers the exit code: 0 done; 1 failed (iptables
// refused, or `status --id` of an id that is not installed); 2 usage error.
int interceptCommand(const std::string& sub, const InterceptFlags& flags, bool id_given,
                     std::ostream& out, std::ostream& err);

// `weft run`: checks the flags (exit 2 with one line on `err` when they are wrong), then runs
// the workload and answers its exit code (runWorkload).
int runCommand(const RunFlags& flags, std::ostream& err);

}  // namespace weft::workload
