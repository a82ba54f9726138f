#include "control/model/appmesh_api.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aws/appmesh/v20190125/appmesh.pb.h"
#include "aws/appmesh/v20190125/records.pb.h"
#include "common/hex.h"
#include "common/json_limits.h"
#include "common/text.h"
#include "control/api/crypto_util.h"
#include "control/model/errors.h"
#include "control/model/resource_keys.h"
#include "control/model/rules.h"
#include "control/model/schema.h"

namespace weft::control::appmesh {
namespace {

namespace pb = google::protobuf;

// A write that lost an optimistic race re-reads and retries; after this many lost races the
// request answers TooManyRequestsException, which botocore retries with backoff.
constexpr int kMaxAttempts = 32;
constexpr std::string_view kPathPrefix = "/v20190125";

// What differs between the seven kinds, as descriptors and field names of the generated
// messages; the operations themselves are written once, over reflection.
struct KindInfo {
  Kind kind;
  std::string name_field;    // "virtualNodeName"
  std::string parent_field;  // "virtualRouterName" for routes, "virtualGatewayName" for gateway
                             // routes, empty otherwise
  std::string list_field;    // "virtualNodes"
  const pb::Descriptor* data;
  const pb::Descriptor* ref;
  const pb::Descriptor* spec;
  const pb::Descriptor* create_input;
  const pb::Descriptor* update_input;
  const pb::Descriptor* list_output;
};

const KindInfo& kindInfo(Kind kind) {
  static const std::vector<KindInfo> table = [] {
    const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
    auto find = [pool](const std::string& name) {
      const pb::Descriptor* d = pool->FindMessageTypeByName("aws.appmesh.v20190125." + name);
      if (d == nullptr) abort();  // the generated proto and this table disagree: a build bug
      return d;
    };
    // Touch a generated type so the file's descriptors are registered in the pool.
    (void)am::MeshData::descriptor();
    (void)am::StoredResource::descriptor();
    auto make = [&](Kind k, const std::string& type, const std::string& name_field,
                    const std::string& parent_field, const std::string& list_field,
                    const std::string& plural) {
      return KindInfo{k,
                      name_field,
                      parent_field,
                      list_field,
                      find(type + "Data"),
                      find(type + "Ref"),
                      find(type + "Spec"),
                      find("Create" + type + "Input"),
                      find("Update" + type + "Input"),
                      find("List" + plural + "Output")};
    };
    return std::vector<KindInfo>{
        make(Kind::kMesh, "Mesh", "meshName", "", "meshes", "Meshes"),
        make(Kind::kVirtualNode, "VirtualNode", "virtualNodeName", "", "virtualNodes",
             "VirtualNodes"),
        make(Kind::kVirtualService, "VirtualService", "virtualServiceName", "", "virtualServices",
             "VirtualServices"),
        make(Kind::kVirtualRouter, "VirtualRouter", "virtualRouterName", "", "virtualRouters",
             "VirtualRouters"),
        make(Kind::kRoute, "Route", "routeName", "virtualRouterName", "routes", "Routes"),
        make(Kind::kVirtualGateway, "VirtualGateway", "virtualGatewayName", "", "virtualGateways",
             "VirtualGateways"),
        make(Kind::kGatewayRoute, "GatewayRoute", "gatewayRouteName", "virtualGatewayName",
             "gatewayRoutes", "GatewayRoutes"),
    };
  }();
  return table[static_cast<size_t>(kind)];
}

std::unique_ptr<pb::Message> newMessage(const pb::Descriptor* d) {
  return std::unique_ptr<pb::Message>(
      pb::MessageFactory::generated_factory()->GetPrototype(d)->New());
}

const pb::FieldDescriptor* fieldOf(const pb::Message& m, const std::string& name) {
  return m.GetDescriptor()->FindFieldByName(name);
}

std::string getString(const pb::Message& m, const std::string& name) {
  const pb::FieldDescriptor* f = fieldOf(m, name);
  return f ? m.GetReflection()->GetString(m, f) : std::string();
}

void setString(pb::Message& m, const std::string& name, const std::string& value) {
  if (const pb::FieldDescriptor* f = fieldOf(m, name)) m.GetReflection()->SetString(&m, f, value);
}

pb::Message& mutableField(pb::Message& m, const std::string& name) {
  return *m.GetReflection()->MutableMessage(&m, fieldOf(m, name));
}

const pb::Message& getField(const pb::Message& m, const std::string& name) {
  return m.GetReflection()->GetMessage(m, fieldOf(m, name));
}

bool hasField(const pb::Message& m, const std::string& name) {
  const pb::FieldDescriptor* f = fieldOf(m, name);
  return f && m.GetReflection()->HasField(m, f);
}

// The kind's data (MeshData, VirtualNodeData, ...) inside a stored record.
pb::Message& dataOf(am::StoredResource& record, Kind kind) {
  return mutableField(record, std::string(kindName(kind)));
}
const pb::Message& dataOf(const am::StoredResource& record, Kind kind) {
  return getField(record, std::string(kindName(kind)));
}
am::ResourceMetadata& metadataOf(pb::Message& data) {
  return static_cast<am::ResourceMetadata&>(mutableField(data, "metadata"));
}

std::string printJson(const pb::Message& m, bool print_empty_lists = false) {
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = print_empty_lists;
  std::string out;
  (void)pb::util::MessageToJsonString(m, &out, options);
  return out;
}

// protobuf's JSON parse errors in the form of the other messages ("spec.listeners[0].bogus:
// unknown field"), without protobuf's internals (synthetic oneof names, type names). protobuf
// 3.21 answers, with "(path) " only below the top level:
//   "(path) field: Cannot find field."                       an unknown member
//   "(path): invalid value 7 for type TYPE_STRING"           a value of the wrong type
//   "(path): invalid value oneof field '_x' is already set. Cannot set 'x' for type oneof"
//   "(path): invalid value Starting an object on a scalar field for type x"
// and anything else (no path) for a syntax error.
std::string describeParseError(std::string_view msg) {
  constexpr std::string_view kNotJson = "request body: is not valid JSON";
  auto isName = [](std::string_view n) {
    if (n.empty() || n.size() > 255) return false;
    for (char c : n)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
        return false;
    return true;
  };
  // The name protobuf quotes after `marker`, up to `end`, if it is a plain member name.
  auto nameAfter = [&](std::string_view text, std::string_view marker,
                       std::string_view end) -> std::string_view {
    size_t at = text.find(marker);
    if (at == std::string_view::npos) return {};
    std::string_view rest = text.substr(at + marker.size());
    std::string_view name = rest.substr(0, rest.find(end));
    return isName(name) ? name : std::string_view();
  };
  std::string_view path, rest = msg;
  if (!msg.empty() && msg[0] == '(') {
    size_t close = msg.find(')');
    if (close == std::string_view::npos) return std::string(kNotJson);
    path = msg.substr(1, close - 1);
    rest = msg.substr(close + 1);
    if (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
  }
  const std::string kWrongType = ": has a value of the wrong type or out of range";
  if (!rest.empty() && rest[0] == ':') {  // a value error at `path`
    if (rest.find("already set") != std::string_view::npos) {
      std::string_view name = nameAfter(rest, "Cannot set '", "'");
      if (!name.empty()) return joinPath(path, name) + ": is given more than once";
    }
    std::string_view scalar = nameAfter(rest, "on a scalar field for type ", "\n");
    if (!scalar.empty()) return joinPath(path, scalar) + kWrongType;
    if (!path.empty()) return std::string(path) + kWrongType;
    return std::string(kNotJson);
  }
  size_t colon = rest.find(": ");
  if (colon == std::string_view::npos || !isName(rest.substr(0, colon)))
    return std::string(kNotJson);
  std::string where = joinPath(path, rest.substr(0, colon));
  if (rest.substr(colon + 2).rfind("Cannot find field", 0) == 0) return where + ": unknown field";
  return where + kWrongType;
}

Result<std::unique_ptr<pb::Message>> parseBody(const std::string& body, const pb::Descriptor* d) {
  std::unique_ptr<pb::Message> m = newMessage(d);
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  std::string_view text = body;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\r' ||
                           text.front() == '\t'))
    text.remove_prefix(1);
  if (text.empty()) return m;
  if (text.front() != '{') return badRequest("request body: expected a JSON object");
  if (Status st = checkJsonDepth(text); !st)
    return badRequest("request body: " + st.error().message);
  auto status =
      pb::util::JsonStringToMessage(pb::StringPiece(body.data(), body.size()), m.get(), options);
  if (!status.ok()) return badRequest(describeParseError(std::string(status.message())));
  return m;
}

// A stored record (the JSON of records.proto's StoredResource). Unknown members are ignored (a
// record written by a newer weft); an unreadable one is an internal error naming the key.
Result<am::StoredResource> parseRecord(const std::string& raw, std::string_view key) {
  am::StoredResource rec;
  pb::util::JsonParseOptions po;
  po.ignore_unknown_fields = true;
  if (!pb::util::JsonStringToMessage(raw, &rec, po).ok())
    return makeError("stored record at " + std::string(key) + " is not readable");
  return rec;
}

// The request's identity for clientToken idempotency: everything but the token itself.
std::string requestDigest(const pb::Message& input, const ResourceId& id) {
  std::unique_ptr<pb::Message> copy(input.New());
  copy->CopyFrom(input);
  if (const pb::FieldDescriptor* f = fieldOf(*copy, "clientToken"))
    copy->GetReflection()->ClearField(copy.get(), f);
  std::string bytes;
  copy->SerializePartialToString(&bytes);  // deterministic enough: no maps in these messages
  std::string key = std::string(kindName(id.kind)) + '\0' + id.mesh + '\0' + id.parent + '\0' +
                    id.name + '\0' + bytes;
  return sha256Hex(key);
}

std::string describeId(const ResourceId& id) {
  std::string out = std::string(kindDisplayName(id.kind)) + " \"" + id.name + "\"";
  if (id.kind == Kind::kRoute) out += " of virtual router \"" + id.parent + "\"";
  if (id.kind == Kind::kGatewayRoute) out += " of virtual gateway \"" + id.parent + "\"";
  if (id.kind != Kind::kMesh) out += " in mesh \"" + id.mesh + "\"";
  return out;
}

// App Mesh resource names: 1-255 characters (the API model's ResourceName). weft also refuses
// what would make a name unreachable or ambiguous in a URL, a store key or an ARN: '/', the
// names "." and "..", and control characters (bytes below 0x20 and 0x7f).
Status checkName(const std::string& value, const std::string& what) {
  if (value.empty()) return badRequest(what + ": must not be empty");
  if (value.size() > 255)
    return badRequest(what + ": length " + std::to_string(value.size()) + " is out of range 1-255");
  if (value == "." || value == "..")
    return badRequest(what + ": " + quoted(value) + " is not a valid name");
  for (char c : value) {
    auto b = static_cast<unsigned char>(c);
    if (c == '/') return badRequest(what + ": " + quoted(value) + " must not contain '/'");
    if (b < 0x20 || b == 0x7f)
      return badRequest(what + ": " + quoted(value) + " must not contain control characters");
  }
  return {};
}

Status checkSpec(Kind kind, const pb::Message& spec, const Quotas& quotas) {
  switch (kind) {
    case Kind::kMesh:
      return checkMeshSpec(static_cast<const am::MeshSpec&>(spec));
    case Kind::kVirtualNode:
      return checkVirtualNodeSpec(static_cast<const am::VirtualNodeSpec&>(spec), quotas);
    case Kind::kVirtualService:
      return checkVirtualServiceSpec(static_cast<const am::VirtualServiceSpec&>(spec));
    case Kind::kVirtualRouter:
      return checkVirtualRouterSpec(static_cast<const am::VirtualRouterSpec&>(spec));
    case Kind::kRoute:
      return checkRouteSpec(static_cast<const am::RouteSpec&>(spec));
    case Kind::kVirtualGateway:
      return checkVirtualGatewaySpec(static_cast<const am::VirtualGatewaySpec&>(spec));
    case Kind::kGatewayRoute:
      return checkGatewayRouteSpec(static_cast<const am::GatewayRouteSpec&>(spec));
  }
  return {};
}

int quotaOf(Kind kind, const Quotas& q) {
  switch (kind) {
    case Kind::kMesh:
      return q.meshes_per_account;
    case Kind::kVirtualNode:
      return q.virtual_nodes_per_mesh;
    case Kind::kVirtualService:
      return q.virtual_services_per_mesh;
    case Kind::kVirtualRouter:
      return q.virtual_routers_per_mesh;
    case Kind::kRoute:
      return q.routes_per_virtual_router;
    case Kind::kVirtualGateway:
      return q.virtual_gateways_per_mesh;
    case Kind::kGatewayRoute:
      return q.gateway_routes_per_virtual_gateway;
  }
  return 0;
}

// The resource a child's create rewrites (and whose existence it needs).
ResourceId parentOf(const ResourceId& id) {
  ResourceId p;
  p.mesh = id.mesh;
  if (id.kind == Kind::kRoute || id.kind == Kind::kGatewayRoute) {
    p.kind = id.kind == Kind::kRoute ? Kind::kVirtualRouter : Kind::kVirtualGateway;
    p.name = id.parent;
  } else {
    p.kind = Kind::kMesh;
    p.name = id.mesh;
  }
  return p;
}

// Builds the kind's Ref (list entry) from its data: names from the data, the rest from metadata.
void fillRef(const pb::Message& data, pb::Message& ref) {
  const pb::Descriptor* d = ref.GetDescriptor();
  const pb::Reflection* rr = ref.GetReflection();
  const pb::Message& md = getField(data, "metadata");
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const pb::Message* src = fieldOf(data, f->name()) ? &data : &md;
    const pb::FieldDescriptor* sf = fieldOf(*src, f->name());
    if (sf == nullptr || sf->cpp_type() != f->cpp_type()) continue;
    const pb::Reflection* sr = src->GetReflection();
    if (!sr->HasField(*src, sf)) continue;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        rr->SetString(&ref, f, sr->GetString(*src, sf));
        break;
      case pb::FieldDescriptor::CPPTYPE_INT32:
        rr->SetInt32(&ref, f, sr->GetInt32(*src, sf));
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        rr->SetDouble(&ref, f, sr->GetDouble(*src, sf));
        break;
      default:
        break;
    }
  }
}

struct Loaded {
  am::StoredResource record;
  std::string raw;
  int64_t revision = 0;
};

// The kind a mesh's collection segment names ("virtualNodes"), or nullopt.
std::optional<Kind> kindOfCollection(std::string_view segment) {
  if (segment == "virtualNodes") return Kind::kVirtualNode;
  if (segment == "virtualServices") return Kind::kVirtualService;
  if (segment == "virtualRouters") return Kind::kVirtualRouter;
  if (segment == "virtualGateways") return Kind::kVirtualGateway;
  return std::nullopt;
}

}  // namespace

struct AppMeshApi::Impl {
  Store& store;
  const TimeSource& time;
  Options options;

  // ---- store access ----

  Result<std::optional<Loaded>> load(const std::string& key) {
    auto kv = store.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (!kv->has_value()) return std::optional<Loaded>();
    Loaded l;
    l.raw = (*kv)->value;
    l.revision = (*kv)->revision;
    auto rec = parseRecord(l.raw, key);
    if (!rec) return Unexpected<Error>{rec.error()};
    l.record = std::move(*rec);
    return std::optional<Loaded>(std::move(l));
  }

  Result<Loaded> loadExisting(const ResourceId& id) {
    auto l = load(resourceKey(id));
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value()) return apiFailure(kNotFound, describeId(id) + " not found");
    return std::move(**l);
  }

  double nowSeconds() const {
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(time.systemNow().time_since_epoch())
            .count();
    return static_cast<double>(ms) / 1000.0;
  }

  std::string account(const ApiRequest& req) const {
    return req.account_id.empty() ? options.account_id : req.account_id;
  }

  Status checkMeshOwner(const ApiRequest& req) const {
    if (const std::string* owner = req.queryParam("meshOwner")) {
      if (*owner != options.account_id)
        return apiFailure(kForbidden, "meshOwner: mesh owner " + *owner +
                                          " is not this server's account " + options.account_id +
                                          " (weft does not share meshes across accounts)");
    }
    return {};
  }

  // ---- references ----

  // Ops that pin what `spec` refers to: a virtual service's provider is rewritten (so a delete of
  // the provider that checked "no service uses me" conflicts); route targets and gateway route
  // targets must exist at commit time.
  Result<std::vector<StoreOp>> referenceOps(const ResourceId& id, const pb::Message& spec) {
    std::vector<StoreOp> ops;
    auto pin = [&](Kind kind, const std::string& name, const std::string& path,
                   bool rewrite) -> Status {
      ResourceId ref{kind, id.mesh, "", name};
      auto l = load(resourceKey(ref));
      if (!l) return Unexpected<Error>{l.error()};
      if (!l->has_value())
        return apiFailure(kNotFound, path + ": " + describeId(ref) + " not found");
      for (const StoreOp& op : ops)
        if (op.key == resourceKey(ref)) return {};
      ops.push_back(rewrite ? StoreOp::put(resourceKey(ref), (*l)->raw, (*l)->revision)
                            : StoreOp::check(resourceKey(ref), (*l)->revision));
      return {};
    };
    if (id.kind == Kind::kVirtualService) {
      const auto& s = static_cast<const am::VirtualServiceSpec&>(spec);
      if (s.provider().has_virtualnode()) {
        if (Status st = pin(Kind::kVirtualNode, s.provider().virtualnode().virtualnodename(),
                            "spec.provider.virtualNode.virtualNodeName", true);
            !st)
          return Unexpected<Error>{st.error()};
      } else if (s.provider().has_virtualrouter()) {
        if (Status st = pin(Kind::kVirtualRouter, s.provider().virtualrouter().virtualroutername(),
                            "spec.provider.virtualRouter.virtualRouterName", true);
            !st)
          return Unexpected<Error>{st.error()};
      }
    } else if (id.kind == Kind::kRoute) {
      const auto& r = static_cast<const am::RouteSpec&>(spec);
      const pb::RepeatedPtrField<am::WeightedTarget>* targets = nullptr;
      std::string path;
      if (r.has_httproute()) {
        targets = &r.httproute().action().weightedtargets();
        path = "spec.httpRoute";
      } else if (r.has_http2route()) {
        targets = &r.http2route().action().weightedtargets();
        path = "spec.http2Route";
      } else if (r.has_grpcroute()) {
        targets = &r.grpcroute().action().weightedtargets();
        path = "spec.grpcRoute";
      } else if (r.has_tcproute()) {
        targets = &r.tcproute().action().weightedtargets();
        path = "spec.tcpRoute";
      }
      for (int i = 0; targets && i < targets->size(); ++i) {
        if (Status st =
                pin(Kind::kVirtualNode, (*targets)[i].virtualnode(),
                    path + ".action.weightedTargets[" + std::to_string(i) + "].virtualNode", false);
            !st)
          return Unexpected<Error>{st.error()};
      }
    } else if (id.kind == Kind::kGatewayRoute) {
      const auto& g = static_cast<const am::GatewayRouteSpec&>(spec);
      const am::GatewayRouteTarget* target = nullptr;
      std::string path;
      if (g.has_httproute()) {
        target = &g.httproute().action().target();
        path = "spec.httpRoute";
      } else if (g.has_http2route()) {
        target = &g.http2route().action().target();
        path = "spec.http2Route";
      } else if (g.has_grpcroute()) {
        target = &g.grpcroute().action().target();
        path = "spec.grpcRoute";
      }
      if (target) {
        if (Status st = pin(Kind::kVirtualService, target->virtualservice().virtualservicename(),
                            path + ".action.target.virtualService.virtualServiceName", false);
            !st)
          return Unexpected<Error>{st.error()};
      }
    }
    return ops;
  }

  // ResourceInUseException when `id` may not be deleted yet (App Mesh's delete order).
  Status checkNotInUse(const ResourceId& id) {
    auto first = [&](Kind kind, const std::string& parent) -> Result<std::optional<ResourceId>> {
      auto items = store.list(collectionPrefix(kind, id.mesh, parent), "", 1);
      if (!items) return Unexpected<Error>{items.error()};
      if (items->empty()) return std::optional<ResourceId>();
      return parseResourceKey(items->front().key);
    };
    std::vector<Kind> children;
    if (id.kind == Kind::kMesh)
      children = {Kind::kVirtualService, Kind::kVirtualRouter, Kind::kVirtualNode,
                  Kind::kVirtualGateway};
    if (id.kind == Kind::kVirtualRouter) children = {Kind::kRoute};
    if (id.kind == Kind::kVirtualGateway) children = {Kind::kGatewayRoute};
    for (Kind k : children) {
      auto child = first(k, id.kind == Kind::kMesh ? std::string() : id.name);
      if (!child) return Unexpected<Error>{child.error()};
      if (child->has_value())
        return apiFailure(kResourceInUse, describeId(id) + " still has " +
                                              std::string(kindDisplayName(k)) + " \"" +
                                              (*child)->name + "\"; delete it first");
    }
    if (id.kind == Kind::kVirtualNode || id.kind == Kind::kVirtualRouter) {
      auto services = store.list(collectionPrefix(Kind::kVirtualService, id.mesh), "", 0);
      if (!services) return Unexpected<Error>{services.error()};
      for (const KeyValue& kv : *services) {
        // An unreadable record might be this resource's user: refuse rather than guess.
        auto parsed = parseRecord(kv.value, kv.key);
        if (!parsed) return Unexpected<Error>{parsed.error()};
        const am::StoredResource& rec = *parsed;
        const am::VirtualServiceProvider& p = rec.virtualservice().spec().provider();
        bool uses = id.kind == Kind::kVirtualNode
                        ? p.has_virtualnode() && p.virtualnode().virtualnodename() == id.name
                        : p.has_virtualrouter() && p.virtualrouter().virtualroutername() == id.name;
        if (uses)
          return apiFailure(kResourceInUse, describeId(id) +
                                                " is the provider of virtual service \"" +
                                                rec.virtualservice().virtualservicename() +
                                                "\"; delete or update the virtual service first");
      }
    }
    return {};
  }

  // ---- operations ----

  Result<std::string> create(ResourceId id, const ApiRequest& req) {
    const KindInfo& ki = kindInfo(id.kind);
    auto input = parseBody(req.body, ki.create_input);
    if (!input) return Unexpected<Error>{input.error()};
    if (Status s = checkSchema(**input); !s) return Unexpected<Error>{s.error()};
    id.name = getString(**input, ki.name_field);
    if (Status s = checkName(id.name, ki.name_field); !s) return Unexpected<Error>{s.error()};
    if (id.kind == Kind::kMesh) id.mesh = id.name;
    std::unique_ptr<pb::Message> spec = newMessage(ki.spec);
    if (hasField(**input, "spec")) spec->CopyFrom(getField(**input, "spec"));
    if (Status s = checkSpec(id.kind, *spec, options.quotas); !s)
      return Unexpected<Error>{s.error()};
    pb::RepeatedPtrField<am::TagRef> tags;
    const pb::FieldDescriptor* tags_field = fieldOf(**input, "tags");
    for (int i = 0; i < (*input)->GetReflection()->FieldSize(**input, tags_field); ++i)
      *tags.Add() = static_cast<const am::TagRef&>(
          (*input)->GetReflection()->GetRepeatedMessage(**input, tags_field, i));
    std::set<std::string> tag_keys;
    for (int i = 0; i < tags.size(); ++i)
      if (!tag_keys.insert(tags[i].key()).second)
        return badRequest("tags[" + std::to_string(i) + "].key: \"" + tags[i].key() +
                          "\" is listed twice");
    std::string token = getString(**input, "clientToken");
    std::string digest = requestDigest(**input, id);
    std::string key = resourceKey(id);

    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto existing = load(key);
      if (!existing) return Unexpected<Error>{existing.error()};
      if (existing->has_value()) {
        const am::StoredResource& rec = (*existing)->record;
        if (!token.empty() && rec.createclienttoken() == token) {
          if (rec.createrequestdigest() == digest) return printJson(dataOf(rec, id.kind));
          return apiFailure(kConflict, "clientToken \"" + token + "\" was already used to create " +
                                           describeId(id) + " with a different request");
        }
        return apiFailure(kConflict, describeId(id) + " already exists");
      }
      std::vector<StoreOp> ops;
      // The parent: must exist, bounds the count of its children (quota) and is rewritten so
      // that its delete (which checked "no children") conflicts with this create.
      std::string parent_key;
      std::optional<Loaded> parent;
      if (id.kind == Kind::kMesh) {
        parent_key = std::string(kMeshCounterKey);
        auto counter = load(parent_key);
        if (!counter) return Unexpected<Error>{counter.error()};
        parent = std::move(*counter);
      } else {
        ResourceId pid = parentOf(id);
        parent_key = resourceKey(pid);
        auto p = load(parent_key);
        if (!p) return Unexpected<Error>{p.error()};
        if (!p->has_value()) return apiFailure(kNotFound, describeId(pid) + " not found");
        parent = std::move(*p);
      }
      auto siblings = store.list(collectionPrefix(id.kind, id.mesh, id.parent), "", 0);
      if (!siblings) return Unexpected<Error>{siblings.error()};
      int quota = quotaOf(id.kind, options.quotas);
      if (static_cast<int>(siblings->size()) >= quota) {
        std::string where =
            id.kind == Kind::kMesh ? std::string("this account") : describeId(parentOf(id));
        return apiFailure(kLimitExceeded, "cannot create " + describeId(id) + ": " + where +
                                              " already has " + std::to_string(siblings->size()) +
                                              " " + std::string(kindDisplayName(id.kind)) +
                                              (id.kind == Kind::kMesh ? "es" : "s") +
                                              ", the limit is " + std::to_string(quota));
      }
      ops.push_back(parent ? StoreOp::put(parent_key, parent->raw, parent->revision)
                           : StoreOp::put(parent_key, "{}", StoreOp::kAbsent));
      auto refs = referenceOps(id, *spec);
      if (!refs) return Unexpected<Error>{refs.error()};
      for (StoreOp& op : *refs) ops.push_back(std::move(op));

      am::StoredResource rec;
      pb::Message& data = dataOf(rec, id.kind);
      setString(data, "meshName", id.mesh);
      setString(data, ki.name_field, id.name);
      if (!ki.parent_field.empty()) setString(data, ki.parent_field, id.parent);
      am::ResourceMetadata& md = metadataOf(data);
      md.set_arn(resourceArn(id, options.region, options.account_id));
      md.set_uid(uuidV4());
      md.set_version(1);
      double now = nowSeconds();
      md.set_createdat(now);
      md.set_lastupdatedat(now);
      md.set_meshowner(options.account_id);
      md.set_resourceowner(account(req));
      mutableField(data, "spec").CopyFrom(*spec);
      setString(mutableField(data, "status"), "status", "ACTIVE");
      *rec.mutable_tags() = tags;
      rec.set_createclienttoken(token);
      rec.set_createrequestdigest(digest);
      ops.push_back(StoreOp::put(key, printJson(rec), StoreOp::kAbsent));

      auto committed = store.commit(ops);
      if (committed) return printJson(data);
      if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
    }
    return apiFailure(kTooManyRequests, "too many concurrent changes; retry");
  }

  Result<std::string> describe(const ResourceId& id) {
    auto l = loadExisting(id);
    if (!l) return Unexpected<Error>{l.error()};
    return printJson(dataOf(l->record, id.kind));
  }

  Result<std::string> update(const ResourceId& id, const ApiRequest& req) {
    const KindInfo& ki = kindInfo(id.kind);
    auto input = parseBody(req.body, ki.update_input);
    if (!input) return Unexpected<Error>{input.error()};
    if (Status s = checkSchema(**input); !s) return Unexpected<Error>{s.error()};
    std::unique_ptr<pb::Message> spec = newMessage(ki.spec);
    if (hasField(**input, "spec")) spec->CopyFrom(getField(**input, "spec"));
    if (Status s = checkSpec(id.kind, *spec, options.quotas); !s)
      return Unexpected<Error>{s.error()};
    std::string token = getString(**input, "clientToken");
    std::string digest = requestDigest(**input, id);
    std::string key = resourceKey(id);

    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto l = loadExisting(id);
      if (!l) return Unexpected<Error>{l.error()};
      am::StoredResource& rec = l->record;
      if (!token.empty() && rec.updateclienttoken() == token) {
        if (rec.updaterequestdigest() == digest) return printJson(dataOf(rec, id.kind));
        return apiFailure(kConflict, "clientToken \"" + token + "\" was already used to update " +
                                         describeId(id) + " with a different request");
      }
      auto refs = referenceOps(id, *spec);
      if (!refs) return Unexpected<Error>{refs.error()};
      pb::Message& data = dataOf(rec, id.kind);
      mutableField(data, "spec").CopyFrom(*spec);
      am::ResourceMetadata& md = metadataOf(data);
      md.set_version(md.version() + 1);
      md.set_lastupdatedat(nowSeconds());
      rec.set_updateclienttoken(token);
      rec.set_updaterequestdigest(digest);
      std::vector<StoreOp> ops = std::move(*refs);
      ops.push_back(StoreOp::put(key, printJson(rec), l->revision));
      auto committed = store.commit(ops);
      if (committed) return printJson(data);
      if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
    }
    return apiFailure(kTooManyRequests, "too many concurrent changes; retry");
  }

  Result<std::string> remove(const ResourceId& id) {
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto l = loadExisting(id);
      if (!l) return Unexpected<Error>{l.error()};
      if (Status s = checkNotInUse(id); !s) return Unexpected<Error>{s.error()};
      auto committed = store.commit({StoreOp::remove(resourceKey(id), l->revision)});
      if (committed) {
        pb::Message& data = dataOf(l->record, id.kind);
        setString(mutableField(data, "status"), "status", "DELETED");
        return printJson(data);
      }
      if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
    }
    return apiFailure(kTooManyRequests, "too many concurrent changes; retry");
  }

  static Result<int> parseLimit(const ApiRequest& req, int max) {
    const std::string* v = req.queryParam("limit");
    if (v == nullptr) return max;
    int n = 0;
    bool ok = !v->empty() && v->size() <= 6;
    for (char c : *v) ok = ok && c >= '0' && c <= '9';
    if (ok) n = std::stoi(*v);
    if (!ok || n < 1 || n > max)
      return badRequest("limit: \"" + v->substr(0, 20) + "\" is out of range 1-" +
                        std::to_string(max));
    return n;
  }

  static Result<std::string> parseToken(const ApiRequest& req) {
    const std::string* v = req.queryParam("nextToken");
    if (v == nullptr || v->empty()) return std::string();
    auto raw = hexDecode(*v);
    if (!raw || raw->rfind("weft1:", 0) != 0)
      return badRequest("nextToken: is not a token this API answered");
    return raw->substr(6);
  }

  static std::string makeToken(std::string_view position) {
    std::string raw = "weft1:";
    raw.append(position);
    return hexEncode(raw);
  }

  Result<std::string> list(Kind kind, const ResourceId& parent, const ApiRequest& req) {
    const KindInfo& ki = kindInfo(kind);
    if (kind != Kind::kMesh) {
      auto p = loadExisting(parent);
      if (!p) return Unexpected<Error>{p.error()};
    }
    auto limit = parseLimit(req, 100);
    if (!limit) return Unexpected<Error>{limit.error()};
    auto after = parseToken(req);
    if (!after) return Unexpected<Error>{after.error()};
    std::string prefix = collectionPrefix(kind, parent.mesh, parent.name);
    auto items = store.list(prefix, after->empty() ? std::string() : prefix + *after, *limit + 1);
    if (!items) return Unexpected<Error>{items.error()};
    std::unique_ptr<pb::Message> out = newMessage(ki.list_output);
    const pb::FieldDescriptor* list_field = fieldOf(*out, ki.list_field);
    size_t n = std::min(items->size(), static_cast<size_t>(*limit));
    for (size_t i = 0; i < n; ++i) {
      auto rec = parseRecord((*items)[i].value, (*items)[i].key);
      if (!rec) return Unexpected<Error>{rec.error()};
      fillRef(dataOf(*rec, kind), *out->GetReflection()->AddMessage(out.get(), list_field));
    }
    if (items->size() > n) {
      const std::string& last = (*items)[n - 1].key;
      setString(*out, "nextToken", makeToken(std::string_view(last).substr(prefix.size())));
    }
    return printJson(*out, true);
  }

  // ---- tags ----

  Result<ResourceId> resolveArn(const ApiRequest& req) {
    const std::string* arn = req.queryParam("resourceArn");
    if (arn == nullptr || arn->empty()) return badRequest("resourceArn: is required");
    if (arn->rfind("arn:aws:appmesh:", 0) != 0)
      return badRequest("resourceArn: \"" + arn->substr(0, 200) + "\" is not an App Mesh ARN");
    auto id = parseResourceArn(*arn, options.region, options.account_id);
    if (!id)
      return apiFailure(kNotFound, "resourceArn: no resource has the ARN " + arn->substr(0, 300));
    return *id;
  }

  Result<std::string> changeTags(const ApiRequest& req, bool add) {
    auto id = resolveArn(req);
    if (!id) return Unexpected<Error>{id.error()};
    std::unique_ptr<pb::Message> input =
        add ? std::unique_ptr<pb::Message>(new am::TagResourceInput)
            : std::unique_ptr<pb::Message>(new am::UntagResourceInput);
    auto parsed = parseBody(req.body, input->GetDescriptor());
    if (!parsed) return Unexpected<Error>{parsed.error()};
    if (Status s = checkSchema(**parsed); !s) return Unexpected<Error>{s.error()};
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto l = loadExisting(*id);
      if (!l) return Unexpected<Error>{l.error()};
      auto* tags = l->record.mutable_tags();
      if (add) {
        const auto& in = static_cast<const am::TagResourceInput&>(**parsed);
        for (const am::TagRef& t : in.tags()) {
          bool replaced = false;
          for (am::TagRef& existing : *tags)
            if (existing.key() == t.key()) {
              existing = t;
              replaced = true;
            }
          if (!replaced) *tags->Add() = t;
        }
        if (tags->size() > 50)
          return apiFailure(kTooManyTags, "tags: the resource would have " +
                                              std::to_string(tags->size()) +
                                              " tags; at most 50 are allowed");
      } else {
        const auto& in = static_cast<const am::UntagResourceInput&>(**parsed);
        std::set<std::string> drop(in.tagkeys().begin(), in.tagkeys().end());
        pb::RepeatedPtrField<am::TagRef> kept;
        for (const am::TagRef& t : *tags)
          if (!drop.count(t.key())) *kept.Add() = t;
        *tags = std::move(kept);
      }
      auto committed =
          store.commit({StoreOp::put(resourceKey(*id), printJson(l->record), l->revision)});
      if (committed) return std::string("{}");
      if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
    }
    return apiFailure(kTooManyRequests, "too many concurrent changes; retry");
  }

  Result<std::string> listTags(const ApiRequest& req) {
    auto id = resolveArn(req);
    if (!id) return Unexpected<Error>{id.error()};
    auto limit = parseLimit(req, 50);
    if (!limit) return Unexpected<Error>{limit.error()};
    auto after = parseToken(req);
    if (!after) return Unexpected<Error>{after.error()};
    auto l = loadExisting(*id);
    if (!l) return Unexpected<Error>{l.error()};
    size_t start = 0;
    if (!after->empty()) {
      bool ok = after->size() <= 4;
      for (char c : *after) ok = ok && c >= '0' && c <= '9';
      if (!ok) return badRequest("nextToken: is not a token this API answered");
      start = std::stoul(*after);
    }
    am::ListTagsForResourceOutput out;
    const auto& tags = l->record.tags();
    size_t end = std::min(static_cast<size_t>(tags.size()), start + static_cast<size_t>(*limit));
    for (size_t i = start; i < end; ++i) *out.add_tags() = tags[static_cast<int>(i)];
    if (end < static_cast<size_t>(tags.size())) out.set_nexttoken(makeToken(std::to_string(end)));
    return printJson(out, true);
  }

  // ---- dispatch ----

  Result<std::string> dispatch(const ApiRequest& req) {
    const std::string& m = req.method;
    // Segments come percent-decoded one by one (ApiRequest::path_segments), so a name holding
    // an encoded '/' is one segment, refused by checkName, not a path separator.
    std::vector<std::string> seg = req.segments();
    auto unknown = [&]() {
      return apiFailure(kUnknownOperation, "no App Mesh operation is " + m + " " + req.path);
    };
    if (seg.empty() || seg[0] != kPathPrefix.substr(1)) return unknown();
    seg.erase(seg.begin());
    if (seg.size() == 1 && seg[0] == "tag" && m == "PUT") return changeTags(req, true);
    if (seg.size() == 1 && seg[0] == "untag" && m == "PUT") return changeTags(req, false);
    if (seg.size() == 1 && seg[0] == "tags" && m == "GET") return listTags(req);
    if (seg.empty() || seg[0] != "meshes") return unknown();
    for (const std::string& s : seg)
      if (s.empty()) return unknown();
    if (Status s = checkMeshOwner(req); !s) return Unexpected<Error>{s.error()};

    if (seg.size() == 1) {
      if (m == "PUT") return create(ResourceId{Kind::kMesh, "", "", ""}, req);
      if (m == "GET") return list(Kind::kMesh, ResourceId{}, req);
      return unknown();
    }
    const std::string& mesh = seg[1];
    if (Status s = checkName(mesh, "meshName"); !s) return Unexpected<Error>{s.error()};
    ResourceId mesh_id{Kind::kMesh, mesh, "", mesh};
    if (seg.size() == 2) return item(mesh_id, req);

    if (std::optional<Kind> collection = kindOfCollection(seg[2])) {
      Kind kind = *collection;
      if (seg.size() == 3) {
        if (m == "PUT") return create(ResourceId{kind, mesh, "", ""}, req);
        if (m == "GET") return list(kind, mesh_id, req);
        return unknown();
      }
      if (seg.size() == 4) {
        if (Status s = checkName(seg[3], std::string(kindInfo(kind).name_field)); !s)
          return Unexpected<Error>{s.error()};
        return item(ResourceId{kind, mesh, "", seg[3]}, req);
      }
      return unknown();
    }
    bool route = seg[2] == "virtualRouter" && seg.size() >= 5 && seg[4] == "routes";
    bool gateway_route = seg[2] == "virtualGateway" && seg.size() >= 5 && seg[4] == "gatewayRoutes";
    if (!route && !gateway_route) return unknown();
    Kind parent_kind = route ? Kind::kVirtualRouter : Kind::kVirtualGateway;
    Kind child_kind = route ? Kind::kRoute : Kind::kGatewayRoute;
    if (Status s = checkName(seg[3], std::string(kindInfo(parent_kind).name_field)); !s)
      return Unexpected<Error>{s.error()};
    if (seg.size() == 5) {
      if (m == "PUT") return create(ResourceId{child_kind, mesh, seg[3], ""}, req);
      if (m == "GET") return list(child_kind, ResourceId{parent_kind, mesh, "", seg[3]}, req);
      return unknown();
    }
    if (seg.size() == 6) {
      if (Status s = checkName(seg[5], std::string(kindInfo(child_kind).name_field)); !s)
        return Unexpected<Error>{s.error()};
      return item(ResourceId{child_kind, mesh, seg[3], seg[5]}, req);
    }
    return unknown();
  }

  Result<std::string> item(const ResourceId& id, const ApiRequest& req) {
    if (req.method == "GET") return describe(id);
    if (req.method == "PUT") return update(id, req);
    if (req.method == "DELETE") return remove(id);
    return apiFailure(kUnknownOperation, "no App Mesh operation is " + req.method + " " + req.path);
  }
};

AppMeshApi::AppMeshApi(Store& store, const TimeSource& time, Options options)
    : impl_(std::make_unique<Impl>(Impl{store, time, std::move(options)})) {}

AppMeshApi::~AppMeshApi() = default;

bool AppMeshApi::handles(std::string_view path) {
  return path == kPathPrefix ||
         (path.size() > kPathPrefix.size() && path.substr(0, kPathPrefix.size()) == kPathPrefix &&
          path[kPathPrefix.size()] == '/');
}

ApiResponse AppMeshApi::handle(const ApiRequest& request) {
  Result<std::string> body = impl_->dispatch(request);
  if (!body) return toApiResponse(body.error(), request);
  ApiResponse r;
  r.status = 200;
  r.body = std::move(*body);
  return r;
}

}  // namespace weft::control::appmesh
