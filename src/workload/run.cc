#include "workload/run.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "common/file_util.h"
#include "common/text.h"

extern char** environ;

namespace weft::workload {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kStderrTailLines = 15;
constexpr milliseconds kReadyProbeInterval{100};

bool allDigits(const std::string& s) {
  return !s.empty() && s.size() <= 10 && s.find_first_not_of("0123456789") == std::string::npos;
}

std::string errnoText(int e) { return std::strerror(e); }

// mesh/M/virtualNode/N (or virtualGateway) with its ARN prefix removed; "" when malformed.
std::string resourcePath(const std::string& r) {
  std::string path = r;
  if (r.rfind("arn:", 0) == 0) {
    // arn:PARTITION:appmesh:REGION:ACCOUNT:mesh/M/virtualNode/N
    size_t pos = 0;
    for (int i = 0; i < 5 && pos != std::string::npos; ++i) pos = r.find(':', pos + 1);
    if (pos == std::string::npos || r.find(":appmesh:") == std::string::npos) return "";
    path = r.substr(pos + 1);
  }
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t s = path.find('/', pos);
    if (s == std::string::npos) s = path.size();
    parts.push_back(path.substr(pos, s - pos));
    pos = s + 1;
  }
  if (parts.size() != 4 || parts[0] != "mesh" || parts[1].empty() || parts[3].empty()) return "";
  return path;
}

std::string exitText(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("was killed by SIG") + (name ? name : std::to_string(WTERMSIG(status)));
  }
  return "stopped";
}

int exitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string seconds(Clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs",
                std::chrono::duration_cast<milliseconds>(d).count() / 1000.0);
  return buf;
}

Result<std::string> readFile(const std::string& path, const std::string& what) {
  auto r = weft::readFile(path);
  if (!r) return makeError(what + ": " + r.error().message, r.error().code);
  return r;
}

Status writeFile(const std::string& path, const std::string& data, mode_t mode, uid_t uid,
                 gid_t gid) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return makeError("cannot write " + path + ": " + errnoText(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return makeError("cannot write " + path + ": " + errnoText(e));
    }
    off += static_cast<size_t>(n);
  }
  bool ok = ::fchmod(fd, mode) == 0 && (::geteuid() != 0 || ::fchown(fd, uid, gid) == 0);
  int e = errno;
  ::close(fd);
  if (!ok) return makeError("cannot set the owner or mode of " + path + ": " + errnoText(e));
  return {};
}

// Whether `uid`/`gid` (supplementary groups aside) can reach and execute `path`: every ancestor
// directory searchable and the file executable by owner, group or others as they apply.
bool executableBy(const std::string& path, uid_t uid, gid_t gid) {
  auto allows = [&](const struct stat& st, mode_t u, mode_t g, mode_t o) {
    if (st.st_uid == uid) return (st.st_mode & u) != 0;
    if (st.st_gid == gid) return (st.st_mode & g) != 0;
    return (st.st_mode & o) != 0;
  };
  struct stat st {};
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    if (::stat(path.substr(0, slash).c_str(), &st) != 0 || !allows(st, S_IXUSR, S_IXGRP, S_IXOTH))
      return false;
  }
  return ::stat(path.c_str(), &st) == 0 && allows(st, S_IXUSR, S_IXGRP, S_IXOTH);
}

constexpr int kMaxTreeDepth = 32;

// Empties the directory open as `dirfd` (taken over and closed). Every step is relative to a
// directory fd and no symlink is followed: an entry is unlinked as it is (a symlink goes, not
// its target), and a subdirectory is entered only through openat(O_NOFOLLOW | O_DIRECTORY), so
// swapping an entry for a symlink between the steps can redirect nothing.
void removeContents(int dirfd, int depth) {
  DIR* d = ::fdopendir(dirfd);
  if (d == nullptr) {
    ::close(dirfd);
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  for (const std::string& name : names) {
    if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno != EISDIR) continue;
    if (depth < kMaxTreeDepth) {
      int sub = ::openat(dirfd, name.c_str(),
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
      if (sub >= 0) removeContents(sub, depth + 1);
    }
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && (errno == ENOTDIR))
      ::unlinkat(dirfd, name.c_str(), 0);  // swapped for a non-directory meanwhile
  }
  ::closedir(d);
}

}  // namespace

void removeTree(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR) ::unlink(path.c_str());  // not a directory: itself
    return;
  }
  removeContents(fd, 0);
  ::rmdir(path.c_str());  // fails (ENOTDIR) if a symlink was put in its place meanwhile
}

namespace {

// The processes whose parent is us (reparented orphans included, as we are a subreaper).
std::vector<pid_t> ourChildren() {
  std::vector<pid_t> out;
  pid_t self = ::getpid();
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (!allDigits(e->d_name)) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses: parse after the last ')'.
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == self && state != "Z") out.push_back(static_cast<pid_t>(std::atol(e->d_name)));
  }
  ::closedir(d);
  return out;
}

// An HTTP/1.1 GET to host:port on a fresh connection; answers (status, body). Short timeouts:
// it is a probe of a local admin listener.
Result<std::pair<int, std::string>> httpGet(const std::string& host, int port,
                                            const std::string& path) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (inet_pton(AF_INET, host.c_str(), &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) == 1) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr) ==
             1) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    return makeError("not an IP address: " + host);
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError("socket: " + errnoText(errno));
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int e = errno;
    ::close(fd);
    return makeError("connect: " + errnoText(e));
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    int e = errno;
    ::close(fd);
    return makeError("send: " + errnoText(e));
  }
  std::string resp;
  char buf[4096];
  while (resp.size() < (1 << 20)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return makeError("no HTTP answer");
  int status = std::atoi(resp.substr(9, 3).c_str());
  size_t body = resp.find("\r\n\r\n");
  return std::make_pair(status, body == std::string::npos ? "" : resp.substr(body + 4));
}

// The value of the first JSON string field `key` in `json` (no unescaping beyond \" and \\).
std::string jsonStringField(const std::string& json, const std::string& key) {
  size_t k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return "";
  size_t colon = json.find(':', k);
  if (colon == std::string::npos) return "";
  size_t q = json.find_first_not_of(" \t\r\n", colon + 1);
  if (q == std::string::npos || json[q] != '"') return "";
  std::string out;
  for (size_t i = q + 1; i < json.size(); ++i) {
    if (json[i] == '\\' && i + 1 < json.size()) {
      out += json[++i];
      continue;
    }
    if (json[i] == '"') break;
    out += json[i];
  }
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

// A child to start: execve(path, argv, environ) after the credential and signal set-up below.
struct SpawnSpec {
  std::string path;
  Argv argv;
  std::optional<Credentials> creds;
  int stdin_fd = -1;   // dup2'd onto 0 when >= 0
  int stderr_fd = -1;  // dup2'd onto 2 when >= 0
};

// What the child reports through the exec pipe when it cannot get to exec.
struct ChildFailure {
  int stage;  // index into kStages
  int err;
};
constexpr const char* kStages[] = {"setgroups", "setgid", "setuid", "prctl(PR_SET_PDEATHSIG)",
                                   "execve"};

// Forks and execs; the child is the leader of a new process group, has a clean signal mask
// and default dispositions, gets SIGTERM if we die, and runs with `creds`. Answers its pid once
// it has exec'd (or why it could not).
Result<pid_t> spawn(const SpawnSpec& spec) {
  std::vector<char*> argv;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<gid_t> groups = spec.creds ? spec.creds->groups : std::vector<gid_t>{};
  // The environment for a child moved to / (below): PWD names the new directory.
  static const std::string kRootPwd = "PWD=/";
  std::vector<char*> env_at_root;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "PWD=", 4) != 0) env_at_root.push_back(*e);
  env_at_root.push_back(const_cast<char*>(kRootPwd.c_str()));
  env_at_root.push_back(nullptr);
  char** envp = environ;
  // The working directory by its absolute path: "." alone passes when only an ancestor is
  // closed to the new user, and programs resolve the absolute path.
  char cwd_buf[PATH_MAX + 1] = {};
  const char* cwd = ::getcwd(cwd_buf, sizeof cwd_buf) ? cwd_buf : ".";
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return makeError("pipe: " + errnoText(errno));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return makeError("fork: " + errnoText(e));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    auto die = [&](int stage) {
      ChildFailure f{stage, errno};
      ssize_t ignored = ::write(pipefd[1], &f, sizeof f);
      (void)ignored;
      ::_exit(127);
    };
    ::setpgid(0, 0);
    for (int s = 1; s < NSIG; ++s)
      if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (spec.stdin_fd >= 0) ::dup2(spec.stdin_fd, 0);
    if (spec.stderr_fd >= 0) ::dup2(spec.stderr_fd, 2);
    closeInheritedFdsOnExec();
    if (spec.creds) {
      if (::setgroups(groups.size(), groups.empty() ? nullptr : groups.data()) != 0) die(0);
      if (::setgid(spec.creds->gid) != 0) die(1);
      if (::setuid(spec.creds->uid) != 0) die(2);
      // A working directory the new user cannot enter (a 0700 tree) breaks programs that look
      // at "." or $PWD (Crystal's runtime does at start): start them in / instead.
      if (::access(cwd, X_OK) != 0) {
        if (::chdir("/") != 0) die(2);
        envp = env_at_root.data();
      }
    }
    // After the credential change, which clears it.
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) die(3);
    if (::getppid() != parent) ::_exit(1);  // we died before the prctl
    ::execve(spec.path.c_str(), argv.data(), envp);
    die(4);
  }
  ::setpgid(pid, pid);  // also here, so that the group exists before we signal it
  ::close(pipefd[1]);
  ChildFailure f{};
  ssize_t n;
  do {
    n = ::read(pipefd[0], &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n == static_cast<ssize_t>(sizeof f)) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::string what = f.stage == 4 ? "cannot execute " + spec.path
                                    : std::string(kStages[f.stage]) +
                                          (spec.creds ? " to " + spec.creds->shown : "");
    return makeError(what + ": " + errnoText(f.err));
  }
  return pid;
}

class Workload {
 public:
  Workload(const RunOptions& o, std::ostream& err)
      : o_(o), err_(err), intercept_(o.intercept_config) {}
  ~Workload() { cleanup(); }

  int run();

 private:
  void say(const std::string& line) { err_ << "weft run: " << line << "\n" << std::flush; }
  int failed(const std::string& why);
  Status prepare();
  Status startProxy();
  // Waits for /ready; answers an error that says why the proxy is not ready.
  Status waitReady();
  // Polls the signal fd and the proxy's stderr for up to `wait`; reaps children.
  void pump(milliseconds wait);
  void readProxyStderr(bool until_eof);
  void reap();
  void forward(int sig);
  // Stops the app's process group and every other child but the proxy.
  void stopAppProcesses();
  void stopProxy();
  void cleanup();
  std::string proxyTail() const;
  std::string probeHost() const;

  // Without --app-ports, the virtual node's listener ports, as the proxy's config lists them:
  // the interception is installed again with them once the proxy is ready.
  Status learnAppPorts();

  const RunOptions& o_;
  std::ostream& err_;
  InterceptConfig intercept_;  // o_.intercept_config, app ports filled in by learnAppPorts
  std::string proxy_path_;
  std::string run_dir_;
  std::string ports_file_;
  int admin_port_ = 0;
  int sigfd_ = -1;
  bool intercepting_ = false;
  ProcessCommandRunner runner_;
  std::unique_ptr<Interceptor> interceptor_;
  pid_t proxy_pid_ = -1;
  std::optional<int> proxy_status_;
  int proxy_err_ = -1;
  std::string proxy_partial_;
  std::deque<std::string> proxy_tail_;
  pid_t app_pid_ = -1;
  std::optional<int> app_status_;
  std::vector<int> signals_;  // received, not yet handled
  bool cleaned_ = false;
};

int Workload::failed(const std::string& why) {
  say(why);
  cleanup();
  return 1;
}

std::string Workload::probeHost() const {
  size_t colon = o_.admin.rfind(':');
  std::string host = colon == std::string::npos ? o_.admin : o_.admin.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "0.0.0.0" || host.empty()) return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

std::string Workload::proxyTail() const {
  if (proxy_tail_.empty() && proxy_partial_.empty()) return " (it wrote nothing on stderr)";
  std::string out = "; its last stderr lines:";
  for (const std::string& l : proxy_tail_) out += "\n  " + l;
  if (!proxy_partial_.empty()) out += "\n  " + proxy_partial_;
  return out;
}

Status Workload::prepare() {
  proxy_path_ = o_.proxy_path;
  if (proxy_path_.empty()) {
    char self[PATH_MAX + 1] = {};
    ssize_t n = ::readlink("/proc/self/exe", self, PATH_MAX);
    if (n <= 0) return makeError("cannot read /proc/self/exe: " + errnoText(errno));
    std::string exe(self, static_cast<size_t>(n));
    proxy_path_ = exe.substr(0, exe.rfind('/') + 1) + "weft-proxy";
  }
  if (::access(proxy_path_.c_str(), X_OK) != 0)
    return makeError("cannot execute the proxy " + proxy_path_ + ": " + errnoText(errno) +
                     " (--proxy PATH)");

  // The run directory: the proxy's copies of the token and CA bundle (it runs as another user
  // and may not read the originals), its ports file and, by default, its state directory.
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/weft-run-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) return makeError("cannot make a run directory: " + errnoText(errno));
  run_dir_ = buf.data();
  if (::geteuid() == 0 && ::chown(run_dir_.c_str(), o_.proxy_user.uid, o_.proxy_user.gid) != 0)
    return makeError("cannot give " + run_dir_ + " to the proxy user: " + errnoText(errno));
  auto token = readFile(o_.token_file, "the token file");
  if (!token) return Unexpected<Error>{token.error()};
  if (auto st = writeFile(run_dir_ + "/token", *token, 0600, o_.proxy_user.uid, o_.proxy_user.gid);
      !st)
    return st;
  if (!o_.insecure) {
    auto ca = readFile(o_.ca_file, "the CA file");
    if (!ca) return Unexpected<Error>{ca.error()};
    if (auto st = writeFile(run_dir_ + "/ca.pem", *ca, 0644, o_.proxy_user.uid, o_.proxy_user.gid);
        !st)
      return st;
  }
  // A proxy binary the proxy's user cannot reach (a build tree under a 0700 home or temp
  // directory) is copied into the run directory.
  if (::geteuid() == 0 && !executableBy(proxy_path_, o_.proxy_user.uid, o_.proxy_user.gid)) {
    auto binary = readFile(proxy_path_, "the proxy");
    if (!binary) return Unexpected<Error>{binary.error()};
    std::string copy = run_dir_ + "/weft-proxy";
    if (auto st = writeFile(copy, *binary, 0755, 0, 0); !st) return st;
    proxy_path_ = copy;
  }
  ports_file_ = run_dir_ + "/ports.json";
  // A --state-dir that does not exist yet is made for the proxy's user (it could not make it
  // in a directory of root's); an existing one is left as it is.
  if (!o_.state_dir.empty() && ::access(o_.state_dir.c_str(), F_OK) != 0) {
    if (::mkdir(o_.state_dir.c_str(), 0700) != 0)
      return makeError("cannot make --state-dir " + o_.state_dir + ": " + errnoText(errno));
    if (::geteuid() == 0 &&
        ::chown(o_.state_dir.c_str(), o_.proxy_user.uid, o_.proxy_user.gid) != 0)
      return makeError("cannot give --state-dir " + o_.state_dir +
                       " to the proxy user: " + errnoText(errno));
  }
  return {};
}

Status Workload::startProxy() {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return makeError("pipe: " + errnoText(errno));
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::string state = o_.state_dir.empty() ? run_dir_ + "/state" : o_.state_dir;
  SpawnSpec spec;
  spec.path = proxy_path_;
  spec.argv =
      proxyArgv(o_, proxy_path_, run_dir_ + "/token", run_dir_ + "/ca.pem", ports_file_, state);
  if (::geteuid() == 0) spec.creds = o_.proxy_user;
  spec.stdin_fd = devnull;
  spec.stderr_fd = pipefd[1];
  auto pid = spawn(spec);
  ::close(pipefd[1]);
  if (devnull >= 0) ::close(devnull);
  if (!pid) {
    ::close(pipefd[0]);
    return makeError("cannot start weft-proxy: " + pid.error().message);
  }
  proxy_pid_ = *pid;
  proxy_err_ = pipefd[0];
  ::fcntl(proxy_err_, F_SETFL, ::fcntl(proxy_err_, F_GETFL) | O_NONBLOCK);
  say("started weft-proxy (pid " + std::to_string(proxy_pid_) + ", uid " +
      std::to_string(spec.creds ? spec.creds->uid : ::geteuid()) + ") for " + o_.resource +
      ", control plane " + o_.control_plane);
  return {};
}

void Workload::readProxyStderr(bool until_eof) {
  if (proxy_err_ < 0) return;
  if (until_eof) ::fcntl(proxy_err_, F_SETFL, ::fcntl(proxy_err_, F_GETFL) & ~O_NONBLOCK);
  char buf[8192];
  while (true) {
    ssize_t n = ::read(proxy_err_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN: nothing more for now
    if (n == 0) {
      ::close(proxy_err_);
      proxy_err_ = -1;
      if (!proxy_partial_.empty()) {
        err_ << proxy_partial_ << "\n";
        proxy_tail_.push_back(proxy_partial_);
        proxy_partial_.clear();
      }
      err_ << std::flush;
      return;
    }
    proxy_partial_.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = proxy_partial_.find('\n')) != std::string::npos) {
      std::string line = proxy_partial_.substr(0, nl);
      proxy_partial_.erase(0, nl + 1);
      err_ << line << "\n";
      proxy_tail_.push_back(line);
      if (proxy_tail_.size() > kStderrTailLines) proxy_tail_.pop_front();
    }
    err_ << std::flush;
  }
}

void Workload::reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == proxy_pid_) proxy_status_ = status;
    if (pid == app_pid_) app_status_ = status;
  }
}

void Workload::pump(milliseconds wait) {
  pollfd fds[2] = {{sigfd_, POLLIN, 0}, {proxy_err_, POLLIN, 0}};
  int n = ::poll(fds, proxy_err_ >= 0 ? 2 : 1, static_cast<int>(wait.count()));
  if (n > 0 && (fds[0].revents & POLLIN)) {
    signalfd_siginfo si;
    while (::read(sigfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si))
      if (si.ssi_signo != SIGCHLD) signals_.push_back(static_cast<int>(si.ssi_signo));
  }
  if (n > 0 && proxy_err_ >= 0 && fds[1].revents) readProxyStderr(false);
  reap();
}

void Workload::forward(int sig) {
  if (app_pid_ <= 0 || app_status_) return;
  // Its process group (what a shell wrapper started gets it too), or the app alone if it
  // has left the group we gave it (setsid).
  if (::kill(-app_pid_, sig) != 0) ::kill(app_pid_, sig);
}

Status Workload::waitReady() {
  auto start = Clock::now();
  auto deadline = start + o_.ready_timeout;
  std::string last_state = "no answer yet";
  while (true) {
    pump(kReadyProbeInterval);
    if (!signals_.empty()) {
      int sig = signals_.front();
      return makeError(std::string("interrupted by SIG") + sigabbrev_np(sig) +
                       " before the proxy was ready");
    }
    if (proxy_status_) {
      readProxyStderr(true);
      return makeError("weft-proxy " + exitText(*proxy_status_) + " before it was ready" +
                       proxyTail());
    }
    if (admin_port_ == 0) {
      std::ifstream in(ports_file_);
      std::stringstream ss;
      ss << in.rdbuf();
      if (auto p = adminPortFromPortsFile(ss.str())) admin_port_ = *p;
    }
    if (admin_port_ != 0) {
      auto r = httpGet(probeHost(), admin_port_, "/ready");
      if (r && r->first == 200) {
        say("weft-proxy is ready after " + seconds(Clock::now() - start) + " (admin " +
            probeHost() + ":" + std::to_string(admin_port_) + ")");
        return {};
      }
      last_state = r ? "/ready answered " + std::to_string(r->first) + " " + trimSpace(r->second)
                     : "/ready: " + r.error().message;
    }
    if (Clock::now() >= deadline) {
      std::string why =
          "weft-proxy was not ready after " + seconds(o_.ready_timeout) + " (" + last_state + ")";
      if (admin_port_ != 0) {
        auto info = httpGet(probeHost(), admin_port_, "/server_info");
        if (info && info->first == 200) {
          std::string e = jsonStringField(info->second, "last_error");
          if (!e.empty()) why += "; control plane: " + e;
        }
      }
      readProxyStderr(false);
      return makeError(why + proxyTail());
    }
  }
}

Status Workload::learnAppPorts() {
  auto r = httpGet(probeHost(), admin_port_, "/clusters");
  if (!r || r->first != 200)
    return makeError(
        "cannot read the proxy's clusters to find the app ports (" +
        (r ? "/clusters answered " + std::to_string(r->first) : "/clusters: " + r.error().message) +
        "); give --app-ports");
  intercept_.app_ports = appPortsFromClusters(r->second);
  if (intercept_.app_ports.empty()) {
    say("the virtual node has no listener: no inbound interception");
    return {};
  }
  if (auto st = validateInterceptConfig(intercept_); !st)
    return makeError("the virtual node's listener ports: " + st.error().message);
  if (auto st = interceptor_->install(intercept_); !st) {
    intercepting_ = false;  // install removed it
    return makeError("cannot install the interception: " + st.error().message);
  }
  std::string ports;
  for (uint16_t p : intercept_.app_ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
  say("app port(s) " + ports + " (the virtual node's listeners): inbound TCP to them -> " +
      std::to_string(intercept_.proxy_ingress_port));
  return {};
}

void Workload::stopAppProcesses() {
  // The app's process group first (what a shell wrapper started), then any other process left
  // with us as its parent (daemonized descendants reparented to us, the subreaper).
  auto others = [&] {
    std::vector<pid_t> out;
    if (app_pid_ > 0 && ::kill(-app_pid_, 0) == 0) out.push_back(-app_pid_);
    for (pid_t p : ourChildren())
      if (p != proxy_pid_) out.push_back(p);
    return out;
  };
  auto left = others();
  if (left.empty()) return;
  say("stopping " + std::to_string(left.size()) + " process(es) the app left behind (SIGTERM)");
  for (pid_t p : left) ::kill(p, SIGTERM);
  auto deadline = Clock::now() + o_.stop_timeout;
  while (!(left = others()).empty()) {
    if (Clock::now() >= deadline) {
      say("killing what is left of the app (SIGKILL)");
      for (pid_t p : left) ::kill(p, SIGKILL);
      deadline = Clock::now() + milliseconds(5000);
    }
    pump(milliseconds(20));
    signals_.clear();  // already stopping
  }
}

void Workload::stopProxy() {
  if (proxy_pid_ <= 0 || proxy_status_) {
    readProxyStderr(true);
    return;
  }
  say("stopping weft-proxy (SIGTERM: it drains and says Goodbye to the control plane)");
  ::kill(proxy_pid_, SIGTERM);
  auto deadline = Clock::now() + o_.stop_timeout;
  bool killed = false;
  while (!proxy_status_) {
    if (Clock::now() >= deadline && !killed) {
      say("weft-proxy did not exit within " + seconds(o_.stop_timeout) + "; SIGKILL");
      ::kill(proxy_pid_, SIGKILL);
      killed = true;
    }
    pump(milliseconds(50));
    signals_.clear();
  }
  readProxyStderr(true);
  say("weft-proxy " + exitText(*proxy_status_));
}

void Workload::cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  if (sigfd_ >= 0) {
    stopAppProcesses();
    stopProxy();
  }
  if (intercepting_) {
    auto r = interceptor_->remove(intercept_.id);
    if (!r)
      say("could not remove the interception rules: " + r.error().message +
          " (remove them with `weft intercept remove --id " + intercept_.id + "`)");
    else
      say("interception removed");
    intercepting_ = false;
  }
  if (!run_dir_.empty()) removeTree(run_dir_);
  if (proxy_err_ >= 0) ::close(proxy_err_);
  proxy_err_ = -1;
  if (sigfd_ >= 0) ::close(sigfd_);
  sigfd_ = -1;
  // The signals stay blocked: unblocking would deliver one that arrived since the last read of
  // the signalfd, and kill us before we exit with the app's code. The caller exits next.
}

int Workload::run() {
  std::string app_path = findExecutable(o_.command.empty() ? "" : o_.command[0]);
  if (app_path.empty()) {
    say("cannot run the app: " + (o_.command.empty() ? std::string("no command given")
                                                     : o_.command[0] + ": command not found"));
    return 127;
  }
  if (o_.intercept && ::geteuid() != 0)
    return failed("interception needs root (iptables); run as root or with --no-intercept");

  // Signals arrive through a signalfd: nothing runs in a handler, and none is lost between a
  // check and a wait. SIGPIPE is ignored (our stderr may be a closed pipe).
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, s);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0)
    return failed("sigprocmask: " + errnoText(errno));
  ::signal(SIGPIPE, SIG_IGN);
  sigfd_ = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd_ < 0) return failed("signalfd: " + errnoText(errno));
  // Orphaned descendants of the app become our children, so that none is left behind.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  if (auto st = prepare(); !st) return failed(st.error().message);

  if (o_.intercept) {
    const InterceptConfig& c = intercept_;
    std::string ports;
    for (uint16_t p : c.app_ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
    interceptor_ = std::make_unique<Interceptor>(runner_);
    intercepting_ = true;  // a failed install removes what it made; remove() is harmless then
    if (auto st = interceptor_->install(c); !st) {
      intercepting_ = false;
      return failed("cannot install the interception: " + st.error().message);
    }
    say("interception installed (id " + c.id + "): inbound TCP to " +
        (ports.empty() ? std::string("the app ports (learnt once the proxy is ready)")
                       : "port(s) " + ports) +
        " -> " + std::to_string(c.proxy_ingress_port) + ", outbound TCP -> " +
        std::to_string(c.proxy_egress_port) + ", uid " + std::to_string(c.ignored_uid) + " exempt");
  }

  if (auto st = startProxy(); !st) return failed(st.error().message);
  if (auto st = waitReady(); !st) {
    int sig = signals_.empty() ? 0 : signals_.front();
    failed(st.error().message);
    return sig != 0 ? 128 + sig : 1;
  }

  if (o_.intercept && intercept_.app_ports.empty()) {
    if (auto st = learnAppPorts(); !st) return failed(st.error().message);
  }

  SpawnSpec app;
  app.path = app_path;
  app.argv = o_.command;
  app.creds = o_.app_user;
  auto pid = spawn(app);
  if (!pid) {
    failed("cannot start the app: " + pid.error().message);
    return 126;
  }
  app_pid_ = *pid;
  say("started the app (pid " + std::to_string(app_pid_) + "): " + formatArgv(o_.command));

  std::optional<Clock::time_point> kill_at;
  bool proxy_lost = false;
  while (!app_status_) {
    milliseconds wait{1000};
    if (kill_at)
      wait = std::max(
          milliseconds(1),
          std::min(wait, std::chrono::duration_cast<milliseconds>(*kill_at - Clock::now())));
    pump(wait);
    for (int sig : signals_) {
      say(std::string("SIG") + sigabbrev_np(sig) + " received; passing it to the app");
      forward(sig);
      if ((sig == SIGTERM || sig == SIGINT) && !kill_at) kill_at = Clock::now() + o_.stop_timeout;
    }
    signals_.clear();
    if (proxy_status_ && !proxy_lost && !app_status_) {
      proxy_lost = true;
      readProxyStderr(false);
      say("weft-proxy " + exitText(*proxy_status_) +
          " while the app was running; stopping the app" + proxyTail());
      forward(SIGTERM);
      if (!kill_at) kill_at = Clock::now() + o_.stop_timeout;
    }
    if (kill_at && Clock::now() >= *kill_at && !app_status_) {
      say("the app did not exit within " + seconds(o_.stop_timeout) + "; SIGKILL");
      forward(SIGKILL);
      kill_at = Clock::now() + milliseconds(5000);
    }
  }
  say("the app " + exitText(*app_status_));
  int code = exitCode(*app_status_);
  cleanup();
  if (proxy_lost) return code == 0 ? 1 : code;
  return code;
}

}  // namespace

Result<Credentials> resolveUser(const std::string& spec_in) {
  std::string spec = trimSpace(spec_in);
  if (spec.empty()) return makeError("an empty user");
  std::string user = spec, group_name;
  if (size_t c = spec.find(':'); c != std::string::npos) {
    user = spec.substr(0, c);
    group_name = spec.substr(c + 1);
  }
  Credentials out;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (allDigits(user)) {
    unsigned long v = std::strtoul(user.c_str(), nullptr, 10);
    if (v >= 4294967295ul) return makeError("user id " + user + " is out of range");
    out.uid = static_cast<uid_t>(v);
    ::getpwuid_r(out.uid, &pw, buf.data(), buf.size(), &found);
    out.gid = found ? found->pw_gid : static_cast<gid_t>(out.uid);
    out.shown = user;
  } else {
    ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (!found) return makeError("no user named '" + user + "'");
    out.uid = found->pw_uid;
    out.gid = found->pw_gid;
    out.shown = user + " (" + std::to_string(out.uid) + ")";
  }
  if (!group_name.empty()) {
    if (allDigits(group_name)) {
      out.gid = static_cast<gid_t>(std::strtoul(group_name.c_str(), nullptr, 10));
    } else {
      struct group gr {};
      struct group* g = nullptr;
      std::vector<char> gbuf(16384);
      ::getgrnam_r(group_name.c_str(), &gr, gbuf.data(), gbuf.size(), &g);
      if (!g) return makeError("no group named '" + group_name + "'");
      out.gid = g->gr_gid;
    }
  }
  if (found && found->pw_name) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (::getgrouplist(found->pw_name, out.gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<size_t>(n));
      ::getgrouplist(found->pw_name, out.gid, groups.data(), &n);
    }
    groups.resize(static_cast<size_t>(std::max(n, 0)));
    out.groups = groups;
  }
  return out;
}

Result<milliseconds> parseDuration(const std::string& text, const std::string& flag) {
  std::string t = trimSpace(text);
  size_t i = 0;
  while (i < t.size() && ((t[i] >= '0' && t[i] <= '9') || t[i] == '.')) ++i;
  std::string num = t.substr(0, i), unit = t.substr(i);
  char* end = nullptr;
  double v = num.empty() ? -1 : std::strtod(num.c_str(), &end);
  double scale = unit.empty() || unit == "s" ? 1000
                 : unit == "ms"              ? 1
                 : unit == "m"               ? 60000
                 : unit == "h"               ? 3600000
                                             : -1;
  if (num.empty() || *end != '\0' || v < 0 || scale < 0 || v * scale > 86400000.0 * 365)
    return makeError(flag + ": '" + t + "' is not a duration (e.g. 30s, 500ms, 2m)");
  return milliseconds(static_cast<int64_t>(v * scale));
}

Result<RunOptions> makeRunOptions(const RunFlags& f,
                                  const std::function<const char*(const char*)>& env) {
  RunOptions o;
  o.resource = trimSpace(f.resource);
  if (o.resource.empty())
    if (const char* v = env("APPMESH_RESOURCE_ARN")) o.resource = trimSpace(v);
  if (o.resource.empty())
    return makeError(
        "--resource mesh/M/virtualNode/N is required (or the APPMESH_RESOURCE_ARN environment "
        "variable)");
  std::string path = resourcePath(o.resource);
  if (path.empty())
    return makeError("--resource: '" + o.resource +
                     "' is not mesh/M/virtualNode/N or an App Mesh virtual node ARN");
  if (path.find("/virtualNode/") == std::string::npos)
    return makeError("--resource: '" + o.resource +
                     "' is not a virtual node (a virtual gateway has no app: run weft-proxy "
                     "alone)");
  o.control_plane = trimSpace(f.control_plane);
  if (o.control_plane.empty())
    return makeError("--control-plane HOST:PORT is required (`weft server --stream` address)");
  for (const std::string& addr : splitList(o.control_plane)) {
    size_t colon = addr.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && allDigits(addr.substr(colon + 1)) &&
              std::atol(addr.substr(colon + 1).c_str()) <= 65535;
    if (!ok)
      return makeError("--control-plane: '" + addr + "' is not HOST:PORT (IPv6 as [ADDR]:PORT)");
  }
  o.token_file = f.token_file;
  if (o.token_file.empty())
    return makeError("--token-file is required (`weft token create --resource " + path + "`)");
  o.insecure = f.insecure;
  o.ca_file = f.ca_file;
  if (o.insecure && !o.ca_file.empty())
    return makeError("--insecure and --ca-file exclude each other");
  if (!o.insecure && o.ca_file.empty())
    return makeError(
        "--ca-file is required (the server's DATA_DIR/ca-bundle.pem), unless --insecure");
  o.proxy_path = f.proxy;
  if (!o.proxy_path.empty() && o.proxy_path.find('/') == std::string::npos) {
    std::string found = findExecutable(o.proxy_path);
    if (!found.empty()) o.proxy_path = found;
  }
  bool root = ::geteuid() == 0;
  if (root) {
    auto pu = resolveUser(f.proxy_user.empty() ? "1337" : f.proxy_user);
    if (!pu) return makeError("--proxy-user: " + pu.error().message);
    o.proxy_user = *pu;
    o.proxy_user.groups.clear();  // the proxy gets its uid and gid only
  } else {
    if (!f.proxy_user.empty())
      return makeError(
          "--proxy-user needs root (switching users); without root the proxy runs "
          "as the invoking user");
    o.proxy_user.uid = ::geteuid();
    o.proxy_user.gid = ::getegid();
    o.proxy_user.shown = std::to_string(o.proxy_user.uid);
  }
  if (!f.app_user.empty()) {
    if (!root) return makeError("--app-user needs root (switching users)");
    auto au = resolveUser(f.app_user);
    if (!au) return makeError("--app-user: " + au.error().message);
    if (au->uid == o.proxy_user.uid)
      return makeError("--app-user: the app must not run as the proxy user (uid " +
                       std::to_string(au->uid) + "): its traffic would not be intercepted");
    o.app_user = *au;
  }
  o.intercept = !f.no_intercept;
  InterceptFlags ifl = f.intercept;
  if (ifl.id.empty()) ifl.id = "run" + std::to_string(::getpid());
  auto ic = makeInterceptConfig(ifl);
  if (!ic) {
    std::string m = ic.error().message;
    if (m.rfind("--id", 0) == 0) m = "--intercept-id" + m.substr(4);
    return makeError(m);
  }
  o.intercept_config = *ic;
  o.intercept_config.ignored_uid = o.proxy_user.uid;
  o.intercept_config.ignored_gid.reset();
  if (o.intercept && !root)
    return makeError("interception needs root (iptables): run as root or add --no-intercept");
  if (!f.admin.empty()) o.admin = trimSpace(f.admin);
  o.state_dir = f.state_dir;
  for (const std::string& a : f.app_addresses)
    for (const std::string& item : splitList(a)) o.app_addresses.push_back(item);
  o.host = f.host;
  o.network = f.network;
  o.proxy_log_level = f.proxy_log_level;
  if (!f.ready_timeout.empty()) {
    auto d = parseDuration(f.ready_timeout, "--ready-timeout");
    if (!d) return Unexpected<Error>{d.error()};
    o.ready_timeout = *d;
  }
  if (!f.stop_timeout.empty()) {
    auto d = parseDuration(f.stop_timeout, "--stop-timeout");
    if (!d) return Unexpected<Error>{d.error()};
    o.stop_timeout = *d;
  }
  o.command = f.command;
  if (o.command.empty())
    return makeError("no app to run: give its command after --, e.g. `weft run ... -- ./server`");
  return o;
}

Argv proxyArgv(const RunOptions& o, const std::string& proxy_path, const std::string& token_file,
               const std::string& ca_file, const std::string& ports_file,
               const std::string& state_dir) {
  Argv a = {proxy_path, "--control-plane", o.control_plane, "--resource",
            o.resource, "--token-file",    token_file};
  if (o.insecure)
    a.push_back("--insecure");
  else
    a.insert(a.end(), {"--ca-file", ca_file});
  a.insert(a.end(), {"--admin", o.admin, "--ports-file", ports_file, "--state-dir", state_dir});
  for (const std::string& addr : o.app_addresses) a.insert(a.end(), {"--app-address", addr});
  if (!o.host.empty()) a.insert(a.end(), {"--host", o.host});
  if (!o.network.empty()) a.insert(a.end(), {"--network", o.network});
  if (!o.proxy_log_level.empty()) a.insert(a.end(), {"--log-level", o.proxy_log_level});
  return a;
}

std::vector<uint16_t> appPortsFromClusters(const std::string& clusters) {
  std::vector<uint16_t> out;
  std::istringstream in(clusters);
  std::string line;
  while (std::getline(in, line)) {
    // cds_ingress_<mesh>_<node>_<protocol>_<port>::127.0.0.1:<port>::health_flags::healthy
    if (line.rfind("cds_ingress_", 0) != 0) continue;
    size_t a = line.find("::");
    if (a == std::string::npos) continue;
    size_t b = line.find("::", a + 2);
    if (b == std::string::npos) continue;
    std::string endpoint = line.substr(a + 2, b - a - 2);
    size_t colon = endpoint.rfind(':');
    if (colon == std::string::npos) continue;
    std::string port = endpoint.substr(colon + 1);
    if (!allDigits(port)) continue;
    long p = std::atol(port.c_str());
    if (p <= 0 || p > 65535) continue;
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(static_cast<uint16_t>(p));
  }
  return out;
}

std::optional<int> adminPortFromPortsFile(const std::string& contents) {
  size_t k = contents.find("\"admin\"");
  if (k == std::string::npos) return std::nullopt;
  size_t colon = contents.find(':', k);
  if (colon == std::string::npos) return std::nullopt;
  size_t d = contents.find_first_not_of(" \t\r\n", colon + 1);
  if (d == std::string::npos) return std::nullopt;
  size_t e = contents.find_first_not_of("0123456789", d);
  std::string digits = contents.substr(d, e == std::string::npos ? std::string::npos : e - d);
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  int port = std::atoi(digits.c_str());
  if (port <= 0 || port > 65535) return std::nullopt;
  return port;
}

int runWorkload(const RunOptions& options, std::ostream& err) {
  Workload w(options, err);
  return w.run();
}

}  // namespace weft::workload
