#pragma once
// How the config stream answers a proxy's CertificateRequest (api/weft/v1/stream.proto,
// docs/security.md "Mesh identities"). The push server hands every request of an accepted stream
// to an IdentitySigner with the identity the stream's token is bound to; the signer decides the
// names from that identity alone.
//
// MeshIdentitySigner, the server's: the mesh's policy must not be `mtls off`; the names are the
// SPIFFE ID of the resource and (for a virtual node) its discovery name; the CA is the mesh's
// identity CA (ca::MeshIdentityIssuer, made on first use).
//
// Thread-safety: sign() may run on several gRPC threads at once.

#include <chrono>
#include <string_view>

#include "common/result.h"
#include "control/ca/mesh_identity.h"
#include "control/compile/compiler.h"
#include "control/store/store.h"
#include "weft/v1/stream.pb.h"

namespace weft::control::push {

class IdentitySigner {
 public:
  virtual ~IdentitySigner() = default;
  // The IdentityUpdate for `csr_pem` from a proxy of `who`. An error with code
  // ca::kIdentityForeignName (the CSR asks for another identity's names) makes the stream end
  // with PERMISSION_DENIED; any other error is sent back as IdentityUpdate.error.
  virtual Result<v1::IdentityUpdate> sign(const compile::ProxyIdentity& who,
                                          std::string_view csr_pem) = 0;
};

class MeshIdentitySigner final : public IdentitySigner {
 public:
  // `store` and `issuer` must outlive the signer. `expiry_warning` goes to the proxies
  // (IdentityUpdate.expiry_warning_seconds; 0: a quarter of the lifetime).
  MeshIdentitySigner(Store& store, ca::MeshIdentityIssuer& issuer,
                     std::chrono::seconds expiry_warning = std::chrono::seconds(0))
      : store_(store), issuer_(issuer), expiry_warning_(expiry_warning) {}

  Result<v1::IdentityUpdate> sign(const compile::ProxyIdentity& who,
                                  std::string_view csr_pem) override;

 private:
  Store& store_;
  ca::MeshIdentityIssuer& issuer_;
  std::chrono::seconds expiry_warning_;
};

}  // namespace weft::control::push
