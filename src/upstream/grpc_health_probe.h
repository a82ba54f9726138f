#pragma once
// gRPC health probes: `grpc.health.v1.Health/Check` (the gRPC health checking protocol) over
// HTTP/2, one connection per check. Healthy iff the call ends with grpc-status 0 and the
// response message says SERVING. The request names `service` (empty: the server as a whole).
//
// Threading and lifetime as every ProbeFactory (health_probe.h): one EventLoop, used only there.

#include <memory>
#include <string>
#include <string_view>

#include "common/time.h"
#include "net/event_loop.h"
#include "upstream/health_probe.h"

namespace weft::upstream {

struct GrpcProbeConfig {
  std::string service;    // HealthCheckRequest.service
  std::string authority;  // :authority; empty: the host's DNS name, else "ip:port"
  uint16_t port = 0;      // probe this port instead of the endpoint's; 0 keeps it
};

class GrpcHealthProbeFactory final : public ProbeFactory {
 public:
  // `loop` and `time` must outlive the factory and its probes. `transport`: the cluster's
  // (plaintext when null; with TLS the cluster should offer ALPN "h2").
  GrpcHealthProbeFactory(net::EventLoop& loop, const TimeSource& time, GrpcProbeConfig config,
                         TransportFactory transport = nullptr);
  std::unique_ptr<HealthProbe> create(const Host& host, ProbeCallback done) override;

 private:
  net::EventLoop& loop_;
  const TimeSource& time_;
  GrpcProbeConfig config_;
  TransportFactory transport_;
};

// The gRPC message (5-byte prefix + protobuf HealthCheckRequest{service}) a probe sends.
std::string grpcHealthRequest(std::string_view service);
// Reads HealthCheckResponse.status out of a length-prefixed gRPC message: 0 UNKNOWN, 1 SERVING,
// 2 NOT_SERVING, 3 SERVICE_UNKNOWN; -1 when `message` is not one well-formed message.
int grpcHealthStatus(std::string_view message);

}  // namespace weft::upstream
