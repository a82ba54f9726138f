#include "control/api/api_types.h"

#include "common/json.h"
#include "common/log.h"

namespace weft::control {

// botocore's REST-JSON error parser takes the type from the x-amzn-ErrorType header (the part
// before any ':'), else from the body's "__type" / "code"; the message from "message". Both
// places carry the type so other clients (which read only the body) see it too.
ApiResponse apiError(int status, std::string_view type, std::string_view message) {
  ApiResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.headers.emplace_back("x-amzn-ErrorType", std::string(type));
  r.body = "{\"__type\":";
  appendJsonString(r.body, type);
  r.body += ",\"message\":";
  appendJsonString(r.body, message);
  r.body += "}";
  return r;
}

ApiResponse internalServerError(const ApiRequest& request, std::string_view detail) {
  std::string id = request.request_id.empty() ? std::string("-") : request.request_id;
  log::error("api", "request " + id + " (" + request.method + " " + request.path +
                        ") failed: " + std::string(detail));
  return apiError(500, "InternalServerErrorException",
                  "internal error; the server log has the details under request id " + id);
}

}  // namespace weft::control
