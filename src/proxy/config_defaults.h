#pragma once
// The one place that knows weft-proxy's configuration defaults (as stated in
// api/weft/v1/config.proto). Every module reads effective values through these accessors instead
// of testing fields itself, so a default changes in one place.
//
// Durations: an unset Duration field yields its default; a set one yields its value rounded UP to
// whole milliseconds (so a positive value never becomes 0) and clamped at 0 (validation rejects
// negative durations). A returned zero means the user wrote "0s", which consumers treat as
// "disabled" (the proto states this for request_timeout).
//
// All functions are pure and thread-safe.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "upstream/circuit_breaker.h"
#include "upstream/health_checker.h"
#include "upstream/outlier_detector.h"
#include "upstream/retry.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

inline constexpr char kDefaultAdminAddress[] = "127.0.0.1";
inline constexpr uint32_t kDefaultAdminPort = 9901;
inline constexpr char kDefaultListenerAddress[] = "0.0.0.0";
inline constexpr std::chrono::milliseconds kDefaultRequestTimeout{15'000};
inline constexpr std::chrono::milliseconds kDefaultIdleTimeout{300'000};
inline constexpr char kDefaultServerName[] = "weft";
inline constexpr uint32_t kDefaultMaxRequestHeadersKb = 60;
inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{5'000};
inline constexpr std::chrono::milliseconds kDefaultClusterIdleTimeout{300'000};
inline constexpr uint32_t kDefaultMaxConnections = 1024;
inline constexpr uint32_t kDefaultMaxPendingRequests = 1024;
inline constexpr std::chrono::milliseconds kDefaultDrainTime{10'000};
inline constexpr char kDefaultAlpn[] = "http/1.1";
inline constexpr char kDefaultHttp2Alpn[] = "h2";
inline constexpr std::chrono::milliseconds kDefaultDnsMinRefresh{5'000};
inline constexpr uint32_t kDefaultSingleTargetWeight = 1;
inline constexpr std::chrono::milliseconds kDefaultTcpIdleTimeout{300'000};
// The cluster an interception listener relays unmatched (ALLOW_ALL / INBOUND) connections
// through; the server adds it to every config that has an interception listener.
inline constexpr char kPassthroughCluster[] = "passthrough";

// Converts a Duration to milliseconds, rounding up and clamping negatives to 0.
inline std::chrono::milliseconds toMillis(const google::protobuf::Duration& d) {
  if (d.seconds() < 0 || d.nanos() < 0) return std::chrono::milliseconds(0);
  int64_t ms = d.seconds() * 1000 + d.nanos() / 1'000'000;
  if (d.nanos() % 1'000'000 != 0) ++ms;
  return std::chrono::milliseconds(ms);
}

// ---- ProxyConfig / Admin ----

inline std::chrono::milliseconds drainTime(const v1::ProxyConfig& c) {
  return c.has_drain_time() ? toMillis(c.drain_time()) : kDefaultDrainTime;
}
inline std::string adminAddress(const v1::Admin& a) {
  return a.address().empty() ? std::string(kDefaultAdminAddress) : a.address();
}
// 0 (written explicitly) means "pick a free port".
inline uint32_t adminPort(const v1::Admin& a) {
  return a.has_port() ? a.port() : kDefaultAdminPort;
}

// ---- Listener ----

inline std::chrono::milliseconds tcpIdleTimeout(const v1::TcpProxy& t) {
  return t.has_idle_timeout() ? toMillis(t.idle_timeout()) : kDefaultTcpIdleTimeout;
}

inline std::string listenerAddress(const v1::Listener& l) {
  return l.address().empty() ? std::string(kDefaultListenerAddress) : l.address();
}

// Listener ALPN list offered in TLS handshakes: HTTP listeners offer h2 first, then http/1.1;
// TCP relay listeners keep http/1.1 (they do not speak HTTP/2 themselves).
inline std::vector<std::string> listenerAlpn(const v1::Listener& l) {
  const v1::ListenerTls& t = l.tls();
  if (!t.alpn().empty()) return {t.alpn().begin(), t.alpn().end()};
  if (l.has_tcp_proxy()) return {kDefaultAlpn};
  return {kDefaultHttp2Alpn, kDefaultAlpn};
}

inline std::chrono::milliseconds requestTimeout(const v1::HttpOptions& h) {
  return h.has_request_timeout() ? toMillis(h.request_timeout()) : kDefaultRequestTimeout;
}
inline std::chrono::milliseconds idleTimeout(const v1::HttpOptions& h) {
  return h.has_idle_timeout() ? toMillis(h.idle_timeout()) : kDefaultIdleTimeout;
}
inline std::string serverName(const v1::HttpOptions& h) {
  return h.server_name().empty() ? std::string(kDefaultServerName) : h.server_name();
}
inline uint32_t maxRequestHeadersKb(const v1::HttpOptions& h) {
  return h.max_request_headers_kb() == 0 ? kDefaultMaxRequestHeadersKb : h.max_request_headers_kb();
}
inline size_t maxRequestHeadersBytes(const v1::HttpOptions& h) {
  return size_t{maxRequestHeadersKb(h)} * 1024;
}

// ---- Routes ----

// The route's timeout if set, else the listener's request timeout.
inline std::chrono::milliseconds routeTimeout(const v1::RouteAction& r, const v1::HttpOptions& h) {
  return r.has_timeout() ? toMillis(r.timeout()) : requestTimeout(h);
}
// The route's idle timeout if set, else the listener's idle timeout.
inline std::chrono::milliseconds routeIdleTimeout(const v1::RouteAction& r,
                                                  const v1::HttpOptions& h) {
  return r.has_idle_timeout() ? toMillis(r.idle_timeout()) : idleTimeout(h);
}
// Weight of target `index` (0 <= index < r.clusters_size()): a lone target with weight 0 (unset)
// gets 1; with several targets 0 means "no traffic".
inline uint32_t targetWeight(const v1::RouteAction& r, int index) {
  uint32_t w = r.clusters(index).weight();
  if (w == 0 && r.clusters_size() == 1) return kDefaultSingleTargetWeight;
  return w;
}

// ---- Clusters ----

inline std::chrono::milliseconds connectTimeout(const v1::Cluster& c) {
  return c.has_connect_timeout() ? toMillis(c.connect_timeout()) : kDefaultConnectTimeout;
}
inline std::chrono::milliseconds clusterIdleTimeout(const v1::Cluster& c) {
  return c.has_idle_timeout() ? toMillis(c.idle_timeout()) : kDefaultClusterIdleTimeout;
}
inline uint32_t maxConnections(const v1::Cluster& c) {
  return c.max_connections() == 0 ? kDefaultMaxConnections : c.max_connections();
}
inline uint32_t maxPendingRequests(const v1::Cluster& c) {
  return c.max_pending_requests() == 0 ? kDefaultMaxPendingRequests : c.max_pending_requests();
}
inline std::chrono::milliseconds dnsMinRefresh(const v1::Cluster& c) {
  return c.has_dns_min_refresh() ? toMillis(c.dns_min_refresh()) : kDefaultDnsMinRefresh;
}
// SNI for a TLS connection to `endpoint`: tls.sni if set, else the endpoint's hostname for DNS
// clusters, else "" (no SNI: STATIC endpoints are IP literals, which SNI may not carry).
inline std::string upstreamSni(const v1::Cluster& c, const v1::Endpoint& endpoint) {
  if (!c.tls().sni().empty()) return c.tls().sni();
  if (c.type() == v1::Cluster::DNS) return endpoint.address();
  return {};
}

// Returns `config` with every default above written into the message explicitly (durations as
// Duration values). Useful for showing the effective config; code should prefer the accessors.
// Listener TLS ALPN is filled only for listeners whose tls.mode is not DISABLED, and HttpOptions
// are created for every listener.
v1::ProxyConfig withDefaults(v1::ProxyConfig config);

// ---- Resilience (docs/resilience.md) ----

inline upstream::RetryPolicyConfig retryConfig(const v1::RetryPolicy& r) {
  upstream::RetryPolicyConfig c;
  c.max_retries = r.max_retries();
  if (r.has_per_try_timeout()) c.per_try_timeout = toMillis(r.per_try_timeout());
  c.http_retry_events.assign(r.http_retry_events().begin(), r.http_retry_events().end());
  c.tcp_retry_events.assign(r.tcp_retry_events().begin(), r.tcp_retry_events().end());
  c.grpc_retry_events.assign(r.grpc_retry_events().begin(), r.grpc_retry_events().end());
  return c;
}

inline upstream::HealthCheckConfig healthCheckConfig(const v1::HealthCheck& h) {
  upstream::HealthCheckConfig c;
  if (h.has_interval()) c.interval = toMillis(h.interval());
  if (h.has_timeout()) c.timeout = toMillis(h.timeout());
  if (h.healthy_threshold()) c.healthy_threshold = h.healthy_threshold();
  if (h.unhealthy_threshold()) c.unhealthy_threshold = h.unhealthy_threshold();
  return c;
}

inline upstream::OutlierConfig outlierConfig(const v1::OutlierDetection& o) {
  upstream::OutlierConfig c;
  if (o.max_server_errors()) {
    c.consecutive_5xx = o.max_server_errors();
    c.consecutive_gateway_failure = o.max_server_errors();
  }
  if (o.has_interval()) c.interval = toMillis(o.interval());
  if (o.has_base_ejection_duration()) c.base_ejection_time = toMillis(o.base_ejection_duration());
  if (o.max_ejection_percent()) c.max_ejection_percent = o.max_ejection_percent();
  return c;
}

inline upstream::CircuitBreakerLimits breakerLimits(const v1::Cluster& c) {
  upstream::CircuitBreakerLimits l;
  if (c.max_connections()) l.max_connections = c.max_connections();
  if (c.max_pending_requests()) l.max_pending_requests = c.max_pending_requests();
  if (c.max_requests()) l.max_requests = c.max_requests();
  l.retry_budget = upstream::RetryBudget{};
  return l;
}

inline uint32_t panicThresholdPercent(const v1::Cluster& c) {
  return c.has_panic_threshold_percent() ? c.panic_threshold_percent() : 50;
}

}  // namespace weft::proxy
