#include "control/model/rules.h"

#include <google/protobuf/descriptor.h>
#include <re2/re2.h>

#include <cmath>
#include <map>
#include <string>

#include "common/text.h"
#include "control/model/errors.h"
#include "control/model/schema.h"

namespace weft::control::appmesh {
namespace {

namespace pb = google::protobuf;

std::string indexed(std::string_view path, int i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

// Checks that hold wherever the shape appears: every Duration has value and unit, every "regex"
// compiles with RE2 (the data plane's regex engine), every MatchRange has
// start < end.
Status checkCommon(const pb::Message& m, const std::string& path) {
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection* r = m.GetReflection();
  if (d == am::Duration::descriptor()) {
    const auto& dur = static_cast<const am::Duration&>(m);
    if (!dur.has_value()) return badRequest(joinPath(path, "value") + ": is required");
    if (!dur.has_unit()) return badRequest(joinPath(path, "unit") + ": is required");
    return {};
  }
  if (d == am::MatchRange::descriptor()) {
    const auto& range = static_cast<const am::MatchRange&>(m);
    // Whole numbers: checked by checkSchema (the (integral) option).
    if (range.start() >= range.end()) return badRequest(path + ": start must be less than end");
    return {};
  }
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    std::string fpath = joinPath(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j)
          if (Status s = checkCommon(r->GetRepeatedMessage(m, f, j), indexed(fpath, j)); !s)
            return s;
      } else if (r->HasField(m, f)) {
        if (Status s = checkCommon(r->GetMessage(m, f), fpath); !s) return s;
      }
    } else if (f->name() == "regex" && f->type() == pb::FieldDescriptor::TYPE_STRING &&
               !f->is_repeated() && r->HasField(m, f)) {
      RE2 re(r->GetString(m, f), RE2::Quiet);
      if (!re.ok())
        return badRequest(fpath + ": " + quoted(r->GetString(m, f)) +
                          " is not a valid regular expression: " + re.error());
    }
  }
  return {};
}

Status mustStartWithSlash(const std::string& value, const std::string& path) {
  if (value.empty() || value[0] != '/')
    return badRequest(path + ": " + quoted(value) + " must start with /");
  return {};
}

// `member` is the name of the set member of a union whose members are named after protocols;
// it must be the listener's protocol.
Status protocolMatches(const pb::Message& union_msg, std::string_view protocol,
                       const std::string& path) {
  const pb::Descriptor* d = union_msg.GetDescriptor();
  const pb::Reflection* r = union_msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    if (r->HasField(union_msg, d->field(i)) && d->field(i)->name() != protocol)
      return badRequest(joinPath(path, d->field(i)->name()) +
                        ": does not match the listener's protocol " + std::string(protocol));
  }
  return {};
}

template <class HealthCheck>
Status checkHealthCheck(const HealthCheck& hc, int listener_port, const std::string& path) {
  if ((hc.protocol() == "http" || hc.protocol() == "http2") && !hc.has_path())
    return badRequest(joinPath(path, "path") + ": is required when protocol is " + hc.protocol());
  if (hc.has_path()) {
    if (Status s = mustStartWithSlash(hc.path(), joinPath(path, "path")); !s) return s;
  }
  if (hc.has_port() && hc.port() != listener_port)
    return badRequest(joinPath(path, "port") + ": " + std::to_string(hc.port()) +
                      " does not match the listener's port " + std::to_string(listener_port));
  return {};
}

// Listener ports must be unique within a resource.
class PortSet {
 public:
  Status add(int port, const std::string& path) {
    auto [it, inserted] = seen_.emplace(port, path);
    if (!inserted)
      return badRequest(path + ": port " + std::to_string(port) + " is already used by " +
                        it->second);
    return {};
  }

 private:
  std::map<int, std::string> seen_;
};

Status checkListener(const am::Listener& l, const std::string& path, PortSet& ports) {
  const am::PortMapping& pm = l.portmapping();
  if (Status s = ports.add(pm.port(), path + ".portMapping.port"); !s) return s;
  if (l.has_timeout()) {
    if (Status s = protocolMatches(l.timeout(), pm.protocol(), path + ".timeout"); !s) return s;
  }
  if (l.has_connectionpool()) {
    if (Status s = protocolMatches(l.connectionpool(), pm.protocol(), path + ".connectionPool"); !s)
      return s;
  }
  if (l.has_healthcheck()) {
    if (Status s = checkHealthCheck(l.healthcheck(), pm.port(), path + ".healthCheck"); !s)
      return s;
  }
  return {};
}

Status checkRetryEvents(const pb::RepeatedPtrField<std::string>& events, const std::string& path) {
  static const char* const kValid[] = {"server-error", "gateway-error", "client-error",
                                       "stream-error"};
  for (int i = 0; i < events.size(); ++i) {
    bool ok = false;
    for (const char* v : kValid) ok = ok || events[i] == v;
    if (!ok)
      return badRequest(indexed(path, i) + ": " + quoted(events[i]) +
                        " is not one of server-error, gateway-error, client-error, stream-error");
  }
  return {};
}

Status checkWeightedTargets(const pb::RepeatedPtrField<am::WeightedTarget>& targets,
                            const std::string& path) {
  int total = 0;
  std::map<std::pair<std::string, int>, int> seen;
  for (int i = 0; i < targets.size(); ++i) {
    total += targets[i].weight();
    auto key = std::pair{targets[i].virtualnode(), targets[i].has_port() ? targets[i].port() : 0};
    if (!seen.emplace(key, i).second)
      return badRequest(indexed(path, i) + ".virtualNode: " + quoted(targets[i].virtualnode()) +
                        " is listed twice");
  }
  if (total == 0) return badRequest(path + ": the weights sum to 0; at least one must be above 0");
  return {};
}

Status checkPathMatch(const am::HttpPathMatch& p, const std::string& path) {
  if (p.has_exact() == p.has_regex())
    return badRequest(path + ": exactly one of exact, regex must be set");
  if (p.has_exact()) return mustStartWithSlash(p.exact(), path + ".exact");
  return {};
}

Status checkHttpRoute(const am::HttpRoute& route, const std::string& path, bool http2) {
  const am::HttpRouteMatch& m = route.match();
  std::string mpath = path + ".match";
  if (m.has_prefix() == m.has_path())
    return badRequest(mpath + ": exactly one of prefix, path must be set");
  if (m.has_prefix()) {
    if (Status s = mustStartWithSlash(m.prefix(), mpath + ".prefix"); !s) return s;
  } else if (Status s = checkPathMatch(m.path(), mpath + ".path"); !s) {
    return s;
  }
  if (m.has_scheme() && !http2)
    return badRequest(mpath + ".scheme: is only allowed in an http2Route");
  if (Status s =
          checkWeightedTargets(route.action().weightedtargets(), path + ".action.weightedTargets");
      !s)
    return s;
  if (route.has_retrypolicy()) {
    const am::HttpRetryPolicy& rp = route.retrypolicy();
    if (rp.httpretryevents_size() == 0 && rp.tcpretryevents_size() == 0)
      return badRequest(
          path + ".retryPolicy: at least one of httpRetryEvents, tcpRetryEvents is required");
    if (Status s = checkRetryEvents(rp.httpretryevents(), path + ".retryPolicy.httpRetryEvents");
        !s)
      return s;
  }
  return {};
}

Status checkGrpcRoute(const am::GrpcRoute& route, const std::string& path) {
  const am::GrpcRouteMatch& m = route.match();
  if (m.has_methodname() && !m.has_servicename())
    return badRequest(path + ".match.methodName: requires match.serviceName");
  if (Status s =
          checkWeightedTargets(route.action().weightedtargets(), path + ".action.weightedTargets");
      !s)
    return s;
  if (route.has_retrypolicy()) {
    const am::GrpcRetryPolicy& rp = route.retrypolicy();
    if (rp.grpcretryevents_size() == 0 && rp.httpretryevents_size() == 0 &&
        rp.tcpretryevents_size() == 0)
      return badRequest(path +
                        ".retryPolicy: at least one of grpcRetryEvents, httpRetryEvents, "
                        "tcpRetryEvents is required");
    if (Status s = checkRetryEvents(rp.httpretryevents(), path + ".retryPolicy.httpRetryEvents");
        !s)
      return s;
  }
  return {};
}

Status checkHostnameMatch(const am::GatewayRouteHostnameMatch& h, const std::string& path) {
  if (h.has_exact() == h.has_suffix())
    return badRequest(path + ": exactly one of exact, suffix must be set");
  return {};
}

Status checkHttpGatewayRoute(const am::HttpGatewayRoute& route, const std::string& path) {
  const am::HttpGatewayRouteMatch& m = route.match();
  std::string mpath = path + ".match";
  if (m.has_prefix() && m.has_path())
    return badRequest(mpath + ": at most one of prefix, path may be set");
  if (!m.has_prefix() && !m.has_path() && !m.has_hostname())
    return badRequest(mpath + ": one of prefix, path, hostname is required");
  if (m.has_prefix()) {
    if (Status s = mustStartWithSlash(m.prefix(), mpath + ".prefix"); !s) return s;
  }
  if (m.has_path()) {
    if (Status s = checkPathMatch(m.path(), mpath + ".path"); !s) return s;
  }
  if (m.has_hostname()) {
    if (Status s = checkHostnameMatch(m.hostname(), mpath + ".hostname"); !s) return s;
  }
  if (route.action().has_rewrite()) {
    const am::HttpGatewayRouteRewrite& rw = route.action().rewrite();
    std::string rpath = path + ".action.rewrite";
    if (rw.has_prefix()) {
      if (!m.has_prefix()) return badRequest(rpath + ".prefix: requires match.prefix");
      const am::HttpGatewayRoutePrefixRewrite& p = rw.prefix();
      if (p.has_defaultprefix() == p.has_value())
        return badRequest(rpath + ".prefix: exactly one of defaultPrefix, value must be set");
      if (p.has_value()) {
        if (Status s = mustStartWithSlash(p.value(), rpath + ".prefix.value"); !s) return s;
      }
    }
    if (rw.has_path()) {
      if (!m.has_path()) return badRequest(rpath + ".path: requires match.path");
      if (!rw.path().has_exact()) return badRequest(rpath + ".path.exact: is required");
      if (Status s = mustStartWithSlash(rw.path().exact(), rpath + ".path.exact"); !s) return s;
    }
    if (rw.has_prefix() && rw.has_path())
      return badRequest(rpath + ": at most one of prefix, path may be set");
  }
  return {};
}

Status checkVirtualGatewayListener(const am::VirtualGatewayListener& l, const std::string& path,
                                   PortSet& ports) {
  const am::VirtualGatewayPortMapping& pm = l.portmapping();
  if (Status s = ports.add(pm.port(), path + ".portMapping.port"); !s) return s;
  if (l.has_connectionpool()) {
    if (Status s = protocolMatches(l.connectionpool(), pm.protocol(), path + ".connectionPool"); !s)
      return s;
  }
  if (l.has_healthcheck()) {
    if (Status s = checkHealthCheck(l.healthcheck(), pm.port(), path + ".healthCheck"); !s)
      return s;
  }
  return {};
}

}  // namespace

Status checkMeshSpec(const am::MeshSpec& spec) { return checkCommon(spec, "spec"); }

Status checkVirtualNodeSpec(const am::VirtualNodeSpec& spec, const Quotas& quotas) {
  if (Status s = checkCommon(spec, "spec"); !s) return s;
  PortSet ports;
  for (int i = 0; i < spec.listeners_size(); ++i) {
    if (Status s = checkListener(spec.listeners(i), indexed("spec.listeners", i), ports); !s)
      return s;
  }
  if (spec.listeners_size() > 0 && !spec.has_servicediscovery())
    return badRequest("spec.serviceDiscovery: is required when the virtual node has listeners");
  if (spec.backends_size() > quotas.backends_per_virtual_node)
    return apiFailure(kLimitExceeded, "spec.backends: " + std::to_string(spec.backends_size()) +
                                          " backends exceed the limit of " +
                                          std::to_string(quotas.backends_per_virtual_node) +
                                          " per virtual node");
  std::map<std::string, int> seen;
  for (int i = 0; i < spec.backends_size(); ++i) {
    const std::string& name = spec.backends(i).virtualservice().virtualservicename();
    if (!seen.emplace(name, i).second)
      return badRequest(indexed("spec.backends", i) +
                        ".virtualService.virtualServiceName: " + quoted(name) + " is listed twice");
  }
  return {};
}

Status checkVirtualServiceSpec(const am::VirtualServiceSpec& spec) {
  return checkCommon(spec, "spec");
}

Status checkVirtualRouterSpec(const am::VirtualRouterSpec& spec) {
  if (Status s = checkCommon(spec, "spec"); !s) return s;
  PortSet ports;
  for (int i = 0; i < spec.listeners_size(); ++i) {
    if (Status s = ports.add(spec.listeners(i).portmapping().port(),
                             indexed("spec.listeners", i) + ".portMapping.port");
        !s)
      return s;
  }
  return {};
}

Status checkRouteSpec(const am::RouteSpec& spec) {
  if (Status s = checkCommon(spec, "spec"); !s) return s;
  int kinds =
      spec.has_grpcroute() + spec.has_http2route() + spec.has_httproute() + spec.has_tcproute();
  if (kinds != 1)
    return badRequest(
        "spec: exactly one of grpcRoute, http2Route, httpRoute, tcpRoute must be set");
  if (spec.has_httproute()) return checkHttpRoute(spec.httproute(), "spec.httpRoute", false);
  if (spec.has_http2route()) return checkHttpRoute(spec.http2route(), "spec.http2Route", true);
  if (spec.has_grpcroute()) return checkGrpcRoute(spec.grpcroute(), "spec.grpcRoute");
  return checkWeightedTargets(spec.tcproute().action().weightedtargets(),
                              "spec.tcpRoute.action.weightedTargets");
}

Status checkVirtualGatewaySpec(const am::VirtualGatewaySpec& spec) {
  if (Status s = checkCommon(spec, "spec"); !s) return s;
  PortSet ports;
  for (int i = 0; i < spec.listeners_size(); ++i) {
    if (Status s =
            checkVirtualGatewayListener(spec.listeners(i), indexed("spec.listeners", i), ports);
        !s)
      return s;
  }
  return {};
}

Status checkGatewayRouteSpec(const am::GatewayRouteSpec& spec) {
  if (Status s = checkCommon(spec, "spec"); !s) return s;
  int kinds = spec.has_grpcroute() + spec.has_http2route() + spec.has_httproute();
  if (kinds != 1)
    return badRequest("spec: exactly one of grpcRoute, http2Route, httpRoute must be set");
  if (spec.has_httproute()) return checkHttpGatewayRoute(spec.httproute(), "spec.httpRoute");
  if (spec.has_http2route()) return checkHttpGatewayRoute(spec.http2route(), "spec.http2Route");
  const am::GrpcGatewayRouteMatch& m = spec.grpcroute().match();
  if (m.has_hostname()) return checkHostnameMatch(m.hostname(), "spec.grpcRoute.match.hostname");
  return {};
}

}  // namespace weft::control::appmesh
