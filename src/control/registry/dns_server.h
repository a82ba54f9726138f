#pragma once
// The registry's DNS server: UDP and TCP (RFC 1035 §4.2, two-byte length prefix on TCP) on one
// or more addresses, answering from the current registry snapshot (see dns_answer.h).
//
// Threading: one dedicated thread runs a poll() loop over every socket; answering never blocks
// and never reads the store (it loads the SnapshotHolder's current snapshot per query).
// start() and stop() are called from one controlling thread.

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

class DnsServer {
 public:
  // `snapshots` and `time` must outlive the server.
  DnsServer(const SnapshotHolder& snapshots, const TimeSource& time);
  ~DnsServer();

  // Binds UDP and TCP on each address (port 0: a free port, the same for UDP and TCP) and
  // starts the thread. Answers the bound addresses, in order.
  Result<std::vector<net::Address>> start(const std::vector<net::Address>& addresses);
  // Closes every socket and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::registry
