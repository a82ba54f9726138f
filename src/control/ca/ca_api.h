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
//                                     list; rewritten by every revocation and re-signing
//                                     (resignDueCrls) under a precondition on its revision, so
//                                     racing writers serialise
//   ca/acm/<cert-id>                  one ACM certificate (names, sealed key, PEM, status;
//                                     ValidityDays when RequestCertificate asked for one)
//   ca/token/<op>/<sha256(token)>     idempotency tokens: the request digest and the answer
//
// Writes are optimistic, as in the App Mesh model: a write names the revisions it read (the
// issuing CA's record is pinned with a check so a disable or delete cannot race an issuance)
// and retries on conflict.
//
// Thread-safety: handle*() may be called from any number of threads at once.

#include <chrono>
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

// Error::code of CaApi::renewAcmCertificate() when the renewal was tried and FAILED (the CA
// cannot issue): the failure is recorded in the certificate's RenewalSummary, the certificate
// keeps its current key and certificate, and the message names ACM's reason.
inline constexpr int kAcmRenewalFailed = 4601;

// ACM's managed renewal of private certificates starts 60 days before notAfter.
inline constexpr std::chrono::seconds kAcmRenewBefore{int64_t{60} * 86400};

// When a certificate valid from `not_before` to `not_after` (Unix seconds) is due for renewal:
// `renew_before` before notAfter, but never earlier than two thirds into its lifetime (a
// certificate shorter than three windows is renewed when a third of its lifetime is left), so a
// freshly renewed certificate is never due at once.
int64_t acmRenewalDueAt(int64_t not_before, int64_t not_after, std::chrono::seconds renew_before);

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

  // weft's own route, for users who bring their own PKI (ACM PCA has no such operation;
  // docs/ca.md "Importing an existing CA"). SigV4-signed like every /weft/v1 path; JSON:
  //   POST /weft/v1/certificate-authorities/import
  //     {"Certificate": PEM, "PrivateKey": PEM (PKCS#8 or traditional, may be encrypted),
  //      "Passphrase": "..." (for an encrypted key), "CertificateChain": PEM (a subordinate's
  //      issuers up to a self-signed root), "SigningAlgorithm": "SHA384WITHRSA" (default: the
  //      key's natural one), "RevocationConfiguration": as CreateCertificateAuthority's}
  //   -> 200 {"CertificateAuthorityArn": ARN, "Type": "ROOT" | "SUBORDINATE"}
  // The CA is ROOT when the certificate is self-signed by the key, else SUBORDINATE; ACTIVE,
  // with an empty CRL and its key sealed with the KEK: from then on it is a CA like one made
  // with CreateCertificateAuthority. Errors (ACM PCA's names, 400): MalformedCertificateException,
  // CertificateMismatchException (the key is not the certificate's), InvalidRequestException
  // (not a CA certificate, no keyCertSign / cRLSign in its keyUsage, no subjectKeyIdentifier,
  // expired or not yet valid, a key type weft does not use, an encrypted key without or with a
  // wrong passphrase, a chain missing or not verifying, a chain for a root),
  // InvalidArgsException (a SigningAlgorithm of the other key family), ValidationException;
  // 405 for another method. The key and the passphrase are never logged or answered.
  static bool handles(std::string_view path);
  ApiResponse handleWeft(const ApiRequest& request);

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

  // ---- renewal and CRL upkeep (docs/ca.md "Scheduled work") ----

  // Renews ACM certificate `certificate_id` (the UUID that ends its ARN) as RenewCertificate
  // does (it calls this): a new key and a certificate for the same names from its CA, under a
  // precondition on the record it read (and on the CA's), retried on conflict; the renewal is
  // recorded in RenewalSummary (SUCCESS, UpdatedAt `now`). The certificate must be ISSUED or
  // EXPIRED (InvalidStateException otherwise). A CA that cannot issue (not ACTIVE, gone, or
  // expiring before the new certificate would) fails the renewal: RenewalSummary FAILED with
  // ACM's reason (PCA_INVALID_STATE, PCA_RESOURCE_NOT_FOUND, PCA_INVALID_DURATION), the current
  // certificate kept, and the error code kAcmRenewalFailed. Proxies get the new certificate by
  // the usual recompilation of configs that depend on "ca/acm/<id>".
  Status renewAcmCertificate(const std::string& certificate_id,
                             std::chrono::system_clock::time_point now);

  // Maintenance task: renews every ACM certificate that is ISSUED (or expired unrenewed, after a
  // stopped server) and due at `now` (acmRenewalDueAt), through renewAcmCertificate's path.
  // Revoked certificates are left alone. A certificate whose renewal FAILED stays due and is
  // tried again at the next round (the record is rewritten only when the reason changes). Fails
  // (after trying every due certificate) naming the certificates that could not be renewed.
  Status renewDueAcmCertificates(std::chrono::system_clock::time_point now,
                                 std::chrono::seconds renew_before = kAcmRenewBefore);

  // Maintenance task: re-signs the CRL of every CA that has one and is ACTIVE or DISABLED once
  // half of the CRL's validity (thisUpdate to nextUpdate) has passed: the same entries,
  // cRLNumber + 1, thisUpdate now, nextUpdate now + the CA's CRL period. Written under the same
  // precondition on the CRL record as revocations, so neither loses the other's entries.
  Status resignDueCrls(std::chrono::system_clock::time_point now);

  // CA rotation (docs/security.md "Rotation"; ca/rotation.h drives it). Answers are the JSON
  // bodies of /weft/v1/ca-rotations: {"certificateAuthorityArn", "phase" (NONE, PUBLISHING,
  // SIGNING_NEW), "startedAt", "switchedAt", "retireAt", "trustBundle": [{"role", "serial",
  // "subject", "notBefore", "notAfter"}], "lastRotation"}. Errors carry an HTTP status in
  // Error::code: 400 (malformed ARN, a subordinate whose parent is not a weft CA), 404 (no such
  // CA), 409 (a rotation in progress, a CA not ACTIVE, retire-now before SIGNING_NEW), 500.
  //
  // Starts a rotation: a new key and CA certificate (same subject, new serial; a root signs
  // itself, a subordinate is signed by its weft parent with the same path length); PUBLISHING.
  Result<std::string> startRotation(const std::string& ca_arn);
  Result<std::string> rotationStatus(const std::string& ca_arn) const;
  // Ends a SIGNING_NEW rotation now: ACM certificates still of the old key are re-issued, then
  // the old root leaves the trust bundles (leaves it signed no longer verify).
  Result<std::string> retireRotationNow(const std::string& ca_arn);
  // For the maintenance task: ARNs of the CAs with a rotation in progress.
  Result<std::vector<std::string>> rotatingCas() const;
  // One maintenance step of a CA's rotation: PUBLISHING -> SIGNING_NEW when `may_switch`; in
  // SIGNING_NEW re-issue the ACM certificates of the old key and retire the old root once every
  // non-revoked certificate it signed has expired. Answers the phase after it.
  Result<std::string> advanceRotation(const std::string& ca_arn, bool may_switch);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::ca
