// The config compiler (see compiler.h for the contract and docs/compilation.md for the rules).
//
// Structure: one Compilation per compile() call holds everything read so far (so each resource
// is read once), the dependency set, the warnings and the clusters built; it is discarded at the
// end, so compile() is reentrant. Everything iterates store listings (key order) or spec lists
// (their stored order) and collects clusters in a std::map: the output never depends on hash
// order or on timing.

#include "control/compile/compiler.h"

#include <arpa/inet.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>
#include <re2/re2.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "aws/appmesh/v20190125/appmesh.pb.h"
#include "aws/appmesh/v20190125/records.pb.h"
#include "control/api/crypto_util.h"
#include "control/compile/mesh_policy.h"
#include "control/compile/registry_hostname.h"
#include "control/stacks/json_value.h"

namespace weft::control::compile {
namespace {

namespace pb = google::protobuf;
namespace am = ::aws::appmesh::v20190125;
using appmesh::Kind;
using appmesh::ResourceId;

constexpr uint32_t kInboundPort = 15000;
constexpr uint32_t kOutboundPort = 15001;
constexpr int64_t kDefaultRequestTimeoutSeconds = 15;
constexpr int64_t kDefaultIdleTimeoutSeconds = 300;
constexpr uint32_t kNoUpstreamStatus = 503;

Unexpected<Error> notFound(std::string message) {
  return makeError(std::move(message), kCompileNotFound);
}
Unexpected<Error> unsupported(std::string message) {
  return makeError(std::move(message), kCompileUnsupported);
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool endsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool isIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

pb::Duration seconds(int64_t s) {
  pb::Duration d;
  d.set_seconds(s);
  return d;
}

// App Mesh's {value, unit "s"|"ms"} as a protobuf Duration (unit "s" when absent).
pb::Duration toDuration(const am::Duration& d) {
  int64_t v = d.has_value() ? static_cast<int64_t>(d.value()) : 0;
  pb::Duration out;
  if (d.unit() == "ms") {
    out.set_seconds(v / 1000);
    out.set_nanos(static_cast<int32_t>((v % 1000) * 1000000));
  } else {
    out.set_seconds(v);
  }
  return out;
}

pb::Duration millis(double ms) {
  am::Duration d;
  d.set_unit("ms");
  d.set_value(ms);
  return toDuration(d);
}

bool isHttpFamily(std::string_view protocol) {
  return protocol == "http" || protocol == "http2" || protocol == "grpc";
}

// The deterministic bytes of a message (for equality of App Mesh shapes).
std::string canonicalBytes(const pb::Message& m) {
  std::string out;
  {
    pb::io::StringOutputStream sos(&out);
    pb::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&cos);
  }
  return out;
}

// Two generated shapes with the same field numbers and types (the virtual gateway's copies of
// the virtual node's TLS and client policy messages): converts through the wire format.
template <class To>
To sameShape(const pb::Message& from) {
  To to;
  to.ParseFromString(from.SerializeAsString());
  return to;
}

// ---- App Mesh matches as weft matches ---------------------------------------------------------

struct PathSpec {
  enum Kind { kPrefix, kExact, kRegex };
  Kind kind = kPrefix;
  std::string value = "/";
};

struct MatchSpec {
  PathSpec path;
  std::vector<v1::HeaderMatcher> headers;
  std::string method;
  std::vector<v1::QueryParameterMatcher> query;
};

template <class Method>
v1::HeaderMatcher headerMatcher(const std::string& name, bool invert, bool has_match,
                                const Method& m) {
  v1::HeaderMatcher h;
  h.set_name(name);
  h.set_invert(invert);
  if (!has_match) {
    h.set_present(true);
  } else if (m.has_exact()) {
    h.set_exact(m.exact());
  } else if (m.has_prefix()) {
    h.set_prefix(m.prefix());
  } else if (m.has_suffix()) {
    h.set_suffix(m.suffix());
  } else if (m.has_regex()) {
    h.set_regex(m.regex());
  } else if (m.has_range()) {
    h.mutable_range()->set_start(static_cast<int64_t>(m.range().start()));
    h.mutable_range()->set_end(static_cast<int64_t>(m.range().end()));
  } else {
    h.set_present(true);
  }
  return h;
}

template <class Params>
void addQuery(const Params& params, MatchSpec& out) {
  for (const auto& q : params) {
    v1::QueryParameterMatcher m;
    m.set_name(q.name());
    if (q.has_match() && q.match().has_exact())
      m.set_exact(q.match().exact());
    else
      m.set_present(true);
    out.query.push_back(std::move(m));
  }
}

// App Mesh's httpRoute / http2Route match (the virtual router's routes).
MatchSpec httpMatch(const am::HttpRouteMatch& m) {
  MatchSpec out;
  if (m.has_path() && m.path().has_exact()) {
    out.path = {PathSpec::kExact, m.path().exact()};
  } else if (m.has_path() && m.path().has_regex()) {
    out.path = {PathSpec::kRegex, m.path().regex()};
  } else if (m.has_prefix()) {
    out.path = {PathSpec::kPrefix, m.prefix()};
  }
  for (const am::HttpRouteHeader& h : m.headers())
    out.headers.push_back(headerMatcher(h.name(), h.invert(), h.has_match(), h.match()));
  out.method = m.method();
  addQuery(m.queryparameters(), out);
  return out;
}

// gRPC requests are POST /<service>/<method>.
PathSpec grpcPath(const std::string& service, const std::string& method) {
  if (service.empty()) return {PathSpec::kPrefix, "/"};
  if (method.empty()) return {PathSpec::kPrefix, "/" + service + "/"};
  return {PathSpec::kExact, "/" + service + "/" + method};
}

MatchSpec grpcMatch(const am::GrpcRouteMatch& m) {
  MatchSpec out;
  out.path = grpcPath(m.servicename(), m.methodname());
  for (const am::GrpcRouteMetadata& h : m.metadata())
    out.headers.push_back(headerMatcher(h.name(), h.invert(), h.has_match(), h.match()));
  return out;
}

// ---- routes ---------------------------------------------------------------------------------

struct Target {
  std::string node;
  std::optional<uint32_t> port;
  uint32_t weight = 0;
};

// One App Mesh route of a virtual router, or the implicit route of a virtual-node provider.
struct RouteRule {
  std::string name;
  std::string protocol;          // "http", "http2", "grpc", "tcp"
  std::optional<uint32_t> port;  // match.port
  std::optional<uint32_t> priority;
  MatchSpec match;
  std::vector<Target> targets;
  std::optional<v1::RetryPolicy> retry;
  std::optional<pb::Duration> timeout;
  std::optional<pb::Duration> idle;
};

// App Mesh's default retry policy, on the route it creates for a virtual-node provider and on every
// HTTP/gRPC route without a retry policy of its own (docs/compilation.md): 2 retries on 503 (weft's
// "503" event), connect failure / reset (connection-error) and refused stream (stream-error), plus
// gRPC UNAVAILABLE on gRPC listeners.
v1::RetryPolicy defaultRetry(std::string_view protocol) {
  v1::RetryPolicy r;
  r.set_max_retries(2);
  r.add_http_retry_events("503");
  r.add_http_retry_events("stream-error");
  r.add_tcp_retry_events("connection-error");
  if (protocol == "grpc") r.add_grpc_retry_events("unavailable");
  return r;
}

template <class Policy>
v1::RetryPolicy retryOf(const Policy& p) {
  v1::RetryPolicy r;
  r.set_max_retries(static_cast<uint32_t>(p.maxretries()));
  if (p.has_perretrytimeout()) *r.mutable_per_try_timeout() = toDuration(p.perretrytimeout());
  for (const std::string& e : p.httpretryevents()) r.add_http_retry_events(e);
  for (const std::string& e : p.tcpretryevents()) r.add_tcp_retry_events(e);
  return r;
}

template <class Timeout>
void timeoutsOf(const Timeout& t, RouteRule& rule) {
  if (t.has_perrequest()) rule.timeout = toDuration(t.perrequest());
  if (t.has_idle()) rule.idle = toDuration(t.idle());
}

void targetsOf(const pb::RepeatedPtrField<am::WeightedTarget>& targets, RouteRule& rule) {
  for (const am::WeightedTarget& t : targets) {
    Target out;
    out.node = t.virtualnode();
    if (t.has_port()) out.port = static_cast<uint32_t>(t.port());
    out.weight = static_cast<uint32_t>(std::max(0, t.weight()));
    rule.targets.push_back(std::move(out));
  }
}

RouteRule ruleOf(const am::RouteData& route) {
  RouteRule rule;
  rule.name = route.routename();
  const am::RouteSpec& s = route.spec();
  if (s.has_priority()) rule.priority = static_cast<uint32_t>(s.priority());
  auto http = [&](const am::HttpRoute& r, std::string protocol) {
    rule.protocol = std::move(protocol);
    rule.match = httpMatch(r.match());
    if (r.match().has_port()) rule.port = static_cast<uint32_t>(r.match().port());
    targetsOf(r.action().weightedtargets(), rule);
    // App Mesh's default retry policy covers every HTTP route without a policy of its own.
    rule.retry = r.has_retrypolicy() ? retryOf(r.retrypolicy()) : defaultRetry(rule.protocol);
    if (r.has_timeout()) timeoutsOf(r.timeout(), rule);
  };
  if (s.has_httproute()) {
    http(s.httproute(), "http");
  } else if (s.has_http2route()) {
    http(s.http2route(), "http2");
  } else if (s.has_grpcroute()) {
    const am::GrpcRoute& r = s.grpcroute();
    rule.protocol = "grpc";
    rule.match = grpcMatch(r.match());
    if (r.match().has_port()) rule.port = static_cast<uint32_t>(r.match().port());
    targetsOf(r.action().weightedtargets(), rule);
    if (r.has_retrypolicy()) {
      rule.retry = retryOf(r.retrypolicy());
      for (const std::string& e : r.retrypolicy().grpcretryevents())
        rule.retry->add_grpc_retry_events(e);
    }
    if (r.has_timeout()) timeoutsOf(r.timeout(), rule);
    if (!rule.retry) rule.retry = defaultRetry("grpc");
  } else if (s.has_tcproute()) {
    const am::TcpRoute& r = s.tcproute();
    rule.protocol = "tcp";
    if (r.has_match() && r.match().has_port()) rule.port = static_cast<uint32_t>(r.match().port());
    targetsOf(r.action().weightedtargets(), rule);
    if (r.has_timeout() && r.timeout().has_idle()) rule.idle = toDuration(r.timeout().idle());
  }
  return rule;
}

// Evaluation order of App Mesh routes: priority (0 first, unset last), then the more specific
// path (exact, regex, longer prefix), then name. The proxy sorts by priority and keeps this order
// among equal priorities.
auto ruleOrderKey(const std::optional<uint32_t>& priority, const PathSpec& path,
                  const std::string& name) {
  int kind_rank = path.kind == PathSpec::kExact ? 0 : path.kind == PathSpec::kRegex ? 1 : 2;
  int64_t length = path.kind == PathSpec::kPrefix ? -static_cast<int64_t>(path.value.size()) : 0;
  return std::make_tuple(priority.value_or(1001), kind_rank, length, name);
}

// The path a route needs when a request first matches `g` (its matched prefix rewritten to
// `rewrite`, nullopt: unchanged) and then, on the rewritten path, `q`. nullopt when no request
// can match both; `unsupported` is set when weft cannot express the combination.
struct CombinedPath {
  PathSpec path;
  std::optional<std::string> prefix_rewrite;
};

std::optional<CombinedPath> combinePaths(const PathSpec& g,
                                         const std::optional<std::string>& rewrite,
                                         const PathSpec& q, bool& unsupported) {
  unsupported = false;
  if (g.kind == PathSpec::kPrefix) {
    const std::string& p = g.value;
    const std::string r = rewrite.value_or(p);
    auto rewritten = [&](std::string to) -> std::optional<std::string> {
      if (to == p) return std::nullopt;
      return to;
    };
    if (q.kind == PathSpec::kPrefix) {
      if (startsWith(r, q.value)) return CombinedPath{{PathSpec::kPrefix, p}, rewritten(r)};
      if (startsWith(q.value, r)) {
        std::string np = p + q.value.substr(r.size());
        return CombinedPath{{PathSpec::kPrefix, np},
                            q.value == np ? std::nullopt : std::optional<std::string>(q.value)};
      }
      return std::nullopt;
    }
    if (q.kind == PathSpec::kExact) {
      if (!startsWith(q.value, r)) return std::nullopt;
      std::string original = p + q.value.substr(r.size());
      if (original == q.value) return CombinedPath{{PathSpec::kExact, original}, std::nullopt};
      unsupported = true;
      return std::nullopt;
    }
    if (p == "/" && r == "/") return CombinedPath{q, std::nullopt};
    unsupported = true;
    return std::nullopt;
  }
  if (g.kind == PathSpec::kExact) {
    const std::string& e = g.value;
    bool ok = false;
    if (q.kind == PathSpec::kPrefix) {
      ok = startsWith(e, q.value);
    } else if (q.kind == PathSpec::kExact) {
      ok = e == q.value;
    } else {
      RE2 re(q.value);
      ok = re.ok() && RE2::FullMatch(e, re);
    }
    if (!ok) return std::nullopt;
    return CombinedPath{g, std::nullopt};
  }
  // g is a regex.
  if (q.kind == PathSpec::kPrefix && q.value == "/") return CombinedPath{g, std::nullopt};
  if (q.kind == PathSpec::kExact) {
    RE2 re(g.value);
    if (re.ok() && RE2::FullMatch(q.value, re)) return CombinedPath{q, std::nullopt};
    return std::nullopt;
  }
  if (q.kind == PathSpec::kRegex && q.value == g.value) return CombinedPath{g, std::nullopt};
  unsupported = true;
  return std::nullopt;
}

void setPath(const PathSpec& p, v1::RouteMatch& m) {
  switch (p.kind) {
    case PathSpec::kPrefix:
      m.set_prefix(p.value);
      break;
    case PathSpec::kExact:
      m.set_path(p.value);
      break;
    case PathSpec::kRegex:
      m.set_regex(p.value);
      break;
  }
}

// ---- TLS ------------------------------------------------------------------------------------

// The name a node's service discovery gives it, which its certificate must carry when a caller
// names no subjectAlternativeNames: the DNS hostname (lower case, no trailing dot), or
// `<serviceName>.<namespaceName>` for Cloud Map. "" for an IP literal (the proxy then checks the
// endpoint's address against the IP SANs) or no discovery.
std::string discoveryName(const am::ServiceDiscovery& sd) {
  std::string name;
  if (sd.has_dns())
    name = sd.dns().hostname();
  else if (sd.has_awscloudmap())
    name = sd.awscloudmap().servicename() + "." + sd.awscloudmap().namespacename();
  name = lowerAscii(name);
  while (!name.empty() && name.back() == '.') name.pop_back();
  if (name.empty() || isIpLiteral(name)) return "";
  return name;
}

v1::SanMatcher sanMatcher(const std::string& san) {
  v1::SanMatcher m;
  if (san.find("://") != std::string::npos)
    m.set_uri(san);
  else
    m.set_dns(san);
  return m;
}

// A gateway route's hostname match, lower-cased.
struct HostMatch {
  bool suffix = false;
  std::string value;
};

struct GatewayRule {
  std::string name;
  std::string protocol;  // "http", "http2", "grpc"
  std::optional<uint32_t> port;
  std::optional<uint32_t> priority;
  std::optional<HostMatch> host;
  MatchSpec match;
  std::optional<std::string> prefix_rewrite;  // only for prefix matches
  bool rewrite_host = true;
  std::string target_service;
  std::optional<uint32_t> target_port;
  std::string unsupported;  // non-empty: skipped, with this reason
};

template <class Match>
std::optional<HostMatch> hostMatchOf(const Match& m) {
  if (!m.has_hostname()) return std::nullopt;
  if (m.hostname().has_exact()) return HostMatch{false, lowerAscii(m.hostname().exact())};
  if (m.hostname().has_suffix()) return HostMatch{true, lowerAscii(m.hostname().suffix())};
  return std::nullopt;
}

GatewayRule gatewayRuleOf(const am::GatewayRouteData& data) {
  GatewayRule rule;
  rule.name = data.gatewayroutename();
  const am::GatewayRouteSpec& s = data.spec();
  if (s.has_priority()) rule.priority = static_cast<uint32_t>(s.priority());
  auto http = [&](const am::HttpGatewayRoute& r, std::string protocol) {
    rule.protocol = std::move(protocol);
    const am::HttpGatewayRouteMatch& m = r.match();
    rule.host = hostMatchOf(m);
    if (m.has_port()) rule.port = static_cast<uint32_t>(m.port());
    if (m.has_path() && m.path().has_exact()) {
      rule.match.path = {PathSpec::kExact, m.path().exact()};
    } else if (m.has_path() && m.path().has_regex()) {
      rule.match.path = {PathSpec::kRegex, m.path().regex()};
    } else if (m.has_prefix()) {
      rule.match.path = {PathSpec::kPrefix, m.prefix()};
    }
    for (const am::HttpGatewayRouteHeader& h : m.headers())
      rule.match.headers.push_back(headerMatcher(h.name(), h.invert(), h.has_match(), h.match()));
    rule.match.method = m.method();
    addQuery(m.queryparameters(), rule.match);
    const am::HttpGatewayRouteAction& a = r.action();
    rule.target_service = a.target().virtualservice().virtualservicename();
    if (a.target().has_port()) rule.target_port = static_cast<uint32_t>(a.target().port());
    const am::HttpGatewayRouteRewrite& rw = a.rewrite();
    if (rw.has_hostname() && rw.hostname().defaulttargethostname() == "DISABLED")
      rule.rewrite_host = false;
    if (rw.has_path() && rw.path().has_exact()) {
      rule.unsupported =
          "rewrite.path.exact (a whole-path rewrite) is not supported yet: the proxy config "
          "can only rewrite a matched prefix";
    }
    // App Mesh rewrites a matched prefix to "/" unless told otherwise (defaultPrefix ENABLED).
    if (m.has_prefix() && !(m.has_path())) {
      if (rw.has_prefix() && rw.prefix().has_value())
        rule.prefix_rewrite = rw.prefix().value();
      else if (!(rw.has_prefix() && rw.prefix().defaultprefix() == "DISABLED"))
        rule.prefix_rewrite = "/";
      if (rule.prefix_rewrite == m.prefix()) rule.prefix_rewrite.reset();
    }
  };
  if (s.has_httproute()) {
    http(s.httproute(), "http");
  } else if (s.has_http2route()) {
    http(s.http2route(), "http2");
  } else if (s.has_grpcroute()) {
    const am::GrpcGatewayRoute& r = s.grpcroute();
    rule.protocol = "grpc";
    const am::GrpcGatewayRouteMatch& m = r.match();
    rule.host = hostMatchOf(m);
    if (m.has_port()) rule.port = static_cast<uint32_t>(m.port());
    rule.match.path = grpcPath(m.servicename(), "");
    for (const am::GrpcGatewayRouteMetadata& h : m.metadata())
      rule.match.headers.push_back(headerMatcher(h.name(), h.invert(), h.has_match(), h.match()));
    rule.target_service = r.action().target().virtualservice().virtualservicename();
    if (r.action().target().has_port())
      rule.target_port = static_cast<uint32_t>(r.action().target().port());
    if (r.action().rewrite().has_hostname() &&
        r.action().rewrite().hostname().defaulttargethostname() == "DISABLED")
      rule.rewrite_host = false;
  }
  return rule;
}

// Does a gateway route's hostname match send requests of virtual host `domain` (exact "a.b" or
// suffix "*b") to it? The proxy picks the exact domain, else the longest suffix, else "*".
bool hostRuleApplies(const std::optional<HostMatch>& rule, const std::string& domain) {
  if (!rule) return true;
  if (domain == "*") return false;
  if (domain.front() == '*') {
    return rule->suffix && endsWith(domain.substr(1), rule->value);
  }
  return rule->suffix ? endsWith(domain, rule->value) : domain == rule->value;
}

// ---- the compilation ------------------------------------------------------------------------

struct ChainBuild {
  bool tcp = false;
  std::string owner;  // the virtual service that claimed the port
  v1::FilterChain chain;
};

class Compilation {
 public:
  Compilation(Store& store, const CompileOptions& options, const ProxyIdentity& who,
              const CertificateSource* certificates)
      : store_(store), options_(options), who_(who), certificates_(certificates) {}

  Result<CompileResult> run() {
    if (who_.kind != Kind::kVirtualNode && who_.kind != Kind::kVirtualGateway)
      return makeError("a proxy is a virtual node or a virtual gateway", kCompileNotFound);
    auto mesh = load(Kind::kMesh, who_.mesh);
    if (!mesh) return Unexpected<Error>{mesh.error()};
    if (!mesh->has_value()) return notFound("mesh \"" + who_.mesh + "\" not found");
    mesh_ = (*mesh)->mesh();
    // weft's own mesh policy (mesh_policy.h): mTLS by identity and authorization.
    deps_.insert(meshPolicyKey(who_.mesh));
    auto policy = readMeshPolicy(store_, who_.mesh);
    if (!policy) return Unexpected<Error>{policy.error()};
    policy_ = *policy;
    config_.set_node(who_.resource());
    Status built = who_.kind == Kind::kVirtualNode ? buildNode() : buildGateway();
    if (!built) return Unexpected<Error>{built.error()};
    for (auto& [name, cluster] : clusters_) *config_.add_clusters() = std::move(cluster);
    CompileResult out;
    out.config = std::move(config_);
    out.depends_on.assign(deps_.begin(), deps_.end());
    out.warnings = std::move(warnings_);
    return out;
  }

 private:
  // ---- store access (every read records its key or prefix) ----

  Result<std::optional<am::StoredResource>> parse(const KeyValue& kv) {
    am::StoredResource rec;
    pb::util::JsonParseOptions po;
    po.ignore_unknown_fields = true;
    if (!pb::util::JsonStringToMessage(kv.value, &rec, po).ok())
      return makeError("stored record at " + kv.key + " is not readable");
    return std::optional<am::StoredResource>(std::move(rec));
  }

  Result<std::optional<am::StoredResource>> load(Kind kind, const std::string& name,
                                                 const std::string& parent = "") {
    std::string key = appmesh::resourceKey(ResourceId{kind, who_.mesh, parent, name});
    deps_.insert(key);
    auto kv = store_.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (!kv->has_value()) return std::optional<am::StoredResource>();
    return parse(**kv);
  }

  Result<std::vector<am::StoredResource>> listChildren(Kind kind, const std::string& parent) {
    std::string prefix = appmesh::collectionPrefix(kind, who_.mesh, parent);
    deps_.insert(prefix);
    auto kvs = store_.list(prefix, "", 0);
    if (!kvs) return Unexpected<Error>{kvs.error()};
    std::vector<am::StoredResource> out;
    for (const KeyValue& kv : *kvs) {
      auto rec = parse(kv);
      if (!rec) return Unexpected<Error>{rec.error()};
      out.push_back(std::move(**rec));
    }
    return out;
  }

  void warn(std::string message) {
    if (std::find(warnings_.begin(), warnings_.end(), message) == warnings_.end())
      warnings_.push_back(std::move(message));
  }

  // A virtual node other than the proxy's own, read once; nullptr when it does not exist.
  Result<const am::VirtualNodeData*> targetNode(const std::string& name) {
    auto it = nodes_.find(name);
    if (it == nodes_.end()) {
      auto rec = load(Kind::kVirtualNode, name);
      if (!rec) return Unexpected<Error>{rec.error()};
      std::optional<am::VirtualNodeData> data;
      if (rec->has_value()) data = (*rec)->virtualnode();
      it = nodes_.emplace(name, std::move(data)).first;
    }
    return it->second ? &*it->second : nullptr;
  }

  // ---- mesh identities (weft mesh policy; docs/security.md) ----

  bool strictMtls() const { return policy_.mtls == MtlsMode::kStrict; }

  // The mesh identity CA's root(s), read once; the CA's key joins depends_on either way, so its
  // creation recompiles a config that could not be made without it.
  Result<std::string> meshTrust() {
    deps_.insert(meshIdentityCaKey(who_.mesh));
    if (!mesh_trust_) {
      if (certificates_ == nullptr)
        return unsupported("mesh policy of \"" + who_.mesh +
                           "\": mtls strict needs weft's certificate authority, which this "
                           "compiler was not given");
      auto bundle = certificates_->meshTrustBundle(who_.mesh);
      if (!bundle)
        return unsupported("mesh policy of \"" + who_.mesh +
                           "\": mtls strict: " + bundle.error().message);
      deps_.insert(bundle->depends_on.begin(), bundle->depends_on.end());
      mesh_trust_ = std::move(bundle->pem);
    }
    return *mesh_trust_;
  }

  // Under mtls strict, a node's inbound listener requires a mesh identity: the spec's certificate
  // is served when it names one (else the proxy's own identity), STRICT, and clients must present
  // a certificate of the mesh identity CA unless the spec asks for its own validation.
  Status strictInbound(v1::Listener& in) {
    auto trust = meshTrust();
    if (!trust) return Unexpected<Error>{trust.error()};
    v1::ListenerTls* t = in.mutable_tls();
    t->set_mode(v1::ListenerTls::STRICT);
    if (!t->has_certificate()) t->mutable_certificate()->set_mesh_identity(true);
    if (!t->has_validation()) t->mutable_validation()->set_trust_bundle_pem(*trust);
    return {};
  }

  // Under mtls strict, a caller presents its identity toward a mesh node (unless its client
  // policy names a certificate) and, unless its client policy validates the server itself,
  // checks the server against the mesh identity CA and the target node's SPIFFE ID.
  Status strictEgress(v1::Cluster& c, const std::string& node) {
    auto trust = meshTrust();
    if (!trust) return Unexpected<Error>{trust.error()};
    v1::UpstreamTls* t = c.mutable_tls();
    if (!t->has_certificate()) t->mutable_certificate()->set_mesh_identity(true);
    if (!t->has_validation()) {
      t->mutable_validation()->set_trust_bundle_pem(*trust);
      t->mutable_validation()->add_match_subject_alt_names()->set_uri(
          spiffeId(who_.mesh, false, node));
    }
    return {};
  }

  // Every resource of `kind` in the mesh (every parent too, for routes and gateway routes), with
  // its key; the prefix joins depends_on.
  Result<std::vector<std::pair<std::string, am::StoredResource>>> listMesh(Kind kind) {
    std::string prefix = "appmesh/" + std::string(appmesh::kindName(kind)) + "/" +
                         appmesh::encodeKeySegment(who_.mesh) + "/";
    deps_.insert(prefix);
    auto kvs = store_.list(prefix, "", 0);
    if (!kvs) return Unexpected<Error>{kvs.error()};
    std::vector<std::pair<std::string, am::StoredResource>> out;
    for (const KeyValue& kv : *kvs) {
      auto rec = parse(kv);
      if (!rec) return Unexpected<Error>{rec.error()};
      out.emplace_back(kv.key, std::move(**rec));
    }
    return out;
  }

  // Authorization backends: the SPIFFE IDs that may call this node — every virtual node whose
  // backends name one of its virtual services (a service whose provider is this node, or a
  // virtual router with a route naming this node as a target), and every virtual gateway with a
  // gateway route to one of them. Sorted, unique. Reads the whole mesh graph.
  Result<std::vector<std::string>> allowedCallers() {
    std::set<std::string> routers;  // routers with a route that targets this node
    auto routes = listMesh(Kind::kRoute);
    if (!routes) return Unexpected<Error>{routes.error()};
    for (const auto& [key, rec] : *routes) {
      auto id = appmesh::parseResourceKey(key);
      if (!id) continue;
      for (const Target& t : ruleOf(rec.route()).targets)
        if (t.node == who_.name) routers.insert(id->parent);
    }
    std::set<std::string> services;  // this node's virtual services
    auto vss = listMesh(Kind::kVirtualService);
    if (!vss) return Unexpected<Error>{vss.error()};
    for (const auto& [key, rec] : *vss) {
      auto id = appmesh::parseResourceKey(key);
      if (!id) continue;
      const am::VirtualServiceProvider& p = rec.virtualservice().spec().provider();
      if ((p.has_virtualnode() && p.virtualnode().virtualnodename() == who_.name) ||
          (p.has_virtualrouter() && routers.count(p.virtualrouter().virtualroutername())))
        services.insert(id->name);
    }
    std::set<std::string> callers;
    auto nodes = listMesh(Kind::kVirtualNode);
    if (!nodes) return Unexpected<Error>{nodes.error()};
    for (const auto& [key, rec] : *nodes) {
      auto id = appmesh::parseResourceKey(key);
      if (!id) continue;
      for (const am::Backend& b : rec.virtualnode().spec().backends())
        if (b.has_virtualservice() && services.count(b.virtualservice().virtualservicename()))
          callers.insert(spiffeId(who_.mesh, false, id->name));
    }
    auto gateway_routes = listMesh(Kind::kGatewayRoute);
    if (!gateway_routes) return Unexpected<Error>{gateway_routes.error()};
    for (const auto& [key, rec] : *gateway_routes) {
      auto id = appmesh::parseResourceKey(key);
      if (!id) continue;
      if (services.count(gatewayRuleOf(rec.gatewayroute()).target_service))
        callers.insert(spiffeId(who_.mesh, true, id->parent));
    }
    return std::vector<std::string>(callers.begin(), callers.end());
  }

  // ---- SDS secret names (docs/security.md, "SDS secret names") ----
  //
  // An App Mesh spec's `sds.secretName` is what a local SDS provider serves; with SPIRE (App
  // Mesh's documented case) a certificate's name is the workload's SPIFFE ID and a trust's is
  // the trust domain. weft's mesh identities are exactly that: the proxy's own SPIFFE ID names
  // its identity certificate (TlsCertificate.mesh_identity), spiffe://MESH the mesh identity
  // CA's trust bundle. Any other name, or a mesh whose policy turns identities off, fails the
  // compilation naming the field.

  Status sdsServed(const std::string& field) const {
    if (policy_.mtls != MtlsMode::kOff) return {};
    return unsupported(field + ": SDS names are served by weft's mesh identities, and mesh \"" +
                       who_.mesh + "\" has them off (weft mesh policy " + who_.mesh +
                       " --mtls permissive turns them on)");
  }

  Result<v1::TlsCertificate> sdsCertificate(const std::string& secret, const std::string& field) {
    const std::string own = spiffeId(who_.mesh, who_.kind == Kind::kVirtualGateway, who_.name);
    if (secret != own)
      return unsupported(field + ": \"" + secret.substr(0, 200) +
                         "\" is not a secret weft serves: a certificate's SDS name must be this "
                         "proxy's own SPIFFE ID, \"" +
                         own + "\" (its mesh identity)");
    if (auto st = sdsServed(field); !st) return Unexpected<Error>{st.error()};
    v1::TlsCertificate out;
    out.set_mesh_identity(true);
    return out;
  }

  // The mesh identity CA's roots for a trust named by SDS (shares mesh_trust_ with strict mTLS).
  Result<std::string> sdsTrust(const std::string& secret, const std::string& field) {
    const std::string domain = "spiffe://" + who_.mesh;
    if (secret != domain)
      return unsupported(field + ": \"" + secret.substr(0, 200) +
                         "\" is not a secret weft serves: a trust's SDS name must be the mesh's "
                         "trust domain, \"" +
                         domain + "\" (the mesh identity CA)");
    if (auto st = sdsServed(field); !st) return Unexpected<Error>{st.error()};
    if (certificates_ == nullptr)
      return unsupported(field +
                         ": mesh identities need weft's certificate authority, which this "
                         "compiler was not given");
    deps_.insert(meshIdentityCaKey(who_.mesh));
    if (!mesh_trust_) {
      auto bundle = certificates_->meshTrustBundle(who_.mesh);
      if (!bundle)
        return unsupported(field + ": " + bundle.error().message +
                           " (the mesh identity CA is made when a proxy of the mesh first asks "
                           "for its identity)");
      deps_.insert(bundle->depends_on.begin(), bundle->depends_on.end());
      mesh_trust_ = std::move(bundle->pem);
    }
    return *mesh_trust_;
  }

  // ---- TLS ----

  // An ACM certificate's chain and key, read once per compilation.
  Result<const CertMaterial*> acmCertificate(const std::string& arn, const std::string& where) {
    if (certificates_ == nullptr)
      return unsupported(where +
                         ": ACM certificates need weft's certificate authority, which this "
                         "compiler was not given; use a file certificate");
    auto it = acm_.find(arn);
    if (it == acm_.end()) {
      auto got = certificates_->certificate(arn);
      if (!got) return makeError(where + ": " + got.error().message, got.error().code);
      deps_.insert(got->depends_on.begin(), got->depends_on.end());
      it = acm_.emplace(arn, std::move(*got)).first;
    }
    return &it->second;
  }

  Result<v1::TlsCertificate> certificateOf(const am::ListenerTlsCertificate& c,
                                           const std::string& where) {
    if (c.has_acm()) {
      auto m = acmCertificate(c.acm().certificatearn(), where + ".acm.certificateArn");
      if (!m) return Unexpected<Error>{m.error()};
      v1::TlsCertificate out;
      out.set_certificate_chain_pem((*m)->certificate_chain_pem);
      out.set_private_key_pem((*m)->private_key_pem);
      return out;
    }
    if (c.has_sds()) return sdsCertificate(c.sds().secretname(), where + ".sds.secretName");
    v1::TlsCertificate out;
    out.set_certificate_chain_file(c.file().certificatechain());
    out.set_private_key_file(c.file().privatekey());
    return out;
  }

  Result<std::optional<v1::ListenerTls>> listenerTls(const am::ListenerTls& tls,
                                                     const std::string& where) {
    v1::ListenerTls out;
    const std::string& mode = tls.mode();
    if (mode == "DISABLED" || mode.empty()) return std::optional<v1::ListenerTls>();
    out.set_mode(mode == "STRICT" ? v1::ListenerTls::STRICT : v1::ListenerTls::PERMISSIVE);
    auto cert = certificateOf(tls.certificate(), where + ".certificate");
    if (!cert) return Unexpected<Error>{cert.error()};
    *out.mutable_certificate() = std::move(*cert);
    if (tls.has_validation()) {
      const am::ListenerTlsValidationContext& v = tls.validation();
      v1::TlsValidation* val = out.mutable_validation();
      if (v.trust().has_sds()) {
        auto trust =
            sdsTrust(v.trust().sds().secretname(), where + ".validation.trust.sds.secretName");
        if (!trust) return Unexpected<Error>{trust.error()};
        val->set_trust_bundle_pem(*trust);
      } else {
        val->set_trust_bundle_file(v.trust().file().certificatechain());
      }
      for (const std::string& san : v.subjectalternativenames().match().exact())
        *val->add_match_subject_alt_names() = sanMatcher(san);
    }
    return std::optional<v1::ListenerTls>(std::move(out));
  }

  // The client TLS a caller's policy asks for toward `port`; nullopt: plaintext.
  Result<std::optional<v1::UpstreamTls>> upstreamTls(const am::ClientPolicy* policy, uint32_t port,
                                                     const std::string& where) {
    if (policy == nullptr || !policy->has_tls()) return std::optional<v1::UpstreamTls>();
    const am::ClientPolicyTls& tls = policy->tls();
    if (tls.has_enforce() && !tls.enforce()) return std::optional<v1::UpstreamTls>();
    if (!tls.ports().empty() && std::find(tls.ports().begin(), tls.ports().end(),
                                          static_cast<int32_t>(port)) == tls.ports().end())
      return std::optional<v1::UpstreamTls>();
    v1::UpstreamTls out;
    if (tls.has_certificate()) {
      if (tls.certificate().has_sds()) {
        auto cert = sdsCertificate(tls.certificate().sds().secretname(),
                                   where + ".tls.certificate.sds.secretName");
        if (!cert) return Unexpected<Error>{cert.error()};
        *out.mutable_certificate() = std::move(*cert);
      } else {
        out.mutable_certificate()->set_certificate_chain_file(
            tls.certificate().file().certificatechain());
        out.mutable_certificate()->set_private_key_file(tls.certificate().file().privatekey());
      }
    }
    const am::TlsValidationContextTrust& trust = tls.validation().trust();
    if (trust.has_sds()) {
      auto pem = sdsTrust(trust.sds().secretname(), where + ".tls.validation.trust.sds.secretName");
      if (!pem) return Unexpected<Error>{pem.error()};
      out.mutable_validation()->set_trust_bundle_pem(*pem);
    } else if (trust.has_acm()) {
      const std::string field = where + ".tls.validation.trust.acm.certificateAuthorityArns";
      if (certificates_ == nullptr)
        return unsupported(field +
                           ": ACM Private CA trust needs weft's certificate authority, which "
                           "this compiler was not given; use a file trust");
      std::vector<std::string> arns(trust.acm().certificateauthorityarns().begin(),
                                    trust.acm().certificateauthorityarns().end());
      auto bundle = certificates_->trustBundle(arns);
      if (!bundle) return makeError(field + ": " + bundle.error().message, bundle.error().code);
      deps_.insert(bundle->depends_on.begin(), bundle->depends_on.end());
      out.mutable_validation()->set_trust_bundle_pem(bundle->pem);
      // Revocations of these CAs: a revoked server certificate fails the handshake.
      if (!bundle->crl_pem.empty()) out.mutable_validation()->set_crl_pem(bundle->crl_pem);
    } else {
      out.mutable_validation()->set_trust_bundle_file(trust.file().certificatechain());
    }
    for (const std::string& san : tls.validation().subjectalternativenames().match().exact())
      *out.mutable_validation()->add_match_subject_alt_names() = sanMatcher(san);
    return std::optional<v1::UpstreamTls>(std::move(out));
  }

  // ---- endpoints ----

  // The id of the registry namespace named `ns_name` (case and trailing dots ignored; an HTTP
  // namespace also by its HttpName), or "" when there is none. With `private_dns_only`, only
  // DNS_PRIVATE namespaces count. The namespace collection joins depends_on either way, so a
  // namespace created later recompiles the caller.
  Result<std::string> registryNamespaceId(std::string_view ns_name, bool private_dns_only) {
    auto norm = [](std::string_view n) {
      std::string s = lowerAscii(n);
      while (!s.empty() && s.back() == '.') s.pop_back();
      return s;
    };
    deps_.insert("registry/namespaces/");
    auto namespaces = store_.list("registry/namespaces/", "", 0);
    if (!namespaces) return Unexpected<Error>{namespaces.error()};
    for (const KeyValue& kv : *namespaces) {
      auto v = stacks::parseJson(kv.value);
      if (!v || !v->isObject()) continue;
      if (private_dns_only) {
        const stacks::Value* type = v->find("Type");
        if (!type || type->str() != "DNS_PRIVATE") continue;
      }
      std::string name;
      if (const stacks::Value* p = v->find("Properties"))
        if (const stacks::Value* h = p->find("HttpProperties"))
          if (const stacks::Value* n = h->find("HttpName")) name = std::string(n->str());
      if (name.empty() || private_dns_only)
        if (const stacks::Value* n = v->find("Name")) name = std::string(n->str());
      if (norm(name) == norm(ns_name))
        return kv.key.substr(std::string_view("registry/namespaces/").size());
    }
    return std::string();
  }

  // The id of service `service` in namespace `ns_id` (its name index joins depends_on), or "".
  Result<std::string> registryServiceId(const std::string& ns_id, std::string_view service) {
    std::string index = "registry/service-names/" + ns_id + "/" + lowerAscii(service);
    deps_.insert(index);
    auto idx = store_.get(index);
    if (!idx) return Unexpected<Error>{idx.error()};
    std::string service_id;
    if (idx->has_value()) {
      auto v = stacks::parseJson((*idx)->value);
      if (v && v->isObject())
        if (const stacks::Value* id = v->find("Id")) service_id = std::string(id->str());
    }
    return service_id;
  }

  // A node's ipPreference, else the mesh's (MeshSpec.serviceDiscovery), else "" (App Mesh's
  // defaults apply: Cloud Map IPv4 then IPv6, DNS IPv6 then IPv4).
  std::string ipPreference(const std::string& node_preference) const {
    if (!node_preference.empty()) return node_preference;
    return mesh_.spec().servicediscovery().ippreference();
  }

  // The proxy's DNS family for an App Mesh ipPreference of a DNS-discovered node.
  v1::Cluster::DnsFamily dnsFamily(const std::string& node_preference) const {
    std::string p = ipPreference(node_preference);
    if (p == "IPv4_ONLY") return v1::Cluster::V4_ONLY;
    if (p == "IPv6_ONLY") return v1::Cluster::V6_ONLY;
    if (p == "IPv4_PREFERRED") return v1::Cluster::V4_PREFERRED;
    return v1::Cluster::V6_PREFERRED;  // IPv6_PREFERRED, and App Mesh's DNS default
  }

  // The instances of registry service `service_id` (its instance prefix joins depends_on) that
  // carry every attribute of `wanted` and are not UNHEALTHY, as endpoints: the address
  // `ip_preference` picks among AWS_INSTANCE_IPV4 / AWS_INSTANCE_IPV6 (empty: IPv4, else IPv6), the
  // port AWS_INSTANCE_PORT else `listener_port`; sorted by address then port, unique. An instance
  // with no IP attribute gives its AWS_INSTANCE_CNAME (a host name; see setRegistryEndpoints).
  Result<std::vector<v1::Endpoint>> registryEndpoints(
      const std::string& service_id,
      const pb::RepeatedPtrField<am::AwsCloudMapInstanceAttribute>& wanted_attributes,
      const std::string& ip_preference, uint32_t listener_port) {
    std::vector<v1::Endpoint> out;
    std::string prefix = "registry/instances/" + service_id + "/";
    deps_.insert(prefix);
    auto instances = store_.list(prefix, "", 0);
    if (!instances) return Unexpected<Error>{instances.error()};
    bool v6_first = ip_preference == "IPv6_PREFERRED" || ip_preference == "IPv6_ONLY";
    bool v4_ok = ip_preference != "IPv6_ONLY";
    bool v6_ok = ip_preference != "IPv4_ONLY";
    for (const KeyValue& kv : *instances) {
      auto v = stacks::parseJson(kv.value);
      if (!v || !v->isObject()) continue;
      const stacks::Value* health = v->find("HealthStatus");
      if (health && health->str() == "UNHEALTHY") continue;
      const stacks::Value* attrs = v->find("Attributes");
      auto attr = [&](std::string_view k) -> std::string {
        const stacks::Value* a = attrs ? attrs->find(k) : nullptr;
        return a ? std::string(a->str()) : std::string();
      };
      bool wanted = true;
      for (const am::AwsCloudMapInstanceAttribute& a : wanted_attributes)
        if (!attrs || !attrs->find(a.key()) || attr(a.key()) != a.value()) wanted = false;
      if (!wanted) continue;
      std::string v4 = attr("AWS_INSTANCE_IPV4"), v6 = attr("AWS_INSTANCE_IPV6");
      unsigned char buf[16];
      bool has4 = v4_ok && !v4.empty() && inet_pton(AF_INET, v4.c_str(), buf) == 1;
      bool has6 = v6_ok && !v6.empty() && inet_pton(AF_INET6, v6.c_str(), buf) == 1;
      std::string address = v6_first ? (has6 ? v6 : has4 ? v4 : "") : (has4 ? v4 : has6 ? v6 : "");
      if (address.empty() && v4.empty() && v6.empty()) address = attr("AWS_INSTANCE_CNAME");
      if (address.empty()) continue;
      uint32_t port = listener_port;
      std::string p = attr("AWS_INSTANCE_PORT");
      if (!p.empty()) {
        unsigned long n = std::strtoul(p.c_str(), nullptr, 10);
        if (n >= 1 && n <= 65535) port = static_cast<uint32_t>(n);
      }
      v1::Endpoint e;
      e.set_address(address);
      e.set_port(port);
      out.push_back(std::move(e));
    }
    std::sort(out.begin(), out.end(), [](const v1::Endpoint& a, const v1::Endpoint& b) {
      if (a.address() != b.address()) return a.address() < b.address();
      return a.port() < b.port();
    });
    out.erase(std::unique(out.begin(), out.end(),
                          [](const v1::Endpoint& a, const v1::Endpoint& b) {
                            return a.address() == b.address() && a.port() == b.port();
                          }),
              out.end());
    return out;
  }

  // The Cloud Map instances of `cm` (registry/ keys written by the registry API) that carry every
  // wanted attribute and are not UNHEALTHY, sorted.
  Result<std::vector<v1::Endpoint>> cloudMapEndpoints(const am::AwsCloudMapServiceDiscovery& cm,
                                                      uint32_t listener_port,
                                                      const std::string& node) {
    auto ns_id = registryNamespaceId(cm.namespacename(), false);
    if (!ns_id) return Unexpected<Error>{ns_id.error()};
    if (ns_id->empty()) {
      warn("virtual node \"" + node + "\": Cloud Map namespace \"" + cm.namespacename() +
           "\" not found");
      return std::vector<v1::Endpoint>();
    }
    auto service_id = registryServiceId(*ns_id, cm.servicename());
    if (!service_id) return Unexpected<Error>{service_id.error()};
    if (service_id->empty()) {
      warn("virtual node \"" + node + "\": Cloud Map service \"" + cm.servicename() +
           "\" not found in namespace \"" + cm.namespacename() + "\"");
      return std::vector<v1::Endpoint>();
    }
    return registryEndpoints(*service_id, cm.attributes(), ipPreference(cm.ippreference()),
                             listener_port);
  }

  // For a DNS hostname inside a private DNS namespace of the registry (first label = service, the
  // rest = namespace: splitRegistryHostname): the registry instances of that service, as
  // cloudMapEndpoints lists them (no attribute filter; the DNS ipPreference). nullopt when the
  // hostname is outside every such namespace (the proxy resolves it). A missing service gives an
  // empty list and a warning: the name is the registry's, and its DNS answers NXDOMAIN.
  Result<std::optional<std::vector<v1::Endpoint>>> dnsRegistryEndpoints(
      const am::DnsServiceDiscovery& dns, uint32_t listener_port, const std::string& node) {
    using Out = std::optional<std::vector<v1::Endpoint>>;
    auto split = splitRegistryHostname(dns.hostname());
    if (!split) return Out();
    auto ns_id = registryNamespaceId(split->namespace_name, true);
    if (!ns_id) return Unexpected<Error>{ns_id.error()};
    if (ns_id->empty()) return Out();
    auto service_id = registryServiceId(*ns_id, split->service);
    if (!service_id) return Unexpected<Error>{service_id.error()};
    if (service_id->empty()) {
      warn("virtual node \"" + node + "\": DNS hostname \"" + dns.hostname() +
           "\" is inside registry namespace \"" + split->namespace_name + "\" but its service \"" +
           split->service + "\" does not exist");
      return Out(std::vector<v1::Endpoint>());
    }
    static const pb::RepeatedPtrField<am::AwsCloudMapInstanceAttribute> kNoFilter;
    // The registry's instances answer for the name: Cloud Map's family order, not DNS's.
    auto eps =
        registryEndpoints(*service_id, kNoFilter, ipPreference(dns.ippreference()), listener_port);
    if (!eps) return Unexpected<Error>{eps.error()};
    return Out(std::move(*eps));
  }

  // ---- egress clusters ----

  // The listener of a provider node a caller reaches: the explicit port, else its only listener,
  // else the one on `port_hint`, else the first of `protocol_hint`, else the first.
  static const am::Listener* pickListener(const am::VirtualNodeSpec& spec,
                                          std::optional<uint32_t> explicit_port, uint32_t port_hint,
                                          std::string_view protocol_hint) {
    const auto& ls = spec.listeners();
    if (explicit_port) {
      for (const am::Listener& l : ls)
        if (static_cast<uint32_t>(l.portmapping().port()) == *explicit_port) return &l;
      return nullptr;
    }
    if (ls.empty()) return nullptr;
    if (ls.size() == 1) return &ls[0];
    for (const am::Listener& l : ls)
      if (static_cast<uint32_t>(l.portmapping().port()) == port_hint) return &l;
    for (const am::Listener& l : ls)
      if (l.portmapping().protocol() == protocol_hint) return &l;
    return &ls[0];
  }

  // Registry endpoints into `c`: IP addresses make a STATIC cluster (updated by endpoint
  // deltas). When every instance is CNAME-only, the names make a DNS cluster the proxy resolves;
  // CNAME-only instances beside instances with addresses are left out (a cluster is one kind).
  void setRegistryEndpoints(v1::Cluster& c, std::vector<v1::Endpoint> eps,
                            const std::string& node) {
    size_t names = 0;
    for (const v1::Endpoint& e : eps) names += isIpLiteral(e.address()) ? 0 : 1;
    bool all_names = names > 0 && names == eps.size();
    if (names > 0 && !all_names)
      warn("virtual node \"" + node + "\": " + std::to_string(names) +
           " CNAME-only instance(s) left out beside instances with IP addresses");
    c.set_type(all_names ? v1::Cluster::DNS : v1::Cluster::STATIC);
    for (v1::Endpoint& e : eps)
      if (all_names || isIpLiteral(e.address())) *c.add_endpoints() = std::move(e);
  }

  // The name of the egress cluster toward `node` (built on first use), or nullopt when the node,
  // its listener, its discovery or its endpoints are missing (a warning says which).
  Result<std::optional<std::string>> egressCluster(const std::string& node,
                                                   std::optional<uint32_t> explicit_port,
                                                   uint32_t port_hint,
                                                   std::string_view protocol_hint,
                                                   const am::ClientPolicy* policy,
                                                   const std::string& policy_where) {
    auto data = targetNode(node);
    if (!data) return Unexpected<Error>{data.error()};
    if (*data == nullptr) {
      warn("target virtual node \"" + node + "\" does not exist; its traffic gets 503");
      return std::optional<std::string>();
    }
    const am::VirtualNodeSpec& spec = (*data)->spec();
    const am::Listener* l = pickListener(spec, explicit_port, port_hint, protocol_hint);
    if (l == nullptr) {
      warn("target virtual node \"" + node + "\" has no listener" +
           (explicit_port ? " on port " + std::to_string(*explicit_port) : std::string()) +
           "; its traffic gets 503");
      return std::optional<std::string>();
    }
    uint32_t port = static_cast<uint32_t>(l->portmapping().port());
    const std::string& protocol = l->portmapping().protocol();
    std::string name =
        "cds_egress_" + who_.mesh + "_" + node + "_" + protocol + "_" + std::to_string(port);
    auto cached = egress_.find(name);
    if (cached != egress_.end()) return cached->second;

    v1::Cluster c;
    c.set_name(name);
    if (protocol == "http2" || protocol == "grpc") c.set_protocol(v1::Cluster::HTTP2);
    std::optional<std::string> result;
    bool in_registry = false;  // endpoints from the registry (awsCloudMap or a registry hostname)
    if (spec.servicediscovery().has_dns()) {
      const am::DnsServiceDiscovery& dns = spec.servicediscovery().dns();
      auto registered = dnsRegistryEndpoints(dns, port, node);
      if (!registered) return Unexpected<Error>{registered.error()};
      if (*registered) {
        in_registry = true;
        setRegistryEndpoints(c, std::move(**registered), node);
      } else {
        c.set_type(isIpLiteral(dns.hostname()) ? v1::Cluster::STATIC : v1::Cluster::DNS);
        v1::Endpoint* e = c.add_endpoints();
        e->set_address(dns.hostname());
        e->set_port(port);
        if (c.type() == v1::Cluster::DNS) {
          // App Mesh's default responseType is LOADBALANCER: the name fronts a balancer.
          if (dns.responsetype() != "ENDPOINTS") c.set_dns_lookup(v1::Cluster::FIRST_ADDRESS);
          c.set_dns_family(dnsFamily(dns.ippreference()));
        }
      }
    } else if (spec.servicediscovery().has_awscloudmap()) {
      auto eps = cloudMapEndpoints(spec.servicediscovery().awscloudmap(), port, node);
      if (!eps) return Unexpected<Error>{eps.error()};
      setRegistryEndpoints(c, std::move(*eps), node);
    } else {
      warn("target virtual node \"" + node + "\" has no serviceDiscovery; its traffic gets 503");
    }
    if (c.endpoints_size() > 0) {
      auto tls = upstreamTls(policy, port, policy_where);
      if (!tls) return Unexpected<Error>{tls.error()};
      if (*tls) {
        // App Mesh: without subjectAlternativeNames in the caller's policy, the certificate of
        // the terminating endpoint must match the target's service discovery name.
        if ((*tls)->validation().match_subject_alt_names().empty()) {
          std::string name = discoveryName(spec.servicediscovery());
          if (!name.empty())
            *(*tls)->mutable_validation()->add_match_subject_alt_names() = sanMatcher(name);
        }
        *c.mutable_tls() = std::move(**tls);
      }
      if (strictMtls()) {
        Status st = strictEgress(c, node);
        if (!st) return Unexpected<Error>{st.error()};
      }
      if (l->has_outlierdetection()) {
        const am::OutlierDetection& o = l->outlierdetection();
        v1::OutlierDetection* out = c.mutable_outlier_detection();
        out->set_max_server_errors(static_cast<uint32_t>(o.maxservererrors()));
        *out->mutable_interval() = toDuration(o.interval());
        *out->mutable_base_ejection_duration() = toDuration(o.baseejectionduration());
        out->set_max_ejection_percent(static_cast<uint32_t>(o.maxejectionpercent()));
      }
      clusters_[name] = std::move(c);
      result = name;
    } else if (spec.servicediscovery().has_awscloudmap() || in_registry) {
      warn("target virtual node \"" + node +
           "\" has no healthy Cloud Map instance; its traffic gets 503");
    }
    egress_[name] = result;
    return result;
  }

  // Resolves a rule's targets to weighted clusters (duplicates merged, missing ones dropped).
  Result<std::vector<v1::WeightedCluster>> clustersOf(const RouteRule& rule, uint32_t port_hint,
                                                      const am::ClientPolicy* policy,
                                                      const std::string& policy_where) {
    std::vector<v1::WeightedCluster> out;
    for (const Target& t : rule.targets) {
      auto name = egressCluster(t.node, t.port, port_hint, rule.protocol, policy, policy_where);
      if (!name) return Unexpected<Error>{name.error()};
      if (!*name) continue;
      auto same = std::find_if(out.begin(), out.end(),
                               [&](const v1::WeightedCluster& w) { return w.name() == **name; });
      if (same != out.end()) {
        same->set_weight(same->weight() + t.weight);
        continue;
      }
      v1::WeightedCluster w;
      w.set_name(**name);
      w.set_weight(t.weight);
      out.push_back(std::move(w));
    }
    return out;
  }

  // Appends the weft route for `rule` entered through `gateway` (nullptr: straight from the
  // caller) with a combined path. Answers false when no route was added.
  Result<bool> addRoute(v1::VirtualHost& vh, const RouteRule& rule, const GatewayRule* gateway,
                        const PathSpec& entry_path, const std::optional<std::string>& entry_rewrite,
                        uint32_t port_hint, const am::ClientPolicy* policy,
                        const std::string& policy_where) {
    bool unsupported_combination = false;
    auto combined =
        combinePaths(entry_path, entry_rewrite, rule.match.path, unsupported_combination);
    std::string route_name = gateway ? gateway->name : rule.name.empty() ? "default" : rule.name;
    if (gateway && !rule.name.empty()) route_name += "/" + rule.name;
    if (unsupported_combination) {
      warn("gateway route \"" + (gateway ? gateway->name : std::string()) + "\" with route \"" +
           rule.name +
           "\": the gateway's path match and rewrite cannot be combined with the route's path "
           "match in one proxy route; skipped");
      return false;
    }
    if (!combined) return false;
    v1::Route r;
    r.set_name(route_name);
    if (gateway) {
      if (gateway->priority) r.set_priority(*gateway->priority);
    } else if (rule.priority) {
      r.set_priority(*rule.priority);
    }
    v1::RouteMatch* m = r.mutable_match();
    setPath(combined->path, *m);
    std::string method = gateway ? gateway->match.method : std::string();
    if (!rule.match.method.empty()) {
      if (!method.empty() && method != rule.match.method) return false;
      method = rule.match.method;
    }
    m->set_method(method);
    if (gateway)
      for (const auto& h : gateway->match.headers) *m->add_headers() = h;
    for (const auto& h : rule.match.headers) *m->add_headers() = h;
    if (gateway)
      for (const auto& q : gateway->match.query) *m->add_query_parameters() = q;
    for (const auto& q : rule.match.query) *m->add_query_parameters() = q;

    auto clusters = clustersOf(rule, port_hint, policy, policy_where);
    if (!clusters) return Unexpected<Error>{clusters.error()};
    uint64_t total = 0;
    for (const auto& w : *clusters) total += w.weight();
    if (clusters->empty() || (clusters->size() > 1 && total == 0)) {
      v1::DirectResponse* d = r.mutable_direct_response();
      d->set_status(kNoUpstreamStatus);
      d->set_body("no healthy upstream");
      *vh.add_routes() = std::move(r);
      return true;
    }
    v1::RouteAction* a = r.mutable_route();
    for (auto& w : *clusters) *a->add_clusters() = std::move(w);
    if (combined->prefix_rewrite) a->set_prefix_rewrite(*combined->prefix_rewrite);
    if (gateway && gateway->rewrite_host) a->set_host_rewrite(gateway->target_service);
    if (rule.timeout) *a->mutable_timeout() = *rule.timeout;
    if (rule.idle) *a->mutable_idle_timeout() = *rule.idle;
    if (rule.retry) *a->mutable_retry_policy() = *rule.retry;
    *vh.add_routes() = std::move(r);
    return true;
  }

  // The implicit route App Mesh creates for a virtual-node provider's listener.
  static RouteRule providerRule(const std::string& node, const am::Listener& l) {
    RouteRule rule;
    rule.protocol = l.portmapping().protocol();
    rule.match.path = {PathSpec::kPrefix, "/"};
    rule.targets.push_back(Target{node, static_cast<uint32_t>(l.portmapping().port()), 100});
    rule.retry = defaultRetry(rule.protocol);
    const am::ListenerTimeout& t = l.timeout();
    if (rule.protocol == "http" && t.has_http()) timeoutsOf(t.http(), rule);
    if (rule.protocol == "http2" && t.has_http2()) timeoutsOf(t.http2(), rule);
    if (rule.protocol == "grpc" && t.has_grpc()) timeoutsOf(t.grpc(), rule);
    if (rule.protocol == "tcp" && t.has_tcp() && t.tcp().has_idle())
      rule.idle = toDuration(t.tcp().idle());
    return rule;
  }

  // The routes of a router's listener, in evaluation order.
  Result<std::vector<RouteRule>> routerRules(const std::string& router, uint32_t port,
                                             const std::string& protocol) {
    auto routes = listChildren(Kind::kRoute, router);
    if (!routes) return Unexpected<Error>{routes.error()};
    std::vector<RouteRule> out;
    for (const am::StoredResource& rec : *routes) {
      RouteRule rule = ruleOf(rec.route());
      if (rule.protocol != protocol || (rule.port && *rule.port != port)) continue;
      out.push_back(std::move(rule));
    }
    std::stable_sort(out.begin(), out.end(), [](const RouteRule& a, const RouteRule& b) {
      return ruleOrderKey(a.priority, a.match.path, a.name) <
             ruleOrderKey(b.priority, b.match.path, b.name);
    });
    return out;
  }

  // ---- virtual node ----

  Result<ChainBuild*> httpChain(std::map<uint32_t, ChainBuild>& chains, uint32_t port,
                                const std::string& service) {
    auto it = chains.find(port);
    if (it == chains.end()) {
      ChainBuild b;
      b.owner = service;
      b.chain.set_name("http_" + std::to_string(port));
      b.chain.add_destination_ports(port);
      it = chains.emplace(port, std::move(b)).first;
    } else if (it->second.tcp) {
      warn("backend \"" + service + "\": port " + std::to_string(port) +
           " is already taken by the TCP backend \"" + it->second.owner + "\"; skipped there");
      return static_cast<ChainBuild*>(nullptr);
    }
    return &it->second;
  }

  void tcpChain(std::map<uint32_t, ChainBuild>& chains, uint32_t port, const std::string& service,
                const std::string& cluster, const std::optional<pb::Duration>& idle) {
    if (chains.count(port)) {
      warn("backend \"" + service + "\": port " + std::to_string(port) +
           " is already taken by the backend \"" + chains[port].owner +
           "\" (the outbound listener tells TCP services apart only by port); skipped there");
      return;
    }
    ChainBuild b;
    b.tcp = true;
    b.owner = service;
    b.chain.set_name("tcp_" + std::to_string(port));
    b.chain.add_destination_ports(port);
    b.chain.mutable_tcp_proxy()->set_cluster(cluster);
    if (idle) *b.chain.mutable_tcp_proxy()->mutable_idle_timeout() = *idle;
    chains.emplace(port, std::move(b));
  }

  v1::VirtualHost& serviceHost(ChainBuild& chain, const std::string& service, uint32_t port) {
    v1::VirtualHost* vh = chain.chain.mutable_route_config()->add_virtual_hosts();
    vh->set_name(service);
    vh->add_domains(service);
    vh->add_domains(service + ":" + std::to_string(port));
    return *vh;
  }

  Status addBackend(const std::string& service, const am::ClientPolicy* policy,
                    const std::string& policy_where, std::map<uint32_t, ChainBuild>& chains) {
    auto vs = load(Kind::kVirtualService, service);
    if (!vs) return Unexpected<Error>{vs.error()};
    if (!vs->has_value()) {
      warn("backend virtual service \"" + service + "\" does not exist (yet); skipped");
      return {};
    }
    const am::VirtualServiceProvider& provider = (*vs)->virtualservice().spec().provider();
    if (provider.has_virtualnode()) {
      const std::string& node = provider.virtualnode().virtualnodename();
      auto data = targetNode(node);
      if (!data) return Unexpected<Error>{data.error()};
      if (*data == nullptr) {
        warn("virtual service \"" + service + "\": provider virtual node \"" + node +
             "\" does not exist; skipped");
        return {};
      }
      std::set<uint32_t> seen;
      for (const am::Listener& l : (*data)->spec().listeners()) {
        uint32_t port = static_cast<uint32_t>(l.portmapping().port());
        if (!seen.insert(port).second) continue;
        RouteRule rule = providerRule(node, l);
        if (isHttpFamily(rule.protocol)) {
          auto chain = httpChain(chains, port, service);
          if (!chain) return Unexpected<Error>{chain.error()};
          if (*chain == nullptr) continue;
          v1::VirtualHost& vh = serviceHost(**chain, service, port);
          auto added =
              addRoute(vh, rule, nullptr, PathSpec{}, std::nullopt, port, policy, policy_where);
          if (!added) return Unexpected<Error>{added.error()};
        } else {
          auto cluster = clustersOf(rule, port, policy, policy_where);
          if (!cluster) return Unexpected<Error>{cluster.error()};
          if (!cluster->empty()) tcpChain(chains, port, service, (*cluster)[0].name(), rule.idle);
        }
      }
      return {};
    }
    if (provider.has_virtualrouter()) {
      const std::string& router = provider.virtualrouter().virtualroutername();
      auto r = load(Kind::kVirtualRouter, router);
      if (!r) return Unexpected<Error>{r.error()};
      if (!r->has_value()) {
        warn("virtual service \"" + service + "\": provider virtual router \"" + router +
             "\" does not exist; skipped");
        return {};
      }
      std::set<uint32_t> seen;
      for (const am::VirtualRouterListener& rl : (*r)->virtualrouter().spec().listeners()) {
        uint32_t port = static_cast<uint32_t>(rl.portmapping().port());
        const std::string& protocol = rl.portmapping().protocol();
        if (!seen.insert(port).second) continue;
        auto rules = routerRules(router, port, protocol);
        if (!rules) return Unexpected<Error>{rules.error()};
        if (isHttpFamily(protocol)) {
          auto chain = httpChain(chains, port, service);
          if (!chain) return Unexpected<Error>{chain.error()};
          if (*chain == nullptr) continue;
          v1::VirtualHost& vh = serviceHost(**chain, service, port);
          for (const RouteRule& rule : *rules) {
            auto added =
                addRoute(vh, rule, nullptr, PathSpec{}, std::nullopt, port, policy, policy_where);
            if (!added) return Unexpected<Error>{added.error()};
          }
          if (vh.routes_size() == 0) {
            // A service with no route yet answers 503 rather than the egress filter's verdict.
            v1::Route* none = vh.add_routes();
            none->set_name("no-route");
            none->mutable_match()->set_prefix("/");
            none->mutable_direct_response()->set_status(kNoUpstreamStatus);
            none->mutable_direct_response()->set_body("no route");
          }
        } else if (!rules->empty()) {
          // weft's TCP relay has one cluster: the first route, its heaviest target.
          RouteRule rule = rules->front();
          if (rules->size() > 1)
            warn("virtual router \"" + router + "\": only the first TCP route (\"" + rule.name +
                 "\") is used on port " + std::to_string(port));
          if (rule.targets.size() > 1) {
            auto heaviest = std::max_element(
                rule.targets.begin(), rule.targets.end(),
                [](const Target& a, const Target& b) { return a.weight < b.weight; });
            Target t = *heaviest;
            rule.targets = {t};
            warn("route \"" + rule.name +
                 "\": weighted TCP targets are not supported; all traffic goes to \"" + t.node +
                 "\"");
          }
          auto cluster = clustersOf(rule, port, policy, policy_where);
          if (!cluster) return Unexpected<Error>{cluster.error()};
          if (!cluster->empty()) tcpChain(chains, port, service, (*cluster)[0].name(), rule.idle);
        }
      }
      return {};
    }
    warn("virtual service \"" + service + "\" has no provider; skipped");
    return {};
  }

  template <class Logging>
  void addAccessLogs(const Logging& logging, v1::Listener& l) {
    if (!logging.has_accesslog() || !logging.accesslog().has_file()) return;
    const auto& f = logging.accesslog().file();
    v1::AccessLog* log = l.add_access_logs();
    log->set_path(f.path());
    if (f.has_format() && f.format().has_text()) {
      log->set_text_format(f.format().text());
    } else if (f.has_format() && !f.format().json().empty()) {
      auto* fields = log->mutable_json_format()->mutable_fields();
      for (const am::JsonFormatRef& j : f.format().json()) (*fields)[j.key()] = j.value();
    }
  }

  static void defaultHttpOptions(v1::Listener& l) {
    *l.mutable_http()->mutable_request_timeout() = seconds(kDefaultRequestTimeoutSeconds);
    *l.mutable_http()->mutable_idle_timeout() = seconds(kDefaultIdleTimeoutSeconds);
  }

  Status buildNode() {
    auto rec = load(Kind::kVirtualNode, who_.name);
    if (!rec) return Unexpected<Error>{rec.error()};
    if (!rec->has_value())
      return notFound("virtual node \"" + who_.name + "\" not found in mesh \"" + who_.mesh + "\"");
    const am::VirtualNodeSpec& spec = (*rec)->virtualnode().spec();

    // Inbound: one chain per listener, toward the local app.
    v1::Listener in;
    in.set_name("lds_ingress_0.0.0.0_" + std::to_string(kInboundPort));
    in.set_address("0.0.0.0");
    in.set_port(kInboundPort);
    in.mutable_interception()->set_direction(v1::Interception::INBOUND);
    defaultHttpOptions(in);
    addAccessLogs(spec.logging(), in);
    std::optional<std::string> tls_bytes;
    std::set<uint32_t> ports;
    for (int i = 0; i < spec.listeners_size(); ++i) {
      const am::Listener& l = spec.listeners(i);
      const std::string where = "spec.listeners[" + std::to_string(i) + "]";
      uint32_t port = static_cast<uint32_t>(l.portmapping().port());
      const std::string& protocol = l.portmapping().protocol();
      if (!ports.insert(port).second) continue;
      std::string bytes = l.has_tls() ? canonicalBytes(l.tls()) : std::string("-");
      if (tls_bytes && *tls_bytes != bytes)
        return unsupported(where +
                           ".tls: the listeners of a virtual node must share one TLS setting "
                           "in weft (its inbound listener has one TLS context); give every "
                           "listener the same tls");
      tls_bytes = bytes;
      if (l.has_tls()) {
        auto tls = listenerTls(l.tls(), where + ".tls");
        if (!tls) return Unexpected<Error>{tls.error()};
        if (*tls) *in.mutable_tls() = std::move(**tls);
      }

      std::string cluster_name = "cds_ingress_" + who_.mesh + "_" + who_.name + "_" + protocol +
                                 "_" + std::to_string(port);
      v1::Cluster c;
      c.set_name(cluster_name);
      c.set_type(v1::Cluster::STATIC);
      if (protocol == "http2" || protocol == "grpc") c.set_protocol(v1::Cluster::HTTP2);
      v1::Endpoint* e = c.add_endpoints();
      e->set_address("127.0.0.1");
      e->set_port(port);
      const am::VirtualNodeConnectionPool& pool = l.connectionpool();
      if (pool.has_http()) {
        c.set_max_connections(static_cast<uint32_t>(pool.http().maxconnections()));
        if (pool.http().has_maxpendingrequests())
          c.set_max_pending_requests(static_cast<uint32_t>(pool.http().maxpendingrequests()));
      } else if (pool.has_http2()) {
        c.set_max_requests(static_cast<uint32_t>(pool.http2().maxrequests()));
      } else if (pool.has_grpc()) {
        c.set_max_requests(static_cast<uint32_t>(pool.grpc().maxrequests()));
      } else if (pool.has_tcp()) {
        c.set_max_connections(static_cast<uint32_t>(pool.tcp().maxconnections()));
      }
      if (l.has_healthcheck()) {
        const am::HealthCheckPolicy& h = l.healthcheck();
        v1::HealthCheck* hc = c.mutable_health_check();
        hc->set_protocol(h.protocol() == "grpc"  ? v1::HealthCheck::GRPC
                         : h.protocol() == "tcp" ? v1::HealthCheck::TCP
                                                 : v1::HealthCheck::HTTP);
        if (h.protocol() == "http" || h.protocol() == "http2") hc->set_path(h.path());
        *hc->mutable_interval() = millis(h.intervalmillis());
        *hc->mutable_timeout() = millis(h.timeoutmillis());
        hc->set_healthy_threshold(static_cast<uint32_t>(h.healthythreshold()));
        hc->set_unhealthy_threshold(static_cast<uint32_t>(h.unhealthythreshold()));
        if (h.has_port()) hc->set_port(static_cast<uint32_t>(h.port()));
      }
      clusters_[cluster_name] = std::move(c);

      v1::FilterChain* chain = in.add_filter_chains();
      chain->set_name(protocol + "_" + std::to_string(port));
      chain->add_destination_ports(port);
      RouteRule timeouts = providerRule(who_.name, l);
      if (isHttpFamily(protocol)) {
        v1::VirtualHost* vh = chain->mutable_route_config()->add_virtual_hosts();
        vh->set_name(protocol + "_" + std::to_string(port));
        vh->add_domains("*");
        v1::Route* r = vh->add_routes();
        r->set_name("local_app");
        r->mutable_match()->set_prefix("/");
        v1::RouteAction* a = r->mutable_route();
        a->add_clusters()->set_name(cluster_name);
        if (timeouts.timeout) *a->mutable_timeout() = *timeouts.timeout;
        if (timeouts.idle) *a->mutable_idle_timeout() = *timeouts.idle;
      } else {
        chain->mutable_tcp_proxy()->set_cluster(cluster_name);
        if (timeouts.idle) *chain->mutable_tcp_proxy()->mutable_idle_timeout() = *timeouts.idle;
      }
    }

    if (strictMtls()) {
      Status st = strictInbound(in);
      if (!st) return st;
    }
    if (policy_.authorization == AuthorizationMode::kBackends && strictMtls()) {
      auto callers = allowedCallers();
      if (!callers) return Unexpected<Error>{callers.error()};
      v1::PeerAuthorization* authz = in.mutable_authorization();
      for (const std::string& id : *callers) authz->add_allowed()->set_uri(id);
    }

    // Outbound: what the app may call.
    v1::Listener out;
    out.set_name("lds_egress_0.0.0.0_" + std::to_string(kOutboundPort));
    out.set_address("0.0.0.0");
    out.set_port(kOutboundPort);
    out.mutable_interception()->set_direction(v1::Interception::OUTBOUND);
    out.mutable_interception()->set_egress_filter(mesh_.spec().egressfilter().type() == "ALLOW_ALL"
                                                      ? v1::Interception::ALLOW_ALL
                                                      : v1::Interception::DROP_ALL);
    defaultHttpOptions(out);
    addAccessLogs(spec.logging(), out);
    std::map<uint32_t, ChainBuild> chains;
    std::set<std::string> services;
    for (int i = 0; i < spec.backends_size(); ++i) {
      const am::Backend& b = spec.backends(i);
      if (!b.has_virtualservice()) continue;
      const std::string& service = b.virtualservice().virtualservicename();
      if (!services.insert(service).second) continue;
      const am::ClientPolicy* policy = nullptr;
      std::string where;
      if (b.virtualservice().has_clientpolicy() && b.virtualservice().clientpolicy().has_tls()) {
        policy = &b.virtualservice().clientpolicy();
        where = "spec.backends[" + std::to_string(i) + "].virtualService.clientPolicy";
      } else if (spec.backenddefaults().has_clientpolicy() &&
                 spec.backenddefaults().clientpolicy().has_tls()) {
        policy = &spec.backenddefaults().clientpolicy();
        where = "spec.backendDefaults.clientPolicy";
      }
      Status st = addBackend(service, policy, where, chains);
      if (!st) return st;
    }
    for (auto& [port, b] : chains) *out.add_filter_chains() = std::move(b.chain);

    *config_.add_listeners() = std::move(in);
    *config_.add_listeners() = std::move(out);
    return {};
  }

  // ---- virtual gateway ----

  // Adds the routes of gateway rule `g` to `vh` (listener on `port`).
  Status addGatewayRoutes(v1::VirtualHost& vh, const GatewayRule& g, uint32_t port,
                          const std::string& listener_protocol, const am::ClientPolicy* policy,
                          std::set<std::string>& used_clusters) {
    auto vs = load(Kind::kVirtualService, g.target_service);
    if (!vs) return Unexpected<Error>{vs.error()};
    if (!vs->has_value()) {
      warn("gateway route \"" + g.name + "\": target virtual service \"" + g.target_service +
           "\" does not exist; skipped");
      return {};
    }
    // The gateway's prefix rewrite of "/red" to "/" must not turn "/red/x" into "//x": a prefix
    // without a trailing slash is matched first with its slash.
    std::vector<std::pair<PathSpec, std::optional<std::string>>> entries;
    if (g.prefix_rewrite && g.match.path.kind == PathSpec::kPrefix &&
        !endsWith(g.match.path.value, "/") && endsWith(*g.prefix_rewrite, "/"))
      entries.push_back({{PathSpec::kPrefix, g.match.path.value + "/"}, g.prefix_rewrite});
    entries.push_back({g.match.path, g.prefix_rewrite});

    std::vector<RouteRule> rules;
    uint32_t port_hint = port;
    const am::VirtualServiceProvider& provider = (*vs)->virtualservice().spec().provider();
    if (provider.has_virtualnode()) {
      const std::string& node = provider.virtualnode().virtualnodename();
      auto data = targetNode(node);
      if (!data) return Unexpected<Error>{data.error()};
      const am::Listener* l =
          *data ? pickListener((*data)->spec(), g.target_port, port, listener_protocol) : nullptr;
      if (l) {
        rules.push_back(providerRule(node, *l));
      } else {
        RouteRule rule;  // resolves to a 503 (with a warning) through egressCluster
        rule.protocol = listener_protocol;
        rule.targets.push_back(Target{node, g.target_port, 100});
        rules.push_back(std::move(rule));
      }
    } else if (provider.has_virtualrouter()) {
      const std::string& router = provider.virtualrouter().virtualroutername();
      auto r = load(Kind::kVirtualRouter, router);
      if (!r) return Unexpected<Error>{r.error()};
      if (!r->has_value()) {
        warn("gateway route \"" + g.name + "\": virtual router \"" + router +
             "\" does not exist; skipped");
        return {};
      }
      const auto& rls = (*r)->virtualrouter().spec().listeners();
      const am::VirtualRouterListener* rl = nullptr;
      if (g.target_port) {
        for (const am::VirtualRouterListener& x : rls)
          if (static_cast<uint32_t>(x.portmapping().port()) == *g.target_port) {
            rl = &x;
            break;
          }
      } else if (rls.size() == 1) {
        rl = &rls[0];
      } else {
        for (const am::VirtualRouterListener& x : rls)
          if (x.portmapping().protocol() == listener_protocol) {
            rl = &x;
            break;
          }
        if (rl == nullptr && !rls.empty()) rl = &rls[0];
      }
      if (rl == nullptr) {
        warn("gateway route \"" + g.name + "\": virtual router \"" + router +
             "\" has no matching listener; skipped");
        return {};
      }
      port_hint = static_cast<uint32_t>(rl->portmapping().port());
      auto got = routerRules(router, port_hint, rl->portmapping().protocol());
      if (!got) return Unexpected<Error>{got.error()};
      rules = std::move(*got);
    } else {
      warn("gateway route \"" + g.name + "\": virtual service \"" + g.target_service +
           "\" has no provider; skipped");
      return {};
    }
    int before = vh.routes_size();
    for (const auto& [path, rewrite] : entries) {
      for (const RouteRule& rule : rules) {
        auto added = addRoute(vh, rule, &g, path, rewrite, port_hint, policy,
                              "spec.backendDefaults.clientPolicy");
        if (!added) return Unexpected<Error>{added.error()};
      }
    }
    for (int i = before; i < vh.routes_size(); ++i)
      for (const v1::WeightedCluster& w : vh.routes(i).route().clusters())
        used_clusters.insert(w.name());
    return {};
  }

  Status buildGateway() {
    auto rec = load(Kind::kVirtualGateway, who_.name);
    if (!rec) return Unexpected<Error>{rec.error()};
    if (!rec->has_value())
      return notFound("virtual gateway \"" + who_.name + "\" not found in mesh \"" + who_.mesh +
                      "\"");
    const am::VirtualGatewaySpec& spec = (*rec)->virtualgateway().spec();
    std::optional<am::ClientPolicy> policy;
    if (spec.backenddefaults().has_clientpolicy() &&
        spec.backenddefaults().clientpolicy().has_tls())
      policy = sameShape<am::ClientPolicy>(spec.backenddefaults().clientpolicy());

    auto routes = listChildren(Kind::kGatewayRoute, who_.name);
    if (!routes) return Unexpected<Error>{routes.error()};
    std::vector<GatewayRule> rules;
    for (const am::StoredResource& r : *routes) {
      GatewayRule g = gatewayRuleOf(r.gatewayroute());
      if (!g.unsupported.empty()) {
        warn("gateway route \"" + g.name + "\": " + g.unsupported + "; skipped");
        continue;
      }
      rules.push_back(std::move(g));
    }
    // Priority, then path specificity, then name (as routes).
    std::stable_sort(rules.begin(), rules.end(), [](const GatewayRule& a, const GatewayRule& b) {
      return ruleOrderKey(a.priority, a.match.path, a.name) <
             ruleOrderKey(b.priority, b.match.path, b.name);
    });

    std::set<uint32_t> ports;
    for (int i = 0; i < spec.listeners_size(); ++i) {
      const am::VirtualGatewayListener& gl = spec.listeners(i);
      const std::string where = "spec.listeners[" + std::to_string(i) + "]";
      uint32_t port = static_cast<uint32_t>(gl.portmapping().port());
      const std::string& protocol = gl.portmapping().protocol();
      if (!ports.insert(port).second) continue;
      v1::Listener l;
      l.set_name("lds_ingress_0.0.0.0_" + std::to_string(port));
      l.set_address("0.0.0.0");
      l.set_port(port);
      defaultHttpOptions(l);
      addAccessLogs(spec.logging(), l);
      if (gl.has_tls()) {
        auto tls = listenerTls(sameShape<am::ListenerTls>(gl.tls()), where + ".tls");
        if (!tls) return Unexpected<Error>{tls.error()};
        if (*tls) *l.mutable_tls() = std::move(**tls);
      }
      std::vector<const GatewayRule*> mine;
      std::set<std::string> domains;
      for (const GatewayRule& g : rules) {
        if (g.protocol != protocol || (g.port && *g.port != port)) continue;
        mine.push_back(&g);
        if (g.host) domains.insert(g.host->suffix ? "*" + g.host->value : g.host->value);
      }
      std::vector<std::string> ordered(domains.begin(), domains.end());
      ordered.push_back("*");
      std::set<std::string> used;
      for (const std::string& domain : ordered) {
        v1::VirtualHost vh;
        vh.set_name(domain == "*" ? "any" : domain);
        vh.add_domains(domain);
        for (const GatewayRule* g : mine) {
          if (!hostRuleApplies(g->host, domain)) continue;
          Status st = addGatewayRoutes(vh, *g, port, protocol, policy ? &*policy : nullptr, used);
          if (!st) return st;
        }
        if (vh.routes_size() == 0) {
          v1::Route* none = vh.add_routes();
          none->set_name("no-route");
          none->mutable_match()->set_prefix("/");
          none->mutable_direct_response()->set_status(404);
          none->mutable_direct_response()->set_body("no gateway route matches");
        }
        *l.mutable_route_config()->add_virtual_hosts() = std::move(vh);
      }
      // The gateway listener's connection pool bounds the clusters it sends to.
      const am::VirtualGatewayConnectionPool& pool = gl.connectionpool();
      auto lower = [](uint32_t current, int32_t limit) {
        uint32_t l = static_cast<uint32_t>(limit);
        return current == 0 ? l : std::min(current, l);
      };
      for (const std::string& name : used) {
        auto it = clusters_.find(name);
        if (it == clusters_.end()) continue;
        v1::Cluster& c = it->second;
        if (pool.has_http()) {
          c.set_max_connections(lower(c.max_connections(), pool.http().maxconnections()));
          if (pool.http().has_maxpendingrequests())
            c.set_max_pending_requests(
                lower(c.max_pending_requests(), pool.http().maxpendingrequests()));
        } else if (pool.has_http2()) {
          c.set_max_requests(lower(c.max_requests(), pool.http2().maxrequests()));
        } else if (pool.has_grpc()) {
          c.set_max_requests(lower(c.max_requests(), pool.grpc().maxrequests()));
        }
      }
      *config_.add_listeners() = std::move(l);
    }
    return {};
  }

  Store& store_;
  const CompileOptions& options_;
  const ProxyIdentity& who_;
  am::MeshData mesh_;
  v1::ProxyConfig config_;
  std::set<std::string> deps_;
  std::vector<std::string> warnings_;
  std::map<std::string, v1::Cluster> clusters_;
  std::map<std::string, std::optional<am::VirtualNodeData>> nodes_;
  std::map<std::string, std::optional<std::string>> egress_;
  const CertificateSource* certificates_;
  std::map<std::string, CertMaterial> acm_;  // by ARN
  MeshPolicy policy_;
  std::optional<std::string> mesh_trust_;  // the mesh identity CA's roots, once read
};

}  // namespace

std::string ProxyIdentity::resource() const {
  return "mesh/" + mesh + "/" + std::string(appmesh::kindName(kind)) + "/" + name;
}

Result<ProxyIdentity> parseProxyResource(std::string_view text) {
  auto r = meshconfig::parseProxyResource(text);
  if (!r) return Unexpected<Error>{r.error()};
  return ProxyIdentity{r->gateway ? Kind::kVirtualGateway : Kind::kVirtualNode, std::move(r->mesh),
                       std::move(r->name)};
}

Compiler::Compiler(Store& store, CompileOptions options, const CertificateSource* certificates)
    : store_(store), options_(std::move(options)), certificates_(certificates) {}

Result<CompileResult> Compiler::compile(const ProxyIdentity& who) const {
  Compilation c(store_, options_, who, certificates_);
  return c.run();
}

void redactSecrets(v1::ProxyConfig& config) {
  auto redact = [](v1::TlsCertificate* cert) {
    if (!cert->private_key_pem().empty()) cert->set_private_key_pem("[redacted]");
  };
  for (v1::Listener& l : *config.mutable_listeners())
    if (l.has_tls() && l.tls().has_certificate()) redact(l.mutable_tls()->mutable_certificate());
  for (v1::Cluster& c : *config.mutable_clusters())
    if (c.has_tls() && c.tls().has_certificate()) redact(c.mutable_tls()->mutable_certificate());
}

}  // namespace weft::control::compile
