#pragma once
// The config stream server (api/weft/v1/stream.proto, docs/config-push.md): one gRPC
// bidirectional stream per connected weft-proxy, each fed the config compile::Compiler makes for
// its virtual node or gateway.
//
// Flow per stream: Hello -> token check (Tokens::verify) -> compile -> ConfigUpdate(version 1)
// -> Ack/Nack ... Afterwards every store change whose keys fall under a proxy's depends_on
// prefixes recompiles that proxy (on the push thread, never on a gRPC or API thread); if the new
// config differs from the last one sent, the proxy gets the next version: an EndpointsUpdate when
// only STATIC clusters' endpoints changed, else a ConfigUpdate.
//
// Backpressure and coalescing: each stream has at most one write in flight and one pending
// "latest" message; a newer version replaces a pending one, so a slow proxy gets fewer, newer
// versions and never blocks the server or other streams. Recompilations for store changes run at
// most once per coalesce_window (the first change after a quiet spell at once), so a burst of
// writes gives a few versions.
//
// Registry feed: with options.registrar set, each accepted Hello (with the app's addresses),
// HealthReport and stream end (clean after a Goodbye) is queued for the push thread, which
// hands them to the registrar in arrival order and ticks it about once a second.
//
// Mesh identities: a CertificateRequest is signed by options.identities on the gRPC thread that
// read it (a few store reads and one signature) and answered with an IdentityUpdate, written
// before any pending config; a request for another identity's names ends the stream with
// PERMISSION_DENIED.
//
// Thread-safety: onStoreChanged and proxies() may be called from any thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/compile/compiler.h"
#include "control/push/identity_signer.h"
#include "control/push/instance_registrar.h"
#include "control/push/tokens.h"

namespace weft::control::push {

struct PushOptions {
  std::string address = "127.0.0.1:7081";  // HOST:PORT; port 0 picks one
  // Plaintext gRPC (tests only). Otherwise TLS with cert_pem/key_pem.
  bool insecure = false;
  std::string cert_pem;  // the stream's server certificate chain (PEM)
  std::string key_pem;   // its private key (PEM)
  std::chrono::milliseconds coalesce_window{20};
  // Added (issue 6): told about proxies' Hellos, health reports and stream ends, on the push
  // thread (docs/registry.md "Instances from proxies"); null: nobody. Must outlive the server.
  InstanceRegistrar* registrar = nullptr;
  // A proxy whose stream is gone (or that sent nothing) for this long is stale: its
  // auto-registered instance turns UNHEALTHY, and is deregistered after twice this.
  std::chrono::milliseconds stale_after{30'000};
  // Added (issue 7): answers proxies' CertificateRequests (mesh identities); null: every request
  // is answered with an IdentityUpdate.error. Must outlive the server.
  IdentitySigner* identities = nullptr;
};

// What `weft proxies` shows for one connected proxy.
struct ProxyStatus {
  std::string resource;  // "mesh/M/virtualNode/N"
  std::string host, network, proxy_version, peer;
  uint64_t version_sent = 0;
  uint64_t version_acked = 0;  // 0: none yet
  uint64_t last_nack_version = 0;
  std::string last_nack_reason;
  int64_t connected_at = 0;  // unix seconds
  // Added (issue 7): the SPIFFE ID and notAfter (unix seconds) of the last identity certificate
  // issued on this stream; empty / 0: none.
  std::string identity;
  int64_t identity_expires_at = 0;
};

class PushServer {
 public:
  // `compiler`, `tokens` and `time` must outlive the server.
  PushServer(const compile::Compiler& compiler, Tokens& tokens, const TimeSource& time,
             PushOptions options);
  ~PushServer();  // stops if still running

  // Starts listening and the push thread; answers the bound port.
  Result<uint16_t> start();
  // Ends every stream (proxies reconnect to another server or later) and joins the threads.
  void stop();

  // Keys a committed write touched (NotifyingStore's listener).
  void onStoreChanged(const std::vector<std::string>& keys);

  // Connected proxies, ordered by resource then connected_at.
  std::vector<ProxyStatus> proxies() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::push
