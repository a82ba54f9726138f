#pragma once
// The CA module's implementation of the compiler's certificate seam
// (compile::CertificateSource): ACM certificates and ACM PCA trust read from the CA's store
// records through CaApi, the leaf key opened with the KEK; and the mesh identity CAs' roots
// through MeshIdentityIssuer. What it answers goes only into the
// compiled config of the proxy whose spec references it; it is never logged.
//
// Thread-safety: as CaApi (any number of threads at once).

#include <string>
#include <vector>

#include "control/ca/ca_api.h"
#include "control/ca/mesh_identity.h"
#include "control/compile/certificate_source.h"

namespace weft::control::ca {

class CaCertificateSource final : public compile::CertificateSource {
 public:
  // `api` must outlive the source.
  // `identities` (may be null: no mesh identities) too.
  explicit CaCertificateSource(const CaApi& api, const MeshIdentityIssuer* identities = nullptr)
      : api_(api), identities_(identities) {}

  Result<compile::CertMaterial> certificate(const std::string& arn) const override {
    return api_.proxyCertificate(arn);
  }
  Result<compile::TrustBundle> trustBundle(const std::vector<std::string>& ca_arns) const override {
    return api_.proxyTrustBundle(ca_arns);
  }
  Result<compile::TrustBundle> meshTrustBundle(const std::string& mesh) const override {
    if (identities_ == nullptr) return compile::CertificateSource::meshTrustBundle(mesh);
    auto pem = identities_->trustBundle(mesh);
    if (!pem) return makeError("mesh \"" + mesh + "\": " + pem.error().message, 422);
    return compile::TrustBundle{std::move(*pem), {meshCaKey(mesh)}};
  }

 private:
  const CaApi& api_;
  const MeshIdentityIssuer* identities_;
};

}  // namespace weft::control::ca
