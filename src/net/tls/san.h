#pragma once
// Subject-alternative-name matching for peer verification, shared by the server side (mutual TLS:
// verify client certificates) and the client side (verify upstream servers).
//
// The matching functions are pure (no OpenSSL state) so that the rules can be unit-tested on
// their own; sansOf() is the only function that reads a certificate.
//
// Rules (docs/tls.md):
//   - A DNS rule "a.example.com" matches a certificate DNS SAN "a.example.com", or a wildcard SAN
//     "*.example.com" (RFC 6125 §6.4.3: the wildcard must be the complete left-most label, matches
//     exactly one non-empty label, and must be followed by at least two labels, so "*.com" never
//     matches). Comparison is ASCII case-insensitive; one trailing dot is ignored on either side.
//     A rule is a name, not a pattern: the rule "*.example.com" matches only the SAN
//     "*.example.com" itself.
//   - A URI rule matches a URI SAN byte for byte (e.g. "spiffe://mesh/ns/default/sa/web").
//   - With several rules the peer is accepted when any rule matches any SAN of its kind.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "weft/v1/config.pb.h"

struct x509_st;

namespace weft::net::tls {

struct SanRule {
  enum class Kind { kDns, kUri };
  Kind kind = Kind::kDns;
  std::string value;
};

// The SANs of one certificate, in certificate order. Entries with an embedded NUL are dropped.
struct PeerSans {
  std::vector<std::string> dns;
  std::vector<std::string> uri;
};

// True when the certificate-presented DNS name `presented` (possibly "*.x.y") identifies the
// host `reference`.
bool dnsNameMatches(std::string_view presented, std::string_view reference);

// True when `rules` is empty or at least one rule matches one SAN of `sans`.
bool sansMatch(const PeerSans& sans, std::span<const SanRule> rules);

// Mesh authorization (config Listener.authorization, docs/security.md): whether a peer whose
// verified certificate has the URI SAN `uri` and the DNS SAN `dns` (either "" for none: what
// net::PeerInfo keeps, the first of each kind) matches one of `allowed`. Unlike sansMatch, empty
// rules allow nobody, and a peer without a verified certificate is never allowed.
bool peerAuthorized(std::string_view uri, std::string_view dns, std::span<const SanRule> allowed);

// Reads the subjectAltName extension of `cert` (DNS and URI entries only).
PeerSans sansOf(const x509_st* cert);

// "DNS:a.example.com, URI:spiffe://x" (for error messages); "none" when empty.
std::string describeSans(const PeerSans& sans);
// "dns:a.example.com, uri:spiffe://x" (for error messages).
std::string describeRules(std::span<const SanRule> rules);

// Converts configured matchers; an entry with neither `dns` nor `uri` set, or with an empty
// value, is an error naming its index.
Result<std::vector<SanRule>> sanRulesFrom(
    const google::protobuf::RepeatedPtrField<v1::SanMatcher>& matchers, std::string_view where);

}  // namespace weft::net::tls
