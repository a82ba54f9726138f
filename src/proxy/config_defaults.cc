#include "proxy/config_defaults.h"

namespace weft::proxy {
namespace {

google::protobuf::Duration toDuration(std::chrono::milliseconds ms) {
  google::protobuf::Duration d;
  d.set_seconds(ms.count() / 1000);
  d.set_nanos(static_cast<int32_t>((ms.count() % 1000) * 1'000'000));
  return d;
}

}  // namespace

// Unset durations get their default; explicit values (including "0s") are kept as written.
v1::ProxyConfig withDefaults(v1::ProxyConfig config) {
  if (!config.has_drain_time()) *config.mutable_drain_time() = toDuration(kDefaultDrainTime);
  v1::Admin* admin = config.mutable_admin();
  admin->set_address(adminAddress(*admin));
  admin->set_port(adminPort(*admin));

  for (v1::Listener& l : *config.mutable_listeners()) {
    l.set_address(listenerAddress(l));
    v1::HttpOptions* h = l.mutable_http();
    h->set_max_request_headers_kb(maxRequestHeadersKb(*h));
    if (!h->has_request_timeout())
      *h->mutable_request_timeout() = toDuration(kDefaultRequestTimeout);
    if (!h->has_idle_timeout()) *h->mutable_idle_timeout() = toDuration(kDefaultIdleTimeout);
    h->set_server_name(serverName(*h));
    if (l.has_tls() && l.tls().mode() != v1::ListenerTls::DISABLED && l.tls().alpn().empty()) {
      for (const std::string& p : listenerAlpn(l)) l.mutable_tls()->add_alpn(p);
    }
    for (v1::VirtualHost& vh : *l.mutable_route_config()->mutable_virtual_hosts()) {
      for (v1::Route& r : *vh.mutable_routes()) {
        if (!r.has_route()) continue;
        v1::RouteAction* a = r.mutable_route();
        for (int i = 0; i < a->clusters_size(); ++i) {
          a->mutable_clusters(i)->set_weight(targetWeight(*a, i));
        }
      }
    }
  }

  for (v1::Cluster& c : *config.mutable_clusters()) {
    if (!c.has_connect_timeout()) *c.mutable_connect_timeout() = toDuration(kDefaultConnectTimeout);
    if (!c.has_idle_timeout()) *c.mutable_idle_timeout() = toDuration(kDefaultClusterIdleTimeout);
    if (!c.has_dns_min_refresh()) *c.mutable_dns_min_refresh() = toDuration(kDefaultDnsMinRefresh);
    c.set_max_connections(maxConnections(c));
    c.set_max_pending_requests(maxPendingRequests(c));
  }
  return config;
}

}  // namespace weft::proxy
