#include "cli/stack_resources.h"

#include <set>
#include <vector>

#include "cli/ca_client.h"
#include "cli/registry_client.h"
#include "control/ca/pki.h"

namespace weft::cli::stack {

namespace {

constexpr std::string_view kPrivateDns = "AWS::ServiceDiscovery::PrivateDnsNamespace";
constexpr std::string_view kPublicDns = "AWS::ServiceDiscovery::PublicDnsNamespace";
constexpr std::string_view kHttpNs = "AWS::ServiceDiscovery::HttpNamespace";
constexpr std::string_view kSdService = "AWS::ServiceDiscovery::Service";
constexpr std::string_view kSdInstance = "AWS::ServiceDiscovery::Instance";
constexpr std::string_view kPcaCa = "AWS::ACMPCA::CertificateAuthority";
constexpr std::string_view kPcaCert = "AWS::ACMPCA::Certificate";
constexpr std::string_view kPcaActivation = "AWS::ACMPCA::CertificateAuthorityActivation";
constexpr std::string_view kAcmCert = "AWS::CertificateManager::Certificate";

std::string field(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? m->scalarText() : std::string();
}

Value obj(std::initializer_list<std::pair<const char*, Value>> members) {
  Value o = Value::object();
  for (const auto& [k, v] : members) o.set(k, v);
  return o;
}

Unexpected<Error> err(const std::string& where, const std::string& message) {
  return makeError(where + ": " + message);
}

// Checks that `props` has only `known` members and every one of `required`.
Status checkProperties(const std::string& where, const Value& props,
                       const std::set<std::string_view>& known,
                       const std::vector<std::string_view>& required) {
  for (const auto& [k, v] : props.members())
    if (!known.count(k)) {
      std::string list;
      for (std::string_view n : known) list += (list.empty() ? "" : ", ") + std::string(n);
      return err(where, "unknown property " + k + " (known: " + list + ")");
    }
  for (std::string_view r : required)
    if (props.find(r) == nullptr || props.find(r)->isNull())
      return err(where, "missing property " + std::string(r));
  return {};
}

Result<std::string> stringProp(const std::string& where, const Value& props,
                               std::string_view name) {
  const Value* v = props.find(name);
  if (v == nullptr || v->isNull()) return std::string();
  if (!v->isScalar()) return err(where, std::string(name) + " must be a string");
  return v->scalarText();
}

// CloudFormation passes parameters as text: members that the APIs take as numbers or booleans
// become numbers/booleans when they hold such text.
Value typed(const Value& v) {
  static const std::set<std::string_view> kNumbers = {"TTL", "FailureThreshold", "ExpirationInDays",
                                                      "Value", "PathLenConstraint"};
  static const std::set<std::string_view> kBooleans = {"Enabled", "CRLSign", "KeyCertSign",
                                                       "DigitalSignature"};
  if (v.isArray()) {
    Value out = Value::array();
    for (const Value& i : v.items()) out.push(typed(i));
    return out;
  }
  if (!v.isObject()) return v;
  Value out = Value::object();
  for (const auto& [k, m] : v.members()) {
    if (kNumbers.count(k) && m.isString() && isJsonNumber(m.text())) {
      out.set(k, Value::number(m.text()));
    } else if (kBooleans.count(k) && m.isString() && (m.text() == "true" || m.text() == "false")) {
      out.set(k, Value::boolean(m.text() == "true"));
    } else {
      out.set(k, typed(m));
    }
  }
  return out;
}

// Tags: [{Key, Value}] as CloudFormation and these APIs both spell them.
Result<Value> tags(const std::string& where, const Value& props) {
  const Value* t = props.find("Tags");
  if (t == nullptr) return Value::array();
  if (!t->isArray()) return err(where, "Tags must be a list of {Key, Value}");
  Value out = Value::array();
  for (const Value& tag : t->items()) {
    const Value* k = tag.find("Key");
    const Value* v = tag.find("Value");
    if (k == nullptr || !k->isScalar() || (v && !v->isScalar()))
      return err(where, "Tags must be a list of {Key, Value}");
    out.push(obj({{"Key", Value::string(k->scalarText())},
                  {"Value", Value::string(v ? v->scalarText() : "")}}));
  }
  return out;
}

void copyIf(Value& to, const Value& from, std::string_view key) {
  if (const Value* v = from.find(key); v && !v->isNull()) to.set(std::string(key), typed(*v));
}

// ---- Cloud Map

Result<Made> createNamespace(ApiClient& api, std::string_view type, const std::string& where,
                             const Value& p) {
  bool dns = type != kHttpNs;
  std::set<std::string_view> known = {"Name", "Description", "Tags"};
  std::vector<std::string_view> required = {"Name"};
  if (dns) known.insert("Properties");
  if (type == kPrivateDns) {
    known.insert("Vpc");
    required.push_back("Vpc");
  }
  if (auto s = checkProperties(where, p, known, required); !s) return Unexpected<Error>{s.error()};
  auto t = tags(where, p);
  if (!t) return Unexpected<Error>{t.error()};
  Value req = Value::object();
  for (std::string_view k : {"Name", "Vpc", "Description"}) copyIf(req, p, k);
  if (dns) copyIf(req, p, "Properties");
  if (!t->items().empty()) req.set("Tags", *t);
  std::string op = type == kPrivateDns  ? "CreatePrivateDnsNamespace"
                   : type == kPublicDns ? "CreatePublicDnsNamespace"
                                        : "CreateHttpNamespace";
  auto r = registry::call(api, op, req);
  if (!r) return Unexpected<Error>{r.error()};
  auto targets = registry::waitForOperation(api, field(*r, "OperationId"));
  if (!targets) return Unexpected<Error>{targets.error()};
  std::string id = field(*targets, "NAMESPACE");
  if (id.empty()) return err(where, op + "'s operation names no NAMESPACE");
  auto ns = registry::call(api, "GetNamespace", obj({{"Id", Value::string(id)}}));
  if (!ns) return Unexpected<Error>{ns.error()};
  const Value* n = ns->find("Namespace");
  Made m;
  m.ref = Value::string(id);
  m.attributes =
      obj({{"Id", Value::string(id)}, {"Arn", Value::string(n ? field(*n, "Arn") : "")}});
  if (dns) {
    const Value* props = n ? n->find("Properties") : nullptr;
    const Value* dp = props ? props->find("DnsProperties") : nullptr;
    m.attributes.set("HostedZoneId", Value::string(dp ? field(*dp, "HostedZoneId") : ""));
  }
  m.handle = obj({{"Id", Value::string(id)}});
  return m;
}

Result<Made> createService(ApiClient& api, const std::string& where, const Value& p,
                           const std::string& generated_name) {
  if (auto s =
          checkProperties(where, p,
                          {"Name", "NamespaceId", "Description", "DnsConfig", "HealthCheckConfig",
                           "HealthCheckCustomConfig", "Type", "Tags", "ServiceAttributes"},
                          {});
      !s)
    return Unexpected<Error>{s.error()};
  if (const Value* a = p.find("ServiceAttributes"); a && a->isObject() && !a->members().empty())
    return err(where, "ServiceAttributes are not supported by weft's registry yet");
  auto t = tags(where, p);
  if (!t) return Unexpected<Error>{t.error()};
  auto name = stringProp(where, p, "Name");
  if (!name) return Unexpected<Error>{name.error()};
  Value req = obj({{"Name", Value::string(name->empty() ? generated_name : *name)}});
  for (std::string_view k : {"NamespaceId", "Description", "DnsConfig", "HealthCheckConfig",
                             "HealthCheckCustomConfig", "Type"})
    copyIf(req, p, k);
  if (!t->items().empty()) req.set("Tags", *t);
  auto r = registry::call(api, "CreateService", req);
  if (!r) return Unexpected<Error>{r.error()};
  const Value* s = r->find("Service");
  if (s == nullptr) return err(where, "CreateService answered no Service");
  Made m;
  m.ref = Value::string(field(*s, "Id"));
  m.attributes = obj({{"Id", Value::string(field(*s, "Id"))},
                      {"Arn", Value::string(field(*s, "Arn"))},
                      {"Name", Value::string(field(*s, "Name"))}});
  m.handle = obj({{"Id", Value::string(field(*s, "Id"))}});
  return m;
}

Result<Made> createInstance(ApiClient& api, const std::string& where, const Value& p,
                            const std::string& generated_name) {
  if (auto s = checkProperties(where, p, {"InstanceAttributes", "InstanceId", "ServiceId"},
                               {"InstanceAttributes", "ServiceId"});
      !s)
    return Unexpected<Error>{s.error()};
  const Value* attrs = p.find("InstanceAttributes");
  if (!attrs->isObject()) return err(where, "InstanceAttributes must be a map of strings");
  Value attributes = Value::object();
  for (const auto& [k, v] : attrs->members()) {
    if (!v.isScalar() || v.isNull())
      return err(where, "InstanceAttributes." + k + " must be a string");
    attributes.set(k, Value::string(v.scalarText()));
  }
  auto id = stringProp(where, p, "InstanceId");
  if (!id) return Unexpected<Error>{id.error()};
  auto service = stringProp(where, p, "ServiceId");
  if (!service) return Unexpected<Error>{service.error()};
  std::string instance_id = id->empty() ? generated_name : *id;
  auto r = registry::call(api, "RegisterInstance",
                          obj({{"ServiceId", Value::string(*service)},
                               {"InstanceId", Value::string(instance_id)},
                               {"Attributes", attributes}}));
  if (!r) return Unexpected<Error>{r.error()};
  auto done = registry::waitForOperation(api, field(*r, "OperationId"));
  if (!done) return Unexpected<Error>{done.error()};
  Made m;
  m.ref = Value::string(instance_id);
  m.attributes = Value::object();
  m.handle =
      obj({{"ServiceId", Value::string(*service)}, {"InstanceId", Value::string(instance_id)}});
  return m;
}

// ---- ACM PCA and ACM

Result<Made> createCa(ApiClient& api, const std::string& where, const Value& p) {
  if (auto s = checkProperties(
          where, p,
          {"Type", "KeyAlgorithm", "SigningAlgorithm", "Subject", "RevocationConfiguration",
           "CsrExtensions", "KeyStorageSecurityStandard", "UsageMode", "Tags"},
          {"Type", "KeyAlgorithm", "SigningAlgorithm", "Subject"});
      !s)
    return Unexpected<Error>{s.error()};
  auto t = tags(where, p);
  if (!t) return Unexpected<Error>{t.error()};
  Value config = Value::object();
  for (std::string_view k : {"KeyAlgorithm", "SigningAlgorithm", "Subject", "CsrExtensions"})
    copyIf(config, p, k);
  Value req = obj({{"CertificateAuthorityConfiguration", config},
                   {"CertificateAuthorityType", typed(*p.find("Type"))}});
  for (std::string_view k : {"RevocationConfiguration", "KeyStorageSecurityStandard", "UsageMode"})
    copyIf(req, p, k);
  if (!t->items().empty()) req.set("Tags", *t);
  auto r = ca::pca(api, "CreateCertificateAuthority", req);
  if (!r) return Unexpected<Error>{r.error()};
  std::string arn = field(*r, "CertificateAuthorityArn");
  auto csr = ca::pca(api, "GetCertificateAuthorityCsr",
                     obj({{"CertificateAuthorityArn", Value::string(arn)}}));
  if (!csr) {
    (void)ca::pca(api, "DeleteCertificateAuthority",
                  obj({{"CertificateAuthorityArn", Value::string(arn)}}));
    return Unexpected<Error>{csr.error()};
  }
  Made m;
  m.ref = Value::string(arn);
  m.attributes = obj({{"Arn", Value::string(arn)},
                      {"CertificateSigningRequest", Value::string(field(*csr, "Csr"))}});
  m.handle = obj({{"Arn", Value::string(arn)}});
  return m;
}

Result<Made> createPcaCertificate(ApiClient& api, const std::string& where, const Value& p) {
  if (auto s = checkProperties(
          where, p,
          {"CertificateAuthorityArn", "CertificateSigningRequest", "SigningAlgorithm",
           "TemplateArn", "Validity", "ValidityNotBefore", "ApiPassthrough"},
          {"CertificateAuthorityArn", "CertificateSigningRequest", "SigningAlgorithm", "Validity"});
      !s)
    return Unexpected<Error>{s.error()};
  auto csr = stringProp(where, p, "CertificateSigningRequest");
  if (!csr) return Unexpected<Error>{csr.error()};
  auto ca_arn = stringProp(where, p, "CertificateAuthorityArn");
  if (!ca_arn) return Unexpected<Error>{ca_arn.error()};
  Value req = obj({{"CertificateAuthorityArn", Value::string(*ca_arn)},
                   {"Csr", Value::string(control::ca::base64Encode(*csr))}});
  for (std::string_view k :
       {"SigningAlgorithm", "TemplateArn", "Validity", "ValidityNotBefore", "ApiPassthrough"})
    copyIf(req, p, k);
  auto r = ca::pca(api, "IssueCertificate", req);
  if (!r) return Unexpected<Error>{r.error()};
  std::string arn = field(*r, "CertificateArn");
  auto pem = ca::certificatePem(api, arn);
  if (!pem) return Unexpected<Error>{pem.error()};
  Made m;
  m.ref = Value::string(arn);
  m.attributes =
      obj({{"Arn", Value::string(arn)}, {"Certificate", Value::string(pem->certificate)}});
  m.handle = obj({{"Arn", Value::string(arn)}});
  return m;
}

std::string joinPem(std::string a, const std::string& b) {
  if (b.empty()) return a;
  if (!a.empty() && a.back() != '\n') a += '\n';
  return a + b;
}

Result<Made> createActivation(ApiClient& api, const std::string& where, const Value& p) {
  if (auto s = checkProperties(
          where, p, {"CertificateAuthorityArn", "Certificate", "CertificateChain", "Status"},
          {"CertificateAuthorityArn", "Certificate"});
      !s)
    return Unexpected<Error>{s.error()};
  auto ca_arn = stringProp(where, p, "CertificateAuthorityArn");
  if (!ca_arn) return Unexpected<Error>{ca_arn.error()};
  auto cert = stringProp(where, p, "Certificate");
  if (!cert) return Unexpected<Error>{cert.error()};
  auto chain = stringProp(where, p, "CertificateChain");
  if (!chain) return Unexpected<Error>{chain.error()};
  auto status = stringProp(where, p, "Status");
  if (!status) return Unexpected<Error>{status.error()};
  if (!status->empty() && *status != "ACTIVE" && *status != "DISABLED")
    return err(where, "Status must be ACTIVE or DISABLED, not '" + *status + "'");
  Value req = obj({{"CertificateAuthorityArn", Value::string(*ca_arn)},
                   {"Certificate", Value::string(control::ca::base64Encode(*cert))}});
  if (!chain->empty())
    req.set("CertificateChain", Value::string(control::ca::base64Encode(*chain)));
  auto r = ca::pca(api, "ImportCertificateAuthorityCertificate", req);
  if (!r) return Unexpected<Error>{r.error()};
  if (*status == "DISABLED") {
    auto u = ca::pca(api, "UpdateCertificateAuthority",
                     obj({{"CertificateAuthorityArn", Value::string(*ca_arn)},
                          {"Status", Value::string("DISABLED")}}));
    if (!u) return Unexpected<Error>{u.error()};
  }
  Made m;
  m.ref = Value::string(*ca_arn);
  m.attributes = obj({{"CompleteCertificateChain", Value::string(joinPem(*cert, *chain))}});
  m.handle = obj({{"CertificateAuthorityArn", Value::string(*ca_arn)}});
  return m;
}

Result<Made> createAcmCertificate(ApiClient& api, const std::string& where, const Value& p) {
  if (auto s = checkProperties(where, p,
                               {"DomainName", "SubjectAlternativeNames", "CertificateAuthorityArn",
                                "KeyAlgorithm", "CertificateTransparencyLoggingPreference",
                                "DomainValidationOptions", "ValidationMethod", "Tags"},
                               {"DomainName"});
      !s)
    return Unexpected<Error>{s.error()};
  auto ca_arn = stringProp(where, p, "CertificateAuthorityArn");
  if (!ca_arn) return Unexpected<Error>{ca_arn.error()};
  if (ca_arn->empty())
    return err(where,
               "weft issues private certificates only: give CertificateAuthorityArn (an "
               "AWS::ACMPCA::CertificateAuthority)");
  auto t = tags(where, p);
  if (!t) return Unexpected<Error>{t.error()};
  Value req = Value::object();
  for (std::string_view k :
       {"DomainName", "SubjectAlternativeNames", "CertificateAuthorityArn", "KeyAlgorithm"})
    copyIf(req, p, k);
  if (const Value* pref = p.find("CertificateTransparencyLoggingPreference"))
    req.set("Options", obj({{"CertificateTransparencyLoggingPreference", *pref}}));
  if (!t->items().empty()) req.set("Tags", *t);
  auto r = ca::acm(api, "RequestCertificate", req);
  if (!r) return Unexpected<Error>{r.error()};
  std::string arn = field(*r, "CertificateArn");
  auto d = ca::acm(api, "DescribeCertificate", obj({{"CertificateArn", Value::string(arn)}}));
  if (!d) return Unexpected<Error>{d.error()};
  const Value* detail = d->find("Certificate");
  if (detail && field(*detail, "Status") == "FAILED") {
    (void)ca::acm(api, "DeleteCertificate", obj({{"CertificateArn", Value::string(arn)}}));
    return err(where, "the certificate FAILED: " + field(*detail, "FailureReason") +
                          " (the certificate authority must be ACTIVE: add a DependsOn on its "
                          "CertificateAuthorityActivation)");
  }
  Made m;
  m.ref = Value::string(arn);
  m.attributes = Value::object();
  m.handle = obj({{"Arn", Value::string(arn)}});
  return m;
}

bool notFound(const Error& e) {
  return registry::isNotFound(e) || e.message.rfind("ResourceNotFoundException", 0) == 0;
}

}  // namespace

bool handlesType(std::string_view type) {
  for (std::string_view t : {kPrivateDns, kPublicDns, kHttpNs, kSdService, kSdInstance, kPcaCa,
                             kPcaCert, kPcaActivation, kAcmCert})
    if (t == type) return true;
  return false;
}

Result<Made> createResource(ApiClient& api, std::string_view type, const std::string& where,
                            const Value& properties, const std::string& generated_name) {
  Result<Made> r = makeError(where + ": type not handled");
  if (type == kPrivateDns || type == kPublicDns || type == kHttpNs)
    r = createNamespace(api, type, where, properties);
  else if (type == kSdService)
    r = createService(api, where, properties, generated_name);
  else if (type == kSdInstance)
    r = createInstance(api, where, properties, generated_name);
  else if (type == kPcaCa)
    r = createCa(api, where, properties);
  else if (type == kPcaCert)
    r = createPcaCertificate(api, where, properties);
  else if (type == kPcaActivation)
    r = createActivation(api, where, properties);
  else if (type == kAcmCert)
    r = createAcmCertificate(api, where, properties);
  return r;
}

Result<bool> deleteResource(ApiClient& api, std::string_view type, const Value& handle) {
  Result<Value> r = Value();
  if (type == kPrivateDns || type == kPublicDns || type == kHttpNs) {
    r = registry::call(api, "DeleteNamespace", obj({{"Id", Value::string(field(handle, "Id"))}}));
    if (r) r = registry::waitForOperation(api, field(*r, "OperationId"));
  } else if (type == kSdService) {
    r = registry::call(api, "DeleteService", obj({{"Id", Value::string(field(handle, "Id"))}}));
  } else if (type == kSdInstance) {
    r = registry::call(api, "DeregisterInstance",
                       obj({{"ServiceId", Value::string(field(handle, "ServiceId"))},
                            {"InstanceId", Value::string(field(handle, "InstanceId"))}}));
    if (r) r = registry::waitForOperation(api, field(*r, "OperationId"));
  } else if (type == kPcaCa) {
    auto d = ca::deleteCa(api, field(handle, "Arn"), std::nullopt);
    if (!d) {
      if (notFound(d.error()) || d.error().message.find("already deleted") != std::string::npos)
        return false;
      return Unexpected<Error>{d.error()};
    }
    return true;
  } else if (type == kPcaCert) {
    return true;  // nothing to delete: the certificate stays issued, as in CloudFormation
  } else if (type == kPcaActivation) {
    Value id =
        obj({{"CertificateAuthorityArn", Value::string(field(handle, "CertificateAuthorityArn"))}});
    auto d = ca::pca(api, "DescribeCertificateAuthority", id);
    if (!d) {
      if (notFound(d.error())) return false;
      return Unexpected<Error>{d.error()};
    }
    const Value* c = d->find("CertificateAuthority");
    if (!c || field(*c, "Status") != "ACTIVE") return true;
    id.set("Status", Value::string("DISABLED"));
    r = ca::pca(api, "UpdateCertificateAuthority", id);
  } else if (type == kAcmCert) {
    r = ca::acm(api, "DeleteCertificate",
                obj({{"CertificateArn", Value::string(field(handle, "Arn"))}}));
  } else {
    return makeError(std::string(type) + " is not a type weft deploys");
  }
  if (!r) {
    if (notFound(r.error())) return false;
    return Unexpected<Error>{r.error()};
  }
  return true;
}

}  // namespace weft::cli::stack
