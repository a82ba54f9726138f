// Fuzz target: a HealthCheckResponse message as a (possibly hostile) upstream sends it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "upstream/grpc_health_probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int status =
      weft::upstream::grpcHealthStatus(std::string_view(reinterpret_cast<const char*>(data), size));
  if (status < -1) __builtin_trap();  // -1 or a decoded (non-negative) value only
  return 0;
}
