#pragma once
// How a DNS hostname maps onto the registry (docs/compilation.md "DNS hostnames inside a registry
// namespace"; docs/registry.md "Instances from proxies"): the first label is the Cloud Map
// service name and the rest is the namespace name, as Cloud Map's private DNS names are built
// ("pay.corp.local" = service "pay" in namespace "corp.local"). Shared by the compiler and
// auto-registration so both read a hostname the same way.

#include <optional>
#include <string>
#include <string_view>

namespace weft::control::compile {

struct RegistryHostname {
  std::string service;         // the first label, as written
  std::string namespace_name;  // the remaining labels, as written (no trailing dot)
};

// Splits `hostname` (trailing dots ignored) into service and namespace; nullopt for an IP literal
// (IPv4 or IPv6), a single label, or a name with an empty label. Does not look at the registry:
// whether the namespace exists is the caller's question. Pure function, thread-safe.
std::optional<RegistryHostname> splitRegistryHostname(std::string_view hostname);

}  // namespace weft::control::compile
