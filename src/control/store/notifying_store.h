#pragma once
// A Store decorator that tells a listener which keys each successful commit changed (wrote
// with new bytes, or deleted), after the commit is durable. The push server uses it to recompile
// exactly the proxies a write affects (docs/config-push.md). Reads and failed commits pass through
// silently.
//
// Thread-safety: as the wrapped store. The listener runs on the committing thread, after the
// commit returned, with no lock held; it must be quick (the push server only queues the keys).
// setListener must be called before any thread commits through the store (readers may already
// run: the listener is read only by commit).

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
  // A put that rewrites a key with the bytes it already holds is not a change and is not
  // reported: the App Mesh model rewrites a parent unchanged (under a revision precondition) on
  // every create of a child, so that a racing delete of the parent conflicts; reporting it would
  // recompile every proxy of the mesh on every create. The precondition makes the comparison
  // exact: had the key changed since it was read here, the commit would fail.
  Result<int64_t> commit(const std::vector<StoreOp>& ops) override {
    std::vector<std::string> keys;
    if (listener_) {
      for (const auto& op : ops) {
        if (op.kind == StoreOp::Kind::kCheck) continue;
        if (op.kind == StoreOp::Kind::kPut && op.expected_revision > 0) {
          auto old = inner_.get(op.key);
          if (old && *old && (**old).revision == op.expected_revision && (**old).value == op.value)
            continue;
        }
        keys.push_back(op.key);
      }
    }
    auto r = inner_.commit(ops);
    if (r && !keys.empty()) listener_(keys);
    return r;
  }

 private:
  Store& inner_;
  Listener listener_;
};

}  // namespace weft::control
