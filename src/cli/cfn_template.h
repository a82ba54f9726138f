#pragma once
// CloudFormation template engine for `weft stack`: pure functions, no I/O.
//
//   parseTemplate()       YAML (short-form tags included) or JSON text → Template
//   resolveParameters()   defaults + overrides, type and AllowedValues checks
//   evaluateConditions()  the Conditions section
//   deployOrder()         resources in dependency order (Ref/GetAtt/Sub/DependsOn); cycles rejected
//   evaluate()            intrinsic functions against an EvalContext
//   appMeshCallFor()      AWS::AppMesh::* properties (PascalCase) → an App Mesh API call
//   (camelCase)
//
// Supported intrinsics: Ref, Fn::Sub (string and [string, vars]), Fn::GetAtt ([R, A] and "R.A"),
// Fn::ImportValue, Fn::Join, Fn::Select, Fn::Split, Fn::If, Fn::Equals, Fn::And, Fn::Or,
// Fn::Not, Condition, Fn::FindInMap, Fn::Base64; pseudo parameters AWS::Region,
// AWS::AccountId, AWS::StackName, AWS::StackId, AWS::Partition, AWS::URLSuffix, AWS::NoValue.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cli/kinds.h"
#include "cli/yaml_json.h"
#include "common/result.h"

namespace weft::cli::cfn {

struct Parameter {
  std::string name;
  std::string type = "String";
  std::optional<std::string> default_value;  // as text (CloudFormation parameters are text)
  std::vector<std::string> allowed_values;
  std::string description;
};

struct Resource {
  std::string logical_id;
  std::string type;
  Value properties;  // an object (empty when the template has none)
  std::vector<std::string> depends_on;
  std::string condition;  // "" when unconditional
};

struct Output {
  std::string name;
  Value value;
  Value export_name;  // null when the output has no Export
  std::string condition;
  std::string description;
};

struct Template {
  std::string description;
  std::vector<Parameter> parameters;
  std::vector<std::pair<std::string, Value>> conditions;  // in template order
  Value mappings;                                         // object or null
  std::vector<Resource> resources;                        // in template order
  std::vector<Output> outputs;
};

// Parses and checks the template's structure (sections, resource Type, DependsOn targets, Ref
// and GetAtt targets that name neither a parameter nor a resource).
Result<Template> parseTemplate(std::string_view text);

struct PseudoParameters {
  std::string region = "us-west-2";
  std::string account_id = "000000000000";
  std::string stack_name;
  std::string partition = "aws";
  std::string url_suffix = "amazonaws.com";
};

// Parameter values: an override, else the Default; every parameter must end up with a value.
// Types: String and AWS-specific string types (AWS::EC2::VPC::Id, ...) → string; Number → a
// JSON number; CommaDelimitedList and List<...> → array of strings (List<Number>: numbers).
// Overrides naming no parameter are an error.
Result<std::map<std::string, Value>> resolveParameters(
    const Template& tmpl, const std::map<std::string, std::string>& overrides);

// What a resource deployed so far answers to Ref and Fn::GetAtt.
struct ResourceState {
  std::string type;
  Value ref;             // App Mesh: the ARN
  Value attributes;      // object: Arn, Uid, MeshName, ...
  bool skipped = false;  // a type weft does not handle yet: no Ref/GetAtt possible
};

struct EvalContext {
  std::map<std::string, Value> parameters;
  PseudoParameters pseudo;
  std::map<std::string, bool> conditions;
  std::map<std::string, ResourceState> resources;  // logical id → state
  std::map<std::string, std::string> exports;      // other stacks' exports: name → value
  Value mappings;
  // Names passed to Fn::ImportValue are added here (when not null).
  std::set<std::string>* imports_used = nullptr;
};

// Evaluates every intrinsic in `v`. nullopt means AWS::NoValue (the caller drops the member or
// list item); inside objects and lists NoValue members/items are dropped here.
Result<std::optional<Value>> evaluate(const Value& v, const EvalContext& ctx);

// Evaluates the Conditions section with ctx.parameters/pseudo (conditions may name each other;
// cycles are an error).
Result<std::map<std::string, bool>> evaluateConditions(const Template& tmpl,
                                                       const EvalContext& ctx);

// Logical ids whose condition holds (all when `conditions` names none), ordered so that every
// resource comes after those it references (Ref, Fn::GetAtt, ${..} in Fn::Sub) or DependsOn;
// ties keep template order. A cycle answers an error naming the resources on it.
Result<std::vector<std::string>> deployOrder(const Template& tmpl,
                                             const std::map<std::string, bool>& conditions);

// The logical ids `v` references (Ref / GetAtt / Sub), excluding parameters and pseudo
// parameters.
std::set<std::string> referencedResources(const Value& v);

// One App Mesh create/update, from a resource's evaluated properties.
struct AppMeshCall {
  const KindInfo* kind = nullptr;
  std::string mesh;
  std::string parent;  // router / gateway for Route / GatewayRoute
  std::string name;
  Value spec;  // API shape (camelCase)
  Value tags;  // API shape [{key, value}], possibly empty

  bool sameIdentity(const AppMeshCall& o) const {
    return kind == o.kind && mesh == o.mesh && parent == o.parent && name == o.name;
  }
  Value toValue() const;  // {kind, mesh, parent?, name, spec, tags}
};

// `generated_name` is used when the template leaves the resource's name out (CloudFormation
// generates one; weft uses a deterministic "<stack>-<logicalId>"). Unknown properties are an
// error naming the property.
Result<AppMeshCall> appMeshCallFor(const Resource& resource, const Value& properties,
                                   std::string_view generated_name);

// CloudFormation's PascalCase keys → the API's camelCase ("DNS" → "dns", "AWSCloudMap" →
// "awsCloudMap", "HttpRoute" → "httpRoute"), recursively; numeric and boolean members given as
// strings (CloudFormation passes parameters as text) become numbers/booleans.
Value toApiShape(const Value& cfn_spec);
std::string camelKey(std::string_view pascal);

// Fn::GetAtt attributes and Ref of an App Mesh resource, from the API's answer (the resource
// data: {meshName, virtualNodeName, metadata: {arn, uid, meshOwner, resourceOwner}, ...}).
ResourceState appMeshState(const KindInfo& kind, const Value& resource_data);

}  // namespace weft::cli::cfn
