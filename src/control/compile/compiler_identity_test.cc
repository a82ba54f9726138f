// weft's mesh policy in compiled configs (mesh_policy.h, docs/security.md): the defaults change
// nothing, mtls strict puts the mesh identity on node inbound listeners and on callers' clusters
// toward nodes, and authorization backends lists exactly the callers the mesh graph declares.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "control/compile/compiler.h"
#include "control/compile/identity_test_support.h"
#include "control/compile/mesh_policy.h"
#include "control/model/appmesh_test_support.h"

namespace weft::control::compile {
namespace {

using appmesh::Kind;
using appmesh::testing::Harness;
using appmesh::testing::summary;
using testing::FakeIdentities;
using testing::kRoot;

class CompilerIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    call("PUT", "/v20190125/meshes", R"({"meshName":"m","spec":{}})");
    // front -> svc.cart (node cart); front -> svc.pay (router -> pay-v1 / pay-v2);
    // gw routes /cart -> svc.cart; lonely declares nothing; audit is nobody's backend.
    node("cart", dnsNode("cart.m.local", 8080));
    node("pay-v1", dnsNode("pay1.m.local", 9090));
    node("pay-v2", dnsNode("pay2.m.local", 9090));
    node("audit", dnsNode("audit.m.local", 7070));
    create("virtualServices", "virtualServiceName", "svc.cart",
           R"({"provider":{"virtualNode":{"virtualNodeName":"cart"}}})");
    create("virtualRouters", "virtualRouterName", "pay",
           R"({"listeners":[{"portMapping":{"port":9090,"protocol":"http"}}]})");
    create("virtualRouter/pay/routes", "routeName", "split",
           R"({"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[
               {"virtualNode":"pay-v1","weight":90},{"virtualNode":"pay-v2","weight":10}]}}})");
    create("virtualServices", "virtualServiceName", "svc.pay",
           R"({"provider":{"virtualRouter":{"virtualRouterName":"pay"}}})");
    node("front", R"({"listeners":[{"portMapping":{"port":3000,"protocol":"http"}}],
        "serviceDiscovery":{"dns":{"hostname":"front.m.local"}},
        "backends":[{"virtualService":{"virtualServiceName":"svc.cart"}},
                    {"virtualService":{"virtualServiceName":"svc.pay"}}]})");
    node("lonely", dnsNode("lonely.m.local", 6060));
    create("virtualGateways", "virtualGatewayName", "gw",
           R"({"listeners":[{"portMapping":{"port":8443,"protocol":"http"}}]})");
    create("virtualGateway/gw/gatewayRoutes", "gatewayRouteName", "to-cart",
           R"({"httpRoute":{"match":{"prefix":"/cart"},
               "action":{"target":{"virtualService":{"virtualServiceName":"svc.cart"}}}}})");
  }

  void call(const std::string& method, const std::string& path, const std::string& body) {
    ApiResponse r = h_.call(method, path, body);
    ASSERT_EQ(summary(r), "200") << method << " " << path << " " << body;
  }
  void create(const std::string& collection, const std::string& name_field, const std::string& name,
              const std::string& spec) {
    call("PUT", "/v20190125/meshes/m/" + collection,
         "{\"" + name_field + "\":\"" + name + "\",\"spec\":" + spec + "}");
  }
  void node(const std::string& name, const std::string& spec) {
    create("virtualNodes", "virtualNodeName", name, spec);
  }
  static std::string dnsNode(const std::string& host, int port) {
    return R"({"listeners":[{"portMapping":{"port":)" + std::to_string(port) +
           R"(,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":")" + host + R"("}}})";
  }
  void policy(MtlsMode mtls, AuthorizationMode authz) {
    MeshPolicy p;
    p.mtls = mtls;
    p.authorization = authz;
    auto rev = h_.store.commit(
        {StoreOp::put(meshPolicyKey("m"), meshPolicyJson(p), StoreOp::kAnyRevision)});
    ASSERT_TRUE(rev.has_value());
  }
  CompileResult compile(Kind kind, const std::string& name) {
    auto r = compiler_.compile(ProxyIdentity{kind, "m", name});
    EXPECT_TRUE(r.has_value()) << name << ": " << (r ? "" : r.error().message);
    return r ? std::move(*r) : CompileResult{};
  }
  static const v1::Listener* listener(const v1::ProxyConfig& c, std::string_view prefix) {
    for (const auto& l : c.listeners())
      if (l.name().rfind(prefix, 0) == 0) return &l;
    return nullptr;
  }
  static const v1::Cluster* cluster(const v1::ProxyConfig& c, std::string_view prefix) {
    for (const auto& cl : c.clusters())
      if (cl.name().rfind(prefix, 0) == 0) return &cl;
    return nullptr;
  }
  static std::vector<std::string> allowed(const v1::Listener& l) {
    std::vector<std::string> out;
    for (const auto& m : l.authorization().allowed()) out.push_back(m.uri());
    return out;
  }

  Harness h_;
  FakeIdentities identities_;
  Compiler compiler_{h_.store, CompileOptions{}, &identities_};
};

TEST_F(CompilerIdentityTest, DefaultAndPermissiveChangeNothing) {
  CompileResult before = compile(Kind::kVirtualNode, "front");
  EXPECT_NE(std::find(before.depends_on.begin(), before.depends_on.end(), meshPolicyKey("m")),
            before.depends_on.end())
      << "a config depends on its mesh's policy even when none is stored";
  policy(MtlsMode::kPermissive, AuthorizationMode::kOff);
  CompileResult permissive = compile(Kind::kVirtualNode, "front");
  EXPECT_EQ(configHash(before.config), configHash(permissive.config))
      << "permissive must compile exactly as App Mesh (no policy)";
  policy(MtlsMode::kOff, AuthorizationMode::kOff);
  EXPECT_EQ(configHash(before.config), configHash(compile(Kind::kVirtualNode, "front").config));
  const v1::Listener* in = listener(permissive.config, "lds_ingress");
  ASSERT_NE(in, nullptr);
  EXPECT_FALSE(in->has_tls());
  EXPECT_FALSE(in->has_authorization());
}

TEST_F(CompilerIdentityTest, StrictRequiresIdentitiesInboundAndPresentsThemOutbound) {
  policy(MtlsMode::kStrict, AuthorizationMode::kOff);
  CompileResult front = compile(Kind::kVirtualNode, "front");
  const v1::Listener* in = listener(front.config, "lds_ingress");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->tls().mode(), v1::ListenerTls::STRICT);
  EXPECT_TRUE(in->tls().certificate().mesh_identity());
  EXPECT_EQ(in->tls().validation().trust_bundle_pem(), kRoot)
      << "clients must present a certificate of the mesh identity CA";
  EXPECT_FALSE(in->has_authorization()) << "authorization is off";

  const v1::Cluster* cart = cluster(front.config, "cds_egress_m_cart_");
  ASSERT_NE(cart, nullptr);
  EXPECT_TRUE(cart->tls().certificate().mesh_identity()) << "the caller presents its identity";
  EXPECT_EQ(cart->tls().validation().trust_bundle_pem(), kRoot);
  ASSERT_EQ(cart->tls().validation().match_subject_alt_names_size(), 1);
  EXPECT_EQ(cart->tls().validation().match_subject_alt_names(0).uri(),
            "spiffe://m/virtualNode/cart")
      << "the caller checks the server's identity";
  const v1::Cluster* pay1 = cluster(front.config, "cds_egress_m_pay-v1_");
  ASSERT_NE(pay1, nullptr);
  EXPECT_EQ(pay1->tls().validation().match_subject_alt_names(0).uri(),
            "spiffe://m/virtualNode/pay-v1");
  // The local app cluster stays plaintext.
  const v1::Cluster* local = cluster(front.config, "cds_ingress_");
  ASSERT_NE(local, nullptr);
  EXPECT_FALSE(local->has_tls());
  EXPECT_NE(std::find(front.depends_on.begin(), front.depends_on.end(), meshIdentityCaKey("m")),
            front.depends_on.end());

  // A gateway faces outside the mesh: its listener is unchanged, its clusters present its
  // identity.
  CompileResult gw = compile(Kind::kVirtualGateway, "gw");
  const v1::Listener* gl = listener(gw.config, "lds_ingress");
  ASSERT_NE(gl, nullptr);
  EXPECT_FALSE(gl->has_tls());
  const v1::Cluster* gc = cluster(gw.config, "cds_egress_m_cart_");
  ASSERT_NE(gc, nullptr);
  EXPECT_TRUE(gc->tls().certificate().mesh_identity());
}

TEST_F(CompilerIdentityTest, StrictKeepsWhatTheSpecSays) {
  call("PUT", "/v20190125/meshes/m/virtualNodes/cart",
       R"({"spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"},
      "tls":{"mode":"PERMISSIVE",
             "certificate":{"file":{"certificateChain":"/c.pem","privateKey":"/c.key"}}}}],
      "serviceDiscovery":{"dns":{"hostname":"cart.m.local"}}}})");
  call("PUT", "/v20190125/meshes/m/virtualNodes/front",
       R"({"spec":{"listeners":[{"portMapping":{"port":3000,"protocol":"http"}}],
        "serviceDiscovery":{"dns":{"hostname":"front.m.local"}},
        "backends":[{"virtualService":{"virtualServiceName":"svc.cart","clientPolicy":{"tls":{
            "validation":{"trust":{"file":{"certificateChain":"/ca.pem"}}}}}}}]}})");
  policy(MtlsMode::kStrict, AuthorizationMode::kOff);
  CompileResult cart = compile(Kind::kVirtualNode, "cart");
  const v1::Listener* in = listener(cart.config, "lds_ingress");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->tls().mode(), v1::ListenerTls::STRICT) << "strict turns PERMISSIVE into STRICT";
  EXPECT_EQ(in->tls().certificate().certificate_chain_file(), "/c.pem")
      << "the spec's certificate is served";
  EXPECT_FALSE(in->tls().certificate().mesh_identity());
  EXPECT_EQ(in->tls().validation().trust_bundle_pem(), kRoot);

  CompileResult front = compile(Kind::kVirtualNode, "front");
  const v1::Cluster* c = cluster(front.config, "cds_egress_m_cart_");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->tls().validation().trust_bundle_file(), "/ca.pem")
      << "the client policy's validation is kept";
  ASSERT_EQ(c->tls().validation().match_subject_alt_names_size(), 1)
      << "App Mesh's rule: no SANs in the policy → the target's discovery name";
  EXPECT_EQ(c->tls().validation().match_subject_alt_names(0).dns(), "cart.m.local")
      << "not the SPIFFE ID: the spec's validation stays what App Mesh would check";
  EXPECT_TRUE(c->tls().certificate().mesh_identity()) << "and the identity is presented";
}

TEST_F(CompilerIdentityTest, StrictWithoutIdentityCaFails) {
  identities_.has_ca = false;
  policy(MtlsMode::kStrict, AuthorizationMode::kOff);
  auto r = compiler_.compile(ProxyIdentity{Kind::kVirtualNode, "m", "front"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kCompileUnsupported) << r.error().message;
  EXPECT_NE(r.error().message.find("identity CA"), std::string::npos) << r.error().message;
}

TEST_F(CompilerIdentityTest, AuthorizationListsTheDeclaredCallers) {
  policy(MtlsMode::kStrict, AuthorizationMode::kBackends);
  auto callers = [&](const std::string& node) {
    CompileResult r = compile(Kind::kVirtualNode, node);
    const v1::Listener* in = listener(r.config, "lds_ingress");
    EXPECT_NE(in, nullptr);
    EXPECT_TRUE(in && in->has_authorization()) << node;
    return in ? allowed(*in) : std::vector<std::string>{};
  };
  EXPECT_EQ(callers("cart"), (std::vector<std::string>{"spiffe://m/virtualGateway/gw",
                                                       "spiffe://m/virtualNode/front"}))
      << "cart provides svc.cart: front declares it, gw routes to it";
  EXPECT_EQ(callers("pay-v1"), std::vector<std::string>{"spiffe://m/virtualNode/front"})
      << "pay-v1 is a target of router pay, which provides svc.pay (front's backend)";
  EXPECT_EQ(callers("pay-v2"), std::vector<std::string>{"spiffe://m/virtualNode/front"});
  EXPECT_EQ(callers("audit"), std::vector<std::string>{})
      << "nobody declares audit's services: nobody may call it";
  EXPECT_EQ(callers("front"), std::vector<std::string>{});

  // The graph is the policy: a new backend is a new caller (and the config depends on it).
  CompileResult audit = compile(Kind::kVirtualNode, "audit");
  create("virtualServices", "virtualServiceName", "svc.audit",
         R"({"provider":{"virtualNode":{"virtualNodeName":"audit"}}})");
  call("PUT", "/v20190125/meshes/m/virtualNodes/lonely",
       R"({"spec":{"listeners":[{"portMapping":{"port":6060,"protocol":"http"}}],
        "serviceDiscovery":{"dns":{"hostname":"lonely.m.local"}},
        "backends":[{"virtualService":{"virtualServiceName":"svc.audit"}}]}})");
  bool depends = false;
  for (const std::string& prefix : audit.depends_on)
    if (appmesh::resourceKey({Kind::kVirtualNode, "m", "", "lonely"}).rfind(prefix, 0) == 0)
      depends = true;
  EXPECT_TRUE(depends) << "a node's authorization depends on every node's backends";
  EXPECT_EQ(callers("audit"), std::vector<std::string>{"spiffe://m/virtualNode/lonely"});
}

TEST(MeshPolicyTest, ParseValidateAndJson) {
  EXPECT_EQ(parseMtlsMode("STRICT"), MtlsMode::kStrict);
  EXPECT_EQ(parseMtlsMode("permissive"), MtlsMode::kPermissive);
  EXPECT_FALSE(parseMtlsMode("on").has_value());
  EXPECT_EQ(parseAuthorizationMode("Backends"), AuthorizationMode::kBackends);
  MeshPolicy p;
  EXPECT_TRUE(validateMeshPolicy(p).has_value()) << "the defaults are valid";
  p.authorization = AuthorizationMode::kBackends;
  auto bad = validateMeshPolicy(p);
  ASSERT_FALSE(bad.has_value()) << "authorization without strict mTLS has no identities to check";
  EXPECT_NE(bad.error().message.find("mtls strict"), std::string::npos);
  p.mtls = MtlsMode::kStrict;
  p.updated_at = 42;
  EXPECT_TRUE(validateMeshPolicy(p).has_value());
  auto back = parseMeshPolicyJson(meshPolicyJson(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, p);
  EXPECT_EQ(spiffeId("m", false, "a"), "spiffe://m/virtualNode/a");
  EXPECT_EQ(spiffeId("m", true, "g"), "spiffe://m/virtualGateway/g");
}

TEST(MeshPolicyTest, IdentityDnsNames) {
  Harness h;
  ASSERT_EQ(summary(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m","spec":{}})")), "200");
  auto put = [&](const std::string& name, const std::string& sd) {
    ASSERT_EQ(summary(h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                             R"({"virtualNodeName":")" + name + R"(","spec":{"serviceDiscovery":)" +
                                 sd + "}}")),
              "200");
  };
  put("dns", R"({"dns":{"hostname":"Cart.Shop.Local."}})");
  put("ip", R"({"dns":{"hostname":"10.1.2.3"}})");
  put("cm", R"({"awsCloudMap":{"namespaceName":"shop.local","serviceName":"pay"}})");
  auto names = [&](Kind kind, const std::string& n) {
    return identityDnsNames(h.store, ProxyIdentity{kind, "m", n}).value();
  };
  EXPECT_EQ(names(Kind::kVirtualNode, "dns"), std::vector<std::string>{"cart.shop.local"});
  EXPECT_EQ(names(Kind::kVirtualNode, "ip"), std::vector<std::string>{})
      << "an IP literal is not a DNS name";
  EXPECT_EQ(names(Kind::kVirtualNode, "cm"), std::vector<std::string>{"pay.shop.local"});
  EXPECT_EQ(names(Kind::kVirtualNode, "missing"), std::vector<std::string>{});
  EXPECT_EQ(names(Kind::kVirtualGateway, "dns"), std::vector<std::string>{});
}

}  // namespace
}  // namespace weft::control::compile
