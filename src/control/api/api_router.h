#pragma once
// ApiRouter: what the API server does with one received request. It authenticates the request
// (SigV4 against the keys the server holds, in the server's region), decodes path and query,
// and hands an ApiRequest to the first route whose matcher accepts the path.
//
// Errors are AWS-shaped (status, x-amzn-ErrorType, {"message"}), as botocore and the AWS CLI
// print them:
//   403 MissingAuthenticationTokenException  no Authorization header
//   403 IncompleteSignatureException          malformed header, host/x-amz-date not signed
//   403 UnrecognizedClientException           unknown access key id
//   403 InvalidSignatureException             wrong signature, clock skew > 15 min, wrong
//                                             region or service in the credential scope
//   400 BadRequestException                   malformed percent-encoding in path or query, an
//                                             encoded NUL, a "." or ".." segment or an empty
//                                             segment (other than a trailing '/') in the path:
//                                             refused before the signature is checked, because
//                                             SigV4 canonicalization would normalize them away
//                                             and the signed path would differ from the routed
//                                             one
//   404 UnknownOperationException             no route for the path
//   500 InternalServerErrorException          a handler threw (a bug; logged)
//
// Thread-safety: addRoute() during setup only; handle() from any number of threads after.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/api/api_types.h"
#include "control/api/http_server.h"

namespace weft::control {

// What the router needs to know of an access key.
struct KeyInfo {
  std::string secret_access_key;
  std::string account_id;
};
// Answers the key with this id, or nullopt when unknown. Called concurrently.
using KeyLookup = std::function<std::optional<KeyInfo>(std::string_view access_key_id)>;

class ApiRouter {
 public:
  // `time` must outlive the router (it dates signatures for the clock-skew check).
  ApiRouter(std::string region, KeyLookup keys, const TimeSource& time);

  // `service`: the SigV4 service the credential scope must name for this route ("appmesh"), or
  // empty to accept any (the /weft/v1 paths).
  void addRoute(std::function<bool(std::string_view path)> matches, std::string service,
                ApiHandler handler);
  // A JSON 1.1 (RPC) API: requests whose X-Amz-Target header starts with `target_prefix`
  // ("Route53AutoNaming_v20170314.", "ACMPrivateCA.", "CertificateManager."), whatever the path.
  // Checked before the path routes.
  void addTargetRoute(std::string target_prefix, std::string service, ApiHandler handler);

  ApiResponse handle(const HttpRequest& request) const;

  // The cheap checks of a request head, before its body is read (HttpServerOptions::check_head):
  // the path (as above), an Authorization header that parses, an x-amz-date within the clock
  // skew, a known access key. Refuses with the same answers handle() gives. Also chooses the
  // body limit: `large_body_bytes` on the paths added with addLargeBodyPrefix(), the server's
  // default elsewhere. The signature itself needs the body and is checked by handle().
  // Runs on the server's event-loop thread; costs one key lookup.
  HeadCheck checkHead(const HttpRequest& head) const;
  // Requests on paths starting with `prefix` (raw, e.g. "/weft/v1/stacks") may carry bodies up
  // to `max_body_bytes` once their head passed checkHead().
  void addLargeBodyPrefix(std::string prefix, size_t max_body_bytes);

 private:
  struct Route {
    std::string target_prefix;  // non-empty: an X-Amz-Target route
    std::function<bool(std::string_view)> matches;
    std::string service;
    ApiHandler handler;
  };
  std::string region_;
  KeyLookup keys_;
  const TimeSource& time_;
  std::vector<Route> routes_;
  std::vector<std::pair<std::string, size_t>> large_body_prefixes_;
};

// Checks a raw (still percent-encoded) request path: it starts with '/', every segment
// percent-decodes, none decodes to a NUL, none is "." or "..", and none is empty except the last
// (a trailing '/'). Answers the decoded segments (without the leading empty one).
Result<std::vector<std::string>> checkAndSplitPath(std::string_view raw);

// Percent-decodes a whole request path (an encoded '/' becomes a separator: for display and
// prefix matching only; names come from checkAndSplitPath()). Fails on a '%' not followed by two
// hex digits and on an encoded NUL.
Result<std::string> decodePath(std::string_view raw);
// Splits a raw query string on '&' and '=' and percent-decodes each name and value ('+' stays
// '+', as in AWS's REST APIs). A name without '=' gets an empty value. Fails as decodePath.
Result<std::vector<std::pair<std::string, std::string>>> decodeQuery(std::string_view raw);

}  // namespace weft::control
