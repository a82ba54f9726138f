#include "http/http2/codec.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "http/http2/session_memory.h"

namespace weft::http2 {
namespace {

constexpr uint32_t kMaxWindow = (1u << 31) - 1;

bool hasUpper(std::string_view s) {
  for (char c : s)
    if (c >= 'A' && c <= 'Z') return true;
  return false;
}

std::string_view bufView(nghttp2_rcbuf* b) {
  nghttp2_vec v = nghttp2_rcbuf_get_buf(b);
  return {reinterpret_cast<const char*>(v.base), v.len};
}

// RFC 9113 §8.2.2 connection-specific fields; TE is handled separately ("trailers" may stay).
constexpr http::HeaderTokenSet kConnectionSpecific{
    http::HeaderToken::kConnection,      http::HeaderToken::kKeepAlive,
    http::HeaderToken::kProxyConnection, http::HeaderToken::kTransferEncoding,
    http::HeaderToken::kUpgrade,         http::HeaderToken::kHttp2Settings,
};

void put32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

}  // namespace

struct Codec::Stream {
  int32_t id = 0;
  Buffer send_buf;
  bool provider_attached = false;  // a head was submitted with a data provider
  bool head_submitted = false;
  bool send_end = false;  // the caller gave end_stream (or trailers): nothing more to buffer
  bool deferred = false;  // the data provider returned DEFERRED; resume on more data
  bool above_high = false;
  bool has_trailers = false;
  std::vector<std::pair<std::string, std::string>> trailers;
  bool final_headers_received = false;  // client: a non-1xx response arrived
  bool remote_ended = false;
  bool local_reset = false;
  bool peer_reset = false;
  bool headers_too_large = false;
};

// Trampolines from nghttp2's C callbacks to the codec. Each returns what nghttp2 expects.
class Codec::Glue {
 public:
  static Codec& self(void* user_data) { return *static_cast<Codec*>(user_data); }

  static ssize_t send(nghttp2_session*, const uint8_t* data, size_t length, int, void* ud) {
    Codec& c = self(ud);
    if (c.out_.size() >= c.options_.output_high_watermark) return NGHTTP2_ERR_WOULDBLOCK;
    c.out_.append(reinterpret_cast<const char*>(data), length);
    c.pings_since_flush_ = c.settings_since_flush_ = 0;
    return static_cast<ssize_t>(length);
  }

  static int sendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* ud) {
    Codec& c = self(ud);
    if (c.out_.size() >= c.options_.output_high_watermark) return NGHTTP2_ERR_WOULDBLOCK;
    auto* s = static_cast<Stream*>(source->ptr);
    size_t pad = frame->data.padlen;
    char* p = c.out_.prepare(9 + pad + length);
    std::memcpy(p, framehd, 9);
    p += 9;
    if (pad > 0) *p++ = static_cast<char>(pad - 1);
    std::memcpy(p, s->send_buf.data(), length);
    p += length;
    if (pad > 1) std::memset(p, 0, pad - 1);
    c.out_.commit(9 + pad + length);
    s->send_buf.consume(length);
    if (s->above_high && s->send_buf.size() <= c.options_.stream_send_high_watermark / 4) {
      s->above_high = false;
      c.writable_.push_back(s->id);
    }
    return 0;
  }

  static ssize_t read(nghttp2_session* session, int32_t stream_id, uint8_t*, size_t length,
                      uint32_t* flags, nghttp2_data_source* source, void* ud) {
    Codec& c = self(ud);
    auto* s = static_cast<Stream*>(source->ptr);
    size_t avail = s->send_buf.size();
    if (avail == 0 && !s->send_end) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = std::min(length, avail);
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && s->send_end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->has_trailers) {
        c.nv_.clear();
        for (auto& [name, value] : s->trailers) c.addNv(name, value);
        if (nghttp2_submit_trailer(session, stream_id, c.nv_.data(), c.nv_.size()) == 0)
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        s->trailers.clear();
      }
    }
    return static_cast<ssize_t>(n);
  }

  static int beginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* ud) {
    self(ud).last_frame_type_ = hd->type;
    return 0;
  }

  static int beginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    Codec& c = self(ud);
    c.clearBlock();
    c.block_stream_ = frame->hd.stream_id;
    if (c.mode_ == Mode::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      auto s = std::make_unique<Stream>();
      s->id = frame->hd.stream_id;
      nghttp2_session_set_stream_user_data(session, s->id, s.get());
      c.streams_[s->id] = std::move(s);
      c.callbacks_.onStreamBegin(frame->hd.stream_id);
    }
    return 0;
  }

  static int header(nghttp2_session*, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                    nghttp2_rcbuf* value, uint8_t, void* ud) {
    Codec& c = self(ud);
    if (frame->hd.stream_id != c.block_stream_ || c.block_oversized_) return 0;
    size_t nlen = nghttp2_rcbuf_get_buf(name).len;
    size_t vlen = nghttp2_rcbuf_get_buf(value).len;
    c.block_bytes_ += nlen + vlen + 32;
    if (c.block_bytes_ > c.options_.max_header_list_bytes ||
        c.block_.size() >= c.options_.max_header_fields) {
      c.clearBlock();
      c.block_stream_ = frame->hd.stream_id;
      c.block_oversized_ = true;
      inc(c.stats_.header_overflow);
      return 0;
    }
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    c.block_.push_back({name, value});
    return 0;
  }

  static int frameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    Codec& c = self(ud);
    int32_t id = frame->hd.stream_id;
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_DATA: {
        if (frame->hd.length == 0 && !end_stream) {
          if (++c.consecutive_empty_data_ > c.options_.max_consecutive_empty_data) {
            inc(c.stats_.empty_frame_flood);
            return c.flood("empty DATA frame flood");
          }
        } else {
          c.consecutive_empty_data_ = 0;
        }
        if (end_stream) c.remoteEnded(id);
        return 0;
      }
      case NGHTTP2_HEADERS:
        return c.headersReceived(session, frame);
      case NGHTTP2_RST_STREAM: {
        if (Stream* s = c.findStream(id)) s->peer_reset = true;
        if (c.mode_ == Mode::kServer && !c.chargeReset()) {
          inc(c.stats_.rapid_reset);
          return c.flood("RST_STREAM rate over the limit (rapid reset)");
        }
        return 0;
      }
      case NGHTTP2_GOAWAY:
        c.goaway_received_ = true;
        c.callbacks_.onGoaway(frame->goaway.last_stream_id, frame->goaway.error_code);
        return 0;
      case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) ++c.pings_since_flush_;
        return 0;
      case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
          ++c.settings_since_flush_;
          c.remote_settings_received_ = true;
        }
        return 0;
      default:
        return 0;
    }
  }

  static int dataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                       size_t len, void* ud) {
    Codec& c = self(ud);
    if (c.findStream(stream_id) == nullptr) {
      // Not a stream the caller knows (cannot normally happen): give the window back.
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    if (c.options_.connection_window_on_arrival) nghttp2_session_consume_connection(session, len);
    c.callbacks_.onData(stream_id, {reinterpret_cast<const char*>(data), len});
    return 0;
  }

  static int streamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
    Codec& c = self(ud);
    if (c.block_stream_ == stream_id) c.clearBlock();
    auto it = c.streams_.find(stream_id);
    if (it == c.streams_.end()) return 0;
    std::unique_ptr<Stream> s = std::move(it->second);
    c.streams_.erase(it);
    CloseCause cause;
    if (s->headers_too_large) {
      cause = CloseCause::kHeadersTooLarge;
    } else if (s->local_reset) {
      cause = CloseCause::kLocalReset;
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
      cause = CloseCause::kRefused;
    } else if (s->peer_reset) {
      cause = CloseCause::kPeerReset;
    } else if (error_code == NGHTTP2_NO_ERROR) {
      cause = CloseCause::kComplete;
    } else {
      cause = CloseCause::kError;
    }
    c.callbacks_.onStreamClose(stream_id, cause, error_code);
    return 0;
  }

  static int frameSend(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    Codec& c = self(ud);
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        !c.local_goaway_ && !c.failed_) {
      c.libraryGoaway(frame->goaway.error_code);
    } else if (frame->hd.type == NGHTTP2_RST_STREAM && c.mode_ == Mode::kServer) {
      // A reset the caller did not ask for: nghttp2 reset a stream because of the peer (invalid
      // headers, flow-control or state errors). Peers can use that to open and kill streams
      // cheaply too, so it is charged like a received RST_STREAM.
      Stream* s = c.findStream(frame->hd.stream_id);
      bool ours = s != nullptr && (s->local_reset || s->headers_too_large);
      if (!ours && !c.chargeReset()) {
        inc(c.stats_.rapid_reset);
        c.flood("stream reset rate over the limit (rapid reset)");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
    }
    return 0;
  }

  static int invalidFrame(nghttp2_session*, const nghttp2_frame*, int, void* ud) {
    inc(self(ud).stats_.invalid_frame);
    return 0;
  }
};

Stats makeStats(stats::Registry& registry, std::string_view prefix, const stats::Labels& labels) {
  auto counter = [&](std::string_view name) {
    std::string full(prefix);
    full += '_';
    full += name;
    full += "_total";
    return registry.counter(full, labels);
  };
  Stats s;
  s.rapid_reset = counter("rapid_reset");
  s.ping_flood = counter("ping_flood");
  s.settings_flood = counter("settings_flood");
  s.continuation_flood = counter("continuation_flood");
  s.empty_frame_flood = counter("empty_frame_flood");
  s.header_overflow = counter("header_overflow");
  s.invalid_frame = counter("invalid_frame");
  s.protocol_error = counter("protocol_error");
  return s;
}

Codec::Codec(Mode mode, const Options& options, Callbacks& callbacks, Buffer& output,
             const TimeSource& time, Stats stats)
    : mode_(mode),
      options_(options),
      callbacks_(callbacks),
      out_(output),
      time_(time),
      stats_(std::move(stats)) {}

Codec::~Codec() {
  clearBlock();
  if (session_ != nullptr) nghttp2_session_del(session_);
}

Result<std::unique_ptr<Codec>> Codec::create(Mode mode, const Options& options,
                                             Callbacks& callbacks, Buffer& output,
                                             const TimeSource& time, Stats stats) {
  if (options.initial_stream_window > kMaxWindow ||
      options.initial_connection_window > kMaxWindow) {
    return makeError("http2: flow-control windows must be at most 2^31-1 bytes",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  }
  if (options.max_frame_size < 16384 || options.max_frame_size > 16777215) {
    return makeError("http2: max_frame_size must be within 16384..16777215",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  }
  if (options.output_high_watermark == 0 || options.stream_send_high_watermark == 0) {
    return makeError("http2: watermarks must be positive",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  }
  std::unique_ptr<Codec> codec(new Codec(mode, options, callbacks, output, time, std::move(stats)));
  Status s = codec->init();
  if (!s) return Unexpected<Error>{s.error()};
  return codec;
}

Status Codec::init() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    return makeError("http2: out of memory", static_cast<int>(ErrorCode::kInternal));
  nghttp2_session_callbacks_set_send_callback(cbs, &Glue::send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &Glue::sendData);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, &Glue::beginFrame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Glue::beginHeaders);
  nghttp2_session_callbacks_set_on_header_callback2(cbs, &Glue::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Glue::frameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Glue::dataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Glue::streamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Glue::frameSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, &Glue::invalidFrame);

  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return makeError("http2: out of memory", static_cast<int>(ErrorCode::kInternal));
  }
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, options_.max_outbound_ack);
  nghttp2_option_set_max_settings(opt, options_.max_settings_entries);
  nghttp2_option_set_max_continuations(opt, options_.max_continuations);
  // nghttp2's own rapid-reset limiter (wall clock, whole seconds) is only a much looser
  // backstop; the codec's bucket (TimeSource, charged first, in on_frame_recv) is the one that
  // decides and counts.
  nghttp2_option_set_stream_reset_rate_limit(opt, uint64_t{options_.reset_burst} * 4 + 1000,
                                             uint64_t{options_.reset_rate_per_second} * 4 + 100);
  // Until the server's SETTINGS arrive, assume 100 concurrent streams (RFC 9113 §6.5.2
  // recommends no less), not nghttp2's "unlimited".
  nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  int rv = mode_ == Mode::kServer
               ? nghttp2_session_server_new3(&session_, cbs, this, opt, sessionMemory())
               : nghttp2_session_client_new3(&session_, cbs, this, opt, sessionMemory());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return makeError("http2: out of memory", static_cast<int>(ErrorCode::kInternal));

  nghttp2_settings_entry iv[6];
  size_t n = 0;
  iv[n++] = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams};
  iv[n++] = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_stream_window};
  iv[n++] = {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_bytes};
  iv[n++] = {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, options_.max_frame_size};
  iv[n++] = {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1};
  if (mode_ == Mode::kClient) iv[n++] = {NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, n);
  if (rv == 0 && options_.initial_connection_window > 65535) {
    rv = nghttp2_session_set_local_window_size(
        session_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(options_.initial_connection_window));
  }
  if (rv != 0) {
    return makeError(std::string("http2: initial SETTINGS: ") + nghttp2_strerror(rv),
                     static_cast<int>(ErrorCode::kInvalidArgument));
  }
  reset_tokens_ = options_.reset_burst;
  reset_refill_ = time_.monotonicNow();
  flush();
  return {};
}

Codec::Stream* Codec::findStream(int32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Codec::clearBlock() {
  for (HeaderRef& h : block_) {
    nghttp2_rcbuf_decref(h.name);
    nghttp2_rcbuf_decref(h.value);
  }
  block_.clear();
  block_stream_ = 0;
  block_bytes_ = 0;
  block_oversized_ = false;
}

bool Codec::chargeReset() {
  MonoTime now = time_.monotonicNow();
  if (now > reset_refill_) {
    double secs = std::chrono::duration<double>(now - reset_refill_).count();
    reset_tokens_ = std::min<double>(options_.reset_burst,
                                     reset_tokens_ + secs * options_.reset_rate_per_second);
    reset_refill_ = now;
  }
  if (reset_tokens_ < 1) return false;
  reset_tokens_ -= 1;
  return true;
}

int Codec::flood(std::string message) {
  failed_ = true;
  error_ = Error{static_cast<int>(ErrorCode::kFlood), "http2: " + std::move(message)};
  goaway_code_ = NGHTTP2_ENHANCE_YOUR_CALM;
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

void Codec::remoteEnded(int32_t stream_id) {
  Stream* s = findStream(stream_id);
  if (s == nullptr || s->remote_ended) return;
  s->remote_ended = true;
  callbacks_.onStreamEnd(stream_id);
}

int Codec::headersReceived(nghttp2_session* session, const nghttp2_frame* frame) {
  int32_t id = frame->hd.stream_id;
  bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  Stream* s = findStream(id);
  if (s == nullptr || id != block_stream_) {
    clearBlock();
    return 0;
  }
  if (block_oversized_) {
    clearBlock();
    s->headers_too_large = true;
    if (mode_ == Mode::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      // RFC 9113 §10.5.1 / RFC 6585 §5: answer 431, then stop a request body that may follow.
      nv_.clear();
      addNv(":status", "431");
      nghttp2_submit_response(session, id, nv_.data(), nv_.size(), nullptr);
      if (!end_stream) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
    } else {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    }
    return 0;
  }

  HeaderBlock block;
  block.end_stream = end_stream;
  fields_scratch_.clear();
  for (const HeaderRef& h : block_) {
    std::string_view name = bufView(h.name);
    std::string_view value = bufView(h.value);
    if (!name.empty() && name[0] == ':') {
      if (name == ":method") {
        block.method = value;
      } else if (name == ":scheme") {
        block.scheme = value;
      } else if (name == ":authority") {
        block.authority = value;
      } else if (name == ":path") {
        block.path = value;
      } else if (name == ":status" && value.size() == 3) {
        block.status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
      }
      continue;
    }
    fields_scratch_.push_back({name, value, http::lookupHeaderToken(name)});
  }
  block.fields = fields_scratch_;
  if (mode_ == Mode::kServer) {
    block.kind =
        frame->headers.cat == NGHTTP2_HCAT_REQUEST ? HeadersKind::kRequest : HeadersKind::kTrailers;
  } else if (!s->final_headers_received) {
    if (block.status >= 100 && block.status < 200) {
      block.kind = HeadersKind::kInformational;
    } else {
      block.kind = HeadersKind::kResponse;
      s->final_headers_received = true;
    }
  } else {
    block.kind = HeadersKind::kTrailers;
  }
  callbacks_.onHeaders(id, block);
  clearBlock();
  if (end_stream) remoteEnded(id);
  return 0;
}

void Codec::libraryGoaway(uint32_t error_code) {
  // nghttp2 detected a connection error itself and queued GOAWAY(error_code).
  failed_ = true;
  ErrorCode code = ErrorCode::kProtocol;
  std::string what =
      std::string("peer protocol error (") + nghttp2_http2_strerror(error_code) + ")";
  if (error_code == NGHTTP2_ENHANCE_YOUR_CALM) {
    code = ErrorCode::kFlood;
    if (last_frame_type_ == NGHTTP2_SETTINGS) {
      inc(stats_.settings_flood);
      what = "SETTINGS flood (too many entries)";
    } else if (last_frame_type_ == NGHTTP2_HEADERS || last_frame_type_ == NGHTTP2_CONTINUATION) {
      inc(stats_.continuation_flood);
      what = "CONTINUATION flood";
    } else {
      inc(stats_.protocol_error);
    }
  } else if (error_code == NGHTTP2_INTERNAL_ERROR && last_frame_type_ == NGHTTP2_RST_STREAM &&
             mode_ == Mode::kServer) {
    code = ErrorCode::kFlood;
    inc(stats_.rapid_reset);
    what = "RST_STREAM rate over the limit (rapid reset)";
  } else {
    inc(stats_.protocol_error);
  }
  error_ = Error{static_cast<int>(code), "http2: " + what};
}

void Codec::fatal(int rv) {
  // nghttp2 returned a fatal error: the session cannot be used again. Our own flood detection
  // comes back as NGHTTP2_ERR_CALLBACK_FAILURE with failed_ already set.
  dead_ = true;
  if (!failed_) {
    failed_ = true;
    ErrorCode code = ErrorCode::kProtocol;
    std::string what;
    goaway_code_ = NGHTTP2_PROTOCOL_ERROR;
    if (rv == NGHTTP2_ERR_FLOODED) {
      code = ErrorCode::kFlood;
      goaway_code_ = NGHTTP2_ENHANCE_YOUR_CALM;
      if (settings_since_flush_ > pings_since_flush_) {
        inc(stats_.settings_flood);
        what = "SETTINGS flood (ACKs not read by the peer)";
      } else {
        inc(stats_.ping_flood);
        what = "PING flood (ACKs not read by the peer)";
      }
    } else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
      code = ErrorCode::kFlood;
      goaway_code_ = NGHTTP2_ENHANCE_YOUR_CALM;
      inc(stats_.continuation_flood);
      what = "CONTINUATION flood";
    } else if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
      inc(stats_.protocol_error);
      what = "the client did not send the HTTP/2 connection preface";
    } else {
      code = ErrorCode::kInternal;
      goaway_code_ = NGHTTP2_INTERNAL_ERROR;
      what = nghttp2_strerror(rv);
    }
    error_ = Error{static_cast<int>(code), "http2: " + what};
  }
  appendGoaway(goaway_code_);
}

void Codec::appendGoaway(uint32_t error_code) {
  // Written by hand: the session is unusable after a fatal error. Frames in out_ are always
  // complete (the send callbacks take whole frames), so this lands on a frame boundary.
  char f[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
  uint32_t last = static_cast<uint32_t>(nghttp2_session_get_last_proc_stream_id(session_));
  put32(f + 9, last & kMaxWindow);
  put32(f + 13, error_code);
  out_.append(f, sizeof f);
}

Status Codec::closedError() const {
  if (failed_) return Unexpected<Error>{error_};
  return makeError("http2: connection closed", static_cast<int>(ErrorCode::kClosed));
}

Status Codec::feed(std::string_view bytes) {
  if (dead_ || failed_) return closedError();
  ++depth_;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(bytes.data()),
                                        bytes.size());
  --depth_;
  if (rv < 0) {
    fatal(static_cast<int>(rv));
    return closedError();
  }
  flush();
  if (failed_) return closedError();
  return {};
}

void Codec::flush() {
  if (dead_ || depth_ > 0) return;
  ++depth_;
  int rv = nghttp2_session_send(session_);
  --depth_;
  if (rv != 0) {
    fatal(rv);
    return;
  }
  while (!writable_.empty() && !dead_) {
    std::vector<int32_t> ids;
    ids.swap(writable_);
    for (int32_t id : ids) {
      Stream* s = findStream(id);
      if (s != nullptr && !s->above_high) callbacks_.onStreamWritable(id);
    }
  }
}

void Codec::addNv(std::string_view name, std::string_view value, uint8_t flags) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = flags;
  nv_.push_back(nv);
}

Status Codec::appendFieldsNv(std::span<const http::HeaderField> fields) {
  // Names are lower-cased into nv_names_, reserved up front so the views stay put.
  size_t need = 0;
  for (const http::HeaderField& f : fields) {
    if (f.name.empty() || f.name[0] == ':') {
      return makeError("http2: invalid field name '" + std::string(f.name) + "'",
                       static_cast<int>(ErrorCode::kInvalidArgument));
    }
    if (hasUpper(f.name)) need += f.name.size();
  }
  nv_names_.clear();
  nv_names_.reserve(need);
  for (const http::HeaderField& f : fields) {
    http::HeaderToken t =
        f.token != http::HeaderToken::kOther ? f.token : http::lookupHeaderToken(f.name);
    if (kConnectionSpecific.contains(t)) continue;
    if (t == http::HeaderToken::kTe) {
      if (http::equalsIgnoreCase(f.value, "trailers")) addNv("te", "trailers");
      continue;
    }
    std::string_view name = f.name;
    if (hasUpper(name)) {
      size_t at = nv_names_.size();
      for (char c : name) nv_names_.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
      name = std::string_view(nv_names_).substr(at, name.size());
    }
    uint8_t flags = NGHTTP2_NV_FLAG_NONE;
    if (t == http::HeaderToken::kAuthorization || t == http::HeaderToken::kProxyAuthorization ||
        (t == http::HeaderToken::kCookie && f.value.size() < 20)) {
      flags = NGHTTP2_NV_FLAG_NO_INDEX;  // RFC 7541 §7.1.3: keep secrets out of the table
    }
    addNv(name, f.value, flags);
  }
  return {};
}

nghttp2_data_provider Codec::dataProvider(Stream* s) {
  nghttp2_data_provider p;
  p.source.ptr = s;
  p.read_callback = &Glue::read;
  s->provider_attached = true;
  return p;
}

bool Codec::goingAway() const { return dead_ || failed_ || draining_ || goaway_received_; }

bool Codec::atStreamLimit() const {
  if (dead_) return false;
  uint32_t limit =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() >= limit;
}

uint32_t Codec::peerMaxConcurrentStreams() const {
  if (dead_ || failed_) return 0;
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

Result<int32_t> Codec::submitRequest(const RequestHeaders& request, bool end_stream) {
  if (mode_ != Mode::kClient)
    return makeError("http2: submitRequest on a server codec",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  if (goingAway())
    return makeError("http2: connection is going away", static_cast<int>(ErrorCode::kGoingAway));
  if (atStreamLimit())
    return makeError("http2: peer's concurrent stream limit reached",
                     static_cast<int>(ErrorCode::kStreamLimit));
  nv_.clear();
  addNv(":method", request.method);
  bool connect = request.method == "CONNECT";
  if (!connect) addNv(":scheme", request.scheme);
  if (!request.authority.empty()) addNv(":authority", request.authority);
  if (!connect) addNv(":path", request.path);
  if (Status st = appendFieldsNv(request.fields); !st) return Unexpected<Error>{st.error()};

  auto s = std::make_unique<Stream>();
  s->head_submitted = true;
  s->send_end = end_stream;
  nghttp2_data_provider prd{};
  if (!end_stream) prd = dataProvider(s.get());
  int32_t id = nghttp2_submit_request(session_, nullptr, nv_.data(), nv_.size(),
                                      end_stream ? nullptr : &prd, s.get());
  if (id < 0) {
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE)
      return makeError("http2: stream ids exhausted", static_cast<int>(ErrorCode::kGoingAway));
    return makeError(std::string("http2: submit request: ") + nghttp2_strerror(id),
                     static_cast<int>(ErrorCode::kInternal));
  }
  s->id = id;
  streams_[id] = std::move(s);
  flush();
  if (dead_ || failed_) return Unexpected<Error>{closedError().error()};
  return id;
}

Status Codec::submitHead(int32_t stream_id, int status, std::span<const http::HeaderField> fields,
                         bool end_stream, bool final) {
  if (mode_ != Mode::kServer)
    return makeError("http2: responses are sent by server codecs",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  if (dead_ || failed_) return closedError();
  Stream* s = findStream(stream_id);
  if (s == nullptr)
    return makeError("http2: no stream " + std::to_string(stream_id),
                     static_cast<int>(ErrorCode::kNoStream));
  if (s->head_submitted)
    return makeError("http2: response already submitted",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  if (end_stream && !s->send_buf.empty())
    return makeError("http2: end_stream with buffered data",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  char code[3] = {static_cast<char>('0' + status / 100), static_cast<char>('0' + status / 10 % 10),
                  static_cast<char>('0' + status % 10)};
  nv_.clear();
  addNv(":status", std::string_view(code, 3));
  if (Status st = appendFieldsNv(fields); !st) return st;
  int rv;
  if (!final) {
    rv = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream_id, nullptr, nv_.data(),
                                nv_.size(), nullptr);
  } else {
    s->head_submitted = true;
    if (end_stream) s->send_end = true;
    nghttp2_data_provider prd{};
    if (!end_stream) prd = dataProvider(s);
    rv = nghttp2_submit_response(session_, stream_id, nv_.data(), nv_.size(),
                                 end_stream ? nullptr : &prd);
  }
  if (rv != 0)
    return makeError(std::string("http2: submit response: ") + nghttp2_strerror(rv),
                     static_cast<int>(ErrorCode::kInternal));
  flush();
  return {};
}

Status Codec::submitResponse(int32_t stream_id, int status,
                             std::span<const http::HeaderField> fields, bool end_stream) {
  if (status < 200 || status > 599)
    return makeError("http2: final status must be 200..599",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  return submitHead(stream_id, status, fields, end_stream, true);
}

Status Codec::submitInformational(int32_t stream_id, int status,
                                  std::span<const http::HeaderField> fields) {
  if (status < 100 || status > 199 || status == 101)
    return makeError("http2: informational status must be 1xx other than 101",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  return submitHead(stream_id, status, fields, false, false);
}

void Codec::resume(Stream* s) {
  if (s->deferred && s->provider_attached) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, s->id);
  }
  flush();
}

Result<bool> Codec::sendData(int32_t stream_id, std::string_view data, bool end_stream) {
  if (dead_ || failed_) return Unexpected<Error>{closedError().error()};
  Stream* s = findStream(stream_id);
  if (s == nullptr)
    return makeError("http2: no stream " + std::to_string(stream_id),
                     static_cast<int>(ErrorCode::kNoStream));
  if (s->send_end)
    return makeError("http2: data after end of stream",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  s->send_buf.append(data);
  if (end_stream) s->send_end = true;
  bool below = s->send_buf.size() < options_.stream_send_high_watermark;
  if (!below) s->above_high = true;
  resume(s);
  // The stream may have closed meanwhile (flush ran callbacks); `below` still describes it.
  return below;
}

Status Codec::submitTrailers(int32_t stream_id, std::span<const http::HeaderField> fields) {
  if (dead_ || failed_) return closedError();
  Stream* s = findStream(stream_id);
  if (s == nullptr)
    return makeError("http2: no stream " + std::to_string(stream_id),
                     static_cast<int>(ErrorCode::kNoStream));
  if (s->send_end || !s->head_submitted || !s->provider_attached)
    return makeError("http2: trailers need an open body (head submitted without end_stream)",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  nv_.clear();
  if (Status st = appendFieldsNv(fields); !st) return st;
  s->trailers.clear();
  for (const nghttp2_nv& nv : nv_) {
    s->trailers.emplace_back(std::string(reinterpret_cast<const char*>(nv.name), nv.namelen),
                             std::string(reinterpret_cast<const char*>(nv.value), nv.valuelen));
  }
  s->has_trailers = true;
  s->send_end = true;
  resume(s);
  return {};
}

Status Codec::resetStream(int32_t stream_id, uint32_t error_code) {
  if (dead_ || failed_) return closedError();
  Stream* s = findStream(stream_id);
  if (s == nullptr)
    return makeError("http2: no stream " + std::to_string(stream_id),
                     static_cast<int>(ErrorCode::kNoStream));
  s->local_reset = true;
  int rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
  if (rv != 0)
    return makeError(std::string("http2: reset: ") + nghttp2_strerror(rv),
                     static_cast<int>(ErrorCode::kInternal));
  flush();
  return {};
}

void Codec::consume(int32_t stream_id, size_t n) {
  if (dead_ || n == 0) return;
  if (options_.connection_window_on_arrival) {
    nghttp2_session_consume_stream(session_, stream_id, n);  // no-op once the stream is gone
  } else {
    nghttp2_session_consume(session_, stream_id, n);
  }
  flush();
}

Status Codec::sendShutdownNotice() {
  if (mode_ != Mode::kServer)
    return makeError("http2: shutdown notice is for servers",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  if (dead_ || failed_) return closedError();
  int rv = nghttp2_submit_shutdown_notice(session_);
  if (rv != 0)
    return makeError(std::string("http2: shutdown notice: ") + nghttp2_strerror(rv),
                     static_cast<int>(ErrorCode::kInternal));
  flush();
  return {};
}

Status Codec::drain() {
  if (dead_ || failed_) return closedError();
  if (draining_) return {};
  draining_ = true;
  local_goaway_ = true;
  int rv = nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                                 nghttp2_session_get_last_proc_stream_id(session_),
                                 NGHTTP2_NO_ERROR, nullptr, 0);
  if (rv != 0)
    return makeError(std::string("http2: goaway: ") + nghttp2_strerror(rv),
                     static_cast<int>(ErrorCode::kInternal));
  flush();
  return {};
}

void Codec::terminate(uint32_t error_code) {
  if (dead_ || failed_) return;
  draining_ = true;
  local_goaway_ = true;
  if (nghttp2_session_terminate_session(session_, error_code) != 0) {
    dead_ = true;
    appendGoaway(error_code);
    return;
  }
  flush();
}

bool Codec::done() const {
  if (dead_) return true;
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

size_t Codec::sendBuffered(int32_t stream_id) const {
  Stream* s = findStream(stream_id);
  return s == nullptr ? 0 : s->send_buf.size();
}

}  // namespace weft::http2
