#include "lab/system.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/file_util.h"

namespace weft::lab {

namespace {

// A command still running after this is killed. ip and iptables finish in milliseconds; the
// demo also runs the Crystal backend's build through run() (a minute or more on a busy
// machine; build.sh bounds the compiler itself).
constexpr auto kCommandTimeout = std::chrono::minutes(20);

std::vector<char*> cArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// In a forked child before exec: every fd from 3 up becomes close-on-exec, so the program
// inherits only 0-2, not fds this process opened without O_CLOEXEC or inherited itself (the
// exec-status pipe, already close-on-exec, keeps working until the exec). Async-signal-safe.
void closeInheritedFdsOnExec() {
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  struct rlimit rl {};
  rlim_t max = 65536;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max) max = rl.rlim_cur;
  for (int fd = 3; fd < static_cast<int>(max); ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// In a forked child: reports errno on `fd` (close-on-exec, so an exec that works closes it
// unwritten) and exits.
[[noreturn]] void childFail(int fd) {
  int e = errno;
  [[maybe_unused]] ssize_t n = ::write(fd, &e, sizeof e);
  ::_exit(127);
}

// Reads the errno a child wrote before failing to exec, or 0 when the exec worked.
int childStartError(int fd) {
  int e = 0;
  ssize_t n;
  do {
    n = ::read(fd, &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof e) ? e : 0;
}

class RealSystem final : public System {
 public:
  ~RealSystem() override {
    for (int fd : locks_) ::close(fd);
  }

  Result<CommandOutput> run(const std::vector<std::string>& argv) override {
    return runCommand(argv, kCommandTimeout);
  }

  Result<std::string> readFile(const std::string& path) override { return weft::readFile(path); }

  Status writeFile(const std::string& path, std::string_view data, unsigned mode) override {
    return writeFileAtomically(path, data, mode);
  }

  Status removeFile(const std::string& path) override {
    if (::unlink(path.c_str()) == 0 || errno == ENOENT) return {};
    return makeError("cannot remove " + path + ": " + std::strerror(errno));
  }

  Status makeDirs(const std::string& path, unsigned mode) override {
    for (size_t i = 1; i <= path.size(); ++i) {
      if (i != path.size() && path[i] != '/') continue;
      std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), mode) != 0 && errno != EEXIST)
        return makeError("cannot create directory " + part + ": " + std::strerror(errno));
    }
    return {};
  }

  Status removeDir(const std::string& path) override {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return {};
    return makeError("cannot remove directory " + path + ": " + std::strerror(errno));
  }

  bool exists(const std::string& path) override {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
  }

  std::vector<std::string> listDir(const std::string& path) override {
    std::vector<std::string> out;
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return out;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
    return out;
  }

  Status lock(const std::string& path) override { return takeLock(path, LOCK_NB); }
  Status lockWait(const std::string& path) override { return takeLock(path, 0); }

  // Lock files may be removed by whoever holds them (`down` removes its lab's): a lock taken on
  // a file that is no longer at `path` is let go and taken again on the one that is.
  Status takeLock(const std::string& path, int flags) {
    if (std::find(held_.begin(), held_.end(), path) != held_.end()) return {};  // ours already
    for (;;) {
      // O_NOFOLLOW: a symlink planted at the lock's path is refused, not followed (as root).
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0) return makeError("cannot open lock file " + path + ": " + std::strerror(errno));
      int rc;
      do {
        rc = ::flock(fd, LOCK_EX | flags);
      } while (rc != 0 && errno == EINTR);
      if (rc != 0) {
        int e = errno;
        ::close(fd);
        if (e == EWOULDBLOCK)
          return makeError("another `weft lab` command is working on this lab (it holds " + path +
                           "); wait for it to finish");
        return makeError("cannot lock " + path + ": " + std::strerror(e));
      }
      struct stat held {
      }, now{};
      if (::fstat(fd, &held) == 0 && ::lstat(path.c_str(), &now) == 0 &&
          held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
        locks_.push_back(fd);
        held_.push_back(path);
        return {};
      }
      ::close(fd);  // removed (or replaced) while we waited: lock the file now there
    }
  }

  Result<int> spawn(const std::vector<std::string>& argv, const EnvList& env,
                    const std::string& log_path) override {
    if (argv.empty()) return makeError("empty command");
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) return makeError("cannot open " + log_path + ": " + std::strerror(errno));
    int status_pipe[2];
    if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
      int e = errno;
      ::close(log);
      return makeError(std::strerror(e));
    }
    std::vector<char*> args = cArgv(argv);
    pid_t pid = ::fork();
    if (pid < 0) {
      int e = errno;
      ::close(log);
      ::close(status_pipe[0]);
      ::close(status_pipe[1]);
      return makeError("cannot fork to run " + argv[0] + ": " + std::strerror(e));
    }
    if (pid == 0) {
      ::setsid();
      int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(log, 1) < 0 || ::dup2(log, 2) < 0)
        childFail(status_pipe[1]);
      closeInheritedFdsOnExec();
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      ::signal(SIGPIPE, SIG_DFL);
      ::execvp(args[0], args.data());
      childFail(status_pipe[1]);
    }
    ::close(log);
    ::close(status_pipe[1]);
    if (int e = childStartError(status_pipe[0]); e != 0) {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      return makeError("cannot run " + argv[0] + ": " + std::strerror(e));
    }
    return static_cast<int>(pid);
  }

  Status execReplace(const std::vector<std::string>& argv, const EnvList& env) override {
    if (argv.empty()) return makeError("empty command");
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args = cArgv(argv);
    ::execvp(args[0], args.data());
    return makeError("cannot run " + argv[0] + ": " + std::strerror(errno));
  }

  bool alive(int pid) override {
    if (pid <= 0) return false;
    // A child of ours that exited is a zombie until reaped: reap it so it reads as gone.
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    if (::kill(pid, 0) != 0 && errno != EPERM) return false;
    // Someone else's zombie (init may be slow to reap, or not reap at all in a container) is
    // as good as gone.
    auto stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return false;
    size_t paren = stat->rfind(')');
    return !(paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z');
  }

  void signal(int pid, int sig) override {
    if (pid > 0) ::kill(pid, sig);
  }

  void pause(std::chrono::milliseconds d) override { std::this_thread::sleep_for(d); }

  int64_t unixSeconds() override { return static_cast<int64_t>(::time(nullptr)); }

 private:
  std::vector<int> locks_;
  std::vector<std::string> held_;  // the paths of locks_
};

}  // namespace

std::unique_ptr<System> makeRealSystem() { return std::make_unique<RealSystem>(); }

}  // namespace weft::lab
