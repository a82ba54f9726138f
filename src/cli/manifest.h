#pragma once
// `weft apply/delete -f` manifests: one document per resource, YAML or JSON, in the App Mesh
// API shapes:
//
//   kind: VirtualNode            # Mesh | VirtualNode | VirtualService | VirtualRouter | Route |
//                                # VirtualGateway | GatewayRoute (or any alias lookupKind takes)
//   mesh: demo                   # every kind but Mesh (for a Mesh, `name` or `mesh`)
//   name: backend
//   virtualRouter: r1            # Route only;  virtualGateway: g1 for GatewayRoute
//   spec: {...}                  # the API's spec, camelCase, as `aws appmesh` takes it
//   tags: [{key: k, value: v}]   # or a map {k: v}
//
// A file may hold several YAML documents ("---"), or a JSON object, or a JSON/YAML list of them.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/kinds.h"
#include "cli/yaml_json.h"
#include "common/result.h"

namespace weft::cli {

struct Manifest {
  const KindInfo* kind = nullptr;
  std::string mesh;    // for a Mesh, its name
  std::string parent;  // router (Route) or gateway (GatewayRoute); else empty
  std::string name;
  Value spec;  // an object (empty when the document has none)
  bool has_tags = false;
  std::vector<std::pair<std::string, std::string>> tags;
  std::string source;  // "file.yaml (document 2)", for messages

  // "VirtualNode demo/backend", "Route demo/r1/default".
  std::string describe() const;
  // The tags in the API shape: [{"key": k, "value": v}, ...].
  Value tagsValue() const;
};

// Parses the documents of one file. `source` names the file in errors.
Result<std::vector<Manifest>> parseManifests(std::string_view text, std::string_view source);

// Reads a file, or every *.yaml, *.yml and *.json file of a directory (sorted by name, not
// recursive). Rejects two manifests for the same resource.
Result<std::vector<Manifest>> loadManifests(const std::string& path);

// Stable sort by KindInfo::apply_order; `reverse` (for deletion) reverses the whole result, so
// resources of one kind are deleted in the reverse of their file order.
void sortForApply(std::vector<Manifest>& manifests, bool reverse = false);

}  // namespace weft::cli
