#pragma once
// App Mesh resource operations over ApiClient, shared by `weft apply/get/describe/delete` and
// `weft stack`: describe, list (all pages), create-or-update with an "unchanged" check, tag
// sync, delete.

#include <optional>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/kinds.h"
#include "common/result.h"

namespace weft::cli {

// Names one App Mesh resource.
struct ResourceId {
  const KindInfo* kind = nullptr;
  std::string mesh;
  std::string parent;  // router / gateway for routes / gateway routes
  std::string name;

  std::string path() const { return resourcePath(*kind, mesh, parent, name); }
  std::string describe() const;  // "VirtualNode demo/backend"
};

// The resource's data as the API answers it, or nullopt when it does not exist (404).
Result<std::optional<Value>> describeResource(ApiClient& api, const ResourceId& id);

// Every item of the list operation (following nextToken): the API's *Ref objects.
Result<std::vector<Value>> listResources(ApiClient& api, const KindInfo& kind,
                                         const std::string& mesh, const std::string& parent);

enum class ApplyOutcome { kCreated, kUpdated, kUnchanged };
const char* outcomeName(ApplyOutcome o);

struct ApplyResult {
  ApplyOutcome outcome = ApplyOutcome::kUnchanged;
  Value data;           // the resource after the call
  Value previous_spec;  // kUpdated: the spec before (for a rollback)
};

// Creates the resource, or updates it when its spec (or, if `tags` is given, its tags) differ
// from the server's. Specs compare after dropping null members and empty lists/objects, so a
// server that echoes "backends: []" does not make every apply an update.
Result<ApplyResult> applyResource(ApiClient& api, const ResourceId& id, const Value& spec,
                                  const Value* tags);

// Sets the resource's tags to exactly `tags` ([{key, value}]); answers whether anything changed.
Result<bool> syncTags(ApiClient& api, const std::string& arn, const Value& tags);

// Deletes; answers false when it did not exist.
Result<bool> deleteResource(ApiClient& api, const ResourceId& id);

// `v` without null members and empty lists/objects (recursively).
Value normalizeSpec(const Value& v);

}  // namespace weft::cli
