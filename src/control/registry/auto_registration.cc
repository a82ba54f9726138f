#include "control/registry/auto_registration.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>

#include "aws/appmesh/v20190125/records.pb.h"
#include "common/log.h"
#include "control/compile/registry_hostname.h"
#include "control/model/resource_keys.h"

namespace weft::control::registry {
namespace {

constexpr const char* kLog = "registry";
namespace am = ::aws::appmesh::v20190125;

bool isIp(int family, const std::string& text) {
  unsigned char buf[16];
  return inet_pton(family, text.c_str(), buf) == 1;
}

// Cloud Map's instance id alphabet: letters, digits and _/:.@-
std::string instanceIdPart(std::string_view text) {
  std::string out;
  for (char c : text)
    out.push_back(std::isalnum(static_cast<unsigned char>(c)) ||
                          std::string_view("_/:.@-").find(c) != std::string_view::npos
                      ? c
                      : '-');
  return out;
}

const char* healthName(push::AppHealth h) {
  return h == push::AppHealth::kHealthy     ? "HEALTHY"
         : h == push::AppHealth::kUnhealthy ? "UNHEALTHY"
                                            : "";
}

}  // namespace

struct AutoRegistration::Target {
  std::string service_id, instance_id;
  std::map<std::string, std::string> attributes;
  uint32_t port = 0;
  std::string where;  // "service S in namespace N", for logs
};

struct AutoRegistration::Stream {
  push::ConnectedProxy proxy;
  std::string instance_key;  // "" until its instance is known
  std::string last_problem;  // why it has none (logged once per distinct reason)
};

struct AutoRegistration::Instance {
  std::string service_id, instance_id;
  std::map<std::string, std::string> attributes;  // without weft:auto; empty when adopted
  uint32_t port = 0;
  std::set<uint64_t> streams;  // open streams of proxies that feed it
  MonoTime last_seen{};        // last Hello, report or stream end
  bool present = false;        // its record (ours) is in the store
  bool stale = false;          // marked UNHEALTHY for lack of news
  std::string written;         // the HealthStatus last written ("" = the service's default)
  std::string reported;        // the last HEALTHY/UNHEALTHY a proxy reported
};

AutoRegistration::AutoRegistration(Store& store, RegistryApi& registry, const TimeSource& time)
    : store_(store), registry_(registry), time_(time) {}

AutoRegistration::~AutoRegistration() = default;

std::optional<AutoRegistration::Target> AutoRegistration::targetOf(
    const push::ConnectedProxy& proxy) {
  Stream& s = *streams_.at(proxy.stream_id);
  auto problem = [&](std::string why) -> std::optional<Target> {
    if (why != s.last_problem)
      log::info(kLog,
                "not registering " + proxy.who.resource() + " (host " + proxy.host + "): " + why);
    s.last_problem = std::move(why);
    return std::nullopt;
  };
  std::string key =
      appmesh::resourceKey({appmesh::Kind::kVirtualNode, proxy.who.mesh, "", proxy.who.name});
  auto kv = store_.get(key);
  if (!kv) return problem("reading the virtual node: " + kv.error().message);
  if (!kv->has_value()) return problem("the virtual node does not exist (yet)");
  am::StoredResource rec;
  google::protobuf::util::JsonParseOptions po;
  po.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage((*kv)->value, &rec, po).ok())
    return problem("the virtual node's record is not readable");
  const am::VirtualNodeSpec& spec = rec.virtualnode().spec();
  Target t;
  if (spec.listeners_size() > 0)
    t.port = static_cast<uint32_t>(spec.listeners(0).portmapping().port());
  std::string ns, service;
  bool by_hostname = false;  // a DNS hostname names a service only in a private DNS namespace
  if (spec.servicediscovery().has_awscloudmap()) {
    const auto& cm = spec.servicediscovery().awscloudmap();
    ns = cm.namespacename();
    service = cm.servicename();
    for (const auto& a : cm.attributes()) t.attributes[a.key()] = a.value();
  } else if (spec.servicediscovery().has_dns()) {
    // The same split the compiler uses to feed callers from the registry.
    const std::string& host = spec.servicediscovery().dns().hostname();
    auto split = compile::splitRegistryHostname(host);
    if (!split)
      return problem("its DNS hostname '" + host + "' is not inside a registry namespace");
    service = split->service;
    ns = split->namespace_name;
    by_hostname = true;
  } else {
    return problem("the virtual node has no service discovery");
  }
  auto sid = registry_.findService(ns, service, /*private_dns_only=*/by_hostname);
  if (!sid) return problem("looking up the service: " + sid.error().message);
  if (!sid->has_value())
    return problem("no registry service '" + service + "' in a " +
                   (by_hostname ? "private DNS " : "") + "namespace '" + ns + "'");
  t.service_id = **sid;
  t.where = "service " + service + " (" + t.service_id + ") in " + ns;
  std::string address;
  for (const std::string& a : proxy.addresses)
    if (isIp(AF_INET, a)) {
      address = a;
      break;
    }
  if (!address.empty()) {
    t.attributes["AWS_INSTANCE_IPV4"] = address;
  } else {
    for (const std::string& a : proxy.addresses)
      if (isIp(AF_INET6, a)) {
        address = a;
        break;
      }
    if (address.empty())
      return problem("its Hello names no IP address (weft-proxy --app-address, or an interface)");
    t.attributes["AWS_INSTANCE_IPV6"] = address;
  }
  if (t.port > 0) t.attributes["AWS_INSTANCE_PORT"] = std::to_string(t.port);
  std::string host = instanceIdPart(proxy.host);
  size_t room = 64 - address.size() - 1;
  t.instance_id = host.empty() ? address : host.substr(0, room) + "-" + address;
  return t;
}

void AutoRegistration::write(Instance& inst, std::string_view health) {
  auto r = registry_.putAutoInstance(inst.service_id, inst.instance_id, inst.attributes, health);
  if (!r) {
    log::warn(kLog, "auto-registering " + inst.instance_id + " in " + inst.service_id + ": " +
                        r.error().message);
    return;
  }
  inst.present = *r;
  inst.stale = false;
  inst.written = std::string(health);
}

void AutoRegistration::attach(uint64_t stream_id, Stream& s) {
  auto t = targetOf(s.proxy);
  if (!t) return;
  std::string key = t->service_id + "/" + t->instance_id;
  auto& slot = instances_[key];
  if (!slot) {
    slot = std::make_unique<Instance>();
    slot->service_id = t->service_id;
    slot->instance_id = t->instance_id;
  }
  Instance& inst = *slot;
  inst.attributes = t->attributes;
  inst.port = t->port;
  inst.streams.insert(stream_id);
  inst.last_seen = time_.monotonicNow();
  // Back from a loss: the health the proxy last reported (its next report corrects it).
  std::string health = inst.present && !inst.stale ? inst.written : inst.reported;
  write(inst, health);
  if (!inst.present) {
    std::string why = "not registering " + s.proxy.who.resource() + " as " + inst.instance_id +
                      " of " + t->where +
                      ": an instance of that id was registered through the API (left as is) or "
                      "the write failed";
    if (why != s.last_problem) log::warn(kLog, why);  // once, not at every report
    s.last_problem = std::move(why);
    inst.streams.erase(stream_id);
    if (inst.streams.empty()) instances_.erase(key);
    return;
  }
  s.instance_key = key;
  s.last_problem.clear();
  log::info(kLog, "registered " + inst.instance_id + " (" + s.proxy.who.resource() + ", host " +
                      s.proxy.host + ") in " + t->where);
}

void AutoRegistration::proxyConnected(const push::ConnectedProxy& proxy) {
  std::lock_guard lock(mu_);
  if (proxy.who.kind != appmesh::Kind::kVirtualNode) return;  // gateways have no instance
  auto& s = streams_[proxy.stream_id];
  s = std::make_unique<Stream>();
  s->proxy = proxy;
  attach(proxy.stream_id, *s);
}

void AutoRegistration::proxyHealth(uint64_t stream_id,
                                   const std::vector<std::pair<uint32_t, push::AppHealth>>& ports) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  Stream& s = *it->second;
  if (s.instance_key.empty() || !instances_.count(s.instance_key)) {
    s.instance_key.clear();
    attach(stream_id, s);  // the node or service may exist by now
    if (s.instance_key.empty()) return;
  }
  Instance& inst = *instances_.at(s.instance_key);
  inst.last_seen = time_.monotonicNow();
  // The registered port's state; without one, the worst reported.
  push::AppHealth h = push::AppHealth::kUnknown;
  bool found = false;
  for (const auto& [port, state] : ports)
    if (port == inst.port) {
      h = state;
      found = true;
    }
  if (!found)
    for (const auto& [port, state] : ports)
      if (state == push::AppHealth::kUnhealthy ||
          (state == push::AppHealth::kHealthy && h == push::AppHealth::kUnknown))
        h = state;
  std::string health = healthName(h);
  if (!health.empty()) inst.reported = health;
  if (!inst.present || inst.stale) {
    write(inst, inst.reported);  // re-register, or revive a stale one
    return;
  }
  if (health.empty() || health == inst.written) return;
  auto r = registry_.setAutoInstanceHealth(inst.service_id, inst.instance_id, health);
  if (!r) {
    log::warn(kLog, "updating the health of " + inst.instance_id + ": " + r.error().message);
    return;
  }
  if (!*r) {
    write(inst, health);  // deregistered meanwhile (through the API): the live proxy puts it back
    return;
  }
  log::info(kLog, inst.instance_id + " in " + inst.service_id + " is " + health +
                      " (reported by its proxy)");
  inst.written = health;
}

void AutoRegistration::proxyDisconnected(uint64_t stream_id, bool clean) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  std::string key = it->second->instance_key;
  streams_.erase(it);
  auto i = instances_.find(key);
  if (key.empty() || i == instances_.end()) return;
  Instance& inst = *i->second;
  inst.streams.erase(stream_id);
  if (!inst.streams.empty()) return;
  inst.last_seen = time_.monotonicNow();
  if (!clean) return;  // tick() decides
  auto r = registry_.removeAutoInstance(inst.service_id, inst.instance_id);
  if (!r) {
    log::warn(kLog, "deregistering " + inst.instance_id + ": " + r.error().message +
                        " (retried when it goes stale)");
    return;
  }
  log::info(kLog, "deregistered " + inst.instance_id + " from " + inst.service_id +
                      ": its proxy drained and said goodbye");
  instances_.erase(i);
}

void AutoRegistration::tick(std::chrono::milliseconds stale_after) {
  std::lock_guard lock(mu_);
  const MonoTime now = time_.monotonicNow();
  if (!adopted_) {
    // After a restart: the instances our predecessor registered, as if just lost.
    auto all = registry_.autoInstances();
    if (!all) {
      log::warn(kLog, "listing auto-registered instances: " + all.error().message);
    } else {
      adopted_ = true;
      for (const auto& [sid, iid] : *all) {
        auto& slot = instances_[sid + "/" + iid];
        if (slot) continue;
        slot = std::make_unique<Instance>();
        slot->service_id = sid;
        slot->instance_id = iid;
        slot->present = true;
        slot->last_seen = now;
      }
    }
  }
  for (auto it = instances_.begin(); it != instances_.end();) {
    Instance& inst = *it->second;
    const auto silent = now - inst.last_seen;
    if (inst.present && silent >= 2 * stale_after) {
      auto r = registry_.removeAutoInstance(inst.service_id, inst.instance_id);
      if (!r) {
        log::warn(kLog, "deregistering " + inst.instance_id + ": " + r.error().message);
        ++it;
        continue;
      }
      log::info(kLog, "deregistered " + inst.instance_id + " from " + inst.service_id +
                          ": no news from its proxy for " +
                          std::to_string(
                              std::chrono::duration_cast<std::chrono::seconds>(silent).count()) +
                          " s");
      inst.present = false;
      inst.stale = false;
    } else if (inst.present && !inst.stale && silent >= stale_after) {
      auto r = registry_.setAutoInstanceHealth(inst.service_id, inst.instance_id, "UNHEALTHY");
      if (!r) {
        log::warn(kLog, "marking " + inst.instance_id + " unhealthy: " + r.error().message);
      } else {
        log::info(kLog, inst.instance_id + " in " + inst.service_id +
                            " is UNHEALTHY: no news from its proxy for " +
                            std::to_string(
                                std::chrono::duration_cast<std::chrono::seconds>(silent).count()) +
                            " s");
        inst.stale = true;
        inst.present = *r;
        inst.written = "UNHEALTHY";
      }
    }
    if (!inst.present && inst.streams.empty()) {
      it = instances_.erase(it);
    } else {
      ++it;
    }
  }
}

std::set<std::string> AutoRegistration::managed() const {
  std::lock_guard lock(mu_);
  std::set<std::string> out;
  for (const auto& [key, inst] : instances_)
    if (inst->present) out.insert(key);
  return out;
}

}  // namespace weft::control::registry
