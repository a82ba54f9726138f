#include "common/stats.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <variant>

#include "common/json.h"
#include "common/log.h"

namespace weft::stats {

// ---------------------------------------------------------------------------------------------
// Metric values.

uint64_t Counter::value() const {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < num_slots_; ++i) sum += slots_[i].v.load(std::memory_order_relaxed);
  return sum;
}

int64_t Gauge::value() const {
  int64_t sum = 0;
  for (uint32_t i = 0; i < num_slots_; ++i) sum += slots_[i].v.load(std::memory_order_relaxed);
  return sum;
}

HistogramSnapshot Histogram::snapshot() const {
  HistogramSnapshot snap;
  std::array<uint64_t, kNumBuckets> per_bucket{};
  uint64_t sum_ns = 0;
  for (uint32_t i = 0; i < num_slots_; ++i) {
    const Slot& slot = slots_[i];
    for (size_t b = 0; b < kNumBuckets; ++b) {
      per_bucket[b] += slot.buckets[b].load(std::memory_order_relaxed);
    }
    sum_ns += slot.sum_ns.load(std::memory_order_relaxed);
  }
  uint64_t running = 0;
  for (size_t b = 0; b < kNumBuckets; ++b) {
    running += per_bucket[b];
    snap.cumulative[b] = running;
  }
  snap.count = running;
  snap.sum_ms = static_cast<double>(sum_ns) / 1e6;
  return snap;
}

double HistogramSnapshot::quantile(double q) const {
  if (count == 0 || std::isnan(q)) return std::numeric_limits<double>::quiet_NaN();
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  double rank = q * static_cast<double>(count);
  size_t b = 0;
  // First bucket that reaches the rank and is not an empty leading bucket.
  while (b < kNumBuckets - 1 && (cumulative[b] == 0 || static_cast<double>(cumulative[b]) < rank)) {
    ++b;
  }
  if (b == kNumBuckets - 1) return kLatencyBoundsMs.back();
  double lower = b == 0 ? 0.0 : kLatencyBoundsMs[b - 1];
  double upper = kLatencyBoundsMs[b];
  uint64_t below = b == 0 ? 0 : cumulative[b - 1];
  uint64_t in_bucket = cumulative[b] - below;
  if (in_bucket == 0) return upper;  // defensive; the search above never stops on one
  return lower + (upper - lower) * ((rank - static_cast<double>(below)) / in_bucket);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

std::string_view responseCodeClass(int status) {
  switch (status / 100) {
    case 1:
      return "1xx";
    case 2:
      return "2xx";
    case 3:
      return "3xx";
    case 4:
      return "4xx";
    case 5:
      return "5xx";
    default:
      return "other";
  }
}

namespace {

bool validMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool validLabelName(std::string_view s) {
  if (s.empty() || s.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

const char* typeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Prometheus float: shortest round-trip representation; NaN and infinities spelled its way.
void appendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

// Label value escaping of the text format: backslash, double quote and line feed.
void appendLabelValue(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// HELP text escaping: backslash and line feed.
void appendHelp(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

bool hasLabel(const Labels& labels, std::string_view key) {
  for (const auto& [k, v] : labels)
    if (k == key) return true;
  return false;
}

// The constant labels a series shows: those it does not carry itself.
Labels effectiveConstants(const Labels& constant, const Labels& labels) {
  Labels out;
  for (const auto& kv : constant)
    if (!hasLabel(labels, kv.first)) out.push_back(kv);
  return out;
}

// `{c="1",k="v",k2="v2"}`: the constant labels (those the series does not have), the series'
// own, and an optional extra trailing pair (the histogram `le`); nothing if all are empty.
void appendLabels(std::string& out, const Labels& constant, const Labels& labels,
                  std::string_view extra_key = {}, std::string_view extra_value = {}) {
  Labels shown = effectiveConstants(constant, labels);
  shown.insert(shown.end(), labels.begin(), labels.end());
  if (shown.empty() && extra_key.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : shown) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    appendLabelValue(out, v);
    out += '"';
  }
  if (!extra_key.empty()) {
    if (!first) out += ',';
    out += extra_key;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

// JSON has no NaN: quantiles of an empty histogram are null.
void appendJsonNumber(std::string& out, double v) {
  if (std::isnan(v) || std::isinf(v)) {
    out += "null";
  } else {
    appendDouble(out, v);
  }
}

struct HelpEntry {
  std::string_view name;
  std::string_view help;
};

// Keep in step with `names` in stats.h and docs/metrics.md.
constexpr HelpEntry kHelp[] = {
    {names::kServerConcurrency, "Number of worker threads."},
    {names::kServerUptimeSeconds, "Seconds since the proxy started."},
    {names::kServerConfigUpdateSuccess, "Configurations accepted and applied."},
    {names::kServerConfigUpdateRejected, "Configurations rejected as invalid."},
    {names::kControlPlaneConnected,
     "1 while the config stream to the control plane is open, else 0."},
    {names::kControlPlaneUpdateSuccess,
     "Config versions from the control plane applied (or already running) and acknowledged."},
    {names::kControlPlaneUpdateRejected,
     "Config versions from the control plane rejected (NACKed); the previous config stays."},
    {names::kListenerDownstreamCxTotal, "Downstream connections accepted."},
    {names::kListenerDownstreamCxActive, "Downstream connections open."},
    {names::kListenerDownstreamCxRxBytes, "Bytes received from downstream connections."},
    {names::kListenerDownstreamCxTxBytes, "Bytes sent to downstream connections."},
    {names::kListenerDownstreamCxProtocolError,
     "Downstream connections closed on a protocol error."},
    {names::kListenerDownstreamCxIdleTimeout, "Downstream connections closed by the idle timeout."},
    {names::kListenerDownstreamRqTotal, "Downstream requests received."},
    {names::kListenerDownstreamRqActive, "Downstream requests in flight."},
    {names::kListenerDownstreamRqXx, "Downstream responses by status class."},
    {names::kListenerDownstreamRqTimeout, "Downstream requests ended by the request timeout."},
    {names::kListenerDownstreamRqTooLarge, "Downstream requests rejected as too large (413/431)."},
    {names::kListenerDownstreamRqTime,
     "Downstream request duration in ms, first byte received to last byte sent."},
    {names::kListenerNoRoute, "Requests that matched no route (404)."},
    {names::kListenerSslHandshake, "Successful downstream TLS handshakes."},
    {names::kListenerSslConnectionError, "Downstream TLS handshakes that failed."},
    {names::kListenerSslFailVerifyNoCert,
     "Downstream TLS handshakes without a required client "
     "certificate."},
    {names::kListenerSslFailVerifyError, "Client certificates that failed chain verification."},
    {names::kListenerSslFailVerifySan, "Client certificates whose SANs matched no matcher."},
    {names::kListenerHttp2RapidReset,
     "HTTP/2 connections ended for resetting streams too fast (rapid reset)."},
    {names::kListenerHttp2PingFlood, "HTTP/2 connections ended for a PING flood."},
    {names::kListenerHttp2SettingsFlood, "HTTP/2 connections ended for a SETTINGS flood."},
    {names::kListenerHttp2ContinuationFlood, "HTTP/2 connections ended for a CONTINUATION flood."},
    {names::kListenerHttp2EmptyFrameFlood, "HTTP/2 connections ended for empty DATA frames."},
    {names::kListenerHttp2HeaderOverflow, "HTTP/2 header blocks over the header limits (431)."},
    {names::kListenerHttp2InvalidFrame, "HTTP/2 frames rejected as invalid."},
    {names::kListenerHttp2ProtocolError, "HTTP/2 connections ended by a protocol error."},
    {names::kClusterUpstreamCxTotal, "Upstream connections opened."},
    {names::kClusterUpstreamCxActive, "Upstream connections open."},
    {names::kClusterUpstreamCxConnectFail, "Upstream connection attempts that failed."},
    {names::kClusterUpstreamCxConnectTimeout, "Upstream connection attempts that timed out."},
    {names::kClusterUpstreamCxOverflow, "Times the connection limit (max_connections) was hit."},
    {names::kClusterUpstreamCxRxBytes, "Bytes received from upstream connections."},
    {names::kClusterUpstreamCxTxBytes, "Bytes sent to upstream connections."},
    {names::kClusterUpstreamCxConnectMs, "Upstream connect duration in ms."},
    {names::kClusterUpstreamRqTotal, "Requests sent upstream."},
    {names::kClusterUpstreamRqActive, "Upstream requests in flight."},
    {names::kClusterUpstreamRqPendingActive, "Requests waiting for an upstream connection."},
    {names::kClusterUpstreamRqPendingOverflow,
     "Requests rejected because the pending queue (max_pending_requests) was full."},
    {names::kClusterUpstreamRqXx, "Upstream responses by status class."},
    {names::kClusterUpstreamRqTimeout, "Upstream requests ended by a timeout."},
    {names::kClusterUpstreamRqRetry, "Upstream request retries."},
    {names::kClusterUpstreamRqRetrySuccess, "Requests that succeeded after a retry."},
    {names::kClusterUpstreamRqRetryOverflow,
     "Retries not made because the retry budget was spent (circuit breaker)."},
    {names::kClusterUpstreamRqOverflow,
     "Requests refused with 503 because max_requests were in flight (circuit breaker)."},
    {names::kClusterUpstreamRqTime, "Upstream request duration in ms, to the last response byte."},
    {names::kClusterSslHandshake, "Successful upstream TLS handshakes."},
    {names::kClusterSslConnectionError, "Upstream TLS handshakes that failed."},
    {names::kClusterSslFailVerifyError, "Upstream certificates that failed chain verification."},
    {names::kClusterSslFailVerifySan, "Upstream certificates whose SANs matched no matcher."},
    {names::kClusterMembershipEndpoints, "Endpoints currently in the cluster."},
    {names::kClusterMembershipHealthy, "Endpoints currently considered healthy."},
    {names::kClusterHealthCheckAttempt, "Active health checks sent."},
    {names::kClusterHealthCheckFailure, "Active health checks that failed."},
    {names::kClusterOutlierEjectionsActive, "Endpoints currently ejected by outlier detection."},
    {names::kClusterOutlierEjectionsEnforced, "Outlier ejections performed."},
    {names::kClusterOutlierEjectionsOverflow,
     "Outlier ejections skipped because max_ejection_percent was reached."},
    {names::kClusterUpdateAttempt, "DNS resolutions of the cluster's endpoints."},
    {names::kClusterUpdateFailure, "DNS resolutions that failed."},
    {names::kRouteUpstreamRqTotal, "Requests matched by the route and sent upstream."},
    {names::kRouteUpstreamRqXx, "Responses to requests of the route, by status class."},
    {names::kRouteUpstreamRqTimeout, "Requests of the route ended by a timeout."},
    {names::kRouteUpstreamRqTime, "Duration in ms of requests of the route."},
    {names::kAccessLogDropped, "Access log lines dropped because the worker's buffer was full."},
    {names::kAccessLogWriteErrors, "Failed writes to the access log file."},
};

}  // namespace

std::string_view helpFor(std::string_view name) {
  for (const auto& e : kHelp) {
    if (e.name == name) return e.help;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Registry.

struct Registry::Family {
  MetricType type;
  // Series keyed by labels; values are Counter, Gauge or Histogram according to `type`.
  std::map<Labels, std::shared_ptr<void>> series;
};

Registry::Registry(uint32_t num_workers) : num_workers_(num_workers) {}
Registry::~Registry() = default;

template <class T>
std::shared_ptr<T> Registry::get(std::string_view name, Labels&& labels, MetricType type) {
  WEFT_CHECK(validMetricName(name), "invalid metric name: " + std::string(name));
  WEFT_CHECK(endsWith(name, "_total") == (type == MetricType::kCounter),
             "metric " + std::string(name) +
                 ": counter names must end in _total and other names must not");
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& key = labels[i].first;
    WEFT_CHECK(validLabelName(key), "metric " + std::string(name) + ": invalid label name " + key);
    WEFT_CHECK(!(type == MetricType::kHistogram && key == "le"),
               "metric " + std::string(name) + ": histogram label `le` is reserved");
    for (size_t j = 0; j < i; ++j) {
      WEFT_CHECK(labels[j].first != key,
                 "metric " + std::string(name) + ": duplicate label name " + key);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto family = std::make_unique<Family>();
    family->type = type;
    it = families_.emplace(std::string(name), std::move(family)).first;
  }
  Family& family = *it->second;
  WEFT_CHECK(family.type == type, "metric " + std::string(name) + " already registered as a " +
                                      typeName(family.type) + ", requested as a " + typeName(type));
  auto [sit, inserted] = family.series.try_emplace(std::move(labels));
  if (inserted) sit->second = std::make_shared<T>(num_workers_);
  return std::static_pointer_cast<T>(sit->second);
}

std::shared_ptr<Counter> Registry::counter(std::string_view name, Labels labels) {
  return get<Counter>(name, std::move(labels), MetricType::kCounter);
}
std::shared_ptr<Gauge> Registry::gauge(std::string_view name, Labels labels) {
  return get<Gauge>(name, std::move(labels), MetricType::kGauge);
}
std::shared_ptr<Histogram> Registry::histogram(std::string_view name, Labels labels) {
  return get<Histogram>(name, std::move(labels), MetricType::kHistogram);
}

void Registry::setConstantLabels(Labels labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    WEFT_CHECK(validLabelName(labels[i].first), "invalid constant label name " + labels[i].first);
    for (size_t j = 0; j < i; ++j) {
      WEFT_CHECK(labels[j].first != labels[i].first,
                 "duplicate constant label name " + labels[i].first);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  constant_labels_ = std::move(labels);
}

Labels Registry::constantLabels() const {
  std::lock_guard<std::mutex> lock(mu_);
  return constant_labels_;
}

size_t Registry::prune() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t dropped = 0;
  for (auto fit = families_.begin(); fit != families_.end();) {
    auto& series = fit->second->series;
    // use_count() == 1 is stable here: a new owner can only be made by copying the registry's
    // pointer, which happens under mu_.
    for (auto sit = series.begin(); sit != series.end();) {
      if (sit->second.use_count() == 1) {
        sit = series.erase(sit);
        ++dropped;
      } else {
        ++sit;
      }
    }
    fit = series.empty() ? families_.erase(fit) : std::next(fit);
  }
  return dropped;
}

std::string Registry::renderPrometheus() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) {
    std::string_view help = helpFor(name);
    if (!help.empty()) {
      out += "# HELP ";
      out += name;
      out += ' ';
      appendHelp(out, help);
      out += '\n';
    }
    out += "# TYPE ";
    out += name;
    out += ' ';
    out += typeName(family->type);
    out += '\n';
    for (const auto& [labels, metric] : family->series) {
      switch (family->type) {
        case MetricType::kCounter:
          out += name;
          appendLabels(out, constant_labels_, labels);
          out += ' ';
          appendUint(out, static_cast<const Counter*>(metric.get())->value());
          out += '\n';
          break;
        case MetricType::kGauge:
          out += name;
          appendLabels(out, constant_labels_, labels);
          out += ' ';
          appendInt(out, static_cast<const Gauge*>(metric.get())->value());
          out += '\n';
          break;
        case MetricType::kHistogram: {
          HistogramSnapshot snap = static_cast<const Histogram*>(metric.get())->snapshot();
          for (size_t b = 0; b < kNumBuckets; ++b) {
            std::string le;
            if (b < kLatencyBoundsMs.size()) {
              appendDouble(le, kLatencyBoundsMs[b]);
            } else {
              le = "+Inf";
            }
            out += name;
            out += "_bucket";
            appendLabels(out, constant_labels_, labels, "le", le);
            out += ' ';
            appendUint(out, snap.cumulative[b]);
            out += '\n';
          }
          out += name;
          out += "_sum";
          appendLabels(out, constant_labels_, labels);
          out += ' ';
          appendDouble(out, snap.sum_ms);
          out += '\n';
          out += name;
          out += "_count";
          appendLabels(out, constant_labels_, labels);
          out += ' ';
          appendUint(out, snap.count);
          out += '\n';
          break;
        }
      }
    }
  }
  return out;
}

namespace {
// Quantile for the text view: "-" when there is no observation, else up to 4 significant-ish
// digits (the value is an interpolation, more digits would be noise).
void appendQuantileText(std::string& out, double v) {
  if (std::isnan(v)) {
    out += '-';
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 4);
  out.append(buf, r.ptr);
}
}  // namespace

std::string Registry::renderText() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) {
    for (const auto& [labels, metric] : family->series) {
      out += name;
      appendLabels(out, constant_labels_, labels);
      out += ": ";
      switch (family->type) {
        case MetricType::kCounter:
          appendUint(out, static_cast<const Counter*>(metric.get())->value());
          break;
        case MetricType::kGauge:
          appendInt(out, static_cast<const Gauge*>(metric.get())->value());
          break;
        case MetricType::kHistogram: {
          HistogramSnapshot snap = static_cast<const Histogram*>(metric.get())->snapshot();
          out += "P50=";
          appendQuantileText(out, snap.quantile(0.5));
          out += " P99=";
          appendQuantileText(out, snap.quantile(0.99));
          out += " count=";
          appendUint(out, snap.count);
          break;
        }
      }
      out += '\n';
    }
  }
  return out;
}

std::string Registry::renderJson() const {
  std::string out = "{\"stats\":[";
  bool first = true;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) {
    for (const auto& [labels, metric] : family->series) {
      if (!first) out += ',';
      first = false;
      out += "{\"name\":";
      appendJsonString(out, name);
      out += ",\"labels\":{";
      Labels shown = effectiveConstants(constant_labels_, labels);
      shown.insert(shown.end(), labels.begin(), labels.end());
      for (size_t i = 0; i < shown.size(); ++i) {
        if (i > 0) out += ',';
        appendJsonString(out, shown[i].first);
        out += ':';
        appendJsonString(out, shown[i].second);
      }
      out += "},\"type\":\"";
      out += typeName(family->type);
      out += '"';
      switch (family->type) {
        case MetricType::kCounter:
          out += ",\"value\":";
          appendUint(out, static_cast<const Counter*>(metric.get())->value());
          break;
        case MetricType::kGauge:
          out += ",\"value\":";
          appendInt(out, static_cast<const Gauge*>(metric.get())->value());
          break;
        case MetricType::kHistogram: {
          HistogramSnapshot snap = static_cast<const Histogram*>(metric.get())->snapshot();
          out += ",\"count\":";
          appendUint(out, snap.count);
          out += ",\"sum_ms\":";
          appendJsonNumber(out, snap.sum_ms);
          out += ",\"p50\":";
          appendJsonNumber(out, snap.quantile(0.5));
          out += ",\"p99\":";
          appendJsonNumber(out, snap.quantile(0.99));
          break;
        }
      }
      out += '}';
    }
  }
  out += "]}";
  return out;
}

}  // namespace weft::stats
