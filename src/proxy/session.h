#pragma once
// Session: what a Worker owns per accepted downstream connection (HTTP or TCP). The worker keeps
// them in one list; a session unlinks itself through Worker::sessionClosed().

#include <list>
#include <memory>

namespace weft::proxy {

class Session {
 public:
  virtual ~Session() = default;
  // Worker drain: stop taking new work; close when what is in flight is done.
  virtual void drain() = 0;
  // True when no request (or relay) is in flight, so retired cluster runtimes may be freed.
  virtual bool idle() const = 0;

  std::list<std::unique_ptr<Session>>::iterator self;
};

}  // namespace weft::proxy
