#include "control/model/resource_keys.h"

#include <vector>

namespace weft::control::appmesh {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::optional<Kind> kindFromName(std::string_view name) {
  for (Kind k : {Kind::kMesh, Kind::kVirtualNode, Kind::kVirtualService, Kind::kVirtualRouter,
                 Kind::kRoute, Kind::kVirtualGateway, Kind::kGatewayRoute})
    if (kindName(k) == name) return k;
  return std::nullopt;
}

bool hasParent(Kind kind) { return kind == Kind::kRoute || kind == Kind::kGatewayRoute; }

}  // namespace

std::string_view kindName(Kind kind) {
  switch (kind) {
    case Kind::kMesh:
      return "mesh";
    case Kind::kVirtualNode:
      return "virtualNode";
    case Kind::kVirtualService:
      return "virtualService";
    case Kind::kVirtualRouter:
      return "virtualRouter";
    case Kind::kRoute:
      return "route";
    case Kind::kVirtualGateway:
      return "virtualGateway";
    case Kind::kGatewayRoute:
      return "gatewayRoute";
  }
  return "";
}

std::string_view kindDisplayName(Kind kind) {
  switch (kind) {
    case Kind::kMesh:
      return "mesh";
    case Kind::kVirtualNode:
      return "virtual node";
    case Kind::kVirtualService:
      return "virtual service";
    case Kind::kVirtualRouter:
      return "virtual router";
    case Kind::kRoute:
      return "route";
    case Kind::kVirtualGateway:
      return "virtual gateway";
    case Kind::kGatewayRoute:
      return "gateway route";
  }
  return "";
}

std::string encodeKeySegment(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == '%')
      out += "%25";
    else if (c == '/')
      out += "%2F";
    else
      out += c;
  }
  return out;
}

std::string decodeKeySegment(std::string_view segment) {
  std::string out;
  for (size_t i = 0; i < segment.size(); ++i) {
    if (segment.substr(i, 3) == "%25") {
      out += '%';
      i += 2;
    } else if (segment.substr(i, 3) == "%2F") {
      out += '/';
      i += 2;
    } else {
      out += segment[i];
    }
  }
  return out;
}

std::string collectionPrefix(Kind kind, std::string_view mesh, std::string_view parent) {
  std::string out = "appmesh/";
  out += kindName(kind);
  out += '/';
  if (kind == Kind::kMesh) return out;
  out += encodeKeySegment(mesh);
  out += '/';
  if (hasParent(kind)) {
    out += encodeKeySegment(parent);
    out += '/';
  }
  return out;
}

std::string resourceKey(const ResourceId& id) {
  return collectionPrefix(id.kind, id.mesh, id.parent) + encodeKeySegment(id.name);
}

std::optional<ResourceId> parseResourceKey(std::string_view key) {
  std::vector<std::string_view> parts = split(key, '/');
  if (parts.size() < 3 || parts[0] != "appmesh") return std::nullopt;
  std::optional<Kind> kind = kindFromName(parts[1]);
  if (!kind) return std::nullopt;
  size_t want = *kind == Kind::kMesh ? 3 : hasParent(*kind) ? 5 : 4;
  if (parts.size() != want) return std::nullopt;
  ResourceId id;
  id.kind = *kind;
  id.name = decodeKeySegment(parts.back());
  id.mesh = *kind == Kind::kMesh ? id.name : decodeKeySegment(parts[2]);
  if (hasParent(*kind)) id.parent = decodeKeySegment(parts[3]);
  return id;
}

std::string resourceArn(const ResourceId& id, std::string_view region, std::string_view account) {
  std::string out = "arn:aws:appmesh:";
  out.append(region).append(":").append(account).append(":mesh/").append(id.mesh);
  switch (id.kind) {
    case Kind::kMesh:
      break;
    case Kind::kRoute:
      out.append("/virtualRouter/").append(id.parent).append("/route/").append(id.name);
      break;
    case Kind::kGatewayRoute:
      out.append("/virtualGateway/").append(id.parent).append("/gatewayRoute/").append(id.name);
      break;
    default:
      out.append("/").append(kindName(id.kind)).append("/").append(id.name);
      break;
  }
  return out;
}

std::optional<ResourceId> parseResourceArn(std::string_view arn, std::string_view region,
                                           std::string_view account) {
  std::string prefix = "arn:aws:appmesh:";
  prefix.append(region).append(":").append(account).append(":");
  if (arn.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::vector<std::string_view> parts = split(arn.substr(prefix.size()), '/');
  for (std::string_view p : parts)
    if (p.empty()) return std::nullopt;
  if (parts.size() < 2 || parts[0] != "mesh") return std::nullopt;
  ResourceId id;
  id.mesh = std::string(parts[1]);
  if (parts.size() == 2) {
    id.kind = Kind::kMesh;
    id.name = id.mesh;
    return id;
  }
  std::optional<Kind> kind = kindFromName(parts[2]);
  if (!kind || *kind == Kind::kMesh || hasParent(*kind)) return std::nullopt;
  if (parts.size() == 4) {
    id.kind = *kind;
    id.name = std::string(parts[3]);
    return id;
  }
  if (parts.size() == 6 && ((*kind == Kind::kVirtualRouter && parts[4] == "route") ||
                            (*kind == Kind::kVirtualGateway && parts[4] == "gatewayRoute"))) {
    id.kind = *kind == Kind::kVirtualRouter ? Kind::kRoute : Kind::kGatewayRoute;
    id.parent = std::string(parts[3]);
    id.name = std::string(parts[5]);
    return id;
  }
  return std::nullopt;
}

}  // namespace weft::control::appmesh
