#include "control/ca/ca_api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <set>
#include <vector>

#include "common/log.h"
#include "control/api/crypto_util.h"
#include "control/ca/pki.h"
#include "control/compile/compiler.h"
#include "control/stacks/json_value.h"

namespace weft::control::ca {
namespace {

using stacks::Value;

constexpr int kMaxAttempts = 32;
constexpr int64_t kDay = 86400;
constexpr int64_t kAcmValidityDays = 395;  // ACM private certificates: 13 months
// weft's extension of RequestCertificate (ACM has no such member): the certificate's validity
// in days, 1 to what the CA's certificate allows; kept in the record ("ValidityDays") so
// RenewCertificate reissues for as long. docs/ca.md.
constexpr std::string_view kValidityMember = "WeftValidityInDays";
constexpr int64_t kMaxValidityDays = 36500;
constexpr int64_t kBackdate = 3600;  // notBefore an hour early, for clock skew (as PCA)
constexpr std::string_view kKekCheckKey = kKekCheckRecordKey;
constexpr std::string_view kKekCheckText = kKekCheckRecordText;
constexpr std::string_view kImportPath = "/weft/v1/certificate-authorities/import";

// ---- errors: AWS JSON 1.1 error names, all 400 but internal failures ----

enum Code : int {
  kValidation = 2001,
  kSerialization,
  kInvalidArgs,
  kInvalidArn,
  kInvalidState,
  kInvalidRequest,
  kInvalidNextToken,
  kResourceNotFound,
  kMalformedCsr,
  kMalformedCertificate,
  kCertificateMismatch,
  kRequestInProgress,
  kRequestAlreadyProcessed,
  kLimitExceeded,
  kInvalidParameter,
  kResourceInUse,
  kThrottling,
  kUnknownOperation,
  kIdempotentMismatch,
};

const char* codeName(int code) {
  switch (code) {
    case kValidation:
      return "ValidationException";
    case kSerialization:
      return "SerializationException";
    case kInvalidArgs:
      return "InvalidArgsException";
    case kInvalidArn:
      return "InvalidArnException";
    case kInvalidState:
      return "InvalidStateException";
    case kInvalidRequest:
      return "InvalidRequestException";
    case kInvalidNextToken:
      return "InvalidNextTokenException";
    case kResourceNotFound:
      return "ResourceNotFoundException";
    case kMalformedCsr:
      return "MalformedCSRException";
    case kMalformedCertificate:
      return "MalformedCertificateException";
    case kCertificateMismatch:
      return "CertificateMismatchException";
    case kRequestInProgress:
      return "RequestInProgressException";
    case kRequestAlreadyProcessed:
      return "RequestAlreadyProcessedException";
    case kLimitExceeded:
      return "LimitExceededException";
    case kInvalidParameter:
      return "InvalidParameterException";
    case kResourceInUse:
      return "ResourceInUseException";
    case kThrottling:
      return "ThrottlingException";
    case kUnknownOperation:
      return "UnknownOperationException";
    case kIdempotentMismatch:
      return "IdempotentParameterMismatchException";
    default:
      return "InternalFailure";
  }
}

Unexpected<Error> fail(Code code, std::string message) {
  return makeError(std::move(message), code);
}

ApiResponse errorResponse(const Error& e) {
  const char* name = codeName(e.code);
  bool internal = std::string_view(name) == "InternalFailure";
  ApiResponse r =
      apiError(internal ? 500 : 400, name, internal ? "internal error: " + e.message : e.message);
  r.content_type = "application/x-amz-json-1.1";
  return r;
}

// ---- small helpers ----

bool isUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

Value str(std::string s) { return Value::string(std::move(s)); }
Value num(int64_t n) { return Value::number(n); }

std::string getStr(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? std::string(m->str()) : std::string();
}
int64_t getInt(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  if (m == nullptr || !m->isNumber()) return 0;
  return std::strtoll(m->text().c_str(), nullptr, 10);
}

Result<Value> parseRecord(const KeyValue& kv) {
  auto v = stacks::parseJson(kv.value);
  if (!v || !v->isObject()) return makeError("stored record at " + kv.key + " is not readable");
  return v;
}

// ---- request members: type and model constraints (ValidationException /
// SerializationException, as AWS's JSON protocol layer answers) ----

struct Body {
  Value v;

  static Result<Body> parse(const std::string& text) {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) return Body{Value::object()};
    auto v = stacks::parseJson(text);
    if (!v) return fail(kSerialization, "the request body is not JSON: " + v.error().message);
    if (!v->isObject()) return fail(kSerialization, "the request body must be a JSON object");
    return Body{std::move(*v)};
  }
};

// A string member. `required`: absent answers ValidationException. Length in bytes.
Result<std::string> memberString(const Value& obj, std::string_view name, bool required,
                                 size_t min_len, size_t max_len) {
  const Value* m = obj.find(name);
  if (m == nullptr || m->isNull()) {
    if (required)
      return fail(kValidation, "1 validation error detected: Value null at '" + std::string(name) +
                                   "' failed to satisfy constraint: Member must not be null");
    return std::string();
  }
  if (!m->isString()) return fail(kSerialization, "'" + std::string(name) + "' must be a string");
  const std::string& s = m->text();
  if (s.size() < min_len || s.size() > max_len)
    return fail(kValidation,
                "1 validation error detected: Value at '" + std::string(name) +
                    "' failed to satisfy constraint: Member must have length between " +
                    std::to_string(min_len) + " and " + std::to_string(max_len));
  return s;
}

Result<std::string> memberEnum(const Value& obj, std::string_view name, bool required,
                               std::initializer_list<std::string_view> allowed) {
  auto s = memberString(obj, name, required, 0, 1000);
  if (!s || s->empty()) return s;
  for (std::string_view a : allowed)
    if (*s == a) return s;
  std::string list;
  for (std::string_view a : allowed) list += std::string(list.empty() ? "" : ", ") + std::string(a);
  return fail(kValidation, "1 validation error detected: Value '" + s->substr(0, 100) + "' at '" +
                               std::string(name) +
                               "' failed to satisfy constraint: Member must satisfy enum value "
                               "set: [" +
                               list + "]");
}

// An integer member; `present` says whether it was given.
Result<int64_t> memberInt(const Value& obj, std::string_view name, bool required, int64_t min,
                          int64_t max, bool* present = nullptr) {
  const Value* m = obj.find(name);
  if (present) *present = m != nullptr && !m->isNull();
  if (m == nullptr || m->isNull()) {
    if (required)
      return fail(kValidation, "1 validation error detected: Value null at '" + std::string(name) +
                                   "' failed to satisfy constraint: Member must not be null");
    return min;
  }
  const std::string& t = m->text();
  bool integral = m->isNumber() && t.find_first_of(".eE") == std::string::npos && t.size() <= 18;
  if (!integral) return fail(kSerialization, "'" + std::string(name) + "' must be an integer");
  int64_t n = std::strtoll(t.c_str(), nullptr, 10);
  if (n < min || n > max)
    return fail(kValidation, "1 validation error detected: Value '" + t + "' at '" +
                                 std::string(name) +
                                 "' failed to satisfy constraint: Member must have value between " +
                                 std::to_string(min) + " and " + std::to_string(max));
  return n;
}

// An object member (nullptr when absent).
Result<const Value*> memberObject(const Value& obj, std::string_view name, bool required) {
  const Value* m = obj.find(name);
  if (m == nullptr || m->isNull()) {
    if (required)
      return fail(kValidation, "1 validation error detected: Value null at '" + std::string(name) +
                                   "' failed to satisfy constraint: Member must not be null");
    return static_cast<const Value*>(nullptr);
  }
  if (!m->isObject()) return fail(kSerialization, "'" + std::string(name) + "' must be an object");
  return m;
}

// A blob member: base64 in JSON, as botocore sends blobs.
Result<std::string> memberBlob(const Value& obj, std::string_view name, bool required,
                               size_t min_len, size_t max_len) {
  auto s = memberString(obj, name, required, 0, max_len * 4 / 3 + 8);
  if (!s) return s;
  if (s->empty() && !required) return s;
  auto bytes = base64Decode(*s);
  if (!bytes) return fail(kSerialization, "'" + std::string(name) + "' is not valid base64");
  if (bytes->size() < min_len || bytes->size() > max_len)
    return fail(kValidation,
                "1 validation error detected: Value at '" + std::string(name) +
                    "' failed to satisfy constraint: Member must have length between " +
                    std::to_string(min_len) + " and " + std::to_string(max_len));
  return std::move(*bytes);
}

// ---- names ----

// ACM's DomainNameString: optional "*." then at least two labels of letters, digits and '-'
// (not at either end), at most 253 characters.
bool validDomainName(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  if (d.substr(0, 2) == "*.") d.remove_prefix(2);
  int labels = 0;
  size_t start = 0;
  while (true) {
    size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? d.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    ++labels;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return labels >= 2;
}

// ASN1Subject (ACM PCA) -> X509_NAME entries, in the order PCA writes them.
Result<std::vector<NameEntry>> subjectEntries(const Value& subject) {
  static const std::pair<const char*, const char*> kFields[] = {
      {"Country", "C"},
      {"State", "ST"},
      {"Locality", "L"},
      {"Organization", "O"},
      {"OrganizationalUnit", "OU"},
      {"DistinguishedNameQualifier", "dnQualifier"},
      {"SerialNumber", "serialNumber"},
      {"Title", "title"},
      {"Surname", "SN"},
      {"GivenName", "GN"},
      {"Initials", "initials"},
      {"Pseudonym", "pseudonym"},
      {"GenerationQualifier", "generationQualifier"},
      {"CommonName", "CN"},
  };
  std::vector<NameEntry> out;
  for (const auto& [member, field] : kFields) {
    auto v = memberString(subject, member, false, 0, 128);
    if (!v) return Unexpected<Error>{v.error()};
    if (std::string_view(member) == "Country" && !v->empty() && v->size() != 2)
      return fail(kValidation, "Subject.Country: must be a 2-letter country code");
    if (!v->empty()) out.push_back({field, *v});
  }
  if (const Value* custom = subject.find("CustomAttributes"); custom && custom->isArray()) {
    for (const Value& a : custom->items()) {
      auto oid = memberString(a, "ObjectIdentifier", true, 1, 64);
      if (!oid) return Unexpected<Error>{oid.error()};
      auto val = memberString(a, "Value", true, 1, 256);
      if (!val) return Unexpected<Error>{val.error()};
      out.push_back({*oid, *val});
    }
  }
  if (out.empty()) return fail(kInvalidArgs, "Subject: at least one attribute must be set");
  return out;
}

int revocationReasonCode(std::string_view r) {
  if (r == "KEY_COMPROMISE") return 1;
  if (r == "CERTIFICATE_AUTHORITY_COMPROMISE") return 2;
  if (r == "AFFILIATION_CHANGED") return 3;
  if (r == "SUPERSEDED") return 4;
  if (r == "CESSATION_OF_OPERATION") return 5;
  if (r == "PRIVILEGE_WITHDRAWN") return 9;
  if (r == "A_A_COMPROMISE") return 10;
  return 0;
}

// ACM spells some reasons differently from ACM PCA.
std::string acmRevocationReason(std::string_view pca) {
  if (pca == "CERTIFICATE_AUTHORITY_COMPROMISE") return "CA_COMPROMISE";
  if (pca == "SUPERSEDED") return "SUPERCEDED";
  return std::string(pca);
}

// RevocationConfiguration.CrlConfiguration.ExpirationInDays (7 when absent): how long each CRL
// the CA signs is valid.
Result<int64_t> crlDaysOf(const Value* revocation) {
  if (revocation == nullptr) return int64_t{7};
  auto crl = memberObject(*revocation, "CrlConfiguration", false);
  if (!crl) return Unexpected<Error>{crl.error()};
  if (*crl == nullptr) return int64_t{7};
  bool has = false;
  auto days = memberInt(**crl, "ExpirationInDays", false, 1, 5000, &has);
  if (!days) return Unexpected<Error>{days.error()};
  return has ? *days : int64_t{7};
}

// A certificate's subject as ACM PCA's ASN1Subject (the inverse of subjectEntries): the
// attributes ASN1Subject has a member for, once each; any other attribute, or a repeated one, as
// CustomAttributes with its dotted OID.
Value subjectValue(const X509_NAME* name) {
  static const std::pair<int, const char*> kFields[] = {
      {NID_countryName, "Country"},
      {NID_stateOrProvinceName, "State"},
      {NID_localityName, "Locality"},
      {NID_organizationName, "Organization"},
      {NID_organizationalUnitName, "OrganizationalUnit"},
      {NID_dnQualifier, "DistinguishedNameQualifier"},
      {NID_serialNumber, "SerialNumber"},
      {NID_title, "Title"},
      {NID_surname, "Surname"},
      {NID_givenName, "GivenName"},
      {NID_initials, "Initials"},
      {NID_pseudonym, "Pseudonym"},
      {NID_generationQualifier, "GenerationQualifier"},
      {NID_commonName, "CommonName"},
  };
  Value out = Value::object();
  Value custom = Value::array();
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(e);
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    if (len < 0) continue;
    std::string value(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
    const char* member = nullptr;
    for (const auto& [nid, m] : kFields)
      if (nid == OBJ_obj2nid(obj)) member = m;
    if (member != nullptr && out.find(member) == nullptr) {
      out.set(member, Value::string(std::move(value)));
      continue;
    }
    char oid[128] = {};
    OBJ_obj2txt(oid, sizeof oid, obj, 1);
    Value a = Value::object();
    a.set("ObjectIdentifier", Value::string(oid));
    a.set("Value", Value::string(std::move(value)));
    custom.push(std::move(a));
  }
  if (!custom.items().empty()) out.set("CustomAttributes", std::move(custom));
  return out;
}

// ---- validity (ACM PCA's Validity structure) ----

// Parses "YYYYMMDDHHMMSS" (END_DATE) as UTC.
std::optional<int64_t> parseEndDate(int64_t v) {
  std::string s = std::to_string(v);
  if (s.size() != 14) return std::nullopt;
  struct tm tm {};
  tm.tm_year = std::stoi(s.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(s.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(s.substr(6, 2));
  tm.tm_hour = std::stoi(s.substr(8, 2));
  tm.tm_min = std::stoi(s.substr(10, 2));
  tm.tm_sec = std::stoi(s.substr(12, 2));
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 59)
    return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

int64_t addMonths(int64_t t, int64_t months) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  int64_t total = tm.tm_mon + months;
  tm.tm_year += static_cast<int>(total / 12);
  tm.tm_mon = static_cast<int>(total % 12);
  return static_cast<int64_t>(timegm(&tm));
}

Result<int64_t> validityEnd(const Value& validity, int64_t now, std::string_view what) {
  auto type =
      memberEnum(validity, "Type", true, {"END_DATE", "ABSOLUTE", "DAYS", "MONTHS", "YEARS"});
  if (!type) return Unexpected<Error>{type.error()};
  auto value = memberInt(validity, "Value", true, 1, INT64_MAX / 2);
  if (!value) return Unexpected<Error>{value.error()};
  int64_t v = *value;
  if (*type == "DAYS") {
    if (v > 365 * 1000) return fail(kInvalidArgs, std::string(what) + ": too many days");
    return now + v * kDay;
  }
  if (*type == "MONTHS") {
    if (v > 12 * 1000) return fail(kInvalidArgs, std::string(what) + ": too many months");
    return addMonths(now, v);
  }
  if (*type == "YEARS") {
    if (v > 1000) return fail(kInvalidArgs, std::string(what) + ": too many years");
    return addMonths(now, v * 12);
  }
  if (*type == "ABSOLUTE") return v;
  auto end = parseEndDate(v);
  if (!end) return fail(kInvalidArgs, std::string(what) + ": END_DATE must be YYYYMMDDHHMMSS");
  return *end;
}

// ---- ARNs ----

struct Arn {
  std::string service, region, account, resource;
};

std::optional<Arn> splitArn(std::string_view s) {
  Arn a;
  std::string_view parts[6];
  for (int i = 0; i < 5; ++i) {
    size_t c = s.find(':');
    if (c == std::string_view::npos) return std::nullopt;
    parts[i] = s.substr(0, c);
    s.remove_prefix(c + 1);
  }
  parts[5] = s;
  if (parts[0] != "arn" || parts[1].empty()) return std::nullopt;
  a.service = std::string(parts[2]);
  a.region = std::string(parts[3]);
  a.account = std::string(parts[4]);
  a.resource = std::string(parts[5]);
  return a;
}

// ---- output ----

std::string answer(const Value& v) { return stacks::toJson(v); }

}  // namespace

struct CaApi::Impl {
  Store& store;
  const TimeSource& time;
  const Kek& kek;
  Options options;

  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch())
        .count();
  }

  std::string caArn(const std::string& id) const {
    return "arn:aws:acm-pca:" + options.region + ":" + options.account_id +
           ":certificate-authority/" + id;
  }
  std::string acmArn(const std::string& id) const {
    return "arn:aws:acm:" + options.region + ":" + options.account_id + ":certificate/" + id;
  }

  // The CA id of a CA ARN: InvalidArnException when it is not one, ResourceNotFound when it is
  // another region's or account's.
  Result<std::string> caIdOf(const std::string& arn,
                             std::string_view member = "CertificateAuthorityArn") {
    auto a = splitArn(arn);
    constexpr std::string_view kPrefix = "certificate-authority/";
    if (!a || a->service != "acm-pca" || a->resource.substr(0, kPrefix.size()) != kPrefix ||
        !isUuid(std::string_view(a->resource).substr(kPrefix.size())))
      return fail(kInvalidArn, std::string(member) + ": \"" + arn.substr(0, 200) +
                                   "\" is not a certificate authority ARN "
                                   "(arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID)");
    if (a->region != options.region || a->account != options.account_id)
      return fail(kResourceNotFound, "Could not find certificate authority " + arn.substr(0, 200));
    return a->resource.substr(kPrefix.size());
  }

  Result<std::string> acmIdOf(const std::string& arn) {
    auto a = splitArn(arn);
    constexpr std::string_view kPrefix = "certificate/";
    if (!a || a->service != "acm" || a->resource.substr(0, kPrefix.size()) != kPrefix ||
        !isUuid(std::string_view(a->resource).substr(kPrefix.size())))
      return fail(kInvalidArn, "CertificateArn: \"" + arn.substr(0, 200) +
                                   "\" is not an ACM certificate ARN "
                                   "(arn:aws:acm:REGION:ACCOUNT:certificate/ID)");
    if (a->region != options.region || a->account != options.account_id)
      return fail(kResourceNotFound, "Could not find certificate " + arn.substr(0, 200));
    return a->resource.substr(kPrefix.size());
  }

  struct Loaded {
    Value v;
    int64_t revision = 0;
  };

  Result<std::optional<Loaded>> load(const std::string& key) {
    auto kv = store.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (!kv->has_value()) return std::optional<Loaded>();
    auto v = parseRecord(**kv);
    if (!v) return Unexpected<Error>{v.error()};
    return std::optional<Loaded>(Loaded{std::move(*v), (*kv)->revision});
  }

  // A CA record, hiding CAs whose restore window has passed (they are gone, as in ACM PCA).
  Result<Loaded> loadCa(const std::string& id) {
    auto l = load("ca/pca/" + id);
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value() || purged((*l)->v))
      return fail(kResourceNotFound, "Could not find certificate authority " + caArn(id));
    return std::move(**l);
  }

  bool purged(const Value& ca) const {
    return getStr(ca, "Status") == "DELETED" && getInt(ca, "RestorableUntil") <= now();
  }

  // The status a client sees: ACTIVE turns EXPIRED after the CA certificate's notAfter.
  std::string caStatus(const Value& ca) const {
    std::string s = getStr(ca, "Status");
    if (s == "ACTIVE" && getInt(ca, "NotAfter") > 0 && getInt(ca, "NotAfter") <= now())
      return "EXPIRED";
    return s;
  }

  Result<KeyPtr> caKey(const Value& ca) {
    auto pem = kek.open(getStr(ca, "Key"), getStr(ca, "Arn"));
    if (!pem) return makeError("CA " + getStr(ca, "Arn") + ": " + pem.error().message);
    auto key = privateKeyFromPem(*pem);
    OPENSSL_cleanse(pem->data(), pem->size());
    return key;
  }

  // Idempotency: the stored answer for (op, token) if the same request was made, a mismatch
  // error if another request used the token, nullopt if the token is new.
  Result<std::optional<std::string>> tokenAnswer(std::string_view op, const std::string& token,
                                                 const std::string& digest, std::string* key) {
    *key = "ca/token/" + std::string(op) + "/" + sha256Hex(token);
    auto l = load(*key);
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value()) return std::optional<std::string>();
    if (getStr((*l)->v, "Digest") != digest)
      return fail(kIdempotentMismatch, "the idempotency token \"" + token +
                                           "\" was already used with a different request");
    return std::optional<std::string>(getStr((*l)->v, "Arn"));
  }

  StoreOp tokenOp(const std::string& key, const std::string& digest, const std::string& arn) {
    Value t = Value::object();
    t.set("Digest", str(digest));
    t.set("Arn", str(arn));
    return StoreOp::put(key, answer(t), StoreOp::kAbsent);
  }

  Result<std::string> commitLoop(
      const std::function<Result<std::optional<std::string>>()>& attempt) {
    for (int i = 0; i < kMaxAttempts; ++i) {
      auto r = attempt();
      if (!r) return Unexpected<Error>{r.error()};
      if (r->has_value()) return **r;
    }
    return fail(kThrottling, "too many concurrent changes; retry");
  }

  // Commits `ops`: the answer on success, nullopt on a conflict (retry), else the error.
  Result<std::optional<std::string>> tryCommit(const std::vector<StoreOp>& ops, std::string ok) {
    auto c = store.commit(ops);
    if (c) return std::optional<std::string>(std::move(ok));
    if (c.error().code == kStoreConflict) return std::optional<std::string>();
    return Unexpected<Error>{c.error()};
  }

  // ================= ACM PCA =================

  Result<std::string> createCa(const Value& in) {
    auto type = memberEnum(in, "CertificateAuthorityType", true, {"ROOT", "SUBORDINATE"});
    if (!type) return Unexpected<Error>{type.error()};
    auto config = memberObject(in, "CertificateAuthorityConfiguration", true);
    if (!config) return Unexpected<Error>{config.error()};
    const Value& cfg = **config;
    auto key_alg = memberEnum(cfg, "KeyAlgorithm", true,
                              {"RSA_2048", "RSA_4096", "EC_prime256v1", "EC_secp384r1"});
    if (!key_alg) return Unexpected<Error>{key_alg.error()};
    auto sign_alg = memberEnum(cfg, "SigningAlgorithm", true,
                               {"SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA",
                                "SHA256WITHRSA", "SHA384WITHRSA", "SHA512WITHRSA"});
    if (!sign_alg) return Unexpected<Error>{sign_alg.error()};
    auto subject = memberObject(cfg, "Subject", true);
    if (!subject) return Unexpected<Error>{subject.error()};
    auto entries = subjectEntries(**subject);
    if (!entries) return Unexpected<Error>{entries.error()};
    auto revocation = memberObject(in, "RevocationConfiguration", false);
    if (!revocation) return Unexpected<Error>{revocation.error()};
    auto crl_days = crlDaysOf(*revocation);
    if (!crl_days) return Unexpected<Error>{crl_days.error()};
    auto token = memberString(in, "IdempotencyToken", false, 1, 36);
    if (!token) return Unexpected<Error>{token.error()};
    auto usage = memberEnum(in, "UsageMode", false, {"GENERAL_PURPOSE", "SHORT_LIVED_CERTIFICATE"});
    if (!usage) return Unexpected<Error>{usage.error()};
    auto storage = memberEnum(in, "KeyStorageSecurityStandard", false,
                              {"FIPS_140_2_LEVEL_2_OR_HIGHER", "FIPS_140_2_LEVEL_3_OR_HIGHER"});
    if (!storage) return Unexpected<Error>{storage.error()};
    if (const Value* tags = in.find("Tags");
        tags && (!tags->isArray() || tags->items().size() > 50))
      return fail(kValidation, "Tags: at most 50 tags");

    auto alg = parseSigningAlgorithm(*sign_alg);
    bool ec = key_alg->rfind("EC_", 0) == 0;
    if (alg->ecdsa != ec)
      return fail(kInvalidArgs,
                  "SigningAlgorithm " + *sign_alg + " cannot sign with a " + *key_alg + " key");

    std::string digest = sha256Hex(answer(in));
    std::string token_key;
    if (!token->empty()) {
      auto prior = tokenAnswer("CreateCertificateAuthority", *token, digest, &token_key);
      if (!prior) return Unexpected<Error>{prior.error()};
      if (prior->has_value()) {
        Value out = Value::object();
        out.set("CertificateAuthorityArn", str(**prior));
        return answer(out);
      }
    }

    auto key = generateKey(*parseKeyAlgorithm(*key_alg));
    if (!key) return Unexpected<Error>{key.error()};
    auto name = makeName(*entries);
    if (!name) return fail(kInvalidArgs, "Subject: " + name.error().message);
    auto csr = makeCsr(key->get(), name->get(), *alg);
    if (!csr) return Unexpected<Error>{csr.error()};

    std::string id = uuidV4();
    std::string arn = caArn(id);
    std::string key_pem = privateKeyToPem(key->get());
    Value rec = Value::object();
    rec.set("Arn", str(arn));
    rec.set("OwnerAccount", str(options.account_id));
    rec.set("CreatedAt", num(now()));
    rec.set("LastStateChangeAt", num(now()));
    rec.set("Type", str(*type));
    rec.set("Status", str("PENDING_CERTIFICATE"));
    rec.set("CertificateAuthorityConfiguration", cfg);
    if (*revocation) rec.set("RevocationConfiguration", **revocation);
    rec.set("CrlDays", num(*crl_days));
    rec.set("UsageMode", str(usage->empty() ? "GENERAL_PURPOSE" : *usage));
    rec.set("KeyStorageSecurityStandard",
            str(storage->empty() ? "FIPS_140_2_LEVEL_3_OR_HIGHER" : *storage));
    rec.set("Key", str(kek.seal(key_pem, arn)));
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
    rec.set("Csr", str(csrToPem(csr->get())));
    if (const Value* tags = in.find("Tags")) rec.set("Tags", *tags);

    Value out = Value::object();
    out.set("CertificateAuthorityArn", str(arn));
    std::vector<StoreOp> ops{StoreOp::put("ca/pca/" + id, answer(rec), StoreOp::kAbsent)};
    if (!token_key.empty()) ops.push_back(tokenOp(token_key, digest, arn));
    auto c = store.commit(ops);
    if (!c && c.error().code == kStoreConflict && !token_key.empty())
      return createCa(in);  // a racing request with the same token won; answer as it did
    if (!c) return Unexpected<Error>{c.error()};
    return answer(out);
  }

  Value describeCaValue(const Value& ca) {
    Value out = Value::object();
    out.set("Arn", str(getStr(ca, "Arn")));
    out.set("OwnerAccount", str(getStr(ca, "OwnerAccount")));
    out.set("CreatedAt", num(getInt(ca, "CreatedAt")));
    out.set("LastStateChangeAt", num(getInt(ca, "LastStateChangeAt")));
    out.set("Type", str(getStr(ca, "Type")));
    if (!getStr(ca, "Serial").empty()) out.set("Serial", str(getStr(ca, "Serial")));
    out.set("Status", str(caStatus(ca)));
    if (getInt(ca, "NotBefore") > 0) {
      out.set("NotBefore", num(getInt(ca, "NotBefore")));
      out.set("NotAfter", num(getInt(ca, "NotAfter")));
    }
    if (const Value* c = ca.find("CertificateAuthorityConfiguration"))
      out.set("CertificateAuthorityConfiguration", *c);
    if (const Value* r = ca.find("RevocationConfiguration")) out.set("RevocationConfiguration", *r);
    if (getStr(ca, "Status") == "DELETED")
      out.set("RestorableUntil", num(getInt(ca, "RestorableUntil")));
    out.set("KeyStorageSecurityStandard", str(getStr(ca, "KeyStorageSecurityStandard")));
    out.set("UsageMode", str(getStr(ca, "UsageMode")));
    return out;
  }

  Result<std::string> describeCa(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    Value out = Value::object();
    out.set("CertificateAuthority", describeCaValue(ca->v));
    return answer(out);
  }

  // Opaque list tokens: base64 of "w1:" + the last key's suffix.
  static std::string makeNextToken(std::string_view after) {
    return base64Encode("w1:" + std::string(after));
  }
  static Result<std::string> readNextToken(const std::string& token, Code code) {
    if (token.empty()) return std::string();
    auto raw = base64Decode(token);
    if (!raw || raw->rfind("w1:", 0) != 0)
      return fail(code, "NextToken: is not a token this API answered");
    return raw->substr(3);
  }

  Result<std::string> listCas(const Value& in) {
    bool has_max = false;
    auto max = memberInt(in, "MaxResults", false, 1, 1000, &has_max);
    if (!max) return Unexpected<Error>{max.error()};
    auto token = memberString(in, "NextToken", false, 1, 500);
    if (!token) return Unexpected<Error>{token.error()};
    auto owner = memberEnum(in, "ResourceOwner", false, {"SELF", "OTHER_ACCOUNTS"});
    if (!owner) return Unexpected<Error>{owner.error()};
    auto after = readNextToken(*token, kInvalidNextToken);
    if (!after) return Unexpected<Error>{after.error()};
    size_t limit = has_max ? static_cast<size_t>(*max) : 1000;
    Value list = Value::array();
    Value out = Value::object();
    const std::string prefix = "ca/pca/";
    std::string start = after->empty() ? std::string() : prefix + *after;
    std::string last;
    bool more = false;
    while (*owner != "OTHER_ACCOUNTS" && !more) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto v = parseRecord(kv);
        if (!v) return Unexpected<Error>{v.error()};
        if (purged(*v)) continue;
        if (list.items().size() == limit) {
          more = true;
          break;
        }
        list.push(describeCaValue(*v));
        last = kv.key;
      }
      if (items->size() < 200) break;
    }
    if (more)
      out.set("NextToken", str(makeNextToken(std::string_view(last).substr(prefix.size()))));
    out.set("CertificateAuthorities", std::move(list));
    return answer(out);
  }

  Result<std::string> getCsr(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    std::string status = getStr(ca->v, "Status");
    if (status == "DELETED" || getStr(ca->v, "Csr").empty())
      return fail(kInvalidState, "certificate authority " + *arn + " is " + status);
    Value out = Value::object();
    out.set("Csr", str(getStr(ca->v, "Csr")));
    return answer(out);
  }

  // The PEM chain a certificate issued by `ca` is answered with: the CA's certificate and its
  // own chain (empty for a self-signed root's own certificate).
  static std::string chainOf(const Value& ca) {
    std::string chain = getStr(ca, "Certificate");
    std::string rest = getStr(ca, "Chain");
    if (!chain.empty() && chain.back() != '\n') chain += '\n';
    return chain + rest;
  }

  Result<std::string> importCaCert(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto cert_bytes = memberBlob(in, "Certificate", true, 1, 32768);
    if (!cert_bytes) return Unexpected<Error>{cert_bytes.error()};
    auto chain_bytes = memberBlob(in, "CertificateChain", false, 0, 2097152);
    if (!chain_bytes) return Unexpected<Error>{chain_bytes.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto cert = parseCert(*cert_bytes);
    if (!cert) return fail(kMalformedCertificate, "Certificate: " + cert.error().message);

    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(*id);
      if (!ca) return Unexpected<Error>{ca.error()};
      std::string status = getStr(ca->v, "Status");
      if (status != "PENDING_CERTIFICATE" && status != "ACTIVE" && status != "DISABLED")
        return fail(kInvalidState, "certificate authority " + *arn + " is " + status);
      auto key = caKey(ca->v);
      if (!key) return Unexpected<Error>{key.error()};
      if (!samePublicKey(X509_get0_pubkey(cert->get()), key->get()))
        return fail(kCertificateMismatch,
                    "the certificate's public key is not the key of certificate authority " + *arn);
      if (!isCaCert(cert->get()))
        return fail(kInvalidRequest,
                    "the certificate is not a CA certificate (basicConstraints "
                    "CA:TRUE and keyCertSign are needed)");
      bool root = getStr(ca->v, "Type") == "ROOT";
      std::string chain_pem;
      if (root) {
        if (!chain_bytes->empty())
          return fail(kInvalidRequest, "a ROOT certificate authority takes no CertificateChain");
        if (X509_check_issued(cert->get(), cert->get()) != X509_V_OK ||
            X509_verify(cert->get(), key->get()) != 1)
          return fail(kInvalidRequest,
                      "a ROOT certificate authority's certificate must be "
                      "self-signed by its own key");
      } else {
        if (chain_bytes->empty())
          return fail(kInvalidRequest,
                      "a SUBORDINATE certificate authority needs the "
                      "CertificateChain of its issuer, up to a root");
        auto chain = parseCertChain(*chain_bytes);
        if (!chain)
          return fail(kMalformedCertificate, "CertificateChain: " + chain.error().message);
        if (auto v = verifyChain(cert->get(), *chain); !v)
          return fail(kInvalidRequest,
                      "the certificate does not verify against the "
                      "CertificateChain: " +
                          v.error().message);
        for (auto& c : *chain) chain_pem += certToPem(c.get());
      }
      Value rec = ca->v;
      rec.set("Status", str(status == "DISABLED" ? "DISABLED" : "ACTIVE"));
      rec.set("LastStateChangeAt", num(now()));
      rec.set("Certificate", str(certToPem(cert->get())));
      rec.set("Chain", str(chain_pem));
      rec.set("Serial", str(serialColonHex(certSerial(cert->get()))));
      rec.set("NotBefore", num(certNotBefore(cert->get())));
      rec.set("NotAfter", num(certNotAfter(cert->get())));
      std::vector<StoreOp> ops{StoreOp::put("ca/pca/" + *id, answer(rec), ca->revision)};
      auto crl = crlOps(*id, rec, cert->get(), key->get(), nullptr);
      if (!crl) return Unexpected<Error>{crl.error()};
      for (auto& op : *crl) ops.push_back(std::move(op));
      return tryCommit(ops, "{}");
    });
  }

  // Verifies `cert` up to a self-signed certificate of `chain` (at the current time).
  Status verifyChain(X509* cert, const std::vector<CertPtr>& chain) {
    X509_STORE* trust = X509_STORE_new();
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    bool have_root = false;
    for (const auto& c : chain) {
      if (X509_check_issued(c.get(), c.get()) == X509_V_OK) {
        X509_STORE_add_cert(trust, c.get());
        have_root = true;
      } else {
        sk_X509_push(untrusted, c.get());
      }
    }
    Status result;
    if (!have_root) {
      result = makeError("the chain has no self-signed root certificate");
    } else {
      X509_STORE_CTX* ctx = X509_STORE_CTX_new();
      X509_STORE_CTX_init(ctx, trust, cert, untrusted);
      X509_STORE_CTX_set_time(ctx, 0, static_cast<time_t>(now()));
      if (X509_verify_cert(ctx) != 1)
        result = makeError(X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
      X509_STORE_CTX_free(ctx);
    }
    sk_X509_free(untrusted);
    X509_STORE_free(trust);
    return result;
  }

  // weft's own import of an external CA with its key (POST /weft/v1/certificate-authorities/
  // import; ca_api.h): the same record CreateCertificateAuthority +
  // ImportCertificateAuthorityCertificate leave, ACTIVE, with an empty CRL, the key sealed with
  // the KEK. The key's text and the passphrase are wiped from this function's copies; they never
  // appear in an error.
  Result<std::string> importCa(const Value& in) {
    auto cert_pem = memberString(in, "Certificate", true, 1, 32768);
    if (!cert_pem) return Unexpected<Error>{cert_pem.error()};
    auto chain_pem = memberString(in, "CertificateChain", false, 0, 2097152);
    if (!chain_pem) return Unexpected<Error>{chain_pem.error()};
    auto sign_alg = memberEnum(in, "SigningAlgorithm", false,
                               {"SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA",
                                "SHA256WITHRSA", "SHA384WITHRSA", "SHA512WITHRSA"});
    if (!sign_alg) return Unexpected<Error>{sign_alg.error()};
    auto revocation = memberObject(in, "RevocationConfiguration", false);
    if (!revocation) return Unexpected<Error>{revocation.error()};
    auto crl_days = crlDaysOf(*revocation);
    if (!crl_days) return Unexpected<Error>{crl_days.error()};
    KeyPtr key;
    {
      auto key_pem = memberString(in, "PrivateKey", true, 1, 65536);
      if (!key_pem) return Unexpected<Error>{key_pem.error()};
      auto passphrase = memberString(in, "Passphrase", false, 0, 1024);
      if (!passphrase) {
        OPENSSL_cleanse(key_pem->data(), key_pem->size());
        return Unexpected<Error>{passphrase.error()};
      }
      auto k = readForeignPrivateKey(*key_pem, *passphrase);
      OPENSSL_cleanse(key_pem->data(), key_pem->size());
      OPENSSL_cleanse(passphrase->data(), passphrase->size());
      if (!k) return fail(kInvalidRequest, "PrivateKey: " + k.error().message);
      key = std::move(*k);
    }
    auto cert = parseCert(*cert_pem);
    if (!cert) return fail(kMalformedCertificate, "Certificate: " + cert.error().message);
    X509* c = cert->get();
    auto key_alg = keyAlgorithmOf(key.get());
    if (!key_alg)
      return fail(kInvalidRequest,
                  "PrivateKey: weft's CAs use RSA 2048, 3072 or 4096-bit keys or EC P-256, P-384 "
                  "or P-521 keys; this key is none of them");
    if (!samePublicKey(X509_get0_pubkey(c), key.get()))
      return fail(kCertificateMismatch, "the private key is not the key of the certificate");
    uint32_t flags = X509_get_extension_flags(c);
    if (!(flags & EXFLAG_CA))
      return fail(kInvalidRequest,
                  "the certificate is not a CA certificate: basicConstraints CA:TRUE is needed");
    if ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(c) & KU_KEY_CERT_SIGN))
      return fail(kInvalidRequest, "the certificate's keyUsage lacks keyCertSign");
    if ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(c) & KU_CRL_SIGN))
      return fail(kInvalidRequest,
                  "the certificate's keyUsage lacks cRLSign: the CA signs its CRL, which "
                  "verifiers would refuse");
    if (X509_get0_subject_key_id(c) == nullptr)
      return fail(kInvalidRequest,
                  "the certificate has no subjectKeyIdentifier (RFC 5280 requires one in a CA "
                  "certificate; what the CA signs names it as its authorityKeyIdentifier)");
    const int64_t t = now();
    if (certNotAfter(c) <= t)
      return fail(kInvalidRequest,
                  "the certificate expired (notAfter " + std::to_string(certNotAfter(c)) + ")");
    if (certNotBefore(c) > t + kBackdate)
      return fail(kInvalidRequest, "the certificate is not valid yet (notBefore " +
                                       std::to_string(certNotBefore(c)) + ")");
    SigningAlgorithm alg = defaultSigningAlgorithm(key.get());
    if (!sign_alg->empty()) {
      alg = *parseSigningAlgorithm(*sign_alg);
      if (alg.ecdsa != isEcKey(key.get()))
        return fail(kInvalidArgs, "SigningAlgorithm " + *sign_alg + " cannot sign with a " +
                                      keyAlgorithmName(*key_alg) + " key");
    }

    // ROOT: self-signed by this key. SUBORDINATE: its chain verifies up to a self-signed
    // certificate in it.
    const bool root = X509_check_issued(c, c) == X509_V_OK && X509_verify(c, key.get()) == 1;
    std::string chain_out;
    if (root) {
      if (chain_pem->find_first_not_of(" \t\r\n") != std::string::npos)
        return fail(kInvalidRequest,
                    "the certificate is self-signed (a root CA): it takes no CertificateChain");
    } else {
      if (chain_pem->find_first_not_of(" \t\r\n") == std::string::npos)
        return fail(kInvalidRequest,
                    "the certificate is not self-signed, so this is a subordinate CA: give the "
                    "CertificateChain of its issuers, up to a self-signed root");
      auto chain = parseCertChain(*chain_pem);
      if (!chain) return fail(kMalformedCertificate, "CertificateChain: " + chain.error().message);
      std::vector<CertPtr> issuers;
      for (auto& ch : *chain)
        if (X509_cmp(ch.get(), c) != 0) issuers.push_back(std::move(ch));
      if (auto v = verifyChain(c, issuers); !v)
        return fail(
            kInvalidRequest,
            "the certificate does not verify against the CertificateChain: " + v.error().message);
      for (auto& ch : issuers) chain_out += certToPem(ch.get());
    }

    const std::string id = uuidV4();
    const std::string arn = caArn(id);
    Value cfg = Value::object();
    cfg.set("KeyAlgorithm", str(keyAlgorithmName(*key_alg)));
    cfg.set("SigningAlgorithm", str(alg.name));
    cfg.set("Subject", subjectValue(X509_get_subject_name(c)));
    Value rec = Value::object();
    rec.set("Arn", str(arn));
    rec.set("OwnerAccount", str(options.account_id));
    rec.set("CreatedAt", num(t));
    rec.set("LastStateChangeAt", num(t));
    rec.set("Type", str(root ? "ROOT" : "SUBORDINATE"));
    rec.set("Status", str("ACTIVE"));
    rec.set("Imported", Value::boolean(true));
    rec.set("CertificateAuthorityConfiguration", std::move(cfg));
    if (*revocation) rec.set("RevocationConfiguration", **revocation);
    rec.set("CrlDays", num(*crl_days));
    rec.set("UsageMode", str("GENERAL_PURPOSE"));
    rec.set("KeyStorageSecurityStandard", str("FIPS_140_2_LEVEL_3_OR_HIGHER"));
    std::string key_text = privateKeyToPem(key.get());
    rec.set("Key", str(kek.seal(key_text, arn)));
    OPENSSL_cleanse(key_text.data(), key_text.size());
    rec.set("Certificate", str(certToPem(c)));
    rec.set("Chain", str(chain_out));
    rec.set("Serial", str(serialColonHex(certSerial(c))));
    rec.set("NotBefore", num(certNotBefore(c)));
    rec.set("NotAfter", num(certNotAfter(c)));
    std::vector<StoreOp> ops{StoreOp::put("ca/pca/" + id, answer(rec), StoreOp::kAbsent)};
    auto crl = crlOps(id, rec, c, key.get(), nullptr);
    if (!crl) return Unexpected<Error>{crl.error()};
    for (auto& op : *crl) ops.push_back(std::move(op));
    if (auto committed = store.commit(ops); !committed) return Unexpected<Error>{committed.error()};
    Value out = Value::object();
    out.set("CertificateAuthorityArn", str(arn));
    out.set("Type", str(root ? "ROOT" : "SUBORDINATE"));
    return answer(out);
  }

  // The ops that (re)write the CA's CRL: its revoked list plus `add` (if any), signed by the
  // CA, with the cRLNumber one up. Pins the CRL record's revision.
  Result<std::vector<StoreOp>> crlOps(const std::string& id, const Value& ca, X509* ca_cert,
                                      EVP_PKEY* ca_key, const Value* add) {
    const std::string key = "ca/pca-crl/" + id;
    auto existing = load(key);
    if (!existing) return Unexpected<Error>{existing.error()};
    Value crl = existing->has_value() ? (*existing)->v : Value::object();
    Value revoked = crl.find("Revoked") ? *crl.find("Revoked") : Value::array();
    if (add) revoked.push(*add);
    CrlParams p;
    p.issuer = ca_cert;
    p.issuer_key = ca_key;
    auto alg = parseSigningAlgorithm(
        getStr(*ca.find("CertificateAuthorityConfiguration"), "SigningAlgorithm"));
    p.alg = alg ? *alg : defaultSigningAlgorithm(ca_key);
    p.this_update = now();
    int64_t days = getInt(ca, "CrlDays");
    p.next_update = now() + (days > 0 ? days : 7) * kDay;
    p.number = getInt(crl, "Number") + 1;
    for (const Value& r : revoked.items()) {
      RevokedEntry e;
      e.serial = parseSerialHex(getStr(r, "Serial")).value_or(std::string(1, '\0'));
      e.revoked_at = getInt(r, "RevokedAt");
      e.reason = static_cast<int>(getInt(r, "Reason"));
      p.revoked.push_back(std::move(e));
    }
    auto der = makeCrl(p);
    if (!der) return Unexpected<Error>{der.error()};
    crl.set("Number", num(p.number));
    crl.set("ThisUpdate", num(p.this_update));
    crl.set("NextUpdate", num(p.next_update));
    crl.set("Revoked", std::move(revoked));
    crl.set("Der", str(base64Encode(*der)));
    crl.set("Pem", str(crlDerToPem(*der)));
    // While a rotation is in SIGNING_NEW, leaves of the old key are still in use and a proxy
    // checks each against a CRL of its own issuer (same name, other key): the same entries are
    // also signed with the old key ("Previous*"), until the old root retires.
    crl.erase("PreviousDer");
    crl.erase("PreviousPem");
    const Value* rot = ca.find("Rotation");
    if (rot && rot->isObject() && getStr(*rot, "Phase") == "SIGNING_NEW" &&
        !getStr(*rot, "OldKey").empty()) {
      auto old_pem = kek.open(getStr(*rot, "OldKey"), getStr(ca, "Arn"));
      if (!old_pem) return makeError("CA " + getStr(ca, "Arn") + ": " + old_pem.error().message);
      auto old_key = privateKeyFromPem(*old_pem);
      OPENSSL_cleanse(old_pem->data(), old_pem->size());
      if (!old_key) return Unexpected<Error>{old_key.error()};
      auto old_cert = parseCert(getStr(*rot, "OldCertificate"));
      if (!old_cert) return Unexpected<Error>{old_cert.error()};
      p.issuer = old_cert->get();
      p.issuer_key = old_key->get();
      auto old_der = makeCrl(p);
      if (!old_der) return Unexpected<Error>{old_der.error()};
      crl.set("PreviousDer", str(base64Encode(*old_der)));
      crl.set("PreviousPem", str(crlDerToPem(*old_der)));
    }
    return std::vector<StoreOp>{StoreOp::put(
        key, answer(crl), existing->has_value() ? (*existing)->revision : StoreOp::kAbsent)};
  }

  Result<std::string> getCaCert(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    if (getStr(ca->v, "Certificate").empty())
      return fail(kInvalidState, "certificate authority " + *arn + " is " +
                                     getStr(ca->v, "Status") + " and has no certificate yet");
    Value out = Value::object();
    out.set("Certificate", str(getStr(ca->v, "Certificate")));
    if (!getStr(ca->v, "Chain").empty()) out.set("CertificateChain", str(getStr(ca->v, "Chain")));
    return answer(out);
  }

  // What a certificate will be: its subject, key, names and profile.
  struct Request {
    const X509_NAME* subject = nullptr;
    EVP_PKEY* key = nullptr;
    AltNames names;
    Profile profile = Profile::kEndEntity;
    int path_len = -1;
    bool self_signed = false;
  };

  // Signs `r` with the CA (or, for self_signed, with the CA's key as its own issuer) and
  // answers the ops that record it plus the certificate. `ca` must be the record read at
  // `ca_revision`; the CA is pinned at that revision.
  struct Issued {
    CertPtr cert;
    std::string serial;
    std::vector<StoreOp> ops;
  };
  Result<Issued> sign(const std::string& id, const Loaded& ca, const Request& r,
                      const SigningAlgorithm& alg, int64_t not_before, int64_t not_after) {
    auto key = caKey(ca.v);
    if (!key) return Unexpected<Error>{key.error()};
    if (alg.ecdsa != isEcKey(key->get()))
      return fail(kInvalidArgs, "SigningAlgorithm " + alg.name + " does not match the CA's " +
                                    (isEcKey(key->get()) ? "EC" : "RSA") + " key");
    CertPtr issuer;
    if (!r.self_signed) {
      auto c = parseCert(getStr(ca.v, "Certificate"));
      if (!c) return Unexpected<Error>{c.error()};
      issuer = std::move(*c);
      if (not_after > certNotAfter(issuer.get()))
        return fail(kInvalidArgs,
                    "the validity ends after the certificate authority's own "
                    "certificate expires (" +
                        std::to_string(certNotAfter(issuer.get())) + ")");
      if (r.profile == Profile::kCa && certPathLen(issuer.get()) == 0)
        return fail(kInvalidArgs,
                    "the certificate authority's path length constraint is 0: it "
                    "cannot issue a subordinate CA certificate");
    }
    if (not_after <= not_before)
      return fail(kInvalidArgs, "Validity: the end is not after the start");
    IssueParams p;
    p.subject = r.subject;
    p.subject_key = r.key;
    p.issuer = issuer.get();
    p.issuer_key = key->get();
    p.alg = alg;
    p.serial = randomSerial();
    p.not_before = not_before;
    p.not_after = not_after;
    p.profile = r.profile;
    p.path_len = r.path_len;
    p.alt_names = r.names;
    auto cert = issueCertificate(p);
    if (!cert) return Unexpected<Error>{cert.error()};
    Value rec = Value::object();
    rec.set("Certificate", str(certToPem(cert->get())));
    rec.set("IssuedAt", num(now()));
    rec.set("NotAfter", num(not_after));
    rec.set("Status", str("ISSUED"));
    rec.set("SelfSigned", Value::boolean(r.self_signed));
    // Which CA certificate (and so which CA key) signed it: a rotation retires the old root
    // once every certificate its key signed has expired.
    if (!r.self_signed) rec.set("CaSerial", str(getStr(ca.v, "Serial")));
    Issued out;
    out.serial = p.serial;
    out.ops.push_back(StoreOp::put("ca/pca-cert/" + id + "/" + serialHex(p.serial), answer(rec),
                                   StoreOp::kAbsent));
    out.ops.push_back(StoreOp::check("ca/pca/" + id, ca.revision));
    out.cert = std::move(*cert);
    return out;
  }

  Result<std::string> issue(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto csr_bytes = memberBlob(in, "Csr", true, 1, 32768);
    if (!csr_bytes) return Unexpected<Error>{csr_bytes.error()};
    auto sign_alg = memberEnum(in, "SigningAlgorithm", true,
                               {"SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA",
                                "SHA256WITHRSA", "SHA384WITHRSA", "SHA512WITHRSA"});
    if (!sign_alg) return Unexpected<Error>{sign_alg.error()};
    auto validity = memberObject(in, "Validity", true);
    if (!validity) return Unexpected<Error>{validity.error()};
    auto not_before_v = memberObject(in, "ValidityNotBefore", false);
    if (!not_before_v) return Unexpected<Error>{not_before_v.error()};
    auto template_arn = memberString(in, "TemplateArn", false, 5, 200);
    if (!template_arn) return Unexpected<Error>{template_arn.error()};
    auto token = memberString(in, "IdempotencyToken", false, 1, 36);
    if (!token) return Unexpected<Error>{token.error()};
    auto passthrough = memberObject(in, "ApiPassthrough", false);
    if (!passthrough) return Unexpected<Error>{passthrough.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};

    // Template: arn:aws:acm-pca:::template/<Name>/V<n>.
    std::string tmpl = "EndEntityCertificate/V1";
    if (!template_arn->empty()) {
      constexpr std::string_view kTemplatePrefix = "arn:aws:acm-pca:::template/";
      if (template_arn->rfind(kTemplatePrefix, 0) != 0)
        return fail(kInvalidArn, "TemplateArn: \"" + *template_arn + "\" is not a template ARN");
      tmpl = template_arn->substr(kTemplatePrefix.size());
    }
    Request r;
    if (tmpl == "EndEntityCertificate/V1" || tmpl == "EndEntityServerAuthCertificate/V1" ||
        tmpl == "EndEntityClientAuthCertificate/V1" ||
        tmpl == "BlankEndEntityCertificate_APIPassthrough/V1" ||
        tmpl == "EndEntityCertificate_APIPassthrough/V1") {
      r.profile = Profile::kEndEntity;
    } else if (tmpl == "RootCACertificate/V1") {
      r.profile = Profile::kCa;
      r.self_signed = true;
    } else if (tmpl.rfind("SubordinateCACertificate_PathLen", 0) == 0 && tmpl.size() >= 36 &&
               tmpl.substr(tmpl.size() - 3) == "/V1") {
      std::string n = tmpl.substr(32, tmpl.size() - 32 - 3);
      if (n != "0" && n != "1" && n != "2" && n != "3")
        return fail(kInvalidArgs, "TemplateArn: unknown template " + tmpl);
      r.profile = Profile::kCa;
      r.path_len = std::stoi(n);
    } else {
      return fail(kInvalidArgs, "TemplateArn: weft does not know the template " + tmpl +
                                    " (EndEntityCertificate/V1, RootCACertificate/V1, "
                                    "SubordinateCACertificate_PathLen0..3/V1 are supported)");
    }

    auto csr = parseCsr(*csr_bytes);
    if (!csr) return fail(kMalformedCsr, "Csr: " + csr.error().message);
    r.subject = X509_REQ_get_subject_name(csr->get());
    r.key = X509_REQ_get0_pubkey(csr->get());
    if (!keyAlgorithmOf(r.key))
      return fail(kMalformedCsr, "Csr: the key must be RSA 2048/3072/4096 or EC P-256/P-384/P-521");
    r.names = csrAltNames(csr->get());
    NamePtr passthrough_subject;
    if (*passthrough) {
      if (auto ext = (**passthrough).find("Extensions"); ext && ext->isObject()) {
        if (const Value* sans = ext->find("SubjectAlternativeNames"); sans && sans->isArray()) {
          r.names = {};
          for (const Value& g : sans->items()) {
            if (!getStr(g, "DnsName").empty()) r.names.dns.push_back(getStr(g, "DnsName"));
            if (!getStr(g, "UniformResourceIdentifier").empty())
              r.names.uri.push_back(getStr(g, "UniformResourceIdentifier"));
          }
        }
      }
      if (auto subj = memberObject(**passthrough, "Subject", false); subj && *subj) {
        auto entries = subjectEntries(**subj);
        if (!entries) return Unexpected<Error>{entries.error()};
        auto name = makeName(*entries);
        if (!name) return fail(kInvalidArgs, "ApiPassthrough.Subject: " + name.error().message);
        passthrough_subject = std::move(*name);
        r.subject = passthrough_subject.get();
      }
    }
    if (X509_NAME_entry_count(r.subject) == 0 && r.names.dns.empty() && r.names.uri.empty())
      return fail(kMalformedCsr,
                  "Csr: the subject is empty and there are no subject alternative names");

    int64_t t = now();
    auto end = validityEnd(**validity, t, "Validity");
    if (!end) return Unexpected<Error>{end.error()};
    int64_t start = t - kBackdate;
    if (*not_before_v) {
      auto nb = validityEnd(**not_before_v, t, "ValidityNotBefore");
      if (!nb) return Unexpected<Error>{nb.error()};
      start = *nb;
    }
    if (*end <= t) return fail(kInvalidArgs, "Validity: the certificate would already be expired");
    auto alg = parseSigningAlgorithm(*sign_alg);

    std::string digest = sha256Hex(answer(in));
    std::string token_key;
    if (!token->empty()) {
      auto prior = tokenAnswer("IssueCertificate/" + *id, *token, digest, &token_key);
      if (!prior) return Unexpected<Error>{prior.error()};
      if (prior->has_value()) {
        Value out = Value::object();
        out.set("CertificateArn", str(**prior));
        return answer(out);
      }
    }

    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(*id);
      if (!ca) return Unexpected<Error>{ca.error()};
      std::string status = caStatus(ca->v);
      if (r.self_signed) {
        if (getStr(ca->v, "Type") != "ROOT")
          return fail(kInvalidArgs,
                      "RootCACertificate/V1 is only for a ROOT certificate "
                      "authority's own certificate");
        if (status != "PENDING_CERTIFICATE" && status != "ACTIVE")
          return fail(kInvalidState, "certificate authority " + *arn + " is " + status);
        auto key = caKey(ca->v);
        if (!key) return Unexpected<Error>{key.error()};
        if (!samePublicKey(r.key, key->get()))
          return fail(kInvalidArgs,
                      "RootCACertificate/V1 signs only the CA's own CSR "
                      "(GetCertificateAuthorityCsr)");
      } else if (status != "ACTIVE") {
        return fail(kInvalidState,
                    "certificate authority " + *arn + " is " + status +
                        (status == "PENDING_CERTIFICATE" ? " (import its certificate first)" : ""));
      }
      auto issued = sign(*id, *ca, r, *alg, start, *end);
      if (!issued) return Unexpected<Error>{issued.error()};
      std::string cert_arn = *arn + "/certificate/" + serialHex(issued->serial);
      if (!token_key.empty()) issued->ops.push_back(tokenOp(token_key, digest, cert_arn));
      Value out = Value::object();
      out.set("CertificateArn", str(cert_arn));
      return tryCommit(issued->ops, answer(out));
    });
  }

  // "<ca-arn>/certificate/<serial-hex>" -> serial hex, for the CA `ca_arn`.
  Result<std::string> certSerialOf(const std::string& ca_arn, const std::string& cert_arn) {
    std::string prefix = ca_arn + "/certificate/";
    if (cert_arn.rfind(prefix, 0) != 0) {
      if (cert_arn.find(":certificate-authority/") != std::string::npos &&
          cert_arn.find("/certificate/") != std::string::npos)
        return fail(kResourceNotFound,
                    "certificate " + cert_arn.substr(0, 200) + " was not issued by " + ca_arn);
      return fail(kInvalidArn, "CertificateArn: \"" + cert_arn.substr(0, 200) +
                                   "\" is not a certificate ARN of " + ca_arn);
    }
    auto serial = parseSerialHex(cert_arn.substr(prefix.size()));
    if (!serial) return fail(kInvalidArn, "CertificateArn: malformed serial");
    return serialHex(*serial);
  }

  Result<std::string> getCert(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto cert_arn = memberString(in, "CertificateArn", true, 5, 200);
    if (!cert_arn) return Unexpected<Error>{cert_arn.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    auto serial = certSerialOf(*arn, *cert_arn);
    if (!serial) return Unexpected<Error>{serial.error()};
    auto rec = load("ca/pca-cert/" + *id + "/" + *serial);
    if (!rec) return Unexpected<Error>{rec.error()};
    if (!rec->has_value())
      return fail(kResourceNotFound, "Could not find certificate " + *cert_arn);
    Value out = Value::object();
    out.set("Certificate", str(getStr((*rec)->v, "Certificate")));
    const Value* self = (*rec)->v.find("SelfSigned");
    if (!(self && self->asBool())) {
      std::string chain = chainOf(ca->v);
      if (!chain.empty()) out.set("CertificateChain", str(chain));
    }
    return answer(out);
  }

  Result<std::string> revoke(const Value& in) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto serial_text = memberString(in, "CertificateSerial", true, 0, 128);
    if (!serial_text) return Unexpected<Error>{serial_text.error()};
    auto reason = memberEnum(
        in, "RevocationReason", true,
        {"UNSPECIFIED", "KEY_COMPROMISE", "CERTIFICATE_AUTHORITY_COMPROMISE", "AFFILIATION_CHANGED",
         "SUPERSEDED", "CESSATION_OF_OPERATION", "PRIVILEGE_WITHDRAWN", "A_A_COMPROMISE"});
    if (!reason) return Unexpected<Error>{reason.error()};
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto serial = parseSerialHex(*serial_text);
    if (!serial)
      return fail(kInvalidRequest, "CertificateSerial: \"" + serial_text->substr(0, 100) +
                                       "\" is not a hex serial number (e.g. 4f:1a:...)");
    const std::string cert_key = "ca/pca-cert/" + *id + "/" + serialHex(*serial);
    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(*id);
      if (!ca) return Unexpected<Error>{ca.error()};
      std::string status = caStatus(ca->v);
      if (status != "ACTIVE" && status != "DISABLED" && status != "EXPIRED")
        return fail(kInvalidState, "certificate authority " + *arn + " is " + status);
      auto rec = load(cert_key);
      if (!rec) return Unexpected<Error>{rec.error()};
      if (!rec->has_value())
        return fail(kResourceNotFound, "certificate authority " + *arn +
                                           " issued no certificate with serial " + *serial_text);
      if (getStr((*rec)->v, "Status") == "REVOKED")
        return fail(kRequestAlreadyProcessed,
                    "the certificate with serial " + *serial_text + " is already revoked");
      auto key = caKey(ca->v);
      if (!key) return Unexpected<Error>{key.error()};
      auto ca_cert = parseCert(getStr(ca->v, "Certificate"));
      if (!ca_cert) return Unexpected<Error>{ca_cert.error()};
      Value entry = Value::object();
      entry.set("Serial", str(serialHex(*serial)));
      entry.set("RevokedAt", num(now()));
      entry.set("Reason", num(revocationReasonCode(*reason)));
      auto ops = crlOps(*id, ca->v, ca_cert->get(), key->get(), &entry);
      if (!ops) return Unexpected<Error>{ops.error()};
      Value updated = (*rec)->v;
      updated.set("Status", str("REVOKED"));
      updated.set("RevokedAt", num(now()));
      updated.set("RevocationReason", str(*reason));
      ops->push_back(StoreOp::put(cert_key, answer(updated), (*rec)->revision));
      ops->push_back(StoreOp::check("ca/pca/" + *id, ca->revision));
      return tryCommit(*ops, "{}");
    });
  }

  Result<std::string> changeCa(const Value& in, std::string_view op) {
    auto arn = memberString(in, "CertificateAuthorityArn", true, 5, 200);
    if (!arn) return Unexpected<Error>{arn.error()};
    bool has_days = false;
    auto days = memberInt(in, "PermanentDeletionTimeInDays", false, 7, 30, &has_days);
    if (op == "Delete" && !days) return Unexpected<Error>{days.error()};
    std::string new_status;
    const Value* revocation = nullptr;
    if (op == "Update") {
      auto s = memberEnum(in, "Status", false,
                          {"CREATING", "PENDING_CERTIFICATE", "ACTIVE", "DELETED", "DISABLED",
                           "EXPIRED", "FAILED"});
      if (!s) return Unexpected<Error>{s.error()};
      if (!s->empty() && *s != "ACTIVE" && *s != "DISABLED")
        return fail(kInvalidArgs, "Status: only ACTIVE or DISABLED can be set");
      new_status = *s;
      auto r = memberObject(in, "RevocationConfiguration", false);
      if (!r) return Unexpected<Error>{r.error()};
      revocation = *r;
    }
    auto id = caIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(*id);
      if (!ca) return Unexpected<Error>{ca.error()};
      Value rec = ca->v;
      std::string status = getStr(rec, "Status");
      if (op == "Delete") {
        if (status == "ACTIVE")
          return fail(kInvalidState, "certificate authority " + *arn +
                                         " is ACTIVE; disable it first (UpdateCertificateAuthority "
                                         "--status DISABLED)");
        if (status == "DELETED")
          return fail(kInvalidState, "certificate authority " + *arn + " is already DELETED");
        rec.set("PriorStatus", str(status));
        rec.set("Status", str("DELETED"));
        rec.set("RestorableUntil", num(now() + (has_days ? *days : 30) * kDay));
      } else if (op == "Restore") {
        if (status != "DELETED")
          return fail(kInvalidState,
                      "certificate authority " + *arn + " is " + status + ", not DELETED");
        std::string prior = getStr(rec, "PriorStatus");
        rec.set("Status", str(prior.empty() ? "DISABLED" : prior));
        rec.erase("RestorableUntil");
        rec.erase("PriorStatus");
      } else {
        if (!new_status.empty() && new_status != status) {
          if (status != "ACTIVE" && status != "DISABLED")
            return fail(kInvalidState, "certificate authority " + *arn + " is " + status +
                                           "; only an ACTIVE or DISABLED one can change status");
          rec.set("Status", str(new_status));
        }
        if (revocation) rec.set("RevocationConfiguration", *revocation);
      }
      rec.set("LastStateChangeAt", num(now()));
      return tryCommit({StoreOp::put("ca/pca/" + *id, answer(rec), ca->revision)}, "{}");
    });
  }

  Result<std::string> dispatchPca(std::string_view op, const Value& in) {
    if (op == "CreateCertificateAuthority") return createCa(in);
    if (op == "DescribeCertificateAuthority") return describeCa(in);
    if (op == "ListCertificateAuthorities") return listCas(in);
    if (op == "GetCertificateAuthorityCsr") return getCsr(in);
    if (op == "ImportCertificateAuthorityCertificate") return importCaCert(in);
    if (op == "GetCertificateAuthorityCertificate") return getCaCert(in);
    if (op == "IssueCertificate") return issue(in);
    if (op == "GetCertificate") return getCert(in);
    if (op == "RevokeCertificate") return revoke(in);
    if (op == "DeleteCertificateAuthority") return changeCa(in, "Delete");
    if (op == "RestoreCertificateAuthority") return changeCa(in, "Restore");
    if (op == "UpdateCertificateAuthority") return changeCa(in, "Update");
    return fail(kUnknownOperation, "weft does not implement ACMPrivateCA." + std::string(op));
  }

  // ================= ACM =================

  // The names and key of an ACM certificate, signed by its CA. Answers the ACM record's fields
  // to set (or the FailureReason ACM would record) plus the store ops.
  struct AcmIssue {
    std::string failure;  // non-empty: the certificate is FAILED with this reason
    std::vector<StoreOp> ops;
    Value fields = Value::object();
  };

  // `validity_days`: 0 for ACM's 395. With `refuse_long`, a validity past the CA certificate's
  // notAfter is an InvalidParameterException naming the longest possible one (the caller asked
  // for it), instead of ACM's FAILED certificate with PCA_INVALID_DURATION.
  Result<AcmIssue> issueForAcm(const std::string& ca_arn, const std::string& acm_arn,
                               const Value& names, KeyAlgorithm key_alg, int64_t validity_days = 0,
                               bool refuse_long = false) {
    AcmIssue out;
    auto id = caIdOf(ca_arn);
    if (!id) {
      if (id.error().code == kResourceNotFound) {
        out.failure = "PCA_RESOURCE_NOT_FOUND";
        return out;
      }
      return Unexpected<Error>{id.error()};
    }
    auto ca = loadCa(*id);
    if (!ca) {
      if (ca.error().code != kResourceNotFound) return Unexpected<Error>{ca.error()};
      out.failure = "PCA_RESOURCE_NOT_FOUND";
      return out;
    }
    if (caStatus(ca->v) != "ACTIVE") {
      out.failure = "PCA_INVALID_STATE";
      return out;
    }
    int64_t t = now();
    const int64_t days = validity_days > 0 ? validity_days : kAcmValidityDays;
    int64_t end = t + days * kDay;
    if (getInt(ca->v, "NotAfter") < end) {
      if (refuse_long) {
        int64_t most = (getInt(ca->v, "NotAfter") - t) / kDay;
        return fail(kInvalidParameter,
                    std::string(kValidityMember) + ": " + std::to_string(days) +
                        " days would end after the certificate authority's certificate expires "
                        "(notAfter " +
                        std::to_string(getInt(ca->v, "NotAfter")) + "); " +
                        (most >= 1 ? "at most " + std::to_string(most) + " days"
                                   : "it expires within a day"));
      }
      out.failure = "PCA_INVALID_DURATION";
      return out;
    }
    auto key = generateKey(key_alg);
    if (!key) return Unexpected<Error>{key.error()};
    Request r;
    auto subject = makeName({{"CN", std::string(names.items()[0].str())}});
    if (!subject) return Unexpected<Error>{subject.error()};
    r.subject = subject->get();
    r.key = key->get();
    for (const Value& n : names.items()) r.names.dns.emplace_back(n.str());
    auto ca_key_alg = getStr(*ca->v.find("CertificateAuthorityConfiguration"), "SigningAlgorithm");
    auto alg = parseSigningAlgorithm(ca_key_alg);
    auto issued = sign(*id, *ca, r, *alg, t - kBackdate, end);
    if (!issued) return Unexpected<Error>{issued.error()};
    std::string key_pem = privateKeyToPem(key->get());
    Value& f = out.fields;
    f.set("Key", str(kek.seal(key_pem, acm_arn)));
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
    f.set("Certificate", str(certToPem(issued->cert.get())));
    f.set("Chain", str(chainOf(ca->v)));
    f.set("PcaCertKey", str("ca/pca-cert/" + *id + "/" + serialHex(issued->serial)));
    f.set("CaSerial", str(getStr(ca->v, "Serial")));  // the signing CA certificate (rotation)
    f.set("Serial", str(serialColonHex(issued->serial)));
    f.set("Subject", str(nameToString(X509_get_subject_name(issued->cert.get()))));
    f.set("Issuer", str(nameToString(X509_get_issuer_name(issued->cert.get()))));
    f.set("SignatureAlgorithm", str(alg->name));
    f.set("IssuedAt", num(t));
    f.set("NotBefore", num(certNotBefore(issued->cert.get())));
    f.set("NotAfter", num(certNotAfter(issued->cert.get())));
    out.ops = std::move(issued->ops);
    return out;
  }

  Result<std::string> requestCert(const Value& in) {
    auto domain = memberString(in, "DomainName", true, 1, 253);
    if (!domain) return Unexpected<Error>{domain.error()};
    if (!validDomainName(*domain))
      return fail(kValidation, "1 validation error detected: Value '" + domain->substr(0, 100) +
                                   "' at 'domainName' failed to satisfy constraint: Member must "
                                   "satisfy regular expression pattern");
    auto ca_arn = memberString(in, "CertificateAuthorityArn", false, 20, 2048);
    if (!ca_arn) return Unexpected<Error>{ca_arn.error()};
    if (ca_arn->empty())
      return fail(kInvalidParameter,
                  "weft issues private certificates only: give "
                  "CertificateAuthorityArn (a weft ACM PCA certificate "
                  "authority)");
    auto key_alg_name = memberEnum(in, "KeyAlgorithm", false,
                                   {"RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1",
                                    "EC_secp384r1", "EC_secp521r1"});
    if (!key_alg_name) return Unexpected<Error>{key_alg_name.error()};
    if (*key_alg_name == "RSA_1024")
      return fail(kInvalidParameter,
                  "KeyAlgorithm RSA_1024 is not allowed for private certificates");
    KeyAlgorithm key_alg =
        key_alg_name->empty() ? KeyAlgorithm::kRsa2048 : *parseKeyAlgorithm(*key_alg_name);
    auto token = memberString(in, "IdempotencyToken", false, 1, 32);
    if (!token) return Unexpected<Error>{token.error()};
    auto validation = memberEnum(in, "ValidationMethod", false, {"EMAIL", "DNS"});
    if (!validation) return Unexpected<Error>{validation.error()};
    bool has_validity = false;
    auto validity_days = memberInt(in, kValidityMember, false, 1, kMaxValidityDays, &has_validity);
    if (!validity_days) return Unexpected<Error>{validity_days.error()};
    // The names: DomainName first, then the extra SANs, without duplicates (as ACM lists them).
    Value names = Value::array();
    std::set<std::string> seen{*domain};
    names.push(str(*domain));
    if (const Value* sans = in.find("SubjectAlternativeNames")) {
      if (!sans->isArray()) return fail(kSerialization, "'SubjectAlternativeNames' must be a list");
      if (sans->items().empty() || sans->items().size() > 100)
        return fail(kValidation, "SubjectAlternativeNames: 1 to 100 names");
      for (const Value& s : sans->items()) {
        if (!s.isString() || !validDomainName(s.str()))
          return fail(kValidation,
                      "1 validation error detected: Value '" + std::string(s.str().substr(0, 100)) +
                          "' at 'subjectAlternativeNames' failed to satisfy "
                          "constraint: Member must satisfy regular expression pattern");
        if (seen.insert(std::string(s.str())).second) names.push(s);
      }
    }
    if (const Value* tags = in.find("Tags");
        tags && (!tags->isArray() || tags->items().size() > 50))
      return fail(kValidation, "Tags: at most 50 tags");
    // A malformed CA ARN is the caller's error; a missing or inactive CA fails the certificate.
    if (auto a = splitArn(*ca_arn);
        !a || a->service != "acm-pca" || a->resource.rfind("certificate-authority/", 0) != 0)
      return fail(kInvalidArn, "CertificateAuthorityArn: \"" + ca_arn->substr(0, 200) +
                                   "\" is not an ACM PCA certificate authority ARN");

    std::string digest = sha256Hex(answer(in));
    std::string token_key;
    if (!token->empty()) {
      auto prior = tokenAnswer("RequestCertificate", *token, digest, &token_key);
      if (!prior) return Unexpected<Error>{prior.error()};
      if (prior->has_value()) {
        Value out = Value::object();
        out.set("CertificateArn", str(**prior));
        return answer(out);
      }
    }
    std::string id = uuidV4();
    std::string arn = acmArn(id);
    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto issued = issueForAcm(*ca_arn, arn, names, key_alg, has_validity ? *validity_days : 0,
                                has_validity);
      if (!issued) return Unexpected<Error>{issued.error()};
      Value rec = issued->fields;
      if (has_validity) rec.set("ValidityDays", num(*validity_days));
      rec.set("CertificateArn", str(arn));
      rec.set("DomainName", str(*domain));
      rec.set("SubjectAlternativeNames", names);
      rec.set("KeyAlgorithm", str(keyAlgorithmName(key_alg)));
      rec.set("CertificateAuthorityArn", str(*ca_arn));
      rec.set("CreatedAt", num(now()));
      rec.set("Status", str(issued->failure.empty() ? "ISSUED" : "FAILED"));
      if (!issued->failure.empty()) rec.set("FailureReason", str(issued->failure));
      if (const Value* o = in.find("Options"); o && o->isObject()) rec.set("Options", *o);
      if (const Value* tags = in.find("Tags")) rec.set("Tags", *tags);
      std::vector<StoreOp> ops = std::move(issued->ops);
      ops.push_back(StoreOp::put("ca/acm/" + id, answer(rec), StoreOp::kAbsent));
      if (!token_key.empty()) ops.push_back(tokenOp(token_key, digest, arn));
      Value out = Value::object();
      out.set("CertificateArn", str(arn));
      return tryCommit(ops, answer(out));
    });
  }

  Result<Loaded> loadAcm(const Value& in) {
    auto arn = memberString(in, "CertificateArn", true, 20, 2048);
    if (!arn) return Unexpected<Error>{arn.error()};
    auto id = acmIdOf(*arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto l = load("ca/acm/" + *id);
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value()) return fail(kResourceNotFound, "Could not find certificate " + *arn);
    return std::move(**l);
  }

  // The status ACM shows: the PCA's revocation and the expiry override ISSUED.
  struct AcmState {
    std::string status;
    int64_t revoked_at = 0;
    std::string reason;
  };
  Result<AcmState> acmState(const Value& rec) {
    AcmState s;
    s.status = getStr(rec, "Status");
    if (s.status != "ISSUED") return s;
    auto pca = load(getStr(rec, "PcaCertKey"));
    if (!pca) return Unexpected<Error>{pca.error()};
    if (pca->has_value() && getStr((*pca)->v, "Status") == "REVOKED") {
      s.status = "REVOKED";
      s.revoked_at = getInt((*pca)->v, "RevokedAt");
      s.reason = acmRevocationReason(getStr((*pca)->v, "RevocationReason"));
    } else if (getInt(rec, "NotAfter") <= now()) {
      s.status = "EXPIRED";
    }
    return s;
  }

  static Value keyUsages(const Value& rec) {
    Value ku = Value::array();
    auto add = [&ku](const char* n) {
      Value o = Value::object();
      o.set("Name", str(n));
      ku.push(std::move(o));
    };
    add("DIGITAL_SIGNATURE");
    if (getStr(rec, "KeyAlgorithm").rfind("RSA", 0) == 0) add("KEY_ENCIPHERMENT");
    return ku;
  }
  static Value extendedKeyUsages() {
    Value eku = Value::array();
    auto add = [&eku](const char* n, const char* oid) {
      Value o = Value::object();
      o.set("Name", str(n));
      o.set("OID", str(oid));
      eku.push(std::move(o));
    };
    add("TLS_WEB_SERVER_AUTHENTICATION", "1.3.6.1.5.5.7.3.1");
    add("TLS_WEB_CLIENT_AUTHENTICATION", "1.3.6.1.5.5.7.3.2");
    return eku;
  }

  // App Mesh virtual nodes and gateways whose record names `arn` (their ARNs): ACM's InUseBy.
  Result<Value> inUseBy(const std::string& arn) {
    Value out = Value::array();
    for (const char* prefix : {"appmesh/virtualNode/", "appmesh/virtualGateway/"}) {
      auto items = store.list(prefix, "", 0);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        if (kv.value.find(arn) == std::string::npos) continue;
        auto v = stacks::parseJson(kv.value);
        std::string user = kv.key;
        if (v) {
          // The first "arn" member anywhere in the record is the resource's own (metadata.arn).
          std::function<const Value*(const Value&)> find = [&](const Value& x) -> const Value* {
            if (!x.isObject()) return nullptr;
            if (const Value* a = x.find("arn"); a && a->isString()) return a;
            for (const auto& [k, m] : x.members())
              if (const Value* a = find(m)) return a;
            return nullptr;
          };
          if (const Value* a = find(*v)) user = a->text();
        }
        out.push(str(user));
      }
    }
    return out;
  }

  Result<std::string> describeCert(const Value& in) {
    auto l = loadAcm(in);
    if (!l) return Unexpected<Error>{l.error()};
    const Value& rec = l->v;
    auto state = acmState(rec);
    if (!state) return Unexpected<Error>{state.error()};
    auto users = inUseBy(getStr(rec, "CertificateArn"));
    if (!users) return Unexpected<Error>{users.error()};
    Value d = Value::object();
    d.set("CertificateArn", str(getStr(rec, "CertificateArn")));
    d.set("DomainName", str(getStr(rec, "DomainName")));
    d.set("SubjectAlternativeNames", *rec.find("SubjectAlternativeNames"));
    Value dvo = Value::array();
    for (const Value& n : rec.find("SubjectAlternativeNames")->items()) {
      Value o = Value::object();
      o.set("DomainName", n);
      dvo.push(std::move(o));
    }
    d.set("DomainValidationOptions", std::move(dvo));
    if (!getStr(rec, "Serial").empty()) d.set("Serial", str(getStr(rec, "Serial")));
    if (!getStr(rec, "Subject").empty()) d.set("Subject", str(getStr(rec, "Subject")));
    if (!getStr(rec, "Issuer").empty()) d.set("Issuer", str(getStr(rec, "Issuer")));
    d.set("CreatedAt", num(getInt(rec, "CreatedAt")));
    if (getInt(rec, "IssuedAt")) d.set("IssuedAt", num(getInt(rec, "IssuedAt")));
    d.set("Status", str(state->status));
    if (state->revoked_at) {
      d.set("RevokedAt", num(state->revoked_at));
      d.set("RevocationReason", str(state->reason));
    }
    if (getInt(rec, "NotBefore")) {
      d.set("NotBefore", num(getInt(rec, "NotBefore")));
      d.set("NotAfter", num(getInt(rec, "NotAfter")));
    }
    d.set("KeyAlgorithm", str(getStr(rec, "KeyAlgorithm")));
    if (!getStr(rec, "SignatureAlgorithm").empty())
      d.set("SignatureAlgorithm", str(getStr(rec, "SignatureAlgorithm")));
    d.set("InUseBy", std::move(*users));
    if (!getStr(rec, "FailureReason").empty())
      d.set("FailureReason", str(getStr(rec, "FailureReason")));
    d.set("Type", str("PRIVATE"));
    if (const Value* rs = rec.find("RenewalSummary")) d.set("RenewalSummary", *rs);
    if (state->status == "ISSUED") {
      d.set("KeyUsages", keyUsages(rec));
      d.set("ExtendedKeyUsages", extendedKeyUsages());
    }
    d.set("CertificateAuthorityArn", str(getStr(rec, "CertificateAuthorityArn")));
    d.set("RenewalEligibility", str(state->status == "ISSUED" ? "ELIGIBLE" : "INELIGIBLE"));
    Value opts = Value::object();
    opts.set("CertificateTransparencyLoggingPreference", str("DISABLED"));
    if (const Value* o = rec.find("Options")) opts = *o;
    d.set("Options", std::move(opts));
    Value out = Value::object();
    out.set("Certificate", std::move(d));
    return answer(out);
  }

  Result<std::string> listCerts(const Value& in) {
    bool has_max = false;
    auto max = memberInt(in, "MaxItems", false, 1, 1000, &has_max);
    if (!max) return Unexpected<Error>{max.error()};
    auto token = memberString(in, "NextToken", false, 1, 10000);
    if (!token) return Unexpected<Error>{token.error()};
    auto after = readNextToken(*token, kInvalidArgs);
    if (!after) return Unexpected<Error>{after.error()};
    std::set<std::string> statuses, key_types{"RSA_1024", "RSA_2048"};
    if (const Value* s = in.find("CertificateStatuses"); s && s->isArray())
      for (const Value& x : s->items()) statuses.insert(std::string(x.str()));
    auto includes = memberObject(in, "Includes", false);
    if (!includes) return Unexpected<Error>{includes.error()};
    if (*includes) {
      if (const Value* k = (**includes).find("keyTypes");
          k && k->isArray() && !k->items().empty()) {
        key_types.clear();
        for (const Value& x : k->items()) key_types.insert(std::string(x.str()));
      }
    }
    size_t limit = has_max ? static_cast<size_t>(*max) : 1000;
    const std::string prefix = "ca/acm/";
    std::string start = after->empty() ? std::string() : prefix + *after;
    Value list = Value::array();
    Value out = Value::object();
    std::string last;
    bool more = false;
    while (!more) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto rec = parseRecord(kv);
        if (!rec) return Unexpected<Error>{rec.error()};
        auto state = acmState(*rec);
        if (!state) return Unexpected<Error>{state.error()};
        if (!statuses.empty() && !statuses.count(state->status)) continue;
        if (!key_types.count(getStr(*rec, "KeyAlgorithm"))) continue;
        if (list.items().size() == limit) {
          more = true;
          break;
        }
        Value s = Value::object();
        s.set("CertificateArn", str(getStr(*rec, "CertificateArn")));
        s.set("DomainName", str(getStr(*rec, "DomainName")));
        s.set("SubjectAlternativeNameSummaries", *rec->find("SubjectAlternativeNames"));
        s.set("HasAdditionalSubjectAlternativeNames", Value::boolean(false));
        s.set("Status", str(state->status));
        s.set("Type", str("PRIVATE"));
        s.set("KeyAlgorithm", str(getStr(*rec, "KeyAlgorithm")));
        Value ku = Value::array(), eku = Value::array();
        if (state->status == "ISSUED") {
          const Value usages = keyUsages(*rec), extended = extendedKeyUsages();
          for (const Value& k : usages.items()) ku.push(*k.find("Name"));
          for (const Value& k : extended.items()) eku.push(*k.find("Name"));
        }
        s.set("KeyUsages", std::move(ku));
        s.set("ExtendedKeyUsages", std::move(eku));
        s.set("InUse", Value::boolean(false));
        const Value* exported = rec->find("Exported");
        s.set("Exported", Value::boolean(exported && exported->asBool()));
        s.set("RenewalEligibility", str(state->status == "ISSUED" ? "ELIGIBLE" : "INELIGIBLE"));
        if (getInt(*rec, "NotBefore")) {
          s.set("NotBefore", num(getInt(*rec, "NotBefore")));
          s.set("NotAfter", num(getInt(*rec, "NotAfter")));
        }
        s.set("CreatedAt", num(getInt(*rec, "CreatedAt")));
        if (getInt(*rec, "IssuedAt")) s.set("IssuedAt", num(getInt(*rec, "IssuedAt")));
        if (state->revoked_at) s.set("RevokedAt", num(state->revoked_at));
        list.push(std::move(s));
        last = kv.key;
      }
      if (items->size() < 200) break;
    }
    if (more)
      out.set("NextToken", str(makeNextToken(std::string_view(last).substr(prefix.size()))));
    out.set("CertificateSummaryList", std::move(list));
    return answer(out);
  }

  Result<std::string> getAcmCert(const Value& in) {
    auto l = loadAcm(in);
    if (!l) return Unexpected<Error>{l.error()};
    if (getStr(l->v, "Certificate").empty())
      return fail(kRequestInProgress, "certificate " + getStr(l->v, "CertificateArn") + " is " +
                                          getStr(l->v, "Status") + " (" +
                                          getStr(l->v, "FailureReason") +
                                          ") and has no certificate");
    Value out = Value::object();
    out.set("Certificate", str(getStr(l->v, "Certificate")));
    out.set("CertificateChain", str(getStr(l->v, "Chain")));
    return answer(out);
  }

  Result<std::string> exportCert(const Value& in) {
    auto passphrase = memberBlob(in, "Passphrase", true, 4, 128);
    if (!passphrase) return Unexpected<Error>{passphrase.error()};
    auto l = loadAcm(in);
    if (!l) {
      OPENSSL_cleanse(passphrase->data(), passphrase->size());
      return Unexpected<Error>{l.error()};
    }
    const std::string arn = getStr(l->v, "CertificateArn");
    if (getStr(l->v, "Key").empty()) {
      OPENSSL_cleanse(passphrase->data(), passphrase->size());
      return fail(kRequestInProgress, "certificate " + arn + " is " + getStr(l->v, "Status") +
                                          " and has no key to export");
    }
    auto pem = kek.open(getStr(l->v, "Key"), arn);
    if (!pem) {
      OPENSSL_cleanse(passphrase->data(), passphrase->size());
      return makeError("certificate " + arn + ": " + pem.error().message);
    }
    auto key = privateKeyFromPem(*pem);
    OPENSSL_cleanse(pem->data(), pem->size());
    if (!key) {
      OPENSSL_cleanse(passphrase->data(), passphrase->size());
      return Unexpected<Error>{key.error()};
    }
    auto encrypted = encryptedPrivateKeyPem(key->get(), *passphrase);
    OPENSSL_cleanse(passphrase->data(), passphrase->size());
    if (!encrypted) return Unexpected<Error>{encrypted.error()};
    // Record that it was exported (ListCertificates' Exported); a lost race only skips the mark.
    Value rec = l->v;
    rec.set("Exported", Value::boolean(true));
    (void)store.commit(
        {StoreOp::put("ca/acm/" + arn.substr(arn.rfind('/') + 1), answer(rec), l->revision)});
    Value out = Value::object();
    out.set("Certificate", str(getStr(l->v, "Certificate")));
    out.set("CertificateChain", str(getStr(l->v, "Chain")));
    out.set("PrivateKey", str(*encrypted));
    return answer(out);
  }

  Result<std::string> renewCert(const Value& in) {
    auto arn_in = memberString(in, "CertificateArn", true, 20, 2048);
    if (!arn_in) return Unexpected<Error>{arn_in.error()};
    auto id = acmIdOf(*arn_in);
    if (!id) return Unexpected<Error>{id.error()};
    // A FAILED renewal is recorded in RenewalSummary and the call succeeds, as ACM's does.
    auto r = renewAcm(*id, now(), std::nullopt);
    if (!r) return Unexpected<Error>{r.error()};
    return std::string("{}");
  }

  // What renewAcm() did.
  static constexpr std::string_view kRenewed = "SUCCESS";
  static constexpr std::string_view kNotDue = "NOT_DUE";
  static constexpr std::string_view kFailedPrefix = "FAILED ";  // + ACM's reason

  // The renewal RenewCertificate and the maintenance task share. `at`: the caller's now (Unix
  // seconds), recorded as the summary's UpdatedAt. `due_window`: set by the task, which renews
  // only a certificate still ISSUED and due — checked on the record read for the commit, so a
  // renewal made meanwhile (the API) is not repeated. Answers kRenewed, kNotDue or
  // kFailedPrefix + reason.
  Result<std::string> renewAcm(const std::string& id, int64_t at,
                               std::optional<std::chrono::seconds> due_window) {
    if (!isUuid(id))
      return fail(kInvalidArn, "\"" + id.substr(0, 100) + "\" is not a certificate id");
    const std::string key = "ca/acm/" + id;
    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto l = load(key);
      if (!l) return Unexpected<Error>{l.error()};
      if (!l->has_value())
        return fail(kResourceNotFound, "Could not find certificate " + acmArn(id));
      const Value& cur = (*l)->v;
      const std::string arn = getStr(cur, "CertificateArn");
      auto state = acmState(cur);
      if (!state) return Unexpected<Error>{state.error()};
      if (state->status != "ISSUED" && state->status != "EXPIRED")
        return fail(kInvalidState,
                    "certificate " + arn + " is " + state->status + " and cannot be renewed");
      if (due_window &&
          at < acmRenewalDueAt(getInt(cur, "NotBefore"), getInt(cur, "NotAfter"), *due_window))
        return std::optional<std::string>(std::string(kNotDue));
      auto key_alg = parseKeyAlgorithm(getStr(cur, "KeyAlgorithm"));
      auto issued = issueForAcm(
          getStr(cur, "CertificateAuthorityArn"), arn, *cur.find("SubjectAlternativeNames"),
          key_alg.value_or(KeyAlgorithm::kRsa2048), getInt(cur, "ValidityDays"));
      if (!issued) return Unexpected<Error>{issued.error()};
      const bool failed = !issued->failure.empty();
      const std::string outcome =
          failed ? std::string(kFailedPrefix) + issued->failure : std::string(kRenewed);
      if (failed) {
        // The same failure again (a task retrying each round): leave the record as it is, so
        // configs that depend on it are not recompiled for nothing.
        const Value* prev = cur.find("RenewalSummary");
        if (prev && getStr(*prev, "RenewalStatus") == "FAILED" &&
            getStr(*prev, "RenewalStatusReason") == issued->failure)
          return std::optional<std::string>(outcome);
      }
      Value rec = cur;
      Value summary = Value::object();
      summary.set("RenewalStatus", str(failed ? "FAILED" : "SUCCESS"));
      Value dvo = Value::array();
      for (const Value& n : cur.find("SubjectAlternativeNames")->items()) {
        Value o = Value::object();
        o.set("DomainName", n);
        o.set("ValidationStatus", str("SUCCESS"));
        dvo.push(std::move(o));
      }
      summary.set("DomainValidationOptions", std::move(dvo));
      if (failed) summary.set("RenewalStatusReason", str(issued->failure));
      summary.set("UpdatedAt", num(at));
      rec.set("RenewalSummary", std::move(summary));
      for (const auto& [k, v] : issued->fields.members()) rec.set(k, v);
      std::vector<StoreOp> ops = std::move(issued->ops);
      ops.push_back(StoreOp::put(key, answer(rec), (*l)->revision));
      return tryCommit(ops, outcome);
    });
  }

  Status renewDueAcm(int64_t at, std::chrono::seconds window) {
    const std::string prefix = "ca/acm/";
    std::vector<std::string> due;
    std::string start;
    while (true) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto rec = parseRecord(kv);
        if (!rec) return Unexpected<Error>{rec.error()};
        // Cheap test first (most certificates are not due); the revocation check reads the PCA
        // record only for the due ones.
        if (getStr(*rec, "Status") != "ISSUED" ||
            at < acmRenewalDueAt(getInt(*rec, "NotBefore"), getInt(*rec, "NotAfter"), window))
          continue;
        auto state = acmState(*rec);
        if (!state) return Unexpected<Error>{state.error()};
        if (state->status == "ISSUED" || state->status == "EXPIRED")
          due.push_back(kv.key.substr(prefix.size()));
      }
      if (items->size() < 200) break;
    }
    std::vector<std::string> problems;
    for (const std::string& id : due) {
      auto r = renewAcm(id, at, window);
      if (!r) {
        // Deleted or revoked since the listing: nothing to renew.
        if (r.error().code == kResourceNotFound || r.error().code == kInvalidState) continue;
        problems.push_back(acmArn(id) + ": " + r.error().message);
      } else if (*r == kRenewed) {
        log::info("ca", "renewed ACM certificate " + acmArn(id) + " before its expiry");
      } else if (r->rfind(kFailedPrefix, 0) == 0) {
        problems.push_back(acmArn(id) + ": renewal FAILED (" + r->substr(kFailedPrefix.size()) +
                           "); its CA cannot issue");
      }
    }
    if (problems.empty()) return {};
    std::string message = "ACM renewal: ";
    for (size_t i = 0; i < problems.size() && i < 5; ++i) message += (i ? "; " : "") + problems[i];
    if (problems.size() > 5) message += "; and " + std::to_string(problems.size() - 5) + " more";
    return makeError(message);
  }

  Status resignCrls(int64_t at) {
    const std::string prefix = "ca/pca-crl/";
    std::vector<std::string> due;
    std::string start;
    while (true) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto crl = parseRecord(kv);
        if (!crl) return Unexpected<Error>{crl.error()};
        if (crlDue(*crl, at)) due.push_back(kv.key.substr(prefix.size()));
      }
      if (items->size() < 200) break;
    }
    std::vector<std::string> problems;
    for (const std::string& id : due) {
      auto r = commitLoop([&]() -> Result<std::optional<std::string>> {
        auto ca = loadCa(id);
        if (!ca) {
          if (ca.error().code == kResourceNotFound) return std::optional<std::string>("gone");
          return Unexpected<Error>{ca.error()};
        }
        std::string status = caStatus(ca->v);
        if (status != "ACTIVE" && status != "DISABLED")
          return std::optional<std::string>("skipped");  // deleted or expired: nobody checks it
        auto current = load("ca/pca-crl/" + id);
        if (!current) return Unexpected<Error>{current.error()};
        if (!current->has_value() || !crlDue((*current)->v, at))
          return std::optional<std::string>("not due");
        auto key = caKey(ca->v);
        if (!key) return Unexpected<Error>{key.error()};
        auto cert = parseCert(getStr(ca->v, "Certificate"));
        if (!cert) return Unexpected<Error>{cert.error()};
        // crlOps pins the CRL record's revision as a revocation does: a revocation committed
        // meanwhile makes this a conflict, and the retry signs its entry too.
        auto ops = crlOps(id, ca->v, cert->get(), key->get(), nullptr);
        if (!ops) return Unexpected<Error>{ops.error()};
        ops->push_back(StoreOp::check("ca/pca/" + id, ca->revision));
        return tryCommit(*ops, "re-signed");
      });
      if (!r) problems.push_back(caArn(id) + ": " + r.error().message);
    }
    if (problems.empty()) return {};
    std::string message = "CRL re-signing: ";
    for (size_t i = 0; i < problems.size() && i < 5; ++i) message += (i ? "; " : "") + problems[i];
    if (problems.size() > 5) message += "; and " + std::to_string(problems.size() - 5) + " more";
    return makeError(message);
  }

  // A CRL is re-signed once half of its validity has passed.
  static bool crlDue(const Value& crl, int64_t at) {
    int64_t this_update = getInt(crl, "ThisUpdate"), next_update = getInt(crl, "NextUpdate");
    return at >= this_update + (next_update - this_update) / 2;
  }

  Result<std::string> deleteCert(const Value& in) {
    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto l = loadAcm(in);
      if (!l) return Unexpected<Error>{l.error()};
      const std::string arn = getStr(l->v, "CertificateArn");
      auto users = inUseBy(arn);
      if (!users) return Unexpected<Error>{users.error()};
      if (!users->items().empty())
        return fail(kResourceInUse,
                    "certificate " + arn + " is in use by " + std::string(users->items()[0].str()));
      return tryCommit({StoreOp::remove("ca/acm/" + arn.substr(arn.rfind('/') + 1), l->revision)},
                       "{}");
    });
  }

  // ================= CA rotation (docs/security.md "Rotation") =================
  //
  // While a rotation runs, the CA record holds "Rotation":
  //   PUBLISHING   {"Phase", "StartedAt", "NewCertificate", "NewChain", "NewKey" (sealed, AAD
  //                the CA ARN), "ParentArn" (a subordinate: the weft CA that signed it)}
  //                The old certificate and key still sign; trust bundles hold both.
  //   SIGNING_NEW  {"Phase", "StartedAt", "SwitchedAt", "OldCertificate", "OldChain",
  //                "OldSerial", "OldKey" (sealed as the CA key: it signs the old key's CRL)} The
  //                new certificate and key are the CA's own (Certificate, Key, Serial...); trust
  //                bundles still hold the old one.
  // and afterwards "LastRotation" {"StartedAt", "SwitchedAt", "RetiredAt", "RetiredEarly"}.

  // What trust bundles hold of `ca`: its certificate and chain, plus, during a rotation, the
  // other (old or new) certificate and its chain, the old one first in both phases so the
  // bundle text does not change at the switch.
  static std::string trustChainOf(const Value& ca) {
    const Value* rot = ca.find("Rotation");
    if (rot == nullptr || !rot->isObject()) return chainOf(ca);
    auto join = [](std::string a, const std::string& b) {
      if (!a.empty() && a.back() != '\n') a += '\n';
      return a + b;
    };
    if (getStr(*rot, "Phase") == "PUBLISHING")
      return join(chainOf(ca), join(getStr(*rot, "NewCertificate"), getStr(*rot, "NewChain")));
    return join(join(getStr(*rot, "OldCertificate"), getStr(*rot, "OldChain")), chainOf(ca));
  }

  static std::string rotationPhase(const Value& ca) {
    const Value* rot = ca.find("Rotation");
    return rot && rot->isObject() ? getStr(*rot, "Phase") : "NONE";
  }

  // The weft CA whose certificate (current, or the old one of its own rotation) signed `cert`.
  Result<std::optional<std::pair<std::string, Loaded>>> findParent(X509* cert) {
    const std::string prefix = "ca/pca/";
    std::string start;
    while (true) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto v = parseRecord(kv);
        if (!v) return Unexpected<Error>{v.error()};
        if (purged(*v)) continue;
        std::vector<std::string> pems{getStr(*v, "Certificate")};
        if (const Value* rot = v->find("Rotation"); rot && rot->isObject())
          pems.push_back(getStr(*rot, "OldCertificate"));
        for (const std::string& pem : pems) {
          if (pem.empty()) continue;
          auto c = parseCert(pem);
          if (!c) continue;
          if (X509_cmp(c->get(), cert) == 0) continue;  // itself
          if (X509_check_issued(c->get(), cert) == X509_V_OK &&
              X509_verify(cert, X509_get0_pubkey(c->get())) == 1)
            return std::optional<std::pair<std::string, Loaded>>(
                std::make_pair(kv.key.substr(prefix.size()), Loaded{std::move(*v), kv.revision}));
        }
      }
      if (items->size() < 200) break;
    }
    return std::optional<std::pair<std::string, Loaded>>();
  }

  // When the last certificate signed by a key other than the CA's current one (and not
  // revoked, not expired) expires; 0 when there is none. The CA's own self-signed record is
  // not counted.
  Result<int64_t> oldLeavesExpireAt(const std::string& id, const Value& ca) {
    const std::string prefix = "ca/pca-cert/" + id + "/";
    const std::string current = getStr(ca, "Serial");
    int64_t latest = 0;
    std::string start;
    while (true) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto v = parseRecord(kv);
        if (!v) return Unexpected<Error>{v.error()};
        const Value* self = v->find("SelfSigned");
        if (self && self->asBool()) continue;
        if (getStr(*v, "Status") == "REVOKED") continue;
        if (getStr(*v, "CaSerial") == current) continue;  // signed by the current key
        if (getInt(*v, "NotAfter") <= now()) continue;
        latest = std::max(latest, getInt(*v, "NotAfter"));
      }
      if (items->size() < 200) break;
    }
    return latest;
  }

  static Value certSummary(const std::string& pem, std::string_view role) {
    Value out = Value::object();
    auto c = parseCert(pem);
    if (!c) return out;
    out.set("role", str(std::string(role)));
    out.set("serial", str(serialColonHex(certSerial(c->get()))));
    out.set("subject", str(nameToString(X509_get_subject_name(c->get()))));
    out.set("notBefore", num(certNotBefore(c->get())));
    out.set("notAfter", num(certNotAfter(c->get())));
    return out;
  }

  // The /weft/v1/ca-rotations answer for a CA.
  Result<std::string> rotationAnswer(const std::string& id, const Value& ca) {
    Value out = Value::object();
    out.set("certificateAuthorityArn", str(getStr(ca, "Arn")));
    std::string phase = rotationPhase(ca);
    out.set("phase", str(phase));
    Value roots = Value::array();
    const Value* rot = ca.find("Rotation");
    if (phase == "PUBLISHING") {
      roots.push(certSummary(getStr(ca, "Certificate"), "old (signing)"));
      roots.push(certSummary(getStr(*rot, "NewCertificate"), "new (published)"));
      out.set("startedAt", num(getInt(*rot, "StartedAt")));
    } else if (phase == "SIGNING_NEW") {
      roots.push(certSummary(getStr(*rot, "OldCertificate"), "old (retiring)"));
      roots.push(certSummary(getStr(ca, "Certificate"), "new (signing)"));
      out.set("startedAt", num(getInt(*rot, "StartedAt")));
      out.set("switchedAt", num(getInt(*rot, "SwitchedAt")));
      auto retire = oldLeavesExpireAt(id, ca);
      if (!retire) return Unexpected<Error>{retire.error()};
      out.set("retireAt", num(std::max(*retire, now())));
    } else {
      roots.push(certSummary(getStr(ca, "Certificate"), "current"));
    }
    out.set("trustBundle", std::move(roots));
    if (const Value* last = ca.find("LastRotation")) out.set("lastRotation", *last);
    return answer(out);
  }

  Result<std::string> rotationStatus(const std::string& arn) {
    auto id = caIdOf(arn, "certificateAuthorityArn");
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    return rotationAnswer(*id, ca->v);
  }

  Result<std::string> startRotation(const std::string& arn) {
    auto id = caIdOf(arn, "certificateAuthorityArn");
    if (!id) return Unexpected<Error>{id.error()};
    return commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(*id);
      if (!ca) return Unexpected<Error>{ca.error()};
      if (const Value* rot = ca->v.find("Rotation"); rot && rot->isObject())
        return fail(kInvalidState,
                    "a rotation of certificate authority " + arn + " is already in progress (" +
                        getStr(*rot, "Phase") +
                        "); it ends when the old root retires (or with `weft ca rotate "
                        "--retire-now` once the new key signs)");
      std::string status = caStatus(ca->v);
      if (status != "ACTIVE")
        return fail(kInvalidState, "certificate authority " + arn + " is " + status +
                                       "; only an ACTIVE one can be rotated");
      auto old_cert = parseCert(getStr(ca->v, "Certificate"));
      if (!old_cert) return Unexpected<Error>{old_cert.error()};
      auto old_key = caKey(ca->v);
      if (!old_key) return Unexpected<Error>{old_key.error()};
      auto key_alg = keyAlgorithmOf(old_key->get());
      if (!key_alg) return makeError("CA " + arn + ": unknown key algorithm");
      auto alg = parseSigningAlgorithm(
          getStr(*ca->v.find("CertificateAuthorityConfiguration"), "SigningAlgorithm"));
      if (!alg) return makeError("CA " + arn + ": unknown signing algorithm");
      const X509_NAME* subject = X509_get_subject_name(old_cert->get());
      const int path_len = certPathLen(old_cert->get());
      const int64_t t = now();
      const int64_t lifetime = certNotAfter(old_cert->get()) - certNotBefore(old_cert->get());
      const bool root = getStr(ca->v, "Type") == "ROOT";

      Value rot = Value::object();
      std::vector<StoreOp> ops;
      std::optional<std::pair<std::string, Loaded>> parent;
      if (!root) {
        auto p = findParent(old_cert->get());
        if (!p) return Unexpected<Error>{p.error()};
        if (!p->has_value())
          return fail(kInvalidRequest,
                      "subordinate certificate authority " + arn +
                          " was signed by a CA outside this server, so weft cannot sign a new "
                          "certificate for it: have its parent sign a new CA certificate and "
                          "import it (GetCertificateAuthorityCsr, then "
                          "ImportCertificateAuthorityCertificate) instead");
        parent = std::move(**p);
        if (caStatus(parent->second.v) != "ACTIVE")
          return fail(kInvalidState, "the parent " + getStr(parent->second.v, "Arn") +
                                         " of certificate authority " + arn + " is " +
                                         caStatus(parent->second.v) + ", not ACTIVE");
      }
      auto new_key = generateKey(*key_alg);
      if (!new_key) return Unexpected<Error>{new_key.error()};
      std::string new_pem, new_chain;
      if (root) {
        IssueParams p;
        p.subject = subject;
        p.subject_key = new_key->get();
        p.issuer_key = new_key->get();
        p.alg = *alg;
        p.serial = randomSerial();
        p.not_before = t - kBackdate;
        p.not_after = t - kBackdate + lifetime;
        p.profile = Profile::kCa;
        p.path_len = path_len;
        auto cert = issueCertificate(p);
        if (!cert) return Unexpected<Error>{cert.error()};
        new_pem = certToPem(cert->get());
      } else {
        const Value& pv = parent->second.v;
        auto parent_alg = parseSigningAlgorithm(
            getStr(*pv.find("CertificateAuthorityConfiguration"), "SigningAlgorithm"));
        if (!parent_alg)
          return makeError("CA " + getStr(pv, "Arn") + ": unknown signing algorithm");
        Request r;
        r.subject = subject;
        r.key = new_key->get();
        r.profile = Profile::kCa;
        r.path_len = path_len;
        int64_t end = std::min(t - kBackdate + lifetime, getInt(pv, "NotAfter"));
        auto issued = sign(parent->first, parent->second, r, *parent_alg, t - kBackdate, end);
        if (!issued) return Unexpected<Error>{issued.error()};
        new_pem = certToPem(issued->cert.get());
        new_chain = chainOf(pv);
        ops = std::move(issued->ops);
        rot.set("ParentArn", str(getStr(pv, "Arn")));
      }
      std::string key_pem = privateKeyToPem(new_key->get());
      rot.set("Phase", str("PUBLISHING"));
      rot.set("StartedAt", num(t));
      rot.set("NewCertificate", str(new_pem));
      rot.set("NewChain", str(new_chain));
      rot.set("NewKey", str(kek.seal(key_pem, arn)));
      OPENSSL_cleanse(key_pem.data(), key_pem.size());
      Value rec = ca->v;
      rec.set("Rotation", std::move(rot));
      ops.push_back(StoreOp::put("ca/pca/" + *id, answer(rec), ca->revision));
      auto body = rotationAnswer(*id, rec);
      if (!body) return Unexpected<Error>{body.error()};
      return tryCommit(ops, std::move(*body));
    });
  }

  // PUBLISHING -> SIGNING_NEW: the new certificate and key become the CA's own.
  Status switchRotation(const std::string& id) {
    auto r = commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(id);
      if (!ca) return Unexpected<Error>{ca.error()};
      if (rotationPhase(ca->v) != "PUBLISHING") return std::optional<std::string>("");
      const Value rot = *ca->v.find("Rotation");
      const std::string arn = getStr(ca->v, "Arn");
      auto cert = parseCert(getStr(rot, "NewCertificate"));
      if (!cert) return Unexpected<Error>{cert.error()};
      auto key_pem = kek.open(getStr(rot, "NewKey"), arn);
      if (!key_pem) return makeError("CA " + arn + ": " + key_pem.error().message);
      auto key = privateKeyFromPem(*key_pem);
      OPENSSL_cleanse(key_pem->data(), key_pem->size());
      if (!key) return Unexpected<Error>{key.error()};
      auto alg = parseSigningAlgorithm(
          getStr(*ca->v.find("CertificateAuthorityConfiguration"), "SigningAlgorithm"));
      if (!alg) return makeError("CA " + arn + ": unknown signing algorithm");
      auto csr = makeCsr(key->get(), X509_get_subject_name(cert->get()), *alg);
      if (!csr) return Unexpected<Error>{csr.error()};
      Value next = Value::object();
      next.set("Phase", str("SIGNING_NEW"));
      next.set("StartedAt", num(getInt(rot, "StartedAt")));
      next.set("SwitchedAt", num(now()));
      next.set("OldCertificate", str(getStr(ca->v, "Certificate")));
      next.set("OldChain", str(getStr(ca->v, "Chain")));
      next.set("OldSerial", str(getStr(ca->v, "Serial")));
      next.set("OldKey", str(getStr(ca->v, "Key")));  // signs the old key's CRL until retired
      Value rec = ca->v;
      rec.set("Certificate", str(getStr(rot, "NewCertificate")));
      rec.set("Chain", str(getStr(rot, "NewChain")));
      rec.set("Key", str(getStr(rot, "NewKey")));
      rec.set("Csr", str(csrToPem(csr->get())));
      rec.set("Serial", str(serialColonHex(certSerial(cert->get()))));
      rec.set("NotBefore", num(certNotBefore(cert->get())));
      rec.set("NotAfter", num(certNotAfter(cert->get())));
      rec.set("Rotation", std::move(next));
      // The CRL from now on: signed with the new key, and (Previous) with the old one.
      auto ops = crlOps(id, rec, cert->get(), key->get(), nullptr);
      if (!ops) return Unexpected<Error>{ops.error()};
      ops->push_back(StoreOp::put("ca/pca/" + id, answer(rec), ca->revision));
      return tryCommit(*ops, "");
    });
    if (!r) return Unexpected<Error>{r.error()};
    return {};
  }

  // SIGNING_NEW: re-issues (as RenewCertificate) every ISSUED ACM certificate of the CA that
  // an older CA certificate signed, so listeners serve leaves of the new key.
  Status reissueAcm(const std::string& arn, const Value& ca) {
    // A CA that cannot issue (DISABLED, DELETED...) re-issues nothing; its certificates keep
    // their old-key leaves until it is ACTIVE again (the next rounds try again).
    if (caStatus(ca) != "ACTIVE") return {};
    const std::string prefix = "ca/acm/";
    const std::string current = getStr(ca, "Serial");
    std::vector<std::string> due;
    std::string start;
    while (true) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto v = parseRecord(kv);
        if (!v) return Unexpected<Error>{v.error()};
        if (getStr(*v, "CertificateAuthorityArn") != arn) continue;
        if (getStr(*v, "CaSerial") == current) continue;
        auto state = acmState(*v);
        if (!state) return Unexpected<Error>{state.error()};
        if (state->status == "ISSUED") due.push_back(getStr(*v, "CertificateArn"));
      }
      if (items->size() < 200) break;
    }
    for (const std::string& acm : due) {
      auto r = renewAcm(acm.substr(acm.rfind('/') + 1), now(), std::nullopt);
      if (!r) return makeError("re-issuing " + acm + " with the new key: " + r.error().message);
      if (r->rfind(kFailedPrefix, 0) == 0)
        return makeError("re-issuing " + acm + " with the new key: renewal FAILED (" +
                         r->substr(kFailedPrefix.size()) + ")");
    }
    return {};
  }

  // Ends the rotation: the old certificate leaves the trust bundles.
  Status retireRotation(const std::string& id, bool early) {
    auto r = commitLoop([&]() -> Result<std::optional<std::string>> {
      auto ca = loadCa(id);
      if (!ca) return Unexpected<Error>{ca.error()};
      if (rotationPhase(ca->v) != "SIGNING_NEW") return std::optional<std::string>("");
      const Value* rot = ca->v.find("Rotation");
      Value last = Value::object();
      last.set("StartedAt", num(getInt(*rot, "StartedAt")));
      last.set("SwitchedAt", num(getInt(*rot, "SwitchedAt")));
      last.set("RetiredAt", num(now()));
      last.set("RetiredEarly", Value::boolean(early));
      last.set("OldSerial", str(getStr(*rot, "OldSerial")));
      Value rec = ca->v;
      rec.erase("Rotation");
      rec.set("LastRotation", std::move(last));
      // The old key's CRL goes with its root.
      auto key = caKey(rec);
      if (!key) return Unexpected<Error>{key.error()};
      auto cert = parseCert(getStr(rec, "Certificate"));
      if (!cert) return Unexpected<Error>{cert.error()};
      auto ops = crlOps(id, rec, cert->get(), key->get(), nullptr);
      if (!ops) return Unexpected<Error>{ops.error()};
      ops->push_back(StoreOp::put("ca/pca/" + id, answer(rec), ca->revision));
      return tryCommit(*ops, "");
    });
    if (!r) return Unexpected<Error>{r.error()};
    return {};
  }

  Result<std::vector<std::string>> rotatingCas() {
    std::vector<std::string> out;
    const std::string prefix = "ca/pca/";
    std::string start;
    while (true) {
      auto items = store.list(prefix, start, 200);
      if (!items) return Unexpected<Error>{items.error()};
      for (const KeyValue& kv : *items) {
        start = kv.key;
        auto v = parseRecord(kv);
        if (!v) return Unexpected<Error>{v.error()};
        if (!purged(*v) && rotationPhase(*v) != "NONE") out.push_back(getStr(*v, "Arn"));
      }
      if (items->size() < 200) break;
    }
    return out;
  }

  Result<std::string> advanceRotation(const std::string& arn, bool may_switch) {
    auto id = caIdOf(arn);
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    std::string phase = rotationPhase(ca->v);
    if (phase == "PUBLISHING") {
      if (!may_switch) return phase;
      if (auto st = switchRotation(*id); !st) return Unexpected<Error>{st.error()};
      ca = loadCa(*id);
      if (!ca) return Unexpected<Error>{ca.error()};
      phase = rotationPhase(ca->v);
    }
    if (phase != "SIGNING_NEW") return phase;
    if (auto st = reissueAcm(arn, ca->v); !st) return Unexpected<Error>{st.error()};
    auto expires = oldLeavesExpireAt(*id, ca->v);
    if (!expires) return Unexpected<Error>{expires.error()};
    if (*expires > now()) return phase;
    if (auto st = retireRotation(*id, false); !st) return Unexpected<Error>{st.error()};
    return std::string("NONE");
  }

  Result<std::string> retireRotationNow(const std::string& arn) {
    auto id = caIdOf(arn, "certificateAuthorityArn");
    if (!id) return Unexpected<Error>{id.error()};
    auto ca = loadCa(*id);
    if (!ca) return Unexpected<Error>{ca.error()};
    std::string phase = rotationPhase(ca->v);
    if (phase == "NONE")
      return fail(kInvalidState, "certificate authority " + arn + " has no rotation in progress");
    if (phase == "PUBLISHING")
      return fail(kInvalidState,
                  "the rotation of certificate authority " + arn +
                      " is PUBLISHING: the old key still signs, so its root cannot retire yet; "
                      "wait until the phase is SIGNING_NEW (after the proxies took the new root)");
    // Served leaves first move to the new key, so no listener is left with a retired root.
    if (auto st = reissueAcm(arn, ca->v); !st) return Unexpected<Error>{st.error()};
    if (auto st = retireRotation(*id, true); !st) return Unexpected<Error>{st.error()};
    return rotationStatus(arn);
  }

  // ================= the config compiler's certificate source =================

  static Unexpected<Error> unservable(std::string message) {
    return makeError(std::move(message), compile::kCompileUnsupported);
  }

  // PEM CERTIFICATE blocks of `pem`, each ending with a newline.
  static std::vector<std::string> pemBlocks(std::string_view pem) {
    constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
    constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
    std::vector<std::string> out;
    size_t pos = 0;
    while ((pos = pem.find(kBegin, pos)) != std::string_view::npos) {
      size_t end = pem.find(kEnd, pos);
      if (end == std::string_view::npos) break;
      end += kEnd.size();
      out.push_back(std::string(pem.substr(pos, end - pos)) + "\n");
      pos = end;
    }
    return out;
  }

  Result<compile::CertMaterial> proxyCertificate(const std::string& arn) {
    auto id = acmIdOf(arn);
    if (!id) {
      if (id.error().code == kResourceNotFound)
        return unservable("ACM certificate " + arn.substr(0, 200) + " does not exist");
      return unservable(id.error().message);
    }
    compile::CertMaterial out;
    const std::string key = "ca/acm/" + *id;
    out.depends_on.push_back(key);
    auto l = load(key);
    if (!l) return Unexpected<Error>{l.error()};
    if (!l->has_value())
      return unservable("ACM certificate " + arn +
                        " does not exist (RequestCertificate makes one)");
    const Value& rec = (*l)->v;
    if (std::string pca = getStr(rec, "PcaCertKey"); !pca.empty()) out.depends_on.push_back(pca);
    auto state = acmState(rec);
    if (!state) return Unexpected<Error>{state.error()};
    if (state->status != "ISSUED") {
      std::string reason = getStr(rec, "FailureReason");
      return unservable("ACM certificate " + arn + " is " + state->status +
                        (reason.empty() ? std::string() : " (" + reason + ")") +
                        ", not ISSUED; renew it or request a new one");
    }
    auto pem = kek.open(getStr(rec, "Key"), arn);
    if (!pem) return makeError("ACM certificate " + arn + ": " + pem.error().message);
    out.private_key_pem = std::move(*pem);
    std::string chain = getStr(rec, "Certificate");
    if (!chain.empty() && chain.back() != '\n') chain += '\n';
    chain += getStr(rec, "Chain");
    out.certificate_chain_pem = std::move(chain);
    std::sort(out.depends_on.begin(), out.depends_on.end());
    return out;
  }

  // The ids of this server's CAs whose certificate is one of `pem_blocks` (each block's CA, in
  // the blocks' order; blocks of external CAs are skipped).
  Result<std::vector<std::string>> weftCasOf(const std::vector<std::string>& pem_blocks) {
    std::vector<std::pair<std::string, CertPtr>> cas;
    const std::string prefix = "ca/pca/";
    auto items = store.list(prefix, "", 0);
    if (!items) return Unexpected<Error>{items.error()};
    for (const KeyValue& kv : *items) {
      auto v = parseRecord(kv);
      if (!v) return Unexpected<Error>{v.error()};
      if (purged(*v) || getStr(*v, "Certificate").empty()) continue;
      auto cert = parseCert(getStr(*v, "Certificate"));
      if (!cert) continue;  // not ours to judge here; the CA's own answers report it
      cas.emplace_back(kv.key.substr(prefix.size()), std::move(*cert));
    }
    std::vector<std::string> out;
    for (const std::string& block : pem_blocks) {
      auto cert = parseCert(block);
      if (!cert) continue;
      for (const auto& [id, ca_cert] : cas)
        if (X509_cmp(ca_cert.get(), cert->get()) == 0) {
          out.push_back(id);
          break;
        }
    }
    return out;
  }

  Result<compile::TrustBundle> proxyTrustBundle(const std::vector<std::string>& arns) {
    compile::TrustBundle out;
    if (arns.empty()) return unservable("no certificate authority ARN given");
    std::set<std::string> seen;
    // The weft CAs whose CRLs go with the bundle: each named CA, then the weft CAs of the
    // subordinates' chains (found by certificate among this server's CAs).
    std::vector<std::string> crl_ids;
    std::vector<std::string> chain_blocks;
    for (const std::string& arn : arns) {
      auto id = caIdOf(arn);
      if (!id) {
        if (id.error().code == kResourceNotFound)
          return unservable("certificate authority " + arn.substr(0, 200) + " does not exist");
        return unservable(id.error().message);
      }
      const std::string key = "ca/pca/" + *id;
      out.depends_on.push_back(key);
      auto l = load(key);
      if (!l) return Unexpected<Error>{l.error()};
      if (!l->has_value() || purged((**l).v))
        return unservable("certificate authority " + arn + " does not exist");
      const Value& ca = (*l)->v;
      std::string status = getStr(ca, "Status");
      if (getStr(ca, "Certificate").empty())
        return unservable("certificate authority " + arn + " has no certificate yet (" + status +
                          "); import its certificate (ImportCertificateAuthorityCertificate)");
      if (status != "ACTIVE" && status != "DISABLED")
        return unservable("certificate authority " + arn + " is " + status +
                          "; trust needs an ACTIVE (or DISABLED) CA");
      crl_ids.push_back(*id);
      for (std::string& block : pemBlocks(getStr(ca, "Chain"))) chain_blocks.push_back(block);
      for (std::string& block : pemBlocks(trustChainOf(ca)))  // + a rotation's other root
        if (seen.insert(block).second) out.pem += block;
    }
    if (!chain_blocks.empty()) {
      // Any CA record may turn out to be one of the chain's CAs (made or imported later).
      out.depends_on.push_back("ca/pca/");
      auto above = weftCasOf(chain_blocks);
      if (!above) return Unexpected<Error>{above.error()};
      crl_ids.insert(crl_ids.end(), above->begin(), above->end());
    }
    std::set<std::string> crl_seen;
    for (const std::string& id : crl_ids) {
      if (!crl_seen.insert(id).second) continue;
      const std::string key = "ca/pca-crl/" + id;
      out.depends_on.push_back(key);  // a revocation rewrites it: the trusting configs follow
      auto crl = load(key);
      if (!crl) return Unexpected<Error>{crl.error()};
      if (!crl->has_value()) continue;  // none yet: the CA is not checked for revocation
      for (const char* member : {"Pem", "PreviousPem"}) {  // Previous: during a rotation
        std::string pem = getStr((**crl).v, member);
        if (pem.empty()) continue;
        if (pem.back() != '\n') pem += '\n';
        out.crl_pem += pem;
      }
    }
    std::sort(out.depends_on.begin(), out.depends_on.end());
    out.depends_on.erase(std::unique(out.depends_on.begin(), out.depends_on.end()),
                         out.depends_on.end());
    return out;
  }

  Result<std::string> dispatchAcm(std::string_view op, const Value& in) {
    if (op == "RequestCertificate") return requestCert(in);
    if (op == "DescribeCertificate") return describeCert(in);
    if (op == "ListCertificates") return listCerts(in);
    if (op == "GetCertificate") return getAcmCert(in);
    if (op == "ExportCertificate") return exportCert(in);
    if (op == "RenewCertificate") return renewCert(in);
    if (op == "DeleteCertificate") return deleteCert(in);
    return fail(kUnknownOperation, "weft does not implement CertificateManager." + std::string(op));
  }

  ApiResponse handleImport(const ApiRequest& req) {
    if (req.method != "POST")
      return apiError(
          405, "MethodNotAllowedException",
          "use POST " + std::string(kImportPath) + " to import a certificate authority");
    Result<std::string> body = [&]() -> Result<std::string> {
      auto in = Body::parse(req.body);
      if (!in) return Unexpected<Error>{in.error()};
      return importCa(in->v);
    }();
    ApiResponse r;
    if (!body) {
      r = errorResponse(body.error());
      r.content_type = "application/json";
      return r;
    }
    r.status = 200;
    r.body = std::move(*body);
    return r;
  }

  ApiResponse handle(const ApiRequest& req, std::string_view prefix, bool pca) {
    const std::string* target = req.header("x-amz-target");
    std::string_view op = target ? std::string_view(*target) : std::string_view();
    if (op.substr(0, prefix.size()) == prefix) op.remove_prefix(prefix.size());
    Result<std::string> body = [&]() -> Result<std::string> {
      if (req.method != "POST") return fail(kUnknownOperation, "JSON 1.1 operations are POSTs");
      auto in = Body::parse(req.body);
      if (!in) return Unexpected<Error>{in.error()};
      return pca ? dispatchPca(op, in->v) : dispatchAcm(op, in->v);
    }();
    if (!body) return errorResponse(body.error());
    ApiResponse r;
    r.status = 200;
    r.content_type = "application/x-amz-json-1.1";
    r.body = std::move(*body);
    return r;
  }
};

CaApi::CaApi(Store& store, const TimeSource& time, const Kek& kek, Options options)
    : impl_(std::make_unique<Impl>(Impl{store, time, kek, std::move(options)})) {}

CaApi::~CaApi() = default;

Status CaApi::init() {
  auto kv = impl_->store.get(kKekCheckKey);
  if (!kv) return Unexpected<Error>{kv.error()};
  if (kv->has_value()) {
    auto opened = impl_->kek.open((*kv)->value, kKekCheckKey);
    if (!opened || *opened != kKekCheckText)
      return makeError(
          "the CA key-encryption key does not match the one this data directory's CA keys were "
          "sealed with; start with the original --ca-key-file / WEFT_CA_KEY / DATA_DIR/ca-kek");
    return {};
  }
  auto c = impl_->store.commit({StoreOp::put(
      std::string(kKekCheckKey), impl_->kek.seal(kKekCheckText, kKekCheckKey), StoreOp::kAbsent)});
  if (!c && c.error().code == kStoreConflict) return init();
  if (!c) return Unexpected<Error>{c.error()};
  return {};
}

namespace {
int64_t unixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
}  // namespace

int64_t acmRenewalDueAt(int64_t not_before, int64_t not_after, std::chrono::seconds renew_before) {
  const int64_t lifetime = std::max<int64_t>(not_after - not_before, 0);
  return not_after - std::min<int64_t>(renew_before.count(), lifetime / 3);
}

Status CaApi::renewAcmCertificate(const std::string& certificate_id,
                                  std::chrono::system_clock::time_point now) {
  auto r = impl_->renewAcm(certificate_id, unixSeconds(now), std::nullopt);
  if (!r) return Unexpected<Error>{r.error()};
  if (r->rfind(Impl::kFailedPrefix, 0) == 0)
    return makeError("ACM certificate " + impl_->acmArn(certificate_id) + ": renewal FAILED (" +
                         r->substr(Impl::kFailedPrefix.size()) + ")",
                     kAcmRenewalFailed);
  return {};
}

Status CaApi::renewDueAcmCertificates(std::chrono::system_clock::time_point now,
                                      std::chrono::seconds renew_before) {
  return impl_->renewDueAcm(unixSeconds(now), renew_before);
}

Status CaApi::resignDueCrls(std::chrono::system_clock::time_point now) {
  return impl_->resignCrls(unixSeconds(now));
}

Result<compile::CertMaterial> CaApi::proxyCertificate(const std::string& acm_arn) const {
  return impl_->proxyCertificate(acm_arn);
}

Result<compile::TrustBundle> CaApi::proxyTrustBundle(
    const std::vector<std::string>& ca_arns) const {
  return impl_->proxyTrustBundle(ca_arns);
}

namespace {
// The rotation routes' errors: an HTTP status in Error::code.
Unexpected<Error> httpError(const Error& e) {
  switch (e.code) {
    case kResourceNotFound:
      return makeError(e.message, 404);
    case kInvalidState:
    case kThrottling:
      return makeError(e.message, 409);
    case kInvalidArn:
    case kInvalidArgs:
    case kInvalidRequest:
      return makeError(e.message, 400);
    default:
      return makeError(e.message, 500);
  }
}
template <typename T>
Result<T> http(Result<T> r) {
  if (!r) return httpError(r.error());
  return r;
}
}  // namespace

Result<std::string> CaApi::startRotation(const std::string& ca_arn) {
  return http(impl_->startRotation(ca_arn));
}

Result<std::string> CaApi::rotationStatus(const std::string& ca_arn) const {
  return http(impl_->rotationStatus(ca_arn));
}

Result<std::string> CaApi::retireRotationNow(const std::string& ca_arn) {
  return http(impl_->retireRotationNow(ca_arn));
}

Result<std::vector<std::string>> CaApi::rotatingCas() const { return impl_->rotatingCas(); }

Result<std::string> CaApi::advanceRotation(const std::string& ca_arn, bool may_switch) {
  return impl_->advanceRotation(ca_arn, may_switch);
}

ApiResponse CaApi::handlePca(const ApiRequest& request) {
  return impl_->handle(request, "ACMPrivateCA.", true);
}

ApiResponse CaApi::handleAcm(const ApiRequest& request) {
  return impl_->handle(request, "CertificateManager.", false);
}

bool CaApi::handles(std::string_view path) {
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  return path == kImportPath;
}

ApiResponse CaApi::handleWeft(const ApiRequest& request) { return impl_->handleImport(request); }

}  // namespace weft::control::ca
