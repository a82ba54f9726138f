#pragma once
// Checks a parsed App Mesh message against the constraints of the API model, which the generated
// proto carries as options (api/aws/appmesh/v20190125/appmesh.proto): required members, value
// ranges, string lengths, list sizes, enum values, patterns and unions (exactly one member set).
//
// The first violation found (fields in descriptor order, depth first) is answered as a
// BadRequestException whose message starts with the field's path, e.g.
// "spec.listeners[0].portMapping.port: 70000 is out of range 1-65535".

#include <string>
#include <string_view>

#include "common/result.h"

namespace google::protobuf {
class Message;
}

namespace weft::control::appmesh {

// `path` is the path of `message` itself ("" for a request body, whose fields are then named
// bare: "spec.listeners[0]...").
Status checkSchema(const google::protobuf::Message& message, std::string_view path = "");

// "a.b" / "b" when `prefix` is empty.
std::string joinPath(std::string_view prefix, std::string_view field);

}  // namespace weft::control::appmesh
