#pragma once
// Http2Session: one downstream HTTP/2 connection (h2 by ALPN, or h2c by prior knowledge) and its
// streams. Each stream is one exchange, routed and proxied exactly like an HTTP/1 request: the
// per-request logic (routing, breaker, retries, outlier feed, stats, access log, upstream head)
// is ExchangeCore's, shared with HttpSession; what is here is only the HTTP/2 side of it.
// Upstreams are HTTP/1.1 (the cluster's ConnPool): each stream holds its own upstream connection
// while its exchange is in flight.
//
// Flow control end to end (docs/http2.md):
//  - request bodies: bytes from onData are written to the stream's upstream connection and
//    handed back to the codec (consume) only once that connection's output is below its high
//    watermark (else from onUpstreamDrained); before the upstream is connected they wait in the
//    stream, bounded by the stream's receive window.
//  - response bodies: when the codec's per-stream send buffer is full (sendData false) the
//    stream stops reading its upstream connection until onStreamWritable.
//
// Created by HttpSession when ALPN selected "h2" or the first bytes were the h2c preface; it
// takes over the connection (and the bytes read so far). Single-threaded, owned by the Worker.

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/timer.h"
#include "http/http2/codec.h"
#include "net/connection.h"
#include "proxy/session.h"
#include "proxy/snapshot.h"

namespace weft::proxy {

class Worker;

class Http2Session final : public Session,
                           public net::ConnectionCallbacks,
                           public http2::Callbacks {
 public:
  // `counted_rx`/`counted_tx`: connection bytes the previous owner already counted. The
  // connection is already counted in the listener's cx_total / cx_active.
  // `original_dst`: see HttpSession.
  Http2Session(Worker& worker, std::unique_ptr<net::Connection> conn,
               std::shared_ptr<const ListenerInfo> listener, uint64_t counted_rx,
               uint64_t counted_tx, std::optional<net::Address> original_dst = std::nullopt);
  ~Http2Session();

  // Creates the codec and processes what the connection has read so far. May end the session.
  void start();

  // Worker drain: GOAWAY; streams in flight finish, then the connection closes.
  void drain() override;
  bool idle() const override { return streams_.empty(); }

  // net::ConnectionCallbacks
  void onData(net::Connection&) override;
  void onWriteDrained(net::Connection&) override;
  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override;

  // http2::Callbacks
  void onHeaders(int32_t stream_id, const http2::HeaderBlock& block) override;
  void onData(int32_t stream_id, std::string_view data) override;
  void onStreamEnd(int32_t stream_id) override;
  void onStreamClose(int32_t stream_id, http2::CloseCause cause, uint32_t error_code) override;
  void onStreamWritable(int32_t stream_id) override;

 private:
  class Stream;
  friend class Stream;

  // Writes what the codec queued; closes the connection once the codec is done. Deferred while
  // a codec call is on the stack (the outermost caller flushes).
  void flushOut();
  void teardown();
  void countBytes();
  void onIdleTimeout();
  // The live listener (reloads apply to new streams).
  const std::shared_ptr<const ListenerInfo>& liveListener();

  Worker& worker_;
  std::unique_ptr<net::Connection> conn_;
  std::shared_ptr<const ListenerInfo> listener_;
  std::optional<net::Address> original_dst_;
  std::unique_ptr<http2::Codec> codec_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  Timer idle_timer_;
  uint64_t counted_rx_ = 0, counted_tx_ = 0;
  // Streams answered while the client was still sending: RST_STREAM(NO_ERROR) once their
  // response is written (RFC 9113 §8.1).
  std::vector<int32_t> resets_;
  int depth_ = 0;  // > 0 while feeding the codec
  bool closed_ = false;
};

}  // namespace weft::proxy
