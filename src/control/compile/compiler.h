#pragma once
// The config compiler: App Mesh resources (and the registry's instances) -> the ProxyConfig one
// proxy runs (api/weft/v1/config.proto). The rules, App Mesh's implicit behaviour and the naming
// are in docs/compilation.md.
//
// Contract:
//  - Deterministic: the same store content gives the same message, field for field (so the same
//    bytes under deterministic serialization: see configHash).
//  - Scoped: a virtual node's config holds its own listeners and only the backends it declares
//    (and their providers' endpoints), never the rest of the mesh.
//  - Incremental: CompileResult::depends_on lists store key prefixes; a proxy's config can only
//    change when a key under one of them changes, so the push server recompiles only the proxies
//    whose prefixes a write touched.
//
// Thread-safety: compile() only reads the store and may run on several threads at once.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "control/compile/certificate_source.h"
#include "control/model/resource_keys.h"
#include "control/store/store.h"
#include "meshconfig/meshconfig.h"
#include "weft/v1/config.pb.h"

namespace weft::control::compile {

// Who a proxy is: a virtual node or a virtual gateway of a mesh.
struct ProxyIdentity {
  appmesh::Kind kind = appmesh::Kind::kVirtualNode;  // kVirtualNode or kVirtualGateway
  std::string mesh;
  std::string name;

  bool operator==(const ProxyIdentity&) const = default;
  // "mesh/M/virtualNode/N" or "mesh/M/virtualGateway/G".
  std::string resource() const;
};

// Parses "mesh/M/virtualNode/N", "mesh/M/virtualGateway/G" or a full App Mesh ARN of either (any
// region and account: the proxy's environment variable may carry the ARN from its old task
// definition). The error says which forms are accepted.
Result<ProxyIdentity> parseProxyResource(std::string_view text);

struct CompileOptions {
  std::string region = "us-west-2";
  std::string account_id = "000000000000";
};

struct CompileResult {
  v1::ProxyConfig config;
  // Store key prefixes this config was read from (sorted, unique).
  std::vector<std::string> depends_on;
  // What was left out and why (a backend that does not exist yet, a target without endpoints, a
  // match weft cannot express...), in the order met; for `weft describe proxy-config`.
  std::vector<std::string> warnings;
};

// Error::code of compile(): the resource does not exist (the proxy may connect before its node is
// created; the push server waits for it) or the mesh references something broken.
inline constexpr int kCompileNotFound = 404;
// Error::code of compile(): the resource uses something weft cannot honour safely (an SDS
// certificate, an ACM certificate that is not ISSUED or with no certificate source, TLS settings
// that differ between a node's listeners); the message says which field.
inline constexpr int kCompileUnsupported = 422;

class Compiler {
 public:
  // `store` (and `certificates` when given) must outlive the compiler. Without `certificates`,
  // ACM references in specs fail the compilation (kCompileUnsupported); with it, an ACM listener
  // certificate compiles to inline PEM (certificate_chain_pem + private_key_pem) and ACM PCA
  // trust to trust_bundle_pem with the CAs' CRLs in crl_pem, and the certificate's, CAs' and CRLs'
  // store keys join depends_on.
  Compiler(Store& store, CompileOptions options, const CertificateSource* certificates = nullptr);

  Result<CompileResult> compile(const ProxyIdentity& who) const;

 private:
  Store& store_;
  CompileOptions options_;
  const CertificateSource* certificates_;
};

// Replaces every non-empty TlsCertificate.private_key_pem of `config` with "[redacted]": for
// answers of APIs and logs (`weft describe proxy-config`). Only the proxy's own stream carries
// the key.
void redactSecrets(v1::ProxyConfig& config);

// ConfigUpdate.hash of a config: meshconfig::configHash (the one weft-proxy checks it with).
using meshconfig::configHash;

}  // namespace weft::control::compile
