#include "control/model/errors.h"

namespace weft::control::appmesh {

const char* errorTypeName(int code) {
  switch (code) {
    case kBadRequest:
      return "BadRequestException";
    case kNotFound:
      return "NotFoundException";
    case kConflict:
      return "ConflictException";
    case kResourceInUse:
      return "ResourceInUseException";
    case kLimitExceeded:
      return "LimitExceededException";
    case kForbidden:
      return "ForbiddenException";
    case kTooManyTags:
      return "TooManyTagsException";
    case kTooManyRequests:
      return "TooManyRequestsException";
    case kUnknownOperation:
      return "UnknownOperationException";
    default:
      return "InternalServerErrorException";
  }
}

int errorHttpStatus(int code) {
  switch (code) {
    case kBadRequest:
    case kLimitExceeded:
    case kTooManyTags:
      return 400;
    case kNotFound:
    case kUnknownOperation:
      return 404;
    case kConflict:
    case kResourceInUse:
      return 409;
    case kForbidden:
      return 403;
    case kTooManyRequests:
      return 429;
    default:
      return 500;
  }
}

ApiResponse toApiResponse(const Error& error, const ApiRequest& request) {
  int status = errorHttpStatus(error.code);
  if (status == 500) return internalServerError(request, "appmesh: " + error.message);
  return apiError(status, errorTypeName(error.code), error.message);
}

}  // namespace weft::control::appmesh
