#include "control/push/tokens.h"

#include <gtest/gtest.h>

#include <regex>

#include "control/store/memory_store.h"

namespace weft::control::push {
namespace {

constexpr std::string_view kNode = "mesh/m1/virtualNode/n1";
constexpr std::string_view kOther = "mesh/m1/virtualNode/n2";

class TokensTest : public ::testing::Test {
 protected:
  MemoryStore store;
  SimTimeSource time;
  Tokens tokens{store, time};

  std::string mustCreate(std::string_view resource, int64_t ttl = 0) {
    auto t = tokens.create(resource, ttl);
    EXPECT_TRUE(t) << "create failed: " << (t ? "" : t.error().message);
    return t ? *t : std::string();
  }
  // The secret part of a token: what no message may ever contain.
  static std::string secretOf(const std::string& token) { return token.substr(4 + 16 + 1); }
};

TEST_F(TokensTest, CreateAnswersAWellFormedTokenAndStoresOnlyItsHash) {
  std::string token = mustCreate(kNode);
  EXPECT_TRUE(std::regex_match(token, std::regex("wft_[A-Za-z0-9]{16}_[A-Za-z0-9]{43}")))
      << "expected wft_<16>_<43>, got " << token;
  auto all = store.list("", "", 0);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u) << "expected one stored record";
  EXPECT_EQ((*all)[0].key, "push/tokens/" + Tokens::idOf(token));
  EXPECT_EQ((*all)[0].value.find(secretOf(token)), std::string::npos)
      << "the stored record holds the secret: " << (*all)[0].value;
  EXPECT_TRUE(tokens.verify(token, kNode));
}

TEST_F(TokensTest, ListShowsTokensWithoutSecrets) {
  std::string a = mustCreate(kNode, 3600);
  std::string b = mustCreate(kOther);
  auto list = tokens.list();
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  int64_t now = 1'800'000'000;
  for (const TokenInfo& t : *list) {
    EXPECT_EQ(t.created_at, now);
    EXPECT_FALSE(t.revoked);
    if (t.id == Tokens::idOf(a)) {
      EXPECT_EQ(t.resource, kNode);
      EXPECT_EQ(t.expires_at, now + 3600);
    } else {
      EXPECT_EQ(t.id, Tokens::idOf(b));
      EXPECT_EQ(t.resource, kOther);
      EXPECT_EQ(t.expires_at, 0);
    }
  }
}

TEST_F(TokensTest, ExpiredTokenIsRefused) {
  std::string token = mustCreate(kNode, 60);
  time.advance(std::chrono::seconds(59));
  EXPECT_TRUE(tokens.verify(token, kNode)) << "expected valid 59 s into a 60 s ttl";
  time.advance(std::chrono::seconds(1));
  auto st = tokens.verify(token, kNode);
  ASSERT_FALSE(st) << "expected expiry at 60 s";
  EXPECT_EQ(st.error().code, kTokenInvalid);
  EXPECT_NE(st.error().message.find("expired"), std::string::npos) << st.error().message;
  EXPECT_EQ(st.error().message.find(secretOf(token)), std::string::npos);
}

TEST_F(TokensTest, RevokedTokenIsRefusedByIdOrWholeToken) {
  std::string a = mustCreate(kNode);
  std::string b = mustCreate(kNode);
  ASSERT_TRUE(tokens.revoke(Tokens::idOf(a)));
  ASSERT_TRUE(tokens.revoke(b));
  for (const std::string& t : {a, b}) {
    auto st = tokens.verify(t, kNode);
    ASSERT_FALSE(st) << "expected a revoked token to be refused";
    EXPECT_EQ(st.error().code, kTokenInvalid);
    EXPECT_NE(st.error().message.find("revoked"), std::string::npos) << st.error().message;
    EXPECT_EQ(st.error().message.find(secretOf(t)), std::string::npos) << st.error().message;
  }
  EXPECT_TRUE(tokens.revoke(Tokens::idOf(a))) << "revoking twice is not an error";
  auto list = tokens.list();
  ASSERT_TRUE(list);
  for (const TokenInfo& t : *list) EXPECT_TRUE(t.revoked) << t.id;
}

TEST_F(TokensTest, RevokeUnknownIs404) {
  auto st = tokens.revoke("AAAAAAAAAAAAAAAA");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, 404);
  st = tokens.revoke("not-an-id");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, 404);
}

TEST_F(TokensTest, WrongResourceIsPermissionDeniedAndNamesBoth) {
  std::string token = mustCreate(kNode);
  auto st = tokens.verify(token, kOther);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, kTokenWrongResource);
  EXPECT_NE(st.error().message.find(std::string(kNode)), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find(std::string(kOther)), std::string::npos) << st.error().message;
  EXPECT_EQ(st.error().message.find(secretOf(token)), std::string::npos);
}

TEST_F(TokensTest, GarbageAndWrongSecretAreInvalid) {
  std::string token = mustCreate(kNode);
  std::string wrong = token;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  const std::string cases[] = {"",
                               "garbage",
                               "wft_",
                               token + "x",
                               token.substr(1),
                               wrong,
                               "wft_AAAAAAAAAAAAAAAA_" + secretOf(token)};
  for (const std::string& c : cases) {
    auto st = tokens.verify(c, kNode);
    ASSERT_FALSE(st) << "expected '" << c << "' to be refused";
    EXPECT_EQ(st.error().code, kTokenInvalid) << c << ": " << st.error().message;
    EXPECT_NE(st.error().message.find("weft token create"), std::string::npos)
        << "the message should say what to do: " << st.error().message;
    EXPECT_EQ(st.error().message.find(secretOf(token)), std::string::npos) << st.error().message;
  }
}

TEST_F(TokensTest, CreateRefusesBadInput) {
  EXPECT_FALSE(tokens.create("", 0));
  EXPECT_FALSE(tokens.create(kNode, -1));
}

}  // namespace
}  // namespace weft::control::push
