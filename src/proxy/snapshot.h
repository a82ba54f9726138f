#pragma once
// Snapshot: the whole active configuration, compiled, immutable and shared by every worker as
// std::shared_ptr<const Snapshot>. The main thread builds a new one on every change (file reload,
// DNS answer, certificate rotation) and posts it to each worker; a worker swaps it in between
// events. Requests already in flight keep what they started with (they hold shared_ptrs to their
// listener and cluster); new requests see the new snapshot. Nothing here is mutated after
// publication, so there is nothing to lock.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/stats.h"
#include "http/http2/codec.h"
#include "http/router.h"
#include "net/tls/san.h"
#include "net/tls/tls_context.h"
#include "net/transport.h"
#include "proxy/access_log.h"
#include "upstream/circuit_breaker.h"
#include "upstream/host_set.h"
#include "upstream/load_balancer.h"
#include "upstream/outlier_detector.h"
#include "upstream/pool.h"
#include "upstream/retry.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

// One configured access log: its compiled format and the (shared) writer for its path.
class AccessLogSink {
 public:
  AccessLogSink(AccessLogFormatter formatter, std::shared_ptr<AccessLogWriter> writer)
      : formatter_(std::move(formatter)), writer_(std::move(writer)) {}
  // Request path: formats into a per-thread scratch string and queues the line (never blocks).
  void log(const AccessLogEntry& entry) const {
    thread_local std::string line;
    line.clear();
    formatter_.format(entry, line);
    writer_->write(line);
  }

 private:
  AccessLogFormatter formatter_;
  std::shared_ptr<AccessLogWriter> writer_;
};

// A listening socket shared by all workers (each polls it with EPOLLEXCLUSIVE). Closed when the
// last snapshot that names it is gone.
class ListenSocket {
 public:
  explicit ListenSocket(int fd) : fd_(fd) {}
  ~ListenSocket();
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Makes the server-side transport for an accepted socket. `first_bytes` is what MSG_PEEK saw
// (PERMISSIVE listeners tell TLS from plaintext by it); nullptr when TLS is off.
struct ListenerTlsSeam {
  enum class Mode { kDisabled, kPermissive, kStrict } mode = Mode::kDisabled;
  // Returns a TLS transport using the current certificate (reloads are picked up per accept).
  std::function<std::unique_ptr<net::Transport>(int fd)> make_tls;
};

struct ListenerStats {
  std::shared_ptr<stats::Counter> cx_total, rx_bytes, tx_bytes, protocol_error, idle_timeout,
      rq_total, rq_timeout, rq_too_large, no_route, ssl_handshake, ssl_error, ssl_no_cert,
      ssl_verify_error, ssl_san;
  // Envoy's ssl.no_certificate: TLS handshakes that succeeded without a client certificate.
  std::shared_ptr<stats::Counter> ssl_no_certificate;
  // Client certificates verified against an expired CRL (still enforced; tls_context.h).
  std::shared_ptr<stats::Counter> ssl_crl_expired;
  std::shared_ptr<stats::Gauge> cx_active, rq_active;
  std::shared_ptr<stats::Gauge> ssl_cert_expiry;  // notAfter of the served certificate (TLS only)
  std::shared_ptr<stats::Counter> rq_xx[5];       // 1xx..5xx
  std::shared_ptr<stats::Histogram> rq_time;
  // HTTP/1.1 connections switched by a 101 to a byte relay (WebSocket ...), and those open now.
  std::shared_ptr<stats::Counter> upgrades_total;
  std::shared_ptr<stats::Gauge> upgrades_active;
};

// Metric names of weft-proxy not (yet) in stats::names (docs/metrics.md lists them).
namespace names {
inline constexpr std::string_view kListenerDownstreamCxUpgrades =
    "weft_listener_downstream_cx_upgrades_total";
inline constexpr std::string_view kListenerDownstreamCxUpgradesActive =
    "weft_listener_downstream_cx_upgrades_active";
// TLS: successful handshakes without a client certificate (Envoy's ssl.no_certificate), and
// verifications that used a CRL past its nextUpdate (its revocations still enforced).
inline constexpr std::string_view kListenerSslNoCertificate =
    "weft_listener_ssl_no_certificate_total";
inline constexpr std::string_view kListenerSslCrlExpired = "weft_listener_ssl_crl_expired_total";
inline constexpr std::string_view kClusterSslCrlExpired = "weft_cluster_ssl_crl_expired_total";
// HTTP/2 upstream codec counters (http2::makeStats: <prefix>_<name>_total). Labels: cluster.
inline constexpr std::string_view kClusterHttp2Prefix = "weft_cluster_http2";
}  // namespace names

struct RouteStats {
  std::shared_ptr<stats::Counter> rq_total, rq_timeout;
  std::shared_ptr<stats::Counter> rq_xx[5];
  std::shared_ptr<stats::Histogram> rq_time;
};

struct ListenerInfo;

// One filter chain of an interception listener: which original destinations it takes, and the
// listener (HTTP router or TCP relay, sharing the parent's socket) that serves them.
struct FilterChainInfo {
  std::vector<uint16_t> ports;   // empty: any
  std::vector<net::Cidr> cidrs;  // empty: any
  std::shared_ptr<const ListenerInfo> listener;
  bool matches(const net::Address& dst) const;
};

struct ListenerInfo {
  std::string name;
  v1::Listener config;
  std::shared_ptr<ListenSocket> socket;
  std::unique_ptr<const http::Router> router;
  std::vector<RouteStats> route_stats;  // indexed by RouteEntry::index()
  // Indexed by RouteEntry::index(); a default policy never retries.
  std::vector<upstream::RetryPolicy> retry_policies;
  ListenerTlsSeam tls;
  std::shared_ptr<const net::tls::ServerContext> tls_context;  // null when TLS is off
  // Effective options (defaults applied).
  Duration request_timeout{};
  Duration idle_timeout{};
  size_t max_head_bytes = 0;
  uint64_t max_body_bytes = 0;  // 0 = unlimited
  std::string server_name;
  bool preserve_upstream_server = false;
  bool secure = false;  // x-forwarded-proto: https
  std::vector<std::shared_ptr<AccessLogSink>> access_logs;
  // Lowercase names of the headers the access logs print (%REQ(x)%, %RESP(x)%): a session keeps
  // copies of just these until the request is logged.
  std::vector<std::string> log_request_headers;
  std::vector<std::string> log_response_headers;
  ListenerStats stats;
  http2::Stats http2_stats;  // HTTP/2 flood and protocol counters (weft_listener_http2_*)
  std::shared_ptr<stats::Counter> cx_refused;  // interception: destination refused
  // TCP relay (tcp_proxy set): the cluster and the idle timeout (0 = none). Empty: HTTP.
  std::string tcp_cluster;
  Duration tcp_idle_timeout{};
  // Interception (iptables-redirected connections).
  enum class Interception { kNone, kOutbound, kInbound } interception = Interception::kNone;
  bool allow_all_egress = false;  // OUTBOUND: relay unmatched destinations (else refuse)
  std::vector<FilterChainInfo> chains;
  // For unmatched destinations that are relayed: a TCP relay listener through the passthrough
  // cluster, sharing this listener's socket and stats. Null when they are refused.
  std::shared_ptr<const ListenerInfo> passthrough;
  // An HTTP filter chain of an OUTBOUND ALLOW_ALL listener: a request whose Host matches no
  // virtual host is forwarded to its connection's original destination through the
  // passthrough cluster instead of being answered 404. Its sessions are given that destination.
  bool passthrough_unrouted = false;
  // Mesh authorization (Listener.authorization, docs/security.md): set, only peers whose verified
  // certificate matches may use this listener (HTTP: 403, TCP: closed), each refusal counted.
  std::optional<std::vector<net::tls::SanRule>> authorized_peers;
  std::shared_ptr<stats::Counter> authz_denied;
  bool authorizes(const net::PeerInfo& peer) const {
    if (!authorized_peers ||
        net::tls::peerAuthorized(peer.peer_uri_san, peer.peer_dns_san, *authorized_peers))
      return true;
    authz_denied->inc();
    return false;
  }
};

struct ClusterStats {
  std::shared_ptr<stats::Counter> cx_total, cx_connect_fail, cx_connect_timeout, cx_overflow,
      rx_bytes, tx_bytes, rq_total, rq_pending_overflow, rq_timeout, ssl_handshake, ssl_error,
      ssl_verify_error, ssl_san, rq_retry, rq_retry_success;
  // Server certificates verified against an expired CRL (still enforced; tls_context.h).
  std::shared_ptr<stats::Counter> ssl_crl_expired;
  upstream::CircuitBreakerStats breaker;
  upstream::OutlierStats outlier;
  std::shared_ptr<stats::Gauge> cx_active, rq_active, rq_pending_active, membership;
  std::shared_ptr<stats::Gauge> ssl_cert_expiry;  // notAfter of the client certificate, if any
  std::shared_ptr<stats::Counter> rq_xx[5];
  std::shared_ptr<stats::Histogram> rq_time, connect_ms;
  http2::Stats http2;  // HTTP/2 upstream connections (protocol HTTP2): weft_cluster_http2_*
};

struct ClusterInfo {
  std::string name;
  v1::Cluster config;
  // config, serialized once here: workers tell a changed cluster from an unchanged one by it.
  std::string config_key;
  upstream::LbPolicy lb_policy{};
  upstream::PoolLimits limits;
  upstream::HostSetPtr hosts;
  upstream::TransportFactory transport_factory;  // plaintext or TLS origination
  upstream::CircuitBreakerLimits breaker_limits;
  std::optional<upstream::OutlierConfig> outlier;  // outlier detection on when set
  // With outlier detection: where every worker's detector flags which of `hosts` it has ejected
  // (read by the admin's /clusters). Bound to `hosts`: a new host set comes with a new board.
  upstream::OutlierBoardPtr outlier_board;
  uint32_t panic_threshold_percent = 50;
  bool http2 = false;  // protocol HTTP2: requests go through the worker's Http2Pool
  ClusterStats stats;
};

struct Snapshot {
  uint64_t version = 0;
  v1::ProxyConfig config;
  std::vector<std::shared_ptr<const ListenerInfo>> listeners;
  std::unordered_map<std::string, std::shared_ptr<const ClusterInfo>> clusters;

  const ListenerInfo* listener(const std::string& name) const {
    for (auto& l : listeners)
      if (l->name == name) return l.get();
    return nullptr;
  }
  std::shared_ptr<const ListenerInfo> listenerPtr(const std::string& name) const {
    for (auto& l : listeners)
      if (l->name == name) return l;
    return nullptr;
  }
  const ClusterInfo* cluster(std::string_view name) const {
    auto it = clusters.find(std::string(name));
    return it == clusters.end() ? nullptr : it->second.get();
  }
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace weft::proxy
