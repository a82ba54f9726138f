#pragma once
// Test support for the App Mesh API: an AppMeshApi over a MemoryStore and a simulated clock,
// with helpers to call operations and read answers. Header-only; used by *_test.cc and fuzzers.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/time.h"
#include "control/model/appmesh_api.h"
#include "control/store/memory_store.h"

namespace weft::control::appmesh::testing {

struct Harness {
  explicit Harness(Options options = {})
      : api(std::make_unique<AppMeshApi>(store, time, std::move(options))) {}

  ApiResponse call(std::string method, std::string path, std::string body = "",
                   std::vector<std::pair<std::string, std::string>> query = {}) {
    ApiRequest r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.body = std::move(body);
    r.query = std::move(query);
    r.account_id = "111122223333";
    return api->handle(r);
  }

  MemoryStore store;
  SimTimeSource time;
  std::unique_ptr<AppMeshApi> api;
};

inline std::string errorTypeOf(const ApiResponse& r) {
  for (const auto& [k, v] : r.headers)
    if (k == "x-amzn-ErrorType") return v;
  return "";
}

// The body as a google.protobuf.Struct (any JSON object); an empty Struct if it is not one.
inline google::protobuf::Struct parseStruct(const std::string& body) {
  google::protobuf::Struct s;
  (void)google::protobuf::util::JsonStringToMessage(body, &s);
  return s;
}

inline std::string errorMessageOf(const ApiResponse& r) {
  auto s = parseStruct(r.body);
  auto it = s.fields().find("message");
  return it == s.fields().end() ? std::string() : it->second.string_value();
}

// "status type: message", for assertions that show everything on failure.
inline std::string summary(const ApiResponse& r) {
  if (r.status == 200) return "200";
  return std::to_string(r.status) + " " + errorTypeOf(r) + ": " + errorMessageOf(r);
}

}  // namespace weft::control::appmesh::testing
