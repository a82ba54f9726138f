#include "cli/stack_deploy.h"

#include <algorithm>
#include <set>
#include <vector>

#include "cli/cfn_template.h"
#include "cli/resources.h"
#include "cli/stack_resources.h"

namespace weft::cli {

namespace {

std::string stackPath(const std::string& name) { return "/weft/v1/stacks/" + encodeSegment(name); }

// A resource id from a stored call ({kind, mesh, parent, name, ...}).
std::optional<ResourceId> idFromCall(const Value& call) {
  const Value* kind = call.find("kind");
  if (kind == nullptr) return std::nullopt;
  ResourceId id;
  id.kind = lookupKind(kind->str());
  if (id.kind == nullptr) return std::nullopt;
  if (const Value* v = call.find("mesh")) id.mesh = v->scalarText();
  if (const Value* v = call.find("parent")) id.parent = v->scalarText();
  if (const Value* v = call.find("name")) id.name = v->scalarText();
  return id;
}

// What a deploy did, for a rollback.
struct Action {
  enum Kind { kCreated, kUpdated, kDeleted, kCloudCreated, kCloudDeleted } kind;
  ResourceId id;
  std::string logical_id;
  Value spec;  // kUpdated: the previous spec; kDeleted: the spec to recreate;
               // kCloudCreated: the handle to delete; kCloudDeleted: the properties to recreate
  Value tags;  // kDeleted: the tags to recreate
  std::string type;  // kCloud*: the CloudFormation type
};

void rollback(ApiClient& api, std::vector<Action>& actions, std::ostream& out) {
  for (auto it = actions.rbegin(); it != actions.rend(); ++it) {
    const Action& a = *it;
    Result<void> r;
    switch (a.kind) {
      case Action::kCreated: {
        out << "  " << a.logical_id << " (" << a.id.describe() << "): rollback: deleting\n";
        auto d = deleteResource(api, a.id);
        if (!d) r = Unexpected<Error>{d.error()};
        break;
      }
      case Action::kUpdated: {
        out << "  " << a.logical_id << " (" << a.id.describe()
            << "): rollback: restoring the previous spec\n";
        Value body = Value::object();
        body.set("spec", a.spec);
        auto u = api.call("PUT", a.id.path(), "", &body);
        if (!u) r = Unexpected<Error>{u.error()};
        break;
      }
      case Action::kDeleted: {
        out << "  " << a.logical_id << " (" << a.id.describe() << "): rollback: recreating\n";
        auto c = applyResource(api, a.id, a.spec, &a.tags);
        if (!c) r = Unexpected<Error>{c.error()};
        break;
      }
      case Action::kCloudCreated: {
        out << "  " << a.logical_id << " (" << a.type << "): rollback: deleting\n";
        auto d = stack::deleteResource(api, a.type, a.spec);
        if (!d) r = Unexpected<Error>{d.error()};
        break;
      }
      case Action::kCloudDeleted: {
        out << "  " << a.logical_id << " (" << a.type << "): rollback: recreating\n";
        auto c = stack::createResource(api, a.type, a.logical_id + " (" + a.type + ")", a.spec,
                                       a.id.name);
        if (!c) r = Unexpected<Error>{c.error()};
        break;
      }
    }
    if (!r) out << "  rollback of " << a.logical_id << " failed: " << r.error().message << "\n";
  }
}

Result<std::optional<Value>> getStack(ApiClient& api, const std::string& name) {
  auto r = api.call("GET", stackPath(name));
  if (!r) {
    if (r.error().code == 404) return std::optional<Value>();
    return Unexpected<Error>{r.error()};
  }
  return std::optional<Value>(std::move(*r));
}

// The server's account id (for AWS::AccountId): every key belongs to it.
std::string accountId(ApiClient& api) {
  auto r = api.call("GET", "/weft/v1/credentials");
  if (r) {
    if (const Value* list = r->find("credentials"); list && list->isArray())
      for (const Value& c : list->items())
        if (const Value* a = c.find("accountId"); a && !a->scalarText().empty())
          return a->scalarText();
  }
  return "000000000000";
}

}  // namespace

Status deployStack(ApiClient& api, const DeployOptions& options, std::ostream& out) {
  const std::string& stack = options.stack_name;
  auto tmpl = cfn::parseTemplate(options.template_text);
  if (!tmpl) return makeError("template: " + tmpl.error().message);
  auto previous = getStack(api, stack);
  if (!previous) return Unexpected<Error>{previous.error()};
  auto exports = api.call("GET", "/weft/v1/exports");
  if (!exports) return Unexpected<Error>{exports.error()};

  std::set<std::string> imports;
  cfn::EvalContext ctx;
  ctx.pseudo.region = options.region;
  ctx.pseudo.account_id = accountId(api);
  ctx.pseudo.stack_name = stack;
  ctx.mappings = tmpl->mappings;
  ctx.imports_used = &imports;
  std::map<std::string, std::string> foreign_exporter;  // export → stack (other stacks)
  if (const Value* list = exports->find("exports"); list && list->isArray()) {
    for (const Value& e : list->items()) {
      const Value* from = e.find("exportingStack");
      if (from && from->scalarText() == stack) continue;
      std::string name = e.find("name") ? e.find("name")->scalarText() : "";
      ctx.exports[name] = e.find("value") ? e.find("value")->scalarText() : "";
      foreign_exporter[name] = from ? from->scalarText() : "";
    }
  }
  auto params = cfn::resolveParameters(*tmpl, options.parameter_overrides);
  if (!params) return Unexpected<Error>{params.error()};
  ctx.parameters = *params;
  auto conds = cfn::evaluateConditions(*tmpl, ctx);
  if (!conds) return Unexpected<Error>{conds.error()};
  ctx.conditions = *conds;
  auto order = cfn::deployOrder(*tmpl, ctx.conditions);
  if (!order) return Unexpected<Error>{order.error()};

  // Export names that can be known now and clash with another stack's: fail before any change.
  for (const cfn::Output& o : tmpl->outputs) {
    if (o.export_name.isNull()) continue;
    auto name = cfn::evaluate(o.export_name, ctx);
    if (name && *name && (**name).isScalar()) {
      auto it = foreign_exporter.find((**name).scalarText());
      if (it != foreign_exporter.end())
        return makeError("output " + o.name + ": export name '" + it->first +
                         "' is already exported by stack '" + it->second + "'");
    }
  }

  // The previous deploy's resources by logical id.
  std::map<std::string, Value> old_entries;
  std::vector<std::string> old_order;
  if (*previous) {
    if (const Value* res = (**previous).find("resources"); res && res->isArray()) {
      for (const Value& r : res->items()) {
        const Value* id = r.find("logicalId");
        if (id == nullptr) continue;
        old_entries[id->scalarText()] = r;
        old_order.push_back(id->scalarText());
      }
    }
  }

  out << (*previous ? "Updating" : "Creating") << " stack " << stack << " (" << order->size()
      << " resources)\n";
  std::vector<Action> actions;
  Value records = Value::array();
  std::set<std::string> kept;  // old logical ids still deployed under the same identity
  std::string failing;
  auto fail = [&](const std::string& where, const Error& e) -> Status {
    out << "  " << where << ": FAILED: " << e.message << "\n";
    if (!actions.empty()) out << "Rolling back stack " << stack << "\n";
    rollback(api, actions, out);
    return makeError("stack " + stack + ": " + where + " failed: " + e.message +
                     (actions.empty() ? "" : " (rolled back)"));
  };

  for (const std::string& logical_id : *order) {
    const cfn::Resource& res =
        *std::find_if(tmpl->resources.begin(), tmpl->resources.end(),
                      [&](const cfn::Resource& r) { return r.logical_id == logical_id; });
    std::string where = logical_id + " (" + res.type + ")";
    const KindInfo* kind = kindForCfnType(res.type);
    if (kind == nullptr && stack::handlesType(res.type)) {
      auto props = cfn::evaluate(res.properties, ctx);
      if (!props) return fail(where, props.error());
      Value properties = *props ? std::move(**props) : Value::object();
      std::string generated = stack + "-" + logical_id;
      Value rec = Value::object();
      rec.set("logicalId", Value::string(logical_id));
      rec.set("type", Value::string(res.type));
      cfn::ResourceState st;
      st.type = res.type;
      // Unchanged when the previous deploy made it from the same properties; otherwise a new
      // one is made (a replacement: the old one is deleted after the template's resources).
      auto old = old_entries.find(logical_id);
      const Value* old_props = old == old_entries.end() ? nullptr : old->second.find("properties");
      const Value* old_type = old == old_entries.end() ? nullptr : old->second.find("type");
      if (old_props && old_type && old_type->scalarText() == res.type && *old_props == properties &&
          old->second.find("handle")) {
        kept.insert(logical_id);
        st.ref = old->second.find("physicalId") ? *old->second.find("physicalId") : Value();
        st.attributes =
            old->second.find("attributes") ? *old->second.find("attributes") : Value::object();
        rec = old->second;
        rec.set("status", Value::string("UNCHANGED"));
        out << "  " << where << ": unchanged " << st.ref.scalarText() << "\n";
      } else {
        auto made = stack::createResource(api, res.type, where, properties, generated);
        if (!made) return fail(where, made.error());
        Action a{Action::kCloudCreated, {}, logical_id, made->handle, Value(), res.type};
        actions.push_back(std::move(a));
        st.ref = made->ref;
        st.attributes = made->attributes;
        rec.set("physicalId", made->ref);
        rec.set("attributes", made->attributes);
        rec.set("status", Value::string("CREATE_COMPLETE"));
        rec.set("properties", properties);
        rec.set("handle", made->handle);
        out << "  " << where << ": created " << made->ref.scalarText() << "\n";
      }
      records.push(std::move(rec));
      ctx.resources[logical_id] = std::move(st);
      continue;
    }
    if (kind == nullptr) {
      out << "  " << where << ": skipped (type not handled yet)\n";
      cfn::ResourceState st;
      st.type = res.type;
      st.skipped = true;
      ctx.resources[logical_id] = st;
      Value rec = Value::object();
      rec.set("logicalId", Value::string(logical_id));
      rec.set("type", Value::string(res.type));
      rec.set("status", Value::string("SKIPPED"));
      records.push(std::move(rec));
      continue;
    }
    auto props = cfn::evaluate(res.properties, ctx);
    if (!props) return fail(where, props.error());
    Value properties = *props ? std::move(**props) : Value::object();
    auto call = cfn::appMeshCallFor(res, properties, stack + "-" + logical_id);
    if (!call) return fail(where, call.error());
    ResourceId id{call->kind, call->mesh, call->parent, call->name};

    std::optional<ResourceId> old_id;
    if (auto it = old_entries.find(logical_id); it != old_entries.end()) {
      const Value* type = it->second.find("type");
      const Value* old_call = it->second.find("call");
      if (type && type->scalarText() == res.type && old_call) old_id = idFromCall(*old_call);
    }
    bool same = old_id && old_id->kind == id.kind && old_id->mesh == id.mesh &&
                old_id->parent == id.parent && old_id->name == id.name;
    if (!same && !old_id) {
      // A new logical id must not take over a resource that already exists.
      auto existing = describeResource(api, id);
      if (!existing) return fail(where, existing.error());
      if (*existing)
        return fail(where, Error{0, id.describe() + " already exists (not made by this stack)"});
    }
    auto applied = applyResource(api, id, call->spec, &call->tags);
    if (!applied) return fail(where, applied.error());
    if (same) kept.insert(logical_id);
    switch (applied->outcome) {
      case ApplyOutcome::kCreated:
        actions.push_back({Action::kCreated, id, logical_id, Value(), Value(), ""});
        break;
      case ApplyOutcome::kUpdated:
        if (!applied->previous_spec.isNull())
          actions.push_back(
              {Action::kUpdated, id, logical_id, applied->previous_spec, Value(), ""});
        break;
      case ApplyOutcome::kUnchanged:
        break;
    }
    out << "  " << where << ": " << outcomeName(applied->outcome) << " " << id.describe() << "\n";
    cfn::ResourceState st = cfn::appMeshState(*kind, applied->data);
    Value rec = Value::object();
    rec.set("logicalId", Value::string(logical_id));
    rec.set("type", Value::string(res.type));
    rec.set("physicalId", st.ref);
    rec.set("attributes", st.attributes);
    rec.set("status", Value::string(applied->outcome == ApplyOutcome::kCreated   ? "CREATE_COMPLETE"
                                    : applied->outcome == ApplyOutcome::kUpdated ? "UPDATE_COMPLETE"
                                                                                 : "UNCHANGED"));
    rec.set("call", call->toValue());
    records.push(std::move(rec));
    ctx.resources[logical_id] = std::move(st);
  }

  // Resources of the previous deploy that are gone or replaced, newest first.
  for (auto it = old_order.rbegin(); it != old_order.rend(); ++it) {
    if (kept.count(*it)) continue;
    const Value& entry = old_entries[*it];
    if (const Value* handle = entry.find("handle")) {
      std::string type = entry.find("type") ? entry.find("type")->scalarText() : "";
      std::string where = *it + " (" + type + ")";
      auto d = stack::deleteResource(api, type, *handle);
      if (!d) return fail(where, d.error());
      out << "  " << where << ": deleted "
          << (entry.find("physicalId") ? entry.find("physicalId")->scalarText() : "") << "\n";
      Action a{Action::kCloudDeleted, {}, *it, Value(), Value(), type};
      a.id.name = stack + "-" + *it;
      if (const Value* p = entry.find("properties")) a.spec = *p;
      actions.push_back(std::move(a));
      continue;
    }
    const Value* old_call = entry.find("call");
    if (old_call == nullptr) continue;  // a skipped resource
    auto id = idFromCall(*old_call);
    if (!id) continue;
    std::string where = *it + " (" + entry.find("type")->scalarText() + ")";
    auto d = deleteResource(api, *id);
    if (!d) return fail(where, d.error());
    out << "  " << where << ": deleted " << id->describe() << "\n";
    const Value* spec = old_call->find("spec");
    const Value* tags = old_call->find("tags");
    actions.push_back({Action::kDeleted, *id, *it, spec ? *spec : Value::object(),
                       tags ? *tags : Value::array(), ""});
  }

  // Outputs and exports.
  Value outputs = Value::object();
  Value export_values = Value::object();
  for (const cfn::Output& o : tmpl->outputs) {
    if (!o.condition.empty() && !ctx.conditions[o.condition]) continue;
    auto v = cfn::evaluate(o.value, ctx);
    if (!v) return fail("output " + o.name, v.error());
    if (!*v) continue;
    if (!(**v).isScalar())
      return fail("output " + o.name, Error{0, "an output value must be a string"});
    std::string text = (**v).scalarText();
    outputs.set(o.name, Value::string(text));
    if (!o.export_name.isNull()) {
      auto n = cfn::evaluate(o.export_name, ctx);
      if (!n) return fail("output " + o.name, n.error());
      if (!*n || !(**n).isScalar() || (**n).scalarText().empty())
        return fail("output " + o.name, Error{0, "Export Name must be a non-empty string"});
      export_values.set((**n).scalarText(), Value::string(text));
    }
  }

  Value record = Value::object();
  record.set("name", Value::string(stack));
  record.set("status", Value::string(*previous ? "UPDATE_COMPLETE" : "CREATE_COMPLETE"));
  if (!tmpl->description.empty()) record.set("description", Value::string(tmpl->description));
  record.set("template", Value::string(options.template_text));
  Value params_out = Value::object();
  for (const auto& [k, v] : ctx.parameters) params_out.set(k, v);
  record.set("parameters", std::move(params_out));
  record.set("resources", std::move(records));
  record.set("outputs", std::move(outputs));
  record.set("exports", std::move(export_values));
  Value imports_out = Value::array();
  for (const std::string& i : imports) imports_out.push(Value::string(i));
  record.set("imports", std::move(imports_out));
  auto put = api.call("PUT", stackPath(stack), "", &record);
  if (!put) return fail("saving the stack record", put.error());
  out << "Stack " << stack << ": " << record.find("status")->text() << "\n";
  return {};
}

Status deleteStack(ApiClient& api, const std::string& stack, std::ostream& out) {
  auto record = getStack(api, stack);
  if (!record) return Unexpected<Error>{record.error()};
  if (!*record) return makeError("stack " + stack + " does not exist");
  auto exports = api.call("GET", "/weft/v1/exports");
  if (!exports) return Unexpected<Error>{exports.error()};
  if (const Value* list = exports->find("exports"); list && list->isArray()) {
    for (const Value& e : list->items()) {
      const Value* from = e.find("exportingStack");
      const Value* importers = e.find("importingStacks");
      if (!from || from->scalarText() != stack || !importers || !importers->isArray()) continue;
      for (const Value& i : importers->items())
        if (i.scalarText() != stack)
          return makeError("stack " + stack + ": export '" + e.find("name")->scalarText() +
                           "' is imported by stack '" + i.scalarText() +
                           "'; delete or update that stack first");
    }
  }
  out << "Deleting stack " << stack << "\n";
  std::vector<Value> resources;
  if (const Value* res = (**record).find("resources"); res && res->isArray())
    resources = res->items();
  while (!resources.empty()) {
    const Value& entry = resources.back();
    std::string logical = entry.find("logicalId") ? entry.find("logicalId")->scalarText() : "?";
    std::string type = entry.find("type") ? entry.find("type")->scalarText() : "?";
    std::string where = logical + " (" + type + ")";
    if (const Value* handle = entry.find("handle")) {
      std::string physical = entry.find("physicalId") ? entry.find("physicalId")->scalarText() : "";
      auto d = stack::deleteResource(api, type, *handle);
      if (!d) {
        out << "  " << where << ": FAILED: " << d.error().message << "\n";
        Value rec = **record;
        rec.set("status", Value::string("DELETE_FAILED"));
        rec.set("resources", Value::array(resources));
        auto saved = api.call("PUT", stackPath(stack), "", &rec);
        (void)saved;
        return makeError("stack " + stack + ": deleting " + where +
                         " failed: " + d.error().message);
      }
      out << "  " << where << ": " << (*d ? "deleted " : "already gone ") << physical << "\n";
      resources.pop_back();
      continue;
    }
    const Value* call = entry.find("call");
    std::optional<ResourceId> id = call ? idFromCall(*call) : std::nullopt;
    if (!id) {
      out << "  " << where << ": skipped\n";
      resources.pop_back();
      continue;
    }
    auto d = deleteResource(api, *id);
    if (!d) {
      out << "  " << where << ": FAILED: " << d.error().message << "\n";
      // Keep what is left on record so a later delete can finish the job.
      Value rec = **record;
      rec.set("status", Value::string("DELETE_FAILED"));
      rec.set("resources", Value::array(resources));
      auto saved = api.call("PUT", stackPath(stack), "", &rec);
      (void)saved;
      return makeError("stack " + stack + ": deleting " + where + " failed: " + d.error().message);
    }
    out << "  " << where << ": " << (*d ? "deleted " : "already gone ") << id->describe() << "\n";
    resources.pop_back();
  }
  auto del = api.call("DELETE", stackPath(stack));
  if (!del) return Unexpected<Error>{del.error()};
  out << "Stack " << stack << ": deleted\n";
  return {};
}

}  // namespace weft::cli
