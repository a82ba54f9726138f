#include "control/registry/registry_api.h"

#include <gtest/gtest.h>

#include <thread>

#include "control/registry/dns_answer.h"
#include "control/registry/dns_message.h"
#include "control/registry/dns_test_support.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::registry {
namespace {

using stacks::Value;

class RegistryApiTest : public ::testing::Test {
 protected:
  MemoryStore store;
  SimTimeSource time;
  RegistryApi api{store, time, RegistryOptions{"us-west-2", "123456789012"}};

  struct Reply {
    int status;
    std::string type;  // __type, for errors
    Value body;
  };

  Reply call(const std::string& op, const std::string& body) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", "Route53AutoNaming_v20170314." + op}};
    r.body = body;
    ApiResponse resp = api.handleCloudMap(r);
    auto v = stacks::parseJson(resp.body);
    EXPECT_TRUE(v) << op << " answered non-JSON: " << resp.body;
    Reply out{resp.status, "", v ? *v : Value()};
    if (const Value* t = out.body.find("__type")) out.type = std::string(t->str());
    return out;
  }
  Value ok(const std::string& op, const std::string& body) {
    Reply r = call(op, body);
    EXPECT_EQ(r.status, 200) << op << " " << body << " answered " << stacks::toJson(r.body);
    return r.body;
  }
  void expectError(const std::string& op, const std::string& body, const std::string& type) {
    Reply r = call(op, body);
    EXPECT_EQ(r.status, 400) << op << " " << body;
    EXPECT_EQ(r.type, type) << op << " " << body << " answered " << stacks::toJson(r.body);
  }
  ApiResponse rest(const std::string& method, const std::string& path, const std::string& body = "",
                   std::vector<std::pair<std::string, std::string>> query = {}) {
    ApiRequest r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.query = std::move(query);
    return RegistryApi::handlesNetworks(path) ? api.handleNetworks(r) : api.handleRoute53(r);
  }

  std::string network(const std::string& cidr = "198.18.0.0/16") {
    ApiResponse r = rest("POST", "/weft/v1/networks", R"({"name":"n","cidrs":[")" + cidr + "\"]}");
    EXPECT_EQ(r.status, 200) << r.body;
    return std::string(stacks::parseJson(r.body)->find("id")->str());
  }
  // Creates a private namespace; answers its id (through the operation's target).
  std::string privateNamespace(const std::string& name, const std::string& vpc) {
    Value op =
        ok("CreatePrivateDnsNamespace", R"({"Name":")" + name + R"(","Vpc":")" + vpc + "\"}");
    Value got = ok("GetOperation",
                   R"({"OperationId":")" + std::string(op.find("OperationId")->str()) + "\"}");
    const Value* o = got.find("Operation");
    EXPECT_EQ(o->find("Status")->str(), "SUCCESS");
    EXPECT_EQ(o->find("Type")->str(), "CREATE_NAMESPACE");
    return std::string(o->find("Targets")->find("NAMESPACE")->str());
  }
  std::string service(const std::string& ns, const std::string& name,
                      const std::string& extra = "") {
    Value s =
        ok("CreateService",
           R"({"Name":")" + name + R"(","NamespaceId":")" + ns +
               R"(","DnsConfig":{"DnsRecords":[{"Type":"A","TTL":60},{"Type":"SRV","TTL":60}]})" +
               extra + "}");
    return std::string(s.find("Service")->find("Id")->str());
  }
  void instance(const std::string& svc, const std::string& id, const std::string& ip,
                const std::string& more = "") {
    ok("RegisterInstance", R"({"ServiceId":")" + svc + R"(","InstanceId":")" + id +
                               R"(","Attributes":{"AWS_INSTANCE_IPV4":")" + ip +
                               R"(","AWS_INSTANCE_PORT":"8080")" + more + "}}");
  }
  std::vector<std::string> discovered(const std::string& body) {
    Value v = ok("DiscoverInstances", body);
    std::vector<std::string> ids;
    for (const Value& i : v.find("Instances")->items())
      ids.emplace_back(i.find("InstanceId")->str());
    std::sort(ids.begin(), ids.end());
    return ids;
  }
};

TEST_F(RegistryApiTest, NamespaceLifecycleAndErrors) {
  std::string vpc = network();
  std::string ns = privateNamespace("appmeshworkshop.hosted.local", vpc);
  Value got = ok("GetNamespace", R"({"Id":")" + ns + "\"}");
  const Value* n = got.find("Namespace");
  EXPECT_EQ(n->find("Type")->str(), "DNS_PRIVATE");
  EXPECT_EQ(n->find("Arn")->str(),
            "arn:aws:servicediscovery:us-west-2:123456789012:namespace/" + ns);
  EXPECT_EQ(n->find("Vpcs"), nullptr) << "internal members must not leak";
  EXPECT_EQ(n->find("Properties")->find("DnsProperties")->find("HostedZoneId")->str().substr(0, 1),
            "Z");
  expectError("CreatePrivateDnsNamespace",
              R"({"Name":"appmeshworkshop.hosted.local","Vpc":")" + vpc + "\"}",
              "NamespaceAlreadyExists");
  expectError("CreatePrivateDnsNamespace", R"({"Name":"x.local","Vpc":"vpc-nope"})",
              "InvalidInput");
  expectError("CreatePrivateDnsNamespace", R"({"Name":"x.local"})", "InvalidInput");
  expectError("CreatePrivateDnsNamespace", R"({"Name":"bad..name","Vpc":")" + vpc + "\"}",
              "InvalidInput");
  expectError("GetNamespace", R"({"Id":"ns-nope"})", "NamespaceNotFound");
  expectError("DeleteNamespace", R"({"Id":"ns-nope"})", "NamespaceNotFound");
  ok("CreateHttpNamespace", R"({"Name":"api"})");
  Value list = ok("ListNamespaces", R"({"Filters":[{"Name":"TYPE","Values":["HTTP"]}]})");
  ASSERT_EQ(list.find("Namespaces")->items().size(), 1u);
  EXPECT_EQ(list.find("Namespaces")->items()[0].find("Name")->str(), "api");
  // A network with a namespace attached cannot go.
  EXPECT_EQ(rest("DELETE", "/weft/v1/networks/" + vpc).status, 409);
  std::string svc = service(ns, "crystal");
  expectError("DeleteNamespace", R"({"Id":")" + ns + "\"}", "ResourceInUse");
  ok("DeleteService", R"({"Id":")" + svc + "\"}");
  ok("DeleteNamespace", R"({"Id":")" + ns + "\"}");
  EXPECT_EQ(rest("DELETE", "/weft/v1/networks/" + vpc).status, 200);
  EXPECT_EQ(rest("DELETE", "/weft/v1/networks/" + vpc).status, 404);
}

TEST_F(RegistryApiTest, CreatorRequestIdIsIdempotentAndDuplicateRequestOtherwise) {
  Value a = ok("CreateHttpNamespace", R"({"Name":"one","CreatorRequestId":"r1"})");
  Value b = ok("CreateHttpNamespace", R"({"Name":"one","CreatorRequestId":"r1"})");
  EXPECT_EQ(a.find("OperationId")->str(), b.find("OperationId")->str());
  expectError("CreateHttpNamespace", R"({"Name":"two","CreatorRequestId":"r1"})",
              "DuplicateRequest");
}

TEST_F(RegistryApiTest, UpdateNamespacesChangeDescriptionAndSoaTtl) {
  std::string vpc = network();
  std::string ns = privateNamespace("appmeshworkshop.hosted.local", vpc);
  ASSERT_EQ(api.snapshots().load()->zones.size(), 1u);
  EXPECT_EQ(api.snapshots().load()->zones[0].soa_ttl, 15u);
  Value op = ok("UpdatePrivateDnsNamespace",
                R"({"Id":")" + ns +
                    R"(","UpdaterRequestId":"u1","Namespace":{"Description":"x",)"
                    R"("Properties":{"DnsProperties":{"SOA":{"TTL":30}}}}})");
  Value got = ok("GetOperation",
                 R"({"OperationId":")" + std::string(op.find("OperationId")->str()) + "\"}");
  const Value* o = got.find("Operation");
  EXPECT_EQ(o->find("Status")->str(), "SUCCESS");
  EXPECT_EQ(o->find("Type")->str(), "UPDATE_NAMESPACE");
  EXPECT_EQ(o->find("Targets")->find("NAMESPACE")->str(), ns);
  Value n = ok("GetNamespace", R"({"Id":")" + ns + "\"}");
  const Value* nv = n.find("Namespace");
  EXPECT_EQ(nv->find("Description")->str(), "x");
  const Value* dp = nv->find("Properties")->find("DnsProperties");
  EXPECT_EQ(dp->find("SOA")->find("TTL")->text(), "30");
  EXPECT_EQ(dp->find("HostedZoneId")->str().substr(0, 1), "Z") << "the zone id must be kept";
  ASSERT_EQ(api.snapshots().load()->zones.size(), 1u);
  EXPECT_EQ(api.snapshots().load()->zones[0].soa_ttl, 30u)
      << "the SOA TTL change must reach the DNS snapshot";

  // Same UpdaterRequestId for the same namespace: the first operation; another namespace: error.
  Value again =
      ok("UpdatePrivateDnsNamespace",
         R"({"Id":")" + ns + R"(","UpdaterRequestId":"u1","Namespace":{"Description":"y"}})");
  EXPECT_EQ(again.find("OperationId")->str(), op.find("OperationId")->str());
  EXPECT_EQ(
      ok("GetNamespace", R"({"Id":")" + ns + "\"}").find("Namespace")->find("Description")->str(),
      "x")
      << "an idempotent retry must not apply the change again";

  // A description-only change keeps the SOA TTL.
  ok("UpdatePrivateDnsNamespace", R"({"Id":")" + ns + R"(","Namespace":{"Description":"z"}})");
  EXPECT_EQ(api.snapshots().load()->zones[0].soa_ttl, 30u);

  expectError("UpdatePrivateDnsNamespace", R"({"Id":"ns-nope","Namespace":{"Description":"x"}})",
              "NamespaceNotFound");
  expectError("UpdatePrivateDnsNamespace", R"({"Id":")" + ns + "\"}", "InvalidInput");
  expectError("UpdatePrivateDnsNamespace",
              R"({"Id":")" + ns + R"(","Namespace":{"Properties":{"DnsProperties":{"SOA":{}}}}})",
              "InvalidInput");
  expectError("UpdatePublicDnsNamespace",
              R"({"Id":")" + ns + R"(","Namespace":{"Description":"x"}})", "InvalidInput");

  Value pub = ok("CreatePublicDnsNamespace", R"({"Name":"example.com"})");
  std::string pub_id(ok("GetOperation",
                        R"({"OperationId":")" + std::string(pub.find("OperationId")->str()) + "\"}")
                         .find("Operation")
                         ->find("Targets")
                         ->find("NAMESPACE")
                         ->str());
  ok("UpdatePublicDnsNamespace",
     R"({"Id":")" + pub_id +
         R"(","Namespace":{"Properties":{"DnsProperties":{"SOA":{"TTL":60}}}}})");
  EXPECT_EQ(ok("GetNamespace", R"({"Id":")" + pub_id + "\"}")
                .find("Namespace")
                ->find("Properties")
                ->find("DnsProperties")
                ->find("SOA")
                ->find("TTL")
                ->text(),
            "60");

  Value http = ok("CreateHttpNamespace", R"({"Name":"api"})");
  std::string http_id(ok("GetOperation", R"({"OperationId":")" +
                                             std::string(http.find("OperationId")->str()) + "\"}")
                          .find("Operation")
                          ->find("Targets")
                          ->find("NAMESPACE")
                          ->str());
  ok("UpdateHttpNamespace", R"({"Id":")" + http_id + R"(","Namespace":{"Description":"h"}})");
  EXPECT_EQ(ok("GetNamespace", R"({"Id":")" + http_id + "\"}")
                .find("Namespace")
                ->find("Description")
                ->str(),
            "h");
  expectError("UpdateHttpNamespace", R"({"Id":")" + http_id + R"(","Namespace":{}})",
              "InvalidInput");
  expectError("UpdateHttpNamespace", R"({"Id":"ns-nope","Namespace":{"Description":"h"}})",
              "NamespaceNotFound");
  expectError("UpdateHttpNamespace", R"({"Id":")" + ns + R"(","Namespace":{"Description":"h"}})",
              "InvalidInput");
}

TEST_F(RegistryApiTest, ServiceRulesAndErrors) {
  std::string ns = privateNamespace("mesh.local", network());
  std::string http_ns;
  {
    ok("CreateHttpNamespace", R"({"Name":"h"})");
    Value l = ok("ListNamespaces", R"({"Filters":[{"Name":"NAME","Values":["h"]}]})");
    http_ns = std::string(l.find("Namespaces")->items()[0].find("Id")->str());
  }
  std::string svc = service(ns, "crystal");
  Reply dup = call("CreateService", R"({"Name":"crystal","NamespaceId":")" + ns + "\"}");
  EXPECT_EQ(dup.type, "ServiceAlreadyExists");
  EXPECT_EQ(dup.body.find("ServiceId")->str(), svc);
  expectError("CreateService", R"({"Name":"x","NamespaceId":"ns-nope"})", "NamespaceNotFound");
  expectError("CreateService",
              R"({"Name":"x","NamespaceId":")" + http_ns +
                  R"(","DnsConfig":{"DnsRecords":[{"Type":"A","TTL":1}]}})",
              "InvalidInput");
  expectError("CreateService",
              R"({"Name":"x","NamespaceId":")" + ns +
                  R"(","DnsConfig":{"DnsRecords":[{"Type":"MX","TTL":1}]}})",
              "InvalidInput");
  expectError("CreateService",
              R"({"Name":"x","NamespaceId":")" + ns +
                  R"(","DnsConfig":{"DnsRecords":[{"Type":"CNAME","TTL":1}]}})",
              "InvalidInput");  // CNAME needs WEIGHTED
  expectError("CreateService",
              R"({"Name":"x","NamespaceId":")" + ns + R"(","HealthCheckConfig":{"Type":"HTTP"}})",
              "InvalidInput");  // Route 53 health checks: public namespaces only
  expectError("GetService", R"({"Id":"srv-nope"})", "ServiceNotFound");
  Value got = ok("GetService", R"({"Id":")" + svc + "\"}");
  EXPECT_EQ(got.find("Service")->find("Type")->str(), "DNS_HTTP");
  EXPECT_EQ(got.find("Service")->find("DnsConfig")->find("RoutingPolicy")->str(), "MULTIVALUE");
  Value upd = ok(
      "UpdateService",
      R"({"Id":")" + svc +
          R"(","Service":{"DnsConfig":{"DnsRecords":[{"Type":"A","TTL":5},{"Type":"SRV","TTL":6}]}}})");
  EXPECT_FALSE(upd.find("OperationId")->str().empty());
  expectError(
      "UpdateService",
      R"({"Id":")" + svc + R"(","Service":{"DnsConfig":{"DnsRecords":[{"Type":"AAAA","TTL":5}]}}})",
      "InvalidInput");
  Value listed =
      ok("ListServices", R"({"Filters":[{"Name":"NAMESPACE_ID","Values":[")" + ns + "\"]}]}");
  ASSERT_EQ(listed.find("Services")->items().size(), 1u);
  EXPECT_EQ(listed.find("Services")
                ->items()[0]
                .find("DnsConfig")
                ->find("DnsRecords")
                ->items()[0]
                .find("TTL")
                ->text(),
            "5");
  instance(svc, "i-1", "198.18.0.1");
  expectError("DeleteService", R"({"Id":")" + svc + "\"}", "ResourceInUse");
}

TEST_F(RegistryApiTest, InstancesHealthAndDiscovery) {
  std::string ns = privateNamespace("mesh.local", network());
  std::string svc = service(ns, "web", R"(,"HealthCheckCustomConfig":{})");
  instance(svc, "i-1", "198.18.0.1", R"(,"stage":"prod","az":"a")");
  instance(svc, "i-2", "198.18.0.2", R"(,"stage":"prod","az":"b")");
  instance(svc, "i-3", "198.18.0.3", R"(,"stage":"dev","AWS_INIT_HEALTH_STATUS":"UNHEALTHY")");
  expectError(
      "RegisterInstance",
      R"({"ServiceId":")" + svc + R"(","InstanceId":"x","Attributes":{"AWS_INSTANCE_PORT":"1"}})",
      "InvalidInput");  // an A record needs AWS_INSTANCE_IPV4
  expectError(
      "RegisterInstance",
      R"({"ServiceId":")" + svc +
          R"(","InstanceId":"x","Attributes":{"AWS_INSTANCE_IPV4":"300.1.1.1","AWS_INSTANCE_PORT":"1"}})",
      "InvalidInput");
  expectError("RegisterInstance", R"({"ServiceId":"srv-nope","InstanceId":"x","Attributes":{}})",
              "ServiceNotFound");
  expectError("GetInstance", R"({"ServiceId":")" + svc + R"(","InstanceId":"nope"})",
              "InstanceNotFound");
  expectError("DeregisterInstance", R"({"ServiceId":")" + svc + R"(","InstanceId":"nope"})",
              "InstanceNotFound");
  Value inst = ok("GetInstance", R"({"ServiceId":")" + svc + R"(","InstanceId":"i-1"})");
  EXPECT_EQ(inst.find("Instance")->find("Attributes")->find("az")->str(), "a");
  EXPECT_EQ(
      ok("GetService", R"({"Id":")" + svc + "\"}").find("Service")->find("InstanceCount")->text(),
      "3");

  std::string base = R"({"NamespaceName":"mesh.local","ServiceName":"web")";
  EXPECT_EQ(discovered(base + "}"), (std::vector<std::string>{"i-1", "i-2"}));
  EXPECT_EQ(discovered(base + R"(,"HealthStatus":"ALL"})"),
            (std::vector<std::string>{"i-1", "i-2", "i-3"}));
  EXPECT_EQ(discovered(base + R"(,"HealthStatus":"UNHEALTHY"})"),
            (std::vector<std::string>{"i-3"}));
  EXPECT_EQ(
      discovered(base + R"(,"QueryParameters":{"stage":"prod"},"OptionalParameters":{"az":"b"}})"),
      (std::vector<std::string>{"i-2"}));
  EXPECT_EQ(
      discovered(base + R"(,"QueryParameters":{"stage":"prod"},"OptionalParameters":{"az":"z"}})"),
      (std::vector<std::string>{"i-1", "i-2"}));
  EXPECT_EQ(discovered(base + R"(,"QueryParameters":{"stage":"dev"}})"),
            std::vector<std::string>{});
  EXPECT_EQ(
      discovered(base +
                 R"(,"QueryParameters":{"stage":"dev"},"HealthStatus":"HEALTHY_OR_ELSE_ALL"})"),
      (std::vector<std::string>{"i-3"}));
  expectError("DiscoverInstances", R"({"NamespaceName":"nope","ServiceName":"web"})",
              "NamespaceNotFound");
  expectError("DiscoverInstances", R"({"NamespaceName":"mesh.local","ServiceName":"nope"})",
              "ServiceNotFound");
  expectError("DiscoverInstances", base + R"(,"HealthStatus":"SOMETIMES"})", "InvalidInput");

  ok("UpdateInstanceCustomHealthStatus",
     R"({"ServiceId":")" + svc + R"(","InstanceId":"i-1","Status":"UNHEALTHY"})");
  Value health = ok("GetInstancesHealthStatus", R"({"ServiceId":")" + svc + "\"}");
  EXPECT_EQ(health.find("Status")->find("i-1")->str(), "UNHEALTHY");
  EXPECT_EQ(health.find("Status")->find("i-2")->str(), "HEALTHY");
  Value paged = ok("GetInstancesHealthStatus", R"({"ServiceId":")" + svc + R"(","MaxResults":2})");
  EXPECT_EQ(paged.find("Status")->members().size(), 2u);
  ASSERT_NE(paged.find("NextToken"), nullptr);
  expectError("GetInstancesHealthStatus", R"({"ServiceId":")" + svc + R"(","Instances":["zz"]})",
              "InstanceNotFound");
  expectError("UpdateInstanceCustomHealthStatus",
              R"({"ServiceId":")" + svc + R"(","InstanceId":"i-1","Status":"MAYBE"})",
              "InvalidInput");

  // The DNS snapshot follows: i-2 is the only healthy one.
  auto peer = *net::parseAddress("127.0.0.1", 1);
  auto m = dns::parseMessage(answerDnsQuery(*api.snapshots().load(),
                                            testing::query("web.mesh.local", dns::kTypeA), peer,
                                            Transport::kUdp, 0));
  ASSERT_TRUE(m);
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].rdata, std::string("\xc6\x12\x00\x02", 4));

  // A service without a health check: UpdateInstanceCustomHealthStatus is CustomHealthNotFound.
  std::string plain = service(ns, "plain");
  instance(plain, "p-1", "198.18.1.1");
  expectError("UpdateInstanceCustomHealthStatus",
              R"({"ServiceId":")" + plain + R"(","InstanceId":"p-1","Status":"HEALTHY"})",
              "CustomHealthNotFound");
  Value pd = ok("DiscoverInstances", R"({"NamespaceName":"mesh.local","ServiceName":"plain"})");
  ASSERT_EQ(pd.find("Instances")->items().size(), 1u);
  EXPECT_EQ(pd.find("Instances")->items()[0].find("HealthStatus")->str(), "UNKNOWN");

  ok("DeregisterInstance", R"({"ServiceId":")" + svc + R"(","InstanceId":"i-3"})");
  Value li = ok("ListInstances", R"({"ServiceId":")" + svc + R"(","MaxResults":1})");
  EXPECT_EQ(li.find("Instances")->items().size(), 1u);
  Value li2 = ok("ListInstances", R"({"ServiceId":")" + svc + R"(","NextToken":")" +
                                      std::string(li.find("NextToken")->str()) + "\"}");
  ASSERT_EQ(li2.find("Instances")->items().size(), 1u);
  EXPECT_EQ(li2.find("Instances")->items()[0].find("Id")->str(), "i-2");
}

TEST_F(RegistryApiTest, OperationsListAndFilters) {
  expectError("GetOperation", R"({"OperationId":"nope"})", "OperationNotFound");
  std::string ns = privateNamespace("mesh.local", network());
  std::string svc = service(ns, "web");
  instance(svc, "i-1", "198.18.0.1");
  Value all = ok("ListOperations", "{}");
  EXPECT_EQ(all.find("Operations")->items().size(), 2u);
  Value reg =
      ok("ListOperations", R"({"Filters":[{"Name":"TYPE","Values":["REGISTER_INSTANCE"]}]})");
  EXPECT_EQ(reg.find("Operations")->items().size(), 1u);
  Value by_ns =
      ok("ListOperations", R"({"Filters":[{"Name":"NAMESPACE_ID","Values":[")" + ns + "\"]}]}");
  EXPECT_EQ(by_ns.find("Operations")->items().size(), 1u);
  expectError("ListOperations", R"({"Filters":[{"Name":"COLOUR","Values":["x"]}]})",
              "InvalidInput");
  expectError("Frobnicate", "{}", "UnknownOperationException");
  expectError("GetNamespace", "not json", "InvalidInput");
}

TEST_F(RegistryApiTest, Route53HostedZones) {
  std::string vpc = network(), vpc2 = network("198.19.0.0/16");
  std::string ns = privateNamespace("appmeshworkshop.hosted.local", vpc);
  std::string zone(ok("GetNamespace", R"({"Id":")" + ns + "\"}")
                       .find("Namespace")
                       ->find("Properties")
                       ->find("DnsProperties")
                       ->find("HostedZoneId")
                       ->str());
  ApiResponse list = rest("GET", "/2013-04-01/hostedzonesbyname", "",
                          {{"dnsname", "appmeshworkshop.hosted.local"}});
  EXPECT_EQ(list.status, 200);
  EXPECT_NE(list.body.find("<Id>/hostedzone/" + zone + "</Id>"), std::string::npos) << list.body;
  EXPECT_NE(list.body.find("<Name>appmeshworkshop.hosted.local.</Name>"), std::string::npos)
      << list.body;
  EXPECT_NE(list.body.find("<PrivateZone>true</PrivateZone>"), std::string::npos) << list.body;
  ApiResponse get = rest("GET", "/2013-04-01/hostedzone/" + zone);
  EXPECT_EQ(get.status, 200);
  EXPECT_NE(get.body.find("<VPCId>" + vpc + "</VPCId>"), std::string::npos) << get.body;
  ApiResponse missing = rest("GET", "/2013-04-01/hostedzone/ZNOPE");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("<Code>NoSuchHostedZone</Code>"), std::string::npos) << missing.body;
  auto vpcXml = [](const std::string& root, const std::string& id) {
    return "<" + root + "><VPC><VPCRegion>us-west-2</VPCRegion><VPCId>" + id + "</VPCId></VPC></" +
           root + ">";
  };
  ApiResponse assoc = rest("POST", "/2013-04-01/hostedzone/" + zone + "/associatevpc",
                           vpcXml("AssociateVPCWithHostedZoneRequest", vpc2));
  EXPECT_EQ(assoc.status, 200) << assoc.body;
  EXPECT_NE(assoc.body.find("<Status>INSYNC</Status>"), std::string::npos) << assoc.body;
  // The second network's callers are now answered.
  auto from = [&](const char* ip) {
    auto m = dns::parseMessage(answerDnsQuery(
        *api.snapshots().load(), testing::query("appmeshworkshop.hosted.local", dns::kTypeSoa),
        *net::parseAddress(ip, 1), Transport::kUdp, 0));
    return m ? m->rcode() : 99;
  };
  EXPECT_EQ(from("198.19.3.3"), dns::kNoError);
  EXPECT_NE(rest("POST", "/2013-04-01/hostedzone/" + zone + "/associatevpc",
                 vpcXml("AssociateVPCWithHostedZoneRequest", "vpc-nope"))
                .body.find("InvalidVPCId"),
            std::string::npos);
  EXPECT_EQ(rest("POST", "/2013-04-01/hostedzone/" + zone + "/disassociatevpc",
                 vpcXml("DisassociateVPCFromHostedZoneRequest", vpc2))
                .status,
            200);
  EXPECT_EQ(from("198.19.3.3"), dns::kRefused);
  ApiResponse last = rest("POST", "/2013-04-01/hostedzone/" + zone + "/disassociatevpc",
                          vpcXml("DisassociateVPCFromHostedZoneRequest", vpc));
  EXPECT_NE(last.body.find("LastVPCAssociation"), std::string::npos) << last.body;
  ApiResponse notfound = rest("POST", "/2013-04-01/hostedzone/" + zone + "/disassociatevpc",
                              vpcXml("DisassociateVPCFromHostedZoneRequest", vpc2));
  EXPECT_NE(notfound.body.find("VPCAssociationNotFound"), std::string::npos) << notfound.body;
}

TEST_F(RegistryApiTest, ConcurrentRegistrationsAllCount) {
  std::string ns = privateNamespace("mesh.local", network());
  std::string svc = service(ns, "web");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i)
        instance(svc, "i-" + std::to_string(t) + "-" + std::to_string(i),
                 "198.18.0." + std::to_string(t * 10 + i + 1));
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(
      ok("GetService", R"({"Id":")" + svc + "\"}").find("Service")->find("InstanceCount")->text(),
      "20");
  EXPECT_EQ(api.snapshots().load()->zones[0].services.at("web").instances.size(), 20u);
}

}  // namespace
}  // namespace weft::control::registry
