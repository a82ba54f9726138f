#include "demo/demo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "control/api/sigv4.h"
#include "control/stacks/json_value.h"
#include "demo/http_client.h"
#include "demo/page.h"

namespace weft::demo {

namespace fs = std::filesystem;
using control::stacks::Value;
using Clock = std::chrono::steady_clock;

namespace {

constexpr char kRegion[] = "us-west-2";
constexpr int kSteps = 7;

std::string str(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? std::string(m->str()) : std::string();
}

// The last `n` non-empty lines of `text`, indented, for error messages.
std::string tailLines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "\n    " + lines[i];
  return out;
}

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string fileTail(const std::string& path, size_t n) { return tailLines(readText(path), n); }

// The process's start time in clock ticks since boot (/proc/PID/stat field 22); 0 if unknown.
uint64_t startTicks(int pid) {
  std::string stat = readText("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream in(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && (in >> field); ++i)
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  return 0;
}

std::string selfExe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("weft") : p.string();
}

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

bool inPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin";
  std::istringstream in(dirs);
  for (std::string d; std::getline(in, d, ':');)
    if (!d.empty() && executable(d + "/" + name)) return true;
  return false;
}

// Whether a TCP (and, with `udp`, a UDP) socket can bind host:port now.
bool portFree(const std::string& host, int port, bool udp) {
  if (port == 0) return true;
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    if (type == SOCK_DGRAM && !udp) continue;
    int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return true;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (!ok) return false;
  }
  return true;
}

// "HOST:PORT" -> (HOST, PORT); PORT may be 0.
Result<std::pair<std::string, int>> splitHostPort(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return makeError("'" + s + "' is not HOST:PORT (e.g. 127.0.0.1:7080)");
  std::string port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535)
    return makeError("'" + s + "': the port must be 0-65535");
  return std::make_pair(s.substr(0, colon), std::stoi(port));
}

// key=value lines (weft server --ports-file).
std::map<std::string, std::string> keyValues(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (size_t eq = l.find('='); eq != std::string::npos) out[l.substr(0, eq)] = l.substr(eq + 1);
  return out;
}

// aws_access_key_id / aws_secret_access_key of [profile] in an AWS shared-credentials file.
Result<control::sigv4::Credentials> credentialsOf(const std::string& path,
                                                  const std::string& profile) {
  std::istringstream in(readText(path));
  std::string section;
  control::sigv4::Credentials c;
  for (std::string l; std::getline(in, l);) {
    auto trim = [](std::string s) {
      size_t b = s.find_first_not_of(" \t\r");
      size_t e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    l = trim(l);
    if (l.size() > 2 && l.front() == '[' && l.back() == ']') {
      section = trim(l.substr(1, l.size() - 2));
      continue;
    }
    size_t eq = l.find('=');
    if (section != profile || eq == std::string::npos) continue;
    std::string k = trim(l.substr(0, eq)), v = trim(l.substr(eq + 1));
    if (k == "aws_access_key_id") c.access_key_id = v;
    if (k == "aws_secret_access_key") c.secret_access_key = v;
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty())
    return makeError("no [" + profile + "] access key in " + path);
  return c;
}

// The text of the first <tag>...</tag> in `xml` at or after `from`.
std::string xmlText(const std::string& xml, const std::string& tag, size_t from = 0) {
  size_t b = xml.find("<" + tag + ">", from);
  if (b == std::string::npos) return "";
  b += tag.size() + 2;
  size_t e = xml.find("</" + tag + ">", b);
  return e == std::string::npos ? "" : xml.substr(b, e - b);
}

struct NetworkInfo {
  std::string name, cidr, endpoint, id;
};

struct LabInfo {
  std::vector<NetworkInfo> networks;
  std::vector<HostPlan> hosts;
};

Result<LabInfo> parseLabStatus(const std::string& json) {
  auto v = control::stacks::parseJson(json);
  if (!v || !v->isObject()) return makeError("`weft lab status -o json` did not answer JSON");
  LabInfo out;
  if (const Value* nets = v->find("networks"); nets && nets->isArray())
    for (const Value& n : nets->items())
      out.networks.push_back(
          {str(n, "name"), str(n, "cidr"), str(n, "endpoint"), str(n, "network_id")});
  if (const Value* hosts = v->find("hosts"); hosts && hosts->isArray())
    for (const Value& h : hosts->items())
      out.hosts.push_back({str(h, "name"), nodeForHost(str(h, "name")), str(h, "network"),
                           str(h, "address"), str(h, "zone")});
  if (out.networks.empty()) return makeError("the lab has no networks");
  return out;
}

std::string pad(std::string s, size_t w) {
  if (s.size() < w) s.append(w - s.size(), ' ');
  return s;
}

// Rows as a table: columns padded to their widest cell, three spaces apart.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) line += i + 1 < r.size() ? pad(r[i], width[i] + 3) : r[i];
    out += line + "\n";
  }
  return out;
}

void makeDir(const std::string& path, fs::perms mode) {
  std::error_code ec;
  fs::create_directories(path, ec);
  fs::permissions(path, mode, ec);
}

}  // namespace

std::string nodeForHost(std::string_view host) {
  for (std::string_view node : {"frontend", "crystal", "nodejs"})
    if (host == node || (host.substr(0, node.size()) == node && host.size() > node.size() &&
                         host[node.size()] == '-'))
      return std::string(node);
  return "";
}

// What one `up` knows as it goes.
struct Demo::Ctx {
  DemoState st;
  int step = 0;
  std::string step_name;
  std::string examples;
  std::string weft_bin;
  std::string proxy_bin;
  std::string crystal_bin;
  std::string apps_dir;
  std::string topology;
  std::string api_host;  // where the API is reached (127.0.0.1 for 0.0.0.0)
  LabInfo lab;
  Clock::time_point started = Clock::now();
};

Demo::Demo(lab::System& sys, DemoOptions options, std::ostream& out, std::ostream& progress,
           const std::atomic<bool>* interrupted)
    : sys_(sys),
      o_(std::move(options)),
      state_dir_(o_.state_dir.empty() ? std::string(kDefaultStateDir) : o_.state_dir),
      out_(out),
      progress_(progress),
      interrupted_(interrupted) {
  while (state_dir_.size() > 1 && state_dir_.back() == '/') state_dir_.pop_back();
  if (o_.name.empty()) o_.name = "crossvpc";
  if (o_.cache_dir.empty()) o_.cache_dir = std::string(kDefaultCacheDir);
  if (o_.weft_bin.empty()) o_.weft_bin = selfExe();
  if (o_.proxy_bin.empty())
    o_.proxy_bin = fs::path(o_.weft_bin).parent_path().string() + "/weft-proxy";
}

bool Demo::interrupted() const { return interrupted_ != nullptr && interrupted_->load(); }

void Demo::logLine(const std::string& line) {
  std::ofstream log(logDir() + "/demo.log", std::ios::app);
  log << line << "\n";
}

Status Demo::saveState(const DemoState& st) {
  return sys_.writeFile(statePath(), stateToJson(st), 0644);
}

Result<DemoState> Demo::loadState() {
  auto text = sys_.readFile(statePath());
  if (!text) return Unexpected<Error>{text.error()};
  auto st = stateFromJson(*text);
  if (!st) return makeError(statePath() + ": " + st.error().message);
  return st;
}

bool Demo::running(const DemoProcess& p) {
  if (p.pid <= 0 || !sys_.alive(p.pid)) return false;
  return p.start_ticks == 0 || startTicks(p.pid) == p.start_ticks;
}

// Runs `weft ARGS` and logs it. With `api`, the command is pointed at the demo's server: its
// endpoint, region and admin credentials (the profile `weft` of DATA_DIR/admin-credentials,
// passed through `env` so the command line in the log is one a user can paste).
Result<lab::CommandOutput> Demo::weft(const DemoState& st, const std::vector<std::string>& args,
                                      bool api, bool quiet) {
  std::vector<std::string> argv;
  if (api) argv = {"env", "AWS_SHARED_CREDENTIALS_FILE=" + st.data_dir + "/admin-credentials"};
  argv.push_back(o_.weft_bin);
  for (size_t i = 0; i < args.size(); ++i) {
    argv.push_back(args[i]);
    if (i == 0 && api)
      argv.insert(argv.end(), {"--endpoint", st.api_url, "--profile", "weft", "--region", kRegion});
  }
  if (quiet) return sys_.run(argv);
  logLine("$ " + formatArgv(argv));
  auto r = sys_.run(argv);
  if (!r) {
    logLine("  (could not run: " + r.error().message + ")");
    return r;
  }
  if (!r->out.empty()) logLine(r->out);
  if (!r->err.empty()) logLine(r->err);
  if (r->exit_code != 0) logLine("  (exit " + std::to_string(r->exit_code) + ")");
  return r;
}

Status Demo::checkedWeft(const DemoState& st, const std::vector<std::string>& args, bool api,
                         std::string* out) {
  auto r = weft(st, args, api);
  std::string what = "`weft";
  for (size_t i = 0; i < args.size() && i < 3; ++i) what += " " + args[i];
  what += args.size() > 3 ? " ...`" : "`";
  if (!r) return makeError(what + ": " + r.error().message);
  if (r->exit_code != 0)
    return makeError(what + " failed (exit " + std::to_string(r->exit_code) +
                     "):" + tailLines(r->err.empty() ? r->out : r->err, 8));
  if (out) *out = r->out;
  return {};
}

// ---- up ----

// Everything `up` can check before it makes anything: root, the binaries and tools, the
// scenario's files, free ports. Fills c's paths.
Status Demo::preflight(Ctx& c) {
  if (::geteuid() != 0)
    return makeError(
        "needs root (network namespaces, iptables, switching users): run it with sudo");
  c.weft_bin = o_.weft_bin;
  c.proxy_bin = o_.proxy_bin;
  if (!executable(c.proxy_bin))
    return makeError("weft-proxy not found at " + c.proxy_bin + " (build it: make build)");
  c.examples = o_.examples_dir;
  if (c.examples.empty()) {
    std::vector<std::string> candidates = {
        fs::path(c.weft_bin).parent_path().parent_path().parent_path().string() +
            "/examples/crossvpc",
        "examples/crossvpc", "/usr/share/weft/examples/crossvpc"};
    for (const std::string& cand : candidates)
      if (fs::exists(cand + "/mesh-stack.yaml")) {
        c.examples = fs::absolute(cand).lexically_normal().string();
        break;
      }
    if (c.examples.empty())
      return makeError(
          "cannot find examples/crossvpc (looked beside the binary and in the "
          "current directory); pass --examples-dir");
  }
  for (const char* f :
       {"ca-stack.yaml", "registry-stack.yaml", "mesh-stack.yaml", "apps/frontend/frontend.rb",
        "apps/nodejs/server.js", "apps/crystal/build.sh"})
    if (!fs::exists(c.examples + "/" + f)) return makeError(c.examples + "/" + f + " is missing");
  c.topology = o_.topology.empty() ? c.examples + "/lab.yaml" : o_.topology;
  if (!fs::exists(c.topology)) return makeError("topology " + c.topology + " does not exist");
  for (const char* tool : {"ip", "iptables", "ruby", "node"})
    if (!inPath(tool))
      return makeError(std::string(tool) +
                       " is not installed (scripts/setup.sh installs what the demo needs)");
  auto api = splitHostPort(o_.api);
  if (!api) return makeError("--api: " + api.error().message);
  c.api_host = api->first == "0.0.0.0" ? std::string("127.0.0.1") : api->first;
  struct PortCheck {
    const char* what;
    std::string host;
    int port;
    bool udp;
    const char* flag;
  };
  for (const PortCheck& p :
       {PortCheck{"the API", api->first, api->second, false, "--api"},
        PortCheck{"the config stream", "0.0.0.0", o_.stream_port, false, "--stream-port"},
        PortCheck{"the mesh DNS", "127.0.0.1", o_.dns_port, true, "--dns-port"},
        PortCheck{"the ingress gateway", "0.0.0.0", o_.gateway_port, false, "--gateway-port"}})
    if (!portFree(p.host, p.port, p.udp))
      return makeError(std::string("port ") + std::to_string(p.port) + " (" + p.what + ") on " +
                       p.host + " is in use; pick another with " + p.flag);
  if (o_.gateway_port <= 0 || o_.gateway_port > 65535)
    return makeError("--gateway-port must be 1-65535");

  return {};
}

Status Demo::up() {
  Ctx c;
  if (auto s = preflight(c); !s) return s;
  makeDir(state_dir_, fs::perms(0755));
  if (auto s = sys_.lock(state_dir_ + "/demo.lock"); !s)
    return makeError("another `weft demo` command is running on " + state_dir_ + " (" +
                     s.error().message + ")");
  if (sys_.exists(statePath()))
    return makeError("a demo is already up (or a failed one was not removed): state " +
                     statePath() + "; run `weft demo down" +
                     (o_.state_dir.empty() ? std::string() : " --state-dir " + state_dir_) +
                     "` first");
  std::error_code ec;
  fs::remove_all(logDir(), ec);  // logs of an earlier failed up
  makeDir(logDir(), fs::perms(0755));
  Status s = runUp(c);
  if (s) return s;
  progress_ << "weft demo: step " << c.step << "/" << kSteps << " (" << c.step_name
            << ") failed; removing what was made (the logs stay in " << logDir() << ")\n";
  Status td = teardown(c.st, /*keep_logs=*/true);
  std::string msg = "step " + std::to_string(c.step) + "/" + std::to_string(kSteps) + " (" +
                    c.step_name + ") failed: " + s.error().message + "\nlogs: " + logDir() +
                    " (demo.log has every command and its output)";
  if (!td) msg += "\nand removing what was made left: " + td.error().message;
  return makeError(msg);
}

Status Demo::runUp(Ctx& c) {
  DemoState& st = c.st;
  auto step = [&](const std::string& name, const std::string& line) -> Status {
    if (interrupted()) return makeError("interrupted");
    c.step++;
    c.step_name = name;
    progress_ << "weft demo: [" << c.step << "/" << kSteps << "] " << line << "\n";
    logLine("# step " + std::to_string(c.step) + ": " + name);
    return {};
  };
  auto elapsed = [&]() {
    return std::to_string(
               std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - c.started).count()) +
           "s";
  };

  st.name = o_.name;
  st.created_at = sys_.unixSeconds();
  st.topology = fs::absolute(c.topology).lexically_normal().string();
  st.lab_state_dir = state_dir_ + "/lab";
  st.data_dir = state_dir_ + "/data";
  st.gateway_port = o_.gateway_port;
  st.gateway_url = "http://127.0.0.1:" + std::to_string(o_.gateway_port) + "/";
  if (auto s = saveState(st); !s) return s;

  // ---- 1. the Crystal backend ----
  c.crystal_bin = o_.cache_dir + "/crystal/crystal-backend";
  std::string crystal_src = c.examples + "/apps/crystal/src/crystal_backend.cr";
  std::error_code ec;
  bool fresh = fs::exists(c.crystal_bin) &&
               fs::last_write_time(c.crystal_bin, ec) >= fs::last_write_time(crystal_src, ec);
  if (auto s = step("build", fresh ? "the Crystal backend is built (" + c.crystal_bin + ")"
                                   : "building the Crystal backend into " + o_.cache_dir +
                                         "/crystal (about a minute the first time)...");
      !s)
    return s;
  if (!fresh) {
    if (!inPath("crystal"))
      return makeError("crystal is not installed (scripts/setup.sh installs what the demo needs)");
    makeDir(o_.cache_dir, fs::perms(0755));
    std::vector<std::string> argv = {c.examples + "/apps/crystal/build.sh",
                                     o_.cache_dir + "/crystal"};
    logLine("$ " + formatArgv(argv));
    auto r = sys_.run(argv);
    if (!r) return makeError("build.sh: " + r.error().message);
    logLine(r->out + r->err);
    if (r->exit_code != 0)
      return makeError("build.sh failed (exit " + std::to_string(r->exit_code) +
                       "):" + tailLines(r->err, 10));
  }
  // The apps run as --app-user (nobody): give them copies they can read.
  c.apps_dir = state_dir_ + "/apps";
  makeDir(c.apps_dir, fs::perms(0755));
  for (const auto& [from, to] :
       {std::pair<std::string, std::string>{"frontend/frontend.rb", "frontend.rb"},
        {"nodejs/server.js", "server.js"}}) {
    fs::copy_file(c.examples + "/apps/" + from, c.apps_dir + "/" + to,
                  fs::copy_options::overwrite_existing, ec);
    if (ec) return makeError("copying " + from + " into " + c.apps_dir + ": " + ec.message());
    fs::permissions(c.apps_dir + "/" + to, fs::perms(0644), ec);
  }
  std::string crystal_copy = c.apps_dir + "/crystal-backend";
  fs::copy_file(c.crystal_bin, crystal_copy, fs::copy_options::overwrite_existing, ec);
  if (ec) return makeError("copying " + c.crystal_bin + ": " + ec.message());
  fs::permissions(crystal_copy, fs::perms(0755), ec);
  c.crystal_bin = crystal_copy;

  // ---- 2. the networks ----
  if (auto s = step("lab", "the networks: weft lab up " + st.topology + " (lab " + st.name + ")");
      !s)
    return s;
  if (auto s = checkedWeft(
          st, {"lab", "up", st.topology, "--name", st.name, "--state-dir", st.lab_state_dir},
          false);
      !s)
    return s;
  std::string lab_json;
  if (auto s = checkedWeft(
          st, {"lab", "status", "--name", st.name, "--state-dir", st.lab_state_dir, "-o", "json"},
          false, &lab_json);
      !s)
    return s;
  auto lab = parseLabStatus(lab_json);
  if (!lab) return Unexpected<Error>{lab.error()};
  c.lab = *lab;
  for (const NetworkInfo& n : c.lab.networks)
    progress_ << "  " << n.name << " " << n.cidr << ", endpoint " << n.endpoint << "\n";

  // ---- 3. the control plane ----
  if (auto s = step("server", "the control plane: weft server (data " + st.data_dir + ")"); !s)
    return s;
  {
    std::string sans, dns = "127.0.0.1:" + std::to_string(o_.dns_port);
    for (const NetworkInfo& n : c.lab.networks) {
      sans += (sans.empty() ? "" : ",") + n.endpoint;
      dns += "," + n.endpoint + ":53";  // glibc's resolver asks port 53 only
    }
    std::string ports = state_dir_ + "/server.ports";
    (void)sys_.removeFile(ports);
    std::vector<std::string> argv = {c.weft_bin, "server", "--data-dir", st.data_dir, "--api",
                                     o_.api, "--stream",
                                     "0.0.0.0:" + std::to_string(o_.stream_port), "--stream-san",
                                     sans, "--dns", dns, "--region", kRegion, "--ports-file", ports,
                                     // A task killed without a Goodbye leaves the rotation soon.
                                     "--proxy-stale-after", "10s"};
    DemoProcess p{"server", "", "", 0, 0, logDir() + "/server.log"};
    logLine("$ " + formatArgv(argv) + "   (detached, log " + p.log + ")");
    auto pid = sys_.spawn(argv, {}, p.log);
    if (!pid) return makeError("cannot start weft server: " + pid.error().message);
    p.pid = *pid;
    p.start_ticks = startTicks(p.pid);
    st.processes.push_back(p);
    if (auto s = saveState(st); !s) return s;
    auto deadline = Clock::now() + std::chrono::seconds(30);
    std::map<std::string, std::string> kv;
    for (;;) {
      kv = keyValues(readText(ports));
      if (kv.count("api") && kv.count("stream") && kv.count("dns")) break;
      if (!running(p))
        return makeError("weft server exited at start; its log " + p.log + ":" +
                         fileTail(p.log, 8));
      if (Clock::now() > deadline)
        return makeError("weft server is not listening after 30s; its log " + p.log + ":" +
                         fileTail(p.log, 8));
      if (interrupted()) return makeError("interrupted");
      sys_.pause(std::chrono::milliseconds(100));
    }
    st.api_url = "http://" + c.api_host + ":" + kv["api"];
    st.stream_port = std::stoi(kv["stream"]);
    st.dns_port = std::stoi(kv["dns"]);
    if (auto s = saveState(st); !s) return s;
    progress_ << "  API " << st.api_url << ", config stream 0.0.0.0:" << st.stream_port
              << ", DNS 127.0.0.1:" << st.dns_port << " and each endpoint's port 53\n";
  }

  // ---- 4. networks and stacks ----
  if (auto s = step("stacks",
                    "the networks registered, then the stacks: CA, registry (Cloud Map + "
                    "Route 53), mesh");
      !s)
    return s;
  if (auto s = checkedWeft(
          st, {"lab", "register", "--name", st.name, "--state-dir", st.lab_state_dir}, true);
      !s)
    return s;
  if (auto s = checkedWeft(
          st, {"lab", "status", "--name", st.name, "--state-dir", st.lab_state_dir, "-o", "json"},
          false, &lab_json);
      !s)
    return s;
  lab = parseLabStatus(lab_json);
  if (!lab) return Unexpected<Error>{lab.error()};
  c.lab = *lab;
  for (const NetworkInfo& n : c.lab.networks)
    if (n.id.empty()) return makeError("network " + n.name + " was not registered");
  const std::string ca_stack = st.name + "-ca", registry_stack = st.name + "-registry",
                    mesh_stack = st.name + "-mesh";
  progress_ << "  stack " << ca_stack << ": root CA and the wildcard certificate *." << kDomain
            << "\n";
  if (auto s = checkedWeft(st,
                           {"stack", "deploy", "--template-file", c.examples + "/ca-stack.yaml",
                            "--stack-name", ca_stack},
                           true);
      !s)
    return s;
  // The zone goes to the networks whose hosts run apps (the walkthrough's VPC1 and VPC2): the
  // first one at creation, the others by association. A network with no app (a third VPC in a
  // test topology) stays outside, and the mesh DNS refuses its callers.
  std::vector<const NetworkInfo*> zone_nets;
  for (const NetworkInfo& n : c.lab.networks)
    if (std::any_of(c.lab.hosts.begin(), c.lab.hosts.end(),
                    [&](const HostPlan& h) { return h.network == n.name && !h.node.empty(); }))
      zone_nets.push_back(&n);
  if (zone_nets.empty())
    return makeError(
        "no host of the topology runs an app (hosts named frontend-*, crystal-*, "
        "nodejs-* do)");
  const NetworkInfo& first = *zone_nets.front();
  progress_ << "  stack " << registry_stack << ": namespace " << kDomain << " attached to "
            << first.name << " (" << first.id << "), services frontend, crystal, nodejs\n";
  if (auto s = checkedWeft(
          st,
          {"stack", "deploy", "--template-file", c.examples + "/registry-stack.yaml",
           "--stack-name", registry_stack, "--parameter-overrides", "NetworkId=" + first.id},
          true);
      !s)
    return s;
  // aws route53 associate-vpc-with-hosted-zone, for the other networks with apps.
  for (size_t i = 1; i < zone_nets.size(); ++i) {
    const NetworkInfo& n = *zone_nets[i];
    progress_ << "  Route 53: the zone " << kDomain << " associated with " << n.name << " (" << n.id
              << ")\n";
    if (auto s = associateVpc(st, n.id); !s) return s;
  }
  progress_ << "  stack " << mesh_stack << ": mesh " << kMesh
            << ", nodes frontend, crystal, nodejs (STRICT TLS), routers, services, gateway "
            << kGateway << "\n";
  if (auto s =
          checkedWeft(st,
                      {"stack", "deploy", "--template-file", c.examples + "/mesh-stack.yaml",
                       "--stack-name", mesh_stack, "--parameter-overrides", "CaStack=" + ca_stack,
                       "GatewayPort=" + std::to_string(o_.gateway_port)},
                      true);
      !s)
    return s;
  // What a frontend sidecar and the gateway will get: compiled now, so a spec the compiler
  // refuses stops here with its message.
  for (const std::string& r :
       {"mesh/" + std::string(kMesh) + "/virtualNode/frontend",
        "mesh/" + std::string(kMesh) + "/virtualGateway/" + std::string(kGateway)})
    if (auto s = checkedWeft(st, {"describe", "proxy-config", "--resource", r}, true); !s) return s;

  // ---- 5. the apps and their sidecars ----
  size_t apps = std::count_if(c.lab.hosts.begin(), c.lab.hosts.end(),
                              [](const HostPlan& h) { return !h.node.empty(); });
  if (auto s = step("apps",
                    "the apps with their sidecars: weft run on " + std::to_string(apps) + " hosts");
      !s)
    return s;
  std::string tokens = state_dir_ + "/tokens";
  makeDir(tokens, fs::perms(0700));
  std::map<std::string, const NetworkInfo*> nets;
  for (const NetworkInfo& n : c.lab.networks) nets[n.name] = &n;
  for (const HostPlan& h : c.lab.hosts) {
    if (h.node.empty()) continue;
    if (interrupted()) return makeError("interrupted");
    const NetworkInfo* net = nets[h.network];
    if (net == nullptr) return makeError("host " + h.host + ": unknown network " + h.network);
    std::string resource = "mesh/" + std::string(kMesh) + "/virtualNode/" + h.node;
    std::string token;
    if (auto s = checkedWeft(st, {"token", "create", "--resource", resource}, true, &token); !s)
      return s;
    while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
    std::string token_file = tokens + "/" + h.host + ".token";
    if (auto s = sys_.writeFile(token_file, token + "\n", 0600); !s) return s;
    std::vector<std::string> app;
    if (h.node == "frontend") app = {"ruby", c.apps_dir + "/frontend.rb"};
    if (h.node == "crystal") app = {c.crystal_bin};
    if (h.node == "nodejs") app = {"node", c.apps_dir + "/server.js"};
    std::vector<std::string> argv = {c.weft_bin,
                                     "lab",
                                     "exec",
                                     "--name",
                                     st.name,
                                     "--state-dir",
                                     st.lab_state_dir,
                                     h.host,
                                     "--",
                                     c.weft_bin,
                                     "run",
                                     "--resource",
                                     resource,
                                     "--app-ports",
                                     std::to_string(kAppPort),
                                     "--control-plane",
                                     net->endpoint + ":" + std::to_string(st.stream_port),
                                     "--token-file",
                                     token_file,
                                     "--ca-file",
                                     st.data_dir + "/ca-bundle.pem",
                                     "--host",
                                     h.host,
                                     "--network",
                                     net->id,
                                     "--stop-timeout",
                                     "5s"};
    if (!o_.app_user.empty()) argv.insert(argv.end(), {"--app-user", o_.app_user});
    argv.push_back("--");
    argv.insert(argv.end(), app.begin(), app.end());
    lab::EnvList env = {{"HOST_IP", h.address}, {"AZ", h.zone}, {"PORT", std::to_string(kAppPort)}};
    DemoProcess p{"workload", h.host, resource, 0, 0, logDir() + "/" + h.host + ".log"};
    logLine("$ HOST_IP=" + h.address + " AZ=" + h.zone + " PORT=" + std::to_string(kAppPort) + " " +
            formatArgv(argv) + "   (detached, log " + p.log + ")");
    auto pid = sys_.spawn(argv, env, p.log);
    if (!pid) return makeError("cannot start weft run on " + h.host + ": " + pid.error().message);
    p.pid = *pid;
    p.start_ticks = startTicks(p.pid);
    st.processes.push_back(p);
    if (auto s = saveState(st); !s) return s;
    progress_ << "  " << pad(h.host, 12) << pad(h.address, 14) << pad(h.zone, 12) << h.node
              << " (pid " << p.pid << ", log " << p.log << ")\n";
  }

  // ---- 6. the ingress gateway ----
  if (auto s = step("gateway", "the ingress gateway: weft-proxy for virtual gateway " +
                                   std::string(kGateway) + " on port " +
                                   std::to_string(o_.gateway_port));
      !s)
    return s;
  {
    std::string resource =
        "mesh/" + std::string(kMesh) + "/virtualGateway/" + std::string(kGateway);
    std::string token;
    if (auto s = checkedWeft(st, {"token", "create", "--resource", resource}, true, &token); !s)
      return s;
    while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
    std::string token_file = tokens + "/gateway.token";
    if (auto s = sys_.writeFile(token_file, token + "\n", 0600); !s) return s;
    makeDir(state_dir_ + "/gateway", fs::perms(0700));
    std::vector<std::string> argv = {c.proxy_bin,
                                     "--control-plane",
                                     "127.0.0.1:" + std::to_string(st.stream_port),
                                     "--resource",
                                     resource,
                                     "--token-file",
                                     token_file,
                                     "--ca-file",
                                     st.data_dir + "/ca-bundle.pem",
                                     "--admin",
                                     "127.0.0.1:0",
                                     "--state-dir",
                                     state_dir_ + "/gateway",
                                     "--host",
                                     "ingress-gateway",
                                     "--ports-file",
                                     state_dir_ + "/gateway.ports"};
    DemoProcess p{"gateway", "", resource, 0, 0, logDir() + "/gateway.log"};
    logLine("$ " + formatArgv(argv) + "   (detached, log " + p.log + ")");
    auto pid = sys_.spawn(argv, {}, p.log);
    if (!pid) return makeError("cannot start weft-proxy: " + pid.error().message);
    p.pid = *pid;
    p.start_ticks = startTicks(p.pid);
    st.processes.push_back(p);
    if (auto s = saveState(st); !s) return s;
  }

  // ---- 7. the page ----
  if (auto s = step("page", "waiting for every app to be healthy and " + st.gateway_url +
                                " to show the frontend's line and both backends' (at most " +
                                std::to_string(o_.timeout.count()) + "s)");
      !s)
    return s;
  // Done when the page shows all three lines AND every app's instance is HEALTHY in the
  // registry (so the gateway balances over every frontend and the frontends over every backend
  // task), and not before every sidecar has reported its first health check: a sidecar probes
  // its app as soon as it is ready, before `weft run` starts the app, so each instance reads
  // UNHEALTHY for one or two intervals first (5 s each, healthy after 2 passes).
  std::map<std::string, int> expected;  // service -> instances
  for (const HostPlan& h : c.lab.hosts)
    if (!h.node.empty()) expected[h.node]++;
  auto deadline = Clock::now() + o_.timeout;
  auto not_before = Clock::now() + std::chrono::seconds(6);
  auto next_report = Clock::now() + std::chrono::seconds(5);
  std::string last = "no answer yet";
  PageLines page;
  for (;;) {
    std::string health;
    bool all_healthy = true;
    {
      std::map<std::string, int> healthy;
      auto r = weft(st, {"get", "instances", "--namespace", std::string(kDomain), "-o", "json"},
                    true, /*quiet=*/true);
      if (r && r->exit_code == 0)
        if (auto v = control::stacks::parseJson(r->out); v && v->isArray())
          for (const Value& i : v->items())
            if (str(i, "HealthStatus") == "HEALTHY") healthy[str(i, "ServiceName")]++;
      for (const auto& [svc, n] : expected) {
        health += (health.empty() ? "" : ", ") + svc + " " + std::to_string(healthy[svc]) + "/" +
                  std::to_string(n);
        all_healthy = all_healthy && healthy[svc] >= n;
      }
      health = "healthy instances: " + health;
    }
    for (const DemoProcess& p : st.processes)
      if (!running(p))
        return makeError((p.role == "workload"  ? "weft run on " + p.host
                          : p.role == "gateway" ? std::string("the gateway's weft-proxy")
                                                : std::string("weft server")) +
                         " exited; its log " + p.log + ":" + fileTail(p.log, 10));
    auto r = httpRequest("127.0.0.1", static_cast<uint16_t>(o_.gateway_port), "GET", "/", {}, "",
                         std::chrono::seconds(8));
    if (r && r->status == 200) {
      page = parsePage(r->body);
      if (pageComplete(page) && all_healthy && Clock::now() >= not_before) break;
      last = pageComplete(page) ? "the page is complete" : "page: " + pageProblems(page);
    } else {
      last = "page: " + (r ? "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 120)
                           : r.error().message);
    }
    last += "; " + health;
    if (Clock::now() > deadline)
      return makeError("not working after " + std::to_string(o_.timeout.count()) + "s: " + last +
                       " (see the hosts' logs)");
    if (interrupted()) return makeError("interrupted");
    if (Clock::now() > next_report) {
      progress_ << "  " << elapsed() << ": " << last << "\n";
      next_report = Clock::now() + std::chrono::seconds(5);
    }
    sys_.pause(std::chrono::milliseconds(500));
  }
  st.complete = true;
  if (auto s = saveState(st); !s) return s;
  progress_ << "weft demo: up in " << elapsed() << "\n";
  out_ << st.gateway_url << "\n"
       << "  " << page.frontend << "\n"
       << "  " << page.nodejs << "\n"
       << "  " << page.crystal << "\n";
  std::string flags = o_.state_dir.empty() ? "" : " --state-dir " + state_dir_;
  progress_ << "weft demo: reload to see the three frontends and both backends' tasks answer; "
               "`weft demo status"
            << flags << "` shows the hosts, proxies and health; `weft demo down" << flags
            << "` removes it all.\n"
            << "weft demo: the control plane: export WEFT_ENDPOINT=" << st.api_url
            << " AWS_SHARED_CREDENTIALS_FILE=" << st.data_dir << "/admin-credentials\n";
  return {};
}

// aws route53 list-hosted-zones-by-name + associate-vpc-with-hosted-zone, signed with the admin
// key, straight to the API (the CLI has no Route 53 command).
Status Demo::associateVpc(const DemoState& st, const std::string& vpc_id) {
  auto creds = credentialsOf(st.data_dir + "/admin-credentials", "weft");
  if (!creds) return Unexpected<Error>{creds.error()};
  std::string host_port = st.api_url.substr(st.api_url.find("//") + 2);
  auto hp = splitHostPort(host_port);
  if (!hp) return Unexpected<Error>{hp.error()};
  auto signedCall = [&](const std::string& method, const std::string& path,
                        const std::string& query, const std::string& body) -> Result<HttpReply> {
    control::sigv4::Request req{method, path, query, {{"host", host_port}}, body};
    if (!body.empty()) req.headers.emplace_back("content-type", "application/xml");
    control::sigv4::sign(req, *creds, kRegion, "route53",
                         control::sigv4::amzDate(sys_.unixSeconds()));
    logLine("$ (Route 53 API) " + method + " " + path + (query.empty() ? "" : "?" + query));
    HeaderList headers(req.headers.begin(), req.headers.end());
    auto r = httpRequest(hp->first, static_cast<uint16_t>(hp->second), method,
                         path + (query.empty() ? "" : "?" + query), headers, body,
                         std::chrono::seconds(30));
    if (r) logLine("  " + std::to_string(r->status) + " " + r->body);
    return r;
  };
  auto list =
      signedCall("GET", "/2013-04-01/hostedzonesbyname", "dnsname=" + std::string(kDomain), "");
  if (!list) return makeError("ListHostedZonesByName: " + list.error().message);
  if (list->status != 200)
    return makeError("ListHostedZonesByName answered " + std::to_string(list->status) + ": " +
                     list->body);
  std::string zone;
  for (size_t at = list->body.find("<HostedZone>"); at != std::string::npos;
       at = list->body.find("<HostedZone>", at + 1))
    if (xmlText(list->body, "Name", at) == std::string(kDomain) + ".") {
      zone = xmlText(list->body, "Id", at);
      break;
    }
  if (zone.rfind("/hostedzone/", 0) == 0) zone = zone.substr(12);
  if (zone.empty()) return makeError("no hosted zone " + std::string(kDomain) + " in the registry");
  std::string body =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<AssociateVPCWithHostedZoneRequest "
      "xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><VPC><VPCRegion>" +
      std::string(kRegion) + "</VPCRegion><VPCId>" + vpc_id +
      "</VPCId></VPC></AssociateVPCWithHostedZoneRequest>";
  auto assoc = signedCall("POST", "/2013-04-01/hostedzone/" + zone + "/associatevpc", "", body);
  if (!assoc) return makeError("AssociateVPCWithHostedZone: " + assoc.error().message);
  if (assoc->status != 200)
    return makeError("AssociateVPCWithHostedZone answered " + std::to_string(assoc->status) + ": " +
                     assoc->body);
  return {};
}

// ---- down ----

void Demo::stopProcesses(DemoState& st, const std::string& role, std::chrono::seconds grace) {
  std::vector<DemoProcess*> live;
  for (DemoProcess& p : st.processes)
    if (p.role == role && running(p)) live.push_back(&p);
  if (live.empty()) return;
  for (DemoProcess* p : live) sys_.signal(p->pid, SIGTERM);
  auto deadline = Clock::now() + grace;
  auto anyRunning = [&]() {
    return std::any_of(live.begin(), live.end(), [&](DemoProcess* p) { return running(*p); });
  };
  while (anyRunning() && Clock::now() < deadline) sys_.pause(std::chrono::milliseconds(100));
  for (DemoProcess* p : live)
    if (running(*p)) {
      progress_ << "  " << role << " " << p->host << " (pid " << p->pid << ") did not stop after "
                << grace.count() << "s: SIGKILL\n";
      sys_.signal(p->pid, SIGKILL);
    }
  deadline = Clock::now() + std::chrono::seconds(5);
  while (anyRunning() && Clock::now() < deadline) sys_.pause(std::chrono::milliseconds(50));
}

Status Demo::teardown(DemoState& st, bool keep_logs) {
  std::vector<std::string> left;
  // The server's pid is also in its data directory's lock file (a crash may have come before
  // the state recorded it).
  bool have_server = std::any_of(st.processes.begin(), st.processes.end(),
                                 [](const DemoProcess& p) { return p.role == "server"; });
  if (!have_server && !st.data_dir.empty()) {
    int pid = std::atoi(readText(st.data_dir + "/lock").c_str());
    if (pid > 0 &&
        readText("/proc/" + std::to_string(pid) + "/cmdline").find("server") != std::string::npos)
      st.processes.push_back({"server", "", "", pid, startTicks(pid), ""});
  }
  size_t workloads = std::count_if(st.processes.begin(), st.processes.end(),
                                   [&](auto& p) { return p.role == "workload" && running(p); });
  if (workloads > 0)
    progress_ << "weft demo: stopping " << workloads
              << " apps and their sidecars (they drain and deregister)...\n";
  stopProcesses(st, "workload", std::chrono::seconds(20));
  stopProcesses(st, "gateway", std::chrono::seconds(15));

  if (!st.lab_state_dir.empty()) {
    progress_ << "weft demo: removing the networks (weft lab down)...\n";
    auto r = weft(
        st, {"lab", "down", "--name", st.name, "--state-dir", st.lab_state_dir, "--keep-networks"},
        false);
    if (!r)
      left.push_back("the lab: " + r.error().message);
    else if (r->exit_code != 0)
      left.push_back("the lab (weft lab down failed):" + tailLines(r->err, 10));
  }
  if (std::any_of(st.processes.begin(), st.processes.end(),
                  [&](const DemoProcess& p) { return p.role == "server" && running(p); }))
    progress_ << "weft demo: stopping the control plane...\n";
  stopProcesses(st, "server", std::chrono::seconds(20));
  for (const DemoProcess& p : st.processes)
    if (running(p))
      left.push_back(p.role + (p.host.empty() ? "" : " " + p.host) + " (pid " +
                     std::to_string(p.pid) + ") is still running");

  std::error_code ec;
  for (const char* sub : {"/apps", "/tokens", "/gateway", "/data"}) {
    fs::remove_all(state_dir_ + sub, ec);
    if (ec) left.push_back(state_dir_ + sub + ": " + ec.message());
  }
  for (const char* f : {"/server.ports", "/gateway.ports"}) fs::remove(state_dir_ + f, ec);
  if (left.empty()) {
    fs::remove(st.lab_state_dir, ec);  // empty once the lab is down
    if (!keep_logs) fs::remove_all(logDir(), ec);
    fs::remove(statePath(), ec);
    fs::remove(state_dir_ + "/demo.lock", ec);
    fs::remove(state_dir_, ec);  // only when empty (the logs of a failed up stay)
    return {};
  }
  st.processes.erase(std::remove_if(st.processes.begin(), st.processes.end(),
                                    [&](const DemoProcess& p) { return !running(p); }),
                     st.processes.end());
  (void)saveState(st);
  std::string msg = "left behind:";
  for (const std::string& l : left) msg += "\n  - " + l;
  return makeError(msg);
}

Status Demo::down() {
  if (!fs::exists(state_dir_)) {
    progress_ << "weft demo: nothing to do (no state in " << state_dir_ << ")\n";
    return {};
  }
  if (auto s = sys_.lock(state_dir_ + "/demo.lock"); !s)
    return makeError("another `weft demo` command is running on " + state_dir_ + " (" +
                     s.error().message + ")");
  DemoState st;
  if (sys_.exists(statePath())) {
    auto loaded = loadState();
    if (!loaded) return Unexpected<Error>{loaded.error()};
    st = *loaded;
  } else {
    // No state file (it was never written, or removed by hand): sweep by the names `up` uses.
    st.name = o_.name;
    st.lab_state_dir = state_dir_ + "/lab";
    st.data_dir = state_dir_ + "/data";
  }
  Status s = teardown(st, /*keep_logs=*/false);
  if (!s) return s;
  progress_ << "weft demo: down; nothing is left (" << state_dir_ << " removed)\n";
  return {};
}

// ---- status ----

Status Demo::status() {
  if (!sys_.exists(statePath()))
    return makeError("no demo is up (no state in " + statePath() + "); `weft demo up` starts one");
  auto loaded = loadState();
  if (!loaded) return Unexpected<Error>{loaded.error()};
  DemoState& st = *loaded;
  std::vector<std::string> problems;
  out_ << "demo " << st.name << ": "
       << (st.complete ? "up" : "NOT COMPLETE (up failed or is running)") << ", state "
       << state_dir_ << "\n";
  out_ << "gateway        " << st.gateway_url << "\n";
  out_ << "control plane  " << st.api_url << "   (export WEFT_ENDPOINT=" << st.api_url
       << " AWS_SHARED_CREDENTIALS_FILE=" << st.data_dir << "/admin-credentials)\n";
  out_ << "lab            weft lab status --name " << st.name << " --state-dir " << st.lab_state_dir
       << "\n\n";

  std::map<std::string, HostPlan> hosts;
  std::string lab_json;
  if (checkedWeft(
          st, {"lab", "status", "--name", st.name, "--state-dir", st.lab_state_dir, "-o", "json"},
          false, &lab_json)) {
    if (auto lab = parseLabStatus(lab_json))
      for (const HostPlan& h : lab->hosts) hosts[h.host] = h;
  } else {
    problems.push_back("the lab is not up");
  }
  std::vector<std::vector<std::string>> rows = {
      {"PROCESS", "HOST", "ADDRESS", "ZONE", "RESOURCE", "PID", "STATE", "LOG"}};
  for (const DemoProcess& p : st.processes) {
    bool up = running(p);
    if (!up)
      problems.push_back(p.role + (p.host.empty() ? "" : " on " + p.host) + " is not running");
    const HostPlan* h = hosts.count(p.host) ? &hosts[p.host] : nullptr;
    std::string what = p.role == "workload"  ? "weft run"
                       : p.role == "gateway" ? "weft-proxy"
                                             : "weft server";
    rows.push_back({what, p.host.empty() ? "-" : p.host, h ? h->address : "-", h ? h->zone : "-",
                    p.resource.empty() ? "-" : p.resource, std::to_string(p.pid),
                    up ? "running" : "STOPPED", p.log});
  }
  out_ << table(rows) << "\n";

  auto section = [&](const std::string& title, const std::vector<std::string>& args) {
    out_ << title << "\n";
    auto r = weft(st, args, true);
    if (!r || r->exit_code != 0) {
      std::string why = !r ? r.error().message : tailLines(r->err, 3);
      out_ << "  (unavailable:" << why << ")\n\n";
      problems.push_back(title + " unavailable");
      return std::string();
    }
    out_ << (r->out.empty() ? r->err : r->out) << "\n";
    return r->out;
  };
  section("PROXIES (weft proxies)", {"proxies", "--mesh", std::string(kMesh)});
  std::string instances = section(
      "HEALTH (weft get instances: the registry, fed by the sidecars' "
      "health checks)",
      {"get", "instances", "--namespace", std::string(kDomain)});
  for (const char* bad : {"UNHEALTHY"})
    if (instances.find(bad) != std::string::npos) problems.push_back("an instance is UNHEALTHY");

  auto r = httpRequest("127.0.0.1", static_cast<uint16_t>(st.gateway_port), "GET", "/", {}, "",
                       std::chrono::seconds(8));
  out_ << "PAGE (GET " << st.gateway_url << ")\n";
  if (!r || r->status != 200) {
    std::string why = r ? "HTTP " + std::to_string(r->status) : r.error().message;
    out_ << "  " << why << "\n";
    problems.push_back("the page does not answer: " + why);
  } else {
    PageLines page = parsePage(r->body);
    out_ << "  " << page.frontend << "\n  " << page.nodejs << "\n  " << page.crystal << "\n";
    if (!pageComplete(page)) problems.push_back("the page is incomplete: " + pageProblems(page));
  }
  if (problems.empty()) return {};
  std::string msg = std::to_string(problems.size()) + " problem(s):";
  for (const std::string& p : problems) msg += "\n  - " + p;
  return makeError(msg);
}

}  // namespace weft::demo
