// The config compiler against golden outputs: each App Mesh feature is declared through the real
// AppMeshApi over a MemoryStore (so the stored JSON is what the server stores; Cloud Map
// instances are written under registry/ as the registry API writes them), compiled, and compared
// with src/control/compile/testdata/<name>.json. WEFT_UPDATE_GOLDEN=1 rewrites the files.
#include "control/compile/compiler.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "control/model/appmesh_test_support.h"

namespace weft::control::compile {
namespace {

namespace pb = google::protobuf;
using appmesh::Kind;
using appmesh::testing::Harness;
using appmesh::testing::summary;

std::string testdataDir() {
  std::string file = __FILE__;
  return file.substr(0, file.rfind('/')) + "/testdata";
}

std::string toJson(const v1::ProxyConfig& config) {
  pb::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  std::string out;
  EXPECT_TRUE(pb::util::MessageToJsonString(config, &out, o).ok());
  return out;
}

// The invariants the proxy's validator also checks that depend on the compiler: unique listener,
// chain and cluster names, every referenced cluster defined, non-empty endpoint lists, one
// virtual host per domain in a route config.
std::vector<std::string> consistencyProblems(const v1::ProxyConfig& c) {
  std::vector<std::string> problems;
  std::set<std::string> clusters;
  for (const v1::Cluster& cl : c.clusters()) {
    if (!clusters.insert(cl.name()).second) problems.push_back("duplicate cluster " + cl.name());
    if (cl.endpoints().empty()) problems.push_back("cluster without endpoints " + cl.name());
  }
  auto checkRoutes = [&](const v1::RouteConfig& rc, const std::string& where) {
    std::set<std::string> domains;
    for (const v1::VirtualHost& vh : rc.virtual_hosts()) {
      for (const std::string& d : vh.domains())
        if (!domains.insert(d).second) problems.push_back(where + ": duplicate domain " + d);
      for (const v1::Route& r : vh.routes()) {
        if (r.action_case() == v1::Route::ACTION_NOT_SET)
          problems.push_back(where + ": route without action " + r.name());
        for (const v1::WeightedCluster& w : r.route().clusters())
          if (!clusters.count(w.name()))
            problems.push_back(where + ": route " + r.name() + " names unknown cluster " +
                               w.name());
      }
    }
  };
  std::set<std::string> listeners;
  for (const v1::Listener& l : c.listeners()) {
    if (!listeners.insert(l.name()).second) problems.push_back("duplicate listener " + l.name());
    checkRoutes(l.route_config(), l.name());
    std::set<std::string> chains;
    for (const v1::FilterChain& fc : l.filter_chains()) {
      if (!chains.insert(fc.name()).second)
        problems.push_back(l.name() + ": duplicate chain " + fc.name());
      checkRoutes(fc.route_config(), l.name() + "/" + fc.name());
      if (fc.has_tcp_proxy() && !clusters.count(fc.tcp_proxy().cluster()))
        problems.push_back(l.name() + "/" + fc.name() + ": unknown cluster " +
                           fc.tcp_proxy().cluster());
      if (!fc.has_tcp_proxy() && fc.route_config().virtual_hosts().empty())
        problems.push_back(l.name() + "/" + fc.name() + ": chain carries nothing");
    }
  }
  return problems;
}

class CompilerTest : public ::testing::Test {
 protected:
  void call(const std::string& method, const std::string& path, const std::string& body) {
    ApiResponse r = h_.call(method, path, body);
    ASSERT_EQ(summary(r), "200") << method << " " << path << " " << body;
  }
  void mesh(const std::string& name, const std::string& spec = "{}") {
    call("PUT", "/v20190125/meshes", R"({"meshName":")" + name + R"(","spec":)" + spec + "}");
  }
  void create(const std::string& collection, const std::string& name_field, const std::string& name,
              const std::string& spec, const std::string& mesh = "m") {
    call("PUT", "/v20190125/meshes/" + mesh + "/" + collection,
         "{\"" + name_field + "\":\"" + name + "\",\"spec\":" + spec + "}");
  }
  void node(const std::string& name, const std::string& spec) {
    create("virtualNodes", "virtualNodeName", name, spec);
  }
  void updateNode(const std::string& name, const std::string& spec) {
    call("PUT", "/v20190125/meshes/m/virtualNodes/" + name, R"({"spec":)" + spec + "}");
  }
  void service(const std::string& name, const std::string& spec) {
    create("virtualServices", "virtualServiceName", name, spec);
  }
  void nodeService(const std::string& name, const std::string& provider) {
    service(name, R"({"provider":{"virtualNode":{"virtualNodeName":")" + provider + R"("}}})");
  }
  void routerService(const std::string& name, const std::string& router) {
    service(name, R"({"provider":{"virtualRouter":{"virtualRouterName":")" + router + R"("}}})");
  }
  void router(const std::string& name, const std::string& spec) {
    create("virtualRouters", "virtualRouterName", name, spec);
  }
  void route(const std::string& router, const std::string& name, const std::string& spec) {
    create("virtualRouter/" + router + "/routes", "routeName", name, spec);
  }
  void gateway(const std::string& name, const std::string& spec) {
    create("virtualGateways", "virtualGatewayName", name, spec);
  }
  void gatewayRoute(const std::string& gw, const std::string& name, const std::string& spec) {
    create("virtualGateway/" + gw + "/gatewayRoutes", "gatewayRouteName", name, spec);
  }

  // Registry records in the registry API's layout.
  void put(const std::string& key, const std::string& value) {
    auto rev = h_.store.commit({StoreOp::put(key, value, StoreOp::kAnyRevision)});
    ASSERT_TRUE(rev.has_value()) << rev.error().message;
  }
  void cloudMapService(const std::string& ns_id, const std::string& ns_name, const std::string& sid,
                       const std::string& name) {
    put("registry/namespaces/" + ns_id,
        R"({"Id":")" + ns_id + R"(","Name":")" + ns_name +
            R"(","Type":"DNS_PRIVATE","Properties":{"HttpProperties":{"HttpName":")" + ns_name +
            R"("}}})");
    put("registry/namespace-names/" + ns_name, R"({"Id":")" + ns_id + R"("})");
    put("registry/service-names/" + ns_id + "/" + name, R"({"Id":")" + sid + R"("})");
    put("registry/services/" + sid,
        R"({"Id":")" + sid + R"(","Name":")" + name + R"(","NamespaceId":")" + ns_id + R"("})");
  }
  void instance(const std::string& sid, const std::string& id, const std::string& attrs,
                const std::string& health = "HEALTHY") {
    put("registry/instances/" + sid + "/" + id, R"({"Id":")" + id + R"(","Attributes":)" + attrs +
                                                    R"(,"HealthStatus":")" + health + R"("})");
  }

  Result<CompileResult> compileNode(const std::string& name, const std::string& mesh = "m") {
    return compiler_.compile(ProxyIdentity{Kind::kVirtualNode, mesh, name});
  }
  Result<CompileResult> compileGateway(const std::string& name) {
    return compiler_.compile(ProxyIdentity{Kind::kVirtualGateway, "m", name});
  }

  // Compares with testdata/<name>.json (rewritten under WEFT_UPDATE_GOLDEN=1) and checks the
  // config's internal consistency.
  void expectGolden(const std::string& name, const Result<CompileResult>& result) {
    ASSERT_TRUE(result.has_value()) << "compile failed: " << result.error().message;
    for (const std::string& p : consistencyProblems(result->config))
      ADD_FAILURE() << name << ": " << p;
    std::string got = toJson(result->config);
    std::string path = testdataDir() + "/" + name + ".json";
    const char* update = std::getenv("WEFT_UPDATE_GOLDEN");
    if (update && std::string(update) == "1") {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << got;
      ASSERT_TRUE(out.good()) << "cannot write " << path;
      return;
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << "missing golden file " << path
                           << " (run with WEFT_UPDATE_GOLDEN=1 to create it)";
    std::stringstream want;
    want << in.rdbuf();
    EXPECT_EQ(want.str(), got) << "compiled config differs from " << path
                               << " (WEFT_UPDATE_GOLDEN=1 rewrites it after review)";
  }

  Harness h_;
  Compiler compiler_{h_.store, CompileOptions{}};
};

std::string dnsNode(const std::string& host, int port = 8080,
                    const std::string& protocol = "http") {
  return R"({"listeners":[{"portMapping":{"port":)" + std::to_string(port) + R"(,"protocol":")" +
         protocol + R"("}}],"serviceDiscovery":{"dns":{"hostname":")" + host + R"("}}})";
}

// ---- golden outputs, one per feature ----

TEST_F(CompilerTest, NodeHttpListenerWithTlsHealthCheckPoolAndTimeouts) {
  mesh("m");
  node("web", R"({
    "listeners":[{
      "portMapping":{"port":8080,"protocol":"http"},
      "tls":{"mode":"STRICT",
             "certificate":{"file":{"certificateChain":"/certs/web.pem","privateKey":"/certs/web.key"}},
             "validation":{"trust":{"file":{"certificateChain":"/certs/ca.pem"}},
                           "subjectAlternativeNames":{"match":{"exact":["api.local","spiffe://m/api"]}}}},
      "healthCheck":{"protocol":"http","path":"/ping","intervalMillis":5000,"timeoutMillis":2000,
                     "healthyThreshold":2,"unhealthyThreshold":3},
      "connectionPool":{"http":{"maxConnections":50,"maxPendingRequests":20}},
      "timeout":{"http":{"perRequest":{"value":30,"unit":"s"},"idle":{"value":600000,"unit":"ms"}}}
    }],
    "serviceDiscovery":{"dns":{"hostname":"web.local"}},
    "logging":{"accessLog":{"file":{"path":"/dev/stdout"}}}})");
  expectGolden("node_http_tls", compileNode("web"));
}

TEST_F(CompilerTest, NodeGrpcHttp2AndTcpListeners) {
  mesh("m");
  node("multi", R"({
    "listeners":[
      {"portMapping":{"port":9000,"protocol":"grpc"},
       "connectionPool":{"grpc":{"maxRequests":100}},
       "healthCheck":{"protocol":"grpc","intervalMillis":10000,"timeoutMillis":5000,
                      "healthyThreshold":2,"unhealthyThreshold":2},
       "timeout":{"grpc":{"perRequest":{"value":5,"unit":"s"}}}},
      {"portMapping":{"port":9001,"protocol":"http2"},
       "connectionPool":{"http2":{"maxRequests":64}}},
      {"portMapping":{"port":5432,"protocol":"tcp"},
       "connectionPool":{"tcp":{"maxConnections":10}},
       "healthCheck":{"protocol":"tcp","intervalMillis":5000,"timeoutMillis":2000,
                      "healthyThreshold":2,"unhealthyThreshold":2},
       "timeout":{"tcp":{"idle":{"value":60,"unit":"s"}}}}],
    "serviceDiscovery":{"dns":{"hostname":"multi.local"}}})");
  expectGolden("node_grpc_http2_tcp", compileNode("multi"));
}

TEST_F(CompilerTest, BackendsThroughRouterWithWeightsRetriesTimeoutsAndMatches) {
  mesh("m");
  node("v1", dnsNode("v1.local"));
  node("v2", dnsNode("v2.local"));
  router("r", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})");
  route("r", "canary", R"({"priority":10,"httpRoute":{
      "match":{"prefix":"/api","method":"POST",
               "headers":[{"name":"x-canary","match":{"exact":"1"}},
                          {"name":"x-debug","invert":true,"match":{"prefix":"yes"}},
                          {"name":"x-version","match":{"range":{"start":2,"end":5}}}],
               "queryParameters":[{"name":"beta","match":{"exact":"on"}},{"name":"trace"}]},
      "action":{"weightedTargets":[{"virtualNode":"v1","weight":90},{"virtualNode":"v2","weight":10}]},
      "retryPolicy":{"maxRetries":3,"perRetryTimeout":{"value":500,"unit":"ms"},
                     "httpRetryEvents":["server-error","gateway-error"],
                     "tcpRetryEvents":["connection-error"]},
      "timeout":{"perRequest":{"value":20,"unit":"s"},"idle":{"value":120,"unit":"s"}}}})");
  route("r", "exact", R"({"httpRoute":{"match":{"path":{"exact":"/health"}},
      "action":{"weightedTargets":[{"virtualNode":"v1","weight":1}]}}})");
  route("r", "rest", R"({"httpRoute":{"match":{"prefix":"/"},
      "action":{"weightedTargets":[{"virtualNode":"v1","weight":50},{"virtualNode":"v2","weight":50}]}}})");
  route("r", "regex", R"({"httpRoute":{"match":{"path":{"regex":"/v[0-9]+/.*"}},
      "action":{"weightedTargets":[{"virtualNode":"v2","weight":1}]}}})");
  routerService("api.local", "r");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"api.local"}}]})");
  expectGolden("backend_router", compileNode("client"));
}

TEST_F(CompilerTest, NodeProvidedBackendsHttpGrpcTcpWithDefaultRetry) {
  mesh("m");
  node("h", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},
                 "outlierDetection":{"maxServerErrors":5,"interval":{"value":10,"unit":"s"},
                                     "baseEjectionDuration":{"value":30,"unit":"s"},
                                     "maxEjectionPercent":50},
                 "timeout":{"http":{"perRequest":{"value":60,"unit":"s"}}}}],
               "serviceDiscovery":{"dns":{"hostname":"h.local"}}})");
  node("g", dnsNode("g.local", 9000, "grpc"));
  node("db", dnsNode("10.0.0.9", 5432, "tcp"));
  nodeService("h.svc", "h");
  nodeService("g.svc", "g");
  nodeService("db.svc", "db");
  node("client", R"({"backends":[
      {"virtualService":{"virtualServiceName":"h.svc"}},
      {"virtualService":{"virtualServiceName":"g.svc"}},
      {"virtualService":{"virtualServiceName":"db.svc"}}]})");
  expectGolden("backend_nodes", compileNode("client"));
}

TEST_F(CompilerTest, CloudMapDiscoveryFiltersAttributesAndUnhealthy) {
  mesh("m");
  node("pay", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"awsCloudMap":{"namespaceName":"corp.local","serviceName":"pay",
                          "attributes":[{"key":"stage","value":"prod"}]}}})");
  nodeService("pay.corp.local", "pay");
  cloudMapService("ns-1", "corp.local", "srv-1", "pay");
  instance("srv-1", "i-3", R"({"AWS_INSTANCE_IPV4":"10.0.0.3","stage":"prod"})");
  instance("srv-1", "i-1",
           R"({"AWS_INSTANCE_IPV4":"10.0.0.1","AWS_INSTANCE_PORT":"9090","stage":"prod"})");
  instance("srv-1", "i-2", R"({"AWS_INSTANCE_IPV4":"10.0.0.2","stage":"prod"})", "UNHEALTHY");
  instance("srv-1", "i-4", R"({"AWS_INSTANCE_IPV4":"10.0.0.4","stage":"dev"})");
  instance("srv-1", "i-5", R"({"AWS_INSTANCE_IPV4":"10.0.0.5","stage":"prod"})", "UNKNOWN");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"pay.corp.local"}}]})");
  auto r = compileNode("client");
  expectGolden("cloud_map", r);
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), "registry/instances/srv-1/"),
            r->depends_on.end())
      << "depends_on must hold the service's instance prefix";
}

TEST_F(CompilerTest, DnsDiscoveryAndAllowAllEgress) {
  mesh("m", R"({"egressFilter":{"type":"ALLOW_ALL"}})");
  node("target", dnsNode("target.ns.svc.cluster.local"));
  nodeService("target.svc", "target");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"target.svc"}}]})");
  expectGolden("dns_allow_all", compileNode("client"));
}

TEST_F(CompilerTest, DnsHostnameInsideRegistryNamespaceListsInstances) {
  mesh("m");
  cloudMapService("ns-1", "corp.local", "srv-1", "pay");
  instance("srv-1", "i-3", R"({"AWS_INSTANCE_IPV4":"10.0.0.3"})", "UNKNOWN");
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1","AWS_INSTANCE_PORT":"9090"})");
  instance("srv-1", "i-2", R"({"AWS_INSTANCE_IPV4":"10.0.0.2"})", "UNHEALTHY");
  // An HTTP namespace has no DNS names: a hostname "under" it stays a DNS cluster.
  put("registry/namespaces/ns-2",
      R"({"Id":"ns-2","Name":"api.local","Type":"HTTP","Properties":{"HttpProperties":{"HttpName":"api.local"}}})");
  put("registry/service-names/ns-2/orders", R"({"Id":"srv-2"})");
  instance("srv-2", "i-9", R"({"AWS_INSTANCE_IPV4":"10.9.9.9"})");
  node("pay", dnsNode("pay.corp.local"));
  node("pay-endpoints", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"dns":{"hostname":"Pay.Corp.Local.","responseType":"ENDPOINTS"}}})");
  node("orders", dnsNode("orders.api.local"));
  node("ext", dnsNode("ext.example.com"));
  nodeService("pay.svc", "pay");
  nodeService("pay-endpoints.svc", "pay-endpoints");
  nodeService("orders.svc", "orders");
  nodeService("ext.svc", "ext");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"pay.svc"}},
      {"virtualService":{"virtualServiceName":"pay-endpoints.svc"}},
      {"virtualService":{"virtualServiceName":"orders.svc"}},
      {"virtualService":{"virtualServiceName":"ext.svc"}}]})");
  auto r = compileNode("client");
  expectGolden("dns_registry", r);
  ASSERT_TRUE(r.has_value());
  for (const char* dep :
       {"registry/namespaces/", "registry/service-names/ns-1/pay", "registry/instances/srv-1/"})
    EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), dep), r->depends_on.end())
        << "depends_on must hold " << dep << "; it holds "
        << ::testing::PrintToString(r->depends_on);
  std::map<std::string, const v1::Cluster*> by_name;
  for (const v1::Cluster& c : r->config.clusters()) by_name[c.name()] = &c;
  for (const char* name : {"cds_egress_m_pay_http_8080", "cds_egress_m_pay-endpoints_http_8080"}) {
    ASSERT_TRUE(by_name.count(name)) << "missing cluster " << name;
    const v1::Cluster& c = *by_name[name];
    EXPECT_EQ(c.type(), v1::Cluster::STATIC) << name;
    ASSERT_EQ(c.endpoints_size(), 2)
        << name << ": want 10.0.0.1:9090 and 10.0.0.3:8080, got " << c.ShortDebugString();
    EXPECT_EQ(c.endpoints(0).address() + ":" + std::to_string(c.endpoints(0).port()),
              "10.0.0.1:9090");
    EXPECT_EQ(c.endpoints(1).address() + ":" + std::to_string(c.endpoints(1).port()),
              "10.0.0.3:8080");
  }
  for (const char* name : {"cds_egress_m_orders_http_8080", "cds_egress_m_ext_http_8080"}) {
    ASSERT_TRUE(by_name.count(name)) << "missing cluster " << name;
    EXPECT_EQ(by_name[name]->type(), v1::Cluster::DNS)
        << name << " is outside every private DNS namespace: " << by_name[name]->ShortDebugString();
  }
}

TEST_F(CompilerTest, DnsResponseTypeAndIpPreference) {
  mesh("m", R"({"serviceDiscovery":{"ipPreference":"IPv4_ONLY"}})");
  node("lb", dnsNode("lb.example.com"));  // LOADBALANCER by default; the mesh's IPv4_ONLY
  node("all", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"dns":{"hostname":"all.example.com","responseType":"ENDPOINTS",
                                 "ipPreference":"IPv6_PREFERRED"}}})");
  nodeService("lb.svc", "lb");
  nodeService("all.svc", "all");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"lb.svc"}},
      {"virtualService":{"virtualServiceName":"all.svc"}}]})");
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  std::map<std::string, const v1::Cluster*> by_name;
  for (const v1::Cluster& c : r->config.clusters()) by_name[c.name()] = &c;
  ASSERT_TRUE(by_name.count("cds_egress_m_lb_http_8080"));
  ASSERT_TRUE(by_name.count("cds_egress_m_all_http_8080"));
  const v1::Cluster& lb = *by_name["cds_egress_m_lb_http_8080"];
  EXPECT_EQ(lb.dns_lookup(), v1::Cluster::FIRST_ADDRESS) << "LOADBALANCER is App Mesh's default";
  EXPECT_EQ(lb.dns_family(), v1::Cluster::V4_ONLY) << "the mesh's ipPreference applies";
  const v1::Cluster& all = *by_name["cds_egress_m_all_http_8080"];
  EXPECT_EQ(all.dns_lookup(), v1::Cluster::ALL_ADDRESSES);
  EXPECT_EQ(all.dns_family(), v1::Cluster::V6_PREFERRED) << "the node's ipPreference wins";

  // Without any preference: DNS prefers IPv6 (App Mesh's default for DNS discovery).
  mesh("m2");
  create("virtualNodes", "virtualNodeName", "d", dnsNode("d.example.com"), "m2");
  create("virtualServices", "virtualServiceName", "d.svc",
         R"({"provider":{"virtualNode":{"virtualNodeName":"d"}}})", "m2");
  create("virtualNodes", "virtualNodeName", "c",
         R"({"backends":[{"virtualService":{"virtualServiceName":"d.svc"}}]})", "m2");
  auto r2 = compileNode("c", "m2");
  ASSERT_TRUE(r2.has_value()) << r2.error().message;
  ASSERT_EQ(r2->config.clusters_size(), 1) << r2->config.ShortDebugString();
  EXPECT_EQ(r2->config.clusters(0).dns_family(), v1::Cluster::V6_PREFERRED);
}

TEST_F(CompilerTest, CloudMapIpPreferenceAndCnameOnlyInstances) {
  mesh("m");
  cloudMapService("ns-1", "corp.local", "srv-1", "pay");
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1","AWS_INSTANCE_IPV6":"fd00::1"})");
  instance("srv-1", "i-2", R"({"AWS_INSTANCE_IPV6":"fd00::2"})");
  instance("srv-1", "i-3", R"({"AWS_INSTANCE_CNAME":"legacy.example.com"})");
  cloudMapService("ns-1", "corp.local", "srv-2", "old");
  instance("srv-2", "i-7", R"({"AWS_INSTANCE_CNAME":"old-a.example.com"})");
  instance("srv-2", "i-8", R"({"AWS_INSTANCE_CNAME":"old-b.example.com"})");
  auto cm = [](const std::string& svc, const std::string& pref) {
    return R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"awsCloudMap":{"namespaceName":"corp.local","serviceName":")" +
           svc + R"(")" + (pref.empty() ? "" : R"(,"ipPreference":")" + pref + R"(")") + "}}}";
  };
  node("v4", cm("pay", ""));
  node("v6", cm("pay", "IPv6_PREFERRED"));
  node("v6only", cm("pay", "IPv6_ONLY"));
  node("old", cm("old", ""));
  for (const char* n : {"v4", "v6", "v6only", "old"}) nodeService(std::string(n) + ".svc", n);
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"v4.svc"}},
      {"virtualService":{"virtualServiceName":"v6.svc"}},
      {"virtualService":{"virtualServiceName":"v6only.svc"}},
      {"virtualService":{"virtualServiceName":"old.svc"}}]})");
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  std::map<std::string, std::string> got;  // cluster -> "TYPE a,b,..."
  for (const v1::Cluster& c : r->config.clusters()) {
    std::string eps = v1::Cluster::Type_Name(c.type());
    for (const v1::Endpoint& e : c.endpoints()) eps += " " + e.address();
    got[c.name()] = eps;
  }
  EXPECT_EQ(got["cds_egress_m_v4_http_8080"], "STATIC 10.0.0.1 fd00::2")
      << "no preference: IPv4 first, IPv6 when that is all an instance has; CNAME-only left out";
  EXPECT_EQ(got["cds_egress_m_v6_http_8080"], "STATIC fd00::1 fd00::2");
  EXPECT_EQ(got["cds_egress_m_v6only_http_8080"], "STATIC fd00::1 fd00::2");
  EXPECT_EQ(got["cds_egress_m_old_http_8080"], "DNS old-a.example.com old-b.example.com")
      << "every instance CNAME-only: the proxy resolves the names";
}

TEST_F(CompilerTest, DnsRegistryHostnameFollowsNamespaceServiceAndInstances) {
  mesh("m");
  node("pay", dnsNode("pay.corp.local"));
  nodeService("pay.svc", "pay");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"pay.svc"}}]})");
  // No namespace: the proxy resolves the name, and a namespace created later recompiles it.
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), "registry/namespaces/"),
            r->depends_on.end());
  std::string j = toJson(r->config);
  EXPECT_NE(j.find("\"type\": \"DNS\""), std::string::npos) << j;
  // The namespace without the service: the name is the registry's, so no endpoints (503).
  put("registry/namespaces/ns-1",
      R"({"Id":"ns-1","Name":"corp.local","Type":"DNS_PRIVATE","Vpcs":[]})");
  auto r2 = compileNode("client");
  ASSERT_TRUE(r2.has_value());
  j = toJson(r2->config);
  EXPECT_NE(j.find("\"status\": 503"), std::string::npos) << j;
  EXPECT_EQ(j.find("\"type\": \"DNS\""), std::string::npos) << j;
  bool warned = false;
  for (const std::string& w : r2->warnings) warned |= w.find("\"pay\" does not exist") != w.npos;
  EXPECT_TRUE(warned) << "want a warning naming the missing service; got "
                      << ::testing::PrintToString(r2->warnings);
  EXPECT_NE(
      std::find(r2->depends_on.begin(), r2->depends_on.end(), "registry/service-names/ns-1/pay"),
      r2->depends_on.end());
  // Service and instance: a STATIC cluster; health changes follow.
  cloudMapService("ns-1", "corp.local", "srv-1", "pay");
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1"})");
  auto r3 = compileNode("client");
  ASSERT_TRUE(r3.has_value());
  j = toJson(r3->config);
  EXPECT_NE(j.find("10.0.0.1"), std::string::npos) << j;
  ASSERT_EQ(r3->config.clusters_size(), 1) << j;
  EXPECT_EQ(r3->config.clusters(0).type(), v1::Cluster::STATIC) << j;
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1"})", "UNHEALTHY");
  instance("srv-1", "i-2", R"({"AWS_INSTANCE_IPV4":"10.0.0.2","AWS_INSTANCE_PORT":"81"})");
  auto r4 = compileNode("client");
  ASSERT_TRUE(r4.has_value());
  j = toJson(r4->config);
  EXPECT_EQ(j.find("10.0.0.1"), std::string::npos) << j;
  EXPECT_NE(j.find("10.0.0.2"), std::string::npos) << j;
}

TEST_F(CompilerTest, ClientPolicyTlsDefaultsAndPerBackend) {
  mesh("m");
  node("a", dnsNode("a.local"));
  node("b", dnsNode("b.local", 8443));
  node("c", dnsNode("c.local", 7000));
  nodeService("a.svc", "a");
  nodeService("b.svc", "b");
  nodeService("c.svc", "c");
  node("client", R"({
    "backendDefaults":{"clientPolicy":{"tls":{
        "validation":{"trust":{"file":{"certificateChain":"/certs/mesh-ca.pem"}}},
        "certificate":{"file":{"certificateChain":"/certs/client.pem","privateKey":"/certs/client.key"}}}}},
    "backends":[
      {"virtualService":{"virtualServiceName":"a.svc"}},
      {"virtualService":{"virtualServiceName":"b.svc","clientPolicy":{"tls":{
          "ports":[8443],
          "validation":{"trust":{"file":{"certificateChain":"/certs/b-ca.pem"}},
                        "subjectAlternativeNames":{"match":{"exact":["b.local"]}}}}}}},
      {"virtualService":{"virtualServiceName":"c.svc","clientPolicy":{"tls":{
          "enforce":false,
          "validation":{"trust":{"file":{"certificateChain":"/certs/c-ca.pem"}}}}}}}]})");
  expectGolden("client_policy_tls", compileNode("client"));
}

// App Mesh: "If you don't specify SANs on the originating mesh endpoint, the SAN on the
// certificate provided by the terminating endpoint must match the mesh endpoint service
// discovery configuration." Registry-backed clusters have only addresses, so the name must be
// in the config, or the proxy cannot verify the server at all.
TEST_F(CompilerTest, ClientTlsWithoutSansChecksTheTargetsDiscoveryName) {
  mesh("m");
  cloudMapService("ns-1", "corp.local", "srv-1", "pay");
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1"})");
  cloudMapService("ns-2", "shop.local", "srv-2", "cart");
  instance("srv-2", "i-2", R"({"AWS_INSTANCE_IPV4":"10.0.0.2"})");
  node("pay", dnsNode("Pay.Corp.Local."));  // registry-backed: a STATIC cluster
  node("cart", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"awsCloudMap":{"namespaceName":"shop.local","serviceName":"cart"}}})");
  node("ip", dnsNode("10.1.2.3"));
  node("named", dnsNode("named.example.com"));
  for (const char* n : {"pay", "cart", "ip", "named"}) nodeService(std::string(n) + ".svc", n);
  node("client", R"({
    "backendDefaults":{"clientPolicy":{"tls":{
        "validation":{"trust":{"file":{"certificateChain":"/certs/ca.pem"}}}}}},
    "backends":[
      {"virtualService":{"virtualServiceName":"pay.svc"}},
      {"virtualService":{"virtualServiceName":"cart.svc"}},
      {"virtualService":{"virtualServiceName":"ip.svc"}},
      {"virtualService":{"virtualServiceName":"named.svc","clientPolicy":{"tls":{
          "validation":{"trust":{"file":{"certificateChain":"/certs/ca.pem"}},
                        "subjectAlternativeNames":{"match":{"exact":["other.example.com"]}}}}}}}]})");
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  std::map<std::string, std::string> sans;  // cluster -> its SAN rules, "dns:x,uri:y"
  for (const v1::Cluster& c : r->config.clusters()) {
    std::string got;
    for (const v1::SanMatcher& m : c.tls().validation().match_subject_alt_names())
      got += (got.empty() ? "" : ",") + (m.dns().empty() ? "uri:" + m.uri() : "dns:" + m.dns());
    sans[c.name()] = got;
  }
  std::string warnings;
  for (const std::string& w : r->warnings) warnings += w + "\n";
  ASSERT_EQ(sans.size(), 4u) << "expected four provider clusters; warnings:\n" << warnings;
  EXPECT_EQ(sans["cds_egress_m_pay_http_8080"], "dns:pay.corp.local")
      << "a registry hostname: the name, lower case, no trailing dot";
  EXPECT_EQ(sans["cds_egress_m_cart_http_8080"], "dns:cart.shop.local")
      << "Cloud Map: <serviceName>.<namespaceName>";
  EXPECT_EQ(sans["cds_egress_m_ip_http_8080"], "")
      << "an IP literal: no name rule (the proxy checks the address against IP SANs)";
  EXPECT_EQ(sans["cds_egress_m_named_http_8080"], "dns:other.example.com")
      << "the caller's own SANs replace the default";
}

TEST_F(CompilerTest, GatewayWithRoutesHostnamesAndRewrites) {
  mesh("m");
  node("shop", dnsNode("shop.local"));
  node("cart-v1", dnsNode("cart1.local"));
  node("cart-v2", dnsNode("cart2.local"));
  nodeService("shop.svc", "shop");
  router("cart-r", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})");
  route("cart-r", "v2", R"({"priority":1,"httpRoute":{"match":{"prefix":"/v2"},
      "action":{"weightedTargets":[{"virtualNode":"cart-v2","weight":1}]}}})");
  route("cart-r", "all", R"({"priority":2,"httpRoute":{"match":{"prefix":"/"},
      "action":{"weightedTargets":[{"virtualNode":"cart-v1","weight":80},{"virtualNode":"cart-v2","weight":20}]},
      "retryPolicy":{"maxRetries":1,"perRetryTimeout":{"value":1,"unit":"s"},"httpRetryEvents":["gateway-error"]}}})");
  service("cart.svc2", R"({"provider":{"virtualRouter":{"virtualRouterName":"cart-r"}}})");
  gateway("gw", R"({
    "listeners":[{"portMapping":{"port":8088,"protocol":"http"},
                  "connectionPool":{"http":{"maxConnections":200}}}],
    "backendDefaults":{"clientPolicy":{"tls":{"validation":{"trust":{"file":{"certificateChain":"/certs/ca.pem"}}}}}}})");
  gatewayRoute("gw", "shop", R"({"httpRoute":{"match":{"prefix":"/shop"},
      "action":{"target":{"virtualService":{"virtualServiceName":"shop.svc"}}}}})");
  gatewayRoute("gw", "keep", R"({"httpRoute":{"match":{"prefix":"/keep/"},
      "action":{"target":{"virtualService":{"virtualServiceName":"shop.svc"}},
                "rewrite":{"prefix":{"defaultPrefix":"DISABLED"},
                           "hostname":{"defaultTargetHostname":"DISABLED"}}}}})");
  gatewayRoute("gw", "cart", R"({"priority":5,"httpRoute":{"match":{"prefix":"/cart/",
                                  "hostname":{"suffix":".example.com"},
                                  "headers":[{"name":"x-user","match":{"exact":"alice"}}]},
      "action":{"target":{"virtualService":{"virtualServiceName":"cart.svc2"}},
                "rewrite":{"prefix":{"value":"/"}}}}})");
  gatewayRoute("gw", "exact-host", R"({"httpRoute":{"match":{"prefix":"/",
                                  "hostname":{"exact":"admin.example.com"}},
      "action":{"target":{"virtualService":{"virtualServiceName":"shop.svc"}}}}})");
  gatewayRoute("gw", "ping", R"({"httpRoute":{"match":{"path":{"exact":"/ping"},"method":"GET"},
      "action":{"target":{"virtualService":{"virtualServiceName":"shop.svc"}}}}})");
  auto r = compileGateway("gw");
  expectGolden("gateway", r);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->config.node(), "mesh/m/virtualGateway/gw");
  EXPECT_FALSE(r->config.has_admin());
}

TEST_F(CompilerTest, GatewayGrpcRoute) {
  mesh("m");
  node("g", dnsNode("g.local", 9000, "grpc"));
  nodeService("g.svc", "g");
  gateway("gw", R"({"listeners":[{"portMapping":{"port":9443,"protocol":"grpc"},
      "tls":{"mode":"PERMISSIVE","certificate":{"file":{"certificateChain":"/c.pem","privateKey":"/c.key"}}}}]})");
  gatewayRoute("gw", "greeter", R"({"grpcRoute":{"match":{"serviceName":"helloworld.Greeter",
                                      "metadata":[{"name":"x-tenant","match":{"suffix":"-eu"}}]},
      "action":{"target":{"virtualService":{"virtualServiceName":"g.svc"}}}}})");
  expectGolden("gateway_grpc", compileGateway("gw"));
}

// ---- behaviour ----

TEST_F(CompilerTest, NodeNamesAndListenerContract) {
  mesh("m");
  node("web", dnsNode("web.local"));
  auto r = compileNode("web");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const v1::ProxyConfig& c = r->config;
  EXPECT_EQ(c.node(), "mesh/m/virtualNode/web");
  EXPECT_FALSE(c.has_admin());
  ASSERT_EQ(c.listeners_size(), 2);
  EXPECT_EQ(c.listeners(0).name(), "lds_ingress_0.0.0.0_15000");
  EXPECT_EQ(c.listeners(0).port(), 15000u);
  EXPECT_EQ(c.listeners(0).interception().direction(), v1::Interception::INBOUND);
  EXPECT_EQ(c.listeners(1).name(), "lds_egress_0.0.0.0_15001");
  EXPECT_EQ(c.listeners(1).interception().direction(), v1::Interception::OUTBOUND);
  EXPECT_EQ(c.listeners(1).interception().egress_filter(), v1::Interception::DROP_ALL);
  ASSERT_EQ(c.clusters_size(), 1);
  EXPECT_EQ(c.clusters(0).name(), "cds_ingress_m_web_http_8080");
}

TEST_F(CompilerTest, DeterministicHash) {
  mesh("m");
  node("v1", dnsNode("v1.local"));
  router("r", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})");
  route("r", "a", R"({"httpRoute":{"match":{"prefix":"/"},
      "action":{"weightedTargets":[{"virtualNode":"v1","weight":1}]}}})");
  routerService("s1", "r");
  nodeService("s2", "v1");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"s2"}},
                                 {"virtualService":{"virtualServiceName":"s1"}}]})");
  auto a = compileNode("client");
  auto b = compileNode("client");
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(configHash(a->config), configHash(b->config));
  EXPECT_EQ(configHash(a->config).size(), 64u);
  EXPECT_EQ(a->depends_on, b->depends_on);
  // A fresh compiler over an identical store built in another order gives the same bytes.
  Harness other;
  auto put = [&](const std::string& path, const std::string& body) {
    ASSERT_EQ(summary(other.call("PUT", path, body)), "200") << path;
  };
  put("/v20190125/meshes", R"({"meshName":"m","spec":{}})");
  put("/v20190125/meshes/m/virtualNodes",
      R"({"virtualNodeName":"client","spec":{"backends":[{"virtualService":{"virtualServiceName":"s2"}},
                                 {"virtualService":{"virtualServiceName":"s1"}}]}})");
  put("/v20190125/meshes/m/virtualNodes",
      R"({"virtualNodeName":"v1","spec":)" + dnsNode("v1.local") + "}");
  put("/v20190125/meshes/m/virtualServices",
      R"({"virtualServiceName":"s2","spec":{"provider":{"virtualNode":{"virtualNodeName":"v1"}}}})");
  put("/v20190125/meshes/m/virtualRouters",
      R"({"virtualRouterName":"r","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}})");
  put("/v20190125/meshes/m/virtualServices",
      R"({"virtualServiceName":"s1","spec":{"provider":{"virtualRouter":{"virtualRouterName":"r"}}}})");
  put("/v20190125/meshes/m/virtualRouter/r/routes",
      R"({"routeName":"a","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"v1","weight":1}]}}}})");
  Compiler c2(other.store, CompileOptions{});
  auto d = c2.compile(ProxyIdentity{Kind::kVirtualNode, "m", "client"});
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(configHash(a->config), configHash(d->config));
}

TEST_F(CompilerTest, ScopedToDeclaredBackends) {
  mesh("m");
  for (std::string n : {"a", "b", "c"}) {
    node(n, dnsNode(n + ".local"));
    nodeService(n + ".svc", n);
  }
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"a.svc"}}]})");
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  std::string json = toJson(r->config);
  EXPECT_NE(json.find("a.svc"), std::string::npos);
  for (const char* absent : {"b.svc", "c.svc", "cds_egress_m_b_", "cds_egress_m_c_"})
    EXPECT_EQ(json.find(absent), std::string::npos) << absent << " leaked into:\n" << json;
  for (const std::string& d : r->depends_on)
    for (const char* unrelated :
         {"appmesh/virtualService/m/b.svc", "appmesh/virtualService/m/c.svc",
          "appmesh/virtualNode/m/b", "appmesh/virtualNode/m/c"})
      EXPECT_NE(d, unrelated) << "unrelated dependency " << d;
}

TEST_F(CompilerTest, DependsOnCoversEveryInputAndChangesFollowIt) {
  mesh("m");
  node("v1", dnsNode("v1.local"));
  node("other", dnsNode("other.local"));
  router("r", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})");
  route("r", "a", R"({"httpRoute":{"match":{"prefix":"/"},
      "action":{"weightedTargets":[{"virtualNode":"v1","weight":1}]}}})");
  routerService("s1", "r");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"s1"}},
                                 {"virtualService":{"virtualServiceName":"later"}}]})");
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  std::vector<std::string> want = {"appmesh/mesh/m", "appmesh/route/m/r/",
                                   "appmesh/virtualNode/m/client", "appmesh/virtualNode/m/v1",
                                   "appmesh/virtualRouter/m/r", "appmesh/virtualService/m/later",
                                   "appmesh/virtualService/m/s1",
                                   // weft's mesh policy (mesh_policy.h), stored or not.
                                   "meshpolicy/m",
                                   // v1's DNS hostname would be the registry's if a private DNS
                                   // namespace "local" were created.
                                   "registry/namespaces/"};
  EXPECT_EQ(r->depends_on, want);
  EXPECT_TRUE(std::is_sorted(r->depends_on.begin(), r->depends_on.end()));
  ASSERT_FALSE(r->warnings.empty());
  EXPECT_NE(r->warnings[0].find("\"later\" does not exist"), std::string::npos) << r->warnings[0];

  auto covered = [&](const std::string& key) {
    for (const std::string& p : r->depends_on)
      if (key.rfind(p, 0) == 0) return true;
    return false;
  };
  std::string before = configHash(r->config);
  // A change to an unrelated node is not covered (and does not change the output).
  updateNode("other", dnsNode("elsewhere.local"));
  EXPECT_FALSE(covered("appmesh/virtualNode/m/other"));
  EXPECT_EQ(configHash(compileNode("client")->config), before);
  // Changing a target node (under a listed key) changes the output.
  updateNode("v1", dnsNode("moved.local"));
  EXPECT_TRUE(covered("appmesh/virtualNode/m/v1"));
  std::string after_node = configHash(compileNode("client")->config);
  EXPECT_NE(after_node, before);
  // Creating the missing backend (its key was listed) adds it.
  nodeService("later", "other");
  EXPECT_TRUE(covered("appmesh/virtualService/m/later"));
  auto with_later = compileNode("client");
  ASSERT_TRUE(with_later.has_value());
  EXPECT_NE(configHash(with_later->config), after_node);
  EXPECT_NE(toJson(with_later->config).find("cds_egress_m_other_http_8080"), std::string::npos);
  // A new route under the router's listed prefix changes it too.
  route("r", "b", R"({"httpRoute":{"match":{"prefix":"/b"},
      "action":{"weightedTargets":[{"virtualNode":"other","weight":1}]}}})");
  EXPECT_TRUE(covered("appmesh/route/m/r/b"));
  EXPECT_NE(configHash(compileNode("client")->config), configHash(with_later->config));
}

TEST_F(CompilerTest, CloudMapInstanceChangesFollowDependsOn) {
  mesh("m");
  node("pay", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"awsCloudMap":{"namespaceName":"corp.local","serviceName":"pay"}}})");
  nodeService("pay.svc", "pay");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"pay.svc"}}]})");
  // No namespace yet: the service answers 503 and depends on the namespace collection.
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), "registry/namespaces/"),
            r->depends_on.end());
  EXPECT_NE(toJson(r->config).find("\"status\": 503"), std::string::npos) << toJson(r->config);
  cloudMapService("ns-1", "corp.local", "srv-1", "pay");
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1"})");
  auto r2 = compileNode("client");
  ASSERT_TRUE(r2.has_value());
  EXPECT_NE(toJson(r2->config).find("10.0.0.1"), std::string::npos);
  instance("srv-1", "i-1", R"({"AWS_INSTANCE_IPV4":"10.0.0.1"})", "UNHEALTHY");
  instance("srv-1", "i-2", R"({"AWS_INSTANCE_IPV4":"10.0.0.2"})");
  auto r3 = compileNode("client");
  ASSERT_TRUE(r3.has_value());
  std::string j = toJson(r3->config);
  EXPECT_EQ(j.find("10.0.0.1"), std::string::npos) << j;
  EXPECT_NE(j.find("10.0.0.2"), std::string::npos) << j;
}

TEST_F(CompilerTest, MissingResourcesAreNotFound) {
  auto no_mesh = compileNode("n", "nomesh");
  ASSERT_FALSE(no_mesh.has_value());
  EXPECT_EQ(no_mesh.error().code, kCompileNotFound) << no_mesh.error().message;
  mesh("m");
  auto no_node = compileNode("ghost");
  ASSERT_FALSE(no_node.has_value());
  EXPECT_EQ(no_node.error().code, kCompileNotFound);
  EXPECT_NE(no_node.error().message.find("ghost"), std::string::npos) << no_node.error().message;
  auto no_gw = compileGateway("ghost");
  ASSERT_FALSE(no_gw.has_value());
  EXPECT_EQ(no_gw.error().code, kCompileNotFound);
}

TEST_F(CompilerTest, AcmCertificateIsAClearError) {
  mesh("m");
  node("web", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},
      "tls":{"mode":"STRICT","certificate":{"acm":{"certificateArn":"arn:aws:acm:us-west-2:111122223333:certificate/abc"}}}}],
      "serviceDiscovery":{"dns":{"hostname":"web.local"}}})");
  auto r = compileNode("web");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kCompileUnsupported);
  EXPECT_NE(r.error().message.find("spec.listeners[0].tls.certificate.acm"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("ACM"), std::string::npos) << r.error().message;

  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"web.svc"}}],
      "backendDefaults":{"clientPolicy":{"tls":{"validation":{"trust":{"acm":{"certificateAuthorityArns":["arn:aws:acm-pca:us-west-2:111122223333:certificate-authority/x"]}}}}}}})");
  updateNode("web", dnsNode("web.local"));
  nodeService("web.svc", "web");
  auto c = compileNode("client");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code, kCompileUnsupported);
  EXPECT_NE(c.error().message.find("trust.acm"), std::string::npos) << c.error().message;
}

TEST_F(CompilerTest, ListenersWithDifferentTlsAreRefused) {
  mesh("m");
  node("web", R"({"listeners":[
      {"portMapping":{"port":8080,"protocol":"http"},
       "tls":{"mode":"STRICT","certificate":{"file":{"certificateChain":"/a.pem","privateKey":"/a.key"}}}},
      {"portMapping":{"port":8081,"protocol":"http"}}],
      "serviceDiscovery":{"dns":{"hostname":"web.local"}}})");
  auto r = compileNode("web");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kCompileUnsupported);
  EXPECT_NE(r.error().message.find("spec.listeners[1].tls"), std::string::npos)
      << r.error().message;
}

TEST_F(CompilerTest, MissingTargetsBecome503AndWarn) {
  mesh("m");
  node("v1", dnsNode("v1.local"));
  router("r", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})");
  route("r", "a", R"({"httpRoute":{"match":{"prefix":"/"},
      "action":{"weightedTargets":[{"virtualNode":"v1","weight":1}]}}})");
  routerService("s", "r");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"s"}}]})");
  // A route's target may be deleted while the route still names it.
  call("DELETE", "/v20190125/meshes/m/virtualNodes/v1", "");
  auto r = compileNode("client");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  for (const std::string& p : consistencyProblems(r->config)) ADD_FAILURE() << p;
  std::string j = toJson(r->config);
  EXPECT_NE(j.find("\"status\": 503"), std::string::npos) << j;
  EXPECT_EQ(j.find("cds_egress"), std::string::npos) << j;
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("\"v1\" does not exist"), std::string::npos) << r->warnings[0];
  EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), "appmesh/virtualNode/m/v1"),
            r->depends_on.end())
      << "the missing target's key must be a dependency (it may be created again)";
}

TEST_F(CompilerTest, ParseProxyResourceForms) {
  auto a = parseProxyResource("mesh/m1/virtualNode/n1");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(*a, (ProxyIdentity{Kind::kVirtualNode, "m1", "n1"}));
  EXPECT_EQ(a->resource(), "mesh/m1/virtualNode/n1");
  auto g = parseProxyResource("mesh/m1/virtualGateway/gw");
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(*g, (ProxyIdentity{Kind::kVirtualGateway, "m1", "gw"}));
  EXPECT_EQ(g->resource(), "mesh/m1/virtualGateway/gw");
  auto arn = parseProxyResource("arn:aws:appmesh:eu-west-1:123456789012:mesh/prod/virtualNode/web");
  ASSERT_TRUE(arn.has_value()) << arn.error().message;
  EXPECT_EQ(*arn, (ProxyIdentity{Kind::kVirtualNode, "prod", "web"}));
  auto cn =
      parseProxyResource("arn:aws-cn:appmesh:cn-north-1:123456789012:mesh/p/virtualGateway/g");
  ASSERT_TRUE(cn.has_value()) << cn.error().message;
  EXPECT_EQ(cn->kind, Kind::kVirtualGateway);
  for (const char* bad :
       {"", "mesh/m", "mesh/m/virtualNode", "mesh/m/virtualNode/", "mesh//virtualNode/n",
        "mesh/m/virtualRouter/r", "mesh/m/virtualNode/n/extra", "m/virtualNode/n",
        "arn:aws:s3:::bucket", "arn:aws:appmesh:us-west-2:1:mesh/m", "arn:aws:appmesh:x"}) {
    auto r = parseProxyResource(bad);
    ASSERT_FALSE(r.has_value()) << "accepted \"" << bad << "\"";
    EXPECT_NE(r.error().message.find("mesh/MESH/virtualNode/NAME"), std::string::npos)
        << "error for \"" << bad
        << "\" does not say which forms are accepted: " << r.error().message;
  }
}

TEST_F(CompilerTest, ConfigHashIsSha256OfDeterministicBytes) {
  v1::ProxyConfig a;
  a.set_node("x");
  v1::ProxyConfig b = a;
  EXPECT_EQ(configHash(a), configHash(b));
  b.set_node("y");
  EXPECT_NE(configHash(a), configHash(b));
  EXPECT_EQ(configHash(v1::ProxyConfig()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace weft::control::compile
