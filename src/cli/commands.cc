#include "cli/commands.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/ca_client.h"
#include "cli/manifest.h"
#include "cli/registry_client.h"
#include "cli/resources.h"
#include "cli/stack_deploy.h"
#include "common/file_util.h"
#include "control/push/tokens.h"
#include "demo/command.h"
#include "lab/command.h"
#include "workload/commands.h"

namespace weft::cli {

namespace {

constexpr const char* kGlobalFlagsHelp =
    "Global flags:\n"
    "  --endpoint URL   weft server API (default $WEFT_ENDPOINT, else http://127.0.0.1:7080)\n"
    "  --profile P      credentials profile (default $AWS_PROFILE; the shared credentials\n"
    "                   file is $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)\n"
    "  --region R       SigV4 region (default $AWS_REGION, $AWS_DEFAULT_REGION, us-west-2)\n"
    "  -h, --help       this help\n";

constexpr const char* kTopHelp =
    "weft: a self-hosted service mesh with an App Mesh-compatible control plane.\n"
    "\n"
    "Usage: weft <command> [flags]\n"
    "\n"
    "Commands:\n"
    "  server        run the control plane (weft server --help)\n"
    "  apply         create or update resources from manifests (-f FILE|DIR)\n"
    "  get           list resources or show one, as a table, JSON or YAML\n"
    "  describe      show one resource in full\n"
    "  delete        delete resources (-f FILE|DIR, or KIND NAME --mesh M)\n"
    "  stack         deploy CloudFormation templates (deploy, delete, describe, list)\n"
    "  credentials   manage API access keys (create, list, delete)\n"
    "  network       manage networks that private DNS namespaces attach to\n"
    "  ca            the certificate authority: CAs and certificates (create, issue, ...)\n"
    "  token         manage the join tokens proxies connect with (create, list, revoke)\n"
    "  proxies       list the proxies connected to the config stream\n"
    "  mesh          weft's mesh policy: mTLS by identity, authorization (mesh policy M)\n"
    "  run           run an app with its sidecar: weft run --resource R ... -- COMMAND\n"
    "  intercept     install, remove or show the iptables rules of a sidecar (EC2 hosts)\n"
    "  lab           real networks (VPCs, subnets, hosts, peerings) on this machine\n"
    "  demo          the reference scenario on this machine (up, status, down)\n"
    "  version       print the version\n"
    "\n"
    "Kinds: mesh, virtualnode (vn), virtualservice (vs), virtualrouter (vr), route (rt),\n"
    "       virtualgateway (vg), gatewayroute (gr); plurals work too. The registry's\n"
    "       namespaces, services and instances for `weft get`.\n"
    "`weft describe proxy-config --resource mesh/M/virtualNode/N` shows a proxy's config.\n"
    "\n"
    "Run `weft <command> --help` for a command's flags.\n";

struct FlagSpec {
  std::string_view name;   // "--mesh"
  std::string_view alias;  // "-o" or ""
  bool takes_value = true;
  bool greedy = false;  // takes every following argument up to the next flag
};

const std::vector<FlagSpec>& globalFlags() {
  static const std::vector<FlagSpec> f = {
      {"--endpoint", ""}, {"--profile", ""}, {"--region", ""}, {"--help", "-h", false}};
  return f;
}

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> flags;  // by canonical name

  bool has(std::string_view name) const { return flags.count(std::string(name)) > 0; }
  std::string get(std::string_view name) const {
    auto it = flags.find(std::string(name));
    return it == flags.end() || it->second.empty() ? "" : it->second.back();
  }
  const std::vector<std::string>& all(std::string_view name) const {
    static const std::vector<std::string> kEmpty;
    auto it = flags.find(std::string(name));
    return it == flags.end() ? kEmpty : it->second;
  }
};

// A usage error (exit 2) rather than a failed command (exit 1).
constexpr int kUsage = 2;

Result<ParsedArgs> parseArgs(const std::vector<std::string>& args,
                             const std::vector<FlagSpec>& command_flags,
                             const std::string& command) {
  std::vector<FlagSpec> specs = globalFlags();
  specs.insert(specs.end(), command_flags.begin(), command_flags.end());
  ParsedArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {  // the rest is positional, "--" included (`weft run -- CMD`, `lab exec`)
      out.positional.insert(out.positional.end(), args.begin() + static_cast<long>(i), args.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a;
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs)
      if (s.name == name || (!s.alias.empty() && s.alias == name)) spec = &s;
    if (spec == nullptr)
      return makeError(
          "unknown flag " + name + " for `" + command + "` (see `" + command + " --help`)", kUsage);
    std::string canonical(spec->name);
    auto& values = out.flags[canonical];
    if (!spec->takes_value) {
      if (inline_value) return makeError(name + " takes no value", kUsage);
      values.push_back("true");
      continue;
    }
    if (inline_value) {
      values.push_back(*inline_value);
      if (!spec->greedy) continue;
    } else if (!spec->greedy) {
      if (i + 1 >= args.size()) return makeError(name + " needs a value", kUsage);
      values.push_back(args[++i]);
      continue;
    }
    while (i + 1 < args.size() && !(args[i + 1].size() > 1 && args[i + 1][0] == '-'))
      values.push_back(args[++i]);
    if (values.empty()) return makeError(name + " needs a value", kUsage);
  }
  return out;
}

std::string oneLine(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

struct Command {
  CliEnv& env;
  ParsedArgs args;
  std::string name;  // "weft get"
  std::unique_ptr<Transport> transport;
  std::unique_ptr<ApiClient> api;
  ClientConfig config;

  Status connect() {
    GlobalOptions g{args.get("--endpoint"), args.get("--profile"), args.get("--region")};
    auto cfg = resolveConfig(g, env.env);
    if (!cfg) return Unexpected<Error>{cfg.error()};
    config = *cfg;
    transport = env.transport(config);
    api = std::make_unique<ApiClient>(*transport);
    return {};
  }
};

// ---- output ----

std::string formatAge(const Value* created) {
  if (created == nullptr || !created->isNumber()) return "-";
  double t = std::strtod(created->text().c_str(), nullptr);
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto s = static_cast<int64_t>(std::max(0.0, now - t));
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

void printTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 3, ' ');
    }
    out << line << "\n";
  }
}

Result<std::string> outputFormat(const ParsedArgs& args, std::string_view fallback, bool table_ok) {
  std::string o = args.get("--output");
  if (o.empty()) o = std::string(fallback);
  if (o == "json" || o == "yaml" || (table_ok && o == "table")) return o;
  return makeError(std::string("-o must be ") +
                       (table_ok ? "table, json or yaml" : "json or yaml") + ", not '" + o + "'",
                   kUsage);
}

void printValue(std::ostream& out, const Value& v, const std::string& format) {
  if (format == "json") {
    out << toJson(v, {2}) << "\n";
  } else {
    out << toYaml(v);
  }
}

// ---- resource commands ----

const char* kindsList() {
  return "mesh, virtualnode|vn, virtualservice|vs, virtualrouter|vr, route|rt, "
         "virtualgateway|vg, gatewayroute|gr";
}

Result<const KindInfo*> kindArg(const std::string& text) {
  const KindInfo* k = lookupKind(text);
  if (k == nullptr)
    return makeError("unknown kind '" + text + "' (expected " + kindsList() + ")", kUsage);
  return k;
}

std::string parentFlag(const KindInfo& k) {
  return k.parent_segment == "virtualRouter" ? "--virtual-router" : "--virtual-gateway";
}

const std::vector<FlagSpec> kScopeFlags = {{"--mesh", "-m"},          {"--virtual-router", ""},
                                           {"--virtual-gateway", ""}, {"--output", "-o"},
                                           {"--namespace", "-n"},     {"--service", ""}};

// The id of `KIND NAME` with --mesh and the parent flag.
Result<ResourceId> resourceIdFromArgs(const ParsedArgs& args, const KindInfo& kind,
                                      const std::string& name) {
  ResourceId id;
  id.kind = &kind;
  id.name = name;
  if (kind.isMesh()) {
    id.mesh = name;
    return id;
  }
  id.mesh = args.get("--mesh");
  if (id.mesh.empty())
    return makeError("--mesh is required for a " + std::string(kind.name), kUsage);
  if (kind.hasParent()) {
    id.parent = args.get(parentFlag(kind));
    if (id.parent.empty())
      return makeError(parentFlag(kind) + " is required for a " + std::string(kind.name), kUsage);
  } else if (args.has("--virtual-router") || args.has("--virtual-gateway")) {
    return makeError("--virtual-router/--virtual-gateway apply only to routes and gateway routes",
                     kUsage);
  }
  return id;
}

std::vector<std::string> tableHeader(const KindInfo& kind) {
  std::vector<std::string> h = {"NAME"};
  if (!kind.isMesh()) h.push_back("MESH");
  if (kind.hasParent()) h.push_back(kind.parent_segment == "virtualRouter" ? "ROUTER" : "GATEWAY");
  h.insert(h.end(), {"VERSION", "STATUS", "AGE"});
  return h;
}

std::vector<std::string> tableRow(const KindInfo& kind, const Value& data) {
  auto field = [&](std::string_view key) {
    const Value* v = data.find(key);
    return v ? v->scalarText() : std::string("-");
  };
  const Value* md = data.find("metadata");
  const Value* status = data.find("status");
  const Value* st = status ? status->find("status") : nullptr;
  const Value* version = md ? md->find("version") : nullptr;
  std::vector<std::string> row = {field(kind.isMesh() ? "meshName" : kind.name_field)};
  if (!kind.isMesh()) row.push_back(field("meshName"));
  if (kind.hasParent()) row.push_back(field(kind.parent_field));
  row.push_back(version ? version->scalarText() : "-");
  row.push_back(st ? st->scalarText() : "-");
  row.push_back(formatAge(md ? md->find("createdAt") : nullptr));
  return row;
}

Result<std::vector<std::string>> allMeshes(ApiClient& api) {
  auto meshes = listResources(api, allKinds()[0], "", "");
  if (!meshes) return Unexpected<Error>{meshes.error()};
  std::vector<std::string> out;
  for (const Value& m : *meshes)
    if (const Value* n = m.find("meshName")) out.push_back(n->scalarText());
  return out;
}

int fail(CliEnv& env, const std::string& command, const Error& e) {
  env.err << command << ": " << oneLine(e.message) << "\n";
  return e.code == kUsage ? 2 : 1;
}

// The text of `item`'s field `key` ("" when absent).
std::string fieldText(const Value& item, std::string_view key) {
  const Value* v = item.find(key);
  return v ? v->scalarText() : std::string();
}

using RowFn = std::function<std::vector<std::string>(const Value&)>;

// The list commands: `fetch` the items (an array), and print them as JSON or YAML, or as a table
// of `header` and one `row` per item (`empty` on stderr when none).
int listCommand(Command& c, const std::string& name,
                const std::function<Result<Value>(ApiClient&)>& fetch,
                std::vector<std::string> header, std::string_view empty, const RowFn& row) {
  auto format = outputFormat(c.args, "table", true);
  if (!format) return fail(c.env, name, format.error());
  if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
  auto fetched = fetch(*c.api);
  if (!fetched) return fail(c.env, name, fetched.error());
  Value items = fetched->isArray() ? std::move(*fetched) : Value::array();
  if (*format != "table") {
    printValue(c.env.out, items, *format);
    return 0;
  }
  if (items.items().empty() && !empty.empty()) {
    c.env.err << empty << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {std::move(header)};
  for (const Value& item : items.items()) rows.push_back(row(item));
  printTable(c.env.out, rows);
  return 0;
}

// The REST list commands: GET `path` (with `query`) and list the array under `key`.
int listCommand(Command& c, const std::string& name, const std::string& path, std::string_view key,
                const std::string& query, std::vector<std::string> header, std::string_view empty,
                const RowFn& row) {
  auto fetch = [&](ApiClient& api) -> Result<Value> {
    auto r = api.call("GET", path, query);
    if (!r) return Unexpected<Error>{r.error()};
    const Value* list = r->find(key);
    return list && list->isArray() ? *list : Value::array();
  };
  return listCommand(c, name, fetch, std::move(header), empty, row);
}

// ---- registry: weft get namespaces|services|instances

// "namespaces", "services" or "instances" for the registry kinds `get` accepts, else "".
std::string registryKind(std::string text) {
  std::string t;
  for (char ch : text)
    if (ch != '-' && ch != '_')
      t += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (t == "namespace" || t == "namespaces" || t == "ns") return "namespaces";
  if (t == "service" || t == "services" || t == "svc") return "services";
  if (t == "instance" || t == "instances" || t == "inst") return "instances";
  return "";
}

std::string dashIfEmpty(std::string v) { return v.empty() ? "-" : v; }

int cmdGetRegistry(Command& c, const std::string& kind) {
  std::string name = c.name + " " + kind;
  if (c.args.positional.size() != 1)
    return fail(c.env, name,
                Error{kUsage, "takes no NAME (use --namespace N or --service S to narrow)"});
  if (c.args.has("--mesh") || c.args.has("--virtual-router") || c.args.has("--virtual-gateway"))
    return fail(c.env, name,
                Error{kUsage, "--mesh/--virtual-router/--virtual-gateway do not apply to " + kind});
  std::string ns = c.args.get("--namespace");
  std::string svc = c.args.get("--service");
  if (kind != "instances" && c.args.has("--service"))
    return fail(c.env, name, Error{kUsage, "--service applies only to instances"});
  if (kind == "namespaces") {
    if (c.args.has("--namespace"))
      return fail(c.env, name, Error{kUsage, "--namespace does not apply to namespaces"});
    return listCommand(
        c, name, [](ApiClient& api) { return registry::listNamespaces(api); },
        {"ID", "NAME", "TYPE", "SERVICES", "HOSTED ZONE", "AGE"}, "No namespaces found.",
        [](const Value& n) {
          const Value* props = n.find("Properties");
          const Value* dns = props ? props->find("DnsProperties") : nullptr;
          return std::vector<std::string>{fieldText(n, "Id"),
                                          fieldText(n, "Name"),
                                          fieldText(n, "Type"),
                                          dashIfEmpty(fieldText(n, "ServiceCount")),
                                          dns ? dashIfEmpty(fieldText(*dns, "HostedZoneId")) : "-",
                                          formatAge(n.find("CreateDate"))};
        });
  }
  if (kind == "services") {
    return listCommand(
        c, name, [&](ApiClient& api) { return registry::listServices(api, ns); },
        {"ID", "NAME", "NAMESPACE", "RECORDS", "INSTANCES", "HEALTH", "AGE"}, "No services found.",
        [](const Value& s) {
          std::string records;
          if (const Value* dc = s.find("DnsConfig"))
            if (const Value* rs = dc->find("DnsRecords"); rs && rs->isArray())
              for (const Value& r : rs->items())
                records +=
                    (records.empty() ? "" : ",") + fieldText(r, "Type") + ":" + fieldText(r, "TTL");
          std::string health = s.find("HealthCheckCustomConfig") ? "custom"
                               : s.find("HealthCheckConfig")     ? "route53"
                                                                 : "-";
          return std::vector<std::string>{fieldText(s, "Id"),
                                          fieldText(s, "Name"),
                                          fieldText(s, "NamespaceName"),
                                          dashIfEmpty(records),
                                          dashIfEmpty(fieldText(s, "InstanceCount")),
                                          health,
                                          formatAge(s.find("CreateDate"))};
        });
  }
  return listCommand(
      c, name, [&](ApiClient& api) { return registry::listInstances(api, ns, svc); },
      {"ID", "SERVICE", "NAMESPACE", "ADDRESS", "HEALTH", "ATTRIBUTES"}, "No instances found.",
      [](const Value& i) {
        std::string address, others;
        if (const Value* a = i.find("Attributes"); a && a->isObject()) {
          std::string ip = fieldText(*a, "AWS_INSTANCE_IPV4");
          if (ip.empty() && !fieldText(*a, "AWS_INSTANCE_IPV6").empty())
            ip = "[" + fieldText(*a, "AWS_INSTANCE_IPV6") + "]";
          if (ip.empty()) ip = fieldText(*a, "AWS_INSTANCE_CNAME");
          address = ip;
          if (!fieldText(*a, "AWS_INSTANCE_PORT").empty())
            address += ":" + fieldText(*a, "AWS_INSTANCE_PORT");
          for (const auto& [k, v] : a->members()) {
            if (k == "AWS_INSTANCE_IPV4" || k == "AWS_INSTANCE_IPV6" || k == "AWS_INSTANCE_PORT" ||
                k == "AWS_INSTANCE_CNAME")
              continue;
            others += (others.empty() ? "" : ",") + k + "=" + v.scalarText();
          }
        }
        return std::vector<std::string>{
            fieldText(i, "Id"),   fieldText(i, "ServiceName"),  fieldText(i, "NamespaceName"),
            dashIfEmpty(address), fieldText(i, "HealthStatus"), dashIfEmpty(others)};
      });
}

int cmdGet(Command& c) {
  if (c.args.positional.empty() || c.args.positional.size() > 2)
    return fail(c.env, c.name, Error{kUsage, "expected KIND [NAME] (see weft get --help)"});
  if (std::string r = registryKind(c.args.positional[0]); !r.empty()) return cmdGetRegistry(c, r);
  if (c.args.has("--namespace") || c.args.has("--service"))
    return fail(c.env, c.name,
                Error{kUsage,
                      "--namespace/--service apply only to namespaces, services and "
                      "instances"});
  auto kind = kindArg(c.args.positional[0]);
  if (!kind) return fail(c.env, c.name, kind.error());
  auto format = outputFormat(c.args, "table", true);
  if (!format) return fail(c.env, c.name, format.error());
  if (auto s = c.connect(); !s) return fail(c.env, c.name, s.error());
  std::vector<Value> items;
  if (c.args.positional.size() == 2) {
    auto id = resourceIdFromArgs(c.args, **kind, c.args.positional[1]);
    if (!id) return fail(c.env, c.name, id.error());
    auto d = describeResource(*c.api, *id);
    if (!d) return fail(c.env, c.name, d.error());
    if (!*d) return fail(c.env, c.name, Error{1, id->describe() + " not found"});
    items.push_back(std::move(**d));
  } else {
    const KindInfo& k = **kind;
    std::vector<std::string> meshes;
    if (k.isMesh()) {
      meshes.push_back("");
    } else if (c.args.has("--mesh")) {
      meshes.push_back(c.args.get("--mesh"));
    } else {
      auto all = allMeshes(*c.api);
      if (!all) return fail(c.env, c.name, all.error());
      meshes = *all;
    }
    for (const std::string& mesh : meshes) {
      std::vector<std::string> parents = {""};
      if (k.hasParent()) {
        if (c.args.has(parentFlag(k))) {
          parents = {c.args.get(parentFlag(k))};
        } else {
          const KindInfo* pk = lookupKind(k.parent_segment);
          auto ps = listResources(*c.api, *pk, mesh, "");
          if (!ps) return fail(c.env, c.name, ps.error());
          parents.clear();
          for (const Value& p : *ps) parents.push_back(p.find(pk->name_field)->scalarText());
        }
      }
      for (const std::string& parent : parents) {
        auto refs = listResources(*c.api, k, mesh, parent);
        if (!refs) return fail(c.env, c.name, refs.error());
        for (const Value& ref : *refs) {
          const Value* n = ref.find(k.name_field);
          if (n == nullptr) continue;
          ResourceId id{&k, k.isMesh() ? n->scalarText() : mesh, parent, n->scalarText()};
          auto d = describeResource(*c.api, id);
          if (!d) return fail(c.env, c.name, d.error());
          if (*d) items.push_back(std::move(**d));  // deleted meanwhile: leave it out
        }
      }
    }
  }
  if (*format == "table") {
    if (items.empty()) {
      c.env.err << "No " << (*kind)->list_key << " found.\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows = {tableHeader(**kind)};
    for (const Value& item : items) rows.push_back(tableRow(**kind, item));
    printTable(c.env.out, rows);
    return 0;
  }
  if (c.args.positional.size() == 2) {
    printValue(c.env.out, items[0], *format);
  } else {
    printValue(c.env.out, Value::array(std::move(items)), *format);
  }
  return 0;
}

int cmdDescribeProxyConfig(Command& c);

int cmdDescribe(Command& c) {
  if (!c.args.positional.empty() && c.args.positional[0] == "proxy-config")
    return cmdDescribeProxyConfig(c);
  if (c.args.has("--resource"))
    return fail(c.env, c.name, Error{kUsage, "--resource applies only to `describe proxy-config`"});
  if (c.args.positional.size() != 2)
    return fail(c.env, c.name, Error{kUsage, "expected KIND NAME (see weft describe --help)"});
  auto kind = kindArg(c.args.positional[0]);
  if (!kind) return fail(c.env, c.name, kind.error());
  auto format = outputFormat(c.args, "yaml", false);
  if (!format) return fail(c.env, c.name, format.error());
  auto id = resourceIdFromArgs(c.args, **kind, c.args.positional[1]);
  if (!id) return fail(c.env, c.name, id.error());
  if (auto s = c.connect(); !s) return fail(c.env, c.name, s.error());
  auto d = describeResource(*c.api, *id);
  if (!d) return fail(c.env, c.name, d.error());
  if (!*d) return fail(c.env, c.name, Error{1, id->describe() + " not found"});
  Value shown = std::move(**d);
  const Value* md = shown.find("metadata");
  const Value* arn = md ? md->find("arn") : nullptr;
  if (arn && arn->isString()) {
    auto tags = c.api->call("GET", "/v20190125/tags", makeQuery({{"resourceArn", arn->text()}}));
    if (tags && tags->find("tags")) shown.set("tags", *tags->find("tags"));
  }
  printValue(c.env.out, shown, *format);
  return 0;
}

Result<std::vector<Manifest>> manifestsFromArgs(const ParsedArgs& args) {
  std::vector<Manifest> all;
  std::set<std::string> seen;
  for (const std::string& path : args.all("--filename")) {
    auto ms = loadManifests(path);
    if (!ms) return Unexpected<Error>{ms.error()};
    for (Manifest& m : *ms) {
      if (!seen.insert(m.describe()).second)
        return makeError(m.source + ": " + m.describe() + " appears twice");
      all.push_back(std::move(m));
    }
  }
  return all;
}

int cmdApply(Command& c) {
  if (!c.args.has("--filename") || !c.args.positional.empty())
    return fail(c.env, c.name, Error{kUsage, "expected -f FILE|DIR (see weft apply --help)"});
  auto manifests = manifestsFromArgs(c.args);
  if (!manifests) return fail(c.env, c.name, manifests.error());
  sortForApply(*manifests);
  if (auto s = c.connect(); !s) return fail(c.env, c.name, s.error());
  std::map<ApplyOutcome, int> counts;
  for (const Manifest& m : *manifests) {
    ResourceId id{m.kind, m.mesh, m.parent, m.name};
    Value tags = m.tagsValue();
    auto r = applyResource(*c.api, id, m.spec, m.has_tags ? &tags : nullptr);
    if (!r) return fail(c.env, c.name, Error{1, m.describe() + ": " + r.error().message});
    ++counts[r->outcome];
    c.env.out << m.describe() << " " << outcomeName(r->outcome) << "\n";
  }
  c.env.out << counts[ApplyOutcome::kCreated] << " created, " << counts[ApplyOutcome::kUpdated]
            << " updated, " << counts[ApplyOutcome::kUnchanged] << " unchanged\n";
  return 0;
}

int cmdDelete(Command& c) {
  std::vector<ResourceId> ids;
  if (c.args.has("--filename")) {
    if (!c.args.positional.empty())
      return fail(c.env, c.name, Error{kUsage, "give either -f FILE or KIND NAME, not both"});
    auto manifests = manifestsFromArgs(c.args);
    if (!manifests) return fail(c.env, c.name, manifests.error());
    sortForApply(*manifests, /*reverse=*/true);
    for (const Manifest& m : *manifests) ids.push_back({m.kind, m.mesh, m.parent, m.name});
  } else {
    if (c.args.positional.size() != 2)
      return fail(c.env, c.name,
                  Error{kUsage, "expected -f FILE|DIR or KIND NAME (see weft delete --help)"});
    auto kind = kindArg(c.args.positional[0]);
    if (!kind) return fail(c.env, c.name, kind.error());
    auto id = resourceIdFromArgs(c.args, **kind, c.args.positional[1]);
    if (!id) return fail(c.env, c.name, id.error());
    ids.push_back(*id);
  }
  if (auto s = c.connect(); !s) return fail(c.env, c.name, s.error());
  bool from_file = c.args.has("--filename");
  for (const ResourceId& id : ids) {
    auto d = deleteResource(*c.api, id);
    if (!d) return fail(c.env, c.name, Error{1, id.describe() + ": " + d.error().message});
    if (!*d && !from_file) return fail(c.env, c.name, Error{1, id.describe() + " not found"});
    c.env.out << id.describe() << (*d ? " deleted" : " not found") << "\n";
  }
  return 0;
}

// ---- credentials ----

int cmdCredentials(Command& c) {
  if (c.args.positional.empty())
    return fail(c.env, c.name,
                Error{kUsage, "expected create, list or delete (see weft credentials --help)"});
  const std::string& sub = c.args.positional[0];
  std::string name = c.name + " " + sub;
  if (sub == "create") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments"});
    auto format = outputFormat(c.args, "yaml", false);
    if (!format) return fail(c.env, name, format.error());
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    Value body = Value::object();
    if (c.args.has("--description"))
      body.set("description", Value::string(c.args.get("--description")));
    auto r = c.api->call("POST", "/weft/v1/credentials", "", &body);
    if (!r) return fail(c.env, name, r.error());
    if (*format == "json") {
      printValue(c.env.out, *r, "json");
    } else {
      auto field = [&](std::string_view k) {
        const Value* v = r->find(k);
        return v ? v->scalarText() : std::string();
      };
      c.env.out << "accessKeyId: " << field("accessKeyId") << "\n"
                << "secretAccessKey: " << field("secretAccessKey") << "\n"
                << "# The secret is shown only now. As a shared-credentials profile:\n"
                << "# [NAME]\n# aws_access_key_id = " << field("accessKeyId")
                << "\n# aws_secret_access_key = " << field("secretAccessKey") << "\n";
    }
    return 0;
  }
  if (sub == "list") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments"});
    return listCommand(c, name, "/weft/v1/credentials", "credentials", "",
                       {"ACCESS KEY ID", "ACCOUNT", "AGE", "DESCRIPTION"}, "", [](const Value& k) {
                         return std::vector<std::string>{
                             fieldText(k, "accessKeyId"), fieldText(k, "accountId"),
                             formatAge(k.find("createdAt")), fieldText(k, "description")};
                       });
  }
  if (sub == "delete") {
    if (c.args.positional.size() != 2)
      return fail(c.env, name, Error{kUsage, "expected ACCESS_KEY_ID"});
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    const std::string& id = c.args.positional[1];
    auto r = c.api->call("DELETE", "/weft/v1/credentials/" + encodeSegment(id));
    if (!r) return fail(c.env, name, r.error());
    c.env.out << "deleted " << id << "\n";
    return 0;
  }
  return fail(c.env, c.name,
              Error{kUsage, "unknown subcommand '" + sub + "' (expected create, list or delete)"});
}

// ---- network ----

// `weft network create`: answers the new network's id.
Result<std::string> createNetwork(ApiClient& api, const std::string& name,
                                  const std::vector<std::string>& cidrs) {
  Value body = Value::object();
  body.set("name", Value::string(name));
  Value list = Value::array();
  for (const std::string& cidr : cidrs) list.push(Value::string(cidr));
  body.set("cidrs", list);
  auto r = api.call("POST", "/weft/v1/networks", "", &body);
  if (!r) return Unexpected<Error>{r.error()};
  const Value* id = r->find("id");
  return id ? id->scalarText() : std::string();
}

Status deleteNetwork(ApiClient& api, const std::string& id) {
  auto r = api.call("DELETE", "/weft/v1/networks/" + encodeSegment(id));
  if (!r) return Unexpected<Error>{r.error()};
  return {};
}

int cmdNetwork(Command& c) {
  if (c.args.positional.empty())
    return fail(c.env, c.name,
                Error{kUsage, "expected create, list or delete (see weft network --help)"});
  const std::string& sub = c.args.positional[0];
  std::string name = c.name + " " + sub;
  if (sub == "create") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments (use --name and --cidr)"});
    if (c.args.all("--cidr").empty())
      return fail(c.env, name, Error{kUsage, "--cidr is required (e.g. --cidr 198.18.0.0/16)"});
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    auto id = createNetwork(*c.api, c.args.get("--name"), c.args.all("--cidr"));
    if (!id) return fail(c.env, name, id.error());
    c.env.out << *id << "\n";  // the id alone, for scripts
    return 0;
  }
  if (sub == "list") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments"});
    return listCommand(c, name, "/weft/v1/networks", "networks", "",
                       {"ID", "NAME", "CIDRS", "NAMESPACES", "AGE"}, "", [](const Value& n) {
                         auto joined = [&](std::string_view f) {
                           std::string out;
                           if (const Value* v = n.find(f); v && v->isArray()) {
                             for (const Value& e : v->items())
                               out += (out.empty() ? "" : ",") + e.scalarText();
                           }
                           return out;
                         };
                         return std::vector<std::string>{fieldText(n, "id"), fieldText(n, "name"),
                                                         joined("cidrs"), joined("namespaces"),
                                                         formatAge(n.find("createdAt"))};
                       });
  }
  if (sub == "delete") {
    if (c.args.positional.size() != 2)
      return fail(c.env, name, Error{kUsage, "expected NETWORK_ID"});
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    const std::string& id = c.args.positional[1];
    if (auto r = deleteNetwork(*c.api, id); !r) return fail(c.env, name, r.error());
    c.env.out << "deleted " << id << "\n";
    return 0;
  }
  return fail(c.env, c.name,
              Error{kUsage, "unknown subcommand '" + sub + "' (expected create, list or delete)"});
}

// ---- lab (src/lab): registers its networks through the functions `weft network` uses ----

class LabRegistrar final : public lab::NetworkRegistrar {
 public:
  explicit LabRegistrar(Command& c) : c_(c) {}
  std::string endpoint() const override { return c_.config.endpoint_url; }
  Result<std::vector<lab::RegisteredNetwork>> list() override {
    auto r = c_.api->call("GET", "/weft/v1/networks");
    if (!r) return Unexpected<Error>{r.error()};
    std::vector<lab::RegisteredNetwork> out;
    if (const Value* list = r->find("networks"); list && list->isArray())
      for (const Value& n : list->items()) {
        lab::RegisteredNetwork rn{fieldText(n, "id"), fieldText(n, "name"), {}};
        if (const Value* cidrs = n.find("cidrs"); cidrs && cidrs->isArray())
          for (const Value& cidr : cidrs->items()) rn.cidrs.push_back(cidr.scalarText());
        out.push_back(std::move(rn));
      }
    return out;
  }
  Result<std::string> create(const std::string& name, const std::string& cidr) override {
    return createNetwork(*c_.api, name, {cidr});
  }
  Status remove(const std::string& id) override { return deleteNetwork(*c_.api, id); }

 private:
  Command& c_;
};

int cmdDemo(Command& c) {
  demo::DemoInvocation inv;
  inv.positional = c.args.positional;
  for (auto [flag, field] : {std::pair<const char*, std::string*>{"--state-dir", &inv.state_dir},
                             {"--name", &inv.name},
                             {"--examples-dir", &inv.examples_dir},
                             {"--topology", &inv.topology},
                             {"--cache-dir", &inv.cache_dir},
                             {"--api", &inv.api},
                             {"--stream-port", &inv.stream_port},
                             {"--dns-port", &inv.dns_port},
                             {"--gateway-port", &inv.gateway_port},
                             {"--app-user", &inv.app_user},
                             {"--timeout", &inv.timeout}})
    *field = c.args.get(flag);
  inv.app_user_set = c.args.has("--app-user");
  demo::DemoIo io{c.env.out, c.env.err, c.env.env};
  return demo::runDemoCommand(inv, io);
}

int cmdLab(Command& c) {
  lab::LabInvocation inv{c.args.positional,         c.args.get("--name"),
                         c.args.get("--state-dir"), c.args.get("--output"),
                         c.args.has("--register"),  c.args.has("--keep-networks")};
  lab::LabIo io{c.env.out, c.env.err, c.env.env, [&c]() -> lab::RegistrarFactory::result_type {
                  if (auto s = c.connect(); !s) return Unexpected<Error>{s.error()};
                  return std::unique_ptr<lab::NetworkRegistrar>(std::make_unique<LabRegistrar>(c));
                }};
  return lab::runLabCommand(inv, io);
}

// ---- config push: tokens, proxies, proxy-config ----

// "24h", "30m", "3600s", "1h30m", "2d" or a bare number of seconds; 0 = never expires.
Result<int64_t> parseTtl(const std::string& text) {
  if (text.empty()) return makeError("--ttl needs a duration such as 24h, 30m or 3600s", kUsage);
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start || i - start > 9)
      return makeError("--ttl '" + text + "' is not a duration (e.g. 24h, 30m, 3600s)", kUsage);
    int64_t n = std::stoll(text.substr(start, i - start));
    int64_t unit = 1;
    if (i < text.size()) {
      switch (text[i]) {
        case 'd':
          unit = 86400;
          break;
        case 'h':
          unit = 3600;
          break;
        case 'm':
          unit = 60;
          break;
        case 's':
          unit = 1;
          break;
        default:
          return makeError("--ttl '" + text + "': units are d, h, m and s (e.g. 24h, 30m)", kUsage);
      }
      ++i;
    } else if (start != 0) {
      return makeError("--ttl '" + text + "': a number needs a unit after another one", kUsage);
    }
    total += n * unit;
  }
  return total;
}

// "in 3h", "never" or "expired" for a unix time (0 = never).
std::string formatExpiry(const Value* at) {
  if (at == nullptr || !at->isNumber()) return "-";
  double t = std::strtod(at->text().c_str(), nullptr);
  if (t == 0) return "never";
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (t <= now) return "expired";
  Value created = Value::number(static_cast<int64_t>(2 * now - t));  // age of "now - (t - now)"
  return "in " + formatAge(&created);
}

int cmdToken(Command& c) {
  if (c.args.positional.empty())
    return fail(c.env, c.name,
                Error{kUsage, "expected create, list or revoke (see weft token --help)"});
  const std::string& sub = c.args.positional[0];
  std::string name = c.name + " " + sub;
  if (sub == "create") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments (use --resource)"});
    std::string resource = c.args.get("--resource");
    if (resource.empty())
      return fail(c.env, name,
                  Error{kUsage,
                        "--resource is required (mesh/M/virtualNode/N or "
                        "mesh/M/virtualGateway/G)"});
    int64_t ttl = 0;
    if (c.args.has("--ttl")) {
      auto t = parseTtl(c.args.get("--ttl"));
      if (!t) return fail(c.env, name, t.error());
      ttl = *t;
    }
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    Value body = Value::object();
    body.set("resource", Value::string(resource));
    body.set("ttlSeconds", Value::number(ttl));
    auto r = c.api->call("POST", "/weft/v1/tokens", "", &body);
    if (!r) return fail(c.env, name, r.error());
    const Value* token = r->find("token");
    c.env.out << (token ? token->scalarText() : std::string()) << "\n";  // alone, for scripts
    return 0;
  }
  if (sub == "list") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments"});
    return listCommand(
        c, name, "/weft/v1/tokens", "tokens", "", {"ID", "RESOURCE", "STATUS", "EXPIRES", "AGE"},
        "No tokens found.", [](const Value& t) {
          std::string expires = formatExpiry(t.find("expiresAt"));
          std::string status = fieldText(t, "revoked") == "true" ? "revoked"
                               : expires == "expired"            ? "expired"
                                                                 : "active";
          return std::vector<std::string>{fieldText(t, "id"), fieldText(t, "resource"), status,
                                          expires, formatAge(t.find("createdAt"))};
        });
  }
  if (sub == "revoke") {
    if (c.args.positional.size() != 2)
      return fail(c.env, name, Error{kUsage, "expected TOKEN_ID (or the whole token)"});
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    // A whole token is reduced to its id here: the secret never travels, not even in a path.
    std::string id = control::push::Tokens::idOf(c.args.positional[1]);
    if (id.empty()) id = c.args.positional[1];
    auto r = c.api->call("DELETE", "/weft/v1/tokens/" + encodeSegment(id));
    if (!r) return fail(c.env, name, r.error());
    const Value* real = r->find("id");
    c.env.out << "revoked " << (real ? real->scalarText() : id) << "\n";
    return 0;
  }
  return fail(c.env, c.name,
              Error{kUsage, "unknown subcommand '" + sub + "' (expected create, list or revoke)"});
}

int cmdProxies(Command& c) {
  if (!c.args.positional.empty()) return fail(c.env, c.name, Error{kUsage, "takes no arguments"});
  std::string query;
  if (c.args.has("--mesh")) query = makeQuery({{"mesh", c.args.get("--mesh")}});
  return listCommand(
      c, c.name, "/weft/v1/proxies", "proxies", query,
      {"RESOURCE", "HOST", "NETWORK", "SENT", "APPLIED", "LAST NACK", "CONNECTED", "PEER"},
      "No proxies connected.", [](const Value& p) {
        auto orDash = [](std::string v) { return v.empty() || v == "0" ? "-" : v; };
        std::string nack = "-";
        if (orDash(fieldText(p, "lastNackVersion")) != "-")
          nack = "v" + fieldText(p, "lastNackVersion") + ": " +
                 oneLine(fieldText(p, "lastNackReason"));
        return std::vector<std::string>{fieldText(p, "resource"),
                                        orDash(fieldText(p, "host")),
                                        orDash(fieldText(p, "network")),
                                        fieldText(p, "versionSent"),
                                        orDash(fieldText(p, "versionAcked")),
                                        nack,
                                        formatAge(p.find("connectedAt")),
                                        fieldText(p, "peer")};
      });
}

// ---- mesh policy (weft's own, outside the App Mesh shapes; docs/security.md) ----

int cmdMesh(Command& c) {
  if (c.args.positional.empty() || c.args.positional[0] != "policy")
    return fail(c.env, c.name, Error{kUsage, "expected: policy MESH (see weft mesh --help)"});
  std::string name = c.name + " policy";
  if (c.args.positional.size() != 2)
    return fail(c.env, name, Error{kUsage, "expected the mesh name: weft mesh policy MESH"});
  const std::string& mesh = c.args.positional[1];
  auto format = outputFormat(c.args, "table", true);
  if (!format) return fail(c.env, name, format.error());
  if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
  const std::string path = "/weft/v1/mesh-policies/" + encodeSegment(mesh);
  Result<Value> r = [&] {
    if (!c.args.has("--mtls") && !c.args.has("--authorization")) return c.api->call("GET", path);
    Value body = Value::object();
    if (c.args.has("--mtls")) body.set("mtls", Value::string(c.args.get("--mtls")));
    if (c.args.has("--authorization"))
      body.set("authorization", Value::string(c.args.get("--authorization")));
    return c.api->call("PUT", path, "", &body);
  }();
  if (!r) {
    if (r.error().code == 404)
      return fail(c.env, name, Error{1, "mesh " + mesh + " does not exist"});
    return fail(c.env, name, r.error());
  }
  if (*format != "table") {
    printValue(c.env.out, *r, *format);
    return 0;
  }
  printTable(
      c.env.out,
      {{"MESH", "MTLS", "AUTHORIZATION", "UPDATED"},
       {fieldText(*r, "mesh"), fieldText(*r, "mtls"), fieldText(*r, "authorization"),
        fieldText(*r, "updatedAt") == "0" ? "never (defaults)" : formatAge(r->find("updatedAt"))}});
  return 0;
}

int cmdDescribeProxyConfig(Command& c) {
  std::string name = c.name + " proxy-config";
  if (c.args.positional.size() != 1)
    return fail(c.env, name, Error{kUsage, "takes no arguments (use --resource)"});
  std::string resource = c.args.get("--resource");
  if (resource.empty())
    return fail(c.env, name,
                Error{kUsage,
                      "--resource is required (mesh/M/virtualNode/N or "
                      "mesh/M/virtualGateway/G)"});
  auto format = outputFormat(c.args, "json", false);
  if (!format) return fail(c.env, name, format.error());
  if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
  auto r = c.api->call("GET", "/weft/v1/proxy-config", makeQuery({{"resource", resource}}));
  if (!r) {
    if (r.error().code == 404) return fail(c.env, name, Error{1, resource + " does not exist"});
    return fail(c.env, name, r.error());
  }
  printValue(c.env.out, *r, *format);
  return 0;
}

// ---- stack ----

std::string stackName(const ParsedArgs& args) {
  std::string n = args.get("--stack-name");
  if (n.empty() && args.positional.size() == 2) n = args.positional[1];
  return n;
}

int cmdStack(Command& c) {
  if (c.args.positional.empty())
    return fail(c.env, c.name,
                Error{kUsage, "expected deploy, delete, describe or list (see weft stack --help)"});
  const std::string& sub = c.args.positional[0];
  std::string name = c.name + " " + sub;
  if (sub == "deploy") {
    std::string file = c.args.get("--template-file");
    std::string stack = stackName(c.args);
    if (file.empty() || stack.empty())
      return fail(c.env, name, Error{kUsage, "--template-file and --stack-name are required"});
    std::map<std::string, std::string> overrides;
    for (const std::string& kv : c.args.all("--parameter-overrides")) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0)
        return fail(c.env, name,
                    Error{kUsage, "--parameter-overrides takes KEY=VALUE pairs, got '" + kv + "'"});
      overrides[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto text = readFile(file);
    if (!text) return fail(c.env, name, text.error());
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    DeployOptions opts{stack, *text, overrides, c.config.region};
    auto r = deployStack(*c.api, opts, c.env.out);
    if (!r) return fail(c.env, name, r.error());
    return 0;
  }
  if (sub == "delete") {
    std::string stack = stackName(c.args);
    if (stack.empty()) return fail(c.env, name, Error{kUsage, "--stack-name is required"});
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    auto r = deleteStack(*c.api, stack, c.env.out);
    if (!r) return fail(c.env, name, r.error());
    return 0;
  }
  if (sub == "describe") {
    std::string stack = stackName(c.args);
    if (stack.empty()) return fail(c.env, name, Error{kUsage, "--stack-name is required"});
    auto format = outputFormat(c.args, "yaml", false);
    if (!format) return fail(c.env, name, format.error());
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    auto r = c.api->call("GET", "/weft/v1/stacks/" + encodeSegment(stack));
    if (!r) {
      if (r.error().code == 404)
        return fail(c.env, name, Error{1, "stack " + stack + " does not exist"});
      return fail(c.env, name, r.error());
    }
    if (*format == "json") {
      printValue(c.env.out, *r, "json");
      return 0;
    }
    // YAML: the record without the template text and the internal call records.
    Value shown = Value::object();
    for (const auto& [k, v] : r->members()) {
      if (k == "template") continue;
      if (k == "resources" && v.isArray()) {
        Value res = Value::array();
        for (const Value& item : v.items()) {
          Value copy = item;
          copy.erase("call");
          res.push(std::move(copy));
        }
        shown.set(k, std::move(res));
        continue;
      }
      shown.set(k, v);
    }
    printValue(c.env.out, shown, "yaml");
    return 0;
  }
  if (sub == "list") {
    return listCommand(
        c, name, "/weft/v1/stacks", "stacks", "", {"NAME", "STATUS", "RESOURCES", "UPDATED"},
        "No stacks found.", [](const Value& st) {
          auto field = [&](std::string_view f) {
            std::string v = fieldText(st, f);
            return v.empty() ? std::string("-") : v;
          };
          return std::vector<std::string>{field("name"), field("status"), field("resourceCount"),
                                          field("updatedAt")};
        });
  }
  return fail(c.env, c.name,
              Error{kUsage, "unknown subcommand '" + sub +
                                "' (expected deploy, delete, describe or list)"});
}

// ---- ca

Result<int64_t> positiveInt(const ParsedArgs& args, std::string_view flag, int64_t min,
                            int64_t max) {
  std::string text = args.get(flag);
  bool ok = !text.empty() && text.size() < 10;
  for (char ch : text) ok = ok && ch >= '0' && ch <= '9';
  int64_t n = ok ? std::stoll(text) : 0;
  if (!ok || n < min || n > max)
    return makeError(std::string(flag) + " must be a whole number from " + std::to_string(min) +
                         " to " + std::to_string(max) + ", not '" + text + "'",
                     kUsage);
  return n;
}

std::string formatTime(const Value* at) {
  if (at == nullptr || !at->isNumber()) return "-";
  auto t = static_cast<time_t>(std::strtod(at->text().c_str(), nullptr));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int cmdCa(Command& c) {
  static const char* kSubs =
      "create, import, list, describe, delete, issue, certificates, get-certificate, export, "
      "revoke or rotate";
  if (c.args.positional.empty())
    return fail(c.env, c.name,
                Error{kUsage, std::string("expected ") + kSubs + " (see weft ca --help)"});
  const std::string sub = c.args.positional[0];
  std::string name = c.name + " " + sub;
  auto args1 = [&](const char* what) -> std::optional<int> {
    if (c.args.positional.size() != 2)
      return fail(c.env, name, Error{kUsage, std::string("expected ") + what});
    return std::nullopt;
  };
  auto connect = [&]() -> std::optional<int> {
    if (auto s = c.connect(); !s) return fail(c.env, name, s.error());
    return std::nullopt;
  };

  if (sub == "create") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments (use --subject)"});
    if (!c.args.has("--subject"))
      return fail(c.env, name,
                  Error{kUsage, "--subject is required (e.g. --subject CN=example.local)"});
    auto subject = ca::parseSubject(c.args.get("--subject"));
    if (!subject) return fail(c.env, name, Error{kUsage, subject.error().message});
    ca::CreateCaOptions o;
    o.subject = std::move(*subject);
    if (c.args.has("--key-algorithm")) o.key_algorithm = c.args.get("--key-algorithm");
    static const std::set<std::string> kKeys = {"RSA_2048", "RSA_4096", "EC_prime256v1",
                                                "EC_secp384r1"};
    if (!kKeys.count(o.key_algorithm))
      return fail(c.env, name,
                  Error{kUsage,
                        "--key-algorithm must be RSA_2048, RSA_4096, EC_prime256v1 or "
                        "EC_secp384r1, not '" +
                            o.key_algorithm + "'"});
    o.signing_algorithm = c.args.get("--signing-algorithm");
    if (c.args.has("--validity-days")) {
      auto d = positiveInt(c.args, "--validity-days", 1, 36500);
      if (!d) return fail(c.env, name, d.error());
      o.validity_days = *d;
    }
    o.parent_arn = c.args.get("--subordinate-of");
    if (c.args.has("--path-len")) {
      if (o.parent_arn.empty())
        return fail(c.env, name, Error{kUsage, "--path-len applies only with --subordinate-of"});
      auto p = positiveInt(c.args, "--path-len", 0, 3);
      if (!p) return fail(c.env, name, p.error());
      o.path_len = static_cast<int>(*p);
    }
    if (auto r = connect()) return *r;
    auto arn = ca::createCa(*c.api, o);
    if (!arn) return fail(c.env, name, arn.error());
    c.env.out << *arn << "\n";  // alone, for scripts
    return 0;
  }
  if (sub == "import") {
    if (c.args.has("--chain"))
      return fail(c.env, name,
                  Error{kUsage, "the issuers' chain file is --certificate-chain F for import"});
    if (c.args.positional.size() != 1)
      return fail(c.env, name,
                  Error{kUsage, "takes no arguments (use --certificate and --private-key)"});
    std::string cert_file = c.args.get("--certificate");
    std::string key_file = c.args.get("--private-key");
    if (cert_file.empty() || key_file.empty())
      return fail(c.env, name, Error{kUsage, "--certificate F and --private-key F are required"});
    auto cert = readFile(cert_file);
    if (!cert) return fail(c.env, name, cert.error());
    std::string chain;
    if (c.args.has("--certificate-chain")) {
      auto ch = readFile(c.args.get("--certificate-chain"));
      if (!ch) return fail(c.env, name, ch.error());
      chain = std::move(*ch);
    }
    std::string passphrase;
    if (c.args.has("--passphrase-file")) {
      auto pass = readFile(c.args.get("--passphrase-file"));
      if (!pass) return fail(c.env, name, pass.error());
      passphrase = std::move(*pass);
      // The first line, as `openssl ... -passin file:F` reads it.
      passphrase.resize(std::min(passphrase.size(), passphrase.find('\n')));
      if (!passphrase.empty() && passphrase.back() == '\r') passphrase.pop_back();
      if (passphrase.empty())
        return fail(c.env, name, Error{kUsage, "the passphrase file is empty"});
    }
    auto key = readFile(key_file);
    if (!key) return fail(c.env, name, key.error());
    std::string key_pem = std::move(*key);
    auto wipe = [&] {
      std::fill(key_pem.begin(), key_pem.end(), '\0');
      std::fill(passphrase.begin(), passphrase.end(), '\0');
    };
    if (auto r = connect()) {
      wipe();
      return *r;
    }
    auto imported = ca::importCa(*c.api, *cert, key_pem, chain, passphrase);
    wipe();
    if (!imported) return fail(c.env, name, imported.error());
    c.env.out << imported->arn << "\n";  // alone, for scripts
    c.env.err << "imported a " << imported->type << " certificate authority; it is ACTIVE\n";
    return 0;
  }
  if (sub == "list") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments"});
    return listCommand(
        c, name, [](ApiClient& api) { return ca::listCas(api); },
        {"ARN", "TYPE", "STATUS", "SUBJECT", "KEY", "EXPIRES"}, "No certificate authorities found.",
        [](const Value& a) {
          const Value* cfg = a.find("CertificateAuthorityConfiguration");
          const Value* subj = cfg ? cfg->find("Subject") : nullptr;
          std::string subject = subj ? fieldText(*subj, "CommonName") : "";
          if (subject.empty() && subj && !subj->members().empty())
            subject = subj->members()[0].second.scalarText();
          return std::vector<std::string>{fieldText(a, "Arn"),
                                          fieldText(a, "Type"),
                                          fieldText(a, "Status"),
                                          dashIfEmpty(subject),
                                          cfg ? fieldText(*cfg, "KeyAlgorithm") : "-",
                                          formatTime(a.find("NotAfter"))};
        });
  }
  if (sub == "describe") {
    auto format = outputFormat(c.args, "yaml", false);
    if (!format) return fail(c.env, name, format.error());
    if (c.args.has("--mesh")) {  // a mesh's identity CA: its rotation state (weft's own route)
      if (c.args.positional.size() != 1)
        return fail(c.env, name, Error{kUsage, "takes no ARN with --mesh"});
      if (auto r = connect()) return *r;
      auto st =
          c.api->call("GET", "/weft/v1/ca-rotations", makeQuery({{"mesh", c.args.get("--mesh")}}));
      if (!st) return fail(c.env, name, st.error());
      printValue(c.env.out, *st, *format);
      return 0;
    }
    if (auto r = args1("ARN (a certificate authority or certificate ARN)")) return *r;
    const std::string& arn = c.args.positional[1];
    std::string kind = ca::arnKind(arn);
    if (kind.empty() || kind == "pca-certificate")
      return fail(c.env, name,
                  Error{kUsage, "'" + arn +
                                    "' is not a certificate authority ARN or an ACM "
                                    "certificate ARN"});
    if (auto r = connect()) return *r;
    Value req = Value::object();
    Result<Value> d = Value();
    if (kind == "ca") {
      req.set("CertificateAuthorityArn", Value::string(arn));
      d = ca::pca(*c.api, "DescribeCertificateAuthority", req);
    } else {
      req.set("CertificateArn", Value::string(arn));
      d = ca::acm(*c.api, "DescribeCertificate", req);
    }
    if (!d) return fail(c.env, name, d.error());
    const Value* inner = d->find(kind == "ca" ? "CertificateAuthority" : "Certificate");
    Value shown = inner ? *inner : *d;
    if (kind == "ca" && shown.isObject()) {
      // weft's addition: the rotation phase, the roots in the trust bundles, the retire time.
      auto st = c.api->call("GET", "/weft/v1/ca-rotations",
                            makeQuery({{"certificateAuthorityArn", arn}}));
      if (!st) return fail(c.env, name, st.error());
      st->erase("certificateAuthorityArn");
      shown.set("Rotation", std::move(*st));
    }
    printValue(c.env.out, shown, *format);
    return 0;
  }
  if (sub == "rotate") {
    const bool mesh = c.args.has("--mesh");
    if (mesh ? c.args.positional.size() != 1 : c.args.positional.size() != 2)
      return fail(c.env, name, Error{kUsage, "expected CA_ARN or --mesh MESH (not both)"});
    Value body = Value::object();
    if (mesh) {
      body.set("mesh", Value::string(c.args.get("--mesh")));
    } else {
      const std::string& arn = c.args.positional[1];
      if (ca::arnKind(arn) != "ca")
        return fail(c.env, name, Error{kUsage, "'" + arn + "' is not a certificate authority ARN"});
      body.set("certificateAuthorityArn", Value::string(arn));
    }
    auto format = outputFormat(c.args, "yaml", false);
    if (!format) return fail(c.env, name, format.error());
    if (auto r = connect()) return *r;
    const bool retire = c.args.has("--retire-now");
    auto st = c.api->call("POST", retire ? "/weft/v1/ca-rotations/retire" : "/weft/v1/ca-rotations",
                          "", &body);
    if (!st) return fail(c.env, name, st.error());
    printValue(c.env.out, *st, *format);
    return 0;
  }
  if (sub == "delete") {
    if (auto r = args1("CA_ARN")) return *r;
    std::optional<int64_t> days;
    if (c.args.has("--restore-window-days")) {
      auto d = positiveInt(c.args, "--restore-window-days", 7, 30);
      if (!d) return fail(c.env, name, d.error());
      days = *d;
    }
    const std::string& arn = c.args.positional[1];
    if (ca::arnKind(arn) != "ca")
      return fail(c.env, name, Error{kUsage, "'" + arn + "' is not a certificate authority ARN"});
    if (auto r = connect()) return *r;
    auto until = ca::deleteCa(*c.api, arn, days);
    if (!until) return fail(c.env, name, until.error());
    Value at = Value::number(*until);
    c.env.out << "deleted " << arn << " (restorable until " << formatTime(&at) << ")\n";
    return 0;
  }
  if (sub == "issue") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments (use --ca and --domain)"});
    std::string ca_arn = c.args.get("--ca");
    if (ca_arn.empty() || c.args.all("--domain").empty())
      return fail(c.env, name,
                  Error{kUsage, "--ca ARN and --domain NAME are required (--domain repeatable)"});
    // weft's extension of RequestCertificate (WeftValidityInDays); the server refuses a
    // validity past the CA certificate's expiry and names the longest possible.
    std::optional<int64_t> validity;
    if (c.args.has("--validity-days")) {
      auto d = positiveInt(c.args, "--validity-days", 1, 36500);
      if (!d) return fail(c.env, name, d.error());
      validity = *d;
    }
    if (auto r = connect()) return *r;
    auto arn = ca::requestCertificate(*c.api, ca_arn, c.args.all("--domain"),
                                      c.args.get("--key-algorithm"), validity);
    if (!arn) return fail(c.env, name, arn.error());
    c.env.out << *arn << "\n";  // alone, for scripts
    return 0;
  }
  if (sub == "certificates") {
    if (c.args.positional.size() != 1)
      return fail(c.env, name, Error{kUsage, "takes no arguments (use --ca to filter)"});
    std::string ca_arn = c.args.get("--ca");
    return listCommand(
        c, name, [&](ApiClient& api) { return ca::listCertificates(api, ca_arn); },
        {"ARN", "DOMAIN", "STATUS", "KEY", "EXPIRES", "EXPORTED"}, "No certificates found.",
        [](const Value& s) {
          std::string domain = fieldText(s, "DomainName");
          if (const Value* sans = s.find("SubjectAlternativeNameSummaries");
              sans && sans->isArray() && sans->items().size() > 1)
            domain += " (+" + std::to_string(sans->items().size() - 1) + ")";
          return std::vector<std::string>{
              fieldText(s, "CertificateArn"), domain,
              fieldText(s, "Status"),         fieldText(s, "KeyAlgorithm"),
              formatTime(s.find("NotAfter")), fieldText(s, "Exported")};
        });
  }
  if (sub == "get-certificate") {
    if (auto r = args1("ARN (a certificate authority or certificate ARN)")) return *r;
    if (auto r = connect()) return *r;
    auto pem = ca::certificatePem(*c.api, c.args.positional[1]);
    if (!pem) return fail(c.env, name, pem.error());
    std::string out = pem->certificate;
    if (!out.empty() && out.back() != '\n') out += '\n';
    if (c.args.has("--chain")) out += pem->chain;
    if (!out.empty() && out.back() != '\n') out += '\n';
    c.env.out << out;
    return 0;
  }
  if (sub == "export") {
    if (auto r = args1("CERTIFICATE_ARN")) return *r;
    std::string pass_file = c.args.get("--passphrase-file");
    if (pass_file.empty()) return fail(c.env, name, Error{kUsage, "--passphrase-file is required"});
    auto pass = readFile(pass_file);
    if (!pass) return fail(c.env, name, pass.error());
    std::string passphrase = std::move(*pass);
    if (!passphrase.empty() && passphrase.back() == '\n') passphrase.pop_back();
    if (!passphrase.empty() && passphrase.back() == '\r') passphrase.pop_back();
    if (passphrase.size() < 4 || passphrase.size() > 128)
      return fail(c.env, name,
                  Error{kUsage, "the passphrase in " + pass_file +
                                    " must be 4 to 128 bytes (one trailing newline is ignored)"});
    std::string dir = c.args.has("--out-dir") ? c.args.get("--out-dir") : ".";
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return fail(c.env, name, Error{1, "--out-dir " + dir + " is not a directory"});
    if (auto r = connect()) return *r;
    auto pem = ca::exportCertificate(*c.api, c.args.positional[1], passphrase);
    std::fill(passphrase.begin(), passphrase.end(), '\0');
    if (!pem) return fail(c.env, name, pem.error());
    const std::pair<const char*, const std::string*> files[] = {
        {"certificate.pem", &pem->certificate},
        {"chain.pem", &pem->chain},
        {"private-key.pem", &pem->private_key}};
    for (const auto& [file, data] : files) {
      std::string path = dir + "/" + file;
      if (auto w = writeFileAtomically(path, *data,
                                       std::string_view(file) == "private-key.pem" ? 0600 : 0644);
          !w)
        return fail(c.env, name, w.error());
      c.env.out << path << "\n";
    }
    return 0;
  }
  if (sub == "revoke") {
    if (auto r = args1("CERTIFICATE_ARN")) return *r;
    if (auto r = connect()) return *r;
    const std::string& arn = c.args.positional[1];
    auto r = ca::revokeCertificate(*c.api, arn, c.args.get("--reason"));
    if (!r) return fail(c.env, name, r.error());
    c.env.out << "revoked " << arn << "\n";
    return 0;
  }
  return fail(c.env, c.name,
              Error{kUsage, "unknown subcommand '" + sub + "' (expected " + kSubs + ")"});
}

// ---- workloads (src/workload) ----

workload::InterceptFlags interceptFlags(const ParsedArgs& a) {
  workload::InterceptFlags f;
  f.app_ports = a.get("--app-ports");
  f.proxy_ingress_port = a.get("--proxy-ingress-port");
  f.proxy_egress_port = a.get("--proxy-egress-port");
  if (a.has("--egress-ignored-ports")) f.egress_ignored_ports = a.get("--egress-ignored-ports");
  if (a.has("--egress-ignored-ips")) f.egress_ignored_ips = a.get("--egress-ignored-ips");
  return f;
}

int cmdIntercept(Command& c) {
  if (c.args.positional.size() != 1)
    return fail(c.env, c.name, Error{kUsage, "expected one of install, remove, status"});
  workload::InterceptFlags f = interceptFlags(c.args);
  f.id = c.args.get("--id");
  f.ignored_uid = c.args.get("--ignored-uid");
  f.ignored_gid = c.args.get("--ignored-gid");
  return workload::interceptCommand(c.args.positional[0], f, c.args.has("--id"), c.env.out,
                                    c.env.err);
}

int cmdRun(Command& c) {
  const auto& pos = c.args.positional;
  if (pos.empty() || pos[0] != "--")
    return fail(c.env, c.name,
                Error{kUsage, pos.empty() ? "no app to run: give its command after --"
                                          : "unexpected '" + pos[0] +
                                                "' (the app's command "
                                                "goes after --)"});
  workload::RunFlags f;
  f.command.assign(pos.begin() + 1, pos.end());
  f.intercept = interceptFlags(c.args);
  f.intercept.id = c.args.get("--intercept-id");
  f.resource = c.args.get("--resource");
  f.control_plane = c.args.get("--control-plane");
  f.token_file = c.args.get("--token-file");
  f.ca_file = c.args.get("--ca-file");
  f.insecure = c.args.has("--insecure");
  f.proxy = c.args.get("--proxy");
  f.proxy_user = c.args.get("--proxy-user");
  f.app_user = c.args.get("--app-user");
  f.no_intercept = c.args.has("--no-intercept");
  f.admin = c.args.get("--admin");
  f.state_dir = c.args.get("--state-dir");
  f.app_addresses = c.args.all("--app-address");
  f.host = c.args.get("--host");
  f.network = c.args.get("--network");
  f.proxy_log_level = c.args.get("--proxy-log-level");
  f.ready_timeout = c.args.get("--ready-timeout");
  f.stop_timeout = c.args.get("--stop-timeout");
  return workload::runCommand(f, c.env.err);
}

// ---- help ----

struct CommandDef {
  std::string_view name;
  std::vector<FlagSpec> flags;
  const char* help;
  int (*run)(Command&);
};

const std::vector<CommandDef>& commands() {
  static const std::vector<CommandDef> defs = {
      {"apply",
       {{"--filename", "-f"}},
       "Usage: weft apply -f FILE|DIR [-f ...]\n"
       "\n"
       "Creates or updates App Mesh resources from manifests (YAML or JSON; a directory means\n"
       "its *.yaml, *.yml and *.json files). Resources are applied in dependency order: meshes,\n"
       "virtual nodes, virtual routers, routes, virtual services, virtual gateways, gateway\n"
       "routes. Each is reported as created, updated or unchanged (its spec and tags equal the\n"
       "server's). A manifest document:\n"
       "\n"
       "  kind: VirtualNode          # or Mesh, VirtualService, VirtualRouter, Route, ...\n"
       "  mesh: demo\n"
       "  name: backend\n"
       "  spec: {listeners: [{portMapping: {port: 8080, protocol: http}}]}\n"
       "  tags: [{key: team, value: payments}]     # or {team: payments}\n"
       "\n"
       "Routes also take `virtualRouter: R`, gateway routes `virtualGateway: G`.\n"
       "\n"
       "Flags:\n"
       "  -f, --filename PATH   manifest file or directory ('-' for stdin); repeatable\n",
       cmdApply},
      {"get", kScopeFlags,
       "Usage: weft get KIND [NAME] [--mesh M] [--virtual-router R | --virtual-gateway G]\n"
       "                [-o table|json|yaml]\n"
       "       weft get namespaces|services|instances [--namespace N] [--service S]\n"
       "                [-o table|json|yaml]\n"
       "\n"
       "Lists resources of a kind (in one mesh with --mesh, else in every mesh; routes of one\n"
       "router with --virtual-router, else of every router), or shows one by NAME (then --mesh\n"
       "is required, and --virtual-router/--virtual-gateway for routes/gateway routes).\n"
       "\n"
       "KIND: mesh(es), virtualnode(s)|vn, virtualservice(s)|vs, virtualrouter(s)|vr,\n"
       "      route(s)|rt, virtualgateway(s)|vg, gatewayroute(s)|gr\n"
       "\n"
       "The service registry (Cloud Map): namespaces (ns), services (svc) of every namespace or\n"
       "of --namespace, instances (with their health) of every service, of --namespace's\n"
       "services or of --service. JSON/YAML give Cloud Map's shapes, services with NamespaceId\n"
       "and NamespaceName, instances with ServiceId, ServiceName, NamespaceName, HealthStatus.\n"
       "\n"
       "Flags:\n"
       "  -m, --mesh M             the mesh\n"
       "  --virtual-router R       the router of routes\n"
       "  --virtual-gateway G      the gateway of gateway routes\n"
       "  -n, --namespace N        services/instances: a namespace's name or id\n"
       "  --service S              instances: a service's id, name or NAME.NAMESPACE\n"
       "  -o, --output FORMAT      table (default: NAME, MESH, VERSION, STATUS, AGE), json, yaml\n",
       cmdGet},
      {"describe",
       {{"--mesh", "-m"},
        {"--virtual-router", ""},
        {"--virtual-gateway", ""},
        {"--output", "-o"},
        {"--resource", ""}},
       "Usage: weft describe KIND NAME [--mesh M] [--virtual-router R | --virtual-gateway G]\n"
       "                     [-o yaml|json]\n"
       "       weft describe proxy-config --resource mesh/M/virtualNode/N [-o json|yaml]\n"
       "\n"
       "Shows one resource in full (spec, metadata, status) with its tags.\n"
       "\n"
       "`describe proxy-config` shows the config the control plane compiles for a proxy of a\n"
       "virtual node or virtual gateway (what it is sent on the config stream), as JSON by\n"
       "default. --resource also takes the resource's ARN.\n"
       "\n"
       "Flags:\n"
       "  -m, --mesh M             the mesh (not for KIND mesh)\n"
       "  --virtual-router R       the router (routes)\n"
       "  --virtual-gateway G      the gateway (gateway routes)\n"
       "  -o, --output FORMAT      yaml (default) or json; proxy-config: json (default) or yaml\n"
       "  --resource R             proxy-config: mesh/M/virtualNode/N or mesh/M/virtualGateway/G\n",
       cmdDescribe},
      {"delete",
       {{"--filename", "-f"},
        {"--mesh", "-m"},
        {"--virtual-router", ""},
        {"--virtual-gateway", ""}},
       "Usage: weft delete -f FILE|DIR\n"
       "       weft delete KIND NAME [--mesh M] [--virtual-router R | --virtual-gateway G]\n"
       "\n"
       "Deletes the resources of manifests in reverse dependency order (gateway routes first,\n"
       "meshes last; resources already gone are reported as not found), or one resource.\n"
       "\n"
       "Flags:\n"
       "  -f, --filename PATH      manifest file or directory; repeatable\n"
       "  -m, --mesh M             the mesh (not for KIND mesh)\n"
       "  --virtual-router R       the router (routes)\n"
       "  --virtual-gateway G      the gateway (gateway routes)\n",
       cmdDelete},
      {"credentials",
       {{"--description", ""}, {"--output", "-o"}},
       "Usage: weft credentials create [--description TEXT] [-o yaml|json]\n"
       "       weft credentials list [-o table|json|yaml]\n"
       "       weft credentials delete ACCESS_KEY_ID\n"
       "\n"
       "Manages the server's API access keys (SigV4). `create` prints the new key id and\n"
       "secret (the only time the secret is shown); the server refuses to delete its last key.\n",
       cmdCredentials},
      {"network",
       {{"--name", ""}, {"--cidr", ""}, {"--output", "-o"}},
       "Usage: weft network create --name N --cidr CIDR [--cidr CIDR ...]\n"
       "       weft network list [-o table|json|yaml]\n"
       "       weft network delete NETWORK_ID\n"
       "\n"
       "Manages networks (the VPCs of App Mesh's world): address ranges that private DNS\n"
       "namespaces are attached to (`aws servicediscovery create-private-dns-namespace --vpc "
       "ID`).\n"
       "`create` prints the new network's id (vpc-...) alone on stdout. A network with a\n"
       "namespace attached cannot be deleted.\n",
       cmdNetwork},
      {"demo",
       {{"--state-dir", ""},
        {"--name", ""},
        {"--examples-dir", ""},
        {"--topology", ""},
        {"--cache-dir", ""},
        {"--api", ""},
        {"--stream-port", ""},
        {"--dns-port", ""},
        {"--gateway-port", ""},
        {"--app-user", ""},
        {"--timeout", ""}},
       demo::demoHelp(),
       cmdDemo},
      {"lab",
       {{"--name", ""},
        {"--state-dir", ""},
        {"--output", "-o"},
        {"--register", "", false},
        {"--keep-networks", "", false}},
       lab::labHelp(),
       cmdLab},
      {"token",
       {{"--resource", ""}, {"--ttl", ""}, {"--output", "-o"}},
       "Usage: weft token create --resource mesh/M/virtualNode/N [--ttl DURATION]\n"
       "       weft token list [-o table|json|yaml]\n"
       "       weft token revoke TOKEN_ID\n"
       "\n"
       "Manages join tokens: what a weft-proxy presents (--token-file) to receive the config of\n"
       "its virtual node or gateway. A token is bound to one resource; a proxy with a token for\n"
       "another resource is refused. `create` prints the token alone on stdout (the only time\n"
       "it is shown; the server keeps only its hash). `revoke` takes the id `list` shows (or\n"
       "the whole token) and disconnects proxies using it.\n"
       "\n"
       "Flags:\n"
       "  --resource R          mesh/M/virtualNode/N, mesh/M/virtualGateway/G or an ARN\n"
       "  --ttl DURATION        expiry, e.g. 24h, 30m, 3600s, 7d (default: never)\n"
       "  -o, --output FORMAT   list: table (default), json or yaml\n",
       cmdToken},
      {"proxies",
       {{"--mesh", "-m"}, {"--output", "-o"}},
       "Usage: weft proxies [--mesh M] [-o table|json|yaml]\n"
       "\n"
       "Lists the proxies connected to the config stream: resource, host, network, the last\n"
       "version sent and the last one the proxy applied (ACK), the last version it rejected\n"
       "(NACK) and why, and since when it is connected.\n"
       "\n"
       "Flags:\n"
       "  -m, --mesh M          only proxies of mesh M\n"
       "  -o, --output FORMAT   table (default), json or yaml\n",
       cmdProxies},
      {"mesh",
       {{"--mtls", ""}, {"--authorization", ""}, {"--output", "-o"}},
       "Usage: weft mesh policy MESH [--mtls off|permissive|strict]\n"
       "                             [--authorization off|backends] [-o table|json|yaml]\n"
       "\n"
       "Shows (no flags) or sets weft's security policy of a mesh, kept outside the App Mesh\n"
       "spec shapes (docs/security.md):\n"
       "  --mtls off            no mesh identities: proxies' certificate requests are refused\n"
       "  --mtls permissive     (default) every proxy holds a short-lived identity certificate\n"
       "                        (spiffe://MESH/virtualNode/NAME), but configs are App Mesh's:\n"
       "                        nothing is required or presented\n"
       "  --mtls strict         node listeners require a client certificate of the mesh's\n"
       "                        identity CA; callers present theirs toward nodes and check the\n"
       "                        node's identity (unless a client policy validates it)\n"
       "  --authorization backends  (needs --mtls strict) a node accepts calls only from the\n"
       "                        nodes that declare one of its virtual services as a backend and\n"
       "                        from gateways routing to one: others get 403 (TCP: closed)\n"
       "  --authorization off   (default) any caller with a mesh identity\n"
       "A flag left out keeps its value. Every proxy of the mesh is recompiled and updated.\n",
       cmdMesh},
      {"ca",
       {{"--subject", ""},
        {"--key-algorithm", ""},
        {"--signing-algorithm", ""},
        {"--validity-days", ""},
        {"--subordinate-of", ""},
        {"--path-len", ""},
        {"--restore-window-days", ""},
        {"--ca", ""},
        {"--domain", ""},
        {"--passphrase-file", ""},
        {"--out-dir", ""},
        {"--reason", ""},
        {"--certificate", ""},
        {"--private-key", ""},
        {"--certificate-chain", ""},
        {"--chain", "", false},
        {"--mesh", ""},
        {"--retire-now", "", false},
        {"--output", "-o"}},
       "Usage: weft ca create --subject CN=NAME[,O=ORG,...] [--key-algorithm ALG]\n"
       "                      [--validity-days N] [--subordinate-of CA_ARN [--path-len N]]\n"
       "       weft ca import --certificate F --private-key F [--certificate-chain F]\n"
       "                      [--passphrase-file F]\n"
       "       weft ca list [-o table|json|yaml]\n"
       "       weft ca describe ARN [-o yaml|json]\n"
       "       weft ca delete CA_ARN [--restore-window-days N]\n"
       "       weft ca issue --ca CA_ARN --domain NAME [--domain NAME ...] [--key-algorithm ALG]\n"
       "                     [--validity-days N]\n"
       "       weft ca certificates [--ca CA_ARN] [-o table|json|yaml]\n"
       "       weft ca get-certificate ARN [--chain]\n"
       "       weft ca export CERT_ARN --passphrase-file F [--out-dir D]\n"
       "       weft ca revoke CERT_ARN [--reason REASON]\n"
       "       weft ca rotate CA_ARN | --mesh MESH [--retire-now] [-o yaml|json]\n"
       "       weft ca describe --mesh MESH [-o yaml|json]\n"
       "\n"
       "The server's private certificate authority, over its ACM PCA and ACM APIs (what\n"
       "`aws acm-pca` and `aws acm` call; see docs/ca.md).\n"
       "\n"
       "  create           makes a CA and activates it in one go: a root signs its own CSR with\n"
       "                   the RootCACertificate/V1 template (as ACM PCA's flow does); with\n"
       "                   --subordinate-of the parent CA signs it (SubordinateCACertificate_\n"
       "                   PathLenN/V1) and its chain is imported. Prints the CA's ARN alone.\n"
       "  import           brings your own CA: its certificate and private key (PEM; an\n"
       "                   encrypted key needs --passphrase-file) become a weft CA, ACTIVE,\n"
       "                   that issues like a created one. Self-signed: a ROOT; else a\n"
       "                   SUBORDINATE whose --certificate-chain must lead to a self-signed root.\n"
       "                   The key is sealed with the server's CA key. Prints the CA's ARN alone\n"
       "  list             every CA: ARN, type, status, subject CN, key, expiry\n"
       "  describe         a CA (DescribeCertificateAuthority, plus weft's Rotation: phase,\n"
       "                   roots in the trust bundles, retire time) or an ACM certificate\n"
       "                   (DescribeCertificate), YAML by default; --mesh M: the rotation\n"
       "                   state of the mesh's identity CA\n"
       "  delete           disables the CA if it is ACTIVE, then deletes it; it can be restored\n"
       "                   (aws acm-pca restore-certificate-authority) within the window\n"
       "  issue            an ACM private certificate for the names (the first is the subject CN;\n"
       "                   wildcards such as *.example.local allowed), with a key the server\n"
       "                   makes; valid 395 days as ACM's, or --validity-days N (a weft\n"
       "                   extension). Prints the certificate's ARN alone\n"
       "  certificates     the ACM certificates (every key type), optionally of one CA\n"
       "  get-certificate  the PEM certificate of a CA ARN (its CA certificate), an ACM\n"
       "                   certificate ARN or an ACM PCA certificate ARN; --chain adds the chain\n"
       "  export           writes certificate.pem, chain.pem and private-key.pem (PKCS#8,\n"
       "                   encrypted with the passphrase; mode 0600) into --out-dir (default .)\n"
       "                   and prints their paths; `openssl pkey -in private-key.pem -passin\n"
       "                   file:F` reads the key\n"
       "  revoke           revokes a certificate at its CA (the CA's CRL lists it)\n"
       "  rotate           rotates a CA (an ACM PCA CA by ARN, or a mesh's identity CA) without\n"
       "                   a dropped request: a new key and certificate (same subject; a\n"
       "                   subordinate is re-signed by its weft parent) go into every trust\n"
       "                   bundle first (PUBLISHING); once every connected proxy acked that, the\n"
       "                   new key signs and the CA's ACM certificates are re-issued\n"
       "                   (SIGNING_NEW); the old root leaves the bundles when every leaf it\n"
       "                   signed has expired. Prints the rotation state; `describe` shows it\n"
       "                   (docs/security.md \"Rotation\")\n"
       "\n"
       "Flags:\n"
       "  --subject DN               CN=..,O=..,OU=..,C=..,ST=..,L=.. (\\, for a comma in a "
       "value)\n"
       "  --key-algorithm ALG        create: RSA_2048 (default), RSA_4096, EC_prime256v1,\n"
       "                             EC_secp384r1; issue: also RSA_3072, EC_secp521r1\n"
       "  --signing-algorithm ALG    create: e.g. SHA384WITHRSA (default: SHA256 for RSA and\n"
       "                             P-256 keys, SHA384WITHECDSA for P-384)\n"
       "  --validity-days N          create: the CA certificate's validity (default: a root 10\n"
       "                             years; a subordinate 5 years or up to its parent's expiry);\n"
       "                             issue: 1 to what the CA's certificate allows (default 395)\n"
       "  --certificate F            import: the CA certificate (PEM)\n"
       "  --private-key F            import: its private key (PEM: PKCS#8 or RSA / EC, may be\n"
       "                             encrypted)\n"
       "  --certificate-chain F      import: a subordinate's issuers up to the root (PEM)\n"
       "  --subordinate-of CA_ARN    create: a subordinate CA signed by this (ACTIVE) CA\n"
       "  --path-len N               create: the subordinate's path length, 0 (default) to 3\n"
       "  --restore-window-days N    delete: 7 to 30 (default 30)\n"
       "  --ca CA_ARN                issue: the issuing CA; certificates: only its certificates\n"
       "  --domain NAME              issue: a DNS name; repeatable\n"
       "  --passphrase-file F        export: the passphrase, 4-128 bytes (a trailing newline\n"
       "                             is ignored); import: the key's passphrase (first line)\n"
       "  --out-dir D                export: where the files go (default .)\n"
       "  --reason REASON            revoke: UNSPECIFIED (default), KEY_COMPROMISE,\n"
       "                             CERTIFICATE_AUTHORITY_COMPROMISE, AFFILIATION_CHANGED,\n"
       "                             SUPERSEDED, CESSATION_OF_OPERATION, PRIVILEGE_WITHDRAWN,\n"
       "                             A_A_COMPROMISE\n"
       "  --chain                    get-certificate: append the chain\n"
       "  --mesh MESH                rotate, describe: the mesh's identity CA instead of an ARN\n"
       "  --retire-now               rotate: end a rotation in SIGNING_NEW now: the old root\n"
       "                             leaves the trust bundles at once. WARNING: leaves it signed\n"
       "                             that are still in use (exported ACM certificates, mesh\n"
       "                             identities not yet renewed) stop verifying\n"
       "  -o, --output FORMAT        list/certificates: table|json|yaml; describe, rotate:\n"
       "                             yaml|json\n",
       cmdCa},
      {"intercept",
       {{"--id", ""},
        {"--app-ports", ""},
        {"--proxy-ingress-port", ""},
        {"--proxy-egress-port", ""},
        {"--ignored-uid", ""},
        {"--ignored-gid", ""},
        {"--egress-ignored-ports", ""},
        {"--egress-ignored-ips", ""}},
       "Usage: weft intercept install [--id ID] [--app-ports P[,P...]] [--proxy-ingress-port P]\n"
       "                              [--proxy-egress-port P] [--ignored-uid UID]\n"
       "                              [--ignored-gid GID] [--egress-ignored-ports P[,P...]]\n"
       "                              [--egress-ignored-ips IP[/N][,...]]\n"
       "       weft intercept remove [--id ID]\n"
       "       weft intercept status [--id ID]\n"
       "\n"
       "Sends an app's TCP traffic through its sidecar with iptables (nat table, in the current\n"
       "network namespace; run as root), as App Mesh does for ECS tasks and EC2 instances\n"
       "(ProxyConfiguration; the walkthrough's SSM document). The flags are App Mesh's\n"
       "ProxyConfiguration properties. Inbound TCP to the app ports goes to the proxy's\n"
       "ingress port; every other outbound TCP connection goes to its egress port, except\n"
       "the proxy's own (its uid, and gid if given), traffic to this host's own addresses\n"
       "(loopback: the app itself, the proxy's admin port), and the ignored ports and\n"
       "addresses. IPv4 only. `weft run` does the same for the time an app runs.\n"
       "\n"
       "  install   makes chains WEFT_IN_<id> (from PREROUTING) and WEFT_OUT_<id> (from OUTPUT);\n"
       "            installing an id again replaces its rules (never duplicates them)\n"
       "  remove    deletes exactly the chains and jumps of the id (nothing else)\n"
       "  status    lists the installed interceptions and their rules\n"
       "\n"
       "Flags:\n"
       "  --id ID                      names the installation (default weft; 1-19 of\n"
       "                               A-Z a-z 0-9 _ -)\n"
       "  --app-ports P[,P...]         AppPorts: the app's listening ports (default none:\n"
       "                               outbound only)\n"
       "  --proxy-ingress-port P       ProxyIngressPort (default 15000)\n"
       "  --proxy-egress-port P        ProxyEgressPort (default 15001)\n"
       "  --ignored-uid UID            IgnoredUID: the proxy's user (default 1337)\n"
       "  --ignored-gid GID            IgnoredGID (default none)\n"
       "  --egress-ignored-ports LIST  EgressIgnoredPorts (default 22; '' or none: no port)\n"
       "  --egress-ignored-ips LIST    EgressIgnoredIPs, IPv4 addresses or CIDRs (default\n"
       "                               169.254.169.254,169.254.170.2; '' or none: none)\n",
       cmdIntercept},
      {"run",
       {{"--resource", ""},
        {"--control-plane", ""},
        {"--token-file", ""},
        {"--ca-file", ""},
        {"--insecure", "", false},
        {"--proxy", ""},
        {"--proxy-user", ""},
        {"--app-user", ""},
        {"--no-intercept", "", false},
        {"--intercept-id", ""},
        {"--app-ports", ""},
        {"--proxy-ingress-port", ""},
        {"--proxy-egress-port", ""},
        {"--egress-ignored-ports", ""},
        {"--egress-ignored-ips", ""},
        {"--admin", ""},
        {"--state-dir", ""},
        {"--app-address", ""},
        {"--host", ""},
        {"--network", ""},
        {"--proxy-log-level", ""},
        {"--ready-timeout", ""},
        {"--stop-timeout", ""}},
       "Usage: weft run --resource mesh/M/virtualNode/N --control-plane HOST:PORT\n"
       "                --token-file F (--ca-file F | --insecure) [--app-ports P[,P...]]\n"
       "                [flags] -- COMMAND [ARGS...]\n"
       "\n"
       "Runs an app with its sidecar, as an ECS task with an App Mesh proxy configuration:\n"
       "  1. installs the interception (as `weft intercept install`; not with --no-intercept)\n"
       "  2. starts weft-proxy in control-plane mode as the proxy user\n"
       "  3. once the proxy's /ready answers 200, starts COMMAND (the app) as the invoking\n"
       "     user, or --app-user\n"
       "  4. passes SIGTERM, SIGINT and SIGHUP on to the app (after SIGTERM/SIGINT, SIGKILL\n"
       "     once --stop-timeout has passed)\n"
       "  5. when the app exits: stops what it left running, sends the proxy SIGTERM (it\n"
       "     drains and says Goodbye to the control plane) and waits for it, removes the\n"
       "     interception, and exits with the app's exit code (128+N after signal N).\n"
       "If the proxy fails to start, is not ready in time or exits, the app is stopped (or\n"
       "never started), everything is removed, and weft run exits 1 with the proxy's last\n"
       "stderr lines. Progress lines and the proxy's log go to stderr. Needs root (iptables,\n"
       "switching users) unless --no-intercept.\n"
       "\n"
       "Flags:\n"
       "  --resource R              the virtual node (mesh/M/virtualNode/N or its ARN;\n"
       "                            default $APPMESH_RESOURCE_ARN)\n"
       "  --control-plane LIST      `weft server --stream` HOST:PORT[,HOST:PORT...]\n"
       "  --token-file F            the join token (`weft token create --resource R`)\n"
       "  --ca-file F               the server's DATA_DIR/ca-bundle.pem\n"
       "  --insecure                plaintext config stream (tests only)\n"
       "  --proxy PATH              weft-proxy (default: next to this weft binary)\n"
       "  --proxy-user USER         NAME, UID or UID:GID the proxy runs as (default 1337);\n"
       "                            its traffic is exempt from interception\n"
       "  --app-user USER           NAME, UID or UID:GID the app runs as (default: ours)\n"
       "  --app-ports P[,P...]      the app's ports: inbound TCP to them goes to the proxy\n"
       "                            (default: the virtual node's listener ports, read from\n"
       "                            the proxy once it is ready)\n"
       "  --proxy-ingress-port P    default 15000 (the port the control plane pushes)\n"
       "  --proxy-egress-port P     default 15001\n"
       "  --egress-ignored-ports L  default 22 ('' or none: no port)\n"
       "  --egress-ignored-ips L    default 169.254.169.254,169.254.170.2\n"
       "  --no-intercept            install no iptables rules\n"
       "  --intercept-id ID         the interception's id (default run<pid>)\n"
       "  --admin HOST:PORT         the proxy's admin listener (default 127.0.0.1:0: a free\n"
       "                            port, shown in the progress lines)\n"
       "  --state-dir DIR           the proxy's stored config, kept (made for the proxy user\n"
       "                            if missing; default: a private directory removed at the\n"
       "                            end)\n"
       "  --app-address IP          the app's address for the registry (repeatable)\n"
       "  --host NAME, --network ID shown by `weft proxies`\n"
       "  --proxy-log-level LEVEL   debug, info, warn or error\n"
       "  --ready-timeout D         how long to wait for the proxy's /ready (default 30s)\n"
       "  --stop-timeout D          how long the app and the proxy each get after SIGTERM\n"
       "                            before SIGKILL (default 20s)\n",
       cmdRun},
      {"stack",
       {{"--template-file", ""},
        {"--stack-name", ""},
        {"--parameter-overrides", "", true, true},
        {"--output", "-o"}},
       "Usage: weft stack deploy --template-file T --stack-name S [--parameter-overrides K=V ...]\n"
       "       weft stack delete --stack-name S\n"
       "       weft stack describe --stack-name S [-o yaml|json]\n"
       "       weft stack list [-o table|json|yaml]\n"
       "\n"
       "Deploys CloudFormation templates: AWS::AppMesh::* resources become weft resources.\n"
       "Parameters, Conditions, Mappings, Ref, Fn::Sub, Fn::GetAtt, Fn::ImportValue, Fn::Join,\n"
       "Fn::Select, Fn::Split, Fn::If, Fn::Equals, Fn::And/Or/Not, Fn::FindInMap, Fn::Base64,\n"
       "Outputs and Exports work as in CloudFormation, in JSON and in YAML long and short (!Ref)\n"
       "forms. Resources are created in dependency order and deleted in reverse; a failed deploy\n"
       "rolls back; a redeploy updates changed resources, creates new ones and deletes removed\n"
       "ones. Also deployed: AWS::ServiceDiscovery::PrivateDnsNamespace, PublicDnsNamespace,\n"
       "HttpNamespace, Service, Instance; AWS::ACMPCA::CertificateAuthority, Certificate,\n"
       "CertificateAuthorityActivation; AWS::CertificateManager::Certificate (private). Other\n"
       "resource types are listed as skipped (not handled yet).\n"
       "\n"
       "Flags:\n"
       "  --template-file T                  the template (YAML or JSON)\n"
       "  --stack-name S                     the stack\n"
       "  --parameter-overrides K=V [K=V..]  parameter values\n"
       "  -o, --output FORMAT                describe: yaml|json; list: table|json|yaml\n",
       cmdStack},
  };
  return defs;
}

}  // namespace

const char* topLevelHelp() { return kTopHelp; }

int runCli(int argc, const char* const* argv, CliEnv& env) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    env.err << kTopHelp;
    return 2;
  }
  const std::string& first = args[0];
  if (first == "--help" || first == "-h" || first == "help") {
    if (first == "help" && args.size() > 1) {
      for (const CommandDef& d : commands())
        if (d.name == args[1]) {
          env.out << d.help << "\n" << kGlobalFlagsHelp;
          return 0;
        }
    }
    env.out << kTopHelp << "\n" << kGlobalFlagsHelp;
    return 0;
  }
  if (first == "--version" || first == "version") {
    env.out << "weft " WEFT_VERSION "\n";
    return 0;
  }
  for (const CommandDef& d : commands()) {
    if (d.name != first) continue;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    std::string name = "weft " + std::string(d.name);
    auto parsed = parseArgs(rest, d.flags, name);
    if (!parsed) {
      // --help wins over a bad flag.
      if (std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
          std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
        env.out << d.help << "\n" << kGlobalFlagsHelp;
        return 0;
      }
      return fail(env, name, parsed.error());
    }
    if (parsed->has("--help")) {
      env.out << d.help << "\n" << kGlobalFlagsHelp;
      return 0;
    }
    Command c{env, std::move(*parsed), name, nullptr, nullptr, {}};
    return d.run(c);
  }
  env.err << "weft: unknown command '" << first << "' (see weft --help)\n";
  return 2;
}

}  // namespace weft::cli
