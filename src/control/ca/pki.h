#pragma once
// The X.509 work of weft's certificate authority, over OpenSSL 3's EVP and X509 APIs: keys,
// CSRs, certificates signed by a CA key (or self-signed), CRLs, and the PEM / encrypted PKCS#8
// encodings the ACM and ACM PCA APIs hand out. No state, no store: ca_api.cc decides what to
// sign, this file only does the signing.
//
// Thread-safety: every function is reentrant (OpenSSL 3 objects are not shared between calls).

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace weft::control::ca {

struct EvpKeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct X509ReqFree {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
struct X509CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct X509NameFree {
  void operator()(X509_NAME* n) const { X509_NAME_free(n); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, EvpKeyFree>;
using CertPtr = std::unique_ptr<X509, X509Free>;
using CsrPtr = std::unique_ptr<X509_REQ, X509ReqFree>;
using CrlPtr = std::unique_ptr<X509_CRL, X509CrlFree>;
using NamePtr = std::unique_ptr<X509_NAME, X509NameFree>;

// ACM PCA's KeyAlgorithm names ("RSA_2048", "RSA_4096", "EC_prime256v1", "EC_secp384r1"; ACM also
// has "RSA_3072" and "EC_secp521r1").
enum class KeyAlgorithm { kRsa2048, kRsa3072, kRsa4096, kEcP256, kEcP384, kEcP521 };
std::optional<KeyAlgorithm> parseKeyAlgorithm(std::string_view name);
const char* keyAlgorithmName(KeyAlgorithm a);
// The algorithm of an existing key, or nullopt for a kind weft does not issue.
std::optional<KeyAlgorithm> keyAlgorithmOf(EVP_PKEY* key);
bool isEcKey(EVP_PKEY* key);

// ACM PCA's SigningAlgorithm ("SHA256WITHRSA", "SHA384WITHECDSA", ...): the digest, and whether it
// is for EC (ECDSA) or RSA keys.
struct SigningAlgorithm {
  const EVP_MD* md = nullptr;
  bool ecdsa = false;
  std::string name;
};
std::optional<SigningAlgorithm> parseSigningAlgorithm(std::string_view name);
// The natural signing algorithm for a key: SHA256WITHRSA, SHA256WITHECDSA (SHA384WITHECDSA for
// P-384, SHA512WITHECDSA for P-521).
SigningAlgorithm defaultSigningAlgorithm(EVP_PKEY* key);

Result<KeyPtr> generateKey(KeyAlgorithm algorithm);

// One attribute of a distinguished name: OpenSSL short or long name ("CN", "O", "C",
// "serialNumber", or a dotted OID) and its UTF-8 value.
struct NameEntry {
  std::string field;
  std::string value;
};
Result<NamePtr> makeName(const std::vector<NameEntry>& entries);
// RFC 2253 form ("CN=example.com,O=Example"), as ACM's DescribeCertificate shows it.
std::string nameToString(const X509_NAME* name);

// A CSR for `key` with `subject`, signed with `alg`.
Result<CsrPtr> makeCsr(EVP_PKEY* key, const X509_NAME* subject, const SigningAlgorithm& alg);
// Parses a CSR in PEM or DER and checks its self-signature (MalformedCSR otherwise).
Result<CsrPtr> parseCsr(std::string_view pem_or_der);
std::string csrToPem(X509_REQ* csr);
// The DNS and URI names of a CSR's subjectAltName extension request.
struct AltNames {
  std::vector<std::string> dns;
  std::vector<std::string> uri;
};
AltNames csrAltNames(X509_REQ* csr);

enum class Profile {
  kEndEntity,  // CA:FALSE; digitalSignature, keyEncipherment; serverAuth, clientAuth
  kCa,         // CA:TRUE (pathlen if >= 0); keyCertSign, cRLSign, digitalSignature
};

struct IssueParams {
  const X509_NAME* subject = nullptr;  // required
  EVP_PKEY* subject_key = nullptr;     // the public key to certify; required
  X509* issuer = nullptr;              // nullptr: self-signed (subject is the issuer)
  EVP_PKEY* issuer_key = nullptr;      // required; signs
  SigningAlgorithm alg;
  std::string serial;      // raw big-endian bytes, 1-20 of them, first byte < 0x80
  int64_t not_before = 0;  // epoch seconds
  int64_t not_after = 0;
  Profile profile = Profile::kEndEntity;
  int path_len = -1;  // kCa only; -1 = no constraint
  AltNames alt_names;
};
Result<CertPtr> issueCertificate(const IssueParams& p);

// 16 random bytes with the top bit clear and the first byte non-zero (so 128 bits of
// randomness and a positive INTEGER of exactly 16 bytes).
std::string randomSerial();
// "0a1b..." (lower-case hex, no separators) and "0a:1b:..." of a serial's bytes.
std::string serialHex(std::string_view serial_bytes);
std::string serialColonHex(std::string_view serial_bytes);
// The serial bytes of a certificate.
std::string certSerial(X509* cert);
// Parses "0a1b..." or "0a:1b:..." (either case) to bytes; nullopt when malformed.
std::optional<std::string> parseSerialHex(std::string_view text);

std::string certToPem(X509* cert);
// Parses one certificate in PEM or DER.
Result<CertPtr> parseCert(std::string_view pem_or_der);
// Parses every certificate of a PEM bundle (at least one).
Result<std::vector<CertPtr>> parseCertChain(std::string_view pem);
int64_t certNotBefore(X509* cert);
int64_t certNotAfter(X509* cert);
bool isCaCert(X509* cert);
// The pathLenConstraint of a CA certificate, or -1 when it has none.
int certPathLen(X509* cert);
// Whether two keys hold the same public key.
bool samePublicKey(EVP_PKEY* a, EVP_PKEY* b);

// Unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY") — only ever passed to Kek::seal(), never stored
// or sent as it is.
std::string privateKeyToPem(EVP_PKEY* key);
Result<KeyPtr> privateKeyFromPem(std::string_view pem);
// Encrypted PKCS#8 PEM ("BEGIN ENCRYPTED PRIVATE KEY"; PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC),
// as ACM's ExportCertificate answers; `openssl pkey -passin pass:...` reads it.
Result<std::string> encryptedPrivateKeyPem(EVP_PKEY* key, std::string_view passphrase);
Result<KeyPtr> decryptPrivateKeyPem(std::string_view pem, std::string_view passphrase);
// Reads a private key someone else made (`weft ca import`): the first PEM private key of `pem`
// (other PEM blocks, such as certificates or EC PARAMETERS, are skipped) in any form OpenSSL
// reads — PKCS#8, encrypted PKCS#8, traditional RSA / EC, also encrypted. `passphrase` decrypts
// an encrypted key and is ignored for a plain one; it is never prompted for. Errors (the key's
// text is never in a message): kKeyNeedsPassphrase, kKeyWrongPassphrase, or code 0 when `pem`
// holds no private key.
inline constexpr int kKeyNeedsPassphrase = 3001;
inline constexpr int kKeyWrongPassphrase = 3002;
Result<KeyPtr> readForeignPrivateKey(std::string_view pem, std::string_view passphrase);

// RFC 5280 CRL reason codes (CRLReason).
struct RevokedEntry {
  std::string serial;  // raw bytes
  int64_t revoked_at = 0;
  int reason = 0;
};
struct CrlParams {
  X509* issuer = nullptr;
  EVP_PKEY* issuer_key = nullptr;
  SigningAlgorithm alg;
  int64_t this_update = 0;
  int64_t next_update = 0;
  int64_t number = 1;  // cRLNumber
  std::vector<RevokedEntry> revoked;
};
// A signed v2 CRL, as DER.
Result<std::string> makeCrl(const CrlParams& p);
Result<CrlPtr> parseCrlDer(std::string_view der);
std::string crlDerToPem(std::string_view der);

std::string base64Encode(std::string_view bytes);
// Standard alphabet with padding; whitespace ignored. nullopt when malformed.
std::optional<std::string> base64Decode(std::string_view text);

}  // namespace weft::control::ca
