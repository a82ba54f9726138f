#include "control/push/identity_signer.h"

#include "control/compile/mesh_policy.h"

namespace weft::control::push {

Result<v1::IdentityUpdate> MeshIdentitySigner::sign(const compile::ProxyIdentity& who,
                                                    std::string_view csr_pem) {
  auto policy = compile::readMeshPolicy(store_, who.mesh);
  if (!policy) return Unexpected<Error>{policy.error()};
  if (policy->mtls == compile::MtlsMode::kOff)
    return makeError("mesh identities are off for mesh \"" + who.mesh + "\" (weft mesh policy " +
                     who.mesh + " --mtls off)");
  ca::IdentityNames names;
  names.spiffe_id =
      compile::spiffeId(who.mesh, who.kind == appmesh::Kind::kVirtualGateway, who.name);
  auto dns = compile::identityDnsNames(store_, who);
  if (!dns) return Unexpected<Error>{dns.error()};
  names.dns = std::move(*dns);
  auto issued = issuer_.issue(who.mesh, names, csr_pem);
  if (!issued) return Unexpected<Error>{issued.error()};
  v1::IdentityUpdate u;
  u.set_certificate_chain_pem(std::move(issued->certificate_chain_pem));
  u.set_trust_bundle_pem(std::move(issued->trust_bundle_pem));
  u.set_spiffe_id(std::move(issued->spiffe_id));
  u.set_expiry_warning_seconds(static_cast<uint32_t>(expiry_warning_.count()));
  return u;
}

}  // namespace weft::control::push
