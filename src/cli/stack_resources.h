#pragma once
// `weft stack` resources beyond App Mesh: Cloud Map (AWS::ServiceDiscovery::PrivateDnsNamespace,
// PublicDnsNamespace, HttpNamespace, Service, Instance), ACM PCA (AWS::ACMPCA::
// CertificateAuthority, Certificate, CertificateAuthorityActivation) and ACM
// (AWS::CertificateManager::Certificate), created and deleted through the server's AWS-shaped
// APIs with CloudFormation's properties and return values (Ref / Fn::GetAtt).
//
// Each create answers what the stack record keeps: the Ref value, the GetAtt attributes and a
// `handle` (the ids its delete needs). Asynchronous Cloud Map operations are waited for.
// Not thread-safe.

#include <string>
#include <string_view>

#include "cli/client.h"
#include "common/result.h"

namespace weft::cli::stack {

// True for the types above.
bool handlesType(std::string_view type);

struct Made {
  Value ref;         // what Ref answers
  Value attributes;  // object: Fn::GetAtt attributes
  Value handle;      // object: what deleteResource() needs
};

// Creates one resource from its evaluated properties. `where` prefixes errors ("Ns
// (AWS::ServiceDiscovery::PrivateDnsNamespace)"); `generated_name` is used when the template
// leaves an optional name out. Unknown properties and missing required ones are errors.
Result<Made> createResource(ApiClient& api, std::string_view type, const std::string& where,
                            const Value& properties, const std::string& generated_name);

// Deletes what createResource() made. Answers false when it was already gone.
// AWS::ACMPCA::Certificate has nothing to delete (as in CloudFormation: an issued certificate
// stays issued); CertificateAuthorityActivation disables its CA; a CertificateAuthority is
// disabled if needed and deleted with ACM PCA's default restore window.
Result<bool> deleteResource(ApiClient& api, std::string_view type, const Value& handle);

}  // namespace weft::cli::stack
