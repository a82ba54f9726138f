#pragma once
// The proxy's agent: keeps weft-proxy's config in step with `weft server` over the config stream
// (api/weft/v1/stream.proto, docs/config-push.md, docs/proxy-agent.md). It speaks gRPC over
// weft's own HTTP/2 codec (http/http2/codec.h) and TLS client transport on the proxy's main event
// loop: no gRPC library, no extra thread, nothing on the workers.
//
// Life: connect to the first control-plane address (TLS verified against ca_file, the server's
// certificate must carry the address's host as a SAN, ALPN h2; plaintext h2c only when
// `insecure`), send Hello (resource, token, host, network, version, the hash of the running
// config), then for each ConfigUpdate / EndpointsUpdate: build the whole config, call `apply` on
// it, answer Ack (apply succeeded) or Nack (its error message). An applied config is written to
// `state_dir` (atomically, mode 0600) before the Ack. An update whose hash is the running
// config's is acknowledged without calling `apply`. An EndpointsUpdate applies on top of the
// last config received on the same stream; when the result's hash is not the update's, it is
// refused ("... send a full config").
// On a lost connection or a refused Hello: reconnect with exponential backoff (base 250 ms, cap
// 30 s, full jitter), moving to the next address each time; the backoff starts over after a
// stream that delivered a config. A refusal's reason is logged once per distinct reason.
// Keepalive: a PING after keepalive_interval without any byte from the server; no byte for
// keepalive_timeout after it ends the connection (and a reconnect follows).
// Registry feed (docs/proxy-agent.md): Hello carries the app's addresses (app_addresses, else
// hostAddresses()); after the Hello and whenever the health source's answer changes (checked
// every health_poll_interval and at healthChanged()), and at least every
// health_report_interval, a HealthReport goes out (an empty one without a source: it keeps the
// proxy's instance fresh). stop() sends a Goodbye before it half-closes, so the control plane
// deregisters the proxy's auto-registered instance at once.
//
// Mesh identity (docs/security.md "Mesh identities"): after each Hello, when it holds no valid
// identity certificate or its certificate is past half-life, the agent generates a fresh EC
// P-256 key, sends a CertificateRequest (a CSR for it), and keeps the answer with the key in
// `state_dir`/identity.pem (mode 0600; the key never leaves the host). A config whose TLS names
// the mesh identity (TlsCertificate.mesh_identity) gets the certificate and key filled in before
// `apply`; a new certificate re-applies the running config so new connections use it (open ones
// keep theirs). A config that needs the identity before the first certificate arrives waits for
// it (neither applied nor acknowledged; NACKed while the control plane refuses the request). The
// renewal schedule, its retries and the expiry warning are net::tls::IdentityRenewal's; the
// metrics weft_identity_certificate_expiry_timestamp_seconds, ..._expiring,
// ..._renewals_total and ..._renewal_failures_total tell how it goes.
//
// Thread-safety: main loop only (every method, every callback).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/stats.h"
#include "meshconfig/meshconfig.h"
#include "net/event_loop.h"
#include "net/tls/identity.h"
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
  // Added for tests (production keeps the defaults): reconnect backoff and keepalive timing.
  std::chrono::milliseconds backoff_base{250};
  std::chrono::milliseconds backoff_cap{30'000};
  std::chrono::milliseconds keepalive_interval{20'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
  // Added (issue 6): the app's addresses for Hello (--app-address); empty: hostAddresses().
  std::vector<std::string> app_addresses;
  std::chrono::milliseconds health_report_interval{10'000};
  std::chrono::milliseconds health_poll_interval{1'000};
  // Added (issue 7): mesh identity renewal timing (tests shorten it; see net/tls/identity.h).
  net::tls::IdentityRenewal::Options identity_renewal;
};

// The health of the proxy's own app on one port of its node's listeners.
enum class AppHealth { kUnknown, kHealthy, kUnhealthy };
// (listener port, health) for each port the proxy checks; main loop.
using HealthSource = std::function<std::vector<std::pair<uint32_t, AppHealth>>()>;

// This host's non-loopback, non-link-local interface addresses: IPv4 ones first, then IPv6, each
// in interface order, without duplicates.
std::vector<std::string> hostAddresses();

// The constant metric labels of the proxy of `r` (meshconfig.h: the resource a proxy runs for,
// and the config hash both sides compute): appmesh_mesh + appmesh_virtual_node /
// appmesh_virtual_gateway.
stats::Labels resourceLabels(const meshconfig::ProxyResource& r);

// Name of the stored config inside state_dir (a JSON config behind three '#' comment lines:
// the format line, "# sha256 <hash>" and "# version <n>"; the file is also valid YAML, so
// `weft-proxy --config` and `--validate` accept it).
inline constexpr std::string_view kStoredConfigName = "config.yaml";
// Name of the stored mesh identity inside state_dir (certificate, key and trust bundle; 0600).
inline constexpr std::string_view kStoredIdentityName = "identity.pem";

// Whether `config` names the proxy's mesh identity (TlsCertificate.mesh_identity) anywhere.
bool usesMeshIdentity(const v1::ProxyConfig& config);
// `config` with every mesh_identity certificate filled with `chain_pem` and `key_pem`.
v1::ProxyConfig withMeshIdentity(const v1::ProxyConfig& config, const std::string& chain_pem,
                                 const std::string& key_pem);

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
  // Added: the caller activated `config` (loadStored()'s) itself before start(); its hash goes
  // into Hello as running_hash, so an unchanged config is acknowledged without a rebuild.
  void setRunning(const v1::ProxyConfig& config);
  // Starts connecting. Returns at once.
  void start();
  // Closes the stream (Goodbye, half-close, then GOAWAY) and stops reconnecting.
  void stop();
  // Added (issue 6): where health reports come from (the proxy's checks of its own app); may be
  // set at any time. healthChanged(): the answer may have changed, report now if it did.
  void setHealthSource(HealthSource source);
  void healthChanged();

  bool connected() const;
  uint64_t lastAppliedVersion() const;
  // Added for /server_info: the last error (refusal, lost connection, rejected update), "" if
  // none since the last config was applied; and the options it runs with.
  const std::string& lastError() const;
  const AgentOptions& options() const;
  // Added (issue 7): the mesh identity held ("" when none) and its notAfter (unix seconds).
  std::string identity() const;
  int64_t identityExpiresAt() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::proxy
