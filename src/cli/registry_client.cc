#include "cli/registry_client.h"

#include <chrono>
#include <map>
#include <thread>

namespace weft::cli::registry {

namespace {

std::string field(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? m->scalarText() : std::string();
}

// Every item under `list_key` of `operation`, following NextToken.
Result<Value> allPages(ApiClient& api, std::string_view operation, Value request,
                       std::string_view list_key) {
  Value all = Value::array();
  std::string token;
  do {
    Value req = request;
    if (!token.empty()) req.set("NextToken", Value::string(token));
    auto r = call(api, operation, req);
    if (!r) return Unexpected<Error>{r.error()};
    if (const Value* list = r->find(list_key); list && list->isArray())
      for (const Value& item : list->items()) all.push(item);
    token = field(*r, "NextToken");
  } while (!token.empty());
  return all;
}

}  // namespace

Result<Value> call(ApiClient& api, std::string_view operation, const Value& body) {
  return api.callTarget(kService, "Route53AutoNaming_v20170314." + std::string(operation), body);
}

Result<Value> waitForOperation(ApiClient& api, const std::string& operation_id, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  Value req = Value::object();
  req.set("OperationId", Value::string(operation_id));
  while (true) {
    auto r = call(api, "GetOperation", req);
    if (!r) return Unexpected<Error>{r.error()};
    const Value* op = r->find("Operation");
    std::string status = op ? field(*op, "Status") : "";
    if (status == "SUCCESS") {
      const Value* t = op->find("Targets");
      return t ? *t : Value::object();
    }
    if (status == "FAIL")
      return makeError("operation " + operation_id + " (" + field(*op, "Type") +
                       ") failed: " + field(*op, "ErrorCode") + ": " + field(*op, "ErrorMessage"));
    if (std::chrono::steady_clock::now() >= deadline)
      return makeError("operation " + operation_id + " is still " + status + " after " +
                       std::to_string(timeout_ms / 1000) + "s");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

bool isNotFound(const Error& e) {
  for (const char* name : {"NamespaceNotFound", "ServiceNotFound", "InstanceNotFound"})
    if (e.message.rfind(name, 0) == 0) return true;
  return false;
}

Result<Value> listNamespaces(ApiClient& api) {
  return allPages(api, "ListNamespaces", Value::object(), "Namespaces");
}

Result<Value> findNamespace(ApiClient& api, const std::string& id_or_name) {
  auto all = listNamespaces(api);
  if (!all) return Unexpected<Error>{all.error()};
  std::string known;
  for (const Value& ns : all->items()) {
    if (field(ns, "Id") == id_or_name || field(ns, "Name") == id_or_name) return ns;
    known += (known.empty() ? "" : ", ") + field(ns, "Name");
  }
  return makeError("no namespace '" + id_or_name +
                   "' (namespaces: " + (known.empty() ? "none" : known) + ")");
}

Result<Value> listServices(ApiClient& api, const std::string& namespace_filter) {
  Value namespaces = Value::array();
  if (namespace_filter.empty()) {
    auto all = listNamespaces(api);
    if (!all) return Unexpected<Error>{all.error()};
    namespaces = std::move(*all);
  } else {
    auto ns = findNamespace(api, namespace_filter);
    if (!ns) return Unexpected<Error>{ns.error()};
    namespaces.push(std::move(*ns));
  }
  Value out = Value::array();
  for (const Value& ns : namespaces.items()) {
    Value filter = Value::object();
    filter.set("Name", Value::string("NAMESPACE_ID"));
    filter.set("Values", Value::array({Value::string(field(ns, "Id"))}));
    filter.set("Condition", Value::string("EQ"));
    Value req = Value::object();
    req.set("Filters", Value::array({filter}));
    auto services = allPages(api, "ListServices", req, "Services");
    if (!services) return Unexpected<Error>{services.error()};
    for (Value& s : services->items()) {
      s.set("NamespaceId", Value::string(field(ns, "Id")));
      s.set("NamespaceName", Value::string(field(ns, "Name")));
      out.push(std::move(s));
    }
  }
  return out;
}

Result<Value> listInstances(ApiClient& api, const std::string& namespace_filter,
                            const std::string& service_filter) {
  auto services = listServices(api, namespace_filter);
  if (!services) return Unexpected<Error>{services.error()};
  std::vector<const Value*> chosen;
  for (const Value& s : services->items()) {
    if (service_filter.empty() || field(s, "Id") == service_filter ||
        field(s, "Name") == service_filter ||
        field(s, "Name") + "." + field(s, "NamespaceName") == service_filter)
      chosen.push_back(&s);
  }
  if (!service_filter.empty()) {
    if (chosen.empty())
      return makeError("no service '" + service_filter + "'" +
                       (namespace_filter.empty() ? "" : " in namespace " + namespace_filter));
    if (chosen.size() > 1)
      return makeError("service name '" + service_filter +
                       "' is in several namespaces: give --namespace, the service id or "
                       "NAME.NAMESPACE");
  }
  Value out = Value::array();
  for (const Value* s : chosen) {
    Value req = Value::object();
    req.set("ServiceId", Value::string(field(*s, "Id")));
    auto instances = allPages(api, "ListInstances", req, "Instances");
    if (!instances) return Unexpected<Error>{instances.error()};
    if (instances->items().empty()) continue;
    std::map<std::string, std::string> health;
    auto h = call(api, "GetInstancesHealthStatus", req);
    if (h) {
      if (const Value* st = h->find("Status"); st && st->isObject())
        for (const auto& [id, v] : st->members()) health[id] = v.scalarText();
    }
    for (Value& inst : instances->items()) {
      inst.set("ServiceId", Value::string(field(*s, "Id")));
      inst.set("ServiceName", Value::string(field(*s, "Name")));
      inst.set("NamespaceName", Value::string(field(*s, "NamespaceName")));
      auto it = health.find(field(inst, "Id"));
      inst.set("HealthStatus", Value::string(it == health.end() ? "UNKNOWN" : it->second));
      out.push(std::move(inst));
    }
  }
  return out;
}

}  // namespace weft::cli::registry
