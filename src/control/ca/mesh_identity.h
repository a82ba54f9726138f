#pragma once
// Mesh identities (docs/security.md, "Mesh identities"): each mesh has its own identity CA, made
// on first use, that signs the short-lived certificates proxies ask for with a CSR on the config
// stream. The server decides the names: a virtual node's certificate carries the URI SAN
// spiffe://MESH/virtualNode/NAME and the node's discovery name as a DNS SAN; a virtual
// gateway's, spiffe://MESH/virtualGateway/NAME. A CSR may leave its names out; one that asks for
// anything else is refused (kIdentityForeignName), so a proxy can only ever hold the identity its
// join token is bound to.
//
// The CA: an EC P-256 self-signed certificate "weft mesh identity CA (MESH)", valid 10 years,
// pathlen 0, stored at ca/mesh/MESH as JSON {"certificate", "key" (PKCS#8 PEM sealed with the CA
// KEK, additional data the store key), "createdAt"}. Its key never leaves the server.
//
// Thread-safety: every method may be called from any number of threads at once. Concurrent first
// uses of one mesh are serialized by an absent-key precondition (the loser reads the winner's
// CA); the parsed CA is cached per store revision under a leaf mutex.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/ca/kek.h"
#include "control/ca/pki.h"
#include "control/stacks/json_value.h"
#include "control/store/store.h"

namespace weft::control::ca {

inline constexpr std::string_view kMeshCaKeyPrefix = "ca/mesh/";
// "ca/mesh/<mesh>": the store key of a mesh's identity CA.
std::string meshCaKey(std::string_view mesh);

// Error::code of checkIdentityCsr / issue: the CSR is not a usable request (unparseable, bad
// signature, a key weft does not certify).
inline constexpr int kIdentityBadCsr = 400;
// Error::code: the CSR asks for a name that is not the proxy's (another identity): a refusal the
// config stream answers with PERMISSION_DENIED.
inline constexpr int kIdentityForeignName = 403;
// Error::code of trustBundle: the mesh has no identity CA yet.
inline constexpr int kIdentityNoCa = 404;
// Error::code of the rotation methods: a rotation is already in progress, or the step asked
// for does not fit the phase.
inline constexpr int kIdentityRotationConflict = 409;

// The names an identity certificate holds, decided by the server.
struct IdentityNames {
  std::string spiffe_id;         // the URI SAN
  std::vector<std::string> dns;  // DNS SANs (a node's discovery name; none for a gateway)
};

// Parses `csr_pem`, checks its self-signature, its key (EC P-256 or P-384, RSA of 2048 bits or
// more) and that every name it asks for — the subject's common name, every subjectAltName entry
// of its extension request (of any type) — is one of `names` (the SPIFFE ID or one of the DNS
// names; DNS compared case-insensitively, one trailing dot ignored). Errors: kIdentityBadCsr,
// kIdentityForeignName (the message names the first foreign name).
Result<CsrPtr> checkIdentityCsr(std::string_view csr_pem, const IdentityNames& names);

struct IssuedIdentity {
  std::string certificate_chain_pem;  // the leaf (signed directly by the root)
  std::string trust_bundle_pem;       // the mesh CA's certificate
  std::string spiffe_id;
  int64_t not_before = 0;  // unix seconds
  int64_t not_after = 0;
};

struct MeshIdentityOptions {
  // Lifetime of an identity certificate (`weft server --identity-validity`).
  std::chrono::seconds validity{std::chrono::hours(24)};
};

class MeshIdentityIssuer {
 public:
  // `store`, `kek` and `time` must outlive the issuer.
  MeshIdentityIssuer(Store& store, const Kek& kek, const TimeSource& time,
                     MeshIdentityOptions options = {});

  // Loads the mesh's identity CA, creating it when the mesh has none. Writes the store.
  Status ensureCa(const std::string& mesh);

  // Signs `csr_pem` (checked with checkIdentityCsr against `names`) with the mesh's identity CA
  // (created on first use): subject O=weft, OU=MESH, CN=the identity's name part (at most 64
  // bytes), SANs exactly `names`, serverAuth + clientAuth, notBefore = now - min(5 min, validity /
  // 10) (clock skew),
  // notAfter = now + validity. A fresh random serial each time.
  Result<IssuedIdentity> issue(const std::string& mesh, const IdentityNames& names,
                               std::string_view csr_pem);

  // The mesh CA's certificate (PEM), read-only (never creates the CA): kIdentityNoCa when the
  // mesh has none yet. During a rotation, the old and the new CA certificates (old first).
  Result<std::string> trustBundle(const std::string& mesh) const;

  // Rotation of the mesh's identity CA (docs/security.md "Rotation"). Answers are the JSON
  // bodies of /weft/v1/ca-rotations: {"mesh", "phase" (NONE, PUBLISHING, SIGNING_NEW),
  // "startedAt", "switchedAt", "retireAt", "trustBundle": [{"role", "serial", "subject",
  // "notBefore", "notAfter"}], "lastRotation"}. Errors: kIdentityNoCa, kIdentityRotationConflict.
  //
  // The record ca/mesh/MESH gains "rotation": PUBLISHING {"phase", "startedAt",
  // "newCertificate", "newKey" (sealed, AAD the store key)}: the old key signs, trust holds both;
  // SIGNING_NEW {"phase", "startedAt", "switchedAt", "retireAt", "oldCertificate"}: the new key
  // is the CA's ("certificate", "key"), trust holds both until retireAt = switchedAt + the
  // identity validity + the clock-skew allowance, when every identity the old key signed has
  // expired. Afterwards "lastRotation" {"startedAt", "switchedAt", "retiredAt", "retiredEarly"}.
  //
  // Starts one: a new P-256 key and self-signed CA certificate (same subject, new serial).
  Result<std::string> startRotation(const std::string& mesh);
  Result<std::string> rotationStatus(const std::string& mesh) const;
  // Ends a SIGNING_NEW rotation now (identities of the old key still in use stop verifying).
  Result<std::string> retireRotationNow(const std::string& mesh);
  // Meshes whose CA has a rotation in progress.
  Result<std::vector<std::string>> rotatingMeshes() const;
  // One maintenance step: PUBLISHING -> SIGNING_NEW when `may_switch`; SIGNING_NEW -> retired
  // at retireAt. Answers the phase after it.
  Result<std::string> advanceRotation(const std::string& mesh, bool may_switch);

  const MeshIdentityOptions& options() const { return options_; }

 private:
  struct Ca {
    int64_t revision = 0;
    CertPtr cert;
    KeyPtr key;
    std::string cert_pem;
    std::string bundle_pem;  // cert_pem, plus the other CA certificate during a rotation
  };
  // The CA of `mesh`: from the cache when its store revision is unchanged.
  Result<std::shared_ptr<const Ca>> loadCa(const std::string& mesh, bool create) const;

  // Re-reads the mesh's CA record, lets `change` edit it (false: nothing to write) and writes it
  // back under a precondition on its revision, retrying on conflicts.
  Status updateRecord(const std::string& mesh,
                      const std::function<Result<bool>(stacks::Value& record)>& change);

  Store& store_;
  const Kek& kek_;
  const TimeSource& time_;
  MeshIdentityOptions options_;
  mutable std::mutex mu_;  // guards cache_ (a leaf lock)
  mutable std::map<std::string, std::shared_ptr<const Ca>> cache_;
};

}  // namespace weft::control::ca
