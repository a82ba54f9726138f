// Tests of the small shared helpers: hex, percent-decoding, the JSON depth pre-scan, quoted()
// writeFileAtomically(), trimSpace/splitList and runCommand().
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/file_util.h"
#include "common/hex.h"
#include "common/json_limits.h"
#include "common/percent_encoding.h"
#include "common/subprocess.h"
#include "common/text.h"

namespace weft {
namespace {

TEST(HexTest, RoundTrip) {
  EXPECT_EQ(hexEncode(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(*hexDecode("00fF10"), std::string("\x00\xff\x10", 3));
  EXPECT_FALSE(hexDecode("abc"));
  EXPECT_FALSE(hexDecode("zz"));
}

TEST(PercentDecodeTest, StrictDecoding) {
  EXPECT_EQ(*percentDecode("a%2Fb%20c+d"), "a/b c+d");
  EXPECT_EQ(*percentDecode("%41"), "A");
  EXPECT_FALSE(percentDecode("a%"));
  EXPECT_FALSE(percentDecode("a%2"));
  EXPECT_FALSE(percentDecode("a%g0"));
  EXPECT_EQ(*percentDecode("%00"), std::string(1, '\0'));
}

TEST(JsonDepthTest, CountsNestingOutsideStrings) {
  EXPECT_TRUE(checkJsonDepth("{}"));
  EXPECT_TRUE(checkJsonDepth(std::string(64, '[') + std::string(64, ']')));
  auto deep = checkJsonDepth(std::string(65, '[') + std::string(65, ']'));
  ASSERT_FALSE(deep);
  EXPECT_NE(deep.error().message.find("nested more than 64"), std::string::npos)
      << deep.error().message;
  // Brackets in strings, also after an escaped quote, do not count.
  EXPECT_TRUE(checkJsonDepth("{\"a\": \"\\\"" + std::string(100, '[') + "\"}", 2));
  EXPECT_FALSE(checkJsonDepth("{\"a\": [[1]]}", 2));
  EXPECT_TRUE(checkJsonDepth(std::string(1 << 20, '['), 1 << 21)) << "linear, no recursion";
}

TEST(QuotedTest, CutsLongValues) {
  EXPECT_EQ(quoted("ab"), "\"ab\"");
  EXPECT_EQ(quoted("abcdef", 3), "\"abc...\"");
}

TEST(WriteFileAtomicallyTest, WritesWithTheModeGiven) {
  char dir_template[] = "/tmp/weft-file-util-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string path = std::string(dir_template) + "/f";
  mode_t old = ::umask(0);
  auto st = writeFileAtomically(path, "one\n", 0644);
  ASSERT_TRUE(st) << st.error().message;
  st = writeFileAtomically(path, "two\n", 0600);  // replacing narrows the mode too
  ::umask(old);
  ASSERT_TRUE(st) << st.error().message;
  struct stat sb {};
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u)
      << "expected mode 0600, got " << std::oct << (sb.st_mode & 0777);
  auto text = readFile(path);
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_EQ(*text, "two\n");
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0) << "no temporary file left";
  ::unlink(path.c_str());
  auto dir = readFile(dir_template);
  ASSERT_FALSE(dir) << "a directory is not a file";
  EXPECT_EQ(dir.error().code, EISDIR);
  ::rmdir(dir_template);
  EXPECT_FALSE(writeFileAtomically("/nonexistent-dir/x", "x", 0600));
  auto missing = readFile("/nonexistent-dir/x");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_EQ(missing.error().message, "cannot read /nonexistent-dir/x: No such file or directory");
}

}  // namespace
}  // namespace weft

namespace weft {
namespace {

TEST(TextTest, TrimSpaceAndSplitList) {
  EXPECT_EQ(trimSpace("  a b\t\r\n"), "a b");
  EXPECT_EQ(trimSpace(" \n"), "");
  EXPECT_EQ(splitList(" a, b,,c ,"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(splitList("").empty());
}

TEST(SubprocessTest, RunsByArgvCapturesOutputAndExitCode) {
  auto r = runCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  EXPECT_FALSE(r->timed_out);

  auto literal = runCommand({"echo", "a b; $(x)"});
  ASSERT_TRUE(literal);
  EXPECT_EQ(literal->out, "a b; $(x)\n") << "arguments reach the program as they are, no shell";

  auto missing = runCommand({"weft-no-such-program"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("not found"), std::string::npos)
      << missing.error().message;

  auto slow = runCommand({"sleep", "5"}, std::chrono::milliseconds(100));
  ASSERT_TRUE(slow);
  EXPECT_TRUE(slow->timed_out);
  EXPECT_EQ(slow->exit_code, 128 + 9) << "killed with SIGKILL";
  EXPECT_EQ(formatArgv({"echo", "a b", "", "it's"}), "echo 'a b' '' 'it'\\''s'");
}

}  // namespace
}  // namespace weft
