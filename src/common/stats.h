#pragma once
// Metrics primitives: Counter, Gauge, Histogram and the Registry that names them and renders them
// for scraping (Prometheus text format 0.0.4, a plain-text /stats view and JSON).
//
// Threading model (docs/metrics.md): every metric holds one cache-line-aligned slot per worker plus
// one shared slot. A worker thread calls bindWorkerThread(w) once at start; from then on it is the
// only writer of slot w+1 of every metric, so an update is a relaxed load plus a relaxed store of
// its own slot: no lock, no atomic read-modify-write, no shared cache line. Threads that are not
// bound (main, admin, DNS, agent, tests) update the shared slot with fetch_add, which is correct
// with any number of such threads and is never on the request path. A scrape sums all slots with
// relaxed loads; it sees every update that happened-before it and may or may not see concurrent
// ones (each value is monotone for counters, so a scrape is never "torn" backwards).
//
// Creation and rendering go through the Registry's mutex; they happen at config load and on admin
// requests, never per request. Metric objects are shared_ptr-owned so that a config snapshot can
// hold the metrics it updates; the same (name, labels) always returns the same object, so values
// survive config reloads.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::stats {

// ---------------------------------------------------------------------------------------------
// Thread binding.

namespace detail {
// 0 = unbound (shared slot); w + 1 for worker w. Constant-initialised, so access is a plain TLS
// load with no init guard.
inline thread_local uint32_t t_slot = 0;
}  // namespace detail

// Declares the calling thread to be worker `worker` (0-based). Contract: at most one live thread
// is bound to a given worker index at a time (the single-writer invariant every metric and the
// access-log rings rely on). Call once when the worker thread starts.
inline void bindWorkerThread(uint32_t worker) { detail::t_slot = worker + 1; }
// Returns the calling thread to the shared slot (e.g. before a worker thread exits).
inline void unbindWorkerThread() { detail::t_slot = 0; }
// The worker index of the calling thread, or -1 if it is not bound.
inline int currentWorker() { return static_cast<int>(detail::t_slot) - 1; }

// RAII binding, mostly for tests and for worker thread bodies.
class ScopedWorkerBinding {
 public:
  explicit ScopedWorkerBinding(uint32_t worker) : previous_(detail::t_slot) {
    bindWorkerThread(worker);
  }
  ~ScopedWorkerBinding() { detail::t_slot = previous_; }
  ScopedWorkerBinding(const ScopedWorkerBinding&) = delete;
  ScopedWorkerBinding& operator=(const ScopedWorkerBinding&) = delete;

 private:
  uint32_t previous_;
};

// ---------------------------------------------------------------------------------------------
// Metrics. Constructed by the Registry; `num_workers` slots plus the shared one. A thread bound to
// a worker index >= num_workers falls back to the shared slot (still correct, just slower).

namespace detail {
struct alignas(64) U64Slot {
  std::atomic<uint64_t> v{0};
};
struct alignas(64) I64Slot {
  std::atomic<int64_t> v{0};
};

template <class Atomic, class T>
inline void slotAdd(Atomic& a, T n, bool single_writer) {
  if (single_writer) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  } else {
    a.fetch_add(n, std::memory_order_relaxed);
  }
}
}  // namespace detail

// Monotonic count. inc() from any thread; see the threading model above.
class Counter {
 public:
  explicit Counter(uint32_t num_workers)
      : num_slots_(num_workers + 1), slots_(new detail::U64Slot[num_workers + 1]) {}

  void inc(uint64_t n = 1) {
    uint32_t s = detail::t_slot;
    bool own = s != 0 && s < num_slots_;
    detail::slotAdd(slots_[own ? s : 0].v, n, own);
  }
  // Sum over all slots (relaxed).
  uint64_t value() const;

 private:
  const uint32_t num_slots_;
  std::unique_ptr<detail::U64Slot[]> slots_;
};

// A level that goes up and down (active connections, active requests). Per-slot signed values,
// summed: a connection may be counted up on one thread and down on another and the sum is still
// right. set() is for gauges owned by one non-worker thread (e.g. endpoint counts kept by the main
// thread): it stores into the shared slot and leaves the worker slots alone, so the value read
// back is set()'s value plus whatever workers added; do not mix the two on one gauge.
class Gauge {
 public:
  explicit Gauge(uint32_t num_workers)
      : num_slots_(num_workers + 1), slots_(new detail::I64Slot[num_workers + 1]) {}

  void add(int64_t n = 1) {
    uint32_t s = detail::t_slot;
    bool own = s != 0 && s < num_slots_;
    detail::slotAdd(slots_[own ? s : 0].v, n, own);
  }
  void sub(int64_t n = 1) { add(-n); }
  void set(int64_t v) { slots_[0].v.store(v, std::memory_order_relaxed); }
  int64_t value() const;

 private:
  const uint32_t num_slots_;
  std::unique_ptr<detail::I64Slot[]> slots_;
};

// Fixed latency bucket upper bounds in milliseconds (Prometheus `le` values). Bucket i counts
// observations v with bounds[i-1] < v <= bounds[i]; one more bucket (+Inf) counts the rest.
inline constexpr std::array<double, 16> kLatencyBoundsMs = {
    0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
inline constexpr size_t kNumBuckets = kLatencyBoundsMs.size() + 1;

// A consistent-enough copy of a histogram: cumulative bucket counts (the last is +Inf and equals
// `count`) and the sum of observations in milliseconds.
struct HistogramSnapshot {
  std::array<uint64_t, kNumBuckets> cumulative{};
  uint64_t count = 0;
  double sum_ms = 0;

  // Estimates the q-quantile (0 <= q <= 1) in ms the way Prometheus' histogram_quantile() does:
  // linear interpolation inside the bucket that holds rank q*count, lower edge 0 for the first
  // bucket; a rank in the +Inf bucket returns the largest finite bound. NaN when count is 0.
  double quantile(double q) const;
};

// Latency distribution. record() from any thread; see the threading model above. The count is
// derived from the buckets at scrape time, so _count always equals the +Inf bucket; _sum is read
// separately and may lag or lead the buckets by in-flight observations.
class Histogram {
 public:
  explicit Histogram(uint32_t num_workers)
      : num_slots_(num_workers + 1), slots_(new Slot[num_workers + 1]) {}

  void record(std::chrono::nanoseconds d) {
    uint64_t ns = d.count() < 0 ? 0 : static_cast<uint64_t>(d.count());
    size_t b = bucketFor(ns);
    uint32_t s = detail::t_slot;
    bool own = s != 0 && s < num_slots_;
    Slot& slot = slots_[own ? s : 0];
    detail::slotAdd(slot.buckets[b], uint64_t{1}, own);
    detail::slotAdd(slot.sum_ns, ns, own);
  }
  HistogramSnapshot snapshot() const;

  // Index of the bucket that counts `ns` nanoseconds.
  static size_t bucketFor(uint64_t ns) {
    size_t i = 0;
    while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
    return i;
  }

 private:
  static constexpr std::array<uint64_t, 16> kBoundsNs = {
      500'000,       1'000'000,      2'500'000,      5'000'000,     10'000'000,    25'000'000,
      50'000'000,    100'000'000,    250'000'000,    500'000'000,   1'000'000'000, 2'500'000'000,
      5'000'000'000, 10'000'000'000, 30'000'000'000, 60'000'000'000};
  struct alignas(64) Slot {
    std::array<std::atomic<uint64_t>, kNumBuckets> buckets{};
    std::atomic<uint64_t> sum_ns{0};
  };
  const uint32_t num_slots_;
  std::unique_ptr<Slot[]> slots_;
};

// ---------------------------------------------------------------------------------------------
// Registry.

// Ordered label pairs. Identity is the exact sequence: {a,b} and {b,a} are different series, so
// always pass labels in the same order (the constants in `names` below document the order).
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

// Naming convention (checked, fatal on violation since names are compile-time constants):
//  - metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and do not
//    start with "__";
//  - counter names end in "_total"; gauge and histogram names do not;
//  - the name passed here is exactly the name exposed (no prefix or suffix is added), except that
//    histograms expose name_bucket, name_sum and name_count.
// One name has one type: asking for a counter named like an existing gauge is fatal.
class Registry {
 public:
  // `num_workers`: how many worker threads will bind (bindWorkerThread(0..num_workers-1)).
  explicit Registry(uint32_t num_workers);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Thread-safe. Returns the existing metric for (name, labels) or creates it (value 0).
  std::shared_ptr<Counter> counter(std::string_view name, Labels labels = {});
  std::shared_ptr<Gauge> gauge(std::string_view name, Labels labels = {});
  std::shared_ptr<Histogram> histogram(std::string_view name, Labels labels = {});

  // Drops metrics nobody but the registry holds (e.g. those of a cluster removed by a config
  // reload, once the old snapshot is gone). Returns how many were dropped. Their values are lost;
  // if the same series is created again it starts from 0, which Prometheus treats as a reset.
  size_t prune();

  // Prometheus text exposition format 0.0.4. Families sorted by name, series by labels; one
  // "# HELP" (for names in `names`) and one "# TYPE" line per family.
  std::string renderPrometheus() const;
  // For /stats: one line per series, sorted: `name{k="v"}: 42`; histograms as
  // `name{...}: P50=1.2 P99=48 count=1000` (ms; "-" when empty).
  std::string renderText() const;
  // For /stats?format=json: {"stats":[{"name":..,"labels":{..},"type":"counter","value":42},..,
  // {"name":..,"type":"histogram","count":..,"sum_ms":..,"p50":..,"p99":..}]} (p50/p99 null when
  // empty).
  std::string renderJson() const;

  uint32_t numWorkers() const { return num_workers_; }

  // Labels added in front of every series' own labels when rendering (all three formats), like
  // Prometheus client libraries' "constant labels": e.g. appmesh_mesh and appmesh_virtual_node
  // once the proxy knows its resource. A series that has a label of the same name keeps its own
  // value. Names must be valid label names (checked, fatal). Replaces the previous set.
  // Thread-safe; applied at exposition time, so it costs nothing on the request path.
  void setConstantLabels(Labels labels);
  Labels constantLabels() const;

 private:
  struct Family;
  template <class T>
  std::shared_ptr<T> get(std::string_view name, Labels&& labels, MetricType type);

  const uint32_t num_workers_;
  mutable std::mutex mu_;  // guards families_ (not the metric values)
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
  Labels constant_labels_;  // guarded by mu_
};

// "2xx" for 200..299 etc.; "1xx".."5xx"; anything else (including 0) is "other".
std::string_view responseCodeClass(int status);

// Help text for a metric name defined in `names`, or empty.
std::string_view helpFor(std::string_view name);

// ---------------------------------------------------------------------------------------------
// Names used by weft-proxy. Listed with types and labels in docs/metrics.md; close to Envoy's
// names (envoy_cluster_upstream_rq_total -> weft_cluster_upstream_rq_total). Histograms are in ms.
namespace names {

// Label keys.
inline constexpr std::string_view kLabelListener = "listener";
inline constexpr std::string_view kLabelCluster = "cluster";
inline constexpr std::string_view kLabelVirtualHost = "virtual_host";
inline constexpr std::string_view kLabelRoute = "route";
inline constexpr std::string_view kLabelResponseCodeClass = "response_code_class";
inline constexpr std::string_view kLabelPath = "path";

// Server. No labels.
inline constexpr std::string_view kServerConcurrency = "weft_server_concurrency";
inline constexpr std::string_view kServerUptimeSeconds = "weft_server_uptime_seconds";
inline constexpr std::string_view kServerConfigUpdateSuccess =
    "weft_server_config_update_success_total";
inline constexpr std::string_view kServerConfigUpdateRejected =
    "weft_server_config_update_rejected_total";

// Control plane (weft-proxy --control-plane). No labels.
inline constexpr std::string_view kControlPlaneConnected = "weft_control_plane_connected";
inline constexpr std::string_view kControlPlaneUpdateSuccess =
    "weft_control_plane_update_success_total";
inline constexpr std::string_view kControlPlaneUpdateRejected =
    "weft_control_plane_update_rejected_total";
// Constant labels (Registry::setConstantLabels) naming the proxy's App Mesh resource.
inline constexpr std::string_view kLabelAppMeshMesh = "appmesh_mesh";
inline constexpr std::string_view kLabelAppMeshVirtualNode = "appmesh_virtual_node";
inline constexpr std::string_view kLabelAppMeshVirtualGateway = "appmesh_virtual_gateway";

// Listener. Labels: listener (+ response_code_class for the _xx_ counter).
inline constexpr std::string_view kListenerDownstreamCxTotal = "weft_listener_downstream_cx_total";
inline constexpr std::string_view kListenerDownstreamCxActive =
    "weft_listener_downstream_cx_active";
inline constexpr std::string_view kListenerDownstreamCxRxBytes =
    "weft_listener_downstream_cx_rx_bytes_total";
inline constexpr std::string_view kListenerDownstreamCxTxBytes =
    "weft_listener_downstream_cx_tx_bytes_total";
inline constexpr std::string_view kListenerDownstreamCxProtocolError =
    "weft_listener_downstream_cx_protocol_error_total";
inline constexpr std::string_view kListenerDownstreamCxIdleTimeout =
    "weft_listener_downstream_cx_idle_timeout_total";
inline constexpr std::string_view kListenerDownstreamRqTotal = "weft_listener_downstream_rq_total";
inline constexpr std::string_view kListenerDownstreamRqActive =
    "weft_listener_downstream_rq_active";
inline constexpr std::string_view kListenerDownstreamRqXx = "weft_listener_downstream_rq_xx_total";
inline constexpr std::string_view kListenerDownstreamRqTimeout =
    "weft_listener_downstream_rq_timeout_total";
inline constexpr std::string_view kListenerDownstreamRqTooLarge =
    "weft_listener_downstream_rq_too_large_total";
inline constexpr std::string_view kListenerDownstreamRqTime = "weft_listener_downstream_rq_time";
inline constexpr std::string_view kListenerNoRoute = "weft_listener_no_route_total";
// Interception listeners: connections refused (egress filter DROP_ALL, or not redirected).
inline constexpr std::string_view kListenerEgressRefused =
    "weft_listener_downstream_cx_refused_total";
inline constexpr std::string_view kListenerSslHandshake = "weft_listener_ssl_handshake_total";
inline constexpr std::string_view kListenerSslConnectionError =
    "weft_listener_ssl_connection_error_total";
inline constexpr std::string_view kListenerSslFailVerifyNoCert =
    "weft_listener_ssl_fail_verify_no_cert_total";
inline constexpr std::string_view kListenerSslFailVerifyError =
    "weft_listener_ssl_fail_verify_error_total";
inline constexpr std::string_view kListenerSslFailVerifySan =
    "weft_listener_ssl_fail_verify_san_total";
// HTTP/2 downstream (http2::makeStats registers <prefix>_<name>_total). Labels: listener.
inline constexpr std::string_view kListenerHttp2Prefix = "weft_listener_http2";
inline constexpr std::string_view kListenerHttp2RapidReset =
    "weft_listener_http2_rapid_reset_total";
inline constexpr std::string_view kListenerHttp2PingFlood = "weft_listener_http2_ping_flood_total";
inline constexpr std::string_view kListenerHttp2SettingsFlood =
    "weft_listener_http2_settings_flood_total";
inline constexpr std::string_view kListenerHttp2ContinuationFlood =
    "weft_listener_http2_continuation_flood_total";
inline constexpr std::string_view kListenerHttp2EmptyFrameFlood =
    "weft_listener_http2_empty_frame_flood_total";
inline constexpr std::string_view kListenerHttp2HeaderOverflow =
    "weft_listener_http2_header_overflow_total";
inline constexpr std::string_view kListenerHttp2InvalidFrame =
    "weft_listener_http2_invalid_frame_total";
inline constexpr std::string_view kListenerHttp2ProtocolError =
    "weft_listener_http2_protocol_error_total";

// Cluster. Labels: cluster (+ response_code_class for the _xx_ counter).
inline constexpr std::string_view kClusterUpstreamCxTotal = "weft_cluster_upstream_cx_total";
inline constexpr std::string_view kClusterUpstreamCxActive = "weft_cluster_upstream_cx_active";
inline constexpr std::string_view kClusterUpstreamCxConnectFail =
    "weft_cluster_upstream_cx_connect_fail_total";
inline constexpr std::string_view kClusterUpstreamCxConnectTimeout =
    "weft_cluster_upstream_cx_connect_timeout_total";
inline constexpr std::string_view kClusterUpstreamCxOverflow =
    "weft_cluster_upstream_cx_overflow_total";
inline constexpr std::string_view kClusterUpstreamCxRxBytes =
    "weft_cluster_upstream_cx_rx_bytes_total";
inline constexpr std::string_view kClusterUpstreamCxTxBytes =
    "weft_cluster_upstream_cx_tx_bytes_total";
inline constexpr std::string_view kClusterUpstreamCxConnectMs =
    "weft_cluster_upstream_cx_connect_ms";
inline constexpr std::string_view kClusterUpstreamRqTotal = "weft_cluster_upstream_rq_total";
inline constexpr std::string_view kClusterUpstreamRqActive = "weft_cluster_upstream_rq_active";
inline constexpr std::string_view kClusterUpstreamRqPendingActive =
    "weft_cluster_upstream_rq_pending_active";
inline constexpr std::string_view kClusterUpstreamRqPendingOverflow =
    "weft_cluster_upstream_rq_pending_overflow_total";
inline constexpr std::string_view kClusterUpstreamRqXx = "weft_cluster_upstream_rq_xx_total";
inline constexpr std::string_view kClusterUpstreamRqTimeout =
    "weft_cluster_upstream_rq_timeout_total";
inline constexpr std::string_view kClusterUpstreamRqRetry = "weft_cluster_upstream_rq_retry_total";
inline constexpr std::string_view kClusterUpstreamRqRetrySuccess =
    "weft_cluster_upstream_rq_retry_success_total";
inline constexpr std::string_view kClusterUpstreamRqRetryOverflow =
    "weft_cluster_upstream_rq_retry_overflow_total";
inline constexpr std::string_view kClusterUpstreamRqOverflow =
    "weft_cluster_upstream_rq_overflow_total";
inline constexpr std::string_view kClusterUpstreamRqTime = "weft_cluster_upstream_rq_time";
inline constexpr std::string_view kClusterSslHandshake = "weft_cluster_ssl_handshake_total";
inline constexpr std::string_view kClusterSslConnectionError =
    "weft_cluster_ssl_connection_error_total";
inline constexpr std::string_view kClusterSslFailVerifyError =
    "weft_cluster_ssl_fail_verify_error_total";
inline constexpr std::string_view kClusterSslFailVerifySan =
    "weft_cluster_ssl_fail_verify_san_total";
inline constexpr std::string_view kClusterMembershipEndpoints = "weft_cluster_membership_endpoints";
inline constexpr std::string_view kClusterMembershipHealthy = "weft_cluster_membership_healthy";
inline constexpr std::string_view kClusterHealthCheckAttempt =
    "weft_cluster_health_check_attempt_total";
inline constexpr std::string_view kClusterHealthCheckFailure =
    "weft_cluster_health_check_failure_total";
inline constexpr std::string_view kClusterOutlierEjectionsActive =
    "weft_cluster_outlier_detection_ejections_active";
inline constexpr std::string_view kClusterOutlierEjectionsEnforced =
    "weft_cluster_outlier_detection_ejections_enforced_total";
inline constexpr std::string_view kClusterOutlierEjectionsOverflow =
    "weft_cluster_outlier_detection_ejections_overflow_total";
inline constexpr std::string_view kClusterUpdateAttempt = "weft_cluster_update_attempt_total";
inline constexpr std::string_view kClusterUpdateFailure = "weft_cluster_update_failure_total";

// Route. Labels: listener, virtual_host, route (+ response_code_class for the _xx_ counter).
inline constexpr std::string_view kRouteUpstreamRqTotal = "weft_route_upstream_rq_total";
inline constexpr std::string_view kRouteUpstreamRqXx = "weft_route_upstream_rq_xx_total";
inline constexpr std::string_view kRouteUpstreamRqTimeout = "weft_route_upstream_rq_timeout_total";
inline constexpr std::string_view kRouteUpstreamRqTime = "weft_route_upstream_rq_time";

// Access log. Labels: path.
inline constexpr std::string_view kAccessLogDropped = "weft_access_log_dropped_total";
inline constexpr std::string_view kAccessLogWriteErrors = "weft_access_log_write_errors_total";

}  // namespace names

}  // namespace weft::stats
