#include "workload/command.h"

namespace weft::workload {

Result<CommandResult> ProcessCommandRunner::run(const Argv& argv) {
  auto r = runCommand(argv);
  if (r && r->timed_out) return makeError(formatArgv(argv) + ": " + r->err);
  return r;
}

}  // namespace weft::workload
