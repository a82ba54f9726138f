#include "cli/kinds.h"

#include <cctype>

namespace weft::cli {

const std::vector<KindInfo>& allKinds() {
  static const std::vector<KindInfo> kinds = {
      {"Mesh", "meshes", "meshName", "", "", "", "meshes", "AWS::AppMesh::Mesh", 0},
      {"VirtualNode", "virtualNodes", "virtualNodeName", "", "", "", "virtualNodes",
       "AWS::AppMesh::VirtualNode", 1},
      {"VirtualRouter", "virtualRouters", "virtualRouterName", "", "", "", "virtualRouters",
       "AWS::AppMesh::VirtualRouter", 2},
      {"Route", "routes", "routeName", "virtualRouter", "virtualRouterName", "virtualRouter",
       "routes", "AWS::AppMesh::Route", 3},
      {"VirtualService", "virtualServices", "virtualServiceName", "", "", "", "virtualServices",
       "AWS::AppMesh::VirtualService", 4},
      {"VirtualGateway", "virtualGateways", "virtualGatewayName", "", "", "", "virtualGateways",
       "AWS::AppMesh::VirtualGateway", 5},
      {"GatewayRoute", "gatewayRoutes", "gatewayRouteName", "virtualGateway", "virtualGatewayName",
       "virtualGateway", "gatewayRoutes", "AWS::AppMesh::GatewayRoute", 6},
  };
  return kinds;
}

const KindInfo* lookupKind(std::string_view text) {
  std::string t;
  for (char c : text) {
    if (c == '-' || c == '_') continue;
    t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  struct Alias {
    std::string_view alias;
    std::string_view kind;
  };
  static constexpr Alias kAliases[] = {
      {"mesh", "Mesh"},
      {"meshes", "Mesh"},
      {"virtualnode", "VirtualNode"},
      {"virtualnodes", "VirtualNode"},
      {"vn", "VirtualNode"},
      {"node", "VirtualNode"},
      {"nodes", "VirtualNode"},
      {"virtualservice", "VirtualService"},
      {"virtualservices", "VirtualService"},
      {"vs", "VirtualService"},
      {"virtualrouter", "VirtualRouter"},
      {"virtualrouters", "VirtualRouter"},
      {"vr", "VirtualRouter"},
      {"router", "VirtualRouter"},
      {"routers", "VirtualRouter"},
      {"route", "Route"},
      {"routes", "Route"},
      {"rt", "Route"},
      {"virtualgateway", "VirtualGateway"},
      {"virtualgateways", "VirtualGateway"},
      {"vg", "VirtualGateway"},
      {"gateway", "VirtualGateway"},
      {"gateways", "VirtualGateway"},
      {"gw", "VirtualGateway"},
      {"gatewayroute", "GatewayRoute"},
      {"gatewayroutes", "GatewayRoute"},
      {"gr", "GatewayRoute"},
  };
  for (const Alias& a : kAliases) {
    if (a.alias != t) continue;
    for (const KindInfo& k : allKinds())
      if (k.name == a.kind) return &k;
  }
  return nullptr;
}

const KindInfo* kindForCfnType(std::string_view cfn_type) {
  for (const KindInfo& k : allKinds())
    if (k.cfn_type == cfn_type) return &k;
  return nullptr;
}

std::string encodeSegment(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string collectionPath(const KindInfo& kind, std::string_view mesh, std::string_view parent) {
  std::string p = "/v20190125/meshes";
  if (kind.isMesh()) return p;
  p += '/';
  p += encodeSegment(mesh);
  if (kind.hasParent()) {
    p += '/';
    p += kind.parent_segment;
    p += '/';
    p += encodeSegment(parent);
  }
  p += '/';
  p += kind.collection;
  return p;
}

std::string resourcePath(const KindInfo& kind, std::string_view mesh, std::string_view parent,
                         std::string_view name) {
  return collectionPath(kind, mesh, parent) + "/" + encodeSegment(name);
}

}  // namespace weft::cli
