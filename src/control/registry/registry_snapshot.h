#pragma once
// An immutable, query-ready view of the registry for the DNS server: the DNS namespaces (zones),
// their services' record configuration and their instances' addresses and health, and the CIDRs
// of the networks each private zone is attached to. Built from a store listing of
// kSnapshotPrefixes after registry writes; readers never touch the store.
//
// Thread-safety: a Snapshot is immutable once published; SnapshotHolder's load/store are atomic,
// so any thread may read the current snapshot while another publishes a new one.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "control/store/store.h"
#include "net/socket.h"

namespace weft::control::registry {

enum class Health { kHealthy, kUnhealthy, kUnknown };

struct DnsInstance {
  std::string id;
  std::string ipv4;   // 4 raw bytes, or empty
  std::string ipv6;   // 16 raw bytes, or empty
  uint16_t port = 0;  // 0: no AWS_INSTANCE_PORT
  std::string cname;  // AWS_INSTANCE_CNAME (lower case, no trailing dot), or empty
  Health health = Health::kUnknown;
};

struct DnsService {
  std::string name;                                    // lower case, relative to the zone
  std::vector<std::pair<uint16_t, uint32_t>> records;  // (dns::RrType, TTL) from DnsConfig
  bool weighted = false;                               // RoutingPolicy WEIGHTED
  std::vector<DnsInstance> instances;                  // in instance id order

  // The TTL of `type` when the service has that record type, else nullopt.
  const std::pair<uint16_t, uint32_t>* record(uint16_t type) const;
  // Healthy (or unknown) instances; all of them when none is (Route 53's rule).
  std::vector<const DnsInstance*> answerable() const;
};

struct DnsZone {
  std::string name;  // lower case, no trailing dot
  std::string namespace_id;
  bool is_private = false;
  std::vector<net::Cidr> cidrs;  // union of the attached networks' CIDRs (private zones)
  uint32_t soa_ttl = 15;
  std::map<std::string, DnsService> services;  // by relative name
  // "<instance-id>.<service>" -> (service, index into its instances): SRV targets.
  std::map<std::string, std::pair<const DnsService*, size_t>> instance_hosts;
  // Every relative name that exists (services, instance hosts and their ancestors inside the
  // zone): a name in here with no records of the asked type is NODATA, not NXDOMAIN.
  std::set<std::string> existing;
};

struct Snapshot {
  uint32_t serial = 1;  // SOA serial: the store revision the snapshot was built at
  std::vector<DnsZone> zones;

  // The zone with the longest name that `qname` (lower case) is inside, or nullptr.
  const DnsZone* findZone(const std::string& qname) const;
};

// The store prefixes a snapshot is built from (the rest of "registry/" — operations, request
// ids, name indexes — never reaches DNS).
inline constexpr const char* kSnapshotPrefixes[] = {"registry/networks/", "registry/namespaces/",
                                                    "registry/services/", "registry/instances/"};

// Builds a snapshot from the store's "registry/" keys (records as RegistryApi writes them); keys
// under other prefixes than kSnapshotPrefixes are ignored. Records that fail to parse are
// skipped (the API never writes such records). `serial` is the SOA serial; 0 takes the highest
// revision among the keys.
std::shared_ptr<const Snapshot> buildSnapshot(const std::vector<KeyValue>& registry_keys,
                                              uint32_t serial = 0);

// buildSnapshot with a memory: records whose (key, revision) it parsed in the previous build are
// not parsed again, so rebuilding after one write costs a listing and a walk, not a parse of the
// whole registry. Not thread-safe: one builder per refreshing thread (RegistryApi serialises).
class SnapshotBuilder {
 public:
  SnapshotBuilder();
  ~SnapshotBuilder();
  std::shared_ptr<const Snapshot> build(const std::vector<KeyValue>& registry_keys,
                                        uint32_t serial = 0);

 private:
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

class SnapshotHolder {
 public:
  SnapshotHolder() : current_(std::make_shared<const Snapshot>()) {}
  std::shared_ptr<const Snapshot> load() const { return current_.load(); }
  void store(std::shared_ptr<const Snapshot> s) { current_.store(std::move(s)); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> current_;
};

}  // namespace weft::control::registry
