// The App Mesh operations through AppMeshApi over a MemoryStore: shapes of the answers, metadata
// and versions, references and delete order, idempotency, pagination, quotas, tags, errors.
#include "control/model/appmesh_api.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "aws/appmesh/v20190125/appmesh.pb.h"
#include "control/model/appmesh_test_support.h"

namespace weft::control::appmesh {
namespace {

namespace pb = google::protobuf;
namespace am = ::aws::appmesh::v20190125;
using testing::errorMessageOf;
using testing::errorTypeOf;
using testing::Harness;
using testing::summary;

constexpr const char* kAccount = "000000000000";  // Options default
constexpr const char* kCaller = "111122223333";   // Harness's request account

// Parses an answer strictly as the App Mesh shape `T` (unknown members fail the test).
template <class T>
T parseAs(const ApiResponse& r) {
  T out;
  pb::util::JsonParseOptions o;
  o.ignore_unknown_fields = false;
  auto st = pb::util::JsonStringToMessage(r.body, &out, o);
  EXPECT_TRUE(st.ok()) << "answer is not a " << T::descriptor()->name() << ": " << st.message()
                       << "\nbody: " << r.body;
  return out;
}

const std::string kNodeSpec =
    R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}})";
const std::string kRouterSpec =
    R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})";

std::string routeSpec(const std::string& node) {
  return R"({"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":")" +
         node + R"(","weight":1}]}}})";
}
std::string gatewayRouteSpec(const std::string& service) {
  return R"({"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":")" +
         service + R"("}}}}})";
}

class ApiTest : public ::testing::Test {
 protected:
  explicit ApiTest(Options options = {}) : h_(std::move(options)) {}

  ApiResponse createMesh(const std::string& name, const std::string& extra = "") {
    return h_.call("PUT", "/v20190125/meshes", R"({"meshName":")" + name + "\"" + extra + "}");
  }
  ApiResponse createIn(const std::string& mesh, const std::string& collection,
                       const std::string& name_field, const std::string& name,
                       const std::string& spec, const std::string& extra = "") {
    return h_.call("PUT", "/v20190125/meshes/" + mesh + "/" + collection,
                   "{\"" + name_field + "\":\"" + name + "\",\"spec\":" + spec + extra + "}");
  }
  ApiResponse createNode(const std::string& mesh, const std::string& name,
                         const std::string& spec = kNodeSpec) {
    return createIn(mesh, "virtualNodes", "virtualNodeName", name, spec);
  }
  ApiResponse createService(const std::string& mesh, const std::string& name,
                            const std::string& spec = "{}") {
    return createIn(mesh, "virtualServices", "virtualServiceName", name, spec);
  }
  ApiResponse createRouter(const std::string& mesh, const std::string& name) {
    return createIn(mesh, "virtualRouters", "virtualRouterName", name, kRouterSpec);
  }
  ApiResponse createRoute(const std::string& mesh, const std::string& router,
                          const std::string& name, const std::string& node) {
    return createIn(mesh, "virtualRouter/" + router + "/routes", "routeName", name,
                    routeSpec(node));
  }
  ApiResponse createGateway(const std::string& mesh, const std::string& name) {
    return createIn(mesh, "virtualGateways", "virtualGatewayName", name, kRouterSpec);
  }
  ApiResponse createGatewayRoute(const std::string& mesh, const std::string& gateway,
                                 const std::string& name, const std::string& service) {
    return createIn(mesh, "virtualGateway/" + gateway + "/gatewayRoutes", "gatewayRouteName", name,
                    gatewayRouteSpec(service));
  }

  Harness h_;
};

// ---- answers and metadata ----

TEST_F(ApiTest, CreateMeshAnswersMeshDataWithMetadata) {
  ApiResponse r = createMesh("m1", R"(,"spec":{"egressFilter":{"type":"ALLOW_ALL"}})");
  ASSERT_EQ(summary(r), "200");
  EXPECT_EQ(r.content_type, "application/json");
  auto mesh = parseAs<am::MeshData>(r);
  EXPECT_EQ(mesh.meshname(), "m1");
  EXPECT_EQ(mesh.spec().egressfilter().type(), "ALLOW_ALL");
  EXPECT_EQ(mesh.status().status(), "ACTIVE");
  const auto& md = mesh.metadata();
  EXPECT_EQ(md.arn(), std::string("arn:aws:appmesh:us-west-2:") + kAccount + ":mesh/m1");
  EXPECT_EQ(md.version(), 1);
  EXPECT_EQ(md.meshowner(), kAccount);
  EXPECT_EQ(md.resourceowner(), kCaller);
  EXPECT_EQ(md.uid().size(), 36u) << md.uid();
  EXPECT_EQ(md.uid()[14], '4') << "a version-4 UUID: " << md.uid();
  EXPECT_EQ(md.createdat(), 1800000000.0);
  EXPECT_EQ(md.lastupdatedat(), 1800000000.0);
  // Timestamps are JSON numbers (epoch seconds), versions JSON integers, as App Mesh answers.
  EXPECT_NE(r.body.find("\"createdAt\":1800000000"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"version\":1"), std::string::npos) << r.body;
}

TEST_F(ApiTest, MeshWithoutSpecAnswersEmptySpec) {
  ApiResponse r = createMesh("m1");
  ASSERT_EQ(summary(r), "200");
  EXPECT_NE(r.body.find("\"spec\":{}"), std::string::npos) << r.body;
}

TEST_F(ApiTest, ArnsOfEveryKind) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  ASSERT_EQ(summary(createService("m", "s.local")), "200");
  ASSERT_EQ(summary(createRouter("m", "r")), "200");
  ASSERT_EQ(summary(createGateway("m", "g")), "200");
  ApiResponse route = createRoute("m", "r", "x", "n");
  ASSERT_EQ(summary(route), "200");
  ApiResponse gr = createGatewayRoute("m", "g", "y", "s.local");
  ASSERT_EQ(summary(gr), "200");
  const std::string base = std::string("arn:aws:appmesh:us-west-2:") + kAccount + ":mesh/m";
  EXPECT_EQ(parseAs<am::VirtualNodeData>(h_.call("GET", "/v20190125/meshes/m/virtualNodes/n"))
                .metadata()
                .arn(),
            base + "/virtualNode/n");
  EXPECT_EQ(
      parseAs<am::VirtualServiceData>(h_.call("GET", "/v20190125/meshes/m/virtualServices/s.local"))
          .metadata()
          .arn(),
      base + "/virtualService/s.local");
  EXPECT_EQ(parseAs<am::VirtualRouterData>(h_.call("GET", "/v20190125/meshes/m/virtualRouters/r"))
                .metadata()
                .arn(),
            base + "/virtualRouter/r");
  EXPECT_EQ(parseAs<am::VirtualGatewayData>(h_.call("GET", "/v20190125/meshes/m/virtualGateways/g"))
                .metadata()
                .arn(),
            base + "/virtualGateway/g");
  auto rd = parseAs<am::RouteData>(route);
  EXPECT_EQ(rd.metadata().arn(), base + "/virtualRouter/r/route/x");
  EXPECT_EQ(rd.virtualroutername(), "r");
  EXPECT_EQ(rd.routename(), "x");
  EXPECT_EQ(rd.meshname(), "m");
  auto gd = parseAs<am::GatewayRouteData>(gr);
  EXPECT_EQ(gd.metadata().arn(), base + "/virtualGateway/g/gatewayRoute/y");
  EXPECT_EQ(gd.virtualgatewayname(), "g");
  EXPECT_EQ(gd.gatewayroutename(), "y");
}

TEST_F(ApiTest, RegionAndAccountAreConfigurable) {
  Options o;
  o.region = "eu-central-1";
  o.account_id = "123456789012";
  Harness h(o);
  ApiResponse r = h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})");
  EXPECT_EQ(parseAs<am::MeshData>(r).metadata().arn(),
            "arn:aws:appmesh:eu-central-1:123456789012:mesh/m");
}

TEST_F(ApiTest, UpdateBumpsVersionAndLastUpdatedAt) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ApiResponse created = createNode("m", "n");
  ASSERT_EQ(summary(created), "200");
  auto before = parseAs<am::VirtualNodeData>(created);
  for (int i = 2; i <= 3; ++i) {
    h_.time.advance(std::chrono::milliseconds(1500));
    ApiResponse u =
        h_.call("PUT", "/v20190125/meshes/m/virtualNodes/n",
                R"({"spec":{"backends":[{"virtualService":{"virtualServiceName":"b"}}]}})");
    ASSERT_EQ(summary(u), "200");
    auto after = parseAs<am::VirtualNodeData>(u);
    EXPECT_EQ(after.metadata().version(), i);
    EXPECT_EQ(after.metadata().uid(), before.metadata().uid());
    EXPECT_EQ(after.metadata().createdat(), before.metadata().createdat());
    EXPECT_EQ(after.metadata().lastupdatedat(), 1800000000.0 + 1.5 * (i - 1));
    EXPECT_EQ(after.spec().backends_size(), 1);
    EXPECT_EQ(after.spec().listeners_size(), 0) << "an update replaces the whole spec";
  }
  EXPECT_NE(h_.call("GET", "/v20190125/meshes/m/virtualNodes/n")
                .body.find("\"lastUpdatedAt\":1800000003"),
            std::string::npos);
  auto described =
      parseAs<am::VirtualNodeData>(h_.call("GET", "/v20190125/meshes/m/virtualNodes/n"));
  EXPECT_EQ(described.metadata().version(), 3);
}

TEST_F(ApiTest, UpdateValidatesLikeCreate) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  EXPECT_EQ(
      summary(
          h_.call("PUT", "/v20190125/meshes/m/virtualNodes/n",
                  R"({"spec":{"listeners":[{"portMapping":{"port":99999,"protocol":"http"}}]}})")),
      "400 BadRequestException: spec.listeners[0].portMapping.port: 99999 is out of range 1-65535");
  EXPECT_EQ(summary(h_.call("PUT", "/v20190125/meshes/m/virtualNodes/n", "{}")),
            "400 BadRequestException: spec: is required");
  EXPECT_EQ(summary(h_.call("PUT", "/v20190125/meshes/m/virtualNodes/ghost", R"({"spec":{}})")),
            "404 NotFoundException: virtual node \"ghost\" in mesh \"m\" not found");
  EXPECT_EQ(parseAs<am::VirtualNodeData>(h_.call("GET", "/v20190125/meshes/m/virtualNodes/n"))
                .metadata()
                .version(),
            1)
      << "a rejected update changes nothing";
}

TEST_F(ApiTest, DescribeMissingAnswersNotFound) {
  ApiResponse r = h_.call("GET", "/v20190125/meshes/nope");
  EXPECT_EQ(summary(r), "404 NotFoundException: mesh \"nope\" not found");
  EXPECT_NE(r.body.find("\"__type\":\"NotFoundException\""), std::string::npos) << r.body;
  ASSERT_EQ(summary(createMesh("m")), "200");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/m/virtualRouter/r/routes/x")),
            "404 NotFoundException: route \"x\" of virtual router \"r\" in mesh \"m\" not found");
}

TEST_F(ApiTest, CreateOfExistingNameIsConflict) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  EXPECT_EQ(summary(createMesh("m")), "409 ConflictException: mesh \"m\" already exists");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  EXPECT_EQ(summary(createNode("m", "n")),
            "409 ConflictException: virtual node \"n\" in mesh \"m\" already exists");
}

TEST_F(ApiTest, CreateInMissingParentIsNotFound) {
  EXPECT_EQ(summary(createNode("ghost", "n")), "404 NotFoundException: mesh \"ghost\" not found");
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  EXPECT_EQ(summary(createRoute("m", "r", "x", "n")),
            "404 NotFoundException: virtual router \"r\" in mesh \"m\" not found");
  EXPECT_EQ(summary(createGatewayRoute("m", "g", "x", "s")),
            "404 NotFoundException: virtual gateway \"g\" in mesh \"m\" not found");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/ghost/virtualNodes")),
            "404 NotFoundException: mesh \"ghost\" not found");
}

// ---- idempotency ----

TEST_F(ApiTest, CreateWithSameClientTokenIsIdempotent) {
  ApiResponse first = createMesh("m", R"(,"clientToken":"tok-1")");
  ASSERT_EQ(summary(first), "200");
  h_.time.advance(std::chrono::seconds(5));
  ApiResponse again = createMesh("m", R"(,"clientToken":"tok-1")");
  ASSERT_EQ(summary(again), "200");
  EXPECT_EQ(again.body, first.body) << "a retried create answers the resource unchanged";
  EXPECT_EQ(
      summary(createMesh("m",
                         R"(,"clientToken":"tok-1","spec":{"egressFilter":{"type":"ALLOW_ALL"}})")),
      "409 ConflictException: clientToken \"tok-1\" was already used to create mesh \"m\" with a "
      "different request");
  EXPECT_EQ(summary(createMesh("m", R"(,"clientToken":"tok-2")")),
            "409 ConflictException: mesh \"m\" already exists");
}

TEST_F(ApiTest, UpdateWithSameClientTokenAppliesOnce) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  std::string body = R"({"clientToken":"u1","spec":{"egressFilter":{"type":"ALLOW_ALL"}}})";
  ApiResponse u1 = h_.call("PUT", "/v20190125/meshes/m", body);
  ASSERT_EQ(summary(u1), "200");
  ApiResponse u2 = h_.call("PUT", "/v20190125/meshes/m", body);
  ASSERT_EQ(summary(u2), "200");
  EXPECT_EQ(parseAs<am::MeshData>(u2).metadata().version(), 2);
  EXPECT_EQ(
      summary(h_.call("PUT", "/v20190125/meshes/m", R"({"clientToken":"u1","spec":{}})")),
      "409 ConflictException: clientToken \"u1\" was already used to update mesh \"m\" with a "
      "different request");
  ApiResponse u3 = h_.call("PUT", "/v20190125/meshes/m", R"({"clientToken":"u2","spec":{}})");
  EXPECT_EQ(parseAs<am::MeshData>(u3).metadata().version(), 3);
}

// ---- references and delete order ----

TEST_F(ApiTest, MeshDeletesOnlyWhenEmpty) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createGateway("m", "g")), "200");
  EXPECT_EQ(
      summary(h_.call("DELETE", "/v20190125/meshes/m")),
      "409 ResourceInUseException: mesh \"m\" still has virtual gateway \"g\"; delete it first");
  ASSERT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualGateways/g")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m")),
            "409 ResourceInUseException: mesh \"m\" still has virtual node \"n\"; delete it first");
  ASSERT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualNodes/n")), "200");
  ApiResponse deleted = h_.call("DELETE", "/v20190125/meshes/m");
  ASSERT_EQ(summary(deleted), "200");
  auto data = parseAs<am::MeshData>(deleted);
  EXPECT_EQ(data.status().status(), "DELETED");
  EXPECT_EQ(data.meshname(), "m");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/m")),
            "404 NotFoundException: mesh \"m\" not found");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m")),
            "404 NotFoundException: mesh \"m\" not found");
}

TEST_F(ApiTest, ProviderNodeAndRouterCannotBeDeleted) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  ASSERT_EQ(summary(createRouter("m", "r")), "200");
  ASSERT_EQ(
      summary(createService("m", "s1", R"({"provider":{"virtualNode":{"virtualNodeName":"n"}}})")),
      "200");
  ASSERT_EQ(summary(createService("m", "s2",
                                  R"({"provider":{"virtualRouter":{"virtualRouterName":"r"}}})")),
            "200");
  EXPECT_EQ(
      summary(h_.call("DELETE", "/v20190125/meshes/m/virtualNodes/n")),
      "409 ResourceInUseException: virtual node \"n\" in mesh \"m\" is the provider of virtual "
      "service \"s1\"; delete or update the virtual service first");
  EXPECT_EQ(
      summary(h_.call("DELETE", "/v20190125/meshes/m/virtualRouters/r")),
      "409 ResourceInUseException: virtual router \"r\" in mesh \"m\" is the provider of virtual "
      "service \"s2\"; delete or update the virtual service first");
  // Moving the provider frees the node.
  ASSERT_EQ(
      summary(h_.call("PUT", "/v20190125/meshes/m/virtualServices/s1",
                      R"({"spec":{"provider":{"virtualRouter":{"virtualRouterName":"r"}}}})")),
      "200");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualNodes/n")), "200");
  EXPECT_EQ(
      summary(h_.call("PUT", "/v20190125/meshes/m/virtualServices/s1",
                      R"({"spec":{"provider":{"virtualNode":{"virtualNodeName":"n"}}}})")),
      "404 NotFoundException: spec.provider.virtualNode.virtualNodeName: virtual node \"n\" in "
      "mesh \"m\" not found");
}

TEST_F(ApiTest, RouterDeletesOnlyWithoutRoutes) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  ASSERT_EQ(summary(createRouter("m", "r")), "200");
  ASSERT_EQ(summary(createRoute("m", "r", "x", "n")), "200");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualRouters/r")),
            "409 ResourceInUseException: virtual router \"r\" in mesh \"m\" still has route \"x\"; "
            "delete it first");
  ApiResponse dr = h_.call("DELETE", "/v20190125/meshes/m/virtualRouter/r/routes/x");
  ASSERT_EQ(summary(dr), "200");
  EXPECT_EQ(parseAs<am::RouteData>(dr).status().status(), "DELETED");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualRouters/r")), "200");
}

TEST_F(ApiTest, GatewayDeletesOnlyWithoutGatewayRoutes) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createService("m", "s")), "200");
  ASSERT_EQ(summary(createGateway("m", "g")), "200");
  ASSERT_EQ(summary(createGatewayRoute("m", "g", "x", "s")), "200");
  EXPECT_EQ(
      summary(h_.call("DELETE", "/v20190125/meshes/m/virtualGateways/g")),
      "409 ResourceInUseException: virtual gateway \"g\" in mesh \"m\" still has gateway route "
      "\"x\"; delete it first");
  // App Mesh lets a virtual service be deleted while a gateway route targets it.
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualServices/s")), "200");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualGateway/g/gatewayRoutes/x")),
            "200");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualGateways/g")), "200");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m")), "200");
}

TEST_F(ApiTest, BackendsMayNameAbsentServices) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  EXPECT_EQ(
      summary(createNode(
          "m", "n", R"({"backends":[{"virtualService":{"virtualServiceName":"later.local"}}]})")),
      "200");
}

TEST_F(ApiTest, RouteTargetsMustBeNodesOfTheMesh) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createMesh("other")), "200");
  ASSERT_EQ(summary(createNode("other", "n")), "200");
  ASSERT_EQ(summary(createRouter("m", "r")), "200");
  EXPECT_EQ(
      summary(createRoute("m", "r", "x", "n")),
      "404 NotFoundException: spec.httpRoute.action.weightedTargets[0].virtualNode: virtual node "
      "\"n\" in mesh \"m\" not found");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  ASSERT_EQ(summary(createRoute("m", "r", "x", "n")), "200");
  EXPECT_EQ(
      summary(h_.call("PUT", "/v20190125/meshes/m/virtualRouter/r/routes/x",
                      R"({"spec":)" + routeSpec("ghost") + "}")),
      "404 NotFoundException: spec.httpRoute.action.weightedTargets[0].virtualNode: virtual node "
      "\"ghost\" in mesh \"m\" not found");
}

// ---- lists and pagination ----

TEST_F(ApiTest, ListPaginatesWithLimitAndNextToken) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  std::set<std::string> created;
  for (int i = 0; i < 7; ++i) {
    std::string name = "node-" + std::to_string(i);
    ASSERT_EQ(summary(createNode("m", name)), "200");
    created.insert(name);
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    std::vector<std::pair<std::string, std::string>> q = {{"limit", "3"}};
    if (!token.empty()) q.emplace_back("nextToken", token);
    ApiResponse r = h_.call("GET", "/v20190125/meshes/m/virtualNodes", "", q);
    ASSERT_EQ(summary(r), "200");
    auto page = parseAs<am::ListVirtualNodesOutput>(r);
    EXPECT_LE(page.virtualnodes_size(), 3);
    for (const auto& ref : page.virtualnodes()) {
      seen.push_back(ref.virtualnodename());
      EXPECT_EQ(ref.meshname(), "m");
      EXPECT_EQ(ref.version(), 1);
      EXPECT_EQ(ref.arn(), std::string("arn:aws:appmesh:us-west-2:") + kAccount +
                               ":mesh/m/virtualNode/" + ref.virtualnodename());
      EXPECT_EQ(ref.meshowner(), kAccount);
      EXPECT_EQ(ref.resourceowner(), kCaller);
      EXPECT_EQ(ref.createdat(), 1800000000.0);
    }
    token = page.nexttoken();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), created);
  EXPECT_EQ(seen.size(), created.size()) << "no entry answered twice";
}

TEST_F(ApiTest, ListWithoutLimitAnswersEverythingAndEmptyListsAsArrays) {
  ApiResponse empty = h_.call("GET", "/v20190125/meshes");
  ASSERT_EQ(summary(empty), "200");
  EXPECT_EQ(empty.body, R"({"meshes":[]})");
  ASSERT_EQ(summary(createMesh("a")), "200");
  ASSERT_EQ(summary(createMesh("b")), "200");
  auto all = parseAs<am::ListMeshesOutput>(h_.call("GET", "/v20190125/meshes"));
  ASSERT_EQ(all.meshes_size(), 2);
  EXPECT_EQ(all.meshes(0).meshname(), "a");
  EXPECT_EQ(all.meshes(1).meshname(), "b");
  EXPECT_FALSE(all.has_nexttoken());
}

TEST_F(ApiTest, ListOfEveryKindAnswersItsShape) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  ASSERT_EQ(summary(createService("m", "s")), "200");
  ASSERT_EQ(summary(createRouter("m", "r")), "200");
  ASSERT_EQ(summary(createGateway("m", "g")), "200");
  ASSERT_EQ(summary(createRoute("m", "r", "x", "n")), "200");
  ASSERT_EQ(summary(createGatewayRoute("m", "g", "y", "s")), "200");
  EXPECT_EQ(
      parseAs<am::ListVirtualServicesOutput>(h_.call("GET", "/v20190125/meshes/m/virtualServices"))
          .virtualservices(0)
          .virtualservicename(),
      "s");
  EXPECT_EQ(
      parseAs<am::ListVirtualRoutersOutput>(h_.call("GET", "/v20190125/meshes/m/virtualRouters"))
          .virtualrouters(0)
          .virtualroutername(),
      "r");
  EXPECT_EQ(
      parseAs<am::ListVirtualGatewaysOutput>(h_.call("GET", "/v20190125/meshes/m/virtualGateways"))
          .virtualgateways(0)
          .virtualgatewayname(),
      "g");
  auto routes =
      parseAs<am::ListRoutesOutput>(h_.call("GET", "/v20190125/meshes/m/virtualRouter/r/routes"));
  ASSERT_EQ(routes.routes_size(), 1);
  EXPECT_EQ(routes.routes(0).routename(), "x");
  EXPECT_EQ(routes.routes(0).virtualroutername(), "r");
  auto grs = parseAs<am::ListGatewayRoutesOutput>(
      h_.call("GET", "/v20190125/meshes/m/virtualGateway/g/gatewayRoutes"));
  ASSERT_EQ(grs.gatewayroutes_size(), 1);
  EXPECT_EQ(grs.gatewayroutes(0).gatewayroutename(), "y");
  EXPECT_EQ(grs.gatewayroutes(0).virtualgatewayname(), "g");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/m/virtualRouter/ghost/routes")),
            "404 NotFoundException: virtual router \"ghost\" in mesh \"m\" not found");
}

TEST_F(ApiTest, ListRejectsBadLimitAndToken) {
  for (const char* bad : {"0", "101", "abc", "-1", ""}) {
    EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes", "", {{"limit", bad}})),
              std::string("400 BadRequestException: limit: \"") + bad + "\" is out of range 1-100");
  }
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes", "", {{"limit", "100"}})), "200");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes", "", {{"nextToken", "zz"}})),
            "400 BadRequestException: nextToken: is not a token this API answered");
}

// ---- quotas ----

TEST(ApiQuotaTest, EveryQuotaAnswersLimitExceeded) {
  Options o;
  o.quotas.meshes_per_account = 1;
  o.quotas.virtual_nodes_per_mesh = 1;
  o.quotas.virtual_services_per_mesh = 1;
  o.quotas.virtual_routers_per_mesh = 1;
  o.quotas.routes_per_virtual_router = 1;
  o.quotas.virtual_gateways_per_mesh = 1;
  o.quotas.gateway_routes_per_virtual_gateway = 1;
  Harness h(o);
  auto put = [&](const std::string& path, const std::string& body) {
    return summary(h.call("PUT", "/v20190125/meshes" + path, body));
  };
  ASSERT_EQ(put("", R"({"meshName":"m"})"), "200");
  EXPECT_EQ(
      put("", R"({"meshName":"m2"})"),
      "400 LimitExceededException: cannot create mesh \"m2\": this account already has 1 meshes, "
      "the limit is 1");
  ASSERT_EQ(put("/m/virtualNodes", R"({"virtualNodeName":"n","spec":{}})"), "200");
  EXPECT_EQ(
      put("/m/virtualNodes", R"({"virtualNodeName":"n2","spec":{}})"),
      "400 LimitExceededException: cannot create virtual node \"n2\" in mesh \"m\": mesh \"m\" "
      "already has 1 virtual nodes, the limit is 1");
  ASSERT_EQ(put("/m/virtualServices", R"({"virtualServiceName":"s","spec":{}})"), "200");
  EXPECT_EQ(put("/m/virtualServices", R"({"virtualServiceName":"s2","spec":{}})").substr(0, 28),
            "400 LimitExceededException: ");
  ASSERT_EQ(put("/m/virtualRouters", R"({"virtualRouterName":"r","spec":{}})"), "200");
  EXPECT_EQ(put("/m/virtualRouters", R"({"virtualRouterName":"r2","spec":{}})").substr(0, 28),
            "400 LimitExceededException: ");
  ASSERT_EQ(put("/m/virtualRouter/r/routes", R"({"routeName":"x","spec":)" + routeSpec("n") + "}"),
            "200");
  EXPECT_EQ(put("/m/virtualRouter/r/routes", R"({"routeName":"y","spec":)" + routeSpec("n") + "}"),
            "400 LimitExceededException: cannot create route \"y\" of virtual router \"r\" in mesh "
            "\"m\": virtual router \"r\" in mesh \"m\" already has 1 routes, the limit is 1");
  ASSERT_EQ(put("/m/virtualGateways", R"({"virtualGatewayName":"g","spec":)" + kRouterSpec + "}"),
            "200");
  EXPECT_EQ(put("/m/virtualGateways", R"({"virtualGatewayName":"g2","spec":)" + kRouterSpec + "}")
                .substr(0, 28),
            "400 LimitExceededException: ");
  ASSERT_EQ(put("/m/virtualGateway/g/gatewayRoutes",
                R"({"gatewayRouteName":"x","spec":)" + gatewayRouteSpec("s") + "}"),
            "200");
  EXPECT_EQ(put("/m/virtualGateway/g/gatewayRoutes",
                R"({"gatewayRouteName":"y","spec":)" + gatewayRouteSpec("s") + "}")
                .substr(0, 28),
            "400 LimitExceededException: ");
  // Deleting frees the quota.
  ASSERT_EQ(summary(h.call("DELETE", "/v20190125/meshes/m/virtualRouter/r/routes/x")), "200");
  EXPECT_EQ(put("/m/virtualRouter/r/routes", R"({"routeName":"y","spec":)" + routeSpec("n") + "}"),
            "200");
}

// ---- tags ----

TEST_F(ApiTest, TagsOnCreateAndTagUntagList) {
  ApiResponse m = createMesh("m", R"(,"tags":[{"key":"team","value":"a"}])");
  ASSERT_EQ(summary(m), "200");
  std::string arn = parseAs<am::MeshData>(m).metadata().arn();
  auto tags = [&]() {
    return parseAs<am::ListTagsForResourceOutput>(
        h_.call("GET", "/v20190125/tags", "", {{"resourceArn", arn}}));
  };
  ASSERT_EQ(tags().tags_size(), 1);
  EXPECT_EQ(tags().tags(0).key(), "team");
  ApiResponse t = h_.call("PUT", "/v20190125/tag",
                          R"({"tags":[{"key":"team","value":"b"},{"key":"env","value":"prod"}]})",
                          {{"resourceArn", arn}});
  ASSERT_EQ(summary(t), "200");
  EXPECT_EQ(t.body, "{}");
  auto after = tags();
  ASSERT_EQ(after.tags_size(), 2);
  EXPECT_EQ(after.tags(0).value(), "b") << "tagging an existing key replaces its value";
  EXPECT_EQ(after.tags(1).key(), "env");
  ASSERT_EQ(summary(h_.call("PUT", "/v20190125/untag", R"({"tagKeys":["team","absent"]})",
                            {{"resourceArn", arn}})),
            "200");
  ASSERT_EQ(tags().tags_size(), 1);
  EXPECT_EQ(tags().tags(0).key(), "env");
  EXPECT_EQ(parseAs<am::MeshData>(h_.call("GET", "/v20190125/meshes/m")).metadata().version(), 1)
      << "tags do not change the resource's version";
}

TEST_F(ApiTest, TagsOfChildResourcesAndPagination) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  ASSERT_EQ(summary(createNode("m", "n")), "200");
  ASSERT_EQ(summary(createRouter("m", "r")), "200");
  ApiResponse route = createRoute("m", "r", "x", "n");
  std::string arn = parseAs<am::RouteData>(route).metadata().arn();
  ASSERT_EQ(
      summary(h_.call(
          "PUT", "/v20190125/tag",
          R"({"tags":[{"key":"a","value":"1"},{"key":"b","value":"2"},{"key":"c","value":"3"}]})",
          {{"resourceArn", arn}})),
      "200");
  std::vector<std::string> keys;
  std::string token;
  for (int page = 0; page < 5; ++page) {
    std::vector<std::pair<std::string, std::string>> q = {{"resourceArn", arn}, {"limit", "2"}};
    if (!token.empty()) q.emplace_back("nextToken", token);
    auto out = parseAs<am::ListTagsForResourceOutput>(h_.call("GET", "/v20190125/tags", "", q));
    for (const auto& t : out.tags()) keys.push_back(t.key());
    token = out.nexttoken();
    if (token.empty()) break;
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(ApiTest, TagErrors) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  std::string arn = std::string("arn:aws:appmesh:us-west-2:") + kAccount + ":mesh/m";
  EXPECT_EQ(
      summary(h_.call("GET", "/v20190125/tags", "", {{"resourceArn", arn + "/virtualNode/ghost"}})),
      "404 NotFoundException: virtual node \"ghost\" in mesh \"m\" not found");
  EXPECT_EQ(
      summary(h_.call("GET", "/v20190125/tags", "", {{"resourceArn", "arn:aws:s3:::bucket"}})),
      "400 BadRequestException: resourceArn: \"arn:aws:s3:::bucket\" is not an App Mesh ARN");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/tags")),
            "400 BadRequestException: resourceArn: is required");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/tags", "",
                            {{"resourceArn", "arn:aws:appmesh:eu-west-1:999999999999:mesh/m"}})),
            "404 NotFoundException: resourceArn: no resource has the ARN "
            "arn:aws:appmesh:eu-west-1:999999999999:mesh/m");
  std::string fifty = "[";
  for (int i = 0; i < 50; ++i)
    fifty += std::string(i ? "," : "") + R"({"key":"k)" + std::to_string(i) + R"(","value":"v"})";
  fifty += "]";
  ASSERT_EQ(summary(h_.call("PUT", "/v20190125/tag", R"({"tags":)" + fifty + "}",
                            {{"resourceArn", arn}})),
            "200");
  EXPECT_EQ(
      summary(h_.call("PUT", "/v20190125/tag", R"({"tags":[{"key":"one-more","value":"v"}]})",
                      {{"resourceArn", arn}})),
      "400 TooManyTagsException: tags: the resource would have 51 tags; at most 50 are allowed");
  EXPECT_EQ(summary(h_.call("PUT", "/v20190125/tag", R"({"tags":[]})", {{"resourceArn", arn}})),
            "400 BadRequestException: tags: is required");
}

// ---- routing, owner, errors ----

TEST_F(ApiTest, UnknownOperations) {
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/nothing")),
            "404 UnknownOperationException: no App Mesh operation is GET /v20190125/nothing");
  EXPECT_EQ(summary(h_.call("POST", "/v20190125/meshes")),
            "404 UnknownOperationException: no App Mesh operation is POST /v20190125/meshes");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/m/virtualNodes/n/extra")).substr(0, 30),
            "404 UnknownOperationException:");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/")).substr(0, 30),
            "404 UnknownOperationException:");
  EXPECT_EQ(summary(h_.call("DELETE", "/v20190125/meshes/m/virtualNodes")).substr(0, 30),
            "404 UnknownOperationException:");
}

TEST(ApiStaticTest, HandlesOnlyAppMeshPaths) {
  EXPECT_TRUE(AppMeshApi::handles("/v20190125/meshes"));
  EXPECT_TRUE(AppMeshApi::handles("/v20190125/tags"));
  EXPECT_TRUE(AppMeshApi::handles("/v20190125"));
  EXPECT_FALSE(AppMeshApi::handles("/v20190125x/meshes"));
  EXPECT_FALSE(AppMeshApi::handles("/weft/v1/credentials"));
  EXPECT_FALSE(AppMeshApi::handles("/"));
}

TEST_F(ApiTest, MeshOwnerMustBeThisAccount) {
  ASSERT_EQ(summary(createMesh("m")), "200");
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/m", "", {{"meshOwner", kAccount}})), "200");
  EXPECT_EQ(
      summary(h_.call("GET", "/v20190125/meshes/m", "", {{"meshOwner", "999999999999"}})),
      "403 ForbiddenException: meshOwner: mesh owner 999999999999 is not this server's account "
      "000000000000 (weft does not share meshes across accounts)");
}

TEST_F(ApiTest, PathNamesAreValidated) {
  EXPECT_EQ(summary(h_.call("GET", "/v20190125/meshes/" + std::string(256, 'm'))),
            "400 BadRequestException: meshName: length 256 is out of range 1-255");
}

TEST_F(ApiTest, ErrorShapeForBotocore) {
  ApiResponse r = h_.call("GET", "/v20190125/meshes/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(errorTypeOf(r), "NotFoundException");
  EXPECT_EQ(r.body, R"({"__type":"NotFoundException","message":"mesh \"nope\" not found"})");
}

// A store that fails every call: the API answers 500 InternalServerErrorException.
class BrokenStore final : public Store {
 public:
  Result<std::optional<KeyValue>> get(std::string_view) override {
    return makeError("disk on fire");
  }
  Result<std::vector<KeyValue>> list(std::string_view, std::string_view, size_t) override {
    return makeError("disk on fire");
  }
  Result<int64_t> commit(const std::vector<StoreOp>&) override { return makeError("disk on fire"); }
};

TEST(ApiStoreFailureTest, AnswersInternalServerError) {
  BrokenStore store;
  SimTimeSource time;
  AppMeshApi api(store, time, {});
  ApiRequest req;
  req.method = "PUT";
  req.path = "/v20190125/meshes";
  req.body = R"({"meshName":"m"})";
  req.request_id = "rid-1";
  ApiResponse r = api.handle(req);
  // The store's words go to the log only; the answer names the request id.
  EXPECT_EQ(summary(r),
            "500 InternalServerErrorException: internal error; the server log has the details "
            "under request id rid-1");
}

}  // namespace
}  // namespace weft::control::appmesh
