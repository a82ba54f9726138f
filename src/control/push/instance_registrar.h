#pragma once
// What the push server tells the registry about connected proxies (docs/registry.md "Instances
// from proxies"): who connected from where, their app's health reports, and how each stream
// ended. The registry side (registry::AutoRegistration) turns it into Cloud Map instances; tests
// fake it.
//
// Threading: PushServer calls every method from its push thread only, one call at a time, never
// with a lock of its own held (a call may commit to the store, whose listener calls back into the
// push server).

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "control/compile/compiler.h"

namespace weft::control::push {

enum class AppHealth { kUnknown, kHealthy, kUnhealthy };

// A proxy whose Hello was accepted.
struct ConnectedProxy {
  uint64_t stream_id = 0;  // unique for the push server's life
  compile::ProxyIdentity who;
  std::string host;                    // Hello.host
  std::vector<std::string> addresses;  // Hello.addresses (at most 16)
};

class InstanceRegistrar {
 public:
  virtual ~InstanceRegistrar() = default;
  virtual void proxyConnected(const ConnectedProxy& proxy) = 0;
  // The proxy's whole health state: (listener port, health) for each port it checks.
  virtual void proxyHealth(uint64_t stream_id,
                           const std::vector<std::pair<uint32_t, AppHealth>>& ports) = 0;
  // The stream ended. `clean`: the proxy said Goodbye first (it drains and goes away).
  virtual void proxyDisconnected(uint64_t stream_id, bool clean) = 0;
  // Called about once a second: proxies gone (or silent) for stale_after are marked unhealthy,
  // after 2 × stale_after deregistered.
  virtual void tick(std::chrono::milliseconds stale_after) = 0;
};

}  // namespace weft::control::push
