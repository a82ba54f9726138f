#pragma once
// What the DNS server answers to one query, as a pure function of the registry snapshot, the
// query bytes and the caller's address (so it is unit-tested without sockets).
//
// Rules (docs/registry.md):
//   * only QUERY (opcode 0) with one IN question; others: FORMERR / NOTIMP;
//   * a name outside every DNS namespace: forwarded when the server has upstream resolvers and
//     the caller may recurse (loopback, or inside a CIDR of a network attached to some private
//     namespace: weft is not an open resolver), else REFUSED. A name inside a zone is never
//     forwarded;
//   * a private namespace answers only callers inside a CIDR of a network it is attached to, or
//     on loopback; others: REFUSED;
//   * inside a namespace: A / AAAA / SRV / CNAME from the service's DnsConfig and its answerable
//     instances (healthy or unknown; all of them when none is), with the service's TTL; the zone
//     apex answers SOA and NS; an existing name without the asked type is NODATA, an unknown one
//     NXDOMAIN, both with the SOA in the authority section;
//   * MULTIVALUE answers up to 8 instances, WEIGHTED one, rotating with `rotation`;
//   * over UDP, an answer larger than 512 bytes (or the EDNS0 size, at most 4096) is replaced by
//     the question alone with TC set, so the client retries over TCP.

#include <cstdint>
#include <string>
#include <string_view>

#include "control/registry/registry_snapshot.h"
#include "net/socket.h"

namespace weft::control::registry {

enum class Transport { kUdp, kTcp };

// What to do with one query.
struct DnsDecision {
  // True: send the query to an upstream resolver (`reply` is empty, `question` and
  // `udp_limit` describe it). False: send `reply` (nothing when empty).
  bool forward = false;
  std::string reply;
  std::string qname;       // the forwarded question (lower case), to match the upstream's answer
  uint16_t qtype = 0;      //
  size_t udp_limit = 512;  // the largest answer the client takes over UDP (EDNS0 size or 512)
};

// Decides on `query`. `forwarding`: the server has upstream resolvers (without them a name
// outside every zone is REFUSED).
DnsDecision decideDnsQuery(const Snapshot& snapshot, std::string_view query,
                           const net::Address& peer, Transport transport, uint64_t rotation,
                           bool forwarding);

// The answer to `query` when nothing is forwarded, or an empty string when nothing must be sent
// (not a query, or too short to carry an id).
std::string answerDnsQuery(const Snapshot& snapshot, std::string_view query,
                           const net::Address& peer, Transport transport, uint64_t rotation);

// An error answer to `query` (a query decideDnsQuery chose to forward): the question echoed,
// with `rcode` (SERVFAIL on an upstream timeout or when too many queries are in flight) and RA.
std::string dnsErrorReply(std::string_view query, uint8_t rcode);

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool isLoopback(const net::Address& a);

}  // namespace weft::control::registry
