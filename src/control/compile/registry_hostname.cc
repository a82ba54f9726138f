#include "control/compile/registry_hostname.h"

#include <arpa/inet.h>

namespace weft::control::compile {

std::optional<RegistryHostname> splitRegistryHostname(std::string_view hostname) {
  std::string host(hostname);
  while (!host.empty() && host.back() == '.') host.pop_back();
  unsigned char buf[16];
  if (host.empty() || inet_pton(AF_INET, host.c_str(), buf) == 1 ||
      inet_pton(AF_INET6, host.c_str(), buf) == 1)
    return std::nullopt;
  size_t dot = host.find('.');
  if (dot == std::string::npos || dot == 0 || host.find("..") != std::string::npos)
    return std::nullopt;
  return RegistryHostname{host.substr(0, dot), host.substr(dot + 1)};
}

}  // namespace weft::control::compile
