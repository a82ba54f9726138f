// Fuzz target: the DNS codec and the query answerer over arbitrary bytes. Whatever comes in, the
// parser must not crash or loop, and any answer must itself parse and echo the query id.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control/registry/dns_answer.h"
#include "control/registry/dns_message.h"
#include "control/stacks/json_value.h"

using namespace weft::control;
using namespace weft::control::registry;

namespace {

const Snapshot& fuzzSnapshot() {
  static std::shared_ptr<const Snapshot> snap = [] {
    std::vector<KeyValue> kvs = {
        {"registry/namespaces/ns-1",
         R"({"Id":"ns-1","Name":"mesh.local","Type":"DNS_PRIVATE","Vpcs":[],)"
         R"("Properties":{"DnsProperties":{"HostedZoneId":"Z1","SOA":{"TTL":15}}}})",
         1},
        {"registry/services/srv-1",
         R"({"Id":"srv-1","Name":"web","NamespaceId":"ns-1","DnsConfig":{"RoutingPolicy":)"
         R"("MULTIVALUE","DnsRecords":[{"Type":"A","TTL":60},{"Type":"SRV","TTL":60}]}})",
         2},
        {"registry/instances/srv-1/i-1",
         R"({"Id":"i-1","Attributes":{"AWS_INSTANCE_IPV4":"10.0.0.1","AWS_INSTANCE_PORT":"80"},)"
         R"("HealthStatus":"HEALTHY"})",
         3},
    };
    return buildSnapshot(kvs);
  }();
  return *snap;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto msg = dns::parseMessage(in);
  if (msg) {
    for (const auto& rr : msg->answers) {
      size_t off = rr.rdata_offset;
      (void)dns::readName(in, &off);
    }
  }
  auto peer = weft::net::parseAddress("127.0.0.1", 5353);
  for (Transport t : {Transport::kUdp, Transport::kTcp}) {
    std::string reply = answerDnsQuery(fuzzSnapshot(), in, *peer, t, size);
    if (reply.empty()) continue;
    auto parsed = dns::parseMessage(reply);
    if (!parsed) abort();  // the writer produced something the parser rejects
    if (parsed->id != static_cast<uint16_t>((data[0] << 8) | data[1])) abort();
    if (t == Transport::kUdp && reply.size() > 4096) abort();
  }
  // With forwarding: a query is either forwarded (with nothing to send yet) or answered here;
  // the SERVFAIL the server sends for a forwarded query that timed out must parse too.
  DnsDecision d = decideDnsQuery(fuzzSnapshot(), in, *peer, Transport::kUdp, size, true);
  if (d.forward) {
    if (!d.reply.empty() || fuzzSnapshot().findZone(d.qname)) abort();  // never a mesh name
    auto err = dns::parseMessage(dnsErrorReply(in, dns::kServFail));
    if (!err || err->rcode() != dns::kServFail || err->questions.size() != 1) abort();
  }
  return 0;
}
