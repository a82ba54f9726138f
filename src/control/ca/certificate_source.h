#pragma once
// The CA module's implementation of the compiler's certificate seam
// (compile::CertificateSource): ACM certificates and ACM PCA trust read from the CA's store
// records through CaApi, the leaf key opened with the KEK. What it answers goes only into the
// compiled config of the proxy whose spec references it; it is never logged.
//
// Thread-safety: as CaApi (any number of threads at once).

#include <string>
#include <vector>

#include "control/ca/ca_api.h"
#include "control/compile/certificate_source.h"

namespace weft::control::ca {

class CaCertificateSource final : public compile::CertificateSource {
 public:
  // `api` must outlive the source.
  explicit CaCertificateSource(const CaApi& api) : api_(api) {}

  Result<compile::CertMaterial> certificate(const std::string& arn) const override {
    return api_.proxyCertificate(arn);
  }
  Result<compile::TrustBundle> trustBundle(const std::vector<std::string>& ca_arns) const override {
    return api_.proxyTrustBundle(ca_arns);
  }

 private:
  const CaApi& api_;
};

}  // namespace weft::control::ca
