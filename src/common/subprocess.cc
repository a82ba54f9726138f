#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace weft {
namespace {

void closeFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

bool isExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

int64_t nowMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

std::string findExecutable(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return isExecutableFile(name) ? name : "";
  std::string dirs;
  if (const char* p = std::getenv("PATH")) dirs = p;
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    size_t colon = dirs.find(':', pos);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = dirs.substr(pos, colon - pos);
    pos = colon + 1;
    if (dir.empty()) continue;  // an empty PATH entry means "." — never for root's tools
    std::string cand = dir + "/" + name;
    if (isExecutableFile(cand)) return cand;
  }
  return "";
}

std::string formatArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?;&|<>()") == std::string::npos;
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) {
      if (c == '\'')
        out += "'\\''";
      else
        out += c;
    }
    out += '\'';
  }
  return out;
}

Result<CommandResult> runCommand(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout) {
  if (argv.empty()) return makeError("no command to run");
  std::string path = findExecutable(argv[0]);
  if (path.empty())
    return makeError("cannot run " + argv[0] +
                     ": not found (looked in $PATH and /usr/local/sbin, /usr/sbin, /sbin, "
                     "/usr/bin, /bin; scripts/setup.sh installs what weft needs)");
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, exec_pipe[2] = {-1, -1};
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return makeError(std::string("cannot open /dev/null: ") + std::strerror(errno));
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    for (int* p : {out_pipe, err_pipe, exec_pipe}) {
      closeFd(p[0]);
      closeFd(p[1]);
    }
    ::close(devnull);
    return makeError(std::string("cannot make a pipe: ") + std::strerror(e));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    for (int* p : {out_pipe, err_pipe, exec_pipe}) {
      closeFd(p[0]);
      closeFd(p[1]);
    }
    ::close(devnull);
    return makeError("cannot run " + argv[0] + ": fork: " + std::strerror(e));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execv(path.c_str(), cargv.data());
    int e = errno;
    ssize_t ignored = ::write(exec_pipe[1], &e, sizeof e);
    (void)ignored;
    ::_exit(127);
  }
  ::close(devnull);
  closeFd(out_pipe[1]);
  closeFd(err_pipe[1]);
  closeFd(exec_pipe[1]);

  CommandResult result;
  int64_t deadline = nowMs() + timeout.count();
  bool timed_out = false;
  while (out_pipe[0] >= 0 || err_pipe[0] >= 0) {
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int64_t left = deadline - nowMs();
    if (left <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        closeFd(i == 0 ? out_pipe[0] : err_pipe[0]);
        continue;
      }
      (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(r));
    }
  }
  closeFd(out_pipe[0]);
  closeFd(err_pipe[0]);
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec_pipe[0], &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  closeFd(exec_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == static_cast<ssize_t>(sizeof exec_errno))
    return makeError("cannot run " + path + ": " + std::strerror(exec_errno));
  if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exit_code = 128 + WTERMSIG(status);
  if (timed_out) {
    result.timed_out = true;
    result.err += "(killed: still running after " + std::to_string(timeout.count()) + " ms)";
  }
  return result;
}

}  // namespace weft
