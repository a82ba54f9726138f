#pragma once
// The control plane's own CA for the config stream's TLS (docs/config-push.md, "TLS"): one
// self-signed EC P-256 CA kept in the store at "push/ca" (JSON: certificate PEM and its key
// sealed with the CA KEK, AAD "push/ca"), made on first start; and, at every start, a fresh
// server certificate for the stream issued by it for the names the stream is reached by.
// weft-proxy trusts the CA through DATA_DIR/ca-bundle.pem (--ca-file).
//
// Thread-safety: functions only; concurrent first starts on one store are serialized by an
// absent-key precondition (the loser reads the winner's CA).

#include <string>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/ca/kek.h"
#include "control/store/store.h"

namespace weft::control::push {

struct StreamCertificate {
  std::string ca_pem;    // the CA certificate: the bundle proxies trust
  std::string cert_pem;  // the server certificate (leaf only: proxies trust the CA directly)
  std::string key_pem;   // its private key (PKCS#8 PEM; kept in memory only)
};

inline constexpr std::string_view kStreamCaKey = "push/ca";

// Loads or creates the CA, then issues a server certificate valid for two years whose
// subjectAltName holds every entry of `names` (IP literals as IP addresses, anything else as a
// DNS name).
Result<StreamCertificate> issueStreamCertificate(Store& store, const ca::Kek& kek,
                                                 const TimeSource& time,
                                                 const std::vector<std::string>& names);

}  // namespace weft::control::push
