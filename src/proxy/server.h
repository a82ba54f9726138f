#pragma once
// Server: weft-proxy's main thread. It loads the config, compiles it into Snapshots, owns the
// listening sockets, the workers, the admin listener, DNS refresh and certificate watching, and
// handles signals (SIGHUP reload, SIGTERM/SIGINT drain-then-exit). Nothing here runs on the
// request path; workers only ever see the immutable Snapshots it posts.

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/stats.h"
#include "net/event_loop.h"
#include "proxy/agent.h"
#include "proxy/snapshot.h"
#include "upstream/dns_refresher.h"
#include "upstream/dns_resolver.h"
#include "upstream/grpc_health_probe.h"
#include "upstream/health_checker.h"
#include "upstream/health_probe.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

class Worker;
class AdminServer;
class AccessLogWriter;

struct ServerOptions {
  // File mode: the config file (SIGHUP reloads it). Empty with control_plane set: agent mode.
  std::string config_path;
  // Agent mode (docs/proxy-agent.md): the config comes from `weft server` over the config
  // stream; the proxy starts with none (admin up, /ready 503, PRE_INITIALIZING) unless a stored
  // one is in agent.state_dir.
  bool control_plane = false;
  AgentOptions agent;
  // The admin listener when set (agent mode: always, from --admin); else the config's `admin`.
  std::optional<v1::Admin> admin;
  uint32_t concurrency = 1;
  // If set, written (atomically, JSON) once listening: {"admin": P, "listeners": {"name": P}}.
  std::string ports_file;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // File mode: loads the config and starts listening. Agent mode: starts the admin listener,
  // serves the stored config if there is one, and starts the agent. Errors say what to fix.
  Status start();
  // Runs until drained after SIGTERM/SIGINT. Returns the process exit code.
  int run();

  // Main thread: snapshot currently published.
  const SnapshotPtr& snapshot() const { return snapshot_; }
  stats::Registry& registry() { return *registry_; }
  bool draining() const { return draining_; }
  std::chrono::steady_clock::time_point startTime() const { return started_; }
  uint32_t concurrency() const { return options_.concurrency; }
  // Reloads the config file; on error the old config stays and the error is returned.
  Status reload();
  // The one path by which a config becomes active (start, SIGHUP reload, the agent): validate
  // (validateConfig), build, publish. The first one starts the workers; later ones keep
  // listeners whose name, address and port did not change (same socket) and open connections.
  // On error nothing changes and the error says why. Main thread.
  Status applyConfig(const v1::ProxyConfig& config);
  // A config is active (false only in agent mode before the first config).
  bool initialized() const { return snapshot_ != nullptr; }
  // Agent mode only, else null.
  const Agent* agent() const { return agent_.get(); }

 private:
  class Signals;
  Result<SnapshotPtr> build(const v1::ProxyConfig& config);
  // `shared_socket`: listen on this socket (a filter chain's parent's) instead of opening one.
  // `passthrough_unrouted`: an HTTP filter chain of an OUTBOUND ALLOW_ALL listener (requests
  // matching no virtual host go to their original destination).
  Result<std::shared_ptr<const ListenerInfo>> buildListener(
      const v1::Listener& l, const Snapshot& building, std::shared_ptr<ListenSocket> shared_socket,
      bool passthrough_unrouted = false);
  Result<std::shared_ptr<const ClusterInfo>> buildCluster(const v1::Cluster& c);
  void publish(SnapshotPtr s);
  void writePortsFile();
  void beginDrain();
  void pollCertificates();
  // The agent's health source: for each inbound (cds_ingress_*) cluster, its app port and what
  // its health checker says of the app (UNKNOWN: no check, or not probed yet). Main thread.
  std::vector<std::pair<uint32_t, AppHealth>> appHealth() const;
  std::string certificateFingerprint(const v1::ProxyConfig& c) const;

  ServerOptions options_;
  net::EventLoop loop_;
  std::unique_ptr<stats::Registry> registry_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<Signals> signals_;
  SnapshotPtr snapshot_;
  uint64_t version_ = 0;
  bool draining_ = false;
  size_t workers_drained_ = 0;
  std::unique_ptr<Timer> drain_timer_;
  std::unique_ptr<Timer> cert_timer_;
  std::string cert_fingerprint_;
  std::chrono::steady_clock::time_point started_;
  std::unordered_map<std::string, std::shared_ptr<AccessLogWriter>> log_writers_;
  std::shared_ptr<stats::Counter> reload_ok_, reload_rejected_;

  // DNS clusters: one refresher per cluster (keyed by name; replaced when its endpoints change),
  // and the latest host set each has published.
  struct HealthCluster {
    std::string key;  // what the checker was built from
    std::unique_ptr<upstream::ProbeFactory> factory;
    std::unique_ptr<upstream::HealthChecker> checker;  // after factory: it uses it
    upstream::HostSetPtr base;                         // the hosts before health is applied
  };
  HealthCluster& ensureHealth(const v1::Cluster& c, const ClusterInfo& ci,
                              const stats::Labels& labels);
  void republishHosts(const std::string& cluster, upstream::HostSetPtr hosts);
  struct DnsCluster {
    std::string endpoints_key;
    std::unique_ptr<upstream::DnsRefresher> refresher;
    upstream::HostSetPtr hosts;
  };
  void ensureDns(const v1::Cluster& c);
  void onDnsUpdate(const std::string& cluster, upstream::HostSetPtr hosts);
  std::unique_ptr<upstream::DnsResolver> resolver_;
  std::unordered_map<std::string, DnsCluster> dns_;
  std::unordered_map<std::string, HealthCluster> health_;
  // Last: destroyed first, while everything it calls into still exists.
  std::unique_ptr<Agent> agent_;
};

}  // namespace weft::proxy
