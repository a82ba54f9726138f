#include "control/api/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include "common/hex.h"
#include "common/percent_encoding.h"
#include "control/api/crypto_util.h"

namespace weft::control::sigv4 {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

bool isUnreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

// RFC 3986 percent-encoding of every byte but the unreserved ones (and '/' if keep_slash).
void appendUriEncoded(std::string& out, std::string_view s, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  for (char c : s) {
    if (isUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      auto b = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kDigits[b >> 4]);
      out.push_back(kDigits[b & 0xf]);
    }
  }
}

// Percent-decoding for canonicalization (the common strict decoder); text with a malformed
// '%' is used as it is. The server refuses such a path or query before verifying, so this only
// decides what a signer sends for it.
std::string decodeForCanonical(std::string_view s) {
  auto decoded = percentDecode(s);
  return decoded ? std::move(*decoded) : std::string(s);
}

// RFC 3986 §5.2.4 dot-segment removal, and empty segments dropped (AWS collapses "//" for
// every service but S3). Keeps a leading and a trailing '/'.
std::string normalizePath(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> segments;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view seg = path.substr(pos, slash - pos);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segments.push_back(seg);
    }
    pos = slash + 1;
  }
  std::string out = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i) out.push_back('/');
    out.append(segments[i]);
  }
  if (path.back() == '/' && !segments.empty()) out.push_back('/');
  return out;
}

std::string canonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view pair = query.substr(pos, amp - pos);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string_view k = pair.substr(0, eq);
      std::string_view v = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      std::string ek, ev;
      appendUriEncoded(ek, decodeForCanonical(k), false);
      appendUriEncoded(ev, decodeForCanonical(v), false);
      pairs.emplace_back(std::move(ek), std::move(ev));
    }
    pos = amp + 1;
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) out.push_back('&');
    out += k;
    out.push_back('=');
    out += v;
  }
  return out;
}

// Trims and collapses runs of spaces into one ("Trimall").
std::string canonicalValue(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

// All values of a header (any case), comma-joined, or nullopt if absent.
std::optional<std::string> headerValues(const Request& req, std::string_view name) {
  std::optional<std::string> out;
  for (const auto& [k, v] : req.headers) {
    if (!equalsIgnoreCase(k, name)) continue;
    if (out)
      *out += "," + canonicalValue(v);
    else
      out = canonicalValue(v);
  }
  return out;
}

const std::string* firstHeader(const Request& req, std::string_view name) {
  for (const auto& [k, v] : req.headers)
    if (equalsIgnoreCase(k, name)) return &v;
  return nullptr;
}

void removeHeader(Request& req, std::string_view name) {
  auto it = std::remove_if(req.headers.begin(), req.headers.end(),
                           [&](const auto& kv) { return equalsIgnoreCase(kv.first, name); });
  req.headers.erase(it, req.headers.end());
}

void setHeader(Request& req, std::string_view name, std::string value) {
  removeHeader(req, name);
  req.headers.emplace_back(std::string(name), std::move(value));
}

std::string signature(const Request& req, const std::vector<std::string>& signed_headers,
                      std::string_view secret, std::string_view amz_date, std::string_view region,
                      std::string_view service) {
  std::string_view date = amz_date.substr(0, 8);
  std::string scope =
      std::string(date) + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  std::string to_sign = std::string(kAlgorithm) + "\n" + std::string(amz_date) + "\n" + scope +
                        "\n" + sha256Hex(canonicalRequest(req, signed_headers));
  std::string key = hmac("AWS4" + std::string(secret), date);
  key = hmac(key, region);
  key = hmac(key, service);
  key = hmac(key, "aws4_request");
  return hexEncode(hmac(key, to_sign));
}

// "YYYYMMDDTHHMMSSZ" -> UNIX seconds.
std::optional<int64_t> parseDate(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  for (size_t i = 0; i < 15; ++i)
    if (i != 8 && (s[i] < '0' || s[i] > '9')) return std::nullopt;
  auto num = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Unexpected<Error> fail(VerifyError code, std::string message) {
  return makeError(std::move(message), code);
}

}  // namespace

std::string canonicalRequest(const Request& req, const std::vector<std::string>& signed_headers) {
  std::string out = req.method;
  out.push_back('\n');
  appendUriEncoded(out, normalizePath(req.path), true);
  out.push_back('\n');
  out += canonicalQuery(req.query);
  out.push_back('\n');
  std::string names;
  for (const std::string& name : signed_headers) {
    out += name;
    out.push_back(':');
    if (auto v = headerValues(req, name)) out += *v;
    out.push_back('\n');
    if (!names.empty()) names.push_back(';');
    names += name;
  }
  out.push_back('\n');
  out += names;
  out.push_back('\n');
  out += sha256Hex(req.body);
  return out;
}

void sign(Request& req, const Credentials& creds, std::string_view region, std::string_view service,
          std::string_view amz_date) {
  setHeader(req, "x-amz-date", std::string(amz_date));
  setHeader(req, "x-amz-content-sha256", sha256Hex(req.body));
  if (!creds.session_token.empty()) setHeader(req, "x-amz-security-token", creds.session_token);
  removeHeader(req, "authorization");
  std::vector<std::string> names;
  for (const auto& [k, v] : req.headers) names.push_back(toLower(k));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string sig = signature(req, names, creds.secret_access_key, amz_date, region, service);
  std::string auth = std::string(kAlgorithm) + " Credential=" + creds.access_key_id + "/" +
                     std::string(amz_date.substr(0, 8)) + "/" + std::string(region) + "/" +
                     std::string(service) + "/aws4_request, SignedHeaders=";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) auth.push_back(';');
    auth += names[i];
  }
  auth += ", Signature=" + sig;
  req.headers.emplace_back("authorization", std::move(auth));
}

Result<Authorization> parseAuthorization(std::string_view value) {
  value = trim(value);
  if (value.substr(0, kAlgorithm.size()) != kAlgorithm ||
      (value.size() > kAlgorithm.size() && value[kAlgorithm.size()] != ' '))
    return fail(kIncompleteSignature, "Authorization header must start with " +
                                          std::string(kAlgorithm) + " (only SigV4 is supported)");
  value.remove_prefix(kAlgorithm.size());
  Authorization auth;
  bool have_credential = false, have_signed = false, have_signature = false;
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view part = trim(value.substr(pos, comma - pos));
    pos = comma + 1;
    if (part.empty()) continue;
    size_t eq = part.find('=');
    if (eq == std::string_view::npos)
      return fail(kIncompleteSignature,
                  "Authorization header component '" + std::string(part) + "' has no '='");
    std::string_view key = part.substr(0, eq), val = part.substr(eq + 1);
    if (key == "Credential") {
      // AK/date/region/service/aws4_request; the key id itself has no '/'.
      std::vector<std::string_view> f;
      size_t p = 0;
      while (true) {
        size_t s = val.find('/', p);
        f.push_back(val.substr(p, s == std::string_view::npos ? s : s - p));
        if (s == std::string_view::npos) break;
        p = s + 1;
      }
      if (f.size() != 5 || f[4] != "aws4_request" || f[0].empty() || f[1].size() != 8 ||
          f[2].empty() || f[3].empty())
        return fail(kIncompleteSignature,
                    "Credential must have the form <key>/<YYYYMMDD>/<region>/<service>/"
                    "aws4_request, got '" +
                        std::string(val) + "'");
      auth.access_key_id = f[0];
      auth.date = f[1];
      auth.region = f[2];
      auth.service = f[3];
      have_credential = true;
    } else if (key == "SignedHeaders") {
      size_t p = 0;
      while (p <= val.size()) {
        size_t s = val.find(';', p);
        if (s == std::string_view::npos) s = val.size();
        std::string_view name = val.substr(p, s - p);
        if (name.empty())
          return fail(kIncompleteSignature, "SignedHeaders has an empty header name");
        auth.signed_headers.push_back(toLower(name));
        p = s + 1;
      }
      have_signed = true;
    } else if (key == "Signature") {
      if (val.size() != 64 ||
          !std::all_of(val.begin(), val.end(), [](char c) { return hexDigitValue(c) >= 0; }))
        return fail(kIncompleteSignature, "Signature must be 64 hex digits");
      auth.signature = toLower(val);
      have_signature = true;
    } else {
      return fail(kIncompleteSignature,
                  "unknown Authorization header component '" + std::string(key) + "'");
    }
  }
  if (!have_credential || !have_signed || !have_signature)
    return fail(kIncompleteSignature,
                std::string("Authorization header requires 'Credential', 'SignedHeaders' and "
                            "'Signature'; missing ") +
                    (!have_credential ? "Credential"
                     : !have_signed   ? "SignedHeaders"
                                      : "Signature"));
  return auth;
}

Result<Verified> verify(const Request& req, const SecretLookup& lookup,
                        std::string_view now_amz_date) {
  const std::string* header = firstHeader(req, "authorization");
  if (!header) return fail(kMissingAuthentication, "Missing Authentication Token");
  auto auth = parseAuthorization(*header);
  if (!auth) return Unexpected<Error>{auth.error()};
  auto& a = *auth;
  for (std::string_view required : {"host", "x-amz-date"}) {
    if (std::find(a.signed_headers.begin(), a.signed_headers.end(), required) ==
        a.signed_headers.end())
      return fail(kIncompleteSignature,
                  "the '" + std::string(required) + "' header must be among SignedHeaders");
  }
  for (const std::string& name : a.signed_headers) {
    if (!firstHeader(req, name))
      return fail(kIncompleteSignature, "signed header '" + name + "' is not in the request");
  }
  const std::string* date_header = firstHeader(req, "x-amz-date");
  if (!parseDate(*date_header))
    return fail(kIncompleteSignature,
                "x-amz-date must be YYYYMMDD'T'HHMMSS'Z', got '" + *date_header + "'");
  if (date_header->substr(0, 8) != a.date)
    return fail(kSignatureMismatch, "the credential scope date " + a.date +
                                        " does not match x-amz-date " + *date_header);
  if (const std::string* payload = firstHeader(req, "x-amz-content-sha256")) {
    if (*payload != sha256Hex(req.body))
      return fail(kSignatureMismatch,
                  "x-amz-content-sha256 does not match the SHA-256 of the request body");
  }
  std::optional<std::string> secret = lookup ? lookup(a.access_key_id) : std::nullopt;
  if (!secret || secret->empty())
    return fail(kUnknownAccessKey,
                "The security token included in the request is invalid: "
                "unknown access key id " +
                    a.access_key_id);
  std::string expected =
      signature(req, a.signed_headers, *secret, *date_header, a.region, a.service);
  if (CRYPTO_memcmp(expected.data(), a.signature.data(), expected.size()) != 0)
    return fail(kSignatureMismatch,
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.");
  if (Status st = checkRequestDate(*date_header, now_amz_date); !st)
    return Unexpected<Error>{st.error()};
  return Verified{a.access_key_id, a.region, a.service};
}

std::optional<int64_t> parseAmzDate(std::string_view amz_date) { return parseDate(amz_date); }

Status checkRequestDate(std::string_view amz_date, std::string_view now_amz_date) {
  std::string date(amz_date);
  auto when = parseDate(amz_date);
  if (!when)
    return fail(kIncompleteSignature,
                "x-amz-date must be YYYYMMDD'T'HHMMSS'Z', got '" + date.substr(0, 40) + "'");
  auto now = parseDate(now_amz_date);
  if (now && *when < *now - kMaxClockSkewSeconds)
    return fail(kClockSkew, "Signature expired: " + date + " is now earlier than " +
                                amzDate(*now - kMaxClockSkewSeconds) + " (" +
                                std::string(now_amz_date) + " - 15 min.)");
  if (now && *when > *now + kMaxClockSkewSeconds)
    return fail(kClockSkew, "Signature not yet current: " + date + " is still later than " +
                                amzDate(*now + kMaxClockSkewSeconds) + " (" +
                                std::string(now_amz_date) + " + 15 min.)");
  return {};
}

std::string amzDate(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace weft::control::sigv4
