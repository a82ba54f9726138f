#pragma once
// Health probes over HTTP/2. gRPC: `grpc.health.v1.Health/Check` (the gRPC health checking
// protocol), one connection per check. Healthy iff the call ends with grpc-status 0 and the
// response message says SERVING. The request names `service` (empty: the server as a whole).
//
// Threading and lifetime as every ProbeFactory (health_probe.h): one EventLoop, used only there.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/time.h"
#include "net/event_loop.h"
#include "upstream/health_probe.h"

namespace weft::upstream {

struct GrpcProbeConfig {
  std::string service;    // HealthCheckRequest.service
  std::string authority;  // :authority; empty: the host's DNS name, else "ip:port"
  uint16_t port = 0;      // probe this port instead of the endpoint's; 0 keeps it
  bool secure = false;    // the transport is TLS: :scheme https (else http)
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

// HTTP GET probes over HTTP/2 (the HTTP health check of an HTTP2 cluster): h2c by prior
// knowledge, or h2 through `transport` (TLS offering ALPN "h2"); healthy iff the :status is in
// [expected_min, expected_max]. One connection per check, as the gRPC probe.
class Http2ProbeFactory final : public ProbeFactory {
 public:
  Http2ProbeFactory(net::EventLoop& loop, const TimeSource& time, HttpProbeConfig config,
                    TransportFactory transport = nullptr);
  std::unique_ptr<HealthProbe> create(const Host& host, ProbeCallback done) override;

 private:
  net::EventLoop& loop_;
  const TimeSource& time_;
  HttpProbeConfig config_;
  TransportFactory transport_;
};

// gRPC message framing (PROTOCOL-HTTP2 "Length-Prefixed-Message"): a compressed flag byte, a
// 4-byte big-endian length, then the message. Shared by the health probe and the proxy's config
// stream agent; neither sends or accepts compressed messages.

// `message` behind an uncompressed 5-byte prefix.
std::string grpcFrame(std::string_view message);
// The message of `framed` when it is exactly one uncompressed length-prefixed message.
std::optional<std::string_view> grpcUnframe(std::string_view framed);

// Splits a stream of DATA bytes into messages as they arrive (a message may span DATA frames,
// a frame may carry several messages). Not thread-safe.
class GrpcMessageReader {
 public:
  // Messages longer than `max_message` bytes are an error (the peer is not one we understand).
  explicit GrpcMessageReader(size_t max_message) : max_(max_message) {}
  void append(std::string_view bytes) { buf_.append(bytes); }
  // The next complete message (without its prefix); nullopt while it is incomplete. Errors: a
  // compressed message or one over the limit; the reader is unusable after an error.
  Result<std::optional<std::string>> next();
  size_t buffered() const { return buf_.size(); }
  void clear() { buf_.clear(); }

 private:
  size_t max_;
  std::string buf_;
};

// The gRPC message (5-byte prefix + protobuf HealthCheckRequest{service}) a probe sends.
std::string grpcHealthRequest(std::string_view service);
// Reads HealthCheckResponse.status out of a length-prefixed gRPC message: 0 UNKNOWN, 1 SERVING,
// 2 NOT_SERVING, 3 SERVICE_UNKNOWN; -1 when `message` is not one well-formed message.
int grpcHealthStatus(std::string_view message);

}  // namespace weft::upstream
