#pragma once
// The certificate authority of `weft server`: AWS Certificate Manager Private CA (JSON 1.1,
// X-Amz-Target "ACMPrivateCA.<Operation>", API 2017-08-22) and AWS Certificate Manager for
// private certificates (X-Amz-Target "CertificateManager.<Operation>", API 2015-12-08), with
// their request and response shapes and error names (botocore's service models are the
// reference). docs/ca.md lists the operations and what weft does differently.
//
// Store layout (values are JSON; private keys only ever sealed with the Kek, AAD = the ARN):
//   ca/kek-check                      a sealed constant: proves the KEK is the one keys were
//                                     sealed with (checked by init())
//   ca/pca/<ca-id>                    one CA: configuration, status, sealed key, CSR,
//                                     certificate and chain (PEM)
//   ca/pca-cert/<ca-id>/<serial-hex>  one certificate the CA issued (PEM, status, revocation)
//   ca/pca-crl/<ca-id>                the CA's current CRL (DER base64 and PEM) and its revoked
//                                     list; rewritten by every revocation under a precondition
//                                     on its revision, so racing revocations serialise
//   ca/acm/<cert-id>                  one ACM certificate (names, sealed key, PEM, status)
//   ca/token/<op>/<sha256(token)>     idempotency tokens: the request digest and the answer
//
// Writes are optimistic, as in the App Mesh model: a write names the revisions it read (the
// issuing CA's record is pinned with a check so a disable or delete cannot race an issuance)
// and retries on conflict.
//
// Thread-safety: handle*() may be called from any number of threads at once.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/api/api_types.h"
#include "control/ca/kek.h"
#include "control/compile/certificate_source.h"
#include "control/store/store.h"

namespace weft::control::ca {

struct Options {
  std::string region = "us-west-2";
  std::string account_id = "000000000000";
};

class CaApi {
 public:
  // `store`, `time` and `kek` must outlive the API.
  CaApi(Store& store, const TimeSource& time, const Kek& kek, Options options);
  ~CaApi();

  // Checks that `kek` opens what the store holds (writing the check record on first use). A
  // server must not start with a KEK that does not match: every CA key would be unreadable.
  Status init();

  // X-Amz-Target "ACMPrivateCA.*" and "CertificateManager.*" requests.
  ApiResponse handlePca(const ApiRequest& request);
  ApiResponse handleAcm(const ApiRequest& request);

  // For the config compiler only (through CaCertificateSource, certificate_source.h); never
  // answered by any API, never logged. An ACM certificate's chain (leaf, then its CA's
  // certificate and chain) and its key opened with the KEK; depends_on holds "ca/acm/<id>" and
  // the PCA record of its serial (revocation). Fails (compile::kCompileUnsupported, the ARN in
  // the message) when the ARN is not an ACM certificate of this server's region and account,
  // does not exist, or is not ISSUED (FAILED, REVOKED, EXPIRED).
  Result<compile::CertMaterial> proxyCertificate(const std::string& acm_arn) const;
  // The certificates of ACM PCA CAs (each CA's certificate, then its chain; duplicates dropped;
  // in the given order) for a client's trust, with the current CRL (PEM) of each of those CAs
  // and of the weft CAs in their chains (crl_pem, same order); depends_on holds each
  // "ca/pca/<id>" and "ca/pca-crl/<id>" (plus "ca/pca/" when a chain is involved). Fails
  // (kCompileUnsupported) for an ARN that is not a CA of this server, a CA without a certificate
  // (PENDING_CERTIFICATE...), or one that is not ACTIVE or DISABLED.
  Result<compile::TrustBundle> proxyTrustBundle(const std::vector<std::string>& ca_arns) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::ca
