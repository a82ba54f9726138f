#pragma once
// Health probes: one active check of one host. The HealthChecker owns one HealthProbe per host,
// created once when the host joins and reused for every check, so a check allocates nothing but
// its connection. Probes here:
//   TCP    connect (and the TLS handshake, when the cluster's transport is TLS): healthy if it
//          completes.
//   HTTP/1 GET <path> with `connection: close`: healthy if the status is in the expected range
//          (default 200 only, like Envoy, which App Mesh configures). Only the status line is
//          read; the connection is closed right after it.
//   gRPC   grpc.health.v1.Health/Check over HTTP/2: GrpcHealthProbeFactory in
//          grpc_health_probe.h.
// Timeouts belong to the checker (it cancel()s a probe that takes too long), not to probes.
//
// Threading: a probe lives on one EventLoop (the thread that runs health checks) and is used only
// there.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/timer.h"
#include "net/connection.h"
#include "net/event_loop.h"
#include "upstream/host_set.h"
#include "upstream/pool.h"

namespace weft::upstream {

// `detail` says why a check failed ("connect failed: Connection refused", "status 503"), or what
// it saw when it passed; valid only during the call.
using ProbeCallback = std::function<void(bool healthy, std::string_view detail)>;

class HealthProbe {
 public:
  virtual ~HealthProbe() = default;
  // Starts one check. Exactly one callback follows unless cancel() comes first; never from inside
  // start(). Not called again before the callback or cancel(). The callback must not destroy the
  // probe.
  virtual void start() = 0;
  // Abandons the check in flight, if any: no callback follows. Safe when none is in flight.
  virtual void cancel() = 0;
};

class ProbeFactory {
 public:
  virtual ~ProbeFactory() = default;
  // A probe for `host` (copied as needed: the probe may outlive the HostSet the host is from).
  virtual std::unique_ptr<HealthProbe> create(const Host& host, ProbeCallback done) = 0;
};

// TCP connect probes over `transport` (plaintext, or the cluster's TLS origination; a null
// factory means plaintext). `port`: probe this port instead of the endpoint's (App Mesh
// healthCheck.port); 0 keeps the endpoint's. `loop` must outlive the factory and its probes.
class TcpProbeFactory final : public ProbeFactory {
 public:
  TcpProbeFactory(net::EventLoop& loop, TransportFactory transport = nullptr, uint16_t port = 0);
  std::unique_ptr<HealthProbe> create(const Host& host, ProbeCallback done) override;

 private:
  net::EventLoop& loop_;
  TransportFactory transport_;
  uint16_t port_;
};

struct HttpProbeConfig {
  std::string path = "/";
  // Host header; empty: the host's DNS name if it has one, else its "ip:port".
  std::string authority;
  // Healthy iff expected_min <= status <= expected_max.
  int expected_min = 200;
  int expected_max = 200;
  // Probe this port instead of the endpoint's; 0 keeps the endpoint's.
  uint16_t port = 0;
  // The transport is TLS: an HTTP/2 probe sends :scheme https (else http).
  bool secure = false;
};

// HTTP/1.1 GET probes. Same ownership rules as TcpProbeFactory.
class HttpProbeFactory final : public ProbeFactory {
 public:
  HttpProbeFactory(net::EventLoop& loop, HttpProbeConfig config,
                   TransportFactory transport = nullptr);
  std::unique_ptr<HealthProbe> create(const Host& host, ProbeCallback done) override;

 private:
  net::EventLoop& loop_;
  HttpProbeConfig config_;
  TransportFactory transport_;
};

// Parses the status code out of an HTTP/1.x status line at the start of `data`: the code, 0 if
// more bytes are needed, -1 if it is not an HTTP/1 status line. Exposed for tests.
int parseStatusLine(std::string_view data);
// `address` with its port replaced (IPv4 or IPv6; scope id kept).
net::Address withPort(net::Address address, uint16_t port);

}  // namespace weft::upstream
