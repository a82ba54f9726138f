#pragma once
// weft's HTTP/2 codec: one nghttp2 session per connection, bytes in and frames out, no sockets.
//
// The same class serves both sides of the proxy:
//  - Mode::kServer (downstream): the peer is a client that opens streams; requests arrive as
//    onStreamBegin + onHeaders(kRequest) + onData... + onStreamEnd, and the caller answers with
//    submitResponse / sendData / submitTrailers.
//  - Mode::kClient (upstream): the caller opens streams with submitRequest and receives
//    onHeaders(kInformational/kResponse/kTrailers), onData and onStreamEnd.
//
// Driving it (all on one thread; the codec is not thread-safe):
//   Codec codec(Mode::kServer, options, callbacks, conn.output(), time_source, stats);
//   on read:    Status s = codec.feed(bytes);  consume all of `bytes` from the input; if !s, flush
//               the output and close once it is written (a GOAWAY has been queued in it).
//   after any call: write what the codec appended to `output`; when the socket drained it below
//               the watermark, call codec.flush() so more frames are pulled.
//   codec.done(): nothing more will be read or written: close the connection after the output.
//
// Output: frames are appended to the caller's Buffer (given at construction, which must outlive
// the codec) whenever the codec is called and that buffer holds less than
// Options::output_high_watermark bytes; nghttp2 keeps the rest queued. Control frames that pile
// up inside nghttp2 because the peer does not read (PING and SETTINGS ACKs) are bounded by
// max_outbound_ack: past it the peer is flooding and the connection ends.
//
// Input flow control: automatic WINDOW_UPDATE is off. Every byte delivered by onData must be
// handed back with consume(stream_id, n) once the caller has forwarded it (also after the stream
// closed), and only then does the peer's window reopen. A slow reader thus stops the sender
// after initial_stream_window bytes per stream and initial_connection_window per connection.
//
// Output flow control: sendData appends to a per-stream send buffer that nghttp2 pulls from as
// the peer's windows allow; it returns false once that buffer holds stream_send_high_watermark
// bytes, and onStreamWritable fires when it drained below a quarter of that. The caller stops
// reading the body's source in between.
//
// Callbacks run inside feed() (and, for onStreamClose/onStreamWritable, inside any call that
// writes). A callback may call any method of the codec, except that it must not destroy the codec;
// bytes are written out when the outermost call returns.
//
// Errors are values: a connection-level error (peer protocol violation, flood) makes feed()
// return an Error whose code is an ErrorCode, with a GOAWAY already appended to the output. After
// that the codec is dead: every call fails or does nothing, no callback runs again, and open
// streams are gone without onStreamClose — the caller cleans up its own stream state. The same
// holds after the codec is destroyed.

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/buffer.h"
#include "common/result.h"
#include "common/stats.h"
#include "common/time.h"
#include "http/headers.h"

namespace weft::http2 {

enum class Mode : uint8_t { kServer, kClient };

// Error::code values of the codec's Results.
enum class ErrorCode : int {
  kProtocol = 1,     // the peer broke the protocol; connection ended with GOAWAY
  kFlood,            // a flood was detected; connection ended with GOAWAY(ENHANCE_YOUR_CALM)
  kStreamLimit,      // submitRequest: the peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached;
                     // queue the request or use another connection
  kGoingAway,        // submitRequest: GOAWAY sent or received, or stream ids exhausted; use a
                     // new connection
  kNoStream,         // the stream does not exist (closed, reset, never opened)
  kInvalidArgument,  // wrong mode, a pseudo-header among fields, data after end_stream...
  kClosed,           // the codec is dead (after an error or terminate())
  kInternal,         // nghttp2 refused for another reason (out of memory)
};

// HTTP/2 error codes (RFC 9113 §7) used by the API.
inline constexpr uint32_t kNoError = NGHTTP2_NO_ERROR;
inline constexpr uint32_t kProtocolError = NGHTTP2_PROTOCOL_ERROR;
inline constexpr uint32_t kInternalError = NGHTTP2_INTERNAL_ERROR;
inline constexpr uint32_t kRefusedStream = NGHTTP2_REFUSED_STREAM;
inline constexpr uint32_t kCancel = NGHTTP2_CANCEL;
inline constexpr uint32_t kEnhanceYourCalm = NGHTTP2_ENHANCE_YOUR_CALM;

struct Options {
  // SETTINGS_MAX_CONCURRENT_STREAMS announced to the peer (server mode: streams a client may
  // open at once; more are refused with RST_STREAM(REFUSED_STREAM) by nghttp2).
  uint32_t max_concurrent_streams = 100;
  // SETTINGS_INITIAL_WINDOW_SIZE: bytes the peer may send on one stream before we consume().
  uint32_t initial_stream_window = 256 * 1024;
  // Connection receive window (raised from 65535 by a WINDOW_UPDATE right after SETTINGS).
  uint32_t initial_connection_window = 1024 * 1024;
  // true: received DATA is credited back to the connection window as it arrives and consume()
  // reopens only the stream's window. Slow readers of some streams then cannot stall the others
  // on the same connection (head-of-line); what the caller holds unconsumed stays bounded by
  // open streams x initial_stream_window.
  bool connection_window_on_arrival = false;
  // SETTINGS_MAX_HEADER_LIST_SIZE, enforced on every received header block (RFC 9113 §6.5.2:
  // name + value + 32 per field). Same default as the HTTP/1 listener (max_request_headers_kb).
  uint32_t max_header_list_bytes = 60 * 1024;
  // Received header fields per block (pseudo-headers included), as the HTTP/1 parser's limit.
  uint32_t max_header_fields = 100;
  // A received block over either limit is not delivered: a server answers 431 (and resets the
  // request stream if its body was still coming); a client resets the stream. Either way
  // onStreamClose reports kHeadersTooLarge and header_overflow counts it.

  // SETTINGS_MAX_FRAME_SIZE announced (16384..16777215).
  uint32_t max_frame_size = 16384;
  // Frames are pulled into the output Buffer only while it holds fewer bytes than this.
  size_t output_high_watermark = 1024 * 1024;
  // Per-stream send buffer: sendData returns false at this many buffered bytes.
  size_t stream_send_high_watermark = 1024 * 1024;

  // Flood protection (docs/http2.md).
  // Rapid reset (server mode): a token bucket charged one token per RST_STREAM received and per
  // stream reset nghttp2 sends because of a peer error; refilled at reset_rate_per_second.
  // Empty: GOAWAY(ENHANCE_YOUR_CALM), counter rapid_reset.
  uint32_t reset_burst = 1000;
  uint32_t reset_rate_per_second = 33;
  // SETTINGS and PING ACKs queued but not written because the peer does not read; beyond this
  // the peer is flooding (counter ping_flood or settings_flood).
  size_t max_outbound_ack = 1000;
  // Entries per received SETTINGS frame (counter settings_flood).
  size_t max_settings_entries = 32;
  // CONTINUATION frames after one HEADERS (counter continuation_flood).
  size_t max_continuations = 8;
  // Consecutive DATA frames without payload and without END_STREAM (counter empty_frame_flood).
  uint32_t max_consecutive_empty_data = 10;
};

// Counters the codec increments; any may be null (not counted). One set per listener or
// cluster, shared by its connections (see makeStats).
struct Stats {
  std::shared_ptr<stats::Counter> rapid_reset;         // RST_STREAM flood (CVE-2023-44487)
  std::shared_ptr<stats::Counter> ping_flood;          // PING ACKs piling up
  std::shared_ptr<stats::Counter> settings_flood;      // SETTINGS ACKs piling up, or too many
                                                       // entries in one frame
  std::shared_ptr<stats::Counter> continuation_flood;  // endless CONTINUATION (CVE-2024-27316)
  std::shared_ptr<stats::Counter> empty_frame_flood;   // empty DATA frames
  std::shared_ptr<stats::Counter> header_overflow;     // header list over the limits (per stream)
  std::shared_ptr<stats::Counter> invalid_frame;       // frames nghttp2 rejected (stream or
                                                       // connection errors)
  std::shared_ptr<stats::Counter> protocol_error;      // connections ended by a protocol error
};

// Registers the counters as `<prefix>_<name>_total` with `labels`, e.g. prefix
// "weft_listener_http2" with {listener=...} or "weft_cluster_http2" with {cluster=...}.
Stats makeStats(stats::Registry& registry, std::string_view prefix, const stats::Labels& labels);

enum class HeadersKind : uint8_t {
  kRequest,        // server: the request head
  kInformational,  // client: a 1xx response; the final one follows
  kResponse,       // client: the final response head
  kTrailers,       // either side: the trailer section, always with end_stream
};

// A received header block. Every view (and `fields`) is valid only during the onHeaders call.
struct HeaderBlock {
  HeadersKind kind = HeadersKind::kRequest;
  // Requests: pseudo-header values ("" when absent: CONNECT has no :scheme and :path).
  std::string_view method;
  std::string_view scheme;
  std::string_view authority;
  std::string_view path;
  // Responses: :status (100..599).
  int status = 0;
  // Regular fields in received order (names are lower case; nghttp2 validated them per RFC 9113
  // §8.2 and §8.3: no uppercase, no connection-specific fields, required pseudo-headers
  // present). `token` is set.
  std::span<const http::HeaderField> fields;
  // END_STREAM came with this block (no body follows). onStreamEnd is called as well.
  bool end_stream = false;
};

// A request to submit (client mode). Views are copied by submitRequest.
struct RequestHeaders {
  std::string_view method;
  std::string_view scheme;     // omitted for CONNECT
  std::string_view authority;  // omitted when empty
  std::string_view path;       // omitted for CONNECT
  // Regular fields. Names are lower-cased on the way out; connection-specific fields (RFC 9113
  // §8.2.2: Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, HTTP2-Settings,
  // TE other than "trailers") are dropped; names starting with ':' are refused.
  std::span<const http::HeaderField> fields;
};

// Why a stream closed (onStreamClose).
enum class CloseCause : uint8_t {
  kComplete,         // both sides ended normally (error_code is NO_ERROR)
  kPeerReset,        // the peer sent RST_STREAM(error_code)
  kLocalReset,       // the caller called resetStream
  kHeadersTooLarge,  // a received header block was over the limits; the codec reset it
  kRefused,          // client: above the last stream id of a GOAWAY, or refused by the peer:
                     // never processed, safe to retry elsewhere
  kError,            // nghttp2 reset it (a stream-level protocol error by the peer)
};

class Callbacks {
 public:
  // Server: the peer opened `stream_id` (its headers follow).
  virtual void onStreamBegin(int32_t stream_id) { (void)stream_id; }
  virtual void onHeaders(int32_t stream_id, const HeaderBlock& block) = 0;
  // A piece of body. Call consume(stream_id, data.size()) once it has been forwarded. `data` is
  // valid only during the call.
  virtual void onData(int32_t stream_id, std::string_view data) = 0;
  // The peer ended its side (after the last onData or trailers).
  virtual void onStreamEnd(int32_t stream_id) = 0;
  // The stream is gone: the last callback for it. Its id is no longer valid for submit calls.
  virtual void onStreamClose(int32_t stream_id, CloseCause cause, uint32_t error_code) = 0;
  // The peer sent GOAWAY: streams above last_stream_id (client mode) are closed with kRefused;
  // no new stream may be started on this connection.
  virtual void onGoaway(int32_t last_stream_id, uint32_t error_code) {
    (void)last_stream_id;
    (void)error_code;
  }
  // The stream's send buffer drained below the low watermark after sendData had returned false.
  virtual void onStreamWritable(int32_t stream_id) { (void)stream_id; }

 protected:
  ~Callbacks() = default;
};

class Codec {
 public:
  // `callbacks` and `output` must outlive the codec. The SETTINGS frame (and, in client mode,
  // the connection preface) is queued at once. Options are checked: an out-of-range value
  // (window > 2^31-1, frame size outside 16384..16777215) is an error.
  static Result<std::unique_ptr<Codec>> create(Mode mode, const Options& options,
                                               Callbacks& callbacks, Buffer& output,
                                               const TimeSource& time, Stats stats = {});
  ~Codec();
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;

  // Processes received bytes (all of them). Server mode expects the client preface first.
  Status feed(std::string_view bytes);
  // Pulls queued frames into the output while it is under the watermark. Call when the output
  // drained (the codec's own calls flush already).
  void flush();

  // Client: opens a stream. end_stream: the request has no body; otherwise send it with
  // sendData / submitTrailers. Fails with kStreamLimit when the peer's concurrent stream limit
  // is reached, kGoingAway after GOAWAY.
  Result<int32_t> submitRequest(const RequestHeaders& request, bool end_stream);
  // Server: the final response head (status 200..599). end_stream: no body follows.
  Status submitResponse(int32_t stream_id, int status, std::span<const http::HeaderField> fields,
                        bool end_stream);
  // Server: a 1xx response (not 101, which HTTP/2 forbids).
  Status submitInformational(int32_t stream_id, int status,
                             std::span<const http::HeaderField> fields);
  // Queues body bytes (copied) after the head. end_stream: this is the last piece. Returns true
  // while the stream's send buffer is under the watermark, false when the caller should stop
  // until onStreamWritable. Data may be queued before the head is submitted (server).
  Result<bool> sendData(int32_t stream_id, std::string_view data, bool end_stream);
  // Ends the stream with a trailer section after the buffered data (instead of end_stream).
  Status submitTrailers(int32_t stream_id, std::span<const http::HeaderField> fields);
  // Sends RST_STREAM(error_code); onStreamClose(kLocalReset) follows when it is written.
  Status resetStream(int32_t stream_id, uint32_t error_code = kCancel);
  // Returns n received body bytes of the stream to the flow-control windows (see the file
  // comment). Valid for closed streams too: then only the connection window is credited (with
  // Options::connection_window_on_arrival it was credited on arrival: only the stream's is).
  void consume(int32_t stream_id, size_t n);

  // Server: GOAWAY(2^31-1) announcing shutdown; streams keep coming until drain(). Optional
  // first step of a graceful shutdown, one RTT before drain() (RFC 9113 §6.8).
  Status sendShutdownNotice();
  // Graceful: GOAWAY(NO_ERROR) with the last stream processed; streams in flight finish, new
  // ones are refused (server) or not started (client); done() once they have.
  Status drain();
  // Immediate: GOAWAY(error_code) and stop; done() once it is written. No onStreamClose follows
  // for the open streams.
  void terminate(uint32_t error_code = kNoError);

  // Nothing more to read or write: close the connection once the output is written.
  bool done() const;
  // Streams open in this session (both directions, not yet closed).
  size_t openStreams() const { return streams_.size(); }
  // Client: whether submitRequest would be refused with kStreamLimit / kGoingAway right now.
  bool atStreamLimit() const;
  bool goingAway() const;
  // The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive; 0 when dead).
  uint32_t peerMaxConcurrentStreams() const;
  // The peer's first SETTINGS frame has been received (its limits are known).
  bool remoteSettingsReceived() const { return remote_settings_received_; }
  // Bytes buffered by sendData for the stream and not yet written.
  size_t sendBuffered(int32_t stream_id) const;
  Mode mode() const { return mode_; }

 private:
  struct Stream;
  struct HeaderRef {
    nghttp2_rcbuf* name;
    nghttp2_rcbuf* value;
  };
  class Glue;  // nghttp2 callback trampolines
  friend class Glue;

  Codec(Mode mode, const Options& options, Callbacks& callbacks, Buffer& output,
        const TimeSource& time, Stats stats);
  Status init();
  Stream* findStream(int32_t stream_id) const;
  // Records a flood detected in a callback; returns the nghttp2 code that aborts the read.
  int flood(std::string message);
  void remoteEnded(int32_t stream_id);
  int headersReceived(nghttp2_session* session, const nghttp2_frame* frame);
  void libraryGoaway(uint32_t error_code);
  void fatal(int rv);
  void appendGoaway(uint32_t error_code);
  Status closedError() const;
  void clearBlock();
  Status appendFieldsNv(std::span<const http::HeaderField> fields);
  void addNv(std::string_view name, std::string_view value, uint8_t flags = NGHTTP2_NV_FLAG_NONE);
  nghttp2_data_provider dataProvider(Stream* s);
  Status submitHead(int32_t stream_id, int status, std::span<const http::HeaderField> fields,
                    bool end_stream, bool final);
  void resume(Stream* s);
  bool chargeReset();
  static void inc(const std::shared_ptr<stats::Counter>& c) {
    if (c) c->inc();
  }

  const Mode mode_;
  const Options options_;
  Callbacks& callbacks_;
  Buffer& out_;
  const TimeSource& time_;
  const Stats stats_;
  nghttp2_session* session_ = nullptr;

  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  // The header block being received (HEADERS + CONTINUATION are contiguous, so one at a time).
  int32_t block_stream_ = 0;
  std::vector<HeaderRef> block_;
  size_t block_bytes_ = 0;
  bool block_oversized_ = false;
  std::vector<http::HeaderField> fields_scratch_;
  // Outgoing header blocks are built here; nghttp2 copies them on submit.
  std::vector<nghttp2_nv> nv_;
  std::string nv_names_;
  // Streams whose send buffer drained; notified after nghttp2_session_send returns.
  std::vector<int32_t> writable_;

  int depth_ = 0;          // > 0 inside feed()/flush(): do not re-enter nghttp2_session_send
  bool dead_ = false;      // a fatal error or terminate(): no more nghttp2 calls
  bool draining_ = false;  // drain() or terminate() was called
  bool goaway_received_ = false;
  bool remote_settings_received_ = false;
  bool local_goaway_ = false;  // a GOAWAY the caller asked for (not a peer error)
  uint32_t goaway_code_ = NGHTTP2_PROTOCOL_ERROR;
  Error error_;  // the connection error, once one happened
  bool failed_ = false;
  uint8_t last_frame_type_ = 0;
  uint32_t consecutive_empty_data_ = 0;
  uint32_t pings_since_flush_ = 0;
  uint32_t settings_since_flush_ = 0;
  // Rapid-reset token bucket.
  double reset_tokens_ = 0;
  MonoTime reset_refill_{};
};

// The HTTP/2 client connection preface (RFC 9113 §3.4).
inline constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum class PrefaceMatch : uint8_t {
  kNo,       // not HTTP/2 prior knowledge (treat as HTTP/1)
  kPartial,  // a proper prefix of the preface: read more before deciding
  kYes,      // starts with the full 24-byte preface
};
// For h2c by prior knowledge on a plaintext listener: look at the first bytes received.
inline PrefaceMatch matchPreface(std::string_view first_bytes) {
  size_t n =
      first_bytes.size() < kClientPreface.size() ? first_bytes.size() : kClientPreface.size();
  if (first_bytes.substr(0, n) != kClientPreface.substr(0, n)) return PrefaceMatch::kNo;
  return n == kClientPreface.size() ? PrefaceMatch::kYes : PrefaceMatch::kPartial;
}

}  // namespace weft::http2
