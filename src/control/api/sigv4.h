#pragma once
// AWS Signature Version 4 (header form), for both sides: the CLI signs, the server verifies.
// One canonicalization serves both, so a request the CLI signs is one the server accepts, and so
// are the AWS CLI's and boto3's. Reference: the AWS "Signature Version 4 signing process" docs.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace weft::control::sigv4 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // optional; sent as x-amz-security-token when set
};

// A request as it goes on the wire.
struct Request {
  std::string method;
  std::string path;   // as sent (percent-encoded), e.g. "/v20190125/meshes/m1"
  std::string query;  // raw query string without '?', may be empty
  std::vector<std::pair<std::string, std::string>> headers;  // must include "host"
  std::string body;
};

// Adds x-amz-date (from `amz_date`, "YYYYMMDDTHHMMSSZ"), x-amz-content-sha256,
// x-amz-security-token (if any) and authorization to `req.headers`, signing every header present.
void sign(Request& req, const Credentials& creds, std::string_view region, std::string_view service,
          std::string_view amz_date);

// What verify() learned from a valid signature.
struct Verified {
  std::string access_key_id;
  std::string region;
  std::string service;
};

// Looks up the secret for an access key id; nullptr/empty when unknown.
using SecretLookup = std::function<std::optional<std::string>(std::string_view access_key_id)>;

// Verifies the authorization header of `req` (header names any case). Fails (message says why:
// missing header, unknown key, bad signature, clock skew over 15 minutes from `now_amz_date`).
Result<Verified> verify(const Request& req, const SecretLookup& lookup,
                        std::string_view now_amz_date);

// "YYYYMMDDTHHMMSSZ" for a UNIX time.
std::string amzDate(int64_t unix_seconds);

// ---- Added by the server: pieces of verify() that the HTTP server and tests use. ----

// Error::code of a verify() failure, so the server can answer the AWS error type that goes with
// it (botocore and the AWS CLI print the type).
enum VerifyError : int {
  kMissingAuthentication = 1,  // no authorization header      -> MissingAuthenticationToken
  kIncompleteSignature = 2,    // malformed header / unsigned required headers
  kUnknownAccessKey = 3,       // lookup answered nothing       -> UnrecognizedClientException
  kSignatureMismatch = 4,      //                               -> InvalidSignatureException
  kClockSkew = 5,              // x-amz-date over 15 min off    -> InvalidSignatureException
};

// The parts of "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/service/aws4_request,
// SignedHeaders=host;x-amz-date, Signature=<64 hex>".
struct Authorization {
  std::string access_key_id;
  std::string date;  // YYYYMMDD of the credential scope
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lower-case, as listed (sorted by the signer)
  std::string signature;                    // 64 lower-case hex digits
};
// The largest difference between x-amz-date and the server's clock that verify() accepts.
inline constexpr int64_t kMaxClockSkewSeconds = 15 * 60;

// "YYYYMMDDTHHMMSSZ" -> UNIX seconds; nullopt when malformed.
std::optional<int64_t> parseAmzDate(std::string_view amz_date);

// Checks an x-amz-date header value against the server's clock `now_amz_date`: error code
// kIncompleteSignature when malformed, kClockSkew when more than kMaxClockSkewSeconds off.
// verify() does the same; the server also calls it on a request head before reading its body.
Status checkRequestDate(std::string_view amz_date, std::string_view now_amz_date);

// Parses an Authorization header value. Error code kIncompleteSignature on malformed input.
Result<Authorization> parseAuthorization(std::string_view value);

// The canonical request over `signed_headers` (lower-case names), as both sign() and verify()
// build it: method, canonical URI (dot segments and empty segments removed, each byte outside
// RFC 3986 unreserved and '/' percent-encoded, which double-encodes an already encoded path, as
// AWS does for every service but S3), canonical query (pairs decoded, re-encoded, sorted),
// canonical headers, signed headers, hex SHA-256 of the body.
std::string canonicalRequest(const Request& req, const std::vector<std::string>& signed_headers);

}  // namespace weft::control::sigv4
