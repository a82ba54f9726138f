#include "control/push/config_delta.h"

#include <google/protobuf/util/message_differencer.h>

namespace weft::control::push {

using google::protobuf::util::MessageDifferencer;

std::optional<std::vector<v1::ClusterEndpoints>> endpointsDelta(const v1::ProxyConfig& base,
                                                                const v1::ProxyConfig& next) {
  if (base.clusters_size() != next.clusters_size()) return std::nullopt;
  // Equal once the STATIC clusters' endpoints are blanked out: only endpoints differ.
  v1::ProxyConfig a = base, b = next;
  for (int i = 0; i < a.clusters_size(); ++i) {
    if (a.clusters(i).type() != v1::Cluster::STATIC || b.clusters(i).type() != v1::Cluster::STATIC)
      continue;
    a.mutable_clusters(i)->clear_endpoints();
    b.mutable_clusters(i)->clear_endpoints();
  }
  if (!MessageDifferencer::Equals(a, b)) return std::nullopt;
  std::vector<v1::ClusterEndpoints> out;
  for (int i = 0; i < next.clusters_size(); ++i) {
    const v1::Cluster& was = base.clusters(i);
    const v1::Cluster& now = next.clusters(i);
    bool same = was.endpoints_size() == now.endpoints_size();
    for (int e = 0; same && e < now.endpoints_size(); ++e)
      same = MessageDifferencer::Equals(was.endpoints(e), now.endpoints(e));
    if (same) continue;
    v1::ClusterEndpoints ce;
    ce.set_cluster(now.name());
    *ce.mutable_endpoints() = now.endpoints();
    out.push_back(std::move(ce));
  }
  return out;
}

v1::ServerMessage makeUpdate(const v1::ProxyConfig* base, const v1::ProxyConfig& next,
                             const std::string& next_hash, uint64_t version) {
  v1::ServerMessage m;
  if (base != nullptr) {
    if (auto delta = endpointsDelta(*base, next)) {
      v1::EndpointsUpdate* u = m.mutable_endpoints();
      u->set_version(version);
      for (auto& ce : *delta) *u->add_clusters() = std::move(ce);
      u->set_hash(next_hash);
      return m;
    }
  }
  v1::ConfigUpdate* u = m.mutable_config();
  u->set_version(version);
  *u->mutable_config() = next;
  u->set_hash(next_hash);
  return m;
}

}  // namespace weft::control::push
