#include "control/ca/mesh_identity.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdlib>

#include "common/json.h"
#include "control/compile/certificate_source.h"
#include "control/stacks/json_value.h"

namespace weft::control::ca {
namespace {

constexpr int64_t kCaValidity = int64_t{10} * 365 * 24 * 3600;
// notBefore is back-dated for clock skew: 5 minutes, or a tenth of a short lifetime (so half of
// the lifetime is still ahead when the certificate arrives).
constexpr int64_t kMaxClockSkew = 300;
constexpr int kMaxRetries = 5;

int64_t unixNow(const TimeSource& time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch())
      .count();
}

std::string lowerDns(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::string asn1Text(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

// Whether `key` is one weft certifies as an identity: EC P-256 / P-384, or RSA >= 2048 bits.
bool acceptableKey(EVP_PKEY* key) {
  if (key == nullptr) return false;
  if (EVP_PKEY_base_id(key) == EVP_PKEY_RSA) return EVP_PKEY_get_bits(key) >= 2048;
  if (EVP_PKEY_base_id(key) != EVP_PKEY_EC) return false;
  char group[64] = {};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &len) != 1) return false;
  std::string_view g(group, len);
  return g == "prime256v1" || g == "P-256" || g == "secp384r1" || g == "P-384";
}

Result<std::string> caRecordJson(const std::string& key, X509* cert, EVP_PKEY* pkey, const Kek& kek,
                                 int64_t now) {
  std::string cert_pem = certToPem(cert);
  std::string key_pem = privateKeyToPem(pkey);
  std::string sealed = kek.seal(key_pem, key);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  return "{\"certificate\": " + jsonString(cert_pem) + ", \"key\": " + jsonString(sealed) +
         ", \"createdAt\": " + std::to_string(now) + "}";
}

// A new identity CA for `mesh`: an EC P-256 key and its self-signed certificate.
Result<std::pair<CertPtr, KeyPtr>> makeMeshCa(const std::string& mesh, int64_t now) {
  auto pkey = generateKey(KeyAlgorithm::kEcP256);
  if (!pkey) return Unexpected<Error>{pkey.error()};
  auto name =
      makeName({{"O", "weft"}, {"OU", mesh.substr(0, 64)}, {"CN", "weft mesh identity CA"}});
  if (!name) return Unexpected<Error>{name.error()};
  IssueParams p;
  p.subject = name->get();
  p.subject_key = pkey->get();
  p.issuer_key = pkey->get();
  p.alg = defaultSigningAlgorithm(pkey->get());
  p.serial = randomSerial();
  p.not_before = now - 3600;
  p.not_after = now + kCaValidity;
  p.profile = Profile::kCa;
  p.path_len = 0;
  auto cert = issueCertificate(p);
  if (!cert) return Unexpected<Error>{cert.error()};
  return std::make_pair(std::move(*cert), std::move(*pkey));
}

std::string rotationPhase(const stacks::Value& rec) {
  const stacks::Value* rot = rec.find("rotation");
  return rot && rot->isObject() ? std::string(rot->find("phase") ? rot->find("phase")->str() : "")
                                : "NONE";
}

std::string member(const stacks::Value& v, std::string_view key) {
  const stacks::Value* m = v.find(key);
  return m ? std::string(m->str()) : std::string();
}

int64_t memberInt(const stacks::Value& v, std::string_view key) {
  const stacks::Value* m = v.find(key);
  return m && m->isNumber() ? std::strtoll(m->text().c_str(), nullptr, 10) : 0;
}

stacks::Value certSummary(const std::string& pem, std::string_view role) {
  stacks::Value out = stacks::Value::object();
  auto c = parseCert(pem);
  if (!c) return out;
  out.set("role", stacks::Value::string(std::string(role)));
  out.set("serial", stacks::Value::string(serialColonHex(certSerial(c->get()))));
  out.set("subject", stacks::Value::string(nameToString(X509_get_subject_name(c->get()))));
  out.set("notBefore", stacks::Value::number(certNotBefore(c->get())));
  out.set("notAfter", stacks::Value::number(certNotAfter(c->get())));
  return out;
}

// The /weft/v1/ca-rotations answer for the record of `mesh`.
std::string rotationAnswer(const std::string& mesh, const stacks::Value& rec) {
  using stacks::Value;
  Value out = Value::object();
  out.set("mesh", Value::string(mesh));
  std::string phase = rotationPhase(rec);
  out.set("phase", Value::string(phase));
  Value roots = Value::array();
  if (phase == "NONE") {
    roots.push(certSummary(member(rec, "certificate"), "current"));
  } else {
    const Value& rot = *rec.find("rotation");
    out.set("startedAt", Value::number(memberInt(rot, "startedAt")));
    if (phase == "PUBLISHING") {
      roots.push(certSummary(member(rec, "certificate"), "old (signing)"));
      roots.push(certSummary(member(rot, "newCertificate"), "new (published)"));
    } else {
      out.set("switchedAt", Value::number(memberInt(rot, "switchedAt")));
      out.set("retireAt", Value::number(memberInt(rot, "retireAt")));
      roots.push(certSummary(member(rot, "oldCertificate"), "old (retiring)"));
      roots.push(certSummary(member(rec, "certificate"), "new (signing)"));
    }
  }
  out.set("trustBundle", std::move(roots));
  if (const Value* last = rec.find("lastRotation")) out.set("lastRotation", *last);
  return stacks::toJson(out);
}

std::string joinPem(std::string a, const std::string& b) {
  if (!a.empty() && a.back() != '\n') a += '\n';
  return a + b;
}

}  // namespace

std::string meshCaKey(std::string_view mesh) { return compile::meshIdentityCaKey(mesh); }

Result<CsrPtr> checkIdentityCsr(std::string_view csr_pem, const IdentityNames& names) {
  auto csr = parseCsr(csr_pem);
  if (!csr) return makeError("certificate request: " + csr.error().message, kIdentityBadCsr);
  EVP_PKEY* key = X509_REQ_get0_pubkey(csr->get());
  if (!acceptableKey(key))
    return makeError(
        "certificate request: the key must be EC P-256 or P-384, or RSA of at least 2048 bits",
        kIdentityBadCsr);
  auto allowedUri = [&](std::string_view uri) { return uri == names.spiffe_id; };
  auto allowedDns = [&](std::string_view dns) {
    std::string want = lowerDns(dns);
    return std::any_of(names.dns.begin(), names.dns.end(),
                       [&](const std::string& d) { return lowerDns(d) == want; });
  };
  auto foreign = [&](const std::string& what) {
    return makeError("certificate request asks for " + what +
                         ", which is not this proxy's identity (" + names.spiffe_id +
                         "); a proxy may only hold the identity its token is bound to",
                     kIdentityForeignName);
  };
  // The subject: only a common name that is one of the names (or none at all).
  X509_NAME* subject = X509_REQ_get_subject_name(csr->get());
  for (int i = 0; subject != nullptr && i < X509_NAME_entry_count(subject); ++i) {
    X509_NAME_ENTRY* e = X509_NAME_get_entry(subject, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    if (nid != NID_commonName) continue;  // O, OU...: not names a peer checks; replaced anyway
    std::string cn = asn1Text(X509_NAME_ENTRY_get_data(e));
    if (!allowedUri(cn) && !allowedDns(cn)) return foreign("the common name \"" + cn + "\"");
  }
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(csr->get());
  if (exts != nullptr) {
    int critical = 0;
    auto* gens =
        static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, &critical, nullptr));
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (gens == nullptr && critical == -2)
      return makeError("certificate request: more than one subjectAltName extension",
                       kIdentityBadCsr);
    Status bad;
    for (int i = 0; gens != nullptr && i < sk_GENERAL_NAME_num(gens) && bad; ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
      if (g->type == GEN_URI) {
        std::string v = asn1Text(g->d.uniformResourceIdentifier);
        if (!allowedUri(v)) bad = foreign("the URI name \"" + v + "\"");
      } else if (g->type == GEN_DNS) {
        std::string v = asn1Text(g->d.dNSName);
        if (!allowedDns(v)) bad = foreign("the DNS name \"" + v + "\"");
      } else {
        bad = foreign("a subjectAltName of another type (IP address, e-mail...)");
      }
    }
    if (gens != nullptr) GENERAL_NAMES_free(gens);
    if (!bad) return Unexpected<Error>{bad.error()};
  }
  return std::move(*csr);
}

MeshIdentityIssuer::MeshIdentityIssuer(Store& store, const Kek& kek, const TimeSource& time,
                                       MeshIdentityOptions options)
    : store_(store), kek_(kek), time_(time), options_(options) {}

Result<std::shared_ptr<const MeshIdentityIssuer::Ca>> MeshIdentityIssuer::loadCa(
    const std::string& mesh, bool create) const {
  const std::string key = meshCaKey(mesh);
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    auto kv = store_.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (kv->has_value()) {
      const KeyValue& rec = **kv;
      {
        std::lock_guard lock(mu_);
        auto it = cache_.find(mesh);
        if (it != cache_.end() && it->second->revision == rec.revision) return it->second;
      }
      auto v = stacks::parseJson(rec.value);
      const stacks::Value* cert = v && v->isObject() ? v->find("certificate") : nullptr;
      const stacks::Value* sealed = v && v->isObject() ? v->find("key") : nullptr;
      if (!cert || !sealed)
        return makeError("the identity CA record of mesh \"" + mesh + "\" (" + key +
                         ") is corrupt");
      auto key_pem = kek_.open(sealed->str(), key);
      if (!key_pem)
        return makeError("cannot open the identity CA key of mesh \"" + mesh +
                         "\" with this CA key-encryption key (was --ca-key-file or WEFT_CA_KEY "
                         "changed?)");
      auto pkey = privateKeyFromPem(*key_pem);
      OPENSSL_cleanse(key_pem->data(), key_pem->size());
      if (!pkey) return Unexpected<Error>{pkey.error()};
      auto c = parseCert(cert->str());
      if (!c) return Unexpected<Error>{c.error()};
      auto ca = std::make_shared<Ca>();
      ca->revision = rec.revision;
      ca->cert = std::move(*c);
      ca->key = std::move(*pkey);
      ca->cert_pem = std::string(cert->str());
      ca->bundle_pem = ca->cert_pem;
      if (std::string phase = rotationPhase(*v); phase == "PUBLISHING")
        ca->bundle_pem = joinPem(ca->cert_pem, member(*v->find("rotation"), "newCertificate"));
      else if (phase == "SIGNING_NEW")
        ca->bundle_pem = joinPem(member(*v->find("rotation"), "oldCertificate"), ca->cert_pem);
      std::shared_ptr<const Ca> shared = std::move(ca);
      std::lock_guard lock(mu_);
      cache_[mesh] = shared;
      return shared;
    }
    if (!create) return makeError("mesh \"" + mesh + "\" has no identity CA yet", kIdentityNoCa);
    int64_t now = unixNow(time_);
    auto made = makeMeshCa(mesh, now);
    if (!made) return Unexpected<Error>{made.error()};
    auto record = caRecordJson(key, made->first.get(), made->second.get(), kek_, now);
    if (!record) return Unexpected<Error>{record.error()};
    auto committed = store_.commit({StoreOp::put(key, *record, StoreOp::kAbsent)});
    if (!committed && committed.error().code != kStoreConflict)
      return Unexpected<Error>{committed.error()};
    // Created (or lost the race): read it back, so the cache holds the stored revision.
  }
  return makeError("could not create the identity CA of mesh \"" + mesh +
                   "\" (concurrent writers)");
}

Status MeshIdentityIssuer::ensureCa(const std::string& mesh) {
  auto ca = loadCa(mesh, true);
  if (!ca) return Unexpected<Error>{ca.error()};
  return {};
}

Result<std::string> MeshIdentityIssuer::trustBundle(const std::string& mesh) const {
  auto ca = loadCa(mesh, false);
  if (!ca) return Unexpected<Error>{ca.error()};
  return (*ca)->bundle_pem;
}

Result<IssuedIdentity> MeshIdentityIssuer::issue(const std::string& mesh,
                                                 const IdentityNames& names,
                                                 std::string_view csr_pem) {
  auto csr = checkIdentityCsr(csr_pem, names);
  if (!csr) return Unexpected<Error>{csr.error()};
  auto ca = loadCa(mesh, true);
  if (!ca) return Unexpected<Error>{ca.error()};
  // CN: the resource's own name (after ".../virtualNode/"), as peers' logs show it.
  std::string cn = names.spiffe_id.substr(names.spiffe_id.rfind('/') + 1).substr(0, 64);
  auto subject = makeName({{"O", "weft"}, {"OU", mesh.substr(0, 64)}, {"CN", cn}});
  if (!subject) return Unexpected<Error>{subject.error()};
  int64_t now = unixNow(time_);
  IssueParams p;
  p.subject = subject->get();
  p.subject_key = X509_REQ_get0_pubkey(csr->get());
  p.issuer = (*ca)->cert.get();
  p.issuer_key = (*ca)->key.get();
  p.alg = defaultSigningAlgorithm((*ca)->key.get());
  p.serial = randomSerial();
  p.not_before = now - std::min<int64_t>(kMaxClockSkew, options_.validity.count() / 10);
  p.not_after = now + options_.validity.count();
  p.profile = Profile::kEndEntity;
  p.alt_names.uri = {names.spiffe_id};
  p.alt_names.dns = names.dns;
  auto cert = issueCertificate(p);
  if (!cert) return Unexpected<Error>{cert.error()};
  IssuedIdentity out;
  out.certificate_chain_pem = certToPem(cert->get());
  out.trust_bundle_pem = (*ca)->bundle_pem;
  out.spiffe_id = names.spiffe_id;
  out.not_before = p.not_before;
  out.not_after = p.not_after;
  return out;
}

Status MeshIdentityIssuer::updateRecord(
    const std::string& mesh, const std::function<Result<bool>(stacks::Value& record)>& change) {
  const std::string key = meshCaKey(mesh);
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    auto kv = store_.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (!kv->has_value())
      return makeError("mesh \"" + mesh + "\" has no identity CA yet", kIdentityNoCa);
    auto rec = stacks::parseJson((*kv)->value);
    if (!rec || !rec->isObject())
      return makeError("the identity CA record of mesh \"" + mesh + "\" (" + key + ") is corrupt");
    auto changed = change(*rec);
    if (!changed) return Unexpected<Error>{changed.error()};
    if (!*changed) return {};
    auto committed = store_.commit({StoreOp::put(key, stacks::toJson(*rec), (*kv)->revision)});
    if (committed) return {};
    if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
  }
  return makeError("could not update the identity CA of mesh \"" + mesh +
                   "\" (concurrent writers); try again");
}

Result<std::string> MeshIdentityIssuer::rotationStatus(const std::string& mesh) const {
  auto kv = store_.get(meshCaKey(mesh));
  if (!kv) return Unexpected<Error>{kv.error()};
  if (!kv->has_value())
    return makeError("mesh \"" + mesh + "\" has no identity CA yet", kIdentityNoCa);
  auto rec = stacks::parseJson((*kv)->value);
  if (!rec || !rec->isObject())
    return makeError("the identity CA record of mesh \"" + mesh + "\" is corrupt");
  return rotationAnswer(mesh, *rec);
}

Result<std::string> MeshIdentityIssuer::startRotation(const std::string& mesh) {
  const std::string key = meshCaKey(mesh);
  Status st = updateRecord(mesh, [&](stacks::Value& rec) -> Result<bool> {
    if (std::string phase = rotationPhase(rec); phase != "NONE")
      return makeError("a rotation of the identity CA of mesh \"" + mesh +
                           "\" is already in progress (" + phase +
                           "); it ends when the old root retires (or with `weft ca rotate "
                           "--mesh " +
                           mesh + " --retire-now` once the new key signs)",
                       kIdentityRotationConflict);
    int64_t now = unixNow(time_);
    auto made = makeMeshCa(mesh, now);
    if (!made) return Unexpected<Error>{made.error()};
    std::string key_pem = privateKeyToPem(made->second.get());
    stacks::Value rot = stacks::Value::object();
    rot.set("phase", stacks::Value::string("PUBLISHING"));
    rot.set("startedAt", stacks::Value::number(now));
    rot.set("newCertificate", stacks::Value::string(certToPem(made->first.get())));
    rot.set("newKey", stacks::Value::string(kek_.seal(key_pem, key)));
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
    rec.set("rotation", std::move(rot));
    return true;
  });
  if (!st) return Unexpected<Error>{st.error()};
  return rotationStatus(mesh);
}

Result<std::string> MeshIdentityIssuer::advanceRotation(const std::string& mesh, bool may_switch) {
  std::string after;
  Status st = updateRecord(mesh, [&](stacks::Value& rec) -> Result<bool> {
    after = rotationPhase(rec);
    int64_t now = unixNow(time_);
    if (after == "PUBLISHING" && may_switch) {
      const stacks::Value rot = *rec.find("rotation");  // a copy: rec changes below
      // Old identities were issued until now and live `validity`; peers' clocks may lag.
      int64_t validity = options_.validity.count();
      int64_t retire_at = now + validity + std::min<int64_t>(kMaxClockSkew, validity / 10);
      stacks::Value next = stacks::Value::object();
      next.set("phase", stacks::Value::string("SIGNING_NEW"));
      next.set("startedAt", stacks::Value::number(memberInt(rot, "startedAt")));
      next.set("switchedAt", stacks::Value::number(now));
      next.set("retireAt", stacks::Value::number(retire_at));
      next.set("oldCertificate", stacks::Value::string(member(rec, "certificate")));
      rec.set("certificate", stacks::Value::string(member(rot, "newCertificate")));
      rec.set("key", stacks::Value::string(member(rot, "newKey")));
      rec.set("rotation", std::move(next));
      after = "SIGNING_NEW";
      return true;
    }
    if (after == "SIGNING_NEW" && now >= memberInt(*rec.find("rotation"), "retireAt")) {
      const stacks::Value& rot = *rec.find("rotation");
      stacks::Value last = stacks::Value::object();
      last.set("startedAt", stacks::Value::number(memberInt(rot, "startedAt")));
      last.set("switchedAt", stacks::Value::number(memberInt(rot, "switchedAt")));
      last.set("retiredAt", stacks::Value::number(now));
      last.set("retiredEarly", stacks::Value::boolean(false));
      rec.erase("rotation");
      rec.set("lastRotation", std::move(last));
      after = "NONE";
      return true;
    }
    return false;
  });
  if (!st) return Unexpected<Error>{st.error()};
  return after;
}

Result<std::string> MeshIdentityIssuer::retireRotationNow(const std::string& mesh) {
  Status st = updateRecord(mesh, [&](stacks::Value& rec) -> Result<bool> {
    std::string phase = rotationPhase(rec);
    if (phase == "NONE")
      return makeError("the identity CA of mesh \"" + mesh + "\" has no rotation in progress",
                       kIdentityRotationConflict);
    if (phase == "PUBLISHING")
      return makeError("the rotation of the identity CA of mesh \"" + mesh +
                           "\" is PUBLISHING: the old key still signs, so its root cannot retire "
                           "yet; wait until the phase is SIGNING_NEW",
                       kIdentityRotationConflict);
    const stacks::Value& rot = *rec.find("rotation");
    stacks::Value last = stacks::Value::object();
    last.set("startedAt", stacks::Value::number(memberInt(rot, "startedAt")));
    last.set("switchedAt", stacks::Value::number(memberInt(rot, "switchedAt")));
    last.set("retiredAt", stacks::Value::number(unixNow(time_)));
    last.set("retiredEarly", stacks::Value::boolean(true));
    rec.erase("rotation");
    rec.set("lastRotation", std::move(last));
    return true;
  });
  if (!st) return Unexpected<Error>{st.error()};
  return rotationStatus(mesh);
}

Result<std::vector<std::string>> MeshIdentityIssuer::rotatingMeshes() const {
  std::vector<std::string> out;
  const std::string prefix(kMeshCaKeyPrefix);
  std::string start;
  while (true) {
    auto items = store_.list(prefix, start, 200);
    if (!items) return Unexpected<Error>{items.error()};
    for (const KeyValue& kv : *items) {
      start = kv.key;
      auto rec = stacks::parseJson(kv.value);
      if (rec && rec->isObject() && rotationPhase(*rec) != "NONE")
        out.push_back(kv.key.substr(prefix.size()));
    }
    if (items->size() < 200) break;
  }
  return out;
}

}  // namespace weft::control::ca
