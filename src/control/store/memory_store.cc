#include "control/store/memory_store.h"

namespace weft::control {

Result<std::optional<KeyValue>> MemoryStore::get(std::string_view key) {
  std::lock_guard lock(mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(KeyValue{it->first, it->second.value, it->second.revision});
}

Result<std::vector<KeyValue>> MemoryStore::list(std::string_view prefix,
                                                std::string_view start_after, size_t limit) {
  std::lock_guard lock(mu_);
  std::vector<KeyValue> out;
  auto it = start_after < prefix ? data_.lower_bound(prefix) : data_.upper_bound(start_after);
  for (; it != data_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    out.push_back(KeyValue{it->first, it->second.value, it->second.revision});
    if (limit != 0 && out.size() >= limit) break;
  }
  return out;
}

Result<int64_t> MemoryStore::commit(const std::vector<StoreOp>& ops) {
  std::lock_guard lock(mu_);
  for (const StoreOp& op : ops) {
    auto it = data_.find(op.key);
    bool exists = it != data_.end();
    bool ok = true;
    if (op.expected_revision == StoreOp::kAbsent) {
      ok = !exists;
    } else if (op.expected_revision != StoreOp::kAnyRevision) {
      ok = exists && it->second.revision == op.expected_revision;
    } else if (op.kind == StoreOp::Kind::kDelete) {
      ok = true;  // deleting an absent key with no precondition is a no-op
    }
    if (!ok) return makeError("precondition failed on key " + op.key, kStoreConflict);
  }
  bool writes = false;
  for (const StoreOp& op : ops) writes |= op.kind != StoreOp::Kind::kCheck;
  if (!writes) return revision_;  // a check-only commit writes nothing: no new revision
  int64_t rev = ++revision_;
  for (const StoreOp& op : ops) {
    switch (op.kind) {
      case StoreOp::Kind::kPut:
        data_.insert_or_assign(op.key, Entry{op.value, rev});
        break;
      case StoreOp::Kind::kDelete:
        data_.erase(op.key);
        break;
      case StoreOp::Kind::kCheck:
        break;
    }
  }
  return rev;
}

int64_t MemoryStore::revision() const {
  std::lock_guard lock(mu_);
  return revision_;
}

}  // namespace weft::control
