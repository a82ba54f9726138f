#include "control/registry/registry_snapshot.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <unordered_map>

#include "control/registry/dns_message.h"
#include "control/stacks/json_value.h"

namespace weft::control::registry {
namespace {

using stacks::Value;

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string_view str(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? m->str() : std::string_view();
}

int64_t num(const Value& v, std::string_view key, int64_t fallback) {
  const Value* m = v.find(key);
  if (!m || !m->isNumber()) return fallback;
  return std::strtoll(m->text().c_str(), nullptr, 10);
}

void addAncestors(DnsZone& zone, const std::string& rel) {
  std::string_view r = rel;
  while (!r.empty()) {
    zone.existing.emplace(r);
    size_t dot = r.find('.');
    if (dot == std::string_view::npos) break;
    r.remove_prefix(dot + 1);
  }
}

}  // namespace

const std::pair<uint16_t, uint32_t>* DnsService::record(uint16_t type) const {
  for (const auto& r : records)
    if (r.first == type) return &r;
  return nullptr;
}

std::vector<const DnsInstance*> DnsService::answerable() const {
  std::vector<const DnsInstance*> out;
  for (const auto& i : instances)
    if (i.health != Health::kUnhealthy) out.push_back(&i);
  if (out.empty())
    for (const auto& i : instances) out.push_back(&i);
  return out;
}

const DnsZone* Snapshot::findZone(const std::string& qname) const {
  const DnsZone* best = nullptr;
  for (const auto& z : zones) {
    bool inside = qname == z.name ||
                  (qname.size() > z.name.size() && qname[qname.size() - z.name.size() - 1] == '.' &&
                   qname.compare(qname.size() - z.name.size(), z.name.size(), z.name) == 0);
    if (inside && (!best || z.name.size() > best->name.size())) best = &z;
  }
  return best;
}

struct SnapshotBuilder::Cache {
  struct Parsed {
    int64_t revision = 0;
    std::optional<Value> value;  // nullopt: not a JSON object (skipped)
  };
  std::unordered_map<std::string, Parsed> by_key;
};

SnapshotBuilder::SnapshotBuilder() : cache_(std::make_unique<Cache>()) {}
SnapshotBuilder::~SnapshotBuilder() = default;

std::shared_ptr<const Snapshot> buildSnapshot(const std::vector<KeyValue>& kvs, uint32_t serial) {
  return SnapshotBuilder().build(kvs, serial);
}

std::shared_ptr<const Snapshot> SnapshotBuilder::build(const std::vector<KeyValue>& kvs,
                                                       uint32_t serial) {
  auto snap = std::make_shared<Snapshot>();
  // Parse only what changed since the last build; keys gone from the listing leave the cache.
  std::unordered_map<std::string, Cache::Parsed> next;
  next.reserve(kvs.size());
  std::map<std::string, const Value*> networks, namespaces, services;
  std::map<std::string, std::vector<const Value*>> instances;  // by service id
  int64_t max_rev = 1;
  for (const auto& kv : kvs) {
    std::string_view key = kv.key;
    bool wanted = false;
    for (const char* p : kSnapshotPrefixes) wanted = wanted || startsWith(key, p);
    if (!wanted) continue;
    max_rev = std::max(max_rev, kv.revision);
    Cache::Parsed parsed;
    auto old = cache_->by_key.find(kv.key);
    if (old != cache_->by_key.end() && old->second.revision == kv.revision) {
      parsed = std::move(old->second);
    } else {
      parsed.revision = kv.revision;
      if (auto v = stacks::parseJson(kv.value); v && v->isObject()) parsed.value = std::move(*v);
    }
    auto [it, inserted] = next.emplace(kv.key, std::move(parsed));
    if (!it->second.value) continue;
    const Value* v = &*it->second.value;
    if (startsWith(key, "registry/networks/")) {
      networks[std::string(key.substr(18))] = v;
    } else if (startsWith(key, "registry/namespaces/")) {
      namespaces[std::string(key.substr(20))] = v;
    } else if (startsWith(key, "registry/services/")) {
      services[std::string(key.substr(18))] = v;
    } else {
      std::string_view rest = key.substr(19);
      size_t slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      instances[std::string(rest.substr(0, slash))].push_back(v);
    }
  }
  snap->serial = serial ? serial : static_cast<uint32_t>(max_rev);

  std::map<std::string, size_t> zone_of_ns;
  for (const auto& [id, ns_ptr] : namespaces) {
    const Value& ns = *ns_ptr;
    std::string_view type = str(ns, "Type");
    if (type != "DNS_PRIVATE" && type != "DNS_PUBLIC") continue;
    DnsZone z;
    z.name = dns::lowerAscii(str(ns, "Name"));
    while (!z.name.empty() && z.name.back() == '.') z.name.pop_back();
    z.namespace_id = id;
    z.is_private = type == "DNS_PRIVATE";
    if (const Value* props = ns.find("Properties"))
      if (const Value* dp = props->find("DnsProperties"))
        if (const Value* soa = dp->find("SOA"))
          z.soa_ttl = static_cast<uint32_t>(num(*soa, "TTL", 15));
    if (const Value* vpcs = ns.find("Vpcs"); vpcs && vpcs->isArray()) {
      for (const Value& v : vpcs->items()) {
        auto net = networks.find(std::string(v.str()));
        if (net == networks.end()) continue;
        if (const Value* cidrs = net->second->find("Cidrs"); cidrs && cidrs->isArray())
          for (const Value& c : cidrs->items())
            if (auto cidr = net::parseCidr(c.str())) z.cidrs.push_back(*cidr);
      }
    }
    zone_of_ns[id] = snap->zones.size();
    snap->zones.push_back(std::move(z));
  }

  for (const auto& [id, svc_ptr] : services) {
    const Value& svc = *svc_ptr;
    auto zi = zone_of_ns.find(std::string(str(svc, "NamespaceId")));
    const Value* dns_config = svc.find("DnsConfig");
    if (zi == zone_of_ns.end() || !dns_config) continue;
    DnsZone& zone = snap->zones[zi->second];
    DnsService s;
    s.name = dns::lowerAscii(str(svc, "Name"));
    s.weighted = str(*dns_config, "RoutingPolicy") == "WEIGHTED";
    if (const Value* recs = dns_config->find("DnsRecords"); recs && recs->isArray()) {
      for (const Value& r : recs->items()) {
        std::string_view t = str(r, "Type");
        uint16_t type = t == "A"       ? dns::kTypeA
                        : t == "AAAA"  ? dns::kTypeAaaa
                        : t == "SRV"   ? dns::kTypeSrv
                        : t == "CNAME" ? dns::kTypeCname
                                       : 0;
        int64_t ttl = num(r, "TTL", 60);
        if (type)
          s.records.emplace_back(type,
                                 static_cast<uint32_t>(std::clamp<int64_t>(ttl, 0, 2147483647)));
      }
    }
    for (const Value* inst_ptr : instances[id]) {
      const Value& inst = *inst_ptr;
      DnsInstance di;
      di.id = dns::lowerAscii(str(inst, "Id"));
      std::string_view health = str(inst, "HealthStatus");
      di.health = health == "HEALTHY"     ? Health::kHealthy
                  : health == "UNHEALTHY" ? Health::kUnhealthy
                                          : Health::kUnknown;
      if (const Value* attrs = inst.find("Attributes")) {
        unsigned char buf[16];
        std::string v4(str(*attrs, "AWS_INSTANCE_IPV4")), v6(str(*attrs, "AWS_INSTANCE_IPV6"));
        if (!v4.empty() && inet_pton(AF_INET, v4.c_str(), buf) == 1)
          di.ipv4.assign(reinterpret_cast<char*>(buf), 4);
        if (!v6.empty() && inet_pton(AF_INET6, v6.c_str(), buf) == 1)
          di.ipv6.assign(reinterpret_cast<char*>(buf), 16);
        std::string port(str(*attrs, "AWS_INSTANCE_PORT"));
        if (!port.empty()) di.port = static_cast<uint16_t>(std::strtoul(port.c_str(), nullptr, 10));
        di.cname = dns::lowerAscii(str(*attrs, "AWS_INSTANCE_CNAME"));
        while (!di.cname.empty() && di.cname.back() == '.') di.cname.pop_back();
      }
      s.instances.push_back(std::move(di));
    }
    std::string name = s.name;
    auto [it, inserted] = zone.services.emplace(name, std::move(s));
    if (!inserted) continue;
    addAncestors(zone, name);
    for (size_t i = 0; i < it->second.instances.size(); ++i) {
      std::string host = it->second.instances[i].id + "." + name;
      zone.instance_hosts[host] = {&it->second, i};
      addAncestors(zone, host);
    }
  }
  cache_->by_key = std::move(next);
  return snap;
}

}  // namespace weft::control::registry
