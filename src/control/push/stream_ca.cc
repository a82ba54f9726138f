#include "control/push/stream_ca.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>

#include <chrono>

#include "common/json.h"
#include "control/ca/pki.h"
#include "control/stacks/json_value.h"

namespace weft::control::push {
namespace {

constexpr int64_t kCaValidity = int64_t{20} * 365 * 24 * 3600;
constexpr int64_t kLeafValidity = int64_t{2} * 365 * 24 * 3600;
constexpr int kMaxRetries = 5;

int64_t unixNow(const TimeSource& time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch())
      .count();
}

struct Loaded {
  ca::CertPtr cert;
  ca::KeyPtr key;
  std::string cert_pem;
};

Result<Loaded> parseCa(const std::string& json, const ca::Kek& kek) {
  auto v = stacks::parseJson(json);
  if (!v || !v->isObject()) return makeError("the stream CA record (push/ca) is corrupt");
  const stacks::Value* cert = v->find("certificate");
  const stacks::Value* key = v->find("key");
  if (!cert || !key) return makeError("the stream CA record (push/ca) lacks certificate or key");
  auto key_pem = kek.open(key->str(), kStreamCaKey);
  if (!key_pem)
    return makeError(
        "cannot open the stream CA's key with this CA key-encryption key (was --ca-key-file or "
        "WEFT_CA_KEY changed?): " +
        key_pem.error().message);
  Loaded out;
  auto c = ca::parseCert(cert->str());
  if (!c) return Unexpected<Error>{c.error()};
  auto k = ca::privateKeyFromPem(*key_pem);
  if (!k) return Unexpected<Error>{k.error()};
  out.cert = std::move(*c);
  out.key = std::move(*k);
  out.cert_pem = std::string(cert->str());
  return out;
}

Result<Loaded> loadOrCreateCa(Store& store, const ca::Kek& kek, const TimeSource& time) {
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    auto kv = store.get(kStreamCaKey);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (kv->has_value()) return parseCa((*kv)->value, kek);
    auto key = ca::generateKey(ca::KeyAlgorithm::kEcP256);
    if (!key) return Unexpected<Error>{key.error()};
    auto name = ca::makeName({{"O", "weft"}, {"CN", "weft control plane stream CA"}});
    if (!name) return Unexpected<Error>{name.error()};
    int64_t now = unixNow(time);
    ca::IssueParams p;
    p.subject = name->get();
    p.subject_key = key->get();
    p.issuer_key = key->get();
    p.alg = ca::defaultSigningAlgorithm(key->get());
    p.serial = ca::randomSerial();
    p.not_before = now - 3600;
    p.not_after = now + kCaValidity;
    p.profile = ca::Profile::kCa;
    p.path_len = 0;
    auto cert = ca::issueCertificate(p);
    if (!cert) return Unexpected<Error>{cert.error()};
    std::string cert_pem = ca::certToPem(cert->get());
    std::string record = "{\"certificate\": " + jsonString(cert_pem) + ", \"key\": " +
                         jsonString(kek.seal(ca::privateKeyToPem(key->get()), kStreamCaKey)) +
                         ", \"createdAt\": " + std::to_string(now) + "}";
    auto committed =
        store.commit({StoreOp::put(std::string(kStreamCaKey), record, StoreOp::kAbsent)});
    if (committed) return Loaded{std::move(*cert), std::move(*key), std::move(cert_pem)};
    if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
  }
  return makeError("could not create the stream CA (concurrent writers)");
}

// subjectAltName with DNS and IP entries.
bool addAltNames(X509* cert, const std::vector<std::string>& names) {
  GENERAL_NAMES* gens = sk_GENERAL_NAME_new_null();
  for (const std::string& n : names) {
    GENERAL_NAME* g = GENERAL_NAME_new();
    unsigned char ip[16];
    if (inet_pton(AF_INET, n.c_str(), ip) == 1 || inet_pton(AF_INET6, n.c_str(), ip) == 1) {
      size_t len = n.find(':') == std::string::npos ? 4 : 16;
      ASN1_OCTET_STRING* s = ASN1_OCTET_STRING_new();
      ASN1_OCTET_STRING_set(s, ip, static_cast<int>(len));
      GENERAL_NAME_set0_value(g, GEN_IPADD, s);
    } else {
      ASN1_IA5STRING* s = ASN1_IA5STRING_new();
      ASN1_STRING_set(s, n.data(), static_cast<int>(n.size()));
      GENERAL_NAME_set0_value(g, GEN_DNS, s);
    }
    sk_GENERAL_NAME_push(gens, g);
  }
  int added = X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT);
  GENERAL_NAMES_free(gens);
  return added == 1;
}

}  // namespace

Result<StreamCertificate> issueStreamCertificate(Store& store, const ca::Kek& kek,
                                                 const TimeSource& time,
                                                 const std::vector<std::string>& names) {
  auto ca_loaded = loadOrCreateCa(store, kek, time);
  if (!ca_loaded) return Unexpected<Error>{ca_loaded.error()};
  auto key = ca::generateKey(ca::KeyAlgorithm::kEcP256);
  if (!key) return Unexpected<Error>{key.error()};
  std::string cn = names.empty() ? std::string("weft control plane") : names.front();
  auto subject = ca::makeName({{"O", "weft"}, {"CN", cn}});
  if (!subject) return Unexpected<Error>{subject.error()};
  int64_t now = unixNow(time);
  ca::IssueParams p;
  p.subject = subject->get();
  p.subject_key = key->get();
  p.issuer = ca_loaded->cert.get();
  p.issuer_key = ca_loaded->key.get();
  p.alg = ca::defaultSigningAlgorithm(ca_loaded->key.get());
  p.serial = ca::randomSerial();
  p.not_before = now - 3600;
  p.not_after = now + kLeafValidity;
  p.profile = ca::Profile::kEndEntity;
  auto cert = ca::issueCertificate(p);
  if (!cert) return Unexpected<Error>{cert.error()};
  // pki.h names only DNS and URI SANs; the stream is mostly reached by IP, so the SANs are
  // added here and the certificate signed again.
  if (!addAltNames(cert->get(), names) ||
      X509_sign(cert->get(), ca_loaded->key.get(), p.alg.md) <= 0)
    return makeError("adding the stream certificate's subjectAltName failed");
  StreamCertificate out;
  out.ca_pem = ca_loaded->cert_pem;
  out.cert_pem = ca::certToPem(cert->get());
  out.key_pem = ca::privateKeyToPem(key->get());
  return out;
}

}  // namespace weft::control::push
