// Fuzz target: the config loader (YAML and JSON through the protobuf mapping, then validation)
// must answer any bytes with a config or an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  weft::proxy::ValidateOptions opts;
  opts.check_files = false;  // no filesystem access from fuzz inputs
  for (auto fmt : {weft::proxy::Format::kYaml, weft::proxy::Format::kJson}) {
    auto cfg = weft::proxy::loadConfigText(text, fmt, "fuzz", opts);
    if (cfg) (void)weft::proxy::configToJson(*cfg, true);
  }
  return 0;
}
