#include "cli/cfn_template.h"

#include <gtest/gtest.h>

namespace weft::cli::cfn {
namespace {

Value v(std::string_view yaml) {
  auto docs = parseDocuments(yaml);
  EXPECT_TRUE(docs && docs->size() == 1) << yaml;
  return docs && !docs->empty() ? (*docs)[0] : Value();
}

EvalContext baseContext() {
  EvalContext ctx;
  ctx.pseudo.region = "eu-west-1";
  ctx.pseudo.account_id = "123456789012";
  ctx.pseudo.stack_name = "s1";
  ctx.parameters["Env"] = Value::string("prod");
  ctx.parameters["Port"] = Value::number("8080");
  ctx.parameters["Names"] = Value::array({Value::string("a"), Value::string("b")});
  ResourceState mesh;
  mesh.type = "AWS::AppMesh::Mesh";
  mesh.ref = Value::string("arn:aws:appmesh:eu-west-1:123456789012:mesh/m");
  mesh.attributes =
      v("{Arn: 'arn:aws:appmesh:eu-west-1:123456789012:mesh/m', MeshName: m, "
        "Uid: u-1}");
  ctx.resources["Mesh"] = mesh;
  ResourceState skipped;
  skipped.type = "AWS::ServiceDiscovery::Service";
  skipped.skipped = true;
  ctx.resources["Sd"] = skipped;
  ctx.exports["shared-mesh"] = "m0";
  ctx.mappings = v("{Regions: {eu-west-1: {Name: ireland}}}");
  return ctx;
}

// Evaluates YAML (short or long form) and answers compact JSON, or "ERROR: message".
std::string eval(std::string_view yaml, const EvalContext& ctx) {
  auto r = evaluate(v(yaml), ctx);
  if (!r) return "ERROR: " + r.error().message;
  if (!*r) return "NoValue";
  return toJson(**r);
}

std::string eval(std::string_view yaml) { return eval(yaml, baseContext()); }

TEST(CfnEvalTest, Ref) {
  EXPECT_EQ(eval("!Ref Env"), R"("prod")");
  EXPECT_EQ(eval("{Ref: Port}"), "8080");
  EXPECT_EQ(eval("!Ref Names"), R"(["a","b"])");
  EXPECT_EQ(eval("!Ref Mesh"), R"("arn:aws:appmesh:eu-west-1:123456789012:mesh/m")");
  EXPECT_EQ(eval("!Ref AWS::Region"), R"("eu-west-1")");
  EXPECT_EQ(eval("!Ref AWS::AccountId"), R"("123456789012")");
  EXPECT_EQ(eval("!Ref AWS::StackName"), R"("s1")");
  EXPECT_EQ(eval("!Ref AWS::Partition"), R"("aws")");
  EXPECT_EQ(eval("!Ref AWS::URLSuffix"), R"("amazonaws.com")");
  EXPECT_EQ(eval("!Ref AWS::NoValue"), "NoValue");
  EXPECT_EQ(eval("{a: 1, b: !Ref AWS::NoValue, c: [1, !Ref AWS::NoValue, 2]}"),
            R"({"a":1,"c":[1,2]})");
  EXPECT_EQ(eval("!Ref Nope"), "ERROR: Ref Nope: no parameter or deployed resource with that name");
  EXPECT_EQ(eval("!Ref Sd"),
            "ERROR: Ref Sd: resource type AWS::ServiceDiscovery::Service is not handled by weft "
            "yet (skipped)");
  EXPECT_EQ(eval("!Ref AWS::Bogus"), "ERROR: Ref: unknown pseudo parameter AWS::Bogus");
}

TEST(CfnEvalTest, GetAtt) {
  EXPECT_EQ(eval("!GetAtt Mesh.Uid"), R"("u-1")");
  EXPECT_EQ(eval("{'Fn::GetAtt': [Mesh, MeshName]}"), R"("m")");
  EXPECT_EQ(eval("{'Fn::GetAtt': Mesh.Arn}"), R"("arn:aws:appmesh:eu-west-1:123456789012:mesh/m")");
  EXPECT_EQ(eval("!GetAtt Mesh.Nope"),
            "ERROR: Fn::GetAtt Mesh.Nope: AWS::AppMesh::Mesh has no attribute Nope (it has: Arn, "
            "MeshName, Uid)");
  EXPECT_EQ(eval("!GetAtt Other.Arn"),
            "ERROR: Fn::GetAtt Other.Arn: no deployed resource with that name");
}

TEST(CfnEvalTest, Sub) {
  EXPECT_EQ(eval("!Sub '${Env}-${AWS::Region}-${Mesh.MeshName}'"), R"("prod-eu-west-1-m")");
  EXPECT_EQ(eval("!Sub 'literal ${!Env} and ${ Env }'"), R"("literal ${Env} and prod")");
  EXPECT_EQ(eval("!Sub ['${A}.${Env}:${Port}', {A: !Ref AWS::StackName}]"), R"("s1.prod:8080")");
  EXPECT_EQ(eval("{'Fn::Sub': 'no vars'}"), R"("no vars")");
  EXPECT_EQ(eval("!Sub '${Names}'"),
            "ERROR: Fn::Sub: ${Names} is a list, not a string (use Fn::Join)");
  EXPECT_EQ(eval("!Sub 'x ${Env'"), "ERROR: Fn::Sub: unterminated ${ in \"x ${Env\"");
  EXPECT_EQ(eval("!Sub '${Missing}'"),
            "ERROR: Ref Missing: no parameter or deployed resource with that name");
}

TEST(CfnEvalTest, JoinSelectSplit) {
  EXPECT_EQ(eval("!Join ['-', [a, !Ref Env, 3]]"), R"("a-prod-3")");
  EXPECT_EQ(eval("!Join [',', !Ref Names]"), R"("a,b")");
  EXPECT_EQ(eval("!Join ['', []]"), R"("")");
  EXPECT_EQ(eval("!Select [1, !Ref Names]"), R"("b")");
  EXPECT_EQ(eval("!Select ['0', [x, y]]"), R"("x")");
  EXPECT_EQ(eval("!Select [2, !Ref Names]"),
            "ERROR: Fn::Select: index 2 is out of range for a list of 2");
  EXPECT_EQ(eval("!Split [',', 'a,,b']"), R"(["a","","b"])");
  EXPECT_EQ(eval("!Select [1, !Split ['/', !Ref Mesh]]"), R"("m")");
  EXPECT_EQ(eval("!Join ['-', a]"), "ERROR: Fn::Join: the second argument must be a list");
  EXPECT_EQ(eval("!Join [a]"), R"(ERROR: Fn::Join: expected a list of 2 arguments, got ["a"])");
}

TEST(CfnEvalTest, ImportValueRecordsImports) {
  EvalContext ctx = baseContext();
  std::set<std::string> used;
  ctx.imports_used = &used;
  EXPECT_EQ(eval("!ImportValue shared-mesh", ctx), R"("m0")");
  EXPECT_EQ(eval("!ImportValue {'Fn::Sub': 'shared-${AWS::NoValue}'}", ctx),
            "ERROR: Fn::Sub: ${AWS::NoValue} is AWS::NoValue");
  EXPECT_EQ(eval("!ImportValue {'Fn::Sub': '${P}-mesh'}", ctx),
            "ERROR: Ref P: no parameter or deployed resource with that name");
  EXPECT_EQ(eval("!ImportValue {'Fn::Sub': 'shared-mesh'}", ctx), R"("m0")");
  EXPECT_EQ(eval("!ImportValue other", ctx), "ERROR: Fn::ImportValue: no stack exports 'other'");
  EXPECT_EQ(used, std::set<std::string>{"shared-mesh"});
}

TEST(CfnEvalTest, ConditionsAndIf) {
  auto t = parseTemplate(R"(
Parameters:
  Env: {Type: String, Default: prod, AllowedValues: [prod, dev]}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Equals [a, a]]
  Either: !Or [!Condition IsDev, !Equals [1, "1"]]
Resources:
  M: {Type: AWS::AppMesh::Mesh, Condition: IsProd}
  D: {Type: AWS::AppMesh::Mesh, Condition: IsDev}
)");
  ASSERT_TRUE(t) << t.error().message;
  EvalContext ctx = baseContext();
  auto conds = evaluateConditions(*t, ctx);
  ASSERT_TRUE(conds) << conds.error().message;
  EXPECT_EQ((std::map<std::string, bool>{
                {"IsProd", true}, {"IsDev", false}, {"Both", true}, {"Either", true}}),
            *conds);
  ctx.conditions = *conds;
  EXPECT_EQ(eval("!If [IsProd, big, small]", ctx), R"("big")");
  EXPECT_EQ(eval("{a: !If [IsDev, x, !Ref AWS::NoValue]}", ctx), "{}");
  EXPECT_EQ(eval("!If [Nope, a, b]", ctx), "ERROR: Fn::If: unknown condition 'Nope'");
  auto order = deployOrder(*t, *conds);
  ASSERT_TRUE(order);
  EXPECT_EQ(*order, std::vector<std::string>{"M"}) << "D's condition is false";
}

TEST(CfnEvalTest, ConditionCyclesAndUnknownsAreErrors) {
  auto cyc = parseTemplate(R"(
Conditions:
  A: !Not [!Condition B]
  B: !Not [!Condition A]
Resources:
  M: {Type: AWS::AppMesh::Mesh}
)");
  ASSERT_TRUE(cyc);
  auto r = evaluateConditions(*cyc, baseContext());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "circular dependency between conditions: A, B");
  auto unknown = parseTemplate(R"(
Conditions:
  A: !Not [!Condition Z]
Resources:
  M: {Type: AWS::AppMesh::Mesh}
)");
  ASSERT_TRUE(unknown);
  auto u = evaluateConditions(*unknown, baseContext());
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().message, "condition A: unknown condition 'Z'");
}

TEST(CfnEvalTest, FindInMapAndBase64) {
  EXPECT_EQ(eval("!FindInMap [Regions, !Ref AWS::Region, Name]"), R"("ireland")");
  EXPECT_EQ(eval("!FindInMap [Regions, x, Name]"),
            "ERROR: Fn::FindInMap: no Regions/x/Name in Mappings");
  EXPECT_EQ(eval("!Base64 hello"), R"("aGVsbG8=")");
  EXPECT_EQ(eval("{'Fn::Cidr': [a, 1, 2]}"), "ERROR: Fn::Cidr is not supported by weft");
}

TEST(CfnParametersTest, DefaultsOverridesTypesAndAllowedValues) {
  auto t = parseTemplate(R"(
Parameters:
  Name: {Type: String, Default: demo}
  Port: {Type: Number, Default: 8080}
  Zones: {Type: CommaDelimitedList, Default: "a, b,c"}
  Weights: {Type: 'List<Number>', Default: "1,2"}
  Vpc: {Type: 'AWS::EC2::VPC::Id', Default: vpc-1}
  Env: {Type: String, AllowedValues: [prod, dev]}
Resources:
  M: {Type: AWS::AppMesh::Mesh}
)");
  ASSERT_TRUE(t) << t.error().message;
  auto missing = resolveParameters(*t, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message,
            "parameter Env has no value: give it a Default or pass --parameter-overrides "
            "Env=VALUE");
  auto bad = resolveParameters(*t, {{"Env", "test"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message,
            "parameter Env: 'test' is not one of the AllowedValues (prod, dev)");
  auto notnum = resolveParameters(*t, {{"Env", "dev"}, {"Port", "eighty"}});
  ASSERT_FALSE(notnum);
  EXPECT_EQ(notnum.error().message, "parameter Port: 'eighty' is not a number");
  auto unknown = resolveParameters(*t, {{"Env", "dev"}, {"Bogus", "1"}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message,
            "--parameter-overrides: the template has no parameter 'Bogus'");
  auto ok = resolveParameters(*t, {{"Env", "dev"}, {"Port", "9090"}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(toJson(ok->at("Name")), R"("demo")");
  EXPECT_EQ(toJson(ok->at("Port")), "9090");
  EXPECT_EQ(toJson(ok->at("Zones")), R"(["a","b","c"])");
  EXPECT_EQ(toJson(ok->at("Weights")), "[1,2]");
  EXPECT_EQ(toJson(ok->at("Vpc")), R"("vpc-1")");
  EXPECT_EQ(toJson(ok->at("Env")), R"("dev")");
}

TEST(CfnTemplateTest, StructureErrors) {
  auto err = [](std::string_view text) {
    auto t = parseTemplate(text);
    return t ? std::string("(accepted)") : t.error().message;
  };
  EXPECT_EQ(err("Parameters: {}"), "the template has no Resources");
  EXPECT_EQ(err("Resources: {M: {Properties: {}}}"), "resource M: missing Type");
  EXPECT_EQ(err("Resources: {M: {Type: X, Bogus: 1}}"), "resource M: unknown attribute 'Bogus'");
  EXPECT_EQ(err("Resource: {}"), "unknown template section 'Resource'");
  EXPECT_EQ(err("Transform: AWS::Serverless-2016-10-31\nResources: {M: {Type: X}}"),
            "Transform (\"AWS::Serverless-2016-10-31\") is not supported by weft");
  EXPECT_EQ(err("Resources: {M: {Type: X, Properties: {A: !Ref Nope}}}"),
            "resource M references 'Nope', which is neither a parameter nor a resource");
  EXPECT_EQ(err("Resources: {M: {Type: X, Properties: {A: !Sub '${Nope.Arn}'}}}"),
            "resource M references 'Nope', which is neither a parameter nor a resource");
  EXPECT_EQ(err("Resources: {M: {Type: X, DependsOn: Z}}"),
            "resource M: DependsOn names unknown resource 'Z'");
  EXPECT_EQ(err("Resources: {M: {Type: X, Condition: C}}"), "resource M: unknown condition 'C'");
  EXPECT_EQ(err("Resources: {M: {Type: X}}\nOutputs: {O: {Export: {Name: x}}}"),
            "output O: missing Value");
  EXPECT_EQ(err("- a"), "a template must be one YAML or JSON mapping");
}

TEST(CfnOrderTest, DependencyOrderFromRefsGetAttSubAndDependsOn) {
  auto t = parseTemplate(R"(
Resources:
  Route:
    Type: AWS::AppMesh::Route
    Properties:
      MeshName: !GetAtt Mesh.MeshName
      VirtualRouterName: !GetAtt Router.VirtualRouterName
  Service:
    Type: AWS::AppMesh::VirtualService
    Properties:
      MeshName: !Sub '${Mesh.MeshName}'
      VirtualServiceName: !Sub ['${X}', {X: !Ref Node}]
  Router:
    Type: AWS::AppMesh::VirtualRouter
    DependsOn: [Node]
    Properties: {MeshName: !Ref Mesh}
  Node:
    Type: AWS::AppMesh::VirtualNode
    Properties: {MeshName: !GetAtt [Mesh, MeshName]}
  Mesh:
    Type: AWS::AppMesh::Mesh
  Unrelated:
    Type: AWS::SNS::Topic
)");
  ASSERT_TRUE(t) << t.error().message;
  auto order = deployOrder(*t, {});
  ASSERT_TRUE(order) << order.error().message;
  EXPECT_EQ(*order,
            (std::vector<std::string>{"Mesh", "Node", "Service", "Router", "Route", "Unrelated"}))
      << "each resource after what it references; ties in template order";
}

TEST(CfnOrderTest, CyclesAreRejectedNamingTheResources) {
  auto t = parseTemplate(R"(
Resources:
  A: {Type: X, Properties: {P: !Ref B}}
  B: {Type: X, Properties: {P: !GetAtt C.Arn}}
  C: {Type: X, DependsOn: A}
  D: {Type: X}
)");
  ASSERT_TRUE(t) << t.error().message;
  auto order = deployOrder(*t, {});
  ASSERT_FALSE(order);
  EXPECT_EQ(order.error().message, "circular dependency between resources: A -> B -> C -> A");
  auto self = parseTemplate("Resources: {A: {Type: X, Properties: {P: !Ref A}}}");
  ASSERT_TRUE(self);
  auto s = deployOrder(*self, {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "circular dependency: resource A references itself");
}

TEST(CfnAppMeshTest, CamelKeys) {
  EXPECT_EQ(camelKey("Spec"), "spec");
  EXPECT_EQ(camelKey("DNS"), "dns");
  EXPECT_EQ(camelKey("TLS"), "tls");
  EXPECT_EQ(camelKey("HTTP2"), "http2");
  EXPECT_EQ(camelKey("AWSCloudMap"), "awsCloudMap");
  EXPECT_EQ(camelKey("Http2Route"), "http2Route");
  EXPECT_EQ(camelKey("ServiceDiscovery"), "serviceDiscovery");
  EXPECT_EQ(camelKey("already"), "already");
}

TEST(CfnAppMeshTest, VirtualNodePropertiesBecomeAnApiCall) {
  Resource r;
  r.logical_id = "Node";
  r.type = "AWS::AppMesh::VirtualNode";
  Value props = v(R"(
MeshName: demo
Spec:
  Listeners:
    - PortMapping: {Port: "8080", Protocol: http}
      HealthCheck: {Protocol: http, Path: /ping, HealthyThreshold: 2, UnhealthyThreshold: "3",
                    IntervalMillis: 5000, TimeoutMillis: 2000}
      Timeout: {HTTP: {PerRequest: {Unit: s, Value: "15"}}}
  ServiceDiscovery:
    DNS: {Hostname: backend.demo.local}
  Backends:
    - VirtualService: {VirtualServiceName: db.demo.local}
  Logging:
    AccessLog: {File: {Path: /dev/stdout, Format: {Json: [{Key: status, Value: "%RESPONSE_CODE%"}]}}}
Tags: [{Key: team, Value: pay}]
)");
  auto call = appMeshCallFor(r, props, "s1-Node");
  ASSERT_TRUE(call) << call.error().message;
  EXPECT_EQ(call->kind->name, "VirtualNode");
  EXPECT_EQ(call->mesh, "demo");
  EXPECT_EQ(call->name, "s1-Node") << "no VirtualNodeName: the generated name";
  EXPECT_EQ(toJson(call->spec),
            R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},)"
            R"("healthCheck":{"protocol":"http","path":"/ping","healthyThreshold":2,)"
            R"("unhealthyThreshold":3,"intervalMillis":5000,"timeoutMillis":2000},)"
            R"("timeout":{"http":{"perRequest":{"unit":"s","value":15}}}}],)"
            R"("serviceDiscovery":{"dns":{"hostname":"backend.demo.local"}},)"
            R"("backends":[{"virtualService":{"virtualServiceName":"db.demo.local"}}],)"
            R"("logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"json":[)"
            R"({"key":"status","value":"%RESPONSE_CODE%"}]}}}}})");
  EXPECT_EQ(toJson(call->tags), R"([{"key":"team","value":"pay"}])");
}

TEST(CfnAppMeshTest, RoutesNeedTheirRouterAndUnknownPropertiesAreErrors) {
  Resource r;
  r.logical_id = "R";
  r.type = "AWS::AppMesh::Route";
  auto missing = appMeshCallFor(r, v("{MeshName: m, RouteName: r, Spec: {}}"), "g");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "R (AWS::AppMesh::Route): missing property VirtualRouterName");
  auto unknown =
      appMeshCallFor(r, v("{MeshName: m, VirtualRouterName: vr, Spec: {}, Name: x}"), "g");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "R (AWS::AppMesh::Route): unknown property Name");
  auto ok = appMeshCallFor(r,
                           v("{MeshName: m, VirtualRouterName: vr, RouteName: rt, Spec: "
                             "{HttpRoute: {Match: {Prefix: /}, Action: {WeightedTargets: "
                             "[{VirtualNode: n, Weight: '1'}]}}}}"),
                           "g");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->parent, "vr");
  EXPECT_EQ(toJson(ok->spec),
            R"({"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[)"
            R"({"virtualNode":"n","weight":1}]}}})");
  Resource mesh;
  mesh.logical_id = "M";
  mesh.type = "AWS::AppMesh::Mesh";
  auto m = appMeshCallFor(mesh, Value::object(), "s-M");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->name, "s-M");
  EXPECT_EQ(m->mesh, "s-M");
  EXPECT_EQ(toJson(m->spec), "{}");
}

TEST(CfnAppMeshTest, StateFromTheApiAnswer) {
  Value data = v(R"({"meshName": "m", "virtualRouterName": "vr", "routeName": "rt",
    "metadata": {"arn": "arn:aws:appmesh:us-west-2:1:mesh/m/virtualRouter/vr/route/rt",
                 "uid": "u", "meshOwner": "1", "resourceOwner": "2", "version": 1}})");
  ResourceState st = appMeshState(*lookupKind("route"), data);
  EXPECT_EQ(toJson(st.ref), R"("arn:aws:appmesh:us-west-2:1:mesh/m/virtualRouter/vr/route/rt")");
  EXPECT_EQ(toJson(st.attributes),
            R"({"Arn":"arn:aws:appmesh:us-west-2:1:mesh/m/virtualRouter/vr/route/rt",)"
            R"("Uid":"u","MeshName":"m","MeshOwner":"1","ResourceOwner":"2",)"
            R"("RouteName":"rt","VirtualRouterName":"vr"})");
}

}  // namespace
}  // namespace weft::cli::cfn
