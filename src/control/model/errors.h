#pragma once
// App Mesh's error names as weft::Error codes, and their HTTP answers.
//
// Model functions return weft::Error whose `code` is one of the kinds below; toApiResponse()
// turns it into the REST-JSON error botocore reads (HTTP status, x-amzn-ErrorType, message).
// Any other code (a store I/O failure) answers InternalServerErrorException.

#include <string>

#include "common/result.h"
#include "control/api/api_types.h"

namespace weft::control::appmesh {

// Distinct from kStoreConflict (409) so a store conflict is never mistaken for an API error.
enum ErrorKind : int {
  kBadRequest = 1001,        // 400 BadRequestException
  kNotFound = 1002,          // 404 NotFoundException
  kConflict = 1003,          // 409 ConflictException
  kResourceInUse = 1004,     // 409 ResourceInUseException
  kLimitExceeded = 1005,     // 400 LimitExceededException
  kForbidden = 1006,         // 403 ForbiddenException
  kTooManyTags = 1007,       // 400 TooManyTagsException
  kTooManyRequests = 1008,   // 429 TooManyRequestsException (botocore retries it)
  kUnknownOperation = 1009,  // 404 UnknownOperationException (no such path/method)
};

inline Unexpected<Error> apiFailure(ErrorKind kind, std::string message) {
  return makeError(std::move(message), kind);
}
inline Unexpected<Error> badRequest(std::string message) {
  return apiFailure(kBadRequest, std::move(message));
}

// The exception name of `code` ("BadRequestException", ...; "InternalServerErrorException" for a
// code that is not an ErrorKind).
const char* errorTypeName(int code);
int errorHttpStatus(int code);

// The answer to a failed `request`. A code that is not an ErrorKind (the store failed) answers
// a generic 500 naming the request id; its message (which may hold file paths and keys) goes to
// the log only.
ApiResponse toApiResponse(const Error& error, const ApiRequest& request);

}  // namespace weft::control::appmesh
