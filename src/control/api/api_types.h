#pragma once
// The seam between the control plane's HTTP server and the services behind it (App Mesh
// REST-JSON, and later Cloud Map / ACM JSON-RPC). The server parses and authenticates a request,
// then hands a plain ApiRequest to a handler; handlers know nothing of sockets or signatures.

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::control {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ApiRequest {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // percent-DECODED path, e.g. "/v20190125/meshes/m1/virtualNodes/n1"
  // Added by the server: the path split on '/' first, then each segment percent-decoded, so an
  // encoded "%2F" stays inside its segment (a name) instead of becoming a separator. Filled by
  // the router; empty when a test builds a request by hand (then segments() splits `path`).
  // A trailing '/' gives a last, empty segment.
  std::vector<std::string> path_segments;
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order received
  HeaderList headers;                                      // names lower-cased
  std::string body;
  // Who signed the request (after SigV4 verification): the access key id and the account id
  // the key belongs to. Empty only for unauthenticated tests of a handler.
  std::string access_key_id;
  std::string account_id;
  // Added by the server: the id the answer carries as x-amzn-RequestId (empty in handler tests).
  std::string request_id;

  // path_segments, or `path` split on '/' when path_segments is empty.
  std::vector<std::string> segments() const {
    if (!path_segments.empty()) return path_segments;
    std::vector<std::string> out;
    std::string_view p = path;
    if (!p.empty() && p.front() == '/') p.remove_prefix(1);
    if (p.empty()) return out;
    for (size_t pos = 0;;) {
      size_t slash = p.find('/', pos);
      out.emplace_back(p.substr(pos, slash == std::string_view::npos ? slash : slash - pos));
      if (slash == std::string_view::npos) break;
      pos = slash + 1;
    }
    return out;
  }

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

// 500 InternalServerErrorException for a failure the client cannot act on (the store failed):
// logs `detail` (file paths, keys, SQLite's words) with the request id, and answers only a
// generic message naming the request id, so internals never reach the client.
ApiResponse internalServerError(const ApiRequest& request, std::string_view detail);

// A handler answers one request. It may block (store I/O); the server calls it off the event loop.
using ApiHandler = std::function<ApiResponse(const ApiRequest&)>;

}  // namespace weft::control
