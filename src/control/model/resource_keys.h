#pragma once
// Where the App Mesh model keeps each resource in the Store, and the ARNs it answers. Other
// control-plane modules (the config compiler, the push server) read the same keys.
//
// Layout (names percent-encoded: '%' -> "%25", '/' -> "%2F"; values are StoredResource JSON,
// api/aws/appmesh/v20190125/records.proto):
//   appmesh/mesh/<mesh>
//   appmesh/virtualNode/<mesh>/<node>
//   appmesh/virtualService/<mesh>/<service>
//   appmesh/virtualRouter/<mesh>/<router>
//   appmesh/route/<mesh>/<router>/<route>
//   appmesh/virtualGateway/<mesh>/<gateway>
//   appmesh/gatewayRoute/<mesh>/<gateway>/<gatewayRoute>
//   appmesh/meta/meshes            (no content; rewritten by every mesh create, for the quota)
//
// Concurrency contract of the writers (src/control/model/appmesh_api.cc): creating a resource
// rewrites its parent's key (mesh, or router / gateway for routes) and creating or updating a
// virtual service rewrites its provider's key, so a delete that checked "no children" / "not a
// provider" under a precondition on the parent's revision can never race with such a write.

#include <optional>
#include <string>
#include <string_view>

namespace weft::control::appmesh {

enum class Kind {
  kMesh,
  kVirtualNode,
  kVirtualService,
  kVirtualRouter,
  kRoute,
  kVirtualGateway,
  kGatewayRoute
};

// One resource's identity. `parent` is the virtual router of a route or the virtual gateway of a
// gateway route, empty otherwise; `name` is the mesh's own name for a mesh.
struct ResourceId {
  Kind kind = Kind::kMesh;
  std::string mesh;
  std::string parent;
  std::string name;

  bool operator==(const ResourceId&) const = default;
};

// "virtualNode" etc.: the StoredResource field, the ARN segment and the key segment.
std::string_view kindName(Kind kind);
// "virtual node" etc., for messages.
std::string_view kindDisplayName(Kind kind);

std::string resourceKey(const ResourceId& id);
// Prefix of the keys of every resource of `kind` under (mesh, parent); for meshes, "appmesh/mesh/".
std::string collectionPrefix(Kind kind, std::string_view mesh = {}, std::string_view parent = {});
// The id of the resource whose key is `key`, or nullopt for a key that is not a resource.
std::optional<ResourceId> parseResourceKey(std::string_view key);
inline constexpr std::string_view kMeshCounterKey = "appmesh/meta/meshes";

std::string encodeKeySegment(std::string_view name);
std::string decodeKeySegment(std::string_view segment);

// arn:aws:appmesh:<region>:<account>:mesh/<mesh>[/virtualNode/<n> | /virtualRouter/<r>/route/<x> |
// /virtualGateway/<g>/gatewayRoute/<x> | ...].
std::string resourceArn(const ResourceId& id, std::string_view region, std::string_view account);
// The id named by an App Mesh ARN of this region and account; nullopt for anything else.
std::optional<ResourceId> parseResourceArn(std::string_view arn, std::string_view region,
                                           std::string_view account);

}  // namespace weft::control::appmesh
