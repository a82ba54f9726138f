#include "cli/resources.h"

#include <cctype>
#include <map>

namespace weft::cli {

std::string ResourceId::describe() const {
  std::string s(kind->name);
  s += ' ';
  if (kind->isMesh()) return s + name;
  s += mesh + "/";
  if (!parent.empty()) s += parent + "/";
  return s + name;
}

const char* outcomeName(ApplyOutcome o) {
  switch (o) {
    case ApplyOutcome::kCreated:
      return "created";
    case ApplyOutcome::kUpdated:
      return "updated";
    case ApplyOutcome::kUnchanged:
      return "unchanged";
  }
  return "";
}

Result<std::optional<Value>> describeResource(ApiClient& api, const ResourceId& id) {
  auto r = api.call("GET", id.path());
  if (!r) {
    if (r.error().code == 404) return std::optional<Value>();
    return Unexpected<Error>{r.error()};
  }
  // DescribeX answers {"<kind>": data} in the API docs' wire shape; accept bare data too.
  std::string key(id.kind->name);
  key[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(key[0])));
  if (const Value* inner = r->find(key); inner && inner->isObject()) return std::optional(*inner);
  return std::optional<Value>(std::move(*r));
}

Result<std::vector<Value>> listResources(ApiClient& api, const KindInfo& kind,
                                         const std::string& mesh, const std::string& parent) {
  std::vector<Value> out;
  std::string token;
  for (int page = 0; page < 10000; ++page) {
    std::vector<std::pair<std::string, std::string>> q = {{"limit", "100"}};
    if (!token.empty()) q.emplace_back("nextToken", token);
    auto r = api.call("GET", collectionPath(kind, mesh, parent), makeQuery(q));
    if (!r) return Unexpected<Error>{r.error()};
    if (const Value* items = r->find(kind.list_key); items && items->isArray())
      for (const Value& item : items->items()) out.push_back(item);
    const Value* next = r->find("nextToken");
    if (next == nullptr || !next->isString() || next->text().empty()) break;
    token = next->text();
  }
  return out;
}

Value normalizeSpec(const Value& v) {
  if (v.isObject()) {
    Value out = Value::object();
    for (const auto& [k, m] : v.members()) {
      Value n = normalizeSpec(m);
      if (n.isNull() || (n.isObject() && n.members().empty()) || (n.isArray() && n.items().empty()))
        continue;
      out.set(k, std::move(n));
    }
    return out;
  }
  if (v.isArray()) {
    Value out = Value::array();
    for (const Value& item : v.items()) out.push(normalizeSpec(item));
    return out;
  }
  return v;
}

namespace {

std::string wireKey(const KindInfo& kind) {
  std::string key(kind.name);
  key[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(key[0])));
  return key;
}

Value unwrap(const KindInfo& kind, Value v) {
  if (const Value* inner = v.find(wireKey(kind)); inner && inner->isObject()) return *inner;
  return v;
}

std::map<std::string, std::string> tagMap(const Value& tags) {
  std::map<std::string, std::string> m;
  for (const Value& t : tags.items()) {
    const Value* k = t.find("key");
    const Value* v = t.find("value");
    if (k) m[k->scalarText()] = v ? v->scalarText() : "";
  }
  return m;
}

}  // namespace

Result<bool> syncTags(ApiClient& api, const std::string& arn, const Value& tags) {
  std::string q = makeQuery({{"resourceArn", arn}});
  std::map<std::string, std::string> have;
  std::string token;
  while (true) {
    std::string query = token.empty() ? q : q + "&" + makeQuery({{"nextToken", token}});
    auto r = api.call("GET", "/v20190125/tags", query);
    if (!r) return Unexpected<Error>{r.error()};
    if (const Value* t = r->find("tags"); t && t->isArray())
      for (const auto& [k, v] : tagMap(*t)) have[k] = v;
    const Value* next = r->find("nextToken");
    if (next == nullptr || !next->isString() || next->text().empty()) break;
    token = next->text();
  }
  std::map<std::string, std::string> want = tagMap(tags);
  if (want == have) return false;
  Value remove_keys = Value::array();
  for (const auto& [k, v] : have)
    if (!want.count(k)) remove_keys.push(Value::string(k));
  if (!remove_keys.items().empty()) {
    Value body = Value::object();
    body.set("tagKeys", std::move(remove_keys));
    auto r = api.call("PUT", "/v20190125/untag", q, &body);
    if (!r) return Unexpected<Error>{r.error()};
  }
  Value add = Value::array();
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it != have.end() && it->second == v) continue;
    Value t = Value::object();
    t.set("key", Value::string(k));
    t.set("value", Value::string(v));
    add.push(std::move(t));
  }
  if (!add.items().empty()) {
    Value body = Value::object();
    body.set("tags", std::move(add));
    auto r = api.call("PUT", "/v20190125/tag", q, &body);
    if (!r) return Unexpected<Error>{r.error()};
  }
  return true;
}

Result<ApplyResult> applyResource(ApiClient& api, const ResourceId& id, const Value& spec,
                                  const Value* tags) {
  auto current = describeResource(api, id);
  if (!current) return Unexpected<Error>{current.error()};
  ApplyResult result;
  if (!*current) {
    Value body = Value::object();
    body.set(std::string(id.kind->name_field), Value::string(id.name));
    body.set("spec", spec);
    if (tags && !tags->items().empty()) body.set("tags", *tags);
    auto r = api.call("PUT", collectionPath(*id.kind, id.mesh, id.parent), "", &body);
    if (!r) return Unexpected<Error>{r.error()};
    result.outcome = ApplyOutcome::kCreated;
    result.data = unwrap(*id.kind, std::move(*r));
    return result;
  }
  Value server = std::move(**current);
  const Value* server_spec = server.find("spec");
  Value have = server_spec ? normalizeSpec(*server_spec) : Value::object();
  bool spec_changed = !(normalizeSpec(spec) == have);
  if (spec_changed) {
    Value body = Value::object();
    body.set("spec", spec);
    auto r = api.call("PUT", id.path(), "", &body);
    if (!r) return Unexpected<Error>{r.error()};
    result.previous_spec = server_spec ? *server_spec : Value::object();
    server = unwrap(*id.kind, std::move(*r));
  }
  bool tags_changed = false;
  if (tags) {
    const Value* md = server.find("metadata");
    const Value* arn = md ? md->find("arn") : nullptr;
    if (arn && arn->isString()) {
      auto t = syncTags(api, arn->text(), *tags);
      if (!t) return Unexpected<Error>{t.error()};
      tags_changed = *t;
    }
  }
  result.outcome = spec_changed || tags_changed ? ApplyOutcome::kUpdated : ApplyOutcome::kUnchanged;
  if (!spec_changed && tags_changed) result.previous_spec = server_spec ? *server_spec : Value();
  result.data = std::move(server);
  return result;
}

Result<bool> deleteResource(ApiClient& api, const ResourceId& id) {
  auto r = api.call("DELETE", id.path());
  if (!r) {
    if (r.error().code == 404) return false;
    return Unexpected<Error>{r.error()};
  }
  return true;
}

}  // namespace weft::cli
