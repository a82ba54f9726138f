#include "control/stacks/stack_api.h"

#include <cctype>
#include <ctime>
#include <map>
#include <set>
#include <vector>

#include "control/stacks/json_value.h"

namespace weft::control::stacks {

namespace {

constexpr std::string_view kStacksPath = "/weft/v1/stacks";
constexpr std::string_view kExportsPath = "/weft/v1/exports";
constexpr std::string_view kKeyPrefix = "stacks/";
constexpr int kMaxRetries = 8;

bool validStackName(std::string_view n) {
  if (n.empty() || n.size() > 128 || !std::isalpha(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

ApiResponse jsonResponse(int status, const Value& v) {
  ApiResponse r;
  r.status = status;
  r.body = toJson(v);
  return r;
}

ApiResponse validation(std::string_view message) {
  return apiError(400, "ValidationError", message);
}

ApiResponse internal(const Error& e) {
  return apiError(500, "InternalFailure", "store: " + e.message);
}

// A stack as read from the store.
struct StoredStack {
  std::string name;
  Value record;
  int64_t revision = 0;
};

std::map<std::string, std::string> exportsOf(const Value& record) {
  std::map<std::string, std::string> out;
  if (const Value* e = record.find("exports"); e && e->isObject())
    for (const auto& [k, v] : e->members()) out[k] = v.scalarText();
  return out;
}

std::set<std::string> importsOf(const Value& record) {
  std::set<std::string> out;
  if (const Value* i = record.find("imports"); i && i->isArray())
    for (const Value& v : i->items()) out.insert(v.scalarText());
  return out;
}

}  // namespace

struct StackApi::Impl {
  Store& store;
  const TimeSource& time;

  std::string now() const {
    std::time_t t = std::chrono::system_clock::to_time_t(time.systemNow());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }

  Result<std::vector<StoredStack>> readAll() {
    auto kvs = store.list(kKeyPrefix, "", 0);
    if (!kvs) return Unexpected<Error>{kvs.error()};
    std::vector<StoredStack> out;
    for (KeyValue& kv : *kvs) {
      auto v = parseJson(kv.value);
      if (!v || !v->isObject()) continue;  // not ours to judge; never written by this API
      out.push_back({kv.key.substr(kKeyPrefix.size()), std::move(*v), kv.revision});
    }
    return out;
  }

  ApiResponse put(const std::string& name, const std::string& body) {
    if (!validStackName(name))
      return validation("stack name '" + name +
                        "' must start with a letter and hold only letters, digits and '-' "
                        "(at most 128 characters)");
    auto parsed = parseJson(body);
    if (!parsed) return validation("the stack record is not JSON: " + parsed.error().message);
    if (!parsed->isObject()) return validation("the stack record must be a JSON object");
    Value in = std::move(*parsed);
    if (const Value* n = in.find("name"); n && n->text() != name)
      return validation("the record's name '" + n->text() + "' differs from the path's '" + name +
                        "'");
    const Value* exports = in.find("exports");
    if (exports && !exports->isNull() && !exports->isObject())
      return validation("'exports' must be an object of export name to value");
    if (exports && exports->isObject())
      for (const auto& [k, v] : exports->members())
        if (!v.isScalar() || k.empty())
          return validation("export '" + k + "' must have a string value");
    const Value* imports = in.find("imports");
    if (imports && !imports->isNull() && !imports->isArray())
      return validation("'imports' must be a list of export names");
    const Value* resources = in.find("resources");
    if (resources && !resources->isNull() && !resources->isArray())
      return validation("'resources' must be a list");

    std::map<std::string, std::string> new_exports = exportsOf(in);
    std::set<std::string> new_imports = importsOf(in);

    for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
      auto all = readAll();
      if (!all) return internal(all.error());
      const StoredStack* mine = nullptr;
      std::map<std::string, std::string> exporter;  // export → stack
      std::map<std::string, std::map<std::string, std::string>> export_values;
      std::map<std::string, std::vector<std::string>> importers;  // export → stacks
      for (const StoredStack& s : *all) {
        if (s.name == name) {
          mine = &s;
          continue;
        }
        for (const auto& [e, v] : exportsOf(s.record)) exporter[e] = s.name;
        for (const std::string& i : importsOf(s.record)) importers[i].push_back(s.name);
      }
      for (const auto& [e, v] : new_exports) {
        if (auto it = exporter.find(e); it != exporter.end())
          return validation("export name '" + e + "' is already exported by stack '" + it->second +
                            "'");
      }
      if (mine != nullptr) {
        for (const auto& [e, v] : exportsOf(mine->record)) {
          auto imp = importers.find(e);
          if (imp == importers.end()) continue;
          auto now_v = new_exports.find(e);
          if (now_v == new_exports.end() || now_v->second != v)
            return validation("cannot remove or change export '" + e +
                              "': it is imported by stack '" + imp->second[0] + "'");
        }
      }
      for (const std::string& i : new_imports) {
        if (!exporter.count(i)) return validation("no stack exports '" + i + "' (Fn::ImportValue)");
      }

      Value record = Value::object();
      record.set("name", Value::string(name));
      const Value* status = in.find("status");
      record.set("status", status && status->isString() && !status->text().empty()
                               ? *status
                               : Value::string(mine ? "UPDATE_COMPLETE" : "CREATE_COMPLETE"));
      for (std::string_view key :
           {"description", "template", "parameters", "resources", "outputs"}) {
        if (const Value* v = in.find(key)) record.set(std::string(key), *v);
      }
      if (!record.find("resources")) record.set("resources", Value::array());
      Value ex = Value::object();
      for (const auto& [e, v] : new_exports) ex.set(e, Value::string(v));
      record.set("exports", std::move(ex));
      Value im = Value::array();
      for (const std::string& i : new_imports) im.push(Value::string(i));
      record.set("imports", std::move(im));
      std::string ts = now();
      const Value* created = mine ? mine->record.find("createdAt") : nullptr;
      record.set("createdAt", created ? *created : Value::string(ts));
      record.set("updatedAt", Value::string(ts));

      std::vector<StoreOp> ops;
      ops.push_back(StoreOp::put(std::string(kKeyPrefix) + name, toJson(record),
                                 mine ? mine->revision : StoreOp::kAbsent));
      // The export/import checks above read every other stack: commit only if none changed.
      for (const StoredStack& s : *all)
        if (s.name != name)
          ops.push_back(StoreOp::check(std::string(kKeyPrefix) + s.name, s.revision));
      auto committed = store.commit(ops);
      if (committed) return jsonResponse(200, record);
      if (committed.error().code != kStoreConflict) return internal(committed.error());
    }
    return apiError(409, "ConflictException",
                    "stack '" + name + "' is being changed concurrently; retry");
  }

  ApiResponse get(const std::string& name) {
    auto kv = store.get(std::string(kKeyPrefix) + name);
    if (!kv) return internal(kv.error());
    if (!*kv) return apiError(404, "NotFound", "stack '" + name + "' does not exist");
    ApiResponse r;
    r.body = (*kv)->value;
    return r;
  }

  ApiResponse list() {
    auto all = readAll();
    if (!all) return internal(all.error());
    Value stacks = Value::array();
    for (const StoredStack& s : *all) {
      Value summary = Value::object();
      summary.set("name", Value::string(s.name));
      for (std::string_view key : {"status", "description", "createdAt", "updatedAt"})
        if (const Value* v = s.record.find(key)) summary.set(std::string(key), *v);
      const Value* res = s.record.find("resources");
      summary.set(
          "resourceCount",
          Value::number(static_cast<int64_t>(res && res->isArray() ? res->items().size() : 0)));
      stacks.push(std::move(summary));
    }
    Value out = Value::object();
    out.set("stacks", std::move(stacks));
    return jsonResponse(200, out);
  }

  ApiResponse remove(const std::string& name) {
    for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
      auto all = readAll();
      if (!all) return internal(all.error());
      const StoredStack* mine = nullptr;
      for (const StoredStack& s : *all)
        if (s.name == name) mine = &s;
      if (mine == nullptr) return apiError(404, "NotFound", "stack '" + name + "' does not exist");
      std::map<std::string, std::string> mine_exports = exportsOf(mine->record);
      std::vector<StoreOp> ops;
      ops.push_back(StoreOp::remove(std::string(kKeyPrefix) + name, mine->revision));
      for (const StoredStack& s : *all) {
        if (s.name == name) continue;
        for (const std::string& i : importsOf(s.record))
          if (mine_exports.count(i))
            return validation("export '" + i + "' of stack '" + name + "' is imported by stack '" +
                              s.name + "'; delete or update that stack first");
        ops.push_back(StoreOp::check(std::string(kKeyPrefix) + s.name, s.revision));
      }
      auto committed = store.commit(ops);
      if (committed) {
        Value out = Value::object();
        out.set("name", Value::string(name));
        out.set("deleted", Value::boolean(true));
        return jsonResponse(200, out);
      }
      if (committed.error().code != kStoreConflict) return internal(committed.error());
    }
    return apiError(409, "ConflictException",
                    "stack '" + name + "' is being changed concurrently; retry");
  }

  ApiResponse exports() {
    auto all = readAll();
    if (!all) return internal(all.error());
    std::map<std::string, std::pair<std::string, std::string>> by_name;  // → (stack, value)
    std::map<std::string, std::vector<std::string>> importers;
    for (const StoredStack& s : *all) {
      for (const auto& [e, v] : exportsOf(s.record)) by_name[e] = {s.name, v};
      for (const std::string& i : importsOf(s.record)) importers[i].push_back(s.name);
    }
    Value list = Value::array();
    for (const auto& [e, sv] : by_name) {
      Value item = Value::object();
      item.set("name", Value::string(e));
      item.set("value", Value::string(sv.second));
      item.set("exportingStack", Value::string(sv.first));
      Value imp = Value::array();
      for (const std::string& s : importers[e]) imp.push(Value::string(s));
      item.set("importingStacks", std::move(imp));
      list.push(std::move(item));
    }
    Value out = Value::object();
    out.set("exports", std::move(list));
    return jsonResponse(200, out);
  }
};

StackApi::StackApi(Store& store, const TimeSource& time)
    : impl_(std::make_unique<Impl>(Impl{store, time})) {}
StackApi::~StackApi() = default;

bool StackApi::handles(std::string_view path) {
  return path == kStacksPath || path == kExportsPath ||
         (path.size() > kStacksPath.size() && path.substr(0, kStacksPath.size()) == kStacksPath &&
          path[kStacksPath.size()] == '/');
}

ApiResponse StackApi::handle(const ApiRequest& request) {
  std::string_view path = request.path;
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  const std::string& m = request.method;
  auto notAllowed = [&] {
    return apiError(405, "MethodNotAllowed", m + " is not allowed on " + std::string(path));
  };
  if (path == kExportsPath) return m == "GET" ? impl_->exports() : notAllowed();
  if (path == kStacksPath) return m == "GET" ? impl_->list() : notAllowed();
  if (path.substr(0, kStacksPath.size()) != kStacksPath || path.size() <= kStacksPath.size() + 1)
    return apiError(404, "NotFound", "no such path " + std::string(path));
  std::string name(path.substr(kStacksPath.size() + 1));
  if (name.find('/') != std::string::npos)
    return apiError(404, "NotFound", "no such path " + std::string(path));
  if (m == "GET") return impl_->get(name);
  if (m == "PUT") return impl_->put(name, request.body);
  if (m == "DELETE") return impl_->remove(name);
  return notAllowed();
}

}  // namespace weft::control::stacks
