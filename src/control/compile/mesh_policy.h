#pragma once
// The mesh-level security policy weft keeps outside the App Mesh spec shapes
// (`weft mesh policy M --mtls off|permissive|strict --authorization off|backends`;
// docs/security.md), so App Mesh clients and specs keep working unchanged:
//
//   mtls off          mesh identities are not issued (CSRs are refused); configs as App Mesh's
//   mtls permissive   (default) every proxy gets and renews its identity certificate, but the
//                     configs stay exactly App Mesh's: nothing is required or originated
//   mtls strict       node inbound listeners require a client certificate from the mesh identity
//                     CA, and callers present their identity on egress clusters toward nodes
//   authorization backends   (needs mtls strict) a node accepts calls only from the nodes that
//                     declare one of its virtual services as a backend, and from the gateways
//                     whose gateway routes target one of them
//
// Stored as JSON at "meshpolicy/<mesh>"; an absent record is the default (permissive, off). The
// record outlives its mesh (a mesh re-created under the same name finds its policy again).
// Also here: the names of a proxy's identity certificate, which read the App Mesh records.
//
// Thread-safety: functions only (they read the store).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "control/compile/compiler.h"
#include "control/store/store.h"

namespace weft::control::compile {

enum class MtlsMode { kOff, kPermissive, kStrict };
enum class AuthorizationMode { kOff, kBackends };

struct MeshPolicy {
  MtlsMode mtls = MtlsMode::kPermissive;
  AuthorizationMode authorization = AuthorizationMode::kOff;
  int64_t updated_at = 0;  // unix seconds; 0: never set (the defaults)

  bool operator==(const MeshPolicy&) const = default;
};

inline constexpr std::string_view kMeshPolicyKeyPrefix = "meshpolicy/";
std::string meshPolicyKey(std::string_view mesh);

// "off", "permissive", "strict" / "off", "backends".
std::string_view mtlsModeName(MtlsMode mode);
std::string_view authorizationModeName(AuthorizationMode mode);
// Case-insensitive; nullopt for anything else.
std::optional<MtlsMode> parseMtlsMode(std::string_view text);
std::optional<AuthorizationMode> parseAuthorizationMode(std::string_view text);

// authorization backends needs mtls strict (a caller's identity is known only from its
// certificate); the error says so.
Status validateMeshPolicy(const MeshPolicy& policy);

// {"mtls": "strict", "authorization": "backends", "updatedAt": N}: the stored form and the API's.
std::string meshPolicyJson(const MeshPolicy& policy);
// spiffe://MESH/virtualNode/NAME or spiffe://MESH/virtualGateway/NAME: a proxy's mesh identity.
std::string spiffeId(std::string_view mesh, bool gateway, std::string_view name);

// Reads the stored form (unknown or missing members keep their defaults).
Result<MeshPolicy> parseMeshPolicyJson(std::string_view json);

// The mesh's policy; the defaults when none is stored.
Result<MeshPolicy> readMeshPolicy(Store& store, std::string_view mesh);

// The DNS names of `who`'s identity certificate: a virtual node's discovery name — its
// serviceDiscovery.dns.hostname (not an IP literal), or awsCloudMap "serviceName.namespaceName" —
// lower-case without a trailing dot; none for a gateway, a node without discovery, or a resource
// that does not exist (yet).
Result<std::vector<std::string>> identityDnsNames(Store& store, const ProxyIdentity& who);

}  // namespace weft::control::compile
