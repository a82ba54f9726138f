#pragma once
// Test support for the compiler's mesh identity tests (compiler_identity_test.cc,
// compiler_sds_test.cc): a CertificateSource with only the mesh identity part — one fixed root
// for mesh "m".

#include <string>
#include <vector>

#include "control/compile/compiler.h"

namespace weft::control::compile::testing {

inline constexpr char kRoot[] =
    "-----BEGIN CERTIFICATE-----\nMESH ROOT\n-----END CERTIFICATE-----\n";

// Only the mesh identity part of the seam: one fixed root for mesh "m".
class FakeIdentities final : public CertificateSource {
 public:
  Result<CertMaterial> certificate(const std::string&) const override {
    return makeError("no ACM here", kCompileUnsupported);
  }
  Result<TrustBundle> trustBundle(const std::vector<std::string>&) const override {
    return makeError("no ACM PCA here", kCompileUnsupported);
  }
  Result<TrustBundle> meshTrustBundle(const std::string& mesh) const override {
    if (mesh != "m" || !has_ca) return makeError("mesh \"" + mesh + "\" has no identity CA yet");
    return TrustBundle{kRoot, {meshIdentityCaKey(mesh)}};
  }
  bool has_ca = true;
};

}  // namespace weft::control::compile::testing
