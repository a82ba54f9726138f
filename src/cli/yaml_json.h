#pragma once
// The one YAML → JSON converter the CLI uses, for manifests and CloudFormation templates alike.
//
// Scalars follow the YAML 1.2 core schema: a plain (unquoted) scalar that reads as an integer,
// a float, a boolean (true/false in any of the three spellings) or null (~, null, empty) becomes
// a JSON number/boolean/null; a quoted scalar always stays a string. CloudFormation's short-form
// tags become the long form CloudFormation itself reads (`!Ref X` → {"Ref": "X"}, `!Sub s` →
// {"Fn::Sub": "s"}, `!GetAtt A.B` → {"Fn::GetAtt": ["A", "B"]}, ...); any other local tag is an
// error. yaml-cpp's exceptions are caught here and become errors with the line and column.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "control/stacks/json_value.h"

namespace YAML {
class Node;
}

namespace weft::cli {

using control::stacks::isJsonNumber;
using control::stacks::kMaxDepth;
using control::stacks::parseJson;
using control::stacks::toJson;
using control::stacks::toYaml;
using control::stacks::Value;

// Converts one YAML node. Fails on unknown tags, non-scalar keys, nesting deeper than kMaxDepth
// or alias expansion beyond a million nodes.
Result<Value> yamlToValue(const YAML::Node& node);

// yamlToValue() serialised as compact JSON text.
Result<std::string> yamlToJson(const YAML::Node& node);

// Parses a YAML stream (several "---" documents allowed) or a JSON text into its documents;
// empty (null) documents are dropped. Text whose first non-blank character is '{' or '[' is
// tried as JSON first (exact string/number fidelity), then as YAML.
Result<std::vector<Value>> parseDocuments(std::string_view text);

}  // namespace weft::cli
