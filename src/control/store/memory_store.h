#pragma once
// An in-memory Store with the same semantics as the durable ones (per-key revisions from one
// store-wide counter, atomic batches with preconditions, kStoreConflict on a failed
// precondition), for tests and for a throwaway server. Nothing survives the object.
//
// Thread-safety: every method may be called from any thread; one mutex guards the map (this is
// the control plane, not the request path of a proxy).

#include <map>
#include <mutex>

#include "control/store/store.h"

namespace weft::control {

class MemoryStore final : public Store {
 public:
  Result<std::optional<KeyValue>> get(std::string_view key) override;
  Result<std::vector<KeyValue>> list(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override;
  Result<int64_t> commit(const std::vector<StoreOp>& ops) override;

  // The store-wide revision of the last commit (0 before any).
  int64_t revision() const;

 private:
  struct Entry {
    std::string value;
    int64_t revision;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> data_;
  int64_t revision_ = 0;
};

}  // namespace weft::control
