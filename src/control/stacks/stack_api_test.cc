#include "control/stacks/stack_api.h"

#include <gtest/gtest.h>

#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::stacks {
namespace {

class StackApiTest : public ::testing::Test {
 protected:
  ApiResponse call(std::string method, std::string path, std::string body = "") {
    ApiRequest r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.body = std::move(body);
    return api_.handle(r);
  }
  ApiResponse put(const std::string& name, const std::string& body) {
    return call("PUT", "/weft/v1/stacks/" + name, body);
  }
  static Value json(const ApiResponse& r) {
    auto v = parseJson(r.body);
    EXPECT_TRUE(v) << "not JSON: " << r.body;
    return v ? *v : Value();
  }
  static std::string errorType(const ApiResponse& r) {
    for (const auto& [k, v] : r.headers)
      if (k == "x-amzn-ErrorType" || k == "x-amzn-errortype") return v.substr(0, v.find(':'));
    return "(no x-amzn-ErrorType)";
  }
  static std::string message(const ApiResponse& r) {
    Value v = json(r);
    const Value* m = v.find("message");
    return m ? m->text() : r.body;
  }

  MemoryStore store_;
  SimTimeSource time_;
  StackApi api_{store_, time_};
};

TEST_F(StackApiTest, Handles) {
  EXPECT_TRUE(StackApi::handles("/weft/v1/stacks"));
  EXPECT_TRUE(StackApi::handles("/weft/v1/stacks/a"));
  EXPECT_TRUE(StackApi::handles("/weft/v1/exports"));
  EXPECT_FALSE(StackApi::handles("/weft/v1/stacksx"));
  EXPECT_FALSE(StackApi::handles("/weft/v1/credentials"));
}

TEST_F(StackApiTest, PutGetListDelete) {
  auto r = put("net", R"({"status": "CREATE_COMPLETE", "template": "Resources: {}",
      "resources": [{"logicalId": "Mesh", "type": "AWS::AppMesh::Mesh", "physicalId": "arn:m"}],
      "outputs": {"MeshName": "m"}, "exports": {"net-mesh": "m"}, "imports": []})");
  ASSERT_EQ(r.status, 200) << r.body;
  Value rec = json(r);
  EXPECT_EQ(rec.find("name")->text(), "net");
  EXPECT_EQ(rec.find("createdAt")->text(), "2027-01-15T08:00:00Z");
  EXPECT_EQ(toJson(*rec.find("exports")), R"({"net-mesh":"m"})");

  auto got = call("GET", "/weft/v1/stacks/net");
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(json(got), rec);

  time_.advance(std::chrono::seconds(60));
  auto again = put("net", R"({"resources": [], "exports": {"net-mesh": "m"}})");
  ASSERT_EQ(again.status, 200) << again.body;
  Value rec2 = json(again);
  EXPECT_EQ(rec2.find("createdAt")->text(), "2027-01-15T08:00:00Z") << "createdAt is kept";
  EXPECT_EQ(rec2.find("updatedAt")->text(), "2027-01-15T08:01:00Z");
  EXPECT_EQ(rec2.find("status")->text(), "UPDATE_COMPLETE");

  auto list = call("GET", "/weft/v1/stacks");
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(toJson(json(list)),
            R"({"stacks":[{"name":"net","status":"UPDATE_COMPLETE",)"
            R"("createdAt":"2027-01-15T08:00:00Z","updatedAt":"2027-01-15T08:01:00Z",)"
            R"("resourceCount":0}]})");

  auto del = call("DELETE", "/weft/v1/stacks/net");
  ASSERT_EQ(del.status, 200) << del.body;
  auto gone = call("GET", "/weft/v1/stacks/net");
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(errorType(gone), "NotFound");
  EXPECT_EQ(message(gone), "stack 'net' does not exist");
  EXPECT_EQ(call("DELETE", "/weft/v1/stacks/net").status, 404);
}

TEST_F(StackApiTest, ExportsAreUniqueAndImportsBlockDeletion) {
  ASSERT_EQ(put("net", R"({"exports": {"net-mesh": "m"}})").status, 200);
  auto clash = put("other", R"({"exports": {"net-mesh": "x"}})");
  EXPECT_EQ(clash.status, 400);
  EXPECT_EQ(errorType(clash), "ValidationError");
  EXPECT_EQ(message(clash), "export name 'net-mesh' is already exported by stack 'net'");

  auto missing = put("app", R"({"imports": ["nope"]})");
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(message(missing), "no stack exports 'nope' (Fn::ImportValue)");

  ASSERT_EQ(put("app", R"({"imports": ["net-mesh"]})").status, 200);
  auto exports = call("GET", "/weft/v1/exports");
  ASSERT_EQ(exports.status, 200);
  EXPECT_EQ(toJson(json(exports)),
            R"({"exports":[{"name":"net-mesh","value":"m","exportingStack":"net",)"
            R"("importingStacks":["app"]}]})");

  auto refused = call("DELETE", "/weft/v1/stacks/net");
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(message(refused),
            "export 'net-mesh' of stack 'net' is imported by stack 'app'; delete or update that "
            "stack first");
  auto change = put("net", R"({"exports": {"net-mesh": "changed"}})");
  EXPECT_EQ(change.status, 400);
  EXPECT_EQ(message(change),
            "cannot remove or change export 'net-mesh': it is imported by stack 'app'");
  auto drop = put("net", R"({"exports": {}})");
  EXPECT_EQ(drop.status, 400) << drop.body;
  // Re-putting the same export value is fine.
  EXPECT_EQ(put("net", R"({"exports": {"net-mesh": "m"}})").status, 200);

  ASSERT_EQ(call("DELETE", "/weft/v1/stacks/app").status, 200);
  EXPECT_EQ(call("DELETE", "/weft/v1/stacks/net").status, 200);
}

TEST_F(StackApiTest, BadRequests) {
  auto bad_name = put("1abc", "{}");
  EXPECT_EQ(bad_name.status, 400);
  EXPECT_EQ(errorType(bad_name), "ValidationError");
  auto not_json = put("a", "{");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_NE(message(not_json).find("not JSON"), std::string::npos) << not_json.body;
  EXPECT_EQ(put("a", "[]").status, 400);
  EXPECT_EQ(put("a", R"({"name": "b"})").status, 400);
  EXPECT_EQ(put("a", R"({"exports": [1]})").status, 400);
  EXPECT_EQ(put("a", R"({"resources": {}})").status, 400);
  EXPECT_EQ(call("POST", "/weft/v1/stacks").status, 405);
  EXPECT_EQ(call("PUT", "/weft/v1/exports").status, 405);
  EXPECT_EQ(call("GET", "/weft/v1/stacks/a/b").status, 404);
}

}  // namespace
}  // namespace weft::control::stacks
