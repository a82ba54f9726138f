#pragma once
// The compiler's seam to the certificate authority: what an App Mesh spec's ACM references
// (`tls.certificate.acm.certificateArn`, `validation.trust.acm.certificateAuthorityArns`) stand
// for, as PEM the proxy config carries inline (TlsCertificate.certificate_chain_pem /
// private_key_pem, TlsValidation.trust_bundle_pem and crl_pem). Implemented by the CA module
// (ca::CaCertificateSource, src/control/ca/certificate_source.h); tests may fake it.
//
// Contract:
//  - Deterministic: the same store content gives the same bytes (the compiler's output must be).
//  - `depends_on` names the store keys the answer was read from, so the push server recompiles
//    (and re-pushes) when a certificate is renewed, a CA gets a new certificate or a CA's CRL
//    changes (a revocation).
//  - Errors name the ARN and say why (unknown, not ISSUED, CA without a certificate...); they
//    never carry key material. Error::code is kCompileUnsupported (422) for a reference that
//    cannot be served, so the push server logs it and the proxies keep their current config
//    (never kCompileNotFound, which means "the proxy's own resource does not exist yet").
//  - The private key is plaintext PEM only in the returned CertMaterial: the caller must not log
//    it; it goes only into the config of the proxy whose spec named the certificate.
//
// Thread-safety: implementations are called from compile(), which may run on several threads at
// once, so both methods must be safe to call concurrently.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::control::compile {

// An ACM certificate as a listener serves it.
struct CertMaterial {
  std::string certificate_chain_pem;  // the leaf first, then its issuers (up to the root)
  std::string private_key_pem;        // unencrypted PKCS#8 PEM
  std::vector<std::string> depends_on;
};

// The certificates a client trusts for a set of ACM PCA certificate authorities.
struct TrustBundle {
  std::string pem;  // each CA's certificate, then (for a subordinate) its chain; no duplicates
  std::vector<std::string> depends_on;
  // The current CRLs (PEM) of the weft CAs among those certificates, in the same order, no
  // duplicates (TlsValidation.crl_pem); empty when none has one (a mesh identity bundle).
  // Last and defaulted, so aggregate initialisations {pem, depends_on} keep their meaning.
  std::string crl_pem = {};
};

// The store key of `mesh`'s identity CA (written by the CA module, ca::MeshIdentityIssuer): a
// config that uses the mesh's identities depends on it.
inline std::string meshIdentityCaKey(std::string_view mesh) {
  return "ca/mesh/" + std::string(mesh);
}

class CertificateSource {
 public:
  virtual ~CertificateSource() = default;
  // `arn`: an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID) that must be
  // ISSUED (not failed, revoked or expired).
  virtual Result<CertMaterial> certificate(const std::string& arn) const = 0;
  // `ca_arns`: ACM PCA certificate authority ARNs, each with a certificate (ACTIVE, or DISABLED:
  // a disabled CA issues nothing new but what it issued is still valid).
  virtual Result<TrustBundle> trustBundle(const std::vector<std::string>& ca_arns) const = 0;
  // Added (issue 7): the root(s) of `mesh`'s identity CA (docs/security.md, "Mesh identities"),
  // for configs under `weft mesh policy M --mtls strict`. Read-only (never creates the CA: that
  // happens when the policy is set and on the first certificate request). An error for a mesh
  // without an identity CA; the compiler itself records the CA's store key in depends_on, so the
  // CA's creation recompiles. By default: no identity CA in this source.
  virtual Result<TrustBundle> meshTrustBundle(const std::string& mesh) const {
    return makeError("mesh \"" + mesh + "\": mesh identities need weft's certificate authority",
                     422);
  }
};

}  // namespace weft::control::compile
