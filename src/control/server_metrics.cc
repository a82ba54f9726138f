#include "control/server_metrics.h"

#include <map>
#include <tuple>

namespace weft::control {
namespace {

std::string escapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const char* name, const std::string& labels, uint64_t value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ' + std::to_string(value) + '\n';
}

// "mesh/M/virtualNode/N" -> (M, virtualNode); anything else -> ("", "").
std::pair<std::string, std::string> meshAndKind(const std::string& resource) {
  if (resource.rfind("mesh/", 0) != 0) return {};
  size_t a = resource.find('/', 5);
  if (a == std::string::npos) return {};
  size_t b = resource.find('/', a + 1);
  if (b == std::string::npos) return {};
  return {resource.substr(5, a - 5), resource.substr(a + 1, b - a - 1)};
}

}  // namespace

bool isMetricsRequest(const std::string& method, const std::string& path) {
  return (method == "GET" || method == "HEAD") && path == "/metrics";
}

std::string renderServerMetrics(const ServerMetricsInput& in) {
  std::string out;
  family(out, "weft_server_info", "gauge", "weft server version.");
  sample(out, "weft_server_info", "version=\"" WEFT_VERSION "\"", 1);
  family(out, "weft_server_start_time_seconds", "gauge", "When the server started (unix time).");
  sample(out, "weft_server_start_time_seconds", "", static_cast<uint64_t>(in.started_at));

  if (in.dns) {
    const registry::DnsServerStats& s = *in.dns;
    const std::tuple<const char*, const std::atomic<uint64_t>*, const char*> counters[] = {
        {"weft_dns_queries_total", &s.queries, "DNS messages received from clients."},
        {"weft_dns_forwarded_total", &s.forwarded, "Queries forwarded to an upstream resolver."},
        {"weft_dns_forward_answers_total", &s.forward_answers, "Upstream answers relayed."},
        {"weft_dns_forward_tcp_total", &s.forward_tcp, "Upstream exchanges over TCP."},
        {"weft_dns_forward_timeouts_total", &s.forward_timeouts,
         "SERVFAIL answers: no upstream answer in time."},
        {"weft_dns_forward_overflow_total", &s.forward_overflow,
         "SERVFAIL answers: too many queries already in flight upstream."},
        {"weft_dns_forward_mismatch_total", &s.forward_mismatch,
         "Upstream datagrams ignored (id or question did not match)."},
    };
    for (const auto& [name, value, help] : counters) {
      family(out, name, "counter", help);
      sample(out, name, "", value->load(std::memory_order_relaxed));
    }
  }

  if (in.registry) {
    family(out, "weft_registry_dns_instances", "gauge",
           "Instances of the services of each DNS namespace, by health.");
    for (const registry::DnsZone& z : in.registry->zones) {
      uint64_t healthy = 0, unhealthy = 0, unknown = 0;
      for (const auto& [name, svc] : z.services)
        for (const registry::DnsInstance& i : svc.instances)
          (i.health == registry::Health::kHealthy     ? healthy
           : i.health == registry::Health::kUnhealthy ? unhealthy
                                                      : unknown)++;
      std::string zone = "namespace=\"" + escapeLabel(z.name) + "\"";
      sample(out, "weft_registry_dns_instances", zone + ",health=\"healthy\"", healthy);
      sample(out, "weft_registry_dns_instances", zone + ",health=\"unhealthy\"", unhealthy);
      sample(out, "weft_registry_dns_instances", zone + ",health=\"unknown\"", unknown);
    }
  }

  // Connected proxies per mesh and kind, and how many have not ACKed the last version sent.
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> by_mesh;
  for (const push::ProxyStatus& p : in.proxies) {
    auto& [connected, behind] = by_mesh[meshAndKind(p.resource)];
    ++connected;
    if (p.version_acked < p.version_sent) ++behind;
  }
  family(out, "weft_control_proxies_connected", "gauge", "Proxies connected to the config stream.");
  for (const auto& [key, counts] : by_mesh)
    sample(out, "weft_control_proxies_connected",
           "mesh=\"" + escapeLabel(key.first) + "\",kind=\"" + escapeLabel(key.second) + "\"",
           counts.first);
  family(out, "weft_control_proxies_behind", "gauge",
         "Connected proxies that have not acknowledged the last config version sent to them.");
  for (const auto& [key, counts] : by_mesh)
    sample(out, "weft_control_proxies_behind",
           "mesh=\"" + escapeLabel(key.first) + "\",kind=\"" + escapeLabel(key.second) + "\"",
           counts.second);
  return out;
}

}  // namespace weft::control
