#pragma once
// ByteRelay: bytes relayed both ways between one downstream Connection and one upstream
// connection held from a ConnPool. The one relay of the proxy, used by TcpSession (tcp_proxy
// listeners, the interception passthrough) and by HttpSession once an HTTP/1.1 Upgrade was
// answered 101 (WebSocket and other upgraded protocols).
//
// Flow: bytes read on one side are appended to the other side's output; a side whose output rises
// above its high watermark (net::Connection::kHighWatermark) stops the other side from reading
// until it drains below the low watermark, so a relay holds at most a few MiB whatever the peers
// do. There is no half-close: when one side closes, what it sent is delivered to the other, which
// is then closed too. No byte either way for the idle timeout calls `on_idle`.
//
// The relay owns no connection and receives no event itself: its owner implements the connection
// and pool callbacks and forwards them (downstreamData, upstreamDrained, ...). It does hold the
// upstream connection from start() until one of the ends (downstreamClosed, upstreamClosed,
// stop), and gives it back to the pool, never for reuse.
//
// Single-threaded: on the owner's worker loop.

#include <cstdint>
#include <functional>

#include "common/time.h"
#include "common/timer.h"
#include "net/connection.h"
#include "upstream/pool.h"

namespace weft::proxy {

class ByteRelay {
 public:
  // `on_idle` runs from the relay's timer when no byte moved for the idle timeout; the owner
  // ends the relay (stop()) and closes its side.
  ByteRelay(TimerQueue& timers, std::function<void()> on_idle);
  ~ByteRelay();
  ByteRelay(const ByteRelay&) = delete;
  ByteRelay& operator=(const ByteRelay&) = delete;

  // Starts relaying between `down` and `up` (held from `pool`; the relay now holds it). Bytes
  // already read on either side are relayed at once. `down` must outlive the relay's activity.
  // `idle_timeout` 0 = never.
  void start(net::Connection& down, upstream::ConnPool& pool, upstream::PooledConnection& up,
             Duration idle_timeout);
  // Between start() and the end (downstreamClosed / upstreamClosed / stop).
  bool active() const { return up_ != nullptr; }

  // Events the owner forwards while active() (ignored otherwise).
  void downstreamData();
  void upstreamData();
  void downstreamDrained();  // the downstream output drained: read the upstream again
  void upstreamDrained();    // the upstream output drained: read the downstream again

  // The client closed: what it sent is queued to the upstream, which is closed once that is
  // written (ConnPool::releaseAfterFlush). The relay is over.
  void downstreamClosed();
  // The upstream closed (the pool frees it; call from onUpstreamClosed): what it sent is queued
  // on the downstream output. The relay is over; the owner closes the client after the flush.
  void upstreamClosed(upstream::PooledConnection& up);
  // Ends the relay at once: the upstream is closed without flushing. Idempotent.
  void stop();

  // Bytes relayed client -> upstream and upstream -> client (for the access log).
  uint64_t bytesUp() const { return bytes_up_; }
  uint64_t bytesDown() const { return bytes_down_; }

 private:
  // Moves what `from` has read to `to`'s output; pauses `from` when `to` is above its high
  // watermark. Returns the number of bytes moved.
  size_t move(net::Connection& from, net::Connection& to);
  void onIdleTimer();
  void end();

  Duration idle_timeout_{};
  std::function<void()> on_idle_;
  Timer idle_timer_;
  MonoTime last_activity_{};
  TimerQueue& timers_;
  net::Connection* down_ = nullptr;
  upstream::ConnPool* pool_ = nullptr;
  upstream::PooledConnection* up_ = nullptr;
  uint64_t bytes_up_ = 0, bytes_down_ = 0;
};

}  // namespace weft::proxy
