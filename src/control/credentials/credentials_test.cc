#include "control/credentials/credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "control/store/sqlite_store.h"

namespace weft::control::credentials {
namespace {

namespace fs = std::filesystem;

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-cred-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteStore::open(dir_ + "/weft.db");
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    creds_ = std::make_unique<Credentials>(*store_, time_, "123456789012");
  }
  void TearDown() override { fs::remove_all(dir_); }

  ApiRequest req(std::string method, std::string path, std::string body = "") {
    ApiRequest r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.body = std::move(body);
    return r;
  }

  std::string dir_;
  SimTimeSource time_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Credentials> creds_;
};

TEST_F(CredentialsTest, CreateFindListRemove) {
  auto a = creds_->create("first");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->access_key_id.size(), 20u);
  EXPECT_EQ(a->access_key_id.substr(0, 4), "WKIA");
  EXPECT_EQ(a->secret_access_key.size(), 40u);
  EXPECT_EQ(a->account_id, "123456789012");
  EXPECT_EQ(a->created_at, 1'800'000'000);
  auto b = creds_->create("second");
  ASSERT_TRUE(b);
  EXPECT_NE(a->access_key_id, b->access_key_id);
  EXPECT_NE(a->secret_access_key, b->secret_access_key);

  auto found = creds_->find(a->access_key_id);
  ASSERT_TRUE(found && found->has_value());
  EXPECT_EQ((*found)->secret_access_key, a->secret_access_key);
  EXPECT_EQ((*found)->description, "first");
  auto unknown = creds_->find("WKIANOSUCHKEY");
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->has_value());
  auto odd = creds_->find("../../etc");
  ASSERT_TRUE(odd);
  EXPECT_FALSE(odd->has_value());

  auto all = creds_->list();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);

  ASSERT_TRUE(creds_->remove(a->access_key_id));
  auto again = creds_->remove(a->access_key_id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, kNotFound);
  auto last = creds_->remove(b->access_key_id);
  ASSERT_FALSE(last) << "deleting the last key must be refused";
  EXPECT_EQ(last.error().code, kLastKey);
  EXPECT_TRUE(creds_->find(b->access_key_id)->has_value());
}

TEST_F(CredentialsTest, EnsureAdminKeyOnlyOnFirstStart) {
  std::string written;
  auto first = creds_->ensureAdminKey([&](const AccessKey& k) -> Status {
    written = k.access_key_id;
    return {};
  });
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ(written, (*first)->access_key_id);
  auto second = creds_->ensureAdminKey([&](const AccessKey&) -> Status {
    ADD_FAILURE() << "the callback must not run when keys exist";
    return {};
  });
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->has_value());
}

TEST_F(CredentialsTest, FailedFileWriteStoresNoKey) {
  auto r =
      creds_->ensureAdminKey([](const AccessKey&) -> Status { return makeError("disk full"); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "disk full");
  EXPECT_TRUE(creds_->list()->empty()) << "no key may be stored that nobody was given";
}

TEST_F(CredentialsTest, Api) {
  auto created = creds_->handle(req("POST", "/weft/v1/credentials", R"({"description":"ci"})"));
  ASSERT_EQ(created.status, 200) << created.body;
  EXPECT_NE(created.body.find("\"secretAccessKey\""), std::string::npos) << created.body;
  EXPECT_NE(created.body.find("\"description\": \"ci\""), std::string::npos) << created.body;
  auto empty_body = creds_->handle(req("POST", "/weft/v1/credentials"));
  ASSERT_EQ(empty_body.status, 200) << empty_body.body;

  auto listed = creds_->handle(req("GET", "/weft/v1/credentials"));
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(listed.body.find("secretAccessKey"), std::string::npos)
      << "list must never show secrets: " << listed.body;
  auto keys = creds_->list();
  ASSERT_EQ(keys->size(), 2u);
  for (const auto& k : *keys) {
    EXPECT_NE(listed.body.find(k.access_key_id), std::string::npos) << listed.body;
    EXPECT_EQ(listed.body.find(k.secret_access_key), std::string::npos) << listed.body;
  }

  auto bad = creds_->handle(req("POST", "/weft/v1/credentials", R"({"role":"x"})"));
  EXPECT_EQ(bad.status, 400) << bad.body;
  auto notjson = creds_->handle(req("POST", "/weft/v1/credentials", "{"));
  EXPECT_EQ(notjson.status, 400) << notjson.body;

  auto del = creds_->handle(req("DELETE", "/weft/v1/credentials/" + (*keys)[0].access_key_id));
  EXPECT_EQ(del.status, 200) << del.body;
  auto missing = creds_->handle(req("DELETE", "/weft/v1/credentials/WKIAMISSING"));
  EXPECT_EQ(missing.status, 404) << missing.body;
  auto last = creds_->handle(req("DELETE", "/weft/v1/credentials/" + (*keys)[1].access_key_id));
  EXPECT_EQ(last.status, 409) << last.body;
  auto wrong_method = creds_->handle(req("PUT", "/weft/v1/credentials"));
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_TRUE(Credentials::handles("/weft/v1/credentials"));
  EXPECT_TRUE(Credentials::handles("/weft/v1/credentials/X"));
  EXPECT_FALSE(Credentials::handles("/weft/v1/credentialsX"));
  EXPECT_FALSE(Credentials::handles("/weft/v1/stacks"));
}

// Review item 2: the create body is a small fixed shape, parsed without google.protobuf.Struct:
// deep nesting and large bodies are refused at once, wrong types and members too.
TEST_F(CredentialsTest, CreateBodyIsSmallAndFlat) {
  auto start = std::chrono::steady_clock::now();
  std::string deep = "{\"description\":" + std::string(10000, '[') + std::string(10000, ']') + "}";
  auto r = creds_->handle(req("POST", "/weft/v1/credentials", deep));
  EXPECT_EQ(r.status, 400) << r.body;
  std::string nested = "{\"description\":" + std::string(100, '[') + std::string(100, ']') + "}";
  auto n = creds_->handle(req("POST", "/weft/v1/credentials", nested));
  EXPECT_EQ(n.status, 400) << n.body;
  EXPECT_NE(n.body.find("nested more than 64"), std::string::npos) << n.body;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2))
      << "refusing nested bodies must be cheap";
  auto big = creds_->handle(
      req("POST", "/weft/v1/credentials", "{\"description\":\"" + std::string(2000, 'x') + "\"}"));
  EXPECT_EQ(big.status, 400) << big.body;
  EXPECT_NE(big.body.find("at most 1024 bytes"), std::string::npos) << big.body;
  auto number = creds_->handle(req("POST", "/weft/v1/credentials", R"({"description":5})"));
  EXPECT_EQ(number.status, 400) << number.body;
  auto ok = creds_->handle(req("POST", "/weft/v1/credentials", R"( {"description":"ci"} )"));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_NE(ok.body.find("\"description\": \"ci\""), std::string::npos) << ok.body;
}

// A store that fails every call with a message that names internals.
class BrokenStore : public Store {
 public:
  Result<std::optional<KeyValue>> get(std::string_view) override { return fail(); }
  Result<std::vector<KeyValue>> list(std::string_view, std::string_view, size_t) override {
    return fail();
  }
  Result<int64_t> commit(const std::vector<StoreOp>&) override { return fail(); }

 private:
  static Unexpected<Error> fail() {
    return makeError("sqlite /srv/secret/weft.db: disk I/O error on weft/credentials/WKIA1");
  }
};

// Review item 9: store errors are logged; the answer names only the request id.
TEST_F(CredentialsTest, StoreErrorsDoNotLeak) {
  BrokenStore broken;
  Credentials creds(broken, time_, "123456789012");
  for (const char* method : {"GET", "POST"}) {
    ApiRequest r = req(method, "/weft/v1/credentials", "{}");
    r.request_id = "rid-42";
    auto resp = creds.handle(r);
    EXPECT_EQ(resp.status, 500) << method << ": " << resp.body;
    EXPECT_EQ(resp.body.find("/srv/secret"), std::string::npos) << method << ": " << resp.body;
    EXPECT_EQ(resp.body.find("WKIA1"), std::string::npos) << method << ": " << resp.body;
    EXPECT_NE(resp.body.find("rid-42"), std::string::npos) << method << ": " << resp.body;
  }
}

TEST_F(CredentialsTest, SharedCredentialsFile) {
  AccessKey k{"WKIAEXAMPLE", "secret/with+chars", "123456789012", "", 0};
  std::string path = dir_ + "/admin-credentials";
  ASSERT_TRUE(writeSharedCredentialsFile(path, "weft", k));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the credentials file must be private";
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  EXPECT_NE(text.find("[weft]\naws_access_key_id = WKIAEXAMPLE\n"
                      "aws_secret_access_key = secret/with+chars\n"),
            std::string::npos)
      << text;
  ASSERT_TRUE(writeAwsConfigFile(dir_ + "/aws-config", "weft", "eu-west-1"));
  std::ifstream cin(dir_ + "/aws-config");
  std::stringstream cs;
  cs << cin.rdbuf();
  EXPECT_NE(cs.str().find("[profile weft]\nregion = eu-west-1\n"), std::string::npos) << cs.str();
}

}  // namespace
}  // namespace weft::control::credentials
