#include "control/ca/kek.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace weft::control::ca {
namespace {

std::string tempDir() {
  char tmpl[] = "/tmp/weft-kek-test-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "";
}

TEST(KekTest, SealOpensOnlyWithTheSameKeyAndAad) {
  auto k = Kek::fromBytes(std::string(32, 'k'));
  ASSERT_TRUE(k);
  std::string sealed = k->seal("-----BEGIN PRIVATE KEY-----secret", "arn:1");
  EXPECT_EQ(sealed.rfind("gcm1:", 0), 0u);
  EXPECT_EQ(sealed.find("PRIVATE KEY"), std::string::npos) << sealed;
  auto opened = k->open(sealed, "arn:1");
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ(*opened, "-----BEGIN PRIVATE KEY-----secret");
  EXPECT_FALSE(k->open(sealed, "arn:2")) << "another record's AAD must not open it";
  auto other = Kek::fromBytes(std::string(32, 'x'));
  EXPECT_FALSE(other->open(sealed, "arn:1")) << "another KEK must not open it";
  std::string tampered = sealed;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(k->open(tampered, "arn:1"));
  EXPECT_NE(k->seal("x", "a"), k->seal("x", "a")) << "every seal has a fresh nonce";
}

TEST(KekTest, TextForms) {
  EXPECT_TRUE(Kek::fromText(std::string(64, 'a') + "\n", "t"));
  EXPECT_TRUE(Kek::fromText("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=", "t"));
  auto bad = Kek::fromText("short", "WEFT_CA_KEY");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("WEFT_CA_KEY"), std::string::npos);
  auto hex = Kek::fromText(std::string(64, 'a'), "t");
  auto raw = Kek::fromBytes(std::string(32, '\xaa'));
  EXPECT_TRUE(raw->open(hex->seal("p", "a"), "a")) << "hex and raw forms are the same key";
}

TEST(KekTest, DefaultFileIsCreated0600AndReused) {
  std::string dir = tempDir();
  auto first = Kek::load("", nullptr, dir);
  ASSERT_TRUE(first) << first.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/ca-kek").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto second = Kek::load("", "", dir);
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->open(first->seal("p", "a"), "a")) << "the second load reads the same key";
  // The environment wins over the file; --ca-key-file over both.
  auto env = Kek::load("", std::string(64, 'b').c_str(), dir);
  ASSERT_TRUE(env);
  EXPECT_FALSE(env->open(first->seal("p", "a"), "a"));
  std::string key_file = dir + "/operator.key";
  std::ofstream(key_file) << std::string(64, 'c') << "\n";
  auto file = Kek::load(key_file, std::string(64, 'b').c_str(), dir);
  ASSERT_TRUE(file);
  EXPECT_TRUE(Kek::fromText(std::string(64, 'c'), "t")->open(file->seal("p", "a"), "a"));
  EXPECT_FALSE(Kek::load(dir + "/missing", nullptr, dir));
  ::unlink(key_file.c_str());
  ::unlink((dir + "/ca-kek").c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace weft::control::ca
