#pragma once
// The control plane's durable state, as an ordered key-value map with per-key revisions.
//
// Keys are '/'-separated paths ("appmesh/meshes/m1", "appmesh/meshes/m1/virtualNodes/n1");
// values are opaque bytes (the model stores JSON). Every committed write gets the next value of
// one store-wide, strictly increasing revision; a key's `revision` is the revision of the commit
// that last wrote it. This is the shape etcd offers (mod_revision), so a second implementation
// backed by etcd is a new class, not a new interface.
//
// Concurrency: optimistic. A writer reads, decides, and commits a batch whose preconditions name
// the revisions it read; if any precondition fails nothing is written and commit() answers
// StoreError::kConflict, and the writer re-reads and retries. A successful commit is durable
// (on disk, fsynced) before it returns.
//
// Thread-safety: every method may be called from any thread concurrently.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::control {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t revision = 0;  // > 0
};

// One operation of an atomic batch.
struct StoreOp {
  enum class Kind {
    kPut,     // write `value` at `key`
    kDelete,  // remove `key` (it must exist unless expected_revision == kAnyRevision)
    kCheck,   // write nothing; only the precondition
  };
  // expected_revision: kAnyRevision (no precondition), kAbsent (the key must not exist), or
  // the exact revision the key must still have.
  static constexpr int64_t kAnyRevision = -1;
  static constexpr int64_t kAbsent = 0;

  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  int64_t expected_revision = kAnyRevision;

  static StoreOp put(std::string key, std::string value, int64_t expected) {
    return {Kind::kPut, std::move(key), std::move(value), expected};
  }
  static StoreOp remove(std::string key, int64_t expected) {
    return {Kind::kDelete, std::move(key), {}, expected};
  }
  static StoreOp check(std::string key, int64_t expected) {
    return {Kind::kCheck, std::move(key), {}, expected};
  }
};

// Error::code of a failed precondition, so callers can tell a conflict (re-read and retry) from
// an I/O failure (report).
inline constexpr int kStoreConflict = 409;

class Store {
 public:
  virtual ~Store() = default;

  // The value at `key`, or nullopt when absent. Errors only on I/O failure.
  virtual Result<std::optional<KeyValue>> get(std::string_view key) = 0;

  // Keys that start with `prefix` and sort strictly after `start_after` (byte order), at most
  // `limit` of them (0 = no limit), in key order.
  virtual Result<std::vector<KeyValue>> list(std::string_view prefix, std::string_view start_after,
                                             size_t limit) = 0;

  // Applies every op atomically if every precondition holds; answers the new store revision.
  // A batch of only kCheck ops (or an empty one) writes nothing and does not advance the
  // revision: it answers the current one. A failed precondition answers an error with code
  // kStoreConflict.
  virtual Result<int64_t> commit(const std::vector<StoreOp>& ops) = 0;
};

}  // namespace weft::control
