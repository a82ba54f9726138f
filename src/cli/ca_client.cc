#include "cli/ca_client.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>

#include "control/ca/pki.h"

namespace weft::cli::ca {

namespace {

constexpr int64_t kDaySeconds = 86400;
constexpr int64_t kRootYears = 10;
constexpr int64_t kSubordinateYears = 5;
constexpr std::string_view kRootTemplate = "arn:aws:acm-pca:::template/RootCACertificate/V1";

std::string field(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? m->scalarText() : std::string();
}

int64_t intField(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  if (m == nullptr || !m->isNumber()) return 0;
  return static_cast<int64_t>(std::strtod(m->text().c_str(), nullptr));
}

int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Value obj(std::initializer_list<std::pair<const char*, Value>> members) {
  Value o = Value::object();
  for (const auto& [k, v] : members) o.set(k, v);
  return o;
}

Value blob(std::string_view bytes) { return Value::string(control::ca::base64Encode(bytes)); }

// Prefixes the error message with `what` (keeping the code).
Unexpected<Error> context(const std::string& what, const Error& e) {
  return Unexpected<Error>{Error{e.code, what + ": " + e.message}};
}

// "…/certificate-authority/ID/certificate/SERIAL" → (CA ARN, serial hex).
std::pair<std::string, std::string> splitPcaCertificateArn(const std::string& arn) {
  size_t at = arn.find("/certificate/");
  return {arn.substr(0, at), arn.substr(at + 13)};
}

// GetCertificate (ACM PCA) with a bounded wait while the server says it is still issuing (AWS
// answers RequestInProgressException right after IssueCertificate; weft issues synchronously).
Result<Value> pcaGetCertificate(ApiClient& api, const std::string& ca_arn,
                                const std::string& cert_arn) {
  Value req = obj({{"CertificateAuthorityArn", Value::string(ca_arn)},
                   {"CertificateArn", Value::string(cert_arn)}});
  for (int attempt = 0;; ++attempt) {
    auto r = pca(api, "GetCertificate", req);
    if (r || attempt >= 50 || r.error().message.rfind("RequestInProgressException", 0) != 0)
      return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

Result<Value> pca(ApiClient& api, std::string_view operation, const Value& body) {
  return api.callTarget(kPcaService, "ACMPrivateCA." + std::string(operation), body);
}

Result<Value> acm(ApiClient& api, std::string_view operation, const Value& body) {
  return api.callTarget(kAcmService, "CertificateManager." + std::string(operation), body);
}

Result<Value> parseSubject(std::string_view text) {
  static const std::pair<const char*, const char*> kKeys[] = {
      {"CN", "CommonName"},
      {"O", "Organization"},
      {"OU", "OrganizationalUnit"},
      {"C", "Country"},
      {"ST", "State"},
      {"L", "Locality"},
      {"DNQ", "DistinguishedNameQualifier"},
      {"SERIALNUMBER", "SerialNumber"},
      {"T", "Title"},
      {"SN", "Surname"},
      {"GN", "GivenName"},
      {"INITIALS", "Initials"},
      {"PSEUDONYM", "Pseudonym"},
      {"GENERATIONQUALIFIER", "GenerationQualifier"},
  };
  // Split on unescaped commas.
  std::vector<std::string> parts;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      cur += text[++i];
    } else if (text[i] == ',') {
      parts.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += text[i];
    }
  }
  parts.push_back(std::move(cur));
  Value subject = Value::object();
  for (std::string& part : parts) {
    auto trim = [](std::string s) {
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
      return s;
    };
    size_t eq = part.find('=');
    if (eq == std::string::npos)
      return makeError("subject '" + std::string(text) + "': expected KEY=VALUE pairs such as " +
                       "CN=example.com,O=Acme, got '" + part + "'");
    std::string key = trim(part.substr(0, eq));
    std::string value = trim(part.substr(eq + 1));
    std::string upper = key;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const char* member = nullptr;
    for (const auto& [k, m] : kKeys)
      if (upper == k) member = m;
    if (member == nullptr)
      return makeError("subject: unknown attribute '" + key +
                       "' (CN, O, OU, C, ST, L, DNQ, SERIALNUMBER, T, SN, GN, INITIALS, "
                       "PSEUDONYM, GENERATIONQUALIFIER)");
    if (value.empty()) return makeError("subject: " + key + " has an empty value");
    if (subject.find(member)) return makeError("subject: " + key + " appears twice");
    subject.set(member, Value::string(value));
  }
  return subject;
}

std::optional<std::string> defaultSigningAlgorithm(std::string_view key_algorithm) {
  if (key_algorithm.rfind("RSA_", 0) == 0) return "SHA256WITHRSA";
  if (key_algorithm == "EC_prime256v1") return "SHA256WITHECDSA";
  if (key_algorithm == "EC_secp384r1") return "SHA384WITHECDSA";
  if (key_algorithm == "EC_secp521r1") return "SHA512WITHECDSA";
  return std::nullopt;
}

Result<std::string> createCa(ApiClient& api, const CreateCaOptions& o) {
  std::string signing = o.signing_algorithm;
  if (signing.empty()) {
    auto d = defaultSigningAlgorithm(o.key_algorithm);
    if (!d)
      return makeError("unknown key algorithm '" + o.key_algorithm +
                       "' (RSA_2048, RSA_4096, EC_prime256v1, EC_secp384r1)");
    signing = *d;
  }
  if (o.path_len < 0 || o.path_len > 3) return makeError("path length must be 0 to 3");
  bool root = o.parent_arn.empty();

  // The issuer: the CA itself for a root, else the parent (which must be able to sign now).
  Value parent;
  if (!root) {
    auto d = pca(api, "DescribeCertificateAuthority",
                 obj({{"CertificateAuthorityArn", Value::string(o.parent_arn)}}));
    if (!d) return context("parent " + o.parent_arn, d.error());
    const Value* ca = d->find("CertificateAuthority");
    if (ca == nullptr) return makeError("parent " + o.parent_arn + ": no CertificateAuthority");
    parent = *ca;
    if (field(parent, "Status") != "ACTIVE")
      return makeError("parent " + o.parent_arn + " is " + field(parent, "Status") +
                       ", not ACTIVE: it cannot sign");
  }

  Value config = obj({{"KeyAlgorithm", Value::string(o.key_algorithm)},
                      {"SigningAlgorithm", Value::string(signing)},
                      {"Subject", o.subject}});
  auto created =
      pca(api, "CreateCertificateAuthority",
          obj({{"CertificateAuthorityConfiguration", config},
               {"CertificateAuthorityType", Value::string(root ? "ROOT" : "SUBORDINATE")}}));
  if (!created) return Unexpected<Error>{created.error()};
  std::string arn = field(*created, "CertificateAuthorityArn");
  if (arn.empty())
    return makeError("CreateCertificateAuthority answered no CertificateAuthorityArn");
  auto pending = [&](const Error& e) {
    return context("certificate authority " + arn + " was created but not activated (it stays " +
                       "PENDING_CERTIFICATE)",
                   e);
  };

  auto csr = pca(api, "GetCertificateAuthorityCsr",
                 obj({{"CertificateAuthorityArn", Value::string(arn)}}));
  if (!csr) return pending(csr.error());

  Value validity;
  if (o.validity_days) {
    validity = obj({{"Type", Value::string("DAYS")}, {"Value", Value::number(*o.validity_days)}});
  } else if (root) {
    validity = obj({{"Type", Value::string("YEARS")}, {"Value", Value::number(kRootYears)}});
  } else {
    int64_t parent_end = intField(parent, "NotAfter");
    int64_t wanted = nowSeconds() + kSubordinateYears * 365 * kDaySeconds;
    if (parent_end > 0 && parent_end < wanted)
      validity = obj({{"Type", Value::string("ABSOLUTE")}, {"Value", Value::number(parent_end)}});
    else
      validity =
          obj({{"Type", Value::string("YEARS")}, {"Value", Value::number(kSubordinateYears)}});
  }
  std::string issuer = root ? arn : o.parent_arn;
  std::string issuer_signing = signing;
  if (!root) {
    const Value* pc = parent.find("CertificateAuthorityConfiguration");
    if (pc && !field(*pc, "SigningAlgorithm").empty())
      issuer_signing = field(*pc, "SigningAlgorithm");
  }
  std::string template_arn = root ? std::string(kRootTemplate)
                                  : "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen" +
                                        std::to_string(o.path_len) + "/V1";
  auto issued = pca(api, "IssueCertificate",
                    obj({{"CertificateAuthorityArn", Value::string(issuer)},
                         {"Csr", blob(field(*csr, "Csr"))},
                         {"SigningAlgorithm", Value::string(issuer_signing)},
                         {"TemplateArn", Value::string(template_arn)},
                         {"Validity", validity}}));
  if (!issued) return pending(issued.error());
  auto cert = pcaGetCertificate(api, issuer, field(*issued, "CertificateArn"));
  if (!cert) return pending(cert.error());

  Value import = obj({{"CertificateAuthorityArn", Value::string(arn)},
                      {"Certificate", blob(field(*cert, "Certificate"))}});
  if (!root) import.set("CertificateChain", blob(field(*cert, "CertificateChain")));
  auto imported = pca(api, "ImportCertificateAuthorityCertificate", import);
  if (!imported) return pending(imported.error());
  return arn;
}

Result<int64_t> deleteCa(ApiClient& api, const std::string& ca_arn,
                         std::optional<int64_t> restore_days) {
  Value id = obj({{"CertificateAuthorityArn", Value::string(ca_arn)}});
  auto d = pca(api, "DescribeCertificateAuthority", id);
  if (!d) return Unexpected<Error>{d.error()};
  const Value* ca = d->find("CertificateAuthority");
  std::string status = ca ? field(*ca, "Status") : "";
  if (status == "DELETED")
    return makeError("certificate authority " + ca_arn + " is already deleted");
  if (status == "ACTIVE") {
    Value disable = id;
    disable.set("Status", Value::string("DISABLED"));
    auto u = pca(api, "UpdateCertificateAuthority", disable);
    if (!u) return context("disabling " + ca_arn + " before the delete", u.error());
  }
  Value del = id;
  if (restore_days) del.set("PermanentDeletionTimeInDays", Value::number(*restore_days));
  auto r = pca(api, "DeleteCertificateAuthority", del);
  if (!r) return Unexpected<Error>{r.error()};
  auto after = pca(api, "DescribeCertificateAuthority", id);
  if (!after) return int64_t{0};
  const Value* a = after->find("CertificateAuthority");
  return a ? intField(*a, "RestorableUntil") : 0;
}

Result<std::string> requestCertificate(ApiClient& api, const std::string& ca_arn,
                                       const std::vector<std::string>& domains,
                                       const std::string& key_algorithm,
                                       std::optional<int64_t> validity_days) {
  if (domains.empty()) return makeError("at least one domain name is needed");
  Value req = obj({{"DomainName", Value::string(domains[0])},
                   {"CertificateAuthorityArn", Value::string(ca_arn)}});
  if (domains.size() > 1) {
    Value sans = Value::array();
    for (const std::string& d : domains) sans.push(Value::string(d));
    req.set("SubjectAlternativeNames", std::move(sans));
  }
  if (!key_algorithm.empty()) req.set("KeyAlgorithm", Value::string(key_algorithm));
  if (validity_days) req.set("WeftValidityInDays", Value::number(*validity_days));
  auto r = acm(api, "RequestCertificate", req);
  if (!r) return Unexpected<Error>{r.error()};
  std::string arn = field(*r, "CertificateArn");
  if (arn.empty()) return makeError("RequestCertificate answered no CertificateArn");
  auto d = acm(api, "DescribeCertificate", obj({{"CertificateArn", Value::string(arn)}}));
  if (!d) return context("certificate " + arn, d.error());
  const Value* detail = d->find("Certificate");
  if (detail && field(*detail, "Status") == "FAILED")
    return makeError("certificate " + arn + " FAILED: " + field(*detail, "FailureReason") +
                     " (is the certificate authority ACTIVE and valid for " +
                     std::to_string(validity_days.value_or(395)) + " more days?)");
  return arn;
}

Result<ImportedCa> importCa(ApiClient& api, const std::string& certificate_pem,
                            const std::string& private_key_pem, const std::string& chain_pem,
                            const std::string& passphrase) {
  Value req = obj({{"Certificate", Value::string(certificate_pem)},
                   {"PrivateKey", Value::string(private_key_pem)}});
  if (!chain_pem.empty()) req.set("CertificateChain", Value::string(chain_pem));
  if (!passphrase.empty()) req.set("Passphrase", Value::string(passphrase));
  auto r = api.call("POST", "/weft/v1/certificate-authorities/import", "", &req);
  if (!r) return Unexpected<Error>{r.error()};
  ImportedCa out{field(*r, "CertificateAuthorityArn"), field(*r, "Type")};
  if (out.arn.empty()) return makeError("the import answered no CertificateAuthorityArn");
  return out;
}

std::string arnKind(std::string_view arn) {
  if (arn.rfind("arn:", 0) != 0) return "";
  if (arn.find(":acm-pca:") != std::string_view::npos) {
    if (arn.find(":certificate-authority/") == std::string_view::npos) return "";
    return arn.find("/certificate/") != std::string_view::npos ? "pca-certificate" : "ca";
  }
  if (arn.find(":acm:") != std::string_view::npos &&
      arn.find(":certificate/") != std::string_view::npos)
    return "acm-certificate";
  return "";
}

Result<Pem> certificatePem(ApiClient& api, const std::string& arn) {
  std::string kind = arnKind(arn);
  Result<Value> r = Value();
  if (kind == "ca") {
    r = pca(api, "GetCertificateAuthorityCertificate",
            obj({{"CertificateAuthorityArn", Value::string(arn)}}));
  } else if (kind == "pca-certificate") {
    auto [ca_arn, serial] = splitPcaCertificateArn(arn);
    r = pcaGetCertificate(api, ca_arn, arn);
  } else if (kind == "acm-certificate") {
    r = acm(api, "GetCertificate", obj({{"CertificateArn", Value::string(arn)}}));
  } else {
    return makeError("'" + arn +
                     "' is not a certificate authority or certificate ARN "
                     "(arn:aws:acm-pca:...:certificate-authority/ID[/certificate/SERIAL] or "
                     "arn:aws:acm:...:certificate/ID)");
  }
  if (!r) return Unexpected<Error>{r.error()};
  Pem out;
  out.certificate = field(*r, "Certificate");
  out.chain = field(*r, "CertificateChain");
  if (out.certificate.empty()) return makeError(arn + " has no certificate yet");
  return out;
}

Result<Pem> exportCertificate(ApiClient& api, const std::string& arn,
                              const std::string& passphrase) {
  if (arnKind(arn) != "acm-certificate")
    return makeError("'" + arn +
                     "' is not an ACM certificate ARN (arn:aws:acm:...:certificate/ID)");
  auto r = acm(api, "ExportCertificate",
               obj({{"CertificateArn", Value::string(arn)}, {"Passphrase", blob(passphrase)}}));
  if (!r) return Unexpected<Error>{r.error()};
  Pem out;
  out.certificate = field(*r, "Certificate");
  out.chain = field(*r, "CertificateChain");
  out.private_key = field(*r, "PrivateKey");
  return out;
}

Status revokeCertificate(ApiClient& api, const std::string& arn, const std::string& reason) {
  std::string kind = arnKind(arn);
  std::string ca_arn, serial;
  if (kind == "acm-certificate") {
    auto d = acm(api, "DescribeCertificate", obj({{"CertificateArn", Value::string(arn)}}));
    if (!d) return Unexpected<Error>{d.error()};
    const Value* detail = d->find("Certificate");
    if (detail == nullptr) return makeError("DescribeCertificate answered no Certificate");
    if (field(*detail, "Status") == "REVOKED") return makeError(arn + " is already revoked");
    ca_arn = field(*detail, "CertificateAuthorityArn");
    serial = field(*detail, "Serial");
    if (serial.empty()) return makeError(arn + " has no issued certificate to revoke");
  } else if (kind == "pca-certificate") {
    std::tie(ca_arn, serial) = splitPcaCertificateArn(arn);
  } else {
    return makeError("'" + arn +
                     "' is not a certificate ARN (arn:aws:acm:...:certificate/ID or "
                     "arn:aws:acm-pca:...:certificate-authority/ID/certificate/SERIAL)");
  }
  auto r = pca(api, "RevokeCertificate",
               obj({{"CertificateAuthorityArn", Value::string(ca_arn)},
                    {"CertificateSerial", Value::string(serial)},
                    {"RevocationReason", Value::string(reason.empty() ? "UNSPECIFIED" : reason)}}));
  if (!r) return Unexpected<Error>{r.error()};
  return {};
}

Result<Value> listCas(ApiClient& api) {
  Value all = Value::array();
  std::string token;
  do {
    Value req = Value::object();
    if (!token.empty()) req.set("NextToken", Value::string(token));
    auto r = pca(api, "ListCertificateAuthorities", req);
    if (!r) return Unexpected<Error>{r.error()};
    if (const Value* list = r->find("CertificateAuthorities"); list && list->isArray())
      for (const Value& ca : list->items()) all.push(ca);
    token = field(*r, "NextToken");
  } while (!token.empty());
  return all;
}

Result<Value> listCertificates(ApiClient& api, const std::string& ca_arn) {
  Value key_types = Value::array();
  for (const char* k : {"RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1",
                        "EC_secp384r1", "EC_secp521r1"})
    key_types.push(Value::string(k));
  Value all = Value::array();
  std::string token;
  do {
    Value req = obj({{"Includes", obj({{"keyTypes", key_types}})}});
    if (!token.empty()) req.set("NextToken", Value::string(token));
    auto r = acm(api, "ListCertificates", req);
    if (!r) return Unexpected<Error>{r.error()};
    if (const Value* list = r->find("CertificateSummaryList"); list && list->isArray()) {
      for (const Value& s : list->items()) {
        if (!ca_arn.empty()) {
          auto d = acm(api, "DescribeCertificate",
                       obj({{"CertificateArn", Value::string(field(s, "CertificateArn"))}}));
          if (!d) return Unexpected<Error>{d.error()};
          const Value* detail = d->find("Certificate");
          if (!detail || field(*detail, "CertificateAuthorityArn") != ca_arn) continue;
        }
        all.push(s);
      }
    }
    token = field(*r, "NextToken");
  } while (!token.empty());
  return all;
}

}  // namespace weft::cli::ca
