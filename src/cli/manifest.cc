#include "cli/manifest.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "common/file_util.h"

namespace weft::cli {

namespace {

Result<Manifest> fromValue(const Value& doc, const std::string& source) {
  auto fail = [&](const std::string& what) { return makeError(source + ": " + what); };
  if (!doc.isObject()) return fail("a manifest must be a mapping with kind, name and spec");
  Manifest m;
  m.source = source;
  for (const auto& [key, v] : doc.members()) {
    static constexpr std::string_view kKnown[] = {"kind",           "mesh", "name", "virtualRouter",
                                                  "virtualGateway", "spec", "tags", "apiVersion"};
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown))
      return fail("unknown field '" + key +
                  "' (expected kind, mesh, name, virtualRouter, virtualGateway, spec, tags)");
    if (key != "spec" && key != "tags" && !v.isString())
      return fail("'" + key + "' must be a string");
  }
  const Value* kind = doc.find("kind");
  if (kind == nullptr) return fail("missing 'kind'");
  m.kind = lookupKind(kind->str());
  if (m.kind == nullptr)
    return fail("unknown kind '" + kind->text() +
                "' (expected Mesh, VirtualNode, VirtualService, VirtualRouter, Route, "
                "VirtualGateway or GatewayRoute)");
  const Value* name = doc.find("name");
  const Value* mesh = doc.find("mesh");
  m.name = name ? name->text() : "";
  m.mesh = mesh ? mesh->text() : "";
  if (m.kind->isMesh()) {
    if (m.name.empty()) m.name = m.mesh;
    if (m.mesh.empty()) m.mesh = m.name;
    if (m.name != m.mesh) return fail("a Mesh's 'name' and 'mesh' differ");
  }
  if (m.name.empty()) return fail("missing 'name'");
  if (m.mesh.empty())
    return fail("missing 'mesh' (the mesh " + std::string(m.kind->name) + " '" + m.name +
                "' belongs to)");
  for (std::string_view pf :
       {std::string_view("virtualRouter"), std::string_view("virtualGateway")}) {
    const Value* p = doc.find(pf);
    if (p == nullptr) continue;
    if (m.kind->parent_manifest_field != pf)
      return fail("'" + std::string(pf) + "' does not apply to a " + std::string(m.kind->name));
    m.parent = p->text();
  }
  if (m.kind->hasParent() && m.parent.empty())
    return fail("missing '" + std::string(m.kind->parent_manifest_field) + "' for " +
                std::string(m.kind->name) + " '" + m.name + "'");
  const Value* spec = doc.find("spec");
  if (spec == nullptr || spec->isNull()) {
    m.spec = Value::object();
  } else if (!spec->isObject()) {
    return fail("'spec' must be a mapping");
  } else {
    m.spec = *spec;
  }
  if (const Value* tags = doc.find("tags"); tags != nullptr && !tags->isNull()) {
    m.has_tags = true;
    if (tags->isObject()) {
      for (const auto& [k, v] : tags->members()) {
        if (!v.isScalar()) return fail("tag '" + k + "' must have a scalar value");
        m.tags.emplace_back(k, v.scalarText());
      }
    } else if (tags->isArray()) {
      for (const Value& t : tags->items()) {
        const Value* k = t.find("key");
        const Value* v = t.find("value");
        if (k == nullptr || !k->isScalar() || (v != nullptr && !v->isScalar()))
          return fail("each tag must be {key: K, value: V}");
        m.tags.emplace_back(k->scalarText(), v ? v->scalarText() : "");
      }
    } else {
      return fail("'tags' must be a list of {key, value} or a mapping");
    }
  }
  return m;
}

}  // namespace

std::string Manifest::describe() const {
  std::string s(kind->name);
  s += ' ';
  if (kind->isMesh()) return s + name;
  s += mesh + "/";
  if (!parent.empty()) s += parent + "/";
  return s + name;
}

Value Manifest::tagsValue() const {
  Value arr = Value::array();
  for (const auto& [k, v] : tags) {
    Value t = Value::object();
    t.set("key", Value::string(k));
    t.set("value", Value::string(v));
    arr.push(std::move(t));
  }
  return arr;
}

Result<std::vector<Manifest>> parseManifests(std::string_view text, std::string_view source) {
  auto docs = parseDocuments(text);
  if (!docs) return makeError(std::string(source) + ": " + docs.error().message);
  std::vector<Manifest> out;
  size_t n = 0;
  for (const Value& doc : *docs) {
    std::vector<const Value*> items;
    if (doc.isArray()) {
      for (const Value& item : doc.items()) items.push_back(&item);
    } else {
      items.push_back(&doc);
    }
    for (const Value* item : items) {
      ++n;
      std::string where = std::string(source) + " (document " + std::to_string(n) + ")";
      auto m = fromValue(*item, where);
      if (!m) return Unexpected<Error>{m.error()};
      out.push_back(std::move(*m));
    }
  }
  return out;
}

Result<std::vector<Manifest>> loadManifests(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
        files.push_back(entry.path().string());
    }
    if (ec) return makeError("cannot read directory " + path + ": " + ec.message());
    std::sort(files.begin(), files.end());
    if (files.empty()) return makeError(path + ": no *.yaml, *.yml or *.json files");
  } else {
    files.push_back(path);
  }
  std::vector<Manifest> all;
  std::set<std::string> seen;
  for (const std::string& file : files) {
    std::string text;
    if (file == "-") {
      std::ostringstream ss;
      ss << std::cin.rdbuf();
      text = ss.str();
    } else {
      auto read = readFile(file);
      if (!read) return Unexpected<Error>{read.error()};
      text = std::move(*read);
    }
    auto ms = parseManifests(text, file == "-" ? "stdin" : file);
    if (!ms) return Unexpected<Error>{ms.error()};
    for (Manifest& m : *ms) {
      if (!seen.insert(m.describe()).second)
        return makeError(m.source + ": " + m.describe() + " appears twice");
      all.push_back(std::move(m));
    }
  }
  return all;
}

void sortForApply(std::vector<Manifest>& manifests, bool reverse) {
  std::stable_sort(manifests.begin(), manifests.end(), [](const Manifest& a, const Manifest& b) {
    return a.kind->apply_order < b.kind->apply_order;
  });
  if (reverse) std::reverse(manifests.begin(), manifests.end());
}

}  // namespace weft::cli
