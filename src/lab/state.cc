#include "lab/state.h"

#include <yaml-cpp/yaml.h>

#include <exception>

#include "common/json.h"

namespace weft::lab {

namespace {

struct KindName {
  ObjectKind kind;
  std::string_view name;
};
constexpr KindName kKinds[] = {
    {ObjectKind::kIptablesRule, "iptables"},
    {ObjectKind::kNamespace, "netns"},
    {ObjectKind::kLink, "link"},
    {ObjectKind::kFile, "file"},
    {ObjectKind::kDirectory, "dir"},
    {ObjectKind::kRegistration, "network"},
    {ObjectKind::kProcess, "process"},
};

std::string jsonList(const std::vector<std::string>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? "," : "") + jsonString(v[i]);
  return o + "]";
}

std::string scalarAt(const YAML::Node& n, const char* key) {
  YAML::Node v = n[key];
  return v && v.IsScalar() ? v.Scalar() : std::string();
}

std::vector<std::string> listAt(const YAML::Node& n, const char* key) {
  std::vector<std::string> out;
  YAML::Node v = n[key];
  if (v && v.IsSequence())
    for (const YAML::Node& e : v)
      if (e.IsScalar()) out.push_back(e.Scalar());
  return out;
}

}  // namespace

std::string_view objectKindName(ObjectKind k) {
  for (const KindName& kn : kKinds)
    if (kn.kind == k) return kn.name;
  return "?";
}

std::string stateToJson(const LabState& s) {
  std::string o = "{\n  \"version\": " + std::to_string(LabState::kVersion) +
                  ",\n  \"name\": " + jsonString(s.name) + ",\n  \"tag\": " + jsonString(s.tag) +
                  ",\n  \"topology_file\": " + jsonString(s.topology_file) +
                  ",\n  \"created_at\": " + std::to_string(s.created_at) +
                  ",\n  \"complete\": " + (s.complete ? "true" : "false") +
                  ",\n  \"server\": " + jsonString(s.server) +
                  ",\n  \"preexisting_networks\": " + jsonList(s.preexisting_networks) +
                  ",\n  \"topology\": " + topologyToJson(s.topology) + ",\n  \"objects\": [";
  for (size_t i = 0; i < s.objects.size(); ++i) {
    const LabObject& ob = s.objects[i];
    o += i ? ",\n    " : "\n    ";
    o += "{\"kind\": " + jsonString(objectKindName(ob.kind));
    if (!ob.ns.empty()) o += ", \"ns\": " + jsonString(ob.ns);
    if (!ob.name.empty()) o += ", \"name\": " + jsonString(ob.name);
    if (!ob.path.empty()) o += ", \"path\": " + jsonString(ob.path);
    if (!ob.chain.empty()) o += ", \"chain\": " + jsonString(ob.chain);
    if (!ob.args.empty()) o += ", \"args\": " + jsonList(ob.args);
    if (!ob.id.empty()) o += ", \"id\": " + jsonString(ob.id);
    if (ob.pid != 0) o += ", \"pid\": " + std::to_string(ob.pid);
    o += "}";
  }
  o += s.objects.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return o;
}

Result<LabState> parseState(std::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsMap()) return makeError("not a lab state file (expected a JSON object)");
    std::string version = scalarAt(root, "version");
    if (version != std::to_string(LabState::kVersion))
      return makeError("unsupported state file version \"" + version + "\" (expected " +
                       std::to_string(LabState::kVersion) + ")");
    LabState s;
    s.name = scalarAt(root, "name");
    s.tag = scalarAt(root, "tag");
    s.topology_file = scalarAt(root, "topology_file");
    s.created_at = root["created_at"] ? root["created_at"].as<int64_t>(0) : 0;
    s.complete = root["complete"] ? root["complete"].as<bool>(false) : false;
    s.server = scalarAt(root, "server");
    s.preexisting_networks = listAt(root, "preexisting_networks");
    YAML::Node topo = root["topology"];
    if (!topo || !topo.IsMap()) return makeError("state file has no topology");
    YAML::Emitter e;
    e << YAML::DoubleQuoted << YAML::Flow << topo;
    auto t = parseTopology(e.c_str(), s.name);
    if (!t) return makeError("state file's topology: " + t.error().message);
    s.topology = std::move(*t);
    if (YAML::Node objs = root["objects"]; objs && objs.IsSequence()) {
      for (const YAML::Node& n : objs) {
        LabObject ob;
        std::string kind = scalarAt(n, "kind");
        bool known = false;
        for (const KindName& kn : kKinds)
          if (kn.name == kind) {
            ob.kind = kn.kind;
            known = true;
          }
        if (!known) return makeError("state file: unknown object kind \"" + kind + "\"");
        ob.ns = scalarAt(n, "ns");
        ob.name = scalarAt(n, "name");
        ob.path = scalarAt(n, "path");
        ob.chain = scalarAt(n, "chain");
        ob.args = listAt(n, "args");
        ob.id = scalarAt(n, "id");
        ob.pid = n["pid"] ? n["pid"].as<int>(0) : 0;
        s.objects.push_back(std::move(ob));
      }
    }
    if (s.name.empty()) return makeError("state file has no lab name");
    return s;
  } catch (const std::exception& e) {
    return makeError(std::string("not a valid lab state file: ") + e.what());
  }
}

}  // namespace weft::lab
