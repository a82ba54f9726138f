#include "net/tls/san.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace weft::net::tls {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view stripTrailingDot(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return name;
}

// Labels must be non-empty: "a..b" and ".a" identify nothing.
bool hasEmptyLabel(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return true;
  return name.find("..") != std::string_view::npos;
}

// Copies an IA5String SAN unless it holds an embedded NUL (a classic spoofing trick).
bool asnString(const ASN1_IA5STRING* s, std::string& out) {
  if (s == nullptr) return false;
  const unsigned char* data = ASN1_STRING_get0_data(s);
  int len = ASN1_STRING_length(s);
  if (data == nullptr || len <= 0) return false;
  std::string_view v(reinterpret_cast<const char*>(data), static_cast<size_t>(len));
  if (v.find('\0') != std::string_view::npos) return false;
  out.assign(v);
  return true;
}

}  // namespace

bool dnsNameMatches(std::string_view presented, std::string_view reference) {
  presented = stripTrailingDot(presented);
  reference = stripTrailingDot(reference);
  if (hasEmptyLabel(presented) || hasEmptyLabel(reference)) return false;
  if (presented.find('*') == std::string_view::npos) return equalsIgnoreCase(presented, reference);

  // Wildcard: only the complete left-most label "*", followed by at least two labels.
  if (presented.size() < 2 || presented[0] != '*' || presented[1] != '.') return false;
  std::string_view presented_rest = presented.substr(2);
  if (presented_rest.find('*') != std::string_view::npos) return false;
  if (presented_rest.find('.') == std::string_view::npos) return false;
  size_t dot = reference.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;  // "*" matches one non-empty label
  return equalsIgnoreCase(presented_rest, reference.substr(dot + 1));
}

bool sansMatch(const PeerSans& sans, std::span<const SanRule> rules) {
  if (rules.empty()) return true;
  for (const SanRule& rule : rules) {
    if (rule.kind == SanRule::Kind::kDns) {
      for (const std::string& dns : sans.dns) {
        if (dnsNameMatches(dns, rule.value)) return true;
      }
    } else {
      for (const std::string& uri : sans.uri) {
        if (uri == rule.value) return true;
      }
    }
  }
  return false;
}

PeerSans sansOf(const x509_st* cert) {
  PeerSans out;
  if (cert == nullptr) return out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(const_cast<X509*>(cert), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    std::string value;
    if (name->type == GEN_DNS && asnString(name->d.dNSName, value)) {
      out.dns.push_back(std::move(value));
    } else if (name->type == GEN_URI && asnString(name->d.uniformResourceIdentifier, value)) {
      out.uri.push_back(std::move(value));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string describeSans(const PeerSans& sans) {
  std::string out;
  for (const std::string& d : sans.dns) out += (out.empty() ? "DNS:" : ", DNS:") + d;
  for (const std::string& u : sans.uri) out += (out.empty() ? "URI:" : ", URI:") + u;
  return out.empty() ? "none" : out;
}

std::string describeRules(std::span<const SanRule> rules) {
  std::string out;
  for (const SanRule& r : rules) {
    if (!out.empty()) out += ", ";
    out += (r.kind == SanRule::Kind::kDns ? "dns:" : "uri:") + r.value;
  }
  return out;
}

Result<std::vector<SanRule>> sanRulesFrom(
    const google::protobuf::RepeatedPtrField<v1::SanMatcher>& matchers, std::string_view where) {
  std::vector<SanRule> rules;
  rules.reserve(matchers.size());
  for (int i = 0; i < matchers.size(); ++i) {
    const v1::SanMatcher& m = matchers[i];
    SanRule rule;
    if (m.match_case() == v1::SanMatcher::kDns) {
      rule.kind = SanRule::Kind::kDns;
      rule.value = m.dns();
    } else if (m.match_case() == v1::SanMatcher::kUri) {
      rule.kind = SanRule::Kind::kUri;
      rule.value = m.uri();
    }
    if (rule.value.empty()) {
      return makeError(std::string(where) + ": match_subject_alt_names[" + std::to_string(i) +
                       "]: set a non-empty dns or uri");
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

bool peerAuthorized(std::string_view uri, std::string_view dns, std::span<const SanRule> allowed) {
  if (allowed.empty() || (uri.empty() && dns.empty())) return false;
  PeerSans sans;
  if (!uri.empty()) sans.uri.emplace_back(uri);
  if (!dns.empty()) sans.dns.emplace_back(dns);
  return sansMatch(sans, allowed);
}

}  // namespace weft::net::tls
