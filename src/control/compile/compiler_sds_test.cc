// SDS secret names in App Mesh specs (docs/security.md, "SDS secret names"): a certificate named
// by the proxy's own SPIFFE ID is its mesh identity, a trust named by spiffe://MESH is the mesh
// identity CA's bundle; any other name, or a mesh with identities off, fails naming the field.
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

class CompilerSdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    call("PUT", "/v20190125/meshes", R"({"meshName":"m","spec":{}})");
    node("cart", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
        "serviceDiscovery":{"dns":{"hostname":"cart.m.local"}}})");
    create("virtualServices", "virtualServiceName", "svc.cart",
           R"({"provider":{"virtualNode":{"virtualNodeName":"cart"}}})");
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
  void replaceNode(const std::string& name, const std::string& spec) {
    call("PUT", "/v20190125/meshes/m/virtualNodes/" + name, "{\"spec\":" + spec + "}");
  }
  // A node listening on 8080 with `tls` (JSON, may be empty) and calling svc.cart with
  // `client_tls` (JSON, may be empty) as its client policy.
  static std::string spec(const std::string& tls, const std::string& client_tls) {
    std::string s = R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"})";
    if (!tls.empty()) s += ",\"tls\":" + tls;
    s += R"(}],"serviceDiscovery":{"dns":{"hostname":"cart.m.local"}})";
    if (!client_tls.empty())
      s += R"(,"backends":[{"virtualService":{"virtualServiceName":"svc.cart",)"
           R"("clientPolicy":{"tls":)" +
           client_tls + "}}}]";
    return s + "}";
  }
  void policy(MtlsMode mtls) {
    MeshPolicy p;
    p.mtls = mtls;
    ASSERT_TRUE(
        h_.store
            .commit({StoreOp::put(meshPolicyKey("m"), meshPolicyJson(p), StoreOp::kAnyRevision)})
            .has_value());
  }
  Result<CompileResult> compile(Kind kind, const std::string& name) {
    return compiler_.compile(ProxyIdentity{kind, "m", name});
  }
  // The compilation of `name` fails (kCompileUnsupported) with a message holding every part.
  void expectFailure(const std::string& name, const std::vector<std::string>& parts,
                     Kind kind = Kind::kVirtualNode) {
    auto r = compile(kind, name);
    ASSERT_FALSE(r.has_value()) << name << ": expected a compilation error mentioning " << parts[0]
                                << ", got a config";
    EXPECT_EQ(r.error().code, kCompileUnsupported) << r.error().message;
    for (const std::string& p : parts)
      EXPECT_NE(r.error().message.find(p), std::string::npos)
          << "expected \"" << p << "\" in: " << r.error().message;
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

  Harness h_;
  FakeIdentities identities_;
  Compiler compiler_{h_.store, CompileOptions{}, &identities_};
};

constexpr char kOwnCert[] = R"({"sds":{"secretName":"spiffe://m/virtualNode/front"}})";
constexpr char kMeshTrust[] = R"({"trust":{"sds":{"secretName":"spiffe://m"}}})";
// A client policy's TLS that validates the server against the mesh identity CA only.
constexpr char kClientTrust[] = R"({"validation":{"trust":{"sds":{"secretName":"spiffe://m"}}}})";

TEST_F(CompilerSdsTest, ListenerCertificateAndTrustMapToTheMeshIdentity) {
  node("front", spec(std::string(R"({"mode":"STRICT","certificate":)") + kOwnCert +
                         ",\"validation\":" + kMeshTrust + "}",
                     ""));
  auto r = compile(Kind::kVirtualNode, "front");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const v1::Listener* in = listener(r->config, "lds_ingress");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->tls().mode(), v1::ListenerTls::STRICT);
  EXPECT_TRUE(in->tls().certificate().mesh_identity())
      << "the node's own SPIFFE ID names its mesh identity certificate";
  EXPECT_TRUE(in->tls().certificate().certificate_chain_file().empty());
  EXPECT_EQ(in->tls().validation().trust_bundle_pem(), kRoot)
      << "spiffe://m names the mesh identity CA's bundle";
  EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), meshIdentityCaKey("m")),
            r->depends_on.end())
      << "a new identity CA must recompile the config";
}

TEST_F(CompilerSdsTest, ClientPolicyCertificateAndTrustMapToTheMeshIdentity) {
  node("front", spec("", R"({"certificate":{"sds":{"secretName":"spiffe://m/virtualNode/front"}},
      "validation":{"trust":{"sds":{"secretName":"spiffe://m"}},
                    "subjectAlternativeNames":{"match":{"exact":["spiffe://m/virtualNode/cart"]}}}})"));
  auto r = compile(Kind::kVirtualNode, "front");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const v1::Cluster* c = cluster(r->config, "cds_egress_m_cart_");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->tls().certificate().mesh_identity()) << "the caller presents its identity";
  EXPECT_EQ(c->tls().validation().trust_bundle_pem(), kRoot);
  ASSERT_EQ(c->tls().validation().match_subject_alt_names_size(), 1);
  EXPECT_EQ(c->tls().validation().match_subject_alt_names(0).uri(), "spiffe://m/virtualNode/cart");

  // Trust alone (no client certificate): App Mesh's one-way TLS, validated by identity.
  replaceNode("front", spec("", kClientTrust));
  auto one_way = compile(Kind::kVirtualNode, "front");
  ASSERT_TRUE(one_way.has_value()) << one_way.error().message;
  const v1::Cluster* c2 = cluster(one_way->config, "cds_egress_m_cart_");
  ASSERT_NE(c2, nullptr);
  EXPECT_FALSE(c2->tls().has_certificate());
  EXPECT_EQ(c2->tls().validation().trust_bundle_pem(), kRoot);
}

TEST_F(CompilerSdsTest, GatewayListenerUsesTheGatewaysIdentity) {
  create("virtualGateways", "virtualGatewayName", "gw",
         R"({"listeners":[{"portMapping":{"port":8443,"protocol":"http"},
             "tls":{"mode":"STRICT",
                    "certificate":{"sds":{"secretName":"spiffe://m/virtualGateway/gw"}}}}]})");
  auto r = compile(Kind::kVirtualGateway, "gw");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const v1::Listener* l = listener(r->config, "lds_ingress");
  ASSERT_NE(l, nullptr);
  EXPECT_TRUE(l->tls().certificate().mesh_identity());

  // A node's identity is not the gateway's.
  call("PUT", "/v20190125/meshes/m/virtualGateways/gw",
       R"({"spec":{"listeners":[{"portMapping":{"port":8443,"protocol":"http"},
             "tls":{"mode":"STRICT",
                    "certificate":{"sds":{"secretName":"spiffe://m/virtualNode/cart"}}}}]}})");
  expectFailure("gw", {"tls.certificate.sds.secretName", "spiffe://m/virtualGateway/gw"},
                Kind::kVirtualGateway);
}

TEST_F(CompilerSdsTest, OtherNamesFailNamingTheFieldAndWhatWeftServes) {
  // Another node's identity: a proxy holds only its own.
  node(
      "front",
      spec(
          R"({"mode":"STRICT","certificate":{"sds":{"secretName":"spiffe://m/virtualNode/cart"}}})",
          ""));
  expectFailure("front", {"listeners[0].tls.certificate.sds.secretName",
                          "\"spiffe://m/virtualNode/cart\" is not a secret weft serves",
                          "spiffe://m/virtualNode/front"});
  // A name that is no SPIFFE ID at all.
  replaceNode("front",
              spec(R"({"mode":"STRICT","certificate":{"sds":{"secretName":"my-cert"}}})", ""));
  expectFailure("front", {"tls.certificate.sds.secretName", "my-cert"});
  // A trust domain of another mesh, on a listener and in a client policy.
  replaceNode("front",
              spec(std::string(R"({"mode":"STRICT","certificate":)") + kOwnCert +
                       R"(,"validation":{"trust":{"sds":{"secretName":"spiffe://other"}}}})",
                   ""));
  expectFailure("front", {"validation.trust.sds.secretName", "spiffe://other", "\"spiffe://m\""});
  replaceNode("front",
              spec("", R"({"validation":{"trust":{"sds":{"secretName":"spiffe://m/"}}}})"));
  expectFailure("front", {"clientPolicy.tls.validation.trust.sds.secretName", "\"spiffe://m\""});
  replaceNode("front", spec("", R"({"certificate":{"sds":{"secretName":"front"}},)" +
                                    std::string(R"("validation":)") + kMeshTrust + "}"));
  expectFailure("front",
                {"clientPolicy.tls.certificate.sds.secretName", "spiffe://m/virtualNode/front"});
}

TEST_F(CompilerSdsTest, MeshWithIdentitiesOffFails) {
  node("front", spec(std::string(R"({"mode":"STRICT","certificate":)") + kOwnCert + "}", ""));
  policy(MtlsMode::kOff);
  expectFailure("front", {"tls.certificate.sds.secretName", "off", "--mtls permissive"});
  replaceNode("front", spec("", kClientTrust));
  expectFailure("front", {"trust.sds.secretName", "off"});
  policy(MtlsMode::kPermissive);
  EXPECT_TRUE(compile(Kind::kVirtualNode, "front").has_value());
  policy(MtlsMode::kStrict);
  EXPECT_TRUE(compile(Kind::kVirtualNode, "front").has_value());
}

TEST_F(CompilerSdsTest, TrustBeforeTheIdentityCaExistsFailsAndDependsOnIt) {
  identities_.has_ca = false;
  node("front", spec("", kClientTrust));
  expectFailure("front", {"trust.sds.secretName", "identity CA"});
  identities_.has_ca = true;
  EXPECT_TRUE(compile(Kind::kVirtualNode, "front").has_value());
}

}  // namespace
}  // namespace weft::control::compile
