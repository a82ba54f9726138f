#pragma once
// The seven App Mesh resource kinds as the CLI sees them: names users type, REST paths, the JSON
// member that carries the name, and the order `weft apply` creates them in.

#include <string>
#include <string_view>
#include <vector>

namespace weft::cli {

struct KindInfo {
  std::string_view name;        // "VirtualNode" (manifest `kind`)
  std::string_view collection;  // path segment: "virtualNodes"
  std::string_view name_field;  // "virtualNodeName"
  // Routes and gateway routes live under a router/gateway: the path segment before the parent's
  // name ("virtualRouter"), the member naming it ("virtualRouterName") and the manifest field
  // ("virtualRouter"). Empty for the other kinds.
  std::string_view parent_segment;
  std::string_view parent_field;
  std::string_view parent_manifest_field;
  std::string_view list_key;  // member of the list response: "virtualNodes"
  std::string_view cfn_type;  // "AWS::AppMesh::VirtualNode"
  int apply_order;            // ascending for create, descending for delete

  bool isMesh() const { return name == "Mesh"; }
  bool hasParent() const { return !parent_segment.empty(); }
};

// All kinds, in apply order: Mesh, VirtualNode, VirtualRouter, Route, VirtualService,
// VirtualGateway, GatewayRoute.
const std::vector<KindInfo>& allKinds();

// Accepts the kind name, its plural and short forms, case-insensitively, ignoring '-' and '_':
// mesh(es); virtualnode(s), vn, node(s); virtualservice(s), vs; virtualrouter(s), vr,
// router(s); route(s), rt; virtualgateway(s), vg, gateway(s), gw; gatewayroute(s), gr.
// nullptr if none matches.
const KindInfo* lookupKind(std::string_view text);
const KindInfo* kindForCfnType(std::string_view cfn_type);

// Percent-encodes one path segment (RFC 3986 unreserved characters pass through).
std::string encodeSegment(std::string_view s);

// "/v20190125/meshes", "/v20190125/meshes/m/virtualNodes",
// "/v20190125/meshes/m/virtualRouter/r/routes".
std::string collectionPath(const KindInfo& kind, std::string_view mesh, std::string_view parent);
// The collection path plus "/<name>" (for a mesh, "/v20190125/meshes/<name>").
std::string resourcePath(const KindInfo& kind, std::string_view mesh, std::string_view parent,
                         std::string_view name);

}  // namespace weft::cli
