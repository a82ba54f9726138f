#pragma once
// Server side of `weft stack`: stack records (template, parameters, the resources a deploy made
// with their physical ids and attributes, outputs, exports) kept in the Store, on the paths
// `/weft/v1/stacks...`. Resolving a template and creating the resources is the CLI's job
// (src/cli); this API only keeps what a deploy produced, so `stack list|describe|delete` and
// Fn::ImportValue work across CLI invocations.
//
// Thread-safety: handle() may be called from several threads at once.

#include <memory>
#include <string_view>

#include "common/time.h"
#include "control/api/api_types.h"
#include "control/store/store.h"

namespace weft::control::stacks {

class StackApi {
 public:
  StackApi(Store& store, const TimeSource& time);
  ~StackApi();

  static bool handles(std::string_view path);  // "/weft/v1/stacks" and below
  ApiResponse handle(const ApiRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::stacks
