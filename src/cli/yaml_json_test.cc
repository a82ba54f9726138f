#include "cli/yaml_json.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

namespace weft::cli {
namespace {

Value one(std::string_view text) {
  auto docs = parseDocuments(text);
  EXPECT_TRUE(docs) << "parse of: " << text << " failed: " << (docs ? "" : docs.error().message);
  if (!docs || docs->size() != 1) {
    ADD_FAILURE() << "expected one document from: " << text;
    return Value();
  }
  return (*docs)[0];
}

std::string json(std::string_view yaml) { return toJson(one(yaml)); }

TEST(YamlJsonTest, PlainScalarsFollowTheCoreSchema) {
  EXPECT_EQ(json("a: 8080"), R"({"a":8080})");
  EXPECT_EQ(json("a: -12"), R"({"a":-12})");
  EXPECT_EQ(json("a: +12"), R"({"a":12})");
  EXPECT_EQ(json("a: 007"), R"({"a":7})");
  EXPECT_EQ(json("a: 0x1F"), R"({"a":31})");
  EXPECT_EQ(json("a: 0o17"), R"({"a":15})");
  EXPECT_EQ(json("a: 1.5"), R"({"a":1.5})");
  EXPECT_EQ(json("a: .5"), R"({"a":0.5})");
  EXPECT_EQ(json("a: 1."), R"({"a":1})");
  EXPECT_EQ(json("a: 1e3"), R"({"a":1e3})");
  EXPECT_EQ(json("a: true"), R"({"a":true})");
  EXPECT_EQ(json("a: False"), R"({"a":false})");
  EXPECT_EQ(json("a: ~"), R"({"a":null})");
  EXPECT_EQ(json("a: null"), R"({"a":null})");
  EXPECT_EQ(json("a:"), R"({"a":null})");
  // Not numbers/booleans in the core schema: strings.
  EXPECT_EQ(json("a: yes"), R"({"a":"yes"})");
  EXPECT_EQ(json("a: .inf"), R"({"a":".inf"})");
  EXPECT_EQ(json("a: 1.2.3"), R"({"a":"1.2.3"})");
  EXPECT_EQ(json("a: 10.0.0.1"), R"({"a":"10.0.0.1"})");
  EXPECT_EQ(json("a: 12ms"), R"({"a":"12ms"})");
}

TEST(YamlJsonTest, QuotedScalarsStayStrings) {
  EXPECT_EQ(json("a: \"8080\""), R"({"a":"8080"})");
  EXPECT_EQ(json("a: 'true'"), R"({"a":"true"})");
  EXPECT_EQ(json("a: 'null'"), R"({"a":"null"})");
  EXPECT_EQ(json("a: \"\""), R"({"a":""})");
  EXPECT_EQ(json("a: !!str 5"), R"({"a":"5"})");
}

TEST(YamlJsonTest, ShortFormTagsBecomeLongForm) {
  EXPECT_EQ(json("a: !Ref X"), R"({"a":{"Ref":"X"}})");
  EXPECT_EQ(json("a: !GetAtt R.Arn"), R"({"a":{"Fn::GetAtt":["R","Arn"]}})");
  EXPECT_EQ(json("a: !GetAtt [R, Arn]"), R"({"a":{"Fn::GetAtt":["R","Arn"]}})");
  EXPECT_EQ(json("a: !Sub '${X}-y'"), R"({"a":{"Fn::Sub":"${X}-y"}})");
  EXPECT_EQ(json("a: !Sub ['${X}', {X: 1}]"), R"({"a":{"Fn::Sub":["${X}",{"X":1}]}})");
  EXPECT_EQ(json("a: !Join [',', [!Ref A, b]]"), R"({"a":{"Fn::Join":[",",[{"Ref":"A"},"b"]]}})");
  EXPECT_EQ(json("a: !ImportValue n"), R"({"a":{"Fn::ImportValue":"n"}})");
  EXPECT_EQ(json("a: !Equals [!Ref E, prod]"), R"({"a":{"Fn::Equals":[{"Ref":"E"},"prod"]}})");
  EXPECT_EQ(json("a: !Condition IsProd"), R"({"a":{"Condition":"IsProd"}})");
  // A tagged scalar is a string even when it looks like a number.
  EXPECT_EQ(json("a: !Ref 5"), R"({"a":{"Ref":"5"}})");
}

TEST(YamlJsonTest, BadInputAnswersErrorsWithPositions) {
  auto unknown = parseDocuments("a: !Bogus x");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "line 1 column 4: unknown tag !Bogus");
  auto getatt = parseDocuments("a: !GetAtt NoDot");
  ASSERT_FALSE(getatt);
  EXPECT_NE(getatt.error().message.find("Resource.Attribute"), std::string::npos)
      << getatt.error().message;
  auto syntax = parseDocuments("a: [1, 2\nb: 3\n");
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.error().message.rfind("YAML line", 0), 0u) << syntax.error().message;
  auto key = parseDocuments("? [a]\n: 1\n");
  ASSERT_FALSE(key);
  EXPECT_NE(key.error().message.find("mapping key must be a scalar"), std::string::npos)
      << key.error().message;
}

TEST(YamlJsonTest, DeepNestingAndAliasBombsAreRejected) {
  std::string deep(500, '[');
  deep += std::string(500, ']');
  EXPECT_FALSE(parseDocuments(deep));
  std::string deep_yaml;
  for (int i = 0; i < 300; ++i) deep_yaml += std::string(static_cast<size_t>(i), ' ') + "a:\n";
  EXPECT_FALSE(parseDocuments(deep_yaml));
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'k'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) bomb += std::string(i ? ", *" : "*") + prev;
    bomb += "]\n";
    prev = c;
  }
  auto r = parseDocuments(bomb);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("too many nodes"), std::string::npos) << r.error().message;
}

TEST(YamlJsonTest, InputsThatHangYamlCppLoadAllAreErrors) {
  // yaml-cpp 0.7's LoadAll() never returns on these (jbeder/yaml-cpp#1040).
  for (std::string_view text : {"#\n\"\",\n:", ",\n:", "[a]\n,\n:", "\"a\",\n: b", ","}) {
    auto r = parseDocuments(text);
    EXPECT_FALSE(r) << "accepted: " << text;
  }
  auto ok = parseDocuments("---\n---\n---\na: 1\n");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->size(), 1u) << "empty documents are still fine";
}

TEST(YamlJsonTest, SeveralDocumentsAndJson) {
  auto docs = parseDocuments("---\na: 1\n---\n---\nb: 2\n");
  ASSERT_TRUE(docs);
  ASSERT_EQ(docs->size(), 2u) << "empty documents are dropped";
  EXPECT_EQ(toJson((*docs)[1]), R"({"b":2})");
  // JSON keeps exact numbers and strings.
  EXPECT_EQ(json(R"({"n": 12345678901234567890, "s": "\u00e9\n", "f": 1.50})"),
            "{\"n\":12345678901234567890,\"s\":\"\xC3\xA9\\n\",\"f\":1.50}");
}

TEST(YamlJsonTest, YamlToJsonOfANode) {
  YAML::Node n = YAML::Load("x: [1, '2', true, ~]");
  auto j = yamlToJson(n);
  ASSERT_TRUE(j);
  EXPECT_EQ(*j, R"({"x":[1,"2",true,null]})");
}

TEST(YamlJsonTest, ToYamlReadsBackAsTheSameValue) {
  Value v = one(R"({"name": "a", "n": 8080, "t": true, "z": null, "s": "8080", "e": "",
                    "list": [{"k": "true", "v": [1, 2]}, "x: y", "- z"], "empty": {}, "arr": [],
                    "arn": "arn:aws:appmesh:us-west-2:000000000000:mesh/m", "q": "it's \"q\""})");
  v.set(std::string(1500, 'k'), Value::string("long keys need the explicit form"));
  std::string yaml = toYaml(v);
  Value back = one(yaml);
  EXPECT_EQ(back, v) << "YAML was:\n" << yaml << "\nread back as " << toJson(back);
}

TEST(JsonTest, ParserRejectsInvalidJson) {
  for (std::string_view bad : {"{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\\ud800\"",
                               "tru", "{} x", "\"a\nb\""}) {
    EXPECT_FALSE(parseJson(bad)) << "accepted: " << bad;
  }
  auto err = parseJson("{\n  \"a\": ?}");
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().message, "JSON line 2 column 8: unexpected character '?'");
}

TEST(JsonTest, EqualityIgnoresKeyOrderAndNumberSpelling) {
  EXPECT_EQ(*parseJson(R"({"a":1,"b":[1.0,2]})"), *parseJson(R"({"b":[1,2e0],"a":1})"));
  EXPECT_FALSE(*parseJson(R"({"a":1})") == *parseJson(R"({"a":"1"})"));
  EXPECT_FALSE(*parseJson(R"([1,2])") == *parseJson(R"([2,1])"));
}

}  // namespace
}  // namespace weft::cli
