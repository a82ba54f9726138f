#include "control/registry/auto_registration.h"

#include <gtest/gtest.h>

#include "control/model/resource_keys.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::registry {
namespace {

using stacks::Value;
using namespace std::chrono_literals;

constexpr auto kStale = std::chrono::milliseconds(30'000);

class AutoRegistrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ok("CreateHttpNamespace", R"({"Name":"apps.local"})");
    std::string ns = nsId();
    sid_ = std::string(
        ok("CreateService", R"({"Name":"web","NamespaceId":")" + ns +
                                R"(","HealthCheckCustomConfig":{"FailureThreshold":1}})")
            .find("Service")
            ->find("Id")
            ->str());
    putNode("web", R"({"awsCloudMap":{"namespaceName":"apps.local","serviceName":"web",)"
                   R"("attributes":[{"key":"stage","value":"blue"}]}})");
  }

  std::string nsId() {
    Value r = ok("ListNamespaces", "{}");
    return std::string(r.find("Namespaces")->items().at(0).find("Id")->str());
  }

  void putNode(const std::string& name, const std::string& discovery) {
    std::string key = appmesh::resourceKey({appmesh::Kind::kVirtualNode, "m", "", name});
    std::string rec = R"({"virtualNode":{"meshName":"m","virtualNodeName":")" + name +
                      R"(","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],)"
                      R"("serviceDiscovery":)" +
                      discovery + "}}}";
    ASSERT_TRUE(store.commit({StoreOp::put(key, rec, StoreOp::kAnyRevision)}));
  }

  Value ok(const std::string& op, const std::string& body) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", "Route53AutoNaming_v20170314." + op}};
    r.body = body;
    ApiResponse resp = api.handleCloudMap(r);
    EXPECT_EQ(resp.status, 200) << op << " " << body << " answered " << resp.body;
    auto v = stacks::parseJson(resp.body);
    return v ? *v : Value::object();
  }

  // The instance record as the store holds it, or null.
  std::optional<Value> instance(const std::string& id) {
    auto kv = store.get("registry/instances/" + sid_ + "/" + id);
    if (!kv || !kv->has_value()) return std::nullopt;
    auto v = stacks::parseJson((*kv)->value);
    return v ? std::optional<Value>(*v) : std::nullopt;
  }
  std::string health(const std::string& id) {
    auto i = instance(id);
    return i ? std::string(i->find("HealthStatus")->str()) : "<absent>";
  }
  std::string attr(const std::string& id, const std::string& key) {
    auto i = instance(id);
    const Value* a = i ? i->find("Attributes")->find(key) : nullptr;
    return a ? std::string(a->str()) : "<absent>";
  }

  push::ConnectedProxy proxy(uint64_t stream, std::string node = "web") {
    push::ConnectedProxy p;
    p.stream_id = stream;
    p.who.kind = appmesh::Kind::kVirtualNode;
    p.who.mesh = "m";
    p.who.name = std::move(node);
    p.host = "host a";
    p.addresses = {"fd00::5", "10.1.2.3", "10.9.9.9"};
    return p;
  }

  MemoryStore store;
  SimTimeSource time;
  RegistryApi api{store, time, RegistryOptions{"us-west-2", "123456789012"}};
  AutoRegistration reg{store, api, time};
  std::string sid_;
  const std::string id_ = "host-a-10.1.2.3";
};

TEST_F(AutoRegistrationTest, HelloRegistersTheAppWithAddressPortAndAttributes) {
  reg.proxyConnected(proxy(1));
  ASSERT_TRUE(instance(id_)) << "expected instance " << id_ << " after the Hello";
  EXPECT_EQ(attr(id_, "AWS_INSTANCE_IPV4"), "10.1.2.3") << "the first IPv4 of the Hello";
  EXPECT_EQ(attr(id_, "AWS_INSTANCE_PORT"), "8080") << "the node's first listener port";
  EXPECT_EQ(attr(id_, "stage"), "blue") << "the node's awsCloudMap attributes";
  EXPECT_EQ(attr(id_, "weft:auto"), "1");
  EXPECT_EQ(health(id_), "HEALTHY") << "a custom-health service starts instances HEALTHY";
  Value svc = ok("GetService", R"({"Id":")" + sid_ + R"("})");
  EXPECT_EQ(svc.find("Service")->find("InstanceCount")->text(), "1");
  Value found = ok("DiscoverInstances", R"({"NamespaceName":"apps.local","ServiceName":"web"})");
  ASSERT_EQ(found.find("Instances")->items().size(), 1u) << stacks::toJson(found);
  EXPECT_EQ(reg.managed(), std::set<std::string>{sid_ + "/" + id_});
}

TEST_F(AutoRegistrationTest, HealthReportsSetTheHealthOfTheListenerPort) {
  reg.proxyConnected(proxy(1));
  reg.proxyHealth(1, {{8080, push::AppHealth::kUnhealthy}, {9090, push::AppHealth::kHealthy}});
  EXPECT_EQ(health(id_), "UNHEALTHY");
  reg.proxyHealth(1, {{8080, push::AppHealth::kUnknown}});
  EXPECT_EQ(health(id_), "UNHEALTHY") << "UNKNOWN keeps what is there";
  reg.proxyHealth(1, {{8080, push::AppHealth::kHealthy}});
  EXPECT_EQ(health(id_), "HEALTHY");
  Value found = ok("DiscoverInstances", R"({"NamespaceName":"apps.local","ServiceName":"web"})");
  EXPECT_EQ(found.find("Instances")->items().size(), 1u);
}

TEST_F(AutoRegistrationTest, GoodbyeDeregistersAtOnce) {
  reg.proxyConnected(proxy(1));
  ASSERT_TRUE(instance(id_));
  reg.proxyDisconnected(1, /*clean=*/true);
  EXPECT_FALSE(instance(id_)) << "expected the instance gone after a Goodbye";
  Value svc = ok("GetService", R"({"Id":")" + sid_ + R"("})");
  EXPECT_EQ(svc.find("Service")->find("InstanceCount")->text(), "0");
  EXPECT_TRUE(reg.managed().empty());
}

TEST_F(AutoRegistrationTest, LostStreamTurnsUnhealthyThenIsDeregistered) {
  reg.proxyConnected(proxy(1));
  reg.proxyHealth(1, {{8080, push::AppHealth::kHealthy}});
  reg.proxyDisconnected(1, /*clean=*/false);
  time.advance(kStale - 1s);
  reg.tick(kStale);
  EXPECT_EQ(health(id_), "HEALTHY") << "before stale_after nothing changes";
  time.advance(1s);
  reg.tick(kStale);
  EXPECT_EQ(health(id_), "UNHEALTHY") << "after stale_after without a reconnect";
  time.advance(kStale - 1s);
  reg.tick(kStale);
  EXPECT_TRUE(instance(id_)) << "still there before 2 x stale_after";
  time.advance(1s);
  reg.tick(kStale);
  EXPECT_FALSE(instance(id_)) << "expected it deregistered after 2 x stale_after";
}

TEST_F(AutoRegistrationTest, ReconnectWithinStaleAfterKeepsTheInstance) {
  reg.proxyConnected(proxy(1));
  reg.proxyHealth(1, {{8080, push::AppHealth::kHealthy}});
  reg.proxyDisconnected(1, false);
  time.advance(kStale + 1s);
  reg.tick(kStale);
  ASSERT_EQ(health(id_), "UNHEALTHY");
  reg.proxyConnected(proxy(2));  // same host and address: the same instance
  EXPECT_EQ(health(id_), "HEALTHY") << "a reconnect restores the last reported health";
  time.advance(kStale - 1s);
  reg.proxyHealth(2, {{8080, push::AppHealth::kHealthy}});
  time.advance(kStale - 1s);
  reg.tick(kStale);
  EXPECT_EQ(health(id_), "HEALTHY") << "reports keep it fresh";
}

TEST_F(AutoRegistrationTest, SilentOpenStreamGoesStaleAndComesBack) {
  reg.proxyConnected(proxy(1));
  time.advance(2 * kStale);
  reg.tick(kStale);
  EXPECT_FALSE(instance(id_)) << "a proxy silent for 2 x stale_after is deregistered";
  reg.proxyHealth(1, {{8080, push::AppHealth::kHealthy}});
  EXPECT_EQ(health(id_), "HEALTHY") << "its next report registers it again";
}

TEST_F(AutoRegistrationTest, UserRegisteredInstancesAreNeverTouched) {
  ok("RegisterInstance", R"({"ServiceId":")" + sid_ + R"(","InstanceId":")" + id_ +
                             R"(","Attributes":{"AWS_INSTANCE_IPV4":"192.0.2.1"}})");
  ok("RegisterInstance",
     R"({"ServiceId":")" + sid_ +
         R"(","InstanceId":"mine","Attributes":{"AWS_INSTANCE_IPV4":"192.0.2.2"}})");
  reg.proxyConnected(proxy(1));
  EXPECT_EQ(attr(id_, "AWS_INSTANCE_IPV4"), "192.0.2.1") << "same id: the user's record stays";
  EXPECT_EQ(attr(id_, "weft:auto"), "<absent>");
  reg.proxyHealth(1, {{8080, push::AppHealth::kUnhealthy}});
  EXPECT_EQ(health(id_), "HEALTHY");
  reg.proxyDisconnected(1, true);
  time.advance(3 * kStale);
  reg.tick(kStale);
  EXPECT_TRUE(instance(id_));
  EXPECT_TRUE(instance("mine"));
  EXPECT_EQ(health("mine"), "HEALTHY");
}

TEST_F(AutoRegistrationTest, DnsHostnameInsideAPrivateDnsNamespaceNamesTheService) {
  ApiRequest net;
  net.method = "POST";
  net.path = "/weft/v1/networks";
  net.body = R"({"name":"n","cidrs":["198.18.0.0/16"]})";
  ApiResponse made = api.handleNetworks(net);
  ASSERT_EQ(made.status, 200) << made.body;
  std::string vpc(stacks::parseJson(made.body)->find("id")->str());
  Value op = ok("CreatePrivateDnsNamespace", R"({"Name":"corp.local","Vpc":")" + vpc + "\"}");
  Value got = ok("GetOperation",
                 R"({"OperationId":")" + std::string(op.find("OperationId")->str()) + "\"}");
  std::string ns(got.find("Operation")->find("Targets")->find("NAMESPACE")->str());
  std::string sid(ok("CreateService", R"({"Name":"web","NamespaceId":")" + ns + "\"}")
                      .find("Service")
                      ->find("Id")
                      ->str());

  putNode("web", R"({"dns":{"hostname":"web.corp.local"}})");
  reg.proxyConnected(proxy(1));
  auto kv = store.get("registry/instances/" + sid + "/" + id_);
  EXPECT_TRUE(kv && kv->has_value()) << "web.corp.local: service web of namespace corp.local";
  putNode("http", R"({"dns":{"hostname":"web.apps.local"}})");
  reg.proxyConnected(proxy(2, "http"));
  putNode("other", R"({"dns":{"hostname":"web.example.com"}})");
  reg.proxyConnected(proxy(3, "other"));
  EXPECT_EQ(reg.managed(), std::set<std::string>{sid + "/" + id_})
      << "an HTTP namespace has no DNS names, and a hostname outside the registry registers "
         "nothing";
}

TEST_F(AutoRegistrationTest, ServiceCreatedLaterIsJoinedOnTheNextReport) {
  putNode("late", R"({"awsCloudMap":{"namespaceName":"apps.local","serviceName":"late"}})");
  reg.proxyConnected(proxy(1, "late"));
  EXPECT_TRUE(reg.managed().empty());
  Value s = ok("CreateService", R"({"Name":"late","NamespaceId":")" + nsId() + R"("})");
  std::string late(s.find("Service")->find("Id")->str());
  reg.proxyHealth(1, {{8080, push::AppHealth::kHealthy}});
  EXPECT_EQ(reg.managed(), std::set<std::string>{late + "/" + id_});
}

TEST_F(AutoRegistrationTest, InstancesOfAPreviousRunAreAdoptedAndExpire) {
  reg.proxyConnected(proxy(1));
  ASSERT_TRUE(instance(id_));
  // A new control plane over the same store: nobody reconnects.
  AutoRegistration next{store, api, time};
  next.tick(kStale);
  EXPECT_EQ(next.managed(), std::set<std::string>{sid_ + "/" + id_});
  time.advance(kStale);
  next.tick(kStale);
  EXPECT_EQ(health(id_), "UNHEALTHY");
  time.advance(kStale);
  next.tick(kStale);
  EXPECT_FALSE(instance(id_));
}

}  // namespace
}  // namespace weft::control::registry
