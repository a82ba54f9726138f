#pragma once
// The registry's DNS server: UDP and TCP (RFC 1035 §4.2, two-byte length prefix on TCP) on one
// or more addresses, answering from the current registry snapshot (see dns_answer.h), and
// forwarding names outside the mesh's zones to upstream resolvers when it has some.
//
// Forwarding: the client's query goes unchanged except for its id (a fresh random one, restored
// in the answer) over UDP on one connected socket per upstream — over TCP when the client asked
// over TCP, or when the upstream's UDP answer is truncated (the full answer is relayed when it
// fits the client's UDP size, else the truncated one, so the client retries over TCP). An
// upstream answer must come from the upstream's address and echo the id and the question. With
// several upstreams the next one is also asked after timeout/N; the first answer wins. No answer
// within the timeout: SERVFAIL. At most max_forwarded queries are in flight; past that the query
// gets SERVFAIL at once (counted in stats().forward_overflow).
//
// Threading: one dedicated thread runs a poll() loop over every socket; answering never blocks
// and never reads the store (it loads the SnapshotHolder's current snapshot per query).
// start() and stop() are called from one controlling thread; stats() from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/registry/registry_snapshot.h"
#include "net/socket.h"

namespace weft::control::registry {

struct DnsServerOptions {
  std::vector<net::Address> upstreams;  // resolvers for names outside the zones; none: REFUSED
  std::chrono::milliseconds forward_timeout{2000};
  size_t max_forwarded = 1024;  // forwarded queries in flight (UDP and TCP together)
};

// Counters, updated by the server thread (relaxed atomics: read them from anywhere).
struct DnsServerStats {
  std::atomic<uint64_t> queries{0};           // messages received from clients
  std::atomic<uint64_t> forwarded{0};         // queries sent upstream
  std::atomic<uint64_t> forward_answers{0};   // upstream answers relayed
  std::atomic<uint64_t> forward_tcp{0};       // upstream exchanges over TCP
  std::atomic<uint64_t> forward_timeouts{0};  // SERVFAIL: no upstream answer in time
  std::atomic<uint64_t> forward_overflow{0};  // SERVFAIL: max_forwarded in flight
  std::atomic<uint64_t> forward_mismatch{0};  // upstream datagrams ignored (id or question)
};

class DnsServer {
 public:
  // `snapshots` and `time` must outlive the server.
  DnsServer(const SnapshotHolder& snapshots, const TimeSource& time, DnsServerOptions options = {});
  ~DnsServer();

  // Binds UDP and TCP on each address (port 0: a free port, the same for UDP and TCP) and
  // starts the thread. Answers the bound addresses, in order.
  Result<std::vector<net::Address>> start(const std::vector<net::Address>& addresses);
  // Closes every socket and joins the thread. Idempotent.
  void stop();

  const DnsServerStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::registry
