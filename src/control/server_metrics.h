#pragma once
// The control plane's own metrics, in the Prometheus text format (version 0.0.4), served at
// GET /metrics on the API port without authentication: counters and gauges only — the only
// names in labels are meshes and DNS namespaces (zones); no addresses, nothing secret. docs/control-plane.md lists them.

#include <string>
#include <vector>

#include "control/push/push_server.h"
#include "control/registry/dns_server.h"
#include "control/registry/registry_snapshot.h"

namespace weft::control {

struct ServerMetricsInput {
  const registry::DnsServerStats* dns = nullptr;  // nullptr: no DNS series
  const registry::Snapshot* registry = nullptr;   // nullptr: no registry series
  std::vector<push::ProxyStatus> proxies;         // the connected proxies
  int64_t started_at = 0;                         // unix seconds
};

// The exposition text for `in` (every family with # HELP and # TYPE, labels escaped).
std::string renderServerMetrics(const ServerMetricsInput& in);

// True for the request GET /metrics (HEAD too): the one path served without SigV4.
bool isMetricsRequest(const std::string& method, const std::string& path);

}  // namespace weft::control
