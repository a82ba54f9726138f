#pragma once
// App Mesh's rules on a resource's spec beyond the per-field constraints of checkSchema():
// members that only make sense together (a listener's timeout and connection pool must match its
// protocol, a health check of http needs a path, one of prefix/path, ...), value formats (paths
// start with "/", regexes compile with RE2, durations carry value and unit, match ranges), and
// the per-resource quotas that depend only on the spec (backends per virtual node).
//
// Each function expects a spec that already passed checkSchema() and answers the first violation
// as BadRequestException (LimitExceededException for a quota), its message starting with the
// field's path ("spec.listeners[0].timeout.http2: ...").

#include "aws/appmesh/v20190125/appmesh.pb.h"
#include "common/result.h"
#include "control/model/appmesh_api.h"

namespace weft::control::appmesh {

namespace am = ::aws::appmesh::v20190125;

Status checkMeshSpec(const am::MeshSpec& spec);
Status checkVirtualNodeSpec(const am::VirtualNodeSpec& spec, const Quotas& quotas);
Status checkVirtualServiceSpec(const am::VirtualServiceSpec& spec);
Status checkVirtualRouterSpec(const am::VirtualRouterSpec& spec);
Status checkRouteSpec(const am::RouteSpec& spec);
Status checkVirtualGatewaySpec(const am::VirtualGatewaySpec& spec);
Status checkGatewayRouteSpec(const am::GatewayRouteSpec& spec);

}  // namespace weft::control::appmesh
