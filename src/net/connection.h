#pragma once
// Connection: one non-blocking stream socket with its Transport (plaintext or TLS), an input and
// an output Buffer, registered edge-triggered with one EventLoop. Used for both downstream
// (accepted) and upstream (connecting) sockets. Single-threaded: everything runs on the loop's
// thread.
//
// Callbacks: the owner implements ConnectionCallbacks. onClose is called once when the connection
// ends for any reason other than the owner calling close(); after that no callback runs. A
// callback may call close() on its own connection, but must not destroy the Connection inside a
// callback: hand it to EventLoop::deferDelete instead.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/buffer.h"
#include "net/event_loop.h"
#include "net/socket.h"
#include "net/transport.h"

namespace weft::net {

enum class CloseReason {
  kRemoteClosed,     // the peer closed (EOF or reset)
  kError,            // I/O or TLS error; detail says which
  kConnectFailed,    // the TCP connect did not complete
  kHandshakeFailed,  // TLS handshake or peer verification failed
};

class Connection;

class ConnectionCallbacks {
 public:
  // TCP connect (if connecting) and the TLS handshake (if TLS) have completed.
  virtual void onConnected(Connection&) {}
  // New bytes were appended to conn.input(); consume what you use, leave the rest.
  virtual void onData(Connection& conn) = 0;
  // The output buffer drained below the low watermark after having been above the high one.
  virtual void onWriteDrained(Connection&) {}
  virtual void onClose(Connection& conn, CloseReason reason, std::string_view detail) = 0;

 protected:
  ~ConnectionCallbacks() = default;
};

class Connection final : public IoHandler, private EndOfRound {
 public:
  // Takes ownership of fd. `connecting`: the fd is an in-progress connect().
  Connection(EventLoop& loop, int fd, std::unique_ptr<Transport> transport,
             ConnectionCallbacks* callbacks, bool connecting);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void setCallbacks(ConnectionCallbacks* callbacks) { callbacks_ = callbacks; }
  // Queues data and writes as much as the socket takes now.
  void write(std::string_view data);
  // Flushes what is queued in output() (after appending to it directly).
  void flush();
  // Like flush(), except while the loop is dispatching I/O events: then the write happens once,
  // when every callback of the round has run (EventLoop::atEndOfRound), so what many callbacks
  // of one round queue (an HTTP/2 connection's frames for many streams) leaves in one write.
  // A connection destroyed before then is skipped. Output above the high watermark at the call
  // still ends in onWriteDrained once written.
  void flushSoon();
  Buffer& output() { return out_; }
  Buffer& input() { return in_; }
  // Backpressure: stop (true) or resume (false) reading from the socket.
  void readDisable(bool disable);
  bool readDisabled() const { return read_disabled_; }
  // flush=true: close after the output drains; false: close now (reset-like). Idempotent. No
  // onClose callback follows an owner's close().
  void close(bool flush);
  bool closed() const { return state_ == State::kClosed; }
  // Like close(true), and runs `on_closed` once the output has drained and the socket is closed
  // (at once if it already is). For owners that go away before their last bytes are written:
  // see Worker::linger().
  void closeAfterFlush(std::function<void()> on_closed);
  // The peer closed or reset (seen as EOF/error or EPOLLRDHUP): do not start another exchange.
  bool peerClosed() const { return peer_eof_ || peer_hup_; }
  bool connected() const { return state_ == State::kOpen; }
  // Bytes queued but not yet written.
  size_t pendingOutput() const { return out_.size(); }
  bool aboveHighWatermark() const { return out_.size() > kHighWatermark; }

  const PeerInfo& peer() const { return transport_->peer(); }
  const Transport& transport() const { return *transport_; }
  const Address& remoteAddress() const { return remote_; }
  const Address& localAddr() const { return local_; }
  int fd() const { return fd_; }
  uint64_t bytesRead() const { return bytes_read_; }
  uint64_t bytesWritten() const { return bytes_written_; }

  void onIoEvents(uint32_t events) override;

  static constexpr size_t kHighWatermark = 1 << 20;  // 1 MiB queued output: stop the producer
  static constexpr size_t kLowWatermark = 256 << 10;

 private:
  enum class State { kConnecting, kHandshaking, kOpen, kClosing, kClosed };
  void onEndOfRound() override;
  void doHandshake();
  void doRead();
  void doWrite(bool owner_call);
  void failLater(CloseReason reason, std::string detail);
  void runOnFlushed();
  void fail(CloseReason reason, std::string detail);
  void closeNow();

  EventLoop& loop_;
  int fd_;
  std::unique_ptr<Transport> transport_;
  ConnectionCallbacks* callbacks_;
  State state_;
  Buffer in_;
  Buffer out_;
  Address remote_;
  Address local_;
  bool read_disabled_ = false;
  bool read_pending_ = false;  // edge-triggered: data may remain unread while disabled
  bool above_high_ = false;
  bool flush_queued_ = false;  // flushSoon() registered with the loop for this round
  bool peer_hup_ = false;
  bool peer_eof_ = false;
  std::function<void()> on_flushed_;  // the peer's FIN (or an error) was signalled: read to EOF
  bool in_callback_ = false;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  // Expires with the connection; posted callbacks hold a weak_ptr to it.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace weft::net
