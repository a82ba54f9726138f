#pragma once
// Http2Pool: one worker's HTTP/2 connections to the hosts of one cluster (Cluster.protocol HTTP2),
// each carrying many requests at once. Same shape as ConnPool: acquire() hands out a connection
// with room for one more stream at once (kReady), or the user waits (kPending) for a connection
// being made, or the limits answer kOverflow; the user then submits its request on the
// connection it was given and holds that stream until it closes or the user release()s it.
//
// Connections: the TCP (and TLS) connection comes from the cluster's ConnPool (acquire(fresh)), so
// connect timeout, TLS origination, max_connections and the connection counters are the
// cluster's, shared with HTTP/1; each carries one client http2::Codec. Over TLS the peer must
// select ALPN "h2" (or none: then HTTP/2 is spoken by prior knowledge). A connection takes
// streams once the peer's SETTINGS arrived, up to its SETTINGS_MAX_CONCURRENT_STREAMS;
// beyond that requests wait (at most max_pending) or another connection is opened. A GOAWAY
// from the peer retires the connection: no new stream is put on it, and it is closed when its
// last stream ends; the streams the peer did not process close as kRefused (safe to retry:
// the `stream-error` retry event). A connection without streams closes after idle_timeout.
//
// Flow control: response DATA given to a user counts against the stream's receive window until
// the user hands it back with consume(); the connection's window is credited as DATA arrives
// (http2::Options::connection_window_on_arrival), so a slow user stalls only its own stream and
// the bytes held for users stay below streams x stream window. sendData returns false when the
// stream's send buffer is full, and onH2Writable says when to go on (http2::Codec).
//
// Single-threaded: one worker's loop; users are that worker's sessions.

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"
#include "common/timer.h"
#include "http/http2/codec.h"
#include "net/connection.h"
#include "upstream/host_set.h"
#include "upstream/pool.h"

namespace weft::upstream {

class Http2Connection;
class Http2Pool;

// The holder of one stream (or a waiter for one). Callbacks arrive only while it holds (or waits
// for) one; a callback may call the connection's methods but never destroys it.
class Http2StreamUser {
 public:
  // A connection with room for one stream is reserved for this user: call conn.submit() now
  // (before returning). Also the meaning of acquire() returning kReady.
  virtual void onH2Ready(Http2Connection& conn) = 0;
  // No connection could be made (connect, TLS, or the peer does not speak h2). The user holds
  // nothing. `conn` is the failed connection when there was one, valid during the call.
  virtual void onH2Failure(net::CloseReason reason, std::string_view detail,
                           const net::Connection* conn) = 0;
  // The stream's response: HeadersKind kInformational, kResponse, then maybe kTrailers. The
  // block's views are valid only during the call.
  virtual void onH2Headers(const http2::HeaderBlock& block) = 0;
  // Response body bytes (valid during the call); hand them back with conn.consume() once
  // forwarded.
  virtual void onH2Data(std::string_view data) = 0;
  // The peer ended the stream (the response is complete).
  virtual void onH2End() = 0;
  // The stream is gone before the user released it (reset, refused, connection lost, or closed
  // after onH2End). The user holds nothing afterwards. `detail` says why, for logs.
  virtual void onH2Close(http2::CloseCause cause, uint32_t error_code, std::string_view detail) = 0;
  // The stream's send buffer drained after sendData returned false.
  virtual void onH2Writable() {}

 protected:
  ~Http2StreamUser() = default;
};

class Http2Connection final : public PoolUser, public http2::Callbacks {
 public:
  Http2Connection(Http2Pool& pool, const Host& host);
  ~Http2Connection();

  // Opens the stream for the user this connection was reserved for (onH2Ready / kReady). On
  // error (ErrorCode kStreamLimit or kGoingAway: the peer just refused more streams) the
  // reservation is gone; treat it as a refused stream.
  Result<int32_t> submit(Http2StreamUser& user, const http2::RequestHeaders& request,
                         bool end_stream);
  // Request body and trailers (http2::Codec::sendData / submitTrailers).
  Result<bool> sendData(int32_t stream_id, std::string_view data, bool end_stream);
  Status submitTrailers(int32_t stream_id, std::span<const http::HeaderField> fields);
  // Hands `n` response bytes back to the flow-control windows.
  void consume(int32_t stream_id, size_t n);
  // The user lets go of its stream: no callback for it follows. A stream still open is reset
  // (CANCEL); `unconsumed` bytes the user was given and did not consume are handed back.
  void release(int32_t stream_id, size_t unconsumed);

  // Would take another stream now (connected, the peer's SETTINGS known, no GOAWAY, room).
  bool acceptsStreams() const { return hasRoom(); }
  const std::string& hostAddressString() const { return address_string_; }
  bool secure() const;
  // Streams this connection has carried (1 = fresh).
  uint32_t uses() const { return uses_; }

  // PoolUser (the underlying connection, from the ConnPool)
  void onUpstreamReady(PooledConnection& conn) override;
  void onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                         const net::Connection* conn) override;
  void onUpstreamData(PooledConnection& conn) override;
  void onUpstreamDrained(PooledConnection& conn) override;
  void onUpstreamClosed(PooledConnection& conn, net::CloseReason reason,
                        std::string_view detail) override;

  // http2::Callbacks
  void onHeaders(int32_t stream_id, const http2::HeaderBlock& block) override;
  void onData(int32_t stream_id, std::string_view data) override;
  void onStreamEnd(int32_t stream_id) override;
  void onStreamClose(int32_t stream_id, http2::CloseCause cause, uint32_t error_code) override;
  void onGoaway(int32_t last_stream_id, uint32_t error_code) override;
  void onStreamWritable(int32_t stream_id) override;

 private:
  friend class Http2Pool;
  enum class State { kConnecting, kReady, kDead };
  bool hasRoom() const;
  // Connecting, or connected without the peer's SETTINGS yet: waiters count on it.
  bool onItsWay() const {
    return state_ == State::kConnecting || (state_ == State::kReady && !settled_);
  }
  size_t load() const { return streams_.size() + reserved_; }
  // Writes what the codec queued (deferred while feeding it), closes a retired connection
  // whose last stream ended, and re-arms the idle timer.
  void flushOut();
  // Ends the connection: every attached stream gets onH2Close(kError, detail); before the
  // peer's SETTINGS, the waiters it was opened for get onH2Failure(kConnectFailed).
  void fail(std::string_view detail);
  void closeIdle();
  Http2StreamUser* userOf(int32_t stream_id) const;

  Http2Pool& pool_;
  std::string address_string_;
  State state_ = State::kConnecting;
  PooledConnection* pc_ = nullptr;
  std::unique_ptr<http2::Codec> codec_;  // writes into pc_'s output: destroyed first
  std::unordered_map<int32_t, Http2StreamUser*> streams_;  // null: released, not yet closed
  uint32_t reserved_ = 0;  // handed out (kReady / onH2Ready), not yet submitted
  uint32_t uses_ = 0;
  bool retiring_ = false;  // GOAWAY received: no new stream
  bool settled_ = false;   // the peer's SETTINGS arrived: streams may be put on it
  int depth_ = 0;          // > 0 while feeding the codec
  Timer idle_timer_;
  std::list<std::unique_ptr<Http2Connection>>::iterator self_;
};

class Http2Pool {
 public:
  // `pool` makes the connections (and must outlive this pool); `limits` gives max_pending and
  // the idle timeout; `stats` the weft_cluster_http2_* counters.
  Http2Pool(net::EventLoop& loop, ConnPool& pool, PoolLimits limits, const TimeSource& time,
            http2::Stats stats = {});
  ~Http2Pool();
  Http2Pool(const Http2Pool&) = delete;
  Http2Pool& operator=(const Http2Pool&) = delete;

  using Acquire = ConnPool::Acquire;
  // kReady: `out` has room reserved for the user, who submits on it now. kPending: onH2Ready or
  // onH2Failure follows. kOverflow: too many waiting. kFailed: the connect failed at once.
  Acquire acquire(const Host& host, Http2StreamUser& user, Http2Connection*& out,
                  std::string& error);
  // Withdraws a waiting user.
  void cancel(Http2StreamUser& user);

  size_t openConnections() const { return conns_.size(); }
  size_t pendingRequests() const { return pending_.size(); }

  // Streams assumed available on a connection before the peer's SETTINGS.
  static constexpr uint32_t kAssumedStreams = 100;

 private:
  friend class Http2Connection;
  struct Waiter {
    Http2StreamUser* user;
    const Host* host;
    std::string key;
  };
  // Starts a connection to `host`; null (with `a` kFailed or kOverflow and `error`) on failure.
  Http2Connection* connect(const Host& host, Acquire& a, std::string& error);
  Http2Connection* withRoom(const std::string& key);
  // Hands free streams to the waiters of `key` and opens connections for those left over.
  void servePending(const std::string& key);
  void onConnectFailed(Http2Connection& c, net::CloseReason reason, std::string_view detail,
                       const net::Connection* conn);
  void destroy(Http2Connection& c);

  net::EventLoop& loop_;
  ConnPool& pool_;
  PoolLimits limits_;
  const TimeSource& time_;
  http2::Stats stats_;
  std::list<std::unique_ptr<Http2Connection>> conns_;
  std::list<Waiter> pending_;
  bool serving_ = false;  // servePending is on the stack
  // Expires with the pool; posted callbacks hold a weak_ptr to it.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace weft::upstream
