#include "control/push/push_api.h"

#include <gtest/gtest.h>

#include "control/ca/mesh_identity.h"
#include "control/model/appmesh_test_support.h"
#include "control/stacks/json_value.h"

namespace weft::control::push {
namespace {

using appmesh::testing::Harness;
using appmesh::testing::summary;
using stacks::Value;

class PushApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(summary(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})")), "200");
    ASSERT_EQ(summary(h.call(
                  "PUT", "/v20190125/meshes/m/virtualNodes",
                  R"({"virtualNodeName":"n","spec":{"listeners":[{"portMapping":{"port":8080,)"
                  R"("protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}}})")),
              "200");
  }

  ApiResponse call(std::string method, std::string path, std::string body = "",
                   std::vector<std::pair<std::string, std::string>> query = {}) {
    ApiRequest r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.body = std::move(body);
    r.query = std::move(query);
    return api.handle(r);
  }
  static Value json(const ApiResponse& r) {
    auto v = stacks::parseJson(r.body);
    EXPECT_TRUE(v) << "not JSON: " << r.body;
    return v ? *v : Value();
  }
  static std::string field(const Value& v, std::string_view name) {
    const Value* f = v.find(name);
    return f ? f->scalarText() : "<absent>";
  }

  Harness h;
  compile::Compiler compiler{h.store, compile::CompileOptions{}};
  Tokens tokens{h.store, h.time};
  std::vector<ProxyStatus> connected;
  PushApi api{tokens, compiler, [this] { return connected; }};
};

TEST_F(PushApiTest, Handles) {
  for (const char* p :
       {"/weft/v1/tokens", "/weft/v1/tokens/abc", "/weft/v1/proxies", "/weft/v1/proxy-config"})
    EXPECT_TRUE(PushApi::handles(p)) << p;
  for (const char* p : {"/weft/v1/tokensx", "/weft/v1/proxies/x", "/weft/v1/credentials"})
    EXPECT_FALSE(PushApi::handles(p)) << p;
}

TEST_F(PushApiTest, CreateListRevoke) {
  ApiResponse r =
      call("POST", "/weft/v1/tokens",
           R"({"resource":"arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/n",)"
           R"("ttlSeconds":3600})");
  ASSERT_EQ(r.status, 201) << r.body;
  Value created = json(r);
  std::string token = field(created, "token");
  std::string id = field(created, "id");
  EXPECT_EQ(field(created, "resource"), "mesh/m/virtualNode/n") << "expected the normalized form";
  EXPECT_EQ(field(created, "expiresAt"), std::to_string(1'800'000'000 + 3600));
  EXPECT_EQ(Tokens::idOf(token), id);
  EXPECT_TRUE(tokens.verify(token, "mesh/m/virtualNode/n"));

  r = call("POST", "/weft/v1/tokens", R"({"resource":"mesh/m/virtualGateway/g"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(field(json(r), "expiresAt"), "0");

  r = call("GET", "/weft/v1/tokens");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find(token.substr(21)), std::string::npos) << "the list shows a secret";
  Value listed = json(r);
  const Value* list = listed.find("tokens");
  ASSERT_TRUE(list && list->isArray()) << r.body;
  ASSERT_EQ(list->items().size(), 2u) << r.body;
  bool seen = false;
  for (const Value& t : list->items()) {
    if (field(t, "id") != id) continue;
    seen = true;
    EXPECT_EQ(field(t, "resource"), "mesh/m/virtualNode/n");
    EXPECT_EQ(field(t, "createdAt"), "1800000000");
    EXPECT_EQ(field(t, "revoked"), "false");
  }
  EXPECT_TRUE(seen) << "token " << id << " missing from " << r.body;

  r = call("DELETE", "/weft/v1/tokens/" + id);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(json(r), "id"), id);
  EXPECT_EQ(field(json(r), "revoked"), "true");
  EXPECT_FALSE(tokens.verify(token, "mesh/m/virtualNode/n"));
  r = call("DELETE", "/weft/v1/tokens/" + token);  // by the whole token: already revoked, fine
  EXPECT_EQ(r.status, 200) << r.body;
  r = call("DELETE", "/weft/v1/tokens/ZZZZZZZZZZZZZZZZ");
  EXPECT_EQ(r.status, 404) << r.body;
}

TEST_F(PushApiTest, CreateRefusesBadBodies) {
  for (const char* body : {"", "[]", "{}", R"({"resource":""})", R"({"resource":"mesh/m"})",
                           R"({"resource":"mesh/m/virtualNode/n","ttlSeconds":-5})",
                           R"({"resource":"mesh/m/virtualNode/n","ttlSeconds":1.5})",
                           R"({"resource":"mesh/m/virtualNode/n","ttlSeconds":"60"})",
                           R"({"resource":"mesh/m/virtualNode/n","extra":1})"}) {
    ApiResponse r = call("POST", "/weft/v1/tokens", body);
    EXPECT_EQ(r.status, 400) << "body " << body << " answered " << r.body;
  }
  EXPECT_EQ(call("PUT", "/weft/v1/tokens").status, 405);
  EXPECT_EQ(call("GET", "/weft/v1/tokens/x").status, 405);
}

TEST_F(PushApiTest, ProxiesFilteredByMesh) {
  ApiResponse r = call("GET", "/weft/v1/proxies");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"proxies": []})");
  ProxyStatus a;
  a.resource = "mesh/m/virtualNode/n";
  a.host = "h1";
  a.version_sent = 3;
  a.version_acked = 2;
  a.last_nack_version = 3;
  a.last_nack_reason = "bad \"port\"";
  a.connected_at = 42;
  ProxyStatus b;
  b.resource = "mesh/other/virtualNode/x";
  connected = {a, b};
  r = call("GET", "/weft/v1/proxies", "", {{"mesh", "m"}});
  ASSERT_EQ(r.status, 200);
  Value listed = json(r);
  const Value* list = listed.find("proxies");
  ASSERT_TRUE(list && list->isArray());
  ASSERT_EQ(list->items().size(), 1u) << r.body;
  const Value& p = list->items()[0];
  EXPECT_EQ(field(p, "resource"), "mesh/m/virtualNode/n");
  EXPECT_EQ(field(p, "host"), "h1");
  EXPECT_EQ(field(p, "versionSent"), "3");
  EXPECT_EQ(field(p, "versionAcked"), "2");
  EXPECT_EQ(field(p, "lastNackVersion"), "3");
  EXPECT_EQ(field(p, "lastNackReason"), "bad \"port\"");
  EXPECT_EQ(field(p, "connectedAt"), "42");
  r = call("GET", "/weft/v1/proxies");
  listed = json(r);
  EXPECT_EQ(listed.find("proxies")->items().size(), 2u) << r.body;
}

TEST_F(PushApiTest, ProxyConfig) {
  ApiResponse r = call("GET", "/weft/v1/proxy-config", "", {{"resource", "mesh/m/virtualNode/n"}});
  ASSERT_EQ(r.status, 200) << r.body;
  Value config = json(r);
  EXPECT_EQ(field(config, "node"), "mesh/m/virtualNode/n");
  EXPECT_NE(r.body.find("lds_egress_0.0.0.0_15001"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("lds_ingress_0.0.0.0_15000"), std::string::npos) << r.body;
  r = call("GET", "/weft/v1/proxy-config", "", {{"resource", "mesh/m/virtualNode/ghost"}});
  EXPECT_EQ(r.status, 404) << r.body;
  r = call("GET", "/weft/v1/proxy-config", "", {{"resource", "bogus"}});
  EXPECT_EQ(r.status, 400) << r.body;
  r = call("GET", "/weft/v1/proxy-config");
  EXPECT_EQ(r.status, 400) << r.body;
}

// ---- mesh policies ----

class MeshPolicyApiTest : public PushApiTest {
 protected:
  ca::Kek kek = ca::Kek::fromBytes(std::string(32, 'k')).value();
  ca::MeshIdentityIssuer issuer{h.store, kek, h.time};
  PushApi policy_api{tokens, compiler, [this] { return connected; }, h.store, &issuer};
  ApiResponse policy(std::string method, std::string mesh, std::string body = "") {
    ApiRequest r;
    r.method = std::move(method);
    r.path = "/weft/v1/mesh-policies/" + mesh;
    r.body = std::move(body);
    return policy_api.handle(r);
  }
};

TEST_F(MeshPolicyApiTest, DefaultsSetKeepAndValidate) {
  EXPECT_TRUE(PushApi::handles("/weft/v1/mesh-policies/m"));
  ApiResponse got = policy("GET", "m");
  ASSERT_EQ(got.status, 200) << got.body;
  Value v = json(got);
  EXPECT_EQ(field(v, "mesh"), "m");
  EXPECT_EQ(field(v, "mtls"), "permissive") << "the default keeps App Mesh's behaviour";
  EXPECT_EQ(field(v, "authorization"), "off");
  EXPECT_EQ(field(v, "updatedAt"), "0");
  EXPECT_FALSE(issuer.trustBundle("m").has_value()) << "reading makes no CA";

  ApiResponse bad = policy("PUT", "m", R"({"authorization":"backends"})");
  EXPECT_EQ(bad.status, 400) << "authorization without strict mTLS: " << bad.body;
  EXPECT_NE(bad.body.find("mtls strict"), std::string::npos) << bad.body;
  EXPECT_EQ(policy("PUT", "m", R"({"mtls":"on"})").status, 400);
  EXPECT_EQ(policy("PUT", "m", R"({"mtls":"strict","extra":1})").status, 400);

  ApiResponse set = policy("PUT", "m", R"({"mtls":"strict","authorization":"backends"})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(field(json(set), "mtls"), "strict");
  EXPECT_EQ(field(json(set), "authorization"), "backends");
  EXPECT_TRUE(issuer.trustBundle("m").has_value()) << "identities on: the mesh CA exists";
  // A flag left out keeps its value.
  ApiResponse keep = policy("PUT", "m", R"({"authorization":"off"})");
  ASSERT_EQ(keep.status, 200) << keep.body;
  EXPECT_EQ(field(json(keep), "mtls"), "strict");
  EXPECT_EQ(field(json(policy("GET", "m")), "authorization"), "off");
  // Turning mTLS down while authorization needs it is refused.
  ASSERT_EQ(policy("PUT", "m", R"({"authorization":"backends"})").status, 200);
  EXPECT_EQ(policy("PUT", "m", R"({"mtls":"permissive"})").status, 400);
}

TEST_F(MeshPolicyApiTest, UnknownMeshIsNotFound) {
  EXPECT_EQ(policy("GET", "nope").status, 404);
  EXPECT_EQ(policy("PUT", "nope", R"({"mtls":"strict"})").status, 404);
  EXPECT_EQ(policy("DELETE", "m").status, 405);
}

}  // namespace
}  // namespace weft::control::push
