#pragma once
// Certificate reload without restart.
//
// ContextSlot<T> holds the current immutable context (ServerContext or ClientContext). Workers
// read it when they accept or open a connection; the main thread replaces it after a reload.
// CertWatcher, polled from a timer on the main thread (every 1-2 s), notices when the files a
// context was built from change (device, inode, size or mtime differ; a symlink swap counts) and
// rebuilds. A failed rebuild — a half-written file, a key that does not match its certificate —
// keeps the old context, is logged, and is retried on the next change of the files.
//
// Typical use:
//   auto tls = watchServerContext(listener.tls(), "listener " + listener.name() + " tls");
//   // workers:      tls->slot->current()->newTransport(fd)   (or a per-worker SlotReader)
//   // main thread:  timer every 1 s -> tls->watcher->poll()
//
// Why std::atomic<std::shared_ptr>: C++20, readers never see a torn pointer and the old context is
// released by whoever drops the last reference (a connection may keep it long after a reload).
// With g++ 12 / libstdc++ it is not lock-free: load() takes a one-bit spinlock embedded in the
// control-block pointer for the few instructions of a reference-count increment; there is no
// syscall and no sleeping lock, and the writer holds it only for a pointer swap. For workers that
// want no shared cache-line traffic at all, SlotReader keeps a per-worker copy and only reloads
// when an atomic version counter moved (one atomic load per accept).

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "net/tls/tls_context.h"

namespace weft::net::tls {

// Thread-safe holder of the current context. current() and version() may be called from any
// thread; store() is called by one thread (the watcher's).
template <class T>
class ContextSlot {
 public:
  explicit ContextSlot(std::shared_ptr<const T> initial) : ptr_(std::move(initial)) {}
  ContextSlot(const ContextSlot&) = delete;
  ContextSlot& operator=(const ContextSlot&) = delete;

  std::shared_ptr<const T> current() const { return ptr_.load(std::memory_order_acquire); }
  // Increases by one with every store(); starts at 1.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  void store(std::shared_ptr<const T> next) {
    ptr_.store(std::move(next), std::memory_order_release);
    version_.fetch_add(1, std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const T>> ptr_;
  std::atomic<uint64_t> version_{1};
};

// A per-worker cached view of a slot. Not thread-safe: one per worker thread. The slot must
// outlive the reader. The cached context may lag a store() by the time it takes the version
// increment to become visible; it is never older than the slot's previous value.
template <class T>
class SlotReader {
 public:
  explicit SlotReader(const ContextSlot<T>& slot) : slot_(slot) {}
  const std::shared_ptr<const T>& current() {
    uint64_t v = slot_.version();
    if (v != seen_) {
      cached_ = slot_.current();  // ptr is stored before version moves, so this is >= v
      seen_ = v;
    }
    return cached_;
  }

 private:
  const ContextSlot<T>& slot_;
  std::shared_ptr<const T> cached_;
  uint64_t seen_ = 0;
};

// What identifies a file's content without reading it.
struct FileStamp {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
FileStamp stampFile(const std::string& path);

// Watches a set of files and calls `rebuild` when any of them changed since the last poll. Used
// from one thread (the main thread's timer).
class CertWatcher {
 public:
  // Builds the new context from the files and installs it; returns why it could not.
  using Rebuild = std::function<Status()>;

  // Stamps the files now. `name` prefixes log lines.
  CertWatcher(std::string name, std::vector<std::string> files, Rebuild rebuild);

  // true: files changed and a new context is installed. false: nothing changed. Error: files
  // changed but the rebuild failed; the old context stays. Both outcomes are also logged.
  // A failed rebuild is not retried until the files change again.
  Result<bool> poll();

  // Rebuilds unconditionally (re-stamping first).
  Status reload();

  const std::vector<std::string>& files() const { return files_; }

 private:
  std::vector<FileStamp> stampAll() const;

  std::string name_;
  std::vector<std::string> files_;
  Rebuild rebuild_;
  std::vector<FileStamp> stamps_;
};

// A slot plus the watcher that keeps it fresh. Members are destroyed watcher first.
template <class T>
struct WatchedContext {
  std::unique_ptr<ContextSlot<T>> slot;
  std::unique_ptr<CertWatcher> watcher;
};

// Stamps the files, builds the first context (an error here is a config error: fail the load),
// and returns a slot and a watcher that rebuilds from the same config. Reloaded server contexts
// keep the session-ticket key of the context they replace.
Result<WatchedContext<ServerContext>> watchServerContext(const v1::ListenerTls& cfg,
                                                         std::string name = "listener tls");
Result<WatchedContext<ClientContext>> watchClientContext(const v1::UpstreamTls& cfg,
                                                         std::string name = "upstream tls");

}  // namespace weft::net::tls
