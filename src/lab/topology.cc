#include "lab/topology.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <map>
#include <optional>
#include <set>

#include "common/json.h"

namespace weft::lab {

const Network* Topology::findNetwork(std::string_view name) const {
  for (const Network& n : networks)
    if (n.name == name) return &n;
  return nullptr;
}

int Topology::networkIndex(std::string_view name) const {
  for (size_t i = 0; i < networks.size(); ++i)
    if (networks[i].name == name) return static_cast<int>(i);
  return -1;
}

const Subnet* Topology::findSubnet(std::string_view name, const Network** network) const {
  for (const Network& n : networks)
    for (const Subnet& s : n.subnets)
      if (s.name == name) {
        if (network) *network = &n;
        return &s;
      }
  return nullptr;
}

const Host* Topology::findHost(std::string_view name) const {
  for (const Host& h : hosts)
    if (h.name == name) return &h;
  return nullptr;
}

bool Topology::peered(std::string_view a, std::string_view b) const {
  for (const Peering& p : peerings)
    if ((p.a == a && p.b == b) || (p.a == b && p.b == a)) return true;
  return false;
}

namespace {

std::string nameProblem(std::string_view name, size_t max) {
  if (name.empty()) return "is empty";
  if (name.size() > max) return "is longer than " + std::to_string(max) + " characters";
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return "may hold only lowercase letters, digits and '-'";
  if (name.front() == '-' || name.back() == '-') return "must start and end with a letter or digit";
  return "";
}

// The entries as parsed, before checks: optional fields stay unset.
struct RawSubnet {
  std::string label;  // "subnet vpc1-a" or "networks[0].subnets[1]"
  std::string name, cidr, zone;
};
struct RawNetwork {
  std::string label;
  std::string name, cidr;
  std::optional<std::string> endpoint;
  std::vector<RawSubnet> subnets;
};
struct RawHost {
  std::string label;
  std::string name, subnet;
  std::optional<std::string> address;
  std::vector<std::string> run;
};
struct RawPeering {
  std::string label;
  std::vector<std::string> between;
};

// Reads the YAML tree into the raw entries, reporting wrong shapes and unknown keys.
class Reader {
 public:
  std::vector<std::string> problems;

  void unknownKeys(const YAML::Node& map, const std::string& label,
                   std::initializer_list<std::string_view> known) {
    for (const auto& kv : map) {
      std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      problems.push_back(label + ": unknown key '" + key + "' (expected " + list + ")");
    }
  }

  // The scalar at `node[key]`; "" (and a problem when `required`) when absent or not a scalar.
  std::string scalar(const YAML::Node& map, const char* key, const std::string& label,
                     bool required) {
    YAML::Node v = map[key];
    if (!v || v.IsNull()) {
      if (required) problems.push_back(label + ": '" + key + "' is required");
      return "";
    }
    if (!v.IsScalar()) {
      problems.push_back(label + ": '" + key + "' must be a single value, not a list or map");
      return "";
    }
    return v.Scalar();
  }

  std::vector<std::string> scalarList(const YAML::Node& map, const char* key,
                                      const std::string& label) {
    std::vector<std::string> out;
    YAML::Node v = map[key];
    if (!v || v.IsNull()) return out;
    if (!v.IsSequence()) {
      problems.push_back(label + ": '" + key + "' must be a list, e.g. [a, b]");
      return out;
    }
    for (const YAML::Node& e : v) {
      if (!e.IsScalar()) {
        problems.push_back(label + ": every item of '" + key + "' must be a single value");
        return {};
      }
      out.push_back(e.Scalar());
    }
    return out;
  }

  // The sequence at `root[key]` (each item a map), or an empty list.
  std::vector<YAML::Node> maps(const YAML::Node& root, const char* key) {
    std::vector<YAML::Node> out;
    YAML::Node v = root[key];
    if (!v || v.IsNull()) return out;
    if (!v.IsSequence()) {
      problems.push_back(std::string("'") + key + "' must be a list");
      return out;
    }
    size_t i = 0;
    for (const YAML::Node& e : v) {
      if (!e.IsMap())
        problems.push_back(std::string(key) + "[" + std::to_string(i) +
                           "]: must be a map such as {name: ..., ...}");
      else
        out.push_back(e);
      ++i;
    }
    return out;
  }
};

std::string labelFor(const char* kind, const std::string& name, const std::string& fallback) {
  return name.empty() ? fallback : std::string(kind) + " " + name;
}

class Checker {
 public:
  std::vector<std::string>& problems;

  // Parses a CIDR that must lie inside 198.18.0.0/15.
  std::optional<Ipv4Net> labCidr(const std::string& text, const std::string& label,
                                 const char* field) {
    auto net = parseIpv4Net(text);
    if (!net) {
      problems.push_back(label + ": " + field + " " + net.error().message);
      return std::nullopt;
    }
    if (!kLabRange.contains(*net)) {
      problems.push_back(label + ": " + field + " " + net->str() + " is outside " +
                         kLabRange.str() +
                         "; the lab uses only that range (e.g. 198.18.0.0/16 and "
                         "198.19.0.0/16)");
      return std::nullopt;
    }
    if (net->len < 16 || net->len > 28) {
      problems.push_back(label + ": " + field + " " + net->str() +
                         " must be between a /16 and a /28 (as in an AWS VPC)");
      return std::nullopt;
    }
    return *net;
  }
};

}  // namespace

Status validateLabName(std::string_view name) {
  std::string p = nameProblem(name, kMaxLabName);
  if (p.empty()) return {};
  return makeError("lab name \"" + std::string(name) + "\" " + p +
                   " (use e.g. crossvpc; set it with `name:` in the file or --name)");
}

Result<Topology> parseTopology(std::string_view text, std::string_view default_name) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return makeError("not valid YAML: line " + std::to_string(e.mark.line + 1) + ", column " +
                     std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (!root.IsMap())
    return makeError(
        "expected a map with `networks:` (and `hosts:`, `peerings:`); see docs/lab.md");

  Reader r;
  Topology t;
  std::vector<RawNetwork> raw_networks;
  std::vector<RawHost> raw_hosts;
  std::vector<RawPeering> raw_peerings;
  try {
    r.unknownKeys(root, "top level", {"name", "networks", "peerings", "hosts", "control_plane"});
    t.name = r.scalar(root, "name", "top level", false);
    if (t.name.empty()) t.name = std::string(default_name);

    size_t ni = 0;
    for (const YAML::Node& n : r.maps(root, "networks")) {
      RawNetwork rn;
      std::string fallback = "networks[" + std::to_string(ni++) + "]";
      rn.name = r.scalar(n, "name", fallback, true);
      rn.label = labelFor("network", rn.name, fallback);
      r.unknownKeys(n, rn.label, {"name", "cidr", "endpoint", "subnets"});
      rn.cidr = r.scalar(n, "cidr", rn.label, true);
      if (n["endpoint"] && !n["endpoint"].IsNull())
        rn.endpoint = r.scalar(n, "endpoint", rn.label, false);
      size_t si = 0;
      YAML::Node subs = n["subnets"];
      if (!subs || subs.IsNull() || (subs.IsSequence() && subs.size() == 0)) {
        r.problems.push_back(rn.label + ": needs at least one subnet, e.g. subnets: [{name: " +
                             (rn.name.empty() ? std::string("a") : rn.name + "-a") +
                             ", cidr: ...}]");
      } else if (!subs.IsSequence()) {
        r.problems.push_back(rn.label + ": 'subnets' must be a list");
      } else {
        for (const YAML::Node& s : subs) {
          std::string sfallback = rn.label + " subnets[" + std::to_string(si++) + "]";
          if (!s.IsMap()) {
            r.problems.push_back(sfallback + ": must be a map such as {name: ..., cidr: ...}");
            continue;
          }
          RawSubnet rs;
          rs.name = r.scalar(s, "name", sfallback, true);
          rs.label = labelFor("subnet", rs.name, sfallback);
          r.unknownKeys(s, rs.label, {"name", "cidr", "zone"});
          rs.cidr = r.scalar(s, "cidr", rs.label, true);
          rs.zone = r.scalar(s, "zone", rs.label, false);
          rn.subnets.push_back(std::move(rs));
        }
      }
      raw_networks.push_back(std::move(rn));
    }
    if (!root["networks"] || raw_networks.empty())
      r.problems.push_back("top level: 'networks' is required and must list at least one network");

    size_t pi = 0;
    for (const YAML::Node& p : r.maps(root, "peerings")) {
      RawPeering rp;
      rp.label = "peerings[" + std::to_string(pi++) + "]";
      r.unknownKeys(p, rp.label, {"between"});
      rp.between = r.scalarList(p, "between", rp.label);
      raw_peerings.push_back(std::move(rp));
    }

    size_t hi = 0;
    for (const YAML::Node& h : r.maps(root, "hosts")) {
      RawHost rh;
      std::string fallback = "hosts[" + std::to_string(hi++) + "]";
      rh.name = r.scalar(h, "name", fallback, true);
      rh.label = labelFor("host", rh.name, fallback);
      r.unknownKeys(h, rh.label, {"name", "subnet", "address", "run"});
      rh.subnet = r.scalar(h, "subnet", rh.label, true);
      if (h["address"] && !h["address"].IsNull())
        rh.address = r.scalar(h, "address", rh.label, false);
      if (h["run"] && h["run"].IsScalar())
        r.problems.push_back(rh.label +
                             ": 'run' is an argv list (no shell), e.g. run: [python3, app.py]; "
                             "for a shell line write run: [sh, -c, \"...\"]");
      else
        rh.run = r.scalarList(h, "run", rh.label);
      if (h["run"] && h["run"].IsSequence() && h["run"].size() == 0)
        r.problems.push_back(rh.label + ": 'run' is empty; drop it or give a command");
      raw_hosts.push_back(std::move(rh));
    }

    if (YAML::Node cp = root["control_plane"]; cp && !cp.IsNull()) {
      if (!cp.IsMap()) {
        r.problems.push_back("control_plane: must be a map such as {register_networks: true}");
      } else {
        r.unknownKeys(cp, "control_plane", {"register_networks", "dns_search"});
        if (cp["register_networks"] && !cp["register_networks"].IsNull()) {
          bool b = false;
          if (!cp["register_networks"].IsScalar() ||
              !YAML::convert<bool>::decode(cp["register_networks"], b))
            r.problems.push_back("control_plane: register_networks must be true or false");
          t.control_plane.register_networks = b;
        }
        t.control_plane.dns_search = r.scalarList(cp, "dns_search", "control_plane");
      }
    }
  } catch (const std::exception& e) {  // yaml-cpp throws on odd trees; never escapes
    r.problems.push_back(std::string("could not read the file: ") + e.what());
  }

  std::vector<std::string>& problems = r.problems;
  Checker c{problems};

  if (std::string p = nameProblem(t.name, kMaxLabName); !p.empty())
    problems.push_back("lab name \"" + t.name + "\" " + p +
                       " (set `name:` in the file or use --name)");

  // Names: unique across networks, subnets and hosts (hosts and networks both become
  // namespaces; one namespace of names keeps messages unambiguous).
  std::map<std::string, std::string> names;  // name -> label of its first user
  auto claimName = [&](const std::string& name, const std::string& label) {
    if (name.empty()) return false;
    if (std::string p = nameProblem(name, kMaxEntityName); !p.empty()) {
      problems.push_back(label + ": the name " + p);
      return false;
    }
    auto [it, fresh] = names.emplace(name, label);
    if (!fresh) {
      problems.push_back(label + ": the name \"" + name + "\" is already used by " + it->second +
                         "; every network, subnet and host needs its own name");
      return false;
    }
    return true;
  };

  if (raw_networks.size() > kMaxNetworks)
    problems.push_back("top level: at most " + std::to_string(kMaxNetworks) + " networks");
  if (raw_hosts.size() > kMaxHosts)
    problems.push_back("top level: at most " + std::to_string(kMaxHosts) + " hosts");

  // Networks and subnets.
  for (const RawNetwork& rn : raw_networks) {
    claimName(rn.name, rn.label);
    Network n;
    n.name = rn.name;
    std::optional<Ipv4Net> cidr =
        rn.cidr.empty() ? std::nullopt : c.labCidr(rn.cidr, rn.label, "cidr");
    if (cidr) {
      n.cidr = *cidr;
      for (const Network& other : t.networks) {
        if (other.cidr.len == 0 || !other.cidr.overlaps(*cidr)) continue;
        problems.push_back(rn.label + ": cidr " + cidr->str() + " overlaps network " + other.name +
                           " (" + other.cidr.str() +
                           "); networks must not overlap: give each its own range, e.g. "
                           "198.18.0.0/16 and 198.19.0.0/16");
      }
    }
    if (rn.subnets.size() > kMaxSubnetsPerNetwork)
      problems.push_back(rn.label + ": at most " + std::to_string(kMaxSubnetsPerNetwork) +
                         " subnets");
    for (const RawSubnet& rs : rn.subnets) {
      claimName(rs.name, rs.label);
      Subnet s;
      s.name = rs.name;
      s.zone = rs.zone;
      if (!rs.zone.empty() && !nameProblem(rs.zone, kMaxEntityName).empty())
        problems.push_back(rs.label + ": zone \"" + rs.zone +
                           "\" may hold only lowercase letters, digits and '-' (e.g. us-west-2a)");
      std::optional<Ipv4Net> scidr =
          rs.cidr.empty() ? std::nullopt : c.labCidr(rs.cidr, rs.label, "cidr");
      if (scidr) {
        s.cidr = *scidr;
        s.gateway = scidr->base + 1;
        if (cidr && !cidr->contains(*scidr)) {
          problems.push_back(rs.label + ": cidr " + scidr->str() + " is not inside its network " +
                             rn.name + " (" + cidr->str() + "); pick a range inside " +
                             cidr->str() + " or move the subnet to the network that holds it");
        }
        for (const Subnet& other : n.subnets) {
          if (other.cidr.len == 0 || !other.cidr.overlaps(*scidr)) continue;
          problems.push_back(rs.label + ": cidr " + scidr->str() + " overlaps subnet " +
                             other.name + " (" + other.cidr.str() +
                             ") of the same network; subnets must not overlap");
        }
      } else {
        s.cidr = Ipv4Net{};  // len 0 marks "unusable" for later checks
      }
      n.subnets.push_back(std::move(s));
    }

    // The endpoint and the router's address.
    if (cidr) {
      std::optional<uint32_t> endpoint;
      if (rn.endpoint) {
        auto e = parseIpv4(*rn.endpoint);
        if (!e)
          problems.push_back(rn.label + ": endpoint " + e.error().message);
        else
          endpoint = *e;
      } else {
        endpoint = cidr->last() - 1;
      }
      if (endpoint) {
        uint32_t e = *endpoint;
        std::string es = formatIpv4(e);
        if (!cidr->contains(e) || e == cidr->base || e == cidr->last()) {
          problems.push_back(rn.label + ": endpoint " + es + " must be a usable address of " +
                             cidr->str() + " (default: the last usable one, " +
                             formatIpv4(cidr->last() - 1) + ")");
        } else if (e - 1 == cidr->base) {
          problems.push_back(rn.label + ": endpoint " + es +
                             " leaves no room for the router's address (the endpoint minus one); "
                             "pick a higher address");
        } else {
          bool clash = false;
          for (const Subnet& s : n.subnets) {
            if (s.cidr.len == 0) continue;
            if (s.cidr.contains(e) || s.cidr.contains(e - 1)) {
              problems.push_back(rn.label + ": endpoint " + es + " (or the router's address " +
                                 formatIpv4(e - 1) + ") lies inside subnet " + s.name + " (" +
                                 s.cidr.str() +
                                 "); the endpoint pair must be outside every subnet: set "
                                 "`endpoint:` to a free address of " +
                                 cidr->str() + " or shrink the subnet");
              clash = true;
            }
          }
          if (!clash) {
            n.endpoint = e;
            n.router = e - 1;
          }
        }
      }
    }
    t.networks.push_back(std::move(n));
  }

  // Peerings.
  std::set<std::pair<std::string, std::string>> seen_peerings;
  for (const RawPeering& rp : raw_peerings) {
    if (rp.between.size() != 2) {
      problems.push_back(rp.label +
                         ": 'between' must name exactly two networks, e.g. "
                         "between: [vpc1, vpc2]");
      continue;
    }
    const std::string& a = rp.between[0];
    const std::string& b = rp.between[1];
    bool ok = true;
    for (const std::string& x : {a, b}) {
      if (t.findNetwork(x) == nullptr) {
        std::string known;
        for (const Network& n : t.networks) known += (known.empty() ? "" : ", ") + n.name;
        problems.push_back(rp.label + ": unknown network \"" + x + "\" (networks: " + known + ")");
        ok = false;
      }
    }
    if (!ok) continue;
    if (a == b) {
      problems.push_back(rp.label + ": a network cannot be peered with itself (" + a + ")");
      continue;
    }
    auto key = std::minmax(a, b);
    if (!seen_peerings.emplace(key.first, key.second).second) {
      problems.push_back(rp.label + ": " + a + " and " + b +
                         " are already peered by an earlier entry; list each peering once");
      continue;
    }
    t.peerings.push_back(Peering{a, b});
  }

  // Hosts: first the explicit addresses, then the rest take the next free address of their
  // subnet (from the fifth address on: AWS keeps the first four and the last).
  std::map<uint32_t, std::string> taken;  // address -> host label
  std::vector<Host> hosts;
  std::vector<bool> resolved(raw_hosts.size(), false);
  for (size_t i = 0; i < raw_hosts.size(); ++i) {
    const RawHost& rh = raw_hosts[i];
    claimName(rh.name, rh.label);
    Host h;
    h.name = rh.name;
    h.subnet = rh.subnet;
    h.run = rh.run;
    hosts.push_back(h);
    if (rh.subnet.empty()) continue;
    const Network* net = nullptr;
    const Subnet* s = t.findSubnet(rh.subnet, &net);
    if (s == nullptr) {
      std::string known;
      for (const Network& n : t.networks)
        for (const Subnet& sub : n.subnets) known += (known.empty() ? "" : ", ") + sub.name;
      problems.push_back(rh.label + ": unknown subnet \"" + rh.subnet +
                         "\" (subnets: " + (known.empty() ? "none" : known) + ")");
      continue;
    }
    hosts.back().network = net->name;
    if (s->cidr.len == 0) continue;  // its subnet's CIDR is already reported
    if (!rh.address) continue;
    auto a = parseIpv4(*rh.address);
    if (!a) {
      problems.push_back(rh.label + ": address " + a.error().message);
      continue;
    }
    std::string as = formatIpv4(*a);
    if (!s->cidr.contains(*a)) {
      problems.push_back(rh.label + ": address " + as + " is outside its subnet " + s->name + " (" +
                         s->cidr.str() + "); pick an address inside " + s->cidr.str() +
                         " or drop `address:` to take the next free one");
      continue;
    }
    if (*a - s->cidr.base < 4 || *a == s->cidr.last()) {
      problems.push_back(rh.label + ": address " + as + " is reserved in subnet " + s->name +
                         " (the first four addresses and the last are, as in AWS; " +
                         formatIpv4(s->gateway) + " is the gateway); use " +
                         formatIpv4(s->cidr.base + 4) + " to " + formatIpv4(s->cidr.last() - 1));
      continue;
    }
    if (auto [it, fresh] = taken.emplace(*a, rh.label); !fresh) {
      problems.push_back(rh.label + ": address " + as + " is already taken by " + it->second +
                         "; give each host its own address or drop `address:`");
      continue;
    }
    hosts.back().address = *a;
    resolved[i] = true;
  }
  for (size_t i = 0; i < raw_hosts.size(); ++i) {
    const RawHost& rh = raw_hosts[i];
    if (resolved[i] || rh.address || hosts[i].network.empty()) continue;
    const Subnet* s = t.findSubnet(rh.subnet);
    if (s == nullptr || s->cidr.len == 0) continue;
    uint32_t a = s->cidr.base + 4;
    while (a < s->cidr.last() && taken.count(a)) ++a;
    if (a >= s->cidr.last()) {
      problems.push_back(rh.label + ": subnet " + s->name + " (" + s->cidr.str() +
                         ") has no free address left; use a larger subnet or move the host");
      continue;
    }
    taken.emplace(a, rh.label);
    hosts[i].address = a;
  }
  t.hosts = std::move(hosts);

  for (const std::string& d : t.control_plane.dns_search) {
    bool ok = !d.empty() && d.size() <= 253;
    for (char ch : d)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.')) ok = false;
    if (!ok)
      problems.push_back("control_plane: dns_search \"" + d +
                         "\" is not a DNS domain (e.g. appmeshworkshop.hosted.local)");
  }

  if (!problems.empty()) {
    std::string msg = std::to_string(problems.size()) +
                      (problems.size() == 1 ? " problem" : " problems") + " in the topology:";
    for (const std::string& p : problems) msg += "\n  - " + p;
    return makeError(msg);
  }
  return t;
}

std::string topologyToJson(const Topology& t) {
  std::string o = "{\"name\":" + jsonString(t.name) + ",\"networks\":[";
  for (size_t i = 0; i < t.networks.size(); ++i) {
    const Network& n = t.networks[i];
    if (i) o += ',';
    o += "{\"name\":" + jsonString(n.name) + ",\"cidr\":" + jsonString(n.cidr.str()) +
         ",\"endpoint\":" + jsonString(formatIpv4(n.endpoint)) + ",\"subnets\":[";
    for (size_t j = 0; j < n.subnets.size(); ++j) {
      const Subnet& s = n.subnets[j];
      if (j) o += ',';
      o += "{\"name\":" + jsonString(s.name) + ",\"cidr\":" + jsonString(s.cidr.str());
      if (!s.zone.empty()) o += ",\"zone\":" + jsonString(s.zone);
      o += '}';
    }
    o += "]}";
  }
  o += "],\"peerings\":[";
  for (size_t i = 0; i < t.peerings.size(); ++i) {
    if (i) o += ',';
    o += "{\"between\":[" + jsonString(t.peerings[i].a) + "," + jsonString(t.peerings[i].b) + "]}";
  }
  o += "],\"hosts\":[";
  for (size_t i = 0; i < t.hosts.size(); ++i) {
    const Host& h = t.hosts[i];
    if (i) o += ',';
    o += "{\"name\":" + jsonString(h.name) + ",\"subnet\":" + jsonString(h.subnet) +
         ",\"address\":" + jsonString(formatIpv4(h.address));
    if (!h.run.empty()) {
      o += ",\"run\":[";
      for (size_t j = 0; j < h.run.size(); ++j) o += (j ? "," : "") + jsonString(h.run[j]);
      o += ']';
    }
    o += '}';
  }
  o += "],\"control_plane\":{\"register_networks\":";
  o += t.control_plane.register_networks ? "true" : "false";
  o += ",\"dns_search\":[";
  for (size_t i = 0; i < t.control_plane.dns_search.size(); ++i)
    o += (i ? "," : "") + jsonString(t.control_plane.dns_search[i]);
  o += "]}}";
  return o;
}

Status checkPeering(const Topology& t, std::string_view a, std::string_view b, bool want_peered) {
  for (std::string_view x : {a, b}) {
    if (t.findNetwork(x) != nullptr) continue;
    std::string known;
    for (const Network& n : t.networks) known += (known.empty() ? "" : ", ") + n.name;
    return makeError("lab " + t.name + " has no network \"" + std::string(x) +
                     "\" (networks: " + known + ")");
  }
  if (a == b) return makeError("a network cannot be peered with itself (" + std::string(a) + ")");
  bool peered = t.peered(a, b);
  if (want_peered && !peered)
    return makeError(std::string(a) + " and " + std::string(b) + " are not peered");
  if (!want_peered && peered)
    return makeError(std::string(a) + " and " + std::string(b) + " are already peered");
  return {};
}

}  // namespace weft::lab
