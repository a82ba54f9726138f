#pragma once
// The proxy's agent: keeps weft-proxy's config in step with `weft server` over the config stream
// (api/weft/v1/stream.proto, docs/config-push.md). It speaks gRPC over weft's own HTTP/2 codec
// (http/http2/codec.h) and TLS client transport on the proxy's main event loop: no gRPC library,
// no extra thread, nothing on the workers.
//
// Life: connect to the first control-plane address (TLS verified against ca_file, ALPN h2;
// plaintext h2c only when `insecure`), send Hello (resource, token, host, network, version, the
// hash of the running config), then for each ConfigUpdate / EndpointsUpdate: build the whole
// config, call `apply` on it, answer Ack (apply succeeded) or Nack (its error message). An
// applied config is written to `state_dir` (atomically, mode 0600) before the Ack.
// On a lost connection or a refused Hello: reconnect with exponential backoff (base 250 ms, cap
// 30 s, full jitter), moving to the next address each time. A refusal's reason is logged once per
// distinct reason.
//
// Thread-safety: main loop only.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/stats.h"
#include "net/event_loop.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

struct AgentOptions {
  std::vector<std::string> addresses;  // HOST:PORT, tried in order, round robin on failure
  std::string resource;                // as given (--resource or APPMESH_RESOURCE_ARN)
  std::string token;                   // read from --token-file by the caller
  std::string ca_file;                 // PEM bundle the server is verified against
  bool insecure = false;               // plaintext h2c (tests only)
  std::string state_dir;               // where the last applied config is kept
  std::string host, network;           // shown by `weft proxies`
};

class Agent {
 public:
  // Builds and activates a config; an error is sent back as the Nack reason (the running config
  // stays). Runs on the main loop.
  using ApplyFn = std::function<Status(const v1::ProxyConfig&)>;

  // `loop` and `registry` must outlive the agent.
  Agent(net::EventLoop& loop, AgentOptions options, ApplyFn apply, stats::Registry& registry);
  ~Agent();

  // The config stored in state_dir by a previous run, if any and readable (a corrupt file is
  // logged and ignored). Call before start() to serve while the control plane is unreachable.
  std::optional<v1::ProxyConfig> loadStored() const;
  // Starts connecting. Returns at once.
  void start();
  // Closes the stream (GOAWAY) and stops reconnecting.
  void stop();

  bool connected() const;
  uint64_t lastAppliedVersion() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::proxy
