#include "control/ca/pki.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cstring>

namespace weft::control::ca {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string sslError(std::string_view what) {
  std::string out(what);
  unsigned long e = ERR_get_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += ": ";
    out += buf;
  }
  ERR_clear_error();
  return out;
}

BioPtr memBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bioText(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
}

bool looksPem(std::string_view s) { return s.find("-----BEGIN ") != std::string_view::npos; }

// Adds one X509v3 extension by its config-file text ("critical,CA:TRUE").
bool addExt(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

// Builds GENERAL_NAMES from DNS / URI names (no config-string parsing, so no name can inject
// another entry).
GENERAL_NAMES* makeGeneralNames(const AltNames& names) {
  GENERAL_NAMES* gens = sk_GENERAL_NAME_new_null();
  auto add = [&](int type, const std::string& v) {
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, v.data(), static_cast<int>(v.size()));
    GENERAL_NAME* g = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(g, type, s);
    sk_GENERAL_NAME_push(gens, g);
  };
  for (const auto& d : names.dns) add(GEN_DNS, d);
  for (const auto& u : names.uri) add(GEN_URI, u);
  return gens;
}

void collectAltNames(const GENERAL_NAMES* gens, AltNames& out) {
  for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    int type = 0;
    auto* s = static_cast<ASN1_STRING*>(GENERAL_NAME_get0_value(g, &type));
    if (s == nullptr) continue;
    std::string v(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                  static_cast<size_t>(ASN1_STRING_length(s)));
    if (type == GEN_DNS) out.dns.push_back(v);
    if (type == GEN_URI) out.uri.push_back(v);
  }
}

int64_t asn1TimeToEpoch(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

std::optional<KeyAlgorithm> parseKeyAlgorithm(std::string_view n) {
  if (n == "RSA_2048") return KeyAlgorithm::kRsa2048;
  if (n == "RSA_3072") return KeyAlgorithm::kRsa3072;
  if (n == "RSA_4096") return KeyAlgorithm::kRsa4096;
  if (n == "EC_prime256v1") return KeyAlgorithm::kEcP256;
  if (n == "EC_secp384r1") return KeyAlgorithm::kEcP384;
  if (n == "EC_secp521r1") return KeyAlgorithm::kEcP521;
  return std::nullopt;
}

const char* keyAlgorithmName(KeyAlgorithm a) {
  switch (a) {
    case KeyAlgorithm::kRsa2048:
      return "RSA_2048";
    case KeyAlgorithm::kRsa3072:
      return "RSA_3072";
    case KeyAlgorithm::kRsa4096:
      return "RSA_4096";
    case KeyAlgorithm::kEcP256:
      return "EC_prime256v1";
    case KeyAlgorithm::kEcP384:
      return "EC_secp384r1";
    case KeyAlgorithm::kEcP521:
      return "EC_secp521r1";
  }
  return "";
}

bool isEcKey(EVP_PKEY* key) { return EVP_PKEY_is_a(key, "EC") == 1; }

std::optional<KeyAlgorithm> keyAlgorithmOf(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA") == 1) {
    switch (EVP_PKEY_get_bits(key)) {
      case 2048:
        return KeyAlgorithm::kRsa2048;
      case 3072:
        return KeyAlgorithm::kRsa3072;
      case 4096:
        return KeyAlgorithm::kRsa4096;
      default:
        return std::nullopt;
    }
  }
  if (isEcKey(key)) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1)
      return std::nullopt;
    std::string_view g(group, len);
    if (g == "prime256v1" || g == "P-256") return KeyAlgorithm::kEcP256;
    if (g == "secp384r1" || g == "P-384") return KeyAlgorithm::kEcP384;
    if (g == "secp521r1" || g == "P-521") return KeyAlgorithm::kEcP521;
  }
  return std::nullopt;
}

std::optional<SigningAlgorithm> parseSigningAlgorithm(std::string_view n) {
  SigningAlgorithm a;
  a.name = std::string(n);
  if (n == "SHA256WITHRSA" || n == "SHA256WITHECDSA") a.md = EVP_sha256();
  if (n == "SHA384WITHRSA" || n == "SHA384WITHECDSA") a.md = EVP_sha384();
  if (n == "SHA512WITHRSA" || n == "SHA512WITHECDSA") a.md = EVP_sha512();
  if (a.md == nullptr) return std::nullopt;
  a.ecdsa = n.find("ECDSA") != std::string_view::npos;
  return a;
}

SigningAlgorithm defaultSigningAlgorithm(EVP_PKEY* key) {
  auto alg = keyAlgorithmOf(key);
  if (alg == KeyAlgorithm::kEcP384) return *parseSigningAlgorithm("SHA384WITHECDSA");
  if (alg == KeyAlgorithm::kEcP521) return *parseSigningAlgorithm("SHA512WITHECDSA");
  if (isEcKey(key)) return *parseSigningAlgorithm("SHA256WITHECDSA");
  return *parseSigningAlgorithm("SHA256WITHRSA");
}

Result<KeyPtr> generateKey(KeyAlgorithm a) {
  EVP_PKEY* k = nullptr;
  switch (a) {
    case KeyAlgorithm::kRsa2048:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
      break;
    case KeyAlgorithm::kRsa3072:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
      break;
    case KeyAlgorithm::kRsa4096:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(4096));
      break;
    case KeyAlgorithm::kEcP256:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyAlgorithm::kEcP384:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeyAlgorithm::kEcP521:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
      break;
  }
  if (k == nullptr) return makeError(sslError("generating a key"));
  return KeyPtr(k);
}

Result<NamePtr> makeName(const std::vector<NameEntry>& entries) {
  NamePtr name(X509_NAME_new());
  for (const NameEntry& e : entries) {
    if (X509_NAME_add_entry_by_txt(name.get(), e.field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(e.value.data()),
                                   static_cast<int>(e.value.size()), -1, 0) != 1)
      return makeError(sslError("subject attribute " + e.field));
  }
  return name;
}

std::string nameToString(const X509_NAME* name) {
  BioPtr b(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(b.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  return bioText(b.get());
}

Result<CsrPtr> makeCsr(EVP_PKEY* key, const X509_NAME* subject, const SigningAlgorithm& alg) {
  CsrPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  if (X509_REQ_set_subject_name(req.get(), subject) != 1 ||
      X509_REQ_set_pubkey(req.get(), key) != 1)
    return makeError(sslError("building a CSR"));
  if (X509_REQ_sign(req.get(), key, alg.md) <= 0) return makeError(sslError("signing a CSR"));
  return req;
}

Result<CsrPtr> parseCsr(std::string_view data) {
  X509_REQ* r = nullptr;
  BioPtr b = memBio(data);
  if (looksPem(data))
    r = PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr);
  else
    r = d2i_X509_REQ_bio(b.get(), nullptr);
  if (r == nullptr) return makeError(sslError("not a PEM or DER certificate signing request"));
  CsrPtr req(r);
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (pub == nullptr || X509_REQ_verify(req.get(), pub) != 1)
    return makeError(sslError("the CSR's signature does not verify with its public key"));
  return req;
}

std::string csrToPem(X509_REQ* csr) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(b.get(), csr);
  return bioText(b.get());
}

AltNames csrAltNames(X509_REQ* csr) {
  AltNames out;
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(csr);
  if (exts == nullptr) return out;
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr));
  if (gens != nullptr) {
    collectAltNames(gens, out);
    GENERAL_NAMES_free(gens);
  }
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  return out;
}

Result<CertPtr> issueCertificate(const IssueParams& p) {
  if (p.subject == nullptr || p.subject_key == nullptr || p.issuer_key == nullptr ||
      p.alg.md == nullptr || p.serial.empty() || p.serial.size() > 20)
    return makeError("issueCertificate: incomplete parameters");
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(p.serial.data()),
                         static_cast<int>(p.serial.size()), nullptr);
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  X509_set_serialNumber(cert.get(), serial);
  ASN1_INTEGER_free(serial);
  X509_set_subject_name(cert.get(), p.subject);
  X509_set_issuer_name(cert.get(), p.issuer ? X509_get_subject_name(p.issuer) : p.subject);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(p.not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(p.not_after));
  if (X509_set_pubkey(cert.get(), p.subject_key) != 1)
    return makeError(sslError("setting the certificate's public key"));

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, p.issuer ? p.issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  bool ok = true;
  if (p.profile == Profile::kCa) {
    std::string bc = "critical,CA:TRUE";
    if (p.path_len >= 0) bc += ",pathlen:" + std::to_string(p.path_len);
    ok = ok && addExt(cert.get(), &ctx, NID_basic_constraints, bc);
    ok = ok &&
         addExt(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature,keyCertSign,cRLSign");
  } else {
    ok = ok && addExt(cert.get(), &ctx, NID_basic_constraints, "CA:FALSE");
    ok = ok && addExt(cert.get(), &ctx, NID_key_usage,
                      isEcKey(p.subject_key) ? "critical,digitalSignature"
                                             : "critical,digitalSignature,keyEncipherment");
    ok = ok && addExt(cert.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  ok = ok && addExt(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  if (p.issuer != nullptr)
    ok = ok && addExt(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  if (!ok) return makeError(sslError("adding certificate extensions"));
  if (!p.alt_names.dns.empty() || !p.alt_names.uri.empty()) {
    GENERAL_NAMES* gens = makeGeneralNames(p.alt_names);
    int added = X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT);
    GENERAL_NAMES_free(gens);
    if (added != 1) return makeError(sslError("adding subjectAltName"));
  }
  if (X509_sign(cert.get(), p.issuer_key, p.alg.md) <= 0)
    return makeError(sslError("signing the certificate"));
  return cert;
}

std::string randomSerial() {
  unsigned char b[16];
  do {
    if (RAND_bytes(b, sizeof b) != 1) abort();  // no entropy: nothing safe to sign with
    b[0] &= 0x7f;
  } while (b[0] == 0);
  return std::string(reinterpret_cast<char*>(b), sizeof b);
}

std::string serialHex(std::string_view s) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string serialColonHex(std::string_view s) {
  std::string h = serialHex(s), out;
  for (size_t i = 0; i < h.size(); i += 2) {
    if (i) out += ':';
    out += h.substr(i, 2);
  }
  return out;
}

std::string certSerial(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

std::optional<std::string> parseSerialHex(std::string_view text) {
  std::string digits;
  for (char c : text) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    digits += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (digits.empty() || digits.size() > 40) return std::nullopt;
  if (digits.size() % 2) digits.insert(digits.begin(), '0');
  std::string out;
  for (size_t i = 0; i < digits.size(); i += 2)
    out += static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16));
  size_t lead = 0;  // an INTEGER's minimal encoding: drop leading zero bytes
  while (lead + 1 < out.size() && out[lead] == '\0') ++lead;
  return out.substr(lead);
}

std::string certToPem(X509* cert) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), cert);
  return bioText(b.get());
}

Result<CertPtr> parseCert(std::string_view data) {
  BioPtr b = memBio(data);
  X509* x = looksPem(data) ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)
                           : d2i_X509_bio(b.get(), nullptr);
  if (x == nullptr) return makeError(sslError("not a PEM or DER certificate"));
  return CertPtr(x);
}

Result<std::vector<CertPtr>> parseCertChain(std::string_view pem) {
  std::vector<CertPtr> out;
  BioPtr b = memBio(pem);
  while (X509* x = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  ERR_clear_error();  // the read that ends the loop leaves "no start line"
  if (out.empty()) return makeError("no PEM certificate in the chain");
  return out;
}

int64_t certNotBefore(X509* cert) { return asn1TimeToEpoch(X509_get0_notBefore(cert)); }
int64_t certNotAfter(X509* cert) { return asn1TimeToEpoch(X509_get0_notAfter(cert)); }

bool isCaCert(X509* cert) {
  return X509_check_ca(cert) >= 1 && (X509_get_extension_flags(cert) & EXFLAG_CA);
}

int certPathLen(X509* cert) {
  long n = X509_get_pathlen(cert);
  return n < 0 ? -1 : static_cast<int>(n);
}

bool samePublicKey(EVP_PKEY* a, EVP_PKEY* b) { return EVP_PKEY_eq(a, b) == 1; }

std::string privateKeyToPem(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PKCS8PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bioText(b.get());
}

Result<KeyPtr> privateKeyFromPem(std::string_view pem) {
  BioPtr b = memBio(pem);
  EVP_PKEY* k = PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr);
  if (k == nullptr) return makeError(sslError("not a PEM private key"));
  return KeyPtr(k);
}

Result<std::string> encryptedPrivateKeyPem(EVP_PKEY* key, std::string_view passphrase) {
  BioPtr b(BIO_new(BIO_s_mem()));
  std::string pass(passphrase);
  int ok = PEM_write_bio_PKCS8PrivateKey(b.get(), key, EVP_aes_256_cbc(), pass.data(),
                                         static_cast<int>(pass.size()), nullptr, nullptr);
  OPENSSL_cleanse(pass.data(), pass.size());
  if (ok != 1) return makeError(sslError("encrypting the private key"));
  return bioText(b.get());
}

Result<KeyPtr> decryptPrivateKeyPem(std::string_view pem, std::string_view passphrase) {
  BioPtr b = memBio(pem);
  std::string pass(passphrase);
  EVP_PKEY* k = PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, pass.data());
  OPENSSL_cleanse(pass.data(), pass.size());
  if (k == nullptr) return makeError(sslError("cannot decrypt the private key"));
  return KeyPtr(k);
}

namespace {

struct PassphraseArg {
  std::string_view passphrase;
  bool asked = false;
};

// pem_password_cb: hands OpenSSL the caller's passphrase, never a prompt.
int passphraseCallback(char* buf, int size, int /*rwflag*/, void* u) {
  auto* arg = static_cast<PassphraseArg*>(u);
  arg->asked = true;
  if (arg->passphrase.empty() || arg->passphrase.size() > static_cast<size_t>(size)) return -1;
  std::memcpy(buf, arg->passphrase.data(), arg->passphrase.size());
  return static_cast<int>(arg->passphrase.size());
}

}  // namespace

Result<KeyPtr> readForeignPrivateKey(std::string_view pem, std::string_view passphrase) {
  BioPtr b = memBio(pem);
  PassphraseArg arg{passphrase};
  EVP_PKEY* k = PEM_read_bio_PrivateKey(b.get(), nullptr, passphraseCallback, &arg);
  if (k != nullptr) return KeyPtr(k);
  if (arg.asked && passphrase.empty()) {
    ERR_clear_error();
    return makeError("the private key is encrypted: its passphrase is needed", kKeyNeedsPassphrase);
  }
  if (arg.asked) {
    ERR_clear_error();
    return makeError("the private key does not decrypt with the passphrase given",
                     kKeyWrongPassphrase);
  }
  return makeError(sslError("no PEM private key found"));
}

Result<std::string> makeCrl(const CrlParams& p) {
  if (p.issuer == nullptr || p.issuer_key == nullptr || p.alg.md == nullptr)
    return makeError("makeCrl: incomplete parameters");
  CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), 1);  // v2
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(p.issuer));
  ASN1_TIME* t = ASN1_TIME_set(nullptr, static_cast<time_t>(p.this_update));
  X509_CRL_set1_lastUpdate(crl.get(), t);
  ASN1_TIME_set(t, static_cast<time_t>(p.next_update));
  X509_CRL_set1_nextUpdate(crl.get(), t);
  ASN1_TIME_free(t);
  for (const RevokedEntry& e : p.revoked) {
    X509_REVOKED* r = X509_REVOKED_new();
    BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.serial.data()),
                           static_cast<int>(e.serial.size()), nullptr);
    ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
    BN_free(bn);
    X509_REVOKED_set_serialNumber(r, serial);
    ASN1_INTEGER_free(serial);
    ASN1_TIME* when = ASN1_TIME_set(nullptr, static_cast<time_t>(e.revoked_at));
    X509_REVOKED_set_revocationDate(r, when);
    ASN1_TIME_free(when);
    if (e.reason != 0) {
      ASN1_ENUMERATED* reason = ASN1_ENUMERATED_new();
      ASN1_ENUMERATED_set(reason, e.reason);
      X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0);
      ASN1_ENUMERATED_free(reason);
    }
    X509_CRL_add0_revoked(crl.get(), r);
  }
  ASN1_INTEGER* number = ASN1_INTEGER_new();
  ASN1_INTEGER_set_int64(number, p.number);
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number, 0, 0);
  ASN1_INTEGER_free(number);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, p.issuer, nullptr, nullptr, crl.get(), 0);
  X509_EXTENSION* akid =
      X509V3_EXT_nconf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
  if (akid != nullptr) {
    X509_CRL_add_ext(crl.get(), akid, -1);
    X509_EXTENSION_free(akid);
  }
  ERR_clear_error();
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), p.issuer_key, p.alg.md) <= 0)
    return makeError(sslError("signing the CRL"));
  unsigned char* der = nullptr;
  int n = i2d_X509_CRL(crl.get(), &der);
  if (n <= 0) return makeError(sslError("encoding the CRL"));
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

Result<CrlPtr> parseCrlDer(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509_CRL* c = d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
  if (c == nullptr) return makeError(sslError("not a DER CRL"));
  return CrlPtr(c);
}

std::string crlDerToPem(std::string_view der) {
  std::string out = "-----BEGIN X509 CRL-----\n";
  std::string b64 = base64Encode(der);
  for (size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  out += "-----END X509 CRL-----\n";
  return out;
}

std::string base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  std::string clean;
  for (char c : text)
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') clean += c;
  if (clean.size() % 4 != 0) return std::nullopt;
  for (size_t i = 0; i < clean.size(); ++i) {
    char c = clean[i];
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' ||
              (c == '=' && i + 2 >= clean.size());
    if (!ok) return std::nullopt;
  }
  if (clean.empty()) return std::string();
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (clean.back() == '=') ++pad;
  if (clean.size() >= 2 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace weft::control::ca
