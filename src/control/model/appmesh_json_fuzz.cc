// Fuzz target: the input is the JSON body of every App Mesh write (create and update of each
// kind, tag, untag) against a fresh AppMeshApi over a MemoryStore holding one of each resource.
// Whatever the bytes, every answer must be a well-formed App Mesh answer: 200 with a JSON
// object, or an error with a type and a message. Never a crash, never a 500.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "control/model/appmesh_test_support.h"

namespace {

using weft::control::ApiResponse;
using weft::control::appmesh::testing::errorTypeOf;
using weft::control::appmesh::testing::Harness;

void check(const ApiResponse& r, const char* what) {
  bool ok = (r.status == 200 && !r.body.empty() && r.body.front() == '{') ||
            (r.status >= 400 && r.status < 500 && !errorTypeOf(r).empty());
  if (!ok) {
    std::fprintf(stderr, "%s answered %d %s: %s\n", what, r.status, errorTypeOf(r).c_str(),
                 r.body.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  Harness h;
  const std::string m = "/v20190125/meshes/m";
  h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})");
  h.call("PUT", m + "/virtualNodes", R"({"virtualNodeName":"n1","spec":{}})");
  h.call("PUT", m + "/virtualServices", R"({"virtualServiceName":"s1","spec":{}})");
  h.call("PUT", m + "/virtualRouters", R"({"virtualRouterName":"r1","spec":{}})");
  h.call(
      "PUT", m + "/virtualGateways",
      R"({"virtualGatewayName":"g1","spec":{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]}})");
  const char* const kWrites[][2] = {
      {"PUT", "/v20190125/meshes"},
      {"PUT", "/v20190125/meshes/m"},
      {"PUT", "/v20190125/meshes/m/virtualNodes"},
      {"PUT", "/v20190125/meshes/m/virtualNodes/n1"},
      {"PUT", "/v20190125/meshes/m/virtualServices"},
      {"PUT", "/v20190125/meshes/m/virtualServices/s1"},
      {"PUT", "/v20190125/meshes/m/virtualRouters"},
      {"PUT", "/v20190125/meshes/m/virtualRouters/r1"},
      {"PUT", "/v20190125/meshes/m/virtualRouter/r1/routes"},
      {"PUT", "/v20190125/meshes/m/virtualGateways"},
      {"PUT", "/v20190125/meshes/m/virtualGateways/g1"},
      {"PUT", "/v20190125/meshes/m/virtualGateway/g1/gatewayRoutes"},
  };
  for (const auto& [method, path] : kWrites) check(h.call(method, path, body), path);
  const std::vector<std::pair<std::string, std::string>> arn = {
      {"resourceArn", "arn:aws:appmesh:us-west-2:000000000000:mesh/m"}};
  check(h.call("PUT", "/v20190125/tag", body, arn), "tag");
  check(h.call("PUT", "/v20190125/untag", body, arn), "untag");
  // Whatever was created answers its describe and list.
  check(h.call("GET", "/v20190125/meshes"), "list meshes");
  check(h.call("GET", "/v20190125/meshes/m/virtualNodes"), "list nodes");
  check(h.call("GET", "/v20190125/meshes/m/virtualRouter/r1/routes"), "list routes");
  check(h.call("GET", "/v20190125/tags", "", arn), "list tags");
  // The bytes as path names and query values too.
  std::string name = body.substr(0, 300);
  check(h.call("GET", "/v20190125/meshes/" + name), "describe by fuzzed name");
  check(h.call("GET", "/v20190125/meshes", "", {{"limit", name}, {"nextToken", name}}),
        "list paging");
  check(h.call("GET", "/v20190125/tags", "", {{"resourceArn", name}}), "tags of fuzzed ARN");
  return 0;
}
