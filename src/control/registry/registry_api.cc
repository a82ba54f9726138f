#include "control/registry/registry_api.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "common/json.h"
#include "common/log.h"
#include "control/api/crypto_util.h"
#include "control/registry/dns_message.h"
#include "control/stacks/json_value.h"
#include "net/socket.h"

namespace weft::control::registry {
namespace {

using stacks::Value;

constexpr int kMaxAttempts = 32;
constexpr std::string_view kRoute53Prefix = "/2013-04-01/";
constexpr std::string_view kNetworksPath = "/weft/v1/networks";
constexpr const char* kRoute53Ns = "https://route53.amazonaws.com/doc/2013-04-01/";
constexpr int kMaxAttributes = 30;

// Cloud Map's error names; weft::Error::code carries one of these. A message may carry extra
// members for the error body after a NUL: "text\0{json object}".
enum CmError : int {
  kInvalidInput = 2001,
  kNamespaceNotFound,
  kServiceNotFound,
  kInstanceNotFound,
  kOperationNotFound,
  kNamespaceAlreadyExists,
  kServiceAlreadyExists,
  kResourceInUse,
  kDuplicateRequest,
  kCustomHealthNotFound,
  kResourceNotFound,
  kRequestLimitExceeded,
  kResourceLimitExceeded,
  // Route 53 and networks
  kNoSuchHostedZone,
  kInvalidVpcId,
  kVpcAssociationNotFound,
  kLastVpcAssociation,
  kPublicZoneVpcAssociation,
  kConflictingDomainExists,
  kNotFound,
  kUnknownOperation,
};

const char* errorName(int code) {
  switch (code) {
    case kInvalidInput:
      return "InvalidInput";
    case kNamespaceNotFound:
      return "NamespaceNotFound";
    case kServiceNotFound:
      return "ServiceNotFound";
    case kInstanceNotFound:
      return "InstanceNotFound";
    case kOperationNotFound:
      return "OperationNotFound";
    case kNamespaceAlreadyExists:
      return "NamespaceAlreadyExists";
    case kServiceAlreadyExists:
      return "ServiceAlreadyExists";
    case kResourceInUse:
      return "ResourceInUse";
    case kDuplicateRequest:
      return "DuplicateRequest";
    case kCustomHealthNotFound:
      return "CustomHealthNotFound";
    case kResourceNotFound:
      return "ResourceNotFoundException";
    case kRequestLimitExceeded:
      return "RequestLimitExceeded";
    case kResourceLimitExceeded:
      return "ResourceLimitExceeded";
    case kNoSuchHostedZone:
      return "NoSuchHostedZone";
    case kInvalidVpcId:
      return "InvalidVPCId";
    case kVpcAssociationNotFound:
      return "VPCAssociationNotFound";
    case kLastVpcAssociation:
      return "LastVPCAssociation";
    case kPublicZoneVpcAssociation:
      return "PublicZoneVPCAssociation";
    case kConflictingDomainExists:
      return "ConflictingDomainExists";
    case kNotFound:
      return "NotFoundException";
    case kUnknownOperation:
      return "UnknownOperationException";
    default:
      return "InternalFailure";
  }
}

Unexpected<Error> fail(CmError code, std::string message) {
  return makeError(std::move(message), code);
}
Unexpected<Error> invalid(std::string message) { return fail(kInvalidInput, std::move(message)); }

bool isApiError(const Error& e) { return e.code >= kInvalidInput && e.code <= kUnknownOperation; }

// ---- small helpers over Value

std::string_view str(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? m->str() : std::string_view();
}

int64_t num(const Value& v, std::string_view key, int64_t fallback = 0) {
  const Value* m = v.find(key);
  if (!m || !m->isNumber()) return fallback;
  return std::strtoll(m->text().c_str(), nullptr, 10);
}

Value without(const Value& v, std::initializer_list<std::string_view> keys) {
  Value out = Value::object();
  for (const auto& [k, m] : v.members()) {
    bool drop = false;
    for (auto key : keys) drop = drop || k == key;
    if (!drop) out.set(k, m);
  }
  return out;
}

Value obj(std::initializer_list<std::pair<std::string, Value>> members) {
  Value out = Value::object();
  for (const auto& [k, v] : members) out.set(k, v);
  return out;
}

constexpr std::string_view kLowerAlnum = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kUpperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
constexpr std::string_view kHex = "0123456789abcdef";

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// ---- request validation

Result<std::string> requiredString(const Value& req, std::string_view key, size_t max_len) {
  const Value* v = req.find(key);
  if (!v || v->isNull()) return invalid(std::string(key) + " is required");
  if (!v->isString()) return invalid(std::string(key) + " must be a string");
  if (v->str().empty()) return invalid(std::string(key) + " must not be empty");
  if (v->str().size() > max_len)
    return invalid(std::string(key) + " is longer than " + std::to_string(max_len) + " characters");
  return std::string(v->str());
}

Result<std::optional<std::string>> optionalString(const Value& req, std::string_view key,
                                                  size_t max_len) {
  const Value* v = req.find(key);
  if (!v || v->isNull()) return std::optional<std::string>();
  if (!v->isString()) return invalid(std::string(key) + " must be a string");
  if (v->str().size() > max_len)
    return invalid(std::string(key) + " is longer than " + std::to_string(max_len) + " characters");
  return std::optional<std::string>(std::string(v->str()));
}

Result<int64_t> optionalInt(const Value& req, std::string_view key, int64_t lo, int64_t hi,
                            int64_t fallback) {
  const Value* v = req.find(key);
  if (!v || v->isNull()) return fallback;
  if (!v->isNumber() || v->text().find_first_of(".eE") != std::string::npos)
    return invalid(std::string(key) + " must be an integer");
  errno = 0;
  long long n = std::strtoll(v->text().c_str(), nullptr, 10);
  if (errno == ERANGE || n < lo || n > hi)
    return invalid(std::string(key) + " " + v->text() + " is out of range " + std::to_string(lo) +
                   "-" + std::to_string(hi));
  return static_cast<int64_t>(n);
}

bool dnsLabelOk(std::string_view l, bool allow_underscore) {
  if (l.empty() || l.size() > 63) return false;
  for (char c : l)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
          (allow_underscore && c == '_')))
      return false;
  return true;
}

// A DNS name of LDH(+_) labels (a trailing dot allowed), at most 253 characters.
bool dnsNameOk(std::string_view name, bool allow_underscore) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  size_t pos = 0;
  while (true) {
    size_t dot = name.find('.', pos);
    std::string_view label =
        name.substr(pos, dot == std::string_view::npos ? name.npos : dot - pos);
    if (!dnsLabelOk(label, allow_underscore)) return false;
    if (dot == std::string_view::npos) return true;
    pos = dot + 1;
  }
}

bool printableAscii(std::string_view s) {
  for (char c : s)
    if (c < '!' || c > '~') return false;
  return !s.empty();
}

bool instanceIdOk(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) ||
          std::string_view("_/:.@-").find(c) != std::string_view::npos))
      return false;
  return true;
}

bool attrValueOk(std::string_view v) {
  if (v.size() > 1024) return false;
  if (v.empty()) return true;
  auto visible = [](char c) { return c >= '!' && c <= '~'; };
  if (!visible(v.front()) || !visible(v.back())) return false;
  for (char c : v)
    if (!(visible(c) || c == ' ' || c == '\t')) return false;
  return true;
}

Value nowNumber(const TimeSource& time) {
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(time.systemNow().time_since_epoch())
          .count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ms / 1000),
                static_cast<long long>(ms % 1000));
  return Value::number(std::string(buf));
}

std::string isoTime(const TimeSource& time) {
  std::time_t t = std::chrono::system_clock::to_time_t(time.systemNow());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
  return buf;
}

std::string xmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string xmlUnescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    static const std::pair<std::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (auto [e, c] : kEntities)
      if (s.substr(i, e.size()) == e) {
        out.push_back(c);
        i += e.size() - 1;
        done = true;
        break;
      }
    if (!done) out.push_back('&');
  }
  return out;
}

// The text of the first <tag>...</tag> inside `xml` (Route 53 request bodies are flat enough).
std::optional<std::string> xmlText(std::string_view xml, std::string_view tag) {
  std::string open = "<" + std::string(tag) + ">", close = "</" + std::string(tag) + ">";
  size_t a = xml.find(open);
  if (a == std::string_view::npos) return std::nullopt;
  a += open.size();
  size_t b = xml.find(close, a);
  if (b == std::string_view::npos) return std::nullopt;
  std::string_view t = xml.substr(a, b - a);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  return xmlUnescape(t);
}

std::string zoneName(std::string_view name) {
  std::string n = dns::lowerAscii(name);
  while (!n.empty() && n.back() == '.') n.pop_back();
  return n;
}

// Route 53 orders hosted zones by name with the labels reversed ("com.example.www").
std::string reversedLabels(std::string_view name) {
  std::vector<std::string_view> labels;
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t dot = name.find('.', pos);
    if (dot == std::string_view::npos) dot = name.size();
    labels.push_back(name.substr(pos, dot - pos));
    pos = dot + 1;
  }
  std::string out;
  for (auto it = labels.rbegin(); it != labels.rend(); ++it) {
    if (!out.empty()) out.push_back('.');
    out += *it;
  }
  return out;
}

struct Loaded {
  Value value;
  int64_t revision = 0;
};

}  // namespace

struct RegistryApi::Impl {
  Store& store;
  const TimeSource& time;
  RegistryOptions options;
  SnapshotHolder snapshots;
  std::mutex refresh_mu;        // serialises refreshes so snapshots are published in listing order
  SnapshotBuilder builder;      // guarded by refresh_mu
  int64_t built_revision = -1;  // guarded by refresh_mu: store revision the snapshot reflects

  Impl(Store& s, const TimeSource& t, RegistryOptions o)
      : store(s), time(t), options(std::move(o)) {}

  // ---- store access

  Result<std::optional<Loaded>> load(const std::string& key) {
    auto kv = store.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (!kv->has_value()) return std::optional<Loaded>();
    auto v = stacks::parseJson((*kv)->value);
    if (!v) return makeError("corrupt record at " + key + ": " + v.error().message);
    return std::optional<Loaded>(Loaded{std::move(*v), (*kv)->revision});
  }

  Result<std::vector<std::pair<std::string, Loaded>>> listRecords(const std::string& prefix) {
    auto kvs = store.list(prefix, "", 0);
    if (!kvs) return Unexpected<Error>{kvs.error()};
    std::vector<std::pair<std::string, Loaded>> out;
    for (auto& kv : *kvs) {
      auto v = stacks::parseJson(kv.value);
      if (!v) return makeError("corrupt record at " + kv.key + ": " + v.error().message);
      out.emplace_back(kv.key.substr(prefix.size()), Loaded{std::move(*v), kv.revision});
    }
    return out;
  }

  Result<Loaded> loadNamespace(std::string_view id) {
    auto l = load("registry/namespaces/" + std::string(id));
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value()) return fail(kNamespaceNotFound, "Namespace not found: " + std::string(id));
    return std::move(**l);
  }
  Result<Loaded> loadService(std::string_view id) {
    auto l = load("registry/services/" + std::string(id));
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value()) return fail(kServiceNotFound, "Service not found: " + std::string(id));
    return std::move(**l);
  }
  Result<Loaded> loadInstance(std::string_view service_id, std::string_view id) {
    auto l = load("registry/instances/" + std::string(service_id) + "/" + std::string(id));
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value())
      return fail(kInstanceNotFound, "Instance not found: " + std::string(id) + " in service " +
                                         std::string(service_id));
    return std::move(**l);
  }

  // Runs `plan` (which reads and answers the ops to commit and the reply) until its commit
  // succeeds; refreshes the snapshot after a write.
  struct Plan {
    std::vector<StoreOp> ops;
    Value reply;
  };
  Result<Value> mutate(const std::function<Result<Plan>()>& plan) {
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto p = plan();
      if (!p) return Unexpected<Error>{p.error()};
      if (p->ops.empty()) return std::move(p->reply);
      auto committed = store.commit(p->ops);
      if (committed) {
        if (auto st = refresh(*committed); !st)
          log::error("registry", "refreshing the DNS snapshot: " + st.error().message);
        return std::move(p->reply);
      }
      if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
    }
    return fail(kRequestLimitExceeded,
                "too many concurrent changes to the same resources; retry the request");
  }

  // Publishes a snapshot that reflects at least store revision `at_least` (0: the current one).
  // Writers that committed while another refresh waited on the lock are covered by the first
  // listing made after their commit: concurrent writes share one rebuild.
  Status refresh(int64_t at_least = 0) {
    std::lock_guard<std::mutex> lock(refresh_mu);
    if (at_least > 0 && built_revision >= at_least) return {};
    // The revision read before listing bounds what the listing includes from below.
    auto revision = store.commit({});
    if (!revision) return Unexpected<Error>{revision.error()};
    std::vector<KeyValue> kvs;
    for (const char* prefix : kSnapshotPrefixes) {
      auto part = store.list(prefix, "", 0);
      if (!part) return Unexpected<Error>{part.error()};
      std::move(part->begin(), part->end(), std::back_inserter(kvs));
    }
    snapshots.store(builder.build(kvs, static_cast<uint32_t>(std::max<int64_t>(*revision, 1))));
    built_revision = *revision;
    return {};
  }

  std::string account(const ApiRequest& r) const {
    return r.account_id.empty() ? options.account_id : r.account_id;
  }

  // A SUCCESS operation record (Cloud Map runs these asynchronously; weft finishes them at once).
  StoreOp operation(const std::string& type,
                    std::vector<std::pair<std::string, std::string>> targets, std::string* id_out) {
    std::string id = randomString(32, kLowerAlnum) + "-" + randomString(8, kLowerAlnum);
    Value t = Value::object();
    for (auto& [k, v] : targets) t.set(k, Value::string(v));
    Value now = nowNumber(time);
    Value op = obj({{"Id", Value::string(id)},
                    {"Type", Value::string(type)},
                    {"Status", Value::string("SUCCESS")},
                    {"CreateDate", now},
                    {"UpdateDate", now},
                    {"Targets", t}});
    *id_out = id;
    return StoreOp::put("registry/operations/" + id, stacks::toJson(op), StoreOp::kAbsent);
  }

  // ---- Cloud Map operations

  Result<Value> createNamespace(const ApiRequest& r, const Value& req, const std::string& type) {
    size_t max_name = type == "HTTP" ? 1024 : 253;
    auto name = requiredString(req, "Name", max_name);
    if (!name) return Unexpected<Error>{name.error()};
    if (type == "HTTP" ? !printableAscii(*name) : !dnsNameOk(*name, false))
      return invalid("Name '" + *name + "' is not a valid " +
                     (type == "HTTP" ? std::string("namespace name (printable ASCII)")
                                     : std::string("DNS domain name")));
    auto crid = optionalString(req, "CreatorRequestId", 64);
    if (!crid) return Unexpected<Error>{crid.error()};
    auto desc = optionalString(req, "Description", 1024);
    if (!desc) return Unexpected<Error>{desc.error()};
    std::optional<std::string> vpc;
    if (type == "DNS_PRIVATE") {
      auto v = requiredString(req, "Vpc", 64);
      if (!v) return Unexpected<Error>{v.error()};
      vpc = *v;
    }
    int64_t soa_ttl = 15;
    if (type != "HTTP") {
      if (const Value* props = req.find("Properties")) {
        const Value* dp = props->find("DnsProperties");
        const Value* soa = dp ? dp->find("SOA") : nullptr;
        if (!soa)
          return invalid("Properties.DnsProperties.SOA.TTL is required when Properties is set");
        auto ttl = optionalInt(*soa, "TTL", 0, 2147483647, -1);
        if (!ttl) return Unexpected<Error>{ttl.error()};
        if (*ttl < 0) return invalid("Properties.DnsProperties.SOA.TTL is required");
        soa_ttl = *ttl;
      }
    }
    const Value* tags = req.find("Tags");
    if (tags && !tags->isArray()) return invalid("Tags must be a list");
    const std::string norm = zoneName(*name);

    return mutate([&]() -> Result<Plan> {
      Plan p;
      std::vector<StoreOp>& ops = p.ops;
      // Idempotent retry: the same CreatorRequestId for the same name answers the first
      // operation; for another request it is a DuplicateRequest.
      if (crid->has_value() && !(*crid)->empty()) {
        auto prior = load("registry/requests/" + **crid);
        if (!prior) return Unexpected<Error>{prior.error()};
        if (prior->has_value()) {
          const Value& pv = (*prior)->value;
          if (str(pv, "Kind") == "namespace" && str(pv, "Name") == norm &&
              str(pv, "Type") == type) {
            p.reply = obj({{"OperationId", Value::string(std::string(str(pv, "OperationId")))}});
            return p;
          }
          return fail(kDuplicateRequest,
                      "CreatorRequestId " + **crid + " was already used for another request");
        }
        ops.push_back(StoreOp::check("registry/requests/" + **crid, StoreOp::kAbsent));
      }
      auto existing = load("registry/namespace-names/" + norm);
      if (!existing) return Unexpected<Error>{existing.error()};
      if (existing->has_value()) {
        std::string id(str((*existing)->value, "Id"));
        Value extra = obj({{"NamespaceId", Value::string(id)}});
        auto ns = load("registry/namespaces/" + id);
        if (ns && ns->has_value())
          extra.set("CreatorRequestId",
                    Value::string(std::string(str((*ns)->value, "CreatorRequestId"))));
        return makeError(
            "Namespace already exists: " + *name + " (" + id + ")" + '\0' + stacks::toJson(extra),
            kNamespaceAlreadyExists);
      }
      ops.push_back(StoreOp::put("registry/namespace-names/" + norm, "", StoreOp::kAbsent));
      std::string id = "ns-" + randomString(16, kLowerAlnum);
      Value props = Value::object();
      Value http_props = obj({{"HttpName", Value::string(*name)}});
      if (type != "HTTP") {
        Value dns_props = Value::object();
        dns_props.set("HostedZoneId", Value::string("Z" + randomString(20, kUpperAlnum)));
        dns_props.set("SOA", obj({{"TTL", Value::number(soa_ttl)}}));
        props.set("DnsProperties", dns_props);
      }
      props.set("HttpProperties", http_props);
      Value ns = obj({{"Id", Value::string(id)},
                      {"Arn", Value::string("arn:aws:servicediscovery:" + options.region + ":" +
                                            account(r) + ":namespace/" + id)},
                      {"Name", Value::string(*name)},
                      {"Type", Value::string(type)}});
      if (desc->has_value()) ns.set("Description", Value::string(**desc));
      ns.set("ServiceCount", Value::number(int64_t{0}));
      ns.set("Properties", props);
      ns.set("CreateDate", nowNumber(time));
      if (crid->has_value()) ns.set("CreatorRequestId", Value::string(**crid));
      Value vpcs = Value::array();
      if (vpc) {
        auto net = load("registry/networks/" + *vpc);
        if (!net) return Unexpected<Error>{net.error()};
        if (!net->has_value())
          return invalid("Vpc " + *vpc +
                         " is not a weft network (create one with `weft network "
                         "create` or POST /weft/v1/networks)");
        Value nv = (*net)->value;
        Value* attached = nv.find("Namespaces");
        if (!attached) {
          nv.set("Namespaces", Value::array());
          attached = nv.find("Namespaces");
        }
        attached->push(Value::string(id));
        ops.push_back(
            StoreOp::put("registry/networks/" + *vpc, stacks::toJson(nv), (*net)->revision));
        vpcs.push(Value::string(*vpc));
      }
      ns.set("Vpcs", vpcs);
      ns.set("Tags", tags ? *tags : Value::array());
      std::string op_id;
      ops.push_back(operation("CREATE_NAMESPACE", {{"NAMESPACE", id}}, &op_id));
      ns.set("CreateOperationId", Value::string(op_id));
      ops.push_back(
          StoreOp::put("registry/namespaces/" + id, stacks::toJson(ns), StoreOp::kAbsent));
      // The name index holds the id (written now that the id is known).
      for (auto& op : ops)
        if (op.key == "registry/namespace-names/" + norm)
          op.value = stacks::toJson(obj({{"Id", Value::string(id)}}));
      if (crid->has_value() && !(*crid)->empty()) {
        for (auto& op : ops)
          if (op.key == "registry/requests/" + **crid) {
            op.kind = StoreOp::Kind::kPut;
            op.value = stacks::toJson(obj({{"Kind", Value::string("namespace")},
                                           {"Name", Value::string(norm)},
                                           {"Type", Value::string(type)},
                                           {"OperationId", Value::string(op_id)}}));
          }
      }
      p.reply = obj({{"OperationId", Value::string(op_id)}});
      return p;
    });
  }

  static Value namespaceOut(const Value& ns) {
    return without(ns, {"Vpcs", "Tags", "CreateOperationId"});
  }

  Result<Value> getNamespace(const Value& req) {
    auto id = requiredString(req, "Id", 64);
    if (!id) return Unexpected<Error>{id.error()};
    auto ns = loadNamespace(*id);
    if (!ns) return Unexpected<Error>{ns.error()};
    return obj({{"Namespace", namespaceOut(ns->value)}});
  }

  // UpdatePrivateDnsNamespace / UpdatePublicDnsNamespace / UpdateHttpNamespace: `type` is the
  // namespace type the operation applies to (another type is InvalidInput). The change is
  // "Namespace": {Description?, Properties?} for DNS, {Description} (required) for HTTP.
  // A DNS change may carry Properties.DnsProperties.SOA.TTL, which replaces the namespace's SOA
  // TTL (and so the zone's SOA/negative-answer TTL in the next snapshot). The same
  // UpdaterRequestId for the same namespace answers the first OperationId; for another
  // namespace it is DuplicateRequest.
  Result<Value> updateNamespace(const Value& req, const std::string& type) {
    auto id = requiredString(req, "Id", 64);
    if (!id) return Unexpected<Error>{id.error()};
    auto urid = optionalString(req, "UpdaterRequestId", 64);
    if (!urid) return Unexpected<Error>{urid.error()};
    const Value* change = req.find("Namespace");
    if (!change || !change->isObject()) return invalid("Namespace is required");
    auto desc = optionalString(*change, "Description", 1024);
    if (!desc) return Unexpected<Error>{desc.error()};
    std::optional<int64_t> soa_ttl;
    if (type == "HTTP") {
      if (!desc->has_value()) return invalid("Namespace.Description is required");
    } else if (const Value* props = change->find("Properties"); props && !props->isNull()) {
      const Value* dp = props->find("DnsProperties");
      if (!dp) return invalid("Namespace.Properties.DnsProperties is required");
      const Value* soa = dp->find("SOA");
      if (!soa) return invalid("Namespace.Properties.DnsProperties.SOA is required");
      auto ttl = optionalInt(*soa, "TTL", 0, 2147483647, -1);
      if (!ttl) return Unexpected<Error>{ttl.error()};
      if (*ttl < 0) return invalid("Namespace.Properties.DnsProperties.SOA.TTL is required");
      soa_ttl = *ttl;
    }
    const bool has_urid = urid->has_value() && !(*urid)->empty();
    return mutate([&]() -> Result<Plan> {
      Plan p;
      if (has_urid) {
        auto prior = load("registry/requests/" + **urid);
        if (!prior) return Unexpected<Error>{prior.error()};
        if (prior->has_value()) {
          const Value& pv = (*prior)->value;
          if (str(pv, "Kind") == "update-namespace" && str(pv, "Id") == *id) {
            p.reply = obj({{"OperationId", Value::string(std::string(str(pv, "OperationId")))}});
            return p;
          }
          return fail(kDuplicateRequest,
                      "UpdaterRequestId " + **urid + " was already used for another request");
        }
      }
      auto ns = loadNamespace(*id);
      if (!ns) return Unexpected<Error>{ns.error()};
      Value nv = ns->value;
      if (str(nv, "Type") != type)
        return invalid("Namespace " + *id + " is of type " + std::string(str(nv, "Type")) +
                       ", not " + type);
      if (desc->has_value()) nv.set("Description", Value::string(**desc));
      if (soa_ttl) {
        Value* props = nv.find("Properties");
        Value* dp = props ? props->find("DnsProperties") : nullptr;
        if (!dp) return invalid("Namespace " + *id + " has no DnsProperties");
        dp->set("SOA", obj({{"TTL", Value::number(*soa_ttl)}}));
      }
      p.ops.push_back(StoreOp::put("registry/namespaces/" + *id, stacks::toJson(nv), ns->revision));
      std::string op_id;
      p.ops.push_back(operation("UPDATE_NAMESPACE", {{"NAMESPACE", *id}}, &op_id));
      if (has_urid)
        p.ops.push_back(
            StoreOp::put("registry/requests/" + **urid,
                         stacks::toJson(obj({{"Kind", Value::string("update-namespace")},
                                             {"Id", Value::string(*id)},
                                             {"OperationId", Value::string(op_id)}})),
                         StoreOp::kAbsent));
      p.reply = obj({{"OperationId", Value::string(op_id)}});
      return p;
    });
  }

  // Filters: [{Name, Values, Condition}]; `field(record, name)` answers the record's value for a
  // filter name, or nullopt when the name is not allowed.
  using FieldFn = std::function<std::optional<std::string>(const Value&, std::string_view)>;
  struct Filter {
    std::string name, condition;
    std::vector<std::string> values;
  };
  Result<std::vector<Filter>> parseFilters(const Value& req, const std::set<std::string>& names) {
    std::vector<Filter> out;
    const Value* fs = req.find("Filters");
    if (!fs || fs->isNull()) return out;
    if (!fs->isArray()) return invalid("Filters must be a list");
    for (const Value& f : fs->items()) {
      Filter filter;
      filter.name = std::string(str(f, "Name"));
      if (!names.count(filter.name)) {
        std::string known;
        for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
        return invalid("Filters.Name '" + filter.name + "' is not one of " + known);
      }
      filter.condition = f.find("Condition") ? std::string(str(f, "Condition")) : "EQ";
      if (filter.condition != "EQ" && filter.condition != "IN" &&
          filter.condition != "BEGINS_WITH" && filter.condition != "BETWEEN")
        return invalid("Filters.Condition '" + filter.condition +
                       "' is not one of EQ, IN, BETWEEN, BEGINS_WITH");
      const Value* vals = f.find("Values");
      if (!vals || !vals->isArray() || vals->items().empty())
        return invalid("Filters.Values is required for " + filter.name);
      for (const Value& v : vals->items())
        filter.values.emplace_back(v.isNumber() ? v.text() : std::string(v.str()));
      if ((filter.condition == "EQ" || filter.condition == "BEGINS_WITH") &&
          filter.values.size() != 1)
        return invalid("Filters.Values must hold one value for condition " + filter.condition);
      if (filter.condition == "BETWEEN" && filter.values.size() != 2)
        return invalid("Filters.Values must hold two values for condition BETWEEN");
      out.push_back(std::move(filter));
    }
    return out;
  }

  static bool matches(const std::vector<Filter>& filters, const Value& record,
                      const FieldFn& field) {
    for (const Filter& f : filters) {
      std::optional<std::string> have = field(record, f.name);
      if (!have) return false;
      if (f.condition == "EQ" || f.condition == "IN") {
        if (std::find(f.values.begin(), f.values.end(), *have) == f.values.end()) return false;
      } else if (f.condition == "BEGINS_WITH") {
        if (!startsWith(*have, f.values[0])) return false;
      } else {  // BETWEEN, numbers
        double v = std::strtod(have->c_str(), nullptr);
        if (v < std::strtod(f.values[0].c_str(), nullptr) ||
            v > std::strtod(f.values[1].c_str(), nullptr))
          return false;
      }
    }
    return true;
  }

  // Pages `items` (already in id order) by NextToken = the last id answered.
  Result<Value> page(const Value& req, std::vector<std::pair<std::string, Value>> items,
                     const std::string& list_name, int64_t max_default) {
    auto max = optionalInt(req, "MaxResults", 1, 100, max_default);
    if (!max) return Unexpected<Error>{max.error()};
    auto token = optionalString(req, "NextToken", 4096);
    if (!token) return Unexpected<Error>{token.error()};
    Value list = Value::array();
    std::string last;
    bool more = false;
    for (auto& [id, v] : items) {
      if (token->has_value() && id <= **token) continue;
      if (static_cast<int64_t>(list.items().size()) == *max) {
        more = true;
        break;
      }
      list.push(std::move(v));
      last = id;
    }
    Value out = obj({{list_name, list}});
    if (more) out.set("NextToken", Value::string(last));
    return out;
  }

  Result<Value> listNamespaces(const Value& req) {
    auto filters = parseFilters(req, {"TYPE", "NAME", "HTTP_NAME"});
    if (!filters) return Unexpected<Error>{filters.error()};
    auto all = listRecords("registry/namespaces/");
    if (!all) return Unexpected<Error>{all.error()};
    std::vector<std::pair<std::string, Value>> items;
    FieldFn field = [](const Value& ns, std::string_view name) -> std::optional<std::string> {
      if (name == "TYPE") return std::string(str(ns, "Type"));
      if (name == "NAME") return std::string(str(ns, "Name"));
      const Value* p = ns.find("Properties");
      const Value* h = p ? p->find("HttpProperties") : nullptr;
      return h ? std::string(str(*h, "HttpName")) : std::string();
    };
    for (auto& [id, l] : *all)
      if (matches(*filters, l.value, field))
        items.emplace_back(
            id, without(l.value, {"Vpcs", "Tags", "CreateOperationId", "CreatorRequestId"}));
    return page(req, std::move(items), "Namespaces", 100);
  }

  Result<Value> deleteNamespace(const Value& req) {
    auto id = requiredString(req, "Id", 64);
    if (!id) return Unexpected<Error>{id.error()};
    return mutate([&]() -> Result<Plan> {
      auto ns = loadNamespace(*id);
      if (!ns) return Unexpected<Error>{ns.error()};
      if (num(ns->value, "ServiceCount") > 0)
        return fail(kResourceInUse, "Namespace " + *id + " has " +
                                        std::to_string(num(ns->value, "ServiceCount")) +
                                        " services; delete them first");
      Plan p;
      p.ops.push_back(StoreOp::remove("registry/namespaces/" + *id, ns->revision));
      p.ops.push_back(StoreOp::remove(
          "registry/namespace-names/" + zoneName(str(ns->value, "Name")), StoreOp::kAnyRevision));
      if (const Value* vpcs = ns->value.find("Vpcs"))
        for (const Value& v : vpcs->items()) {
          auto op = detachOp(std::string(v.str()), *id);
          if (!op) return Unexpected<Error>{op.error()};
          if (*op) p.ops.push_back(std::move(**op));
        }
      std::string op_id;
      p.ops.push_back(operation("DELETE_NAMESPACE", {{"NAMESPACE", *id}}, &op_id));
      p.reply = obj({{"OperationId", Value::string(op_id)}});
      return p;
    });
  }

  // The network without namespace `ns_id` in its attachments (nullopt if the network is gone).
  Result<std::optional<StoreOp>> detachOp(const std::string& vpc, const std::string& ns_id) {
    auto net = load("registry/networks/" + vpc);
    if (!net) return Unexpected<Error>{net.error()};
    if (!net->has_value()) return std::optional<StoreOp>();
    Value nv = (*net)->value;
    Value kept = Value::array();
    if (const Value* a = nv.find("Namespaces"))
      for (const Value& v : a->items())
        if (v.str() != ns_id) kept.push(v);
    nv.set("Namespaces", kept);
    return std::optional<StoreOp>(
        StoreOp::put("registry/networks/" + vpc, stacks::toJson(nv), (*net)->revision));
  }

  // DnsConfig of CreateService: {NamespaceId?, RoutingPolicy?, DnsRecords*}.
  Result<Value> parseDnsRecords(const Value& dc, bool for_update) {
    const Value* recs = dc.find("DnsRecords");
    if (!recs || !recs->isArray() || recs->items().empty())
      return invalid(std::string(for_update ? "Service.DnsConfig" : "DnsConfig") +
                     ".DnsRecords is required");
    Value out = Value::array();
    std::set<std::string> seen;
    for (const Value& r : recs->items()) {
      std::string type(str(r, "Type"));
      if (type != "A" && type != "AAAA" && type != "SRV" && type != "CNAME")
        return invalid("DnsRecords.Type '" + type + "' is not one of SRV, A, AAAA, CNAME");
      if (!seen.insert(type).second) return invalid("DnsRecords has two records of type " + type);
      const Value* ttl = r.find("TTL");
      if (!ttl) return invalid("DnsRecords.TTL is required");
      auto t = optionalInt(r, "TTL", 0, 2147483647, 0);
      if (!t) return Unexpected<Error>{t.error()};
      out.push(obj({{"Type", Value::string(type)}, {"TTL", Value::number(*t)}}));
    }
    if (seen.count("CNAME") && seen.size() > 1)
      return invalid("DnsRecords: a CNAME record cannot be combined with other record types");
    return out;
  }

  Result<std::optional<Value>> parseHealthCheckConfig(const Value& req, std::string_view key) {
    const Value* hc = req.find(key);
    if (!hc || hc->isNull()) return std::optional<Value>();
    std::string type(str(*hc, "Type"));
    if (type != "HTTP" && type != "HTTPS" && type != "TCP")
      return invalid("HealthCheckConfig.Type '" + type + "' is not one of HTTP, HTTPS, TCP");
    Value out = obj({{"Type", Value::string(type)}});
    auto path = optionalString(*hc, "ResourcePath", 255);
    if (!path) return Unexpected<Error>{path.error()};
    if (path->has_value()) {
      if (type == "TCP") return invalid("HealthCheckConfig.ResourcePath is not allowed for TCP");
      out.set("ResourcePath", Value::string(**path));
    } else if (type != "TCP") {
      out.set("ResourcePath", Value::string("/"));
    }
    auto ft = optionalInt(*hc, "FailureThreshold", 1, 10, 1);
    if (!ft) return Unexpected<Error>{ft.error()};
    out.set("FailureThreshold", Value::number(*ft));
    return std::optional<Value>(out);
  }

  Result<Value> createService(const ApiRequest& r, const Value& req) {
    auto name = requiredString(req, "Name", 127);
    if (!name) return Unexpected<Error>{name.error()};
    auto ns_id = optionalString(req, "NamespaceId", 64);
    if (!ns_id) return Unexpected<Error>{ns_id.error()};
    auto crid = optionalString(req, "CreatorRequestId", 64);
    if (!crid) return Unexpected<Error>{crid.error()};
    auto desc = optionalString(req, "Description", 1024);
    if (!desc) return Unexpected<Error>{desc.error()};
    const Value* dc = req.find("DnsConfig");
    if (dc && dc->isNull()) dc = nullptr;
    std::string namespace_id = ns_id->value_or("");
    if (dc && namespace_id.empty()) namespace_id = std::string(str(*dc, "NamespaceId"));
    if (namespace_id.empty()) return invalid("NamespaceId is required");
    if (*name != "." && !dnsNameOk(*name, true))
      return invalid("Name '" + *name +
                     "' is not a valid service name (DNS labels of letters, "
                     "digits, '-' and '_')");
    Value dns_config;
    if (dc) {
      auto records = parseDnsRecords(*dc, false);
      if (!records) return Unexpected<Error>{records.error()};
      std::string policy =
          dc->find("RoutingPolicy") ? std::string(str(*dc, "RoutingPolicy")) : "MULTIVALUE";
      if (policy != "MULTIVALUE" && policy != "WEIGHTED")
        return invalid("DnsConfig.RoutingPolicy '" + policy +
                       "' is not one of MULTIVALUE, WEIGHTED");
      bool cname = false;
      for (const Value& rec : records->items()) cname = cname || rec.find("Type")->str() == "CNAME";
      if (cname && policy != "WEIGHTED")
        return invalid("DnsConfig: CNAME records require RoutingPolicy WEIGHTED");
      dns_config = obj({{"NamespaceId", Value::string(namespace_id)},
                        {"RoutingPolicy", Value::string(policy)},
                        {"DnsRecords", *records}});
    }
    auto hc = parseHealthCheckConfig(req, "HealthCheckConfig");
    if (!hc) return Unexpected<Error>{hc.error()};
    std::optional<Value> custom;
    if (const Value* c = req.find("HealthCheckCustomConfig"); c && !c->isNull()) {
      if (!c->isObject()) return invalid("HealthCheckCustomConfig must be an object");
      auto ft = optionalInt(*c, "FailureThreshold", 1, 10, 1);
      if (!ft) return Unexpected<Error>{ft.error()};
      custom = obj({{"FailureThreshold", Value::number(*ft)}});
    }
    if (hc->has_value() && custom)
      return invalid("HealthCheckConfig and HealthCheckCustomConfig cannot both be set");
    if (const Value* t = req.find("Type"); t && !t->isNull() && t->str() != "HTTP")
      return invalid("Type '" + std::string(t->str()) + "' is not one of HTTP");
    bool http_only = req.find("Type") && str(req, "Type") == "HTTP";
    if (http_only && dc) return invalid("a service of Type HTTP cannot have a DnsConfig");
    const Value* tags = req.find("Tags");

    return mutate([&]() -> Result<Plan> {
      auto ns = loadNamespace(namespace_id);
      if (!ns) return Unexpected<Error>{ns.error()};
      std::string ns_type(str(ns->value, "Type"));
      if (dc && ns_type == "HTTP")
        return invalid("Namespace " + namespace_id +
                       " is an HTTP namespace: a service in it cannot "
                       "have a DnsConfig");
      if (hc->has_value() && ns_type != "DNS_PUBLIC")
        return invalid(
            "HealthCheckConfig (Route 53 health checks) is only for services in public "
            "DNS namespaces; use HealthCheckCustomConfig");
      std::string index = "registry/service-names/" + namespace_id + "/" + dns::lowerAscii(*name);
      auto existing = load(index);
      if (!existing) return Unexpected<Error>{existing.error()};
      if (existing->has_value()) {
        std::string sid(str((*existing)->value, "Id"));
        Value extra = obj({{"ServiceId", Value::string(sid)}});
        auto s = load("registry/services/" + sid);
        if (s && s->has_value())
          extra.set("CreatorRequestId",
                    Value::string(std::string(str((*s)->value, "CreatorRequestId"))));
        return makeError("Service already exists: " + *name + " in " + namespace_id + " (" + sid +
                             ")" + '\0' + stacks::toJson(extra),
                         kServiceAlreadyExists);
      }
      std::string id = "srv-" + randomString(16, kLowerAlnum);
      Value s = obj({{"Id", Value::string(id)},
                     {"Arn", Value::string("arn:aws:servicediscovery:" + options.region + ":" +
                                           account(r) + ":service/" + id)},
                     {"Name", Value::string(*name)},
                     {"NamespaceId", Value::string(namespace_id)}});
      if (desc->has_value()) s.set("Description", Value::string(**desc));
      s.set("InstanceCount", Value::number(int64_t{0}));
      if (dc) s.set("DnsConfig", dns_config);
      s.set("Type", Value::string(dc ? "DNS_HTTP" : "HTTP"));
      if (hc->has_value()) s.set("HealthCheckConfig", **hc);
      if (custom) s.set("HealthCheckCustomConfig", *custom);
      s.set("CreateDate", nowNumber(time));
      if (crid->has_value()) s.set("CreatorRequestId", Value::string(**crid));
      s.set("Tags", tags && tags->isArray() ? *tags : Value::array());
      Value nsv = ns->value;
      nsv.set("ServiceCount", Value::number(num(nsv, "ServiceCount") + 1));
      Plan p;
      p.ops.push_back(
          StoreOp::put("registry/namespaces/" + namespace_id, stacks::toJson(nsv), ns->revision));
      p.ops.push_back(
          StoreOp::put(index, stacks::toJson(obj({{"Id", Value::string(id)}})), StoreOp::kAbsent));
      p.ops.push_back(StoreOp::put("registry/services/" + id, stacks::toJson(s), StoreOp::kAbsent));
      p.reply = obj({{"Service", without(s, {"Tags"})}});
      return p;
    });
  }

  Result<Value> getService(const Value& req) {
    auto id = requiredString(req, "Id", 64);
    if (!id) return Unexpected<Error>{id.error()};
    auto s = loadService(*id);
    if (!s) return Unexpected<Error>{s.error()};
    return obj({{"Service", without(s->value, {"Tags"})}});
  }

  Result<Value> listServices(const Value& req) {
    auto filters = parseFilters(req, {"NAMESPACE_ID"});
    if (!filters) return Unexpected<Error>{filters.error()};
    auto all = listRecords("registry/services/");
    if (!all) return Unexpected<Error>{all.error()};
    FieldFn field = [](const Value& s, std::string_view) -> std::optional<std::string> {
      return std::string(str(s, "NamespaceId"));
    };
    std::vector<std::pair<std::string, Value>> items;
    for (auto& [id, l] : *all)
      if (matches(*filters, l.value, field))
        items.emplace_back(id, without(l.value, {"Tags", "NamespaceId", "CreatorRequestId"}));
    return page(req, std::move(items), "Services", 100);
  }

  Result<Value> updateService(const Value& req) {
    auto id = requiredString(req, "Id", 64);
    if (!id) return Unexpected<Error>{id.error()};
    const Value* change = req.find("Service");
    if (!change || !change->isObject()) return invalid("Service is required");
    auto desc = optionalString(*change, "Description", 1024);
    if (!desc) return Unexpected<Error>{desc.error()};
    std::optional<Value> records;
    if (const Value* dc = change->find("DnsConfig"); dc && !dc->isNull()) {
      auto r = parseDnsRecords(*dc, true);
      if (!r) return Unexpected<Error>{r.error()};
      records = *r;
    }
    auto hc = parseHealthCheckConfig(*change, "HealthCheckConfig");
    if (!hc) return Unexpected<Error>{hc.error()};
    return mutate([&]() -> Result<Plan> {
      auto s = loadService(*id);
      if (!s) return Unexpected<Error>{s.error()};
      Value sv = s->value;
      if (desc->has_value()) sv.set("Description", Value::string(**desc));
      if (records) {
        Value* dc = sv.find("DnsConfig");
        if (!dc) return invalid("Service " + *id + " has no DnsConfig to update");
        std::set<std::string> before, after;
        for (const Value& r : dc->find("DnsRecords")->items()) before.emplace(str(r, "Type"));
        for (const Value& r : records->items()) after.emplace(str(r, "Type"));
        if (before != after)
          return invalid(
              "Service.DnsConfig.DnsRecords: the record types of a service cannot "
              "change (only their TTLs)");
        dc->set("DnsRecords", *records);
      }
      if (hc->has_value()) {
        if (sv.find("HealthCheckCustomConfig"))
          return invalid("Service " + *id +
                         " uses HealthCheckCustomConfig; HealthCheckConfig "
                         "cannot be added");
        sv.set("HealthCheckConfig", **hc);
      }
      Plan p;
      p.ops.push_back(StoreOp::put("registry/services/" + *id, stacks::toJson(sv), s->revision));
      std::string op_id;
      p.ops.push_back(operation("UPDATE_SERVICE", {{"SERVICE", *id}}, &op_id));
      p.reply = obj({{"OperationId", Value::string(op_id)}});
      return p;
    });
  }

  Result<Value> deleteService(const Value& req) {
    auto id = requiredString(req, "Id", 64);
    if (!id) return Unexpected<Error>{id.error()};
    return mutate([&]() -> Result<Plan> {
      auto s = loadService(*id);
      if (!s) return Unexpected<Error>{s.error()};
      if (num(s->value, "InstanceCount") > 0)
        return fail(kResourceInUse, "Service " + *id + " has " +
                                        std::to_string(num(s->value, "InstanceCount")) +
                                        " registered instances; deregister them first");
      std::string ns_id(str(s->value, "NamespaceId"));
      Plan p;
      p.ops.push_back(StoreOp::remove("registry/services/" + *id, s->revision));
      p.ops.push_back(StoreOp::remove(
          "registry/service-names/" + ns_id + "/" + dns::lowerAscii(str(s->value, "Name")),
          StoreOp::kAnyRevision));
      auto ns = load("registry/namespaces/" + ns_id);
      if (!ns) return Unexpected<Error>{ns.error()};
      if (ns->has_value()) {
        Value nsv = (*ns)->value;
        nsv.set("ServiceCount", Value::number(std::max<int64_t>(0, num(nsv, "ServiceCount") - 1)));
        p.ops.push_back(
            StoreOp::put("registry/namespaces/" + ns_id, stacks::toJson(nsv), (*ns)->revision));
      }
      p.reply = Value::object();
      return p;
    });
  }

  // Checks the attributes of RegisterInstance against the service's DNS records.
  Result<Value> checkAttributes(const Value& attrs, const Value& service) {
    if (!attrs.isObject()) return invalid("Attributes must be a map of strings");
    if (attrs.members().size() > kMaxAttributes)
      return invalid("Attributes has " + std::to_string(attrs.members().size()) +
                     " entries; at most 30 are allowed");
    for (const auto& [k, v] : attrs.members()) {
      if (k.empty() || k.size() > 255 || !printableAscii(k))
        return invalid("Attributes key '" + k + "' must be 1-255 printable ASCII characters");
      if (!v.isString() || !attrValueOk(v.str()))
        return invalid("Attributes." + k +
                       ": the value must be a string of at most 1024 "
                       "printable ASCII characters, spaces or tabs, not starting or ending with "
                       "a space");
    }
    unsigned char buf[16];
    std::string v4(str(attrs, "AWS_INSTANCE_IPV4")), v6(str(attrs, "AWS_INSTANCE_IPV6"));
    if (attrs.find("AWS_INSTANCE_IPV4") && inet_pton(AF_INET, v4.c_str(), buf) != 1)
      return invalid("Attributes.AWS_INSTANCE_IPV4 '" + v4 + "' is not an IPv4 address");
    if (attrs.find("AWS_INSTANCE_IPV6") && inet_pton(AF_INET6, v6.c_str(), buf) != 1)
      return invalid("Attributes.AWS_INSTANCE_IPV6 '" + v6 + "' is not an IPv6 address");
    if (const Value* port = attrs.find("AWS_INSTANCE_PORT")) {
      std::string p(port->str());
      char* end = nullptr;
      long n = std::strtol(p.c_str(), &end, 10);
      if (p.empty() || *end != '\0' || n < 0 || n > 65535)
        return invalid("Attributes.AWS_INSTANCE_PORT '" + p + "' is not a port number 0-65535");
    }
    if (const Value* h = attrs.find("AWS_INIT_HEALTH_STATUS");
        h && h->str() != "HEALTHY" && h->str() != "UNHEALTHY")
      return invalid("Attributes.AWS_INIT_HEALTH_STATUS must be HEALTHY or UNHEALTHY");
    if (const Value* c = attrs.find("AWS_INSTANCE_CNAME"); c && !dnsNameOk(c->str(), true))
      return invalid("Attributes.AWS_INSTANCE_CNAME '" + std::string(c->str()) +
                     "' is not a domain name");
    bool alias = attrs.find("AWS_ALIAS_DNS_NAME") != nullptr;
    if (const Value* dc = service.find("DnsConfig")) {
      for (const Value& r : dc->find("DnsRecords")->items()) {
        std::string_view t = str(r, "Type");
        if (t == "A" && !attrs.find("AWS_INSTANCE_IPV4") && !alias)
          return invalid("the service has an A record: Attributes.AWS_INSTANCE_IPV4 is required");
        if (t == "AAAA" && !attrs.find("AWS_INSTANCE_IPV6") && !alias)
          return invalid(
              "the service has an AAAA record: Attributes.AWS_INSTANCE_IPV6 is required");
        if (t == "CNAME" && !attrs.find("AWS_INSTANCE_CNAME"))
          return invalid(
              "the service has a CNAME record: Attributes.AWS_INSTANCE_CNAME is required");
        if (t == "SRV") {
          if (!attrs.find("AWS_INSTANCE_PORT"))
            return invalid(
                "the service has an SRV record: Attributes.AWS_INSTANCE_PORT is required");
          if (!attrs.find("AWS_INSTANCE_IPV4") && !attrs.find("AWS_INSTANCE_IPV6"))
            return invalid(
                "the service has an SRV record: Attributes.AWS_INSTANCE_IPV4 or "
                "AWS_INSTANCE_IPV6 is required");
        }
      }
    }
    return attrs;
  }

  Result<Value> registerInstance(const Value& req) {
    auto sid = requiredString(req, "ServiceId", 64);
    if (!sid) return Unexpected<Error>{sid.error()};
    auto iid = requiredString(req, "InstanceId", 64);
    if (!iid) return Unexpected<Error>{iid.error()};
    if (!instanceIdOk(*iid))
      return invalid("InstanceId '" + *iid +
                     "' must be 1-64 characters of letters, digits and "
                     "_/:.@-");
    auto crid = optionalString(req, "CreatorRequestId", 64);
    if (!crid) return Unexpected<Error>{crid.error()};
    const Value* attrs = req.find("Attributes");
    if (!attrs || attrs->isNull()) return invalid("Attributes is required");
    return mutate([&]() -> Result<Plan> {
      auto s = loadService(*sid);
      if (!s) return Unexpected<Error>{s.error()};
      auto checked = checkAttributes(*attrs, s->value);
      if (!checked) return Unexpected<Error>{checked.error()};
      std::string key = "registry/instances/" + *sid + "/" + *iid;
      auto prior = load(key);
      if (!prior) return Unexpected<Error>{prior.error()};
      std::string health = "UNKNOWN";
      if (s->value.find("HealthCheckCustomConfig")) {
        health = attrs->find("AWS_INIT_HEALTH_STATUS")
                     ? std::string(str(*attrs, "AWS_INIT_HEALTH_STATUS"))
                     : "HEALTHY";
        if (prior->has_value()) health = std::string(str((*prior)->value, "HealthStatus"));
      } else if (s->value.find("HealthCheckConfig")) {
        health = "HEALTHY";  // weft does not run Route 53 health checks
      }
      Value inst = obj({{"Id", Value::string(*iid)}});
      if (crid->has_value()) inst.set("CreatorRequestId", Value::string(**crid));
      inst.set("Attributes", *attrs);
      inst.set("HealthStatus", Value::string(health));
      Plan p;
      if (prior->has_value()) {
        p.ops.push_back(StoreOp::check("registry/services/" + *sid, s->revision));
        p.ops.push_back(StoreOp::put(key, stacks::toJson(inst), (*prior)->revision));
      } else {
        Value sv = s->value;
        sv.set("InstanceCount", Value::number(num(sv, "InstanceCount") + 1));
        p.ops.push_back(StoreOp::put("registry/services/" + *sid, stacks::toJson(sv), s->revision));
        p.ops.push_back(StoreOp::put(key, stacks::toJson(inst), StoreOp::kAbsent));
      }
      std::string op_id;
      p.ops.push_back(
          operation("REGISTER_INSTANCE", {{"INSTANCE", *iid}, {"SERVICE", *sid}}, &op_id));
      p.reply = obj({{"OperationId", Value::string(op_id)}});
      return p;
    });
  }

  Result<Value> deregisterInstance(const Value& req) {
    auto sid = requiredString(req, "ServiceId", 64);
    if (!sid) return Unexpected<Error>{sid.error()};
    auto iid = requiredString(req, "InstanceId", 64);
    if (!iid) return Unexpected<Error>{iid.error()};
    return mutate([&]() -> Result<Plan> {
      auto s = loadService(*sid);
      if (!s) return Unexpected<Error>{s.error()};
      auto inst = loadInstance(*sid, *iid);
      if (!inst) return Unexpected<Error>{inst.error()};
      Value sv = s->value;
      sv.set("InstanceCount", Value::number(std::max<int64_t>(0, num(sv, "InstanceCount") - 1)));
      Plan p;
      p.ops.push_back(StoreOp::put("registry/services/" + *sid, stacks::toJson(sv), s->revision));
      p.ops.push_back(StoreOp::remove("registry/instances/" + *sid + "/" + *iid, inst->revision));
      std::string op_id;
      p.ops.push_back(
          operation("DEREGISTER_INSTANCE", {{"INSTANCE", *iid}, {"SERVICE", *sid}}, &op_id));
      p.reply = obj({{"OperationId", Value::string(op_id)}});
      return p;
    });
  }

  Result<Value> getInstance(const Value& req) {
    auto sid = requiredString(req, "ServiceId", 64);
    if (!sid) return Unexpected<Error>{sid.error()};
    auto iid = requiredString(req, "InstanceId", 64);
    if (!iid) return Unexpected<Error>{iid.error()};
    auto s = loadService(*sid);
    if (!s) return Unexpected<Error>{s.error()};
    auto inst = loadInstance(*sid, *iid);
    if (!inst) return Unexpected<Error>{inst.error()};
    return obj({{"Instance", without(inst->value, {"HealthStatus"})}});
  }

  Result<Value> listInstances(const Value& req) {
    auto sid = requiredString(req, "ServiceId", 64);
    if (!sid) return Unexpected<Error>{sid.error()};
    auto s = loadService(*sid);
    if (!s) return Unexpected<Error>{s.error()};
    auto all = listRecords("registry/instances/" + *sid + "/");
    if (!all) return Unexpected<Error>{all.error()};
    std::vector<std::pair<std::string, Value>> items;
    for (auto& [id, l] : *all)
      items.emplace_back(id, without(l.value, {"HealthStatus", "CreatorRequestId"}));
    return page(req, std::move(items), "Instances", 100);
  }

  Result<Value> getInstancesHealthStatus(const Value& req) {
    auto sid = requiredString(req, "ServiceId", 64);
    if (!sid) return Unexpected<Error>{sid.error()};
    auto s = loadService(*sid);
    if (!s) return Unexpected<Error>{s.error()};
    auto all = listRecords("registry/instances/" + *sid + "/");
    if (!all) return Unexpected<Error>{all.error()};
    std::map<std::string, std::string> status;
    for (auto& [id, l] : *all) status[id] = std::string(str(l.value, "HealthStatus"));
    std::vector<std::pair<std::string, Value>> items;
    if (const Value* wanted = req.find("Instances"); wanted && wanted->isArray()) {
      for (const Value& w : wanted->items()) {
        auto it = status.find(std::string(w.str()));
        if (it == status.end())
          return fail(kInstanceNotFound, "Instance not found: " + std::string(w.str()));
        items.emplace_back(it->first, Value::string(it->second));
      }
      std::sort(items.begin(), items.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
    } else {
      for (auto& [id, st] : status) items.emplace_back(id, Value::string(st));
    }
    auto paged = page(req, items, "List", 100);
    if (!paged) return Unexpected<Error>{paged.error()};
    // page() answers a list; Status is a map keyed by instance id.
    Value map = Value::object();
    size_t n = paged->find("List")->items().size();
    auto token = optionalString(req, "NextToken", 4096);
    size_t taken = 0;
    for (auto& [id, v] : items) {
      if (token->has_value() && id <= **token) continue;
      if (taken++ == n) break;
      map.set(id, v);
    }
    Value out = obj({{"Status", map}});
    if (const Value* t = paged->find("NextToken")) out.set("NextToken", *t);
    return out;
  }

  Result<Value> updateInstanceCustomHealthStatus(const Value& req) {
    auto sid = requiredString(req, "ServiceId", 64);
    if (!sid) return Unexpected<Error>{sid.error()};
    auto iid = requiredString(req, "InstanceId", 64);
    if (!iid) return Unexpected<Error>{iid.error()};
    auto status = requiredString(req, "Status", 16);
    if (!status) return Unexpected<Error>{status.error()};
    if (*status != "HEALTHY" && *status != "UNHEALTHY")
      return invalid("Status '" + *status + "' is not one of HEALTHY, UNHEALTHY");
    return mutate([&]() -> Result<Plan> {
      auto s = loadService(*sid);
      if (!s) return Unexpected<Error>{s.error()};
      if (!s->value.find("HealthCheckCustomConfig"))
        return fail(kCustomHealthNotFound, "Service " + *sid + " has no HealthCheckCustomConfig");
      auto inst = loadInstance(*sid, *iid);
      if (!inst) return Unexpected<Error>{inst.error()};
      Plan p;
      p.reply = Value::object();
      if (str(inst->value, "HealthStatus") == *status) return p;  // nothing to write
      Value iv = inst->value;
      iv.set("HealthStatus", Value::string(*status));
      p.ops.push_back(StoreOp::put("registry/instances/" + *sid + "/" + *iid, stacks::toJson(iv),
                                   inst->revision));
      return p;
    });
  }

  // ---- auto-registration (RegistryApi::putAutoInstance etc.)

  static bool isAuto(const Value& inst) {
    const Value* attrs = inst.find("Attributes");
    const Value* a = attrs ? attrs->find(RegistryApi::kAutoAttribute) : nullptr;
    return a && a->str() == "1";
  }

  Result<std::optional<std::string>> findService(std::string_view namespace_name,
                                                 std::string_view service, bool private_dns_only) {
    auto all_ns = listRecords("registry/namespaces/");
    if (!all_ns) return Unexpected<Error>{all_ns.error()};
    for (auto& [id, l] : *all_ns) {
      if (private_dns_only && str(l.value, "Type") != "DNS_PRIVATE") continue;
      const Value* p = l.value.find("Properties");
      const Value* h = p ? p->find("HttpProperties") : nullptr;
      std::string http_name(h ? str(*h, "HttpName") : str(l.value, "Name"));
      if (zoneName(http_name) != zoneName(namespace_name) &&
          zoneName(str(l.value, "Name")) != zoneName(namespace_name))
        continue;
      auto index = load("registry/service-names/" + id + "/" + dns::lowerAscii(service));
      if (!index) return Unexpected<Error>{index.error()};
      if (!index->has_value()) return std::optional<std::string>();
      return std::optional<std::string>(std::string(str((*index)->value, "Id")));
    }
    return std::optional<std::string>();
  }

  Result<bool> putAutoInstance(const std::string& sid, const std::string& iid,
                               const std::map<std::string, std::string>& attributes,
                               std::string_view health) {
    if (!instanceIdOk(iid))
      return invalid("InstanceId '" + iid +
                     "' must be 1-64 characters of letters, digits and _/:.@-");
    Value attrs = Value::object();
    for (const auto& [k, v] : attributes) attrs.set(k, Value::string(v));
    attrs.set(std::string(RegistryApi::kAutoAttribute), Value::string("1"));
    bool wrote = false;
    auto r = mutate([&]() -> Result<Plan> {
      wrote = false;
      auto s = loadService(sid);
      if (!s) return Unexpected<Error>{s.error()};
      auto checked = checkAttributes(attrs, s->value);
      if (!checked) return Unexpected<Error>{checked.error()};
      std::string key = "registry/instances/" + sid + "/" + iid;
      auto prior = load(key);
      if (!prior) return Unexpected<Error>{prior.error()};
      Plan p;
      p.reply = Value::object();
      if (prior->has_value() && !isAuto((*prior)->value)) return p;  // the user's: untouched
      std::string h(health);
      if (h.empty())
        h = s->value.find("HealthCheckCustomConfig") || s->value.find("HealthCheckConfig")
                ? "HEALTHY"
                : "UNKNOWN";
      Value inst = obj({{"Id", Value::string(iid)}});
      inst.set("Attributes", attrs);
      inst.set("HealthStatus", Value::string(h));
      wrote = true;
      if (prior->has_value()) {
        if (stacks::toJson((*prior)->value) == stacks::toJson(inst)) return p;  // unchanged
        p.ops.push_back(StoreOp::check("registry/services/" + sid, s->revision));
        p.ops.push_back(StoreOp::put(key, stacks::toJson(inst), (*prior)->revision));
        return p;
      }
      Value sv = s->value;
      sv.set("InstanceCount", Value::number(num(sv, "InstanceCount") + 1));
      p.ops.push_back(StoreOp::put("registry/services/" + sid, stacks::toJson(sv), s->revision));
      p.ops.push_back(StoreOp::put(key, stacks::toJson(inst), StoreOp::kAbsent));
      std::string op_id;
      p.ops.push_back(
          operation("REGISTER_INSTANCE", {{"INSTANCE", iid}, {"SERVICE", sid}}, &op_id));
      return p;
    });
    if (!r) return Unexpected<Error>{r.error()};
    return wrote;
  }

  Result<bool> setAutoInstanceHealth(const std::string& sid, const std::string& iid,
                                     std::string_view health) {
    bool found = false;
    auto r = mutate([&]() -> Result<Plan> {
      found = false;
      Plan p;
      p.reply = Value::object();
      auto inst = load("registry/instances/" + sid + "/" + iid);
      if (!inst) return Unexpected<Error>{inst.error()};
      if (!inst->has_value() || !isAuto((*inst)->value)) return p;
      found = true;
      if (str((*inst)->value, "HealthStatus") == health) return p;
      Value iv = (*inst)->value;
      iv.set("HealthStatus", Value::string(std::string(health)));
      p.ops.push_back(StoreOp::put("registry/instances/" + sid + "/" + iid, stacks::toJson(iv),
                                   (*inst)->revision));
      return p;
    });
    if (!r) return Unexpected<Error>{r.error()};
    return found;
  }

  Result<bool> removeAutoInstance(const std::string& sid, const std::string& iid) {
    bool found = false;
    auto r = mutate([&]() -> Result<Plan> {
      found = false;
      Plan p;
      p.reply = Value::object();
      auto inst = load("registry/instances/" + sid + "/" + iid);
      if (!inst) return Unexpected<Error>{inst.error()};
      if (!inst->has_value() || !isAuto((*inst)->value)) return p;
      auto s = loadService(sid);
      if (!s) return Unexpected<Error>{s.error()};
      found = true;
      Value sv = s->value;
      sv.set("InstanceCount", Value::number(std::max<int64_t>(0, num(sv, "InstanceCount") - 1)));
      p.ops.push_back(StoreOp::put("registry/services/" + sid, stacks::toJson(sv), s->revision));
      p.ops.push_back(StoreOp::remove("registry/instances/" + sid + "/" + iid, (*inst)->revision));
      std::string op_id;
      p.ops.push_back(
          operation("DEREGISTER_INSTANCE", {{"INSTANCE", iid}, {"SERVICE", sid}}, &op_id));
      return p;
    });
    if (!r) return Unexpected<Error>{r.error()};
    return found;
  }

  Result<std::vector<std::pair<std::string, std::string>>> autoInstances() {
    auto all = listRecords("registry/instances/");
    if (!all) return Unexpected<Error>{all.error()};
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& [rest, l] : *all) {
      size_t slash = rest.find('/');
      if (slash == std::string::npos || !isAuto(l.value)) continue;
      out.emplace_back(rest.substr(0, slash), rest.substr(slash + 1));
    }
    return out;
  }

  Result<Value> discoverInstances(const Value& req) {
    auto ns_name = requiredString(req, "NamespaceName", 1024);
    if (!ns_name) return Unexpected<Error>{ns_name.error()};
    auto svc_name = requiredString(req, "ServiceName", 127);
    if (!svc_name) return Unexpected<Error>{svc_name.error()};
    auto max = optionalInt(req, "MaxResults", 1, 1000, 100);
    if (!max) return Unexpected<Error>{max.error()};
    std::string filter =
        req.find("HealthStatus") ? std::string(str(req, "HealthStatus")) : "HEALTHY";
    if (filter != "HEALTHY" && filter != "UNHEALTHY" && filter != "ALL" &&
        filter != "HEALTHY_OR_ELSE_ALL")
      return invalid("HealthStatus '" + filter +
                     "' is not one of HEALTHY, UNHEALTHY, ALL, "
                     "HEALTHY_OR_ELSE_ALL");
    auto attrMap =
        [&](std::string_view key) -> Result<std::vector<std::pair<std::string, std::string>>> {
      std::vector<std::pair<std::string, std::string>> out;
      const Value* m = req.find(key);
      if (!m || m->isNull()) return out;
      if (!m->isObject()) return invalid(std::string(key) + " must be a map of strings");
      for (const auto& [k, v] : m->members()) out.emplace_back(k, std::string(v.str()));
      return out;
    };
    auto query = attrMap("QueryParameters");
    if (!query) return Unexpected<Error>{query.error()};
    auto optional = attrMap("OptionalParameters");
    if (!optional) return Unexpected<Error>{optional.error()};

    // The namespace by its HTTP name (a DNS namespace's HTTP name is its domain name).
    auto all_ns = listRecords("registry/namespaces/");
    if (!all_ns) return Unexpected<Error>{all_ns.error()};
    std::string ns_id, ns_http_name;
    for (auto& [id, l] : *all_ns) {
      const Value* p = l.value.find("Properties");
      const Value* h = p ? p->find("HttpProperties") : nullptr;
      std::string http_name(h ? str(*h, "HttpName") : str(l.value, "Name"));
      if (http_name == *ns_name || zoneName(http_name) == zoneName(*ns_name)) {
        ns_id = id;
        ns_http_name = http_name;
        break;
      }
    }
    if (ns_id.empty()) return fail(kNamespaceNotFound, "Namespace not found: " + *ns_name);
    auto index = load("registry/service-names/" + ns_id + "/" + dns::lowerAscii(*svc_name));
    if (!index) return Unexpected<Error>{index.error()};
    if (!index->has_value())
      return fail(kServiceNotFound, "Service not found: " + *svc_name + " in " + *ns_name);
    std::string sid(str((*index)->value, "Id"));
    auto s = loadService(sid);
    if (!s) return Unexpected<Error>{s.error()};
    auto all = listRecords("registry/instances/" + sid + "/");
    if (!all) return Unexpected<Error>{all.error()};

    auto has = [](const Value& inst, const std::vector<std::pair<std::string, std::string>>& want) {
      const Value* attrs = inst.find("Attributes");
      for (const auto& [k, v] : want) {
        const Value* a = attrs ? attrs->find(k) : nullptr;
        if (!a || a->str() != v) return false;
      }
      return true;
    };
    std::vector<const Value*> candidates;
    for (auto& [id, l] : *all)
      if (has(l.value, *query)) candidates.push_back(&l.value);
    if (!optional->empty()) {
      std::vector<const Value*> preferred;
      for (const Value* c : candidates)
        if (has(*c, *optional)) preferred.push_back(c);
      if (!preferred.empty()) candidates = std::move(preferred);
    }
    // The health filter applies to services with a health check; UNKNOWN counts as healthy.
    bool checked = s->value.find("HealthCheckCustomConfig") || s->value.find("HealthCheckConfig");
    if (checked && filter != "ALL") {
      auto healthy = [](const Value* v) { return str(*v, "HealthStatus") != "UNHEALTHY"; };
      std::vector<const Value*> kept;
      for (const Value* c : candidates)
        if (filter == "UNHEALTHY" ? !healthy(c) : healthy(c)) kept.push_back(c);
      if (filter == "HEALTHY_OR_ELSE_ALL" && kept.empty()) kept = candidates;
      candidates = std::move(kept);
    }
    Value out = Value::array();
    for (const Value* c : candidates) {
      if (static_cast<int64_t>(out.items().size()) == *max) break;
      out.push(
          obj({{"InstanceId", Value::string(std::string(str(*c, "Id")))},
               {"NamespaceName", Value::string(ns_http_name)},
               {"ServiceName", Value::string(std::string(str(s->value, "Name")))},
               {"HealthStatus", Value::string(std::string(str(*c, "HealthStatus")))},
               {"Attributes", c->find("Attributes") ? *c->find("Attributes") : Value::object()}}));
    }
    return obj({{"Instances", out}});
  }

  Result<Value> getOperation(const Value& req) {
    auto id = requiredString(req, "OperationId", 255);
    if (!id) return Unexpected<Error>{id.error()};
    auto op = load("registry/operations/" + *id);
    if (!op) return Unexpected<Error>{op.error()};
    if (!op->has_value()) return fail(kOperationNotFound, "Operation not found: " + *id);
    return obj({{"Operation", (*op)->value}});
  }

  Result<Value> listOperations(const Value& req) {
    auto filters =
        parseFilters(req, {"NAMESPACE_ID", "SERVICE_ID", "STATUS", "TYPE", "UPDATE_DATE"});
    if (!filters) return Unexpected<Error>{filters.error()};
    auto all = listRecords("registry/operations/");
    if (!all) return Unexpected<Error>{all.error()};
    FieldFn field = [](const Value& op, std::string_view name) -> std::optional<std::string> {
      const Value* t = op.find("Targets");
      if (name == "NAMESPACE_ID")
        return t && t->find("NAMESPACE")
                   ? std::optional<std::string>(std::string(str(*t, "NAMESPACE")))
                   : std::nullopt;
      if (name == "SERVICE_ID")
        return t && t->find("SERVICE") ? std::optional<std::string>(std::string(str(*t, "SERVICE")))
                                       : std::nullopt;
      if (name == "STATUS") return std::string(str(op, "Status"));
      if (name == "TYPE") return std::string(str(op, "Type"));
      const Value* d = op.find("UpdateDate");
      return d ? d->text() : std::string("0");
    };
    std::vector<std::pair<std::string, Value>> items;
    for (auto& [id, l] : *all)
      if (matches(*filters, l.value, field))
        items.emplace_back(id,
                           obj({{"Id", Value::string(id)},
                                {"Status", Value::string(std::string(str(l.value, "Status")))}}));
    return page(req, std::move(items), "Operations", 100);
  }

  // Tags on namespaces and services, by ARN.
  Result<std::pair<std::string, Loaded>> byArn(const Value& req) {
    auto arn = requiredString(req, "ResourceARN", 1011);
    if (!arn) return Unexpected<Error>{arn.error()};
    size_t slash = arn->rfind('/');
    std::string id = slash == std::string::npos ? "" : arn->substr(slash + 1);
    std::string key = startsWith(id, "ns-")    ? "registry/namespaces/" + id
                      : startsWith(id, "srv-") ? "registry/services/" + id
                                               : "";
    if (key.empty()) return fail(kResourceNotFound, "Resource not found: " + *arn);
    auto l = load(key);
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value() || str((*l)->value, "Arn") != *arn)
      return fail(kResourceNotFound, "Resource not found: " + *arn);
    return std::make_pair(key, std::move(**l));
  }

  Result<Value> changeTags(const Value& req, bool add) {
    const Value* tags = req.find(add ? "Tags" : "TagKeys");
    if (!tags || !tags->isArray())
      return invalid(std::string(add ? "Tags" : "TagKeys") + " is required");
    return mutate([&]() -> Result<Plan> {
      auto r = byArn(req);
      if (!r) return Unexpected<Error>{r.error()};
      Value v = r->second.value;
      Value kept = Value::array();
      std::set<std::string> drop;
      for (const Value& t : tags->items()) drop.emplace(add ? str(t, "Key") : t.str());
      if (const Value* have = v.find("Tags"))
        for (const Value& t : have->items())
          if (!drop.count(std::string(str(t, "Key")))) kept.push(t);
      if (add)
        for (const Value& t : tags->items()) {
          if (str(t, "Key").empty() || str(t, "Key").size() > 128)
            return invalid("Tags.Key must be 1-128 characters");
          kept.push(obj({{"Key", Value::string(std::string(str(t, "Key")))},
                         {"Value", Value::string(std::string(str(t, "Value")))}}));
        }
      if (kept.items().size() > 200) return fail(kInvalidInput, "at most 200 tags are allowed");
      v.set("Tags", kept);
      Plan p;
      p.ops.push_back(StoreOp::put(r->first, stacks::toJson(v), r->second.revision));
      p.reply = Value::object();
      return p;
    });
  }

  Result<Value> dispatch(const ApiRequest& r, std::string_view op) {
    Value req = Value::object();
    if (!r.body.empty()) {
      auto parsed = stacks::parseJson(r.body);
      if (!parsed) return fail(kInvalidInput, "request body: " + parsed.error().message);
      if (!parsed->isObject()) return invalid("request body: expected a JSON object");
      req = std::move(*parsed);
    }
    if (op == "CreatePrivateDnsNamespace") return createNamespace(r, req, "DNS_PRIVATE");
    if (op == "CreatePublicDnsNamespace") return createNamespace(r, req, "DNS_PUBLIC");
    if (op == "CreateHttpNamespace") return createNamespace(r, req, "HTTP");
    if (op == "GetNamespace") return getNamespace(req);
    if (op == "ListNamespaces") return listNamespaces(req);
    if (op == "DeleteNamespace") return deleteNamespace(req);
    if (op == "UpdatePrivateDnsNamespace") return updateNamespace(req, "DNS_PRIVATE");
    if (op == "UpdatePublicDnsNamespace") return updateNamespace(req, "DNS_PUBLIC");
    if (op == "UpdateHttpNamespace") return updateNamespace(req, "HTTP");
    if (op == "CreateService") return createService(r, req);
    if (op == "GetService") return getService(req);
    if (op == "ListServices") return listServices(req);
    if (op == "UpdateService") return updateService(req);
    if (op == "DeleteService") return deleteService(req);
    if (op == "RegisterInstance") return registerInstance(req);
    if (op == "DeregisterInstance") return deregisterInstance(req);
    if (op == "GetInstance") return getInstance(req);
    if (op == "ListInstances") return listInstances(req);
    if (op == "DiscoverInstances") return discoverInstances(req);
    if (op == "GetInstancesHealthStatus") return getInstancesHealthStatus(req);
    if (op == "UpdateInstanceCustomHealthStatus") return updateInstanceCustomHealthStatus(req);
    if (op == "GetOperation") return getOperation(req);
    if (op == "ListOperations") return listOperations(req);
    if (op == "TagResource") return changeTags(req, true);
    if (op == "UntagResource") return changeTags(req, false);
    if (op == "ListTagsForResource") {
      auto res = byArn(req);
      if (!res) return Unexpected<Error>{res.error()};
      const Value* tags = res->second.value.find("Tags");
      return obj({{"Tags", tags ? *tags : Value::array()}});
    }
    return fail(kUnknownOperation,
                "weft does not implement the Cloud Map operation " + std::string(op));
  }

  // ---- Route 53

  struct Zone {
    std::string ns_id;
    Loaded ns;
  };
  Result<std::vector<Zone>> zones() {
    auto all = listRecords("registry/namespaces/");
    if (!all) return Unexpected<Error>{all.error()};
    std::vector<Zone> out;
    for (auto& [id, l] : *all) {
      std::string_view type = str(l.value, "Type");
      if (type == "DNS_PRIVATE" || type == "DNS_PUBLIC") out.push_back({id, std::move(l)});
    }
    return out;
  }
  static std::string zoneId(const Value& ns) {
    const Value* p = ns.find("Properties");
    const Value* d = p ? p->find("DnsProperties") : nullptr;
    return d ? std::string(str(*d, "HostedZoneId")) : std::string();
  }
  Result<Zone> findZone(std::string id) {
    if (startsWith(id, "/hostedzone/")) id = id.substr(12);
    auto all = zones();
    if (!all) return Unexpected<Error>{all.error()};
    for (auto& z : *all)
      if (zoneId(z.ns.value) == id) return std::move(z);
    return fail(kNoSuchHostedZone, "No hosted zone found with ID: " + id);
  }

  std::string hostedZoneXml(const Zone& z, int64_t record_sets) {
    const Value& ns = z.ns.value;
    std::string name = zoneName(str(ns, "Name")) + ".";
    std::string x =
        "<HostedZone><Id>/hostedzone/" + zoneId(ns) + "</Id><Name>" + xmlEscape(name) +
        "</Name><CallerReference>" +
        xmlEscape(str(ns, "CreatorRequestId").empty() ? z.ns_id
                                                      : std::string(str(ns, "CreatorRequestId"))) +
        "</CallerReference><Config>";
    if (!str(ns, "Description").empty())
      x += "<Comment>" + xmlEscape(str(ns, "Description")) + "</Comment>";
    x += std::string("<PrivateZone>") + (str(ns, "Type") == "DNS_PRIVATE" ? "true" : "false") +
         "</PrivateZone></Config><ResourceRecordSetCount>" + std::to_string(record_sets) +
         "</ResourceRecordSetCount><LinkedService><ServicePrincipal>servicediscovery.amazonaws.com"
         "</ServicePrincipal><Description>" +
         xmlEscape(str(ns, "Arn")) + "</Description></LinkedService></HostedZone>";
    return x;
  }

  // SOA + NS, plus one record set per record type of each service that has instances.
  int64_t recordSets(const std::string& ns_id) {
    std::shared_ptr<const Snapshot> snap = snapshots.load();
    int64_t n = 2;
    for (const auto& z : snap->zones) {
      if (z.namespace_id != ns_id) continue;
      for (const auto& [name, s] : z.services)
        if (!s.instances.empty()) n += static_cast<int64_t>(s.records.size());
    }
    return n;
  }

  std::string changeInfoXml(const std::string& root, const std::string& comment) {
    std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<" + root + " xmlns=\"" +
                    kRoute53Ns + "\"><ChangeInfo><Id>/change/C" + randomString(20, kUpperAlnum) +
                    "</Id><Status>INSYNC</Status><SubmittedAt>" + isoTime(time) + "</SubmittedAt>";
    if (!comment.empty()) x += "<Comment>" + xmlEscape(comment) + "</Comment>";
    return x + "</ChangeInfo></" + root + ">";
  }

  Result<std::string> route53(const ApiRequest& r) {
    std::string_view path = r.path;
    path.remove_prefix(kRoute53Prefix.size());
    if (r.method == "GET" && path == "hostedzonesbyname") {
      const std::string* dns_name = r.queryParam("dnsname");
      const std::string* zone_id = r.queryParam("hostedzoneid");
      const std::string* max_items = r.queryParam("maxitems");
      if (zone_id && !dns_name) return invalid("hostedzoneid requires dnsname");
      int64_t max = 100;
      if (max_items) {
        char* end = nullptr;
        max = std::strtoll(max_items->c_str(), &end, 10);
        if (max_items->empty() || *end != '\0' || max < 1)
          return invalid("maxitems must be a positive number");
        max = std::min<int64_t>(max, 100);
      }
      auto all = zones();
      if (!all) return Unexpected<Error>{all.error()};
      std::sort(all->begin(), all->end(), [](const Zone& a, const Zone& b) {
        auto ka =
            std::make_pair(reversedLabels(zoneName(str(a.ns.value, "Name"))), zoneId(a.ns.value));
        auto kb =
            std::make_pair(reversedLabels(zoneName(str(b.ns.value, "Name"))), zoneId(b.ns.value));
        return ka < kb;
      });
      std::string start = dns_name ? reversedLabels(zoneName(*dns_name)) : "";
      std::string body;
      int64_t count = 0;
      const Zone* next = nullptr;
      for (const Zone& z : *all) {
        std::string key = reversedLabels(zoneName(str(z.ns.value, "Name")));
        if (dns_name && key < start) continue;
        if (dns_name && zone_id && key == start && zoneId(z.ns.value) < *zone_id) continue;
        if (count == max) {
          next = &z;
          break;
        }
        body += hostedZoneXml(z, recordSets(z.ns_id));
        ++count;
      }
      std::string x =
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListHostedZonesByNameResponse xmlns=\"" +
          std::string(kRoute53Ns) + "\"><HostedZones>" + body + "</HostedZones>";
      if (dns_name) x += "<DNSName>" + xmlEscape(*dns_name) + "</DNSName>";
      if (zone_id) x += "<HostedZoneId>" + xmlEscape(*zone_id) + "</HostedZoneId>";
      x += std::string("<IsTruncated>") + (next ? "true" : "false") + "</IsTruncated>";
      if (next)
        x += "<NextDNSName>" + xmlEscape(zoneName(str(next->ns.value, "Name")) + ".") +
             "</NextDNSName><NextHostedZoneId>" + zoneId(next->ns.value) + "</NextHostedZoneId>";
      x += "<MaxItems>" + std::to_string(max) + "</MaxItems></ListHostedZonesByNameResponse>";
      return x;
    }
    if (startsWith(path, "hostedzone/")) {
      std::string_view rest = path.substr(11);
      size_t slash = rest.find('/');
      std::string id(rest.substr(0, slash));
      std::string_view action = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
      if (r.method == "GET" && action.empty()) {
        auto z = findZone(id);
        if (!z) return Unexpected<Error>{z.error()};
        std::string x =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetHostedZoneResponse xmlns=\"" +
            std::string(kRoute53Ns) + "\">" + hostedZoneXml(*z, recordSets(z->ns_id));
        if (str(z->ns.value, "Type") == "DNS_PRIVATE") {
          x += "<VPCs>";
          if (const Value* vpcs = z->ns.value.find("Vpcs"))
            for (const Value& v : vpcs->items())
              x += "<VPC><VPCRegion>" + options.region + "</VPCRegion><VPCId>" +
                   xmlEscape(v.str()) + "</VPCId></VPC>";
          x += "</VPCs>";
        } else {
          x += "<DelegationSet><NameServers><NameServer>ns1." +
               xmlEscape(zoneName(str(z->ns.value, "Name"))) +
               "</NameServer></NameServers></DelegationSet>";
        }
        return x + "</GetHostedZoneResponse>";
      }
      if (r.method == "POST" && (action == "associatevpc" || action == "disassociatevpc")) {
        bool associate = action == "associatevpc";
        auto vpc = xmlText(r.body, "VPCId");
        if (!vpc || vpc->empty()) return invalid("VPC.VPCId is required");
        auto region = xmlText(r.body, "VPCRegion");
        if (region && !region->empty() && *region != options.region)
          return fail(kInvalidVpcId, "VPC " + *vpc + " is not in region " + *region +
                                         " (this server's region is " + options.region + ")");
        std::string comment = xmlText(r.body, "Comment").value_or("");
        auto done = mutate([&]() -> Result<Plan> {
          auto z = findZone(id);
          if (!z) return Unexpected<Error>{z.error()};
          if (str(z->ns.value, "Type") != "DNS_PRIVATE")
            return fail(kPublicZoneVpcAssociation,
                        "Public hosted zones cannot be associated with a VPC");
          auto net = load("registry/networks/" + *vpc);
          if (!net) return Unexpected<Error>{net.error()};
          if (!net->has_value())
            return fail(kInvalidVpcId, "The VPC ID '" + *vpc + "' is not a weft network");
          Value nsv = z->ns.value;
          Value vpcs = Value::array();
          bool present = false;
          if (const Value* have = nsv.find("Vpcs"))
            for (const Value& v : have->items()) {
              if (v.str() == *vpc)
                present = true;
              else
                vpcs.push(v);
            }
          Value nv = (*net)->value;
          Value attached = Value::array();
          if (const Value* a = nv.find("Namespaces"))
            for (const Value& v : a->items())
              if (v.str() != z->ns_id) attached.push(v);
          if (associate) {
            if (present)
              return fail(kConflictingDomainExists,
                          "VPC " + *vpc + " is already associated with hosted zone " + id);
            vpcs.push(Value::string(*vpc));
            attached.push(Value::string(z->ns_id));
          } else {
            if (!present)
              return fail(kVpcAssociationNotFound, "The specified VPC " + *vpc +
                                                       " is not associated with hosted zone " + id);
            if (vpcs.items().empty())
              return fail(kLastVpcAssociation, "A private hosted zone must keep at least one VPC");
          }
          nsv.set("Vpcs", vpcs);
          nv.set("Namespaces", attached);
          Plan p;
          p.ops.push_back(
              StoreOp::put("registry/namespaces/" + z->ns_id, stacks::toJson(nsv), z->ns.revision));
          p.ops.push_back(
              StoreOp::put("registry/networks/" + *vpc, stacks::toJson(nv), (*net)->revision));
          p.reply = Value::object();
          return p;
        });
        if (!done) return Unexpected<Error>{done.error()};
        return changeInfoXml(associate ? "AssociateVPCWithHostedZoneResponse"
                                       : "DisassociateVPCFromHostedZoneResponse",
                             comment);
      }
    }
    return fail(kUnknownOperation, "weft does not implement " + r.method + " " + r.path +
                                       " of the Route 53 API (see docs/registry.md)");
  }

  // ---- networks

  static Value networkOut(const Value& n) {
    Value out = obj(
        {{"id", *n.find("Id")},
         {"name", n.find("Name") ? *n.find("Name") : Value::string("")},
         {"cidrs", n.find("Cidrs") ? *n.find("Cidrs") : Value::array()},
         {"createdAt", n.find("CreateDate") ? *n.find("CreateDate") : Value::number(int64_t{0})},
         {"namespaces", n.find("Namespaces") ? *n.find("Namespaces") : Value::array()}});
    return out;
  }

  Result<Value> networks(const ApiRequest& r) {
    std::string_view rest = std::string_view(r.path).substr(kNetworksPath.size());
    if (rest.empty() || rest == "/") {
      if (r.method == "GET") {
        auto all = listRecords("registry/networks/");
        if (!all) return Unexpected<Error>{all.error()};
        Value list = Value::array();
        for (auto& [id, l] : *all) list.push(networkOut(l.value));
        return obj({{"networks", list}});
      }
      if (r.method == "POST") {
        auto parsed = stacks::parseJson(r.body.empty() ? "{}" : r.body);
        if (!parsed || !parsed->isObject()) return invalid("request body: expected a JSON object");
        std::string name(str(*parsed, "name"));
        if (name.size() > 255) return invalid("name: at most 255 characters");
        const Value* cidrs = parsed->find("cidrs");
        if (!cidrs || !cidrs->isArray() || cidrs->items().empty())
          return invalid("cidrs: at least one CIDR (\"198.18.0.0/16\") is required");
        Value list = Value::array();
        for (const Value& c : cidrs->items()) {
          auto cidr = net::parseCidr(c.str());
          if (!c.isString() || !cidr)
            return invalid("cidrs: '" + std::string(c.str()) + "' is not a CIDR");
          list.push(Value::string(std::string(c.str())));
        }
        std::string id = "vpc-" + randomString(17, kHex);
        Value n = obj({{"Id", Value::string(id)},
                       {"Name", Value::string(name)},
                       {"Cidrs", list},
                       {"CreateDate", nowNumber(time)},
                       {"Namespaces", Value::array()}});
        return mutate([&]() -> Result<Plan> {
          Plan p;
          p.ops.push_back(
              StoreOp::put("registry/networks/" + id, stacks::toJson(n), StoreOp::kAbsent));
          p.reply = networkOut(n);
          return p;
        });
      }
    } else if (rest[0] == '/' && rest.find('/', 1) == std::string_view::npos) {
      std::string id(rest.substr(1));
      if (r.method == "GET" || r.method == "DELETE") {
        bool del = r.method == "DELETE";
        return mutate([&]() -> Result<Plan> {
          auto l = load("registry/networks/" + id);
          if (!l) return Unexpected<Error>{l.error()};
          if (!l->has_value()) return fail(kNotFound, "network " + id + " not found");
          Plan p;
          p.reply = del ? Value::object() : networkOut((*l)->value);
          if (!del) return p;
          const Value* a = (*l)->value.find("Namespaces");
          if (a && !a->items().empty())
            return fail(kResourceInUse, "network " + id + " is attached to namespace " +
                                            std::string(a->items()[0].str()) +
                                            "; delete the namespace or disassociate it first");
          p.ops.push_back(StoreOp::remove("registry/networks/" + id, (*l)->revision));
          return p;
        });
      }
    }
    return fail(kUnknownOperation, "no operation on " + r.method + " " + r.path);
  }
};

RegistryApi::RegistryApi(Store& store, const TimeSource& time, RegistryOptions options)
    : impl_(std::make_unique<Impl>(store, time, std::move(options))) {}
RegistryApi::~RegistryApi() = default;

Result<std::optional<std::string>> RegistryApi::findService(std::string_view namespace_name,
                                                            std::string_view service,
                                                            bool private_dns_only) {
  return impl_->findService(namespace_name, service, private_dns_only);
}
Result<bool> RegistryApi::putAutoInstance(const std::string& service_id,
                                          const std::string& instance_id,
                                          const std::map<std::string, std::string>& attributes,
                                          std::string_view health) {
  return impl_->putAutoInstance(service_id, instance_id, attributes, health);
}
Result<bool> RegistryApi::setAutoInstanceHealth(const std::string& service_id,
                                                const std::string& instance_id,
                                                std::string_view health) {
  return impl_->setAutoInstanceHealth(service_id, instance_id, health);
}
Result<bool> RegistryApi::removeAutoInstance(const std::string& service_id,
                                             const std::string& instance_id) {
  return impl_->removeAutoInstance(service_id, instance_id);
}
Result<std::vector<std::pair<std::string, std::string>>> RegistryApi::autoInstances() {
  return impl_->autoInstances();
}
Status RegistryApi::refresh() { return impl_->refresh(); }
const SnapshotHolder& RegistryApi::snapshots() const { return impl_->snapshots; }

namespace {

ApiResponse internalError(const Error& e) {
  log::error("registry", "store: " + e.message);
  return apiError(500, "InternalFailure", "internal error; the server log has the details");
}

}  // namespace

ApiResponse RegistryApi::handleCloudMap(const ApiRequest& request) {
  const std::string* target = request.header("x-amz-target");
  std::string_view op = target ? std::string_view(*target) : std::string_view();
  if (op.substr(0, kTargetPrefix.size()) == kTargetPrefix) op.remove_prefix(kTargetPrefix.size());
  Result<Value> out = request.method == "POST"
                          ? impl_->dispatch(request, op)
                          : fail(kInvalidInput, "Cloud Map operations are POST requests");
  ApiResponse resp;
  resp.content_type = "application/x-amz-json-1.1";
  if (out) {
    resp.body = stacks::toJson(*out);
    return resp;
  }
  const Error& e = out.error();
  if (!isApiError(e)) return internalError(e);
  std::string message = e.message, extra;
  if (size_t nul = message.find('\0'); nul != std::string::npos) {
    extra = message.substr(nul + 1);
    message.resize(nul);
  }
  ApiResponse err = apiError(400, errorName(e.code), message);
  err.content_type = "application/x-amz-json-1.1";
  if (!extra.empty()) {
    auto v = stacks::parseJson(extra);
    if (v && v->isObject()) {
      Value body =
          obj({{"__type", Value::string(errorName(e.code))}, {"Message", Value::string(message)}});
      for (const auto& [k, m] : v->members()) body.set(k, m);
      err.body = stacks::toJson(body);
    }
  }
  return err;
}

bool RegistryApi::handlesRoute53(std::string_view path) { return startsWith(path, kRoute53Prefix); }

ApiResponse RegistryApi::handleRoute53(const ApiRequest& request) {
  auto out = impl_->route53(request);
  ApiResponse resp;
  resp.content_type = "text/xml";
  if (out) {
    resp.body = std::move(*out);
    return resp;
  }
  const Error& e = out.error();
  if (!isApiError(e)) return internalError(e);
  int status = 400;
  if (e.code == kNoSuchHostedZone || e.code == kVpcAssociationNotFound ||
      e.code == kUnknownOperation)
    status = 404;
  resp.status = status;
  resp.body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"" +
              std::string(kRoute53Ns) + "\"><Error><Type>Sender</Type><Code>" + errorName(e.code) +
              "</Code><Message>" + xmlEscape(e.message) + "</Message></Error><RequestId>" +
              uuidV4() + "</RequestId></ErrorResponse>";
  return resp;
}

bool RegistryApi::handlesNetworks(std::string_view path) {
  return path == kNetworksPath || startsWith(path, std::string(kNetworksPath) + "/");
}

ApiResponse RegistryApi::handleNetworks(const ApiRequest& request) {
  auto out = impl_->networks(request);
  if (out) {
    ApiResponse resp;
    resp.body = stacks::toJson(*out);
    return resp;
  }
  const Error& e = out.error();
  if (!isApiError(e)) return internalError(e);
  switch (e.code) {
    case kNotFound:
      return apiError(404, "NotFoundException", e.message);
    case kResourceInUse:
      return apiError(409, "ResourceInUseException", e.message);
    case kUnknownOperation:
      return apiError(404, "UnknownOperationException", e.message);
    case kRequestLimitExceeded:
      return apiError(429, "TooManyRequestsException", e.message);
    default:
      return apiError(400, "BadRequestException", e.message);
  }
}

}  // namespace weft::control::registry
