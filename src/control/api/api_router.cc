#include "control/api/api_router.h"

#include <chrono>
#include <exception>

#include "common/json_limits.h"
#include "common/log.h"
#include "common/percent_encoding.h"
#include "control/api/sigv4.h"

namespace weft::control {
namespace {

Result<std::string> decodePart(std::string_view raw, std::string_view what) {
  auto decoded = percentDecode(raw);
  if (!decoded) return makeError(decoded.error().message + " in the " + std::string(what));
  if (decoded->find('\0') != std::string::npos)
    return makeError("the " + std::string(what) + " must not contain an encoded NUL (%00)");
  return decoded;
}

ApiResponse forbidden(std::string_view type, std::string_view message) {
  return apiError(403, type, message);
}

}  // namespace

Result<std::string> decodePath(std::string_view raw) { return decodePart(raw, "path"); }

Result<std::vector<std::pair<std::string, std::string>>> decodeQuery(std::string_view raw) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t amp = raw.find('&', pos);
    if (amp == std::string_view::npos) amp = raw.size();
    std::string_view pair = raw.substr(pos, amp - pos);
    pos = amp + 1;
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto name = decodePart(pair.substr(0, eq), "query");
    if (!name) return Unexpected<Error>{name.error()};
    std::string value;
    if (eq != std::string_view::npos) {
      auto v = decodePart(pair.substr(eq + 1), "query");
      if (!v) return Unexpected<Error>{v.error()};
      value = std::move(*v);
    }
    out.emplace_back(std::move(*name), std::move(value));
  }
  return out;
}

Result<std::vector<std::string>> checkAndSplitPath(std::string_view raw) {
  if (raw.empty() || raw.front() != '/') return makeError("the path must start with '/'");
  std::vector<std::string> out;
  std::string_view rest = raw.substr(1);
  if (rest.empty()) return out;
  for (size_t pos = 0;;) {
    size_t slash = rest.find('/', pos);
    bool last = slash == std::string_view::npos;
    std::string_view seg = rest.substr(pos, last ? std::string_view::npos : slash - pos);
    if (seg.empty() && !last)
      return makeError("the path has an empty segment ('//'); send it without");
    if (seg == "." || seg == "..")
      return makeError("the path has a '" + std::string(seg) +
                       "' segment; send the path without dot segments");
    auto decoded = decodePart(seg, "path");
    if (!decoded) return Unexpected<Error>{decoded.error()};
    if (*decoded == "." || *decoded == "..")
      return makeError("the path has a segment that decodes to '" + *decoded + "'");
    out.push_back(std::move(*decoded));
    if (last) break;
    pos = slash + 1;
  }
  return out;
}

ApiRouter::ApiRouter(std::string region, KeyLookup keys, const TimeSource& time)
    : region_(std::move(region)), keys_(std::move(keys)), time_(time) {}

void ApiRouter::addRoute(std::function<bool(std::string_view)> matches, std::string service,
                         ApiHandler handler) {
  routes_.push_back(Route{{}, std::move(matches), std::move(service), std::move(handler)});
}

void ApiRouter::addTargetRoute(std::string target_prefix, std::string service, ApiHandler handler) {
  Route r;
  r.target_prefix = std::move(target_prefix);
  r.service = std::move(service);
  r.handler = std::move(handler);
  routes_.insert(routes_.begin(), std::move(r));
}

void ApiRouter::addLargeBodyPrefix(std::string prefix, size_t max_body_bytes) {
  large_body_prefixes_.emplace_back(std::move(prefix), max_body_bytes);
}

namespace {

ApiResponse authFailure(const Error& e) {
  switch (e.code) {
    case sigv4::kMissingAuthentication:
      return forbidden("MissingAuthenticationTokenException",
                       "Missing Authentication Token: sign the request with AWS Signature "
                       "Version 4 (the AWS CLI and boto3 do; see docs/control-plane.md)");
    case sigv4::kIncompleteSignature:
      return forbidden("IncompleteSignatureException", e.message);
    case sigv4::kUnknownAccessKey:
      return forbidden("UnrecognizedClientException",
                       "The security token included in the request is invalid.");
    default:
      return forbidden("InvalidSignatureException", e.message);
  }
}

const std::string* findHeader(const HttpRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return &v;
  return nullptr;
}

}  // namespace

HeadCheck ApiRouter::checkHead(const HttpRequest& head) const {
  HeadCheck out;
  auto refuse = [&](ApiResponse r) {
    out.refuse = std::move(r);
    return out;
  };
  auto segments = checkAndSplitPath(head.path);
  if (!segments) return refuse(apiError(400, "BadRequestException", segments.error().message));
  if (auto q = decodeQuery(head.query); !q)
    return refuse(apiError(400, "BadRequestException", q.error().message));
  const std::string* authorization = findHeader(head, "authorization");
  if (!authorization) return refuse(authFailure(Error{sigv4::kMissingAuthentication, ""}));
  auto auth = sigv4::parseAuthorization(*authorization);
  if (!auth) return refuse(authFailure(auth.error()));
  const std::string* date = findHeader(head, "x-amz-date");
  if (!date)
    return refuse(
        authFailure(Error{sigv4::kIncompleteSignature, "the 'x-amz-date' header is missing"}));
  int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
          .count();
  if (Status st = sigv4::checkRequestDate(*date, sigv4::amzDate(now)); !st)
    return refuse(authFailure(st.error()));
  std::optional<KeyInfo> key = keys_ ? keys_(auth->access_key_id) : std::nullopt;
  if (!key || key->secret_access_key.empty())
    return refuse(authFailure(Error{sigv4::kUnknownAccessKey, ""}));
  for (const auto& [prefix, limit] : large_body_prefixes_) {
    std::string_view p = head.path;
    if (p.substr(0, prefix.size()) == prefix &&
        (p.size() == prefix.size() || p[prefix.size()] == '/'))
      out.max_body_bytes = limit;
  }
  return out;
}

ApiResponse ApiRouter::handle(const HttpRequest& request) const {
  // 0. The path as routed must be the path as signed: refuse what SigV4 would normalize.
  auto segments = checkAndSplitPath(request.path);
  if (!segments) return apiError(400, "BadRequestException", segments.error().message);

  // 1. Authenticate, over the request as it came on the wire.
  sigv4::Request wire{request.method, request.path, request.query, request.headers, request.body};
  std::optional<KeyInfo> key;
  auto lookup = [&](std::string_view id) -> std::optional<std::string> {
    key = keys_ ? keys_(id) : std::nullopt;
    if (!key) return std::nullopt;
    return key->secret_access_key;
  };
  int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
          .count();
  auto verified = sigv4::verify(wire, lookup, sigv4::amzDate(now));
  if (!verified) {
    const Error& e = verified.error();
    log::debug("api", "authentication failed for " + request.method + " " + request.path +
                          " from " + request.peer + ": " + e.message);
    return authFailure(e);
  }
  if (verified->region != region_)
    return forbidden("InvalidSignatureException",
                     "Credential should be scoped to a valid region, not '" + verified->region +
                         "'. This server's region is '" + region_ + "'.");

  // 2. Decode and route.
  auto path = decodePath(request.path);
  if (!path) return apiError(400, "BadRequestException", path.error().message);
  auto query = decodeQuery(request.query);
  if (!query) return apiError(400, "BadRequestException", query.error().message);
  const Route* route = nullptr;
  std::string_view target;
  for (const auto& [name, value] : request.headers) {
    if (name == "x-amz-target") target = value;
  }
  for (const Route& r : routes_) {
    bool hit = r.target_prefix.empty()
                   ? target.empty() && r.matches(*path)
                   : target.substr(0, r.target_prefix.size()) == r.target_prefix;
    if (hit) {
      route = &r;
      break;
    }
  }
  if (!route && !target.empty())  // as AWS's JSON 1.1 services answer an unknown target
    return apiError(400, "UnknownOperationException",
                    "no operation named " + std::string(target) + " on this server");
  if (!route)
    return apiError(404, "UnknownOperationException",
                    "no operation on " + request.method + " " + *path);
  if (!route->service.empty() && verified->service != route->service)
    return forbidden("InvalidSignatureException",
                     "Credential should be scoped to correct service: '" + route->service + "'.");

  // Every API behind the router parses JSON bodies with parsers whose cost grows with nesting;
  // refuse deep nesting once, here (XML bodies, which start with '<', are not scanned).
  size_t first = request.body.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (request.body[first] == '{' || request.body[first] == '[')) {
    if (Status st = checkJsonDepth(request.body); !st)
      return apiError(
          400, route->target_prefix.empty() ? "BadRequestException" : "SerializationException",
          "request body: " + st.error().message);
  }

  ApiRequest api;
  api.method = request.method;
  api.path = std::move(*path);
  api.path_segments = std::move(*segments);
  api.query = std::move(*query);
  api.headers = request.headers;
  api.body = request.body;
  api.access_key_id = verified->access_key_id;
  api.account_id = key ? key->account_id : std::string();
  api.request_id = request.request_id;
  // Handlers are weft code and report errors as values; an exception here is a bug (or a
  // third-party library throwing). Answer 500 rather than take the server down.
  try {
    return route->handler(api);
  } catch (const std::exception& e) {
    log::error("api", "handler for " + api.method + " " + api.path + " threw: " + e.what());
  } catch (...) {
    log::error("api", "handler for " + api.method + " " + api.path + " threw");
  }
  return apiError(500, "InternalServerErrorException",
                  "internal error; the server log has the details");
}

}  // namespace weft::control
