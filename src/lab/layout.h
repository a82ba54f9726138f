#pragma once
// The names of everything a lab creates, derived from the lab's name and its topology alone, so
// that `down` can find them again from the state file (or, for the root-namespace objects, from
// the lab's name alone).
//
//   namespaces      <lab>-<network> (the network's router), <lab>-<host>
//   root namespace  <tag>e<i>: the root end of network i's endpoint link; <tag> is "wl" and 8
//                   hex digits of a hash of the lab's name (interface names have 15 characters)
//   router          ep0 (endpoint link), br<k> (subnet k's bridge), h<j> (host j's port on
//                   its subnet's bridge), p<i> (the peering link to network i)
//   host            eth0
//   iptables        root FORWARD rules commented "weft-lab:<lab>"
//   files           /etc/netns/<host namespace>/resolv.conf (ip netns exec mounts it)
//   markers         <state-dir>/<lab>.netns/<namespace>, holding the lab's name: written before
//                   the namespace is created, removed once it is gone. `down` touches only
//                   namespaces journaled in the state file or marked here. (Not under
//                   /etc/netns/<ns>/: `ip netns exec` bind-mounts every file there onto /etc.)

#include <string>
#include <string_view>

namespace weft::lab {

// "wl" + 8 lowercase hex digits (FNV-1a of the name): unique per lab in practice, and
// recomputable from the name.
std::string labTag(std::string_view lab);

inline std::string routerNamespace(std::string_view lab, std::string_view network) {
  return std::string(lab) + "-" + std::string(network);
}
inline std::string hostNamespace(std::string_view lab, std::string_view host) {
  return std::string(lab) + "-" + std::string(host);
}
inline std::string rootEndpointLink(std::string_view tag, size_t network_index) {
  return std::string(tag) + "e" + std::to_string(network_index);
}
inline constexpr std::string_view kRouterEndpointLink = "ep0";
inline constexpr std::string_view kHostLink = "eth0";
inline std::string bridgeLink(size_t subnet_index) { return "br" + std::to_string(subnet_index); }
inline std::string hostPortLink(size_t host_index) { return "h" + std::to_string(host_index); }
inline std::string peeringLink(size_t other_network_index) {
  return "p" + std::to_string(other_network_index);
}
inline std::string iptablesComment(std::string_view lab) { return "weft-lab:" + std::string(lab); }
inline std::string namespaceMarkerDir(std::string_view state_dir, std::string_view lab) {
  return std::string(state_dir) + "/" + std::string(lab) + ".netns";
}
inline constexpr std::string_view kNetnsEtc = "/etc/netns";
inline std::string resolvConfDir(std::string_view host_namespace) {
  return std::string(kNetnsEtc) + "/" + std::string(host_namespace);
}

}  // namespace weft::lab
