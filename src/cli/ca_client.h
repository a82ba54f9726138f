#pragma once
// The CLI's side of the certificate authority (`weft ca ...` and the ACM / ACM PCA resources of
// `weft stack`): multi-call flows over the server's ACM PCA ("ACMPrivateCA.*", SigV4 service
// "acm-pca") and ACM ("CertificateManager.*", service "acm") JSON 1.1 APIs, as the AWS CLI
// would run them. docs/ca.md describes the server side.
//
// Not thread-safe (one ApiClient, one flow at a time).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/client.h"
#include "common/result.h"

namespace weft::cli::ca {

inline constexpr std::string_view kPcaService = "acm-pca";
inline constexpr std::string_view kAcmService = "acm";

// ACM PCA / ACM calls: `operation` without the prefix ("DescribeCertificateAuthority").
Result<Value> pca(ApiClient& api, std::string_view operation, const Value& body);
Result<Value> acm(ApiClient& api, std::string_view operation, const Value& body);

// "CN=example.com,O=Acme,C=US" → ACM PCA's ASN1Subject {CommonName, Organization, Country}.
// Keys: CN, O, OU, C, ST, L, DNQ (dnQualifier), SERIALNUMBER, T (title), SN (surname),
// GN (givenName), INITIALS, PSEUDONYM, GENERATIONQUALIFIER, case-insensitive; values may hold
// escaped commas ("\,"). Unknown keys, empty values and repeated keys are errors.
Result<Value> parseSubject(std::string_view text);

// The signing algorithm a CA with `key_algorithm` uses by default: SHA256WITHRSA for RSA keys,
// SHA256WITHECDSA for EC_prime256v1, SHA384WITHECDSA for EC_secp384r1. nullopt when unknown.
std::optional<std::string> defaultSigningAlgorithm(std::string_view key_algorithm);

struct CreateCaOptions {
  Value subject;                           // ASN1Subject
  std::string key_algorithm = "RSA_2048";  // RSA_2048, RSA_4096, EC_prime256v1, EC_secp384r1
  std::string signing_algorithm;           // "" → defaultSigningAlgorithm(key_algorithm)
  std::optional<int64_t> validity_days;    // nullopt: root 10 years; subordinate 5 years or
                                           // up to the parent's expiry, whichever is first
  std::string parent_arn;                  // "" → a ROOT CA
  int path_len = 0;                        // subordinate: SubordinateCACertificate_PathLenN
};

// Creates a CA and activates it: CreateCertificateAuthority, GetCertificateAuthorityCsr,
// IssueCertificate (a root signs its own CSR with the RootCACertificate/V1 template; a
// subordinate's CSR is signed by the parent with SubordinateCACertificate_PathLenN/V1),
// GetCertificate, ImportCertificateAuthorityCertificate (with the parent's chain). Answers the
// new CA's ARN; the CA is ACTIVE. When a step after the create fails, the error names the CA's
// ARN (it stays PENDING_CERTIFICATE).
Result<std::string> createCa(ApiClient& api, const CreateCaOptions& options);

// Disables the CA when it is ACTIVE (DeleteCertificateAuthority refuses an active CA), then
// deletes it with the restore window (7-30 days; nullopt: the server's default, 30). Answers
// the RestorableUntil time (epoch seconds, 0 when the answer lacks it).
Result<int64_t> deleteCa(ApiClient& api, const std::string& ca_arn,
                         std::optional<int64_t> restore_days);

// ACM RequestCertificate for `domains` (the first is DomainName, all are SANs) from the private
// CA; answers the certificate's ARN. `validity_days`: weft's WeftValidityInDays extension
// (docs/ca.md); nullopt: ACM's 395 days. A certificate that comes out FAILED (the CA is not
// ACTIVE, say) is an error naming its ARN and FailureReason.
Result<std::string> requestCertificate(ApiClient& api, const std::string& ca_arn,
                                       const std::vector<std::string>& domains,
                                       const std::string& key_algorithm,
                                       std::optional<int64_t> validity_days = std::nullopt);

// weft's import of an external CA with its key (POST /weft/v1/certificate-authorities/import,
// SigV4 service "weft"; docs/ca.md): PEM texts as read from the files, `passphrase` for an
// encrypted key ("" for none). Answers the new CA's ARN and its type (ROOT or SUBORDINATE).
struct ImportedCa {
  std::string arn;
  std::string type;
};
Result<ImportedCa> importCa(ApiClient& api, const std::string& certificate_pem,
                            const std::string& private_key_pem, const std::string& chain_pem,
                            const std::string& passphrase);

struct Pem {
  std::string certificate;
  std::string chain;
  std::string private_key;  // ExportCertificate: encrypted PKCS#8 PEM
};

// The PEM certificate (and chain) behind an ARN: a CA ARN (its CA certificate), an ACM
// certificate ARN, or an ACM PCA certificate ARN (…/certificate-authority/ID/certificate/SERIAL).
Result<Pem> certificatePem(ApiClient& api, const std::string& arn);

// ACM ExportCertificate with `passphrase` (4-128 bytes).
Result<Pem> exportCertificate(ApiClient& api, const std::string& arn,
                              const std::string& passphrase);

// Revokes an ACM certificate (through its issuing CA: ACM PCA RevokeCertificate with its serial)
// or an ACM PCA certificate ARN. `reason`: ACM PCA's RevocationReason (UNSPECIFIED, ...).
Status revokeCertificate(ApiClient& api, const std::string& arn, const std::string& reason);

// Every CA (ListCertificateAuthorities, all pages).
Result<Value> listCas(ApiClient& api);
// Every ACM certificate of every key type (ListCertificates, all pages; ACM itself lists only
// RSA_1024/RSA_2048 without Includes.keyTypes). With `ca_arn`, only those it issued
// (DescribeCertificate of each).
Result<Value> listCertificates(ApiClient& api, const std::string& ca_arn);

// The kind of ARN: "ca" (arn:aws:acm-pca:…:certificate-authority/ID), "pca-certificate"
// (…/certificate/SERIAL), "acm-certificate" (arn:aws:acm:…:certificate/ID), or "" for neither.
std::string arnKind(std::string_view arn);

}  // namespace weft::cli::ca
