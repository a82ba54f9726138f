#include "cli/manifest.h"

#include <gtest/gtest.h>

namespace weft::cli {
namespace {

TEST(ManifestTest, ParsesEveryKindInYaml) {
  auto ms = parseManifests(R"(
kind: Mesh
name: demo
spec: {egressFilter: {type: ALLOW_ALL}}
---
kind: vn
mesh: demo
name: backend
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
tags: {team: payments}
---
kind: Route
mesh: demo
virtualRouter: r1
name: default
spec: {}
tags: [{key: a, value: b}]
---
kind: gatewayroutes
mesh: demo
virtualGateway: g1
name: gr
)",
                           "m.yaml");
  ASSERT_TRUE(ms) << ms.error().message;
  ASSERT_EQ(ms->size(), 4u);
  const Manifest& mesh = (*ms)[0];
  EXPECT_EQ(mesh.kind->name, "Mesh");
  EXPECT_EQ(mesh.mesh, "demo");
  EXPECT_EQ(mesh.describe(), "Mesh demo");
  const Manifest& vn = (*ms)[1];
  EXPECT_EQ(vn.kind->name, "VirtualNode");
  EXPECT_EQ(toJson(vn.spec), R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]})");
  EXPECT_TRUE(vn.has_tags);
  EXPECT_EQ(toJson(vn.tagsValue()), R"([{"key":"team","value":"payments"}])");
  const Manifest& route = (*ms)[2];
  EXPECT_EQ(route.parent, "r1");
  EXPECT_EQ(route.describe(), "Route demo/r1/default");
  EXPECT_EQ(toJson(route.tagsValue()), R"([{"key":"a","value":"b"}])");
  EXPECT_EQ((*ms)[3].kind->name, "GatewayRoute");
  EXPECT_EQ(toJson((*ms)[3].spec), "{}");
  EXPECT_FALSE((*ms)[3].has_tags);
}

TEST(ManifestTest, ParsesJsonObjectsAndLists) {
  auto ms = parseManifests(
      R"([{"kind": "Mesh", "name": "m"}, {"kind": "VirtualService", "mesh": "m",
          "name": "svc.local", "spec": {"provider": {"virtualNode": {"virtualNodeName": "n"}}}}])",
      "m.json");
  ASSERT_TRUE(ms) << ms.error().message;
  ASSERT_EQ(ms->size(), 2u);
  EXPECT_EQ((*ms)[1].describe(), "VirtualService m/svc.local");
}

void expectError(std::string_view text, std::string_view expected) {
  auto ms = parseManifests(text, "f.yaml");
  ASSERT_FALSE(ms) << "accepted: " << text;
  EXPECT_EQ(ms.error().message, expected);
}

TEST(ManifestTest, ErrorsNameTheDocumentAndTheProblem) {
  expectError("name: x", "f.yaml (document 1): missing 'kind'");
  expectError("kind: Pod\nname: x",
              "f.yaml (document 1): unknown kind 'Pod' (expected Mesh, VirtualNode, "
              "VirtualService, VirtualRouter, Route, VirtualGateway or GatewayRoute)");
  expectError("kind: Mesh\nname: m\n---\nkind: VirtualNode\nname: n",
              "f.yaml (document 2): missing 'mesh' (the mesh VirtualNode 'n' belongs to)");
  expectError("kind: Route\nmesh: m\nname: r",
              "f.yaml (document 1): missing 'virtualRouter' for Route 'r'");
  expectError("kind: VirtualNode\nmesh: m\nname: n\nvirtualRouter: r",
              "f.yaml (document 1): 'virtualRouter' does not apply to a VirtualNode");
  expectError("kind: Mesh\nname: m\nspecs: {}",
              "f.yaml (document 1): unknown field 'specs' (expected kind, mesh, name, "
              "virtualRouter, virtualGateway, spec, tags)");
  expectError("kind: Mesh\nname: m\nspec: [1]", "f.yaml (document 1): 'spec' must be a mapping");
  expectError("kind: Mesh\nname: 5", "f.yaml (document 1): 'name' must be a string");
  expectError("kind: Mesh\nname: m\ntags: [{value: v}]",
              "f.yaml (document 1): each tag must be {key: K, value: V}");
  expectError("- 1", "f.yaml (document 1): a manifest must be a mapping with kind, name and spec");
  auto bad = parseManifests("kind: [", "f.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.rfind("f.yaml: YAML line", 0), 0u) << bad.error().message;
}

TEST(ManifestTest, SortForApplyOrdersByDependency) {
  auto ms = parseManifests(R"(
kind: GatewayRoute
mesh: m
virtualGateway: g
name: gr
---
kind: VirtualService
mesh: m
name: s
---
kind: Route
mesh: m
virtualRouter: r
name: rt
---
kind: VirtualGateway
mesh: m
name: g
---
kind: VirtualRouter
mesh: m
name: r
---
kind: VirtualNode
mesh: m
name: n
---
kind: Mesh
name: m
)",
                           "f");
  ASSERT_TRUE(ms) << ms.error().message;
  sortForApply(*ms);
  std::string order;
  for (const Manifest& m : *ms) order += std::string(m.kind->name) + " ";
  EXPECT_EQ(order,
            "Mesh VirtualNode VirtualRouter Route VirtualService VirtualGateway GatewayRoute ");
  sortForApply(*ms, true);
  order.clear();
  for (const Manifest& m : *ms) order += std::string(m.kind->name) + " ";
  EXPECT_EQ(order,
            "GatewayRoute VirtualGateway VirtualService Route VirtualRouter VirtualNode Mesh ");
}

TEST(KindsTest, AliasesAndPaths) {
  for (std::string_view a : {"vn", "VirtualNodes", "virtual-node", "NODE"})
    EXPECT_EQ(lookupKind(a) ? lookupKind(a)->name : "(none)", "VirtualNode") << a;
  EXPECT_EQ(lookupKind("pods"), nullptr);
  const KindInfo& route = *lookupKind("route");
  EXPECT_EQ(resourcePath(route, "m", "r 1", "x"),
            "/v20190125/meshes/m/virtualRouter/r%201/routes/x");
  EXPECT_EQ(collectionPath(*lookupKind("mesh"), "", ""), "/v20190125/meshes");
  EXPECT_EQ(resourcePath(*lookupKind("vs"), "m", "", "svc.local"),
            "/v20190125/meshes/m/virtualServices/svc.local");
}

}  // namespace
}  // namespace weft::cli
