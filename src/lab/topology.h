#pragma once
// A lab's topology: networks ("VPCs") with subnets, hosts in subnets, peerings between
// networks, and how the networks reach the control plane. parseTopology() reads the YAML file
// (schema in docs/lab.md), checks it and fills every default (gateways, endpoint addresses,
// host addresses), so what comes out is complete and consistent. Pure: no syscalls, no files.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "lab/ipv4.h"

namespace weft::lab {

struct Subnet {
  std::string name;
  Ipv4Net cidr;
  std::string zone;      // "us-west-2a"; may be empty
  uint32_t gateway = 0;  // the first address after the network address; the router holds it
};

struct Network {
  std::string name;
  Ipv4Net cidr;
  // The control-plane endpoint: an address of `cidr` outside every subnet, held by the root
  // namespace (default: the last usable address of `cidr`). `router` is endpoint - 1, the
  // router namespace's own address, on the endpoint link and the peering links.
  uint32_t endpoint = 0;
  uint32_t router = 0;
  std::vector<Subnet> subnets;
};

struct Host {
  std::string name;
  std::string network;  // the network of `subnet`
  std::string subnet;
  uint32_t address = 0;
  // Started in the host's namespace by `weft lab up` (argv, no shell), stopped by `down`;
  // empty: nothing runs.
  std::vector<std::string> run;
};

struct Peering {
  std::string a, b;  // network names, as written
};

struct ControlPlane {
  bool register_networks = false;       // `up` registers each network with `weft server`
  std::vector<std::string> dns_search;  // the `search` line of every host's resolv.conf
};

struct Topology {
  std::string name;
  std::vector<Network> networks;
  std::vector<Peering> peerings;
  std::vector<Host> hosts;
  ControlPlane control_plane;

  const Network* findNetwork(std::string_view name) const;
  int networkIndex(std::string_view name) const;  // -1 when absent
  // The subnet called `name` and the network holding it (nullptr when absent).
  const Subnet* findSubnet(std::string_view name, const Network** network = nullptr) const;
  const Host* findHost(std::string_view name) const;
  bool peered(std::string_view a, std::string_view b) const;
};

inline constexpr size_t kMaxLabName = 24;
inline constexpr size_t kMaxEntityName = 32;
inline constexpr size_t kMaxNetworks = 99;
inline constexpr size_t kMaxSubnetsPerNetwork = 99;
inline constexpr size_t kMaxHosts = 999;

// Lab, network, subnet and host names: lowercase letters, digits and '-', starting and ending
// with a letter or digit (they become parts of namespace names).
Status validateLabName(std::string_view name);

// Parses and checks a topology file's text (YAML; JSON is YAML too). `default_name` names the
// lab when the file has no `name:`. Every problem found is reported in one error, one line per
// problem, each naming the offending entry and how to fix it.
Result<Topology> parseTopology(std::string_view text, std::string_view default_name);

// The topology in the file's own schema with every default written out (addresses, gateways
// are implied), as one line of JSON. parseTopology() of it gives back the same topology.
std::string topologyToJson(const Topology& t);

// Checks that `a` and `b` name two different networks of `t` and whether they are peered
// already (`want_peered` false: refuses an existing peering; true: refuses a missing one).
Status checkPeering(const Topology& t, std::string_view a, std::string_view b, bool want_peered);

}  // namespace weft::lab
