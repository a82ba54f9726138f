#include "control/server_metrics.h"

#include <gtest/gtest.h>

namespace weft::control {
namespace {

TEST(ServerMetricsTest, RendersEveryFamilyWithLabels) {
  registry::DnsServerStats dns;
  dns.queries = 7;
  dns.forward_timeouts = 2;
  registry::Snapshot snap;
  registry::DnsZone z;
  z.name = "apps.local";
  registry::DnsService svc;
  svc.instances.resize(3);
  svc.instances[0].health = registry::Health::kHealthy;
  svc.instances[1].health = registry::Health::kHealthy;
  svc.instances[2].health = registry::Health::kUnhealthy;
  z.services.emplace("web", svc);
  snap.zones.push_back(z);
  ServerMetricsInput in;
  in.dns = &dns;
  in.registry = &snap;
  push::ProxyStatus a, b, c;
  a.resource = "mesh/m1/virtualNode/web";
  a.version_sent = a.version_acked = 3;
  b.resource = "mesh/m1/virtualNode/api";
  b.version_sent = 4;
  b.version_acked = 3;
  c.resource = "mesh/m\"2/virtualGateway/gw";
  in.proxies = {a, b, c};
  in.started_at = 1800000000;
  std::string text = renderServerMetrics(in);
  for (const char* want : {
           "# TYPE weft_dns_queries_total counter\nweft_dns_queries_total 7\n",
           "weft_dns_forward_timeouts_total 2\n",
           "weft_registry_dns_instances{namespace=\"apps.local\",health=\"healthy\"} 2\n",
           "weft_registry_dns_instances{namespace=\"apps.local\",health=\"unhealthy\"} 1\n",
           "weft_registry_dns_instances{namespace=\"apps.local\",health=\"unknown\"} 0\n",
           "weft_control_proxies_connected{mesh=\"m1\",kind=\"virtualNode\"} 2\n",
           "weft_control_proxies_behind{mesh=\"m1\",kind=\"virtualNode\"} 1\n",
           "weft_control_proxies_connected{mesh=\"m\\\"2\",kind=\"virtualGateway\"} 1\n",
           "weft_server_start_time_seconds 1800000000\n",
       })
    EXPECT_NE(text.find(want), std::string::npos) << "missing:\n" << want << "\nin:\n" << text;
}

TEST(ServerMetricsTest, OnlyGetAndHeadOfMetricsAreUnauthenticated) {
  EXPECT_TRUE(isMetricsRequest("GET", "/metrics"));
  EXPECT_TRUE(isMetricsRequest("HEAD", "/metrics"));
  EXPECT_FALSE(isMetricsRequest("POST", "/metrics"));
  EXPECT_FALSE(isMetricsRequest("GET", "/metrics/"));
  EXPECT_FALSE(isMetricsRequest("GET", "/v20190125/meshes"));
}

}  // namespace
}  // namespace weft::control
