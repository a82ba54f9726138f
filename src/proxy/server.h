#pragma once
// Server: weft-proxy's main thread. It loads the config, compiles it into Snapshots, owns the
// listening sockets, the workers, the admin listener, DNS refresh and certificate watching, and
// handles signals (SIGHUP reload, SIGTERM/SIGINT drain-then-exit). Nothing here runs on the
// request path; workers only ever see the immutable Snapshots it posts.

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/stats.h"
#include "net/event_loop.h"
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
  std::string config_path;
  uint32_t concurrency = 1;
  // If set, written (atomically, JSON) once listening: {"admin": P, "listeners": {"name": P}}.
  std::string ports_file;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Loads the config and starts listening. Errors say what to fix.
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

 private:
  class Signals;
  Result<SnapshotPtr> build(const v1::ProxyConfig& config);
  // `shared_socket`: listen on this socket (a filter chain's parent's) instead of opening one.
  Result<std::shared_ptr<const ListenerInfo>> buildListener(
      const v1::Listener& l, const Snapshot& building, std::shared_ptr<ListenSocket> shared_socket);
  Result<std::shared_ptr<const ClusterInfo>> buildCluster(const v1::Cluster& c);
  void publish(SnapshotPtr s);
  void writePortsFile();
  void beginDrain();
  void pollCertificates();
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
};

}  // namespace weft::proxy
