// Every validation rule of the App Mesh model, through the API, with the exact answer.
#include <gtest/gtest.h>

#include <string>

#include "control/model/appmesh_test_support.h"

namespace weft::control::appmesh {
namespace {

using testing::Harness;
using testing::summary;

constexpr const char* kNodes = "/v20190125/meshes/m/virtualNodes";
constexpr const char* kServices = "/v20190125/meshes/m/virtualServices";
constexpr const char* kRouters = "/v20190125/meshes/m/virtualRouters";
constexpr const char* kRoutes = "/v20190125/meshes/m/virtualRouter/r1/routes";
constexpr const char* kGateways = "/v20190125/meshes/m/virtualGateways";
constexpr const char* kGatewayRoutes = "/v20190125/meshes/m/virtualGateway/g1/gatewayRoutes";
constexpr const char* kMeshes = "/v20190125/meshes";

struct Case {
  const char* name;
  const char* collection;  // where the create is PUT
  std::string body;        // the whole request body
  std::string expected;    // summary(): "400 BadRequestException: <message>"
};

std::string node(const std::string& spec) {
  return R"({"virtualNodeName":"nx","spec":)" + spec + "}";
}
// A virtual node spec with one http listener on 8080 plus `extra` listener members.
std::string nodeListener(const std::string& extra, const std::string& protocol = "http") {
  return node(R"({"listeners":[{"portMapping":{"port":8080,"protocol":")" + protocol + "\"}" +
              (extra.empty() ? "" : "," + extra) +
              R"(}],"serviceDiscovery":{"dns":{"hostname":"nx.local"}}})");
}
std::string backendTls(const std::string& tls) {
  return node(
      R"({"backends":[{"virtualService":{"virtualServiceName":"s1","clientPolicy":{"tls":)" + tls +
      "}}}]}");
}
std::string route(const std::string& spec) { return R"({"routeName":"rx","spec":)" + spec + "}"; }
std::string httpRoute(const std::string& match, const std::string& extra = "",
                      const std::string& kind = "httpRoute") {
  return route(R"({")" + kind + R"(":{"match":)" + match +
               R"(,"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]})" +
               (extra.empty() ? "" : "," + extra) + "}}");
}
std::string targets(int n, int weight = 1) {
  std::string out = "[";
  for (int i = 0; i < n; ++i)
    out += std::string(i ? "," : "") + R"({"virtualNode":"n1","weight":)" + std::to_string(weight) +
           (n > 1 ? R"(,"port":)" + std::to_string(8000 + i) : "") + "}";
  return out + "]";
}
std::string gatewayRoute(const std::string& http_route) {
  return R"({"gatewayRouteName":"gx","spec":{"httpRoute":)" + http_route + "}}";
}
std::string gwHttp(const std::string& match, const std::string& action_extra = "") {
  return gatewayRoute(R"({"match":)" + match +
                      R"(,"action":{"target":{"virtualService":{"virtualServiceName":"s1"}})" +
                      (action_extra.empty() ? "" : "," + action_extra) + "}}");
}
std::string gateway(const std::string& spec) {
  return R"({"virtualGatewayName":"gx","spec":)" + spec + "}";
}
std::string gatewayListener(const std::string& extra, const std::string& protocol = "http") {
  return gateway(R"({"listeners":[{"portMapping":{"port":8080,"protocol":")" + protocol + "\"}" +
                 (extra.empty() ? "" : "," + extra) + "}]}");
}
std::string repeated(const std::string& item, int n) {
  std::string out = "[";
  for (int i = 0; i < n; ++i) out += (i ? "," : "") + item;
  return out + "]";
}
const std::string kHealth =
    R"("healthCheck":{"protocol":"http","path":"/ping","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2)";
const std::string kOutlier =
    R"("outlierDetection":{"maxServerErrors":5,"maxEjectionPercent":50,"interval":{"value":10,"unit":"s"},"baseEjectionDuration":{"value":30,"unit":"s"})";
const std::string kBad = "400 BadRequestException: ";

const Case kCases[] =
    {
        // ---- mesh ----
        {"MeshNameTooLong", kMeshes, R"({"meshName":")" + std::string(256, 'a') + R"("})",
         kBad + "meshName: length 256 is out of range 1-255"},
        {"MeshNameEmpty", kMeshes, R"({"meshName":""})", kBad + "meshName: must not be empty"},
        {"MeshNameMissing", kMeshes, R"({})", kBad + "meshName: is required"},
        {"MeshEgressFilterEnum", kMeshes,
         R"({"meshName":"x","spec":{"egressFilter":{"type":"DENY"}}})",
         kBad + R"(spec.egressFilter.type: "DENY" is not one of ALLOW_ALL, DROP_ALL)"},
        {"MeshEgressFilterTypeRequired", kMeshes, R"({"meshName":"x","spec":{"egressFilter":{}}})",
         kBad + "spec.egressFilter.type: is required"},
        {"MeshIpPreferenceEnum", kMeshes,
         R"({"meshName":"x","spec":{"serviceDiscovery":{"ipPreference":"IPv5_ONLY"}}})",
         kBad +
             R"(spec.serviceDiscovery.ipPreference: "IPv5_ONLY" is not one of IPv6_PREFERRED, IPv4_PREFERRED, IPv4_ONLY, IPv6_ONLY)"},
        {"UnknownField", kMeshes, R"({"meshName":"x","spec":{"bogus":1}})",
         kBad + "spec.bogus: unknown field"},
        {"NotAnObject", kMeshes, R"([1,2])", kBad + "request body: expected a JSON object"},
        {"TooManyTags", kMeshes,
         R"({"meshName":"x","tags":)" + repeated(R"({"key":"k","value":"v"})", 51) + "}",
         kBad + "tags: has 51 items; at most 50 are allowed"},
        {"TagKeyEmpty", kMeshes, R"({"meshName":"x","tags":[{"key":"","value":""}]})",
         kBad + "tags[0].key: must not be empty"},
        {"TagValueTooLong", kMeshes,
         R"({"meshName":"x","tags":[{"key":"k","value":")" + std::string(257, 'v') + R"("}]})",
         kBad + "tags[0].value: length 257 is above the maximum 256"},
        {"TagKeyTwice", kMeshes,
         R"({"meshName":"x","tags":[{"key":"k","value":""},{"key":"k","value":"v"}]})",
         kBad + R"(tags[1].key: "k" is listed twice)"},

        // ---- virtual node: listeners ----
        {"PortOutOfRange", kNodes,
         node(R"({"listeners":[{"portMapping":{"port":70000,"protocol":"http"}}]})"),
         kBad + "spec.listeners[0].portMapping.port: 70000 is out of range 1-65535"},
        {"PortZero", kNodes,
         node(R"({"listeners":[{"portMapping":{"port":0,"protocol":"http"}}]})"),
         kBad + "spec.listeners[0].portMapping.port: 0 is out of range 1-65535"},
        {"ProtocolEnum", kNodes, nodeListener("", "udp"),
         kBad +
             R"(spec.listeners[0].portMapping.protocol: "udp" is not one of http, tcp, http2, grpc)"},
        {"PortMappingRequired", kNodes, node(R"({"listeners":[{}]})"),
         kBad + "spec.listeners[0].portMapping: is required"},
        {"DuplicateListenerPort", kNodes,
         node(
             R"({"listeners":[{"portMapping":{"port":80,"protocol":"http"}},{"portMapping":{"port":80,"protocol":"tcp"}}],"serviceDiscovery":{"dns":{"hostname":"h"}}})"),
         kBad + "spec.listeners[1].portMapping.port: port 80 is already used by "
                "spec.listeners[0].portMapping.port"},
        {"ServiceDiscoveryRequiredWithListeners", kNodes,
         node(R"({"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]})"),
         kBad + "spec.serviceDiscovery: is required when the virtual node has listeners"},
        {"SpecRequired", kNodes, R"({"virtualNodeName":"nx"})", kBad + "spec: is required"},
        {"NodeNameTooLong", kNodes,
         R"({"virtualNodeName":")" + std::string(300, 'n') + R"(","spec":{}})",
         kBad + "virtualNodeName: length 300 is out of range 1-255"},
        // health check
        {"HealthIntervalLow", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"tcp","intervalMillis":4999,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.intervalMillis: 4999 is out of range 5000-300000"},
        {"HealthIntervalHigh", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"tcp","intervalMillis":300001,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.intervalMillis: 300001 is out of range 5000-300000"},
        {"HealthTimeoutHigh", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"tcp","intervalMillis":5000,"timeoutMillis":60001,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.timeoutMillis: 60001 is out of range 2000-60000"},
        {"HealthTimeoutLow", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"tcp","intervalMillis":5000,"timeoutMillis":1999,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.timeoutMillis: 1999 is out of range 2000-60000"},
        {"HealthyThresholdLow", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"tcp","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":1,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.healthyThreshold: 1 is out of range 2-10"},
        {"UnhealthyThresholdHigh", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"tcp","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":11})"),
         kBad + "spec.listeners[0].healthCheck.unhealthyThreshold: 11 is out of range 2-10"},
        {"HealthProtocolRequired", kNodes,
         nodeListener(
             R"("healthCheck":{"intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.protocol: is required"},
        {"HealthHttpNeedsPath", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"http","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.path: is required when protocol is http"},
        {"HealthPortMustMatch", kNodes, nodeListener(kHealth + R"(,"port":9090})"),
         kBad + "spec.listeners[0].healthCheck.port: 9090 does not match the listener's port 8080"},
        {"HealthPathSlash", kNodes,
         nodeListener(
             R"("healthCheck":{"protocol":"http","path":"ping","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2})"),
         kBad + R"(spec.listeners[0].healthCheck.path: "ping" must start with /)"},
        // timeouts, connection pools, outlier detection
        {"TimeoutProtocolMismatch", kNodes,
         nodeListener(R"("timeout":{"tcp":{"idle":{"value":1,"unit":"s"}}})"),
         kBad + "spec.listeners[0].timeout.tcp: does not match the listener's protocol http"},
        {"TimeoutUnionTwo", kNodes, nodeListener(R"("timeout":{"http":{},"http2":{}})"),
         kBad + "spec.listeners[0].timeout: exactly one of grpc, http, http2, tcp must be set, but "
                "http and http2 are both set"},
        {"TimeoutUnionNone", kNodes, nodeListener(R"("timeout":{})"),
         kBad + "spec.listeners[0].timeout: exactly one of grpc, http, http2, tcp must be set"},
        {"DurationNeedsUnit", kNodes,
         nodeListener(R"("timeout":{"http":{"perRequest":{"value":15}}})"),
         kBad + "spec.listeners[0].timeout.http.perRequest.unit: is required"},
        {"DurationUnitEnum", kNodes,
         nodeListener(R"("timeout":{"http":{"perRequest":{"value":15,"unit":"m"}}})"),
         kBad + R"(spec.listeners[0].timeout.http.perRequest.unit: "m" is not one of s, ms)"},
        {"DurationNegative", kNodes,
         nodeListener(R"("timeout":{"http":{"idle":{"value":-1,"unit":"s"}}})"),
         kBad + "spec.listeners[0].timeout.http.idle.value: -1 is below the minimum 0"},
        {"ConnectionPoolMinimum", kNodes,
         nodeListener(R"("connectionPool":{"http":{"maxConnections":0}})"),
         kBad + "spec.listeners[0].connectionPool.http.maxConnections: 0 is below the minimum 1"},
        {"ConnectionPoolPendingMinimum", kNodes,
         nodeListener(R"("connectionPool":{"http":{"maxConnections":1,"maxPendingRequests":0}})"),
         kBad +
             "spec.listeners[0].connectionPool.http.maxPendingRequests: 0 is below the minimum 1"},
        {"ConnectionPoolHttp2Minimum", kNodes,
         nodeListener(R"("connectionPool":{"http2":{"maxRequests":0}})", "http2"),
         kBad + "spec.listeners[0].connectionPool.http2.maxRequests: 0 is below the minimum 1"},
        {"ConnectionPoolProtocolMismatch", kNodes,
         nodeListener(R"("connectionPool":{"tcp":{"maxConnections":1}})"),
         kBad +
             "spec.listeners[0].connectionPool.tcp: does not match the listener's protocol http"},
        {"OutlierEjectionPercent", kNodes,
         nodeListener(
             R"("outlierDetection":{"maxServerErrors":5,"maxEjectionPercent":101,"interval":{"value":10,"unit":"s"},"baseEjectionDuration":{"value":30,"unit":"s"}})"),
         kBad + "spec.listeners[0].outlierDetection.maxEjectionPercent: 101 is out of range 0-100"},
        {"OutlierServerErrors", kNodes,
         nodeListener(
             R"("outlierDetection":{"maxServerErrors":0,"maxEjectionPercent":10,"interval":{"value":10,"unit":"s"},"baseEjectionDuration":{"value":30,"unit":"s"}})"),
         kBad + "spec.listeners[0].outlierDetection.maxServerErrors: 0 is below the minimum 1"},
        {"OutlierIntervalRequired", kNodes,
         nodeListener(
             R"("outlierDetection":{"maxServerErrors":5,"maxEjectionPercent":10,"baseEjectionDuration":{"value":30,"unit":"s"}})"),
         kBad + "spec.listeners[0].outlierDetection.interval: is required"},
        // tls
        {"TlsModeEnum", kNodes,
         nodeListener(
             R"("tls":{"mode":"SOMETIMES","certificate":{"file":{"certificateChain":"/c","privateKey":"/k"}}})"),
         kBad +
             R"(spec.listeners[0].tls.mode: "SOMETIMES" is not one of STRICT, PERMISSIVE, DISABLED)"},
        {"TlsCertificateRequired", kNodes, nodeListener(R"("tls":{"mode":"STRICT"})"),
         kBad + "spec.listeners[0].tls.certificate: is required"},
        {"TlsCertificateUnion", kNodes, nodeListener(R"("tls":{"mode":"STRICT","certificate":{}})"),
         kBad + "spec.listeners[0].tls.certificate: exactly one of acm, file, sds must be set"},
        {"TlsValidationTrustUnion", kNodes,
         nodeListener(
             R"("tls":{"mode":"STRICT","certificate":{"sds":{"secretName":"s"}},"validation":{"trust":{"file":{"certificateChain":"/c"},"sds":{"secretName":"x"}}}})"),
         kBad + "spec.listeners[0].tls.validation.trust: exactly one of file, sds must be set, but "
                "file and sds are both set"},
        // backends and client policy
        {"BackendUnion", kNodes, node(R"({"backends":[{}]})"),
         kBad + "spec.backends[0]: exactly one of virtualService must be set"},
        {"BackendTwice", kNodes,
         node(
             R"({"backends":[{"virtualService":{"virtualServiceName":"a"}},{"virtualService":{"virtualServiceName":"a"}}]})"),
         kBad + R"(spec.backends[1].virtualService.virtualServiceName: "a" is listed twice)"},
        {"ClientTlsValidationRequired", kNodes, backendTls(R"({"enforce":true})"),
         kBad + "spec.backends[0].virtualService.clientPolicy.tls.validation: is required"},
        {"ClientTlsTooManyCAs", kNodes,
         backendTls(
             R"({"validation":{"trust":{"acm":{"certificateAuthorityArns":["a","b","c","d"]}}}})"),
         kBad + "spec.backends[0].virtualService.clientPolicy.tls.validation.trust.acm."
                "certificateAuthorityArns: has 4 items; at most 3 are allowed"},
        {"ClientTlsNoCAs", kNodes, backendTls(R"({"validation":{"trust":{"acm":{}}}})"),
         kBad + "spec.backends[0].virtualService.clientPolicy.tls.validation.trust.acm."
                "certificateAuthorityArns: is required"},
        {"ClientTlsPort", kNodes,
         node(
             R"({"backendDefaults":{"clientPolicy":{"tls":{"ports":[0],"validation":{"trust":{"file":{"certificateChain":"/c"}}}}}}})"),
         kBad + "spec.backendDefaults.clientPolicy.tls.ports[0]: 0 is out of range 1-65535"},
        {"ClientTlsSanRequiresMatch", kNodes,
         backendTls(
             R"({"validation":{"trust":{"file":{"certificateChain":"/c"}},"subjectAlternativeNames":{}}})"),
         kBad + "spec.backends[0].virtualService.clientPolicy.tls.validation."
                "subjectAlternativeNames.match: is required"},
        // service discovery
        {"ServiceDiscoveryUnion", kNodes,
         node(
             R"({"serviceDiscovery":{"dns":{"hostname":"h"},"awsCloudMap":{"namespaceName":"n","serviceName":"s"}}})"),
         kBad + "spec.serviceDiscovery: exactly one of awsCloudMap, dns must be set, but "
                "awsCloudMap and dns are both set"},
        {"DnsHostnameRequired", kNodes, node(R"({"serviceDiscovery":{"dns":{}}})"),
         kBad + "spec.serviceDiscovery.dns.hostname: is required"},
        {"DnsResponseTypeEnum", kNodes,
         node(R"({"serviceDiscovery":{"dns":{"hostname":"h","responseType":"BOTH"}}})"),
         kBad +
             R"(spec.serviceDiscovery.dns.responseType: "BOTH" is not one of LOADBALANCER, ENDPOINTS)"},
        {"CloudMapAttributePattern", kNodes,
         node(
             R"({"serviceDiscovery":{"awsCloudMap":{"namespaceName":"n","serviceName":"s","attributes":[{"key":"a b","value":"v"}]}}})"),
         kBad +
             R"(spec.serviceDiscovery.awsCloudMap.attributes[0].key: "a b" does not match the pattern ^[a-zA-Z0-9!-~]+$)"},
        // logging
        {"AccessLogPathEmpty", kNodes, node(R"({"logging":{"accessLog":{"file":{"path":""}}}})"),
         kBad + "spec.logging.accessLog.file.path: must not be empty"},
        {"AccessLogFormatUnion", kNodes,
         node(
             R"({"logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"text":"%START_TIME%","json":[{"key":"a","value":"b"}]}}}}})"),
         kBad + "spec.logging.accessLog.file.format: exactly one of json, text must be set, but "
                "json and text are both set"},
        {"AccessLogJsonKeyTooLong", kNodes,
         node(
             R"({"logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"json":[{"key":")" +
             std::string(101, 'k') + R"(","value":"b"}]}}}}})"),
         kBad + "spec.logging.accessLog.file.format.json[0].key: length 101 is out of range 1-100"},

        // ---- virtual service ----
        {"ProviderUnion", kServices,
         R"({"virtualServiceName":"sx","spec":{"provider":{"virtualNode":{"virtualNodeName":"n1"},"virtualRouter":{"virtualRouterName":"r1"}}}})",
         kBad + "spec.provider: exactly one of virtualNode, virtualRouter must be set, but "
                "virtualNode and virtualRouter are both set"},
        {"ProviderNodeMissing", kServices,
         R"({"virtualServiceName":"sx","spec":{"provider":{"virtualNode":{"virtualNodeName":"ghost"}}}})",
         "404 NotFoundException: spec.provider.virtualNode.virtualNodeName: virtual node \"ghost\" "
         "in mesh \"m\" not found"},
        {"ProviderRouterMissing", kServices,
         R"({"virtualServiceName":"sx","spec":{"provider":{"virtualRouter":{"virtualRouterName":"ghost"}}}})",
         "404 NotFoundException: spec.provider.virtualRouter.virtualRouterName: virtual router "
         "\"ghost\" in mesh \"m\" not found"},

        // ---- virtual router ----
        {"RouterProtocolEnum", kRouters,
         R"({"virtualRouterName":"rx","spec":{"listeners":[{"portMapping":{"port":80,"protocol":"udp"}}]}})",
         kBad +
             R"(spec.listeners[0].portMapping.protocol: "udp" is not one of http, tcp, http2, grpc)"},
        {"RouterDuplicatePort", kRouters,
         R"({"virtualRouterName":"rx","spec":{"listeners":[{"portMapping":{"port":80,"protocol":"http"}},{"portMapping":{"port":80,"protocol":"grpc"}}]}})",
         kBad + "spec.listeners[1].portMapping.port: port 80 is already used by "
                "spec.listeners[0].portMapping.port"},

        // ---- route ----
        {"RoutePriority", kRoutes,
         route(
             R"({"priority":1001,"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]}}})"),
         kBad + "spec.priority: 1001 is out of range 0-1000"},
        {"RouteNoKind", kRoutes, route("{}"),
         kBad + "spec: exactly one of grpcRoute, http2Route, httpRoute, tcpRoute must be set"},
        {"RouteTwoKinds", kRoutes,
         route(
             R"({"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]}},"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]}}})"),
         kBad + "spec: exactly one of grpcRoute, http2Route, httpRoute, tcpRoute must be set"},
        {"TooManyTargets", kRoutes,
         route(R"({"tcpRoute":{"action":{"weightedTargets":)" + targets(11) + "}}}"),
         kBad + "spec.tcpRoute.action.weightedTargets: has 11 items; at most 10 are allowed"},
        {"NoTargets", kRoutes, route(R"({"tcpRoute":{"action":{"weightedTargets":[]}}})"),
         kBad + "spec.tcpRoute.action.weightedTargets: is required"},
        {"WeightHigh", kRoutes,
         route(R"({"tcpRoute":{"action":{"weightedTargets":)" + targets(1, 101) + "}}}"),
         kBad + "spec.tcpRoute.action.weightedTargets[0].weight: 101 is out of range 0-100"},
        {"WeightsAllZero", kRoutes,
         route(R"({"tcpRoute":{"action":{"weightedTargets":)" + targets(2, 0) + "}}}"),
         kBad + "spec.tcpRoute.action.weightedTargets: the weights sum to 0; at least one must be "
                "above 0"},
        {"TargetTwice", kRoutes,
         route(
             R"({"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"n1","weight":1},{"virtualNode":"n1","weight":2}]}}})"),
         kBad + R"(spec.tcpRoute.action.weightedTargets[1].virtualNode: "n1" is listed twice)"},
        {"TargetPort", kRoutes,
         route(
             R"({"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"n1","weight":1,"port":65536}]}}})"),
         kBad + "spec.tcpRoute.action.weightedTargets[0].port: 65536 is out of range 1-65535"},
        {"TargetMissing", kRoutes,
         route(
             R"({"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"ghost","weight":1}]}}})"),
         "404 NotFoundException: spec.tcpRoute.action.weightedTargets[0].virtualNode: virtual node "
         "\"ghost\" in mesh \"m\" not found"},
        {"PrefixSlash", kRoutes, httpRoute(R"({"prefix":"api"})"),
         kBad + R"(spec.httpRoute.match.prefix: "api" must start with /)"},
        {"PrefixAndPath", kRoutes, httpRoute(R"({"prefix":"/","path":{"exact":"/a"}})"),
         kBad + "spec.httpRoute.match: exactly one of prefix, path must be set"},
        {"NoPrefixNorPath", kRoutes, httpRoute(R"({"method":"GET"})"),
         kBad + "spec.httpRoute.match: exactly one of prefix, path must be set"},
        {"PathExactSlash", kRoutes, httpRoute(R"({"path":{"exact":"a"}})"),
         kBad + R"(spec.httpRoute.match.path.exact: "a" must start with /)"},
        {"PathBoth", kRoutes, httpRoute(R"({"path":{"exact":"/a","regex":"/b"}})"),
         kBad + "spec.httpRoute.match.path: exactly one of exact, regex must be set"},
        {"PathRegexInvalid", kRoutes, httpRoute(R"({"path":{"regex":"(a"}})"),
         kBad +
             R"(spec.httpRoute.match.path.regex: "(a" is not a valid regular expression: missing ): (a)"},
        {"PathTooLong", kRoutes,
         httpRoute(R"({"path":{"exact":"/)" + std::string(255, 'a') + R"("}})"),
         kBad + "spec.httpRoute.match.path.exact: length 256 is out of range 1-255"},
        {"MethodEnum", kRoutes, httpRoute(R"({"prefix":"/","method":"FETCH"})"),
         kBad +
             R"(spec.httpRoute.match.method: "FETCH" is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)"},
        {"SchemeOnlyHttp2", kRoutes, httpRoute(R"({"prefix":"/","scheme":"https"})"),
         kBad + "spec.httpRoute.match.scheme: is only allowed in an http2Route"},
        {"SchemeEnum", kRoutes, httpRoute(R"({"prefix":"/","scheme":"ftp"})", "", "http2Route"),
         kBad + R"(spec.http2Route.match.scheme: "ftp" is not one of http, https)"},
        {"MatchPort", kRoutes, httpRoute(R"({"prefix":"/","port":0})"),
         kBad + "spec.httpRoute.match.port: 0 is out of range 1-65535"},
        {"TooManyHeaders", kRoutes,
         httpRoute(R"({"prefix":"/","headers":)" + repeated(R"({"name":"x"})", 11) + "}"),
         kBad + "spec.httpRoute.match.headers: has 11 items; at most 10 are allowed"},
        {"HeaderNameTooLong", kRoutes,
         httpRoute(R"({"prefix":"/","headers":[{"name":")" + std::string(51, 'h') + R"("}]})"),
         kBad + "spec.httpRoute.match.headers[0].name: length 51 is out of range 1-50"},
        {"HeaderMatchUnion", kRoutes,
         httpRoute(R"({"prefix":"/","headers":[{"name":"x","match":{"exact":"a","prefix":"b"}}]})"),
         kBad + "spec.httpRoute.match.headers[0].match: exactly one of exact, prefix, range, "
                "regex, suffix must be set, but exact and prefix are both set"},
        {"HeaderRangeOrder", kRoutes,
         httpRoute(
             R"({"prefix":"/","headers":[{"name":"x","match":{"range":{"start":10,"end":10}}}]})"),
         kBad + "spec.httpRoute.match.headers[0].match.range: start must be less than end"},
        {"HeaderRangeIntegral", kRoutes,
         httpRoute(
             R"({"prefix":"/","headers":[{"name":"x","match":{"range":{"start":1.5,"end":10}}}]})"),
         kBad + "spec.httpRoute.match.headers[0].match.range.start: must be an integer"},
        {"HeaderRangeRequired", kRoutes,
         httpRoute(R"({"prefix":"/","headers":[{"name":"x","match":{"range":{"start":1}}}]})"),
         kBad + "spec.httpRoute.match.headers[0].match.range.end: is required"},
        {"HeaderRegexInvalid", kRoutes,
         httpRoute(R"({"prefix":"/","headers":[{"name":"x","match":{"regex":"[a"}}]})"),
         kBad +
             R"(spec.httpRoute.match.headers[0].match.regex: "[a" is not a valid regular expression: missing ]: [a)"},
        {"TooManyQueryParameters", kRoutes,
         httpRoute(R"({"prefix":"/","queryParameters":)" + repeated(R"({"name":"q"})", 11) + "}"),
         kBad + "spec.httpRoute.match.queryParameters: has 11 items; at most 10 are allowed"},
        {"QueryParameterName", kRoutes,
         httpRoute(R"({"prefix":"/","queryParameters":[{"match":{"exact":"v"}}]})"),
         kBad + "spec.httpRoute.match.queryParameters[0].name: is required"},
        {"RetryNeedsEvents", kRoutes,
         httpRoute(R"({"prefix":"/"})",
                   R"("retryPolicy":{"maxRetries":2,"perRetryTimeout":{"value":1,"unit":"s"}})"),
         kBad + "spec.httpRoute.retryPolicy: at least one of httpRetryEvents, tcpRetryEvents is "
                "required"},
        {"RetryMaxRetries", kRoutes,
         httpRoute(
             R"({"prefix":"/"})",
             R"("retryPolicy":{"maxRetries":-1,"perRetryTimeout":{"value":1,"unit":"s"},"httpRetryEvents":["server-error"]})"),
         kBad + "spec.httpRoute.retryPolicy.maxRetries: -1 is below the minimum 0"},
        {"RetryPerTryTimeoutRequired", kRoutes,
         httpRoute(R"({"prefix":"/"})",
                   R"("retryPolicy":{"maxRetries":1,"httpRetryEvents":["server-error"]})"),
         kBad + "spec.httpRoute.retryPolicy.perRetryTimeout: is required"},
        {"RetryHttpEventEnum", kRoutes,
         httpRoute(
             R"({"prefix":"/"})",
             R"("retryPolicy":{"maxRetries":1,"perRetryTimeout":{"value":1,"unit":"s"},"httpRetryEvents":["server-error","bad"]})"),
         kBad +
             R"(spec.httpRoute.retryPolicy.httpRetryEvents[1]: "bad" is not one of server-error, gateway-error, client-error, stream-error)"},
        {"RetryTcpEventEnum", kRoutes,
         httpRoute(
             R"({"prefix":"/"})",
             R"("retryPolicy":{"maxRetries":1,"perRetryTimeout":{"value":1,"unit":"s"},"tcpRetryEvents":["timeout"]})"),
         kBad +
             R"(spec.httpRoute.retryPolicy.tcpRetryEvents[0]: "timeout" is not one of connection-error)"},
        {"RetryTcpEventsMax", kRoutes,
         httpRoute(
             R"({"prefix":"/"})",
             R"("retryPolicy":{"maxRetries":1,"perRetryTimeout":{"value":1,"unit":"s"},"tcpRetryEvents":["connection-error","connection-error"]})"),
         kBad + "spec.httpRoute.retryPolicy.tcpRetryEvents: has 2 items; at most 1 are allowed"},
        {"GrpcMethodNeedsService", kRoutes,
         route(
             R"({"grpcRoute":{"match":{"methodName":"Get"},"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]}}})"),
         kBad + "spec.grpcRoute.match.methodName: requires match.serviceName"},
        {"GrpcRetryEventEnum", kRoutes, route(R"({"grpcRoute":{"match":{},"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]},"retryPolicy":{"maxRetries":1,"perRetryTimeout":{"value":1,"unit":"s"},"grpcRetryEvents":["oops"]}}})"),
         kBad +
             R"(spec.grpcRoute.retryPolicy.grpcRetryEvents[0]: "oops" is not one of cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)"},
        {"GrpcRetryNeedsEvents", kRoutes,
         route(
             R"({"grpcRoute":{"match":{},"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]},"retryPolicy":{"maxRetries":1,"perRetryTimeout":{"value":1,"unit":"s"}}}})"),
         kBad + "spec.grpcRoute.retryPolicy: at least one of grpcRetryEvents, httpRetryEvents, "
                "tcpRetryEvents is required"},
        {"GrpcMetadataMax", kRoutes,
         route(R"({"grpcRoute":{"match":{"metadata":)" + repeated(R"({"name":"m"})", 11) +
               R"(},"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]}}})"),
         kBad + "spec.grpcRoute.match.metadata: has 11 items; at most 10 are allowed"},
        {"RouteMatchRequired", kRoutes,
         route(R"({"httpRoute":{"action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]}}})"),
         kBad + "spec.httpRoute.match: is required"},
        {"RouteNameTooLong", kRoutes,
         R"({"routeName":")" + std::string(256, 'r') + R"(","spec":{}})",
         kBad + "routeName: length 256 is out of range 1-255"},

        // ---- virtual gateway ----
        {"GatewayListenersRequired", kGateways, gateway(R"({"listeners":[]})"),
         kBad + "spec.listeners: is required"},
        {"GatewayProtocolEnum", kGateways, gatewayListener("", "tcp"),
         kBad + R"(spec.listeners[0].portMapping.protocol: "tcp" is not one of http, http2, grpc)"},
        {"GatewayHealthThreshold", kGateways,
         gatewayListener(
             R"("healthCheck":{"protocol":"http","path":"/","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":11,"unhealthyThreshold":2})"),
         kBad + "spec.listeners[0].healthCheck.healthyThreshold: 11 is out of range 2-10"},
        {"GatewayPoolMismatch", kGateways,
         gatewayListener(R"("connectionPool":{"grpc":{"maxRequests":5}})"),
         kBad +
             "spec.listeners[0].connectionPool.grpc: does not match the listener's protocol http"},
        {"GatewayPoolUnion", kGateways, gatewayListener(R"("connectionPool":{})"),
         kBad + "spec.listeners[0].connectionPool: exactly one of grpc, http, http2 must be set"},
        {"GatewayTlsCertificateUnion", kGateways,
         gatewayListener(
             R"("tls":{"mode":"STRICT","certificate":{"acm":{"certificateArn":"a"},"sds":{"secretName":"s"}}})"),
         kBad + "spec.listeners[0].tls.certificate: exactly one of acm, file, sds must be set, but "
                "acm and sds are both set"},

        // ---- gateway route ----
        {"GatewayRouteNoKind", kGatewayRoutes, R"({"gatewayRouteName":"gx","spec":{}})",
         kBad + "spec: exactly one of grpcRoute, http2Route, httpRoute must be set"},
        {"GatewayRoutePriority", kGatewayRoutes,
         R"({"gatewayRouteName":"gx","spec":{"priority":-1,"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"s1"}}}}}})",
         kBad + "spec.priority: -1 is out of range 0-1000"},
        {"GatewayRoutePrefixSlash", kGatewayRoutes, gwHttp(R"({"prefix":"x"})"),
         kBad + R"(spec.httpRoute.match.prefix: "x" must start with /)"},
        {"GatewayRouteMatchEmpty", kGatewayRoutes, gwHttp(R"({})"),
         kBad + "spec.httpRoute.match: one of prefix, path, hostname is required"},
        {"GatewayRoutePrefixAndPath", kGatewayRoutes,
         gwHttp(R"({"prefix":"/","path":{"exact":"/a"}})"),
         kBad + "spec.httpRoute.match: at most one of prefix, path may be set"},
        {"GatewayRouteHostnameBoth", kGatewayRoutes,
         gwHttp(R"({"hostname":{"exact":"a.example","suffix":".example"}})"),
         kBad + "spec.httpRoute.match.hostname: exactly one of exact, suffix must be set"},
        {"GatewayRouteHostnameTooLong", kGatewayRoutes,
         gwHttp(R"({"hostname":{"exact":")" + std::string(254, 'h') + R"("}})"),
         kBad + "spec.httpRoute.match.hostname.exact: length 254 is out of range 1-253"},
        {"GatewayRouteRewritePrefixNeedsPrefixMatch", kGatewayRoutes,
         gwHttp(R"({"path":{"exact":"/a"}})", R"("rewrite":{"prefix":{"value":"/b/"}})"),
         kBad + "spec.httpRoute.action.rewrite.prefix: requires match.prefix"},
        {"GatewayRouteRewritePrefixOneOf", kGatewayRoutes,
         gwHttp(R"({"prefix":"/a/"})",
                R"("rewrite":{"prefix":{"value":"/b/","defaultPrefix":"ENABLED"}})"),
         kBad + "spec.httpRoute.action.rewrite.prefix: exactly one of defaultPrefix, value must be "
                "set"},
        {"GatewayRouteRewriteDefaultEnum", kGatewayRoutes,
         gwHttp(R"({"prefix":"/a/"})", R"("rewrite":{"prefix":{"defaultPrefix":"MAYBE"}})"),
         kBad +
             R"(spec.httpRoute.action.rewrite.prefix.defaultPrefix: "MAYBE" is not one of ENABLED, DISABLED)"},
        {"GatewayRouteRewritePathNeedsPathMatch", kGatewayRoutes,
         gwHttp(R"({"prefix":"/a/"})", R"("rewrite":{"path":{"exact":"/b"}})"),
         kBad + "spec.httpRoute.action.rewrite.path: requires match.path"},
        {"GatewayRouteHostnameRewriteEnum", kGatewayRoutes,
         gwHttp(R"({"prefix":"/"})", R"("rewrite":{"hostname":{"defaultTargetHostname":"ON"}})"),
         kBad +
             R"(spec.httpRoute.action.rewrite.hostname.defaultTargetHostname: "ON" is not one of ENABLED, DISABLED)"},
        {"GatewayRouteTargetPort", kGatewayRoutes,
         gatewayRoute(
             R"({"match":{"prefix":"/"},"action":{"target":{"port":0,"virtualService":{"virtualServiceName":"s1"}}}})"),
         kBad + "spec.httpRoute.action.target.port: 0 is out of range 1-65535"},
        {"GatewayRouteTargetMissing", kGatewayRoutes,
         gatewayRoute(
             R"({"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"ghost"}}}})"),
         "404 NotFoundException: spec.httpRoute.action.target.virtualService.virtualServiceName: "
         "virtual service \"ghost\" in mesh \"m\" not found"},
        {"GatewayRouteGrpcMetadataMax", kGatewayRoutes,
         R"({"gatewayRouteName":"gx","spec":{"grpcRoute":{"match":{"serviceName":"x","metadata":)" +
             repeated(R"({"name":"m"})", 11) +
             R"(},"action":{"target":{"virtualService":{"virtualServiceName":"s1"}}}}}})",
         kBad + "spec.grpcRoute.match.metadata: has 11 items; at most 10 are allowed"},
        {"GatewayRouteHeadersMax", kGatewayRoutes,
         gwHttp(R"({"prefix":"/","headers":)" + repeated(R"({"name":"h"})", 11) + "}"),
         kBad + "spec.httpRoute.match.headers: has 11 items; at most 10 are allowed"},
};

class ValidationTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    ASSERT_EQ(summary(h_.call("PUT", kMeshes, R"({"meshName":"m"})")), "200");
    ASSERT_EQ(summary(h_.call("PUT", kNodes, R"({"virtualNodeName":"n1","spec":{}})")), "200");
    ASSERT_EQ(summary(h_.call("PUT", kServices, R"({"virtualServiceName":"s1","spec":{}})")),
              "200");
    ASSERT_EQ(
        summary(h_.call(
            "PUT", kRouters,
            R"({"virtualRouterName":"r1","spec":{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]}})")),
        "200");
    ASSERT_EQ(
        summary(h_.call(
            "PUT", kGateways,
            R"({"virtualGatewayName":"g1","spec":{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]}})")),
        "200");
  }
  Harness h_;
};

TEST_P(ValidationTest, AnswersTheExactError) {
  const Case& c = GetParam();
  ApiResponse r = h_.call("PUT", c.collection, c.body);
  EXPECT_EQ(summary(r), c.expected) << "request body: " << c.body;
}

INSTANTIATE_TEST_SUITE_P(AppMesh, ValidationTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

// The valid counterparts of the rules above are accepted (so the rules do not over-reject).
TEST(ValidationAccepts, RichValidSpecs) {
  Harness h;
  ASSERT_EQ(
      summary(h.call(
          "PUT", kMeshes,
          R"({"meshName":"m","spec":{"egressFilter":{"type":"ALLOW_ALL"},"serviceDiscovery":{"ipPreference":"IPv4_ONLY"}}})")),
      "200");
  ASSERT_EQ(summary(h.call("PUT", kServices, R"({"virtualServiceName":"s1","spec":{}})")), "200");
  std::string node_spec =
      R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},)" + kHealth + "}," +
      kOutlier + "}" +
      R"(,"timeout":{"http":{"perRequest":{"value":15,"unit":"s"},"idle":{"value":300,"unit":"s"}}},)"
      R"("connectionPool":{"http":{"maxConnections":100,"maxPendingRequests":10}},)"
      R"("tls":{"mode":"PERMISSIVE","certificate":{"file":{"certificateChain":"/c.pem","privateKey":"/k.pem"}},)"
      R"("validation":{"trust":{"sds":{"secretName":"ca"}},"subjectAlternativeNames":{"match":{"exact":["a.local"]}}}}},)"
      R"({"portMapping":{"port":9090,"protocol":"tcp"},"timeout":{"tcp":{"idle":{"value":0,"unit":"ms"}}}}],)"
      R"("serviceDiscovery":{"awsCloudMap":{"namespaceName":"ns","serviceName":"svc","attributes":[{"key":"stage","value":"prod"}],"ipPreference":"IPv6_PREFERRED"}},)"
      R"("backends":[{"virtualService":{"virtualServiceName":"s1","clientPolicy":{"tls":{"enforce":true,"ports":[443],)"
      R"("certificate":{"sds":{"secretName":"me"}},"validation":{"trust":{"acm":{"certificateAuthorityArns":["arn:aws:acm-pca:us-west-2:1:certificate-authority/x"]}}}}}}}],)"
      R"("backendDefaults":{"clientPolicy":{"tls":{"validation":{"trust":{"file":{"certificateChain":"/ca.pem"}}}}}},)"
      R"("logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"json":[{"key":"status","value":"%RESPONSE_CODE%"}]}}}}})";
  EXPECT_EQ(summary(h.call("PUT", kNodes, R"({"virtualNodeName":"n1","spec":)" + node_spec + "}")),
            "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kRouters,
          R"({"virtualRouterName":"r1","spec":{"listeners":[{"portMapping":{"port":80,"protocol":"http2"}}]}})")),
      "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kRoutes,
          R"({"routeName":"a","spec":{"priority":0,"http2Route":{"match":{"path":{"regex":"/api/.*"},"method":"POST","scheme":"https","port":80,)"
          R"("headers":[{"name":"x-v","invert":true,"match":{"range":{"start":1,"end":5}}},{"name":"x-p"}],)"
          R"("queryParameters":[{"name":"q","match":{"exact":"1"}}]},)"
          R"("action":{"weightedTargets":[{"virtualNode":"n1","weight":0,"port":8080},{"virtualNode":"n1","weight":100,"port":9090}]},)"
          R"("retryPolicy":{"maxRetries":0,"perRetryTimeout":{"value":2,"unit":"s"},"httpRetryEvents":["server-error","gateway-error","client-error","stream-error"],"tcpRetryEvents":["connection-error"]},)"
          R"("timeout":{"perRequest":{"value":0,"unit":"ms"}}}}})")),
      "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kRoutes,
          R"({"routeName":"g","spec":{"priority":1000,"grpcRoute":{"match":{"serviceName":"pkg.Svc","methodName":"Get","metadata":[{"name":"m","match":{"suffix":"x"}}]},)"
          R"("action":{"weightedTargets":[{"virtualNode":"n1","weight":1}]},"retryPolicy":{"maxRetries":3,"perRetryTimeout":{"value":1,"unit":"s"},"grpcRetryEvents":["unavailable"]}}}})")),
      "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kGateways,
          R"({"virtualGatewayName":"g1","spec":{"listeners":[{"portMapping":{"port":443,"protocol":"http"},)"
          R"("connectionPool":{"http":{"maxConnections":10}},"healthCheck":{"protocol":"http","path":"/","intervalMillis":300000,"timeoutMillis":60000,"healthyThreshold":10,"unhealthyThreshold":10}}],)"
          R"("logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"text":"%START_TIME%"}}}}}})")),
      "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kGatewayRoutes,
          R"({"gatewayRouteName":"a","spec":{"httpRoute":{"match":{"prefix":"/a/","hostname":{"suffix":".example.com"},"method":"GET"},)"
          R"("action":{"target":{"virtualService":{"virtualServiceName":"s1"},"port":80},"rewrite":{"prefix":{"value":"/b/"},"hostname":{"defaultTargetHostname":"DISABLED"}}}}}})")),
      "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kGatewayRoutes,
          R"({"gatewayRouteName":"b","spec":{"http2Route":{"match":{"path":{"exact":"/x"}},)"
          R"("action":{"target":{"virtualService":{"virtualServiceName":"s1"}},"rewrite":{"path":{"exact":"/y"}}}}}})")),
      "200");
  EXPECT_EQ(
      summary(h.call(
          "PUT", kGatewayRoutes,
          R"({"gatewayRouteName":"c","spec":{"grpcRoute":{"match":{"serviceName":"pkg.Svc","hostname":{"exact":"a.example.com"}},)"
          R"("action":{"target":{"virtualService":{"virtualServiceName":"s1"}}}}}})")),
      "200");
}

TEST(ValidationQuota, BackendsPerVirtualNode) {
  Options options;
  options.quotas.backends_per_virtual_node = 2;
  Harness h(options);
  ASSERT_EQ(summary(h.call("PUT", kMeshes, R"({"meshName":"m"})")), "200");
  std::string backends =
      R"([{"virtualService":{"virtualServiceName":"a"}},{"virtualService":{"virtualServiceName":"b"}},{"virtualService":{"virtualServiceName":"c"}}])";
  EXPECT_EQ(summary(h.call("PUT", kNodes, node(R"({"backends":)" + backends + "}"))),
            "400 LimitExceededException: spec.backends: 3 backends exceed the limit of 2 per "
            "virtual node");
}

}  // namespace
}  // namespace weft::control::appmesh
