#include "control/registry/dns_answer.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "control/registry/dns_message.h"

namespace weft::control::registry {
namespace {

using dns::MessageWriter;
using Section = MessageWriter::Section;

constexpr size_t kMultivalueMax = 8;  // Route 53 answers up to eight multivalue records
constexpr uint16_t kSrvPriority = 1;
constexpr uint16_t kSrvWeight = 10;
constexpr uint16_t kEdnsAdvertised = 1232;
constexpr size_t kMaxEdnsUdp = 4096;

std::string join(const std::string& rel, const std::string& zone) {
  return rel.empty() ? zone : rel + "." + zone;
}

struct Answerer {
  const DnsZone& zone;
  const dns::Question& q;
  uint64_t rotation;
  MessageWriter& w;
  int answers = 0;

  void soa(Section section) {
    uint32_t ttl = zone.soa_ttl;
    w.beginRecord(section, zone.name, dns::kTypeSoa, dns::kClassIn, ttl);
    w.rdataName("ns1." + zone.name, true);
    w.rdataName("hostmaster." + zone.name, true);
    w.rdataU32(serial);
    w.rdataU32(7200);     // refresh
    w.rdataU32(900);      // retry
    w.rdataU32(1209600);  // expire
    w.rdataU32(ttl);      // minimum: the negative-caching TTL
    w.endRecord();
  }
  uint32_t serial = 1;

  void address(Section section, const std::string& name, const DnsInstance& i, uint16_t type,
               uint32_t ttl) {
    const std::string& bytes = type == dns::kTypeA ? i.ipv4 : i.ipv6;
    if (bytes.empty()) return;
    w.beginRecord(section, name, type, dns::kClassIn, ttl);
    w.rdataBytes(bytes);
    w.endRecord();
    if (section == Section::kAnswer) ++answers;
  }

  // The instances to answer: answerable ones (DnsService::answerable's rule) from position
  // rotation % count, up to 8 (MULTIVALUE) or 1 (WEIGHTED). No allocation: queries are hot.
  struct Picked {
    const DnsInstance* at[kMultivalueMax];
    size_t n = 0;
    bool empty() const { return n == 0; }
    const DnsInstance* const* begin() const { return at; }
    const DnsInstance* const* end() const { return at + n; }
    const DnsInstance* operator[](size_t k) const { return at[k]; }
  };
  Picked pick(const DnsService& s) {
    Picked out;
    size_t healthy = 0;
    for (const auto& i : s.instances) healthy += i.health != Health::kUnhealthy;
    bool all = healthy == 0;
    size_t pool = all ? s.instances.size() : healthy;
    if (pool == 0) return out;
    size_t want = s.weighted ? 1 : std::min(pool, kMultivalueMax);
    size_t start = static_cast<size_t>(rotation % pool);
    // Two passes over the pool in order: from `start` to its end, then from its beginning.
    for (int pass = 0; pass < 2 && out.n < want; ++pass) {
      size_t k = 0;
      for (const auto& i : s.instances) {
        if (!all && i.health == Health::kUnhealthy) continue;
        bool take = pass == 0 ? k >= start : k < start;
        ++k;
        if (take) {
          out.at[out.n++] = &i;
          if (out.n == want) break;
        }
      }
    }
    return out;
  }

  // Answers for the service name itself.
  void service(const DnsService& s, const std::string& qname_rel) {
    const std::string owner = join(qname_rel, zone.name);
    if (const auto* c = s.record(dns::kTypeCname)) {
      auto chosen = pick(s);
      if (!chosen.empty() && !chosen[0]->cname.empty()) {
        w.beginRecord(Section::kAnswer, owner, dns::kTypeCname, dns::kClassIn, c->second);
        w.rdataName(chosen[0]->cname, true);
        w.endRecord();
        ++answers;
      }
      return;
    }
    auto chosen = pick(s);
    bool any = q.type == dns::kTypeAny;
    for (uint16_t type : {dns::kTypeA, dns::kTypeAaaa}) {
      const auto* r = s.record(type);
      if (r && (any || q.type == type))
        for (const DnsInstance* i : chosen) address(Section::kAnswer, owner, *i, type, r->second);
    }
    const auto* srv = s.record(dns::kTypeSrv);
    if (srv && (any || q.type == dns::kTypeSrv)) {
      for (const DnsInstance* i : chosen) {
        w.beginRecord(Section::kAnswer, owner, dns::kTypeSrv, dns::kClassIn, srv->second);
        w.rdataU16(kSrvPriority);
        w.rdataU16(kSrvWeight);
        w.rdataU16(i->port);
        w.rdataName(join(i->id + "." + s.name, zone.name), false);
        w.endRecord();
        ++answers;
      }
      // The targets' addresses, so a client needs no second query.
      for (const DnsInstance* i : chosen) {
        std::string target = join(i->id + "." + s.name, zone.name);
        for (uint16_t type : {dns::kTypeA, dns::kTypeAaaa})
          if (const auto* r = s.record(type))
            address(Section::kAdditional, target, *i, type, r->second);
          else if (!s.record(dns::kTypeA) && !s.record(dns::kTypeAaaa))
            address(Section::kAdditional, target, *i, type, srv->second);
      }
    }
  }

  // Answers for "<instance>.<service>": the instance's own address records.
  void instanceHost(const DnsService& s, const DnsInstance& i, const std::string& qname_rel) {
    const std::string owner = join(qname_rel, zone.name);
    bool any = q.type == dns::kTypeAny;
    bool has_addr = s.record(dns::kTypeA) || s.record(dns::kTypeAaaa);
    for (uint16_t type : {dns::kTypeA, dns::kTypeAaaa}) {
      if (!(any || q.type == type)) continue;
      const auto* r = s.record(type);
      if (r) {
        address(Section::kAnswer, owner, i, type, r->second);
      } else if (!has_addr) {
        if (const auto* srv = s.record(dns::kTypeSrv))
          address(Section::kAnswer, owner, i, type, srv->second);
      }
    }
  }
};

bool inside(const std::vector<net::Cidr>& cidrs, const net::Address& a) {
  for (const auto& c : cidrs)
    if (c.contains(a)) return true;
  // An IPv4 caller on a dual-stack socket arrives as ::ffff:a.b.c.d.
  if (a.family() == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(a.sa());
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      net::Address v4;
      auto* s4 = reinterpret_cast<sockaddr_in*>(&v4.storage);
      s4->sin_family = AF_INET;
      std::memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
      v4.len = sizeof(sockaddr_in);
      for (const auto& c : cidrs)
        if (c.contains(v4)) return true;
    }
  }
  return false;
}

std::string errorAnswer(uint16_t id, uint16_t query_flags, uint8_t rcode, const dns::Question* q) {
  uint16_t flags = dns::kFlagQr | (query_flags & (0x7800 | dns::kFlagRd | dns::kFlagCd)) | rcode;
  MessageWriter w(id, flags);
  if (q) w.addQuestion(q->name, q->type, q->klass);
  return w.bytes();
}

bool mayRecurse(const Snapshot& snapshot, const net::Address& peer);
std::string decide(const Snapshot& snapshot, std::string_view query, const net::Address& peer,
                   Transport transport, uint64_t rotation, bool forwarding, DnsDecision& d);

}  // namespace

bool isLoopback(const net::Address& a) {
  if (a.family() == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(a.sa());
    return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.family() == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(a.sa());
    if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && s6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

std::string answerDnsQuery(const Snapshot& snapshot, std::string_view query,
                           const net::Address& peer, Transport transport, uint64_t rotation) {
  return decideDnsQuery(snapshot, query, peer, transport, rotation, false).reply;
}

std::string dnsErrorReply(std::string_view query, uint8_t rcode) {
  if (query.size() < dns::kHeaderSize) return {};
  uint16_t id =
      static_cast<uint16_t>((static_cast<uint8_t>(query[0]) << 8) | static_cast<uint8_t>(query[1]));
  uint16_t qflags =
      static_cast<uint16_t>((static_cast<uint8_t>(query[2]) << 8) | static_cast<uint8_t>(query[3]));
  auto msg = dns::parseMessage(query);
  const dns::Question* q = msg && msg->questions.size() == 1 ? &msg->questions[0] : nullptr;
  std::string out = errorAnswer(id, qflags, rcode, q);
  out[3] = static_cast<char>(static_cast<uint8_t>(out[3]) | (dns::kFlagRa & 0xFF));
  return out;
}

DnsDecision decideDnsQuery(const Snapshot& snapshot, std::string_view query,
                           const net::Address& peer, Transport transport, uint64_t rotation,
                           bool forwarding) {
  DnsDecision d;
  d.reply = decide(snapshot, query, peer, transport, rotation, forwarding, d);
  return d;
}

namespace {

std::string decide(const Snapshot& snapshot, std::string_view query, const net::Address& peer,
                   Transport transport, uint64_t rotation, bool forwarding, DnsDecision& d) {
  if (query.size() < dns::kHeaderSize) return {};
  uint16_t id =
      static_cast<uint16_t>((static_cast<uint8_t>(query[0]) << 8) | static_cast<uint8_t>(query[1]));
  uint16_t qflags =
      static_cast<uint16_t>((static_cast<uint8_t>(query[2]) << 8) | static_cast<uint8_t>(query[3]));
  if (qflags & dns::kFlagQr) return {};  // never answer a response (reflection loops)
  auto msg = dns::parseMessage(query);
  if (!msg) return errorAnswer(id, qflags, dns::kFormErr, nullptr);
  if (msg->opcode() != 0) return errorAnswer(id, qflags, dns::kNotImp, nullptr);
  if (msg->questions.size() != 1) return errorAnswer(id, qflags, dns::kFormErr, nullptr);
  const dns::Question& q = msg->questions[0];

  size_t limit = transport == Transport::kTcp ? 65535 : dns::kMaxUdpSizeNoEdns;
  const dns::ResourceRecord* opt = msg->opt();
  if (opt && transport == Transport::kUdp)
    limit = std::clamp<size_t>(opt->klass, dns::kMaxUdpSizeNoEdns, kMaxEdnsUdp);

  if (q.klass != dns::kClassIn || q.type == dns::kTypeOpt)
    return errorAnswer(id, qflags, q.klass != dns::kClassIn ? dns::kRefused : dns::kFormErr, &q);
  const DnsZone* zone = snapshot.findZone(q.name);
  if (!zone) {
    if (forwarding && mayRecurse(snapshot, peer)) {
      d.forward = true;
      d.qname = q.name;
      d.qtype = q.type;
      d.udp_limit =
          opt ? std::max<size_t>(opt->klass, dns::kMaxUdpSizeNoEdns) : dns::kMaxUdpSizeNoEdns;
      return {};
    }
    return errorAnswer(id, qflags, dns::kRefused, &q);
  }
  if (zone->is_private && !isLoopback(peer) && !inside(zone->cidrs, peer))
    return errorAnswer(id, qflags, dns::kRefused, &q);

  auto build = [&](bool truncated) {
    uint16_t flags = dns::kFlagQr | dns::kFlagAa | (qflags & (dns::kFlagRd | dns::kFlagCd));
    MessageWriter w(id, flags);
    w.addQuestion(q.name, q.type, q.klass);
    if (truncated) {
      w.setFlags(flags | dns::kFlagTc);
      if (opt) w.addOpt(kEdnsAdvertised);
      return w.bytes();
    }
    Answerer a{*zone, q, rotation, w};
    a.serial = snapshot.serial;
    std::string rel = q.name.size() == zone->name.size()
                          ? std::string()
                          : q.name.substr(0, q.name.size() - zone->name.size() - 1);
    bool exists = rel.empty() || zone->existing.count(rel) > 0;
    if (rel.empty()) {
      if (q.type == dns::kTypeSoa || q.type == dns::kTypeAny) {
        a.soa(Section::kAnswer);
        ++a.answers;
      }
      if (q.type == dns::kTypeNs || q.type == dns::kTypeAny) {
        w.beginRecord(Section::kAnswer, zone->name, dns::kTypeNs, dns::kClassIn, 172800);
        w.rdataName("ns1." + zone->name, true);
        w.endRecord();
        ++a.answers;
      }
    } else if (auto s = zone->services.find(rel); s != zone->services.end()) {
      a.service(s->second, rel);
    } else if (auto h = zone->instance_hosts.find(rel); h != zone->instance_hosts.end()) {
      a.instanceHost(*h->second.first, h->second.first->instances[h->second.second], rel);
    }
    if (a.answers == 0) {
      if (!exists) w.setFlags(flags | dns::kNxDomain);
      // The additional section was empty: nothing was written after the answers.
      a.soa(Section::kAuthority);
    }
    if (opt) w.addOpt(kEdnsAdvertised);
    return w.bytes();
  };
  std::string out = build(false);
  if (out.size() > limit) out = build(true);
  return out;
}

// Recursion (forwarding) serves the host itself and the networks the mesh's private zones are
// attached to, never the whole world (an open resolver amplifies attacks).
bool mayRecurse(const Snapshot& snapshot, const net::Address& peer) {
  if (isLoopback(peer)) return true;
  for (const DnsZone& z : snapshot.zones)
    if (z.is_private && inside(z.cidrs, peer)) return true;
  return false;
}

}  // namespace

}  // namespace weft::control::registry
