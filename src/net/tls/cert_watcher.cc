#include "net/tls/cert_watcher.h"

#include <sys/stat.h>

#include "common/log.h"

namespace weft::net::tls {

FileStamp stampFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return FileStamp{};
  FileStamp s;
  s.exists = true;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  return s;
}

CertWatcher::CertWatcher(std::string name, std::vector<std::string> files, Rebuild rebuild)
    : name_(std::move(name)), files_(std::move(files)), rebuild_(std::move(rebuild)) {
  stamps_ = stampAll();
}

std::vector<FileStamp> CertWatcher::stampAll() const {
  std::vector<FileStamp> stamps;
  stamps.reserve(files_.size());
  for (const std::string& f : files_) stamps.push_back(stampFile(f));
  return stamps;
}

Result<bool> CertWatcher::poll() {
  // Stamp before the rebuild reads: a write that lands after the stamp is seen by the next poll.
  std::vector<FileStamp> now = stampAll();
  if (now == stamps_) return false;
  stamps_ = std::move(now);
  Status st = rebuild_();
  if (!st) {
    log::warn("tls", name_ + ": certificate reload failed, keeping the previous certificates: " +
                         st.error().message);
    return makeError(st.error().message);
  }
  log::info("tls", name_ + ": certificates reloaded");
  return true;
}

Status CertWatcher::reload() {
  stamps_ = stampAll();
  return rebuild_();
}

Result<WatchedContext<ServerContext>> watchServerContext(const v1::ListenerTls& cfg,
                                                         std::string name) {
  WatchedContext<ServerContext> out;
  out.slot = std::make_unique<ContextSlot<ServerContext>>(nullptr);
  ContextSlot<ServerContext>* slot = out.slot.get();
  auto rebuild = [cfg, name, slot]() -> Status {
    std::shared_ptr<const ServerContext> previous = slot->current();
    auto next = ServerContext::create(cfg, name, previous.get());
    if (!next) return makeError(next.error().message);
    slot->store(std::move(*next));
    return {};
  };
  out.watcher = std::make_unique<CertWatcher>(name, filesOf(cfg), std::move(rebuild));
  if (Status st = out.watcher->reload(); !st) return makeError(st.error().message);
  return out;
}

Result<WatchedContext<ClientContext>> watchClientContext(const v1::UpstreamTls& cfg,
                                                         std::string name) {
  WatchedContext<ClientContext> out;
  out.slot = std::make_unique<ContextSlot<ClientContext>>(nullptr);
  ContextSlot<ClientContext>* slot = out.slot.get();
  auto rebuild = [cfg, name, slot]() -> Status {
    auto next = ClientContext::create(cfg, name);
    if (!next) return makeError(next.error().message);
    slot->store(std::move(*next));
    return {};
  };
  out.watcher = std::make_unique<CertWatcher>(name, filesOf(cfg), std::move(rebuild));
  if (Status st = out.watcher->reload(); !st) return makeError(st.error().message);
  return out;
}

}  // namespace weft::net::tls
