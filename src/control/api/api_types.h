#pragma once
// The seam between the control plane's HTTP server and the services behind it (App Mesh
// REST-JSON, and later Cloud Map / ACM JSON-RPC). The server parses and authenticates a request,
// then hands a plain ApiRequest to a handler; handlers know nothing of sockets or signatures.

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace weft::control {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ApiRequest {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // percent-DECODED path, e.g. "/v20190125/meshes/m1/virtualNodes/n1"
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order received
  HeaderList headers;  // names lower-cased
  std::string body;
  // Who signed the request (after SigV4 verification): the access key id and the account id
  // the key belongs to. Empty only for unauthenticated tests of a handler.
  std::string access_key_id;
  std::string account_id;

  // First value of a query parameter / header (name lower-case), or nullptr.
  const std::string* queryParam(std::string_view name) const {
    for (const auto& [k, v] : query)
      if (k == name) return &v;
    return nullptr;
  }
  const std::string* header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return &v;
    return nullptr;
  }
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;  // extra headers (e.g. "x-amzn-ErrorType")
};

// AWS JSON error shape, as REST-JSON services answer: HTTP status, header
// x-amzn-ErrorType: <type>, body {"message": "..."} (botocore reads the type from the header).
ApiResponse apiError(int status, std::string_view type, std::string_view message);

// A handler answers one request. It may block (store I/O); the server calls it off the event loop.
using ApiHandler = std::function<ApiResponse(const ApiRequest&)>;

}  // namespace weft::control
