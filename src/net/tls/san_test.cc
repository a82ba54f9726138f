#include "net/tls/san.h"

#include <gtest/gtest.h>

#include "net/tls/tls_test_util.h"

namespace weft::net::tls {
namespace {

struct DnsCase {
  const char* presented;
  const char* reference;
  bool expected;
};

class DnsMatchTest : public ::testing::TestWithParam<DnsCase> {};

TEST_P(DnsMatchTest, Matches) {
  const DnsCase& c = GetParam();
  EXPECT_EQ(dnsNameMatches(c.presented, c.reference), c.expected)
      << "certificate SAN \"" << c.presented << "\" vs name \"" << c.reference << "\": expected "
      << (c.expected ? "match" : "no match");
}

INSTANTIATE_TEST_SUITE_P(
    Rfc6125, DnsMatchTest,
    ::testing::Values(
        // Exact names, case-insensitive, one trailing dot ignored.
        DnsCase{"a.example.com", "a.example.com", true},
        DnsCase{"A.Example.COM", "a.example.com", true},
        DnsCase{"a.example.com.", "a.example.com", true},
        DnsCase{"a.example.com", "a.example.com.", true},
        DnsCase{"a.example.com", "b.example.com", false},
        DnsCase{"a.example.com", "example.com", false},
        // Wildcard: complete left-most label, exactly one label.
        DnsCase{"*.example.com", "a.example.com", true},
        DnsCase{"*.EXAMPLE.com", "Api.example.COM", true},
        DnsCase{"*.example.com", "example.com", false},
        DnsCase{"*.example.com", "a.b.example.com", false},
        DnsCase{"*.example.com", ".example.com", false},
        DnsCase{"*.example.com", "a.example.org", false},
        // Partial or misplaced wildcards never match.
        DnsCase{"a*.example.com", "ab.example.com", false},
        DnsCase{"*a.example.com", "ba.example.com", false},
        DnsCase{"a.*.example.com", "a.b.example.com", false},
        DnsCase{"*.*.example.com", "a.b.example.com", false}, DnsCase{"*", "localhost", false},
        // A wildcard needs at least two labels after it.
        DnsCase{"*.com", "example.com", false},
        // Reference-side oddities.
        DnsCase{"a..example.com", "a..example.com", false}, DnsCase{"", "", false},
        DnsCase{"*.appmeshworkshop.hosted.local", "crystal.appmeshworkshop.hosted.local", true}));

TEST(SansMatch, EmptyRulesAcceptAnything) { EXPECT_TRUE(sansMatch(PeerSans{}, {})); }

TEST(SansMatch, DnsRuleAgainstWildcardSan) {
  PeerSans sans{{"*.example.test"}, {}};
  std::vector<SanRule> ok{{SanRule::Kind::kDns, "api.example.test"}};
  std::vector<SanRule> deep{{SanRule::Kind::kDns, "a.api.example.test"}};
  EXPECT_TRUE(sansMatch(sans, ok));
  EXPECT_FALSE(sansMatch(sans, deep)) << "a wildcard SAN must match exactly one label";
}

TEST(SansMatch, RuleIsANameNotAPattern) {
  std::vector<SanRule> wildcard_rule{{SanRule::Kind::kDns, "*.example.test"}};
  EXPECT_FALSE(sansMatch(PeerSans{{"api.example.test"}, {}}, wildcard_rule));
  EXPECT_TRUE(sansMatch(PeerSans{{"*.example.test"}, {}}, wildcard_rule));
}

TEST(SansMatch, UriIsExactAndKindsDoNotMix) {
  PeerSans sans{{"spiffe.example.test"}, {"spiffe://weft.test/ns/default/sa/web"}};
  EXPECT_TRUE(sansMatch(
      sans, std::vector<SanRule>{{SanRule::Kind::kUri, "spiffe://weft.test/ns/default/sa/web"}}));
  EXPECT_FALSE(sansMatch(
      sans, std::vector<SanRule>{{SanRule::Kind::kUri, "spiffe://weft.test/ns/default/sa/WEB"}}))
      << "URI rules are compared byte for byte";
  EXPECT_FALSE(sansMatch(
      sans, std::vector<SanRule>{{SanRule::Kind::kUri, "spiffe://weft.test/ns/default/sa"}}));
  EXPECT_FALSE(sansMatch(
      sans, std::vector<SanRule>{{SanRule::Kind::kDns, "spiffe://weft.test/ns/default/sa/web"}}))
      << "a DNS rule must not match a URI SAN";
  EXPECT_FALSE(sansMatch(sans, std::vector<SanRule>{{SanRule::Kind::kUri, "spiffe.example.test"}}))
      << "a URI rule must not match a DNS SAN";
}

TEST(SansMatch, AnyRuleSuffices) {
  PeerSans sans{{"b.example.test"}, {"spiffe://x/y"}};
  std::vector<SanRule> rules{{SanRule::Kind::kDns, "a.example.test"},
                             {SanRule::Kind::kUri, "spiffe://x/y"}};
  EXPECT_TRUE(sansMatch(sans, rules));
}

TEST(SanRulesFrom, ConvertsAndRejectsEmptyEntries) {
  v1::TlsValidation v;
  v.add_match_subject_alt_names()->set_dns("a.example.test");
  v.add_match_subject_alt_names()->set_uri("spiffe://x/y");
  auto rules = sanRulesFrom(v.match_subject_alt_names(), "listener tls");
  ASSERT_TRUE(rules) << rules.error().message;
  ASSERT_EQ(rules->size(), 2u);
  EXPECT_EQ((*rules)[0].kind, SanRule::Kind::kDns);
  EXPECT_EQ((*rules)[0].value, "a.example.test");
  EXPECT_EQ((*rules)[1].kind, SanRule::Kind::kUri);

  v.add_match_subject_alt_names();  // neither dns nor uri
  auto bad = sanRulesFrom(v.match_subject_alt_names(), "listener tls");
  ASSERT_FALSE(bad) << "expected an error for an empty matcher";
  EXPECT_EQ(bad.error().message,
            "listener tls: match_subject_alt_names[2]: set a non-empty dns or uri");
}

TEST(SansOf, ReadsDnsAndUriInOrderAndSkipsOthers) {
  testing::TempDir dir;
  testing::TestPki pki(dir);
  testing::Issued ca = pki.makeCa("ca", "test ca");
  testing::LeafSpec spec;
  spec.dns = {"*.example.test", "b.example.test"};
  spec.uri = {"spiffe://weft.test/a"};
  spec.ip = {"127.0.0.1"};
  testing::Issued leaf = pki.issue(ca, "leaf", spec);
  PeerSans sans = sansOf(leaf.cert.get());
  EXPECT_EQ(sans.dns, (std::vector<std::string>{"*.example.test", "b.example.test"}));
  EXPECT_EQ(sans.uri, (std::vector<std::string>{"spiffe://weft.test/a"}));
  EXPECT_EQ(describeSans(sans), "DNS:*.example.test, DNS:b.example.test, URI:spiffe://weft.test/a");
  EXPECT_EQ(describeSans(sansOf(ca.cert.get())), "none");
}

TEST(PeerAuthorized, EmptyRulesAndMissingIdentitiesAllowNobody) {
  std::vector<SanRule> allowed = {{SanRule::Kind::kUri, "spiffe://m/virtualNode/a"},
                                  {SanRule::Kind::kUri, "spiffe://m/virtualGateway/g"}};
  EXPECT_TRUE(peerAuthorized("spiffe://m/virtualNode/a", "a.m.local", allowed));
  EXPECT_TRUE(peerAuthorized("spiffe://m/virtualGateway/g", "", allowed));
  EXPECT_FALSE(peerAuthorized("spiffe://m/virtualNode/b", "a.m.local", allowed))
      << "another identity is refused";
  EXPECT_FALSE(peerAuthorized("spiffe://m/virtualNode/a/x", "", allowed)) << "URIs match exactly";
  EXPECT_FALSE(peerAuthorized("", "", allowed)) << "no verified certificate: refused";
  EXPECT_FALSE(peerAuthorized("spiffe://m/virtualNode/a", "", {}))
      << "an empty allow list allows nobody (sansMatch would allow everybody)";
  std::vector<SanRule> dns = {{SanRule::Kind::kDns, "a.m.local"}};
  EXPECT_TRUE(peerAuthorized("", "A.m.local", dns));
}

}  // namespace
}  // namespace weft::net::tls
