#pragma once
// `weft stack deploy|delete`: drives the template engine (cfn_template.h) against the App Mesh
// API and records the result with the server's stack API (/weft/v1/stacks, StackApi).
//
// deploy: resources in dependency order; each App Mesh resource is created, updated (spec or
// tags differ from the server's) or left unchanged; types weft does not handle are reported as
// skipped; resources of the previous deploy that the template no longer has (or whose name
// changed: a replacement) are deleted in reverse order. Any failure rolls back what this deploy
// did, newest first (created → deleted, updated → previous spec restored, deleted → recreated),
// and answers an error naming the failing resource. Progress goes to `out`, one line each.
//
// Not thread-safe (one deploy per call; the server serialises record writes).

#include <map>
#include <ostream>
#include <string>

#include "cli/client.h"
#include "common/result.h"

namespace weft::cli {

struct DeployOptions {
  std::string stack_name;
  std::string template_text;
  std::map<std::string, std::string> parameter_overrides;
  std::string region = "us-west-2";
};

Status deployStack(ApiClient& api, const DeployOptions& options, std::ostream& out);

// Deletes the stack's resources in reverse creation order, then its record. Refused (before
// anything is deleted) while another stack imports one of its exports.
Status deleteStack(ApiClient& api, const std::string& stack_name, std::ostream& out);

}  // namespace weft::cli
