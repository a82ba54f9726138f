// Regression tests for review findings on the App Mesh API: names that would be unreachable,
// App Mesh longs beyond int32, protobuf parse errors, unreadable records, store errors.
#include <gtest/gtest.h>

#include <string>

#include "control/model/appmesh_api.h"
#include "control/model/appmesh_test_support.h"
#include "control/model/resource_keys.h"

namespace weft::control::appmesh {
namespace {

using testing::errorMessageOf;
using testing::errorTypeOf;
using testing::Harness;
using testing::summary;

const std::string kNodeSpec =
    R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}})";

// Review item 3: a name with '/' (in the body, or encoded in the URL) and the names "." and ".."
// are refused with a BadRequestException naming the member.
TEST(AppMeshNamesTest, SlashDotsAndControlCharactersAreRefused) {
  Harness h;
  struct Case {
    std::string name, message;
  };
  for (const Case& c : std::vector<Case>{{"a/b", "meshName: \"a/b\" must not contain '/'"},
                                         {".", "meshName: \".\" is not a valid name"},
                                         {"..", "meshName: \"..\" is not a valid name"},
                                         {"a\\u0001b", "must not contain control characters"}}) {
    auto r = h.call("PUT", "/v20190125/meshes", R"({"meshName":")" + c.name + "\"}");
    EXPECT_EQ(r.status, 400) << c.name << ": " << summary(r);
    EXPECT_EQ(errorTypeOf(r), "BadRequestException") << c.name;
    EXPECT_NE(errorMessageOf(r).find(c.message), std::string::npos)
        << c.name << ": expected a message containing '" << c.message << "', got " << summary(r);
  }
  // A name decoded from one URL segment ("a%2Fb" from the router) is one name, and refused.
  ASSERT_EQ(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})").status, 200);
  ApiRequest req;
  req.method = "PUT";
  req.path = "/v20190125/meshes/m/virtualNodes/a/b";
  req.path_segments = {"v20190125", "meshes", "m", "virtualNodes", "a/b"};
  req.body = R"({"spec":{}})";
  auto r = h.api->handle(req);
  EXPECT_EQ(r.status, 400) << summary(r);
  EXPECT_NE(errorMessageOf(r).find("virtualNodeName: \"a/b\" must not contain '/'"),
            std::string::npos)
      << summary(r);
  auto ok = h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                   R"({"virtualNodeName":"n-1.x_y","spec":)" + kNodeSpec + "}");
  EXPECT_EQ(ok.status, 200) << "ordinary names still work: " << summary(ok);
}

// Review item 5: App Mesh longs hold more than int32; they stay JSON integers.
TEST(AppMeshLongsTest, LongMembersAcceptLargeWholeNumbers) {
  Harness h;
  ASSERT_EQ(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})").status, 200);
  std::string spec =
      R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"idle":{"unit":"ms","value":3000000000}}}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}})";
  auto r = h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                  R"({"virtualNodeName":"n","spec":)" + spec + "}");
  ASSERT_EQ(r.status, 200) << summary(r);
  EXPECT_NE(r.body.find("\"value\":3000000000"), std::string::npos)
      << "expected the value as a JSON integer, got " << r.body;
  EXPECT_NE(r.body.find("\"version\":1"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("\"version\":1."), std::string::npos) << r.body;

  std::string fraction =
      R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"idle":{"unit":"ms","value":1.5}}}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}})";
  auto bad = h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                    R"({"virtualNodeName":"f","spec":)" + fraction + "}");
  EXPECT_EQ(bad.status, 400) << summary(bad);
  EXPECT_EQ(errorMessageOf(bad), "spec.listeners[0].timeout.http.idle.value: must be an integer")
      << summary(bad);
}

// Review item 5: protobuf's parse errors are answered as "path: message" without internals.
TEST(AppMeshParseErrorsTest, NoProtobufInternals) {
  Harness h;
  struct Case {
    std::string body, message;
  };
  for (
      const Case& c : std::vector<Case>{
          {R"({"meshName":"a","meshName":"b"})", "meshName: is given more than once"},
          {R"({"meshName":"a","spec":{"egressFilter":{"type":7}}})",
           "spec.egressFilter.type: has a value of the wrong type or out of range"},
          {R"({"meshName":"a","spec":{"egressFilter":{"type":{}}}})",
           "spec.egressFilter.type: has a value of the wrong type or out of range"},
          {R"({"meshName":"a","spec":{"serviceDiscovery":{"ipPreference":"IPv4_ONLY","ipPreference":"IPv6_ONLY"}}})",
           "spec.serviceDiscovery.ipPreference: is given more than once"},
          {R"({"meshName":5})", "meshName: has a value of the wrong type or out of range"},
          {R"({"meshName":"a","spec":{"bogus":1}})", "spec.bogus: unknown field"},
          {R"({"meshName":"a",)", "request body: is not valid JSON"},
          {R"({"meshName":{"@type":"x"}})",
           "meshName: has a value of the wrong type or out of range"}}) {
    auto r = h.call("PUT", "/v20190125/meshes", c.body);
    EXPECT_EQ(r.status, 400) << c.body << ": " << summary(r);
    std::string m = errorMessageOf(r);
    EXPECT_EQ(m, c.message) << c.body;
    for (const char* internal : {"oneof", "_meshName", "type.googleapis.com", "google.protobuf",
                                 "Expected", "INVALID_ARGUMENT"})
      EXPECT_EQ(m.find(internal), std::string::npos)
          << c.body << " leaks '" << internal << "': " << m;
  }
}

// Review item 7: a virtual service record that cannot be parsed is an internal error, not
// silently skipped (skipping could delete a node that is still a provider).
TEST(AppMeshDeleteOrderTest, UnreadableVirtualServiceRecordIsAnInternalError) {
  Harness h;
  ASSERT_EQ(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})").status, 200);
  ASSERT_EQ(h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                   R"({"virtualNodeName":"n","spec":)" + kNodeSpec + "}")
                .status,
            200);
  ResourceId vs{Kind::kVirtualService, "m", "", "s.local"};
  ASSERT_TRUE(h.store.commit({StoreOp::put(resourceKey(vs), "{not json", StoreOp::kAbsent)}));
  auto r = h.call("DELETE", "/v20190125/meshes/m/virtualNodes/n");
  EXPECT_EQ(r.status, 500) << "expected an internal error, got " << summary(r);
  EXPECT_EQ(errorTypeOf(r), "InternalServerErrorException");
  EXPECT_EQ(h.call("GET", "/v20190125/meshes/m/virtualNodes/n").status, 200)
      << "the node must not have been deleted";
}

// A store whose reads fail with a message full of internals.
class FailingStore : public Store {
 public:
  Result<std::optional<KeyValue>> get(std::string_view) override {
    return makeError("sqlite /srv/secret/weft.db: disk I/O error reading appmesh/mesh/m");
  }
  Result<std::vector<KeyValue>> list(std::string_view, std::string_view, size_t) override {
    return makeError("sqlite /srv/secret/weft.db: disk I/O error");
  }
  Result<int64_t> commit(const std::vector<StoreOp>&) override {
    return makeError("sqlite /srv/secret/weft.db: disk I/O error");
  }
};

// Review item 9: store errors are logged, not answered.
TEST(AppMeshStoreErrorsTest, InternalErrorsAnswerOnlyTheRequestId) {
  FailingStore store;
  SimTimeSource time;
  AppMeshApi api(store, time, Options{});
  ApiRequest req;
  req.method = "GET";
  req.path = "/v20190125/meshes/m";
  req.request_id = "req-1234";
  auto r = api.handle(req);
  EXPECT_EQ(r.status, 500) << summary(r);
  EXPECT_EQ(errorTypeOf(r), "InternalServerErrorException");
  EXPECT_EQ(r.body.find("/srv/secret"), std::string::npos) << "leaks the path: " << r.body;
  EXPECT_EQ(r.body.find("appmesh/mesh"), std::string::npos) << "leaks a key: " << r.body;
  EXPECT_NE(r.body.find("req-1234"), std::string::npos) << "names the request id: " << r.body;
}

}  // namespace
}  // namespace weft::control::appmesh
