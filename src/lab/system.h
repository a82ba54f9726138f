#pragma once
// The lab's one seam to the machine: running commands (ip, iptables, sysctl), files, processes.
// RealSystem does it for real (fork/exec with an argv, never a shell); unit tests use a fake
// that records the commands and keeps files in memory.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/subprocess.h"

namespace weft::lab {

// A finished command (a timed-out one is killed and says so in err).
using CommandOutput = CommandResult;

using EnvList = std::vector<std::pair<std::string, std::string>>;

class System {
 public:
  virtual ~System() = default;

  // Runs argv[0] (looked up in PATH) with the rest as arguments, stdin from /dev/null, and
  // waits for it; answers its exit code and what it wrote. An Error only when it could not be
  // started at all.
  virtual Result<CommandOutput> run(const std::vector<std::string>& argv) = 0;

  // Files. readFile's Error has code ENOENT when the file does not exist. writeFile replaces
  // the file atomically (readers never see half of it). removeFile/removeDir succeed when the
  // path is already absent; removeDir fails on a directory that is not empty.
  virtual Result<std::string> readFile(const std::string& path) = 0;
  virtual Status writeFile(const std::string& path, std::string_view data, unsigned mode) = 0;
  virtual Status removeFile(const std::string& path) = 0;
  virtual Status makeDirs(const std::string& path, unsigned mode) = 0;
  virtual Status removeDir(const std::string& path) = 0;
  virtual bool exists(const std::string& path) = 0;
  // Entry names (without "." and ".."); empty when the directory does not exist.
  virtual std::vector<std::string> listDir(const std::string& path) = 0;

  // Takes an exclusive lock on `path` (created if needed), held until this System is
  // destroyed; fails at once, naming the path, when another process holds it. Taking a lock
  // this System holds already succeeds. A lock file may be removed by its holder: a lock taken
  // on a file no longer at `path` is taken again on the one there.
  virtual Status lock(const std::string& path) = 0;
  // The same lock, but waits while another process holds it.
  virtual Status lockWait(const std::string& path) = 0;

  // Starts argv detached (its own session and process group), stdin from /dev/null, stdout
  // and stderr appended to `log_path`, with `env` added to this process's environment.
  virtual Result<int> spawn(const std::vector<std::string>& argv, const EnvList& env,
                            const std::string& log_path) = 0;
  // Replaces this process with argv (PATH lookup), with `env` added; answers only on failure.
  virtual Status execReplace(const std::vector<std::string>& argv, const EnvList& env) = 0;
  virtual bool alive(int pid) = 0;
  virtual void signal(int pid, int sig) = 0;

  virtual void pause(std::chrono::milliseconds d) = 0;
  virtual int64_t unixSeconds() = 0;
};

std::unique_ptr<System> makeRealSystem();

}  // namespace weft::lab
