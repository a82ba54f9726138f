#pragma once
// The CLI's side of the service registry: Cloud Map calls (JSON 1.1, X-Amz-Target
// "Route53AutoNaming_v20170314.<Op>", SigV4 service "servicediscovery"), waiting for Cloud Map's
// asynchronous operations, and the listings behind `weft get namespaces|services|instances`.
// docs/registry.md describes the server side.
//
// Not thread-safe (one ApiClient, one call at a time).

#include <string>
#include <string_view>

#include "cli/client.h"
#include "common/result.h"

namespace weft::cli::registry {

inline constexpr std::string_view kService = "servicediscovery";

Result<Value> call(ApiClient& api, std::string_view operation, const Value& body);

// Polls GetOperation until the operation is SUCCESS (answers its Targets object) or FAIL (an
// error with its ErrorCode and ErrorMessage); gives up after `timeout_ms`.
Result<Value> waitForOperation(ApiClient& api, const std::string& operation_id,
                               int timeout_ms = 60000);

// True when `e` is one of Cloud Map's "not found" errors (NamespaceNotFound, ServiceNotFound,
// InstanceNotFound).
bool isNotFound(const Error& e);

// Every namespace (ListNamespaces, all pages).
Result<Value> listNamespaces(ApiClient& api);

// The namespace summary whose Id or Name is `id_or_name`; an error naming the known ones when
// none is.
Result<Value> findNamespace(ApiClient& api, const std::string& id_or_name);

// The services of one namespace (`namespace_filter`: an id or a name) or of all ("" ), each
// summary with NamespaceId and NamespaceName added (Cloud Map's ServiceSummary lacks them).
Result<Value> listServices(ApiClient& api, const std::string& namespace_filter);

// The instances of one service (`service_filter`: an id, a name, or "name.namespace") or, when
// "", of every service of `namespace_filter` ("" = all namespaces); each with ServiceId,
// ServiceName, NamespaceName and HealthStatus (GetInstancesHealthStatus) added.
Result<Value> listInstances(ApiClient& api, const std::string& namespace_filter,
                            const std::string& service_filter);

}  // namespace weft::cli::registry
