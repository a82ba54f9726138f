#pragma once
// A Store decorator that tells a listener which keys each successful commit wrote or deleted,
// after the commit is durable. The push server uses it to recompile exactly the proxies a write
// affects (docs/config-push.md). Reads and failed commits pass through silently.
//
// Thread-safety: as the wrapped store. The listener runs on the committing thread, after the
// commit returned, with no lock held; it must be quick (the push server only queues the keys).
// set_listener must be called before any other thread uses the store.

#include <functional>
#include <string>
#include <vector>

#include "control/store/store.h"

namespace weft::control {

class NotifyingStore final : public Store {
 public:
  using Listener = std::function<void(const std::vector<std::string>& changed_keys)>;

  // `inner` must outlive this object.
  explicit NotifyingStore(Store& inner) : inner_(inner) {}
  void setListener(Listener listener) { listener_ = std::move(listener); }

  Result<std::optional<KeyValue>> get(std::string_view key) override { return inner_.get(key); }
  Result<std::vector<KeyValue>> list(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override {
    return inner_.list(prefix, start_after, limit);
  }
  Result<int64_t> commit(const std::vector<StoreOp>& ops) override {
    auto r = inner_.commit(ops);
    if (r && listener_) {
      std::vector<std::string> keys;
      for (const auto& op : ops)
        if (op.kind != StoreOp::Kind::kCheck) keys.push_back(op.key);
      if (!keys.empty()) listener_(keys);
    }
    return r;
  }

 private:
  Store& inner_;
  Listener listener_;
};

}  // namespace weft::control
